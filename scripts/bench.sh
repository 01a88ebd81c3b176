#!/usr/bin/env bash
# Side-by-side benchmark of tunnat, a bare TUN copy loop and the kernel's netfilter NAT
# (see scripts/bench.py). Run as root: scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin tunnat --example tun_copy --example table_scale
echo "== NAT table scaling (benches/table_scale.rs)"
target/release/examples/table_scale
echo "== routers side by side (scripts/bench.py)"
exec python3 scripts/bench.py "$@"
