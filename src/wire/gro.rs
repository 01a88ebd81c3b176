//! Receive offload in user space (a lever of issue 18): consecutive UDP datagrams of one
//! flow, about to be written to one TUN, joined into one UDP GSO super-packet
//! (`VIRTIO_NET_HDR_GSO_UDP_L4`), which the kernel splits back into the same datagrams
//! after a single write. This is what a NIC's or the kernel's UDP GRO does (Linux's
//! `udp_gro_receive`, `rx-udp-gro-forwarding`), and what wireguard-go and tun-rs do before
//! writing to a TUN.
//!
//! A datagram joins a train only if the result cannot differ from it on the wire:
//!
//! * same IP header but for the length, checksum and (IPv4) identification, so the same
//!   addresses, TOS/traffic class, TTL/hop limit and flow label; same ports;
//! * IPv4 without options, with DF (an atomic datagram, RFC 6864, whose identification
//!   the kernel's segmentation may renumber), never a fragment; IPv6 with UDP as the first
//!   next header;
//! * no GSO of its own, and a checksum that is either partial (the field holds the
//!   pseudo-header sum, completed by whoever emits it) or complete and correct: a train's
//!   checksum is completed by the kernel for every segment, which must not turn a corrupt
//!   datagram into a good one;
//! * a payload of the train's segment size, or a shorter one that ends the train (the
//!   last segment of a GSO packet may be short), never an empty one;
//! * at most [`MAX_SEGMENTS`] datagrams and 65,535 bytes in all (headers included, in
//!   both families).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::offload::{Gso, Offload, Partial, GSO_UDP_L4};

/// Datagrams in one train at most (the kernel's `UDP_MAX_SEGMENTS` is larger).
pub const MAX_SEGMENTS: u16 = 64;

const UDP: u8 = 17;
const UDP_HDR: usize = 8;

/// A train being built in the buffer of its first datagram, which holds the train's
/// packet in its first [`Train::bytes`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Train {
    /// The first datagram's IP and UDP headers, which every other must match.
    hdr: [u8; 48],
    /// Bytes of IP header (20 or 40).
    ip_len: usize,
    /// Payload bytes of each datagram but the last.
    seg: usize,
    /// The packet's length so far, and how long it may grow in its buffer.
    len: usize,
    room: usize,
    count: u16,
    /// A shorter datagram came: nothing more may join.
    closed: bool,
    /// The first datagram's own offload header, for a train of one.
    first: Offload,
}

/// A datagram that may be in a train: [`Datagram::check`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    ip_len: usize,
}

impl Datagram {
    /// Whether datagram `pkt`, with offload header `off`, may be in a train at all.
    pub fn check(pkt: &[u8], off: &Offload) -> Option<Datagram> {
        eligible(pkt, off).map(|ip_len| Datagram { ip_len })
    }
}

/// Where a datagram's UDP header starts, if it may be in a train at all.
fn eligible(pkt: &[u8], off: &Offload) -> Option<usize> {
    if off.gso.is_some() {
        return None;
    }
    let ip_len = match pkt.first()? >> 4 {
        4 => {
            if pkt.len() < 20 {
                return None;
            }
            let flags_frag = u16::from_be_bytes([pkt[6], pkt[7]]);
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            // No options, DF and neither MF nor an offset, UDP, length as read.
            if pkt[0] != 0x45 || flags_frag != 0x4000 || pkt[9] != UDP || total != pkt.len() {
                return None;
            }
            20
        }
        6 => {
            let payload = usize::from(u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?]));
            if pkt.len() < 40 || pkt[6] != UDP || payload + 40 != pkt.len() {
                return None;
            }
            40
        }
        _ => return None,
    };
    let udp = pkt.get(ip_len..ip_len + UDP_HDR)?;
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len != pkt.len() - ip_len || udp_len == UDP_HDR {
        return None;
    }
    match off.csum {
        Some(p) => {
            (usize::from(p.start) == ip_len && p.offset == 6).then_some(())?;
        }
        None => {
            // Complete: it must be right (and present; an IPv4 datagram without one
            // would get one).
            let sum = checksum::sum(&pkt[ip_len..], pseudo(pkt, ip_len, udp_len));
            (udp[6..8] != [0, 0] && checksum::fold(sum) == 0xffff).then_some(())?;
        }
    }
    Some(ip_len)
}

