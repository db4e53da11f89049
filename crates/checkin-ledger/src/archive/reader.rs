//! Opening a segment, checking it and reading its records back.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};

use async_nats::HeaderMap;
use bytes::Bytes;
use checkin_core::ChainHash;
use checkin_core::ChainHead;
use checkin_core::chain::{ChainVerifier, GENESIS_SEQ, LinkHash, StoredLink};

use super::ArchiveError;
use super::format::{
    DIGEST_OFFSET, FOOTER_LEN, HEADER_LEN, SegmentInfo, chain_headers, header_lines,
};
use crate::reader::StoredMessage;
use crate::topology::LEDGER_SUBJECT;

/// Largest header block or body a reader accepts; ledger messages are at most
/// 64 KiB, so anything larger is damage, and refusing it bounds allocations.
const MAX_PART_LEN: usize = 16 * 1024 * 1024;
/// Read buffer of the decompressed body.
const READ_BUFFER: usize = 256 * 1024;

type BodyDecoder = zstd::stream::read::Decoder<'static, BufReader<Take<File>>>;

/// A segment file whose footer, length and digest were checked.
#[derive(Clone, Debug)]
pub struct Segment {
    path: PathBuf,
    info: SegmentInfo,
}

impl Segment {
    /// Opens a segment and checks its footer, its length, the header against
    /// the footer, and the file digest (steps 1 to 3 of the format's reading
    /// rules). Reading the records checks the rest.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Invalid`] for a file that breaks the format,
    /// [`ArchiveError::DigestMismatch`] for a damaged one,
    /// [`ArchiveError::Io`] when reading fails. Each names the file.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let (segment, damage) = Self::open_reporting_digest(path)?;
        match damage {
            Some(_) => Err(ArchiveError::DigestMismatch {
                path: path.to_path_buf(),
            }),
            None => Ok(segment),
        }
    }

    /// Opens a segment like [`Segment::open`], but returns a digest mismatch
    /// beside the segment instead of failing, so that an auditor can still
    /// read the records and report which ones changed.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Invalid`] for a file that breaks the format,
    /// [`ArchiveError::Io`] when reading fails.
    pub fn open_reporting_digest(
        path: &Path,
    ) -> Result<(Self, Option<DigestMismatch>), ArchiveError> {
        let io = |action| ArchiveError::io(action, path);
        let mut file = File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("read metadata of"))?.len();
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(ArchiveError::invalid(
                path,
                format!("file is {len} bytes, shorter than a header and a footer"),
            ));
        }

        let mut footer = [0u8; FOOTER_LEN as usize];
        file.seek(SeekFrom::Start(len - FOOTER_LEN))
            .map_err(io("seek in"))?;
        file.read_exact(&mut footer).map_err(io("read"))?;
        let info = SegmentInfo::decode_footer(path, &footer)?;
        if info.file_len() != len {
            return Err(ArchiveError::invalid(
                path,
                format!(
                    "file is {len} bytes, the footer implies {}",
                    info.file_len()
                ),
            ));
        }

        let mut header = [0u8; HEADER_LEN as usize];
        file.seek(SeekFrom::Start(0)).map_err(io("seek in"))?;
        file.read_exact(&mut header).map_err(io("read"))?;
        info.check_header(path, &header)?;

        let digest_len = len - FOOTER_LEN + DIGEST_OFFSET as u64;
        let computed = digest(&mut file, digest_len, path)?;
        let damage = (computed != info.file_digest).then(|| DigestMismatch {
            path: path.to_path_buf(),
            first_seq: info.first_seq,
            stored: info.file_digest,
            computed,
        });
        let segment = Self {
            path: path.to_path_buf(),
            info,
        };
        Ok((segment, damage))
    }

    /// Returns the file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the footer fields.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// Starts reading the records; each is checked as it is read.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened again or decompression cannot start.
    pub fn reader(&self) -> Result<RecordReader, ArchiveError> {
        RecordReader::open(&self.path, self.info, true)
    }

    /// Starts reading the records for an auditor. A record off the chain or
    /// at an unexpected sequence is returned instead of failing, and the
    /// footer's `last_hash` and `ledger_id` are not checked, so that the
    /// auditor reports each finding by sequence. The framing is still
    /// checked: a body that ends early or has bytes after the last record fails.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened again or decompression cannot start.
    pub fn audit_reader(&self) -> Result<RecordReader, ArchiveError> {
        RecordReader::open(&self.path, self.info, false)
    }

    /// Calls `visit` with every record in order, borrowing the record's
    /// bytes instead of allocating a [`StoredMessage`] for it.
    ///
    /// # Errors
    ///
    /// Returns the first error of reading or verifying a record, or of `visit`.
    pub fn for_each_record<E: From<ArchiveError>>(
        &self,
        mut visit: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut reader = self.reader()?;
        while let Some(record) = reader.next_record()? {
            visit(record)?;
        }
        Ok(())
    }

    /// Reads every record and checks the whole segment (steps 4 and 5 of the
    /// format's reading rules); returns the number of records.
    ///
    /// # Errors
    ///
    /// Returns the first problem found.
    pub fn verify(&self) -> Result<u64, ArchiveError> {
        let mut count = 0;
        self.for_each_record(|_| {
            count += 1;
            Ok::<(), ArchiveError>(())
        })?;
        Ok(count)
    }

    /// Iterates the records as owned [`StoredMessage`]s.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened again.
    pub fn records(&self) -> Result<SegmentRecords, ArchiveError> {
        Ok(SegmentRecords {
            reader: Some(self.reader()?),
        })
    }
}

