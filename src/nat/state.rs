//! The translation state as a value, so that a restart need not break the connections
//! through the router (`--state-file`): every session with its mapping, TCP state and
//! idle time, and the external ports held after their release (RFC 6888 REQ-8).
//!
//! Times are saved relative to the moment of saving (how long each session had been
//! idle), because the core's [`Instant`]s mean nothing to another process. Restoring adds
//! the time the router was stopped, and leaves out what timed out meanwhile: a session
//! idle past its timeout is gone, as it would have been had the router run on.
//!
//! Nothing read back is trusted: [`Nat::restore`] checks each session as the table
//! checks a new one (the inside network, free external ports, the limits, a TCP state
//! that can be) and fails whole on the first that cannot be, naming it. The caller then
//! refuses to start rather than run on half a table.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::endpoint::{Address, Endpoint, MapKey, SessionKey};
use super::session::Session;
use super::tcp_state::{TcpPhase, TcpTrack};
use super::time::Instant;
use super::Nat;
use crate::wire::transport::Protocol;

/// One session as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedSession {
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// The inside endpoint (for ICMP, the port is the echo identifier); its family is the
    /// session's.
    pub inside: SocketAddr,
    /// The remote endpoint (for ICMP, port 0).
    pub remote: SocketAddr,
    /// The router's external port (or identifier) for the session.
    pub ext_port: u16,
    /// Opened through a port forward rather than a mapping.
    pub dnat: bool,
    /// Milliseconds since its last packet, when saved.
    pub idle_ms: u64,
    /// Milliseconds since it was created, when saved.
    pub age_ms: u64,
    /// Packets and bytes, `[out, in]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// The TCP tracker ([`TcpTrack::to_saved`]); absent for UDP and ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<[u32; 7]>,
    /// A connection the SYN proxy opened ([`super::syn_proxy`]): its sequence numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_proxy: Option<SavedProxy>,
}

/// What the SYN proxy knows of a connection it opened, as saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedProxy {
    pub client_isn: u32,
    pub cookie_isn: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_isn: Option<u32>,
    pub mss: u16,
    pub window: u16,
}

/// An external port held after its mapping ended (RFC 6888 REQ-8), as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedHold {
    pub proto: String,
    pub port: u16,
    /// The inside endpoint whose mapping had it (it may take the port back).
    pub owner: SocketAddr,
    /// Milliseconds of the hold left, when saved.
    pub left_ms: u64,
    /// The owner is an IPv6 host behind NAT64: the port is the IPv4 core's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat64: bool,
}

/// The whole translation state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatState {
    pub sessions: Vec<SavedSession>,
    pub held: Vec<SavedHold>,
}

/// What [`Nat::restore`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub sessions: usize,
    /// Sessions that timed out while the router was stopped, left out.
    pub expired: usize,
    pub held: usize,
}

fn protocol(name: &str) -> Result<Protocol, String> {
    match name {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "icmp" => Ok(Protocol::Icmp),
        other => Err(format!("unknown protocol '{other}'")),
    }
}

/// The endpoint, if `a` is of family `A`.
fn endpoint<A: Address>(a: SocketAddr) -> Result<Endpoint<A>, String> {
    let ip = A::from_ip(a.ip()).ok_or_else(|| format!("{a} is not an {} endpoint", A::FAMILY))?;
    Ok(Endpoint::new(ip, a.port()))
}

fn socket<A: Address>(e: Endpoint<A>) -> SocketAddr {
    SocketAddr::new(e.addr.to_ip(), e.port)
}

impl NatState {
    /// The sessions and holds of one family's core (both ends of that family).
    pub fn of_family(&self, v6: bool) -> NatState {
        NatState {
            sessions: (self.sessions.iter())
                .filter(|s| s.inside.is_ipv6() == v6 && s.remote.is_ipv6() == v6)
                .cloned()
                .collect(),
            held: (self.held.iter())
                .filter(|h| h.owner.is_ipv6() == v6 && !h.nat64)
                .cloned()
                .collect(),
        }
    }

    /// The NAT64 sessions (an IPv6 host inside, an IPv4 remote) and their held ports,
    /// which live in the IPv4 core under the hosts' stand-ins.
    pub fn of_nat64(&self) -> NatState {
        NatState {
            sessions: (self.sessions.iter())
                .filter(|s| s.inside.is_ipv6() && s.remote.is_ipv4())
                .cloned()
                .collect(),
            held: self.held.iter().filter(|h| h.nat64).cloned().collect(),
        }
    }

    /// Both families' state, in one.
    pub fn merge(mut self, other: NatState) -> NatState {
        self.sessions.extend(other.sessions);
        self.held.extend(other.held);
        self
    }
}

