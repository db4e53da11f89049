//! Auditing an archive directory: segments are read, decompressed and hashed
//! on worker threads, and one [`Auditor`] checks the records in sequence
//! order on the calling thread.
//!
//! Each segment chains from the `first_prev` in its footer, so a worker can
//! hash it without waiting for the segments before it. The auditor takes
//! each record's hash from the worker when it chained from the predecessor
//! the auditor itself picks, which is always so for a sound archive, and
//! recomputes it otherwise. So findings are the ones a single thread pushing
//! every record would report, in the same order.
//!
//! When there are fewer segments than threads, some cores would have no
//! segment to read, so the workers only decompress and the auditor hashes:
//! with one segment on two cores that splits the work about evenly.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use checkin_core::ChainHash;
use checkin_core::chain::{Finding, FindingKind, LinkHash};

use super::format::{chain_header_values, decode_hash};
use super::{ArchiveError, ArchiveSet, DigestMismatch, Segment};
use crate::audit::{Auditor, RecordParts};
use crate::headers;

/// Records a worker hands to the auditor at once.
const BATCH_RECORDS: usize = 1024;
/// Batches of one segment a worker reads ahead of the auditor.
const BATCHES_AHEAD: usize = 8;
/// Most event ids reserved in advance: 7/8 of 4 Mi buckets of 25 bytes,
/// about 100 MiB of map.
const MAX_RESERVED_EVENTS: u64 = 7 << 19;

/// Message from a worker about one segment: a batch of records, or the error
/// that stopped reading it.
type Delivery = Result<Batch, ArchiveError>;

/// Pushes every record of `set` through `auditor` in sequence order,
/// reading segments on up to `threads` worker threads.
///
/// Each segment in `damaged`, from [`ArchiveSet::open_for_audit`], becomes an
/// `undecodable` finding at its first sequence that names the file, before
/// its records. Chain problems in the records become findings too.
///
/// # Errors
///
/// Returns the first error of reading a segment, such as a body that does
/// not decompress or ends inside a record. Records before it were pushed.
pub fn audit_archive(
    set: &ArchiveSet,
    damaged: &[DigestMismatch],
    auditor: &mut Auditor,
    threads: usize,
) -> Result<(), ArchiveError> {
    let segments = set.segments();
    // Reserving for the footers' record count saves growing the event map
    // step by step. The cap bounds what a damaged footer can reserve.
    let records: u64 = segments.iter().map(|segment| segment.info().count).sum();
    auditor.reserve_events(usize::try_from(records.min(MAX_RESERVED_EVENTS)).unwrap_or(0));
    let (senders, receivers): (Vec<_>, Vec<_>) = segments
        .iter()
        .map(|_| {
            let (sender, receiver) = sync_channel::<Delivery>(BATCHES_AHEAD);
            (Some(sender), receiver)
        })
        .unzip();
    let senders = Mutex::new(senders);
    let next = AtomicUsize::new(0);

    let threads = threads.max(1);
    let workers = threads.min(segments.len().max(1));
    let hash_in_workers = workers == threads;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| read_segments(segments, &next, &senders, hash_in_workers));
        }
        // Dropping the receivers when this returns stops the workers early
        // after an error: their next send fails.
        check_in_order(segments, receivers, damaged, auditor)
    })
}

/// Receives the segments' batches in segment order and pushes every record.
fn check_in_order(
    segments: &[Segment],
    receivers: Vec<Receiver<Delivery>>,
    damaged: &[DigestMismatch],
    auditor: &mut Auditor,
) -> Result<(), ArchiveError> {
    for (segment, receiver) in segments.iter().zip(receivers) {
        if let Some(damage) = damaged.iter().find(|damage| damage.path == segment.path()) {
            auditor.add_finding(digest_finding(damage));
        }
        // The worker drops the sender after the segment's last batch.
        for delivery in receiver {
            let batch = delivery?;
            for record in batch.records {
                auditor.push_parts(RecordParts {
                    seq: record.seq,
                    body: &batch.bodies[record.body],
                    prev: record.prev,
                    hash: record.hash,
                    known: record.link,
                });
            }
        }
    }
    Ok(())
}

