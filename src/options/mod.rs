//! Every option of the router, defined once: its field, type, command-line flag, key in
//! the TOML config file, default, help text, and whether a reload may change it. From
//! that one table ([`options!`] below) come the [`Settings`] struct, the clap flags and
//! `--help`, the config file reader (unknown keys refused), the overlay of flags on the
//! file, the reload allow-list ([`restart_needed`]) and the README's option table (a unit
//! test keeps them equal). Adding an option is one entry here and, if the core needs a
//! typed value, one line in [`Settings::resolve`].
//!
//! Errors name what the user wrote: `--udp-timeout` for a flag, `'timeouts.udp' in FILE`
//! for a key of the config file ([`Settings::named`]).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Arg, ArgAction, ArgMatches};

use crate::config::{Config, PortConfig};
use crate::nat::icmp_limit::IcmpLimit;
use crate::nat::timeouts::{
    DEFAULT_ICMP, DEFAULT_TCP_ESTABLISHED, DEFAULT_TCP_HALF_OPEN, DEFAULT_TCP_TRANSITORY,
    DEFAULT_UDP,
};
use crate::nat::{
    ports::PORT_HOLD, DnatRule, Filtering, Ipv4Cidr, Ipv6Cidr, Limits, SynCookies, Timeouts,
};
use crate::port::netns;
use crate::port::uring::{DEFAULT_COALESCE_US, MAX_COALESCE_US, MAX_IO_BUFFERS, MIN_IO_BUFFERS};
use crate::services::policy::{DEFAULT_IDLE, DEFAULT_MAX_CLIENTS, DEFAULT_POLICY, DEFAULT_PORT};

#[macro_use]
mod define;

use define::{lookup, unknown_keys, Shown};
pub use define::{markdown_table, Kind, OptionInfo, Origin};