impl<A: Address> Nat<A> {
    /// The state at `now`: sessions from the longest idle to the most recent.
    pub fn save(&self, now: Instant) -> NatState {
        self.save_where(now, |_, _| true)
    }

    /// [`Nat::save`] of the sessions `keep` picks (and every held port).
    pub fn save_where(
        &self,
        now: Instant,
        keep: impl Fn(&SessionKey<A>, &Session) -> bool,
    ) -> NatState {
        let table = self.table();
        let mut sessions: Vec<SavedSession> = table
            .sessions()
            .filter(|(k, s)| keep(k, s))
            .map(|(k, s)| SavedSession {
                proto: k.protocol.name().to_string(),
                inside: socket(k.inside),
                remote: socket(k.remote),
                ext_port: s.ext_port,
                dnat: s.dnat,
                idle_ms: now.since(s.last_seen).as_millis() as u64,
                age_ms: now.since(s.created()).as_millis() as u64,
                packets: s.packets,
                bytes: s.bytes,
                tcp: (k.protocol == Protocol::Tcp).then(|| s.tcp.to_saved()),
                syn_proxy: (self.proxy.conns.get(k))
                    .filter(|_| s.proxied)
                    .map(|p| SavedProxy {
                        client_isn: p.client_isn,
                        cookie_isn: p.cookie_isn,
                        server_isn: p.server_isn,
                        mss: p.mss,
                        window: p.window,
                    }),
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.idle_ms));
        let held = table
            .ports
            .held()
            .filter(|(_, _, until)| *until > now)
            .map(|(port, owner, until)| SavedHold {
                proto: owner.protocol.name().to_string(),
                port,
                owner: socket(owner.inside),
                left_ms: until.since(now).as_millis() as u64,
                nat64: false,
            })
            .collect();
        NatState { sessions, held }
    }

    /// Puts back a state saved `stopped` ago, into a core that has no sessions yet, at
    /// `now`. Sessions that timed out meanwhile are left out. On error (naming the
    /// session) the core is left as it was half-way: the caller must not run it.
    pub fn restore(
        &mut self,
        state: NatState,
        stopped: Duration,
        now: Instant,
    ) -> Result<Restored, String> {
        let mut done = Restored::default();
        let mut sessions = state.sessions;
        // Oldest first: each is restored as the youngest, so the LRU ends up in order.
        sessions.sort_by_key(|s| std::cmp::Reverse(s.idle_ms));
        for (n, saved) in sessions.into_iter().enumerate() {
            let what = format!(
                "session {} ({} {} -> {})",
                n + 1,
                saved.proto,
                saved.inside,
                saved.remote
            );
            let restored = self
                .restore_one(saved, stopped, now)
                .map_err(|e| format!("{what}: {e}"))?;
            match restored {
                true => done.sessions += 1,
                false => done.expired += 1,
            }
        }
        let mut held = state.held;
        held.sort_by_key(|h| h.left_ms);
        for h in held {
            let p = protocol(&h.proto).map_err(|e| format!("held port {}: {e}", h.port))?;
            let left = Duration::from_millis(h.left_ms);
            let inside =
                endpoint::<A>(h.owner).map_err(|e| format!("held port {}: {e}", h.port))?;
            if left <= stopped
                || !(self.cfg.inside.contains(inside.addr) || self.is_stand_in(inside.addr))
            {
                continue;
            }
            let owner = MapKey {
                protocol: p,
                inside,
            };
            self.table
                .ports
                .restore_held(h.port, owner, now + (left - stopped));
            done.held += 1;
        }
        Ok(done)
    }

    /// Is `a` an IPv6 host's stand-in, on an IPv4 core doing NAT64?
    fn is_stand_in(&self, a: A) -> bool {
        let b = a.to_bits128();
        self.cfg.nat64 && A::BITS == 32 && b >> 24 == 0 && b != 0
    }

