//! Packet-level tests of the core: literal packets in, verdicts and rewritten bytes out.

use super::*;
use crate::wire::checksum;
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::offload::{self, Gso, Offload};
use crate::wire::transport::verify_l4_checksum;
use crate::wire::transport::{Protocol, TcpFlags, Transport};
use std::net::Ipv4Addr;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 101);
const SERVER_IN: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
const ROUTER_IN: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 100);
const ROUTER_OUT: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 186);
const REMOTE: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
const REMOTE2: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);

/// IPv4 header (TTL 64, DF) + `l4`, with the transport checksum computed.
pub(crate) fn ip(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, l4: &[u8]) -> Vec<u8> {
    let len = 20 + l4.len();
    let mut p = vec![0u8; len];
    crate::wire::ipv4::emit_header(&mut p, 0, len as u16, 0x4242, true, ttl, proto, src, dst);
    p[20..].copy_from_slice(l4);
    let c_off = match proto {
        6 => 20 + 16,
        17 => 20 + 6,
        _ => 20 + 2,
    };
    p[c_off] = 0;
    p[c_off + 1] = 0;
    let c = if proto == 1 {
        checksum::checksum(&p[20..])
    } else {
        let s = checksum::pseudo_header_sum(src, dst, proto, l4.len() as u16);
        !checksum::fold(checksum::sum(&p[20..], s))
    };
    p[c_off..c_off + 2].copy_from_slice(&c.to_be_bytes());
    p
}

/// Every packet the core queued since the last look, with its port.
fn sent(n: &mut Nat) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

/// The packets the core queued since the last look.
fn out(n: &mut Nat) -> Vec<Vec<u8>> {
    sent(n).into_iter().map(|t| t.packet).collect()
}

/// The ICMP error queued after a [`Verdict::Reply`]: the last packet queued.
fn reply(n: &mut Nat) -> Vec<u8> {
    sent(n).pop().expect("a reply was queued").packet
}

pub(crate) fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut l4 = vec![0u8; 8 + 4];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&12u16.to_be_bytes());
    l4[8..].copy_from_slice(b"data");
    ip(17, src, dst, 64, &l4)
}

pub(crate) fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&1000u32.to_be_bytes()); // sequence number
    l4[12] = 0x50; // data offset 5 words
    l4[13] = flags;
    l4[14..16].copy_from_slice(&14600u16.to_be_bytes()); // window
    ip(6, src, dst, 64, &l4)
}

fn echo(ty: u8, src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let l4 = [
        ty,
        0,
        0,
        0,
        (id >> 8) as u8,
        id as u8,
        0,
        1,
        b'p',
        b'i',
        b'n',
        b'g',
    ];
    ip(1, src, dst, 64, &l4)
}

/// Clears DF (and the fragment offset) in a 20-byte-header packet from [`ip`].
fn clear_df(p: &mut [u8]) {
    p[6] = 0;
    crate::wire::ipv4::recompute_header_checksum(&mut p[..20]);
}

/// Asserts the packet is valid IPv4 with valid checksums and returns (src, sport, dst, dport, ttl).
fn check(p: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    let v = Ipv4::new_checked(p, Check::Full).expect("valid IPv4 with a good header checksum");
    let proto = Protocol::from_number(v.protocol()).unwrap();
    assert!(
        verify_l4_checksum(proto, v.src(), v.dst(), v.payload()),
        "transport checksum"
    );
    let t = Transport::new_checked(proto, v.payload()).unwrap();
    (v.src(), t.src_port, v.dst(), t.dst_port, v.ttl())
}

fn nat() -> Nat {
    let mut cfg = NatConfig::lab();
    cfg.dnat
        .push("tcp:8888=192.168.122.73:9999".parse().unwrap());
    Nat::new(cfg)
}

/// The lab's core, with the port forward 8888 -> 192.168.122.73:9999 (for the other
/// modules' tests).
pub(crate) fn lab() -> Nat {
    nat()
}

/// A TCP segment with sequence number `seq` (for the other modules' tests).
pub(super) fn tcp_packet(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    seq: u32,
) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[12] = 0x50;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&14600u16.to_be_bytes());
    ip(6, src, dst, 64, &l4)
}

/// A UDP datagram (for the other modules' tests).
pub(super) fn udp_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    udp(src, sport, dst, dport)
}

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

#[test]
fn udp_out_and_back() {
    let mut n = nat();
    let mut p = udp(CLIENT, 40000, REMOTE, 7);
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Forward { len: p.len() }
    );
    assert_eq!(check(&p), (ROUTER_OUT, 40000, REMOTE, 7, 63));
    let mut r = udp(REMOTE, 7, ROUTER_OUT, 40000);
    assert!(matches!(
        n.process(Side::Outside, &mut r, t(1)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&r), (REMOTE, 7, CLIENT, 40000, 63));
}

#[test]
fn two_hosts_same_port_same_server() {
    let mut n = nat();
    let mut a = udp(CLIENT, 5353, REMOTE, 53);
    let mut b = udp(SERVER_IN, 5353, REMOTE, 53);
    n.process(Side::Inside, &mut a, t(0));
    n.process(Side::Inside, &mut b, t(0));
    let (pa, pb) = (check(&a).1, check(&b).1);
    assert_eq!(pa, 5353);
    assert_ne!(pa, pb);
    let mut ra = udp(REMOTE, 53, ROUTER_OUT, pa);
    let mut rb = udp(REMOTE, 53, ROUTER_OUT, pb);
    n.process(Side::Outside, &mut ra, t(1));
    n.process(Side::Outside, &mut rb, t(1));
    assert_eq!(check(&ra).2, CLIENT);
    assert_eq!(check(&rb).2, SERVER_IN);
    assert_eq!(check(&rb).3, 5353);
}

