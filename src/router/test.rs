//! The router core driven in memory: two smoltcp hosts, one on each port, exchange real
//! TCP, UDP and ICMP with each other and with the router through [`Router::handle`] and
//! [`Router::poll_transmit`], on a fake clock (quinn-proto's `Pair`, for a router). The
//! seed scenarios, the 843 gate, reload, control requests and the timers run here as
//! plain `cargo test`, without root or TUN devices.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use super::*;
use crate::config::Config;
use crate::control::proto::{Request, Response};
use crate::nat::{Instant, Side, HEADROOM};
use crate::port::bridge::QueueDevice;
use crate::services::policy::{DEFAULT_POLICY, REQUEST};
use crate::wire::offload::Offload;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 101);
const SERVER_IN: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
const ROUTER_IN: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 100);
const ROUTER_OUT: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 186);
const REMOTE: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);

/// The hosts on one wire: a smoltcp interface holding their addresses.
struct Host {
    dev: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
}

impl Host {
    /// A host with these addresses (any family) and default routes.
    fn with(addrs: &[IpCidr], gw4: Option<Ipv4Addr>, gw6: Option<std::net::Ipv6Addr>) -> Host {
        let mut dev = QueueDevice::with_limit(1500, 4096);
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut dev,
            SmolInstant::ZERO,
        );
        iface.update_ip_addrs(|a| {
            for c in addrs {
                a.push(*c).unwrap();
            }
        });
        if let Some(g) = gw4 {
            iface.routes_mut().add_default_ipv4_route(g).unwrap();
        }
        if let Some(g) = gw6 {
            iface.routes_mut().add_default_ipv6_route(g).unwrap();
        }
        Host {
            dev,
            iface,
            sockets: SocketSet::new(vec![]),
        }
    }

    fn new(addrs: &[Ipv4Addr], prefix: u8, gateway: Ipv4Addr) -> Host {
        // Room for a burst of hundreds of connections from one host.
        let mut dev = QueueDevice::with_limit(1500, 4096);
        let mut iface = Interface::new(
            IfaceConfig::new(HardwareAddress::Ip),
            &mut dev,
            SmolInstant::ZERO,
        );
        iface.update_ip_addrs(|a| {
            for addr in addrs {
                a.push(IpCidr::new(IpAddress::Ipv4(*addr), prefix)).unwrap();
            }
        });
        iface.routes_mut().add_default_ipv4_route(gateway).unwrap();
        Host {
            dev,
            iface,
            sockets: SocketSet::new(vec![]),
        }
    }

    fn tcp(&mut self) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        self.sockets.add(s)
    }

    fn connect(&mut self, to: (Ipv4Addr, u16), from: (Ipv4Addr, u16)) -> SocketHandle {
        self.connect_ip(
            (IpAddress::Ipv4(to.0), to.1),
            (IpAddress::Ipv4(from.0), from.1),
        )
    }

    fn connect_ip(&mut self, to: (IpAddress, u16), from: (IpAddress, u16)) -> SocketHandle {
        let h = self.tcp();
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, to, from)
            .unwrap();
        h
    }

    fn listen(&mut self, port: u16) -> SocketHandle {
        let h = self.tcp();
        self.sockets.get_mut::<tcp::Socket>(h).listen(port).unwrap();
        h
    }

    fn sock(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    fn send(&mut self, h: SocketHandle, data: &[u8]) {
        assert_eq!(self.sock(h).send_slice(data).unwrap(), data.len());
    }

    fn received(&mut self, h: SocketHandle) -> Vec<u8> {
        let mut out = vec![0u8; 4096];
        let s = self.sock(h);
        let n = if s.can_recv() {
            s.recv_slice(&mut out).unwrap()
        } else {
            0
        };
        out.truncate(n);
        out
    }

    fn remote(&mut self, h: SocketHandle) -> Option<IpEndpoint> {
        self.sock(h).remote_endpoint()
    }
}

/// The README lab in memory: the inside hosts (client and DNAT target), the router, and
/// the outside host, on a clock stepped by [`Lab::step`].
struct Lab {
    router: Router,
    inside: Host,
    outside: Host,
    now: Instant,
    /// Every packet the router wrote, with its port (for asserting on what crossed).
    wire: Vec<(Side, Vec<u8>)>,
    /// What the packets handed to the router cost it (for the hot-path test).
    hot: Hot,
    /// Free bytes before each packet handed to the router: [`HEADROOM`], as the driver
    /// reads them.
    room: usize,
}

/// The rounds [`Lab::hot_turns`] counts.
const HOT_TURNS: u64 = 37;

/// Counts of what forwarding cost since the last [`Hot::default`], by the port the
/// packets came in (`[inside, outside]`).
#[derive(Debug, Default, PartialEq)]
struct Hot {
    /// Packets handed to [`Router::handle`].
    handled: [u64; 2],
    /// Of those, packets it rewrote in the buffer they came in (what it returned).
    in_place: [u64; 2],
    /// Packets taken from [`Router::poll_transmit`] (made or copied by the router), by
    /// the port they leave by.
    made: [u64; 2],
    /// Allocations made inside [`Router::handle`].
    allocations: [u64; 2],
}

impl Lab {
    fn new(cfg: Config) -> Lab {
        Lab {
            router: Router::new(cfg, Instant::ZERO, 7),
            inside: Host::new(&[CLIENT, SERVER_IN], 24, ROUTER_IN),
            outside: Host::new(&[REMOTE], 24, ROUTER_OUT),
            now: Instant::ZERO,
            wire: Vec::new(),
            hot: Hot::default(),
            room: HEADROOM,
        }
    }

    /// Runs both hosts and the router until nothing moves, then advances the clock.
    fn step(&mut self, by: Duration) {
        for _ in 0..64 {
            let smol = SmolInstant::from_millis(self.now.millis() as i64);
            self.inside
                .iface
                .poll(smol, &mut self.inside.dev, &mut self.inside.sockets);
            self.outside
                .iface
                .poll(smol, &mut self.outside.dev, &mut self.outside.sockets);
            let mut moved = false;
            for side in SIDES {
                let host = match side {
                    Side::Inside => &mut self.inside,
                    Side::Outside => &mut self.outside,
                };
                let sent: Vec<Vec<u8>> = host.dev.tx.drain(..).collect();
                for p in sent {
                    moved = true;
                    let now = self.now;
                    let mut buf = vec![0xa5; self.room];
                    buf.extend_from_slice(&p);
                    let (at, before) = (self.room, crate::testalloc::allocations());
                    let w = self
                        .router
                        .handle_in(side, &mut buf, at, Ok(Offload::NONE), now);
                    let i = side.index();
                    self.hot.allocations[i] += crate::testalloc::allocations() - before;
                    self.hot.handled[i] += 1;
                    if let Some(w) = w {
                        self.hot.in_place[i] += 1;
                        assert_eq!(w.offload, Offload::NONE);
                        self.deliver(w.port, w.bytes(&buf).to_vec());
                    }
                    self.flush();
                }
            }
            self.flush();
            if !moved {
                break;
            }
        }
        self.now = self.now + by;
        if self.router.poll_timeout().is_some_and(|t| t <= self.now) {
            self.router.handle_timeout(self.now);
        }
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(t) = self.router.poll_transmit(self.now) {
            self.hot.made[t.port.index()] += 1;
            self.deliver(t.port, t.packet);
        }
    }

    fn deliver(&mut self, port: Side, packet: Vec<u8>) {
        let host = match port {
            Side::Inside => &mut self.inside,
            Side::Outside => &mut self.outside,
        };
        host.dev.deliver(&packet);
        self.wire.push((port, packet));
    }