options! {
    /// TUN device of the inside (LAN) port; attached to if it exists, created otherwise.
    inside_tun: String = Value {
        flag: "inside-tun", key: "inside.tun", value: "NAME",
        default: None, shown: "required", restart
    }
    /// Network namespace to open the inside TUN in: a name under `/run/netns` (as `ip netns` makes) or a path such as `/proc/PID/ns/net`.
    inside_netns: String = Value {
        flag: "inside-netns", key: "inside.netns", value: "PATH",
        default: None, shown: "own namespace", restart
    }
    /// The router's inside address and the inside network, e.g. 192.168.122.100/24; only sources in this network are translated. Once per family: add an IPv6 one (`fd00:122::100/64`) for a dual-stack router doing NAT66, or give only that for an IPv6-only router; `--outside-addr` must have the same families, except with `--nat64` (IPv6 inside, IPv4 outside).
    inside_addr: Vec<String> = List {
        flag: "inside-addr", key: "inside.addr", value: "CIDR",
        default: None, shown: "required", restart
    }
    /// TUN device of the outside (WAN) port; attached to if it exists, created otherwise.
    outside_tun: String = Value {
        flag: "outside-tun", key: "outside.tun", value: "NAME",
        default: None, shown: "required", restart
    }
    /// Network namespace to open the outside TUN in, as for `--inside-netns`.
    outside_netns: String = Value {
        flag: "outside-netns", key: "outside.netns", value: "PATH",
        default: None, shown: "own namespace", restart
    }
    /// The router's outside address and network, e.g. 172.16.1.186/24; every inside host appears as this address. Once per family, as `--inside-addr` (`2001:db8:1::186/64`).
    outside_addr: Vec<String> = List {
        flag: "outside-addr", key: "outside.addr", value: "CIDR",
        default: None, shown: "required", restart
    }
    /// What the router does with IPv6 (when both ports have an IPv6 address): `nat` (NAT66: every inside host appears as the outside IPv6 address, like ip6tables MASQUERADE), `npt` (RFC 6296 prefix translation: stateless, one to one, checksum-neutral, ports untouched; both prefixes /48 to /64 and of equal length), or `route` (forwarded as it is, hop limit decremented, for inside hosts with addresses the outside reaches).
    ipv6: String = Value {
        flag: "ipv6", key: "ipv6", value: "MODE",
        default: Some("nat".to_string()), shown: "", restart
    }
    /// Stateful NAT64 (RFC 6146) through this prefix (RFC 6052: /32, /40, /48, /56, /64 or /96), e.g. `64:ff9b::/96`: inside IPv6 hosts reach IPv4 host A at PREFIX+A, leaving from the outside IPv4 address and sharing its ports with NAT44. Needs an IPv6 address on the inside port and an IPv4 one on the outside port. The well-known prefix 64:ff9b::/96 only stands for global IPv4 addresses (RFC 6052 section 3.1); a network-specific or local-use prefix (`64:ff9b:1::/96`, RFC 8215) for any. A port forward to an IPv6 target is then served on the outside IPv4 address too.
    nat64: String = Value {
        flag: "nat64", key: "nat64", value: "PREFIX",
        default: None, shown: "off", restart
    }
    /// What NAT64 does with an IPv4 UDP datagram without a checksum, which IPv6 cannot carry (RFC 7915 section 4.5): `compute` one, or `drop` it (counted). A fragmented one is always dropped.
    nat64_udp_zero_checksum: String = Value {
        flag: "nat64-udp-zero-checksum", key: "nat64-udp-zero-checksum", value: "compute|drop",
        default: Some("compute".to_string()), shown: "", restart
    }
    /// Port forwarding PROTO:PORT[-PORT]=IP[:PORT], repeatable: `tcp:8888=192.168.122.73:9999`; `udp:5000-5010=192.168.122.73` keeps the ports; `tcp:8000-8010=192.168.122.73:9000` shifts them; an IPv6 target goes in brackets, `tcp:8888=[fd00:122::73]:9999`, and forwards the outside IPv6 address's port. The target must be on the inside network; rules of a family may not overlap. Flags replace the file's list.
    dnat: Vec<String> = List {
        flag: "dnat", key: "dnat", value: "RULE",
        default: None, shown: "none", reload
    }
    /// TCP port of the Flash socket policy server on both router addresses; 0 turns it off.
    policy_port: u16 = Value {
        flag: "policy-port", key: "policy-port", value: "PORT",
        default: Some(DEFAULT_PORT), shown: "", restart
    }
    /// File holding the cross-domain policy XML to serve (the NUL is added).
    policy_file: PathBuf = Value {
        flag: "policy-file", key: "policy-file", value: "FILE",
        default: None, shown: "allow all", reload
    }
    /// Seconds a policy client may take to send its whole request before it is reset.
    policy_idle_timeout: f64 = Value {
        flag: "policy-idle-timeout", key: "policy-idle-timeout", value: "SECS",
        default: Some(DEFAULT_IDLE.as_secs_f64()), shown: "", reload
    }
    /// Most policy connections served at once on each port: the pool starts at 64 sockets and grows on demand up to this, before it resets the connections that have waited longest without a request.
    policy_max_clients: usize = Value {
        flag: "policy-max-clients", key: "policy-max-clients", value: "N",
        default: Some(DEFAULT_MAX_CLIENTS), shown: "", restart
    }
    /// Serve PCP (RFC 6887: MAP, PEER, ANNOUNCE) on UDP 5351 of the inside IPv4 address: inside hosts open their own port forwards, within `--portmap-rule`.
    pcp: bool = Switch {
        flag: "pcp", key: "pcp", value: "",
        default: Some(false), shown: "", restart
    }
    /// Serve NAT-PMP (RFC 6886) on UDP 5351 of the inside IPv4 address, beside PCP if both are on; the outside address is announced to 224.0.0.1:5350 at start.
    nat_pmp: bool = Switch {
        flag: "nat-pmp", key: "nat-pmp", value: "",
        default: Some(false), shown: "", restart
    }
    /// Serve UPnP IGD (v2, and v1 clients in v1's terms) to the inside network: SSDP answers to searches on 239.255.255.250:1900, the description and SOAP control over HTTP on the inside IPv4 address (`--upnp-port`).
    upnp: bool = Switch {
        flag: "upnp", key: "upnp", value: "",
        default: Some(false), shown: "", restart
    }
    /// TCP port of the UPnP HTTP server on the inside address.
    upnp_port: u16 = Value {
        flag: "upnp-port", key: "upnp-port", value: "PORT",
        default: Some(crate::portmap::upnp::DEFAULT_PORT), shown: "", restart
    }
    /// Who may map which ports with PCP, NAT-PMP or UPnP, in miniupnpd's form, repeatable and in order: `allow 1024-65535 192.168.122.0/24 1024-65535` (external ports, inside hosts, inside ports) or `deny ...`; the first that matches decides, and a request none matches is refused. Without rules: the inside network may map ports 1024-65535 to its ports 1024-65535. A host may only map to itself, never over a port forward or another host's mapping.
    portmap_rule: Vec<String> = List {
        flag: "portmap-rule", key: "portmap-rules", value: "RULE",
        default: None, shown: "inside network, ports 1024-65535", restart
    }
    /// Most port mappings (PCP, NAT-PMP, UPnP together) one inside host may hold.
    portmap_max_per_host: usize = Value {
        flag: "portmap-max-per-host", key: "portmap-max-per-host", value: "N",
        default: Some(crate::portmap::DEFAULT_PER_HOST), shown: "", restart
    }
    /// Longest lifetime granted to a port mapping, in seconds (a UPnP IGD v1 mapping with lease 0 is kept until deleted).
    portmap_max_lifetime: u64 = Value {
        flag: "portmap-max-lifetime", key: "portmap-max-lifetime", value: "SECS",
        default: Some(crate::portmap::DEFAULT_MAX_LIFETIME.as_secs()), shown: "", restart
    }
    /// Application-level gateways, repeatable: `ftp` rewrites the addresses in FTP's PORT/EPRT commands from inside clients and in 227/229 replies of servers behind a port forward (TCP port 21), opens the data connection for exactly that peer, and adjusts TCP sequence numbers when a line changes length (as the kernel's nf_nat_ftp).
    alg: Vec<String> = List {
        flag: "alg", key: "alg", value: "NAME",
        default: None, shown: "none", restart
    }
    /// Largest packet forwarded; a larger packet with DF set gets ICMP "fragmentation needed" with this MTU.
    mtu: usize = Value {
        flag: "mtu", key: "mtu", value: "N",
        default: Some(1500), shown: "", restart
    }
    /// MTU of the inside port, overriding `--mtu`, for a path whose two sides differ: a packet is checked against the port it leaves by.
    inside_mtu: usize = Value {
        flag: "inside-mtu", key: "inside.mtu", value: "N",
        default: None, shown: "--mtu", restart
    }
    /// MTU of the outside port, overriding `--mtu`.
    outside_mtu: usize = Value {
        flag: "outside-mtu", key: "outside.mtu", value: "N",
        default: None, shown: "--mtu", restart
    }
    /// Lower the MSS option of forwarded TCP SYNs to N, or to the leaving port's MTU minus 40 with `mtu` (RFC 4459 section 3.2), for paths where ICMP is filtered.
    clamp_mss: String = Value {
        flag: "clamp-mss", key: "clamp-mss", value: "N|mtu",
        default: None, shown: "off", reload
    }
    /// Idle timeout of UDP sessions, seconds (RFC 4787 REQ-5: at least 120).
    udp_timeout: u64 = Value {
        flag: "udp-timeout", key: "timeouts.udp", value: "SECS",
        default: Some(DEFAULT_UDP.as_secs()), shown: "", reload
    }
    /// Idle timeout of open TCP connections, seconds (RFC 5382 REQ-5: at least 7440).
    tcp_established_timeout: u64 = Value {
        flag: "tcp-established-timeout", key: "timeouts.tcp-established", value: "SECS",
        default: Some(DEFAULT_TCP_ESTABLISHED.as_secs()), shown: "", reload
    }
    /// Idle timeout of TCP connections that are opening, closing or reset, seconds (RFC 5382, RFC 7857).
    tcp_transitory_timeout: u64 = Value {
        flag: "tcp-transitory-timeout", key: "timeouts.tcp-transitory", value: "SECS",
        default: Some(DEFAULT_TCP_TRANSITORY.as_secs()), shown: "", reload
    }
    /// Idle timeout of TCP connections opened from outside whose handshake has not completed (a SYN answered, the remote's ACK not seen), seconds; what a SYN flood to a port forward leaves behind, like conntrack's SYN_RECV (60 s).
    tcp_half_open_timeout: u64 = Value {
        flag: "tcp-half-open-timeout", key: "timeouts.tcp-half-open", value: "SECS",
        default: Some(DEFAULT_TCP_HALF_OPEN.as_secs()), shown: "", reload
    }
    /// Idle timeout of ICMP echo sessions, seconds (RFC 5508 REQ-2: at least 60).
    icmp_timeout: u64 = Value {
        flag: "icmp-timeout", key: "timeouts.icmp", value: "SECS",
        default: Some(DEFAULT_ICMP.as_secs()), shown: "", reload
    }
    /// Which remotes may send to a mapped port: `endpoint-independent`, `address-dependent` or `address-and-port-dependent` (RFC 4787 section 5).
    filtering: String = Value {
        flag: "filtering", key: "filtering", value: "MODE",
        default: Some(Filtering::default().name().to_string()), shown: "", reload
    }
    /// Size of the session table. When it is full, the least recently used session idle at least its RFC minimum (UDP 120 s, ICMP 60 s, TCP 240 s opening or closing, 7440 s established) is evicted; if there is none, the new session gets ICMP 3/13.
    max_sessions: usize = Value {
        flag: "max-sessions", key: "max-sessions", value: "N",
        default: Some(Limits::default().max_sessions), shown: "", reload
    }
    /// Most mappings (inside endpoints with an external port).
    max_mappings: usize = Value {
        flag: "max-mappings", key: "max-mappings", value: "N",
        default: Some(Limits::default().max_mappings), shown: "", reload
    }
    /// Most mappings one inside address may hold (RFC 6888 REQ-4); beyond it, ICMP 3/13, so one host's flood of source ports cannot take the others' ports. The default is no limit: every short TCP connection holds a mapping for 240 s after it closes (RFC 5382), so a busy but honest client can hold tens of thousands.
    max_mappings_per_host: usize = Value {
        flag: "max-mappings-per-host", key: "max-mappings-per-host", value: "N",
        default: Some(Limits::default().max_mappings_per_host), shown: "", reload
    }
    /// Most half-open TCP sessions (opened from outside, handshake not complete) one port forward may hold; beyond, new SYNs are answered with SYN cookies (`--syn-cookies auto`) or evict the oldest of them (`off`). By default a quarter of `--max-sessions`.
    max_half_open: usize = Value {
        flag: "max-half-open", key: "max-half-open", value: "N",
        default: None, shown: "max-sessions / 4", reload
    }
    /// When the router answers SYNs to a port forward itself with SYN cookies and opens to the inside server only on the client's valid ACK (RFC 4987 section 3.6, netfilter's SYNPROXY): `auto` once the port forward holds `--max-half-open` half-open sessions, `always`, or `off`. Connections so made get no window scaling, SACK or timestamps.
    syn_cookies: String = Value {
        flag: "syn-cookies", key: "syn-cookies", value: "MODE",
        default: Some(SynCookies::default().name().to_string()), shown: "", reload
    }
    /// Seconds a released external port is kept from other inside hosts (RFC 6888); the host that had it may take it back at once.
    port_hold: u64 = Value {
        flag: "port-hold", key: "port-hold", value: "SECS",
        default: Some(PORT_HOLD.as_secs()), shown: "", reload
    }
    /// Most ICMP errors the router sends per second on average (time exceeded, unreachable, fragmentation needed), as Linux's `icmp_msgs_per_sec` (RFC 1812 section 4.3.2.8); 0 for no limit. Echo replies are not limited.
    icmp_rate: u32 = Value {
        flag: "icmp-rate", key: "icmp-rate", value: "N",
        default: Some(IcmpLimit::default().rate), shown: "", reload
    }
    /// Most ICMP errors the router sends at once, as Linux's `icmp_msgs_burst`.
    icmp_burst: u32 = Value {
        flag: "icmp-burst", key: "icmp-burst", value: "N",
        default: Some(IcmpLimit::default().burst), shown: "", reload
    }
    /// When the inside port is taken, pick an external port of the same parity (RFC 4787 REQ-4, for RTP/RTCP pairs).
    port_parity: bool = Switch {
        flag: "port-parity", key: "port-parity", value: "",
        default: Some(false), shown: "", reload
    }
    /// Seed the random choices (the external port when the inside one is taken, the router's own TCP sequence numbers) for reproducible runs; by default a random seed from the OS at each start (RFC 6056).
    seed: u64 = Value {
        flag: "seed", key: "seed", value: "N",
        default: None, shown: "random", restart
    }
    /// Open the TUNs without offloads (`offload = false` in the file): one MTU-sized packet per read and write, every checksum complete. By default tunnat asks the kernel for partial checksums and TCP/UDP segmentation offload, so a read or write carries up to 64 KB; if the kernel refuses, tunnat says so and runs without.
    offload: bool = NoSwitch {
        flag: "no-offload", key: "offload", value: "",
        default: Some(true), shown: "", restart
    }
    /// Move packets with read and write calls, one packet each, instead of io_uring (`io-uring = false` in the file). By default tunnat uses io_uring where the kernel has it (Linux 6.7 and later, not disabled by `kernel.io_uring_disabled`): one multishot read per port and batched writes, many packets per system call; where it has not, tunnat says so and uses read and write calls.
    io_uring: bool = NoSwitch {
        flag: "no-io-uring", key: "io-uring", value: "",
        default: Some(true), shown: "", restart
    }
    /// Write each UDP datagram on its own instead of joining those of one flow that leave in one io_uring batch into a UDP GSO super-packet (`udp-gro = false` in the file). By default, with offloads and io_uring on a kernel with UDP segmentation offload (Linux 6.2 and later), up to 64 datagrams of one flow go to the kernel in one write and it splits them again, as the kernel's own UDP GRO does: the same datagrams arrive (a DF datagram's IPv4 identification may be renumbered, RFC 6864), for less work per datagram. Traces and captures show each datagram.
    udp_gro: bool = NoSwitch {
        flag: "no-udp-gro", key: "udp-gro", value: "",
        default: Some(true), shown: "", restart
    }
    /// Under load, let a batch gather for up to USECS microseconds before tunnat wakes for it, as a NIC's interrupt coalescing (`ethtool -C rx-usecs`) does; 0, the default, is off. It saves wakeups on a machine fast enough to sleep after every few packets, for up to USECS more latency; 50 is a NIC's usual window. Only a wait after a turn that moved eight packets or more holds out, and the first packet after the window ends the wait, so packets that come alone or in a few (a ping, a handshake, a TCP flow's segments and ACKs) are not held back; a packet in a stream may wait up to USECS. Needs io_uring on Linux 6.12 or later (its `min_wait_usec`, with deferred task work); elsewhere tunnat says so and wakes for every packet. At most 1000.
    coalesce_us: u32 = Value {
        flag: "coalesce-us", key: "coalesce-us", value: "USECS",
        default: Some(DEFAULT_COALESCE_US), shown: "", restart
    }
    /// Buffers per port for io_uring's reads, as a NIC's receive ring (`ethtool -G rx`): how many packets of a port tunnat can read in one turn, a power of two from 8 to 128. Each has room for a 64 KB super-packet, but pages never written take no memory. More buffers take floods of small packets in larger batches (64 instead of 16 moved 12% more 64-byte UDP with four flows, and 25% more on a core of the router's own); fewer touch less memory, which costs less CPU per packet (16 instead of 64 took 5–7% less at 40 kpps and per TCP segment) and, with offloads, when TCP streams fill them, less memory (16 buffers on each port take about 2 MB in all, 64 about 8 MB).
    io_buffers: u16 = Value {
        flag: "io-buffers", key: "io-buffers", value: "N",
        default: None, shown: "16 with offloads, 64 without", restart
    }
    /// Make the TUN devices persistent (TUNSETPERSIST): they, and the addresses and routes their namespaces gave them, outlive tunnat, so a restart finds them as they were. A port whose device is deleted is then not fatal: tunnat waits for a device of that name to come back in its namespace and attaches to it. Delete the devices with `ip link del NAME` when done.
    persist: bool = Switch {
        flag: "persist", key: "persist", value: "",
        default: Some(false), shown: "", restart
    }
    /// On SIGTERM or SIGINT (and when a port is lost), save the sessions and the port forwards added at run time to FILE (written whole, then renamed into place; mode 0600); at start, carry on from FILE if it is there, less what timed out meanwhile, then remove it. A file that cannot be read whole, or was saved with other router addresses, is refused and tunnat does not start. With `--persist`, connections through the router survive a restart.
    state_file: PathBuf = Value {
        flag: "state-file", key: "state-file", value: "FILE",
        default: None, shown: "off", restart
    }
    /// Print every packet on standard output in the kernel LOG target's format: `PRE IN:` as read from a port, `POST OUT:` as written to one.
    trace: bool = Switch {
        flag: "trace", key: "trace", value: "",
        default: Some(false), shown: "", restart
    }
    /// Trace only `tcp`, `udp`, `icmp`, `tcp:PORT` or `udp:PORT` (either port); repeatable; implies `--trace`.
    trace_filter: Vec<String> = List {
        flag: "trace-filter", key: "trace-filter", value: "FILTER",
        default: None, shown: "all", restart
    }
    /// Write every packet crossing the inside port to DIR/inside.pcap, the outside port to DIR/outside.pcap, for `tcpdump -r` or Wireshark: as read from the TUN before translation and as written after, raw IP without a link header (LINKTYPE_RAW). That is all a TUN carries, not only what tunnat forwards: the namespace kernels' own packets, such as IPv6 router solicitations, which tunnat counts and drops, are in the files too.
    pcap_dir: PathBuf = Value {
        flag: "pcap-dir", key: "pcap-dir", value: "DIR",
        default: None, shown: "off", restart
    }
    /// Paired captures for teaching: DIR/inside.pcapng and DIR/outside.pcapng, each packet with a comment (Wireshark's `frame.comment`) naming the packet it became or came from on the other side, what was rewritten, and the session: `-> outside #3: src 192.168.122.101:40000 -> 172.16.1.186:40000; session tcp ...`. A packet not forwarded is marked so.
    pcap_pair: PathBuf = Value {
        flag: "pcap-pair", key: "pcap-pair", value: "DIR",
        default: None, shown: "off", restart
    }
    /// Keep the headers of the last N packets that crossed the ports (each read, each write, tied to the packet that caused it), for the ladder diagrams of `tunnat web`; 0 turns it off, and the data path then pays nothing for it.
    event_ring: usize = Value {
        flag: "event-ring", key: "event-ring", value: "N",
        default: Some(0), shown: "", restart
    }
    /// Listen on this Unix socket for `tunnat table`, `stats`, `dnat` and `reload`. It is created mode 0660; only a stale socket already at PATH is replaced. Requests that change the router (`dnat add`, `dnat del`, `reload`) are taken from root and tunnat's own user only; read-only ones from its group too.
    control: PathBuf = Value {
        flag: "control", key: "control", value: "PATH",
        default: None, shown: "off", restart
    }
    /// Give the control socket to this group (a name or a number); its members may use every request, including those that change the router.
    control_group: String = Value {
        flag: "control-group", key: "control-group", value: "GROUP",
        default: None, shown: "tunnat's group", restart
    }
}

