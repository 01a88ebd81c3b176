//! IPv6 header view (RFC 8200): validation, the walk over extension headers to the
//! transport header, field access and in-place rewriting.
//!
//! [`Ipv6::new_checked`] accepts a buffer only if the version is 6, the fixed header is
//! present, the payload length is not zero with data following (a jumbogram, RFC 2675,
//! which a TUN never carries and tunnat refuses) and fits the buffer, and the extension
//! headers form a chain that ends within the packet:
//! * hop-by-hop options only first (RFC 8200 section 4.1), destination options, routing
//!   and fragment headers followed to the upper-layer header;
//! * at most [`MAX_EXTENSIONS`] of them and [`MAX_EXTENSION_BYTES`] in all, so a chain
//!   made to be long or looping costs a bounded walk;
//! * a routing header of type 0 is refused (RFC 5095), as is a second fragment header.
//!
//! Unlike IPv4 there is no header checksum; the transport checksums cover a pseudo-header
//! of the addresses ([`super::checksum::pseudo_header_sum_v6`]), so rewriting an address
//! only updates the transport checksum.

use std::net::Ipv6Addr;

use super::WireError;

pub const HEADER_LEN: usize = 40;
/// Most extension headers followed before the upper-layer header.
pub const MAX_EXTENSIONS: usize = 8;
/// Most bytes of extension headers followed.
pub const MAX_EXTENSION_BYTES: usize = 1024;

/// Next-header values (IANA "Assigned Internet Protocol Numbers").
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTIONS: u8 = 60;
}

/// What the fragment header says (RFC 8200 section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset of the fragment's data, in 8-byte units.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
    /// Where the fragment header starts in the packet.
    pub at: usize,
}

impl FragmentInfo {
    /// An atomic fragment (offset 0, no more): a whole datagram with a fragment header,
    /// processed as if it had none (RFC 8021, RFC 6946).
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// A validated IPv6 packet in `buf`.
#[derive(Debug)]
pub struct Ipv6<T> {
    buf: T,
    /// Header plus payload length: the bytes of the datagram.
    total_len: usize,
    /// The upper-layer protocol (the last next-header value).
    protocol: u8,
    /// Where the upper-layer header starts.
    l4_offset: usize,
    fragment: Option<FragmentInfo>,
}

fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]>> Ipv6<T> {
    /// Validates `buf` as an IPv6 packet and walks its extension headers.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        Self::new(buf, false)
    }

    /// Validates `buf` as the start of an IPv6 packet quoted in an ICMPv6 error: the
    /// payload length may exceed what is there (the error carries only the start), and
    /// the extension headers are walked within the bytes present.
    pub fn new_quoted(buf: T) -> Result<Self, WireError> {
        Self::new(buf, true)
    }

    /// Always inlined, with the walk of extension headers apart (issue 18): the view is
    /// made in the caller's frame instead of being returned through memory and copied.
    #[inline(always)]
    fn new(buf: T, quoted: bool) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::NotIpv6);
        }
        let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let mut total_len = HEADER_LEN + payload_len;
        if quoted {
            total_len = total_len.min(b.len());
        } else if payload_len == 0 && b.len() > HEADER_LEN {
            return Err(WireError::Jumbogram);
        } else if total_len > b.len() {
            return Err(WireError::BadTotalLength);
        }
        let (protocol, l4_offset, fragment) = match b[6] {
            next_header::TCP | next_header::UDP | next_header::ICMPV6 => (b[6], HEADER_LEN, None),
            first => walk(&b[..total_len], first)?,
        };
        Ok(Ipv6 {
            buf,
            total_len,
            protocol,
            l4_offset,
            fragment,
        })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    pub fn total_len(&self) -> usize {
        self.total_len
    }
    pub fn src(&self) -> Ipv6Addr {
        addr(self.b(), 8)
    }
    pub fn dst(&self) -> Ipv6Addr {
        addr(self.b(), 24)
    }
    pub fn hop_limit(&self) -> u8 {
        self.b()[7]
    }
    pub fn traffic_class(&self) -> u8 {
        let b = self.b();
        (b[0] << 4) | (b[1] >> 4)
    }
    pub fn flow_label(&self) -> u32 {
        let b = self.b();
        (u32::from(b[1] & 0x0f) << 16) | (u32::from(b[2]) << 8) | u32::from(b[3])
    }
    /// The upper-layer protocol, after the extension headers.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }
    /// Where the upper-layer header starts (40 with no extension headers).
    pub fn l4_offset(&self) -> usize {
        self.l4_offset
    }
    /// The fragment header's fields, if the packet has one.
    pub fn fragment(&self) -> Option<FragmentInfo> {
        self.fragment
    }
    /// A fragment of a larger datagram (an atomic fragment is not).
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| !f.is_atomic())
    }
    /// The upper-layer header and data.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.l4_offset..self.total_len]
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.b()[..self.total_len]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6<T> {
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buf.as_mut()[8..24].copy_from_slice(&a.octets());
    }
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buf.as_mut()[24..40].copy_from_slice(&a.octets());
    }
    /// Lowers the hop limit by one (the caller has checked it is above 1).
    pub fn decrement_hop_limit(&mut self) {
        let b = self.buf.as_mut();
        b[7] = b[7].saturating_sub(1);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (at, end) = (self.l4_offset, self.total_len);
        &mut self.buf.as_mut()[at..end]
    }
}

