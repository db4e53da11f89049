//! The byte form of model values: bincode 2 with fixed-width little-endian
//! integers, the same configuration as ledger records.

use bincode::{Decode, Encode};

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
