#!/usr/bin/env bash
# The tunnat demo lab: two network namespaces joined by tunnat, and the two seed scenarios
# (plus the policy server, IPv6, NAT64, and a host opening its own port with NAT-PMP).
#
#   scripts/lab.sh            build, set up, run the scenarios, tear down
#   scripts/lab.sh --keep     ... and keep the lab up for exploring until Enter
#   scripts/lab.sh --check    ... and fail (exit 1) if any scenario's output is wrong
#
# As root it uses 'ip netns' directly. As another user it re-runs itself inside
# 'unshare -rnm' (a user, network and mount namespace of its own): no root needed, as long
# as /dev/net/tun is mode 0666 (the default on common distributions).
#
# Environment:
#   TUNNAT=path/to/tunnat   use this binary instead of building one
#   LAB_PREFIX=p            name the namespaces plan and pwan (default: lan and wan)
#   LAB_TUN_NODE=path       a TUN character device bound over /dev/net/tun in the
#                           unprivileged lab (where /dev/net/tun is not 0666)
set -euo pipefail
# iproute2 lives in /usr/sbin, which an ordinary user's PATH lacks on Debian.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

KEEP=0 CHECK=0
for a in "$@"; do
  case "$a" in
    --keep) KEEP=1 ;;
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lab.sh: unknown option '$a' (see --help)" >&2; exit 2 ;;
  esac
done

HERE=$(cd "$(dirname "$0")/.." && pwd)
if [ "${LAB_USERNS:-0}" != 1 ]; then
  "$HERE/scripts/deps.sh" --check lab || exit 1
fi
if [ -z "${TUNNAT:-}" ]; then
  BUILT="$HERE/target/release/tunnat"
  if command -v cargo >/dev/null; then
    echo "== building tunnat: cargo build --release (about a minute the first time)"
    (cd "$HERE" && cargo build --release)
  elif [ -x "$BUILT" ]; then
    echo "== no cargo on this user's PATH: using the tunnat already built at $BUILT"
  else
    echo "lab.sh: no cargo to build tunnat with, and no $BUILT yet." >&2
    echo "Install Rust (https://rustup.rs) as this user, or build it once as another user" \
         "(cargo build --release), or set TUNNAT=path/to/tunnat." >&2
    exit 1
  fi
  export TUNNAT="$BUILT"
fi

if [ "$(id -u)" != 0 ]; then
  echo "== not root: running the lab inside 'unshare -rnm' (a user, network and mount namespace of its own)"
  exec unshare -rnm -- env LAB_USERNS=1 LAB_USER="$(id -un 2>/dev/null || id -u)" TUNNAT="$TUNNAT" "$0" "$@"
fi
if [ "${LAB_USERNS:-0}" = 1 ]; then
  mount -t tmpfs tmpfs /run            # room for 'ip netns' in our own mount namespace
  if [ -n "${LAB_TUN_NODE:-}" ]; then mount --bind "$LAB_TUN_NODE" /dev/net/tun; fi
  if ! (exec 3<>/dev/net/tun) 2>/dev/null; then
    echo "lab.sh: /dev/net/tun is not usable without root here (mode $(stat -c %a /dev/net/tun));" \
         "run as root or 'chmod 0666 /dev/net/tun'" >&2
    exit 1
  fi
fi

P=${LAB_PREFIX:-}
LAN=${P}lan WAN=${P}wan
WORK=$(mktemp -d)
FAILED=0
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$LAN" 2>/dev/null || true
  ip netns del "$WAN" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }
expect() { # expect DESCRIPTION PATTERN TEXT
  if grep -q -- "$2" <<<"$3"; then echo "   ok: $1"; else echo "   FAILED: $1 (no '$2')"; FAILED=1; fi
}
in_lan() { ip netns exec "$LAN" "$@"; }
in_wan() { ip netns exec "$WAN" "$@"; }

say "wiring: $LAN (inside hosts) <- nat-in | tunnat | nat-out -> $WAN (outside hosts)"
for ns in "$LAN" "$WAN"; do
  # Exactly this name: 'ip netns list' prints "NAME" or "NAME (id: N)".
  if ip netns list | awk '{print $1}' | grep -qxF -- "$ns"; then
    echo "lab.sh: namespace $ns exists; remove it (ip netns del $ns) or set LAB_PREFIX" >&2; exit 1
  fi
