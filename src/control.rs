//! The control socket: a Unix stream socket on which each connection carries one JSON
//! request line and gets one JSON answer. `tunnat table`, `stats`, `dnat` and `reload` are
//! its client; scripts can speak it directly, e.g.
//! `echo '{"cmd":"table"}' | socat - UNIX-CONNECT:/run/tunnat.sock`.
//!
//! Requests: `{"cmd":"table"}`, `{"cmd":"stats"}`, `{"cmd":"dnat-list"}`,
//! `{"cmd":"dnat-add","rule":"tcp:8888=192.168.122.73:9999"}`, `{"cmd":"dnat-del","rule":...}`,
//! `{"cmd":"reload"}`. Answers: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::nat::{Instant, Nat};
use crate::wire::transport::Protocol;

/// Default path of the control socket for the client subcommands.
pub const DEFAULT_SOCKET: &str = "/run/tunnat.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Table,
    Stats,
    DnatList,
    DnatAdd { rule: String },
    DnatDel { rule: String },
    Reload,
}

/// One row of `tunnat table`, like a line of `conntrack -L`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub proto: String,
    pub state: String,
    pub inside: String,
    pub outside: String,
    pub remote: String,
    pub dnat: bool,
    pub idle_s: u64,
    pub timeout_s: u64,
    pub packets_out: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

/// The session table as rows, most recently used first.
pub fn table_rows(nat: &Nat, now: Instant) -> Vec<Row> {
    let outside = nat.config().outside.addr;
    nat.table()
        .sessions()
        .map(|(k, s)| Row {
            proto: k.protocol.name().to_string(),
            state: if k.protocol == Protocol::Tcp {
                s.tcp.name().to_string()
            } else {
                "-".to_string()
            },
            inside: k.inside.to_string(),
            outside: format!("{outside}:{}", s.ext_port),
            remote: k.remote.to_string(),
            dnat: s.dnat,
            idle_s: now.since(s.last_seen).as_secs(),
            timeout_s: nat.table().timeout_of(k.protocol, s).as_secs(),
            packets_out: s.packets[0],
            packets_in: s.packets[1],
            bytes_out: s.bytes[0],
            bytes_in: s.bytes[1],
        })
        .collect()
}

/// The core's counters as JSON.
pub fn nat_stats(nat: &Nat) -> Value {
    let s = nat.stats();
    let t = nat.table();
    let drops: serde_json::Map<String, Value> = s
        .drop_counts()
        .map(|(r, n)| (r.name().to_string(), json!(n)))
        .collect();
    json!({
        "forwarded_out": s.forwarded_out,
        "forwarded_in": s.forwarded_in,
        "local": s.local,
        "hairpinned": s.hairpinned,
        "fragments_held": s.fragments_held,
        "reassembled": s.reassembled,
        "fragmented": s.fragmented,
        "reassembly_pending": nat.reassembler().pending(),
        "reassembly_timed_out": nat.reassembler().timed_out,
        "reassembly_evicted": nat.reassembler().evicted,
        "icmp_errors_sent": s.icmp_errors_sent,
        "icmp_errors_translated": s.icmp_errors_translated,
        "gso_forwarded": s.gso_forwarded,
        "drops": drops,
        "sessions": t.len(),
        "mappings": t.mapping_count(),
        "sessions_created": t.stats.sessions_created,
        "sessions_expired": t.stats.sessions_expired,
        "sessions_evicted": t.stats.sessions_evicted,
        "mappings_created": t.stats.mappings_created,
        "mappings_released": t.stats.mappings_released,
    })
}

/// Sends one request to the router at `socket` and returns its answer.
pub fn call(socket: &Path, req: &Request) -> Result<Value> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the control socket {} (is tunnat running with --control {}?)",
            socket.display(),
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .context("reading the answer")?;
    let v: Value =
        serde_json::from_str(&answer).map_err(|e| anyhow!("bad answer from tunnat: {e}"))?;
    if v["ok"] != json!(true) {
        bail!("{}", v["error"].as_str().unwrap_or("request failed"));
    }
    Ok(v)
}

/// Formats rows as an aligned table.
pub fn format_table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<5} {:<11} {:<21} {:<21} {:<21} {:>6} {:>8} {:>13} {:>17}\n",
        "PROTO",
        "STATE",
        "INSIDE",
        "OUTSIDE",
        "REMOTE",
        "IDLE",
        "TIMEOUT",
        "PACKETS o/i",
        "BYTES o/i"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<5} {:<11} {:<21} {:<21} {:<21} {:>5}s {:>7}s {:>13} {:>17}{}\n",
            r.proto,
            r.state,
            r.inside,
            r.outside,
            r.remote,
            r.idle_s,
            r.timeout_s,
            format!("{}/{}", r.packets_out, r.packets_in),
            format!("{}/{}", r.bytes_out, r.bytes_in),
            if r.dnat { " [dnat]" } else { "" }
        ));
    }
    out.push_str(&format!("{} session(s)\n", rows.len()));
    out
}

/// Formats the `stats` answer as `name value` lines.
pub fn format_stats(v: &Value) -> String {
    let mut out = String::new();
    fn walk(out: &mut String, prefix: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "ok" {
                        continue;
                    }
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(out, &p, x);
                }
            }
            other => out.push_str(&format!("{prefix:<40} {other}\n")),
        }
    }
    walk(&mut out, "", v);
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn request_wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Table).unwrap(),
            r#"{"cmd":"table"}"#
        );
        let r: Request =
            serde_json::from_str(r#"{"cmd":"dnat-add","rule":"tcp:1=10.0.0.1"}"#).unwrap();
        assert_eq!(
            r,
            Request::DnatAdd {
                rule: "tcp:1=10.0.0.1".into()
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn stats_flatten() {
        let s = format_stats(&json!({"ok": true, "a": 1, "drops": {"fragment": 2}}));
        assert!(s.contains("a ") && s.contains("drops.fragment"), "{s}");
    }
}
