//! `checkin bench`: throughput figures, each beside a raw JetStream baseline
//! measured in the same run on a fresh local nats-server.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use checkin_core::sites::SiteRegistry;
use checkin_edge::{IntakeSubject, Outbox, Publisher, PublisherConfig};
use checkin_ledger::sequencer::{Sequencer, SequencerConfig};
use checkin_ledger::topology::{self, INTAKE_LIVE, LEDGER_STREAM, TopologySettings};
use checkin_ledger::writer::{AppendMode, MAX_ATOMIC_BATCH, publish_atomic_batch};
use serde::Serialize;

use crate::nats_server::LocalServer;

/// Most publishes awaiting acknowledgement at once in the async baseline.
const PUBLISH_WINDOW: usize = 4096;

/// One figure, printed as a JSON line.
#[derive(Serialize)]
struct Figure {
    name: String,
    events: usize,
    seconds: f64,
    events_per_s: f64,
    baseline: String,
    baseline_events_per_s: f64,
    ratio: f64,
    peak_rss_mb: f64,
}

/// Prints one figure as a JSON line: the product's rate over `events` in
/// `seconds` beside a baseline rate measured in the same run.
fn print_figure(
    name: &str,
    events: usize,
    seconds: f64,
    baseline: &str,
    baseline_rate: f64,
) -> anyhow::Result<()> {
    let rate = events as f64 / seconds;
    let figure = Figure {
        name: name.into(),
        events,
        seconds,
        events_per_s: rate.round(),
        baseline: baseline.into(),
        baseline_events_per_s: baseline_rate.round(),
        ratio: (rate / baseline_rate * 1000.0).round() / 1000.0,
        peak_rss_mb: peak_rss_mb(),
    };
    outln!("{}", serde_json::to_string(&figure)?)?;
    Ok(())
}

/// Measures the sequencer in both durability modes beside raw publish baselines.
pub async fn sequencer(events: usize) -> anyhow::Result<()> {
    let payloads = submissions(events);
    let size = payloads.iter().map(Bytes::len).sum::<usize>() / payloads.len().max(1);
    eprintln!("{events} submissions of {size} bytes on average");

    for (sync_always, append_mode, name) in [
        (false, AppendMode::Atomic, "sequencer_fast"),
        (true, AppendMode::Atomic, "sequencer_durable"),
        (false, AppendMode::Pipelined, "sequencer_fast_pipelined"),
    ] {
        let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
        let server = LocalServer::start(scratch.path(), free_port()?, sync_always).await?;
        let client = async_nats::connect(&server.url).await?;

        let (baseline, baseline_rate) = if sync_always {
            (
                "raw_atomic_batch_publish",
                raw_atomic_batch(&client, &payloads).await?,
            )
        } else {
            (
                "raw_async_publish",
                raw_async_publish(&client, &payloads).await?,
            )
        };
        let seconds = run_sequencer(&client, &payloads, append_mode, scratch.path()).await?;

        print_figure(name, events, seconds, baseline, baseline_rate)?;
        drop(client);
        server.stop().await?;
    }
    Ok(())
}

/// Builds valid live check-ins spread over 1,000 customers and 20 sites.
fn submissions(events: usize) -> Vec<Bytes> {
    identified_submissions(events)
        .into_iter()
        .map(|(_, payload)| payload)
        .collect()
}

/// Builds the check-ins of [`submissions`], each with its event id.
fn identified_submissions(events: usize) -> Vec<(String, Bytes)> {
    let now = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset"));
    (0..events)
        .map(|index| {
            let at = now - chrono::Duration::seconds((index % 86_400) as i64);
            let id = uuid::Uuid::new_v4().to_string();
            let submission = serde_json::json!({
                "id": id,
                "customer": format!("customer-{:05}", index % 1000),
                "site": format!("site-{:02}", index % 20),
                "device": format!("kiosk-{:03}", index % 60),
                "at": at.to_rfc3339(),
                "method": "qr",
                "location": {"lat": 31.2304, "lon": 121.4737},
            });
            let payload = serde_json::to_vec(&submission).expect("submission serialises");
            (id, Bytes::from(payload))
        })
        .collect()
}

async fn raw_stream(js: &jetstream::Context, atomic: bool) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw".into()],
        storage: stream::StorageType::File,
        allow_atomic_publish: atomic,
        ..Default::default()
    })
    .await
    .context("failed to create the baseline stream")?;
    Ok(())
}

