//! Port mappings the inside hosts make for themselves: PCP (RFC 6887, [`pcp`]), NAT-PMP
//! (RFC 6886, [`natpmp`]) and UPnP IGD ([`upnp`]), all off by default.
//!
//! [`PortMaps`] is the one table the three protocols share. A mapping forwards one
//! external port of one protocol to a port of the inside host that asked for it; it has
//! an owner (that host: no host maps for another), a lifetime, and the protocol that made
//! it. The router hands the mappings to the NAT core as port forwards
//! (`NatConfig::port_maps`) that the host's own outbound traffic from that port also
//! leaves by. A mapping never takes a static port forward's port, a local service's, or
//! a port another host's mapping holds; the [`policy`] says which ports a host may map.
//! Everything here is sans-I/O: requests come in with the time, answers go out as bytes.

pub mod natpmp;
pub mod pcp;
pub mod policy;
pub mod upnp;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::nat::{DnatRule, Endpoint, Instant, Nat};
use crate::wire::transport::Protocol;
use policy::Policy;

/// The protocol that made a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Pcp,
    NatPmp,
    Upnp,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Pcp => "pcp",
            Source::NatPmp => "nat-pmp",
            Source::Upnp => "upnp",
        }
    }
}

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    pub protocol: Protocol,
    pub external: u16,
    /// The inside host that asked, and the mapping's target.
    pub client: Ipv4Addr,
    pub internal: u16,
    pub source: Source,
    /// `None`: until deleted (UPnP IGD v1's lease 0).
    pub expires: Option<Instant>,
    /// PCP's mapping nonce (zero for the others).
    pub nonce: [u8; 12],
    pub description: String,
}

impl PortMap {
    pub fn rule(&self) -> DnatRule {
        DnatRule {
            protocol: self.protocol,
            first: self.external,
            last: self.external,
            target: self.client,
            target_port: Some(self.internal),
        }
    }

    /// Seconds left, rounded up (`None`: no expiry).
    pub fn remaining(&self, now: Instant) -> Option<u32> {
        self.expires
            .map(|e| e.since(now).as_secs_f64().ceil() as u32)
    }
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}={}:{} ({}",
            self.protocol.name(),
            self.external,
            self.client,
            self.internal,
            self.source.name()
        )?;
        if !self.description.is_empty() {
            write!(f, " \"{}\"", self.description.escape_default())?;
        }
        write!(f, ")")
    }
}

/// What a host asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub protocol: Protocol,
    pub client: Ipv4Addr,
    pub internal: u16,
    /// The external port asked for (0: any).
    pub external: u16,
    /// Only `external` will do (UPnP's AddPortMapping, PCP's PREFER_FAILURE).
    pub exact: bool,
    /// `None`: until deleted.
    pub lifetime: Option<Duration>,
    pub source: Source,
    pub nonce: [u8; 12],
    pub description: String,
}

/// Why a mapping was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The policy refuses these ports to this host.
    NotAuthorized,
    /// The exact external port is taken (by a port forward, a service, another host).
    PortTaken,
    /// A mapping of this host and port exists, made with another nonce (PCP) or by
    /// another protocol.
    NotOwner,
    /// The host has as many mappings as it may, or the table is full.
    NoResources,
    /// No allowed external port is free.
    NoPort,
}

/// Limits of the table.
#[derive(Debug, Clone)]
pub struct Limits {
    pub per_host: usize,
    pub total: usize,
    pub max_lifetime: Duration,
}

/// Most mappings in all, whatever the per-host limit.
pub const MAX_TOTAL: usize = 4096;
/// Mappings one host may hold, by default.
pub const DEFAULT_PER_HOST: usize = 32;
/// The longest lifetime granted, by default (a day; PCP's and NAT-PMP's clients renew at
/// half of it).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(86400);

/// The table of mappings.
#[derive(Debug)]
pub struct PortMaps {
    maps: Vec<PortMap>,
    pub policy: Policy,
    pub limits: Limits,
    /// When the mappings were last all lost (start): PCP's and NAT-PMP's epoch.
    start: Instant,
    /// Changed since the router last read the rules.
    changed: bool,
    rng: u32,
    pub stats: Stats,
}

/// What the table did, for `tunnat stats`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub created: u64,
    pub refreshed: u64,
    pub deleted: u64,
    pub expired: u64,
    pub refused: u64,
}

impl PortMaps {
    pub fn new(policy: Policy, limits: Limits, now: Instant, seed: u64) -> PortMaps {
        PortMaps {
            maps: Vec::new(),
            policy,
            limits,
            start: now,
            changed: false,
            rng: (seed as u32) | 1,
            stats: Stats::default(),
        }
    }

