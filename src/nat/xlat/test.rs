//! RFC 7915 cases, packet by packet.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::wire::checksum;
use crate::wire::offload::{Gso, Partial};

const PREFIX: u128 = 0x0064_ff9b_0001_0000_0000_0000_0000_0000;
const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x122, 0, 0, 0, 0, 0, 0x101);
const STAND_IN: Ipv4Addr = Ipv4Addr::new(0, 0, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);

fn embed(a: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(PREFIX | u128::from(u32::from(a)))
}

fn map64(a: Ipv6Addr) -> Option<Ipv4Addr> {
    if a == HOST6 {
        return Some(STAND_IN);
    }
    (u128::from(a) >> 32 == PREFIX >> 32).then(|| Ipv4Addr::from(u128::from(a) as u32))
}

fn map46(a: Ipv4Addr) -> Option<Ipv6Addr> {
    Some(if a == STAND_IN { HOST6 } else { embed(a) })
}

const CTX: Ctx = Ctx {
    mtu: [1500, 1500],
    udp_zero_compute: true,
};

/// An IPv6 packet: header, then `l4` with its checksum (at `at`) computed.
fn v6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8], csum_at: usize) -> Vec<u8> {
    let mut p = vec![0u8; 40 + l4.len()];
    crate::wire::icmpv6::emit_header(&mut p, l4.len() as u16, next, 64, src, dst);
    p[1] = 0xb0; // traffic class 0x0b...
    p[0] = 0x60 | 0x0a; // ...0xab
    p[40..].copy_from_slice(l4);
    let s = checksum::pseudo_header_sum_v6(src, dst, next, l4.len() as u32);
    p[40 + csum_at..42 + csum_at].fill(0);
    let c = !checksum::fold(checksum::sum(&p[40..], s));
    p[40 + csum_at..42 + csum_at].copy_from_slice(&c.to_be_bytes());
    p
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8 + data.len()];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u[8..].copy_from_slice(data);
    u
}

fn l4_ok_v4(p: &[u8]) -> bool {
    let ip = Ipv4::new_checked(p, Check::Full).unwrap();
    let s =
        checksum::pseudo_header_sum(ip.src(), ip.dst(), ip.protocol(), ip.payload().len() as u16);
    checksum::fold(checksum::sum(ip.payload(), s)) == 0xffff
}

fn l4_ok_v6(p: &[u8]) -> bool {
    let ip = Ipv6::new_checked(p).unwrap();
    let s = checksum::pseudo_header_sum_v6(
        ip.src(),
        ip.dst(),
        ip.protocol(),
        ip.payload().len() as u32,
    );
    checksum::fold(checksum::sum(ip.payload(), s)) == 0xffff
}

fn to4(p: &mut [u8], off: &mut Offload) -> Result<Range<usize>, DropReason> {
    to_v4(p, off, &CTX, &mut Ident::default(), &mut map64)
}

