"""A restart need not break anything: persistent TUN devices keep the namespaces'
addresses and routes (--persist), the state file carries the sessions and the runtime port
forwards over (--state-file), and with --persist a lost device is awaited and reattached."""

import json
import os
import stat
import threading
import time

from harness import (CLIENT, CONTROL, REMOTE, ROUTER_OUT, SERVER_IN, check, eq, run, tunnat_args,
                     wait_for)


def state_path(lab):
    return lab.state_path


def echo_server(sock):
    """Echoes every byte on each connection accepted on `sock`, until it closes."""
    def conn(c):
        c.settimeout(None)
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                return
            if not d:
                return
            c.sendall(d)

    def loop():
        sock.settimeout(None)
        while True:
            try:
                c, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=conn, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def echoed(s, data, timeout=10):
    """Sends `data` on `s` and returns what comes back (an RST raises)."""
    s.settimeout(timeout)
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        d = s.recv(65536)
        if not d:
            break
        got += d
    return got


def exists(lab, side, dev):
    return lab.sh(side, ["ip", "link", "show", dev], check_rc=False).returncode == 0


def test_persist_keeps_the_devices_and_their_addresses_across_a_restart(lab):
    lab.stop()
    # Devices tunnat creates itself: without --persist they go when it exits.
    lab.sh("lan", ["ip", "link", "del", "nat-in"])
    lab.sh("wan", ["ip", "link", "del", "nat-out"])
    lab.start()
    lab.stop()
    check(not exists(lab, "lan", "nat-in"), "a device tunnat created outlived it without --persist")
    lab.start(["--persist"])
    lab.wire("lan")
    lab.wire("wan")
    srv = lab.listen("wan", REMOTE, 7000)
    echo_server(srv)
    eq(echoed(lab.connect("lan", REMOTE, 7000), b"before"), b"before", "through the new devices")
    eq(lab.stop(), 0, "exit code")
    check("the TUN devices stay (--persist)" in lab.stderr(), lab.stderr()[-300:])
    addrs = lab.sh("lan", ["ip", "-o", "addr", "show", "dev", "nat-in"]).stdout
    check(CLIENT in addrs, f"the inside host's address went with tunnat: {addrs}")
    check("default dev nat-in" in lab.sh("lan", ["ip", "route"]).stdout, "the default route went")
    lab.start(["--persist"])
    eq(echoed(lab.connect("lan", REMOTE, 7000), b"after"), b"after", "after the restart, no rewiring")


def test_connections_survive_a_restart_with_persist_and_a_state_file(lab):
    path = state_path(lab)
    args = ["--persist", "--state-file", path, "--control", lab.control_path,
            "--dnat", "tcp:8888=192.168.122.73:9999"]
    lab.stop()
    lab.start(args)
    out_srv = lab.listen("wan", REMOTE, 7000)
    echo_server(out_srv)
    in_srv = lab.listen("lan", SERVER_IN, 9999)
    echo_server(in_srv)
    napt = lab.connect("lan", REMOTE, 7000)
    dnat = lab.connect("wan", ROUTER_OUT, 8888)
    eq(echoed(napt, b"napt-1"), b"napt-1", "NAPT before")
    eq(echoed(dnat, b"dnat-1"), b"dnat-1", "DNAT before")
    lab.ctl("dnat", "add", "udp:5000=192.168.122.73")
    before = {r["inside"]: r for r in json.loads(lab.ctl("table", "--json").stdout)["sessions"]}
    eq(lab.stop(), 0, "exit code")
    check(os.path.exists(path), "no state file written at SIGTERM")
    eq(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o600), "state file mode")
    lines = open(path).read().splitlines()
    head = json.loads(lines[0])
    eq((head["format"], head["version"], head["sessions"]), ("tunnat-state", 1, 2), "header")
    eq(head["dnat"], ["udp:5000=192.168.122.73"], "runtime rules saved")
    # Data sent while the router is down waits in the hosts' TCP retransmissions.
    napt.sendall(b"while-")
    dnat.sendall(b"while-")
    time.sleep(0.5)
    lab.start(args)
    err = lab.stderr()
    check("2 session(s) restored" in err, err[-600:])
    check(not os.path.exists(path), "the state file is used once: removed after reading")
    eq(echoed(napt, b"stopped"), b"while-stopped", "NAPT data sent while stopped, then after")
    eq(echoed(dnat, b"stopped"), b"while-stopped", "DNAT data sent while stopped, then after")
    for i in range(3):
        eq(echoed(napt, b"napt-%d" % i), b"napt-%d" % i, "NAPT after the restart")
        eq(echoed(dnat, b"dnat-%d" % i), b"dnat-%d" % i, "DNAT after the restart")
    after = {r["inside"]: r for r in json.loads(lab.ctl("table", "--json").stdout)["sessions"]}
    eq(sorted(after), sorted(before), "the same sessions")
    for k, r in after.items():
        eq(r["outside"], before[k]["outside"], f"{k}: the same external port")
        eq(r["state"], "ESTABLISHED", f"{k}: state")
        check(r["packets_out"] > before[k]["packets_out"], f"{k}: counters carried on: {r}")
    check("tcp:5000" not in lab.ctl("dnat", "list").stdout, "wrong protocol")
    check("udp:5000=192.168.122.73  (added at run time)" in lab.ctl("dnat", "list").stdout,
          "the runtime rule came back")


