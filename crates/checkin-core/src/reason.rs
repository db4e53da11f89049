//! Stable reason codes for refused submissions, with English and Chinese text.
//!
//! The codes are a public contract: devices, dashboards and the rejected
//! stream store them. Add codes freely; never rename or reuse one.

use std::fmt;

use serde::Serialize;

/// Reason a submission was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The payload is not valid UTF-8.
    InvalidUtf8,
    /// The payload is not JSON.
    InvalidJson,
    /// The payload is larger than the submission limit.
    PayloadTooLarge,
    /// The JSON value is not an object.
    NotAnObject,
    /// The object has a field the format does not define.
    UnknownField,
    /// An object names the same field twice, in the raw JSON or after NFC normalisation.
    DuplicateField,
    /// A required field is absent or null.
    MissingField,
    /// A required text field is empty or only whitespace.
    EmptyField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A text field contains control characters.
    ControlCharacter,
    /// A text field is longer than its limit.
    TooLong,
    /// An id field is not a UUID.
    InvalidUuid,
    /// `at` is not an RFC 3339 timestamp.
    InvalidTimestamp,
    /// `at` has no UTC offset.
    MissingOffset,
    /// `at` has a UTC offset outside the range in use, -12:00 to +14:00.
    OffsetOutOfRange,
    /// `at` is further ahead of the sequencer's clock than allowed.
    InFuture,
    /// `at` is older than the acceptance horizon.
    BeyondHorizon,
    /// `method` is not one of the known capture methods.
    InvalidMethod,
    /// Latitude outside [-90, 90].
    LatitudeOutOfRange,
    /// Longitude outside [-180, 180].
    LongitudeOutOfRange,
    /// A coordinate is not a finite number.
    InvalidCoordinate,
    /// `accuracy_m` is negative, not finite or too large.
    InvalidAccuracy,
    /// `attributes` has more entries than allowed.
    TooManyAttributes,
    /// `site` is not configured and unknown sites are not allowed.
    UnknownSite,
    /// The id was already recorded with different content.
    IdConflict,
    /// A void names an event id that is not a check-in in the ledger.
    UnknownTarget,
    /// The message arrived on an intake subject this sequencer does not serve.
    UnknownSubject,
}

impl Reason {
    /// All reasons, for catalogues and tests.
    pub const ALL: [Reason; 27] = [
        Self::InvalidUtf8,
        Self::InvalidJson,
        Self::PayloadTooLarge,
        Self::NotAnObject,
        Self::UnknownField,
        Self::DuplicateField,
        Self::MissingField,
        Self::EmptyField,
        Self::WrongType,
        Self::ControlCharacter,
        Self::TooLong,
        Self::InvalidUuid,
        Self::InvalidTimestamp,
        Self::MissingOffset,
        Self::OffsetOutOfRange,
        Self::InFuture,
        Self::BeyondHorizon,
        Self::InvalidMethod,
        Self::LatitudeOutOfRange,
        Self::LongitudeOutOfRange,
        Self::InvalidCoordinate,
        Self::InvalidAccuracy,
        Self::TooManyAttributes,
        Self::UnknownSite,
        Self::IdConflict,
        Self::UnknownTarget,
        Self::UnknownSubject,
    ];

