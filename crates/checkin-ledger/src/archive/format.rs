//! Byte layout of a segment's header, footer and record frames.

use std::path::Path;
use std::sync::LazyLock;

use async_nats::HeaderMap;
use checkin_core::ChainHash;
use memchr::memmem::Finder;

use super::ArchiveError;

/// Version of the segment format written in the header and footer.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the header in bytes.
pub const HEADER_LEN: u64 = 32;
/// Length of the footer in bytes.
pub const FOOTER_LEN: u64 = 176;
/// The BLAKE3 key-derivation context string of the file digest.
pub const DIGEST_CONTEXT: &str = "checkin 2026-12-04 archive segment v1";

pub(super) const HEADER_MAGIC: &[u8; 8] = b"CKARCHV1";
pub(super) const FOOTER_MAGIC: &[u8; 8] = b"CKARFOOT";
/// Offset of the digest inside the footer; the digest covers everything before it.
pub(super) const DIGEST_OFFSET: usize = 144;
/// Fixed bytes of a record frame besides headers and body: seq, stored time and two lengths.
pub(super) const FRAME_FIXED_LEN: usize = 8 + 8 + 4 + 4;

/// Returns the file name of the segment covering `first..=last`.
pub fn segment_file_name(first: u64, last: u64) -> String {
    format!("ledger-{first:020}-{last:020}.ckar")
}

/// Parses a segment file name back into its range.
pub(super) fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let range = name.strip_prefix("ledger-")?.strip_suffix(".ckar")?;
    let (first, last) = range.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// The fields of a segment footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First sequence in the segment.
    pub first_seq: u64,
    /// Last sequence in the segment.
    pub last_seq: u64,
    /// Number of records.
    pub count: u64,
    /// Length of the compressed body in bytes.
    pub body_len: u64,
    /// Chain hash of the ledger's genesis record.
    pub ledger_id: ChainHash,
    /// `Checkin-Prev` of the record at `first_seq`.
    pub first_prev: ChainHash,
    /// `Checkin-Hash` of the record at `last_seq`.
    pub last_hash: ChainHash,
    /// Digest of the file up to the digest itself.
    pub file_digest: ChainHash,
}

