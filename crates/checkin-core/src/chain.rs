//! The hash chain that links ledger records.
//!
//! For the record at stream sequence `n` with canonical bytes `body`:
//!
//! ```text
//! hash(n) = BLAKE3-derive-key(CHAIN_CONTEXT,
//!               prev_hash ‖ n as u64 LE ‖ body.len() as u64 LE ‖ body)
//! ```
//!
//! where `prev_hash` is `hash(n-1)`, and 32 zero bytes for the genesis record
//! at sequence 1. The sequence is the JetStream stream sequence, so a deleted
//! message shows up as a gap and a moved message hashes differently.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The BLAKE3 key-derivation context string of the chain.
pub const CHAIN_CONTEXT: &str = "checkin 2026-12-04 ledger record chain v1";

/// Sequence of the genesis record in every ledger stream.
pub const GENESIS_SEQ: u64 = 1;

/// A 32-byte chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of the genesis record.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// Returns the lowercase hex form used in headers and reports.
    pub fn to_hex(&self) -> String {
        // `encode_to_slice` looks each byte up in a table, where `hex::encode`
        // goes through a char iterator, and headers need this twice per record.
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).expect("64 bytes hold 32 bytes as hex");
        String::from_utf8(text.to_vec()).expect("hex digits are ASCII")
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

/// Error for text that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid chain hash: expected 64 hex digits")]
pub struct ParseChainHashError;

impl FromStr for ChainHash {
    type Err = ParseChainHashError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseChainHashError)?;
        Ok(Self(bytes))
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Computes the chain hash of the record at `seq` whose predecessor hashed to `prev`.
pub fn link_hash(prev: &ChainHash, seq: u64, body: &[u8]) -> ChainHash {
    // Deriving the key from the context string costs a BLAKE3 compression;
    // cloning a hasher that already did it skips that for every record.
    static KEYED: std::sync::LazyLock<blake3::Hasher> =
        std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(CHAIN_CONTEXT));
    let mut hasher = KEYED.clone();
    hasher.update(&prev.0);
    hasher.update(&seq.to_le_bytes());
    hasher.update(&(body.len() as u64).to_le_bytes());
    hasher.update(body);
    ChainHash(*hasher.finalize().as_bytes())
}

/// The last record of a chain: its sequence and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChainHead {
    /// Stream sequence of the last record.
    pub seq: u64,
    /// Chain hash of the last record.
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of a ledger with no records yet.
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: ChainHash::ZERO,
    };

    /// Returns the head after appending `body` at the next sequence.
    pub fn advance(&self, body: &[u8]) -> ChainHead {
        let seq = self.seq + 1;
        ChainHead {
            seq,
            hash: link_hash(&self.hash, seq, body),
        }
    }
}

/// A record as stored, with the chain headers that travelled beside it.
#[derive(Clone, Copy, Debug)]
pub struct StoredLink<'a> {
    /// Stream sequence.
    pub seq: u64,
    /// Canonical record bytes.
    pub body: &'a [u8],
    /// The `prev` header, if the store kept one.
    pub prev: Option<ChainHash>,
    /// The `hash` header, if the store kept one.
    pub hash: Option<ChainHash>,
}

/// A record's chain hash and the predecessor hash it was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkHash {
    /// Hash of the predecessor the record was chained from.
    pub prev: ChainHash,
    /// `link_hash(prev, seq, body)` of the record.
    pub hash: ChainHash,
}

/// Kind of problem found at one place in a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Sequences are missing: records were deleted or never written.
    Gap,
    /// A sequence arrived that is not above the previous one.
    OutOfOrder,
    /// The recomputed hash differs from the `hash` header: the body or the
    /// header was changed, or the record sits at another sequence than the one
    /// it was chained at.
    HashMismatch,
    /// The `prev` header does not name the previous record's hash.
    PrevMismatch,
    /// The chain ends before the head an auditor recorded earlier.
    Truncated,
    /// The record at the recorded head's sequence hashes differently: the
    /// history was rewritten or forked since the head was recorded.
    Fork,
    /// The first record is not at sequence 1.
    MissingGenesis,
    /// A check-in or void carries an event id that an earlier record already
    /// carries. Only an auditor that decodes records reports it.
    DuplicateEvent,
    /// The body is not a record of a known format version. Only an auditor
    /// that decodes records reports it.
    Undecodable,
}

