//! `checkin archive`: moves a sealed range of the ledger into segment files
//! and purges it from the stream.
//!
//! Steps, each safe to interrupt:
//! 1. remove stale `*.tmp` files, open the archive and check it continues;
//! 2. finish an earlier run: segments whose records are still in the stream
//!    are compared with the stream record by record, then purged;
//! 3. read the new range from the stream, verifying the chain from the
//!    archive's last hash, and write segments (`.tmp`, sync, rename, sync dir);
//! 4. reopen each segment from disk and verify digest and chain;
//! 5. only then purge the stream below the archived end + 1.
//!
//! A crash before step 5 leaves the stream whole and at most some verified
//! or unverified segments, which step 2 of the next run checks and purges.
//! The stream's head record is never archived, so the sequencer and the
//! projections always have a record to chain from.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream;
use checkin_core::chain::{ChainVerifier, GENESIS_SEQ, link_hash};
use checkin_core::{ChainHash, ChainHead};
use checkin_ledger::archive::{ArchiveSet, Segment, SegmentWriter, WrittenSegment};
use checkin_ledger::reader::{StoredMessage, StreamReader};
use checkin_ledger::topology::LEDGER_STREAM;
use futures::StreamExt;

/// Records per segment file unless `--segment-records` sets another number.
pub const DEFAULT_SEGMENT_RECORDS: u64 = 100_000;

/// Environment variable that makes the archiver abort at a named step, for crash tests.
const FAIL_AT_ENV: &str = "CHECKIN_ARCHIVE_FAIL_AT";

/// End of the range to archive.
#[derive(Clone, Copy, Debug)]
pub enum ArchiveEnd {
    /// Every record up to and including this sequence.
    UpTo(u64),
    /// Every record JetStream stored before this time, Unix nanoseconds.
    StoredBefore(i64),
}

/// Options of one archive run.
pub struct ArchiveOptions {
    pub end: ArchiveEnd,
    pub dir: PathBuf,
    pub segment_records: u64,
}

/// A rejection the operator must act on, with a stable code and English and Chinese text.
#[derive(Debug)]
pub struct Rejection {
    code: &'static str,
    english: String,
    chinese: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {}\n       {}",
            self.code, self.english, self.chinese
        )
    }
}

impl std::error::Error for Rejection {}

fn rejection(code: &'static str, english: String, chinese: String) -> anyhow::Error {
    Rejection {
        code,
        english,
        chinese,
    }
    .into()
}

/// Totals of one run, for the summary.
#[derive(Default)]
struct Totals {
    segments: u64,
    records: u64,
    bytes: u64,
    raw_bytes: u64,
}

