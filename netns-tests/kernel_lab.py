"""The same lab with the Linux kernel as the router, for measuring netfilter's behaviour
with tunnat's own tests (`run.py --router netfilter ...`).

    lan: nat-in (veth) 192.168.122.101/24, 192.168.122.73/24, default via 192.168.122.100
    wan: nat-out (veth) 172.16.1.1/24, 172.16.1.2/24
    rtr: 192.168.122.100/24, 172.16.1.186/24, ip_forward=1, and the rules tunnat itself
         exports for the same options (`tunnat ... export nft --inside-if vin
         --outside-if vout`: masquerade, DNAT for each --dnat, hairpinning), so the
         export is checked against the kernel by every test run here

Options of tunnat that have no kernel equivalent make a test "not applicable", and so does
a test that reads tunnat's log.
"""

import os
import subprocess

import harness
from harness import (CLIENT, CLIENT6, REMOTE, REMOTE2, REMOTE6, REMOTE26, ROUTER_IN, ROUTER_IN6, ROUTER_OUT,
                     ROUTER_OUT6, SERVER_IN, SERVER_IN6, run)


class NotApplicable(Exception):
    pass


def npt66(addr, inside, outside):
    """`addr` of /64 prefix `inside` as RFC 6296 translates it to /64 prefix `outside`:
    the prefix replaced, and the first word of the interface identifier that is not
    0xffff adjusted by the difference of the prefixes' one's complement sums (Linux's
    ip6t_NPT does the same), so the transport checksums need no change."""
    import ipaddress

    def words(a):
        b = ipaddress.IPv6Address(a).packed
        return [int.from_bytes(b[i:i + 2], "big") for i in range(0, 16, 2)]

    def add(a, b):
        s = a + b
        return (s & 0xffff) + (s >> 16)

    def total(ws):
        s = 0
        for w in ws:
            s = add(s, w)
        return s

    src, dst, w = words(inside)[:4], words(outside)[:4], words(addr)
    # Checksum-neutral: the new prefix's sum plus the new word equals the old ones'.
    adjust = add(total(src), 0xffff - total(dst))
    i = next(i for i in range(4, 8) if w[i] != 0xffff)
    x = add(w[i], adjust)
    w = dst + w[4:]
    w[i] = 0 if x == 0xffff else x
    return str(ipaddress.IPv6Address(b"".join(v.to_bytes(2, "big") for v in w)))


