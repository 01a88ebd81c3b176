//! The session store of [`super::table::Table`]: every session in one slab, in
//! least-recently-used order, found from either side (issue 18: a table that stays flat
//! at a million sessions).
//!
//! * The sessions live in one `Vec` of slots: no allocation per session, and a removed
//!   session's slot is reused by the next one (a free list through the same links).
//! * The LRU order is a doubly linked list through 32-bit slot numbers, 8 bytes a session
//!   (an `LruCache` node is a separate allocation with two pointers and the key again).
//! * Two hash indices ([`SlotIndex`]) hold slot numbers and 8 bits of hash, 4 bytes a
//!   bucket: by the inside view ([`SessionKey`]) and by the outside view ([`ExtKey`]:
//!   protocol, external port, remote). A lookup compares the key stored in the slot, so
//!   neither index repeats a key. They are sized for `--max-sessions`, not to a power of
//!   two.
//!
//! The hashes are foldhash, seeded per process, so remotes cannot aim collisions.

use std::hash::BuildHasher;

use super::endpoint::{Address, Endpoint, SessionKey};
use super::index::SlotIndex;
use super::session::Session;
use crate::wire::transport::Protocol;

/// What [`Sessions::prefetch`] brings in: a lookup reads an index bucket, then the slot
/// it names. Ask for the bucket a few packets ahead and for the slot of the next one, so
/// that each is in the cache by the time it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    Index,
    Slot,
}

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

/// A session seen from the outside: protocol, external port, remote endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtKey<A> {
    pub protocol: Protocol,
    pub port: u16,
    pub remote: Endpoint<A>,
}

struct Slot<A> {
    key: SessionKey<A>,
    session: Session,
    /// Toward the most recently used end (`NIL` at the head).
    prev: u32,
    /// Toward the least recently used end (`NIL` at the tail); in a free slot, the next
    /// free one.
    next: u32,
}

impl<A: Address> Slot<A> {
    fn ext(&self) -> ExtKey<A> {
        ExtKey {
            protocol: self.key.protocol,
            port: self.session.ext_port,
            remote: self.key.remote,
        }
    }
}

/// The sessions, most recently used first.
pub struct Sessions<A: Address> {
    slots: Vec<Slot<A>>,
    /// First free slot (`NIL`: none, the next session gets a new one).
    free: u32,
    /// Most and least recently used sessions.
    head: u32,
    tail: u32,
    len: usize,
    by_key: SlotIndex,
    by_ext: SlotIndex,
    hasher: foldhash::fast::RandomState,
}

impl<A: Address> Default for Sessions<A> {
    fn default() -> Self {
        Sessions {
            slots: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            len: 0,
            by_key: SlotIndex::default(),
            by_ext: SlotIndex::default(),
            hasher: Default::default(),
        }
    }
}

