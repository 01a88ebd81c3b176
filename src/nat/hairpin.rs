//! Hairpinning (RFC 4787 section 6 REQ-9, RFC 5382 REQ-8, RFC 5508 REQ-7): an inside
//! host sends to the router's outside address and a port that leads back inside (a DNAT
//! rule, or another host's mapping its filter admits). The packet is translated as if it
//! had left and come back in, so the target sees the external address and port.

use super::{Address, DropReason, Endpoint, Instant, Nat, SessionKey, Step, Verdict};
use crate::wire::ipv4::Ipv4;
use crate::wire::transport::{self, End, Protocol, Transport};

impl<A: Address> Nat<A> {
    /// Would a packet from inside to the router's outside address and `port` reach a
    /// host (RFC 4787 REQ-9 hairpinning) rather than the router itself?
    pub(super) fn hairpin_target_exists(&self, protocol: Protocol, port: u16) -> bool {
        protocol != Protocol::Icmp
            && (self.forward_rule(protocol, port).is_some()
                || self.table.port_in_use(protocol, port))
    }
}

impl Nat {
    /// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): an inside host sent to the router's
    /// outside address. The packet is translated as if it had left (source becomes the
    /// outside address and the host's external port) and come back in (destination becomes
    /// the DNAT target or the mapping's owner), and goes back out of the inside port, so
    /// the target sees the external address and port as the source.
    pub(super) fn hairpin(
        &mut self,
        mut ip: Ipv4<&mut [u8]>,
        t: Transport,
        now: Instant,
    ) -> Step<Verdict> {
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
}
