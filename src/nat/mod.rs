//! The pure NAT core: takes one IPv4 packet, the port it arrived on and the time, rewrites
//! it in place and says what to do with it. No I/O and no clock: every rule is unit-tested
//! with literal packets and a fake time.
//!
//! What it implements (see the README's conformance table):
//! * NAPT of TCP, UDP and ICMP echo from the inside network to the outside address with
//!   endpoint-independent mappings ([`table`]), TTL decrement and incremental checksums;
//! * static DNAT ([`dnat`]) of TCP/UDP ports on the outside address;
//! * translation of ICMP errors in both directions, with the quoted IP and transport header
//!   rewritten (RFC 5508 section 3.2, REQ-3..5; RFC 5382 REQ-9); an ICMP error never ends or
//!   refreshes a session (RFC 4787 REQ-12, RFC 5382 REQ-10);
//! * router behaviour while forwarding (RFC 1812): ICMP time exceeded when the TTL runs out,
//!   "fragmentation needed" for DF packets larger than the egress MTU.
//!
//! Packets for the router's own addresses are not translated here: the verdict is
//! [`Verdict::Local`] and the I/O shell hands them to the smoltcp interface.

pub mod dnat;
pub mod reassembly;
pub mod table;
pub mod tcp_state;
pub mod time;

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::wire::icmp::{self as icmp_err, unreachable};
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::offload::{self, Gso, Offload};
use crate::wire::transport::{self, icmp_type, Csum, End, Protocol, TcpFlags, Transport};
use crate::wire::WireError;
use reassembly::{Fragment, Reassembler};

pub use dnat::DnatRule;
pub use table::{Endpoint, Filtering, Limits, Session, SessionKey, Table, TableError, Timeouts};
pub use tcp_state::Direction;
pub use time::Instant;

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (u32::from(a) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Ipv4Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not ADDRESS/PREFIX (e.g. 192.168.122.100/24)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("'{a}' in '{s}' is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("prefix '{p}' in '{s}' is not 0-32"))?;
        Ok(Ipv4Cidr { addr, prefix })
    }
}

/// Everything the core needs to know, fixed at start.
#[derive(Debug, Clone)]
pub struct NatConfig {
    /// The router's address and network on the inside port.
    pub inside: Ipv4Cidr,
    /// The router's address and network on the outside port.
    pub outside: Ipv4Cidr,
    /// Largest datagram sent on each port, `[inside, outside]`.
    pub mtu: [usize; 2],
    /// Lower the MSS option of forwarded SYNs to this (RFC 4459 section 3.2); `None`: off.
    pub clamp_mss: Option<MssClamp>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    pub dnat: Vec<DnatRule>,
    /// TCP ports served by the router itself on its outside address (never allocated).
    pub local_tcp_ports: Vec<u16>,
    pub limits: Limits,
    /// How long a released external port is kept from other hosts.
    pub port_hold: std::time::Duration,
    /// Keep port parity when the inside port cannot be preserved.
    pub port_parity: bool,
}

impl NatConfig {
    /// A configuration with the lab's addresses and the RFC defaults (for tests).
    pub fn lab() -> NatConfig {
        NatConfig {
            inside: Ipv4Cidr {
                addr: Ipv4Addr::new(192, 168, 122, 100),
                prefix: 24,
            },
            outside: Ipv4Cidr {
                addr: Ipv4Addr::new(172, 16, 1, 186),
                prefix: 24,
            },
            mtu: [1500, 1500],
            clamp_mss: None,
            timeouts: Timeouts::default(),
            filtering: Filtering::default(),
            dnat: Vec::new(),
            local_tcp_ports: vec![843],
            limits: Limits::default(),
            port_hold: table::PORT_HOLD,
            port_parity: false,
        }
    }
}

/// What `--clamp-mss` clamps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssClamp {
    /// A fixed MSS.
    Fixed(u16),
    /// The egress port's MTU less 40 bytes of IPv4 and TCP headers.
    Mtu,
}

impl std::str::FromStr for MssClamp {
    type Err = String;
    fn from_str(s: &str) -> Result<MssClamp, String> {
        match s {
            "mtu" => Ok(MssClamp::Mtu),
            n => match n.parse::<u16>() {
                Ok(v) if v >= 88 => Ok(MssClamp::Fixed(v)),
                _ => Err(format!("'{s}' is not 'mtu' or an MSS of at least 88")),
            },
        }
    }
}

