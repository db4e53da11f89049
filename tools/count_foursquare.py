#!/usr/bin/env python3
"""Count Foursquare check-ins per venue and local day, independently of the Rust code.

Reads a Foursquare check-in file (TSMC2014 format: 8 tab-separated columns,
plain or gzip) and prints one line per venue and local date:

    fsq-<venue id>  <YYYY-MM-DD>  <check-ins>

The date is the venue's local date in --tz, not the row's UTC offset, which is
how `checkin query site` counts. Rows are skipped by the same rules as
`checkin import foursquare`: invalid rows (bad UTF-8, wrong column count,
empty or too long text, control characters, bad numbers, coordinates out of
range, offsets outside -720..840 minutes, unparsable times or a wrong
weekday) and exact repeats of an earlier line. Totals go to standard error.

Use it to cross-check the read models after an import:

    python3 tools/count_foursquare.py data.tsv.gz --tz America/New_York \\
        --venue 4b21aee7f964a5201b4024e3
    checkin query site fsq-4b21aee7f964a5201b4024e3 --from ... --to ...

Standard library only (Python 3.9 or newer, for zoneinfo).
"""

import argparse
import collections
import datetime
import gzip
import math
import sys
import unicodedata
import zoneinfo

COLUMNS = 8
MAX_USER_CHARS = 124
MAX_VENUE_CHARS = 60
MAX_CATEGORY_CHARS = 128
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def open_file(path):
    """Open a file for binary reading, decompressing gzip by its magic bytes."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def parse_number(text, limit):
    """Return a finite decimal number within [-limit, limit], or None."""
    text = text.strip()
    if "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return value


def parse_time(text):
    """Parse 'Tue Apr 03 18:00:09 +0000 2012' by hand into an aware UTC datetime, or None."""
    parts = text.strip().split(" ")
    if len(parts) != 6 or parts[0] not in WEEKDAYS or parts[1] not in MONTHS:
        return None
    weekday, month, day, clock, offset, year = parts
    try:
        hour, minute, second = (int(piece) for piece in clock.split(":"))
        if len(offset) != 5 or offset[0] not in "+-":
            return None
        sign = 1 if offset[0] == "+" else -1
        delta = datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) * sign
        local = datetime.datetime(int(year), MONTHS.index(month) + 1, int(day), hour, minute, second)
    except ValueError:
        return None
    if WEEKDAYS[local.weekday()] != weekday:
        return None
    return (local - delta).replace(tzinfo=datetime.timezone.utc)


def parse_row(raw):
    """Return (venue, utc datetime) of a valid row, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    columns = text.split("\t")
    if len(columns) != COLUMNS:
        return None
    for column in columns:
        if not column.strip():
            return None
        if any(unicodedata.category(char) == "Cc" for char in column):
            return None
    user, venue, category_id, category = (column.strip() for column in columns[:4])
    if len(user) > MAX_USER_CHARS or len(venue) > MAX_VENUE_CHARS:
        return None
    if len(category_id) > MAX_CATEGORY_CHARS or len(category) > MAX_CATEGORY_CHARS:
        return None
    if parse_number(columns[4], 90) is None or parse_number(columns[5], 180) is None:
        return None
    try:
        offset = int(columns[6].strip())
    except ValueError:
        return None
    if not -720 <= offset <= 840:
        return None
    at = parse_time(columns[7])
    if at is None:
        return None
    return venue, at


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="Foursquare check-in file, plain or gzip")
    parser.add_argument("--tz", default="Asia/Shanghai", help="IANA time zone of the venues")
    parser.add_argument("--venue", help="print only this venue id (without the fsq- prefix)")
    parser.add_argument("--limit", type=int, help="read at most this many non-empty lines")
    args = parser.parse_args()

    zone = zoneinfo.ZoneInfo(args.tz)
    counts = collections.Counter()
    seen = set()
    rows = invalid = duplicates = 0
    with open_file(args.file) as handle:
        for raw in handle:
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            if not raw:
                continue
            if args.limit is not None and rows >= args.limit:
                break
            rows += 1
            parsed = parse_row(raw)
            if parsed is None:
                invalid += 1
                continue
            if raw in seen:
                duplicates += 1
                continue
            seen.add(raw)
            venue, at = parsed
            counts[(venue, at.astimezone(zone).date().isoformat())] += 1

    for (venue, day), count in sorted(counts.items()):
        if args.venue is None or venue == args.venue:
            print(f"fsq-{venue}\t{day}\t{count}")
    total = sum(counts.values())
    print(
        f"rows {rows}, counted {total}, invalid {invalid}, duplicates {duplicates}, "
        f"venues {len({venue for venue, _ in counts})}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
