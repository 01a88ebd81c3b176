//! Zero-copy views of the packets tunnat forwards, and the arithmetic to rewrite them.
//!
//! Every view is created by a `*_checked` constructor that validates lengths before any
//! field is read, so the NAT core never indexes past the end of a short or lying packet.
//! Field access goes through `pnet_packet`'s views; rewriting an address or port updates
//! the checksums incrementally ([`checksum`], RFC 1624) instead of recomputing them.

pub mod checksum;
pub mod gro;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod offload;
pub mod summary;
pub mod transport;

use std::fmt;
use std::net::IpAddr;

/// A datagram the router makes itself: an IPv4 (DF set, identification `ident`) or IPv6
/// header from `src` to `dst`, TTL or hop limit 64, before the transport message `l4` of
/// protocol `next`, whose checksum at offset `csum_at` is filled in (over the
/// pseudo-header, but for ICMPv4). `None` if the two addresses are not of one family.
pub fn datagram(
    src: IpAddr,
    dst: IpAddr,
    next: u8,
    ident: u16,
    mut l4: Vec<u8>,
    csum_at: usize,
) -> Option<Vec<u8>> {
    let (pseudo, mut p) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 20];
            let len = (20 + l4.len()) as u16;
            ipv4::emit_header(&mut p, 0, len, ident, true, 64, next, s, d);
            let pseudo = if next == 1 {
                0
            } else {
                checksum::pseudo_header_sum(s, d, next, l4.len() as u16)
            };
            (pseudo, p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0u8; 40];
            icmpv6::emit_header(&mut p, l4.len() as u16, next, 64, s, d);
            (
                checksum::pseudo_header_sum_v6(s, d, next, l4.len() as u32),
                p,
            )
        }
        _ => return None,
    };
    l4[csum_at..csum_at + 2].fill(0);
    let c = !checksum::fold(checksum::sum(&l4, pseudo));
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&l4);
    Some(p)
}

/// Why a packet (or the header quoted inside an ICMP error) was refused by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than the header it claims to carry.
    Truncated,
    /// Not IPv4 (version nibble).
    NotIpv4,
    /// IHL below 5 or beyond the packet.
    BadHeaderLength,
    /// Total length below the header length or beyond the bytes read.
    BadTotalLength,
    /// IPv4 header checksum does not verify.
    BadIpChecksum,
    /// TCP data offset, UDP length or ICMP length is inconsistent.
    BadTransportLength,
    /// ICMP checksum does not verify.
    BadIcmpChecksum,
    /// Not IPv6 (version nibble).
    NotIpv6,
    /// An IPv6 payload length of zero with data following (RFC 2675 jumbogram).
    Jumbogram,
    /// An IPv6 extension header chain that is malformed, too long, or runs past the end.
    BadExtensionHeader,
    /// An IPv6 routing header of type 0 (deprecated by RFC 5095).
    RoutingType0,
    /// A UDP checksum of zero in IPv6, where it is mandatory (RFC 8200 section 8.1).
    UdpZeroChecksum,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            WireError::Truncated => "truncated",
            WireError::NotIpv4 => "not IPv4",
            WireError::BadHeaderLength => "bad IHL",
            WireError::BadTotalLength => "bad total length",
            WireError::BadIpChecksum => "bad IPv4 header checksum",
            WireError::BadTransportLength => "bad transport length",
            WireError::BadIcmpChecksum => "bad ICMP checksum",
            WireError::NotIpv6 => "not IPv6",
            WireError::Jumbogram => "jumbogram",
            WireError::BadExtensionHeader => "bad extension header chain",
            WireError::RoutingType0 => "routing header type 0",
            WireError::UdpZeroChecksum => "UDP checksum zero in IPv6",
        };
        f.write_str(s)
    }
}

/// IP protocol numbers tunnat knows.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}
