"""The demo lab (scripts/lab.sh) runs both seed scenarios, as root and unprivileged."""

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile

from harness import ROOT, TUNNAT, check

LAB = os.path.join(ROOT, "scripts", "lab.sh")


def run_lab(env, user=None, clean=False):
    """Runs lab.sh --check; `clean`: in an ordinary user's environment (no TUNNAT, no
    cargo, Debian's user PATH without /usr/sbin), as the README's unprivileged path is."""
    cmd = [LAB, "--check"]
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", *cmd]
    if clean:
        e = dict(PATH="/usr/local/bin:/usr/bin:/bin", HOME="/tmp", **env)
    else:
        e = dict(os.environ, TUNNAT=TUNNAT, **env)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=e, cwd="/tmp")
    out = p.stdout + p.stderr
    check(p.returncode == 0, f"lab.sh failed ({p.returncode}):\n{out[-3000:]}")
    for scenario in ("scenario 1", "scenario 2", "scenario 3", "scenario 4", "scenario 5"):
        check(scenario in out, f"{scenario} ran")
    check("FAILED" not in out, out[-3000:])
    return out


def test_lab_as_root():
    prefix = f"tl{os.getpid()}"
    # A namespace whose name merely ends in the lab's is not the lab's.
    other = f"x{prefix}lan"
    subprocess.run(["ip", "netns", "add", other], check=True)
    try:
        out = run_lab({"LAB_PREFIX": prefix})
    finally:
        subprocess.run(["ip", "netns", "del", other])
    check("hello from the outside web server" in out, "page shown")
    check("ok: the capture holds the web connection" in out, "tcpdump read the capture")


def tun_node_env():
    """Where /dev/net/tun is not 0666 (this CI machine), a 0666 copy of the device node
    for the unprivileged lab to bind over it in its own mount namespace; the host's node
    is left alone. Returns (env, directory to remove)."""
    mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    if mode & 0o006 == 0o006:
        return {}, None
    tmp = tempfile.mkdtemp(prefix="tunnat-node-")
    node = os.path.join(tmp, "tun")
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    os.chmod(node, 0o666)
    os.chmod(tmp, 0o755)
    return {"LAB_TUN_NODE": node}, tmp


def test_lab_unprivileged_keep_prints_commands_that_work_from_another_shell():
    """--keep as 'nobody': the hints are nsenter commands, and one run by the same user
    from outside the lab reaches the lab's hosts."""
    env, tmp = tun_node_env()
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    e = dict(os.environ, TUNNAT=TUNNAT, **env)
    p = subprocess.Popen([*nobody, LAB, "--keep"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=e, cwd="/tmp")
    try:
        lines = []
        # The last hint line; the "press Enter" prompt after it ends in no newline.
        for line in p.stdout:
            lines.append(line)
            if "tcpdump -n -r" in line or "FAILED" in line or "lab.sh:" in line:
                break
        hint = next((l.strip() for l in reversed(lines) if "curl http://172.16.1.1/" in l), "")
        check(hint.startswith("nsenter --preserve-credentials -U -m -t "), "".join(lines[-12:]))
        got = subprocess.run([*nobody, *hint.split()], capture_output=True, text=True, timeout=20)
        check("hello from the outside web server" in got.stdout, f"{hint}: {got.stdout}{got.stderr}")
    finally:
        with contextlib.suppress(Exception):
            p.stdin.write("\n")
            p.stdin.flush()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
        if tmp:
            shutil.rmtree(tmp)


def test_lab_unprivileged_in_unshare():
    """As 'nobody': the script re-runs itself in 'unshare -rnm'. Where /dev/net/tun is
    not 0666 (this CI machine), a 0666 copy of the device node is bound over it inside
    the lab's own mount namespace; the host's node is left alone."""
    env, tmp = tun_node_env()
    # The README's path: an ordinary user with no cargo of their own, after a build.
    clean = os.path.realpath(TUNNAT) == os.path.realpath(os.path.join(ROOT, "target", "release", "tunnat"))
    try:
        out = run_lab(env, user="65534", clean=clean)
        check("not root: running the lab inside 'unshare -rnm'" in out, "ran unprivileged")
        if clean:
            check("using the tunnat already built" in out, out[:500])
        check("ok: the capture holds the web connection" in out, "the capture was read")
    finally:
        if tmp:
            shutil.rmtree(tmp)
