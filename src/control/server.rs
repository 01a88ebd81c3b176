//! The control socket's server side: a non-blocking Unix listener and up to
//! [`MAX_CLIENTS`] clients, each read and answered as its socket allows, so a stalled
//! client never pauses forwarding. What a request means is the router core's business
//! ([`crate::router::Router::handle_control`]); this file moves bytes and says who may
//! ask what.
//!
//! Who may connect: the socket is created mode 0660 whatever the umask, owned by
//! tunnat's user and group (or `--control-group`). Who may change the router (`dnat add`,
//! `dnat del`, `reload`): root, tunnat's own uid, or a member of `--control-group`, by
//! the peer's credentials (`SO_PEERCRED`); read-only requests also from tunnat's group.
//! Only a stale socket is ever removed at the path: anything else there is refused.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::proto::MAX_REQUEST;

/// An answer, whole or in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<C> {
    /// The whole answer line (without the newline).
    Whole(String),
    /// The first piece of a long answer, and the cursor for the rest (`None`: it was the
    /// last). The next piece is asked for only once the socket has taken this one, so a
    /// long answer never sits whole in memory and a slow reader slows only itself.
    Piece(String, Option<C>),
}

/// Answers requests: the router core behind the driver.
pub trait Responder {
    /// Where a long answer goes on from.
    type Cursor;
    /// The answer to a request line from `peer`.
    fn answer(&mut self, line: &str, peer: Peer) -> Reply<Self::Cursor>;
    /// The next piece of a long answer, and whether more follow.
    fn more(&mut self, cursor: &mut Self::Cursor) -> (String, bool);
}

/// Pieces of long answers written for one client per turn of the event loop; a client
/// with more to take waits for the next turn, so forwarding goes on between pieces.
pub const PIECES_PER_TURN: usize = 1;
/// Clients given a piece per turn, all together: with 32 clients reading a large table
/// at once, a turn still costs a few milliseconds, not tens.
pub const CLIENTS_PER_TURN: usize = 4;

/// How far writing an answer got.
enum Written {
    All,
    Blocked,
    Failed,
}