/// Digest of the first `len` bytes of `file`.
fn digest(file: &mut File, len: u64, path: &Path) -> Result<ChainHash, ArchiveError> {
    file.seek(SeekFrom::Start(0))
        .map_err(ArchiveError::io("seek in", path))?;
    let mut hasher = blake3::Hasher::new_derive_key(super::DIGEST_CONTEXT);
    let mut limited = file.take(len);
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let read = limited
            .read(&mut buffer)
            .map_err(ArchiveError::io("read", path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(ChainHash(*hasher.finalize().as_bytes()))
}

/// One record frame as read from a segment, not hashed, borrowing the
/// reader's buffers.
#[derive(Clone, Copy, Debug)]
pub struct RecordFrame<'a> {
    /// Stream sequence.
    pub seq: u64,
    /// When JetStream stored the record, Unix nanoseconds.
    pub stored_at_ns: i64,
    /// Headers as the format encodes them: `Name: value\r\n` lines.
    pub headers: &'a [u8],
    /// The message body exactly as stored.
    pub body: &'a [u8],
}

/// A segment whose recomputed file digest differs from its footer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestMismatch {
    /// Segment file.
    pub path: PathBuf,
    /// First sequence the footer names.
    pub first_seq: u64,
    /// `file_digest` from the footer.
    pub stored: ChainHash,
    /// Digest of the file as it is.
    pub computed: ChainHash,
}

/// One record as read from a segment, borrowing the reader's buffers.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// Stream sequence.
    pub seq: u64,
    /// When JetStream stored the record, Unix nanoseconds.
    pub stored_at_ns: i64,
    /// Headers as the format encodes them: `Name: value\r\n` lines.
    pub headers: &'a [u8],
    /// The message body exactly as stored.
    pub body: &'a [u8],
    /// The recomputed chain hash of this record.
    pub hash: ChainHash,
    /// The predecessor hash that `hash` was computed from.
    pub prev_hash: ChainHash,
}

impl RecordRef<'_> {
    /// Copies the record into a [`StoredMessage`] on the ledger subject,
    /// rebuilding its headers.
    pub fn to_message(&self) -> StoredMessage {
        let mut map = HeaderMap::new();
        for (name, value) in header_lines(self.headers).flatten() {
            if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
                map.append(name, value);
            }
        }
        StoredMessage {
            seq: self.seq,
            subject: LEDGER_SUBJECT.to_string(),
            headers: Some(map),
            payload: Bytes::copy_from_slice(self.body),
            stored_at_unix_ns: i128::from(self.stored_at_ns),
        }
    }
}

