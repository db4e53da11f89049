//! The JetStream streams of one ledger and their settings.
//!
//! Streams are created when missing. An existing stream whose settings differ
//! from these is an error naming the first differing field: changing a
//! ledger's retention or limits silently could lose check-ins.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use thiserror::Error;

/// Work-queue stream that devices and importers publish submissions to.
pub const INTAKE_STREAM: &str = "CHECKIN_INTAKE";
/// The immutable, hash-chained ledger.
pub const LEDGER_STREAM: &str = "CHECKIN_LEDGER";
/// Refused submissions with their original bytes and reason.
pub const REJECTED_STREAM: &str = "CHECKIN_REJECTED";

/// Subject wildcard of the intake stream.
pub const INTAKE_SUBJECTS: &str = "checkin.intake.>";
/// Intake subject of live edge devices.
pub const INTAKE_LIVE: &str = "checkin.intake.live";
/// Intake subject of historical imports, which are exempt from the acceptance horizon.
pub const INTAKE_IMPORT: &str = "checkin.intake.import";
/// Intake subject of void requests.
pub const INTAKE_VOID: &str = "checkin.intake.void";
/// Subject of ledger records.
pub const LEDGER_SUBJECT: &str = "checkin.ledger";
/// Subject of refused submissions.
pub const REJECTED_SUBJECT: &str = "checkin.rejected";

/// Largest intake message the server accepts; larger than the submission limit
/// so that oversized submissions still reach the rejected stream with their bytes.
pub const INTAKE_MAX_MESSAGE_BYTES: i32 = 256 * 1024;
/// Largest ledger message: one encoded record.
pub const LEDGER_MAX_MESSAGE_BYTES: i32 = 64 * 1024;

/// Builds the `Nats-Msg-Id` a publisher sets on an intake message: the
/// submission's id and a digest of its exact bytes.
///
/// JetStream drops a message whose id it saw within the duplicate window.
/// With the id alone, a corrected resend under the same id would be dropped
/// silently; with the digest, only byte-identical resends are, and the
/// sequencer receives every other one (and records it or rejects it as an
/// `id_conflict`).
pub fn intake_message_id(id: &str, payload: &[u8]) -> String {
    let digest = blake3::hash(payload);
    let short = &digest.as_bytes()[..8];
    let hex: String = short.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{id}:{hex}")
}

/// Tunable stream settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologySettings {
    /// Intake size bound; when full, publishes fail (discard-new) instead of dropping data.
    pub intake_max_bytes: i64,
    /// Window in which JetStream drops a resent `Nats-Msg-Id` at intake.
    pub intake_duplicate_window: Duration,
    /// Replicas per stream: 1 on a single server, 3 in a cluster.
    pub replicas: usize,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            intake_max_bytes: 1024 * 1024 * 1024,
            intake_duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

impl TopologySettings {
    /// Returns the intake stream's configuration.
    pub fn intake_config(&self) -> stream::Config {
        stream::Config {
            name: INTAKE_STREAM.into(),
            description: Some("check-in submissions awaiting the sequencer".into()),
            subjects: vec![INTAKE_SUBJECTS.into()],
            // A log, not a work queue: the sequencer reads it from a cursor and
            // purges what it has processed, so no per-message acknowledgement
            // (a synced write each under `sync_interval: always`) is needed.
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_bytes: self.intake_max_bytes,
            max_message_size: INTAKE_MAX_MESSAGE_BYTES,
            duplicate_window: self.intake_duplicate_window,
            num_replicas: self.replicas,
            // Lets an edge publisher store a backlog as atomic batches, one
            // write each. Publishers fall back to single publishes on a
            // stream without it, so an older intake stream is accepted.
            allow_atomic_publish: true,
            ..Default::default()
        }
    }

    /// Returns the ledger stream's configuration.
    pub fn ledger_config(&self) -> stream::Config {
        stream::Config {
            name: LEDGER_STREAM.into(),
            description: Some("hash-chained check-in ledger".into()),
            subjects: vec![LEDGER_SUBJECT.into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_message_size: LEDGER_MAX_MESSAGE_BYTES,
            num_replicas: self.replicas,
            deny_delete: true,
            allow_direct: true,
            allow_atomic_publish: true,
            ..Default::default()
        }
    }

    /// Returns the rejected stream's configuration.
    pub fn rejected_config(&self) -> stream::Config {
        stream::Config {
            name: REJECTED_STREAM.into(),
            description: Some("rejected submissions with reason and original bytes".into()),
            subjects: vec![REJECTED_SUBJECT.into()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_message_size: INTAKE_MAX_MESSAGE_BYTES + 4096,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }
}

/// Error of the stream set-up.
#[derive(Debug, Error)]
pub enum TopologyError {
    /// An existing stream's setting differs from the one this ledger needs.
    #[error(
        "stream {stream} exists with {field} = {actual}, expected {expected}; change it by hand or use another server"
    )]
    Mismatch {
        /// Stream name.
        stream: String,
        /// Configuration field name as JetStream spells it.
        field: &'static str,
        /// Value this ledger needs.
        expected: String,
        /// Value found on the server.
        actual: String,
    },
    /// The server refused or failed a JetStream request.
    #[error("failed to {action} stream {stream}: {source}")]
    Server {
        /// Operation that failed.
        action: &'static str,
        /// Stream name.
        stream: String,
        /// The client error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Creates the three streams when missing and checks the settings of existing ones.
///
/// # Errors
///
/// [`TopologyError::Mismatch`] names the first differing field of an existing
/// stream; [`TopologyError::Server`] wraps client and server failures.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &TopologySettings,
) -> Result<(), TopologyError> {
    for config in [
        settings.intake_config(),
        settings.ledger_config(),
        settings.rejected_config(),
    ] {
        ensure_stream(js, config).await?;
    }
    Ok(())
}

async fn ensure_stream(
    js: &jetstream::Context,
    expected: stream::Config,
) -> Result<(), TopologyError> {
    let name = expected.name.clone();
    let server_error = |action: &'static str| {
        let stream = name.clone();
        move |source: Box<dyn std::error::Error + Send + Sync>| TopologyError::Server {
            action,
            stream,
            source,
        }
    };

    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|err| server_error("read")(err.into()))?;
            check_config(&expected, &info.config)
        }
        Err(err) if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref api) if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(expected)
                .await
                .map_err(|err| server_error("create")(err.into()))?;
            Ok(())
        }
        Err(err) => Err(server_error("look up")(err.into())),
    }
}

