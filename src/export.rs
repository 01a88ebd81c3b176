//! `tunnat export nft|iptables`: the router as the kernel's equivalent ruleset, for users
//! who outgrow tunnat. What the kernel can express becomes rules and sysctls:
//! * masquerade of the inside networks on the outside interface (NAT44, NAT66);
//! * the port forwards, as DNAT (an nft map for single ports), served from inside too,
//!   with hairpinned connections given the outside address as source (RFC 4787 REQ-9,
//!   as tunnat does);
//! * MSS clamping (`--clamp-mss`), the conntrack timeouts and table size, the ICMP error
//!   rate limit, forwarding;
//! * optionally a flowtable (the kernel's fast path).
//!
//! Everything else tunnat does is listed as a comment naming what the kernel lacks, so a
//! user knows what changes (`Unexpressed`). The output is a script for `nft -f` or for
//! `sh`; the conformance tests load it into the kernel's lab and send traffic through it.

use std::fmt::Write as _;

use crate::config::Config;
use crate::nat::{DnatRule, Filtering, Mode, MssClamp};
use crate::wire::transport::Protocol;

/// The ruleset's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Nft,
    Iptables,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "nft" => Ok(Format::Nft),
            "iptables" => Ok(Format::Iptables),
            _ => Err(format!("'{s}' is not nft or iptables")),
        }
    }
}

/// How to export: the format, the kernel's interface names for the two ports (tunnat's
/// TUN names by default), and whether to add a flowtable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    pub format: Format,
    pub inside_if: Option<String>,
    pub outside_if: Option<String>,
    #[serde(default)]
    pub flowtable: bool,
}

/// What the kernel cannot express of `cfg`, one line each.
pub fn unexpressed(cfg: &Config) -> Vec<String> {
    let mut v = vec![
        "unsolicited inbound SYNs to a mapped port are answered at once (RST), not held 6 s (RFC 5382 REQ-4)".to_string(),
        "a released external port is not held from other hosts (RFC 6888 REQ-8)".into(),
        "ICMP errors with a bad checksum are passed on, not dropped".into(),
    ];
    match cfg.filtering {
        Filtering::AddressAndPortDependent => {}
        f => v.push(format!(
            "filtering is address-and-port-dependent (conntrack admits replies only), not {}",
            match f {
                Filtering::EndpointIndependent => "endpoint-independent",
                _ => "address-dependent",
            }
        )),
    }
    if cfg.port_parity {
        v.push("port parity (--port-parity) is not kept".into());
    }
    if cfg.syn_cookies != crate::nat::SynCookies::Off && !cfg.dnat.is_empty() {
        v.push(format!(
            "no SYN cookies for the port forwards (--syn-cookies {}): the kernel's tcp_syncookies guards its own sockets only; netfilter's SYNPROXY target does this for forwarded connections, but needs rules of its own",
            cfg.syn_cookies.name()
        ));
    }
    if cfg.limits.max_mappings_per_host < cfg.limits.max_sessions {
        v.push(format!(
            "no per-host limit of {} mappings (nft's `ct count` limits connections, not mappings)",
            cfg.limits.max_mappings_per_host
        ));
    }
    if cfg.policy_port != 0 {
        v.push(format!(
            "no Flash socket policy server on port {}: run one (e.g. Debian's node-policyfile)",
            cfg.policy_port
        ));
    }
    if cfg.port_control() {
        v.push("no PCP, NAT-PMP or UPnP IGD for the inside hosts: run miniupnpd (Debian's miniupnpd-nftables) with the same allow/deny rules".into());
    }
    if let Some(p) = cfg.nat64 {
        v.push(format!(
            "no NAT64 through {p}: the kernel has none; run Tayga (a dynamic pool masqueraded by this ruleset) or Jool"
        ));
    }
    if cfg.inside.cidr6.is_some() && cfg.outside.cidr6.is_some() && cfg.ipv6 == Mode::Npt {
        v.push("NPTv6 (--ipv6 npt): nft has no NPTv6; ip6tables -t mangle SNPT/DNPT does it (see the iptables export)".into());
    }
    v
}

