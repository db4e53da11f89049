//! Runs one projection: reads the ledger from the model's checkpoint + 1,
//! checks every chain link, folds records in batches and commits each batch
//! with its checkpoint.
//!
//! The checkpoint in sled is the source of truth for where to resume, not
//! any server-side consumer state: the ledger is read with an ordered
//! consumer that the server deletes when the runner stops.

use std::time::Duration;

use async_nats::jetstream;
use checkin_core::chain::{ChainVerifier, GENESIS_SEQ};
use checkin_core::{ChainHead, Record, codec};
use checkin_ledger::reader::{MessageStream, ReadError, StoredMessage, StreamReader};
use checkin_ledger::topology::LEDGER_STREAM;
use futures::StreamExt;
use thiserror::Error;
use tracing::{Instrument, debug, info, info_span};

use crate::store::{ModelStore, Overlay, StoreError};

/// One ledger record handed to a projection.
#[derive(Clone, Debug)]
pub struct LedgerEntry {
    /// Ledger sequence.
    pub seq: u64,
    /// The decoded record.
    pub record: Record,
}

/// Error of a projection's fold.
#[derive(Debug, Error)]
pub enum ProjectionError {
    /// The model's storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored model value does not decode: the model is damaged or from another build.
    #[error("stored value under key {key} does not decode: {detail}")]
    Corrupt {
        /// The key, escaped for printing.
        key: String,
        /// What failed.
        detail: String,
    },
}

/// A deterministic fold of ledger records into a read model.
pub trait Projection: Send + Sync {
    /// Returns the model's stable name, also its sled tree name.
    fn name(&self) -> &'static str;

    /// Applies one record. Called in ledger order; must depend only on the
    /// record and the model, so replaying the ledger rebuilds the same bytes.
    ///
    /// # Errors
    ///
    /// Fails when storage fails or the model is damaged.
    fn apply(&self, entry: &LedgerEntry, model: &mut Overlay<'_>) -> Result<(), ProjectionError>;

    /// Applies consecutive records. The default applies them one by one; a
    /// projection may aggregate instead, as long as the result equals the
    /// one-by-one result, so that any batching rebuilds the same bytes.
    ///
    /// # Errors
    ///
    /// Fails when storage fails or the model is damaged.
    fn apply_batch(
        &self,
        entries: &[LedgerEntry],
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        entries
            .iter()
            .try_for_each(|entry| self.apply(entry, model))
    }
}

/// Error that stopped a runner.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The ledger could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The fold failed.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The model's storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ledger record fails verification; the model stays at the last good batch.
    #[error("ledger chain is broken at seq {seq}: {detail}")]
    BrokenChain {
        /// First bad sequence.
        seq: u64,
        /// Description of the problem.
        detail: String,
    },
    /// The ledger ended before the requested sequence.
    #[error("ledger reader ended at seq {0}")]
    Ended(u64),
    /// The records after the checkpoint were archived and purged from the stream.
    #[error(
        "the projection needs ledger records from seq {next}, but the ledger stream starts at seq {first} \
         because older records were archived; replay from the archive, or rebuild the model from an archive \
         and the stream together"
    )]
    Archived {
        /// First sequence the projection needs.
        next: u64,
        /// First sequence the stream still contains.
        first: u64,
    },
}

/// Stopping point of a run.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// After applying this sequence (a rebuild up to the head).
    Seq(u64),
    /// Before the first record the sequencer recorded after this time, UTC
    /// microseconds, or at the end of the records read: the models as they
    /// stood at that time.
    RecordedBy(i64),
    /// Never; the caller drops or stops the future.
    Forever,
}

/// A projection and the store it folds into.
struct Model {
    store: ModelStore,
    projection: Box<dyn Projection>,
    /// Last record committed to `store`.
    applied: Option<ChainHead>,
}

/// Runs projections over the ledger, reading it once for all of them.
///
/// Each projection keeps its own store and checkpoint, so the runner starts
/// at the lowest checkpoint and hands each projection only the records past
/// its own. Every batch is verified and decoded once, then the projections
/// fold and commit it side by side on their own threads.
pub struct Runner {
    ledger: StreamReader,
    models: Vec<Model>,
    batch_size: usize,
    linger: Duration,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
}

