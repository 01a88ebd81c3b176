"""Port control by the inside hosts: NAT-PMP (natpmpc), UPnP IGD (miniupnpc's upnpc) and
PCP (a client per RFC 6887 written here) map ports that an outside client then reaches;
mappings renew, expire and are deleted; the policy and the owner rule refuse with each
protocol's own error; nothing is answered from outside."""

import os
import re
import socket
import struct
import time

from harness import (CLIENT, CONTROL, REMOTE, ROUTER_IN, ROUTER_OUT, SERVER_IN, check, eq, recv_all,
                     refused, serve_tcp, silent, tunnat_args, wait_for)

ALL = ("--pcp", "--nat-pmp", "--upnp", "--control", CONTROL)


def natpmpc(lab, *args, side="lan", gw=ROUTER_IN):
    return lab.sh(side, ["natpmpc", "-g", gw, *args], check_rc=False, timeout=30).stdout


def upnpc(lab, *args):
    return lab.sh("lan", ["upnpc", "-i", *args], check_rc=False, timeout=30).stdout


def reaches(lab, port, want=b"mapped"):
    """An outside client connects to the router's `port` and reads what the server sends."""
    c = lab.connect("wan", ROUTER_OUT, port)
    return recv_all(c) == want


def serve(lab, addr, port, reply=b"mapped"):
    srv = lab.listen("lan", addr, port)
    serve_tcp(srv, lambda c, p: c.sendall(reply))


def mapped(lab):
    """The mappings, as rules: tunnat's `dnat list`, or miniupnpd's nft rules on the kernel lab."""
    return lab.port_maps()


def is_tunnat(lab):
    return not hasattr(lab, "rtr")


@tunnat_args(*ALL)
def test_natpmpc_maps_a_port_the_outside_reaches_then_deletes_it(lab):
    out = natpmpc(lab)
    check("Public IP address : 172.16.1.186" in out, f"natpmpc learns the outside address: {out}")
    out = natpmpc(lab, "-a", "7000", "9999", "tcp", "3600")
    check("Mapped public port 7000 protocol TCP to local port 9999 liftime 3600" in out, out)
    serve(lab, CLIENT, 9999)
    check(reaches(lab, 7000), "the outside client reaches the inside host through the mapping")
    eq(mapped(lab), ["tcp:7000=192.168.122.101:9999"], "the mapping is listed")
    if is_tunnat(lab):
        m = [l for l in lab.ctl("dnat", "list").stdout.splitlines() if " by " in l]
        check(m[0].startswith("tcp:7000=192.168.122.101:9999  (nat-pmp by 192.168.122.101, 3")
              and m[0].endswith(' s left, "NAT-PMP 7000 tcp")'),
              f"dnat list shows the rule, owner, protocol, time left and description: {m}")
        t = lab.ctl("table").stdout
        check(re.search(r"tcp +MAPPED +192\.168\.122\.101:9999 +172\.16\.1\.186:7000 +\* .* \[nat-pmp\]", t)
              and "1 port mapping(s) made by the hosts" in t, f"tunnat table shows the mapping: {t}")
    out = natpmpc(lab, "-a", "7000", "9999", "tcp", "0")
    eq(mapped(lab), [], "lifetime 0 deletes the mapping")
    refused(lambda: lab.connect("wan", ROUTER_OUT, 7000, timeout=2), "connected after the mapping was deleted")


@tunnat_args(*ALL)
def test_natpmp_mapping_expires_on_time(lab):
    out = natpmpc(lab, "-a", "7100", "9999", "udp", "2")
    check("Mapped public port 7100 protocol UDP" in out, out)
    srv = lab.listen("lan", CLIENT, 9999, socket.SOCK_DGRAM)
    srv.settimeout(2)
    c = lab.sock("wan", socket.SOCK_DGRAM)
    c.sendto(b"early", (ROUTER_OUT, 7100))
    eq(srv.recvfrom(100)[0], b"early", "datagram forwarded while the mapping lives")
    wait_for(lambda: not mapped(lab), 5, "the mapping to expire")
    if is_tunnat(lab):
        eq(lab.stats()["portmap"]["expired"], 1, "the expiry is counted")
    # A new flow finds no mapping (the one already open runs until idle, as in conntrack).
    c2 = lab.sock("wan", socket.SOCK_DGRAM)
    c2.sendto(b"late", (ROUTER_OUT, 7100))
    silent(lambda: srv.recvfrom(100), "a new flow forwarded after the mapping expired")


