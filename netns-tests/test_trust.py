"""Faults and local trust: a lost port ends the process, the control socket and the pcap
files cannot be turned against the files and users of the machine, a closed pipe ends a
client quietly."""

import os
import socket
import stat
import subprocess
import tempfile
import time

from harness import CLIENT, CONTROL, REMOTE, TUNNAT, check, eq, run, tunnat_args, wait_for


def test_a_lost_port_ends_the_router_with_a_message_naming_it(lab):
    lab.sh("lan", ["ip", "link", "del", "nat-in"])
    t0 = time.time()
    while lab.proc.poll() is None and time.time() - t0 < 3:
        time.sleep(0.02)
    took = time.time() - t0
    rc = lab.proc.poll()
    check(rc is not None and took < 1.0, f"tunnat still running {took:.1f} s after its inside TUN went")
    check(rc != 0, f"exit code {rc}: a supervisor must see a failure")
    err = lab.stderr()
    check("inside port lost" in err and "nat-in" in err, err[-400:])


def test_control_path_that_is_not_a_socket_is_never_removed(lab):
    lab.stop()
    fd, path = tempfile.mkstemp(prefix="tunnat-not-a-socket-")
    os.write(fd, b"precious")
    os.close(fd)
    try:
        p = run(lab.args(["--control", path]), check_rc=False, timeout=10)
        check(p.returncode != 0, "tunnat started on a regular file")
        check("not a socket" in p.stderr and path in p.stderr, p.stderr)
        eq(open(path, "rb").read(), b"precious", "the file is untouched")
    finally:
        os.unlink(path)
    # A stale socket (nothing listening) is replaced.
    stale = lab.control_path
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    lab.start(["--control", stale])
    check("nat.forwarded_out" in lab.ctl("stats").stdout, "serving on the replaced socket")


def test_control_socket_is_0660_and_only_trusted_users_change_the_router(lab):
    lab.stop()
    old = os.umask(0)  # tunnat inherits a umask that would make the socket world-writable
    try:
        lab.start(["--control", lab.control_path])
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(lab.control_path).st_mode)
    eq(oct(mode), oct(0o660), "socket mode")
    as_user = lambda uid, gid, *args: run(  # noqa: E731
        ["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups", TUNNAT, *args,
         "--control", lab.control_path], check_rc=False)
    # nobody, in no group of tunnat's: cannot even connect.
    p = as_user(65534, 65534, "stats")
    check(p.returncode != 0 and "ermission denied" in p.stderr, p.stderr)
    # Another user in tunnat's group: may read, may not change.
    p = as_user(65534, 0, "stats")
    check(p.returncode == 0 and "nat.forwarded_out" in p.stdout, p.stderr)
    p = as_user(65534, 0, "dnat", "add", "tcp:2222=192.168.122.73:22")
    check(p.returncode != 0 and "permission denied" in p.stderr, p.stderr)
    check("control: refused" in lab.stderr() and "uid 65534" in lab.stderr(), "the refusal is logged")
    eq(lab.ctl("dnat", "list").stdout.strip(), "", "no rule was added")
    # Root may.
    lab.ctl("dnat", "add", "tcp:2222=192.168.122.73:22")
    eq(lab.ctl("dnat", "list").stdout.strip(), "tcp:2222=192.168.122.73:22  (added at run time)", "root's rule")


def test_control_group_members_may_change_the_router(lab):
    lab.stop()
    lab.start(["--control", lab.control_path, "--control-group", "65534"])
    eq(os.stat(lab.control_path).st_gid, 65534, "the socket's group")
    p = run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", TUNNAT,
             "dnat", "add", "tcp:2222=192.168.122.73:22", "--control", lab.control_path], check_rc=False)
    check(p.returncode == 0, p.stderr)


def test_pcap_files_are_private_and_never_written_through_a_link(lab):
    lab.stop()
    d = tempfile.mkdtemp(prefix="tunnat-pcap-")
    fd, victim = tempfile.mkstemp(prefix="tunnat-victim-")
    os.write(fd, b"precious")
    os.close(fd)
    try:
        os.symlink(victim, os.path.join(d, "outside.pcap"))
        p = run(lab.args(["--pcap-dir", d]), check_rc=False, timeout=10)
        check(p.returncode != 0 and "symbolic link" in p.stderr, p.stderr)
        eq(open(victim, "rb").read(), b"precious", "the link's target is untouched")
        os.unlink(os.path.join(d, "outside.pcap"))
        lab.start(["--pcap-dir", d])
        for f in ("inside.pcap", "outside.pcap"):
            eq(oct(stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode)), oct(0o600), f"{f} mode")
        lab.stop()
        lab.start(["--pcap-dir", d])  # an earlier run's captures are replaced
        lab.stop()
    finally:
        for f in ("inside.pcap", "outside.pcap"):
            if os.path.lexists(os.path.join(d, f)):
                os.unlink(os.path.join(d, f))
        os.rmdir(d)
        os.unlink(victim)


@tunnat_args("--control", CONTROL)
def test_a_closed_pipe_ends_the_client_quietly(lab):
    # Enough sessions that `tunnat table` writes well past a pipe's 64 KB after `head` quit.
    s = lab.sock("lan", socket.SOCK_DGRAM)
    srv = lab.listen("wan", REMOTE, 9300, socket.SOCK_DGRAM)
    for port in range(41000, 42000):
        s2 = lab.sock("lan", socket.SOCK_DGRAM)
        s2.bind((CLIENT, port))
        s2.sendto(b"x", (REMOTE, 9300))
        s2.close()
    wait_for(lambda: lab.stats()["nat"]["sessions"] >= 1000, 5, "1000 sessions")
    s.close()
    srv.close()
    p = subprocess.run(["bash", "-c", f"{TUNNAT} table --control {lab.control_path} | head -1; "
                       "echo rc=${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=20)
    check("panicked" not in p.stderr and "Broken pipe" not in p.stderr, p.stderr)
    check(p.stdout.startswith("PROTO"), p.stdout[:200])
    check("rc=141" in p.stdout or "rc=0" in p.stdout, f"killed by SIGPIPE or done: {p.stdout[-20:]}")
