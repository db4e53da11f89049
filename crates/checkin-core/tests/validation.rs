//! Validation of raw submissions: one test per reason code that `validate`
//! produces, each checking the code and the field path, then the mapping of
//! accepted submissions to records.

use std::collections::{HashMap, HashSet};

use checkin_core::record::{CheckIn, Location, Method, Source, Void};
use checkin_core::sites::{Site, SiteRegistry};
use checkin_core::validate::{IntakeKind, MAX_SUBMISSION_BYTES, Submission, TimePolicy, validate};
use checkin_core::{EventId, Reason, Rejection};
use serde_json::{Value, json};

/// `at` of the base submission, 2026-05-01T09:30:00+08:00, as UTC microseconds:
/// 20,574 days from 1970-01-01 to 2026-05-01, times 86,400 s, plus 01:30.
const AT_US: i64 = 1_777_599_000_000_000;
const MINUTE_US: i64 = 60 * 1_000_000;
const DAY_US: i64 = 24 * 60 * MINUTE_US;
/// The sequencer's clock in most tests: ten minutes after `at`.
const NOW_US: i64 = AT_US + 10 * MINUTE_US;

const EVENT_ID: &str = "0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e";
const TARGET_ID: &str = "0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8f";

fn sites() -> SiteRegistry {
    SiteRegistry {
        sites: HashMap::from([
            ("jingan".to_owned(), Site::default()),
            ("静安店".to_owned(), Site::default()),
        ]),
        allow_unknown_sites: false,
    }
}