impl<A: Address> Sessions<A> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sizes the indices for up to `max` sessions (`--max-sessions`).
    pub fn set_max(&mut self, max: usize) {
        self.by_key.set_max(max);
        self.by_ext.set_max(max);
    }

    /// Starts bringing in what a lookup of `key` (inside view) or `ext` (outside view)
    /// will read at `stage`.
    #[inline]
    pub fn prefetch(&self, key: Result<&SessionKey<A>, &ExtKey<A>>, stage: Prefetch) {
        let (index, hash) = match key {
            Ok(k) => (&self.by_key, self.hasher.hash_one(k)),
            Err(e) => (&self.by_ext, self.hasher.hash_one(e)),
        };
        match stage {
            Prefetch::Index => index.prefetch(hash),
            Prefetch::Slot => {
                if let Some(s) = index.likely(hash).and_then(|i| self.slots.get(i as usize)) {
                    // A slot is more than a cache line: both lines it spans.
                    let p = s as *const Slot<A> as *const u8;
                    super::index::prefetch(p);
                    super::index::prefetch(p.wrapping_add(std::mem::size_of::<Slot<A>>() - 1));
                }
            }
        }
    }

    fn slot(&self, i: u32) -> &Slot<A> {
        &self.slots[i as usize]
    }

    fn find(&self, key: &SessionKey<A>) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.by_key.find(h, |i| self.slots[i as usize].key == *key)
    }

    pub fn get(&self, key: &SessionKey<A>) -> Option<&Session> {
        self.find(key).map(|i| &self.slot(i).session)
    }

    pub fn get_mut(&mut self, key: &SessionKey<A>) -> Option<&mut Session> {
        let i = self.find(key)?;
        Some(&mut self.slots[i as usize].session)
    }

    pub fn contains(&self, key: &SessionKey<A>) -> bool {
        self.find(key).is_some()
    }

    /// The key of the session seen from the outside as `ext`.
    pub fn find_ext(&self, ext: &ExtKey<A>) -> Option<&SessionKey<A>> {
        let h = self.hasher.hash_one(ext);
        self.by_ext
            .find(h, |i| self.slots[i as usize].ext() == *ext)
            .map(|i| &self.slot(i).key)
    }

    /// The hashes of slot `i`'s two keys: inside, outside.
    fn hashes(&self, i: u32) -> (u64, u64) {
        let s = self.slot(i);
        (self.hasher.hash_one(s.key), self.hasher.hash_one(s.ext()))
    }

    /// Adds slot `i` to both indices (`add`), or takes it out of them.
    fn index(&mut self, i: u32, add: bool) {
        let (hk, he) = self.hashes(i);
        let Sessions {
            slots,
            by_key,
            by_ext,
            hasher,
            ..
        } = self;
        let key_hash = |j: u32| hasher.hash_one(slots[j as usize].key);
        let ext_hash = |j: u32| hasher.hash_one(slots[j as usize].ext());
        if add {
            by_key.insert(hk, i, key_hash);
            by_ext.insert(he, i, ext_hash);
        } else {
            by_key.remove(hk, i, key_hash);
            by_ext.remove(he, i, ext_hash);
        }
    }

    /// Takes slot `i` out of the LRU list.
    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.slot(i).prev, self.slot(i).next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    /// Puts slot `i` at the most recently used end.
    fn link_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.slots[o as usize].prev = i,
        }
        self.head = i;
    }

    /// Moves session `key` to the most recently used end.
    pub fn promote(&mut self, key: &SessionKey<A>) {
        if let Some(i) = self.find(key) {
            if self.head != i {
                self.unlink(i);
                self.link_front(i);
            }
        }
    }

    /// Adds session `key` as the most recently used, or returns the one there is.
    pub fn insert(&mut self, key: SessionKey<A>, session: Session) -> &mut Session {
        if let Some(i) = self.find(&key) {
            return &mut self.slots[i as usize].session;
        }
        let slot = Slot {
            key,
            session,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free {
            NIL => {
                // u32::MAX slots would be 100 GB of sessions: far beyond any limit.
                let i = self.slots.len() as u32;
                self.slots.push(slot);
                i
            }
            f => {
                self.free = self.slot(f).next;
                self.slots[f as usize] = slot;
                f
            }
        };
        self.index(i, true);
        self.link_front(i);
        self.len += 1;
        &mut self.slots[i as usize].session
    }

    /// Removes session `key` and returns it.
    pub fn remove(&mut self, key: &SessionKey<A>) -> Option<Session> {
        let i = self.find(key)?;
        self.index(i, false);
        self.unlink(i);
        let session = self.slot(i).session.clone();
        self.slots[i as usize].next = self.free;
        self.free = i;
        self.len -= 1;
        Some(session)
    }

    /// The sessions from most to least recently used (`.rev()` for the other way).
    pub fn iter(&self) -> Iter<'_, A> {
        Iter {
            sessions: self,
            front: self.head,
            back: self.tail,
            left: self.len,
        }
    }
}

/// [`Sessions::iter`].
pub struct Iter<'a, A: Address> {
    sessions: &'a Sessions<A>,
    front: u32,
    back: u32,
    left: usize,
}

impl<'a, A: Address> Iterator for Iter<'a, A> {
    type Item = (&'a SessionKey<A>, &'a Session);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let s = self.sessions.slot(self.front);
        self.front = s.next;
        Some((&s.key, &s.session))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<A: Address> DoubleEndedIterator for Iter<'_, A> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let s = self.sessions.slot(self.back);
        self.back = s.prev;
        Some((&s.key, &s.session))
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::nat::tcp_state::TcpTrack;
    use crate::nat::time::Instant;
    use std::net::Ipv4Addr;

