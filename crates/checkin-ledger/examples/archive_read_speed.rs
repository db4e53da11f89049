//! Measures how fast an archive directory reads and verifies.
//!
//! `cargo run --release -p checkin-ledger --example archive_read_speed -- DIR`
//! opens the archive (footer and digest of every segment), then reads every
//! record twice: through the borrowing `for_each_record`, which recomputes
//! the chain, and through `records`, which also builds a `StoredMessage`.
//! Then it verifies the segments on two threads with `verify_parallel`, and
//! audits them with `audit_archive` on one and on two threads.
//! A second argument `borrowed` skips the `records` pass, for CPU-time
//! measurements with `perf stat`.

use std::time::Instant;

use checkin_ledger::archive::{ArchiveError, ArchiveSet, audit_archive};
use checkin_ledger::audit::Auditor;

fn main() -> Result<(), ArchiveError> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: archive_read_speed DIR");
        std::process::exit(2);
    };

    let started = Instant::now();
    let archive = ArchiveSet::open(dir.as_ref())?;
    let open_seconds = started.elapsed().as_secs_f64();
    println!(
        "opened {} segments up to seq {} in {open_seconds:.3} s",
        archive.segments().len(),
        archive.last_seq()
    );

    let started = Instant::now();
    let mut count = 0u64;
    let mut body_bytes = 0u64;
    archive.for_each_record(|record| {
        count += 1;
        body_bytes += record.body.len() as u64;
        Ok::<(), ArchiveError>(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "for_each_record: {count} records, {body_bytes} body bytes in {seconds:.3} s = {:.0} records/s",
        count as f64 / seconds
    );

    let started = Instant::now();
    let count = archive.verify_parallel(2)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "verify_parallel(2): {count} records in {seconds:.3} s = {:.0} records/s",
        count as f64 / seconds
    );

    for threads in [1, 2] {
        let started = Instant::now();
        let (set, damaged) = ArchiveSet::open_for_audit(dir.as_ref())?;
        let mut auditor = Auditor::new(None);
        audit_archive(&set, &damaged, &mut auditor, threads)?;
        let report = auditor.finish();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "audit_archive({threads}), open included: {} records, {} findings in {seconds:.3} s = {:.0} records/s",
            report.records,
            report.findings.len(),
            report.records as f64 / seconds
        );
    }

    if std::env::args().nth(2).as_deref() == Some("borrowed") {
        return Ok(());
    }
    let started = Instant::now();
    let mut count = 0u64;
    for record in archive.records() {
        record?;
        count += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "records: {count} records in {seconds:.3} s = {:.0} records/s",
        count as f64 / seconds
    );
    Ok(())
}
