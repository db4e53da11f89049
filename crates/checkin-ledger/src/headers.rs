//! Header names that travel beside ledger and rejected messages.

use async_nats::HeaderMap;
use checkin_core::ChainHash;

/// Lowercase hex of the previous record's chain hash.
pub const PREV: &str = "Checkin-Prev";
/// Lowercase hex of this record's chain hash.
pub const HASH: &str = "Checkin-Hash";
/// Record kind: `genesis`, `check_in` or `void`.
pub const KIND: &str = "Checkin-Kind";

/// Stable reason code of a refused submission.
pub const REASON: &str = "Checkin-Reason";
/// JSON path of the field a refusal concerns.
pub const FIELD: &str = "Checkin-Field";
/// Value filling the reason message's detail, such as a limit.
pub const DETAIL: &str = "Checkin-Detail";
/// English message of a refusal.
pub const MESSAGE: &str = "Checkin-Message";
/// Simplified Chinese message of a refusal.
pub const MESSAGE_ZH: &str = "Checkin-Message-Zh";
/// RFC 3339 time of the refusal.
pub const REJECTED_AT: &str = "Checkin-Rejected-At";
/// Intake subject the refused submission arrived on.
pub const INTAKE_SUBJECT: &str = "Checkin-Intake-Subject";
/// Intake stream sequence of the submission a ledger record or refusal came
/// from. The sequencer resumes reading intake after the last one; it is not
/// part of the chain.
pub const INTAKE_SEQ: &str = "Checkin-Intake-Seq";

/// Returns a header's value as text.
pub fn text<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|value| value.as_str())
}

/// Returns a header's value parsed as a chain hash.
pub fn chain_hash(headers: Option<&HeaderMap>, name: &str) -> Option<ChainHash> {
    text(headers, name)?.parse().ok()
}

/// Makes arbitrary text safe for a header value: control characters, which
/// would end the header line, are written as escapes.
pub fn sanitize(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}