#[test]
fn tcp_handshake_and_unsolicited_inbound() {
    let mut n = nat();
    let mut syn = tcp(CLIENT, 50270, REMOTE, 80, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Inside, &mut syn, t(0)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&syn).0, ROUTER_OUT);
    let mut synack = tcp(REMOTE, 80, ROUTER_OUT, 50270, TcpFlags::SYN | TcpFlags::ACK);
    assert!(matches!(
        n.process(Side::Outside, &mut synack, t(0)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&synack).2, CLIENT);
    // Nothing is mapped on 50271: the router answers (RST) itself.
    let mut stray = tcp(REMOTE, 80, ROUTER_OUT, 50271, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Outside, &mut stray, t(0)),
        Verdict::Local { .. }
    ));
    // Another remote may not use the mapping (address-dependent filtering): its SYN is
    // held silently (RFC 5382 REQ-4), not answered by the router.
    let mut other = tcp(REMOTE2, 80, ROUTER_OUT, 50270, TcpFlags::SYN);
    assert_eq!(
        n.process(Side::Outside, &mut other, t(0)),
        Verdict::Drop(DropReason::SynHeld)
    );
}

#[test]
fn outbound_rst_without_session_is_dropped() {
    let mut n = nat();
    let mut rst = tcp(CLIENT, 1, REMOTE, 80, TcpFlags::RST);
    assert_eq!(
        n.process(Side::Inside, &mut rst, t(0)),
        Verdict::Drop(DropReason::NoSession)
    );
    assert_eq!(n.stats().drops(DropReason::NoSession), 1);
}

#[test]
fn odd_tcp_flags_are_dropped_and_create_nothing() {
    use TcpFlags::*;
    let mut n = nat();
    for (i, flags) in [0, FIN, FIN | PSH | URG, SYN | FIN, SYN | RST]
        .into_iter()
        .enumerate()
    {
        let mut out = tcp(CLIENT, 40000 + i as u16, REMOTE, 80, flags);
        assert_eq!(
            n.process(Side::Inside, &mut out, t(0)),
            Verdict::Drop(DropReason::BadTcpFlags),
            "outbound {flags:#x}"
        );
        let mut to_dnat = tcp(REMOTE, 1000, ROUTER_OUT, 8888, flags);
        assert_eq!(
            n.process(Side::Outside, &mut to_dnat, t(0)),
            Verdict::Drop(DropReason::BadTcpFlags),
            "inbound {flags:#x} to a port forward"
        );
        // An unmapped port is the router's: its stack answers as a kernel does (a scan
        // sees the port closed).
        let mut scan = tcp(REMOTE, 1000, ROUTER_OUT, 80, flags);
        assert!(matches!(
            n.process(Side::Outside, &mut scan, t(0)),
            Verdict::Local { .. }
        ));
    }
    assert_eq!(n.table().len(), 0, "no session from odd flags");
    assert_eq!(n.stats().drops(DropReason::BadTcpFlags), 10);
    // A session's own packets with odd flags are dropped too; the session carries on.
    let mut syn = tcp(CLIENT, 50270, REMOTE, 80, SYN);
    assert!(matches!(
        n.process(Side::Inside, &mut syn, t(0)),
        Verdict::Forward { .. }
    ));
    let mut xmas = tcp(REMOTE, 80, ROUTER_OUT, 50270, FIN | PSH | URG | SYN);
    assert_eq!(
        n.process(Side::Outside, &mut xmas, t(0)),
        Verdict::Drop(DropReason::BadTcpFlags)
    );
    let mut synack = tcp(REMOTE, 80, ROUTER_OUT, 50270, SYN | ACK);
    assert!(matches!(
        n.process(Side::Outside, &mut synack, t(0)),
        Verdict::Forward { .. }
    ));
}

#[test]
fn dnat_forward_and_reply() {
    let mut n = nat();
    let mut syn = tcp(REMOTE, 50270, ROUTER_OUT, 8888, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Outside, &mut syn, t(0)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&syn), (REMOTE, 50270, SERVER_IN, 9999, 63));
    // The server refuses: its RST goes back from 172.16.1.186:8888.
    let mut rst = tcp(
        SERVER_IN,
        9999,
        REMOTE,
        50270,
        TcpFlags::RST | TcpFlags::ACK,
    );
    assert!(matches!(
        n.process(Side::Inside, &mut rst, t(0)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&rst), (ROUTER_OUT, 8888, REMOTE, 50270, 63));
}

#[test]
fn dnat_port_is_not_given_to_napt() {
    let mut n = nat();
    let mut p = tcp(CLIENT, 8888, REMOTE, 80, TcpFlags::SYN);
    n.process(Side::Inside, &mut p, t(0));
    assert_ne!(check(&p).1, 8888);
    let mut q = tcp(CLIENT, 843, REMOTE, 80, TcpFlags::SYN);
    n.process(Side::Inside, &mut q, t(0));
    assert_ne!(check(&q).1, 843, "the policy port stays the router's");
}

#[test]
fn icmp_echo_id_mapping() {
    let mut n = nat();
    let mut a = echo(8, CLIENT, REMOTE, 77);
    let mut b = echo(8, SERVER_IN, REMOTE, 77);
    n.process(Side::Inside, &mut a, t(0));
    n.process(Side::Inside, &mut b, t(0));
    let (ia, ib) = (check(&a).1, check(&b).1);
    assert_eq!(ia, 77);
    assert_ne!(ib, 77);
    let mut rb = echo(0, REMOTE, ROUTER_OUT, ib);
    assert!(matches!(
        n.process(Side::Outside, &mut rb, t(1)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&rb).2, SERVER_IN);
    assert_eq!(check(&rb).1, 77);
    // Echo requests to the router are for the router.
    let mut req = echo(8, REMOTE, ROUTER_OUT, 77);
    assert!(matches!(
        n.process(Side::Outside, &mut req, t(1)),
        Verdict::Local { .. }
    ));
}

#[test]
fn sessions_expire_on_the_timer() {
    let mut n = nat();
    let mut p = udp(CLIENT, 40000, REMOTE, 7);
    n.process(Side::Inside, &mut p, t(0));
    assert_eq!(n.handle_timeout(t(299), |_, _| {}), 0);
    let mut r = udp(REMOTE, 7, ROUTER_OUT, 40000);
    assert!(matches!(
        n.process(Side::Outside, &mut r, t(299)),
        Verdict::Forward { .. }
    ));
    assert_eq!(n.handle_timeout(t(599), |_, _| {}), 1);
    let mut late = udp(REMOTE, 7, ROUTER_OUT, 40000);
    assert!(matches!(
        n.process(Side::Outside, &mut late, t(600)),
        Verdict::Local { .. }
    ));
}

#[test]
fn ttl_expiry_is_answered_from_the_ingress_address() {
    let mut n = nat();
    let mut l4 = vec![0u8; 8];
    l4[0..2].copy_from_slice(&33434u16.to_be_bytes());
    l4[2..4].copy_from_slice(&33435u16.to_be_bytes());
    l4[4..6].copy_from_slice(&8u16.to_be_bytes());
    let mut p = ip(17, CLIENT, REMOTE, 1, &l4);
    let orig = p.clone();
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Reply(DropReason::TtlExceeded)
    );
    let r = reply(&mut n);
    let v = Ipv4::new_checked(&r[..], Check::Full).unwrap();
    assert_eq!((v.src(), v.dst()), (ROUTER_IN, CLIENT));
    assert_eq!(&v.payload()[..2], &[11, 0]);
    assert_eq!(
        &v.payload()[8..],
        &orig[..],
        "the original datagram is quoted untouched"
    );
    assert_eq!(
        n.table().len(),
        0,
        "no state for a packet that was not forwarded"
    );
}

