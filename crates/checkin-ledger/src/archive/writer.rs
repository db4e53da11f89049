//! Writing one segment: a temporary file, synced, then renamed into place.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use checkin_core::ChainHash;
use checkin_core::chain::link_hash;

use super::format::{DIGEST_OFFSET, FRAME_FIXED_LEN, HEADER_LEN, SegmentInfo, segment_file_name};
use super::{ArchiveError, encode_headers};
use crate::reader::StoredMessage;

/// zstd level of new segments: level 3 is zstd's default, a good balance of
/// speed and ratio for small, similar records.
const COMPRESSION_LEVEL: i32 = 3;

/// Writes one segment of consecutive records.
///
/// The file is written under a `.tmp` name. [`SegmentWriter::finish`] syncs it
/// and [`PendingSegment::commit`] renames it to its final name and syncs the
/// directory, so a crash leaves either no segment or a whole one, plus at
/// most a `.tmp` file that readers ignore.
pub struct SegmentWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    encoder: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    info: SegmentInfo,
    next_seq: u64,
    /// Decompressed bytes of the record frames written so far.
    raw_len: u64,
    headers: Vec<u8>,
}

impl SegmentWriter {
    /// Starts a segment in `dir` whose first record is `first_seq` and chains
    /// from `first_prev`; `ledger_id` is the genesis record's hash.
    ///
    /// # Errors
    ///
    /// Fails when the temporary file cannot be created.
    pub fn create(
        dir: &Path,
        first_seq: u64,
        ledger_id: ChainHash,
        first_prev: ChainHash,
    ) -> Result<Self, ArchiveError> {
        let tmp_path = dir.join(format!("ledger-{first_seq:020}.ckar.tmp"));
        // Read access too: `finish` reads the file back to compute its digest.
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(ArchiveError::io("create", &tmp_path))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        // The real header goes in at `finish`, once the last sequence is known.
        out.write_all(&[0u8; HEADER_LEN as usize])
            .map_err(ArchiveError::io("write", &tmp_path))?;
        let encoder = zstd::stream::write::Encoder::new(out, COMPRESSION_LEVEL)
            .map_err(ArchiveError::io("start compressing", &tmp_path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tmp_path,
            encoder,
            info: SegmentInfo {
                first_seq,
                last_seq: 0,
                count: 0,
                body_len: 0,
                ledger_id,
                first_prev,
                last_hash: first_prev,
                file_digest: ChainHash::ZERO,
            },
            next_seq: first_seq,
            raw_len: 0,
            headers: Vec::new(),
        })
    }

    /// Returns the number of records added.
    pub fn count(&self) -> u64 {
        self.info.count
    }

    /// Returns the recomputed chain hash of the last record added, or
    /// `first_prev` before the first.
    pub fn last_hash(&self) -> ChainHash {
        self.info.last_hash
    }

    /// Adds the next record. Its chain hash is recomputed from the previous
    /// record's; the caller verifies the stored headers before adding.
    ///
    /// # Errors
    ///
    /// Fails when `seq` is not the next sequence, a part is longer than
    /// `u32::MAX` bytes, or writing fails.
    pub fn push(
        &mut self,
        seq: u64,
        stored_at_ns: i64,
        headers: &[u8],
        body: &[u8],
    ) -> Result<(), ArchiveError> {
        if seq != self.next_seq {
            return Err(self.rejected(seq, format!("expected seq {}", self.next_seq)));
        }
        let headers_len = u32::try_from(headers.len())
            .map_err(|_| self.rejected(seq, "headers are longer than 4 GiB".into()))?;
        let body_len = u32::try_from(body.len())
            .map_err(|_| self.rejected(seq, "body is longer than 4 GiB".into()))?;

        let mut fixed = [0u8; 20];
        fixed[..8].copy_from_slice(&seq.to_le_bytes());
        fixed[8..16].copy_from_slice(&stored_at_ns.to_le_bytes());
        fixed[16..20].copy_from_slice(&headers_len.to_le_bytes());
        let write = |encoder: &mut zstd::stream::write::Encoder<'static, BufWriter<File>>| {
            encoder.write_all(&fixed)?;
            encoder.write_all(headers)?;
            encoder.write_all(&body_len.to_le_bytes())?;
            encoder.write_all(body)
        };
        write(&mut self.encoder).map_err(ArchiveError::io("write", &self.tmp_path))?;