/// Builds a valid live check-in with only the required fields.
fn base() -> Value {
    json!({
        "id": EVENT_ID,
        "customer": "c-1001",
        "site": "jingan",
        "device": "gate-01",
        "at": "2026-05-01T09:30:00+08:00",
        "method": "qr",
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut submission = base();
    submission[field] = value;
    submission
}

fn without(field: &str) -> Value {
    let mut submission = base();
    submission
        .as_object_mut()
        .expect("base is an object")
        .remove(field);
    submission
}

fn validate_bytes_at(
    bytes: &[u8],
    intake: IntakeKind,
    now_us: i64,
) -> Result<Submission, Rejection> {
    validate(bytes, intake, now_us, &TimePolicy::default(), &sites())
}

fn validate_at(
    submission: &Value,
    intake: IntakeKind,
    now_us: i64,
) -> Result<Submission, Rejection> {
    validate_bytes_at(submission.to_string().as_bytes(), intake, now_us)
}

fn accept_check_in(submission: &Value, intake: IntakeKind, now_us: i64) -> CheckIn {
    match validate_at(submission, intake, now_us) {
        Ok(Submission::CheckIn(check_in)) => check_in,
        other => panic!("expected an accepted check-in, got {other:?}"),
    }
}

fn assert_rejection(result: Result<Submission, Rejection>, reason: Reason, field: &str) {
    let rejection = result.expect_err("submission should be rejected");
    assert_eq!(rejection.reason, reason, "{rejection}");
    assert_eq!(rejection.field, field, "{rejection}");
}

fn assert_rejected(submission: Value, reason: Reason, field: &str) {
    assert_rejection(
        validate_at(&submission, IntakeKind::Live, NOW_US),
        reason,
        field,
    );
}

fn location(lat: Value, lon: Value) -> Value {
    with("location", json!({ "lat": lat, "lon": lon }))
}

#[test]
fn invalid_utf8_rejected() {
    let bytes = b"{\"customer\": \"c-\xff\"}";
    assert_rejection(
        validate_bytes_at(bytes, IntakeKind::Live, NOW_US),
        Reason::InvalidUtf8,
        "",
    );
}

#[test]
fn invalid_json_rejected() {
    let bytes = b"{\"customer\": ";
    assert_rejection(
        validate_bytes_at(bytes, IntakeKind::Live, NOW_US),
        Reason::InvalidJson,
        "",
    );
}

#[test]
fn oversized_payload_rejected() {
    let mut bytes = base().to_string().into_bytes();
    bytes.resize(MAX_SUBMISSION_BYTES + 1, b' ');

    assert_rejection(
        validate_bytes_at(&bytes, IntakeKind::Live, NOW_US),
        Reason::PayloadTooLarge,
        "",
    );
}

#[test]
fn payload_at_size_limit_accepted() {
    let mut bytes = base().to_string().into_bytes();
    bytes.resize(MAX_SUBMISSION_BYTES, b' ');

    assert!(validate_bytes_at(&bytes, IntakeKind::Live, NOW_US).is_ok());
}

#[test]
fn non_object_rejected() {
    assert_rejected(json!([base()]), Reason::NotAnObject, "");
}

#[test]
fn unknown_field_rejected() {
    assert_rejected(with("colour", json!("red")), Reason::UnknownField, "colour");
}

#[test]
fn unknown_location_field_rejected() {
    let submission = with("location", json!({ "lat": 31.2, "lon": 121.4, "alt": 4 }));
    assert_rejected(submission, Reason::UnknownField, "location.alt");
}

#[test]
fn repeated_json_key_rejected() {
    let text = r#"{"id":"0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e","customer":"c-1","customer":"c-2"}"#;
    let rejection = validate_bytes_at(text.as_bytes(), IntakeKind::Live, NOW_US).unwrap_err();
    assert_eq!(rejection.reason, Reason::DuplicateField);
    assert_eq!(rejection.field, "customer");
}

#[test]
fn repeated_nested_json_key_rejected() {
    let text = r#"{"location":{"lat":1.0,"lat":2.0}}"#;
    let rejection = validate_bytes_at(text.as_bytes(), IntakeKind::Live, NOW_US).unwrap_err();
    assert_eq!(rejection.reason, Reason::DuplicateField);
    assert_eq!(rejection.field, "location.lat");
}

#[test]
fn attribute_keys_equal_after_nfc_rejected() {
    let submission = with(
        "attributes",
        json!({ "Cafe\u{301}": "a", "Caf\u{e9}": "b" }),
    );
    assert_rejected(submission, Reason::DuplicateField, "attributes.Caf\u{e9}");
}

#[test]
fn offset_beyond_fourteen_hours_rejected() {
    let submission = with("at", json!("2026-05-01T09:30:00+23:59"));
    assert_rejected(submission, Reason::OffsetOutOfRange, "at");
}

#[test]
fn extreme_offsets_in_use_accepted() {
    for offset in ["+14:00", "-12:00", "+05:45"] {
        let at = format!("2026-04-30T09:30:00{offset}");
        let submission = with("at", json!(at));
        assert!(
            validate_at(&submission, IntakeKind::Import, NOW_US).is_ok(),
            "offset {offset}"
        );
    }
}

#[test]
fn invisible_format_characters_rejected() {
    for text in ["c-1\u{200B}", "\u{202E}1-c", "\u{FEFF}c-1"] {
        let submission = with("customer", json!(text));
        assert_rejected(submission, Reason::ControlCharacter, "customer");
    }
}

#[test]
fn zero_width_joiner_in_activity_accepted() {
    let submission = with("activity", json!("亲子课 👨\u{200D}👩\u{200D}👧"));
    assert!(validate_at(&submission, IntakeKind::Live, NOW_US).is_ok());
}

#[test]
fn missing_field_rejected() {
    assert_rejected(without("customer"), Reason::MissingField, "customer");
}

#[test]
fn null_required_field_is_missing() {
    assert_rejected(with("device", Value::Null), Reason::MissingField, "device");
}

#[test]
fn missing_latitude_rejected() {
    let submission = with("location", json!({ "lon": 121.4 }));
    assert_rejected(submission, Reason::MissingField, "location.lat");
}

#[test]
fn empty_field_rejected() {
    assert_rejected(with("device", json!("  \t ")), Reason::EmptyField, "device");
}

#[test]
fn wrong_type_rejected() {
    assert_rejected(with("staff", json!(7)), Reason::WrongType, "staff");
}

#[test]
fn non_string_attribute_rejected() {
    let submission = with("attributes", json!({ "lane": 3 }));
    assert_rejected(submission, Reason::WrongType, "attributes.lane");
}

#[test]
fn control_character_rejected() {
    assert_rejected(
        with("customer", json!("c-\u{7}1001")),
        Reason::ControlCharacter,
        "customer",
    );
}

#[test]
fn too_long_rejected() {
    assert_rejected(with("site", json!("s".repeat(65))), Reason::TooLong, "site");
}

#[test]
fn text_at_length_limit_accepted() {
    let check_in = accept_check_in(
        &with("customer", json!("界".repeat(128))),
        IntakeKind::Live,
        NOW_US,
    );
    assert_eq!(check_in.customer.chars().count(), 128);
}

#[test]
fn invalid_uuid_rejected() {
    assert_rejected(with("id", json!("not-a-uuid")), Reason::InvalidUuid, "id");
}

#[test]
fn invalid_timestamp_rejected() {
    assert_rejected(
        with("at", json!("yesterday")),
        Reason::InvalidTimestamp,
        "at",
    );
    assert_rejected(
        with("at", json!("2026-02-30T09:30:00+08:00")),
        Reason::InvalidTimestamp,
        "at",
    );
}

#[test]
fn missing_offset_rejected() {
    assert_rejected(
        with("at", json!("2026-05-01T09:30:00")),
        Reason::MissingOffset,
        "at",
    );
    assert_rejected(
        with("at", json!("2026-05-01T09:30")),
        Reason::MissingOffset,
        "at",
    );
}

#[test]
fn six_minutes_ahead_rejected() {
    let now_us = AT_US - 6 * MINUTE_US;
    assert_rejection(
        validate_at(&base(), IntakeKind::Live, now_us),
        Reason::InFuture,
        "at",
    );
}

#[test]
fn five_minutes_ahead_accepted() {
    accept_check_in(&base(), IntakeKind::Live, AT_US - 5 * MINUTE_US);
}

#[test]
fn beyond_horizon_rejected() {
    let now_us = AT_US + 36 * DAY_US;
    assert_rejection(
        validate_at(&base(), IntakeKind::Live, now_us),
        Reason::BeyondHorizon,
        "at",
    );
}

#[test]
fn three_day_old_live_accepted() {
    let check_in = accept_check_in(&base(), IntakeKind::Live, AT_US + 3 * DAY_US);
    assert_eq!(check_in.source, Source::Live);
}

#[test]
fn import_exempt_from_horizon() {
    let now_us = AT_US + 400 * DAY_US;

    let check_in = accept_check_in(&base(), IntakeKind::Import, now_us);
    assert_eq!(check_in.source, Source::Import);
    assert_eq!(check_in.at_us, AT_US);
}

#[test]
fn import_still_rejected_in_future() {
    let now_us = AT_US - 6 * MINUTE_US;
    assert_rejection(
        validate_at(&base(), IntakeKind::Import, now_us),
        Reason::InFuture,
        "at",
    );
}

#[test]
fn invalid_method_rejected() {
    assert_rejected(
        with("method", json!("bluetooth")),
        Reason::InvalidMethod,
        "method",
    );
}

#[test]
fn latitude_out_of_range_rejected() {
    let submission = location(json!(121.47), json!(31.23));
    assert_rejected(submission, Reason::LatitudeOutOfRange, "location.lat");
}

#[test]
fn longitude_out_of_range_rejected() {
    let submission = location(json!(31.23), json!(-180.5));
    assert_rejected(submission, Reason::LongitudeOutOfRange, "location.lon");
}

#[test]
fn coordinate_bounds_accepted() {
    let check_in = accept_check_in(&location(json!(-90), json!(180)), IntakeKind::Live, NOW_US);
    let location = check_in.location.expect("location is kept");

    assert_eq!(location.lat_microdeg, -90_000_000);
    assert_eq!(location.lon_microdeg, 180_000_000);
}

#[test]
fn invalid_coordinate_rejected() {
    let submission = location(json!("31.23"), json!(121.47));
    assert_rejected(submission, Reason::InvalidCoordinate, "location.lat");
}

#[test]
fn invalid_accuracy_rejected() {
    let submission = with(
        "location",
        json!({ "lat": 31.2, "lon": 121.4, "accuracy_m": -1 }),
    );
    assert_rejected(submission, Reason::InvalidAccuracy, "location.accuracy_m");
}

#[test]
fn too_many_attributes_rejected() {
    let entries: serde_json::Map<String, Value> = (0..17)
        .map(|index| (format!("k{index}"), json!("v")))
        .collect();
    assert_rejected(
        with("attributes", Value::Object(entries)),
        Reason::TooManyAttributes,
        "attributes",
    );
}

#[test]
fn sixteen_attributes_accepted() {
    let entries: serde_json::Map<String, Value> = (0..16)
        .map(|index| (format!("k{index:02}"), json!("v")))
        .collect();

    let check_in = accept_check_in(
        &with("attributes", Value::Object(entries)),
        IntakeKind::Live,
        NOW_US,
    );
    assert_eq!(check_in.attributes.len(), 16);
}

#[test]
fn unknown_site_rejected() {
    assert_rejected(with("site", json!("xuhui")), Reason::UnknownSite, "site");
}

#[test]
fn unknown_site_accepted_when_allowed() {
    let registry = SiteRegistry {
        allow_unknown_sites: true,
        ..sites()
    };
    let bytes = with("site", json!("xuhui")).to_string();

    let result = validate(
        bytes.as_bytes(),
        IntakeKind::Live,
        NOW_US,
        &TimePolicy::default(),
        &registry,
    );
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn full_submission_maps_to_record() {
    let submission = json!({
        "id": EVENT_ID,
        "customer": "c-1001",
        "site": "静安店",
        "device": "gate-01",
        "at": "2026-05-01T09:30:00+08:00",
        "method": "gps",
        "location": { "lat": 31.230416, "lon": 121.473701, "accuracy_m": 12.5 },
        "activity": "瑜伽课",
        "staff": "王芳",
        "attributes": { "note": "年卡", "lane": "3" },
    });

    let expected = CheckIn {
        event_id: EVENT_ID.parse().expect("valid UUID"),
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
        activity: Some("瑜伽课".into()),
        staff: Some("王芳".into()),
        attributes: vec![("lane".into(), "3".into()), ("note".into(), "年卡".into())],
        source: Source::Live,
    };
    assert_eq!(
        accept_check_in(&submission, IntakeKind::Live, NOW_US),
        expected
    );
}

#[test]
fn null_optional_fields_are_absent() {
    let mut submission = base();
    for field in ["location", "activity", "staff", "attributes"] {
        submission[field] = Value::Null;
    }

    let check_in = accept_check_in(&submission, IntakeKind::Live, NOW_US);
    assert_eq!(check_in.location, None);
    assert_eq!(check_in.activity, None);
    assert_eq!(check_in.staff, None);
    assert!(check_in.attributes.is_empty());
}

#[test]
fn negative_offset_kept() {
    // 2026-04-30T22:30:00-03:00 is the same instant as the base submission.
    let submission = with("at", json!("2026-04-30T22:30:00-03:00"));

    let check_in = accept_check_in(&submission, IntakeKind::Live, NOW_US);
    assert_eq!(check_in.at_us, AT_US);
    assert_eq!(check_in.utc_offset_s, -10_800);
}

#[test]
fn decomposed_text_stored_as_nfc() {
    let mut submission = with("customer", json!("Cafe\u{301}"));
    submission["attributes"] = json!({ "note": "Cafe\u{301} Ole\u{301}" });

    let check_in = accept_check_in(&submission, IntakeKind::Live, NOW_US);
    assert_eq!(check_in.customer, "Caf\u{e9}");
    assert_eq!(
        check_in.attributes,
        vec![("note".into(), "Caf\u{e9} Ol\u{e9}".into())]
    );
}

#[test]
fn void_maps_to_record() {
    let submission = json!({
        "id": EVENT_ID,
        "target": TARGET_ID,
        "reason": "重复扫码",
        "requested_by": "manager-01",
    });

    let expected = Void {
        event_id: EVENT_ID.parse().expect("valid UUID"),
        target: TARGET_ID.parse::<EventId>().expect("valid UUID"),
        reason: "重复扫码".into(),
        requested_by: "manager-01".into(),
    };
    let result = validate_at(&submission, IntakeKind::Void, NOW_US);
    assert_eq!(result, Ok(Submission::Void(expected)));
}

#[test]
fn void_without_target_rejected() {
    let submission = json!({ "id": EVENT_ID, "reason": "duplicate", "requested_by": "manager-01" });
    assert_rejection(
        validate_at(&submission, IntakeKind::Void, NOW_US),
        Reason::MissingField,
        "target",
    );
}

#[test]
fn void_with_check_in_field_rejected() {
    let submission = json!({
        "id": EVENT_ID,
        "target": TARGET_ID,
        "reason": "duplicate",
        "requested_by": "manager-01",
        "site": "jingan",
    });
    assert_rejection(
        validate_at(&submission, IntakeKind::Void, NOW_US),
        Reason::UnknownField,
        "site",
    );
}

#[test]
fn messages_name_the_field() {
    let submission = location(json!(121.47), json!(31.23));
    let rejection =
        validate_at(&submission, IntakeKind::Live, NOW_US).expect_err("latitude is out of range");

    assert!(
        rejection.message_en().contains("location.lat"),
        "{}",
        rejection.message_en()
    );
    assert!(
        rejection.message_zh().contains("location.lat"),
        "{}",
        rejection.message_zh()
    );
    assert!(
        rejection.message_en().contains("121.47"),
        "{}",
        rejection.message_en()
    );
}

#[test]
fn every_reason_has_texts() {
    // These reasons concern the whole payload or the subject, not one field.
    let without_field = [
        Reason::InvalidUtf8,
        Reason::InvalidJson,
        Reason::PayloadTooLarge,
        Reason::NotAnObject,
        Reason::UnknownSubject,
    ];

    for reason in Reason::ALL {
        let rejection = Rejection::with_detail(reason, "probe.field", "probe-detail");
        let messages = [rejection.message_en(), rejection.message_zh()];

        assert!(!reason.code().is_empty(), "{reason:?} has no code");
        for message in &messages {
            assert!(
                !message.trim().is_empty(),
                "{reason:?} has an empty message"
            );
            assert!(
                !message.contains('{'),
                "{reason:?} leaves a placeholder: {message}"
            );
            if !without_field.contains(&reason) {
                assert!(
                    message.contains("probe.field"),
                    "{reason:?} omits the field: {message}"
                );
            }
        }
    }
}

#[test]
fn reason_codes_unique() {
    let codes: HashSet<&str> = Reason::ALL.iter().map(|reason| reason.code()).collect();
    assert_eq!(codes.len(), Reason::ALL.len());

    for reason in Reason::ALL {
        assert_eq!(Reason::from_code(reason.code()), Some(reason));
    }
}

#[test]
fn reason_codes_table_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/reason-codes.md");
    let table = std::fs::read_to_string(path).expect("schemas/reason-codes.md is readable");

    for reason in Reason::ALL {
        // Filling the placeholders with their own names gives back the templates.
        let templates = Rejection::with_detail(reason, "{field}", "{detail}");
        let row_end = format!(
            "| {} | {} |",
            templates.message_en(),
            templates.message_zh()
        );
        let row = table
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", reason.code())))
            .unwrap_or_else(|| panic!("reason-codes.md has no row for {}", reason.code()));

        assert!(
            row.ends_with(&row_end),
            "row of {} differs from reason.rs:\n{row}",
            reason.code()
        );
    }
}
