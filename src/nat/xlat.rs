//! IP/ICMP translation between IPv6 and IPv4 (SIIT, RFC 7915), one packet at a time and
//! without state: the header fields (section 4.1 and 5.1), ICMP and ICMPv6 (4.2 and
//! 5.2), the packet quoted in an ICMP error (4.3 and 5.3), the transport checksums
//! across the change of pseudo-header (4.5 and 5.5), and fragments both ways.
//!
//! What each address becomes is the caller's (`map`): the stateful part of NAT64 lives in
//! [`super::nat64`], which then runs the IPv4 packet through the IPv4 core.
//!
//! Choices within the RFC, as Jool makes them:
//! * IPv6 to IPv4: DF is set when the IPv4 packet is over 1260 bytes (section 5.1); a
//!   fragment header becomes IPv4 fragment fields; a ping cut in fragments is
//!   reassembled before its checksum is finished (it covers the datagram's length, which
//!   the first fragment does not carry).
//! * IPv4 to IPv6: a fragment header is added to a fragment, and to a datagram without DF
//!   that would be over 1280 bytes ("lowest-ipv6-mtu"), which is then cut at 1280
//!   (section 4.1); an IPv4 UDP datagram with a zero checksum gets one computed, or is
//!   dropped if so configured (section 4.5); the MSS of a SYN is clamped to what the
//!   inside MTU carries.
//! * ICMP errors are cut to 576 bytes (IPv4) and 1280 bytes (IPv6); Packet Too Big and
//!   Fragmentation Needed carry the MTU adjusted by 20 bytes (4.2, 5.2), an MTU of zero
//!   being replaced by the plateau below the quoted length (RFC 1191).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::DropReason;
use crate::wire::checksum;
use crate::wire::icmpv6;
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::ipv6::Ipv6;
use crate::wire::offload::{self, Offload};
use crate::wire::transport::{clamp_mss, Csum};

/// The IPv6 MTU the translator assumes beyond the inside port for datagrams that may be
/// fragmented (RFC 7915 section 4.1; Jool's `lowest-ipv6-mtu`).
pub const LOWEST_IPV6_MTU: usize = 1280;
/// IPv4 packets up to this size leave without DF (RFC 7915 section 5.1).
const DF_THRESHOLD: usize = 1260;
/// RFC 1812 4.3.2.3: an ICMPv4 error is at most 576 bytes.
const MAX_ICMP4_ERROR: usize = 576;

/// What the translator needs besides the packet.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The MTUs of the inside (IPv6) and outside (IPv4) ports.
    pub mtu: [usize; 2],
    /// Compute the checksum of an IPv4 UDP datagram that has none (else drop it).
    pub udp_zero_compute: bool,
}

/// The identification of the next IPv4 packet made from an unfragmented IPv6 one.
#[derive(Debug, Default)]
pub struct Ident(u16);

