//! `tunnat web`: the live web view, a separate process that talks to a router's control
//! socket and serves one page (`index.html`, embedded, nothing fetched from elsewhere):
//! the session table (filter, sort), counters with small time-series plots, the port
//! forwards, and for a session a ladder diagram of its packets before and after
//! translation, from the router's event ring (`--event-ring`).
//!
//! The page reads `/api/table`, `/api/stats`, `/api/dnat`, `/api/events?since=N` and
//! `/api/info`, which are the control requests' answers as they come. Changes
//! (`POST /api/dnat`) are refused unless `--allow-changes`, and then need the
//! `X-Tunnat: change` header, which no other site's page can send here without a CORS
//! grant. A request whose Host is a name other than `localhost` is refused, so a DNS
//! rebinding page cannot reach the view through the browser.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use tiny_http::{Header, Method, Request as HttpRequest, Response, Server};

use crate::control::client::call_raw;
use crate::control::Request;

/// The page.
const INDEX: &str = include_str!("index.html");
/// Largest request body read (a port forward rule).
const MAX_BODY: u64 = 4096;

/// What `tunnat web` was told.
pub struct WebConfig {
    pub listen: SocketAddr,
    pub control: PathBuf,
    pub allow_changes: bool,
}

/// Serves until killed.
pub fn serve(c: &WebConfig) -> Result<()> {
    let server = Server::http(c.listen).map_err(|e| anyhow!("--listen {}: {e}", c.listen))?;
    log::info!(
        "tunnat web: http://{}/ for the router on {} ({})",
        c.listen,
        c.control.display(),
        if c.allow_changes {
            "changes allowed"
        } else {
            "read-only"
        }
    );
    for req in server.incoming_requests() {
        handle(c, req);
    }
    Ok(())
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn reply(status: u16, body: String, kind: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut r = Response::from_string(body).with_status_code(status);
    for h in [
        header("Content-Type", kind),
        header("Cache-Control", "no-store"),
        header("X-Content-Type-Options", "nosniff"),
        header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'; img-src 'self' data:",
        ),
    ]
    .into_iter()
    .flatten()
    {
        r.add_header(h);
    }
    r
}

/// Is `host` (a Host header) one the view answers: an IP literal or `localhost`, with
/// the listening port?
pub fn host_allowed(host: &str, port: u16) -> bool {
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) if !n.is_empty() && (n.starts_with('[') || !n.contains(':')) => (n, p),
        _ => return false,
    };
    if p.parse::<u16>().ok() != Some(port) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok()
}

const JSON: &str = "application/json";

/// An answer: status, body, content type.
type Answer = (u16, String, &'static str);

/// A JSON refusal with `status`.
fn refuse(status: u16, why: &str) -> Answer {
    (
        status,
        serde_json::json!({"ok": false, "error": why}).to_string(),
        JSON,
    )
}

/// A control request's answer, as the router gave it.
fn forward(c: &WebConfig, r: &Request) -> Answer {
    match call_raw(&c.control, r) {
        Ok(j) => (200, j, JSON),
        Err(e) => refuse(502, &format!("{e:#}")),
    }
}

/// Serves one request: the Host checked first, then the page, the read-only API, or a
/// change.
pub fn handle(c: &WebConfig, mut req: HttpRequest) {
    let host = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default();
    let (status, body, kind) = if !host_allowed(&host, c.listen.port()) {
        (421, "unknown host\n".into(), "text/plain")
    } else if *req.method() == Method::Post && req.url() == "/api/dnat" {
        if c.allow_changes {
            change(c, &mut req)
        } else {
            refuse(403, "read-only: start tunnat web with --allow-changes")
        }
    } else {
        answer(c, &req)
    };
    let _ = req.respond(reply(status, body, kind));
}

/// The page and the read-only API.
fn answer(c: &WebConfig, req: &HttpRequest) -> Answer {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    match (req.method(), path) {
        (Method::Get, "/") => (200, INDEX.to_string(), "text/html; charset=utf-8"),
        (Method::Get, "/api/table") => forward(c, &Request::Table),
        (Method::Get, "/api/stats") => forward(c, &Request::Stats),
        (Method::Get, "/api/dnat") => forward(c, &Request::DnatList),
        (Method::Get, "/api/events") => {
            let since = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            forward(c, &Request::Events { since })
        }
        (Method::Get, "/api/info") => (
            200,
            serde_json::json!({
                "allow_changes": c.allow_changes,
                "version": env!("CARGO_PKG_VERSION"),
            })
            .to_string(),
            JSON,
        ),
        _ => (404, "not found\n".into(), "text/plain"),
    }
}

/// A change, when allowed: `{"action":"add"|"del","rule":"..."}` with the `X-Tunnat:
/// change` header.
fn change(c: &WebConfig, req: &mut HttpRequest) -> Answer {
    let marked = req
        .headers()
        .iter()
        .any(|h| h.field.equiv("X-Tunnat") && h.value.as_str() == "change");
    if !marked {
        return refuse(403, "a change needs the X-Tunnat: change header");
    }
    let mut body = String::new();
    if req
        .as_reader()
        .take(MAX_BODY)
        .read_to_string(&mut body)
        .is_err()
    {
        return refuse(400, "unreadable body");
    }
    #[derive(serde::Deserialize)]
    struct Change {
        action: String,
        rule: String,
    }
    let Ok(ch) = serde_json::from_str::<Change>(&body) else {
        return refuse(400, r#"want {"action":"add"|"del","rule":...}"#);
    };
    let r = match ch.action.as_str() {
        "add" => Request::DnatAdd { rule: ch.rule },
        "del" => Request::DnatDel { rule: ch.rule },
        _ => return refuse(400, "action is add or del"),
    };
    forward(c, &r)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn hosts_a_rebinding_page_could_use_are_refused() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "192.168.1.5:8080",
        ] {
            assert!(host_allowed(ok, 8080), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:80",
            "127.0.0.1",
            "",
            "::1:8080",
            "localhost.evil:8080",
        ] {
            assert!(!host_allowed(bad, 8080), "{bad}");
        }
    }
}
