"""`tunnat export nft|iptables`: the ruleset it prints, loaded into the kernel's lab
(netns-tests/kernel_lab.py), does what tunnat does for the same options: NAPT, port
forwards (a shifted range too) and hairpinning. The nft form is also what every
`run.py --router netfilter` test runs on; here the iptables form gets traffic too, and a
running tunnat exports itself with the port forwards added at run time."""

import kernel_lab
from harness import (CLIENT, CONTROL, REMOTE, ROUTER_OUT, SERVER_IN, check, eq, recv_all, run, serve_tcp,
                     tunnat_args, TUNNAT)


def _through(lab):
    """NAPT out, a forward in (8888 -> 9999), a shifted range (8001 -> 9001), and the
    forward hairpinned from inside: what each server saw as its peer."""
    seen = {}
    for side, addr, port in (("wan", REMOTE, 80), ("lan", SERVER_IN, 9999), ("lan", SERVER_IN, 9001)):
        srv = lab.listen(side, addr, port)

        def handle(c, peer, port=port):
            seen.setdefault(port, []).append(peer[0])
            c.sendall(b"ok")
        serve_tcp(srv, handle)
    for side, addr, port in (("lan", REMOTE, 80), ("wan", ROUTER_OUT, 8888), ("wan", ROUTER_OUT, 8001),
                             ("lan", ROUTER_OUT, 8888)):
        c = lab.connect(side, addr, port, timeout=6, bind=(CLIENT, 0) if side == "lan" else None)
        eq(recv_all(c), b"ok", f"{side} -> {addr}:{port}")
    return seen


def test_the_iptables_export_in_the_kernel_does_what_tunnat_does():
    lab = kernel_lab.KernelLab(["--dnat", "tcp:8888=192.168.122.73:9999", "--dnat", "tcp:8000-8002=192.168.122.73:9000"],
                               export="iptables")
    try:
        check(lab.ruleset.startswith("#!/bin/sh") and "-j MASQUERADE" in lab.ruleset, lab.ruleset)
        seen = _through(lab)
        eq(seen[80], [ROUTER_OUT], "NAPT: the outside server sees the outside address")
        # From outside: the client's own address; hairpinned from inside: the outside
        # address (RFC 4787 REQ-9), as tunnat does.
        eq(seen[9999], [REMOTE, ROUTER_OUT], "the forward's peers, from outside then hairpinned")
        eq(seen[9001], [REMOTE], "8001 shifted to 9001")
    finally:
        lab.close()


def test_the_nft_export_in_the_kernel_does_what_tunnat_does():
    lab = kernel_lab.KernelLab(["--dnat", "tcp:8888=192.168.122.73:9999", "--dnat", "tcp:8000-8002=192.168.122.73:9000"])
    try:
        check("table inet tunnat" in lab.ruleset, lab.ruleset)
        seen = _through(lab)
        eq((seen[80], seen[9999], seen[9001]), ([ROUTER_OUT], [REMOTE, ROUTER_OUT], [REMOTE]), "peers")
    finally:
        lab.close()


@tunnat_args("--control", CONTROL)
def test_a_running_tunnat_exports_itself_with_its_run_time_forwards(lab):
    lab.ctl("dnat", "add", "udp:5353=192.168.122.73")
    out = run([TUNNAT, "export", "nft", "--control", lab.control_path, "--inside-if", "eth1"]).stdout
    check("elements = { 5353 : 192.168.122.73 . 5353 }" in out, f"the run-time forward is exported:\n{out}")
    check('oifname "nat-out" ip saddr 192.168.122.0/24 masquerade' in out, out)
    check('ct status dnat snat ip to 172.16.1.186' in out and 'oifname "eth1"' in out, out)
    # Offline, from the options alone, the same forward given as a flag.
    off = run([TUNNAT, *lab.args(["--dnat", "udp:5353=192.168.122.73"])[1:], "export", "nft",
               "--inside-if", "eth1"]).stdout
    strip = lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("# tunnat"))  # noqa: E731
    eq(strip(off), strip(out), "the offline export of the same options")