async fn raw_async_publish(client: &async_nats::Client, payloads: &[Bytes]) -> anyhow::Result<f64> {
    let js = jetstream::new(client.clone());
    raw_stream(&js, false).await?;

    let start = Instant::now();
    for window in payloads.chunks(PUBLISH_WINDOW) {
        let mut pending = Vec::with_capacity(window.len());
        for payload in window {
            pending.push(js.publish("bench.raw", payload.clone()).await?);
        }
        for ack in pending {
            ack.await?;
        }
    }
    let rate = payloads.len() as f64 / start.elapsed().as_secs_f64();
    js.delete_stream("BENCH_RAW").await?;
    Ok(rate)
}

async fn raw_atomic_batch(client: &async_nats::Client, payloads: &[Bytes]) -> anyhow::Result<f64> {
    let js = jetstream::new(client.clone());
    raw_stream(&js, true).await?;

    let start = Instant::now();
    for batch in payloads.chunks(MAX_ATOMIC_BATCH) {
        let messages = batch
            .iter()
            .map(|payload| (HeaderMap::new(), payload.clone()))
            .collect();
        publish_atomic_batch(client, "bench.raw", messages, None, Duration::from_secs(30)).await?;
    }
    let rate = payloads.len() as f64 / start.elapsed().as_secs_f64();
    js.delete_stream("BENCH_RAW").await?;
    Ok(rate)
}

/// Measures the device path to the ledger in both durability modes, each
/// beside the raw publish baseline of that mode.
///
/// The path is one edge [`Publisher`] draining an outbox of all the events
/// to intake while the sequencer appends them. The outbox is filled before
/// timing starts, so the figure covers publishing, sequencing and appending,
/// not the device's own outbox writes.
pub async fn ingest(events: usize) -> anyhow::Result<()> {
    let submissions = identified_submissions(events);
    let payloads: Vec<Bytes> = submissions
        .iter()
        .map(|(_, payload)| payload.clone())
        .collect();
    let size = payloads.iter().map(Bytes::len).sum::<usize>() / payloads.len().max(1);
    eprintln!("{events} submissions of {size} bytes on average");

    for (sync_always, name) in [(false, "ingest_fast"), (true, "ingest_durable")] {
        let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
        let server = LocalServer::start(scratch.path(), free_port()?, sync_always).await?;
        let client = async_nats::connect(&server.url).await?;

        let (baseline, baseline_rate) = if sync_always {
            (
                "raw_atomic_batch_publish",
                raw_atomic_batch(&client, &payloads).await?,
            )
        } else {
            (
                "raw_async_publish",
                raw_async_publish(&client, &payloads).await?,
            )
        };
        let seconds = run_ingest(&client, &submissions, scratch.path()).await?;

        print_figure(name, events, seconds, baseline, baseline_rate)?;
        drop(client);
        server.stop().await?;
    }
    Ok(())
}

