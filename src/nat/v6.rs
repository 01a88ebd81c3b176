//! NAPT66: IPv6 from the inside network to the outside address and back, as
//! `ip6tables -t nat -A POSTROUTING -j MASQUERADE` does. The decisions are the ones IPv4
//! takes, in the same generic code ([`Nat`] over [`Ipv6Addr`]): endpoint-independent
//! mappings, filtering, port preservation, parity and hold, port forwards, half-open
//! limits, TCP tracking and timeouts (RFC 4787, 5382, 5508 and 7857 apply to IPv6 NAT as
//! they are written). What is IPv6's own is here:
//! * the header and its extension chain ([`crate::wire::ipv6`], RFC 8200);
//! * the hop limit, with ICMPv6 time exceeded from the router's address on the port the
//!   packet came in by (so `traceroute6` shows the router);
//! * "packet too big" with the next port's MTU instead of fragmentation: a router never
//!   fragments IPv6 (RFC 8200 section 5);
//! * ICMPv6 (RFC 4443): echo identifiers mapped like ports, errors translated with their
//!   quoted packet rewritten, a checksum that covers the addresses;
//! * link-local and multicast traffic (router solicitations, neighbour discovery, MLD),
//!   which a router never forwards between its ports: counted and dropped;
//! * fragments, translated one by one by their first ([`super::frag6`]);
//! * the other two modes of `--ipv6`: RFC 6296 prefix translation ([`npt`]) and routing.

use std::net::Ipv6Addr;

use super::frag6;
use super::outbound::OutRefused;
use super::syn_proxy::{move_seq, SeqFix};
use super::{
    Cidr, DropReason, Endpoint, Instant, Mode, MssClamp, Nat, Session, SessionKey, Side, Step,
    Verdict,
};
use crate::wire::icmpv6::{self, kind, unreachable};
use crate::wire::ipv6::{next_header, Ipv6};
use crate::wire::transport::{self, Csum, End, Protocol, TcpFlags, Transport};

/// The transport protocols translated, by next-header value.
fn protocol(next: u8) -> Option<Protocol> {
    match next {
        next_header::TCP => Some(Protocol::Tcp),
        next_header::UDP => Some(Protocol::Udp),
        next_header::ICMPV6 => Some(Protocol::Icmp),
        _ => None,
    }
}

/// Is `a` link-scoped (fe80::/10), so that no router forwards it?
fn link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// RFC 6296 prefix translation of `addr` from network `from` to network `to` (prefixes
/// of equal length, /48 to /64): the prefix replaced, then one 16-bit word adjusted so
/// that the one's complement sum of the address, and so every checksum over it, is
/// unchanged (section 3.2: bits 48-63 for a /48, else the first word of the interface
/// identifier that is not 0xFFFF; a result of 0xFFFF is written 0). `None` if no word may
/// carry the adjustment (section 3.7: such packets are dropped).
pub fn npt(addr: Ipv6Addr, from: Cidr<Ipv6Addr>, to: Cidr<Ipv6Addr>) -> Option<Ipv6Addr> {
    let p = u32::from(from.prefix.min(to.prefix));
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
    let bits = (u128::from(to.addr) & mask) | (u128::from(addr) & !mask);
    let mut w = Ipv6Addr::from(bits).segments();
    let sum = |ws: &[u16; 8]| ws.iter().fold(0u16, |a, b| ones_add(a, *b));
    let (old, new) = (sum(&addr.segments()), sum(&w));
    let adj = ones_add(old, !new); // old - new, one's complement
    let at = if p <= 48 {
        3
    } else {
        (4..8).find(|&i| w[i] != 0xffff)?
    };
    w[at] = ones_add(w[at], adj);
    if w[at] == 0xffff {
        w[at] = 0;
    }
    Some(Ipv6Addr::from(w))
}

/// The packet quoted in ICMPv6 error `ip`, its protocol, and its transport ends.
fn quote<'a>(ip: &'a Ipv6<&mut [u8]>) -> Step<(Ipv6<&'a [u8]>, Protocol, Transport)> {
    let bad = |_| DropReason::BadQuotedPacket;
    let q = ip.payload().get(8..).ok_or(DropReason::BadQuotedPacket)?;
    let quoted = Ipv6::new_quoted(q).map_err(bad)?;
    let p = protocol(quoted.protocol()).ok_or(DropReason::BadQuotedPacket)?;
    let t = Transport::quoted(p, quoted.payload()).map_err(bad)?;
    Ok((quoted, p, t))
}

/// A fragment's share of its datagram's translation: the address, and the hop limit.
fn apply(ip: &mut Ipv6<&mut [u8]>, r: frag6::Rewrite) {
    ip.decrement_hop_limit();
    match r {
        frag6::Rewrite::Src(a) => ip.set_src(a),
        frag6::Rewrite::Dst(a) => ip.set_dst(a),
    }
}

/// One's complement addition of two 16-bit words.
fn ones_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

impl Nat<Ipv6Addr> {
    /// Processes one IPv6 packet read from `side` at `now`, rewriting `buf` in place
    /// (a packet read with offloads goes through [`Nat::process_offload`]).
    pub fn process(&mut self, side: Side, buf: &mut [u8], now: Instant) -> Verdict {
        self.clock = self.clock.max(now);
        self.seq_fix = None;
        let csum = self.csum();
        let v = match (self.cfg.mode, side) {
            (Mode::Napt, Side::Inside) => self.outbound6(buf, csum, now),
            (Mode::Napt, Side::Outside) => self.inbound6(buf, csum, now),
            (mode, side) => self.stateless6(mode, side, buf),
        }
        .unwrap_or_else(Verdict::Drop);
        if let (Verdict::Forward { len }, Some(_)) = (v, self.seq_fix) {
            if let Ok(off) = Ipv6::new_checked(&buf[..len]).map(|ip| ip.l4_offset()) {
                self.apply_seq_fix(&mut buf[off..len], csum == Csum::Full);
            }
        }
        self.count_verdict(side, v);
        v
    }

