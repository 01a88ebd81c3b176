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
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::config::Config;
use crate::control::{self, Request};
use crate::nat::{DnatRule, DropReason, Instant, Ipv4Cidr, Nat, Side, Verdict};
use crate::port::bridge::QueueDevice;
use crate::port::tap::{stdout_tracer, PcapTap, Point, Tap};
use crate::port::Tun;
use crate::services::policy::PolicyServer;
use crate::settings::{reloadable, Sources};
use crate::wire::ipv4::{Check, Ipv4};
use crate::wire::offload::{Offload, Unsupported};
use crate::wire::transport::{Protocol, TcpFlags, Transport};

/// Packets read from one port before looking at the other.
pub const BATCH: usize = 64;
/// How often idle sessions are expired.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

const SIGNALS: Token = Token(2);
const CONTROL: Token = Token(3);
/// Tokens of control clients: `CLIENTS + slot`.
const CLIENTS: usize = 16;
/// Control clients served at once; more wait in the listener's backlog.
const MAX_CLIENTS: usize = 32;
/// A control client that has not sent its request, or taken its answer, by then is dropped.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// Longest control request line.
const MAX_REQUEST: usize = 65536;

/// The router's own stack on one port: smoltcp interface, sockets, services.
struct LocalStack {
    dev: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    policy: Option<PolicyServer>,
    /// When the stack next needs polling without a packet for it (a TCP timer, a policy
    /// timeout), as of its last poll; `None`: only when a packet comes.
    due: Option<smoltcp::time::Instant>,
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
        let mtu = if own == cfg.inside.cidr {
            cfg.port_mtus()[0]
        } else {
            cfg.port_mtus()[1]
        };
        let mut dev = QueueDevice::new(mtu);
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
            due: Some(now),
        }
    }

    /// Hands a packet to the stack. A SYN for the policy port while none of the server's
    /// sockets listens makes the server displace a connection for it; if none may be, the
    /// SYN is dropped (counted as `busy`) so the client retries.
    fn deliver(&mut self, pkt: &[u8], now: smoltcp::time::Instant) {
        if let Some(p) = &mut self.policy {
            if syn_to(pkt, p.port())
                && !p.listening(&self.sockets)
                && !p.make_room(&mut self.sockets, now)
            {
                p.stats.busy += 1;
                self.due = Some(smoltcp::time::Instant::ZERO);
                return;
            }
        }
        self.dev.deliver(pkt);
    }

    /// Runs the stack if a packet is waiting for it or a timer of its is due; forwarded
    /// traffic alone costs it nothing. Returns whether it ran.
    fn poll_if_needed(&mut self, now: smoltcp::time::Instant) -> bool {
        if self.dev.rx.is_empty() && self.due.is_none_or(|d| d > now) {
            return false;
        }
        self.poll(now);
        self.due = self.next_deadline(now).map(|d| now + d.into());
        true
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

/// The two TUN devices and the taps that see every packet crossing them.
struct Ports {
    tuns: [Tun; 2],
    taps: Vec<Box<dyn Tap>>,
    io: IoStats,
}

impl Ports {
    fn recv(
        &mut self,
        side: Side,
        buf: &mut [u8],
    ) -> io::Result<(usize, Result<Offload, Unsupported>)> {
        let i = index(side);
        let (n, off) = self.tuns[i].recv(buf)?;
        self.io.read[i] += 1;
        for t in &mut self.taps {
            t.packet(Point::In, side, self.tuns[i].name(), &buf[..n]);
        }
        Ok((n, off))
    }

    /// Writes a packet with a complete checksum and no segmentation to do.
    fn send(&mut self, side: Side, pkt: &[u8]) {
        self.send_offload(side, pkt, &Offload::NONE)
    }

    fn send_offload(&mut self, side: Side, pkt: &[u8], off: &Offload) {
        let i = index(side);
        for t in &mut self.taps {
            t.packet(Point::Out, side, self.tuns[i].name(), pkt);
        }
        if let Err(e) = self.tuns[i].send(pkt, off) {
            self.io.write_errors += 1;
            log::debug!("writing TUN '{}': {e}", self.tuns[i].name());
        }
    }
}

/// The control socket's listener; the socket file is removed on drop.
struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: std::path::PathBuf,
    /// Clients being served, by slot. Nothing blocks: a client's request is read and its
    /// answer written as the socket allows, so a stalled client cannot pause forwarding.
    clients: Vec<Option<ControlClient>>,
}

