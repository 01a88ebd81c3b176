"""Dual stack: NAT66 out through the outside IPv6 address, IPv6 port forwards, the router's
own IPv6 addresses (ping, RST, port unreachable, the policy on 843), hop limit and
"packet too big", and link-local traffic kept on its link. Each lab here has both
families (Lab(dual=True)): inside fd00:122::/64, outside 2001:db8:1::/64."""

import json
import socket
import struct
import time

from harness import (CLIENT6, CONTROL, REMOTE, REMOTE6, REMOTE26, ROUTER_IN6, ROUTER_OUT, ROUTER_OUT6, SERVER_IN6,
                     check, echo, eq, recv_all, refused, run, serve_tcp, tunnat_args)

DNAT6 = "tcp:8888=[fd00:122::73]:9999"


def dual(fn):
    fn.dual = True
    return fn


@dual
def test_nat66_tcp_udp_and_ping_leave_by_the_outside_ipv6_address(lab):
    srv = lab.listen6("wan", REMOTE6, 80)
    serve_tcp(srv, lambda c, peer: c.sendall(f"you are {peer[0]} port {peer[1]}".encode()))
    with lab.ns("lan"):
        c = socket.socket(socket.AF_INET6)
        c.bind(("::", 41000))
        c.settimeout(3)
        c.connect((REMOTE6, 80))
    eq(recv_all(c).decode(), f"you are {ROUTER_OUT6} port 41000", "the web server sees the router, port kept")
    # UDP, and the reply through the same mapping.
    u = lab.listen6("wan", REMOTE6, 5353, kind=socket.SOCK_DGRAM)
    with lab.ns("lan"):
        q = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        q.settimeout(3)
        q.sendto(b"query", (REMOTE6, 5353))
    data, peer = u.recvfrom(100)
    eq((data, peer[0]), (b"query", ROUTER_OUT6), "UDP seen from the router's address")
    u.sendto(b"answer", peer)
    eq(q.recvfrom(100)[0], b"answer", "the reply came back")
    out = lab.sh("lan", ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", REMOTE6]).stdout
    check(" 0% packet loss" in out, out)


@dual
@tunnat_args("--control", CONTROL)
def test_ipv6_sessions_in_the_table_and_counters(lab):
    srv = lab.listen6("wan", REMOTE6, 80)
    serve_tcp(srv, lambda c, peer: c.sendall(b"hi"))
    with lab.ns("lan"):
        c = socket.socket(socket.AF_INET6)
        c.bind(("::", 41000))
        c.settimeout(3)
        c.connect((REMOTE6, 80))
    eq(recv_all(c), b"hi", "through the router")
    rows = [r for r in json.loads(lab.ctl("table", "--json").stdout)["sessions"] if r["remote"].startswith("[")]
    check(any(r["outside"] == f"[{ROUTER_OUT6}]:41000" and r["proto"] == "tcp" for r in rows), f"table rows: {rows}")
    check(f"[{ROUTER_OUT6}]:41000" in lab.ctl("table").stdout, "the readable table")
    stats = lab.stats()
    check(stats["nat6"]["forwarded_out"] >= 3 and stats["nat6"]["sessions"] >= 1, stats["nat6"])
    eq(stats["nat"]["forwarded_out"], 0, "nothing went through the IPv4 core")


@dual
@tunnat_args("--dnat", DNAT6)
def test_an_ipv6_port_forward_reaches_the_inside_server(lab):
    srv = lab.listen6("lan", SERVER_IN6, 9999)
    serve_tcp(srv, lambda c, peer: c.sendall(f"in {peer[0]}".encode()))
    with lab.ns("wan"):
        c = socket.socket(socket.AF_INET6)
        c.bind((REMOTE26, 0))
        c.settimeout(3)
        c.connect((ROUTER_OUT6, 8888))
    eq(recv_all(c).decode(), f"in {REMOTE26}", "the server sees the real client")
    # The IPv4 side is untouched: 8888 over IPv4 has no rule here.
    refused(lambda: lab.connect("wan", ROUTER_OUT, 8888, timeout=2), "IPv4 8888 open without an IPv4 rule")


@dual
@tunnat_args("--dnat", DNAT6, "--syn-cookies", "always", "--control", CONTROL)
def test_an_ipv6_port_forward_behind_syn_cookies_carries_data_both_ways(lab):
    """The SYN proxy is the same code for both families: over IPv6 the router answers the
    SYN to 8888 with a cookie, opens to the inside server on the client's ACK, and moves
    the sequence numbers for the rest of the connection. 1 MB echoed arrives whole."""
    srv = lab.listen6("lan", SERVER_IN6, 9999)

    serve_tcp(srv, lambda c, peer: (c.sendall(f"in {peer[0]}\n".encode()), echo(c)))
    c = lab.connect("wan", ROUTER_OUT6, 8888, timeout=10, bind=(REMOTE26, 0))
    data = bytes(i * 13 % 251 for i in range(1_000_000))
    import threading
    t = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
    t.start()  # sent while the echo is read, so neither end waits on the other
    got = recv_all(c, 2_000_000)
    t.join(10)
    hello = f"in {REMOTE26}\n".encode()
    eq(got[:len(hello)], hello, "the server sees the real client")
    check(got[len(hello):] == data, f"1 MB echoed whole ({len(got) - len(hello)} bytes back)")
    st = lab.stats()["nat6"]
    eq((st["syn_cookies_sent"], st["syn_cookies_valid"]), (1, 1), "one cookie sent and back, in the IPv6 core")


@dual
@tunnat_args("--dnat", DNAT6, "--control", CONTROL)
def test_ipv6_port_forwards_at_run_time(lab):
    srv = lab.listen6("lan", SERVER_IN6, 9999)
    serve_tcp(srv, lambda c, peer: c.sendall(f"in {peer[0]}".encode()))
    lab.ctl("dnat", "add", "tcp:2222=[fd00:122::73]:9999")
    eq(recv_all(lab.connect6("wan", ROUTER_OUT6, 2222)).decode()[:3], "in ", "runtime IPv6 rule")
    listed = lab.ctl("dnat", "list").stdout
    check(DNAT6 in listed and "tcp:2222=[fd00:122::73]:9999  (added at run time)" in listed, listed)
    bad = lab.ctl("dnat", "add", "tcp:3333=[fd00:999::1]", check_rc=False)
    check(bad.returncode != 0 and "not a host of the inside network" in bad.stderr, bad.stderr)


@dual
def test_the_router_answers_on_its_ipv6_addresses_like_a_kernel(lab):
    for side, addr in (("lan", ROUTER_IN6), ("wan", ROUTER_OUT6), ("lan", ROUTER_OUT6)):
        out = lab.sh(side, ["ping", "-6", "-c", "1", "-W", "2", addr]).stdout
        check(" 0% packet loss" in out, f"{side} -> {addr}: {out}")
    refused(lambda: lab.connect6("wan", ROUTER_OUT6, 80, timeout=2), "closed TCP port on IPv6")
    with lab.ns("wan"):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((ROUTER_OUT6, 33333))
        s.send(b"?")
    refused(lambda: s.recv(10), "answer on a closed UDP port")


@dual
def test_the_policy_server_answers_over_ipv6(lab):
    for side, addr in (("wan", ROUTER_OUT6), ("lan", ROUTER_IN6)):
        c = lab.connect6(side, addr, 843)
        c.sendall(b"<policy-file-request/>\0")
        reply = recv_all(c)
        check(reply.endswith(b"</cross-domain-policy>\n\0"), f"policy over IPv6 from {side}: {reply[-40:]!r}")


@dual
def test_traceroute6_shows_the_router_and_reaches_the_host(lab):
    out = lab.sh("lan", ["traceroute", "-6", "-n", "-q", "1", "-w", "2", REMOTE6], timeout=40).stdout
    lines = out.splitlines()[1:]
    check(lines and lines[0].split()[1] == ROUTER_IN6, f"hop 1 is the router: {out}")
    check(any(REMOTE6 in line for line in lines[1:]), f"the destination answered (its port unreachable translated back): {out}")


@dual
@tunnat_args("--outside-mtu", "1280", "--control", CONTROL)
def test_too_big_for_the_outside_is_answered_never_fragmented(lab):
    out = lab.sh("lan", ["ping", "-6", "-c", "1", "-W", "2", "-s", "1400", "-M", "do", REMOTE6], check_rc=False)
    text = out.stdout + out.stderr
    check("mtu=1280" in text or "Packet too big" in text or "too long" in text, text)
    eq(lab.stats()["nat6"]["drops"].get("too-big"), 1, "counted")
    # tracepath finds the path MTU through the router.
    tp = lab.sh("lan", ["tracepath", "-6", "-n", REMOTE6], check_rc=False, timeout=30).stdout
    check("pmtu 1280" in tp, tp)


@dual
@tunnat_args("--control", CONTROL)
def test_link_local_and_multicast_traffic_stays_on_its_link(lab):
    """Echo requests to the lan's all-nodes group and to a link-local address never reach
    the wan: a packet socket there sees every packet tunnat writes to nat-out."""
    with lab.ns("wan"):
        wan = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
        wan.bind(("nat-out", 0))
        wan.settimeout(0.3)
    lab.sh("lan", ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", "ff02::1%nat-in"], check_rc=False)
    lab.sh("lan", ["ping", "-6", "-c", "1", "-W", "1", "fe80::1%nat-in"], check_rc=False)
    time.sleep(0.3)
    echoes = []
    try:
        while True:
            p = wan.recv(2000)
            if len(p) > 40 and p[6] == 58 and p[40] == 128:  # ICMPv6 echo request
                echoes.append(socket.inet_ntop(socket.AF_INET6, p[24:40]))
    except socket.timeout:
        pass
    eq(echoes, [], "echo requests that crossed to the wan")
    drops = lab.stats()["nat6"]["drops"]
    check(drops.get("link-local", 0) >= 3, drops)


def iperf6(lab, secs=2):
    """Bytes an iperf3 TCP stream over IPv6 delivered from the lan to the wan in `secs`."""
    lab.spawn("wan", ["iperf3", "-s", "-1", "-B", REMOTE6])
    time.sleep(0.4)
    out = lab.sh("lan", ["iperf3", "-6", "-c", REMOTE6, "-t", str(secs), "-J"], check_rc=False, timeout=secs + 20)
    try:
        return json.loads(out.stdout)["end"]["sum_received"]["bytes"]
    except (ValueError, KeyError):
        return 0


@dual
@tunnat_args("--control", CONTROL)
def test_bulk_tcp_over_ipv6_with_offloads_goes_through_whole(lab):
    """TSO6 super-packets are translated and written whole, as IPv4's are: a bulk stream
    moves hundreds of megabytes, none of it dropped as bad-offload."""
    got = iperf6(lab)
    check(got > 50_000_000, f"only {got} bytes in 2 s")
    stats = lab.stats()["nat6"]
    eq(stats["drops"].get("bad-offload", 0), 0, "bad-offload drops")
    check(stats["gso_forwarded"] > 0, f"super-packets forwarded whole: {stats}")


@dual
@tunnat_args("--no-offload", "--control", CONTROL)
def test_bulk_tcp_over_ipv6_without_offloads(lab):
    got = iperf6(lab)
    check(got > 20_000_000, f"only {got} bytes in 2 s")


# -- hostile IPv6 -------------------------------------------------------------------------
def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip6(src, dst, nxt, payload, plen=None, hop=64):
    plen = len(payload) if plen is None else plen
    return (struct.pack("!IHBB", 0x60000000, plen, nxt, hop) + socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst) + payload)


def l4_6(src, dst, nxt, seg, at):
    """`seg` with its checksum (at offset `at`) over the IPv6 pseudo-header."""
    pseudo = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
              + struct.pack("!IxxxB", len(seg), nxt))
    c = _csum(pseudo + seg)
    return seg[:at] + struct.pack("!H", c) + seg[at + 2:]


