//! Chain test vectors in `schemas/chain-vectors.json`, for verifiers written
//! in other languages.
//!
//! With `CHECKIN_UPDATE_SCHEMAS=1` the test rewrites the file from the records
//! built here. Otherwise it checks the file against the codec and the chain.

use std::path::PathBuf;
use std::sync::OnceLock;

use checkin_core::EventId;
use checkin_core::chain::{self, CHAIN_CONTEXT, ChainHash, GENESIS_SEQ};
use checkin_core::codec;
use checkin_core::record::{CheckIn, Genesis, Location, Method, Record, RecordBody, Source, Void};
use serde_json::{Value, json};

/// 2026-05-01T01:30:00Z in microseconds, the time the records are built around.
const BASE_US: i64 = 1_777_599_000_000_000;
const MINUTE_US: i64 = 60_000_000;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/chain-vectors.json")
}

fn event_id(text: &str) -> EventId {
    text.parse().expect("test event ids are valid UUIDs")
}

fn check_in(event: &str, minutes: i64) -> CheckIn {
    CheckIn {
        event_id: event_id(event),
        customer: "c-1001".into(),
        site: "jingan".into(),
        device: "gate-01".into(),
        at_us: BASE_US + minutes * MINUTE_US,
        utc_offset_s: 8 * 3600,
        method: Method::Qr,
        location: None,
        activity: None,
        staff: None,
        attributes: Vec::new(),
        source: Source::Live,
    }
}

/// Builds the ledger the vectors describe: genesis, five check-ins covering every
/// optional field and both sources, and a void.
fn ledger() -> Vec<Record> {
    let minimal = check_in("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e", 0);

    let located = CheckIn {
        customer: "c-2002".into(),
        site: "静安店".into(),
        method: Method::Gps,
        location: Some(Location {
            lat_microdeg: 31_230_416,
            lon_microdeg: 121_473_701,
            accuracy_cm: Some(1250),
        }),
        activity: Some("瑜伽课".into()),
        attributes: vec![("lane".into(), "3".into())],
        ..check_in("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8f", 2)
    };

    let west_and_south = CheckIn {
        customer: "Zoë".into(),
        site: "Café Lumière".into(),
        device: "tablet-7".into(),
        utc_offset_s: -3 * 3600,
        method: Method::Nfc,
        location: Some(Location {
            lat_microdeg: -23_550_520,
            lon_microdeg: -46_633_309,
            accuracy_cm: None,
        }),
        staff: Some("王芳".into()),
        ..check_in("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d90", 3)
    };

    let imported = CheckIn {
        customer: "c-3003".into(),
        method: Method::Staff,
        at_us: BASE_US - 400 * 24 * 3600 * 1_000_000,
        activity: Some("Café latte tasting".into()),
        staff: Some("李雷".into()),
        attributes: vec![
            ("membership".into(), "gold".into()),
            ("note".into(), "年卡 Café".into()),
        ],
        source: Source::Import,
        ..check_in("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d91", 0)
    };

    let kiosk = CheckIn {
        device: "kiosk-lobby".into(),
        utc_offset_s: 0,
        method: Method::Kiosk,
        ..check_in("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d92", 9)
    };

    let void = Void {
        event_id: event_id("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d93"),
        target: minimal.event_id,
        reason: "重复扫码 duplicate scan".into(),
        requested_by: "manager-静安".into(),
    };

    let bodies = [
        RecordBody::Genesis(Genesis {
            ledger: "default".into(),
            description: "静安店 pilot ledger".into(),
        }),
        RecordBody::CheckIn(minimal),
        RecordBody::CheckIn(located),
        RecordBody::CheckIn(west_and_south),
        RecordBody::CheckIn(imported),
        RecordBody::CheckIn(kiosk),
        RecordBody::Void(void),
    ];
    bodies
        .into_iter()
        .zip(0..)
        .map(|(body, index)| Record {
            recorded_at_us: BASE_US + 10 * MINUTE_US + index * 1_000,
            body,
        })
        .collect()
}

