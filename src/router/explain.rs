//! `tunnat explain`: what the router does with one packet, step by step, in plain words.
//!
//! The packet goes through the very code of the data path, [`Router::handle`], on a
//! scratch router: a copy of the configuration, with the sessions that bear on the
//! packet copied from the running router (those of its addresses and ports), or none
//! offline. The running router is not changed. The explanation is read off what that
//! code did: the packet written and its rewritten fields, the ICMP errors or answers the
//! router made, the drop reason counted, and the session table before and after (a new
//! mapping and its port, the session it refreshed, the timeout that now applies). Each
//! step names the RFC requirement it follows and, where the kernel's netfilter would
//! decide otherwise, says so.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::core::Router;
use crate::control::proto::Row;
use crate::nat::{Filtering, Instant, Side};
use crate::wire::offload::Offload;
use crate::wire::summary::{summary, Summary};

/// Builds the packet `tunnat explain SIDE PROTO SRC DST [FLAGS]` describes: TCP (flags
/// `syn`, `ack`, `fin`, `rst`, `psh`, `synack` joined with commas), UDP, or ICMP echo
/// (`icmp`; the source port is the identifier), with good checksums and TTL 64.
pub fn build(
    proto: &str,
    src: SocketAddr,
    dst: SocketAddr,
    flags: &str,
) -> Result<Vec<u8>, String> {
    let l4 = match proto {
        "tcp" => {
            let mut f = 0u8;
            for w in flags.split(',').filter(|w| !w.is_empty()) {
                f |= match w {
                    "syn" => 2,
                    "ack" => 16,
                    "fin" => 1,
                    "rst" => 4,
                    "psh" => 8,
                    "synack" => 18,
                    _ => {
                        return Err(format!(
                            "'{w}' is not a TCP flag (syn, ack, fin, rst, psh, synack)"
                        ))
                    }
                };
            }
            if f == 0 {
                f = 2;
            }
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&src.port().to_be_bytes());
            t[2..4].copy_from_slice(&dst.port().to_be_bytes());
            t[4..8].copy_from_slice(&1000u32.to_be_bytes());
            if f & 16 != 0 {
                t[8..12].copy_from_slice(&1u32.to_be_bytes());
            }
            t[12] = 5 << 4;
            t[13] = f;
            t[14..16].copy_from_slice(&64240u16.to_be_bytes());
            t
        }
        "udp" => {
            let mut u = vec![0u8; 12];
            u[0..2].copy_from_slice(&src.port().to_be_bytes());
            u[2..4].copy_from_slice(&dst.port().to_be_bytes());
            u[4..6].copy_from_slice(&12u16.to_be_bytes());
            u[8..].copy_from_slice(b"data");
            u
        }
        "icmp" => {
            let t = if src.is_ipv6() { 128 } else { 8 };
            let mut m = vec![t, 0, 0, 0, 0, 0, 0, 1];
            m[4..6].copy_from_slice(&src.port().to_be_bytes());
            m
        }
        _ => return Err(format!("'{proto}' is not tcp, udp or icmp")),
    };
    let (n, at) = match proto {
        "tcp" => (6u8, 16),
        "udp" => (17, 6),
        _ => (if src.is_ipv6() { 58 } else { 1 }, 2),
    };
    crate::wire::datagram(src.ip(), dst.ip(), n, 1, l4, at)
        .ok_or_else(|| "the two addresses must be of one family".into())
}