/// Compares the settings this ledger relies on, in a fixed order: limits,
/// retention and everything that lets JetStream remove, rewrite or redirect
/// messages (per-subject limits, rollups, TTLs, mirrors, sources, transforms,
/// asynchronous persistence).
fn check_config(expected: &stream::Config, actual: &stream::Config) -> Result<(), TopologyError> {
    let debug = |value: &dyn std::fmt::Debug| format!("{value:?}");
    let fields: Vec<(&'static str, String, String)> = vec![
        (
            "subjects",
            debug(&expected.subjects),
            debug(&actual.subjects),
        ),
        (
            "retention",
            debug(&expected.retention),
            debug(&actual.retention),
        ),
        ("storage", debug(&expected.storage), debug(&actual.storage)),
        ("discard", debug(&expected.discard), debug(&actual.discard)),
        (
            "max_bytes",
            limit(expected.max_bytes),
            limit(actual.max_bytes),
        ),
        (
            "max_msgs",
            limit(expected.max_messages),
            limit(actual.max_messages),
        ),
        (
            "max_msgs_per_subject",
            limit(expected.max_messages_per_subject),
            limit(actual.max_messages_per_subject),
        ),
        ("max_age", debug(&expected.max_age), debug(&actual.max_age)),
        (
            "max_msg_size",
            limit(expected.max_message_size.into()),
            limit(actual.max_message_size.into()),
        ),
        (
            "duplicate_window",
            debug(&expected.duplicate_window),
            debug(&actual.duplicate_window),
        ),
        (
            "num_replicas",
            expected.num_replicas.max(1).to_string(),
            actual.num_replicas.max(1).to_string(),
        ),
        (
            "deny_delete",
            expected.deny_delete.to_string(),
            actual.deny_delete.to_string(),
        ),
        (
            "deny_purge",
            expected.deny_purge.to_string(),
            actual.deny_purge.to_string(),
        ),
        (
            "allow_rollup_hdrs",
            expected.allow_rollup.to_string(),
            actual.allow_rollup.to_string(),
        ),
        (
            "allow_atomic",
            expected.allow_atomic_publish.to_string(),
            actual.allow_atomic_publish.to_string(),
        ),
        (
            "allow_msg_ttl",
            expected.allow_message_ttl.to_string(),
            actual.allow_message_ttl.to_string(),
        ),
        (
            "sealed",
            expected.sealed.to_string(),
            actual.sealed.to_string(),
        ),
        (
            "no_ack",
            expected.no_ack.to_string(),
            actual.no_ack.to_string(),
        ),
        (
            "mirror",
            debug(&expected.mirror.is_some()),
            debug(&actual.mirror.is_some()),
        ),
        (
            "sources",
            debug(
                &expected
                    .sources
                    .as_ref()
                    .is_some_and(|sources| !sources.is_empty()),
            ),
            debug(
                &actual
                    .sources
                    .as_ref()
                    .is_some_and(|sources| !sources.is_empty()),
            ),
        ),
        (
            "subject_transform",
            debug(&expected.subject_transform.is_some()),
            debug(&actual.subject_transform.is_some()),
        ),
        (
            "persist_mode",
            debug(&expected.persist_mode.unwrap_or_default()),
            debug(&actual.persist_mode.unwrap_or_default()),
        ),
    ];

    for (field, wanted, found) in fields {
        // JetStream fills in a default duplicate window when none is given.
        if field == "duplicate_window" && expected.duplicate_window.is_zero() {
            continue;
        }
        // Atomic batches only speed up intake: edge publishers fall back to
        // single publishes when an intake stream created before it was
        // enabled refuses them.
        if field == "allow_atomic" && expected.name == INTAKE_STREAM {
            continue;
        }
        if wanted != found {
            return Err(TopologyError::Mismatch {
                stream: expected.name.clone(),
                field,
                expected: wanted,
                actual: found,
            });
        }
    }
    Ok(())
}

/// Spells a JetStream limit the way the server stores it: zero and negative mean unlimited.
fn limit(value: i64) -> String {
    if value <= 0 {
        "unlimited".into()
    } else {
        value.to_string()
    }
}
