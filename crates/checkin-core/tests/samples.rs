//! Saved records of format version 1 in `schemas/samples/`, each beside the
//! JSON of the value it must decode to.
//!
//! Stored ledger bytes are never rewritten, so every later build has to read
//! these files. With `CHECKIN_UPDATE_SCHEMAS=1` the test writes them again,
//! which only a build that still writes version 1 may do.

use std::path::PathBuf;
use std::sync::OnceLock;

use checkin_core::EventId;
use checkin_core::codec;
use checkin_core::record::{CheckIn, Genesis, Location, Method, Record, RecordBody, Source, Void};
use serde_json::Value;

const SAMPLE_VERSION: u16 = 1;

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/samples")
}

fn event_id(text: &str) -> EventId {
    text.parse().expect("test event ids are valid UUIDs")
}

/// Builds the sample records by file stem. The check-in sets every optional field.
fn sample_records() -> Vec<(&'static str, Record)> {
    let genesis = Record {
        recorded_at_us: 1_777_599_000_000_000,
        body: RecordBody::Genesis(Genesis {
            ledger: "default".into(),
            description: "静安店 pilot ledger".into(),
        }),
    };

    let check_in = Record {
        recorded_at_us: 1_777_599_060_000_000,
        body: RecordBody::CheckIn(CheckIn {
            event_id: event_id("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e"),
            customer: "c-1001".into(),
            site: "静安店".into(),
            device: "gate-01".into(),
            at_us: 1_777_599_000_000_000,
            utc_offset_s: 28_800,
            method: Method::Gps,
            location: Some(Location {
                lat_microdeg: 31_230_416,
                lon_microdeg: 121_473_701,
                accuracy_cm: Some(1250),
            }),
            activity: Some("Café latte tasting".into()),
            staff: Some("王芳".into()),
            attributes: vec![("lane".into(), "3".into()), ("note".into(), "年卡".into())],
            source: Source::Live,
        }),
    };

    let void = Record {
        recorded_at_us: 1_777_599_120_000_000,
        body: RecordBody::Void(Void {
            event_id: event_id("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8f"),
            target: event_id("0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e"),
            reason: "重复扫码 duplicate scan".into(),
            requested_by: "manager-01".into(),
        }),
    };

    vec![
        ("v1-genesis", genesis),
        ("v1-check_in", check_in),
        ("v1-void", void),
    ]
}

fn write_samples() {
    // The file names promise version 1, so a build writing another version must
    // add new samples instead of replacing these.
    assert_eq!(
        codec::CURRENT_VERSION,
        SAMPLE_VERSION,
        "refusing to overwrite v1 samples"
    );

    for (stem, record) in sample_records() {
        let bytes = codec::encode(&record).expect("sample records fit the size limit");
        let json = serde_json::to_string_pretty(&record).expect("record serialises") + "\n";
        std::fs::write(samples_dir().join(format!("{stem}.bin")), bytes)
            .expect("failed to write sample bytes");
        std::fs::write(samples_dir().join(format!("{stem}.json")), json)
            .expect("failed to write sample JSON");
    }
}

/// Returns a sample's bytes and expected JSON, first rewriting all samples
/// when `CHECKIN_UPDATE_SCHEMAS=1`.
fn load_sample(stem: &str) -> (Vec<u8>, Value) {
    static WRITTEN: OnceLock<()> = OnceLock::new();
    if std::env::var("CHECKIN_UPDATE_SCHEMAS").as_deref() == Ok("1") {
        WRITTEN.get_or_init(write_samples);
    }

    let bytes = std::fs::read(samples_dir().join(format!("{stem}.bin")))
        .unwrap_or_else(|err| panic!("failed to read {stem}.bin: {err}"));
    let json = std::fs::read_to_string(samples_dir().join(format!("{stem}.json")))
        .unwrap_or_else(|err| panic!("failed to read {stem}.json: {err}"));
    (
        bytes,
        serde_json::from_str(&json).expect("sample JSON is valid"),
    )
}

fn assert_sample_decodes(stem: &str) {
    let (bytes, expected) = load_sample(stem);

    assert_eq!(
        bytes[..2],
        SAMPLE_VERSION.to_le_bytes(),
        "{stem} starts with its version"
    );
    let record = codec::decode(&bytes).unwrap_or_else(|err| panic!("{stem}: {err}"));
    assert_eq!(
        serde_json::to_value(&record).expect("record serialises"),
        expected,
        "{stem}"
    );
}

#[test]
fn v1_genesis_decodes() {
    assert_sample_decodes("v1-genesis");
}

#[test]
fn v1_check_in_decodes() {
    assert_sample_decodes("v1-check_in");
}

#[test]
fn v1_void_decodes() {
    assert_sample_decodes("v1-void");
}

#[test]
fn v1_samples_match_current_encoding() {
    // While this build still writes version 1, encoding the same values must
    // give the saved bytes exactly, or the chain hashes of stored records change.
    if codec::CURRENT_VERSION != SAMPLE_VERSION {
        return;
    }
    for (stem, record) in sample_records() {
        let (bytes, _) = load_sample(stem);
        assert_eq!(
            codec::encode(&record).expect("record encodes"),
            bytes,
            "{stem}"
        );
    }
}
