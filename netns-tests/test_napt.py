"""NAPT (masquerade): inside hosts reach the outside as 172.16.1.186."""

import socket
import struct
import time

from harness import (refused, silent, tunnat_args, CLIENT, REMOTE, REMOTE2, ROUTER_IN, ROUTER_OUT, SERVER_IN, check, csum,
                     eq, l4_checksum_ok, recv_all, serve_tcp, sniff, wait_for)


def test_http_through_napt_with_curl(lab):
    seen = []
    srv = lab.listen("wan", REMOTE, 80)

    def handler(c, peer):
        seen.append(peer)
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
    serve_tcp(srv, handler)
    out = lab.sh("lan", ["curl", "-sS", "--max-time", "5", f"http://{REMOTE}/"]).stdout
    eq(out, "hello\n", "page fetched through NAPT")
    eq(seen[0][0], ROUTER_OUT, "source address the server saw")


def test_tcp_source_port_preserved(lab):
    srv = lab.listen("wan", REMOTE, 7000)
    peers = []
    serve_tcp(srv, lambda c, p: (peers.append(p), c.sendall(b"ok")))
    s = lab.connect("lan", REMOTE, 7000, bind=(CLIENT, 41234))
    eq(recv_all(s), b"ok", "reply through NAPT")
    eq(peers[0], (ROUTER_OUT, 41234), "server saw the outside address and the preserved port")


def test_udp_port_conflict_two_hosts_same_port(lab):
    srv = lab.listen("wan", REMOTE, 5353, socket.SOCK_DGRAM)
    a = lab.sock("lan", socket.SOCK_DGRAM)
    b = lab.sock("lan", socket.SOCK_DGRAM)
    a.bind((CLIENT, 40000))
    b.bind((SERVER_IN, 40000))
    for s in (a, b):
        s.settimeout(3)
    a.sendto(b"from-a", (REMOTE, 5353))
    d1, p1 = srv.recvfrom(100)
    b.sendto(b"from-b", (REMOTE, 5353))
    d2, p2 = srv.recvfrom(100)
    eq((d1, p1), (b"from-a", (ROUTER_OUT, 40000)), "first host keeps its port")
    eq(p2[0], ROUTER_OUT, "second host's address")
    check(p2[1] != 40000 and p2[1] >= 1024, f"second host got another port in 1024-65535, got {p2[1]}")
    srv.sendto(b"to-b", p2)
    srv.sendto(b"to-a", p1)
    eq(b.recvfrom(100), (b"to-b", (REMOTE, 5353)), "reply to the second host")
    eq(a.recvfrom(100), (b"to-a", (REMOTE, 5353)), "reply to the first host")