/// The credentials of the process at the other end of `s`.
fn peer_credentials(s: &UnixStream) -> Option<Peer> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `c` is a live ucred and `len` its size; the kernel writes at most that.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(Peer {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// Control clients served at once; more wait in the listener's backlog.
pub const MAX_CLIENTS: usize = 32;
/// A control client that has not sent its request, or taken its answer, by then is dropped.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// A client's credentials, as the kernel gives them (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Who may ask what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// tunnat's own uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// `--control-group`: its members may change the router too.
    pub group: Option<u32>,
}

impl Access {
    /// The process's own credentials, and `group`.
    pub fn own(group: Option<u32>) -> Access {
        // SAFETY: geteuid and getegid cannot fail and touch no memory of ours.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Access { uid, gid, group }
    }

    /// May `peer` send a request that changes the router (`changes`), or a read-only one?
    pub fn allows(&self, peer: Peer, changes: bool) -> bool {
        let trusted = peer.uid == 0 || peer.uid == self.uid || Some(peer.gid) == self.group;
        trusted || (!changes && peer.gid == self.gid)
    }
}

/// The listener; the socket file is removed on drop.
pub struct ControlServer<C> {
    listener: UnixListener,
    path: PathBuf,
    /// Token of the listener; client `slot` has `first_client + slot`.
    listener_token: Token,
    first_client: usize,
    clients: Vec<Option<Client<C>>>,
    /// Clients whose socket can take more of a long answer, to go on with next turn.
    pending: Vec<usize>,
    /// Clients dropped for missing their deadline.
    pub timed_out: u64,
}

struct Client<C> {
    stream: UnixStream,
    peer: Peer,
    request: Vec<u8>,
    /// The answer (or its current piece) once the request is complete, and how much of
    /// it has been written.
    answer: Option<(Vec<u8>, usize)>,
    /// Where the rest of a long answer comes from.
    next: Option<C>,
    deadline: Instant,
}

impl<C> Client<C> {
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

    /// Writes what the socket takes of the current piece.
    fn write_answer(&mut self) -> Written {
        let Some((answer, sent)) = &mut self.answer else {
            return Written::Blocked;
        };
        while *sent < answer.len() {
            match io::Write::write(&mut self.stream, &answer[*sent..]) {
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Written::Blocked,
                Err(_) => return Written::Failed,
            }
        }
        Written::All
    }

    /// Sets the piece to write next; the last one ends the line.
    fn set_piece(&mut self, piece: String, last: bool) {
        let mut bytes = piece.into_bytes();
        if last {
            bytes.push(b'\n');
            self.next = None;
        }
        self.answer = Some((bytes, 0));
        // A reader that keeps taking pieces keeps its connection.
        self.deadline = Instant::now() + CLIENT_DEADLINE;
    }
}

impl<C> ControlServer<C> {
    /// Listens on `path`, registered with `registry` under `listener_token`; clients get
    /// the tokens from `first_client` on. The socket is mode 0660, in `group` if given.
    pub fn bind(
        path: &Path,
        group: Option<u32>,
        registry: &Registry,
        listener_token: Token,
        first_client: usize,
    ) -> Result<ControlServer<C>> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    bail!(
                        "--control {}: another tunnat is listening there",
                        path.display()
                    );
                }
                // A stale socket of an earlier run: nothing answers on it.
                std::fs::remove_file(path).with_context(|| {
                    format!("--control {}: removing the stale socket", path.display())
                })?;
            }
            Ok(_) => bail!(
                "--control {}: exists and is not a socket; refusing to remove it",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("--control {}", path.display())),
        }
        // Created 0660 whatever the umask. The process is still single-threaded here.
        // SAFETY: umask only sets the process's file mode mask.
        let old = unsafe { libc::umask(0o117) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.with_context(|| format!("--control {}", path.display()))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
                format!("--control-group: giving {} to group {gid}", path.display())
            })?;
        }
        listener.set_nonblocking(true)?;
        registry
            .register(
                &mut SourceFd(&listener.as_raw_fd()),
                listener_token,
                Interest::READABLE,
            )
            .context("registering the control socket")?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            listener_token,
            first_client,
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            pending: Vec::new(),
            timed_out: 0,
        })
    }

    /// Which client a token belongs to, if any; `Some(None)` for the listener.
    pub fn slot_of(&self, token: Token) -> Option<Option<usize>> {
        if token == self.listener_token {
            return Some(None);
        }
        let slot = token.0.checked_sub(self.first_client)?;
        (slot < MAX_CLIENTS).then_some(Some(slot))
    }

    /// Accepts clients while a slot is free (the rest wait in the backlog), serving each
    /// at once: its request may be there already.
    pub fn accept(&mut self, registry: &Registry, r: &mut dyn Responder<Cursor = C>) {
        loop {
            let Some(slot) = self.clients.iter().position(Option::is_none) else {
                return;
            };
            let stream = match self.listener.accept() {
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
            let Some(peer) = peer_credentials(&stream) else {
                continue;
            };
            let token = Token(self.first_client + slot);
            if registry
                .register(
                    &mut SourceFd(&stream.as_raw_fd()),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            self.clients[slot] = Some(Client {
                stream,
                peer,
                request: Vec::new(),
                answer: None,
                next: None,
                deadline: Instant::now() + CLIENT_DEADLINE,
            });
            self.serve(slot, registry, r);
        }
    }

    /// Reads client `slot`'s request, has `answer` answer it, writes the answer, as far as
    /// its socket allows now.
    pub fn serve(&mut self, slot: usize, registry: &Registry, r: &mut dyn Responder<Cursor = C>) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if client.answer.is_none() {
            let Some(line) = client.read_request() else {
                return; // more to come
            };
            match r.answer(&line, client.peer) {
                Reply::Whole(a) => client.set_piece(a, true),
                Reply::Piece(p, next) => {
                    let last = next.is_none();
                    client.next = next;
                    client.set_piece(p, last);
                }
            }
        }
        let mut pieces = 0;
        loop {
            match client.write_answer() {
                Written::Blocked => return,
                Written::Failed => break,
                Written::All => match &mut client.next {
                    Some(_) if pieces == PIECES_PER_TURN => {
                        if !self.pending.contains(&slot) {
                            self.pending.push(slot);
                        }
                        return;
                    }
                    Some(cursor) => {
                        let (piece, more) = r.more(cursor);
                        client.set_piece(piece, !more);
                        pieces += 1;
                    }
                    None => break,
                },
            }
        }
        self.drop_client(slot, registry);
    }

    /// Do clients wait for their turn to take more of a long answer?
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Gives up to [`CLIENTS_PER_TURN`] clients waiting for more of a long answer their
    /// turn, the longest waiting first; the others go next time.
    pub fn serve_pending(&mut self, registry: &Registry, r: &mut dyn Responder<Cursor = C>) {
        let n = self.pending.len().min(CLIENTS_PER_TURN);
        for slot in self.pending.drain(..n).collect::<Vec<_>>() {
            self.serve(slot, registry, r);
        }
    }

    fn drop_client(&mut self, slot: usize, registry: &Registry) {
        if let Some(client) = self.clients.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut SourceFd(&client.stream.as_raw_fd()));
        }
    }

    /// Drops clients past their deadline, then accepts waiting ones into the free slots.
    pub fn expire(&mut self, registry: &Registry, r: &mut dyn Responder<Cursor = C>) {
        let now = Instant::now();
        for slot in 0..self.clients.len() {
            if self.clients[slot]
                .as_ref()
                .is_some_and(|c| c.deadline <= now)
            {
                log::debug!("control client too slow: dropped");
                self.timed_out += 1;
                self.drop_client(slot, registry);
            }
        }
        self.accept(registry, r);
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().flatten().map(|c| c.deadline).min()
    }
}

impl<C> Drop for ControlServer<C> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn who_may_ask_what() {
        let a = Access {
            uid: 1000,
            gid: 1000,
            group: Some(2000),
        };
        let peer = |uid, gid| Peer { pid: 1, uid, gid };
        for (p, read, change) in [
            (peer(0, 0), true, true),         // root
            (peer(1000, 5), true, true),      // tunnat's own user
            (peer(1001, 2000), true, true),   // --control-group
            (peer(1001, 1000), true, false),  // tunnat's group: read only
            (peer(1001, 1001), false, false), // anyone else
        ] {
            assert_eq!(
                (a.allows(p, false), a.allows(p, true)),
                (read, change),
                "{p:?}"
            );
        }
    }
}
