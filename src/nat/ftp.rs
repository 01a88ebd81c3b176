//! The FTP helper (`--alg ftp`): FTP (RFC 959) and its extensions for NAT (RFC 2428)
//! carry addresses in the control connection, which no NAPT can translate by headers
//! alone. As the kernel's nf_conntrack_ftp and nf_nat_ftp do, on the control connection
//! (TCP port 21):
//!
//! * an inside client's `PORT h1,h2,h3,h4,p1,p2` and `EPRT |1|addr|port|` get the outside
//!   address and an external port, and the server may then connect to that port, once,
//!   from its own address only (an *expectation*);
//! * a server behind a port forward has its `227 Entering Passive Mode (h1,...,p2)` and
//!   `229 Entering Extended Passive Mode (|||port|)` replies rewritten the same way, and
//!   the expectation admits only the client's address;
//! * a rewritten line of another length shifts the TCP sequence numbers of what follows in
//!   that direction, and the acknowledgements (and SACK blocks) of the other
//!   (nf_nat_seqadj's one correction position, with the offsets before and after it);
//! * a line cut across segments is held until its end comes (the kernel drops such a
//!   segment and waits for the retransmission), then sent whole in one segment.
//!
//! A command naming another host than the client (a "third-party" PORT, the FTP bounce
//! attack) is passed unchanged and opens nothing. An expectation not used within
//! [`EXPECT_TIMEOUT`] is dropped and its port released; each control connection has at
//! most one (a newer command replaces it), so they are bounded by the sessions.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::endpoint::{Endpoint, MapKey, SessionKey};
use super::{HashMap, Instant, Nat};
use crate::wire::checksum;
use crate::wire::transport::set_tcp32 as set32;
use crate::wire::transport::Protocol;

/// The control connection's port.
pub const PORT: u16 = 21;
/// How long an expectation waits for its data connection (nf_conntrack_ftp's 5 minutes).
pub const EXPECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest line held while its end is awaited.
pub const MAX_HELD: usize = 512;

/// Which end of the control connection is inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An inside client: its commands are rewritten.
    Client,
    /// An inside server behind a port forward: its replies are rewritten.
    Server,
}

/// An address and port named in a line, and how it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// `PORT h1,h2,h3,h4,p1,p2`.
    Port(Ipv4Addr, u16),
    /// `EPRT |1|addr|port|`.
    Eprt(Ipv4Addr, u16),
    /// `227 ... (h1,h2,h3,h4,p1,p2)`.
    Pasv(Ipv4Addr, u16),
    /// `229 ... (|||port|)`: the port only.
    Epsv(u16),
}

fn starts_with_ci(line: &[u8], word: &[u8]) -> bool {
    line.len() >= word.len() && line[..word.len()].eq_ignore_ascii_case(word)
}

/// Six comma-separated numbers `h1,h2,h3,h4,p1,p2` at the start of `s`.
fn six(s: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let end = s
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b',' || *c == b' '))
        .unwrap_or(s.len());
    let text = std::str::from_utf8(&s[..end]).ok()?;
    let n: Vec<u8> = text
        .split(',')
        .map(|x| x.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b, c, d, p1, p2] = n[..] else {
        return None;
    };
    Some((
        Ipv4Addr::new(a, b, c, d),
        u16::from(p1) << 8 | u16::from(p2),
    ))
}

/// What `line` (without its line end) names, for `role`.
pub fn parse(line: &[u8], role: Role) -> Option<Named> {
    match role {
        Role::Client if starts_with_ci(line, b"PORT ") => {
            let (a, p) = six(&line[5..])?;
            Some(Named::Port(a, p))
        }
        Role::Client if starts_with_ci(line, b"EPRT ") => {
            let rest = std::str::from_utf8(&line[5..]).ok()?.trim();
            let d = rest.chars().next()?;
            let f: Vec<&str> = rest.split(d).collect();
            // "", proto, addr, port, ""
            if f.len() != 5 || f[1] != "1" {
                return None;
            }
            Some(Named::Eprt(f[2].parse().ok()?, f[3].parse().ok()?))
        }
        Role::Server if line.starts_with(b"227 ") || line.starts_with(b"227-") => {
            // The numbers follow the text: the first digit after "227 ".
            let start = 4 + line[4..].iter().position(u8::is_ascii_digit)?;
            let (a, p) = six(&line[start..])?;
            Some(Named::Pasv(a, p))
        }
        Role::Server if line.starts_with(b"229 ") => {
            let open = line.iter().position(|c| *c == b'(')?;
            let rest = std::str::from_utf8(&line[open + 1..]).ok()?;
            let d = rest.chars().next()?;
            let f: Vec<&str> = rest.split(d).collect();
            if f.len() < 5 || !f[1].is_empty() || !f[2].is_empty() {
                return None;
            }
            Some(Named::Epsv(f[3].parse().ok()?))
        }
        _ => None,
    }
}

