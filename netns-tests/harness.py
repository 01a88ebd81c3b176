"""A small harness for end-to-end tests: network namespaces, a tunnat between them, and
helpers to drive real clients and sockets on either side.

Topology (as in scripts/lab.sh, with per-test namespace names):

    <p>lan: nat-in  192.168.122.101/24, 192.168.122.73/24   default dev nat-in
    <p>wan: nat-out 172.16.1.1/24, 172.16.1.2/24 (two outside hosts)
    tunnat: inside 192.168.122.100/24, outside 172.16.1.186/24

Sockets are opened inside a namespace by entering it with setns(2) on the calling thread
(`with lab.ns("lan"): ...`); a socket stays in the namespace it was created in.
"""

import contextlib
import ctypes
import os
import signal
import socket
import struct
import shutil
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNNAT = os.environ.get("TUNNAT", os.path.join(ROOT, "target", "release", "tunnat"))

CLIENT = "192.168.122.101"
SERVER_IN = "192.168.122.73"
ROUTER_IN = "192.168.122.100"
ROUTER_OUT = "172.16.1.186"
REMOTE = "172.16.1.1"
REMOTE2 = "172.16.1.2"

# The dual-stack lab's IPv6 addresses (Lab(dual=True)): a ULA inside, the documentation
# prefix outside (both only ever inside the lab's namespaces).
CLIENT6 = "fd00:122::101"
SERVER_IN6 = "fd00:122::73"
ROUTER_IN6 = "fd00:122::100"
ROUTER_OUT6 = "2001:db8:1::186"
REMOTE6 = "2001:db8:1::1"
REMOTE26 = "2001:db8:1::2"

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


CONTROL = "@control"  # in tunnat_args: this lab's control socket path


def tunnat_args(*a):
    """Decorates a test with extra tunnat options for its lab (CONTROL stands for the
    lab's control socket path)."""
    def deco(fn):
        fn.tunnat_args = a
        return fn
    return deco


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def refused(action, failure):
    """Asserts that `action()` is refused (TCP RST or ICMP unreachable seen by the socket)."""
    try:
        action()
    except ConnectionRefusedError:
        return
    raise Failure(failure)


def silent(action, failure):
    """Asserts that `action()` (a receive) times out: nothing arrived."""
    try:
        action()
    except socket.timeout:
        return
    raise Failure(failure)


