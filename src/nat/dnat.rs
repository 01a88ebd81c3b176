//! Static destination NAT ("port forwarding") rules, like
//! `iptables -t nat -A PREROUTING -p tcp --dport 8888 -j DNAT --to-destination 192.168.122.73:9999`.
//!
//! A rule maps a protocol and a port range on the router's outside address to one inside
//! host; the target port is either the same port, or the target port plus the offset in
//! the range. The written form, used by `--dnat` and the config file, is
//! `PROTO:PORT[-PORT]=IP[:PORT]`, with an IPv6 target in brackets as in URLs
//! (`tcp:8888=[fd00:122::73]:9999`, RFC 5952 section 6). One type serves both families.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::endpoint::Address;
use crate::wire::transport::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnatRule<A = Ipv4Addr> {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
    pub target: A,
    /// Target port for `first`; `None` keeps the port.
    pub target_port: Option<u16>,
}

impl<A: Address> DnatRule<A> {
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && (self.first..=self.last).contains(&port)
    }

    /// The inside port that outside port `port` (within the rule) is forwarded to.
    pub fn target_port_for(&self, port: u16) -> u16 {
        match self.target_port {
            Some(base) => base.wrapping_add(port - self.first),
            None => port,
        }
    }

    pub fn overlaps(&self, other: &DnatRule<A>) -> bool {
        self.protocol == other.protocol && self.first <= other.last && other.first <= self.last
    }
}

impl<A: Address> fmt::Display for DnatRule<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol.name(), self.first)?;
        if self.last != self.first {
            write!(f, "-{}", self.last)?;
        }
        if A::BITS == 128 {
            write!(f, "=[{}]", self.target)?;
        } else {
            write!(f, "={}", self.target)?;
        }
        if let Some(p) = self.target_port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn parse_port(s: &str, what: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{what} '{s}' is not a port number (1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// Which family a rule's target is in, by its written form: a bracketed target is IPv6.
pub fn is_ipv6_rule(s: &str) -> bool {
    s.split_once('=')
        .is_some_and(|(_, rhs)| rhs.starts_with('['))
}

/// `IP[:PORT]` (IPv4) or `[IP][:PORT]` (IPv6): the address text and the port text.
fn split_target<A: Address>(rhs: &str) -> Option<(&str, Option<&str>)> {
    if A::BITS == 128 {
        let rest = rhs.strip_prefix('[')?;
        let (ip, after) = rest.split_once(']')?;
        match after {
            "" => Some((ip, None)),
            p => Some((ip, Some(p.strip_prefix(':')?))),
        }
    } else {
        Some(match rhs.split_once(':') {
            Some((ip, port)) => (ip, Some(port)),
            None => (rhs, None),
        })
    }
}

impl<A: Address + FromStr> FromStr for DnatRule<A> {
    type Err = String;

    fn from_str(s: &str) -> Result<DnatRule<A>, String> {
        let usage = if A::BITS == 128 {
            "expected PROTO:PORT[-PORT]=[IP][:PORT], e.g. tcp:8888=[fd00:122::73]:9999"
        } else {
            "expected PROTO:PORT[-PORT]=IP[:PORT], e.g. tcp:8888=192.168.122.73:9999"
        };
        let (lhs, rhs) = s.split_once('=').ok_or_else(|| format!("'{s}': {usage}"))?;
        let (proto, ports) = lhs
            .split_once(':')
            .ok_or_else(|| format!("'{s}': {usage}"))?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(format!("'{s}': protocol '{other}' is not tcp or udp")),
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (parse_port(a, "port")?, parse_port(b, "port")?),
            None => {
                let p = parse_port(ports, "port")?;
                (p, p)
            }
        };
        if last < first {
            return Err(format!("'{s}': port range {first}-{last} is empty"));
        }
        let (ip, port) = split_target::<A>(rhs).ok_or_else(|| format!("'{s}': {usage}"))?;
        let port = port.map(|p| parse_port(p, "target port")).transpose()?;
        let target: A = ip
            .parse()
            .map_err(|_| format!("'{s}': target '{ip}' is not an {} address", A::FAMILY))?;
        if let Some(p) = port {
            if p as u32 + (last - first) as u32 > 65535 {
                return Err(format!("'{s}': target port range runs past 65535"));
            }
        }
        Ok(DnatRule {
            protocol,
            first,
            last,
            target,
            target_port: port,
        })
    }
}

/// A port forward of either family, as `tunnat dnat` and the state file write it: the
/// family is the target's (in brackets: IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyDnat {
    V4(DnatRule),
    V6(DnatRule<std::net::Ipv6Addr>),
}

