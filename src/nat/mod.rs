//! The pure NAT core: takes one IPv4 packet, the port it arrived on and the time, rewrites
//! it in place and says what to do with it. No I/O and no clock: every rule is unit-tested
//! with literal packets and a fake time.
//!
//! The sans-I/O interface, in the manner of quinn-proto: [`Nat::process`] (a packet in,
//! a [`Verdict`] out; a forwarded packet is rewritten in the caller's buffer),
//! [`Nat::poll_transmit`] (the packets the core made itself: ICMP errors, fragments),
//! [`Nat::poll_timeout`] and [`Nat::handle_timeout`] (expiry at the exact instant due).
//!
//! One file per concern, each naming the RFC sections it follows:
//! * [`outbound`]: NAPT of TCP, UDP and ICMP echo from the inside network to the outside
//!   address, with endpoint-independent mappings ([`table`], [`ports`]);
//! * [`inbound`]: replies through sessions, static DNAT ([`dnat`]), filtering;
//! * [`hairpin`]: inside to inside through the outside address;
//! * [`icmp_error`]: ICMP errors translated both ways, quoted headers rewritten;
//! * [`syn_hold`]: unsolicited inbound SYNs held, then refused (RFC 5382 REQ-4);
//! * [`forward`]: the router's forwarding checks (TTL, MTU), fragmentation, reassembly
//!   ([`reassembly`]), ICMP errors from the router, MSS clamping;
//! * [`offload`]: partial checksums and GSO super-packets from TUN offloads;
//! * [`stats`]: drop reasons and counters; [`tcp_state`], [`timeouts`]: RFC 7857 tracking;
//! * [`state`]: the sessions as a value, saved and restored across a restart.
//!
//! Packets for the router's own addresses are not translated here: the verdict is
//! [`Verdict::Local`] and the router core hands them to its smoltcp interface.

pub mod cidr;
pub mod dnat;
pub mod endpoint;
pub mod filtering;
mod forward;
pub mod frag6;
pub mod ftp;
mod hairpin;
mod icmp_error;
pub mod icmp_limit;
mod inbound;
pub mod index;
pub mod nat64;
mod offload;
mod outbound;
pub mod ports;
pub mod prefix64;
pub mod reassembly;
pub mod session;
pub mod sessions;
pub mod state;
pub mod stats;
mod syn_hold;
pub mod syn_proxy;
pub mod table;
pub mod tcp_state;
pub mod time;
pub mod timeouts;
mod v6;
pub mod xlat;

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::wire::offload::Offload;
use crate::wire::transport::Protocol;
use icmp_limit::{IcmpLimit, TokenBucket};
use reassembly::Reassembler;
use syn_hold::HeldSyns;

pub use cidr::{Cidr, Ipv4Cidr, Ipv6Cidr};
pub use dnat::{AnyDnat, DnatRule};
pub use endpoint::{Address, Endpoint, MapKey, SessionKey};
pub use sessions::Prefetch;
pub use stats::{DropReason, Stats};
pub use syn_hold::{MAX_HELD_SYNS, SYN_HOLD};
pub use syn_proxy::SynCookies;
pub use table::{Filtering, Limits, Session, Table, TableError};
pub use tcp_state::Direction;
pub use time::Instant;
pub use timeouts::Timeouts;

use offload::gso_l4_header_len;
pub use offload::partial_translatable6;

/// The core's hash maps use foldhash: several times cheaper per lookup than std's SipHash
/// on these small keys, and still seeded at random per process, so remotes cannot
/// precompute colliding keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How far a packet may grow in front when it is translated: an IPv6 header is 20 bytes
/// longer than an IPv4 header without options (NAT64, RFC 7915 section 4). The driver
/// reads each packet this far into its buffer, so that `Router::handle_in` can translate
/// it there instead of copying it.
pub const HEADROOM: usize = 20;

/// [`Nat::prefetch`] works from this many sessions on (`table_scale`: below about 30,000
/// the table is in the caches, and looking a packet up one more time costs more than it
/// saves).
const PREFETCH_FROM: usize = 32_768;