/// The sysctls that carry tunnat's timeouts, table size, ICMP rate limit and forwarding.
fn sysctls(cfg: &Config) -> Vec<(String, u64)> {
    let t = &cfg.timeouts;
    let n = |s: &str| format!("net.netfilter.nf_conntrack_{s}");
    let mut v = vec![("net.ipv4.ip_forward".to_string(), 1)];
    if cfg.inside.cidr6.is_some() && cfg.outside.cidr6.is_some() {
        v.push(("net.ipv6.conf.all.forwarding".into(), 1));
    }
    let transitory = t.tcp_transitory.as_secs();
    v.extend([
        (n("max"), cfg.limits.max_sessions as u64),
        (n("udp_timeout"), t.udp.as_secs()),
        (n("udp_timeout_stream"), t.udp.as_secs()),
        (n("tcp_timeout_established"), t.tcp_established.as_secs()),
        (n("tcp_timeout_syn_recv"), t.tcp_half_open.as_secs()),
        (n("tcp_timeout_fin_wait"), transitory),
        (n("tcp_timeout_close_wait"), transitory),
        (n("tcp_timeout_last_ack"), transitory),
        (n("tcp_timeout_time_wait"), transitory),
        (n("icmp_timeout"), t.icmp.as_secs()),
        (n("icmpv6_timeout"), t.icmp.as_secs()),
        (
            "net.ipv4.icmp_msgs_per_sec".into(),
            u64::from(cfg.icmp_limit.rate),
        ),
        (
            "net.ipv4.icmp_msgs_burst".into(),
            u64::from(cfg.icmp_limit.burst),
        ),
    ]);
    v
}

/// The router's configuration as a ruleset in `o.format`.
pub fn render(cfg: &Config, o: &Options) -> String {
    let ifs = (
        o.inside_if
            .clone()
            .unwrap_or_else(|| cfg.inside.tun.clone()),
        o.outside_if
            .clone()
            .unwrap_or_else(|| cfg.outside.tun.clone()),
    );
    let mut s = String::new();
    let hash = match o.format {
        Format::Nft => "#!/usr/sbin/nft -f\n",
        Format::Iptables => "#!/bin/sh\n",
    };
    s.push_str(hash);
    let _ = writeln!(
        s,
        "# tunnat {} as the kernel's NAT (tunnat export {}): inside {} ({}), outside {} ({}).",
        env!("CARGO_PKG_VERSION"),
        match o.format {
            Format::Nft => "nft",
            Format::Iptables => "iptables",
        },
        ifs.0,
        addrs(cfg.inside.cidr, cfg.inside.cidr6),
        ifs.1,
        addrs(cfg.outside.cidr, cfg.outside.cidr6),
    );
    s.push_str("# The router's addresses must be the interfaces' own; run as root.\n#\n");
    s.push_str("# What the kernel does differently from tunnat here:\n");
    for u in unexpressed(cfg) {
        let _ = writeln!(s, "#   - {u}");
    }
    match o.format {
        Format::Nft => {
            s.push_str("#\n# Timeouts, table size, ICMP rate limit and forwarding are sysctls:\n");
            for (k, v) in sysctls(cfg) {
                let _ = writeln!(s, "#   sysctl -w {k}={v}");
            }
            s.push('\n');
            nft(&mut s, cfg, &ifs, o.flowtable);
        }
        Format::Iptables => {
            s.push_str("set -e\n");
            iptables(&mut s, cfg, &ifs, o.flowtable);
            s.push_str("# Timeouts, table size, ICMP rate limit and forwarding (after the rules, which\n# load conntrack). In a network namespace some are the host's to set.\n");
            for (k, v) in sysctls(cfg) {
                let _ = writeln!(s, "sysctl -qw {k}={v} || echo \"could not set {k}\" >&2");
            }
        }
    }
    s
}

fn addrs(v4: Option<crate::nat::Ipv4Cidr>, v6: Option<crate::nat::Ipv6Cidr>) -> String {
    let all: Vec<String> = (v4.map(|c| c.to_string()).into_iter())
        .chain(v6.map(|c| c.to_string()))
        .collect();
    all.join(", ")
}

/// The network of a router address, as `a.b.c.d/len`.
fn net4(c: crate::nat::Ipv4Cidr) -> String {
    format!(
        "{}/{}",
        std::net::Ipv4Addr::from(u32::from(c.addr) & c.mask()),
        c.prefix
    )
}

fn net6(c: crate::nat::Ipv6Cidr) -> String {
    format!("{}/{}", c.network(), c.prefix)
}

/// A port forward's target as DNAT writes it: `addr:port` (`[addr]:port` for IPv6), the
/// port range shifted, or the address alone when the ports are kept.
fn target<A: crate::nat::Address + std::fmt::Display>(r: &DnatRule<A>, v6: bool) -> String {
    let a = if v6 {
        format!("[{}]", r.target)
    } else {
        r.target.to_string()
    };
    match r.target_port {
        None => a.trim_matches(|c| c == '[' || c == ']').to_string(),
        Some(p) if r.first == r.last => format!("{a}:{p}"),
        Some(p) => format!("{a}:{p}-{}", p + (r.last - r.first)),
    }
}

