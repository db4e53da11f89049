//! Every reason code, end to end: the refused submission lands in
//! CHECKIN_REJECTED with its original bytes, code and field, and valid
//! submissions that look unusual are accepted.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::record::RecordBody;
use checkin_core::sites::{Site, SiteRegistry};
use checkin_core::{EventId, Reason};
use checkin_ledger::headers;
use checkin_ledger::sequencer::{Sequencer, SequencerConfig, SequencerError};
use checkin_ledger::topology::{
    INTAKE_IMPORT, INTAKE_LIVE, INTAKE_VOID, LEDGER_STREAM, TopologyError,
};
use common::*;
use serde_json::{Value, json};
use uuid::Uuid;

fn sequencer_config() -> SequencerConfig {
    let mut sites = SiteRegistry::default();
    sites.sites.insert("sh-jingan".into(), Site::default());
    SequencerConfig {
        ledger_name: "test".into(),
        sites,
        ..SequencerConfig::default()
    }
}

/// Starts an in-process sequencer against `server`, stopped when the returned sender drops.
async fn start_sequencer(server: &NatsServer) -> tokio::sync::oneshot::Sender<()> {
    let client = server.client().await;
    let index = server.scratch("index");
    let sequencer = Sequencer::start(client, sequencer_config(), &index)
        .await
        .expect("sequencer starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sequencer.run(async {
        let _ = stopped.await;
    }));
    stop
}

fn fresh_id() -> String {
    Uuid::new_v4().to_string()
}

fn valid() -> Value {
    json!({
        "id": fresh_id(),
        "customer": "c-1",
        "site": "sh-jingan",
        "device": "kiosk-1",
        "at": now_shanghai().to_rfc3339(),
        "method": "nfc",
    })
}

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut submission = valid();
    submission[field] = value;
    serde_json::to_vec(&submission).expect("serialises")
}

fn with_location(location: Value) -> Vec<u8> {
    with("location", location)
}

struct Case {
    subject: &'static str,
    payload: Vec<u8>,
    reason: Reason,
    field: String,
}

fn case(payload: Vec<u8>, reason: Reason, field: &str) -> Case {
    Case {
        subject: INTAKE_LIVE,
        payload,
        reason,
        field: field.into(),
    }
}

