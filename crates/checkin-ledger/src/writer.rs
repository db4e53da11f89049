//! Fenced appends to the ledger stream.
//!
//! Every append states the stream sequence it expects to follow, so a second
//! writer, a stale writer or a lost message can never fork the chain or leave
//! a hole: JetStream refuses the append instead.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use checkin_core::{ChainHash, ChainHead, record::RecordKind};
use serde::Deserialize;
use thiserror::Error;

use crate::headers;
use crate::topology::LEDGER_SUBJECT;

/// Largest number of messages JetStream takes in one atomic batch.
pub const MAX_ATOMIC_BATCH: usize = 1000;

/// JetStream error code for a failed `Nats-Expected-Last-Sequence` check.
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// Append strategy for ledger records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AppendMode {
    /// One atomic batch per call: all records are stored or none. With the
    /// server's `sync_interval: always` each batch costs one disk sync, which
    /// makes this the durable mode.
    #[default]
    Atomic,
    /// One publish per record, pipelined, each fenced on its predecessor. A
    /// failure can leave a prefix of the records appended.
    Pipelined,
}

/// A record ready to append: encoded, chained and placed at its sequence.
#[derive(Clone, Debug)]
pub struct ChainedRecord {
    /// Stream sequence the record must land at.
    pub seq: u64,
    /// Canonical record bytes.
    pub body: Bytes,
    /// Hash of the record at `seq - 1`.
    pub prev: ChainHash,
    /// This record's chain hash.
    pub hash: ChainHash,
    /// Record kind, for the header.
    pub kind: RecordKind,
    /// Intake sequence of the submission, for the header; 0 for genesis.
    pub intake_seq: u64,
}

impl ChainedRecord {
    /// Chains `body` onto `head`.
    pub fn chain(head: &ChainHead, body: Vec<u8>, kind: RecordKind, intake_seq: u64) -> Self {
        let next = head.advance(&body);
        Self {
            seq: next.seq,
            body: body.into(),
            prev: head.hash,
            hash: next.hash,
            kind,
            intake_seq,
        }
    }

    fn headers(&self) -> HeaderMap {
        // In async-nats 0.52 an owned String becomes the header value as is,
        // while a &str is copied into a new String.
        let mut map = HeaderMap::new();
        map.insert(headers::PREV, self.prev.to_hex());
        map.insert(headers::HASH, self.hash.to_hex());
        map.insert(headers::KIND, self.kind.as_str());
        if self.intake_seq > 0 {
            map.insert(headers::INTAKE_SEQ, self.intake_seq.to_string());
        }
        map
    }
}

/// Error of an append.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The stream's last sequence was not the expected one: another writer appended first.
    #[error("ledger moved past seq {expected_last}: another writer appended first")]
    Conflict {
        /// The last sequence the append expected.
        expected_last: u64,
    },
    /// The server returned an error other than a fence conflict.
    #[error("ledger refused the append: {0}")]
    Refused(String),
    /// No reply arrived, so the records may or may not be stored.
    #[error("append outcome unknown: {0}")]
    Unknown(String),
    /// The server stored a record at another sequence than planned.
    #[error("ledger stored seq {actual}, expected {expected}")]
    UnexpectedSequence {
        /// Planned sequence.
        expected: u64,
        /// Sequence in the acknowledgement.
        actual: u64,
    },
}

impl AppendError {
    /// Tells whether the records were certainly not stored.
    ///
    /// When this is false the caller must reload the head from the stream
    /// before it appends again; the sequencer always does, since a pipelined
    /// append can leave a stored prefix even on a conflict.
    pub fn certainly_not_appended(&self) -> bool {
        match self {
            Self::Conflict { .. } | Self::Refused(_) => true,
            Self::Unknown(_) | Self::UnexpectedSequence { .. } => false,
        }
    }
}

/// Appends chained records to the ledger stream.
#[derive(Clone)]
pub struct LedgerWriter {
    client: async_nats::Client,
    js: jetstream::Context,
    mode: AppendMode,
    timeout: Duration,
}