impl FromStr for AnyDnat {
    type Err = String;
    fn from_str(s: &str) -> Result<AnyDnat, String> {
        if is_ipv6_rule(s) {
            s.parse().map(AnyDnat::V6)
        } else {
            s.parse().map(AnyDnat::V4)
        }
    }
}

impl fmt::Display for AnyDnat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyDnat::V4(r) => r.fmt(f),
            AnyDnat::V6(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn parses_the_seed_rule() {
        let r: DnatRule = "tcp:8888=192.168.122.73:9999".parse().unwrap();
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!((r.first, r.last), (8888, 8888));
        assert_eq!(r.target, Ipv4Addr::new(192, 168, 122, 73));
        assert_eq!(r.target_port_for(8888), 9999);
        assert_eq!(r.to_string(), "tcp:8888=192.168.122.73:9999");
    }

    #[test]
    fn ranges_keep_or_shift_ports() {
        let keep: DnatRule = "udp:5000-5010=10.0.0.2".parse().unwrap();
        assert_eq!(keep.target_port_for(5004), 5004);
        let shift: DnatRule = "UDP:5000-5010=10.0.0.2:6000".parse().unwrap();
        assert_eq!(shift.target_port_for(5004), 6004);
        assert!(keep.overlaps(&shift));
        let other: DnatRule = "tcp:5000=10.0.0.2".parse().unwrap();
        assert!(!keep.overlaps(&other));
    }

    #[test]
    fn ipv6_targets_are_written_in_brackets() {
        let r: DnatRule<Ipv6Addr> = "tcp:8888=[fd00:122::73]:9999".parse().unwrap();
        assert_eq!(r.target, "fd00:122::73".parse::<Ipv6Addr>().unwrap());
        assert_eq!(r.target_port_for(8888), 9999);
        assert_eq!(r.to_string(), "tcp:8888=[fd00:122::73]:9999");
        let keep: DnatRule<Ipv6Addr> = "udp:5000-5010=[fd00:122::73]".parse().unwrap();
        assert_eq!(keep.to_string(), "udp:5000-5010=[fd00:122::73]");
        assert!(is_ipv6_rule("tcp:1=[::1]") && !is_ipv6_rule("tcp:1=10.0.0.1"));
        for (bad, why) in [
            ("tcp:1=fd00::1", "expected"),
            ("tcp:1=[fd00::1", "expected"),
            ("tcp:1=[fd00::1]9", "expected"),
            ("tcp:1=[10.0.0.1]", "not an IPv6"),
        ] {
            let e = bad.parse::<DnatRule<Ipv6Addr>>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn refuses_bad_rules_with_a_reason() {
        for (bad, why) in [
            ("tcp8888=1.2.3.4", "expected"),
            ("sctp:1=1.2.3.4", "not tcp or udp"),
            ("tcp:0=1.2.3.4", "not a port"),
            ("tcp:70000=1.2.3.4", "not a port"),
            ("tcp:9-8=1.2.3.4", "empty"),
            ("tcp:8=1.2.3", "not an IPv4"),
            ("tcp:8=1.2.3.4:x", "not a port"),
            ("tcp:1-10=1.2.3.4:65530", "past 65535"),
        ] {
            let e = bad.parse::<DnatRule>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
