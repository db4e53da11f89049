use super::*;

const VALID: &str = r#"
name = "gym_weekly"
description = "Weekly visits per gym site"
[filter]
sites = ["sh-jingan", "sh-xuhui"]
activities = ["gym"]
methods = ["qr", "nfc"]
from = "2026-01-01"
to = "2026-12-31"
segments = ["vip", "active"]
[group]
by = ["site", "iso_week"]
[measures]
include = ["check_ins", "visits", "unique_customers"]
"#;

/// Returns the spec text with `group.by` and `measures.include` replaced.
fn with_columns(group: &str, measures: &str) -> String {
    format!("name = \"t\"\n[group]\nby = {group}\n[measures]\ninclude = {measures}\n")
}

fn error_of(text: &str) -> SpecError {
    parse(text).expect_err("spec must be rejected")
}

#[test]
fn full_spec_parses() {
    let spec = parse(VALID).expect("valid spec");
    assert_eq!(spec.name, "gym_weekly");
    assert_eq!(spec.model_name(), "spec_gym_weekly");
    assert_eq!(spec.group_by, vec![GroupKey::Site, GroupKey::IsoWeek]);
    assert_eq!(
        spec.measures,
        vec![Measure::CheckIns, Measure::Visits, Measure::UniqueCustomers]
    );
    let filter = &spec.filter;
    assert_eq!(
        filter.sites,
        Some(BTreeSet::from(["sh-jingan".into(), "sh-xuhui".into()]))
    );
    assert_eq!(
        filter.methods,
        Some(BTreeSet::from(["nfc".into(), "qr".into()]))
    );
    assert_eq!(
        filter.from,
        Some(Bound::Date(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()))
    );
    assert_eq!(
        filter.to,
        Some(Bound::Date(NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()))
    );
    assert_eq!(
        filter.segments,
        Some(BTreeSet::from([Segment::Vip, Segment::Active]))
    );
}

#[test]
fn minimal_spec_has_no_filter() {
    let spec = parse(&with_columns("[\"hour\"]", "[\"visits\"]")).expect("valid spec");
    assert_eq!(spec.filter, Filter::default());
    assert_eq!(spec.description, "");
}

#[test]
fn bare_toml_dates_and_instants_parse() {
    let text = "name = \"t\"\n[filter]\nfrom = 2026-01-01\nto = \"2026-03-01T08:00:00+08:00\"\n\
                [group]\nby = [\"site\"]\n[measures]\ninclude = [\"check_ins\"]\n";
    let spec = parse(text).expect("valid spec");
    assert_eq!(
        spec.filter.from,
        Some(Bound::Date(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()))
    );
    // 2026-03-01T00:00:00Z = 1_772_323_200 s.
    assert_eq!(spec.filter.to, Some(Bound::Instant(1_772_323_200_000_000)));
}

#[test]
fn unknown_group_key_is_rejected() {
    let err = error_of(&with_columns("[\"site\", \"weekday\"]", "[\"visits\"]"));
    assert_eq!(err.code(), "spec_unknown_group_key");
    assert_eq!(err.field, "group.by");
    assert!(err.message().contains("\"weekday\""), "{}", err.message());
    assert!(
        err.message_zh().contains("未知的列"),
        "{}",
        err.message_zh()
    );
}

#[test]
fn empty_group_is_rejected() {
    let err = error_of(&with_columns("[]", "[\"visits\"]"));
    assert_eq!(err.code(), "spec_empty_group");
    assert_eq!(err.field, "group.by");
}

#[test]
fn duplicate_group_key_is_rejected() {
    let err = error_of(&with_columns("[\"site\", \"site\"]", "[\"visits\"]"));
    assert_eq!(err.code(), "spec_duplicate_group_key");
}

#[test]
fn duplicate_measure_is_rejected() {
    let err = error_of(&with_columns(
        "[\"site\"]",
        "[\"visits\", \"check_ins\", \"visits\"]",
    ));
    assert_eq!(err.code(), "spec_duplicate_measure");
    assert_eq!(err.field, "measures.include");
    assert_eq!(
        err.message(),
        "measures.include names measure \"visits\" twice: remove the repeat"
    );
    assert_eq!(
        err.message_zh(),
        "measures.include 重复指定了指标 \"visits\"：请删除重复项"
    );
}

