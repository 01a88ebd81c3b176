#!/usr/bin/env python3
"""A small STUN server with RFC 5780's NAT behaviour discovery, for the lessons and
tests: it listens on two addresses and two ports, answers a Binding request with
XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS, and honours
CHANGE-REQUEST by answering from the other address and/or port.

    stun5780.py ADDR1 ADDR2 [PORT1 [PORT2]]      (default ports 3478 and 3479)

turnutils_natdiscovery -m -f ADDR1 then reports the mapping and filtering behaviour of
whatever NAT stands between it and this server.
"""

import select
import socket
import struct
import sys

MAGIC = 0x2112A442


def addr_attr(kind, ip, port, xor=False, tid=b""):
    a = socket.inet_aton(ip)
    if xor:
        port ^= MAGIC >> 16
        a = bytes(x ^ y for x, y in zip(a, struct.pack("!I", MAGIC)))
    v = struct.pack("!BBH", 0, 1, port) + a
    return struct.pack("!HH", kind, len(v)) + v


def main():
    a1, a2 = sys.argv[1], sys.argv[2]
    p1 = int(sys.argv[3]) if len(sys.argv) > 3 else 3478
    p2 = int(sys.argv[4]) if len(sys.argv) > 4 else 3479
    socks = {}
    for a in (a1, a2):
        for p in (p1, p2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a, p))
            socks[(a, p)] = s
    other = {a1: a2, a2: a1}
    other_port = {p1: p2, p2: p1}
    print(f"stun5780: {a1} and {a2}, ports {p1} and {p2}", flush=True)
    while True:
        ready, _, _ = select.select(list(socks.values()), [], [])
        for s in ready:
            data, peer = s.recvfrom(2048)
            if len(data) < 20:
                continue
            kind, length, magic = struct.unpack("!HHI", data[:8])
            tid = data[8:20]
            if kind != 0x0001 or magic != MAGIC:
                continue
            change_ip = change_port = False
            at = 20
            while at + 4 <= min(len(data), 20 + length):
                t, n = struct.unpack("!HH", data[at:at + 4])
                v = data[at + 4:at + 4 + n]
                if t == 0x0003 and len(v) == 4:
                    flags = struct.unpack("!I", v)[0]
                    change_ip, change_port = bool(flags & 4), bool(flags & 2)
                at += 4 + ((n + 3) & ~3)
            here = s.getsockname()
            src = (other[here[0]] if change_ip else here[0], other_port[here[1]] if change_port else here[1])
            attrs = (addr_attr(0x0001, peer[0], peer[1])
                     + addr_attr(0x0020, peer[0], peer[1], xor=True)
                     + addr_attr(0x802B, src[0], src[1])
                     + addr_attr(0x802C, other[here[0]], other_port[here[1]]))
            reply = struct.pack("!HHI", 0x0101, len(attrs), MAGIC) + tid + attrs
            socks[src].sendto(reply, peer)


if __name__ == "__main__":
    main()
