//! The router's own stack on one port: a smoltcp `Interface` over a queue device
//! ([`crate::port::bridge`]) holding both router addresses, with the policy server's
//! sockets. It answers ping, resets closed TCP ports and sends port unreachable for closed
//! UDP ports (RFC 1122 4.2.2.13, 3.2.2.1), as a kernel router does.
//!
//! The 843 gate: a SYN for the policy port while none of the server's sockets listens
//! makes the server displace a connection for it; if none may be displaced, the SYN is
//! dropped (counted as `busy`) so the client retries, as with a full kernel accept queue,
//! instead of smoltcp's RST.

use std::time::Duration;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::nat::{Ipv4Cidr, Ipv6Cidr};
use crate::port::bridge::QueueDevice;
pub use crate::portmap::upnp::http::Request as HttpRequest;
use crate::portmap::upnp::http::Server as HttpServer;
use crate::services::policy::PolicyServer;
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::ipv6::Ipv6;
use crate::wire::transport::{Protocol, TcpFlags, Transport};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;

/// What a local stack needs to know.
pub struct LocalConfig<'a> {
    /// This port's IPv4 address, with its network (none on an IPv6-only router).
    pub own: Option<Ipv4Cidr>,
    /// The other port's address (answered here too, as a /32).
    pub other: Option<Ipv4Cidr>,
    /// This port's and the other port's IPv6 addresses, on a dual-stack router.
    pub own6: Option<Ipv6Cidr>,
    pub other6: Option<Ipv6Cidr>,
    /// NAT64 hosts are behind this port: IPv4 replies to their stand-ins leave by it.
    pub nat64: bool,
    pub mtu: usize,
    /// The policy server's port, 0 for off.
    pub policy_port: u16,
    pub policy: &'a [u8],
    pub policy_idle: Duration,
    /// The policy server's pool grows to at most this many connections.
    pub policy_max_clients: usize,
    /// Seeds smoltcp's initial sequence numbers and ports.
    pub seed: u64,
    /// UDP ports served on this port's own IPv4 address (PCP and NAT-PMP's 5351, SSDP's
    /// 1900), by [`Services::datagram`].
    pub udp_ports: Vec<u16>,
    /// TCP port of the UPnP HTTP server on this port's own IPv4 address, 0 for none.
    pub http_port: u16,
}

