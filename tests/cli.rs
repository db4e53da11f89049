//! The README's first steps, through the real binary: a sample check-in
//! shows in `ledger tail`, a sample with latitude 121.47 in `rejected tail`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use serde_json::Value;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Runs `checkin --nats URL ARGS…` and returns its standard output; panics on failure.
fn checkin(server: &NatsServer, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_checkin"))
        .arg("--nats")
        .arg(server.url())
        .args(args)
        .output()
        .expect("failed to run checkin");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "checkin {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_samples_reach_ledger_and_rejected() {
    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = repo_file("checkin.toml");
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;

    let sample = repo_file("examples/check-in.json");
    let published = checkin(
        &server,
        &["publish", "--at-now", sample.to_str().expect("utf-8 path")],
    );
    let sample_json: Value =
        serde_json::from_slice(&std::fs::read(&sample).expect("sample")).expect("sample is JSON");
    let sample_id = sample_json["id"].as_str().expect("sample id");
    assert!(
        published.starts_with(sample_id),
        "publish prints the id: {published}"
    );
    assert!(
        published.contains("accepted"),
        "publish reports acceptance: {published}"
    );

    let bad = repo_file("examples/bad-latitude.json");
    checkin(
        &server,
        &["publish", "--at-now", bad.to_str().expect("utf-8 path")],
    );
    wait_for_ledger(&js, 2, Duration::from_secs(30)).await;
    wait_for(
        Duration::from_secs(30),
        "one rejected submission",
        || async { read_rejected(&js).await.len() == 1 },
    )
    .await;

    let tail = checkin(&server, &["ledger", "tail", "-n", "1", "--json"]);
    let record: Value = serde_json::from_str(tail.trim()).expect("ledger tail prints JSON");
    assert_eq!(record["seq"], 2);
    assert_eq!(record["kind"], "check_in");
    assert_eq!(record["event_id"], sample_id);
    assert_eq!(record["site"], "sh-jingan");
    assert_eq!(record["activity"], "瑜伽课");
    assert_eq!(record["hash_matches_body"], true);
    assert_eq!(record["hash"].as_str().map(str::len), Some(64));
    assert_eq!(record["prev"].as_str().map(str::len), Some(64));

    let rejected = checkin(&server, &["rejected", "tail", "-n", "1", "--json"]);
    let entry: Value = serde_json::from_str(rejected.trim()).expect("rejected tail prints JSON");
    assert_eq!(entry["reason"], "latitude_out_of_range");
    assert_eq!(entry["field"], "location.lat");
    assert!(
        entry["message"]
            .as_str()
            .is_some_and(|text| text.contains("121.47"))
    );
    assert!(
        entry["message_zh"]
            .as_str()
            .is_some_and(|text| text.contains("纬度"))
    );

    let human = checkin(&server, &["ledger", "show", "2"]);
    assert!(
        human.contains("seq 2  check_in  (hash ok)"),
        "ledger show is readable: {human}"
    );

    // The corrected submission keeps its id and comes within the duplicate window.
    let mut corrected: Value =
        serde_json::from_slice(&std::fs::read(&bad).expect("sample")).expect("JSON");
    corrected["location"] = serde_json::json!({"lat": 31.23, "lon": 121.47});
    let corrected_path = server.scratch("input").join("corrected.json");
    std::fs::write(
        &corrected_path,
        serde_json::to_vec(&corrected).expect("serialises"),
    )
    .expect("write");
    let published = checkin(
        &server,
        &[
            "publish",
            "--at-now",
            corrected_path.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        published.contains("accepted"),
        "corrected resend reaches intake: {published}"
    );
    wait_for_ledger(&js, 3, Duration::from_secs(30)).await;
    let tail = checkin(&server, &["ledger", "tail", "-n", "1", "--json"]);
    let record: Value = serde_json::from_str(tail.trim()).expect("ledger tail prints JSON");
    assert_eq!(record["event_id"], corrected["id"]);
    assert_eq!(record["location"]["lat"], 31.23);

    // The read models of the same ledger, through the projector and the query commands.
    let models = server.scratch("models");
    let with_data = |args: &[&str]| -> Vec<String> {
        let mut full = vec![
            "--data-dir".to_string(),
            models.to_str().unwrap().to_string(),
            "--config".into(),
            config.to_str().unwrap().into(),
        ];
        full.extend(args.iter().map(|arg| arg.to_string()));
        full
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        checkin(&server, &refs)
    };
    run(with_data(&["project", "--until-head"]));

    let customer: Value =
        serde_json::from_str(run(with_data(&["query", "customer", "c-10086", "--json"])).trim())
            .expect("JSON");
    // Two check-ins seconds apart at one site: one visit, a new customer.
    assert_eq!(customer["check_ins"], 2);
    assert_eq!(customer["visits"], 1);
    assert_eq!(customer["distinct_sites"], 1);
    assert_eq!(customer["segment"], "new");
    assert_eq!(
        customer["recent_check_ins"].as_array().map(Vec::len),
        Some(2)
    );

    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive()
        .to_string();
    let site = run(with_data(&[
        "query",
        "site",
        "sh-jingan",
        "--from",
        &today,
        "--to",
        &today,
        "--json",
    ]));
    let day: Value = serde_json::from_str(site.trim()).expect("JSON");
    assert_eq!(day["check_ins"], 2);
    assert_eq!(day["visits"], 1);
    assert_eq!(day["unique_customers"], 1);

    let output = Command::new(env!("CARGO_BIN_EXE_checkin"))
        .args(with_data(&["query", "segment", "loyal"]))
        .output()
        .expect("failed to run checkin");
    assert!(!output.status.success(), "an unknown segment is an error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown segment"));
}