    /// Seconds since the epoch (PCP's Epoch Time, NAT-PMP's SSSoE).
    pub fn epoch(&self, now: Instant) -> u32 {
        now.since(self.start).as_secs() as u32
    }

    pub fn iter(&self) -> impl Iterator<Item = &PortMap> {
        self.maps.iter()
    }

    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// Takes `other`'s mappings (and nothing else) in place of these.
    pub fn copy_from(&mut self, other: &PortMaps) {
        self.maps = other.maps.clone();
        self.changed = true;
    }

    /// The rules for the NAT core, if they changed since last asked.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn rules(&self) -> Vec<DnatRule> {
        self.maps.iter().map(PortMap::rule).collect()
    }

    /// The mapping of `client`'s `internal` port.
    pub fn find(&self, protocol: Protocol, client: Ipv4Addr, internal: u16) -> Option<&PortMap> {
        (self.maps.iter())
            .find(|m| m.protocol == protocol && m.client == client && m.internal == internal)
    }

    /// The mapping of external `port`.
    pub fn by_external(&self, protocol: Protocol, port: u16) -> Option<&PortMap> {
        (self.maps.iter()).find(|m| m.protocol == protocol && m.external == port)
    }

    fn lifetime(&self, l: Option<Duration>) -> Option<Duration> {
        l.map(|l| l.min(self.limits.max_lifetime))
    }

    /// Makes or renews the mapping `w` asks for.
    ///
    /// PCP and NAT-PMP (`exact` false) name the host's port and suggest an external one:
    /// an existing mapping of that port is renewed (keeping its external port); else the
    /// suggestion if free and allowed, else the port of the host's NAPT mapping or its own
    /// port, else a free allowed port. UPnP names the external port (`exact`): it is
    /// given, or taken over from the same host's mapping of it, or refused.
    pub fn add(&mut self, w: &Want, nat: &Nat, now: Instant) -> Result<PortMap, Refusal> {
        let r = self.add_inner(w, nat, now);
        if r.is_err() {
            self.stats.refused += 1;
        }
        r
    }

    fn add_inner(&mut self, w: &Want, nat: &Nat, now: Instant) -> Result<PortMap, Refusal> {
        let expires = self.lifetime(w.lifetime).map(|l| now + l);
        let inside = Endpoint::new(w.client, w.internal);
        if w.exact {
            if let Some(i) = self
                .maps
                .iter()
                .position(|m| m.protocol == w.protocol && m.external == w.external)
            {
                let m = &self.maps[i];
                if m.client != w.client {
                    return Err(Refusal::PortTaken);
                }
                if !self.policy.allows(w.external, w.client, w.internal) {
                    return Err(Refusal::NotAuthorized);
                }
                // The same host maps its external port again (perhaps to another of its
                // ports): the mapping is replaced.
                let m = &mut self.maps[i];
                m.internal = w.internal;
                m.expires = expires;
                m.source = w.source;
                m.description = w.description.clone();
                self.changed = true;
                self.stats.refreshed += 1;
                return Ok(self.maps[i].clone());
            }
        } else if let Some(i) = self.maps.iter().position(|m| {
            m.protocol == w.protocol && m.client == w.client && m.internal == w.internal
        }) {
            let m = &mut self.maps[i];
            if m.source != w.source || (w.source == Source::Pcp && m.nonce != w.nonce) {
                return Err(Refusal::NotOwner);
            }
            m.expires = expires;
            self.stats.refreshed += 1;
            return Ok(m.clone());
        }
        let host_maps = self.maps.iter().filter(|m| m.client == w.client).count();
        if host_maps >= self.limits.per_host || self.maps.len() >= self.limits.total.min(MAX_TOTAL)
        {
            return Err(Refusal::NoResources);
        }
        let ok = |p: u16| {
            p != 0
                && self.policy.allows(p, w.client, w.internal)
                && nat.port_free_for(w.protocol, p, inside, now)
        };
        let external = if w.exact {
            if !self.policy.allows(w.external, w.client, w.internal) {
                return Err(Refusal::NotAuthorized);
            }
            if !nat.port_free_for(w.protocol, w.external, inside, now)
                || self.by_external(w.protocol, w.external).is_some()
            {
                return Err(Refusal::PortTaken);
            }
            w.external
        } else {
            let ranges = self.policy.allowed_ranges(w.client, w.internal);
            if ranges.is_empty() {
                return Err(Refusal::NotAuthorized);
            }
            let candidates = [
                w.external,
                nat.mapping_port(w.protocol, inside).unwrap_or(0),
                w.internal,
            ];
            match candidates
                .into_iter()
                .find(|&p| ok(p) && self.by_external(w.protocol, p).is_none())
            {
                Some(p) => p,
                None => {
                    let maps = &self.maps;
                    let free = |p: u16| {
                        ok(p)
                            && !maps
                                .iter()
                                .any(|m| m.protocol == w.protocol && m.external == p)
                    };
                    search(&mut self.rng, &ranges, free).ok_or(Refusal::NoPort)?
                }
            }
        };
        let description = match w.source {
            // miniupnpd's names, so that both list alike.
            Source::NatPmp => format!("NAT-PMP {external} {}", w.protocol.name()),
            _ => w.description.clone(),
        };
        let m = PortMap {
            protocol: w.protocol,
            external,
            client: w.client,
            internal: w.internal,
            source: w.source,
            expires,
            nonce: w.nonce,
            description,
        };
        log::info!("port mapping {m} made");
        self.maps.push(m.clone());
        self.changed = true;
        self.stats.created += 1;
        Ok(m)
    }

    /// Deletes the mapping of `client`'s `internal` port (PCP and NAT-PMP: lifetime 0).
    /// `Err(NotOwner)`: it was made with another nonce or protocol. Deleting what does
    /// not exist succeeds (RFC 6887 section 15).
    pub fn delete_internal(
        &mut self,
        protocol: Protocol,
        client: Ipv4Addr,
        internal: u16,
        source: Source,
        nonce: [u8; 12],
    ) -> Result<Option<PortMap>, Refusal> {
        let Some(i) = self
            .maps
            .iter()
            .position(|m| m.protocol == protocol && m.client == client && m.internal == internal)
        else {
            return Ok(None);
        };
        let m = &self.maps[i];
        if m.source != source || (source == Source::Pcp && m.nonce != nonce) {
            return Err(Refusal::NotOwner);
        }
        Ok(Some(self.remove(i)))
    }

    /// Deletes every mapping of `client` made by `source` for `protocol` (NAT-PMP's
    /// delete-all: internal port 0, lifetime 0).
    pub fn delete_all(&mut self, protocol: Protocol, client: Ipv4Addr, source: Source) -> usize {
        let mut n = 0;
        while let Some(i) = self
            .maps
            .iter()
            .position(|m| m.protocol == protocol && m.client == client && m.source == source)
        {
            self.remove(i);
            n += 1;
        }
        n
    }

    /// Deletes the mapping of external `port` if `client` owns it (UPnP's
    /// DeletePortMapping). `Ok(None)`: there is none.
    pub fn delete_external(
        &mut self,
        protocol: Protocol,
        port: u16,
        client: Ipv4Addr,
    ) -> Result<Option<PortMap>, Refusal> {
        let Some(i) = self
            .maps
            .iter()
            .position(|m| m.protocol == protocol && m.external == port)
        else {
            return Ok(None);
        };
        if self.maps[i].client != client {
            return Err(Refusal::NotOwner);
        }
        Ok(Some(self.remove(i)))
    }

    fn remove(&mut self, i: usize) -> PortMap {
        let m = self.maps.remove(i);
        log::info!("port mapping {m} deleted");
        self.changed = true;
        self.stats.deleted += 1;
        m
    }

    /// When the next mapping expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.maps.iter().filter_map(|m| m.expires).min()
    }

    /// Removes the mappings whose lifetime is over at `now`.
    pub fn expire(&mut self, now: Instant) {
        let before = self.maps.len();
        self.maps.retain(|m| {
            let keep = m.expires.is_none_or(|e| e > now);
            if !keep {
                log::info!("port mapping {m} expired");
            }
            keep
        });
        let gone = before - self.maps.len();
        if gone > 0 {
            self.changed = true;
            self.stats.expired += gone as u64;
        }
    }

    /// Drops every mapping whose external port is now a port forward's (`taken`);
    /// returns them.
    pub fn drop_conflicting(&mut self, taken: impl Fn(Protocol, u16) -> bool) -> Vec<PortMap> {
        let mut gone = Vec::new();
        self.maps.retain(|m| {
            let ok = !taken(m.protocol, m.external);
            if !ok {
                log::warn!("port mapping {m} dropped: its port is now a port forward's");
                gone.push(m.clone());
            }
            ok
        });
        if !gone.is_empty() {
            self.changed = true;
        }
        gone
    }
}

/// A free port in `ranges`, the search starting at a random place (RFC 6056).
fn search(rng: &mut u32, ranges: &[(u16, u16)], ok: impl Fn(u16) -> bool) -> Option<u16> {
    for &(lo, hi) in ranges {
        let span = (hi - lo) as u32 + 1;
        *rng ^= *rng << 13;
        *rng ^= *rng >> 17;
        *rng ^= *rng << 5;
        let start = *rng % span;
        if let Some(p) = (0..span)
            .map(|i| lo + ((start + i) % span) as u16)
            .find(|&p| ok(p))
        {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod test;
