#!/usr/bin/env bash
# What the lab, the tests and the measuring scripts need, in one list, and where each
# command comes from on Debian.
#
#   scripts/deps.sh                 install (apt-get, as root) what any of them needs
#   scripts/deps.sh --check WHAT    say what WHAT (lab, test, bench, flood) lacks; exit 1 if anything
#   scripts/deps.sh --list WHAT     print the Debian packages WHAT needs
#
# lab.sh and test.sh run the check first, so a missing tool is named with its package
# before anything starts. cargo is not a Debian package here: install Rust with rustup.
set -euo pipefail

# command          Debian package       needed by   (py:M is the system Python's module M)
DEPS="
ip                 iproute2             lab test bench flood
python3            python3              lab test bench flood
curl               curl                 lab test
ping               iputils-ping         lab test bench flood
traceroute         traceroute           lab test
nsenter            util-linux           lab
unshare            util-linux           lab test
setpriv            util-linux           test
tcpdump            tcpdump              lab test
tshark             tshark               test
tracepath          iputils-tracepath    test
nc                 netcat-openbsd       test
socat              socat                test
iperf3             iperf3               test bench flood
iptables           iptables             test bench flood
hping3             hping3               test flood
dmesg              util-linux           test
ps                 procps               test
systemd-analyze    systemd              test
conntrack          conntrack            flood
unbound            unbound              test
tayga              tayga                test bench
perf               linux-perf           bench
trafgen            netsniff-ng          bench
taskset            util-linux           bench
chromium           chromium             test
py:pyftpdlib       python3-pyftpdlib    test
turnutils_natdiscovery coturn           test
natpmpc            natpmpc              test
upnpc              miniupnpc            test
miniupnpd          miniupnpd-nftables   test
nft                nftables             test
"

# Debian keeps ip, iptables and friends in /usr/sbin, which an ordinary user's PATH lacks.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

rows() { # rows WHAT: "command package" for each dependency of WHAT (all if empty)
  awk -v what="$1" 'NF >= 3 { for (i = 3; i <= NF; i++) if (what == "" || $i == what) { print $1, $2; break } }' <<<"$DEPS"
}

missing() { # missing WHAT: "command package" for each absent one ("py:M": the system
  # Python's module M)
  rows "$1" | while read -r cmd pkg; do
    case "$cmd" in
      py:*) /usr/bin/python3 -c "import ${cmd#py:}" >/dev/null 2>&1 || echo "$cmd $pkg" ;;
      *) command -v "$cmd" >/dev/null 2>&1 || echo "$cmd $pkg" ;;
    esac
  done
}

case "${1:-}" in
  --check)
    what=${2:?"--check lab|test|bench|flood"}
    gone=$(missing "$what")
    if [ -n "$gone" ]; then
      cmds=$(awk '{print $1}' <<<"$gone" | xargs)
      pkgs=$(awk '{print $2}' <<<"$gone" | sort -u | xargs)
      echo "$what needs $cmds, which this machine lacks." >&2
      echo "On Debian: apt-get install -y $pkgs   (or, as root: scripts/deps.sh)" >&2
      exit 1
    fi
    ;;
  --list)
    rows "${2:-}" | awk '{print $2}' | sort -u | xargs
    ;;
  "")
    if [ "$(id -u)" != 0 ]; then echo "deps.sh: installing needs root" >&2; exit 1; fi
    gone=$(missing "")
    if [ -z "$gone" ]; then echo "deps.sh: everything is installed"; exit 0; fi
    pkgs=$(awk '{print $2}' <<<"$gone" | sort -u | xargs)
    echo "== apt-get install -y $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q $pkgs
    ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "deps.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac
