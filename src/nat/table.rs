//! The translation table: endpoint-independent mappings (RFC 4787 section 4.1 REQ-1,
//! RFC 5382 REQ-1, RFC 5508 REQ-1), sessions with filtering (RFC 4787 section 5 REQ-8,
//! RFC 5382 REQ-3) and idle timeouts (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-2).
//! External ports come from [`Ports`] (RFC 4787 REQ-3/4, RFC 6888).
//!
//! * A *mapping* binds an inside endpoint (address, port or ICMP identifier) to one
//!   external port of the router's outside address, for every remote.
//! * A *session* is one (inside endpoint, remote endpoint) pair through a mapping or
//!   through a DNAT rule. Sessions carry the idle timer and the TCP state; a mapping lives
//!   while it has sessions.
//!
//! Sessions sit in a slab ordered by last use ([`super::sessions`]), so expiry walks from the least
//! recently used end and stops at the first session younger than the shortest timeout:
//! the cost of a sweep is the number of sessions idle longer than that, not the table
//! size. The same walk yields the next instant a session can expire
//! ([`Table::next_deadline`]), so the caller sleeps until then instead of sweeping on a
//! fixed tick.
//!
//! The table is generic over the address family ([`Address`]); `Table` alone is IPv4.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::endpoint::{Address, Endpoint, MapKey, SessionKey};
pub use super::filtering::Filtering;
use super::index::{CountMap, MAX_SLOTS};
use super::ports::Ports;
pub use super::session::Session;
use super::sessions::{ExtKey, Prefetch, Sessions};
use super::tcp_state::{Direction, TcpPhase, TcpSeg};
use super::time::Instant;
use super::timeouts::{rfc_minimum_idle, Timeouts};
use super::HashMap;
use crate::wire::transport::{Protocol, TcpFlags};

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

