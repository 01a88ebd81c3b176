//! The router core, without I/O, in the manner of quinn-proto's `Endpoint` and smoltcp's
//! `Interface`: the driver hands it each packet read from a port ([`Router::handle`]) and
//! each control request ([`Router::handle_control`]), and asks it what to write
//! ([`Router::poll_transmit`]) and when to call again ([`Router::poll_timeout`],
//! [`Router::handle_timeout`]). Time is a value passed in; nothing here touches a file
//! descriptor or a clock, so every behaviour runs in unit tests with in-memory ports.
//!
//! It owns the NAT core ([`crate::nat`]), the router's own stack on each port
//! ([`super::local`]: ping, RST, port unreachable, the policy server behind the 843 gate)
//! and the counters ([`super::Counters`]).

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::rc::Rc;

use crate::nat::{Ipv4Cidr, Ipv6Cidr, Prefetch};

use anyhow::{anyhow, Result};
use smoltcp::time::Instant as SmolInstant;

use super::counters::{
    ControlCounters, Counters, IoCounters, Nat64Counters, NatCounters, PolicyCounters,
};
use super::local::{LocalConfig, LocalStack, NoServices};
use super::portctl::{PortControl, Svc};
use super::state::RouterState;
use crate::config::Config;
use crate::control::proto::{Message, Request, Response, Row, Rules, Sessions};
use crate::nat::nat64::{self, Nat64, Outbound};
use crate::nat::{
    Address, AnyDnat, DropReason, Endpoint, Instant, Nat, NatConfig, Session, SessionKey, Side,
    Transmit, Verdict,
};
use crate::wire::offload::{Offload, Unsupported};
use crate::wire::transport::{icmp_type, Protocol};

/// The two ports, in the order the core indexes them.
pub const SIDES: [Side; 2] = [Side::Inside, Side::Outside];

fn smol(t: Instant) -> SmolInstant {
    SmolInstant::from_millis(t.millis() as i64)
}

/// Is `p` an ICMP (IPv4) or ICMPv6 error message? (The local stack sends no extension
/// headers.)
fn is_icmp_error(p: &[u8]) -> bool {
    if p.first().is_some_and(|b| b >> 4 == 6) {
        return p.get(6) == Some(&58) && p.get(40).is_some_and(|t| *t < 128);
    }
    let ihl = usize::from(p.first().map_or(0, |b| b & 0x0f)) * 4;
    p.first().is_some_and(|b| b >> 4 == 4)
        && p.get(9) == Some(&1)
        && p.get(ihl).is_some_and(|t| icmp_type::is_error(*t))
}

/// The packet [`Router::handle`] was given, rewritten in the caller's buffer: write its
/// first `len` bytes to `port`, with `offload` as the TUN offload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    pub port: Side,
    /// Where the packet starts in the buffer: 0, or further on for an IPv6 packet
    /// translated to IPv4 in place (NAT64), whose header is shorter.
    pub start: usize,
    pub len: usize,
    pub offload: Offload,
}

impl InPlace {
    /// The packet's bytes in the buffer given to [`Router::handle`].
    pub fn bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start..self.start + self.len]
    }
}

/// What a table snapshot was taken at: sessions created so far, sessions now.
type SnapshotVersion = (u64, usize);

/// The sans-I/O router.
pub struct Router {
    cfg: Config,
    /// The IPv4 core (none on an IPv6-only router).
    nat: Option<Nat>,
    /// The IPv6 core, on a dual-stack router (NAT66).
    nat6: Option<Nat<Ipv6Addr>>,
    locals: [LocalStack; 2],
    io: IoCounters,
    control: ControlCounters,
    /// The last table snapshot, and the (sessions created, sessions) it was taken at.
    snapshot: Option<(SnapshotVersion, SnapshotKeys)>,
    /// Port forwards added with `tunnat dnat add` (also in `cfg.dnat`): kept across a
    /// reload, and saved in the state file.
    runtime_dnat: Vec<AnyDnat>,
    /// NAT64 (`--nat64`): the bindings of IPv6 hosts to stand-ins, and the translation
    /// both ways around the IPv4 core.
    nat64: Option<Nat64>,
    /// Packets translated to IPv6 for the inside port, to be written before anything
    /// else [`Router::poll_transmit`] has.
    xlat_out: VecDeque<Transmit>,
    /// Scratch for the packets one translation makes.
    xlat_buf: Vec<(Vec<u8>, Offload)>,
    /// The seed of the random choices (`tunnat explain` runs a copy with the same).
    pub(super) seed: u64,
    /// The last packets that crossed the ports (`--event-ring`).
    events: super::events::Ring,
    /// Port control (PCP, NAT-PMP, UPnP IGD), when on.
    pub(super) portctl: Option<PortControl>,
}

