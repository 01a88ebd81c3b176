"""Start-up: the ready line, refusals naming the problem, clean exit on signals."""

import os
import shutil
import signal
import socket
import tempfile

from harness import CONTROL, ROOT, ROUTER_IN, TUNNAT, check, eq, run, tunnat_args


def refuse(args, *needles, user=None):
    cmd = [TUNNAT, *args]
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", *cmd]
    p = run(cmd, check_rc=False, timeout=10)
    check(p.returncode != 0, f"{args}: should fail, exited 0")
    for n in needles:
        check(n in p.stderr, f"{args}: message should mention {n!r}: {p.stderr!r}")
    return p.stderr


BASE = ["--inside-tun", "tnx-in", "--inside-addr", "192.168.122.100/24",
        "--outside-tun", "tnx-out", "--outside-addr", "172.16.1.186/24"]


def with_(**over):
    a = list(BASE)
    for k, v in over.items():
        flag = "--" + k.replace("_", "-")
        if flag in a:
            a[a.index(flag) + 1] = v
        else:
            a += [flag, v]
    return a


def test_bad_options_are_refused_with_a_reason():
    refuse(with_(inside_addr="192.168.122.300/24"), "192.168.122.300", "not an IPv4 address")
    refuse(with_(inside_addr="192.168.122.100"), "ADDRESS/PREFIX")
    refuse(with_(outside_addr="172.16.1.186/33"), "prefix '33'")
    refuse(BASE + ["--dnat", "tcp:8000-9000=192.168.122.73", "--dnat", "tcp:8888=192.168.122.74:9999"],
           "overlaps")
    refuse(BASE + ["--dnat", "tcp:80=10.0.0.1"], "not on the inside network")
    refuse(BASE + ["--dnat", "icmp:1=192.168.122.5"], "not tcp or udp")
    refuse(with_(inside_netns="no-such-netns-here"), "/run/netns/no-such-netns-here does not exist")
    refuse(with_(outside_addr="192.168.122.1/24"), "overlap")
    refuse(with_(mtu="100"), "--mtu 100")
    refuse(with_(coalesce_us="5000"), "--coalesce-us 5000", "at most 1000")
    refuse(with_(io_buffers="12"), "--io-buffers 12", "a power of two from 8 to 128")
    refuse(with_(io_buffers="256"), "--io-buffers 256", "a power of two from 8 to 128")
    refuse(BASE + ["--filtering", "strict"], "endpoint-independent")
    refuse(BASE + ["--policy-file", "/nonexistent/policy.xml"], "/nonexistent/policy.xml")
    refuse(with_(inside_tun="a-name-far-too-long-for-linux"), "not a valid interface name")


def test_no_permission_on_dev_net_tun():
    # An ordinary user without namespaces of its own may not create TUN devices.
    err = refuse(BASE, "no permission", "/dev/net/tun", user="65534")
    check("inside port" in err, err)


def test_ready_line_and_clean_exit_on_sigterm_and_sigint(lab):
    check("tunnat: ready" in lab.stderr(), "ready line")
    eq(lab.stop(signal.SIGTERM), 0, "exit code after SIGTERM")
    check("SIGTERM: stopping" in lab.stderr(), "says why it stops")
    lab.start()
    eq(lab.stop(signal.SIGINT), 0, "exit code after SIGINT")
    # The TUN devices it attached to are still there for the next run (the lab made them).
    out = lab.sh("lan", ["ip", "link", "show", "nat-in"]).stdout
    check("nat-in" in out, out)


def test_creates_missing_tun_devices(lab):
    lab.stop()
    lab.sh("lan", ["ip", "link", "del", "nat-in"])
    lab.start()
    out = lab.sh("lan", ["ip", "-d", "link", "show", "nat-in"]).stdout
    check("tun" in out and "UP" in out, f"tunnat created nat-in and set it up: {out}")


@tunnat_args("--control", CONTROL)
def test_the_control_socket_may_be_named_before_the_subcommand_or_by_the_config(lab):
    sock = lab.control_path
    for args in (["stats", "--control", sock], ["--control", sock, "stats"]):
        out = run([TUNNAT, *args]).stdout
        check("nat.forwarded_out" in out, f"{args}: {out[:200]}")
        # Readable, one number a line: the policy servers' counters too, no JSON.
        check("policy.outside.served" in out and "{" not in out and "[" not in out, out)
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(f'control = "{sock}"\n')
        f.flush()
        out = run([TUNNAT, "--config", f.name, "dnat", "list"]).stdout
        eq(out.strip(), "", "dnat list through the config file's socket")
    refuse(["--inside-tun", "x", "stats"], "--inside-tun is an option of the router")


def test_systemd_is_told_when_the_ports_are_up_and_the_unit_file_is_valid(lab):
    """Type=notify: READY=1 once both TUNs are open, STOPPING=1 at SIGTERM, as sd_notify."""
    lab.stop()
    path = f"/tmp/{lab.prefix}.notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    try:
        lab.start(env={"NOTIFY_SOCKET": path})
        msg = s.recv(4096).decode()
        check(msg.startswith("READY=1\n") and "STATUS=forwarding between nat-in and nat-out" in msg, msg)
        # The ports were up when it said so.
        out = lab.sh("lan", ["ping", "-c", "1", "-W", "2", ROUTER_IN]).stdout
        check(" 0% packet loss" in out, out)
        eq(lab.stop(), 0, "exit code")
        eq(s.recv(4096).decode(), "STOPPING=1", "told at stop")
    finally:
        s.close()
        os.unlink(path)
    if shutil.which("systemd-analyze"):
        unit = open(os.path.join(ROOT, "contrib", "tunnat.service")).read()
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "tunnat.service")
            with open(f, "w") as out:
                out.write(unit.replace("/usr/local/bin/tunnat", TUNNAT))
            p = run(["systemd-analyze", "verify", "--man=no", f], check_rc=False)
            check(p.returncode == 0 and not p.stderr.strip(), f"systemd-analyze verify: {p.stdout}{p.stderr}")
