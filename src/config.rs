//! The router's configuration, checked once at start: every problem is reported with a
//! message naming the option and the value, before any device is opened.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::nat::icmp_limit::IcmpLimit;
use crate::nat::timeouts::{
    RFC_MIN_ICMP, RFC_MIN_TCP_ESTABLISHED, RFC_MIN_TCP_TRANSITORY, RFC_MIN_UDP,
};
use crate::nat::{
    DnatRule, Filtering, Ipv4Cidr, Ipv6Cidr, Limits, MssClamp, NatConfig, SynCookies, Timeouts,
};
use crate::options::Settings;
use crate::port::tracer::TraceFilter;
use crate::wire::transport::Protocol;

/// One port of the router.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub tun: String,
    /// Network namespace to open the TUN in (`None`: tunnat's own).
    pub netns: Option<PathBuf>,
    /// The router's IPv4 address on this port, with the network's prefix (none on an
    /// IPv6-only router).
    pub cidr: Option<Ipv4Cidr>,
    /// Its IPv6 address and prefix, on a dual-stack router.
    pub cidr6: Option<Ipv6Cidr>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub inside: PortConfig,
    pub outside: PortConfig,
    pub dnat: Vec<DnatRule>,
    /// What the IPv6 core does: NAT66, prefix translation or routing (`--ipv6`).
    pub ipv6: crate::nat::Mode,
    /// Port forwards to IPv6 inside hosts (written with the target in brackets).
    pub dnat6: Vec<DnatRule<Ipv6Addr>>,
    /// Stateful NAT64 through this prefix (`--nat64`).
    pub nat64: Option<crate::nat::prefix64::Prefix64>,
    /// Compute the checksum of an IPv4 UDP datagram without one for IPv6 (else drop it).
    pub nat64_udp_zero_compute: bool,
    /// TCP port of the policy server; 0 turns it off.
    pub policy_port: u16,
    /// Policy XML sent to clients (without the NUL).
    pub policy: Vec<u8>,
    pub policy_idle: Duration,
    /// The policy server's pool grows to at most this many connections per port.
    pub policy_max_clients: usize,
    /// Port control for the inside hosts: PCP, NAT-PMP, UPnP IGD, and the ports they
    /// may map.
    pub pcp: bool,
    pub nat_pmp: bool,
    pub upnp: bool,
    pub upnp_port: u16,
    pub portmap_rules: Vec<crate::portmap::policy::Rule>,
    pub portmap_max_per_host: usize,
    pub portmap_max_lifetime: Duration,
    /// The FTP helper (`--alg ftp`).
    pub alg_ftp: bool,
    pub mtu: usize,
    /// Per-port MTUs overriding `mtu`.
    pub inside_mtu: Option<usize>,
    pub outside_mtu: Option<usize>,
    pub clamp_mss: Option<MssClamp>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    pub limits: Limits,
    pub port_hold: Duration,
    pub port_parity: bool,
    /// The rate limit on ICMP errors the router sends.
    pub icmp_limit: IcmpLimit,
    /// Seed of the random choices; `None`: a random one at each start.
    pub seed: Option<u64>,
    /// Most half-open TCP sessions per port forward.
    pub max_half_open: usize,
    /// When SYNs to port forwards are answered with cookies.
    pub syn_cookies: SynCookies,
    /// Open the TUNs with offloads (IFF_VNET_HDR, TUNSETOFFLOAD): partial checksums and
    /// GSO super-packets pass through whole.
    pub offload: bool,
    /// Move packets with io_uring where the kernel has it ([`crate::port::uring`]).
    pub io_uring: bool,
    /// Join UDP datagrams of one flow in a batch into GSO super-packets
    /// ([`crate::wire::gro`]).
    pub udp_gro: bool,
    /// Under load, let a batch gather this long (µs) before waking for it; 0: off
    /// ([`crate::port::uring`]).
    pub coalesce_us: u32,
    /// Buffers per port for io_uring's reads; `None`: as many as suit the ports'
    /// offloads ([`crate::port::uring::default_io_buffers`]).
    pub io_buffers: Option<u16>,
    /// Make the TUNs persistent, and wait for a lost one to come back.
    pub persist: bool,
    /// Save the sessions here at stop, carry on from them at start.
    pub state_file: Option<PathBuf>,
    /// Print every packet in the kernel LOG target's format on standard output.
    pub trace: bool,
    /// Show only these packets (empty: all).
    pub trace_filters: Vec<TraceFilter>,
    /// Write inside.pcap and outside.pcap here.
    pub pcap_dir: Option<PathBuf>,
    /// Write inside.pcapng and outside.pcapng here, each packet commented with its pair.
    pub pcap_pair: Option<PathBuf>,
    /// Keep the last this many packets' headers for `tunnat web` (0: off).
    pub event_ring: usize,
    /// Unix socket for `tunnat table`, `stats`, `dnat`, `reload`.
    pub control: Option<PathBuf>,
    /// The group given the control socket, whose members may change the router.
    pub control_group: Option<u32>,
    /// The settings this was resolved from: how the user wrote each option (for
    /// messages), and what a reload compares.
    pub settings: Settings,
}