/// Everything the core needs to know, fixed at start: one address family's (IPv4 by
/// default; a dual-stack router has one core per family).
#[derive(Debug, Clone)]
pub struct NatConfig<A = Ipv4Addr> {
    /// The router's address and network on the inside port.
    pub inside: Cidr<A>,
    /// The router's address and network on the outside port.
    pub outside: Cidr<A>,
    /// Largest datagram sent on each port, `[inside, outside]`.
    pub mtu: [usize; 2],
    /// Lower the MSS option of forwarded SYNs to this (RFC 4459 section 3.2); `None`: off.
    pub clamp_mss: Option<MssClamp>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    pub dnat: Vec<DnatRule<A>>,
    /// Port mappings made by the hosts themselves (PCP, NAT-PMP, UPnP IGD): one port
    /// each, forwarded like `dnat`, and the port its target's own outbound traffic leaves
    /// by too (RFC 6887 section 11.1: one mapping both ways).
    pub port_maps: Vec<DnatRule<A>>,
    /// SSDP searches from inside (UDP to 239.255.255.250:1900) are the router's own
    /// (UPnP IGD discovery): delivered to its inside address.
    pub ssdp: bool,
    /// The FTP helper (`--alg ftp`, IPv4 only).
    pub alg_ftp: bool,
    /// TCP ports served by the router itself on its outside address (never allocated).
    pub local_tcp_ports: Vec<u16>,
    pub limits: Limits,
    /// How long a released external port is kept from other hosts.
    pub port_hold: std::time::Duration,
    /// Keep port parity when the inside port cannot be preserved.
    pub port_parity: bool,
    /// The rate limit on ICMP errors the router sends.
    pub icmp_limit: IcmpLimit,
    /// Seeds the choice of external ports when the inside one is taken (fixed at start).
    pub seed: u64,
    /// Most half-open TCP sessions one port forward may hold (RFC 7857 section 3.1).
    pub max_half_open: usize,
    /// When SYNs to port forwards are answered with cookies ([`syn_proxy`]).
    pub syn_cookies: SynCookies,
    /// What the core does to a forwarded packet: NAPT always for IPv4; for IPv6 also
    /// prefix translation or plain routing (`--ipv6`).
    pub mode: Mode,
    /// NAT64 is on (IPv4 core only): stand-in addresses of IPv6 hosts
    /// ([`nat64::is_stand_in`]) count as inside hosts for packets the translator hands
    /// in, and a datagram for one is sized for the IPv6 inside port.
    pub nat64: bool,
}

/// How the IPv6 core forwards (`--ipv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// NAPT: every inside host appears as the outside address (NAT66).
    #[default]
    Napt,
    /// RFC 6296 prefix translation: stateless, one to one, checksum-neutral, ports kept.
    Npt,
    /// Routing without translation (inside hosts have addresses the outside reaches).
    Route,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Napt => "nat",
            Mode::Npt => "npt",
            Mode::Route => "route",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "nat" => Ok(Mode::Napt),
            "npt" => Ok(Mode::Npt),
            "route" => Ok(Mode::Route),
            _ => Err(format!("'{s}' is not nat, npt or route")),
        }
    }
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
            port_maps: Vec::new(),
            ssdp: false,
            alg_ftp: false,
            local_tcp_ports: vec![843],
            limits: Limits::default(),
            port_hold: ports::PORT_HOLD,
            port_parity: false,
            icmp_limit: IcmpLimit::default(),
            seed: 0x9e37_79b9,
            max_half_open: Limits::default().max_sessions / 4,
            syn_cookies: SynCookies::default(),
            mode: Mode::Napt,
            nat64: false,
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
    /// The port's index in `[inside, outside]` arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Inside => 0,
            Side::Outside => 1,
        }
    }
    /// The port at `index` of `[inside, outside]` arrays (anything but 0 is the outside).
    pub fn of_index(index: usize) -> Side {
        if index == 0 {
            Side::Inside
        } else {
            Side::Outside
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
    /// Answered with an ICMP error from the router, queued for the port the packet came
    /// from ([`Nat::poll_transmit`]); the packet itself is dropped.
    Reply(DropReason),
    /// Write the first `len` bytes back to the port they came from (hairpinning).
    Hairpin { len: usize },
    /// The datagram was queued for port `to` ([`Nat::poll_transmit`]): fragmented for the
    /// port's MTU, or reassembled.
    Emit { to: Side },
    /// A fragment kept until its datagram is whole.
    Held,
    /// Drop, counted under the reason.
    Drop(DropReason),
}

/// A packet the core made, and the port to write it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub port: Side,
    pub packet: Vec<u8>,
    /// What to tell the kernel of it (TUN offloads): only a translated super-packet
    /// (NAT64) carries any.
    pub offload: Offload,
}

impl Transmit {
    pub fn new(port: Side, packet: Vec<u8>) -> Transmit {
        Transmit {
            port,
            packet,
            offload: Offload::NONE,
        }
    }
}