def test_ping_through_napt(lab):
    out = lab.sh("lan", ["ping", "-c", "3", "-i", "0.2", "-W", "1", REMOTE]).stdout
    check(" 0% packet loss" in out, out)
    # Two inside hosts pinging at once each get their replies.
    p1 = lab.spawn("lan", ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", CLIENT, REMOTE2])
    p2 = lab.spawn("lan", ["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", SERVER_IN, REMOTE2])
    for p in (p1, p2):
        out = p.communicate(timeout=10)[0]
        check(" 0% packet loss" in out, out)


def test_echo_identifier_conflict(lab):
    """Two inside hosts using the same ICMP identifier: both get their reply."""
    socks = []
    for src in (CLIENT, SERVER_IN):
        s = lab.sock("lan", socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.bind((src, 0))
        s.settimeout(3)
        socks.append(s)
    sniffer = lab.sniffer("wan")
    for s in socks:
        msg = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"tunnat")
        msg[2:4] = struct.pack("!H", csum(bytes(msg)))
        s.sendto(bytes(msg), (REMOTE, 0))
    ids = set()
    for _ in range(2):
        ip = sniff(sniffer, lambda ip: ip["proto"] == 1 and ip["l4"][0] == 8 and ip["src"] == ROUTER_OUT)
        ids.add(struct.unpack("!H", ip["l4"][4:6])[0])
    eq(len(ids), 2, "two distinct identifiers on the outside")
    check(0x4242 in ids, "the first host kept its identifier")
    for s in socks:
        while True:
            pkt = s.recv(2000)
            icmp = pkt[(pkt[0] & 15) * 4:]
            if icmp[0] == 0:
                eq(struct.unpack("!H", icmp[4:6])[0], 0x4242, "reply carries the host's own identifier")
                break


def test_unsolicited_inbound_never_reaches_inside(lab):
    inside_udp = lab.listen("lan", "0.0.0.0", 6000, socket.SOCK_DGRAM)
    inside_tcp = lab.listen("lan", "0.0.0.0", 6001)
    inside_udp.settimeout(1)
    inside_tcp.settimeout(1)
    # UDP: the router answers port unreachable (a connected UDP socket sees ECONNREFUSED).
    u = lab.sock("wan", socket.SOCK_DGRAM)
    u.settimeout(2)
    u.connect((ROUTER_OUT, 6000))
    u.send(b"knock")
    refused(lambda: u.recv(100), "UDP to an unmapped port got an answer")
    # TCP: RST.
    refused(lambda: lab.connect("wan", ROUTER_OUT, 6001, timeout=2), "TCP to an unmapped port connected")
    # Directly addressed to an inside host: dropped.
    u2 = lab.sock("wan", socket.SOCK_DGRAM)
    lab.sh("wan", ["ip", "route", "add", "192.168.122.0/24", "dev", "nat-out"])
    u2.sendto(b"direct", (CLIENT, 6000))
    for s, what in ((inside_udp, "UDP"), (inside_tcp, "TCP")):
        silent(lambda: s.recvfrom(100) if what == "UDP" else s.accept(), f"unsolicited {what} reached the inside")
    wait_for(lambda: "dropped (not-routed)" in lab.stderr(), 2, "the direct packet counted as not-routed")


def test_checksums_and_ttl_on_the_wire(lab):
    """Sniff what tunnat writes to the outside: valid IP and transport checksums, TTL-1."""
    sn = lab.sniffer("wan")
    srv = lab.listen("wan", REMOTE, 9000, socket.SOCK_DGRAM)
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
    s.sendto(b"x" * 333, (REMOTE, 9000))
    ip = sniff(sn, lambda ip: ip["proto"] == 17 and ip["dst"] == REMOTE)
    eq(csum(ip["header"]), 0, "IPv4 header checksum verifies")
    check(l4_checksum_ok(ip), "UDP checksum verifies")
    eq(ip["ttl"], 63, "TTL decremented once")
    eq(ip["src"], ROUTER_OUT, "source")
    srv.recvfrom(1000)
    # TCP too: a whole connection's worth of segments.
    tsrv = lab.listen("wan", REMOTE, 9001)
    serve_tcp(tsrv, lambda c, p: c.sendall(recv_all(c)))
    c = lab.connect("lan", REMOTE, 9001)
    c.sendall(b"y" * 20000)
    c.shutdown(socket.SHUT_WR)
    eq(len(recv_all(c)), 20000, "echoed bytes")
    ip = sniff(sn, lambda ip: ip["proto"] == 6 and ip["src"] == ROUTER_OUT)
    check(l4_checksum_ok(ip) and csum(ip["header"]) == 0, "TCP segment checksums verify")


def test_receiving_kernel_drops_bad_checksums(lab):
    """Control for the tests above: a datagram with a broken UDP checksum sent through the
    router is translated (incrementally, so still broken) and the receiving kernel drops it,
    while the same datagram with a good checksum arrives."""
    srv = lab.listen("wan", REMOTE, 9100, socket.SOCK_DGRAM)
    srv.settimeout(1)
    raw = lab.sock("lan", socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.bind((CLIENT, 0))

    def udp(payload, good):
        hdr = struct.pack("!HHHH", 45000, 9100, 8 + len(payload), 0)
        pseudo = socket.inet_aton(CLIENT) + socket.inet_aton(REMOTE) + struct.pack("!BBH", 0, 17, 8 + len(payload))
        c = csum(pseudo + hdr + payload) or 0xFFFF
        if not good:
            c ^= 0x5555
        return hdr[:6] + struct.pack("!H", c) + payload

    raw.sendto(udp(b"broken", False), (REMOTE, 0))
    silent(lambda: srv.recvfrom(100), "a datagram with a bad checksum was delivered")
    raw.sendto(udp(b"fine", True), (REMOTE, 0))
    eq(srv.recvfrom(100), (b"fine", (ROUTER_OUT, 45000)), "good datagram delivered")


def test_traceroute_shows_the_router_hop(lab):
    for flags in ([], ["-U"], ["-I"], ["-T", "-p", "22"]):
        out = lab.sh("lan", ["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", *flags, REMOTE]).stdout
        lines = out.strip().splitlines()[1:]
        check(len(lines) == 2, f"traceroute {flags}: two hops expected:\n{out}")
        check(lines[0].split()[1] == ROUTER_IN, f"traceroute {flags}: hop 1 is the router:\n{out}")
        check(lines[1].split()[1] == REMOTE, f"traceroute {flags}: hop 2 is the destination:\n{out}")


def test_tracepath(lab):
    out = lab.sh("lan", ["tracepath", "-n", "-m", "5", REMOTE], check_rc=False).stdout
    check(ROUTER_IN in out and "reached" in out, out)


@tunnat_args("--udp-timeout", "2", "--icmp-timeout", "2")
def test_idle_mapping_expires_on_the_timer(lab):
    srv = lab.listen("wan", REMOTE, 9200, socket.SOCK_DGRAM)
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 47000))
    s.settimeout(1)
    s.sendto(b"hi", (REMOTE, 9200))
    _, mapped = srv.recvfrom(100)
    srv.sendto(b"while mapped", mapped)
    eq(s.recvfrom(100)[0], b"while mapped", "reply while the mapping is alive")
    # No traffic at all now: the event loop's timer must expire the mapping.
    t0 = time.time()
    wait_for(lambda: "expired udp 192.168.122.101:47000" in lab.stderr(), 5, "the timer to expire the mapping")
    check(time.time() - t0 < 3.5, "expired about 2 s after the last packet")
    srv.sendto(b"too late", mapped)
    silent(lambda: s.recvfrom(100), "a packet to an expired mapping reached the inside")


