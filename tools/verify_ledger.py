#!/usr/bin/env python3
"""Verify a checkin ledger without the Rust code.

An independent re-implementation of `checkin audit verify` from the
specifications in schemas/chain.md, schemas/record-format.md and
schemas/archive-format.md. It needs `blake3` for the chain, `nats-py` to read
a live stream and `zstandard` to read archive segments, all from PyPI, plus
the record decoder in tools/check_vectors.py.

It reports findings with the same kinds, sequences and values as the Rust
verifier, and exits 0 only when it found nothing, 1 with findings and 2 when
it could not run.

Usage:
  python3 tools/verify_ledger.py vectors [SCHEMAS_DIR]
  python3 tools/verify_ledger.py stream --nats URL [--archive DIR]
      [--expect-head SEQ:HASH | --checkpoint FILE] [--json]
  python3 tools/verify_ledger.py archive DIR
      [--expect-head SEQ:HASH | --checkpoint FILE] [--json]
"""

import argparse
import asyncio
import json
import re
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_vectors import check_samples, check_vectors, decode_record  # noqa: E402

CONTEXT = "checkin 2026-12-04 ledger record chain v1"
ARCHIVE_CONTEXT = "checkin 2026-12-04 archive segment v1"
ZERO_HASH = bytes(32)
PREV_HEADER = "Checkin-Prev"
HASH_HEADER = "Checkin-Hash"
LEDGER_STREAM = "CHECKIN_LEDGER"
# The Rust codec rejects records above 64 KiB while decoding.
MAX_RECORD_BYTES = 64 * 1024
CHECKPOINT_FORMAT = 1
# Seconds without a message, while more are pending, after which the stream
# reader treats the next message as unreadable.
STALL_TIMEOUT_S = 5
HEX_HASH = re.compile(r"[0-9a-fA-F]{64}")

EXIT_CLEAN, EXIT_FINDINGS, EXIT_NOT_RUN = 0, 1, 2


class NotRun(Exception):
    """The verifier could not run: the input is missing or unreadable."""


def link_hash(prev: bytes, seq: int, body: bytes) -> bytes:
    data = prev + struct.pack("<QQ", seq, len(body)) + body
    return blake3.blake3(data, derive_key_context=CONTEXT).digest()


@dataclass
class Finding:
    seq: int
    kind: str
    expected: str
    actual: str

    def as_json(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "expected": self.expected, "actual": self.actual}


