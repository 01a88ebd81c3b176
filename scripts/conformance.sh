#!/usr/bin/env bash
# Runs tunnat's behaviour tests against tunnat and against the kernel's netfilter NAT on the
# same topology (netns-tests/kernel_lab.py), for the README's conformance table. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
tests=(test_behave test_fragments test_dnat test_napt test_ipv6 test_nat64:: test_portmap test_ftp)
echo "== tunnat"
python3 netns-tests/run.py "${tests[@]}" | grep -E '\] (PASS|FAIL|N/A) |passed'
echo "== netfilter"
python3 netns-tests/run.py --router netfilter "${tests[@]}" | grep -E '\] (PASS|FAIL|N/A) |netfilter:'
echo "== NAT64's ICMP translations beside Tayga's, byte for byte (README: NAT64 beside Tayga)"
python3 netns-tests/test_nat64_compare.py
