//! The read-model store: one tree per projection, in sled (the default) or
//! in fjall, written only in atomic batches that carry the checkpoint.
//!
//! Invariant: the checkpoint key and the model changes it covers are written
//! in one `apply_batch`, so after a crash the tree contains either the whole
//! batch with its checkpoint or neither; the checkpoint is never on disk
//! ahead of the data it covers. sled applies the batch as one log entry and
//! fjall as one journal entry.
//!
//! Key `\0checkpoint` holds the last applied record: seq (8, big-endian) ‖
//! chain hash (32). Every other key belongs to the projection.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use checkin_core::{ChainHash, ChainHead};
use serde::{Deserialize, Serialize};
use thiserror::Error;

const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";

/// Failure of the read-model storage.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled failed.
    #[error("read-model storage (sled) failed: {0}")]
    Sled(#[from] sled::Error),
    /// fjall failed.
    #[error("read-model storage (fjall) failed: {0}")]
    Fjall(#[from] fjall::Error),
}

/// Pending writes of one batch: `None` deletes the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Key and value pairs in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The keys next to a key: the greatest one below it and the least one above it.
pub type Neighbors = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The storage engine under a read model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// sled 0.34: a B-tree with a log; the default.
    #[default]
    Sled,
    /// fjall 3: an LSM tree whose write batches go to a journal.
    Fjall,
}

impl Backend {
    /// Returns the name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Fjall => "fjall",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "sled" => Ok(Self::Sled),
            "fjall" => Ok(Self::Fjall),
            other => Err(format!(
                "unknown read-model store {other:?}: expected \"sled\" or \"fjall\""
            )),
        }
    }
}

#[derive(Clone)]
enum Engine {
    Sled {
        db: sled::Db,
        tree: sled::Tree,
    },
    Fjall {
        db: fjall::Database,
        keyspace: fjall::Keyspace,
    },
}

/// The tree of one projection, in sled or in fjall.
#[derive(Clone)]
pub struct ModelStore {
    engine: Engine,
}

impl ModelStore {
    /// Opens or creates the sled store of projection `name` under `dir`.
    ///
    /// # Errors
    ///
    /// Fails when sled cannot open the directory, such as when another process has it open.
    pub fn open(dir: &Path, name: &str) -> Result<Self, StoreError> {
        Self::open_with(Backend::Sled, dir, name)
    }

    /// Opens or creates the store of projection `name` under `dir` in the given engine.
    ///
    /// # Errors
    ///
    /// Fails when the engine cannot open the directory, such as when another process has it open.
    pub fn open_with(backend: Backend, dir: &Path, name: &str) -> Result<Self, StoreError> {
        let engine = match backend {
            Backend::Sled => {
                let db = sled::Config::new().path(dir).open()?;
                let tree = db.open_tree(name)?;
                Engine::Sled { db, tree }
            }
            Backend::Fjall => {
                let db = fjall::Database::builder(dir).open()?;
                let keyspace = db.keyspace(name, fjall::KeyspaceCreateOptions::default)?;
                Engine::Fjall { db, keyspace }
            }
        };
        Ok(Self { engine })
    }