        self.info.last_hash = link_hash(&self.info.last_hash, seq, body);
        self.info.last_seq = seq;
        self.info.count += 1;
        self.next_seq = seq + 1;
        self.raw_len += (FRAME_FIXED_LEN + headers.len() + body.len()) as u64;
        Ok(())
    }

    /// Adds a stored ledger message, encoding its headers as the format requires.
    ///
    /// # Errors
    ///
    /// As [`SegmentWriter::push`]; also fails for a stored time outside the
    /// `i64` nanosecond range (years 1677 to 2262).
    pub fn push_message(&mut self, message: &StoredMessage) -> Result<(), ArchiveError> {
        let stored_at = i64::try_from(message.stored_at_unix_ns).map_err(|_| {
            self.rejected(
                message.seq,
                "stored time is outside the i64 nanosecond range".into(),
            )
        })?;
        let mut headers = std::mem::take(&mut self.headers);
        encode_headers(message.headers.as_ref(), &mut headers);
        let result = self.push(message.seq, stored_at, &headers, &message.payload);
        self.headers = headers;
        result
    }

    /// Ends the body, writes header and footer, and syncs the temporary file.
    ///
    /// # Errors
    ///
    /// Fails for a segment without records, or when writing or syncing fails.
    pub fn finish(mut self) -> Result<PendingSegment, ArchiveError> {
        if self.info.count == 0 {
            return Err(ArchiveError::invalid(
                &self.tmp_path,
                "a segment needs at least one record",
            ));
        }
        let path = self.tmp_path.clone();
        let io = |action| ArchiveError::io(action, &path);

        let out = self.encoder.finish().map_err(io("finish compressing"))?;
        let mut file = out
            .into_inner()
            .map_err(|err| io("write")(err.into_error()))?;
        let end = file.stream_position().map_err(io("seek in"))?;
        self.info.body_len = end - HEADER_LEN;

        file.seek(SeekFrom::Start(0)).map_err(io("seek in"))?;
        file.write_all(&self.info.encode_header())
            .map_err(io("write"))?;
        let footer = self.info.encode_footer();
        file.seek(SeekFrom::Start(end)).map_err(io("seek in"))?;
        file.write_all(&footer[..DIGEST_OFFSET])
            .map_err(io("write"))?;

        self.info.file_digest = digest_file(&mut file, &path)?;
        file.write_all(&self.info.file_digest.0)
            .map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;

        Ok(PendingSegment {
            final_path: self
                .dir
                .join(segment_file_name(self.info.first_seq, self.info.last_seq)),
            tmp_path: self.tmp_path,
            dir: self.dir,
            info: self.info,
            raw_len: self.raw_len,
        })
    }

    fn rejected(&self, seq: u64, detail: String) -> ArchiveError {
        ArchiveError::Rejected {
            path: self.tmp_path.clone(),
            seq,
            detail,
        }
    }
}

/// Computes the digest of the file's bytes from the start to the current end.
fn digest_file(file: &mut File, path: &Path) -> Result<ChainHash, ArchiveError> {
    file.seek(SeekFrom::Start(0))
        .map_err(ArchiveError::io("seek in", path))?;
    let mut hasher = blake3::Hasher::new_derive_key(super::DIGEST_CONTEXT);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(ArchiveError::io("read", path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(ChainHash(*hasher.finalize().as_bytes()))
}

/// A segment written and synced under its temporary name.
pub struct PendingSegment {
    tmp_path: PathBuf,
    final_path: PathBuf,
    dir: PathBuf,
    info: SegmentInfo,
    raw_len: u64,
}

impl PendingSegment {
    /// Returns the footer fields.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// Returns the temporary file's path.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Renames the file to its final name and syncs the directory, so the
    /// name survives a power loss.
    ///
    /// # Errors
    ///
    /// Fails when the rename or the directory sync fails.
    pub fn commit(self) -> Result<WrittenSegment, ArchiveError> {
        std::fs::rename(&self.tmp_path, &self.final_path)
            .map_err(ArchiveError::io("rename", &self.tmp_path))?;
        sync_dir(&self.dir)?;
        Ok(WrittenSegment {
            path: self.final_path,
            info: self.info,
            raw_len: self.raw_len,
        })
    }
}

/// Syncs a directory, so that renames and removals in it are durable.
///
/// # Errors
///
/// Fails when the directory cannot be opened or synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(ArchiveError::io("sync directory", dir))
}

/// A segment in place under its final name.
#[derive(Clone, Debug)]
pub struct WrittenSegment {
    /// Final path.
    pub path: PathBuf,
    /// Footer fields.
    pub info: SegmentInfo,
    /// Decompressed length of the body, for the compression ratio.
    pub raw_len: u64,
}
