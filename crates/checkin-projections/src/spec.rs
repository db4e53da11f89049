//! Spec projections: read models that an analyst defines in a TOML file
//! instead of in Rust. A spec names a filter over check-ins, the group
//! columns and the measures; [`SpecProjection`] folds the ledger into one
//! row of measures per group, and [`rows`] reads the rows back.
//!
//! ```toml
//! name = "gym_weekly"
//! description = "Weekly visits per gym site"
//! [filter]
//! sites = ["sh-jingan", "sh-xuhui"]
//! activities = ["gym"]
//! from = "2026-01-01"
//! [group]
//! by = ["site", "iso_week"]
//! [measures]
//! include = ["check_ins", "visits", "unique_customers"]
//! ```
//!
//! The `segments` filter is not part of the fold: a customer's segment
//! depends on a reference time and lives in the frequency model, so a fold
//! that used it would not rebuild the same bytes from the ledger alone. The
//! fold keeps every figure per customer as well, and [`rows_for_customers`]
//! sums only the customers a caller keeps, such as those in a segment as of
//! a reference time.

mod fold;

use std::collections::BTreeSet;
use std::fmt;

use checkin_core::record::Method;
use chrono::{DateTime, NaiveDate};
use serde::Deserialize;

use crate::segments::Segment;

pub use fold::{SpecProjection, SpecRow, rows, rows_for_customers, stored_spec};

/// Prefix of a spec model's name: spec `gym_weekly` is model `spec_gym_weekly`.
pub const MODEL_PREFIX: &str = "spec_";

/// Maximum length of a spec name.
pub const MAX_NAME_LEN: usize = 64;

/// A validated spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Name: 1 to [`MAX_NAME_LEN`] characters of `a-z`, `0-9` and `_`.
    pub name: String,
    /// Free text for people.
    pub description: String,
    /// Which check-ins count.
    pub filter: Filter,
    /// Group columns, in output order; never empty and without repeats.
    pub group_by: Vec<GroupKey>,
    /// Measure columns, in output order; never empty and without repeats.
    pub measures: Vec<Measure>,
}

impl Spec {
    /// Returns the model name, also its sled tree and directory name.
    pub fn model_name(&self) -> String {
        format!("{MODEL_PREFIX}{}", self.name)
    }
}

/// The check-ins a spec counts. Each part that is set must hold; a list
/// holds when the check-in has any of its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Site ids.
    pub sites: Option<BTreeSet<String>>,
    /// Activities; a check-in without an activity never matches.
    pub activities: Option<BTreeSet<String>>,
    /// Stable names of capture methods, such as `qr`.
    pub methods: Option<BTreeSet<String>>,
    /// First business date or instant, inclusive.
    pub from: Option<Bound>,
    /// Last business date or instant, inclusive.
    pub to: Option<Bound>,
    /// Customer segments, applied when the rows are read, not in the fold.
    pub segments: Option<BTreeSet<Segment>>,
}

/// One end of the time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// A business date in the site's calendar.
    Date(NaiveDate),
    /// An instant, UTC microseconds.
    Instant(i64),
}

/// A group column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    /// Site id.
    Site,
    /// Customer id.
    Customer,
    /// Activity, empty when the check-in has none.
    Activity,
    /// Business date, such as `2026-05-01`.
    LocalDay,
    /// ISO week of the business date, such as `2026-W53`.
    IsoWeek,
    /// Month of the business date, such as `2026-12`.
    Month,
    /// Local wall-clock hour, `00` to `23`.
    Hour,
}

impl GroupKey {
    /// All group columns.
    pub const ALL: [GroupKey; 7] = [
        Self::Site,
        Self::Customer,
        Self::Activity,
        Self::LocalDay,
        Self::IsoWeek,
        Self::Month,
        Self::Hour,
    ];

    /// Returns the stable name used in specs and column headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Site => "site",
            Self::Customer => "customer",
            Self::Activity => "activity",
            Self::LocalDay => "local_day",
            Self::IsoWeek => "iso_week",
            Self::Month => "month",
            Self::Hour => "hour",
        }
    }

    /// Parses a stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.as_str() == name)
    }
}

