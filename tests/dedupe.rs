//! Each event id is recorded once, whatever resends, restarts and concurrent
//! writers do, and the chain stays whole.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_ledger::topology::{INTAKE_LIVE, intake_message_id};
use common::*;
use uuid::Uuid;

fn new_ids(count: usize) -> Vec<EventId> {
    (0..count).map(|_| EventId::from(Uuid::new_v4())).collect()
}

fn payload(id: &EventId, index: usize) -> (Option<String>, Vec<u8>) {
    let at = now_shanghai() - chrono::Duration::seconds(index as i64 % 3600);
    let body = check_in(id, &format!("c-{}", index % 700), at);
    let bytes = serde_json::to_vec(&body).expect("check-in serialises");
    (Some(intake_message_id(&id.to_string(), &bytes)), bytes)
}

/// Asserts the ledger contains genesis plus exactly `ids`, each once, on a clean chain.
async fn assert_ledger_holds(js: &jetstream::Context, ids: &[EventId]) {
    let ledger = read_ledger(js).await;
    assert!(
        ledger.findings.is_empty(),
        "chain findings: {:?}",
        ledger.findings
    );
    assert_eq!(
        ledger.head.seq,
        ids.len() as u64 + 1,
        "records beyond genesis"
    );

    let counts = ledger.id_counts();
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "ids recorded more than once: {twice:?}");
    let expected: HashSet<EventId> = ids.iter().copied().collect();
    let recorded: HashSet<EventId> = counts.keys().copied().collect();
    assert_eq!(recorded, expected, "recorded ids differ from published ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_beyond_duplicate_window_recorded_once() {
    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = write_config(&data, "[intake]\nduplicate_window_s = 1\n");
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;

    let ids = new_ids(9_000);
    let payloads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| payload(id, index))
        .collect();
    let mut first_round: Vec<_> = Vec::with_capacity(9_500);
    for (index, submission) in payloads.iter().enumerate() {
        first_round.push(submission.clone());
        // Every 18th submission is resent at once, inside JetStream's window.
        if index % 18 == 0 {
            first_round.push(submission.clone());
        }
    }
    let dropped_by_jetstream = publish_all(&js, INTAKE_LIVE, &first_round).await;

    // The second round comes after the 1 s window, so only the sequencer's index can catch it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let late: Vec<_> = (0..500).map(|index| payloads[index * 17].clone()).collect();
    let late_dropped = publish_all(&js, INTAKE_LIVE, &late).await;

    wait_for_ledger(&js, 9_001, Duration::from_secs(120)).await;
    assert_ledger_holds(&js, &ids).await;
    assert!(
        dropped_by_jetstream > 0,
        "no resend fell inside the duplicate window"
    );
    assert_eq!(late_dropped, 0, "late resends must reach the sequencer");
    assert!(
        read_rejected(&js).await.is_empty(),
        "no submission should be refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_rebuilt_from_ledger_when_deleted() {
    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = write_config(&data, "[intake]\nduplicate_window_s = 1\n");
    let js = jetstream::new(server.client().await);
    let ids = new_ids(1_000);
    let payloads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| payload(id, index))
        .collect();

    let sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&js).await;
    publish_all(&js, INTAKE_LIVE, &payloads).await;
    wait_for_ledger(&js, 1_001, Duration::from_secs(60)).await;
    sequencer.kill_hard();

    std::fs::remove_dir_all(data.join("sequencer")).expect("failed to delete the index");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    publish_all(&js, INTAKE_LIVE, &payloads[..300]).await;

    wait_for_ledger(&js, 1_001, Duration::from_secs(60)).await;
    // The resends are drained from intake; give a wrongly appended record time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ledger_holds(&js, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sequencers_keep_one_chain() {
    let server = NatsServer::start();
    let config_dir = server.scratch("config");
    let config = write_config(&config_dir, "[sequencer]\nbatch_size = 200\n");
    let first = server.scratch("first");
    let second = server.scratch("second");
    let _a = CheckinProcess::spawn(&server, &first, &config, &["sequencer"]);
    let _b = CheckinProcess::spawn(&server, &second, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;

    let ids = new_ids(10_000);
    let payloads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| payload(id, index))
        .collect();
    publish_all(&js, INTAKE_LIVE, &payloads).await;

    wait_for_ledger(&js, 10_001, Duration::from_secs(180)).await;
    assert_ledger_holds(&js, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_with_sync_always() {
    let server = NatsServer::start_with(true);
    let data = server.scratch("sequencer");
    let config = write_config(
        &data,
        "[sequencer]\nappend = \"pipelined\"\ndurability = \"durable\"\n",
    );
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;

    let ids = new_ids(2_000);
    let payloads: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| payload(id, index))
        .collect();
    publish_all(&js, INTAKE_LIVE, &payloads).await;

    wait_for_ledger(&js, 2_001, Duration::from_secs(120)).await;
    assert_ledger_holds(&js, &ids).await;
}
