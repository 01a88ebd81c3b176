"""NAT64 (RFC 6146): an inside network with only IPv6 reaches the IPv4 outside through
tunnat's prefix, with real clients (ping, curl through unbound's DNS64, traceroute6,
tracepath6, iperf3) and an outside IPv4 client reaching an inside IPv6 server through a
static forward.

The lab's outside hosts have private addresses, so it uses the local-use prefix
64:ff9b:1::/96 (RFC 8215); the well-known prefix 64:ff9b::/96 must refuse them (RFC 6052
section 3.1).
"""

import ipaddress
import json
import os
import re
import socket
import subprocess
import time

from harness import (CLIENT6, CONTROL, REMOTE, REMOTE2, ROUTER_IN6, ROUTER_OUT, SERVER_IN6,
                     check, eq, recv_all, refused, serve_tcp, tunnat_args, wait_for)

PREFIX = "64:ff9b:1::"


def nat64(prefix):
    def deco(fn):
        fn.nat64 = prefix
        return fn
    return deco


def at(lab, v4):
    """The IPv6 address standing for IPv4 address `v4` through the lab's /96 prefix, as
    tools print it."""
    return str(ipaddress.IPv6Address(lab.p64 + v4))


def ping6(lab, dst, count=2, size=56, check_rc=True):
    return lab.sh("lan", ["ping", "-6", "-n", "-I", CLIENT6, "-c", str(count), "-i", "0.2", "-W", "2",
                          "-s", str(size), dst],
                  check_rc=check_rc)


@nat64(PREFIX + "/96")
def test_ping_through_the_prefix_large_and_small(lab):
    out = ping6(lab, at(lab, REMOTE)).stdout
    check("2 received" in out, f"ping -6 {at(lab, REMOTE)}: {out}")
    # A ping too large for one packet goes in fragments, and comes back in fragments.
    out = ping6(lab, at(lab, REMOTE), count=1, size=3000).stdout
    check("1 received" in out, f"ping -s 3000: {out}")


@nat64(PREFIX + "/96")
@tunnat_args("--control", CONTROL)
def test_the_table_and_counters_show_the_ipv6_host(lab):
    out = ping6(lab, at(lab, REMOTE)).stdout
    check("2 received" in out, f"ping -6 {at(lab, REMOTE)}: {out}")
    # The ICMPv4 echo left from the outside address; the session is in the one table,
    # with the IPv6 host as its inside end.
    rows = json.loads(lab.ctl("table", "--json").stdout)
    rows = rows.get("sessions", rows) if isinstance(rows, dict) else rows
    check(any(r["proto"] == "icmp" and r["inside"].startswith(f"[{CLIENT6}]:") and r["remote"].startswith(REMOTE)
              for r in rows), f"an ICMP session from [{CLIENT6}] to {REMOTE}: {rows}")
    s = lab.stats()
    check(s["nat64"]["translated_6to4"] >= 2 and s["nat64"]["translated_4to6"] >= 2, f"NAT64 counters: {s['nat64']}")
    # The replies were translated to IPv6 in the buffers they were read into.
    check(s["nat64"]["copied_4to6"] == 0, f"forwarded replies translated in place: {s['nat64']}")
    # The router's own outside address answers through the prefix too; that answer is
    # the router's own packet, translated into a new one.
    out = ping6(lab, at(lab, ROUTER_OUT), count=1).stdout
    check("1 received" in out, f"ping the router's outside address through the prefix: {out}")
    s = lab.stats()
    check(s["nat64"]["copied_4to6"] == 1, f"the router's own answer copied: {s['nat64']}")


@nat64("64:ff9b::/96")
def test_the_well_known_prefix_refuses_private_ipv4_destinations(lab):
    out = ping6(lab, at(lab, REMOTE), count=1, check_rc=False).stdout
    check("Destination unreachable" in out or "Unreachable" in out,
          f"ping -6 64:ff9b::{REMOTE} must get ICMPv6 unreachable: {out}")
    check(ROUTER_IN6 in out, f"the unreachable comes from the router's inside address: {out}")