/// A measure column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Measure {
    /// Check-ins that are not voided.
    CheckIns,
    /// Visits whose first scan falls in the group.
    Visits,
    /// Distinct customers with at least one check-in in the group.
    UniqueCustomers,
}

impl Measure {
    /// All measures.
    pub const ALL: [Measure; 3] = [Self::CheckIns, Self::Visits, Self::UniqueCustomers];

    /// Returns the stable name used in specs and column headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CheckIns => "check_ins",
            Self::Visits => "visits",
            Self::UniqueCustomers => "unique_customers",
        }
    }

    /// Parses a stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|measure| measure.as_str() == name)
    }
}

/// The rule a spec breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecErrorKind {
    /// The file is not TOML, has an unknown or missing field, or a value of the wrong type.
    InvalidToml,
    /// `name` is empty, too long or has characters outside `a-z`, `0-9` and `_`.
    InvalidName,
    /// `group.by` is empty.
    EmptyGroup,
    /// `group.by` names a column that does not exist.
    UnknownGroupKey,
    /// `group.by` names a column twice.
    DuplicateGroupKey,
    /// `measures.include` is empty.
    EmptyMeasures,
    /// `measures.include` names a measure that does not exist.
    UnknownMeasure,
    /// `measures.include` names a measure twice.
    DuplicateMeasure,
    /// A filter list is present but empty, so it would match nothing.
    EmptyFilterList,
    /// `filter.methods` names a method that does not exist.
    UnknownMethod,
    /// `filter.segments` names a segment that does not exist.
    UnknownSegment,
    /// `filter.from` or `filter.to` is neither a date nor an RFC 3339 time.
    InvalidDate,
    /// `filter.from` is after `filter.to`.
    EmptyRange,
}

impl SpecErrorKind {
    /// Returns the stable snake_case code.
    pub fn code(self) -> &'static str {
        self.texts().0
    }

    /// Returns (code, English template, Chinese template); `{field}` and
    /// `{detail}` are replaced by the error's values.
    fn texts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::InvalidToml => (
                "spec_invalid_toml",
                "spec file is invalid: {detail}",
                "规格文件无效：{detail}",
            ),
            Self::InvalidName => (
                "spec_invalid_name",
                "{field} {detail} is invalid: use 1 to 64 characters of a-z, 0-9 and _",
                "{field} {detail} 无效：只能使用 1 到 64 个 a-z、0-9 或 _ 字符",
            ),
            Self::EmptyGroup => (
                "spec_empty_group",
                "{field} is empty: name at least one group column",
                "{field} 为空：至少指定一个分组列",
            ),
            Self::UnknownGroupKey => (
                "spec_unknown_group_key",
                "{field} has unknown column {detail}: expected site, customer, activity, local_day, iso_week, month or hour",
                "{field} 含有未知的列 {detail}：可用的列为 site、customer、activity、local_day、iso_week、month、hour",
            ),
            Self::DuplicateGroupKey => (
                "spec_duplicate_group_key",
                "{field} names column {detail} twice: remove the repeat",
                "{field} 重复指定了列 {detail}：请删除重复项",
            ),
            Self::EmptyMeasures => (
                "spec_empty_measures",
                "{field} is empty: name at least one measure",
                "{field} 为空：至少指定一个指标",
            ),
            Self::UnknownMeasure => (
                "spec_unknown_measure",
                "{field} has unknown measure {detail}: expected check_ins, visits or unique_customers",
                "{field} 含有未知的指标 {detail}：可用的指标为 check_ins、visits、unique_customers",
            ),
            Self::DuplicateMeasure => (
                "spec_duplicate_measure",
                "{field} names measure {detail} twice: remove the repeat",
                "{field} 重复指定了指标 {detail}：请删除重复项",
            ),
            Self::EmptyFilterList => (
                "spec_empty_filter_list",
                "{field} is an empty list and would match nothing: remove it or add values",
                "{field} 是空列表，不会匹配任何打卡：请删除它或填入取值",
            ),
            Self::UnknownMethod => (
                "spec_unknown_method",
                "{field} has unknown method {detail}: expected qr, nfc, gps, wifi, face, kiosk or staff",
                "{field} 含有未知的打卡方式 {detail}：可用的方式为 qr、nfc、gps、wifi、face、kiosk、staff",
            ),
            Self::UnknownSegment => (
                "spec_unknown_segment",
                "{field} has unknown segment {detail}: expected dormant, at_risk, vip, active, new or occasional",
                "{field} 含有未知的客群 {detail}：可用的客群为 dormant、at_risk、vip、active、new、occasional",
            ),
            Self::InvalidDate => (
                "spec_invalid_date",
                "{field} {detail} is invalid: expected a date such as 2026-05-01 or an RFC 3339 time such as 2026-05-01T09:30:00+08:00",
                "{field} {detail} 无效：应为日期（如 2026-05-01）或 RFC 3339 时间（如 2026-05-01T09:30:00+08:00）",
            ),
            Self::EmptyRange => (
                "spec_empty_range",
                "{field} is empty: filter.from {detail} is after filter.to",
                "{field} 为空：filter.from {detail} 晚于 filter.to",
            ),
        }
    }
}

