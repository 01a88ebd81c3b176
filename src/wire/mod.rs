//! Zero-copy views of the packets tunnat forwards, and the arithmetic to rewrite them.
//!
//! Every view is created by a `*_checked` constructor that validates lengths before any
//! field is read, so the NAT core never indexes past the end of a short or lying packet.
//! Field access goes through `pnet_packet`'s views; rewriting an address or port updates
//! the checksums incrementally ([`checksum`], RFC 1624) instead of recomputing them.

pub mod checksum;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod offload;
pub mod summary;
pub mod transport;

use std::fmt;

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