def test_iperf3_tcp_both_directions(lab):
    srv = lab.spawn("wan", ["iperf3", "-s", "-1", "-B", REMOTE])
    time.sleep(0.3)
    out = lab.sh("lan", ["iperf3", "-c", REMOTE, "-t", "2", "-J"], timeout=30).stdout
    import json
    r = json.loads(out)
    bps = r["end"]["sum_received"]["bits_per_second"]
    check(bps > 50e6, f"iperf3 throughput {bps / 1e6:.0f} Mbit/s")
    srv.wait(5)
    srv = lab.spawn("wan", ["iperf3", "-s", "-1", "-B", REMOTE])
    time.sleep(0.3)
    r = json.loads(lab.sh("lan", ["iperf3", "-c", REMOTE, "-t", "2", "-R", "-J"], timeout=30).stdout)
    check(r["end"]["sum_received"]["bits_per_second"] > 50e6, "reverse direction throughput")


def _second_hosts_port(lab, extra):
    """Restarts tunnat with `extra`; the external port the second of two inside hosts
    using UDP port 5000 gets."""
    lab.stop()
    lab.start(extra)
    srv = lab.listen("wan", REMOTE, 5354, socket.SOCK_DGRAM)
    srv.settimeout(3)
    ports = []
    for host in (CLIENT, SERVER_IN):
        s = lab.sock("lan", socket.SOCK_DGRAM)
        s.bind((host, 5000))
        s.sendto(b"x", (REMOTE, 5354))
        ports.append(srv.recvfrom(100)[1][1])
        s.close()
    srv.close()
    eq(ports[0], 5000, "the first host keeps its port")
    return ports[1]


def test_fallback_port_is_random_per_start_unless_seeded(lab):
    # RFC 6056: the port chosen when the inside one is taken must not be predictable.
    free = [_second_hosts_port(lab, []) for _ in range(3)]
    check(len(set(free)) > 1, f"the same fallback port at every start: {free}")
    seeded = [_second_hosts_port(lab, ["--seed", "7"]) for _ in range(2)]
    eq(seeded[0], seeded[1], "--seed makes the choice reproducible")