/// Fills an outbox, starts the sequencer, then times one publisher from its
/// first publish until the ledger contains every submission.
async fn run_ingest(
    client: &async_nats::Client,
    submissions: &[(String, Bytes)],
    scratch: &std::path::Path,
) -> anyhow::Result<f64> {
    let config = SequencerConfig {
        ledger_name: "bench".into(),
        append_mode: AppendMode::Atomic,
        sites: SiteRegistry {
            allow_unknown_sites: true,
            ..SiteRegistry::default()
        },
        topology: TopologySettings::default(),
        ..SequencerConfig::default()
    };
    let js = jetstream::new(client.clone());
    topology::ensure_streams(&js, &config.topology).await?;
    let sequencer = Sequencer::start(client.clone(), config, &scratch.join("index")).await?;

    let outbox = Outbox::open(scratch.join("outbox")).context("failed to open the outbox")?;
    let entries = submissions
        .iter()
        .map(|(id, payload)| (IntakeSubject::Live, id.as_str(), payload.as_ref()));
    outbox
        .enqueue_batch(entries)
        .await
        .context("failed to fill the outbox")?;
    let mut publisher = Publisher::new(
        js.clone(),
        outbox,
        PublisherConfig {
            window: PUBLISH_WINDOW,
            // A synced server acknowledges a full window slowly, and a timeout
            // would only add resends.
            ack_timeout: Duration::from_secs(60),
            ..PublisherConfig::default()
        },
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sequencing = tokio::spawn(sequencer.run(async {
        let _ = stopped.await;
    }));
    let start = Instant::now();
    let publishing = tokio::spawn(async move {
        let drained = publisher.drain().await;
        (drained, start.elapsed())
    });

    let target = submissions.len() as u64 + 1;
    let mut ledger = js.get_stream(LEDGER_STREAM).await?;
    // Ledger records (genesis included) when the publisher finished.
    let mut at_drain: Option<u64> = None;
    loop {
        let last = ledger.info().await?.state.last_sequence;
        if at_drain.is_none() && publishing.is_finished() {
            at_drain = Some(last);
        }
        if last >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();

    let (drained, publish_time) = publishing.await?;
    drained.context("the edge publisher failed during the benchmark")?;
    // Shows whether the publisher or the sequencer is behind.
    let at_drain = at_drain.unwrap_or(target);
    eprintln!(
        "publisher drained the outbox in {:.2} s with {at_drain} ledger records, ledger complete in {seconds:.2} s",
        publish_time.as_secs_f64()
    );
    let _ = stop.send(());
    sequencing
        .await?
        .context("sequencer failed during the benchmark")?;
    Ok(seconds)
}

/// Preloads intake, then times the sequencer from start of run to the last record appended.
async fn run_sequencer(
    client: &async_nats::Client,
    payloads: &[Bytes],
    append_mode: AppendMode,
    scratch: &std::path::Path,
) -> anyhow::Result<f64> {
    let config = SequencerConfig {
        ledger_name: "bench".into(),
        append_mode,
        sites: SiteRegistry {
            allow_unknown_sites: true,
            ..SiteRegistry::default()
        },
        topology: TopologySettings::default(),
        ..SequencerConfig::default()
    };
    let js = jetstream::new(client.clone());
    topology::ensure_streams(&js, &config.topology).await?;
    let sequencer = Sequencer::start(client.clone(), config, &scratch.join("index")).await?;

    for window in payloads.chunks(PUBLISH_WINDOW) {
        let mut pending = Vec::with_capacity(window.len());
        for payload in window {
            pending.push(js.publish(INTAKE_LIVE, payload.clone()).await?);
        }
        for ack in pending {
            ack.await?;
        }
    }

    let target = payloads.len() as u64 + 1;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let start = Instant::now();
    let task = tokio::spawn(sequencer.run(async {
        let _ = stopped.await;
    }));
    let mut ledger = js.get_stream(LEDGER_STREAM).await?;
    loop {
        if ledger.info().await?.state.last_sequence >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();

    let _ = stop.send(());
    task.await?
        .context("sequencer failed during the benchmark")?;
    Ok(seconds)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Peak resident set size of this process in MiB, from /proc (Linux only; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    (kib / 1024.0 * 10.0).round() / 10.0
}

/// Builds a month of check-ins in time order, shaped like a chain of gyms:
/// 2,000 customers who mostly return to one of 20 sites, 3% double scans a
/// minute apart, 5% scans at another site and 1% uploaded two days late.
/// Deterministic, so runs compare.
fn history(events: usize) -> Vec<Bytes> {
    const MONTH_S: i64 = 30 * 86_400;
    // An hour back, so that double scans after the last check-in are not in the future.
    let end = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset"))
        - chrono::Duration::hours(1);
    let step_us = MONTH_S * 1_000_000 / events.max(1) as i64;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut previous: Option<(u64, i64)> = None;
    (0..events)
        .map(|index| {
            let roll = next() % 100;
            let mut offset_us = index as i64 * step_us - MONTH_S * 1_000_000;
            let customer = match previous {
                Some((customer, at)) if roll < 3 => {
                    offset_us = at + 60_000_000;
                    customer
                }
                _ => next() % 2000,
            };
            previous = Some((customer, offset_us));
            let site = if roll >= 95 {
                next() % 20
            } else {
                customer % 20
            };
            if roll == 50 {
                offset_us -= 2 * 86_400_000_000;
            }
            let at = end + chrono::Duration::microseconds(offset_us);
            let submission = serde_json::json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "customer": format!("customer-{customer:05}"),
                "site": format!("site-{site:02}"),
                "device": format!("kiosk-{:03}", site * 3 + index as u64 % 3),
                "at": at.to_rfc3339(),
                "method": "qr",
                "location": {"lat": 31.2304, "lon": 121.4737},
            });
            Bytes::from(serde_json::to_vec(&submission).expect("submission serialises"))
        })
        .collect()
}

/// Measures a rebuild of every read model from the ledger beside a raw
/// ordered-consumer read of the same ledger, on a fresh local server.
pub async fn project(events: usize) -> anyhow::Result<()> {
    use checkin_core::sites::SiteRegistry;
    use checkin_projections::activity::Activity;
    use checkin_projections::frequency::Frequency;
    use checkin_projections::runner::{Runner, Until};
    use checkin_projections::store::{Backend, ModelStore};
    use futures::StreamExt;

    let payloads = history(events);
    let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
    let server = LocalServer::start(scratch.path(), free_port()?, false).await?;
    let client = async_nats::connect(&server.url).await?;
    run_sequencer(&client, &payloads, AppendMode::Atomic, scratch.path()).await?;
    let js = jetstream::new(client.clone());
    let head = events as u64 + 1;

    let reader = checkin_ledger::reader::StreamReader::open(&js, LEDGER_STREAM).await?;
    let start = Instant::now();
    let mut records = reader.range(1, head).await?;
    let mut read = 0u64;
    while let Some(message) = records.next().await {
        message?;
        read += 1;
    }
    anyhow::ensure!(read == head, "read {read} of {head} ledger records");
    let baseline_rate = head as f64 / start.elapsed().as_secs_f64();

    let sites = SiteRegistry {
        allow_unknown_sites: true,
        ..SiteRegistry::default()
    };
    let models = scratch.path().join("models");
    let print = |name: &str, seconds: f64| {
        print_figure(
            name,
            head as usize,
            seconds,
            "raw_ordered_consumer_read",
            baseline_rate,
        )
    };

    // Each model alone, then all of them from one read as `checkin project`
    // runs them, in each engine.
    for backend in [Backend::Sled, Backend::Fjall] {
        let engine = backend.as_str();
        let dir = models.join(engine);
        let open =
            |name: &str| ModelStore::open_with(backend, &dir.join(format!("alone-{name}")), name);

        let mut runner =
            Runner::new(&js, open(Activity::NAME)?, Activity::new(sites.clone())).await?;
        let start = Instant::now();
        runner.run(Until::Seq(head), std::future::pending()).await?;
        runner.store().flush().await?;
        print(
            &format!("rebuild_activity_{engine}"),
            start.elapsed().as_secs_f64(),
        )?;

        let mut runner =
            Runner::new(&js, open(Frequency::NAME)?, Frequency::new(sites.clone())).await?;
        let start = Instant::now();
        runner.run(Until::Seq(head), std::future::pending()).await?;
        runner.store().flush().await?;
        print(
            &format!("rebuild_frequency_{engine}"),
            start.elapsed().as_secs_f64(),
        )?;

        let activity_store =
            ModelStore::open_with(backend, &dir.join(Activity::NAME), Activity::NAME)?;
        let frequency_store =
            ModelStore::open_with(backend, &dir.join(Frequency::NAME), Frequency::NAME)?;
        let mut runner = Runner::new(&js, activity_store, Activity::new(sites.clone()))
            .await?
            .with(frequency_store, Frequency::new(sites.clone()));
        let start = Instant::now();
        runner.run(Until::Seq(head), std::future::pending()).await?;
        for store in runner.stores() {
            store.flush().await?;
        }
        print(
            &format!("rebuild_all_models_{engine}"),
            start.elapsed().as_secs_f64(),
        )?;
    }

    drop(client);
    server.stop().await?;
    Ok(())
}

/// Measures `checkin audit verify` over a ledger of `events` check-ins beside
/// a raw ordered-consumer read of the same stream, on a fresh local server.
///
/// Each round reads the stream raw, then audits it, so that both see the
/// same server caches; two rounds show how much the figures vary.
pub async fn audit(events: usize) -> anyhow::Result<()> {
    use checkin_ledger::audit::Auditor;
    use checkin_ledger::reader::StreamReader;

    let payloads = submissions(events);
    let scratch = tempfile::tempdir().context("failed to create a scratch directory")?;
    let server = LocalServer::start(scratch.path(), free_port()?, false).await?;
    let client = async_nats::connect(&server.url).await?;
    run_sequencer(&client, &payloads, AppendMode::Atomic, scratch.path()).await?;
    let js = jetstream::new(client.clone());
    let head = events as u64 + 1;
    let reader = StreamReader::open(&js, LEDGER_STREAM).await?;

    for _round in 0..2 {
        let start = Instant::now();
        let read = raw_ordered_read(&js).await?;
        anyhow::ensure!(read == head, "read {read} of {head} ledger records");
        let baseline_rate = head as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        let progress = indicatif::ProgressBar::hidden();
        let report = crate::audit::audit_stream(&reader, Auditor::new(None), 0, progress).await?;
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.is_clean() && report.records == head,
            "the benchmark ledger did not verify: {} records, findings {:?}",
            report.records,
            report.findings
        );

        print_figure(
            "audit_verify",
            head as usize,
            seconds,
            "raw_ordered_consumer_read",
            baseline_rate,
        )?;
    }

    audit_archive(&js, &reader, head - 1, scratch.path()).await?;

    drop(client);
    server.stop().await?;
    Ok(())
}

/// Archives records 1 to `last` into segment files as `checkin archive`
/// does, without purging them from the stream, then measures `checkin audit
/// verify --archive` over the files alone, beside a raw ordered-consumer
/// read of the same ledger.
async fn audit_archive(
    js: &jetstream::Context,
    reader: &checkin_ledger::reader::StreamReader,
    last: u64,
    scratch: &std::path::Path,
) -> anyhow::Result<()> {
    use checkin_ledger::audit::Auditor;

    let dir = scratch.join("archive");
    std::fs::create_dir_all(&dir).context("failed to create the archive directory")?;
    let segments = write_archive(reader, last, &dir).await?;
    eprintln!(
        "archived seq 1 to {last} in {segments} segments of up to {} records",
        crate::archive::DEFAULT_SEGMENT_RECORDS
    );

    for _round in 0..2 {
        let start = Instant::now();
        let read = raw_ordered_read(js).await?;
        anyhow::ensure!(
            read == last + 1,
            "read {read} of {} ledger records",
            last + 1
        );
        let baseline_rate = read as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        let (auditor, archived) = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || crate::audit::audit_archive_dir(&dir, Auditor::new(None))
        })
        .await
        .context("the archive verifying thread panicked")??;
        let report = auditor.finish();
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.is_clean() && report.records == last && archived == last,
            "the benchmark archive did not verify: {} records, findings {:?}",
            report.records,
            report.findings
        );

        print_figure(
            "audit_archive",
            last as usize,
            seconds,
            "raw_ordered_consumer_read",
            baseline_rate,
        )?;
    }
    Ok(())
}

