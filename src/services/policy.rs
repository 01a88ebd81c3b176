//! The Adobe Flash socket policy server (TCP port 843).
//!
//! Protocol (Adobe, "Setting up a socket policy file server"): the client connects and
//! sends `<policy-file-request/>` followed by a NUL byte; the server answers with the
//! cross-domain policy XML followed by a NUL byte and closes the connection. Clients try
//! port 843 before their real connection and give up after about 3 s, so the server must
//! answer at once and must not be held up by idle or misbehaving clients:
//! * a request that stops being a prefix of the expected one, or grows past
//!   [`MAX_REQUEST`] bytes, is closed without reply;
//! * a connection older than the idle timeout without a complete request is reset;
//! * every connection is reset at twice the idle timeout, whatever its state, so a client
//!   that never reads the reply or never closes cannot keep a socket.
//!
//! [`classify`] is the pure request parser; [`PolicyServer`] drives a pool of smoltcp
//! listening sockets with it.

use std::rc::Rc;
use std::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

/// The request a client sends, without its terminating NUL.
pub const REQUEST: &[u8] = b"<policy-file-request/>";
/// Longest request accepted, NUL included.
pub const MAX_REQUEST: usize = 256;
/// Sockets each interface starts with; the pool grows on demand up to its maximum
/// (`--policy-max-clients`, [`DEFAULT_MAX_CLIENTS`]).
pub const POOL: usize = 64;
/// The most connections served at once per interface, by default.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
/// Sockets kept listening at all times: when fewer are free, the pool grows, up to its
/// maximum; there, the connections that have waited longest without a complete request
/// are reset to make room, so idle or slow clients cannot keep a well-behaved one out (a
/// SYN finding no listener would get a RST).
pub const SPARE_LISTENERS: usize = 8;
/// How long a new connection is safe from being displaced (see `keep_listeners`).
pub const GRACE: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(250);

/// The policy server's port (the Flash player's fixed choice).
pub const DEFAULT_PORT: u16 = 843;
/// How long a client may take to send its request; real clients give up after about 3 s.
pub const DEFAULT_IDLE: std::time::Duration = std::time::Duration::from_secs(3);

/// The default policy: any domain may connect to any port (as in the lab notes).
pub const DEFAULT_POLICY: &str = r#"<?xml version="1.0"?>
<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">
<cross-domain-policy>
   <site-control permitted-cross-domain-policies="master-only"/>
   <allow-access-from domain="*" to-ports="*" />
</cross-domain-policy>
"#;

/// What the bytes received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A valid request so far; wait for more.
    Incomplete,
    /// The complete request, NUL included.
    Complete,
    /// Not a policy request, or too long: close without reply.
    Invalid,
}

/// Classifies the bytes received so far on one connection.
pub fn classify(received: &[u8]) -> Request {
    match received.iter().position(|b| *b == 0) {
        // Whatever a client sends after its request is ignored.
        Some(nul) if &received[..nul] == REQUEST => Request::Complete,
        Some(_) => Request::Invalid,
        None if received.len() > MAX_REQUEST => Request::Invalid,
        None if received.len() <= REQUEST.len() && REQUEST.starts_with(received) => {
            Request::Incomplete
        }
        None => Request::Invalid,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Reading,
    /// Sending `reply` (the policy in force when the request completed: a reload while
    /// sending does not splice two policies).
    Sending {
        reply: Rc<[u8]>,
        sent: usize,
    },
    Closing,
}

struct Slot {
    handle: SocketHandle,
    phase: Phase,
    since: Instant,
    received: Vec<u8>,
}

/// Counters of the policy server.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyStats {
    pub served: u64,
    pub refused: u64,
    pub timed_out: u64,
    /// Incomplete connections reset to keep listeners free.
    pub displaced: u64,
    /// SYNs dropped because no socket was listening at that moment.
    pub busy: u64,
}

/// A pool of smoltcp sockets listening on the policy port of one interface.
pub struct PolicyServer {
    port: u16,
    reply: Rc<[u8]>,
    idle: Duration,
    slots: Vec<Slot>,
    /// The pool grows to at most this many sockets.
    max_clients: usize,
    pub stats: PolicyStats,
}

