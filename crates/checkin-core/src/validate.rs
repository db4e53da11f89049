//! Validation of raw submissions into check-in and void records.
//!
//! Every failure is a [`Rejection`] with a stable reason code and the JSON
//! path of the field it concerns. Checks run in a fixed order, so the same
//! bytes are always refused for the same reason.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime};
use serde_json::{Map, Value};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use crate::ids::EventId;
use crate::reason::{Reason, Rejection};
use crate::record::{CheckIn, Location, Method, Source, Void};
use crate::sites::SiteRegistry;

/// Largest accepted submission, in bytes.
pub const MAX_SUBMISSION_BYTES: usize = 16 * 1024;
/// Maximum number of `attributes` entries.
pub const MAX_ATTRIBUTES: usize = 16;

const MAX_ID_CHARS: usize = 128;
const MAX_SITE_CHARS: usize = 64;
const MAX_TEXT_CHARS: usize = 128;
const MAX_ATTRIBUTE_KEY_CHARS: usize = 32;
const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
const MAX_REASON_CHARS: usize = 512;
const MAX_ACCURACY_M: f64 = 1_000_000.0;
/// UTC offsets in use worldwide run from -12:00 (Baker Island) to +14:00 (Line Islands).
const MIN_OFFSET_S: i32 = -12 * 3600;
const MAX_OFFSET_S: i32 = 14 * 3600;

const CHECK_IN_FIELDS: [&str; 10] = [
    "id",
    "customer",
    "site",
    "device",
    "at",
    "method",
    "location",
    "activity",
    "staff",
    "attributes",
];
const LOCATION_FIELDS: [&str; 3] = ["lat", "lon", "accuracy_m"];
const VOID_FIELDS: [&str; 4] = ["id", "target", "reason", "requested_by"];

/// Time rules, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimePolicy {
    /// How far `at` may be ahead of the sequencer's clock.
    pub max_future_skew_s: i64,
    /// Maximum age of a live check-in; imports are exempt.
    pub horizon_s: i64,
}

impl Default for TimePolicy {
    fn default() -> Self {
        Self {
            max_future_skew_s: 5 * 60,
            horizon_s: 35 * 24 * 3600,
        }
    }
}

/// The intake path a submission came through, which decides its format and rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntakeKind {
    /// A check-in from a live device.
    Live,
    /// A check-in from a historical import, exempt from the horizon.
    Import,
    /// A request to void an earlier check-in.
    Void,
}

/// A submission that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submission {
    /// A check-in.
    CheckIn(CheckIn),
    /// A void request.
    Void(Void),
}

