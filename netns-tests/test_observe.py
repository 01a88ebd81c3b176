"""Seeing NAT work: the LOG-format trace (compared with the kernel's own LOG target),
pcap files, the control socket (table, stats, run-time DNAT) and config reload."""

import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import (refused, CLIENT, REMOTE, ROUTER_IN, ROUTER_OUT, SERVER_IN, TUNNAT, check, eq, recv_all,
                     run, serve_tcp, tunnat_args, wait_for, CONTROL)

COMPARED = ("SRC", "DST", "LEN", "TOS", "PREC", "TTL", "DF", "PROTO", "SPT", "DPT", "WINDOW", "RES", "SYN",
            "ACK", "URGP")


def fields(line):
    """The LOG line's fields as a dict (flags map to True)."""
    out = {}
    for tok in line.split():
        k, _, v = tok.partition("=")
        out[k] = v if _ else True
    return out


def kernel_log_lines(tag):
    return [l[l.index("PRE IN:") if "PRE IN:" in l else l.index("POST OUT:"):]
            for l in run(["dmesg"]).stdout.splitlines() if tag in l and ("PRE IN:" in l or "POST OUT:" in l)]


def kernel_router_syn(port):
    """The first seed scenario on the kernel: a SYN to 172.16.1.186:8888, DNAT to
    192.168.122.73:9999, logged by LOG rules in PREROUTING and POSTROUTING.
    Returns the (PRE IN, POST OUT) lines for the SYN."""
    p = f"kr{os.getpid() % 10000}"
    ns = {n: p + n for n in ("lan", "wan", "rtr")}
    sysctl = "/proc/sys/net/netfilter/nf_log_all_netns"
    old = open(sysctl).read().strip()
    try:
        for n in ns.values():
            run(["ip", "netns", "add", n])
        ex = lambda n, *c: run(["ip", "netns", "exec", ns[n], *c])  # noqa: E731
        run(["ip", "link", "add", p + "o", "netns", ns["rtr"], "type", "veth", "peer", "name", "eth0", "netns", ns["wan"]])
        run(["ip", "link", "add", p + "i", "netns", ns["rtr"], "type", "veth", "peer", "name", "eth0", "netns", ns["lan"]])
        ex("wan", "ip", "addr", "add", REMOTE + "/24", "dev", "eth0")
        ex("lan", "ip", "addr", "add", SERVER_IN + "/24", "dev", "eth0")
        ex("rtr", "ip", "addr", "add", ROUTER_OUT + "/24", "dev", p + "o")
        ex("rtr", "ip", "addr", "add", ROUTER_IN + "/24", "dev", p + "i")
        for n, dev in (("wan", "eth0"), ("lan", "eth0"), ("rtr", p + "o"), ("rtr", p + "i")):
            ex(n, "ip", "link", "set", dev, "up")
            ex(n, "ip", "link", "set", "lo", "up")
        ex("lan", "ip", "route", "add", "default", "via", ROUTER_IN)
        ex("rtr", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        with open(sysctl, "w") as f:
            f.write("1")
        ex("rtr", "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "LOG", "--log-prefix", "PRE IN: ")
        ex("rtr", "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8888", "-j", "DNAT",
           "--to-destination", SERVER_IN + ":9999")
        ex("rtr", "iptables", "-t", "nat", "-A", "POSTROUTING", "-p", "tcp", "-j", "LOG", "--log-prefix", "POST OUT: ")
        ex("wan", "python3", "-c", f"""
import socket
s = socket.socket(); s.bind(("{REMOTE}", {port})); s.settimeout(2)
try: s.connect(("{ROUTER_OUT}", 8888))
except OSError: pass
""")
        lines = kernel_log_lines(f"SPT={port} ")
        pre = [l for l in lines if l.startswith("PRE IN:") and " SYN " in l]
        post = [l for l in lines if l.startswith("POST OUT:") and " SYN " in l]
        check(pre and post, f"kernel LOG lines for the SYN: {lines}")
        return pre[0], post[0]
    finally:
        with open(sysctl, "w") as f:
            f.write(old)
        for n in ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


@tunnat_args("--dnat", "tcp:8888=192.168.122.73:9999", "--trace-filter", "tcp")
def test_trace_agrees_with_the_kernel_log_target(lab):
    port = 50270
    k_pre, k_post = kernel_router_syn(port)
    c = lab.sock("wan")
    c.bind((REMOTE, port))
    c.settimeout(2)
    try:
        c.connect((ROUTER_OUT, 8888))
    except OSError:
        pass
    eq(lab.stop(), 0, "tunnat exit")
    trace = [l for l in open(lab.trace_path).read().splitlines() if f"SPT={port} " in l and " SYN " in l]
    t_pre = next(l for l in trace if l.startswith("PRE IN:"))
    t_post = next(l for l in trace if l.startswith("POST OUT:"))
    for what, k, t in (("PRE IN", k_pre, t_pre), ("POST OUT", k_post, t_post)):
        kf, tf = fields(k), fields(t)
        for f in COMPARED:
            eq(tf.get(f), kf.get(f), f"{what} field {f} (kernel: {k!r}, tunnat: {t!r})")
    eq(fields(t_post)["DST"], SERVER_IN, "POST OUT shows the translated destination")
    eq(fields(t_post)["TTL"], "63", "POST OUT shows the decremented TTL")


@tunnat_args("--trace-filter", "udp:5555")
def test_trace_filter_selects_packets(lab):
    s = lab.sock("lan", socket.SOCK_DGRAM)
    s.sendto(b"a", (REMOTE, 5555))
    s.sendto(b"b", (REMOTE, 5556))
    lab.sh("lan", ["ping", "-c", "1", "-W", "1", REMOTE])
    lab.stop()
    lines = open(lab.trace_path).read().splitlines()
    eq(len(lines), 2, f"one PRE IN and one POST OUT line for the one matching datagram: {lines}")
    check(lines[0].startswith("PRE IN: IN=nat-in OUT= SRC=192.168.122.101 DST=172.16.1.1"), lines[0])
    check(lines[1].startswith("POST OUT: IN= OUT=nat-out SRC=172.16.1.186 DST=172.16.1.1"), lines[1])
    check("PROTO=UDP" in lines[1] and "DPT=5555 LEN=9" in lines[1], lines[1])


def test_pcap_files_read_by_tcpdump(lab):
    d = lab.tempdir("tunnat-pcap-")
    os.chmod(d, 0o755)
    lab.stop()
    lab.start(["--pcap-dir", d])
    lab.sh("lan", ["ping", "-c", "2", "-i", "0.2", "-W", "1", REMOTE])
    lab.stop()
    inside = run(["tcpdump", "-n", "-r", os.path.join(d, "inside.pcap")]).stdout
    outside = run(["tcpdump", "-n", "-r", os.path.join(d, "outside.pcap")]).stdout
    check(inside.count(f"{CLIENT} > {REMOTE}: ICMP echo request") == 2, inside)
    check(inside.count(f"{REMOTE} > {CLIENT}: ICMP echo reply") == 2, inside)
    check(outside.count(f"{ROUTER_OUT} > {REMOTE}: ICMP echo request") == 2, outside)
    check(outside.count(f"{REMOTE} > {ROUTER_OUT}: ICMP echo reply") == 2, outside)
    fields = run(["tshark", "-n", "-r", os.path.join(d, "outside.pcap"), "-Y", "icmp",
                  "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type"]).stdout.split("\n")
    eq([f for f in fields if f], [f"{ROUTER_OUT}\t{REMOTE}\t8", f"{REMOTE}\t{ROUTER_OUT}\t0"] * 2,
       "tshark decodes the outside capture")


def _comments(path):
    """(frame number, comment) of each packet of a pcapng file, as tshark reads them."""
    out = run(["tshark", "-n", "-r", path, "-T", "fields", "-e", "frame.number", "-e", "frame.comment"]).stdout
    return [tuple(l.split("\t", 1)) for l in out.splitlines() if l.strip()]


def test_paired_captures_tie_both_sides_of_each_translation(lab):
    d = lab.tempdir("tunnat-pair-")
    os.chmod(d, 0o755)
    lab.stop()
    lab.start(["--pcap-pair", d, "--dnat", "tcp:8888=192.168.122.73:9999"])
    srv = lab.listen("wan", REMOTE, 8080)
    serve_tcp(srv, lambda c, p: c.sendall(b"hi"))
    c = lab.connect("lan", REMOTE, 8080, bind=(CLIENT, 40555))
    eq(recv_all(c), b"hi", "the page")
    lab.sh("lan", ["ping", "-c", "1", "-W", "1", ROUTER_IN])
    lab.stop()
    inside = dict(_comments(os.path.join(d, "inside.pcapng")))
    outside = dict(_comments(os.path.join(d, "outside.pcapng")))
    session = f"session tcp {CLIENT}:40555 <-> {REMOTE}:8080 via {ROUTER_OUT}:40555"
    # The SYN: its inside frame names its outside frame, which names it back, with what
    # was rewritten and the session, as Wireshark shows in frame.comment.
    syn_in = next(n for n, c in inside.items() if c.startswith("-> outside #") and session in c)
    out_n = re.match(r"-> outside #(\d+): src ", inside[syn_in]).group(1)
    check(f"src {CLIENT}:40555 -> {ROUTER_OUT}:40555" in inside[syn_in], inside[syn_in])
    eq(outside[out_n].split(":", 1)[0], f"<- inside #{syn_in}", "the outside frame points back")
    check(session in outside[out_n], outside[out_n])
    # Replies from outside, translated the other way, belong to the same session.
    replies = [c for c in outside.values() if c.startswith("-> inside #")]
    check(replies and all(session in c and f"dst {ROUTER_OUT}:40555 -> {CLIENT}:40555" in c for c in replies),
          replies)
    # The ping to the router: answered by the router itself.
    check(any("the router's own answer" in c for c in inside.values()), inside)


@tunnat_args("--control", CONTROL)
def test_explain_says_what_the_data_path_then_does(lab):
    import json as _json
    srv = lab.listen("wan", REMOTE, 7000, kind=socket.SOCK_DGRAM)
    # The server takes port 41000 first, so the client's mapping cannot keep it.
    for host in (SERVER_IN, CLIENT):
        with lab.ns("lan"):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((host, 41000))
        if host == SERVER_IN:
            u.sendto(b"first", (REMOTE, 7000))
            srv.recvfrom(100)
            continue
        # Explained before it is sent: a new mapping on another port, and which.
        e = lab.ctl("explain", "inside", "udp", f"{CLIENT}:41000", f"{REMOTE}:7000").stdout
        m = re.search(r"via 172\.16\.1\.186:(\d+): a new mapping; port 41000 was taken", e)
        check(m is not None, f"explain must say the port was taken and name the new one:\n{e}")
        table0 = _json.loads(lab.ctl("table", "--json").stdout)["sessions"]
        check(not any(r["inside"] == f"{CLIENT}:41000" for r in table0), "explain changed nothing")
        u.sendto(b"second", (REMOTE, 7000))
        _, peer = srv.recvfrom(100)
        eq(peer, (ROUTER_OUT, int(m.group(1))), "the port explain named is the one the data path took")
    # Offline, from the options alone, over a capture: each packet in turn.
    d = lab.tempdir("tunnat-explain-")
    os.chmod(d, 0o755)
    lab.stop()
    lab.start(["--pcap-dir", d])
    lab.sh("lan", ["ping", "-c", "2", "-i", "0.2", "-W", "1", REMOTE])
    lab.stop()
    out = run([TUNNAT, *lab.args()[1:], "explain", "inside", "--pcap", os.path.join(d, "inside.pcap")]).stdout
    check(out.count("ping (echo request) from the inside port") == 2, out)
    check("a new session icmp" in out and "it belongs to the session icmp" in out, out)


def test_control_socket_table_stats_and_dnat(lab):
    lab.stop()
    lab.start(["--control", lab.control_path])
    srv = lab.listen("wan", REMOTE, 7000)
    serve_tcp(srv, lambda c, p: (c.sendall(b"hi"), time.sleep(1)))
    c = lab.connect("lan", REMOTE, 7000, bind=(CLIENT, 41000))
    eq(c.recv(2), b"hi", "connection open")
    out = lab.ctl("table").stdout
    row = [l for l in out.splitlines() if l.startswith("tcp")]
    check(len(row) == 1, out)
    for part in ("ESTABLISHED", f"{CLIENT}:41000", f"{ROUTER_OUT}:41000", f"{REMOTE}:7000", "7440s"):
        check(part in row[0], f"table row shows {part}: {row[0]}")
    js = json.loads(lab.ctl("table", "--json").stdout)
    eq(js["sessions"][0]["state"], "ESTABLISHED", "JSON table")
    stats = json.loads(lab.ctl("stats", "--json").stdout)
    check(stats["nat"]["forwarded_out"] >= 3 and stats["nat"]["sessions_created"] >= 1, stats)
    readable = lab.ctl("stats").stdout
    check(re.search(r"^nat\.forwarded_out\s+\d+$", readable, re.M), f"readable stats: {readable}")
    # Port forwarding added and removed at run time.
    refused(lambda: lab.connect("wan", ROUTER_OUT, 8888, timeout=2), "8888 open before the rule")
    srv2 = lab.listen("lan", SERVER_IN, 9999)
    serve_tcp(srv2, lambda c, p: c.sendall(b"forwarded"))
    lab.ctl("dnat", "add", "tcp:8888=192.168.122.73:9999")
    eq(lab.ctl("dnat", "list").stdout.strip(), "tcp:8888=192.168.122.73:9999  (added at run time)", "dnat list")
    eq(recv_all(lab.connect("wan", ROUTER_OUT, 8888)), b"forwarded", "rule works at once")
    bad = lab.ctl("dnat", "add", "tcp:8800-8900=192.168.122.5", check_rc=False)
    check(bad.returncode != 0 and "overlaps" in bad.stderr, bad.stderr)
    lab.ctl("dnat", "del", "tcp:8888=192.168.122.73:9999")
    refused(lambda: lab.connect("wan", ROUTER_OUT, 8888, timeout=2), "8888 still forwarded after dnat del")
    gone = lab.ctl("table", check_rc=False)
    lab.stop()
    eq(os.path.exists(lab.control_path), False, "socket removed at exit")
    check(gone.returncode == 0, gone.stderr)
    none = lab.ctl("table", check_rc=False)
    check(none.returncode != 0 and "is tunnat running" in none.stderr, none.stderr)


def test_config_file_flags_override_and_reload(lab):
    lab.stop()
    conf = lab.control_path + ".toml"
    base = f"""
dnat = ["tcp:8888=192.168.122.73:9999"]
control = "{lab.control_path}"
[timeouts]
udp = 100
"""
    open(conf, "w").write(base)
    try:
        lab.start(["--config", conf, "--udp-timeout", "200"])
        check("timeouts udp 200s" in lab.stderr(), "the flag overrides the file")
        srv = lab.listen("lan", SERVER_IN, 9999)
        serve_tcp(srv, lambda c, p: (c.sendall(b"x"), c.sendall(c.recv(100))))
        srv7 = lab.listen("lan", SERVER_IN, 7777)
        serve_tcp(srv7, lambda c, p: c.sendall(b"seven"))
        held = lab.connect("wan", ROUTER_OUT, 8888)
        eq(held.recv(1), b"x", "rule from the file works")
        lab.sh("lan", ["ping", "-c", "1", "-W", "1", REMOTE])
        icmp_row = lambda: next(l for l in lab.ctl("table").stdout.splitlines() if l.startswith("icmp"))  # noqa: E731
        check(" 60s " in icmp_row(), icmp_row())
        # Change the rules; SIGHUP applies them, the open connection keeps its session.
        open(conf, "w").write(base.replace("tcp:8888=192.168.122.73:9999", "tcp:7777=192.168.122.73")
                              + "icmp = 30\n")
        lab.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded: 1 dnat rule(s)" in lab.stderr(), 3, "the reload")
        eq(recv_all(lab.connect("wan", ROUTER_OUT, 7777)), b"seven", "new rule after SIGHUP")
        refused(lambda: lab.connect("wan", ROUTER_OUT, 8888, timeout=2), "old rule still in force")
        check(" 30s " in icmp_row(), f"the new ICMP timeout applies to the existing session: {icmp_row()}")
        check(any("8888" in l and "[dnat]" in l for l in lab.ctl("table").stdout.splitlines()),
              "the session of the old rule is kept")
        held.sendall(b"still here")
        eq(held.recv(100), b"still here", "the connection opened under the old rule still works")
        # A bad file is refused and the old configuration stays.
        open(conf, "w").write("dnat = [\"tcp:1=\"\n")
        r = lab.ctl("reload", check_rc=False)
        check(r.returncode != 0 and lab.control_path + ".toml" in r.stderr, r.stderr)
        eq(recv_all(lab.connect("wan", ROUTER_OUT, 7777)), b"seven", "old configuration still in force")
        # A change that needs a restart is refused too.
        open(conf, "w").write("mtu = 1400\n" + base)
        r = lab.ctl("reload", check_rc=False)
        check(r.returncode != 0 and "restart" in r.stderr, r.stderr)
        # A good file again, through the control socket this time.
        open(conf, "w").write(base)
        check("reloaded" in lab.ctl("reload").stdout, "reload through the control socket")
    finally:
        os.unlink(conf)


def test_log_levels(lab):
    lab.stop()
    lab.start(env={"RUST_LOG": "warn"})
    check("tunnat 0.1.0" not in lab.stderr(), "no banner at warn level")
    lab.stop()
    lab.start(env={"RUST_LOG": "info"})
    check(re.search(r"INFO.*tunnat \d+\.\d+\.\d+: inside nat-in", lab.stderr()), "banner at info level")


@tunnat_args("--control", CONTROL)
def test_stalled_control_clients_do_not_pause_forwarding(lab):
    """Control clients that connect and send nothing are served without blocking: packets
    keep flowing at once, and they are dropped after 2 s so a real client gets its turn."""
    stalled = []
    for _ in range(20):
        u = socket.socket(socket.AF_UNIX)
        u.connect(lab.control_path)
        stalled.append(u)
    srv = lab.listen("wan", REMOTE, 7400, socket.SOCK_DGRAM)
    c = lab.sock("lan", socket.SOCK_DGRAM)
    c.settimeout(1)
    slowest = 0
    for i in range(20):
        t0 = time.time()
        c.sendto(b"%d" % i, (REMOTE, 7400))
        _, peer = srv.recvfrom(10)
        srv.sendto(b"ok", peer)
        eq(c.recv(10), b"ok", "echo")
        slowest = max(slowest, time.time() - t0)
    check(slowest < 0.2, f"a round trip took {slowest:.2f}s with stalled control clients")
    t0 = time.time()
    out = lab.ctl("stats").stdout
    took = time.time() - t0
    check("nat.forwarded_out" in out and took < 1, f"stats answered in {took:.1f}s")
    for u in stalled:
        u.settimeout(4)
        eq(u.recv(10), b"", "a stalled control client is dropped after its 2 s")
        u.close()
