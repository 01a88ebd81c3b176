//! IPv4 header view (RFC 791): validation, field access and in-place rewriting.
//!
//! [`Ipv4::new_checked`] accepts a buffer only if the version is 4, `5 <= IHL`,
//! `IHL*4 <= total length <= buffer length`, and (optionally) the header checksum
//! verifies. Bytes past the total length (never produced by a TUN, but possible in a
//! quoted header) are ignored. Setters keep the header checksum valid incrementally.

use std::net::Ipv4Addr;

use pnet_packet::ipv4::Ipv4Packet;

use super::checksum;
use super::WireError;

pub const HEADER_LEN: usize = 20;
/// "Don't fragment" bit in the flags field.
pub const FLAG_DF: u8 = 0b010;
/// "More fragments" bit in the flags field.
pub const FLAG_MF: u8 = 0b001;

/// The fixed header fields, read once through `pnet_packet` when the view is made. Two
/// whole words, widest fields first (issue 18: copied by the word without stalling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct Fields {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ident: u16,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub tos: u8,
    pub flags: u8,
    pub ttl: u8,
    pub protocol: u8,
}

/// A validated IPv4 packet in `buf`.
#[derive(Debug)]
pub struct Ipv4<T> {
    buf: T,
    header_len: usize,
    total_len: usize,
    fields: Fields,
}

/// How strictly [`Ipv4::new_checked`] looks at a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The whole datagram must be present (packets read from a port).
    Full,
    /// The total length may exceed the buffer: headers quoted in ICMP errors carry only
    /// the start of the original datagram.
    Quoted,
}

impl<T: AsRef<[u8]>> Ipv4<T> {
    /// Validates `buf` as an IPv4 packet, including its header checksum. Always inlined
    /// (issue 18): returned through memory, the view was copied at odd offsets, and the
    /// copy stalled on the stores that had just made it.
    #[inline(always)]
    pub fn new_checked(buf: T, check: Check) -> Result<Self, WireError> {
        let b = buf.as_ref();
        let p = Ipv4Packet::new(b).ok_or(WireError::Truncated)?;
        if p.get_version() != 4 {
            return Err(WireError::NotIpv4);
        }
        let header_len = p.get_header_length() as usize * 4;
        if header_len < HEADER_LEN || header_len > b.len() {
            return Err(WireError::BadHeaderLength);
        }
        let mut total_len = p.get_total_length() as usize;
        if total_len < header_len {
            return Err(WireError::BadTotalLength);
        }
        if total_len > b.len() {
            match check {
                Check::Full => return Err(WireError::BadTotalLength),
                Check::Quoted => total_len = b.len(),
            }
        }
        if checksum::checksum(&b[..header_len]) != 0 {
            return Err(WireError::BadIpChecksum);
        }
        let fields = Fields {
            tos: (p.get_dscp() << 2) | p.get_ecn(),
            ident: p.get_identification(),
            flags: p.get_flags(),
            frag_offset: p.get_fragment_offset(),
            ttl: p.get_ttl(),
            protocol: p.get_next_level_protocol().0,
            src: p.get_source(),
            dst: p.get_destination(),
        };
        Ok(Ipv4 {
            buf,
            header_len,
            total_len,
            fields,
        })
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// Bytes of the datagram present in the buffer (header + payload).
    pub fn total_len(&self) -> usize {
        self.total_len
    }
    pub fn src(&self) -> Ipv4Addr {
        self.fields.src
    }
    pub fn dst(&self) -> Ipv4Addr {
        self.fields.dst
    }
    pub fn ttl(&self) -> u8 {
        self.fields.ttl
    }
    pub fn protocol(&self) -> u8 {
        self.fields.protocol
    }
    pub fn tos(&self) -> u8 {
        self.fields.tos
    }
    pub fn ident(&self) -> u16 {
        self.fields.ident
    }
    pub fn dont_fragment(&self) -> bool {
        self.fields.flags & FLAG_DF != 0
    }
    /// True for any fragment (first, middle or last) of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.fields.flags & FLAG_MF != 0 || self.fields.frag_offset != 0
    }
    /// True for a fragment other than the first (it carries no transport header).
    pub fn is_later_fragment(&self) -> bool {
        self.fields.frag_offset != 0
    }
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..self.header_len]
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len..self.total_len]
    }
    /// The datagram (header and payload) without trailing bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf.as_ref()[..self.total_len]
    }

    /// Does the header carry a loose or strict source route option (LSRR 131, SSRR 137;
    /// RFC 791 section 3.1)? The options are walked with every length checked; a
    /// malformed option list ends the walk.
    pub fn has_source_route(&self) -> bool {
        let mut opts = &self.header()[HEADER_LEN.min(self.header_len)..];
        while let Some(&kind) = opts.first() {
            match kind {
                0 => return false, // end of option list
                1 => opts = &opts[1..],
                OPT_LSRR | OPT_SSRR => return true,
                _ => {
                    let len = usize::from(opts.get(1).copied().unwrap_or(0));
                    if len < 2 || len > opts.len() {
                        return false;
                    }
                    opts = &opts[len..];
                }
            }
        }
        false
    }
}

