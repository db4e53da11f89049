//! `checkin simulate` against a real nats-server and sequencer: valid
//! submissions land on the ledger, the deliberate defects in the rejected
//! stream, and a rerun with the same seed adds nothing.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use checkin_ledger::rejected::RejectedEntry;
use common::*;

/// Sites the simulator uses, as in the repository's checkin.toml.
const SIMULATED_SITES: &str = "\
[sites.sh-jingan]\nname = \"静安店\"\n\
[sites.sh-xuhui]\nname = \"徐汇店\"\nday_start_hour = 5\n\
[sites.bj-chaoyang]\nname = \"朝阳健身中心\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_run_records_valid_and_rejects_invalid() {
    let server = NatsServer::start();
    let data = server.scratch("simulate");
    let config = data.join("checkin.toml");
    std::fs::write(&config, format!("ledger = \"test\"\n{SIMULATED_SITES}")).unwrap();
    let js = jetstream::new(server.client().await);
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&js).await;

    let now = chrono::Utc::now().to_rfc3339();
    let args = [
        "simulate",
        "--devices",
        "4",
        "--customers",
        "30",
        "--rate",
        "150",
        "--duration",
        "2s",
        "--seed",
        "42",
        "--now",
        &now,
    ];
    let output = checkin_output(&server, &data, &config, &args);
    // 150 per second for 2 s; 2% of 300 are invalid on purpose.
    assert!(
        output.contains("sent / 已发送:                  300"),
        "{output}"
    );
    assert!(
        output.contains("invalid sent / 无效提交:        6"),
        "{output}"
    );

    wait_for_ledger(&js, 1 + 294, Duration::from_secs(60)).await;
    let ledger = read_ledger(&js).await;
    assert!(
        ledger.findings.is_empty(),
        "chain findings: {:?}",
        ledger.findings
    );
    let rejected = read_rejected(&js).await;
    assert_eq!(rejected.len(), 6);
    for message in &rejected {
        let entry = RejectedEntry::from_message(message);
        assert!(
            ["latitude_out_of_range", "invalid_method", "unknown_site"]
                .contains(&entry.reason.as_str()),
            "unexpected rejection {}",
            entry.reason
        );
    }

    // Same seed and reference time: byte-identical submissions, all dropped as resends.
    checkin_output(&server, &data, &config, &args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_ledger(&js, 1 + 294, Duration::from_secs(60)).await;
    assert_eq!(read_rejected(&js).await.len(), 6);
}