#[test]
fn too_big_with_df_gets_fragmentation_needed() {
    let mut cfg = NatConfig::lab();
    cfg.mtu = [1500, 1280];
    let mut n = Nat::new(cfg);
    let mut l4 = vec![0u8; 1400];
    l4[4..6].copy_from_slice(&1400u16.to_be_bytes());
    let mut p = ip(17, CLIENT, REMOTE, 64, &l4);
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Reply(DropReason::TooBig)
    );
    let r = reply(&mut n);
    assert_eq!(&r[20..22], &[3, 4]);
    assert_eq!(&r[26..28], &1280u16.to_be_bytes());
}

/// ICMP error `ty`/`code` from `from` to `to` quoting `quoted` (first 28 bytes).
fn icmp_error(ty: u8, code: u8, from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    icmp_error_quoting(ty, code, from, to, &quoted[..28])
}

/// ICMP error `ty`/`code` from `from` to `to` quoting all of `quoted`.
pub(crate) fn icmp_error_quoting(
    ty: u8,
    code: u8,
    from: Ipv4Addr,
    to: Ipv4Addr,
    quoted: &[u8],
) -> Vec<u8> {
    let mut l4 = vec![ty, code, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(quoted);
    ip(1, from, to, 64, &l4)
}

#[test]
fn inbound_port_unreachable_is_translated_with_quoted_header() {
    let mut n = nat();
    let mut out = udp(CLIENT, 33434, REMOTE, 33435);
    n.process(Side::Inside, &mut out, t(0));
    let mut err = icmp_error(3, 3, REMOTE, ROUTER_OUT, &out);
    assert!(matches!(
        n.process(Side::Outside, &mut err, t(1)),
        Verdict::Forward { .. }
    ));
    let v = Ipv4::new_checked(&err[..], Check::Full).unwrap();
    assert_eq!(v.dst(), CLIENT);
    assert_eq!(checksum::checksum(v.payload()), 0, "ICMP checksum");
    let q = Ipv4::new_checked(&v.payload()[8..], Check::Quoted).unwrap();
    assert_eq!(q.src(), CLIENT, "quoted source is the inside host again");
    assert_eq!(checksum::checksum(q.header()), 0, "quoted header checksum");
    assert_eq!(&q.payload()[0..2], &33434u16.to_be_bytes());
    // The quoted UDP checksum matches the datagram the client sent.
    assert_eq!(
        &q.payload()[6..8],
        &udp(CLIENT, 33434, REMOTE, 33435)[26..28]
    );
    assert_eq!(n.stats().icmp_errors_translated, 1);
    // ICMP neither ends nor refreshes the session.
    assert_eq!(n.table().len(), 1);
}

#[test]
fn outbound_port_unreachable_from_dnat_target() {
    let mut cfg = NatConfig::lab();
    cfg.dnat
        .push("udp:5000=192.168.122.73:6000".parse().unwrap());
    let mut n = Nat::new(cfg);
    let mut q = udp(REMOTE, 40000, ROUTER_OUT, 5000);
    n.process(Side::Outside, &mut q, t(0));
    assert_eq!(check(&q).2, SERVER_IN);
    let mut err = icmp_error(3, 3, SERVER_IN, REMOTE, &q);
    assert!(matches!(
        n.process(Side::Inside, &mut err, t(0)),
        Verdict::Forward { .. }
    ));
    let v = Ipv4::new_checked(&err[..], Check::Full).unwrap();
    assert_eq!((v.src(), v.dst()), (ROUTER_OUT, REMOTE));
    let qv = Ipv4::new_checked(&v.payload()[8..], Check::Quoted).unwrap();
    assert_eq!(qv.dst(), ROUTER_OUT);
    assert_eq!(&qv.payload()[2..4], &5000u16.to_be_bytes());
    assert_eq!(checksum::checksum(v.payload()), 0);
}

#[test]
fn icmp_error_with_bad_checksum_or_no_session_is_dropped() {
    let mut n = nat();
    let mut out = udp(CLIENT, 1111, REMOTE, 2222);
    n.process(Side::Inside, &mut out, t(0));
    let mut err = icmp_error(3, 3, REMOTE, ROUTER_OUT, &out);
    err[22] ^= 0xff; // break the ICMP checksum
                     // The IP header checksum is still fine, so this is an ICMP checksum failure.
    assert_eq!(
        n.process(Side::Outside, &mut err, t(0)),
        Verdict::Drop(DropReason::BadIcmpChecksum)
    );
    let other = udp(ROUTER_OUT, 9, REMOTE, 9);
    let mut err2 = icmp_error(3, 3, REMOTE, ROUTER_OUT, &other);
    assert_eq!(
        n.process(Side::Outside, &mut err2, t(0)),
        Verdict::Drop(DropReason::IcmpErrorNoSession)
    );
    // A bad checksum in the quoted IP header.
    let mut bad_q = out.clone();
    bad_q[10] ^= 1;
    let mut err3 = icmp_error(3, 3, REMOTE, ROUTER_OUT, &bad_q);
    assert_eq!(
        n.process(Side::Outside, &mut err3, t(0)),
        Verdict::Drop(DropReason::BadQuotedPacket)
    );
}

#[test]
fn local_and_unrouted_destinations() {
    let mut n = nat();
    let mut p = echo(8, CLIENT, ROUTER_IN, 1);
    assert!(matches!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Local { .. }
    ));
    let mut p = echo(8, CLIENT, ROUTER_OUT, 1);
    assert!(matches!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Local { .. }
    ));
    let mut p = udp(CLIENT, 1, Ipv4Addr::new(192, 168, 122, 5), 1);
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Drop(DropReason::NotRouted)
    );
    // Outside hosts cannot reach inside hosts directly.
    let mut p = udp(REMOTE, 1, CLIENT, 1);
    assert_eq!(
        n.process(Side::Outside, &mut p, t(0)),
        Verdict::Drop(DropReason::NotRouted)
    );
    // An inside source outside the inside network is spoofed.
    let mut p = udp(Ipv4Addr::new(10, 1, 1, 1), 1, REMOTE, 1);
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Drop(DropReason::SpoofedSource)
    );
}

