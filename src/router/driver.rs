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
use crate::config::Config;
use crate::control::proto::{Request, VERSION};
use crate::control::server::{Access, ControlServer, Peer, Reply, Responder};
use crate::nat::{Instant, Side};
use crate::options::Sources;
use crate::port::pcap::PcapCapture;
use crate::port::tracer::stdout_tracer;
use crate::port::{Crossing, Observer, Tun};
use crate::wire::offload::Offload;

/// Packets read from one port before looking at the other.
pub const BATCH: usize = 64;

const SIGNALS: Token = Token(2);
const CONTROL: Token = Token(3);
/// Tokens of control clients: `CLIENTS + slot`.
const CLIENTS: usize = 16;

/// The two TUN devices and the observers that see every packet crossing them.
struct Ports {
    tuns: [Tun; 2],
    observers: Vec<Box<dyn Observer>>,
    /// Set when a write says the device is gone; the loop then stops with this error.
    lost: Option<anyhow::Error>,
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
    /// Writes a packet; false if the device refused it.
    fn send(&mut self, side: Side, pkt: &[u8], off: &Offload) -> bool {
        let tun = &self.tuns[side.index()];
        for o in &mut self.observers {
            o.packet(Crossing::Written, side, tun.name(), pkt);
        }
        match tun.send(pkt, off) {
            Ok(_) => true,
            Err(e) => {
                log::debug!("writing TUN '{}': {e}", tun.name());
                if device_gone(&e) && self.lost.is_none() {
                    self.lost = Some(port_lost(side, tun.name(), "writing", e));
                }
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
    /// The one clock: the core's time is milliseconds since this.
    epoch: std::time::Instant,
    buf: Vec<u8>,
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
    if cfg.trace {
        observers.push(Box::new(stdout_tracer(cfg.trace_filters.clone())));
    }
    let mut driver = Driver::new(cfg, sources, [inside, outside], observers)?;
    eprintln!("tunnat: ready");
    driver.run()
}

impl Driver {
    fn new(
        cfg: Config,
        sources: Sources,
        tuns: [Tun; 2],
        observers: Vec<Box<dyn Observer>>,
    ) -> Result<Driver> {
        let epoch = std::time::Instant::now();
        let poll = Poll::new().context("creating the event loop")?;
        for (i, t) in tuns.iter().enumerate() {
            poll.registry()
                .register(&mut SourceFd(&t.as_raw_fd()), Token(i), Interest::READABLE)
                .with_context(|| format!("registering TUN '{}'", t.name()))?;
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
            core: Router::new(cfg, Instant::ZERO, seed),
            sources,
            ports: Ports {
                tuns,
                observers,
                lost: None,
            },
            control,
            poll,
            signals,
            epoch,
            buf: vec![0u8; 65536],
        })
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Runs until a termination signal, or until a port is lost (an error naming it).
    ///
    /// Fair to every source: each turn reads at most [`BATCH`] packets from each port,
    /// then looks at the other events (signals, control clients) and the timers before
    /// the next batch, without sleeping while a port still has packets. A flood on one
    /// port cannot starve the other port, the control socket or the timers.
    pub fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(64);
        let mut readable = [true, true];
        loop {
            let pending = self.control.as_ref().is_some_and(|c| c.has_pending());
            let timeout = if pending || readable.iter().any(|r| *r) {
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
            for ev in events.iter() {
                match ev.token() {
                    Token(i) if i < 2 => readable[i] = true,
                    SIGNALS => {
                        if self.signals() {
                            return Ok(());
                        }
                    }
                    t => self.control_event(t),
                }
            }
            for (i, side) in SIDES.into_iter().enumerate() {
                if readable[i] {
                    readable[i] = self.drain(side)?;
                }
            }
            if pending {
                self.with_control(|c, registry, r| c.serve_pending(registry, r));
            }
            self.timers();
            if let Some(lost) = self.ports.lost.take() {
                return Err(lost);
            }
        }
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
        let t = match (core, control) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Round up to the millisecond the core counts in, so a deadline is never missed
        // by waking a fraction of a millisecond early.
        t.map(|t| t + Duration::from_micros(999))
    }

    /// Reads up to [`BATCH`] packets from `side`; true if more may be waiting. A read
    /// error other than "no packet now" means the device is gone: an error naming the
    /// port, so the process exits and a supervisor can restart it.
    fn drain(&mut self, side: Side) -> Result<bool> {
        for _ in 0..BATCH {
            let Ports {
                tuns, observers, ..
            } = &mut self.ports;
            let tun = &tuns[side.index()];
            let (n, off) = match tun.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.core.count_read_error();
                    return Err(port_lost(side, tun.name(), "reading", e));
                }
            };
            for o in observers.iter_mut() {
                o.packet(Crossing::Read, side, tun.name(), &self.buf[..n]);
            }
            let now = self.now();
            if let Some(w) = self.core.handle(side, &mut self.buf[..n], off, now) {
                if !self.ports.send(w.port, &self.buf[..w.len], &w.offload) {
                    self.core.count_write_error();
                }
            }
            self.flush(now);
        }
        Ok(true)
    }

    /// Writes everything the core has to send.
    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.core.poll_transmit(now) {
            if !self.ports.send(t.port, &t.packet, &Offload::NONE) {
                self.core.count_write_error();
            }
        }
    }

    /// Runs the core's timers when due, and drops control clients past their deadline.
    fn timers(&mut self) {
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
const TABLE_PIECE: usize = 128;

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
        cfg.inside.cidr,
        tuns[1].name(),
        ns(&cfg.outside.netns),
        cfg.outside.cidr,
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
}