/// Whether a packet that may not join a train (no [`Datagram`]) must wait until the trains
/// open for its port are written: a UDP one, which may be of a train's flow and must not
/// be passed by it, and so an IPv6 one whose first next header is an extension (a
/// fragment of a UDP datagram, say). TCP and ICMP are of no train's flow and go at once.
pub fn goes_after_trains(pkt: &[u8]) -> bool {
    const TCP: u8 = 6;
    const ICMPV6: u8 = 58;
    match pkt.first().map(|b| b >> 4) {
        Some(4) => pkt.get(9) == Some(&UDP),
        Some(6) => !matches!(pkt.get(6), Some(&TCP) | Some(&ICMPV6) | None),
        _ => false,
    }
}

/// The uncomplemented pseudo-header sum of `pkt` with a transport length of `l4_len`.
fn pseudo(pkt: &[u8], ip_len: usize, l4_len: usize) -> u32 {
    if ip_len == 20 {
        let a = |i: usize| Ipv4Addr::new(pkt[i], pkt[i + 1], pkt[i + 2], pkt[i + 3]);
        checksum::pseudo_header_sum(a(12), a(16), UDP, l4_len as u16)
    } else {
        let a = |i: usize| {
            let b: [u8; 16] = pkt[i..i + 16].try_into().unwrap_or([0; 16]);
            Ipv6Addr::from(b)
        };
        checksum::pseudo_header_sum_v6(a(8), a(24), UDP, l4_len as u32)
    }
}

