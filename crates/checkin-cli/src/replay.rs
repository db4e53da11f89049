//! `checkin replay`: rebuilds read models from all of history into a fresh
//! data directory, verifying the chain as it reads.
//!
//! The models land where `checkin project` keeps them, under
//! `<into>/models/<ledger>/`, so `checkin --data-dir <into> query ...` and
//! `checkin --data-dir <into> project digest` read them like live ones.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use async_nats::jetstream;
use checkin_ledger::archive::ArchiveSet;
use checkin_ledger::reader::{MessageStream, ReadError, StreamReader};
use checkin_ledger::topology::LEDGER_STREAM;
use checkin_projections::activity::Activity;
use checkin_projections::frequency::Frequency;
use checkin_projections::runner::{Runner, Until};
use checkin_projections::spec::SpecProjection;
use checkin_projections::store::ModelStore;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::config::Config;
use crate::project::{models_dir, open_model};

/// A replay request: the models to build, the sources to read and where to stop.
pub struct ReplayRequest<'a> {
    /// Data directory that receives the models; it must not hold them yet.
    pub into: &'a Path,
    /// Built-in models to build: `activity`, `frequency`.
    pub projections: Vec<String>,
    /// Spec files whose models to build too.
    pub specs: Vec<PathBuf>,
    /// Last sequence to apply.
    pub to_seq: Option<u64>,
    /// Time, RFC 3339: apply only records the sequencer recorded by then.
    pub as_of: Option<String>,
    /// Directory of archive segments that hold the start of the ledger.
    pub archive: Option<PathBuf>,
    /// Print the digests as JSON lines.
    pub json: bool,
}

/// Runs a replay and prints each model's digest and checkpoint.
///
/// # Errors
///
/// Fails when the target already contains a requested model, a projection or
/// spec is unknown or invalid, the ledger or archive cannot be read or fails
/// verification, or storage fails.
pub async fn run(
    js: &jetstream::Context,
    config: &Config,
    request: ReplayRequest<'_>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let until_time = match &request.as_of {
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .with_context(|| {
                    format!(
                        "invalid --as-of {text:?}: expected an RFC 3339 time such as 2026-05-01T09:30:00+08:00"
                    )
                })?
                .timestamp_micros(),
        ),
        None => None,
    };

    let target = models_dir(request.into, config);
    let mut names: Vec<String> = Vec::new();
    for name in &request.projections {
        if name != Activity::NAME && name != Frequency::NAME {
            bail!("unknown projection {name:?} in --projections: expected activity or frequency");
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let specs = request
        .specs
        .iter()
        .map(|path| crate::spec::load_spec(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for spec in &specs {
        names.push(spec.model_name());
    }
    if names.is_empty() {
        bail!("nothing to replay: --projections and --spec name no model");
    }
    for name in &names {
        let dir = target.join(name);
        if dir.exists() {
            bail!(
                "{} already exists: replay builds into a fresh directory; choose another --into or remove it",
                dir.display()
            );
        }
    }

    let sites = config.sequencer_config().sites;
    let window_s = config.projections.visit_window_s;
    let ledger = StreamReader::open(js, LEDGER_STREAM)
        .await
        .context("failed to open the ledger stream")?;
    let (first, head) = ledger.bounds().await?;

    let mut runner = Runner::open(js)
        .await
        .context("failed to open the ledger")?;
    for name in names.iter().filter(|name| !name.starts_with("spec_")) {
        let store = open_model(request.into, config, name)?;
        runner = if name == Activity::NAME {
            runner.with(store, Activity::with_visit_window(sites.clone(), window_s))
        } else {
            let frequency = Frequency::with_visit_window(sites.clone(), window_s)
                .with_rules(config.segments.clone());
            runner.with(store, frequency)
        };
    }
    for spec in specs {
        let name = spec.model_name();
        let dir = target.join(&name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let store = ModelStore::open_with(config.projections.store, &dir, &name)?;
        runner = runner.with(store, SpecProjection::new(spec, sites.clone(), window_s));
    }

    let (records, archived) = records(&ledger, request.archive.as_deref(), first).await?;
    let last = request.to_seq.map_or(head, |to_seq| to_seq.min(head));
    if request.to_seq.is_some_and(|to_seq| to_seq > head) {
        tracing::warn!(
            head,
            "--to-seq is past the ledger head; replaying to the head"
        );
    }
    let until = match until_time {
        Some(at_us) => Until::RecordedBy(at_us),
        None => Until::Seq(last),
    };

    let bar = progress_bar(last, request.json);
    let reporter = bar.clone();
    let mut runner = runner.with_progress(move |seq| reporter.set_position(seq));
    let started = Instant::now();
    let reached = runner
        .run_from(records, until, shutdown)
        .await
        .context("replay failed")?;
    bar.finish_and_clear();
    if matches!(until, Until::Seq(_)) && reached.seq < last {
        bail!("replay stopped at seq {} before seq {last}", reached.seq);
    }
    for store in runner.stores() {
        store.flush().await?;
    }
    let seconds = started.elapsed().as_secs_f64();

    for (name, store) in names.iter().zip(runner.stores()) {
        let digest = store.digest()?;
        let checkpoint = store.checkpoint()?;
        let seq = checkpoint.map_or(0, |head| head.seq);
        let hash = checkpoint
            .map(|head| head.hash.to_hex())
            .unwrap_or_default();
        if request.json {
            outln!(
                "{}",
                json!({"model": name, "digest": digest, "seq": seq, "hash": hash})
            )?;
        } else {
            outln!("{name}\tseq {seq}\t{digest}")?;
        }
    }
    eprintln!(
        "replayed {} records ({} from the archive) in {:.1} s into {}",
        reached.seq,
        archived,
        seconds,
        target.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Returns the ledger's records from sequence 1: archive segments first
/// when given, then the stream from where they end, and how many records
/// the archive holds.
async fn records(
    ledger: &StreamReader,
    archive: Option<&Path>,
    stream_first: u64,
) -> anyhow::Result<(MessageStream, u64)> {
    let Some(dir) = archive else {
        if stream_first > 1 {
            bail!(
                "the ledger stream starts at seq {stream_first}: the records before it were archived; \
                 pass --archive DIR to replay them"
            );
        }
        return Ok((ledger.follow(1).await?, 0));
    };
    let (archived, last) = archive_records(dir)?;
    if stream_first > last + 1 {
        bail!(
            "the archive in {} ends at seq {last} but the ledger stream starts at seq {stream_first}: \
             records {} to {} are in neither",
            dir.display(),
            last + 1,
            stream_first - 1
        );
    }
    let stream = ledger.follow(last + 1).await?;
    Ok((Box::pin(futures::StreamExt::chain(archived, stream)), last))
}

fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "replaying {bar:40} {pos}/{len} records, {per_sec}, {eta} left",
    )
    .expect("the progress template is valid");
    bar.set_style(style);
    bar
}

/// Streams every record of the archive segments in `dir`, read and checked
/// on a blocking thread, and returns the last archived sequence.
fn archive_records(dir: &Path) -> anyhow::Result<(MessageStream, u64)> {
    let set = ArchiveSet::open(dir)
        .with_context(|| format!("failed to open the archive in {}", dir.display()))?;
    let last = set.last_seq();
    let (sender, receiver) = tokio::sync::mpsc::channel(4096);
    std::thread::spawn(move || {
        for record in set.records() {
            let record = record.map_err(|err| ReadError::new("read archived", LEDGER_STREAM, err));
            if sender.blocking_send(record).is_err() {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|record| (record, receiver))
    });
    Ok((Box::pin(stream), last))
}
