//! `checkin audit`: verifies the ledger stream and records checkpoints.
//!
//! Exit codes of `checkin audit verify`: 0 when the audit found nothing,
//! 1 when it reported findings, 2 when it could not run.
//!
//! With `--archive DIR`, a segment whose file digest does not match is a
//! finding (`undecodable` at its first sequence, naming the file, exit 1),
//! and its records are still checked, so a changed record is also reported
//! at its own sequence. A segment that cannot be read at all, such as one
//! whose body does not decompress, stops the audit with exit 2.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use checkin_core::chain::{Finding, link_hash};
use checkin_core::record::RecordBody;
use checkin_core::{ChainHash, ChainHead, codec};
use checkin_ledger::archive::{self, ArchiveSet};
use checkin_ledger::audit::{AuditReport, Auditor, CHECKPOINT_FORMAT, Checkpoint};
use checkin_ledger::reader::{ReadError, StoredMessage, StreamReader};
use checkin_ledger::topology::{LEDGER_STREAM, LEDGER_SUBJECT};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;

/// Exit code when the audit reported findings.
const EXIT_FINDINGS: u8 = 1;
/// Exit code when the audit could not run.
const EXIT_NOT_RUN: u8 = 2;

/// Records handed from the stream reader to the verifying thread at once.
const BATCH: usize = 512;
/// Batches read ahead of the verifying thread.
const BATCHES_AHEAD: usize = 16;
/// Time without a message, while the server reports more pending, after
/// which the reader treats the next message as unreadable.
const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Options of `checkin audit verify`.
pub struct VerifyOptions {
    pub json: bool,
    pub expect_head: Option<String>,
    pub checkpoint: Option<PathBuf>,
    pub archive: Option<PathBuf>,
}

/// Runs `checkin audit verify`; every error becomes exit code 2.
pub async fn verify(url: Option<&str>, options: VerifyOptions) -> ExitCode {
    match try_verify(url, &options).await {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FINDINGS),
        Err(err) => {
            eprintln!("error: {err:#}");
            eprintln!("{}", Outcome::NotRun.message_en());
            eprintln!("{}", Outcome::NotRun.message_zh());
            ExitCode::from(EXIT_NOT_RUN)
        }
    }
}

async fn try_verify(url: Option<&str>, options: &VerifyOptions) -> anyhow::Result<AuditReport> {
    let checkpoint = match &options.checkpoint {
        Some(path) => Some(read_checkpoint(path)?),
        None => None,
    };
    let expected_head = match (&options.expect_head, &checkpoint) {
        (Some(text), _) => Some(parse_head(text)?),
        (None, Some(checkpoint)) => Some(checkpoint.head()),
        (None, None) => None,
    };

    let reader = crate::commands::open_stream(url, LEDGER_STREAM).await?;
    let mut auditor = Auditor::new(expected_head);
    if let Some(checkpoint) = &checkpoint {
        check_ledger_name(&reader, checkpoint).await?;
        auditor = auditor.expect_ledger_id(checkpoint.ledger_id);
    }

    let (first, last) = reader.bounds().await?;
    let total = if last == 0 { 0 } else { last - first + 1 };
    let start = Instant::now();
    // Archive segments first, through the same auditor, then the stream
    // from where they end: one chain across both.
    let mut archived_through = 0;
    if let Some(dir) = &options.archive {
        let dir = dir.clone();
        let (verified, through) =
            tokio::task::spawn_blocking(move || audit_archive_dir(&dir, auditor))
                .await
                .context("the archive verifying thread panicked")??;
        auditor = verified;
        archived_through = through;
    }
    let progress = progress_bar(total, options.json);
    let report = audit_stream(&reader, auditor, archived_through, progress.clone()).await?;
    let seconds = start.elapsed().as_secs_f64();
    progress.finish_and_clear();

    let text = if options.json {
        let document = report_json(&report, expected_head, seconds);
        serde_json::to_string_pretty(&document)? + "\n"
    } else {
        report_text(&report, expected_head, seconds)
    };
    // The exit code carries the verdict, so a reader that closed the pipe
    // early, as `checkin audit verify | head -3` does, must not turn findings
    // into exit code 0 or a clean ledger into "not run".
    match out!("{text}") {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(report),
    }
}