    /// Both seed scenarios' connections, opening: the inside client to the outside web
    /// server on 80, and the outside client to the port forward 8888 -> the inside
    /// server's 9999. Returns (web server, browser, inside server, outside client).
    fn seed_connections(&mut self) -> (SocketHandle, SocketHandle, SocketHandle, SocketHandle) {
        let web = self.outside.listen(80);
        let browser = self.inside.connect((REMOTE, 80), (CLIENT, 40000));
        let server = self.inside.listen(9999);
        let client = self.outside.connect((ROUTER_OUT, 8888), (REMOTE, 43088));
        (web, browser, server, client)
    }

    /// What forwarding costs over [`HOT_TURNS`] rounds of `turn`, after three to warm up
    /// (sessions made, queues grown once).
    fn hot_turns(&mut self, turn: impl Fn(&mut Lab, u8)) -> Hot {
        for i in 0..3 {
            turn(self, i);
        }
        self.hot = Hot::default();
        for i in 3..3 + HOT_TURNS as u8 {
            turn(self, i);
        }
        std::mem::take(&mut self.hot)
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step(Duration::from_millis(10));
        }
    }

    fn control(&mut self, req: Request) -> Response {
        self.router
            .handle_control(req, self.now, &mut || anyhow::bail!("no config file"))
    }
}

fn v4(e: Option<IpEndpoint>) -> (Ipv4Addr, u16) {
    let e = e.expect("connected");
    match e.addr {
        IpAddress::Ipv4(a) => (a, e.port),
        IpAddress::Ipv6(a) => panic!("an IPv6 endpoint {a}"),
    }
}

#[test]
fn seed_scenario_napt_the_inside_client_browses_out() {
    let mut lab = Lab::new(Config::lab());
    let server = lab.outside.listen(80);
    let client = lab.inside.connect((REMOTE, 80), (CLIENT, 40000));
    lab.run(5);
    assert!(
        lab.outside.sock(server).is_active(),
        "the handshake went through"
    );
    // The web server sees the router's outside address, and the port preserved.
    assert_eq!(v4(lab.outside.remote(server)), (ROUTER_OUT, 40000));
    lab.inside.send(client, b"GET / HTTP/1.0\r\n\r\n");
    lab.run(3);
    assert_eq!(lab.outside.received(server), b"GET / HTTP/1.0\r\n\r\n");
    lab.outside.send(server, b"hello");
    lab.run(3);
    assert_eq!(lab.inside.received(client), b"hello");
    let rows = lab.router.table_rows(lab.now);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].inside.as_str(), rows[0].state.as_str()),
        ("192.168.122.101:40000", "ESTABLISHED")
    );
}

#[test]
fn seed_scenario_dnat_8888_reaches_the_inside_server_on_9999() {
    let mut lab = Lab::new(Config::lab());
    let server = lab.inside.listen(9999);
    let client = lab.outside.connect((ROUTER_OUT, 8888), (REMOTE, 43088));
    lab.run(5);
    // The server sees the client's real address; the client sees only the router.
    assert_eq!(v4(lab.inside.remote(server)), (REMOTE, 43088));
    assert_eq!(v4(lab.outside.remote(client)), (ROUTER_OUT, 8888));
    // The SYN left the inside port with the destination rewritten and the TTL one lower.
    let (_, syn) = lab
        .wire
        .iter()
        .find(|(side, _)| *side == Side::Inside)
        .expect("the SYN crossed");
    assert_eq!(&syn[16..20], &SERVER_IN.octets());
    assert_eq!(syn[8], 63, "TTL one lower");
    lab.outside.send(client, b"ping");
    lab.run(3);
    assert_eq!(lab.inside.received(server), b"ping");
    lab.inside.send(server, b"pong");
    lab.run(3);
    assert_eq!(lab.outside.received(client), b"pong");
}

#[test]
fn seed_scenario_dnat_with_no_listener_the_rst_comes_back_translated() {
    let mut lab = Lab::new(Config::lab());
    let client = lab.outside.connect((ROUTER_OUT, 8888), (REMOTE, 43089));
    lab.run(5);
    assert_eq!(
        lab.outside.sock(client).state(),
        tcp::State::Closed,
        "reset"
    );
    let rst = lab
        .wire
        .iter()
        .filter(|(side, _)| *side == Side::Outside)
        .map(|(_, p)| p)
        .find(|p| p[9] == 6 && p[20 + 13] & 0x04 != 0)
        .expect("an RST reached the client");
    assert_eq!(
        &rst[12..16],
        &ROUTER_OUT.octets(),
        "from the router's address"
    );
    assert_eq!(u16::from_be_bytes([rst[20], rst[21]]), 8888, "and port");
}

/// Asks for the policy on `to`:843 from `host`; returns what came back and whether the
/// server closed.
fn ask_policy(
    lab: &mut Lab,
    from_inside: bool,
    to: Ipv4Addr,
    from: (Ipv4Addr, u16),
) -> (Vec<u8>, bool) {
    let host = if from_inside {
        &mut lab.inside
    } else {
        &mut lab.outside
    };
    let h = host.connect((to, 843), from);
    lab.run(3);
    let host = if from_inside {
        &mut lab.inside
    } else {
        &mut lab.outside
    };
    let mut req = REQUEST.to_vec();
    req.push(0);
    host.send(h, &req);
    lab.run(5);
    let host = if from_inside {
        &mut lab.inside
    } else {
        &mut lab.outside
    };
    let got = host.received(h);
    let closed = !host.sock(h).may_recv();
    (got, closed)
}

#[test]
fn seed_scenario_policy_on_843_from_both_sides() {
    let mut lab = Lab::new(Config::lab());
    let mut want = DEFAULT_POLICY.as_bytes().to_vec();
    want.push(0);
    assert_eq!(
        ask_policy(&mut lab, false, ROUTER_OUT, (REMOTE, 50000)),
        (want.clone(), true)
    );
    assert_eq!(
        ask_policy(&mut lab, true, ROUTER_IN, (CLIENT, 50001)),
        (want, true)
    );
    let c = lab.router.counters();
    assert_eq!(c.policy.iter().map(|p| p.served).sum::<u64>(), 2);
}

#[test]
fn the_843_gate_drops_a_syn_no_socket_can_take_then_serves_its_retry() {
    // A pool that may not grow past 64 sockets.
    let mut s = Config::lab().settings;
    s.policy_max_clients = Some(64);
    let mut lab = Lab::new(s.resolve().unwrap());
    // Fill the outside pool with connections that never ask, all younger than the
    // 250 ms during which a connection may not be displaced.
    let idle: Vec<_> = (0..64)
        .map(|i| lab.outside.connect((ROUTER_OUT, 843), (REMOTE, 30000 + i)))
        .collect();
    lab.step(Duration::from_millis(1));
    assert!(idle.iter().all(|h| lab.outside.sock(*h).is_active()));
    let late = lab.outside.connect((ROUTER_OUT, 843), (REMOTE, 31000));
    lab.step(Duration::from_millis(1));
    let busy = |lab: &Lab| lab.router.counters().policy[1].busy;
    assert!(busy(&lab) >= 1, "the SYN was dropped, counted as busy");
    assert_eq!(
        lab.outside.sock(late).state(),
        tcp::State::SynSent,
        "not reset"
    );
    // Its retransmission, once older connections may be displaced, is served.
    for _ in 0..300 {
        lab.step(Duration::from_millis(10));
        if lab.outside.sock(late).state() == tcp::State::Established {
            break;
        }
    }
    assert_eq!(lab.outside.sock(late).state(), tcp::State::Established);
    let mut req = REQUEST.to_vec();
    req.push(0);
    lab.outside.send(late, &req);
    lab.run(5);
    assert!(lab.outside.received(late).starts_with(b"<?xml"));
    assert!(lab.router.counters().policy[1].displaced >= 1);
}

