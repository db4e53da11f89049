//! Ledger audit: recomputes the hash chain of stored records and checks what
//! the chain alone cannot, from any source of records.
//!
//! An [`Auditor`] takes [`StoredMessage`]s in sequence order, whether they
//! come from the live stream or from archive segments, and reports
//! [`Finding`]s located by sequence:
//!
//! - every kind [`ChainVerifier`] reports: `gap`, `out_of_order`,
//!   `hash_mismatch`, `prev_mismatch`, `missing_genesis`, and `truncated` or
//!   `fork` against a head recorded earlier;
//! - a missing or malformed `Checkin-Hash` or `Checkin-Prev` header, as
//!   `hash_mismatch` or `prev_mismatch` with the header text as the value found;
//! - `undecodable`: the body is no record of a known format version;
//! - `duplicate_event`: a check-in or void carries an event id that an earlier
//!   record carries.
//!
//! Each record is hashed once: [`Auditor::push_parts`] takes a hash that a
//! reader already computed, such as the archive reader's, when it chained
//! from the same predecessor. Bodies are scanned for their kind and event id
//! without building the record, and decoded in full only for the genesis
//! record and for bodies the scan does not accept. The auditor keeps one map
//! entry per event id and nothing else per record.
//!
//! ```
//! use checkin_ledger::audit::Auditor;
//!
//! let auditor = Auditor::new(None);
//! let report = auditor.finish();
//! assert!(report.is_clean());
//! assert_eq!(report.records, 0);
//! ```

use std::collections::HashMap;
use std::fmt;

use async_nats::HeaderMap;
use async_nats::header::HeaderName;
use checkin_core::chain::{ChainVerifier, Finding, FindingKind, GENESIS_SEQ, LinkHash, StoredLink};
use checkin_core::codec::ScannedRecord;
use checkin_core::record::RecordBody;
use checkin_core::{ChainHash, ChainHead, EventId, codec};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::headers;
use crate::reader::StoredMessage;

/// Version of the checkpoint document this build writes and reads.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// One record as [`Auditor::push_parts`] checks it, borrowing the body.
#[derive(Clone, Debug)]
pub struct RecordParts<'a> {
    /// Stream sequence.
    pub seq: u64,
    /// The message body exactly as stored.
    pub body: &'a [u8],
    /// The `Checkin-Prev` header, or the text to report as found when it is
    /// missing or invalid, such as `no Checkin-Prev header`.
    pub prev: Result<ChainHash, String>,
    /// The `Checkin-Hash` header, or the text to report as found.
    pub hash: Result<ChainHash, String>,
    /// The record's hash as a reader already computed it, with the
    /// predecessor hash it chained from; see [`ChainVerifier::push_known`].
    pub known: Option<LinkHash>,
}

/// Verifies records pushed in sequence order and collects findings.
pub struct Auditor {
    chain: ChainVerifier,
    /// How many of `chain`'s findings were already copied into `findings`.
    chain_findings_seen: usize,
    findings: Vec<Finding>,
    expected_head: Option<ChainHead>,
    /// Genesis hash the records must chain from, such as a checkpoint's `ledger_id`.
    expected_ledger_id: Option<ChainHash>,
    /// Recomputed hash of the record at `expected_head.seq`, once pushed.
    hash_at_expected: Option<ChainHash>,
    /// Sequence of the first record that carried each event id.
    first_seq_of_event: HashMap<EventId, u64>,
    first_seq: Option<u64>,
    genesis: Option<(String, ChainHash)>,
    prev_header: HeaderName,
    hash_header: HeaderName,
}

