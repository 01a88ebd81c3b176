//! PCP requests and answers, byte by byte (RFC 6887 sections 7, 8, 11, 12, 14).

use super::*;
use crate::nat::NatConfig;
use crate::portmap::test::maps;

const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
const NONCE: [u8; 12] = *b"nonce-nonce!";

fn header(op: u8, lifetime: u32, client: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![VERSION, op, 0, 0];
    v.extend_from_slice(&lifetime.to_be_bytes());
    v.extend_from_slice(&mapped(client));
    v
}

fn map_req(lifetime: u32, proto: u8, internal: u16, suggested: u16, nonce: [u8; 12]) -> Vec<u8> {
    let mut v = header(OP_MAP, lifetime, HOST);
    v.extend_from_slice(&nonce);
    v.extend_from_slice(&[proto, 0, 0, 0]);
    v.extend_from_slice(&internal.to_be_bytes());
    v.extend_from_slice(&suggested.to_be_bytes());
    v.extend_from_slice(&[0; 16]);
    v
}

fn ask(m: &mut PortMaps, nat: &mut Nat, req: &[u8], now: Instant) -> Vec<u8> {
    answer(req, HOST, m, nat, now).expect("an answer")
}

fn code(a: &[u8]) -> u8 {
    a[3]
}
fn lifetime(a: &[u8]) -> u32 {
    u32::from_be_bytes([a[4], a[5], a[6], a[7]])
}
fn port(a: &[u8]) -> u16 {
    u16::from_be_bytes([a[HEADER + 18], a[HEADER + 19]])
}

#[test]
fn map_renew_delete_with_nonce() {
    let mut nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let a = ask(
        &mut m,
        &mut nat,
        &map_req(3600, 17, 5000, 0, NONCE),
        Instant::from_secs(3),
    );
    assert_eq!((a[0], a[1], code(&a)), (2, 0x81, 0));
    assert_eq!(lifetime(&a), 3600);
    assert_eq!(u32::from_be_bytes([a[8], a[9], a[10], a[11]]), 3, "epoch");
    assert_eq!(port(&a), 5000);
    assert_eq!(&a[HEADER..HEADER + 12], &NONCE);
    assert_eq!(
        &a[HEADER + 20..HEADER + 36],
        &mapped(Ipv4Addr::new(172, 16, 1, 186))
    );
    // Another nonce may neither renew nor delete it.
    let other = *b"another-one!";
    let a = ask(
        &mut m,
        &mut nat,
        &map_req(3600, 17, 5000, 0, other),
        Instant::ZERO,
    );
    assert_eq!(code(&a), Code::NotAuthorized as u8);
    let a = ask(
        &mut m,
        &mut nat,
        &map_req(0, 17, 5000, 0, other),
        Instant::ZERO,
    );
    assert_eq!(code(&a), Code::NotAuthorized as u8);
    assert_eq!(m.len(), 1);
    // A short lifetime is raised to the minimum; the right nonce deletes.
    let a = ask(
        &mut m,
        &mut nat,
        &map_req(10, 17, 5000, 0, NONCE),
        Instant::ZERO,
    );
    assert_eq!(lifetime(&a), MIN_LIFETIME);
    let a = ask(
        &mut m,
        &mut nat,
        &map_req(0, 17, 5000, 0, NONCE),
        Instant::ZERO,
    );
    assert_eq!((code(&a), lifetime(&a)), (0, 0));
    assert!(m.is_empty());
}

#[test]
fn prefer_failure() {
    let mut cfg = NatConfig::lab();
    cfg.dnat.push("tcp:8888=192.168.122.74".parse().unwrap());
    let mut nat = Nat::new(cfg);
    let mut m = maps(Instant::ZERO);
    let mut req = map_req(3600, 6, 8888, 8888, NONCE);
    req.extend_from_slice(&[OPT_PREFER_FAILURE, 0, 0, 0]);
    let a = answer(&req, HOST, &mut m, &mut nat, Instant::ZERO).unwrap();
    assert_eq!(code(&a), Code::CannotProvideExternal as u8);
    // Without it, another port.
    let a = ask(
        &mut m,
        &mut nat,
        &map_req(3600, 6, 8888, 8888, NONCE),
        Instant::ZERO,
    );
    assert_eq!(code(&a), 0);
    assert_ne!(port(&a), 8888);
}

