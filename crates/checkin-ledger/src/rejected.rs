//! Refused submissions: how they are stored in `CHECKIN_REJECTED` and read back.
//!
//! The message payload is the submission's original bytes, untouched; the
//! reason travels in headers, so the bytes can be replayed once fixed.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use checkin_core::{Reason, Rejection};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::headers;
use crate::reader::StoredMessage;
use crate::topology::REJECTED_SUBJECT;

/// Publishes a refused submission; returns the acknowledgement to await.
///
/// The `Nats-Msg-Id` is derived from the intake sequence, so a redelivered
/// intake message refused twice within the duplicate window is stored once.
///
/// # Errors
///
/// Fails when the publish cannot be sent.
pub async fn publish(
    js: &jetstream::Context,
    rejection: &Rejection,
    original: bytes::Bytes,
    intake_subject: &str,
    intake_seq: u64,
    rejected_at: DateTime<Utc>,
) -> Result<PublishAckFuture, jetstream::context::PublishError> {
    let mut map = HeaderMap::new();
    map.insert("Nats-Msg-Id", format!("intake-{intake_seq}").as_str());
    map.insert(headers::REASON, rejection.reason.code());
    map.insert(headers::FIELD, headers::sanitize(&rejection.field).as_str());
    map.insert(
        headers::DETAIL,
        headers::sanitize(&rejection.detail).as_str(),
    );
    map.insert(
        headers::MESSAGE,
        headers::sanitize(&rejection.message_en()).as_str(),
    );
    map.insert(
        headers::MESSAGE_ZH,
        headers::sanitize(&rejection.message_zh()).as_str(),
    );
    map.insert(headers::INTAKE_SUBJECT, intake_subject);
    map.insert(headers::INTAKE_SEQ, intake_seq.to_string().as_str());
    map.insert(
        headers::REJECTED_AT,
        rejected_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .as_str(),
    );
    js.publish_with_headers(REJECTED_SUBJECT, map, original)
        .await
}

/// A refused submission as read back from the rejected stream.
#[derive(Clone, Debug, Serialize)]
pub struct RejectedEntry {
    /// Sequence in the rejected stream.
    pub seq: u64,
    /// Stable reason code.
    pub reason: String,
    /// JSON path of the field concerned.
    pub field: String,
    /// English message.
    pub message: String,
    /// Simplified Chinese message.
    pub message_zh: String,
    /// When it was refused.
    pub rejected_at: String,
    /// Intake subject it arrived on.
    pub intake_subject: String,
    /// Intake stream sequence.
    pub intake_seq: Option<u64>,
    /// The original bytes as text when they are UTF-8.
    pub original: Option<String>,
    /// The original bytes in hex when they are not UTF-8.
    pub original_hex: Option<String>,
}

impl RejectedEntry {
    /// Reads an entry from a stored message.
    pub fn from_message(message: &StoredMessage) -> Self {
        let header = |name| message.header(name).unwrap_or_default().to_string();
        let reason = header(headers::REASON);
        let field = header(headers::FIELD);
        let detail = header(headers::DETAIL);
        // Messages are re-rendered from the code when it is known, so readers
        // always see this build's wording; stored text is the fallback.
        let rendered = Reason::from_code(&reason).map(|reason| Rejection {
            reason,
            field: field.clone(),
            detail,
        });
        let (original, original_hex) = match std::str::from_utf8(&message.payload) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (None, Some(hex_of(&message.payload))),
        };

        Self {
            seq: message.seq,
            message: rendered
                .as_ref()
                .map_or_else(|| header(headers::MESSAGE), Rejection::message_en),
            message_zh: rendered
                .as_ref()
                .map_or_else(|| header(headers::MESSAGE_ZH), Rejection::message_zh),
            reason,
            field,
            rejected_at: header(headers::REJECTED_AT),
            intake_subject: header(headers::INTAKE_SUBJECT),
            intake_seq: message
                .header(headers::INTAKE_SEQ)
                .and_then(|seq| seq.parse().ok()),
            original,
            original_hex,
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