/// Which port a packet was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Inside,
    Outside,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// What the shell does with a packet after [`Nat::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the first `len` bytes of the (rewritten) buffer to the other port.
    Forward { len: usize },
    /// For the router itself: hand the first `len` bytes to the local stack of this port.
    Local { len: usize },
    /// Send [`Nat::reply`] back out of the port the packet came from; drop the packet.
    Reply(DropReason),
    /// Write the first `len` bytes back to the port they came from (hairpinning).
    Hairpin { len: usize },
    /// Write every packet of [`Nat::out`] to port `to` (a datagram fragmented for the
    /// port's MTU, or a reassembled one).
    Emit { to: Side },
    /// A fragment kept until its datagram is whole.
    Held,
    /// Drop, counted under the reason.
    Drop(DropReason),
}

/// How an inbound packet reaches an inside endpoint.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Through an existing session.
    Session(Endpoint),
    /// Through a DNAT rule (new session).
    Dnat(Endpoint),
    /// Through a mapping whose filter admits the remote (new session).
    Mapped(Endpoint),
}

macro_rules! drop_reasons {
    ($($name:ident => $text:literal,)*) => {
        /// Why a packet was not forwarded. Every reason has a counter in [`Stats`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($name,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$name => $text,)* }
            }
        }
    };
}

drop_reasons! {
    Truncated => "truncated",
    NotIpv4 => "not-ipv4",
    BadHeaderLength => "bad-ihl",
    BadTotalLength => "bad-total-length",
    BadIpChecksum => "bad-ip-checksum",
    BadTransportLength => "bad-transport-length",
    BadIcmpChecksum => "bad-icmp-checksum",
    BadQuotedPacket => "bad-quoted-packet",
    SpoofedSource => "spoofed-source",
    NotRouted => "not-routed",
    Fragment => "fragment-for-router",
    BadFragment => "bad-fragment",
    UnsupportedProtocol => "unsupported-protocol",
    UnsupportedIcmp => "unsupported-icmp",
    BadTcpFlags => "bad-tcp-flags",
    BadOffload => "bad-offload",
    NoSession => "no-session",
    IcmpErrorNoSession => "icmp-error-no-session",
    TtlExceeded => "ttl-exceeded",
    TooBig => "too-big",
    Filtered => "filtered",
    SynHeld => "syn-held",
    TableFull => "table-full",
    HostLimit => "host-limit",
    NoPort => "no-free-port",
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> DropReason {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::NotIpv4 => DropReason::NotIpv4,
            WireError::BadHeaderLength => DropReason::BadHeaderLength,
            WireError::BadTotalLength => DropReason::BadTotalLength,
            WireError::BadIpChecksum => DropReason::BadIpChecksum,
            WireError::BadTransportLength => DropReason::BadTransportLength,
            WireError::BadIcmpChecksum => DropReason::BadIcmpChecksum,
        }
    }
}

/// Packet counters of the core.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    pub local: u64,
    pub hairpinned: u64,
    pub fragments_held: u64,
    pub reassembled: u64,
    pub fragmented: u64,
    pub icmp_errors_sent: u64,
    pub icmp_errors_translated: u64,
    /// GSO super-packets forwarded whole (TUN offloads).
    pub gso_forwarded: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Stats {
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    fn count(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }
    /// Every drop reason with a non-zero count.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops[*r as usize]))
            .filter(|(_, n)| *n > 0)
    }
}

/// The translator.
pub struct Nat {
    cfg: NatConfig,
    table: Table,
    stats: Stats,
    reply: Vec<u8>,
    reasm: Reassembler,
    out: Vec<Vec<u8>>,
    held_syns: VecDeque<HeldSyn>,
    timer_out: Vec<Vec<u8>>,
    /// The offload state of the packet being processed: a partial checksum, and its
    /// segmentation if it is a GSO super-packet (see [`Nat::process_offload`]).
    offload: Offload,
}

