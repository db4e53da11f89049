//! `checkin audit verify` and the independent Python verifier find each kind
//! of tampering with a ledger a real sequencer wrote, at the same sequence.
//!
//! Every expected finding is worked out from the damage the test does, never
//! from either verifier's output. Both verifiers run on every ledger and must
//! agree on every finding.
//!
//! The ledger stream denies message deletes, and nats-server 2.15 rejects a
//! stream update that cancels `deny_delete` (error 10052). So the tests that
//! delete messages act as an administrator would: they recreate the stream
//! without `deny_delete`, copy every message back in order so that each keeps
//! its sequence, then delete through the JetStream API.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use checkin_core::chain::link_hash;
use checkin_core::record::RecordBody;
use checkin_core::{ChainHash, EventId, codec};
use checkin_ledger::archive::{DIGEST_CONTEXT, Segment, segment_file_name};
use checkin_ledger::headers;
use checkin_ledger::reader::{StoredMessage, StreamReader};
use checkin_ledger::topology::{INTAKE_LIVE, LEDGER_STREAM, LEDGER_SUBJECT};
use common::*;
use futures::StreamExt;
use serde_json::Value;
use uuid::Uuid;

/// Check-ins recorded in each test ledger, after the genesis record.
const CHECK_INS: u64 = 12;
/// Sequence of the last record of each test ledger.
const HEAD: u64 = CHECK_INS + 1;

/// A ledger written by a real sequencer, which is stopped again.
struct Ledger {
    server: NatsServer,
    data: PathBuf,
    config: PathBuf,
    js: jetstream::Context,
    /// Every record as stored, in sequence order from 1.
    messages: Vec<StoredMessage>,
}

/// One finding as both verifiers print it in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    seq: u64,
    kind: String,
    expected: String,
    actual: String,
}

impl Found {
    fn new(seq: u64, kind: &str, expected: impl ToString, actual: impl ToString) -> Self {
        Self {
            seq,
            kind: kind.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }
}

/// The outcome of one verifier run.
struct Verdict {
    exit_code: i32,
    report: Value,
}

impl Verdict {
    fn findings(&self) -> Vec<Found> {
        self.report["findings"]
            .as_array()
            .expect("findings is an array")
            .iter()
            .map(|finding| Found {
                seq: finding["seq"].as_u64().expect("seq is a number"),
                kind: finding["kind"].as_str().expect("kind").into(),
                expected: finding["expected"].as_str().expect("expected").into(),
                actual: finding["actual"].as_str().expect("actual").into(),
            })
            .collect()
    }
}

async fn build_ledger() -> Ledger {
    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = write_config(&data, "");
    let js = jetstream::new(server.client().await);

    let sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    wait_for_genesis(&js).await;
    let payloads: Vec<(Option<String>, Vec<u8>)> = (0..CHECK_INS)
        .map(|index| {
            let id = EventId::from(Uuid::new_v4());
            let body = check_in(&id, &format!("c-{index:04}"), now_shanghai());
            (
                None,
                serde_json::to_vec(&body).expect("check-in serialises"),
            )
        })
        .collect();
    publish_all(&js, INTAKE_LIVE, &payloads).await;
    wait_for_ledger(&js, HEAD, Duration::from_secs(60)).await;
    sequencer.kill_hard();

    let messages = read_messages(&js).await;
    assert_eq!(
        messages.len() as u64,
        HEAD,
        "ledger records before tampering"
    );
    Ledger {
        server,
        data,
        config,
        js,
        messages,
    }
}

async fn read_messages(js: &jetstream::Context) -> Vec<StoredMessage> {
    let reader = StreamReader::open(js, LEDGER_STREAM)
        .await
        .expect("ledger stream exists");
    let mut stream = reader.read_all().await.expect("ledger read");
    let mut messages = Vec::new();
    while let Some(message) = stream.next().await {
        messages.push(message.expect("ledger message"));
    }
    messages
}

impl Ledger {
    fn hash_of(&self, seq: u64) -> ChainHash {
        self.messages[seq as usize - 1]
            .hash_header()
            .expect("sound records carry Checkin-Hash")
    }

    fn rust_verify(&self, args: &[&str]) -> Verdict {
        let output = checkin_command(&self.server, &self.data, &self.config)
            .args(["audit", "verify", "--json"])
            .args(args)
            .output()
            .expect("failed to run checkin audit verify");
        verdict("checkin audit verify", output)
    }

