//! `checkin up --demo`: simulated traffic inside the running stack, so that
//! the query API shows data at once.
//!
//! The first round backfills four weeks of history in a few seconds. Live
//! rounds follow at [`LIVE_RATE`] check-ins per second, each with its own
//! seed, until the stack stops. Each round is a plan of
//! [`checkin_edge::simulate`], sent through the device outboxes under
//! `DATA_DIR/outbox/demo` as `checkin simulate` sends it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use checkin_edge::simulate::{self, SimulationConfig, SimulationPlan};
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{Instrument, info, info_span};

/// Devices of the demo, spread over the three demo sites.
const DEVICES: usize = 6;
/// Customers of the demo.
const CUSTOMERS: usize = 200;
/// Days of history the backfill round spans, within the 35-day live horizon.
const BACKFILL_DAYS: u32 = 28;
/// Submissions of the backfill round, sent over [`BACKFILL_DURATION`].
const BACKFILL_RATE: f64 = 200.0;
const BACKFILL_DURATION: Duration = Duration::from_secs(10);
/// Check-ins per second after the backfill.
pub const LIVE_RATE: f64 = 20.0;
/// Length of one live round. The check-in times of a round span the day before it starts.
const LIVE_ROUND: Duration = Duration::from_secs(300);
/// Share of submissions that are invalid on purpose, as in `checkin simulate`.
const INVALID_SHARE: f64 = 0.02;

/// The first round's plan and the ids that the printed URLs use.
pub struct Backfill {
    plan: SimulationPlan,
    /// Seed of the backfill. Round `n` uses `seed + n`.
    pub seed: u64,
    /// A customer with check-ins in the backfill.
    pub customer: String,
    /// The site of that customer's first check-in.
    pub site: String,
    /// First Asia/Shanghai business date of the backfill.
    pub from: chrono::NaiveDate,
    /// Last business date: today in Asia/Shanghai.
    pub to: chrono::NaiveDate,
}

/// Plans the backfill round relative to `now`.
///
/// The seed is `now` in Unix seconds: a fixed seed would give a second demo
/// on the same data directory the same event ids with other check-in times,
/// which the sequencer rejects as `id_conflict`.
pub fn plan_backfill(now: DateTime<Utc>) -> anyhow::Result<Backfill> {
    let seed = now.timestamp().unsigned_abs();
    let settings = settings(seed, now, BACKFILL_RATE, BACKFILL_DURATION, BACKFILL_DAYS);
    let plan = simulate::plan(&settings);
    let first_valid = plan
        .submissions
        .iter()
        .find(|submission| submission.defect.is_none())
        .context("the demo backfill plan has no valid submission")?;
    let payload: serde_json::Value = serde_json::from_slice(&first_valid.payload)
        .context("failed to decode a planned demo submission")?;
    let field = |name: &str| {
        payload[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("a planned demo submission has no {name}"))
    };
    let shanghai = chrono_tz::Asia::Shanghai;
    let history = chrono::Duration::days(i64::from(BACKFILL_DAYS));
    Ok(Backfill {
        customer: field("customer")?,
        site: field("site")?,
        from: (now - history).with_timezone(&shanghai).date_naive(),
        to: now.with_timezone(&shanghai).date_naive(),
        plan,
        seed,
    })
}

/// Sends the backfill, then live rounds until `stop` turns true.
///
/// # Errors
///
/// Only outbox storage failures; network failures are retried by the
/// publishers.
pub async fn run(
    client: async_nats::Client,
    data_dir: &Path,
    backfill: Backfill,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let outbox_dir = data_dir.join("outbox").join("demo");
    let db = sled::open(&outbox_dir)
        .with_context(|| format!("failed to open the outbox {}", outbox_dir.display()))?;
    let js = async_nats::jetstream::new(client);

    let seed = backfill.seed;
    let mut plan = backfill.plan;
    let mut round: u64 = 0;
    loop {
        let span = info_span!("demo_round", round, submissions = plan.submissions.len());
        let sent = crate::simulate::send_plan(&js, &db, &plan, seed + round, stopped(&stop))
            .instrument(span)
            .await?;
        info!(
            round,
            acked = sent.acked,
            retries = sent.retries,
            "demo round sent"
        );
        if *stop.borrow() {
            return Ok(());
        }

        round += 1;
        let live = settings(seed + round, Utc::now(), LIVE_RATE, LIVE_ROUND, 1);
        plan = simulate::plan(&live);
    }
}

async fn stopped(stop: &watch::Receiver<bool>) {
    let mut stop = stop.clone();
    let _ = stop.wait_for(|stopping| *stopping).await;
}

fn settings(
    seed: u64,
    now: DateTime<Utc>,
    rate: f64,
    duration: Duration,
    history_days: u32,
) -> SimulationConfig {
    SimulationConfig {
        devices: DEVICES,
        customers: CUSTOMERS,
        rate,
        duration,
        seed,
        now,
        history_days,
        invalid_share: INVALID_SHARE,
    }
}

/// Prints where to look: query URLs, report commands and the audit command.
pub fn print_guide(
    backfill: &Backfill,
    listen: std::net::SocketAddr,
    cli_prefix: &str,
) -> std::io::Result<()> {
    let api = format!("http://{listen}");
    let Backfill {
        customer,
        site,
        from,
        to,
        ..
    } = backfill;
    outln!(
        "demo traffic: {BACKFILL_DAYS} days of history, then {LIVE_RATE} check-ins/s from {DEVICES} devices (seed {})",
        backfill.seed
    )?;
    outln!("  customer: {api}/v1/customers/{customer}")?;
    outln!("  site:     {api}/v1/sites/{site}/days?from={from}&to={to}")?;
    outln!("  segment:  {api}/v1/segments/active")?;
    outln!("  report:   {cli_prefix}query site {site} --from {from} --to {to}")?;
    outln!("            {cli_prefix}query segment active")?;
    outln!("            {cli_prefix}query customer {customer}")?;
    outln!("  audit:    {cli_prefix}audit verify")?;
    Ok(())
}