/// How long an unsolicited inbound SYN is held before ICMP port unreachable (RFC 5382 REQ-4).
pub const SYN_HOLD: std::time::Duration = std::time::Duration::from_secs(6);
/// Most SYNs held at once; beyond, the oldest is dropped without an answer.
pub const MAX_HELD_SYNS: usize = 1024;

/// An inbound SYN refused by a mapping's filter, held for [`SYN_HOLD`].
#[derive(Debug)]
struct HeldSyn {
    deadline: Instant,
    key: SessionKey,
    /// The SYN as received, quoted in the ICMP error if it comes to that.
    quote: Vec<u8>,
}

type Step<T> = Result<T, DropReason>;

impl Nat {
    pub fn new(cfg: NatConfig) -> Nat {
        let mut table = Table::new(cfg.timeouts, cfg.filtering, cfg.limits);
        table.port_hold = cfg.port_hold;
        table.port_parity = cfg.port_parity;
        Self::reserve_ports(&mut table, &cfg);
        Nat {
            cfg,
            table,
            stats: Stats::default(),
            reply: Vec::with_capacity(icmp_err::MAX_ERROR_LEN),
            reasm: Reassembler::default(),
            out: Vec::new(),
            held_syns: VecDeque::new(),
            timer_out: Vec::new(),
            offload: Offload::NONE,
        }
    }

    fn reserve_ports(table: &mut Table, cfg: &NatConfig) {
        table.clear_reserved();
        for r in &cfg.dnat {
            table.reserve(r.protocol, r.first, r.last);
        }
        for p in &cfg.local_tcp_ports {
            table.reserve(Protocol::Tcp, *p, *p);
        }
    }

    /// Applies new DNAT rules, timeouts, filtering and table size; existing sessions are
    /// kept (a removed DNAT rule's open sessions run until they expire, as in conntrack).
    /// The addresses must not change.
    pub fn reconfigure(&mut self, cfg: NatConfig) {
        self.table.timeouts = cfg.timeouts;
        self.table.filtering = cfg.filtering;
        self.table.set_limits(cfg.limits);
        self.table.port_hold = cfg.port_hold;
        self.table.port_parity = cfg.port_parity;
        Self::reserve_ports(&mut self.table, &cfg);
        self.cfg = cfg;
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }
    pub fn table(&self) -> &Table {
        &self.table
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Counts a packet the I/O shell dropped before it reached [`Nat::process`].
    pub fn count_drop(&mut self, r: DropReason) {
        self.stats.count(r);
    }

    /// The packet to send back after [`Verdict::Reply`].
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// The packets to send after [`Verdict::Emit`].
    pub fn out(&self) -> &[Vec<u8>] {
        &self.out
    }

    /// The reassembly buffer's state (for counters).
    pub fn reassembler(&self) -> &Reassembler {
        &self.reasm
    }

    /// Expires idle sessions, incomplete datagrams and held SYNs; called by the event
    /// loop's timer. Packets to send as a result are in [`Nat::take_timer_output`].
    pub fn expire(&mut self, now: Instant, on_expire: impl FnMut(&SessionKey, &Session)) -> usize {
        self.reasm.expire(now);
        while self.held_syns.front().is_some_and(|h| h.deadline <= now) {
            let Some(h) = self.held_syns.pop_front() else {
                break;
            };
            // No outbound SYN came: RFC 5382 REQ-4 says port unreachable.
            if let Ok(q) = Ipv4::new_checked(&h.quote[..], Check::Quoted) {
                let mut pkt = Vec::new();
                icmp_err::build_error(
                    &mut pkt,
                    self.cfg.outside.addr,
                    icmp_type::DEST_UNREACHABLE,
                    unreachable::PORT,
                    0,
                    &q,
                );
                self.timer_out.push(pkt);
                self.stats.icmp_errors_sent += 1;
            }
        }
        self.table.expire(now, on_expire)
    }

    /// Packets the timer produced, for the outside port.
    pub fn take_timer_output(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.timer_out)
    }

