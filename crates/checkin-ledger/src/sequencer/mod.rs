//! The sequencer: the single writer that turns intake submissions into
//! chained ledger records.
//!
//! It reads intake in order from its cursor. For each batch it validates
//! every submission and drops resends already in the ledger, found by event
//! id in the persistent [`DedupeIndex`]. It stores refusals in the rejected
//! stream, chains the new records onto the head and appends them with the
//! sequence fence. Then it records the ids and the new intake cursor in the
//! index. Processed intake is purged once a second.
//!
//! Why nothing is lost or recorded twice, wherever the process dies:
//! - the cursor moves only after the batch's records and refusals were
//!   acknowledged by JetStream, and intake is purged only below the cursor,
//!   so an unfinished batch is read again after a restart;
//! - every ledger record names its intake sequence in a header, so a lost
//!   local cursor is recovered from the ledger;
//! - the index covers exactly the records `1..=head` before a batch is
//!   planned, and every append is fenced on that head, so a record the index
//!   does not know about makes the append fail instead of duplicating;
//! - after any failed append the sequencer reloads the head and indexes the
//!   records it missed, so re-read submissions are recognised as resends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::sites::SiteRegistry;
use checkin_core::validate::TimePolicy;
use checkin_core::{ChainHead, EventId};
use futures::StreamExt;
use futures::future::{Fuse, FutureExt};
use thiserror::Error;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::dedupe::{DedupeIndex, IndexEntry, IndexError};
use crate::reader::{MessageStream, ReadError, StoredMessage, StreamReader};
use crate::topology::{self, INTAKE_STREAM, LEDGER_STREAM, TopologyError, TopologySettings};
use crate::writer::{AppendError, AppendMode, LedgerWriter, MAX_ATOMIC_BATCH};

mod plan;
mod recovery;

use plan::Plan;
pub use plan::content_digest;

/// Sequencer settings.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Ledger name written into the genesis record.
    pub ledger_name: String,
    /// Most submissions planned and appended together, at most 1000.
    pub batch_size: usize,
    /// How long a batch waits for more submissions once it has one.
    pub linger: Duration,
    /// How often processed intake is purged.
    pub purge_interval: Duration,
    /// Append strategy for ledger records.
    pub append_mode: AppendMode,
    /// Time rules for `at`.
    pub time_policy: TimePolicy,
    /// Configured sites.
    pub sites: SiteRegistry,
    /// Stream settings.
    pub topology: TopologySettings,
    /// Archive directory of the records purged from the ledger stream. The
    /// sequencer reads it only to rebuild a dedupe index that does not cover
    /// the purged records.
    pub archive_dir: Option<PathBuf>,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            ledger_name: "default".into(),
            batch_size: MAX_ATOMIC_BATCH,
            linger: Duration::from_millis(2),
            purge_interval: Duration::from_secs(1),
            append_mode: AppendMode::default(),
            time_policy: TimePolicy::default(),
            sites: SiteRegistry::default(),
            topology: TopologySettings::default(),
            archive_dir: None,
        }
    }
}

/// Error that stopped the sequencer or kept it from starting.
#[derive(Debug, Error)]
pub enum SequencerError {
    /// The streams could not be set up.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The ledger could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The dedupe index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The archive needed to rebuild the dedupe index is missing or invalid.
    #[error("{0}")]
    Archive(String),
    /// The stored chain is broken; appending onto it would hide the damage.
    #[error("ledger chain is broken: {0}; run the auditor before writing again")]
    BrokenChain(String),
    /// Appends kept failing.
    #[error("failed to append to the ledger after {attempts} attempts: {last}")]
    Append {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: AppendError,
    },
    /// Intake could not be read or purged.
    #[error("failed to {action} intake: {detail}")]
    Intake {
        /// Operation that failed.
        action: &'static str,
        /// Error text from the client.
        detail: String,
    },
    /// A refusal could not be stored.
    #[error("failed to store a refused submission: {0}")]
    Rejected(String),
}

impl From<crate::archive::ArchiveError> for SequencerError {
    fn from(err: crate::archive::ArchiveError) -> Self {
        Self::Archive(err.to_string())
    }
}

