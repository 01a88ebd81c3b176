//! The driver: the only code that does I/O or reads the clock. It opens the two TUN
//! devices, runs one mio `Poll` over them, the signal pipe and the control socket, and
//! moves packets between the file descriptors and the sans-I/O [`Router`] core:
//!
//! 1. read a packet from a port (at most [`BATCH`] from one port before the other's turn);
//! 2. [`Router::handle`] it; write the packet it gives back, then everything
//!    [`Router::poll_transmit`] has;
//! 3. sleep until the next event or [`Router::poll_timeout`], and call
//!    [`Router::handle_timeout`] when that comes.
//!
//! Where the kernel has io_uring (and `--no-io-uring` is not given), steps 1 and 2 go
//! through [`crate::port::uring`]: the packets come in batches from multishot reads, each
//! is handled in its own buffer, and the writes are submitted together with the next
//! wait. The mio `Poll` then holds only the signals and the control socket, and the ring
//! watches it. Otherwise each packet is one read and one write call.
//!
//! The observers ([`crate::port::tracer`], [`crate::port::pcap`]) see every packet read and
//! written here; the core knows nothing of them.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::core::{Router, TableCursor, SIDES};
use super::state::RouterState;
use super::statefile;
use crate::config::Config;
use crate::control::proto::{Request, VERSION};
use crate::control::server::{Access, ControlServer, Peer, Reply, Responder};
use crate::nat::{Instant, Prefetch, Side, HEADROOM};
use crate::options::Sources;
use crate::port::pcap::PcapCapture;
use crate::port::tracer::stdout_tracer;
use crate::port::uring::{default_io_buffers, Completion, Uring};
use crate::port::{Crossing, Observer, Tun};
use crate::wire::offload::{Offload, VNET_HDR_LEN};

/// Packets read from one port before looking at the other.
pub const BATCH: usize = 64;

const SIGNALS: Token = Token(2);
const CONTROL: Token = Token(3);
/// Tokens of control clients: `CLIENTS + slot`.
const CLIENTS: usize = 16;

/// How often a lost port's device is looked for (`--persist`).
const REATTACH_EVERY: Duration = Duration::from_secs(1);

/// The core's clock starts this far from zero, so that a session restored from a state
/// file can be given a last packet before this process started.
const CLOCK_BASE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The two TUN devices and the observers that see every packet crossing them.
struct Ports {
    /// `None` while a lost port's device is awaited (`--persist`).
    tuns: [Option<Tun>; 2],
    observers: Vec<Box<dyn Observer>>,
    /// Set when a read or write says a device is gone: the loop then stops with this
    /// error, or with `--persist` lets the port go and waits for the device.
    lost: Option<(Side, anyhow::Error)>,
}

/// The error that ends the router when a port's device is gone.
fn port_lost(side: Side, name: &str, doing: &str, e: io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{} port lost: {doing} TUN '{name}' failed ({e}); the device was deleted or its namespace is gone",
        side.name()
    )
}

/// Does a write error mean the device itself is gone (rather than one bad packet)?
fn device_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::ENODEV | libc::ENXIO | libc::EIO | libc::EBADF)
    )
}

impl Ports {
    /// Marks port `side` lost if `e`, from `doing` its TUN `name`, says the device is gone
    /// (the first loss is the one reported).
    fn lost_if_gone(&mut self, side: Side, name: &str, doing: &str, e: io::Error) {
        if device_gone(&e) && self.lost.is_none() {
            self.lost = Some((side, port_lost(side, name, doing, e)));
        }
    }

    /// Writes a packet; false if the device refused it.
    fn send(&mut self, side: Side, pkt: &[u8], off: &Offload) -> bool {
        let Some(tun) = &self.tuns[side.index()] else {
            return false;
        };
        for o in &mut self.observers {
            o.packet(Crossing::Written, side, tun.name(), pkt);
        }
        match tun.send(pkt, off) {
            Ok(_) => true,
            Err(e) => {
                let name = tun.name().to_string();
                log::debug!("writing TUN '{name}': {e}");
                self.lost_if_gone(side, &name, "writing", e);
                false
            }
        }
    }
}