impl Auditor {
    /// Starts an audit at the beginning of a ledger.
    ///
    /// `expected_head` is a head recorded earlier, such as a checkpoint. The
    /// auditor needs it before the first push because the `fork` check
    /// compares it with the hash recomputed at its sequence, and keeps no
    /// other per-record hashes.
    pub fn new(expected_head: Option<ChainHead>) -> Self {
        Self {
            chain: ChainVerifier::new(),
            chain_findings_seen: 0,
            findings: Vec::new(),
            expected_head,
            expected_ledger_id: None,
            hash_at_expected: None,
            first_seq_of_event: HashMap::new(),
            first_seq: None,
            genesis: None,
            prev_header: HeaderName::from_static(headers::PREV),
            hash_header: HeaderName::from_static(headers::HASH),
        }
    }

    /// Also checks that the genesis record hashes to `ledger_id`, and reports
    /// a `fork` at sequence 1 when it does not: the whole history was
    /// rewritten, or the records belong to another ledger of the same name.
    pub fn expect_ledger_id(mut self, ledger_id: ChainHash) -> Self {
        self.expected_ledger_id = Some(ledger_id);
        self
    }

    /// Checks the next stored record.
    pub fn push(&mut self, message: &StoredMessage) {
        let prev = self.header_hash(message.headers.as_ref(), &self.prev_header);
        let hash = self.header_hash(message.headers.as_ref(), &self.hash_header);
        self.push_parts(RecordParts {
            seq: message.seq,
            body: &message.payload,
            prev,
            hash,
            known: None,
        });
    }

    /// Checks the next stored record, given as its parts; [`Auditor::push`]
    /// is this for a [`StoredMessage`].
    pub fn push_parts(&mut self, parts: RecordParts<'_>) {
        let seq = parts.seq;
        self.first_seq.get_or_insert(seq);
        let previous_hash = self.chain.head().hash;

        let link = StoredLink {
            seq,
            body: parts.body,
            prev: parts.prev.as_ref().ok().copied(),
            hash: parts.hash.as_ref().ok().copied(),
        };
        let computed = self.chain.push_known(link, parts.known).hash;
        self.collect_chain_findings();

        if let Err(text) = parts.prev {
            self.report(seq, FindingKind::PrevMismatch, previous_hash, text);
        }
        if let Err(text) = parts.hash {
            self.report(seq, FindingKind::HashMismatch, computed, text);
        }
        if let Some(expected) = self.expected_head
            && expected.seq == seq
        {
            self.hash_at_expected = Some(computed);
        }

        self.check_body(seq, parts.body, computed);
    }

    /// Reserves room for `additional` more event ids, so that auditing a
    /// source of known size, such as an archive, does not grow the map step
    /// by step.
    pub fn reserve_events(&mut self, additional: usize) {
        self.first_seq_of_event.reserve(additional);
    }

