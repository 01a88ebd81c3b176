"""Fragments through NAT (RFC 4787 REQ-14): reassembled, translated, fragmented again."""

import socket
import struct

from harness import CLIENT, REMOTE, ROUTER_OUT, csum, eq, silent, wait_for


def test_large_udp_datagrams_both_ways(lab):
    srv = lab.listen("wan", REMOTE, 9500, socket.SOCK_DGRAM)
    c = lab.sock("lan", socket.SOCK_DGRAM)
    c.bind((CLIENT, 47500))
    c.settimeout(3)
    payload = bytes(range(256)) * 32  # 8192 bytes: six fragments each way
    c.sendto(payload, (REMOTE, 9500))
    data, peer = srv.recvfrom(65535)
    eq((len(data), data == payload, peer), (8192, True, (ROUTER_OUT, 47500)), "datagram out, whole")
    srv.sendto(payload[::-1], peer)
    data, peer = c.recvfrom(65535)
    eq((data == payload[::-1], peer), (True, (REMOTE, 9500)), "datagram back in, whole")


def raw_fragments(payload, ident, pieces):
    """IPv4 fragments of one UDP datagram CLIENT:47501 -> REMOTE:9501, as (offset, bytes)."""
    udp = struct.pack("!HHHH", 47501, 9501, 8 + len(payload), 0) + payload
    pseudo = socket.inet_aton(CLIENT) + socket.inet_aton(REMOTE) + struct.pack("!BBH", 0, 17, len(udp))
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    out = []
    for start, end in pieces:
        more = end < len(udp)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + end - start, ident, (start // 8) | (0x2000 if more else 0),
                          64, 17, 0, socket.inet_aton(CLIENT), socket.inet_aton(REMOTE))
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        out.append(hdr + udp[start:end])
    return out


def test_out_of_order_fragments_arrive_whole(lab):
    srv = lab.listen("wan", REMOTE, 9501, socket.SOCK_DGRAM)
    raw = lab.sock("lan", socket.SOCK_RAW, socket.IPPROTO_RAW)
    payload = b"fragmented!" * 200  # 2200 bytes
    frags = raw_fragments(payload, 0x4242, [(0, 800), (800, 1600), (1600, 2208)])
    for f in (frags[2], frags[0], frags[1]):  # last first
        raw.sendto(f, (REMOTE, 0))
    data, peer = srv.recvfrom(65535)
    eq((data, peer), (payload, (ROUTER_OUT, 47501)), "reassembled and translated")


def test_overlapping_fragments_are_dropped_and_forwarding_goes_on(lab):
    srv = lab.listen("wan", REMOTE, 9501, socket.SOCK_DGRAM)
    srv.settimeout(1)
    raw = lab.sock("lan", socket.SOCK_RAW, socket.IPPROTO_RAW)
    payload = b"o" * 1500
    good = raw_fragments(payload, 0x5151, [(0, 800), (800, 1508)])
    overlap = raw_fragments(payload, 0x5151, [(400, 1200)])[0]
    raw.sendto(good[0], (REMOTE, 0))
    raw.sendto(overlap, (REMOTE, 0))
    raw.sendto(good[1], (REMOTE, 0))
    silent(lambda: srv.recvfrom(65535), "a datagram with overlapping fragments was delivered")
    wait_for(lambda: "dropped (bad-fragment)" in lab.stderr(), 2, "counted as bad-fragment")
    u = lab.sock("lan", socket.SOCK_DGRAM)
    u.bind((CLIENT, 47501))
    u.sendto(b"still forwarding", (REMOTE, 9501))
    eq(srv.recvfrom(100)[0], b"still forwarding", "valid traffic afterwards")