/// Encodes and chains the ledger into the JSON document of the vectors file.
fn build_vectors() -> Value {
    let mut prev = ChainHash::ZERO;
    let mut entries = Vec::new();

    for (record, seq) in ledger().iter().zip(GENESIS_SEQ..) {
        let body = codec::encode(record).expect("test records fit the size limit");
        let hash = chain::link_hash(&prev, seq, &body);
        entries.push(json!({
            "seq": seq,
            "kind": record.body.kind().as_str(),
            "body_hex": hex::encode(&body),
            "prev": prev.to_hex(),
            "hash": hash.to_hex(),
            "record": record,
        }));
        prev = hash;
    }

    json!({
        "context": CHAIN_CONTEXT,
        "record_format_version": codec::CURRENT_VERSION,
        "records": entries,
    })
}

/// Returns the vectors file's content, first rewriting it when `CHECKIN_UPDATE_SCHEMAS=1`.
fn load_vectors() -> Value {
    static WRITTEN: OnceLock<Value> = OnceLock::new();
    if std::env::var("CHECKIN_UPDATE_SCHEMAS").as_deref() == Ok("1") {
        return WRITTEN.get_or_init(write_vectors).clone();
    }

    let text = std::fs::read_to_string(vectors_path())
        .expect("schemas/chain-vectors.json is missing; run with CHECKIN_UPDATE_SCHEMAS=1");
    serde_json::from_str(&text).expect("chain-vectors.json is valid JSON")
}

fn write_vectors() -> Value {
    let built = build_vectors();
    let text = serde_json::to_string_pretty(&built).expect("vectors serialise") + "\n";
    std::fs::write(vectors_path(), text).expect("failed to write chain-vectors.json");
    built
}

fn text<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field `{key}` is not a string: {entry}"))
}

#[test]
fn vectors_file_is_current() {
    // A difference means the codec or the chain changed the bytes of records
    // that are already stored, which needs a new format version, not new vectors.
    assert_eq!(load_vectors(), build_vectors());
}

#[test]
fn vectors_decode_and_reencode() {
    let vectors = load_vectors();
    let entries = vectors["records"].as_array().expect("records is an array");

    for entry in entries {
        let body = hex::decode(text(entry, "body_hex")).expect("body_hex is hex");
        let record = codec::decode(&body).unwrap_or_else(|err| panic!("{err}: {entry}"));

        assert_eq!(codec::encode(&record).expect("record re-encodes"), body);
        assert_eq!(record.body.kind().as_str(), text(entry, "kind"));
        assert_eq!(
            serde_json::to_value(&record).expect("record serialises"),
            entry["record"]
        );
    }
}

#[test]
fn vectors_chain_from_genesis() {
    let vectors = load_vectors();
    let entries = vectors["records"].as_array().expect("records is an array");
    assert_eq!(vectors["context"], CHAIN_CONTEXT);
    assert!(entries.len() >= 7, "genesis and at least six records");

    let mut prev = ChainHash::ZERO;
    for (entry, seq) in entries.iter().zip(GENESIS_SEQ..) {
        let body = hex::decode(text(entry, "body_hex")).expect("body_hex is hex");
        let stored_prev: ChainHash = text(entry, "prev").parse().expect("prev is a hash");
        let stored_hash: ChainHash = text(entry, "hash").parse().expect("hash is a hash");

        assert_eq!(entry["seq"], seq, "sequences run from 1 without gaps");
        assert_eq!(stored_prev, prev, "prev of seq {seq}");
        assert_eq!(
            stored_hash,
            chain::link_hash(&prev, seq, &body),
            "hash of seq {seq}"
        );
        prev = stored_hash;
    }
}

#[test]
fn vectors_cover_every_kind() {
    let vectors = load_vectors();
    let kinds: Vec<&str> = vectors["records"]
        .as_array()
        .expect("records is an array")
        .iter()
        .map(|entry| text(entry, "kind"))
        .collect();

    assert_eq!(kinds.first(), Some(&"genesis"));
    assert!(kinds.contains(&"check_in"));
    assert!(kinds.contains(&"void"));
}