impl Runner {
    /// Creates a runner of one projection over an existing ledger stream.
    ///
    /// # Errors
    ///
    /// Fails when the ledger stream does not exist.
    pub async fn new(
        js: &jetstream::Context,
        store: ModelStore,
        projection: impl Projection + 'static,
    ) -> Result<Self, RunnerError> {
        Ok(Self::open(js).await?.with(store, projection))
    }

    /// Creates a runner without projections; add them with [`Runner::with`]
    /// before running it.
    ///
    /// # Errors
    ///
    /// Fails when the ledger stream does not exist.
    pub async fn open(js: &jetstream::Context) -> Result<Self, RunnerError> {
        Ok(Self {
            ledger: StreamReader::open(js, LEDGER_STREAM).await?,
            models: Vec::new(),
            batch_size: 1000,
            linger: Duration::from_millis(5),
            progress: None,
        })
    }

    /// Adds a projection that reads the same ledger records.
    #[must_use]
    pub fn with(mut self, store: ModelStore, projection: impl Projection + 'static) -> Self {
        self.models.push(Model {
            store,
            projection: Box::new(projection),
            applied: None,
        });
        self
    }

    /// Calls `report` with the last applied sequence after each batch.
    #[must_use]
    pub fn with_progress(mut self, report: impl FnMut(u64) + Send + 'static) -> Self {
        self.progress = Some(Box::new(report));
        self
    }

    /// Returns the store of the first projection.
    ///
    /// # Panics
    ///
    /// Panics when the runner has no projection.
    pub fn store(&self) -> &ModelStore {
        &self.models[0].store
    }

    /// Returns the store of each projection, in the order they were added.
    pub fn stores(&self) -> impl Iterator<Item = &ModelStore> {
        self.models.iter().map(|model| &model.store)
    }

    /// Returns the ledger's last sequence now.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached.
    pub async fn ledger_head(&self) -> Result<u64, RunnerError> {
        Ok(self.ledger.bounds().await?.1)
    }

