//! `checkin simulate`: sends a seeded plan of synthetic check-ins through
//! one outbox and publisher per device.
//!
//! A device that is offline for part of the run keeps capturing: its
//! submissions wait in its outbox and are published when it comes back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use checkin_edge::simulate::{self, SITES, SimulationConfig, SimulationPlan};
use checkin_edge::{IntakeSubject, Outbox, Publisher, PublisherConfig};
use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;

/// Submissions due for one device outbox: subject, event id and bytes.
type DueEntries<'a> = Vec<(IntakeSubject, &'a str, &'a [u8])>;

/// How often the producer hands due submissions to the device outboxes.
const TICK: Duration = Duration::from_millis(50);

/// Checks that every simulated site is configured, so that only the
/// deliberate defects are rejected.
pub fn check_sites(config: &Config) -> anyhow::Result<()> {
    let missing: Vec<&str> = SITES
        .iter()
        .map(|site| site.id)
        .filter(|id| !config.sites.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the simulated sites {} are not configured; add them under [sites] in checkin.toml (see the one in the repository)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Parses a duration such as `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}; use a form like 30s, 5m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?}; use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("duration {text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub async fn run(
    client: async_nats::Client,
    config: SimulationConfig,
    outbox_dir: PathBuf,
) -> anyhow::Result<ExitCode> {
    let plan = simulate::plan(&config);
    let db = sled::open(&outbox_dir)
        .with_context(|| format!("failed to open the outbox {}", outbox_dir.display()))?;
    let js = async_nats::jetstream::new(client);

    let start = Instant::now();
    let sent = send_plan(&js, &db, &plan, config.seed, std::future::pending()).await?;
    print_summary(&plan, sent.acked, sent.retries, start.elapsed())?;
    Ok(ExitCode::SUCCESS)
}

/// Counts of one sent plan, summed over its devices.
#[derive(Clone, Copy, Debug, Default)]
pub struct SentCounts {
    /// Submissions that intake acknowledged.
    pub acked: u64,
    /// Publishes that were retried.
    pub retries: u64,
}

/// Sends `plan` through one outbox per device (trees of `db`) and returns
/// once every device outbox is drained, or as soon as `stop` completes.
///
/// Stopping early loses nothing: unsent submissions stay in the outboxes,
/// and the next publisher of the same device sends them.
pub async fn send_plan(
    js: &async_nats::jetstream::Context,
    db: &sled::Db,
    plan: &SimulationPlan,
    seed: u64,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<SentCounts> {
    let mut outboxes = Vec::new();
    for device in &plan.devices {
        let outbox = Outbox::open_tree(db, &device.id)
            .with_context(|| format!("failed to open the outbox of device {}", device.id))?;
        outboxes.push(outbox);
    }

    let start = Instant::now();
    let (done, done_signal) = watch::channel(false);
    let (stopping, stop_signal) = watch::channel(false);
    let mut devices = Vec::new();
    for (index, device) in plan.devices.iter().enumerate() {
        let publisher = Publisher::new(
            js.clone(),
            outboxes[index].clone(),
            PublisherConfig {
                window: 64,
                jitter_seed: seed ^ index as u64,
                ..PublisherConfig::default()
            },
        );
        let offline = device.offline;
        let done = done_signal.clone();
        let stop = stop_signal.clone();
        devices.push(tokio::spawn(async move {
            // The publisher is cancel safe, so dropping it on stop loses nothing.
            tokio::select! {
                result = run_device(publisher, start, offline, done) => result.map(Some),
                _ = wait_for_true(stop) => Ok(None),
            }
        }));
    }

    // Fused, so that polling it again after it fired stays pending instead of panicking.
    let mut stop = std::pin::pin!(stop.fuse());
    tokio::select! {
        result = produce(plan, &outboxes, start) => {
            result?;
            let _ = done.send(true);
        }
        _ = &mut stop => {
            let _ = stopping.send(true);
        }
    }

    let mut sent = SentCounts::default();
    for device in devices {
        let finished = tokio::select! {
            result = device => result.context("a device task panicked")??,
            _ = &mut stop => {
                let _ = stopping.send(true);
                None
            }
        };
        if let Some(metrics) = finished {
            sent.acked += metrics.acked;
            sent.retries += metrics.retries;
        }
    }
    Ok(sent)
}

async fn wait_for_true(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|set| *set).await;
}

/// Enqueues each submission into its device's outbox once its send time comes.
async fn produce(plan: &SimulationPlan, outboxes: &[Outbox], start: Instant) -> anyhow::Result<()> {
    let mut next = 0;
    let mut ticker = tokio::time::interval(TICK);
    while next < plan.submissions.len() {
        ticker.tick().await;
        let elapsed = start.elapsed();
        let mut due: BTreeMap<usize, DueEntries<'_>> = BTreeMap::new();
        while let Some(submission) = plan.submissions.get(next) {
            if submission.send_after > elapsed {
                break;
            }
            due.entry(submission.device).or_default().push((
                IntakeSubject::Live,
                submission.id.as_str(),
                submission.payload.as_slice(),
            ));
            next += 1;
        }
        for (device, entries) in due {
            outboxes[device]
                .enqueue_batch(entries)
                .await
                .context("failed to write to a device outbox")?;
        }
    }
    Ok(())
}

/// Publishes a device's outbox, pausing while the device is offline, until
/// the producer is done and the outbox is empty.
async fn run_device(
    mut publisher: Publisher,
    start: Instant,
    offline: Option<(Duration, Duration)>,
    mut done: watch::Receiver<bool>,
) -> anyhow::Result<checkin_edge::MetricsSnapshot> {
    if let Some((from, until)) = offline {
        publisher
            .run(tokio::time::sleep_until(start + from))
            .await
            .context("failed to publish from a device outbox")?;
        tracing::info!(
            from_s = from.as_secs_f64(),
            until_s = until.as_secs_f64(),
            "device offline"
        );
        tokio::time::sleep_until(start + until).await;
    }
    publisher
        .run_until_drained(async move {
            let _ = done.wait_for(|finished| *finished).await;
        })
        .await
        .context("failed to publish from a device outbox")?;
    Ok(publisher.metrics().snapshot())
}

fn print_summary(
    plan: &SimulationPlan,
    acked: u64,
    retries: u64,
    elapsed: Duration,
) -> std::io::Result<()> {
    let offline = plan
        .devices
        .iter()
        .filter(|device| device.offline.is_some())
        .count();
    outln!("sent / 已发送:                  {}", plan.submissions.len())?;
    outln!("invalid sent / 无效提交:        {}", plan.invalid())?;
    outln!("double scans / 重复扫码:        {}", plan.double_scans())?;
    outln!("late uploads / 延迟上传:        {}", plan.late_uploads())?;
    outln!(
        "devices offline / 离线设备:     {offline} of {}",
        plan.devices.len()
    )?;
    outln!("acknowledged / 已确认:          {acked} (retries / 重试 {retries})")?;
    outln!(
        "elapsed / 用时:                 {:.1} s",
        elapsed.as_secs_f64()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let cases = [
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            ("90", 90.0),
            ("1.5s", 1.5),
            ("250ms", 0.25),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text).unwrap().as_secs_f64(),
                seconds,
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_are_rejected() {
        for text in ["", "s", "0s", "-5s", "5 days", "abc"] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
    }
}
