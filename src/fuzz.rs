//! Fuzzing entry points: each takes arbitrary bytes, drives one part of tunnat with them
//! and asserts what must hold for every input. The cargo-fuzz targets in `fuzz/` are
//! one-line wrappers; the unit tests below run the same functions over a seed corpus on a
//! stable toolchain, so a regression shows up in `cargo test` too.
//!
//! * [`translate`]: a sequence of packets through [`Nat::process_offload`] from both ports
//!   with a moving clock and timer sweeps, with or without TUN offload headers. Whatever comes out must be valid IPv4 with a good
//!   header checksum, leave with the right addresses, fit the port's MTU, and keep a
//!   transport checksum that was right on the way in right on the way out (RFC 1624).
//! * [`nat64`]: a sequence of packets through a NAT64 router ([`crate::router::Router`]
//!   with an IPv6-only inside and an IPv4-only outside): whatever it writes inside is
//!   valid IPv6 for the inside network, whatever it writes outside valid IPv4 from the
//!   outside address, each within its port's MTU, and a translated packet whose checksum
//!   was right on the way in has a right one on the way out (RFC 7915 sections 4.5, 5.5).
//! * [`port_control`]: NAT-PMP, PCP, SSDP and UPnP requests from inside hosts, with time
//!   passing: mappings only ever for the host that asked, on ports the policy allows.
//! * [`ftp`]: an FTP control connection through the helper, both ways, with gaps.
//! * [`gro`]: packets offered in turn to one port's UDP trains ([`crate::wire::gro`]) as
//!   the io_uring driver offers them, each train then split as the kernel splits a UDP GSO
//!   packet. Each flow's datagrams come out in the order they went in and as they went in
//!   (but for a renumbered IPv4 identification and a completed partial checksum), and a
//!   datagram whose complete checksum was wrong is never joined.
//! * [`policy_session`]: a client sends the bytes, in chunks, to the policy server over a
//!   smoltcp loopback. It gets the policy and a FIN if and only if its bytes begin with
//!   `<policy-file-request/>` and a NUL; otherwise nothing.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // assertions are the point

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::nat::{Cidr, DropReason, Instant, Nat, NatConfig, Side, Verdict};
use crate::services::policy::{self, PolicyServer};
use crate::wire::checksum;
use crate::wire::ipv4::{self, Check, Ipv4};
use crate::wire::ipv6::Ipv6;
use crate::wire::offload::{self, Offload, VNET_HDR_LEN};
use crate::wire::transport::{verify_l4_checksum, Protocol};

/// Feeds packets framed as `[control, length (2 bytes), bytes...]*` to a NAT. The first
/// byte picks the configuration (MTU, filtering, offloads, SYN cookies). Control bit 0 is the port (inside/outside), bit 7 asks to
/// repair the IPv4 header checksum first (so the fuzzer gets past validation), bit 6 runs
/// the timer sweep, bits 1-5 advance the clock.
pub fn translate(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let mut cfg = NatConfig::lab();
    for rule in [
        "tcp:8888=192.168.122.73:9999",
        "udp:5000-5002=192.168.122.73",
    ] {
        if let Ok(r) = rule.parse() {
            cfg.dnat.push(r);
        }
    }
    cfg.mtu = [1500, if setup & 1 != 0 { 576 } else { 1500 }];
    cfg.filtering = match (setup >> 1) % 3 {
        0 => crate::nat::Filtering::EndpointIndependent,
        1 => crate::nat::Filtering::AddressDependent,
        _ => crate::nat::Filtering::AddressAndPortDependent,
    };
    cfg.limits.max_sessions = 64;
    cfg.limits.max_mappings_per_host = 8;
    // The SYN proxy: answering SYNs to the port forwards with cookies from the fourth
    // half-open session on, for every one, or never.
    cfg.max_half_open = 4;
    cfg.syn_cookies = match (setup >> 4) % 3 {
        0 => crate::nat::SynCookies::Auto,
        1 => crate::nat::SynCookies::Always,
        _ => crate::nat::SynCookies::Off,
    };
    let (inside, outside) = (cfg.inside, cfg.outside);
    let mut nat6 = Nat::new(NatConfig {
        inside: "fd00:122::100/64".parse().unwrap_or(Cidr {
            addr: Ipv6Addr::LOCALHOST,
            prefix: 64,
        }),
        outside: "2001:db8:1::186/64".parse().unwrap_or(Cidr {
            addr: Ipv6Addr::LOCALHOST,
            prefix: 64,
        }),
        dnat: "tcp:8888=[fd00:122::73]:9999".parse().into_iter().collect(),
        port_maps: Vec::new(),
        ssdp: false,
        alg_ftp: false,
        nat64: false,
        mtu: cfg.mtu,
        clamp_mss: cfg.clamp_mss,
        timeouts: cfg.timeouts,
        filtering: cfg.filtering,
        local_tcp_ports: cfg.local_tcp_ports.clone(),
        limits: cfg.limits,
        port_hold: cfg.port_hold,
        port_parity: cfg.port_parity,
        icmp_limit: cfg.icmp_limit,
        seed: cfg.seed,
        max_half_open: cfg.max_half_open,
        syn_cookies: cfg.syn_cookies,
        mode: crate::nat::Mode::Napt,
    });
    let mut nat = Nat::new(cfg);
    let mut now_ms = 0u64;
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize % 2048).min(rest.len() - 3);
        let mut buf = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        let side = if ctl & 1 == 0 {
            Side::Inside
        } else {
            Side::Outside
        };
        now_ms += u64::from((ctl >> 1) & 0x1f) * 250;
        let now = Instant::from_millis(now_ms);
        if ctl & 0x80 != 0 {
            repair_ip_checksum(&mut buf);
        }
        ipv6_view(&buf);
        // With setup bit 3, each packet starts with a virtio_net_hdr, as read from a TUN
        // with offloads.
        let mut off = Offload::NONE;
        if setup & 8 != 0 {
            let Some(h) = buf.first_chunk::<VNET_HDR_LEN>() else {
                continue;
            };
            let Ok(o) = Offload::parse(h) else {
                continue; // the shell drops these
            };
            off = o;
            buf.drain(..VNET_HDR_LEN);
        }
        if buf.first().is_some_and(|b| b >> 4 == 6) {
            translate6(&mut nat6, side, &mut buf, off, now, ctl & 0x40 != 0);
            continue;
        }
        let l4_was_ok = off.csum.is_none() && l4_checksum_ok(&buf);
        let verdict = nat.process_offload(side, &mut buf, now, &mut off);
        if let (Verdict::Forward { len } | Verdict::Hairpin { len }, Some(p)) = (verdict, off.csum)
        {
            assert!(offload::complete(&mut buf[..len], p), "partial offsets fit");
        }
        match verdict {
            Verdict::Forward { len } => {
                let ip = valid(&buf[..len], "a forwarded packet");
                match side {
                    Side::Inside => assert_eq!(ip.src(), outside.addr, "source after NAPT"),
                    Side::Outside => assert!(inside.contains(ip.dst()), "inbound goes inside"),
                }
                assert!(len <= 1500 || off.gso.is_some(), "forwarded within the MTU");
                if l4_was_ok {
                    assert!(l4_checksum_ok(&buf[..len]), "a good checksum stays good");
                }
            }
            Verdict::Hairpin { len } => {
                let ip = valid(&buf[..len], "a hairpinned packet");
                assert_eq!(ip.src(), outside.addr, "hairpin source");
                assert!(inside.contains(ip.dst()), "hairpin destination");
            }
            Verdict::Local { len } => assert!(len <= buf.len()),
            Verdict::Reply(_) | Verdict::Emit { .. } | Verdict::Held | Verdict::Drop(_) => {}
        }
        let mtu = |to: Side| match to {
            Side::Inside => 1500,
            Side::Outside if setup & 1 != 0 => 576,
            Side::Outside => 1500,
        };
        while let Some(t) = nat.poll_transmit() {
            match verdict {
                Verdict::Reply(_) => {
                    valid(&t.packet, "an ICMP error from the router");
                    assert!(t.packet.len() <= 576, "ICMP errors fit 576 bytes");
                    assert_eq!(t.port, side, "an ICMP error goes back where it came from");
                }
                Verdict::Emit { to } => {
                    valid(&t.packet, "an emitted fragment");
                    assert_eq!(t.port, to, "fragments go where the verdict says");
                    assert!(t.packet.len() <= mtu(to), "fragment larger than the MTU");
                }
                // The SYN proxy answers for a port forward: a SYN-ACK with a cookie, an RST
                // or a window update to the client, the SYN or the ACK to the server.
                Verdict::Drop(DropReason::SynProxied) => {
                    let ip = valid(&t.packet, "a SYN proxy segment");
                    assert_eq!(ip.protocol(), 6, "the SYN proxy sends TCP");
                    let (from, to) = (ip.src() == outside.addr, inside.contains(ip.dst()));
                    syn_proxy_segment(t.port, from, to, l4_checksum_ok(&t.packet));
                }
                _ => panic!("{verdict:?} queued a packet"),
            }
        }
        if ctl & 0x40 != 0 {
            nat.handle_timeout(now, |_, _| {});
            while let Some(t) = nat.poll_transmit() {
                valid(&t.packet, "a timer's ICMP error");
            }
        }
    }
}

