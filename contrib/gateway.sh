#!/bin/sh
# Makes tunnat the NAT of this machine's own traffic between two real interfaces, with
# the kernel as a plain router and no netfilter (README: "Using tunnat as a machine's
# gateway"). Run as root before tunnat starts; tunnat attaches to the devices made here.
#
#   contrib/gateway.sh up      wire it
#   contrib/gateway.sh down    unwire it
#
# The LAN hosts keep this machine's LAN address as their gateway. The kernel sends what
# they forward into tunnat's inside TUN (policy routing), tunnat writes it translated to
# its outside TUN, and the kernel routes it out of the uplink. tunnat's outside address
# is a second address on the uplink's network, which the kernel answers ARP for (proxy
# ARP) and routes into the outside TUN. Set these in the environment, or edit them:
set -eu
WAN_IF=${WAN_IF:-eth0}          # the uplink
LAN_IF=${LAN_IF:-eth1}          # the LAN
OUT_ADDR=${OUT_ADDR:-10.99.0.3} # tunnat's --outside-addr (without the prefix)
TUN_LAN=${TUN_LAN:-tun-lan}     # tunnat's --inside-tun
TUN_WAN=${TUN_WAN:-tun-wan}     # tunnat's --outside-tun
TABLE=${TABLE:-100}             # a routing table of its own

case "${1:-}" in
up)
  # Persistent devices, so the routes below survive tunnat's restarts.
  ip tuntap add dev "$TUN_LAN" mode tun
  ip tuntap add dev "$TUN_WAN" mode tun
  ip link set "$TUN_LAN" up
  ip link set "$TUN_WAN" up
  sysctl -qw net.ipv4.ip_forward=1
  # Replies come back from tunnat on the inside TUN with remote sources, which the
  # kernel reaches by the uplink: loose reverse-path filtering there.
  sysctl -qw "net.ipv4.conf.$TUN_LAN.rp_filter=2"
  # Inbound: tunnat's outside address is answered on the uplink and routed to its TUN.
  ip route add "$OUT_ADDR/32" dev "$TUN_WAN"
  ip neigh add proxy "$OUT_ADDR" dev "$WAN_IF"
  # Outbound: everything the LAN hosts send through this machine goes to tunnat. (What
  # is for this machine itself is delivered first, by the local table.)
  ip route add default dev "$TUN_LAN" table "$TABLE"
  ip rule add iif "$LAN_IF" lookup "$TABLE" pref 1000
  ;;
down)
  ip rule del iif "$LAN_IF" lookup "$TABLE" pref 1000 || true
  ip route flush table "$TABLE" || true
  ip neigh del proxy "$OUT_ADDR" dev "$WAN_IF" || true
  ip link del "$TUN_LAN" || true
  ip link del "$TUN_WAN" || true
  ;;
*)
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
