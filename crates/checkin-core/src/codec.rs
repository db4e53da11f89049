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
    use crate::record::Genesis;

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