impl PolicyServer {
    /// Adds [`POOL`] listening sockets for `port` to `sockets` (fewer if `max_clients` is
    /// smaller). `policy` is sent followed by a NUL byte.
    pub fn new(
        sockets: &mut SocketSet<'_>,
        port: u16,
        policy: &[u8],
        idle: Duration,
        max_clients: usize,
    ) -> PolicyServer {
        let mut server = PolicyServer {
            port,
            reply: with_nul(policy),
            idle,
            slots: Vec::new(),
            max_clients: max_clients.max(1),
            stats: PolicyStats::default(),
        };
        for _ in 0..POOL.min(server.max_clients) {
            server.grow(sockets);
        }
        server
    }

    /// Adds one listening socket, unless the pool is at its maximum.
    fn grow(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        if self.slots.len() >= self.max_clients {
            return false;
        }
        let rx = tcp::SocketBuffer::new(vec![0; 512]);
        let tx = tcp::SocketBuffer::new(vec![0; self.reply.len().max(1024)]);
        let mut s = tcp::Socket::new(rx, tx);
        s.set_nagle_enabled(false);
        let _ = s.listen(self.port);
        self.slots.push(Slot {
            handle: sockets.add(s),
            phase: Phase::Idle,
            since: Instant::ZERO,
            received: Vec::with_capacity(MAX_REQUEST + 1),
        });
        true
    }

    /// How many sockets the pool has now.
    pub fn pool_size(&self) -> usize {
        self.slots.len()
    }

    /// Serves `policy` to connections from now on, with a new idle timeout.
    pub fn set_policy(&mut self, policy: &[u8], idle: Duration) {
        self.reply = with_nul(policy);
        self.idle = idle;
    }

    /// Advances every connection; call after each `Interface::poll`. Returns true if
    /// any socket changed state (poll the interface again to send what it queued).
    pub fn service(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let idle = smoltcp::time::Duration::from_millis(self.idle.as_millis() as u64);
        let mut changed = false;
        for slot in &mut self.slots {
            let s = sockets.get_mut::<tcp::Socket>(slot.handle);
            if !s.is_open() {
                // Closed or TIME-WAIT: listen again at once.
                if s.listen(self.port).is_ok() {
                    slot.phase = Phase::Idle;
                    slot.received.clear();
                }
                continue;
            }
            if slot.phase == Phase::Idle {
                if !s.is_active() {
                    continue; // still listening
                }
                slot.phase = Phase::Reading;
                slot.since = now;
            }
            let age = now - slot.since;
            if age > idle * 2 {
                s.abort();
                self.stats.timed_out += 1;
                changed = true;
                continue;
            }
            if slot.phase == Phase::Reading {
                let mut buf = [0u8; MAX_REQUEST + 1];
                while s.can_recv() {
                    let room = MAX_REQUEST + 1 - slot.received.len().min(MAX_REQUEST + 1);
                    match s.recv_slice(&mut buf[..room.max(1)]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => slot.received.extend_from_slice(&buf[..n]),
                    }
                    if slot.received.len() > MAX_REQUEST {
                        break;
                    }
                }
                match classify(&slot.received) {
                    Request::Complete => {
                        slot.phase = Phase::Sending {
                            reply: self.reply.clone(),
                            sent: 0,
                        }
                    }
                    Request::Invalid => {
                        s.close();
                        slot.phase = Phase::Closing;
                        self.stats.refused += 1;
                        changed = true;
                    }
                    Request::Incomplete if age > idle || peer_closed(s.state()) => {
                        s.abort();
                        self.stats.timed_out += 1;
                        changed = true;
                        continue;
                    }
                    Request::Incomplete => {}
                }
            }
            if let Phase::Sending { reply, sent } = &mut slot.phase {
                let n = s.send_slice(&reply[*sent..]).unwrap_or(0);
                *sent += n;
                changed |= n > 0;
                if *sent == reply.len() {
                    s.close();
                    slot.phase = Phase::Closing;
                    self.stats.served += 1;
                }
            }
        }
        changed | self.keep_listeners(sockets, now)
    }

    /// Resets the oldest incomplete connections (still reading, or closing and waiting on
    /// the client) until [`SPARE_LISTENERS`] sockets are free or listening. A connection
    /// younger than [`GRACE`] is left alone: a well-behaved client sends its request within
    /// a round trip, and a flood of new connections must not reset it before it could.
    /// With every socket taken and none old enough, SYNs are dropped instead (see
    /// [`PolicyServer::listening`]) and clients retry.
    fn keep_listeners(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let mut free = self.slots.iter().filter(|s| s.phase == Phase::Idle).count();
        if free >= SPARE_LISTENERS {
            return false;
        }
        // A burst of clients: grow the pool first, up to its maximum.
        while free < SPARE_LISTENERS && self.grow(sockets) {
            free += 1;
        }
        if free >= SPARE_LISTENERS {
            return true;
        }
        let victims = self.victims(sockets, now);
        for &i in victims.iter().take(SPARE_LISTENERS - free) {
            self.displace(sockets, i);
        }
        true
    }

