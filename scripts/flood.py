#!/usr/bin/env python3
"""Floods against tunnat and against the kernel's netfilter NAT on the same topology, side
by side (issue 12's floods 1-3 and 6). Everything stays inside the lab's namespaces, and
each flood is bounded in time.

    scripts/flood.sh [--secs N] [--only 1,6]
        (root; N: seconds each flood lasts, default 15; --only: those floods alone)

1. a random-source SYN flood at full rate (hping3 --flood) against the port forward 8888:
   new outbound connections from inside, and real connections to 8888, during it;
2. a full-rate flood of 64-byte UDP datagrams into the outside port (iperf3 -u -b 0):
   ping RTT p99 to the router's inside address, the control request's latency, and a
   paced UDP stream the other way;
3. 32 concurrent table listings at 30,000 sessions (`tunnat table`, `conntrack -L`): the
   longest ping during them, and tunnat's memory after;
6. 5,000 probes to a closed UDP port of the router in 0.5 s: ICMP errors sent back.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "netns-tests"))
import harness  # noqa: E402
import kernel_lab  # noqa: E402
from harness import CLIENT, REMOTE, ROUTER_IN, ROUTER_OUT, SERVER_IN, TUNNAT, run  # noqa: E402
from test_flood import udp_stream_delivered  # noqa: E402
from test_hostile import count_icmp, icmp_listener, probe_closed_port  # noqa: E402

SECS = int(sys.argv[sys.argv.index("--secs") + 1]) if "--secs" in sys.argv else 15
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
DNAT = ["--dnat", "tcp:8888=192.168.122.73:9999", "--dnat", "udp:5201=192.168.122.73",
        "--dnat", "tcp:5201=192.168.122.73"]


def router(kind):
    if kind == "netfilter":
        return kernel_lab.KernelLab(DNAT)
    lab = harness.Lab(start=False)
    lab.start(["--control", lab.control_path, *DNAT], env={"RUST_LOG": "warn"})
    return lab


def parallel(n, f):
    """Runs f() n times at once; how many returned true."""
    ok = []
    ts = [threading.Thread(target=lambda: ok.append(bool(f()))) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    return sum(ok)


def connects(lab, side, addr, port, want):
    def one():
        try:
            c = lab.connect(side, addr, port, timeout=3)
            data = c.recv(16)
            c.close()
            return data == want
        except OSError:
            return False
    return one


def serve(lab, side, addr, port, reply):
    srv = lab.listen(side, addr, port)
    harness.serve_tcp(srv, lambda c, p: c.sendall(reply))


def sessions(lab, kind):
    if kind == "netfilter":
        p = run(["ip", "netns", "exec", lab.rtr, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"], check_rc=False)
        return int(p.stdout.strip() or 0)
    return lab.stats()["nat"]["sessions"]


def ping_ms(lab, count, interval, target=ROUTER_IN):
    out = lab.sh("lan", ["ping", "-c", str(count), "-i", str(interval), "-W", "1", target], check_rc=False,
                 timeout=count * interval + 30).stdout
    return sorted(float(l.split("time=")[1].split()[0]) for l in out.splitlines() if "time=" in l)


def p99(xs):
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else float("nan")


def control_ms(lab, kind):
    t0 = time.time()
    if kind == "netfilter":
        run(["ip", "netns", "exec", lab.rtr, "conntrack", "-C"], check_rc=False)
    else:
        lab.ctl("stats")
    return (time.time() - t0) * 1000


def flood1(kind):
    lab = router(kind)
    try:
        serve(lab, "lan", SERVER_IN, 9999, b"served")
        serve(lab, "wan", REMOTE, 80, b"web")
        flood = lab.spawn("wan", ["hping3", "--flood", "-q", "-S", "-p", "8888", "--rand-source", ROUTER_OUT])
        time.sleep(3)
        t_end = time.time() + SECS - 3
        out_ok = in_ok = tries = 0
        while time.time() < t_end:
            out_ok += parallel(20, connects(lab, "lan", REMOTE, 80, b"web"))
            in_ok += parallel(10, connects(lab, "wan", ROUTER_OUT, 8888, b"served"))
            tries += 1
        n = sessions(lab, kind)
        cookies = "-" if kind == "netfilter" else lab.stats()["nat"]["syn_cookies_sent"]
        flood.kill()
        flood.wait(5)
        return {"outbound connections during a SYN flood": f"{out_ok}/{tries * 20}",
                "real connections to 8888 during it": f"{in_ok}/{tries * 10}",
                "sessions at its end": n,
                "SYNs answered with a cookie": cookies}
    finally:
        lab.close()


def flood2(kind):
    lab = router(kind)
    try:
        lab.spawn("lan", ["iperf3", "-s", "-B", SERVER_IN, "-p", "5201"])
        time.sleep(0.5)
        calm = p99(ping_ms(lab, 50, 0.02))
        flood = lab.spawn("wan", ["iperf3", "-c", ROUTER_OUT, "-p", "5201", "-u", "-b", "0", "-l", "64",
                                  "-t", str(SECS)])
        time.sleep(1.5)
        ctl = max(control_ms(lab, kind) for _ in range(5))
        rtts = ping_ms(lab, 100, 0.02)
        delivered = udp_stream_delivered(lab, n=3000, rate=3000)
        flood.kill()
        flood.wait(5)
        return {"ping p99 to the router, calm (ms)": f"{calm:.2f}",
                "ping p99 to the router, UDP flood (ms)": f"{p99(rtts):.2f} ({len(rtts)}/100)",
                "control request under the flood (ms)": f"{ctl:.0f}",
                "UDP the other way, delivered": f"{delivered:.0%}"}
    finally:
        lab.close()


def flood3(kind):
    lab = router(kind)
    try:
        for port in range(20000, 50000):
            s = lab.sock("lan", socket.SOCK_DGRAM)
            s.bind((CLIENT, port))
            s.sendto(b"x", (REMOTE, 9))
            s.close()
        time.sleep(1)
        n = sessions(lab, kind)
        rss0 = lab.peak_rss_kb() if kind != "netfilter" else None
        if kind == "netfilter":
            cmd = ["ip", "netns", "exec", lab.rtr, "conntrack", "-L"]
        else:
            cmd = [TUNNAT, "table", "--json", "--control", lab.control_path]
        ping = lab.spawn("lan", ["ping", "-i", "0.005", "-c", "600", "-W", "1", REMOTE])
        time.sleep(0.3)
        t0 = time.time()
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(32)]
        rcs = [p.wait(60) for p in procs]
        took = time.time() - t0
        out, _ = ping.communicate(timeout=30)
        rtts = [float(l.split("time=")[1].split()[0]) for l in out.splitlines() if "time=" in l]
        time.sleep(0.5)
        res = {"sessions listed": n,
               "32 listings at once: done in (s)": f"{took:.1f} ({rcs.count(0)}/32 ok)",
               "longest ping during them (ms)": f"{max(rtts) if rtts else float('nan'):.1f}"}
        if rss0 is not None:
            with open(f"/proc/{lab.proc.pid}/status") as f:
                rss = int(next(l for l in f if l.startswith("VmRSS")).split()[1])
            res["tunnat RSS after (MB)"] = f"{rss / 1024:.1f} (peak {lab.peak_rss_kb() / 1024:.1f})"
        return res
    finally:
        lab.close()


def flood6(kind):
    lab = router(kind)
    try:
        icmp = icmp_listener(lab)
        probe_closed_port(lab)
        got = count_icmp(icmp, time.time() + 1, 3, 3)
        return {"port unreachables for 5000 probes in 0.5 s": got}
    finally:
        lab.close()


def main():
    if os.geteuid() != 0:
        sys.exit("flood: needs root")
    results = {}
    for name, f in (("1 SYN flood", flood1), ("2 UDP flood", flood2), ("3 control at 30k sessions", flood3),
                    ("6 ICMP errors", flood6)):
        if ONLY and name.split()[0] not in ONLY:
            continue
        for kind in ("tunnat", "netfilter"):
            print(f"flood: {name} against {kind} ...", file=sys.stderr, flush=True)
            for k, v in f(kind).items():
                results.setdefault((name, k), {})[kind] = v
    print(f"\n{'':54} {'tunnat':>22} {'netfilter':>22}")
    last = None
    for (name, k), v in results.items():
        if name != last:
            print(f"-- {name} ({SECS} s floods)" if name.startswith(("1", "2")) else f"-- {name}")
            last = name
        print(f"{k:54} {str(v.get('tunnat', '-')):>22} {str(v.get('netfilter', '-')):>22}")
    print("raw: " + json.dumps({f"{n}: {k}": v for (n, k), v in results.items()}))


if __name__ == "__main__":
    main()