/// Issue 18's "no allocation and no copy per packet on the hot path", and ARCHITECTURE's
/// "forwarding copies nothing": once its sessions exist, every packet of NAPT'd TCP, a
/// port forward, UDP both ways and ping is rewritten in the buffer it came in, and the
/// router allocates nothing for it.
#[test]
fn forwarding_established_flows_allocates_nothing_and_copies_nothing() {
    let mut lab = Lab::new(Config::lab());
    let (web, browser, forwarded, visitor) = lab.seed_connections();
    let udp_in = udp_socket(&mut lab.inside, 5353);
    let udp_out = udp_socket(&mut lab.outside, 53);
    let turn = |lab: &mut Lab, i: u8| {
        let msg = [b'a' + i % 26; 100];
        lab.inside.send(browser, &msg);
        lab.outside.send(web, &msg);
        lab.outside.send(visitor, &msg);
        lab.inside.send(forwarded, &msg);
        lab.inside
            .sockets
            .get_mut::<udp::Socket>(udp_in)
            .send_slice(&msg, (IpAddress::Ipv4(REMOTE), 53))
            .unwrap();
        lab.inside.dev.tx.push_back(echo_request(CLIENT, REMOTE, 7));
        lab.run(2);
        // The outside UDP host answers whoever asked (the router's outside address).
        for (d, from) in udp_received(&mut lab.outside, udp_out) {
            lab.outside
                .sockets
                .get_mut::<udp::Socket>(udp_out)
                .send_slice(&d, from)
                .unwrap();
        }
        lab.run(2);
        for (h, s) in [
            (browser, true),
            (forwarded, true),
            (web, false),
            (visitor, false),
        ] {
            let host = if s { &mut lab.inside } else { &mut lab.outside };
            assert_eq!(host.received(h), msg, "turn {i}");
        }
        assert_eq!(udp_received(&mut lab.inside, udp_in).len(), 1, "turn {i}");
    };
    lab.run(5);
    let hot = lab.hot_turns(turn);
    // Each turn, each way: two TCP segments and two ACKs, a datagram, a ping or its reply.
    assert_eq!(hot.handled, [HOT_TURNS * 6, HOT_TURNS * 6], "{hot:?}");
    assert_eq!(
        hot.in_place, hot.handled,
        "every packet forwarded in place: {hot:?}"
    );
    assert_eq!(hot.made, [0, 0], "nothing made or copied: {hot:?}");
    assert_eq!(hot.allocations, [0, 0], "nothing allocated: {hot:?}");
}

/// An ICMP echo request from `src` to `dst`, identifier `id`.
fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    crate::wire::ipv4::emit_header(&mut p, 0, 28, 1, true, 64, 1, src, dst);
    p[20] = 8; // echo request, code 0
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[26..28].copy_from_slice(&1u16.to_be_bytes()); // sequence
    let c = crate::wire::checksum::checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn a_burst_of_300_policy_clients_is_served_at_once() {
    let mut lab = Lab::new(Config::lab());
    let clients: Vec<_> = (0..300)
        .map(|i| lab.outside.connect((ROUTER_OUT, 843), (REMOTE, 20000 + i)))
        .collect();
    // Well within the 1 s a dropped SYN would cost: every one found a socket.
    lab.run(5);
    let mut req = REQUEST.to_vec();
    req.push(0);
    for h in &clients {
        assert_eq!(lab.outside.sock(*h).state(), tcp::State::Established);
        lab.outside.send(*h, &req);
    }
    lab.run(3);
    for h in &clients {
        assert!(lab.outside.received(*h).starts_with(b"<?xml"));
    }
    let p = &lab.router.counters().policy[1];
    assert_eq!((p.served, p.busy, p.displaced), (300, 0, 0));
}

#[test]
fn the_router_answers_ping_and_closed_ports() {
    let mut lab = Lab::new(Config::lab());
    // Ping to each router address from each side: an echo reply from that address.
    for (side, src, dst) in [
        (Side::Outside, REMOTE, ROUTER_OUT),
        (Side::Inside, CLIENT, ROUTER_IN),
        (Side::Inside, CLIENT, ROUTER_OUT),
    ] {
        let mut ping = echo_request(src, dst, 77);
        let now = lab.now;
        assert_eq!(
            lab.router.handle(side, &mut ping, Ok(Offload::NONE), now),
            None
        );
        let reply = lab.router.poll_transmit(now).expect("an echo reply");
        assert_eq!(reply.port, side);
        let p = &reply.packet;
        assert_eq!(
            (&p[12..16], &p[16..20]),
            (&dst.octets()[..], &src.octets()[..])
        );
        assert_eq!((p[20], u16::from_be_bytes([p[24], p[25]])), (0, 77));
    }
    // A closed TCP port on the router: RST.
    let h = lab.outside.connect((ROUTER_OUT, 7), (REMOTE, 40001));
    lab.run(3);
    assert_eq!(lab.outside.sock(h).state(), tcp::State::Closed);
    // A closed UDP port: ICMP port unreachable.
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 512]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 512]);
    let u = lab.outside.sockets.add(udp::Socket::new(rx, tx));
    let s = lab.outside.sockets.get_mut::<udp::Socket>(u);
    s.bind(40002).unwrap();
    s.send_slice(b"anyone?", (IpAddress::Ipv4(ROUTER_OUT), 9))
        .unwrap();
    lab.run(3);
    assert!(lab
        .wire
        .iter()
        .any(|(side, p)| *side == Side::Outside && p[9] == 1 && p[20] == 3 && p[21] == 3));
}

#[test]
fn reload_applies_at_once_and_refuses_what_needs_a_restart() {
    let mut lab = Lab::new(Config::lab());
    let mut s = Config::lab().settings;
    s.udp_timeout = Some(30);
    s.dnat = Some(vec![]);
    let shorter = s.resolve().unwrap();
    let r = lab
        .router
        .handle_control(Request::Reload, lab.now, &mut || Ok(shorter.clone()));
    let Response::Message(m) = r else {
        panic!("{r:?}")
    };
    assert!(m.message.contains("0 dnat rule(s)") && m.message.contains("udp 30s"));
    // 30 s is below RFC 4787's two minutes: allowed, and said, as at start.
    assert!(
        m.message.contains("\nwarning: ") && m.message.contains("RFC 4787"),
        "{}",
        m.message
    );
    assert_eq!(
        lab.router.nat().unwrap().table().timeouts.udp,
        Duration::from_secs(30)
    );
    // The port forward is gone: 8888 is the router's own, and it resets.
    let client = lab.outside.connect((ROUTER_OUT, 8888), (REMOTE, 43090));
    lab.run(3);
    assert_eq!(lab.outside.sock(client).state(), tcp::State::Closed);
    let mut s = Config::lab().settings;
    s.outside_addr = Some(vec!["172.16.1.187/24".into()]);
    let moved = s.resolve().unwrap();
    let r = lab
        .router
        .handle_control(Request::Reload, lab.now, &mut || Ok(moved.clone()));
    let Response::Error(e) = r else {
        panic!("{r:?}")
    };
    assert!(e.contains("restart"), "{e}");
    assert_eq!(
        lab.router.config().outside.cidr.unwrap().addr,
        ROUTER_OUT,
        "old config stays"
    );
    assert_eq!(lab.router.counters().control.refused, 1);
}

