//! The canonical byte form of a ledger record: the only module that defines it.
//!
//! Layout: a little-endian `u16` format version, then the record in bincode
//! 2.0 with little-endian fixed-width integers (enum tags as `u32`, lengths
//! as `u64`, `Option` as a `u8` tag). `schemas/record-format.md` spells out
//! every field. Stored bytes are never rewritten: a reader upcasts older
//! versions to the current [`Record`] type instead.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::error::{DecodeError, EncodeError};
use thiserror::Error;

use crate::ids::EventId;
use crate::record::{Record, RecordBody};

/// The record format version this build writes.
pub const CURRENT_VERSION: u16 = 1;

/// Largest encoded record accepted, in bytes; guards decoding of damaged input.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

const CONFIG: Configuration<LittleEndian, Fixint, Limit<MAX_RECORD_BYTES>> =
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_RECORD_BYTES>();

/// Error of decoding record bytes.
#[derive(Debug, Error)]
pub enum DecodeRecordError {
    /// The bytes end before the version field.
    #[error("record is shorter than its 2-byte version field")]
    MissingVersion,
    /// The version is newer than this build or was never assigned.
    #[error("record format version {0} is unknown to this build")]
    UnknownVersion(u16),
    /// The body does not follow the layout of its version.
    #[error("record body does not match format version {version}: {source}")]
    Malformed {
        /// Version the body claimed.
        version: u16,
        /// Error from bincode.
        source: DecodeError,
    },
    /// Bytes remain after a complete record.
    #[error("{0} unexpected bytes after the record")]
    TrailingBytes(usize),
}

