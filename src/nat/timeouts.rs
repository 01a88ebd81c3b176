//! Idle timeouts per protocol and TCP phase (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508
//! REQ-2, RFC 7857 section 3.1), and the RFC minimums that bound eviction.

use std::time::Duration;

use super::table::Session;
use super::tcp_state::TcpPhase;
use crate::wire::transport::Protocol;

/// The defaults: RFC 4787 REQ-5 (UDP >= 2 min, 5 min recommended), RFC 5382 REQ-5
/// (established >= 2 h 4 min, transitory >= 4 min), RFC 5508 REQ-2 (ICMP query >= 60 s).
pub const DEFAULT_UDP: Duration = Duration::from_secs(300);
pub const DEFAULT_TCP_ESTABLISHED: Duration = Duration::from_secs(7440);
pub const DEFAULT_TCP_TRANSITORY: Duration = Duration::from_secs(240);
pub const DEFAULT_ICMP: Duration = Duration::from_secs(60);
/// TCP opened from outside, handshake not complete (conntrack keeps SYN_RECV 60 s).
pub const DEFAULT_TCP_HALF_OPEN: Duration = Duration::from_secs(30);

/// The shortest idle timeouts the RFCs allow (the same requirements).
pub const RFC_MIN_UDP: Duration = Duration::from_secs(120);
pub const RFC_MIN_TCP_ESTABLISHED: Duration = Duration::from_secs(7440);
pub const RFC_MIN_TCP_TRANSITORY: Duration = Duration::from_secs(240);
pub const RFC_MIN_ICMP: Duration = Duration::from_secs(60);

/// Idle timeouts per protocol and TCP phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub udp: Duration,
    pub tcp_established: Duration,
    pub tcp_transitory: Duration,
    pub icmp: Duration,
    /// TCP opened from outside whose handshake has not completed.
    pub tcp_half_open: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            udp: DEFAULT_UDP,
            tcp_established: DEFAULT_TCP_ESTABLISHED,
            tcp_transitory: DEFAULT_TCP_TRANSITORY,
            icmp: DEFAULT_ICMP,
            tcp_half_open: DEFAULT_TCP_HALF_OPEN,
        }
    }
}

impl Timeouts {
    pub fn shortest(&self) -> Duration {
        self.udp
            .min(self.tcp_established)
            .min(self.tcp_transitory)
            .min(self.icmp)
            .min(self.tcp_half_open)
    }
}

/// The shortest idle time the RFCs allow before a session may be removed: a session idle
/// at least this long may be evicted to make room when the table is full.
pub fn rfc_minimum_idle(protocol: Protocol, s: &Session) -> Duration {
    match protocol {
        Protocol::Udp => RFC_MIN_UDP,
        Protocol::Icmp => RFC_MIN_ICMP,
        Protocol::Tcp => match s.tcp.phase() {
            TcpPhase::Established => RFC_MIN_TCP_ESTABLISHED,
            TcpPhase::Transitory => RFC_MIN_TCP_TRANSITORY,
            // Opened from outside and never completed: the first to go when room is needed.
            TcpPhase::HalfOpenIn => Duration::ZERO,
        },
    }
}
