#!/usr/bin/env bash
# Fuzzes the parse -> translate path and the policy server with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 10 s each of translate, nat64, policy_session, port_control, ftp, gro
#
# The targets are one-line wrappers of tunnat::fuzz (src/fuzz.rs), whose properties the unit
# tests also check on a seed corpus. cargo-fuzz is installed if missing. It needs nightly
# flags: `cargo +nightly` is used when a nightly toolchain is there, otherwise the stable one
# with RUSTC_BOOTSTRAP=1. The sanitizer is none by default (the data path has no unsafe
# code, so the findings are panics: failed assertions, overflows, out-of-range indexing);
# FUZZ_SANITIZER=address turns ASan on where the toolchain ships its runtime.
# Crashes are kept in fuzz/artifacts/TARGET/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(translate nat64 policy_session port_control ftp gro)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
toolchain=()
if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${secs}s"
  log=$(mktemp)
  rc=0
  cargo "${toolchain[@]}" fuzz run --release -s "${FUZZ_SANITIZER:-none}" "$t" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^Done|panicked|ERROR|SUMMARY|Test unit written' "$log" || true
  if [ "$rc" != 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed (exit $rc): a build error above, or a crash whose input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  rm -f "$log"
done