/// Pushes every record of the archive in `dir` through `auditor`, reading
/// segments on every core; returns the auditor and the last archived sequence.
pub fn audit_archive_dir(dir: &Path, mut auditor: Auditor) -> anyhow::Result<(Auditor, u64)> {
    let (set, damaged) = ArchiveSet::open_for_audit(dir)
        .with_context(|| format!("failed to open the archive in {}", dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    archive::audit_archive(&set, &damaged, &mut auditor, threads)
        .with_context(|| format!("failed to read the archive in {}", dir.display()))?;
    Ok((auditor, set.last_seq()))
}

/// Reads the whole ledger stream through `auditor`, skipping records up to
/// `archived_through` that the archive already fed it.
///
/// The stream is read on the async runtime and verified on a blocking
/// thread, in batches, so that hashing and decoding overlap with network
/// reads instead of adding to them.
pub async fn audit_stream(
    reader: &StreamReader,
    mut auditor: Auditor,
    archived_through: u64,
    progress: ProgressBar,
) -> anyhow::Result<AuditReport> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<StoredMessage>>(BATCHES_AHEAD);
    let reader = reader.clone();
    let read = tokio::spawn(async move { read_batches(&reader, archived_through, sender).await });
    let verify = tokio::task::spawn_blocking(move || {
        while let Some(batch) = receiver.blocking_recv() {
            for message in &batch {
                auditor.push(message);
            }
            progress.inc(batch.len() as u64);
        }
        auditor
    });

    let auditor = verify.await.context("the verifying thread panicked")?;
    read.await
        .context("the stream reading task panicked")?
        .context("failed to read the ledger stream")?;
    Ok(auditor.finish())
}

/// Reads the stream in order into batches for the verifying thread.
///
/// nats-server 2.15 hides a message whose stored checksum no longer matches:
/// a direct get returns "not found" and an ordered consumer stops delivering
/// at it. When no message arrives for [`STALL_TIMEOUT`], the reader gets the
/// following sequences one by one, skipping those the server cannot return,
/// and then reads on with a new ordered consumer after the first it could
/// get. The skipped sequences show up as a `gap`.
async fn read_batches(
    reader: &StreamReader,
    archived_through: u64,
    sender: tokio::sync::mpsc::Sender<Vec<StoredMessage>>,
) -> Result<(), ReadError> {
    let mut batch = Vec::with_capacity(BATCH);
    // Records still in the stream after a crash between archiving and
    // purging were already checked in the archive.
    let mut next = archived_through + 1;
    'consumers: loop {
        let mut messages = reader.read_from(next).await?;
        loop {
            let message = match tokio::time::timeout(STALL_TIMEOUT, messages.next()).await {
                Ok(Some(message)) => message?,
                Ok(None) => break 'consumers,
                Err(_stalled) => {
                    let (_, last) = reader.bounds().await?;
                    tracing::warn!(
                        seq = next,
                        last,
                        "ledger read stalled; reading records one by one"
                    );
                    loop {
                        if next > last {
                            break 'consumers;
                        }
                        if let Some(message) = reader.get(next).await? {
                            next = message.seq + 1;
                            batch.push(message);
                            continue 'consumers;
                        }
                        next += 1;
                    }
                }
            };
            next = message.seq + 1;
            batch.push(message);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if sender.send(full).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = sender.send(batch).await;
    }
    Ok(())
}

/// Shows a bar on standard error when it is a terminal and the output is text.
fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "verifying {bar:40} {pos}/{len} records, {per_sec}, {eta} left",
    )
    .expect("the progress template is valid");
    bar.set_style(style);
    bar
}

/// Parses `SEQ:HASH`.
fn parse_head(text: &str) -> anyhow::Result<ChainHead> {
    let Some((seq, hash)) = text.split_once(':') else {
        bail!("invalid --expect-head {text:?}: expected SEQ:HASH, such as 42:<64 hex digits>");
    };
    let seq: u64 = seq
        .parse()
        .with_context(|| format!("invalid sequence {seq:?} in --expect-head"))?;
    let hash: ChainHash = hash
        .parse()
        .with_context(|| format!("invalid hash {hash:?} in --expect-head"))?;
    Ok(ChainHead { seq, hash })
}

fn read_checkpoint(path: &Path) -> anyhow::Result<Checkpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read checkpoint {}", path.display()))?;
    Checkpoint::from_json(&text)
        .with_context(|| format!("failed to parse checkpoint {}", path.display()))
}

/// Stops when the checkpoint names another ledger than the stream's genesis
/// record: that is the wrong server or file, not a finding about this ledger.
async fn check_ledger_name(reader: &StreamReader, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let Some(genesis) = reader.get(1).await? else {
        return Ok(());
    };
    let Ok(record) = codec::decode(&genesis.payload) else {
        return Ok(());
    };
    if let RecordBody::Genesis(body) = record.body
        && body.ledger != checkpoint.ledger
    {
        bail!(
            "the checkpoint is for ledger {:?}, but the stream contains ledger {:?}; \
             pass the checkpoint of this ledger or --nats URL of the right server",
            checkpoint.ledger,
            body.ledger
        );
    }
    Ok(())
}

/// A finding with its descriptions, as printed in JSON.
#[derive(Serialize)]
struct FindingJson<'a> {
    seq: u64,
    kind: &'static str,
    expected: &'a str,
    actual: &'a str,
    message: &'static str,
    message_zh: &'static str,
}

impl<'a> From<&'a Finding> for FindingJson<'a> {
    fn from(finding: &'a Finding) -> Self {
        Self {
            seq: finding.seq,
            kind: finding.kind.as_str(),
            expected: &finding.expected,
            actual: &finding.actual,
            message: finding.kind.message_en(),
            message_zh: finding.kind.message_zh(),
        }
    }
}

