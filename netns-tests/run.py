#!/usr/bin/env python3
"""Runs the end-to-end tests: every `test_*` function of every `test_*.py` here.

    netns-tests/run.py [SUBSTRING...]     run the tests whose name contains a SUBSTRING
    netns-tests/run.py --router netfilter [SUBSTRING...]
                                          run them against the kernel's netfilter NAT instead
                                          (kernel_lab.py), to compare behaviours

Each test gets a fresh lab (namespaces + tunnat) when it takes a `lab` argument. Needs
root and a built release binary (TUNNAT=path overrides). Ends with 'N passed, N failed'.
"""

import importlib
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def main():
    if os.geteuid() != 0:
        print("netns-tests need root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    if not os.access(harness.TUNNAT, os.X_OK):
        print(f"no tunnat binary at {harness.TUNNAT}; run 'cargo build --release'", file=sys.stderr)
        return 2
    args = sys.argv[1:]
    router = "tunnat"
    if "--router" in args:
        i = args.index("--router")
        router = args[i + 1]
        del args[i:i + 2]
    lab_class = harness.Lab
    if router == "netfilter":
        import kernel_lab
        lab_class = kernel_lab.KernelLab
        not_applicable = kernel_lab.NotApplicable
    elif router != "tunnat":
        print(f"--router {router}: tunnat or netfilter", file=sys.stderr)
        return 2
    else:
        not_applicable = ()
    wanted = args
    tests = []
    for f in sorted(os.listdir(HERE)):
        if f.startswith("test_") and f.endswith(".py"):
            mod = importlib.import_module(f[:-3])
            for name, fn in inspect.getmembers(mod, inspect.isfunction):
                if name.startswith("test_") and fn.__module__ == mod.__name__:
                    full = f"{f[:-3]}::{name}"
                    if not wanted or any(w in full for w in wanted):
                        tests.append((full, fn, fn.__code__.co_firstlineno))
    tests.sort(key=lambda t: (t[0].split("::")[0], t[2]))
    passed = failed = skipped = 0
    failures = []
    peak = []  # (tunnat's peak RSS in KiB, test)
    t_all = time.time()
    width = len(str(len(tests)))
    for n, (full, fn, _) in enumerate(tests, 1):
        t0 = time.time()
        count = f"[{n:{width}}/{len(tests)}]"
        lab = None
        try:
            params = inspect.signature(fn).parameters
            if "lab" in params:
                extra = getattr(fn, "tunnat_args", ())
                kw = {}
                if getattr(fn, "dual", False):
                    kw["dual"] = True
                if getattr(fn, "nat64", None):
                    kw["nat64"] = fn.nat64
                lab = lab_class(extra_args=extra, outside_mtu=getattr(fn, "outside_mtu", None), **kw)
                fn(lab)
            else:
                fn()
            passed += 1
            rss = ""
            if lab is not None and router == "tunnat" and lab.proc and lab.proc.poll() is None:
                kb = lab.peak_rss_kb()
                peak.append((kb, full))
                rss = f", peak RSS {kb / 1024:.1f} MB"
            print(f"{count} PASS {full} ({time.time() - t0:.1f}s{rss})", flush=True)
        except not_applicable as e:
            skipped += 1
            print(f"{count} N/A  {full}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every kind of failure
            failed += 1
            detail = traceback.format_exc() if not isinstance(e, harness.Failure) else str(e)
            log = ""
            if lab is not None and router == "tunnat":
                try:
                    log = "\n    tunnat log (last 15 lines):\n      " + "\n      ".join(lab.stderr().splitlines()[-15:])
                except OSError:
                    pass
            failures.append(full)
            print(f"{count} FAIL {full} ({time.time() - t0:.1f}s): {detail}{log}", flush=True)
        finally:
            if lab is not None:
                lab.close()
    print(f"\nnetns-tests: {time.time() - t_all:.0f}s")
    for f in failures:
        print(f"  failed: {f}")
    if router != "tunnat":
        # Measuring another router: its failures are findings, not test failures.
        print(f"{router}: {passed} behave as tunnat's tests expect, {failed} differ, {skipped} not applicable")
        return 0
    if peak:
        kb, name = max(peak)
        print(f"tunnat's peak RSS: at most {kb / 1024:.1f} MB over {len(peak)} tests (in {name})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
