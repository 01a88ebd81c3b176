"""Dual stack: NAT66 out through the outside IPv6 address, IPv6 port forwards, the router's
own IPv6 addresses (ping, RST, port unreachable, the policy on 843), hop limit and
"packet too big", and link-local traffic kept on its link. Each lab here has both
families (Lab(dual=True)): inside fd00:122::/64, outside 2001:db8:1::/64."""

import json
import socket
import time

from harness import (CONTROL, REMOTE, REMOTE6, REMOTE26, ROUTER_IN6, ROUTER_OUT, ROUTER_OUT6, SERVER_IN6,
                     check, eq, recv_all, refused, serve_tcp, tunnat_args)

DNAT6 = "tcp:8888=[fd00:122::73]:9999"


def dual(fn):
    fn.dual = True
    return fn


@dual
@tunnat_args("--control", CONTROL)
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
    rows = [r for r in json.loads(lab.ctl("table", "--json").stdout)["sessions"] if r["remote"].startswith("[")]
    check(any(r["outside"] == f"[{ROUTER_OUT6}]:41000" and r["proto"] == "tcp" for r in rows), f"table rows: {rows}")
    stats = lab.stats()
    check(stats["nat6"]["forwarded_out"] >= 4 and stats["nat6"]["sessions"] >= 3, stats["nat6"])
    eq(stats["nat"]["forwarded_out"], 0, "nothing went through the IPv4 core")


@dual
@tunnat_args("--dnat", DNAT6, "--control", CONTROL)
def test_an_ipv6_port_forward_reaches_the_inside_server(lab):
    srv = lab.listen6("lan", SERVER_IN6, 9999)
    serve_tcp(srv, lambda c, peer: c.sendall(f"in {peer[0]}".encode()))
    with lab.ns("wan"):
        c = socket.socket(socket.AF_INET6)
        c.bind((REMOTE26, 0))
        c.settimeout(3)
        c.connect((ROUTER_OUT6, 8888))
    eq(recv_all(c).decode(), f"in {REMOTE26}", "the server sees the real client")
    # Added at run time, next to an IPv4 rule; listed with the rest.
    lab.ctl("dnat", "add", "tcp:2222=[fd00:122::73]:9999")
    eq(recv_all(lab.connect6("wan", ROUTER_OUT6, 2222)).decode()[:3], "in ", "runtime IPv6 rule")
    listed = lab.ctl("dnat", "list").stdout
    check(DNAT6 in listed and "tcp:2222=[fd00:122::73]:9999  (added at run time)" in listed, listed)
    bad = lab.ctl("dnat", "add", "tcp:3333=[fd00:999::1]", check_rc=False)
    check(bad.returncode != 0 and "not a host of the inside network" in bad.stderr, bad.stderr)
    # The IPv4 side is untouched: 8888 over IPv4 has no rule here.
    refused(lambda: lab.connect("wan", ROUTER_OUT, 8888, timeout=2), "IPv4 8888 open without an IPv4 rule")


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
