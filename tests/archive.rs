//! `checkin archive` against a real nats-server: segments on disk, the
//! purge, continuing and rejected ranges, the sequencer after a purge, and
//! crashes at every step of the archiver.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use checkin_core::chain::ChainVerifier;
use checkin_core::{ChainHash, EventId, codec};
use checkin_ledger::archive::{ArchiveSet, Segment, segment_file_name};
use checkin_ledger::reader::{StoredMessage, StreamReader};
use checkin_ledger::topology::{INTAKE_LIVE, INTAKE_STREAM, LEDGER_STREAM, intake_message_id};
use common::*;
use futures::StreamExt;
use uuid::Uuid;

/// A ledger with a running sequencer.
struct Ledger {
    server: NatsServer,
    data: PathBuf,
    config: PathBuf,
    js: jetstream::Context,
    sequencer: Option<CheckinProcess>,
}

impl Ledger {
    async fn start() -> Self {
        let server = NatsServer::start();
        let data = server.scratch("data");
        let config = write_config(&data, "");
        let js = jetstream::new(server.client().await);
        let sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
        wait_for_genesis(&js).await;
        Self {
            server,
            data,
            config,
            js,
            sequencer: Some(sequencer),
        }
    }

    fn archive_dir(&self) -> PathBuf {
        self.server.scratch("archive")
    }

    /// Publishes `count` new check-ins and waits until the ledger's head is `expected_head`.
    async fn publish(&self, count: usize, expected_head: u64) -> Vec<(EventId, Vec<u8>)> {
        let submissions: Vec<(EventId, Vec<u8>)> = (0..count)
            .map(|index| {
                let id = EventId::from(Uuid::new_v4());
                let body = check_in(&id, &format!("c-{}", index % 50), now_shanghai());
                (id, serde_json::to_vec(&body).expect("check-in serialises"))
            })
            .collect();
        let payloads: Vec<(Option<String>, Vec<u8>)> = submissions
            .iter()
            .map(|(id, bytes)| {
                (
                    Some(intake_message_id(&id.to_string(), bytes)),
                    bytes.clone(),
                )
            })
            .collect();
        publish_all(&self.js, INTAKE_LIVE, &payloads).await;
        wait_for_head(&self.js, expected_head).await;
        submissions
    }

    fn archive(&self, args: &[&str]) -> Output {
        self.archive_with_env(args, None)
    }

    fn archive_with_env(&self, args: &[&str], fail_at: Option<&str>) -> Output {
        let mut command = checkin_command(&self.server, &self.data, &self.config);
        command.arg("archive").args(args);
        if let Some(step) = fail_at {
            command.env("CHECKIN_ARCHIVE_FAIL_AT", step);
        }
        command.output().expect("failed to run checkin archive")
    }

    fn stop_sequencer(&mut self) {
        if let Some(sequencer) = self.sequencer.take() {
            sequencer.kill_hard();
        }
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn assert_success(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "checkin archive failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn assert_failure_with(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "checkin archive succeeded unexpectedly"
    );
    assert!(
        stderr.contains(expected),
        "stderr lacks {expected:?}: {stderr}"
    );
}

/// Waits until the ledger's last sequence is `head` and intake is drained.
async fn wait_for_head(js: &jetstream::Context, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, last) = bounds(js).await;
        let intake = stream_messages(js, INTAKE_STREAM).await;
        assert!(
            last <= head,
            "ledger head {last} is past the expected {head}"
        );
        if last == head && intake == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ledger head stayed at {last} of {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bounds(js: &jetstream::Context) -> (u64, u64) {
    let reader = StreamReader::open(js, LEDGER_STREAM)
        .await
        .expect("ledger stream");
    reader.bounds().await.expect("ledger bounds")
}

async fn stream_records(js: &jetstream::Context) -> Vec<StoredMessage> {
    let reader = StreamReader::open(js, LEDGER_STREAM)
        .await
        .expect("ledger stream");
    let (first, last) = reader.bounds().await.expect("ledger bounds");
    let mut range = reader.range(first, last).await.expect("ledger range");
    let mut records = Vec::new();
    while let Some(message) = range.next().await {
        records.push(message.expect("ledger message"));
    }
    records
}

/// Reads the hash header of every record in the stream, by sequence.
async fn original_hashes(js: &jetstream::Context) -> HashMap<u64, ChainHash> {
    stream_records(js)
        .await
        .iter()
        .map(|message| (message.seq, message.hash_header().expect("hash header")))
        .collect()
}

/// Checks that archive and stream hold every record exactly once, with one
/// intact chain from genesis to the head that matches the original hashes.
/// Returns the archive's last sequence.
async fn assert_exactly_once(
    js: &jetstream::Context,
    dir: &Path,
    original: &HashMap<u64, ChainHash>,
) -> u64 {
    let archive = ArchiveSet::open(dir).expect("the archive opens");
    let (first, last) = bounds(js).await;
    assert_eq!(
        archive.last_seq() + 1,
        first,
        "archive ends right before the stream starts"
    );

    let mut verifier = ChainVerifier::new();
    let mut seqs = Vec::new();
    for message in archive.records() {
        let message = message.expect("archived record verifies");
        verifier.push(message.link());
        seqs.push(message.seq);
    }
    for message in stream_records(js).await {
        verifier.push(message.link());
        seqs.push(message.seq);
    }
    assert!(
        verifier.findings().is_empty(),
        "chain findings: {:?}",
        verifier.findings()
    );
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<u64>>(),
        "every record once, in order"
    );
    assert_eq!(verifier.head().seq, last);
    assert_eq!(
        Some(&verifier.head().hash),
        original.get(&last),
        "head hash unchanged"
    );
    for segment in archive.segments() {
        segment
            .for_each_record(|record| {
                assert_eq!(
                    Some(&record.hash),
                    original.get(&record.seq),
                    "seq {}",
                    record.seq
                );
                Ok::<(), checkin_ledger::archive::ArchiveError>(())
            })
            .expect("segment verifies");
    }
    archive.last_seq()
}

fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list archive")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_up_to_writes_segments_and_purges() {
    let mut ledger = Ledger::start().await;
    ledger.publish(300, 301).await;
    ledger.stop_sequencer();
    let original = original_hashes(&ledger.js).await;
    let dir = ledger.archive_dir();