@nat64(PREFIX + "/96")
def test_tcp_and_udp_through_the_prefix_see_the_outside_address(lab):
    srv = lab.listen("wan", REMOTE, 8080)
    seen = []

    def handle(c, peer):
        seen.append(peer)
        c.sendall(b"hello " + c.recv(100))
    serve_tcp(srv, handle)
    c = lab.connect("lan", at(lab, REMOTE), 8080)
    c.sendall(b"from v6")
    eq(recv_all(c), b"hello from v6", "the reply through NAT64")
    eq(seen[0][0], ROUTER_OUT, "the IPv4 server sees the outside address")
    # UDP, and a closed UDP port refused with ICMPv6 port unreachable.
    u = lab.listen("wan", REMOTE, 5353, kind=socket.SOCK_DGRAM)
    with lab.ns("lan"):
        cu = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        cu.settimeout(3)
        cu.connect((at(lab, REMOTE), 5353))
    cu.send(b"q")
    data, peer = u.recvfrom(100)
    eq(peer[0], ROUTER_OUT, "the UDP source")
    u.sendto(b"a", peer)
    eq(cu.recv(100), b"a", "the UDP answer")
    with lab.ns("lan"):
        closed = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        closed.settimeout(3)
        closed.connect((at(lab, REMOTE), 9))
    closed.send(b"anyone?")
    refused(lambda: closed.recv(100), "a closed UDP port must be refused (ICMPv4 3/3 as ICMPv6 1/4)")


@nat64(PREFIX + "/96")
@tunnat_args("--dnat", "tcp:8888=[%s]:9999" % SERVER_IN6)
def test_an_outside_ipv4_client_reaches_the_inside_ipv6_server(lab):
    srv = lab.listen("lan", SERVER_IN6, 9999)
    seen = []

    def handle(c, peer):
        seen.append(peer)
        c.sendall(b"v6 server: " + c.recv(100))
    serve_tcp(srv, handle)
    # (The kernel's lab resolves the server's neighbour entry first: allow it 2 s.)
    c = lab.connect("wan", ROUTER_OUT, 8888, timeout=6)
    c.sendall(b"hi")
    eq(recv_all(c), b"v6 server: hi", "the answer through the static forward")
    eq(seen[0][0], at(lab, REMOTE), "the IPv6 server sees the IPv4 client at prefix + its address")


def _unbound(lab):
    """unbound in the inside namespace on [::1]:53, DNS64 over a zone of A records only;
    the namespace's resolv.conf points at it (ip netns exec mounts /etc/netns/NAME)."""
    d = f"/tmp/{lab.prefix}-unbound"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/test.zone", "w") as f:
        f.write("$ORIGIN test.\n$TTL 60\n@ IN SOA ns.test. admin.test. 1 3600 600 86400 60\n"
                f"@ IN NS ns.test.\nns IN A {REMOTE}\nweb IN A {REMOTE}\nweb2 IN A {REMOTE2}\n")
    with open(f"{d}/unbound.conf", "w") as f:
        f.write(f"""server:
    interface: ::1
    port: 53
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    do-ip4: no
    access-control: ::1/128 allow
    module-config: "dns64 iterator"
    dns64-prefix: {lab.p64}/96
    local-zone: "test." nodefault
    domain-insecure: "test."
auth-zone:
    name: "test."
    zonefile: "{d}/test.zone"
    for-upstream: yes
    for-downstream: no
    fallback-enabled: no
""")
    os.makedirs(f"/etc/netns/{lab.lan}", exist_ok=True)
    with open(f"/etc/netns/{lab.lan}/resolv.conf", "w") as f:
        f.write("nameserver ::1\n")
    lab.spawn("lan", ["unbound", "-d", "-c", f"{d}/unbound.conf"])
    return d


@nat64(PREFIX + "/96")
def test_curl_by_name_through_unbounds_dns64(lab):
    web = lab.spawn("wan", ["python3", "-m", "http.server", "--bind", REMOTE, "8080", "--directory", "/etc"])
    d = _unbound(lab)
    try:
        def up():
            p = lab.sh("lan", ["python3", "-c",
                               "import socket; print(socket.getaddrinfo('web.test', 80, socket.AF_INET6)[0][4][0])"],
                       check_rc=False)
            return p.returncode == 0 and p.stdout.strip() == at(lab, REMOTE)
        wait_for(up, 10, "unbound to answer web.test's AAAA with a DNS64 address")
        wait_for(lambda: lab.sh("wan", ["python3", "-c", f"import socket; socket.create_connection(('{REMOTE}', 8080), 1)"],
                                check_rc=False).returncode == 0, 5, "the web server")
        out = lab.sh("lan", ["curl", "-sS", "--max-time", "5", "http://web.test:8080/hostname"], check_rc=False)
        want = open("/etc/hostname").read()
        eq((out.returncode, out.stdout), (0, want), "curl http://web.test:8080/hostname by name over NAT64")
    finally:
        web.kill()
        subprocess.run(["rm", "-rf", d, f"/etc/netns/{lab.lan}"])


