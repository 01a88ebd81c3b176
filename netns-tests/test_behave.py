"""BEHAVE conformance with real packets: mapping (RFC 4787 REQ-1, RFC 5382 REQ-1,
RFC 5508 REQ-1) and filtering (RFC 4787 REQ-8, RFC 5382 REQ-3)."""

import socket
import threading
import time
import struct

from harness import (CLIENT, REMOTE, REMOTE2, ROUTER_OUT, SERVER_IN, check, csum, echo, eq, recv_all, serve_tcp, silent,
                     sniff, tunnat_args, wait_for)


def test_udp_mapping_is_endpoint_independent(lab):
    """STUN-style: two outside servers report the same mapped address and port."""
    servers = [lab.listen("wan", r, 3478, socket.SOCK_DGRAM) for r in (REMOTE, REMOTE2)]
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 50000))
    seen = []
    for srv, r in zip(servers, (REMOTE, REMOTE2)):
        s.sendto(b"binding request", (r, 3478))
        seen.append(srv.recvfrom(100)[1])
    eq(seen[0], seen[1], "mapped endpoint seen by both servers")
    eq(seen[0][0], ROUTER_OUT, "mapped address")


def test_tcp_mapping_is_endpoint_independent(lab):
    peers = []
    for r in (REMOTE, REMOTE2):
        srv = lab.listen("wan", r, 3479)
        serve_tcp(srv, lambda c, p: peers.append(p))
    conns = [lab.connect("lan", r, 3479, bind=(CLIENT, 50001)) for r in (REMOTE, REMOTE2)]
    wait_for(lambda: len(peers) == 2, 3, "both connections accepted")
    eq(peers[0], peers[1], "both servers see the same mapped endpoint")
    eq(peers[0], (ROUTER_OUT, 50001), "port preserved")
    for c in conns:
        c.close()


def test_icmp_identifier_mapping_is_endpoint_independent(lab):
    s = lab.sock("lan", socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((CLIENT, 0))
    sn = lab.sniffer("wan")
    ids = []
    for r in (REMOTE, REMOTE2):
        msg = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x5151, 1) + b"eim")
        msg[2:4] = struct.pack("!H", csum(bytes(msg)))
        s.sendto(bytes(msg), (r, 0))
        ip = sniff(sn, lambda ip, r=r: ip["proto"] == 1 and ip["dst"] == r and ip["l4"][0] == 8)
        ids.append(struct.unpack("!H", ip["l4"][4:6])[0])
    eq(ids[0], ids[1], "same outside identifier to both remotes")


def filtering_case(lab):
    """Inside 50002 talks to REMOTE:4000; returns which of three senders get through:
    (same address other port, other address)."""
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 50002))
    s.settimeout(1)
    first = lab.listen("wan", REMOTE, 4000, socket.SOCK_DGRAM)
    s.sendto(b"open", (REMOTE, 4000))
    _, mapped = first.recvfrom(100)
    first.sendto(b"reply", mapped)
    eq(s.recvfrom(100)[0], b"reply", "the contacted endpoint always gets through")
    results = []
    for addr, port in ((REMOTE, 4001), (REMOTE2, 4000)):
        o = lab.listen("wan", addr, port, socket.SOCK_DGRAM)
        o.sendto(b"from %s:%d" % (addr.encode(), port), mapped)
        try:
            s.recvfrom(100)
            results.append(True)
        except socket.timeout:
            results.append(False)
    return results


@tunnat_args("--filtering", "endpoint-independent")
def test_filtering_endpoint_independent(lab):
    eq(filtering_case(lab), [True, True], "EIF: any remote may send to the mapping")


def test_filtering_address_dependent_is_the_default(lab):
    eq(filtering_case(lab), [True, False], "ADF: only addresses the host sent to")


@tunnat_args("--filtering", "address-and-port-dependent")
def test_filtering_address_and_port_dependent(lab):
    eq(filtering_case(lab), [False, False], "APDF: only the exact endpoints the host sent to")


def test_inbound_filtered_datagram_never_reaches_inside(lab):
    """Under the default filter an outside host that was never contacted gets nothing in."""
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 50003))
    s.settimeout(1)
    s.sendto(b"x", (REMOTE, 4002))
    stranger = lab.sock("wan", socket.SOCK_DGRAM)
    stranger.bind((REMOTE2, 4002))
    stranger.sendto(b"intrusion", (ROUTER_OUT, 50003))
    silent(lambda: s.recvfrom(100), "a datagram from an uncontacted address reached the inside")


