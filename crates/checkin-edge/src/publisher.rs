//! The publisher: moves outbox entries to intake.
//!
//! Each entry is published with `Nats-Msg-Id` set to its event id and a
//! digest of its bytes, so a resend of the same bytes is dropped by JetStream
//! within the duplicate window and by the sequencer's dedupe index after it.
//! At most `window` entries await their acknowledgement (PubAck) at once.
//!
//! A backlog goes as JetStream atomic batches of up to 1000 entries of one
//! subject, which intake stores with one write each. The duplicate window
//! still applies to every message in a batch. An entry leaves the outbox only
//! after its PubAck, or the acknowledgement of its batch, arrived, and
//! acknowledged entries leave in sled batches. A failed or timed-out publish
//! is retried after an exponential back-off with jitter, so that an
//! unreachable server is not flooded.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use checkin_ledger::writer::{BatchReply, MAX_ATOMIC_BATCH, send_atomic_batch};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::outbox::{Outbox, OutboxEntry, OutboxError};

/// Publisher settings.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Maximum entries awaiting a PubAck at once, counting each entry of an
    /// atomic batch.
    pub window: usize,
    /// How long a publish may wait for its PubAck before it counts as failed.
    pub ack_timeout: Duration,
    /// Back-off after the first failure; it doubles with each further failure.
    pub backoff_initial: Duration,
    /// Upper bound of the back-off.
    pub backoff_max: Duration,
    /// Seed of the jitter, which spreads the retries of many devices apart.
    pub jitter_seed: u64,
    /// How often acknowledged removals are flushed to disk.
    pub flush_interval: Duration,
    /// Maximum entries sent as one JetStream atomic batch, at most 1000; 0 or 1
    /// publishes every entry on its own. Intake stores a batch with one write
    /// (one disk sync on a server with `sync_interval: always`).
    pub atomic_batch: usize,
    /// Maximum payload bytes in one atomic batch, because the server keeps a
    /// batch in memory until its commit.
    pub atomic_batch_bytes: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            window: 256,
            ack_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            jitter_seed: 0,
            flush_interval: Duration::from_millis(500),
            atomic_batch: MAX_ATOMIC_BATCH,
            atomic_batch_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Counters the caller can read while the publisher runs.
#[derive(Debug, Default)]
pub struct PublisherMetrics {
    queued: AtomicU64,
    in_flight: AtomicU64,
    acked: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    batches: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Entries in the outbox, including those in flight.
    pub queued: u64,
    /// Publishes awaiting their PubAck.
    pub in_flight: u64,
    /// Entries acknowledged by intake and removed from the outbox.
    pub acked: u64,
    /// Acknowledged entries that JetStream reported as duplicates of an
    /// earlier publish within its duplicate window.
    pub duplicates: u64,
    /// Failed publishes that were scheduled again, counting each entry of a
    /// failed atomic batch.
    pub retries: u64,
    /// Atomic batches that intake committed.
    pub batches: u64,
}

