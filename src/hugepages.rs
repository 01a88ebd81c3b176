//! The process's allocator: the system's, with large blocks (the session table's slab and
//! hash indices once a table holds tens of thousands of sessions) marked for transparent
//! huge pages (`madvise(MADV_HUGEPAGE)`; the kernel's default mode, `madvise`, uses them only
//! where asked). A packet of a large table lands on a random slot and a random index
//! bucket: with 4 KB pages each is also a TLB miss, with 2 MB pages seldom (issue 18).
//!
//! Small blocks, and everything on a kernel with huge pages off, are as before. The advice
//! is only advice: if the kernel cannot give huge pages it uses small ones.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are advised (the kernel backs 2 MB-aligned stretches of
/// them with huge pages): the slab from about 70,000 sessions, an index from about
/// 800,000. Smaller ones stay on small pages, io_uring's buffer pools among them (at most
/// 4 MB, whose buffers mostly touch one page each: a huge page would make them resident).
const HUGE: usize = 8 << 20;

/// [`System`], with [`HUGE`] blocks advised for huge pages.
pub struct HugePageAlloc;

fn advise(p: *mut u8, len: usize) {
    let page = 4096;
    let start = (p as usize).div_ceil(page) * page;
    let end = (p as usize + len) / page * page;
    if end > start {
        // SAFETY: the range lies within a block just allocated; madvise only advises.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

// SAFETY: every call is passed to `System` unchanged; the advice does not touch the memory.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if layout.size() >= HUGE && !p.is_null() {
            advise(p, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if layout.size() >= HUGE && !p.is_null() {
            advise(p, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if new_size >= HUGE && !p.is_null() {
            advise(p, new_size);
        }
        p
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn large_and_small_blocks_work_as_the_system_s() {
        let a = HugePageAlloc;
        for size in [16, HUGE, HUGE * 3 + 5] {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: a non-zero layout; the block is written within its size and freed.
            unsafe {
                let p = a.alloc_zeroed(l);
                assert!(!p.is_null());
                assert_eq!(*p.add(size - 1), 0);
                *p.add(size - 1) = 7;
                let q = a.realloc(p, l, size * 2);
                assert_eq!(*q.add(size - 1), 7);
                a.dealloc(q, Layout::from_size_align(size * 2, 8).unwrap());
            }
        }
    }
}