#[test]
fn malformed_packets_are_counted() {
    let mut n = nat();
    let mut short = vec![0x45, 0, 0];
    assert_eq!(
        n.process(Side::Outside, &mut short, t(0)),
        Verdict::Drop(DropReason::Truncated)
    );
    let mut v6 = vec![0x60; 40];
    assert_eq!(
        n.process(Side::Inside, &mut v6, t(0)),
        Verdict::Drop(DropReason::NotIpv4)
    );
    let mut p = udp(CLIENT, 1, REMOTE, 1);
    p[10] ^= 0x55;
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Drop(DropReason::BadIpChecksum)
    );
    let mut frag = udp(CLIENT, 1, REMOTE, 1);
    frag[6] = 0x20; // MF
    let c = checksum::checksum(&{
        let mut h = frag[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    // MF set but 12 bytes of payload: fragments other than the last carry multiples of 8.
    assert_eq!(
        n.process(Side::Inside, &mut frag, t(0)),
        Verdict::Drop(DropReason::BadFragment)
    );
    assert_eq!(n.stats().drop_counts().count(), 4);
}

#[test]
fn empty_and_oversized_buffers() {
    let mut n = nat();
    assert_eq!(
        n.process(Side::Outside, &mut [], t(0)),
        Verdict::Drop(DropReason::Truncated)
    );
    // More bytes than any IPv4 datagram: the header's total length rules, the rest is
    // ignored (as a kernel trims padding).
    let mut big = udp(CLIENT, 1000, REMOTE, 53);
    let len = big.len();
    big.resize(70_000, 0xee);
    assert_eq!(
        n.process(Side::Inside, &mut big, t(0)),
        Verdict::Forward { len }
    );
    assert_eq!(check(&big[..len]).0, ROUTER_OUT);
}

#[test]
fn fuzz_like_inputs_never_panic() {
    let mut n = nat();
    let seeds = [
        udp(CLIENT, 1, REMOTE, 2),
        tcp(REMOTE, 1, ROUTER_OUT, 8888, TcpFlags::SYN),
        echo(0, REMOTE, ROUTER_OUT, 1),
        icmp_error(3, 3, REMOTE, ROUTER_OUT, &udp(ROUTER_OUT, 1, REMOTE, 2)),
    ];
    let mut x = 1u32;
    for seed in &seeds {
        for len in 0..=seed.len() {
            for _ in 0..20 {
                let mut p = seed[..len].to_vec();
                if !p.is_empty() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let i = x as usize % p.len();
                    p[i] ^= (x >> 8) as u8;
                }
                for side in [Side::Inside, Side::Outside] {
                    let mut q = p.clone();
                    let _ = n.process(side, &mut q, t(0));
                }
            }
        }
    }
}

#[test]
fn full_table_answers_admin_prohibited() {
    let mut cfg = NatConfig::lab();
    cfg.limits.max_sessions = 1;
    let mut n = Nat::new(cfg);
    let mut a = udp(CLIENT, 1000, REMOTE, 53);
    assert!(matches!(
        n.process(Side::Inside, &mut a, t(0)),
        Verdict::Forward { .. }
    ));
    let mut b = udp(CLIENT, 1001, REMOTE, 53);
    assert_eq!(
        n.process(Side::Inside, &mut b, t(0)),
        Verdict::Reply(DropReason::TableFull)
    );
    let r = reply(&mut n);
    let r = Ipv4::new_checked(&r[..], Check::Full).unwrap();
    assert_eq!((r.src(), r.dst()), (ROUTER_IN, CLIENT));
    assert_eq!(&r.payload()[..2], &[3, 13]);
}

#[test]
fn hairpin_to_a_dnat_rule_and_back() {
    let mut n = nat(); // tcp:8888 -> 192.168.122.73:9999
    let mut syn = tcp(CLIENT, 40000, ROUTER_OUT, 8888, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Inside, &mut syn, t(0)),
        Verdict::Hairpin { .. }
    ));
    // The server sees the router's external address and the client's external port.
    assert_eq!(check(&syn), (ROUTER_OUT, 40000, SERVER_IN, 9999, 63));
    let mut synack = tcp(
        SERVER_IN,
        9999,
        ROUTER_OUT,
        40000,
        TcpFlags::SYN | TcpFlags::ACK,
    );
    assert!(matches!(
        n.process(Side::Inside, &mut synack, t(0)),
        Verdict::Hairpin { .. }
    ));
    assert_eq!(check(&synack), (ROUTER_OUT, 8888, CLIENT, 40000, 63));
    assert_eq!(n.stats().hairpinned, 2);
}

#[test]
fn hairpin_to_a_dnat_rule_is_not_proxied() {
    let mut cfg = NatConfig::lab();
    cfg.dnat
        .push("tcp:8888=192.168.122.73:9999".parse().unwrap());
    cfg.syn_cookies = SynCookies::Always;
    let mut n = Nat::new(cfg);
    let mut syn = tcp(CLIENT, 40000, ROUTER_OUT, 8888, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Inside, &mut syn, t(0)),
        Verdict::Hairpin { .. }
    ));
    assert_eq!(n.stats().syn_cookies_sent, 0);
}

