#!/usr/bin/env python3
"""Side-by-side benchmark: tunnat, a bare TUN copy loop, and the kernel's netfilter NAT,
on the same lab addresses, measured in one run on this machine.

    scripts/bench.sh [--quick]

Five routers: tunnat with TUN offloads (its default) and without (--no-offload), the copy
loop (moving packets on io_uring, as tunnat does by default) likewise with and without
offloads, and netfilter. Figures per router: iperf3 TCP
inside->outside (NAPT) and outside->inside (DNAT) at MTU 1500 and 9000, UDP 64-byte
datagrams/s delivered inside->outside, ping RTT, and short TCP connections/s through NAT;
the router process's own CPU time per forwarded packet at fixed offered rates (64-byte
UDP at 40 kpps, TCP at 1 Gbit/s per 1500-byte segment; from the scheduler's exact run
time in /proc/PID/task/*/schedstat, for tunnat and the copy loop), and where `perf` is
installed, where the 40 kpps figure goes (a profile of the router at that rate: the far
host's stack run inside the router's TUN writes, the router's kernel work, its user-space
code);
64-byte UDP with the router on a core of its own (trafgen offering more than it takes
on CPU 0, the router pinned to CPU 1, netfilter's receive work steered there by RPS): the
datagrams delivered per second and the router's CPU per datagram, netfilter included
(its softirq time on that core);
and at MTU 1500 the same TCP and UDP cells over IPv6 (NAT66 and an IPv6 port forward; the
copy loop routes IPv6 as it is), with each router's IPv6/IPv4 ratios. NAT64 beside Tayga:
tunnat with and without offloads and Tayga with the kernel's NAT44 behind it
(kernel_lab.py), both on prefix fd64:ff9b:1::/96 with an IPv6-only inside and an
IPv4-only outside: TCP IPv6 to IPv4 and back through a static forward, UDP 64-byte
datagrams, ping RTT.
Ratios: tunnat / copy loop with equal offload settings, and tunnat / netfilter. Each
router is measured three times (rounds interleaved) and each cell is the median; --quick
measures once, 2 s each. A run in which any iperf3 fails is not reported. Needs root,
iperf3, iptables, python3, trafgen (netsniff-ng).

`--only K1,K2` measures only those routers (tunnat, copy, tunnat-plain, copy-plain,
netfilter, baseline, baseline-plain, tunnat64, tunnat64-plain, tayga, and copy-busy,
copy-busy-plain: the copy loop spinning `--busy-us` µs, default 50, before it sleeps;
copy-calls, copy-calls-plain: the copy loop with a read and a write call per packet
instead of io_uring; tunnat-calls, tunnat-calls-plain: tunnat with --no-io-uring;
copy-coalesce, copy-coalesce-plain: the copy loop on io_uring waiting up to
`--coalesce-us` µs, default 20, for a batch; copy-defer, copy-defer-plain: the copy loop
on io_uring with IORING_SETUP_DEFER_TASKRUN; copy-mq, copy-mq-plain: the copy loop on
`--queues N` queues of multi-queue TUNs, default 2, a thread and an io_uring each;
copy-nogro, tunnat-nogro: the copy loop and tunnat writing each UDP datagram on its own,
where by default, with offloads, both join a batch's datagrams of one flow into UDP GSO
super-packets (`--udp-gro`, `--no-udp-gro`); copy-fixed, copy-fixed-plain: the copy loop
writing from its pools registered as fixed buffers, `--fixed`; copy-batch,
copy-batch-plain: the copy loop with both `--coalesce-us` and `--defer-taskrun`, so that
a loaded loop is woken once per batch; copy-bufs, copy-bufs-plain: the copy loop with
`--bufs N` buffers per TUN, default 16, where it has 64 by default; tunnat-bufs,
tunnat-bufs-plain: tunnat with `--io-buffers N`, default 64, where it has 16 by default
with offloads),
`--rounds N` sets the rounds; the order of the routers alternates between rounds, so none
always runs first.

`--baseline BIN` adds another tunnat binary (say, a build of the previous commit), with
and without offloads, measured in the same interleaved rounds, and prints the new
binary's figures relative to it: how a change is shown to be within noise. It is
measured on the NAT64 lab too (kind baseline64, with offloads).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "netns-tests"))
import harness  # noqa: E402
import kernel_lab  # noqa: E402
from harness import CLIENT, REMOTE, REMOTE6, ROUTER_OUT, ROUTER_OUT6, SERVER_IN, SERVER_IN6, run  # noqa: E402

QUICK = "--quick" in sys.argv
SECS = 2 if QUICK else 4
# Each router is measured ROUNDS times, the rounds interleaved so that whatever else the
# machine does falls on all of them alike; the table shows the median of each cell.
def _arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


ROUNDS = int(_arg("--rounds", 1 if QUICK else 3))
ONLY = _arg("--only", None)
COPY = os.path.join(ROOT, "target", "release", "examples", "tun_copy")
BASELINE = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
# The copy loop with busy polling (`copy-busy`, `copy-busy-plain`): how long it spins on
# the empty TUNs before sleeping, in µs (issue 18's levers are tried on the copy loop first).
BUSY_US = int(_arg("--busy-us", 50))
# The copy loop on io_uring waiting for batches (`copy-coalesce`, `copy-coalesce-plain`):
# how long a wait holds out for more completions, in µs.
COALESCE_US = int(_arg("--coalesce-us", 20))
# The copy loop on multi-queue TUNs (`copy-mq`, `copy-mq-plain`): queues (and threads).
QUEUES = int(_arg("--queues", 2))
# The copy loop with another number of buffers per TUN (`copy-bufs`, `copy-bufs-plain`).
BUFS = int(_arg("--bufs", 16))
# tunnat with another number of buffers per TUN (`tunnat-bufs`, `tunnat-bufs-plain`:
# `--io-buffers`, where its default is 16 with offloads).
TUNNAT_BUFS = int(_arg("--io-buffers", 64))


class TunRouter(harness.Lab):
    """tunnat or the copy loop between the lab's two TUNs."""

    def __init__(self, kind, mtu):
        self.kind = kind
        # Dual stack at MTU 1500, for the IPv6 cells.
        super().__init__(start=False, dual=(mtu == 1500 and not kind.startswith("baseline")))
        if kind.startswith("copy-mq"):
            # A queue can join only a device made multi_queue.
            for ns, dev, side in ((self.lan, "nat-in", "lan"), (self.wan, "nat-out", "wan")):
                run(["ip", "-n", ns, "link", "del", dev])
                run(["ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tun", "multi_queue"])
                self.wire(side)
        for ns, dev in ((self.lan, "nat-in"), (self.wan, "nat-out")):
            run(["ip", "-n", ns, "link", "set", dev, "mtu", str(mtu)])
        offload = not kind.endswith("-plain")
        if kind.startswith(("tunnat", "baseline")):
            self.start(["--mtu", str(mtu), "--dnat", "tcp:5201=192.168.122.73", "--dnat", "udp:5201=192.168.122.73",
                        "--dnat", "tcp:7001=192.168.122.73", *([] if offload else ["--no-offload"]),
                        *(["--no-io-uring"] if "-calls" in kind else []),
                        *(["--no-udp-gro"] if kind == "tunnat-nogro" else []),
                        *(["--io-buffers", str(TUNNAT_BUFS)] if kind.startswith("tunnat-bufs") else []),
                        *(["--dnat", "tcp:5201=[fd00:122::73]"] if self.dual else [])],
                       env={"RUST_LOG": "warn"})
            self.dnat_target, self.dnat_target6 = ROUTER_OUT, ROUTER_OUT6
        else:
            # No NAT: the outside hosts route the inside network to the TUN directly.
            run(["ip", "-n", self.wan, "route", "add", "192.168.122.0/24", "dev", "nat-out"])
            if self.dual:
                run(["ip", "-n", self.wan, "-6", "route", "add", "fd00:122::/64", "dev", "nat-out"])
            self.log = open(self.log_path, "w+")
            # The copy loop moves packets as tunnat does by default, on io_uring (joining
            # UDP datagrams into super-packets, with offloads);
            # copy-calls with a read and a write call each, copy-busy likewise, spinning.
            busy = ["--busy-poll", str(BUSY_US)] if kind.startswith("copy-busy") else []
            if not kind.startswith(("copy-busy", "copy-calls")):
                busy = ["--uring"]
            if kind.startswith(("copy-coalesce", "copy-batch")):
                busy += ["--coalesce-us", str(COALESCE_US)]
            if kind.startswith(("copy-defer", "copy-batch")):
                busy += ["--defer-taskrun"]
            if kind.startswith("copy-fixed"):
                busy += ["--fixed"]
            if kind.startswith("copy-bufs"):
                busy += ["--bufs", str(BUFS)]
            if offload and busy[:1] == ["--uring"] and kind != "copy-nogro" \
                    and not kind.startswith(("copy-coalesce", "copy-defer")):
                busy += ["--udp-gro"]  # as tunnat does by default
            if kind.startswith("copy-mq"):
                busy = ["--queues", str(QUEUES), "--uring"]
            self.proc = subprocess.Popen([COPY, "nat-in", self.lan, "nat-out", self.wan,
                                          *(["--offload"] if offload else []), *busy], stderr=self.log)
            harness.wait_for(lambda: "ready" in self.stderr(), 5, "tun_copy")
            self.dnat_target, self.dnat_target6 = SERVER_IN, SERVER_IN6


    def args(self, extra=()):
        a = super().args(extra)
        if self.kind.startswith("baseline"):
            a[0] = BASELINE
        return a


