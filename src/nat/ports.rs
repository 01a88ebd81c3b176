//! The external port allocator (RFC 4787 REQ-3: port preservation when free, the ranges
//! 1-1023 and 1024-65535 kept apart, no port overloading; REQ-4: optionally, parity kept;
//! RFC 6888 REQ-8: a released port is held before another host may have it; RFC 6056: the
//! search for a free port starts at a random place).
//!
//! One port of the outside address per (protocol, port) is either in use by a mapping,
//! held after its release, reserved for a DNAT rule or a local service, or free.

use std::collections::VecDeque;
use std::time::Duration;

use super::endpoint::{Address, MapKey};
use super::time::Instant;
use super::HashMap;
use crate::wire::transport::Protocol;

/// How long a released external port is kept from other inside hosts (RFC 6888 REQ-8's
/// recommendation; the same inside endpoint may take it back at once).
pub const PORT_HOLD: Duration = Duration::from_secs(120);

#[derive(Debug)]
enum PortSlot<A> {
    InUse(MapKey<A>),
    Held { until: Instant, owner: MapKey<A> },
}

/// The external ports of one outside address.
#[derive(Debug)]
pub struct Ports<A: Address> {
    slots: HashMap<(Protocol, u16), PortSlot<A>>,
    /// Released ports in the order their hold ends.
    held: VecDeque<(Protocol, u16, Instant)>,
    /// Never allocated dynamically: DNAT ranges and local services.
    reserved: Vec<(Protocol, u16, u16)>,
    /// Reserved ports that one mapping takes all the same: a host's own port mapping
    /// (PCP, NAT-PMP, UPnP), which its outbound traffic leaves by.
    preferred: HashMap<MapKey<A>, u16>,
    /// Ports claimed for a connection the FTP helper expects, by the mapping to be made.
    expected: HashMap<MapKey<A>, u16>,
    /// How long a released port is kept from other hosts (default [`PORT_HOLD`]).
    pub hold: Duration,
    /// Keep the parity of the inside port when another port must be chosen.
    pub parity: bool,
    rng: u32,
}

impl<A: Address> Default for Ports<A> {
    fn default() -> Self {
        Ports {
            slots: HashMap::default(),
            held: VecDeque::new(),
            reserved: Vec::new(),
            preferred: HashMap::default(),
            expected: HashMap::default(),
            hold: PORT_HOLD,
            parity: false,
            rng: 0x9e37_79b9,
        }
    }
}

impl<A: Address> Ports<A> {
    /// Seeds the start of the search for a free port (RFC 6056): the driver passes a
    /// random seed at each start, or `--seed` for reproducible runs.
    pub fn seed(&mut self, seed: u64) {
        self.rng = ((seed ^ (seed >> 32)) as u32) | 1; // xorshift32 must not start at 0
    }

    /// Keeps `first..=last` of `protocol` out of dynamic allocation.
    pub fn reserve(&mut self, protocol: Protocol, first: u16, last: u16) {
        self.reserved.push((protocol, first, last));
    }

    /// Forgets every reservation (before reserving the new set on reconfiguration).
    pub fn clear_reserved(&mut self) {
        self.reserved.clear();
    }

    /// The reserved port each of these mappings takes when it is made (replacing the set).
    pub fn set_preferred(&mut self, ports: impl Iterator<Item = (MapKey<A>, u16)>) {
        self.preferred.clear();
        for (mk, port) in ports {
            self.preferred.entry(mk).or_insert(port);
        }
    }

    /// Is `port` neither in use by, nor held for, another mapping than `me`'s
    /// (reservations aside)?
    pub fn free_or_own(&self, protocol: Protocol, port: u16, me: &MapKey<A>, now: Instant) -> bool {
        match self.slots.get(&(protocol, port)) {
            None => true,
            Some(PortSlot::InUse(owner)) => owner == me,
            Some(PortSlot::Held { until, owner }) => *until <= now || owner == me,
        }
    }

    /// The mapping `mk` takes `port` (claimed for it) when it is made.
    pub fn expect(&mut self, mk: MapKey<A>, port: u16) {
        self.expected.insert(mk, port);
    }

    pub fn unexpect(&mut self, mk: &MapKey<A>) {
        self.expected.remove(mk);
    }

    fn is_reserved(&self, protocol: Protocol, port: u16) -> bool {
        self.reserved
            .iter()
            .any(|&(p, a, b)| p == protocol && (a..=b).contains(&port))
    }