#[test]
fn hairpinned_datagram_fragmented_for_the_inside_is_counted_once() {
    let mut cfg = NatConfig::lab();
    cfg.mtu = [576, 1500];
    cfg.dnat.push("udp:5000=192.168.122.73".parse().unwrap());
    let mut n = Nat::new(cfg);
    let mut l4 = vec![0u8; 8 + 1000];
    l4[0..2].copy_from_slice(&7000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&5000u16.to_be_bytes());
    l4[4..6].copy_from_slice(&1008u16.to_be_bytes());
    let mut d = ip(17, CLIENT, ROUTER_OUT, 64, &l4);
    clear_df(&mut d); // may be fragmented
    assert_eq!(
        n.process(Side::Inside, &mut d, t(0)),
        Verdict::Emit { to: Side::Inside }
    );
    assert!(out(&mut n).len() >= 2);
    assert_eq!(n.stats().hairpinned, 1);
    assert_eq!(n.stats().forwarded_out, 0, "not also counted as forwarded");
}

#[test]
fn hairpin_to_a_peer_mapping_under_endpoint_independent_filtering() {
    let mut cfg = NatConfig::lab();
    cfg.filtering = Filtering::EndpointIndependent;
    let mut n = Nat::new(cfg);
    // The peer (SERVER_IN) has a UDP mapping from talking to an outside host.
    let mut out = udp(SERVER_IN, 5000, REMOTE, 3478);
    n.process(Side::Inside, &mut out, t(0));
    let peer_ext = check(&out).1;
    // The client sends to the peer's external endpoint.
    let mut p = udp(CLIENT, 6000, ROUTER_OUT, peer_ext);
    assert!(matches!(
        n.process(Side::Inside, &mut p, t(1)),
        Verdict::Hairpin { .. }
    ));
    assert_eq!(check(&p), (ROUTER_OUT, 6000, SERVER_IN, 5000, 63));
    // The peer answers the external endpoint it saw.
    let mut r = udp(SERVER_IN, 5000, ROUTER_OUT, 6000);
    assert!(matches!(
        n.process(Side::Inside, &mut r, t(1)),
        Verdict::Hairpin { .. }
    ));
    assert_eq!(check(&r), (ROUTER_OUT, peer_ext, CLIENT, 6000, 63));
}

#[test]
fn no_hairpin_target_means_the_router_answers() {
    let mut n = nat();
    let mut p = udp(CLIENT, 1, ROUTER_OUT, 7777);
    assert!(matches!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Local { .. }
    ));
}