/// [`to_v6`]'s translation of `p`, checked against [`to_v6_in_place`]'s with room before
/// the packet: the same bytes and offload state, the same refusal, or (for what goes
/// out in fragments, or an ICMP error) nothing written and the copy's to take.
fn to6(p: &[u8], off: Offload) -> Result<Vec<(Vec<u8>, Offload)>, DropReason> {
    let mut out = Vec::new();
    let copied = to_v6(p, off, &CTX, &mut map46, &mut out).map(|()| out);
    for room in [20, 40] {
        let mut buf = vec![0xee; room + p.len()];
        buf[room..].copy_from_slice(p);
        let mut o = off;
        match (
            to_v6_in_place(&mut buf, room, &mut o, &CTX, &mut map46),
            &copied,
        ) {
            (Ok(Some(r)), Ok(v)) => {
                assert_eq!(v.len(), 1, "one packet");
                assert_eq!(&buf[r], &v[0].0[..], "the same packet in place");
                assert_eq!(o, v[0].1, "the same offload state");
            }
            (Ok(None), copied) => {
                // Left to the copy, which translates it or says why not.
                if let Ok(v) = copied {
                    let error = Ipv6::new_checked(&v[0].0[..]).is_ok_and(|ip| {
                        ip.protocol() == 58 && icmpv6::kind::is_error(ip.payload()[0])
                    });
                    assert!(
                        v.len() > 1 || error,
                        "only fragments or an ICMP error are copied"
                    );
                }
                assert_eq!(&buf[room..], p, "nothing written");
                assert_eq!(o, off);
            }
            (Err(a), Err(b)) => assert_eq!(a, *b, "the same refusal"),
            (a, b) => panic!("in place {a:?}, copied {b:?}"),
        }
    }
    // Without room (or the 20 bytes an IPv4 header without options leaves), it is not done.
    let mut buf = p.to_vec();
    let mut o = off;
    if let Ok(r) = to_v6_in_place(&mut buf, 0, &mut o, &CTX, &mut map46) {
        assert_eq!(r, None);
        assert_eq!(buf, p);
    }
    copied
}

#[test]
fn udp_6to4_header_fields_and_checksum() {
    let mut p = v6(17, HOST6, embed(REMOTE), &udp(40000, 53, b"query"), 6);
    let r = to4(&mut p, &mut Offload::default()).unwrap();
    let q = &p[r];
    let ip = Ipv4::new_checked(q, Check::Full).unwrap();
    assert_eq!(
        (ip.src(), ip.dst(), ip.protocol(), ip.ttl()),
        (STAND_IN, REMOTE, 17, 64)
    );
    assert_eq!(ip.tos(), 0xab, "traffic class becomes TOS");
    assert!(
        !ip.dont_fragment(),
        "at most 1260 bytes: DF clear (RFC 7915 5.1)"
    );
    assert!(l4_ok_v4(q));
    assert_eq!(&q[28..], b"query");
}

#[test]
fn df_is_set_above_1260_bytes() {
    let mut p = v6(17, HOST6, embed(REMOTE), &udp(1, 2, &[7u8; 1300]), 6);
    let r = to4(&mut p, &mut Offload::default()).unwrap();
    assert!(Ipv4::new_checked(&p[r], Check::Full)
        .unwrap()
        .dont_fragment());
}

#[test]
fn udp_4to6_and_back_is_the_same_packet() {
    let orig = v6(17, HOST6, embed(REMOTE), &udp(40000, 53, b"answer"), 6);
    let mut p = orig.clone();
    let r = to4(&mut p, &mut Offload::default()).unwrap();
    // The reply: swap the addresses and ports of the IPv4 packet.
    let mut q = p[r].to_vec();
    let (s, d) = (q[12..16].to_vec(), q[16..20].to_vec());
    q[12..16].copy_from_slice(&d);
    q[16..20].copy_from_slice(&s);
    q[20..24].copy_from_slice(&[0, 53, 0x9c, 0x40]);
    q[26..28].fill(0);
    crate::wire::ipv4::recompute_header_checksum(&mut q[..20]);
    let s = checksum::pseudo_header_sum(REMOTE, STAND_IN, 17, (q.len() - 20) as u16);
    let c = !checksum::fold(checksum::sum(&q[20..], s));
    q[26..28].copy_from_slice(&c.to_be_bytes());
    let out = to6(&q, Offload::NONE).unwrap();
    assert_eq!(out.len(), 1);
    let v = &out[0].0;
    let ip = Ipv6::new_checked(&v[..]).unwrap();
    assert_eq!(
        (ip.src(), ip.dst(), ip.protocol()),
        (embed(REMOTE), HOST6, 17)
    );
    assert_eq!(ip.traffic_class(), 0xab);
    assert!(l4_ok_v6(v));
}

