//! One session: an (inside endpoint, remote endpoint) pair through a mapping or a DNAT
//! rule, with its idle clock, TCP state (RFC 7857 section 3.1) and counters.

use super::tcp_state::{Direction, TcpSeg, TcpTrack};
use super::time::Instant;

/// One translated conversation: 72 bytes (issue 18: a table of a million sessions), so
/// the two times only ever shown or compared coarsely are whole seconds.
#[derive(Debug, Clone)]
pub struct Session {
    /// The router's external port (or ICMP identifier) for this session.
    pub ext_port: u16,
    /// Created by a DNAT rule rather than a dynamic mapping.
    pub dnat: bool,
    /// Opened by the SYN proxy on a client's cookie ([`super::syn_proxy`]): its sequence
    /// numbers are moved. A session made any other way never is, whatever its addresses.
    pub proxied: bool,
    pub tcp: TcpTrack,
    /// When it was made, in whole seconds of the clock ([`Session::created`]).
    created_s: u32,
    /// When it last moved to the young end of the LRU, in whole seconds.
    pub(super) promoted_s: u32,
    pub last_seen: Instant,
    /// Packets and bytes seen, `[out, in]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// `t` in whole seconds (a clock in milliseconds reaches `u32::MAX` seconds after 136
/// years).
pub(super) fn secs(t: Instant) -> u32 {
    (t.millis() / 1000).min(u64::from(u32::MAX)) as u32
}

impl Session {
    /// A session made at `now`, not yet seen a packet of.
    pub fn new(ext_port: u16, dnat: bool, now: Instant) -> Session {
        Session {
            ext_port,
            dnat,
            proxied: false,
            tcp: TcpTrack::default(),
            created_s: secs(now),
            promoted_s: secs(now),
            last_seen: now,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    /// When it was made (to the second).
    pub fn created(&self) -> Instant {
        Instant::from_secs(u64::from(self.created_s))
    }

    /// Says it was made at `t` (a session restored from a state file).
    pub(super) fn set_created(&mut self, t: Instant) {
        self.created_s = secs(t);
    }

    /// When it last moved to the young end of the LRU (to the second).
    pub(super) fn promoted(&self) -> Instant {
        Instant::from_secs(u64::from(self.promoted_s))
    }

    /// Records a packet of `len` bytes in direction `dir` at `now`.
    pub fn touch<S: Into<TcpSeg>>(
        &mut self,
        dir: Direction,
        len: usize,
        tcp: Option<S>,
        now: Instant,
    ) {
        let i = dir.index();
        self.packets[i] += 1;
        self.bytes[i] += len as u64;
        self.last_seen = now;
        if let Some(seg) = tcp {
            self.tcp.update(dir, seg);
        }
    }
}