#[test]
fn syn_mss_is_clamped_both_ways() {
    let mut cfg = NatConfig::lab();
    cfg.mtu = [1500, 1280];
    cfg.clamp_mss = Some(MssClamp::Mtu);
    cfg.dnat
        .push("tcp:8888=192.168.122.73:9999".parse().unwrap());
    let mut n = Nat::new(cfg);
    let syn_with_mss = |src, sport, dst, dport, flags| {
        // 24-byte TCP header: MSS option 1460.
        let mut l4 = vec![0u8; 24];
        l4[0..2].copy_from_slice(&u16::to_be_bytes(sport));
        l4[2..4].copy_from_slice(&u16::to_be_bytes(dport));
        l4[12] = 0x60;
        l4[13] = flags;
        l4[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
        ip(6, src, dst, 64, &l4)
    };
    let mut out = syn_with_mss(CLIENT, 40000, REMOTE, 80, TcpFlags::SYN);
    n.process(Side::Inside, &mut out, t(0));
    check(&out);
    assert_eq!(
        &out[42..44],
        &1240u16.to_be_bytes(),
        "clamped to the outside MTU - 40"
    );
    let mut inb = syn_with_mss(REMOTE, 5000, ROUTER_OUT, 8888, TcpFlags::SYN);
    n.process(Side::Outside, &mut inb, t(0));
    check(&inb);
    assert_eq!(
        &inb[42..44],
        &1460u16.to_be_bytes(),
        "1460 fits the inside MTU of 1500"
    );
}

/// A UDP datagram of `n` payload bytes from CLIENT to REMOTE:9 (DF clear), in fragments.
fn fragmented_udp(n: usize, mtu: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut l4 = vec![0u8; 8 + n];
    l4[0..2].copy_from_slice(&7000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&9u16.to_be_bytes());
    l4[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
    for (i, b) in l4[8..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let mut d = ip(17, CLIENT, REMOTE, 64, &l4);
    clear_df(&mut d);
    let mut fs = Vec::new();
    crate::wire::ipv4::fragment(&d, mtu, &mut fs);
    (d, fs)
}

#[test]
fn out_of_order_fragments_are_translated_as_one_datagram() {
    let mut n = nat();
    let (_, mut fs) = fragmented_udp(3000, 1500);
    assert_eq!(fs.len(), 3);
    let last = fs.len() - 1;
    assert_eq!(n.process(Side::Inside, &mut fs[last], t(0)), Verdict::Held);
    assert_eq!(n.process(Side::Inside, &mut fs[1], t(0)), Verdict::Held);
    assert_eq!(
        n.process(Side::Inside, &mut fs[0], t(0)),
        Verdict::Emit { to: Side::Outside }
    );
    // Sent as fragments again (3028 bytes > MTU 1500); reassembling them gives a
    // translated datagram whose checksums verify.
    let mut r = reassembly::Reassembler::default();
    let mut whole = None;
    for f in out(&mut n) {
        assert!(f.len() <= 1500);
        let mut f = f;
        let v = Ipv4::new_checked(&mut f[..], Check::Full).unwrap();
        if let reassembly::Fragment::Complete(d) = r.add(&v, t(0)).unwrap() {
            whole = Some(d);
        }
    }
    let whole = whole.expect("the fragments sent make a whole datagram");
    assert_eq!(check(&whole), (ROUTER_OUT, 7000, REMOTE, 9, 63));
    assert_eq!(whole.len(), 20 + 8 + 3000);
}

#[test]
fn reassembled_datagram_refragmented_for_a_smaller_outside_mtu() {
    let mut cfg = NatConfig::lab();
    cfg.mtu = [1500, 576];
    let mut n = Nat::new(cfg);
    let (_, mut fs) = fragmented_udp(1400, 1500);
    let v = fs
        .iter_mut()
        .map(|f| n.process(Side::Inside, f, t(0)))
        .last()
        .unwrap();
    assert_eq!(v, Verdict::Emit { to: Side::Outside });
    let o = out(&mut n);
    assert!(o.len() >= 3 && o.iter().all(|f| f.len() <= 576));
    // A whole (unfragmented) datagram without DF above the MTU is fragmented too.
    let (mut d, _) = fragmented_udp(1000, 1500);
    assert_eq!(
        n.process(Side::Inside, &mut d, t(0)),
        Verdict::Emit { to: Side::Outside }
    );
    assert_eq!(out(&mut n).len(), 2);
}

/// CLIENT:50500 gets a TCP mapping by talking to REMOTE:80.
fn nat_with_tcp_mapping() -> Nat {
    let mut n = nat();
    let mut syn = tcp(CLIENT, 50500, REMOTE, 80, TcpFlags::SYN);
    n.process(Side::Inside, &mut syn, t(0));
    n
}

#[test]
fn filtered_syn_is_held_six_seconds_then_port_unreachable() {
    let mut n = nat_with_tcp_mapping();
    let mut syn = tcp(REMOTE2, 4000, ROUTER_OUT, 50500, TcpFlags::SYN);
    let orig = syn.clone();
    assert_eq!(
        n.process(Side::Outside, &mut syn, t(10)),
        Verdict::Drop(DropReason::SynHeld)
    );
    n.handle_timeout(Instant::from_millis(15_999), |_, _| {});
    assert!(out(&mut n).is_empty(), "silent for 6 s");
    n.handle_timeout(t(16), |_, _| {});
    let out = out(&mut n);
    assert_eq!(out.len(), 1);
    let e = Ipv4::new_checked(&out[0][..], Check::Full).unwrap();
    assert_eq!((e.src(), e.dst()), (ROUTER_OUT, REMOTE2));
    assert_eq!(&e.payload()[..2], &[3, 3]);
    assert_eq!(
        &e.payload()[8..8 + orig.len()],
        &orig[..],
        "the SYN is quoted as received"
    );
}

#[test]
fn poll_timeout_names_the_held_syn_and_the_reassembly_deadlines() {
    let mut n = nat_with_tcp_mapping();
    let mut syn = tcp(REMOTE2, 4000, ROUTER_OUT, 50500, TcpFlags::SYN);
    n.process(Side::Outside, &mut syn, t(10));
    assert_eq!(
        n.poll_timeout(),
        Some(t(16)),
        "the held SYN's answer is due first"
    );
    n.handle_timeout(t(16), |_, _| {});
    assert_eq!(out(&mut n).len(), 1);
    let (_, fs) = fragmented_udp(3000, 1500);
    let mut first = fs[0].clone();
    assert_eq!(n.process(Side::Inside, &mut first, t(20)), Verdict::Held);
    let due = t(20) + reassembly::TIMEOUT;
    assert_eq!(n.reassembler().next_deadline(), Some(due));
    assert!(n.poll_timeout().is_some_and(|d| d <= due));
    n.handle_timeout(t(50), |_, _| {});
    assert_eq!(n.reassembler().pending(), 0, "given up at the instant due");
    assert!(
        n.poll_timeout().is_some_and(|d| d > t(50)),
        "the TCP session remains"
    );
}

#[test]
fn outbound_syn_within_six_seconds_makes_a_simultaneous_open() {
    let mut n = nat_with_tcp_mapping();
    let mut syn_in = tcp(REMOTE2, 4000, ROUTER_OUT, 50500, TcpFlags::SYN);
    n.process(Side::Outside, &mut syn_in, t(10));
    let mut syn_out = tcp(CLIENT, 50500, REMOTE2, 4000, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Inside, &mut syn_out, t(11)),
        Verdict::Forward { .. }
    ));
    n.handle_timeout(t(20), |_, _| {});
    assert!(out(&mut n).is_empty(), "the held SYN was dropped silently");
    // The remote's retransmitted SYN now belongs to a session.
    let mut again = tcp(REMOTE2, 4000, ROUTER_OUT, 50500, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Outside, &mut again, t(12)),
        Verdict::Forward { .. }
    ));
    assert_eq!(check(&again).2, CLIENT);
}

#[test]
fn filtered_non_syn_is_dropped_and_unmapped_ports_stay_the_routers() {
    let mut n = nat_with_tcp_mapping();
    let mut u = udp(CLIENT, 50600, REMOTE, 53);
    n.process(Side::Inside, &mut u, t(0));
    let mut stranger = udp(REMOTE2, 53, ROUTER_OUT, 50600);
    assert_eq!(
        n.process(Side::Outside, &mut stranger, t(0)),
        Verdict::Drop(DropReason::Filtered)
    );
    let mut ack = tcp(REMOTE2, 4000, ROUTER_OUT, 50500, TcpFlags::ACK);
    assert_eq!(
        n.process(Side::Outside, &mut ack, t(0)),
        Verdict::Drop(DropReason::Filtered)
    );
    let mut unmapped = tcp(REMOTE2, 4000, ROUTER_OUT, 50501, TcpFlags::SYN);
    assert!(matches!(
        n.process(Side::Outside, &mut unmapped, t(0)),
        Verdict::Local { .. }
    ));
}

// -- TUN offloads: partial checksums and GSO super-packets -------------------------------

/// Turns `p`'s transport checksum into a partial one (the pseudo-header sum), as a kernel
/// hands it to a TUN with offloads, and returns the offload header saying so.
fn make_partial(p: &mut [u8], gso_size: Option<u16>) -> Offload {
    let v = Ipv4::new_checked(&p[..], Check::Full).unwrap();
    let (src, dst, proto, len) = (v.src(), v.dst(), v.protocol(), v.payload().len() as u16);
    let offset = if proto == 6 { 16 } else { 6 };
    let pseudo = checksum::fold(checksum::pseudo_header_sum(src, dst, proto, len));
    p[20 + offset..22 + offset].copy_from_slice(&pseudo.to_be_bytes());
    Offload {
        csum: Some(offload::Partial {
            start: 20,
            offset: offset as u16,
        }),
        gso: gso_size.map(|size| Gso {
            kind: if proto == 6 {
                offload::GSO_TCPV4
            } else {
                offload::GSO_UDP_L4
            },
            size,
            hdr_len: if proto == 6 { 40 } else { 28 },
        }),
    }
}

