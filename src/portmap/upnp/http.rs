//! The HTTP side of UPnP (RFC 9112 in its simplest form): one request per connection,
//! read whole (headers at most [`MAX_HEAD`] bytes, a body by `Content-Length` at most
//! [`MAX_BODY`]), answered, then closed. [`read`] is the pure request parser;
//! [`Server`] drives a pool of smoltcp sockets on the router's inside address with it.
//! A connection that has not sent its whole request within [`IDLE`] is reset, and the
//! pool is bounded, so slow or hostile clients cannot hold the router's memory.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpListenEndpoint};

pub const MAX_HEAD: usize = 4096;
pub const MAX_BODY: usize = 16384;
/// Sockets listening at once; the most connections served at once.
pub const POOL: usize = 8;
pub const IDLE: Duration = Duration::from_secs(10);

/// One request, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub soap_action: Option<String>,
    pub body: Vec<u8>,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Incomplete,
    Complete(Request),
    /// Answer with this status and close.
    Bad(u16),
}

/// Reads a request from the bytes received so far.
pub fn read(buf: &[u8]) -> Read {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Read::Bad(431),
        Ok(httparse::Status::Partial) => return Read::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Read::Bad(431),
        Err(_) => return Read::Bad(400),
    };
    if head > MAX_HEAD {
        return Read::Bad(431);
    }
    let mut length = 0usize;
    let mut soap_action = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => length = n,
                None => return Read::Bad(400),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Read::Bad(501);
        } else if h.name.eq_ignore_ascii_case("soapaction") {
            soap_action = Some(String::from_utf8_lossy(h.value).into_owned());
        }
    }
    if length > MAX_BODY {
        return Read::Bad(413);
    }
    if buf.len() < head + length {
        return Read::Incomplete;
    }
    Read::Complete(Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        soap_action,
        body: buf[head..head + length].to_vec(),
    })
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Not Implemented",
    }
}

/// A whole answer, closing the connection.
pub fn answer(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Server: Linux UPnP/1.1 tunnat/{}\r\nEXT:\r\n\r\n{body}",
        reason(status),
        body.len(),
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

struct Conn {
    handle: SocketHandle,
    /// When the connection was accepted (`None`: listening).
    since: Option<Instant>,
    buf: Vec<u8>,
    /// The answer still to be sent.
    out: Vec<u8>,
    answered: bool,
}

/// A pool of sockets serving HTTP on one address and port.
pub struct Server {
    conns: Vec<Conn>,
    endpoint: IpListenEndpoint,
    pub served: u64,
    pub refused: u64,
}

impl Server {
    pub fn new(sockets: &mut SocketSet<'static>, addr: std::net::Ipv4Addr, port: u16) -> Server {
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(addr)),
            port,
        };
        let conns = (0..POOL)
            .map(|_| {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; 4096]),
                    tcp::SocketBuffer::new(vec![0; 8192]),
                );
                let _ = s.listen(endpoint);
                Conn {
                    handle: sockets.add(s),
                    since: None,
                    buf: Vec::new(),
                    out: Vec::new(),
                    answered: false,
                }
            })
            .collect();
        Server {
            conns,
            endpoint,
            served: 0,
            refused: 0,
        }
    }

    /// Reads what came, answers complete requests with `handle(peer, request)` (status,
    /// content type, body), sends, closes, listens again. Returns whether anything changed.
    pub fn service(
        &mut self,
        sockets: &mut SocketSet<'static>,
        now: Instant,
        handle: &mut dyn FnMut(std::net::Ipv4Addr, &Request) -> (u16, &'static str, String),
    ) -> bool {
        let mut changed = false;
        for c in &mut self.conns {
            let s = sockets.get_mut::<tcp::Socket>(c.handle);
            if !s.is_open() {
                let _ = s.listen(self.endpoint);
                *c = Conn {
                    handle: c.handle,
                    since: None,
                    buf: Vec::new(),
                    out: Vec::new(),
                    answered: false,
                };
                changed = true;
                continue;
            }
            if s.state() == tcp::State::Listen {
                continue;
            }
            let since = *c.since.get_or_insert(now);
            while s.can_recv() && !c.answered {
                let _ = s.recv(|d| {
                    let n = d
                        .len()
                        .min(MAX_HEAD + MAX_BODY + 1 - c.buf.len().min(MAX_HEAD + MAX_BODY + 1));
                    c.buf.extend_from_slice(&d[..n]);
                    (d.len(), ())
                });
                changed = true;
                let peer = match s.remote_endpoint().map(|e| e.addr) {
                    Some(IpAddress::Ipv4(a)) => a,
                    _ => std::net::Ipv4Addr::UNSPECIFIED,
                };
                match read(&c.buf) {
                    Read::Incomplete => {}
                    Read::Complete(req) => {
                        let (st, ty, body) = handle(peer, &req);
                        c.out = answer(st, ty, &body);
                        c.answered = true;
                        self.served += 1;
                    }
                    Read::Bad(st) => {
                        c.out = answer(st, "text/plain", reason(st));
                        c.answered = true;
                        self.refused += 1;
                    }
                }
            }
            if c.answered {
                if !c.out.is_empty() && s.can_send() {
                    let n = s.send_slice(&c.out).unwrap_or(0);
                    c.out.drain(..n);
                    changed = true;
                }
                if c.out.is_empty() && s.state() == tcp::State::Established {
                    s.close();
                    changed = true;
                }
            } else if now - since > IDLE {
                s.abort();
                self.refused += 1;
                changed = true;
            }
            if c.answered && now - since > IDLE * 2 {
                s.abort();
                changed = true;
            }
        }
        changed
    }

    /// When a connection next times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter_map(|c| c.since)
            .map(|s| s + IDLE)
            .min()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn requests() {
        let get = b"GET /rootDesc.xml HTTP/1.1\r\nHost: 192.168.122.100:5000\r\n\r\n";
        assert!(matches!(read(&get[..20]), Read::Incomplete));
        let Read::Complete(r) = read(get) else {
            panic!()
        };
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/rootDesc.xml")
        );
        let post =
            b"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"x#y\"\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(read(post), Read::Incomplete));
        let mut full = post.to_vec();
        full.extend_from_slice(b"cde");
        let Read::Complete(r) = read(&full) else {
            panic!()
        };
        assert_eq!(
            (r.soap_action.as_deref(), &r.body[..]),
            (Some("\"x#y\""), &b"abcde"[..])
        );
    }

    #[test]
    fn bad_requests() {
        assert_eq!(read(b"\x00\x01garbage\r\n\r\n"), Read::Bad(400));
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"),
            Read::Bad(413)
        );
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Read::Bad(400)
        );
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Read::Bad(501)
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert_eq!(read(&long), Read::Bad(431));
    }
}
