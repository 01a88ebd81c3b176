"""tunnat as the real gateway of a machine: two veth "physical" interfaces, the kernel as a
plain router, and contrib/gateway.sh's wiring (policy routing, proxy ARP), no netfilter.

    isp  10.99.0.1 (web :80, and a client)
     | veth: isp0 -- eth0
    gw   eth0 10.99.0.2/24, eth1 192.168.50.1/24; tunnat on tun-lan/tun-wan,
         inside 192.168.50.254/24, outside 10.99.0.3/24, DNAT 8888 -> 192.168.50.10:9999
     | veth: eth1 -- eth0
    pc   192.168.50.10/24, default via 192.168.50.1
"""

import os
import socket
import subprocess
import time

import harness
from harness import ROOT, TUNNAT, check, eq, run, serve_tcp

GATEWAY = os.path.join(ROOT, "contrib", "gateway.sh")


class Gateway:
    def __init__(self):
        p = f"gw{os.getpid() % 100000}"
        self.isp, self.gw, self.pc = p + "isp", p + "gw", p + "pc"
        self.proc = None
        self.log = f"/tmp/{p}-tunnat.log"
        for ns in (self.isp, self.gw, self.pc):
            run(["ip", "netns", "add", ns])
            self.ip(ns, "link", "set", "lo", "up")
        run(["ip", "link", "add", "isp0", "netns", self.isp, "type", "veth", "peer", "eth0", "netns", self.gw])
        run(["ip", "link", "add", "eth1", "netns", self.gw, "type", "veth", "peer", "eth0", "netns", self.pc])
        for ns, dev, addr in ((self.isp, "isp0", "10.99.0.1/24"), (self.gw, "eth0", "10.99.0.2/24"),
                              (self.gw, "eth1", "192.168.50.1/24"), (self.pc, "eth0", "192.168.50.10/24")):
            self.ip(ns, "addr", "add", addr, "dev", dev)
            self.ip(ns, "link", "set", dev, "up")
        self.ip(self.isp, "route", "add", "default", "dev", "isp0")  # the Internet's side
        self.ip(self.pc, "route", "add", "default", "via", "192.168.50.1")

    def ip(self, ns, *args):
        run(["ip", "-n", ns, *args])

    def sh(self, ns, cmd, **kw):
        return run(["ip", "netns", "exec", ns, *cmd], **kw)

    def start(self):
        args = [TUNNAT, "--inside-tun", "tun-lan", "--inside-netns", self.gw, "--inside-addr", "192.168.50.254/24",
                "--outside-tun", "tun-wan", "--outside-netns", self.gw, "--outside-addr", "10.99.0.3/24",
                "--dnat", "tcp:8888=192.168.50.10:9999"]
        self.logf = open(self.log, "w+")
        self.proc = subprocess.Popen(args, stderr=self.logf, stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while "tunnat: ready" not in open(self.log).read():
            check(self.proc.poll() is None and time.time() < deadline, open(self.log).read())
            time.sleep(0.02)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def close(self):
        self.stop()
        for ns in (self.isp, self.gw, self.pc):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if os.path.exists(self.log):
            os.unlink(self.log)


def listen(ns, addr, port):
    """A listening TCP socket in namespace `ns`."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        harness._setns(fd)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(8)
        s.settimeout(3)
        return s
    finally:
        harness._setns(home)
        os.close(fd)
        os.close(home)


def test_tunnat_as_the_gateway_of_a_machine_without_netfilter():
    g = Gateway()
    try:
        env = dict(os.environ, WAN_IF="eth0", LAN_IF="eth1", OUT_ADDR="10.99.0.3")
        g.sh(g.gw, ["sh", GATEWAY, "up"], env=env)
        g.start()
        web = listen(g.isp, "10.99.0.1", 80)
        seen = []
        serve_tcp(web, lambda c, peer: (seen.append(peer[0]), c.sendall(b"web page")))
        inside = listen(g.pc, "192.168.50.10", 9999)
        serve_tcp(inside, lambda c, peer: c.sendall(f"you are {peer[0]}".encode()))
        # The LAN host browses out: the web server sees tunnat's outside address.
        out = g.sh(g.pc, ["curl", "-sS", "--max-time", "5", "telnet://10.99.0.1:80"], check_rc=False, timeout=10)
        eq(out.stdout, "web page", f"through the gateway: {out.stderr}")
        eq(seen, ["10.99.0.3"], "the source the Internet sees")
        # An Internet client reaches the port forward, and the LAN server sees it as it is.
        got = g.sh(g.isp, ["python3", "-c", "import socket; s = socket.create_connection(('10.99.0.3', 8888), 5); "
                           "print(s.recv(100).decode())"]).stdout.strip()
        eq(got, "you are 10.99.0.1", "port forward through the gateway")
        # The machine's own address is still its own, and traceroute shows tunnat.
        ping = g.sh(g.pc, ["ping", "-c", "1", "-W", "2", "192.168.50.1"]).stdout
        check(" 0% packet loss" in ping, ping)
        trace = g.sh(g.pc, ["traceroute", "-n", "-q", "1", "-w", "1", "10.99.0.1"], check_rc=False, timeout=30).stdout
        check("192.168.50.254" in trace, f"tunnat is a hop: {trace}")
        # No netfilter did any of it.
        rules = g.sh(g.gw, ["iptables-save"], check_rc=False).stdout
        check("-A " not in rules, f"no iptables rules: {rules}")
        g.stop()
        g.sh(g.gw, ["sh", GATEWAY, "down"], env=env)
        eq(g.sh(g.gw, ["ip", "rule", "show", "pref", "1000"]).stdout, "", "unwired")
    finally:
        g.close()