impl SequencerError {
    /// Tells whether the sequencer may go on with the next batch after this error.
    fn is_transient(&self) -> bool {
        match self {
            Self::Intake { .. } | Self::Rejected(_) | Self::Read(_) | Self::Append { .. } => true,
            Self::Topology(_) | Self::Index(_) | Self::BrokenChain(_) | Self::Archive(_) => false,
        }
    }
}

/// Counters of the sequencer's work, shared with monitoring and benchmarks.
#[derive(Debug, Default)]
pub struct SequencerStats {
    /// Records appended.
    pub appended: AtomicU64,
    /// Resends dropped as already recorded.
    pub duplicates: AtomicU64,
    /// Submissions refused.
    pub rejected: AtomicU64,
    /// Appends that failed and were retried.
    pub retries: AtomicU64,
}

/// The ledger writer.
pub struct Sequencer {
    js: jetstream::Context,
    config: SequencerConfig,
    index: DedupeIndex,
    writer: LedgerWriter,
    ledger: StreamReader,
    intake: StreamReader,
    head: ChainHead,
    /// Intake sequence up to which every submission is processed.
    cursor: u64,
    /// Intake sequence below which intake was purged.
    purged_below: u64,
    /// Shutdown was requested; retries stop waiting.
    stopping: bool,
    stats: Arc<SequencerStats>,
}

impl Sequencer {
    /// Sets up the streams, writes the genesis record of a new ledger, and
    /// brings the dedupe index under `index_dir` up to the ledger head.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached, a stream's settings differ,
    /// the index cannot be opened, or the stored chain is broken.
    pub async fn start(
        client: async_nats::Client,
        config: SequencerConfig,
        index_dir: &Path,
    ) -> Result<Self, SequencerError> {
        let js = jetstream::new(client.clone());
        topology::ensure_streams(&js, &config.topology).await?;

        let index = DedupeIndex::open(index_dir)?;
        let writer = LedgerWriter::new(client, config.append_mode);
        let ledger = StreamReader::open(&js, LEDGER_STREAM).await?;
        let intake = StreamReader::open(&js, INTAKE_STREAM).await?;

        let mut sequencer = Self {
            js,
            config,
            index,
            writer,
            ledger,
            intake,
            head: ChainHead::EMPTY,
            cursor: 0,
            purged_below: 0,
            stopping: false,
            stats: Arc::default(),
        };
        sequencer.write_genesis_if_empty().await?;
        let ledger_cursor = sequencer.catch_up().await?;
        sequencer.cursor = sequencer.index.intake_cursor()?.max(ledger_cursor);
        info!(
            seq = sequencer.head.seq,
            hash = %sequencer.head.hash,
            intake_cursor = sequencer.cursor,
            "sequencer ready"
        );
        Ok(sequencer)
    }

    /// Returns the ledger head as of this sequencer's last append or reload.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Returns the shared counters.
    pub fn stats(&self) -> Arc<SequencerStats> {
        self.stats.clone()
    }

    /// Returns the intake sequence up to which every submission is processed.
    pub fn intake_cursor(&self) -> u64 {
        self.cursor
    }