/// A sweep that walked past more live sessions than this (long-lived connections idle
/// longer than the shortest timeout) waits at least [`BUSY_SWEEP_GAP`] before the next,
/// so the walk costs what the old one-second sweep did however many deadlines come.
const BUSY_SWEEP: usize = 1024;
const BUSY_SWEEP_GAP: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Mapping {
    ext_port: u16,
    sessions: u32,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableStats {
    pub sessions_created: u64,
    pub sessions_expired: u64,
    /// Sessions removed early (idle past the RFC minimum) to make room.
    pub sessions_evicted: u64,
    /// Half-open sessions from outside removed to make room, or over a rule's cap.
    pub half_open_evicted: u64,
    pub mappings_created: u64,
    pub mappings_released: u64,
}

pub struct Table<A: Address = Ipv4Addr> {
    /// The sessions, in LRU order, indexed from both sides.
    sessions: Sessions<A>,
    mappings: HashMap<MapKey<A>, Mapping>,
    /// The outside address's ports.
    pub ports: Ports<A>,
    /// Sessions per (protocol, external port, remote address): address-dependent filtering.
    remote_addrs: CountMap<(Protocol, u16, A), foldhash::fast::RandomState>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    limits: Limits,
    /// Mappings per inside address.
    host_mappings: HashMap<A, usize>,
    /// No session can expire before this (as of the last sweep, creation or close).
    next_expiry: Option<Instant>,
    /// Per port forward (protocol, first port of the rule): the sessions opened through it
    /// from outside with a SYN, oldest first. Entries whose session has since completed
    /// its handshake or gone are dropped as they are met, so a list's length bounds how
    /// many of its sessions are half-open.
    half_open: HashMap<(Protocol, u16), VecDeque<SessionKey<A>>>,
    pub stats: TableStats,
}

impl<A: Address> Table<A> {
    pub fn new(timeouts: Timeouts, filtering: Filtering, limits: Limits) -> Table<A> {
        let mut t = Table {
            sessions: Sessions::default(),
            mappings: HashMap::default(),
            ports: Ports::default(),
            remote_addrs: CountMap::new(
                limits.max_sessions,
                Default::default(),
                (Protocol::Udp, 0, A::from_bits128(0)),
            ),
            timeouts,
            filtering,
            limits,
            host_mappings: HashMap::default(),
            next_expiry: None,
            half_open: HashMap::default(),
            stats: TableStats::default(),
        };
        t.set_limits(limits);
        t
    }

    pub fn set_limits(&mut self, limits: Limits) {
        let limits = Limits {
            max_sessions: limits.max_sessions.min(MAX_SLOTS),
            ..limits
        };
        self.sessions.set_max(limits.max_sessions);
        self.remote_addrs.set_max(limits.max_sessions);
        self.limits = limits;
    }

    /// New timeouts apply to existing sessions too; the next sweep is due at once.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
        self.next_expiry = Some(Instant::ZERO);
    }

    /// Makes room for one session if the table is full: first by evicting the oldest
    /// session a port forward opened from outside and never saw complete (a SYN flood's
    /// leftovers), then the least recently used session that has been idle at least the
    /// RFC minimum for its kind.
    fn make_room(&mut self, now: Instant) -> Result<(), TableError> {
        if self.sessions.len() < self.limits.max_sessions {
            return Ok(());
        }
        let longest = self
            .half_open
            .iter()
            .max_by_key(|(_, q)| q.len())
            .map(|(rule, _)| *rule);
        if let Some(rule) = longest {
            if self.evict_half_open(rule, now) {
                return Ok(());
            }
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

    /// Notes that `key`, opened from outside through the port forward `rule` with a SYN,
    /// is half-open. Call [`Table::cap_half_open`] before creating it.
    pub fn note_half_open(&mut self, rule: (Protocol, u16), key: SessionKey<A>) {
        self.half_open.entry(rule).or_default().push_back(key);
    }

    /// Keeps the half-open sessions of port forward `rule` below `cap`, evicting the oldest
    /// to make room for one more: a flood cannot fill the table through one rule, and a
    /// real client's handshake, which completes in a round trip, is not what goes.
    pub fn cap_half_open(&mut self, rule: (Protocol, u16), cap: usize, now: Instant) {
        while self
            .half_open
            .get(&rule)
            .is_some_and(|q| q.len() >= cap.max(1))
            && self.evict_half_open(rule, now)
        {}
    }

    /// Does port forward `rule` hold `cap` half-open sessions (the SYN proxy's trigger)?
    /// Drops the oldest entries that no longer are half-open first, so the answer is
    /// current at the old end.
    pub fn half_open_full(&mut self, rule: (Protocol, u16), cap: usize) -> bool {
        let Some(q) = self.half_open.get_mut(&rule) else {
            return false;
        };
        while let Some(key) = q.front() {
            let half_open = self
                .sessions
                .get(key)
                .is_some_and(|s| s.tcp.phase() == TcpPhase::HalfOpenIn);
            if half_open {
                break;
            }
            q.pop_front();
        }
        q.len() >= cap.max(1)
    }

    /// Evicts the oldest session of port forward `rule` that is still half-open, dropping
    /// the entries met on the way that no longer are. False if there was none.
    fn evict_half_open(&mut self, rule: (Protocol, u16), now: Instant) -> bool {
        while let Some(key) = self.half_open.get_mut(&rule).and_then(|q| q.pop_front()) {
            let half_open = self
                .sessions
                .get(&key)
                .is_some_and(|s| s.tcp.phase() == TcpPhase::HalfOpenIn);
            if half_open {
                self.remove(&key, now);
                self.stats.half_open_evicted += 1;
                return true;
            }
        }
        self.half_open.remove(&rule);
        false
    }

    /// Sessions opened from outside through port forwards and perhaps still half-open (an
    /// upper bound: entries are pruned as they are met).
    pub fn half_open_tracked(&self) -> usize {
        self.half_open.values().map(VecDeque::len).sum()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
    /// Does inside host `a` hold a mapping?
    pub fn host_has_mappings(&self, a: A) -> bool {
        self.host_mappings.get(&a).is_some_and(|n| *n > 0)
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
                TcpPhase::HalfOpenIn => self.timeouts.tcp_half_open,
            },
        }
    }

    /// The session `key` as a packet at `now` would find it (tests look at it this way;
    /// the core uses [`Table::touch`]).
    #[cfg(test)]
    pub fn get_out(&mut self, key: &SessionKey<A>, now: Instant) -> Option<&mut Session> {
        if now.since(self.sessions.get(key)?.promoted()) >= PROMOTE_EVERY {
            self.sessions.promote(key);
            let s = self.sessions.get_mut(key)?;
            s.promoted_s = super::session::secs(now);
            return Some(s);
        }
        self.sessions.get_mut(key)
    }

    /// Records a packet of session `key` ([`Session::touch`]) and returns the session's
    /// external port; `None` if there is no such session. One hash lookup. The session
    /// moves to the young end of the LRU at most once per [`PROMOTE_EVERY`] (a second
    /// lookup): relinking the list touches its neighbours, cache misses in a large table.
    pub fn touch<S: Into<TcpSeg>>(
        &mut self,
        key: &SessionKey<A>,
        dir: Direction,
        len: usize,
        tcp: Option<S>,
        now: Instant,
    ) -> Option<u16> {
        let tcp: Option<TcpSeg> = tcp.map(Into::into);
        let tcp_flags = tcp.map(|t| t.flags);
        let s = self.sessions.get_mut(key)?;
        s.touch(dir, len, tcp, now);
        let ext = s.ext_port;
        if now.since(s.promoted()) >= PROMOTE_EVERY {
            s.promoted_s = super::session::secs(now);
            self.sessions.promote(key);
        }
        if tcp_flags.is_some_and(|f| f & (TcpFlags::FIN | TcpFlags::RST) != 0) {
            // A closing connection may now time out sooner than the sweep planned.
            self.expiry_no_later_than(now + self.timeouts.shortest());
        }
        Some(ext)
    }

    fn expiry_no_later_than(&mut self, t: Instant) {
        self.next_expiry = Some(self.next_expiry.map_or(t, |n| n.min(t)));
    }

    /// May this RST segment end session `key` (RFC 5961 section 3)? True when there is
    /// no such session (the caller finds that out next).
    pub fn rst_acceptable(&self, key: &SessionKey<A>, dir: Direction, seg: &TcpSeg) -> bool {
        self.sessions
            .get(key)
            .is_none_or(|s| s.tcp.rst_acceptable(dir, seg))
    }

    /// The session for an outbound ICMP error's quoted packet: not refreshed (RFC 5508).
    pub fn peek_out(&self, key: &SessionKey<A>) -> Option<&Session> {
        self.sessions.get(key)
    }

    /// Starts bringing in what finding the session of `key` (inside view) or `ext`
    /// (outside view) will read at `stage` ([`Prefetch`]).
    #[inline]
    pub fn prefetch(&self, key: Result<&SessionKey<A>, &ExtKey<A>>, stage: Prefetch) {
        self.sessions.prefetch(key, stage);
    }

    /// The key of the session a packet from `remote` to external `port` belongs to. Only
    /// the outside index is read: nothing is refreshed (the caller refreshes the session
    /// it then translates with [`Table::touch`]; ICMP errors refresh nothing).
    pub fn peek_in(
        &self,
        protocol: Protocol,
        port: u16,
        remote: Endpoint<A>,
    ) -> Option<SessionKey<A>> {
        self.sessions
            .find_ext(&ExtKey {
                protocol,
                port,
                remote,
            })
            .copied()
    }

    /// The inside endpoint whose mapping owns external `port`, if filtering lets `remote`
    /// open a new session through it.
    pub fn admits(
        &self,
        protocol: Protocol,
        port: u16,
        remote: Endpoint<A>,
    ) -> Option<Endpoint<A>> {
        let owner = self.ports.owner(protocol, port)?.inside;
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

    fn insert(
        &mut self,
        key: SessionKey<A>,
        ext_port: u16,
        dnat: bool,
        now: Instant,
    ) -> &mut Session {
        if !dnat {
            self.remote_addrs
                .increment((key.protocol, ext_port, key.remote.addr));
        }
        self.stats.sessions_created += 1;
        self.expiry_no_later_than(now + self.timeouts.shortest());
        // Callers create a session only after a lookup for `key` missed.
        self.sessions.insert(key, Session::new(ext_port, dnat, now))
    }

    /// A new session through the inside endpoint's mapping, creating the mapping if needed.
    pub fn create_out(
        &mut self,
        key: SessionKey<A>,
        now: Instant,
    ) -> Result<&mut Session, TableError> {
        self.make_room(now)?;
        let mk = key.mapping();
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
                let Some(port) = self.ports.allocate(&mk, now) else {
                    self.release_host_mapping(mk.inside.addr);
                    return Err(TableError::NoPort);
                };
                self.mappings.insert(
                    mk,
                    Mapping {
                        ext_port: port,
                        sessions: 1,
                    },
                );
                self.stats.mappings_created += 1;
                port
            }
        };
        Ok(self.insert(key, ext_port, false, now))
    }

    /// A new session opened from outside through a DNAT rule on external `ext_port`.
    pub fn create_dnat(
        &mut self,
        key: SessionKey<A>,
        ext_port: u16,
        now: Instant,
    ) -> Result<&mut Session, TableError> {
        self.make_room(now)?;
        Ok(self.insert(key, ext_port, true, now))
    }

    /// Says session `key` is no longer one the SYN proxy opened (its addresses carry a new
    /// connection).
    pub(super) fn unproxy(&mut self, key: &SessionKey<A>) {
        if let Some(s) = self.sessions.get_mut(key) {
            s.proxied = false;
        }
    }

    /// Restarts the idle time of session `key` without a packet (PCP's PEER); returns
    /// its external port and idle timeout.
    pub fn refresh(&mut self, key: &SessionKey<A>, now: Instant) -> Option<(u16, Duration)> {
        let s = self.sessions.get_mut(key)?;
        s.last_seen = now;
        let (port, s) = (s.ext_port, self.sessions.get(key)?);
        Some((port, self.timeout_of(key.protocol, s)))
    }

    /// The external port of mapping `mk`, if it exists.
    pub fn mapping_port(&self, mk: &MapKey<A>) -> Option<u16> {
        self.mappings.get(mk).map(|m| m.ext_port)
    }

    /// The inside endpoint whose mapping holds external `port`.
    pub fn port_owner(&self, protocol: Protocol, port: u16) -> Option<Endpoint<A>> {
        self.ports.owner(protocol, port).map(|mk| mk.inside)
    }

    /// Is external `port` held by a mapping now?
    pub fn port_in_use(&self, protocol: Protocol, port: u16) -> bool {
        self.ports.owner(protocol, port).is_some()
    }

    fn remove(&mut self, key: &SessionKey<A>, now: Instant) -> Option<Session> {
        let s = self.sessions.remove(key)?;
        if s.dnat {
            return Some(s);
        }
        self.remote_addrs
            .decrement(&(key.protocol, s.ext_port, key.remote.addr));
        let mk = key.mapping();
        if let Some(m) = self.mappings.get_mut(&mk) {
            m.sessions = m.sessions.saturating_sub(1);
            if m.sessions == 0 {
                let port = m.ext_port;
                self.mappings.remove(&mk);
                self.release_host_mapping(mk.inside.addr);
                self.ports.release(port, mk, now);
                self.stats.mappings_released += 1;
            }
        }
        Some(s)
    }

    fn release_host_mapping(&mut self, host: A) {
        if let Some(n) = self.host_mappings.get_mut(&host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.host_mappings.remove(&host);
            }
        }
    }

    /// Removes every session idle past its timeout at `now`, calling `on_expire` for each,
    /// and frees external ports whose hold time is over. Returns how many sessions expired.
    /// Also works out when the next session can expire ([`Table::next_deadline`]).
    pub fn expire(
        &mut self,
        now: Instant,
        mut on_expire: impl FnMut(&SessionKey<A>, &Session),
    ) -> usize {
        let shortest = self.timeouts.shortest();
        let mut dead = Vec::new();
        let mut next: Option<Instant> = None;
        let mut alive = 0usize;
        for (k, s) in self.sessions.iter().rev() {
            // (Promotion times are whole seconds, rounded down: this stops no earlier,
            // and plans the next sweep no later, than the exact times would.)
            let promoted = s.promoted();
            if promoted + shortest > now {
                // Every later session was promoted later, and was last seen after that:
                // none of them expires before this one's promotion + the shortest timeout.
                next = Some(next.map_or(promoted + shortest, |n| n.min(promoted + shortest)));
                break;
            }
            let deadline = s.last_seen + self.timeout_of(k.protocol, s);
            if deadline <= now {
                dead.push(*k);
            } else {
                alive += 1;
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        if alive > BUSY_SWEEP {
            next = next.map(|n| n.max(now + BUSY_SWEEP_GAP));
        }
        self.next_expiry = next;
        for k in &dead {
            if let Some(s) = self.remove(k, now) {
                on_expire(k, &s);
            }
        }
        self.stats.sessions_expired += dead.len() as u64;
        self.ports.expire(now);
        dead.len()
    }

    /// The earliest instant at which [`Table::expire`] has work: a session may time out
    /// or a held port be freed. `None`: nothing to expire, ever, until traffic comes.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.next_expiry, self.ports.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Puts back a session saved by an earlier run ([`super::state`]), as the youngest:
    /// restore sessions from the longest idle to the most recent. Its mapping takes the
    /// same external port, which must be free; limits apply as to a new session. An
    /// error says what in the saved state cannot be.
    pub fn restore(&mut self, key: SessionKey<A>, s: Session) -> Result<(), String> {
        if self.sessions.contains(&key) {
            return Err("the same session appears twice".into());
        }
        let ext = ExtKey {
            protocol: key.protocol,
            port: s.ext_port,
            remote: key.remote,
        };
        if self.sessions.find_ext(&ext).is_some() {
            return Err(format!(
                "external port {} toward {} is given to two sessions",
                s.ext_port, key.remote.addr
            ));
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return Err(format!(
                "more sessions than the table holds ({})",
                self.limits.max_sessions
            ));
        }
        if !s.dnat {
            let mk = key.mapping();
            match self.mappings.get_mut(&mk) {
                Some(m) if m.ext_port == s.ext_port => m.sessions += 1,
                Some(m) => {
                    return Err(format!(
                        "the mapping of {} has two external ports ({} and {})",
                        key.inside.addr, m.ext_port, s.ext_port
                    ))
                }
                None => {
                    if self.mappings.len() >= self.limits.max_mappings {
                        return Err(format!(
                            "more mappings than allowed ({})",
                            self.limits.max_mappings
                        ));
                    }
                    let per_host = self.host_mappings.get(&mk.inside.addr).copied();
                    if per_host.unwrap_or(0) >= self.limits.max_mappings_per_host {
                        return Err(format!(
                            "{} has more mappings than allowed per host ({})",
                            mk.inside.addr, self.limits.max_mappings_per_host
                        ));
                    }
                    self.ports.take(&mk, s.ext_port)?;
                    *self.host_mappings.entry(mk.inside.addr).or_insert(0) += 1;
                    self.mappings.insert(
                        mk,
                        Mapping {
                            ext_port: s.ext_port,
                            sessions: 1,
                        },
                    );
                }
            }
            self.remote_addrs
                .increment((key.protocol, s.ext_port, key.remote.addr));
        }
        // The sweep finds it by its own deadline; promoted = last seen keeps the LRU's
        // order the order of promotion that the sweep relies on.
        self.expiry_no_later_than(s.last_seen + self.timeout_of(key.protocol, &s));
        let mut s = s;
        s.promoted_s = super::session::secs(s.last_seen);
        self.sessions.insert(key, s);
        Ok(())
    }

    /// Sessions from most to least recently used.
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionKey<A>, &Session)> {
        self.sessions.iter()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::transport::TcpFlags;

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
        t.ports.reserve(Protocol::Tcp, 8888, 8888);
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
    fn next_deadline_is_the_instant_a_session_expires() {
        let mut t = table();
        assert_eq!(
            t.next_deadline(),
            None,
            "an empty table never needs a sweep"
        );
        t.create_out(
            key(Protocol::Udp, (IN1, 5000), (R1, 53)),
            Instant::from_secs(10),
        )
        .unwrap();
        // Before the first sweep only a lower bound is known: the shortest timeout (TCP
        // half-open, 30 s).
        let first = t.next_deadline().unwrap();
        assert_eq!(first, Instant::from_secs(10 + 30));
        assert_eq!(t.expire(first, |_, _| {}), 0);
        // The sweep looked at the session: its own deadline, to the millisecond.
        assert_eq!(t.next_deadline(), Some(Instant::from_secs(310)));
        assert_eq!(t.expire(Instant::from_millis(309_999), |_, _| {}), 0);
        assert_eq!(t.expire(Instant::from_secs(310), |_, _| {}), 1);
        // Then the released port's hold, then nothing.
        assert_eq!(t.next_deadline(), Some(Instant::from_secs(310 + 120)));
        t.expire(Instant::from_secs(430), |_, _| {});
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_closing_connection_brings_the_deadline_forward() {
        let mut t = table();
        let k = key(Protocol::Tcp, (IN1, 5000), (R1, 80));
        let t0 = Instant::ZERO;
        t.create_out(k, t0).unwrap();
        t.touch(&k, Direction::Out, 60, Some(TcpFlags::SYN), t0);
        t.touch(
            &k,
            Direction::In,
            60,
            Some(TcpFlags::SYN | TcpFlags::ACK),
            t0,
        );
        t.touch(&k, Direction::Out, 60, Some(TcpFlags::ACK), t0);
        t.expire(Instant::from_secs(60), |_, _| {});
        assert_eq!(
            t.next_deadline(),
            Some(Instant::from_secs(7440)),
            "established"
        );
        // An RST at 100 s: the session now goes 240 s later, not at 7440 s.
        t.touch(
            &k,
            Direction::In,
            40,
            Some(TcpFlags::RST),
            Instant::from_secs(100),
        );
        let d = t.next_deadline().unwrap();
        assert!(d <= Instant::from_secs(340), "{d:?}");
        let mut at = d;
        while t.expire(at, |_, _| {}) == 0 {
            at = t.next_deadline().unwrap();
            assert!(at <= Instant::from_secs(340));
        }
        assert_eq!(at, Instant::from_secs(340));
    }

    #[test]
    fn many_long_lived_sessions_do_not_make_sweeps_come_faster_than_a_second() {
        let mut t = Table::new(
            Timeouts::default(),
            Filtering::AddressDependent,
            limits(5000),
        );
        for i in 0..(BUSY_SWEEP as u16 + 10) {
            let k = key(Protocol::Tcp, (IN1, 10000 + i), (R1, 80));
            t.create_out(k, Instant::ZERO).unwrap();
            for (d, f) in [
                (Direction::Out, TcpFlags::SYN),
                (Direction::In, TcpFlags::SYN | TcpFlags::ACK),
                (Direction::Out, TcpFlags::ACK),
            ] {
                t.touch(&k, d, 60, Some(f), Instant::ZERO);
            }
        }
        // A UDP session due 500 ms after the walk: it waits for the next second.
        let u = key(Protocol::Udp, (IN1, 5000), (R1, 53));
        t.create_out(u, Instant::from_millis(100_500)).unwrap();
        t.expire(Instant::from_secs(400), |_, _| {});
        assert_eq!(t.next_deadline(), Some(Instant::from_secs(401)));
        assert_eq!(t.expire(Instant::from_secs(401), |_, _| {}), 1);
    }

    #[test]
    fn half_open_sessions_from_outside_go_first_and_are_capped_per_rule() {
        let mut t = Table::new(Timeouts::default(), Filtering::AddressDependent, limits(10));
        let rule = (Protocol::Tcp, 8888);
        let syn_in = |t: &mut Table, n: u16, now| {
            t.cap_half_open(rule, 4, now);
            let k = key(Protocol::Tcp, (IN2, 9999), (R1, 30000 + n));
            t.create_dnat(k, 8888, now)
                .unwrap()
                .touch(Direction::In, 60, Some(TcpFlags::SYN), now);
            t.note_half_open(rule, k);
            k
        };
        let t0 = Instant::ZERO;
        let first = syn_in(&mut t, 0, t0);
        // One completes its handshake: it is no longer half-open and is never evicted.
        let done = syn_in(&mut t, 1, t0);
        t.touch(
            &done,
            Direction::Out,
            60,
            Some(TcpFlags::SYN | TcpFlags::ACK),
            t0,
        );
        t.touch(&done, Direction::In, 40, Some(TcpFlags::ACK), t0);
        for n in 2..6 {
            syn_in(&mut t, n, t0);
        }
        // The cap of 4 evicted the two oldest half-open ones (0 and 2), passing over the
        // established one.
        assert!(t.peek_out(&first).is_none());
        assert!(t.peek_out(&done).is_some());
        assert_eq!(t.stats.half_open_evicted, 2);
        assert_eq!(
            t.peek_out(&done).map(|s| s.tcp.phase()),
            Some(TcpPhase::Established)
        );
        // Fill the table with outbound sessions: each new one evicts a half-open session
        // first, though they are younger than every RFC minimum.
        let before = t.stats.half_open_evicted;
        for p in 0..8 {
            t.create_out(
                key(Protocol::Udp, (IN1, 5000 + p), (R1, 53)),
                Instant::from_secs(1),
            )
            .unwrap();
        }
        assert_eq!(t.len(), 10);
        assert!(t.stats.half_open_evicted > before);
        assert!(t.peek_out(&done).is_some());
        // A half-open session times out after 30 s.
        let last = syn_in(&mut t, 9, Instant::from_secs(2));
        assert_eq!(
            t.timeout_of(Protocol::Tcp, t.peek_out(&last).unwrap())
                .as_secs(),
            30
        );
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
                .touch(Direction::Out, 84, None::<u8>, now);
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
                .touch(Direction::Out, 84, None::<u8>, now);
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
        // The initiator's ACK completes the handshake (RFC 7857 section 3.1).
        s.touch(
            Direction::Out,
            40,
            Some(TcpFlags::ACK),
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
        s.touch(Direction::Out, 40, Some(TcpFlags::ACK), Instant::ZERO);
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
