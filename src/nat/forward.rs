//! What a router does to any packet it forwards, translated or not (RFC 1812 section 5):
//! the TTL check with ICMP time exceeded (5.3.1), the MTU check with "fragmentation
//! needed" for DF packets (5.2.6, RFC 1191) or fragmentation for the others (RFC 791
//! section 3.2), reassembly before translation (RFC 4787 REQ-14), the ICMP errors the
//! router originates (4.3.2.7: never about an ICMP error), MSS clamping (RFC 4459
//! section 3.2) and the anti-spoofing check on the inside.

use std::net::Ipv4Addr;

use super::reassembly::Fragment;
use super::Instant;
use super::{gso_l4_header_len, DropReason, MssClamp, Nat, Side, Step, Transmit, Verdict};
use crate::wire::icmp::{self as icmp_err, unreachable};
use crate::wire::ipv4::Ipv4;
use crate::wire::offload::{self, Gso};
use crate::wire::transport::{self, icmp_type, Protocol, TcpFlags, Transport};

impl Nat {
    /// Queues `datagram` for port `to`, fragmented for its MTU.
    pub(super) fn split(&mut self, datagram: &mut [u8], to: Side) -> Verdict {
        if let Some(p) = self.offload.csum.take() {
            offload::complete(datagram, p);
        }
        let mtu = self.mtu(to);
        // A datagram for an IPv6 host behind NAT64 goes whole: the translator cuts it
        // for IPv6 (RFC 7915 section 4.1).
        if datagram.len() <= mtu || self.is_for_stand_in(to, datagram) {
            self.queue.push_back(Transmit::new(to, datagram.to_vec()));
        } else {
            let mut fragments = Vec::new();
            crate::wire::ipv4::fragment(datagram, mtu, &mut fragments);
            self.stats.fragmented += 1;
            self.queue.extend(
                fragments
                    .into_iter()
                    .map(|packet| Transmit::new(to, packet)),
            );
        }
        Verdict::Emit { to }
    }

    /// Holds a fragment; once its datagram is whole, translates it like any packet.
    pub(super) fn reassemble(
        &mut self,
        side: Side,
        ip: Ipv4<&mut [u8]>,
        now: Instant,
    ) -> Step<Verdict> {
        match self.reasm.add(&ip, now)? {
            Fragment::Held => Ok(Verdict::Held),
            Fragment::Complete(mut d) => {
                self.stats.reassembled += 1;
                match self.decide(side, &mut d, now)? {
                    Verdict::Forward { len } => Ok(self.split(&mut d[..len], side.other())),
                    Verdict::Hairpin { len } => Ok(self.split(&mut d[..len], side)),
                    // The router's own stack does not reassemble.
                    Verdict::Local { .. } => Err(DropReason::Fragment),
                    other => Ok(other),
                }
            }
        }
    }