    /// Holds an inbound SYN refused by the filter of the mapping on its port.
    fn hold_syn<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv4<T>,
        owner: Endpoint,
        remote: Endpoint,
        now: Instant,
    ) {
        let key = SessionKey {
            protocol: Protocol::Tcp,
            inside: owner,
            remote,
        };
        if self.held_syns.iter().any(|h| h.key == key) {
            return; // a retransmission: the first one's clock runs
        }
        if self.held_syns.len() >= MAX_HELD_SYNS {
            self.held_syns.pop_front();
        }
        let q = ip.as_bytes();
        self.held_syns.push_back(HeldSyn {
            deadline: now + SYN_HOLD,
            key,
            quote: q[..q.len().min(icmp_err::MAX_ERROR_LEN - 28)].to_vec(),
        });
    }

    /// Processes one packet read from `side` at `now`, rewriting `buf` in place.
    pub fn process(&mut self, side: Side, buf: &mut [u8], now: Instant) -> Verdict {
        let v = self.decide(side, buf, now).unwrap_or_else(Verdict::Drop);
        // A datagram larger than the port it leaves by (DF clear, or it would have been
        // answered "fragmentation needed") is fragmented for it. A GSO super-packet is
        // segmented by the kernel instead.
        let v = match v {
            Verdict::Forward { len }
                if len > self.mtu(side.other()) && self.offload.gso.is_none() =>
            {
                self.split(&mut buf[..len], side.other())
            }
            Verdict::Hairpin { len } if len > self.mtu(side) && self.offload.gso.is_none() => {
                self.split(&mut buf[..len], side)
            }
            v => v,
        };
        match v {
            Verdict::Forward { .. } if self.offload.gso.is_some() => {
                self.stats.gso_forwarded += 1;
                match side {
                    Side::Inside => self.stats.forwarded_out += 1,
                    Side::Outside => self.stats.forwarded_in += 1,
                }
            }
            // Fragments of a hairpinned datagram: counted as hairpinned only.
            Verdict::Emit { to } if to == side => {}
            Verdict::Forward { .. } | Verdict::Emit { .. } if side == Side::Inside => {
                self.stats.forwarded_out += 1
            }
            Verdict::Forward { .. } | Verdict::Emit { .. } => self.stats.forwarded_in += 1,
            Verdict::Local { .. } => self.stats.local += 1,
            Verdict::Hairpin { .. } => {}
            Verdict::Held => self.stats.fragments_held += 1,
            Verdict::Reply(r) => {
                self.stats.count(r);
                self.stats.icmp_errors_sent += 1;
            }
            Verdict::Drop(r) => self.stats.count(r),
        }
        v
    }

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
        if let Some(p) = off.csum {
            if !partial_translatable(buf, p, off.gso) {
                if off.gso.is_some() || !offload::complete(buf, p) {
                    *off = Offload::NONE;
                    self.stats.count(DropReason::BadOffload);
                    return Verdict::Drop(DropReason::BadOffload);
                }
                off.csum = None;
            }
        }
        self.offload = *off;
        let v = self.process(side, buf, now);
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
    fn csum(&self) -> Csum {
        match self.offload.csum {
            Some(_) => Csum::Partial,
            None => Csum::Full,
        }
    }

    fn decide(&mut self, side: Side, buf: &mut [u8], now: Instant) -> Step<Verdict> {
        match side {
            Side::Inside => self.outbound(buf, now),
            Side::Outside => self.inbound(buf, now),
        }
    }

    /// Puts `datagram` into [`Nat::out`], fragmented for the MTU of port `to`.
    fn split(&mut self, datagram: &mut [u8], to: Side) -> Verdict {
        if let Some(p) = self.offload.csum.take() {
            offload::complete(datagram, p);
        }
        self.out.clear();
        let mtu = self.mtu(to);
        if datagram.len() <= mtu {
            self.out.push(datagram.to_vec());
        } else {
            crate::wire::ipv4::fragment(datagram, mtu, &mut self.out);
            self.stats.fragmented += 1;
        }
        Verdict::Emit { to }
    }

    /// Holds a fragment; once its datagram is whole, translates it like any packet.
    fn reassemble(&mut self, side: Side, ip: Ipv4<&mut [u8]>, now: Instant) -> Step<Verdict> {
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

    /// Builds an ICMP error from the router about `ip` into `self.reply`.
    fn answer<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv4<T>,
        from: Side,
        t: u8,
        code: u8,
        rest: u32,
        why: DropReason,
    ) -> Verdict {
        if !icmp_err::may_answer(ip) {
            return Verdict::Drop(why);
        }
        let src = match from {
            Side::Inside => self.cfg.inside.addr,
            Side::Outside => self.cfg.outside.addr,
        };
        icmp_err::build_error(&mut self.reply, src, t, code, rest, ip);
        Verdict::Reply(why)
    }

    /// Is `src` impossible as the source of a packet from the inside network?
    fn spoofed(&self, src: Ipv4Addr) -> bool {
        !self.cfg.inside.contains(src) || src == self.cfg.inside.broadcast()
    }

    fn mtu(&self, side: Side) -> usize {
        match side {
            Side::Inside => self.cfg.mtu[0],
            Side::Outside => self.cfg.mtu[1],
        }
    }

    /// MSS clamping of a translated SYN leaving through `egress`.
    fn clamp_mss(&self, ip: &mut Ipv4<&mut [u8]>, t: &Transport, egress: Side) {
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
        let (src, dst) = (ip.src(), ip.dst());
        transport::clamp_mss(ip.payload_mut(), src, dst, max, self.csum());
    }

    /// RFC 1812 forwarding checks, made before any state is created: TTL, then the size
    /// against the MTU of the port the packet leaves by (`egress`).
    fn forwarding_checks<T: AsRef<[u8]>>(
        &mut self,
        ip: &Ipv4<T>,
        from: Side,
        egress: Side,
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
            let mtu = self.mtu(egress);
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
        if ip.total_len() > self.mtu(egress) && ip.dont_fragment() {
            let mtu = self.mtu(egress) as u32;
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

    fn outbound(&mut self, buf: &mut [u8], now: Instant) -> Step<Verdict> {
        let mut ip = Ipv4::new_checked(buf, Check::Full)?;
        let (src, dst) = (ip.src(), ip.dst());
        let local = Verdict::Local {
            len: ip.total_len(),
        };
        if dst == self.cfg.inside.addr {
            return Ok(local);
        }
        if dst == self.cfg.outside.addr {
            let hairpin = Protocol::from_number(ip.protocol())
                .filter(|_| !ip.is_fragment())
                .and_then(|p| Transport::new_checked(p, ip.payload()).ok())
                .filter(|t| self.hairpin_target_exists(t.protocol, t.dst_port));
            let Some(t) = hairpin else {
                return Ok(local); // for the router itself
            };
            if self.spoofed(src) {
                return Err(DropReason::SpoofedSource);
            }
            if !t.tcp_flags_valid() {
                return Err(DropReason::BadTcpFlags);
            }
            if let Some(v) = self.forwarding_checks(&ip, Side::Inside, Side::Inside) {
                return Ok(v);
            }
            return self.hairpin(ip, t, now);
        }
        if self.spoofed(src) {
            return Err(DropReason::SpoofedSource);
        }
        if self.cfg.inside.contains(dst)
            || dst.is_broadcast()
            || dst.is_multicast()
            || dst.is_unspecified()
        {
            return Err(DropReason::NotRouted);
        }
        if ip.is_fragment() {
            return self.reassemble(Side::Inside, ip, now);
        }
        let protocol =
            Protocol::from_number(ip.protocol()).ok_or(DropReason::UnsupportedProtocol)?;
        let t = Transport::new_checked(protocol, ip.payload())?;
        if let Some(v) = self.forwarding_checks(&ip, Side::Inside, Side::Outside) {
            return Ok(v);
        }
        if t.is_icmp_error() {
            return self.outbound_icmp_error(ip, now);
        }
        if protocol == Protocol::Icmp && !t.is_icmp_echo_request() {
            return Err(DropReason::UnsupportedIcmp);
        }
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        let key = SessionKey {
            protocol,
            inside: Endpoint::new(src, t.src_port),
            remote: Endpoint::new(
                dst,
                if protocol == Protocol::Icmp {
                    0
                } else {
                    t.dst_port
                },
            ),
        };
        let len = ip.total_len();
        let ext = match self.outbound_session(key, &t, &ip, now) {
            Ok(ext) => ext,
            Err(v) => return Ok(v),
        };
        ip.decrement_ttl();
        let csum = self.csum();
        transport::rewrite_endpoint_csum(
            &mut ip,
            protocol,
            End::Src,
            self.cfg.outside.addr,
            ext,
            csum,
        );
        self.clamp_mss(&mut ip, &t, Side::Outside);
        Ok(Verdict::Forward { len })
    }

    fn inbound(&mut self, buf: &mut [u8], now: Instant) -> Step<Verdict> {
        let mut ip = Ipv4::new_checked(buf, Check::Full)?;
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
            return self.reassemble(Side::Outside, ip, now);
        }
        let Some(protocol) = Protocol::from_number(ip.protocol()) else {
            return Ok(local); // the local stack answers "protocol unreachable"
        };
        let t = Transport::new_checked(protocol, ip.payload())?;
        if t.is_icmp_error() {
            return self.inbound_icmp_error(ip, now);
        }
        if protocol == Protocol::Icmp && !t.is_icmp_echo_reply() {
            return Ok(local); // echo requests and the rest are for the router
        }
        let remote = Endpoint::new(
            src,
            if protocol == Protocol::Icmp {
                0
            } else {
                t.src_port
            },
        );
        let len = ip.total_len();
        let Some(target) = self.inbound_target(protocol, t.dst_port, remote) else {
            let Some(owner) = self.table.port_owner(protocol, t.dst_port) else {
                return Ok(local); // nothing mapped: the router itself answers (RST, port unreachable)
            };
            if !t.tcp_flags_valid() {
                return Err(DropReason::BadTcpFlags);
            }
            // A mapping whose filter refuses this remote. A SYN may be the remote's half of
            // a simultaneous open: hold it (RFC 5382 REQ-4). Anything else is dropped.
            if protocol == Protocol::Tcp && t.has_flag(TcpFlags::SYN) && !t.has_flag(TcpFlags::ACK)
            {
                self.hold_syn(&ip, owner, remote, now);
                return Err(DropReason::SynHeld);
            }
            return Err(DropReason::Filtered);
        };
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        if let Some(v) = self.forwarding_checks(&ip, Side::Outside, Side::Inside) {
            return Ok(v);
        }
        let inside = self.inbound_session(target, protocol, t.dst_port, remote, &t, len, now)?;
        ip.decrement_ttl();
        self.to_inside(&mut ip, &t, inside);
        Ok(Verdict::Forward { len })
    }

    /// Rewrites the destination of a packet leaving by the inside port to `inside`, and
    /// clamps the MSS of a SYN for that port.
    fn to_inside(&self, ip: &mut Ipv4<&mut [u8]>, t: &Transport, inside: Endpoint) {
        let (addr, port) = (inside.addr, inside.port);
        transport::rewrite_endpoint_csum(ip, t.protocol, End::Dst, addr, port, self.csum());
        self.clamp_mss(ip, t, Side::Inside);
    }

    /// Where a packet from `remote` to external `port` goes: an existing session, a DNAT
    /// rule, or a mapping whose filter admits the remote. Creates nothing.
    fn inbound_target(
        &mut self,
        protocol: Protocol,
        port: u16,
        remote: Endpoint,
    ) -> Option<Target> {
        if let Some(key) = self.table.peek_in(protocol, port, remote) {
            return Some(Target::Session(key.inside));
        }
        if let Some(rule) = self.cfg.dnat.iter().find(|r| r.contains(protocol, port)) {
            return Some(Target::Dnat(Endpoint::new(
                rule.target,
                rule.target_port_for(port),
            )));
        }
        self.table
            .admits(protocol, port, remote)
            .map(Target::Mapped)
    }

    /// The session for an inbound packet to `target`, created if new, and touched.
    #[allow(clippy::too_many_arguments)]
    fn inbound_session(
        &mut self,
        target: Target,
        protocol: Protocol,
        port: u16,
        remote: Endpoint,
        t: &Transport,
        len: usize,
        now: Instant,
    ) -> Step<Endpoint> {
        let inside = match target {
            Target::Session(e) | Target::Dnat(e) | Target::Mapped(e) => e,
        };
        let key = SessionKey {
            protocol,
            inside,
            remote,
        };
        let flags = (protocol == Protocol::Tcp).then_some(t.tcp_flags);
        let session = match target {
            Target::Session(_) => {
                return match self.table.touch(&key, Direction::In, len, flags, now) {
                    Some(_) => Ok(inside),
                    None => Err(DropReason::NoSession),
                }
            }
            _ if t.has_flag(TcpFlags::RST) => return Err(DropReason::NoSession),
            Target::Dnat(_) => self.table.create_dnat(key, port, now).ok(),
            Target::Mapped(_) => self.table.create_out(key, now).ok(),
        };
        let session = session.ok_or(DropReason::TableFull)?;
        session.touch(Direction::In, len, flags, now);
        Ok(inside)
    }

    /// The external port of the outbound session `key`, creating the session (and its
    /// mapping) if needed; `Err` holds the verdict when none can be made.
    fn outbound_session<T: AsRef<[u8]>>(
        &mut self,
        key: SessionKey,
        t: &Transport,
        ip: &Ipv4<T>,
        now: Instant,
    ) -> Result<u16, Verdict> {
        let len = ip.total_len();
        let flags = (key.protocol == Protocol::Tcp).then_some(t.tcp_flags);
        let ext = match self.table.touch(&key, Direction::Out, len, flags, now) {
            Some(ext) => ext,
            None if t.has_flag(TcpFlags::RST) => return Err(Verdict::Drop(DropReason::NoSession)),
            None => match self.table.create_out(key, now) {
                Ok(s) => {
                    s.touch(Direction::Out, len, flags, now);
                    s.ext_port
                }
                Err(e) => {
                    let why = match e {
                        TableError::Full => DropReason::TableFull,
                        TableError::NoPort => DropReason::NoPort,
                        TableError::HostLimit => DropReason::HostLimit,
                    };
                    return Err(self.answer(
                        ip,
                        Side::Inside,
                        icmp_type::DEST_UNREACHABLE,
                        unreachable::ADMIN_PROHIBITED,
                        0,
                        why,
                    ));
                }
            },
        };
        if t.has_flag(TcpFlags::SYN) && !self.held_syns.is_empty() {
            // The inside host opens towards the remote whose SYN is held: drop that SYN
            // silently (RFC 5382 REQ-4); the remote's retransmission will now pass.
            self.held_syns.retain(|h| h.key != key);
        }
        Ok(ext)
    }

    /// Would a packet from inside to the router's outside address and `port` reach a
    /// host (RFC 4787 REQ-9 hairpinning) rather than the router itself?
    fn hairpin_target_exists(&self, protocol: Protocol, port: u16) -> bool {
        protocol != Protocol::Icmp
            && (self.cfg.dnat.iter().any(|r| r.contains(protocol, port))
                || self.table.port_in_use(protocol, port))
    }

    /// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): an inside host sent to the router's
    /// outside address. The packet is translated as if it had left (source becomes the
    /// outside address and the host's external port) and come back in (destination becomes
    /// the DNAT target or the mapping's owner), and goes back out of the inside port, so
    /// the target sees the external address and port as the source.
    fn hairpin(&mut self, mut ip: Ipv4<&mut [u8]>, t: Transport, now: Instant) -> Step<Verdict> {
        let outside = self.cfg.outside.addr;
        let protocol = t.protocol;
        let key = SessionKey {
            protocol,
            inside: Endpoint::new(ip.src(), t.src_port),
            remote: Endpoint::new(outside, t.dst_port),
        };
        let ext = match self.outbound_session(key, &t, &ip, now) {
            Ok(ext) => ext,
            Err(v) => return Ok(v),
        };
        let remote = Endpoint::new(outside, ext);
        let target = self
            .inbound_target(protocol, t.dst_port, remote)
            .ok_or(DropReason::NoSession)?;
        let len = ip.total_len();
        let inside = self.inbound_session(target, protocol, t.dst_port, remote, &t, len, now)?;
        ip.decrement_ttl();
        let csum = self.csum();
        transport::rewrite_endpoint_csum(&mut ip, protocol, End::Src, outside, ext, csum);
        self.to_inside(&mut ip, &t, inside);
        self.stats.hairpinned += 1;
        Ok(Verdict::Hairpin { len })
    }

    /// An ICMP error from outside about a packet the router translated on its way out:
    /// the quoted packet runs outside address:external port → remote.
    fn inbound_icmp_error(&mut self, mut ip: Ipv4<&mut [u8]>, _now: Instant) -> Step<Verdict> {
        let (qproto, qsrc, qdst, qt) = quoted_packet(ip.payload())?;
        if qsrc != self.cfg.outside.addr {
            return Err(DropReason::IcmpErrorNoSession);
        }
        let remote = Endpoint::new(
            qdst,
            if qproto == Protocol::Icmp {
                0
            } else {
                qt.dst_port
            },
        );
        let key = self
            .table
            .peek_in(qproto, qt.src_port, remote)
            .ok_or(DropReason::IcmpErrorNoSession)?;
        if let Some(v) = self.forwarding_checks(&ip, Side::Outside, Side::Inside) {
            return Ok(v);
        }
        rewrite_quoted(ip.payload_mut(), qproto, End::Src, key.inside)?;
        let len = ip.total_len();
        ip.set_dst(key.inside.addr);
        ip.decrement_ttl();
        self.stats.icmp_errors_translated += 1;
        Ok(Verdict::Forward { len })
    }

    /// An ICMP error from an inside host about a packet that reached it through the NAT:
    /// the quoted packet runs remote → inside endpoint.
    fn outbound_icmp_error(&mut self, mut ip: Ipv4<&mut [u8]>, _now: Instant) -> Step<Verdict> {
        let (qproto, qsrc, qdst, qt) = quoted_packet(ip.payload())?;
        if ip.dst() != qsrc {
            return Err(DropReason::BadQuotedPacket);
        }
        let key = SessionKey {
            protocol: qproto,
            inside: Endpoint::new(qdst, qt.dst_port),
            remote: Endpoint::new(
                qsrc,
                if qproto == Protocol::Icmp {
                    0
                } else {
                    qt.src_port
                },
            ),
        };
        let ext = self
            .table
            .peek_out(&key)
            .ok_or(DropReason::IcmpErrorNoSession)?
            .ext_port;
        let outside = Endpoint::new(self.cfg.outside.addr, ext);
        rewrite_quoted(ip.payload_mut(), qproto, End::Dst, outside)?;
        let len = ip.total_len();
        ip.set_src(self.cfg.outside.addr);
        ip.decrement_ttl();
        self.stats.icmp_errors_translated += 1;
        Ok(Verdict::Forward { len })
    }
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
fn gso_l4_header_len(protocol: u8, l4: &[u8]) -> usize {
    match (protocol, l4.get(12)) {
        (6, Some(b)) => usize::from(b >> 4) * 4,
        _ => 8,
    }
}

/// Parses the datagram quoted in an ICMP error message `icmp` (type, code, checksum,
/// 4 bytes, then the quoted IP header and at least 8 bytes of its payload).
fn quoted_packet(icmp: &[u8]) -> Step<(Protocol, Ipv4Addr, Ipv4Addr, Transport)> {
    let quoted = icmp.get(8..).ok_or(DropReason::BadQuotedPacket)?;
    let q = Ipv4::new_checked(quoted, Check::Quoted).map_err(|_| DropReason::BadQuotedPacket)?;
    let proto = Protocol::from_number(q.protocol()).ok_or(DropReason::BadQuotedPacket)?;
    if q.is_later_fragment() {
        return Err(DropReason::BadQuotedPacket);
    }
    let t = Transport::quoted(proto, q.payload()).map_err(|_| DropReason::BadQuotedPacket)?;
    if proto == Protocol::Icmp && !(t.is_icmp_echo_request() || t.is_icmp_echo_reply()) {
        return Err(DropReason::BadQuotedPacket); // no error about an error (RFC 1122 3.2.2)
    }
    Ok((proto, q.src(), q.dst(), t))
}

/// Rewrites one end of the datagram quoted in ICMP message `icmp` to `to`, then refreshes
/// the ICMP checksum over the whole message.
fn rewrite_quoted(icmp: &mut [u8], protocol: Protocol, end: End, to: Endpoint) -> Step<()> {
    {
        let quoted = icmp.get_mut(8..).ok_or(DropReason::BadQuotedPacket)?;
        let mut q =
            Ipv4::new_checked(quoted, Check::Quoted).map_err(|_| DropReason::BadQuotedPacket)?;
        transport::rewrite_endpoint(&mut q, protocol, end, to.addr, to.port);
    }
    transport::refresh_icmp_checksum(icmp);
    Ok(())
}

#[cfg(test)]
mod test;