#[test]
fn a_zero_udp_checksum_is_computed_or_dropped() {
    let mut q = vec![0u8; 28 + 4];
    crate::wire::ipv4::emit_header(&mut q, 0, 32, 1, true, 64, 17, REMOTE, STAND_IN);
    q[20..28].copy_from_slice(&udp(53, 40000, b"")[..8]);
    q[24..26].copy_from_slice(&12u16.to_be_bytes());
    q[28..].copy_from_slice(b"abcd");
    let out = to6(&q, Offload::NONE).unwrap();
    assert!(l4_ok_v6(&out[0].0), "a checksum was computed");
    let mut out = Vec::new();
    let ctx = Ctx {
        udp_zero_compute: false,
        ..CTX
    };
    assert_eq!(
        to_v6(&q, Offload::NONE, &ctx, &mut map46, &mut out),
        Err(DropReason::UdpZeroChecksum)
    );
}

#[test]
fn echo_both_ways_with_good_checksums() {
    let mut echo = vec![128, 0, 0, 0, 0, 9, 0, 1];
    echo.extend_from_slice(b"payload!");
    let mut p = v6(58, HOST6, embed(REMOTE), &echo, 2);
    let r = to4(&mut p, &mut Offload::default()).unwrap();
    let q = p[r].to_vec();
    assert_eq!((q[9], q[20]), (1, 8));
    assert_eq!(checksum::checksum(&q[20..]), 0);
    // And an echo reply back.
    let mut reply = q.clone();
    reply[12..16].copy_from_slice(&REMOTE.octets());
    reply[16..20].copy_from_slice(&STAND_IN.octets());
    reply[20] = 0;
    crate::wire::ipv4::recompute_header_checksum(&mut reply[..20]);
    crate::wire::transport::refresh_icmp_checksum(&mut reply[20..]);
    let out = to6(&reply, Offload::NONE).unwrap();
    let v = &out[0].0;
    assert_eq!((v[6], v[40]), (58, 129));
    assert!(crate::wire::icmpv6::checksum_ok(
        embed(REMOTE),
        HOST6,
        &v[40..]
    ));
}

#[test]
fn other_icmpv6_informational_messages_are_not_translated() {
    for t in [130u8, 133, 135, 143] {
        let mut p = v6(58, HOST6, embed(REMOTE), &[t, 0, 0, 0, 0, 0, 0, 0], 2);
        assert_eq!(
            to4(&mut p, &mut Offload::default()),
            Err(DropReason::Untranslatable),
            "type {t}"
        );
    }
}

/// An ICMPv4 error from `from` to the stand-in quoting a UDP packet the stand-in sent.
fn icmp4_error(t: u8, code: u8, rest: u32, from: Ipv4Addr) -> Vec<u8> {
    let mut inner = vec![0u8; 28];
    crate::wire::ipv4::emit_header(&mut inner, 0, 100, 7, true, 63, 17, STAND_IN, REMOTE);
    inner[20..28].copy_from_slice(&udp(40000, 53, &[0; 72])[..8]);
    inner[26..28].copy_from_slice(&0x1234u16.to_be_bytes());
    let mut p = vec![0u8; 28 + inner.len()];
    let n = p.len() as u16;
    crate::wire::ipv4::emit_header(&mut p, 0, n, 1, false, 64, 1, from, STAND_IN);
    p[20] = t;
    p[21] = code;
    p[24..28].copy_from_slice(&rest.to_be_bytes());
    p[28..].copy_from_slice(&inner);
    crate::wire::transport::refresh_icmp_checksum(&mut p[20..]);
    p
}

