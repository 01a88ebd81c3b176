//! A SYN proxy for port forwards: SYN cookies (RFC 4987 section 3.6), as netfilter's
//! SYNPROXY target and the kernel's `tcp_syncookies` do. Under a SYN flood (`--syn-cookies
//! auto`: once a port forward holds `--max-half-open` half-open sessions; `always`: for
//! every connection) the router answers a SYN to a port forward itself, keeping nothing: its
//! initial sequence number, the cookie, is a keyed hash of the connection's addresses, the
//! client's sequence number and the time, and names the client's MSS. Only an ACK that
//! carries a valid cookie back makes a session; the router then opens the connection to
//! the inside server with the client's own sequence number, and once the server answers,
//! moves the server's sequence numbers by the difference between its ISN and the cookie for
//! the rest of the connection (the client's acknowledgements the other way). A flood of
//! spoofed SYNs so leaves no state and never reaches the inside server.
//!
//! As with every stateless cookie, what the SYN-ACK promised must fit what the client's
//! SYN offered and the ACK does not repeat: the cookie carries the MSS (one of eight
//! values), and the router offers no window scaling, SACK or timestamps to either side.
//! A connection made through cookies is therefore slower on long fat paths; under `auto`
//! that is only while a flood lasts.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use super::tcp_state::TcpSeg;
use super::{
    Address, Direction, DropReason, Endpoint, HashMap, Instant, Nat, SessionKey, Side, Transmit,
};
use crate::wire::transport::{Protocol, TcpFlags, Transport};

/// When the router answers SYNs to a port forward with cookies (`--syn-cookies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynCookies {
    /// Never: every SYN is forwarded (the oldest half-open session is evicted at the cap).
    Off,
    /// Once the port forward holds `--max-half-open` half-open sessions.
    #[default]
    Auto,
    /// For every new connection to a port forward.
    Always,
}

impl SynCookies {
    pub fn name(self) -> &'static str {
        match self {
            SynCookies::Off => "off",
            SynCookies::Auto => "auto",
            SynCookies::Always => "always",
        }
    }
}

impl std::str::FromStr for SynCookies {
    type Err = String;
    fn from_str(s: &str) -> Result<SynCookies, String> {
        match s {
            "off" => Ok(SynCookies::Off),
            "auto" => Ok(SynCookies::Auto),
            "always" => Ok(SynCookies::Always),
            _ => Err(format!("'{s}' is not off, auto or always")),
        }
    }
}

/// A cookie's time slot: a cookie is good in its slot and the next (64 to 128 s).
const SLOT_MS: u64 = 64_000;
/// The MSS values a cookie can name (3 bits): the largest not above the client's is used.
const MSS: [u16; 8] = [536, 1220, 1280, 1360, 1400, 1440, 1452, 1460];
/// An MSS the client did not state (RFC 9293 section 3.7.1: 536 for IPv4; IPv6's minimum
/// MTU allows 1220).
const fn default_mss(bits: u8) -> u16 {
    if bits == 32 {
        536
    } else {
        1220
    }
}

/// The keyed hash cookies are made with (SipHash-2-4, a key fixed at start).
#[derive(Debug, Clone)]
pub struct Cookies {
    key: [u64; 2],
}

impl Cookies {
    /// Keys from `seed` (random at each start, or `--seed`: then cookies are predictable,
    /// which only tests want).
    pub fn new(seed: u64) -> Cookies {
        // splitmix64, so that the two keys share no bits with the seed as given.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Cookies {
            key: [next(), next()],
        }
    }

    fn mac<A: Address>(
        &self,
        client: Endpoint<A>,
        server: Endpoint<A>,
        isn: u32,
        slot: u64,
    ) -> u32 {
        let mut h = SipHasher24::new_with_keys(self.key[0], self.key[1]);
        h.write_u128(client.addr.to_bits128());
        h.write_u128(server.addr.to_bits128());
        h.write_u16(client.port);
        h.write_u16(server.port);
        h.write_u32(isn);
        h.write_u64(slot);
        h.finish() as u32
    }

    /// The cookie for a SYN from `client` (sequence number `isn`, MSS option `mss`) to the
    /// router's `server` endpoint at `now`: 5 bits of time slot, 3 of MSS, 24 of hash.
    pub fn make<A: Address>(
        &self,
        client: Endpoint<A>,
        server: Endpoint<A>,
        isn: u32,
        mss: Option<u16>,
        now: Instant,
    ) -> u32 {
        let mss = mss.unwrap_or(default_mss(A::BITS));
        let index = MSS.iter().rposition(|m| *m <= mss).unwrap_or(0) as u32;
        let slot = now.millis() / SLOT_MS;
        let mac = self.mac(client, server, isn, slot) & 0x00ff_ffff;
        ((slot as u32 & 0x1f) << 27) | (index << 24) | mac
    }

    /// The MSS `cookie` names, if it is one this router made for `client`'s SYN with
    /// sequence number `isn` to `server` in this time slot or the last.
    pub fn check<A: Address>(
        &self,
        client: Endpoint<A>,
        server: Endpoint<A>,
        isn: u32,
        cookie: u32,
        now: Instant,
    ) -> Option<u16> {
        let slot_now = now.millis() / SLOT_MS;
        let age = (slot_now as u32).wrapping_sub(cookie >> 27) & 0x1f;
        if age > 1 || u64::from(age) > slot_now {
            return None;
        }
        let slot = slot_now - u64::from(age);
        let mac = self.mac(client, server, isn, slot) & 0x00ff_ffff;
        (mac == cookie & 0x00ff_ffff).then(|| MSS[(cookie >> 24 & 7) as usize])
    }
}