done
ip netns add "$LAN"
ip netns add "$WAN"
in_lan ip link set lo up
in_wan ip link set lo up
in_lan ip tuntap add dev nat-in mode tun
in_wan ip tuntap add dev nat-out mode tun
in_lan ip addr add 192.168.122.101/24 dev nat-in    # the inside client
in_lan ip addr add 192.168.122.73/24 dev nat-in     # the inside server (DNAT target)
in_wan ip addr add 172.16.1.1/24 dev nat-out        # the outside server and client
# Dual stack: a unique-local prefix inside, the documentation prefix outside (RFC 3849),
# which exist only in these namespaces.
in_lan ip addr add fd00:122::101/64 dev nat-in nodad
in_lan ip addr add fd00:122::73/64 dev nat-in nodad
in_wan ip addr add 2001:db8:1::1/64 dev nat-out nodad
in_lan ip link set nat-in up
in_wan ip link set nat-out up
in_lan ip route add default dev nat-in              # inside hosts route through the router
in_lan ip -6 route add default dev nat-in
echo "   $LAN: 192.168.122.101, 192.168.122.73, fd00:122::101, fd00:122::73 on nat-in, default routes via nat-in"
echo "   $WAN: 172.16.1.1, 2001:db8:1::1 on nat-out"

say "starting tunnat (router 192.168.122.100 and fd00:122::100 inside, 172.16.1.186 and 2001:db8:1::186 outside)"
CMD=("$TUNNAT" --inside-tun nat-in --inside-netns "$LAN" --inside-addr 192.168.122.100/24
     --inside-addr fd00:122::100/64
     --outside-tun nat-out --outside-netns "$WAN" --outside-addr 172.16.1.186/24
     --outside-addr 2001:db8:1::186/64
     --dnat tcp:8888=192.168.122.73:9999 --dnat 'tcp:8888=[fd00:122::73]:9999'
     --nat64 64:ff9b:1::/96 --nat-pmp --pcp --upnp --alg ftp
     --control "$WORK/tunnat.sock" --pcap-dir "$WORK/pcap" --trace-filter tcp:8888 --trace-filter tcp:9999)
show "${CMD[*]}"
"${CMD[@]}" 2>"$WORK/tunnat.log" >"$WORK/trace.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^tunnat: ready' "$WORK/tunnat.log" && break; sleep 0.05; done
if ! grep -q '^tunnat: ready' "$WORK/tunnat.log"; then cat "$WORK/tunnat.log" >&2; echo "lab.sh: tunnat did not start" >&2; exit 1; fi
sed 's/^/   /' "$WORK/tunnat.log"

# An outside web server, and the inside server behind the port forward.
mkdir -p "$WORK/www"
echo "hello from the outside web server" >"$WORK/www/index.html"
ip netns exec "$WAN" python3 -m http.server 80 --bind 172.16.1.1 --directory "$WORK/www" >"$WORK/http.log" 2>&1 &
PIDS+=($!)
ip netns exec "$WAN" python3 -m http.server 80 --bind 2001:db8:1::1 --directory "$WORK/www" >"$WORK/http6.log" 2>&1 &
PIDS+=($!)
ip netns exec "$LAN" python3 -c '
import select, socket
socks = []
for family, addr in ((socket.AF_INET, "192.168.122.73"), (socket.AF_INET6, "fd00:122::73")):
    s = socket.socket(family); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 9999)); s.listen(8); socks.append(s)
while True:
    for s in select.select(socks, [], [])[0]:
        c, peer = s.accept()
        c.sendall(("hello from %s port 9999, you are %s port %d\n" % (c.getsockname()[0], peer[0], peer[1])).encode())
        c.close()
' &
PIDS+=($!)
for _ in $(seq 100); do
  in_wan python3 -c 'import socket; socket.create_connection(("172.16.1.1", 80), 1)' 2>/dev/null &&
  in_lan python3 -c 'import socket; socket.create_connection(("192.168.122.73", 9999), 1)' 2>/dev/null &&
  in_wan python3 -c 'import socket; socket.create_connection(("2001:db8:1::1", 80), 1)' 2>/dev/null && break
  sleep 0.05
done

