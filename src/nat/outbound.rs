//! Packets from the inside network leaving by the outside port: NAPT (RFC 4787 section 4,
//! RFC 5382 section 2, RFC 5508 section 3.1). The source becomes the outside address and
//! the mapping's external port (or ICMP identifier), with endpoint-independent mappings
//! and port preservation ([`super::table`]); a full table or an inside host over its quota
//! is answered with ICMP 3/13 (RFC 5508 REQ-8, RFC 6888 REQ-4).

use super::tcp_state::TcpSeg;
use super::{
    Address, Direction, DropReason, Endpoint, Instant, Nat, SessionKey, Side, Step, TableError,
    Verdict,
};
use crate::wire::icmp::unreachable;
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::transport::{self, icmp_type, End, Protocol, TcpFlags, Transport};

impl Nat {
    pub(super) fn outbound(&mut self, buf: &mut [u8], now: Instant) -> Step<Verdict> {
        let mut ip = Ipv4::new_checked(buf, Check::Full)?;
        self.screen(Side::Inside, &ip)?;
        let (src, dst) = (ip.src(), ip.dst());
        let local = Verdict::Local {
            len: ip.total_len(),
        };
        if dst == self.cfg.inside.addr {
            return Ok(local);
        }
        if dst == self.cfg.outside.addr {
            let hairpin = Protocol::from_number(ip.protocol())
                .filter(|_| !ip.is_fragment())
                .and_then(|p| Transport::new_checked(p, ip.payload()).ok())
                .filter(|t| self.hairpin_target_exists(t.protocol, t.dst_port));
            let Some(t) = hairpin else {
                return Ok(local); // for the router itself
            };
            if self.spoofed(src) {
                return Err(DropReason::SpoofedSource);
            }
            if !t.tcp_flags_valid() {
                return Err(DropReason::BadTcpFlags);
            }
            if let Some(v) = self.forwarding_checks(&ip, Side::Inside, Side::Inside) {
                return Ok(v);
            }
            return self.hairpin(ip, t, now);
        }
        if self.spoofed(src) {
            return Err(DropReason::SpoofedSource);
        }
        if self.cfg.ssdp
            && dst == crate::portmap::upnp::ssdp::GROUP
            && !ip.is_fragment()
            && ip.protocol() == 17
        {
            // An SSDP search: delivered to the router's inside address, as a host's
            // stack delivers a datagram of a group it joined.
            let t = Transport::new_checked(Protocol::Udp, ip.payload())?;
            if t.dst_port == crate::portmap::upnp::ssdp::PORT && self.cfg.inside.contains(src) {
                let csum = self.csum();
                let own = self.cfg.inside.addr;
                transport::rewrite_endpoint_csum(
                    &mut ip,
                    Protocol::Udp,
                    End::Dst,
                    own,
                    t.dst_port,
                    csum,
                );
                return Ok(local);
            }
        }
        if self.cfg.inside.contains(dst)
            || dst.is_broadcast()
            || dst.is_multicast()
            || dst.is_unspecified()
        {
            return Err(DropReason::NotRouted);
        }
        if ip.is_fragment() {
            return self.reassemble(Side::Inside, ip, now);
        }
        let protocol =
            Protocol::from_number(ip.protocol()).ok_or(DropReason::UnsupportedProtocol)?;
        let t = Transport::new_checked(protocol, ip.payload())?;
        if let Some(v) = self.forwarding_checks(&ip, Side::Inside, Side::Outside) {
            return Ok(v);
        }
        if t.is_icmp_error() {
            return self.outbound_icmp_error(ip, now);
        }
        if protocol == Protocol::Icmp && !t.is_icmp_echo_request() {
            return Err(DropReason::UnsupportedIcmp);
        }
        if !t.tcp_flags_valid() {
            return Err(DropReason::BadTcpFlags);
        }
        let key = SessionKey {
            protocol,
            inside: Endpoint::new(src, t.src_port),
            remote: Endpoint::new(
                dst,
                if protocol == Protocol::Icmp {
                    0
                } else {
                    t.dst_port
                },
            ),
        };
        let len = ip.total_len();
        let ext = match self.outbound_session(key, &t, &ip, now) {
            Ok(ext) => ext,
            Err(v) => return Ok(v),
        };
        ip.decrement_ttl();
        let csum = self.csum();
        transport::rewrite_endpoint_csum(
            &mut ip,
            protocol,
            End::Src,
            self.cfg.outside.addr,
            ext,
            csum,
        );
        self.clamp_mss(&mut ip, &t, Side::Outside);
        if self.cfg.alg_ftp
            && protocol == Protocol::Tcp
            && (key.remote.port == super::ftp::PORT || key.inside.port == super::ftp::PORT)
            && !self.via64
            && self.offload.gso.is_none()
        {
            return Ok(self.ftp_forward(ip.as_bytes_mut(), key, len, now));
        }
        Ok(Verdict::Forward { len })
    }