impl SegmentInfo {
    /// Returns the length the whole file must have.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN + self.body_len + FOOTER_LEN
    }

    pub(super) fn encode_header(&self) -> [u8; HEADER_LEN as usize] {
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(HEADER_MAGIC);
        header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        header[24..32].copy_from_slice(&self.last_seq.to_le_bytes());
        header
    }

    /// Encodes the footer; the digest bytes are whatever `file_digest` holds.
    pub(super) fn encode_footer(&self) -> [u8; FOOTER_LEN as usize] {
        let mut footer = [0u8; FOOTER_LEN as usize];
        footer[..8].copy_from_slice(FOOTER_MAGIC);
        footer[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        footer[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        footer[24..32].copy_from_slice(&self.last_seq.to_le_bytes());
        footer[32..40].copy_from_slice(&self.count.to_le_bytes());
        footer[40..48].copy_from_slice(&self.body_len.to_le_bytes());
        footer[48..80].copy_from_slice(&self.ledger_id.0);
        footer[80..112].copy_from_slice(&self.first_prev.0);
        footer[112..144].copy_from_slice(&self.last_hash.0);
        footer[144..176].copy_from_slice(&self.file_digest.0);
        footer
    }

    /// Decodes a footer, checking its magic, format, count and range.
    pub(super) fn decode_footer(
        path: &Path,
        footer: &[u8; FOOTER_LEN as usize],
    ) -> Result<Self, ArchiveError> {
        if &footer[..8] != FOOTER_MAGIC {
            return Err(ArchiveError::invalid(
                path,
                "footer magic is not CKARFOOT: the file is not a segment or was cut short",
            ));
        }
        let format = u16::from_le_bytes([footer[8], footer[9]]);
        if format != FORMAT_VERSION {
            return Err(ArchiveError::invalid(
                path,
                format!("footer names format {format}, this build reads format {FORMAT_VERSION}"),
            ));
        }
        let info = Self {
            first_seq: le_u64(&footer[16..24]),
            last_seq: le_u64(&footer[24..32]),
            count: le_u64(&footer[32..40]),
            body_len: le_u64(&footer[40..48]),
            ledger_id: hash_at(footer, 48),
            first_prev: hash_at(footer, 80),
            last_hash: hash_at(footer, 112),
            file_digest: hash_at(footer, 144),
        };
        if info.first_seq == 0 || info.last_seq < info.first_seq {
            return Err(ArchiveError::invalid(
                path,
                format!(
                    "footer range {}..={} is empty or starts at 0",
                    info.first_seq, info.last_seq
                ),
            ));
        }
        if info.count != info.last_seq - info.first_seq + 1 {
            return Err(ArchiveError::invalid(
                path,
                format!(
                    "footer count {} does not match its range {}..={}",
                    info.count, info.first_seq, info.last_seq
                ),
            ));
        }
        Ok(info)
    }

    /// Checks a header against this footer.
    pub(super) fn check_header(
        &self,
        path: &Path,
        header: &[u8; HEADER_LEN as usize],
    ) -> Result<(), ArchiveError> {
        if &header[..8] != HEADER_MAGIC {
            return Err(ArchiveError::invalid(path, "header magic is not CKARCHV1"));
        }
        let format = u16::from_le_bytes([header[8], header[9]]);
        if format != FORMAT_VERSION {
            return Err(ArchiveError::invalid(
                path,
                format!("header names format {format}, this build reads format {FORMAT_VERSION}"),
            ));
        }
        let flags = u16::from_le_bytes([header[10], header[11]]);
        if flags != 0 {
            return Err(ArchiveError::invalid(
                path,
                format!("header flags are {flags:#06x}, format 1 defines none"),
            ));
        }
        let (first, last) = (le_u64(&header[16..24]), le_u64(&header[24..32]));
        if (first, last) != (self.first_seq, self.last_seq) {
            return Err(ArchiveError::invalid(
                path,
                format!(
                    "header range {first}..={last} differs from footer range {}..={}",
                    self.first_seq, self.last_seq
                ),
            ));
        }
        Ok(())
    }
}

/// Encodes headers as the format stores them: one `Name: value\r\n` line per
/// value, sorted by name and then by value in byte order. Clears `out` first.
pub fn encode_headers(headers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.clear();
    let Some(headers) = headers else {
        return;
    };
    let mut lines: Vec<(&str, &str)> = headers
        .iter()
        .flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |value| (name, value.as_str()))
        })
        .collect();
    lines.sort_unstable();
    for (name, value) in lines {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Iterates the `(name, value)` pairs of encoded headers; `None` on a malformed line.
pub(super) fn header_lines(headers: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    headers
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let colon = line.iter().position(|byte| *byte == b':')?;
            let value = line[colon + 1..].strip_prefix(b" ")?;
            Some((&line[..colon], value))
        })
}

/// Returns the first `Checkin-Prev` and `Checkin-Hash` values of encoded
/// headers, each `None` when absent or not 64 hex digits.
pub(super) fn chain_headers(headers: &[u8]) -> (Option<ChainHash>, Option<ChainHash>) {
    let (prev, hash) = chain_header_values(headers);
    (prev.and_then(decode_hash), hash.and_then(decode_hash))
}

/// Returns the first `Checkin-Prev` and `Checkin-Hash` values of encoded
/// headers as stored, each `None` when absent. The first value is the one a
/// `HeaderMap` lookup of the same message returns.
///
/// This runs once per record on the read path, so it looks for the two
/// names with SIMD substring search instead of splitting every line.
pub(crate) fn chain_header_values(headers: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    static PREV: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"Checkin-Prev: "));
    static HASH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"Checkin-Hash: "));
    (header_value(headers, &PREV), header_value(headers, &HASH))
}

