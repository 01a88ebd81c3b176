//! A counting allocator for the unit tests (`cfg(test)` only): each thread counts the
//! allocations it makes, so a test can show that a path allocates nothing while the other
//! tests run on other threads. The router's data path is held to this (issue 18: no
//! allocation and no copy per packet on the hot path).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// [`System`], counting.
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread's last frees and allocations can come after its locals are gone.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations (and reallocations) this thread has made so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed on to `System` unchanged; counting touches only a
// thread-local counter, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn allocations_are_counted_on_this_thread_only() {
        let before = allocations();
        let v = std::hint::black_box(vec![1u8; 100]);
        assert_eq!(allocations(), before + 1);
        let elsewhere = std::thread::spawn(|| {
            let before = allocations();
            drop(std::hint::black_box(vec![0u8; 10]));
            allocations() - before
        })
        .join()
        .unwrap();
        assert_eq!(elsewhere, 1, "the other thread counted only its own");
        drop(v);
        let after = allocations();
        let on_stack = std::hint::black_box([0u8; 64]);
        assert_eq!(allocations(), after, "{on_stack:?} allocated nothing");
    }
}