/// A spec that breaks a rule: the field, the rule, and text in English and Chinese.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The rule broken.
    pub kind: SpecErrorKind,
    /// The field, as a dotted TOML path such as `group.by`.
    pub field: String,
    /// The offending value or the parser's message.
    pub detail: String,
}

impl SpecError {
    fn new(kind: SpecErrorKind, field: &str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.to_string(),
            detail: detail.into(),
        }
    }

    /// Returns the stable snake_case code.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Returns the English message.
    pub fn message(&self) -> String {
        self.fill(self.kind.texts().1)
    }

    /// Returns the Chinese message.
    pub fn message_zh(&self) -> String {
        self.fill(self.kind.texts().2)
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{field}", &self.field)
            .replace("{detail}", &self.detail)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

impl std::error::Error for SpecError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    filter: RawFilter,
    group: RawGroup,
    measures: RawMeasures,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    sites: Option<Vec<String>>,
    activities: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    from: Option<RawBound>,
    to: Option<RawBound>,
    segments: Option<Vec<String>>,
}

/// A bound as written: quoted text, or a bare TOML date or date-time.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawBound {
    Text(String),
    Toml(toml::value::Datetime),
}

impl RawBound {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Toml(value) => value.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    by: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasures {
    include: Vec<String>,
}

/// Parses and validates a spec from TOML text.
///
/// # Errors
///
/// Returns the first rule the spec breaks, naming the field.
pub fn parse(text: &str) -> Result<Spec, SpecError> {
    let raw: RawSpec = toml::from_str(text).map_err(|err| {
        SpecError::new(
            SpecErrorKind::InvalidToml,
            "",
            err.to_string().trim().replace('\n', " "),
        )
    })?;
    validate_name(&raw.name)?;
    let group_by = parse_names(
        &raw.group.by,
        "group.by",
        GroupKey::from_name,
        [
            SpecErrorKind::EmptyGroup,
            SpecErrorKind::UnknownGroupKey,
            SpecErrorKind::DuplicateGroupKey,
        ],
    )?;
    let measures = parse_names(
        &raw.measures.include,
        "measures.include",
        Measure::from_name,
        [
            SpecErrorKind::EmptyMeasures,
            SpecErrorKind::UnknownMeasure,
            SpecErrorKind::DuplicateMeasure,
        ],
    )?;
    Ok(Spec {
        name: raw.name,
        description: raw.description,
        filter: parse_filter(raw.filter)?,
        group_by,
        measures,
    })
}

/// Checks a spec name: 1 to [`MAX_NAME_LEN`] characters of `a-z`, `0-9` and `_`.
///
/// # Errors
///
/// Returns [`SpecErrorKind::InvalidName`] for field `name`.
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(SpecError::new(
            SpecErrorKind::InvalidName,
            "name",
            format!("{name:?}"),
        ))
    }
}