/// A connection the proxy opened to the inside server on a client's valid cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// The client's initial sequence number, also the one the router used to the server.
    pub client_isn: u32,
    /// The router's initial sequence number to the client: the cookie.
    pub cookie_isn: u32,
    /// The server's initial sequence number, once its SYN-ACK came.
    pub server_isn: Option<u32>,
    /// The MSS the cookie named (sent to the server in the router's SYN).
    pub mss: u16,
    /// The client's window in its ACK (unscaled: no scaling was offered).
    pub window: u16,
}

impl Proxied {
    /// What is added to the server's sequence numbers on the way out.
    pub fn delta(&self) -> Option<u32> {
        self.server_isn.map(|s| self.cookie_isn.wrapping_sub(s))
    }
}

/// A sequence field of the packet being forwarded that the proxy moves, applied once it
/// is rewritten ([`Nat::apply_seq_fix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqFix {
    /// Add to the sequence number (server to client).
    Seq(u32),
    /// Subtract from the acknowledgement number (client to server).
    Ack(u32),
}

/// The proxy's state: the cookie key and the connections it opened.
#[derive(Debug, Clone)]
pub struct SynProxy<A> {
    pub cookies: Cookies,
    pub conns: HashMap<SessionKey<A>, Proxied>,
    /// When entries whose session is gone are next swept out.
    next_sweep: Instant,
}

impl<A: Address> SynProxy<A> {
    pub fn new(seed: u64) -> SynProxy<A> {
        SynProxy {
            cookies: Cookies::new(seed),
            conns: HashMap::default(),
            next_sweep: Instant::ZERO,
        }
    }
}