fn ports<A>(r: &DnatRule<A>) -> String {
    if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    }
}

fn nft(s: &mut String, cfg: &Config, (inif, outif): &(String, String), flowtable: bool) {
    s.push_str("table inet tunnat\ndelete table inet tunnat\ntable inet tunnat {\n");
    // Forwards with a fixed or shifted target port in one map per family and protocol,
    // a shifted range one element a port (nft's port ranges do not shift).
    let fams: [(&str, Vec<Element>); 2] = [
        ("ip", map_elements(&cfg.dnat)),
        (
            "ip6",
            if cfg.outside.cidr6.is_some() {
                map_elements(&cfg.dnat6)
            } else {
                Vec::new()
            },
        ),
    ];
    let mut maps = Vec::new();
    for (fam, items) in &fams {
        for proto in [Protocol::Tcp, Protocol::Udp] {
            let el: Vec<String> = (items.iter())
                .filter(|(p, _, _)| *p == proto)
                .map(|(_, port, t)| format!("{port} : {t}"))
                .collect();
            if el.is_empty() {
                continue;
            }
            let name = format!("dnat_{fam}_{}", proto.name());
            let ty = if *fam == "ip" {
                "ipv4_addr"
            } else {
                "ipv6_addr"
            };
            let _ = writeln!(
                s,
                "\tmap {name} {{\n\t\ttype inet_service : {ty} . inet_service\n\t\telements = {{ {} }}\n\t}}",
                el.join(", ")
            );
            maps.push((*fam, proto, name));
        }
    }
    if flowtable {
        let _ = writeln!(
            s,
            "\tflowtable ft {{\n\t\thook ingress priority 0\n\t\tdevices = {{ \"{inif}\", \"{outif}\" }}\n\t}}"
        );
    }
    // DNAT: from outside and, for hairpinning, from inside too.
    s.push_str(
        "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n",
    );
    if let Some(o) = cfg.outside.cidr {
        for (_, proto, name) in maps.iter().filter(|m| m.0 == "ip") {
            let _ = writeln!(
                s,
                "\t\tip daddr {} dnat ip to {} dport map @{name}",
                o.addr,
                proto.name()
            );
        }
        for r in cfg
            .dnat
            .iter()
            .filter(|r| r.target_port.is_none() && r.first != r.last)
        {
            let _ = writeln!(
                s,
                "\t\tip daddr {} {} dport {} dnat ip to {}",
                o.addr,
                r.protocol.name(),
                ports(r),
                target(r, false)
            );
        }
    }
    if let Some(o6) = cfg.outside.cidr6.filter(|_| cfg.ipv6 == Mode::Napt) {
        for (_, proto, name) in maps.iter().filter(|m| m.0 == "ip6") {
            let _ = writeln!(
                s,
                "\t\tip6 daddr {} dnat ip6 to {} dport map @{name}",
                o6.addr,
                proto.name()
            );
        }
        for r in cfg
            .dnat6
            .iter()
            .filter(|r| r.target_port.is_none() && r.first != r.last)
        {
            let _ = writeln!(
                s,
                "\t\tip6 daddr {} {} dport {} dnat ip6 to {}",
                o6.addr,
                r.protocol.name(),
                ports(r),
                target(r, true)
            );
        }
    }
    s.push_str("\t}\n");
    // Masquerade out; hairpinned connections to a forward leave with the outside address.
    s.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    if let (Some(i), Some(o)) = (cfg.inside.cidr, cfg.outside.cidr) {
        let _ = writeln!(s, "\t\toifname \"{outif}\" ip saddr {} masquerade", net4(i));
        let _ = writeln!(
            s,
            "\t\toifname \"{inif}\" ip saddr {} ct status dnat snat ip to {}",
            net4(i),
            o.addr
        );
    }
    if let (Some(i6), Some(o6)) = (cfg.inside.cidr6, cfg.outside.cidr6) {
        if cfg.ipv6 == Mode::Napt {
            let _ = writeln!(
                s,
                "\t\toifname \"{outif}\" ip6 saddr {} masquerade",
                net6(i6)
            );
            let _ = writeln!(
                s,
                "\t\toifname \"{inif}\" ip6 saddr {} ct status dnat snat ip6 to {}",
                net6(i6),
                o6.addr
            );
        }
    }
    s.push_str("\t}\n");
    let clamp = cfg.clamp_mss.map(|c| match c {
        MssClamp::Mtu => "rt mtu".to_string(),
        MssClamp::Fixed(n) => n.to_string(),
    });
    if clamp.is_some() || flowtable {
        s.push_str(
            "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n",
        );
        if flowtable {
            s.push_str("\t\tmeta l4proto { tcp, udp } flow add @ft\n");
        }
        if let Some(c) = clamp {
            let _ = writeln!(s, "\t\ttcp flags syn tcp option maxseg size set {c}");
        }
        s.push_str("\t}\n");
    }
    if cfg.alg_ftp {
        // The kernel's FTP helper (nf_conntrack_ftp, nf_nat_ftp) on control connections
        // to port 21, after DNAT (so a forward to an inside server's 21 gets it too).
        s.push_str(
            "\tct helper ftp_standard {\n\t\ttype \"ftp\" protocol tcp\n\t\tl3proto ip\n\t}\n",
        );
        s.push_str("\tchain helpers {\n\t\ttype filter hook prerouting priority filter; policy accept;\n\t\tmeta nfproto ipv4 tcp dport 21 ct helper set \"ftp_standard\"\n\t}\n");
    }
    s.push_str("}\n");
}

