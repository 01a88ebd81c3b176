//! Memory per session and per-packet cost as the table grows: fills the NAT core with N
//! UDP sessions through `Nat::process`, then times translating packets of existing
//! sessions in a scattered order. One outside address has 64512 ports per protocol, so
//! the sessions share at most 50000 mappings (inside ports), each talking to many remote
//! addresses, as busy inside hosts do. Prints one line per N.
//!
//! `table_scale [N...]` (default 10000 100000 1000000).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant as Wall;

use tunnat::nat::{Instant, Ipv4Cidr, Nat, NatConfig, Side, Verdict};
use tunnat::wire::ipv4;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Session `i`: UDP from 10.0.0.1 port 1024 + i mod 50000 to remote number i / 50000, port 53.
fn packet(buf: &mut [u8; 32], i: u32) {
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

fn main() {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    for n in sizes {
        let mut cfg = NatConfig::lab();
        cfg.inside = Ipv4Cidr {
            addr: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 8,
        };
        cfg.inside.addr = Ipv4Addr::new(10, 255, 255, 254);
        cfg.limits.max_sessions = n as usize + 1;
        cfg.limits.max_mappings_per_host = 65536;
        let before = rss_kib();
        let mut nat = Nat::new(cfg);
        let mut buf = [0u8; 32];
        let t0 = Wall::now();
        for i in 0..n {
            packet(&mut buf, i);
            let v = nat.process(Side::Inside, &mut buf, Instant::ZERO);
            assert!(matches!(v, Verdict::Forward { .. }), "session {i}: {v:?}");
        }
        let fill = t0.elapsed();
        let after = rss_kib();
        // Translate packets of existing sessions in a scattered order.
        let lookups = 2_000_000u32;
        let mut x = 12345u32;
        let t1 = Wall::now();
        for _ in 0..lookups {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            packet(&mut buf, x % n);
            black_box(nat.process(Side::Inside, &mut buf, Instant::ZERO));
        }
        let per = t1.elapsed().as_nanos() as f64 / lookups as f64;
        println!(
            "sessions {n:>8} (mappings {:>5}): {:>5.0} bytes per session (RSS), create {:>5.0} ns, translate existing {:>4.0} ns per packet",
            nat.table().mapping_count(),
            (after.saturating_sub(before)) as f64 * 1024.0 / n as f64,
            fill.as_nanos() as f64 / n as f64,
            per
        );
    }
}