/// One packet through the IPv6 core: whatever it forwards is valid IPv6 with the right
/// addresses, within the MTU, with a good checksum kept good; its own errors fit 1280
/// bytes and go back where the packet came from; it never fragments or holds.
fn translate6(
    nat: &mut Nat<Ipv6Addr>,
    side: Side,
    buf: &mut [u8],
    mut off: Offload,
    now: Instant,
    timers: bool,
) {
    let (inside, outside) = (nat.config().inside, nat.config().outside);
    let mtu = nat.config().mtu;
    let l4_was_ok = off.csum.is_none() && l4_checksum_ok6(buf);
    let verdict = nat.process_offload(side, buf, now, &mut off);
    if let (Verdict::Forward { len } | Verdict::Hairpin { len }, Some(p)) = (verdict, off.csum) {
        assert!(offload::complete(&mut buf[..len], p), "partial offsets fit");
    }
    match verdict {
        Verdict::Forward { len } => {
            let ip = valid6(&buf[..len], "a forwarded IPv6 packet");
            match side {
                Side::Inside => assert_eq!(ip.src(), outside.addr, "source after NAT66"),
                Side::Outside => assert!(inside.contains(ip.dst()), "inbound goes inside"),
            }
            assert!(
                len <= mtu[side.other().index()] || off.gso.is_some(),
                "within the MTU"
            );
            if l4_was_ok {
                assert!(l4_checksum_ok6(&buf[..len]), "a good checksum stays good");
            }
        }
        Verdict::Hairpin { len } => {
            let ip = valid6(&buf[..len], "a hairpinned IPv6 packet");
            assert_eq!(ip.src(), outside.addr, "hairpin source");
            assert!(inside.contains(ip.dst()), "hairpin destination");
        }
        Verdict::Emit { .. } => panic!("IPv6 is never fragmented by the router"),
        Verdict::Local { len } => assert!(len <= buf.len()),
        Verdict::Reply(_) | Verdict::Drop(_) | Verdict::Held => {}
    }
    while let Some(t) = nat.poll_transmit() {
        match verdict {
            Verdict::Reply(_) => {
                valid6(&t.packet, "an ICMPv6 error from the router");
                assert!(
                    t.packet.len() <= crate::wire::icmpv6::MIN_MTU,
                    "errors fit 1280 bytes"
                );
                assert_eq!(t.port, side, "an error goes back where it came from");
            }
            // Fragments held until their first one came, now translated like it.
            Verdict::Forward { .. } => {
                let ip = valid6(&t.packet, "a released fragment");
                assert_eq!(t.port, side.other(), "released fragments go on");
                match side {
                    Side::Inside => assert_eq!(ip.src(), outside.addr, "fragment source"),
                    Side::Outside => assert!(inside.contains(ip.dst()), "fragment destination"),
                }
            }
            // The SYN proxy answers for a port forward (as in `translate`).
            Verdict::Drop(DropReason::SynProxied) => {
                let ip = valid6(&t.packet, "a SYN proxy segment");
                let (from, to) = (ip.src() == outside.addr, inside.contains(ip.dst()));
                syn_proxy_segment(t.port, from, to, l4_checksum_ok6(&t.packet));
            }
            _ => panic!("{verdict:?} queued a packet"),
        }
    }
    if timers {
        nat.handle_timeout(now, |_, _| {});
        while let Some(t) = nat.poll_transmit() {
            valid6(&t.packet, "a timer's ICMPv6 error");
        }
    }
}

/// What holds for a segment the SYN proxy sent by `port` (either family): a right
/// checksum, and it goes to the client from the outside address (`from_outside`) or to
/// the server on the inside network (`to_inside`).
fn syn_proxy_segment(port: Side, from_outside: bool, to_inside: bool, checksum_ok: bool) {
    assert!(checksum_ok, "the SYN proxy's checksums are right");
    match port {
        Side::Outside => assert!(from_outside, "to the client, from the outside address"),
        Side::Inside => assert!(to_inside, "to the server, on the inside network"),
    }
}

fn valid6<'a>(p: &'a [u8], what: &str) -> Ipv6<&'a [u8]> {
    match Ipv6::new_checked(p) {
        Ok(ip) => ip,
        Err(e) => panic!("{what} is not valid IPv6 ({e}): {p:02x?}"),
    }
}

/// Does the transport checksum of IPv6 packet `p` verify (TCP, UDP, ICMPv6)?
fn l4_checksum_ok6(p: &[u8]) -> bool {
    let Ok(ip) = Ipv6::new_checked(p) else {
        return false;
    };
    if !matches!(ip.protocol(), 6 | 17 | 58) || ip.is_fragment() {
        return false;
    }
    let l4 = ip.payload();
    let s = checksum::pseudo_header_sum_v6(ip.src(), ip.dst(), ip.protocol(), l4.len() as u32);
    checksum::fold(checksum::sum(l4, s)) == 0xffff
}