impl LedgerWriter {
    /// Creates a writer over a connected client.
    pub fn new(client: async_nats::Client, mode: AppendMode) -> Self {
        let js = jetstream::new(client.clone());
        Self {
            client,
            js,
            mode,
            timeout: Duration::from_secs(10),
        }
    }

    /// Returns the append mode.
    pub fn mode(&self) -> AppendMode {
        self.mode
    }

    /// Appends consecutive records; the first must follow the stream's current last sequence.
    ///
    /// # Errors
    ///
    /// See [`AppendError`]; [`AppendError::certainly_not_appended`] tells whether
    /// anything may have been stored.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future can leave some records stored.
    pub async fn append(&self, records: &[ChainedRecord]) -> Result<(), AppendError> {
        if records.is_empty() {
            return Ok(());
        }
        match self.mode {
            AppendMode::Atomic => {
                for chunk in records.chunks(MAX_ATOMIC_BATCH) {
                    self.append_atomic(chunk).await?;
                }
                Ok(())
            }
            AppendMode::Pipelined => self.append_pipelined(records).await,
        }
    }

    async fn append_pipelined(&self, records: &[ChainedRecord]) -> Result<(), AppendError> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let mut map = record.headers();
            map.insert(
                "Nats-Expected-Last-Sequence",
                (record.seq - 1).to_string().as_str(),
            );
            let ack = self
                .js
                .publish_with_headers(LEDGER_SUBJECT, map, record.body.clone())
                .await
                .map_err(|err| classify_publish_error(err, record.seq - 1))?;
            pending.push((record.seq, ack));
        }

        for (seq, ack) in pending {
            let ack = ack
                .await
                .map_err(|err| classify_publish_error(err, seq - 1))?;
            if ack.sequence != seq {
                return Err(AppendError::UnexpectedSequence {
                    expected: seq,
                    actual: ack.sequence,
                });
            }
        }
        Ok(())
    }

    async fn append_atomic(&self, records: &[ChainedRecord]) -> Result<(), AppendError> {
        let expected_last = records[0].seq - 1;
        let messages: Vec<(HeaderMap, Bytes)> = records
            .iter()
            .map(|record| (record.headers(), record.body.clone()))
            .collect();
        let ack = publish_atomic_batch(
            &self.client,
            LEDGER_SUBJECT,
            messages,
            Some(expected_last),
            self.timeout,
        )
        .await?;

        let expected_seq = records[records.len() - 1].seq;
        if ack.seq != expected_seq || ack.count.is_some_and(|count| count != records.len() as u64) {
            return Err(AppendError::UnexpectedSequence {
                expected: expected_seq,
                actual: ack.seq,
            });
        }
        Ok(())
    }
}

/// Acknowledgement of a committed atomic batch.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct BatchAck {
    /// Stream sequence of the batch's last message.
    #[serde(default)]
    pub seq: u64,
    /// Messages stored, when the server reports it (2.14+).
    #[serde(default)]
    pub count: Option<u64>,
}

/// Publishes up to [`MAX_ATOMIC_BATCH`] messages as one JetStream atomic batch
/// (ADR-50, nats-server 2.12+): all are stored or none.
///
/// Only the commit message is a request; the server replies to it with the
/// outcome of the whole batch. `expected_last` fences the batch on the
/// stream's last sequence and goes on the first message, the only one where
/// the server accepts it.
///
/// # Errors
///
/// [`AppendError::Conflict`] when the fence fails, [`AppendError::Refused`]
/// for other server errors, [`AppendError::Unknown`] when no reply arrives.
///
/// # Cancel safety
///
/// Not cancel safe: the server abandons a batch without its commit, but a
/// dropped future may already have sent the commit.
pub async fn publish_atomic_batch(
    client: &async_nats::Client,
    subject: &str,
    messages: Vec<(HeaderMap, Bytes)>,
    expected_last: Option<u64>,
    timeout: Duration,
) -> Result<BatchAck, AppendError> {
    let reply = send_atomic_batch(client, subject, messages, expected_last, timeout).await?;
    match reply.error {
        Some(error) if error.err_code == WRONG_LAST_SEQUENCE => Err(AppendError::Conflict {
            expected_last: expected_last.unwrap_or_default(),
        }),
        Some(error) => Err(AppendError::Refused(format!(
            "{} (code {})",
            error.description, error.err_code
        ))),
        None => Ok(BatchAck {
            seq: reply.seq,
            count: reply.count,
        }),
    }
}

