//! Archive segments written and read back, the committed sample
//! `schemas/samples/archive-v1.ckar`, and damaged files.
//!
//! With `CHECKIN_UPDATE_SCHEMAS=1` the sample test rewrites the sample from
//! `schemas/chain-vectors.json`; otherwise it checks the committed file.

use std::path::{Path, PathBuf};

use async_nats::HeaderMap;
use bytes::Bytes;
use checkin_core::ChainHash;
use checkin_core::chain::{Finding, FindingKind, link_hash};
use checkin_ledger::archive::{
    ArchiveError, ArchiveSet, Segment, SegmentWriter, audit_archive, segment_file_name,
};
use checkin_ledger::audit::{AuditReport, Auditor};
use checkin_ledger::reader::StoredMessage;

/// 2026-05-01T01:30:00Z in nanoseconds; sample record `n` was stored `n` seconds later.
const BASE_NS: i64 = 1_777_599_000_000_000_000;
/// `hash` of records 1 and 7 in `schemas/chain-vectors.json`.
const GENESIS_HASH: &str = "79d2db4ba6242d5136cdc269814cfef8597876041237ce18dfb593cbe975d031";
const LAST_HASH: &str = "f871edb1d208dfd59c7c0d0d35c022aab57c6bdf096f4a97845257bca83be1c9";

fn schemas() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// The records of the chain test vectors as stored ledger messages.
fn vector_messages() -> Vec<StoredMessage> {
    let text =
        std::fs::read_to_string(schemas().join("chain-vectors.json")).expect("vectors readable");
    let document: serde_json::Value = serde_json::from_str(&text).expect("vectors are JSON");
    let records = document["records"].as_array().expect("records array");
    records
        .iter()
        .map(|record| {
            let seq = record["seq"].as_u64().expect("seq");
            let mut headers = HeaderMap::new();
            headers.insert("Checkin-Prev", record["prev"].as_str().expect("prev"));
            headers.insert("Checkin-Hash", record["hash"].as_str().expect("hash"));
            headers.insert("Checkin-Kind", record["kind"].as_str().expect("kind"));
            if seq > 1 {
                headers.insert("Checkin-Intake-Seq", (seq - 1).to_string().as_str());
            }
            let body =
                hex::decode(record["body_hex"].as_str().expect("body_hex")).expect("hex body");
            StoredMessage {
                seq,
                subject: "checkin.ledger".into(),
                headers: Some(headers),
                payload: Bytes::from(body),
                stored_at_unix_ns: i128::from(BASE_NS + seq as i64 * 1_000_000_000),
            }
        })
        .collect()
}

fn vector_hash(messages: &[StoredMessage], seq: u64) -> ChainHash {
    messages[seq as usize - 1]
        .hash_header()
        .expect("vector hash header")
}

/// Writes `messages`, consecutive vector records, as one committed segment in `dir`.
fn write_segment(dir: &Path, messages: &[StoredMessage]) -> PathBuf {
    let all = vector_messages();
    let first = messages[0].seq;
    let first_prev = if first == 1 {
        ChainHash::ZERO
    } else {
        vector_hash(&all, first - 1)
    };
    let mut writer = SegmentWriter::create(dir, first, vector_hash(&all, 1), first_prev)
        .expect("create segment");
    for message in messages {
        writer.push_message(message).expect("push record");
    }
    writer
        .finish()
        .expect("finish segment")
        .commit()
        .expect("commit segment")
        .path
}

#[test]
fn segment_round_trip_keeps_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let messages = vector_messages();
    let path = write_segment(dir.path(), &messages);
    assert_eq!(
        path.file_name().and_then(|name| name.to_str()),
        Some(segment_file_name(1, 7).as_str())
    );

    let segment = Segment::open(&path).expect("open segment");
    assert_eq!(segment.info().count, 7);
    assert_eq!(segment.info().last_hash.to_hex(), LAST_HASH);
    let read: Vec<StoredMessage> = segment
        .records()
        .expect("records")
        .collect::<Result<_, _>>()
        .expect("records verify");
    assert_eq!(read.len(), messages.len());
    for (got, expected) in read.iter().zip(&messages) {
        assert_eq!(got.seq, expected.seq);
        assert_eq!(got.payload, expected.payload);
        assert_eq!(got.stored_at_unix_ns, expected.stored_at_unix_ns);
        assert_eq!(got.subject, "checkin.ledger");
        assert_eq!(got.hash_header(), expected.hash_header());
        assert_eq!(got.header("Checkin-Prev"), expected.header("Checkin-Prev"));
        assert_eq!(got.header("Checkin-Kind"), expected.header("Checkin-Kind"));
        assert_eq!(
            got.header("Checkin-Intake-Seq"),
            expected.header("Checkin-Intake-Seq")
        );
    }
    let files = std::fs::read_dir(dir.path()).expect("list").count();
    assert_eq!(files, 1, "no .tmp file is left behind");
}