def udp6(src, dst, sport, dport, data, zero=False):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return seg if zero else l4_6(src, dst, 17, seg, 6)


def tcp6(src, dst, sport, dport, flags):
    return l4_6(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 8192, 0, 0), 16)


def icmp6(src, dst, t, rest, bad=False):
    seg = l4_6(src, dst, 58, struct.pack("!BBH", t, 0, 0) + rest, 2)
    return seg[:2] + bytes([seg[2] ^ 0xFF]) + seg[3:] if bad else seg


def opts(nxt):
    return bytes([nxt, 0, 1, 4, 0, 0, 0, 0])


def corpus6(src, dst, dport):
    """(name, packet, drop reason) for IPv6 packets from `src` to `dst`."""
    good = udp6(src, dst, 40000, dport, b"corpus")
    chain = b"".join(opts(60) for _ in range(9)) + opts(17)
    return [
        ("truncated fixed header", ip6(src, dst, 17, good)[:30], "truncated"),
        ("payload length past the end", ip6(src, dst, 17, good, plen=200), "bad-total-length"),
        ("jumbogram (payload length 0)", ip6(src, dst, 0, good, plen=0), "jumbogram"),
        ("ten destination options", ip6(src, dst, 60, chain + good), "bad-extension-header"),
        ("hop-by-hop not first", ip6(src, dst, 60, opts(0) + opts(17) + good), "bad-extension-header"),
        ("routing header type 0", ip6(src, dst, 43, bytes([17, 0, 0, 0, 0, 0, 0, 0]) + good),
         "routing-header-type-0"),
        ("extension header past the end", ip6(src, dst, 60, bytes([17, 9, 0, 0])), "bad-extension-header"),
        ("UDP checksum zero", ip6(src, dst, 17, udp6(src, dst, 40001, dport, b"z", zero=True)), "udp-zero-checksum"),
        ("ICMPv6 bad checksum", ip6(src, dst, 58, icmp6(src, dst, 128, b"\x12\x34\x00\x01ping", bad=True)),
         "bad-icmp-checksum"),
        ("a fragment not a multiple of 8, more to come", ip6(src, dst, 44, bytes([17, 0, 0, 1, 0, 0, 0, 7])
                                                           + bytes(10)), "bad-fragment"),
        ("TCP NULL scan", ip6(src, dst, 6, tcp6(src, dst, 41000, dport, 0)), "bad-tcp-flags"),
        ("link-local source", ip6("fe80::9", dst, 17, udp6("fe80::9", dst, 1, dport, b"")), "link-local"),
    ]


