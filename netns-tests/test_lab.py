"""The demo lab (scripts/lab.sh) runs both seed scenarios, as root and unprivileged."""

import os
import shutil
import stat
import subprocess
import tempfile

from harness import ROOT, TUNNAT, check

LAB = os.path.join(ROOT, "scripts", "lab.sh")


def run_lab(env, user=None):
    cmd = [LAB, "--check"]
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", *cmd]
    e = dict(os.environ, TUNNAT=TUNNAT, **env)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=e, cwd="/tmp")
    out = p.stdout + p.stderr
    check(p.returncode == 0, f"lab.sh failed ({p.returncode}):\n{out[-3000:]}")
    for scenario in ("scenario 1", "scenario 2", "scenario 3"):
        check(scenario in out, f"{scenario} ran")
    check("FAILED" not in out, out[-3000:])
    return out


def test_lab_as_root():
    out = run_lab({"LAB_PREFIX": f"tl{os.getpid()}"})
    check("hello from the outside web server" in out, "page shown")


def test_lab_unprivileged_in_unshare():
    """As 'nobody': the script re-runs itself in 'unshare -rnm'. Where /dev/net/tun is
    not 0666 (this CI machine), a 0666 copy of the device node is bound over it inside
    the lab's own mount namespace; the host's node is left alone."""
    env = {}
    tmp = None
    mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    if mode & 0o006 != 0o006:
        tmp = tempfile.mkdtemp(prefix="tunnat-node-")
        node = os.path.join(tmp, "tun")
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
        os.chmod(node, 0o666)
        os.chmod(tmp, 0o755)
        env["LAB_TUN_NODE"] = node
    try:
        out = run_lab(env, user="65534")
        check("not root: running the lab inside 'unshare -rnm'" in out, "ran unprivileged")
    finally:
        if tmp:
            shutil.rmtree(tmp)
