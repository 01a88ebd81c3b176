//! Batched TUN I/O on io_uring (Linux 6.7 and later), a lever of issue 18 kept because
//! the copy loop gained from it (README, "Figures"): many packets per system call in
//! both directions.
//!
//! * Each port has one *multishot read*: the kernel fills buffers from the port's
//!   provided-buffer ring as packets arrive and posts one completion per packet, with
//!   no system call of ours per read.
//! * The driver rewrites each packet in its buffer, and a *write* to the other port
//!   (or the same, a hairpin) is queued in the ring from that same buffer. The buffer goes
//!   back to its ring when the write completes: no copy.
//! * One `io_uring_enter` submits every write queued since the last and waits for the
//!   next completions, so a loaded router moves a batch per call and a quiet one makes one
//!   call per packet instead of four (wait, read, write, read again).
//! * The mio `Poll` (signals, control socket) is watched by a one-shot poll on its
//!   descriptor, armed again each time it fires, so one wait covers everything.
//!
//! * Under load, a wait holds out for a batch (`--coalesce-us`, as a NIC's interrupt
//!   coalescing): after a turn that read eight packets or more, the wait returns when half
//!   a pool's worth of completions is there, or when the window has passed and one is;
//!   past the window, the first completion ends it. With deferred task work
//!   (`IORING_SETUP_DEFER_TASKRUN`) the kernel does not wake the loop for each packet
//!   meanwhile: the reads' completions are made when the wait ends. A packet that comes
//!   alone, after a quiet turn, is never held back. Needs Linux 6.12 (`min_wait_usec`);
//!   elsewhere the loop wakes for every completion, as before.
//! * With offloads, UDP datagrams of one flow written to one port in a turn are joined
//!   into one UDP GSO super-packet ([`crate::wire::gro`]) that the kernel splits again:
//!   one write, and one pass through the receiving stack's routing, for up to 64
//!   datagrams (`--no-udp-gro` turns this off).
//!
//! A port's buffers bound what it may have in flight, so a flood on one port cannot take
//! more than its own buffers' worth of each turn: the other port, the control socket and
//! the timers get their turn as with read calls (issue 12, item 2).
//!
//! If the kernel has no io_uring or no multishot read (or forbids it, as
//! `kernel.io_uring_disabled` can), [`Uring::new`] fails and the driver uses read and
//! write calls as before.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use crate::nat::{Side, HEADROOM};
use crate::wire::gro::{self, Datagram, Train, Trains};
use crate::wire::offload::Offload;

/// `user_data` layout: kind in bits 48..50, generation of the port's device in 32..48,
/// side in bit 16, buffer id in 0..16.
const KIND_READ: u64 = 0;
const KIND_WRITE: u64 = 1;
const KIND_POLL: u64 = 2;

/// `--coalesce-us`'s default: off. It gained a fifth of the copy loop's CPU per packet,
/// but tunnat, slower per turn, already finds the next packets waiting when it turns to
/// wait, and gained 4–11% (issue 18; README, "Figures"), for up to the window's latency.
pub const DEFAULT_COALESCE_US: u32 = 0;
/// The longest window `--coalesce-us` takes: 1 ms.
pub const MAX_COALESCE_US: u32 = 1000;
/// `--io-buffers`' default, buffers per port (how many packets of a port a turn can read
/// before its read must be submitted again): with offloads 16, without 64. With offloads
/// a TCP stream's super-packets fill whole buffers of 64 KB, and 64 of them took 5–7%
/// more CPU per packet at 40 kpps and per TCP segment than 16 and up to 6 MB more
/// memory, for 3% more 64-byte UDP in a flood, 12% with four flows (issue 18; README,
/// "Figures"). Without offloads a packet touches only its MTU's pages.
pub fn default_io_buffers(offloads: bool) -> u16 {
    if offloads {
        16
    } else {
        64
    }
}
/// The fewest buffers per port `--io-buffers` takes.
pub const MIN_IO_BUFFERS: u16 = 8;
/// The most buffers per port `--io-buffers` takes: with both pools full of completions
/// the completion queue is not overrun.
pub const MAX_IO_BUFFERS: u16 = 128;
/// A wait holds out for a batch only after a turn that read this many packets or more: a
/// stream. Packets that come alone or in a few (a ping, a handshake, a TCP flow's
/// super-packets and their ACKs) are not held back; measured on the copy loop, holding
/// out after two cost two thirds of the short connections a second and a quarter of
/// TCP's throughput, after eight nothing.
const COALESCE_FROM: usize = 8;

