//! Per-session TCP tracking for NAT timeouts (RFC 7857 section 2.2 and figure 1,
//! RFC 5382 REQ-5).
//!
//! A NAT does not run TCP; it only needs to know which idle timeout applies:
//! * *established* (default 7440 s = 2 h 4 min, RFC 5382 REQ-5) once the handshake is
//!   complete: a SYN each way, each acknowledged by the other side (RFC 7857 section 3.1:
//!   the initiator's ACK of the SYN-ACK, not the SYN-ACK alone, completes it);
//! * *half-open from outside* (default 30 s, `--tcp-half-open-timeout`) for a connection
//!   opened from outside whose handshake has not completed: what a SYN flood to a port
//!   forward leaves behind, like conntrack's SYN_RECV (60 s). Such sessions are the first
//!   evicted when the table is full;
//! * *transitory* (default 240 s, RFC 5382 REQ-5 minimum 4 min) for the rest: a
//!   connection opened from inside and not yet established, one whose FINs have been seen
//!   each way, and one reset (RFC 7857 keeps the session 4 min after an RST).
//!
//! Blind resets (RFC 5961 section 3): each direction's sequence space is followed as
//! conntrack does (the highest sequence number sent, and the largest window advertised,
//! scaled per RFC 7323). An RST whose sequence number lies outside the receiver's window
//! changes nothing and is dropped, so guessing a 4-tuple is not enough to end a mapping.
//!
//! Simultaneous open (a SYN each way, then a SYN-ACK each way) is established like any
//! other open. A session picked up mid-stream (first packet not a SYN, e.g. after a
//! router restart) stays transitory until a packet has been seen each way. A SYN after
//! the connection has closed starts a new connection on the same session.

use crate::wire::transport::{TcpFlags, Transport};

/// What the tracker needs of one TCP segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpSeg {
    pub flags: u8,
    pub seq: u32,
    pub window: u16,
    /// Payload bytes.
    pub len: u32,
    /// The window scale option of a SYN.
    pub wscale: Option<u8>,
    /// Whether `seq`, `window` and `len` are known (a segment made from flags alone, as
    /// in some tests, only moves the state).
    pub tracked: bool,
}

impl TcpSeg {
    pub fn of(t: &Transport) -> TcpSeg {
        TcpSeg {
            flags: t.tcp_flags,
            seq: t.seq,
            window: t.window,
            len: t.payload_len,
            wscale: t.wscale,
            tracked: true,
        }
    }
}

impl From<u8> for TcpSeg {
    fn from(flags: u8) -> TcpSeg {
        TcpSeg {
            flags,
            ..TcpSeg::default()
        }
    }
}

/// The direction a packet crosses the NAT in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the inside port to the outside port.
    Out,
    /// From the outside port to the inside port.
    In,
}

impl Direction {
    /// The direction's index in `[out, in]` arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::Out => 0,
            Direction::In => 1,
        }
    }
}

/// The timeout class of a TCP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpPhase {
    /// Opening, closing, or reset: the transitory timeout applies.
    Transitory,
    /// Opened from outside and the handshake not complete: the half-open timeout applies.
    HalfOpenIn,
    /// Open: the established timeout applies.
    Established,
}

/// The tracker's flags, bits of [`TcpTrack::flags`] (the order of the state file's bits,
/// [`TcpTrack::to_saved`]).
mod bit {
    pub const SYN_OUT: u16 = 1 << 0;
    pub const SYN_IN: u16 = 1 << 1;
    pub const FIN_OUT: u16 = 1 << 2;
    pub const FIN_IN: u16 = 1 << 3;
    pub const RST: u16 = 1 << 4;
    pub const SEEN_OUT: u16 = 1 << 5;
    pub const SEEN_IN: u16 = 1 << 6;
    /// An ACK from inside, after the SYN from outside.
    pub const ACKED_OUT: u16 = 1 << 7;
    /// An ACK from outside, after the SYN from inside.
    pub const ACKED_IN: u16 = 1 << 8;
    /// The direction of the first SYN: who opened.
    pub const OPENED_IN: u16 = 1 << 9;
    /// `[out, in]`: the side announced a window scale in its SYN.
    pub const SCALED: [u16; 2] = [1 << 10, 1 << 12];
    /// `[out, in]`: the side's sequence space has been seen.
    pub const SPACE_SEEN: [u16; 2] = [1 << 11, 1 << 13];
    pub const ALL: u16 = (1 << 14) - 1;
}