@dual
@tunnat_args("--control", CONTROL, "--dnat", DNAT6)
def test_hostile_ipv6_is_counted_and_dropped_while_traffic_flows(lab):
    rounds = 10
    u = lab.listen6("wan", REMOTE6, 7000, kind=socket.SOCK_DGRAM)
    with lab.ns("lan"):
        c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        c.settimeout(2)
    inside = corpus6(CLIENT6, REMOTE6, 9)
    inside.append(("spoofed source", ip6("fd00:999::1", REMOTE6, 17, udp6("fd00:999::1", REMOTE6, 1, 9, b"")),
                   "spoofed-source"))
    outside = corpus6(REMOTE6, ROUTER_OUT6, 8888)
    outside.append(("an inside address from outside", ip6(SERVER_IN6, ROUTER_OUT6, 6, tcp6(
        SERVER_IN6, ROUTER_OUT6, 41000, 8888, 2)), "martian-source"))
    outside.append(("multicast source", ip6("ff02::1", ROUTER_OUT6, 17, udp6("ff02::1", ROUTER_OUT6, 1, 8888, b"")),
                    "martian-source"))
    drops0 = lab.stats()["nat6"]["drops"]
    senders = []
    for side, dev in (("lan", "nat-in"), ("wan", "nat-out")):
        lab.sh(side, ["ip", "link", "set", dev, "txqueuelen", "10000"])
        with lab.ns(side):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
        senders.append((s, dev, inside if side == "lan" else outside))
    for _ in range(rounds):
        for s, dev, items in senders:
            for _, pkt, _ in items:
                s.sendto(pkt, (dev, 0x86DD))
        c.sendto(b"during", (REMOTE6, 7000))
        data, peer = u.recvfrom(100)
        eq(data, b"during", "UDP over IPv6 during the corpus")
    time.sleep(0.3)
    got = lab.stats()["nat6"]["drops"]
    want = {}
    for items in (inside, outside):
        for _, _, reason in items:
            want[reason] = want.get(reason, 0) + rounds
    for reason, n in sorted(want.items()):
        delta = got.get(reason, 0) - drops0.get(reason, 0)
        if reason == "link-local":  # the namespaces' kernels send their own, too
            check(delta >= n, f"{reason}: {delta} counted, {n} sent")
        else:
            eq(delta, n, f"drops counted as {reason}")
    check(lab.proc.poll() is None, "tunnat still running")