/// The driver's state: devices, event loop, signals, control socket, clock, and the core.
pub struct Driver {
    core: Router,
    sources: Sources,
    ports: Ports,
    control: Option<ControlServer<TableCursor>>,
    poll: Poll,
    signals: Signals,
    /// The one clock: the core's time is milliseconds since this, plus [`CLOCK_BASE`].
    epoch: std::time::Instant,
    buf: Vec<u8>,
    /// Ports that may have packets waiting.
    readable: [bool; 2],
    /// When to look again for a lost port's device (`--persist`).
    reattach_at: Option<std::time::Instant>,
    /// The ports' io_uring, if the kernel has it: then the TUNs are not in `poll`.
    uring: Option<Uring>,
    /// Bytes of offload header before each packet read and written.
    hdr: usize,
}

/// Opens both ports and runs the router until SIGINT or SIGTERM. `sources` is where
/// `cfg` came from, read again on SIGHUP or `tunnat reload`.
pub fn run(cfg: Config, sources: Sources) -> Result<()> {
    let open = |offload: bool| -> Result<(Tun, Tun)> {
        let inside = Tun::open(&cfg.inside.tun, cfg.inside.netns.as_deref(), offload)
            .with_context(|| format!("inside port (--inside-tun {})", cfg.inside.tun))?;
        let outside = Tun::open(&cfg.outside.tun, cfg.outside.netns.as_deref(), offload)
            .with_context(|| format!("outside port (--outside-tun {})", cfg.outside.tun))?;
        Ok((inside, outside))
    };
    let (mut inside, mut outside) = open(cfg.offload)?;
    if inside.offloads() != outside.offloads() {
        // A super-packet read on one port must be written whole on the other.
        log::warn!("offloads on one port only: opening both without");
        drop((inside, outside));
        (inside, outside) = open(false)?;
    }
    let mut observers: Vec<Box<dyn Observer>> = Vec::new();
    if let Some(dir) = &cfg.pcap_dir {
        observers.push(Box::new(PcapCapture::create(dir)?));
    }
    if let Some(dir) = &cfg.pcap_pair {
        observers.push(Box::new(crate::port::pcap_pair::PcapPair::create(dir)?));
    }
    if cfg.trace {
        observers.push(Box::new(stdout_tracer(cfg.trace_filters.clone())));
    }
    if cfg.persist {
        inside.make_persistent()?;
        outside.make_persistent()?;
    }
    let state_file = cfg.state_file.clone();
    let persist = cfg.persist;
    let mut driver = Driver::new(cfg, sources, [inside, outside], observers)?;
    if let Some(path) = &state_file {
        driver.restore(path)?;
    }
    eprintln!("tunnat: ready");
    notify(&format!(
        "READY=1\nSTATUS=forwarding between {} and {}",
        driver.port_config(Side::Inside).tun,
        driver.port_config(Side::Outside).tun
    ));
    let result = driver.run();
    notify("STOPPING=1");
    if let Some(path) = &state_file {
        let now = driver.now();
        let saved = driver.core.save_state(now, unix_ms());
        match statefile::write(path, &saved.encode()) {
            Ok(()) => log::info!(
                "state saved to {}: {} session(s), {} port forward(s) added at run time",
                path.display(),
                saved.nat.sessions.len(),
                saved.dnat.len()
            ),
            Err(e) if result.is_ok() => return Err(e),
            Err(e) => log::error!("{e:#}"),
        }
    }
    if persist {
        log::info!(
            "the TUN devices stay (--persist); 'ip link del NAME' in their namespaces removes them"
        );
    }
    result
}

/// Tells systemd (a `Type=notify` service) how the router is, as `sd_notify(3)` does:
/// one datagram to `$NOTIFY_SOCKET`, a path or, with a leading `@`, an abstract name.
/// Without the variable, nothing; a failure is logged and otherwise ignored.
fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let send = || -> io::Result<()> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let bytes = path.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(std::path::Path::new(&path))?,
        };
        UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    };
    if let Err(e) = send() {
        log::warn!("telling systemd ({}): {e}", path.to_string_lossy());
    }
}