    /// Runs until `shutdown` completes, then finishes the batch in hand and flushes the index.
    ///
    /// # Errors
    ///
    /// Returns the first error that makes going on unsafe, such as a broken
    /// chain or a failed index; transient failures are logged and retried.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SequencerError> {
        let span = info_span!("sequencer", ledger = %self.config.ledger_name);
        async move {
            let mut intake = self.intake.follow(self.cursor + 1).await?;
            let mut purge_timer = tokio::time::interval(self.config.purge_interval);
            let shutdown = shutdown.fuse();
            tokio::pin!(shutdown);

            // While one batch's append is in flight, the next batch is read
            // and planned on top of it; see `InFlight`.
            let mut in_flight: Option<InFlight> = None;
            loop {
                let first = tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        self.stopping = true;
                        break;
                    }
                    joined = wait_for_in_flight(&mut in_flight), if in_flight.is_some() => {
                        let flight = in_flight.take().expect("the branch runs only with an append in flight");
                        if !self.land(flight, joined, &mut shutdown).await? {
                            break;
                        }
                        continue;
                    }
                    _ = purge_timer.tick() => {
                        self.purge_processed_intake().await;
                        continue;
                    }
                    first = intake.next() => first,
                };
                let Some(first) = first else {
                    return Err(intake_error("read", "intake reader ended"));
                };
                let batch = self.collect_batch(first, &mut intake).await;
                if batch.is_empty() {
                    continue;
                }
                match self.pipeline(in_flight.take(), batch, &mut shutdown).await? {
                    Some(flight) => in_flight = Some(flight),
                    None if self.stopping => break,
                    None => {}
                }
            }

            // Finish the append in flight, so the index and cursor match the ledger.
            if let Some(mut flight) = in_flight.take() {
                let joined = wait_for_append(&mut flight).await;
                self.land(flight, joined, &mut shutdown).await?;
            }

            self.index.flush().await?;
            info!(
                seq = self.head.seq,
                intake_cursor = self.cursor,
                "sequencer stopped"
            );
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Gathers up to `batch_size` submissions, waiting at most `linger` for each after the first.
    async fn collect_batch(
        &self,
        first: Result<StoredMessage, ReadError>,
        intake: &mut MessageStream,
    ) -> Vec<StoredMessage> {
        let mut batch = Vec::with_capacity(self.config.batch_size);
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                // Messages at or below the cursor were processed before a reader restart.
                Ok(message) if message.seq <= self.cursor => {}
                Ok(message) => batch.push(message),
                Err(err) => warn!(error = %err, "intake reader reported an error"),
            }
            if batch.len() >= self.config.batch_size {
                break;
            }
            next = tokio::time::timeout(self.config.linger, intake.next())
                .await
                .ok()
                .flatten();
        }
        batch
    }

    /// Processes a batch, retrying transient failures with back-off until it
    /// succeeds; returns false when shutdown was requested meanwhile.
    async fn process_until_done(
        &mut self,
        batch: &[StoredMessage],
        shutdown: &mut Pin<&mut Fuse<impl Future<Output = ()>>>,
    ) -> Result<bool, SequencerError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.process(batch).await {
                Ok(()) => return Ok(true),
                Err(err) if err.is_transient() => {
                    warn!(error = %err, size = batch.len(), retry_in = ?delay, "failed to process batch, retrying");
                }
                Err(err) => return Err(err),
            }
            if self.stopping {
                return Ok(false);
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut() => {
                    self.stopping = true;
                    return Ok(false);
                }
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
            self.catch_up().await?;
        }
    }

    /// Plans, stores refusals, appends and records one batch, retrying appends after reloading the head.
    async fn process(&mut self, batch: &[StoredMessage]) -> Result<(), SequencerError> {
        const MAX_ATTEMPTS: u32 = 8;
        let mut attempt = 0;

        let plan = loop {
            let plan = self.plan(batch)?;
            // Refusals are stored before the records: a ledger record naming
            // intake sequence N then proves everything before N was handled.
            self.store_rejections(batch, &plan.rejections).await?;
            match self.writer.append(&plan.records).await {
                Ok(()) => break plan,
                Err(err) => {
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if attempt >= MAX_ATTEMPTS {
                        return Err(SequencerError::Append {
                            attempts: attempt,
                            last: err,
                        });
                    }
                    warn!(error = %err, attempt, "append failed, reloading the ledger head");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    self.catch_up().await?;
                }
            }
        };

        self.record_batch(batch, &plan)?;
        Ok(())
    }

    /// Records a batch whose records the ledger acknowledged: moves the head,
    /// writes the ids and the intake cursor to the index, counts.
    fn record_batch(&mut self, batch: &[StoredMessage], plan: &Plan) -> Result<(), SequencerError> {
        if let Some(last) = plan.records.last() {
            self.head = ChainHead {
                seq: last.seq,
                hash: last.hash,
            };
        }
        let cursor = batch.last().map_or(self.cursor, |message| message.seq);
        self.index.record(&plan.entries, self.head, cursor)?;
        self.cursor = cursor;

        self.stats
            .appended
            .fetch_add(plan.records.len() as u64, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(plan.duplicates, Ordering::Relaxed);
        self.stats
            .rejected
            .fetch_add(plan.rejections.len() as u64, Ordering::Relaxed);
        debug!(
            appended = plan.records.len(),
            duplicates = plan.duplicates,
            rejected = plan.rejections.len(),
            head = self.head.seq,
            intake_cursor = self.cursor,
            "batch done"
        );
        Ok(())
    }

    /// Starts appending `batch` while `in_flight`, if any, is still being
    /// appended: plans `batch` on top of it, waits for it, records it, then
    /// sends `batch`'s refusals and starts its append. Returns the new append
    /// in flight, or `None` when `batch` was finished another way.
    async fn pipeline(
        &mut self,
        in_flight: Option<InFlight>,
        batch: Vec<StoredMessage>,
        shutdown: &mut Pin<&mut Fuse<impl Future<Output = ()>>>,
    ) -> Result<Option<InFlight>, SequencerError> {
        let (base, pending) = match &in_flight {
            Some(flight) => (flight.head, flight.pending_ids()),
            None => (self.head, HashMap::new()),
        };
        let plan = self.plan_on(&batch, base, &pending)?;

        if let Some(mut flight) = in_flight {
            let joined = wait_for_append(&mut flight).await;
            if !self.land(flight, joined, shutdown).await? {
                return Ok(None);
            }
            if self.head != base {
                // The earlier batch was appended again after a failure, so this plan is stale.
                return self
                    .process_until_done(&batch, shutdown)
                    .await
                    .map(|_| None);
            }
        }

        if let Err(err) = self.store_rejections(&batch, &plan.rejections).await {
            warn!(error = %err, "failed to store refusals, retrying the batch");
            return self
                .process_until_done(&batch, shutdown)
                .await
                .map(|_| None);
        }
        let writer = self.writer.clone();
        let records = plan.records.clone();
        let head = plan.records.last().map_or(base, |last| ChainHead {
            seq: last.seq,
            hash: last.hash,
        });
        let task = tokio::spawn(async move { writer.append(&records).await });
        Ok(Some(InFlight {
            batch,
            plan,
            head,
            task,
        }))
    }

    /// Finishes an append that was in flight: records the batch when the
    /// ledger acknowledged it, else processes it again from a reloaded head.
    /// Returns false when shutdown was requested during a retry.
    async fn land(
        &mut self,
        flight: InFlight,
        joined: Result<(), AppendError>,
        shutdown: &mut Pin<&mut Fuse<impl Future<Output = ()>>>,
    ) -> Result<bool, SequencerError> {
        match joined {
            Ok(()) => {
                self.record_batch(&flight.batch, &flight.plan)?;
                Ok(true)
            }
            Err(err) => {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, "append failed, reloading the ledger head");
                self.catch_up().await?;
                self.process_until_done(&flight.batch, shutdown).await
            }
        }
    }

    /// Purges intake below the cursor: those submissions are in the ledger or the rejected stream.
    async fn purge_processed_intake(&mut self) {
        let below = self.cursor + 1;
        if below <= self.purged_below.max(1) {
            return;
        }
        match self.intake.purge_below(below).await {
            Ok(purged) => {
                debug!(below, purged, "purged processed intake");
                self.purged_below = below;
            }
            Err(err) => {
                warn!(error = %err, below, "failed to purge processed intake, retrying later")
            }
        }
    }
}

