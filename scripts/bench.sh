#!/usr/bin/env bash
# Side-by-side benchmark of tunnat, a bare TUN copy loop and the kernel's netfilter NAT
# (see scripts/bench.py). Run as root: scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --check bench || exit 1
cargo build --release --quiet --bin tunnat --example tun_copy --example table_scale
echo "== correctness first: a run in which these fail is not reported"
python3 netns-tests/run.py test_napt test_dnat test_offload test_router test_nat64:: > /tmp/tunnat-bench-tests.log 2>&1 || {
  tail -20 /tmp/tunnat-bench-tests.log >&2
  echo "bench: the netns tests failed (log: /tmp/tunnat-bench-tests.log); not reporting" >&2
  exit 1
}
tail -1 /tmp/tunnat-bench-tests.log
echo "== NAT table scaling (benches/table_scale.rs)"
target/release/examples/table_scale
echo "== the core under criterion (benches/core.rs, --quick)"
cargo bench --quiet --bench core -- --quick 2>/dev/null | grep -E '^[a-z_]+(/[0-9]+)? *time:|^[a-z_]+/[0-9]+$|^ +time:'
echo "== routers side by side (scripts/bench.py)"
exec python3 scripts/bench.py "$@"