/// Hex for the control protocol.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes from hex; `None` if it is not (at most 64 KiB of packet).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 2 * 65536 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a drop reason means, in words, with the rule behind it.
fn reason(r: &str) -> String {
    match r {
        "filtered" => "the filter refuses it: the mapping's inside host has not sent to this remote (RFC 4787 REQ-8, RFC 5382 REQ-3)".into(),
        "syn-held" => "an unsolicited SYN to a mapped port: held up to 6 s, then refused with ICMP port unreachable, unless the inside host opens to this remote meanwhile (simultaneous open, RFC 5382 REQ-4)".into(),
        "spoofed-source" => "its source is not on the inside network (the router's anti-spoofing check, like rp_filter)".into(),
        "martian-source" => "its source can be no host's (RFC 1812 section 5.3.7)".into(),
        "not-routed" => "it is for no network the router forwards to".into(),
        "no-session" => "no session matches it (an RST or an answer to nothing)".into(),
        "bad-tcp-flags" => "its TCP flags are no packet of a real connection (a scan)".into(),
        "ttl-exceeded" => "its TTL ran out here: ICMP time exceeded goes back (RFC 1812 section 5.3.1)".into(),
        "too-big" => "it is larger than the next port's MTU and may not be fragmented: ICMP fragmentation needed goes back with the MTU (RFC 1191)".into(),
        "table-full" | "host-limit" | "no-free-port" => "no room for a new mapping: ICMP administratively prohibited goes back (RFC 5508 REQ-8, RFC 6888)".into(),
        "syn-proxy" => "taken by the SYN proxy (--syn-cookies): a SYN to a port forward is answered by the router itself with a SYN cookie, and the ACK that brings a valid cookie back makes the router open the connection to the inside server (RFC 4987 section 3.6)".into(),
        "bad-cookie" => "an ACK with no session to a port forward that answers with SYN cookies, and no valid cookie in it: it opens nothing".into(),
        "nat64-refused-destination" => "the NAT64 prefix may not stand for this IPv4 address (RFC 6052 section 3.1)".into(),
        other => format!("dropped ({other}; see `tunnat stats`)"),
    }
}

impl Router {
    /// What this router would do with `pkt` read from `side` at `now`, in words. The
    /// router itself is not changed: a scratch copy with the sessions of the packet's
    /// addresses and ports does the work.
    pub fn explain(&self, side: Side, pkt: &[u8], now: Instant) -> String {
        let mut scratch = Router::new(self.config().clone(), now, self.seed);
        if let Some(s) = summary(pkt) {
            let addrs = [s.src.ip(), s.dst.ip()];
            let ports = [s.src.port(), s.dst.port()];
            let st = self.save_state_where(now, 0, &|a, ext| {
                a.iter().any(|x| addrs.contains(x)) || ports.contains(&ext)
            });
            if let Err(e) = scratch.restore_state(st, now, 0) {
                return format!("explain: the sessions could not be copied: {e:#}\n");
            }
        }
        scratch.copy_port_maps(self);
        scratch.explain_here(side, pkt, now)
    }

