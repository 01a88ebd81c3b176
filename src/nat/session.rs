//! One session: an (inside endpoint, remote endpoint) pair through a mapping or a DNAT
//! rule, with its idle clock, TCP state (RFC 7857 section 3.1) and counters.

use super::tcp_state::{Direction, TcpSeg, TcpTrack};
use super::time::Instant;

/// One translated conversation.
#[derive(Debug, Clone)]
pub struct Session {
    /// The router's external port (or ICMP identifier) for this session.
    pub ext_port: u16,
    /// Created by a DNAT rule rather than a dynamic mapping.
    pub dnat: bool,
    pub tcp: TcpTrack,
    pub created: Instant,
    pub last_seen: Instant,
    /// When it last moved to the young end of the LRU.
    pub(super) promoted: Instant,
    /// Packets and bytes seen, `[out, in]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

impl Session {
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