    fn python_verify(&self, args: &[&str]) -> Verdict {
        let output = Command::new("python3")
            .arg(workspace_root().join("tools/verify_ledger.py"))
            .args(["stream", "--nats", &self.server.url(), "--json"])
            .args(args)
            .output()
            .expect("failed to run python3");
        verdict("tools/verify_ledger.py", output)
    }

    /// Runs both verifiers, checks that they agree, and returns the Rust verdict.
    fn verify_both(&self, args: &[&str]) -> Verdict {
        let rust = self.rust_verify(args);
        let python = self.python_verify(args);

        assert_eq!(python.exit_code, rust.exit_code, "exit codes differ");
        assert_eq!(python.report["records"], rust.report["records"]);
        assert_eq!(python.report["ledger_id"], rust.report["ledger_id"]);
        assert_eq!(python.report["head"], rust.report["head"]);
        let comparable = |findings: Vec<Found>| -> Vec<Found> {
            // The decoders word their errors differently; kind and seq must match.
            findings
                .into_iter()
                .map(|mut found| {
                    if found.kind == "undecodable" {
                        found.actual.clear();
                    }
                    found
                })
                .collect()
        };
        assert_eq!(
            comparable(python.findings()),
            comparable(rust.findings()),
            "the Python verifier disagrees with checkin audit verify"
        );
        rust
    }

    /// Writes `checkin audit checkpoint --out FILE` and returns the file.
    fn checkpoint(&self) -> PathBuf {
        let path = self.data.join("checkpoint.json");
        let path_text = path.to_str().expect("utf-8 path");
        checkin_output(
            &self.server,
            &self.data,
            &self.config,
            &["audit", "checkpoint", "--out", path_text],
        );
        path
    }

    /// Recreates the ledger stream without `deny_delete` and copies back every
    /// record, each at its original sequence.
    async fn rebuild_allowing_delete(&self) -> stream::Stream {
        let mut original = self.js.get_stream(LEDGER_STREAM).await.expect("stream");
        let mut config = original.info().await.expect("stream info").config.clone();
        self.js
            .delete_stream(LEDGER_STREAM)
            .await
            .expect("delete stream");
        config.deny_delete = false;
        let stream = self
            .js
            .create_stream(config)
            .await
            .expect("recreate stream");

        for message in &self.messages {
            let ack =
                publish_record(&self.js, message.headers.as_ref(), message.payload.clone()).await;
            assert_eq!(ack, message.seq, "copied record landed at another sequence");
        }
        stream
    }
}

/// Publishes a ledger record with only its `Checkin-*` headers and returns its sequence.
async fn publish_record(
    js: &jetstream::Context,
    original: Option<&HeaderMap>,
    payload: bytes::Bytes,
) -> u64 {
    let mut copied = HeaderMap::new();
    for name in [headers::PREV, headers::HASH, headers::KIND] {
        if let Some(value) = headers::text(original, name) {
            copied.insert(name, value);
        }
    }
    js.publish_with_headers(LEDGER_SUBJECT, copied, payload)
        .await
        .expect("publish to the ledger")
        .await
        .expect("ledger acknowledged")
        .sequence
}

/// Builds `Checkin-Prev` and `Checkin-Hash` headers.
fn chain_headers(prev: ChainHash, hash: ChainHash) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(headers::PREV, prev.to_hex().as_str());
    map.insert(headers::HASH, hash.to_hex().as_str());
    map
}

