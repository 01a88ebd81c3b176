#!/usr/bin/env bash
# Floods against tunnat and against the kernel's netfilter NAT on the same topology, side by
# side (see scripts/flood.py). Run as root: scripts/flood.sh [--secs N] [--only 1,6]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --check flood || exit 1
cargo build --release --quiet --bin tunnat
exec python3 scripts/flood.py "$@"