    /// A segment of an FTP control connection leaving by the outside port, translated:
    /// through the FTP helper, which may send another segment in its place.
    fn ftp_forward(
        &mut self,
        buf: &mut [u8],
        key: SessionKey,
        len: usize,
        now: Instant,
    ) -> Verdict {
        let ihl = ((buf[0] & 0x0f) as usize) * 4;
        let full = self.offload.csum.is_none();
        match self.ftp_outbound(&mut buf[..len], ihl, key, now, full) {
            super::ftp::Out::AsIs => Verdict::Forward { len },
            super::ftp::Out::Held => Verdict::Held,
            super::ftp::Out::Replace(seg) => {
                self.queue
                    .push_back(super::Transmit::new(Side::Outside, seg));
                Verdict::Emit { to: Side::Outside }
            }
        }
    }

    /// The external port of the outbound session `key`, creating the session (and its
    /// mapping) if needed; `Err` holds the verdict when none can be made (ICMP 3/13 for
    /// a full table, RFC 5508 REQ-8).
    pub(super) fn outbound_session<T: AsRef<[u8]>>(
        &mut self,
        key: SessionKey,
        t: &Transport,
        ip: &Ipv4<T>,
        now: Instant,
    ) -> Result<u16, Verdict> {
        match self.out_session(key, t, ip.total_len(), now) {
            Ok(ext) => Ok(ext),
            Err(OutRefused::Drop(why)) => Err(Verdict::Drop(why)),
            Err(OutRefused::NoRoom(why)) => Err(self.answer(
                ip,
                Side::Inside,
                icmp_type::DEST_UNREACHABLE,
                unreachable::ADMIN_PROHIBITED,
                0,
                why,
            )),
        }
    }
}

/// Why an outbound packet got no session.
pub(super) enum OutRefused {
    /// Dropped silently (a blind RST, an RST with no session).
    Drop(DropReason),
    /// No room for a session: the sender gets "administratively prohibited".
    NoRoom(DropReason),
}

/// The outbound decision both families share.
impl<A: Address> Nat<A> {
    /// The external port of the outbound session `key` for a packet of `len` bytes,
    /// creating the session (and its mapping) if needed.
    pub(super) fn out_session(
        &mut self,
        key: SessionKey<A>,
        t: &Transport,
        len: usize,
        now: Instant,
    ) -> Result<u16, OutRefused> {
        let flags = (key.protocol == Protocol::Tcp).then(|| TcpSeg::of(t));
        if !self.rst_acceptable(&key, Direction::Out, flags) {
            return Err(OutRefused::Drop(DropReason::RstOutOfWindow));
        }
        let ext = match self.table.touch(&key, Direction::Out, len, flags, now) {
            Some(ext) => ext,
            None if t.has_flag(TcpFlags::RST) => {
                return Err(OutRefused::Drop(DropReason::NoSession))
            }
            None => match self.table.create_out(key, now) {
                Ok(s) => {
                    s.touch(Direction::Out, len, flags, now);
                    s.ext_port
                }
                Err(e) => {
                    return Err(OutRefused::NoRoom(match e {
                        TableError::Full => DropReason::TableFull,
                        TableError::NoPort => DropReason::NoPort,
                        TableError::HostLimit => DropReason::HostLimit,
                    }))
                }
            },
        };
        if t.has_flag(TcpFlags::SYN) {
            self.release_held_syn(&key);
        }
        if key.protocol == Protocol::Tcp {
            self.proxy_out(&key, t, now).map_err(OutRefused::Drop)?;
        }
        Ok(ext)
    }
}