impl Router {
    /// A router for `cfg` at time `now`; `seed` seeds the random choices (the external
    /// port when the inside one is taken, the local stacks' sequence numbers).
    pub fn new(cfg: Config, now: Instant, seed: u64) -> Router {
        let mtus = cfg.port_mtus();
        let udp_inside = PortControl::udp_ports(&cfg);
        let http_inside = if cfg.upnp { cfg.upnp_port } else { 0 };
        let local = |own, other, own6, other6, nat64, mtu, salt: u64| {
            let inside = salt == 0;
            LocalStack::new(
                &LocalConfig {
                    own,
                    other,
                    own6,
                    other6,
                    nat64,
                    mtu,
                    policy_port: cfg.policy_port,
                    policy: &cfg.policy,
                    policy_idle: cfg.policy_idle,
                    policy_max_clients: cfg.policy_max_clients,
                    seed: seed ^ salt,
                    udp_ports: if inside {
                        udp_inside.clone()
                    } else {
                        Vec::new()
                    },
                    http_port: if inside { http_inside } else { 0 },
                },
                smol(now),
            )
        };
        let locals = [
            local(
                cfg.inside.cidr,
                cfg.outside.cidr,
                cfg.inside.cidr6,
                cfg.outside.cidr6,
                cfg.nat64.is_some(),
                mtus[0],
                0,
            ),
            local(
                cfg.outside.cidr,
                cfg.inside.cidr,
                cfg.outside.cidr6,
                cfg.inside.cidr6,
                false,
                mtus[1],
                0x5bd1_e995,
            ),
        ];
        let nat64 = cfg.nat64().map(Nat64::new);
        let portctl = PortControl::new(&cfg, now, seed.rotate_left(16));
        Router {
            nat: nat44_config(&cfg, nat64.as_ref(), portctl.as_ref())
                .map(|c| Nat::new(NatConfig { seed, ..c })),
            portctl,
            nat64,
            xlat_out: VecDeque::new(),
            xlat_buf: Vec::new(),
            seed,
            events: super::events::Ring::new(cfg.event_ring),
            nat6: cfg.nat6().map(|c| {
                Nat::new(NatConfig {
                    seed: seed.rotate_left(32),
                    ..c
                })
            }),
            cfg,
            locals,
            io: IoCounters::default(),
            control: ControlCounters::default(),
            snapshot: None,
            runtime_dnat: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The IPv4 core, on a router with IPv4 addresses.
    pub fn nat(&self) -> Option<&Nat> {
        self.nat.as_ref()
    }

    /// Would [`Router::prefetch`] do anything (is a session table that large)?
    pub fn wants_prefetch(&self) -> bool {
        self.nat.as_ref().is_some_and(Nat::wants_prefetch)
            || self.nat6.as_ref().is_some_and(Nat::wants_prefetch)
    }

    /// Starts bringing in what translating `pkt` from `port` will read of the session
    /// table at `stage` ([`Nat::prefetch`]; the driver calls it over a batch of packets
    /// before handling them).
    pub fn prefetch(&self, port: Side, pkt: &[u8], stage: Prefetch) {
        match pkt.first().map(|b| b >> 4) {
            Some(4) => {
                if let Some(n) = &self.nat {
                    n.prefetch(port, pkt, stage);
                }
            }
            Some(6) => {
                if let Some(n) = &self.nat6 {
                    n.prefetch(port, pkt, stage);
                }
            }
            _ => {}
        }
    }

    /// A packet read from `port` at `now`, with what the TUN's offload header said of it.
    /// Returns the packet itself when it is to be written out (rewritten in `buf`: the
    /// forwarding path copies nothing); everything else the router now has to send comes
    /// from [`Router::poll_transmit`].
    pub fn handle(
        &mut self,
        port: Side,
        buf: &mut [u8],
        offload: Result<Offload, Unsupported>,
        now: Instant,
    ) -> Option<InPlace> {
        self.handle_in(port, buf, 0, offload, now)
    }

    /// [`Router::handle`] for the packet at `buf[at..]`, with the `at` bytes before it
    /// free: a packet that grows in front (NAT64 to IPv6, 20 bytes) is written into them
    /// rather than copied. The returned place is in `buf`.
    pub fn handle_in(
        &mut self,
        port: Side,
        buf: &mut [u8],
        at: usize,
        offload: Result<Offload, Unsupported>,
        now: Instant,
    ) -> Option<InPlace> {
        let pkt = buf.get_mut(at..)?;
        if self.events.is_on() {
            self.events.read(port, pkt, now);
        }
        let w = self.handle_packet(port, pkt, offload, now)?;
        let w = InPlace {
            start: at + w.start,
            ..w
        };
        let w = self.translate_if_for_stand_in(w, buf, now)?;
        if self.events.is_on() {
            self.events.written(w.port, w.bytes(buf), now);
        }
        Some(w)
    }

    fn handle_packet(
        &mut self,
        port: Side,
        buf: &mut [u8],
        offload: Result<Offload, Unsupported>,
        now: Instant,
    ) -> Option<InPlace> {
        match port {
            Side::Inside => self.io.read_inside += 1,
            Side::Outside => self.io.read_outside += 1,
        }
        if buf.first().is_some_and(|b| b >> 4 == 6) {
            if port == Side::Inside
                && self
                    .nat64
                    .as_ref()
                    .is_some_and(|n| buf.len() >= 40 && n.is_for(ipv6_dst(buf)))
            {
                return self.handle64(buf, offload, now);
            }
            if let Some(n6) = &mut self.nat6 {
                let Ok(mut off) = offload else {
                    n6.count_drop(DropReason::BadOffload);
                    log::debug!("{}: dropped (bad-offload)", port.name());
                    return None;
                };
                let v = n6.process_offload(port, buf, now, &mut off);
                return self.verdict(port, v, buf, off, now);
            }
        }
        if let (true, None, Some(n64)) = (
            buf.first().is_some_and(|b| b >> 4 == 6),
            &self.nat6,
            &mut self.nat64,
        ) {
            // IPv6 not for the NAT64 prefix, on a router without NAT66.
            n64.count_drop(DropReason::NotRouted);
            log::debug!("{}: dropped (not-routed)", port.name());
            return None;
        }
        if port == Side::Inside && self.cfg.inside.cidr.is_none() {
            // IPv4 from an inside network that has only IPv6 (NAT64).
            if let Some(n64) = &mut self.nat64 {
                n64.count_drop(DropReason::NotIpv6);
                return None;
            }
        }
        let Some(nat) = &mut self.nat else {
            // IPv4 on an IPv6-only router.
            if let Some(n6) = &mut self.nat6 {
                n6.count_drop(DropReason::NotIpv6);
            }
            return None;
        };
        let Ok(mut off) = offload else {
            nat.count_drop(DropReason::BadOffload);
            log::debug!("{}: dropped (bad-offload)", port.name());
            return None;
        };
        let v = nat.process_offload(port, buf, now, &mut off);
        self.verdict(port, v, buf, off, now)
    }

    /// An IPv6 packet from inside to the NAT64 prefix: translated to IPv4 in place, then
    /// through the IPv4 core as if from an inside IPv4 host (its stand-in).
    fn handle64(
        &mut self,
        buf: &mut [u8],
        offload: Result<Offload, Unsupported>,
        now: Instant,
    ) -> Option<InPlace> {
        let n64 = self.nat64.as_mut()?;
        let Ok(mut off) = offload else {
            n64.count_drop(DropReason::BadOffload);
            return None;
        };
        // A partial checksum is kept only where the IPv6 core would keep it (an
        // unfragmented TCP or UDP datagram, the field where the kernel says); any other is
        // completed here, as a NIC would.
        if let Some(p) = off.csum {
            if !crate::nat::partial_translatable6(buf, p, off.gso) {
                if off.gso.is_some() || !crate::wire::offload::complete(buf, p) {
                    n64.count_drop(DropReason::BadOffload);
                    return None;
                }
                off.csum = None;
            }
        }
        let range = match n64.outbound(buf, &mut off, now) {
            Outbound::Translated(r) => r,
            Outbound::Held => return None,
            Outbound::Reassembled(mut d) => {
                let nat = self.nat.as_mut()?;
                let mut off = Offload::NONE;
                let v = nat.process_translated(&mut d, now, &mut off);
                let w = self.verdict(Side::Inside, v, &d, off, now)?;
                if let Some(w) = self.translate_if_for_stand_in(w, &mut d, now) {
                    let packet = w.bytes(&d).to_vec();
                    self.xlat_out.push_back(Transmit::new(w.port, packet));
                }
                return None;
            }
            Outbound::Dropped(why) => {
                log::debug!("inside: NAT64 dropped ({})", why.name());
                return None;
            }
            Outbound::Refused(t, code, rest, why) => {
                log::debug!("inside: NAT64 refused ({})", why.name());
                self.refuse64(buf, t, code, rest, now);
                return None;
            }
        };
        let start = range.start;
        let nat = self.nat.as_mut()?;
        let pkt = &mut buf[range];
        let v = nat.process_translated(pkt, now, &mut off);
        let w = self.verdict(Side::Inside, v, pkt, off, now)?;
        Some(InPlace {
            start: start + w.start,
            ..w
        })
    }

    /// Sends ICMPv6 error `t`/`code` from the router's inside address about the packet in
    /// `buf`, under the ICMP error rate limit.
    fn refuse64(&mut self, buf: &[u8], t: u8, code: u8, rest: u32, now: Instant) {
        let Some(src) = self.cfg.inside.cidr6.map(|c| c.addr) else {
            return;
        };
        let Ok(ip) = crate::wire::ipv6::Ipv6::new_checked(buf) else {
            return;
        };
        if !crate::wire::icmpv6::may_answer(&ip, t) || !self.allow_icmp_error(now) {
            return;
        }
        let mut packet = Vec::new();
        crate::wire::icmpv6::build_error(&mut packet, src, t, code, rest, &ip);
        self.xlat_out.push_back(Transmit::new(Side::Inside, packet));
    }

    /// A packet about to be written in place: if it is IPv4 for a stand-in (an IPv6 host
    /// behind NAT64), it is translated to IPv6, in place where the room before it in
    /// `buf` allows, else copied and queued.
    fn translate_if_for_stand_in(
        &mut self,
        w: InPlace,
        buf: &mut [u8],
        now: Instant,
    ) -> Option<InPlace> {
        if w.port != Side::Inside || !self.for_stand_in(w.bytes(buf)) {
            return Some(w);
        }
        let n64 = self.nat64.as_mut()?;
        let mut off = w.offload;
        let area = &mut buf[..w.start + w.len];
        match n64.inbound_in_place(area, w.start, &mut off, now) {
            Ok(Some(r)) => Some(InPlace {
                port: Side::Inside,
                start: r.start,
                len: r.len(),
                offload: off,
            }),
            Ok(None) => {
                self.translate_in(w.bytes(buf), w.offload, now);
                None
            }
            Err(why) => {
                log::debug!("inside: NAT64 dropped ({})", why.name());
                None
            }
        }
    }

    /// Is `p` an IPv4 packet for a stand-in, on a router doing NAT64?
    fn for_stand_in(&self, p: &[u8]) -> bool {
        self.nat64.is_some() && nat64::is_for_stand_in(p)
    }

    /// Translates an IPv4 packet for a stand-in to IPv6 (cut into fragments if need be)
    /// and queues it for the inside port.
    fn translate_in(&mut self, p: &[u8], off: Offload, now: Instant) {
        let Some(n64) = self.nat64.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.xlat_buf);
        if let Err(why) = n64.inbound(p, off, now, &mut out) {
            log::debug!("inside: NAT64 dropped ({})", why.name());
        }
        for (packet, offload) in out.drain(..) {
            self.xlat_out.push_back(Transmit {
                port: Side::Inside,
                packet,
                offload,
            });
        }
        self.xlat_buf = out;
    }

    /// What to do with a packet the NAT core of either family decided on.
    fn verdict(
        &mut self,
        port: Side,
        v: Verdict,
        buf: &[u8],
        off: Offload,
        now: Instant,
    ) -> Option<InPlace> {
        match v {
            Verdict::Forward { len } => Some(InPlace {
                port: port.other(),
                start: 0,
                len,
                offload: off,
            }),
            Verdict::Hairpin { len } => Some(InPlace {
                port,
                start: 0,
                len,
                offload: off,
            }),
            Verdict::Local { len } => {
                self.locals[port.index()].deliver(&buf[..len], smol(now));
                None
            }
            Verdict::Reply(why) => {
                log::debug!("{}: answered with ICMP ({})", port.name(), why.name());
                None
            }
            Verdict::Drop(why) => {
                log::debug!("{}: dropped ({})", port.name(), why.name());
                None
            }
            Verdict::Emit { .. } | Verdict::Held => None,
        }
    }

    /// The next packet to write, and the port to write it to: what the NAT core made (ICMP
    /// errors, fragments), then what the local stacks answer. Runs a local stack when a
    /// packet or a timer of its is waiting; forwarded traffic alone costs it nothing.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let t = self.poll_transmit_translated(now)?;
        self.events.written(t.port, &t.packet, now);
        Some(t)
    }

