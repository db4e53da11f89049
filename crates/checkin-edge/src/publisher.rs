//! The publisher: moves outbox entries to intake.
//!
//! Each entry is published with `Nats-Msg-Id` set to its event id and a
//! digest of its bytes, so a resend of the same bytes is dropped by JetStream
//! within the duplicate window and by the sequencer's dedupe index after it.
//! At most `window` publishes await their acknowledgement (PubAck) at once.
//! An entry leaves the outbox only after its PubAck arrived. A failed or
//! timed-out publish is retried after an exponential back-off with jitter,
//! so that an unreachable server is not flooded.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, publish::PublishAck};
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
    /// Maximum publishes awaiting a PubAck at once.
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
    /// Failed publishes that were scheduled again.
    pub retries: u64,
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
        }
    }
}

/// Error that stops the publisher. Network failures never do: they are retried.
pub type PublisherError = OutboxError;

type AckOutcome = (OutboxEntry, Result<PublishAck, String>);
type AckFuture = Pin<Box<dyn Future<Output = AckOutcome> + Send>>;

/// Publishes an outbox to intake; see the module docs.
pub struct Publisher {
    js: jetstream::Context,
    outbox: Outbox,
    config: PublisherConfig,
    metrics: Arc<PublisherMetrics>,
    jitter: ChaCha8Rng,
}

impl Publisher {
    /// Builds a publisher of `outbox` over a JetStream context.
    pub fn new(js: jetstream::Context, outbox: Outbox, config: PublisherConfig) -> Self {
        let jitter = ChaCha8Rng::seed_from_u64(config.jitter_seed);
        let metrics = Arc::new(PublisherMetrics::default());
        metrics.queued.store(outbox.len() as u64, Ordering::Relaxed);
        Self {
            js,
            outbox,
            config,
            metrics,
            jitter,
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
        // Failed entries by key, published again (oldest first) once the back-off ends.
        let mut retry: BTreeMap<u64, OutboxEntry> = BTreeMap::new();
        // Every outbox key up to the cursor is in flight, in `retry` or removed.
        let mut cursor: Option<u64> = None;
        let mut failures: u32 = 0;
        let mut resume_at = Instant::now();
        let mut last_flush = Instant::now();

        loop {
            if Instant::now() >= resume_at {
                while in_flight.len() < self.config.window {
                    let entry = match retry.pop_first() {
                        Some((_, entry)) => entry,
                        None => {
                            let Some(entry) = self.outbox.entries_after(cursor, 1)?.pop() else {
                                break;
                            };
                            cursor = Some(entry.key);
                            entry
                        }
                    };
                    in_flight.push(self.publish(entry));
                }
            }
            self.record_gauges(in_flight.len());

            if draining && in_flight.is_empty() && retry.is_empty() && self.outbox.is_empty() {
                self.outbox.flush().await?;
                return Ok(());
            }

            let backing_off = !retry.is_empty() && Instant::now() < resume_at;
            tokio::select! {
                () = &mut input_done, if !draining => draining = true,
                () = &mut shutdown => {
                    self.outbox.flush().await?;
                    info!(in_flight = in_flight.len(), "publisher stopped");
                    return Ok(());
                }
                Some((entry, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    match outcome {
                        Ok(ack) => {
                            self.outbox.remove(entry.key)?;
                            self.metrics.acked.fetch_add(1, Ordering::Relaxed);
                            if ack.duplicate {
                                self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            failures = 0;
                        }
                        Err(error) => {
                            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                            // Failures that end in one round of publishes raise the back-off once.
                            if Instant::now() >= resume_at {
                                failures = failures.saturating_add(1);
                                let delay = self.backoff(failures);
                                resume_at = Instant::now() + delay;
                                warn!(event_id = %entry.id, %error, attempt = failures, delay_ms = delay.as_millis() as u64, "failed to publish to intake, retrying");
                            } else {
                                debug!(event_id = %entry.id, %error, "failed to publish to intake, retrying");
                            }
                            retry.insert(entry.key, entry);
                        }
                    }
                }
                () = tokio::time::sleep_until(resume_at), if backing_off => {}
                () = self.outbox.enqueued(), if in_flight.len() < self.config.window => {}
                // Entries enqueued by another process sharing the files are noticed by polling.
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }

            if last_flush.elapsed() >= self.config.flush_interval {
                self.outbox.flush().await?;
                last_flush = Instant::now();
            }
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
                Ok(result) => result,
                Err(_) => Err(format!("no PubAck within {} ms", timeout.as_millis())),
            };
            (entry, outcome)
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