/// The services the router answers on its own address, outside the local stack: the
/// local stack reads their requests off its sockets and sends what these return.
pub trait Services {
    /// A datagram from `from` to UDP port `port`: the datagrams to send back to it.
    fn datagram(
        &mut self,
        port: u16,
        from: (std::net::Ipv4Addr, u16),
        payload: &[u8],
    ) -> Vec<Vec<u8>>;
    /// An HTTP request from `from`: status, content type, body.
    fn http(&mut self, from: std::net::Ipv4Addr, req: &HttpRequest) -> (u16, &'static str, String);
}

/// No services (a router without port control).
pub struct NoServices;

impl Services for NoServices {
    fn datagram(&mut self, _: u16, _: (std::net::Ipv4Addr, u16), _: &[u8]) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn http(&mut self, _: std::net::Ipv4Addr, _: &HttpRequest) -> (u16, &'static str, String) {
        (404, "text/plain", String::new())
    }
}

/// Largest datagram a UDP service reads (PCP's maximum, and SSDP's searches).
const UDP_MAX: usize = 1500;

pub struct LocalStack {
    pub(super) dev: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    pub(super) policy: Option<PolicyServer>,
    /// The UDP services' sockets, by port.
    udp: Vec<(u16, SocketHandle)>,
    http: Option<HttpServer>,
    /// When the stack next needs polling without a packet for it (a TCP timer, a policy
    /// timeout), as of its last poll; `None`: only when a packet comes.
    pub(super) due: Option<SmolInstant>,
}

impl LocalStack {
    pub fn new(c: &LocalConfig, now: SmolInstant) -> LocalStack {
        let mut dev = QueueDevice::new(c.mtu);
        let mut ic = IfaceConfig::new(HardwareAddress::Ip);
        ic.random_seed = c.seed;
        let mut iface = Interface::new(ic, &mut dev, now);
        iface.update_ip_addrs(|a| {
            if let Some(own) = c.own {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(own.addr), own.prefix));
            }
            if let Some(other) = c.other {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(other.addr), 32));
            }
            if let Some(o6) = c.own6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(o6.addr), o6.prefix));
            }
            if let Some(x6) = c.other6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(x6.addr), 128));
            }
        });
        // Replies to any remote leave through this port: a default route. On an IP-medium
        // device the gateway is never resolved, so any address on the network will do.
        if let Some(own) = c.own {
            let gw = std::net::Ipv4Addr::from((u32::from(own.addr) & own.mask()) | 1);
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        } else if c.nat64 {
            let gw = std::net::Ipv4Addr::new(0, 0, 0, 1);
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        if let Some(o6) = c.own6 {
            let gw6 = std::net::Ipv6Addr::from(u128::from(o6.network()) | 1);
            let _ = iface.routes_mut().add_default_ipv6_route(gw6);
        }
        let mut sockets = SocketSet::new(Vec::new());
        let policy = (c.policy_port != 0).then(|| {
            PolicyServer::new(
                &mut sockets,
                c.policy_port,
                c.policy,
                c.policy_idle,
                c.policy_max_clients,
            )
        });
        let mut udp = Vec::new();
        let mut http = None;
        if let Some(own) = c.own {
            for &port in &c.udp_ports {
                let mut s = udp::Socket::new(
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; 16],
                        vec![0; 16 * UDP_MAX],
                    ),
                    udp::PacketBuffer::new(
                        vec![udp::PacketMetadata::EMPTY; 32],
                        vec![0; 16 * UDP_MAX],
                    ),
                );
                let _ = s.bind(smoltcp::wire::IpListenEndpoint {
                    addr: Some(IpAddress::Ipv4(own.addr)),
                    port,
                });
                udp.push((port, sockets.add(s)));
            }
            if c.http_port != 0 {
                http = Some(HttpServer::new(&mut sockets, own.addr, c.http_port));
            }
        }
        LocalStack {
            dev,
            iface,
            sockets,
            policy,
            udp,
            http,
            due: Some(now),
        }
    }

    /// Hands a packet to the stack, through the 843 gate.
    pub fn deliver(&mut self, pkt: &[u8], now: SmolInstant) {
        if let Some(p) = &mut self.policy {
            if syn_to(pkt, p.port())
                && !p.listening(&self.sockets)
                && !p.make_room(&mut self.sockets, now)
            {
                p.stats.busy += 1;
                self.due = Some(SmolInstant::ZERO);
                return;
            }
        }
        self.dev.deliver(pkt);
    }

    /// Runs the stack if a packet is waiting for it or a timer of its is due; forwarded
    /// traffic alone costs it nothing. Returns whether it ran.
    pub fn poll_if_needed(&mut self, now: SmolInstant, services: &mut dyn Services) -> bool {
        if self.dev.rx.is_empty() && self.due.is_none_or(|d| d > now) {
            return false;
        }
        for _ in 0..4 {
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            let mut changed = match &mut self.policy {
                Some(p) => p.service(&mut self.sockets, now),
                None => false,
            };
            changed |= self.serve(now, services);
            if !changed {
                break;
            }
        }
        self.due = self.next_deadline(now).map(|d| now + d.into());
        true
    }

    /// Answers what came to the UDP services and the HTTP server.
    fn serve(&mut self, now: SmolInstant, services: &mut dyn Services) -> bool {
        let mut changed = false;
        let mut buf = [0u8; UDP_MAX];
        for &(port, h) in &self.udp {
            let s = self.sockets.get_mut::<udp::Socket>(h);
            while let Ok((n, meta)) = s.recv_slice(&mut buf) {
                changed = true;
                let IpAddress::Ipv4(from) = meta.endpoint.addr else {
                    continue;
                };
                for a in services.datagram(port, (from, meta.endpoint.port), &buf[..n]) {
                    let _ = s.send_slice(&a, meta.endpoint);
                }
            }
        }
        if let Some(h) = &mut self.http {
            changed |= h.service(&mut self.sockets, now, &mut |from, req| {
                services.http(from, req)
            });
        }
        changed
    }

    /// Sends `payload` from UDP service port `port` to `to` (announcements); polls soon.
    pub fn send_udp(&mut self, port: u16, to: (std::net::Ipv4Addr, u16), payload: &[u8]) {
        if let Some(&(_, h)) = self.udp.iter().find(|u| u.0 == port) {
            let s = self.sockets.get_mut::<udp::Socket>(h);
            let _ = s.send_slice(payload, (IpAddress::Ipv4(to.0), to.1));
            self.due = Some(SmolInstant::ZERO);
        }
    }

    fn next_deadline(&mut self, now: SmolInstant) -> Option<Duration> {
        let d = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(Duration::from);
        let p = self
            .policy
            .as_ref()
            .and_then(|p| p.next_deadline())
            .map(|t| {
                if t > now {
                    Duration::from(t - now)
                } else {
                    Duration::ZERO
                }
            });
        let h = (self.http.as_ref())
            .and_then(|h| h.next_deadline())
            .map(|t| {
                if t > now {
                    Duration::from(t - now)
                } else {
                    Duration::ZERO
                }
            });
        [d, p, h].into_iter().flatten().min()
    }

    /// New policy text and idle timeout; poll soon, as the timeouts changed.
    pub fn set_policy(&mut self, policy: &[u8], idle: Duration) {
        if let Some(p) = &mut self.policy {
            p.set_policy(policy, idle);
        }
        self.due = Some(SmolInstant::ZERO);
    }
}

/// Is `pkt` (IPv4 or IPv6) a TCP SYN (opening, not SYN-ACK) to `port`?
fn syn_to(pkt: &[u8], port: u16) -> bool {
    let tcp = if pkt.first().is_some_and(|b| b >> 4 == 6) {
        match Ipv6::new_checked(pkt) {
            Ok(ip) if ip.protocol() == 6 && !ip.is_fragment() => {
                Transport::new_checked(Protocol::Tcp, ip.payload()).ok()
            }
            _ => None,
        }
    } else {
        match Ipv4::new_checked(pkt, Check::Full) {
            Ok(ip) if ip.protocol() == 6 && !ip.is_fragment() => {
                Transport::new_checked(Protocol::Tcp, ip.payload()).ok()
            }
            _ => None,
        }
    };
    tcp.is_some_and(|t| {
        t.dst_port == port && t.has_flag(TcpFlags::SYN) && !t.has_flag(TcpFlags::ACK)
    })
}