struct ControlClient {
    stream: std::os::unix::net::UnixStream,
    request: Vec<u8>,
    /// The answer once the request is complete, and how much of it has been written.
    answer: Option<(Vec<u8>, usize)>,
    deadline: std::time::Instant,
}

impl ControlClient {
    /// Reads what has arrived; the request line once it is whole (or the client stopped
    /// sending, or sent too much).
    fn read_request(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        loop {
            match io::Read::read(&mut self.stream, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.request.extend_from_slice(&buf[..n]);
                    if self.request.contains(&b'\n') || self.request.len() > MAX_REQUEST {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(_) => break,
            }
        }
        let end = self.request.iter().position(|b| *b == b'\n');
        let line = &self.request[..end.unwrap_or(self.request.len()).min(MAX_REQUEST)];
        Some(String::from_utf8_lossy(line).into_owned())
    }

    /// Writes what the socket takes; true once the whole answer is out (or cannot be).
    fn write_answer(&mut self) -> bool {
        let Some((answer, sent)) = &mut self.answer else {
            return false;
        };
        while *sent < answer.len() {
            match io::Write::write(&mut self.stream, &answer[*sent..]) {
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
        true
    }
}

impl ControlSocket {
    fn bind(path: &std::path::Path) -> Result<ControlSocket> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "--control {}: another tunnat is listening there",
                    path.display()
                );
            }
            let _ = std::fs::remove_file(path); // stale socket of an earlier run
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("--control {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct Router {
    cfg: Config,
    sources: Sources,
    control: Option<ControlSocket>,
    ports: Ports,
    locals: [LocalStack; 2],
    nat: Nat,
    poll: Poll,
    signals: Signals,
    epoch: std::time::Instant,
    next_sweep: Instant,
    buf: Vec<u8>,
}

/// Is `pkt` a TCP SYN (opening, not SYN-ACK) to `port`?
fn syn_to(pkt: &[u8], port: u16) -> bool {
    let Ok(ip) = Ipv4::new_checked(pkt, Check::Full) else {
        return false;
    };
    ip.protocol() == 6
        && !ip.is_fragment()
        && Transport::new_checked(Protocol::Tcp, ip.payload()).is_ok_and(|t| {
            t.dst_port == port && t.has_flag(TcpFlags::SYN) && !t.has_flag(TcpFlags::ACK)
        })
}

fn index(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}
const SIDES: [Side; 2] = [Side::Inside, Side::Outside];

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
    let mut taps: Vec<Box<dyn Tap>> = Vec::new();
    if let Some(dir) = &cfg.pcap_dir {
        taps.push(Box::new(PcapTap::create(dir)?));
    }
    if cfg.trace {
        taps.push(Box::new(stdout_tracer(cfg.trace_filters.clone())));
    }
    let mut router = Router::new(cfg, sources, inside, outside, taps)?;
    eprintln!("tunnat: ready");
    router.run()
}

impl Router {
    pub fn new(
        cfg: Config,
        sources: Sources,
        inside: Tun,
        outside: Tun,
        taps: Vec<Box<dyn Tap>>,
    ) -> Result<Router> {
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
        let mut signals =
            Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context("registering signals")?;
        let control = match &cfg.control {
            Some(path) => {
                let c = ControlSocket::bind(path)?;
                poll.registry()
                    .register(
                        &mut SourceFd(&c.listener.as_raw_fd()),
                        CONTROL,
                        Interest::READABLE,
                    )
                    .context("registering the control socket")?;
                log::info!("control socket {}", path.display());
                Some(c)
            }
            None => None,
        };
        log_banner(&cfg, &tuns);
        let nat = Nat::new(cfg.nat());
        Ok(Router {
            cfg,
            sources,
            control,
            ports: Ports {
                tuns,
                taps,
                io: IoStats::default(),
            },
            locals,
            nat,
            poll,
            signals,
            epoch,
            next_sweep: Instant::ZERO + SWEEP_INTERVAL,
            buf: vec![0u8; 65536],
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
                        let sigs: Vec<i32> = self.signals.pending().collect();
                        for sig in sigs {
                            if sig == SIGHUP {
                                log::info!("SIGHUP: reloading the configuration");
                                if let Err(e) = self.reload() {
                                    log::warn!(
                                        "reload refused, the old configuration stays: {e:#}"
                                    );
                                }
                                continue;
                            }
                            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                            log::info!("{name}: stopping");
                            self.log_stats();
                            return Ok(());
                        }
                    }
                    CONTROL => self.accept_control(),
                    Token(t) if (CLIENTS..CLIENTS + MAX_CLIENTS).contains(&t) => {
                        self.serve_control(t - CLIENTS);
                        self.accept_control(); // a slot may have come free
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
            let (n, off) = match self.ports.recv(side, &mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("reading TUN '{}': {e}", self.ports.tuns[i].name());
                    return false;
                }
            };
            let now = self.now();
            let Ok(mut off) = off else {
                self.nat.count_drop(DropReason::BadOffload);
                log::debug!("{}: dropped (bad-offload)", side.name());
                continue;
            };
            match self
                .nat
                .process_offload(side, &mut self.buf[..n], now, &mut off)
            {
                Verdict::Forward { len } => {
                    self.ports
                        .send_offload(side.other(), &self.buf[..len], &off)
                }
                Verdict::Hairpin { len } => self.ports.send_offload(side, &self.buf[..len], &off),
                Verdict::Emit { to } => {
                    for p in self.nat.out() {
                        self.ports.send(to, p);
                    }
                }
                Verdict::Held => {}
                Verdict::Local { len } => {
                    let snow = smoltcp::time::Instant::from_millis(now.millis() as i64);
                    self.locals[i].deliver(&self.buf[..len], snow)
                }
                Verdict::Reply(why) => {
                    log::debug!("{}: answered with ICMP ({})", side.name(), why.name());
                    self.ports.send(side, self.nat.reply());
                }
                Verdict::Drop(why) => log::debug!("{}: dropped ({})", side.name(), why.name()),
            }
        }
        true
    }

