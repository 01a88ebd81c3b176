"""Batched TUN I/O (issue 18): by default packets move through io_uring, a multishot read
per port and writes submitted in batches, so a burst costs far fewer system calls than
packets; `--no-io-uring` goes back to one read and one write call per packet. A turn
reads at most a pool's worth of a port's packets (`--io-buffers`, 16 by default with
offloads). With
`--coalesce-us` (off by default), under load a wait holds out for a batch, but never for
a packet that comes alone. The kernel counts a process's read and write calls in /proc/PID/io (syscr, syscw); io_uring's
reads and writes are not among them."""

import os
import signal
import socket
import time

from harness import CONTROL, REMOTE, SERVER_IN, check, eq, tunnat_args

BURST = 20000


def _io_calls(lab):
    with open(f"/proc/{lab.proc.pid}/io") as f:
        io = dict(line.split(": ") for line in f.read().splitlines())
    return int(io["syscr"]) + int(io["syscw"])


def _burst(lab):
    """BURST 64-byte datagrams inside -> outside as fast as one socket sends them; returns
    how many arrived."""
    rx = lab.sock("wan", socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    rx.bind((REMOTE, 7400))
    rx.settimeout(1)
    tx = lab.sock("lan", socket.SOCK_DGRAM)
    tx.bind((SERVER_IN, 7400))
    for i in range(BURST):
        tx.sendto(i.to_bytes(4, "big") + bytes(60), (REMOTE, 7400))
        if i % 500 == 499:
            time.sleep(0.002)  # within the sockets' and TUN queue's room
    got = 0
    try:
        while True:
            rx.recv(128)
            got += 1
    except socket.timeout:
        pass
    return got


def _fds(lab):
    d = f"/proc/{lab.proc.pid}/fd"
    return [os.readlink(f"{d}/{f}") for f in os.listdir(d)]


@tunnat_args("--control", CONTROL)
def test_a_burst_moves_in_batches_through_io_uring(lab):
    check("packets move by io_uring" in lab.stderr(), "banner says io_uring")
    check("anon_inode:[io_uring]" in _fds(lab), "tunnat holds an io_uring")
    before = _io_calls(lab)
    got = _burst(lab)
    calls = _io_calls(lab) - before
    check(got >= BURST * 0.95, f"{got} of {BURST} datagrams arrived")
    check(calls < got / 10, f"{calls} read and write calls for {got} packets: not batched")
    io = lab.stats()["io"]
    per = (io["read_inside"] + io["read_outside"]) / max(1, io["batches"])
    check(per > 2, f"{per:.1f} packets per turn of the loop during a burst")
    print(f"    ({got} packets, {calls} read/write calls, {per:.1f} packets a turn)")


@tunnat_args("--no-io-uring")
def test_without_io_uring_each_packet_is_a_read_and_a_write(lab):
    check("read and write calls, one each" in lab.stderr(), "banner says read and write calls")
    check("anon_inode:[io_uring]" not in _fds(lab), "no io_uring")
    before = _io_calls(lab)
    got = _burst(lab)
    calls = _io_calls(lab) - before
    check(got >= BURST * 0.95, f"{got} of {BURST} datagrams arrived")
    check(calls >= 2 * got, f"{calls} read and write calls for {got} packets")


def test_a_stopped_router_lets_go_of_its_devices_at_once(lab):
    """The multishot reads hold the TUN files; tunnat cancels them before it exits, so a
    restart a moment later can open the same devices (a TUN takes one reader)."""
    _restart_three_times(lab)


@tunnat_args("--coalesce-us", "50")
def test_a_stopped_router_lets_go_of_its_devices_at_once_when_coalescing(lab):
    """With coalescing the ring defers its task work to the waits: what completes the
    cancelled reads, and lets go of their files, runs only when tunnat waits again."""
    _restart_three_times(lab)


def _restart_three_times(lab):
    for _ in range(3):
        eq(lab.stop(), 0, "exit status after SIGTERM")
        lab.start(lab.extra_args)
        out = lab.sh("lan", ["ping", "-c", "1", "-W", "2", REMOTE], check_rc=False)
        eq(out.returncode, 0, "ping through the restarted router")


@tunnat_args("--control", CONTROL)
def test_a_large_table_is_prefetched_a_batch_at_a_time(lab):
    """Past 32,768 sessions the driver prefetches the session table for each batch io_uring
    hands it (the index buckets of every packet, then their slots) before translating
    them. 40,000 sessions, then bursts both ways through some of them: every datagram
    arrives translated, in batches, and the router stays up."""
    from test_hostile import ipv4, raw_socket, send_raw, udp
    from harness import CLIENT, ROUTER_OUT
    raw, dev = raw_socket(lab, "lan")
    for i, port in enumerate(range(10000, 50000)):
        send_raw(raw, dev, ipv4(CLIENT, REMOTE, 17, udp(CLIENT, REMOTE, port, 9, b"x")))
        if i % 2000 == 1999:
            time.sleep(0.02)
    deadline = time.time() + 10
    while lab.stats()["nat"]["sessions"] < 40000 and time.time() < deadline:
        time.sleep(0.1)
    eq(lab.stats()["nat"]["sessions"], 40000, "sessions made")
    got = _burst(lab)
    check(got >= BURST * 0.95, f"{got} of {BURST} datagrams arrived out through a 40,000-session table")
    # The replies to the raw sessions come back in through their mappings.
    rx = lab.sniffer("lan")
    rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    wan = lab.sock("wan", socket.SOCK_DGRAM)
    wan.bind((REMOTE, 9))
    for port in range(10000, 12000):
        wan.sendto(b"back", (ROUTER_OUT, port))  # port preserved: the inside port
        if port % 200 == 199:
            time.sleep(0.005)  # within the outside TUN's queue
    back = set()
    rx.settimeout(1)
    try:
        while len(back) < 2000:
            p = rx.recv(2048)
            if len(p) >= 28 and p[9] == 17 and p[16:20] == socket.inet_aton(CLIENT):
                back.add(int.from_bytes(p[22:24], "big"))
    except socket.timeout:
        pass
    check(len(back) >= 1900, f"{len(back)} of 2000 replies reached their inside ports")
    io = lab.stats()["io"]
    per = (io["read_inside"] + io["read_outside"]) / max(1, io["batches"])
    check(per > 2, f"{per:.1f} packets per turn")


def _coalescing(lab):
    """Whether this kernel's io_uring coalesces (Linux 6.12 and later), as the banner says."""
    if "cannot coalesce" in lab.stderr():
        print("    (skipped: this kernel's io_uring cannot coalesce)")
        return False
    check("a batch gathers for up to 50 µs" in lab.stderr(), "banner says the window")
    return True


@tunnat_args("--control", CONTROL, "--coalesce-us", "50")
def test_under_load_a_wait_holds_out_for_a_batch(lab):
    """A burst is a stream of packets: after a turn that moved eight or more, the wait holds
    out for the next batch (counted as io.coalesced), and every datagram still arrives."""
    if not _coalescing(lab):
        return
    got = _burst(lab)
    check(got >= BURST * 0.95, f"{got} of {BURST} datagrams arrived")
    io = lab.stats()["io"]
    check(io["coalesced"] > 0, "no wait held out for a batch during a burst")
    per = io["read_inside"] / max(1, io["batches"])
    print(f"    ({got} packets in {io['batches']} turns, {per:.1f} a turn; {io['coalesced']} waits held out)")


@tunnat_args("--control", CONTROL, "--coalesce-us", "1000")
def test_a_packet_that_comes_alone_is_not_held_back(lab):
    """Pings one at a time: each turn moves one packet, so no wait holds out, even with
    the longest window (1 ms). A held ping would take a millisecond more."""
    if "cannot coalesce" in lab.stderr():
        print("    (skipped: this kernel's io_uring cannot coalesce)")
        return
    before = lab.stats()["io"]["coalesced"]
    out = lab.sh("lan", ["ping", "-c", "20", "-i", "0.05", "-q", REMOTE]).stdout
    rtt = [float(x) for x in out.strip().splitlines()[-1].split("=")[1].split()[0].split("/")]
    held = lab.stats()["io"]["coalesced"] - before
    check(held <= 2, f"{held} waits held out for 20 lone pings")
    check(rtt[1] < 0.5, f"ping's average RTT {rtt[1]} ms with a 1 ms window: lone packets held back")
    print(f"    (20 pings, average {rtt[1]} ms, {held} waits held out)")


@tunnat_args("--control", CONTROL)
def test_by_default_no_wait_holds_out(lab):
    check("a batch gathers" not in lab.stderr(), "banner says coalescing by default")
    got = _burst(lab)
    check(got >= BURST * 0.95, f"{got} of {BURST} datagrams arrived")
    eq(lab.stats()["io"]["coalesced"], 0, "waits held out by default")


BACKLOG = 256


def _backlog(lab):
    """BACKLOG datagrams queued in the inside TUN while tunnat is stopped (SIGSTOP), then
    let go: returns how many arrived and how many packets each turn that read some read,
    on average. Stopped, tunnat reads nothing; let go, each turn reads what its pool has
    room for, until the queue is empty."""
    rx = lab.sock("wan", socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    rx.bind((REMOTE, 7401))
    rx.settimeout(1)
    tx = lab.sock("lan", socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, 32, 16 << 20)  # SO_SNDBUFFORCE: the TUN holds them
    tx.bind((SERVER_IN, 7401))
    tx.sendto(b"first", (REMOTE, 7401))  # the session, made before the stop
    eq(rx.recv(16), b"first", "the first datagram")
    before = lab.stats()["io"]
    lab.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(BACKLOG):
            tx.sendto(i.to_bytes(4, "big") + bytes(60), (REMOTE, 7401))
    finally:
        lab.proc.send_signal(signal.SIGCONT)
    got = set()
    try:
        while len(got) < BACKLOG:
            got.add(int.from_bytes(rx.recv(128)[:4], "big"))
    except socket.timeout:
        pass
    io = lab.stats()["io"]
    reads = io["read_inside"] - before["read_inside"]
    turns = io["batches"] - before["batches"]
    # The lan kernel's own IPv6 packets on the TUN (router solicitations, MLD reports)
    # may come too.
    check(BACKLOG <= reads <= BACKLOG + 4, f"{reads} packets read from the inside TUN after the stop")
    return len(got), reads / max(1, turns)


@tunnat_args("--control", CONTROL)
def test_a_backlog_is_read_a_pool_at_a_time(lab):
    """With offloads a port has 16 buffers by default: no turn reads more than 16 of its
    packets; its read runs out of buffers and is submitted again at the next turn.
    Nothing is lost."""
    check("into 16 buffers" in lab.stderr(), "banner says the pool")
    got, per = _backlog(lab)
    eq(got, BACKLOG, "datagrams of the backlog that arrived")
    check(8 < per <= 16, f"{per:.1f} packets a turn from a backlog of {BACKLOG}, with 16 buffers")
    print(f"    ({per:.1f} packets a turn)")


@tunnat_args("--control", CONTROL, "--io-buffers", "64")
def test_more_buffers_read_a_backlog_in_larger_turns(lab):
    """`--io-buffers 64`: turns of up to 64 packets, as a larger NIC ring takes a burst."""
    check("into 64 buffers" in lab.stderr(), "banner says the pool")
    got, per = _backlog(lab)
    eq(got, BACKLOG, "datagrams of the backlog that arrived")
    check(per > 16, f"{per:.1f} packets a turn from a backlog of {BACKLOG}, with 64 buffers")
    print(f"    ({per:.1f} packets a turn)")