fn user_data(kind: u64, gen: u16, side: usize, bid: u16) -> u64 {
    kind << 48 | u64::from(gen) << 32 | (side as u64) << 16 | u64::from(bid)
}

/// What one completion says, decoded for the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// A packet of `len` bytes (with its offload header, if any) in buffer `bid` of
    /// `side`'s pool: see [`Uring::buffer`]; give it back with [`Uring::write`] or
    /// [`Uring::release`].
    Read { side: Side, bid: u16, len: usize },
    /// Reading `side` failed with `err` (if it says the device is gone, the caller
    /// [`Uring::detach`]es the port; otherwise the read goes on).
    ReadFailed { side: Side, err: i32 },
    /// A write to `to` failed with `err` (its buffer is back in its pool).
    WriteFailed { to: Side, err: i32 },
    /// The mio `Poll` has events.
    Poll,
}

/// One port's provided buffers: the ring the kernel takes them from, and the memory.
/// A read fills a buffer from [`HEADROOM`] on, leaving the bytes before it free for a
/// packet that grows in front.
struct Pool {
    ring: *mut types::BufRingEntry,
    layout: Layout,
    mem: Vec<u8>,
    size: usize,
    count: u16,
    tail: u16,
}

impl Pool {
    /// `count` buffers of `size` bytes (more than [`HEADROOM`]), a power of two.
    fn new(size: usize, count: u16) -> io::Result<Pool> {
        // The ring shared with the kernel: page aligned, 16 bytes an entry.
        let layout = Layout::from_size_align(usize::from(count) * 16, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a non-zero size; zeroed memory is a valid empty ring.
        let ring = unsafe { alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut p = Pool {
            ring,
            layout,
            mem: vec![0; size * usize::from(count)],
            size,
            count,
            tail: 0,
        };
        for bid in 0..count {
            p.give(bid);
        }
        p.publish();
        Ok(p)
    }

    /// Puts buffer `bid` back at the ring's tail, for the kernel to see at `publish`.
    fn give(&mut self, bid: u16) {
        let addr = self.mem[usize::from(bid) * self.size + HEADROOM..].as_ptr() as u64;
        let i = usize::from(self.tail & (self.count - 1));
        // SAFETY: `i` is within the ring's `count` entries (a power of two).
        let e = unsafe { &mut *self.ring.add(i) };
        e.set_addr(addr);
        e.set_len((self.size - HEADROOM) as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring's first entry, which the kernel reads.
        let tail = unsafe { &*types::BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn buffer(&mut self, bid: u16) -> &mut [u8] {
        let at = usize::from(bid) * self.size;
        &mut self.mem[at..at + self.size]
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the io_uring that used it is gone
        // (it is dropped before the pools: see `Uring`'s field order).
        unsafe { dealloc(self.ring.cast(), self.layout) }
    }
}

/// The io_uring of the two ports.
pub struct Uring {
    // Dropped first: the kernel lets go of the buffers before their memory goes.
    ring: IoUring,
    pools: [Pool; 2],
    fds: [Option<RawFd>; 2],
    /// Bumped each time a port gets a new device, so completions of the old one's read
    /// are told apart.
    gens: [u16; 2],
    /// The port's multishot read ended (out of buffers) and must be submitted again.
    rearm: [bool; 2],
    poll_fd: RawFd,
    poll_armed: bool,
    /// Writes queued and not yet submitted.
    queued: usize,
    completions: Vec<cqueue::Entry>,
    /// Bytes of offload header before each packet (0 without offloads).
    hdr: usize,
    /// Join UDP datagrams into GSO super-packets.
    gro: bool,
    /// Per port written to, the trains of datagrams being joined, each in the buffer of
    /// its first: the pool's index, the buffer, where its offload header goes.
    trains: [Trains<(usize, u16, usize)>; 2],
    /// Datagrams written inside another's super-packet, since the start.
    joined: u64,
    /// The window a loaded wait holds out for a batch, in µs (`--coalesce-us`); `None`:
    /// off, or the kernel cannot.
    coalesce: Option<u32>,
    /// Packets read in the last turn.
    last_reads: usize,
    /// Waits that held out for a batch, since the start.
    coalesced: u64,
}

/// The size of each buffer of a port's pool (`--io-buffers` of them): room for the
/// largest packet a TUN read can give (a device's MTU may be set above the router's)
/// after [`HEADROOM`] and `hdr` bytes of offload header. Pages never written take no
/// memory: without offloads a packet touches only its MTU's pages, with them a TCP
/// stream's super-packets fill whole buffers.
fn buffer_size(hdr: usize) -> usize {
    HEADROOM + 65536 + hdr
}

impl Uring {
    /// Sets up the ring, the buffers (a packet after `hdr` bytes of offload header, 0
    /// without offloads) and a read on each port; `poll_fd` is the mio `Poll`'s
    /// descriptor; `gro`: join UDP datagrams into super-packets (needs offloads, and
    /// TUNs that take UDP segmentation); `coalesce_us`: the window a loaded wait holds out
    /// for a batch, 0 for none (see [`Uring::coalescing`] for whether the kernel could);
    /// `buffers`: each port's pool, a power of two (`--io-buffers`). Fails if the kernel
    /// lacks anything this needs.
    pub fn new(
        fds: [RawFd; 2],
        hdr: usize,
        gro: bool,
        poll_fd: RawFd,
        coalesce_us: u32,
        buffers: u16,
    ) -> io::Result<Uring> {
        // Coalescing needs the kernel to hold back the reads' completions while the loop
        // waits (deferred task work, Linux 6.1) and the wait's minimum (Linux 6.12).
        let deferred = (coalesce_us > 0)
            .then(|| {
                IoUring::builder()
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .build(256)
                    .ok()
            })
            .flatten()
            .filter(|r: &IoUring| r.params().is_feature_min_timeout());
        let coalesce = deferred.as_ref().map(|_| coalesce_us);
        let ring: IoUring = match deferred {
            Some(r) => r,
            None => IoUring::builder().setup_single_issuer().build(256)?,
        };
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [
            opcode::ReadMulti::CODE,
            opcode::Write::CODE,
            opcode::PollAdd::CODE,
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks operation {code}"),
                ));
            }
        }
        let size = buffer_size(hdr);
        let pools = [Pool::new(size, buffers)?, Pool::new(size, buffers)?];
        for (i, p) in pools.iter().enumerate() {
            // SAFETY: the ring memory lives as long as `self`, and outlives the io_uring.
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    p.ring as u64,
                    p.count,
                    i as u16,
                    0,
                )?
            };
        }
        let mut u = Uring {
            ring,
            pools,
            fds: fds.map(Some),
            gens: [0, 0],
            rearm: [true, true],
            poll_fd,
            poll_armed: false,
            queued: 0,
            completions: Vec::with_capacity(256),
            hdr,
            gro: gro && hdr > 0,
            trains: [Trains::new(), Trains::new()],
            joined: 0,
            coalesce,
            last_reads: 0,
            coalesced: 0,
        };
        u.arm();
        u.ring.submit()?;
        Ok(u)
    }