    fn poll_locals(&mut self) {
        let now = smoltcp::time::Instant::from_millis(self.now().millis() as i64);
        for (i, local) in self.locals.iter_mut().enumerate() {
            if !local.poll_if_needed(now) {
                continue;
            }
            while let Some(pkt) = local.dev.tx.pop_front() {
                self.ports.send(SIDES[i], &pkt);
            }
        }
    }

    fn sweep(&mut self) {
        let now = self.now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        self.expire_control();
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
        for pkt in self.nat.take_timer_output() {
            self.ports.send(Side::Outside, &pkt);
        }
    }

    fn timeout(&mut self) -> Duration {
        let now = self.now();
        let snow = smoltcp::time::Instant::from_millis(now.millis() as i64);
        let mut t = self.next_sweep.since(now);
        for l in &self.locals {
            if let Some(due) = l.due {
                t = t.min(if due > snow {
                    Duration::from(due - snow)
                } else {
                    Duration::ZERO
                });
            }
        }
        t.max(Duration::from_millis(1))
    }

    /// Reads the configuration again and applies what may change at run time.
    fn reload(&mut self) -> Result<String> {
        let new = self.sources.load()?;
        reloadable(&self.cfg, &new)?;
        let msg = format!(
            "reloaded: {} dnat rule(s), timeouts udp {}s tcp {}s/{}s icmp {}s, filtering {:?}",
            new.dnat.len(),
            new.timeouts.udp.as_secs(),
            new.timeouts.tcp_established.as_secs(),
            new.timeouts.tcp_transitory.as_secs(),
            new.timeouts.icmp.as_secs(),
            new.filtering
        );
        self.apply(new);
        log::info!("{msg}");
        Ok(msg)
    }

    fn apply(&mut self, new: Config) {
        self.nat.reconfigure(new.nat());
        for l in &mut self.locals {
            if let Some(p) = &mut l.policy {
                p.set_policy(&new.policy, new.policy_idle);
            }
            l.due = Some(smoltcp::time::Instant::ZERO); // poll soon: the timeouts changed
        }
        self.cfg = new;
    }

