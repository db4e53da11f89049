//! The read-model store: one sled tree per projection, written only in
//! atomic batches that carry the checkpoint.
//!
//! Invariant: the checkpoint key and the model changes it covers are written
//! in one `apply_batch`, so after a crash the tree contains either the whole
//! batch with its checkpoint or neither; the checkpoint is never on disk
//! ahead of the data it covers.
//!
//! Key `\0checkpoint` holds the last applied record: seq (8, big-endian) ‖
//! chain hash (32). Every other key belongs to the projection.

use std::collections::BTreeMap;
use std::path::Path;

use checkin_core::{ChainHash, ChainHead};
use thiserror::Error;

const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";

/// Failure of the read-model storage.
#[derive(Debug, Error)]
#[error("read-model storage failed: {0}")]
pub struct StoreError(#[from] sled::Error);

/// Pending writes of one batch: `None` deletes the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Key and value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The sled tree of one projection.
#[derive(Clone)]
pub struct ModelStore {
    db: sled::Db,
    tree: sled::Tree,
}

impl ModelStore {
    /// Opens or creates the store of projection `name` under `dir`.
    ///
    /// # Errors
    ///
    /// Fails when sled cannot open the directory, such as when another process has it open.
    pub fn open(dir: &Path, name: &str) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let tree = db.open_tree(name)?;
        Ok(Self { db, tree })
    }

    /// Returns the last applied record, `None` before the first batch.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn checkpoint(&self) -> Result<Option<ChainHead>, StoreError> {
        let Some(bytes) = self.tree.get(CHECKPOINT_KEY)? else {
            return Ok(None);
        };
        let Ok(bytes) = <[u8; 40]>::try_from(bytes.as_ref()) else {
            return Ok(None);
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[8..]);
        Ok(Some(ChainHead {
            seq: u64::from_be_bytes(seq),
            hash: ChainHash(hash),
        }))
    }

    /// Returns the value stored under `key`.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|value| value.to_vec()))
    }

    /// Returns every stored pair whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|item| {
                let (key, value) = item?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// Applies a batch of writes and the new checkpoint atomically.
    ///
    /// # Errors
    ///
    /// Fails when storage fails; then nothing of the batch was applied.
    pub fn commit(&self, writes: Writes, checkpoint: ChainHead) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        let mut encoded = [0u8; 40];
        encoded[..8].copy_from_slice(&checkpoint.seq.to_be_bytes());
        encoded[8..].copy_from_slice(&checkpoint.hash.0);
        batch.insert(CHECKPOINT_KEY, &encoded[..]);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Writes everything buffered to disk.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Returns a digest of the whole model and its checkpoint: BLAKE3 over
    /// every key and value in key order, each prefixed by its length as u64
    /// little-endian. Equal digests mean byte-identical models.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn digest(&self) -> Result<String, StoreError> {
        let mut hasher = blake3::Hasher::new();
        for item in self.tree.iter() {
            let (key, value) = item?;
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(&key);
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(&value);
        }
        Ok(hasher.finalize().to_hex().to_string())
    }
}

/// Reads through to the store and collects one batch's writes, so that a
/// key changed many times in a batch is written once.
pub struct Overlay<'a> {
    store: &'a ModelStore,
    writes: Writes,
}

impl<'a> Overlay<'a> {
    /// Starts an empty batch over `store`.
    pub fn new(store: &'a ModelStore) -> Self {
        Self {
            store,
            writes: Writes::new(),
        }
    }

    /// Returns the value of `key` as the batch so far left it.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.store.get(key),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Returns the pairs under `prefix` as the batch so far left them, in key order.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.store.scan_prefix(prefix)?.into_iter().collect();
        for (key, value) in self.writes.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Ends the batch and returns its writes.
    pub fn into_writes(self) -> Writes {
        self.writes
    }
}