def kernel_router(mtu):
    """The kernel's netfilter NAT on the same addresses (netns-tests/kernel_lab.py)."""
    dual = mtu == 1500
    r = kernel_lab.KernelLab(["--dnat", "tcp:5201=192.168.122.73", "--dnat", "udp:5201=192.168.122.73",
                              "--dnat", "tcp:7001=192.168.122.73",
                              *(["--dnat", "tcp:5201=[fd00:122::73]"] if dual else [])],
                             outside_mtu=mtu, inside_mtu=mtu, dual=dual)
    r.dnat_target, r.dnat_target6 = ROUTER_OUT, ROUTER_OUT6
    return r


def iperf(r, server_side, bind, client_side, target, extra=()):
    srv = r.spawn(server_side, ["iperf3", "-s", "-1", "-B", bind])
    time.sleep(0.3)
    p = r.sh(client_side, ["iperf3", "-c", target, "-t", str(SECS), "-J", *extra], timeout=SECS + 30, check_rc=False)
    srv.wait(10)
    res = json.loads(p.stdout) if p.stdout.strip() else {}
    if p.returncode != 0 or "error" in res:
        raise SystemExit(f"bench: iperf3 failed, not reporting this run: {res.get('error', p.stderr)}")
    return res


def tcp_gbps(r, direction):
    if direction == "out":
        res = iperf(r, "wan", REMOTE, "lan", REMOTE)
    else:
        res = iperf(r, "lan", SERVER_IN, "wan", r.dnat_target)
    return res["end"]["sum_received"]["bits_per_second"] / 1e9