@nat64(PREFIX + "/96")
def test_traceroute6_through_nat64_shows_the_ipv4_hops(lab):
    lab.far_network()
    out = lab.sh("lan", ["traceroute", "-6", "-n", "-q", "1", "-w", "2", "-m", "5", at(lab, "10.9.9.1")],
                 timeout=40).stdout
    hops = [l.split()[1] for l in out.splitlines()[1:] if len(l.split()) > 1]
    # Hop 1: tunnat itself (hop limit 1, ICMPv6 time exceeded from its inside address);
    # hop 2: the outside IPv4 router (its ICMPv4 time exceeded, translated);
    # hop 3: the far host (ICMPv4 port unreachable, translated).
    eq(hops[:3], [ROUTER_IN6, at(lab, REMOTE), at(lab, "10.9.9.1")], f"traceroute6 hops:\n{out}")


@nat64(PREFIX + "/96")
@tunnat_args("--outside-mtu", "1400")
def test_tracepath6_finds_the_narrower_ipv4_mtu_plus_20(lab):
    srv = lab.listen("wan", REMOTE, 33434, kind=socket.SOCK_DGRAM)  # noqa: F841 - keeps the port open
    out = lab.sh("lan", ["tracepath", "-6", "-n", "-m", "4", at(lab, REMOTE)], timeout=30, check_rc=False).stdout
    m = re.findall(r"pmtu (\d+)", out)
    check("1420" in m, f"tracepath6 must learn pmtu 1420 (IPv4 MTU 1400 + 20, RFC 7915 4.2):\n{out}")


@nat64(PREFIX + "/96")
def test_iperf3_tcp_and_udp_over_nat64(lab):
    srv = lab.spawn("wan", ["iperf3", "-s", "-B", REMOTE, "-1"])
    time.sleep(0.5)
    out = lab.sh("lan", ["iperf3", "-6", "-c", at(lab, REMOTE), "-t", "2", "-J"], timeout=30).stdout
    r = json.loads(out)
    bps = r["end"]["sum_received"]["bits_per_second"]
    check(bps > 100e6, f"iperf3 -6 TCP over NAT64: {bps / 1e6:.0f} Mbit/s")
    srv.wait(10)
    srv = lab.spawn("wan", ["iperf3", "-s", "-B", REMOTE, "-1"])
    time.sleep(0.5)
    out = lab.sh("lan", ["iperf3", "-6", "-c", at(lab, REMOTE), "-t", "2", "-R", "-J"], timeout=30).stdout
    bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    check(bps > 100e6, f"iperf3 -6 -R (IPv4 to IPv6) over NAT64: {bps / 1e6:.0f} Mbit/s")
    srv.wait(10)
    srv = lab.spawn("wan", ["iperf3", "-s", "-B", REMOTE, "-1"])
    time.sleep(0.5)
    out = lab.sh("lan", ["iperf3", "-6", "-u", "-b", "50M", "-c", at(lab, REMOTE), "-t", "2", "-J"], timeout=30).stdout
    s = json.loads(out)["end"]["sum"]
    check(s["lost_percent"] < 5 and s["packets"] > 1000, f"iperf3 -6 -u over NAT64: {s}")