/// Loose and strict source and record route (RFC 791 section 3.1).
pub const OPT_LSRR: u8 = 131;
pub const OPT_SSRR: u8 = 137;

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4<T> {
    /// The datagram's bytes, to change what the view does not reach (a TCP payload).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let n = self.total_len;
        &mut self.buf.as_mut()[..n]
    }

    fn header_checksum(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[10], b[11]])
    }
    /// Stores an (incrementally updated) header checksum; compare [`recompute_header_checksum`].
    fn store_header_checksum(&mut self, c: u16) {
        self.buf.as_mut()[10..12].copy_from_slice(&c.to_be_bytes());
    }

    /// Rewrites the source address; the header checksum follows.
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        let old = self.fields.src;
        self.fields.src = addr;
        self.buf.as_mut()[12..16].copy_from_slice(&addr.octets());
        let c = checksum::update_addr(self.header_checksum(), old, addr);
        self.store_header_checksum(c);
    }

    /// Rewrites the destination address; the header checksum follows.
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        let old = self.fields.dst;
        self.fields.dst = addr;
        self.buf.as_mut()[16..20].copy_from_slice(&addr.octets());
        let c = checksum::update_addr(self.header_checksum(), old, addr);
        self.store_header_checksum(c);
    }

    /// Decrements the TTL by one (caller checked it is above 1).
    pub fn decrement_ttl(&mut self) {
        let b = self.buf.as_mut();
        let old = u16::from_be_bytes([b[8], b[9]]);
        b[8] = b[8].saturating_sub(1);
        let new = u16::from_be_bytes([b[8], b[9]]);
        self.fields.ttl = b[8];
        let c = checksum::update16(self.header_checksum(), old, new);
        self.store_header_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len, self.total_len);
        &mut self.buf.as_mut()[h..t]
    }

    /// The whole buffer, for rewriting a header and its payload together.
    pub fn buf_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
}

/// Splits `datagram` (a whole IPv4 datagram, DF clear) into fragments of at most `mtu`
/// bytes (RFC 791 section 3.2), appended to `out`. Each fragment carries a copy of the
/// header with its offset, MF flag, length and checksum set.
pub fn fragment(datagram: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) {
    let hlen = ((datagram[0] & 0x0f) as usize * 4).min(datagram.len());
    let first = &datagram[..hlen];
    let later = later_fragment_header(first);
    let payload = &datagram[hlen..];
    let mut off = 0;
    while off < payload.len() || (off == 0 && payload.is_empty()) {
        let hdr: &[u8] = if off == 0 { first } else { &later };
        let step = ((mtu.saturating_sub(hdr.len())) / 8 * 8).max(8);
        let end = (off + step).min(payload.len());
        let mut f = Vec::with_capacity(hdr.len() + end - off);
        f.extend_from_slice(hdr);
        f.extend_from_slice(&payload[off..end]);
        let more = end < payload.len();
        let word = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        let flen = f.len() as u16;
        f[2..4].copy_from_slice(&flen.to_be_bytes());
        f[6..8].copy_from_slice(&word.to_be_bytes());
        recompute_header_checksum(&mut f[..hdr.len()]);
        out.push(f);
        if payload.is_empty() {
            break;
        }
        off = end;
    }
}

