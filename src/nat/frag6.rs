//! IPv6 fragments through NAT66, tracked by their first fragment (RFC 4787 REQ-14 asks a
//! NAT to take fragments in any order; RFC 8200 forbids a router to fragment).
//!
//! A router may not cut an IPv6 datagram again once it is whole, so instead of
//! reassembling, tunnat translates each fragment as it is:
//! * the first fragment carries the transport header: it finds or makes the session like
//!   any packet, and its checksum is updated for the whole datagram (the update depends
//!   only on the fields that change, so the rest need not be seen);
//! * the datagram's translation (the address that changes, and to what) is remembered,
//!   keyed by source, destination and identification, and applied to every later
//!   fragment, whose payload holds no header to rewrite;
//! * later fragments that come before the first are held until it comes, within bounds.
//!
//! Bounds, as for IPv4 reassembly: at most [`MAX_TRACKED`] datagrams and [`MAX_HELD`]
//! bytes held, each for [`TIMEOUT`]. A fragment overlapping one seen before condemns the
//! whole datagram (RFC 5722): it and every later fragment of it are dropped.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::Duration;

use super::time::Instant;

pub const MAX_TRACKED: usize = 1024;
pub const MAX_HELD: usize = 1 << 20;
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Most fragment ranges remembered per datagram for the overlap check.
const MAX_RANGES: usize = 64;

/// One datagram, as its fragments arrive on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub ident: u32,
}

/// How the fragments of a datagram are rewritten: the source (outbound) or destination
/// (inbound) becomes this address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    Src(Ipv6Addr),
    Dst(Ipv6Addr),
}

#[derive(Debug)]
struct Tracked {
    rewrite: Option<Rewrite>,
    /// `[start, end)` byte ranges of the fragments seen.
    ranges: Vec<(u32, u32)>,
    /// Later fragments that came before the first.
    held: Vec<Vec<u8>>,
    condemned: bool,
    deadline: Instant,
}

/// What to do with a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Translate it (a first fragment), then [`Fragments::learn`] how.
    First,
    /// A later fragment of a datagram whose translation is known: apply it.
    Rewrite(Rewrite),
    /// Held until the first fragment comes.
    Held,
    /// Dropped: overlapping, or no room.
    Overlap,
    NoRoom,
}

#[derive(Debug, Default)]
pub struct Fragments {
    tracked: HashMap<Key, Tracked>,
    order: VecDeque<(Instant, Key)>,
    held_bytes: usize,
    /// Datagrams given up on, and fragments dropped for overlapping.
    pub timed_out: u64,
    pub overlaps: u64,
}

impl Fragments {
    /// A fragment of datagram `key` covering bytes `[start, end)` of its payload, the
    /// whole packet being `pkt` (kept if it must wait for the first fragment).
    pub fn see(&mut self, key: Key, start: u32, end: u32, pkt: &[u8], now: Instant) -> Seen {
        if !self.tracked.contains_key(&key) {
            if self.tracked.len() >= MAX_TRACKED {
                self.evict_oldest();
            }
            self.tracked.insert(
                key,
                Tracked {
                    rewrite: None,
                    ranges: Vec::new(),
                    held: Vec::new(),
                    condemned: false,
                    deadline: now + TIMEOUT,
                },
            );
            self.order.push_back((now + TIMEOUT, key));
        }
        let Some(t) = self.tracked.get_mut(&key) else {
            return Seen::NoRoom;
        };
        if t.condemned {
            return Seen::Overlap;
        }
        if t.ranges.iter().any(|&(a, b)| start < b && a < end) || t.ranges.len() >= MAX_RANGES {
            t.condemned = true;
            self.held_bytes -= t.held.iter().map(Vec::len).sum::<usize>();
            t.held.clear();
            self.overlaps += 1;
            return Seen::Overlap;
        }
        t.ranges.push((start, end));
        if start == 0 {
            return Seen::First;
        }
        if let Some(r) = t.rewrite {
            return Seen::Rewrite(r);
        }
        if self.held_bytes + pkt.len() > MAX_HELD {
            return Seen::NoRoom;
        }
        self.held_bytes += pkt.len();
        t.held.push(pkt.to_vec());
        Seen::Held
    }

    /// The first fragment of `key` was translated with `rewrite`: later fragments get it
    /// too. Returns those already waiting, for the caller to rewrite and send.
    pub fn learn(&mut self, key: Key, rewrite: Rewrite) -> Vec<Vec<u8>> {
        let Some(t) = self.tracked.get_mut(&key) else {
            return Vec::new();
        };
        t.rewrite = Some(rewrite);
        let held = std::mem::take(&mut t.held);
        self.held_bytes -= held.iter().map(Vec::len).sum::<usize>();
        held
    }

    /// Forgets datagrams whose time is over.
    pub fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(d, _)| *d <= now) {
            let Some((d, key)) = self.order.pop_front() else {
                break;
            };
            if self.tracked.get(&key).is_some_and(|t| t.deadline == d) {
                self.forget(&key, true);
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(d, _)| *d)
    }

    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    fn evict_oldest(&mut self) {
        while let Some((d, key)) = self.order.pop_front() {
            if self.tracked.get(&key).is_some_and(|t| t.deadline == d) {
                self.forget(&key, true);
                return;
            }
        }
    }

    fn forget(&mut self, key: &Key, given_up: bool) {
        if let Some(t) = self.tracked.remove(key) {
            self.held_bytes -= t.held.iter().map(Vec::len).sum::<usize>();
            if given_up && t.rewrite.is_none() {
                self.timed_out += 1;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn key(ident: u32) -> Key {
        Key {
            src: "fd00:122::101".parse().unwrap(),
            dst: "2001:db8:1::1".parse().unwrap(),
            ident,
        }
    }

    #[test]
    fn later_fragments_wait_for_the_first_then_follow_it() {
        let mut f = Fragments::default();
        let t0 = Instant::ZERO;
        assert_eq!(f.see(key(1), 1232, 2000, b"second", t0), Seen::Held);
        assert_eq!(f.see(key(1), 0, 1232, b"first", t0), Seen::First);
        let to = Rewrite::Src("2001:db8:1::186".parse().unwrap());
        assert_eq!(f.learn(key(1), to), vec![b"second".to_vec()]);
        assert_eq!(f.see(key(1), 2000, 2400, b"third", t0), Seen::Rewrite(to));
    }

    #[test]
    fn an_overlap_condemns_the_datagram_and_time_ends_it() {
        let mut f = Fragments::default();
        let t0 = Instant::ZERO;
        assert_eq!(f.see(key(2), 0, 1232, b"a", t0), Seen::First);
        assert_eq!(f.see(key(2), 1224, 1600, b"b", t0), Seen::Overlap);
        assert_eq!(
            f.see(key(2), 1600, 2000, b"c", t0),
            Seen::Overlap,
            "all later ones too"
        );
        assert_eq!(f.overlaps, 1);
        assert_eq!(f.see(key(3), 8, 16, b"lonely", t0), Seen::Held);
        f.expire(t0 + TIMEOUT);
        assert_eq!((f.tracked(), f.timed_out), (0, 2));
        // Bounded: the oldest goes to make room.
        for i in 0..(MAX_TRACKED as u32 + 10) {
            f.see(key(100 + i), 8, 16, b"x", t0);
        }
        assert_eq!(f.tracked(), MAX_TRACKED);
    }
}