/// Follows the chain of extension headers in `pkt` (a whole datagram) from `first`, the
/// fixed header's next-header value. Returns the upper-layer protocol, its offset, and
/// the fragment header if there is one.
fn walk(pkt: &[u8], first: u8) -> Result<(u8, usize, Option<FragmentInfo>), WireError> {
    use next_header::*;
    let mut next = first;
    let mut at = HEADER_LEN;
    let mut fragment = None;
    for n in 0..=MAX_EXTENSIONS {
        let len = match next {
            HOP_BY_HOP if n > 0 => return Err(WireError::BadExtensionHeader),
            HOP_BY_HOP | DEST_OPTIONS | ROUTING => {
                let h = pkt.get(at..at + 2).ok_or(WireError::Truncated)?;
                if next == ROUTING && pkt.get(at + 2) == Some(&0) {
                    return Err(WireError::RoutingType0);
                }
                (usize::from(h[1]) + 1) * 8
            }
            FRAGMENT => {
                if fragment.is_some() {
                    return Err(WireError::BadExtensionHeader);
                }
                let h = pkt.get(at..at + 8).ok_or(WireError::Truncated)?;
                let off = u16::from_be_bytes([h[2], h[3]]);
                fragment = Some(FragmentInfo {
                    offset: off >> 3,
                    more: off & 1 != 0,
                    ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    at,
                });
                8
            }
            proto => return Ok((proto, at, fragment)),
        };
        if at + len > pkt.len() || at + len - HEADER_LEN > MAX_EXTENSION_BYTES {
            return Err(WireError::BadExtensionHeader);
        }
        next = pkt[at];
        at += len;
        // A later fragment carries no upper-layer header to walk to.
        if fragment.is_some_and(|f| f.offset != 0) {
            return Ok((next, at, fragment));
        }
    }
    Err(WireError::BadExtensionHeader)
}

#[cfg(test)]
mod test {
    use super::next_header::*;
    use super::*;

    const SRC: &str = "fd00:122::101";
    const DST: &str = "2001:db8:1::1";

    /// A packet: fixed header with `first`, then `ext` (extension headers), then `l4`.
    fn packet(first: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let plen = (ext.len() + l4.len()) as u16;
        let mut p = vec![0x60, 0x0a, 0xbc, 0xde];
        p.extend_from_slice(&plen.to_be_bytes());
        p.push(first);
        p.push(64);
        p.extend_from_slice(&SRC.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&DST.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    }

    /// An options header (hop-by-hop or destination) of 8 bytes, then `next`.
    fn opts(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0] // PadN of 4 after the 2-byte header
    }

    #[test]
    fn fields_and_a_plain_udp_datagram() {
        let p = packet(UDP, &[], &[0u8; 12]);
        let v = Ipv6::new_checked(&p[..]).unwrap();
        assert_eq!(v.src(), SRC.parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.dst(), DST.parse::<Ipv6Addr>().unwrap());
        assert_eq!((v.hop_limit(), v.protocol(), v.l4_offset()), (64, UDP, 40));
        assert_eq!((v.traffic_class(), v.flow_label()), (0x00, 0xabcde));
        assert_eq!(v.payload().len(), 12);
        assert!(!v.is_fragment());
    }