    fn push(&mut self, e: &squeue::Entry) {
        if self.ring.submission().is_full() {
            // Full of queued writes: hand them to the kernel now.
            let _ = self.ring.submit();
        }
        // SAFETY: every entry's buffers stay valid until its completion: reads take
        // buffers from the registered rings, writes point into a pool buffer the pool
        // does not hand out again before the write's completion.
        unsafe {
            let _ = self.ring.submission().push(e);
        }
    }

    /// Submits the reads that need it and the poll on the mio descriptor.
    fn arm(&mut self) {
        for i in 0..2 {
            if let (true, Some(fd)) = (self.rearm[i], self.fds[i]) {
                self.rearm[i] = false;
                // Length 0: each read fills one whole provided buffer.
                let e = opcode::ReadMulti::new(types::Fd(fd), 0, i as u16)
                    .build()
                    .user_data(user_data(KIND_READ, self.gens[i], i, 0));
                self.push(&e);
            }
        }
        if !self.poll_armed {
            self.poll_armed = true;
            let e = opcode::PollAdd::new(types::Fd(self.poll_fd), libc::POLLIN as u32)
                .build()
                .user_data(user_data(KIND_POLL, 0, 0, 0));
            self.push(&e);
        }
    }

    /// The window a loaded wait holds out for a batch (µs), if coalescing is on and the
    /// kernel can.
    pub fn coalescing(&self) -> Option<u32> {
        self.coalesce
    }