    /// Connections that may be reset to free a socket, the first choice first: those still
    /// reading their request, then those served and waiting for the client to close, each
    /// oldest first; none younger than [`GRACE`].
    fn victims(&self, sockets: &SocketSet<'_>, now: Instant) -> Vec<usize> {
        let mut v: Vec<(u8, Instant, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| now - s.since >= GRACE)
            .filter_map(|(i, s)| match s.phase {
                Phase::Reading => Some((0, s.since, i)),
                // Served, and the client has acknowledged the whole policy: a reset now
                // loses it nothing. (Resetting while the policy is in flight would.)
                Phase::Closing if sockets.get::<tcp::Socket>(s.handle).send_queue() == 0 => {
                    Some((1, s.since, i))
                }
                _ => None,
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, i)| i).collect()
    }

    fn displace(&mut self, sockets: &mut SocketSet<'_>, i: usize) {
        let slot = &mut self.slots[i];
        sockets.get_mut::<tcp::Socket>(slot.handle).abort();
        slot.phase = Phase::Idle;
        slot.received.clear();
        self.stats.displaced += 1;
    }

    /// A SYN has come and no socket listens: adds a socket if the pool may grow, else frees
    /// one at once if a connection may be displaced, so the SYN finds it. False if neither
    /// (drop the SYN: the client retries).
    pub fn make_room(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        if self.grow(sockets) {
            return true;
        }
        let Some(&i) = self.victims(sockets, now).first() else {
            return false;
        };
        self.displace(sockets, i);
        sockets
            .get_mut::<tcp::Socket>(self.slots[i].handle)
            .listen(self.port)
            .is_ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Is a socket listening for a new connection? When none is, a SYN had better be
    /// dropped than answered with RST (smoltcp's answer when no socket listens): the client
    /// sends it again a second later, by when [`PolicyServer::service`] has freed a socket,
    /// as with a kernel whose accept queue is full. The caller counts it in `stats.busy`.
    pub fn listening(&self, sockets: &SocketSet<'_>) -> bool {
        self.slots
            .iter()
            .any(|s| sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Listen)
    }

    /// The earliest time a connection needs attention for its timeouts.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = smoltcp::time::Duration::from_millis(self.idle.as_millis() as u64);
        self.slots
            .iter()
            .filter(|s| s.phase != Phase::Idle)
            .map(|s| match s.phase {
                Phase::Reading => s.since + idle,
                _ => s.since + idle * 2,
            })
            .min()
    }
}

fn with_nul(policy: &[u8]) -> Rc<[u8]> {
    let mut v = policy.to_vec();
    v.push(0);
    v.into()
}

/// Has the client sent its FIN (so no more request bytes can come)?
fn peer_closed(state: tcp::State) -> bool {
    use tcp::State::*;
    matches!(state, CloseWait | LastAck | Closing | TimeWait)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn classifies_requests() {
        assert_eq!(classify(b""), Request::Incomplete);
        assert_eq!(classify(b"<policy-file"), Request::Incomplete);
        assert_eq!(classify(b"<policy-file-request/>"), Request::Incomplete);
        assert_eq!(classify(b"<policy-file-request/>\0"), Request::Complete);
        assert_eq!(classify(b"GET / HTTP/1.0\r\n"), Request::Invalid);
        assert_eq!(classify(b"<policy-file-request/>x"), Request::Invalid);
        assert_eq!(classify(b"<policy\0"), Request::Invalid);
        assert_eq!(classify(&[b'<'; 300]), Request::Invalid);
        let mut pipelined = b"<policy-file-request/>\0".to_vec();
        pipelined.extend_from_slice(&[b'x'; 300]);
        assert_eq!(classify(&pipelined), Request::Complete);
    }

    #[test]
    fn default_policy_allows_everyone() {
        assert!(DEFAULT_POLICY.contains(r#"<allow-access-from domain="*" to-ports="*" />"#));
        assert!(!DEFAULT_POLICY.contains('\0'));
    }
}
