//! Criterion microbenchmarks of the NAT core (`cargo bench --bench core`):
//! * `translate_existing/N`: one packet of an existing session, picked in a scattered
//!   order, through `Nat::process`, with N = 10 k, 100 k and 1 M sessions in the table;
//! * `create_session`: a packet that opens a new session (and mapping);
//! * `checksum_update`: the RFC 1624 update of a checksum for a new address and port.
//! * `checksum_sum/{72,1480}`: the full one's complement sum of a 64-byte datagram's UDP
//!   header and payload (checked before it joins a super-packet), and of a full segment.
//! * `router_udp_established/{ipv4,ipv6}`: a datagram of an established UDP flow through
//!   the whole router core (`Router::handle_in`, then `poll_transmit`), as the driver
//!   runs it (NAT44, NAT66).
//!
//! The workload is `common.rs`'s, as in `table_scale`, which also reports memory.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tunnat::nat::{Instant, Side, HEADROOM};
use tunnat::options::Settings;
use tunnat::router::Router;
use tunnat::wire::offload::Offload;
use tunnat::wire::{checksum, icmpv6, ipv4};

mod common;

fn translate_existing(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate_existing");
    for n in [10_000u32, 100_000, 1_000_000] {
        let mut nat = common::nat_for(n);
        common::fill(&mut nat, n);
        let (mut buf, mut x) = ([0u8; 32], 12345u32);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                common::packet(&mut buf, common::scatter(&mut x, n));
                black_box(nat.process(Side::Inside, &mut buf, Instant::ZERO))
            })
        });
    }
    g.finish();
}

fn create_session(c: &mut Criterion) {
    // Sessions are created until the table is near its size, then it starts again.
    const N: u32 = 1_000_000;
    let mut nat = common::nat_for(N);
    let (mut buf, mut i) = ([0u8; 32], 0u32);
    c.bench_function("create_session", |b| {
        b.iter(|| {
            if i == N {
                nat = common::nat_for(N);
                i = 0;
            }
            common::packet(&mut buf, i);
            i += 1;
            black_box(nat.process(Side::Inside, &mut buf, Instant::ZERO))
        })
    });
}

fn checksum_update(c: &mut Criterion) {
    let (old, new) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(172, 16, 1, 186));
    c.bench_function("checksum_update", |b| {
        b.iter(|| {
            let sum = checksum::update_addr(black_box(0x1234), old, new);
            checksum::update16(sum, black_box(40000), black_box(1024))
        })
    });
}

fn checksum_sum(c: &mut Criterion) {
    let data: Vec<u8> = (0..1480u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut g = c.benchmark_group("checksum_sum");
    for len in [72, 1480] {
        g.bench_function(len.to_string(), |b| {
            b.iter(|| checksum::sum(black_box(&data[..len]), black_box(0x1_2345)))
        });
    }
    g.finish();
}

/// The router's whole per-packet path for a datagram of an established UDP flow, as the
/// driver runs it: `Router::handle_in` on the packet in its buffer, then the core asked
/// for anything else to send. This is the user-space cost of a packet in a UDP flood.
fn router_udp_established(c: &mut Criterion) {
    let text = "[inside]\ntun = \"nat-in\"\naddr = [\"192.168.122.100/24\", \"fd00:122::100/64\"]\n\
                [outside]\ntun = \"nat-out\"\naddr = [\"172.16.1.186/24\", \"2001:db8:1::186/64\"]\n";
    let cfg = Settings::from_toml(text, std::path::Path::new("bench.toml"))
        .and_then(|s| s.resolve())
        .expect("the bench's config");
    let mut router = Router::new(cfg, Instant::ZERO, 1);
    let v4 = (
        "ipv4",
        udp(
            IpAddr::from([192, 168, 122, 101]),
            IpAddr::from([172, 16, 1, 1]),
        ),
    );
    let v6 = (
        "ipv6",
        udp(
            "fd00:122::101".parse().expect("an address"),
            "2001:db8:1::1".parse().expect("an address"),
        ),
    );
    let mut g = c.benchmark_group("router_udp_established");
    for (family, tmpl) in [v4, v6] {
        let mut buf = vec![0u8; HEADROOM + tmpl.len()];
        let mut n = 0u64;
        g.bench_function(family, |b| {
            b.iter(|| {
                buf[HEADROOM..].copy_from_slice(&tmpl);
                n += 1;
                let now = Instant::ZERO + Duration::from_millis(n >> 16);
                let off = Ok(Offload::NONE);
                let w = router.handle_in(Side::Inside, &mut buf, HEADROOM, off, now);
                assert!(w.is_some_and(|w| w.port == Side::Outside));
                while let Some(t) = router.poll_transmit(now) {
                    black_box(t);
                }
            })
        });
    }
    g.finish();
}

/// A 64-byte (IPv4) UDP datagram from port 40000 to 5201, its checksum complete.
fn udp(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    const PAYLOAD: usize = 36;
    let l4 = 8 + PAYLOAD;
    let (mut p, ip_len, pseudo) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 20 + l4];
            ipv4::emit_header(&mut p[..], 0, (20 + l4) as u16, 0, true, 64, 17, s, d);
            (p, 20, checksum::pseudo_header_sum(s, d, 17, l4 as u16))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0u8; 40 + l4];
            icmpv6::emit_header(&mut p, l4 as u16, 17, 64, s, d);
            (p, 40, checksum::pseudo_header_sum_v6(s, d, 17, l4 as u32))
        }
        _ => unreachable!("one family"),
    };
    p[ip_len..ip_len + 2].copy_from_slice(&40000u16.to_be_bytes());
    p[ip_len + 2..ip_len + 4].copy_from_slice(&5201u16.to_be_bytes());
    p[ip_len + 4..ip_len + 6].copy_from_slice(&(l4 as u16).to_be_bytes());
    let sum = checksum::sum(&p[ip_len..], pseudo);
    p[ip_len + 6..ip_len + 8].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
    p
}

criterion_group!(
    benches,
    translate_existing,
    create_session,
    checksum_update,
    checksum_sum,
    router_udp_established
);
criterion_main!(benches);