#[test]
fn sample_segment_still_verifies() {
    let path = schemas().join("samples/archive-v1.ckar");
    if std::env::var_os("CHECKIN_UPDATE_SCHEMAS").is_some() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write_segment(dir.path(), &vector_messages());
        std::fs::copy(&written, &path).expect("copy sample");
    }

    let segment = Segment::open(&path).expect("the committed sample opens");
    let info = segment.info();
    assert_eq!((info.first_seq, info.last_seq, info.count), (1, 7, 7));
    assert_eq!(info.last_hash.to_hex(), LAST_HASH);
    assert_eq!(info.ledger_id.to_hex(), GENESIS_HASH);
    assert_eq!(info.first_prev, ChainHash::ZERO);

    let vectors = vector_messages();
    let mut seqs = Vec::new();
    segment
        .for_each_record(|record| {
            let expected = &vectors[record.seq as usize - 1];
            assert_eq!(record.body, &expected.payload[..]);
            assert_eq!(Some(record.hash), expected.hash_header());
            assert_eq!(
                record.stored_at_ns,
                BASE_NS + record.seq as i64 * 1_000_000_000
            );
            seqs.push(record.seq);
            Ok::<(), ArchiveError>(())
        })
        .expect("every sample record verifies");
    assert_eq!(seqs, (1..=7).collect::<Vec<u64>>());
}

#[test]
fn flipped_byte_detected_with_file_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_segment(dir.path(), &vector_messages());
    let mut bytes = std::fs::read(&path).expect("read segment");
    bytes[40] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write damaged segment");

    let err = Segment::open(&path).expect_err("a damaged segment must not open");
    assert!(matches!(err, ArchiveError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(err.code(), "archive_digest_mismatch");
}

#[test]
fn truncated_segment_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_segment(dir.path(), &vector_messages());
    let bytes = std::fs::read(&path).expect("read segment");
    std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write truncated segment");

    let err = Segment::open(&path).expect_err("a truncated segment must not open");
    assert!(matches!(err, ArchiveError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("ledger-"), "{err}");
}

#[test]
fn tampered_body_with_fresh_digest_breaks_chain() {
    // A writer that changes a record and writes a valid digest still fails
    // the chain check: the digest alone does not make the archive trustworthy.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut messages = vector_messages();
    let mut body = messages[3].payload.to_vec();
    let last = body.len() - 1;
    body[last] ^= 0x01;
    messages[3].payload = Bytes::from(body);
    let path = write_segment(dir.path(), &messages);

    let segment = Segment::open(&path).expect("digest matches the tampered file");
    let err = segment.verify().expect_err("chain check fails");
    assert!(matches!(err, ArchiveError::BrokenChain { .. }), "{err}");
    assert!(err.to_string().contains("seq 4"), "{err}");

    let set = ArchiveSet::open(dir.path()).expect("the archive opens");
    let err = set
        .verify_parallel(2)
        .expect_err("parallel check fails too");
    assert!(err.to_string().contains("seq 4"), "{err}");
}

#[test]
fn archive_set_checks_continuity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let messages = vector_messages();
    write_segment(dir.path(), &messages[..3]);
    write_segment(dir.path(), &messages[3..]);
    std::fs::write(
        dir.path().join("ledger-00000000000000000008.ckar.tmp"),
        b"partial",
    )
    .expect("write tmp");

    let set = ArchiveSet::open(dir.path()).expect("open archive");
    assert_eq!(set.segments().len(), 2);
    assert_eq!(set.last_seq(), 7);
    assert_eq!(set.last_hash().to_hex(), LAST_HASH);
    assert_eq!(
        set.ledger_id().map(|id| id.to_hex()),
        Some(GENESIS_HASH.into())
    );
    let seqs: Vec<u64> = set
        .records()
        .map(|record| record.expect("record verifies").seq)
        .collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<u64>>());
    assert_eq!(set.verify_parallel(2).expect("segments verify"), 7);
    let holder = set.segment_for(5).map(|segment| segment.info().first_seq);
    assert_eq!(holder, Some(4));
    assert!(set.segment_for(8).is_none());

    let gap = tempfile::tempdir().expect("temp dir");
    write_segment(gap.path(), &messages[..3]);
    write_segment(gap.path(), &messages[4..]);
    let err = ArchiveSet::open(gap.path()).expect_err("a gap between segments is refused");
    assert!(matches!(err, ArchiveError::Discontinuous { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("ledger-00000000000000000005-00000000000000000007.ckar"),
        "{err}"
    );

    let headless = tempfile::tempdir().expect("temp dir");
    write_segment(headless.path(), &messages[3..]);
    let err = ArchiveSet::open(headless.path()).expect_err("an archive must start at genesis");
    assert!(matches!(err, ArchiveError::Discontinuous { .. }), "{err}");
}

/// Audits `dir` through the archive path on `threads` threads.
fn audit_dir(dir: &Path, threads: usize) -> AuditReport {
    let (set, damaged) = ArchiveSet::open_for_audit(dir).expect("the archive opens for audit");
    let mut auditor = Auditor::new(None);
    audit_archive(&set, &damaged, &mut auditor, threads).expect("the archive reads");
    auditor.finish()
}

#[test]
fn audit_reports_tampered_record_as_finding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut messages = vector_messages();
    let original_hash = vector_hash(&messages, 4);
    let mut body = messages[3].payload.to_vec();
    // A bit of the event id, which keeps the record decodable.
    body[20] ^= 0x01;
    messages[3].payload = Bytes::from(body.clone());
    write_segment(dir.path(), &messages[..3]);
    write_segment(dir.path(), &messages[3..]);

    let report = audit_dir(dir.path(), 2);

    let recomputed = link_hash(&vector_hash(&messages, 3), 4, &body);
    let expected = vec![Finding {
        seq: 4,
        kind: FindingKind::HashMismatch,
        expected: recomputed.to_hex(),
        actual: original_hash.to_hex(),
    }];
    assert_eq!(report.findings, expected);
    assert_eq!(report.records, 7);
    assert_eq!(report.head.seq, 7);
    assert_eq!(report.head.hash.to_hex(), LAST_HASH);
}

