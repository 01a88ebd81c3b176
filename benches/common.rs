//! The workload shared by `table_scale` (memory) and the criterion bench `core` (time):
//! UDP sessions from inside hosts to many remotes, as busy inside hosts make them. One
//! outside address has 64512 ports per protocol, so the sessions share at most 50000
//! mappings (inside ports), each talking to many remote addresses.

use std::net::Ipv4Addr;

use tunnat::nat::{Instant, Ipv4Cidr, Nat, NatConfig, Side, Verdict};
use tunnat::wire::ipv4;

/// Writes session `i`'s packet into `buf`: UDP from 10.0.0.1 port 1024 + i mod 50000 to
/// remote number i / 50000, port 53.
pub fn packet(buf: &mut [u8; 32], i: u32) {
    let port = 1024 + (i % 50000) as u16;
    let remote = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i / 50000);
    ipv4::emit_header(
        &mut buf[..],
        0,
        32,
        0,
        false,
        64,
        17,
        Ipv4Addr::new(10, 0, 0, 1),
        remote,
    );
    buf[20..22].copy_from_slice(&port.to_be_bytes());
    buf[22..24].copy_from_slice(&53u16.to_be_bytes());
    buf[24..26].copy_from_slice(&12u16.to_be_bytes());
    buf[26..28].copy_from_slice(&[0, 0]);
}

/// A NAT core with room for `n` sessions (and no per-host limit).
pub fn nat_for(n: u32) -> Nat {
    let mut cfg = NatConfig::lab();
    cfg.inside = Ipv4Cidr {
        addr: Ipv4Addr::new(10, 255, 255, 254),
        prefix: 8,
    };
    cfg.limits.max_sessions = n as usize + 1;
    cfg.limits.max_mappings_per_host = 65536;
    Nat::new(cfg)
}

/// Creates sessions 0..n in `nat`.
pub fn fill(nat: &mut Nat, n: u32) {
    let mut buf = [0u8; 32];
    for i in 0..n {
        packet(&mut buf, i);
        let v = nat.process(Side::Inside, &mut buf, Instant::ZERO);
        assert!(matches!(v, Verdict::Forward { .. }), "session {i}: {v:?}");
    }
}

/// The next session number in a scattered order (xorshift32).
pub fn scatter(x: &mut u32, n: u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x % n
}
