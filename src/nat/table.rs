//! The translation table: endpoint-independent mappings (RFC 4787 section 4.1 REQ-1,
//! RFC 5382 REQ-1, RFC 5508 REQ-1), sessions with filtering (RFC 4787 section 5 REQ-8,
//! RFC 5382 REQ-3), idle timeouts (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-2) and
//! the external port allocator (RFC 4787 REQ-3: port preservation when free, ranges
//! 1-1023 and 1024-65535 kept apart, no port overloading; RFC 6888: a released port is
//! held for [`PORT_HOLD`] (by default) before another host may get it; optionally, port
//! parity is kept, RFC 4787 REQ-4).
//!
//! * A *mapping* binds an inside endpoint (address, port or ICMP identifier) to one
//!   external port of the router's outside address, for every remote.
//! * A *session* is one (inside endpoint, remote endpoint) pair through a mapping or
//!   through a DNAT rule. Sessions carry the idle timer and the TCP state; a mapping lives
//!   while it has sessions.
//!
//! Sessions sit in an [`LruCache`] ordered by last use, so expiry walks from the least
//! recently used end and stops at the first session younger than the shortest timeout:
//! the cost of a sweep is the number of sessions idle longer than that, not the table size.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use lru::LruCache;

/// The table's hash maps use foldhash: several times cheaper per lookup than std's SipHash
/// on these small keys, and still seeded at random per process, so remotes cannot
/// precompute colliding keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use super::tcp_state::{Direction, TcpPhase, TcpTrack};
use super::time::Instant;
use crate::wire::transport::Protocol;

/// How long a released external port is kept from other inside hosts (RFC 6888 REQ-8's
/// recommendation; the same inside endpoint may take it back at once).
pub const PORT_HOLD: Duration = Duration::from_secs(120);

/// An IPv4 address and a port (or ICMP query identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl Endpoint {
    pub fn new(addr: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint { addr, port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// Idle timeouts per protocol and TCP phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub udp: Duration,
    pub tcp_established: Duration,
    pub tcp_transitory: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    /// RFC 4787 REQ-5 (UDP >= 2 min, 5 min recommended), RFC 5382 REQ-5 (established
    /// >= 2 h 4 min, transitory >= 4 min), RFC 5508 REQ-2 (ICMP query >= 60 s).
    fn default() -> Timeouts {
        Timeouts {
            udp: Duration::from_secs(300),
            tcp_established: Duration::from_secs(7440),
            tcp_transitory: Duration::from_secs(240),
            icmp: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    fn shortest(&self) -> Duration {
        self.udp
            .min(self.tcp_established)
            .min(self.tcp_transitory)
            .min(self.icmp)
    }
}

/// Bounds on the table (RFC 6888 REQ-4 asks for per-host limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_mappings: usize,
    pub max_mappings_per_host: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: 65536,
            max_mappings: 65536,
            max_mappings_per_host: 65536,
        }
    }
}

/// How often a session in use moves to the young end of the LRU (see [`Table::touch`]).
pub const PROMOTE_EVERY: Duration = Duration::from_secs(1);

/// Sessions examined from the least recently used end when looking for one to evict.
const EVICT_SCAN: usize = 64;

/// The shortest idle time the RFCs allow before a session may be removed: a session idle
/// at least this long may be evicted to make room when the table is full.
fn rfc_minimum_idle(protocol: Protocol, s: &Session) -> Duration {
    match protocol {
        Protocol::Udp => Duration::from_secs(120), // RFC 4787 REQ-5
        Protocol::Icmp => Duration::from_secs(60), // RFC 5508 REQ-2
        Protocol::Tcp => match s.tcp.phase() {
            TcpPhase::Established => Duration::from_secs(7440), // RFC 5382 REQ-5
            TcpPhase::Transitory => Duration::from_secs(240),
        },
    }
}

/// Which remotes may send to a mapping (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filtering {
    /// Any remote.
    EndpointIndependent,
    /// Remotes at an address the inside endpoint has sent to (RFC 4787 default here).
    #[default]
    AddressDependent,
    /// Only the exact remote endpoints the inside endpoint has sent to.
    AddressAndPortDependent,
}