impl PublisherMetrics {
    /// Returns the current counter values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}

/// Error that stops the publisher. Network failures never do: they are retried.
pub type PublisherError = OutboxError;

/// Intake's reply to one publish or one atomic batch.
enum Outcome {
    /// Intake stored every entry; `duplicates` of them were dropped by its
    /// duplicate window.
    Acked { duplicates: u64 },
    /// Intake rejected the atomic batch for a reason that single publishes
    /// avoid. `disable` turns atomic batches off for the rest of the run.
    Unbatch { reason: String, disable: bool },
    /// The publish failed or timed out; the entries are retried after a back-off.
    Failed(String),
}

type AckFuture = Pin<Box<dyn Future<Output = (Vec<OutboxEntry>, Outcome)> + Send>>;

/// JetStream error code: atomic publish is disabled on the stream.
const ATOMIC_PUBLISH_DISABLED: u64 = 10174;
/// JetStream error code: the atomic batch contains a message id that the
/// stream already contains within its duplicate window (or twice).
const ATOMIC_PUBLISH_DUPLICATE_ID: u64 = 10201;
/// JetStream error code: the atomic batch uses a header the server does not
/// support in batches.
const ATOMIC_PUBLISH_UNSUPPORTED_HEADER: u64 = 10177;
/// JetStream error code: the stream already has its maximum of atomic
/// batches open (50 per stream in nats-server 2.12), as when many devices
/// send their backlogs at once.
const ATOMIC_PUBLISH_TOO_MANY_INFLIGHT: u64 = 10210;

/// Publishes an outbox to intake; see the module docs.
pub struct Publisher {
    js: jetstream::Context,
    outbox: Outbox,
    config: PublisherConfig,
    metrics: Arc<PublisherMetrics>,
    jitter: ChaCha8Rng,
    /// Cleared when intake rejected atomic batches as disabled or unsupported.
    batching: bool,
}

impl Publisher {
    /// Builds a publisher of `outbox` over a JetStream context.
    pub fn new(js: jetstream::Context, outbox: Outbox, config: PublisherConfig) -> Self {
        let jitter = ChaCha8Rng::seed_from_u64(config.jitter_seed);
        let metrics = Arc::new(PublisherMetrics::default());
        metrics.queued.store(outbox.len() as u64, Ordering::Relaxed);
        let batching = config.atomic_batch > 1;
        Self {
            js,
            outbox,
            config,
            metrics,
            jitter,
            batching,
        }
    }

    /// Returns the counters, shared with the running publisher.
    pub fn metrics(&self) -> Arc<PublisherMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Publishes entries as they are enqueued until `shutdown` completes.
    ///
    /// # Cancel safety
    ///
    /// Stopping (by `shutdown` or by dropping the future) loses nothing:
    /// entries whose PubAck had not arrived stay in the outbox and are
    /// published again by the next run.
    ///
    /// # Errors
    ///
    /// Only outbox storage failures; network failures are retried.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), PublisherError> {
        self.publish_until(shutdown, std::future::pending()).await
    }

    /// Publishes entries as they are enqueued and, once `input_done`
    /// completes, returns when the outbox is empty and every publish was
    /// acknowledged. Suits a producer that enqueues while this publishes.
    ///
    /// # Errors
    ///
    /// Only outbox storage failures; network failures are retried.
    pub async fn run_until_drained(
        &mut self,
        input_done: impl Future<Output = ()>,
    ) -> Result<(), PublisherError> {
        self.publish_until(std::future::pending(), input_done).await
    }

    /// Publishes until the outbox is empty and every publish was acknowledged.
    ///
    /// While the server is unreachable this keeps retrying; wrap it in a
    /// timeout to give up.
    ///
    /// # Errors
    ///
    /// Only outbox storage failures; network failures are retried.
    pub async fn drain(&mut self) -> Result<(), PublisherError> {
        self.publish_until(std::future::pending(), std::future::ready(()))
            .await
    }

    /// Publishes until `shutdown` completes, or until the outbox is empty
    /// once `input_done` has completed.
    async fn publish_until(
        &mut self,
        shutdown: impl Future<Output = ()>,
        input_done: impl Future<Output = ()>,
    ) -> Result<(), PublisherError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut input_done = std::pin::pin!(input_done.fuse());
        let mut draining = false;
        let mut in_flight: FuturesUnordered<AckFuture> = FuturesUnordered::new();
        // Entries in flight; an atomic batch counts each of its entries.
        let mut in_flight_entries = 0usize;
        // Failed entries by key, published again (oldest first) once the back-off ends.
        let mut retry: BTreeMap<u64, OutboxEntry> = BTreeMap::new();
        // Entries of rejected atomic batches, published again one by one at once.
        let mut singles: Vec<OutboxEntry> = Vec::new();
        // Every outbox key up to the cursor is in flight, in `retry`, in
        // `singles` or removed.
        let mut cursor: Option<u64> = None;
        let mut failures: u32 = 0;
        let mut resume_at = Instant::now();
        let mut last_flush = Instant::now();