/// Reads the records of one segment in order, checking each: sequences
/// without gaps, the chain from `first_prev`, the genesis hash against the
/// ledger id, and at the end the count, `last_hash` and no trailing bytes.
/// A reader from [`Segment::audit_reader`] checks only the count and the
/// framing.
pub struct RecordReader {
    path: PathBuf,
    info: SegmentInfo,
    /// Whether sequence and chain problems are errors, not left to an auditor.
    strict: bool,
    input: BufReader<BodyDecoder>,
    verifier: ChainVerifier,
    next_seq: u64,
    remaining: u64,
    headers: Vec<u8>,
    body: Vec<u8>,
}

impl RecordReader {
    fn open(path: &Path, info: SegmentInfo, strict: bool) -> Result<Self, ArchiveError> {
        let mut file = File::open(path).map_err(ArchiveError::io("open", path))?;
        file.seek(SeekFrom::Start(HEADER_LEN))
            .map_err(ArchiveError::io("seek in", path))?;
        let compressed = BufReader::with_capacity(READ_BUFFER, file.take(info.body_len));
        let decoder = zstd::stream::read::Decoder::with_buffer(compressed)
            .map_err(ArchiveError::io("start decompressing", path))?
            .single_frame();
        let start = ChainHead {
            seq: info.first_seq - 1,
            hash: info.first_prev,
        };
        Ok(Self {
            path: path.to_path_buf(),
            info,
            strict,
            input: BufReader::with_capacity(READ_BUFFER, decoder),
            verifier: ChainVerifier::resume(start),
            next_seq: info.first_seq,
            remaining: info.count,
            headers: Vec::with_capacity(512),
            body: Vec::with_capacity(1024),
        })
    }