impl Settings {
    /// The README lab's flags (for tests).
    #[cfg(any(test, feature = "fuzz"))]
    pub fn lab() -> Settings {
        Settings {
            inside_tun: Some("nat-in".into()),
            inside_addr: Some(vec!["192.168.122.100/24".into()]),
            outside_tun: Some("nat-out".into()),
            outside_addr: Some(vec!["172.16.1.186/24".into()]),
            dnat: Some(vec!["tcp:8888=192.168.122.73:9999".into()]),
            ..Settings::default()
        }
    }

    /// Reads a TOML config file, refusing keys that are no option's.
    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("config file {}", path.display()))?;
        Settings::from_toml(&text, path)
    }

    /// Reads config file text (`path` names it in errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow!("config file {}: {e}", path.display()))?;
        let mut unknown = Vec::new();
        unknown_keys(&table, "", &mut unknown);
        if let Some(k) = unknown.first() {
            bail!(
                "config file {}: unknown key '{k}' (the keys are the long option names, e.g. 'udp-timeout' is 'udp' under [timeouts]; see tunnat --help)",
                path.display()
            );
        }
        Settings::from_table(&table, path)
    }

    /// How the user wrote option `field`: `--flag`, or `'key' in FILE` when it came from
    /// the config file.
    pub fn named(&self, field: &str) -> String {
        let Some(o) = OPTIONS.iter().find(|o| o.field == field) else {
            return field.to_string();
        };
        match self.origins.get(o.field) {
            Some(Origin::File(f)) => format!("'{}' in {}", o.key, f.display()),
            _ => format!("--{}", o.flag),
        }
    }

    /// Applies defaults and parses every value into a [`Config`] (not yet validated).
    pub fn resolve(&self) -> Result<Config> {
        let port = |side: &str,
                    tun: Option<String>,
                    netns: Option<String>,
                    addrs: Option<Vec<String>>| {
            let tun = tun.ok_or_else(|| {
                anyhow!("--{side}-tun is required (or 'tun' under [{side}] in the config file)")
            })?;
            let named = self.named(&format!("{side}_addr"));
            let (mut v4, mut v6) = (None, None);
            for a in addrs.unwrap_or_default() {
                if a.contains(':') {
                    let c: Ipv6Cidr = a.parse().map_err(|e| anyhow!("{named}: {e}"))?;
                    if v6.replace(c).is_some() {
                        bail!("{named} {a}: an IPv6 address was given already (once per family)");
                    }
                } else {
                    let c: Ipv4Cidr = a.parse().map_err(|e| anyhow!("{named}: {e}"))?;
                    if v4.replace(c).is_some() {
                        bail!("{named} {a}: an IPv4 address was given already (once per family)");
                    }
                }
            }
            if v4.is_none() && v6.is_none() {
                bail!(
                    "--{side}-addr is required: an IPv4 address, an IPv6 one, or both (or 'addr' under [{side}] in the config file)"
                );
            }
            Ok::<_, anyhow::Error>(PortConfig {
                tun,
                netns: netns.as_deref().map(netns::resolve),
                cidr: v4,
                cidr6: v6,
            })
        };
        let (mut dnat, mut dnat6) = (Vec::new(), Vec::new());
        for r in self.dnat().iter().flatten() {
            let bad = |e: String| anyhow!("{} {e}", self.named("dnat"));
            if crate::nat::dnat::is_ipv6_rule(r) {
                dnat6.push(r.parse::<DnatRule<Ipv6Addr>>().map_err(bad)?);
            } else {
                dnat.push(r.parse::<DnatRule>().map_err(bad)?);
            }
        }
        let policy = match self.policy_file() {
            Some(p) => std::fs::read(&p)
                .with_context(|| format!("{} {}", self.named("policy_file"), p.display()))?,
            None => DEFAULT_POLICY.as_bytes().to_vec(),
        };
        let coalesce_us = self.coalesce_us().unwrap_or_default();
        if coalesce_us > MAX_COALESCE_US {
            bail!(
                "{} {coalesce_us}: at most {MAX_COALESCE_US} (1 ms)",
                self.named("coalesce_us")
            );
        }
        let io_buffers = self.io_buffers();
        if let Some(n) = io_buffers {
            if !(n.is_power_of_two() && (MIN_IO_BUFFERS..=MAX_IO_BUFFERS).contains(&n)) {
                bail!(
                    "{} {n}: must be a power of two from {MIN_IO_BUFFERS} to {MAX_IO_BUFFERS}",
                    self.named("io_buffers")
                );
            }
        }
        let idle = self.policy_idle_timeout().unwrap_or_default();
        if !(idle > 0.0 && idle <= 3600.0) {
            bail!(
                "{} {idle}: must be above 0 and at most 3600",
                self.named("policy_idle_timeout")
            );
        }
        let secs = |v: Option<u64>| Duration::from_secs(v.unwrap_or_default());
        let filtering: Filtering = self
            .filtering()
            .unwrap_or_default()
            .parse()
            .map_err(|e| anyhow!("{} {e}", self.named("filtering")))?;
        let syn_cookies: SynCookies = self
            .syn_cookies()
            .unwrap_or_default()
            .parse()
            .map_err(|e| anyhow!("{} {e}", self.named("syn_cookies")))?;
        let trace_filters = self
            .trace_filter()
            .iter()
            .flatten()
            .map(|f| {
                f.parse()
                    .map_err(|e| anyhow!("{} {e}", self.named("trace_filter")))
            })
            .collect::<Result<Vec<_>>>()?;
        let clamp_mss = match self.clamp_mss() {
            Some(c) => Some(
                c.parse()
                    .map_err(|e| anyhow!("{} {e}", self.named("clamp_mss")))?,
            ),
            None => None,
        };
        Ok(Config {
            inside: port(
                "inside",
                self.inside_tun(),
                self.inside_netns(),
                self.inside_addr(),
            )?,
            outside: port(
                "outside",
                self.outside_tun(),
                self.outside_netns(),
                self.outside_addr(),
            )?,
            dnat,
            dnat6,
            ipv6: self
                .ipv6()
                .unwrap_or_default()
                .parse()
                .map_err(|e| anyhow!("{} {e}", self.named("ipv6")))?,
            nat64: match self.nat64() {
                Some(p) => Some(
                    p.parse()
                        .map_err(|e| anyhow!("{} {p}: {e}", self.named("nat64")))?,
                ),
                None => None,
            },
            nat64_udp_zero_compute: match self.nat64_udp_zero_checksum().as_deref() {
                Some("compute") | None => true,
                Some("drop") => false,
                Some(x) => bail!(
                    "{} {x}: is not compute or drop",
                    self.named("nat64_udp_zero_checksum")
                ),
            },
            policy_port: self.policy_port().unwrap_or_default(),
            policy,
            policy_idle: Duration::from_secs_f64(idle),
            policy_max_clients: self.policy_max_clients().unwrap_or_default(),
            pcp: self.pcp().unwrap_or_default(),
            nat_pmp: self.nat_pmp().unwrap_or_default(),
            upnp: self.upnp().unwrap_or_default(),
            upnp_port: self.upnp_port().unwrap_or_default(),
            portmap_rules: (self.portmap_rule().unwrap_or_default().iter())
                .map(|r| {
                    r.parse()
                        .map_err(|e| anyhow!("{} {e}", self.named("portmap_rule")))
                })
                .collect::<Result<_>>()?,
            portmap_max_per_host: self.portmap_max_per_host().unwrap_or_default(),
            portmap_max_lifetime: Duration::from_secs(
                self.portmap_max_lifetime().unwrap_or_default(),
            ),
            alg_ftp: {
                let mut ftp = false;
                for a in self.alg().unwrap_or_default() {
                    match a.as_str() {
                        "ftp" => ftp = true,
                        x => bail!("{} {x}: unknown (known: ftp)", self.named("alg")),
                    }
                }
                ftp
            },
            mtu: self.mtu().unwrap_or_default(),
            inside_mtu: self.inside_mtu(),
            outside_mtu: self.outside_mtu(),
            clamp_mss,
            timeouts: Timeouts {
                udp: secs(self.udp_timeout()),
                tcp_established: secs(self.tcp_established_timeout()),
                tcp_transitory: secs(self.tcp_transitory_timeout()),
                icmp: secs(self.icmp_timeout()),
                tcp_half_open: secs(self.tcp_half_open_timeout()),
            },
            filtering,
            limits: Limits {
                max_sessions: self.max_sessions().unwrap_or_default(),
                max_mappings: self.max_mappings().unwrap_or_default(),
                max_mappings_per_host: self.max_mappings_per_host().unwrap_or_default(),
            },
            port_hold: Duration::from_secs(self.port_hold().unwrap_or_default()),
            port_parity: self.port_parity().unwrap_or_default(),
            seed: self.seed(),
            max_half_open: self
                .max_half_open()
                .unwrap_or((self.max_sessions().unwrap_or_default() / 4).max(1)),
            syn_cookies,
            icmp_limit: IcmpLimit {
                rate: self.icmp_rate().unwrap_or_default(),
                burst: self.icmp_burst().unwrap_or_default(),
            },
            offload: self.offload().unwrap_or_default(),
            io_uring: self.io_uring().unwrap_or_default(),
            udp_gro: self.udp_gro().unwrap_or_default(),
            coalesce_us,
            io_buffers,
            persist: self.persist().unwrap_or_default(),
            state_file: self.state_file(),
            trace: self.trace().unwrap_or_default() || !trace_filters.is_empty(),
            trace_filters,
            pcap_dir: self.pcap_dir(),
            pcap_pair: self.pcap_pair(),
            event_ring: self.event_ring().unwrap_or_default(),
            control: self.control(),
            control_group: match self.control_group() {
                Some(g) => {
                    Some(group_id(&g).map_err(|e| anyhow!("{} {e}", self.named("control_group")))?)
                }
                None => None,
            },
            settings: self.clone(),
        })
    }
}

