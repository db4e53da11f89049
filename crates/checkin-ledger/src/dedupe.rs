//! The persistent event-id index that de-duplicates far beyond JetStream's
//! duplicate window.
//!
//! Layout of the sled tree (all integers big-endian):
//!
//! | key | value |
//! | --- | --- |
//! | `e` ‖ event id (16 bytes) | seq (8) ‖ kind (1: 1 check-in, 2 void) ‖ content digest (16) |
//! | `m:through` | seq (8) ‖ chain hash (32) of the last indexed record |
//! | `m:genesis` | chain hash (32) of the indexed ledger's genesis record |
//! | `m:intake` | intake sequence (8) up to which every submission is processed |
//!
//! Invariant: the index covers exactly the ledger records `1..=through`, and
//! entries and `m:through` change in one atomic batch. The index is written
//! only after the ledger acknowledged the records, so it never names a record
//! the ledger lacks; after a crash it may lag, and the sequencer catches it
//! up from the ledger before it appends again.

use std::path::Path;

use checkin_core::{ChainHash, ChainHead, EventId, record::RecordKind};
use thiserror::Error;

const THROUGH_KEY: &[u8] = b"m:through";
const GENESIS_KEY: &[u8] = b"m:genesis";
const INTAKE_KEY: &[u8] = b"m:intake";

/// Failure of the index's storage.
#[derive(Debug, Error)]
#[error("dedupe index storage failed: {0}")]
pub struct IndexError(#[from] sled::Error);

/// Index entry of one event id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Ledger sequence of the record.
    pub seq: u64,
    /// Whether the record is a check-in or a void.
    pub kind: RecordKind,
    /// Digest of the record's content, without the sequencer's time; it
    /// distinguishes a resend from a different submission reusing an id.
    pub digest: [u8; 16],
}

impl IndexEntry {
    fn encode(&self) -> [u8; 25] {
        let mut bytes = [0u8; 25];
        bytes[..8].copy_from_slice(&self.seq.to_be_bytes());
        bytes[8] = match self.kind {
            RecordKind::CheckIn => 1,
            RecordKind::Void => 2,
            RecordKind::Genesis => 0,
        };
        bytes[9..].copy_from_slice(&self.digest);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 25] = bytes.try_into().ok()?;
        let kind = match bytes[8] {
            1 => RecordKind::CheckIn,
            2 => RecordKind::Void,
            _ => RecordKind::Genesis,
        };
        Some(Self {
            seq: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            kind,
            digest: bytes[9..].try_into().ok()?,
        })
    }
}

/// The event-id index of one ledger.
#[derive(Clone)]
pub struct DedupeIndex {
    db: sled::Db,
    tree: sled::Tree,
}

impl DedupeIndex {
    /// Opens or creates the index under `dir`.
    ///
    /// # Errors
    ///
    /// Fails when sled cannot open the directory, such as when another process has it open.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(200))
            .open()?;
        let tree = db.open_tree("event_ids")?;
        Ok(Self { db, tree })
    }

    /// Looks an event id up.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn get(&self, id: &EventId) -> Result<Option<IndexEntry>, IndexError> {
        let value = self.tree.get(entry_key(id))?;
        Ok(value.and_then(|bytes| IndexEntry::decode(&bytes)))
    }

    /// Returns the last indexed record, [`ChainHead::EMPTY`] for an empty index.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn through(&self) -> Result<ChainHead, IndexError> {
        let Some(bytes) = self.tree.get(THROUGH_KEY)? else {
            return Ok(ChainHead::EMPTY);
        };
        let Ok(bytes) = <[u8; 40]>::try_from(bytes.as_ref()) else {
            return Ok(ChainHead::EMPTY);
        };
        Ok(ChainHead {
            seq: u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default()),
            hash: ChainHash(bytes[8..].try_into().unwrap_or_default()),
        })
    }

    /// Returns the genesis hash of the ledger this index belongs to.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn genesis(&self) -> Result<Option<ChainHash>, IndexError> {
        let value = self.tree.get(GENESIS_KEY)?;
        Ok(value.and_then(|bytes| <[u8; 32]>::try_from(bytes.as_ref()).ok().map(ChainHash)))
    }

    /// Returns the intake sequence up to which every submission was processed.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn intake_cursor(&self) -> Result<u64, IndexError> {
        let value = self.tree.get(INTAKE_KEY)?;
        Ok(value
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Adds entries and moves `through` and the intake cursor forward, atomically.
    ///
    /// # Errors
    ///
    /// Fails when storage fails; then nothing of the batch was applied.
    pub fn record(
        &self,
        entries: &[(EventId, IndexEntry)],
        through: ChainHead,
        intake_cursor: u64,
    ) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        batch.insert(INTAKE_KEY, &intake_cursor.to_be_bytes()[..]);
        for (id, entry) in entries {
            batch.insert(&entry_key(id)[..], &entry.encode()[..]);
        }
        let mut through_bytes = [0u8; 40];
        through_bytes[..8].copy_from_slice(&through.seq.to_be_bytes());
        through_bytes[8..].copy_from_slice(&through.hash.0);
        batch.insert(THROUGH_KEY, &through_bytes[..]);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Empties the index and binds it to the ledger with this genesis hash.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn reset(&self, genesis: ChainHash) -> Result<(), IndexError> {
        self.tree.clear()?;
        self.tree.insert(GENESIS_KEY, &genesis.0[..])?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes everything buffered to disk.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub async fn flush(&self) -> Result<(), IndexError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn entry_key(id: &EventId) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = b'e';
    key[1..].copy_from_slice(&id.0);
    key
}
