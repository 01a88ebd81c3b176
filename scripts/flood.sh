#!/usr/bin/env bash
# Floods against tunnat and against the kernel's netfilter NAT on the same topology, side by
# side (see scripts/flood.py). Run as root: scripts/flood.sh [--secs N]
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hping3 iperf3 conntrack; do
  command -v "$t" >/dev/null || { echo "flood: needs $t (apt-get install -y hping3 iperf3 conntrack)" >&2; exit 1; }
done
cargo build --release --quiet --bin tunnat
exec python3 scripts/flood.py "$@"