    /// Returns the stable snake_case code.
    pub fn code(self) -> &'static str {
        self.texts().0
    }

    /// Parses a stable code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// Returns (code, English template, Chinese template). `{field}` and
    /// `{detail}` are replaced by [`Rejection`]'s values.
    fn texts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::InvalidUtf8 => (
                "invalid_utf8",
                "payload is not valid UTF-8 (invalid byte at offset {detail})",
                "内容不是有效的 UTF-8 编码（第 {detail} 字节无效）",
            ),
            Self::InvalidJson => (
                "invalid_json",
                "payload is not valid JSON: {detail}",
                "内容不是有效的 JSON：{detail}",
            ),
            Self::PayloadTooLarge => (
                "payload_too_large",
                "payload is {detail} bytes, over the 16384-byte limit",
                "内容为 {detail} 字节，超过 16384 字节上限",
            ),
            Self::NotAnObject => (
                "not_an_object",
                "payload must be a JSON object, found {detail}",
                "内容必须是 JSON 对象，实际为 {detail}",
            ),
            Self::UnknownField => (
                "unknown_field",
                "field `{field}` is not part of the submission format",
                "字段 `{field}` 不属于提交格式",
            ),
            Self::DuplicateField => (
                "duplicate_field",
                "field `{field}` appears more than once",
                "字段 `{field}` 出现了不止一次",
            ),
            Self::MissingField => (
                "missing_field",
                "required field `{field}` is missing",
                "缺少必填字段 `{field}`",
            ),
            Self::EmptyField => (
                "empty_field",
                "field `{field}` must not be empty",
                "字段 `{field}` 不能为空",
            ),
            Self::WrongType => (
                "wrong_type",
                "field `{field}` must be {detail}",
                "字段 `{field}` 的类型必须是 {detail}",
            ),
            Self::ControlCharacter => (
                "control_character",
                "field `{field}` must not contain control characters or invisible formatting characters",
                "字段 `{field}` 不能包含控制字符或不可见的格式字符",
            ),
            Self::TooLong => (
                "too_long",
                "field `{field}` is longer than {detail} characters",
                "字段 `{field}` 超过 {detail} 个字符",
            ),
            Self::InvalidUuid => (
                "invalid_uuid",
                "field `{field}` must be a UUID such as 0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e",
                "字段 `{field}` 必须是 UUID，例如 0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e",
            ),
            Self::InvalidTimestamp => (
                "invalid_timestamp",
                "field `{field}` must be an RFC 3339 timestamp such as 2026-05-01T09:30:00+08:00",
                "字段 `{field}` 必须是 RFC 3339 时间，例如 2026-05-01T09:30:00+08:00",
            ),
            Self::MissingOffset => (
                "missing_offset",
                "field `{field}` must include a UTC offset such as +08:00 or Z",
                "字段 `{field}` 必须带有 UTC 偏移，例如 +08:00 或 Z",
            ),
            Self::OffsetOutOfRange => (
                "offset_out_of_range",
                "field `{field}` has UTC offset {detail}, outside the offsets in use (-12:00 to +14:00)",
                "字段 `{field}` 的 UTC 偏移为 {detail}，超出实际使用的范围（-12:00 到 +14:00）",
            ),
            Self::InFuture => (
                "in_future",
                "field `{field}` is {detail} seconds ahead of the ledger clock, more than the allowed skew",
                "字段 `{field}` 比账本时钟超前 {detail} 秒，超出允许的偏差",
            ),
            Self::BeyondHorizon => (
                "beyond_horizon",
                "field `{field}` is older than the acceptance horizon of {detail} days",
                "字段 `{field}` 早于 {detail} 天的接收期限",
            ),
            Self::InvalidMethod => (
                "invalid_method",
                "field `{field}` must be one of qr, nfc, gps, wifi, face, kiosk, staff",
                "字段 `{field}` 必须是 qr、nfc、gps、wifi、face、kiosk、staff 之一",
            ),
            Self::LatitudeOutOfRange => (
                "latitude_out_of_range",
                "field `{field}` is {detail}, outside the latitude range [-90, 90]",
                "字段 `{field}` 为 {detail}，超出纬度范围 [-90, 90]",
            ),
            Self::LongitudeOutOfRange => (
                "longitude_out_of_range",
                "field `{field}` is {detail}, outside the longitude range [-180, 180]",
                "字段 `{field}` 为 {detail}，超出经度范围 [-180, 180]",
            ),
            Self::InvalidCoordinate => (
                "invalid_coordinate",
                "field `{field}` must be a finite number of degrees",
                "字段 `{field}` 必须是有限的度数数值",
            ),
            Self::InvalidAccuracy => (
                "invalid_accuracy",
                "field `{field}` must be a finite number of metres between 0 and 1000000",
                "字段 `{field}` 必须是 0 到 1000000 之间的有限米数",
            ),
            Self::TooManyAttributes => (
                "too_many_attributes",
                "field `{field}` has more than {detail} entries",
                "字段 `{field}` 的条目超过 {detail} 个",
            ),
            Self::UnknownSite => (
                "unknown_site",
                "field `{field}` names site {detail}, which is not configured",
                "字段 `{field}` 指定的门店 {detail} 未配置",
            ),
            Self::IdConflict => (
                "id_conflict",
                "field `{field}` was already recorded at seq {detail} with different content",
                "字段 `{field}` 已在序号 {detail} 以不同内容记录",
            ),
            Self::UnknownTarget => (
                "unknown_target",
                "field `{field}` names {detail}, which is not a check-in in the ledger",
                "字段 `{field}` 指定的 {detail} 不是账本中的打卡记录",
            ),
            Self::UnknownSubject => (
                "unknown_subject",
                "intake subject {detail} is not served by this ledger",
                "本账本不处理进件主题 {detail}",
            ),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused submission: the reason, the field it concerns and a detail value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Stable reason code.
    pub reason: Reason,
    /// JSON path of the field, such as `location.lat`; empty for the whole payload.
    pub field: String,
    /// The value that fills the message's `{detail}`, such as a limit.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection for `field` with no detail value.
    pub fn new(reason: Reason, field: impl Into<String>) -> Self {
        Self::with_detail(reason, field, "")
    }

    /// Builds a rejection for `field` with a detail value.
    pub fn with_detail(reason: Reason, field: impl Into<String>, detail: impl ToString) -> Self {
        Self {
            reason,
            field: field.into(),
            detail: detail.to_string(),
        }
    }

    /// Returns the English message.
    pub fn message_en(&self) -> String {
        self.render(self.reason.texts().1)
    }

    /// Returns the Simplified Chinese message.
    pub fn message_zh(&self) -> String {
        self.render(self.reason.texts().2)
    }

    fn render(&self, template: &str) -> String {
        template
            .replace("{field}", &self.field)
            .replace("{detail}", &self.detail)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.message_en())
    }
}

impl std::error::Error for Rejection {}