    fn free_for(&self, protocol: Protocol, port: u16, me: &MapKey<A>, now: Instant) -> bool {
        if self.is_reserved(protocol, port) {
            return false;
        }
        match self.slots.get(&(protocol, port)) {
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

    /// Takes an external port for mapping `me`: its own port if free, else one from the
    /// same range (and parity, if asked).
    pub fn allocate(&mut self, me: &MapKey<A>, now: Instant) -> Option<u16> {
        if let Some(&p) = self.expected.get(me).or_else(|| self.preferred.get(me)) {
            if self.free_or_own(me.protocol, p, me, now) {
                self.slots.insert((me.protocol, p), PortSlot::InUse(*me));
                return Some(p);
            }
        }
        let want = me.inside.port;
        let (lo, hi) = match me.protocol {
            Protocol::Icmp => (0u16, 65535u16),
            _ if want < 1024 => (1, 1023),
            _ => (1024, 65535),
        };
        let port = if want >= lo && self.free_for(me.protocol, want, me, now) {
            Some(want)
        } else {
            let parity = self.parity && me.protocol != Protocol::Icmp;
            let span = (hi - lo) as u32 + 1;
            let start = self.next_random() % span;
            (0..span)
                .map(|i| lo + ((start + i) % span) as u16)
                .filter(|p| !parity || p % 2 == want % 2)
                .find(|&p| self.free_for(me.protocol, p, me, now))
        }?;
        self.slots.insert((me.protocol, port), PortSlot::InUse(*me));
        Some(port)
    }

    /// Releases `port` of mapping `owner`: held from other hosts until `now` + the hold.
    pub fn release(&mut self, port: u16, owner: MapKey<A>, now: Instant) {
        let until = now + self.hold;
        self.slots
            .insert((owner.protocol, port), PortSlot::Held { until, owner });
        self.held.push_back((owner.protocol, port, until));
    }

    /// The mapping that holds external `port` now.
    pub fn owner(&self, protocol: Protocol, port: u16) -> Option<&MapKey<A>> {
        match self.slots.get(&(protocol, port)) {
            Some(PortSlot::InUse(mk)) => Some(mk),
            _ => None,
        }
    }

    /// Frees the ports whose hold is over at `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(p, port, until)) = self.held.front() {
            if until > now {
                break;
            }
            self.held.pop_front();
            if matches!(self.slots.get(&(p, port)), Some(PortSlot::Held { until: u, .. }) if *u == until)
            {
                self.slots.remove(&(p, port));
            }
        }
    }

    /// Takes external `port` for mapping `me` (a mapping restored from a state file):
    /// an error if it is reserved or another mapping's.
    pub fn take(&mut self, me: &MapKey<A>, port: u16) -> Result<(), String> {
        if self.is_reserved(me.protocol, port) {
            return Err(format!(
                "{} port {port} is now a port forward's or the router's own",
                me.protocol.name()
            ));
        }
        if let Some(PortSlot::InUse(other)) = self.slots.get(&(me.protocol, port)) {
            if other != me {
                return Err(format!(
                    "{} port {port} is given to two mappings",
                    me.protocol.name()
                ));
            }
        }
        self.slots.insert((me.protocol, port), PortSlot::InUse(*me));
        Ok(())
    }

    /// The ports held after their release, with the mapping that had each and when its
    /// hold ends, in that order.
    pub fn held(&self) -> impl Iterator<Item = (u16, &MapKey<A>, Instant)> {
        self.held
            .iter()
            .filter_map(|&(p, port, until)| match self.slots.get(&(p, port)) {
                Some(PortSlot::Held { until: u, owner }) if *u == until => {
                    Some((port, owner, until))
                }
                _ => None,
            })
    }

    /// Holds `port` for `owner` until `until` (a hold restored from a state file); a port
    /// in use or reserved now is left as it is.
    pub fn restore_held(&mut self, port: u16, owner: MapKey<A>, until: Instant) {
        if self.is_reserved(owner.protocol, port)
            || self.slots.contains_key(&(owner.protocol, port))
        {
            return;
        }
        self.slots
            .insert((owner.protocol, port), PortSlot::Held { until, owner });
        let at = self.held.partition_point(|h| h.2 <= until);
        self.held.insert(at, (owner.protocol, port, until));
    }

    /// When the next hold ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.2)
    }
}