/// Runs `checkin archive`.
pub async fn run(client: async_nats::Client, options: ArchiveOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = &options.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    remove_stale_tmp(dir)?;
    let archive = ArchiveSet::open(dir).context("failed to open the archive")?;

    let js = jetstream::new(client);
    let ledger = StreamReader::open(&js, LEDGER_STREAM)
        .await
        .context("failed to open the ledger stream")?;
    let (first, last) = ledger.bounds().await?;
    if last == 0 {
        outln!("the ledger is empty; nothing to archive")?;
        return Ok(ExitCode::SUCCESS);
    }
    let ledger_id = check_same_ledger(&ledger, &archive, first).await?;
    finish_interrupted_purge(&ledger, &archive, first, last).await?;

    let start = archive.last_seq() + 1;
    // The head record stays in the stream: the sequencer and projections chain from it.
    let max_end = match options.end {
        ArchiveEnd::UpTo(seq) => seq.min(last - 1),
        ArchiveEnd::StoredBefore(_) => last - 1,
    };
    if max_end < start {
        outln!(
            "nothing to archive: the archive ends at seq {}, the stream's head is seq {last}",
            archive.last_seq()
        )?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut totals = Totals::default();
    let end = write_segments(
        &ledger,
        &archive,
        ledger_id,
        start,
        max_end,
        &options,
        &mut totals,
    )
    .await?;
    if end < start {
        outln!(
            "nothing to archive: no record after seq {} was stored before the given date",
            archive.last_seq()
        )?;
        return Ok(ExitCode::SUCCESS);
    }

    let purged = ledger
        .purge_below(end + 1)
        .await
        .context("failed to purge archived records")?;
    fail_at("after_purge");
    let (first_now, _) = ledger.bounds().await?;
    anyhow::ensure!(
        first_now == end + 1,
        "after the purge the stream starts at seq {first_now}, expected {}",
        end + 1
    );

    print_summary(&totals, start, end, purged, started.elapsed().as_secs_f64())?;
    Ok(ExitCode::SUCCESS)
}

/// Aborts the process when `CHECKIN_ARCHIVE_FAIL_AT` names `step`, like a crash.
fn fail_at(step: &str) {
    if std::env::var(FAIL_AT_ENV).is_ok_and(|value| value == step) {
        eprintln!("aborting at {step} because {FAIL_AT_ENV}={step}");
        std::process::abort();
    }
}

/// Removes `*.tmp` files a crashed run left, and syncs the directory.
fn remove_stale_tmp(dir: &Path) -> anyhow::Result<()> {
    let mut removed = 0;
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "tmp") {
            std::fs::remove_file(&path)
                .with_context(|| format!("failed to remove {}", path.display()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        std::fs::File::open(dir)
            .and_then(|handle| handle.sync_all())
            .with_context(|| format!("failed to sync {}", dir.display()))?;
        eprintln!("removed {removed} unfinished segment file(s) from an interrupted run");
    }
    Ok(())
}

/// Returns the ledger id (genesis hash) and checks the archive belongs to this ledger.
async fn check_same_ledger(
    ledger: &StreamReader,
    archive: &ArchiveSet,
    first: u64,
) -> anyhow::Result<ChainHash> {
    if first > GENESIS_SEQ {
        // The genesis record is archived; continuity is checked record by record later.
        return archive.ledger_id().ok_or_else(|| {
            rejection(
                "archive_records_missing",
                format!("the ledger stream starts at seq {first}, and the archive in this directory is empty: records 1 to {} are in neither; give the directory that contains them", first - 1),
                format!("账本流从序号 {first} 开始，而此目录中的归档为空：序号 1 到 {} 的记录两处都没有；请指定保存这些记录的目录", first - 1),
            )
        });
    }
    let genesis = ledger
        .get(GENESIS_SEQ)
        .await?
        .context("the genesis record is missing")?;
    let genesis_hash = link_hash(&ChainHash::ZERO, GENESIS_SEQ, &genesis.payload);
    if let Some(archived) = archive.ledger_id()
        && archived != genesis_hash
    {
        return Err(rejection(
            "archive_other_ledger",
            format!(
                "the archive belongs to ledger {archived}, the stream to ledger {genesis_hash}; use another directory"
            ),
            format!("此归档属于账本 {archived}，而账本流属于账本 {genesis_hash}；请使用另一个目录"),
        ));
    }
    Ok(genesis_hash)
}

/// Finishes a run that wrote segments but did not purge: compares the
/// archived records still in the stream with the stream, then purges them.
async fn finish_interrupted_purge(
    ledger: &StreamReader,
    archive: &ArchiveSet,
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    let archived = archive.last_seq();
    if archived + 1 < first {
        return Err(rejection(
            "archive_records_missing",
            format!(
                "the archive ends at seq {archived} and the stream starts at seq {first}: records {} to {} are in neither",
                archived + 1,
                first - 1
            ),
            format!(
                "归档止于序号 {archived}，账本流从序号 {first} 开始：序号 {} 到 {} 的记录两处都没有",
                archived + 1,
                first - 1
            ),
        ));
    }
    if archived < first {
        return Ok(());
    }
    if archived >= last {
        return Err(rejection(
            "archive_ahead_of_stream",
            format!(
                "the archive ends at seq {archived}, at or past the stream's head seq {last}: it belongs to another ledger or the stream lost records"
            ),
            format!(
                "归档止于序号 {archived}，不早于账本流的最新序号 {last}：它属于另一个账本，或账本流丢失了记录"
            ),
        ));
    }

    eprintln!(
        "checking archived records {first} to {archived} against the stream before purging them"
    );
    let from = first.saturating_sub(1).max(1);
    let mut archived_hashes = Vec::with_capacity((archived - from + 1) as usize);
    archive.for_each_record(|record| {
        if record.seq >= from {
            archived_hashes.push(record.hash);
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let start = if first == GENESIS_SEQ {
        ChainHead::EMPTY
    } else {
        ChainHead {
            seq: first - 1,
            hash: archived_hashes[0],
        }
    };
    let offset = if first == GENESIS_SEQ { 0 } else { 1 };
    let mut verifier = ChainVerifier::resume(start);
    let mut records = ledger.range(first, archived).await?;
    while let Some(message) = records.next().await {
        let message = message?;
        let hash = verifier.push(message.link());
        let expected = archived_hashes[(message.seq - first) as usize + offset];
        if hash != expected || !verifier.findings().is_empty() {
            return Err(rejection(
                "archive_differs_from_stream",
                format!(
                    "seq {}: the archived record differs from the stream's; nothing was purged, run the auditor",
                    message.seq
                ),
                format!(
                    "序号 {}：归档记录与账本流中的记录不同；未清除任何记录，请运行审计",
                    message.seq
                ),
            ));
        }
    }
    anyhow::ensure!(
        verifier.head().seq == archived,
        "the stream ended at seq {} while checking up to seq {archived}",
        verifier.head().seq
    );

    let purged = ledger
        .purge_below(archived + 1)
        .await
        .context("failed to purge archived records")?;
    fail_at("after_purge");
    eprintln!("purged {purged} records that an interrupted run had archived");
    Ok(())
}

/// Reads `start..=max_end` from the stream (stopping early for `--before`),
/// verifies the chain and writes verified segments; returns the last archived sequence.
async fn write_segments(
    ledger: &StreamReader,
    archive: &ArchiveSet,
    ledger_id: ChainHash,
    start: u64,
    max_end: u64,
    options: &ArchiveOptions,
    totals: &mut Totals,
) -> anyhow::Result<u64> {
    let mut verifier = ChainVerifier::resume(archive.head());
    let mut writer: Option<SegmentWriter> = None;
    let mut records = ledger.range(start, max_end).await?;

    while let Some(message) = records.next().await {
        let message = message?;
        if let ArchiveEnd::StoredBefore(cutoff) = options.end
            && message.stored_at_unix_ns >= i128::from(cutoff)
        {
            break;
        }
        let prev = verifier.head().hash;
        check_link(&mut verifier, &message, archive.last_seq())?;
        let segment = match &mut writer {
            Some(segment) => segment,
            None => writer.insert(SegmentWriter::create(
                &options.dir,
                message.seq,
                ledger_id,
                prev,
            )?),
        };
        segment.push_message(&message)?;
        if segment.count() >= options.segment_records {
            let full = writer.take().expect("a segment is open");
            seal(full, verifier.head(), totals)?;
        }
    }
    drop(records);
    if let Some(segment) = writer.take() {
        seal(segment, verifier.head(), totals)?;
    }

    let end = verifier.head().seq;
    if let ArchiveEnd::UpTo(_) = options.end {
        anyhow::ensure!(
            end == max_end,
            "the stream ended at seq {end} before seq {max_end}"
        );
    }
    Ok(end)
}

/// Verifies one stream record against the chain, naming the reason for a rejection.
fn check_link(
    verifier: &mut ChainVerifier,
    message: &StoredMessage,
    archived: u64,
) -> anyhow::Result<()> {
    verifier.push(message.link());
    let Some(finding) = verifier.findings().first() else {
        return Ok(());
    };
    if message.seq == archived + 1 || finding.seq <= archived + 1 {
        return Err(rejection(
            "archive_not_continuing",
            format!(
                "the stream does not continue the archive, which ends at seq {archived}: {finding}; use the archive directory of this ledger"
            ),
            format!("账本流未接续止于序号 {archived} 的归档：{finding}；请使用本账本的归档目录"),
        ));
    }
    Err(rejection(
        "archive_chain_broken",
        format!(
            "the ledger chain is broken: {finding}; nothing was archived or purged, run the auditor"
        ),
        format!("账本哈希链断裂：{finding}；未归档也未清除任何记录，请运行审计"),
    ))
}

/// Finishes, renames and re-verifies one segment from disk.
fn seal(writer: SegmentWriter, head: ChainHead, totals: &mut Totals) -> anyhow::Result<()> {
    let pending = writer.finish()?;
    fail_at("after_write");
    let written = pending.commit()?;
    fail_at("after_rename");
    verify_written(&written, head)?;
    fail_at("after_verify");

    let bytes = written.info.file_len();
    totals.segments += 1;
    totals.records += written.info.count;
    totals.bytes += bytes;
    totals.raw_bytes += written.raw_len;
    eprintln!(
        "wrote {}: seq {} to {}, {} records, {} bytes ({:.1}x)",
        written.path.display(),
        written.info.first_seq,
        written.info.last_seq,
        written.info.count,
        bytes,
        written.raw_len as f64 / bytes as f64,
    );
    Ok(())
}

/// Reopens a written segment and checks digest, chain and its end against the stream's.
fn verify_written(written: &WrittenSegment, head: ChainHead) -> anyhow::Result<()> {
    let segment = Segment::open(&written.path)?;
    let count = segment.verify()?;
    let info = segment.info();
    anyhow::ensure!(
        count == written.info.count && info.last_seq == head.seq && info.last_hash == head.hash,
        "segment {} reads back as seq {} with hash {}, the stream's record is seq {} with hash {}",
        written.path.display(),
        info.last_seq,
        info.last_hash,
        head.seq,
        head.hash
    );
    Ok(())
}

fn print_summary(
    totals: &Totals,
    start: u64,
    end: u64,
    purged: u64,
    seconds: f64,
) -> std::io::Result<()> {
    let ratio = if totals.bytes == 0 {
        0.0
    } else {
        totals.raw_bytes as f64 / totals.bytes as f64
    };
    outln!(
        "archived seq {start} to {end}: {} segments, {} records, {} bytes on disk ({} uncompressed, {ratio:.1}x), purged {purged} from the stream in {seconds:.1} s ({:.0} records/s)",
        totals.segments,
        totals.records,
        totals.bytes,
        totals.raw_bytes,
        totals.records as f64 / seconds.max(1e-9),
    )?;
    Ok(())
}