/// Smallest datagram every IPv4 host must accept (RFC 791).
pub const MIN_MTU: usize = 576;

impl Config {
    /// Is any port control protocol on?
    pub fn port_control(&self) -> bool {
        self.pcp || self.nat_pmp || self.upnp
    }

    /// Checks everything that can be checked without opening a device.
    pub fn validate(&self) -> Result<()> {
        let name = |field: &str| self.settings.named(field);
        let nat64 = self.nat64.is_some();
        if let Some(p) = self.nat64 {
            if self.inside.cidr6.is_none() || self.outside.cidr.is_none() {
                bail!(
                    "{} {p}: NAT64 needs an IPv6 address on the inside port and an IPv4 one on the outside port",
                    name("nat64")
                );
            }
            for c in [self.inside.cidr6, self.outside.cidr6]
                .into_iter()
                .flatten()
            {
                let overlap = p.contains(c.addr) || (c.prefix <= p.len && c.contains(p.prefix));
                if overlap {
                    bail!("{} {p} overlaps the router's network {c}", name("nat64"));
                }
            }
        }
        let (i, o) = match (self.inside.cidr, self.outside.cidr) {
            (Some(i), Some(o)) => (i, o),
            (None, Some(o)) if nat64 => {
                if let Some(r) = self.dnat.first() {
                    bail!(
                        "{} {r}: an IPv4 port forward needs an IPv4 address on the inside port",
                        name("dnat")
                    );
                }
                (Ipv4Cidr::UNSET, o)
            }
            (None, None) => {
                // An IPv6-only router: no IPv4 rule may be given.
                if let Some(r) = self.dnat.first() {
                    bail!(
                        "{} {r}: an IPv4 port forward needs IPv4 addresses on both ports",
                        name("dnat")
                    );
                }
                if self.inside.cidr6.is_none() {
                    bail!("{} is required", name("inside_addr"));
                }
                (Ipv4Cidr::UNSET, Ipv4Cidr::UNSET)
            }
            (i, _) => bail!(
                "{} has an IPv4 address and {} has none: give both ports one, or neither",
                name(if i.is_some() {
                    "inside_addr"
                } else {
                    "outside_addr"
                }),
                name(if i.is_some() {
                    "outside_addr"
                } else {
                    "inside_addr"
                })
            ),
        };
        let v4 = self.inside.cidr.is_some();
        for (field, c) in [("inside_addr", i), ("outside_addr", o)]
            .into_iter()
            .filter(|(f, _)| v4 || (nat64 && *f == "outside_addr"))
        {
            let name = name(field);
            let a = c.addr;
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
                bail!("{name} {c}: {a} cannot be a router address");
            }
            if c.prefix > 30 && c.prefix != 32 {
                bail!("{name} {c}: a /{} network has no room for hosts", c.prefix);
            }
            if c.prefix < 31 && (a == c.broadcast() || u32::from(a) & c.mask() == u32::from(a)) {
                bail!("{name} {c}: {a} is the network or broadcast address of {c}");
            }
        }
        if v4 && (i.contains(o.addr) || o.contains(i.addr)) {
            bail!(
                "{} {i} and {} {o} overlap: the two ports must be on different networks",
                name("inside_addr"),
                name("outside_addr")
            );
        }
        if self.inside.tun == self.outside.tun && self.inside.netns == self.outside.netns {
            bail!(
                "{} and {} are the same device '{}'",
                name("inside_tun"),
                name("outside_tun"),
                self.inside.tun
            );
        }
        for (field, m) in [
            ("mtu", Some(self.mtu)),
            ("inside_mtu", self.inside_mtu),
            ("outside_mtu", self.outside_mtu),
        ] {
            if let Some(m) = m {
                if !(MIN_MTU..=65535).contains(&m) {
                    bail!("{} {m}: must be between {MIN_MTU} and 65535", name(field));
                }
            }
        }
        if self.inside.cidr6.is_some() {
            // RFC 8200 section 5: every IPv6 link carries at least 1280 bytes.
            for (field, m) in [
                ("mtu", Some(self.mtu)),
                ("inside_mtu", self.inside_mtu),
                ("outside_mtu", self.outside_mtu),
            ] {
                if let Some(m) = m.filter(|m| *m < 1280) {
                    bail!(
                        "{} {m}: IPv6 needs an MTU of at least 1280 (RFC 8200 section 5)",
                        name(field)
                    );
                }
            }
        }
        let dnat = name("dnat");
        for (n, r) in self.dnat.iter().enumerate() {
            if !i.contains(r.target) {
                bail!(
                    "{dnat} {r}: target {} is not on the inside network {i}",
                    r.target
                );
            }
            if r.target == i.addr || r.target == i.broadcast() {
                bail!(
                    "{dnat} {r}: target {} is the router's own or the broadcast address",
                    r.target
                );
            }
            if let Some(other) = self.dnat[..n].iter().find(|o| o.overlaps(r)) {
                bail!("{dnat} {r} overlaps {dnat} {other}");
            }
            if self.policy_port != 0 && r.contains(Protocol::Tcp, self.policy_port) {
                bail!(
                    "{dnat} {r} covers the policy server's port {}; move it with --policy-port or turn it off with --policy-port 0",
                    self.policy_port
                );
            }
        }
        match (self.inside.cidr6, self.outside.cidr6) {
            (Some(i6), Some(o6)) => {
                for (field, c) in [("inside_addr", i6), ("outside_addr", o6)] {
                    let a = c.addr;
                    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                        bail!("{} {c}: {a} cannot be a router address", name(field));
                    }
                    if a.segments()[0] & 0xffc0 == 0xfe80 {
                        bail!(
                            "{} {c}: a link-local address is not routed between ports",
                            name(field)
                        );
                    }
                    if c.prefix > 126 && c.prefix != 128 {
                        bail!(
                            "{} {c}: a /{} network has no room for hosts",
                            name(field),
                            c.prefix
                        );
                    }
                }
                if self.ipv6 == crate::nat::Mode::Npt {
                    let ipv6 = name("ipv6");
                    if i6.prefix != o6.prefix || !(48..=64).contains(&i6.prefix) {
                        bail!(
                            "{ipv6} npt: the inside and outside prefixes must be of equal length, /48 to /64 (RFC 6296); they are /{} and /{}",
                            i6.prefix,
                            o6.prefix
                        );
                    }
                    if let Some(r) = self.dnat6.first() {
                        bail!("{dnat} {r}: prefix translation maps every inside host one to one; port forwards are for --ipv6 nat");
                    }
                }
                if self.ipv6 == crate::nat::Mode::Route && !self.dnat6.is_empty() {
                    bail!("{dnat} {}: a routing router forwards to inside hosts as they are; port forwards are for --ipv6 nat", self.dnat6[0]);
                }
                if i6.contains(o6.addr) || o6.contains(i6.addr) {
                    bail!(
                        "{} {i6} and {} {o6} overlap: the two ports must be on different networks",
                        name("inside_addr"),
                        name("outside_addr")
                    );
                }
                self.check_dnat6(i6)?;
            }
            (None, None) => {
                if let Some(r) = self.dnat6.first() {
                    bail!("{dnat} {r}: an IPv6 port forward needs IPv6 addresses on both ports (--inside-addr and --outside-addr, once per family)");
                }
            }
            (Some(i6), None) if nat64 => {
                let a = i6.addr;
                if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                    bail!(
                        "{} {i6}: {a} cannot be a router address",
                        name("inside_addr")
                    );
                }
                self.check_dnat6(i6)?;
            }
            (i6, _) => bail!(
                "{} has an IPv6 address and {} has none: give both ports one, or neither",
                name(if i6.is_some() {
                    "inside_addr"
                } else {
                    "outside_addr"
                }),
                name(if i6.is_some() {
                    "outside_addr"
                } else {
                    "inside_addr"
                })
            ),
        }
        let t = &self.timeouts;
        for (field, d) in [
            ("udp_timeout", t.udp),
            ("tcp_half_open_timeout", t.tcp_half_open),
            ("tcp_established_timeout", t.tcp_established),
            ("tcp_transitory_timeout", t.tcp_transitory),
            ("icmp_timeout", t.icmp),
        ] {
            if d.is_zero() {
                bail!("{} must be at least 1 second", name(field));
            }
        }
        for (field, n) in [
            ("max_sessions", self.limits.max_sessions),
            ("max_mappings", self.limits.max_mappings),
            ("max_mappings_per_host", self.limits.max_mappings_per_host),
            ("max_half_open", self.max_half_open),
        ] {
            if n == 0 {
                bail!("{} must be at least 1", name(field));
            }
        }
        if self.limits.max_sessions > crate::nat::index::MAX_SLOTS {
            bail!(
                "{} must be at most {} (the session table's indices name slots in 24 bits)",
                name("max_sessions"),
                crate::nat::index::MAX_SLOTS
            );
        }
        if self.policy_max_clients == 0 {
            bail!("{} must be at least 1", name("policy_max_clients"));
        }
        if self.port_control() {
            let which = [
                ("pcp", self.pcp),
                ("nat_pmp", self.nat_pmp),
                ("upnp", self.upnp),
            ]
            .iter()
            .find(|w| w.1)
            .map_or("pcp", |w| w.0);
            if self.inside.cidr.is_none() || self.outside.cidr.is_none() {
                bail!("{} needs an IPv4 address on both ports", name(which));
            }
            if self.portmap_max_per_host == 0 {
                bail!("{} must be at least 1", name("portmap_max_per_host"));
            }
            if self.portmap_max_lifetime.as_secs() < 120 {
                bail!(
                    "{} must be at least 120 seconds",
                    name("portmap_max_lifetime")
                );
            }
        }
        if self.upnp && (self.upnp_port == 0 || self.upnp_port == self.policy_port) {
            bail!(
                "{} {} is not free on the inside address (0, or the policy server's port)",
                name("upnp_port"),
                self.upnp_port
            );
        }
        if self.alg_ftp && (self.inside.cidr.is_none() || self.outside.cidr.is_none()) {
            bail!("{} ftp needs an IPv4 address on both ports", name("alg"));
        }
        if self.icmp_limit.burst == 0 {
            bail!("{} must be at least 1", name("icmp_burst"));
        }
        if self.policy.contains(&0) {
            bail!("the policy file contains a NUL byte, which would end the reply early");
        }
        if self.policy_idle.is_zero() {
            bail!("{} must be above zero", name("policy_idle_timeout"));
        }
        for p in [&self.inside, &self.outside] {
            if let Some(ns) = &p.netns {
                if !ns.exists() {
                    bail!(
                        "network namespace {} does not exist (create it with 'ip netns add')",
                        ns.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// The port forwards to IPv6 hosts: each target a host of the inside network `i6`, no
    /// two overlapping, none on the policy server's port.
    fn check_dnat6(&self, i6: Ipv6Cidr) -> Result<()> {
        let dnat = self.settings.named("dnat");
        for (n, r) in self.dnat6.iter().enumerate() {
            if !i6.contains(r.target) || r.target == i6.addr {
                bail!(
                    "{dnat} {r}: target {} is not a host of the inside network {i6}",
                    r.target
                );
            }
            if let Some(other) = self.dnat6[..n].iter().find(|o| o.overlaps(r)) {
                bail!("{dnat} {r} overlaps {dnat} {other}");
            }
            if self.policy_port != 0 && r.contains(Protocol::Tcp, self.policy_port) {
                bail!(
                    "{dnat} {r} covers the policy server's port {}",
                    self.policy_port
                );
            }
        }
        Ok(())
    }

    /// Values below the RFCs' minimums are allowed (labs shorten them to watch expiry),
    /// but said.
    pub fn warnings(&self) -> Vec<String> {
        let t = &self.timeouts;
        let mut w = Vec::new();
        let mins = [
            ("UDP", t.udp, RFC_MIN_UDP, "RFC 4787 REQ-5"),
            (
                "TCP established",
                t.tcp_established,
                RFC_MIN_TCP_ESTABLISHED,
                "RFC 5382 REQ-5",
            ),
            (
                "TCP transitory",
                t.tcp_transitory,
                RFC_MIN_TCP_TRANSITORY,
                "RFC 5382 REQ-5",
            ),
            ("ICMP", t.icmp, RFC_MIN_ICMP, "RFC 5508 REQ-2"),
        ];
        if self.nat64.is_some() {
            // On the outside IPv4 address, a forward to an IPv4 host takes the ports of
            // one to an IPv6 host that overlaps it.
            for r in &self.dnat6 {
                let over = |x: &&DnatRule| {
                    x.protocol == r.protocol && x.first <= r.last && r.first <= x.last
                };
                if let Some(r4) = self.dnat.iter().find(over) {
                    w.push(format!(
                        "NAT64: on the outside IPv4 address, --dnat {r4} takes the ports of --dnat {r}, which serves the outside IPv6 address only"
                    ));
                }
            }
        }
        for (what, d, min, rfc) in mins {
            if d < min {
                w.push(format!(
                    "{what} timeout {}s is below {rfc}'s minimum of {}s",
                    d.as_secs(),
                    min.as_secs()
                ));
            }
        }
        w
    }

    /// The part of the configuration the IPv4 core needs (none on an IPv6-only router).
    pub fn nat(&self) -> Option<NatConfig> {
        let o = self.outside.cidr?;
        let i = match self.inside.cidr {
            Some(i) => i,
            None if self.nat64.is_some() => Ipv4Cidr::UNSET,
            None => return None,
        };
        let mut c = self.core(i, o, self.dnat.clone(), crate::nat::Mode::Napt, 0);
        c.nat64 = self.nat64.is_some();
        c.alg_ftp = self.alg_ftp;
        Some(c)
    }

    /// The NAT64 configuration, when `--nat64` is on (the static targets are the IPv6
    /// port forwards').
    pub fn nat64(&self) -> Option<crate::nat::nat64::Nat64Config> {
        Some(crate::nat::nat64::Nat64Config {
            prefix: self.nat64?,
            inside6: self.inside.cidr6?,
            inside4: self
                .inside
                .cidr
                .map_or(std::net::Ipv4Addr::UNSPECIFIED, |c| c.addr),
            mtu: self.port_mtus(),
            udp_zero_compute: self.nat64_udp_zero_compute,
            max_bindings: self.limits.max_sessions,
            static_hosts: self.dnat6.iter().map(|r| r.target).collect(),
        })
    }

    /// The part of the configuration the IPv6 core needs, on a router with IPv6 addresses.
    pub fn nat6(&self) -> Option<NatConfig<Ipv6Addr>> {
        let (i, o) = (self.inside.cidr6?, self.outside.cidr6?);
        Some(self.core(i, o, self.dnat6.clone(), self.ipv6, 0x6666_6666))
    }

    /// One family's core configuration; the options are the same for both.
    fn core<A>(
        &self,
        inside: crate::nat::Cidr<A>,
        outside: crate::nat::Cidr<A>,
        dnat: Vec<DnatRule<A>>,
        mode: crate::nat::Mode,
        salt: u64,
    ) -> NatConfig<A> {
        NatConfig {
            inside,
            outside,
            mtu: self.port_mtus(),
            clamp_mss: self.clamp_mss,
            timeouts: self.timeouts,
            filtering: self.filtering,
            dnat,
            port_maps: Vec::new(),
            ssdp: false,
            alg_ftp: false,
            local_tcp_ports: if self.policy_port == 0 {
                vec![]
            } else {
                vec![self.policy_port]
            },
            limits: self.limits,
            port_hold: self.port_hold,
            port_parity: self.port_parity,
            icmp_limit: self.icmp_limit,
            seed: self.seed.unwrap_or(0) ^ salt,
            max_half_open: self.max_half_open,
            syn_cookies: self.syn_cookies,
            mode,
            nat64: false,
        }
    }

    /// The README lab's router: the seed scenarios' addresses, `--dnat
    /// tcp:8888=192.168.122.73:9999`, the defaults (for tests), resolved from settings as
    /// the command line's would be.
    #[cfg(any(test, feature = "fuzz"))]
    #[allow(clippy::expect_used)] // fixed settings, checked by the tests
    pub fn lab() -> Config {
        Settings::lab()
            .resolve()
            .expect("the lab's settings resolve")
    }

    /// `[inside, outside]` MTUs.
    pub fn port_mtus(&self) -> [usize; 2] {
        [
            self.inside_mtu.unwrap_or(self.mtu),
            self.outside_mtu.unwrap_or(self.mtu),
        ]
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn base() -> Config {
        Config::lab()
    }

    fn err(c: Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn the_lab_config_is_valid() {
        base().validate().unwrap();
        assert!(base().warnings().is_empty());
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut c = base();
        c.dnat.push("tcp:8000-9000=192.168.122.5".parse().unwrap());
        assert!(err(c).contains("overlaps --dnat tcp:8888"));
        let mut c = base();
        c.dnat.push("udp:53=10.0.0.1".parse().unwrap());
        assert!(err(c).contains("not on the inside network"));
        let mut c = base();
        c.outside.cidr = Some("192.168.122.200/24".parse().unwrap());
        assert!(err(c).contains("overlap"));
        let mut c = base();
        c.dnat.push("tcp:843=192.168.122.5".parse().unwrap());
        assert!(err(c).contains("policy server's port 843"));
        let mut c = base();
        c.mtu = 100;
        assert!(err(c).contains("--mtu 100"));
        let mut c = base();
        c.inside.netns = Some("/run/netns/does-not-exist-here".into());
        assert!(err(c).contains("does-not-exist-here does not exist"));
        let mut c = base();
        c.inside.cidr = Some("192.168.122.255/24".parse().unwrap());
        assert!(err(c).contains("broadcast"));
        let mut c = base();
        c.timeouts.udp = Duration::ZERO;
        assert!(err(c).contains("--udp-timeout"));
    }

    #[test]
    fn nat64_shapes_and_mistakes() {
        let nat64 = |inside: &[&str], outside: &[&str]| {
            let mut c = base();
            c.inside.cidr = inside
                .iter()
                .find(|a| !a.contains(':'))
                .map(|a| a.parse().unwrap());
            c.inside.cidr6 = inside
                .iter()
                .find(|a| a.contains(':'))
                .map(|a| a.parse().unwrap());
            c.outside.cidr = outside
                .iter()
                .find(|a| !a.contains(':'))
                .map(|a| a.parse().unwrap());
            c.outside.cidr6 = outside
                .iter()
                .find(|a| a.contains(':'))
                .map(|a| a.parse().unwrap());
            c.nat64 = Some("64:ff9b::/96".parse().unwrap());
            if c.inside.cidr.is_none() {
                c.dnat.clear();
            }
            c
        };
        // IPv6-only inside, IPv4-only outside: the classic NAT64 router.
        let c = nat64(&["fd00:122::100/64"], &["172.16.1.186/24"]);
        c.validate().unwrap();
        assert!(c.nat().is_some_and(|n| n.nat64) && c.nat6().is_none() && c.nat64().is_some());
        // Dual-stack inside, IPv4 outside; and dual-stack both.
        nat64(
            &["192.168.122.100/24", "fd00:122::100/64"],
            &["172.16.1.186/24"],
        )
        .validate()
        .unwrap();
        nat64(
            &["192.168.122.100/24", "fd00:122::100/64"],
            &["172.16.1.186/24", "2001:db8:1::186/64"],
        )
        .validate()
        .unwrap();
        // What NAT64 needs, named.
        let e = err(nat64(&["192.168.122.100/24"], &["172.16.1.186/24"]));
        assert!(
            e.contains("--nat64") && e.contains("IPv6 address on the inside"),
            "{e}"
        );
        let e = err(nat64(&["fd00:122::100/64"], &["2001:db8:1::186/64"]));
        assert!(e.contains("IPv4 one on the outside"), "{e}");
        let mut c = nat64(&["fd00:122::100/64"], &["172.16.1.186/24"]);
        c.nat64 = Some("fd00:122::/96".parse().unwrap());
        assert!(err(c).contains("overlaps the router's network"));
        // An IPv6 target and an IPv4 target on one outside IPv4 port: the IPv4 one has
        // it there, and the start says so.
        let mut c = nat64(
            &["192.168.122.100/24", "fd00:122::100/64"],
            &["172.16.1.186/24"],
        );
        c.dnat6 = vec!["tcp:8888=[fd00:122::73]:9999".parse().unwrap()];
        c.validate().unwrap();
        let w = c.warnings().join("\n");
        assert!(
            w.contains("takes the ports of --dnat tcp:8888=[fd00:122::73]:9999"),
            "{w}"
        );
    }

    #[test]
    fn short_timeouts_warn() {
        let mut c = base();
        c.timeouts.udp = Duration::from_secs(2);
        assert!(c.warnings()[0].contains("RFC 4787"));
    }
}
