"""The FTP helper (--alg ftp) with real clients and servers: pyftpdlib outside with
Python's ftplib and `curl --ftp-port -` inside, in active and passive mode; pyftpdlib inside behind a port
forward with ftplib and curl outside; a PORT command cut across two segments; the same
tests on the kernel with nf_conntrack_ftp (`run.py --router netfilter test_ftp`)."""

import ftplib
import os
import socket
import time

from harness import (CLIENT, CONTROL, REMOTE, ROUTER_OUT, SERVER_IN, check, eq, recv_all, tunnat_args)

FILE = b"tunnat ftp test file\n" * 200


def is_tunnat(lab):
    return not hasattr(lab, "rtr")


def ftp_server(lab, side, addr, port=21):
    """pyftpdlib (Debian's, under the system python) serving a directory with `file`."""
    d = lab.tempdir("tunnat-ftp-")
    with open(os.path.join(d, "file"), "wb") as f:
        f.write(FILE)
    lab.spawn(side, ["/usr/bin/python3", "-m", "pyftpdlib", "-i", addr, "-p", str(port), "-d", d])
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            lab.connect(side, addr, port, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("pyftpdlib did not start")


def fetch(lab, side, host, port, passive, source=None):
    """Retrieves `file` with ftplib from namespace `side`; returns its bytes."""
    got = []
    with lab.ns(side):
        f = ftplib.FTP(timeout=5)
        f.connect(host, port, source_address=source)
        f.login()
        f.set_pasv(passive)
        f.retrbinary("RETR file", got.append)
        f.quit()
    return b"".join(got)


@tunnat_args("--alg", "ftp", "--control", CONTROL)
def test_active_ftp_from_inside_to_outside(lab):
    ftp_server(lab, "wan", REMOTE)
    eq(fetch(lab, "lan", REMOTE, 21, passive=False), FILE, "active mode: the server's data connection came in")
    eq(fetch(lab, "lan", REMOTE, 21, passive=True), FILE, "passive mode works too")
    out = lab.sh("lan", ["curl", "-sS", "--max-time", "10", "--ftp-port", "-", f"ftp://{REMOTE}/file"]).stdout
    eq(out.encode(), FILE, "curl --ftp-port - (active, EPRT or PORT)")
    if is_tunnat(lab):  # the kernel lab has no such counters
        ftp = lab.stats()["ftp"]
        check(ftp["rewritten"] >= 1 and ftp["data_connections"] >= 1, f"the helper rewrote PORT and admitted the data: {ftp}")


@tunnat_args("--control", CONTROL)
def test_active_ftp_fails_without_the_helper(lab):
    ftp_server(lab, "wan", REMOTE)
    try:
        fetch(lab, "lan", REMOTE, 21, passive=False)
        check(False, "active FTP worked without a helper")
    except (ftplib.Error, OSError) as e:
        check("501" in str(e) or "425" in str(e) or isinstance(e, OSError), f"refused: {e}")
    p = lab.sh("lan", ["curl", "-sS", "--max-time", "10", "--ftp-port", "-", f"ftp://{REMOTE}/file"], check_rc=False)
    check(p.returncode != 0, "curl --ftp-port - worked without a helper")


@tunnat_args("--alg", "ftp", "--dnat", "tcp:2121=192.168.122.73:21", "--control", CONTROL)
def test_ftp_server_behind_a_port_forward(lab):
    ftp_server(lab, "lan", SERVER_IN)
    # PASV: the 227 reply names the outside address and a port opened for this client.
    eq(fetch(lab, "wan", ROUTER_OUT, 2121, passive=True), FILE, "passive mode through the port forward (227)")
    # curl uses EPSV first (229: the port only).
    out = lab.sh("wan", ["curl", "-s", "--max-time", "10", f"ftp://{ROUTER_OUT}:2121/file"]).stdout
    eq(out.encode(), FILE, "curl through the port forward (229)")
    # Active: the server connects out to the client, translated as any connection.
    eq(fetch(lab, "wan", ROUTER_OUT, 2121, passive=False), FILE, "active mode to the forwarded server")


@tunnat_args("--alg", "ftp", "--control", CONTROL)
def test_a_port_command_split_across_segments(lab):
    """The client sends `PORT` in two segments 100 ms apart (no Nagle): tunnat holds the
    first part and sends the whole line rewritten; the kernel's helper drops the first
    part and waits for the client's retransmission of the whole line."""
    ftp_server(lab, "wan", REMOTE)
    c = lab.connect("lan", REMOTE, 21, timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = c.makefile("rb")

    def reply():
        line = f.readline()
        while line[3:4] == b"-":
            line = f.readline()
        return line

    check(reply().startswith(b"220"), "greeting")
    c.sendall(b"USER anonymous\r\n")
    reply()
    c.sendall(b"PASS x@\r\n")
    check(reply().startswith(b"230"), "logged in")
    c.sendall(b"TYPE I\r\n")
    reply()
    data = lab.listen("lan", CLIENT, 0)
    port = data.getsockname()[1]
    line = f"PORT 192,168,122,101,{port >> 8},{port & 255}\r\n".encode()
    t0 = time.time()
    c.send(line[:10])
    time.sleep(0.1)
    c.send(line[10:])
    check(reply().startswith(b"200"), "PORT accepted (its address was rewritten whole)")
    c.sendall(b"RETR file\r\n")
    data.settimeout(10)
    conn, peer = data.accept()
    eq(peer[0], REMOTE, "the server's data connection arrived")
    eq(recv_all(conn), FILE, "the file")
    print(f"    PORT in two segments took {time.time() - t0:.2f} s to be answered and used")
    c.close()
    if is_tunnat(lab):
        ftp = lab.stats()["ftp"]
        check(ftp["held_split"] >= 1, f"the first part was held: {ftp}")