impl FindingKind {
    /// All kinds, for catalogues and tests.
    pub const ALL: [FindingKind; 9] = [
        Self::Gap,
        Self::OutOfOrder,
        Self::HashMismatch,
        Self::PrevMismatch,
        Self::Truncated,
        Self::Fork,
        Self::MissingGenesis,
        Self::DuplicateEvent,
        Self::Undecodable,
    ];

    /// Returns the stable snake_case name.
    ///
    /// The names are a public contract: audit reports and the Python verifier
    /// use them. Add kinds freely; never rename or reuse one.
    pub fn as_str(self) -> &'static str {
        self.texts().0
    }

    /// Parses a stable snake_case name.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == code)
    }

    /// Returns the English description of what the finding means.
    pub fn message_en(self) -> &'static str {
        self.texts().1
    }

    /// Returns the Simplified Chinese description of what the finding means.
    pub fn message_zh(self) -> &'static str {
        self.texts().2
    }

    /// Returns (code, English description, Chinese description).
    fn texts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Gap => (
                "gap",
                "sequences are missing: records were deleted or never written",
                "序号缺失：记录被删除或从未写入",
            ),
            Self::OutOfOrder => (
                "out_of_order",
                "a record arrived at a sequence not above the previous one",
                "记录的序号不大于前一条记录",
            ),
            Self::HashMismatch => (
                "hash_mismatch",
                "the recomputed hash differs from the Checkin-Hash header: \
                 the body or the header was changed, or the record moved",
                "重新计算的哈希与 Checkin-Hash 头不符：内容或头被修改，或记录被移动",
            ),
            Self::PrevMismatch => (
                "prev_mismatch",
                "the Checkin-Prev header does not name the previous record's hash",
                "Checkin-Prev 头与前一条记录的哈希不符",
            ),
            Self::Truncated => (
                "truncated",
                "the ledger ends before a head that was recorded earlier",
                "账本在先前记录的链头之前结束",
            ),
            Self::Fork => (
                "fork",
                "the record at a recorded head now hashes differently: \
                 history was rewritten after the head was recorded",
                "先前记录的链头处的记录哈希已改变：链头记录之后历史被改写",
            ),
            Self::MissingGenesis => (
                "missing_genesis",
                "the first record is not the genesis record at sequence 1",
                "第一条记录不是序号 1 的创世记录",
            ),
            Self::DuplicateEvent => (
                "duplicate_event",
                "an event id is recorded a second time",
                "同一事件 ID 被重复记录",
            ),
            Self::Undecodable => (
                "undecodable",
                "the body is not a record of a known format version",
                "内容不是已知格式版本的记录",
            ),
        }
    }
}

/// One problem found in a chain, located by sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// First affected sequence.
    pub seq: u64,
    /// Kind of problem.
    pub kind: FindingKind,
    /// The value a sound chain has there.
    pub expected: String,
    /// The value found.
    pub actual: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seq {}: {} (expected {}, found {})",
            self.seq,
            self.kind.as_str(),
            self.expected,
            self.actual
        )
    }
}

/// Recomputes a chain record by record and collects what is wrong.
///
/// After a finding the verifier goes on from the stored record, so one
/// tampered or deleted record yields one finding rather than a finding per
/// later record.
#[derive(Debug)]
pub struct ChainVerifier {
    head: ChainHead,
    /// The stored `hash` header of the last record when it disagreed with the
    /// recomputed hash; the next record may chain from either.
    alternate_prev: Option<ChainHash>,
    findings: Vec<Finding>,
    records: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// Starts at the beginning of a ledger: the next record must be genesis at sequence 1.
    pub fn new() -> Self {
        Self::resume(ChainHead::EMPTY)
    }