def tcp6_gbps(r, direction):
    if direction == "out":
        res = iperf(r, "wan", REMOTE6, "lan", REMOTE6)
    else:
        res = iperf(r, "lan", SERVER_IN6, "wan", r.dnat_target6)
    return res["end"]["sum_received"]["bits_per_second"] / 1e9


def udp_pps(r, remote=REMOTE, flows=1):
    res = iperf(r, "wan", remote, "lan", remote, ["-u", "-l", "64", "-b", "0", "-P", str(flows)])
    s = res["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"]


def cpu_ns(pid):
    """The run time of every thread of process `pid` so far, in ns (the scheduler's exact
    count: /proc/PID/task/*/schedstat's first field; these VMs have no cycle counters)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


# The fixed offered rates at which the router's CPU per packet is measured.
UDP_RATE_PPS = 40_000
UDP_BUSY_PPS = 200_000
TCP_RATE_BPS = 1_000_000_000
TCP_SEGMENT = 1448  # payload of a 1500-byte segment with TCP timestamps


def cpu_per_packet(r):
    """The router process's CPU time per forwarded packet at fixed offered rates, in µs:
    64-byte UDP datagrams at 40 kpps (most come alone) and at 200 kpps (in batches, which
    batching levers can use), and TCP at 1 Gbit/s counted in 1500-byte segments (whatever
    the offloads make of them on the way)."""
    out = {}
    for key, pps in (("cpu_udp64_us", UDP_RATE_PPS), ("cpu_udp64_busy_us", UDP_BUSY_PPS)):
        before = cpu_ns(r.proc.pid)
        s = iperf(r, "wan", REMOTE, "lan", REMOTE, ["-u", "-l", "64", "-b", str(pps * 64 * 8)])["end"]["sum"]
        out[key] = (cpu_ns(r.proc.pid) - before) / 1000 / max(1, s["packets"] - s["lost_packets"])
    before = cpu_ns(r.proc.pid)
    res = iperf(r, "wan", REMOTE, "lan", REMOTE, ["-b", str(TCP_RATE_BPS)])
    segments = res["end"]["sum_received"]["bytes"] / TCP_SEGMENT
    out["cpu_tcp1500_us"] = (cpu_ns(r.proc.pid) - before) / 1000 / max(1, segments)
    return out


PERF = shutil.which("perf")
TRAFGEN = shutil.which("trafgen")

# One core each: the rate at which trafgen offers 64-byte UDP (more than any router here
# takes on one core; the routers are compared at what they deliver).
CAP_OFFER_PPS = 3_000_000


def one_core_each(r, kind):
    """64-byte UDP with the router on a core of its own, as a router box has, rather than
    sharing two cores with iperf3's sender and receiver: trafgen (netsniff-ng, one
    packet a system call, in-kernel from there) offers CAP_OFFER_PPS from the inside host
    on CPU 0, of one flow, then of four (source ports 40000-40003 in turn, so that a
    batch holds every flow's datagrams interleaved); the router runs on CPU 1 (every thread of a TUN router pinned
    there; for netfilter, RPS steers the router namespace's receive work there). The far
    host has a UDP socket bound to the port that nobody reads: each datagram is received
    (a super-packet is split first, as for iperf3) and counted, then dropped at the full
    buffer. Returns for each the datagrams delivered per second and the router's CPU per
    datagram (a TUN router's run time, as in `cpu_per_packet`; for netfilter CPU 1's time
    in interrupts and softirqs, from /proc/stat's ticks, exact enough at a busy CPU).
    Empty on one CPU, or without trafgen."""
    if not TRAFGEN or (os.cpu_count() or 1) < 2:
        return {}
    ip = [0x45, 0, "const16(92)", 0, 0, 0x40, 0, 64, 17, "csumip({a}, {b})",
          *CLIENT.split("."), *REMOTE.split("."), "{sport}", "const16(9)", "const16(72)",
          "csumudp({a}, {c})", "fill(0x61, 64)"]
    if kind == "netfilter":
        def mac(ns, dev):
            return [f"0x{b}" for b in run(["ip", "-n", ns, "-br", "link", "show", dev]).stdout.split()[2].split(":")]
        frame, at = [*mac(r.rtr, "vin"), *mac(r.lan, "nat-in"), "0x08", "0x00", *ip], 14
        run(["ip", "netns", "exec", r.rtr, "sh", "-c", "echo 2 > /sys/class/net/vin/queues/rx-0/rps_cpus"])
        tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")

        def cpu():
            with open("/proc/stat") as f:
                cpu1 = next(line for line in f if line.startswith("cpu1 ")).split()
            return (int(cpu1[6]) + int(cpu1[7])) * tick_ns  # irq, softirq
    else:
        frame, at = ip, 0
        for t in os.listdir(f"/proc/{r.proc.pid}/task"):
            run(["taskset", "-p", "-c", "1", t], check_rc=False)  # a thread may have ended

        def cpu():
            return cpu_ns(r.proc.pid)
    with r.ns("wan"):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((REMOTE, 9))

    def received():
        out = r.sh("wan", ["nstat", "-az", "UdpInDatagrams", "UdpRcvbufErrors"]).stdout.splitlines()[1:]
        return sum(int(line.split()[1]) for line in out)
    lead, window = (0.5, 1.0) if QUICK else (1.0, SECS - 1.0)
    out = {}
    tmp = tempfile.mkdtemp(prefix="tunnat-bench-")
    try:
        # trafgen's dinc counts one byte: 0x9c40-0x9c43 are ports 40000-40003.
        for key, sport in (("cap", "const16(40000)"), ("cap4", "0x9c, dinc(0x40, 0x43, 1)")):
            conf = os.path.join(tmp, f"{key}.cfg")
            with open(conf, "w") as f:
                f.write("{ " + ", ".join(str(x).format(a=at, b=at + 19, c=at + 20, sport=sport) for x in frame)
                        + " }\n")
            gen = r.spawn("lan", ["timeout", "-s", "INT", str(lead + window + 2), "taskset", "-c", "0", TRAFGEN,
                                  "-o", "nat-in", "-c", conf, "--cpus", "1", "-q", "-n", "0", "-b",
                                  f"{CAP_OFFER_PPS}pps"])
            try:
                time.sleep(lead)
                n0, c0, t0 = received(), cpu(), time.time()
                time.sleep(window)
                n1, c1, t1 = received(), cpu(), time.time()
            finally:
                gen.wait(lead + window + 10)
            if n1 - n0 <= 0:
                raise SystemExit(f"bench: nothing arrived through {kind} with one core each, not reporting this run")
            out[f"{key}_udp64_pps"] = (n1 - n0) / (t1 - t0)
            out[f"{key}_cpu_us"] = (c1 - c0) / 1000 / (n1 - n0)
    finally:
        sink.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def cpu_shares(r):
    """Where the router's CPU goes at the 40 kpps of `cpu_per_packet`, as fractions of its
    samples in a `perf` profile with call graphs (taken in a window of its own, so that the
    sampling does not weigh on the exact figure): `cpu_far` under `netif_receive_skb`, the
    receiving namespace's stack that the kernel runs inside the router's TUN write (IP, UDP,
    waking the receiving iperf3: a real router's far host pays this on its own CPU, and
    netfilter in a softirq no process is charged for); `cpu_user`, the router's own code
    in user space. The rest is the router's own kernel work: system calls, the TUN's reads
    and writes, io_uring, sleeping and waking. Empty without perf."""
    if not PERF:
        return {}
    data = os.path.join(tempfile.mkdtemp(prefix="tunnat-bench-"), "perf.data")
    lead = 0.5 if QUICK else 1

    def record():
        time.sleep(lead)
        subprocess.run([PERF, "record", "-q", "-g", "-F", "10000", "-o", data, "-p", str(r.proc.pid), "--",
                        "sleep", str(SECS - 2 * lead)], capture_output=True)
    t = threading.Thread(target=record)
    t.start()
    iperf(r, "wan", REMOTE, "lan", REMOTE, ["-u", "-l", "64", "-b", str(UDP_RATE_PPS * 64 * 8)])
    t.join()

    def report(*how):
        return subprocess.run([PERF, "report", "-i", data, "--stdio", "-g", "none", *how],
                              capture_output=True, text=True).stdout
    try:
        children = {m.group(2): float(m.group(1)) for m in re.finditer(
            r"^\s+([\d.]+)%\s+[\d.]+%\s+\[k\]\s+(\S+)", report("--children", "--sort", "sym"), re.M)}
        kernel = sum(float(m.group(1)) for m in re.finditer(
            r"^\s+([\d.]+)%\s+\[kernel", report("--no-children", "--sort", "dso"), re.M))
    finally:
        shutil.rmtree(os.path.dirname(data), ignore_errors=True)
    far = max((children.get(s, 0.0) for s in ("netif_receive_skb", "__netif_receive_skb",
                                               "__netif_receive_skb_one_core")), default=0.0)
    if kernel == 0:
        return {}
    return {"cpu_far": far / 100, "cpu_user": (100 - kernel) / 100}


def ping_ms(r):
    out = r.sh("lan", ["ping", "-c", "50" if QUICK else "200", "-i", "0.01", "-q", REMOTE]).stdout
    return float(out.strip().splitlines()[-1].split("=")[1].split("/")[1])


def conns_per_s(r):
    """Sequential short TCP connections inside -> outside (connect, 1 byte back, close)."""
    srv = None
    with r.ns("wan"):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((REMOTE, 7002))
        srv.listen(512)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.5)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.sendall(b"x")
                c.close()
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    n, t0 = 0, time.time()
    while time.time() - t0 < SECS:
        with r.ns("lan"):
            c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.settimeout(2)
        c.connect((REMOTE, 7002))
        c.recv(1)
        c.close()
        n += 1
    stop.set()
    t.join()
    srv.close()
    return n / (time.time() - t0)


P64 = "fd64:ff9b:1::"


class Lab64(harness.Lab):
    """The NAT64 lab with tunnat, or with the `--baseline` binary (kind baseline64)."""

    def __init__(self, kind, **kw):
        self.kind = kind
        super().__init__(**kw)

    def args(self, extra=()):
        a = super().args(extra)
        if self.kind.startswith("baseline"):
            a[0] = BASELINE
        return a


def nat64_router(kind):
    """An IPv6-only inside and an IPv4-only outside, with tunnat or Tayga + NAT44 between."""
    dnat = ["--dnat", "tcp:5201=[fd00:122::73]"]
    if kind == "tayga":
        return kernel_lab.KernelLab(dnat, nat64=P64 + "/96")
    r = Lab64(kind, extra_args=dnat, start=False, nat64=P64 + "/96")
    r.start(dnat + (["--no-offload"] if kind.endswith("-plain") else []), env={"RUST_LOG": "warn"})
    return r


def measure64(kind):
    r = nat64_router(kind)
    try:
        to = P64 + REMOTE
        out = {"tcp64_out": iperf(r, "wan", REMOTE, "lan", to)["end"]["sum_received"]["bits_per_second"] / 1e9,
               "tcp64_in": iperf(r, "lan", SERVER_IN6, "wan", ROUTER_OUT)["end"]["sum_received"]["bits_per_second"] / 1e9}
        s = iperf(r, "wan", REMOTE, "lan", to, ["-u", "-l", "64", "-b", "0"])["end"]["sum"]
        out["udp64_64_pps"] = (s["packets"] - s["lost_packets"]) / s["seconds"]
        p = r.sh("lan", ["ping", "-6", "-c", "50" if QUICK else "200", "-i", "0.01", "-q", to]).stdout
        out["ping64_ms"] = float(p.strip().splitlines()[-1].split("=")[1].split("/")[1])
        return out
    finally:
        r.close()


def measure(kind, mtu):
    r = kernel_router(mtu) if kind == "netfilter" else TunRouter(kind, mtu)
    try:
        out = {f"tcp_out_{mtu}": tcp_gbps(r, "out"), f"tcp_in_{mtu}": tcp_gbps(r, "in")}
        if mtu == 1500:
            out.update(udp64_pps=udp_pps(r), udp64x4_pps=udp_pps(r, flows=4), ping_ms=ping_ms(r),
                       conns_s=conns_per_s(r))
            if kind != "netfilter":
                out.update(cpu_per_packet(r))
                out.update(cpu_shares(r))
            if r.dual:
                out.update(tcp6_out_1500=tcp6_gbps(r, "out"), tcp6_in_1500=tcp6_gbps(r, "in"),
                           udp6_64_pps=udp_pps(r, REMOTE6))
            # Last: it pins the router to one CPU.
            out.update(one_core_each(r, kind))
        return out
    finally:
        r.close()


def main():
    if os.geteuid() != 0:
        sys.exit("bench: needs root")
    kinds = ("tunnat", "copy", "tunnat-plain", "copy-plain", "netfilter")
    levers = ("copy-busy", "copy-busy-plain", "copy-calls", "copy-calls-plain", "tunnat-calls", "tunnat-calls-plain",
              "copy-coalesce", "copy-coalesce-plain", "copy-defer", "copy-defer-plain", "copy-mq", "copy-mq-plain", "copy-nogro",
              "tunnat-nogro", "copy-fixed", "copy-fixed-plain", "copy-batch", "copy-batch-plain", "copy-bufs",
              "copy-bufs-plain", "tunnat-bufs", "tunnat-bufs-plain")
    measured = kinds + (("baseline", "baseline-plain") if BASELINE else ()) + levers
    if ONLY:
        measured = tuple(k for k in measured if k in ONLY.split(","))
    else:
        measured = tuple(k for k in measured if k not in levers)
    kinds64 = ("tunnat64", "tunnat64-plain", "tayga")
    measured64 = tuple(k for k in kinds64 + (("baseline64",) if BASELINE else ())
                       if not ONLY or k in ONLY.split(","))
    runs = {k: {} for k in measured + measured64}
    for rnd in range(ROUNDS):
        for mtu in (1500, 9000):
            for k in (measured if rnd % 2 == 0 else measured[::-1]):
                print(f"bench: round {rnd + 1}/{ROUNDS}: {k} at MTU {mtu} ...", file=sys.stderr, flush=True)
                for key, x in measure(k, mtu).items():
                    runs[k].setdefault(key, []).append(x)
        for k in (measured64 if rnd % 2 == 0 else measured64[::-1]):
            print(f"bench: round {rnd + 1}/{ROUNDS}: {k} (NAT64) ...", file=sys.stderr, flush=True)
            for key, x in measure64(k).items():
                runs[k].setdefault(key, []).append(x)
    res = {k: {key: sorted(xs)[len(xs) // 2] for key, xs in v.items()} for k, v in runs.items()}
    rows = [
        ("TCP inside->outside, MTU 1500 (Gbit/s)", "tcp_out_1500", True),
        ("TCP outside->inside DNAT, MTU 1500 (Gbit/s)", "tcp_in_1500", True),
        ("TCP inside->outside, MTU 9000 (Gbit/s)", "tcp_out_9000", True),
        ("TCP outside->inside DNAT, MTU 9000 (Gbit/s)", "tcp_in_9000", True),
        ("UDP 64-byte datagrams delivered (kpps)", "udp64_pps", True),
        ("UDP 64-byte datagrams, 4 flows (kpps)", "udp64x4_pps", True),
        ("ping RTT (ms, lower is better)", "ping_ms", False),
        ("short TCP connections (per s)", "conns_s", True),
        ("IPv6: TCP inside->outside, MTU 1500 (Gbit/s)", "tcp6_out_1500", True),
        ("IPv6: TCP outside->inside DNAT, MTU 1500", "tcp6_in_1500", True),
        ("IPv6: UDP 64-byte datagrams delivered (kpps)", "udp6_64_pps", True),
    ]
    if all(k in measured for k in kinds):
        print_main_table(res, kinds, rows)
        print_family_table(runs, kinds)
    print_cpu_table(res, [k for k in ("tunnat", "copy", "tunnat-plain", "copy-plain", "baseline", "baseline-plain",
                                      "tunnat-calls", "tunnat-calls-plain", "copy-calls", "copy-calls-plain",
                                      "copy-busy", "copy-busy-plain", "copy-coalesce", "copy-coalesce-plain",
                                      "copy-defer", "copy-defer-plain", "copy-mq", "copy-mq-plain", "copy-nogro", "tunnat-nogro",
                                      "copy-fixed", "copy-fixed-plain", "copy-batch", "copy-batch-plain",
                                      "copy-bufs", "copy-bufs-plain", "tunnat-bufs", "tunnat-bufs-plain")
                         if k in measured])
    print_one_core_table(res, [k for k in measured if "cap_udp64_pps" in res[k]])
    if all(k in measured64 for k in kinds64):
        print_nat64_table(res)
    if "baseline64" in measured64 and "tunnat64" in measured64:
        print(f"\nNAT64 with offloads, this tunnat against the baseline {BASELINE}, same rounds:")
        for name, key, _ in NAT64_ROWS:
            t, b = res["tunnat64"][key], res["baseline64"][key]
            print(f"{name:44} {t:>9.2f} {b:>9.2f} {t / b:>7.0%}" if not key.endswith("pps") else
                  f"{name:44} {t / 1e3:>9.2f} {b / 1e3:>9.2f} {t / b:>7.0%}")
    if BASELINE and "baseline" in measured:
        print_baseline_table(res, rows, measured)
    print(f"(each cell: the median of {ROUNDS} round(s) of {SECS} s)")
    print("raw figures: " + json.dumps({k: {m: [round(x, 4) for x in xs] for m, xs in v.items()}
                                        for k, v in runs.items()}))


def print_cpu_table(res, kinds):
    """The router's own CPU per forwarded packet at fixed offered rates (the kernel's NAT
    works in softirq context, which no process's run time shows, so it has no column here;
    it has one in `print_one_core_table`)."""
    if not kinds:
        return
    rows = ((f"CPU per 64-byte UDP packet at {UDP_RATE_PPS // 1000} kpps (us)", "cpu_udp64_us"),
            (f"CPU per 64-byte UDP packet at {UDP_BUSY_PPS // 1000} kpps (us)", "cpu_udp64_busy_us"),
            (f"CPU per 1500-byte TCP segment at {TCP_RATE_BPS // 10**9} Gbit/s (us)", "cpu_tcp1500_us"))
    print(f"\n{'router process CPU, lower is better':44} " + " ".join(f"{k:>14}" for k in kinds))
    for name, key in rows:
        print(f"{name:44} " + " ".join(f"{res[k][key]:>14.3f}" for k in kinds))
        if key == "cpu_udp64_us" and all("cpu_far" in res[k] for k in kinds):
            # Where the 40 kpps figure goes (cpu_shares): three parts that add up to it.
            for part, share in (("  the far host's stack, in the TUN writes", lambda r: r["cpu_far"]),
                                ("  the router's own kernel work", lambda r: 1 - r["cpu_far"] - r["cpu_user"]),
                                ("  the router's own user-space code", lambda r: r["cpu_user"])):
                print(f"{part:44} " + " ".join(f"{res[k][key] * share(res[k]):>14.3f}" for k in kinds))
    if ONLY:
        # With --only the main table is not printed: the rates beside the CPU figures.
        for name, key, scale in (("UDP 64-byte datagrams delivered (kpps)", "udp64_pps", 1e-3),
                                 ("UDP 64-byte datagrams, 4 flows (kpps)", "udp64x4_pps", 1e-3),
                                 ("TCP inside->outside, MTU 1500 (Gbit/s)", "tcp_out_1500", 1),
                                 ("ping RTT (ms)", "ping_ms", 1),
                                 ("short TCP connections (per s)", "conns_s", 1)):
            print(f"{name:44} " + " ".join(f"{res[k][key] * scale:>14.2f}" for k in kinds))
    for a, b in (("tunnat", "copy"), ("tunnat-plain", "copy-plain")):
        if a in kinds and b in kinds:
            print(f"{a} / {b}: " + ", ".join(f"{key} {res[a][key] / res[b][key]:.0%}" for _, key in rows))


def print_one_core_table(res, kinds):
    """64-byte UDP with the router on a core of its own (`one_core_each`), netfilter
    included: its CPU is its softirq time on that core."""
    if not kinds:
        return
    print(f"\n{'64-byte UDP, the router on a core of its own':44} " + " ".join(f"{k:>14}" for k in kinds))
    for key, flows in (("cap", "1 flow"), ("cap4", "4 flows")):
        print(f"{flows + ': datagrams delivered (kpps)':44} "
              + " ".join(f"{res[k][key + '_udp64_pps'] / 1e3:>14.1f}" for k in kinds))
        print(f"{flows + ': router CPU per datagram (us)':44} "
              + " ".join(f"{res[k][key + '_cpu_us']:>14.3f}" for k in kinds))
        if "netfilter" in kinds:
            nf = res["netfilter"]
            print(f"{flows}, against netfilter: " + ", ".join(
                f"{k} {res[k][key + '_udp64_pps'] / nf[key + '_udp64_pps']:.0%} of its rate at "
                f"{res[k][key + '_cpu_us'] / nf[key + '_cpu_us']:.0%} of its CPU" for k in kinds if k != "netfilter"))


NAT64_ROWS = [("NAT64: TCP IPv6->IPv4, MTU 1500 (Gbit/s)", "tcp64_out", True),
              ("NAT64: TCP IPv4->IPv6 static forward", "tcp64_in", True),
              ("NAT64: UDP 64-byte datagrams (kpps)", "udp64_64_pps", True),
              ("NAT64: ping RTT (ms, lower is better)", "ping64_ms", False)]


def print_nat64_table(res):
    rows = NAT64_ROWS
    print(f"\n{'':44} {'tunnat':>9} {'tunnat':>9} {'Tayga +':>9}   {'tunnat vs Tayga':>16}")
    print(f"{'':44} {'offloads':>9} {'plain':>9} {'NAT44':>9}   {'offl':>7} {'plain':>7}")
    for name, key, _ in rows:
        scale = 1e-3 if key.endswith("pps") else 1
        t, tp, k = (res[x][key] * scale for x in ("tunnat64", "tunnat64-plain", "tayga"))
        print(f"{name:44} {t:>9.2f} {tp:>9.2f} {k:>9.2f}   {t / k:>7.0%} {tp / k:>7.0%}")


def print_main_table(res, kinds, rows):
    print(f"\n{'':44} {'-- with offloads --':>19} {'---- without ----':>19} {'':>9}   {'tunnat vs copy':>14} {'tunnat':>7}")
    print(f"{'':44} {'tunnat':>9} {'copy':>9} {'tunnat':>9} {'copy':>9} {'netfilter':>9}   {'offl':>6} {'plain':>7} {'vs kern':>7}")
    for name, key, higher in rows:
        v = [res[k][key] for k in kinds]
        if key in ("udp64_pps", "udp64x4_pps", "udp6_64_pps"):
            v = [x / 1000 for x in v]
        ratio = (lambda a, b: a / b) if higher else (lambda a, b: b / a)
        print(f"{name:44} " + " ".join(f"{x:>9.2f}" for x in v)
              + f"   {ratio(v[0], v[1]):>6.0%} {ratio(v[2], v[3]):>7.0%} {ratio(v[0], v[4]):>7.0%}")
    print("\n(ratios: tunnat relative to the other router, same offload setting; above 100% means tunnat is better)")


def print_family_table(runs, kinds):
    """Each router's IPv6 cells against its IPv4 ones: the IPv6 measurement follows the
    IPv4 one on the same router in each round, so the median of the rounds' ratios is
    steadier than the ratio of the medians."""
    pairs = (("TCP inside->outside, MTU 1500", "tcp6_out_1500", "tcp_out_1500"),
             ("TCP outside->inside DNAT, MTU 1500", "tcp6_in_1500", "tcp_in_1500"),
             ("UDP 64-byte datagrams", "udp6_64_pps", "udp64_pps"))
    print(f"\nIPv6 / IPv4, each router (median of the rounds' ratios):{'':0} " + " ".join(f"{k:>12}" for k in kinds))
    for name, v6, v4 in pairs:
        cells = []
        for k in kinds:
            ratios = sorted(a / b for a, b in zip(runs[k][v6], runs[k][v4]))
            cells.append(f"{ratios[len(ratios) // 2]:>12.0%}")
        print(f"{name:44} " + " ".join(cells))


def print_baseline_table(res, rows, measured):
    """This tunnat against the baseline binary, for the pairs measured."""
    print(f"\nthis tunnat against the baseline {BASELINE}, same rounds:")
    print(f"{'':44} {'tunnat':>9} {'baseline':>9} {'ratio':>7}   {'plain':>9} {'baseline':>9} {'ratio':>7}")
    for name, key, higher in rows:
        cells = []
        for a, b in (("tunnat", "baseline"), ("tunnat-plain", "baseline-plain")):
            if a not in measured or b not in measured or key not in res[a] or key not in res[b]:
                cells.append(f"{'':>9} {'':>9} {'':>7}")
                continue
            x, y = res[a][key], res[b][key]
            if key in ("udp64_pps", "udp64x4_pps", "udp6_64_pps"):
                x, y = x / 1000, y / 1000
            r = x / y if higher else y / x
            cells.append(f"{x:>9.2f} {y:>9.2f} {r:>7.1%}")
        print(f"{name:44} {cells[0]}   {cells[1]}")

if __name__ == "__main__":
    main()