#[test]
fn dnat_rules_change_at_run_time_through_control_requests() {
    let mut lab = Lab::new(Config::lab());
    let add = |rule: &str| Request::DnatAdd { rule: rule.into() };
    assert_eq!(lab.control(add("udp:5000=192.168.122.73")), Response::Done);
    let Response::Error(e) = lab.control(add("tcp:8800-8900=192.168.122.5")) else {
        panic!("an overlapping rule was accepted")
    };
    assert!(e.contains("overlaps"), "{e}");
    let Response::Rules(r) = lab.control(Request::DnatList) else {
        panic!()
    };
    assert_eq!(
        r.rules,
        ["tcp:8888=192.168.122.73:9999", "udp:5000=192.168.122.73"]
    );
    let del = Request::DnatDel {
        rule: "tcp:8888=192.168.122.73:9999".into(),
    };
    assert_eq!(lab.control(del.clone()), Response::Done);
    assert!(matches!(lab.control(del), Response::Error(_)));
}

#[test]
fn runtime_port_forwards_are_kept_across_a_reload() {
    let mut lab = Lab::new(Config::lab());
    let add = Request::DnatAdd {
        rule: "udp:5000=192.168.122.73".into(),
    };
    assert_eq!(lab.control(add), Response::Done);
    let file = Config::lab();
    let r = lab
        .router
        .handle_control(Request::Reload, lab.now, &mut || Ok(file.clone()));
    assert!(matches!(r, Response::Message(_)), "{r:?}");
    let Response::Rules(r) = lab.control(Request::DnatList) else {
        panic!()
    };
    assert_eq!(
        r.rules,
        ["tcp:8888=192.168.122.73:9999", "udp:5000=192.168.122.73"]
    );
    assert_eq!(r.runtime, ["udp:5000=192.168.122.73"]);
    // A file whose rules now overlap the runtime one: refused, naming it.
    let mut s = Config::lab().settings;
    s.dnat = Some(vec!["udp:4000-6000=192.168.122.5".into()]);
    let clash = s.resolve().unwrap();
    let Response::Error(e) = lab
        .router
        .handle_control(Request::Reload, lab.now, &mut || Ok(clash.clone()))
    else {
        panic!("a reload clashing with a runtime rule was accepted")
    };
    assert!(
        e.contains("overlaps") && e.contains("tunnat dnat add") && e.contains("udp:5000"),
        "{e}"
    );
}

#[test]
fn connections_carry_on_through_a_restart_with_the_saved_state() {
    let mut lab = Lab::new(Config::lab());
    let (web, browser, server, client) = lab.seed_connections();
    lab.run(5);
    assert_eq!(
        lab.control(Request::DnatAdd {
            rule: "udp:5000=192.168.122.73".into()
        }),
        Response::Done
    );
    let saved_at = 1_800_000_000_000;
    let bytes = lab.router.save_state(lab.now, saved_at).encode();
    // A new router process: another seed, another clock, the same configuration.
    let state = state::RouterState::decode(&bytes, 65536).unwrap();
    let start = Instant::from_secs(2_000_000);
    let mut router = Router::new(Config::lab(), start, 99);
    let msg = router.restore_state(state, start, saved_at + 1500).unwrap();
    assert!(
        msg.starts_with("2 session(s) restored, 0 timed out while stopped (1.5 s)"),
        "{msg}"
    );
    lab.router = router;
    lab.now = start;
    lab.inside.send(browser, b"GET /");
    lab.outside.send(client, b"ping");
    lab.run(3);
    assert_eq!(lab.outside.received(web), b"GET /");
    assert_eq!(lab.inside.received(server), b"ping");
    lab.outside.send(web, b"page");
    lab.inside.send(server, b"pong");
    lab.run(3);
    assert_eq!(lab.inside.received(browser), b"page");
    assert_eq!(lab.outside.received(client), b"pong");
    for (h, host) in [(browser, &mut lab.inside), (client, &mut lab.outside)] {
        assert_eq!(host.sock(h).state(), tcp::State::Established);
    }
    let Response::Rules(r) = lab.control(Request::DnatList) else {
        panic!()
    };
    assert_eq!(r.runtime, ["udp:5000=192.168.122.73"]);
    // No state for another router's addresses.
    let mut s = Config::lab().settings;
    s.outside_addr = Some(vec!["172.16.1.187/24".into()]);
    let mut other = Router::new(s.resolve().unwrap(), start, 1);
    let state = state::RouterState::decode(&bytes, 65536).unwrap();
    let e = other.restore_state(state, start, saved_at).unwrap_err();
    assert!(e.to_string().contains("outside 172.16.1.186/24"), "{e}");
}

#[test]
fn an_idle_router_sleeps_and_expiry_is_exact() {
    let mut lab = Lab::new(Config::lab());
    lab.run(1);
    assert_eq!(lab.router.poll_timeout(), None, "nothing to wake up for");
    // At t = 10 ms the client opens to a remote port nobody listens on: the remote's
    // RST makes the session transitory (RFC 7857: 240 s after the RST).
    lab.inside.connect((REMOTE, 80), (CLIENT, 40003));
    lab.run(1);
    let last_packet = Instant::from_millis(10);
    let due = lab.router.poll_timeout().expect("a session to expire");
    assert!(due > lab.now, "never a deadline in the past");
    let mut t = lab.now;
    while let Some(next) = lab.router.poll_timeout() {
        assert!(next > t, "deadlines move forward");
        t = next;
        lab.router.handle_timeout(t);
        lab.flush();
        if lab.router.nat().unwrap().table().is_empty() {
            break;
        }
    }
    assert!(lab.router.nat().unwrap().table().is_empty());
    assert_eq!(
        t,
        last_packet + Duration::from_secs(240),
        "expired at the instant due"
    );
}

#[test]
fn the_stats_answer_has_every_counter_under_its_usual_name() {
    let mut lab = Lab::new(Config::lab());
    let server = lab.outside.listen(80);
    lab.inside.connect((REMOTE, 80), (CLIENT, 40004));
    lab.run(3);
    assert!(lab.outside.sock(server).is_active());
    let r = lab.control(Request::Stats);
    let line = r.to_json();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((v["ok"].as_bool(), v["v"].as_u64()), (Some(true), Some(1)));
    let nat = &v["nat"];
    for key in [
        "forwarded_out",
        "forwarded_in",
        "local",
        "hairpinned",
        "fragments_held",
        "reassembled",
        "fragmented",
        "icmp_errors_sent",
        "icmp_errors_translated",
        "gso_forwarded",
        "held_syns_overflowed",
        "sessions",
        "mappings",
        "sessions_created",
        "sessions_expired",
        "sessions_evicted",
        "mappings_created",
        "mappings_released",
        "reassembly_pending",
        "reassembly_timed_out",
        "reassembly_evicted",
    ] {
        assert!(nat[key].is_u64(), "nat.{key} in {line}");
    }
    assert!(nat["drops"].is_object());
    assert!(nat["forwarded_out"].as_u64() >= Some(2));
    assert_eq!(nat["sessions_created"].as_u64(), Some(1));
    for key in [
        "read_inside",
        "read_outside",
        "read_errors",
        "write_errors",
        "local_queue_overflows",
        "batches",
        "udp_joined",
        "coalesced",
    ] {
        assert!(v["io"][key].is_u64(), "io.{key}");
    }
    assert_eq!(v["control"]["requests"].as_u64(), Some(1));
    assert_eq!(v["policy"][1]["side"], "outside");
    assert!(v["policy"][1]["busy"].is_u64());
    // The client decodes what the router sent into the same struct.
    let back: crate::control::proto::Envelope<Counters> = serde_json::from_str(&line).unwrap();
    let Response::Counters(c) = r else { panic!() };
    assert_eq!(back.body, *c);
}