/// Validates raw submission bytes.
///
/// `now_us` is the sequencer's clock in UTC microseconds; it is a parameter so
/// that validation stays a pure function.
///
/// # Errors
///
/// Returns the first rule the submission breaks.
pub fn validate(
    bytes: &[u8],
    intake: IntakeKind,
    now_us: i64,
    policy: &TimePolicy,
    sites: &SiteRegistry,
) -> Result<Submission, Rejection> {
    let object = parse_object(bytes)?;
    match intake {
        IntakeKind::Live => validate_check_in(&object, Source::Live, now_us, policy, sites),
        IntakeKind::Import => validate_check_in(&object, Source::Import, now_us, policy, sites),
        IntakeKind::Void => validate_void(&object),
    }
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if bytes.len() > MAX_SUBMISSION_BYTES {
        return Err(Rejection::with_detail(
            Reason::PayloadTooLarge,
            "",
            bytes.len(),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|err| Rejection::with_detail(Reason::InvalidUtf8, "", err.valid_up_to()))?;
    let (value, repeated_key) =
        parse_value(text).map_err(|err| Rejection::with_detail(Reason::InvalidJson, "", err))?;
    // serde_json keeps the last of repeated keys, which would drop a value silently.
    if let Some(path) = repeated_key {
        return Err(Rejection::new(Reason::DuplicateField, path));
    }
    match value {
        Value::Object(object) => Ok(object),
        other => Err(Rejection::with_detail(
            Reason::NotAnObject,
            "",
            json_type(&other),
        )),
    }
}

fn validate_check_in(
    object: &Map<String, Value>,
    source: Source,
    now_us: i64,
    policy: &TimePolicy,
    sites: &SiteRegistry,
) -> Result<Submission, Rejection> {
    reject_unknown_fields(object, &CHECK_IN_FIELDS, "")?;

    let event_id = required_uuid(object, "id")?;
    let customer = required_text(object, "customer", MAX_ID_CHARS)?;
    let site = required_text(object, "site", MAX_SITE_CHARS)?;
    let device = required_text(object, "device", MAX_ID_CHARS)?;
    let (at_us, utc_offset_s) = required_time(object, "at")?;
    let method = required_method(object, "method")?;
    let location = optional_location(object)?;
    let activity = optional_text(object, "activity", MAX_TEXT_CHARS)?;
    let staff = optional_text(object, "staff", MAX_TEXT_CHARS)?;
    let attributes = optional_attributes(object)?;

    check_time_window(at_us, source, now_us, policy)?;
    if sites.lookup(&site).is_none() {
        return Err(Rejection::with_detail(Reason::UnknownSite, "site", &site));
    }

    Ok(Submission::CheckIn(CheckIn {
        event_id,
        customer,
        site,
        device,
        at_us,
        utc_offset_s,
        method,
        location,
        activity,
        staff,
        attributes,
        source,
    }))
}

fn validate_void(object: &Map<String, Value>) -> Result<Submission, Rejection> {
    reject_unknown_fields(object, &VOID_FIELDS, "")?;

    Ok(Submission::Void(Void {
        event_id: required_uuid(object, "id")?,
        target: required_uuid(object, "target")?,
        reason: required_text(object, "reason", MAX_REASON_CHARS)?,
        requested_by: required_text(object, "requested_by", MAX_ID_CHARS)?,
    }))
}

fn reject_unknown_fields(
    object: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), Rejection> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(Rejection::new(
            Reason::UnknownField,
            format!("{prefix}{unknown}"),
        )),
        None => Ok(()),
    }
}

/// Returns the field's value, treating JSON `null` as absent.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|value| !value.is_null())
}

fn required_uuid(object: &Map<String, Value>, name: &str) -> Result<EventId, Rejection> {
    let text = required_text(object, name, 64).map_err(|rejection| match rejection.reason {
        Reason::TooLong => Rejection::new(Reason::InvalidUuid, name),
        _ => rejection,
    })?;
    text.parse()
        .map_err(|_| Rejection::new(Reason::InvalidUuid, name))
}

fn required_text(
    object: &Map<String, Value>,
    name: &str,
    max_chars: usize,
) -> Result<String, Rejection> {
    let Some(value) = field(object, name) else {
        return Err(Rejection::new(Reason::MissingField, name));
    };
    text_value(value, name, max_chars)
}

fn optional_text(
    object: &Map<String, Value>,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, Rejection> {
    field(object, name)
        .map(|value| text_value(value, name, max_chars))
        .transpose()
}

/// Checks one text value and returns it NFC-normalised.
fn text_value(value: &Value, path: &str, max_chars: usize) -> Result<String, Rejection> {
    let Value::String(raw) = value else {
        return Err(Rejection::with_detail(Reason::WrongType, path, "a string"));
    };
    if raw.trim().is_empty() {
        return Err(Rejection::new(Reason::EmptyField, path));
    }
    if raw
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(Rejection::new(Reason::ControlCharacter, path));
    }

    // Most text is already NFC, which the quick check confirms without copying
    // it through the normaliser; a `Yes` result is exact.
    let normalised: String = if is_nfc_quick(raw.chars()) == IsNormalized::Yes {
        raw.clone()
    } else {
        raw.nfc().collect()
    };
    if normalised.chars().count() > max_chars {
        return Err(Rejection::with_detail(Reason::TooLong, path, max_chars));
    }
    Ok(normalised)
}