#[test]
fn unknown_and_empty_measures_are_rejected() {
    assert_eq!(
        error_of(&with_columns("[\"site\"]", "[\"revenue\"]")).code(),
        "spec_unknown_measure"
    );
    assert_eq!(
        error_of(&with_columns("[\"site\"]", "[]")).code(),
        "spec_empty_measures"
    );
}

#[test]
fn bad_names_are_rejected() {
    for name in ["", "Gym", "gym-weekly", "健身", "a b", &"x".repeat(65)] {
        let text = format!(
            "name = {name:?}\n[group]\nby = [\"site\"]\n[measures]\ninclude = [\"visits\"]\n"
        );
        let err = error_of(&text);
        assert_eq!(err.code(), "spec_invalid_name", "name {name:?}");
        assert_eq!(err.field, "name");
    }
    let longest = format!(
        "name = {:?}\n[group]\nby = [\"site\"]\n[measures]\ninclude = [\"visits\"]\n",
        "a_9".repeat(21)
    );
    assert!(parse(&longest).is_ok(), "63 characters are allowed");
}

#[test]
fn bad_dates_are_rejected() {
    for (line, field) in [
        ("from = \"2026-13-01\"", "filter.from"),
        ("to = \"2026/05/01\"", "filter.to"),
        ("from = \"yesterday\"", "filter.from"),
        ("to = \"2026-05-01T09:30:00\"", "filter.to"),
    ] {
        let text = format!(
            "name = \"t\"\n[filter]\n{line}\n[group]\nby = [\"site\"]\n[measures]\ninclude = [\"visits\"]\n"
        );
        let err = error_of(&text);
        assert_eq!(err.code(), "spec_invalid_date", "{line}");
        assert_eq!(err.field, field, "{line}");
    }
}

#[test]
fn reversed_range_is_rejected() {
    let text = "name = \"t\"\n[filter]\nfrom = \"2026-05-02\"\nto = \"2026-05-01\"\n\
                [group]\nby = [\"site\"]\n[measures]\ninclude = [\"visits\"]\n";
    let err = error_of(text);
    assert_eq!(err.code(), "spec_empty_range");
    assert_eq!(
        err.message(),
        "filter is empty: filter.from 2026-05-02 is after filter.to"
    );
}

#[test]
fn bad_filter_values_are_rejected() {
    for (line, code, field) in [
        (
            "methods = [\"card\"]",
            "spec_unknown_method",
            "filter.methods",
        ),
        (
            "segments = [\"gold\"]",
            "spec_unknown_segment",
            "filter.segments",
        ),
        ("sites = []", "spec_empty_filter_list", "filter.sites"),
        (
            "activities = []",
            "spec_empty_filter_list",
            "filter.activities",
        ),
    ] {
        let text = format!(
            "name = \"t\"\n[filter]\n{line}\n[group]\nby = [\"site\"]\n[measures]\ninclude = [\"visits\"]\n"
        );
        let err = error_of(&text);
        assert_eq!(err.code(), code, "{line}");
        assert_eq!(err.field, field, "{line}");
    }
}

#[test]
fn unknown_field_is_rejected() {
    let text = "name = \"t\"\n[filter]\nsite = [\"sh-jingan\"]\n\
                [group]\nby = [\"site\"]\n[measures]\ninclude = [\"visits\"]\n";
    let err = error_of(text);
    assert_eq!(err.code(), "spec_invalid_toml");
    assert!(
        err.message().contains("unknown field `site`"),
        "{}",
        err.message()
    );
    assert!(
        err.message_zh().starts_with("规格文件无效"),
        "{}",
        err.message_zh()
    );
}

#[test]
fn missing_group_is_rejected() {
    let err = error_of("name = \"t\"\n[measures]\ninclude = [\"visits\"]\n");
    assert_eq!(err.code(), "spec_invalid_toml");
    assert!(err.message().contains("group"), "{}", err.message());
}