/// The IPv6 view of any bytes: refused, or consistent (the upper-layer header within the
/// datagram, the datagram within the buffer), and never a panic on a field read.
fn ipv6_view(p: &[u8]) {
    if let Ok(v) = crate::wire::ipv6::Ipv6::new_checked(p) {
        assert!(v.l4_offset() <= v.total_len() && v.total_len() <= p.len());
        assert!(
            v.l4_offset() - crate::wire::ipv6::HEADER_LEN
                <= crate::wire::ipv6::MAX_EXTENSION_BYTES + 8
        );
        let _ = (
            v.src(),
            v.dst(),
            v.hop_limit(),
            v.flow_label(),
            v.traffic_class(),
        );
        let _ = (
            v.protocol(),
            v.payload().len(),
            v.fragment(),
            v.is_fragment(),
        );
    }
}

fn valid<'a>(p: &'a [u8], what: &str) -> Ipv4<&'a [u8]> {
    match Ipv4::new_checked(p, Check::Full) {
        Ok(ip) => ip,
        Err(e) => panic!("{what} is not valid IPv4 ({e:?}): {p:02x?}"),
    }
}

fn repair_ip_checksum(buf: &mut [u8]) {
    let Some(&first) = buf.first() else {
        return;
    };
    let hl = usize::from(first & 0x0f) * 4;
    if let Some(header) = buf.get_mut(..hl) {
        ipv4::recompute_header_checksum(header);
    }
}

/// Is `p` an unfragmented TCP/UDP/ICMP datagram whose transport checksum verifies?
fn l4_checksum_ok(p: &[u8]) -> bool {
    let Ok(ip) = Ipv4::new_checked(p, Check::Full) else {
        return false;
    };
    let Some(proto) = Protocol::from_number(ip.protocol()) else {
        return false;
    };
    !ip.is_fragment()
        && (proto != Protocol::Udp || ip.payload().get(6..8) != Some(&[0, 0]))
        && verify_l4_checksum(proto, ip.src(), ip.dst(), ip.payload())
}

/// Sends `data` to the policy server in chunks (each chunk is `[length, bytes...]`) and
/// checks the answer.
pub fn policy_session(data: &[u8]) {
    const POLICY: &[u8] = b"<cross-domain-policy/>";
    let server_addr = IpAddress::v4(127, 0, 0, 1);
    let mut dev = Loopback::new(Medium::Ip);
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ip),
        &mut dev,
        SmolInstant::ZERO,
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(server_addr, 8));
    });
    let mut sockets = SocketSet::new(vec![]);
    let mut server = PolicyServer::new(
        &mut sockets,
        843,
        POLICY,
        Duration::from_secs(3),
        policy::DEFAULT_MAX_CLIENTS,
    );
    let client = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    );
    let client = sockets.add(client);
    let mut now = SmolInstant::ZERO;
    let conn =
        sockets
            .get_mut::<tcp::Socket>(client)
            .connect(iface.context(), (server_addr, 843), 40000);
    assert!(conn.is_ok(), "client connect");

    let mut step = |iface: &mut Interface, sockets: &mut SocketSet, now: SmolInstant| {
        for _ in 0..8 {
            iface.poll(now, &mut dev, sockets);
            if !server.service(sockets, now) {
                break;
            }
        }
    };
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut chunks = data;
    while let Some((&n, rest)) = chunks.split_first() {
        let n = (usize::from(n) % 64 + 1).min(rest.len());
        let (chunk, rest) = rest.split_at(n);
        chunks = rest;
        let s = sockets.get_mut::<tcp::Socket>(client);
        if s.can_send() {
            sent.extend_from_slice(&chunk[..s.send_slice(chunk).unwrap_or(0)]);
        }
        now += smoltcp::time::Duration::from_millis(1);
        step(&mut iface, &mut sockets, now);
        drain(sockets.get_mut::<tcp::Socket>(client), &mut received);
    }
    // Let the server answer, time out or close: 8 s covers twice the idle timeout.
    for _ in 0..160 {
        now += smoltcp::time::Duration::from_millis(50);
        step(&mut iface, &mut sockets, now);
        drain(sockets.get_mut::<tcp::Socket>(client), &mut received);
    }
    let s = sockets.get_mut::<tcp::Socket>(client);
    let asked = sent.iter().position(|b| *b == 0).map(|nul| &sent[..nul]) == Some(policy::REQUEST);
    if asked {
        let mut want = POLICY.to_vec();
        want.push(0);
        assert_eq!(
            received, want,
            "the policy, NUL-terminated, for {sent:02x?}"
        );
        assert!(!s.may_recv(), "a FIN after the policy");
    } else {
        assert!(received.is_empty(), "nothing for {sent:02x?}");
        assert!(!s.may_recv(), "closed after {sent:02x?}");
    }
}

/// Feeds packets framed as in [`translate`] to a NAT64 router: control bit 0 is the port,
/// bit 7 repairs the checksums first (IPv4 header; the transport checksum of TCP, UDP and
/// ICMP(v6)), bit 6 runs the timers, bits 1-5 advance the clock. Setup bit 3 gives each
/// packet [`crate::nat::HEADROOM`] bytes of room before it, as the driver does, so that
/// packets to IPv6 are translated in place.
pub fn nat64(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let mut cfg = crate::config::Config::lab();
    cfg.inside.cidr = None;
    cfg.inside.cidr6 = "fd00:122::100/64".parse().ok();
    cfg.dnat = vec![];
    cfg.dnat6 = "tcp:8888=[fd00:122::73]:9999".parse().into_iter().collect();
    cfg.nat64 = if setup & 1 != 0 {
        "64:ff9b::/96"
    } else {
        "64:ff9b:1::/96"
    }
    .parse()
    .ok();
    cfg.outside_mtu = Some(if setup & 2 != 0 { 1280 } else { 1500 });
    cfg.nat64_udp_zero_compute = setup & 4 == 0;
    let mtus = cfg.port_mtus();
    let outside = Ipv4Addr::new(172, 16, 1, 186);
    let inside6: crate::nat::Ipv6Cidr = "fd00:122::100/64".parse().unwrap();
    let mut router = crate::router::Router::new(cfg, Instant::ZERO, 7);
    let room = if setup & 8 != 0 {
        crate::nat::HEADROOM
    } else {
        0
    };
    let mut now = Instant::ZERO;
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let mut buf = vec![0xa5; room];
        buf.extend_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
        now = now + Duration::from_millis(u64::from(ctl >> 1 & 0x1f) * 997);
        if ctl & 0x80 != 0 {
            repair_checksums(&mut buf[room..]);
        }
        let side = if ctl & 1 == 0 {
            Side::Inside
        } else {
            Side::Outside
        };
        let was_ok = l4_checksum_ok_any(&buf[room..]);
        let mut out = Vec::new();
        if let Some(w) = router.handle_in(side, &mut buf, room, Ok(Offload::NONE), now) {
            assert_eq!(w.offload, Offload::NONE);
            out.push((w.port, w.bytes(&buf).to_vec(), true));
        }
        if ctl & 0x40 != 0 {
            router.handle_timeout(now);
        }
        while let Some(t) = router.poll_transmit(now) {
            out.push((t.port, t.packet, false));
        }
        for (port, p, in_place) in out {
            assert!(
                p.len() <= mtus[port.index()],
                "within the {port:?} MTU: {p:02x?}"
            );
            match port {
                Side::Inside => {
                    let ip = valid6(&p, "a packet written inside");
                    assert!(inside6.contains(ip.dst()), "for the inside network");
                }
                Side::Outside => {
                    let ip = valid(&p, "a packet written outside");
                    assert_eq!(ip.src(), outside, "from the outside address");
                }
            }
            // A packet translated in place (6 to 4, or 4 to 6 with room) keeps a good
            // checksum good.
            if in_place && was_ok && side != port {
                assert!(
                    l4_checksum_ok_any(&p),
                    "a good checksum stays good: {p:02x?}"
                );
            }
        }
    }
}