#[test]
fn audit_matches_pushing_each_message() {
    // Damage of every kind the chain shows, in the last of three segments
    // because the writer chains each footer from the records it was given:
    // the threaded archive path must report what one thread pushing each
    // message reports, in the same order.
    let mut messages = vector_messages();
    let mut body = messages[5].payload.to_vec();
    body[20] ^= 0x10;
    messages[5].payload = Bytes::from(body);
    let hash_of_5 = vector_hash(&messages, 5).to_hex();
    let mut headers = HeaderMap::new();
    headers.insert("Checkin-Prev", "zz");
    headers.insert("Checkin-Hash", hash_of_5.as_str());
    messages[4].headers = Some(headers);
    messages[6].payload = Bytes::from_static(b"\x01\x00not a record");

    let dir = tempfile::tempdir().expect("temp dir");
    write_segment(dir.path(), &messages[..2]);
    write_segment(dir.path(), &messages[2..4]);
    write_segment(dir.path(), &messages[4..]);

    let mut auditor = Auditor::new(None);
    for message in &messages {
        auditor.push(message);
    }
    let pushed = auditor.finish();

    // One thread and two hash in the workers; with four, more than the
    // three segments, the auditor hashes.
    for threads in [1, 2, 4] {
        let archived = audit_dir(dir.path(), threads);
        let kinds: Vec<(u64, FindingKind)> = archived
            .findings
            .iter()
            .map(|finding| (finding.seq, finding.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (5, FindingKind::PrevMismatch),
                (6, FindingKind::HashMismatch),
                (7, FindingKind::HashMismatch),
                (7, FindingKind::Undecodable),
            ],
            "{threads} threads"
        );
        assert_eq!(archived.findings, pushed.findings, "{threads} threads");
        assert_eq!(archived.head, pushed.head, "{threads} threads");
        assert_eq!(archived.ledger_id, pushed.ledger_id, "{threads} threads");
    }
}

#[test]
fn audit_reports_digest_mismatch_with_file_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_segment(dir.path(), &vector_messages());
    let mut bytes = std::fs::read(&path).expect("read segment");
    // A reserved footer byte: covered by the digest, read by nothing else.
    let reserved = bytes.len() - 176 + 10;
    bytes[reserved] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write damaged segment");

    let report = audit_dir(dir.path(), 2);

    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(finding.seq, 1);
    assert_eq!(finding.kind, FindingKind::Undecodable);
    let name = segment_file_name(1, 7);
    assert!(
        finding
            .expected
            .starts_with(&format!("{name}: file_digest ")),
        "{finding}"
    );
    assert_eq!(finding.actual, hex::encode(&bytes[bytes.len() - 32..]));
    assert_eq!(report.records, 7);
}
