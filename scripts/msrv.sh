#!/usr/bin/env bash
# Checks the minimum supported Rust version (`rust-version` in Cargo.toml) as far as one
# toolchain can: no dependency built on Linux may need a newer Rust, and clippy's
# `incompatible_msrv` lint (part of `cargo clippy -- -D warnings`, which CI runs) refuses
# any standard library item stabilised after it. A build with that exact toolchain is
# not possible on a machine that cannot fetch other toolchains.
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "msrv: no rust-version in Cargo.toml" >&2; exit 1; }
cargo tree -e normal --prefix none --target x86_64-unknown-linux-gnu 2>/dev/null |
  awk '{print $1, $2}' | sort -u >"${TMPDIR:-/tmp}/tunnat-msrv-deps.$$"
cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, sys
msrv, used_file = sys.argv[1], sys.argv[2]
used = {tuple(l.split()) for l in open(used_file)}
key = lambda v: tuple(int(x) for x in v.split("."))
worst = []
for p in json.load(sys.stdin)["packages"]:
    if (p["name"], "v" + p["version"]) in used and p.get("rust_version"):
        if key(p["rust_version"]) > key(msrv):
            worst.append("%s %s needs %s" % (p["name"], p["version"], p["rust_version"]))
if worst:
    sys.exit(f"msrv: rust-version {msrv} is too old for: " + "; ".join(worst))
print(f"msrv: rust-version {msrv} covers every dependency built on Linux")
' "$msrv" "${TMPDIR:-/tmp}/tunnat-msrv-deps.$$"
rm -f "${TMPDIR:-/tmp}/tunnat-msrv-deps.$$"