    /// Applies ledger records from the checkpoints on until `until`, or until
    /// `shutdown` completes after the batch in hand is committed. Returns the
    /// last record applied.
    ///
    /// # Errors
    ///
    /// Fails on a broken chain, an undecodable record, a damaged model or
    /// storage failure; each model then stays at its last committed batch.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses at most the uncommitted batch, which the
    /// next run applies again from the checkpoints.
    pub async fn run(
        &mut self,
        until: Until,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ChainHead, RunnerError> {
        let start = self.start()?;
        let (first, _) = self.ledger.bounds().await?;
        if first > start {
            return Err(RunnerError::Archived { next: start, first });
        }
        let records = self.ledger.follow(start).await?;
        self.run_from(records, until, shutdown).await
    }

    /// Returns the first sequence the models still need: the lowest
    /// checkpoint + 1, or the genesis sequence when any model is empty.
    ///
    /// # Errors
    ///
    /// Fails when storage fails.
    pub fn start(&mut self) -> Result<u64, RunnerError> {
        for model in &mut self.models {
            model.applied = model.store.checkpoint()?;
        }
        Ok(self.resume().map_or(GENESIS_SEQ, |head| head.seq + 1))
    }

    /// Returns the lowest checkpoint, or `None` when any model is empty.
    fn resume(&self) -> Option<ChainHead> {
        self.models
            .iter()
            .map(|model| model.applied)
            .min_by_key(|applied| applied.map(|head| head.seq))
            .flatten()
    }

    /// Like [`Runner::run`], over records from another source, such as
    /// archive segments followed by the stream. `records` must start at
    /// [`Runner::start`]; the chain check finds any other start.
    ///
    /// # Errors
    ///
    /// As [`Runner::run`]; also fails when `records` ends before `until`,
    /// except for [`Until::RecordedBy`], which ends there.
    pub async fn run_from(
        &mut self,
        mut records: MessageStream,
        until: Until,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ChainHead, RunnerError> {
        let names: Vec<&str> = self
            .models
            .iter()
            .map(|model| model.projection.name())
            .collect();
        let span = info_span!("projection", models = names.join(",").as_str());
        async move {
            let start = self.start()?;
            let mut verifier = match self.resume() {
                Some(head) => ChainVerifier::resume(head),
                None => ChainVerifier::new(),
            };
            if let Until::Seq(last) = until
                && last < start
            {
                return Ok(verifier.head());
            }
            info!(from = start, "projection started");

            tokio::pin!(shutdown);
            loop {
                let first = tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    first = records.next() => first,
                };
                let Some(first) = first else {
                    if matches!(until, Until::RecordedBy(_)) {
                        break;
                    }
                    return Err(RunnerError::Ended(verifier.head().seq));
                };
                let batch = self.collect(first?, &mut records).await?;
                let (entries, reached) = self.verify_and_decode(&batch, &mut verifier, until)?;
                let head = verifier.head();
                if !entries.is_empty() {
                    self.apply_batch(&entries, head)?;
                }
                if let Some(report) = &mut self.progress {
                    report(head.seq);
                }
                if reached {
                    break;
                }
            }
            info!(seq = verifier.head().seq, "projection stopped");
            Ok(verifier.head())
        }
        .instrument(span)
        .await
    }

    async fn collect(
        &self,
        first: StoredMessage,
        records: &mut MessageStream,
    ) -> Result<Vec<StoredMessage>, RunnerError> {
        let mut batch = vec![first];
        while batch.len() < self.batch_size {
            match tokio::time::timeout(self.linger, records.next()).await {
                Ok(Some(message)) => batch.push(message?),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Checks each record's chain link, and that a model's checkpoint names
    /// the hash the ledger has at that sequence, then decodes the records.
    /// Stops at the record where `until` ends and returns true as the
    /// second value once it is reached.
    fn verify_and_decode(
        &self,
        batch: &[StoredMessage],
        verifier: &mut ChainVerifier,
        until: Until,
    ) -> Result<(Vec<LedgerEntry>, bool), RunnerError> {
        let mut entries = Vec::with_capacity(batch.len());
        for message in batch {
            if let Until::Seq(last) = until
                && message.seq > last
            {
                return Ok((entries, true));
            }
            let record =
                codec::decode(&message.payload).map_err(|err| RunnerError::BrokenChain {
                    seq: message.seq,
                    detail: err.to_string(),
                })?;
            if let Until::RecordedBy(at_us) = until
                && record.recorded_at_us > at_us
            {
                return Ok((entries, true));
            }
            verifier.push(message.link());
            if let Some(finding) = verifier.findings().first() {
                return Err(RunnerError::BrokenChain {
                    seq: finding.seq,
                    detail: finding.to_string(),
                });
            }
            let head = verifier.head();
            for model in &self.models {
                if let Some(applied) = model.applied
                    && applied.seq == head.seq
                    && applied.hash != head.hash
                {
                    return Err(RunnerError::BrokenChain {
                        seq: head.seq,
                        detail: format!(
                            "the {} model was built from a record with hash {}, but the ledger has {}: \
                             the model belongs to another ledger or to a rewritten history; rebuild it",
                            model.projection.name(),
                            applied.hash,
                            head.hash
                        ),
                    });
                }
            }
            entries.push(LedgerEntry {
                seq: message.seq,
                record,
            });
            if let Until::Seq(last) = until
                && message.seq >= last
            {
                return Ok((entries, true));
            }
        }
        Ok((entries, false))
    }

    /// Folds the batch into every model that has not applied it yet and
    /// commits each with `head` as its checkpoint, one thread per model.
    fn apply_batch(&mut self, entries: &[LedgerEntry], head: ChainHead) -> Result<(), RunnerError> {
        let results: Vec<Result<(), RunnerError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .models
                .iter_mut()
                .map(|model| scope.spawn(move || model.apply(entries, head)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("projection thread panicked"))
                .collect()
        });
        results.into_iter().collect::<Result<(), _>>()?;
        debug!(records = entries.len(), seq = head.seq, "batch committed");
        Ok(())
    }
}

impl Model {
    fn apply(&mut self, entries: &[LedgerEntry], head: ChainHead) -> Result<(), RunnerError> {
        let applied = self.applied.map_or(0, |applied| applied.seq);
        let fresh = entries.partition_point(|entry| entry.seq <= applied);
        if fresh == entries.len() {
            return Ok(());
        }
        let mut model = Overlay::new(&self.store);
        self.projection.apply_batch(&entries[fresh..], &mut model)?;
        self.store.commit(model.into_writes(), head)?;
        self.applied = Some(head);
        Ok(())
    }
}