/// Describes a digest mismatch as the Python verifier does: `undecodable`
/// at the segment's first sequence, naming the file.
fn digest_finding(damage: &DigestMismatch) -> Finding {
    let name = damage.path.file_name().map_or_else(
        || damage.path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    Finding {
        seq: damage.first_seq,
        kind: FindingKind::Undecodable,
        expected: format!("{name}: file_digest {}", damage.computed),
        actual: damage.stored.to_hex(),
    }
}

/// Worker loop: claims segments in order and sends each one's records,
/// hashed when `hash` is set.
fn read_segments(
    segments: &[Segment],
    next: &AtomicUsize,
    senders: &Mutex<Vec<Option<SyncSender<Delivery>>>>,
    hash: bool,
) {
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(segment) = segments.get(index) else {
            return;
        };
        let sender = senders.lock().expect("no worker panics holding the lock")[index]
            .take()
            .expect("each segment is claimed once");
        if !send_segment(segment, &sender, hash) {
            return;
        }
    }
}

/// Reads one segment into batches; returns false when the auditor stopped listening.
fn send_segment(segment: &Segment, sender: &SyncSender<Delivery>, hash: bool) -> bool {
    let mut reader = match segment.audit_reader() {
        Ok(reader) => reader,
        Err(err) => return sender.send(Err(err)).is_ok(),
    };
    let mut batch = Batch::default();
    loop {
        let added = if hash {
            reader.next_record().map(|record| {
                record.map(|record| {
                    let link = LinkHash {
                        prev: record.prev_hash,
                        hash: record.hash,
                    };
                    batch.add(record.seq, record.headers, record.body, Some(link));
                })
            })
        } else {
            reader.next_frame().map(|frame| {
                frame.map(|frame| batch.add(frame.seq, frame.headers, frame.body, None))
            })
        };
        match added {
            Ok(Some(())) => {}
            Ok(None) => break,
            Err(err) => {
                if !batch.records.is_empty() && sender.send(Ok(batch)).is_err() {
                    return false;
                }
                return sender.send(Err(err)).is_ok();
            }
        }
        if batch.records.len() == BATCH_RECORDS
            && sender.send(Ok(std::mem::take(&mut batch))).is_err()
        {
            return false;
        }
    }
    batch.records.is_empty() || sender.send(Ok(batch)).is_ok()
}

/// Records copied out of a reader's buffers, with their bodies back to back.
#[derive(Default)]
struct Batch {
    bodies: Vec<u8>,
    records: Vec<BatchRecord>,
}

struct BatchRecord {
    seq: u64,
    /// Byte range of the body in [`Batch::bodies`].
    body: Range<usize>,
    prev: Result<ChainHash, String>,
    hash: Result<ChainHash, String>,
    /// The hash the worker computed, when it hashed.
    link: Option<LinkHash>,
}

impl Batch {
    fn add(&mut self, seq: u64, header_block: &[u8], body: &[u8], link: Option<LinkHash>) {
        if self.records.is_empty() {
            self.records.reserve(BATCH_RECORDS);
        }
        let start = self.bodies.len();
        self.bodies.extend_from_slice(body);
        let (prev, hash) = chain_header_values(header_block);
        self.records.push(BatchRecord {
            seq,
            body: start..self.bodies.len(),
            prev: parse_header(headers::PREV, prev),
            hash: parse_header(headers::HASH, hash),
            link,
        });
    }
}

/// Parses a chain header value; the error is the text [`Auditor::push`]
/// reports as found for the same header in a stream message.
fn parse_header(name: &str, value: Option<&[u8]>) -> Result<ChainHash, String> {
    let Some(value) = value else {
        return Err(format!("no {name} header"));
    };
    decode_hash(value)
        .ok_or_else(|| format!("invalid {name} header {:?}", String::from_utf8_lossy(value)))
}