/// Error of encoding a record.
#[derive(Debug, Error)]
pub enum EncodeRecordError {
    /// The encoded record would exceed [`MAX_RECORD_BYTES`].
    #[error("encoded record is {0} bytes, over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    /// bincode failed to write the record.
    #[error("failed to encode record: {0}")]
    Bincode(#[from] EncodeError),
}

/// Encodes a record in the current format version.
///
/// # Errors
///
/// Fails when the record is larger than [`MAX_RECORD_BYTES`].
pub fn encode(record: &Record) -> Result<Vec<u8>, EncodeRecordError> {
    let mut bytes = CURRENT_VERSION.to_le_bytes().to_vec();
    bincode::encode_into_std_write(record, &mut bytes, CONFIG)?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(EncodeRecordError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Encodes a record body alone: the bytes that follow the version and
/// `recorded_at_us` in an encoded record of the current version.
///
/// # Errors
///
/// Fails when the body is larger than [`MAX_RECORD_BYTES`].
pub fn encode_body(body: &RecordBody) -> Result<Vec<u8>, EncodeRecordError> {
    let bytes = bincode::encode_to_vec(body, CONFIG)?;
    if bytes.len() + RECORD_HEADER_BYTES > MAX_RECORD_BYTES {
        return Err(EncodeRecordError::TooLarge(
            bytes.len() + RECORD_HEADER_BYTES,
        ));
    }
    Ok(bytes)
}

/// Bytes before the body in an encoded record: the version and `recorded_at_us`.
pub const RECORD_HEADER_BYTES: usize = 2 + 8;

/// Builds the encoded record from its time and a body from [`encode_body`];
/// the result equals [`encode`] of the same record.
pub fn encode_with_body(recorded_at_us: i64, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
    bytes.extend_from_slice(&CURRENT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&recorded_at_us.to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// Decodes record bytes of any known format version into the current type.
///
/// # Errors
///
/// See [`DecodeRecordError`].
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeRecordError> {
    let Some((version, body)) = bytes.split_first_chunk::<2>() else {
        return Err(DecodeRecordError::MissingVersion);
    };
    let version = u16::from_le_bytes(*version);

    match version {
        1 => decode_exact::<Record>(body, version),
        other => Err(DecodeRecordError::UnknownVersion(other)),
    }
}

/// The kind of a record and, for check-ins and voids, its event id, as
/// [`scan`] reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScannedRecord {
    /// A genesis record; decode it for the ledger name.
    Genesis,
    /// A check-in with its event id.
    CheckIn(EventId),
    /// A void with its own event id, not the target's.
    Void(EventId),
}

/// Checks record bytes without building a [`Record`] and returns the kind and
/// event id, for readers that need only those, such as auditors.
///
/// Returns `None` when the bytes are not plainly valid: an error, a version
/// other than 1, a record over [`MAX_RECORD_BYTES`], or a check-in with
/// attributes (bincode checks a container's length against its byte limit
/// before reading it, and this scan does not copy that rule). Call [`decode`]
/// then, which gives the verdict and the error. When this returns `Some`,
/// [`decode`] accepts the same bytes.
pub fn scan(bytes: &[u8]) -> Option<ScannedRecord> {
    let (version, rest) = bytes.split_first_chunk::<2>()?;
    if u16::from_le_bytes(*version) != 1 || rest.len() > MAX_RECORD_BYTES {
        return None;
    }
    let mut cursor = Cursor { rest };
    cursor.take(8)?; // recorded_at_us
    let scanned = match cursor.u32()? {
        0 => {
            cursor.string()?; // ledger
            cursor.string()?; // description
            ScannedRecord::Genesis
        }
        1 => ScannedRecord::CheckIn(scan_check_in(&mut cursor)?),
        2 => {
            let event_id = cursor.event_id()?;
            cursor.take(16)?; // target
            cursor.string()?; // reason
            cursor.string()?; // requested_by
            ScannedRecord::Void(event_id)
        }
        _ => return None,
    };
    cursor.rest.is_empty().then_some(scanned)
}

/// Walks the fields of a version 1 `CheckIn`; returns its event id.
fn scan_check_in(cursor: &mut Cursor<'_>) -> Option<EventId> {
    let event_id = cursor.event_id()?;
    cursor.string()?; // customer
    cursor.string()?; // site
    cursor.string()?; // device
    cursor.take(8 + 4)?; // at_us, utc_offset_s
    if cursor.u32()? > 6 {
        return None; // method
    }
    if cursor.option()? {
        cursor.take(4 + 4)?; // lat_microdeg, lon_microdeg
        if cursor.option()? {
            cursor.take(4)?; // accuracy_cm
        }
    }
    if cursor.option()? {
        cursor.string()?; // activity
    }
    if cursor.option()? {
        cursor.string()?; // staff
    }
    if cursor.u64()? != 0 {
        return None; // attributes: left to `decode`
    }
    if cursor.u32()? > 1 {
        return None; // source
    }
    Some(event_id)
}

/// Reads the fixed-width pieces of a version 1 record from the front of a slice.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.rest.len() < len {
            return None;
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn event_id(&mut self) -> Option<EventId> {
        Some(EventId(self.take(16)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.u64()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// Reads an `Option` tag: `Some(true)` for present, `None` for a tag other than 0 or 1.
    fn option(&mut self) -> Option<bool> {
        match self.take(1)?[0] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

fn decode_exact<T: bincode::Decode<()>>(body: &[u8], version: u16) -> Result<T, DecodeRecordError> {
    let (value, used) = bincode::decode_from_slice(body, CONFIG)
        .map_err(|source| DecodeRecordError::Malformed { version, source })?;
    if used != body.len() {
        return Err(DecodeRecordError::TrailingBytes(body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CheckIn, Genesis, Location, Method, Source, Void};

    fn samples() -> Vec<(Record, ScannedRecord)> {
        let id = EventId([7; 16]);
        let check_in = CheckIn {
            event_id: id,
            customer: "c-1".into(),
            site: "静安".into(),
            device: "d-1".into(),
            at_us: 1_777_599_000_000_000,
            utc_offset_s: 8 * 3600,
            method: Method::Staff,
            location: Some(Location {
                lat_microdeg: 31_230_416,
                lon_microdeg: 121_473_701,
                accuracy_cm: Some(1250),
            }),
            activity: Some("yoga".into()),
            staff: Some("s-1".into()),
            attributes: Vec::new(),
            source: Source::Import,
        };
        let bare = CheckIn {
            location: None,
            activity: None,
            staff: None,
            method: Method::Qr,
            source: Source::Live,
            ..check_in.clone()
        };
        let void = Void {
            event_id: EventId([8; 16]),
            target: id,
            reason: "重复扫码".into(),
            requested_by: "manager-01".into(),
        };
        let genesis = Genesis {
            ledger: "default".into(),
            description: "d".into(),
        };
        let record = |body| Record {
            recorded_at_us: 1,
            body,
        };
        vec![
            (record(RecordBody::Genesis(genesis)), ScannedRecord::Genesis),
            (
                record(RecordBody::CheckIn(check_in)),
                ScannedRecord::CheckIn(id),
            ),
            (
                record(RecordBody::CheckIn(bare)),
                ScannedRecord::CheckIn(id),
            ),
            (
                record(RecordBody::Void(void)),
                ScannedRecord::Void(EventId([8; 16])),
            ),
        ]
    }

    #[test]
    fn scan_reads_kind_and_event_id() {
        for (record, expected) in samples() {
            let bytes = encode(&record).unwrap();
            assert_eq!(scan(&bytes), Some(expected), "record {record:?}");
        }
    }

    #[test]
    fn scan_defers_attributes_to_decode() {
        let (mut record, _) = samples().remove(1);
        let RecordBody::CheckIn(check_in) = &mut record.body else {
            unreachable!("the second sample is a check-in");
        };
        check_in.attributes.push(("k".into(), "v".into()));
        let bytes = encode(&record).unwrap();

        assert_eq!(scan(&bytes), None);
        assert!(decode(&bytes).is_ok());
    }

    /// Damages every byte and cuts every length: whenever the scan accepts
    /// the bytes, the full decoder must accept them with the same event id.
    #[test]
    fn scan_accepts_only_what_decode_accepts() {
        for (record, _) in samples() {
            let bytes = encode(&record).unwrap();
            let mut variants = Vec::new();
            for index in 0..bytes.len() {
                for value in [0x00, 0x01, 0x02, 0x07, 0x80, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[index] = value;
                    variants.push(damaged);
                }
                variants.push(bytes[..index].to_vec());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            variants.push(longer);

            for variant in variants {
                let Some(scanned) = scan(&variant) else {
                    continue;
                };
                let decoded = decode(&variant)
                    .unwrap_or_else(|err| panic!("scan accepted {variant:?}, decode: {err}"));
                let expected = match decoded.body {
                    RecordBody::Genesis(_) => ScannedRecord::Genesis,
                    RecordBody::CheckIn(check_in) => ScannedRecord::CheckIn(check_in.event_id),
                    RecordBody::Void(void) => ScannedRecord::Void(void.event_id),
                };
                assert_eq!(scanned, expected);
            }
        }
    }

    #[test]
    fn encode_with_body_equals_encode() {
        let record = Record {
            recorded_at_us: -1_234_567,
            body: RecordBody::Genesis(Genesis {
                ledger: "静安".into(),
                description: "d".into(),
            }),
        };
        let body = encode_body(&record.body).unwrap();
        assert_eq!(
            encode_with_body(record.recorded_at_us, &body),
            encode(&record).unwrap()
        );
    }
}