fn verdict(program: &str, output: std::process::Output) -> Verdict {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let exit_code = output.status.code().expect("verifier exited normally");
    assert_ne!(
        exit_code, 2,
        "{program} could not run: {stderr}\nIf Python packages are missing, run: \
         python3 -m pip install blake3 nats-py zstandard (versions in scripts/test.sh)"
    );
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{program} printed invalid JSON ({err}): {stdout}\n{stderr}"));
    Verdict { exit_code, report }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn event_id_of(message: &StoredMessage) -> EventId {
    let record = codec::decode(&message.payload).expect("record decodes");
    match record.body {
        RecordBody::CheckIn(check_in) => check_in.event_id,
        other => panic!("expected a check-in, found {:?}", other.kind()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_ledger_verifies_clean() {
    let ledger = build_ledger().await;
    let checkpoint_path = ledger.checkpoint();

    let checkpoint: Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint_path).expect("checkpoint"))
            .expect("checkpoint is JSON");
    let genesis_hash = link_hash(&ChainHash::ZERO, 1, &ledger.messages[0].payload);
    assert_eq!(checkpoint["ledger"], "test");
    assert_eq!(checkpoint["ledger_id"], genesis_hash.to_hex());
    assert_eq!(checkpoint["seq"], HEAD);
    assert_eq!(checkpoint["hash"], ledger.hash_of(HEAD).to_hex());
    assert_eq!(checkpoint["format"], 1);
    let time = chrono::DateTime::parse_from_rfc3339(checkpoint["time"].as_str().expect("time"))
        .expect("time is RFC 3339");
    let stored_at = ledger.messages[HEAD as usize - 1].stored_at_unix_ns;
    assert_eq!(
        i128::from(time.timestamp_nanos_opt().expect("in range")),
        stored_at
    );

    let checkpoint_arg = checkpoint_path.to_str().expect("utf-8 path");
    let verdict = ledger.verify_both(&["--checkpoint", checkpoint_arg]);
    assert_eq!(verdict.exit_code, 0);
    assert_eq!(verdict.findings(), Vec::<Found>::new());
    assert_eq!(verdict.report["records"], HEAD);
    assert_eq!(verdict.report["first_seq"], 1);
    assert_eq!(verdict.report["last_seq"], HEAD);
    assert_eq!(verdict.report["ledger"], "test");
    assert_eq!(verdict.report["ledger_id"], genesis_hash.to_hex());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_message_is_gap() {
    let ledger = build_ledger().await;
    let stream = ledger.rebuild_allowing_delete().await;

    assert!(stream.delete_message(5).await.expect("delete seq 5"));

    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(verdict.findings(), vec![Found::new(5, "gap", 5, 6)]);
}

/// Flips one bit of the customer id of the record at seq 7 in the stream's
/// block file while the server is stopped, so the record would still decode.
///
/// nats-server 2.15.1 keeps a checksum per stored message. In both cases
/// below it did not return the damaged bytes, so neither verifier reads a
/// changed body. What they report depends on how the server stopped, and
/// both findings are located at seq 7.
fn flip_bit_of_record_7(ledger: &mut Ledger, clean_stop: bool) {
    let body = ledger.messages[6].payload.to_vec();
    let customer = b"c-0005";
    let offset_in_body = body
        .windows(customer.len())
        .position(|window| window == customer)
        .expect("customer id inside the body");

    if clean_stop {
        ledger.server.stop_cleanly();
    } else {
        ledger.server.stop();
    }
    let block = find_block_containing(&ledger.server.store_dir(), &body);
    let mut bytes = std::fs::read(&block).expect("read block file");
    let body_at = bytes
        .windows(body.len())
        .position(|window| window == body.as_slice())
        .expect("body inside the block file");
    bytes[body_at + offset_in_body] ^= 0x01;
    std::fs::write(&block, bytes).expect("write block file");
    ledger.server.start_again();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_after_clean_stop_is_gap() {
    let mut ledger = build_ledger().await;
    flip_bit_of_record_7(&mut ledger, true);

    // The server keeps counting the record but returns "not found" for it,
    // so both verifiers read around it and report the hole.
    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(verdict.findings(), vec![Found::new(7, "gap", 7, 8)]);
    assert_eq!(verdict.report["records"], HEAD - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_after_kill_is_truncated() {
    let mut ledger = build_ledger().await;
    let checkpoint = ledger.checkpoint();
    flip_bit_of_record_7(&mut ledger, false);

    // After SIGKILL the server rebuilds the block on start, checks each
    // message and drops the damaged one and all after it in the block: a
    // shorter chain that is sound on its own, so only the checkpoint shows it.
    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 0);
    assert_eq!(verdict.report["last_seq"], 6);

    let checkpoint_arg = checkpoint.to_str().expect("utf-8 path");
    let verdict = ledger.verify_both(&["--checkpoint", checkpoint_arg]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(
        verdict.findings(),
        vec![Found::new(7, "truncated", HEAD, 6)]
    );
}

/// Returns the one `.blk` file of the ledger stream that contains `needle`.
fn find_block_containing(store: &Path, needle: &[u8]) -> PathBuf {
    let mut pending = vec![store.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read store directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "blk")
                && path.to_string_lossy().contains(LEDGER_STREAM)
            {
                let bytes = std::fs::read(&path).expect("read block file");
                if bytes.windows(needle.len()).any(|window| window == needle) {
                    found.push(path);
                }
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "block files containing the record: {found:?}"
    );
    found.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_record_is_prev_mismatch() {
    let ledger = build_ledger().await;
    let forged = codec::encode(&checkin_core::Record {
        recorded_at_us: 1_777_599_600_000_000,
        body: codec::decode(&ledger.messages[3].payload)
            .map(|record| match record.body {
                RecordBody::CheckIn(mut check_in) => {
                    check_in.event_id = EventId::from(Uuid::new_v4());
                    check_in.customer = "c-forged".into();
                    RecordBody::CheckIn(check_in)
                }
                other => other,
            })
            .expect("record decodes"),
    })
    .expect("forged record encodes");
    let wrong_prev = ChainHash([0x5a; 32]);
    let forged_hash = link_hash(&wrong_prev, HEAD + 1, &forged);
    let seq = ledger
        .js
        .publish_with_headers(
            LEDGER_SUBJECT,
            chain_headers(wrong_prev, forged_hash),
            forged.clone().into(),
        )
        .await
        .expect("publish forged record")
        .await
        .expect("ledger acknowledged")
        .sequence;
    assert_eq!(seq, HEAD + 1);

    let recomputed = link_hash(&ledger.hash_of(HEAD), HEAD + 1, &forged);
    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(
        verdict.findings(),
        vec![
            Found::new(HEAD + 1, "prev_mismatch", ledger.hash_of(HEAD), wrong_prev),
            Found::new(HEAD + 1, "hash_mismatch", recomputed, forged_hash),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_tail_is_truncated_against_checkpoint() {
    let ledger = build_ledger().await;
    let checkpoint = ledger.checkpoint();
    let stream = ledger.rebuild_allowing_delete().await;

    assert!(stream.delete_message(HEAD).await.expect("delete head"));
    assert!(
        stream
            .delete_message(HEAD - 1)
            .await
            .expect("delete head - 1")
    );

    // Without the checkpoint the shorter chain is sound on its own.
    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 0);
    assert_eq!(verdict.report["last_seq"], HEAD - 2);

    let checkpoint_arg = checkpoint.to_str().expect("utf-8 path");
    let verdict = ledger.verify_both(&["--checkpoint", checkpoint_arg]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(
        verdict.findings(),
        vec![Found::new(HEAD - 1, "truncated", HEAD, HEAD - 2)]
    );

    let expect_head = format!("{HEAD}:{}", ledger.hash_of(HEAD));
    let verdict = ledger.verify_both(&["--expect-head", &expect_head]);
    assert_eq!(
        verdict.findings(),
        vec![Found::new(HEAD - 1, "truncated", HEAD, HEAD - 2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_event_id_is_duplicate_event() {
    let ledger = build_ledger().await;
    let original = &ledger.messages[2];
    let event_id = event_id_of(original);
    let hash = link_hash(&ledger.hash_of(HEAD), HEAD + 1, &original.payload);
    // A correct chain link, so the repeated id is the only finding.
    let seq = ledger
        .js
        .publish_with_headers(
            LEDGER_SUBJECT,
            chain_headers(ledger.hash_of(HEAD), hash),
            original.payload.clone(),
        )
        .await
        .expect("publish repeated record")
        .await
        .expect("ledger acknowledged")
        .sequence;
    assert_eq!(seq, HEAD + 1);

    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(
        verdict.findings(),
        vec![Found::new(
            HEAD + 1,
            "duplicate_event",
            format!("event {event_id} recorded once"),
            format!("event {event_id} already recorded at seq 3"),
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_body_is_undecodable() {
    let ledger = build_ledger().await;
    let garbage = b"\x01\x00this is not a record".to_vec();
    let hash = link_hash(&ledger.hash_of(HEAD), HEAD + 1, &garbage);
    ledger
        .js
        .publish_with_headers(
            LEDGER_SUBJECT,
            chain_headers(ledger.hash_of(HEAD), hash),
            garbage.into(),
        )
        .await
        .expect("publish garbage")
        .await
        .expect("ledger acknowledged");

    let verdict = ledger.verify_both(&[]);
    assert_eq!(verdict.exit_code, 1);
    let findings = verdict.findings();
    assert_eq!(findings.len(), 1, "findings: {findings:?}");
    assert_eq!(findings[0].seq, HEAD + 1);
    assert_eq!(findings[0].kind, "undecodable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_checkpoint_hash_is_fork() {
    let ledger = build_ledger().await;
    let path = ledger.checkpoint();
    let text = std::fs::read_to_string(&path).expect("checkpoint");
    let recorded = ChainHash([0x33; 32]);
    let edited = text.replace(&ledger.hash_of(HEAD).to_hex(), &recorded.to_hex());
    assert_ne!(edited, text, "the checkpoint names the head hash");
    std::fs::write(&path, edited).expect("write checkpoint");

    // The stream is untouched; the recorded head no longer matches it, as
    // when history was rewritten after the checkpoint was taken.
    let path_arg = path.to_str().expect("utf-8 path");
    let verdict = ledger.verify_both(&["--checkpoint", path_arg]);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(
        verdict.findings(),
        vec![Found::new(HEAD, "fork", recorded, ledger.hash_of(HEAD))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_of_other_ledger_exits_two() {
    let ledger = build_ledger().await;
    let path = ledger.checkpoint();
    let text = std::fs::read_to_string(&path).expect("checkpoint");
    std::fs::write(&path, text.replace("\"test\"", "\"other\"")).expect("write checkpoint");
    let path_arg = path.to_str().expect("utf-8 path");

    let rust = checkin_command(&ledger.server, &ledger.data, &ledger.config)
        .args(["audit", "verify", "--checkpoint", path_arg])
        .output()
        .expect("run checkin audit verify");
    assert_eq!(rust.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&rust.stderr);
    assert!(stderr.contains("\"other\""), "stderr: {stderr}");
    assert!(stderr.contains("审计未能运行"), "stderr: {stderr}");

    let python = Command::new("python3")
        .arg(workspace_root().join("tools/verify_ledger.py"))
        .args([
            "stream",
            "--nats",
            &ledger.server.url(),
            "--checkpoint",
            path_arg,
        ])
        .output()
        .expect("run python3");
    assert_eq!(python.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_report_names_finding_in_both_languages() {
    let ledger = build_ledger().await;
    let stream = ledger.rebuild_allowing_delete().await;
    assert!(stream.delete_message(5).await.expect("delete seq 5"));

    let output = checkin_command(&ledger.server, &ledger.data, &ledger.config)
        .args(["audit", "verify"])
        .output()
        .expect("run checkin audit verify");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).expect("utf-8 output");
    assert!(text.contains("seq 5  gap\n"), "output: {text}");
    assert!(text.contains("sequences are missing"), "output: {text}");
    assert!(text.contains("序号缺失"), "output: {text}");
    assert!(text.contains("expected: 5\n"), "output: {text}");
    assert!(text.contains("found:    6\n"), "output: {text}");
    assert!(text.contains("1 finding(s)"), "output: {text}");
}

/// Segments of the archive that [`archive_ledger`] writes: 1-4, 5-8, 9-10.
const ARCHIVED: u64 = 10;

/// Moves seq 1 to [`ARCHIVED`] into segments of 4 records with `checkin
/// archive`, which purges them from the stream; returns the directory.
fn archive_ledger(ledger: &Ledger) -> PathBuf {
    let dir = ledger.server.scratch("archive");
    let output = checkin_command(&ledger.server, &ledger.data, &ledger.config)
        .arg("archive")
        .args(["--up-to", &ARCHIVED.to_string(), "--segment-records", "4"])
        .arg("--to")
        .arg(&dir)
        .output()
        .expect("failed to run checkin archive");
    assert!(
        output.status.success(),
        "checkin archive failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}

/// Flips one bit of the event id in the body of the record at `seq` inside
/// a segment, recompresses the body and writes a fresh digest, keeping every
/// footer field else: only the chain can show the change. Returns the new body.
fn tamper_segment(path: &Path, seq: u64) -> Vec<u8> {
    const HEADER: usize = 32;
    const FOOTER: usize = 176;
    let bytes = std::fs::read(path).expect("read segment");
    let footer_start = bytes.len() - FOOTER;
    let mut footer = bytes[footer_start..].to_vec();
    let body_len = u64::from_le_bytes(footer[40..48].try_into().unwrap()) as usize;
    let mut raw = zstd::decode_all(&bytes[HEADER..HEADER + body_len]).expect("body decompresses");

    // Record frames: seq u64, stored_at_ns i64, headers_len u32, headers,
    // body_len u32, body.
    let mut offset = 0;
    let tampered = loop {
        assert!(offset < raw.len(), "seq {seq} is not in {}", path.display());
        let frame_seq = u64::from_le_bytes(raw[offset..offset + 8].try_into().unwrap());
        let headers_len =
            u32::from_le_bytes(raw[offset + 16..offset + 20].try_into().unwrap()) as usize;
        let length_at = offset + 20 + headers_len;
        let record_len =
            u32::from_le_bytes(raw[length_at..length_at + 4].try_into().unwrap()) as usize;
        let body_start = length_at + 4;
        if frame_seq == seq {
            // Bytes 14 to 29 of a check-in are its event id.
            raw[body_start + 20] ^= 0x01;
            break raw[body_start..body_start + record_len].to_vec();
        }
        offset = body_start + record_len;
    };

    let compressed = zstd::encode_all(&raw[..], 3).expect("body compresses");
    footer[40..48].copy_from_slice(&(compressed.len() as u64).to_le_bytes());
    let mut file = bytes[..HEADER].to_vec();
    file.extend_from_slice(&compressed);
    file.extend_from_slice(&footer[..FOOTER - 32]);
    let digest = blake3::Hasher::new_derive_key(DIGEST_CONTEXT)
        .update(&file)
        .finalize();
    file.extend_from_slice(digest.as_bytes());
    std::fs::write(path, &file).expect("write tampered segment");
    tampered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_archive_record_is_hash_mismatch() {
    let ledger = build_ledger().await;
    let dir = archive_ledger(&ledger);
    let archive = ["--archive", dir.to_str().expect("utf-8 path")];

    let clean = ledger.verify_both(&archive);
    assert_eq!(clean.exit_code, 0);
    assert_eq!(clean.report["records"], HEAD);
    assert_eq!(clean.findings(), Vec::new());

    let segment = dir.join(segment_file_name(5, 8));
    let body = tamper_segment(&segment, 6);
    assert!(
        Segment::open(&segment).is_ok(),
        "the tampered segment's digest matches"
    );

    let verdict = ledger.verify_both(&archive);
    assert_eq!(verdict.exit_code, 1);
    assert_eq!(verdict.report["records"], HEAD);
    let recomputed = link_hash(&ledger.hash_of(5), 6, &body);
    assert_eq!(
        verdict.findings(),
        vec![Found::new(
            6,
            "hash_mismatch",
            recomputed.to_hex(),
            ledger.hash_of(6).to_hex()
        )]
    );
    // The stream after the archive chains from the stored hashes, so the
    // head is the one the sequencer wrote.
    assert_eq!(
        verdict.report["head"]["hash"],
        ledger.hash_of(HEAD).to_hex()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archive_digest_exits_one() {
    let ledger = build_ledger().await;
    let dir = archive_ledger(&ledger);
    let name = segment_file_name(9, 10);
    let segment = dir.join(&name);
    let mut bytes = std::fs::read(&segment).expect("read segment");
    // A reserved footer byte: covered by the digest, read by nothing else.
    let reserved = bytes.len() - 176 + 10;
    bytes[reserved] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("write damaged segment");

    let verdict = ledger.verify_both(&["--archive", dir.to_str().expect("utf-8 path")]);

    assert_eq!(verdict.exit_code, 1);
    assert_eq!(verdict.report["records"], HEAD);
    let findings = verdict.findings();
    assert_eq!(findings.len(), 1, "findings: {findings:?}");
    assert_eq!(findings[0].seq, 9);
    assert_eq!(findings[0].kind, "undecodable");
    assert!(
        findings[0]
            .expected
            .starts_with(&format!("{name}: file_digest ")),
        "{:?}",
        findings[0]
    );
    assert_eq!(findings[0].actual, hex_of(&bytes[bytes.len() - 32..]));
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