/// Milliseconds since the Unix epoch, by the wall clock (the state file's time).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Driver {
    fn new(
        cfg: Config,
        sources: Sources,
        tuns: [Tun; 2],
        observers: Vec<Box<dyn Observer>>,
    ) -> Result<Driver> {
        let epoch = std::time::Instant::now();
        let start = Instant::ZERO + CLOCK_BASE;
        let poll = Poll::new().context("creating the event loop")?;
        if let Some(path) = &cfg.state_file {
            statefile::check_dir(path)?;
        }
        let hdr = if tuns[0].offloads() { VNET_HDR_LEN } else { 0 };
        let uring = match cfg.io_uring {
            true => {
                let fds = [tuns[0].as_raw_fd(), tuns[1].as_raw_fd()];
                let uso = tuns.iter().all(Tun::udp_segmentation);
                let buffers = cfg.io_buffers.unwrap_or(default_io_buffers(hdr > 0));
                if cfg.udp_gro && hdr > 0 && !uso {
                    log::info!("the TUNs take no UDP segmentation (Linux 6.2 and later): UDP datagrams are written one by one");
                }
                match Uring::new(
                    fds,
                    hdr,
                    cfg.udp_gro && uso,
                    poll.as_raw_fd(),
                    cfg.coalesce_us,
                    buffers,
                ) {
                    Ok(u) => {
                        log::info!(
                            "packets move by io_uring: a multishot read per port into {buffers} buffers, writes in batches"
                        );
                        match (cfg.coalesce_us, u.coalescing()) {
                            (0, _) => {}
                            (_, Some(us)) => log::info!("under load, a batch gathers for up to {us} µs before tunnat wakes (--coalesce-us)"),
                            (_, None) => log::info!("this kernel's io_uring cannot coalesce (Linux 6.12 and later): tunnat wakes for every packet"),
                        }
                        Some(u)
                    }
                    Err(e) => {
                        log::warn!("no io_uring ({e}): one read or write call per packet");
                        None
                    }
                }
            }
            false => {
                log::info!("packets move by read and write calls, one each (--no-io-uring)");
                None
            }
        };
        if uring.is_none() {
            for (i, t) in tuns.iter().enumerate() {
                poll.registry()
                    .register(&mut SourceFd(&t.as_raw_fd()), Token(i), Interest::READABLE)
                    .with_context(|| format!("registering TUN '{}'", t.name()))?;
            }
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("signal handlers")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context("registering signals")?;
        let control = match &cfg.control {
            Some(p) => Some(ControlServer::bind(
                p,
                cfg.control_group,
                poll.registry(),
                CONTROL,
                CLIENTS,
            )?),
            None => None,
        };
        log_banner(&cfg, &tuns);
        // std's RandomState keys come from the OS's random source.
        let seed = cfg.seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        });
        Ok(Driver {
            core: Router::new(cfg, start, seed),
            sources,
            ports: Ports {
                tuns: tuns.map(Some),
                observers,
                lost: None,
            },
            control,
            poll,
            signals,
            epoch,
            buf: vec![0u8; HEADROOM + 65536],
            readable: [true, true],
            reattach_at: None,
            uring,
            hdr,
        })
    }

    fn now(&self) -> Instant {
        Instant::ZERO + CLOCK_BASE + self.epoch.elapsed()
    }

    /// Carries on from the state file at `path`, if there is one, then removes it (a
    /// state is used once: an older one must not come back after a crash). Any problem
    /// with it is an error: the router does not start half-restored.
    fn restore(&mut self, path: &std::path::Path) -> Result<()> {
        let max = self.core.config().limits.max_sessions;
        let Some(bytes) = statefile::read(path, max)? else {
            log::info!(
                "no state file at {} yet: starting with an empty table",
                path.display()
            );
            return Ok(());
        };
        let named = |e: String| anyhow::anyhow!("--state-file {}: {e}", path.display());
        let state = RouterState::decode(&bytes, max).map_err(named)?;
        let now = self.now();
        let msg = self
            .core
            .restore_state(state, now, unix_ms())
            .map_err(|e| named(format!("{e:#}")))?;
        log::info!("state restored from {}: {msg}", path.display());
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("could not remove {} after reading it: {e}", path.display());
        }
        // Restored rules and sessions change the timers.
        self.flush(now);
        Ok(())
    }

    /// Runs until a termination signal, or until a port is lost (an error naming it).
    ///
    /// Fair to every source: each turn reads at most [`BATCH`] packets from each port,
    /// then looks at the other events (signals, control clients) and the timers before
    /// the next batch, without sleeping while a port still has packets. A flood on one
    /// port cannot starve the other port, the control socket or the timers.
    pub fn run(&mut self) -> Result<()> {
        if self.uring.is_some() {
            return self.run_uring();
        }
        let mut events = Events::with_capacity(64);
        loop {
            let pending = self.control.as_ref().is_some_and(|c| c.has_pending());
            let timeout = if pending || self.readable.iter().any(|r| *r) {
                Some(Duration::ZERO)
            } else {
                self.timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("waiting for packets");
            }
            if self.events(&events) {
                return Ok(());
            }
            let read = self.core.packets_read();
            for (i, side) in SIDES.into_iter().enumerate() {
                if self.readable[i] {
                    self.readable[i] = self.drain(side);
                }
            }
            if self.core.packets_read() != read {
                self.core.count_batch();
            }
            self.turn_end(pending)?;
        }
    }

    /// Handles the mio events; true to stop (a termination signal).
    fn events(&mut self, events: &Events) -> bool {
        for ev in events.iter() {
            match ev.token() {
                Token(i) if i < 2 => self.readable[i] = true,
                SIGNALS => {
                    if self.signals() {
                        return true;
                    }
                }
                t => self.control_event(t),
            }
        }
        false
    }

    /// What every turn ends with: waiting control clients, timers, a lost port (an error
    /// that ends the loop, unless `--persist`).
    fn turn_end(&mut self, pending: bool) -> Result<()> {
        if pending {
            self.with_control(|c, registry, r| c.serve_pending(registry, r));
        }
        self.timers();
        if let Some((side, e)) = self.ports.lost.take() {
            if !self.core.config().persist {
                return Err(e);
            }
            self.detach(side, e);
        }
        Ok(())
    }

    /// [`Driver::run`] on io_uring: one wait per turn for packets, the mio `Poll` and
    /// the timers alike. A port's turn is bounded by its buffers ([`crate::port::uring`]).
    fn run_uring(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(64);
        let mut done = Vec::with_capacity(256);
        loop {
            let pending = self.control.as_ref().is_some_and(|c| c.has_pending());
            let timeout = if pending {
                Some(Duration::ZERO)
            } else {
                self.timeout()
            };
            let Some(u) = self.uring.as_mut() else {
                return Ok(());
            };
            u.wait(timeout, &mut done).context("waiting for packets")?;
            // One clock reading serves the whole batch: the core counts in milliseconds,
            // and a batch takes microseconds.
            let now = self.now();
            if done.iter().any(|c| matches!(c, Completion::Read { .. })) {
                self.core.count_batch();
            }
            if done.len() > 1 && self.core.wants_prefetch() {
                self.prefetch(&done);
            }
            let mut polled = false;
            for c in done.drain(..) {
                match c {
                    Completion::Read { side, bid, len } => self.handle_buffer(side, bid, len, now),
                    Completion::ReadFailed { side, err } => {
                        self.core.count_read_error();
                        let name = self.port_config(side).tun.clone();
                        let e = io::Error::from_raw_os_error(err);
                        self.ports.lost_if_gone(side, &name, "reading", e);
                    }
                    Completion::WriteFailed { to, err } => {
                        self.core.count_write_error();
                        let name = self.port_config(to).tun.clone();
                        let e = io::Error::from_raw_os_error(err);
                        log::debug!("writing TUN '{name}': {e}");
                        self.ports.lost_if_gone(to, &name, "writing", e);
                    }
                    Completion::Poll => polled = true,
                }
            }
            if let Some(u) = &self.uring {
                self.core.set_uring_counts(u.joined(), u.coalesced());
            }
            if polled {
                match self.poll.poll(&mut events, Some(Duration::ZERO)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("waiting for packets"),
                }
                if self.events(&events) {
                    return Ok(());
                }
            }
            self.turn_end(pending)?;
        }
    }

    /// Prefetches the session table for a batch of packets read (issue 18): the index
    /// buckets of all, then their slots, so that each packet finds them in the cache.
    fn prefetch(&mut self, done: &[Completion]) {
        let hdr = self.hdr;
        let Some(u) = self.uring.as_mut() else {
            return;
        };
        for stage in [Prefetch::Index, Prefetch::Slot] {
            for c in done {
                if let Completion::Read { side, bid, len } = *c {
                    if len > hdr {
                        let buf = u.buffer(side, bid);
                        let pkt = &buf[HEADROOM + hdr..HEADROOM + len];
                        self.core.prefetch(side, pkt, stage);
                    }
                }
            }
        }
    }

    /// Handles the packet a read put in buffer `bid` of `side`'s pool, and queues its
    /// write from the same buffer (io_uring); `now` is the batch's clock reading.
    fn handle_buffer(&mut self, side: Side, bid: u16, len: usize, now: Instant) {
        let hdr = self.hdr;
        let Some(u) = self.uring.as_mut() else {
            return;
        };
        let Ports {
            tuns, observers, ..
        } = &mut self.ports;
        let buf = u.buffer(side, bid);
        let (Some(tun), true) = (&tuns[side.index()], len >= hdr) else {
            u.release(side, bid);
            return;
        };
        // The read put the offload header and the packet after HEADROOM free bytes.
        let off = match buf[HEADROOM..HEADROOM + hdr].try_into() {
            Ok(h) if hdr > 0 => Offload::parse(h),
            _ => Ok(Offload::NONE),
        };
        // The room and the packet: the core may write the packet further on (shorter in
        // front) or into the room (longer), leaving `hdr` bytes before it.
        let area = &mut buf[hdr..HEADROOM + len];
        for o in observers.iter_mut() {
            o.packet(Crossing::Read, side, tun.name(), &area[HEADROOM..]);
        }
        match self.core.handle_in(side, area, HEADROOM, off, now) {
            Some(w) => match &tuns[w.port.index()] {
                Some(to) => {
                    for o in observers.iter_mut() {
                        o.packet(Crossing::Written, w.port, to.name(), w.bytes(area));
                    }
                    // The offload header goes just before the packet, `w.start` in the
                    // buffer, since the area starts `hdr` bytes into it.
                    u.send(side, bid, w.start, w.len, &w.offload, w.port);
                }
                None => {
                    u.release(side, bid);
                    self.core.count_write_error();
                }
            },
            None => u.release(side, bid),
        }
        self.flush(now);
        for o in self.ports.observers.iter_mut() {
            o.end_of_packet();
        }
    }

    /// Lets a lost port go and starts looking for its device to come back (`--persist`):
    /// the other port runs on, and what would leave by this one is counted as a write
    /// error.
    fn detach(&mut self, side: Side, e: anyhow::Error) {
        let i = side.index();
        let Some(tun) = self.ports.tuns[i].take() else {
            return;
        };
        match self.uring.as_mut() {
            Some(u) => u.detach(side),
            None => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&tun.as_raw_fd()));
            }
        }
        drop(tun);
        self.readable[i] = false;
        self.core.count_port_lost();
        log::warn!(
            "{e:#}; waiting for a TUN named '{}' to come back in its namespace (--persist)",
            self.port_config(side).tun
        );
        self.reattach_at = Some(std::time::Instant::now() + REATTACH_EVERY);
    }

    fn port_config(&self, side: Side) -> &crate::config::PortConfig {
        let cfg = self.core.config();
        match side {
            Side::Inside => &cfg.inside,
            Side::Outside => &cfg.outside,
        }
    }

    /// Attaches to the devices of lost ports that are back. A device is only attached
    /// to once it exists again: tunnat does not recreate it (a new device would have
    /// none of the addresses and routes its namespace gave the old one).
    fn reattach(&mut self) {
        let mut waiting = false;
        for side in SIDES {
            let i = side.index();
            if self.ports.tuns[i].is_some() {
                continue;
            }
            let port = self.port_config(side).clone();
            match Tun::exists(&port.tun, port.netns.as_deref()) {
                Ok(true) => {}
                Ok(false) => {
                    waiting = true;
                    continue;
                }
                Err(e) => {
                    log::debug!("looking for TUN '{}': {e:#}", port.tun);
                    waiting = true;
                    continue;
                }
            }
            // A super-packet read on one port must be written whole on the other.
            let offload = self.ports.tuns[1 - i]
                .as_ref()
                .map_or(self.core.config().offload, Tun::offloads);
            let attached =
                Tun::open(&port.tun, port.netns.as_deref(), offload).and_then(|mut t| {
                    if t.offloads() != offload {
                        anyhow::bail!("it does not take the other port's offloads");
                    }
                    t.make_persistent()?;
                    match self.uring.as_mut() {
                        Some(u) => u.attach(side, t.as_raw_fd()),
                        None => self.poll.registry().register(
                            &mut SourceFd(&t.as_raw_fd()),
                            Token(i),
                            Interest::READABLE,
                        )?,
                    }
                    Ok(t)
                });
            match attached {
                Ok(t) => {
                    log::info!("{} port back: attached to TUN '{}'", side.name(), t.name());
                    self.ports.tuns[i] = Some(t);
                    self.readable[i] = true;
                    self.core.count_port_back();
                }
                Err(e) => {
                    log::warn!(
                        "{} port: cannot attach to TUN '{}': {e:#}",
                        side.name(),
                        port.tun
                    );
                    waiting = true;
                }
            }
        }
        self.reattach_at = waiting.then(|| std::time::Instant::now() + REATTACH_EVERY);
    }

    /// Handles pending signals; true to stop.
    fn signals(&mut self) -> bool {
        let sigs: Vec<i32> = self.signals.pending().collect();
        for sig in sigs {
            if sig == SIGHUP {
                log::info!("SIGHUP: reloading the configuration");
                let loaded = self.sources.load();
                if let Err(e) = loaded.and_then(|cfg| self.core.reload(cfg)) {
                    log::warn!("reload refused, the old configuration stays: {e:#}");
                }
                continue;
            }
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            log::info!("{name}: stopping");
            for line in self.core.counters().log_lines() {
                log::info!("{line}");
            }
            return true;
        }
        false
    }

    /// The time until the core or a control client next needs attention; `None` (sleep
    /// until an event) when nothing is due.
    fn timeout(&self) -> Option<Duration> {
        let core = self.core.poll_timeout().map(|t| t.since(self.now()));
        let control = self
            .control
            .as_ref()
            .and_then(|c| c.next_deadline())
            .map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let reattach = self
            .reattach_at
            .map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let t = [core, control, reattach].into_iter().flatten().min();
        // Round up to the millisecond the core counts in, so a deadline is never missed
        // by waking a fraction of a millisecond early.
        t.map(|t| t + Duration::from_micros(999))
    }

    /// Reads up to [`BATCH`] packets from `side`; true if more may be waiting. A read
    /// error other than "no packet now" means the device is gone: the port is marked
    /// lost ([`Ports::lost`]), which ends the loop with an error naming it (so that a
    /// supervisor restarts tunnat), or with `--persist` waits for the device.
    fn drain(&mut self, side: Side) -> bool {
        for _ in 0..BATCH {
            let Ports {
                tuns,
                observers,
                lost,
            } = &mut self.ports;
            let Some(tun) = &tuns[side.index()] else {
                return false;
            };
            let (n, off) = match tun.recv(&mut self.buf[HEADROOM..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.core.count_read_error();
                    if lost.is_none() {
                        *lost = Some((side, port_lost(side, tun.name(), "reading", e)));
                    }
                    return false;
                }
            };
            for o in observers.iter_mut() {
                o.packet(
                    Crossing::Read,
                    side,
                    tun.name(),
                    &self.buf[HEADROOM..HEADROOM + n],
                );
            }
            let now = self.now();
            let area = &mut self.buf[..HEADROOM + n];
            if let Some(w) = self.core.handle_in(side, area, HEADROOM, off, now) {
                if !self.ports.send(w.port, w.bytes(&self.buf), &w.offload) {
                    self.core.count_write_error();
                }
            }
            self.flush(now);
            for o in self.ports.observers.iter_mut() {
                o.end_of_packet();
            }
        }
        true
    }

    /// Writes everything the core has to send.
    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.core.poll_transmit(now) {
            // Queued io_uring writes go first: packets leave in the order made.
            if let Some(u) = self.uring.as_mut() {
                u.submit();
            }
            if !self.ports.send(t.port, &t.packet, &t.offload) {
                self.core.count_write_error();
            }
        }
    }

    /// Runs the core's timers when due, and drops control clients past their deadline.
    fn timers(&mut self) {
        if self
            .reattach_at
            .is_some_and(|t| t <= std::time::Instant::now())
        {
            self.reattach();
        }
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        self.flush(now);
        if self
            .control
            .as_ref()
            .and_then(|c| c.next_deadline())
            .is_some_and(|d| d <= std::time::Instant::now())
        {
            self.with_control(|c, registry, r| c.expire(registry, r));
        }
    }

    fn control_event(&mut self, token: Token) {
        let Some(slot) = self.control.as_ref().and_then(|c| c.slot_of(token)) else {
            return;
        };
        self.with_control(|c, registry, r| {
            if let Some(slot) = slot {
                c.serve(slot, registry, r);
            }
            c.accept(registry, r); // a slot may have come free
        });
    }

    /// Runs `f` on the control server with the core as its [`Responder`].
    fn with_control(
        &mut self,
        f: impl FnOnce(
            &mut ControlServer<TableCursor>,
            &mio::Registry,
            &mut dyn Responder<Cursor = TableCursor>,
        ),
    ) {
        let now = self.now();
        let Some(c) = self.control.as_mut() else {
            return;
        };
        let before = c.timed_out;
        let mut r = ControlResponder {
            access: Access::own(self.core.config().control_group),
            core: &mut self.core,
            sources: &self.sources,
            now,
        };
        f(c, self.poll.registry(), &mut r);
        let dropped = c.timed_out - before;
        if dropped > 0 {
            self.core.count_control_timeouts(dropped);
        }
        // A reload or a DNAT change may have changed the timers.
        self.flush(now);
    }
}