    /// Runs `pkt` through this router, for real, and says what happened (`tunnat explain
    /// --pcap` feeds a capture this way, packet after packet).
    pub fn explain_here(&mut self, side: Side, pkt: &[u8], now: Instant) -> String {
        let mut out = String::new();
        let Some(s) = summary(pkt) else {
            return "not an IPv4 or IPv6 packet: dropped, and counted as such\n".into();
        };
        let _ = writeln!(
            out,
            "packet: {} from the {} port, {} -> {}, TTL {}",
            s.what,
            side.name(),
            s.src,
            s.dst,
            s.ttl
        );
        let before = self.table_rows(now);
        let drops_before = self.drop_totals();
        let mut buf = pkt.to_vec();
        let w = self.handle(side, &mut buf, Ok(Offload::NONE), now);
        let written = w.map(|w| (w.port, w.bytes(&buf).to_vec()));
        let mut made = Vec::new();
        while let Some(t) = self.poll_transmit(now) {
            made.push(t);
        }
        let after = self.table_rows(now);
        let drops: Vec<(String, u64)> = (self.drop_totals().into_iter())
            .filter(|(r, n)| drops_before.get(r).copied().unwrap_or(0) < *n)
            .collect();
        // The decision.
        let mut step = 1;
        let mut say = |out: &mut String, text: String| {
            let _ = writeln!(out, "{step}. {text}");
            step += 1;
        };
        let new: Vec<&Row> = after
            .iter()
            .filter(|r| !before.iter().any(|b| same(b, r)))
            .collect();
        let touched: Vec<&Row> = (after.iter())
            .filter(|r| {
                before.iter().any(|b| {
                    same(b, r) && b.packets_out + b.packets_in < r.packets_out + r.packets_in
                })
            })
            .collect();
        for r in &new {
            say(&mut out, self.new_session(side, &s, r, &before));
        }
        for r in &touched {
            say(
                &mut out,
                format!(
                    "it belongs to the session {} {} <-> {} via {} (state {}), which it refreshes",
                    r.proto, r.inside, r.remote, r.outside, r.state
                ),
            );
        }
        match &written {
            Some((port, p)) => {
                let t = summary(p);
                let mut changes = Vec::new();
                if let Some(t) = &t {
                    if t.src != s.src {
                        changes.push(format!("source {} -> {}", s.src, t.src));
                    }
                    if t.dst != s.dst {
                        changes.push(format!("destination {} -> {}", s.dst, t.dst));
                    }
                    if t.ttl != s.ttl {
                        changes.push(format!("TTL {} -> {}", s.ttl, t.ttl));
                    }
                    if t.proto != s.proto {
                        changes.push(format!(
                            "translated between IPv4 and IPv6 (NAT64, RFC 7915): {} -> {}",
                            s.what, t.what
                        ));
                    }
                }
                let how = if *port == side {
                    "hairpinned: written back to the port it came from, with the outside address as source (RFC 4787 REQ-9)"
                } else {
                    "forwarded"
                };
                say(
                    &mut out,
                    format!(
                        "{how} to the {} port: {}; the checksums are updated for the rewritten fields alone (RFC 1624)",
                        port.name(),
                        if changes.is_empty() { "nothing rewritten".to_string() } else { changes.join(", ") }
                    ),
                );
            }
            None if made.is_empty() && drops.is_empty() => say(
                &mut out,
                "it is for the router itself, or waits for the rest of its datagram".into(),
            ),
            None => {}
        }
        let answered = written.is_none() && drops.is_empty() && !made.is_empty();
        if answered {
            say(
                &mut out,
                format!(
                    "nothing is mapped or forwarded at {}: it is for the router, whose own stack answers as a kernel would",
                    s.dst
                ),
            );
        }
        for t in &made {
            if let Some(m) = summary(&t.packet) {
                let own = written.is_none() && m.dst.ip() == s.src.ip();
                let ep = |a: SocketAddr| {
                    if a.port() == 0 {
                        a.ip().to_string()
                    } else {
                        a.to_string()
                    }
                };
                say(
                    &mut out,
                    format!(
                        "{} {} port: {} {} -> {}",
                        if own {
                            "the router answers, to the"
                        } else {
                            "the router also writes, to the"
                        },
                        t.port.name(),
                        m.what,
                        ep(m.src),
                        ep(m.dst)
                    ),
                );
            }
        }
        for (r, _) in &drops {
            say(&mut out, format!("not forwarded: {}", reason(r)));
            if r == "filtered" && self.config().filtering != Filtering::AddressAndPortDependent {
                say(
                    &mut out,
                    "netfilter would refuse it too: conntrack admits only the exact remote endpoints an inside host sent to".into(),
                );
            }
            if r == "syn-held" {
                say(&mut out, "netfilter would answer at once with RST".into());
            }
        }
        for r in new.iter().chain(&touched) {
            let t = if r.proto == "tcp" {
                format!(
                    "{} s in state {} (established: {} s, closing: {} s, RFC 5382 REQ-5 and RFC 7857)",
                    r.timeout_s,
                    r.state,
                    self.config().timeouts.tcp_established.as_secs(),
                    self.config().timeouts.tcp_transitory.as_secs()
                )
            } else if r.proto == "udp" {
                format!("{} s idle (RFC 4787 REQ-5: at least 120 s)", r.timeout_s)
            } else {
                format!("{} s idle (RFC 5508 REQ-1: at least 60 s)", r.timeout_s)
            };
            say(&mut out, format!("the session expires after {t}"));
            if r.proto == "udp" {
                say(
                    &mut out,
                    "netfilter would give it 30 s (120 s once both sides have sent)".into(),
                );
            }
        }
        out
    }