#[test]
fn the_table_answered_in_pieces_holds_every_session_once() {
    let mut lab = Lab::new(Config::lab());
    // 600 UDP sessions straight into the core.
    for port in 0..600u16 {
        let mut p = vec![0u8; 28];
        crate::wire::ipv4::emit_header(&mut p, 0, 28, 1, true, 64, 17, CLIENT, REMOTE);
        p[20..22].copy_from_slice(&(20000 + port).to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p[24..26].copy_from_slice(&8u16.to_be_bytes());
        assert!(lab
            .router
            .handle(Side::Inside, &mut p, Ok(Offload::NONE), Instant::ZERO)
            .is_some());
    }
    let mut cursor = lab.router.table_snapshot();
    let mut rows = Vec::new();
    let mut pieces = 0;
    while !cursor.is_done() {
        rows.extend(lab.router.table_rows_at(&mut cursor, 256, Instant::ZERO));
        pieces += 1;
    }
    assert_eq!((rows.len(), pieces), (600, 3));
    let mut inside: Vec<_> = rows.iter().map(|r| r.inside.clone()).collect();
    inside.sort();
    inside.dedup();
    assert_eq!(inside.len(), 600, "each session once");
    assert_eq!(
        rows,
        lab.router.table_rows(Instant::ZERO),
        "the same rows as the whole table"
    );
}

mod nat64 {
    //! NAT64 in memory: an IPv6-only inside host and an IPv4-only outside host.
    use std::net::Ipv6Addr;

    use super::*;
    use crate::wire::icmpv6;

    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x122, 0, 0, 0, 0, 0, 0x101);
    const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x122, 0, 0, 0, 0, 0, 0x73);
    const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x122, 0, 0, 0, 0, 0, 0x100);

    /// `prefix` + `v4`, for a /96 prefix.
    fn at(prefix: &str, v4: Ipv4Addr) -> Ipv6Addr {
        let p: Ipv6Addr = prefix.parse().unwrap();
        Ipv6Addr::from(u128::from(p) | u128::from(u32::from(v4)))
    }

    fn config(prefix: &str) -> Config {
        let mut c = Config::lab();
        c.inside.cidr = None;
        c.inside.cidr6 = Some("fd00:122::100/64".parse().unwrap());
        c.dnat = vec![];
        c.dnat6 = vec!["tcp:8888=[fd00:122::73]:9999".parse().unwrap()];
        c.nat64 = Some(format!("{prefix}/96").parse().unwrap());
        c.validate().unwrap();
        c
    }

    fn lab(prefix: &str) -> Lab {
        let c = config(prefix);
        Lab {
            router: Router::new(c, Instant::ZERO, 7),
            inside: Host::with(
                &[
                    IpCidr::new(IpAddress::Ipv6(CLIENT6), 64),
                    IpCidr::new(IpAddress::Ipv6(SERVER6), 64),
                ],
                None,
                Some(ROUTER6),
            ),
            outside: Host::new(&[REMOTE], 24, ROUTER_OUT),
            now: Instant::ZERO,
            wire: Vec::new(),
            hot: Hot::default(),
            room: HEADROOM,
        }
    }

    fn echo6(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, id: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; 48 + len];
        icmpv6::emit_header(&mut p, (8 + len) as u16, 58, hop, src, dst);
        p[40] = 128;
        p[44..46].copy_from_slice(&id.to_be_bytes());
        p[46..48].copy_from_slice(&1u16.to_be_bytes());
        for (i, b) in p[48..].iter_mut().enumerate() {
            *b = i as u8;
        }
        icmpv6::set_checksum(src, dst, &mut p[40..]);
        p
    }

    fn v6_src_dst(p: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
        let a = |i: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&p[i..i + 16]).unwrap());
        (a(8), a(24))
    }

    /// The NAT64 lab (prefix 64:ff9b:1::) with the IPv6 client connected through it to a
    /// web server on the IPv4 outside host: the lab, the server's socket, the client's.
    fn browsing() -> (Lab, SocketHandle, SocketHandle) {
        let mut lab = lab("64:ff9b:1::");
        let server = lab.outside.listen(80);
        let to = at("64:ff9b:1::", REMOTE);
        let client = lab
            .inside
            .connect_ip((IpAddress::Ipv6(to), 80), (IpAddress::Ipv6(CLIENT6), 40000));
        lab.run(5);
        (lab, server, client)
    }

    #[test]
    fn an_ipv6_only_host_browses_an_ipv4_server_through_the_prefix() {
        let (mut lab, server, client) = browsing();
        assert!(
            lab.outside.sock(server).is_active(),
            "the handshake went through"
        );
        // The IPv4 server sees the outside address, the port preserved.
        assert_eq!(v4(lab.outside.remote(server)), (ROUTER_OUT, 40000));
        lab.inside.send(client, b"GET / HTTP/1.0\r\n\r\n");
        lab.run(3);
        assert_eq!(lab.outside.received(server), b"GET / HTTP/1.0\r\n\r\n");
        lab.outside.send(server, b"hello over NAT64");
        lab.run(3);
        assert_eq!(lab.inside.received(client), b"hello over NAT64");
        // One session, in the IPv4 table, shown with the IPv6 host.
        let rows = lab.router.table_rows(lab.now);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].inside.as_str(), rows[0].remote.as_str()),
            ("[fd00:122::101]:40000", "172.16.1.1:80")
        );
        let c = lab.router.counters();
        let n64 = c.nat64.expect("NAT64 counters");
        assert!(
            n64.translated_6to4 >= 3 && n64.translated_4to6 >= 3,
            "{n64:?}"
        );
        assert_eq!(
            n64.bindings, 2,
            "the client, and the static forward's target"
        );
    }

    /// NAT64's hot path: an IPv6 packet becomes IPv4 in the buffer it came in (its header
    /// is 20 bytes shorter), and an IPv4 packet becomes IPv6 in its buffer too, its header
    /// written into the room the driver leaves before each packet. Nothing is allocated.
    /// Without that room, the IPv4 packet is copied once into the IPv6 packet sent: one
    /// allocation, taken from `poll_transmit`.
    #[test]
    fn nat64_translates_both_ways_in_place_given_room_in_front() {
        let (mut lab, server, client) = browsing();
        let turn = |lab: &mut Lab, i: u8| {
            let msg = [b'a' + i % 26; 100];
            lab.inside.send(client, &msg);
            lab.outside.send(server, &msg);
            lab.run(4);
            assert_eq!(lab.outside.received(server), msg, "turn {i}");
            assert_eq!(lab.inside.received(client), msg, "turn {i}");
        };
        let n = HOT_TURNS * 2; // each turn, each way: a segment and an ACK
        for room in [HEADROOM, 0] {
            lab.room = room;
            let hot = lab.hot_turns(turn);
            assert_eq!(hot.handled, [n, n], "room {room}: {hot:?}");
            if room > 0 {
                assert_eq!(hot.in_place, hot.handled, "room {room}: {hot:?}");
                assert_eq!(hot.made, [0, 0], "room {room}: {hot:?}");
                assert_eq!(hot.allocations, [0, 0], "room {room}: {hot:?}");
            } else {
                assert_eq!(hot.in_place, [n, 0], "room {room}: {hot:?}");
                assert_eq!(hot.made, [n, 0], "room {room}: {hot:?}");
                assert_eq!(hot.allocations, [0, n], "room {room}: {hot:?}");
            }
        }
    }

    #[test]
    fn a_static_forward_reaches_the_ipv6_server_from_ipv4() {
        let mut lab = lab("64:ff9b:1::");
        let server = lab.inside.listen(9999);
        let client = lab.outside.connect((ROUTER_OUT, 8888), (REMOTE, 43088));
        lab.run(5);
        let e = lab.inside.remote(server).expect("connected");
        // The IPv6 server sees the IPv4 client at prefix + its address.
        assert_eq!(
            (e.addr, e.port),
            (IpAddress::Ipv6(at("64:ff9b:1::", REMOTE)), 43088)
        );
        lab.outside.send(client, b"ping");
        lab.run(3);
        assert_eq!(lab.inside.received(server), b"ping");
        lab.inside.send(server, b"pong");
        lab.run(3);
        assert_eq!(lab.outside.received(client), b"pong");
        assert_eq!(v4(lab.outside.remote(client)), (ROUTER_OUT, 8888));
    }

    #[test]
    fn ping_through_the_prefix_and_to_the_router() {
        let mut lab = lab("64:ff9b:1::");
        for dst in [REMOTE, ROUTER_OUT] {
            let to = at("64:ff9b:1::", dst);
            let mut p = echo6(CLIENT6, to, 64, 99, 56);
            let now = lab.now;
            if let Some(w) = lab
                .router
                .handle(Side::Inside, &mut p, Ok(Offload::NONE), now)
            {
                let bytes = w.bytes(&p).to_vec();
                assert_eq!(w.port, Side::Outside);
                // ICMPv4 echo with the identifier the mapping gave, a good checksum.
                assert_eq!((bytes[9], bytes[20]), (1, 8));
                assert_eq!(crate::wire::checksum::checksum(&bytes[20..]), 0);
                lab.deliver(w.port, bytes);
            }
            lab.flush();
            lab.run(2);
            let reply = lab
                .wire
                .iter()
                .rev()
                .find(|(s, p)| *s == Side::Inside && p[0] >> 4 == 6 && p[40] == 129)
                .expect("an ICMPv6 echo reply")
                .1
                .clone();
            assert_eq!(v6_src_dst(&reply), (to, CLIENT6));
            assert!(icmpv6::checksum_ok(to, CLIENT6, &reply[40..]));
            assert_eq!(u16::from_be_bytes([reply[44], reply[45]]), 99);
            assert_eq!(&reply[48..], &p_payload(56)[..]);
            lab.wire.clear();
        }
    }

    fn p_payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| i as u8).collect()
    }

    #[test]
    fn the_well_known_prefix_refuses_private_ipv4_with_unreachable() {
        let mut lab = lab("64:ff9b::");
        let mut p = echo6(CLIENT6, at("64:ff9b::", REMOTE), 64, 5, 8);
        let now = lab.now;
        assert_eq!(
            lab.router
                .handle(Side::Inside, &mut p, Ok(Offload::NONE), now),
            None
        );
        let t = lab.router.poll_transmit(now).expect("an ICMPv6 error");
        assert_eq!(t.port, Side::Inside);
        assert_eq!(v6_src_dst(&t.packet), (ROUTER6, CLIENT6));
        assert_eq!((t.packet[40], t.packet[41]), (1, 0));
        assert_eq!(&t.packet[48..88], &p[..40], "it quotes the packet");
        let c = lab.router.counters().nat64.unwrap();
        assert_eq!(c.drops.get("nat64-refused-destination"), Some(&1));
        // A global address is translated.
        let g = Ipv4Addr::new(8, 8, 8, 8);
        let mut p = echo6(CLIENT6, at("64:ff9b::", g), 64, 6, 8);
        let w = lab
            .router
            .handle(Side::Inside, &mut p, Ok(Offload::NONE), now)
            .unwrap();
        assert_eq!(&w.bytes(&p)[16..20], &g.octets());
    }

    #[test]
    fn hop_limit_one_gets_time_exceeded_from_the_router() {
        let mut lab = lab("64:ff9b:1::");
        let mut p = echo6(CLIENT6, at("64:ff9b:1::", REMOTE), 1, 5, 8);
        let now = lab.now;
        assert_eq!(
            lab.router
                .handle(Side::Inside, &mut p, Ok(Offload::NONE), now),
            None
        );
        let t = lab.router.poll_transmit(now).expect("time exceeded");
        assert_eq!((t.packet[40], t.packet[41]), (3, 0));
        assert_eq!(v6_src_dst(&t.packet), (ROUTER6, CLIENT6));
        // Hop limit 2 leaves with TTL 1.
        let mut p = echo6(CLIENT6, at("64:ff9b:1::", REMOTE), 2, 5, 8);
        let w = lab
            .router
            .handle(Side::Inside, &mut p, Ok(Offload::NONE), now)
            .unwrap();
        assert_eq!(w.bytes(&p)[8], 1);
    }

    #[test]
    fn a_port_unreachable_comes_back_as_icmpv6_quoting_the_ipv6_packet() {
        let mut lab = lab("64:ff9b:1::");
        let to = at("64:ff9b:1::", REMOTE);
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 512]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 512]);
        let u = lab.inside.sockets.add(udp::Socket::new(rx, tx));
        let s = lab.inside.sockets.get_mut::<udp::Socket>(u);
        s.bind((IpAddress::Ipv6(CLIENT6), 40002)).unwrap();
        s.send_slice(b"anyone?", (IpAddress::Ipv6(to), 9)).unwrap();
        lab.run(3);
        let err = lab
            .wire
            .iter()
            .find(|(s, p)| *s == Side::Inside && p[0] >> 4 == 6 && p[40] == 1)
            .expect("an ICMPv6 destination unreachable")
            .1
            .clone();
        assert_eq!(err[41], 4, "port unreachable");
        assert_eq!(v6_src_dst(&err), (to, CLIENT6));
        assert!(icmpv6::checksum_ok(to, CLIENT6, &err[40..]));
        // The quoted packet is the client's own, as it sent it.
        let quoted = &err[48..];
        assert_eq!(v6_src_dst(quoted), (CLIENT6, to));
        assert_eq!(quoted[6], 17);
        assert_eq!(u16::from_be_bytes([quoted[40], quoted[41]]), 40002);
        let sent = lab
            .wire
            .iter()
            .find(|(s, p)| *s == Side::Outside && p[9] == 17)
            .unwrap()
            .1
            .clone();
        // The quoted UDP checksum is the one the client computed (translated back).
        let orig_csum = crate::wire::checksum::sum(&quoted[40..48], 0);
        assert!(orig_csum != 0 && sent.len() > 28);
    }

    #[test]
    fn a_narrow_outside_mtu_is_told_as_packet_too_big_plus_20() {
        let mut c = config("64:ff9b:1::");
        c.outside_mtu = Some(1400);
        let mut router = Router::new(c, Instant::ZERO, 7);
        let mut p = echo6(CLIENT6, at("64:ff9b:1::", REMOTE), 64, 5, 1452 - 48);
        // Over 1260 bytes once IPv4: DF set, so too big for 1400 bytes.
        assert_eq!(
            router.handle(Side::Inside, &mut p, Ok(Offload::NONE), Instant::ZERO),
            None
        );
        let t = router.poll_transmit(Instant::ZERO).expect("packet too big");
        assert_eq!((t.packet[40], t.packet[41]), (2, 0));
        assert_eq!(
            u32::from_be_bytes(t.packet[44..48].try_into().unwrap()),
            1420
        );
        let to = at("64:ff9b:1::", REMOTE);
        // From the router's inside address (its IPv4 core sent it from its inside
        // address), about the packet as the client sent it.
        assert_eq!(v6_src_dst(&t.packet), (ROUTER6, CLIENT6));
        assert!(icmpv6::checksum_ok(ROUTER6, CLIENT6, &t.packet[40..]));
        assert_eq!(v6_src_dst(&t.packet[48..]), (CLIENT6, to));
    }

    #[test]
    fn nat64_connections_carry_on_through_a_restart_with_the_saved_state() {
        let mut lab = lab("64:ff9b:1::");
        let web = lab.outside.listen(80);
        let to = at("64:ff9b:1::", REMOTE);
        let browser = lab
            .inside
            .connect_ip((IpAddress::Ipv6(to), 80), (IpAddress::Ipv6(CLIENT6), 40000));
        let server = lab.inside.listen(9999);
        let client = lab.outside.connect((ROUTER_OUT, 8888), (REMOTE, 43088));
        lab.run(5);
        let saved_at = 1_800_000_000_000;
        let bytes = lab.router.save_state(lab.now, saved_at).encode();
        // The file names the IPv6 hosts, never a stand-in.
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains("\"inside\":\"[fd00:122::101]:40000\""),
            "{text}"
        );
        assert!(!text.contains("\"0.0.0."), "{text}");
        let state = state::RouterState::decode(&bytes, 65536).unwrap();
        let start = Instant::from_secs(2_000_000);
        let mut router = Router::new(config("64:ff9b:1::"), start, 99);
        let msg = router.restore_state(state, start, saved_at + 1500).unwrap();
        assert!(msg.starts_with("2 session(s) restored"), "{msg}");
        lab.router = router;
        lab.now = start;
        lab.inside.send(browser, b"GET /");
        lab.outside.send(client, b"ping");
        lab.run(3);
        assert_eq!(lab.outside.received(web), b"GET /");
        assert_eq!(lab.inside.received(server), b"ping");
        lab.outside.send(web, b"page");
        lab.inside.send(server, b"pong");
        lab.run(3);
        assert_eq!(lab.inside.received(browser), b"page");
        assert_eq!(lab.outside.received(client), b"pong");
        // A dual-stack router with the same addresses but no --nat64 refuses the file.
        let mut c = config("64:ff9b:1::");
        c.nat64 = None;
        c.dnat6.clear();
        c.outside.cidr6 = Some("2001:db8:1::186/64".parse().unwrap());
        c.inside.cidr = Some("192.168.122.100/24".parse().unwrap());
        c.validate().unwrap();
        let mut plain = Router::new(c, start, 1);
        let mut state = state::RouterState::decode(&bytes, 65536).unwrap();
        state.outside6 = plain.config().outside.cidr6;
        state.inside = plain.config().inside.cidr;
        state.dnat.clear();
        let e = plain.restore_state(state, start, saved_at).unwrap_err();
        assert!(e.to_string().contains("NAT64"), "{e}");
    }

    #[test]
    fn a_forward_to_an_ipv6_host_added_at_run_time_serves_ipv4_clients() {
        let mut lab = lab("64:ff9b:1::");
        let server = lab.inside.listen(22);
        assert_eq!(
            lab.control(Request::DnatAdd {
                rule: "tcp:2222=[fd00:122::101]:22".into()
            }),
            Response::Done
        );
        let client = lab.outside.connect((ROUTER_OUT, 2222), (REMOTE, 43000));
        lab.run(5);
        assert!(
            lab.inside.sock(server).is_active(),
            "through the new forward"
        );
        lab.outside.send(client, b"ssh?");
        lab.run(3);
        assert_eq!(lab.inside.received(server), b"ssh?");
        // Deleted: the next connection finds the port closed (the router's RST).
        assert_eq!(
            lab.control(Request::DnatDel {
                rule: "tcp:2222=[fd00:122::101]:22".into()
            }),
            Response::Done
        );
        let late = lab.outside.connect((ROUTER_OUT, 2222), (REMOTE, 43001));
        lab.run(3);
        assert_eq!(lab.outside.sock(late).state(), tcp::State::Closed);
    }

    #[test]
    fn a_ping_in_ipv6_fragments_leaves_as_one_good_icmpv4_echo() {
        let mut c = config("64:ff9b:1::");
        c.outside_mtu = Some(9000);
        let mut router = Router::new(c, Instant::ZERO, 7);
        let to = at("64:ff9b:1::", REMOTE);
        let whole = echo6(CLIENT6, to, 64, 31, 2000);
        // Cut into two fragments: 1232 bytes of ICMPv6, then the rest.
        let frag = |from: usize, to_: usize, more: bool| {
            let body = &whole[40 + from..40 + to_];
            let mut f = whole[..40].to_vec();
            f[4..6].copy_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            f[6] = 44;
            let word = ((from / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&[58, 0]);
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(&0xabcd_u32.to_be_bytes());
            f.extend_from_slice(body);
            f
        };
        let n = whole.len() - 40;
        let (mut a, mut b) = (frag(0, 1232, true), frag(1232, n, false));
        // Out of order: the last first.
        assert_eq!(
            router.handle(Side::Inside, &mut b, Ok(Offload::NONE), Instant::ZERO),
            None
        );
        assert_eq!(
            router.handle(Side::Inside, &mut a, Ok(Offload::NONE), Instant::ZERO),
            None
        );
        let t = router
            .poll_transmit(Instant::ZERO)
            .expect("the echo, whole");
        assert_eq!(t.port, Side::Outside);
        let p = &t.packet;
        assert_eq!((p.len(), p[9], p[20]), (20 + n, 1, 8));
        assert_eq!(
            crate::wire::checksum::checksum(&p[20..]),
            0,
            "the ICMPv4 checksum is good"
        );
        assert_eq!(&p[28..], &whole[48..]);
    }

    #[test]
    fn a_large_ipv4_datagram_without_df_reaches_the_ipv6_host_in_fragments() {
        let mut lab = lab("64:ff9b:1::");
        let to = at("64:ff9b:1::", REMOTE);
        // The client's ping maps id 7; a 3000-byte echo reply without DF comes back.
        let mut p = echo6(CLIENT6, to, 64, 7, 8);
        let now = lab.now;
        lab.router
            .handle(Side::Inside, &mut p, Ok(Offload::NONE), now)
            .unwrap();
        let mut r = vec![0u8; 3000];
        crate::wire::ipv4::emit_header(&mut r, 0, 3000, 0x4242, false, 64, 1, REMOTE, ROUTER_OUT);
        r[20] = 0;
        r[24..26].copy_from_slice(&7u16.to_be_bytes());
        r[26..28].copy_from_slice(&1u16.to_be_bytes());
        let c = crate::wire::checksum::checksum(&r[20..]);
        r[22..24].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            lab.router
                .handle(Side::Outside, &mut r, Ok(Offload::NONE), now),
            None
        );
        let mut frags = Vec::new();
        while let Some(t) = lab.router.poll_transmit(now) {
            assert_eq!(t.port, Side::Inside);
            frags.push(t.packet);
        }
        assert_eq!(frags.len(), 3, "1232 + 1232 + 516 bytes of ICMPv6");
        let mut whole = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 1280);
            assert_eq!(f[6], 44, "a fragment header");
            let word = u16::from_be_bytes([f[42], f[43]]);
            assert_eq!(usize::from(word >> 3) * 8, whole.len());
            assert_eq!(word & 1 == 1, i < 2);
            assert_eq!(u32::from_be_bytes(f[44..48].try_into().unwrap()), 0x4242);
            whole.extend_from_slice(&f[48..]);
        }
        assert_eq!(whole[0], 129);
        assert!(
            icmpv6::checksum_ok(to, CLIENT6, &whole),
            "the reassembled checksum is good"
        );
    }
}