    /// Answers every waiting control connection.
    /// Accepts control clients while a slot is free; the rest wait in the backlog.
    fn accept_control(&mut self) {
        loop {
            let Some(c) = &mut self.control else { return };
            let Some(slot) = c.clients.iter().position(Option::is_none) else {
                return;
            };
            let stream = match c.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("control socket: {e}");
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = Token(CLIENTS + slot);
            let fd = stream.as_raw_fd();
            if self
                .poll
                .registry()
                .register(
                    &mut SourceFd(&fd),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            c.clients[slot] = Some(ControlClient {
                stream,
                request: Vec::new(),
                answer: None,
                deadline: std::time::Instant::now() + CLIENT_DEADLINE,
            });
            self.serve_control(slot); // the request may be there already
        }
    }

    /// Reads control client `slot`'s request, answers it, writes the answer, as far as its
    /// socket allows now.
    fn serve_control(&mut self, slot: usize) {
        let Some(c) = &mut self.control else { return };
        let Some(client) = c.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if client.answer.is_none() {
            let Some(line) = client.read_request() else {
                return; // more to come
            };
            let answer = self.control_answer(&line);
            let mut bytes = answer.to_string().into_bytes();
            bytes.push(b'\n');
            let Some(client) = self
                .control
                .as_mut()
                .and_then(|c| c.clients.get_mut(slot))
                .and_then(Option::as_mut)
            else {
                return;
            };
            client.answer = Some((bytes, 0));
        }
        let Some(c) = &mut self.control else { return };
        if c.clients[slot]
            .as_mut()
            .is_some_and(ControlClient::write_answer)
        {
            self.drop_control(slot);
        }
    }

    fn drop_control(&mut self, slot: usize) {
        let Some(c) = &mut self.control else { return };
        if let Some(client) = c.clients.get_mut(slot).and_then(Option::take) {
            let fd = client.stream.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    /// Drops control clients past their deadline.
    fn expire_control(&mut self) {
        let Some(c) = &self.control else { return };
        let now = std::time::Instant::now();
        let late: Vec<usize> = (0..c.clients.len())
            .filter(|i| c.clients[*i].as_ref().is_some_and(|cl| cl.deadline <= now))
            .collect();
        for slot in late {
            log::debug!("control client too slow: dropped");
            self.drop_control(slot);
        }
        self.accept_control();
    }

    fn control_answer(&mut self, line: &str) -> serde_json::Value {
        use serde_json::json;
        let req: Request = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(e) => return json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let fail = |e: anyhow::Error| json!({"ok": false, "error": format!("{e:#}")});
        match req {
            Request::Table => {
                json!({"ok": true, "sessions": control::table_rows(&self.nat, self.now())})
            }
            Request::Stats => {
                let policy: Vec<_> = SIDES
                    .iter()
                    .zip(&self.locals)
                    .filter_map(|(side, l)| {
                        l.policy.as_ref().map(|p| {
                            json!({"side": side.name(), "served": p.stats.served,
                                   "refused": p.stats.refused, "timed_out": p.stats.timed_out,
                                   "displaced": p.stats.displaced, "busy": p.stats.busy})
                        })
                    })
                    .collect();
                json!({"ok": true, "nat": control::nat_stats(&self.nat),
                       "io": {"read_inside": self.ports.io.read[0], "read_outside": self.ports.io.read[1],
                              "write_errors": self.ports.io.write_errors},
                       "policy": policy})
            }
            Request::DnatList => {
                json!({"ok": true, "rules": self.cfg.dnat.iter().map(|r| r.to_string()).collect::<Vec<_>>()})
            }
            Request::DnatAdd { rule } => {
                let r: DnatRule = match rule.parse() {
                    Ok(r) => r,
                    Err(e) => return fail(anyhow::anyhow!(e)),
                };
                let mut new = self.cfg.clone();
                new.dnat.push(r);
                if let Err(e) = new.validate() {
                    return fail(e);
                }
                log::info!("dnat add {r}");
                self.apply(new);
                json!({"ok": true})
            }
            Request::DnatDel { rule } => {
                let r: DnatRule = match rule.parse() {
                    Ok(r) => r,
                    Err(e) => return fail(anyhow::anyhow!(e)),
                };
                let mut new = self.cfg.clone();
                let before = new.dnat.len();
                new.dnat.retain(|x| *x != r);
                if new.dnat.len() == before {
                    return fail(anyhow::anyhow!("no dnat rule {r}"));
                }
                log::info!("dnat del {r}");
                self.apply(new);
                json!({"ok": true})
            }
            Request::Reload => match self.reload() {
                Ok(msg) => json!({"ok": true, "message": msg}),
                Err(e) => {
                    log::warn!("reload refused, the old configuration stays: {e:#}");
                    fail(e)
                }
            },
        }
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
                    "policy server ({}): served {}, refused {}, timed out {}, displaced {}",
                    side.name(),
                    p.stats.served,
                    p.stats.refused,
                    p.stats.timed_out,
                    p.stats.displaced
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
