#!/usr/bin/env python3
"""Check schemas/chain-vectors.json and schemas/samples/ without the Rust code.

Recomputes every chain hash with the `blake3` package from PyPI and decodes
every record body from the layout in schemas/record-format.md, then compares
the result with the JSON stored beside it. Exits 1 on the first mismatch.

Usage: python3 tools/check_vectors.py [SCHEMAS_DIR]
"""

import json
import struct
import sys
from pathlib import Path

import blake3

CONTEXT = "checkin 2026-12-04 ledger record chain v1"
ZERO_HASH = bytes(32)
KINDS = ["genesis", "check_in", "void"]
METHODS = ["qr", "nfc", "gps", "wifi", "face", "kiosk", "staff"]
SOURCES = ["live", "import"]


def link_hash(prev: bytes, seq: int, body: bytes) -> bytes:
    data = prev + struct.pack("<Q", seq) + struct.pack("<Q", len(body)) + body
    return blake3.blake3(data, derive_key_context=CONTEXT).digest()


class Reader:
    """Reads the little-endian fixed-width bincode layout of a record."""

    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ValueError(f"record ends at byte {len(self.data)}, needed {self.offset + size}")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def tag(self, names: list[str]) -> str:
        index = self.unpack("I")
        if index >= len(names):
            raise ValueError(f"invalid enum tag {index} at byte {self.offset - 4}")
        return names[index]

    def string(self) -> str:
        return self.take(self.unpack("Q")).decode("utf-8")

    def option(self, read):
        flag = self.unpack("B")
        if flag not in (0, 1):
            raise ValueError(f"invalid option tag {flag} at byte {self.offset - 1}")
        return read() if flag else None

    def event_id(self) -> str:
        raw = self.take(16).hex()
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def read_location(reader: Reader) -> dict:
    return {
        "lat_microdeg": reader.unpack("i"),
        "lon_microdeg": reader.unpack("i"),
        "accuracy_cm": reader.option(lambda: reader.unpack("I")),
    }


def read_check_in(reader: Reader) -> dict:
    body = {
        "event_id": reader.event_id(),
        "customer": reader.string(),
        "site": reader.string(),
        "device": reader.string(),
        "at_us": reader.unpack("q"),
        "utc_offset_s": reader.unpack("i"),
        "method": reader.tag(METHODS),
        "location": reader.option(lambda: read_location(reader)),
        "activity": reader.option(reader.string),
        "staff": reader.option(reader.string),
    }
    count = reader.unpack("Q")
    body["attributes"] = [[reader.string(), reader.string()] for _ in range(count)]
    body["source"] = reader.tag(SOURCES)
    return body


def read_void(reader: Reader) -> dict:
    return {
        "event_id": reader.event_id(),
        "target": reader.event_id(),
        "reason": reader.string(),
        "requested_by": reader.string(),
    }


def decode_record(data: bytes) -> dict:
    """Decodes record bytes of format version 1 into the JSON the Rust side serialises."""
    reader = Reader(data)
    version = reader.unpack("H")
    if version != 1:
        raise ValueError(f"record format version {version} is unknown to this checker")

    recorded_at_us = reader.unpack("q")
    kind = reader.tag(KINDS)
    if kind == "genesis":
        body = {"ledger": reader.string(), "description": reader.string()}
    elif kind == "check_in":
        body = read_check_in(reader)
    else:
        body = read_void(reader)

    if reader.offset != len(data):
        raise ValueError(f"{len(data) - reader.offset} unexpected bytes after the record")
    return {"recorded_at_us": recorded_at_us, "body": {"kind": kind, **body}}


def check_vectors(path: Path) -> list[str]:
    vectors = json.loads(path.read_text(encoding="utf-8"))
    errors = []
    if vectors["context"] != CONTEXT:
        errors.append(f"context is {vectors['context']!r}, expected {CONTEXT!r}")

    prev = ZERO_HASH
    for expected_seq, entry in enumerate(vectors["records"], start=1):
        seq = entry["seq"]
        body = bytes.fromhex(entry["body_hex"])
        computed = link_hash(prev, seq, body)

        if seq != expected_seq:
            errors.append(f"seq {seq}: expected seq {expected_seq}")
        if entry["prev"] != prev.hex():
            errors.append(f"seq {seq}: prev is {entry['prev']}, expected {prev.hex()}")
        if entry["hash"] != computed.hex():
            errors.append(f"seq {seq}: hash is {entry['hash']}, recomputed {computed.hex()}")
        try:
            decoded = decode_record(body)
        except (ValueError, UnicodeDecodeError) as err:
            errors.append(f"seq {seq}: failed to decode body: {err}")
        else:
            if decoded["body"]["kind"] != entry["kind"]:
                errors.append(f"seq {seq}: kind is {entry['kind']}, body is {decoded['body']['kind']}")
            if decoded != entry["record"]:
                errors.append(f"seq {seq}: decoded {decoded}, expected {entry['record']}")
        prev = bytes.fromhex(entry["hash"])
    return errors


def check_samples(directory: Path) -> list[str]:
    errors = []
    for binary in sorted(directory.glob("*.bin")):
        expected = json.loads(binary.with_suffix(".json").read_text(encoding="utf-8"))
        try:
            decoded = decode_record(binary.read_bytes())
        except (ValueError, UnicodeDecodeError) as err:
            errors.append(f"{binary.name}: failed to decode: {err}")
            continue
        if decoded != expected:
            errors.append(f"{binary.name}: decoded {decoded}, expected {expected}")
    return errors


def main() -> int:
    schemas = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "schemas"
    vectors_path = schemas / "chain-vectors.json"
    errors = check_vectors(vectors_path) + check_samples(schemas / "samples")

    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"{len(errors)} checks failed", file=sys.stderr)
        return 1

    count = len(json.loads(vectors_path.read_text(encoding="utf-8"))["records"])
    print(f"ok: {count} chain vectors and {len(list((schemas / 'samples').glob('*.bin')))} samples match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
