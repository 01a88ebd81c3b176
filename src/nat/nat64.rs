//! Stateful NAT64 (RFC 6146): IPv6-only inside hosts reach IPv4 hosts at `prefix +
//! IPv4 address` (RFC 6052, [`super::prefix64`]), leaving from the outside IPv4 address.
//!
//! The design is Tayga's dynamic pool and the kernel's NAT44, in one process and one
//! table: each inside IPv6 host that talks through the prefix is bound to a stand-in IPv4
//! address from 0.0.0.0/8 (an address never valid on a wire, so never confused with a
//! real host); the packet is translated statelessly (RFC 7915, [`super::xlat`]) with that
//! stand-in as its source, and the IPv4 core then does NAPT, filtering, hairpinning, port
//! forwards, timeouts and ICMP errors exactly as for an IPv4 inside host. Its sessions
//! sit in the IPv4 table beside NAT44's, sharing the outside address's ports. A packet
//! the IPv4 core sends to a stand-in is translated back to IPv6.
//!
//! So the BIB of RFC 6146 section 3.5 is the composition of a binding (IPv6 host to
//! stand-in) and the IPv4 core's endpoint-independent mappings; filtering is the IPv4
//! core's (`--filtering`), and so are the timeouts (UDP 300 s, TCP 7440 s and 240 s,
//! ICMP 60 s by default, RFC 6146 section 4).
//!
//! A binding lasts while its host has a mapping in the IPv4 table; it is swept a minute
//! after the last one goes. Stand-ins are handed out in turn through the 16 million
//! addresses, so one is not reused soon after it was released. A static port forward to
//! an IPv6 host (`--dnat tcp:8888=[fd00:122::73]:9999`) binds its target for good.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::time::Duration;

use super::prefix64::{self, Prefix64};
use super::reassembly::{Fragment, Reassembler};
use super::xlat::{self, Ctx, Ident};
use super::{DropReason, HashMap, Instant, Ipv6Cidr};
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::offload::Offload;

/// How long a binding stays after its host's last mapping is gone.
pub const BINDING_GRACE: Duration = Duration::from_secs(60);

/// Is `a` a stand-in address (0.0.0.0/8, less 0.0.0.0)?
pub fn is_stand_in(a: Ipv4Addr) -> bool {
    a.octets()[0] == 0 && !a.is_unspecified()
}

/// Is `p` an IPv4 packet for a stand-in (to be translated to IPv6 before it is written)?
pub fn is_for_stand_in(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b >> 4 == 4)
        && p.get(16..20)
            .is_some_and(|d| is_stand_in(Ipv4Addr::new(d[0], d[1], d[2], d[3])))
}

/// What NAT64 is configured with.
#[derive(Debug, Clone)]
pub struct Nat64Config {
    pub prefix: Prefix64,
    /// The router's inside IPv6 address and network.
    pub inside6: Ipv6Cidr,
    /// The router's inside IPv4 address (0.0.0.0 on an IPv6-only inside): an ICMP error
    /// the IPv4 core sends from it comes from `inside6` once translated.
    pub inside4: Ipv4Addr,
    /// The MTUs of the inside and outside ports.
    pub mtu: [usize; 2],
    /// Compute the checksum of an IPv4 UDP datagram that has none, or drop it.
    pub udp_zero_compute: bool,
    /// Most bindings (one per IPv6 host).
    pub max_bindings: usize,
    /// IPv6 hosts that are static port forward targets: bound for good.
    pub static_hosts: Vec<Ipv6Addr>,
}

/// One IPv6 host's stand-in.
#[derive(Debug, Clone, Copy)]
struct Binding {
    host: Ipv6Addr,
    /// When its last packet was translated.
    last: Instant,
    fixed: bool,
}

/// NAT64 counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Nat64Stats {
    /// Packets translated from IPv6 to IPv4, and from IPv4 to IPv6.
    pub translated_6to4: u64,
    pub translated_4to6: u64,
    /// Of those to IPv6, the ones copied into a new packet rather than translated in the
    /// buffer they came in: the router's own packets, ICMP errors, fragments.
    #[serde(default)]
    pub copied_4to6: u64,
    /// IPv6 packets cut into fragments on the way in (RFC 7915 section 4.1).
    pub fragmented: u64,
    pub bindings: u64,
    pub bindings_created: u64,
    pub bindings_released: u64,
}