/// The id of group `name` (a name in /etc/group, or a number).
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let groups =
        std::fs::read_to_string("/etc/group").map_err(|e| format!("'{name}': /etc/group: {e}"))?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| format!("'{name}': no such group"))
}

/// Refuses a reload that changes what only a restart can change, naming the options.
pub fn reloadable(old: &Config, new: &Config) -> Result<()> {
    let changed = old.settings.restart_needed(&new.settings);
    if !changed.is_empty() {
        let names: Vec<String> = changed.iter().map(|f| format!("--{f}")).collect();
        bail!(
            "{} changed: that needs a restart (a reload may change {})",
            names.join(", "),
            OPTIONS
                .iter()
                .filter(|o| o.reload)
                .map(|o| o.flag)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Where the configuration came from, kept for reloads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub command_line: Settings,
}

impl Sources {
    /// Reads the file (if any), overlays the command line, resolves and validates.
    pub fn load(&self) -> Result<Config> {
        let base = match &self.file {
            Some(f) => Settings::from_file(f)?,
            None => Settings::default(),
        };
        let cfg = base.overlay(&self.command_line).resolve()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use clap::{Args, FromArgMatches};

    const FILE: &str = r#"
dnat = ["tcp:8888=192.168.122.73:9999"]
filtering = "endpoint-independent"

[inside]
tun = "nat-in"
netns = "lan"
addr = "192.168.122.100/24"

[outside]
tun = "nat-out"
addr = "172.16.1.186/24"

[timeouts]
udp = 30
"#;

    fn file() -> Settings {
        Settings::from_toml(FILE, Path::new("lab.toml")).unwrap()
    }

    fn flags(args: &[&str]) -> Settings {
        let cmd = Settings::augment_args(clap::Command::new("tunnat"));
        let m = cmd
            .try_get_matches_from(std::iter::once("tunnat").chain(args.iter().copied()))
            .unwrap();
        Settings::from_arg_matches(&m).unwrap()
    }

    /// The lab file with the file text `toml` laid over it, resolved.
    fn with_file(toml: &str) -> Result<Config> {
        file()
            .overlay(&Settings::from_toml(toml, Path::new("lab.toml")).unwrap())
            .resolve()
    }

    /// The lab file with the flags `args` laid over it, resolved.
    fn with_flags(args: &[&str]) -> Result<Config> {
        file().overlay(&flags(args)).resolve()
    }

    #[test]
    fn file_then_flags() {
        let c = with_flags(&["--filtering", "address-and-port-dependent"]).unwrap();
        assert_eq!(c.inside.netns.as_deref(), Some(Path::new("/run/netns/lan")));
        assert_eq!(c.dnat.len(), 1);
        assert_eq!(c.filtering, Filtering::AddressAndPortDependent);
        assert_eq!(c.timeouts.udp, Duration::from_secs(30));
        assert_eq!(c.timeouts.icmp, Duration::from_secs(60), "default kept");
        assert_eq!(c.policy_port, 843);
        assert_eq!(c.port_hold, PORT_HOLD);
    }

    #[test]
    fn switches_and_lists_from_flags() {
        let s = flags(&[
            "--no-offload",
            "--port-parity",
            "--dnat",
            "udp:1=10.0.0.1",
            "--dnat",
            "udp:2=10.0.0.1",
        ]);
        assert_eq!(s.offload, Some(false));
        assert_eq!(s.port_parity, Some(true));
        assert_eq!(s.trace, None, "a switch not given says nothing");
        assert_eq!(s.dnat.as_ref().map(Vec::len), Some(2));
        // A single rule may be written as a string in the file.
        let f = Settings::from_toml("dnat = \"udp:1=10.0.0.1\"", Path::new("x.toml")).unwrap();
        assert_eq!(f.dnat, Some(vec!["udp:1=10.0.0.1".to_string()]));
    }

    #[test]
    fn unknown_keys_and_missing_values_are_named() {
        let e = Settings::from_toml("mtuu = 3", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'mtuu'") && e.contains("x.toml"), "{e}");
        let e = Settings::from_toml("[timeouts]\nudpp = 3", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'timeouts.udpp'"), "{e}");
        let e = Settings::default().resolve().unwrap_err().to_string();
        assert!(e.contains("--inside-tun is required"), "{e}");
    }

    #[test]
    fn errors_name_the_flag_or_the_file_key() {
        let bad = Settings::from_toml(
            &format!("{FILE}tcp-established = \"long\"\n"),
            Path::new("lab.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("'timeouts.tcp-established' in lab.toml"),
            "{bad}"
        );
        let e = with_file("filtering = \"strict\"").unwrap_err().to_string();
        assert!(e.starts_with("'filtering' in lab.toml 'strict'"), "{e}");
        let e = with_flags(&["--filtering", "strict"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--filtering 'strict'"), "{e}");
        let mut c = with_file("mtu = 100").unwrap();
        c.inside.netns = None;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("'mtu' in lab.toml 100"), "{e}");
    }

    #[test]
    fn io_buffers_default_to_the_offloads_and_must_be_a_power_of_two() {
        assert_eq!(
            file().resolve().unwrap().io_buffers,
            None,
            "left to the driver"
        );
        assert_eq!(with_file("io-buffers = 64").unwrap().io_buffers, Some(64));
        for bad in ["48", "4", "256"] {
            let e = with_flags(&["--io-buffers", bad]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--io-buffers {bad}: must be a power of two")),
                "{e}"
            );
        }
        let e = with_file("io-buffers = 12").unwrap_err().to_string();
        assert!(e.starts_with("'io-buffers' in lab.toml 12"), "{e}");
    }

    #[test]
    fn reload_is_an_allow_list() {
        let old = file().resolve().unwrap();
        let mut b = file();
        b.udp_timeout = Some(60);
        b.dnat = Some(vec![]);
        reloadable(&old, &b.resolve().unwrap()).unwrap();
        // The same value written out is no change.
        b.mtu = Some(1500);
        reloadable(&old, &b.resolve().unwrap()).unwrap();
        b.outside_addr = Some(vec!["172.16.1.187/24".into()]);
        b.mtu = Some(1400);
        let e = reloadable(&old, &b.resolve().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--outside-addr, --mtu changed: that needs a restart"),
            "{e}"
        );
        // Every option says one way or the other, and the ports never reload.
        for o in OPTIONS
            .iter()
            .filter(|o| o.key.starts_with("inside.") || o.key.starts_with("outside."))
        {
            assert!(!o.reload, "{}", o.flag);
        }
    }

    #[test]
    fn every_option_has_a_flag_a_key_and_help() {
        let cmd = Settings::augment_args(clap::Command::new("tunnat"));
        for o in OPTIONS {
            let a = cmd
                .get_arguments()
                .find(|a| a.get_id() == o.field)
                .unwrap_or_else(|| panic!("{} has no argument", o.field));
            assert_eq!(a.get_long(), Some(o.flag));
            assert!(a.get_help().is_some_and(|h| !h.to_string().is_empty()));
            assert!(!o.doc.trim().is_empty());
        }
        let mut keys: Vec<_> = OPTIONS.iter().map(|o| o.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), OPTIONS.len(), "keys are unique");
    }

    #[test]
    fn dual_stack_addresses_once_per_family_and_ipv6_port_forwards() {
        let c = flags(&[
            "--inside-tun",
            "a",
            "--outside-tun",
            "b",
            "--inside-addr",
            "192.168.122.100/24",
            "--inside-addr",
            "fd00:122::100/64",
            "--outside-addr",
            "172.16.1.186/24",
            "--outside-addr",
            "2001:db8:1::186/64",
            "--dnat",
            "tcp:8888=[fd00:122::73]:9999",
            "--dnat",
            "tcp:8888=192.168.122.73:9999",
        ])
        .resolve()
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.inside.cidr6.unwrap().to_string(), "fd00:122::100/64");
        assert_eq!((c.dnat.len(), c.dnat6.len()), (1, 1));
        let n6 = c.nat6().unwrap();
        assert_eq!(
            n6.outside.addr,
            "2001:db8:1::186".parse::<Ipv6Addr>().unwrap()
        );
        // The file may give one address as a string, or both as a list.
        let f = Settings::from_toml(
            "[inside]\naddr = [\"192.168.122.100/24\", \"fd00:122::100/64\"]\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(f.inside_addr.map(|v| v.len()), Some(2));
        let base = [
            "--inside-tun",
            "a",
            "--outside-tun",
            "b",
            "--outside-addr",
            "172.16.1.186/24",
        ];
        let err = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            match flags(&a).resolve() {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            }
        };
        let e = err(&[
            "--inside-addr",
            "192.168.122.100/24",
            "--inside-addr",
            "10.0.0.1/8",
        ]);
        assert!(e.contains("an IPv4 address was given already"), "{e}");
        let e = err(&["--inside-addr", "fd00:122::100/64"]);
        assert!(
            e.contains("--inside-addr has an IPv6 address and --outside-addr has none")
                || e.contains("IPv4 address and"),
            "{e}"
        );
        // IPv6 alone on both ports is a router too.
        let c = flags(&[
            "--inside-tun",
            "a",
            "--outside-tun",
            "b",
            "--inside-addr",
            "fd00:122::100/64",
            "--outside-addr",
            "2001:db8:1::186/64",
        ])
        .resolve()
        .unwrap();
        c.validate().unwrap();
        assert!(c.nat().is_none() && c.nat6().is_some());
        let e = flags(&[
            "--inside-tun",
            "a",
            "--outside-tun",
            "b",
            "--inside-addr",
            "fd00:122::100/64",
            "--outside-addr",
            "2001:db8:1::186/64",
            "--outside-mtu",
            "1000",
        ])
        .resolve()
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--outside-mtu 1000: IPv6 needs an MTU of at least 1280"),
            "{e}"
        );
        let e = err(&[
            "--inside-addr",
            "192.168.122.100/24",
            "--inside-addr",
            "fd00:122::100/64",
        ]);
        assert!(
            e.contains("--inside-addr has an IPv6 address and --outside-addr has none"),
            "{e}"
        );
        let e = err(&[
            "--inside-addr",
            "192.168.122.100/24",
            "--dnat",
            "tcp:1=[fd00::1]",
        ]);
        assert!(e.contains("needs IPv6 addresses on both ports"), "{e}");
    }

    #[test]
    fn the_service_config_in_contrib_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/tunnat.toml");
        let c = Settings::from_file(&path).unwrap().resolve().unwrap();
        c.validate().unwrap();
        assert!(c.persist && c.state_file.is_some() && c.control.is_some());
    }

    /// The README's option table is generated from [`OPTIONS`]: this test fails when they
    /// differ, and `UPDATE_README=1 cargo test` rewrites it.
    #[test]
    fn the_readme_table_is_the_option_table() {
        const BEGIN: &str = "<!-- options: generated from src/options/mod.rs; UPDATE_README=1 cargo test rewrites it -->\n";
        const END: &str = "<!-- end of options -->";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let start = readme
            .find(BEGIN)
            .expect("the README marks the option table")
            + BEGIN.len();
        let end = start + readme[start..].find(END).expect("the table's end marker");
        let want = markdown_table();
        if readme[start..end] != want {
            if std::env::var_os("UPDATE_README").is_some() {
                let new = format!("{}{want}{}", &readme[..start], &readme[end..]);
                std::fs::write(&path, new).unwrap();
            } else {
                panic!("README.md's option table differs from src/options/mod.rs; run UPDATE_README=1 cargo test.\nIt should be:\n{want}");
            }
        }
    }
}
