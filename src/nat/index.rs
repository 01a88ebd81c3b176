//! Open-addressing hash tables for the session table's indices (issue 18: a table that
//! stays small and flat at a million sessions).
//!
//! Linear probing over any number of buckets: a hash is mapped onto them by a
//! multiply-shift (Lemire's "fastrange"), so a table need not be a power of two and is
//! sized for the table's limit (`--max-sessions`) at most, three quarters full (a
//! power-of-two table, hashbrown's, can be twice as large as needed just past a
//! doubling). A deletion shifts the rest of its run back, so there are no tombstones and
//! no rebuild ever comes from deletions: a table full at its limit, evicting one session
//! for each new one, never stalls to clean up.
//!
//! * [`SlotIndex`]: slot numbers of the session slab, 4 bytes a bucket: 8 bits of the
//!   hash beside a 24-bit slot number, so a probe passes over most other keys' buckets
//!   without reading their slots (16.7 million sessions at most).
//! * [`CountMap`]: a count per key (sessions per remote address, for address-dependent
//!   filtering), the key stored in the bucket.

use std::hash::{BuildHasher, Hash};

/// A table grows when an entry would take it past seven eighths full ...
const GROW_EIGHTHS: usize = 7;
/// ... and is sized to be at most three quarters full at its limit.
const SIZE_QUARTERS: usize = 3;
/// The smallest table.
const MIN_BUCKETS: usize = 16;

