//! The client side of the control socket: the `tunnat table|stats|dnat|reload`
//! subcommands send one [`Request`] and get its typed answer, which they print as a
//! table (or, with `--json`, as the router sent it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::proto::{Envelope, Request, Row};

/// Default path of the control socket for the client subcommands.
pub const DEFAULT_SOCKET: &str = "/run/tunnat.sock";

/// Sends one request to the router at `socket` and returns its answer line, checked to
/// be `ok`.
pub fn call_raw(socket: &Path, req: &Request) -> Result<String> {
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
    // An answer that starts as a success is passed on without parsing it whole: a table
    // of 30,000 sessions is megabytes, and `--json` only prints it.
    if answer.starts_with(r#"{"ok":true,"#) && answer.trim_end().ends_with('}') {
        return Ok(answer.trim_end().to_string());
    }
    let v: Value =
        serde_json::from_str(&answer).map_err(|e| anyhow!("bad answer from tunnat: {e}"))?;
    if v["ok"] != Value::Bool(true) {
        bail!("{}", v["error"].as_str().unwrap_or("request failed"));
    }
    Ok(answer.trim_end().to_string())
}

/// Sends one request and decodes its answer as `T` (the answer type of that request).
pub fn call<T: DeserializeOwned>(socket: &Path, req: &Request) -> Result<T> {
    let line = call_raw(socket, req)?;
    let e: Envelope<T> =
        serde_json::from_str(&line).map_err(|e| anyhow!("bad answer from tunnat: {e}"))?;
    Ok(e.body)
}

/// Formats rows as an aligned table.
pub fn format_table(rows: &[Row]) -> String {
    // Endpoint columns as wide as the widest (IPv6 endpoints are longer), at least 21.
    let w = |f: fn(&Row) -> &str| rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(21);
    let (wi, wo, wr) = (w(|r| &r.inside), w(|r| &r.outside), w(|r| &r.remote));
    let mut out = format!(
        "{:<5} {:<11} {:<wi$} {:<wo$} {:<wr$} {:>6} {:>8} {:>13} {:>17}\n",
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
            "{:<5} {:<11} {:<wi$} {:<wo$} {:<wr$} {:>5}s {:>7}s {:>13} {:>17}{}\n",
            r.proto,
            r.state,
            r.inside,
            r.outside,
            r.remote,
            r.idle_s,
            r.timeout_s,
            format!("{}/{}", r.packets_out, r.packets_in),
            format!("{}/{}", r.bytes_out, r.bytes_in),
            match (&r.mapped_by, r.dnat, r.syn_proxy) {
                (Some(by), _, _) => format!(" [{by}]"),
                (None, true, true) => " [dnat, syn cookie]".to_string(),
                (None, true, false) => " [dnat]".to_string(),
                (None, false, _) => String::new(),
            }
        ));
    }
    let maps = rows.iter().filter(|r| r.mapped_by.is_some()).count();
    out.push_str(&format!("{} session(s)", rows.len() - maps));
    if maps > 0 {
        out.push_str(&format!(", {maps} port mapping(s) made by the hosts"));
    }
    out.push('\n');
    out
}

/// Formats the `stats` answer as `name value` lines.
pub fn format_stats(v: &Value) -> String {
    let mut out = String::new();
    fn walk(out: &mut String, prefix: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if prefix.is_empty() && (k == "ok" || k == "v") {
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
            // A list of per-port records (the policy servers) reads as `policy.outside.served`.
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    let name = x
                        .get("side")
                        .and_then(Value::as_str)
                        .map_or(i.to_string(), str::to_string);
                    let p = format!("{prefix}.{name}");
                    match x {
                        Value::Object(m) => {
                            for (k, y) in m.iter().filter(|(k, _)| *k != "side") {
                                walk(out, &format!("{p}.{k}"), y);
                            }
                        }
                        other => walk(out, &p, other),
                    }
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
    use serde_json::json;

    #[test]
    fn stats_flatten() {
        let s = format_stats(&json!({"ok": true, "v": 1, "a": 1, "drops": {"fragment": 2}}));
        assert!(s.contains("a ") && s.contains("drops.fragment"), "{s}");
        assert!(!s.contains("ok") && !s.contains("v "), "{s}");
        // Per-port records are named by their side, one number a line: no JSON left.
        let s = format_stats(
            &json!({"policy": [{"side": "inside", "served": 3}, {"side": "outside", "served": 4}]}),
        );
        assert!(
            s.contains("policy.inside.served") && s.contains("policy.outside.served"),
            "{s}"
        );
        assert!(!s.contains('{') && !s.contains('['), "{s}");
    }
}