/// `line` rewritten to name `addr` and `port` (keeping its line end `eol`).
pub fn rewrite(line: &[u8], named: Named, addr: Ipv4Addr, port: u16, eol: &[u8]) -> Vec<u8> {
    let o = addr.octets();
    let six = format!(
        "{},{},{},{},{},{}",
        o[0],
        o[1],
        o[2],
        o[3],
        port >> 8,
        port & 0xff
    );
    let mut out = match named {
        Named::Port(..) => format!("PORT {six}").into_bytes(),
        Named::Eprt(..) => format!("EPRT |1|{addr}|{port}|").into_bytes(),
        Named::Pasv(..) => {
            let start = 4 + line[4..].iter().position(u8::is_ascii_digit).unwrap_or(0);
            let mut v = line[..start].to_vec();
            let len = line[start..]
                .iter()
                .position(|c| !(c.is_ascii_digit() || *c == b',' || *c == b' '))
                .unwrap_or(line.len() - start);
            v.extend_from_slice(six.as_bytes());
            v.extend_from_slice(&line[start + len..]);
            v
        }
        Named::Epsv(_) => {
            let open = line.iter().position(|c| *c == b'(').unwrap_or(0);
            let close = line.iter().rposition(|c| *c == b')').unwrap_or(line.len());
            let d = line.get(open + 1).copied().unwrap_or(b'|') as char;
            let mut v = line[..open].to_vec();
            v.extend_from_slice(format!("({d}{d}{d}{port}{d}").as_bytes());
            v.extend_from_slice(&line[close..]);
            v
        }
    };
    out.extend_from_slice(eol);
    out
}

/// Could `tail` (a line not yet ended) become a line the helper rewrites?
fn may_become(tail: &[u8], role: Role) -> bool {
    let words: &[&[u8]] = match role {
        Role::Client => &[b"PORT ", b"EPRT "],
        Role::Server => &[b"227 ", b"227-", b"229 "],
    };
    tail.len() <= MAX_HELD
        && words.iter().any(|w| {
            let n = tail.len().min(w.len());
            tail[..n].eq_ignore_ascii_case(&w[..n])
        })
}

/// nf_nat_seqadj's record: sequence numbers after `pos` move by `after`, those before by
/// `before` (retransmissions of what came before the last change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqAdj {
    pub pos: u32,
    pub before: i32,
    pub after: i32,
}

fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl SeqAdj {
    pub fn is_zero(&self) -> bool {
        self.before == 0 && self.after == 0
    }
    /// The offset for a segment starting at (original) `seq`.
    pub fn seq_offset(&self, seq: u32) -> i32 {
        if seq_after(seq, self.pos) {
            self.after
        } else {
            self.before
        }
    }
    /// The original number of an acknowledgement (or SACK edge) `ack` of the other way.
    pub fn unadjust(&self, ack: u32) -> u32 {
        let off = if seq_after(ack.wrapping_sub(self.before as u32), self.pos) {
            self.after
        } else {
            self.before
        };
        ack.wrapping_sub(off as u32)
    }
    /// A segment at original `seq` grew by `delta`. A retransmission of the segment of
    /// the last change (at `pos` or before) changes nothing: its offset is already counted
    /// (nf_nat_seqadj_set's rule).
    pub fn record(&mut self, seq: u32, delta: i32) {
        if delta == 0 {
            return;
        }
        if self.before == self.after || seq_after(seq, self.pos) {
            self.pos = seq;
            self.before = self.after;
            self.after = self.after.wrapping_add(delta);
        }
    }
}