/// What became of an IPv6 packet sent to the prefix.
#[derive(Debug)]
pub enum Outbound {
    /// Translated: the IPv4 packet lies in this range of the buffer.
    Translated(std::ops::Range<usize>),
    /// The last fragment of a ping that came in fragments: the whole datagram,
    /// translated.
    Reassembled(Vec<u8>),
    /// A fragment of a ping, held until the rest come.
    Held,
    /// Refused with this ICMPv6 error (type, code, the 32-bit field), for the router to
    /// send from its inside address.
    Refused(u8, u8, u32, DropReason),
    /// Dropped.
    Dropped(DropReason),
}

/// The NAT64 state: bindings, and the identification counter.
pub struct Nat64 {
    cfg: Nat64Config,
    by_host: HashMap<Ipv6Addr, u32>,
    by_stand_in: HashMap<u32, Binding>,
    /// The next stand-in to try.
    cursor: u32,
    ident: Ident,
    /// Pings that came in fragments, reassembled (as IPv4) to finish their checksum.
    reasm: Reassembler,
    next_sweep: Option<Instant>,
    /// The time of the last packet or sweep.
    clock: Instant,
    stats: Nat64Stats,
    /// Packets not translated, by reason.
    drops: HashMap<DropReason, u64>,
}

const FIRST: u32 = 1;
const LAST: u32 = 0x00ff_ffff;

impl Nat64 {
    pub fn new(cfg: Nat64Config) -> Nat64 {
        let mut n = Nat64 {
            cfg,
            by_host: HashMap::default(),
            by_stand_in: HashMap::default(),
            cursor: FIRST,
            ident: Ident::default(),
            reasm: Reassembler::default(),
            next_sweep: None,
            clock: Instant::ZERO,
            stats: Nat64Stats::default(),
            drops: HashMap::default(),
        };
        for h in n.cfg.static_hosts.clone() {
            n.bind(h, Instant::ZERO, true);
        }
        n
    }

    pub fn config(&self) -> &Nat64Config {
        &self.cfg
    }

    /// New static targets (a reload, `tunnat dnat add`): bound for good; a former one
    /// becomes an ordinary binding.
    pub fn set_static_hosts(&mut self, hosts: Vec<Ipv6Addr>) {
        let now = self.clock;
        for b in self.by_stand_in.values_mut() {
            b.fixed = false;
            b.last = b.last.max(now);
        }
        for h in &hosts {
            self.bind(*h, now, true);
        }
        self.cfg.static_hosts = hosts;
        self.schedule_sweep(now);
    }

    pub fn stats(&self) -> Nat64Stats {
        Nat64Stats {
            bindings: self.by_stand_in.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Drop counts by reason.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.drops.iter().map(|(r, n)| (*r, *n))
    }

    fn drop(&mut self, r: DropReason) -> DropReason {
        *self.drops.entry(r).or_insert(0) += 1;
        r
    }

    /// Counts a packet refused or dropped on the way (by the caller).
    pub fn count_drop(&mut self, r: DropReason) {
        self.drop(r);
    }

    /// Is `a` in the prefix (a packet to it is for NAT64)?
    pub fn is_for(&self, a: Ipv6Addr) -> bool {
        self.cfg.prefix.contains(a)
    }

    /// The IPv6 host standing behind stand-in `a`.
    pub fn host_of(&self, a: Ipv4Addr) -> Option<Ipv6Addr> {
        self.by_stand_in.get(&u32::from(a)).map(|b| b.host)
    }

    /// The stand-in of IPv6 host `h`, if bound.
    pub fn stand_in_of(&self, h: Ipv6Addr) -> Option<Ipv4Addr> {
        self.by_host.get(&h).map(|i| Ipv4Addr::from(*i))
    }

    /// Binds `host` for a session coming back from the state file.
    pub fn bind_restored(&mut self, host: Ipv6Addr, now: Instant) -> Option<Ipv4Addr> {
        self.clock = self.clock.max(now);
        self.bind(host, now, false)
    }

    /// Binds `host` (or refreshes its binding); `None` when every stand-in is taken.
    fn bind(&mut self, host: Ipv6Addr, now: Instant, fixed: bool) -> Option<Ipv4Addr> {
        if let Some(i) = self.by_host.get(&host) {
            let b = self.by_stand_in.get_mut(i)?;
            b.last = b.last.max(now);
            b.fixed |= fixed;
            return Some(Ipv4Addr::from(*i));
        }
        if !fixed && self.by_stand_in.len() >= self.cfg.max_bindings {
            return None;
        }
        // Round-robin through 16 M addresses: at most a full turn, and in practice the
        // first one tried is free.
        for _ in FIRST..=LAST {
            let i = self.cursor;
            self.cursor = if self.cursor >= LAST {
                FIRST
            } else {
                self.cursor + 1
            };
            if self.by_stand_in.contains_key(&i) {
                continue;
            }
            self.by_stand_in.insert(
                i,
                Binding {
                    host,
                    last: now,
                    fixed,
                },
            );
            self.by_host.insert(host, i);
            self.stats.bindings_created += 1;
            self.schedule_sweep(now);
            return Some(Ipv4Addr::from(i));
        }
        None
    }

    fn schedule_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none() && self.by_stand_in.values().any(|b| !b.fixed) {
            self.next_sweep = Some(now + BINDING_GRACE);
        }
    }

