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
#[derive(Debug, Default)]
pub struct SlotIndex {
    buckets: Vec<u32>,
    len: usize,
    /// The most entries the table is sized for (it grows past that only if it must).
    max: usize,
}

impl SlotIndex {
    /// An index that will hold up to `max` slots.
    pub fn with_max(max: usize) -> SlotIndex {
        SlotIndex {
            max,
            ..SlotIndex::default()
        }
    }

    /// Sizes the table for up to `max` slots from its next growth on.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buckets take.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * 4
    }

    /// The slot of the entry with `hash` for which `is(slot)` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let n = self.buckets.len();
        if n == 0 {
            return None;
        }
        let t = tag(hash);
        let mut i = home(hash, n);
        loop {
            let e = self.buckets[i];
            if e == EMPTY {
                return None;
            }
            if e & 0xff00_0000 == t && is(slot_of(e)) {
                return Some(slot_of(e));
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Starts bringing in the bucket `hash` is looked up at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if !self.buckets.is_empty() {
            prefetch(&self.buckets[home(hash, self.buckets.len())]);
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
        let n = self.buckets.len();
        if (self.len + 1) * 8 > n * GROW_EIGHTHS {
            let size = grown(n, self.len + 1, self.max);
            let old = std::mem::replace(&mut self.buckets, vec![EMPTY; size]);
            for e in old.into_iter().filter(|e| *e != EMPTY) {
                self.put(hash_of(slot_of(e)), e);
            }
        }
        self.put(hash, tag(hash) | (slot + BIAS));
        self.len += 1;
    }

    /// Puts entry `e` in the first empty bucket of its probe.
    fn put(&mut self, hash: u64, e: u32) {
        let n = self.buckets.len();
        let mut i = home(hash, n);
        while self.buckets[i] != EMPTY {
            i += 1;
            if i == n {
                i = 0;
            }
        }
        self.buckets[i] = e;
    }

    /// Takes `slot`, found under `hash`, out, moving the rest of its run back (`hash_of`
    /// gives the hashes of the slots met). False if it was not there.
    pub fn remove(&mut self, hash: u64, slot: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        let n = self.buckets.len();
        if n == 0 {
            return false;
        }
        let want = tag(hash) | (slot + BIAS);
        let mut i = home(hash, n);
        loop {
            match self.buckets[i] {
                EMPTY => return false,
                e if e == want => break,
                _ => {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                }
            }
        }
        self.len -= 1;
        let mut j = i;
        loop {
            j += 1;
            if j == n {
                j = 0;
            }
            let e = self.buckets[j];
            if e == EMPTY {
                break;
            }
            if may_fill(i, j, home(hash_of(slot_of(e)), n)) {
                self.buckets[i] = e;
                i = j;
            }
        }
        self.buckets[i] = EMPTY;
        true
    }

    /// Every slot in it, in no order.
    #[cfg(test)]
    fn slots(&self) -> Vec<u32> {
        (self.buckets.iter())
            .filter(|e| **e != EMPTY)
            .map(|e| slot_of(*e))
            .collect()
    }
}

/// A count per key, with the key in the bucket (see the module's documentation). A key
/// is present while its count is above zero.
#[derive(Debug)]
pub struct CountMap<K, S> {
    /// `(key, count)`: count 0 is an empty bucket (its key is `blank`).
    buckets: Vec<(K, u32)>,
    len: usize,
    max: usize,
    hasher: S,
    blank: K,
}

impl<K: Copy + Eq + Hash, S: BuildHasher> CountMap<K, S> {
    /// A map sized for up to `max` keys; `blank` is any key (it fills empty buckets).
    pub fn new(max: usize, hasher: S, blank: K) -> CountMap<K, S> {
        CountMap {
            buckets: Vec::new(),
            len: 0,
            max,
            hasher,
            blank,
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buckets take.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<(K, u32)>()
    }

    fn bucket(&self, key: &K) -> Option<usize> {
        let n = self.buckets.len();
        if n == 0 {
            return None;
        }
        let mut i = home(self.hasher.hash_one(key), n);
        loop {
            let (k, c) = &self.buckets[i];
            if *c == 0 {
                return None;
            }
            if k == key {
                return Some(i);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.bucket(key).is_some()
    }

    pub fn get(&self, key: &K) -> u32 {
        self.bucket(key).map_or(0, |i| self.buckets[i].1)
    }

    /// Adds one to `key`'s count.
    pub fn increment(&mut self, key: K) {
        if let Some(i) = self.bucket(&key) {
            let c = &mut self.buckets[i].1;
            *c = c.saturating_add(1);
            return;
        }
        let n = self.buckets.len();
        if (self.len + 1) * 8 > n * GROW_EIGHTHS {
            let size = grown(n, self.len + 1, self.max);
            let old = std::mem::replace(&mut self.buckets, vec![(self.blank, 0); size]);
            for (k, c) in old.into_iter().filter(|(_, c)| *c != 0) {
                self.put(k, c);
            }
        }
        self.put(key, 1);
        self.len += 1;
    }

    fn put(&mut self, key: K, count: u32) {
        let n = self.buckets.len();
        let mut i = home(self.hasher.hash_one(key), n);
        while self.buckets[i].1 != 0 {
            i += 1;
            if i == n {
                i = 0;
            }
        }
        self.buckets[i] = (key, count);
    }

    /// Takes one from `key`'s count; the key goes at zero.
    pub fn decrement(&mut self, key: &K) {
        let Some(mut i) = self.bucket(key) else {
            return;
        };
        let c = &mut self.buckets[i].1;
        *c -= 1;
        if *c > 0 {
            return;
        }
        self.len -= 1;
        let n = self.buckets.len();
        let mut j = i;
        loop {
            j += 1;
            if j == n {
                j = 0;
            }
            let (k, c) = self.buckets[j];
            if c == 0 {
                break;
            }
            if may_fill(i, j, home(self.hasher.hash_one(k), n)) {
                self.buckets[i] = (k, c);
                i = j;
            }
        }
        self.buckets[i] = (self.blank, 0);
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
        assert_eq!(ix.len(), live.len());
        // Sized for the limit, 0.8 full at most: not the next power of two.
        assert!(ix.bytes() <= buckets_for(1000) * 4, "{} bytes", ix.bytes());
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
            assert!(m.is_empty(), "round {round}: {} left", m.len());
        }
        assert!(!m.contains_key(&(9, 9)));
        assert!(m.bytes() <= buckets_for(500) * std::mem::size_of::<((u8, u16), u32)>());
    }
}