    fn poll_transmit_translated(&mut self, now: Instant) -> Option<Transmit> {
        loop {
            if let Some(t) = self.xlat_out.pop_front() {
                return Some(t);
            }
            let t = self.poll_transmit_untranslated(now)?;
            if t.port == Side::Inside && self.for_stand_in(&t.packet) {
                self.translate_in(&t.packet, t.offload, now);
                continue;
            }
            return Some(t);
        }
    }

    /// [`Router::poll_transmit`] before NAT64 translates what is for its hosts.
    fn poll_transmit_untranslated(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.nat.as_mut().and_then(Nat::poll_transmit) {
            return Some(t);
        }
        if let Some(t) = self.nat6.as_mut().and_then(Nat::poll_transmit) {
            return Some(t);
        }
        for round in 0..2 {
            for (i, port) in SIDES.into_iter().enumerate() {
                while let Some(packet) = self.locals[i].dev.tx.pop_front() {
                    // The local stacks' port unreachables fall under the same rate limit
                    // as the core's own ICMP errors.
                    if is_icmp_error(&packet) && !self.allow_icmp_error(now) {
                        continue;
                    }
                    return Some(Transmit::new(port, packet));
                }
            }
            if round == 0 {
                let mut ran = false;
                let packets = (self.io.read_inside, self.io.read_outside);
                let mut svc = match (&mut self.portctl, &mut self.nat) {
                    (Some(pc), Some(nat)) => Some(Svc {
                        pc,
                        nat,
                        now,
                        packets,
                    }),
                    _ => None,
                };
                for l in &mut self.locals {
                    ran |= match &mut svc {
                        Some(s) => l.poll_if_needed(smol(now), s),
                        None => l.poll_if_needed(smol(now), &mut NoServices),
                    };
                }
                self.sync_port_maps();
                if !ran {
                    return None;
                }
            }
        }
        None
    }