impl std::str::FromStr for Filtering {
    type Err = String;
    fn from_str(s: &str) -> Result<Filtering, String> {
        match s {
            "endpoint-independent" | "eif" => Ok(Filtering::EndpointIndependent),
            "address-dependent" | "adf" => Ok(Filtering::AddressDependent),
            "address-and-port-dependent" | "apdf" => Ok(Filtering::AddressAndPortDependent),
            _ => Err(format!(
                "'{s}' is not endpoint-independent, address-dependent or address-and-port-dependent"
            )),
        }
    }
}

/// A session seen from the inside: protocol, inside endpoint, remote endpoint. For ICMP
/// queries the inside port is the identifier and the remote port is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub protocol: Protocol,
    pub inside: Endpoint,
    pub remote: Endpoint,
}

/// A session seen from the outside: protocol, external port, remote endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ExtKey {
    protocol: Protocol,
    port: u16,
    remote: Endpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MapKey {
    protocol: Protocol,
    inside: Endpoint,
}

#[derive(Debug)]
struct Mapping {
    ext_port: u16,
    sessions: u32,
}

#[derive(Debug)]
enum PortSlot {
    InUse(MapKey),
    Held { until: Instant, owner: MapKey },
}

/// One translated conversation.
#[derive(Debug, Clone)]
pub struct Session {
    /// The router's external port (or ICMP identifier) for this session.
    pub ext_port: u16,
    /// Created by a DNAT rule rather than a dynamic mapping.
    pub dnat: bool,
    pub tcp: TcpTrack,
    pub created: Instant,
    pub last_seen: Instant,
    /// When it last moved to the young end of the LRU.
    promoted: Instant,
    /// Packets and bytes seen, `[out, in]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl Session {
    /// Records a packet of `len` bytes in direction `dir` at `now`.
    pub fn touch(&mut self, dir: Direction, len: usize, tcp_flags: Option<u8>, now: Instant) {
        let i = match dir {
            Direction::Out => 0,
            Direction::In => 1,
        };
        self.packets[i] += 1;
        self.bytes[i] += len as u64;
        self.last_seen = now;
        if let Some(f) = tcp_flags {
            self.tcp.update(dir, f);
        }
    }
}

/// Why no session could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// `max_sessions` or `max_mappings` reached and nothing may be evicted.
    Full,
    /// The inside host has `max_mappings_per_host` mappings.
    HostLimit,
    /// No external port free in the range.
    NoPort,
}

/// Counters kept by the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub sessions_created: u64,
    pub sessions_expired: u64,
    /// Sessions removed early (idle past the RFC minimum) to make room.
    pub sessions_evicted: u64,
    pub mappings_created: u64,
    pub mappings_released: u64,
}

pub struct Table {
    sessions: LruCache<SessionKey, Session, foldhash::fast::RandomState>,
    by_ext: HashMap<ExtKey, SessionKey>,
    mappings: HashMap<MapKey, Mapping>,
    ports: HashMap<(Protocol, u16), PortSlot>,
    held: VecDeque<(Protocol, u16, Instant)>,
    /// Sessions per (protocol, external port, remote address): address-dependent filtering.
    remote_addrs: HashMap<(Protocol, u16, Ipv4Addr), u32>,
    /// External ports never allocated dynamically: DNAT ranges and local services.
    reserved: Vec<(Protocol, u16, u16)>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    /// How long a released port is kept from other hosts (default [`PORT_HOLD`]).
    pub port_hold: Duration,
    /// Keep the parity of the inside port when another port must be chosen (RFC 4787 REQ-4).
    pub port_parity: bool,
    limits: Limits,
    /// Mappings per inside address.
    host_mappings: HashMap<Ipv4Addr, usize>,
    rng: u32,
    pub stats: TableStats,
}

impl Table {
    pub fn new(timeouts: Timeouts, filtering: Filtering, limits: Limits) -> Table {
        Table {
            sessions: LruCache::unbounded_with_hasher(Default::default()),
            by_ext: HashMap::default(),
            mappings: HashMap::default(),
            ports: HashMap::default(),
            held: VecDeque::new(),
            remote_addrs: HashMap::default(),
            reserved: Vec::new(),
            timeouts,
            filtering,
            port_hold: PORT_HOLD,
            port_parity: false,
            limits,
            host_mappings: HashMap::default(),
            rng: 0x9e37_79b9,
            stats: TableStats::default(),
        }
    }