        loop {
            for entry in singles.drain(..) {
                in_flight_entries += 1;
                in_flight.push(self.publish(entry));
            }
            if Instant::now() >= resume_at && in_flight_entries < self.config.window {
                let free = self.config.window - in_flight_entries;
                let mut ready: Vec<OutboxEntry> = Vec::with_capacity(free.min(4096));
                while ready.len() < free {
                    let Some((_, entry)) = retry.pop_first() else {
                        break;
                    };
                    ready.push(entry);
                }
                if ready.len() < free {
                    let fresh = self.outbox.entries_after(cursor, free - ready.len())?;
                    if let Some(last) = fresh.last() {
                        cursor = Some(last.key);
                    }
                    ready.extend(fresh);
                }
                in_flight_entries += ready.len();
                self.dispatch(ready, &mut in_flight);
            }
            self.record_gauges(in_flight_entries);

            if draining && in_flight.is_empty() && retry.is_empty() && self.outbox.is_empty() {
                self.outbox.flush().await?;
                return Ok(());
            }

            let backing_off = !retry.is_empty() && Instant::now() < resume_at;
            tokio::select! {
                () = &mut input_done, if !draining => draining = true,
                () = &mut shutdown => {
                    self.outbox.flush().await?;
                    info!(in_flight = in_flight_entries, "publisher stopped");
                    return Ok(());
                }
                Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                    // Take every outcome that is already in, so that their
                    // removals go to sled as one batch.
                    let mut outcomes = vec![first];
                    while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                        outcomes.push(outcome);
                    }
                    let mut acked: Vec<u64> = Vec::new();
                    for (entries, outcome) in outcomes {
                        in_flight_entries -= entries.len();
                        match outcome {
                            Outcome::Acked { duplicates } => {
                                if entries.len() > 1 {
                                    self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                                }
                                acked.extend(entries.iter().map(|entry| entry.key));
                                self.metrics.duplicates.fetch_add(duplicates, Ordering::Relaxed);
                                failures = 0;
                            }
                            Outcome::Unbatch { reason, disable } => {
                                debug!(entries = entries.len(), %reason, "intake rejected an atomic batch, publishing its entries one by one");
                                if disable && self.batching {
                                    self.batching = false;
                                    info!(%reason, "intake rejects atomic batches, publishing one by one");
                                }
                                singles.extend(entries);
                            }
                            Outcome::Failed(error) => {
                                self.metrics.retries.fetch_add(entries.len() as u64, Ordering::Relaxed);
                                let first_id = entries.first().map(|entry| entry.id.clone()).unwrap_or_default();
                                // Failures that end in one round of publishes raise the back-off once.
                                if Instant::now() >= resume_at {
                                    failures = failures.saturating_add(1);
                                    let delay = self.backoff(failures);
                                    resume_at = Instant::now() + delay;
                                    warn!(event_id = %first_id, entries = entries.len(), %error, attempt = failures, delay_ms = delay.as_millis() as u64, "failed to publish to intake, retrying");
                                } else {
                                    debug!(event_id = %first_id, entries = entries.len(), %error, "failed to publish to intake, retrying");
                                }
                                retry.extend(entries.into_iter().map(|entry| (entry.key, entry)));
                            }
                        }
                    }
                    if !acked.is_empty() {
                        self.outbox.remove_batch(&acked)?;
                        self.metrics.acked.fetch_add(acked.len() as u64, Ordering::Relaxed);
                    }
                }
                () = tokio::time::sleep_until(resume_at), if backing_off => {}
                () = self.outbox.enqueued(), if in_flight_entries < self.config.window => {}
                // Entries enqueued by another process sharing the files are noticed by polling.
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }

            if last_flush.elapsed() >= self.config.flush_interval {
                self.outbox.flush().await?;
                last_flush = Instant::now();
            }
        }
    }

    /// Sends `entries`: runs of the same subject as atomic batches while
    /// intake takes them, everything else one publish each.
    fn dispatch(&self, entries: Vec<OutboxEntry>, in_flight: &mut FuturesUnordered<AckFuture>) {
        if !self.batching {
            for entry in entries {
                in_flight.push(self.publish(entry));
            }
            return;
        }

        let mut batch: Vec<OutboxEntry> = Vec::new();
        let mut batch_bytes = 0usize;
        for entry in entries {
            let full = batch.len() >= self.config.atomic_batch
                || batch_bytes + entry.payload.len() > self.config.atomic_batch_bytes
                || batch
                    .first()
                    .is_some_and(|first| first.subject != entry.subject);
            if full {
                in_flight.push(self.publish_batch(std::mem::take(&mut batch)));
                batch_bytes = 0;
            }
            batch_bytes += entry.payload.len();
            batch.push(entry);
        }
        if !batch.is_empty() {
            in_flight.push(self.publish_batch(batch));
        }
    }

    /// Sends one publish and returns a future of its PubAck, bounded by the ack timeout.
    fn publish(&self, entry: OutboxEntry) -> AckFuture {
        let js = self.js.clone();
        let timeout = self.config.ack_timeout;
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", entry.message_id().as_str());
            let attempt = async {
                let ack = js
                    .publish_with_headers(entry.subject.subject(), headers, entry.payload.clone())
                    .await
                    .map_err(|err| err.to_string())?;
                ack.await.map_err(|err| err.to_string())
            };
            let outcome = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(ack)) => Outcome::Acked {
                    duplicates: u64::from(ack.duplicate),
                },
                Ok(Err(error)) => Outcome::Failed(error),
                Err(_) => Outcome::Failed(format!("no PubAck within {} ms", timeout.as_millis())),
            };
            (vec![entry], outcome)
        })
    }

    /// Sends entries of one subject as one atomic batch (nats-server 2.12+),
    /// so that intake stores them all with one write, or none of them.
    ///
    /// Every message keeps its `Nats-Msg-Id`. JetStream rejects a whole batch
    /// that contains an id it already stores, as after a lost acknowledgement.
    /// Then, and when the server ignored the batch headers, the entries go
    /// again one by one, and the duplicate window drops each stored copy.
    fn publish_batch(&self, entries: Vec<OutboxEntry>) -> AckFuture {
        if entries.len() == 1 {
            let entry = entries.into_iter().next().expect("one entry");
            return self.publish(entry);
        }
        let client = self.js.client();
        let timeout = self.config.ack_timeout;
        Box::pin(async move {
            let subject = entries[0].subject.subject();
            let messages = entries
                .iter()
                .map(|entry| {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", entry.message_id().as_str());
                    (headers, entry.payload.clone())
                })
                .collect();
            let outcome = match send_atomic_batch(&client, subject, messages, None, timeout).await {
                Err(error) => Outcome::Failed(error.to_string()),
                Ok(reply) => batch_outcome(&reply, entries.len()),
            };
            (entries, outcome)
        })
    }

    /// Returns the delay before the next round after `failures` failed rounds:
    /// the initial back-off doubled per failure, capped, times a random factor
    /// in [0.5, 1.0).
    fn backoff(&mut self, failures: u32) -> Duration {
        let doubled = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let capped = doubled.min(self.config.backoff_max);
        capped.mul_f64(self.jitter.random_range(0.5..1.0))
    }

    fn record_gauges(&self, in_flight: usize) {
        self.metrics
            .queued
            .store(self.outbox.len() as u64, Ordering::Relaxed);
        self.metrics
            .in_flight
            .store(in_flight as u64, Ordering::Relaxed);
    }
}

