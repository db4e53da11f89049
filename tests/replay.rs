//! `checkin replay`: read models rebuilt from archive segments and the
//! stream equal the live projections, and stop where asked.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_ledger::topology::{INTAKE_LIVE, intake_message_id};
use common::*;
use uuid::Uuid;

/// Publishes `count` check-ins by a few customers, a minute apart, and
/// waits until the ledger contains `head` records.
async fn publish(js: &jetstream::Context, count: usize, head: u64) {
    let start = now_shanghai() - chrono::Duration::hours(30);
    let payloads: Vec<(Option<String>, Vec<u8>)> = (0..count)
        .map(|index| {
            let id = EventId::from(Uuid::new_v4());
            let at = start + chrono::Duration::minutes(7 * index as i64);
            let bytes =
                serde_json::to_vec(&check_in(&id, &format!("c-{}", index % 9), at)).unwrap();
            (Some(intake_message_id(&id.to_string(), &bytes)), bytes)
        })
        .collect();
    publish_all(js, INTAKE_LIVE, &payloads).await;
    wait_for_ledger(js, head, Duration::from_secs(60)).await;
}

/// Parses digest JSON lines into model name -> (seq, digest).
fn digests(output: &str) -> BTreeMap<String, (u64, String)> {
    output
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("digest JSON");
            (
                value["model"].as_str().unwrap().to_owned(),
                (
                    value["seq"].as_u64().unwrap(),
                    value["digest"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn replay_from_archive_equals_live() {
    let server = NatsServer::start();
    let data = server.scratch("data");
    let config = write_config(&data, "");
    let js = jetstream::new(server.client().await);
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&js).await;

    publish(&js, 120, 121).await;
    // Records 1-121 were recorded by now; everything later is recorded after it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&js, 80, 201).await;

    // Replays from the stream alone, before anything is archived.
    let to_seq = server.scratch("to-seq");
    let before_archive = digests(&checkin_output(
        &server,
        &data,
        &config,
        &[
            "replay",
            "--into",
            path(&to_seq),
            "--to-seq",
            "121",
            "--json",
        ],
    ));
    assert_eq!(before_archive.len(), 2, "{before_archive:?}");
    assert!(before_archive.values().all(|(seq, _)| *seq == 121));

    checkin_output(&server, &data, &config, &["project", "--until-head"]);
    let live = digests(&checkin_output(
        &server,
        &data,
        &config,
        &["project", "digest", "--json"],
    ));
    assert!(live.values().all(|(seq, _)| *seq == 201), "{live:?}");

    let archive = server.scratch("archive");
    checkin_output(
        &server,
        &data,
        &config,
        &["archive", "--up-to", "150", "--to", path(&archive)],
    );

    // The auditor checks archive + stream as one chain; the stream alone
    // lacks its start.
    let audit = checkin_command(&server, &data, &config)
        .args(["audit", "verify", "--json", "--archive", path(&archive)])
        .output()
        .unwrap();
    assert_eq!(
        audit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    let stream_only = checkin_command(&server, &data, &config)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(stream_only.status.code(), Some(1));

    // Without the archive the replay cannot start at seq 1.
    let refused = checkin_command(&server, &data, &config)
        .args(["replay", "--into", path(&server.scratch("no-archive"))])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--archive"), "{stderr}");

    let full = server.scratch("full");
    let replayed = digests(&checkin_output(
        &server,
        &data,
        &config,
        &[
            "replay",
            "--into",
            path(&full),
            "--archive",
            path(&archive),
            "--json",
        ],
    ));
    assert_eq!(
        replayed, live,
        "archive + stream replay equals the live models"
    );
    // The replayed directory is a data directory: project digest reads it the same way.
    let reread = digests(&checkin_output(
        &server,
        &full,
        &config,
        &["project", "digest", "--json"],
    ));
    assert_eq!(reread, live);

    let partial = server.scratch("partial");
    let replayed = digests(&checkin_output(
        &server,
        &data,
        &config,
        &[
            "replay",
            "--into",
            path(&partial),
            "--archive",
            path(&archive),
            "--to-seq",
            "121",
            "--json",
        ],
    ));
    assert_eq!(replayed, before_archive, "--to-seq 121 from the archive");

    let as_of = server.scratch("as-of");
    let replayed = digests(&checkin_output(
        &server,
        &data,
        &config,
        &[
            "replay",
            "--into",
            path(&as_of),
            "--archive",
            path(&archive),
            "--as-of",
            &between,
            "--json",
        ],
    ));
    assert_eq!(replayed, before_archive, "--as-of between the two phases");

    // A second replay into the same directory is refused, not merged.
    let again = checkin_command(&server, &data, &config)
        .args(["replay", "--into", path(&full), "--archive", path(&archive)])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