    /// Keeps `first..=last` of `protocol` out of dynamic allocation.
    pub fn reserve(&mut self, protocol: Protocol, first: u16, last: u16) {
        self.reserved.push((protocol, first, last));
    }

    /// Forgets every reservation (before reserving the new set on reconfiguration).
    pub fn clear_reserved(&mut self) {
        self.reserved.clear();
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Makes room for one session if the table is full, evicting the least recently used
    /// session that has been idle at least the RFC minimum for its kind.
    fn make_room(&mut self, now: Instant) -> Result<(), TableError> {
        if self.sessions.len() < self.limits.max_sessions {
            return Ok(());
        }
        let victim = self
            .sessions
            .iter()
            .rev()
            .take(EVICT_SCAN)
            .find(|(k, s)| now.since(s.last_seen) >= rfc_minimum_idle(k.protocol, s))
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.remove(&k, now);
                self.stats.sessions_evicted += 1;
                Ok(())
            }
            None => Err(TableError::Full),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
    pub fn mapping_count(&self) -> usize {
        self.mappings.len()
    }

    /// The idle timeout that applies to `s` now.
    pub fn timeout_of(&self, protocol: Protocol, s: &Session) -> Duration {
        match protocol {
            Protocol::Udp => self.timeouts.udp,
            Protocol::Icmp => self.timeouts.icmp,
            Protocol::Tcp => match s.tcp.phase() {
                TcpPhase::Established => self.timeouts.tcp_established,
                TcpPhase::Transitory => self.timeouts.tcp_transitory,
            },
        }
    }

    /// The session `key` as a packet at `now` would find it (tests look at it this way;
    /// the core uses [`Table::touch`]).
    #[cfg(test)]
    pub fn get_out(&mut self, key: &SessionKey, now: Instant) -> Option<&mut Session> {
        if now.since(self.sessions.peek(key)?.promoted) >= PROMOTE_EVERY {
            self.sessions.promote(key);
            let s = self.sessions.peek_mut(key)?;
            s.promoted = now;
            return Some(s);
        }
        self.sessions.peek_mut(key)
    }

    /// Records a packet of session `key` ([`Session::touch`]) and returns the session's
    /// external port; `None` if there is no such session. One hash lookup. The session
    /// moves to the young end of the LRU at most once per [`PROMOTE_EVERY`] (a second
    /// lookup): relinking the list touches its neighbours, cache misses in a large table,
    /// and the expiry sweep runs once a second anyway.
    pub fn touch(
        &mut self,
        key: &SessionKey,
        dir: Direction,
        len: usize,
        tcp_flags: Option<u8>,
        now: Instant,
    ) -> Option<u16> {
        let s = self.sessions.peek_mut(key)?;
        s.touch(dir, len, tcp_flags, now);
        let ext = s.ext_port;
        if now.since(s.promoted) >= PROMOTE_EVERY {
            s.promoted = now;
            self.sessions.promote(key);
        }
        Some(ext)
    }

    /// The session for an outbound ICMP error's quoted packet: not refreshed (RFC 5508).
    pub fn peek_out(&self, key: &SessionKey) -> Option<&Session> {
        self.sessions.peek(key)
    }

    /// The key of the session a packet from `remote` to external `port` belongs to. Only
    /// the outside index is read: nothing is refreshed (the caller refreshes the session
    /// it then translates with [`Table::touch`]; ICMP errors refresh nothing).
    pub fn peek_in(&self, protocol: Protocol, port: u16, remote: Endpoint) -> Option<SessionKey> {
        self.by_ext
            .get(&ExtKey {
                protocol,
                port,
                remote,
            })
            .copied()
    }

    /// The inside endpoint whose mapping owns external `port`, if filtering lets `remote`
    /// open a new session through it.
    pub fn admits(&self, protocol: Protocol, port: u16, remote: Endpoint) -> Option<Endpoint> {
        let owner = match self.ports.get(&(protocol, port)) {
            Some(PortSlot::InUse(mk)) => mk.inside,
            _ => return None,
        };
        let allowed = match self.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => {
                self.remote_addrs
                    .contains_key(&(protocol, port, remote.addr))
            }
            Filtering::AddressAndPortDependent => false,
        };
        allowed.then_some(owner)
    }