/// How often entries whose session is gone are swept out.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// A bare TCP segment (no payload; an MSS option if `mss`) from `src` to `dst`, with its
/// IP header and checksums: what the proxy sends.
#[allow(clippy::too_many_arguments)]
pub fn segment<A: Address>(
    src: Endpoint<A>,
    dst: Endpoint<A>,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    mss: Option<u16>,
) -> Vec<u8> {
    let tcp_len = if mss.is_some() { 24 } else { 20 };
    let mut tcp = vec![0u8; tcp_len];
    tcp[0..2].copy_from_slice(&src.port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    if let Some(m) = mss {
        tcp[20..24].copy_from_slice(&[2, 4, (m >> 8) as u8, m as u8]);
    }
    // Both endpoints are of family `A`, so the datagram is always made.
    crate::wire::datagram(src.addr.to_ip(), dst.addr.to_ip(), 6, 0, tcp, 16).unwrap_or_default()
}

/// The proxy's part in the NAT core, for both families.
impl<A: Address> Nat<A> {
    /// Does the proxy answer SYNs to port forward `rule` now?
    fn proxy_active(&mut self, rule: (Protocol, u16)) -> bool {
        match self.cfg.syn_cookies {
            SynCookies::Off => false,
            SynCookies::Always => true,
            SynCookies::Auto => self.table.half_open_full(rule, self.cfg.max_half_open),
        }
    }

    /// The router's endpoint of a port forward's connection on external `port`.
    fn proxy_endpoint(&self, port: u16) -> Endpoint<A> {
        Endpoint::new(self.cfg.outside.addr, port)
    }

    /// A TCP segment from `remote` to port forward `rule` (external `port`) with no session
    /// (`key` the session it would make). `Some`: the proxy took it (answered a SYN with a
    /// cookie, or opened to the server on a valid one) or refused it, for that reason;
    /// `None`: it goes on as without the proxy.
    pub(super) fn proxy_new(
        &mut self,
        key: SessionKey<A>,
        port: u16,
        rule: (Protocol, u16),
        t: &Transport,
        len: usize,
        now: Instant,
    ) -> Option<DropReason> {
        if self.cfg.syn_cookies == SynCookies::Off || !self.proxiable(&key) {
            return None;
        }
        let ours = self.proxy_endpoint(port);
        let (syn, ack) = (t.has_flag(TcpFlags::SYN), t.has_flag(TcpFlags::ACK));
        if syn && !ack {
            if !self.proxy_active(rule) {
                return None;
            }
            let cookie = self.proxy.cookies.make(key.remote, ours, t.seq, t.mss, now);
            let mss = self.proxy_mss();
            let flags = TcpFlags::SYN | TcpFlags::ACK;
            let seq_ack = t.seq.wrapping_add(1);
            let p = segment(
                ours,
                key.remote,
                cookie,
                seq_ack,
                flags,
                u16::MAX,
                Some(mss),
            );
            self.queue.push_back(Transmit::new(Side::Outside, p));
            self.stats.syn_cookies_sent += 1;
            return Some(DropReason::SynProxied);
        }
        if syn || !ack || t.has_flag(TcpFlags::RST) {
            return None;
        }
        let isn = t.seq.wrapping_sub(1);
        let cookie = t.ack.wrapping_sub(1);
        let Some(mss) = self.proxy.cookies.check(key.remote, ours, isn, cookie, now) else {
            // Not a cookie: with the proxy on, a stray ACK opens nothing; otherwise it is
            // picked up mid-stream as without it.
            return self.proxy_active(rule).then_some(DropReason::BadCookie);
        };
        let Ok(s) = self.table.create_dnat(key, port, now) else {
            return Some(DropReason::TableFull);
        };
        let open = TcpSeg {
            flags: TcpFlags::SYN,
            seq: isn,
            window: t.window,
            len: 0,
            wscale: None,
            tracked: true,
        };
        s.touch(Direction::In, len, Some(open), now);
        s.proxied = true;
        let p = Proxied {
            client_isn: isn,
            cookie_isn: cookie,
            server_isn: None,
            mss,
            window: t.window,
        };
        self.proxy.conns.insert(key, p);
        self.stats.syn_cookies_valid += 1;
        self.proxy_open(&key, &p);
        Some(DropReason::SynProxied)
    }

    /// May the proxy take connections for `key`? Not hairpinned ones (from inside hosts,
    /// which appear as the outside address), nor to a NAT64 stand-in address (the
    /// translator's side opens those).
    fn proxiable(&self, key: &SessionKey<A>) -> bool {
        let stand_in = match key.inside.addr.to_ip() {
            std::net::IpAddr::V4(a) => self.cfg.nat64 && super::nat64::is_stand_in(a),
            std::net::IpAddr::V6(_) => false,
        };
        let remote = key.remote.addr;
        remote != self.cfg.outside.addr && !self.cfg.inside.contains(remote) && !stand_in
    }

    /// The MSS the proxy offers a client: what the smaller port's MTU carries.
    fn proxy_mss(&self) -> u16 {
        let headers = if A::BITS == 32 { 40 } else { 60 };
        let mtu = self.cfg.mtu[0].min(self.cfg.mtu[1]);
        mtu.saturating_sub(headers)
            .clamp(536, usize::from(u16::MAX)) as u16
    }

    /// Sends (again) the SYN that opens proxied connection `key` to the inside server.
    fn proxy_open(&mut self, key: &SessionKey<A>, p: &Proxied) {
        let syn = segment(
            key.remote,
            key.inside,
            p.client_isn,
            0,
            TcpFlags::SYN,
            p.window,
            Some(p.mss),
        );
        self.queue.push_back(Transmit::new(Side::Inside, syn));
    }

    /// The proxy's entry for session `key`, if that session is one it opened (an entry
    /// left from an earlier session on the same addresses is not its).
    fn proxied(&self, key: &SessionKey<A>) -> Option<Proxied> {
        if self.proxy.conns.is_empty() || !self.table.peek_out(key)?.proxied {
            return None;
        }
        self.proxy.conns.get(key).copied()
    }

    /// A segment from the client of session `key`, already tracked. While the server has
    /// not answered, it is dropped and the SYN to the server sent again (the client's
    /// retransmissions pace the proxy's); after, its acknowledgement is moved. A new SYN
    /// (the client reusing the addresses of a closed connection) is a connection of its
    /// own, forwarded as it is.
    pub(super) fn proxy_in(
        &mut self,
        key: &SessionKey<A>,
        t: &Transport,
    ) -> Result<(), DropReason> {
        let Some(p) = self.proxied(key) else {
            return Ok(());
        };
        if t.has_flag(TcpFlags::SYN) && !t.has_flag(TcpFlags::ACK) {
            self.proxy.conns.remove(key);
            self.table.unproxy(key);
            return Ok(());
        }
        match p.delta() {
            Some(d) => {
                self.seq_fix = Some(SeqFix::Ack(d));
                Ok(())
            }
            None => {
                self.proxy_open(key, &p);
                Err(DropReason::SynProxied)
            }
        }
    }

    /// A segment from the server of session `key`, already tracked. Its SYN-ACK completes
    /// the proxied open: the server gets the client's ACK, the client a window update, and
    /// the sequence numbers' difference is known. An RST instead is passed to the client
    /// in the cookie's sequence space.
    pub(super) fn proxy_out(
        &mut self,
        key: &SessionKey<A>,
        t: &Transport,
        now: Instant,
    ) -> Result<(), DropReason> {
        let Some(mut p) = self.proxied(key) else {
            return Ok(());
        };
        if let Some(d) = p.delta() {
            self.seq_fix = Some(SeqFix::Seq(d));
            return Ok(());
        }
        let ours = self.proxy_endpoint(self.table.peek_out(key).map_or(0, |s| s.ext_port));
        let client_next = p.client_isn.wrapping_add(1);
        if t.has_flag(TcpFlags::RST) {
            let rst = TcpFlags::RST | TcpFlags::ACK;
            let seq = p.cookie_isn.wrapping_add(1);
            let packet = segment(ours, key.remote, seq, client_next, rst, 0, None);
            self.queue.push_back(Transmit::new(Side::Outside, packet));
            self.proxy.conns.remove(key);
            return Err(DropReason::SynProxied);
        }
        let synack = TcpFlags::SYN | TcpFlags::ACK;
        if t.tcp_flags & synack != synack || t.ack != client_next {
            return Err(DropReason::SynProxied);
        }
        p.server_isn = Some(t.seq);
        self.proxy.conns.insert(*key, p);
        let server_next = t.seq.wrapping_add(1);
        let ack = segment(
            key.remote,
            key.inside,
            client_next,
            server_next,
            TcpFlags::ACK,
            p.window,
            None,
        );
        self.queue.push_back(Transmit::new(Side::Inside, ack));
        let cookie_next = p.cookie_isn.wrapping_add(1);
        let update = segment(
            ours,
            key.remote,
            cookie_next,
            client_next,
            TcpFlags::ACK,
            t.window,
            None,
        );
        self.queue.push_back(Transmit::new(Side::Outside, update));
        // The client's ACK, as the tracker would have seen it: the handshake is complete.
        let acked = TcpSeg {
            flags: TcpFlags::ACK,
            seq: client_next,
            window: p.window,
            len: 0,
            wscale: None,
            tracked: true,
        };
        self.table.touch(key, Direction::In, 40, Some(acked), now);
        Err(DropReason::SynProxied)
    }

    /// Forgets proxied connections whose session is gone, or is another's now (every
    /// few seconds).
    pub(super) fn sweep_proxy(&mut self, now: Instant) {
        if now < self.proxy.next_sweep || self.proxy.conns.is_empty() {
            return;
        }
        self.proxy.next_sweep = now + SWEEP;
        let table = &self.table;
        self.proxy
            .conns
            .retain(|k, _| table.peek_out(k).is_some_and(|s| s.proxied));
    }

    /// Moves the sequence field the proxy named for the packet just translated, whose
    /// TCP header is `tcp` (`full`: its checksum is whole, not a partial one the kernel
    /// completes).
    pub(super) fn apply_seq_fix(&mut self, tcp: &mut [u8], full: bool) {
        let Some(fix) = self.seq_fix.take() else {
            return;
        };
        if tcp.len() >= 20 {
            move_seq(tcp, fix, full);
        }
    }

    /// What the quote of an ICMP error about a segment of session `key`, on its way to
    /// `to`, must have moved, if the proxy opened that connection: the quote holds the
    /// segment as it was sent on the error's side, in that side's sequence space, and
    /// the host the error goes to checks it against its own (Linux ignores an error
    /// whose quoted sequence number it never sent; RFC 5927 section 4.1). A server's
    /// segment quoted from outside gets its sequence number back; a client's segment
    /// quoted by the server gets its acknowledgement back.
    pub(super) fn quote_fix(&self, key: &SessionKey<A>, to: Side) -> Option<SeqFix> {
        if key.protocol != Protocol::Tcp {
            return None;
        }
        let d = self.proxied(key)?.delta()?.wrapping_neg();
        Some(match to {
            Side::Inside => SeqFix::Seq(d),
            Side::Outside => SeqFix::Ack(d),
        })
    }
}

/// Moves the sequence field `fix` names in the TCP header `tcp`, or in the first bytes of
/// one, as an ICMP error quotes it: nothing if the field is not there (or, for the
/// acknowledgement, if the flags are not, or say no ACK). Keeps a whole checksum good
/// where the bytes hold it (`full`; RFC 1624).
pub(super) fn move_seq(tcp: &mut [u8], fix: SeqFix, full: bool) {
    let (at, new): (usize, fn(u32, u32) -> u32) = match fix {
        SeqFix::Seq(_) => (4, u32::wrapping_add),
        SeqFix::Ack(_) => (8, u32::wrapping_sub),
    };
    let (SeqFix::Seq(d) | SeqFix::Ack(d)) = fix;
    let Some(field) = tcp.get(at..at + 4) else {
        return;
    };
    if at == 8 && tcp.get(13).is_none_or(|f| f & TcpFlags::ACK == 0) {
        return;
    }
    let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    let full = full && tcp.len() >= 18;
    crate::wire::transport::set_tcp32(tcp, 0, at, new(old, d), full);
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::nat::test::{icmp_error_quoting, ip, lab};
    use crate::nat::{NatConfig, Verdict};
    use crate::wire::checksum;
    use crate::wire::ipv4::{Check, Ipv4};
    use crate::wire::transport::verify_l4_checksum;
    use std::net::Ipv4Addr;

    const REMOTE: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
    const ROUTER_OUT: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 186);
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;

    /// A TCP segment with every field the proxy reads (an MSS option if `mss`).
    #[allow(clippy::too_many_arguments)]
    fn seg(
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        mss: Option<u16>,
        data: &[u8],
    ) -> Vec<u8> {
        let (from, to) = (Endpoint::new(src, sport), Endpoint::new(dst, dport));
        let mut l4 = segment(from, to, seq, ack, flags, 29200, mss)[20..].to_vec();
        l4.extend_from_slice(data);
        ip(6, src, dst, 64, &l4)
    }

    /// A segment from the client, REMOTE:`port`, to the port forward 8888.
    fn client_on(port: u16, flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        seg(REMOTE, port, ROUTER_OUT, 8888, flags, seq, ack, None, data)
    }

    /// A segment from the client at REMOTE:40000.
    fn client(flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        client_on(40000, flags, seq, ack, data)
    }

    /// A segment from the inside server to the client at REMOTE:40000.
    fn server(flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        seg(SERVER, 9999, REMOTE, 40000, flags, seq, ack, None, data)
    }

    /// What the core does with `p` from `side` at `at`, and `p` as it left it.
    fn run(n: &mut Nat, side: Side, mut p: Vec<u8>, at: Instant) -> (Verdict, Vec<u8>) {
        let v = n.process(side, &mut p, at);
        (v, p)
    }

    /// `p` from `side`, which must be forwarded: as it leaves.
    fn forwarded(n: &mut Nat, side: Side, p: Vec<u8>) -> Vec<u8> {
        let (v, p) = run(n, side, p, now());
        assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        p
    }

    /// `p` from `side`, which the proxy must take.
    fn taken(n: &mut Nat, side: Side, p: Vec<u8>) {
        let (v, _) = run(n, side, p, now());
        assert_eq!(v, Verdict::Drop(DropReason::SynProxied));
    }

    /// The fields of a TCP packet the core sent or forwarded, its checksums verified:
    /// (src, sport, dst, dport, flags, seq, ack, payload).
    fn fields(p: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8, u32, u32, Vec<u8>) {
        let v = Ipv4::new_checked(p, Check::Full).expect("valid IPv4");
        let l4 = v.payload();
        assert!(
            verify_l4_checksum(Protocol::Tcp, v.src(), v.dst(), l4),
            "TCP checksum"
        );
        let t = Transport::new_checked(Protocol::Tcp, l4).unwrap();
        let data = l4[usize::from(l4[12] >> 4) * 4..].to_vec();
        let (src, dst) = (v.src(), v.dst());
        (
            src,
            t.src_port,
            dst,
            t.dst_port,
            t.tcp_flags,
            t.seq,
            t.ack,
            data,
        )
    }

    fn sent(n: &mut Nat) -> Vec<(Side, Vec<u8>)> {
        std::iter::from_fn(|| n.poll_transmit())
            .map(|t| (t.port, t.packet))
            .collect()
    }

    /// The cookie in the SYN-ACK the core just sent.
    fn cookie_sent(n: &mut Nat) -> u32 {
        fields(&sent(n)[0].1).5
    }

    fn proxy(mode: SynCookies, max_half_open: usize) -> Nat {
        let cfg = lab().config().clone();
        Nat::new(NatConfig {
            syn_cookies: mode,
            max_half_open,
            ..cfg
        })
    }

    fn now() -> Instant {
        Instant::from_secs(100)
    }

    fn secs(s: u64) -> std::time::Duration {
        std::time::Duration::from_secs(s)
    }

    /// Runs the proxied handshake of a client at REMOTE:40000 (ISN 1000) with the server
    /// (ISN 5000): returns the cookie.
    fn open(n: &mut Nat) -> u32 {
        taken(
            n,
            Side::Outside,
            seg(
                REMOTE,
                40000,
                ROUTER_OUT,
                8888,
                SYN,
                1000,
                0,
                Some(1460),
                b"",
            ),
        );
        let out = sent(n);
        assert_eq!((out.len(), out[0].0), (1, Side::Outside));
        let (src, sport, dst, dport, flags, cookie, ack, _) = fields(&out[0].1);
        assert_eq!(
            (src, sport, dst, dport, flags, ack),
            (ROUTER_OUT, 8888, REMOTE, 40000, SYNACK, 1001)
        );
        assert_eq!(crate::wire::transport::mss(&out[0].1[20..44]), Some(1460));
        assert_eq!(n.table().len(), 0, "a cookie keeps nothing");

        taken(
            n,
            Side::Outside,
            client(ACK, 1001, cookie.wrapping_add(1), b""),
        );
        let out = sent(n);
        assert_eq!((out.len(), out[0].0), (1, Side::Inside));
        let (src, sport, dst, dport, flags, seq, _, _) = fields(&out[0].1);
        assert_eq!(
            (src, sport, dst, dport, flags, seq),
            (REMOTE, 40000, SERVER, 9999, SYN, 1000)
        );
        assert_eq!(crate::wire::transport::mss(&out[0].1[20..44]), Some(1460));
        assert_eq!(n.table().len(), 1);

        taken(
            n,
            Side::Inside,
            seg(
                SERVER,
                9999,
                REMOTE,
                40000,
                SYNACK,
                5000,
                1001,
                Some(1460),
                b"",
            ),
        );
        let out = sent(n);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, Side::Inside);
        let f = fields(&out[0].1);
        let to_server = (REMOTE, SERVER, ACK, 1001, 5001);
        assert_eq!(
            (f.0, f.2, f.4, f.5, f.6),
            to_server,
            "the client's ACK to the server"
        );
        assert_eq!(out[1].0, Side::Outside);
        let f = fields(&out[1].1);
        let update = (ROUTER_OUT, 8888, REMOTE, ACK, cookie.wrapping_add(1), 1001);
        assert_eq!(
            (f.0, f.1, f.2, f.4, f.5, f.6),
            update,
            "a window update to the client"
        );
        let (_, s) = n.table().sessions().next().unwrap();
        assert_eq!(s.tcp.name(), "ESTABLISHED");
        cookie
    }

    /// The quoted segment of a translated ICMP error `p` (its checksums checked):
    /// (src, sport, dst, dport, seq, the ack if quoted).
    fn quote(p: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u32, Option<u32>) {
        let v = Ipv4::new_checked(p, Check::Full).expect("valid IPv4");
        assert_eq!(checksum::checksum(v.payload()), 0, "ICMP checksum");
        let q = Ipv4::new_checked(&v.payload()[8..], Check::Quoted).expect("quoted IPv4");
        let t = q.payload();
        let w16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
        let w32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
        let ack = (t.len() >= 12).then(|| w32(8));
        (q.src(), w16(0), q.dst(), w16(2), w32(4), ack)
    }

    #[test]
    fn icmp_errors_about_a_proxied_connection_quote_each_side_its_own_sequence_numbers() {
        let mut n = proxy(SynCookies::Always, 100);
        let cookie = open(&mut n);
        // The server's segment leaves in the cookie's space; a router further out says it
        // is too big (quoting 8 bytes of TCP, the least it may, and the whole segment).
        // The server must find the sequence number it sent, or it ignores the error and
        // its path MTU is never learned.
        let out = forwarded(&mut n, Side::Inside, server(ACK, 5001, 1001, &[7; 100]));
        assert_eq!(fields(&out).5, cookie.wrapping_add(1));
        for len in [28, out.len()] {
            let mut err = icmp_error_quoting(3, 4, REMOTE, ROUTER_OUT, &out[..len]);
            let (v, err) = run(&mut n, Side::Outside, std::mem::take(&mut err), now());
            assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
            let q = quote(&err);
            assert_eq!(
                (q.0, q.1, q.2, q.3, q.4),
                (SERVER, 9999, REMOTE, 40000, 5001),
                "quote of {len} bytes"
            );
            if len > 28 {
                assert_eq!(q.5, Some(1001), "the acknowledgement was not moved");
                let q = Ipv4::new_checked(&err[28..], Check::Quoted).unwrap();
                assert!(
                    verify_l4_checksum(Protocol::Tcp, SERVER, REMOTE, q.payload()),
                    "a whole quoted segment keeps a good TCP checksum"
                );
            }
        }
        // The client's segment reaches the server with its acknowledgement moved; the
        // server's error about it goes out quoting the acknowledgement the client sent.
        let inb = forwarded(
            &mut n,
            Side::Outside,
            client(ACK, 1001, cookie.wrapping_add(101), b"hi"),
        );
        assert_eq!(fields(&inb).6, 5101);
        let mut err = icmp_error_quoting(3, 3, SERVER, REMOTE, &inb);
        let (v, err) = run(&mut n, Side::Inside, std::mem::take(&mut err), now());
        assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        let q = quote(&err);
        assert_eq!(
            (q.0, q.1, q.2, q.3, q.4, q.5),
            (
                REMOTE,
                40000,
                ROUTER_OUT,
                8888,
                1001,
                Some(cookie.wrapping_add(101))
            )
        );
        // An error about another connection's segment has nothing moved.
        let plain = seg(REMOTE, 40001, SERVER, 9999, ACK, 77, 88, None, b"");
        let mut err = icmp_error_quoting(3, 3, SERVER, REMOTE, &plain);
        let (v, _) = run(&mut n, Side::Inside, std::mem::take(&mut err), now());
        assert_eq!(v, Verdict::Drop(DropReason::IcmpErrorNoSession));
    }

    #[test]
    fn a_proxied_connection_opens_on_the_cookie_and_carries_data_both_ways() {
        let mut n = proxy(SynCookies::Always, 100);
        let cookie = open(&mut n);
        let st = n.stats();
        assert_eq!((st.syn_cookies_sent, st.syn_cookies_valid), (1, 1));
        // The server's data leaves in the cookie's sequence space.
        let f = fields(&forwarded(
            &mut n,
            Side::Inside,
            server(ACK, 5001, 1001, b"hello"),
        ));
        let want = (
            ROUTER_OUT,
            8888,
            REMOTE,
            40000,
            cookie.wrapping_add(1),
            1001,
        );
        assert_eq!(
            ((f.0, f.1, f.2, f.3, f.5, f.6), f.7),
            (want, b"hello".to_vec())
        );
        // The client's acknowledgement comes back in the server's.
        let reply = client(ACK, 1001, cookie.wrapping_add(6), b"hi");
        let f = fields(&forwarded(&mut n, Side::Outside, reply));
        let want = (REMOTE, SERVER, 9999, 1001, 5006);
        assert_eq!(((f.0, f.2, f.3, f.5, f.6), f.7), (want, b"hi".to_vec()));
        // An RST from the client in its own space ends it as usual; without ACK its
        // acknowledgement stays zero.
        let rst = forwarded(&mut n, Side::Outside, client(TcpFlags::RST, 1003, 0, b""));
        assert_eq!(fields(&rst).6, 0);
    }

    #[test]
    fn stray_acks_open_nothing_and_the_client_paces_the_servers_syn() {
        let mut n = proxy(SynCookies::Always, 100);
        let bad = Verdict::Drop(DropReason::BadCookie);
        let (v, _) = run(
            &mut n,
            Side::Outside,
            client(ACK, 1001, 123_456, b""),
            now(),
        );
        assert_eq!(v, bad);
        assert_eq!((n.table().len(), sent(&mut n).len()), (0, 0));
        // A cookie is good for another client port only by chance (2^-24).
        taken(&mut n, Side::Outside, client(SYN, 1000, 0, b""));
        let cookie = cookie_sent(&mut n);
        let other = client_on(40001, ACK, 1001, cookie.wrapping_add(1), b"");
        assert_eq!(run(&mut n, Side::Outside, other, now()).0, bad);
        // Too late: two time slots on.
        let ack = client(ACK, 1001, cookie.wrapping_add(1), b"");
        let late = now() + secs(130);
        assert_eq!(run(&mut n, Side::Outside, ack.clone(), late).0, bad);
        // In time, with data: the data is dropped (the client sends it again) and the
        // server gets the SYN; each retransmission before the server answers sends the SYN
        // again.
        taken(
            &mut n,
            Side::Outside,
            client(ACK, 1001, cookie.wrapping_add(1), b"GET /"),
        );
        assert_eq!(fields(&sent(&mut n)[0].1).4, SYN);
        taken(&mut n, Side::Outside, ack);
        let again = sent(&mut n);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].0, fields(&again[0].1).4), (Side::Inside, SYN));
    }

    #[test]
    fn a_refusing_server_resets_the_client_in_the_cookies_space() {
        let mut n = proxy(SynCookies::Always, 100);
        taken(&mut n, Side::Outside, client(SYN, 1000, 0, b""));
        let cookie = cookie_sent(&mut n);
        taken(
            &mut n,
            Side::Outside,
            client(ACK, 1001, cookie.wrapping_add(1), b""),
        );
        sent(&mut n);
        taken(
            &mut n,
            Side::Inside,
            server(TcpFlags::RST | ACK, 0, 1001, b""),
        );
        let out = sent(&mut n);
        assert_eq!(out[0].0, Side::Outside);
        let f = fields(&out[0].1);
        let want = (
            ROUTER_OUT,
            8888,
            REMOTE,
            TcpFlags::RST,
            cookie.wrapping_add(1),
        );
        assert_eq!((f.0, f.1, f.2, f.4 & TcpFlags::RST, f.5), want);
    }

    #[test]
    fn auto_answers_with_cookies_only_once_a_port_forward_is_full_of_half_open_sessions() {
        let mut n = proxy(SynCookies::Auto, 2);
        for port in [1, 2] {
            forwarded(&mut n, Side::Outside, client_on(port, SYN, 1000, 0, b""));
        }
        taken(&mut n, Side::Outside, client_on(3, SYN, 1000, 0, b""));
        assert_eq!(
            n.table().len(),
            2,
            "no half-open session evicted, none added"
        );
        // Once the half-open ones time out, SYNs are forwarded again.
        let later = now() + secs(31);
        n.handle_timeout(later, |_, _| {});
        let (v, _) = run(
            &mut n,
            Side::Outside,
            client_on(4, SYN, 1000, 0, b""),
            later,
        );
        assert!(matches!(v, Verdict::Forward { .. }));
        // Off: the oldest half-open session goes instead, as before.
        let mut n = proxy(SynCookies::Off, 2);
        for port in [1, 2, 3] {
            forwarded(&mut n, Side::Outside, client_on(port, SYN, 1000, 0, b""));
        }
        assert_eq!(n.table().stats.half_open_evicted, 1);
    }

    #[test]
    fn a_proxied_connection_survives_a_restart_through_the_state_file() {
        let mut n = proxy(SynCookies::Always, 100);
        let cookie = open(&mut n);
        let saved = n.save(now());
        assert!(saved.sessions[0].syn_proxy.is_some());
        let mut m = proxy(SynCookies::Always, 100);
        let later = now() + secs(5);
        m.restore(saved, secs(5), later).unwrap();
        let (v, data) = run(
            &mut m,
            Side::Inside,
            server(ACK, 5001, 1001, b"after"),
            later,
        );
        assert!(matches!(v, Verdict::Forward { .. }));
        assert_eq!(fields(&data).5, cookie.wrapping_add(1));
        // Proxy state on a session it cannot belong to is refused whole.
        let mut bad = n.save(now());
        bad.sessions[0].dnat = false;
        let e = proxy(SynCookies::Off, 100).restore(bad, secs(0), later);
        assert!(e.unwrap_err().contains("SYN proxy state"));
    }

    #[test]
    fn a_new_connection_on_a_closed_proxied_ones_session_is_not_moved() {
        let mut n = proxy(SynCookies::Always, 100);
        open(&mut n);
        forwarded(&mut n, Side::Outside, client(TcpFlags::RST, 1001, 0, b""));
        // The session is still there (closing); the client opens again on the same ports:
        // its SYN reaches the server as it is, and the server's answer is not moved.
        let syn = forwarded(&mut n, Side::Outside, client(SYN, 7000, 0, b""));
        assert_eq!(fields(&syn).5, 7000);
        let synack = forwarded(&mut n, Side::Inside, server(SYNACK, 9000, 7001, b""));
        assert_eq!(fields(&synack).5, 9000);
        assert!(n.proxy.conns.is_empty());
    }

    #[test]
    fn a_new_session_on_a_proxied_ones_addresses_is_not_moved() {
        let mut n = proxy(SynCookies::Always, 100);
        open(&mut n);
        // The connection ends and its session expires; the client opens again with
        // cookies off: the new session is the client's own, its numbers untouched.
        forwarded(&mut n, Side::Outside, client(TcpFlags::RST, 1001, 0, b""));
        let later = now() + secs(3600);
        n.handle_timeout(later, |_, _| {});
        assert_eq!(n.table().len(), 0);
        let mut cfg = n.config().clone();
        cfg.syn_cookies = SynCookies::Off;
        n.reconfigure(cfg);
        let (v, _) = run(&mut n, Side::Outside, client(SYN, 7000, 0, b""), later);
        assert!(matches!(v, Verdict::Forward { .. }));
        let (v, synack) = run(&mut n, Side::Inside, server(SYNACK, 9000, 7001, b""), later);
        assert!(matches!(v, Verdict::Forward { .. }));
        assert_eq!(fields(&synack).5, 9000);
        assert!(n.proxy.conns.is_empty());
    }

    fn ep(a: [u8; 4], port: u16) -> Endpoint<Ipv4Addr> {
        Endpoint::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn a_cookie_checks_for_its_connection_and_two_time_slots_only() {
        let c = Cookies::new(7);
        let (client, server) = (ep([172, 16, 1, 1], 40000), ep([172, 16, 1, 186], 8888));
        let t0 = Instant::from_secs(1000);
        let k = c.make(client, server, 12345, Some(1460), t0);
        assert_eq!(c.check(client, server, 12345, k, t0), Some(1460));
        assert_eq!(
            c.check(
                client,
                server,
                12345,
                k,
                t0 + std::time::Duration::from_secs(64)
            ),
            Some(1460)
        );
        assert_eq!(
            c.check(
                client,
                server,
                12345,
                k,
                t0 + std::time::Duration::from_secs(200)
            ),
            None
        );
        // Another client, port, sequence number or key: refused.
        assert_eq!(
            c.check(ep([172, 16, 1, 2], 40000), server, 12345, k, t0),
            None
        );
        assert_eq!(
            c.check(ep([172, 16, 1, 1], 40001), server, 12345, k, t0),
            None
        );
        assert_eq!(c.check(client, server, 12346, k, t0), None);
        assert_eq!(Cookies::new(8).check(client, server, 12345, k, t0), None);
        // A forged cookie is refused (24 bits of hash: almost always).
        let forged =
            (0..1000u32).filter(|i| c.check(client, server, 12345, k ^ (i + 1), t0).is_some());
        assert_eq!(forged.count(), 0);
    }

    #[test]
    fn a_cookie_names_the_largest_mss_not_above_the_clients() {
        let c = Cookies::new(1);
        let (client, server) = (ep([172, 16, 1, 1], 1), ep([172, 16, 1, 186], 2));
        let now = Instant::from_secs(5);
        for (offered, named) in [
            (Some(1460), 1460),
            (Some(1400), 1400),
            (Some(1300), 1280),
            (Some(9000), 1460),
            (Some(100), 536),
            (None, 536),
        ] {
            let k = c.make(client, server, 1, offered, now);
            assert_eq!(
                c.check(client, server, 1, k, now),
                Some(named),
                "{offered:?}"
            );
        }
    }

    #[test]
    fn segments_have_good_checksums_in_both_families() {
        let p = segment(
            ep([1, 2, 3, 4], 5),
            ep([6, 7, 8, 9], 10),
            1,
            2,
            TcpFlags::SYN,
            100,
            Some(1460),
        );
        assert_eq!(p.len(), 44);
        assert_eq!(checksum::checksum(&p[..20]), 0);
        let s = checksum::pseudo_header_sum(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(6, 7, 8, 9),
            6,
            24,
        );
        assert_eq!(checksum::fold(checksum::sum(&p[20..], s)), 0xffff);
        let (a, b): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            ("fd00::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let p = segment(
            Endpoint::new(a, 5),
            Endpoint::new(b, 6),
            1,
            2,
            TcpFlags::ACK,
            100,
            None,
        );
        assert_eq!(p.len(), 60);
        let s = checksum::pseudo_header_sum_v6(a, b, 6, 20);
        assert_eq!(checksum::fold(checksum::sum(&p[40..], s)), 0xffff);
    }
}
