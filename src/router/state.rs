//! The state file (`--state-file`): what a restart would otherwise lose, the port
//! forwards added at run time (`tunnat dnat add`) and the NAT core's sessions
//! ([`crate::nat::state`]), so that connections through the router survive a stop and a
//! start.
//!
//! The format is JSON Lines, versioned, readable with `jq`:
//!
//! ```text
//! {"format":"tunnat-state","version":1,"saved_unix_ms":...,"inside":"192.168.122.100/24",
//!  "outside":"172.16.1.186/24","dnat":["tcp:8000=192.168.122.73"],"sessions":2,"held":0}
//! {"proto":"tcp","inside":"192.168.122.101:40000","remote":"172.16.1.1:80",...}
//! {"proto":"udp",...}
//! {"end":2}
//! ```
//!
//! A header (the addresses the sessions belong to, how many records follow), one line
//! per session, one per held port, and an end line repeating the count, so a file cut
//! short anywhere is refused, not half read. Reading trusts nothing: a line longer than
//! [`MAX_LINE`], a count above the table's size, a field unknown or missing, a version
//! this build does not know: each is an error naming the line. Writing it atomically
//! (a temporary file, then rename) is the driver's part.

use serde::{Deserialize, Serialize};

use crate::nat::state::{NatState, SavedHold, SavedSession};
use crate::nat::{AnyDnat, Ipv4Cidr, Ipv6Cidr};

/// What the header's `format` says.
pub const FORMAT: &str = "tunnat-state";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
/// The longest line read (a header with many port forwards fits many times over).
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    saved_unix_ms: u64,
    /// The IPv4 addresses (none on an IPv6-only router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inside: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outside: Option<String>,
    /// The IPv6 addresses, on a dual-stack router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inside6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outside6: Option<String>,
    dnat: Vec<String>,
    sessions: usize,
    held: usize,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: usize,
}

/// The content of a state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterState {
    /// Wall-clock time of the save, milliseconds since the Unix epoch: a restart works
    /// out from it how long the router was stopped.
    pub saved_unix_ms: u64,
    /// The router's addresses when saved: the sessions belong to them.
    pub inside: Option<Ipv4Cidr>,
    pub outside: Option<Ipv4Cidr>,
    pub inside6: Option<Ipv6Cidr>,
    pub outside6: Option<Ipv6Cidr>,
    /// Port forwards added at run time, of either family.
    pub dnat: Vec<AnyDnat>,
    pub nat: NatState,
}

impl RouterState {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            saved_unix_ms: self.saved_unix_ms,
            inside: self.inside.map(|c| c.to_string()),
            outside: self.outside.map(|c| c.to_string()),
            inside6: self.inside6.map(|c| c.to_string()),
            outside6: self.outside6.map(|c| c.to_string()),
            dnat: self.dnat.iter().map(|r| r.to_string()).collect(),
            sessions: self.nat.sessions.len(),
            held: self.nat.held.len(),
        };
        let mut out = Vec::with_capacity(200 + 220 * self.nat.sessions.len());
        line(&mut out, &header);
        for s in &self.nat.sessions {
            line(&mut out, s);
        }
        for h in &self.nat.held {
            line(&mut out, h);
        }
        let end = End {
            end: self.nat.sessions.len() + self.nat.held.len(),
        };
        line(&mut out, &end);
        out
    }

    /// Reads a state file's bytes; `max_sessions` bounds what is believed of its counts.
    /// Every error names the line.
    pub fn decode(bytes: &[u8], max_sessions: usize) -> Result<RouterState, String> {
        let mut lines = bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l));
        let mut next = |what: &str| -> Result<(usize, &[u8]), String> {
            match lines.next() {
                Some((n, l)) if l.len() > MAX_LINE => {
                    Err(format!("line {n}: longer than {MAX_LINE} bytes"))
                }
                Some((n, l)) if !l.is_empty() => Ok((n, l)),
                Some((n, _)) => Err(format!("line {n}: empty where {what} was expected")),
                None => Err(format!("cut short: {what} expected")),
            }
        };
        fn parse<'a, T: Deserialize<'a>>(n: usize, l: &'a [u8], what: &str) -> Result<T, String> {
            serde_json::from_slice(l).map_err(|e| format!("line {n}: not {what}: {e}"))
        }
        let (n, l) = next("the header")?;
        let head: Header = match serde_json::from_slice::<serde_json::Value>(l) {
            // Say "a newer version" before complaining about fields it may have added.
            Ok(v) if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) => {
                return Err(format!("line {n}: not a tunnat state file"))
            }
            Ok(v) if v.get("version").and_then(|f| f.as_u64()) != Some(u64::from(VERSION)) => {
                return Err(format!(
                    "line {n}: format version {}, this tunnat reads version {VERSION}",
                    v.get("version").map_or("none".into(), |v| v.to_string())
                ))
            }
            _ => parse(n, l, "a state file header")?,
        };
        if head.sessions > max_sessions {
            return Err(format!(
                "line {n}: {} sessions, more than the table holds ({max_sessions})",
                head.sessions
            ));
        }
        if head.held > 65536 * 3 {
            return Err(format!("line {n}: {} held ports cannot be", head.held));
        }
        let cidr = |s: &Option<String>| -> Result<Option<Ipv4Cidr>, String> {
            s.as_deref()
                .map(|s| s.parse().map_err(|e| format!("line {n}: {e}")))
                .transpose()
        };
        let cidr6 = |s: &Option<String>| -> Result<Option<Ipv6Cidr>, String> {
            s.as_deref()
                .map(|s| s.parse().map_err(|e| format!("line {n}: {e}")))
                .transpose()
        };
        let (inside, outside) = (cidr(&head.inside)?, cidr(&head.outside)?);
        let (inside6, outside6) = (cidr6(&head.inside6)?, cidr6(&head.outside6)?);
        let dnat = head
            .dnat
            .iter()
            .map(|r| r.parse().map_err(|e| format!("line {n}: {e}")))
            .collect::<Result<Vec<AnyDnat>, String>>()?;
        let mut nat = NatState::default();
        for _ in 0..head.sessions {
            let (n, l) = next("a session")?;
            nat.sessions.push(parse::<SavedSession>(n, l, "a session")?);
        }
        for _ in 0..head.held {
            let (n, l) = next("a held port")?;
            nat.held.push(parse::<SavedHold>(n, l, "a held port")?);
        }
        let (n, l) = next("the end line")?;
        let end: End = parse(n, l, "the end line")?;
        if end.end != head.sessions + head.held {
            return Err(format!(
                "line {n}: the end line counts {} records, the header {}",
                end.end,
                head.sessions + head.held
            ));
        }
        match lines.next() {
            None => {}
            Some((_, l)) if l.is_empty() && lines.next().is_none() => {}
            Some((n, _)) => return Err(format!("line {n}: more after the end line")),
        }
        Ok(RouterState {
            saved_unix_ms: head.saved_unix_ms,
            inside,
            outside,
            inside6,
            outside6,
            dnat,
            nat,
        })
    }
}