fn udp_socket(host: &mut Host, port: u16) -> SocketHandle {
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 8192]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 8192]);
    let u = host.sockets.add(udp::Socket::new(rx, tx));
    host.sockets.get_mut::<udp::Socket>(u).bind(port).unwrap();
    u
}

fn udp_received(host: &mut Host, u: SocketHandle) -> Vec<(Vec<u8>, IpEndpoint)> {
    let s = host.sockets.get_mut::<udp::Socket>(u);
    std::iter::from_fn(|| s.recv().ok().map(|(d, m)| (d.to_vec(), m.endpoint))).collect()
}

/// An inside host (CLIENT) asks with NAT-PMP for TCP `external` to its `internal`; the
/// socket it asked from, for the answer.
fn nat_pmp_map_tcp(lab: &mut Lab, internal: u16, external: u16, lifetime: u32) -> SocketHandle {
    let u = udp_socket(&mut lab.inside, 40100);
    let mut req = vec![0, 2, 0, 0];
    req.extend_from_slice(&internal.to_be_bytes());
    req.extend_from_slice(&external.to_be_bytes());
    req.extend_from_slice(&lifetime.to_be_bytes());
    let s = lab.inside.sockets.get_mut::<udp::Socket>(u);
    s.send_slice(&req, (IpAddress::Ipv4(ROUTER_IN), 5351))
        .unwrap();
    lab.run(3);
    u
}