/// One control connection's state.
#[derive(Debug, Default)]
pub struct Control {
    pub adj: SeqAdj,
    /// A line begun but not ended: its original sequence number and bytes.
    held: Option<(u32, Vec<u8>)>,
    /// This connection's expectation, by the mapping it waits on.
    expect: Option<MapKey>,
}

/// A data connection expected: from `remote`'s address to external `port`, for `inside`.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub port: u16,
    pub remote: Ipv4Addr,
    pub inside: Endpoint,
    pub until: Instant,
    /// The port was claimed for it (else a mapping of `inside` had it already).
    claimed: bool,
}

/// The helper's state in the IPv4 core.
#[derive(Debug, Default)]
pub struct Ftp {
    pub controls: HashMap<SessionKey, Control>,
    pub expects: HashMap<MapKey, Expect>,
    pub stats: FtpStats,
}

/// What the helper did, for `tunnat stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FtpStats {
    pub rewritten: u64,
    pub expected: u64,
    pub data_connections: u64,
    pub expired: u64,
    pub held_split: u64,
    /// Lines naming another host than the client (passed unchanged, nothing opened).
    pub third_party: u64,
}

/// What [`Nat::ftp_outbound`] decided.
pub(super) enum Out {
    /// Forward as it is (sequence numbers adjusted in place).
    AsIs,
    /// Send this segment instead (payload changed).
    Replace(Vec<u8>),
    /// Hold it all (a line not yet ended).
    Held,
}

/// The TCP header fields the helper needs, at `tcp` (the TCP header's start in `p`).
fn tcp_fields(p: &[u8], tcp: usize) -> Option<(u32, u32, usize, u8)> {
    let seq = u32::from_be_bytes(p.get(tcp + 4..tcp + 8)?.try_into().ok()?);
    let ack = u32::from_be_bytes(p.get(tcp + 8..tcp + 12)?.try_into().ok()?);
    let doff = (*p.get(tcp + 12)? >> 4) as usize * 4;
    let flags = *p.get(tcp + 13)?;
    Some((seq, ack, doff, flags))
}

/// The SACK blocks' edges in the options of the TCP header at `tcp`: their offsets.
fn sack_edges(p: &[u8], tcp: usize, doff: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = tcp + 20;
    let end = (tcp + doff).min(p.len());
    while i < end {
        match p[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = p.get(i + 1) else { break };
                let len = len as usize;
                if len < 2 || i + len > end {
                    break;
                }
                if kind == 5 {
                    let mut e = i + 2;
                    while e + 4 <= i + len {
                        v.push(e);
                        e += 4;
                    }
                }
                i += len;
            }
        }
    }
    v
}

