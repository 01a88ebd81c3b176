//! IPv4 reassembly for the NAT (RFC 791 section 3.2; RFC 4787 REQ-14: a NAT must accept
//! fragments arriving out of order).
//!
//! Only the first fragment carries the transport header the NAT needs, so fragments are
//! held until the datagram is whole, then translated as one datagram and fragmented again
//! for the port it leaves by. Reassembly is bounded: at most [`MAX_PENDING`] datagrams and
//! [`MAX_BYTES`] bytes are held, each for at most [`TIMEOUT`] (Linux's `ipfrag_time`);
//! beyond, the oldest is dropped. A fragment overlapping one already held drops the whole
//! datagram (overlaps only serve to confuse filters; RFC 1858, and RFC 5722 for IPv6).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::time::Instant;
use super::DropReason;
use crate::wire::ipv4::{self, Ipv4};

pub const MAX_PENDING: usize = 256;
pub const MAX_BYTES: usize = 4 << 20;
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

#[derive(Debug)]
struct Pending {
    header: Option<Vec<u8>>,
    data: Vec<u8>,
    /// Byte ranges held, `[start, end)`, unordered.
    have: Vec<(usize, usize)>,
    total: Option<usize>,
    deadline: Instant,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Held until the rest arrives.
    Held,
    /// The datagram is whole.
    Complete(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<Key, Pending>,
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
    /// Datagrams given up on: timed out, evicted for room, or overlapping.
    pub timed_out: u64,
    pub evicted: u64,
}

impl Reassembler {
    /// Adds one fragment.
    pub fn add(&mut self, ip: &Ipv4<&mut [u8]>, now: Instant) -> Result<Fragment, DropReason> {
        let f = ip.fields();
        let key = Key {
            src: f.src,
            dst: f.dst,
            protocol: f.protocol,
            ident: f.ident,
        };
        let start = f.frag_offset as usize * 8;
        let data = ip.payload();
        let end = start + data.len();
        let more = f.flags & crate::wire::ipv4::FLAG_MF != 0;
        if (more && data.len() % 8 != 0)
            || end + ip.header_len() > 65535
            || (more && data.is_empty())
        {
            return Err(DropReason::BadFragment);
        }
        if !self.pending.contains_key(&key) {
            self.make_room(data.len());
            self.order.push_back((now + TIMEOUT, key));
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            header: None,
            data: Vec::new(),
            have: Vec::new(),
            total: None,
            deadline: now + TIMEOUT,
        });
        let overlaps = p.have.iter().any(|&(a, b)| start < b && a < end);
        let contradicts = match p.total {
            Some(t) => end > t || (!more && end != t),
            None => !more && p.have.iter().any(|&(_, b)| b > end),
        };
        if overlaps || contradicts {
            self.forget(&key);
            return Err(DropReason::BadFragment);
        }
        if p.data.len() < end {
            self.bytes += end - p.data.len();
            p.data.resize(end, 0);
        }
        p.data[start..end].copy_from_slice(data);
        p.have.push((start, end));
        if start == 0 {
            p.header = Some(ip.header().to_vec());
        }
        if !more {
            p.total = Some(end);
        }
        let (Some(total), Some(_)) = (p.total, &p.header) else {
            return Ok(Fragment::Held);
        };
        if p.have.iter().map(|(a, b)| b - a).sum::<usize>() != total {
            return Ok(Fragment::Held); // no overlaps, so the sum says whether all is here
        }
        let p = self.forget(&key).ok_or(DropReason::BadFragment)?;
        let mut d = p.header.unwrap_or_default();
        let hlen = d.len();
        d.extend_from_slice(&p.data[..total]);
        let len = d.len() as u16;
        d[2..4].copy_from_slice(&len.to_be_bytes());
        d[6..8].copy_from_slice(&[0, 0]); // offset 0, MF clear (DF clear: it was fragmented)
        ipv4::recompute_header_checksum(&mut d[..hlen]);
        Ok(Fragment::Complete(d))
    }