    /// Waits that held out for a batch, since the start.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Submits what is queued and waits until a completion comes or `timeout` passes
    /// (`None`: no limit); then puts the completions in `out` (emptied first: one vector
    /// serves every turn, nothing is allocated per turn). After a turn that read
    /// [`COALESCE_FROM`] packets or more, with coalescing on, the wait holds out for a
    /// batch first (the module's doc); a timer due within the window may then fire up to
    /// the window late.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        self.finish_trains();
        for p in &self.pools {
            p.publish();
        }
        self.arm();
        self.queued = 0;
        let hold = self
            .coalesce
            .filter(|_| self.last_reads >= COALESCE_FROM && timeout != Some(Duration::ZERO));
        let r = if !self.ring.completion().is_empty() {
            self.ring.submit()
        } else if let Some(us) = hold {
            // Half a pool's worth, or what came within the window; past it, the first
            // completion ends the wait, or `timeout` (without one, an hour: the general
            // timeout is what makes the kernel go on waiting after the window).
            let ts = types::Timespec::from(timeout.unwrap_or(Duration::from_secs(3600)));
            let args = types::SubmitArgs::new().min_wait_usec(us).timespec(&ts);
            let want = usize::from(self.pools[0].count / 2);
            self.coalesced += 1;
            self.ring.submitter().submit_with_args(want, &args)
        } else {
            match timeout {
                Some(t) => {
                    let ts = types::Timespec::from(t);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submit_and_wait(1),
            }
        };
        match r {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut done = std::mem::take(&mut self.completions);
        done.clear();
        done.extend(self.ring.completion());
        out.clear();
        for c in &done {
            if let Some(c) = self.decode(c) {
                out.push(c);
            }
        }
        self.completions = done;
        self.last_reads = out
            .iter()
            .filter(|c| matches!(c, Completion::Read { .. }))
            .count();
        Ok(())
    }

    fn decode(&mut self, c: &cqueue::Entry) -> Option<Completion> {
        let (ud, res, flags) = (c.user_data(), c.result(), c.flags());
        let (kind, gen) = (ud >> 48, (ud >> 32) as u16);
        let i = usize::from((ud >> 16) & 1 == 1);
        let side = Side::of_index(i);
        match kind {
            KIND_POLL => {
                self.poll_armed = false;
                Some(Completion::Poll)
            }
            KIND_WRITE => {
                self.pools[i].give(ud as u16);
                let to = if (ud >> 17) & 1 == 1 {
                    side.other()
                } else {
                    side
                };
                (res < 0).then_some(Completion::WriteFailed { to, err: -res })
            }
            _ => {
                let current = gen == self.gens[i] && self.fds[i].is_some();
                let bid = cqueue::buffer_select(flags);
                if !current {
                    // A read of a device since replaced: its buffer goes back unused.
                    if let Some(bid) = bid {
                        self.pools[i].give(bid);
                    }
                    return None;
                }
                if !cqueue::more(flags) {
                    self.rearm[i] = true;
                }
                match bid {
                    Some(bid) => Some(Completion::Read {
                        side,
                        bid,
                        len: res.max(0) as usize,
                    }),
                    // Out of buffers (they are all in writes): read again next turn.
                    None if res == -libc::ENOBUFS || res == -libc::EAGAIN || res >= 0 => None,
                    None => Some(Completion::ReadFailed { side, err: -res }),
                }
            }
        }
    }

    /// Buffer `bid` of `side`'s pool, in which a read put a packet (its offload header
    /// and the packet, from [`HEADROOM`] on). [`Uring::send`] counts places in it.
    pub fn buffer(&mut self, side: Side, bid: u16) -> &mut [u8] {
        self.pools[side.index()].buffer(bid)
    }

    /// Queues the packet of `len` bytes in buffer `bid` of `from`'s pool for port `to`,
    /// with offload header `off`, which goes at `at` just before it (if the ports have
    /// offloads). A UDP datagram may join a train of its flow instead, its buffer back in
    /// its pool at once, or start one, written when the turn ends.
    pub fn send(&mut self, from: Side, bid: u16, at: usize, len: usize, off: &Offload, to: Side) {
        let (i, o, hdr) = (from.index(), to.index(), self.hdr);
        if self.gro && self.fds[o].is_some() {
            let size = self.pools[i].size;
            let pkt = &self.pools[i].buffer(bid)[at + hdr..at + hdr + len];
            match Datagram::check(pkt, off) {
                Some(d) => {
                    if let Some(((hp, hb, hat), t)) = self.trains[o].find(pkt, d) {
                        let (head, src) = pair(&mut self.pools, (hp, hb), (i, bid));
                        t.push(&mut head[hat + hdr..], &src[at + hdr..at + hdr + len]);
                        self.pools[i].give(bid);
                        self.joined += 1;
                        return;
                    }
                    let t = Train::start(pkt, d, off, size - at - hdr);
                    if let Some(oldest) = self.trains[o].open((i, bid, at), t) {
                        self.write_train(to, oldest);
                    }
                    return;
                }
                None if gro::goes_after_trains(pkt) => self.finish_trains_to(to),
                None => {}
            }
        }
        if hdr > 0 {
            self.pools[i].buffer(bid)[at..at + hdr].copy_from_slice(&off.emit());
        }
        self.write(from, bid, at..at + hdr + len, to);
    }

    /// Datagrams written inside another's super-packet, since the start.
    pub fn joined(&self) -> u64 {
        self.joined
    }

    /// Finishes a train and queues its write.
    fn write_train(&mut self, to: Side, ((p, bid, at), t): ((usize, u16, usize), Train)) {
        let hdr = self.hdr;
        let buf = self.pools[p].buffer(bid);
        let off = t.finish(&mut buf[at + hdr..]);
        buf[at..at + hdr].copy_from_slice(&off.emit());
        self.write(Side::of_index(p), bid, at..at + hdr + t.bytes(), to);
    }

    fn finish_trains_to(&mut self, to: Side) {
        let o = to.index();
        if self.trains[o].is_empty() {
            return;
        }
        let mut open = std::mem::take(&mut self.trains[o]);
        for t in open.drain() {
            self.write_train(to, t);
        }
        self.trains[o] = open;
    }

    fn finish_trains(&mut self) {
        self.finish_trains_to(Side::Inside);
        self.finish_trains_to(Side::Outside);
    }

    /// Queues a write of `range` of buffer `bid` of `from`'s pool to port `to`; the
    /// buffer returns to its pool when the write is done.
    fn write(&mut self, from: Side, bid: u16, range: std::ops::Range<usize>, to: Side) {
        let i = from.index();
        let Some(fd) = self.fds[to.index()] else {
            self.pools[i].give(bid);
            return;
        };
        let buf = &self.pools[i].buffer(bid)[range];
        let crossed = u16::from(to != from);
        let e = opcode::Write::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
            .build()
            .user_data(user_data(KIND_WRITE, 0, i, bid) | u64::from(crossed) << 17);
        self.push(&e);
        self.queued += 1;
    }

    /// Gives buffer `bid` back to `side`'s pool unwritten.
    pub fn release(&mut self, side: Side, bid: u16) {
        self.pools[side.index()].give(bid);
    }

    /// Submits the queued writes now: before a packet is written another way, so that
    /// packets leave in the order they were made.
    pub fn submit(&mut self) {
        self.finish_trains();
        if self.queued > 0 {
            self.queued = 0;
            let _ = self.ring.submit();
        }
    }

    /// `side` lost its device: its read ends, and writes to it are dropped. Called
    /// before the device's descriptor is closed.
    pub fn detach(&mut self, side: Side) {
        let i = side.index();
        if let Some(fd) = self.fds[i].take() {
            self.cancel(types::CancelBuilder::fd(types::Fd(fd)).all());
        }
        self.gens[i] = self.gens[i].wrapping_add(1);
        // Trains for it are let go of (their buffers back in their pools).
        self.finish_trains_to(side);
    }

    /// Cancels the requests `what` selects and waits (a second at most) until the kernel
    /// has let go of them, and of the files they hold: a TUN device is free to be opened
    /// again only then.
    fn cancel(&mut self, what: types::CancelBuilder) {
        let _ = self.ring.submit();
        let limit = types::Timespec::new().sec(1);
        match self
            .ring
            .submitter()
            .register_sync_cancel(Some(limit), what)
        {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::warn!("io_uring: cancelling reads: {e}"),
        }
        if self.coalesce.is_some() {
            // With deferred task work, what completes the cancelled requests (and drops
            // their files) runs only when this thread waits: a wait that does not sleep.
            let now = types::Timespec::new();
            let args = types::SubmitArgs::new().timespec(&now);
            let _ = self.ring.submitter().submit_with_args(1, &args);
        }
    }

    /// `side` has a device again: read it.
    pub fn attach(&mut self, side: Side, fd: RawFd) {
        let i = side.index();
        self.fds[i] = Some(fd);
        self.gens[i] = self.gens[i].wrapping_add(1);
        self.rearm[i] = true;
    }
}

/// Buffer `head` of one pool whole, for writing, and buffer `src` of one (the same or the
/// other), for reading: two distinct buffers.
fn pair(pools: &mut [Pool; 2], head: (usize, u16), src: (usize, u16)) -> (&mut [u8], &[u8]) {
    let [a, b] = pools;
    match (head.0, src.0) {
        (0, 1) => (a.buffer(head.1), b.buffer(src.1)),
        (1, 0) => (b.buffer(head.1), a.buffer(src.1)),
        (p, _) => {
            let pool = if p == 0 { a } else { b };
            let size = pool.size;
            let (h, s) = (usize::from(head.1) * size, usize::from(src.1) * size);
            if h < s {
                let (x, y) = pool.mem.split_at_mut(s);
                (&mut x[h..h + size], &y[..size])
            } else {
                let (x, y) = pool.mem.split_at_mut(h);
                (&mut y[..size], &x[s..s + size])
            }
        }
    }
}

impl Drop for Uring {
    /// The reads hold the TUN files: they are let go of now, not later in a kernel
    /// worker, so that a restarted tunnat finds its devices free (a TUN device takes one
    /// reader) and a non-persistent device is gone when tunnat is.
    fn drop(&mut self) {
        self.cancel(types::CancelBuilder::any().all());
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let ud = user_data(KIND_WRITE, 7, 1, 513) | 1 << 17;
        assert_eq!(ud >> 48, KIND_WRITE);
        assert_eq!((ud >> 32) as u16, 7);
        assert_eq!((ud >> 16) & 1, 1);
        assert_eq!((ud >> 17) & 1, 1);
        assert_eq!(ud as u16, 513);
    }

