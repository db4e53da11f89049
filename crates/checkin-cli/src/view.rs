//! Text and JSON views of ledger records and refusals.

use checkin_core::chain::link_hash;
use checkin_core::codec;
use checkin_core::record::{CheckIn, RecordBody};
use checkin_ledger::headers;
use checkin_ledger::reader::StoredMessage;
use checkin_ledger::rejected::RejectedEntry;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Builds the JSON view of a stored ledger record.
pub fn record_json(message: &StoredMessage) -> Value {
    let prev = headers::chain_hash(message.headers.as_ref(), headers::PREV);
    let hash = message.hash_header();
    let hash_ok = prev.map(|prev| link_hash(&prev, message.seq, &message.payload)) == hash;

    let mut view = json!({
        "seq": message.seq,
        "hash": hash.map(|hash| hash.to_hex()),
        "prev": prev.map(|prev| prev.to_hex()),
        "hash_matches_body": hash_ok && hash.is_some(),
    });
    match codec::decode(&message.payload) {
        Ok(record) => {
            view["kind"] = json!(record.body.kind().as_str());
            view["recorded_at"] = json!(utc_text(record.recorded_at_us));
            merge(&mut view, body_json(&record.body));
        }
        Err(err) => {
            view["kind"] = json!("undecodable");
            view["error"] = json!(err.to_string());
        }
    }
    view
}

fn body_json(body: &RecordBody) -> Value {
    match body {
        RecordBody::Genesis(genesis) => json!({
            "ledger": genesis.ledger,
            "description": genesis.description,
        }),
        RecordBody::CheckIn(check_in) => check_in_json(check_in),
        RecordBody::Void(void) => json!({
            "event_id": void.event_id,
            "target": void.target,
            "reason": void.reason,
            "requested_by": void.requested_by,
        }),
    }
}

fn check_in_json(check_in: &CheckIn) -> Value {
    let location = check_in.location.map(|location| {
        json!({
            "lat": f64::from(location.lat_microdeg) / 1e6,
            "lon": f64::from(location.lon_microdeg) / 1e6,
            "accuracy_m": location.accuracy_cm.map(|cm| f64::from(cm) / 100.0),
        })
    });
    let attributes: serde_json::Map<String, Value> = check_in
        .attributes
        .iter()
        .map(|(key, value)| (key.clone(), json!(value)))
        .collect();
    json!({
        "event_id": check_in.event_id,
        "customer": check_in.customer,
        "site": check_in.site,
        "device": check_in.device,
        "at": device_time_text(check_in.at_us, check_in.utc_offset_s),
        "method": check_in.method.as_str(),
        "location": location,
        "activity": check_in.activity,
        "staff": check_in.staff,
        "attributes": attributes,
        "source": check_in.source,
    })
}

/// Prints a record for a person: a heading line, the chain, then the fields.
pub fn record_text(message: &StoredMessage) -> String {
    let view = record_json(message);
    let kind = view["kind"].as_str().unwrap_or("?");
    let chain_note = if view["hash_matches_body"] == json!(true) {
        "hash ok"
    } else {
        "HASH DOES NOT MATCH BODY"
    };
    let mut text = format!("seq {}  {}  ({chain_note})\n", message.seq, kind);
    text.push_str(&format!(
        "  hash  {}\n",
        view["hash"].as_str().unwrap_or("-")
    ));
    text.push_str(&format!(
        "  prev  {}\n",
        view["prev"].as_str().unwrap_or("-")
    ));

    let Value::Object(fields) = view else {
        return text;
    };
    for (key, value) in fields {
        if matches!(
            key.as_str(),
            "seq" | "hash" | "prev" | "kind" | "hash_matches_body"
        ) || value.is_null()
        {
            continue;
        }
        if value.as_object().is_some_and(|object| object.is_empty()) {
            continue;
        }
        let shown = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        text.push_str(&format!("  {key:<12}{shown}\n"));
    }
    text
}

/// Prints a refusal for a person.
pub fn rejected_text(entry: &RejectedEntry) -> String {
    let original = entry
        .original
        .clone()
        .or_else(|| {
            entry
                .original_hex
                .as_ref()
                .map(|hex| format!("(hex) {hex}"))
        })
        .unwrap_or_default();
    let original = truncate(&original, 200);
    format!(
        "#{}  {}  {}\n  {}\n  {}\n  from {} (intake seq {})\n  original: {}\n",
        entry.seq,
        entry.rejected_at,
        entry.reason,
        entry.message,
        entry.message_zh,
        entry.intake_subject,
        entry
            .intake_seq
            .map_or("-".to_string(), |seq| seq.to_string()),
        original
    )
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!("{kept}…")
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

fn utc_text(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| us.to_string())
}

/// Shows a device time in the device's own offset, as it was submitted.
fn device_time_text(us: i64, offset_s: i32) -> String {
    let offset = FixedOffset::east_opt(offset_s)
        .unwrap_or(FixedOffset::east_opt(0).expect("zero offset is valid"));
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|time| {
            time.with_timezone(&offset)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false)
        })
        .unwrap_or_else(|| us.to_string())
}