@tunnat_args("--dnat", "tcp:8888=192.168.122.73:9999")
def test_hairpin_to_a_port_forward(lab):
    """RFC 4787 REQ-9 / RFC 5382 REQ-8: an inside host reaches 172.16.1.186:8888; the
    server sees the router's external address, not the client's inside one."""
    peers = []
    srv = lab.listen("lan", SERVER_IN, 9999)
    serve_tcp(srv, lambda c, p: (peers.append(p), c.sendall(b"hairpinned")))
    c = lab.connect("lan", ROUTER_OUT, 8888, bind=(CLIENT, 40100))
    eq(c.getpeername(), (ROUTER_OUT, 8888), "the client talks to the external address")
    eq(recv_all(c), b"hairpinned", "the reply comes back through the hairpin")
    eq(peers[0], (ROUTER_OUT, 40100), "the server sees the external address and port")


@tunnat_args("--filtering", "endpoint-independent")
def test_hairpin_between_two_inside_hosts_mappings(lab):
    """Two inside hosts reach each other through their external endpoints, as peer-to-peer
    applications that learned them from a STUN server do."""
    stun = lab.listen("wan", REMOTE, 3478, socket.SOCK_DGRAM)
    a = lab.sock("lan", socket.SOCK_DGRAM)
    b = lab.sock("lan", socket.SOCK_DGRAM)
    a.bind((CLIENT, 51000))
    b.bind((SERVER_IN, 51000))
    for s in (a, b):
        s.settimeout(2)
        s.sendto(b"what is my address?", (REMOTE, 3478))
    ext_a = stun.recvfrom(100)[1]
    ext_b = stun.recvfrom(100)[1]
    a.sendto(b"hello b", (ROUTER_OUT, ext_b[1]))
    data, peer = b.recvfrom(100)
    eq((data, peer), (b"hello b", (ROUTER_OUT, ext_a[1])), "b hears a from a's external endpoint")
    b.sendto(b"hello a", peer)
    eq(a.recvfrom(100), (b"hello a", (ROUTER_OUT, ext_b[1])), "a hears b from b's external endpoint")


@tunnat_args("--max-mappings-per-host", "5")
def test_per_host_mapping_limit(lab):
    """One host with many source ports gets 5 mappings; beyond, ICMP 3/13 (the sender's
    kernel reports it on the socket), while another host still gets a mapping."""
    srv = lab.listen("wan", REMOTE, 4500, socket.SOCK_DGRAM)
    srv.settimeout(1)
    errors = 0
    for port in range(52000, 52010):
        s = lab.sock("lan", socket.SOCK_DGRAM)
        s.bind((CLIENT, port))
        s.settimeout(1)
        s.connect((REMOTE, 4500))
        s.send(b"x")
        try:
            s.recv(10)
        except socket.timeout:
            pass
        except OSError as e:  # EHOSTUNREACH from the ICMP 3/13
            errors += 1
            check(e.errno in (113, 13), f"unexpected error {e}")
    got = set()
    while True:
        try:
            got.add(srv.recvfrom(10)[1][1])
        except socket.timeout:
            break
    eq(len(got), 5, "datagrams that got a mapping")
    eq(errors, 5, "senders told 'administratively prohibited'")
    other = lab.sock("lan", socket.SOCK_DGRAM)
    other.bind((SERVER_IN, 52000))
    other.sendto(b"y", (REMOTE, 4500))
    eq(srv.recvfrom(10)[0], b"y", "another host is not limited")
    wait_for(lambda: "answered with ICMP (host-limit)" in lab.stderr(), 2, "host-limit counted")


def tcp_mapping(lab, port):
    """Gives CLIENT:port a TCP mapping by connecting to REMOTE:7100; returns the socket."""
    srv = lab.listen("wan", REMOTE, 7100)
    serve_tcp(srv, lambda c, p: time.sleep(30))
    return lab.connect("lan", REMOTE, 7100, bind=(CLIENT, port))


