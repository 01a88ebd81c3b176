"""UDP receive offload in user space (issue 18): with offloads and io_uring, UDP datagrams
of one flow that leave in one batch are joined into one UDP GSO super-packet and written
with one write; the kernel behind the TUN splits it back into the same datagrams. What
arrives must be exactly what was sent, in order per flow; a datagram with a bad checksum
must not be joined (the kernel completes a super-packet's checksums, which would repair
it); `--no-udp-gro` writes each datagram on its own."""

import socket
import time

from harness import CLIENT, CLIENT6, CONTROL, REMOTE, REMOTE6, ROUTER_OUT, SERVER_IN, check, eq, tunnat_args
from test_ipv6 import dual
from test_nat64 import nat64

FLOWS = 4
PER_FLOW = 5000


def _payload(flow, seq, sizes=(100, 37, 300)):
    """Datagram `seq` of `flow`: mostly `sizes[0]` bytes, every seventh `sizes[1]`, every
    thirteenth `sizes[2]`, so trains end and start on size changes too."""
    n = sizes[1] if seq % 7 == 6 else sizes[2] if seq % 13 == 12 else sizes[0]
    head = flow.to_bytes(2, "big") + seq.to_bytes(4, "big")
    return (head * (n // len(head) + 1))[:n]


def _interleaved(lab, family=socket.AF_INET, src=SERVER_IN, dst=REMOTE, to=None, rx_side="wan",
                 rx_family=None, sizes=(100, 37, 300)):
    """FLOWS flows from the inside host `src` to `to` (default `dst`), ports 7500 up,
    their datagrams interleaved, PER_FLOW each, received at `dst` in `rx_side`; returns
    what each flow's receiver got, in the order it got it."""
    rx, tx = [], []
    for f in range(FLOWS):
        r = lab.sock(rx_side, socket.SOCK_DGRAM, family=rx_family or family)
        r.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
        r.bind((dst, 7500 + f))
        r.setblocking(False)
        rx.append(r)
        t = lab.sock("lan", socket.SOCK_DGRAM, family=family)
        t.bind((src, 7500 + f))
        tx.append(t)
    got = [[] for _ in range(FLOWS)]

    def drain():
        for f, r in enumerate(rx):
            while True:
                try:
                    got[f].append(r.recv(2048))
                except BlockingIOError:
                    break

    for seq in range(PER_FLOW):
        for f in range(FLOWS):
            tx[f].sendto(_payload(f, seq, sizes), (to or dst, 7500 + f))
        if seq % 100 == 99:
            time.sleep(0.002)  # within the sockets' and the TUN queue's room
            drain()
    time.sleep(0.5)
    drain()
    return got


def _check_flows(got, sizes=(100, 37, 300)):
    for f, data in enumerate(got):
        check(len(data) >= PER_FLOW * 0.95, f"flow {f}: {len(data)} of {PER_FLOW} datagrams arrived")
        seqs = [int.from_bytes(d[2:6], "big") for d in data]
        check(all(a < b for a, b in zip(seqs, seqs[1:])), f"flow {f}: datagrams out of order")
        bad = [s for s, d in zip(seqs, data) if d != _payload(f, s, sizes)]
        check(not bad, f"flow {f}: datagrams {bad[:5]} arrived changed")


@tunnat_args("--control", CONTROL)
def test_interleaved_flows_are_joined_and_arrive_as_sent(lab):
    got = _interleaved(lab)
    _check_flows(got)
    io = lab.stats()["io"]
    total = sum(len(d) for d in got)
    check(io["udp_joined"] > total / 10,
          f"only {io['udp_joined']} of {total} datagrams were joined into super-packets")
    print(f"    ({total} datagrams, {io['udp_joined']} written inside another's super-packet)")


@dual
@tunnat_args("--control", CONTROL)
def test_ipv6_flows_are_joined_and_arrive_as_sent(lab):
    got = _interleaved(lab, socket.AF_INET6, CLIENT6, REMOTE6)
    _check_flows(got)
    check(lab.stats()["io"]["udp_joined"] > 0, "IPv6 datagrams joined")


@tunnat_args("--control", CONTROL, "--no-udp-gro")
def test_without_udp_gro_each_datagram_is_its_own_write(lab):
    got = _interleaved(lab)
    _check_flows(got)
    eq(lab.stats()["io"]["udp_joined"], 0, "datagrams joined with --no-udp-gro")


@tunnat_args("--control", CONTROL, "--dnat", "udp:7500-7503=192.168.122.73")
def test_hairpinned_flows_are_joined_and_arrive_as_sent(lab):
    """Through a port forward from inside: each train leaves by the port its datagrams
    came in by, built in the buffers of that same port's pool."""
    got = _interleaved(lab, src=CLIENT, dst=SERVER_IN, to=ROUTER_OUT, rx_side="lan")
    _check_flows(got)
    check(lab.stats()["io"]["udp_joined"] > 0, "hairpinned datagrams joined")


@nat64("64:ff9b:1::/96")
@tunnat_args("--control", CONTROL)
def test_nat64_flows_are_joined_and_arrive_as_sent(lab):
    """From an IPv6-only inside host to an IPv4 one: each datagram is translated (its IPv4
    header 20 bytes shorter, written further into its buffer) before it joins. Only
    translated datagrams over 1260 bytes carry DF (RFC 7915 section 5.1), and only those
    may join: the small ones of every seventh go alone, and end their flow's train."""
    import ipaddress
    to = str(ipaddress.IPv6Address(lab.p64 + REMOTE))
    sizes = (1300, 500, 1400)
    got = _interleaved(lab, socket.AF_INET6, CLIENT6, REMOTE, to=to, rx_family=socket.AF_INET, sizes=sizes)
    _check_flows(got, sizes)
    check(lab.stats()["io"]["udp_joined"] > 0, "translated datagrams joined")


def _csum_errors(lab):
    out = lab.sh("wan", ["cat", "/proc/net/snmp"]).stdout.splitlines()
    udp = [line.split() for line in out if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("InCsumErrors")])


@tunnat_args("--control", CONTROL)
def test_a_corrupt_datagram_is_not_repaired_by_joining(lab):
    """Raw datagrams with complete checksums, one in ten of them wrong, sent in bursts:
    the good ones are joined and arrive, the bad ones reach the outside host as they were
    and its stack drops them (as behind the kernel's NAT)."""
    from test_hostile import ipv4, raw_socket, send_raw, udp
    raw, dev = raw_socket(lab, "lan")
    rx = lab.sock("wan", socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
    rx.bind((REMOTE, 7600))
    rx.setblocking(False)
    before = _csum_errors(lab)
    sent_good = sent_bad = 0
    for burst in range(100):
        pkts = []
        for i in range(30):
            seq = burst * 30 + i
            bad = i % 10 == 4
            data = (b"BAD!" if bad else b"good") + seq.to_bytes(4, "big") + bytes(92)
            pkts.append(ipv4(CLIENT, REMOTE, 17, udp(CLIENT, REMOTE, 7600, 7600, data, bad_csum=bad),
                             ident=seq))
            sent_bad += bad
            sent_good += not bad
        send_raw(raw, dev, pkts)
        time.sleep(0.003)
    time.sleep(0.5)
    got = []
    while True:
        try:
            got.append(rx.recv(2048))
        except BlockingIOError:
            break
    eq(sum(d.startswith(b"BAD!") for d in got), 0, "corrupt datagrams delivered")
    check(len(got) >= sent_good * 0.95, f"{len(got)} of {sent_good} good datagrams arrived")
    errors = _csum_errors(lab) - before
    check(errors >= sent_bad * 0.95, f"the outside host saw {errors} of {sent_bad} bad checksums")
    check(lab.stats()["io"]["udp_joined"] > 0, "the good datagrams were joined")
