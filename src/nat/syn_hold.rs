//! Unsolicited inbound TCP SYNs (RFC 5382 REQ-4): a SYN that a mapping's filter refuses
//! is held silently for [`SYN_HOLD`]. If the inside host opens towards that remote in the
//! meantime (a simultaneous open, as NAT traversal does), the held SYN is dropped and the
//! remote's retransmission passes; otherwise the remote gets ICMP port unreachable.

use std::collections::VecDeque;

use super::{Address, Endpoint, Instant, Nat, SessionKey, Side, Transmit};
use crate::wire::icmp::{self as icmp_err, unreachable};
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::transport::{icmp_type, Protocol};

/// How long an unsolicited inbound SYN is held before ICMP port unreachable (RFC 5382 REQ-4).
pub const SYN_HOLD: std::time::Duration = std::time::Duration::from_secs(6);
/// Most SYNs held at once; beyond, the oldest is dropped without an answer.
pub const MAX_HELD_SYNS: usize = 1024;
/// Bytes of a held SYN kept to quote: what an ICMP error of 576 bytes has room for.
const QUOTE_LEN: usize = icmp_err::MAX_ERROR_LEN - 28;

/// An inbound SYN refused by a mapping's filter, held for [`SYN_HOLD`].
#[derive(Debug)]
struct HeldSyn<A> {
    deadline: Instant,
    key: SessionKey<A>,
    /// The SYN as received, quoted in the ICMP error if it comes to that.
    quote: Vec<u8>,
}

/// The SYNs held, oldest first.
#[derive(Debug)]
pub(super) struct HeldSyns<A>(VecDeque<HeldSyn<A>>);

impl<A> Default for HeldSyns<A> {
    fn default() -> Self {
        HeldSyns(VecDeque::new())
    }
}

impl<A: Address> Nat<A> {
    /// Holds an inbound SYN (`quote`: the packet as received) refused by the filter of the
    /// mapping on its port.
    pub(super) fn hold_syn(
        &mut self,
        quote: &[u8],
        owner: Endpoint<A>,
        remote: Endpoint<A>,
        now: Instant,
    ) {
        let key = SessionKey {
            protocol: Protocol::Tcp,
            inside: owner,
            remote,
        };
        if self.held_syns.0.iter().any(|h| h.key == key) {
            return; // a retransmission: the first one's clock runs
        }
        if self.held_syns.0.len() >= MAX_HELD_SYNS {
            self.held_syns.0.pop_front();
            self.stats.held_syns_overflowed += 1;
        }
        self.held_syns.0.push_back(HeldSyn {
            deadline: now + SYN_HOLD,
            key,
            quote: quote[..quote.len().min(QUOTE_LEN)].to_vec(),
        });
    }

    /// Answers the held SYNs whose time is over with the error `answer` makes of the
    /// quoted SYN (ICMP or ICMPv6 port unreachable), sent from the outside address.
    pub(super) fn expire_held_syns_with(
        &mut self,
        now: Instant,
        answer: impl Fn(&[u8], A) -> Option<Vec<u8>>,
    ) {
        while self.held_syns.0.front().is_some_and(|h| h.deadline <= now) {
            let Some(h) = self.held_syns.0.pop_front() else {
                break;
            };
            // No outbound SYN came: RFC 5382 REQ-4 says port unreachable.
            if !self.allow_icmp_error(now) {
                continue;
            }
            if let Some(packet) = answer(&h.quote, self.cfg.outside.addr) {
                self.queue.push_back(Transmit::new(Side::Outside, packet));
                self.stats.icmp_errors_sent += 1;
            }
        }
    }

    /// The inside host opens towards the remote whose SYN may be held: drop that SYN
    /// silently (RFC 5382 REQ-4); the remote's retransmission will now pass.
    pub(super) fn release_held_syn(&mut self, key: &SessionKey<A>) {
        if !self.held_syns.0.is_empty() {
            self.held_syns.0.retain(|h| h.key != *key);
        }
    }

    pub(super) fn next_held_syn_deadline(&self) -> Option<Instant> {
        self.held_syns.0.front().map(|h| h.deadline)
    }
}

impl Nat {
    /// Answers the IPv4 SYNs held past their time with ICMP port unreachable.
    pub(super) fn expire_held_syns(&mut self, now: Instant) {
        self.expire_held_syns_with(now, |quote, from| {
            let q = Ipv4::new_checked(quote, Check::Quoted).ok()?;
            let mut packet = Vec::new();
            icmp_err::build_error(
                &mut packet,
                from,
                icmp_type::DEST_UNREACHABLE,
                unreachable::PORT,
                0,
                &q,
            );
            Some(packet)
        });
    }
}
