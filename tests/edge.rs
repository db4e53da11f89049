//! The edge outbox and publisher against a real nats-server: check-ins
//! written while the server is down all reach the ledger once it is back.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_edge::{IntakeSubject, Outbox, Publisher, PublisherConfig};
use common::*;
use uuid::Uuid;

const CHECK_INS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_filled_while_server_down_arrives_once() {
    let mut server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = write_config(&data, "");
    let outbox_dir = server.scratch("outbox");

    // Let a sequencer create the streams, then take everything down.
    let sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&jetstream::new(server.client().await)).await;
    sequencer.kill_hard();
    server.stop();

    let outbox = Outbox::open(&outbox_dir).expect("outbox opens");
    let ids: Vec<EventId> = (0..CHECK_INS)
        .map(|_| EventId::from(Uuid::new_v4()))
        .collect();
    for (index, id) in ids.iter().enumerate() {
        let body = check_in(id, &format!("c-{}", index % 50), now_shanghai());
        let bytes = serde_json::to_vec(&body).unwrap();
        outbox
            .enqueue(IntakeSubject::Live, &id.to_string(), &bytes)
            .await
            .expect("enqueue works without a server");
    }
    assert_eq!(outbox.len(), CHECK_INS);

    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .expect("client starts without a server");
    let config_fast = PublisherConfig {
        window: 64,
        ack_timeout: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..PublisherConfig::default()
    };
    let mut publisher = Publisher::new(jetstream::new(client), outbox.clone(), config_fast);
    let metrics = publisher.metrics();
    let draining = tokio::spawn(async move { publisher.drain().await });

    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = metrics.snapshot();
    assert_eq!(
        before.acked, 0,
        "nothing can be acknowledged while the server is down"
    );
    assert!(
        before.retries > 0,
        "publishes should have failed and been retried"
    );
    assert_eq!(
        outbox.len(),
        CHECK_INS,
        "no entry may leave the outbox unacknowledged"
    );

    server.start_again();
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    tokio::time::timeout(Duration::from_secs(60), draining)
        .await
        .expect("outbox drained within 60 s")
        .expect("publisher task panicked")
        .expect("publisher failed");
    assert!(outbox.is_empty());
    assert!(metrics.snapshot().acked >= CHECK_INS as u64);

    let js = jetstream::new(server.client().await);
    wait_for_ledger(&js, CHECK_INS as u64 + 1, Duration::from_secs(60)).await;
    let ledger = read_ledger(&js).await;
    let counts = ledger.id_counts();
    assert!(
        counts.values().all(|count| *count == 1),
        "an id was recorded twice"
    );
    let recorded: HashSet<EventId> = counts.keys().copied().collect();
    let enqueued: HashSet<EventId> = ids.into_iter().collect();
    assert_eq!(recorded, enqueued);
}