/// Session table rows per piece of a streamed `table` answer.
const TABLE_PIECE: usize = 64;

/// Answers control requests through the core, after checking who asks. The session
/// table is streamed in pieces of [`TABLE_PIECE`] rows, so a large table costs a bounded
/// buffer per client and no long pause in forwarding.
struct ControlResponder<'a> {
    core: &'a mut Router,
    sources: &'a Sources,
    access: Access,
    now: Instant,
}

impl Responder for ControlResponder<'_> {
    type Cursor = TableCursor;

    fn answer(&mut self, line: &str, peer: Peer) -> Reply<TableCursor> {
        let req = match Request::parse(line) {
            Ok(req) => req,
            Err(e) => return Reply::Whole(self.core.refuse_control(&e).to_json()),
        };
        if !self.access.allows(peer, req.changes_state()) {
            log::warn!(
                "control: refused {req:?} from uid {} gid {} (pid {}): not allowed to change the router",
                peer.uid,
                peer.gid,
                peer.pid
            );
            let why = format!(
                "permission denied: this request changes the router, which only root, uid {}{} may do",
                self.access.uid,
                self.access
                    .group
                    .map_or(String::new(), |g| format!(" or group {g}"))
            );
            return Reply::Whole(self.core.refuse_control(&why).to_json());
        }
        if req == Request::Table {
            self.core.count_control_request();
            // Only the head now: the rows come a piece a turn, under the budget.
            return Reply::Piece(
                format!(r#"{{"ok":true,"v":{VERSION},"sessions":["#),
                Some(self.core.table_snapshot()),
            );
        }
        let sources = self.sources;
        Reply::Whole(
            self.core
                .handle_control(req, self.now, &mut || sources.load())
                .to_json(),
        )
    }

    fn more(&mut self, cursor: &mut TableCursor) -> (String, bool) {
        let first = cursor.rows() == 0;
        let rows = self.core.table_rows_at(cursor, TABLE_PIECE, self.now);
        let mut piece = String::new();
        for (i, row) in rows.iter().enumerate() {
            if !first || i > 0 {
                piece.push(',');
            }
            piece.push_str(&serde_json::to_string(row).unwrap_or_default());
        }
        if cursor.is_done() {
            piece.push_str("]}");
            return (piece, false);
        }
        (piece, true)
    }
}