/// The translator of one address family (IPv4 by default).
pub struct Nat<A: Address = Ipv4Addr> {
    cfg: NatConfig<A>,
    table: Table<A>,
    stats: Stats,
    reasm: Reassembler,
    /// Packets the core made, for [`Nat::poll_transmit`].
    queue: VecDeque<Transmit>,
    held_syns: HeldSyns<A>,
    /// IPv6 fragments in flight (the IPv6 core only).
    frag6: frag6::Fragments,
    /// Tokens for the ICMP errors the router sends.
    icmp_bucket: TokenBucket,
    /// The time of the packet or timeout being handled.
    clock: Instant,
    /// The FTP helper's control connections and expectations.
    ftp: ftp::Ftp,
    /// The offload state of the packet being processed: a partial checksum, and its
    /// segmentation if it is a GSO super-packet (see [`Nat::process_offload`]).
    offload: Offload,
    /// The packet being processed came from the NAT64 translator (its source may be a
    /// stand-in address).
    via64: bool,
    /// The SYN proxy: cookie key and the connections it opened.
    proxy: syn_proxy::SynProxy<A>,
    /// A sequence field the proxy moves in the packet being processed.
    seq_fix: Option<syn_proxy::SeqFix>,
}

type Step<T> = Result<T, DropReason>;

impl<A: Address> Nat<A> {
    pub fn new(cfg: NatConfig<A>) -> Nat<A> {
        let mut table = Table::new(cfg.timeouts, cfg.filtering, cfg.limits);
        table.ports.hold = cfg.port_hold;
        table.ports.parity = cfg.port_parity;
        table.ports.seed(cfg.seed);
        Self::reserve_ports(&mut table, &cfg);
        let cfg_seed = cfg.seed;
        Nat {
            icmp_bucket: TokenBucket::new(cfg.icmp_limit),
            cfg,
            table,
            stats: Stats::default(),
            reasm: Reassembler::default(),
            queue: VecDeque::new(),
            held_syns: HeldSyns::default(),
            frag6: frag6::Fragments::default(),
            clock: Instant::ZERO,
            offload: Offload::NONE,
            via64: false,
            ftp: ftp::Ftp::default(),
            proxy: syn_proxy::SynProxy::new(cfg_seed),
            seq_fix: None,
        }
    }

    fn reserve_ports(table: &mut Table<A>, cfg: &NatConfig<A>) {
        table.ports.clear_reserved();
        for r in &cfg.dnat {
            table.ports.reserve(r.protocol, r.first, r.last);
        }
        for p in &cfg.local_tcp_ports {
            table.ports.reserve(Protocol::Tcp, *p, *p);
        }
        for r in &cfg.port_maps {
            table.ports.reserve(r.protocol, r.first, r.first);
        }
        table.ports.set_preferred(cfg.port_maps.iter().map(|r| {
            let inside = Endpoint::new(r.target, r.target_port_for(r.first));
            (
                MapKey {
                    protocol: r.protocol,
                    inside,
                },
                r.first,
            )
        }));
    }

    /// Applies new DNAT rules, timeouts, filtering and table size; existing sessions are
    /// kept (a removed DNAT rule's open sessions run until they expire, as in conntrack).
    /// The addresses must not change; the seed is kept from the start.
    pub fn reconfigure(&mut self, cfg: NatConfig<A>) {
        let cfg = NatConfig {
            seed: self.cfg.seed,
            ..cfg
        };
        self.table.set_timeouts(cfg.timeouts);
        self.table.filtering = cfg.filtering;
        self.table.set_limits(cfg.limits);
        self.table.ports.hold = cfg.port_hold;
        self.table.ports.parity = cfg.port_parity;
        self.icmp_bucket.set_limit(cfg.icmp_limit);
        Self::reserve_ports(&mut self.table, &cfg);
        self.cfg = cfg;
    }