@dual
def test_ipv6_connections_survive_a_restart_with_the_state_file(lab):
    from test_restart import echo_server, echoed
    path = lab.state_path
    args = ["--persist", "--state-file", path, "--dnat", DNAT6]
    lab.stop()
    lab.start(args)
    out_srv = lab.listen6("wan", REMOTE6, 7000)
    echo_server(out_srv)
    in_srv = lab.listen6("lan", SERVER_IN6, 9999)
    echo_server(in_srv)
    napt = lab.connect6("lan", REMOTE6, 7000)
    dnat = lab.connect6("wan", ROUTER_OUT6, 8888)
    eq(echoed(napt, b"one"), b"one", "NAT66 before")
    eq(echoed(dnat, b"one"), b"one", "IPv6 DNAT before")
    eq(lab.stop(), 0, "exit code")
    head = json.loads(open(path).readline())
    eq((head["sessions"], head["inside6"]), (2, ROUTER_IN6 + "/64"), "both IPv6 sessions saved")
    lab.start(args)
    check("2 session(s) restored" in lab.stderr(), lab.stderr()[-400:])
    eq(echoed(napt, b"two"), b"two", "NAT66 after the restart")
    eq(echoed(dnat, b"two"), b"two", "IPv6 DNAT after the restart")


def who_connects(lab, port=80):
    """The source address an outside server on `port` sees for a connection from the
    inside client (as the reply that came back through the router says)."""
    srv = lab.listen6("wan", REMOTE6, port)
    serve_tcp(srv, lambda c, peer: c.sendall(peer[0].encode()))
    with lab.ns("lan"):
        c = socket.socket(socket.AF_INET6)
        c.bind((CLIENT6, 0))
        c.settimeout(3)
        c.connect((REMOTE6, port))
    return recv_all(c).decode()


