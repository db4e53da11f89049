//! Planning a batch: validation, de-duplication and chaining, with no I/O
//! but index look-ups, and storing the batch's refusals.

use std::collections::HashMap;

use checkin_core::record::RecordKind;
use checkin_core::validate::{IntakeKind, Submission, validate};
use checkin_core::{ChainHead, EventId, Reason, RecordBody, Rejection, codec};
use tracing::debug;

use super::{Sequencer, SequencerError};
use crate::dedupe::IndexEntry;
use crate::reader::StoredMessage;
use crate::rejected;
use crate::topology::{INTAKE_IMPORT, INTAKE_LIVE, INTAKE_VOID};
use crate::writer::ChainedRecord;

/// Outcome of planning one batch.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) records: Vec<ChainedRecord>,
    pub(super) entries: Vec<(EventId, IndexEntry)>,
    pub(super) rejections: Vec<(usize, Rejection)>,
    pub(super) duplicates: u64,
}

impl Sequencer {
    /// Validates, de-duplicates and chains a batch onto the current head.
    pub(super) fn plan(&self, batch: &[StoredMessage]) -> Result<Plan, SequencerError> {
        self.plan_on(batch, self.head, &HashMap::new())
    }

    /// Validates, de-duplicates and chains a batch onto `base`; `pending`
    /// contains the ids of an append in flight that the index does not have yet.
    pub(super) fn plan_on(
        &self,
        batch: &[StoredMessage],
        base: ChainHead,
        pending: &HashMap<EventId, IndexEntry>,
    ) -> Result<Plan, SequencerError> {
        let now = chrono::Utc::now();
        let now_us = now.timestamp_micros();
        let mut plan = Plan::default();
        let mut head = base;
        let mut in_batch: HashMap<EventId, IndexEntry> = HashMap::with_capacity(batch.len());

        for (position, message) in batch.iter().enumerate() {
            let body = match self.admit(message, now_us, pending, &in_batch)? {
                Admission::New(body) => body,
                Admission::Duplicate => {
                    plan.duplicates += 1;
                    continue;
                }
                Admission::Rejected(rejection) => {
                    plan.rejections.push((position, rejection));
                    continue;
                }
            };

            let kind = body.kind();
            let event_id = body
                .event_id()
                .expect("check-ins and voids carry an event id");
            let body_bytes = match codec::encode_body(&body) {
                Ok(bytes) => bytes,
                Err(err) => {
                    let rejection = Rejection::with_detail(Reason::PayloadTooLarge, "", err);
                    plan.rejections.push((position, rejection));
                    continue;
                }
            };
            let digest = digest_of_encoded_body(&body_bytes);
            let bytes = codec::encode_with_body(now_us, &body_bytes);

            let chained = ChainedRecord::chain(&head, bytes, kind, message.seq);
            head = ChainHead {
                seq: chained.seq,
                hash: chained.hash,
            };
            let entry = IndexEntry {
                seq: chained.seq,
                kind,
                digest,
            };
            in_batch.insert(event_id, entry);
            plan.entries.push((event_id, entry));
            plan.records.push(chained);
        }
        Ok(plan)
    }

    /// Decides what one intake message becomes.
    fn admit(
        &self,
        message: &StoredMessage,
        now_us: i64,
        pending: &HashMap<EventId, IndexEntry>,
        in_batch: &HashMap<EventId, IndexEntry>,
    ) -> Result<Admission, SequencerError> {
        let intake = match message.subject.as_str() {
            INTAKE_LIVE => IntakeKind::Live,
            INTAKE_IMPORT => IntakeKind::Import,
            INTAKE_VOID => IntakeKind::Void,
            other => {
                return Ok(Admission::Rejected(Rejection::with_detail(
                    Reason::UnknownSubject,
                    "",
                    other,
                )));
            }
        };

        let submission = match validate(
            &message.payload,
            intake,
            now_us,
            &self.config.time_policy,
            &self.config.sites,
        ) {
            Ok(submission) => submission,
            Err(rejection) => return Ok(Admission::Rejected(rejection)),
        };
        let body = match submission {
            Submission::CheckIn(check_in) => RecordBody::CheckIn(check_in),
            Submission::Void(void) => RecordBody::Void(void),
        };

        let lookup = |id: &EventId| -> Result<Option<IndexEntry>, SequencerError> {
            match in_batch.get(id).or_else(|| pending.get(id)) {
                Some(entry) => Ok(Some(*entry)),
                None => Ok(self.index.get(id)?),
            }
        };

        let event_id = body
            .event_id()
            .expect("check-ins and voids carry an event id");
        if let Some(known) = lookup(&event_id)? {
            if known.digest == content_digest(&body) {
                return Ok(Admission::Duplicate);
            }
            return Ok(Admission::Rejected(Rejection::with_detail(
                Reason::IdConflict,
                "id",
                known.seq,
            )));
        }

        if let RecordBody::Void(void) = &body {
            let target = lookup(&void.target)?;
            if !target.is_some_and(|entry| entry.kind == RecordKind::CheckIn) {
                return Ok(Admission::Rejected(Rejection::with_detail(
                    Reason::UnknownTarget,
                    "target",
                    void.target,
                )));
            }
        }
        Ok(Admission::New(body))
    }

    pub(super) async fn store_rejections(
        &self,
        batch: &[StoredMessage],
        rejections: &[(usize, Rejection)],
    ) -> Result<(), SequencerError> {
        let now = chrono::Utc::now();
        let mut acks = Vec::with_capacity(rejections.len());
        for (position, rejection) in rejections {
            let message = &batch[*position];
            let intake_seq = message.seq;
            debug!(reason = rejection.reason.code(), field = %rejection.field, intake_seq, "submission rejected");
            let ack = rejected::publish(
                &self.js,
                rejection,
                message.payload.clone(),
                &message.subject,
                intake_seq,
                now,
            )
            .await
            .map_err(|err| SequencerError::Rejected(err.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|err| SequencerError::Rejected(err.to_string()))?;
        }
        Ok(())
    }
}

enum Admission {
    New(RecordBody),
    Duplicate,
    Rejected(Rejection),
}

/// Digest of a record body without the sequencer's time, so a resend of the
/// same submission matches the stored record.
pub fn content_digest(body: &RecordBody) -> [u8; 16] {
    let bytes = codec::encode_body(body).unwrap_or_default();
    digest_of_encoded_body(&bytes)
}

/// Digest of an encoded body: BLAKE3 of the record encoding with
/// `recorded_at_us` set to zero, truncated to 16 bytes. Dedupe indexes store
/// it, so the definition must not change.
fn digest_of_encoded_body(body: &[u8]) -> [u8; 16] {
    // Format version 1's prefix, kept fixed: a digest must not change when the format does.
    let mut hasher = blake3::Hasher::new();
    hasher.update(&1u16.to_le_bytes());
    hasher.update(&0i64.to_le_bytes());
    hasher.update(body);
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    digest
}