/// A TCP segment with `n` bytes of payload.
fn tcp_data(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, n: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; 20 + n];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[12] = 0x50;
    l4[13] = TcpFlags::ACK | TcpFlags::PSH;
    for (i, b) in l4[20..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    ip(6, src, dst, 64, &l4)
}

/// Completes the partial checksum the way the receiving kernel will, then checks it all.
fn finish(p: &mut [u8], off: &Offload) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    if let Some(c) = off.csum {
        assert!(offload::complete(p, c));
    }
    check(p)
}

#[test]
fn gso_super_packets_are_translated_whole_with_partial_checksums() {
    let mut n = nat();
    let mut syn = tcp(CLIENT, 50000, REMOTE, 80, TcpFlags::SYN);
    let mut off = make_partial(&mut syn, None);
    assert!(matches!(
        n.process_offload(Side::Inside, &mut syn, t(0), &mut off),
        Verdict::Forward { .. }
    ));
    assert!(off.csum.is_some(), "the checksum is left for the kernel");
    assert_eq!(finish(&mut syn, &off), (ROUTER_OUT, 50000, REMOTE, 80, 63));
    // A 40,000-byte super-packet out, one back in: one rewrite each, in place, nothing
    // allocated (the packets are made first).
    let mut big = tcp_data(CLIENT, 50000, REMOTE, 80, 40_000);
    let mut off = make_partial(&mut big, Some(1448));
    let mut back = tcp_data(REMOTE, 80, ROUTER_OUT, 50000, 30_000);
    let mut off_back = make_partial(&mut back, Some(1448));
    let before = off;
    let allocations = crate::testalloc::allocations();
    let out = n.process_offload(Side::Inside, &mut big, t(0), &mut off);
    let back_in = n.process_offload(Side::Outside, &mut back, t(0), &mut off_back);
    assert_eq!(
        crate::testalloc::allocations(),
        allocations,
        "nothing allocated"
    );
    assert_eq!(out, Verdict::Forward { len: 40_040 });
    assert_eq!(off, before, "GSO kept for the kernel to segment");
    assert_eq!(finish(&mut big, &off).0, ROUTER_OUT);
    assert!(matches!(back_in, Verdict::Forward { len: 30_040 }));
    assert_eq!(finish(&mut back, &off_back).2, CLIENT);
    assert_eq!(n.stats().gso_forwarded, 2);
    assert_eq!(
        n.stats().drops(DropReason::TooBig),
        0,
        "not judged by its total length"
    );
}

#[test]
fn gso_segments_too_big_for_the_egress_are_refused_or_shrunk() {
    let mut cfg = NatConfig::lab();
    cfg.mtu = [1500, 576];
    let mut n = Nat::new(cfg);
    // TCP with DF: "fragmentation needed" with the outside MTU.
    let mut big = tcp_data(CLIENT, 50000, REMOTE, 80, 10_000);
    let mut off = make_partial(&mut big, Some(1448));
    assert_eq!(
        n.process_offload(Side::Inside, &mut big, t(0), &mut off),
        Verdict::Reply(DropReason::TooBig)
    );
    let reply = reply(&mut n);
    assert_eq!(&reply[20..22], &[3, 4]);
    assert_eq!(u16::from_be_bytes([reply[26], reply[27]]), 576);
    // UDP without DF: cut into smaller segments instead.
    let mut l4 = vec![0u8; 8 + 6000];
    l4[0..2].copy_from_slice(&7000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&9u16.to_be_bytes());
    l4[4..6].copy_from_slice(&6008u16.to_be_bytes());
    let mut d = ip(17, CLIENT, REMOTE, 64, &l4);
    clear_df(&mut d);
    let mut off = make_partial(&mut d, Some(1472));
    assert!(matches!(
        n.process_offload(Side::Inside, &mut d, t(0), &mut off),
        Verdict::Forward { len: 6028 }
    ));
    assert_eq!(off.gso.map(|g| g.size), Some(576 - 28));
}

#[test]
fn partial_checksums_are_completed_where_they_cannot_stay() {
    let mut n = nat();
    // To the router's own stack: smoltcp checks checksums.
    let mut to_router = tcp(CLIENT, 50001, ROUTER_IN, 843, TcpFlags::SYN);
    let mut off = make_partial(&mut to_router, None);
    assert!(matches!(
        n.process_offload(Side::Inside, &mut to_router, t(0), &mut off),
        Verdict::Local { .. }
    ));
    assert_eq!(off, Offload::NONE);
    check(&to_router);
    // A datagram to be fragmented: each fragment carries part of a complete checksum.
    let mut cfg = NatConfig::lab();
    cfg.mtu = [1500, 576];
    let mut n = Nat::new(cfg);
    let (mut d, _) = fragmented_udp(1200, 1500);
    let mut off = make_partial(&mut d, None);
    assert_eq!(
        n.process_offload(Side::Inside, &mut d, t(0), &mut off),
        Verdict::Emit { to: Side::Outside }
    );
    let o = out(&mut n);
    let mut whole = o[0][..20].to_vec();
    for f in &o {
        whole.extend_from_slice(&f[20..]);
    }
    let len = whole.len() as u16;
    whole[2..4].copy_from_slice(&len.to_be_bytes());
    clear_df(&mut whole);
    assert_eq!(
        check(&whole).0,
        ROUTER_OUT,
        "reassembled, its UDP checksum verifies"
    );
    // Nonsense metadata: GSO on ICMP, or offsets outside the packet.
    let mut ping = echo(8, CLIENT, REMOTE, 7);
    let mut off = Offload {
        csum: Some(offload::Partial {
            start: 20,
            offset: 2,
        }),
        gso: Some(Gso {
            kind: offload::GSO_TCPV4,
            size: 100,
            hdr_len: 28,
        }),
    };
    assert_eq!(
        n.process_offload(Side::Inside, &mut ping, t(0), &mut off),
        Verdict::Drop(DropReason::BadOffload)
    );
    let mut u = udp(CLIENT, 1, REMOTE, 2);
    let mut off = Offload {
        csum: Some(offload::Partial {
            start: 900,
            offset: 6,
        }),
        gso: None,
    };
    assert_eq!(
        n.process_offload(Side::Inside, &mut u, t(0), &mut off),
        Verdict::Drop(DropReason::BadOffload)
    );
}

