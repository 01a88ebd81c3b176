//! Criterion microbenchmarks of the NAT core (`cargo bench --bench core`):
//! * `translate_existing/N`: one packet of an existing session, picked in a scattered
//!   order, through `Nat::process`, with N = 10 k, 100 k and 1 M sessions in the table;
//! * `create_session`: a packet that opens a new session (and mapping);
//! * `checksum_update`: the RFC 1624 update of a checksum for a new address and port.
//!
//! The workload is `common.rs`'s, as in `table_scale`, which also reports memory.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tunnat::nat::{Instant, Side};
use tunnat::wire::checksum;

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

criterion_group!(benches, translate_existing, create_session, checksum_update);
criterion_main!(benches);