/// Runs `checkin ARGS…` with its standard output closed before it writes, as
/// `checkin ledger tail | head` leaves it once `head` has exited; returns
/// the exit code and standard error.
fn run_with_closed_stdout(
    server: &NatsServer,
    data: &Path,
    config: &Path,
    args: &[&str],
) -> (Option<i32>, String) {
    let mut child = checkin_command(server, data, config)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to start checkin");
    // Connecting to NATS takes far longer than this, so every write fails with EPIPE.
    drop(child.stdout.take());
    let output = child
        .wait_with_output()
        .expect("failed to wait for checkin");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_ends_commands_cleanly() {
    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = repo_file("checkin.toml");
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;
    let bad = repo_file("examples/bad-latitude.json");
    checkin(
        &server,
        &["publish", "--at-now", bad.to_str().expect("utf-8 path")],
    );
    wait_for(
        Duration::from_secs(30),
        "one rejected submission",
        || async { read_rejected(&js).await.len() == 1 },
    )
    .await;

    let commands: [&[&str]; 5] = [
        &["ledger", "tail"],
        &["ledger", "tail", "--json"],
        &["ledger", "show", "1"],
        &["rejected", "tail"],
        &["audit", "verify"],
    ];
    for args in commands {
        let (code, stderr) = run_with_closed_stdout(&server, &data, &config, args);
        assert!(
            !stderr.contains("panicked"),
            "checkin {args:?} panicked on a closed pipe: {stderr}"
        );
        assert_eq!(
            code,
            Some(0),
            "checkin {args:?} exit code on a closed pipe: {stderr}"
        );
    }
}

#[test]
fn query_without_models_is_an_error() {
    let empty = tempfile::tempdir().expect("failed to create a temporary directory");
    let config = repo_file("checkin.toml");
    let queries: [&[&str]; 3] = [
        &[
            "site",
            "sh-jingan",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-02",
        ],
        &["customer", "c-10086"],
        &["segment", "active"],
    ];
    for query in queries {
        // Port 9 (discard) is never asked: the query fails before it would use the API.
        let output = Command::new(env!("CARGO_BIN_EXE_checkin"))
            .arg("--data-dir")
            .arg(empty.path())
            .arg("--config")
            .arg(&config)
            .args(["--api", "http://127.0.0.1:9", "query"])
            .args(query)
            .output()
            .expect("failed to run checkin");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "query {query:?} succeeded");
        assert!(
            stderr.contains("no read models in"),
            "query {query:?} names the missing models: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "query {query:?} printed figures: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    assert!(
        !empty.path().join("models").exists(),
        "a failed query creates no models"
    );
}