    /// When [`Router::handle_timeout`] next has work (a session, a datagram being
    /// reassembled or a held SYN times out; a local stack's timer fires). `None`: nothing
    /// until a packet or a request comes, so an idle router sleeps.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let locals = self
            .locals
            .iter()
            .filter_map(|l| l.due)
            .map(|d| Instant::from_millis(d.total_millis().max(0) as u64));
        let nat = self.nat.as_ref().and_then(Nat::poll_timeout);
        let nat6 = self.nat6.as_ref().and_then(Nat::poll_timeout);
        let nat64 = self.nat64.as_ref().and_then(Nat64::poll_timeout);
        let pc = self.portctl.as_ref().and_then(PortControl::poll_timeout);
        nat.into_iter()
            .chain(nat6)
            .chain(nat64)
            .chain(pc)
            .chain(locals)
            .min()
    }

    /// Expires what is due at `now`; what that makes comes from [`Router::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.events.timer();
        if let Some(nat) = &mut self.nat {
            nat.handle_timeout(now, |k, s| log_expired(k, s, now));
            nat.expire_ftp(now);
        }
        if let Some(n6) = &mut self.nat6 {
            n6.handle_timeout(now, |k, s| log_expired(k, s, now));
        }
        if let (Some(n64), Some(nat)) = (&mut self.nat64, &self.nat) {
            n64.sweep(now, |a| nat.table().host_has_mappings(a));
        }
        if let (Some(pc), Some(out)) = (&mut self.portctl, self.cfg.outside.cidr) {
            for a in pc.handle_timeout(now, out.addr) {
                let to = (
                    std::net::Ipv4Addr::new(224, 0, 0, 1),
                    crate::portmap::natpmp::CLIENT_PORT,
                );
                self.locals[0].send_udp(crate::portmap::natpmp::SERVER_PORT, to, &a);
            }
        }
        self.sync_port_maps();
    }

    /// Answers a control request. `load` reads the configuration again for `reload` (the
    /// driver's file access, passed in as the clock is).
    pub fn handle_control(
        &mut self,
        req: Request,
        now: Instant,
        load: &mut dyn FnMut() -> Result<Config>,
    ) -> Response {
        self.control.requests += 1;
        let r = match req {
            Request::Table => Ok(Response::Sessions(Sessions {
                sessions: self.table_rows(now),
            })),
            Request::Stats => Ok(Response::Counters(Box::new(self.counters()))),
            Request::DnatList => Ok(Response::Rules(Rules {
                rules: (self.cfg.dnat.iter().map(|r| r.to_string()))
                    .chain(self.cfg.dnat6.iter().map(|r| r.to_string()))
                    .collect(),
                runtime: self.runtime_dnat.iter().map(|r| r.to_string()).collect(),
                mapped: (self.portctl.iter())
                    .flat_map(|pc| pc.maps.iter())
                    .map(|m| crate::control::proto::MappedRule {
                        rule: m.rule().to_string(),
                        source: m.source.name().to_string(),
                        owner: m.client.to_string(),
                        description: m.description.clone(),
                        remaining: m.remaining(now),
                    })
                    .collect(),
            })),
            Request::DnatAdd { rule } => self.dnat_add(&rule).map(|()| Response::Done),
            Request::DnatDel { rule } => self.dnat_del(&rule).map(|()| Response::Done),
            Request::Export(o) => Ok(Response::Message(Message {
                message: crate::export::render(&self.cfg, &o),
            })),
            Request::Events { since } => Ok(Response::Events(self.events.since(since))),
            Request::Explain { side, packet } => {
                let side = match side.as_str() {
                    "inside" => Ok(Side::Inside),
                    "outside" => Ok(Side::Outside),
                    s => Err(anyhow!("'{s}' is not inside or outside")),
                };
                side.and_then(|side| {
                    let bytes = crate::router::explain::unhex(&packet)
                        .ok_or_else(|| anyhow!("the packet is not hex"))?;
                    Ok(Response::Message(Message {
                        message: self.explain(side, &bytes, now),
                    }))
                })
            }
            Request::Reload => load()
                .and_then(|cfg| self.reload(cfg))
                .map(|message| Response::Message(Message { message }))
                .inspect_err(|e| log::warn!("reload refused, the old configuration stays: {e:#}")),
        };
        r.unwrap_or_else(|e| {
            self.control.refused += 1;
            Response::error(format!("{e:#}"))
        })
    }

    /// A control request that could not be parsed.
    pub fn refuse_control(&mut self, why: &str) -> Response {
        self.control.requests += 1;
        self.control.refused += 1;
        Response::error(why)
    }

    fn dnat_add(&mut self, rule: &str) -> Result<()> {
        let r: AnyDnat = rule.parse().map_err(|e| anyhow!("{e}"))?;
        let mut new = self.cfg.clone();
        match r {
            AnyDnat::V4(r) => new.dnat.push(r),
            AnyDnat::V6(r) => new.dnat6.push(r),
        }
        new.validate()?;
        log::info!("dnat add {r}");
        self.runtime_dnat.push(r);
        self.apply(new);
        Ok(())
    }

    fn dnat_del(&mut self, rule: &str) -> Result<()> {
        let r: AnyDnat = rule.parse().map_err(|e| anyhow!("{e}"))?;
        let mut new = self.cfg.clone();
        let before = new.dnat.len() + new.dnat6.len();
        match r {
            AnyDnat::V4(r) => new.dnat.retain(|x| *x != r),
            AnyDnat::V6(r) => new.dnat6.retain(|x| *x != r),
        }
        if new.dnat.len() + new.dnat6.len() == before {
            return Err(anyhow!("no dnat rule {r}"));
        }
        log::info!("dnat del {r}");
        self.runtime_dnat.retain(|x| *x != r);
        self.apply(new);
        Ok(())
    }

    /// Applies a configuration read again (SIGHUP, `tunnat reload`): refused whole if it
    /// changes an option that only a restart may change. Existing sessions are kept, and
    /// so are the port forwards added at run time (refused if one now conflicts with the
    /// file's rules, naming it).
    pub fn reload(&mut self, mut new: Config) -> Result<String> {
        crate::options::reloadable(&self.cfg, &new)?;
        self.with_runtime_dnat(&mut new)?;
        let mut msg = format!(
            "reloaded: {} dnat rule(s), timeouts udp {}s tcp {}s/{}s icmp {}s, filtering {:?}",
            new.dnat.len(),
            new.timeouts.udp.as_secs(),
            new.timeouts.tcp_established.as_secs(),
            new.timeouts.tcp_transitory.as_secs(),
            new.timeouts.icmp.as_secs(),
            new.filtering
        );
        // As at start: logged, and told to whoever asked for the reload.
        for w in new.warnings() {
            log::warn!("{w}");
            msg.push_str(&format!("\nwarning: {w}"));
        }
        self.apply(new);
        log::info!("{msg}");
        Ok(msg)
    }

    /// Adds the port forwards added at run time to `new`'s (those not already there).
    fn with_runtime_dnat(&self, new: &mut Config) -> Result<()> {
        let configured = new.dnat.len() + new.dnat6.len();
        for r in &self.runtime_dnat {
            match r {
                AnyDnat::V4(r) if !new.dnat.contains(r) => new.dnat.push(*r),
                AnyDnat::V6(r) if !new.dnat6.contains(r) => new.dnat6.push(*r),
                _ => {}
            }
        }
        new.validate().map_err(|e| {
            if new.dnat.len() + new.dnat6.len() > configured {
                anyhow!("{e:#} (with the rules added by `tunnat dnat add`: {}; remove them first with `tunnat dnat del`)",
                    self.runtime_dnat.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "))
            } else {
                e
            }
        })
    }

    /// The state a restart needs to carry on (`--state-file`): the port forwards added at
    /// run time and every session, at `now`, `unix_ms` being the wall-clock time.
    pub fn save_state(&self, now: Instant, unix_ms: u64) -> RouterState {
        self.save_state_where(now, unix_ms, &|_, _| true)
    }

    /// [`Router::save_state`] of the sessions `keep` picks by their inside and remote
    /// addresses and external port (every held port is kept).
    pub fn save_state_where(
        &self,
        now: Instant,
        unix_ms: u64,
        keep: &dyn Fn(&[std::net::IpAddr; 2], u16) -> bool,
    ) -> RouterState {
        let mut v4 = self
            .nat
            .as_ref()
            .map(|n| {
                n.save_where(now, |k, s| {
                    keep(&[k.inside.addr.into(), k.remote.addr.into()], s.ext_port)
                })
            })
            .unwrap_or_default();
        if let Some(n64) = &self.nat64 {
            // A NAT64 session is saved with its IPv6 host, not the stand-in, which a
            // restart hands out afresh.
            let host = |a: std::net::SocketAddr| match a.ip() {
                std::net::IpAddr::V4(v4) if nat64::is_stand_in(v4) => n64
                    .host_of(v4)
                    .map(|h| std::net::SocketAddr::new(h.into(), a.port())),
                _ => Some(a),
            };
            v4.sessions.retain_mut(|s| match host(s.inside) {
                Some(a) => {
                    s.inside = a;
                    true
                }
                None => false,
            });
            v4.held.retain_mut(|h| match host(h.owner) {
                Some(a) => {
                    h.nat64 = a != h.owner;
                    h.owner = a;
                    true
                }
                None => false,
            });
        }
        let v6 = self
            .nat6
            .as_ref()
            .map(|n| {
                n.save_where(now, |k, s| {
                    keep(&[k.inside.addr.into(), k.remote.addr.into()], s.ext_port)
                })
            })
            .unwrap_or_default();
        RouterState {
            saved_unix_ms: unix_ms,
            inside: self.cfg.inside.cidr,
            outside: self.cfg.outside.cidr,
            inside6: self.cfg.inside.cidr6,
            outside6: self.cfg.outside.cidr6,
            dnat: self.runtime_dnat.clone(),
            nat: v4.merge(v6),
        }
    }

    /// Carries on from a saved state, before any packet: the port forwards added at run
    /// time come back, then the sessions, less the time since the save (`unix_ms` is the
    /// wall-clock time now). Refused whole, naming the reason, if the state belongs to
    /// other addresses or any of it cannot be; the router must then not run.
    pub fn restore_state(&mut self, st: RouterState, now: Instant, unix_ms: u64) -> Result<String> {
        let (inside, outside) = (self.cfg.inside.cidr, self.cfg.outside.cidr);
        let (inside6, outside6) = (self.cfg.inside.cidr6, self.cfg.outside.cidr6);
        if st.inside != inside
            || st.outside != outside
            || st.inside6 != inside6
            || st.outside6 != outside6
        {
            let show = |v4: Option<Ipv4Cidr>, v6: Option<Ipv6Cidr>| {
                let all: Vec<String> = (v4.map(|c| c.to_string()).into_iter())
                    .chain(v6.map(|c| c.to_string()))
                    .collect();
                all.join(" and ")
            };
            return Err(anyhow!(
                "it was saved by a router with inside {} and outside {}, this one has {} and {}; \
                 its sessions cannot carry on (remove the file to start afresh)",
                show(st.inside, st.inside6),
                show(st.outside, st.outside6),
                show(inside, inside6),
                show(outside, outside6)
            ));
        }
        if self.nat.as_ref().is_some_and(|n| !n.table().is_empty()) {
            return Err(anyhow!("the router has sessions already"));
        }
        let mut new = self.cfg.clone();
        let before = std::mem::replace(&mut self.runtime_dnat, st.dnat);
        if let Err(e) = self.with_runtime_dnat(&mut new) {
            self.runtime_dnat = before;
            return Err(e.context("a port forward it adds cannot be"));
        }
        self.apply(new);
        let stopped = std::time::Duration::from_millis(unix_ms.saturating_sub(st.saved_unix_ms));
        let mut v4 = st.nat.of_family(false);
        let n64 = st.nat.of_nat64();
        if !n64.sessions.is_empty() || !n64.held.is_empty() {
            let Some(x) = &mut self.nat64 else {
                return Err(anyhow!(
                    "it holds NAT64 sessions, and this router has no --nat64"
                ));
            };
            // Each IPv6 host gets a stand-in again; its sessions go back to the IPv4
            // core under it.
            let mut stand_in = |a: std::net::SocketAddr| -> Result<std::net::SocketAddr> {
                let std::net::IpAddr::V6(h) = a.ip() else {
                    return Err(anyhow!("{a} is not an IPv6 host"));
                };
                let s = x
                    .bind_restored(h, now)
                    .ok_or_else(|| anyhow!("{h}: {}", "no stand-in address left for it"))?;
                Ok(std::net::SocketAddr::new(s.into(), a.port()))
            };
            for mut s in n64.sessions {
                s.inside = stand_in(s.inside)?;
                v4.sessions.push(s);
            }
            for mut h in n64.held {
                h.owner = stand_in(h.owner)?;
                h.nat64 = false;
                v4.held.push(h);
            }
        }
        let mut r = match &mut self.nat {
            Some(n) => n.restore(v4, stopped, now).map_err(|e| anyhow!("{e}"))?,
            None if !v4.sessions.is_empty() => {
                return Err(anyhow!(
                    "it holds IPv4 sessions, and this router has no IPv4 addresses"
                ))
            }
            None => Default::default(),
        };
        let v6 = st.nat.of_family(true);
        match &mut self.nat6 {
            Some(n6) => {
                let r6 = n6.restore(v6, stopped, now).map_err(|e| anyhow!("{e}"))?;
                r.sessions += r6.sessions;
                r.expired += r6.expired;
                r.held += r6.held;
            }
            None if !v6.sessions.is_empty() => {
                return Err(anyhow!(
                    "it holds IPv6 sessions, and this router has no IPv6 addresses"
                ))
            }
            None => {}
        }
        Ok(format!(
            "{} session(s) restored, {} timed out while stopped ({:.1} s), {} held port(s), {} port forward(s) added at run time",
            r.sessions,
            r.expired,
            stopped.as_secs_f64(),
            r.held,
            self.runtime_dnat.len()
        ))
    }

    fn apply(&mut self, new: Config) {
        if let Some(n64) = &mut self.nat64 {
            n64.set_static_hosts(new.dnat6.iter().map(|r| r.target).collect());
        }
        if let (Some(n), Some(c)) = (
            &mut self.nat,
            nat44_config(&new, self.nat64.as_ref(), self.portctl.as_ref()),
        ) {
            n.reconfigure(c);
        }
        if let (Some(pc), Some(n)) = (&mut self.portctl, &self.nat) {
            // A port forward now over a host's port mapping takes its port.
            pc.maps
                .drop_conflicting(|p, port| n.is_static_port(p, port));
        }
        self.sync_port_maps();
        if let (Some(n6), Some(c6)) = (&mut self.nat6, new.nat6()) {
            n6.reconfigure(c6);
        }
        for l in &mut self.locals {
            l.set_policy(&new.policy, new.policy_idle);
        }
        self.cfg = new;
    }

    /// The hosts' port mappings of `other` (a scratch router for `explain`).
    pub(super) fn copy_port_maps(&mut self, other: &Router) {
        if let (Some(to), Some(from)) = (&mut self.portctl, &other.portctl) {
            to.maps.copy_from(&from.maps);
        }
        self.sync_port_maps();
    }

    /// Hands the port mappings to the NAT core if they changed.
    fn sync_port_maps(&mut self) {
        if let (Some(pc), Some(n)) = (&mut self.portctl, &mut self.nat) {
            if pc.maps.take_changed() {
                let mut c = n.config().clone();
                c.port_maps = pc.maps.rules();
                n.reconfigure(c);
            }
        }
    }

    /// May the router send an ICMP error now? One rate limit for every error the router
    /// sends, of either family.
    fn allow_icmp_error(&mut self, now: Instant) -> bool {
        match (&mut self.nat, &mut self.nat6) {
            (Some(n), _) => n.allow_icmp_error(now),
            (None, Some(n6)) => n6.allow_icmp_error(now),
            (None, None) => true,
        }
    }

    /// Packets read from both ports so far.
    pub fn packets_read(&self) -> u64 {
        self.io.read_inside + self.io.read_outside
    }

    /// The driver's loop moved packets in one turn.
    pub fn count_batch(&mut self) {
        self.io.batches += 1;
    }

    /// The driver's io_uring so far: UDP datagrams written inside others' super-packets,
    /// waits that held out for a batch.
    pub fn set_uring_counts(&mut self, udp_joined: u64, coalesced: u64) {
        self.io.udp_joined = udp_joined;
        self.io.coalesced = coalesced;
    }

    /// The driver could not read a port.
    pub fn count_read_error(&mut self) {
        self.io.read_errors += 1;
    }

    /// The driver could not write a packet.
    pub fn count_write_error(&mut self) {
        self.io.write_errors += 1;
    }

    /// The driver lost a port's device and waits for it to come back (`--persist`).
    pub fn count_port_lost(&mut self) {
        self.io.ports_lost += 1;
        self.io.ports_down += 1;
    }

    /// A lost port's device is back and attached.
    pub fn count_port_back(&mut self) {
        self.io.ports_reattached += 1;
        self.io.ports_down = self.io.ports_down.saturating_sub(1);
    }

    /// The driver dropped control clients that were too slow.
    pub fn count_control_timeouts(&mut self, n: u64) {
        self.control.clients_timed_out += n;
    }

    /// Every counter, as `tunnat stats` shows them.
    pub fn counters(&self) -> Counters {
        let mut io = self.io;
        io.local_queue_overflows = self.locals.iter().map(|l| l.dev.overflows).sum();
        Counters {
            nat: self.nat.as_ref().map(NatCounters::of).unwrap_or_default(),
            nat6: self.nat6.as_ref().map(NatCounters::of),
            nat64: self.nat64.as_ref().map(Nat64Counters::of),
            io,
            control: self.control,
            policy: SIDES
                .iter()
                .zip(&self.locals)
                .filter_map(|(side, l)| {
                    l.policy
                        .as_ref()
                        .map(|p| PolicyCounters::of(*side, &p.stats))
                })
                .collect(),
            portmap: self.portctl.as_ref().map(PortControl::counters),
            ftp: (self.nat.as_ref())
                .filter(|_| self.cfg.alg_ftp)
                .map(Nat::ftp_stats),
        }
    }

    /// A control request answered outside [`Router::handle_control`] (the streamed table).
    pub fn count_control_request(&mut self) {
        self.control.requests += 1;
    }

    /// The session table as rows, most recently used first (IPv4, then IPv6).
    /// The port mappings the inside hosts made, as table rows (before the sessions).
    fn port_map_rows(&self, now: Instant) -> Vec<Row> {
        let (Some(pc), Some(out)) = (&self.portctl, self.cfg.outside.cidr) else {
            return Vec::new();
        };
        (pc.maps.iter())
            .map(|m| Row {
                proto: m.protocol.name().to_string(),
                state: "MAPPED".to_string(),
                inside: format!("{}:{}", m.client, m.internal),
                outside: format!("{}:{}", out.addr, m.external),
                remote: "*".to_string(),
                dnat: true,
                idle_s: 0,
                timeout_s: m.remaining(now).map_or(0, u64::from),
                packets_out: 0,
                packets_in: 0,
                bytes_out: 0,
                bytes_in: 0,
                mapped_by: Some(m.source.name().to_string()),
                syn_proxy: false,
            })
            .collect()
    }

    pub fn table_rows(&self, now: Instant) -> Vec<Row> {
        let maps = self.port_map_rows(now);
        let v4 = self.nat.iter().flat_map(|n| {
            n.table()
                .sessions()
                .map(move |(k, s)| self.row64(row(n, k, s, now), k))
        });
        let v6 = self
            .nat6
            .iter()
            .flat_map(|n| n.table().sessions().map(move |(k, s)| row(n, k, s, now)));
        maps.into_iter().chain(v4).chain(v6).collect()
    }

    /// The session table's keys as of now, for a table answered in pieces
    /// ([`Router::table_rows_at`]): 14 bytes an IPv4 session, where rows would take a
    /// hundred. Requests made while no session has come or gone share one snapshot, so
    /// 32 clients asking at once cost one copy of the keys, not 32.
    pub fn table_snapshot(&mut self) -> TableCursor {
        let size = |created: u64, len: usize| (created, len);
        let (c4, n4) = self.nat.as_ref().map_or((0, 0), |n| {
            size(n.table().stats.sessions_created, n.table().len())
        });
        let (c6, n6) = self.nat6.as_ref().map_or((0, 0), |n| {
            size(n.table().stats.sessions_created, n.table().len())
        });
        let version = (c4 + c6, n4 + n6);
        let keys = match &self.snapshot {
            Some((v, keys)) if *v == version => keys.clone(),
            _ => {
                let v4: Rc<[SessionKey]> = self
                    .nat
                    .iter()
                    .flat_map(|n| n.table().sessions().map(|(k, _)| *k))
                    .collect();
                let v6: Rc<[SessionKey<Ipv6Addr>]> = self
                    .nat6
                    .iter()
                    .flat_map(|n| n.table().sessions().map(|(k, _)| *k))
                    .collect();
                let keys = (v4, v6);
                self.snapshot = Some((version, keys.clone()));
                keys
            }
        };
        TableCursor {
            keys,
            pos: 0,
            rows: 0,
        }
    }

    /// A row of the IPv4 table whose inside host is a stand-in shows the IPv6 host.
    fn row64(&self, mut r: Row, k: &SessionKey) -> Row {
        if let Some(h) = self.nat64.as_ref().and_then(|n| n.host_of(k.inside.addr)) {
            r.inside = format!("[{h}]:{}", k.inside.port);
        }
        r
    }

    /// The next (at most) `n` rows of a snapshot. A session gone since the snapshot is
    /// left out, as with `conntrack -L` on a live table.
    pub fn table_rows_at(&self, cursor: &mut TableCursor, n: usize, now: Instant) -> Vec<Row> {
        let (v4, v6) = (&cursor.keys.0, &cursor.keys.1);
        let end = (cursor.pos + n).min(v4.len() + v6.len());
        let mut rows = Vec::with_capacity(end - cursor.pos);
        if cursor.pos == 0 && cursor.rows == 0 {
            rows = self.port_map_rows(now);
        }
        for i in cursor.pos..end {
            let r = match (v4.get(i), &self.nat6) {
                (Some(k), _) => self.nat.as_ref().and_then(|n| {
                    n.table()
                        .peek_out(k)
                        .map(|s| self.row64(row(n, k, s, now), k))
                }),
                (None, Some(n6)) => {
                    let k = &v6[i - v4.len()];
                    n6.table().peek_out(k).map(|s| row(n6, k, s, now))
                }
                (None, None) => None,
            };
            rows.extend(r);
        }
        cursor.pos = end;
        cursor.rows += rows.len();
        rows
    }
}

