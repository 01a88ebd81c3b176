//! The event loop: one mio `Poll` over the two TUN devices and the signal pipe.
//!
//! Each round reads packets from a readable port until it would block (at most [`BATCH`]
//! at a time, alternating ports so neither starves), passes each to [`Nat::process`] and
//! acts on the verdict: write to the other port, answer on the same port, hand to this
//! port's local smoltcp stack, or drop. Then both local stacks are polled (ping replies,
//! RST and port-unreachable, the policy server) and their output written. A timer expires
//! idle NAT sessions once a second whether or not traffic flows.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::config::Config;
use crate::nat::{Instant, Ipv4Cidr, Nat, Side, Verdict};
use crate::port::bridge::QueueDevice;
use crate::port::Tun;
use crate::services::policy::PolicyServer;

/// Packets read from one port before looking at the other.
pub const BATCH: usize = 64;
/// How often idle sessions are expired.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

const SIGNALS: Token = Token(2);

/// The router's own stack on one port: smoltcp interface, sockets, services.
struct LocalStack {
    dev: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    policy: Option<PolicyServer>,
}

impl LocalStack {
    /// An interface holding this port's address (with its network) and the other port's
    /// address as a /32, so the router answers on both addresses from both sides as a
    /// kernel router does.
    fn new(
        own: Ipv4Cidr,
        other: Ipv4Cidr,
        cfg: &Config,
        now: smoltcp::time::Instant,
    ) -> LocalStack {
        let mut dev = QueueDevice::new(cfg.mtu);
        let mut ic = IfaceConfig::new(HardwareAddress::Ip);
        ic.random_seed =
            std::process::id() as u64 ^ now.total_millis() as u64 ^ u32::from(own.addr) as u64;
        let mut iface = Interface::new(ic, &mut dev, now);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(own.addr), own.prefix));
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(other.addr), 32));
        });
        // Replies to any remote leave through this port: a default route. On an IP-medium
        // device the gateway is never resolved, so any address on the network will do.
        let gw = std::net::Ipv4Addr::from((u32::from(own.addr) & own.mask()) | 1);
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
        let mut sockets = SocketSet::new(Vec::new());
        let policy = (cfg.policy_port != 0).then(|| {
            PolicyServer::new(&mut sockets, cfg.policy_port, &cfg.policy, cfg.policy_idle)
        });
        LocalStack {
            dev,
            iface,
            sockets,
            policy,
        }
    }

    /// Runs the stack until it has nothing more to do now.
    fn poll(&mut self, now: smoltcp::time::Instant) {
        for _ in 0..4 {
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            let changed = match &mut self.policy {
                Some(p) => p.service(&mut self.sockets, now),
                None => false,
            };
            if !changed {
                break;
            }
        }
    }

    fn next_deadline(&mut self, now: smoltcp::time::Instant) -> Option<Duration> {
        let d = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(Duration::from);
        let p = self
            .policy
            .as_ref()
            .and_then(|p| p.next_deadline())
            .map(|t| {
                if t > now {
                    Duration::from(t - now)
                } else {
                    Duration::ZERO
                }
            });
        match (d, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Counters of the I/O shell.
#[derive(Debug, Default, Clone, Copy)]
pub struct IoStats {
    pub read: [u64; 2],
    pub write_errors: u64,
}

pub struct Router {
    tuns: [Tun; 2],
    locals: [LocalStack; 2],
    nat: Nat,
    poll: Poll,
    signals: Signals,
    epoch: std::time::Instant,
    next_sweep: Instant,
    buf: Vec<u8>,
    io: IoStats,
}

fn index(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}
const SIDES: [Side; 2] = [Side::Inside, Side::Outside];

/// Opens both ports and runs the router until SIGINT or SIGTERM.
pub fn run(cfg: Config) -> Result<()> {
    let inside = Tun::open(&cfg.inside.tun, cfg.inside.netns.as_deref())
        .with_context(|| format!("inside port (--inside-tun {})", cfg.inside.tun))?;
    let outside = Tun::open(&cfg.outside.tun, cfg.outside.netns.as_deref())
        .with_context(|| format!("outside port (--outside-tun {})", cfg.outside.tun))?;
    let mut router = Router::new(cfg, inside, outside)?;
    eprintln!("tunnat: ready");
    router.run()
}

impl Router {
    pub fn new(cfg: Config, inside: Tun, outside: Tun) -> Result<Router> {
        let epoch = std::time::Instant::now();
        let now = smoltcp::time::Instant::from_millis(0);
        let locals = [
            LocalStack::new(cfg.inside.cidr, cfg.outside.cidr, &cfg, now),
            LocalStack::new(cfg.outside.cidr, cfg.inside.cidr, &cfg, now),
        ];
        let poll = Poll::new().context("creating the event loop")?;
        let tuns = [inside, outside];
        for (i, t) in tuns.iter().enumerate() {
            poll.registry()
                .register(&mut SourceFd(&t.as_raw_fd()), Token(i), Interest::READABLE)
                .with_context(|| format!("registering TUN '{}'", t.name()))?;
        }
        let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context("registering signals")?;
        log_banner(&cfg, &tuns);
        Ok(Router {
            tuns,
            locals,
            nat: Nat::new(cfg.nat()),
            poll,
            signals,
            epoch,
            next_sweep: Instant::ZERO + SWEEP_INTERVAL,
            buf: vec![0u8; 65536],
            io: IoStats::default(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Runs until a termination signal.
    pub fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(16);
        let mut readable = [true, true];
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("waiting for packets");
            }
            for ev in events.iter() {
                match ev.token() {
                    Token(i) if i < 2 => readable[i] = true,
                    SIGNALS => {
                        if let Some(sig) = self.signals.pending().next() {
                            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                            log::info!("{name}: stopping");
                            self.log_stats();
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            while readable.iter().any(|r| *r) {
                for side in SIDES {
                    let i = index(side);
                    if readable[i] {
                        readable[i] = self.drain(side);
                    }
                }
                self.poll_locals();
            }
            self.poll_locals();
            self.sweep();
        }
    }

    /// Reads up to [`BATCH`] packets from `side`; true if more may be waiting.
    fn drain(&mut self, side: Side) -> bool {
        let i = index(side);
        for _ in 0..BATCH {
            let n = match self.tuns[i].recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("reading TUN '{}': {e}", self.tuns[i].name());
                    return false;
                }
            };
            self.io.read[i] += 1;
            let now = self.now();
            let verdict = self.nat.process(side, &mut self.buf[..n], now);
            match verdict {
                Verdict::Forward { len } => {
                    let out = index(side.other());
                    if let Err(e) = self.tuns[out].send(&self.buf[..len]) {
                        self.io.write_errors += 1;
                        log::debug!("writing TUN '{}': {e}", self.tuns[out].name());
                    }
                }
                Verdict::Local { len } => self.locals[i].dev.deliver(&self.buf[..len]),
                Verdict::Reply(why) => {
                    log::debug!("{}: answered with ICMP ({})", side.name(), why.name());
                    if self.tuns[i].send(self.nat.reply()).is_err() {
                        self.io.write_errors += 1;
                    }
                }
                Verdict::Drop(why) => log::debug!("{}: dropped ({})", side.name(), why.name()),
            }
        }
        true
    }

    fn poll_locals(&mut self) {
        let now = smoltcp::time::Instant::from_millis(self.now().millis() as i64);
        for (i, local) in self.locals.iter_mut().enumerate() {
            local.poll(now);
            while let Some(pkt) = local.dev.tx.pop_front() {
                if self.tuns[i].send(&pkt).is_err() {
                    self.io.write_errors += 1;
                }
            }
        }
    }

    fn sweep(&mut self) {
        let now = self.now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        self.nat.expire(now, |k, s| {
            log::debug!(
                "expired {} {} -> {} via :{} idle {:?}",
                k.protocol.name(),
                k.inside,
                k.remote,
                s.ext_port,
                now.since(s.last_seen)
            );
        });
    }

    fn timeout(&mut self) -> Duration {
        let now = self.now();
        let snow = smoltcp::time::Instant::from_millis(now.millis() as i64);
        let mut t = self.next_sweep.since(now);
        for l in &mut self.locals {
            if let Some(d) = l.next_deadline(snow) {
                t = t.min(d);
            }
        }
        t.max(Duration::from_millis(1))
    }

    fn log_stats(&self) {
        let s = self.nat.stats();
        log::info!(
            "forwarded out {} in {}, local {}, ICMP errors sent {} translated {}, sessions {} (created {}, expired {})",
            s.forwarded_out,
            s.forwarded_in,
            s.local,
            s.icmp_errors_sent,
            s.icmp_errors_translated,
            self.nat.table().len(),
            self.nat.table().stats.sessions_created,
            self.nat.table().stats.sessions_expired,
        );
        for (r, n) in s.drop_counts() {
            log::info!("dropped {}: {n}", r.name());
        }
        for (side, l) in SIDES.iter().zip(&self.locals) {
            if let Some(p) = &l.policy {
                log::info!(
                    "policy server ({}): served {}, refused {}, timed out {}",
                    side.name(),
                    p.stats.served,
                    p.stats.refused,
                    p.stats.timed_out
                );
            }
        }
    }
}

fn log_banner(cfg: &Config, tuns: &[Tun; 2]) {
    let ns = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or("(own)".to_string(), |p| p.display().to_string())
    };
    log::info!(
        "tunnat {}: inside {} in netns {} as {}, outside {} in netns {} as {}, mtu {}",
        env!("CARGO_PKG_VERSION"),
        tuns[0].name(),
        ns(&cfg.inside.netns),
        cfg.inside.cidr,
        tuns[1].name(),
        ns(&cfg.outside.netns),
        cfg.outside.cidr,
        cfg.mtu
    );
    for r in &cfg.dnat {
        log::info!("dnat {r}");
    }
    let t = &cfg.timeouts;
    log::info!(
        "timeouts udp {}s, tcp established {}s, tcp transitory {}s, icmp {}s; filtering {:?}; max sessions {}",
        t.udp.as_secs(),
        t.tcp_established.as_secs(),
        t.tcp_transitory.as_secs(),
        t.icmp.as_secs(),
        cfg.filtering,
        cfg.max_sessions
    );
    match cfg.policy_port {
        0 => log::info!("policy server off"),
        p => log::info!(
            "policy server on tcp/{p} ({} bytes of policy)",
            cfg.policy.len()
        ),
    }
}