fn port_control_lab() -> Lab {
    let mut cfg = Config::lab();
    cfg.pcp = true;
    cfg.nat_pmp = true;
    cfg.upnp = true;
    cfg.validate().unwrap();
    Lab::new(cfg)
}

#[test]
fn nat_pmp_maps_a_port_the_outside_then_reaches_and_it_expires() {
    let mut lab = port_control_lab();
    let u = nat_pmp_map_tcp(&mut lab, 9999, 7000, 120);
    let got = udp_received(&mut lab.inside, u);
    let (a, from) = got.iter().find(|(d, _)| d.len() == 16).expect("an answer");
    assert_eq!(v4(Some(*from)), (ROUTER_IN, 5351));
    assert_eq!(&a[..4], [0, 130, 0, 0]);
    assert_eq!(u16::from_be_bytes([a[10], a[11]]), 7000);
    // The outside host reaches the inside server (CLIENT, as the request came from the
    // host's first address) on 7000.
    let l = lab.inside.listen(9999);
    let c = lab.outside.connect((ROUTER_OUT, 7000), (REMOTE, 40200));
    lab.run(5);
    assert_eq!(lab.outside.sock(c).state(), tcp::State::Established);
    assert_eq!(lab.inside.sock(l).state(), tcp::State::Established);
    let Response::Rules(r) = lab.control(Request::DnatList) else {
        panic!()
    };
    assert_eq!(r.mapped.len(), 1);
    assert_eq!(r.mapped[0].source, "nat-pmp");
    // Expired after its lifetime: a new connection is refused.
    lab.step(Duration::from_secs(121));
    lab.run(2);
    let Response::Rules(r) = lab.control(Request::DnatList) else {
        panic!()
    };
    assert!(r.mapped.is_empty());
    let c2 = lab.outside.connect((ROUTER_OUT, 7000), (REMOTE, 40201));
    lab.run(5);
    assert_ne!(lab.outside.sock(c2).state(), tcp::State::Established);
    let counters = lab.router.counters();
    let pm = counters.portmap.unwrap();
    assert_eq!(
        (pm.nat_pmp_requests, pm.table.created, pm.table.expired),
        (1, 1, 1)
    );
}