#[test]
fn icmp_errors_the_router_sends_are_rate_limited() {
    let mut n = nat();
    let mut l4 = vec![0u8; 8];
    l4[0..2].copy_from_slice(&1000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&33434u16.to_be_bytes());
    l4[4..6].copy_from_slice(&8u16.to_be_bytes());
    let expired = |n: &mut Nat, now| {
        let mut p = ip(17, CLIENT, REMOTE, 1, &l4);
        n.process(Side::Inside, &mut p, now)
    };
    // 60 at once: the burst of 50 is answered, 10 are not, and all are counted as drops.
    let replies = (0..60)
        .filter(|_| expired(&mut n, t(1)) == Verdict::Reply(DropReason::TtlExceeded))
        .count();
    assert_eq!(replies, 50);
    assert_eq!(out(&mut n).len(), 50);
    assert_eq!(n.stats().icmp_errors_suppressed, 10);
    assert_eq!(n.stats().icmp_errors_sent, 50);
    assert_eq!(n.stats().drops(DropReason::TtlExceeded), 60);
    // 1000 a second: 5 ms later, 5 more.
    let later = Instant::from_millis(1005);
    let replies = (0..10)
        .filter(|_| expired(&mut n, later) == Verdict::Reply(DropReason::TtlExceeded))
        .count();
    assert_eq!(replies, 5);
    // No limit with a rate of 0.
    let mut cfg = NatConfig::lab();
    cfg.icmp_limit.rate = 0;
    n.reconfigure(cfg);
    assert!((0..200).all(|_| expired(&mut n, later) == Verdict::Reply(DropReason::TtlExceeded)));
}

#[test]
fn martian_sources_and_source_routes_are_dropped_from_both_sides() {
    let mut n = nat();
    for m in [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::new(224, 0, 0, 5),
        Ipv4Addr::new(255, 255, 255, 255),
        ROUTER_OUT,
        ROUTER_IN,
        CLIENT,
        Ipv4Addr::new(172, 16, 1, 255),
    ] {
        let mut p = udp(m, 1000, ROUTER_OUT, 53);
        assert_eq!(
            n.process(Side::Outside, &mut p, t(0)),
            Verdict::Drop(DropReason::MartianSource),
            "{m} from outside"
        );
    }
    for m in [
        ROUTER_IN,
        Ipv4Addr::new(192, 168, 122, 255),
        Ipv4Addr::new(127, 0, 0, 1),
    ] {
        let mut p = udp(m, 1000, REMOTE, 53);
        assert_eq!(
            n.process(Side::Inside, &mut p, t(0)),
            Verdict::Drop(DropReason::MartianSource),
            "{m} from inside"
        );
    }
    // A loose source route, in a header with options.
    let mut l4 = vec![0u8; 8];
    l4[0..2].copy_from_slice(&1000u16.to_be_bytes());
    l4[2..4].copy_from_slice(&53u16.to_be_bytes());
    l4[4..6].copy_from_slice(&8u16.to_be_bytes());
    let mut p = vec![0u8; 28 + 8];
    p[0] = 0x47; // IHL 7: 8 bytes of options
    p[2..4].copy_from_slice(&36u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&CLIENT.octets());
    p[16..20].copy_from_slice(&REMOTE.octets());
    p[20..28].copy_from_slice(&[1, 131, 7, 4, 10, 0, 0, 1]); // NOP, LSRR via 10.0.0.1
    p[28..].copy_from_slice(&l4);
    crate::wire::ipv4::recompute_header_checksum(&mut p[..28]);
    assert_eq!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Drop(DropReason::SourceRoute)
    );
    // Record route is no source route: translated.
    p[20..28].copy_from_slice(&[7, 7, 4, 0, 0, 0, 0, 0]);
    crate::wire::ipv4::recompute_header_checksum(&mut p[..28]);
    assert!(matches!(
        n.process(Side::Inside, &mut p, t(0)),
        Verdict::Forward { .. }
    ));
}

#[test]
fn prefetch_is_a_hint_that_reads_any_bytes_and_changes_nothing() {
    let mut cfg = NatConfig::lab();
    cfg.limits.max_sessions = 40_000;
    cfg.limits.max_mappings_per_host = 40_000;
    let mut n = Nat::new(cfg);
    for i in 0..(PREFETCH_FROM as u32 + 100) {
        let mut p = udp(
            CLIENT,
            1024 + (i % 30_000) as u16,
            REMOTE,
            1 + (i / 30_000) as u16,
        );
        assert!(matches!(
            n.process(Side::Inside, &mut p, t(0)),
            Verdict::Forward { .. }
        ));
    }
    // Garbage of every length, IPv4 and IPv6 version nibbles among it: no panic.
    let mut x = 7u32;
    for len in 0..120 {
        for _ in 0..50 {
            let mut b: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Some(v) = b.first_mut() {
                *v = (*v & 0x0f) | if x & 1 == 0 { 0x40 } else { 0x60 };
            }
            for side in [Side::Inside, Side::Outside] {
                for stage in [Prefetch::Index, Prefetch::Slot] {
                    n.prefetch(side, &b, stage);
                }
            }
            let _ = Nat::<std::net::Ipv6Addr>::ends(&b);
        }
    }
    // A packet prefetched is translated as without.
    let mut a = udp(CLIENT, 1030, REMOTE, 1);
    let mut b = a.clone();
    let va = n.process(Side::Inside, &mut a, t(1));
    n.prefetch(Side::Inside, &b, Prefetch::Index);
    n.prefetch(Side::Inside, &b, Prefetch::Slot);
    assert_eq!(n.process(Side::Inside, &mut b, t(1)), va);
    assert_eq!(a, b);
    let mut back = udp(REMOTE, 1, ROUTER_OUT, check(&a).1);
    n.prefetch(Side::Outside, &back, Prefetch::Slot);
    assert!(matches!(
        n.process(Side::Outside, &mut back, t(1)),
        Verdict::Forward { .. }
    ));
}