fn report_json(
    report: &AuditReport,
    expected_head: Option<ChainHead>,
    seconds: f64,
) -> serde_json::Value {
    let outcome = Outcome::of(report);
    let findings: Vec<FindingJson<'_>> = report.findings.iter().map(FindingJson::from).collect();
    json!({
        "ledger": report.ledger,
        "ledger_id": report.ledger_id,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "records": report.records,
        "head": report.head,
        "expected_head": expected_head,
        "seconds": seconds,
        "records_per_s": (report.records as f64 / seconds.max(1e-9)).round(),
        "outcome": outcome.code(),
        "clean": report.is_clean(),
        "findings": findings,
    })
}

fn report_text(report: &AuditReport, expected_head: Option<ChainHead>, seconds: f64) -> String {
    let mut text = String::new();
    for finding in &report.findings {
        text.push_str(&format!(
            "seq {}  {}\n  {}\n  {}\n  expected: {}\n  found:    {}\n",
            finding.seq,
            finding.kind.as_str(),
            finding.kind.message_en(),
            finding.kind.message_zh(),
            finding.expected,
            finding.actual
        ));
    }

    let range = match (report.first_seq, report.last_seq) {
        (Some(first), Some(last)) => format!("seq {first} to {last}"),
        _ => "no records".to_string(),
    };
    text.push_str(&format!(
        "ledger {} ({}): {} records, {range}, in {seconds:.2} s\n",
        report.ledger.as_deref().unwrap_or("?"),
        report
            .ledger_id
            .map_or_else(|| "genesis not seen".to_string(), |id| id.to_hex()),
        report.records,
    ));
    if let Some(head) = expected_head {
        text.push_str(&format!(
            "checked against the recorded head seq {} hash {}\n",
            head.seq, head.hash
        ));
    }

    let outcome = Outcome::of(report);
    let count = report.findings.len().to_string();
    text.push_str(&outcome.message_en().replace("{count}", &count));
    text.push('\n');
    text.push_str(&outcome.message_zh().replace("{count}", &count));
    text.push('\n');
    text
}

/// The result of `checkin audit verify`, with a stable code and text in
/// English and Chinese; `{count}` is the number of findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Clean,
    Findings,
    NotRun,
}

impl Outcome {
    fn of(report: &AuditReport) -> Self {
        if report.is_clean() {
            Self::Clean
        } else {
            Self::Findings
        }
    }

    fn code(self) -> &'static str {
        self.texts().0
    }

    fn message_en(self) -> &'static str {
        self.texts().1
    }

    fn message_zh(self) -> &'static str {
        self.texts().2
    }

    fn texts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Clean => (
                "clean",
                "the chain verifies: no findings",
                "哈希链校验通过：未发现问题",
            ),
            Self::Findings => (
                "findings",
                "the audit failed with {count} finding(s), listed above",
                "审计未通过，发现 {count} 个问题，详见上方各项",
            ),
            Self::NotRun => (
                "not_run",
                "the audit could not run, so the ledger is not verified",
                "审计未能运行，账本未经校验",
            ),
        }
    }
}

/// Runs `checkin audit checkpoint`: records the current head as JSON.
///
/// NOTE: the head hash is the stored `Checkin-Hash` header, not recomputed,
/// because that would need the whole chain; the help tells users to verify first.
pub async fn checkpoint(url: Option<&str>, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let reader = crate::commands::open_stream(url, LEDGER_STREAM).await?;
    let Some(genesis) = reader.get(1).await? else {
        bail!("the ledger has no genesis record at seq 1, so it has no ledger id to record");
    };
    let record =
        codec::decode(&genesis.payload).context("failed to decode the genesis record at seq 1")?;
    let RecordBody::Genesis(body) = record.body else {
        bail!("the record at seq 1 is not a genesis record");
    };
    let Some(head) = reader.last_on_subject(LEDGER_SUBJECT).await? else {
        bail!("the ledger stream is empty");
    };
    let Some(hash) = head.hash_header() else {
        bail!(
            "the head record at seq {} has no valid Checkin-Hash header; run `checkin audit verify`",
            head.seq
        );
    };
    let time = i64::try_from(head.stored_at_unix_ns)
        .ok()
        .map(chrono::DateTime::from_timestamp_nanos)
        .context("the head record's stored time is out of range")?;

    let checkpoint = Checkpoint {
        ledger: body.ledger,
        ledger_id: link_hash(&ChainHash::ZERO, 1, &genesis.payload),
        seq: head.seq,
        hash,
        time: time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        format: CHECKPOINT_FORMAT,
    };
    let text = serde_json::to_string_pretty(&checkpoint)? + "\n";
    match out {
        None => out!("{text}")?,
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("failed to write {}", path.display()))?;
            outln!("wrote checkpoint of {checkpoint} to {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