/// Makes the checksums of `p` right, so that a fuzzer's packet gets past validation.
fn repair_checksums(p: &mut [u8]) {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 15) * 4;
            if ihl >= 20 && ihl <= p.len() {
                ipv4::recompute_header_checksum(&mut p[..ihl]);
                if let Ok(ip) = Ipv4::new_checked(&p[..], Check::Full) {
                    let (s, d, proto, tl) = (ip.src(), ip.dst(), ip.protocol(), ip.total_len());
                    if !ip.is_fragment() {
                        fix_l4(&mut p[ihl..tl], proto, |l4| {
                            if proto == 1 {
                                0
                            } else {
                                checksum::pseudo_header_sum(s, d, proto, l4.len() as u16)
                            }
                        });
                    }
                }
            }
        }
        Some(6) => {
            if let Ok(ip) = Ipv6::new_checked(&p[..]) {
                let (s, d, proto, at, tl) = (
                    ip.src(),
                    ip.dst(),
                    ip.protocol(),
                    ip.l4_offset(),
                    ip.total_len(),
                );
                if !ip.is_fragment() {
                    fix_l4(&mut p[at..tl], proto, |l4| {
                        checksum::pseudo_header_sum_v6(s, d, proto, l4.len() as u32)
                    });
                }
            }
        }
        _ => {}
    }
}

fn fix_l4(l4: &mut [u8], proto: u8, pseudo: impl Fn(&[u8]) -> u32) {
    let at = match proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return,
    };
    if l4.len() < at + 2 {
        return;
    }
    l4[at..at + 2].fill(0);
    let c = !checksum::fold(checksum::sum(l4, pseudo(l4)));
    let c = if c == 0 && proto == 17 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Does the transport checksum of an unfragmented IPv4 or IPv6 packet verify?
fn l4_checksum_ok_any(p: &[u8]) -> bool {
    match p.first().map(|b| b >> 4) {
        Some(4) => match Ipv4::new_checked(p, Check::Full) {
            Ok(ip) if !ip.is_fragment() => match ip.protocol() {
                1 => checksum::checksum(ip.payload()) == 0,
                6 | 17 => l4_checksum_ok(p),
                _ => false,
            },
            _ => false,
        },
        Some(6) => l4_checksum_ok6(p),
        _ => false,
    }
}

fn drain(s: &mut tcp::Socket, into: &mut Vec<u8>) {
    let mut buf = [0u8; 1024];
    while s.can_recv() {
        match s.recv_slice(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => into.extend_from_slice(&buf[..n]),
        }
    }
}

/// Requests to port control, framed as `[kind, length (2 bytes), bytes...]*`: kind bits
/// 0-1 pick the service (0: a datagram to UDP 5351, NAT-PMP or PCP by its version; 1: an
/// SSDP search; 2: an HTTP request to UPnP, SOAP if it is a POST; 3: time passes and
/// mappings expire), bits 2-3 the inside host that sends it. What must hold: no panic;
/// answers no larger than PCP's 1100 bytes and the request plus PCP's 24-byte header;
/// every mapping targets the host that asked, on an external port the policy allows
/// (never below 1024 by default, never the port forward's 8888), at most the per-host
/// limit per host, and none outlives its expiry; every SOAP answer is well-formed XML.
pub fn port_control(data: &[u8]) {
    use crate::portmap::upnp::{http, soap, ssdp};
    use crate::portmap::{natpmp, pcp, policy::Policy, Limits, PortMaps};
    let mut cfg = NatConfig::lab();
    if let Ok(r) = "tcp:8888=192.168.122.73:9999".parse() {
        cfg.dnat.push(r);
    }
    let inside = cfg.inside;
    let mut nat = Nat::new(cfg);
    let limits = Limits {
        per_host: 4,
        total: 64,
        max_lifetime: Duration::from_secs(3600),
    };
    let mut maps = PortMaps::new(Policy::new(vec![], inside), limits, Instant::ZERO, 1);
    let mut now = Instant::ZERO;
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = (usize::from(u16::from_be_bytes([rest[1], rest[2]]))).min(rest.len() - 3);
        let (req, tail) = rest[3..].split_at(len);
        rest = tail;
        let host = Ipv4Addr::new(192, 168, 122, 100 + (kind >> 2 & 3));
        match kind & 3 {
            0 => {
                let a = if req.first() == Some(&0) {
                    natpmp::answer(req, host, &mut maps, &nat, now)
                } else {
                    pcp::answer(req, host, &mut maps, &mut nat, now)
                };
                if let Some(a) = a {
                    assert!(
                        a.len() <= pcp::MAX_LEN
                            && a.len() <= req.len().max(pcp::HEADER) + pcp::HEADER,
                        "answer of {} bytes to {} bytes",
                        a.len(),
                        req.len()
                    );
                }
            }
            1 => {
                if let Some(st) = ssdp::search_target(req) {
                    assert!(ssdp::matches(st, "u").len() <= ssdp::MAX_ANSWERS);
                }
            }
            2 => {
                if let http::Read::Complete(r) = http::read(req) {
                    let mut ctx = soap::Ctx {
                        maps: &mut maps,
                        nat: &nat,
                        client: host,
                        now,
                        packets: (0, 0),
                    };
                    let (_, body) =
                        soap::serve(r.soap_action.as_deref().unwrap_or(""), &r.body, &mut ctx);
                    let mut x = quick_xml::Reader::from_str(&body);
                    loop {
                        match x.read_event() {
                            Ok(quick_xml::events::Event::Eof) => break,
                            Ok(_) => {}
                            Err(e) => panic!("a SOAP answer that is not XML ({e}): {body}"),
                        }
                    }
                }
            }
            _ => {
                now = now + Duration::from_secs(u64::from(len as u16 % 4000));
                maps.expire(now);
                for m in maps.iter() {
                    assert!(m.expires.is_none_or(|e| e > now), "{m} outlived its expiry");
                }
            }
        }
        if maps.take_changed() {
            let mut c = nat.config().clone();
            c.port_maps = maps.rules();
            nat.reconfigure(c);
        }
        for m in maps.iter() {
            assert!(
                m.external >= 1024 && !(m.protocol == Protocol::Tcp && m.external == 8888),
                "{m}: a port the policy or a forward keeps"
            );
            assert!(
                m.client.octets()[..3] == [192, 168, 122],
                "{m}: not an inside host"
            );
            assert!(
                maps.iter().filter(|x| x.client == m.client).count() <= 4,
                "over the per-host limit"
            );
            assert_eq!(
                maps.iter()
                    .filter(|x| x.protocol == m.protocol && x.external == m.external)
                    .count(),
                1,
                "{m}: a port mapped twice"
            );
        }
    }
}