/// What has been seen of one TCP connection: flags, and each direction's sequence space
/// (the sender's side of it). 20 bytes, packed, since every TCP session carries one
/// (issue 18: a table of a million sessions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpTrack {
    /// One past the highest sequence number sent (SYN and FIN count one), `[out, in]`.
    end: [u32; 2],
    /// The largest window advertised, scaled, `[out, in]`.
    max_window: [u32; 2],
    /// The window scale each side announced in its SYN, `[out, in]`.
    scale: [u8; 2],
    /// [`bit`]s.
    flags: u16,
}

impl TcpTrack {
    fn has(&self, b: u16) -> bool {
        self.flags & b != 0
    }
    fn set(&mut self, b: u16, on: bool) {
        if on {
            self.flags |= b;
        } else {
            self.flags &= !b;
        }
    }

    /// Records one segment (its flags, and its sequence numbers when known).
    pub fn update(&mut self, dir: Direction, seg: impl Into<TcpSeg>) {
        let seg = seg.into();
        let flags = seg.flags;
        let syn = flags & TcpFlags::SYN != 0;
        let ack = flags & TcpFlags::ACK != 0;
        if syn && !ack && (self.has(bit::RST) || self.fins_both()) {
            // A new connection reusing the 4-tuple of a closed one.
            *self = TcpTrack::default();
        }
        if flags & TcpFlags::RST != 0 {
            self.set(bit::RST, true);
        }
        if syn && !ack && !self.has(bit::SYN_OUT | bit::SYN_IN) {
            self.set(bit::OPENED_IN, dir == Direction::In);
        }
        if ack {
            match dir {
                Direction::Out if self.has(bit::SYN_IN) => self.set(bit::ACKED_OUT, true),
                Direction::In if self.has(bit::SYN_OUT) => self.set(bit::ACKED_IN, true),
                _ => {}
            }
        }
        let (syn_bit, fin_bit, seen_bit) = match dir {
            Direction::Out => (bit::SYN_OUT, bit::FIN_OUT, bit::SEEN_OUT),
            Direction::In => (bit::SYN_IN, bit::FIN_IN, bit::SEEN_IN),
        };
        self.set(seen_bit, true);
        if syn {
            self.set(syn_bit, true);
        }
        if flags & TcpFlags::FIN != 0 {
            self.set(fin_bit, true);
        }
        if seg.tracked && flags & TcpFlags::RST == 0 {
            self.track(dir, &seg);
        }
    }

    fn fins_both(&self) -> bool {
        self.has(bit::FIN_OUT) && self.has(bit::FIN_IN)
    }

    /// Follows the sender's sequence space and window (RFC 7323: a SYN's window is never
    /// scaled; the others are when both sides announced a scale).
    fn track(&mut self, dir: Direction, seg: &TcpSeg) {
        let syn = seg.flags & TcpFlags::SYN != 0;
        let fin = seg.flags & TcpFlags::FIN != 0;
        let both_scaled = self.has(bit::SCALED[0]) && self.has(bit::SCALED[1]);
        let d = dir.index();
        if syn {
            self.scale[d] = seg.wscale.unwrap_or(0);
            self.set(bit::SCALED[d], seg.wscale.is_some());
        }
        let end = seg
            .seq
            .wrapping_add(seg.len)
            .wrapping_add(u32::from(syn) + u32::from(fin));
        if !self.has(bit::SPACE_SEEN[d]) || (end.wrapping_sub(self.end[d]) as i32) > 0 {
            self.end[d] = end;
            self.set(bit::SPACE_SEEN[d], true);
        }
        let shift = if syn || !both_scaled {
            0
        } else {
            self.scale[d]
        };
        self.max_window[d] = self.max_window[d].max((u32::from(seg.window) << shift).max(1));
    }

    /// May an RST segment from `dir` end the connection (RFC 5961 section 3)? Its
    /// sequence number must fall within the receiver's window of what the sender has
    /// sent. With nothing to judge by (a side not yet heard from, a session picked up
    /// without its sequence numbers), it may.
    pub fn rst_acceptable(&self, dir: Direction, seg: &TcpSeg) -> bool {
        let (d, r) = (dir.index(), 1 - dir.index());
        let receiver_window = self.max_window[r];
        if !seg.tracked || !self.has(bit::SPACE_SEEN[d]) || receiver_window == 0 {
            return true;
        }
        let distance = (seg.seq.wrapping_sub(self.end[d]) as i32).unsigned_abs();
        distance <= receiver_window
    }