/// Tells whether a character is invisible and can make two identifiers that
/// look the same differ, or reorder displayed text: zero-width space, word
/// joiner, bidirectional embeddings, overrides and isolates, the byte order
/// mark and the noncharacters U+FFFE and U+FFFF. Zero-width joiners stay
/// allowed, since emoji sequences and several scripts need them.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{2060}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
    )
}

/// Parses `at` into UTC microseconds and the device's offset in seconds.
fn required_time(object: &Map<String, Value>, name: &str) -> Result<(i64, i32), Rejection> {
    let text = required_text(object, name, 64).map_err(|rejection| match rejection.reason {
        Reason::TooLong => Rejection::new(Reason::InvalidTimestamp, name),
        _ => rejection,
    })?;

    match DateTime::parse_from_rfc3339(&text) {
        Ok(at) => {
            let offset_s = at.offset().local_minus_utc();
            if !(MIN_OFFSET_S..=MAX_OFFSET_S).contains(&offset_s) {
                return Err(Rejection::with_detail(
                    Reason::OffsetOutOfRange,
                    name,
                    at.offset(),
                ));
            }
            Ok((at.timestamp_micros(), offset_s))
        }
        Err(_) if lacks_offset(&text) => Err(Rejection::new(Reason::MissingOffset, name)),
        Err(_) => Err(Rejection::new(Reason::InvalidTimestamp, name)),
    }
}

/// Tells whether text is a valid local date-time that only lacks an offset.
fn lacks_offset(text: &str) -> bool {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .any(|format| NaiveDateTime::parse_from_str(text, format).is_ok())
}

fn check_time_window(
    at_us: i64,
    source: Source,
    now_us: i64,
    policy: &TimePolicy,
) -> Result<(), Rejection> {
    let ahead_s = at_us.saturating_sub(now_us) / 1_000_000;
    if ahead_s > policy.max_future_skew_s {
        return Err(Rejection::with_detail(Reason::InFuture, "at", ahead_s));
    }

    let age_s = now_us.saturating_sub(at_us) / 1_000_000;
    if source == Source::Live && age_s > policy.horizon_s {
        let horizon_days = policy.horizon_s as f64 / 86_400.0;
        return Err(Rejection::with_detail(
            Reason::BeyondHorizon,
            "at",
            horizon_days,
        ));
    }
    Ok(())
}

fn required_method(object: &Map<String, Value>, name: &str) -> Result<Method, Rejection> {
    let text = required_text(object, name, MAX_TEXT_CHARS).map_err(|rejection| match rejection
        .reason
    {
        Reason::TooLong => Rejection::new(Reason::InvalidMethod, name),
        _ => rejection,
    })?;
    Method::from_name(&text).ok_or_else(|| Rejection::new(Reason::InvalidMethod, name))
}

fn optional_location(object: &Map<String, Value>) -> Result<Option<Location>, Rejection> {
    let Some(value) = field(object, "location") else {
        return Ok(None);
    };
    let Value::Object(location) = value else {
        return Err(Rejection::with_detail(
            Reason::WrongType,
            "location",
            "an object",
        ));
    };
    reject_unknown_fields(location, &LOCATION_FIELDS, "location.")?;

    let lat = coordinate(location, "lat", 90.0, Reason::LatitudeOutOfRange)?;
    let lon = coordinate(location, "lon", 180.0, Reason::LongitudeOutOfRange)?;
    let accuracy_cm = optional_accuracy(location)?;

    Ok(Some(Location {
        lat_microdeg: lat,
        lon_microdeg: lon,
        accuracy_cm,
    }))
}