#[test]
fn icmpv4_errors_map_to_icmpv6_per_rfc7915_section_4_2() {
    for ((t, code, rest), want) in [
        ((3, 0, 0), Some((1, 0, 0))),
        ((3, 1, 0), Some((1, 0, 0))),
        ((3, 2, 0), Some((4, 1, 6))),
        ((3, 3, 0), Some((1, 4, 0))),
        ((3, 4, 1400), Some((2, 0, 1420))),
        ((3, 4, 0), Some((2, 0, 88))), // the plateau below the quoted 100 bytes: 68
        ((3, 9, 0), Some((1, 1, 0))),
        ((3, 13, 0), Some((1, 1, 0))),
        ((3, 14, 0), None),
        ((11, 0, 0), Some((3, 0, 0))),
        ((11, 1, 0), Some((3, 1, 0))),
        ((12, 0, 9 << 24), Some((4, 0, 6))),
        ((12, 0, 12 << 24), Some((4, 0, 8))),
        ((12, 0, 16 << 24), Some((4, 0, 24))),
        ((12, 0, 5 << 24), None),
        ((12, 1, 0), None),
        ((5, 0, 0), None),
        ((4, 0, 0), None),
    ] {
        let p = icmp4_error(t, code, rest, REMOTE);
        let got = to6(&p, Offload::NONE);
        match want {
            None => assert_eq!(got, Err(DropReason::Untranslatable), "{t}/{code}"),
            Some((t6, c6, r6)) => {
                let v = &got.unwrap()[0].0;
                assert_eq!((v[40], v[41]), (t6, c6), "{t}/{code}");
                assert_eq!(
                    u32::from_be_bytes(v[44..48].try_into().unwrap()),
                    r6,
                    "{t}/{code}"
                );
                assert!(crate::wire::icmpv6::checksum_ok(
                    embed(REMOTE),
                    HOST6,
                    &v[40..]
                ));
                // The quoted packet is the host's own IPv6 packet.
                let quoted = Ipv6::new_quoted(&v[48..]).unwrap();
                assert_eq!((quoted.src(), quoted.dst()), (HOST6, embed(REMOTE)));
                assert_eq!(
                    u16::from_be_bytes([v[52], v[53]]),
                    80,
                    "payload length 100 - 20"
                );
                assert_eq!(quoted.hop_limit(), 63);
            }
        }
    }
}