    /// Adds a finding that a source of records found outside the chain,
    /// such as a damaged archive segment.
    pub fn add_finding(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Ends the audit: compares the end with the expected head and returns the report.
    pub fn finish(mut self) -> AuditReport {
        if let Some(expected) = self.expected_head {
            self.chain
                .check_expected_head(expected, self.hash_at_expected);
            self.collect_chain_findings();
        }
        let head = self.chain.head();
        let (ledger, ledger_id) = match self.genesis {
            Some((name, id)) => (Some(name), Some(id)),
            None => (None, None),
        };
        AuditReport {
            ledger,
            ledger_id,
            first_seq: self.first_seq,
            last_seq: self.first_seq.map(|_| head.seq),
            records: self.chain.records(),
            head,
            findings: self.findings,
        }
    }

    /// Returns how many records were pushed.
    pub fn records(&self) -> u64 {
        self.chain.records()
    }

    /// Returns the findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Parses a chain header; the error is the text to report as found.
    fn header_hash(
        &self,
        headers: Option<&HeaderMap>,
        name: &HeaderName,
    ) -> Result<ChainHash, String> {
        let Some(value) = headers.and_then(|headers| headers.get(name.clone())) else {
            return Err(format!("no {name} header"));
        };
        value
            .as_str()
            .parse()
            .map_err(|_| format!("invalid {name} header {:?}", value.as_str()))
    }

    /// Notes the genesis record and event ids. Scanning is enough for
    /// check-ins and voids; the genesis record at seq 1 and bodies the scan
    /// does not accept are decoded in full.
    fn check_body(&mut self, seq: u64, body: &[u8], computed: ChainHash) {
        match codec::scan(body) {
            Some(ScannedRecord::CheckIn(event_id) | ScannedRecord::Void(event_id)) => {
                self.note_event(event_id, seq);
            }
            Some(ScannedRecord::Genesis) if seq != GENESIS_SEQ => {}
            _ => self.decode_body(seq, body, computed),
        }
    }

    fn decode_body(&mut self, seq: u64, body: &[u8], computed: ChainHash) {
        let record = match codec::decode(body) {
            Ok(record) => record,
            Err(err) => {
                self.report(
                    seq,
                    FindingKind::Undecodable,
                    "a record of a known format version",
                    err,
                );
                return;
            }
        };

        match record.body {
            RecordBody::Genesis(genesis) if seq == GENESIS_SEQ => {
                if let Some(expected) = self.expected_ledger_id
                    && expected != computed
                {
                    self.report(seq, FindingKind::Fork, expected, computed);
                }
                self.genesis = Some((genesis.ledger, computed));
            }
            RecordBody::Genesis(_) => {}
            RecordBody::CheckIn(check_in) => self.note_event(check_in.event_id, seq),
            RecordBody::Void(void) => self.note_event(void.event_id, seq),
        }
    }

    fn note_event(&mut self, event_id: EventId, seq: u64) {
        let first = *self.first_seq_of_event.entry(event_id).or_insert(seq);
        if first != seq {
            self.report(
                seq,
                FindingKind::DuplicateEvent,
                format!("event {event_id} recorded once"),
                format!("event {event_id} already recorded at seq {first}"),
            );
        }
    }

    fn collect_chain_findings(&mut self) {
        let new = &self.chain.findings()[self.chain_findings_seen..];
        self.findings.extend_from_slice(new);
        self.chain_findings_seen = self.chain.findings().len();
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
}

/// Outcome of an audit.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    /// Ledger name from the genesis record, when the audit saw it.
    pub ledger: Option<String>,
    /// Recomputed hash of the genesis record: the ledger's identity.
    pub ledger_id: Option<ChainHash>,
    /// First sequence checked; `None` when no record was pushed.
    pub first_seq: Option<u64>,
    /// Last sequence checked; `None` when no record was pushed.
    pub last_seq: Option<u64>,
    /// Number of records checked.
    pub records: u64,
    /// The head as recomputed.
    pub head: ChainHead,
    /// Findings in the order found.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// Tells whether the audit found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A ledger head recorded outside the stream, so that a later audit can
/// detect a truncated or rewritten history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Ledger name from the genesis record.
    pub ledger: String,
    /// `Checkin-Hash` of the genesis record.
    pub ledger_id: ChainHash,
    /// Sequence of the head record.
    pub seq: u64,
    /// `Checkin-Hash` of the head record.
    pub hash: ChainHash,
    /// RFC 3339 time at which JetStream stored the head record.
    pub time: String,
    /// Checkpoint document version, [`CHECKPOINT_FORMAT`].
    pub format: u32,
}

/// Error of reading a checkpoint document.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The text is not a checkpoint document.
    #[error("invalid checkpoint document: {0}")]
    Invalid(#[from] serde_json::Error),
    /// The document has a version this build does not read.
    #[error(
        "checkpoint format {0} is unknown to this build, which reads format {CHECKPOINT_FORMAT}"
    )]
    UnknownFormat(u32),
}