    /// Drop counts of the cores, by reason.
    fn drop_totals(&self) -> std::collections::BTreeMap<String, u64> {
        let c = self.counters();
        let mut m = c.nat.drops.clone();
        for d in [c.nat6.map(|n| n.drops), c.nat64.map(|n| n.drops)]
            .into_iter()
            .flatten()
        {
            for (r, n) in d {
                *m.entry(r).or_insert(0) += n;
            }
        }
        m
    }

    /// Why a new session looks as it does: the rule or mapping behind it, the port.
    fn new_session(&self, side: Side, s: &Summary, r: &Row, before: &[Row]) -> String {
        let ext = r.outside.rsplit(':').next().unwrap_or("");
        let inside_port = r.inside.rsplit(':').next().unwrap_or("");
        let mut t = format!(
            "a new session {} {} <-> {} via {}",
            r.proto, r.inside, r.remote, r.outside
        );
        let mapped = (self.portctl.iter())
            .flat_map(|pc| pc.maps.iter())
            .find(|m| m.protocol.name() == r.proto && m.external == s.dst.port());
        if let (true, Some(m)) = (r.dnat, mapped) {
            let _ = write!(
                t,
                ", made by the port mapping {} that {} asked for with {}",
                m.rule(),
                m.client,
                m.source.name()
            );
            return t;
        }
        if r.dnat {
            let rule = (self.config().dnat.iter().map(|x| x.to_string()))
                .chain(self.config().dnat6.iter().map(|x| x.to_string()))
                .find(|x| x.contains(&format!(":{}", s.dst.port())))
                .unwrap_or_else(|| "a port forward".into());
            let _ = write!(t, ", made by the port forward {rule} (static DNAT)");
            if r.syn_proxy {
                let _ = write!(
                    t,
                    ", opened to the server by the SYN proxy on the client's valid cookie"
                );
            }
            return t;
        }
        if side == Side::Outside {
            let _ = write!(
                t,
                ": the {:?} filter of the mapping admits this remote (RFC 4787 REQ-8)",
                self.config().filtering
            );
            return t;
        }
        if let Some(b) = before
            .iter()
            .find(|b| b.inside == r.inside && b.proto == r.proto)
        {
            let _ = write!(
                t,
                ": the mapping {} -> {} made for {} is reused, whatever the remote (endpoint-independent mapping, RFC 4787 REQ-1, RFC 5382 REQ-1)",
                b.inside, b.outside, b.remote
            );
        } else if ext == inside_port {
            let _ = write!(
                t,
                ": a new mapping, keeping the inside port {ext} since it was free (port preservation, RFC 4787 REQ-3)"
            );
        } else {
            let _ = write!(
                t,
                ": a new mapping; port {inside_port} was taken (by another host's mapping, a port forward or a port held after release, RFC 6888), so port {ext} of the same range was chosen"
            );
            if self.config().port_parity {
                let _ = write!(t, ", of the same parity (--port-parity, RFC 4787 REQ-4)");
            }
        }
        t
    }
}

