//! Networks as the configuration writes them (`192.168.122.100/24`,
//! `fd00:122::100/64`): the router's address on a port together with the network behind
//! that port. One type for both families ([`Cidr`]), over the [`Address`] trait's bits.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::endpoint::Address;

/// A network of family `A`: an address in it and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr<A> {
    pub addr: A,
    pub prefix: u8,
}

/// An IPv4 network.
pub type Ipv4Cidr = Cidr<Ipv4Addr>;
/// An IPv6 network.
pub type Ipv6Cidr = Cidr<Ipv6Addr>;

impl<A: Address> Cidr<A> {
    /// The prefix as a mask over the address's bits, left-aligned in a `u128`.
    fn mask128(&self) -> u128 {
        let bits = u32::from(A::BITS);
        match u32::from(self.prefix.min(A::BITS)) {
            0 => 0,
            p => (u128::MAX << (128 - p)) >> (128 - bits),
        }
    }
    pub fn contains(&self, a: A) -> bool {
        (a.to_bits128() & self.mask128()) == (self.addr.to_bits128() & self.mask128())
    }
    /// The network's first address (all host bits zero).
    pub fn network(&self) -> A {
        A::from_bits128(self.addr.to_bits128() & self.mask128())
    }
    /// Can `a` be a host of this network other than the router? Not the router's own
    /// address, and for IPv4 not the network or broadcast address of a network with room
    /// for hosts.
    pub fn is_other_host(&self, a: A) -> bool {
        let host_bits = !self.mask128() & (u128::MAX >> (128 - u32::from(A::BITS)));
        let host = a.to_bits128() & host_bits;
        let edge = A::BITS == 32 && self.prefix < 31 && (host == 0 || host == host_bits);
        self.contains(a) && a != self.addr && !edge
    }
}

impl Cidr<Ipv4Addr> {
    /// No network (0.0.0.0/32): what checks of a family a router does not have see.
    pub const UNSET: Cidr<Ipv4Addr> = Cidr {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix: 32,
    };

    pub fn mask(&self) -> u32 {
        self.mask128() as u32
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl<A: std::fmt::Display> std::fmt::Display for Cidr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<A: Address + std::str::FromStr> std::str::FromStr for Cidr<A> {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr<A>, String> {
        let example = if A::BITS == 32 {
            "192.168.122.100/24"
        } else {
            "fd00:122::100/64"
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not ADDRESS/PREFIX (e.g. {example})"))?;
        let addr: A = a
            .parse()
            .map_err(|_| format!("'{a}' in '{s}' is not an {} address", A::FAMILY))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= A::BITS)
            .ok_or_else(|| format!("prefix '{p}' in '{s}' is not 0-{}", A::BITS))?;
        Ok(Cidr { addr, prefix })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn both_families_parse_contain_and_print() {
        let v4: Ipv4Cidr = "192.168.122.100/24".parse().unwrap();
        assert!(v4.contains(Ipv4Addr::new(192, 168, 122, 7)));
        assert!(!v4.contains(Ipv4Addr::new(192, 168, 123, 7)));
        assert_eq!(v4.mask(), 0xffff_ff00);
        assert_eq!(v4.broadcast(), Ipv4Addr::new(192, 168, 122, 255));
        assert_eq!(v4.network(), Ipv4Addr::new(192, 168, 122, 0));
        let v6: Ipv6Cidr = "fd00:122::100/64".parse().unwrap();
        assert!(v6.contains("fd00:122::73".parse().unwrap()));
        assert!(!v6.contains("fd00:123::73".parse().unwrap()));
        assert_eq!(v6.network(), "fd00:122::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v6.to_string(), "fd00:122::100/64");
        let all: Ipv6Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        let one: Ipv4Cidr = "10.0.0.1/32".parse().unwrap();
        assert!(
            one.contains(Ipv4Addr::new(10, 0, 0, 1)) && !one.contains(Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    #[test]
    fn errors_name_the_family_and_its_prefix_range() {
        let e = "fd00::1/64".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.contains("not an IPv4 address"), "{e}");
        let e = "fd00::1/129".parse::<Ipv6Cidr>().unwrap_err();
        assert!(e.contains("is not 0-128"), "{e}");
        let e = "10.0.0.1/33".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.contains("prefix '33'") && e.contains("0-32"), "{e}");
        let e = "fd00::1".parse::<Ipv6Cidr>().unwrap_err();
        assert!(e.contains("fd00:122::100/64"), "{e}");
    }
}