/// Publishes messages as one atomic batch like [`publish_atomic_batch`] and
/// returns the server's reply to the commit as it is, error included, for
/// callers that branch on the error code.
///
/// # Errors
///
/// [`AppendError::Unknown`] when a message cannot be sent or no readable
/// reply arrives; [`AppendError::Refused`] for an empty batch.
///
/// # Cancel safety
///
/// As [`publish_atomic_batch`].
pub async fn send_atomic_batch(
    client: &async_nats::Client,
    subject: &str,
    messages: Vec<(HeaderMap, Bytes)>,
    expected_last: Option<u64>,
    timeout: Duration,
) -> Result<BatchReply, AppendError> {
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let last_index = messages.len().saturating_sub(1);

    for (index, (mut map, payload)) in messages.into_iter().enumerate() {
        map.insert("Nats-Batch-Id", batch_id.as_str());
        map.insert("Nats-Batch-Sequence", (index + 1).to_string().as_str());
        if index == 0
            && let Some(expected_last) = expected_last
        {
            map.insert(
                "Nats-Expected-Last-Sequence",
                expected_last.to_string().as_str(),
            );
        }
        if index < last_index {
            client
                .publish_with_headers(subject.to_string(), map, payload)
                .await
                .map_err(|err| AppendError::Unknown(err.to_string()))?;
            continue;
        }

        map.insert("Nats-Batch-Commit", "1");
        let request = async_nats::Request::new()
            .headers(map)
            .payload(payload)
            .timeout(Some(timeout));
        let reply = client
            .send_request(subject.to_string(), request)
            .await
            .map_err(|err| AppendError::Unknown(err.to_string()))?;
        let mut reply: BatchReply = serde_json::from_slice(&reply.payload).map_err(|err| {
            AppendError::Unknown(format!(
                "unreadable batch acknowledgement ({err}): {}",
                String::from_utf8_lossy(&reply.payload)
            ))
        })?;
        reply.expected_batch = batch_id;
        return Ok(reply);
    }
    Err(AppendError::Refused(
        "an atomic batch needs at least one message".into(),
    ))
}

/// The server's reply to the commit of an atomic batch.
#[derive(Clone, Debug, Deserialize)]
pub struct BatchReply {
    /// Stream sequence of the batch's last message; 0 on an error.
    #[serde(default)]
    pub seq: u64,
    /// Messages stored, when the server reports it (2.14+).
    #[serde(default)]
    pub count: Option<u64>,
    /// Id of the committed batch. A server without atomic batches (before
    /// 2.12) stores the messages one by one and replies without it.
    #[serde(default)]
    pub batch: Option<String>,
    /// The server's error, when it refused the batch.
    #[serde(default)]
    pub error: Option<ApiError>,
    /// Id this client gave the batch.
    #[serde(skip)]
    pub expected_batch: String,
}

impl BatchReply {
    /// Tells whether the server committed the batch as one atomic batch of
    /// `len` messages: no error, this batch's id, and the count when reported.
    pub fn committed(&self, len: usize) -> bool {
        self.error.is_none()
            && self.batch.as_deref() == Some(self.expected_batch.as_str())
            && self.count.is_none_or(|count| count == len as u64)
    }
}

/// A JetStream API error in a reply.
#[derive(Clone, Debug, Deserialize)]
pub struct ApiError {
    /// JetStream error code, such as 10071 for a failed sequence fence.
    #[serde(default)]
    pub err_code: u64,
    /// The server's description.
    #[serde(default)]
    pub description: String,
}

fn classify_publish_error(
    err: jetstream::context::PublishError,
    expected_last: u64,
) -> AppendError {
    match err.kind() {
        PublishErrorKind::WrongLastSequence => AppendError::Conflict { expected_last },
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            AppendError::Unknown(err.to_string())
        }
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::Other => AppendError::Refused(err.to_string()),
    }
}