    pub fn config(&self) -> &NatConfig<A> {
        &self.cfg
    }
    pub fn table(&self) -> &Table<A> {
        &self.table
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Counts a packet the I/O shell dropped before it reached [`Nat::process`].
    pub fn count_drop(&mut self, r: DropReason) {
        self.stats.count(r);
    }

    /// The next packet the core made itself (ICMP errors, fragments, answers to held
    /// SYNs), with the port to write it to. Call until `None` after each
    /// [`Nat::process`] and [`Nat::handle_timeout`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// May the router send an ICMP error now (the rate limit, [`icmp_limit`])? Counts the
    /// ones held back. The core asks for its own errors; the router core asks for its
    /// local stacks'.
    pub fn allow_icmp_error(&mut self, now: Instant) -> bool {
        if self.icmp_bucket.take(now) {
            return true;
        }
        self.stats.icmp_errors_suppressed += 1;
        false
    }

    /// When [`Nat::handle_timeout`] next has work: a session or an incomplete datagram may
    /// time out, a held SYN is due its answer, or a held port is freed. `None`: never,
    /// until a packet comes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.table.next_deadline(),
            self.reasm.next_deadline(),
            self.next_held_syn_deadline(),
            self.frag6.next_deadline(),
            self.ftp.expects.values().map(|e| e.until).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Starts bringing in what translating `packet`, read from `side`, will read of the
    /// session table at `stage` (issue 18: at a million sessions the index bucket and the
    /// slot are each a cache miss). For a batch of packets: [`Prefetch::Index`] for all,
    /// then [`Prefetch::Slot`] for all, then [`Nat::process`] each. A hint only: a packet
    /// it cannot read (a fragment, options it does not skip, another protocol) is passed
    /// over, and nothing changes.
    pub fn prefetch(&self, side: Side, packet: &[u8], stage: Prefetch) {
        if !self.wants_prefetch() {
            return;
        }
        let Some((protocol, src, dst, l4)) = Self::ends(packet) else {
            return;
        };
        let Some(l4) = packet.get(l4..l4 + 8) else {
            return;
        };
        let port = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
        let (sport, dport) = match protocol {
            Protocol::Icmp => (port(4), 0),
            _ => (port(0), port(2)),
        };
        match side {
            Side::Inside => {
                let key = SessionKey {
                    protocol,
                    inside: Endpoint::new(src, sport),
                    remote: Endpoint::new(dst, dport),
                };
                self.table.prefetch(Ok(&key), stage);
            }
            Side::Outside => {
                let (port, remote_port) = match protocol {
                    Protocol::Icmp => (sport, 0),
                    _ => (dport, sport),
                };
                let ext = sessions::ExtKey {
                    protocol,
                    port,
                    remote: Endpoint::new(src, remote_port),
                };
                self.table.prefetch(Err(&ext), stage);
            }
        }
    }

    /// Is the table large enough for [`Nat::prefetch`] to do anything? A small table is in
    /// the caches already: prefetching would only cost.
    pub fn wants_prefetch(&self) -> bool {
        self.table.len() >= PREFETCH_FROM
    }

    /// The protocol, source, destination and transport offset of an unfragmented IPv4 or
    /// IPv6 packet of this core's family with no extension headers; `None` otherwise.
    fn ends(p: &[u8]) -> Option<(Protocol, A, A, usize)> {
        let addr = |b: &[u8]| {
            let mut v = 0u128;
            for x in b {
                v = v << 8 | u128::from(*x);
            }
            A::from_bits128(v)
        };
        if A::BITS == 32 {
            let ihl = usize::from(*p.first()? & 0x0f) * 4;
            if p[0] >> 4 != 4 || ihl < 20 || p.len() < ihl {
                return None;
            }
            if u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
                return None; // a fragment
            }
            let protocol = Protocol::from_number(p[9])?;
            Some((protocol, addr(&p[12..16]), addr(&p[16..20]), ihl))
        } else {
            let protocol = match (p.first()? >> 4, *p.get(6)?) {
                (6, 6) => Protocol::Tcp,
                (6, 17) => Protocol::Udp,
                (6, 58) => Protocol::Icmp,
                _ => return None,
            };
            Some((protocol, addr(p.get(8..24)?), addr(p.get(24..40)?), 40))
        }
    }

    /// The reassembly buffer's state (for counters).
    pub fn reassembler(&self) -> &Reassembler {
        &self.reasm
    }

    /// Counts what became of a packet read from `side`.
    fn count_verdict(&mut self, side: Side, v: Verdict) {
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
    }
}

impl Nat {
    /// Expires idle sessions (calling `on_expire` for each), incomplete datagrams and held
    /// SYNs at `now`. Packets to send as a result come from [`Nat::poll_transmit`].
    /// Returns how many sessions expired.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        on_expire: impl FnMut(&SessionKey, &Session),
    ) -> usize {
        self.clock = self.clock.max(now);
        self.reasm.expire(now);
        self.expire_held_syns(now);
        let n = self.table.expire(now, on_expire);
        self.sweep_proxy(now);
        n
    }

    /// Processes one packet read from `side` at `now`, rewriting `buf` in place.
    pub fn process(&mut self, side: Side, buf: &mut [u8], now: Instant) -> Verdict {
        self.clock = self.clock.max(now);
        self.seq_fix = None;
        let v = self.decide(side, buf, now).unwrap_or_else(Verdict::Drop);
        if let (Verdict::Forward { len }, Some(_)) = (v, self.seq_fix) {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let full = self.offload.csum.is_none();
            self.apply_seq_fix(&mut buf[ihl..len], full);
        }
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
        self.count_verdict(side, v);
        v
    }

    /// Inlined into [`Nat::process`], as the IPv6 one's is: returned through memory,
    /// the verdict was copied with a load wider than the stores that made it (issue 18).
    #[inline(always)]
    fn decide(&mut self, side: Side, buf: &mut [u8], now: Instant) -> Step<Verdict> {
        match side {
            Side::Inside => self.outbound(buf, now),
            Side::Outside => self.inbound(buf, now),
        }
    }
}

#[cfg(test)]
pub(crate) mod test;
