"""Static DNAT: 172.16.1.186:8888 -> 192.168.122.73:9999, replies back through the mapping."""

import socket

from harness import (refused, REMOTE, ROUTER_OUT, SERVER_IN, check, eq, recv_all, serve_tcp, sniff,
                     tunnat_args)

RULES = ("--dnat", "tcp:8888=192.168.122.73:9999", "--dnat", "udp:5000-5002=192.168.122.73",
         "--dnat", "tcp:8000-8001=192.168.122.73:9000")


@tunnat_args(*RULES)
def test_outside_client_reaches_inside_server(lab):
    srv = lab.listen("lan", SERVER_IN, 9999)
    peers = []
    serve_tcp(srv, lambda c, p: (peers.append(p), c.sendall(b"served:" + c.recv(100))))
    sn = lab.sniffer("lan")
    c = lab.connect("wan", ROUTER_OUT, 8888)
    eq(c.getpeername(), (ROUTER_OUT, 8888), "client is connected to the router's address")
    c.sendall(b"ping")
    eq(recv_all(c), b"served:ping", "reply through the DNAT mapping")
    eq(peers[0][0], REMOTE, "the inside server sees the real client address")
    syn = sniff(sn, lambda ip: ip["proto"] == 6 and ip["dst"] == SERVER_IN)
    eq(syn["ttl"], 63, "forwarded SYN has TTL one lower")


@tunnat_args(*RULES)
def test_no_listener_rst_reaches_client(lab):
    refused(lambda: lab.connect("wan", ROUTER_OUT, 8888, timeout=3), "connected with nothing listening on 192.168.122.73:9999")
    check("dropped (no-session)" not in lab.stderr(), "the inside host's RST was translated, not dropped")


@tunnat_args(*RULES)
def test_udp_port_range_keeps_ports(lab):
    for port in (5000, 5002):
        srv = lab.listen("lan", SERVER_IN, port, socket.SOCK_DGRAM)
        c = lab.sock("wan", socket.SOCK_DGRAM)
        c.settimeout(3)
        c.sendto(b"q%d" % port, (ROUTER_OUT, port))
        data, peer = srv.recvfrom(100)
        eq((data, peer[0]), (b"q%d" % port, REMOTE), "datagram forwarded to the same port")
        srv.sendto(b"a", peer)
        eq(c.recvfrom(100), (b"a", (ROUTER_OUT, port)), "reply from the router's address and port")


@tunnat_args(*RULES)
def test_tcp_port_range_shifts_ports(lab):
    srv = lab.listen("lan", SERVER_IN, 9001)
    serve_tcp(srv, lambda c, p: c.sendall(b"nine-thousand-one"))
    c = lab.connect("wan", ROUTER_OUT, 8001)
    eq(recv_all(c), b"nine-thousand-one", "8001 goes to 9001")


@tunnat_args(*RULES)
def test_udp_to_closed_dnat_target_gets_port_unreachable(lab):
    """The inside host's ICMP port unreachable is translated back (quoted header rewritten)."""
    c = lab.sock("wan", socket.SOCK_DGRAM)
    c.settimeout(3)
    c.connect((ROUTER_OUT, 5001))
    c.send(b"anyone?")
    refused(lambda: c.recv(100), "answer from a closed port")
    check("translated 1" in _stop_and_stats(lab), "one ICMP error translated")


def _stop_and_stats(lab):
    eq(lab.stop(), 0, "tunnat exit code")
    return lab.stderr()
