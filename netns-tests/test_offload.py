"""TUN offloads (issue 5): with them (the default) the namespaces' kernels hand tunnat 64 KB
TCP super-packets with partial checksums, which it translates whole; without them
(--no-offload) every packet is MTU-sized with a complete checksum. Either way the bytes
arrive intact and what is on the wire checks out."""

import hashlib
import os
import socket
import threading

from harness import (CONTROL, REMOTE, ROUTER_OUT, SERVER_IN, check, eq, l4_checksum_ok, serve_tcp,
                     sniffed, tunnat_args)

DATA = os.urandom(4 << 20)


def _sink(lab, side, addr, port):
    """A TCP server that returns the SHA-256 of what it received."""
    srv = lab.listen(side, addr, port)

    def handle(c, _):
        h = hashlib.sha256()
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            h.update(d)
        c.sendall(h.digest())
    serve_tcp(srv, handle)


def _send(lab, side, addr, port):
    c = lab.connect(side, addr, port, timeout=10)
    c.sendall(DATA)
    c.shutdown(socket.SHUT_WR)
    got = c.recv(64)
    eq(got, hashlib.sha256(DATA).digest(), f"4 MB through to {addr}:{port} intact")


def _watch(sn, seen, stop):
    while not stop.is_set():
        try:
            ip = sniffed(sn)
        except socket.timeout:
            continue
        if ip["proto"] == 6:
            seen.append((ip["total"], ip.get("partial", False), l4_checksum_ok(ip), ip["src"], ip["dst"]))


def _transfer_and_watch(lab):
    """4 MB out through NAPT and 4 MB in through the port forward, sniffed on the wan."""
    _sink(lab, "wan", REMOTE, 7300)
    _sink(lab, "lan", SERVER_IN, 9999)
    seen, stop = [], threading.Event()
    sn = lab.sniffer("wan")
    sn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    t = threading.Thread(target=_watch, args=(sn, seen, stop), daemon=True)
    t.start()
    _send(lab, "lan", REMOTE, 7300)
    _send(lab, "wan", ROUTER_OUT, 8888)
    stop.set()
    t.join(2)
    return seen, lab.stats()["nat"]


@tunnat_args("--control", CONTROL, "--dnat", "tcp:8888=192.168.122.73:9999")
def test_offloads_carry_super_packets_through_nat(lab):
    check("offloads on" in lab.stderr(), "banner says offloads on")
    seen, nat = _transfer_and_watch(lab)
    out = [s for s in seen if s[3] == ROUTER_OUT]
    big = [s for s in out if s[0] > 1500]
    check(big, f"no super-packet left tunnat (largest {max(s[0] for s in out)} bytes)")
    check(all(s[1] for s in big), "super-packets leave with a partial checksum")
    bad = [s for s in out if not s[2]]
    eq(bad, [], "segments whose checksum (or partial sum) is wrong after translation")
    check(nat["gso_forwarded"] > 0, f"gso_forwarded {nat['gso_forwarded']}")
    eq(nat["drops"].get("bad-offload", 0), 0, "bad-offload drops")
    print(f"    ({nat['gso_forwarded']} super-packets forwarded, largest {max(s[0] for s in big)} bytes)")


@tunnat_args("--control", CONTROL, "--dnat", "tcp:8888=192.168.122.73:9999", "--no-offload")
def test_without_offloads_every_packet_fits_the_mtu(lab):
    check("offloads off" in lab.stderr(), "banner says offloads off")
    seen, nat = _transfer_and_watch(lab)
    out = [s for s in seen if s[3] == ROUTER_OUT]
    check(out, "segments seen")
    eq(max(s[0] for s in out), 1500, "largest packet on the wire")
    check(not any(s[1] for s in out) and all(s[2] for s in out), "complete, valid checksums")
    eq(nat["gso_forwarded"], 0, "gso_forwarded")


@tunnat_args("--control", CONTROL, "--outside-mtu", "1280")
def test_super_packets_for_a_narrower_port_are_cut_smaller(lab):
    """tunnat's outside MTU is 1280 while both hosts have 1500: the inside host's
    super-packets carry 1448-byte segments, too big with DF, so it is told "fragmentation
    needed" and sends smaller ones; the transfer completes."""
    _sink(lab, "wan", REMOTE, 7300)
    _send(lab, "lan", REMOTE, 7300)
    nat = lab.stats()["nat"]
    check(nat["drops"].get("too-big", 0) >= 1, f"fragmentation needed sent: {nat['drops']}")
    route = lab.sh("lan", ["ip", "route", "get", REMOTE]).stdout
    check("mtu 1280" in route, f"the inside host learned the path MTU: {route}")
