"""The router's own addresses: ping, refusals like a kernel's, TTL and MTU errors."""

import socket
import struct
import time

from harness import (CLIENT, REMOTE, ROUTER_IN, ROUTER_OUT, check, csum, eq, recv_all, refused, serve_tcp, silent, sniff,
                     tunnat_args, wait_for)


def test_ping_router_addresses_from_both_sides(lab):
    for side, addr in (("lan", ROUTER_IN), ("lan", ROUTER_OUT), ("wan", ROUTER_OUT), ("wan", ROUTER_IN)):
        if side == "wan" and addr == ROUTER_IN:
            lab.sh("wan", ["ip", "route", "add", ROUTER_IN + "/32", "dev", "nat-out"])
        out = lab.sh(side, ["ping", "-c", "2", "-i", "0.2", "-W", "1", addr]).stdout
        check(" 0% packet loss" in out, f"{side} -> {addr}: {out}")


def test_closed_tcp_port_answers_rst(lab):
    for side, addr in (("wan", ROUTER_OUT), ("lan", ROUTER_IN)):
        refused(lambda: lab.connect(side, addr, 80, timeout=2), f"{side}: port 80 on {addr} accepted")


def test_closed_udp_port_answers_port_unreachable(lab):
    for side, addr in (("wan", ROUTER_OUT), ("lan", ROUTER_IN)):
        s = lab.sock(side, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((addr, 33333))
        s.send(b"?")
        refused(lambda: s.recv(10), "answer on a closed UDP port")


def test_nmap_like_probe_of_the_outside_address(lab):
    """Only 843 is open on the router; every other probed port is refused at once."""
    open_ports = []
    for port in (22, 80, 443, 843, 8080):
        try:
            lab.connect("wan", ROUTER_OUT, port, timeout=2).close()
            open_ports.append(port)
        except ConnectionRefusedError:
            pass
    eq(open_ports, [843], "open ports")


def test_ttl_expiry_answered_by_the_router(lab):
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR
    s.settimeout(2)
    s.connect((REMOTE, 33434))
    s.send(b"probe")
    msg, anc, _, _ = s.recvmsg(100, 1024, socket.MSG_ERRQUEUE)
    ee = anc[0][2]
    # struct sock_extended_err: errno u32, origin, type, code, pad, info u32, data u32;
    # then the offender's sockaddr_in.
    _errno, origin, icmp_type, icmp_code = struct.unpack_from("=IBBB", ee)
    eq(origin, 2, "error origin is ICMP")
    eq((icmp_type, icmp_code), (11, 0), "ICMP time exceeded")
    offender = socket.inet_ntoa(ee[16 + 4:16 + 8])
    eq(offender, ROUTER_IN, "sent by the router's inside address")


@tunnat_args("--mtu", "1280")
def test_df_packet_too_big_gets_fragmentation_needed(lab):
    out = lab.sh("lan", ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1300", REMOTE], check_rc=False).stdout
    check("mtu = 1280" in out or "mtu=1280" in out, f"ping reports the next-hop MTU:\n{out}")
    # After learning the path MTU the host sends smaller packets, which get through.
    ok = lab.sh("lan", ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1200", REMOTE]).stdout
    check(" 0% packet loss" in ok, ok)


def test_spoofed_inside_source_is_dropped(lab):
    raw = lab.sock("lan", socket.SOCK_RAW, socket.IPPROTO_RAW)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0,
                      socket.inet_aton("10.9.9.9"), socket.inet_aton(REMOTE))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    raw.sendto(hdr + struct.pack("!HHHH", 1, 9, 8, 0), (REMOTE, 0))
    srv = lab.listen("wan", REMOTE, 9, socket.SOCK_DGRAM)
    srv.settimeout(1)
    silent(lambda: srv.recvfrom(10), "spoofed packet forwarded")
    check("dropped (spoofed-source)" in lab.stderr(), "counted as spoofed")


def test_client_address_unaffected(lab):
    """tunnat leaves the hosts' addresses and routes alone."""
    out = lab.sh("lan", ["ip", "-4", "addr", "show", "nat-in"]).stdout
    check(CLIENT in out and ROUTER_IN not in out, out)


def outside_mtu(n):
    def deco(fn):
        fn.outside_mtu = n
        return fn
    return deco


@outside_mtu(1280)
@tunnat_args("--outside-mtu", "1280")
def test_path_mtu_discovery_through_a_smaller_outside_mtu(lab):
    """The inside MTU is 1500, the outside 1280: the inside host learns 1280 from the
    router's "fragmentation needed" and a bulk TCP upload gets through."""
    out = lab.sh("lan", ["tracepath", "-n", "-m", "4", REMOTE], check_rc=False).stdout
    check("pmtu 1280" in out, f"tracepath learns the path MTU:\n{out}")
    srv = lab.listen("wan", REMOTE, 9300)
    got = []
    serve_tcp(srv, lambda c, p: got.append(len(recv_all(c))))
    c = lab.connect("lan", REMOTE, 9300, timeout=10)
    c.sendall(b"z" * 300000)
    c.close()
    wait_for(lambda: got == [300000], 10, "the upload to arrive whole")
    check("answered with ICMP (too-big)" in lab.stderr(), "the router sent fragmentation-needed")


@tunnat_args("--clamp-mss", "1000")
def test_mss_clamping(lab):
    sn = lab.sniffer("wan")
    srv = lab.listen("wan", REMOTE, 9400)
    serve_tcp(srv, lambda c, p: c.sendall(b"q" * 50000))
    c = lab.connect("lan", REMOTE, 9400)
    eq(len(recv_all(c)), 50000, "transfer through the clamped connection")
    syn = sniff(sn, lambda ip: ip["proto"] == 6 and ip["src"] == ROUTER_OUT and ip["l4"][13] & 0x02)
    opts = syn["l4"][20:(syn["l4"][12] >> 4) * 4]
    i = opts.index(b"\x02\x04")
    eq(struct.unpack("!H", opts[i + 2:i + 4])[0], 1000, "MSS option on the wire")


def _context_switches(pid):
    fields = dict(l.split(":\t") for l in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in l)
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def test_an_idle_router_sleeps_and_still_expires_on_time(lab):
    # A session that will expire 3 s after its last packet, then nothing: tunnat must not
    # wake up on a tick while it waits (the core says when the next deadline is), and
    # must still expire the session at that deadline.
    lab.stop()
    # Idle means no traffic: the namespaces' kernels would otherwise send IPv6 router
    # solicitations and MLD reports on the TUNs (every few seconds after link up), and
    # tunnat rightly wakes to read them.
    for side, dev in (("lan", "nat-in"), ("wan", "nat-out")):
        lab.sh(side, ["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"])
    lab.start(["--udp-timeout", "3"])
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 47100))
    s.sendto(b"x", (REMOTE, 9))
    wait_for(lambda: "expired udp 192.168.122.101:47100" in lab.stderr(), 5, "the session to expire")
    time.sleep(1)  # the released port's hold is the only deadline left, 120 s away
    before = _context_switches(lab.proc.pid)
    time.sleep(3)
    woke = _context_switches(lab.proc.pid) - before
    check(woke <= 1, f"tunnat woke {woke} times in 3 idle seconds")