/// Converts a coordinate in degrees to microdegrees after checking its range.
fn coordinate(
    location: &Map<String, Value>,
    name: &str,
    bound: f64,
    out_of_range: Reason,
) -> Result<i32, Rejection> {
    let path = format!("location.{name}");
    let Some(value) = field(location, name) else {
        return Err(Rejection::new(Reason::MissingField, path));
    };
    let Some(degrees) = value.as_f64().filter(|degrees| degrees.is_finite()) else {
        return Err(Rejection::new(Reason::InvalidCoordinate, path));
    };
    if !(-bound..=bound).contains(&degrees) {
        return Err(Rejection::with_detail(out_of_range, path, value));
    }
    // Within ±180 degrees the product stays below i32::MAX, so the cast cannot saturate.
    Ok((degrees * 1_000_000.0).round() as i32)
}

fn optional_accuracy(location: &Map<String, Value>) -> Result<Option<u32>, Rejection> {
    let Some(value) = field(location, "accuracy_m") else {
        return Ok(None);
    };
    match value.as_f64() {
        Some(metres) if metres.is_finite() && (0.0..=MAX_ACCURACY_M).contains(&metres) => {
            Ok(Some((metres * 100.0).round() as u32))
        }
        _ => Err(Rejection::new(
            Reason::InvalidAccuracy,
            "location.accuracy_m",
        )),
    }
}

fn optional_attributes(object: &Map<String, Value>) -> Result<Vec<(String, String)>, Rejection> {
    let Some(value) = field(object, "attributes") else {
        return Ok(Vec::new());
    };
    let Value::Object(entries) = value else {
        return Err(Rejection::with_detail(
            Reason::WrongType,
            "attributes",
            "an object of strings",
        ));
    };
    if entries.len() > MAX_ATTRIBUTES {
        return Err(Rejection::with_detail(
            Reason::TooManyAttributes,
            "attributes",
            MAX_ATTRIBUTES,
        ));
    }

    let mut sorted = BTreeMap::new();
    for (key, value) in entries {
        let key_path = format!("attributes.{key}");
        let key = text_value(
            &Value::String(key.clone()),
            &key_path,
            MAX_ATTRIBUTE_KEY_CHARS,
        )?;
        let value = text_value(value, &key_path, MAX_ATTRIBUTE_VALUE_CHARS)?;
        // Two keys that differ only in Unicode normalisation become one key.
        if sorted.insert(key.clone(), value).is_some() {
            return Err(Rejection::new(
                Reason::DuplicateField,
                format!("attributes.{key}"),
            ));
        }
    }
    Ok(sorted.into_iter().collect())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses JSON text into a value and returns it with the path of the first
/// key repeated within one JSON object, in one pass over the text.
///
/// The value and the errors are the same as `serde_json::from_str::<Value>`
/// returns, and the path is the one [`first_repeated_key`] finds.
fn parse_value(text: &str) -> Result<(Value, Option<String>), serde_json::Error> {
    let mut state = ParseState::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let seed = ValueSeed {
        path: None,
        state: &mut state,
    };
    let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    if state.raw_value_token {
        // serde_json gives a map whose first key is its raw-value token a
        // special meaning, so such text takes the two-pass path.
        let value: Value = serde_json::from_str(text)?;
        return Ok((value, first_repeated_key(text)));
    }
    Ok((parsed?, state.repeated_key))
}

/// Key by which serde_json 1.x marks a map as a raw value when its
/// `raw_value` feature is on, which a dependency of this workspace enables.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

#[derive(Default)]
struct ParseState {
    /// Path of the first repeated key, in document order.
    repeated_key: Option<String>,
    /// A map began with [`RAW_VALUE_TOKEN`], so parsing stopped.
    raw_value_token: bool,
}

/// One key of the path from the root to the value being parsed.
struct PathNode<'a> {
    parent: Option<&'a PathNode<'a>>,
    key: &'a str,
}