/// Returns the value of the first line that starts with `name`, without the line end.
fn header_value<'a>(headers: &'a [u8], name: &Finder<'_>) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(found) = name.find(&headers[from..]) {
        let start = from + found;
        let value_start = start + name.needle().len();
        if start == 0 || headers[start - 1] == b'\n' {
            let rest = &headers[value_start..];
            let line = match memchr::memchr(b'\n', rest) {
                Some(end) => &rest[..end],
                None => rest,
            };
            return Some(line.strip_suffix(b"\r").unwrap_or(line));
        }
        from = value_start;
    }
    None
}

/// Decodes 64 lowercase or uppercase hex digits.
pub(crate) fn decode_hash(text: &[u8]) -> Option<ChainHash> {
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut index = 0;
        while index < 10 {
            table[b'0' as usize + index] = index as u8;
            index += 1;
        }
        let mut index = 0;
        while index < 6 {
            table[b'a' as usize + index] = 10 + index as u8;
            table[b'A' as usize + index] = 10 + index as u8;
            index += 1;
        }
        table
    };
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (TABLE[pair[0] as usize], TABLE[pair[1] as usize]);
        if high == INVALID || low == INVALID {
            return None;
        }
        *byte = (high << 4) | low;
    }
    Some(ChainHash(hash))
}

pub(super) fn le_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(array)
}

fn hash_at(bytes: &[u8], offset: usize) -> ChainHash {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[offset..offset + 32]);
    ChainHash(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_sequence() {
        let small = segment_file_name(9, 10);
        let large = segment_file_name(11, 100);
        assert_eq!(
            small,
            "ledger-00000000000000000009-00000000000000000010.ckar"
        );
        assert!(small < large);
        assert_eq!(parse_file_name(&large), Some((11, 100)));
        assert_eq!(parse_file_name("ledger-1-2.ckar"), None);
    }

    #[test]
    fn headers_encode_sorted() {
        let mut headers = HeaderMap::new();
        headers.insert("Checkin-Kind", "check_in");
        headers.insert("Checkin-Hash", "bb");
        headers.append("X-Multi", "2");
        headers.append("X-Multi", "1");
        let mut out = Vec::new();
        encode_headers(Some(&headers), &mut out);
        assert_eq!(
            out,
            b"Checkin-Hash: bb\r\nCheckin-Kind: check_in\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
        );
        let lines: Vec<_> = header_lines(&out).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], Some((&b"X-Multi"[..], &b"1"[..])));
    }

    #[test]
    fn chain_headers_decode_hex() {
        let prev = "00ff".repeat(16);
        let hash = "A1b2".repeat(16);
        let text =
            format!("Checkin-Hash: {hash}\r\nCheckin-Kind: void\r\nCheckin-Prev: {prev}\r\n");
        let (found_prev, found_hash) = chain_headers(text.as_bytes());
        assert_eq!(found_prev.map(|value| value.to_hex()), Some(prev));
        assert_eq!(
            found_hash.map(|value| value.to_hex()),
            Some("a1b2".repeat(16))
        );

        let (first_prev, _) = chain_header_values(
            b"X-Checkin-Prev: 1\r\nCheckin-Prev: 2\r\nCheckin-Prev: 3\r\nX: Checkin-Prev: 4",
        );
        assert_eq!(first_prev, Some(&b"2"[..]));
        let (_, unterminated) = chain_header_values(b"Checkin-Hash: ab");
        assert_eq!(unterminated, Some(&b"ab"[..]));

        let (bad_prev, missing_hash) = chain_headers(b"Checkin-Prev: 0g\r\n");
        assert_eq!(bad_prev, None);
        assert_eq!(missing_hash, None);
    }
}