    fn key(port: u16) -> SessionKey {
        SessionKey {
            protocol: Protocol::Udp,
            inside: Endpoint::new(Ipv4Addr::new(192, 168, 122, 10), port),
            remote: Endpoint::new(Ipv4Addr::new(172, 16, 1, 1), 53),
        }
    }

    fn session(ext_port: u16) -> Session {
        Session::new(ext_port, false, Instant::ZERO)
    }

    fn order(s: &Sessions<Ipv4Addr>) -> Vec<u16> {
        s.iter().map(|(k, _)| k.inside.port).collect()
    }

    fn ext(port: u16) -> ExtKey<Ipv4Addr> {
        ExtKey {
            protocol: Protocol::Udp,
            port,
            remote: Endpoint::new(Ipv4Addr::new(172, 16, 1, 1), 53),
        }
    }

    #[test]
    fn an_ipv4_session_takes_96_bytes_in_the_slab() {
        // Issue 18's 128 bytes a session at a million: the slot, and about 10 bytes of
        // the two indices and 16 of the remote address counts.
        assert_eq!(std::mem::size_of::<TcpTrack>(), 20);
        assert_eq!(std::mem::size_of::<Session>(), 72);
        assert_eq!(std::mem::size_of::<Slot<Ipv4Addr>>(), 96);
    }

    #[test]
    fn most_recent_first_both_ways() {
        let mut s = Sessions::default();
        for p in 1..=4 {
            s.insert(key(p), session(1000 + p));
        }
        assert_eq!(order(&s), [4, 3, 2, 1]);
        let back: Vec<u16> = s.iter().rev().map(|(k, _)| k.inside.port).collect();
        assert_eq!(back, [1, 2, 3, 4]);
        s.promote(&key(2));
        assert_eq!(order(&s), [2, 4, 3, 1]);
        s.promote(&key(1));
        assert_eq!(order(&s), [1, 2, 4, 3]);
        s.promote(&key(1));
        assert_eq!(order(&s), [1, 2, 4, 3], "the head stays");
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn found_from_both_sides_and_removed_from_both() {
        let mut s = Sessions::default();
        for p in 1..=3 {
            s.insert(key(p), session(1000 + p));
        }
        assert_eq!(s.find_ext(&ext(1002)), Some(&key(2)));
        assert_eq!(s.get(&key(3)).map(|x| x.ext_port), Some(1003));
        let gone = s.remove(&key(2)).unwrap();
        assert_eq!(gone.ext_port, 1002);
        assert!(s.remove(&key(2)).is_none());
        assert_eq!(s.find_ext(&ext(1002)), None);
        assert!(!s.contains(&key(2)));
        assert_eq!(order(&s), [3, 1]);
        // The slot is reused, and found both ways.
        s.insert(key(7), session(1007));
        assert_eq!(s.slots.len(), 3);
        assert_eq!(s.find_ext(&ext(1007)), Some(&key(7)));
        assert_eq!(order(&s), [7, 3, 1]);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn inserting_a_present_key_keeps_the_session() {
        let mut s = Sessions::default();
        s.insert(key(1), session(1001));
        s.insert(key(1), session(2002));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(&key(1)).map(|x| x.ext_port), Some(1001));
    }

    #[test]
    fn emptied_and_refilled_in_any_order() {
        let mut s = Sessions::default();
        for p in 1..=100 {
            s.insert(key(p), session(p));
        }
        for p in (1..=100).filter(|p| p % 3 != 0) {
            s.remove(&key(p)).unwrap();
        }
        assert_eq!(s.len(), 33);
        assert_eq!(
            order(&s),
            (1..=100).rev().filter(|p| p % 3 == 0).collect::<Vec<_>>()
        );
        for p in (1..=100).filter(|p| p % 3 == 0) {
            s.remove(&key(p)).unwrap();
        }
        assert!(s.is_empty());
        assert_eq!(s.iter().count(), 0);
        assert_eq!((s.head, s.tail), (NIL, NIL));
        for p in 1..=100 {
            s.insert(key(p), session(p));
        }
        assert_eq!(s.slots.len(), 100, "every slot reused");
        assert_eq!(s.iter().rev().count(), 100);
        assert_eq!(s.find_ext(&ext(42)), Some(&key(42)));
    }
}