    #[test]
    fn pools_are_bounded() {
        assert_eq!(buffer_size(10), 65566);
        assert_eq!(buffer_size(0), 65556);
        for n in [
            MIN_IO_BUFFERS,
            default_io_buffers(true),
            default_io_buffers(false),
            MAX_IO_BUFFERS,
        ] {
            assert!(n.is_power_of_two(), "a ring's entries are a power of two");
        }
        // A completion waits for each buffer of both pools at most, and the poll's: the
        // completion queue (twice the 256 entries of the submission queue) holds them all.
        assert!(2 * usize::from(MAX_IO_BUFFERS) < 512);
    }

    #[test]
    fn a_pool_hands_out_each_buffer_once() {
        let mut p = Pool::new(128, 4).unwrap();
        assert_eq!(p.tail, 4);
        for bid in 0..4 {
            let b = p.buffer(bid);
            assert_eq!(b.len(), 128);
        }
        p.give(2);
        assert_eq!(p.tail, 5);
        // SAFETY: entry 0 was overwritten by the fifth give (ring of 4).
        let e = unsafe { &*p.ring };
        assert_eq!(e.bid(), 2);
        assert_eq!(
            e.len() as usize,
            128 - HEADROOM,
            "reads start after the room"
        );
        assert_eq!(e.addr(), p.buffer(2)[HEADROOM..].as_ptr() as u64);
    }
}
