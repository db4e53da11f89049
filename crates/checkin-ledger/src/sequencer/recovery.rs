//! Recovery: the genesis record of a new ledger, and bringing the head and
//! the dedupe index up to the ledger after a start or a failed append.

use checkin_core::chain::{ChainVerifier, GENESIS_SEQ, link_hash};
use checkin_core::record::{Genesis, RecordKind};
use checkin_core::{ChainHash, ChainHead, EventId, Record, RecordBody, codec};
use futures::StreamExt;
use tracing::{info, warn};

use super::plan::content_digest;
use super::{Sequencer, SequencerError};
use crate::dedupe::IndexEntry;
use crate::headers;
use crate::reader::StoredMessage;
use crate::writer::{AppendError, ChainedRecord};

impl Sequencer {
    /// Appends the genesis record when the ledger stream is empty.
    pub(super) async fn write_genesis_if_empty(&mut self) -> Result<(), SequencerError> {
        let (_, last) = self.ledger.bounds().await?;
        if last > 0 {
            return Ok(());
        }

        let genesis = Record {
            recorded_at_us: chrono::Utc::now().timestamp_micros(),
            body: RecordBody::Genesis(Genesis {
                ledger: self.config.ledger_name.clone(),
                description: format!("checkin ledger {}", self.config.ledger_name),
            }),
        };
        let bytes =
            codec::encode(&genesis).map_err(|err| SequencerError::BrokenChain(err.to_string()))?;
        let record = ChainedRecord::chain(&ChainHead::EMPTY, bytes, RecordKind::Genesis, 0);
        match self.writer.append(std::slice::from_ref(&record)).await {
            Ok(()) => {
                info!(ledger = %self.config.ledger_name, hash = %record.hash, "genesis record written");
                Ok(())
            }
            // Another sequencer wrote the genesis first; its record is the ledger's identity.
            Err(AppendError::Conflict { .. }) => Ok(()),
            Err(last) => Err(SequencerError::Append { attempts: 1, last }),
        }
    }

    /// Reloads the head from the stream and indexes every record the index lacks,
    /// verifying the chain on the way. Returns the highest intake sequence
    /// named by the records read, or by the head record when none was read.
    pub(super) async fn catch_up(&mut self) -> Result<u64, SequencerError> {
        let (first, last) = self.ledger.bounds().await?;
        if first > GENESIS_SEQ {
            // TODO(#4): rebuild the index from archive segments once the archiver purges the stream.
            return Err(SequencerError::BrokenChain(format!(
                "the ledger stream starts at seq {first}: the records before it were purged or removed, \
                 and no archive holds them"
            )));
        }
        let genesis_hash = self.genesis_hash().await?;
        let mut through = self.index.through()?;

        let indexed_genesis = self.index.genesis()?;
        if indexed_genesis != Some(genesis_hash)
            || !self.index_matches_ledger(through, last).await?
        {
            if indexed_genesis.is_some() {
                warn!(
                    indexed_through = through.seq,
                    ledger_head = last,
                    "dedupe index does not match the ledger, rebuilding it"
                );
            }
            self.index.reset(genesis_hash)?;
            through = ChainHead::EMPTY;
        }
        if through.seq < last {
            info!(from = through.seq + 1, to = last, "indexing ledger records");
        }

        let (verifier, mut ledger_cursor) = self.index_range(through, last).await?;
        self.head = verifier.head();
        if ledger_cursor == 0 {
            let head_record = self.ledger.get(last).await?;
            ledger_cursor = head_record
                .and_then(|message| {
                    message
                        .header(headers::INTAKE_SEQ)
                        .and_then(|seq| seq.parse().ok())
                })
                .unwrap_or(0);
        }
        Ok(ledger_cursor)
    }

    /// Returns the recomputed hash of the genesis record.
    async fn genesis_hash(&self) -> Result<ChainHash, SequencerError> {
        let Some(genesis) = self.ledger.get(GENESIS_SEQ).await? else {
            return Err(SequencerError::BrokenChain(
                "the genesis record is missing".into(),
            ));
        };
        let hash = link_hash(&ChainHash::ZERO, GENESIS_SEQ, &genesis.payload);
        if genesis.hash_header() != Some(hash) {
            return Err(SequencerError::BrokenChain(format!(
                "seq {GENESIS_SEQ}: hash header does not match the genesis record"
            )));
        }
        Ok(hash)
    }

    /// Tells whether the index's last record is still the ledger's record at that sequence.
    async fn index_matches_ledger(
        &self,
        through: ChainHead,
        last: u64,
    ) -> Result<bool, SequencerError> {
        if through.seq == 0 {
            return Ok(true);
        }
        if through.seq > last {
            return Ok(false);
        }
        let stored = self.ledger.get(through.seq).await?;
        Ok(stored.and_then(|message| message.hash_header()) == Some(through.hash))
    }

    /// Reads records after `through` up to `last`, verifies them and adds
    /// their ids to the index; also returns the highest intake sequence they name.
    async fn index_range(
        &self,
        through: ChainHead,
        last: u64,
    ) -> Result<(ChainVerifier, u64), SequencerError> {
        const CHUNK: usize = 10_000;
        let mut verifier = if through.seq == 0 {
            ChainVerifier::new()
        } else {
            ChainVerifier::resume(through)
        };
        // Keep the stored cursor: it may be ahead of the ledger after refusal-only batches.
        let stored_cursor = self.index.intake_cursor()?.max(self.cursor);
        let mut ledger_cursor = 0u64;
        let mut records = self.ledger.range(through.seq + 1, last).await?;
        let mut entries = Vec::with_capacity(CHUNK);

        while let Some(message) = records.next().await {
            let message = message?;
            index_one(&mut verifier, &message, &mut entries)?;
            if let Some(seq) = message
                .header(headers::INTAKE_SEQ)
                .and_then(|seq| seq.parse::<u64>().ok())
            {
                ledger_cursor = ledger_cursor.max(seq);
            }
            if entries.len() >= CHUNK {
                self.index
                    .record(&entries, verifier.head(), stored_cursor)?;
                entries.clear();
            }
        }
        if verifier.head().seq != last {
            return Err(SequencerError::BrokenChain(format!(
                "read up to seq {} of {last}",
                verifier.head().seq
            )));
        }
        if verifier.head().seq > through.seq {
            self.index
                .record(&entries, verifier.head(), stored_cursor)?;
        }
        Ok((verifier, ledger_cursor))
    }
}

/// Verifies one stored record and collects its index entry.
fn index_one(
    verifier: &mut ChainVerifier,
    message: &StoredMessage,
    entries: &mut Vec<(EventId, IndexEntry)>,
) -> Result<(), SequencerError> {
    verifier.push(message.link());
    if let Some(finding) = verifier.findings().first() {
        return Err(SequencerError::BrokenChain(finding.to_string()));
    }

    let record = codec::decode(&message.payload)
        .map_err(|err| SequencerError::BrokenChain(format!("seq {}: {err}", message.seq)))?;
    if let Some(event_id) = record.body.event_id() {
        let entry = IndexEntry {
            seq: message.seq,
            kind: record.body.kind(),
            digest: content_digest(&record.body),
        };
        entries.push((event_id, entry));
    }
    Ok(())
}