impl Nat {
    /// The helper on a segment of control connection `key` leaving by the outside port,
    /// already translated (`p`, its IPv4 header `ihl` bytes long). `inside_addr` is the
    /// inside host's own address (before translation), `ext` its external port.
    pub(super) fn ftp_outbound(
        &mut self,
        p: &mut [u8],
        ihl: usize,
        key: SessionKey,
        now: Instant,
        full_csum: bool,
    ) -> Out {
        let role = if key.remote.port == PORT {
            Role::Client
        } else {
            Role::Server
        };
        let Some((seq, _, doff, flags)) = tcp_fields(p, ihl) else {
            return Out::AsIs;
        };
        let total = u16::from_be_bytes([p[2], p[3]]) as usize;
        let payload = p
            .get(ihl + doff..total.min(p.len()))
            .unwrap_or(&[])
            .to_vec();
        let ctl = self.ftp.controls.entry(key).or_default();
        // The bytes to look at, from original sequence number `start`.
        let (start, data) = match ctl.held.take() {
            Some((h, hb)) if seq == h.wrapping_add(hb.len() as u32) && !payload.is_empty() => {
                let mut d = hb;
                d.extend_from_slice(&payload);
                (h, d)
            }
            Some((h, hb)) if seq == h && payload.starts_with(&hb) => (seq, payload),
            Some((h, hb)) => {
                // Out of order: keep waiting for the rest of the held line.
                ctl.held = Some((h, hb));
                (seq, payload)
            }
            None => (seq, payload),
        };
        if data.is_empty() || flags & 0x04 != 0 {
            self.ftp_adjust_seq(p, ihl, key, full_csum);
            return Out::AsIs;
        }
        // Whole lines, and a tail not yet ended.
        let cut = data.iter().rposition(|c| *c == b'\n').map_or(0, |i| i + 1);
        let (lines, tail) = data.split_at(cut);
        let hold = !tail.is_empty() && may_become(tail, role) && ctl.held.is_none();
        let mut out = Vec::with_capacity(data.len() + 32);
        let mut changed = false;
        for line in lines.split_inclusive(|c| *c == b'\n') {
            let body_end = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
            let body = &line[..body_end];
            match parse(body, role).and_then(|n| self.ftp_expect(key, n, now).map(|r| (n, r))) {
                Some((named, (addr, port))) => {
                    let new = rewrite(body, named, addr, port, &line[body_end..]);
                    changed |= new != line;
                    self.ftp.stats.rewritten += 1;
                    out.extend_from_slice(&new);
                }
                None => out.extend_from_slice(line),
            }
        }
        if hold {
            self.ftp.stats.held_split += 1;
            let ctl = self.ftp.controls.entry(key).or_default();
            ctl.held = Some((start.wrapping_add(lines.len() as u32), tail.to_vec()));
            changed = true;
        } else {
            out.extend_from_slice(tail);
        }
        if !changed && start == seq {
            self.ftp_adjust_seq(p, ihl, key, full_csum);
            return Out::AsIs;
        }
        if out.is_empty() {
            return Out::Held;
        }
        // The new segment: same headers, the new payload from `start`, sequence number
        // adjusted, checksums computed whole.
        let ctl = self.ftp.controls.entry(key).or_default();
        let new_seq = start.wrapping_add(ctl.adj.seq_offset(start) as u32);
        // The original bytes `out` stands for: the lines, and the tail unless held.
        let covered = lines.len() + if hold { 0 } else { tail.len() };
        ctl.adj.record(start, out.len() as i32 - covered as i32);
        let mut seg = p[..ihl + doff].to_vec();
        seg.extend_from_slice(&out);
        let len = seg.len() as u16;
        seg[2..4].copy_from_slice(&len.to_be_bytes());
        crate::wire::ipv4::recompute_header_checksum(&mut seg[..ihl]);
        seg[ihl + 4..ihl + 8].copy_from_slice(&new_seq.to_be_bytes());
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(&seg[12..16]).unwrap_or_default());
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&seg[16..20]).unwrap_or_default());
        seg[ihl + 16..ihl + 18].fill(0);
        let s = checksum::pseudo_header_sum(src, dst, 6, (seg.len() - ihl) as u16);
        let c = !checksum::fold(checksum::sum(&seg[ihl..], s));
        seg[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
        Out::Replace(seg)
    }

    /// Moves the sequence number of a segment of `key` leaving by the outside port by the
    /// offset the helper's rewrites made.
    fn ftp_adjust_seq(&mut self, p: &mut [u8], ihl: usize, key: SessionKey, full_csum: bool) {
        let Some(ctl) = self.ftp.controls.get(&key) else {
            return;
        };
        if ctl.adj.is_zero() {
            return;
        }
        let Some((seq, _, _, _)) = tcp_fields(p, ihl) else {
            return;
        };
        let new = seq.wrapping_add(ctl.adj.seq_offset(seq) as u32);
        set32(p, ihl, ihl + 4, new, full_csum);
    }

    /// A segment of control connection `key` coming in from outside: its acknowledgement
    /// (and SACK blocks) moved back by what the helper's rewrites added the other way.
    pub(super) fn ftp_inbound(
        &mut self,
        p: &mut [u8],
        ihl: usize,
        key: SessionKey,
        full_csum: bool,
    ) {
        let Some(ctl) = self.ftp.controls.get(&key) else {
            return;
        };
        let adj = ctl.adj;
        if adj.is_zero() {
            return;
        }
        let Some((_, ack, doff, flags)) = tcp_fields(p, ihl) else {
            return;
        };
        if flags & 0x10 != 0 {
            set32(p, ihl, ihl + 8, adj.unadjust(ack), full_csum);
        }
        for e in sack_edges(p, ihl, doff) {
            let v = u32::from_be_bytes(p[e..e + 4].try_into().unwrap_or_default());
            set32(p, ihl, e, adj.unadjust(v), full_csum);
        }
    }

    /// The expectation a line naming `named` opens, and the address and port the line
    /// is to name instead; `None`: the line is left as it is (a third party, no port).
    fn ftp_expect(
        &mut self,
        key: SessionKey,
        named: Named,
        now: Instant,
    ) -> Option<(Ipv4Addr, u16)> {
        let (addr, port) = match named {
            Named::Port(a, p) | Named::Eprt(a, p) | Named::Pasv(a, p) => (a, p),
            Named::Epsv(p) => (key.inside.addr, p),
        };
        if addr != key.inside.addr || port == 0 {
            self.ftp.stats.third_party += 1;
            return None;
        }
        let mk = MapKey {
            protocol: Protocol::Tcp,
            inside: Endpoint::new(addr, port),
        };
        // The same line again (a retransmission): the same port, so the same rewrite.
        if self.ftp.controls.get(&key).and_then(|c| c.expect) == Some(mk) {
            if let Some(e) = self.ftp.expects.get_mut(&mk) {
                e.until = now + EXPECT_TIMEOUT;
                return Some((self.cfg.outside.addr, e.port));
            }
        }
        // One expectation per control connection: a newer line replaces the older.
        if let Some(old) = self
            .ftp
            .controls
            .get_mut(&key)
            .and_then(|c| c.expect.take())
        {
            self.ftp_drop_expect(old, now);
        }
        let (ext, claimed) = match self.table.mapping_port(&mk) {
            Some(p) => (p, false),
            None => (self.table.ports.allocate(&mk, now)?, true),
        };
        self.table.ports.expect(mk, ext);
        self.ftp.expects.insert(
            mk,
            Expect {
                port: ext,
                remote: key.remote.addr,
                inside: mk.inside,
                until: now + EXPECT_TIMEOUT,
                claimed,
            },
        );
        if let Some(c) = self.ftp.controls.get_mut(&key) {
            c.expect = Some(mk);
        }
        self.ftp.stats.expected += 1;
        log::debug!(
            "ftp: expecting {} -> {}:{ext} for {}:{}",
            key.remote.addr,
            self.cfg.outside.addr,
            addr,
            port
        );
        Some((self.cfg.outside.addr, ext))
    }

    fn ftp_drop_expect(&mut self, mk: MapKey, now: Instant) {
        if let Some(e) = self.ftp.expects.remove(&mk) {
            self.table.ports.unexpect(&mk);
            if e.claimed && self.table.mapping_port(&mk).is_none() {
                self.table.ports.release(e.port, mk, now);
            }
        }
    }

    /// The inside endpoint a new connection from `remote` to external `port` is expected
    /// for (an FTP data connection).
    pub(super) fn ftp_expected(&self, port: u16, remote: Ipv4Addr) -> Option<MapKey> {
        self.ftp
            .expects
            .iter()
            .find(|(_, e)| e.port == port && e.remote == remote)
            .map(|(mk, _)| *mk)
    }

    /// The expected data connection of `mk` came: the expectation is used up.
    pub(super) fn ftp_fulfilled(&mut self, mk: MapKey) {
        if self.ftp.expects.remove(&mk).is_some() {
            self.table.ports.unexpect(&mk);
            self.ftp.stats.data_connections += 1;
            for c in self.ftp.controls.values_mut() {
                if c.expect == Some(mk) {
                    c.expect = None;
                }
            }
        }
    }

    /// Drops expectations past their time and the state of closed control connections
    /// (the router calls it after [`Nat::handle_timeout`]).
    pub fn expire_ftp(&mut self, now: Instant) {
        if self.ftp.expects.is_empty() && self.ftp.controls.is_empty() {
            return;
        }
        let due: Vec<MapKey> = (self.ftp.expects.iter())
            .filter(|(_, e)| e.until <= now)
            .map(|(k, _)| *k)
            .collect();
        for mk in due {
            self.ftp.stats.expired += 1;
            self.ftp_drop_expect(mk, now);
        }
        let table = &self.table;
        self.ftp.controls.retain(|k, _| table.peek_out(k).is_some());
    }

    /// The data connections expected now.
    pub fn ftp_expectations(&self) -> usize {
        self.ftp.expects.len()
    }

    pub fn ftp_stats(&self) -> FtpStats {
        self.ftp.stats
    }
}

#[cfg(test)]
mod test;