    /// When [`Nat64::sweep`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_sweep, self.reasm.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Releases the bindings idle for [`BINDING_GRACE`] whose host has no mapping left
    /// in the IPv4 table (`has_mappings` says).
    pub fn sweep(&mut self, now: Instant, has_mappings: impl Fn(Ipv4Addr) -> bool) {
        self.clock = self.clock.max(now);
        self.reasm.expire(now);
        if self.next_sweep.is_none_or(|t| t > now) {
            return;
        }
        self.next_sweep = None;
        let before = self.by_stand_in.len();
        let by_host = &mut self.by_host;
        self.by_stand_in.retain(|i, b| {
            let keep = b.fixed || now < b.last + BINDING_GRACE || has_mappings(Ipv4Addr::from(*i));
            if !keep {
                by_host.remove(&b.host);
            }
            keep
        });
        self.stats.bindings_released += (before - self.by_stand_in.len()) as u64;
        self.schedule_sweep(now);
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            mtu: self.cfg.mtu,
            udp_zero_compute: self.cfg.udp_zero_compute,
        }
    }

    /// Translates an IPv6 packet from inside to an address in the prefix into IPv4, in
    /// place (RFC 7915 section 5), binding its source to a stand-in. The router's
    /// forwarding checks come first: hop limit (ICMPv6 time exceeded), a routing header
    /// with segments left (parameter problem), and a destination the prefix may not
    /// stand for (unreachable, RFC 6052 section 3.1).
    pub fn outbound(&mut self, buf: &mut [u8], off: &mut Offload, now: Instant) -> Outbound {
        self.clock = self.clock.max(now);
        let ip = match crate::wire::ipv6::Ipv6::new_checked(&buf[..]) {
            Ok(ip) => ip,
            Err(e) => return Outbound::Dropped(self.drop(e.into())),
        };
        if !self.cfg.inside6.contains(ip.src()) || ip.src() == self.cfg.inside6.addr {
            return Outbound::Dropped(self.drop(DropReason::SpoofedSource));
        }
        if ip.hop_limit() <= 1 {
            self.drop(DropReason::TtlExceeded);
            return Outbound::Refused(3, 0, 0, DropReason::TtlExceeded);
        }
        if let Some(at) = segments_left_at(buf, ip.l4_offset()) {
            self.drop(DropReason::BadExtensionHeader);
            return Outbound::Refused(4, 0, at as u32, DropReason::BadExtensionHeader);
        }
        let Some(v4) = self.cfg.prefix.extract(ip.dst()) else {
            return Outbound::Dropped(self.drop(DropReason::NotRouted));
        };
        let non_global = self.cfg.prefix.is_well_known() && !prefix64::is_global(v4);
        if non_global || !prefix64::is_translatable(v4) {
            self.drop(DropReason::NonGlobal);
            return Outbound::Refused(1, 0, 0, DropReason::NonGlobal);
        }
        let src = ip.src();
        if self.bind(src, now, false).is_none() {
            self.drop(DropReason::TableFull);
            return Outbound::Refused(1, 1, 0, DropReason::TableFull);
        }
        let ctx = self.ctx();
        let (prefix, by_host) = (self.cfg.prefix, &self.by_host);
        let mut map = |a: Ipv6Addr| {
            prefix
                .extract(a)
                .or_else(|| by_host.get(&a).map(|i| Ipv4Addr::from(*i)))
        };
        let r = match xlat::to_v4(buf, off, &ctx, &mut self.ident, &mut map) {
            Ok(r) => r,
            Err(e) => return Outbound::Dropped(self.drop(e)),
        };
        self.stats.translated_6to4 += 1;
        let Ok(ip) = Ipv4::new_checked(&mut buf[r.clone()], Check::Full) else {
            return Outbound::Translated(r);
        };
        if ip.protocol() != 1 || !ip.is_fragment() {
            return Outbound::Translated(r);
        }
        match self.reasm.add(&ip, now) {
            Ok(Fragment::Held) => Outbound::Held,
            Ok(Fragment::Complete(mut d)) => {
                xlat::finish_echo_fragments(&mut d);
                Outbound::Reassembled(d)
            }
            Err(e) => Outbound::Dropped(self.drop(e)),
        }
    }

    /// Translates an IPv4 packet the IPv4 core sends to a stand-in into IPv6 (RFC 7915
    /// section 4), pushing the packet or its fragments to `out`.
    pub fn inbound(
        &mut self,
        pkt: &[u8],
        off: Offload,
        now: Instant,
        out: &mut Vec<(Vec<u8>, Offload)>,
    ) -> Result<(), DropReason> {
        let before = out.len();
        self.translate_4to6(pkt.get(16..20), now, |ctx, map| {
            xlat::to_v6(pkt, off, ctx, map, out)
        })?;
        self.stats.translated_4to6 += 1;
        self.stats.copied_4to6 += 1;
        if out.len() > before + 1 {
            self.stats.fragmented += 1;
        }
        Ok(())
    }

    /// [`Nat64::inbound`] for the packet at `buf[at..]`, translated in the same buffer:
    /// its IPv6 header goes over the IPv4 one and into the room before it. Returns the
    /// IPv6 packet's place in `buf`, or `Ok(None)` with nothing written when the packet
    /// must be copied instead (`inbound`): too little room, an ICMP error, fragments.
    pub fn inbound_in_place(
        &mut self,
        buf: &mut [u8],
        at: usize,
        off: &mut Offload,
        now: Instant,
    ) -> Result<Option<Range<usize>>, DropReason> {
        let dst = buf.get(at + 16..at + 20).map(|d| [d[0], d[1], d[2], d[3]]);
        let r = self.translate_4to6(dst.as_ref().map(|d| &d[..]), now, |ctx, map| {
            xlat::to_v6_in_place(buf, at, off, ctx, map)
        })?;
        if r.is_some() {
            self.stats.translated_4to6 += 1;
        }
        Ok(r)
    }

    /// Runs `translate` with the addresses' mapping to IPv6 for a packet to stand-in
    /// `dst` (its 4 bytes), counting a refusal: the binding must exist, and is used now.
    fn translate_4to6<R>(
        &mut self,
        dst: Option<&[u8]>,
        now: Instant,
        translate: impl FnOnce(
            &Ctx,
            &mut dyn FnMut(Ipv4Addr) -> Option<Ipv6Addr>,
        ) -> Result<R, DropReason>,
    ) -> Result<R, DropReason> {
        self.clock = self.clock.max(now);
        let dst = dst
            .and_then(|d| <[u8; 4]>::try_from(d).ok())
            .map(u32::from_be_bytes)
            .ok_or(DropReason::Truncated)?;
        let Some(b) = self.by_stand_in.get_mut(&dst) else {
            return Err(self.drop(DropReason::NoBinding));
        };
        b.last = b.last.max(now);
        let ctx = self.ctx();
        let (prefix, inside4, inside6) = (self.cfg.prefix, self.cfg.inside4, self.cfg.inside6.addr);
        let by_stand_in = &self.by_stand_in;
        let well_known = prefix.is_well_known();
        let mut map = |a: Ipv4Addr| {
            if is_stand_in(a) {
                by_stand_in.get(&u32::from(a)).map(|b| b.host)
            } else if a == inside4 {
                Some(inside6)
            } else if well_known && !prefix64::is_global(a) {
                None
            } else {
                Some(prefix.embed(a))
            }
        };
        match translate(&ctx, &mut map) {
            Ok(r) => Ok(r),
            Err(e) => Err(self.drop(e)),
        }
    }
}

/// Where the Segments Left field of a routing header sits, if the packet has one with
/// segments left (RFC 7915 section 5.1: not translated, parameter problem).
fn segments_left_at(buf: &[u8], l4: usize) -> Option<usize> {
    let mut next = buf[6];
    let mut at = 40;
    while at + 8 <= l4 {
        let (n, len) = match next {
            0 | 43 | 60 => (buf[at], (usize::from(buf[at + 1]) + 1) * 8),
            44 => (buf[at], 8),
            _ => return None,
        };
        if next == 43 && buf[at + 3] != 0 {
            return Some(at + 3);
        }
        next = n;
        at += len;
    }
    None
}

#[cfg(test)]
mod test;