/// Formats the dotted path of `key` inside the object at `parent`, such as `location.lat`.
fn dotted_path(parent: Option<&PathNode<'_>>, key: &str) -> String {
    let mut keys = vec![key];
    let mut node = parent;
    while let Some(current) = node {
        keys.push(current.key);
        node = current.parent;
    }
    keys.reverse();
    keys.join(".")
}

/// Builds a [`Value`] like serde_json's own visitor, and notes repeated keys.
struct ValueSeed<'p, 's> {
    /// Key path of the object containing this value; array items share their array's path.
    path: Option<&'p PathNode<'p>>,
    state: &'s mut ParseState,
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, deserializer)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            path: self.path,
            state: &mut *self.state,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.is_empty() && key == RAW_VALUE_TOKEN {
                self.state.raw_value_token = true;
                return Err(serde::de::Error::custom(
                    "map starts with the serde_json raw value token",
                ));
            }
            if self.state.repeated_key.is_none() && object.contains_key(&key) {
                self.state.repeated_key = Some(dotted_path(self.path, &key));
            }
            let node = PathNode {
                parent: self.path,
                key: &key,
            };
            let value = map.next_value_seed(ValueSeed {
                path: Some(&node),
                state: &mut *self.state,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Returns the path of the first key repeated within one JSON object, such as
/// `location.lat`. Expects text that already parsed as JSON.
fn first_repeated_key(text: &str) -> Option<String> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

    struct KeyCheck<'a> {
        path: &'a str,
        found: &'a mut Option<String>,
    }

    impl<'de> serde::de::DeserializeSeed<'de> for KeyCheck<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for KeyCheck<'_> {
        type Value = ();

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq
                .next_element_seed(KeyCheck {
                    path: self.path,
                    found: &mut *self.found,
                })?
                .is_some()
            {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) && self.found.is_none() {
                    *self.found = Some(path.clone());
                }
                map.next_value_seed(KeyCheck {
                    path: &path,
                    found: &mut *self.found,
                })?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let check = KeyCheck {
        path: "",
        found: &mut found,
    };
    serde::de::DeserializeSeed::deserialize(check, &mut deserializer).ok()?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the way validation did before `parse_value`: serde_json, then a
    /// second pass for repeated keys.
    fn parse_in_two_passes(text: &str) -> Result<(Value, Option<String>), String> {
        let value: Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
        Ok((value, first_repeated_key(text)))
    }

    #[test]
    fn one_pass_parse_matches_two_passes() {
        let cases = [
            r#"{"a":1,"b":"x"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":2},"a":3}"#,
            r#"{"a":1,"a":{"b":1,"b":2}}"#,
            r#"{"l":[{"x":1},{"y":2,"y":3}]}"#,
            r#"[{"k":1,"k":2}]"#,
            r#"{"a":1,"a":2"#,
            r#"{"a":1,"a":2} x"#,
            r#"{"a":1.5e400}"#,
            r#"{"a":-0.0,"b":-7,"c":18446744073709551615,"d":null,"e":true}"#,
            r#"{"\u0061":1,"a":2}"#,
            r#"{"$serde_json::private::RawValue":"{\"a\":1}"}"#,
            r#"{"$serde_json::private::RawValue":5}"#,
            r#"{"z":1,"$serde_json::private::RawValue":"1","z":2}"#,
            r#"{"a":{"$serde_json::private::RawValue":"[1,2]"},"a":1}"#,
            "{}",
            "[]",
            "7",
            "",
            "{\"a\":}",
        ];
        for text in cases {
            let one_pass = parse_value(text).map_err(|err| err.to_string());
            assert_eq!(one_pass, parse_in_two_passes(text), "text: {text}");
        }
    }

    #[test]
    fn one_pass_parse_deep_nesting_fails_alike() {
        let text = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let one_pass = parse_value(&text).map_err(|err| err.to_string());
        assert_eq!(one_pass, parse_in_two_passes(&text));
    }
}