    /// One session; false if it timed out while the router was stopped.
    fn restore_one(
        &mut self,
        saved: SavedSession,
        stopped: Duration,
        now: Instant,
    ) -> Result<bool, String> {
        let p = protocol(&saved.proto)?;
        let key = SessionKey {
            protocol: p,
            inside: endpoint(saved.inside)?,
            remote: endpoint(saved.remote)?,
        };
        let inside = self.cfg.inside;
        if !inside.is_other_host(key.inside.addr) && !self.is_stand_in(key.inside.addr) {
            return Err(format!(
                "{} is not a host of the inside network {inside}",
                key.inside.addr
            ));
        }
        let tcp = match (p, saved.tcp) {
            (Protocol::Tcp, Some(v)) => {
                TcpTrack::from_saved(v).ok_or("its TCP state cannot be".to_string())?
            }
            (Protocol::Tcp, None) => return Err("a TCP session without its TCP state".into()),
            (_, Some(_)) => return Err("TCP state on a session that is not TCP".into()),
            (_, None) => TcpTrack::default(),
        };
        if saved.age_ms < saved.idle_ms {
            return Err("idle for longer than it has existed".into());
        }
        let idle = Duration::from_millis(saved.idle_ms).saturating_add(stopped);
        let mut session = Session::new(saved.ext_port, saved.dnat, now - idle);
        session.tcp = tcp;
        session.set_created(now - Duration::from_millis(saved.age_ms).saturating_add(stopped));
        session.packets = saved.packets;
        session.bytes = saved.bytes;
        if idle >= self.table.timeout_of(p, &session) {
            return Ok(false);
        }
        let half_open = saved.dnat && p == Protocol::Tcp && tcp.phase() == TcpPhase::HalfOpenIn;
        if saved.syn_proxy.is_some() && !(saved.dnat && p == Protocol::Tcp) {
            return Err("SYN proxy state on a session not through a TCP port forward".into());
        }
        session.proxied = saved.syn_proxy.is_some();
        self.table.restore(key, session)?;
        if let Some(sp) = saved.syn_proxy {
            let proxied = super::syn_proxy::Proxied {
                client_isn: sp.client_isn,
                cookie_isn: sp.cookie_isn,
                server_isn: sp.server_isn,
                mss: sp.mss,
                window: sp.window,
            };
            self.proxy.conns.insert(key, proxied);
        }
        if half_open {
            // Counted against its port forward's cap again, if the rule is still there.
            if let Some(r) = self.cfg.dnat.iter().find(|r| r.contains(p, saved.ext_port)) {
                self.table.note_half_open((p, r.first), key);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::nat::test::{lab, tcp_packet, udp_packet};
    use crate::nat::{NatConfig, Side, Verdict};
    use crate::wire::transport::TcpFlags;
    use std::net::Ipv4Addr;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 101);
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
    const OUT: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 186);

    fn forward(nat: &mut Nat, side: Side, mut pkt: Vec<u8>, now: Instant) -> Vec<u8> {
        match nat.process(side, &mut pkt, now) {
            Verdict::Forward { len } => pkt[..len].to_vec(),
            v => panic!("not forwarded: {v:?}"),
        }
    }

    /// A NAPT connection and a port-forwarded one, both established, and a UDP flow.
    fn busy(now: Instant) -> Nat {
        let mut nat = lab();
        let (a, s, ack) = (TcpFlags::ACK, TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK);
        forward(
            &mut nat,
            Side::Inside,
            tcp_packet(CLIENT, 40000, REMOTE, 80, s, 100),
            now,
        );
        forward(
            &mut nat,
            Side::Outside,
            tcp_packet(REMOTE, 80, OUT, 40000, ack, 900),
            now,
        );
        forward(
            &mut nat,
            Side::Inside,
            tcp_packet(CLIENT, 40000, REMOTE, 80, a, 101),
            now,
        );
        forward(
            &mut nat,
            Side::Outside,
            tcp_packet(REMOTE, 5555, OUT, 8888, s, 7000),
            now,
        );
        forward(
            &mut nat,
            Side::Inside,
            tcp_packet(SERVER, 9999, REMOTE, 5555, ack, 300),
            now,
        );
        forward(
            &mut nat,
            Side::Outside,
            tcp_packet(REMOTE, 5555, OUT, 8888, a, 7001),
            now,
        );
        forward(
            &mut nat,
            Side::Inside,
            udp_packet(CLIENT, 5353, REMOTE, 53),
            now,
        );
        nat
    }

    #[test]
    fn a_restored_core_translates_the_same_connections_the_same_way() {
        let t0 = Instant::from_secs(1000);
        let old = busy(t0);
        let saved = old.save(t0 + Duration::from_secs(5));
        assert_eq!(saved.sessions.len(), 3);
        // A new process: its clock starts elsewhere.
        let t1 = Instant::from_secs(50);
        let mut new = lab();
        let r = new
            .restore(saved.clone(), Duration::from_secs(2), t1)
            .unwrap();
        assert_eq!((r.sessions, r.expired), (3, 0));
        assert_eq!(new.save(t1).sessions.len(), 3);
        let states: Vec<_> = new
            .table()
            .sessions()
            .filter(|(k, _)| k.protocol == Protocol::Tcp)
            .map(|(_, s)| s.tcp.name())
            .collect();
        assert_eq!(states, ["ESTABLISHED", "ESTABLISHED"]);
        // Data continues both ways, through the same external ports.
        let out = forward(
            &mut new,
            Side::Inside,
            tcp_packet(CLIENT, 40000, REMOTE, 80, TcpFlags::ACK, 101),
            t1,
        );
        assert_eq!(&out[20..22], &40000u16.to_be_bytes());
        let back = forward(
            &mut new,
            Side::Outside,
            tcp_packet(REMOTE, 5555, OUT, 8888, TcpFlags::ACK, 7001),
            t1,
        );
        assert_eq!(&back[16..20], &SERVER.octets());
        assert_eq!(&back[22..24], &9999u16.to_be_bytes());
        let reply = forward(
            &mut new,
            Side::Inside,
            tcp_packet(SERVER, 9999, REMOTE, 5555, TcpFlags::ACK, 301),
            t1,
        );
        assert_eq!(&reply[20..22], &8888u16.to_be_bytes());
        // The idle time carried over: saved 5 s idle, stopped 2 s.
        let udp = new
            .table()
            .sessions()
            .find(|(k, _)| k.protocol == Protocol::Udp)
            .map(|(_, s)| t1.since(s.last_seen))
            .unwrap();
        assert_eq!(udp, Duration::from_secs(7));
    }

    #[test]
    fn what_timed_out_while_stopped_is_left_out() {
        let t0 = Instant::from_secs(1000);
        let saved = busy(t0).save(t0);
        let mut new = lab();
        // UDP's 300 s passed; TCP's 7440 s did not.
        let r = new
            .restore(saved, Duration::from_secs(400), Instant::ZERO)
            .unwrap();
        assert_eq!((r.sessions, r.expired), (2, 1));
    }

    #[test]
    fn a_state_that_cannot_be_is_refused_and_named() {
        let t0 = Instant::from_secs(1000);
        let good = busy(t0).save(t0);
        let refuse = |f: &dyn Fn(&mut NatState), want: &str| {
            let mut s = good.clone();
            f(&mut s);
            let e = lab().restore(s, Duration::ZERO, t0).unwrap_err();
            assert!(e.contains(want), "{e}");
        };
        refuse(
            &|s| s.sessions[0].proto = "sctp".into(),
            "unknown protocol 'sctp'",
        );
        refuse(
            &|s| s.sessions[0].inside = "10.9.9.9:1".parse().unwrap(),
            "not a host of the inside network",
        );
        refuse(
            &|s| {
                let dup = s.sessions[0].clone();
                s.sessions.push(dup)
            },
            "appears twice",
        );
        refuse(
            &|s| {
                let i = s.sessions.iter().position(|x| x.proto == "tcp").unwrap();
                s.sessions[i].tcp = Some([0, 0, 0, 99, 0, 0, 0]);
            },
            "TCP state cannot be",
        );
        refuse(
            &|s| {
                let i = s.sessions.iter().position(|x| !x.dnat && x.proto == "tcp");
                s.sessions[i.unwrap()].ext_port = 843;
            },
            "router's own",
        );
        refuse(
            &|s| {
                let i = s.sessions.iter().position(|x| x.proto == "udp").unwrap();
                s.sessions[i].idle_ms = s.sessions[i].age_ms + 1;
            },
            "idle for longer",
        );
        // A table made smaller since.
        let mut small = Nat::new(NatConfig {
            limits: crate::nat::Limits {
                max_sessions: 2,
                ..Default::default()
            },
            ..NatConfig::lab()
        });
        let e = small.restore(good.clone(), Duration::ZERO, t0).unwrap_err();
        assert!(e.contains("more sessions than the table holds (2)"), "{e}");
    }

    #[test]
    fn held_ports_stay_held_for_what_is_left_of_their_hold() {
        let t0 = Instant::from_secs(1000);
        let mut nat = busy(t0);
        // The UDP flow times out: its port is held 120 s from then.
        let t1 = t0 + Duration::from_secs(301);
        nat.handle_timeout(t1, |_, _| {});
        let saved = nat.save(t1 + Duration::from_secs(20));
        assert_eq!(saved.held.len(), 1);
        assert_eq!(saved.held[0].left_ms, 100_000);
        let mut new = lab();
        let r = new
            .restore(saved, Duration::from_secs(30), Instant::ZERO)
            .unwrap();
        assert_eq!(r.held, 1);
        assert_eq!(
            new.poll_timeout(),
            Some(Instant::from_secs(70)),
            "the hold ends when it would have"
        );
    }
}