class KernelLab(harness.Lab):
    counter = 0

    def __init__(self, extra_args=(), start=True, outside_mtu=None, inside_mtu=None, dual=False, nat64=None,
                 export=None):
        KernelLab.counter += 1
        self.dual = dual
        self.nat64 = nat64
        self.export = export  # force `tunnat export`'s format (else nft, iptables for npt)
        self.ipv6 = "nat"
        self.prefix = f"kn{os.getpid() % 100000}x{KernelLab.counter}"
        self.lan, self.wan, self.rtr = self.prefix + "lan", self.prefix + "wan", self.prefix + "rtr"
        self.bg = []
        self.tmpdirs = []
        self.extra_ns = []
        self.proc = None
        self.outside_mtu_arg = None
        self.miniupnpd = None  # {"pcp": bool, ...} when the test asks for port control
        dnat = self._translate(list(extra_args))
        outside_mtu = outside_mtu or self.outside_mtu_arg
        for n in (self.lan, self.wan, self.rtr):
            run(["ip", "netns", "add", n])
            run(["ip", "-n", n, "link", "set", "lo", "up"])
        mtu_in = ["mtu", str(inside_mtu)] if inside_mtu else []
        mtu = ["mtu", str(outside_mtu)] if outside_mtu else []
        run(["ip", "link", "add", "vin", "netns", self.rtr, *mtu_in, "type", "veth", "peer", "name", "nat-in",
             "netns", self.lan, *mtu_in])
        run(["ip", "link", "add", "vout", "netns", self.rtr, *mtu, "type", "veth", "peer", "name", "nat-out",
             "netns", self.wan, *mtu])
        if nat64:
            self._nat64(nat64, dnat, outside_mtu)
            return
        for a in (CLIENT, SERVER_IN):
            run(["ip", "-n", self.lan, "addr", "add", a + "/24", "dev", "nat-in"])
        for a in (REMOTE, REMOTE2):
            run(["ip", "-n", self.wan, "addr", "add", a + "/24", "dev", "nat-out"])
        run(["ip", "-n", self.rtr, "addr", "add", ROUTER_IN + "/24", "dev", "vin"])
        run(["ip", "-n", self.rtr, "addr", "add", ROUTER_OUT + "/24", "dev", "vout"])
        for n, d in ((self.lan, "nat-in"), (self.wan, "nat-out"), (self.rtr, "vin"), (self.rtr, "vout")):
            run(["ip", "-n", n, "link", "set", d, "up"])
        run(["ip", "-n", self.lan, "route", "add", "default", "via", ROUTER_IN])
        ex = ["ip", "netns", "exec", self.rtr]
        run(ex + ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        if dual:
            self._dual(ex)
        # The rules are tunnat's own export of this router: what `tunnat export` prints is
        # checked against the kernel by every test run here.
        self.ruleset = self._export(list(extra_args))
        if self.ruleset.startswith("#!/bin/sh"):
            run(ex + ["sh", "-c", self.ruleset])
        else:
            run(ex + ["nft", "-f", "-"], input=self.ruleset)
        if self.miniupnpd is not None:
            self._start_miniupnpd(ex)

    # miniupnpd (Debian's miniupnpd-nftables) in its own table, hooked before the
    # export's: its DNAT rules and a forward chain that accepts everything else.
    MINIUPNPD_NFT = """table inet miniupnpd {
  chain forward { type filter hook forward priority -1; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -101; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 99; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
"""

    def _start_miniupnpd(self, ex):
        """The reference for --pcp, --nat-pmp and --upnp: miniupnpd 2.3 with the same
        allow/deny rules, secure mode (a host maps only to itself), lifetimes 120 s to a
        day. Its WAN address (172.16.1.186) is private, so it learns a "public" one by
        STUN from a responder on 172.16.1.2, as the lab notes say."""
        import tempfile
        run(ex + ["nft", "-f", "-"], input=self.MINIUPNPD_NFT)
        m = self.miniupnpd
        self.mu_dir = tempfile.mkdtemp(prefix="miniupnpd-")
        rules = m["rules"] or ["allow 1024-65535 192.168.122.0/24 1024-65535"]
        conf = "\n".join([
            "ext_ifname=vout", "listening_ip=vin", "http_port=5000",
            f"enable_natpmp={'yes' if (m['pcp'] or m['nat_pmp']) else 'no'}",
            f"enable_upnp={'yes' if m['upnp'] else 'no'}",
            "secure_mode=yes", "system_uptime=no",
            "ext_perform_stun=yes", "ext_stun_host=172.16.1.2", "ext_stun_port=3478",
            "uuid=d531940e-1eb5-40ae-9fb7-ab5430719483",
            "upnp_table_name=miniupnpd", "upnp_nat_table_name=miniupnpd",
            "upnp_forward_chain=miniupnpd", "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            "min_lifetime=120", "max_lifetime=86400",
            *rules, "deny 0-65535 0.0.0.0/0 0-65535", "",
        ])
        path = os.path.join(self.mu_dir, "miniupnpd.conf")
        with open(path, "w") as f:
            f.write(conf)
        here = os.path.dirname(os.path.abspath(__file__))
        self.bg.append(subprocess.Popen(["ip", "netns", "exec", self.wan, "python3",
                                         os.path.join(here, "stun5780.py"), REMOTE2, REMOTE],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import time
        time.sleep(0.3)
        self.bg.append(subprocess.Popen(ex + ["miniupnpd", "-f", path, "-d"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        deadline = time.time() + 5
        while time.time() < deadline:
            p = subprocess.run(ex + ["ss", "-ltn", "sport = :5000"], capture_output=True, text=True)
            if ":5000" in p.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError("miniupnpd did not start")

    def port_maps(self):
        """miniupnpd's mappings, as tunnat writes rules (`tcp:7000=192.168.122.101:9999`)."""
        import re
        out = run(["ip", "netns", "exec", self.rtr, "nft", "list", "chain", "inet", "miniupnpd",
                   "prerouting_miniupnpd"]).stdout
        maps = []
        for m in re.finditer(r"@nh,72,8 0x(\w+) th dport (\d+) dnat ip to ([\d.]+):(\d+)", out):
            proto = {"6": "tcp", "11": "udp"}.get(m.group(1), m.group(1))
            maps.append(f"{proto}:{m.group(2)}={m.group(3)}:{m.group(4)}")
        return sorted(maps)

    def _export(self, extra):
        """`tunnat export` of the tunnat this lab stands for, on its veth interfaces: nft,
        or iptables for --ipv6 npt (nft has no NPTv6)."""
        a = [harness.TUNNAT, "--inside-tun", "nat-in", "--inside-addr", ROUTER_IN + "/24",
             "--outside-tun", "nat-out", "--outside-addr", ROUTER_OUT + "/24"]
        if self.dual:
            a += ["--inside-addr", ROUTER_IN6 + "/64", "--outside-addr", ROUTER_OUT6 + "/64"]
        fmt = self.export or ("iptables" if self.ipv6 == "npt" else "nft")
        kept = []
        while extra:
            x = extra.pop(0)
            if x == "--control":
                extra.pop(0)  # the export is of the options, not of a running router
            else:
                kept.append(x)
        return run(a + kept + ["export", fmt, "--inside-if", "vin", "--outside-if", "vout"]).stdout

    def _dual(self, ex):
        """The IPv6 half: the same addresses as tunnat's dual lab (its rules come with the
        export: MASQUERADE and DNAT; SNPT and DNPT; nothing, as `--ipv6` asks)."""
        for a in (CLIENT6, SERVER_IN6):
            run(["ip", "-n", self.lan, "addr", "add", a + "/64", "dev", "nat-in", "nodad"])
        for a in (REMOTE6, REMOTE26):
            run(["ip", "-n", self.wan, "addr", "add", a + "/64", "dev", "nat-out", "nodad"])
        run(["ip", "-n", self.rtr, "addr", "add", ROUTER_IN6 + "/64", "dev", "vin", "nodad"])
        run(["ip", "-n", self.rtr, "addr", "add", ROUTER_OUT6 + "/64", "dev", "vout", "nodad"])
        run(["ip", "-n", self.lan, "-6", "route", "add", "default", "via", ROUTER_IN6])
        run(ex + ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        if self.ipv6 == "npt":
            # On veth the outside hosts ask for the inside hosts' translated addresses by
            # neighbour discovery, which tunnat's TUN never needs: the router answers for
            # them (proxy NDP), as a real NPTv6 router on Ethernet is set up to.
            run(ex + ["sysctl", "-qw", "net.ipv6.conf.vout.proxy_ndp=1"])
            for a in (CLIENT6, SERVER_IN6):
                run(ex + ["ip", "-6", "neigh", "add", "proxy", npt66(a, "fd00:122::", "2001:db8:1::"), "dev", "vout"])

    # Tayga 0.9.2 refuses 64:ff9b:1::/96 as reserved (later versions take it): it gets a
    # ULA prefix of the same shape instead; the tests address hosts through `lab.p64`.
    TAYGA_PREFIX = {"64:ff9b:1::/96": "fd64:ff9b:1::/96"}

    def _nat64(self, prefix, dnat, outside_mtu):
        """NAT64 as it is built with the kernel: Tayga (stateless, a dynamic pool of
        192.168.255.0/24 for the IPv6 hosts) and the kernel's NAT44 (MASQUERADE) behind it;
        a port forward to an IPv6 host is a static Tayga map plus a DNAT rule."""
        prefix = self.TAYGA_PREFIX.get(prefix, prefix)
        self.p64 = prefix.split("/")[0]
        for a in (CLIENT6, SERVER_IN6):
            run(["ip", "-n", self.lan, "addr", "add", a + "/64", "dev", "nat-in", "nodad"])
        for a in (REMOTE, REMOTE2):
            run(["ip", "-n", self.wan, "addr", "add", a + "/24", "dev", "nat-out"])
        run(["ip", "-n", self.rtr, "addr", "add", ROUTER_IN6 + "/64", "dev", "vin", "nodad"])
        run(["ip", "-n", self.rtr, "addr", "add", ROUTER_OUT + "/24", "dev", "vout"])
        for n, d in ((self.lan, "nat-in"), (self.wan, "nat-out"), (self.rtr, "vin"), (self.rtr, "vout")):
            run(["ip", "-n", n, "link", "set", d, "up"])
        run(["ip", "-n", self.lan, "-6", "route", "add", "default", "via", ROUTER_IN6])
        # tunnat sends everything not its own out of its outside port: a default route.
        run(["ip", "-n", self.rtr, "route", "add", "default", "via", REMOTE])
        ex = ["ip", "netns", "exec", self.rtr]
        run(ex + ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        run(ex + ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        self.tayga_dir = f"/tmp/{self.prefix}-tayga"
        os.makedirs(self.tayga_dir, exist_ok=True)
        conf = os.path.join(self.tayga_dir, "tayga.conf")
        maps = []
        for i, (proto, ports, target) in enumerate(dnat):
            host, _, port = target[1:].partition("]:")
            host = host.rstrip("]")
            v4 = f"192.168.253.{1 + i}"  # outside the dynamic pool, as Tayga wants
            maps.append(f"map {v4} {host}\n")
            run(ex + ["iptables", "-t", "nat", "-A", "PREROUTING", "-d", ROUTER_OUT, "-p", proto, "--dport", ports,
                      "-j", "DNAT", "--to-destination", f"{v4}:{port}" if port else v4])
        with open(conf, "w") as f:
            f.write(f"tun-device nat64\nipv4-addr 192.168.255.1\nipv6-addr fd00:64::1\nprefix {prefix}\n"
                    f"dynamic-pool 192.168.255.0/24\ndata-dir {self.tayga_dir}\n" + "".join(maps))
        run(ex + ["tayga", "-c", conf, "--mktun"])
        run(ex + ["ip", "link", "set", "nat64", "up"])
        run(ex + ["ip", "addr", "add", "192.168.254.1/32", "dev", "nat64"])
        run(ex + ["ip", "route", "add", "192.168.255.0/24", "dev", "nat64"])
        run(ex + ["ip", "route", "add", "192.168.253.0/24", "dev", "nat64"])
        run(ex + ["ip", "-6", "route", "add", prefix, "dev", "nat64"])
        run(ex + ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "vout", "-j", "MASQUERADE"])
        p = subprocess.Popen(ex + ["tayga", "-c", conf, "--nodetach"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.bg.append(p)

    def _translate(self, args):
        """tunnat options -> DNAT rules; anything else has no kernel equivalent."""
        dnat = []
        while args:
            a = args.pop(0)
            if a == "--dnat":
                lhs, target = args.pop(0).split("=")
                proto, ports = lhs.split(":")
                first, _, last = ports.partition("-")
                if last and ":" in target:
                    # A shifted range: netfilter's ip:lo-hi/base form (xt_nat revision 2).
                    ip, tp = target.split(":")
                    tp = int(tp)
                    target = f"{ip}:{tp}-{tp + int(last) - int(first)}/{first}"
                dnat.append((proto, ports.replace("-", ":"), target))
            elif a in ("--pcp", "--nat-pmp", "--upnp"):
                if self.miniupnpd is None:
                    self.miniupnpd = {"pcp": False, "nat_pmp": False, "upnp": False, "rules": []}
                self.miniupnpd[a[2:].replace("-", "_")] = True
            elif a == "--portmap-rule" and args:
                self.miniupnpd = self.miniupnpd or {"pcp": False, "nat_pmp": False, "upnp": False, "rules": []}
                self.miniupnpd["rules"].append(args.pop(0))
            elif a == "--alg" and args:
                args.pop(0)  # `tunnat export` turns it into the kernel's helper
            elif a == "--control" and args:
                args.pop(0)  # tunnat's own socket: the kernel has none
            elif a == "--outside-mtu" and args:
                self.outside_mtu_arg = int(args.pop(0))
            elif a == "--ipv6" and args:
                self.ipv6 = args.pop(0)
            elif a == "--filtering" and args and args[0] == "address-and-port-dependent":
                args.pop(0)  # conntrack admits only packets of known connections: this mode
            else:
                raise NotApplicable(f"tunnat option {a} has no netfilter equivalent")
        return dnat

    def stderr(self):
        raise NotApplicable("the test reads tunnat's log")

    def ctl(self, *args, check_rc=True):
        raise NotApplicable("the test asks tunnat's control socket")

    def stats(self):
        raise NotApplicable("the test reads tunnat's counters")

    def start(self, extra=(), env=None):
        raise NotApplicable("the test restarts tunnat")

    def stop(self, sig=None):
        raise NotApplicable("the test stops tunnat")

    def close(self):
        for p in self.bg:
            p.kill()
            p.wait()
        self.remove_extras()
        if getattr(self, "mu_dir", None):
            subprocess.run(["rm", "-rf", self.mu_dir])
        if getattr(self, "tayga_dir", None):
            subprocess.run(["rm", "-rf", self.tayga_dir])
        for n in (self.lan, self.wan, self.rtr):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