    fn is_reserved(&self, protocol: Protocol, port: u16) -> bool {
        self.reserved
            .iter()
            .any(|&(p, a, b)| p == protocol && (a..=b).contains(&port))
    }

    fn port_free(&self, protocol: Protocol, port: u16, me: &MapKey, now: Instant) -> bool {
        if self.is_reserved(protocol, port) {
            return false;
        }
        match self.ports.get(&(protocol, port)) {
            None => true,
            Some(PortSlot::InUse(_)) => false,
            Some(PortSlot::Held { until, owner }) => *until <= now || owner == me,
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32: spreads the search start (RFC 6056 in spirit), deterministic in tests.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// An external port for `me`: its own port if free, else one from the same range.
    fn allocate(&mut self, me: &MapKey, now: Instant) -> Option<u16> {
        let want = me.inside.port;
        let (lo, hi) = match me.protocol {
            Protocol::Icmp => (0u16, 65535u16),
            _ if want < 1024 => (1, 1023),
            _ => (1024, 65535),
        };
        if want >= lo && self.port_free(me.protocol, want, me, now) {
            return Some(want);
        }
        let parity = self.port_parity && me.protocol != Protocol::Icmp;
        let span = (hi - lo) as u32 + 1;
        let start = self.next_random() % span;
        (0..span)
            .map(|i| lo + ((start + i) % span) as u16)
            .filter(|p| !parity || p % 2 == want % 2)
            .find(|&p| self.port_free(me.protocol, p, me, now))
    }

    fn insert(&mut self, key: SessionKey, ext_port: u16, dnat: bool, now: Instant) -> &mut Session {
        self.by_ext.insert(
            ExtKey {
                protocol: key.protocol,
                port: ext_port,
                remote: key.remote,
            },
            key,
        );
        if !dnat {
            *self
                .remote_addrs
                .entry((key.protocol, ext_port, key.remote.addr))
                .or_insert(0) += 1;
        }
        self.stats.sessions_created += 1;
        // Callers create a session only after a lookup for `key` missed.
        self.sessions.get_or_insert_mut(key, || Session {
            ext_port,
            dnat,
            tcp: TcpTrack::default(),
            created: now,
            last_seen: now,
            promoted: now,
            packets: [0; 2],
            bytes: [0; 2],
        })
    }

    /// A new session through the inside endpoint's mapping, creating the mapping if needed.
    pub fn create_out(
        &mut self,
        key: SessionKey,
        now: Instant,
    ) -> Result<&mut Session, TableError> {
        self.make_room(now)?;
        let mk = MapKey {
            protocol: key.protocol,
            inside: key.inside,
        };
        let ext_port = match self.mappings.get_mut(&mk) {
            Some(m) => {
                m.sessions += 1;
                m.ext_port
            }
            None => {
                if self.mappings.len() >= self.limits.max_mappings {
                    return Err(TableError::Full);
                }
                let per_host = self.host_mappings.entry(mk.inside.addr).or_insert(0);
                if *per_host >= self.limits.max_mappings_per_host {
                    return Err(TableError::HostLimit);
                }
                *per_host += 1;
                let port = match self.allocate(&mk, now) {
                    Some(p) => p,
                    None => {
                        self.release_host_mapping(mk.inside.addr);
                        return Err(TableError::NoPort);
                    }
                };
                self.mappings.insert(
                    mk,
                    Mapping {
                        ext_port: port,
                        sessions: 1,
                    },
                );
                self.ports.insert((mk.protocol, port), PortSlot::InUse(mk));
                self.stats.mappings_created += 1;
                port
            }
        };
        Ok(self.insert(key, ext_port, false, now))
    }

    /// A new session opened from outside through a DNAT rule on external `ext_port`.
    pub fn create_dnat(
        &mut self,
        key: SessionKey,
        ext_port: u16,
        now: Instant,
    ) -> Result<&mut Session, TableError> {
        self.make_room(now)?;
        Ok(self.insert(key, ext_port, true, now))
    }

    /// The inside endpoint whose mapping holds external `port`.
    pub fn port_owner(&self, protocol: Protocol, port: u16) -> Option<Endpoint> {
        match self.ports.get(&(protocol, port)) {
            Some(PortSlot::InUse(mk)) => Some(mk.inside),
            _ => None,
        }
    }

    /// Is external `port` held by a mapping now?
    pub fn port_in_use(&self, protocol: Protocol, port: u16) -> bool {
        matches!(self.ports.get(&(protocol, port)), Some(PortSlot::InUse(_)))
    }

    fn remove(&mut self, key: &SessionKey, now: Instant) -> Option<Session> {
        let s = self.sessions.pop(key)?;
        self.by_ext.remove(&ExtKey {
            protocol: key.protocol,
            port: s.ext_port,
            remote: key.remote,
        });
        if s.dnat {
            return Some(s);
        }
        let rk = (key.protocol, s.ext_port, key.remote.addr);
        if let Some(n) = self.remote_addrs.get_mut(&rk) {
            *n -= 1;
            if *n == 0 {
                self.remote_addrs.remove(&rk);
            }
        }
        let mk = MapKey {
            protocol: key.protocol,
            inside: key.inside,
        };
        if let Some(m) = self.mappings.get_mut(&mk) {
            m.sessions = m.sessions.saturating_sub(1);
            if m.sessions == 0 {
                let port = m.ext_port;
                self.mappings.remove(&mk);
                self.release_host_mapping(mk.inside.addr);
                let until = now + self.port_hold;
                self.ports
                    .insert((key.protocol, port), PortSlot::Held { until, owner: mk });
                self.held.push_back((key.protocol, port, until));
                self.stats.mappings_released += 1;
            }
        }
        Some(s)
    }

    fn release_host_mapping(&mut self, host: Ipv4Addr) {
        if let Some(n) = self.host_mappings.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.host_mappings.remove(&host);
            }
        }
    }