/// Classifies the reply to an atomic batch of `len` entries.
fn batch_outcome(reply: &BatchReply, len: usize) -> Outcome {
    if reply.committed(len) {
        return Outcome::Acked { duplicates: 0 };
    }
    let Some(error) = &reply.error else {
        // A server before 2.12 stored the messages one by one: those that
        // arrived are dropped as duplicates when they are sent again.
        return Outcome::Unbatch {
            reason: format!(
                "reply without the batch id {}: seq {}, count {:?}",
                reply.expected_batch, reply.seq, reply.count
            ),
            disable: true,
        };
    };
    let reason = format!("{} (code {})", error.description, error.err_code);
    match error.err_code {
        ATOMIC_PUBLISH_DUPLICATE_ID | ATOMIC_PUBLISH_TOO_MANY_INFLIGHT => Outcome::Unbatch {
            reason,
            disable: false,
        },
        ATOMIC_PUBLISH_DISABLED | ATOMIC_PUBLISH_UNSUPPORTED_HEADER => Outcome::Unbatch {
            reason,
            disable: true,
        },
        _ => Outcome::Failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn publisher(config: PublisherConfig) -> (tempfile::TempDir, Publisher) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        // A client that never connects: only the back-off arithmetic is used here.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        (dir, Publisher::new(jetstream::new(client), outbox, config))
    }

    fn reply(batch: Option<&str>, count: Option<u64>, err_code: Option<u64>) -> BatchReply {
        BatchReply {
            seq: 10,
            count,
            batch: batch.map(str::to_string),
            error: err_code.map(|err_code| checkin_ledger::writer::ApiError {
                err_code,
                description: "test".into(),
            }),
            expected_batch: "b1".into(),
        }
    }

    #[test]
    fn batch_outcome_by_reply() {
        let acked = |outcome| matches!(outcome, Outcome::Acked { duplicates: 0 });
        let unbatch = |outcome, expected: bool| matches!(outcome, Outcome::Unbatch { disable, .. } if disable == expected);
        let failed = |outcome| matches!(outcome, Outcome::Failed(_));

        assert!(acked(batch_outcome(&reply(Some("b1"), Some(3), None), 3)));
        assert!(acked(batch_outcome(&reply(Some("b1"), None, None), 3)));
        // Another count or batch id, or none at all: not committed as one batch.
        assert!(unbatch(
            batch_outcome(&reply(Some("b1"), Some(2), None), 3),
            true
        ));
        assert!(unbatch(
            batch_outcome(&reply(Some("b2"), Some(3), None), 3),
            true
        ));
        assert!(unbatch(batch_outcome(&reply(None, None, None), 3), true));
        assert!(unbatch(
            batch_outcome(&reply(None, None, Some(10201)), 3),
            false
        ));
        assert!(unbatch(
            batch_outcome(&reply(None, None, Some(10210)), 3),
            false
        ));
        assert!(unbatch(
            batch_outcome(&reply(None, None, Some(10174)), 3),
            true
        ));
        assert!(unbatch(
            batch_outcome(&reply(None, None, Some(10177)), 3),
            true
        ));
        // Any other error, such as a failed sequence fence (10071), is retried after a back-off.
        assert!(failed(batch_outcome(&reply(None, None, Some(10071)), 3)));
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_the_cap() {
        let config = PublisherConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1_000),
            ..PublisherConfig::default()
        };
        let (_dir, mut publisher) = publisher(config).await;
        let bounds = [(1, 50, 100), (2, 100, 200), (3, 200, 400), (4, 400, 800)];
        for (failures, low, high) in bounds {
            let delay = publisher.backoff(failures).as_millis();
            assert!(
                (low..high).contains(&delay),
                "failure {failures}: {delay} ms"
            );
        }
        let capped = publisher.backoff(30).as_millis();
        assert!((500..1_000).contains(&capped), "capped: {capped} ms");
    }
}
