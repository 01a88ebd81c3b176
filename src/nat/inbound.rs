//! Packets from outside to the outside address: back through an existing session, to a
//! static DNAT rule's target ([`super::dnat`]), or through a mapping whose filter admits
//! the remote (RFC 4787 section 5 REQ-8, RFC 5382 REQ-3). A SYN the filter refuses is held
//! ([`super::syn_hold`], RFC 5382 REQ-4); anything addressed to nothing mapped is the
//! router's own (its stack answers with RST or port unreachable, as a kernel does).

use std::net::Ipv4Addr;

use super::tcp_state::TcpSeg;
use super::{
    Address, Direction, DnatRule, DropReason, Endpoint, Instant, MapKey, Nat, SessionKey, Side,
    Step, Verdict,
};
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::transport::{self, End, Protocol, TcpFlags, Transport};

/// How an inbound packet reaches an inside endpoint.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<A = Ipv4Addr> {
    /// Through an existing session.
    Session(Endpoint<A>),
    /// Through a DNAT rule (new session); the rule's first port names it.
    Dnat(Endpoint<A>, u16),
    /// Through a mapping whose filter admits the remote (new session).
    Mapped(Endpoint<A>),
}

impl Nat {
    pub(super) fn inbound(&mut self, buf: &mut [u8], now: Instant) -> Step<Verdict> {
        let mut ip = Ipv4::new_checked(buf, Check::Full)?;
        self.screen(Side::Outside, &ip)?;
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
        let expected = (self.cfg.alg_ftp && protocol == Protocol::Tcp && t.has_flag(TcpFlags::SYN))
            .then(|| self.ftp_expected(t.dst_port, src))
            .flatten()
            .filter(|_| self.table.peek_in(protocol, t.dst_port, remote).is_none());
        let target = match expected {
            Some(mk) => Some(Target::Mapped(mk.inside)),
            None => self.inbound_target(protocol, t.dst_port, remote),
        };
        let Some(target) = target else {
            self.not_admitted(&t, remote, ip.as_bytes(), now)?;
            return Ok(local); // nothing mapped: the router itself answers (RST, port unreachable)
        };
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        let to = match target {
            Target::Session(e) | Target::Dnat(e, _) | Target::Mapped(e) => e.addr,
        };
        if let Some(v) = self.forwarding_checks_to(&ip, Side::Outside, Side::Inside, to) {
            return Ok(v);
        }
        let inside = self.inbound_session(target, protocol, t.dst_port, remote, &t, len, now)?;
        if let Some(mk) = expected {
            self.ftp_fulfilled(mk);
        }
        ip.decrement_ttl();
        self.to_inside(&mut ip, &t, inside);
        if self.cfg.alg_ftp
            && protocol == Protocol::Tcp
            && (inside.port == super::ftp::PORT || remote.port == super::ftp::PORT)
        {
            let ihl = ip.header_len();
            let full = self.offload.csum.is_none();
            let key = SessionKey {
                protocol,
                inside,
                remote,
            };
            self.ftp_inbound(ip.as_bytes_mut(), ihl, key, full);
        }
        Ok(Verdict::Forward { len })
    }

    /// Rewrites the destination of a packet leaving by the inside port to `inside`, and
    /// clamps the MSS of a SYN for that port.
    pub(super) fn to_inside(&self, ip: &mut Ipv4<&mut [u8]>, t: &Transport, inside: Endpoint) {
        let (addr, port) = (inside.addr, inside.port);
        transport::rewrite_endpoint_csum(ip, t.protocol, End::Dst, addr, port, self.csum());
        self.clamp_mss(ip, t, Side::Inside);
    }
}

/// The decisions both families share: where an inbound packet goes, and its session.
impl<A: Address> Nat<A> {
    /// Where a packet from `remote` to external `port` goes: an existing session, a DNAT
    /// rule, or a mapping whose filter admits the remote. Creates nothing.
    pub(super) fn inbound_target(
        &mut self,
        protocol: Protocol,
        port: u16,
        remote: Endpoint<A>,
    ) -> Option<Target<A>> {
        if let Some(key) = self.table.peek_in(protocol, port, remote) {
            return Some(Target::Session(key.inside));
        }
        if let Some(rule) = self.forward_rule(protocol, port) {
            return Some(Target::Dnat(
                Endpoint::new(rule.target, rule.target_port_for(port)),
                rule.first,
            ));
        }
        self.table
            .admits(protocol, port, remote)
            .map(Target::Mapped)
    }

    /// The port forward (static, or a host's own port mapping) for external `port`.
    pub(super) fn forward_rule(&self, protocol: Protocol, port: u16) -> Option<&DnatRule<A>> {
        (self.cfg.dnat.iter())
            .chain(&self.cfg.port_maps)
            .find(|r| r.contains(protocol, port))
    }

    /// Is external `port` a static port forward's or a local service's?
    pub fn is_static_port(&self, protocol: Protocol, port: u16) -> bool {
        self.cfg.dnat.iter().any(|r| r.contains(protocol, port))
            || (protocol == Protocol::Tcp && self.cfg.local_tcp_ports.contains(&port))
    }