    /// Expires idle sessions (calling `on_expire` for each) and held SYNs at `now`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        on_expire: impl FnMut(&SessionKey<Ipv6Addr>, &Session),
    ) -> usize {
        self.clock = self.clock.max(now);
        self.expire_held_syns_with(now, |quote, from| {
            let q = Ipv6::new_quoted(quote).ok()?;
            let mut packet = Vec::new();
            icmpv6::build_error(
                &mut packet,
                from,
                kind::DEST_UNREACHABLE,
                unreachable::PORT,
                0,
                &q,
            );
            Some(packet)
        });
        self.frag6.expire(now);
        let n = self.table.expire(now, on_expire);
        self.sweep_proxy(now);
        n
    }

    /// What a router refuses from either port first: sources that name no one host or
    /// that cannot be where they come from (RFC 4291 section 2.5.2, RFC 6890), and
    /// traffic scoped to the link, which is the namespace kernels' own (router
    /// solicitations, neighbour discovery, MLD) and never crosses a router.
    fn screen6<T: AsRef<[u8]>>(&self, side: Side, ip: &Ipv6<T>) -> Step<()> {
        let (src, dst) = (ip.src(), ip.dst());
        if link_local(src) || link_local(dst) || dst.is_multicast() {
            return Err(DropReason::LinkLocal);
        }
        let (inside, outside) = (self.cfg.inside, self.cfg.outside);
        let martian = src.is_unspecified()
            || src.is_loopback()
            || src.is_multicast()
            || src == inside.addr
            || src == outside.addr
            || (side == Side::Outside && inside.contains(src));
        if martian {
            return Err(DropReason::MartianSource);
        }
        Ok(())
    }

    /// Queues an ICMPv6 error from the router's address on port `from` about `ip`, back
    /// out of that port.
    fn answer6<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv6<T>,
        from: Side,
        t: u8,
        code: u8,
        rest: u32,
        why: DropReason,
    ) -> Verdict {
        if !icmpv6::may_answer(ip, t) || !self.allow_icmp_error(self.clock) {
            return Verdict::Drop(why);
        }
        let src = match from {
            Side::Inside => self.cfg.inside.addr,
            Side::Outside => self.cfg.outside.addr,
        };
        let mut packet = Vec::with_capacity(icmpv6::MIN_MTU);
        icmpv6::build_error(&mut packet, src, t, code, rest, ip);
        self.queue.push_back(super::Transmit::new(from, packet));
        Verdict::Reply(why)
    }

    /// The hop limit and the size against the MTU of the port the packet leaves by
    /// (`egress`), made before any state is created.
    fn forwarding_checks6<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv6<T>,
        from: Side,
        egress: Side,
    ) -> Option<Verdict> {
        if ip.hop_limit() <= 1 {
            let why = DropReason::TtlExceeded;
            return Some(self.answer6(ip, from, kind::TIME_EXCEEDED, 0, 0, why));
        }
        let mtu = self.cfg.mtu[egress.index()];
        // A super-packet: what counts is the size of the segments it will be cut into.
        let size = match self.offload.gso {
            Some(g) => {
                ip.l4_offset()
                    + super::gso_l4_header_len(ip.protocol(), ip.payload())
                    + usize::from(g.size)
            }
            None => ip.total_len(),
        };
        if size > mtu {
            let why = DropReason::TooBig;
            return Some(self.answer6(ip, from, kind::PACKET_TOO_BIG, 0, mtu as u32, why));
        }
        None
    }

    /// The transport header of `ip`, with the family's checks.
    fn transport6<T: AsRef<[u8]>>(ip: &Ipv6<T>) -> Step<Transport> {
        let p = protocol(ip.protocol()).ok_or(DropReason::UnsupportedProtocol)?;
        Ok(Transport::new_checked_v6(
            p,
            ip.payload(),
            ip.src(),
            ip.dst(),
        )?)
    }

    fn outbound6(&mut self, buf: &mut [u8], csum: Csum, now: Instant) -> Step<Verdict> {
        let mut ip = Ipv6::new_checked(buf)?;
        self.screen6(Side::Inside, &ip)?;
        let (src, dst) = (ip.src(), ip.dst());
        let local = Verdict::Local {
            len: ip.total_len(),
        };
        if dst == self.cfg.inside.addr {
            return Ok(local);
        }
        if dst == self.cfg.outside.addr {
            let hairpin = protocol(ip.protocol())
                .filter(|_| !ip.is_fragment())
                .and_then(|p| Transport::new_checked_v6(p, ip.payload(), src, dst).ok())
                .filter(|t| self.hairpin_target_exists(t.protocol, t.dst_port));
            let Some(t) = hairpin else {
                return Ok(local); // for the router itself
            };
            if !self.cfg.inside.contains(src) {
                return Err(DropReason::SpoofedSource);
            }
            if !t.tcp_flags_valid() {
                return Err(DropReason::BadTcpFlags);
            }
            if let Some(v) = self.forwarding_checks6(&ip, Side::Inside, Side::Inside) {
                return Ok(v);
            }
            return self.hairpin6(ip, t, csum, now);
        }
        if !self.cfg.inside.contains(src) {
            return Err(DropReason::SpoofedSource);
        }
        if self.cfg.inside.contains(dst) {
            return Err(DropReason::NotRouted);
        }
        if ip.is_fragment() {
            return self.fragment6(Side::Inside, ip, now);
        }
        let t = Self::transport6(&ip)?;
        if let Some(v) = self.forwarding_checks6(&ip, Side::Inside, Side::Outside) {
            return Ok(v);
        }
        if t.protocol == Protocol::Icmp && kind::is_error(t.icmp_type) {
            return self.outbound_error6(ip);
        }
        if t.protocol == Protocol::Icmp && t.icmp_type != kind::ECHO_REQUEST {
            return Err(DropReason::UnsupportedIcmp);
        }
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        let icmp = t.protocol == Protocol::Icmp;
        let key = SessionKey {
            protocol: t.protocol,
            inside: Endpoint::new(src, t.src_port),
            remote: Endpoint::new(dst, if icmp { 0 } else { t.dst_port }),
        };
        let len = ip.total_len();
        let ext = match self.out_session(key, &t, len, now) {
            Ok(ext) => ext,
            Err(OutRefused::Drop(why)) => return Err(why),
            Err(OutRefused::NoRoom(why)) => {
                let code = unreachable::ADMIN_PROHIBITED;
                return Ok(self.answer6(&ip, Side::Inside, kind::DEST_UNREACHABLE, code, 0, why));
            }
        };
        ip.decrement_hop_limit();
        let out = self.cfg.outside.addr;
        transport::rewrite_endpoint_v6(&mut ip, t.protocol, End::Src, out, ext, csum);
        self.clamp_mss6(&mut ip, &t, Side::Outside);
        Ok(Verdict::Forward { len })
    }

    /// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8), as for IPv4: translated as if it had
    /// left and come back in, and sent back out of the inside port.
    fn hairpin6(
        &mut self,
        mut ip: Ipv6<&mut [u8]>,
        t: Transport,
        csum: Csum,
        now: Instant,
    ) -> Step<Verdict> {
        let outside = self.cfg.outside.addr;
        let p = t.protocol;
        let key = SessionKey {
            protocol: p,
            inside: Endpoint::new(ip.src(), t.src_port),
            remote: Endpoint::new(outside, t.dst_port),
        };
        let len = ip.total_len();
        let ext = match self.out_session(key, &t, len, now) {
            Ok(ext) => ext,
            Err(OutRefused::Drop(why)) => return Err(why),
            Err(OutRefused::NoRoom(why)) => {
                let code = unreachable::ADMIN_PROHIBITED;
                return Ok(self.answer6(&ip, Side::Inside, kind::DEST_UNREACHABLE, code, 0, why));
            }
        };
        let remote = Endpoint::new(outside, ext);
        let target = self
            .inbound_target(p, t.dst_port, remote)
            .ok_or(DropReason::NoSession)?;
        let inside = self.inbound_session(target, p, t.dst_port, remote, &t, len, now)?;
        ip.decrement_hop_limit();
        transport::rewrite_endpoint_v6(&mut ip, p, End::Src, outside, ext, csum);
        transport::rewrite_endpoint_v6(&mut ip, p, End::Dst, inside.addr, inside.port, csum);
        self.clamp_mss6(&mut ip, &t, Side::Inside);
        self.stats.hairpinned += 1;
        Ok(Verdict::Hairpin { len })
    }

    /// MSS clamping of a translated SYN leaving through `egress` (RFC 4459 section 3.2):
    /// `mtu` clamps to the port's MTU less 60 bytes of IPv6 and TCP headers.
    fn clamp_mss6(&self, ip: &mut Ipv6<&mut [u8]>, t: &Transport, egress: Side) {
        let Some(clamp) = self.cfg.clamp_mss else {
            return;
        };
        if t.protocol != Protocol::Tcp || !t.has_flag(TcpFlags::SYN) {
            return;
        }
        let max = match clamp {
            MssClamp::Fixed(n) => n,
            MssClamp::Mtu => (self.cfg.mtu[egress.index()].saturating_sub(60)) as u16,
        };
        let csum = self.csum();
        transport::clamp_mss(ip.payload_mut(), max, csum);
    }

    fn inbound6(&mut self, buf: &mut [u8], csum: Csum, now: Instant) -> Step<Verdict> {
        let mut ip = Ipv6::new_checked(buf)?;
        self.screen6(Side::Outside, &ip)?;
        let (src, dst) = (ip.src(), ip.dst());
        let local = Verdict::Local {
            len: ip.total_len(),
        };
        if dst == self.cfg.inside.addr {
            return Ok(local);
        }
        if dst != self.cfg.outside.addr {
            return Err(DropReason::NotRouted);
        }
        if ip.is_fragment() {
            return self.fragment6(Side::Outside, ip, now);
        }
        let Some(p) = protocol(ip.protocol()) else {
            return Ok(local); // the router's stack answers "parameter problem"
        };
        let t = Transport::new_checked_v6(p, ip.payload(), src, dst)?;
        if p == Protocol::Icmp && kind::is_error(t.icmp_type) {
            return self.inbound_error6(ip);
        }
        if p == Protocol::Icmp && t.icmp_type != kind::ECHO_REPLY {
            return Ok(local); // echo requests and the rest are for the router
        }
        let remote = Endpoint::new(src, if p == Protocol::Icmp { 0 } else { t.src_port });
        let len = ip.total_len();
        let Some(target) = self.inbound_target(p, t.dst_port, remote) else {
            self.not_admitted(&t, remote, ip.as_bytes(), now)?;
            return Ok(local); // nothing mapped: the router answers (RST, unreachable)
        };
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        if let Some(v) = self.forwarding_checks6(&ip, Side::Outside, Side::Inside) {
            return Ok(v);
        }
        let inside = self.inbound_session(target, p, t.dst_port, remote, &t, len, now)?;
        ip.decrement_hop_limit();
        transport::rewrite_endpoint_v6(&mut ip, p, End::Dst, inside.addr, inside.port, csum);
        self.clamp_mss6(&mut ip, &t, Side::Inside);
        Ok(Verdict::Forward { len })
    }

    /// A fragment through NAT66 ([`super::frag6`]): the first is translated like a packet
    /// (its transport header is all there is to read: ports, flags, the echo identifier),
    /// the later ones get the same address, in whatever order they come.
    fn fragment6(&mut self, side: Side, mut ip: Ipv6<&mut [u8]>, now: Instant) -> Step<Verdict> {
        let Some(f) = ip.fragment() else {
            return Err(DropReason::BadFragment);
        };
        let start = u32::from(f.offset) * 8;
        let end = start + (ip.total_len() - ip.l4_offset()) as u32;
        if f.more && (end - start) % 8 != 0 {
            return Err(DropReason::BadFragment); // RFC 8200 4.5: all but the last are 8n
        }
        if let Some(v) = self.forwarding_checks6(&ip, side, side.other()) {
            return Ok(v);
        }
        let key = frag6::Key {
            src: ip.src(),
            dst: ip.dst(),
            ident: f.ident,
        };
        let len = ip.total_len();
        match self.frag6.see(key, start, end, ip.as_bytes(), now) {
            frag6::Seen::Held => Ok(Verdict::Held),
            frag6::Seen::Overlap | frag6::Seen::NoRoom => Err(DropReason::BadFragment),
            frag6::Seen::Rewrite(r) => {
                apply(&mut ip, r);
                Ok(Verdict::Forward { len })
            }
            frag6::Seen::First => {
                let rewrite = self.first_fragment6(side, &mut ip, now)?;
                apply(&mut ip, rewrite);
                for mut packet in self.frag6.learn(key, rewrite) {
                    if let Ok(mut later) = Ipv6::new_checked(&mut packet[..]) {
                        apply(&mut later, rewrite);
                        self.queue
                            .push_back(super::Transmit::new(side.other(), packet));
                    }
                }
                Ok(Verdict::Forward { len })
            }
        }
    }

    /// Translates the first fragment of a datagram (ports and checksum; the address is
    /// left to [`apply`]) and says how every fragment's address changes.
    fn first_fragment6(
        &mut self,
        side: Side,
        ip: &mut Ipv6<&mut [u8]>,
        now: Instant,
    ) -> Step<frag6::Rewrite> {
        let p = protocol(ip.protocol()).ok_or(DropReason::UnsupportedProtocol)?;
        let l4 = ip.payload();
        let mut t = Transport::quoted(p, l4).map_err(|_| DropReason::BadFragment)?;
        if p == Protocol::Tcp {
            t.tcp_flags = l4.get(13).copied().ok_or(DropReason::BadFragment)?;
        }
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        let len = ip.total_len();
        let (src, dst) = (ip.src(), ip.dst());
        match side {
            Side::Inside => {
                if p == Protocol::Icmp && t.icmp_type != kind::ECHO_REQUEST {
                    return Err(DropReason::UnsupportedIcmp);
                }
                let icmp = p == Protocol::Icmp;
                let key = SessionKey {
                    protocol: p,
                    inside: Endpoint::new(src, t.src_port),
                    remote: Endpoint::new(dst, if icmp { 0 } else { t.dst_port }),
                };
                let ext = match self.out_session(key, &t, len, now) {
                    Ok(ext) => ext,
                    Err(OutRefused::Drop(why) | OutRefused::NoRoom(why)) => return Err(why),
                };
                let out = self.cfg.outside.addr;
                transport::rewrite_endpoint_v6(ip, p, End::Src, out, ext, Csum::Full);
                Ok(frag6::Rewrite::Src(out))
            }
            Side::Outside => {
                if p == Protocol::Icmp && t.icmp_type != kind::ECHO_REPLY {
                    return Err(DropReason::Fragment); // not the router's to reassemble
                }
                let remote = Endpoint::new(src, if p == Protocol::Icmp { 0 } else { t.src_port });
                let target = self
                    .inbound_target(p, t.dst_port, remote)
                    .ok_or(DropReason::Fragment)?;
                let inside = self.inbound_session(target, p, t.dst_port, remote, &t, len, now)?;
                transport::rewrite_endpoint_v6(
                    ip,
                    p,
                    End::Dst,
                    inside.addr,
                    inside.port,
                    Csum::Full,
                );
                Ok(frag6::Rewrite::Dst(inside.addr))
            }
        }
    }

    /// `--ipv6 npt` and `--ipv6 route`: no state, no ports. A packet from an inside host
    /// leaves with its source prefix translated to the outside prefix (RFC 6296) or as it
    /// is; a packet from outside to an address of the outside prefix (npt) or of the inside
    /// prefix (route) comes in translated back or as it is. ICMPv6 errors have the address
    /// in their quote translated too (RFC 6296 section 4.2). The router's own addresses are
    /// answered by its stack as in NAT66.
    fn stateless6(&mut self, mode: Mode, side: Side, buf: &mut [u8]) -> Step<Verdict> {
        let mut ip = Ipv6::new_checked(buf)?;
        self.screen6(side, &ip)?;
        let (src, dst) = (ip.src(), ip.dst());
        let (inside, outside) = (self.cfg.inside, self.cfg.outside);
        let len = ip.total_len();
        if dst == inside.addr || dst == outside.addr {
            return Ok(Verdict::Local { len });
        }
        let to = side.other();
        match side {
            Side::Inside if !inside.contains(src) => return Err(DropReason::SpoofedSource),
            Side::Inside if inside.contains(dst) => return Err(DropReason::NotRouted),
            Side::Outside if mode == Mode::Npt && !outside.contains(dst) => {
                return Err(DropReason::NotRouted)
            }
            Side::Outside if mode == Mode::Route && !inside.contains(dst) => {
                return Err(DropReason::NotRouted)
            }
            _ => {}
        }
        if let Some(v) = self.forwarding_checks6(&ip, side, to) {
            return Ok(v);
        }
        ip.decrement_hop_limit();
        if mode == Mode::Route {
            return Ok(Verdict::Forward { len });
        }
        // The address that changes: the source going out, the destination coming in.
        let (from, into) = match side {
            Side::Inside => (inside, outside),
            Side::Outside => (outside, inside),
        };
        let old = if side == Side::Inside { src } else { dst };
        let new = npt(old, from, into).ok_or(DropReason::NotRouted)?;
        match side {
            Side::Inside => ip.set_src(new),
            Side::Outside => ip.set_dst(new),
        }
        // Checksum-neutral: the transport checksum stands. An error's quote holds the
        // address the other way round: translated, then the ICMPv6 checksum redone.
        let error = ip.protocol() == next_header::ICMPV6
            && ip.payload().first().is_some_and(|t| kind::is_error(*t));
        if error && !ip.is_fragment() {
            let q = ip.payload_mut().get_mut(8..).unwrap_or_default();
            if let Ok(mut quoted) = Ipv6::new_quoted(q) {
                match side {
                    Side::Inside if from.contains(quoted.dst()) => {
                        if let Some(a) = npt(quoted.dst(), from, into) {
                            quoted.set_dst(a);
                        }
                    }
                    Side::Outside if from.contains(quoted.src()) => {
                        if let Some(a) = npt(quoted.src(), from, into) {
                            quoted.set_src(a);
                        }
                    }
                    _ => {}
                }
            }
            let (s6, d6) = (ip.src(), ip.dst());
            icmpv6::set_checksum(s6, d6, ip.payload_mut());
            self.stats.icmp_errors_translated += 1;
        }
        Ok(Verdict::Forward { len })
    }

    /// An ICMPv6 error from outside about a packet the router translated: its quoted
    /// packet left with the outside address and an external port as its source. Both the
    /// error's destination and the quoted source go back to the inside endpoint (RFC 5508
    /// section 3.2, RFC 4443 section 2.4). The session is not refreshed.
    fn inbound_error6(&mut self, mut ip: Ipv6<&mut [u8]>) -> Step<Verdict> {
        let (quoted, p, qt) = quote(&ip)?;
        if quoted.src() != self.cfg.outside.addr {
            return Err(DropReason::IcmpErrorNoSession);
        }
        let remote_port = if p == Protocol::Icmp { 0 } else { qt.dst_port };
        let remote = Endpoint::new(quoted.dst(), remote_port);
        let key = self
            .table
            .peek_in(p, qt.src_port, remote)
            .ok_or(DropReason::IcmpErrorNoSession)?;
        if let Some(v) = self.forwarding_checks6(&ip, Side::Outside, Side::Inside) {
            return Ok(v);
        }
        // The quoted packet's source goes back to the inside endpoint, and so does the
        // error's destination.
        let fix = self.quote_fix(&key, Side::Inside);
        Ok(self.rewrite_error6(&mut ip, p, End::Src, key.inside, fix))
    }

    /// An ICMPv6 error from an inside host about a packet that came in through a session
    /// (a port unreachable from a server behind a port forward, say): the quoted packet's
    /// destination, and the error's source, become the outside address and port.
    fn outbound_error6(&mut self, mut ip: Ipv6<&mut [u8]>) -> Step<Verdict> {
        let (quoted, p, qt) = quote(&ip)?;
        let key = SessionKey {
            protocol: p,
            inside: Endpoint::new(quoted.dst(), qt.dst_port),
            remote: Endpoint::new(
                quoted.src(),
                if p == Protocol::Icmp { 0 } else { qt.src_port },
            ),
        };
        let ext = self
            .table
            .peek_out(&key)
            .map(|s| s.ext_port)
            .ok_or(DropReason::IcmpErrorNoSession)?;
        let out = Endpoint::new(self.cfg.outside.addr, ext);
        let fix = self.quote_fix(&key, Side::Outside);
        Ok(self.rewrite_error6(&mut ip, p, End::Dst, out, fix))
    }

    /// Rewrites a translated ICMPv6 error: `quoted_end` of the quoted packet becomes `to`
    /// (its own transport checksum follows, where the quote holds it), and so does the
    /// error's other end (its destination for the quoted source, its source for the quoted
    /// destination); a sequence field of a SYN-proxied connection's segment is moved
    /// (`fix`); the ICMPv6 checksum is done again.
    fn rewrite_error6(
        &mut self,
        ip: &mut Ipv6<&mut [u8]>,
        p: Protocol,
        quoted_end: End,
        to: Endpoint<Ipv6Addr>,
        fix: Option<SeqFix>,
    ) -> Verdict {
        let len = ip.total_len();
        if let Some(q) = ip.payload_mut().get_mut(8..) {
            if let Ok(mut quoted) = Ipv6::new_quoted(q) {
                transport::rewrite_endpoint_v6(
                    &mut quoted,
                    p,
                    quoted_end,
                    to.addr,
                    to.port,
                    Csum::Full,
                );
                if let Some(fix) = fix {
                    move_seq(quoted.payload_mut(), fix, true);
                }
            }
        }
        ip.decrement_hop_limit();
        match quoted_end {
            End::Src => ip.set_dst(to.addr),
            End::Dst => ip.set_src(to.addr),
        }
        let (src, dst) = (ip.src(), ip.dst());
        icmpv6::set_checksum(src, dst, ip.payload_mut());
        self.stats.icmp_errors_translated += 1;
        Verdict::Forward { len }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::nat::{NatConfig, Transmit};
    use crate::wire::icmpv6::emit_header;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const CLIENT: &str = "fd00:122::101";
    const SERVER: &str = "fd00:122::73";
    const REMOTE: &str = "2001:db8:1::1";
    const OUT: &str = "2001:db8:1::186";

    fn nat6() -> Nat<Ipv6Addr> {
        let v4 = NatConfig::lab();
        Nat::new(NatConfig {
            inside: "fd00:122::100/64".parse().unwrap(),
            outside: "2001:db8:1::186/64".parse().unwrap(),
            dnat: vec!["tcp:8888=[fd00:122::73]:9999".parse().unwrap()],
            port_maps: Vec::new(),
            ssdp: false,
            alg_ftp: false,
            mtu: v4.mtu,
            clamp_mss: None,
            timeouts: v4.timeouts,
            filtering: v4.filtering,
            local_tcp_ports: v4.local_tcp_ports,
            limits: v4.limits,
            port_hold: v4.port_hold,
            port_parity: false,
            icmp_limit: v4.icmp_limit,
            seed: 1,
            max_half_open: v4.max_half_open,
            syn_cookies: v4.syn_cookies,
            mode: crate::nat::Mode::Napt,
            nat64: false,
        })
    }

    /// An IPv6 packet with a transport header `l4` (checksum computed) and hop limit 64.
    fn packet(next: u8, src: &str, dst: &str, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40 + l4.len()];
        emit_header(&mut p, l4.len() as u16, next, 64, a(src), a(dst));
        p[40..].copy_from_slice(l4);
        let off = match next {
            next_header::TCP => 16,
            next_header::UDP => 6,
            _ => 2,
        };
        let s = crate::wire::checksum::pseudo_header_sum_v6(a(src), a(dst), next, l4.len() as u32);
        let c = !crate::wire::checksum::fold(crate::wire::checksum::sum(&p[40..], s));
        p[40 + off..42 + off].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let mut l4 = vec![0u8; 12];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[4..6].copy_from_slice(&12u16.to_be_bytes());
        l4[8..].copy_from_slice(b"data");
        packet(next_header::UDP, src, dst, &l4)
    }

    fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
        l4[12] = 0x50;
        l4[13] = flags;
        l4[14..16].copy_from_slice(&14600u16.to_be_bytes());
        packet(next_header::TCP, src, dst, &l4)
    }

    fn echo(t: u8, src: &str, dst: &str, id: u16) -> Vec<u8> {
        let l4 = [
            t,
            0,
            0,
            0,
            (id >> 8) as u8,
            id as u8,
            0,
            1,
            b'p',
            b'i',
            b'n',
            b'g',
        ];
        packet(next_header::ICMPV6, src, dst, &l4)
    }

    /// Forwards `p` from `side`; returns it rewritten, checked valid (checksum included).
    fn fwd(nat: &mut Nat<Ipv6Addr>, side: Side, mut p: Vec<u8>) -> Vec<u8> {
        match nat.process(side, &mut p, Instant::ZERO) {
            Verdict::Forward { len } => {
                p.truncate(len);
                let v = Ipv6::new_checked(&p[..]).unwrap();
                let pr = protocol(v.protocol()).unwrap();
                Transport::new_checked_v6(pr, v.payload(), v.src(), v.dst()).unwrap();
                let s = crate::wire::checksum::pseudo_header_sum_v6(
                    v.src(),
                    v.dst(),
                    v.protocol(),
                    v.payload().len() as u32,
                );
                assert_eq!(
                    crate::wire::checksum::fold(crate::wire::checksum::sum(v.payload(), s)),
                    0xffff,
                    "transport checksum"
                );
                p
            }
            v => panic!("not forwarded: {v:?}"),
        }
    }

    fn ends(p: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16, u8) {
        let v = Ipv6::new_checked(p).unwrap();
        let l4 = v.payload();
        let w = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
        let (sp, dp) = if v.protocol() == next_header::ICMPV6 {
            (w(4), w(4))
        } else {
            (w(0), w(2))
        };
        (v.src(), sp, v.dst(), dp, v.hop_limit())
    }

    #[test]
    fn udp_out_and_back_through_one_mapping() {
        let mut n = nat6();
        let out = fwd(&mut n, Side::Inside, udp(CLIENT, 40000, REMOTE, 53));
        assert_eq!(ends(&out), (a(OUT), 40000, a(REMOTE), 53, 63));
        let back = fwd(&mut n, Side::Outside, udp(REMOTE, 53, OUT, 40000));
        assert_eq!(ends(&back), (a(REMOTE), 53, a(CLIENT), 40000, 63));
        // Address-dependent filtering: another remote is refused.
        let mut other = udp("2001:db8:1::2", 53, OUT, 40000);
        assert_eq!(
            n.process(Side::Outside, &mut other, Instant::ZERO),
            Verdict::Drop(DropReason::Filtered)
        );
        assert_eq!(n.table().len(), 1);
    }

    /// NAT66's hot path, as NAT44's (`router::test`): once the mapping exists, a
    /// datagram and a ping each way are rewritten in place and nothing is allocated.
    #[test]
    fn an_established_mapping_forwards_without_allocating() {
        let mut n = nat6();
        fwd(&mut n, Side::Inside, udp(CLIENT, 40000, REMOTE, 53));
        fwd(&mut n, Side::Outside, udp(REMOTE, 53, OUT, 40000));
        let ping = fwd(&mut n, Side::Inside, echo(128, CLIENT, REMOTE, 7));
        let id = ends(&ping).1;
        fwd(&mut n, Side::Outside, echo(129, REMOTE, OUT, id));
        let mut packets = [
            (Side::Inside, udp(CLIENT, 40000, REMOTE, 53)),
            (Side::Outside, udp(REMOTE, 53, OUT, 40000)),
            (Side::Inside, echo(128, CLIENT, REMOTE, 7)),
            (Side::Outside, echo(129, REMOTE, OUT, id)),
        ];
        let before = crate::testalloc::allocations();
        let verdicts = packets
            .each_mut()
            .map(|(side, p)| n.process(*side, p, Instant::ZERO));
        assert_eq!(crate::testalloc::allocations(), before, "nothing allocated");
        for v in verdicts {
            assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        }
    }

    #[test]
    fn a_port_forward_and_its_replies() {
        let mut n = nat6();
        let syn = fwd(
            &mut n,
            Side::Outside,
            tcp(REMOTE, 43000, OUT, 8888, TcpFlags::SYN),
        );
        assert_eq!(ends(&syn), (a(REMOTE), 43000, a(SERVER), 9999, 63));
        let synack = fwd(
            &mut n,
            Side::Inside,
            tcp(SERVER, 9999, REMOTE, 43000, TcpFlags::SYN | TcpFlags::ACK),
        );
        assert_eq!(ends(&synack), (a(OUT), 8888, a(REMOTE), 43000, 63));
    }

    #[test]
    fn a_port_forward_behind_syn_cookies() {
        use crate::nat::syn_proxy::segment;
        let mut n = nat6();
        let mut cfg = n.config().clone();
        cfg.syn_cookies = crate::nat::SynCookies::Always;
        n.reconfigure(cfg);
        let ep = |s: &str, port| Endpoint::new(a(s), port);
        let sent =
            |n: &mut Nat<Ipv6Addr>| std::iter::from_fn(|| n.poll_transmit()).collect::<Vec<_>>();
        let (client, ours, server) = (ep(REMOTE, 43000), ep(OUT, 8888), ep(SERVER, 9999));
        let mut syn = segment(client, ours, 1000, 0, TcpFlags::SYN, 65535, Some(1440));
        let v = n.process(Side::Outside, &mut syn, Instant::ZERO);
        assert_eq!(v, Verdict::Drop(DropReason::SynProxied));
        let synack = sent(&mut n).remove(0);
        assert_eq!(synack.port, Side::Outside);
        assert_eq!(ends(&synack.packet), (a(OUT), 8888, a(REMOTE), 43000, 64));
        let cookie = u32::from_be_bytes(synack.packet[44..48].try_into().unwrap());
        let mut ack = segment(
            client,
            ours,
            1001,
            cookie.wrapping_add(1),
            TcpFlags::ACK,
            500,
            None,
        );
        n.process(Side::Outside, &mut ack, Instant::ZERO);
        let open = sent(&mut n).remove(0);
        assert_eq!(
            (open.port, ends(&open.packet)),
            (Side::Inside, (a(REMOTE), 43000, a(SERVER), 9999, 64))
        );
        let flags = TcpFlags::SYN | TcpFlags::ACK;
        let mut synack = segment(server, client, 77, 1001, flags, 1000, Some(1440));
        n.process(Side::Inside, &mut synack, Instant::ZERO);
        assert_eq!(
            sent(&mut n).len(),
            2,
            "the ACK to the server, the window to the client"
        );
        // The server's first byte leaves numbered as the cookie promised.
        let data = fwd(
            &mut n,
            Side::Inside,
            segment(server, client, 78, 1001, TcpFlags::ACK, 1000, None),
        );
        assert_eq!(ends(&data), (a(OUT), 8888, a(REMOTE), 43000, 63));
        assert_eq!(
            u32::from_be_bytes(data[44..48].try_into().unwrap()),
            cookie.wrapping_add(1)
        );
        // A router further out says the segment is too big: the error reaches the server
        // quoting the sequence number the server sent, or the server would ignore it.
        let mut err = Vec::new();
        let q = Ipv6::new_checked(&data[..]).unwrap();
        icmpv6::build_error(&mut err, a(REMOTE), kind::PACKET_TOO_BIG, 0, 1280, &q);
        let back = fwd(&mut n, Side::Outside, err);
        let e = Ipv6::new_checked(&back[..]).unwrap();
        assert_eq!(e.dst(), a(SERVER));
        let inner = Ipv6::new_quoted(&e.payload()[8..]).unwrap();
        assert_eq!(inner.src(), a(SERVER));
        assert_eq!(
            u32::from_be_bytes(inner.payload()[4..8].try_into().unwrap()),
            78
        );
    }

    /// A UDP datagram of `data` bytes from `src`, cut into fragments of at most `per`
    /// payload bytes (a multiple of 8), each with a fragment header (identification 7).
    fn fragments(
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        data: usize,
        per: usize,
    ) -> Vec<Vec<u8>> {
        let mut whole = udp(src, sport, dst, dport);
        let body = vec![0x5au8; data];
        let l = (8 + data) as u16;
        whole.truncate(48);
        whole[44..46].copy_from_slice(&l.to_be_bytes());
        whole[46..48].copy_from_slice(&[0, 0]);
        whole.extend_from_slice(&body);
        let s = crate::wire::checksum::pseudo_header_sum_v6(a(src), a(dst), 17, u32::from(l));
        let c = !crate::wire::checksum::fold(crate::wire::checksum::sum(&whole[40..], s));
        whole[46..48].copy_from_slice(&c.to_be_bytes());
        let payload = &whole[40..];
        payload
            .chunks(per)
            .enumerate()
            .map(|(i, chunk)| {
                let off = (i * per) as u16;
                let more = (i + 1) * per < payload.len();
                let mut fh = vec![17, 0, 0, 0, 0, 0, 0, 7];
                fh[2..4].copy_from_slice(&(off | u16::from(more)).to_be_bytes());
                fh.extend_from_slice(chunk);
                let mut p = vec![0u8; 40 + fh.len()];
                emit_header(
                    &mut p,
                    fh.len() as u16,
                    next_header::FRAGMENT,
                    64,
                    a(src),
                    a(dst),
                );
                p[40..].copy_from_slice(&fh);
                p
            })
            .collect()
    }

    #[test]
    fn fragments_follow_their_first_in_any_order() {
        let mut n = nat6();
        let frags = fragments(CLIENT, 40000, REMOTE, 53, 3000, 1232);
        assert_eq!(frags.len(), 3);
        // The last comes first and waits; then the first; then the middle.
        let mut last = frags[2].clone();
        assert_eq!(
            n.process(Side::Inside, &mut last, Instant::ZERO),
            Verdict::Held
        );
        let mut first = frags[0].clone();
        let Verdict::Forward { len } = n.process(Side::Inside, &mut first, Instant::ZERO) else {
            panic!()
        };
        first.truncate(len);
        let released = n.poll_transmit().expect("the held fragment follows").packet;
        let mut middle = frags[1].clone();
        let Verdict::Forward { len } = n.process(Side::Inside, &mut middle, Instant::ZERO) else {
            panic!()
        };
        middle.truncate(len);
        for f in [&first, &middle, &released] {
            let v = Ipv6::new_checked(&f[..]).unwrap();
            assert_eq!((v.src(), v.hop_limit()), (a(OUT), 63));
        }
        // Put together at the receiver, the datagram's checksum verifies.
        let mut payload = Vec::new();
        for f in [&first, &middle, &released] {
            payload.extend_from_slice(&f[48..]);
        }
        let s = crate::wire::checksum::pseudo_header_sum_v6(
            a(OUT),
            a(REMOTE),
            17,
            payload.len() as u32,
        );
        assert_eq!(
            crate::wire::checksum::fold(crate::wire::checksum::sum(&payload, s)),
            0xffff
        );
        assert_eq!(&payload[0..2], &40000u16.to_be_bytes());
        // An overlapping fragment is dropped.
        let mut again = frags[1].clone();
        assert_eq!(
            n.process(Side::Inside, &mut again, Instant::ZERO),
            Verdict::Drop(DropReason::BadFragment)
        );
    }

    #[test]
    fn npt_is_checksum_neutral_and_reverses() {
        let inside: Cidr<Ipv6Addr> = "fd01:203:405::/48".parse().unwrap();
        let outside: Cidr<Ipv6Addr> = "2001:db8:1::/48".parse().unwrap();
        let host = a("fd01:203:405:1::1234");
        let out = npt(host, inside, outside).unwrap();
        assert!(outside.contains(out));
        let sum = |x: Ipv6Addr| x.segments().iter().fold(0u16, |s, w| ones_add(s, *w));
        assert_eq!(sum(out), sum(host), "checksum-neutral");
        assert_eq!(npt(out, outside, inside), Some(host), "and back");
        // /64: the adjustment goes into the interface identifier.
        let i64: Cidr<Ipv6Addr> = "fd00:122::/64".parse().unwrap();
        let o64: Cidr<Ipv6Addr> = "2001:db8:1::/64".parse().unwrap();
        let h = a("fd00:122::101");
        let o = npt(h, i64, o64).unwrap();
        assert_eq!(o.segments()[..4], a("2001:db8:1::").segments()[..4]);
        assert_eq!(sum(o), sum(h));
        assert_eq!(npt(o, o64, i64), Some(h));
        assert_eq!(
            npt(a("fd00:122::ffff:ffff:ffff:ffff"), i64, o64),
            None,
            "no word to adjust"
        );
    }

    #[test]
    fn npt_and_route_modes_forward_without_state() {
        let mut n = nat6();
        n.cfg.mode = Mode::Npt;
        n.cfg.dnat.clear();
        let out = fwd(&mut n, Side::Inside, udp(CLIENT, 40000, REMOTE, 53));
        let (src, sport, ..) = ends(&out);
        assert!(
            n.cfg.outside.contains(src) && src != a(CLIENT) && sport == 40000,
            "{src}"
        );
        let back = fwd(
            &mut n,
            Side::Outside,
            udp(REMOTE, 53, &src.to_string(), 40000),
        );
        assert_eq!(ends(&back).2, a(CLIENT));
        assert_eq!(n.table().len(), 0, "no state");
        let mut r = nat6();
        r.cfg.mode = Mode::Route;
        let out = fwd(&mut r, Side::Inside, udp(CLIENT, 40000, REMOTE, 53));
        assert_eq!(ends(&out), (a(CLIENT), 40000, a(REMOTE), 53, 63));
        let back = fwd(&mut r, Side::Outside, udp(REMOTE, 53, CLIENT, 40000));
        assert_eq!(ends(&back).2, a(CLIENT));
    }

    #[test]
    fn hairpinning_to_the_port_forward_and_mss_clamping() {
        let mut n = nat6();
        let mut syn = tcp(CLIENT, 41000, OUT, 8888, TcpFlags::SYN);
        let v = n.process(Side::Inside, &mut syn, Instant::ZERO);
        let Verdict::Hairpin { len } = v else {
            panic!("{v:?}")
        };
        syn.truncate(len);
        // The server sees the outside address and the client's external port.
        assert_eq!(ends(&syn), (a(OUT), 41000, a(SERVER), 9999, 63));
        assert_eq!(n.stats().hairpinned, 1);
        // Clamping: a SYN with MSS 1440 leaves with the outside MTU's 1500 - 60.
        let mut m = nat6();
        m.cfg.clamp_mss = Some(MssClamp::Mtu);
        let mut l4 = vec![0u8; 24];
        l4[0..2].copy_from_slice(&42000u16.to_be_bytes());
        l4[2..4].copy_from_slice(&80u16.to_be_bytes());
        l4[12] = 0x60;
        l4[13] = TcpFlags::SYN;
        l4[20..24].copy_from_slice(&[2, 4, 0x05, 0xdc]); // MSS 1500
        let out = fwd(
            &mut m,
            Side::Inside,
            packet(next_header::TCP, CLIENT, REMOTE, &l4),
        );
        assert_eq!(&out[40 + 22..40 + 24], &1440u16.to_be_bytes());
    }

    #[test]
    fn echo_identifiers_are_mapped() {
        let mut n = nat6();
        let out = fwd(
            &mut n,
            Side::Inside,
            echo(kind::ECHO_REQUEST, CLIENT, REMOTE, 77),
        );
        assert_eq!(ends(&out).0, a(OUT));
        let back = fwd(
            &mut n,
            Side::Outside,
            echo(kind::ECHO_REPLY, REMOTE, OUT, ends(&out).1),
        );
        assert_eq!(ends(&back), (a(REMOTE), 77, a(CLIENT), 77, 63));
        // An echo request to the router's address is the router's.
        let mut ping = echo(kind::ECHO_REQUEST, REMOTE, OUT, 5);
        assert!(matches!(
            n.process(Side::Outside, &mut ping, Instant::ZERO),
            Verdict::Local { .. }
        ));
    }

    #[test]
    fn hop_limit_and_size_are_answered_from_the_router() {
        let mut n = nat6();
        let mut last_hop = udp(CLIENT, 40000, REMOTE, 33434);
        last_hop[7] = 1;
        let v = n.process(Side::Inside, &mut last_hop, Instant::ZERO);
        assert_eq!(v, Verdict::Reply(DropReason::TtlExceeded));
        let Some(Transmit { port, packet, .. }) = n.poll_transmit() else {
            panic!()
        };
        let e = Ipv6::new_checked(&packet[..]).unwrap();
        assert_eq!(
            (port, e.src(), e.dst()),
            (Side::Inside, a("fd00:122::100"), a(CLIENT))
        );
        assert_eq!(e.payload()[0], kind::TIME_EXCEEDED);
        // Too big for the outside port: "packet too big" with its MTU, never fragments.
        let mut big = udp(CLIENT, 40000, REMOTE, 9);
        big.resize(1600, 0);
        big[4..6].copy_from_slice(&1560u16.to_be_bytes());
        big[44..46].copy_from_slice(&1560u16.to_be_bytes());
        let v = n.process(Side::Inside, &mut big, Instant::ZERO);
        assert_eq!(v, Verdict::Reply(DropReason::TooBig));
        let Some(Transmit { packet, .. }) = n.poll_transmit() else {
            panic!()
        };
        let e = Ipv6::new_checked(&packet[..]).unwrap();
        assert_eq!(e.payload()[0], kind::PACKET_TOO_BIG);
        assert_eq!(&e.payload()[4..8], &1500u32.to_be_bytes());
        assert!(packet.len() <= icmpv6::MIN_MTU);
    }

    #[test]
    fn link_local_traffic_and_bad_udp_are_never_forwarded() {
        let mut n = nat6();
        let mut rs = echo(kind::ROUTER_SOLICITATION, "fe80::1", "ff02::2", 0);
        assert_eq!(
            n.process(Side::Inside, &mut rs, Instant::ZERO),
            Verdict::Drop(DropReason::LinkLocal)
        );
        let mut zero = udp(CLIENT, 40000, REMOTE, 53);
        zero[46] = 0;
        zero[47] = 0;
        assert_eq!(
            n.process(Side::Inside, &mut zero, Instant::ZERO),
            Verdict::Drop(DropReason::UdpZeroChecksum)
        );
        let mut spoofed = udp("fd00:999::1", 40000, REMOTE, 53);
        assert_eq!(
            n.process(Side::Inside, &mut spoofed, Instant::ZERO),
            Verdict::Drop(DropReason::SpoofedSource)
        );
        assert_eq!(n.stats().drops(DropReason::LinkLocal), 1);
    }

    #[test]
    fn an_error_from_outside_reaches_the_inside_host_with_its_quote_rewritten() {
        let mut n = nat6();
        let out = fwd(&mut n, Side::Inside, udp(CLIENT, 40000, REMOTE, 33434));
        // The remote's port unreachable quotes the translated datagram.
        let mut err = Vec::new();
        let q = Ipv6::new_checked(&out[..]).unwrap();
        icmpv6::build_error(
            &mut err,
            a(REMOTE),
            kind::DEST_UNREACHABLE,
            unreachable::PORT,
            0,
            &q,
        );
        let back = fwd(&mut n, Side::Outside, err);
        let e = Ipv6::new_checked(&back[..]).unwrap();
        assert_eq!((e.src(), e.dst()), (a(REMOTE), a(CLIENT)));
        let inner = Ipv6::new_quoted(&e.payload()[8..]).unwrap();
        assert_eq!(
            (inner.src(), &inner.payload()[0..2]),
            (a(CLIENT), &40000u16.to_be_bytes()[..])
        );
        assert_eq!(n.stats().icmp_errors_translated, 1);
    }
}