def test_unsolicited_syn_to_a_mapping_is_held_then_refused(lab):
    """RFC 5382 REQ-4: silent for at least 6 s, then ICMP port unreachable."""
    keep = tcp_mapping(lab, 50500)
    t0 = time.time()
    try:
        lab.connect("wan", ROUTER_OUT, 50500, timeout=12, bind=(REMOTE2, 7300))
        raise AssertionError("connected through a filtered mapping")
    except ConnectionRefusedError:
        pass
    took = time.time() - t0
    check(6 <= took < 8.5, f"refused after {took:.1f} s (want 6 s, then ICMP 3/3)")
    keep.close()


def test_tcp_simultaneous_open_through_nat(lab):
    """Both ends connect() at once, as NAT traversal does: the outside SYN arriving first
    is held, the inside SYN goes out, and the connection opens."""
    keep = tcp_mapping(lab, 50501)
    result = {}

    def outside():
        try:
            s = lab.connect("wan", ROUTER_OUT, 50501, timeout=10, bind=(REMOTE2, 7200))
            s.sendall(b"from outside")
            result["outside"] = s.recv(100)
        except OSError as e:
            result["outside"] = e
    th = threading.Thread(target=outside)
    th.start()
    time.sleep(0.5)  # the outside SYN is at the router now, held
    c = lab.connect("lan", REMOTE2, 7200, timeout=10, bind=(CLIENT, 50501))
    c.sendall(b"from inside")
    eq(c.recv(100), b"from outside", "inside end receives")
    th.join(10)
    eq(result.get("outside"), b"from inside", "outside end receives")
    keep.close()


def mapped_udp_port(lab, srv, host, port):
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.sendto(b"?", (REMOTE, srv.getsockname()[1]))
    return srv.recvfrom(10)[1][1], s


def test_port_preservation_keeps_the_low_range(lab):
    """RFC 4787 REQ-3: ports 1-1023 map to 1-1023, and no port is given to two hosts."""
    srv = lab.listen("wan", REMOTE, 4600, socket.SOCK_DGRAM)
    a, _sa = mapped_udp_port(lab, srv, CLIENT, 600)
    b, _sb = mapped_udp_port(lab, srv, SERVER_IN, 600)
    eq(a, 600, "first host keeps its port")
    check(1 <= b <= 1023 and b != 600, f"second host gets another port below 1024, got {b}")


@tunnat_args("--port-parity")
def test_port_parity_is_kept_when_asked(lab):
    srv = lab.listen("wan", REMOTE, 4601, socket.SOCK_DGRAM)
    socks = []
    for port in (53000, 53001):
        _, s1 = mapped_udp_port(lab, srv, CLIENT, port)
        p2, s2 = mapped_udp_port(lab, srv, SERVER_IN, port)
        socks += [s1, s2]
        check(p2 != port and p2 % 2 == port % 2, f"{port}: second host's port {p2} has the same parity")


@tunnat_args("--udp-timeout", "1", "--port-hold", "3")
def test_released_port_is_held_from_other_hosts(lab):
    """RFC 6888: a released external port is not handed to another host at once."""
    srv = lab.listen("wan", REMOTE, 4602, socket.SOCK_DGRAM)
    a, sa = mapped_udp_port(lab, srv, CLIENT, 53100)
    eq(a, 53100, "preserved")
    sa.close()
    wait_for(lambda: "expired udp 192.168.122.101:53100" in lab.stderr(), 4, "the mapping to expire")
    b, sb = mapped_udp_port(lab, srv, SERVER_IN, 53100)
    check(b != 53100, "the released port is held")
    sb.close()
    wait_for(lambda: "expired udp 192.168.122.73:53100" in lab.stderr(), 4, "the second mapping to expire")
    time.sleep(3.2 - 1)  # the first port's hold (3 s from its release) is over by now
    wait_for(lambda: mapped_udp_port(lab, srv, SERVER_IN, 53100)[0] == 53100, 3, "the port to be free again")


def session_row(lab, inside_port):
    rows = [l for l in lab.ctl("table").stdout.splitlines() if f"{CLIENT}:{inside_port} " in l]
    return rows[0] if rows else ""