    let stdout = assert_success(&ledger.archive(&[
        "--up-to",
        "120",
        "--to",
        path_arg(&dir),
        "--segment-records",
        "50",
    ]));
    assert!(
        stdout.contains("archived seq 1 to 120: 3 segments, 120 records"),
        "{stdout}"
    );
    let expected = vec![
        segment_file_name(1, 50),
        segment_file_name(51, 100),
        segment_file_name(101, 120),
    ];
    assert_eq!(segment_names(&dir), expected);
    assert_eq!(bounds(&ledger.js).await, (121, 301));
    let archive = ArchiveSet::open(&dir).expect("archive opens");
    assert_eq!(archive.last_hash(), original[&120]);
    assert_eq!(archive.ledger_id(), Some(original[&1]));
    assert_eq!(assert_exactly_once(&ledger.js, &dir, &original).await, 120);

    // A second run continues the archive; the same request again is a no-op.
    let stdout = assert_success(&ledger.archive(&[
        "--up-to",
        "200",
        "--to",
        path_arg(&dir),
        "--segment-records",
        "50",
    ]));
    assert!(
        stdout.contains("archived seq 121 to 200: 2 segments, 80 records"),
        "{stdout}"
    );
    assert_eq!(segment_names(&dir).len(), 5);
    assert_eq!(assert_exactly_once(&ledger.js, &dir, &original).await, 200);
    let stdout = assert_success(&ledger.archive(&["--up-to", "200", "--to", path_arg(&dir)]));
    assert!(stdout.contains("nothing to archive"), "{stdout}");
    assert_eq!(bounds(&ledger.js).await, (201, 301));

    // A request past the head archives up to the record before it.
    assert_success(&ledger.archive(&["--up-to", "1000", "--to", path_arg(&dir)]));
    assert_eq!(bounds(&ledger.js).await, (301, 301));
    assert_eq!(assert_exactly_once(&ledger.js, &dir, &original).await, 300);