    /// Reads and checks the next record; `None` after the last one.
    ///
    /// # Errors
    ///
    /// Fails at the first record that is missing, malformed or off the chain,
    /// or at the end when the body contains more than the footer counts.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, ArchiveError> {
        let Some((seq, stored_at_ns)) = self.read_frame()? else {
            return Ok(None);
        };
        let link = self.check_link(seq)?;
        self.remaining -= 1;
        self.next_seq += 1;
        if self.remaining == 0 {
            self.check_end()?;
        }
        Ok(Some(RecordRef {
            seq,
            stored_at_ns,
            headers: &self.headers,
            body: &self.body,
            hash: link.hash,
            prev_hash: link.prev,
        }))
    }

    /// Reads the next record without hashing it; `None` after the last one.
    ///
    /// This checks the framing, the count and, unless the reader is from
    /// [`Segment::audit_reader`], the sequences, but not the chain: it is
    /// for callers that hash the records themselves, such as an auditor.
    ///
    /// # Errors
    ///
    /// Fails at the first record that is missing or malformed, or at the end
    /// when the body contains more than the footer counts.
    pub fn next_frame(&mut self) -> Result<Option<RecordFrame<'_>>, ArchiveError> {
        let Some((seq, stored_at_ns)) = self.read_frame()? else {
            return Ok(None);
        };
        self.remaining -= 1;
        self.next_seq += 1;
        if self.remaining == 0 {
            self.check_no_trailing_bytes()?;
        }
        Ok(Some(RecordFrame {
            seq,
            stored_at_ns,
            headers: &self.headers,
            body: &self.body,
        }))
    }

    /// Reads the next record frame into the buffers; returns its sequence
    /// and stored time, or `None` after the last one.
    fn read_frame(&mut self) -> Result<Option<(u64, i64)>, ArchiveError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut fixed = [0u8; 20];
        self.read_exact_part(&mut fixed)?;
        let seq = super::format::le_u64(&fixed[..8]);
        let stored_at_ns = super::format::le_u64(&fixed[8..16]) as i64;
        if self.strict && seq != self.next_seq {
            return Err(ArchiveError::invalid(
                &self.path,
                format!("record seq {seq} found where seq {} belongs", self.next_seq),
            ));
        }
        let headers_len = u32::from_le_bytes([fixed[16], fixed[17], fixed[18], fixed[19]]);
        let mut headers = std::mem::take(&mut self.headers);
        let read = self.read_part(&mut headers, headers_len as usize, seq);
        self.headers = headers;
        read?;

        let mut body_len = [0u8; 4];
        self.read_exact_part(&mut body_len)?;
        let mut body = std::mem::take(&mut self.body);
        let read = self.read_part(&mut body, u32::from_le_bytes(body_len) as usize, seq);
        self.body = body;
        read?;
        Ok(Some((seq, stored_at_ns)))
    }

    fn read_exact_part(&mut self, buffer: &mut [u8]) -> Result<(), ArchiveError> {
        self.input
            .read_exact(buffer)
            .map_err(|err| self.read_error(err))
    }

    fn read_part(
        &mut self,
        buffer: &mut Vec<u8>,
        len: usize,
        seq: u64,
    ) -> Result<(), ArchiveError> {
        if len > MAX_PART_LEN {
            return Err(ArchiveError::invalid(
                &self.path,
                format!("seq {seq}: a part of {len} bytes is larger than any ledger message"),
            ));
        }
        buffer.resize(len, 0);
        self.input
            .read_exact(buffer)
            .map_err(|err| self.read_error(err))
    }

    fn read_error(&self, err: std::io::Error) -> ArchiveError {
        if err.kind() == ErrorKind::UnexpectedEof {
            let read = self.info.count - self.remaining;
            return ArchiveError::invalid(
                &self.path,
                format!(
                    "body ends inside record {} of {}",
                    read + 1,
                    self.info.count
                ),
            );
        }
        ArchiveError::Io {
            action: "decompress",
            path: self.path.clone(),
            source: err,
        }
    }

    /// Verifies the record in the buffers against the chain; returns its hash
    /// and the predecessor hash it was computed from.
    fn check_link(&mut self, seq: u64) -> Result<LinkHash, ArchiveError> {
        let (prev, hash) = chain_headers(&self.headers);
        let link = StoredLink {
            seq,
            body: &self.body,
            prev,
            hash,
        };
        let pushed = self.verifier.push_known(link, None);
        if !self.strict {
            return Ok(pushed);
        }
        let hash = pushed.hash;
        if let Some(finding) = self.verifier.findings().first() {
            return Err(ArchiveError::BrokenChain {
                path: self.path.clone(),
                detail: finding.to_string(),
            });
        }
        if seq == GENESIS_SEQ && hash != self.info.ledger_id {
            return Err(ArchiveError::BrokenChain {
                path: self.path.clone(),
                detail: format!(
                    "the genesis record hashes to {hash}, the footer's ledger id is {}",
                    self.info.ledger_id
                ),
            });
        }
        Ok(pushed)
    }

    /// Checks, after the last record, the footer's `last_hash` and that no bytes follow.
    fn check_end(&mut self) -> Result<(), ArchiveError> {
        let head = self.verifier.head();
        if self.strict && head.hash != self.info.last_hash {
            return Err(ArchiveError::BrokenChain {
                path: self.path.clone(),
                detail: format!(
                    "seq {}: the chain ends at {}, the footer's last hash is {}",
                    head.seq, head.hash, self.info.last_hash
                ),
            });
        }
        self.check_no_trailing_bytes()
    }

    fn check_no_trailing_bytes(&mut self) -> Result<(), ArchiveError> {
        let mut extra = [0u8; 1];
        let trailing = self
            .input
            .read(&mut extra)
            .map_err(|err| self.read_error(err))?;
        let compressed = self.input.get_ref().get_ref();
        if trailing != 0 || !compressed.buffer().is_empty() || compressed.get_ref().limit() != 0 {
            return Err(ArchiveError::invalid(
                &self.path,
                "bytes follow the last record of the body",
            ));
        }
        Ok(())
    }
}

/// The records of one segment as owned messages; ends after the first error.
pub struct SegmentRecords {
    reader: Option<RecordReader>,
}

impl Iterator for SegmentRecords {
    type Item = Result<StoredMessage, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        match reader.next_record() {
            Ok(Some(record)) => Some(Ok(record.to_message())),
            Ok(None) => {
                self.reader = None;
                None
            }
            Err(err) => {
                self.reader = None;
                Some(Err(err))
            }
        }
    }
}
