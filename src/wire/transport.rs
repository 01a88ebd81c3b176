//! The transport-layer identifiers NAPT rewrites: TCP/UDP ports (RFC 793, RFC 768) and the
//! ICMP query identifier (RFC 792, used as a port by RFC 5508 REQ-1).
//!
//! [`Transport::new_checked`] validates a TCP, UDP or ICMP header; [`rewrite_endpoint`]
//! changes an address and its port in one packet (outer or quoted in an ICMP error) and
//! updates the IPv4 header checksum and the transport checksum incrementally: TCP and UDP
//! checksums cover the pseudo-header, so an address change is folded in too; a UDP
//! checksum of zero means "none" and stays zero (RFC 768).

use std::net::{Ipv4Addr, Ipv6Addr};

use pnet_packet::icmp::IcmpPacket;
use pnet_packet::tcp::TcpPacket;
use pnet_packet::udp::UdpPacket;

use super::checksum;
use super::ipv4::Ipv4;
use super::ipv6::Ipv6;
use super::{proto, WireError};

pub use pnet_packet::tcp::TcpFlags;

/// The transport protocols NAPT translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            proto::TCP => Some(Protocol::Tcp),
            proto::UDP => Some(Protocol::Udp),
            proto::ICMP => Some(Protocol::Icmp),
            _ => None,
        }
    }
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => proto::TCP,
            Protocol::Udp => proto::UDP,
            Protocol::Icmp => proto::ICMP,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
    /// Offset of the checksum field in the transport header.
    fn checksum_offset(self) -> usize {
        match self {
            Protocol::Tcp => 16,
            Protocol::Udp => 6,
            Protocol::Icmp => 2,
        }
    }
}

/// Which end of a packet a rewrite touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Src,
    Dst,
}

/// The transport header fields the NAT core decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub protocol: Protocol,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags (zero for UDP and ICMP).
    pub tcp_flags: u8,
    /// ICMP type and code (zero for TCP and UDP).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TCP sequence number, window, payload bytes, and the window scale option of a SYN
    /// (zero or `None` for the rest, and in a quoted header).
    pub seq: u32,
    pub window: u16,
    pub payload_len: u32,
    pub wscale: Option<u8>,
    /// TCP acknowledgement number (zero for the rest), and the MSS option of a SYN.
    pub ack: u32,
    pub mss: Option<u16>,
}

/// ICMP types tunnat handles (RFC 792).
pub mod icmp_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;

    /// Errors carry the header of the datagram that caused them (RFC 5508 section 3.2).
    pub fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACHABLE | SOURCE_QUENCH | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }
}

impl Transport {
    /// Parses the transport header of a complete datagram `payload` (everything after the
    /// IPv4 header). ICMP checksums are verified here; TCP/UDP checksums are left to the
    /// end host, since incremental updates carry an error through unchanged. Always
    /// inlined, as [`crate::wire::ipv4::Ipv4::new_checked`] is.
    #[inline(always)]
    pub fn new_checked(protocol: Protocol, payload: &[u8]) -> Result<Transport, WireError> {
        match protocol {
            Protocol::Tcp => {
                let t = TcpPacket::new(payload).ok_or(WireError::Truncated)?;
                let off = t.get_data_offset() as usize * 4;
                if off < 20 || off > payload.len() {
                    return Err(WireError::BadTransportLength);
                }
                let tcp_flags = t.get_flags();
                let syn = tcp_flags & TcpFlags::SYN != 0;
                Ok(Transport {
                    protocol,
                    src_port: t.get_source(),
                    dst_port: t.get_destination(),
                    tcp_flags,
                    icmp_type: 0,
                    icmp_code: 0,
                    seq: t.get_sequence(),
                    window: t.get_window(),
                    payload_len: (payload.len() - off) as u32,
                    wscale: if syn {
                        window_scale(&payload[..off])
                    } else {
                        None
                    },
                    ack: t.get_acknowledgement(),
                    mss: if syn { mss(&payload[..off]) } else { None },
                })
            }
            Protocol::Udp => {
                let u = UdpPacket::new(payload).ok_or(WireError::Truncated)?;
                let len = u.get_length() as usize;
                if len < 8 || len > payload.len() {
                    return Err(WireError::BadTransportLength);
                }
                Ok(Transport {
                    protocol,
                    src_port: u.get_source(),
                    dst_port: u.get_destination(),
                    tcp_flags: 0,
                    icmp_type: 0,
                    icmp_code: 0,
                    seq: 0,
                    window: 0,
                    payload_len: 0,
                    wscale: None,
                    ack: 0,
                    mss: None,
                })
            }
            Protocol::Icmp => {
                let i = IcmpPacket::new(payload).ok_or(WireError::Truncated)?;
                if payload.len() < 8 {
                    return Err(WireError::Truncated);
                }
                if checksum::checksum(payload) != 0 {
                    return Err(WireError::BadIcmpChecksum);
                }
                let id = u16::from_be_bytes([payload[4], payload[5]]);
                Ok(Transport {
                    protocol,
                    src_port: id,
                    dst_port: id,
                    tcp_flags: 0,
                    icmp_type: i.get_icmp_type().0,
                    icmp_code: i.get_icmp_code().0,
                    seq: 0,
                    window: 0,
                    payload_len: 0,
                    wscale: None,
                    ack: 0,
                    mss: None,
                })
            }
        }
    }

