//! The process's allocator: the system's, with large blocks (the session table's slab and
//! hash indices once a table holds tens of thousands of sessions) marked for transparent
//! huge pages (`madvise(MADV_HUGEPAGE)`; the kernel's default mode, `madvise`, uses them only
//! where asked). A packet of a large table lands on a random slot and a random index
//! bucket: with 4 KB pages each is also a TLB miss, with 2 MB pages seldom (issue 18).
//!
//! Blocks of [`MAP`] or more are mapped by the allocator itself (`mmap`, grown with
//! `mremap`) and unmapped when freed: the C allocator keeps a freed block of up to 32 MB
//! in its heap once it has freed one that large, so a table's old, outgrown arrays would
//! stay resident beside the new ones.
//!
//! Small blocks, and everything on a kernel with huge pages off, are as before. The advice
//! is only advice: if the kernel cannot give huge pages it uses small ones.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are advised (the kernel backs 2 MB-aligned stretches of
/// them with huge pages): the slab from about 70,000 sessions, an index from about
/// 800,000. Smaller ones stay on small pages, io_uring's buffer pools among them (at most
/// 4 MB, whose buffers mostly touch one page each: a huge page would make them resident).
const HUGE: usize = 8 << 20;

/// [`System`] for small blocks; [`MAP`] blocks mapped, [`HUGE`] ones advised for huge
/// pages.
pub struct HugePageAlloc;

/// The pages' size, the most alignment a mapping gives.
const PAGE: usize = 4096;

/// Blocks at least this large are mapped (and unmapped when freed) by this allocator.
const MAP: usize = 1 << 20;

/// Is a block of `layout` one of ours (mapped), rather than the system allocator's?
fn mapped(layout: &Layout) -> bool {
    layout.size() >= MAP && layout.align() <= PAGE
}

/// `len` in whole pages: a mapping's true length. (The advice must cover the whole
/// mapping: advising part of it would split it in two, and `mremap` refuses a range of
/// two mappings.)
fn pages(len: usize) -> usize {
    len.div_ceil(PAGE) * PAGE
}

/// A new mapping of `len` bytes (zeroed), advised for huge pages; null on failure.
fn map(len: usize) -> *mut u8 {
    let len = pages(len);
    // SAFETY: an anonymous private mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    if len >= HUGE {
        advise(p as *mut u8, len);
    }
    p as *mut u8
}

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
        if mapped(&layout) {
            return map(layout.size());
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            return map(layout.size()); // a new mapping reads as zeros
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            // SAFETY: `ptr` is a mapping of this size made by `map` (the layout is the
            // one it was allocated with).
            unsafe { libc::munmap(ptr as *mut libc::c_void, pages(layout.size())) };
            return;
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: a valid layout for the new size.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (mapped(&layout), mapped(&new)) {
            (false, false) => {
                // SAFETY: the caller's contract, passed on.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            (true, true) => {
                // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map`.
                let p = unsafe {
                    libc::mremap(
                        ptr as *mut libc::c_void,
                        pages(layout.size()),
                        pages(new_size),
                        libc::MREMAP_MAYMOVE,
                    )
                };
                if p == libc::MAP_FAILED {
                    return std::ptr::null_mut();
                }
                if new_size >= HUGE {
                    advise(p as *mut u8, pages(new_size));
                }
                p as *mut u8
            }
            _ => {
                // From one kind of block to the other: a new block, the bytes, the old
                // one freed.
                // SAFETY: `new` is valid (the caller's contract); both blocks hold at least
                // the bytes copied; the old block is freed with its own layout.
                unsafe {
                    let p = self.alloc(new);
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    p
                }
            }
        }
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

    #[test]
    fn blocks_move_between_the_two_kinds_with_their_bytes() {
        let a = HugePageAlloc;
        let small = Layout::from_size_align(64, 8).unwrap();
        let large = Layout::from_size_align(HUGE + 100, 8).unwrap();
        // SAFETY: blocks written within their sizes, each freed with its layout.
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(9, 64);
            let q = a.realloc(p, small, large.size());
            assert_eq!(*q.add(63), 9);
            *q.add(HUGE + 99) = 3;
            let r = a.realloc(q, large, 32);
            assert_eq!((*r, *r.add(31)), (9, 9));
            a.dealloc(r, Layout::from_size_align(32, 8).unwrap());
            // Over-aligned large blocks stay the system's.
            let big = Layout::from_size_align(HUGE, 1 << 16).unwrap();
            let b = a.alloc(big);
            assert_eq!(b as usize % (1 << 16), 0);
            a.dealloc(b, big);
        }
    }
}