@nat64(PREFIX + "/96")
@tunnat_args("--control", CONTROL, "--dnat", "udp:8888=[%s]:7777" % SERVER_IN6)
def test_hostile_packets_through_the_prefix_are_counted_and_dropped(lab):
    from test_ipv6 import corpus6, icmp6, ip6, tcp6, udp6
    from test_hostile import icmp, ipv4, udp
    rounds = 10
    dst = at(lab, REMOTE)
    # The IPv6 corpus, aimed through the prefix. Where NAT64 counts it: a header too short
    # to name a destination is "not routed" (it cannot be NAT64's); a link-local source is
    # not of the inside network; TCP flags are the IPv4 core's check.
    # The corpus's bad fragment starts with a zero UDP checksum, which is looked at first.
    reasons = {"truncated": "not-routed", "link-local": "spoofed-source", "bad-fragment": "udp-zero-checksum"}
    inside = [(n, p, reasons.get(r, r)) for n, p, r in corpus6(CLIENT6, dst, 9)]
    for v4 in ("0.1.2.3", "127.0.0.1", "224.0.0.1", "255.255.255.255"):
        d = at(lab, v4)
        inside.append((f"to {d}", ip6(CLIENT6, d, 17, udp6(CLIENT6, d, 1, 9, b"")), "nat64-refused-destination"))
    inside += [
        ("hop limit 1", ip6(CLIENT6, dst, 17, udp6(CLIENT6, dst, 1, 9, b""), hop=1), "ttl-exceeded"),
        ("segment routing header with a segment left", ip6(CLIENT6, dst, 43, bytes([17, 2, 4, 1, 0, 0, 0, 0])
                                                           + bytes(16) + udp6(CLIENT6, dst, 1, 9, b"")),
         "bad-extension-header"),
        ("neighbour solicitation through the prefix", ip6(CLIENT6, dst, 58, icmp6(CLIENT6, dst, 135, bytes(20))),
         "nat64-untranslatable"),
        ("ICMPv6 error quoting garbage", ip6(CLIENT6, dst, 58, icmp6(CLIENT6, dst, 1, bytes(4) + b"\x60garbage")),
         "bad-quoted-packet"),
        ("GRE", ip6(CLIENT6, dst, 47, bytes(8)), "unsupported-protocol"),
        ("spoofed source", ip6("fd00:999::1", dst, 17, udp6("fd00:999::1", dst, 1, 9, b"")), "spoofed-source"),
        ("IPv4 on the IPv6-only inside", ipv4("192.168.122.101", REMOTE, 17, udp("192.168.122.101", REMOTE, 1, 9, b"")),
         "not-ipv6"),
    ]
    outside = [
        # A stand-in address (0.0.0.0/8) from outside is a martian, never an inside host.
        ("a stand-in as source", ipv4("0.0.0.1", ROUTER_OUT, 17, udp("0.0.0.1", ROUTER_OUT, 1, 8888, b"")),
         "martian-source"),
        ("to a stand-in", ipv4(REMOTE, "0.0.0.1", 17, udp(REMOTE, "0.0.0.1", 1, 9, b"")), "not-routed"),
        ("ICMP error for no session", ipv4(REMOTE, ROUTER_OUT, 1, icmp(3, 3, 0, ipv4(
            ROUTER_OUT, REMOTE, 17, udp(ROUTER_OUT, REMOTE, 45678, 53, b""))[:28])), "icmp-error-no-session"),
    ]

    def drops():
        s = lab.stats()
        d = dict(s["nat"]["drops"])
        for r, n in s["nat64"]["drops"].items():
            d[r] = d.get(r, 0) + n
        return d

    u = lab.listen("wan", REMOTE, 7000, kind=socket.SOCK_DGRAM)
    with lab.ns("lan"):
        c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        c.settimeout(2)
    drops0 = drops()
    senders = []
    for side, dev, items in (("lan", "nat-in", inside), ("wan", "nat-out", outside)):
        lab.sh(side, ["ip", "link", "set", dev, "txqueuelen", "10000"])
        with lab.ns(side):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
        senders.append((s, dev, items))
    for _ in range(rounds):
        for s, dev, items in senders:
            for _, pkt, _ in items:
                s.sendto(pkt, (dev, 0x86DD if pkt[0] >> 4 == 6 else 0x0800))
        c.sendto(b"during", (dst, 7000))
        data, peer = u.recvfrom(100)
        eq((data, peer[0]), (b"during", ROUTER_OUT), "UDP through NAT64 during the corpus")
    time.sleep(0.3)
    got = drops()
    want = {}
    for items in (inside, outside):
        for _, _, reason in items:
            want[reason] = want.get(reason, 0) + rounds
    for reason, n in sorted(want.items()):
        delta = got.get(reason, 0) - drops0.get(reason, 0)
        if reason in ("not-routed", "spoofed-source"):  # the lan kernel's own IPv6 (ND, MLD) adds some
            check(delta >= n, f"{reason}: {delta} counted, {n} sent")
        else:
            eq(delta, n, f"drops counted as {reason} (all: {dict((r, got[r] - drops0.get(r, 0)) for r in got)})")
    check(lab.proc.poll() is None, "tunnat still running")