@dual
@tunnat_args("--ipv6", "npt", "--control", CONTROL)
def test_ipv6_prefix_translation_is_one_to_one_and_stateless(lab):
    seen = who_connects(lab)
    check(seen.startswith("2001:db8:1:") and seen != ROUTER_OUT6, f"the server saw {seen}")
    eq(seen, who_connects(lab, 81), "the same inside host, the same outside address")
    # Reachable from outside by that address, with no state or port forward (RFC 6296).
    srv = lab.listen6("lan", CLIENT6, 9000)
    serve_tcp(srv, lambda c, peer: c.sendall(b"reached"))
    eq(recv_all(lab.connect6("wan", seen, 9000)), b"reached", "inbound to the mapped address")
    eq(lab.stats()["nat6"]["sessions"], 0, "no sessions")


@dual
@tunnat_args("--ipv6", "route")
def test_ipv6_routing_mode_forwards_untranslated(lab):
    lab._ip(lab.wan, "-6", "route", "add", "fd00:122::/64", "via", ROUTER_OUT6, "dev", "nat-out")
    eq(who_connects(lab), CLIENT6, "the server sees the inside host itself")
    out = lab.sh("lan", ["traceroute", "-6", "-n", "-q", "1", "-w", "2", REMOTE6], timeout=40).stdout
    check(f" 1  {ROUTER_IN6}" in out, out)


