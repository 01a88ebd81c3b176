//! Packets read from a TUN with offloads (`IFF_VNET_HDR`): a partial transport checksum
//! (the field holds the pseudo-header sum, completed by whoever emits the packet) and GSO
//! super-packets of up to 64 KB, translated whole. For a partial checksum a changed port
//! needs no update and a changed address is applied by the RFC 1624 rule
//! ([`crate::wire::offload`]).

use std::net::Ipv6Addr;

use super::{Address, DropReason, Instant, Nat, Side, Verdict};
use crate::wire::ipv6::Ipv6;
use crate::wire::offload::{self, Gso, Offload};
use crate::wire::transport::Csum;

impl Nat {
    /// [`Nat::process`] for a packet read from a TUN with offloads: `off` is what the
    /// kernel said of it (partial checksum, GSO), and on return what to tell the kernel
    /// with the packet written out (for [`Verdict::Forward`] and [`Verdict::Hairpin`];
    /// every other packet leaves with a complete checksum and no GSO).
    ///
    /// A partial checksum is kept only on an unfragmented TCP or UDP packet whose checksum
    /// field is where the kernel says; any other is completed here, as a NIC would, and so
    /// is one about to go to the router's own stack or be fragmented.
    pub fn process_offload(
        &mut self,
        side: Side,
        buf: &mut [u8],
        now: Instant,
        off: &mut Offload,
    ) -> Verdict {
        self.with_offload(buf, off, partial_translatable, |n, buf| {
            n.process(side, buf, now)
        })
    }

    /// [`Nat::process_offload`] for a packet the NAT64 translator made from an inside
    /// IPv6 host's: its source is the host's stand-in ([`super::nat64`]).
    pub fn process_translated(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        off: &mut Offload,
    ) -> Verdict {
        self.via64 = true;
        let v = self.process_offload(Side::Inside, buf, now, off);
        self.via64 = false;
        v
    }
}

impl<A: Address> Nat<A> {
    /// The offload handling both families share: a partial checksum the packet's
    /// family cannot keep as it is (`translatable` says) is completed, or the packet
    /// dropped if it is a super-packet; `process` runs with the offload state set; what
    /// the kernel is told on the way out follows the verdict.
    fn with_offload(
        &mut self,
        buf: &mut [u8],
        off: &mut Offload,
        translatable: fn(&[u8], offload::Partial, Option<Gso>) -> bool,
        process: impl FnOnce(&mut Self, &mut [u8]) -> Verdict,
    ) -> Verdict {
        if let Some(p) = off.csum {
            if !translatable(buf, p, off.gso) {
                if off.gso.is_some() || !offload::complete(buf, p) {
                    *off = Offload::NONE;
                    self.stats.count(DropReason::BadOffload);
                    return Verdict::Drop(DropReason::BadOffload);
                }
                off.csum = None;
            }
        }
        self.offload = *off;
        let v = process(self, buf);
        let state = std::mem::replace(&mut self.offload, Offload::NONE);
        *off = match v {
            Verdict::Forward { .. } | Verdict::Hairpin { .. } => state,
            Verdict::Local { len } => {
                if let Some(p) = state.csum {
                    offload::complete(&mut buf[..len], p);
                }
                Offload::NONE
            }
            _ => Offload::NONE,
        };
        v
    }

    /// What the transport checksum field of the packet being processed holds.
    pub(super) fn csum(&self) -> Csum {
        match self.offload.csum {
            Some(_) => Csum::Partial,
            None => Csum::Full,
        }
    }
}

impl Nat<Ipv6Addr> {
    /// [`Nat::process_offload`] for IPv6: a partial checksum kept on an unfragmented TCP
    /// or UDP datagram whose checksum field is where the kernel says (after any extension
    /// headers), TSO6 and USO super-packets forwarded whole.
    pub fn process_offload(
        &mut self,
        side: Side,
        buf: &mut [u8],
        now: Instant,
        off: &mut Offload,
    ) -> Verdict {
        self.with_offload(buf, off, partial_translatable6, |n, buf| {
            n.process(side, buf, now)
        })
    }
}

/// [`partial_translatable`] for an IPv6 packet: the transport header is found after the
/// extension headers.
pub fn partial_translatable6(buf: &[u8], p: offload::Partial, gso: Option<Gso>) -> bool {
    let Ok(ip) = Ipv6::new_checked(buf) else {
        return false;
    };
    let (offset, gso_kind) = match ip.protocol() {
        6 => (16, offload::GSO_TCPV6),
        17 => (6, offload::GSO_UDP_L4),
        _ => return false,
    };
    ip.fragment().is_none()
        && usize::from(p.start) == ip.l4_offset()
        && p.offset == offset
        && gso.is_none_or(|g| g.kind & !offload::GSO_ECN == gso_kind && g.size > 0)
}

/// Can a packet whose checksum the kernel left partial (`p`) be translated as it is? It
/// must be an unfragmented TCP or UDP datagram with the checksum field where `p` says, and
/// a GSO super-packet must be of its own protocol.
fn partial_translatable(buf: &[u8], p: offload::Partial, gso: Option<Gso>) -> bool {
    if buf.len() < 20 || buf[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let fragment = u16::from_be_bytes([buf[6], buf[7]]) & 0x3fff != 0;
    let (offset, gso_kind) = match buf[9] {
        6 => (16, offload::GSO_TCPV4),
        17 => (6, offload::GSO_UDP_L4),
        _ => return false,
    };
    !fragment
        && usize::from(p.start) == ihl
        && p.offset == offset
        && gso.is_none_or(|g| g.kind & !offload::GSO_ECN == gso_kind && g.size > 0)
}

/// The transport header's length in front of a GSO super-packet's payload: the TCP data
/// offset, or UDP's 8 bytes.
pub(super) fn gso_l4_header_len(protocol: u8, l4: &[u8]) -> usize {
    match (protocol, l4.get(12)) {
        (6, Some(b)) => usize::from(b >> 4) * 4,
        _ => 8,
    }
}
