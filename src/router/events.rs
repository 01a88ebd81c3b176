//! A bounded ring of the packets that crossed the ports (`--event-ring N`): each read and
//! each write, with its endpoints, for the web view's ladder diagrams (`tunnat web`). A
//! packet written is tied to the packet read that caused it (`cause`). Off by default:
//! with N = 0 the data path pays one branch.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::nat::{Instant, Side};

/// One packet crossing a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// The router's clock, milliseconds.
    pub ms: u64,
    /// `read` (before translation) or `written` (after).
    pub dir: String,
    pub side: String,
    /// For a packet written, the `seq` of the packet read that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<u64>,
    pub proto: String,
    pub src: String,
    pub dst: String,
    /// TCP flags, or what an ICMP message is.
    pub info: String,
}

/// The answer to `events`: those after `since`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub events: Vec<Event>,
}

/// The ring.
#[derive(Debug, Default)]
pub struct Ring {
    cap: usize,
    seq: u64,
    events: VecDeque<Event>,
    /// The packet being handled: what it writes is its consequence.
    cause: Option<u64>,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            cap,
            ..Ring::default()
        }
    }

    pub fn is_on(&self) -> bool {
        self.cap > 0
    }

    fn push(&mut self, dir: &str, side: Side, p: &[u8], now: Instant, cause: Option<u64>) -> u64 {
        self.seq += 1;
        let (proto, src, dst, info) = crate::wire::summary::endpoints(p);
        if self.events.len() == self.cap {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            seq: self.seq,
            ms: now.millis(),
            dir: dir.into(),
            side: side.name().into(),
            cause,
            proto,
            src,
            dst,
            info,
        });
        self.seq
    }

    /// A packet read from `side`; what is written until the next is its consequence.
    pub fn read(&mut self, side: Side, p: &[u8], now: Instant) {
        if self.is_on() {
            self.cause = Some(self.push("read", side, p, now, None));
        }
    }

    /// A packet written to `side`.
    pub fn written(&mut self, side: Side, p: &[u8], now: Instant) {
        if self.is_on() {
            let cause = self.cause;
            self.push("written", side, p, now, cause);
        }
    }

    /// A timer fired: what it writes is no packet's consequence.
    pub fn timer(&mut self) {
        self.cause = None;
    }

    /// The events after `since`.
    pub fn since(&self, since: u64) -> Events {
        Events {
            events: self
                .events
                .iter()
                .filter(|e| e.seq > since)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn udp(sp: u8) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[0, sp, 0, 53, 0, 8, 0, 0]);
        p
    }

    #[test]
    fn bounded_and_each_write_tied_to_its_read() {
        let mut r = Ring::new(3);
        let t = Instant::ZERO;
        r.read(Side::Inside, &udp(1), t);
        r.written(Side::Outside, &udp(2), t);
        r.timer();
        r.written(Side::Outside, &udp(3), t);
        r.read(Side::Outside, &udp(4), t);
        let e = r.since(0).events;
        assert_eq!(e.len(), 3, "bounded");
        assert_eq!(
            (e[0].seq, e[0].cause, e[0].dir.as_str()),
            (2, Some(1), "written")
        );
        assert_eq!(
            e[1].cause, None,
            "a timer's write is no packet's consequence"
        );
        assert_eq!(
            (e[2].src.as_str(), e[2].info.as_str()),
            ("10.0.0.1:4", "UDP")
        );
        assert_eq!(r.since(3).events.len(), 1);
        let mut off = Ring::new(0);
        off.read(Side::Inside, &udp(1), t);
        assert!(off.since(0).events.is_empty() && !off.is_on());
    }
}