def test_tcp_states_and_timeouts_with_real_connections(lab):
    """RFC 7857 / RFC 5382 REQ-5: open -> established (7440 s); FIN both ways -> 240 s;
    RST -> kept 240 s."""
    lab.stop()
    lab.start(["--control", lab.control_path])
    srv = lab.listen("wan", REMOTE, 7400)

    serve_tcp(srv, echo)
    c = lab.connect("lan", REMOTE, 7400, bind=(CLIENT, 50700))
    c.sendall(b"hi")
    eq(c.recv(10), b"hi", "echo")
    row = session_row(lab, 50700)
    check("ESTABLISHED" in row and " 7440s " in row, f"open: {row}")
    c.shutdown(socket.SHUT_WR)
    eq(c.recv(10), b"", "server closed too")
    wait_for(lambda: "TIME_WAIT" in session_row(lab, 50700), 3, "FIN both ways")
    check(" 240s " in session_row(lab, 50700), session_row(lab, 50700))
    c.close()
    r = lab.connect("lan", REMOTE, 7400, bind=(CLIENT, 50701))
    r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.close()  # sends RST
    wait_for(lambda: "CLOSE " in session_row(lab, 50701), 3, "RST seen")
    check(" 240s " in session_row(lab, 50701), f"kept 4 min after RST: {session_row(lab, 50701)}")


@tunnat_args("--max-sessions", "3")
def test_full_table_answers_admin_prohibited(lab):
    """RFC 5508 REQ-8: no room (nobody idle long enough to evict): ICMP 3/13, and the
    sessions already made keep working."""
    srv = lab.listen("wan", REMOTE, 4700, socket.SOCK_DGRAM)
    socks = []
    for port in (54000, 54001, 54002):
        s = lab.sock("lan", socket.SOCK_DGRAM)
        s.bind((CLIENT, port))
        s.settimeout(2)
        s.connect((REMOTE, 4700))
        s.send(b"in")
        srv.recvfrom(10)
        socks.append(s)
    extra = lab.sock("lan", socket.SOCK_DGRAM)
    extra.bind((CLIENT, 54003))
    extra.settimeout(2)
    extra.connect((REMOTE, 4700))
    extra.send(b"no room")
    try:
        extra.recv(10)
        raise AssertionError("no error for a session beyond the table")
    except OSError as e:
        check(e.errno in (113, 13), f"ICMP 3/13 reported as {e}")
    socks[0].send(b"still")
    eq(srv.recvfrom(10)[0], b"still", "existing sessions keep working")


def test_icmp_errors_from_outside_translated_checked_and_harmless(lab):
    """RFC 5508 REQ-3..5, RFC 4787 REQ-12: an outside router's "fragmentation needed" about
    a translated datagram reaches the inside socket with its MTU; errors with a bad ICMP
    checksum or a bad quoted header checksum are dropped; the mapping outlives the error."""
    srv = lab.listen("wan", REMOTE, 9600, socket.SOCK_DGRAM)
    sn = lab.sniffer("wan")
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.bind((CLIENT, 47600))
    s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR
    s.settimeout(2)
    s.connect((REMOTE, 9600))
    s.send(b"probe")
    sent = sniff(sn, lambda ip: ip["proto"] == 17 and ip["src"] == ROUTER_OUT)
    _, mapped = srv.recvfrom(100)
    quoted = sent["header"] + sent["l4"][:8]
    icmp = lab.sock("wan", socket.SOCK_RAW, socket.IPPROTO_ICMP)

    def send_error(quote, break_checksum=False):
        msg = bytearray(struct.pack("!BBHHH", 3, 4, 0, 0, 1000) + quote)
        c = csum(bytes(msg))
        msg[2:4] = struct.pack("!H", c ^ (0x1111 if break_checksum else 0))
        icmp.sendto(bytes(msg), (ROUTER_OUT, 0))

    def errors():
        got = []
        s.setblocking(False)
        while True:
            try:
                _, anc, _, _ = s.recvmsg(100, 512, socket.MSG_ERRQUEUE)
            except BlockingIOError:
                s.settimeout(2)
                return got
            errno_, origin, typ, code, _pad, info = struct.unpack_from("=IBBBBI", anc[0][2])
            got.append((errno_, typ, code, info))

    send_error(quoted, break_checksum=True)
    bad_inner = bytearray(quoted)
    bad_inner[10] ^= 0x40  # the quoted IPv4 header checksum
    send_error(bytes(bad_inner))
    time.sleep(0.5)
    eq(errors(), [], "errors with bad checksums are dropped")
    send_error(quoted)
    seen = []
    wait_for(lambda: seen.extend(errors()) or seen, 2, "the translated error")
    eq(seen, [(90, 3, 4, 1000)], "EMSGSIZE with the next-hop MTU reached the socket")
    srv.sendto(b"after the error", mapped)
    eq(s.recv(100), b"after the error", "the mapping survives the ICMP error")

