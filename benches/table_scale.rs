//! Memory per session and per-packet cost as the table grows: fills the NAT core with N
//! UDP sessions through `Nat::process` (the workload of `common.rs`), then times
//! translating packets of existing sessions in a scattered order. Prints one line per N.
//! The criterion bench `core` times the same more carefully; this one also reads RSS.
//!
//! `table_scale [N...]` (default 10000 100000 1000000).

use std::hint::black_box;
use std::time::Instant as Wall;

use tunnat::nat::{Instant, Prefetch, Side};

/// As the `tunnat` binary allocates: large blocks on huge pages.
#[global_allocator]
static ALLOC: tunnat::hugepages::HugePageAlloc = tunnat::hugepages::HugePageAlloc;

#[path = "common.rs"]
mod common;

/// Field `field` of `/proc/self/FILE`, in KiB.
fn proc_kib(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    proc_kib("status", "VmRSS:")
}

/// Memory of this process on transparent huge pages, in KiB.
fn huge_kib() -> u64 {
    proc_kib("smaps_rollup", "AnonHugePages:")
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
        let before = rss_kib();
        let mut nat = common::nat_for(n);
        let t0 = Wall::now();
        common::fill(&mut nat, n);
        let fill = t0.elapsed();
        let after = rss_kib();
        // Translate packets of existing sessions in a scattered order.
        let lookups = 2_000_000u32;
        let mut x = 12345u32;
        let mut buf = [0u8; 32];
        let t1 = Wall::now();
        for _ in 0..lookups {
            common::packet(&mut buf, common::scatter(&mut x, n));
            black_box(nat.process(Side::Inside, &mut buf, Instant::ZERO));
        }
        let per = t1.elapsed().as_nanos() as f64 / lookups as f64;
        // The same in batches of 16, as the driver has them from io_uring: the index
        // buckets of the whole batch prefetched, then the slots, then each translated.
        let mut batch = [[0u8; 32]; 16];
        let t2 = Wall::now();
        for _ in 0..lookups / 16 {
            for b in batch.iter_mut() {
                common::packet(b, common::scatter(&mut x, n));
                nat.prefetch(Side::Inside, b, Prefetch::Index);
            }
            for b in batch.iter() {
                nat.prefetch(Side::Inside, b, Prefetch::Slot);
            }
            for b in batch.iter_mut() {
                black_box(nat.process(Side::Inside, b, Instant::ZERO));
            }
        }
        let batched = t2.elapsed().as_nanos() as f64 / lookups as f64;
        println!(
            "sessions {n:>8} (mappings {:>5}): {:>5.0} bytes per session (RSS), create {:>5.0} ns, translate existing {:>4.0} ns per packet, {:>4.0} ns in batches of 16 with prefetch; {} MB on huge pages",
            nat.table().mapping_count(),
            (after.saturating_sub(before)) as f64 * 1024.0 / n as f64,
            fill.as_nanos() as f64 / n as f64,
            per,
            batched,
            huge_kib() / 1024
        );
    }
}
