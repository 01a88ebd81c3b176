//! ICMPv6 (RFC 4443): message types, the checksum over the IPv6 pseudo-header, and the
//! error messages the router originates.
//!
//! Unlike ICMPv4, the ICMPv6 checksum covers the addresses (a pseudo-header, RFC 4443
//! section 2.3), so translating an address updates it as for TCP and UDP. An error quotes
//! as much of the offending packet as keeps the error within the minimum IPv6 MTU of 1280
//! bytes (section 2.4 (c)); none is sent about an error message, or about a packet sent
//! to a multicast address (except "packet too big"), or from an address that does not
//! name one host (section 2.4 (e)).

use std::net::Ipv6Addr;

use super::checksum;
use super::ipv6::{self, next_header, Ipv6};

/// The smallest link MTU IPv6 allows (RFC 8200 section 5): an originated error fits it.
pub const MIN_MTU: usize = 1280;
/// Hop limit of originated messages.
pub const HOP_LIMIT: u8 = 64;

/// ICMPv6 message types tunnat handles or recognises.
pub mod kind {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const ROUTER_SOLICITATION: u8 = 133;
    pub const ROUTER_ADVERTISEMENT: u8 = 134;
    pub const NEIGHBOR_SOLICITATION: u8 = 135;
    pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLDV2_REPORT: u8 = 143;

    /// Errors have types 0-127 (RFC 4443 section 2.1).
    pub fn is_error(t: u8) -> bool {
        t < 128
    }

    /// Link-local control traffic (neighbour discovery, MLD): never forwarded.
    pub fn is_link_control(t: u8) -> bool {
        matches!(
            t,
            MLD_QUERY
                | MLD_REPORT
                | MLD_DONE
                | ROUTER_SOLICITATION
                | ROUTER_ADVERTISEMENT
                | NEIGHBOR_SOLICITATION
                | NEIGHBOR_ADVERTISEMENT
                | REDIRECT
                | MLDV2_REPORT
        )
    }
}

/// Codes of destination unreachable.
pub mod unreachable {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
}

/// Codes of parameter problem.
pub mod parameter {
    pub const HEADER_FIELD: u8 = 0;
    pub const NEXT_HEADER: u8 = 1;
    pub const OPTION: u8 = 2;
}

/// The checksum an ICMPv6 message `msg` from `src` to `dst` should carry (its own
/// checksum field taken as zero).
pub fn compute(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut s = checksum::pseudo_header_sum_v6(src, dst, next_header::ICMPV6, msg.len() as u32);
    s = checksum::sum(msg.get(..2).unwrap_or(msg), s);
    if msg.len() > 4 {
        s = checksum::sum(&msg[4..], s);
    }
    !checksum::fold(s)
}

/// Does message `msg` from `src` to `dst` carry a correct checksum?
pub fn checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> bool {
    if msg.len() < 4 {
        return false;
    }
    let s = checksum::pseudo_header_sum_v6(src, dst, next_header::ICMPV6, msg.len() as u32);
    checksum::fold(checksum::sum(msg, s)) == 0xffff
}