#[test]
fn errors_in_order() {
    let mut nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let mut ask = |req: &[u8]| answer(req, HOST, &mut m, &mut nat, Instant::ZERO);
    // Too short, or an answer: ignored.
    assert_eq!(ask(&[2]), None);
    let mut resp = map_req(3600, 6, 5000, 0, NONCE);
    resp[1] |= 0x80;
    assert_eq!(ask(&resp), None);
    // Version 1: unsupported, answered as version 2.
    let mut v1 = map_req(3600, 6, 5000, 0, NONCE);
    v1[0] = 1;
    let a = ask(&v1).unwrap();
    assert_eq!((a[0], code(&a)), (2, Code::UnsuppVersion as u8));
    // Unknown opcode.
    assert_eq!(
        code(&ask(&header(9, 0, HOST)).unwrap()),
        Code::UnsuppOpcode as u8
    );
    // Not a multiple of 4; cut short; over 1100 bytes.
    let mut odd = map_req(3600, 6, 5000, 0, NONCE);
    odd.push(0);
    assert_eq!(code(&ask(&odd).unwrap()), Code::MalformedRequest as u8);
    assert_eq!(
        code(&ask(&header(OP_MAP, 3600, HOST)).unwrap()),
        Code::MalformedRequest as u8
    );
    let mut long = map_req(3600, 6, 5000, 0, NONCE);
    long.resize(1200, 0);
    let a = ask(&long).unwrap();
    assert_eq!(code(&a), Code::MalformedRequest as u8);
    assert!(a.len() <= MAX_LEN);
    // A client address that is not the source.
    let mut other = map_req(3600, 6, 5000, 0, NONCE);
    other[8..24].copy_from_slice(&mapped(Ipv4Addr::new(192, 168, 122, 99)));
    assert_eq!(code(&ask(&other).unwrap()), Code::AddressMismatch as u8);
    // THIRD_PARTY, FILTER and unknown mandatory options; a cut option; optional ignored.
    for (opt, want) in [
        (vec![OPT_THIRD_PARTY, 0, 0, 16], Code::UnsuppOption),
        (vec![OPT_FILTER, 0, 0, 20], Code::UnsuppOption),
        (vec![99, 0, 0, 0], Code::UnsuppOption),
        (vec![200, 0, 0, 8, 1, 2, 3, 4], Code::MalformedOption),
        (vec![200, 0, 0, 4, 1, 2, 3, 4], Code::Success),
    ] {
        let mut r = map_req(3600, 6, 5000, 0, NONCE);
        r.extend_from_slice(&opt);
        r.resize(r.len().div_ceil(4) * 4, 0);
        if want == Code::UnsuppOption && opt[3] != 0 {
            r.resize(r.len() + opt[3] as usize, 0);
        }
        assert_eq!(code(&ask(&r).unwrap()), want as u8, "{opt:?}");
    }
    // Protocols other than TCP and UDP; internal port 0 with a lifetime.
    assert_eq!(
        code(&ask(&map_req(3600, 1, 5000, 0, NONCE)).unwrap()),
        Code::UnsuppProtocol as u8
    );
    assert_eq!(
        code(&ask(&map_req(3600, 6, 0, 0, NONCE)).unwrap()),
        Code::NotAuthorized as u8
    );
    // Below 1024: not authorized by the default policy.
    assert_eq!(
        code(&ask(&map_req(3600, 6, 80, 80, NONCE)).unwrap()),
        Code::NotAuthorized as u8
    );
}

#[test]
fn announce_and_peer() {
    let mut nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let a = answer(
        &header(OP_ANNOUNCE, 0, HOST),
        HOST,
        &mut m,
        &mut nat,
        Instant::from_secs(9),
    )
    .unwrap();
    assert_eq!((a[1], code(&a), a.len()), (0x80, 0, 24));
    assert_eq!(u32::from_be_bytes([a[8], a[9], a[10], a[11]]), 9);
    assert_eq!(announce(0)[..4], [2, 0x80, 0, 0]);

    let mut req = header(OP_PEER, 600, HOST);
    req.extend_from_slice(&NONCE);
    req.extend_from_slice(&[17, 0, 0, 0]);
    req.extend_from_slice(&4000u16.to_be_bytes());
    req.extend_from_slice(&0u16.to_be_bytes());
    req.extend_from_slice(&[0; 16]);
    req.extend_from_slice(&3478u16.to_be_bytes());
    req.extend_from_slice(&[0, 0]);
    req.extend_from_slice(&mapped(Ipv4Addr::new(172, 16, 1, 1)));
    let a = answer(&req, HOST, &mut m, &mut nat, Instant::ZERO).unwrap();
    assert_eq!(code(&a), 0);
    assert_eq!(port(&a), 4000, "the session's mapping, port preserved");
    assert_eq!(lifetime(&a), 300, "UDP's idle timeout");
    assert_eq!(nat.table().len(), 1);
}
