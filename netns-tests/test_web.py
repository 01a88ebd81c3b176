"""`tunnat web`, the live web view, in headless Chromium (Debian's chromium, run with
--headless --dump-dom and --screenshot: the DevTools-driven headless mode): a flow made
with curl is in the session table within 1 s of the page's time, its ladder diagram
shows its packets before and after translation, and the view is read-only unless
--allow-changes. Screenshots are kept in $TUNNAT_ARTIFACTS (default /tmp/tunnat-artifacts)."""

import http.client
import json
import os
import shutil
import subprocess
import time

from harness import CLIENT, CONTROL, REMOTE, TUNNAT, check, eq, tunnat_args, wait_for

ARTIFACTS = os.environ.get("TUNNAT_ARTIFACTS", "/tmp/tunnat-artifacts")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


def web(lab, *extra):
    port = 18000 + os.getpid() % 1000
    p = subprocess.Popen([TUNNAT, "web", "--listen", f"127.0.0.1:{port}", "--control", lab.control_path, *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lab.bg.append(p)

    def up():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/api/info")
            return c.getresponse().status == 200
        except OSError:
            return False
    wait_for(up, 5, "tunnat web to answer")
    return p, port


def fetch(port, method, path, body=None, headers=None, host=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    h = dict(headers or {})
    if host:
        c.putrequest(method, path, skip_host=True)
        c.putheader("Host", host)
        for k, v in h.items():
            c.putheader(k, v)
        if body:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body.encode() if body else None)
    else:
        c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    return r.status, r.read().decode()


def chromium(url, *args):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args, url],
                          capture_output=True, text=True, timeout=60)


@tunnat_args("--control", CONTROL, "--event-ring", "2000")
def test_a_curl_flow_appears_with_its_ladder_within_a_second(lab):
    srv = lab.spawn("wan", ["python3", "-m", "http.server", "--bind", REMOTE, "8080", "--directory", "/etc"])
    wait_for(lambda: lab.sh("wan", ["python3", "-c", f"import socket; socket.create_connection(('{REMOTE}', 8080), 1)"],
                            check_rc=False).returncode == 0, 5, "the web server")
    _, port = web(lab)
    out = lab.sh("lan", ["curl", "-sS", "--local-port", "40777", "--max-time", "5", f"http://{REMOTE}:8080/hostname"])
    eq(out.stdout, open("/etc/hostname").read(), "curl through the router")
    url = f"http://127.0.0.1:{port}/#filter=40777&select=first"
    # The page's own clock: at most 1 s of it for the flow to be shown, with its ladder.
    dom = chromium(url, "--virtual-time-budget=1000", "--dump-dom").stdout
    check(f"{CLIENT}:40777" in dom and f"{REMOTE}:8080" in dom, f"the curl session is in the table:\n{dom[:3000]}")
    arrows = dom.count('class="arrow"')
    check(arrows >= 8, f"the ladder shows the flow's packets both sides (got {arrows} arrows)")
    check("SYN" in dom and "live," in dom, dom[:3000])
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "web-view.png")
    chromium(url, "--virtual-time-budget=1500", "--window-size=1280,1100", f"--screenshot={shot}")
    with open(shot, "rb") as f:
        eq(f.read(8), b"\x89PNG\r\n\x1a\n", f"a screenshot in {shot}")
    srv.kill()


@tunnat_args("--control", CONTROL)
def test_the_view_is_read_only_unless_allowed_and_refuses_other_hosts(lab):
    _, port = web(lab)
    status, body = fetch(port, "GET", "/api/table")
    eq(status, 200, "the table through the view")
    check(json.loads(body)["ok"], body)
    rule = json.dumps({"action": "add", "rule": "udp:5353=192.168.122.73"})
    eq(fetch(port, "POST", "/api/dnat", rule, {"X-Tunnat": "change"})[0], 403, "read-only by default")
    eq(fetch(port, "GET", "/api/table", host="attacker.example:%d" % port)[0], 421, "a rebinding host name")
    eq(fetch(port, "GET", "/etc/passwd")[0], 404, "nothing else is served")
    for p in lab.bg:
        p.kill()
        p.wait(2)
    lab.bg.clear()
    _, port = web(lab, "--allow-changes")
    eq(fetch(port, "POST", "/api/dnat", rule)[0], 403, "a change needs the X-Tunnat header")
    status, body = fetch(port, "POST", "/api/dnat", rule, {"X-Tunnat": "change"})
    eq(status, 200, f"added: {body}")
    check("udp:5353=192.168.122.73" in lab.ctl("dnat", "list").stdout, "the rule is in the router")


@tunnat_args("--control", CONTROL, "--nat-pmp")
def test_a_hosts_port_mapping_is_shown_with_its_owner(lab):
    out = lab.sh("lan", ["natpmpc", "-g", "192.168.122.100", "-a", "7000", "9999", "tcp", "600"], timeout=30).stdout
    check("Mapped public port 7000" in out, out)
    _, port = web(lab)
    dom = chromium(f"http://127.0.0.1:{port}/", "--virtual-time-budget=1000", "--dump-dom").stdout
    check(f"tcp:7000={CLIENT}:9999" in dom and f"nat-pmp by {CLIENT}" in dom,
          f"the mapping is listed with its owner:\n{dom[:3000]}")
    check("MAPPED" in dom and "[nat-pmp]" in dom, "and in the table, as a mapping")