@dataclass
class Auditor:
    """Checks records pushed in sequence order, as the Rust `Auditor` does.

    The order of findings within one record matches the Rust verifier:
    sequence, then `Checkin-Prev`, then `Checkin-Hash`, then missing or
    malformed headers, then the decoded body.
    """

    expected_head: tuple[int, bytes] | None = None
    expected_ledger_id: bytes | None = None
    head_seq: int = 0
    head_hash: bytes = ZERO_HASH
    # The stored hash of the last record when it disagreed with the
    # recomputed one; the next record may chain from either.
    alternate_prev: bytes | None = None
    hash_at_expected: bytes | None = None
    records: int = 0
    first_seq: int | None = None
    ledger: str | None = None
    ledger_id: bytes | None = None
    first_seq_of_event: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)

    def report(self, seq: int, kind: str, expected, actual) -> None:
        self.findings.append(Finding(seq, kind, text(expected), text(actual)))

    def push(self, seq: int, body: bytes, headers: dict) -> None:
        self.records += 1
        if self.first_seq is None:
            self.first_seq = seq
        previous_hash = self.head_hash

        expected_seq = self.head_seq + 1
        if seq < expected_seq:
            self.report(seq, "out_of_order", expected_seq, seq)
        elif seq > expected_seq:
            kind = "missing_genesis" if self.head_seq == 0 else "gap"
            self.report(expected_seq, kind, expected_seq, seq)

        stored_prev, prev_problem = header_hash(headers, PREV_HEADER)
        stored_hash, hash_problem = header_hash(headers, HASH_HEADER)

        prev = self.head_hash
        if stored_prev is not None and seq > expected_seq:
            # Across a gap the missing record's hash is unknown: take the stored prev.
            prev = stored_prev
        elif stored_prev is not None and stored_prev != self.head_hash:
            if stored_prev == self.alternate_prev:
                prev = stored_prev
            else:
                self.report(seq, "prev_mismatch", self.head_hash, stored_prev)
        computed = link_hash(prev, seq, body)

        self.alternate_prev = None
        if stored_hash is not None and stored_hash != computed:
            self.report(seq, "hash_mismatch", computed, stored_hash)
            self.alternate_prev = stored_hash
        self.head_seq = max(seq, self.head_seq)
        self.head_hash = computed

        if prev_problem is not None:
            self.report(seq, "prev_mismatch", previous_hash, prev_problem)
        if hash_problem is not None:
            self.report(seq, "hash_mismatch", computed, hash_problem)
        if self.expected_head is not None and self.expected_head[0] == seq:
            self.hash_at_expected = computed

        self.check_body(seq, body, computed)

    def check_body(self, seq: int, body: bytes, computed: bytes) -> None:
        try:
            if len(body) - 2 > MAX_RECORD_BYTES:
                raise ValueError(f"record is {len(body)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
            record = decode_record(body)
        except (ValueError, UnicodeDecodeError, struct.error) as err:
            self.report(seq, "undecodable", "a record of a known format version", str(err))
            return

        record_body = record["body"]
        if record_body["kind"] == "genesis":
            if seq == 1:
                if self.expected_ledger_id is not None and self.expected_ledger_id != computed:
                    self.report(seq, "fork", self.expected_ledger_id, computed)
                self.ledger = record_body["ledger"]
                self.ledger_id = computed
            return

        event_id = record_body["event_id"]
        first = self.first_seq_of_event.setdefault(event_id, seq)
        if first != seq:
            self.report(
                seq,
                "duplicate_event",
                f"event {event_id} recorded once",
                f"event {event_id} already recorded at seq {first}",
            )

    def finish(self) -> dict:
        if self.expected_head is not None:
            expected_seq, expected_hash = self.expected_head
            if self.head_seq < expected_seq:
                self.report(self.head_seq + 1, "truncated", expected_seq, self.head_seq)
            elif self.hash_at_expected is not None and self.hash_at_expected != expected_hash:
                self.report(expected_seq, "fork", expected_hash, self.hash_at_expected)
        return {
            "ledger": self.ledger,
            "ledger_id": self.ledger_id.hex() if self.ledger_id else None,
            "first_seq": self.first_seq,
            "last_seq": self.head_seq if self.first_seq is not None else None,
            "records": self.records,
            "head": {"seq": self.head_seq, "hash": self.head_hash.hex()},
            "clean": not self.findings,
            "findings": [finding.as_json() for finding in self.findings],
        }


def text(value) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def header_hash(headers: dict, name: str) -> tuple[bytes | None, str | None]:
    """Returns (hash, None), or (None, the text the Rust verifier reports as found)."""
    value = headers.get(name)
    if value is None:
        return None, f"no {name} header"
    if not HEX_HASH.fullmatch(value):
        return None, f"invalid {name} header {json.dumps(value, ensure_ascii=False)}"
    return bytes.fromhex(value), None


def parse_expected_head(args) -> tuple[tuple[int, bytes] | None, dict | None]:
    """Returns the recorded head from --expect-head or --checkpoint, and the checkpoint."""
    if args.expect_head:
        seq, _, hash_text = args.expect_head.partition(":")
        if not seq.isdigit() or not HEX_HASH.fullmatch(hash_text):
            raise NotRun(f"invalid --expect-head {args.expect_head!r}: expected SEQ:HASH")
        return (int(seq), bytes.fromhex(hash_text)), None
    if args.checkpoint:
        try:
            checkpoint = json.loads(Path(args.checkpoint).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise NotRun(f"failed to read checkpoint {args.checkpoint}: {err}") from err
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise NotRun(f"checkpoint format {checkpoint.get('format')} is unknown, expected {CHECKPOINT_FORMAT}")
        for key in ("hash", "ledger_id"):
            if not HEX_HASH.fullmatch(str(checkpoint.get(key))):
                raise NotRun(f"checkpoint {args.checkpoint} has an invalid {key}")
        return (int(checkpoint["seq"]), bytes.fromhex(checkpoint["hash"])), checkpoint
    return None, None


def new_auditor(args) -> tuple[Auditor, dict | None]:
    expected_head, checkpoint = parse_expected_head(args)
    ledger_id = bytes.fromhex(checkpoint["ledger_id"]) if checkpoint else None
    return Auditor(expected_head=expected_head, expected_ledger_id=ledger_id), checkpoint


# Archive segments, as schemas/archive-format.md specifies them.

HEADER_BYTES = 32
FOOTER_BYTES = 176
SEGMENT_NAME = re.compile(r"ledger-(\d{20})-(\d{20})\.ckar")


def read_segment(path: Path) -> tuple[list, list, bytes]:
    """Returns the records of one segment as (seq, body, headers), the
    segment's own problems as findings of kind `undecodable` at its first
    sequence, and the footer's ledger_id.

    Raises NotRun when the file cannot be read at all.
    """
    import zstandard

    data = path.read_bytes()
    if len(data) < HEADER_BYTES + FOOTER_BYTES:
        raise NotRun(f"{path}: {len(data)} bytes is too short for an archive segment")
    header, footer = data[:HEADER_BYTES], data[-FOOTER_BYTES:]
    magic, version, flags, _reserved, first_seq, last_seq = struct.unpack("<8sHHIQQ", header)
    (f_magic, f_version, f_first, f_last, count, body_len, ledger_id, first_prev, last_hash,
     digest) = struct.unpack("<8sH6xQQQQ32s32s32s32s", footer)

    problems = []

    def problem(expected, actual):
        problems.append(Finding(first_seq, "undecodable", f"{path.name}: {expected}", actual))

    if magic != b"CKARCHV1" or f_magic != b"CKARFOOT" or version != 1 or f_version != 1:
        raise NotRun(f"{path}: not an archive segment of format 1")
    if flags != 0:
        raise NotRun(f"{path}: flags {flags} are unknown to this verifier")
    if len(data) != HEADER_BYTES + body_len + FOOTER_BYTES:
        raise NotRun(f"{path}: file is {len(data)} bytes, but its footer implies {HEADER_BYTES + body_len + FOOTER_BYTES}")
    if (first_seq, last_seq) != (f_first, f_last) or count != last_seq - first_seq + 1:
        problem(f"range {first_seq}-{last_seq} with {last_seq - first_seq + 1} records",
                f"footer range {f_first}-{f_last} with {count} records")

    computed_digest = blake3.blake3(data[:-32], derive_key_context=ARCHIVE_CONTEXT).digest()
    if computed_digest != digest:
        problem(f"file_digest {computed_digest.hex()}", digest.hex())

    try:
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(data[HEADER_BYTES:HEADER_BYTES + body_len])
    except zstandard.ZstdError as err:
        raise NotRun(f"{path}: failed to decompress the body: {err}") from err

    records, offset = [], 0
    while offset < len(raw):
        if offset + 20 > len(raw):
            raise NotRun(f"{path}: record frame cut off at byte {offset}")
        seq, _stored_at_ns, headers_len = struct.unpack_from("<QqI", raw, offset)
        offset += 20
        headers_text = raw[offset:offset + headers_len].decode("utf-8")
        offset += headers_len
        (record_len,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        body = raw[offset:offset + record_len]
        if len(body) != record_len:
            raise NotRun(f"{path}: record at seq {seq} cut off")
        offset += record_len
        headers = {}
        for line in headers_text.split("\r\n"):
            if line:
                name, _, value = line.partition(": ")
                headers.setdefault(name, value)
        records.append((seq, body, headers))

    if len(records) != count:
        problem(f"{count} records", f"{len(records)} records")
    if records:
        if records[0][2].get(PREV_HEADER) != first_prev.hex():
            problem(f"first_prev {first_prev.hex()}", str(records[0][2].get(PREV_HEADER)))
        if records[-1][2].get(HASH_HEADER) != last_hash.hex():
            problem(f"last_hash {last_hash.hex()}", str(records[-1][2].get(HASH_HEADER)))
    return records, problems, ledger_id


def segments(directory: Path) -> list[Path]:
    found = [path for path in directory.iterdir() if SEGMENT_NAME.fullmatch(path.name)]
    return sorted(found, key=lambda path: path.name)


def audit_archive(directory: Path, auditor: Auditor) -> int:
    """Pushes every archived record through `auditor`; returns the last archived sequence."""
    if not directory.is_dir():
        raise NotRun(f"archive directory {directory} does not exist")
    last = 0
    for path in segments(directory):
        records, problems, ledger_id = read_segment(path)
        auditor.findings.extend(problems)
        for seq, body, headers in records:
            auditor.push(seq, body, headers)
            last = max(last, seq)
        if auditor.ledger_id is not None and ledger_id != auditor.ledger_id and records:
            auditor.findings.append(Finding(
                records[0][0], "undecodable", f"{path.name}: ledger_id {auditor.ledger_id.hex()}", ledger_id.hex(),
            ))
    return last


# The live stream.

async def audit_stream(url: str, auditor: Auditor, after: int, checkpoint: dict | None) -> None:
    """Pushes every stream message above `after` through `auditor`, read with an ordered consumer."""
    import nats
    from nats.errors import NoServersError, TimeoutError as NatsTimeout
    from nats.js.errors import NotFoundError

    # NOTE: nats-py 2.16 keeps retrying a refused first connection despite
    # allow_reconnect=False, so the whole connect gets a deadline.
    try:
        client = await asyncio.wait_for(
            nats.connect(url, connect_timeout=5, allow_reconnect=False, error_cb=ignore_error),
            timeout=10,
        )
    except (OSError, NoServersError, NatsTimeout, asyncio.TimeoutError) as err:
        raise NotRun(f"failed to connect to NATS at {url}: {str(err) or 'timed out after 10 s'}") from err
    try:
        js = client.jetstream()
        try:
            info = await js.stream_info(LEDGER_STREAM)
        except NotFoundError as err:
            raise NotRun(f"stream {LEDGER_STREAM} not found at {url}") from err
        if checkpoint is not None:
            await check_ledger_name(js, checkpoint)
        if info.state.messages == 0:
            return

        subscription = await js.subscribe(
            info.config.subjects[0], stream=LEDGER_STREAM, ordered_consumer=True,
        )
        last_read = 0
        try:
            while True:
                try:
                    message = await subscription.next_msg(timeout=STALL_TIMEOUT_S)
                except NatsTimeout:
                    await read_one_by_one(js, auditor, max(after, last_read) + 1)
                    return
                metadata = message.metadata
                seq = last_read = metadata.sequence.stream
                if seq > after:
                    auditor.push(seq, message.data, dict(message.headers or {}))
                if metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
    finally:
        await client.close()


async def read_one_by_one(js, auditor: Auditor, first: int) -> None:
    """Gets the records from `first` to the stream's last sequence with direct
    gets, skipping those the server cannot return.

    nats-server 2.15 hides a message whose stored checksum no longer matches,
    and an ordered consumer stops delivering at it. The skipped sequences
    show up as a gap, as in the Rust verifier.
    """
    from nats.js.errors import NotFoundError

    info = await js.stream_info(LEDGER_STREAM)
    for seq in range(first, info.state.last_seq + 1):
        try:
            message = await js.get_msg(LEDGER_STREAM, seq, direct=True)
        except NotFoundError:
            continue
        auditor.push(seq, message.data or b"", dict(message.headers or {}))


async def ignore_error(_error: Exception) -> None:
    """Keeps nats-py from logging connection errors that audit_stream reports itself."""


async def check_ledger_name(js, checkpoint: dict) -> None:
    """Stops when the checkpoint names another ledger than the stream's genesis record."""
    try:
        genesis = await js.get_msg(LEDGER_STREAM, seq=1)
        record = decode_record(genesis.data)
    except Exception:  # noqa: BLE001 - a missing or damaged genesis is for the audit to report
        return
    name = record["body"].get("ledger")
    if record["body"]["kind"] == "genesis" and name != checkpoint.get("ledger"):
        raise NotRun(f"the checkpoint is for ledger {checkpoint.get('ledger')!r}, but the stream contains ledger {name!r}")


# Output.

def print_report(report: dict, seconds: float, as_json: bool) -> None:
    report["seconds"] = seconds
    report["records_per_s"] = round(report["records"] / max(seconds, 1e-9))
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for finding in report["findings"]:
        print(f"seq {finding['seq']}  {finding['kind']}\n  expected: {finding['expected']}\n  found:    {finding['actual']}")
    print(f"ledger {report['ledger']} ({report['ledger_id']}): {report['records']} records, "
          f"seq {report['first_seq']} to {report['last_seq']}, in {seconds:.2f} s")
    if report["clean"]:
        print("the chain verifies: no findings")
    else:
        print(f"the audit failed with {len(report['findings'])} finding(s), listed above")


def run_vectors(args) -> int:
    schemas = Path(args.schemas)
    errors = check_vectors(schemas / "chain-vectors.json") + check_samples(schemas / "samples")
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return EXIT_FINDINGS
    print("ok: chain vectors and samples match")
    return EXIT_CLEAN


def run_audit(args) -> int:
    auditor, checkpoint = new_auditor(args)
    start = time.monotonic()
    after = 0
    if getattr(args, "archive", None):
        after = audit_archive(Path(args.archive), auditor)
    if args.command == "stream":
        asyncio.run(audit_stream(args.nats, auditor, after, checkpoint))
    report = auditor.finish()
    print_report(report, time.monotonic() - start, args.json)
    return EXIT_CLEAN if report["clean"] else EXIT_FINDINGS


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description="Verify a checkin ledger independently of the Rust code.")
    commands = parser.add_subparsers(dest="command", required=True)

    vectors = commands.add_parser("vectors", help="check schemas/chain-vectors.json and schemas/samples")
    vectors.add_argument("schemas", nargs="?", default=str(Path(__file__).resolve().parent.parent / "schemas"))

    for name, helptext in (("stream", "verify the live CHECKIN_LEDGER stream"),
                           ("archive", "verify archive segment files")):
        command = commands.add_parser(name, help=helptext)
        if name == "stream":
            command.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
            command.add_argument("--archive", help="archive directory to verify before the stream")
        else:
            command.add_argument("archive", help="directory of ledger-*.ckar segments")
        heads = command.add_mutually_exclusive_group()
        heads.add_argument("--expect-head", help="head recorded earlier, as SEQ:HASH")
        heads.add_argument("--checkpoint", help="checkpoint file written by `checkin audit checkpoint`")
        command.add_argument("--json", action="store_true", help="print one JSON document")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        if args.command == "vectors":
            return run_vectors(args)
        return run_audit(args)
    except NotRun as err:
        print(f"error: {err}", file=sys.stderr)
        print("the audit could not run, so the ledger is not verified", file=sys.stderr)
        return EXIT_NOT_RUN


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