/// An IPv4 TCP segment (TTL 64, DF) from `src` to `dst` with these flags, sequence and
/// acknowledgement numbers and payload, its checksums computed (for the fuzz properties
/// and the FTP helper's tests).
pub fn tcp_segment(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    data: &[u8],
) -> Vec<u8> {
    let mut l4 = vec![0u8; 20];
    l4[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    l4[12] = 0x50;
    l4[13] = flags;
    l4[14..16].copy_from_slice(&64000u16.to_be_bytes());
    l4.extend_from_slice(data);
    let len = 20 + l4.len();
    let mut p = vec![0u8; len];
    ipv4::emit_header(&mut p, 0, len as u16, 1, true, 64, 6, src.0, dst.0);
    p[20..].copy_from_slice(&l4);
    let sum = checksum::pseudo_header_sum(src.0, dst.0, 6, l4.len() as u16);
    let c = !checksum::fold(checksum::sum(&p[20..], sum));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// An FTP control connection through the helper: segments framed as `[control, length
/// (2 bytes), payload...]*`; control bit 0 picks the direction (client to server or back),
/// bit 1 whether the client is inside (else the server is, behind a port forward),
/// bits 2-7 a gap in the sequence numbers (a lost segment). What must hold: no panic;
/// whatever leaves is valid IPv4 with a good TCP checksum and the router's addresses;
/// an expectation per control connection at most.
pub fn ftp(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let mut cfg = NatConfig::lab();
    cfg.alg_ftp = true;
    if let Ok(r) = "tcp:2121=192.168.122.73:21".parse() {
        cfg.dnat.push(r);
    }
    let mut nat = Nat::new(cfg);
    let client_inside = setup & 1 == 0;
    let (inside, remote, ext) = if client_inside {
        (
            (Ipv4Addr::new(192, 168, 122, 101), 40000),
            (Ipv4Addr::new(172, 16, 1, 1), 21),
            40000,
        )
    } else {
        (
            (Ipv4Addr::new(192, 168, 122, 73), 21),
            (Ipv4Addr::new(172, 16, 1, 1), 50000),
            2121,
        )
    };
    let out = Ipv4Addr::new(172, 16, 1, 186);
    let seg = tcp_segment;
    let run = |nat: &mut Nat, side: Side, mut p: Vec<u8>| {
        let v = nat.process(side, &mut p, Instant::ZERO);
        let mut sent: Vec<Vec<u8>> =
            std::iter::from_fn(|| nat.poll_transmit().map(|t| t.packet)).collect();
        if let Verdict::Forward { len } = v {
            sent.push(p[..len].to_vec());
        }
        for p in sent {
            let ip = Ipv4::new_checked(&p[..], Check::Full).expect("valid IPv4 out");
            if ip.protocol() == 6 {
                assert!(
                    verify_l4_checksum(Protocol::Tcp, ip.src(), ip.dst(), ip.payload()),
                    "TCP checksum"
                );
                assert!(
                    ip.src() == out
                        || ip.dst() == inside.0
                        || ip.dst() == Ipv4Addr::new(192, 168, 122, 101),
                    "addresses"
                );
            }
        }
    };
    let to_out = (out, ext);
    // Next sequence numbers, [inside end, outside end].
    let mut seq = [1000u32, 5000u32];
    // One segment from `side`'s end, acknowledging all the other end sent (none for a SYN).
    let send = |nat: &mut Nat, side: Side, flags: u8, payload: &[u8], seq: &mut [u32; 2]| {
        let (me, other) = (side.index(), side.other().index());
        let ack = if flags == 0x02 { 0 } else { seq[other] };
        let p = match side {
            Side::Inside => seg(inside, remote, flags, seq[me], ack, payload),
            Side::Outside => seg(remote, to_out, flags, seq[me], ack, payload),
        };
        run(nat, side, p);
        let used = if flags & 0x02 != 0 {
            1
        } else {
            payload.len() as u32
        };
        seq[me] = seq[me].wrapping_add(used);
    };
    // The handshake: the client's SYN, the server's SYN-ACK.
    let client = if client_inside {
        Side::Inside
    } else {
        Side::Outside
    };
    send(&mut nat, client, 0x02, b"", &mut seq);
    send(&mut nat, client.other(), 0x12, b"", &mut seq);
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]))
            .min(rest.len() - 3)
            .min(1400);
        let (payload, tail) = rest[3..].split_at(len);
        rest = tail;
        let side = if ctl & 1 == 0 {
            Side::Inside
        } else {
            Side::Outside
        };
        seq[side.index()] = seq[side.index()].wrapping_add(u32::from(ctl >> 2));
        send(&mut nat, side, 0x18, payload, &mut seq);
        assert!(
            nat.ftp_expectations() <= 1,
            "one expectation per control connection"
        );
    }
}

