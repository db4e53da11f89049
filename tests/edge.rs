//! The edge outbox and publisher against a real nats-server: check-ins
//! written while the server is down all reach the ledger once it is back.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_edge::{IntakeSubject, Outbox, Publisher, PublisherConfig};
use checkin_ledger::topology::INTAKE_STREAM;
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

/// Fills an outbox with `count` check-ins and returns their ids and bytes.
async fn fill(outbox: &Outbox, count: usize) -> Vec<(String, Vec<u8>)> {
    let submissions: Vec<(String, Vec<u8>)> = (0..count)
        .map(|index| {
            let id = EventId::from(Uuid::new_v4());
            let body = check_in(&id, &format!("c-{}", index % 50), now_shanghai());
            (id.to_string(), serde_json::to_vec(&body).unwrap())
        })
        .collect();
    enqueue(outbox, &submissions).await;
    submissions
}

async fn enqueue(outbox: &Outbox, submissions: &[(String, Vec<u8>)]) {
    let entries = submissions
        .iter()
        .map(|(id, bytes)| (IntakeSubject::Live, id.as_str(), bytes.as_slice()));
    outbox.enqueue_batch(entries).await.expect("enqueue works");
}

async fn drain(js: &jetstream::Context, outbox: &Outbox) -> checkin_edge::MetricsSnapshot {
    let mut publisher = Publisher::new(js.clone(), outbox.clone(), PublisherConfig::default());
    let metrics = publisher.metrics();
    tokio::time::timeout(Duration::from_secs(60), publisher.drain())
        .await
        .expect("outbox drained within 60 s")
        .expect("publisher failed");
    assert!(outbox.is_empty());
    metrics.snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_batch_is_stored_once() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    checkin_ledger::topology::ensure_streams(&js, &Default::default())
        .await
        .expect("streams are created");
    let outbox = Outbox::open(server.scratch("outbox")).expect("outbox opens");

    let first = fill(&outbox, 300).await;
    let metrics = drain(&js, &outbox).await;
    assert_eq!(metrics.acked, 300);
    assert_eq!(metrics.duplicates, 0);
    assert!(metrics.batches >= 1, "no atomic batch was committed");
    assert_eq!(stream_messages(&js, INTAKE_STREAM).await, 300);

    // The same bytes again, as after a crash that lost the removals, and a
    // few new ones in the same batch: JetStream rejects the batch as a whole,
    // and the one-by-one resend stores only the new check-ins.
    enqueue(&outbox, &first).await;
    fill(&outbox, 5).await;
    let metrics = drain(&js, &outbox).await;
    assert_eq!(metrics.acked, 305);
    assert_eq!(metrics.duplicates, 300);
    assert_eq!(metrics.retries, 0, "a rejected batch is no failure");
    assert_eq!(stream_messages(&js, INTAKE_STREAM).await, 305);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_without_atomic_publish_still_drains() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let settings = checkin_ledger::topology::TopologySettings::default();
    let mut intake = settings.intake_config();
    intake.allow_atomic_publish = false;
    js.create_stream(intake)
        .await
        .expect("older intake stream is created");
    checkin_ledger::topology::ensure_streams(&js, &settings)
        .await
        .expect("an intake stream without atomic publish is accepted");
    let outbox = Outbox::open(server.scratch("outbox")).expect("outbox opens");

    fill(&outbox, 300).await;
    let metrics = drain(&js, &outbox).await;
    assert_eq!(metrics.acked, 300);
    assert_eq!(metrics.batches, 0);
    assert_eq!(stream_messages(&js, INTAKE_STREAM).await, 300);
}