def run(cmd, timeout=20, check_rc=True, **kw):
    """Runs a command, returns CompletedProcess with text output."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p


class Lab:
    counter = 0

    def __init__(self, extra_args=(), start=True, outside_mtu=None, dual=False, nat64=None):
        Lab.counter += 1
        self.prefix = f"tn{os.getpid() % 100000}x{Lab.counter}"
        self.lan = self.prefix + "lan"
        self.wan = self.prefix + "wan"
        self.proc = None
        self.log_path = f"/tmp/{self.prefix}-tunnat.log"
        self.trace_path = f"/tmp/{self.prefix}-trace.log"
        self.control_path = f"/tmp/{self.prefix}.sock"
        # The prefix comes back with the process number, so a run may meet files that an
        # earlier one with the same number left (killed, say): a lab starts with none.
        for p in (self.log_path, self.trace_path, self.control_path, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        self.bg = []
        self.tmpdirs = []  # removed at close, whatever the test left in them
        self.extra_ns = []  # namespaces a test added (far_network), deleted at close
        self.extra_args = tuple(extra_args)
        self.dual = dual
        # NAT64 (a prefix): the inside has only IPv6, the outside only IPv4.
        self.nat64 = nat64
        self.p64 = nat64.split("/")[0] if nat64 else None  # the prefix, to write addresses
        self._build(outside_mtu)
        if start:
            self.start(extra_args)

    @property
    def state_path(self):
        """A test's state file (--state-file), removed at close like the logs."""
        return f"/tmp/{self.prefix}.state"

    # -- topology ---------------------------------------------------------------------
    def _ip(self, ns, *args):
        run(["ip", "-n", ns, *args])

    def _build(self, outside_mtu):
        for ns in (self.lan, self.wan):
            run(["ip", "netns", "add", ns])
            self._ip(ns, "link", "set", "lo", "up")
        self._ip(self.lan, "tuntap", "add", "dev", "nat-in", "mode", "tun")
        self._ip(self.wan, "tuntap", "add", "dev", "nat-out", "mode", "tun")
        if outside_mtu:
            self._ip(self.wan, "link", "set", "nat-out", "mtu", str(outside_mtu))
        self.wire("lan")
        self.wire("wan")

    def wire(self, side):
        """Gives the TUN of `side` (which must exist) the lab's addresses and routes."""
        if side == "lan" and self.nat64:
            for a in (CLIENT6, SERVER_IN6):
                self._ip(self.lan, "addr", "add", a + "/64", "dev", "nat-in", "nodad")
            self._ip(self.lan, "link", "set", "nat-in", "up")
            self._ip(self.lan, "-6", "route", "add", "default", "dev", "nat-in")
        elif side == "lan":
            for a in (CLIENT, SERVER_IN):
                self._ip(self.lan, "addr", "add", a + "/24", "dev", "nat-in")
            if self.dual:
                for a in (CLIENT6, SERVER_IN6):
                    self._ip(self.lan, "addr", "add", a + "/64", "dev", "nat-in", "nodad")
            self._ip(self.lan, "link", "set", "nat-in", "up")
            self._ip(self.lan, "route", "add", "default", "dev", "nat-in")
            if self.dual:
                self._ip(self.lan, "-6", "route", "add", "default", "dev", "nat-in")
        else:
            for a in (REMOTE, REMOTE2):
                self._ip(self.wan, "addr", "add", a + "/24", "dev", "nat-out")
            if self.dual:
                for a in (REMOTE6, REMOTE26):
                    self._ip(self.wan, "addr", "add", a + "/64", "dev", "nat-out", "nodad")
            self._ip(self.wan, "link", "set", "nat-out", "up")
            # The outside hosts know nothing of the inside network (no route to it).

    def args(self, extra=()):
        v4 = getattr(self, "v4", True)  # False: an IPv6-only router
        if self.nat64:
            return [
                TUNNAT,
                "--inside-tun", "nat-in", "--inside-netns", self.lan,
                "--inside-addr", ROUTER_IN6 + "/64",
                "--outside-tun", "nat-out", "--outside-netns", self.wan,
                "--outside-addr", ROUTER_OUT + "/24",
                "--nat64", self.nat64,
                *(self.control_path if a == CONTROL else a for a in extra),
            ]
        return [
            TUNNAT,
            "--inside-tun", "nat-in", "--inside-netns", self.lan,
            *(["--inside-addr", ROUTER_IN + "/24"] if v4 else []),
            "--outside-tun", "nat-out", "--outside-netns", self.wan,
            *(["--outside-addr", ROUTER_OUT + "/24"] if v4 else []),
            *(["--inside-addr", ROUTER_IN6 + "/64", "--outside-addr", ROUTER_OUT6 + "/64"] if self.dual else []),
            *(self.control_path if a == CONTROL else a for a in extra),
        ]

    def start(self, extra=(), env=None):
        e = dict(os.environ)
        e.setdefault("RUST_LOG", "debug")
        if env:
            e.update(env)
        self.log = open(self.log_path, "w+")
        self.trace = open(self.trace_path, "w")
        self.proc = subprocess.Popen(self.args(extra), stderr=self.log, stdout=self.trace, env=e)
        deadline = time.time() + 10
        while time.time() < deadline:
            if "tunnat: ready" in self.stderr():
                return
            if self.proc.poll() is not None:
                raise Failure(f"tunnat exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.02)
        raise Failure("tunnat did not print 'tunnat: ready' within 10 s")

    def ctl(self, *args, check_rc=True):
        """Runs `tunnat ARGS --control` against this lab's router (started with --control)."""
        return run([TUNNAT, *args, "--control", self.control_path], check_rc=check_rc)

    def stats(self):
        """tunnat's counters (the lab must run with --control CONTROL), as a dict."""
        import json
        return json.loads(self.ctl("stats", "--json").stdout)

    def port_maps(self):
        """The port mappings the inside hosts made (PCP, NAT-PMP, UPnP), as rules."""
        out = self.ctl("dnat", "list").stdout
        return sorted(line.split()[0] for line in out.splitlines() if " by " in line)

    def drops(self):
        """The drop counters by reason."""
        return self.stats()["nat"]["drops"]

    def peak_rss_kb(self):
        """tunnat's peak resident set size so far (VmHWM), in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmHWM")).split()[1])

    def stderr(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        """Stops tunnat with `sig`; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise Failure(f"tunnat did not exit within 5 s of signal {sig}")

    def close(self):
        for p in self.bg:
            with contextlib.suppress(Exception):
                p.kill()
                p.wait(2)
        with contextlib.suppress(Exception):
            self.stop()
        for ns in (self.lan, self.wan):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for p in (self.log_path, self.trace_path, self.state_path):
            with contextlib.suppress(Exception):
                os.unlink(p)
        self.remove_extras()

    def tempdir(self, prefix):
        """A fresh directory under /tmp, removed with everything in it when the lab closes."""
        d = tempfile.mkdtemp(prefix=prefix)
        self.tmpdirs.append(d)
        return d

    def remove_extras(self):
        """Removes what tempdir() and far_network() made."""
        for d in self.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
        self.tmpdirs = []
        for ns in self.extra_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.extra_ns = []

    def far_network(self, mtu=None):
        """A third namespace, 10.9.9.0/24, behind the outside hosts' namespace, which
        routes to it: an IPv4 router hop beyond the router (10.9.9.254), the far host at
        10.9.9.1. With `mtu`, the hop's side of the link has that MTU, so packets towards
        the far host larger than it get "fragmentation needed" from the hop, while the far
        host's own MTU (1500) still sets the MSS it offers. Deleted at close."""
        far = self.prefix + "far"
        run(["ip", "netns", "add", far])
        self.extra_ns.append(far)
        run(["ip", "link", "add", "to-far", "netns", self.wan, "type", "veth", "peer", "name", "eth0", "netns", far])
        run(["ip", "-n", self.wan, "addr", "add", "10.9.9.254/24", "dev", "to-far"])
        run(["ip", "-n", far, "addr", "add", "10.9.9.1/24", "dev", "eth0"])
        for ns, dev in ((self.wan, "to-far"), (far, "eth0"), (far, "lo")):
            if mtu and dev == "to-far":
                run(["ip", "-n", ns, "link", "set", dev, "mtu", str(mtu)])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", far, "route", "add", "default", "via", "10.9.9.254"])
        run(["ip", "netns", "exec", self.wan, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        return far

    # -- running things in a namespace -------------------------------------------------
    def nsname(self, side):
        return {"lan": self.lan, "wan": self.wan}[side]

    @contextlib.contextmanager
    def ns(self, side):
        """Runs the block with this thread in namespace `side` ("lan" or "wan")."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.nsname(side)}", os.O_RDONLY)
        try:
            _setns(target)
            yield
        finally:
            _setns(home)
            os.close(home)
            os.close(target)

    def sh(self, side, cmd, timeout=20, check_rc=True):
        return run(["ip", "netns", "exec", self.nsname(side), *cmd], timeout=timeout, check_rc=check_rc)

    def spawn(self, side, cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.nsname(side), *cmd],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        self.bg.append(p)
        return p

    def sock(self, side, kind=socket.SOCK_STREAM, proto=0, family=socket.AF_INET):
        with self.ns(side):
            return socket.socket(family, kind, proto)

    def connect(self, side, addr, port, timeout=3, bind=None):
        """A TCP connection from namespace `side` (IPv6 if `addr` is)."""
        with self.ns(side):
            s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
            s.settimeout(timeout)
            if bind:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(bind)
            s.connect((addr, port))
            return s

    def listen(self, side, addr, port, kind=socket.SOCK_STREAM):
        """A listening TCP (or bound UDP) socket in namespace `side` (IPv6 if `addr` is)."""
        with self.ns(side):
            s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            if kind == socket.SOCK_STREAM:
                s.listen(64)
            s.settimeout(3)
            return s

    # The IPv6 tests' names for the same.
    connect6 = connect
    listen6 = listen

    def sniffer(self, side):
        """An AF_PACKET socket on the TUN of `side`: sees what tunnat writes and reads."""
        dev = "nat-in" if side == "lan" else "nat-out"
        with self.ns(side):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
            s.bind((dev, 0))
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.settimeout(0.2)
            return s


def serve_tcp(sock, handler):
    """Accepts connections on `sock` in a thread, calling handler(conn, peer) for each."""
    def loop():
        while True:
            try:
                c, peer = sock.accept()
            except (socket.timeout, OSError):
                if sock.fileno() < 0:
                    return
                continue
            with contextlib.suppress(Exception):
                handler(c, peer)
            with contextlib.suppress(Exception):
                c.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def echo(c, peer=None):
    """A serve_tcp handler: sends back every byte connection `c` brings until the peer
    closes its side (10 s at most between reads)."""
    c.settimeout(10)
    while True:
        b = c.recv(65536)
        if not b:
            return
        c.sendall(b)


def recv_all(s, limit=1 << 20):
    d = b""
    while len(d) < limit:
        x = s.recv(65536)
        if not x:
            break
        d += x
    return d


# -- packet helpers -----------------------------------------------------------------------
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def parse_ip(pkt):
    """Returns a dict of the IPv4 header fields and the transport payload."""
    ihl = (pkt[0] & 15) * 4
    total = struct.unpack("!H", pkt[2:4])[0]
    return {
        "ihl": ihl, "total": total, "ttl": pkt[8], "proto": pkt[9],
        "src": socket.inet_ntoa(pkt[12:16]), "dst": socket.inet_ntoa(pkt[16:20]),
        "header": pkt[:ihl], "l4": pkt[ihl:total],
    }


def l4_checksum_ok(ip):
    """Does the transport checksum verify? For a packet whose checksum the kernel has left
    partial (TUN offloads; `partial` from the sniffer's auxdata), the field must hold the
    pseudo-header sum, so that completing it gives the right checksum."""
    l4 = ip["l4"]
    pseudo = socket.inet_aton(ip["src"]) + socket.inet_aton(ip["dst"]) + struct.pack("!BBH", 0, ip["proto"], len(l4))
    if ip.get("partial"):
        at = {6: 16, 17: 6}[ip["proto"]]
        field = struct.unpack("!H", l4[at:at + 2])[0]
        want = ~csum(pseudo) & 0xFFFF
        return field == want or {field, want} == {0, 0xFFFF}
    if ip["proto"] == 1:
        return csum(l4) == 0
    if ip["proto"] == 17 and l4[6:8] == b"\0\0":
        return True
    return csum(pseudo + l4) == 0


SOL_PACKET, PACKET_AUXDATA, TP_STATUS_CSUMNOTREADY = 263, 8, 1 << 3


def sniffed(sock):
    """One packet from a sniffer, parsed; `partial` says the kernel holds it with its
    transport checksum still to be completed (CHECKSUM_PARTIAL, from TUN offloads)."""
    pkt, anc, _, _ = sock.recvmsg(65536, 64)
    ip = parse_ip(pkt)
    for level, kind, data in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA:
            ip["partial"] = bool(struct.unpack_from("=I", data)[0] & TP_STATUS_CSUMNOTREADY)
    return ip


def sniff(sock, match, timeout=3):
    """Returns the first packet (parsed) for which match(ip) is true."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ip = sniffed(sock)
        except socket.timeout:
            continue
        if match(ip):
            return ip
    raise Failure("expected packet not seen")


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise Failure(f"timed out waiting for {what}")