/// Feeds packets framed as `[control, length (2 bytes), bytes...]*` to the UDP trains of
/// one port. The first byte is the room each packet's buffer leaves after it, in 64-byte
/// units. Control bit 0 gives the packet a partial checksum (the field then holds
/// anything), bit 7 repairs its lengths and checksums first (so that the fuzzer gets
/// datagrams that may join). Returns how many datagrams joined another's train.
pub fn gro(data: &[u8]) -> usize {
    use crate::wire::gro::{split, Datagram, Train, Trains};
    use crate::wire::offload::Partial;

    let Some((&setup, mut rest)) = data.split_first() else {
        return 0;
    };
    // Every packet offered, with its offload header; what came out, as (the inputs it
    // stands for, the bytes).
    let mut offered: Vec<(Vec<u8>, Offload)> = Vec::new();
    let mut out: Vec<(Vec<usize>, Vec<u8>)> = Vec::new();
    // A train's buffer, and the inputs in it.
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut trains: Trains<usize> = Trains::new();
    let mut joined = 0;
    let finish = |k: usize, t: Train, bufs: &mut Vec<Vec<u8>>, members: &[Vec<usize>]| {
        let off = t.finish(&mut bufs[k]);
        let segs = split(&bufs[k][..t.bytes()], &off);
        assert_eq!(
            segs.len(),
            members[k].len(),
            "one segment per datagram joined"
        );
        segs.into_iter()
            .zip(&members[k])
            .map(|(s, &i)| (vec![i], s))
            .collect::<Vec<_>>()
    };
    while rest.len() >= 3 && offered.len() < 256 {
        let ctl = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3) % 2048;
        let mut pkt = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        let ip_len = if pkt.first().map(|b| b >> 4) == Some(6) {
            40
        } else {
            20
        };
        if ctl & 0x80 != 0 && pkt.len() >= ip_len + 8 {
            let l4 = (pkt.len() - ip_len) as u16;
            if ip_len == 20 {
                let total = pkt.len() as u16;
                pkt[2..4].copy_from_slice(&total.to_be_bytes());
                repair_ip_checksum(&mut pkt);
            } else {
                pkt[4..6].copy_from_slice(&l4.to_be_bytes());
            }
            pkt[ip_len + 4..ip_len + 6].copy_from_slice(&l4.to_be_bytes());
            pkt[ip_len + 6..ip_len + 8].fill(0);
            let sum = checksum::sum(&pkt[ip_len..], 0) + gro_pseudo(&pkt, ip_len, l4);
            let c = !checksum::fold(sum);
            pkt[ip_len + 6..ip_len + 8].copy_from_slice(&c.to_be_bytes());
        }
        let off = if ctl & 1 != 0 {
            Offload {
                csum: Some(Partial {
                    start: ip_len as u16,
                    offset: 6,
                }),
                gso: None,
            }
        } else {
            Offload::NONE
        };
        let i = offered.len();
        offered.push((pkt.clone(), off));
        let mut buf = pkt.clone();
        buf.resize(pkt.len() + usize::from(setup) * 64, 0);
        bufs.push(buf);
        members.push(vec![i]);
        match Datagram::check(&pkt, &off) {
            Some(d) => {
                if let Some((k, t)) = trains.find(&pkt, d) {
                    t.push(&mut bufs[k], &pkt);
                    members[k].push(i);
                    joined += 1;
                    continue;
                }
                let room = bufs[i].len();
                if let Some((k, t)) = trains.open(i, Train::start(&pkt, d, &off, room)) {
                    out.extend(finish(k, t, &mut bufs, &members));
                }
            }
            None => {
                if crate::wire::gro::goes_after_trains(&pkt) {
                    let open: Vec<(usize, Train)> = trains.drain().collect();
                    for (k, t) in open {
                        out.extend(finish(k, t, &mut bufs, &members));
                    }
                }
                out.push((vec![i], pkt));
            }
        }
    }
    let open: Vec<(usize, Train)> = trains.drain().collect();
    for (k, t) in open {
        out.extend(finish(k, t, &mut bufs, &members));
    }
    // Every input comes out once, as it went in.
    let mut seen = vec![false; offered.len()];
    for (ins, got) in &out {
        let i = ins[0];
        assert!(!seen[i], "input {i} came out twice");
        seen[i] = true;
        let (want, off) = &offered[i];
        assert_eq!(got.len(), want.len(), "input {i}'s length");
        let v4 = want.first().map(|b| b >> 4) == Some(4);
        let ip_len = if v4 { 20 } else { 40 };
        let mut skip: Vec<std::ops::Range<usize>> = Vec::new();
        if v4 && got.len() >= 20 {
            skip.push(4..6); // identification, renumbered from the first's
            skip.push(10..12);
        }
        if off.csum.is_some() && got.len() >= ip_len + 8 {
            skip.push(ip_len + 6..ip_len + 8); // a partial checksum, completed
        } else if got != want && got.len() >= ip_len + 8 {
            // Joined and split: the completed checksum is the one it had, so it was right.
            let sum = checksum::sum(
                &want[ip_len..],
                gro_pseudo(want, ip_len, (want.len() - ip_len) as u16),
            );
            assert_eq!(
                checksum::fold(sum),
                0xffff,
                "input {i}: a wrong checksum was joined"
            );
        }
        for (j, (a, b)) in got.iter().zip(want).enumerate() {
            if !skip.iter().any(|r| r.contains(&j)) {
                assert_eq!(a, b, "input {i}, byte {j}");
            }
        }
    }
    assert!(seen.iter().all(|s| *s), "every input came out");
    // Each flow in order.
    // A flow: the version, addresses, protocol and ports of an IPv4 or IPv6 packet.
    let flow = |p: &[u8]| -> Option<Vec<u8>> {
        let version = p.first()? >> 4;
        let (ip, proto, addrs) = match version {
            4 => (20, 9, 12..20),
            6 => (40, 6, 8..40),
            _ => return None,
        };
        let mut k = vec![version, *p.get(proto)?];
        k.extend_from_slice(p.get(addrs)?);
        k.extend_from_slice(p.get(ip..ip + 4)?);
        Some(k)
    };
    let mut last: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    for (ins, got) in &out {
        let Some(key) = flow(got) else { continue };
        if let Some(prev) = last.insert(key, ins[0]) {
            assert!(
                prev < ins[0],
                "flow order: input {prev} came out before input {}",
                ins[0]
            );
        }
    }
    joined
}