say "scenario 1: the inside host browses the outside through NAPT"
show "ip netns exec $LAN curl http://172.16.1.1/"
OUT=$(in_lan curl -sS --max-time 5 http://172.16.1.1/ 2>&1 || true); echo "   $OUT"
expect "page fetched through the router" "hello from the outside web server" "$OUT"
LOG=$(cat "$WORK/http.log"); echo "   web server log: $(tail -n1 <<<"$LOG")"
expect "the web server saw the router's outside address" "^172.16.1.186 " "$LOG"
show "ip netns exec $LAN ping -c 2 172.16.1.1"
OUT=$(in_lan ping -c 2 -W 1 172.16.1.1 2>&1 || true); echo "$OUT" | sed 's/^/   /' | tail -n 2
expect "ping through NAPT" " 0% packet loss" "$OUT"
show "tunnat table --control $WORK/tunnat.sock"
OUT=$("$TUNNAT" table --control "$WORK/tunnat.sock" 2>&1 || true); echo "$OUT" | sed 's/^/   /'
expect "the mapping table lists the web connection" "192.168.122.101:.* 172.16.1.186:.* 172.16.1.1:80" "$OUT"
show "ip netns exec $LAN traceroute -n -q 1 172.16.1.1"
OUT=$(in_lan traceroute -n -q 1 -w 1 172.16.1.1 2>&1 || true); echo "$OUT" | sed 's/^/   /'
expect "traceroute shows the router as hop 1" " 1  192.168.122.100" "$OUT"

say "scenario 2: an outside client reaches 172.16.1.186:8888, forwarded to 192.168.122.73:9999"
show "ip netns exec $WAN curl telnet://172.16.1.186:8888"
OUT=$(in_wan python3 -c '
import socket; s = socket.create_connection(("172.16.1.186", 8888), 5)
print(s.recv(200).decode().strip(), "| connected to %s:%d" % s.getpeername())' 2>&1 || true); echo "   $OUT"
expect "the inside server answered and saw the real client" "you are 172.16.1.1 port" "$OUT"
expect "the client talked to the router's address" "connected to 172.16.1.186:8888" "$OUT"
echo "   the SYN before and after translation (tunnat --trace, the kernel LOG target's format):"
OUT=$(grep -m2 ' SYN ' "$WORK/trace.log" || true); echo "$OUT" | sed 's/^/   /'
expect "trace shows the SYN arriving for 8888" "PRE IN: IN=nat-out OUT= SRC=172.16.1.1 DST=172.16.1.186 .*DPT=8888" "$OUT"
expect "trace shows it leaving for 192.168.122.73:9999 with TTL 63" "POST OUT: IN= OUT=nat-in SRC=172.16.1.1 DST=192.168.122.73 .*TTL=63 .*DPT=9999" "$OUT"

say "scenario 3: Flash socket policy request on port 843 (outside, then inside)"
for target in "$WAN 172.16.1.186" "$LAN 192.168.122.100"; do
  set -- $target
  show "printf '<policy-file-request/>\\0' | ip netns exec $1 nc $2 843"
  OUT=$(ip netns exec "$1" python3 -c '
import socket, sys; s = socket.create_connection((sys.argv[1], 843), 3)
s.sendall(b"<policy-file-request/>\0"); d = b""
while True:
    x = s.recv(4096)
    if not x: break
    d += x
print(d.rstrip(b"\0").decode().rstrip())
print("(%d bytes, ends with NUL: %s)" % (len(d), "yes" if d.endswith(b">\n\0") else "NO"))' "$2" 2>&1 || true)
  echo "$OUT" | sed 's/^/   /'
  expect "policy XML from $2" '</cross-domain-policy>' "$OUT"
  expect "reply ends with NUL" 'ends with NUL: yes' "$OUT"
done

say "scenario 4: the same over IPv6 (NAT66, an IPv6 port forward, the policy, ping and traceroute)"
show "ip netns exec $LAN curl -6 'http://[2001:db8:1::1]/'"
OUT=$(in_lan curl -sS -6 --max-time 5 'http://[2001:db8:1::1]/' 2>&1 || true); echo "   $OUT"
expect "page fetched over IPv6 through the router" "hello from the outside web server" "$OUT"
LOG=$(cat "$WORK/http6.log"); echo "   web server log: $(tail -n1 <<<"$LOG")"
expect "the web server saw the router's outside IPv6 address" "^2001:db8:1::186 " "$LOG"
show "ip netns exec $WAN (connect to [2001:db8:1::186]:8888)"
OUT=$(in_wan python3 -c '
import socket; s = socket.create_connection(("2001:db8:1::186", 8888), 5)
print(s.recv(200).decode().strip(), "| connected to %s port %d" % s.getpeername()[:2])' 2>&1 || true); echo "   $OUT"
expect "the inside server answered over IPv6 and saw the real client" "you are 2001:db8:1::1 port" "$OUT"
expect "the client talked to the router's IPv6 address" "connected to 2001:db8:1::186 port 8888" "$OUT"
show "printf '<policy-file-request/>\\0' | ip netns exec $WAN nc 2001:db8:1::186 843"
OUT=$(in_wan python3 -c '
import socket; s = socket.create_connection(("2001:db8:1::186", 843), 3)
s.sendall(b"<policy-file-request/>\0"); d = b""
while True:
    x = s.recv(4096)
    if not x: break
    d += x
print("%d bytes, ends with NUL: %s" % (len(d), "yes" if d.endswith(b">\n\0") else "NO"))' 2>&1 || true); echo "   $OUT"
expect "policy over IPv6" "ends with NUL: yes" "$OUT"
show "ip netns exec $LAN ping -6 -c 2 2001:db8:1::1"
OUT=$(in_lan ping -6 -c 2 -W 1 2001:db8:1::1 2>&1 || true); echo "$OUT" | sed 's/^/   /' | tail -n 2
expect "ping over IPv6 through NAT66" " 0% packet loss" "$OUT"
show "ip netns exec $LAN traceroute -6 -n -q 1 2001:db8:1::1"
OUT=$(in_lan traceroute -6 -n -q 1 -w 1 2001:db8:1::1 2>&1 || true); echo "$OUT" | sed 's/^/   /'
expect "traceroute6 shows the router as hop 1" " 1  fd00:122::100" "$OUT"

say "scenario 5: NAT64, an IPv6 host reaching the IPv4 server at 64:ff9b:1::172.16.1.1"
show "ip netns exec $LAN curl -6 --interface fd00:122::101 'http://[64:ff9b:1::172.16.1.1]/'"
OUT=$(in_lan curl -sS -6 --interface fd00:122::101 --max-time 5 'http://[64:ff9b:1::172.16.1.1]/' 2>&1 || true); echo "   $OUT"
expect "page fetched from the IPv4 server over IPv6" "hello from the outside web server" "$OUT"
LOG=$(cat "$WORK/http.log"); echo "   web server log: $(tail -n1 <<<"$LOG")"
expect "the IPv4 web server saw the router's outside IPv4 address" "^172.16.1.186 " "$(tail -n1 <<<"$LOG")"
show "$TUNNAT table --control $WORK/tunnat.sock | grep fd00:122::101"
OUT=$("$TUNNAT" table --control "$WORK/tunnat.sock" 2>&1 | grep 'fd00:122::101' | grep '172.16.1.1' || true); echo "$OUT" | sed 's/^/   /' | head -n 2
expect "the NAT64 session is in the one table, with its IPv6 host" "\[fd00:122::101\]" "$OUT"

say "scenario 6: the inside host opens its own port forward with NAT-PMP (RFC 6886)"
show "ip netns exec $LAN (NAT-PMP: map TCP 9999 of 192.168.122.73 for 600 s; as natpmpc -g 192.168.122.100 -a 7000 9999 tcp 600)"
OUT=$(in_lan python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("192.168.122.73", 0)); s.settimeout(3)
s.sendto(struct.pack("!BBHHHI", 0, 2, 0, 9999, 7000, 600), ("192.168.122.100", 5351))
v, op, result, epoch, internal, external, life = struct.unpack("!BBHIHHI", s.recv(16))
print("result %d: public port %d -> 192.168.122.73:%d for %d s" % (result, external, internal, life))' 2>&1 || true); echo "   $OUT"
expect "the router mapped the port" "result 0: public port 7000 -> 192.168.122.73:9999" "$OUT"
show "ip netns exec $WAN (connect to 172.16.1.186:7000)"
OUT=$(in_wan python3 -c '
import socket; s = socket.create_connection(("172.16.1.186", 7000), 5)
print(s.recv(200).decode().strip())' 2>&1 || true); echo "   $OUT"
expect "the outside reached the inside server through the host's own mapping" "you are 172.16.1.1 port" "$OUT"
show "$TUNNAT dnat list --control $WORK/tunnat.sock"
OUT=$("$TUNNAT" dnat list --control "$WORK/tunnat.sock" 2>&1 || true); echo "$OUT" | sed 's/^/   /'
expect "the mapping is listed with its owner and lifetime" "tcp:7000=192.168.122.73:9999  (nat-pmp by 192.168.122.73, " "$OUT"

if [ "$KEEP" = 1 ]; then
  if [ "${LAB_USERNS:-0}" = 1 ]; then
    # Another shell reaches these namespaces through this script's user and mount
    # namespaces (where /run/netns is), entered with nsenter.
    ENTER="nsenter --preserve-credentials -U -m -t $$"
    say "the lab is up; try, in another shell, as ${LAB_USER:-the same user}:"
  else
    ENTER=""
    say "the lab is up; try, in another shell (as root):"
  fi
  pre() { echo "   ${ENTER:+$ENTER }$*"; }
  pre ip netns exec "$LAN" curl http://172.16.1.1/
  pre ip netns exec "$WAN" nc 172.16.1.186 8888
  pre ip netns exec "$LAN" traceroute -n 172.16.1.1
  pre ip netns exec "$LAN" curl -6 "http://[2001:db8:1::1]/"
  pre ip netns exec "$LAN" ping -6 64:ff9b:1::172.16.1.1      # NAT64
  pre ip netns exec "$LAN" natpmpc -g 192.168.122.100 -a 7001 9999 tcp 600   # NAT-PMP (Debian natpmpc)
  pre ip netns exec "$LAN" upnpc -i -l                             # UPnP IGD (Debian miniupnpc)
  pre "$TUNNAT" table --control "$WORK/tunnat.sock"
  pre "$TUNNAT" stats --control "$WORK/tunnat.sock"
  echo "   tail -f $WORK/trace.log           # tcp/8888 and tcp/9999 in LOG format"
  echo "   tcpdump -n -r $WORK/pcap/inside.pcap"
  read -r -p "   press Enter to tear the lab down " _ || true
fi

say "tunnat stats --control $WORK/tunnat.sock (excerpt)"
"$TUNNAT" stats --control "$WORK/tunnat.sock" 2>&1 | grep -E '^nat\.(forwarded|local|icmp|sessions |drops)' | sed 's/^/   /' || true
if [ "${LAB_USERNS:-0}" = 1 ]; then
  # tcpdump run as (namespace) root drops to its own user, which this user namespace
  # cannot switch to; read the capture with a few lines of Python instead. From outside,
  # as yourself, 'tcpdump -n -r' reads it as usual.
  show "the first packets of $WORK/pcap/outside.pcap (tcpdump -n -r, from outside the lab)"
  OUT=$(python3 - "$WORK/pcap/outside.pcap" <<'PY' 2>&1 || true
import socket, struct, sys
data = open(sys.argv[1], "rb").read()
order = ">" if data[:4] == bytes.fromhex("a1b2c3d4") else "<"  # the writer's byte order
at = 24  # the pcap file header; each record: ts_sec, ts_usec, caplen, len, then raw IP
while at + 16 <= len(data):
    _, _, cap, _ = struct.unpack_from(order + "IIII", data, at)
    p = data[at + 16:at + 16 + cap]
    at += 16 + cap
    if len(p) < 20 or p[0] >> 4 != 4:
        continue
    ihl = (p[0] & 15) * 4
    src, dst = socket.inet_ntoa(p[12:16]), socket.inet_ntoa(p[16:20])
    if p[9] in (6, 17) and len(p) >= ihl + 4:
        sp, dp = struct.unpack_from("!HH", p, ihl)
        print("IP %s.%d > %s.%d: %s" % (src, sp, dst, dp, "tcp" if p[9] == 6 else "udp"))
    else:
        print("IP %s > %s: proto %d" % (src, dst, p[9]))
PY
)
else
  show "tcpdump -n -r $WORK/pcap/outside.pcap (first lines)"
  if ! OUT=$(tcpdump -n -r "$WORK/pcap/outside.pcap" 2>&1); then
    echo "   FAILED: tcpdump could not read the capture: $(tail -n1 <<<"$OUT")"; FAILED=1
  fi
fi
grep -v '^reading from' <<<"$OUT" | head -n 4 | sed 's/^/   /' || true
expect "the capture holds the web connection" "IP 172.16.1.186.[0-9]* > 172.16.1.1.80:" "$OUT"
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" || true
say "tunnat's counters at exit"
sed -n '/stopping/,$p' "$WORK/tunnat.log" | sed 's/^/   /'

if [ "$CHECK" = 1 ] && [ "$FAILED" = 1 ]; then echo; echo "lab.sh: some scenarios FAILED" >&2; exit 1; fi
echo; echo "lab.sh: done"