    /// Parses the transport header of a complete IPv6 datagram from `src` to `dst`
    /// (`payload`: everything after the extension headers). As [`Transport::new_checked`],
    /// with IPv6's rules: `Protocol::Icmp` is ICMPv6, whose checksum covers the
    /// pseudo-header (RFC 4443 section 2.3) and is verified here, and a UDP checksum of
    /// zero is refused (RFC 8200 section 8.1). Always inlined, as the IPv4 one.
    #[inline(always)]
    pub fn new_checked_v6(
        protocol: Protocol,
        payload: &[u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Transport, WireError> {
        match protocol {
            Protocol::Icmp => {
                if payload.len() < 8 {
                    return Err(WireError::Truncated);
                }
                if !super::icmpv6::checksum_ok(src, dst, payload) {
                    return Err(WireError::BadIcmpChecksum);
                }
                let id = u16::from_be_bytes([payload[4], payload[5]]);
                Ok(Transport {
                    protocol,
                    src_port: id,
                    dst_port: id,
                    tcp_flags: 0,
                    icmp_type: payload[0],
                    icmp_code: payload[1],
                    seq: 0,
                    window: 0,
                    payload_len: 0,
                    wscale: None,
                    ack: 0,
                    mss: None,
                })
            }
            Protocol::Udp if payload.get(6..8) == Some(&[0, 0]) => Err(WireError::UdpZeroChecksum),
            _ => Transport::new_checked(protocol, payload),
        }
    }

    /// Parses the first 8 bytes of a transport header quoted inside an ICMP error
    /// (RFC 792: "internet header + 64 bits of original data"). Nothing is verified
    /// beyond the length: the quoted datagram is truncated.
    pub fn quoted(protocol: Protocol, payload: &[u8]) -> Result<Transport, WireError> {
        if payload.len() < 8 {
            return Err(WireError::Truncated);
        }
        let w = |i: usize| u16::from_be_bytes([payload[i], payload[i + 1]]);
        let (src_port, dst_port, icmp_type, icmp_code) = match protocol {
            Protocol::Tcp | Protocol::Udp => (w(0), w(2), 0, 0),
            Protocol::Icmp => (w(4), w(4), payload[0], payload[1]),
        };
        Ok(Transport {
            protocol,
            src_port,
            dst_port,
            tcp_flags: 0,
            icmp_type,
            icmp_code,
            seq: 0,
            window: 0,
            payload_len: 0,
            wscale: None,
            ack: 0,
            mss: None,
        })
    }

    pub fn is_icmp_error(&self) -> bool {
        self.protocol == Protocol::Icmp && icmp_type::is_error(self.icmp_type)
    }
    pub fn is_icmp_echo_request(&self) -> bool {
        self.protocol == Protocol::Icmp && self.icmp_type == icmp_type::ECHO_REQUEST
    }
    pub fn is_icmp_echo_reply(&self) -> bool {
        self.protocol == Protocol::Icmp && self.icmp_type == icmp_type::ECHO_REPLY
    }
    pub fn has_flag(&self, flag: u8) -> bool {
        self.tcp_flags & flag != 0
    }

    /// Is this a flag combination a real TCP sends? As Linux conntrack's `tcp_valid_flags`:
    /// SYN, SYN+ACK, RST, RST+ACK, FIN+ACK or ACK, with URG, PSH, ECE and CWR not looked at.
    /// Scanner probes (NULL, FIN alone, XMAS = FIN+PSH+URG) and contradictions (SYN+FIN,
    /// SYN+RST) are not. Always true for UDP and ICMP.
    pub fn tcp_flags_valid(&self) -> bool {
        use TcpFlags::{ACK, FIN, RST, SYN};
        self.protocol != Protocol::Tcp
            || [SYN, SYN | ACK, RST, RST | ACK, FIN | ACK, ACK]
                .contains(&(self.tcp_flags & (FIN | SYN | RST | ACK)))
    }
}

/// What the transport checksum field of a packet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csum {
    /// The checksum (the usual case).
    Full,
    /// The pseudo-header sum only, to be completed by the receiver (a TUN offload's
    /// `NEEDS_CSUM`, see [`super::offload`]): ports are not in it, addresses are.
    Partial,
}

/// Replaces the address and port (ICMP: query identifier) at one `end` of `ip`, keeping
/// the IPv4 header checksum and the transport checksum valid. The transport header may be
/// truncated (a quoted header): then only the fields present are rewritten.
pub fn rewrite_endpoint<T: AsRef<[u8]> + AsMut<[u8]>>(
    ip: &mut Ipv4<T>,
    protocol: Protocol,
    end: End,
    addr: Ipv4Addr,
    port: u16,
) {
    rewrite_endpoint_csum(ip, protocol, end, addr, port, Csum::Full)
}

/// [`rewrite_endpoint`] for a packet whose transport checksum field holds `csum`.
pub fn rewrite_endpoint_csum<T: AsRef<[u8]> + AsMut<[u8]>>(
    ip: &mut Ipv4<T>,
    protocol: Protocol,
    end: End,
    addr: Ipv4Addr,
    port: u16,
    csum: Csum,
) {
    let old_addr = match end {
        End::Src => ip.src(),
        End::Dst => ip.dst(),
    };
    match end {
        End::Src => ip.set_src(addr),
        End::Dst => ip.set_dst(addr),
    }
    let l4 = ip.payload_mut();
    let Some((old_port, c_off)) = swap_port(l4, protocol, end, port) else {
        return;
    };
    let mut c = u16::from_be_bytes([l4[c_off], l4[c_off + 1]]);
    if csum == Csum::Partial {
        if protocol != Protocol::Icmp {
            c = super::offload::adjust_partial(c, old_addr, addr);
            l4[c_off..c_off + 2].copy_from_slice(&c.to_be_bytes());
        }
        return;
    }
    if protocol == Protocol::Udp && c == 0 {
        return; // no checksum
    }
    if protocol != Protocol::Icmp {
        c = checksum::update_addr(c, old_addr, addr);
    }
    c = checksum::update16(c, old_port, port);
    if protocol == Protocol::Udp && c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    l4[c_off..c_off + 2].copy_from_slice(&c.to_be_bytes());
}

/// [`rewrite_endpoint_csum`] for IPv6: replaces the address and port (ICMPv6: the echo
/// identifier) at one `end` of `ip`. There is no header checksum; the transport checksum
/// (ICMPv6's too) covers the addresses and is updated for both changes (RFC 1624).
pub fn rewrite_endpoint_v6<T: AsRef<[u8]> + AsMut<[u8]>>(
    ip: &mut Ipv6<T>,
    protocol: Protocol,
    end: End,
    addr: Ipv6Addr,
    port: u16,
    csum: Csum,
) {
    let old_addr = match end {
        End::Src => ip.src(),
        End::Dst => ip.dst(),
    };
    match end {
        End::Src => ip.set_src(addr),
        End::Dst => ip.set_dst(addr),
    }
    let l4 = ip.payload_mut();
    let Some((old_port, c_off)) = swap_port(l4, protocol, end, port) else {
        return;
    };
    let mut c = u16::from_be_bytes([l4[c_off], l4[c_off + 1]]);
    if csum == Csum::Partial {
        // An uncomplemented pseudo-header sum: the address is in it, the port is not.
        c = !checksum::update_addr_v6(!c, old_addr, addr);
    } else {
        c = checksum::update_addr_v6(c, old_addr, addr);
        c = checksum::update16(c, old_port, port);
        if protocol == Protocol::Udp && c == 0 {
            c = 0xffff;
        }
    }
    l4[c_off..c_off + 2].copy_from_slice(&c.to_be_bytes());
}

/// Writes `port` at one `end` of transport header `l4` (for ICMP, the query identifier):
/// the old port and where the checksum field is, or `None` if the header (a quoted one,
/// say) is too short for either, after writing what fits.
fn swap_port(l4: &mut [u8], protocol: Protocol, end: End, port: u16) -> Option<(u16, usize)> {
    let port_off = match (protocol, end) {
        (Protocol::Icmp, _) => 4,
        (_, End::Src) => 0,
        (_, End::Dst) => 2,
    };
    let field = l4.get_mut(port_off..port_off + 2)?;
    let old = u16::from_be_bytes([field[0], field[1]]);
    field.copy_from_slice(&port.to_be_bytes());
    let c_off = protocol.checksum_offset();
    (l4.len() >= c_off + 2).then_some((old, c_off))
}

/// Sets the 32-bit field at `at` of a packet whose TCP header starts at `tcp` (a sequence
/// or acknowledgement number, a SACK edge) to `v`, keeping a whole checksum good (RFC
/// 1624); with `full` false the checksum is a partial one the kernel completes, and is
/// left alone.
pub fn set_tcp32(p: &mut [u8], tcp: usize, at: usize, v: u32, full: bool) {
    let old = u32::from_be_bytes(p[at..at + 4].try_into().unwrap_or_default());
    p[at..at + 4].copy_from_slice(&v.to_be_bytes());
    if full {
        let c = u16::from_be_bytes([p[tcp + 16], p[tcp + 17]]);
        let c = checksum::update32(c, old, v);
        p[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
    }
}

/// The value of TCP option `kind` of length `len` among the options of the TCP header
/// `header` (data offset bytes), if present and the options are well formed up to it.
fn tcp_option(header: &[u8], kind: u8, len: usize) -> Option<&[u8]> {
    let mut i = 20;
    while i < header.len() {
        match header[i] {
            0 => return None,
            1 => i += 1,
            k => {
                let l = usize::from(*header.get(i + 1)?);
                if l < 2 || i + l > header.len() {
                    return None;
                }
                if k == kind && l == len {
                    return Some(&header[i + 2..i + l]);
                }
                i += l;
            }
        }
    }
    None
}

/// The window scale option (RFC 7323 section 2.2) among the options of the TCP header
/// `header` (data offset bytes), if present and well formed.
pub fn window_scale(header: &[u8]) -> Option<u8> {
    tcp_option(header, 3, 3).map(|v| v[0].min(14))
}

/// The maximum segment size option (RFC 9293 section 3.7.1) of the TCP header `header`.
pub fn mss(header: &[u8]) -> Option<u16> {
    tcp_option(header, 2, 4).map(|v| u16::from_be_bytes([v[0], v[1]]))
}

/// Lowers the MSS option of a TCP segment to `max` if it is larger (MSS clamping), and
/// updates the TCP checksum for the change (RFC 1624; the addresses play no part, so this
/// serves both families). Returns the MSS found.
pub fn clamp_mss(segment: &mut [u8], max: u16, csum: Csum) -> Option<u16> {
    if segment.len() < 20 {
        return None;
    }
    let off = ((segment[12] >> 4) as usize * 4).min(segment.len());
    let mut i = 20;
    let mut found = None;
    while i < off {
        match segment[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = *segment.get(i + 1)? as usize;
                if len < 2 || i + len > off {
                    return None; // malformed options: leave the segment alone
                }
                if kind == 2 && len == 4 {
                    let mss = u16::from_be_bytes([segment[i + 2], segment[i + 3]]);
                    found = Some(mss);
                    if mss > max {
                        segment[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                        if csum == Csum::Partial {
                            i += len; // the receiver sums the options itself
                            continue;
                        }
                        // RFC 1624, for either family (no pseudo-header involved). A field at
                        // an odd offset straddles two 16-bit words: its bytes count swapped.
                        let (old, new) = if (i + 2) % 2 == 1 {
                            (mss.swap_bytes(), max.swap_bytes())
                        } else {
                            (mss, max)
                        };
                        let c = u16::from_be_bytes([segment[16], segment[17]]);
                        let c = checksum::update16(c, old, new);
                        segment[16..18].copy_from_slice(&c.to_be_bytes());
                    }
                }
                i += len;
            }
        }
    }
    found
}

/// Recomputes the ICMP checksum over the whole ICMP message in `payload`.
pub fn refresh_icmp_checksum(payload: &mut [u8]) {
    if payload.len() < 4 {
        return;
    }
    payload[2..4].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(payload);
    payload[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Verifies a TCP or UDP checksum over the pseudo-header and `payload` (used by tests and
/// by the trace). A UDP checksum of zero verifies.
pub fn verify_l4_checksum(
    protocol: Protocol,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> bool {
    match protocol {
        Protocol::Icmp => checksum::checksum(payload) == 0,
        Protocol::Udp if payload.len() >= 8 && payload[6] == 0 && payload[7] == 0 => true,
        _ => {
            let s = checksum::pseudo_header_sum(src, dst, protocol.number(), payload.len() as u16);
            !checksum::fold(checksum::sum(payload, s)) == 0
        }
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;
    use crate::wire::ipv4::Check;

    /// Builds IPv4 + UDP with a correct checksum.
    pub(crate) fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, data: &[u8]) -> Vec<u8> {
        let len = 28 + data.len();
        let mut p = vec![0u8; len];
        let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        crate::wire::ipv4::emit_header(&mut p, 0, len as u16, 1, true, 64, 17, s, d);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(data);
        let sum = checksum::pseudo_header_sum(s, d, 17, (8 + data.len()) as u16);
        let c = !checksum::fold(checksum::sum(&p[20..], sum));
        p[26..28].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn udp_rewrite_keeps_both_checksums() {
        let mut p = udp([192, 168, 122, 101], 40000, [172, 16, 1, 1], 7, b"hello");
        let mut ip = Ipv4::new_checked(&mut p[..], Check::Full).unwrap();
        rewrite_endpoint(
            &mut ip,
            Protocol::Udp,
            End::Src,
            Ipv4Addr::new(172, 16, 1, 186),
            1024,
        );
        assert_eq!(checksum::checksum(ip.header()), 0);
        assert!(verify_l4_checksum(
            Protocol::Udp,
            ip.src(),
            ip.dst(),
            ip.payload()
        ));
        let t = Transport::new_checked(Protocol::Udp, ip.payload()).unwrap();
        assert_eq!((t.src_port, t.dst_port), (1024, 7));
    }

    #[test]
    fn zero_udp_checksum_stays_zero() {
        let mut p = udp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, b"x");
        p[26] = 0;
        p[27] = 0;
        let mut ip = Ipv4::new_checked(&mut p[..], Check::Full).unwrap();
        rewrite_endpoint(
            &mut ip,
            Protocol::Udp,
            End::Dst,
            Ipv4Addr::new(10, 0, 0, 3),
            3,
        );
        assert_eq!(&ip.payload()[6..8], &[0, 0]);
    }

    #[test]
    fn tcp_header_validation() {
        let mut seg = [0u8; 20];
        seg[12] = 0x40; // data offset 4 words: too small
        assert_eq!(
            Transport::new_checked(Protocol::Tcp, &seg).unwrap_err(),
            WireError::BadTransportLength
        );
        seg[12] = 0x60; // 24 bytes > 20 present
        assert_eq!(
            Transport::new_checked(Protocol::Tcp, &seg).unwrap_err(),
            WireError::BadTransportLength
        );
        seg[12] = 0x50;
        seg[13] = TcpFlags::SYN;
        let t = Transport::new_checked(Protocol::Tcp, &seg).unwrap();
        assert!(t.has_flag(TcpFlags::SYN));
        assert_eq!(
            Transport::new_checked(Protocol::Tcp, &seg[..19]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn tcp_flag_combinations() {
        use TcpFlags::*;
        let t = |flags: u8| Transport {
            tcp_flags: flags,
            ..Transport::new_checked(
                Protocol::Tcp,
                &[
                    0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, 0,
                ],
            )
            .unwrap()
        };
        for ok in [
            SYN,
            SYN | ACK,
            ACK | PSH,
            RST,
            RST | ACK,
            FIN | ACK,
            FIN | ACK | PSH | URG,
            SYN | ECE | CWR,
        ] {
            assert!(t(ok).tcp_flags_valid(), "{ok:#x} refused");
        }
        let xmas = FIN | PSH | URG;
        for bad in [
            0,
            FIN,
            xmas,
            SYN | FIN,
            SYN | RST,
            SYN | FIN | ACK,
            RST | FIN | ACK,
            0xff,
        ] {
            assert!(!t(bad).tcp_flags_valid(), "{bad:#x} admitted");
        }
        let udp = Transport::new_checked(Protocol::Udp, &[0, 1, 0, 2, 0, 8, 0, 0]).unwrap();
        assert!(udp.tcp_flags_valid());
    }

    #[test]
    fn udp_length_validation() {
        let p = udp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, b"abc");
        let mut l4 = p[20..].to_vec();
        l4[5] = 50; // claims 50 bytes
        assert_eq!(
            Transport::new_checked(Protocol::Udp, &l4).unwrap_err(),
            WireError::BadTransportLength
        );
        l4[5] = 4; // below the header
        assert_eq!(
            Transport::new_checked(Protocol::Udp, &l4).unwrap_err(),
            WireError::BadTransportLength
        );
    }

    #[test]
    fn mss_is_clamped_and_checksum_kept() {
        let (s, d) = (
            Ipv4Addr::new(192, 168, 122, 101),
            Ipv4Addr::new(172, 16, 1, 1),
        );
        // SYN with options: NOP, MSS 1460 (odd offset), NOP, NOP, SACK-permitted... padded.
        let mut seg = vec![0u8; 32];
        seg[12] = 0x80; // 8 words
        seg[13] = TcpFlags::SYN;
        seg[20..25].copy_from_slice(&[1, 2, 4, 0x05, 0xb4]);
        seg[25..28].copy_from_slice(&[1, 4, 2]);
        let ph = checksum::pseudo_header_sum(s, d, 6, 32);
        let c = !checksum::fold(checksum::sum(&seg, ph));
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(clamp_mss(&mut seg, 1200, Csum::Full), Some(1460));
        assert_eq!(&seg[23..25], &1200u16.to_be_bytes());
        let ph = checksum::pseudo_header_sum(s, d, 6, 32);
        assert_eq!(
            checksum::fold(checksum::sum(&seg, ph)),
            0xffff,
            "checksum verifies"
        );
        // Already small enough: untouched.
        let before = seg.clone();
        assert_eq!(clamp_mss(&mut seg, 1300, Csum::Full), Some(1200));
        assert_eq!(seg, before);
        // At an even offset too (MSS first, then NOPs).
        seg[20..28].copy_from_slice(&[2, 4, 0x05, 0xb4, 1, 1, 1, 1]);
        seg[16..18].copy_from_slice(&[0, 0]);
        let c = !checksum::fold(checksum::sum(&seg, ph));
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(clamp_mss(&mut seg, 1000, Csum::Full), Some(1460));
        assert_eq!(
            checksum::fold(checksum::sum(&seg, ph)),
            0xffff,
            "even offset"
        );
        // Lying option lengths are left alone.
        seg[21] = 40;
        assert_eq!(clamp_mss(&mut seg, 100, Csum::Full), None);
    }

    #[test]
    fn icmp_echo_id_and_checksum() {
        // Echo request, id 0x0102, seq 1, payload "abcd".
        let mut m = vec![8, 0, 0, 0, 0x01, 0x02, 0x00, 0x01, b'a', b'b', b'c', b'd'];
        refresh_icmp_checksum(&mut m);
        let t = Transport::new_checked(Protocol::Icmp, &m).unwrap();
        assert!(t.is_icmp_echo_request());
        assert_eq!(t.src_port, 0x0102);
        m[9] ^= 0xff;
        assert_eq!(
            Transport::new_checked(Protocol::Icmp, &m).unwrap_err(),
            WireError::BadIcmpChecksum
        );
    }
}