/// The uncomplemented pseudo-header sum for UDP of `pkt` (IPv4 or IPv6 by `ip_len`).
fn gro_pseudo(pkt: &[u8], ip_len: usize, l4: u16) -> u32 {
    if ip_len == 20 {
        let a = |i: usize| Ipv4Addr::new(pkt[i], pkt[i + 1], pkt[i + 2], pkt[i + 3]);
        checksum::pseudo_header_sum(a(12), a(16), 17, l4)
    } else {
        let b: [u8; 16] = pkt[8..24].try_into().unwrap();
        let c: [u8; 16] = pkt[24..40].try_into().unwrap();
        checksum::pseudo_header_sum_v6(Ipv6Addr::from(b), Ipv6Addr::from(c), 17, u32::from(l4))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn framed(packets: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = vec![0];
        for (ctl, p) in packets {
            v.push(*ctl);
            v.extend_from_slice(&(p.len() as u16).to_be_bytes());
            v.extend_from_slice(p);
        }
        v
    }

    /// A UDP datagram inside → outside and its reply, with good checksums.
    fn udp_pair() -> Vec<u8> {
        let out = [
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 168, 122, 101, 172, 16, 1, 1, 0x9c,
            0x40, 0, 53, 0, 12, 0, 0, b'd', b'a', b't', b'a',
        ];
        let back = [
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 172, 16, 1, 1, 172, 16, 1, 186, 0, 53,
            0x9c, 0x40, 0, 12, 0, 0, b'd', b'a', b't', b'a',
        ];
        framed(&[(0x80, &out), (0x81 | 0x40, &back)])
    }

    /// `seed` with `flips` bytes at or after `from` xor-ed with values of the xorshift32
    /// sequence in `x` (the same mutations on every run).
    fn mutated(seed: &[u8], x: &mut u32, flips: usize, from: usize) -> Vec<u8> {
        let mut m = seed.to_vec();
        for _ in 0..flips {
            *x ^= *x << 13;
            *x ^= *x >> 17;
            *x ^= *x << 5;
            let i = from + *x as usize % (m.len() - from);
            m[i] ^= (*x >> 24) as u8;
        }
        m
    }

    /// Three flows of UDP datagrams interleaved, IPv4 and IPv6, mostly of one size, some
    /// with partial checksums, all repaired (bit 7).
    fn gro_seed() -> Vec<u8> {
        let v4 = |sport: u8, n: usize| {
            let mut p = vec![
                0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 168, 122, 101, 172, 16, 1, 1,
                0x9c, sport, 0, 53, 0, 0, 0, 0,
            ];
            p.extend(std::iter::repeat_n(sport, n));
            p
        };
        let v6 = |n: usize| {
            let mut p = vec![0u8; 48];
            p[0] = 0x60;
            p[6] = 17;
            p[7] = 64;
            p[8] = 0xfd;
            p[23] = 1;
            p[24] = 0x20;
            p[39] = 2;
            p[40..44].copy_from_slice(&[0x9c, 0x40, 0, 53]);
            p.extend(std::iter::repeat_n(6, n));
            p
        };
        let (a, b, c) = (v4(1, 40), v4(2, 40), v6(40));
        let short = v4(1, 10);
        let mut seed = framed(&[
            (0x80, &a),
            (0x81, &b),
            (0x80, &a),
            (0x80, &c),
            (0x81, &b),
            (0x80, &c),
            (0x80, &short),
            (0x80, &a),
            (0x81, &c),
            (0x80, &b),
        ]);
        seed[0] = 64; // 4 KB of room after each packet
        seed
    }

    #[test]
    fn gro_on_a_seed_and_mutations() {
        let seed = gro_seed();
        // 2 and 6 join 0 (6, shorter, ends it), 4 and 9 join 1, 5 and 8 join 3 (partial
        // and complete checksums alike); 7 starts a train of its own.
        let n = gro(&seed);
        assert_eq!(n, 6, "the seed's datagrams joined");
        let mut x = 0x5eed_0001u32;
        for _ in 0..5000 {
            let _ = gro(&mutated(&seed, &mut x, 3, 1));
        }
    }

    /// Inputs the fuzzer once crashed `translate` with, kept as regressions.
    #[test]
    fn translate_regressions() {
        translate(&[
            69, 197, 69, 69, 71, 0, 0, 65, 69, 58, 0, 0, 254, 6, 17, 6, 6, 53, 53, 54, 172, 16, 1,
            186, 6, 6, 6, 0, 0, 0, 1, 0, 0, 0, 34, 184, 0, 0, 0, 0, 118, 118, 193, 98, 98, 98, 98,
            98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 98, 168, 122, 100,
            118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118, 118,
            118, 118, 118, 118, 45, 118, 118, 118, 80, 80,
        ]);
    }

    #[test]
    fn translate_on_a_seed_corpus_and_mutations() {
        let seed = udp_pair();
        translate(&seed);
        let mut x = 0x9e37_79b9u32;
        for _ in 0..5000 {
            translate(&mutated(&seed, &mut x, 3, 0));
        }
    }

    /// A UDP datagram over IPv6 inside → outside and its reply, with good checksums.
    fn udp6_pair() -> Vec<u8> {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let dgram = |src: &str, dst: &str, sp: u16, dp: u16| {
            let mut p = vec![0u8; 52];
            crate::wire::icmpv6::emit_header(&mut p, 12, 17, 64, a(src), a(dst));
            p[40..42].copy_from_slice(&sp.to_be_bytes());
            p[42..44].copy_from_slice(&dp.to_be_bytes());
            p[44..46].copy_from_slice(&12u16.to_be_bytes());
            p[48..52].copy_from_slice(b"data");
            let s = checksum::pseudo_header_sum_v6(a(src), a(dst), 17, 12);
            let c = !checksum::fold(checksum::sum(&p[40..], s));
            p[46..48].copy_from_slice(&c.to_be_bytes());
            p
        };
        let out = dgram("fd00:122::101", "2001:db8:1::1", 40000, 53);
        let back = dgram("2001:db8:1::1", "2001:db8:1::186", 53, 40000);
        // The same datagram cut in two, the second part first: it waits for the first.
        let frag = |off_more: u16, part: &[u8]| {
            let mut p = vec![0u8; 48 + part.len()];
            let (s, d) = (a("fd00:122::101"), a("2001:db8:1::1"));
            crate::wire::icmpv6::emit_header(&mut p, 8 + part.len() as u16, 44, 64, s, d);
            p[40] = 17;
            p[42..44].copy_from_slice(&off_more.to_be_bytes());
            p[44..48].copy_from_slice(&9u32.to_be_bytes());
            p[48..].copy_from_slice(part);
            p
        };
        let (first, second) = (frag(1, &out[40..48]), frag(8, &out[48..]));
        framed(&[
            (0x00, &out),
            (0x01 | 0x40, &back),
            (0x00, &second),
            (0x00, &first),
        ])
    }

    /// SYNs from outside to the port forward 8888 with SYN cookies always on (setup
    /// 0x10), IPv4 and IPv6: the proxy answers each with a SYN-ACK and drops it
    /// (`Drop(SynProxied)` with a packet queued), as the fuzzer once found the harness
    /// refused.
    #[test]
    fn translate_a_syn_to_a_port_forward_answered_by_the_syn_proxy() {
        let syn4 = tcp_segment(
            (Ipv4Addr::new(172, 16, 1, 1), 40000),
            (Ipv4Addr::new(172, 16, 1, 186), 8888),
            0x02,
            1000,
            0,
            b"",
        );
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let (src, dst) = (a("2001:db8:1::1"), a("2001:db8:1::186"));
        let mut syn6 = vec![0u8; 60];
        crate::wire::icmpv6::emit_header(&mut syn6, 20, 6, 64, src, dst);
        syn6[40..42].copy_from_slice(&40000u16.to_be_bytes());
        syn6[42..44].copy_from_slice(&8888u16.to_be_bytes());
        syn6[44..48].copy_from_slice(&1000u32.to_be_bytes());
        syn6[52] = 0x50;
        syn6[53] = 0x02;
        syn6[54..56].copy_from_slice(&64000u16.to_be_bytes());
        let sum = checksum::pseudo_header_sum_v6(src, dst, 6, 20);
        let c = !checksum::fold(checksum::sum(&syn6[40..], sum));
        syn6[56..58].copy_from_slice(&c.to_be_bytes());
        let mut input = framed(&[(0x01, &syn4), (0x01, &syn6)]);
        input[0] = 0x10;
        translate(&input);
        let mut x = 0x5a5a_0001u32;
        for _ in 0..2000 {
            translate(&mutated(&input, &mut x, 3, 1));
        }
    }

    #[test]
    fn translate_ipv6_on_a_seed_and_mutations() {
        let seed = udp6_pair();
        translate(&seed);
        let mut x = 0x1234_5677u32;
        for _ in 0..5000 {
            // The setup byte is kept: every mutation goes to the packets.
            translate(&mutated(&seed, &mut x, 3, 1));
        }
    }

    /// Through a NAT64 router: a UDP datagram out through the prefix and its reply, a
    /// ping and its reply, an ICMPv4 port unreachable about the datagram, and a SYN to
    /// the static forward; all with their checksums repaired (bit 7).
    fn nat64_seed() -> Vec<u8> {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let mut udp6 = vec![0u8; 52];
        crate::wire::icmpv6::emit_header(
            &mut udp6,
            12,
            17,
            64,
            a("fd00:122::101"),
            a("64:ff9b:1::ac10:101"),
        );
        udp6[40..46].copy_from_slice(&[0x9c, 0x40, 0, 53, 0, 12]);
        udp6[48..52].copy_from_slice(b"data");
        let mut back = vec![
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 172, 16, 1, 1, 172, 16, 1, 186, 0, 53,
            0x9c, 0x40, 0, 12, 0, 0,
        ];
        back.extend_from_slice(b"data");
        let mut ping6 = vec![0u8; 56];
        crate::wire::icmpv6::emit_header(
            &mut ping6,
            16,
            58,
            64,
            a("fd00:122::101"),
            a("64:ff9b:1::ac10:101"),
        );
        ping6[40..48].copy_from_slice(&[128, 0, 0, 0, 0, 7, 0, 1]);
        let mut pong = vec![
            0x45, 0, 0, 36, 0, 2, 0, 0, 64, 1, 0, 0, 172, 16, 1, 1, 172, 16, 1, 186, 0, 0, 0, 0, 0,
            7, 0, 1,
        ];
        pong.extend_from_slice(&[0; 8]);
        let mut unreach = vec![
            0x45, 0, 0, 56, 0, 3, 0, 0, 64, 1, 0, 0, 172, 16, 1, 1, 172, 16, 1, 186, 3, 3, 0, 0, 0,
            0, 0, 0,
        ];
        let mut quoted = back.clone();
        quoted[12..16].copy_from_slice(&[172, 16, 1, 186]);
        quoted[16..20].copy_from_slice(&[172, 16, 1, 1]);
        quoted[20..24].copy_from_slice(&[0x9c, 0x40, 0, 53]);
        ipv4::recompute_header_checksum(&mut quoted[..20]);
        unreach.extend_from_slice(&quoted[..28]);
        let syn = [
            0x45, 0, 0, 40, 0, 4, 0x40, 0, 64, 6, 0, 0, 172, 16, 1, 1, 172, 16, 1, 186, 0xa8, 0x20,
            0x22, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ];
        framed(&[
            (0x80, &udp6),
            (0x81, &back),
            (0x80, &ping6),
            (0x81, &pong),
            (0x81, &unreach),
            (0x81 | 0x40, &syn),
        ])
    }

    #[test]
    fn nat64_on_a_seed_and_mutations() {
        let seed = nat64_seed();
        nat64(&seed);
        let mut x = 0x0bad_cafeu32;
        for _ in 0..3000 {
            let m = mutated(&seed, &mut x, 3, 1);
            nat64(&m);
            // And with the setup byte's variants: the well-known prefix, a 1280 outside.
            let mut m2 = m.clone();
            m2[0] = (x >> 8) as u8;
            nat64(&m2);
        }
    }

    fn frame(kind: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        v.extend_from_slice(bytes);
        v
    }

    fn port_control_seed() -> Vec<u8> {
        let mut natpmp = vec![0, 2, 0, 0, 0x13, 0x88, 0x1b, 0x58];
        natpmp.extend_from_slice(&3600u32.to_be_bytes());
        let mut pcp = vec![2, 1, 0, 0, 0, 0, 0x0e, 0x10];
        pcp.extend_from_slice(
            &std::net::Ipv4Addr::new(192, 168, 122, 101)
                .to_ipv6_mapped()
                .octets(),
        );
        pcp.extend_from_slice(b"nonce-nonce!");
        pcp.extend_from_slice(&[17, 0, 0, 0, 0x13, 0x89, 0x1b, 0x59]);
        pcp.extend_from_slice(&[0; 16]);
        let body = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:AddPortMapping xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewRemoteHost></NewRemoteHost><NewExternalPort>7001</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>9999</NewInternalPort><NewInternalClient>192.168.122.101</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>x &amp; y</NewPortMappingDescription><NewLeaseDuration>600</NewLeaseDuration></u:AddPortMapping></s:Body></s:Envelope>";
        let http = format!("POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let ssdp = b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n";
        // Hosts .101 (kind bits 2-3 = 1) and .102.
        [
            frame(4, &natpmp),
            frame(4, &pcp),
            frame(8, &pcp),
            frame(5, ssdp),
            frame(6, http.as_bytes()),
            frame(3, &[0; 700]),
        ]
        .concat()
    }

    #[test]
    fn port_control_on_a_seed_and_mutations() {
        let seed = port_control_seed();
        port_control(&seed);
        let mut x = 0x1234_5677u32;
        for _ in 0..3000 {
            port_control(&mutated(&seed, &mut x, 4, 0));
        }
    }

    fn ftp_seed(setup: u8) -> Vec<u8> {
        let mut v = vec![setup];
        if setup & 1 == 0 {
            v.extend(frame(1, b"220 hello\r\n"));
            v.extend(frame(0, b"USER anonymous\r\n"));
            v.extend(frame(0, b"PORT 192,168"));
            v.extend(frame(0, b",122,101,19,137\r\n"));
            v.extend(frame(1, b"200 ok\r\n"));
            v.extend(frame(0, b"EPRT |1|192.168.122.101|5002|\r\nLIST\r\n"));
        } else {
            v.extend(frame(0, b"220 hello\r\n"));
            v.extend(frame(1, b"PASV\r\n"));
            v.extend(frame(
                0,
                b"227 Entering Passive Mode (192,168,122,73,23,113).\r\n",
            ));
            v.extend(frame(1, b"EPSV\r\n"));
            v.extend(frame(
                0,
                b"229 Entering Extended Passive Mode (|||6002|)\r\n",
            ));
        }
        v
    }

    #[test]
    fn ftp_on_seeds_and_mutations() {
        for setup in [0, 1] {
            let seed = ftp_seed(setup);
            ftp(&seed);
            let mut x = 0x5eed_0f7bu32 ^ u32::from(setup);
            for _ in 0..3000 {
                ftp(&mutated(&seed, &mut x, 3, 1));
            }
        }
    }

    #[test]
    fn the_ipv6_view_holds_on_mutations_of_an_extension_chain() {
        // Hop-by-hop, destination options, fragment (atomic), then 8 bytes of UDP.
        let mut p = vec![0x60, 0, 0, 0, 0, 32, 0, 64];
        p.extend_from_slice(&[0xfd, 0, 1, 0x22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0, 44, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 7, 0x14, 0xe9, 0, 53, 0, 8, 0, 0]);
        assert!(crate::wire::ipv6::Ipv6::new_checked(&p[..]).is_ok());
        let mut x = 0x2545_f491u32;
        for _ in 0..20000 {
            let mut m = mutated(&p, &mut x, 2, 0);
            m.truncate(m.len() - (x as usize >> 8) % 4);
            ipv6_view(&m);
        }
    }

    fn chunked(bytes: &[u8], size: u8) -> Vec<u8> {
        bytes
            .chunks(usize::from(size))
            .flat_map(|c| std::iter::once(size - 1).chain(c.iter().copied()))
            .collect()
    }

    #[test]
    fn policy_session_answers_exactly_the_request() {
        let mut req = policy::REQUEST.to_vec();
        req.push(0);
        for size in [1, 5, 23, 64] {
            policy_session(&chunked(&req, size));
        }
        let mut pipelined = req.clone();
        pipelined.extend_from_slice(&[b'x'; 300]);
        policy_session(&chunked(&pipelined, 64));
        policy_session(&chunked(b"GET / HTTP/1.0\r\n\r\n", 8));
        policy_session(&chunked(&req[..10], 3)); // never finished: reset at the timeout
        policy_session(&chunked(&[b'<'; 300], 64));
        policy_session(&[]);
    }
}