    pub fn phase(&self) -> TcpPhase {
        if self.has(bit::RST) || self.fins_both() {
            return TcpPhase::Transitory;
        }
        let all = |b: u16| self.flags & b == b;
        let handshake = all(bit::SYN_OUT | bit::SYN_IN | bit::ACKED_OUT | bit::ACKED_IN);
        let mid_stream = !self.has(bit::SYN_OUT | bit::SYN_IN) && all(bit::SEEN_OUT | bit::SEEN_IN);
        if handshake || mid_stream {
            TcpPhase::Established
        } else if all(bit::OPENED_IN | bit::SYN_IN) {
            TcpPhase::HalfOpenIn
        } else {
            TcpPhase::Transitory
        }
    }

    /// The tracker as seven numbers, for the state file ([`super::state`]): the flags as
    /// bits, then `[end, max_window, scale]` of each direction's sequence space.
    pub fn to_saved(&self) -> [u32; 7] {
        [
            u32::from(self.flags),
            self.end[0],
            self.max_window[0],
            u32::from(self.scale[0]),
            self.end[1],
            self.max_window[1],
            u32::from(self.scale[1]),
        ]
    }

    /// The tracker saved by [`TcpTrack::to_saved`]; `None` if the numbers cannot be one
    /// (unknown flag bits, a window scale above RFC 7323's 14).
    pub fn from_saved(v: [u32; 7]) -> Option<TcpTrack> {
        let [bits, oe, ow, os, ie, iw, is] = v;
        if bits & !u32::from(bit::ALL) != 0 || os > 14 || is > 14 {
            return None;
        }
        Some(TcpTrack {
            end: [oe, ie],
            max_window: [ow, iw],
            scale: [os as u8, is as u8],
            flags: bits as u16,
        })
    }

    /// A short name for tables and traces, in conntrack's vocabulary.
    pub fn name(&self) -> &'static str {
        if self.has(bit::RST) {
            "CLOSE"
        } else if self.fins_both() {
            "TIME_WAIT"
        } else if self.has(bit::FIN_OUT | bit::FIN_IN) {
            "FIN_WAIT"
        } else if self.phase() == TcpPhase::Established {
            "ESTABLISHED"
        } else if self.has(bit::SYN_OUT) && self.has(bit::SYN_IN) {
            "SYN_RECV"
        } else if self.has(bit::SYN_OUT | bit::SYN_IN) {
            "SYN_SENT"
        } else {
            "NONE"
        }
    }
}

#[cfg(test)]
mod test {
    use super::Direction::{In, Out};
    use super::*;
    const SYN: u8 = TcpFlags::SYN;
    const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN | TcpFlags::ACK;
    const RST: u8 = TcpFlags::RST;

    fn run(steps: &[(Direction, u8)]) -> TcpTrack {
        let mut t = TcpTrack::default();
        for (d, f) in steps {
            t.update(*d, *f);
        }
        t
    }

    #[test]
    fn three_way_handshake_establishes_on_the_initiators_ack() {
        assert_eq!(run(&[(Out, SYN)]).phase(), TcpPhase::Transitory);
        let answered = run(&[(Out, SYN), (In, SYNACK)]);
        assert_eq!(
            answered.phase(),
            TcpPhase::Transitory,
            "the SYN-ACK alone is not enough"
        );
        assert_eq!(answered.name(), "SYN_RECV");
        assert_eq!(
            run(&[(Out, SYN), (In, SYNACK), (Out, ACK)]).name(),
            "ESTABLISHED"
        );
    }

    #[test]
    fn opened_from_outside_is_half_open_until_the_remote_acks() {
        assert_eq!(run(&[(In, SYN)]).phase(), TcpPhase::HalfOpenIn);
        // A SYN flood: the inside server answers, the spoofed remote never does.
        assert_eq!(
            run(&[(In, SYN), (Out, SYNACK)]).phase(),
            TcpPhase::HalfOpenIn
        );
        assert_eq!(
            run(&[(In, SYN), (Out, SYNACK), (In, ACK)]).phase(),
            TcpPhase::Established
        );
        // An RST ends it as any other connection.
        assert_eq!(run(&[(In, SYN), (Out, RST)]).phase(), TcpPhase::Transitory);
    }

    #[test]
    fn a_saved_tracker_comes_back_the_same() {
        let mut t = TcpTrack::default();
        let seg = |flags, seq, window, wscale| TcpSeg {
            flags,
            seq,
            window,
            len: 0,
            wscale,
            tracked: true,
        };
        t.update(Out, seg(SYN, 1000, 64240, Some(7)));
        t.update(In, seg(SYNACK, 5000, 65160, Some(9)));
        t.update(Out, seg(ACK, 1001, 502, None));
        let back = TcpTrack::from_saved(t.to_saved()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.phase(), TcpPhase::Established);
        let mut bad = t.to_saved();
        bad[3] = 15;
        assert_eq!(TcpTrack::from_saved(bad), None, "window scale above 14");
        bad = t.to_saved();
        bad[0] |= 1 << 20;
        assert_eq!(TcpTrack::from_saved(bad), None, "unknown flag bits");
    }