/// Builds one refused submission per reason code. `accepted` is a check-in
/// already in the ledger, for the reasons that depend on ledger state.
fn cases(accepted: &Value) -> Vec<Case> {
    let offset = now_shanghai();
    let mut missing = valid();
    missing.as_object_mut().expect("object").remove("customer");
    let mut conflicting = accepted.clone();
    conflicting["customer"] = json!("someone-else");
    let many_attributes: serde_json::Map<String, Value> = (0..17)
        .map(|index| (format!("k{index}"), json!("v")))
        .collect();
    let oversized = with("activity", json!("x".repeat(17 * 1024)));
    let repeated = format!(
        r#"{{"id":"{}","customer":"c-1","customer":"c-2","site":"sh-jingan","device":"d","at":"{}","method":"qr"}}"#,
        fresh_id(),
        offset.to_rfc3339()
    );

    vec![
        case(vec![0xff, 0xfe, b'{', b'}'], Reason::InvalidUtf8, ""),
        case(b"{\"id\": ".to_vec(), Reason::InvalidJson, ""),
        case(oversized, Reason::PayloadTooLarge, ""),
        case(b"[1, 2, 3]".to_vec(), Reason::NotAnObject, ""),
        case(with("colour", json!("red")), Reason::UnknownField, "colour"),
        case(repeated.into_bytes(), Reason::DuplicateField, "customer"),
        case(
            serde_json::to_vec(&missing).expect("serialises"),
            Reason::MissingField,
            "customer",
        ),
        case(with("device", json!("  ")), Reason::EmptyField, "device"),
        case(with("customer", json!(42)), Reason::WrongType, "customer"),
        case(
            with("customer", json!("a\u{7}b")),
            Reason::ControlCharacter,
            "customer",
        ),
        case(
            with("staff", json!("s".repeat(129))),
            Reason::TooLong,
            "staff",
        ),
        case(with("id", json!("not-a-uuid")), Reason::InvalidUuid, "id"),
        case(
            with("at", json!("yesterday")),
            Reason::InvalidTimestamp,
            "at",
        ),
        case(
            with("at", json!("2026-05-01T09:30:00")),
            Reason::MissingOffset,
            "at",
        ),
        case(
            with("at", json!("2026-05-01T09:30:00+23:00")),
            Reason::OffsetOutOfRange,
            "at",
        ),
        case(
            with(
                "at",
                json!((offset + chrono::Duration::minutes(10)).to_rfc3339()),
            ),
            Reason::InFuture,
            "at",
        ),
        case(
            with(
                "at",
                json!((offset - chrono::Duration::days(40)).to_rfc3339()),
            ),
            Reason::BeyondHorizon,
            "at",
        ),
        case(
            with("method", json!("telepathy")),
            Reason::InvalidMethod,
            "method",
        ),
        case(
            with_location(json!({"lat": 121.47, "lon": 31.23})),
            Reason::LatitudeOutOfRange,
            "location.lat",
        ),
        case(
            with_location(json!({"lat": 31.23, "lon": 200.5})),
            Reason::LongitudeOutOfRange,
            "location.lon",
        ),
        case(
            with_location(json!({"lat": "31.2", "lon": 121.4})),
            Reason::InvalidCoordinate,
            "location.lat",
        ),
        case(
            with_location(json!({"lat": 31.2, "lon": 121.4, "accuracy_m": -3})),
            Reason::InvalidAccuracy,
            "location.accuracy_m",
        ),
        case(
            with("attributes", Value::Object(many_attributes)),
            Reason::TooManyAttributes,
            "attributes",
        ),
        case(with("site", json!("nowhere")), Reason::UnknownSite, "site"),
        case(
            serde_json::to_vec(&conflicting).expect("serialises"),
            Reason::IdConflict,
            "id",
        ),
        Case {
            subject: INTAKE_VOID,
            payload: serde_json::to_vec(&json!({
                "id": fresh_id(),
                "target": fresh_id(),
                "reason": "scanned by mistake",
                "requested_by": "staff-3",
            }))
            .expect("serialises"),
            reason: Reason::UnknownTarget,
            field: "target".into(),
        },
        Case {
            subject: "checkin.intake.other",
            payload: serde_json::to_vec(&valid()).expect("serialises"),
            reason: Reason::UnknownSubject,
            field: String::new(),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reason_code_stored_with_original_bytes() {
    let server = NatsServer::start();
    let _stop = start_sequencer(&server).await;
    let js = jetstream::new(server.client().await);

    let accepted = valid();
    let accepted_bytes = serde_json::to_vec(&accepted).expect("serialises");
    publish_all(&js, INTAKE_LIVE, &[(None, accepted_bytes)]).await;
    wait_for_ledger(&js, 2, Duration::from_secs(30)).await;

    let cases = cases(&accepted);
    let covered: HashSet<Reason> = cases.iter().map(|case| case.reason).collect();
    let missing: Vec<_> = Reason::ALL
        .iter()
        .filter(|reason| !covered.contains(reason))
        .collect();
    assert!(
        missing.is_empty(),
        "reason codes without an end-to-end case: {missing:?}"
    );

    for case in &cases {
        publish_all(&js, case.subject, &[(None, case.payload.clone())]).await;
    }
    wait_for(
        Duration::from_secs(30),
        "every case in the rejected stream",
        || async { read_rejected(&js).await.len() == cases.len() },
    )
    .await;

    let rejected = read_rejected(&js).await;
    for (case, stored) in cases.iter().zip(&rejected) {
        let code = case.reason.code();
        assert_eq!(
            stored.header(headers::REASON),
            Some(code),
            "reason of case {code}"
        );
        assert_eq!(
            stored.header(headers::FIELD),
            Some(case.field.as_str()),
            "field of case {code}"
        );
        assert_eq!(
            stored.payload.as_ref(),
            case.payload.as_slice(),
            "original bytes of case {code}"
        );
        assert_eq!(
            stored.header(headers::INTAKE_SUBJECT),
            Some(case.subject),
            "subject of case {code}"
        );
        assert!(
            stored
                .header(headers::MESSAGE)
                .is_some_and(|text| !text.is_empty()),
            "message of case {code}"
        );
        assert!(
            stored
                .header(headers::MESSAGE_ZH)
                .is_some_and(|text| !text.is_empty()),
            "Chinese message of case {code}"
        );
        assert!(
            stored.header(headers::REJECTED_AT).is_some(),
            "time of case {code}"
        );
    }
    assert_eq!(
        stream_messages(&js, LEDGER_STREAM).await,
        2,
        "no refused submission reaches the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_check_in_keeps_its_time() {
    let server = NatsServer::start();
    let _stop = start_sequencer(&server).await;
    let js = jetstream::new(server.client().await);

    let three_days_ago = now_shanghai() - chrono::Duration::days(3);
    let id: EventId = fresh_id().parse().expect("uuid");
    let submission = check_in(&id, "c-offline", three_days_ago);
    let before_us = chrono::Utc::now().timestamp_micros();
    publish_all(
        &js,
        INTAKE_LIVE,
        &[(None, serde_json::to_vec(&submission).expect("serialises"))],
    )
    .await;
    wait_for_ledger(&js, 2, Duration::from_secs(30)).await;

    let ledger = read_ledger(&js).await;
    let (_, record) = &ledger.records[1];
    let RecordBody::CheckIn(check_in) = &record.body else {
        panic!("seq 2 is not a check-in: {record:?}");
    };
    // Whole seconds: RFC 3339 text from to_rfc3339 keeps nanoseconds, the record keeps microseconds.
    assert_eq!(check_in.at_us / 1_000_000, three_days_ago.timestamp());
    assert_eq!(check_in.utc_offset_s, 8 * 3600);
    assert!(
        record.recorded_at_us >= before_us,
        "recorded_at is the sequencer's time"
    );
    assert!(record.recorded_at_us - check_in.at_us > 3 * 86_400 * 1_000_000 - 60_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_exempt_from_horizon_and_void_recorded() {
    let server = NatsServer::start();
    let _stop = start_sequencer(&server).await;
    let js = jetstream::new(server.client().await);

    let id: EventId = fresh_id().parse().expect("uuid");
    let old =
        chrono::DateTime::parse_from_rfc3339("2012-04-03T18:00:09-04:00").expect("valid time");
    let import = serde_json::to_vec(&check_in(&id, "u-1", old)).expect("serialises");
    publish_all(&js, INTAKE_IMPORT, &[(None, import)]).await;
    wait_for_ledger(&js, 2, Duration::from_secs(30)).await;

    let void = json!({"id": fresh_id(), "target": id.to_string(), "reason": "test data", "requested_by": "auditor"});
    publish_all(
        &js,
        INTAKE_VOID,
        &[(None, serde_json::to_vec(&void).expect("serialises"))],
    )
    .await;
    wait_for_ledger(&js, 3, Duration::from_secs(30)).await;

    let ledger = read_ledger(&js).await;
    assert!(
        ledger.findings.is_empty(),
        "chain findings: {:?}",
        ledger.findings
    );
    let RecordBody::CheckIn(check_in) = &ledger.records[1].1.body else {
        panic!("seq 2 is not a check-in");
    };
    assert_eq!(
        check_in.at_us, 1_333_490_409_000_000,
        "2012-04-03T22:00:09Z"
    );
    let RecordBody::Void(recorded_void) = &ledger.records[2].1.body else {
        panic!("seq 3 is not a void");
    };
    assert_eq!(recorded_void.target, id);
    assert_eq!(recorded_void.requested_by, "auditor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_with_per_subject_limit_refused() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    // A per-subject limit of 1 would make JetStream drop every record but the last.
    let mut ledger = checkin_ledger::topology::TopologySettings::default().ledger_config();
    ledger.max_messages_per_subject = 1;
    js.create_stream(ledger).await.expect("stream created");

    let index = server.scratch("index");
    let result = Sequencer::start(server.client().await, sequencer_config(), &index).await;
    let Err(SequencerError::Topology(TopologyError::Mismatch { stream, field, .. })) = result
    else {
        panic!("expected a settings mismatch, got {:?}", result.err());
    };
    assert_eq!(stream, "CHECKIN_LEDGER");
    assert_eq!(field, "max_msgs_per_subject");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_stream_with_other_settings_refused() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let mut intake = checkin_ledger::topology::TopologySettings::default().intake_config();
    intake.max_bytes = 4096;
    js.create_stream(intake).await.expect("stream created");

    let index = server.scratch("index");
    let result = Sequencer::start(server.client().await, sequencer_config(), &index).await;
    let Err(SequencerError::Topology(TopologyError::Mismatch {
        stream,
        field,
        expected,
        actual,
    })) = result
    else {
        panic!("expected a settings mismatch, got {:?}", result.err());
    };
    assert_eq!(stream, "CHECKIN_INTAKE");
    assert_eq!(field, "max_bytes");
    assert_eq!(expected, "1073741824");
    assert_eq!(actual, "4096");
}