    fn forget(&mut self, key: &Key) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.bytes -= p.data.len();
        Some(p)
    }

    fn make_room(&mut self, incoming: usize) {
        while self.pending.len() >= MAX_PENDING || self.bytes + incoming > MAX_BYTES {
            let Some((_, k)) = self.order.pop_front() else {
                break;
            };
            if self.forget(&k).is_some() {
                self.evicted += 1;
            }
        }
    }

    /// Gives up on datagrams whose time is over.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, k)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            if self.pending.get(&k).is_some_and(|p| p.deadline <= now) && self.forget(&k).is_some()
            {
                self.timed_out += 1;
            }
        }
    }

    /// When the oldest datagram held times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|o| o.0)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::ipv4::{fragment, Check};

    fn datagram(n: usize) -> Vec<u8> {
        let mut d = vec![0u8; 20 + n];
        let (s, t) = (
            Ipv4Addr::new(192, 168, 122, 101),
            Ipv4Addr::new(172, 16, 1, 1),
        );
        crate::wire::ipv4::emit_header(&mut d, 0, (20 + n) as u16, 77, false, 64, 17, s, t);
        for (i, b) in d[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        d
    }

    fn pieces(d: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        fragment(d, mtu, &mut out);
        out
    }

    fn feed(r: &mut Reassembler, f: &mut [u8], t: u64) -> Result<Fragment, DropReason> {
        let ip = Ipv4::new_checked(f, Check::Full).unwrap();
        r.add(&ip, Instant::from_secs(t))
    }

    #[test]
    fn out_of_order_fragments_reassemble_to_the_original() {
        let d = datagram(3000);
        let mut fs = pieces(&d, 1000);
        assert_eq!(fs.len(), 4);
        let mut r = Reassembler::default();
        for i in [3, 1, 0] {
            assert_eq!(feed(&mut r, &mut fs[i], 0).unwrap(), Fragment::Held);
        }
        assert_eq!(feed(&mut r, &mut fs[2], 0).unwrap(), Fragment::Complete(d));
        assert_eq!(r.pending(), 0);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn overlap_drops_the_datagram() {
        let d = datagram(2000);
        let mut fs = pieces(&d, 1000);
        let mut r = Reassembler::default();
        feed(&mut r, &mut fs[0], 0).unwrap();
        let mut again = fs[0].clone();
        assert_eq!(
            feed(&mut r, &mut again, 0).unwrap_err(),
            DropReason::BadFragment
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn incomplete_datagrams_time_out_and_memory_is_bounded() {
        let mut r = Reassembler::default();
        let mut f = pieces(&datagram(2000), 1000).remove(0);
        feed(&mut r, &mut f, 0).unwrap();
        r.expire(Instant::from_secs(29));
        assert_eq!(r.pending(), 1);
        r.expire(Instant::from_secs(30));
        assert_eq!((r.pending(), r.timed_out), (0, 1));
        for id in 0..(MAX_PENDING as u16 + 10) {
            let mut d = datagram(2000);
            d[4..6].copy_from_slice(&id.to_be_bytes());
            ipv4::recompute_header_checksum(&mut d[..20]);
            let mut f = pieces(&d, 1000).remove(0);
            feed(&mut r, &mut f, 40).unwrap();
        }
        assert_eq!(r.pending(), MAX_PENDING);
        assert_eq!(r.evicted, 10);
    }

    #[test]
    fn lying_fragments_are_refused() {
        let d = datagram(2000);
        let mut fs = pieces(&d, 1000);
        let mut r = Reassembler::default();
        feed(&mut r, &mut fs[2], 0).unwrap(); // the last: total known
                                              // A "last" fragment ending elsewhere contradicts it.
        let mut bad = fs[0].clone();
        bad[6] = 0; // clear MF: claims to end at 976
        ipv4::recompute_header_checksum(&mut bad[..20]);
        assert_eq!(
            feed(&mut r, &mut bad, 0).unwrap_err(),
            DropReason::BadFragment
        );
    }
}
