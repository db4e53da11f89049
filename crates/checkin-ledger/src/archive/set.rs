//! A directory of segments that together hold the ledger from sequence 1.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use checkin_core::chain::GENESIS_SEQ;
use checkin_core::{ChainHash, ChainHead};

use super::format::parse_file_name;
use super::{ArchiveError, DigestMismatch, RecordRef, Segment};
use crate::reader::StoredMessage;

/// The segments of one archive directory, checked to continue each other.
///
/// Invariant: the first segment starts at sequence 1 with a zero
/// `first_prev`, each next one starts at the previous `last + 1` with
/// `first_prev` equal to the previous `last_hash`, and all name the same
/// ledger id. An empty directory is an empty archive.
#[derive(Clone, Debug)]
pub struct ArchiveSet {
    dir: PathBuf,
    segments: Vec<Segment>,
}

impl ArchiveSet {
    /// Opens every `ledger-*.ckar` file in `dir`, ignoring `*.tmp` files, and
    /// checks each segment's footer and digest and that they continue each other.
    ///
    /// # Errors
    ///
    /// Fails when the directory cannot be listed, a segment is invalid or
    /// damaged, or a segment does not continue the one before it.
    pub fn open(dir: &Path) -> Result<Self, ArchiveError> {
        let (set, _) = Self::open_segments(dir, false)?;
        Ok(set)
    }

    /// Opens a directory like [`ArchiveSet::open`], but returns the segments
    /// whose digest does not match beside the set instead of failing, so
    /// that an auditor can read their records and report what changed.
    ///
    /// # Errors
    ///
    /// Fails as [`ArchiveSet::open`] does, except on a digest mismatch.
    pub fn open_for_audit(dir: &Path) -> Result<(Self, Vec<DigestMismatch>), ArchiveError> {
        Self::open_segments(dir, true)
    }

    fn open_segments(
        dir: &Path,
        tolerate_damage: bool,
    ) -> Result<(Self, Vec<DigestMismatch>), ArchiveError> {
        let entries = std::fs::read_dir(dir).map_err(ArchiveError::io("list", dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(ArchiveError::io("list", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with("ledger-") && name.ends_with(".ckar") {
                names.push(name.to_string());
            }
        }
        names.sort();

        let mut segments: Vec<Segment> = Vec::with_capacity(names.len());
        let mut damaged = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let (segment, damage) = Segment::open_reporting_digest(&path)?;
            if let Some(damage) = damage {
                if !tolerate_damage {
                    return Err(ArchiveError::DigestMismatch { path });
                }
                damaged.push(damage);
            }
            check_name(&name, &segment)?;
            check_continues(segments.last(), &segment)?;
            segments.push(segment);
        }
        let set = Self {
            dir: dir.to_path_buf(),
            segments,
        };
        Ok((set, damaged))
    }

    /// Returns the directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the segments in sequence order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Returns the last archived sequence, 0 for an empty archive.
    pub fn last_seq(&self) -> u64 {
        self.segments
            .last()
            .map_or(0, |segment| segment.info().last_seq)
    }

    /// Returns the chain hash of the last archived record, zero for an empty archive.
    pub fn last_hash(&self) -> ChainHash {
        self.segments
            .last()
            .map_or(ChainHash::ZERO, |segment| segment.info().last_hash)
    }

    /// Returns the last archived record as a chain head, [`ChainHead::EMPTY`] for an empty archive.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.last_seq(),
            hash: self.last_hash(),
        }
    }

    /// Returns the genesis hash of the archived ledger, `None` for an empty archive.
    pub fn ledger_id(&self) -> Option<ChainHash> {
        self.segments
            .first()
            .map(|segment| segment.info().ledger_id)
    }

    /// Returns the segment that contains `seq`.
    pub fn segment_for(&self, seq: u64) -> Option<&Segment> {
        let index = self
            .segments
            .partition_point(|segment| segment.info().last_seq < seq);
        self.segments
            .get(index)
            .filter(|segment| segment.info().first_seq <= seq)
    }

    /// Iterates every record of every segment in order, as owned messages,
    /// each verified against the chain; ends after the first error.
    pub fn records(&self) -> impl Iterator<Item = Result<StoredMessage, ArchiveError>> + '_ {
        self.segments
            .iter()
            .flat_map(|segment| {
                let records: Box<dyn Iterator<Item = _>> = match segment.records() {
                    Ok(records) => Box::new(records),
                    Err(err) => Box::new(std::iter::once(Err(err))),
                };
                records
            })
            .scan(false, |failed, item| {
                if *failed {
                    return None;
                }
                *failed = item.is_err();
                Some(item)
            })
    }

    /// Reads and verifies every segment on up to `threads` threads; returns
    /// the number of records.
    ///
    /// Segments verify independently because each chains from the
    /// `first_prev` in its footer, and [`ArchiveSet::open`] already checked
    /// that each `first_prev` is the previous segment's `last_hash`.
    ///
    /// # Errors
    ///
    /// Returns the error of the earliest segment that fails.
    pub fn verify_parallel(&self, threads: usize) -> Result<u64, ArchiveError> {
        let next = AtomicUsize::new(0);
        let results: Vec<(usize, Result<u64, ArchiveError>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(segment) = self.segments.get(index) else {
                                return done;
                            };
                            done.push((index, segment.verify()));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().expect("a verifier thread panicked"))
                .collect()
        });

        let mut results = results;
        results.sort_by_key(|(index, _)| *index);
        let mut count = 0;
        for (_, result) in results {
            count += result?;
        }
        Ok(count)
    }

    /// Calls `visit` with every record of every segment in order, borrowing
    /// each record's bytes; this is the fast path for verifiers.
    ///
    /// # Errors
    ///
    /// Returns the first error of reading or verifying a record, or of `visit`.
    pub fn for_each_record<E: From<ArchiveError>>(
        &self,
        mut visit: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        for segment in &self.segments {
            segment.for_each_record(&mut visit)?;
        }
        Ok(())
    }
}

/// Checks that a segment's file name matches its footer's range.
fn check_name(name: &str, segment: &Segment) -> Result<(), ArchiveError> {
    let info = segment.info();
    if parse_file_name(name) != Some((info.first_seq, info.last_seq)) {
        return Err(ArchiveError::invalid(
            segment.path(),
            format!(
                "the name does not match the footer's range {}..={}",
                info.first_seq, info.last_seq
            ),
        ));
    }
    Ok(())
}

fn check_continues(previous: Option<&Segment>, segment: &Segment) -> Result<(), ArchiveError> {
    let info = segment.info();
    let discontinuous = |detail: String| ArchiveError::Discontinuous {
        path: segment.path().to_path_buf(),
        detail,
    };
    let Some(previous) = previous else {
        if info.first_seq != GENESIS_SEQ || info.first_prev != ChainHash::ZERO {
            return Err(discontinuous(format!(
                "the first segment starts at seq {}, an archive starts at the genesis record, seq 1",
                info.first_seq
            )));
        }
        return Ok(());
    };
    let before = previous.info();
    if info.first_seq != before.last_seq + 1 {
        return Err(discontinuous(format!(
            "it starts at seq {}, the segment before ends at seq {}",
            info.first_seq, before.last_seq
        )));
    }
    if info.first_prev != before.last_hash {
        return Err(discontinuous(format!(
            "its first record chains from {}, the segment before ends with {}",
            info.first_prev, before.last_hash
        )));
    }
    if info.ledger_id != before.ledger_id {
        return Err(discontinuous(format!(
            "it names ledger {}, the segment before names ledger {}",
            info.ledger_id, before.ledger_id
        )));
    }
    Ok(())
}