impl Checkpoint {
    /// Parses a checkpoint document.
    ///
    /// # Errors
    ///
    /// Fails when the text is not a checkpoint of format [`CHECKPOINT_FORMAT`].
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        let checkpoint: Self = serde_json::from_str(text)?;
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::UnknownFormat(checkpoint.format));
        }
        Ok(checkpoint)
    }

    /// Returns the recorded head.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ledger {} ({}) at seq {} hash {}",
            self.ledger, self.ledger_id, self.seq, self.hash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use checkin_core::Record;
    use checkin_core::record::{CheckIn, Genesis, Method, Source};

    fn genesis() -> Record {
        Record {
            recorded_at_us: 1_777_599_600_000_000,
            body: RecordBody::Genesis(Genesis {
                ledger: "test".into(),
                description: "unit test ledger".into(),
            }),
        }
    }

    fn check_in(event: u128) -> Record {
        Record {
            recorded_at_us: 1_777_599_600_000_000,
            body: RecordBody::CheckIn(CheckIn {
                event_id: EventId::from(uuid::Uuid::from_u128(event)),
                customer: "c-1".into(),
                site: "s-1".into(),
                device: "d-1".into(),
                at_us: 1_777_599_000_000_000,
                utc_offset_s: 8 * 3600,
                method: Method::Qr,
                location: None,
                activity: None,
                staff: None,
                attributes: Vec::new(),
                source: Source::Live,
            }),
        }
    }

    /// Builds stored messages with correct chain headers for `bodies` from seq 1.
    fn chain(bodies: Vec<Vec<u8>>) -> Vec<StoredMessage> {
        let mut head = ChainHead::EMPTY;
        bodies
            .into_iter()
            .map(|body| {
                let prev = head.hash;
                head = head.advance(&body);
                let mut headers = HeaderMap::new();
                headers.insert(headers::PREV, prev.to_hex().as_str());
                headers.insert(headers::HASH, head.hash.to_hex().as_str());
                StoredMessage {
                    seq: head.seq,
                    subject: "checkin.ledger".into(),
                    headers: Some(headers),
                    payload: Bytes::from(body),
                    stored_at_unix_ns: 0,
                }
            })
            .collect()
    }

    fn encoded(records: &[Record]) -> Vec<Vec<u8>> {
        records
            .iter()
            .map(|record| codec::encode(record).expect("record encodes"))
            .collect()
    }

    fn audit(messages: &[StoredMessage], expected: Option<ChainHead>) -> AuditReport {
        let mut auditor = Auditor::new(expected);
        for message in messages {
            auditor.push(message);
        }
        auditor.finish()
    }

    fn kinds(report: &AuditReport) -> Vec<(u64, FindingKind)> {
        report
            .findings
            .iter()
            .map(|finding| (finding.seq, finding.kind))
            .collect()
    }

    #[test]
    fn sound_ledger_is_clean() {
        let messages = chain(encoded(&[genesis(), check_in(1), check_in(2)]));
        let report = audit(&messages, None);

        assert!(report.is_clean(), "findings: {:?}", report.findings);
        assert_eq!(report.records, 3);
        assert_eq!(report.first_seq, Some(1));
        assert_eq!(report.last_seq, Some(3));
        assert_eq!(report.ledger.as_deref(), Some("test"));
        assert_eq!(report.ledger_id, messages[0].hash_header());
    }

    #[test]
    fn repeated_event_id_is_duplicate_event() {
        let messages = chain(encoded(&[genesis(), check_in(7), check_in(8), check_in(7)]));
        let report = audit(&messages, None);

        assert_eq!(kinds(&report), vec![(4, FindingKind::DuplicateEvent)]);
        let id = EventId::from(uuid::Uuid::from_u128(7));
        assert_eq!(
            report.findings[0].expected,
            format!("event {id} recorded once")
        );
        assert_eq!(
            report.findings[0].actual,
            format!("event {id} already recorded at seq 2")
        );
    }

    #[test]
    fn garbage_body_is_undecodable() {
        let mut bodies = encoded(&[genesis(), check_in(1)]);
        bodies.push(b"\x01\x00not a record".to_vec());
        let report = audit(&chain(bodies), None);

        assert_eq!(kinds(&report), vec![(3, FindingKind::Undecodable)]);
    }

    #[test]
    fn missing_hash_header_is_hash_mismatch() {
        let mut messages = chain(encoded(&[genesis(), check_in(1), check_in(2)]));
        let computed = messages[1].hash_header().expect("hash header");
        let mut headers = HeaderMap::new();
        headers.insert(
            headers::PREV,
            messages[0].hash_header().unwrap().to_hex().as_str(),
        );
        messages[1].headers = Some(headers);
        let report = audit(&messages, None);

        assert_eq!(kinds(&report), vec![(2, FindingKind::HashMismatch)]);
        assert_eq!(report.findings[0].expected, computed.to_hex());
        assert_eq!(report.findings[0].actual, "no Checkin-Hash header");
    }

    #[test]
    fn malformed_prev_header_is_prev_mismatch() {
        let mut messages = chain(encoded(&[genesis(), check_in(1)]));
        let hash = messages[1].hash_header().expect("hash header");
        let mut headers = HeaderMap::new();
        headers.insert(headers::PREV, "zz");
        headers.insert(headers::HASH, hash.to_hex().as_str());
        messages[1].headers = Some(headers);
        let report = audit(&messages, None);

        assert_eq!(kinds(&report), vec![(2, FindingKind::PrevMismatch)]);
        assert_eq!(
            report.findings[0].actual,
            "invalid Checkin-Prev header \"zz\""
        );
    }

    #[test]
    fn checkpoint_beyond_end_is_truncated() {
        let messages = chain(encoded(&[genesis(), check_in(1), check_in(2), check_in(3)]));
        let recorded = ChainHead {
            seq: 4,
            hash: messages[3].hash_header().expect("hash header"),
        };
        let report = audit(&messages[..2], Some(recorded));

        assert_eq!(kinds(&report), vec![(3, FindingKind::Truncated)]);
        assert_eq!(report.findings[0].expected, "4");
        assert_eq!(report.findings[0].actual, "2");
    }

    #[test]
    fn checkpoint_with_other_hash_is_fork() {
        let messages = chain(encoded(&[genesis(), check_in(1), check_in(2)]));
        let recorded = ChainHead {
            seq: 2,
            hash: ChainHash([9; 32]),
        };
        let report = audit(&messages, Some(recorded));

        assert_eq!(kinds(&report), vec![(2, FindingKind::Fork)]);
        assert_eq!(
            report.findings[0].actual,
            messages[1].hash_header().unwrap().to_hex()
        );
    }

    #[test]
    fn other_ledger_id_is_fork_at_genesis() {
        let messages = chain(encoded(&[genesis(), check_in(1)]));
        let mut auditor = Auditor::new(None).expect_ledger_id(ChainHash([3; 32]));
        for message in &messages {
            auditor.push(message);
        }
        let report = auditor.finish();

        assert_eq!(kinds(&report), vec![(1, FindingKind::Fork)]);
        assert_eq!(report.findings[0].expected, ChainHash([3; 32]).to_hex());
        assert_eq!(
            report.findings[0].actual,
            messages[0].hash_header().unwrap().to_hex()
        );
    }

    #[test]
    fn checkpoint_round_trips() {
        let checkpoint = Checkpoint {
            ledger: "test".into(),
            ledger_id: ChainHash([1; 32]),
            seq: 42,
            hash: ChainHash([2; 32]),
            time: "2026-12-04T10:00:00.000000Z".into(),
            format: CHECKPOINT_FORMAT,
        };
        let text = serde_json::to_string(&checkpoint).expect("checkpoint serialises");
        assert_eq!(Checkpoint::from_json(&text).expect("parses"), checkpoint);

        let newer = text.replace("\"format\":1", "\"format\":2");
        assert!(matches!(
            Checkpoint::from_json(&newer),
            Err(CheckpointError::UnknownFormat(2))
        ));
    }
}