/// Appends `v` as one JSON line.
fn line<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // These are plain structs of numbers and strings: they always serialize.
    let _ = serde_json::to_writer(&mut *out, v);
    out.push(b'\n');
}

#[cfg(test)]
mod test {
    use super::*;

    fn ep(s: &str) -> Option<std::net::SocketAddr> {
        s.parse().ok()
    }

    fn sample() -> RouterState {
        RouterState {
            saved_unix_ms: 1_800_000_000_000,
            inside: Some("192.168.122.100/24".parse().unwrap()),
            outside: Some("172.16.1.186/24".parse().unwrap()),
            inside6: Some("fd00:122::100/64".parse().unwrap()),
            outside6: Some("2001:db8:1::186/64".parse().unwrap()),
            dnat: vec!["udp:5000-5010=192.168.122.73".parse().unwrap()],
            nat: NatState {
                sessions: vec![
                    SavedSession {
                        proto: "udp".into(),
                        inside: ep("[fd00:122::101]:5353").unwrap(),
                        remote: ep("[2001:db8:1::1]:53").unwrap(),
                        ext_port: 5353,
                        dnat: false,
                        idle_ms: 9,
                        age_ms: 9,
                        packets: [1, 0],
                        bytes: [60, 0],
                        tcp: None,
                        syn_proxy: None,
                    },
                    SavedSession {
                        proto: "tcp".into(),
                        inside: ep("192.168.122.101:40000").unwrap(),
                        remote: ep("172.16.1.1:80").unwrap(),
                        ext_port: 40000,
                        dnat: false,
                        idle_ms: 5,
                        age_ms: 90,
                        packets: [3, 2],
                        bytes: [180, 120],
                        tcp: Some([0x1ff, 1, 2, 3, 4, 5, 6]),
                        syn_proxy: None,
                    },
                ],
                held: vec![SavedHold {
                    proto: "udp".into(),
                    port: 5353,
                    owner: ep("192.168.122.101:5353").unwrap(),
                    left_ms: 1000,
                    nat64: false,
                }],
            },
        }
    }

    #[test]
    fn what_is_written_is_read_back() {
        let s = sample();
        let bytes = s.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(
            text.contains(r#""inside":"[fd00:122::101]:5353""#),
            "{text}"
        );
        assert!(text.starts_with(r#"{"format":"tunnat-state","version":1,"#));
        assert!(text.ends_with("{\"end\":3}\n"));
        assert_eq!(RouterState::decode(&bytes, 100).unwrap(), s);
    }

    #[test]
    fn a_file_cut_short_or_tampered_with_is_refused_with_the_line() {
        let good = String::from_utf8(sample().encode()).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let bad = |text: String, want: &str| {
            let e = RouterState::decode(text.as_bytes(), 100).unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        };
        bad(lines[..4].join("\n"), "cut short: the end line expected");
        bad(lines[..1].join("\n"), "cut short: a session expected");
        bad(String::new(), "line 1: empty where the header was expected");
        bad(
            format!("{}\n{}", lines[0], &lines[1][..10]),
            "line 2: not a session",
        );
        bad(
            good.replace("\"version\":1", "\"version\":2"),
            "format version 2, this tunnat reads version 1",
        );
        bad(
            good.replace("tunnat-state", "other"),
            "not a tunnat state file",
        );
        bad(
            good.replace("\"ext_port\"", "\"port_ext\""),
            "line 2: not a session",
        );
        bad(
            good.replace("{\"end\":3}", "{\"end\":4}"),
            "the end line counts 4 records",
        );
        bad(format!("{good}junk\n"), "line 6: more after the end line");
        bad(
            good.replace("\"sessions\":2", "\"sessions\":1000"),
            "1000 sessions, more than the table holds (100)",
        );
        bad(good.replace("udp:5000-5010", "sctp:1"), "line 1: ");
        bad(format!("{}\n", "x".repeat(MAX_LINE + 1)), "longer than");
    }
}