def test_npt_prefixes_must_be_equal_and_48_to_64(lab):
    lab.stop()
    p = run(lab.args(["--inside-addr", "fd00:122::100/64", "--outside-addr", "2001:db8:1::186/56",
                      "--ipv6", "npt"]), check_rc=False, timeout=10)
    check(p.returncode != 0 and "equal length, /48 to /64" in p.stderr, p.stderr)


@dual
def test_fragmented_ipv6_crosses_in_any_order(lab):
    """Datagrams larger than the MTU are fragmented by their sender; tunnat translates each
    fragment by its first (it may not fragment, nor hand on a reassembled datagram): a
    3000-byte ping and a 4000-byte UDP datagram go out and come back."""
    out = lab.sh("lan", ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000", REMOTE6]).stdout
    check(" 0% packet loss" in out, out)
    u = lab.listen6("wan", REMOTE6, 5353, kind=socket.SOCK_DGRAM)
    with lab.ns("lan"):
        q = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        q.settimeout(3)
        q.sendto(bytes(4000), (REMOTE6, 5353))
    data, peer = u.recvfrom(5000)
    eq((len(data), peer[0]), (4000, ROUTER_OUT6), "the big datagram, from the router's address")
    u.sendto(bytes(range(256)) * 16, peer)
    eq(len(q.recvfrom(5000)[0]), 4096, "the big reply came back in")


@dual
def test_an_ipv6_only_router(lab):
    """IPv6 addresses alone: NAT66 and the router's own IPv6 answers work, and IPv4 is
    not forwarded at all (an IPv4 router address is no longer required)."""
    lab.stop()
    lab.v4 = False
    lab.start(["--control", lab.control_path])
    eq(who_connects(lab), ROUTER_OUT6, "NAT66 on an IPv6-only router")
    out = lab.sh("lan", ["ping", "-6", "-c", "1", "-W", "2", ROUTER_IN6]).stdout
    check(" 0% packet loss" in out, out)
    out = lab.sh("lan", ["ping", "-c", "1", "-W", "1", REMOTE], check_rc=False).stdout
    check(" 100% packet loss" in out, f"IPv4 crossed an IPv6-only router: {out}")
    stats = lab.stats()
    check(stats["nat6"]["drops"].get("not-ipv6", 0) >= 1, stats["nat6"]["drops"])
    eq(stats["nat"]["forwarded_out"], 0, "no IPv4 core")


@dual
def test_an_unknown_next_header_to_the_router_gets_parameter_problem(lab):
    """RFC 8200 section 4: a node that does not know a packet's next header answers
    ICMPv6 parameter problem, code 1, pointing at the field."""
    with lab.ns("lan"):
        r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        r.settimeout(2)
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 253)  # 253: for experiments (RFC 3692)
    s.sendto(b"experiment", (ROUTER_IN6, 0))
    deadline = time.time() + 2
    while time.time() < deadline:
        msg, peer = r.recvfrom(2000)
        if msg[0] == 4:
            eq((msg[1], peer[0]), (1, ROUTER_IN6), "parameter problem: unrecognized next header, from the router")
            return
    raise AssertionError("no parameter problem came back")
