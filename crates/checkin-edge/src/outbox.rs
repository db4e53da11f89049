//! The device's outbox: submissions written to local disk before they are
//! published, so that they survive restarts and network loss.
//!
//! Layout in sled: one tree per outbox (`outbox` by default). The key is a
//! `u64` from sled's id generator in big-endian order, so iteration order is
//! enqueue order, also across restarts. The value is a bincode-encoded
//! [`StoredEntry`] whose first field is the format version.
//!
//! An entry is removed only after intake acknowledged it. Removals are not
//! flushed one by one: when a crash loses a removal, the entry is published
//! again, and JetStream (within its duplicate window) or the sequencer's
//! dedupe index drops the byte-identical resend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bincode::{Decode, Encode};
use bytes::Bytes;
use checkin_ledger::topology::{
    INTAKE_IMPORT, INTAKE_LIVE, INTAKE_MAX_MESSAGE_BYTES, INTAKE_VOID, intake_message_id,
};
use thiserror::Error;
use tokio::sync::Notify;

/// Format version of stored entries.
const ENTRY_VERSION: u8 = 1;
/// Name of the tree that [`Outbox::open`] uses.
const DEFAULT_TREE: &str = "outbox";

/// The intake subject an entry goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum IntakeSubject {
    /// `checkin.intake.live`: check-ins from live devices.
    Live,
    /// `checkin.intake.import`: historical check-ins, exempt from the horizon.
    Import,
    /// `checkin.intake.void`: void requests.
    Void,
}

impl IntakeSubject {
    /// Returns the NATS subject.
    pub fn subject(self) -> &'static str {
        match self {
            Self::Live => INTAKE_LIVE,
            Self::Import => INTAKE_IMPORT,
            Self::Void => INTAKE_VOID,
        }
    }
}

/// One submission waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in the outbox; larger keys were enqueued later.
    pub key: u64,
    /// Intake subject.
    pub subject: IntakeSubject,
    /// The submission's event id, as in its `id` field.
    pub id: String,
    /// The submission's exact bytes.
    pub payload: Bytes,
}

impl OutboxEntry {
    /// Returns the `Nats-Msg-Id` header value: the id and a digest of the bytes.
    pub fn message_id(&self) -> String {
        intake_message_id(&self.id, &self.payload)
    }
}

#[derive(Encode, Decode)]
struct StoredEntry {
    version: u8,
    subject: IntakeSubject,
    id: String,
    payload: Vec<u8>,
}

/// Error of an outbox operation.
#[derive(Debug, Error)]
pub enum OutboxError {
    /// sled failed to read, write or flush.
    #[error("outbox storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored entry could not be decoded.
    #[error("outbox entry {key} is corrupt or has an unknown format: {detail}")]
    Corrupt {
        /// Key of the entry.
        key: u64,
        /// Description of the problem.
        detail: String,
    },
    /// The payload is larger than intake accepts, so it could never be published.
    #[error("submission {id} is {size} bytes, more than the {max}-byte intake limit")]
    TooLarge {
        /// Event id.
        id: String,
        /// Payload size in bytes.
        size: usize,
        /// Intake limit in bytes.
        max: usize,
    },
}

/// A durable FIFO of submissions awaiting publication. Clones share the same tree.
#[derive(Clone)]
pub struct Outbox {
    db: sled::Db,
    tree: sled::Tree,
    enqueued: Arc<Notify>,
    /// Number of entries, counted once at open and kept up to date, because
    /// sled's `len` walks the whole tree.
    entries: Arc<AtomicUsize>,
}

