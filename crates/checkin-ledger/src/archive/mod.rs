//! Archive segments: compressed, self-verifying files that hold a sealed
//! range of the ledger after it leaves the stream.
//!
//! The format is `schemas/archive-format.md`, version 1. In short, a file
//! `ledger-<first>-<last>.ckar` holds a 32-byte header, one zstd frame with
//! the records (sequence, stored time, headers, body, each length-prefixed),
//! and a 176-byte footer with the range, the chain ends and a BLAKE3 digest
//! of everything before the digest.
//!
//! [`SegmentWriter`] writes one segment, [`Segment`] opens and verifies one,
//! and [`ArchiveSet`] opens a directory of segments that continue each other.
//! Reading a record recomputes its chain hash, so every record an iterator
//! yields was checked against the chain from the archive's genesis.
//! [`audit_archive`] reads the segments on several threads for an auditor,
//! which reports chain problems as findings instead of failing on them.

mod audit;
mod error;
mod format;
mod reader;
mod set;
mod writer;

pub use audit::audit_archive;
pub use error::ArchiveError;
pub use format::{
    DIGEST_CONTEXT, FOOTER_LEN, FORMAT_VERSION, HEADER_LEN, SegmentInfo, encode_headers,
    segment_file_name,
};
pub use reader::{DigestMismatch, RecordFrame, RecordReader, RecordRef, Segment, SegmentRecords};
pub use set::ArchiveSet;
pub use writer::{PendingSegment, SegmentWriter, WrittenSegment};