/// The bucket of `hash` in a table of `n`.
#[inline]
fn home(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// How many buckets hold `entries` three quarters full.
fn buckets_for(entries: usize) -> usize {
    (entries * 4).div_ceil(SIZE_QUARTERS).max(MIN_BUCKETS)
}

/// The size of a table of `n` buckets that is to hold `need` entries, for a limit of
/// `max`: twice as large, but no larger than the limit needs unless `need` is past it.
fn grown(n: usize, need: usize, max: usize) -> usize {
    let at_limit = buckets_for(max);
    let size = if at_limit > n {
        (2 * n).min(at_limit)
    } else {
        2 * n
    };
    size.max(buckets_for(need))
}

/// Is the entry at `j`, whose home is `k`, allowed to move back to the gap at `i` (it
/// would not come before its home)? Positions wrap around `n`.
#[inline]
fn may_fill(i: usize, j: usize, k: usize) -> bool {
    if i <= j {
        k <= i || k > j
    } else {
        k <= i && k > j
    }
}

/// Asks the CPU to bring the cache line of `p` in (a hint; nothing on other machines).
#[inline]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// What a bucket holds: an entry, or nothing.
trait Bucket: Copy {
    fn is_empty(&self) -> bool;
}

impl Bucket for u32 {
    fn is_empty(&self) -> bool {
        *self == EMPTY
    }
}

impl<K: Copy> Bucket for (K, u32) {
    fn is_empty(&self) -> bool {
        self.1 == 0
    }
}

/// The probing both tables share: buckets, how many are in use, the limit they are sized
/// for, and the value of an empty bucket.
#[derive(Debug)]
struct Probing<E> {
    buckets: Vec<E>,
    len: usize,
    /// The most entries the table is sized for (it grows past that only if it must).
    max: usize,
    blank: E,
}

impl<E: Bucket> Probing<E> {
    fn new(max: usize, blank: E) -> Probing<E> {
        Probing {
            buckets: Vec::new(),
            len: 0,
            max,
            blank,
        }
    }

    /// Bytes the buckets take.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<E>()
    }

    /// The bucket after `i`, wrapping around.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    /// The first bucket of `hash`'s run whose entry `is` accepts.
    #[inline]
    fn position(&self, hash: u64, mut is: impl FnMut(&E) -> bool) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut i = home(hash, self.buckets.len());
        loop {
            let e = &self.buckets[i];
            if e.is_empty() {
                return None;
            }
            if is(e) {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    /// Adds `e` (not there yet) under `hash`, first growing the table if it is full:
    /// `hash_of` gives the hash of an entry already in.
    fn insert(&mut self, hash: u64, e: E, hash_of: impl Fn(&E) -> u64) {
        let n = self.buckets.len();
        if (self.len + 1) * 8 > n * GROW_EIGHTHS {
            let size = grown(n, self.len + 1, self.max);
            let old = std::mem::replace(&mut self.buckets, vec![self.blank; size]);
            for e in old.into_iter().filter(|e| !e.is_empty()) {
                self.put(hash_of(&e), e);
            }
        }
        self.put(hash, e);
        self.len += 1;
    }

    /// Puts `e` in the first empty bucket of its run.
    fn put(&mut self, hash: u64, e: E) {
        let mut i = home(hash, self.buckets.len());
        while !self.buckets[i].is_empty() {
            i = self.next(i);
        }
        self.buckets[i] = e;
    }

    /// Empties bucket `i`, moving the rest of its run back where their homes allow, so
    /// no lookup meets a gap before its entry (`hash_of` gives their hashes).
    fn remove_at(&mut self, mut i: usize, hash_of: impl Fn(&E) -> u64) {
        self.len -= 1;
        let n = self.buckets.len();
        let mut j = i;
        loop {
            j = self.next(j);
            let e = self.buckets[j];
            if e.is_empty() {
                break;
            }
            if may_fill(i, j, home(hash_of(&e), n)) {
                self.buckets[i] = e;
                i = j;
            }
        }
        self.buckets[i] = self.blank;
    }
}

const EMPTY: u32 = 0;
/// Slot numbers are stored plus one (0 marks an empty bucket).
const BIAS: u32 = 1;
/// The most slots a [`SlotIndex`] can name.
pub const MAX_SLOTS: usize = (1 << 24) - BIAS as usize;

fn tag(hash: u64) -> u32 {
    (hash as u32 & 0xff) << 24
}

fn slot_of(e: u32) -> u32 {
    (e & 0x00ff_ffff) - BIAS
}

/// Slot numbers by hash (see the module's documentation).
#[derive(Debug)]
pub struct SlotIndex {
    t: Probing<u32>,
}

impl Default for SlotIndex {
    fn default() -> Self {
        SlotIndex::with_max(0)
    }
}

impl SlotIndex {
    /// An index that will hold up to `max` slots.
    pub fn with_max(max: usize) -> SlotIndex {
        SlotIndex {
            t: Probing::new(max, EMPTY),
        }
    }

    /// Sizes the table for up to `max` slots from its next growth on.
    pub fn set_max(&mut self, max: usize) {
        self.t.max = max;
    }

    /// The slot of the entry with `hash` for which `is(slot)` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(hash);
        let i = self
            .t
            .position(hash, |e| e & 0xff00_0000 == t && is(slot_of(*e)))?;
        Some(slot_of(self.t.buckets[i]))
    }

    /// Starts bringing in the bucket `hash` is looked up at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let b = &self.t.buckets;
        if !b.is_empty() {
            prefetch(&b[home(hash, b.len())]);
        }
    }

    /// The first slot in `hash`'s run whose 8 bits of hash match: most likely the one a
    /// lookup will find (for prefetching it; nothing is compared).
    #[inline]
    pub fn likely(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Adds `slot` under `hash` (not there yet; `slot` below [`MAX_SLOTS`]). `hash_of`
    /// gives the hash of any slot already in, should the table grow.
    pub fn insert(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) {
        debug_assert!((slot as usize) < MAX_SLOTS);
        let e = tag(hash) | (slot + BIAS);
        self.t.insert(hash, e, |e| hash_of(slot_of(*e)));
    }

    /// Takes `slot`, found under `hash`, out, moving the rest of its run back (`hash_of`
    /// gives the hashes of the slots met). False if it was not there.
    pub fn remove(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        let want = tag(hash) | (slot + BIAS);
        let Some(i) = self.t.position(hash, |e| *e == want) else {
            return false;
        };
        self.t.remove_at(i, |e| hash_of(slot_of(*e)));
        true
    }

    /// Every slot in it, in no order.
    #[cfg(test)]
    fn slots(&self) -> Vec<u32> {
        (self.t.buckets.iter())
            .filter(|e| !e.is_empty())
            .map(|e| slot_of(*e))
            .collect()
    }
}

/// A count per key, with the key in the bucket (see the module's documentation). A key
/// is present while its count is above zero.
#[derive(Debug)]
pub struct CountMap<K, S> {
    /// `(key, count)`: count 0 is an empty bucket.
    t: Probing<(K, u32)>,
    hasher: S,
}

impl<K: Copy + Eq + Hash, S: BuildHasher> CountMap<K, S> {
    /// A map sized for up to `max` keys; `blank` is any key (it fills empty buckets).
    pub fn new(max: usize, hasher: S, blank: K) -> CountMap<K, S> {
        CountMap {
            t: Probing::new(max, (blank, 0)),
            hasher,
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.t.max = max;
    }

    fn bucket(&self, key: &K) -> Option<usize> {
        self.t
            .position(self.hasher.hash_one(key), |(k, _)| k == key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.bucket(key).is_some()
    }

    pub fn get(&self, key: &K) -> u32 {
        self.bucket(key).map_or(0, |i| self.t.buckets[i].1)
    }

    /// Adds one to `key`'s count.
    pub fn increment(&mut self, key: K) {
        if let Some(i) = self.bucket(&key) {
            let c = &mut self.t.buckets[i].1;
            *c = c.saturating_add(1);
            return;
        }
        let h = &self.hasher;
        self.t
            .insert(h.hash_one(key), (key, 1), |(k, _)| h.hash_one(k));
    }

    /// Takes one from `key`'s count; the key goes at zero.
    pub fn decrement(&mut self, key: &K) {
        let Some(i) = self.bucket(key) else {
            return;
        };
        let c = &mut self.t.buckets[i].1;
        *c -= 1;
        if *c == 0 {
            let h = &self.hasher;
            self.t.remove_at(i, |(k, _)| h.hash_one(k));
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A poor hash on purpose: many keys share buckets, so probes cross and wrap.
    fn h(slot: u32) -> u64 {
        u64::from(slot % 7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(slot)
    }

    #[test]
    fn slots_are_found_removed_and_found_again_across_growth_and_tombstones() {
        let mut ix = SlotIndex::with_max(1000);
        let mut live = std::collections::BTreeSet::new();
        let mut x = 1u32;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let slot = x % 1500;
            if live.contains(&slot) {
                assert!(ix.remove(h(slot), slot, h), "step {step}: remove {slot}");
                live.remove(&slot);
            } else if live.len() < 1000 {
                ix.insert(h(slot), slot, h);
                live.insert(slot);
            }
            if step % 997 == 0 {
                for s in 0..1500 {
                    assert_eq!(
                        ix.find(h(s), |c| c == s).is_some(),
                        live.contains(&s),
                        "step {step}: slot {s}"
                    );
                }
            }
        }
        let mut got = ix.slots();
        got.sort();
        assert_eq!(got, live.iter().copied().collect::<Vec<_>>());
        assert_eq!(ix.t.len, live.len());
        // Sized for the limit, 0.8 full at most: not the next power of two.
        assert!(
            ix.t.bytes() <= buckets_for(1000) * 4,
            "{} bytes",
            ix.t.bytes()
        );
    }

    #[test]
    fn a_full_limit_fits_and_more_than_the_limit_still_grows() {
        let mut ix = SlotIndex::with_max(100);
        for s in 0..300 {
            ix.insert(h(s), s, h);
        }
        assert!((0..300).all(|s| ix.find(h(s), |c| c == s) == Some(s)));
        assert!(ix.find(h(300), |c| c == 300).is_none());
    }

    #[test]
    fn counts_go_up_and_down_and_keys_go_at_zero() {
        let mut m: CountMap<(u8, u16), foldhash::fast::FixedState> =
            CountMap::new(500, foldhash::fast::FixedState::with_seed(3), (0, 0));
        for round in 0..3 {
            for k in 0..400u16 {
                m.increment((round, k));
                m.increment((round, k));
            }
            for k in 0..400u16 {
                assert_eq!(m.get(&(round, k)), 2);
                m.decrement(&(round, k));
            }
            for k in (0..400u16).step_by(2) {
                m.decrement(&(round, k));
            }
            assert!((0..400u16).all(|k| m.contains_key(&(round, k)) == (k % 2 == 1)));
            for k in (1..400u16).step_by(2) {
                m.decrement(&(round, k));
            }
            assert!(m.t.len == 0, "round {round}: {} left", m.t.len);
        }
        assert!(!m.contains_key(&(9, 9)));
        assert!(m.t.bytes() <= buckets_for(500) * std::mem::size_of::<((u8, u16), u32)>());
    }
}
