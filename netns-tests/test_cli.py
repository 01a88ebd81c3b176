"""Start-up: the ready line, refusals naming the problem, clean exit on signals."""

import signal
import tempfile

from harness import CONTROL, TUNNAT, check, eq, run, tunnat_args


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
