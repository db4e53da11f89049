//! Recovery: the genesis record of a new ledger, and bringing the head and
//! the dedupe index up to the ledger after a start or a failed append.

use checkin_core::chain::{ChainVerifier, GENESIS_SEQ, link_hash};
use checkin_core::record::{Genesis, RecordKind};
use checkin_core::{ChainHash, ChainHead, EventId, Record, RecordBody, codec};
use futures::StreamExt;
use tracing::{info, warn};

use super::plan::content_digest;
use super::{Sequencer, SequencerError};
use crate::archive::ArchiveSet;
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
    ///
    /// When the stream was purged below `first` by the archiver, the genesis
    /// hash comes from the archive or the index, and records the index lacks
    /// below `first` are read from the archive directory.
    pub(super) async fn catch_up(&mut self) -> Result<u64, SequencerError> {
        let (first, last) = self.ledger.bounds().await?;
        let genesis_hash = self.genesis_hash(first).await?;
        let mut through = self.index.through()?;

        let indexed_genesis = self.index.genesis()?;
        if indexed_genesis != Some(genesis_hash)
            || !self.index_matches_ledger(through, first, last).await?
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

        let mut verifier = ChainVerifier::resume(through);
        let mut ledger_cursor = 0u64;
        if through.seq + 1 < first {
            ledger_cursor = self.index_archive(&mut verifier, genesis_hash, first)?;
        }
        ledger_cursor = ledger_cursor.max(self.index_range(&mut verifier, last).await?);
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

    /// Returns the ledger's genesis hash: recomputed from the stream while it
    /// still contains the genesis record, else the one the dedupe index was
    /// bound to, else the archive's ledger id.
    ///
    /// The index comes before the archive because opening the archive checks
    /// the digest of every segment, and `catch_up` runs after every failed
    /// append. An index of another ledger is still caught: its last record
    /// does not chain into the stream or the archive, and `catch_up` fails.
    async fn genesis_hash(&self, first: u64) -> Result<ChainHash, SequencerError> {
        if first > GENESIS_SEQ {
            if let Some(id) = self.index.genesis()? {
                return Ok(id);
            }
            if let Some(id) = self.open_archive()?.and_then(|archive| archive.ledger_id()) {
                return Ok(id);
            }
            return Err(SequencerError::Archive(format!(
                "the ledger stream starts at seq {first} because older records were archived, \
                 and the dedupe index is empty; set `[archive] dir` or --archive-dir to the \
                 archive directory so the index can be rebuilt from it"
            )));
        }
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

    /// Opens the configured archive directory, if any.
    fn open_archive(&self) -> Result<Option<ArchiveSet>, SequencerError> {
        let Some(dir) = &self.config.archive_dir else {
            return Ok(None);
        };
        Ok(Some(ArchiveSet::open(dir)?))
    }

    /// Tells whether the index's last record is still the ledger's record at that sequence.
    async fn index_matches_ledger(
        &self,
        through: ChainHead,
        first: u64,
        last: u64,
    ) -> Result<bool, SequencerError> {
        if through.seq == 0 {
            return Ok(true);
        }
        if through.seq > last {
            return Ok(false);
        }
        if through.seq + 1 == first {
            // The indexed record was purged; the stream's first record must chain onto it.
            let stored = self.ledger.get(first).await?;
            let prev = stored.and_then(|message| message.link().prev);
            return Ok(prev == Some(through.hash));
        }
        if through.seq < first {
            // Both ends are archived; `index_archive` compares the hash at `through`.
            return Ok(true);
        }
        let stored = self.ledger.get(through.seq).await?;
        Ok(stored.and_then(|message| message.hash_header()) == Some(through.hash))
    }

    /// Indexes the archived records after the verifier's head and below
    /// `first`, the stream's first sequence. Returns the highest intake
    /// sequence they name.
    fn index_archive(
        &self,
        verifier: &mut ChainVerifier,
        genesis_hash: ChainHash,
        first: u64,
    ) -> Result<u64, SequencerError> {
        let through = verifier.head();
        let Some(archive) = self.open_archive()? else {
            return Err(SequencerError::Archive(format!(
                "the dedupe index covers the ledger up to seq {}, and the stream starts at seq {first} \
                 because older records were archived; set `[archive] dir` or --archive-dir so the \
                 sequencer can index records {} to {} from the archive",
                through.seq,
                through.seq + 1,
                first - 1
            )));
        };
        if archive.ledger_id() != Some(genesis_hash) || archive.last_seq() + 1 < first {
            return Err(SequencerError::Archive(format!(
                "the archive in {} ends at seq {} of ledger {}, but the stream of ledger {genesis_hash} \
                 starts at seq {first}; point `[archive] dir` at this ledger's archive",
                archive.dir().display(),
                archive.last_seq(),
                archive.ledger_id().unwrap_or_default(),
            )));
        }
        info!(
            from = through.seq + 1,
            to = first - 1,
            archive = %archive.dir().display(),
            "indexing archived ledger records"
        );

        let stored_cursor = self.index.intake_cursor()?.max(self.cursor);
        let mut ledger_cursor = 0u64;
        let mut entries = Vec::with_capacity(INDEX_CHUNK);
        archive.for_each_record(|record| {
            if record.seq == through.seq && record.hash != through.hash {
                return Err(SequencerError::BrokenChain(format!(
                    "seq {}: the dedupe index names hash {}, the archive {}",
                    record.seq, through.hash, record.hash
                )));
            }
            if record.seq <= through.seq || record.seq >= first {
                return Ok(());
            }
            let message = record.to_message();
            index_one(verifier, &message, &mut entries)?;
            ledger_cursor = ledger_cursor.max(intake_seq(&message));
            if entries.len() >= INDEX_CHUNK || record.seq + 1 == first {
                self.index
                    .record(&entries, verifier.head(), stored_cursor)?;
                entries.clear();
            }
            Ok(())
        })?;
        Ok(ledger_cursor)
    }

    /// Reads stream records after the verifier's head up to `last`, verifies
    /// them and adds their ids to the index. Returns the highest intake
    /// sequence they name.
    async fn index_range(
        &self,
        verifier: &mut ChainVerifier,
        last: u64,
    ) -> Result<u64, SequencerError> {
        let through = verifier.head();
        // Keep the stored cursor: it may be ahead of the ledger after refusal-only batches.
        let stored_cursor = self.index.intake_cursor()?.max(self.cursor);
        let mut ledger_cursor = 0u64;
        let mut records = self.ledger.range(through.seq + 1, last).await?;
        let mut entries = Vec::with_capacity(INDEX_CHUNK);

        while let Some(message) = records.next().await {
            let message = message?;
            index_one(verifier, &message, &mut entries)?;
            ledger_cursor = ledger_cursor.max(intake_seq(&message));
            if entries.len() >= INDEX_CHUNK {
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
        Ok(ledger_cursor)
    }
}

/// Index entries written per sled batch while catching up.
const INDEX_CHUNK: usize = 10_000;

/// Returns the intake sequence a ledger record names, 0 when it names none.
fn intake_seq(message: &StoredMessage) -> u64 {
    message
        .header(headers::INTAKE_SEQ)
        .and_then(|seq| seq.parse::<u64>().ok())
        .unwrap_or(0)
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