    /// Removes every session idle past its timeout at `now`, calling `on_expire` for each,
    /// and frees external ports whose hold time is over. Returns how many sessions expired.
    pub fn expire(
        &mut self,
        now: Instant,
        mut on_expire: impl FnMut(&SessionKey, &Session),
    ) -> usize {
        let shortest = self.timeouts.shortest();
        let mut dead = Vec::new();
        for (k, s) in self.sessions.iter().rev() {
            if s.promoted + shortest > now {
                // Every later session was promoted later, and was last seen after that.
                break;
            }
            if s.last_seen + self.timeout_of(k.protocol, s) <= now {
                dead.push(*k);
            }
        }
        for k in &dead {
            if let Some(s) = self.remove(k, now) {
                on_expire(k, &s);
            }
        }
        self.stats.sessions_expired += dead.len() as u64;
        while let Some(&(p, port, until)) = self.held.front() {
            if until > now {
                break;
            }
            self.held.pop_front();
            if matches!(self.ports.get(&(p, port)), Some(PortSlot::Held { until: u, .. }) if *u == until)
            {
                self.ports.remove(&(p, port));
            }
        }
        dead.len()
    }

    /// Sessions from most to least recently used.
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionKey, &Session)> {
        self.sessions.iter()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const IN1: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 101);
    const IN2: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
    const R1: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
    const R2: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);

    fn key(p: Protocol, inside: (Ipv4Addr, u16), remote: (Ipv4Addr, u16)) -> SessionKey {
        SessionKey {
            protocol: p,
            inside: Endpoint::new(inside.0, inside.1),
            remote: Endpoint::new(remote.0, remote.1),
        }
    }

    fn limits(max_sessions: usize) -> Limits {
        Limits {
            max_sessions,
            ..Limits::default()
        }
    }

    fn table() -> Table {
        Table::new(
            Timeouts::default(),
            Filtering::AddressDependent,
            limits(1000),
        )
    }

    #[test]
    fn port_is_preserved_when_free_and_reused_per_endpoint() {
        let mut t = table();
        let t0 = Instant::ZERO;
        let a = t
            .create_out(key(Protocol::Udp, (IN1, 40000), (R1, 53)), t0)
            .unwrap()
            .ext_port;
        assert_eq!(a, 40000);
        // Endpoint-independent: a second remote gets the same external port.
        let b = t
            .create_out(key(Protocol::Udp, (IN1, 40000), (R2, 53)), t0)
            .unwrap()
            .ext_port;
        assert_eq!(b, 40000);
        assert_eq!(t.mapping_count(), 1);
        // Another host with the same source port gets another port, same range.
        let c = t
            .create_out(key(Protocol::Udp, (IN2, 40000), (R1, 53)), t0)
            .unwrap()
            .ext_port;
        assert_ne!(c, 40000);
        assert!(c >= 1024);
    }

    #[test]
    fn low_ports_stay_low() {
        let mut t = table();
        t.create_out(key(Protocol::Udp, (IN1, 123), (R1, 123)), Instant::ZERO)
            .unwrap();
        let p = t
            .create_out(key(Protocol::Udp, (IN2, 123), (R1, 123)), Instant::ZERO)
            .unwrap()
            .ext_port;
        assert!((1..1024).contains(&p) && p != 123, "got {p}");
    }

    #[test]
    fn reserved_ports_are_never_allocated() {
        let mut t = table();
        t.reserve(Protocol::Tcp, 8888, 8888);
        let p = t
            .create_out(key(Protocol::Tcp, (IN1, 8888), (R1, 80)), Instant::ZERO)
            .unwrap()
            .ext_port;
        assert_ne!(p, 8888);
        // Another protocol is not affected.
        let u = t
            .create_out(key(Protocol::Udp, (IN1, 8888), (R1, 80)), Instant::ZERO)
            .unwrap()
            .ext_port;
        assert_eq!(u, 8888);
    }

    #[test]
    fn udp_expires_after_its_timeout_and_not_before() {
        let mut t = table();
        let k = key(Protocol::Udp, (IN1, 5000), (R1, 53));
        t.create_out(k, Instant::ZERO).unwrap();
        assert_eq!(t.expire(Instant::from_secs(299), |_, _| {}), 0);
        assert!(t.get_out(&k, Instant::ZERO).is_some());
        // The lookup above refreshed nothing (no touch): last_seen is still 0.
        let mut seen = Vec::new();
        assert_eq!(t.expire(Instant::from_secs(300), |k, _| seen.push(*k)), 1);
        assert_eq!(seen, vec![k]);
        assert!(t.get_out(&k, Instant::ZERO).is_none());
        assert_eq!(t.mapping_count(), 0);
    }

    #[test]
    fn traffic_keeps_a_session_alive() {
        let mut t = table();
        let k = key(Protocol::Icmp, (IN1, 7), (R1, 0));
        t.create_out(k, Instant::ZERO).unwrap();
        for s in (50..=500).step_by(50) {
            let now = Instant::from_secs(s);
            t.get_out(&k, now)
                .unwrap()
                .touch(Direction::Out, 84, None, now);
            assert_eq!(t.expire(now, |_, _| {}), 0);
        }
        assert_eq!(t.expire(Instant::from_secs(560), |_, _| {}), 1);
    }

    #[test]
    fn lazy_promotion_never_hides_an_idle_session_from_the_sweep() {
        let mut t = table();
        let busy = key(Protocol::Udp, (IN1, 1), (R1, 1));
        let idle = key(Protocol::Udp, (IN1, 2), (R1, 1));
        t.create_out(busy, Instant::ZERO).unwrap();
        t.create_out(idle, Instant::from_millis(400)).unwrap();
        // The busy session sends every 300 ms, so it moves up at most once a second and
        // sits behind the idle one for stretches; the idle one must still expire on time.
        let mut now = Instant::ZERO;
        let udp = t.timeouts.udp;
        while now.since(Instant::from_millis(400)) < udp {
            t.get_out(&busy, now)
                .unwrap()
                .touch(Direction::Out, 84, None, now);
            assert_eq!(t.expire(now, |_, _| {}), 0, "at {now:?}");
            now = now + Duration::from_millis(300);
        }
        let mut gone = Vec::new();
        t.expire(now, |k, _| gone.push(*k));
        assert_eq!(gone, [idle]);
        assert!(t.get_out(&busy, now).is_some());
    }

    #[test]
    fn tcp_timeouts_follow_the_state() {
        use crate::wire::transport::TcpFlags;
        let mut t = table();
        let k = key(Protocol::Tcp, (IN1, 40000), (R1, 80));
        let s = t.create_out(k, Instant::ZERO).unwrap();
        s.touch(Direction::Out, 60, Some(TcpFlags::SYN), Instant::ZERO);
        // Only a SYN: transitory, 240 s.
        assert_eq!(t.expire(Instant::from_secs(239), |_, _| {}), 0);
        let s = t.get_out(&k, Instant::ZERO).unwrap();
        s.touch(
            Direction::In,
            60,
            Some(TcpFlags::SYN | TcpFlags::ACK),
            Instant::from_secs(239),
        );
        // Established: 7440 s from the last packet.
        assert_eq!(t.expire(Instant::from_secs(239 + 7439), |_, _| {}), 0);
        let s = t.get_out(&k, Instant::ZERO).unwrap();
        s.touch(
            Direction::In,
            40,
            Some(TcpFlags::RST),
            Instant::from_secs(8000),
        );
        assert_eq!(t.expire(Instant::from_secs(8239), |_, _| {}), 0);
        assert_eq!(t.expire(Instant::from_secs(8240), |_, _| {}), 1);
    }

    #[test]
    fn old_established_sessions_do_not_hide_young_expired_ones() {
        use crate::wire::transport::TcpFlags;
        let mut t = table();
        let est = key(Protocol::Tcp, (IN1, 1), (R1, 1));
        let s = t.create_out(est, Instant::ZERO).unwrap();
        s.touch(Direction::Out, 60, Some(TcpFlags::SYN), Instant::ZERO);
        s.touch(
            Direction::In,
            60,
            Some(TcpFlags::SYN | TcpFlags::ACK),
            Instant::ZERO,
        );
        let udp = key(Protocol::Udp, (IN1, 2), (R1, 2));
        t.create_out(udp, Instant::from_secs(10)).unwrap();
        // The established session is older (LRU end) but not expired; the UDP one is.
        assert_eq!(t.expire(Instant::from_secs(310), |_, _| {}), 1);
        assert!(t.get_out(&est, Instant::ZERO).is_some());
        assert!(t.get_out(&udp, Instant::ZERO).is_none());
    }

    #[test]
    fn released_port_is_held_for_120_s_from_other_hosts() {
        let mut t = Table::new(
            Timeouts::default(),
            Filtering::AddressDependent,
            limits(1000),
        );
        let k1 = key(Protocol::Udp, (IN1, 6000), (R1, 53));
        t.create_out(k1, Instant::ZERO).unwrap();
        t.expire(Instant::from_secs(300), |_, _| {});
        // IN2 wants 6000 too; the port is held.
        let k2 = key(Protocol::Udp, (IN2, 6000), (R1, 53));
        let p = t.create_out(k2, Instant::from_secs(301)).unwrap().ext_port;
        assert_ne!(p, 6000);
        // IN1 itself gets its port back at once.
        let k3 = key(Protocol::Udp, (IN1, 6000), (R2, 53));
        assert_eq!(
            t.create_out(k3, Instant::from_secs(302)).unwrap().ext_port,
            6000
        );
        // After the hold and release, a third host can have it.
        t.expire(Instant::from_secs(302 + 300), |_, _| {});
        t.expire(Instant::from_secs(302 + 300 + 120), |_, _| {});
        let k4 = key(
            Protocol::Udp,
            (Ipv4Addr::new(192, 168, 122, 5), 6000),
            (R1, 53),
        );
        assert_eq!(
            t.create_out(k4, Instant::from_secs(800)).unwrap().ext_port,
            6000
        );
    }

    #[test]
    fn filtering_modes() {
        let r1 = Endpoint::new(R1, 53);
        let r1_other_port = Endpoint::new(R1, 9999);
        let r2 = Endpoint::new(R2, 53);
        for (mode, expect) in [
            (Filtering::EndpointIndependent, [true, true]),
            (Filtering::AddressDependent, [true, false]),
            (Filtering::AddressAndPortDependent, [false, false]),
        ] {
            let mut t = Table::new(Timeouts::default(), mode, limits(1000));
            let k = key(Protocol::Udp, (IN1, 7000), (r1.addr, r1.port));
            let ext = t.create_out(k, Instant::ZERO).unwrap().ext_port;
            assert_eq!(
                t.admits(Protocol::Udp, ext, r1_other_port).is_some(),
                expect[0],
                "{mode:?}"
            );
            assert_eq!(
                t.admits(Protocol::Udp, ext, r2).is_some(),
                expect[1],
                "{mode:?}"
            );
            assert!(t.admits(Protocol::Udp, ext + 1, r1).is_none());
        }
    }

    #[test]
    fn full_table_refuses() {
        let mut t = Table::new(Timeouts::default(), Filtering::AddressDependent, limits(2));
        t.create_out(key(Protocol::Udp, (IN1, 1), (R1, 1)), Instant::ZERO)
            .unwrap();
        t.create_out(key(Protocol::Udp, (IN1, 2), (R1, 1)), Instant::ZERO)
            .unwrap();
        assert_eq!(
            t.create_out(key(Protocol::Udp, (IN1, 3), (R1, 1)), Instant::ZERO)
                .unwrap_err(),
            TableError::Full
        );
    }

    #[test]
    fn full_table_evicts_only_sessions_idle_past_the_rfc_minimum() {
        let mut t = Table::new(Timeouts::default(), Filtering::AddressDependent, limits(2));
        t.create_out(key(Protocol::Udp, (IN1, 1), (R1, 1)), Instant::ZERO)
            .unwrap();
        t.create_out(
            key(Protocol::Udp, (IN1, 2), (R1, 1)),
            Instant::from_secs(100),
        )
        .unwrap();
        // At 119 s nobody has been idle 120 s: refused.
        assert_eq!(
            t.create_out(
                key(Protocol::Udp, (IN1, 3), (R1, 1)),
                Instant::from_secs(119)
            )
            .unwrap_err(),
            TableError::Full
        );
        // At 120 s the oldest may go (before its 300 s timeout).
        t.create_out(
            key(Protocol::Udp, (IN1, 3), (R1, 1)),
            Instant::from_secs(120),
        )
        .unwrap();
        assert_eq!(t.stats.sessions_evicted, 1);
        assert!(t
            .get_out(&key(Protocol::Udp, (IN1, 1), (R1, 1)), Instant::ZERO)
            .is_none());
        assert!(t
            .get_out(&key(Protocol::Udp, (IN1, 2), (R1, 1)), Instant::ZERO)
            .is_some());
    }

    #[test]
    fn per_host_mapping_limit() {
        let mut t = Table::new(
            Timeouts::default(),
            Filtering::AddressDependent,
            Limits {
                max_mappings_per_host: 2,
                ..Limits::default()
            },
        );
        for p in 1..=2 {
            t.create_out(key(Protocol::Tcp, (IN1, p), (R1, 80)), Instant::ZERO)
                .unwrap();
        }
        // More sessions through an existing mapping are fine; a third mapping is not.
        t.create_out(key(Protocol::Tcp, (IN1, 1), (R2, 80)), Instant::ZERO)
            .unwrap();
        assert_eq!(
            t.create_out(key(Protocol::Tcp, (IN1, 3), (R1, 80)), Instant::ZERO)
                .unwrap_err(),
            TableError::HostLimit
        );
        // Another host is not affected.
        t.create_out(key(Protocol::Tcp, (IN2, 3), (R1, 80)), Instant::ZERO)
            .unwrap();
        // Released mappings give the host room again.
        t.expire(Instant::from_secs(240), |_, _| {});
        t.create_out(
            key(Protocol::Tcp, (IN1, 3), (R1, 80)),
            Instant::from_secs(240),
        )
        .unwrap();
    }

    #[test]
    fn inbound_lookup_finds_the_session() {
        let mut t = table();
        let k = key(Protocol::Tcp, (IN2, 9999), (R1, 50270));
        t.create_dnat(k, 8888, Instant::ZERO).unwrap();
        let found = t
            .peek_in(Protocol::Tcp, 8888, Endpoint::new(R1, 50270))
            .unwrap();
        assert_eq!(found, k);
        assert!(t.get_out(&found, Instant::ZERO).unwrap().dnat);
        assert!(t
            .peek_in(Protocol::Tcp, 8888, Endpoint::new(R1, 50271))
            .is_none());
    }
}
