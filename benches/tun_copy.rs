//! The benchmark's floor: a bare TUN-to-TUN copy loop with no NAT, built from the same
//! pieces as tunnat (the same TUN opening in namespaces, the same mio loop, one packet per
//! read and write). Whatever tunnat costs above this is the price of its NAT work.
//!
//! With `--offload` it opens the TUNs as tunnat does by default (partial checksums, GSO
//! super-packets) and passes each packet's offload header through unchanged.
//!
//! With `--busy-poll USECS` (a lever of issue 18, tried here first): when both TUNs are
//! empty it keeps trying to read for up to USECS before sleeping in epoll, as NAPI's busy
//! polling does, so a packet arriving soon after costs no wakeup.
//!
//! With `--uring` (another lever of issue 18) it moves packets with io_uring instead of
//! read and write calls: one multishot read per TUN fills buffers from a provided-buffer
//! ring, and every packet read is written to the other TUN by a write queued in the same
//! ring. One `io_uring_enter` submits all the writes queued since the last and waits for
//! the next completions, so a busy loop moves many packets per system call, and a quiet
//! one makes one call per packet instead of four (wait, read, write, read again).
//!
//! With `--uring --coalesce-us USECS` (a third lever) each wait asks for a batch: it
//! returns at once if a completion is there, else waits for the first one, but a wait that
//! began less than USECS ago waits until then for more to join it (io_uring's
//! `min_wait_usec`, Linux 6.12), as a NIC's interrupt coalescing (`ethtool -C rx-usecs`)
//! does. A router idle longer than USECS adds nothing to a packet's latency.
//!
//! With `--uring --defer-taskrun` (a fourth) completions are processed only when the loop
//! waits (`IORING_SETUP_DEFER_TASKRUN`), never by interrupting it.
//!
//! `tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload] [--busy-poll USECS] [--uring [--coalesce-us USECS] [--defer-taskrun]]`;
//! prints `tun_copy: ready`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tunnat::port::{netns, Tun};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload] [--busy-poll USECS] [--uring [--coalesce-us USECS] [--defer-taskrun]]";
    if a.len() < 5 {
        anyhow::bail!(usage);
    }
    let (mut offload, mut busy, mut uring, mut coalesce, mut defer) =
        (false, Duration::ZERO, false, 0u32, false);
    let mut flags = a[5..].iter();
    while let Some(f) = flags.next() {
        match f.as_str() {
            "--offload" => offload = true,
            "--uring" => uring = true,
            "--defer-taskrun" => defer = true,
            "--coalesce-us" => {
                coalesce = flags
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!(usage))?;
            }
            "--busy-poll" => {
                let us: u64 = flags
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!(usage))?;
                busy = Duration::from_micros(us);
            }
            _ => anyhow::bail!(usage),
        }
    }
    let tuns = [
        Tun::open(&a[1], Some(&netns::resolve(&a[2])), offload)?,
        Tun::open(&a[3], Some(&netns::resolve(&a[4])), offload)?,
    ];
    if tuns[0].offloads() != offload || tuns[1].offloads() != offload {
        anyhow::bail!("the kernel refused TUN offloads");
    }
    if uring {
        eprintln!("tun_copy: ready");
        return uring::run(
            &tuns,
            if offload { 65536 + 64 } else { 9216 },
            coalesce,
            defer,
        );
    }
    let mut poll = Poll::new()?;
    for (i, t) in tuns.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&t.as_raw_fd()), Token(i), Interest::READABLE)?;
    }
    eprintln!("tun_copy: ready");
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; 65536];
    let mut readable = [true, true];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            readable[ev.token().0] = true;
        }
        loop {
            while readable.iter().any(|r| *r) {
                for i in 0..2 {
                    if !readable[i] {
                        continue;
                    }
                    for _ in 0..64 {
                        match tuns[i].recv(&mut buf) {
                            Ok((n, Ok(off))) => {
                                let _ = tuns[1 - i].send(&buf[..n], &off);
                            }
                            Ok((_, Err(_))) => {} // IPv6 GSO
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                readable[i] = false;
                                break;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            // Both empty: spin on them a while before sleeping (--busy-poll).
            if busy.is_zero() || !spin(&tuns, &mut buf, busy, &mut readable)? {
                break;
            }
        }
    }
}

/// Tries both TUNs until one has a packet (forwarded, and its TUN marked readable for
/// the loop to drain) or `busy` has passed; returns whether a packet came.
fn spin(
    tuns: &[Tun; 2],
    buf: &mut [u8],
    busy: Duration,
    readable: &mut [bool; 2],
) -> io::Result<bool> {
    let until = Instant::now() + busy;
    while Instant::now() < until {
        for i in 0..2 {
            match tuns[i].recv(buf) {
                Ok((n, Ok(off))) => {
                    let _ = tuns[1 - i].send(&buf[..n], &off);
                    readable[i] = true;
                    return Ok(true);
                }
                Ok((_, Err(_))) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        std::hint::spin_loop();
    }
    Ok(false)
}

/// The copy loop on io_uring (`--uring`).
mod uring {
    use std::alloc::{alloc_zeroed, Layout};
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU16, Ordering};

    use io_uring::{cqueue, opcode, types, IoUring};
    use tunnat::port::Tun;

    /// Buffers per TUN: how many packets of one direction can be in flight at once.
    const BUFS: u16 = 64;
    /// `user_data` of a TUN's multishot read is its index; a write's is this plus the
    /// reading TUN's index times `BUFS` plus the buffer's id.
    const WRITE: u64 = 1 << 32;

    /// One TUN's provided buffers: the ring the kernel takes them from, and the memory.
    struct Pool {
        ring: *mut types::BufRingEntry,
        mem: Vec<u8>,
        size: usize,
        tail: u16,
    }

    impl Pool {
        fn new(size: usize) -> Pool {
            // The ring must be page aligned; it lives as long as the process.
            let layout = Layout::from_size_align(BUFS as usize * 16, 4096).expect("layout");
            // SAFETY: a non-zero size; the memory is zeroed, a valid empty ring.
            let ring = unsafe { alloc_zeroed(layout) } as *mut types::BufRingEntry;
            assert!(!ring.is_null(), "out of memory");
            let mut p = Pool {
                ring,
                mem: vec![0; size * BUFS as usize],
                size,
                tail: 0,
            };
            for bid in 0..BUFS {
                p.give(bid);
            }
            p.publish();
            p
        }

        /// Puts buffer `bid` back at the ring's tail (seen by the kernel at `publish`).
        fn give(&mut self, bid: u16) {
            let addr = self.mem[bid as usize * self.size..].as_ptr() as u64;
            // SAFETY: the index is within the ring of BUFS entries (a power of two).
            let e = unsafe { &mut *self.ring.add((self.tail & (BUFS - 1)) as usize) };
            e.set_addr(addr);
            e.set_len(self.size as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
        }

        fn publish(&self) {
            // SAFETY: the tail field of the ring's first entry, shared with the kernel.
            let tail = unsafe { &*(types::BufRingEntry::tail(self.ring) as *const AtomicU16) };
            tail.store(self.tail, Ordering::Release);
        }

        fn buf(&self, bid: u16, len: usize) -> &[u8] {
            &self.mem[bid as usize * self.size..][..len]
        }
    }

    fn read(fd: i32, i: usize) -> io_uring::squeue::Entry {
        // Length 0: each read fills one whole provided buffer.
        opcode::ReadMulti::new(types::Fd(fd), 0, i as u16)
            .build()
            .user_data(i as u64)
    }

    pub fn run(tuns: &[Tun; 2], size: usize, coalesce_us: u32, defer: bool) -> anyhow::Result<()> {
        let fds = [tuns[0].as_raw_fd(), tuns[1].as_raw_fd()];
        let mut b = IoUring::builder();
        b.setup_single_issuer();
        if defer {
            // Completions run only when this thread waits: no interruption of the loop
            // while it works.
            b.setup_defer_taskrun();
        }
        let mut ring: IoUring = b.build(512)?;
        let mut pools = [Pool::new(size), Pool::new(size)];
        for (i, p) in pools.iter().enumerate() {
            // SAFETY: the ring memory outlives the io_uring (both live until exit).
            unsafe {
                ring.submitter()
                    .register_buf_ring_with_flags(p.ring as u64, BUFS, i as u16, 0)?
            };
        }
        // SAFETY: the reads take buffers only from the registered rings.
        unsafe {
            for (i, fd) in fds.iter().enumerate() {
                ring.submission().push(&read(*fd, i)).expect("room");
            }
        }
        let mut rearm = [false, false];
        loop {
            if coalesce_us == 0 || !ring.completion().is_empty() {
                ring.submit_and_wait(1)?;
            } else {
                // A batch: half the buffers' worth, or what came within the first
                // coalesce_us of the wait.
                let args = types::SubmitArgs::new().min_wait_usec(coalesce_us);
                match ring.submitter().submit_with_args(BUFS as usize / 2, &args) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let done: Vec<cqueue::Entry> = ring.completion().collect();
            let mut sq = ring.submission();
            for c in done {
                let (ud, res, flags) = (c.user_data(), c.result(), c.flags());
                if ud < WRITE {
                    let i = ud as usize;
                    if !cqueue::more(flags) {
                        rearm[i] = true; // out of buffers, or an error: read again
                    }
                    let Some(bid) = cqueue::buffer_select(flags) else {
                        if res < 0 && res != -libc::ENOBUFS && res != -libc::EAGAIN {
                            return Err(io::Error::from_raw_os_error(-res).into());
                        }
                        continue;
                    };
                    let b = pools[i].buf(bid, res.max(0) as usize);
                    let w = opcode::Write::new(types::Fd(fds[1 - i]), b.as_ptr(), b.len() as u32)
                        .build()
                        .user_data(WRITE + (i as u64) * BUFS as u64 + bid as u64);
                    if sq.is_full() {
                        sq.sync();
                        drop(sq);
                        ring.submit()?;
                        sq = ring.submission();
                    }
                    // SAFETY: the buffer stays untouched until this write completes.
                    unsafe { sq.push(&w).expect("room") };
                } else {
                    // A write done (or failed, as a full TUN drops): its buffer back.
                    let k = ud - WRITE;
                    let (i, bid) = ((k / BUFS as u64) as usize, (k % BUFS as u64) as u16);
                    pools[i].give(bid);
                }
            }
            for (i, p) in pools.iter().enumerate() {
                p.publish();
                if rearm[i] {
                    rearm[i] = false;
                    // SAFETY: as above.
                    unsafe { sq.push(&read(fds[i], i)).expect("room") };
                }
            }
        }
    }
}