/// The header of every fragment after the first: the fixed header and only the options
/// whose "copied" flag is set (RFC 791 section 3.1, e.g. source routes), padded to a
/// multiple of 4 bytes. A malformed option list ends the copy there.
fn later_fragment_header(h: &[u8]) -> Vec<u8> {
    let mut v = h[..HEADER_LEN.min(h.len())].to_vec();
    let mut i = HEADER_LEN;
    while i < h.len() {
        match h[i] {
            0 => break,  // end of options
            1 => i += 1, // no-operation: not copied
            kind => {
                let len = h.get(i + 1).map_or(0, |l| usize::from(*l));
                if len < 2 || i + len > h.len() {
                    break;
                }
                if kind & 0x80 != 0 {
                    v.extend_from_slice(&h[i..i + len]);
                }
                i += len;
            }
        }
    }
    while v.len() % 4 != 0 {
        v.push(0);
    }
    let words = (v.len() / 4) as u8;
    if let Some(b) = v.first_mut() {
        *b = 0x40 | words;
    }
    v
}

/// Recomputes the checksum of the IPv4 header `header` (exactly the header: IHL * 4 bytes)
/// after fields were written directly.
pub fn recompute_header_checksum(header: &mut [u8]) {
    if header.len() < HEADER_LEN {
        return;
    }
    header[10..12].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes a 20-byte IPv4 header (no options) with a valid checksum into `out[..20]`.
#[allow(clippy::too_many_arguments)]
pub fn emit_header(
    out: &mut [u8],
    tos: u8,
    total_len: u16,
    ident: u16,
    dont_fragment: bool,
    ttl: u8,
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    out[0] = 0x45;
    out[1] = tos;
    out[2..4].copy_from_slice(&total_len.to_be_bytes());
    out[4..6].copy_from_slice(&ident.to_be_bytes());
    out[6..8].copy_from_slice(&(if dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
    out[8] = ttl;
    out[9] = protocol;
    out[12..16].copy_from_slice(&src.octets());
    out[16..20].copy_from_slice(&dst.octets());
    recompute_header_checksum(&mut out[..HEADER_LEN]);
}

#[cfg(test)]
mod test {
    use super::*;

    // UDP 192.168.122.101:40000 -> 172.16.1.1:7, 4 bytes of payload, TTL 64, DF.
    pub(crate) fn udp_packet() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x20, // v4 IHL 5, TOS 0, total length 32
            0x12, 0x34, 0x40, 0x00, // ID 0x1234, DF, offset 0
            0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (filled below)
            192, 168, 122, 101, // source
            172, 16, 1, 1, // destination
            0x9c, 0x40, 0x00, 0x07, // UDP 40000 -> 7
            0x00, 0x0c, 0x00, 0x00, // length 12, checksum none
            b'p', b'i', b'n', b'g',
        ];
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn parses_fields() {
        let p = udp_packet();
        let ip = Ipv4::new_checked(&p[..], Check::Full).unwrap();
        assert_eq!(ip.src(), Ipv4Addr::new(192, 168, 122, 101));
        assert_eq!(ip.dst(), Ipv4Addr::new(172, 16, 1, 1));
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 17);
        assert!(ip.dont_fragment());
        assert!(!ip.is_fragment());
        assert_eq!(ip.payload().len(), 12);
    }

    #[test]
    fn refuses_lies() {
        let p = udp_packet();
        assert_eq!(
            Ipv4::new_checked(&p[..19], Check::Full).unwrap_err(),
            WireError::Truncated
        );
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4::new_checked(&v6[..], Check::Full).unwrap_err(),
            WireError::NotIpv4
        );
        let mut ihl = p.clone();
        ihl[0] = 0x44;
        assert_eq!(
            Ipv4::new_checked(&ihl[..], Check::Full).unwrap_err(),
            WireError::BadHeaderLength
        );
        ihl[0] = 0x4f; // 60 bytes > 32
        assert_eq!(
            Ipv4::new_checked(&ihl[..], Check::Full).unwrap_err(),
            WireError::BadHeaderLength
        );
        let mut long = p.clone();
        long[3] = 0x40; // claims 64 bytes
        assert_eq!(
            Ipv4::new_checked(&long[..], Check::Full).unwrap_err(),
            WireError::BadTotalLength
        );
        let mut short = p.clone();
        short[3] = 0x10; // claims 16 < header
        assert_eq!(
            Ipv4::new_checked(&short[..], Check::Full).unwrap_err(),
            WireError::BadTotalLength
        );
        let mut bad = p.clone();
        bad[11] ^= 1;
        assert_eq!(
            Ipv4::new_checked(&bad[..], Check::Full).unwrap_err(),
            WireError::BadIpChecksum
        );
    }

    #[test]
    fn setters_keep_checksum_valid() {
        let mut p = udp_packet();
        let mut ip = Ipv4::new_checked(&mut p[..], Check::Full).unwrap();
        ip.set_src(Ipv4Addr::new(172, 16, 1, 186));
        ip.set_dst(Ipv4Addr::new(10, 9, 8, 7));
        ip.decrement_ttl();
        assert_eq!(checksum::checksum(ip.header()), 0);
        assert_eq!(ip.ttl(), 63);
    }

    #[test]
    fn emitted_header_verifies() {
        let mut h = [0u8; 20];
        let a = Ipv4Addr::new(1, 2, 3, 4);
        emit_header(&mut h, 0xc0, 56, 7, false, 64, 1, a, a);
        let ip = Ipv4::new_checked(&h[..], Check::Quoted).unwrap();
        assert_eq!(ip.protocol(), 1);
        assert_eq!(ip.tos(), 0xc0);
    }

    #[test]
    fn later_fragments_carry_only_the_copied_options() {
        // Options: record route (7, not copied), NOP, loose source route (131, copied).
        let opts = [7, 7, 4, 0, 0, 0, 0, 1, 131, 7, 4, 10, 0, 0, 9];
        let hlen = 20 + opts.len() + 1; // padded to 36 with one EOL
        let mut d = vec![0u8; hlen + 100];
        emit_header(
            &mut d,
            0,
            (hlen + 100) as u16,
            5,
            false,
            64,
            17,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        d[20..20 + opts.len()].copy_from_slice(&opts);
        d[0] = 0x40 | (hlen / 4) as u8;
        recompute_header_checksum(&mut d[..hlen]);
        let mut out = Vec::new();
        fragment(&d, 76, &mut out);
        assert_eq!(
            out[0][20..hlen],
            d[20..hlen],
            "the first fragment keeps every option"
        );
        let later = Ipv4::new_checked(&out[1][..], Check::Full).unwrap();
        assert_eq!(later.header_len(), 28);
        assert_eq!(&out[1][20..28], &[131, 7, 4, 10, 0, 0, 9, 0]);
        let total: usize = out
            .iter()
            .map(|f| f.len() - Ipv4::new_checked(&f[..], Check::Full).unwrap().header_len())
            .sum();
        assert_eq!(total, 100, "every payload byte once");
        for f in &out {
            assert!(f.len() <= 76);
        }
    }
}