@tunnat_args(*ALL)
def test_upnpc_add_list_delete_and_the_outside_reaches_it(lab):
    out = upnpc(lab, "-a", CLIENT, "9998", "7001", "TCP", "600")
    check("external 172.16.1.186:7001 TCP is redirected to internal 192.168.122.101:9998" in out, out)
    serve(lab, CLIENT, 9998)
    check(reaches(lab, 7001), "the outside client reaches the mapped port")
    out = upnpc(lab, "-l")
    check("ExternalIPAddress = 172.16.1.186" in out, out)
    check("TCP  7001->192.168.122.101:9998" in out, f"upnpc -l lists the mapping: {out}")
    out = upnpc(lab, "-d", "7001", "TCP")
    check("UPNP_DeletePortMapping() returned : 0" in out, out)
    eq(mapped(lab), [], "deleted")


@tunnat_args(*ALL, "--dnat", "tcp:8888=192.168.122.73:9999",
             "--portmap-rule", "deny 7050-7059 192.168.122.0/24 0-65535",
             "--portmap-rule", "allow 1024-65535 192.168.122.0/24 1024-65535")
def test_refusals_policy_third_party_static_forward_low_port(lab):
    # Another host as the target (718, miniupnpd's secure mode), a port forward's port
    # (718), a denied range and a port below 1024 (606). (miniupnpd maps over the
    # kernel's port forward on 8888, and does not answer NAT-PMP's refused request.)
    for args, code in ((("-a", SERVER_IN, "9999", "7002", "TCP"), "718"),
                       (("-a", CLIENT, "9999", "8888", "TCP"), "718"),
                       (("-a", CLIENT, "9999", "7055", "TCP"), "606"),
                       (("-a", CLIENT, "80", "80", "TCP"), "606")):
        out = upnpc(lab, *args)
        check(f"returned {code}" in out or f"failed with code {code}" in out, f"upnpc {args}: error {code} expected: {out}")
    out = natpmpc(lab, "-a", "80", "80", "tcp", "60")
    # libnatpmp's NATPMP_ERR_NOTAUTHORIZED is -51 (NAT-PMP result 2).
    check("readnatpmpresponseorretry returned -51" in out, f"natpmpc below 1024 refused: {out}")
    eq(mapped(lab), [], "nothing was mapped")
    # The static forward still works.
    serve(lab, SERVER_IN, 9999, b"static")
    check(reaches(lab, 8888, b"static"), "the port forward is untouched")


# -- PCP, per RFC 6887 -----------------------------------------------------------------
def mapped6(a):
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(a)


def pcp_map(s, lifetime, proto, internal, suggested, nonce, opts=b""):
    req = struct.pack("!BBHI", 2, 1, 0, lifetime) + mapped6(CLIENT)
    req += nonce + struct.pack("!B3xHH", proto, internal, suggested) + b"\0" * 16 + opts
    s.sendto(req, (ROUTER_IN, 5351))
    a, _ = s.recvfrom(1100)
    eq((a[0], a[1]), (2, 0x81), "a PCP MAP answer")
    code, life, epoch = a[3], struct.unpack("!I", a[4:8])[0], struct.unpack("!I", a[8:12])[0]
    port = struct.unpack("!H", a[24 + 18:24 + 20])[0]
    return code, life, epoch, port, a


