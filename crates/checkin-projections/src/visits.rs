//! The visit rule shared by the activity and spec models: a customer's scans
//! at one site belong to one visit while each follows the previous one within
//! the visit window, and a visit starts at its first scan.
//!
//! A model keeps each customer's scans at a site as keys
//! `prefix ‖ at_us (8, sign bit flipped, big-endian) ‖ event id (16)`, so
//! a prefix scan lists them by time.

use checkin_core::EventId;

use crate::codec::sortable_i64;
use crate::store::{Overlay, StoreError};

/// A scan that gains (`delta` 1) or loses (`delta` -1) a visit start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StartChange {
    /// The scan's key.
    pub key: Vec<u8>,
    /// When the scan happened, UTC microseconds.
    pub at_us: i64,
    /// 1 when the scan becomes a visit start, -1 when it stops being one.
    pub delta: i64,
}

/// Returns the key of a scan under `prefix`.
pub(crate) fn scan_key(prefix: &[u8], at_us: i64, id: &EventId) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&sortable_i64(at_us).to_be_bytes());
    key.extend_from_slice(&id.0);
    key
}

/// Reads the time back from a scan key.
pub(crate) fn scan_time(key: &[u8], prefix_len: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&key[prefix_len..prefix_len + 8]);
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// Returns the visit starts that change when the scan `key` at `at_us` is
/// inserted into (`insert`) or removed from the scans under `prefix`. Only
/// the scan itself and the next scan can gain or lose a visit start. The
/// caller writes or deletes `key` afterwards.
///
/// `latest_key`, outside `prefix`, contains the part of the latest scan's key
/// after `prefix`; this function keeps it up to date. A scan after the
/// latest one, the common case, then needs a point lookup instead of a
/// range lookup.
///
/// # Errors
///
/// Fails when storage fails.
pub(crate) fn start_changes(
    model: &mut Overlay<'_>,
    prefix: &[u8],
    latest_key: &[u8],
    key: &[u8],
    at_us: i64,
    insert: bool,
    window_us: i64,
) -> Result<Vec<StartChange>, StoreError> {
    let suffix = &key[prefix.len()..];
    let latest = model.get(latest_key)?;
    let (previous, next) = match latest {
        Some(latest) if insert && latest.as_slice() < suffix => (Some(scan_time(&latest, 0)), None),
        None if insert => (None, None),
        _ => {
            let (previous, next) = model.neighbors(prefix, key)?;
            if !insert && next.is_none() {
                // The latest scan goes: the one before it becomes the latest.
                match &previous {
                    Some(previous) => {
                        model.put(latest_key.to_vec(), previous[prefix.len()..].to_vec());
                    }
                    None => model.delete(latest_key.to_vec()),
                }
            }
            (
                previous.map(|other| scan_time(&other, prefix.len())),
                next.map(|other| (other.clone(), scan_time(&other, prefix.len()))),
            )
        }
    };
    if insert && next.is_none() {
        model.put(latest_key.to_vec(), suffix.to_vec());
    }

    let starts =
        |earlier: Option<i64>, at: i64| earlier.is_none_or(|earlier| at - earlier > window_us);
    let sign = if insert { 1 } else { -1 };
    let mut changes = Vec::new();
    if starts(previous, at_us) {
        changes.push(StartChange {
            key: key.to_vec(),
            at_us,
            delta: sign,
        });
    }
    if let Some((next_key, next_at)) = next {
        let without = starts(previous, next_at);
        let with = starts(Some(at_us), next_at);
        if without != with {
            // With the scan present the next one is a start only if it was already one without it.
            changes.push(StartChange {
                key: next_key,
                at_us: next_at,
                delta: if with { sign } else { -sign },
            });
        }
    }
    Ok(changes)
}
