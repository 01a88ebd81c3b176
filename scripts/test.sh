#!/usr/bin/env bash
# Runs every test: the unit tests of the core (cargo test), then the end-to-end tests that
# send real packets through tunnat between network namespaces (netns-tests/, needs root).
#
#   scripts/test.sh [SUBSTRING...]   the SUBSTRINGs select netns tests by name
#
# Run it as root; as another user it re-runs itself through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then
    echo "== the netns tests need root: re-running through sudo"
    exec sudo env "PATH=$PATH" "$0" "$@"
  fi
  echo "scripts/test.sh: the netns tests create namespaces and TUN devices; run it as root" >&2
  exit 1
fi
scripts/deps.sh --check test || exit 1
if ! command -v cargo >/dev/null; then
  echo "scripts/test.sh: cargo not found; install Rust (https://rustup.rs)" >&2
  exit 1
fi
echo "== unit tests (cargo test)"
cargo test --quiet
echo "== building the release binary"
cargo build --release --quiet
echo "== end-to-end tests (netns-tests/run.py)"
exec python3 netns-tests/run.py "$@"