/// Are two rows the same session?
fn same(a: &Row, b: &Row) -> bool {
    a.proto == b.proto && a.inside == b.inside && a.remote == b.remote && a.outside == b.outside
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::Config;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_new_mapping_then_endpoint_independence_then_a_filtered_remote() {
        let mut r = Router::new(Config::lab(), Instant::ZERO, 7);
        let now = Instant::from_secs(1);
        let syn = build(
            "udp",
            addr("192.168.122.101:5000"),
            addr("172.16.1.1:53"),
            "",
        )
        .unwrap();
        let e = r.explain(Side::Inside, &syn, now);
        assert!(
            e.contains("keeping the inside port 5000 since it was free"),
            "{e}"
        );
        assert!(
            e.contains("source 192.168.122.101:5000 -> 172.16.1.186:5000"),
            "{e}"
        );
        assert!(e.contains("netfilter would give it 30 s"), "{e}");
        // Explaining changed nothing; now the data path does it, and says the same.
        assert!(r.table_rows(now).is_empty());
        let mut p = syn.clone();
        let w = r
            .handle(Side::Inside, &mut p, Ok(Offload::NONE), now)
            .unwrap();
        assert_eq!(&w.bytes(&p)[12..16], &[172, 16, 1, 186]);
        assert_eq!(&w.bytes(&p)[20..22], &5000u16.to_be_bytes());
        // To another remote: the same mapping.
        let other = build(
            "udp",
            addr("192.168.122.101:5000"),
            addr("172.16.1.2:53"),
            "",
        )
        .unwrap();
        let e = r.explain(Side::Inside, &other, now);
        assert!(
            e.contains("is reused, whatever the remote (endpoint-independent"),
            "{e}"
        );
        // From a third remote, to the mapping: filtered (address-dependent).
        let stranger = build("udp", addr("172.16.1.3:53"), addr("172.16.1.186:5000"), "").unwrap();
        let e = r.explain(Side::Outside, &stranger, now);
        assert!(e.contains("the filter refuses it"), "{e}");
        // A port forward.
        let syn = build(
            "tcp",
            addr("172.16.1.1:43000"),
            addr("172.16.1.186:8888"),
            "syn",
        )
        .unwrap();
        let e = r.explain(Side::Outside, &syn, now);
        assert!(
            e.contains("port forward tcp:8888=192.168.122.73:9999"),
            "{e}"
        );
        assert!(
            e.contains("destination 172.16.1.186:8888 -> 192.168.122.73:9999"),
            "{e}"
        );
    }

    #[test]
    fn a_syn_under_auto_cookies_is_explained_as_the_router_would_take_it() {
        // Two half-open sessions fill the port forward: the third SYN gets a cookie. The
        // scratch copy has every session of the port forward (their external port is the
        // packet's), so it reaches the same cap.
        let mut cfg = Config::lab();
        cfg.max_half_open = 2;
        let mut r = Router::new(cfg, Instant::ZERO, 7);
        let now = Instant::from_secs(1);
        let syn = |from: &str| build("tcp", addr(from), addr("172.16.1.186:8888"), "syn").unwrap();
        for from in ["172.16.1.1:40001", "172.16.1.2:40002"] {
            let mut p = syn(from);
            assert!(r
                .handle(Side::Outside, &mut p, Ok(Offload::NONE), now)
                .is_some());
        }
        let third = syn("172.16.1.3:40003");
        let e = r.explain(Side::Outside, &third, now);
        assert!(e.contains("taken by the SYN proxy"), "{e}");
        // The data path does the same: no write inside, a SYN-ACK back outside.
        let mut p = third.clone();
        assert!(r
            .handle(Side::Outside, &mut p, Ok(Offload::NONE), now)
            .is_none());
        let answer = r.poll_transmit(now).expect("a SYN-ACK with a cookie");
        assert_eq!(answer.port, Side::Outside);
    }

    #[test]
    fn bad_input_is_refused_in_words() {
        assert!(build("gre", addr("1.2.3.4:1"), addr("5.6.7.8:2"), "").is_err());
        assert!(build("tcp", addr("1.2.3.4:1"), addr("[::1]:2"), "").is_err());
        assert!(build("tcp", addr("1.2.3.4:1"), addr("5.6.7.8:2"), "syn,nope").is_err());
        let r = Router::new(Config::lab(), Instant::ZERO, 7);
        assert!(r
            .explain(Side::Inside, &[1, 2, 3], Instant::ZERO)
            .contains("not an IPv4 or IPv6"));
    }
}