#[test]
fn port_control_is_not_served_on_the_outside() {
    let mut lab = port_control_lab();
    let u = udp_socket(&mut lab.outside, 40100);
    let s = lab.outside.sockets.get_mut::<udp::Socket>(u);
    s.send_slice(&[0, 0], (IpAddress::Ipv4(ROUTER_OUT), 5351))
        .unwrap();
    s.send_slice(&[0, 0], (IpAddress::Ipv4(ROUTER_IN), 5351))
        .unwrap();
    s.send_slice(
        b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n",
        (IpAddress::Ipv4(ROUTER_OUT), 1900),
    )
    .unwrap();
    lab.run(3);
    assert!(udp_received(&mut lab.outside, u).is_empty());
    let c = lab.outside.connect((ROUTER_OUT, 5000), (REMOTE, 40300));
    lab.run(3);
    assert_ne!(lab.outside.sock(c).state(), tcp::State::Established);
}

#[test]
fn ssdp_search_is_answered_with_the_description_url_and_upnp_maps() {
    let mut lab = port_control_lab();
    let u = udp_socket(&mut lab.inside, 40100);
    let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n";
    let s = lab.inside.sockets.get_mut::<udp::Socket>(u);
    s.send_slice(
        search,
        (IpAddress::Ipv4(crate::portmap::upnp::ssdp::GROUP), 1900),
    )
    .unwrap();
    lab.run(3);
    let got = udp_received(&mut lab.inside, u);
    assert_eq!(got.len(), 1);
    let text = String::from_utf8(got[0].0.clone()).unwrap();
    assert!(
        text.contains("LOCATION: http://192.168.122.100:5000/rootDesc.xml"),
        "{text}"
    );
    assert_eq!(v4(Some(got[0].1)), (ROUTER_IN, 1900));
    // AddPortMapping over HTTP.
    let body = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewRemoteHost></NewRemoteHost><NewExternalPort>7001</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>9999</NewInternalPort><NewInternalClient>192.168.122.101</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>test</NewPortMappingDescription><NewLeaseDuration>600</NewLeaseDuration></u:AddPortMapping></s:Body></s:Envelope>";
    let req = format!("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.122.100:5000\r\nContent-Type: text/xml\r\nSOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let h = lab.inside.connect((ROUTER_IN, 5000), (CLIENT, 40400));
    lab.run(3);
    lab.inside.send(h, req.as_bytes());
    lab.run(5);
    let answer = String::from_utf8(lab.inside.received(h)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("AddPortMappingResponse"));
    let Response::Rules(r) = lab.control(Request::DnatList) else {
        panic!()
    };
    assert_eq!(r.mapped[0].rule, "tcp:7001=192.168.122.101:9999");
}

#[test]
fn explain_names_the_hosts_port_mapping() {
    let mut lab = port_control_lab();
    nat_pmp_map_tcp(&mut lab, 9999, 7000, 600);
    let syn = crate::nat::test::tcp(REMOTE, 40000, ROUTER_OUT, 7000, 0x02);
    let text = lab.router.explain(Side::Outside, &syn, lab.now);
    assert!(
        text.contains("made by the port mapping tcp:7000=192.168.122.101:9999 that 192.168.122.101 asked for with nat-pmp"),
        "{text}"
    );
}