/// A port's addresses, as the banner says them.
fn addrs(p: &crate::config::PortConfig) -> String {
    let all: Vec<String> = (p.cidr.map(|c| c.to_string()).into_iter())
        .chain(p.cidr6.map(|c| c.to_string()))
        .collect();
    all.join(" and ")
}

fn log_banner(cfg: &Config, tuns: &[Tun; 2]) {
    let ns = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("(own)".to_string(), |p| p.display().to_string())
    };
    log::info!(
        "tunnat {}: inside {} in netns {} as {}, outside {} in netns {} as {}, mtu {:?}, offloads {}{}",
        env!("CARGO_PKG_VERSION"),
        tuns[0].name(),
        ns(&cfg.inside.netns),
        addrs(&cfg.inside),
        tuns[1].name(),
        ns(&cfg.outside.netns),
        addrs(&cfg.outside),
        cfg.port_mtus(),
        if tuns[0].offloads() { "on" } else { "off" },
        match cfg.clamp_mss {
            Some(c) => format!(", clamp-mss {c:?}"),
            None => String::new(),
        }
    );
    for r in &cfg.dnat {
        log::info!("dnat {r}");
    }
    let t = &cfg.timeouts;
    log::info!(
        "timeouts udp {}s, tcp established {}s, tcp transitory {}s, icmp {}s; filtering {:?}; max sessions {}, mappings {} ({} per host)",
        t.udp.as_secs(),
        t.tcp_established.as_secs(),
        t.tcp_transitory.as_secs(),
        t.icmp.as_secs(),
        cfg.filtering,
        cfg.limits.max_sessions,
        cfg.limits.max_mappings,
        cfg.limits.max_mappings_per_host
    );
    match cfg.policy_port {
        0 => log::info!("policy server off"),
        p => log::info!(
            "policy server on tcp/{p} ({} bytes of policy)",
            cfg.policy.len()
        ),
    }
    if let (true, Some(inside)) = (cfg.port_control(), cfg.inside.cidr) {
        let mut on = Vec::new();
        if cfg.pcp {
            on.push("PCP".to_string());
        }
        if cfg.nat_pmp {
            on.push("NAT-PMP".to_string());
        }
        if cfg.upnp {
            on.push(format!("UPnP IGD (http port {})", cfg.upnp_port));
        }
        log::info!(
            "port control on {}: {}; {} mappings per host at most",
            inside.addr,
            on.join(", "),
            cfg.portmap_max_per_host
        );
    }
    if cfg.alg_ftp {
        log::info!("FTP helper on (tcp/21)");
    }
}