    /// Starts after a trusted head, such as the last record of an archive.
    pub fn resume(head: ChainHead) -> Self {
        Self {
            head,
            alternate_prev: None,
            findings: Vec::new(),
            records: 0,
        }
    }

    /// Checks the next stored record and returns its recomputed hash.
    pub fn push(&mut self, link: StoredLink<'_>) -> ChainHash {
        self.push_known(link, None).hash
    }

    /// Checks the next stored record like [`ChainVerifier::push`], and
    /// returns its hash with the predecessor hash it chained from.
    ///
    /// `known` is this record's hash as another verifier computed it, such as
    /// an archive reader. It is used only when its `prev` is the predecessor
    /// this verifier picks, so the record is hashed once when both agree.
    /// The caller guarantees `known.hash == link_hash(&known.prev, link.seq, link.body)`.
    pub fn push_known(&mut self, link: StoredLink<'_>, known: Option<LinkHash>) -> LinkHash {
        self.records += 1;
        let expected_seq = self.head.seq + 1;

        if link.seq < expected_seq {
            self.report(link.seq, FindingKind::OutOfOrder, expected_seq, link.seq);
        } else if link.seq > expected_seq {
            let kind = if self.head.seq == 0 {
                FindingKind::MissingGenesis
            } else {
                FindingKind::Gap
            };
            self.report(expected_seq, kind, expected_seq, link.seq);
        }

        // Across a gap the missing record's hash is unknown, so the stored
        // `prev` is taken as given. The record is still checked against its
        // own `hash` header, and one deletion gives one finding.
        let prev = match link.prev {
            Some(stored_prev) if link.seq > expected_seq => stored_prev,
            _ => self.choose_prev(link),
        };
        let computed = match known {
            Some(known) if known.prev == prev => known.hash,
            _ => link_hash(&prev, link.seq, link.body),
        };

        self.alternate_prev = None;
        if let Some(stored) = link.hash
            && stored != computed
        {
            self.report(link.seq, FindingKind::HashMismatch, computed, stored);
            self.alternate_prev = Some(stored);
        }

        self.head = ChainHead {
            seq: link.seq.max(self.head.seq),
            hash: computed,
        };
        LinkHash {
            prev,
            hash: computed,
        }
    }

    /// Picks the predecessor hash for `link`, reporting a `prev` header that matches neither candidate.
    fn choose_prev(&mut self, link: StoredLink<'_>) -> ChainHash {
        let computed = self.head.hash;
        let Some(stored_prev) = link.prev else {
            return computed;
        };
        if stored_prev == computed {
            return computed;
        }
        if Some(stored_prev) == self.alternate_prev {
            return stored_prev;
        }
        self.report(link.seq, FindingKind::PrevMismatch, computed, stored_prev);
        computed
    }

    /// Compares the end of the chain with a head an auditor recorded earlier.
    ///
    /// Call this once all records were pushed; `hash_at` returns the recomputed
    /// hash of a sequence already pushed, if one was.
    pub fn check_expected_head(&mut self, expected: ChainHead, hash_at: Option<ChainHash>) {
        if self.head.seq < expected.seq {
            self.report(
                self.head.seq + 1,
                FindingKind::Truncated,
                expected.seq,
                self.head.seq,
            );
            return;
        }
        if let Some(actual) = hash_at
            && actual != expected.hash
        {
            self.report(expected.seq, FindingKind::Fork, expected.hash, actual);
        }
    }

    fn report(
        &mut self,
        seq: u64,
        kind: FindingKind,
        expected: impl ToString,
        actual: impl ToString,
    ) {
        self.findings.push(Finding {
            seq,
            kind,
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }

    /// Returns the head as recomputed so far.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Returns how many records were pushed.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Returns the findings so far, in the order they were found.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Ends verification and returns the findings.
    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_hex_matches_hex_encode() {
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(37).wrapping_add(0xa5);
        }
        for hash in [ChainHash::ZERO, ChainHash([0xff; 32]), ChainHash(bytes)] {
            assert_eq!(hash.to_hex(), hex::encode(hash.0));
        }
    }
}
