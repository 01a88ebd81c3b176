//! The router's side of port control: the mapping table ([`crate::portmap`]), the
//! requests the inside local stack reads off its sockets (PCP and NAT-PMP on UDP 5351,
//! SSDP on 1900, UPnP's HTTP), and the announcements at start (RFC 6886 section 3.2.1,
//! RFC 6887 section 14.1.3: ten times, 250 ms apart and doubling, to 224.0.0.1:5350).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::local::{HttpRequest, Services};
use crate::config::Config;
use crate::nat::{Instant, Nat};
use crate::portmap::upnp::{self, soap, ssdp};
use crate::portmap::{self, natpmp, pcp, policy::Policy, PortMaps};

/// Counters of port control, in `tunnat stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortControlCounters {
    pub mappings: u64,
    pub pcp_requests: u64,
    pub nat_pmp_requests: u64,
    pub ssdp_searches: u64,
    pub upnp_requests: u64,
    /// Requests not answered (malformed beyond an answer, or answers themselves).
    pub ignored: u64,
    #[serde(flatten)]
    pub table: portmap::Stats,
}

/// How many announcements are sent at start.
const ANNOUNCEMENTS: u32 = 10;

pub struct PortControl {
    pub maps: PortMaps,
    pcp: bool,
    nat_pmp: bool,
    upnp: bool,
    upnp_port: u16,
    inside: Ipv4Addr,
    /// The next announcement: when, and how many were sent.
    announce: Option<(Instant, u32)>,
    counters: PortControlCounters,
}

impl PortControl {
    pub fn new(cfg: &Config, now: Instant, seed: u64) -> Option<PortControl> {
        if !cfg.port_control() {
            return None;
        }
        let inside = cfg.inside.cidr?;
        Some(PortControl {
            maps: PortMaps::new(
                Policy::new(cfg.portmap_rules.clone(), inside),
                portmap::Limits {
                    per_host: cfg.portmap_max_per_host,
                    total: portmap::MAX_TOTAL,
                    max_lifetime: cfg.portmap_max_lifetime,
                },
                now,
                seed,
            ),
            pcp: cfg.pcp,
            nat_pmp: cfg.nat_pmp,
            upnp: cfg.upnp,
            upnp_port: cfg.upnp_port,
            inside: inside.addr,
            announce: (cfg.pcp || cfg.nat_pmp).then_some((now, 0)),
            counters: PortControlCounters::default(),
        })
    }

    /// UDP ports the inside local stack serves for port control.
    pub fn udp_ports(cfg: &Config) -> Vec<u16> {
        let mut v = Vec::new();
        if cfg.pcp || cfg.nat_pmp {
            v.push(natpmp::SERVER_PORT);
        }
        if cfg.upnp {
            v.push(ssdp::PORT);
        }
        v
    }

    pub fn upnp(&self) -> bool {
        self.upnp
    }

    pub fn counters(&self) -> PortControlCounters {
        PortControlCounters {
            mappings: self.maps.len() as u64,
            table: self.maps.stats,
            ..self.counters
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.announce.map(|a| a.0);
        [a, self.maps.poll_timeout()].into_iter().flatten().min()
    }

    /// The announcements due at `now` (payloads for 224.0.0.1:5350), and expiry.
    pub fn handle_timeout(&mut self, now: Instant, external: Ipv4Addr) -> Vec<Vec<u8>> {
        self.maps.expire(now);
        let mut out = Vec::new();
        if let Some((at, n)) = self.announce {
            if at <= now {
                let epoch = self.maps.epoch(now);
                if self.nat_pmp {
                    out.push(natpmp::address_answer(external, epoch));
                }
                if self.pcp {
                    out.push(pcp::announce(epoch));
                }
                self.announce = (n + 1 < ANNOUNCEMENTS)
                    .then(|| (now + Duration::from_millis(250 << n.min(16)), n + 1));
            }
        }
        out
    }

    fn location(&self) -> String {
        format!(
            "http://{}:{}{}",
            self.inside,
            self.upnp_port,
            upnp::DESC_PATH
        )
    }
}

/// The services of one poll of the inside local stack: port control with the NAT core.
pub struct Svc<'a> {
    pub pc: &'a mut PortControl,
    pub nat: &'a mut Nat,
    pub now: Instant,
    /// Packets read from inside and from outside, for UPnP's counters.
    pub packets: (u64, u64),
}

impl Services for Svc<'_> {
    fn datagram(&mut self, port: u16, from: (Ipv4Addr, u16), payload: &[u8]) -> Vec<Vec<u8>> {
        let pc = &mut *self.pc;
        let answer = match port {
            natpmp::SERVER_PORT => match payload.first() {
                Some(0) if pc.nat_pmp => {
                    pc.counters.nat_pmp_requests += 1;
                    natpmp::answer(payload, from.0, &mut pc.maps, self.nat, self.now)
                }
                Some(0) => {
                    pc.counters.nat_pmp_requests += 1;
                    Some(natpmp::unsupported_version(pc.maps.epoch(self.now)))
                }
                Some(_) if pc.pcp => {
                    pc.counters.pcp_requests += 1;
                    pcp::answer(payload, from.0, &mut pc.maps, self.nat, self.now)
                }
                Some(_) => {
                    pc.counters.pcp_requests += 1;
                    (payload.get(1).is_some_and(|op| op & 0x80 == 0))
                        .then(|| natpmp::unsupported_version(pc.maps.epoch(self.now)))
                }
                None => None,
            },
            ssdp::PORT if pc.upnp => {
                let Some(st) = ssdp::search_target(payload) else {
                    pc.counters.ignored += 1;
                    return Vec::new();
                };
                pc.counters.ssdp_searches += 1;
                let uuid = upnp::uuid(pc.inside);
                let location = pc.location();
                return (ssdp::matches(st, &uuid).iter())
                    .map(|t| ssdp::answer(t, &uuid, &location, 1))
                    .collect();
            }
            _ => None,
        };
        match answer {
            Some(a) => vec![a],
            None => {
                pc.counters.ignored += 1;
                Vec::new()
            }
        }
    }

    fn http(&mut self, from: Ipv4Addr, req: &HttpRequest) -> (u16, &'static str, String) {
        let pc = &mut *self.pc;
        pc.counters.upnp_requests += 1;
        let xml = "text/xml; charset=\"utf-8\"";
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", upnp::DESC_PATH) => (200, xml, upnp::description(pc.inside, pc.upnp_port)),
            ("GET", upnp::IP_CONN_SCPD) => (200, xml, upnp::ip_conn_scpd()),
            ("GET", upnp::COMMON_SCPD) => (200, xml, upnp::common_scpd()),
            ("POST", upnp::IP_CONN_CONTROL | upnp::COMMON_CONTROL) => {
                let Some(action) = &req.soap_action else {
                    return (500, xml, soap::fault(soap::INVALID_ACTION));
                };
                let mut ctx = soap::Ctx {
                    maps: &mut pc.maps,
                    nat: self.nat,
                    client: from,
                    now: self.now,
                    packets: self.packets,
                };
                let (st, body) = soap::serve(action, &req.body, &mut ctx);
                (st, xml, body)
            }
            ("SUBSCRIBE" | "UNSUBSCRIBE", _) => {
                (501, "text/plain", "eventing is not served\n".into())
            }
            ("GET" | "POST", _) => (404, "text/plain", "not found\n".into()),
            _ => (405, "text/plain", "method not allowed\n".into()),
        }
    }
}
