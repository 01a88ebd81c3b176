"""NAT64's ICMP translations compared byte for byte with Tayga's (plus the kernel's NAT44
behind it) on the same topology and prefix: each case is set off the same way in both labs,
the translated packet is taken where it arrives (the inside host's or the outside host's
interface), and the two are compared field by field.

Every difference must be one the README explains (`EXPLAINED`, the README's "NAT64 beside
Tayga" section); a new one fails the test. Run as a script for the report alone:

    python3 netns-tests/test_nat64_compare.py      # writes /tmp/nat64-compare/*.pcap too
"""

import os
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import CLIENT6, REMOTE, ROUTER_OUT, SERVER_IN6, check  # noqa: E402

PREFIX = "fd64:ff9b:1::/96"  # one both accept (Tayga 0.9.2 refuses 64:ff9b:1::/96)
ARGS = ["--outside-mtu", "1400", "--dnat", f"udp:8888=[{SERVER_IN6}]:7777"]
TUNNAT_ARGS = ARGS + ["--no-offload"]
PCAP_DIR = "/tmp/nat64-compare"

# Fields that differ, by case, each explained in the README ("NAT64 beside Tayga"):
# * hop limit / TTL: Tayga with the kernel is three routers in a row (the kernel's IPv6
#   forwarding, Tayga, the kernel's IPv4 forwarding), each taking one; tunnat is one;
# * DF and ID of a small IPv4 packet made from IPv6: RFC 7915 section 5.1 sets DF only
#   above 1260 bytes (tunnat, as Jool); Tayga sets DF always, with ID 0 (RFC 6145);
# * the source of "packet too big": tunnat's inside address; with Tayga the kernel's IPv4
#   forwarding sends "fragmentation needed" from its address on Tayga's device;
# * the flow label of an ICMPv6 error the router makes: the kernel sets one, tunnat 0;
# * the quoted UDP checksum in the kernel's "time exceeded": the kernel quotes the
#   checksum field as the veth left it, still partial (an offload artefact);
# * checksums that cover any of these.
# tunnat runs without offloads here, as Tayga's TUN has none: with them the outside
# host's kernel, too, quotes a partial checksum in its errors.
EXPLAINED = {
    "echo request 6to4": {"ipv4.df", "ipv4.id", "ipv4.ttl", "ipv4.checksum"},
    "echo reply 4to6": {"ipv6.hop"},
    "port unreachable 4to6": {"ipv6.hop", "quoted.hop", "icmp.checksum"},
    "time exceeded 4to6": {"ipv6.hop"},
    "fragmentation needed 4to6": {"ipv6.src", "ipv6.hop", "quoted.hop", "icmp.checksum"},
    "port unreachable 6to4": {"ipv4.df", "ipv4.id", "ipv4.ttl", "ipv4.checksum", "quoted.df", "quoted.ttl",
                              "quoted.checksum"},
    "hop limit exceeded": {"ipv6.flow", "quoted.l4", "icmp.checksum"},
}


def _sniffer(lab, side):
    dev = "nat-in" if side == "lan" else "nat-out"
    with lab.ns(side):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
        s.bind((dev, 0))
        s.settimeout(0.05)
    return s


def _drain(s):
    """The packets that arrived at the host (not the ones it sent) since the last drain."""
    got = []
    while True:
        try:
            pkt, addr = s.recvfrom(65536)
        except socket.timeout:
            return got
        if addr[2] != socket.PACKET_OUTGOING:
            got.append(pkt)


def _at(v4):
    import ipaddress
    return str(ipaddress.IPv6Address(PREFIX.split("/")[0] + v4))


