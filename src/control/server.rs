//! The control socket's server side: a non-blocking Unix listener and up to
//! [`MAX_CLIENTS`] clients, each read and answered as its socket allows, so a stalled
//! client never pauses forwarding. What a request means is the router core's business
//! ([`crate::router::Router::handle_control`]); this file only moves bytes.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::proto::MAX_REQUEST;

/// Control clients served at once; more wait in the listener's backlog.
pub const MAX_CLIENTS: usize = 32;
/// A control client that has not sent its request, or taken its answer, by then is dropped.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// The listener; the socket file is removed on drop.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// Token of the listener; client `slot` has `first_client + slot`.
    listener_token: Token,
    first_client: usize,
    clients: Vec<Option<Client>>,
    /// Clients dropped for missing their deadline.
    pub timed_out: u64,
}

struct Client {
    stream: UnixStream,
    request: Vec<u8>,
    /// The answer once the request is complete, and how much of it has been written.
    answer: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

impl Client {
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

impl ControlServer {
    /// Listens on `path`, registered with `registry` under `listener_token`; clients get
    /// the tokens from `first_client` on.
    pub fn bind(
        path: &Path,
        registry: &Registry,
        listener_token: Token,
        first_client: usize,
    ) -> Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "--control {}: another tunnat is listening there",
                    path.display()
                );
            }
            let _ = std::fs::remove_file(path); // stale socket of an earlier run
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("--control {}", path.display()))?;
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
    pub fn accept(&mut self, registry: &Registry, answer: &mut dyn FnMut(&str) -> String) {
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
                request: Vec::new(),
                answer: None,
                deadline: Instant::now() + CLIENT_DEADLINE,
            });
            self.serve(slot, registry, answer);
        }
    }

    /// Reads client `slot`'s request, has `answer` answer it, writes the answer, as far as
    /// its socket allows now.
    pub fn serve(
        &mut self,
        slot: usize,
        registry: &Registry,
        answer: &mut dyn FnMut(&str) -> String,
    ) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if client.answer.is_none() {
            let Some(line) = client.read_request() else {
                return; // more to come
            };
            let mut bytes = answer(&line).into_bytes();
            bytes.push(b'\n');
            client.answer = Some((bytes, 0));
        }
        if client.write_answer() {
            self.drop_client(slot, registry);
        }
    }

    fn drop_client(&mut self, slot: usize, registry: &Registry) {
        if let Some(client) = self.clients.get_mut(slot).and_then(Option::take) {
            let _ = registry.deregister(&mut SourceFd(&client.stream.as_raw_fd()));
        }
    }

    /// Drops clients past their deadline, then accepts waiting ones into the free slots.
    pub fn expire(&mut self, registry: &Registry, answer: &mut dyn FnMut(&str) -> String) {
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
        self.accept(registry, answer);
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().flatten().map(|c| c.deadline).min()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