/// A batch whose append runs in a task while the next batch is planned.
///
/// The next batch is chained onto `head` and de-duplicated against this
/// batch's ids. Nothing of the next batch is sent before this append is
/// acknowledged and recorded, so the order of effects is the same as without
/// pipelining: refusals, then records, then the index and cursor.
struct InFlight {
    batch: Vec<StoredMessage>,
    plan: Plan,
    /// Head once this batch is appended.
    head: ChainHead,
    task: tokio::task::JoinHandle<Result<(), AppendError>>,
}

impl InFlight {
    fn pending_ids(&self) -> HashMap<EventId, IndexEntry> {
        self.plan.entries.iter().copied().collect()
    }
}

/// Waits for the append in flight.
async fn wait_for_append(flight: &mut InFlight) -> Result<(), AppendError> {
    match (&mut flight.task).await {
        Ok(result) => result,
        Err(join_error) => Err(AppendError::Unknown(format!(
            "append task failed: {join_error}"
        ))),
    }
}

/// Waits for the append in flight, if any; never completes when there is none.
async fn wait_for_in_flight(in_flight: &mut Option<InFlight>) -> Result<(), AppendError> {
    match in_flight {
        Some(flight) => wait_for_append(flight).await,
        None => std::future::pending().await,
    }
}

fn intake_error(action: &'static str, err: impl std::fmt::Display) -> SequencerError {
    SequencerError::Intake {
        action,
        detail: err.to_string(),
    }
}