def _cases(lab, hops):
    """Sets off each case; returns {case: packet}. `hops`: routers between the inside host
    and the outside network (1 for tunnat; 3 for the kernel, Tayga and the kernel)."""
    sniff = {side: _sniffer(lab, side) for side in ("lan", "wan")}
    out = {}

    def case(name, side, trigger, match):
        # Set off a second time if nothing came within 2 s: in the kernel's lab the first
        # datagram to the port forward sometimes goes unanswered (the first of 100 in a
        # probe, none of the 99 after, and none of 100 through tunnat). The cases compare
        # what is sent, not whether the first attempt was.
        for _ in range(2):
            for s in sniff.values():
                _drain(s)
            trigger()
            deadline = time.time() + 2
            while time.time() < deadline:
                for p in _drain(sniff[side]):
                    if match(p):
                        out[name] = p
                        return
        out[name] = None

    def icmp6_echo():
        with lab.ns("lan"):
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.bind((CLIENT6, 0))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 64)
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x4242, 1) + b"tunnat-nat64-cmp", (_at(REMOTE), 0))
        s.close()

    is4 = lambda p, t: p[0] >> 4 == 4 and p[9] == 1 and p[(p[0] & 15) * 4] == t  # noqa: E731
    is6 = lambda p, t: p[0] >> 4 == 6 and p[6] == 58 and p[40] == t  # noqa: E731
    case("echo request 6to4", "wan", icmp6_echo, lambda p: is4(p, 8))
    case("echo reply 4to6", "lan", icmp6_echo, lambda p: is6(p, 129))

    def udp6(dst, port, hop=64, size=32):
        def go():
            with lab.ns("lan"):
                s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind((CLIENT6, 40001))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hop)
            s.sendto(b"x" * size, (dst, port))
            s.close()
        return go

    case("port unreachable 4to6", "lan", udp6(_at(REMOTE), 33999), lambda p: is6(p, 1))
    case("time exceeded 4to6", "lan", udp6(_at("10.9.9.1"), 33999, hop=hops + 1), lambda p: is6(p, 3))
    case("fragmentation needed 4to6", "lan", udp6(_at(REMOTE), 33999, size=1404), lambda p: is6(p, 2))

    def udp4_to_forward():
        with lab.ns("wan"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((REMOTE, 40002))
        s.sendto(b"y" * 32, (ROUTER_OUT, 8888))
        s.close()
    case("port unreachable 6to4", "wan", udp4_to_forward, lambda p: is4(p, 3))
    case("hop limit exceeded", "lan", udp6(_at(REMOTE), 33999, hop=1), lambda p: is6(p, 3))
    for s in sniff.values():
        s.close()
    return out


def _fields(p):
    """The packet as named fields (the quoted packet of an ICMP error too)."""
    f = {}
    if p is None:
        return {"missing": True}
    if p[0] >> 4 == 6:
        f.update({"ipv6.tc": (p[0] & 15) << 4 | p[1] >> 4, "ipv6.flow": int.from_bytes(p[1:4], "big") & 0xFFFFF,
                  "ipv6.plen": p[4:6], "ipv6.next": p[6], "ipv6.hop": p[7],
                  "ipv6.src": socket.inet_ntop(socket.AF_INET6, p[8:24]),
                  "ipv6.dst": socket.inet_ntop(socket.AF_INET6, p[24:40])})
        icmp, quoted_at = p[40:], 48
    else:
        ihl = (p[0] & 15) * 4
        f.update({"ipv4.tos": p[1], "ipv4.len": p[2:4], "ipv4.id": p[4:6], "ipv4.df": p[6] & 0x40,
                  "ipv4.frag": (p[6] & 0x3F, p[7]), "ipv4.ttl": p[8], "ipv4.proto": p[9], "ipv4.checksum": p[10:12],
                  "ipv4.src": socket.inet_ntoa(p[12:16]), "ipv4.dst": socket.inet_ntoa(p[16:20])})
        icmp, quoted_at = p[ihl:], ihl + 8
    f.update({"icmp.type": icmp[0], "icmp.code": icmp[1], "icmp.checksum": icmp[2:4], "icmp.rest": icmp[4:8]})
    t = icmp[0]
    if t in (1, 2, 3, 4) and p[0] >> 4 == 6 or t in (3, 11, 12) and p[0] >> 4 == 4:
        q = p[quoted_at:]
        if q and q[0] >> 4 == 6:
            f.update({"quoted.tc": q[1] >> 4, "quoted.plen": q[4:6], "quoted.next": q[6], "quoted.hop": q[7],
                      "quoted.src": q[8:24], "quoted.dst": q[24:40], "quoted.l4": q[40:48], "quoted.rest": q[48:]})
        elif q:
            qi = (q[0] & 15) * 4
            f.update({"quoted.tos": q[1], "quoted.len": q[2:4], "quoted.id": q[4:6], "quoted.df": q[6] & 0x40,
                      "quoted.ttl": q[8], "quoted.proto": q[9], "quoted.checksum": q[10:12], "quoted.src": q[12:16],
                      "quoted.dst": q[16:20], "quoted.l4": q[qi:qi + 8], "quoted.rest": q[qi + 8:]})
    else:
        f["payload"] = icmp[8:]
    return f


def _write_pcap(path, packets):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))  # LINKTYPE_RAW
        for p in packets:
            f.write(struct.pack("<IIII", 0, 0, len(p), len(p)) + p)


def compare(report=print):
    """Runs the cases in both labs; returns {case: set of differing fields}."""
    import kernel_lab
    results = {}
    for name, make, hops in (("tunnat", lambda: harness.Lab(extra_args=TUNNAT_ARGS, nat64=PREFIX), 1),
                             ("tayga", lambda: kernel_lab.KernelLab(extra_args=ARGS, nat64=PREFIX), 3)):
        lab = make()
        try:
            lab.far_network()
            results[name] = _cases(lab, hops)
        finally:
            lab.close()
    os.makedirs(PCAP_DIR, exist_ok=True)
    diffs = {}
    for case in EXPLAINED:
        a, b = results["tunnat"].get(case), results["tayga"].get(case)
        fa, fb = _fields(a), _fields(b)
        d = {k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k)}
        d |= {f"missing from {n}" for n, p in (("tunnat", a), ("the kernel and Tayga", b)) if p is None}
        diffs[case] = d
        same = "identical" if a == b else ("differs in " + ", ".join(sorted(d)))
        report(f"{case:28} {len(a or b''):5} B  {same}")
    for name in results:
        _write_pcap(f"{PCAP_DIR}/{name}.pcap", [p for p in results[name].values() if p])
    report(f"captures: {PCAP_DIR}/tunnat.pcap, {PCAP_DIR}/tayga.pcap (one packet per case, in order)")
    return diffs


def test_icmp_translations_match_tayga_or_differ_as_the_readme_explains():
    diffs = compare(report=lambda line: None)
    for case, d in diffs.items():
        missing = sorted(k for k in d if k.startswith("missing"))
        check(not missing, f"{case}: {', '.join(missing)}")
        unexplained = d - EXPLAINED[case]
        check(not unexplained, f"{case}: tunnat and Tayga differ in {sorted(unexplained)}, not explained in the README")


if __name__ == "__main__":
    compare()