/// The IPv4 core's configuration: with NAT64, a port forward to an IPv6 host becomes one
/// to its stand-in on the outside IPv4 address (a static BIB entry, RFC 6146 section
/// 3.5.1), unless an IPv4 port forward has the port.
fn nat44_config(
    cfg: &Config,
    nat64: Option<&Nat64>,
    portctl: Option<&PortControl>,
) -> Option<NatConfig> {
    let mut c = cfg.nat()?;
    if let Some(pc) = portctl {
        c.port_maps = pc.maps.rules();
        c.ssdp = pc.upnp();
    }
    if let Some(n64) = nat64 {
        for r in &cfg.dnat6 {
            let Some(stand_in) = n64.stand_in_of(r.target) else {
                continue;
            };
            let r4 = crate::nat::DnatRule {
                protocol: r.protocol,
                first: r.first,
                last: r.last,
                target: stand_in,
                target_port: r.target_port,
            };
            if !c.dnat.iter().any(|x| x.overlaps(&r4)) {
                c.dnat.push(r4);
            }
        }
    }
    Some(c)
}

/// The destination of the IPv6 packet in `buf` (at least 40 bytes).
fn ipv6_dst(buf: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&buf[24..40]);
    Ipv6Addr::from(a)
}

/// The debug line for a session that timed out.
fn log_expired<A: Address>(k: &SessionKey<A>, s: &Session, now: Instant)
where
    Endpoint<A>: std::fmt::Display,
{
    log::debug!(
        "expired {} {} -> {} via :{} idle {:?}",
        k.protocol.name(),
        k.inside,
        k.remote,
        s.ext_port,
        now.since(s.last_seen)
    );
}