/// Writes the right checksum into message `msg` from `src` to `dst`.
pub fn set_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &mut [u8]) {
    if msg.len() >= 4 {
        let c = compute(src, dst, msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

/// Does `a` name one host that an error may be sent to? Not the unspecified address, a
/// multicast address or the loopback.
fn unicast(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_loopback())
}

/// May an ICMPv6 error of type `error` be sent about `original`? (RFC 4443 2.4 (e))
pub fn may_answer<T: AsRef<[u8]>>(original: &Ipv6<T>, error: u8) -> bool {
    if !unicast(original.src()) {
        return false;
    }
    if original.dst().is_multicast() && error != kind::PACKET_TOO_BIG {
        return false;
    }
    if original.fragment().is_some_and(|f| f.offset != 0) {
        return false; // a later fragment carries no transport header to quote usefully
    }
    if original.protocol() == next_header::ICMPV6 {
        if let Some(t) = original.payload().first() {
            return !kind::is_error(*t);
        }
    }
    true
}

/// Builds, into `out`, the ICMPv6 error `icmp_type`/`code` from `src` about `original`,
/// quoting as much of it as fits in [`MIN_MTU`]. `rest` is the 32-bit field after the
/// checksum (the MTU of "packet too big", the pointer of "parameter problem").
pub fn build_error<T: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    src: Ipv6Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    original: &Ipv6<T>,
) {
    let quoted = original.as_bytes();
    let quoted = &quoted[..quoted.len().min(MIN_MTU - ipv6::HEADER_LEN - 8)];
    let len = 8 + quoted.len();
    let dst = original.src();
    out.clear();
    out.resize(ipv6::HEADER_LEN + len, 0);
    emit_header(out, len as u16, next_header::ICMPV6, HOP_LIMIT, src, dst);
    let m = &mut out[ipv6::HEADER_LEN..];
    m[0] = icmp_type;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[8..].copy_from_slice(quoted);
    set_checksum(src, dst, m);
}

/// Writes a fixed IPv6 header (traffic class and flow label zero) at the start of `out`.
pub fn emit_header(
    out: &mut [u8],
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    out[0] = 0x60;
    out[1..4].fill(0);
    out[4..6].copy_from_slice(&payload_len.to_be_bytes());
    out[6] = next;
    out[7] = hop_limit;
    out[8..24].copy_from_slice(&src.octets());
    out[24..40].copy_from_slice(&dst.octets());
}

#[cfg(test)]
mod test {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A UDP datagram of `data_len` bytes of data from `src` to `dst`.
    fn udp(src: &str, dst: &str, data_len: usize) -> Vec<u8> {
        let len = 8 + data_len;
        let mut p = vec![0u8; 40 + len];
        emit_header(
            &mut p,
            len as u16,
            next_header::UDP,
            64,
            addr(src),
            addr(dst),
        );
        p[44..46].copy_from_slice(&(len as u16).to_be_bytes());
        p
    }

    #[test]
    fn an_error_quotes_what_fits_in_1280_bytes_and_checks_out() {
        let original = udp("fd00:122::101", "2001:db8:1::1", 1400);
        let v = Ipv6::new_checked(&original[..]).unwrap();
        let router = addr("fd00:122::100");
        assert!(may_answer(&v, kind::PACKET_TOO_BIG));
        let mut out = Vec::new();
        build_error(&mut out, router, kind::PACKET_TOO_BIG, 0, 1280, &v);
        assert_eq!(out.len(), MIN_MTU);
        let e = Ipv6::new_checked(&out[..]).unwrap();
        assert_eq!(
            (e.src(), e.dst(), e.protocol()),
            (router, v.src(), next_header::ICMPV6)
        );
        let m = e.payload();
        assert_eq!((m[0], m[1]), (kind::PACKET_TOO_BIG, 0));
        assert_eq!(&m[4..8], &1280u32.to_be_bytes());
        assert_eq!(&m[8..48], &original[..40], "the original header is quoted");
        assert!(checksum_ok(router, v.src(), m));
        let mut bad = m.to_vec();
        bad[10] ^= 1;
        assert!(!checksum_ok(router, v.src(), &bad));
    }

    #[test]
    fn no_error_about_errors_multicast_or_unspecified_sources() {
        let mut err = Vec::new();
        let v = udp("fd00:122::101", "2001:db8:1::1", 8);
        let first = Ipv6::new_checked(&v[..]).unwrap();
        build_error(
            &mut err,
            addr("fd00:122::100"),
            kind::TIME_EXCEEDED,
            0,
            0,
            &first,
        );
        let e = Ipv6::new_checked(&err[..]).unwrap();
        assert!(
            !may_answer(&e, kind::DEST_UNREACHABLE),
            "an error about an error"
        );
        let m = udp("fd00:122::101", "ff02::1", 8);
        let m = Ipv6::new_checked(&m[..]).unwrap();
        assert!(!may_answer(&m, kind::TIME_EXCEEDED));
        assert!(
            may_answer(&m, kind::PACKET_TOO_BIG),
            "too big may answer multicast"
        );
        let u = udp("::", "2001:db8:1::1", 8);
        assert!(!may_answer(
            &Ipv6::new_checked(&u[..]).unwrap(),
            kind::PACKET_TOO_BIG
        ));
        assert!(kind::is_link_control(kind::ROUTER_SOLICITATION));
        assert!(!kind::is_link_control(kind::ECHO_REQUEST));
    }
}
