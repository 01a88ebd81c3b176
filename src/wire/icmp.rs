//! ICMP error messages the router originates (RFC 792, RFC 1812 section 4.3.2).
//!
//! An error quotes the offending datagram's IP header and the start of its data. Like
//! Linux, tunnat quotes as much as keeps the whole error within 576 bytes (RFC 1812
//! 4.3.2.3) and never sends an error about an ICMP error, a non-initial fragment, or a
//! packet sent from a broadcast, multicast or unspecified address (RFC 1812 4.3.2.7).

use std::net::Ipv4Addr;

use super::ipv4::{self, Ipv4};
use super::proto;
use super::transport::icmp_type;

/// Largest ICMP error datagram originated, header included (RFC 1812 4.3.2.3).
pub const MAX_ERROR_LEN: usize = 576;
/// TOS of originated errors: precedence "internetwork control", as Linux sends.
pub const ERROR_TOS: u8 = 0xc0;

/// Codes of destination unreachable (type 3) used by tunnat.
pub mod unreachable {
    pub const HOST: u8 = 1;
    pub const PORT: u8 = 3;
    pub const FRAGMENTATION_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// May an ICMP error be sent about `original`? (RFC 1812 4.3.2.7)
pub fn may_answer<T: AsRef<[u8]>>(original: &Ipv4<T>) -> bool {
    let src = original.src();
    if src.is_broadcast()
        || src.is_multicast()
        || src.is_unspecified()
        || original.dst().is_multicast()
    {
        return false;
    }
    if original.is_later_fragment() {
        return false;
    }
    if original.protocol() == proto::ICMP {
        let p = original.payload();
        if p.first().is_some_and(|t| icmp_type::is_error(*t)) {
            return false;
        }
    }
    true
}

/// Builds, into `out`, the ICMP error `icmp_type`/`code` from `src` about `original`.
/// `rest` is the 32-bit field after the checksum (next-hop MTU for "fragmentation needed").
pub fn build_error<T: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    original: &Ipv4<T>,
) {
    let quoted = original.as_bytes();
    let quoted = &quoted[..quoted.len().min(MAX_ERROR_LEN - ipv4::HEADER_LEN - 8)];
    let total = ipv4::HEADER_LEN + 8 + quoted.len();
    out.clear();
    out.resize(total, 0);
    ipv4::emit_header(
        out,
        ERROR_TOS,
        total as u16,
        0,
        false,
        64,
        proto::ICMP,
        src,
        original.src(),
    );
    let m = &mut out[ipv4::HEADER_LEN..];
    m[0] = icmp_type;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[8..].copy_from_slice(quoted);
    super::transport::refresh_icmp_checksum(m);
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::checksum;
    use crate::wire::ipv4::Check;
    use crate::wire::transport::{Protocol, Transport};

    #[test]
    fn time_exceeded_quotes_the_datagram() {
        let orig = crate::wire::transport::test::udp(
            [192, 168, 122, 101],
            33434,
            [172, 16, 1, 1],
            33434,
            &[0; 32],
        );
        let ip = Ipv4::new_checked(&orig[..], Check::Full).unwrap();
        let mut out = Vec::new();
        let router = Ipv4Addr::new(192, 168, 122, 100);
        build_error(&mut out, router, icmp_type::TIME_EXCEEDED, 0, 0, &ip);
        let e = Ipv4::new_checked(&out[..], Check::Full).unwrap();
        assert_eq!(e.src(), router);
        assert_eq!(e.dst(), Ipv4Addr::new(192, 168, 122, 101));
        let t = Transport::new_checked(Protocol::Icmp, e.payload()).unwrap();
        assert_eq!((t.icmp_type, t.icmp_code), (11, 0));
        assert_eq!(&e.payload()[8..], &orig[..]);
        assert_eq!(checksum::checksum(e.payload()), 0);
    }

    #[test]
    fn long_datagrams_are_cut_to_576() {
        let orig =
            crate::wire::transport::test::udp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, &[7; 1400]);
        let ip = Ipv4::new_checked(&orig[..], Check::Full).unwrap();
        let mut out = Vec::new();
        build_error(
            &mut out,
            Ipv4Addr::new(10, 0, 0, 9),
            3,
            unreachable::FRAGMENTATION_NEEDED,
            1280,
            &ip,
        );
        assert_eq!(out.len(), MAX_ERROR_LEN);
        assert_eq!(&out[26..28], &1280u16.to_be_bytes());
    }

    #[test]
    fn no_error_about_an_error() {
        let mut p = vec![0u8; 20 + 36];
        let a = Ipv4Addr::new(10, 0, 0, 1);
        ipv4::emit_header(&mut p, 0, 56, 0, false, 1, 1, a, a);
        p[20] = icmp_type::DEST_UNREACHABLE;
        let ip = Ipv4::new_checked(&p[..], Check::Full).unwrap();
        assert!(!may_answer(&ip));
    }
}
