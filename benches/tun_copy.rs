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
//! With `--uring --coalesce-us USECS` (a third lever) a wait after a turn that read eight
//! packets or more asks for a batch: it returns at once if a completion is there, else
//! waits until USECS after it began for more to join the first (io_uring's
//! `min_wait_usec`, Linux 6.12), as a NIC's interrupt coalescing (`ethtool -C rx-usecs`)
//! does; past USECS, the first completion ends it. Packets that come alone or in a few
//! (ping, a handshake, a TCP flow's super-packets and ACKs) are not held back. With
//! `--defer-taskrun` too, the kernel does not wake the loop for each packet while it
//! holds out (its task work is deferred to the wait), so a batch costs one wakeup.
//!
//! With `--uring --defer-taskrun` (a fourth) completions are processed only when the loop
//! waits (`IORING_SETUP_DEFER_TASKRUN`), never by interrupting it.
//!
//! With `--uring --udp-gro` (a sixth: receive offload in user space) consecutive UDP
//! datagrams of one flow in a batch are joined into one UDP GSO super-packet
//! (`tunnat::wire::gro`) and written with one write, which the kernel splits again. Needs
//! `--offload`.
//!
//! With `--uring --fixed` (a seventh: registered buffers) both pools are registered with
//! the ring as fixed buffers (`IORING_REGISTER_BUFFERS`, pinned once) and each packet is
//! written with `WRITE_FIXED` from them, so the kernel copies from pages it already holds
//! instead of looking up the user's pages each write.
//!
//! With `--uring --bufs N` each TUN's pool has N buffers (a power of two, default 64):
//! how many packets one turn can read from it before its read runs out of buffers.
//!
//! With `--queues N` (a fifth: multi-queue TUN) it opens N queues of each TUN
//! (`IFF_MULTI_QUEUE`; the devices must have been made `multi_queue`) and runs N threads,
//! thread i copying between queue i of one TUN and queue i of the other with a read and a
//! write call per packet, or on an io_uring of its own with `--uring`. The kernel spreads the flows it writes into a TUN over its
//! queues by their hash, so N flows can be moved by N cores at once.
//!
//! `tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload] [--busy-poll USECS] [--uring [--coalesce-us USECS] [--defer-taskrun] [--udp-gro] [--fixed] [--bufs N]] [--queues N]`;
//! prints `tun_copy: ready`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tunnat::port::{netns, Tun};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload] [--busy-poll USECS] [--uring [--coalesce-us USECS] [--defer-taskrun] [--udp-gro] [--fixed] [--bufs N]] [--queues N]";
    if a.len() < 5 {
        anyhow::bail!(usage);
    }
    let (mut offload, mut busy, mut uring, mut coalesce, mut defer, mut queues) =
        (false, Duration::ZERO, false, 0u32, false, 1usize);
    let (mut gro, mut fixed, mut bufs) = (false, false, uring::BUFS);
    let mut flags = a[5..].iter();
    while let Some(f) = flags.next() {
        match f.as_str() {
            "--offload" => offload = true,
            "--uring" => uring = true,
            "--defer-taskrun" => defer = true,
            "--udp-gro" => gro = true,
            "--fixed" => fixed = true,
            "--queues" => {
                queues = flags
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=16).contains(n))
                    .ok_or_else(|| anyhow::anyhow!(usage))?;
            }
            "--bufs" => {
                bufs = flags
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n: &u16| n.is_power_of_two() && *n <= uring::MAX_BUFS)
                    .ok_or_else(|| anyhow::anyhow!(usage))?;
            }
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
    if queues > 1 {
        return multiqueue::run(
            [
                (&a[1], netns::resolve(&a[2])),
                (&a[3], netns::resolve(&a[4])),
            ],
            queues,
            offload,
            uring,
        );
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
        let levers = uring::Levers {
            coalesce_us: coalesce,
            defer,
            gro: gro && offload,
            fixed,
            bufs,
        };
        return uring::run(&tuns, if offload { 65536 + 64 } else { 9216 }, levers);
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

/// The copy loop on N queues of each TUN, a thread per pair (`--queues N`).
mod multiqueue {
    use std::fs::OpenOptions;
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    use tunnat::port::netns;

    /// `TUNSETIFF` and the flags of a multi-queue TUN (linux/if_tun.h).
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TUN: libc::c_short = 0x0001;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
    const IFF_VNET_HDR: libc::c_short = 0x4000;

    /// `struct ifreq` with the flags member of its union.
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _rest: [u8; 22],
    }

    fn ifreq(name: &str, flags: libc::c_short) -> IfReq {
        let mut r = IfReq {
            name: [0; 16],
            flags,
            _rest: [0; 22],
        };
        let n = name.len().min(15);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }

    fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(())
    }

    /// Opens `n` queues of TUN `name` (in the current namespace), non-blocking, and sets
    /// the device up.
    fn open(name: &str, n: usize, offload: bool) -> io::Result<Vec<OwnedFd>> {
        let mut v = Vec::new();
        for _ in 0..n {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("/dev/net/tun")?;
            let vnet = if offload { IFF_VNET_HDR } else { 0 };
            let mut r = ifreq(name, IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | vnet);
            // SAFETY: TUNSETIFF reads and writes an ifreq, which `r` is.
            check(
                unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &mut r) },
                "TUNSETIFF (is the device multi_queue?)",
            )?;
            if offload {
                tunnat::port::set_offload(f.as_raw_fd())?;
            }
            v.push(OwnedFd::from(f));
        }
        // SAFETY: a socket for the interface ioctls, closed below; `r` is an ifreq.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            check(s, "socket")?;
            let mut r = ifreq(name, 0);
            let got = libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut r);
            r.flags |= libc::IFF_UP as libc::c_short;
            let set = libc::ioctl(s, libc::SIOCSIFFLAGS as _, &mut r);
            libc::close(s);
            check(got.min(set), "setting the device up")?;
        }
        Ok(v)
    }

    /// Copies between `a` and `b` until an error: each readable one drained, 64 packets
    /// at a time, into the other.
    fn copy(a: OwnedFd, b: OwnedFd) -> io::Result<()> {
        let fds = [a.as_raw_fd(), b.as_raw_fd()];
        let mut buf = vec![0u8; 65536 + 64];
        loop {
            let mut p = fds.map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: two pollfds, as passed.
            if unsafe { libc::poll(p.as_mut_ptr(), 2, -1) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut more = [p[0].revents != 0, p[1].revents != 0];
            while more[0] || more[1] {
                for i in 0..2 {
                    for _ in 0..64 {
                        if !more[i] {
                            break;
                        }
                        // SAFETY: reads into `buf`, within its length.
                        let n = unsafe { libc::read(fds[i], buf.as_mut_ptr().cast(), buf.len()) };
                        if n < 0 {
                            more[i] = false;
                            break;
                        }
                        // SAFETY: writes the `n` bytes just read.
                        unsafe { libc::write(fds[1 - i], buf.as_ptr().cast(), n as usize) };
                    }
                }
            }
        }
    }

    pub fn run(
        tuns: [(&String, PathBuf); 2],
        n: usize,
        offload: bool,
        uring: bool,
    ) -> anyhow::Result<()> {
        let mut queues = Vec::new();
        for (name, ns) in &tuns {
            queues.push(netns::within(ns, || Ok(open(name, n, offload)?))?);
        }
        let outside = queues.pop().unwrap_or_default();
        let inside = queues.pop().unwrap_or_default();
        let workers: Vec<_> = inside
            .into_iter()
            .zip(outside)
            .map(|(a, b)| {
                std::thread::spawn(move || -> anyhow::Result<()> {
                    if uring {
                        let size = if offload { 65536 + 64 } else { 9216 };
                        let r = super::uring::run_fds(
                            [a.as_raw_fd(), b.as_raw_fd()],
                            size,
                            super::uring::Levers::default(),
                        );
                        drop((a, b));
                        return r;
                    }
                    Ok(copy(a, b)?)
                })
            })
            .collect();
        eprintln!("tun_copy: ready ({n} queues, a thread each)");
        for w in workers {
            if let Ok(Err(e)) = w.join() {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The copy loop on io_uring (`--uring`).
mod uring {
    use std::alloc::{alloc_zeroed, Layout};
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU16, Ordering};

    use io_uring::{cqueue, opcode, types, IoUring};
    use tunnat::port::Tun;
    use tunnat::wire::gro::{Datagram, Train, Trains};
    use tunnat::wire::offload::{Offload, VNET_HDR_LEN};

    /// Buffers per TUN by default (`--bufs`): how many packets of one direction can be
    /// in flight at once.
    pub const BUFS: u16 = 64;
    /// The most buffers a TUN may have (`--bufs`).
    pub const MAX_BUFS: u16 = 1024;
    /// `user_data` of a TUN's multishot read is its index; a write's is this plus the
    /// reading TUN's index times `MAX_BUFS` plus the buffer's id.
    const WRITE: u64 = 1 << 32;

    /// One TUN's provided buffers: the ring the kernel takes them from, and the memory.
    struct Pool {
        ring: *mut types::BufRingEntry,
        mem: Vec<u8>,
        size: usize,
        count: u16,
        tail: u16,
    }

    impl Pool {
        fn new(size: usize, count: u16) -> Pool {
            // The ring must be page aligned; it lives as long as the process.
            let layout = Layout::from_size_align(count as usize * 16, 4096).expect("layout");
            // SAFETY: a non-zero size; the memory is zeroed, a valid empty ring.
            let ring = unsafe { alloc_zeroed(layout) } as *mut types::BufRingEntry;
            assert!(!ring.is_null(), "out of memory");
            let mut p = Pool {
                ring,
                mem: vec![0; size * count as usize],
                size,
                count,
                tail: 0,
            };
            for bid in 0..count {
                p.give(bid);
            }
            p.publish();
            p
        }

        /// Puts buffer `bid` back at the ring's tail (seen by the kernel at `publish`).
        fn give(&mut self, bid: u16) {
            let addr = self.mem[bid as usize * self.size..].as_ptr() as u64;
            // SAFETY: the index is within the ring of `count` entries (a power of two).
            let e = unsafe { &mut *self.ring.add((self.tail & (self.count - 1)) as usize) };
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

        /// Buffer `head` whole, and the first `len` bytes of another, `bid`.
        fn two(&mut self, head: u16, bid: u16, len: usize) -> (&mut [u8], &[u8]) {
            let size = self.size;
            let (h, b) = (head as usize * size, bid as usize * size);
            if h < b {
                let (x, y) = self.mem.split_at_mut(b);
                (&mut x[h..h + size], &y[..len])
            } else {
                let (x, y) = self.mem.split_at_mut(h);
                (&mut y[..size], &x[b..b + len])
            }
        }
    }

    /// Bytes of offload header before each packet (--udp-gro needs offloads).
    const H: usize = VNET_HDR_LEN;

    impl Pool {
        /// Finishes the train in buffer `head`, read from TUN `i`: what to write.
        fn finish(&mut self, i: usize, (head, t): (u16, Train)) -> (usize, u16, usize) {
            let size = self.size;
            let b = &mut self.mem[head as usize * size..][..size];
            let off = t.finish(&mut b[H..]);
            b[..H].copy_from_slice(&off.emit());
            (i, head, H + t.bytes())
        }
    }

    /// A write of `b`, in buffer `bid` of TUN `i`'s pool, to `fd`; from fixed buffer `i`
    /// (the pool, registered whole) with `fixed`.
    fn write(fd: i32, b: &[u8], i: usize, bid: u16, fixed: bool) -> io_uring::squeue::Entry {
        let e = if fixed {
            opcode::WriteFixed::new(types::Fd(fd), b.as_ptr(), b.len() as u32, i as u16).build()
        } else {
            opcode::Write::new(types::Fd(fd), b.as_ptr(), b.len() as u32).build()
        };
        e.user_data(WRITE + (i as u64) * MAX_BUFS as u64 + bid as u64)
    }

    fn read(fd: i32, i: usize) -> io_uring::squeue::Entry {
        // Length 0: each read fills one whole provided buffer.
        opcode::ReadMulti::new(types::Fd(fd), 0, i as u16)
            .build()
            .user_data(i as u64)
    }

    /// The io_uring loop's levers (`--coalesce-us`, `--defer-taskrun`, `--udp-gro`,
    /// `--fixed`, `--bufs`).
    #[derive(Debug, Clone, Copy)]
    pub struct Levers {
        pub coalesce_us: u32,
        pub defer: bool,
        pub gro: bool,
        pub fixed: bool,
        pub bufs: u16,
    }

    impl Default for Levers {
        fn default() -> Levers {
            Levers {
                coalesce_us: 0,
                defer: false,
                gro: false,
                fixed: false,
                bufs: BUFS,
            }
        }
    }

    pub fn run(tuns: &[Tun; 2], size: usize, levers: Levers) -> anyhow::Result<()> {
        run_fds([tuns[0].as_raw_fd(), tuns[1].as_raw_fd()], size, levers)
    }

    /// [`run`] on two descriptors (queues of multi-queue TUNs, `--queues N --uring`).
    pub fn run_fds(
        fds: [std::os::fd::RawFd; 2],
        size: usize,
        levers: Levers,
    ) -> anyhow::Result<()> {
        let Levers {
            coalesce_us,
            defer,
            gro,
            fixed,
            bufs,
        } = levers;
        let mut b = IoUring::builder();
        b.setup_single_issuer();
        if defer {
            // Completions run only when this thread waits: no interruption of the loop
            // while it works.
            b.setup_defer_taskrun();
        }
        let mut ring: IoUring = b.build(512)?;
        let mut pools = [Pool::new(size, bufs), Pool::new(size, bufs)];
        for (i, p) in pools.iter().enumerate() {
            // SAFETY: the ring memory outlives the io_uring (both live until exit).
            unsafe {
                ring.submitter()
                    .register_buf_ring_with_flags(p.ring as u64, bufs, i as u16, 0)?
            };
        }
        if fixed {
            let iov: Vec<libc::iovec> = pools
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.mem.as_ptr() as *mut libc::c_void,
                    iov_len: p.mem.len(),
                })
                .collect();
            // SAFETY: the pools' memory lives until exit, as long as the ring.
            unsafe { ring.submitter().register_buffers(&iov)? };
        }
        // SAFETY: the reads take buffers only from the registered rings.
        unsafe {
            for (i, fd) in fds.iter().enumerate() {
                ring.submission().push(&read(*fd, i)).expect("room");
            }
        }
        let mut rearm = [false, false];
        // Per reading TUN, the trains of UDP datagrams being joined (--udp-gro), each in
        // the buffer of its first datagram.
        let mut trains: [Trains<u16>; 2] = Default::default();
        // The writes of a turn: reading TUN, buffer, bytes.
        let mut writes: Vec<(usize, u16, usize)> = Vec::with_capacity(2 * bufs as usize);
        // Packets read in the last turn: a wait coalesces (--coalesce-us) only after a
        // turn that read COALESCE_FROM or more, a stream of packets, so that one that
        // comes alone (ping, a handshake) or in a few (a TCP flow's segments and ACKs) is
        // not held back.
        const COALESCE_FROM: usize = 8;
        let mut last_reads = 0usize;
        loop {
            if coalesce_us == 0 || !ring.completion().is_empty() || last_reads < COALESCE_FROM {
                ring.submit_and_wait(1)?;
            } else {
                // A batch: half the buffers' worth, or what came within the first
                // coalesce_us of the wait; after that, the first completion ends the wait
                // (the general timeout is what makes io_uring go on sleeping when nothing
                // came within coalesce_us, instead of returning at once).
                let ts = types::Timespec::new().sec(3600);
                let args = types::SubmitArgs::new()
                    .min_wait_usec(coalesce_us)
                    .timespec(&ts);
                match ring.submitter().submit_with_args(bufs as usize / 2, &args) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let done: Vec<cqueue::Entry> = ring.completion().collect();
            last_reads = done.iter().filter(|c| c.user_data() < WRITE).count();
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
                    let len = res.max(0) as usize;
                    if !gro || len <= H {
                        writes.push((i, bid, len));
                        continue;
                    }
                    let Ok(off) = Offload::parse(pools[i].buf(bid, H).try_into().expect("H"))
                    else {
                        writes.push((i, bid, len));
                        continue;
                    };
                    let pkt = &pools[i].buf(bid, len)[H..];
                    let Some(d) = Datagram::check(pkt, &off) else {
                        writes.push((i, bid, len));
                        continue;
                    };
                    if let Some((head, t)) = trains[i].find(pkt, d) {
                        let (h, b) = pools[i].two(head, bid, len);
                        t.push(&mut h[H..], &b[H..]);
                        pools[i].give(bid);
                        continue;
                    }
                    let t = Train::start(pkt, d, &off, pools[i].size - H);
                    if let Some(old) = trains[i].open(bid, t) {
                        writes.push(pools[i].finish(i, old));
                    }
                } else {
                    // A write done (or failed, as a full TUN drops): its buffer back.
                    let k = ud - WRITE;
                    let (i, bid) = ((k / MAX_BUFS as u64) as usize, (k % MAX_BUFS as u64) as u16);
                    pools[i].give(bid);
                }
            }
            for i in 0..2 {
                for tr in trains[i].drain() {
                    writes.push(pools[i].finish(i, tr));
                }
            }
            let mut sq = ring.submission();
            for (i, bid, len) in writes.drain(..) {
                let w = write(fds[1 - i], pools[i].buf(bid, len), i, bid, fixed);
                if sq.is_full() {
                    sq.sync();
                    drop(sq);
                    ring.submit()?;
                    sq = ring.submission();
                }
                // SAFETY: the buffer stays untouched until this write completes.
                unsafe { sq.push(&w).expect("room") };
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