/// Parses a list of names that must be non-empty, known and distinct;
/// `kinds` are the errors for (empty, unknown, repeated).
fn parse_names<T: PartialEq>(
    names: &[String],
    field: &str,
    from_name: impl Fn(&str) -> Option<T>,
    kinds: [SpecErrorKind; 3],
) -> Result<Vec<T>, SpecError> {
    let [empty, unknown, repeated] = kinds;
    if names.is_empty() {
        return Err(SpecError::new(empty, field, ""));
    }
    let mut parsed = Vec::with_capacity(names.len());
    for name in names {
        let Some(value) = from_name(name) else {
            return Err(SpecError::new(unknown, field, format!("{name:?}")));
        };
        if parsed.contains(&value) {
            return Err(SpecError::new(repeated, field, format!("{name:?}")));
        }
        parsed.push(value);
    }
    Ok(parsed)
}

fn parse_filter(raw: RawFilter) -> Result<Filter, SpecError> {
    let from = raw
        .from
        .map(|bound| parse_bound("filter.from", bound))
        .transpose()?;
    let to = raw
        .to
        .map(|bound| parse_bound("filter.to", bound))
        .transpose()?;
    if let (Some(first), Some(last)) = (from, to)
        && range_is_empty(first, last)
    {
        return Err(SpecError::new(
            SpecErrorKind::EmptyRange,
            "filter",
            bound_text(first),
        ));
    }
    Ok(Filter {
        sites: text_set(raw.sites, "filter.sites")?,
        activities: text_set(raw.activities, "filter.activities")?,
        methods: named_set(
            raw.methods,
            "filter.methods",
            |name| Method::from_name(name).map(|method| method.as_str().to_string()),
            SpecErrorKind::UnknownMethod,
        )?,
        from,
        to,
        segments: named_set(
            raw.segments,
            "filter.segments",
            Segment::from_name,
            SpecErrorKind::UnknownSegment,
        )?,
    })
}

fn text_set(
    values: Option<Vec<String>>,
    field: &str,
) -> Result<Option<BTreeSet<String>>, SpecError> {
    named_set(
        values,
        field,
        |value| Some(value.to_string()),
        SpecErrorKind::EmptyFilterList,
    )
}

fn named_set<T: Ord>(
    values: Option<Vec<String>>,
    field: &str,
    from_name: impl Fn(&str) -> Option<T>,
    unknown: SpecErrorKind,
) -> Result<Option<BTreeSet<T>>, SpecError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.is_empty() {
        return Err(SpecError::new(SpecErrorKind::EmptyFilterList, field, ""));
    }
    let mut set = BTreeSet::new();
    for value in &values {
        let Some(parsed) = from_name(value) else {
            return Err(SpecError::new(unknown, field, format!("{value:?}")));
        };
        set.insert(parsed);
    }
    Ok(Some(set))
}

fn parse_bound(field: &str, raw: RawBound) -> Result<Bound, SpecError> {
    let text = raw.into_text();
    if let Ok(date) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return Ok(Bound::Date(date));
    }
    match DateTime::parse_from_rfc3339(&text) {
        Ok(at) => Ok(Bound::Instant(at.timestamp_micros())),
        Err(_) => Err(SpecError::new(
            SpecErrorKind::InvalidDate,
            field,
            format!("{text:?}"),
        )),
    }
}

/// Tells whether no check-in can fall between two bounds of the same kind.
/// A date and an instant are not compared, because the date's start depends
/// on the site's calendar.
fn range_is_empty(from: Bound, to: Bound) -> bool {
    match (from, to) {
        (Bound::Date(first), Bound::Date(last)) => first > last,
        (Bound::Instant(first), Bound::Instant(last)) => first > last,
        _ => false,
    }
}

fn bound_text(bound: Bound) -> String {
    match bound {
        Bound::Date(date) => date.to_string(),
        Bound::Instant(at_us) => DateTime::from_timestamp_micros(at_us)
            .map(|at| at.to_rfc3339())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