    // Reading records back: tail from the stream, show from the archive.
    let tail = checkin_output(
        &ledger.server,
        &ledger.data,
        &ledger.config,
        &["ledger", "tail", "--json"],
    );
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let show_output = checkin_output(
        &ledger.server,
        &ledger.data,
        &ledger.config,
        &[
            "--archive-dir",
            path_arg(&dir),
            "ledger",
            "show",
            "5",
            "--json",
        ],
    );
    assert!(
        show_output.contains(&original[&5].to_hex()),
        "{show_output}"
    );
    let output = checkin_command(&ledger.server, &ledger.data, &ledger.config)
        .args(["ledger", "show", "5"])
        .output()
        .expect("run ledger show");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("was archived"));

    // A damaged segment is found and named before anything else happens.
    let damaged = dir.join(segment_file_name(51, 100));
    let mut bytes = std::fs::read(&damaged).expect("read segment");
    bytes[100] ^= 0x40;
    std::fs::write(&damaged, &bytes).expect("damage segment");
    let err = Segment::open(&damaged).expect_err("damage detected");
    assert!(
        err.to_string().contains(&damaged.display().to_string()),
        "{err}"
    );
    assert_failure_with(
        &ledger.archive(&["--up-to", "1000", "--to", path_arg(&dir)]),
        &segment_file_name(51, 100),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_rejects_ranges_that_do_not_continue() {
    let mut ledger = Ledger::start().await;
    ledger.publish(40, 41).await;
    ledger.stop_sequencer();
    let dir = ledger.archive_dir();
    assert_success(&ledger.archive(&["--up-to", "20", "--to", path_arg(&dir)]));

    // A fresh directory cannot start an archive once the stream was purged.
    let empty = ledger.server.scratch("empty-archive");
    assert_failure_with(
        &ledger.archive(&["--up-to", "30", "--to", path_arg(&empty)]),
        "archive_records_missing",
    );
    assert!(segment_names(&empty).is_empty());

    // Another ledger's archive is rejected.
    let mut other = Ledger::start().await;
    other.publish(10, 11).await;
    other.stop_sequencer();
    assert_failure_with(
        &other.archive(&["--up-to", "5", "--to", path_arg(&dir)]),
        "archive_other_ledger",
    );
    assert_eq!(bounds(&other.js).await, (1, 11), "nothing was purged");

    // An archive whose end is missing (last segment removed) no longer meets the stream.
    let partial = ledger.server.scratch("partial-archive");
    assert_success(&other.archive(&[
        "--up-to",
        "8",
        "--to",
        path_arg(&partial),
        "--segment-records",
        "4",
    ]));
    std::fs::remove_file(partial.join(segment_file_name(5, 8))).expect("remove last segment");
    assert_failure_with(
        &other.archive(&["--up-to", "9", "--to", path_arg(&partial)]),
        "archive_records_missing",
    );
    assert_eq!(bounds(&other.js).await, (9, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_before_date_uses_stored_time() {
    let mut ledger = Ledger::start().await;
    ledger.publish(30, 31).await;
    ledger.stop_sequencer();
    let original = original_hashes(&ledger.js).await;
    let dir = ledger.archive_dir();
    let today = chrono::Utc::now().date_naive();

    // Every record was stored today, so none was stored before 00:00 UTC today.
    let stdout =
        assert_success(&ledger.archive(&["--before", &today.to_string(), "--to", path_arg(&dir)]));
    assert!(stdout.contains("nothing to archive"), "{stdout}");
    assert_eq!(bounds(&ledger.js).await, (1, 31));

    let tomorrow = today.succ_opt().expect("a next day");
    let stdout = assert_success(&ledger.archive(&[
        "--before",
        &tomorrow.to_string(),
        "--to",
        path_arg(&dir),
    ]));
    assert!(stdout.contains("archived seq 1 to 30"), "{stdout}");
    assert_eq!(bounds(&ledger.js).await, (31, 31));
    assert_eq!(assert_exactly_once(&ledger.js, &dir, &original).await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequencer_keeps_chaining_after_archive() {
    let mut ledger = Ledger::start().await;
    let first_batch = ledger.publish(100, 101).await;
    let dir = ledger.archive_dir();

    // Archive while the sequencer runs; it keeps appending afterwards.
    assert_success(&ledger.archive(&[
        "--up-to",
        "80",
        "--to",
        path_arg(&dir),
        "--segment-records",
        "30",
    ]));
    assert_eq!(bounds(&ledger.js).await, (81, 101));
    ledger.publish(20, 121).await;

    // A resend of an archived check-in, under another message id so that
    // JetStream's duplicate window does not drop it first, is dropped by the
    // sequencer's dedupe index.
    let (archived_id, archived_bytes) = &first_batch[3];
    let resend = vec![(
        Some(format!("resend-{archived_id}")),
        archived_bytes.clone(),
    )];
    publish_all(&ledger.js, INTAKE_LIVE, &resend).await;
    ledger.publish(5, 126).await;

    // A restart with the same index starts on the purged stream.
    ledger.stop_sequencer();
    ledger.sequencer = Some(CheckinProcess::spawn(
        &ledger.server,
        &ledger.data,
        &ledger.config,
        &["sequencer"],
    ));
    ledger.publish(5, 131).await;

    // Without its index and without the archive, the sequencer cannot start.
    ledger.stop_sequencer();
    std::fs::remove_dir_all(ledger.data.join("sequencer")).expect("remove the dedupe index");
    let output = checkin_command(&ledger.server, &ledger.data, &ledger.config)
        .arg("sequencer")
        .output()
        .expect("run sequencer");
    assert!(
        !output.status.success(),
        "sequencer started without the archived records"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--archive-dir"), "{stderr}");

    // With the archive it rebuilds the index: archived ids are still dropped.
    ledger.sequencer = Some(CheckinProcess::spawn(
        &ledger.server,
        &ledger.data,
        &ledger.config,
        &["--archive-dir", path_arg(&dir), "sequencer"],
    ));
    let resend = vec![(
        Some(format!("resend-again-{archived_id}")),
        archived_bytes.clone(),
    )];
    publish_all(&ledger.js, INTAKE_LIVE, &resend).await;
    ledger.publish(5, 136).await;
    ledger.stop_sequencer();

    let archive = ArchiveSet::open(&dir).expect("archive opens");
    let mut verifier = ChainVerifier::new();
    let mut counts: HashMap<EventId, usize> = HashMap::new();
    let mut records: Vec<StoredMessage> = archive
        .records()
        .map(|record| record.expect("archived record"))
        .collect();
    records.extend(stream_records(&ledger.js).await);
    for message in &records {
        verifier.push(message.link());
        let record = codec::decode(&message.payload).expect("record decodes");
        if let Some(id) = record.body.event_id() {
            *counts.entry(id).or_default() += 1;
        }
    }
    assert!(
        verifier.findings().is_empty(),
        "chain findings: {:?}",
        verifier.findings()
    );
    assert_eq!(verifier.head().seq, 136);
    assert_eq!(counts.len(), 135, "every check-in once");
    assert!(
        counts.values().all(|count| *count == 1),
        "an id was recorded twice"
    );
    assert_eq!(counts.get(archived_id), Some(&1));

    // A projection whose checkpoint is below the stream's first record names the archive.
    let fresh = ledger.server.scratch("fresh-projector");
    let output = checkin_command(&ledger.server, &fresh, &ledger.config)
        .args(["project", "--until-head"])
        .output()
        .expect("run project");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("archived"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiver_crash_at_each_step_recovers() {
    let mut ledger = Ledger::start().await;
    ledger.publish(200, 201).await;
    ledger.stop_sequencer();
    let original = original_hashes(&ledger.js).await;
    let dir = ledger.archive_dir();
    let dir_arg = path_arg(&dir).to_string();

    let mut archived = 0u64;
    for (step, up_to) in [
        ("after_write", 40u64),
        ("after_rename", 80),
        ("after_verify", 120),
        ("after_purge", 160),
    ] {
        let up_to_arg = up_to.to_string();
        let args = [
            "--up-to",
            up_to_arg.as_str(),
            "--to",
            dir_arg.as_str(),
            "--segment-records",
            "15",
        ];
        let crashed = ledger.archive_with_env(&args, Some(step));
        assert!(
            !crashed.status.success(),
            "{step}: the archiver did not abort"
        );

        let (first, _) = bounds(&ledger.js).await;
        if step == "after_purge" {
            assert_eq!(first, up_to + 1, "{step}: the purge ran before the crash");
        } else {
            assert_eq!(
                first,
                archived + 1,
                "{step}: nothing is purged before every segment is verified"
            );
        }

        assert_success(&ledger.archive(&args));
        let names = segment_names(&dir);
        assert!(
            names.iter().all(|name| !name.ends_with(".tmp")),
            "{step}: stale .tmp left: {names:?}"
        );
        archived = assert_exactly_once(&ledger.js, &dir, &original).await;
        assert_eq!(archived, up_to, "{step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiver_killed_mid_run_recovers() {
    let mut ledger = Ledger::start().await;
    ledger.publish(12_000, 12_001).await;
    ledger.stop_sequencer();
    let original = original_hashes(&ledger.js).await;
    let dir = ledger.archive_dir();
    let args = [
        "archive",
        "--up-to",
        "11000",
        "--to",
        path_arg(&dir),
        "--segment-records",
        "500",
    ];

    let mut archiver = CheckinProcess::spawn(&ledger.server, &ledger.data, &ledger.config, &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_names(&dir)
        .iter()
        .filter(|name| name.ends_with(".ckar"))
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "no segment appeared within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let was_running = archiver.is_running();
    archiver.kill_hard();
    println!("archiver running when killed: {was_running}");

    let (first, _) = bounds(&ledger.js).await;
    if was_running {
        assert_eq!(
            first, 1,
            "nothing is purged before every segment is verified"
        );
    }
    assert_success(&ledger.archive(&args[1..]));
    assert_eq!(
        assert_exactly_once(&ledger.js, &dir, &original).await,
        11_000
    );
}