    /// Returns the engine under this store.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sled { .. } => Backend::Sled,
            Engine::Fjall { .. } => Backend::Fjall,
        }
    }

    /// Returns the last applied record, `None` before the first batch.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn checkpoint(&self) -> Result<Option<ChainHead>, StoreError> {
        let Some(bytes) = self.get(CHECKPOINT_KEY)? else {
            return Ok(None);
        };
        let Ok(bytes) = <[u8; 40]>::try_from(bytes.as_slice()) else {
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
        Ok(match &self.engine {
            Engine::Sled { tree, .. } => tree.get(key)?.map(|value| value.to_vec()),
            Engine::Fjall { keyspace, .. } => keyspace.get(key)?.map(|value| value.to_vec()),
        })
    }

    /// Returns every stored pair whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        let mut pairs = Vec::new();
        self.for_each_prefixed(prefix, |key, value| {
            pairs.push((key.to_vec(), value.to_vec()));
            true
        })?;
        Ok(pairs)
    }

    /// Calls `visit` with each stored pair whose key starts with `prefix`, in
    /// key order, until it returns false.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn for_each_prefixed(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sled { tree, .. } => {
                for item in tree.scan_prefix(prefix) {
                    let (key, value) = item?;
                    if !visit(&key, &value) {
                        break;
                    }
                }
            }
            Engine::Fjall { keyspace, .. } => {
                for item in keyspace.prefix(prefix) {
                    let (key, value) = item.into_inner()?;
                    if !visit(&key, &value) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Returns every stored pair whose key starts with `prefix` and sorts
    /// from `lower` up to and not including `upper`, in key order.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn scan_range(
        &self,
        lower: &[u8],
        upper: &[u8],
        prefix: &[u8],
    ) -> Result<Pairs, StoreError> {
        let range = (Bound::Included(lower), Bound::Excluded(upper));
        let mut pairs = Vec::new();
        match &self.engine {
            Engine::Sled { tree, .. } => {
                for item in tree.range::<&[u8], _>(range) {
                    let (key, value) = item?;
                    if !key.starts_with(prefix) {
                        break;
                    }
                    pairs.push((key.to_vec(), value.to_vec()));
                }
            }
            Engine::Fjall { keyspace, .. } => {
                for item in keyspace.range::<&[u8], _>(range) {
                    let (key, value) = item.into_inner()?;
                    if !key.starts_with(prefix) {
                        break;
                    }
                    pairs.push((key.to_vec(), value.to_vec()));
                }
            }
        }
        Ok(pairs)
    }

    /// Returns the stored keys next to `key` among those starting with
    /// `prefix`: the greatest one below `key` and the least one above it.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn neighbors(&self, prefix: &[u8], key: &[u8]) -> Result<Neighbors, StoreError> {
        let below = (Bound::Included(prefix), Bound::Excluded(key));
        let above = (Bound::Excluded(key), Bound::Unbounded);
        let within = |found: Option<Vec<u8>>| found.filter(|found| found.starts_with(prefix));
        Ok(match &self.engine {
            Engine::Sled { tree, .. } => {
                let previous = tree.range::<&[u8], _>(below).next_back().transpose()?;
                let next = tree.range::<&[u8], _>(above).next().transpose()?;
                (
                    within(previous.map(|(found, _)| found.to_vec())),
                    within(next.map(|(found, _)| found.to_vec())),
                )
            }
            Engine::Fjall { keyspace, .. } => {
                let previous = match keyspace.range::<&[u8], _>(below).next_back() {
                    Some(item) => Some(item.key()?.to_vec()),
                    None => None,
                };
                let next = match keyspace.range::<&[u8], _>(above).next() {
                    Some(item) => Some(item.key()?.to_vec()),
                    None => None,
                };
                (within(previous), within(next))
            }
        })
    }

    /// Applies a batch of writes and the new checkpoint atomically.
    ///
    /// # Errors
    ///
    /// Fails when storage fails; then nothing of the batch was applied.
    pub fn commit(&self, writes: Writes, checkpoint: ChainHead) -> Result<(), StoreError> {
        let mut encoded = [0u8; 40];
        encoded[..8].copy_from_slice(&checkpoint.seq.to_be_bytes());
        encoded[8..].copy_from_slice(&checkpoint.hash.0);
        match &self.engine {
            Engine::Sled { tree, .. } => {
                let mut batch = sled::Batch::default();
                for (key, value) in writes {
                    match value {
                        Some(value) => batch.insert(key, value),
                        None => batch.remove(key),
                    }
                }
                batch.insert(CHECKPOINT_KEY, &encoded[..]);
                tree.apply_batch(batch)?;
            }
            Engine::Fjall { db, keyspace } => {
                // One journal entry: after a crash fjall recovers all of it or none.
                let mut batch = db.batch();
                for (key, value) in writes {
                    match value {
                        Some(value) => batch.insert(keyspace, key, value),
                        None => batch.remove(keyspace, key),
                    }
                }
                batch.insert(keyspace, CHECKPOINT_KEY, &encoded[..]);
                batch.commit()?;
            }
        }
        Ok(())
    }

    /// Writes everything buffered to disk.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sled { db, .. } => {
                db.flush_async().await?;
            }
            Engine::Fjall { db, .. } => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.persist(fjall::PersistMode::SyncAll))
                    .await
                    .map_err(|err| fjall::Error::Io(std::io::Error::other(err)))??;
            }
        }
        Ok(())
    }

    /// Returns a digest of the whole model and its checkpoint: BLAKE3 over
    /// every key and value in key order, each prefixed by its length as u64
    /// little-endian. Equal digests mean byte-identical models, in either
    /// engine.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn digest(&self) -> Result<String, StoreError> {
        let mut hasher = blake3::Hasher::new();
        self.for_each_prefixed(&[], |key, value| {
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value);
            true
        })?;
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
        let stored = self.store.scan_prefix(prefix)?;
        Ok(self.merge_pending(stored, (Bound::Included(prefix), Bound::Unbounded), prefix))
    }

    /// Returns the pairs whose key starts with `prefix` and sorts from
    /// `lower` up to and not including `upper`, as the batch so far left
    /// them, in key order.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn scan_range(
        &self,
        lower: &[u8],
        upper: &[u8],
        prefix: &[u8],
    ) -> Result<Pairs, StoreError> {
        let stored = self.store.scan_range(lower, upper, prefix)?;
        let range = (Bound::Included(lower), Bound::Excluded(upper));
        Ok(self.merge_pending(stored, range, prefix))
    }

    /// Applies this batch's writes in `range` under `prefix` to `stored`
    /// pairs read from the store over the same range.
    fn merge_pending(
        &self,
        stored: Pairs,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        prefix: &[u8],
    ) -> Pairs {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in self.writes.range::<[u8], _>(range) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        merged.into_iter().collect()
    }

    /// Returns the keys next to `key` among those starting with `prefix`, as
    /// the batch so far left them: the greatest below `key` and the least above it.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn neighbors(&self, prefix: &[u8], key: &[u8]) -> Result<Neighbors, StoreError> {
        // The nearest stored key may be deleted in this batch: step past deleted ones.
        let mut previous = self.store.neighbors(prefix, key)?.0;
        while let Some(found) = previous.take() {
            if !matches!(self.writes.get(&found), Some(None)) {
                previous = Some(found);
                break;
            }
            previous = self.store.neighbors(prefix, &found)?.0;
        }
        let mut next = self.store.neighbors(prefix, key)?.1;
        while let Some(found) = next.take() {
            if !matches!(self.writes.get(&found), Some(None)) {
                next = Some(found);
                break;
            }
            next = self.store.neighbors(prefix, &found)?.1;
        }

        let pending_previous = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Excluded(key)))
            .rev()
            .find(|(_, value)| value.is_some())
            .map(|(found, _)| found.clone());
        let pending_next = self
            .writes
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .take_while(|(found, _)| found.starts_with(prefix))
            .find(|(_, value)| value.is_some())
            .map(|(found, _)| found.clone());

        let previous = previous.into_iter().chain(pending_previous).max();
        let next = next.into_iter().chain(pending_next).min();
        Ok((previous, next))
    }

    /// Ends the batch and returns its writes.
    pub fn into_writes(self) -> Writes {
        self.writes
    }
}
