//! The per-role users of deploy/permissions.conf: each role can do its job
//! and no more. Historical imports need their own permission.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_core::sites::{Site, SiteRegistry};
use checkin_ledger::reader::StreamReader;
use checkin_ledger::sequencer::{Sequencer, SequencerConfig};
use checkin_ledger::topology::{INTAKE_IMPORT, INTAKE_LIVE, LEDGER_STREAM};
use common::*;
use uuid::Uuid;

/// Returns deploy/permissions.conf as shipped; nats-server resolves includes
/// relative to the including file, so the text is inlined.
fn shipped_permissions() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/permissions.conf");
    std::fs::read_to_string(path).expect("deploy/permissions.conf is readable")
}

async fn connect_as(server: &NatsServer, user: &str) -> async_nats::Client {
    let password = format!("change-me-{user}");
    async_nats::ConnectOptions::with_user_and_password(user.into(), password)
        .connect(server.url())
        .await
        .unwrap_or_else(|err| panic!("failed to connect as {user}: {err}"))
}

fn submission() -> Vec<u8> {
    let id = EventId::from(Uuid::new_v4());
    serde_json::to_vec(&check_in(&id, "c-1", now_shanghai())).expect("serialises")
}

async fn publish_as(client: &async_nats::Client, subject: &str) -> Result<(), String> {
    let js = jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    let ack = js
        .publish(subject.to_string(), submission().into())
        .await
        .map_err(|err| err.to_string())?;
    ack.await.map(|_| ()).map_err(|err| err.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_limited_to_its_subjects() {
    let server = NatsServer::start_with_config(false, &shipped_permissions());
    let mut sites = SiteRegistry::default();
    sites.sites.insert("sh-jingan".into(), Site::default());
    let config = SequencerConfig {
        sites,
        ..SequencerConfig::default()
    };
    let sequencer = Sequencer::start(
        connect_as(&server, "sequencer").await,
        config,
        &server.scratch("index"),
    )
    .await
    .expect("the sequencer user can set up the streams");
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sequencer.run(async {
        let _ = stopped.await;
    }));

    let device = connect_as(&server, "device").await;
    assert_eq!(
        publish_as(&device, INTAKE_LIVE).await,
        Ok(()),
        "device publishes live check-ins"
    );
    assert!(
        publish_as(&device, INTAKE_IMPORT).await.is_err(),
        "device must not publish imports"
    );

    let importer = connect_as(&server, "importer").await;
    assert_eq!(
        publish_as(&importer, INTAKE_IMPORT).await,
        Ok(()),
        "importer publishes imports"
    );
    assert!(
        publish_as(&importer, INTAKE_LIVE).await.is_err(),
        "importer must not publish live check-ins"
    );

    let reader_js = jetstream::new(connect_as(&server, "reader").await);
    wait_for(
        Duration::from_secs(30),
        "two check-ins in the ledger",
        || async {
            let Ok(reader) = StreamReader::open(&reader_js, LEDGER_STREAM).await else {
                return false;
            };
            matches!(reader.bounds().await, Ok((_, 3)))
        },
    )
    .await;
    let reader = StreamReader::open(&reader_js, LEDGER_STREAM)
        .await
        .expect("reader opens the ledger");
    assert!(reader.get(2).await.expect("reader gets a record").is_some());
    assert!(
        reader.purge_below(2).await.is_err(),
        "reader must not purge the ledger"
    );

    let sequencer_js = jetstream::new(connect_as(&server, "sequencer").await);
    let ledger = StreamReader::open(&sequencer_js, LEDGER_STREAM)
        .await
        .expect("sequencer opens the ledger");
    assert!(
        ledger.purge_below(2).await.is_err(),
        "sequencer must not purge the ledger"
    );

    // The archiver may read and purge the ledger, and publish nothing.
    let archiver = connect_as(&server, "archiver").await;
    assert!(
        publish_as(&archiver, INTAKE_LIVE).await.is_err(),
        "archiver must not publish check-ins"
    );
    // The same calls `checkin archive` makes: info, get, an ordered read, purge.
    let archiver_js = jetstream::new(archiver);
    let ledger = StreamReader::open(&archiver_js, LEDGER_STREAM)
        .await
        .expect("archiver opens the ledger");
    assert!(
        ledger
            .get(1)
            .await
            .expect("archiver gets a record")
            .is_some()
    );
    let mut range = ledger.range(1, 2).await.expect("archiver reads a range");
    let mut read = 0;
    while let Some(message) = futures::StreamExt::next(&mut range).await {
        message.expect("archiver reads a record");
        read += 1;
    }
    assert_eq!(read, 2);
    assert_eq!(ledger.purge_below(3).await.expect("archiver purges"), 2);
    assert_eq!(
        reader.bounds().await.expect("ledger bounds"),
        (3, 3),
        "archiver purged the archived records"
    );
}
