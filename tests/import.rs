//! `checkin import foursquare` against a real nats-server and sequencer:
//! every valid row is recorded once, bad rows are reported by line number,
//! a second import adds nothing, and a killed import loses nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::{EventId, RecordBody};
use checkin_edge::foursquare;
use common::*;

/// Venue with check-ins on four local days in the test file.
const VENUE: &str = "fsq-4b21aee7f964a5201b4024e3";

fn small_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/foursquare-small.tsv")
}

fn import_args(file: &Path) -> Vec<String> {
    vec![
        "import".into(),
        "foursquare".into(),
        file.display().to_string(),
        "--site-tz".into(),
        "America/New_York".into(),
    ]
}

/// Runs the import to completion and returns its exit code, standard output and standard error.
fn run_import(
    server: &NatsServer,
    data: &Path,
    config: &Path,
    file: &Path,
) -> (i32, String, String) {
    let output = checkin_command(server, data, config)
        .args(import_args(file))
        .output()
        .expect("failed to run checkin import");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Returns the `source_line` attribute of every check-in on the ledger.
async fn recorded_lines(js: &jetstream::Context) -> Vec<u64> {
    let ledger = read_ledger(js).await;
    assert!(
        ledger.findings.is_empty(),
        "chain findings: {:?}",
        ledger.findings
    );
    let mut lines = Vec::new();
    for (_, record) in ledger.records {
        if let RecordBody::CheckIn(check_in) = record.body {
            let line = check_in
                .attributes
                .iter()
                .find(|(key, _)| key == "source_line")
                .map(|(_, value)| value.parse::<u64>().expect("numeric source_line"))
                .expect("imported check-in has source_line");
            lines.push(line);
        }
    }
    lines.sort_unstable();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_file_imports_each_row_once() {
    let server = NatsServer::start();
    let data = server.scratch("import");
    let config = write_config(&data, "");
    let js = jetstream::new(server.client().await);
    let file = small_file();

    // First run: the three venues are unknown, so they are registered and nothing is published.
    let (code, stdout, _) = run_import(&server, &data, &config, &file);
    assert_eq!(code, 3, "first run should only register sites: {stdout}");
    assert!(stdout.contains("wrote 3 new sites"), "{stdout}");
    let sites_dir = data.join("sites.d");
    let site_files: Vec<_> = std::fs::read_dir(&sites_dir).unwrap().collect();
    assert_eq!(site_files.len(), 1);
    let site_text = std::fs::read_to_string(site_files[0].as_ref().unwrap().path()).unwrap();
    assert!(
        site_text.contains(&format!("[sites.{VENUE}]")),
        "{site_text}"
    );
    assert!(site_text.contains("America/New_York"), "{site_text}");

    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&js).await;

    let (code, stdout, stderr) = run_import(&server, &data, &config, &file);
    assert_eq!(code, 0, "import failed: {stderr}");
    // 18 lines: one empty, 5 invalid, line 7 repeats line 2 byte for byte.
    assert!(
        stdout.contains("rows read / 读取行数:               17"),
        "{stdout}"
    );
    assert!(
        stdout.contains("submitted / 已提交:                 11"),
        "{stdout}"
    );
    assert!(
        stdout.contains("invalid rows / 无效行:              5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("duplicates in file / 文件内重复行:  1"),
        "{stdout}"
    );
    for expected in [
        "line 7: duplicate_row: same bytes as line 2",
        "line 11: invalid_utf8",
        "line 12: wrong_column_count",
        "line 13: invalid_number",
        "line 14: invalid_time",
        "line 17: invalid_offset",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    wait_for_ledger(&js, 12, Duration::from_secs(30)).await;
    assert_eq!(
        recorded_lines(&js).await,
        [1, 2, 3, 4, 5, 6, 8, 9, 10, 15, 18]
    );
    assert!(
        read_rejected(&js).await.is_empty(),
        "no row should be rejected"
    );

    // Second run: same ids and bytes, so intake or the sequencer drops every one.
    let (code, _, stderr) = run_import(&server, &data, &config, &file);
    assert_eq!(code, 0, "second import failed: {stderr}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_ledger(&js, 12, Duration::from_secs(30)).await;
    assert_eq!(recorded_lines(&js).await.len(), 11);

    // Per local day in New York. Line 1 is 22:10 on the 24th. Line 4 is
    // 23:59:59 on the 25th and line 5 is midnight of the 26th. Line 6, with
    // its +11:00 offset, is 17:22 on the 27th.
    drop(_sequencer);
    checkin_output(&server, &data, &config, &["project", "--until-head"]);
    let days = checkin_output(
        &server,
        &data,
        &config,
        &[
            "--api",
            "http://127.0.0.1:9",
            "query",
            "site",
            VENUE,
            "--from",
            "2012-12-23",
            "--to",
            "2012-12-31",
            "--json",
        ],
    );
    let mut check_ins = BTreeMap::new();
    for line in days.lines() {
        let day: serde_json::Value = serde_json::from_str(line).expect("JSON day");
        let count = day["check_ins"].as_u64().expect("check_ins");
        if count > 0 {
            check_ins.insert(day["date"].as_str().unwrap().to_string(), count);
        }
    }
    let expected: BTreeMap<String, u64> = [
        ("2012-12-24", 1),
        ("2012-12-25", 3),
        ("2012-12-26", 1),
        ("2012-12-27", 2),
    ]
    .into_iter()
    .map(|(date, count)| (date.to_string(), count))
    .collect();
    assert_eq!(check_ins, expected);

    // Every venue and day against tools/count_foursquare.py, a counter
    // written separately from the Rust importer and read models.
    let counted = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/count_foursquare.py"))
        .arg(&file)
        .args(["--tz", "America/New_York"])
        .output()
        .expect("failed to run python3 tools/count_foursquare.py");
    assert!(
        counted.status.success(),
        "count_foursquare.py failed: {}",
        String::from_utf8_lossy(&counted.stderr)
    );
    let mut independent: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for line in String::from_utf8(counted.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "unexpected counter line {line:?}");
        independent
            .entry(fields[0].to_string())
            .or_default()
            .insert(fields[1].to_string(), fields[2].parse().unwrap());
    }
    assert_eq!(independent.len(), 3, "venues counted: {independent:?}");
    for (venue, days) in &independent {
        let output = checkin_output(
            &server,
            &data,
            &config,
            &[
                "--api",
                "http://127.0.0.1:9",
                "query",
                "site",
                venue,
                "--from",
                "2012-12-01",
                "--to",
                "2013-01-31",
                "--json",
            ],
        );
        let mut queried = BTreeMap::new();
        for line in output.lines() {
            let day: serde_json::Value = serde_json::from_str(line).expect("JSON day");
            let count = day["check_ins"].as_u64().expect("check_ins");
            if count > 0 {
                queried.insert(day["date"].as_str().unwrap().to_string(), count);
            }
        }
        assert_eq!(&queried, days, "per-day check-ins of {venue}");
    }
}

/// Writes `rows` valid rows over `venues` venues and returns the path.
fn write_large_file(dir: &Path, rows: usize, venues: usize) -> PathBuf {
    let start = chrono::DateTime::parse_from_rfc3339("2012-12-01T00:00:00Z").unwrap();
    let mut text = String::new();
    for row in 0..rows {
        let at = start + chrono::Duration::seconds(row as i64 * 37);
        let venue = format!("{:024x}", 0xabc000 + row % venues);
        text.push_str(&format!(
            "{}\t{venue}\t4bf58dd8d48988d116941735\tBar\t40.7{:04}\t-73.9{:04}\t-300\t{}\n",
            row % 500,
            row % 9999,
            row % 7919,
            at.format("%a %b %d %H:%M:%S +0000 %Y")
        ));
    }
    let path = dir.join("large.tsv");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_killed_and_rerun_records_once() {
    const ROWS: usize = 30_000;
    let server = NatsServer::start();
    let data = server.scratch("import");
    let config = write_config(&data, "");
    let js = jetstream::new(server.client().await);
    let file = write_large_file(&data, ROWS, 40);

    let (code, stdout, _) = run_import(&server, &data, &config, &file);
    assert_eq!(code, 3, "first run should only register sites: {stdout}");
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&js).await;

    let args = import_args(&file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut import = CheckinProcess::spawn(&server, &data, &config, &args);
    wait_for(
        Duration::from_secs(60),
        "the first imported records",
        || async { stream_messages(&js, checkin_ledger::topology::LEDGER_STREAM).await > 1 },
    )
    .await;
    assert!(
        import.is_running(),
        "import finished before it could be killed"
    );
    import.kill_hard();
    let recorded_at_kill = stream_messages(&js, checkin_ledger::topology::LEDGER_STREAM).await;
    println!("ledger records when the import was killed: {recorded_at_kill}");

    let (code, _, stderr) = run_import(&server, &data, &config, &file);
    assert_eq!(code, 0, "rerun failed: {stderr}");
    wait_for_ledger(&js, ROWS as u64 + 1, Duration::from_secs(180)).await;

    let identity = foursquare::identify(&file).unwrap();
    let expected: HashSet<EventId> = (1..=ROWS as u64)
        .map(|line| EventId::from(identity.event_id(line)))
        .collect();
    let ledger = read_ledger(&js).await;
    let counts = ledger.id_counts();
    assert!(
        counts.values().all(|count| *count == 1),
        "an id was recorded twice"
    );
    let recorded: HashSet<EventId> = counts.keys().copied().collect();
    assert_eq!(recorded.len(), ROWS);
    assert_eq!(
        recorded, expected,
        "recorded ids differ from the file's ids"
    );
    let lines: BTreeSet<u64> = recorded_lines(&js).await.into_iter().collect();
    assert_eq!(lines.len(), ROWS);
}