/// Writes records 1 to `last` of the ledger into committed segments of
/// [`crate::archive::DEFAULT_SEGMENT_RECORDS`] records; returns how many.
async fn write_archive(
    reader: &checkin_ledger::reader::StreamReader,
    last: u64,
    dir: &std::path::Path,
) -> anyhow::Result<u64> {
    use checkin_core::ChainHash;
    use checkin_ledger::archive::SegmentWriter;
    use futures::StreamExt;

    let mut records = reader.range(1, last).await?;
    let mut writer: Option<SegmentWriter> = None;
    let mut ledger_id = ChainHash::ZERO;
    let mut prev = ChainHash::ZERO;
    let mut segments = 0;
    while let Some(message) = records.next().await {
        let message = message?;
        let hash = message
            .hash_header()
            .with_context(|| format!("seq {} has no valid Checkin-Hash header", message.seq))?;
        if message.seq == 1 {
            ledger_id = hash;
        }
        let segment = match &mut writer {
            Some(segment) => segment,
            None => writer.insert(SegmentWriter::create(dir, message.seq, ledger_id, prev)?),
        };
        segment.push_message(&message)?;
        prev = hash;
        if segment.count() >= crate::archive::DEFAULT_SEGMENT_RECORDS {
            let full = writer.take().expect("a segment is open");
            full.finish()?.commit()?;
            segments += 1;
        }
    }
    if let Some(segment) = writer.take() {
        segment.finish()?.commit()?;
        segments += 1;
    }
    Ok(segments)
}

/// Reads every ledger message with an ordered consumer and drops it; returns the count.
async fn raw_ordered_read(js: &jetstream::Context) -> anyhow::Result<u64> {
    use async_nats::jetstream::consumer;
    use futures::StreamExt;

    let stream = js.get_stream(LEDGER_STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0u64;
    while let Some(message) = messages.next().await {
        let message = message?;
        read += 1;
        let pending = message.info().map_err(|err| anyhow::anyhow!(err))?.pending;
        if pending == 0 {
            break;
        }
    }
    Ok(read)
}
