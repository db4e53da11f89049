//! Killing the sequencer with SIGKILL at random points loses no check-in and
//! records none twice.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_ledger::topology::{INTAKE_LIVE, intake_message_id};
use common::*;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const SUBMISSIONS: usize = 20_000;
const KILLS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequencer_killed_five_times_loses_nothing() {
    let seed: u64 = rand::rng().random();
    println!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = write_config(&data, "[sequencer]\nbatch_size = 500\n");
    let js = jetstream::new(server.client().await);

    let ids: Vec<EventId> = (0..SUBMISSIONS)
        .map(|_| EventId::from(Uuid::new_v4()))
        .collect();
    let payloads: Vec<(Option<String>, Vec<u8>)> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let body = check_in(id, &format!("c-{}", index % 900), now_shanghai());
            let bytes = serde_json::to_vec(&body).expect("check-in serialises");
            (Some(intake_message_id(&id.to_string(), &bytes)), bytes)
        })
        .collect();

    // The sequencer creates the streams; publish once they exist.
    let mut sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_ledger(&js, 1, Duration::from_secs(30)).await;

    let publisher_js = js.clone();
    let publisher = tokio::spawn(async move {
        for window in payloads.chunks(1_000) {
            publish_all(&publisher_js, INTAKE_LIVE, window).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });

    for kill in 0..KILLS {
        let delay = rng.random_range(300..1_500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        assert!(
            sequencer.is_running(),
            "sequencer exited by itself before kill {kill}"
        );
        sequencer.kill_hard();
        sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    }
    publisher.await.expect("publisher task panicked");

    wait_for_ledger(&js, SUBMISSIONS as u64 + 1, Duration::from_secs(240)).await;
    let ledger = read_ledger(&js).await;
    assert!(
        ledger.findings.is_empty(),
        "chain findings: {:?}",
        ledger.findings
    );
    assert_eq!(ledger.head.seq, SUBMISSIONS as u64 + 1);

    let counts = ledger.id_counts();
    assert!(
        counts.values().all(|count| *count == 1),
        "an id was recorded twice"
    );
    let recorded: HashSet<EventId> = counts.keys().copied().collect();
    let published: HashSet<EventId> = ids.iter().copied().collect();
    assert_eq!(
        recorded, published,
        "recorded ids differ from published ids"
    );
    assert!(
        read_rejected(&js).await.is_empty(),
        "no submission should be refused"
    );
}