@tunnat_args(*ALL)
def test_pcp_map_renew_nonce_delete(lab):
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 0))
    s.settimeout(3)
    nonce = os.urandom(12)
    code, life, epoch, port, a = pcp_map(s, 600, 17, 9997, 7200, nonce)
    eq((code, life, port), (0, 600, 7200), "MAP granted with the suggested port")
    eq(a[24 + 20:24 + 36], mapped6(ROUTER_OUT), "the assigned external address")
    srv = lab.listen("lan", CLIENT, 9997, socket.SOCK_DGRAM)
    srv.settimeout(2)
    c = lab.sock("wan", socket.SOCK_DGRAM)
    c.sendto(b"via pcp", (ROUTER_OUT, 7200))
    data, peer = srv.recvfrom(100)
    eq((data, peer[0]), (b"via pcp", REMOTE), "the outside reaches the PCP mapping")
    # The host's own traffic from 9997 leaves by 7200 (one mapping both ways).
    srv.sendto(b"back", peer)
    eq(c.recvfrom(100), (b"back", (ROUTER_OUT, 7200)), "the answer leaves by the mapped port")
    # Renewal with the nonce; another nonce is not authorized.
    code, life, epoch2, port, _ = pcp_map(s, 1200, 17, 9997, 0, nonce)
    eq((code, life, port), (0, 1200, 7200), "renewed, same port")
    check(epoch2 >= epoch, "the epoch does not go back")
    code, *_ = pcp_map(s, 1200, 17, 9997, 0, os.urandom(12))
    eq(code, 2, "NOT_AUTHORIZED for another nonce")
    # PREFER_FAILURE on a taken port: CANNOT_PROVIDE_EXTERNAL.
    code, *_ = pcp_map(s, 600, 6, 9996, 843, os.urandom(12), opts=bytes([2, 0, 0, 0]))
    check(code in (2, 11), f"843 refused (code {code})")
    # Delete.
    code, life, _, _, _ = pcp_map(s, 0, 17, 9997, 0, nonce)
    eq((code, life), (0, 0), "deleted")
    eq(mapped(lab), [], "no mapping left")
    # PEER: the host learns the external port of its session with a remote peer before
    # sending, and the peer then sees exactly that port.
    peer_sock = lab.sock("lan", socket.SOCK_DGRAM)
    peer_sock.bind((CLIENT, 0))
    inner = peer_sock.getsockname()[1]
    req = struct.pack("!BBHI", 2, 2, 0, 600) + mapped6(CLIENT) + os.urandom(12)
    req += struct.pack("!B3xHH", 17, inner, 0) + b"\0" * 16 + struct.pack("!H2x", 3478) + mapped6(REMOTE)
    s.sendto(req, (ROUTER_IN, 5351))
    a = s.recvfrom(1100)[0]
    eq((a[1], a[3]), (0x82, 0), "a PCP PEER answer, SUCCESS")
    peer_port = struct.unpack("!H", a[24 + 18:24 + 20])[0]
    far = lab.sock("wan", socket.SOCK_DGRAM)
    far.bind((REMOTE, 3478))
    far.settimeout(2)
    peer_sock.sendto(b"hello peer", (REMOTE, 3478))
    eq(far.recvfrom(100), (b"hello peer", (ROUTER_OUT, peer_port)), "the peer sees the port PEER named")
    # A malformed request gets MALFORMED_REQUEST; a wrong client address ADDRESS_MISMATCH.
    s.sendto(struct.pack("!BBHI", 2, 1, 0, 600) + mapped6(CLIENT) + b"\0" * 8, (ROUTER_IN, 5351))
    eq(s.recvfrom(1100)[0][3], 3, "MALFORMED_REQUEST")
    s.sendto(struct.pack("!BBHI", 2, 0, 0, 0) + mapped6(SERVER_IN), (ROUTER_IN, 5351))
    eq(s.recvfrom(1100)[0][3], 12, "ADDRESS_MISMATCH")


@tunnat_args(*ALL)
def test_announcements_at_start(lab):
    """After a restart the router tells the hosts (NAT-PMP's address, PCP's ANNOUNCE) on
    224.0.0.1:5350, so they renew their mappings."""
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 5350))
    s.settimeout(3)
    lab.stop()
    lab.start(lab.extra_args)
    got = set()
    deadline = time.time() + 3
    while time.time() < deadline and len(got) < 2:
        data, peer = s.recvfrom(100)
        eq(peer, (ROUTER_IN, 5351), "from the router's inside address")
        got.add(bytes(data[:2]))
    eq(got, {b"\x00\x80", b"\x02\x80"}, "a NAT-PMP address announcement and a PCP ANNOUNCE")


@tunnat_args(*ALL)
def test_nothing_is_answered_from_outside(lab):
    c = lab.sock("wan", socket.SOCK_DGRAM)
    c.settimeout(1)
    for dst, port, payload in ((ROUTER_OUT, 5351, b"\0\0"), (ROUTER_OUT, 1900,
                               b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nST: ssdp:all\r\n\r\n'),
                               (ROUTER_OUT, 5351, struct.pack("!BBHI", 2, 0, 0, 0) + mapped6(REMOTE))):
        c.sendto(payload, (dst, port))
        try:
            data = c.recv(2000)
            check(False, f"an answer from {dst}:{port} to the outside: {data[:40]!r}")
        except (socket.timeout, ConnectionRefusedError):
            pass
    refused(lambda: lab.connect("wan", ROUTER_OUT, 5000, timeout=2), "UPnP's HTTP reached from outside")


@tunnat_args(*ALL)
def test_hostile_soap_and_http_get_errors_not_crashes(lab):
    def http(raw):
        c = lab.connect("lan", ROUTER_IN, 5000)
        c.sendall(raw)
        return recv_all(c)
    svc = "urn:schemas-upnp-org:service:WANIPConnection:2"
    for raw, want in (
        (b"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"" + svc.encode() + b"#AddPortMapping\"\r\nContent-Length: 9\r\n\r\n<<<<<<<<<", b"<errorCode>402</errorCode>"),
        (b"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"" + svc.encode() + b"#Reboot\"\r\nContent-Length: 0\r\n\r\n", b"<errorCode>401</errorCode>"),
        (b"POST /ctl/IPConn HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", b"HTTP/1.1 413"),
        (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", b"HTTP/1.1 404"),
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"HTTP/1.1 400"),
    ):
        try:
            got = http(raw)
        except (socket.timeout, ConnectionResetError) as e:
            got = repr(e).encode()
        check(want in got, f"{raw[:50]!r}: {want!r} expected, got {got[:200]!r}")
    out = upnpc(lab, "-l")
    check("ExternalIPAddress = 172.16.1.186" in out, "still serving after hostile requests")