/// An ICMPv6 error from `from` to the host quoting a UDP packet the host received.
fn icmp6_error(t: u8, code: u8, rest: u32, from: Ipv6Addr) -> Vec<u8> {
    let inner = v6(17, embed(REMOTE), HOST6, &udp(53, 40000, &[1; 20]), 6);
    let mut m = vec![t, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(&inner);
    v6(58, from, embed(REMOTE), &m, 2)
}

#[test]
fn icmpv6_errors_map_to_icmpv4_per_rfc7915_section_5_2() {
    for ((t, code, rest), want) in [
        ((1, 0, 0), Some((3, 1, 0))),
        ((1, 1, 0), Some((3, 10, 0))),
        ((1, 3, 0), Some((3, 1, 0))),
        ((1, 4, 0), Some((3, 3, 0))),
        ((1, 5, 0), None),
        ((2, 0, 1300), Some((3, 4, 1280))),
        ((2, 0, 9000), Some((3, 4, 1480))), // the inside MTU less 20 bounds it
        ((3, 0, 0), Some((11, 0, 0))),
        ((4, 0, 6), Some((12, 0, 9 << 24))),
        ((4, 0, 24), Some((12, 0, 16 << 24))),
        ((4, 0, 2), None),
        ((4, 1, 0), Some((3, 2, 0))),
        ((4, 2, 0), None),
    ] {
        let mut p = icmp6_error(t, code, rest, HOST6);
        let got = to4(&mut p, &mut Offload::default());
        match want {
            None => assert_eq!(got, Err(DropReason::Untranslatable), "{t}/{code}"),
            Some((t4, c4, r4)) => {
                let q = &p[got.unwrap()];
                let ip = Ipv4::new_checked(q, Check::Full).unwrap();
                assert_eq!((ip.src(), ip.dst()), (STAND_IN, REMOTE));
                assert_eq!((q[20], q[21]), (t4, c4), "{t}/{code}");
                assert_eq!(
                    u32::from_be_bytes(q[24..28].try_into().unwrap()),
                    r4,
                    "{t}/{code}"
                );
                assert_eq!(checksum::checksum(&q[20..]), 0);
                let inner = Ipv4::new_checked(&q[28..], Check::Quoted).unwrap();
                assert_eq!(
                    (inner.src(), inner.dst(), inner.protocol()),
                    (REMOTE, STAND_IN, 17)
                );
                // The quoted UDP checksum was updated for the IPv4 pseudo-header.
                assert!(l4_ok_v4(&q[28..]));
            }
        }
    }
}

#[test]
fn an_ipv6_fragment_becomes_an_ipv4_fragment() {
    let mut p = v6(17, HOST6, embed(REMOTE), &udp(40000, 53, &[3; 32]), 6);
    // Insert a fragment header: offset 0, more, ident 0x01020304.
    let mut f = p[..40].to_vec();
    f[6] = 44;
    f.extend_from_slice(&[17, 0, 0, 1, 1, 2, 3, 4]);
    f.extend_from_slice(&p[40..]);
    let len = (f.len() - 40) as u16;
    f[4..6].copy_from_slice(&len.to_be_bytes());
    p = f;
    let r = to4(&mut p, &mut Offload::default()).unwrap();
    let ip = Ipv4::new_checked(&p[r], Check::Full).unwrap();
    let fl = ip.fields();
    assert_eq!((fl.ident, fl.flags, fl.frag_offset), (0x0304, 0b001, 0));
}

#[test]
fn a_gso_super_packet_keeps_its_offload_translated() {
    // TCP SYN-less segment with a partial checksum: the field holds the pseudo sum.
    let mut tcp = vec![0u8; 20 + 3000];
    tcp[12] = 5 << 4;
    tcp[13] = 0x10;
    let mut p = vec![0u8; 40];
    crate::wire::icmpv6::emit_header(&mut p, tcp.len() as u16, 6, 64, HOST6, embed(REMOTE));
    p.extend_from_slice(&tcp);
    let partial = checksum::fold(checksum::pseudo_header_sum_v6(
        HOST6,
        embed(REMOTE),
        6,
        tcp.len() as u32,
    ));
    p[56..58].copy_from_slice(&partial.to_be_bytes());
    let mut off = Offload {
        csum: Some(Partial {
            start: 40,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: offload::GSO_TCPV6,
            size: 1440,
            hdr_len: 60,
        }),
    };
    let r = to4(&mut p, &mut off).unwrap();
    assert_eq!(
        off.csum,
        Some(Partial {
            start: 20,
            offset: 16
        })
    );
    assert_eq!(off.gso.unwrap().kind, offload::GSO_TCPV4);
    assert_eq!(off.gso.unwrap().hdr_len, 40);
    let q = &mut p[r];
    let want = checksum::fold(checksum::pseudo_header_sum(
        STAND_IN,
        REMOTE,
        6,
        tcp.len() as u16,
    ));
    assert_eq!(
        u16::from_be_bytes([q[36], q[37]]),
        want,
        "the partial sum is IPv4's"
    );
    assert!(Ipv4::new_checked(&q[..], Check::Full)
        .unwrap()
        .dont_fragment());
}

#[test]
fn garbage_is_refused_not_panicked_on() {
    let mut p = icmp6_error(1, 4, 0, HOST6);
    for cut in [40, 44, 48, 60, 88, p.len() - 1] {
        let mut q = p[..cut].to_vec();
        let len = (cut - 40) as u16;
        q[4..6].copy_from_slice(&len.to_be_bytes());
        let _ = to4(&mut q, &mut Offload::default());
    }
    p[41] = 77;
    let _ = to4(&mut p, &mut Offload::default());
    let q = icmp4_error(3, 3, 0, REMOTE);
    for cut in [20, 28, 30, 48, 56] {
        let mut r = q[..cut].to_vec();
        r[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
        crate::wire::ipv4::recompute_header_checksum(&mut r[..20]);
        let _ = to6(&r, Offload::NONE);
    }
}
