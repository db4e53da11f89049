//! The byte form of model values: bincode 2 with fixed-width little-endian
//! integers, the same configuration as ledger records.

use bincode::{Decode, Encode};
use chrono::{Datelike, NaiveDate};

use crate::runner::ProjectionError;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
> = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding();

pub(crate) fn encode<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, CONFIG).expect("model values encode into memory")
}

pub(crate) fn decode<T: Decode<()>>(key: &[u8], bytes: &[u8]) -> Result<T, ProjectionError> {
    bincode::decode_from_slice(bytes, CONFIG)
        .map(|(value, _)| value)
        .map_err(|err| ProjectionError::Corrupt {
            key: String::from_utf8_lossy(key).escape_default().to_string(),
            detail: err.to_string(),
        })
}

/// Encodes a date as 4 key bytes that sort by date: days since 0001-01-01
/// (chrono's `num_days_from_ce`) as u32 with the sign bit flipped, big-endian.
pub(crate) fn day_key(day: NaiveDate) -> [u8; 4] {
    ((day.num_days_from_ce() as u32) ^ (1 << 31)).to_be_bytes()
}

/// Decodes the bytes of [`day_key`].
pub(crate) fn day_from_key(bytes: [u8; 4]) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt((u32::from_be_bytes(bytes) ^ (1 << 31)) as i32)
}

/// Maps an i64 onto a u64 that sorts the same way as big-endian bytes.
pub(crate) fn sortable_i64(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}