/// Makes the IP and UDP headers of `pkt` (`ip_len` bytes of IP header) say its length:
/// the IPv4 total length and header checksum, or the IPv6 payload length; the UDP length;
/// the UDP checksum field as a partial checksum (the pseudo-header sum).
fn set_lengths(pkt: &mut [u8], ip_len: usize) {
    let l4_len = pkt.len() - ip_len;
    if ip_len == 20 {
        let total = pkt.len() as u16;
        pkt[2..4].copy_from_slice(&total.to_be_bytes());
        super::ipv4::recompute_header_checksum(&mut pkt[..20]);
    } else {
        pkt[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    pkt[ip_len + 4..ip_len + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    let p = checksum::fold(pseudo(pkt, ip_len, l4_len));
    pkt[ip_len + 6..ip_len + 8].copy_from_slice(&p.to_be_bytes());
}

/// Whether two IP and UDP headers are of one flow: the same addresses and ports.
fn same_flow(a: &[u8], b: &[u8], ip_len: usize) -> bool {
    let same = |r: std::ops::Range<usize>| a.get(r.clone()) == b.get(r);
    let addrs = if ip_len == 20 { 12..20 } else { 8..40 };
    same(addrs) && same(ip_len..ip_len + 4)
}

/// Whether the rest of two IP headers of one flow, which segments of one super-packet
/// share, match: version and TOS, flags, TTL and protocol (IPv4); version, traffic class
/// and flow label, next header and hop limit (IPv6).
fn same_header(a: &[u8], b: &[u8], ip_len: usize) -> bool {
    let same = |r: std::ops::Range<usize>| a.get(r.clone()) == b.get(r);
    if ip_len == 20 {
        same(0..2) && same(6..10)
    } else {
        same(0..4) && same(6..8)
    }
}

impl Train {
    /// A train of one: datagram `pkt` (checked: `d`), read with offload header `off`
    /// into a buffer with `room` bytes from its IP header on.
    pub fn start(pkt: &[u8], d: Datagram, off: &Offload, room: usize) -> Train {
        let mut hdr = [0; 48];
        let n = d.ip_len + UDP_HDR;
        hdr[..n].copy_from_slice(&pkt[..n]);
        Train {
            hdr,
            ip_len: d.ip_len,
            seg: pkt.len() - n,
            len: pkt.len(),
            room: room.min(usize::from(u16::MAX)),
            count: 1,
            closed: false,
            first: *off,
        }
    }

    /// The train's packet's length so far.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// Datagrams in it.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Whether datagram `pkt` (checked: `d`) may join: same flow and header, a payload no
    /// longer than the others', room left.
    pub fn takes(&self, pkt: &[u8], d: Datagram) -> bool {
        !self.closed && self.same_flow(pkt, d) && self.fits(pkt, d)
    }

    fn same_flow(&self, pkt: &[u8], d: Datagram) -> bool {
        d.ip_len == self.ip_len && same_flow(&self.hdr, pkt, self.ip_len)
    }

    /// A datagram of the train's flow fits: the same header, a payload no longer than
    /// the others', room left.
    fn fits(&self, pkt: &[u8], d: Datagram) -> bool {
        let payload = pkt.len() - d.ip_len - UDP_HDR;
        self.count < MAX_SEGMENTS
            && payload <= self.seg
            && self.len + payload <= self.room
            && same_header(&self.hdr, pkt, self.ip_len)
    }

    /// Appends the payload of datagram `pkt`, which it [`takes`](Train::takes), to the
    /// train's packet in `head` (its buffer from the IP header on).
    pub fn push(&mut self, head: &mut [u8], pkt: &[u8]) {
        let payload = &pkt[self.ip_len + UDP_HDR..];
        let end = self.len + payload.len();
        head[self.len..end].copy_from_slice(payload);
        self.len = end;
        self.count += 1;
        self.closed = payload.len() < self.seg;
    }

    /// Finishes the train's packet in `head`: its lengths, the IPv4 header checksum and
    /// the UDP checksum field (the pseudo-header sum, to be completed per segment); the
    /// offload header to write it with. A train of one is its datagram as it was.
    pub fn finish(&self, head: &mut [u8]) -> Offload {
        if self.count == 1 {
            return self.first;
        }
        let ip = self.ip_len;
        set_lengths(&mut head[..self.len], ip);
        Offload {
            csum: Some(Partial {
                start: ip as u16,
                offset: 6,
            }),
            gso: Some(Gso {
                kind: GSO_UDP_L4,
                size: self.seg as u16,
                hdr_len: (ip + UDP_HDR) as u16,
            }),
        }
    }
}

/// The trains open in one batch for one TUN, one per flow, each known by its first
/// datagram's buffer (`K`): datagrams of several flows interleaved in a batch each join
/// their own. Trains are written in the order they were started (flows may pass each
/// other; a flow's own datagrams keep their order).
#[derive(Debug)]
pub struct Trains<K> {
    open: Vec<(K, Train)>,
}

/// Trains open at once per TUN at most; one more starts by finishing the oldest.
pub const MAX_TRAINS: usize = 8;

impl<K: Copy> Default for Trains<K> {
    fn default() -> Self {
        Trains::new()
    }
}

impl<K: Copy> Trains<K> {
    /// None open (and nothing allocated until one is).
    pub const fn new() -> Trains<K> {
        Trains { open: Vec::new() }
    }

    /// The open train datagram `pkt` (checked: `d`) may join, and its buffer. A train of
    /// its flow (its addresses and ports) it does not fit, for its size or another TTL,
    /// TOS or flow label, is closed: the flow goes on in a new train, written after it, so
    /// its datagrams keep their order, as the kernel's GRO keeps it by flushing.
    pub fn find(&mut self, pkt: &[u8], d: Datagram) -> Option<(K, &mut Train)> {
        let (k, t) = self
            .open
            .iter_mut()
            .find(|(_, t)| !t.closed && t.same_flow(pkt, d))?;
        if t.fits(pkt, d) {
            return Some((*k, t));
        }
        t.closed = true;
        None
    }

    /// Whether no train is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Opens `train` in buffer `key`; the oldest, to be written now, if that many were
    /// open.
    pub fn open(&mut self, key: K, train: Train) -> Option<(K, Train)> {
        let oldest = (self.open.len() >= MAX_TRAINS).then(|| self.open.remove(0));
        self.open.push((key, train));
        oldest
    }

    /// Every open train, oldest first, to be written now.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (K, Train)> {
        self.open.drain(..)
    }
}

/// Splits a finished train (`head`, written with `off`) as the kernel's UDP segmentation
/// does: each segment with the train's headers, the IPv4 identification counted up from
/// the first's, and its checksum completed. For the tests and the fuzz target.
#[cfg(any(test, feature = "fuzz"))]
pub fn split(head: &[u8], off: &Offload) -> Vec<Vec<u8>> {
    let Some(g) = off.gso else {
        return vec![head.to_vec()];
    };
    let hdr = usize::from(g.hdr_len);
    let ip = hdr - UDP_HDR;
    let mut out = vec![];
    for (i, chunk) in head[hdr..].chunks(usize::from(g.size)).enumerate() {
        let mut p = head[..hdr].to_vec();
        p.extend_from_slice(chunk);
        if ip == 20 {
            let id = u16::from_be_bytes([p[4], p[5]]).wrapping_add(i as u16);
            p[4..6].copy_from_slice(&id.to_be_bytes());
        }
        set_lengths(&mut p, ip);
        if let Some(c) = off.csum {
            super::offload::complete(&mut p, c);
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;

    fn v4(payload: &[u8], ttl: u8, id: u16) -> Vec<u8> {
        let src = std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let dst = std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let mut l4 = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
        l4.extend_from_slice(payload);
        let n = l4.len() as u16;
        l4[4..6].copy_from_slice(&n.to_be_bytes());
        let mut p = super::super::datagram(src, dst, UDP, id, l4, 6).unwrap();
        p[8] = ttl;
        p[10..12].fill(0);
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn v6(payload: &[u8]) -> Vec<u8> {
        let src = std::net::IpAddr::V6("fd00::2".parse().unwrap());
        let dst = std::net::IpAddr::V6("2001:db8::9".parse().unwrap());
        let mut l4 = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
        l4.extend_from_slice(payload);
        let n = l4.len() as u16;
        l4[4..6].copy_from_slice(&n.to_be_bytes());
        super::super::datagram(src, dst, UDP, 0, l4, 6).unwrap()
    }

    fn start(p: &[u8], off: &Offload, room: usize) -> Option<Train> {
        Datagram::check(p, off).map(|d| Train::start(p, d, off, room))
    }

    /// Joins `p` to `t` if it may: what a driver does.
    fn join(t: &mut Train, head: &mut [u8], p: &[u8]) -> bool {
        match Datagram::check(p, &Offload::NONE) {
            Some(d) if t.takes(p, d) => {
                t.push(head, p);
                true
            }
            _ => false,
        }
    }

    fn build(pkts: &[Vec<u8>]) -> (Vec<u8>, Train, usize) {
        let mut head = pkts[0].clone();
        head.resize(65536, 0);
        let mut t = start(&pkts[0], &Offload::NONE, head.len()).unwrap();
        let joined = pkts[1..]
            .iter()
            .take_while(|p| join(&mut t, &mut head, p))
            .count();
        (head, t, joined)
    }

    #[test]
    fn a_train_splits_back_into_the_same_datagrams() {
        for make in [|p: &[u8], i: u16| v4(p, 64, 7 + i), |p: &[u8], _| v6(p)] {
            let pkts: Vec<Vec<u8>> = (0..5u16)
                .map(|i| make(&[i as u8; 100][..if i == 4 { 60 } else { 100 }], i))
                .collect();
            let (mut head, t, joined) = build(&pkts);
            assert_eq!((joined, t.count()), (4, 5));
            let off = t.finish(&mut head);
            assert_eq!(off.gso.unwrap().size, 100);
            assert_eq!(split(&head[..t.bytes()], &off), pkts);
        }
    }

    #[test]
    fn a_train_of_one_is_left_as_it_was() {
        let p = v4(&[1; 50], 64, 1);
        let off = Offload {
            csum: Some(Partial {
                start: 20,
                offset: 6,
            }),
            gso: None,
        };
        let mut head = p.clone();
        let t = start(&p, &off, p.len()).unwrap();
        assert_eq!(t.finish(&mut head), off);
        assert_eq!(head, p);
    }

    #[test]
    fn what_may_not_join_does_not() {
        let a = v4(&[1; 100], 64, 1);
        let mut bad_sum = v4(&[2; 100], 64, 2);
        bad_sum[30] ^= 1;
        let mut no_df = v4(&[2; 100], 64, 2);
        no_df[6] = 0;
        let longer = v4(&[2; 101], 64, 2);
        let empty = v4(&[], 64, 2);
        let other_ttl = v4(&[2; 100], 63, 2);
        let mut other_port = v4(&[2; 100], 64, 2);
        other_port[22] = 9;
        for (what, p) in [
            ("a bad checksum", bad_sum),
            ("no DF", no_df),
            ("a longer payload", longer),
            ("an empty payload", empty),
            ("another TTL", other_ttl),
            ("another port", other_port),
            ("IPv6", v6(&[2; 100])),
        ] {
            let (_, t, joined) = build(&[a.clone(), p]);
            assert_eq!((joined, t.count()), (0, 1), "{what}");
        }
        // A shorter one ends the train.
        let (_, t, joined) = build(&[a.clone(), v4(&[2; 10], 64, 2), v4(&[3; 100], 64, 3)]);
        assert_eq!((joined, t.count()), (1, 2));
        // A train stops at MAX_SEGMENTS.
        let many: Vec<Vec<u8>> = (0..70).map(|i| v4(&[i as u8; 10], 64, i)).collect();
        let (_, t, _) = build(&many);
        assert_eq!(t.count(), MAX_SEGMENTS);
        // Neither a GSO packet nor a fragment starts one.
        let gso = Offload {
            csum: Some(Partial {
                start: 20,
                offset: 6,
            }),
            gso: Some(Gso {
                kind: GSO_UDP_L4,
                size: 50,
                hdr_len: 28,
            }),
        };
        assert!(start(&a, &gso, 65536).is_none());
        let mut frag = a.clone();
        frag[6] = 0x60;
        assert!(start(&frag, &Offload::NONE, 65536).is_none());
    }

    #[test]
    fn udp_and_what_may_hide_it_goes_after_the_trains() {
        let mut frag6 = v6(&[1; 8]);
        frag6[6] = 44; // a fragment header first
        let mut tcp4 = v4(&[1; 8], 64, 1);
        tcp4[9] = 6;
        let mut tcp6 = v6(&[1; 8]);
        tcp6[6] = 6;
        let mut frag4 = v4(&[1; 8], 64, 1);
        frag4[6] = 0x20; // MF: not a datagram that may join, still UDP
        for (p, after) in [(frag6, true), (frag4, true), (tcp4, false), (tcp6, false)] {
            assert_eq!(goes_after_trains(&p), after, "{:?}", &p[..10]);
        }
        assert!(!goes_after_trains(&[]));
    }

    #[test]
    fn a_train_does_not_outgrow_its_buffer_or_an_ip_packet() {
        let pkts: Vec<Vec<u8>> = (0..64).map(|i| v4(&[i as u8; 1400], 64, i)).collect();
        let (mut head, t, _) = build(&pkts);
        assert!(t.bytes() <= 65535, "{}", t.bytes());
        let off = t.finish(&mut head);
        let segs = split(&head[..t.bytes()], &off);
        assert_eq!(segs[..], pkts[..segs.len()]);
        // A buffer with room for two only.
        let mut small = pkts[0].clone();
        small.resize(pkts[0].len() + 1400, 0);
        let mut t = start(&pkts[0], &Offload::NONE, small.len()).unwrap();
        assert!(join(&mut t, &mut small, &pkts[1]));
        assert!(!join(&mut t, &mut small, &pkts[2]));
    }

    #[test]
    fn interleaved_flows_each_join_their_own_train() {
        let a = |i: u8| v4(&[i; 40], 64, u16::from(i));
        let b = |i: u8| {
            let mut p = v4(&[i; 40], 64, u16::from(i));
            // Another source port, checksum kept right.
            p[20] = 0x31;
            p[26..28].fill(0);
            let sum = checksum::sum(&p[20..], pseudo(&p, 20, p.len() - 20));
            p[26..28].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
            p
        };
        let pkts = [a(1), b(1), a(2), b(2), a(3)];
        let mut bufs: Vec<Vec<u8>> = pkts
            .iter()
            .map(|p| {
                let mut v = p.clone();
                v.resize(4096, 0);
                v
            })
            .collect();
        let mut trains: Trains<usize> = Trains::default();
        for (k, p) in pkts.iter().enumerate() {
            let d = Datagram::check(p, &Offload::NONE).unwrap();
            match trains.find(p, d) {
                Some((head, t)) => t.push(&mut bufs[head], p),
                None => {
                    assert!(trains
                        .open(k, Train::start(p, d, &Offload::NONE, 4096))
                        .is_none())
                }
            }
        }
        let done: Vec<(usize, Train)> = trains.drain().collect();
        assert_eq!(
            done.iter()
                .map(|(k, t)| (*k, t.count()))
                .collect::<Vec<_>>(),
            [(0, 3), (1, 2)]
        );
        for (k, t) in done {
            let off = t.finish(&mut bufs[k]);
            let segs = split(&bufs[k][..t.bytes()], &off);
            let want: Vec<Vec<u8>> = if k == 0 {
                vec![a(1), a(2), a(3)]
            } else {
                vec![b(1), b(2)]
            };
            // IPv4 identifications are renumbered from the first's (DF: RFC 6864).
            assert_eq!(segs.len(), want.len());
            for (s, w) in segs.iter().zip(&want) {
                assert_eq!(s[20..], w[20..]);
                assert_eq!(s[12..20], w[12..20]);
            }
        }
        // A flow's datagram that does not fit its train closes it, for its size or another
        // TTL: a later one that would fit goes to a new train, after it, if any.
        let closes = |y: Vec<u8>, z_joins_y: bool| {
            let (x, z) = (a(1), a(6));
            let mut trains: Trains<usize> = Trains::default();
            let d = Datagram::check(&x, &Offload::NONE).unwrap();
            trains.open(0, Train::start(&x, d, &Offload::NONE, 4096));
            let d = Datagram::check(&y, &Offload::NONE).unwrap();
            assert!(trains.find(&y, d).is_none());
            trains.open(1, Train::start(&y, d, &Offload::NONE, 4096));
            let d = Datagram::check(&z, &Offload::NONE).unwrap();
            let want = z_joins_y.then_some(1);
            assert_eq!(
                trains.find(&z, d).map(|(k, _)| k),
                want,
                "the first train closed"
            );
        };
        closes(v4(&[5; 41], 64, 5), true);
        closes(v4(&[5; 40], 63, 5), false);
        // A ninth train finishes the oldest.
        let mut trains: Trains<usize> = Trains::default();
        for k in 0..MAX_TRAINS {
            let p = v4(&[k as u8; 40], 64 - k as u8, 0);
            let d = Datagram::check(&p, &Offload::NONE).unwrap();
            assert!(trains
                .open(k, Train::start(&p, d, &Offload::NONE, 4096))
                .is_none());
        }
        let p = v4(&[9; 40], 1, 0);
        let d = Datagram::check(&p, &Offload::NONE).unwrap();
        let oldest = trains.open(99, Train::start(&p, d, &Offload::NONE, 4096));
        assert_eq!(oldest.map(|(k, _)| k), Some(0));
    }
}
