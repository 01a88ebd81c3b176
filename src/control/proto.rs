//! The control protocol: one JSON request line from the client, one JSON answer line
//! from the router, on a Unix stream socket. Typed on both ends; scripts can speak it
//! directly (`echo '{"cmd":"table"}' | socat - UNIX-CONNECT:/run/tunnat.sock`).
//!
//! Requests: `{"cmd":"table"}`, `{"cmd":"stats"}`, `{"cmd":"dnat-list"}`,
//! `{"cmd":"dnat-add","rule":"tcp:8888=192.168.122.73:9999"}`, `{"cmd":"dnat-del","rule":...}`,
//! `{"cmd":"reload"}`, `{"cmd":"export","format":"nft"}`,
//! `{"cmd":"explain","side":"inside","packet":"4500..."}`, optionally with `"v":1`, the protocol version ([`VERSION`]; a
//! request without it is version 1). Answers: `{"ok":true,"v":1,...}` with the fields of
//! the request's answer type, or `{"ok":false,"v":1,"error":"..."}`.

use serde::{Deserialize, Serialize};

use crate::router::Counters;

/// The protocol version this build speaks. A request for a later version is refused.
pub const VERSION: u32 = 1;

/// Longest request line the router reads.
pub const MAX_REQUEST: usize = 65536;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Table,
    Stats,
    DnatList,
    DnatAdd {
        rule: String,
    },
    DnatDel {
        rule: String,
    },
    Reload,
    /// The running router as the kernel's ruleset (`tunnat export`).
    Export(crate::export::Options),
    /// What the router would do with this packet (hex), read from `side` (`tunnat
    /// explain`); nothing is changed.
    Explain {
        side: String,
        packet: String,
    },
    /// The packets in the event ring after `since` (`--event-ring`, `tunnat web`).
    Events {
        since: u64,
    },
}

impl Request {
    /// Parses a request line, refusing versions this build does not speak.
    pub fn parse(line: &str) -> Result<Request, String> {
        #[derive(Deserialize)]
        struct Versioned {
            #[serde(default = "v1")]
            v: u32,
            #[serde(flatten)]
            request: Request,
        }
        fn v1() -> u32 {
            1
        }
        let r: Versioned =
            serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}"))?;
        if r.v > VERSION {
            return Err(format!(
                "protocol version {} is not supported (this tunnat speaks {VERSION})",
                r.v
            ));
        }
        Ok(r.request)
    }

    /// Does the request change the router's state?
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Request::DnatAdd { .. } | Request::DnatDel { .. } | Request::Reload
        )
    }
}

/// One row of `tunnat table`, like a line of `conntrack -L`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A port mapping an inside host made (not a session): the protocol that made it
    /// (pcp, nat-pmp, upnp). Its remote is `*`, its timeout the lifetime left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_by: Option<String>,
    /// Opened by the SYN proxy on the client's cookie: the server's sequence numbers are
    /// moved into the cookie's space on the way out (`--syn-cookies`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub syn_proxy: bool,
}

/// The answer to `table`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    pub sessions: Vec<Row>,
}

/// The answer to `dnat-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub rules: Vec<String>,
    /// Those of `rules` added with `dnat-add` (kept across a reload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<String>,
    /// The port mappings the inside hosts made (PCP, NAT-PMP, UPnP): each as a rule,
    /// with who made it and how long it has left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped: Vec<MappedRule>,
}

/// A port mapping made by an inside host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedRule {
    pub rule: String,
    /// pcp, nat-pmp or upnp.
    pub source: String,
    pub owner: String,
    pub description: String,
    /// Seconds left; none: until deleted.
    pub remaining: Option<u32>,
}

/// The answer to `reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// The answer to `dnat-add` and `dnat-del`: nothing but `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
}

/// Any answer, as the router sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Sessions(Sessions),
    Counters(Box<Counters>),
    Rules(Rules),
    Message(Message),
    Events(crate::router::events::Events),
    Done,
    Error(String),
}

/// The envelope every answer travels in: `ok`, `v`, and the answer's own fields.
#[derive(Serialize, Deserialize)]
pub struct Envelope<T> {
    pub ok: bool,
    #[serde(default)]
    pub v: u32,
    #[serde(flatten)]
    pub body: T,
}

impl Response {
    pub fn error(e: impl std::fmt::Display) -> Response {
        Response::Error(e.to_string())
    }

    /// The answer line, without the newline.
    pub fn to_json(&self) -> String {
        fn ok<T: Serialize>(body: &T) -> serde_json::Result<String> {
            serde_json::to_string(&Envelope {
                ok: true,
                v: VERSION,
                body,
            })
        }
        let r = match self {
            Response::Sessions(s) => ok(s),
            Response::Counters(c) => ok(c),
            Response::Rules(r) => ok(r),
            Response::Message(m) => ok(m),
            Response::Events(e) => ok(e),
            Response::Done => ok(&Done {}),
            Response::Error(e) => serde_json::to_string(&Envelope {
                ok: false,
                v: VERSION,
                body: Refusal { error: e.clone() },
            }),
        };
        r.unwrap_or_else(|e| format!(r#"{{"ok":false,"v":{VERSION},"error":"{e}"}}"#))
    }
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
        let r = Request::parse(r#"{"cmd":"dnat-add","rule":"tcp:1=10.0.0.1"}"#).unwrap();
        assert_eq!(
            r,
            Request::DnatAdd {
                rule: "tcp:1=10.0.0.1".into()
            }
        );
        assert!(Request::parse(r#"{"cmd":"reboot"}"#).is_err());
        assert_eq!(
            Request::parse(r#"{"v":1,"cmd":"stats"}"#).unwrap(),
            Request::Stats
        );
        let e = Request::parse(r#"{"v":2,"cmd":"stats"}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn answers_carry_ok_and_the_version() {
        assert_eq!(Response::Done.to_json(), r#"{"ok":true,"v":1}"#);
        assert_eq!(
            Response::error("no dnat rule x").to_json(),
            r#"{"ok":false,"v":1,"error":"no dnat rule x"}"#
        );
        let rules = Response::Rules(Rules {
            rules: vec!["tcp:8888=192.168.122.73:9999".into()],
            runtime: vec![],
            mapped: vec![],
        });
        assert_eq!(
            rules.to_json(),
            r#"{"ok":true,"v":1,"rules":["tcp:8888=192.168.122.73:9999"]}"#
        );
    }
}