/// One session as `tunnat table` shows it.
fn row<A: Address>(nat: &Nat<A>, k: &SessionKey<A>, s: &Session, now: Instant) -> Row
where
    Endpoint<A>: std::fmt::Display,
{
    let table = nat.table();
    Row {
        proto: k.protocol.name().to_string(),
        state: if k.protocol == Protocol::Tcp {
            s.tcp.name().to_string()
        } else {
            "-".to_string()
        },
        inside: k.inside.to_string(),
        outside: Endpoint::new(nat.config().outside.addr, s.ext_port).to_string(),
        remote: k.remote.to_string(),
        dnat: s.dnat,
        idle_s: now.since(s.last_seen).as_secs(),
        timeout_s: table.timeout_of(k.protocol, s).as_secs(),
        packets_out: s.packets[0],
        packets_in: s.packets[1],
        bytes_out: s.bytes[0],
        bytes_in: s.bytes[1],
        mapped_by: None,
        syn_proxy: s.proxied,
    }
}

/// The keys of a table snapshot: IPv4 sessions, then IPv6.
type SnapshotKeys = (Rc<[SessionKey]>, Rc<[SessionKey<Ipv6Addr>]>);

/// Where a session table answered in pieces has got to.
pub struct TableCursor {
    keys: SnapshotKeys,
    pos: usize,
    rows: usize,
}

impl TableCursor {
    /// Rows handed out so far (sessions gone since the snapshot are not rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_done(&self) -> bool {
        self.pos >= self.keys.0.len() + self.keys.1.len()
    }
}
