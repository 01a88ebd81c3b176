//! ICMP error messages about translated packets, in both directions (RFC 5508 section
//! 3.2 REQ-3..5, RFC 5382 REQ-9): the outer header and the quoted datagram's IP and
//! transport header are rewritten, with their checksums. An error whose quoted packet is
//! unusable, or is itself an ICMP error (RFC 1122 3.2.2), is dropped. An ICMP error never
//! ends or refreshes a session (RFC 4787 REQ-12, RFC 5382 REQ-10).

use std::net::Ipv4Addr;

use super::syn_proxy::{move_seq, SeqFix};
use super::{DropReason, Endpoint, Instant, Nat, SessionKey, Side, Step, Verdict};
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::transport::{self, End, Protocol, Transport};

impl Nat {
    /// An ICMP error from outside about a packet the router translated on its way out:
    /// the quoted packet runs outside address:external port → remote.
    pub(super) fn inbound_icmp_error(
        &mut self,
        mut ip: Ipv4<&mut [u8]>,
        _now: Instant,
    ) -> Step<Verdict> {
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
        let fix = self.quote_fix(&key, Side::Inside);
        rewrite_quoted(ip.payload_mut(), qproto, End::Src, key.inside, fix)?;
        let len = ip.total_len();
        ip.set_dst(key.inside.addr);
        ip.decrement_ttl();
        self.stats.icmp_errors_translated += 1;
        Ok(Verdict::Forward { len })
    }

    /// An ICMP error from an inside host about a packet that reached it through the NAT:
    /// the quoted packet runs remote → inside endpoint.
    pub(super) fn outbound_icmp_error(
        &mut self,
        mut ip: Ipv4<&mut [u8]>,
        _now: Instant,
    ) -> Step<Verdict> {
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
        let fix = self.quote_fix(&key, Side::Outside);
        rewrite_quoted(ip.payload_mut(), qproto, End::Dst, outside, fix)?;
        let len = ip.total_len();
        ip.set_src(self.cfg.outside.addr);
        ip.decrement_ttl();
        self.stats.icmp_errors_translated += 1;
        Ok(Verdict::Forward { len })
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

/// Rewrites one end of the datagram quoted in ICMP message `icmp` to `to`, and moves a
/// sequence field of a SYN-proxied connection's segment (`fix`), then refreshes the ICMP
/// checksum over the whole message.
fn rewrite_quoted(
    icmp: &mut [u8],
    protocol: Protocol,
    end: End,
    to: Endpoint,
    fix: Option<SeqFix>,
) -> Step<()> {
    {
        let quoted = icmp.get_mut(8..).ok_or(DropReason::BadQuotedPacket)?;
        let mut q =
            Ipv4::new_checked(quoted, Check::Quoted).map_err(|_| DropReason::BadQuotedPacket)?;
        transport::rewrite_endpoint(&mut q, protocol, end, to.addr, to.port);
        if let Some(fix) = fix {
            move_seq(q.payload_mut(), fix, true);
        }
    }
    transport::refresh_icmp_checksum(icmp);
    Ok(())
}