/// One element of a DNAT map: protocol, outside port, `addr . port`.
type Element = (Protocol, u16, String);

/// The map elements of `rules`: each outside port with a fixed or shifted target, as
/// `(protocol, port, "addr . port")`. A range that keeps its ports is a rule of its own.
fn map_elements<A: crate::nat::Address + std::fmt::Display>(rules: &[DnatRule<A>]) -> Vec<Element> {
    let mut v = Vec::new();
    for r in rules {
        if r.first != r.last && r.target_port.is_none() {
            continue;
        }
        for port in r.first..=r.last {
            v.push((
                r.protocol,
                port,
                format!("{} . {}", r.target, r.target_port_for(port)),
            ));
        }
    }
    v
}

fn iptables(s: &mut String, cfg: &Config, (inif, outif): &(String, String), flowtable: bool) {
    if flowtable {
        s.push_str("# A flowtable is nft's (tunnat export nft --flowtable).\n");
    }
    let dnat4 = |s: &mut String,
                 cmd: &str,
                 daddr: String,
                 r: String,
                 proto: &str,
                 ports: String| {
        let _ = writeln!(
            s,
            "{cmd} -t nat -A PREROUTING -d {daddr} -p {proto} --dport {ports} -j DNAT --to-destination {r}"
        );
    };
    if let (Some(i), Some(o)) = (cfg.inside.cidr, cfg.outside.cidr) {
        for r in &cfg.dnat {
            dnat4(
                s,
                "iptables",
                o.addr.to_string(),
                shifted(target(r, false), r),
                r.protocol.name(),
                ports(r).replace('-', ":"),
            );
        }
        let _ = writeln!(
            s,
            "iptables -t nat -A POSTROUTING -o {outif} -s {} -j MASQUERADE",
            net4(i)
        );
        if cfg.alg_ftp {
            // The raw table sees the port before DNAT: 21, and each forwarded port whose
            // target is a 21.
            let mut ports = vec![21u16];
            for r in cfg.dnat.iter().filter(|r| r.protocol == Protocol::Tcp) {
                ports.extend((r.first..=r.last).filter(|&p| r.target_port_for(p) == 21));
            }
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let _ = writeln!(
                s,
                "iptables -t raw -A PREROUTING -p tcp -m multiport --dports {} -j CT --helper ftp",
                list.join(",")
            );
        }
        let _ = writeln!(
            s,
            "iptables -t nat -A POSTROUTING -o {inif} -s {} -m conntrack --ctstate DNAT -j SNAT --to-source {}",
            net4(i),
            o.addr
        );
    }
    if let (Some(i6), Some(o6)) = (cfg.inside.cidr6, cfg.outside.cidr6) {
        match cfg.ipv6 {
            Mode::Napt => {
                for r in &cfg.dnat6 {
                    dnat4(
                        s,
                        "ip6tables",
                        o6.addr.to_string(),
                        shifted(target(r, true), r),
                        r.protocol.name(),
                        ports(r).replace('-', ":"),
                    );
                }
                let _ = writeln!(
                    s,
                    "ip6tables -t nat -A POSTROUTING -o {outif} -s {} -j MASQUERADE",
                    net6(i6)
                );
                let _ = writeln!(
                    s,
                    "ip6tables -t nat -A POSTROUTING -o {inif} -s {} -m conntrack --ctstate DNAT -j SNAT --to-source {}",
                    net6(i6),
                    o6.addr
                );
            }
            Mode::Npt => {
                let _ = writeln!(
                    s,
                    "ip6tables -t mangle -A POSTROUTING -o {outif} -s {0} -j SNPT --src-pfx {0} --dst-pfx {1}",
                    net6(i6),
                    net6(o6)
                );
                let _ = writeln!(
                    s,
                    "ip6tables -t mangle -A PREROUTING -i {outif} -d {1} -j DNPT --src-pfx {1} --dst-pfx {0}",
                    net6(i6),
                    net6(o6)
                );
            }
            Mode::Route => {}
        }
    }
    if let Some(c) = cfg.clamp_mss {
        let how = match c {
            MssClamp::Mtu => "--clamp-mss-to-pmtu".to_string(),
            MssClamp::Fixed(n) => format!("--set-mss {n}"),
        };
        for cmd in ["iptables", "ip6tables"] {
            let _ = writeln!(
                s,
                "{cmd} -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS {how}"
            );
        }
    }
}