    /// May a port mapping of inside endpoint `inside` take external `port`? Not if a
    /// port forward, a local service or another host's port mapping has it, nor while
    /// another endpoint's mapping has it or it is held for one (RFC 6888 REQ-8).
    pub fn port_free_for(
        &self,
        protocol: Protocol,
        port: u16,
        inside: Endpoint<A>,
        now: Instant,
    ) -> bool {
        let me = MapKey { protocol, inside };
        let others_map = self.cfg.port_maps.iter().any(|r| {
            r.contains(protocol, port) && Endpoint::new(r.target, r.target_port_for(port)) != inside
        });
        !self.is_static_port(protocol, port)
            && !others_map
            && self.table.ports.free_or_own(protocol, port, &me, now)
    }

    /// PCP's PEER (RFC 6887 section 12): the outbound session of `inside` with `remote`,
    /// made (with its mapping) if new, its idle time restarted. Returns the external port
    /// and the session's idle timeout.
    pub fn peer_session(
        &mut self,
        protocol: Protocol,
        inside: Endpoint<A>,
        remote: Endpoint<A>,
        now: Instant,
    ) -> Result<(u16, std::time::Duration), super::TableError> {
        let key = SessionKey {
            protocol,
            inside,
            remote,
        };
        if self.table.peek_out(&key).is_none() {
            self.table.create_out(key, now)?;
        }
        self.table.refresh(&key, now).ok_or(super::TableError::Full)
    }

    /// The external port of inside endpoint `inside`'s mapping, if it has one.
    pub fn mapping_port(&self, protocol: Protocol, inside: Endpoint<A>) -> Option<u16> {
        self.table.mapping_port(&MapKey { protocol, inside })
    }

    /// A packet (`packet`, as received) from `remote` that no session, port forward or
    /// admitting filter takes. `Ok`: no mapping holds its port, so it is the router's
    /// own. A mapping whose filter refuses the remote: a SYN may be the remote's half of a
    /// simultaneous open and is held (RFC 5382 REQ-4); anything else is dropped.
    pub(super) fn not_admitted(
        &mut self,
        t: &Transport,
        remote: Endpoint<A>,
        packet: &[u8],
        now: Instant,
    ) -> Step<()> {
        let Some(owner) = self.table.port_owner(t.protocol, t.dst_port) else {
            return Ok(());
        };
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        if t.protocol == Protocol::Tcp && t.has_flag(TcpFlags::SYN) && !t.has_flag(TcpFlags::ACK) {
            self.hold_syn(packet, owner, remote, now);
            return Err(DropReason::SynHeld);
        }
        Err(DropReason::Filtered)
    }

    /// Is `seg`, if an RST, within the window of session `key` (RFC 5961 section 3)?
    pub(super) fn rst_acceptable(
        &self,
        key: &SessionKey<A>,
        dir: Direction,
        seg: Option<TcpSeg>,
    ) -> bool {
        match seg {
            Some(seg) if seg.flags & TcpFlags::RST != 0 => {
                self.table.rst_acceptable(key, dir, &seg)
            }
            _ => true,
        }
    }

    /// The session for an inbound packet to `target`, created if new, and touched.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn inbound_session(
        &mut self,
        target: Target<A>,
        protocol: Protocol,
        port: u16,
        remote: Endpoint<A>,
        t: &Transport,
        len: usize,
        now: Instant,
    ) -> Step<Endpoint<A>> {
        let inside = match target {
            Target::Session(e) | Target::Dnat(e, _) | Target::Mapped(e) => e,
        };
        let key = SessionKey {
            protocol,
            inside,
            remote,
        };
        let flags = (protocol == Protocol::Tcp).then(|| TcpSeg::of(t));
        let session = match target {
            Target::Session(_) if !self.rst_acceptable(&key, Direction::In, flags) => {
                return Err(DropReason::RstOutOfWindow)
            }
            Target::Session(_) => {
                self.table
                    .touch(&key, Direction::In, len, flags, now)
                    .ok_or(DropReason::NoSession)?;
                if protocol == Protocol::Tcp {
                    self.proxy_in(&key, t)?;
                }
                return Ok(inside);
            }
            _ if t.has_flag(TcpFlags::RST) => return Err(DropReason::NoSession),
            Target::Dnat(_, first) => {
                let syn = flags.is_some_and(|f| f.flags & TcpFlags::SYN != 0);
                let rule = (protocol, first);
                if protocol == Protocol::Tcp {
                    if let Some(why) = self.proxy_new(key, port, rule, t, len, now) {
                        return Err(why);
                    }
                }
                if syn {
                    // RFC 7857 section 3.1 and a SYN flood's leftovers: a port forward
                    // holds at most this many half-open sessions; the oldest goes first.
                    self.table.cap_half_open(rule, self.cfg.max_half_open, now);
                }
                let s = self.table.create_dnat(key, port, now).ok();
                if let Some(s) = s {
                    s.touch(Direction::In, len, flags, now);
                    if syn {
                        self.table.note_half_open(rule, key);
                    }
                    return Ok(inside);
                }
                None
            }
            Target::Mapped(_) => self.table.create_out(key, now).ok(),
        };
        let session = session.ok_or(DropReason::TableFull)?;
        session.touch(Direction::In, len, flags, now);
        Ok(inside)
    }
}
