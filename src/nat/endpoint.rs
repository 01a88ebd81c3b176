//! Addresses, endpoints and session keys, generic over the address family.
//!
//! The table ([`super::table`]) and the port allocator ([`super::ports`]) are written once
//! for any [`Address`]: IPv4 today (`Ipv4Addr`, the default type parameter everywhere),
//! and IPv6 by instantiating the same code with `Ipv6Addr`, not by copying it. An IPv4
//! session key stays as small as it was (the family is a type, not a stored tag).

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::transport::Protocol;

/// An IP address family the table can be keyed by.
pub trait Address: Copy + Eq + Hash + Ord + fmt::Debug + fmt::Display + 'static {
    /// Bits in an address: 32 or 128.
    const BITS: u8;
    /// The family's name in messages: "IPv4" or "IPv6".
    const FAMILY: &'static str;
    /// The address as a number (right-aligned).
    fn to_bits128(self) -> u128;
    /// The address of a number (its low [`Address::BITS`] bits).
    fn from_bits128(bits: u128) -> Self;
    /// The address as std's either-family type.
    fn to_ip(self) -> IpAddr;
    /// The address, if `ip` is of this family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
}

impl Address for Ipv4Addr {
    const BITS: u8 = 32;
    const FAMILY: &'static str = "IPv4";
    fn to_bits128(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits128(bits: u128) -> Self {
        Ipv4Addr::from(bits as u32)
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

impl Address for Ipv6Addr {
    const BITS: u8 = 128;
    const FAMILY: &'static str = "IPv6";
    fn to_bits128(self) -> u128 {
        u128::from(self)
    }
    fn from_bits128(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(self)
    }
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
}

/// An address and a port (or ICMP query identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint<A = Ipv4Addr> {
    pub addr: A,
    pub port: u16,
}

impl<A: Address> Endpoint<A> {
    pub fn new(addr: A, port: u16) -> Endpoint<A> {
        Endpoint { addr, port }
    }
}

impl fmt::Display for Endpoint<Ipv4Addr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

impl fmt::Display for Endpoint<Ipv6Addr> {
    /// `[addr]:port`, as in URLs (RFC 5952 section 6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]:{}", self.addr, self.port)
    }
}

/// A session seen from the inside: protocol, inside endpoint, remote endpoint. For ICMP
/// queries the inside port is the identifier and the remote port is 0.
///
/// Aligned to whole words (issue 18): built field by field and then copied by the word,
/// an odd-sized key made the copy wait for the narrow stores to drain (a failed store
/// forward, about 6% of an established packet's time in the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, align(8))]
pub struct SessionKey<A = Ipv4Addr> {
    pub protocol: Protocol,
    pub inside: Endpoint<A>,
    pub remote: Endpoint<A>,
}

/// A mapping's key: an inside endpoint of one protocol (RFC 4787 REQ-1: the mapping does
/// not depend on the remote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapKey<A = Ipv4Addr> {
    pub protocol: Protocol,
    pub inside: Endpoint<A>,
}

impl<A: Address> SessionKey<A> {
    /// The mapping this session goes through.
    pub fn mapping(&self) -> MapKey<A> {
        MapKey {
            protocol: self.protocol,
            inside: self.inside,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn endpoints_print_as_in_urls() {
        assert_eq!(
            Endpoint::new(Ipv4Addr::new(192, 168, 122, 73), 9999).to_string(),
            "192.168.122.73:9999"
        );
        let v6: Ipv6Addr = "fd00:122::73".parse().unwrap();
        assert_eq!(Endpoint::new(v6, 9999).to_string(), "[fd00:122::73]:9999");
    }

    #[test]
    fn an_ipv4_key_is_no_larger_for_the_generic() {
        // 13 bytes of fields in two words: whole-word copies (see the type), and a
        // table slot no larger (`sessions::test`).
        assert_eq!(std::mem::size_of::<SessionKey>(), 16);
    }
}