impl Outbox {
    /// Opens (or creates) the outbox stored in directory `path`.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Storage`] when sled cannot open the directory, for
    /// example because another process holds it.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, OutboxError> {
        let db = sled::open(path)?;
        Self::open_tree(&db, DEFAULT_TREE)
    }

    /// Opens the outbox stored in tree `name` of an open sled database, so
    /// that several devices can keep their outboxes in one database.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Storage`] when sled cannot open the tree.
    pub fn open_tree(db: &sled::Db, name: &str) -> Result<Self, OutboxError> {
        let tree = db.open_tree(name)?;
        let entries = Arc::new(AtomicUsize::new(tree.len()));
        Ok(Self {
            db: db.clone(),
            tree,
            enqueued: Arc::new(Notify::new()),
            entries,
        })
    }

    /// Appends one submission and flushes it to disk before returning.
    ///
    /// # Errors
    ///
    /// [`OutboxError::TooLarge`] for payloads intake would never accept;
    /// [`OutboxError::Storage`] when the write or the flush fails.
    pub async fn enqueue(
        &self,
        subject: IntakeSubject,
        id: &str,
        payload: &[u8],
    ) -> Result<u64, OutboxError> {
        let key = self.insert(subject, id, payload)?;
        self.tree.flush_async().await?;
        self.enqueued.notify_waiters();
        Ok(key)
    }

    /// Appends several submissions in order and flushes once, which is much
    /// faster than one flush each. Returns how many were appended.
    ///
    /// # Errors
    ///
    /// As [`Outbox::enqueue`]. Entries before a failing one stay in the outbox.
    pub async fn enqueue_batch<'a>(
        &self,
        entries: impl IntoIterator<Item = (IntakeSubject, &'a str, &'a [u8])>,
    ) -> Result<usize, OutboxError> {
        let mut count = 0;
        for (subject, id, payload) in entries {
            self.insert(subject, id, payload)?;
            count += 1;
        }
        self.tree.flush_async().await?;
        self.enqueued.notify_waiters();
        Ok(count)
    }

    fn insert(&self, subject: IntakeSubject, id: &str, payload: &[u8]) -> Result<u64, OutboxError> {
        let max = INTAKE_MAX_MESSAGE_BYTES as usize;
        if payload.len() > max {
            return Err(OutboxError::TooLarge {
                id: id.to_string(),
                size: payload.len(),
                max,
            });
        }
        let stored = StoredEntry {
            version: ENTRY_VERSION,
            subject,
            id: id.to_string(),
            payload: payload.to_vec(),
        };
        let bytes = bincode::encode_to_vec(&stored, bincode::config::standard())
            .expect("encoding into a Vec cannot fail");
        let key = self.db.generate_id()?;
        self.tree.insert(key.to_be_bytes(), bytes)?;
        self.entries.fetch_add(1, Ordering::Relaxed);
        Ok(key)
    }

    /// Returns up to `limit` entries with keys greater than `after` (all when
    /// `None`), oldest first.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Storage`] on read failures, [`OutboxError::Corrupt`]
    /// for an entry that does not decode.
    pub fn entries_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, OutboxError> {
        let range = match after {
            Some(key) => self.tree.range((key + 1).to_be_bytes()..),
            None => self.tree.iter(),
        };
        let mut entries = Vec::new();
        for item in range.take(limit) {
            let (key, value) = item?;
            entries.push(decode_entry(&key, &value)?);
        }
        Ok(entries)
    }

    /// Removes an entry after intake acknowledged it; a missing key is ignored.
    ///
    /// The removal reaches disk with the next flush (see the module docs for
    /// why that is safe).
    ///
    /// # Errors
    ///
    /// [`OutboxError::Storage`] when sled fails.
    pub fn remove(&self, key: u64) -> Result<(), OutboxError> {
        if self.tree.remove(key.to_be_bytes())?.is_some() {
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes entries after intake acknowledged them, in one sled batch.
    ///
    /// Each key must be one that this outbox returned and that was not removed
    /// since, because the entry count is lowered by the number of keys
    /// without looking them up. Like [`Outbox::remove`], the removals reach
    /// disk with the next flush.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Storage`] when sled fails.
    pub fn remove_batch(&self, keys: &[u64]) -> Result<(), OutboxError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(&key.to_be_bytes());
        }
        self.tree.apply_batch(batch)?;
        let removed = keys.len();
        let _ = self
            .entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                Some(count.saturating_sub(removed))
            });
        Ok(())
    }

    /// Flushes pending removals to disk.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Storage`] when the flush fails.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.tree.flush_async().await?;
        Ok(())
    }

    /// Returns the number of entries waiting. Entries added or removed by
    /// another process sharing the files since this one opened them are not counted.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Tells whether no entry is waiting, looking at the stored tree.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Waits until the next enqueue on this outbox or one of its clones.
    pub async fn enqueued(&self) {
        self.enqueued.notified().await;
    }
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<OutboxEntry, OutboxError> {
    let key_bytes: [u8; 8] = key.try_into().map_err(|_| OutboxError::Corrupt {
        key: 0,
        detail: format!("key has {} bytes, expected 8", key.len()),
    })?;
    let key = u64::from_be_bytes(key_bytes);
    let corrupt = |detail: String| OutboxError::Corrupt { key, detail };

    let (stored, _): (StoredEntry, usize) =
        bincode::decode_from_slice(value, bincode::config::standard())
            .map_err(|err| corrupt(err.to_string()))?;
    if stored.version != ENTRY_VERSION {
        return Err(corrupt(format!("format version {}", stored.version)));
    }
    Ok(OutboxEntry {
        key,
        subject: stored.subject,
        id: stored.id,
        payload: Bytes::from(stored.payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(entries: &[OutboxEntry]) -> Vec<&str> {
        entries.iter().map(|entry| entry.id.as_str()).collect()
    }

    #[tokio::test]
    async fn entries_come_back_in_enqueue_order() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        for id in ["c", "a", "b"] {
            outbox
                .enqueue(IntakeSubject::Live, id, id.as_bytes())
                .await
                .unwrap();
        }

        let entries = outbox.entries_after(None, 10).unwrap();
        assert_eq!(ids(&entries), ["c", "a", "b"]);
        assert_eq!(entries[1].payload.as_ref(), b"a");
        let rest = outbox.entries_after(Some(entries[0].key), 10).unwrap();
        assert_eq!(ids(&rest), ["a", "b"]);
        let first_two = outbox.entries_after(None, 2).unwrap();
        assert_eq!(ids(&first_two), ["c", "a"]);
    }

    #[tokio::test]
    async fn entries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            outbox
                .enqueue(IntakeSubject::Import, "x1", b"{}")
                .await
                .unwrap();
            let batch = [
                (IntakeSubject::Live, "x2", b"[1]".as_slice()),
                (IntakeSubject::Void, "x3", b"[2]".as_slice()),
            ];
            assert_eq!(outbox.enqueue_batch(batch).await.unwrap(), 2);
        }

        let outbox = Outbox::open(dir.path()).unwrap();
        let entries = outbox.entries_after(None, 10).unwrap();
        assert_eq!(ids(&entries), ["x1", "x2", "x3"]);
        assert_eq!(entries[0].subject, IntakeSubject::Import);
        assert_eq!(entries[2].subject, IntakeSubject::Void);
        assert_eq!(entries[2].payload.as_ref(), b"[2]");

        // Keys keep growing after a reopen, so new entries sort last.
        outbox
            .enqueue(IntakeSubject::Live, "x4", b"")
            .await
            .unwrap();
        let entries = outbox.entries_after(None, 10).unwrap();
        assert_eq!(ids(&entries), ["x1", "x2", "x3", "x4"]);
    }

    #[tokio::test]
    async fn entry_stays_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let first = outbox
            .enqueue(IntakeSubject::Live, "a", b"1")
            .await
            .unwrap();
        outbox
            .enqueue(IntakeSubject::Live, "b", b"2")
            .await
            .unwrap();

        // Reading an entry does not remove it.
        outbox.entries_after(None, 10).unwrap();
        assert_eq!(outbox.len(), 2);

        outbox.remove(first).unwrap();
        outbox.flush().await.unwrap();
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(ids(&outbox.entries_after(None, 10).unwrap()), ["b"]);
    }

    #[tokio::test]
    async fn remove_batch_removes_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let batch = [
            (IntakeSubject::Live, "a", b"1".as_slice()),
            (IntakeSubject::Live, "b", b"2".as_slice()),
            (IntakeSubject::Live, "c", b"3".as_slice()),
        ];
        outbox.enqueue_batch(batch).await.unwrap();
        let entries = outbox.entries_after(None, 10).unwrap();

        outbox
            .remove_batch(&[entries[0].key, entries[2].key])
            .unwrap();
        assert_eq!(outbox.len(), 1);
        outbox.flush().await.unwrap();
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(ids(&outbox.entries_after(None, 10).unwrap()), ["b"]);
    }

    #[tokio::test]
    async fn oversized_payload_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let payload = vec![b' '; INTAKE_MAX_MESSAGE_BYTES as usize + 1];
        let result = outbox.enqueue(IntakeSubject::Live, "big", &payload).await;
        assert!(matches!(result, Err(OutboxError::TooLarge { .. })));
        assert!(outbox.is_empty());
    }

    #[test]
    fn message_id_is_id_and_digest() {
        let entry = OutboxEntry {
            key: 1,
            subject: IntakeSubject::Live,
            id: "abc".into(),
            payload: Bytes::from_static(b"{}"),
        };
        assert_eq!(entry.message_id(), intake_message_id("abc", b"{}"));
        assert!(entry.message_id().starts_with("abc:"));
    }
}