impl Ident {
    fn next(&mut self) -> u16 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

fn sum4(a: Ipv4Addr) -> u32 {
    checksum::sum(&a.octets(), 0)
}
fn sum6(a: Ipv6Addr) -> u32 {
    checksum::sum(&a.octets(), 0)
}

/// A checksum field after the words summing to `old` were replaced by words summing to
/// `new` (RFC 1624 eqn. 3). `partial`: the field holds an uncomplemented pseudo-header
/// sum (a TUN offload), updated the same way without the complements.
fn swap_sum(field: u16, partial: bool, old: u32, new: u32) -> u16 {
    let (old, new) = (checksum::fold(old), checksum::fold(new));
    if partial {
        checksum::fold(u32::from(field) + u32::from(!old) + u32::from(new))
    } else {
        !checksum::fold(u32::from(!field) + u32::from(!old) + u32::from(new))
    }
}

fn word(hi: u8, lo: u8) -> u32 {
    u32::from(u16::from_be_bytes([hi, lo]))
}

/// Where the checksum of a transport header of this (IPv4) protocol number sits.
fn csum_at(protocol: u8) -> Option<usize> {
    match protocol {
        6 => Some(16),
        17 => Some(6),
        1 | 58 => Some(2),
        _ => None,
    }
}

/// Updates the TCP or UDP checksum at the start of `seg` for a pseudo-header whose
/// addresses summed `old` and now sum `new`. A UDP checksum of zero (IPv4: none) is left
/// to the caller.
fn retarget(seg: &mut [u8], protocol: u8, partial: bool, old: u32, new: u32) {
    let Some(at) = csum_at(protocol).filter(|a| seg.len() >= a + 2) else {
        return;
    };
    let c = u16::from_be_bytes([seg[at], seg[at + 1]]);
    let mut c = swap_sum(c, partial, old, new);
    if protocol == 17 && !partial && c == 0 {
        c = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// The ICMPv4 echo type for an ICMPv6 one, and back.
fn echo_64(t: u8) -> Option<u8> {
    match t {
        128 => Some(8),
        129 => Some(0),
        _ => None,
    }
}
fn echo_46(t: u8) -> Option<u8> {
    match t {
        8 => Some(128),
        0 => Some(129),
        _ => None,
    }
}

/// Rewrites the ICMPv6 echo at the start of `msg` as ICMPv4 (type, and the checksum
/// without the pseudo-header of `len` bytes from `src` to `dst`).
fn echo_to_v4(msg: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Option<()> {
    let t = echo_64(*msg.first()?)?;
    if msg.len() < 4 {
        return None;
    }
    let old = checksum::pseudo_header_sum_v6(src, dst, 58, len as u32) + word(msg[0], msg[1]);
    let new = word(t, msg[1]);
    let c = swap_sum(u16::from_be_bytes([msg[2], msg[3]]), false, old, new);
    msg[0] = t;
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Rewrites the ICMPv4 echo at the start of `msg` as ICMPv6.
fn echo_to_v6(msg: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Option<()> {
    let t = echo_46(*msg.first()?)?;
    if msg.len() < 4 {
        return None;
    }
    let old = word(msg[0], msg[1]);
    let new = checksum::pseudo_header_sum_v6(src, dst, 58, len as u32) + word(t, msg[1]);
    let c = swap_sum(u16::from_be_bytes([msg[2], msg[3]]), false, old, new);
    msg[0] = t;
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Writes a 20-byte IPv4 header with `flags_offset` as the flags and fragment offset
/// word.
#[allow(clippy::too_many_arguments)]
fn emit_v4(
    out: &mut [u8],
    tos: u8,
    total_len: usize,
    ident: u16,
    flags_offset: u16,
    ttl: u8,
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    crate::wire::ipv4::emit_header(
        out,
        tos,
        total_len as u16,
        ident,
        false,
        ttl,
        protocol,
        src,
        dst,
    );
    out[6..8].copy_from_slice(&flags_offset.to_be_bytes());
    crate::wire::ipv4::recompute_header_checksum(&mut out[..20]);
}

/// Writes a fixed IPv6 header with traffic class `tc`.
fn emit_v6(
    out: &mut [u8],
    tc: u8,
    payload_len: usize,
    next: u8,
    hop: u8,
    s: Ipv6Addr,
    d: Ipv6Addr,
) {
    icmpv6::emit_header(out, payload_len as u16, next, hop, s, d);
    out[0] = 0x60 | (tc >> 4);
    out[1] = (tc & 0x0f) << 4;
}

/// The IPv4 flags and offset word for an IPv6 fragment header, and the identification.
fn v4_fragment_fields(f: crate::wire::ipv6::FragmentInfo) -> (u16, u16) {
    let mf = if f.more { 0x2000 } else { 0 };
    (f.ident as u16, mf | (f.offset & 0x1fff))
}

/// Translates the IPv6 packet in `buf` to IPv4 in place (RFC 7915 section 5). Returns
/// where in `buf` the IPv4 packet now lies; `off` is updated for it (partial checksum
/// offset, GSO type). The packet has passed [`Ipv6::new_checked`], the hop limit check
/// and the routing header check; `map` gives each address's IPv4 counterpart.
pub fn to_v4(
    buf: &mut [u8],
    off: &mut Offload,
    ctx: &Ctx,
    ident: &mut Ident,
    map: &mut dyn FnMut(Ipv6Addr) -> Option<Ipv4Addr>,
) -> Result<Range<usize>, DropReason> {
    let ip = Ipv6::new_checked(&buf[..])?;
    let (src6, dst6) = (ip.src(), ip.dst());
    let (l4, total, frag) = (ip.l4_offset(), ip.total_len(), ip.fragment());
    let (tc, hop, next) = (ip.traffic_class(), ip.hop_limit(), ip.protocol());
    let dst4 = map(dst6).ok_or(DropReason::Untranslatable)?;
    let src4 = map(src6).ok_or(DropReason::NoBinding)?;
    let l4_len = total - l4;
    let protocol = match next {
        6 | 17 => next,
        58 => 1,
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    if 20 + l4_len > usize::from(u16::MAX) {
        return Err(DropReason::TooBig);
    }
    let first = frag.is_none_or(|f| f.offset == 0);
    let fragmented = frag.is_some_and(|f| !f.is_atomic());
    if next == 58 && first {
        let t = *buf.get(l4).ok_or(DropReason::Truncated)?;
        if icmpv6::kind::is_error(t) {
            if fragmented {
                return Err(DropReason::Untranslatable);
            }
            let outer = Outer {
                src6,
                dst6,
                src4,
                dst4,
                tc,
                hop,
            };
            return icmp_error_to_v4(buf, l4, total, outer, ctx, ident, map);
        }
        if echo_64(t).is_none() {
            return Err(DropReason::Untranslatable);
        }
        // As the IPv6 core does: a ping whose checksum is wrong goes no further (one in
        // fragments is checked by the IPv4 host, its checksum translated as it is).
        if !fragmented && !icmpv6::checksum_ok(src6, dst6, &buf[l4..total]) {
            return Err(DropReason::BadIcmpChecksum);
        }
    }
    // RFC 8200 section 8.1: IPv6 has no UDP without a checksum.
    if protocol == 17 && first && off.csum.is_none() && buf.get(l4 + 6..l4 + 8) == Some(&[0, 0]) {
        return Err(DropReason::UdpZeroChecksum);
    }
    let (id, flags_offset) = match frag {
        Some(f) => v4_fragment_fields(f),
        None => {
            let size = match off.gso {
                Some(g) if protocol == 6 => {
                    usize::from(g.hdr_len) - (l4 - 20) + usize::from(g.size)
                }
                Some(_) => 0, // UDP segments: may be fragmented
                None => 20 + l4_len,
            };
            let df = if size > DF_THRESHOLD { 0x4000 } else { 0 };
            (ident.next(), df)
        }
    };
    let partial = off.csum.is_some();
    if first {
        let seg = &mut buf[l4..total];
        if protocol == 1 {
            // A ping in fragments: its length is known once reassembled, and taken out
            // of the checksum then ([`finish_echo_fragments`]).
            let len = if fragmented { 0 } else { l4_len };
            echo_to_v4(seg, src6, dst6, len).ok_or(DropReason::Untranslatable)?;
        } else {
            retarget(
                seg,
                protocol,
                partial,
                sum6(src6) + sum6(dst6),
                sum4(src4) + sum4(dst4),
            );
        }
    }
    let start = l4 - 20;
    emit_v4(
        &mut buf[start..l4],
        tc,
        20 + l4_len,
        id,
        flags_offset,
        hop,
        protocol,
        src4,
        dst4,
    );
    if let Some(p) = &mut off.csum {
        p.start = 20;
    }
    if let Some(g) = &mut off.gso {
        g.hdr_len -= (l4 - 20) as u16;
        if g.kind & !offload::GSO_ECN == offload::GSO_TCPV6 {
            g.kind = offload::GSO_TCPV4 | (g.kind & offload::GSO_ECN);
        }
    }
    Ok(start..total)
}

/// Finishes the translation of a ping that came in IPv6 fragments, once its IPv4
/// fragments are reassembled (`datagram`): the ICMPv6 pseudo-header's length, unknown
/// while the fragments were translated one by one, is taken out of the checksum.
pub fn finish_echo_fragments(datagram: &mut [u8]) {
    let Ok(ip) = Ipv4::new_checked(&datagram[..], Check::Full) else {
        return;
    };
    let (hl, len) = (ip.header_len(), ip.total_len() - ip.header_len());
    if ip.protocol() != 1 || len < 4 {
        return;
    }
    let m = &mut datagram[hl..];
    let c = swap_sum(u16::from_be_bytes([m[2], m[3]]), false, len as u32, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

/// RFC 7915 Figure 6: an ICMPv6 parameter problem pointer as an ICMPv4 one.
fn pointer_64(p: u32) -> Option<u32> {
    Some(match p {
        0 => 0,
        1 => 1,
        4 | 5 => 2,
        6 => 9,
        7 => 8,
        8..=23 => 12,
        24..=39 => 16,
        _ => return None,
    })
}

/// RFC 7915 Figure 3: an ICMPv4 parameter problem pointer as an ICMPv6 one.
fn pointer_46(p: u32) -> Option<u32> {
    Some(match p {
        0 => 0,
        1 => 1,
        2 | 3 => 4,
        8 => 7,
        9 => 6,
        12..=15 => 8,
        16..=19 => 24,
        _ => return None,
    })
}

/// RFC 1191 section 7's plateaus: the MTU to assume when a router said zero.
fn plateau_below(len: usize) -> usize {
    [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68]
        .into_iter()
        .find(|&p| p < len)
        .unwrap_or(68)
}

/// The outer header of an ICMPv6 error being translated.
struct Outer {
    src6: Ipv6Addr,
    dst6: Ipv6Addr,
    src4: Ipv4Addr,
    dst4: Ipv4Addr,
    tc: u8,
    hop: u8,
}

/// An ICMPv6 error (in `buf[l4..total]`) as an ICMPv4 error, with the packet it quotes
/// translated too (RFC 7915 sections 5.2 and 5.3). Written to the start of `buf`.
fn icmp_error_to_v4(
    buf: &mut [u8],
    l4: usize,
    total: usize,
    o: Outer,
    ctx: &Ctx,
    ident: &mut Ident,
    map: &mut dyn FnMut(Ipv6Addr) -> Option<Ipv4Addr>,
) -> Result<Range<usize>, DropReason> {
    let msg = &buf[l4..total];
    if msg.len() < 8 + 40 {
        return Err(DropReason::BadQuotedPacket);
    }
    if !icmpv6::checksum_ok(o.src6, o.dst6, msg) {
        return Err(DropReason::BadIcmpChecksum);
    }
    let rest = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
    let inner = Ipv6::new_quoted(&msg[8..]).map_err(|_| DropReason::BadQuotedPacket)?;
    let (t, code, rest4) = match (msg[0], msg[1]) {
        (1, 0 | 2 | 3) => (3, 1, 0),
        (1, 1) => (3, 10, 0),
        (1, 4) => (3, 3, 0),
        (2, _) => {
            let mtu = (rest.saturating_sub(20) as usize)
                .min(ctx.mtu[1])
                .min(ctx.mtu[0] - 20);
            (3, 4, mtu as u32)
        }
        (3, c @ (0 | 1)) => (11, c, 0),
        (4, 0) => (
            12,
            0,
            pointer_64(rest).ok_or(DropReason::Untranslatable)? << 24,
        ),
        (4, 1) => (3, 2, 0),
        _ => return Err(DropReason::Untranslatable),
    };
    let inner_src = map(inner.src()).ok_or(DropReason::BadQuotedPacket)?;
    let inner_dst = map(inner.dst()).ok_or(DropReason::BadQuotedPacket)?;
    let inner_next = inner.protocol();
    let inner_protocol = match inner_next {
        6 | 17 => inner_next,
        58 => 1,
        _ => return Err(DropReason::Untranslatable),
    };
    let ilen = inner.l4_offset();
    let stated = 40 + usize::from(u16::from_be_bytes([msg[12], msg[13]]));
    let inner_total = (stated.saturating_sub(ilen) + 20).min(usize::from(u16::MAX));
    let (iid, iflags) = match inner.fragment() {
        Some(f) => v4_fragment_fields(f),
        None => (
            0,
            if inner_total > DF_THRESHOLD {
                0x4000
            } else {
                0
            },
        ),
    };
    let quoted_l4 = &msg[8 + ilen..];
    let keep = quoted_l4.len().min(MAX_ICMP4_ERROR - 20 - 8 - 20);
    let mut out = vec![0u8; 20 + 8 + 20 + keep];
    out[20] = t;
    out[21] = code;
    out[24..28].copy_from_slice(&rest4.to_be_bytes());
    emit_v4(
        &mut out[28..48],
        inner.traffic_class(),
        inner_total,
        iid,
        iflags,
        inner.hop_limit(),
        inner_protocol,
        inner_src,
        inner_dst,
    );
    let first = inner.fragment().is_none_or(|f| f.offset == 0);
    let (isrc6, idst6) = (inner.src(), inner.dst());
    out[48..].copy_from_slice(&quoted_l4[..keep]);
    if first {
        let seg = &mut out[48..];
        if inner_protocol == 1 {
            if seg.first().is_some_and(|t| icmpv6::kind::is_error(*t)) {
                return Err(DropReason::Untranslatable);
            }
            echo_to_v4(seg, isrc6, idst6, stated.saturating_sub(ilen))
                .ok_or(DropReason::Untranslatable)?;
        } else {
            let old = sum6(isrc6) + sum6(idst6);
            retarget(
                seg,
                inner_protocol,
                false,
                old,
                sum4(inner_src) + sum4(inner_dst),
            );
        }
    }
    crate::wire::transport::refresh_icmp_checksum(&mut out[20..]);
    let n = out.len();
    emit_v4(
        &mut out[..20],
        o.tc,
        n,
        ident.next(),
        0,
        o.hop,
        1,
        o.src4,
        o.dst4,
    );
    buf[..n].copy_from_slice(&out);
    Ok(0..n)
}

/// An IPv4 packet about to become IPv6 (RFC 7915 section 4): what its translation reads
/// before anything is written.
struct ToV6 {
    f: crate::wire::ipv4::Fields,
    /// Header length and total length of the IPv4 packet.
    hl: usize,
    total: usize,
    src6: Ipv6Addr,
    dst6: Ipv6Addr,
    /// The IPv6 next header.
    next: u8,
    /// Whether it is a fragment, and whether the first (with the transport header).
    fragment: bool,
    first: bool,
    /// It goes out as fragments with fragment headers.
    cut: bool,
    /// An ICMP error: rebuilt whole with its quoted packet, not translated in place.
    icmp_error: bool,
}

/// Reads IPv4 packet `ip` for its translation to IPv6, refusing what cannot be
/// translated.
fn plan_v6(
    ip: &Ipv4<&[u8]>,
    off: &Offload,
    ctx: &Ctx,
    map: &mut dyn FnMut(Ipv4Addr) -> Option<Ipv6Addr>,
) -> Result<ToV6, DropReason> {
    let src6 = map(ip.src()).ok_or(DropReason::Untranslatable)?;
    let dst6 = map(ip.dst()).ok_or(DropReason::NoBinding)?;
    let (hl, total) = (ip.header_len(), ip.total_len());
    let f = *ip.fields();
    let next = match f.protocol {
        1 => 58,
        6 | 17 => f.protocol,
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    let fragment = ip.is_fragment();
    let mut plan = ToV6 {
        f,
        hl,
        total,
        src6,
        dst6,
        next,
        fragment,
        first: f.frag_offset == 0,
        cut: false,
        icmp_error: false,
    };
    if f.protocol == 1 {
        let t = *ip.payload().first().ok_or(DropReason::Truncated)?;
        if crate::wire::transport::icmp_type::is_error(t) {
            if fragment {
                return Err(DropReason::Untranslatable);
            }
            plan.icmp_error = true;
            return Ok(plan);
        }
        if fragment || echo_46(t).is_none() || ip.payload().len() < 4 {
            return Err(DropReason::Untranslatable);
        }
    }
    if f.protocol == 17 && !fragment && off.csum.is_none() {
        let zero = ip.payload().get(6..8) == Some(&[0, 0]);
        if zero && !ctx.udp_zero_compute {
            // RFC 7915 section 4.5: IPv6 has no UDP without a checksum.
            return Err(DropReason::UdpZeroChecksum);
        }
    }
    let len = total - hl;
    let df = f.flags & crate::wire::ipv4::FLAG_DF != 0;
    plan.cut = fragment || (!df && off.gso.is_none() && 40 + len > LOWEST_IPV6_MTU);
    if !plan.cut && off.gso.is_none() && 40 + len > ctx.mtu[0] {
        return Err(DropReason::TooBig);
    }
    Ok(plan)
}

/// Translates the transport part `l4` of a packet read by [`plan_v6`] in place: the
/// ICMP echo's type and checksum, or the checksum's pseudo-header, and the MSS clamp.
fn payload_to_v6(l4: &mut [u8], t: &ToV6, off: &Offload, ctx: &Ctx) -> Result<(), DropReason> {
    if !t.first {
        return Ok(());
    }
    let (f, src6, dst6) = (&t.f, t.src6, t.dst6);
    if f.protocol == 1 {
        let n = l4.len();
        echo_to_v6(l4, src6, dst6, n).ok_or(DropReason::Untranslatable)?;
    } else if f.protocol == 17 && l4.get(6..8) == Some(&[0, 0]) && off.csum.is_none() {
        // A UDP datagram without a checksum gets one (plan_v6 refused it otherwise).
        if t.fragment {
            return Err(DropReason::UdpZeroChecksum);
        }
        let mut s = checksum::pseudo_header_sum_v6(src6, dst6, 17, l4.len() as u32);
        s = checksum::sum(l4, s);
        let c = match !checksum::fold(s) {
            0 => 0xffff,
            c => c,
        };
        l4[6..8].copy_from_slice(&c.to_be_bytes());
    } else {
        let old = sum4(f.src) + sum4(f.dst);
        retarget(
            l4,
            f.protocol,
            off.csum.is_some(),
            old,
            sum6(src6) + sum6(dst6),
        );
    }
    if f.protocol == 6 && l4.get(13).is_some_and(|b| b & 0x02 != 0) {
        let csum = if off.csum.is_some() {
            Csum::Partial
        } else {
            Csum::Full
        };
        clamp_mss(l4, (ctx.mtu[0] - 60) as u16, csum);
    }
    Ok(())
}

/// Writes the IPv6 header of an unfragmented translation into `p` (40 bytes and the
/// payload after them), and moves the offload state to it.
fn header_to_v6(p: &mut [u8], t: &ToV6, off: &mut Offload) {
    emit_v6(p, t.f.tos, t.total - t.hl, t.next, t.f.ttl, t.src6, t.dst6);
    if let Some(c) = &mut off.csum {
        c.start = 40;
    }
    if let Some(g) = &mut off.gso {
        g.hdr_len += 20;
        if g.kind & !offload::GSO_ECN == offload::GSO_TCPV4 {
            g.kind = offload::GSO_TCPV6 | (g.kind & offload::GSO_ECN);
        }
    }
}

/// Translates the IPv4 packet at `buf[at..]` to IPv6 in the same buffer, its IPv6
/// header written over the IPv4 one and into the room before it, when it can be: an
/// unfragmented packet (or one needing no fragment header) with room enough. Returns the
/// IPv6 packet's place in `buf`, `Ok(None)` (nothing written) if it must go through
/// [`to_v6`] instead, or why it is dropped.
pub fn to_v6_in_place(
    buf: &mut [u8],
    at: usize,
    off: &mut Offload,
    ctx: &Ctx,
    map: &mut dyn FnMut(Ipv4Addr) -> Option<Ipv6Addr>,
) -> Result<Option<Range<usize>>, DropReason> {
    let pkt = buf.get(at..).ok_or(DropReason::Truncated)?;
    let ip = Ipv4::new_checked(pkt, Check::Full)?;
    let t = plan_v6(&ip, off, ctx, map)?;
    if t.icmp_error || t.cut || at + t.hl < 40 {
        return Ok(None);
    }
    payload_to_v6(&mut buf[at + t.hl..at + t.total], &t, off, ctx)?;
    let start = at + t.hl - 40;
    header_to_v6(&mut buf[start..at + t.total], &t, off);
    Ok(Some(start..at + t.total))
}

/// Translates the IPv4 packet `pkt` (with offload state `off`) to IPv6 (RFC 7915
/// section 4), pushing the packet, or its fragments, to `out`: a copy, for a packet with
/// no room before it, an ICMP error (rebuilt), or one going out in fragments.
pub fn to_v6(
    pkt: &[u8],
    off: Offload,
    ctx: &Ctx,
    map: &mut dyn FnMut(Ipv4Addr) -> Option<Ipv6Addr>,
    out: &mut Vec<(Vec<u8>, Offload)>,
) -> Result<(), DropReason> {
    let ip = Ipv4::new_checked(pkt, Check::Full)?;
    let t = plan_v6(&ip, &off, ctx, map)?;
    let (f, hl, next, src6, dst6) = (t.f, t.hl, t.next, t.src6, t.dst6);
    if t.icmp_error {
        let p = icmp_error_to_v6(&pkt[hl..t.total], &ip, (src6, dst6), ctx, map)?;
        out.push((p, Offload::NONE));
        return Ok(());
    }
    let payload = &pkt[hl..t.total];
    // The IPv6 packet, with the payload copied in once (fragmenting reads the translated
    // payload from it).
    let mut p = vec![0u8; 40 + payload.len()];
    p[40..].copy_from_slice(payload);
    let mut off = off;
    payload_to_v6(&mut p[40..], &t, &off, ctx)?;
    if !t.cut {
        header_to_v6(&mut p, &t, &mut off);
        out.push((p, off));
        return Ok(());
    }
    // Fragments of at most LOWEST_IPV6_MTU bytes, each with a fragment header carrying the
    // IPv4 identification, the offset and More Fragments (RFC 7915 section 4.1).
    let l4 = &mut p[40..];
    if let Some(c) = off.csum {
        let mut whole = vec![0u8; hl];
        whole.extend_from_slice(l4);
        let c = offload::Partial {
            start: hl as u16,
            offset: c.offset,
        };
        offload::complete(&mut whole, c);
        l4.copy_from_slice(&whole[hl..]);
    }
    let piece = (LOWEST_IPV6_MTU.min(ctx.mtu[0]) - 48) & !7;
    let base = usize::from(f.frag_offset) * 8;
    let more_after = f.flags & crate::wire::ipv4::FLAG_MF != 0;
    let mut at = 0;
    loop {
        let end = (at + piece).min(l4.len());
        let last = end == l4.len();
        let mut p = vec![0u8; 48 + end - at];
        emit_v6(&mut p, f.tos, 8 + end - at, 44, f.ttl, src6, dst6);
        p[40] = next;
        let more = u16::from(!last || more_after);
        let word = (((base + at) / 8) as u16) << 3 | more;
        p[42..44].copy_from_slice(&word.to_be_bytes());
        p[44..48].copy_from_slice(&u32::from(f.ident).to_be_bytes());
        p[48..].copy_from_slice(&l4[at..end]);
        out.push((p, Offload::NONE));
        if last {
            return Ok(());
        }
        at = end;
    }
}

/// An ICMPv4 error as an ICMPv6 error, with the packet it quotes translated too (RFC 7915
/// sections 4.2 and 4.3).
fn icmp_error_to_v6<T: AsRef<[u8]>>(
    msg: &[u8],
    outer: &Ipv4<T>,
    (src6, dst6): (Ipv6Addr, Ipv6Addr),
    ctx: &Ctx,
    map: &mut dyn FnMut(Ipv4Addr) -> Option<Ipv6Addr>,
) -> Result<Vec<u8>, DropReason> {
    if msg.len() < 8 + 20 {
        return Err(DropReason::BadQuotedPacket);
    }
    let rest = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
    let inner =
        Ipv4::new_checked(&msg[8..], Check::Quoted).map_err(|_| DropReason::BadQuotedPacket)?;
    let fi = *inner.fields();
    let stated = usize::from(u16::from_be_bytes([msg[10], msg[11]]));
    let (t, code, rest6) = match (msg[0], msg[1]) {
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => (1, 0, 0),
        (3, 2) => (4, 1, 6),
        (3, 3) => (1, 4, 0),
        (3, 4) => {
            let said = (rest & 0xffff) as usize;
            let said = if said == 0 {
                plateau_below(stated)
            } else {
                said
            };
            let mtu = (said + 20).min(ctx.mtu[0]).min(ctx.mtu[1] + 20);
            (2, 0, mtu as u32)
        }
        (3, 9 | 10 | 13 | 15) => (1, 1, 0),
        (11, c @ (0 | 1)) => (3, c, 0),
        (12, 0 | 2) => (
            4,
            0,
            pointer_46(rest >> 24).ok_or(DropReason::Untranslatable)?,
        ),
        _ => return Err(DropReason::Untranslatable),
    };
    let isrc = map(fi.src).ok_or(DropReason::BadQuotedPacket)?;
    let idst = map(fi.dst).ok_or(DropReason::BadQuotedPacket)?;
    let inext = match fi.protocol {
        1 => 58,
        6 | 17 => fi.protocol,
        _ => return Err(DropReason::Untranslatable),
    };
    let ihl = inner.header_len();
    let ifrag = inner.is_fragment();
    let ihdr = if ifrag { 48 } else { 40 };
    let inner_l4 = &msg[8 + ihl..];
    let keep = inner_l4.len().min(icmpv6::MIN_MTU - 40 - 8 - ihdr);
    let mut m = vec![0u8; 8 + ihdr + keep];
    m[0] = t;
    m[1] = code;
    m[4..8].copy_from_slice(&rest6.to_be_bytes());
    let ipayload = stated.saturating_sub(ihl) + ihdr - 40;
    emit_v6(
        &mut m[8..48],
        fi.tos,
        ipayload,
        if ifrag { 44 } else { inext },
        fi.ttl,
        isrc,
        idst,
    );
    if ifrag {
        m[48] = inext;
        let mf = u16::from(fi.flags & crate::wire::ipv4::FLAG_MF != 0);
        m[50..52].copy_from_slice(&(fi.frag_offset << 3 | mf).to_be_bytes());
        m[52..56].copy_from_slice(&u32::from(fi.ident).to_be_bytes());
    }
    let seg = &mut m[8 + ihdr..];
    seg.copy_from_slice(&inner_l4[..keep]);
    if fi.frag_offset == 0 {
        if fi.protocol == 1 {
            if seg
                .first()
                .is_some_and(|t| crate::wire::transport::icmp_type::is_error(*t))
            {
                return Err(DropReason::Untranslatable);
            }
            echo_to_v6(seg, isrc, idst, stated.saturating_sub(ihl))
                .ok_or(DropReason::Untranslatable)?;
        } else {
            let old = sum4(fi.src) + sum4(fi.dst);
            retarget(seg, fi.protocol, false, old, sum6(isrc) + sum6(idst));
        }
    }
    let mut p = vec![0u8; 40 + m.len()];
    let ttl = outer.ttl();
    emit_v6(&mut p, outer.tos(), m.len(), 58, ttl, src6, dst6);
    icmpv6::set_checksum(src6, dst6, &mut m);
    p[40..].copy_from_slice(&m);
    Ok(p)
}

#[cfg(test)]
mod test;