    #[test]
    fn extension_headers_are_walked_to_the_transport_header() {
        let mut ext = opts(DEST_OPTIONS).to_vec();
        ext.extend_from_slice(&opts(ROUTING));
        ext.extend_from_slice(&[FRAGMENT, 0, 4, 0, 0, 0, 0, 0]); // routing type 4 (SRH)
        ext.extend_from_slice(&[TCP, 0, 0, 0, 0, 0, 0x12, 0x34]); // atomic fragment
        let p = packet(HOP_BY_HOP, &ext, &[0u8; 20]);
        let v = Ipv6::new_checked(&p[..]).unwrap();
        assert_eq!((v.protocol(), v.l4_offset()), (TCP, 40 + 32));
        let f = v.fragment().unwrap();
        assert!(f.is_atomic() && !v.is_fragment());
        assert_eq!(f.ident, 0x1234);
    }

    #[test]
    fn a_later_fragment_stops_the_walk() {
        let frag = [UDP, 0, 0x05, 0x01, 0, 0, 0, 9]; // offset 160 units... and M set
        let p = packet(FRAGMENT, &frag, &[0u8; 24]);
        let v = Ipv6::new_checked(&p[..]).unwrap();
        let f = v.fragment().unwrap();
        assert_eq!((f.offset, f.more, f.ident), (0x0501 >> 3, true, 9));
        assert!(v.is_fragment());
        assert_eq!(v.l4_offset(), 48);
    }

    #[test]
    fn bad_chains_and_lengths_are_refused() {
        let e = |p: &[u8]| Ipv6::new_checked(p).unwrap_err();
        assert_eq!(e(&[0x60; 39]), WireError::Truncated);
        let mut v4 = packet(UDP, &[], &[0u8; 8]);
        v4[0] = 0x45;
        assert_eq!(e(&v4), WireError::NotIpv6);
        let mut long = packet(UDP, &[], &[0u8; 8]);
        long[5] = 200;
        assert_eq!(e(&long), WireError::BadTotalLength);
        let mut jumbo = packet(UDP, &[], &[0u8; 8]);
        jumbo[4] = 0;
        jumbo[5] = 0;
        assert_eq!(e(&jumbo), WireError::Jumbogram);
        // Hop-by-hop anywhere but first.
        assert_eq!(
            e(&packet(DEST_OPTIONS, &opts(HOP_BY_HOP), &opts(UDP))),
            WireError::BadExtensionHeader
        );
        // Routing header type 0 (RFC 5095).
        assert_eq!(
            e(&packet(ROUTING, &[UDP, 0, 0, 0, 0, 0, 0, 0], &[0u8; 8])),
            WireError::RoutingType0
        );
        // An extension header running past the end.
        assert_eq!(
            e(&packet(DEST_OPTIONS, &[UDP, 9, 0, 0], &[])),
            WireError::BadExtensionHeader
        );
        // Two fragment headers.
        let two = [FRAGMENT, 0, 0, 0, 0, 0, 0, 1, UDP, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            e(&packet(FRAGMENT, &two, &[0u8; 8])),
            WireError::BadExtensionHeader
        );
        // A chain longer than the bound, every header valid.
        let mut ext = Vec::new();
        for _ in 0..MAX_EXTENSIONS {
            ext.extend_from_slice(&opts(DEST_OPTIONS));
        }
        ext.extend_from_slice(&opts(UDP));
        assert_eq!(
            e(&packet(DEST_OPTIONS, &ext, &[0u8; 8])),
            WireError::BadExtensionHeader
        );
        // Truncated in the middle of a header.
        assert_eq!(e(&packet(DEST_OPTIONS, &[UDP], &[])), WireError::Truncated);
    }

    #[test]
    fn rewriting_addresses_and_hop_limit() {
        let mut p = packet(UDP, &[], &[0u8; 8]);
        let mut v = Ipv6::new_checked(&mut p[..]).unwrap();
        let new: Ipv6Addr = "2001:db8:1::186".parse().unwrap();
        v.set_src(new);
        v.decrement_hop_limit();
        assert_eq!((v.src(), v.hop_limit()), (new, 63));
    }
}
