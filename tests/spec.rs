//! Spec projections through the real binary: check-ins published with
//! `checkin publish` to a real nats-server and sequencer, a spec built with
//! `checkin project spec`, and the exact bytes of `checkin query spec --csv`.

mod common;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use serde_json::json;

const SPEC: &str = r#"
name = "yoga_weeks"
description = "每周瑜伽到店"
[filter]
sites = ["sh-jingan", "ny-soho"]
[group]
by = ["site", "activity", "iso_week"]
[measures]
include = ["check_ins", "visits", "unique_customers"]
"#;

/// Worked out by hand. 2026-05-01 (Friday) and 05-03 are in ISO week 18,
/// Monday 05-04 in week 19. c1's scans at 09:00 and 09:04 are one visit;
/// its 09:30 scan is voided. Rows sort by site, then activity bytes, so
/// "gym" comes before "瑜伽, 晨练", whose comma makes the CSV quote it.
const CSV_ROWS: &str = "site,activity,iso_week,check_ins,visits,unique_customers\r\n\
                        ny-soho,gym,2026-W18,1,1,1\r\n\
                        sh-jingan,gym,2026-W19,1,1,1\r\n\
                        sh-jingan,\"瑜伽, 晨练\",2026-W18,3,2,2\r\n";

fn check_in(id: u8, customer: &str, site: &str, at: &str, activity: &str) -> serde_json::Value {
    json!({
        "id": format!("00000000-0000-4000-8000-0000000000{id:02}"),
        "customer": customer,
        "site": site,
        "device": "kiosk-1",
        "at": at,
        "method": "qr",
        "activity": activity,
    })
}

fn write_lines(path: &Path, values: &[serde_json::Value]) {
    let text: String = values.iter().map(|value| format!("{value}\n")).collect();
    std::fs::write(path, text).expect("failed to write submissions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_spec_csv_bytes() {
    let server = NatsServer::start();
    let data = server.scratch("data");
    let config = write_config(&data, "");
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;
    let run = |args: &[&str]| checkin_output(&server, &data, &config, args);

    let yoga = "瑜伽, 晨练";
    let check_ins = data.join("check-ins.jsonl");
    write_lines(
        &check_ins,
        &[
            check_in(1, "c1", "sh-jingan", "2026-05-01T09:00:00+08:00", yoga),
            check_in(2, "c1", "sh-jingan", "2026-05-01T09:04:00+08:00", yoga),
            check_in(3, "c2", "sh-jingan", "2026-05-01T10:00:00+08:00", yoga),
            check_in(4, "c2", "sh-jingan", "2026-05-04T10:00:00+08:00", "gym"),
            check_in(5, "c3", "ny-soho", "2026-05-03T22:00:00-04:00", "gym"),
            check_in(6, "c1", "sh-jingan", "2026-05-01T09:30:00+08:00", yoga),
        ],
    );
    run(&["publish", "--intake", "import", check_ins.to_str().unwrap()]);
    wait_for_ledger(&js, 7, Duration::from_secs(30)).await;

    let voids = data.join("voids.jsonl");
    write_lines(
        &voids,
        &[json!({
            "id": "00000000-0000-4000-8000-000000000099",
            "target": "00000000-0000-4000-8000-000000000006",
            "reason": "double scan",
            "requested_by": "qa",
        })],
    );
    run(&["publish", "--intake", "void", voids.to_str().unwrap()]);
    wait_for_ledger(&js, 8, Duration::from_secs(30)).await;

    let spec_file = data.join("yoga.toml");
    std::fs::write(&spec_file, SPEC).unwrap();
    let built = run(&["project", "spec", spec_file.to_str().unwrap()]);
    assert!(
        built.starts_with("spec_yoga_weeks\tseq 8\t"),
        "build reports the model and head: {built}"
    );

    let with_bom = run(&["query", "spec", "yoga_weeks", "--csv"]);
    assert_eq!(
        with_bom.as_bytes(),
        format!("\u{feff}{CSV_ROWS}").as_bytes()
    );
    let without_bom = run(&["query", "spec", "yoga_weeks", "--csv", "--no-bom"]);
    assert_eq!(without_bom.as_bytes(), CSV_ROWS.as_bytes());

    let out = data.join("rows.csv");
    let printed = run(&[
        "query",
        "spec",
        "yoga_weeks",
        "--csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(printed, "");
    let written = std::fs::read(&out).unwrap();
    assert_eq!(written, format!("\u{feff}{CSV_ROWS}").into_bytes());

    let json_lines = run(&["query", "spec", "yoga_weeks", "--json"]);
    let last: serde_json::Value =
        serde_json::from_str(json_lines.lines().last().expect("three rows")).unwrap();
    assert_eq!(
        last,
        json!({"site": "sh-jingan", "activity": yoga, "iso_week": "2026-W18",
               "check_ins": 3, "visits": 2, "unique_customers": 2})
    );

    let rebuilt = run(&["project", "spec", spec_file.to_str().unwrap()]);
    assert_eq!(rebuilt, built, "a rebuild gives the same digest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spec_reports_code() {
    let server = NatsServer::start();
    let data = server.scratch("data");
    let config = write_config(&data, "");
    let spec_file = data.join("bad.toml");
    std::fs::write(
        &spec_file,
        "name = \"bad\"\n[group]\nby = [\"weekday\"]\n[measures]\ninclude = [\"visits\"]\n",
    )
    .unwrap();

    let output = checkin_command(&server, &data, &config)
        .args(["project", "spec", spec_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("[spec_unknown_group_key]"), "{stderr}");
    assert!(
        stderr.contains("group.by has unknown column \"weekday\""),
        "{stderr}"
    );
    assert!(stderr.contains("含有未知的列"), "{stderr}");

    let output = checkin_command(&server, &data, &config)
        .args(["query", "spec", "never_built", "--csv"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("spec model spec_never_built not found"),
        "{stderr}"
    );
}