/// A shifted port range in xt_nat's `addr:lo-hi/base` form (revision 2).
fn shifted<A>(t: String, r: &DnatRule<A>) -> String {
    if r.first != r.last && r.target_port.is_some() {
        format!("{t}/{}", r.first)
    } else {
        t
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn opts(format: Format) -> Options {
        Options {
            format,
            inside_if: None,
            outside_if: None,
            flowtable: false,
        }
    }

    #[test]
    fn the_lab_as_nft_and_iptables() {
        let mut cfg = Config::lab();
        cfg.dnat
            .push("udp:5000-5002=192.168.122.73".parse().unwrap());
        cfg.dnat
            .push("tcp:8000-8002=192.168.122.73:9000".parse().unwrap());
        let n = render(&cfg, &opts(Format::Nft));
        for want in [
            "table inet tunnat {",
            "elements = { 8888 : 192.168.122.73 . 9999, 8000",
            "ip daddr 172.16.1.186 dnat ip to tcp dport map @dnat_ip_tcp",
            "ip daddr 172.16.1.186 udp dport 5000-5002 dnat ip to 192.168.122.73",
            "8000 : 192.168.122.73 . 9000, 8001 : 192.168.122.73 . 9001, 8002 : 192.168.122.73 . 9002",
            "oifname \"nat-out\" ip saddr 192.168.122.0/24 masquerade",
            "ct status dnat snat ip to 172.16.1.186",
            "#   sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established=7440",
            "no Flash socket policy server on port 843",
        ] {
            assert!(n.contains(want), "nft lacks {want:?}:\n{n}");
        }
        let i = render(&cfg, &opts(Format::Iptables));
        for want in [
            "iptables -t nat -A PREROUTING -d 172.16.1.186 -p tcp --dport 8888 -j DNAT --to-destination 192.168.122.73:9999",
            "--dport 8000:8002 -j DNAT --to-destination 192.168.122.73:9000-9002/8000",
            "iptables -t nat -A POSTROUTING -o nat-out -s 192.168.122.0/24 -j MASQUERADE",
            "sysctl -qw net.netfilter.nf_conntrack_udp_timeout=300 ||",
        ] {
            assert!(i.contains(want), "iptables lacks {want:?}:\n{i}");
        }
    }

    #[test]
    fn interfaces_flowtable_clamp_and_what_the_kernel_lacks() {
        let mut cfg = Config::lab();
        cfg.clamp_mss = Some(MssClamp::Mtu);
        cfg.nat64 = Some("64:ff9b::/96".parse().unwrap());
        cfg.filtering = Filtering::EndpointIndependent;
        let o = Options {
            format: Format::Nft,
            inside_if: Some("eth1".into()),
            outside_if: Some("eth0".into()),
            flowtable: true,
        };
        let n = render(&cfg, &o);
        assert!(
            n.contains("oifname \"eth0\" ip saddr 192.168.122.0/24 masquerade"),
            "{n}"
        );
        assert!(n.contains("devices = { \"eth1\", \"eth0\" }"), "{n}");
        assert!(n.contains("tcp option maxseg size set rt mtu"), "{n}");
        assert!(n.contains("no NAT64 through 64:ff9b::/96"), "{n}");
        assert!(n.contains("not endpoint-independent"), "{n}");
    }
}