def test_a_state_file_that_cannot_be_trusted_is_refused_and_kept(lab):
    path = state_path(lab)
    lab.stop()
    lab.start(["--state-file", path])
    lab.sh("lan", ["ping", "-c", "1", "-W", "2", REMOTE])
    eq(lab.stop(), 0, "exit code")
    good = open(path).read()
    cases = [
        (good[: len(good) // 2], "--state-file " + path + ": line 2: not a session"),
        (good.replace('"version":1', '"version":7'), "format version 7, this tunnat reads version 1"),
        (good.replace("172.16.1.186/24", "172.16.1.187/24"), "saved by a router with inside"),
    ]
    for text, want in cases:
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        p = run(lab.args(["--state-file", path]), check_rc=False, timeout=10)
        check(p.returncode != 0 and "tunnat: ready" not in p.stderr, f"started on a bad state file: {p.stderr}")
        check(want in p.stderr, f"{want!r} not in {p.stderr!r}")
        eq(open(path).read(), text, "a refused file is left as it was")
    with open(path, "w") as f:
        f.write(good)
    os.chmod(path, 0o666)
    p = run(lab.args(["--state-file", path]), check_rc=False, timeout=10)
    check(p.returncode != 0 and "lets others write it" in p.stderr, p.stderr)
    os.chmod(path, 0o600)
    p = run(lab.args(["--state-file", "/nonexistent-dir/state"]), check_rc=False, timeout=10)
    check(p.returncode != 0 and "does not exist" in p.stderr, p.stderr)
    lab.start(["--state-file", path])
    check("1 session(s) restored" in lab.stderr(), lab.stderr()[-400:])


@tunnat_args("--persist", "--control", CONTROL)
def test_with_persist_a_lost_port_is_awaited_and_reattached(lab):
    lab.sh("lan", ["ip", "link", "del", "nat-in"])
    wait_for(lambda: lab.stats()["io"]["ports_down"] == 1, 3, "the lost port is counted as down")
    time.sleep(1.5)
    check(lab.proc.poll() is None, "tunnat exited although --persist waits for the device")
    check("waiting for a TUN named 'nat-in'" in lab.stderr(), lab.stderr()[-400:])
    # The other port runs on: the router still answers on its outside address.
    out = lab.sh("wan", ["ping", "-c", "1", "-W", "2", ROUTER_OUT]).stdout
    check(" 0% packet loss" in out, out)
    # An administrator puts the device back; tunnat attaches to it, not a copy of its own.
    lab._ip(lab.lan, "tuntap", "add", "dev", "nat-in", "mode", "tun")
    lab.wire("lan")
    wait_for(lambda: lab.stats()["io"]["ports_reattached"] == 1, 5, "the port is back")
    out = lab.sh("lan", ["ping", "-c", "2", "-i", "0.2", "-W", "2", REMOTE]).stdout
    check(" 0% packet loss" in out, f"forwarding through the reattached port: {out}")
    eq(lab.stats()["io"]["ports_down"], 0, "ports down")
    check("inside port back" in lab.stderr(), lab.stderr()[-400:])