    #[test]
    fn simultaneous_open_establishes() {
        let both = run(&[(Out, SYN), (In, SYN)]);
        assert_eq!(both.phase(), TcpPhase::Transitory);
        assert_eq!(
            run(&[(Out, SYN), (In, SYN), (Out, SYNACK), (In, SYNACK)]).phase(),
            TcpPhase::Established
        );
    }

    #[test]
    fn fin_both_ways_is_transitory() {
        let open = [(Out, SYN), (In, SYNACK), (Out, ACK)];
        let mut t = run(&open);
        t.update(Out, FIN);
        assert_eq!(
            t.phase(),
            TcpPhase::Established,
            "half close keeps the connection"
        );
        t.update(In, FIN);
        assert_eq!(t.phase(), TcpPhase::Transitory);
    }

    #[test]
    fn rst_is_transitory_and_new_syn_reopens() {
        let mut t = run(&[(Out, SYN), (In, SYNACK), (Out, ACK), (In, RST)]);
        assert_eq!(t.phase(), TcpPhase::Transitory);
        t.update(Out, SYN);
        assert_eq!(t.phase(), TcpPhase::Transitory);
        t.update(In, SYNACK);
        t.update(Out, ACK);
        assert_eq!(t.phase(), TcpPhase::Established);
    }

    fn seg(flags: u8, seq: u32, window: u16, len: u32) -> TcpSeg {
        TcpSeg {
            flags,
            seq,
            window,
            len,
            wscale: None,
            tracked: true,
        }
    }

    #[test]
    fn only_an_rst_within_the_window_ends_the_connection() {
        let mut t = TcpTrack::default();
        t.update(Out, seg(SYN, 1000, 64240, 0));
        t.update(In, seg(SYNACK, 5000, 65160, 0));
        t.update(Out, seg(ACK, 1001, 502, 100));
        assert_eq!(t.phase(), TcpPhase::Established);
        // From outside: the remote has sent up to 5001; the inside host's window is 64240.
        assert!(
            !t.rst_acceptable(In, &seg(RST, 5001 + 1_000_000, 0, 0)),
            "a blind guess"
        );
        assert!(!t.rst_acceptable(In, &seg(RST, 5001u32.wrapping_sub(100_000), 0, 0)));
        assert!(
            t.rst_acceptable(In, &seg(RST, 5001, 0, 0)),
            "exactly the next one"
        );
        assert!(
            t.rst_acceptable(In, &seg(RST, 5001 + 30_000, 0, 0)),
            "within the window"
        );
        // From inside: the host has sent up to 1101; the remote's window is 65160.
        assert!(t.rst_acceptable(Out, &seg(RST | ACK, 1101, 0, 0)));
        assert!(!t.rst_acceptable(Out, &seg(RST, 1101 + 70_000, 0, 0)));
        // A flags-only segment (no sequence numbers known) is never judged.
        assert!(t.rst_acceptable(In, &TcpSeg::from(RST)));
    }

    #[test]
    fn windows_are_scaled_once_both_sides_announce_a_scale() {
        let mut t = TcpTrack::default();
        let mut syn = seg(SYN, 0, 64240, 0);
        syn.wscale = Some(7);
        t.update(Out, syn);
        let mut synack = seg(SYNACK, 0, 65160, 0);
        synack.wscale = Some(7);
        t.update(In, synack);
        // A window of 1000 << 7 = 128000 bytes from inside.
        t.update(Out, seg(ACK, 1, 1000, 0));
        assert!(t.rst_acceptable(In, &seg(RST, 1 + 120_000, 0, 0)));
        assert!(!t.rst_acceptable(In, &seg(RST, 1 + 130_000, 0, 0)));
    }

    #[test]
    fn an_rst_answering_a_syn_is_accepted() {
        // RFC 793: the answer to a SYN sent to a closed port has sequence number 0.
        let mut t = TcpTrack::default();
        t.update(Out, seg(SYN, 123_456, 64240, 0));
        assert!(t.rst_acceptable(In, &seg(RST | ACK, 0, 0, 0)));
    }

    #[test]
    fn mid_stream_pickup_needs_both_directions() {
        assert_eq!(run(&[(Out, ACK)]).phase(), TcpPhase::Transitory);
        assert_eq!(run(&[(Out, ACK), (In, ACK)]).phase(), TcpPhase::Established);
    }
}