    /// Queues an ICMP error from the router about `ip`, back out of the port `from` that
    /// `ip` came in by.
    pub(super) fn answer<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv4<T>,
        from: Side,
        t: u8,
        code: u8,
        rest: u32,
        why: DropReason,
    ) -> Verdict {
        if !icmp_err::may_answer(ip) || !self.allow_icmp_error(self.clock) {
            return Verdict::Drop(why);
        }
        let src = match from {
            Side::Inside => self.cfg.inside.addr,
            Side::Outside => self.cfg.outside.addr,
        };
        let mut packet = Vec::with_capacity(icmp_err::MAX_ERROR_LEN);
        icmp_err::build_error(&mut packet, src, t, code, rest, ip);
        self.queue.push_back(Transmit::new(from, packet));
        Verdict::Reply(why)
    }

    /// Is `src` impossible as the source of a packet from the inside network?
    pub(super) fn spoofed(&self, src: Ipv4Addr) -> bool {
        if self.sent_by_stand_in(src) {
            return false;
        }
        !self.cfg.inside.contains(src) || src == self.cfg.inside.broadcast()
    }

    /// Is `src` the stand-in of an IPv6 host, on a packet the NAT64 translator handed in?
    /// (From a wire, 0.0.0.0/8 is martian.)
    fn sent_by_stand_in(&self, src: Ipv4Addr) -> bool {
        self.via64 && super::nat64::is_stand_in(src)
    }

    /// What a router refuses from either port before anything else, as Linux does with
    /// `rp_filter` and `accept_source_route = 0`:
    /// * martian sources (RFC 1812 section 5.3.7): 0/8, 127/8, multicast 224/4, reserved
    ///   240/4 and the limited broadcast, the router's own addresses, the broadcast
    ///   address of either network, and, from outside, any address of the inside network;
    /// * source-routed packets (LSRR, SSRR: RFC 7126 section 4.3 and 4.4).
    pub(super) fn screen<T: AsRef<[u8]>>(&self, side: Side, ip: &Ipv4<T>) -> Step<()> {
        let src = ip.src();
        let o = src.octets();
        let (inside, outside) = (self.cfg.inside, self.cfg.outside);
        let martian = (o[0] == 0 && !(side == Side::Inside && self.sent_by_stand_in(src)))
            || o[0] == 127
            || o[0] >= 224
            || src == inside.addr
            || src == outside.addr
            || src == inside.broadcast()
            || src == outside.broadcast()
            || (side == Side::Outside && inside.contains(src));
        if martian {
            return Err(DropReason::MartianSource);
        }
        if ip.has_source_route() {
            return Err(DropReason::SourceRoute);
        }
        Ok(())
    }

    pub(super) fn mtu(&self, side: Side) -> usize {
        self.cfg.mtu[side.index()]
    }

    /// Is `datagram`, leaving by `to`, for an IPv6 host behind NAT64 (a stand-in)?
    pub(super) fn is_for_stand_in(&self, to: Side, datagram: &[u8]) -> bool {
        self.cfg.nat64 && to == Side::Inside && super::nat64::is_for_stand_in(datagram)
    }

    /// The MTU for a datagram to `dst` leaving by `egress`: an IPv6 host behind NAT64
    /// gets 20 bytes less, for the larger IPv6 header (RFC 7915 section 4.1 and 4.2).
    fn mtu_to(&self, egress: Side, dst: Ipv4Addr) -> usize {
        let mtu = self.mtu(egress);
        if self.cfg.nat64 && egress == Side::Inside && super::nat64::is_stand_in(dst) {
            mtu - 20
        } else {
            mtu
        }
    }

    /// MSS clamping of a translated SYN leaving through `egress`.
    pub(super) fn clamp_mss(&self, ip: &mut Ipv4<&mut [u8]>, t: &Transport, egress: Side) {
        let Some(clamp) = self.cfg.clamp_mss else {
            return;
        };
        if t.protocol != Protocol::Tcp || !t.has_flag(TcpFlags::SYN) {
            return;
        }
        let max = match clamp {
            MssClamp::Fixed(n) => n,
            MssClamp::Mtu => (self.mtu(egress) - 40) as u16,
        };
        transport::clamp_mss(ip.payload_mut(), max, self.csum());
    }

    /// RFC 1812 forwarding checks, made before any state is created: TTL, then the size
    /// against the MTU of the port the packet leaves by (`egress`).
    pub(super) fn forwarding_checks<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv4<T>,
        from: Side,
        egress: Side,
    ) -> Option<Verdict> {
        self.forwarding_checks_to(ip, from, egress, ip.dst())
    }

    /// [`Nat::forwarding_checks`] for a packet that will be sent to `dst` (its
    /// destination once translated).
    pub(super) fn forwarding_checks_to<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv4<T>,
        from: Side,
        egress: Side,
        dst: Ipv4Addr,
    ) -> Option<Verdict> {
        if ip.ttl() <= 1 {
            return Some(self.answer(
                ip,
                from,
                icmp_type::TIME_EXCEEDED,
                0,
                0,
                DropReason::TtlExceeded,
            ));
        }
        if let Some(gso) = self.offload.gso {
            // A super-packet: what counts is the size of the segments it will be cut into.
            let headers = ip.header_len() + gso_l4_header_len(ip.protocol(), ip.payload());
            let mtu = self.mtu_to(egress, dst);
            if headers + usize::from(gso.size) > mtu {
                if ip.dont_fragment() || mtu <= headers {
                    return Some(self.answer(
                        ip,
                        from,
                        icmp_type::DEST_UNREACHABLE,
                        unreachable::FRAGMENTATION_NEEDED,
                        mtu as u32,
                        DropReason::TooBig,
                    ));
                }
                self.offload.gso = Some(Gso {
                    size: (mtu - headers) as u16,
                    ..gso
                });
            }
            return None;
        }
        // Without DF a datagram too large for the port is fragmented on the way out.
        if ip.total_len() > self.mtu_to(egress, dst) && ip.dont_fragment() {
            let mtu = self.mtu_to(egress, dst) as u32;
            return Some(self.answer(
                ip,
                from,
                icmp_type::DEST_UNREACHABLE,
                unreachable::FRAGMENTATION_NEEDED,
                mtu,
                DropReason::TooBig,
            ));
        }
        None
    }
}
