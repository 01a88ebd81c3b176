//! IPv4-embedded IPv6 addresses (RFC 6052): the NAT64 prefix, and an IPv4 address put
//! into it or taken out of it.
//!
//! Section 2.2: the prefix is 32, 40, 48, 56, 64 or 96 bits long; the IPv4 address
//! follows it, except that bits 64 to 71 (the "u" octet) are always zero and skipped;
//! what is left after the IPv4 address (the suffix) is zero. Section 3.1: the well-known
//! prefix `64:ff9b::/96` must not stand for non-global IPv4 addresses ([`is_global`]);
//! RFC 8215's local-use `64:ff9b:1::/48` and network-specific prefixes may.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The well-known prefix, `64:ff9b::/96` (RFC 6052 section 2.1).
pub const WELL_KNOWN: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// A NAT64 prefix (`--nat64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix64 {
    pub prefix: Ipv6Addr,
    pub len: u8,
}

impl Prefix64 {
    /// Is this the well-known prefix, which stands for global IPv4 addresses only?
    pub fn is_well_known(&self) -> bool {
        self.len == 96 && self.prefix == WELL_KNOWN
    }

    /// Where the four bytes of the IPv4 address sit in the IPv6 address: after the
    /// prefix, skipping byte 8 (the u octet).
    fn positions(&self) -> [usize; 4] {
        let first = usize::from(self.len / 8);
        let mut p = [first, first + 1, first + 2, first + 3];
        if self.len != 96 {
            for x in &mut p {
                if *x >= 8 {
                    *x += 1;
                }
            }
        }
        p
    }

    fn mask(&self) -> u128 {
        u128::MAX << (128 - u32::from(self.len))
    }

    /// Does `a` start with this prefix?
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        (u128::from(a) ^ u128::from(self.prefix)) & self.mask() == 0
    }

    /// The IPv6 address standing for `v4`.
    pub fn embed(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let mut o = self.prefix.octets();
        for (p, b) in self.positions().into_iter().zip(v4.octets()) {
            o[p] = b;
        }
        Ipv6Addr::from(o)
    }

    /// The IPv4 address `a` stands for: `None` if `a` is not in the prefix, or its u
    /// octet is not zero (RFC 6052 section 2.2: such an address is not IPv4-embedded).
    pub fn extract(&self, a: Ipv6Addr) -> Option<Ipv4Addr> {
        if !self.contains(a) {
            return None;
        }
        let o = a.octets();
        if self.len != 96 && o[8] != 0 {
            return None;
        }
        let p = self.positions();
        Some(Ipv4Addr::new(o[p[0]], o[p[1]], o[p[2]], o[p[3]]))
    }
}

impl fmt::Display for Prefix64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.prefix, self.len)
    }
}

impl std::str::FromStr for Prefix64 {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix64, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not an IPv6 prefix like 64:ff9b::/96"))?;
        let prefix: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IPv6 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("'{l}' is not a prefix length"))?;
        if ![32, 40, 48, 56, 64, 96].contains(&len) {
            return Err(format!(
                "a NAT64 prefix is 32, 40, 48, 56, 64 or 96 bits long (RFC 6052 section 2.2), not {len}"
            ));
        }
        let p = Prefix64 { prefix, len };
        if u128::from(prefix) & !p.mask() != 0 {
            return Err(format!("{s} has bits set past its length"));
        }
        if len == 96 && prefix.octets()[8] != 0 {
            return Err(format!(
                "{s}: bits 64 to 71 (the u octet) must be zero (RFC 6052 section 2.2)"
            ));
        }
        let first = prefix.segments()[0];
        if first & 0xff00 == 0xff00 || first & 0xffc0 == 0xfe80 || prefix.is_unspecified() {
            return Err(format!("{s} is multicast, link-local or unspecified"));
        }
        Ok(p)
    }
}

/// Is `a` a global IPv4 address, one the well-known prefix may stand for (RFC 6052
/// section 3.1)? Not: 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24,
/// 192.0.2/24, 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, multicast, 240/4.
pub fn is_global(a: Ipv4Addr) -> bool {
    let x = u32::from(a);
    const NOT_GLOBAL: [(u32, u32); 14] = [
        (0x0000_0000, 8),
        (0x0a00_0000, 8),
        (0x6440_0000, 10),
        (0x7f00_0000, 8),
        (0xa9fe_0000, 16),
        (0xac10_0000, 12),
        (0xc000_0000, 24),
        (0xc000_0200, 24),
        (0xc0a8_0000, 16),
        (0xc612_0000, 15),
        (0xc633_6400, 24),
        (0xcb00_7100, 24),
        (0xe000_0000, 4),
        (0xf000_0000, 4),
    ];
    !NOT_GLOBAL
        .iter()
        .any(|&(net, len)| x & (u32::MAX << (32 - len)) == net)
}

/// Can `a` be translated to at all, whatever the prefix? Not 0/8, loopback, multicast or
/// the limited broadcast (what no router forwards to).
pub fn is_translatable(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(o[0] == 0 || o[0] == 127 || a.is_multicast() || a.is_broadcast())
}

#[cfg(test)]
mod test {
    use super::*;

    fn p(s: &str) -> Prefix64 {
        s.parse().unwrap()
    }

    #[test]
    fn rfc6052_table_of_examples() {
        // RFC 6052 section 2.4, for 192.0.2.33.
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        for (prefix, want) in [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
        ] {
            let pre = p(prefix);
            let a: Ipv6Addr = want.parse().unwrap();
            assert_eq!(pre.embed(v4), a, "{prefix}");
            assert_eq!(pre.extract(a), Some(v4), "{prefix}");
        }
    }

    #[test]
    fn extract_refuses_other_prefixes_and_a_set_u_octet() {
        let pre = p("2001:db8:122:344::/64");
        assert_eq!(pre.extract("2001:db8:122:345::1".parse().unwrap()), None);
        assert_eq!(
            pre.extract("2001:db8:122:344:1c0:2:2100:0".parse().unwrap()),
            None
        );
        assert!(p("64:ff9b::/96").is_well_known());
        assert!(!p("64:ff9b:1::/96").is_well_known());
    }

    #[test]
    fn bad_prefixes_are_refused_with_a_reason() {
        for (s, why) in [
            ("64:ff9b::/95", "32, 40, 48, 56, 64 or 96"),
            ("64:ff9b::1/96", "past its length"),
            ("64:ff9b:0:0:100::/96", "u octet"),
            ("ff02::/96", "multicast"),
            ("fe80::/64", "link-local"),
            ("64:ff9b::", "IPv6 prefix"),
            ("10.0.0.0/8", "IPv6 address"),
        ] {
            let e = s.parse::<Prefix64>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn global_addresses() {
        for a in [
            "192.168.1.1",
            "172.16.1.1",
            "10.1.1.1",
            "100.64.0.1",
            "127.0.0.1",
        ] {
            assert!(!is_global(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "172.32.0.1", "192.0.3.1", "100.128.0.1"] {
            assert!(is_global(a.parse().unwrap()), "{a}");
        }
        assert!(!is_translatable(Ipv4Addr::new(0, 0, 0, 5)));
        assert!(is_translatable(Ipv4Addr::new(172, 16, 1, 1)));
    }
}
