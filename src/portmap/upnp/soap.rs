//! UPnP control: SOAP 1.1 calls (UPnP Device Architecture section 3) to the
//! WANIPConnection (IGD v2, and v1 in v1's terms) and WANCommonInterfaceConfig services.
//!
//! A call is an HTTP POST whose `SOAPAction` header names the service type and action;
//! its body is an envelope whose `Body` holds one element named after the action, with
//! one child per argument. Anything else, or more than [`MAX_ARGS`] arguments, deeper
//! than [`MAX_DEPTH`] or a value over [`MAX_VALUE`] bytes, is answered with a SOAP fault
//! (401 Invalid Action or 402 Invalid Args), never a panic.
//!
//! Errors follow the IGD specifications and miniupnpd 2.3 (checked side by side): 402 for
//! arguments that do not parse, 718 for a mapping to another host (miniupnpd's secure
//! mode), 606 for ports the policy refuses,
//! 713/714 for entries that do not exist, 716 for a wildcard external port, 718 for a port
//! another host has, 726 for a remote host other than the wildcard, 728 when no port is
//! left, 730 when a range holds none of the host's mappings.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use quick_xml::events::Event;

use super::{WAN_COMMON, WAN_IP_CONNECTION};
use crate::nat::{Instant, Nat};
use crate::portmap::{PortMaps, Refusal, Source, Want};
use crate::wire::transport::Protocol;

pub const MAX_ARGS: usize = 16;
pub const MAX_DEPTH: usize = 8;
pub const MAX_VALUE: usize = 1024;
/// The longest lease IGD v2 grants (a week); lease 0 means this in v2.
pub const V2_MAX_LEASE: u32 = 604_800;

/// One parsed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The service type the call names (`urn:schemas-upnp-org:service:WANIPConnection:1`).
    pub service: String,
    pub action: String,
    pub args: Vec<(String, String)>,
}

impl Call {
    fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// A call in IGD v1's terms (the v1 service type).
    fn v1(&self) -> bool {
        self.service.ends_with(":1")
    }
}

/// A UPnP error: code and description.
pub type Fault = (u16, &'static str);

pub const INVALID_ACTION: Fault = (401, "Invalid Action");
pub const INVALID_ARGS: Fault = (402, "Invalid Args");
pub const ACTION_FAILED: Fault = (501, "Action Failed");
pub const NOT_AUTHORIZED: Fault = (606, "Action not authorized");
pub const INDEX_INVALID: Fault = (713, "SpecifiedArrayIndexInvalid");
pub const NO_SUCH_ENTRY: Fault = (714, "NoSuchEntryInArray");
pub const WILDCARD_EXT_PORT: Fault = (716, "WildCardNotPermittedInExtPort");
pub const CONFLICT: Fault = (718, "ConflictInMappingEntry");
pub const REMOTE_HOST_WILDCARD: Fault = (726, "RemoteHostOnlySupportsWildcard");
pub const NO_PORT_MAPS: Fault = (728, "NoPortMapsAvailable");
pub const NOT_FOUND: Fault = (730, "PortMappingNotFound");

/// Parses a call: the `SOAPAction` header's value and the body.
pub fn parse(soap_action: &str, body: &[u8]) -> Result<Call, Fault> {
    let header = soap_action.trim().trim_matches('"');
    let (service, action) = header.split_once('#').ok_or(INVALID_ACTION)?;
    // The service's type, in the version the device has or an older one.
    let known = [WAN_IP_CONNECTION, WAN_COMMON].iter().any(|t| {
        let (base, ours) = t.rsplit_once(':').unwrap_or((t, "1"));
        let ours: u32 = ours.parse().unwrap_or(1);
        service.rsplit_once(':').is_some_and(|(b, v)| {
            b == base && v.parse::<u32>().is_ok_and(|v| (1..=ours).contains(&v))
        })
    });
    let actions = if service.contains(":service:WANIPConnection:") {
        super::IP_CONN_ACTIONS
    } else {
        super::COMMON_ACTIONS
    };
    if !known || !actions.iter().any(|(name, _)| *name == action) {
        return Err(INVALID_ACTION);
    }
    let text = std::str::from_utf8(body).map_err(|_| INVALID_ARGS)?;
    let mut r = quick_xml::Reader::from_str(text);
    let mut depth = 0usize;
    // Depth of the Body element, of the action element, and the argument being read.
    let (mut body_at, mut action_at) = (None, None);
    let mut arg: Option<(String, String)> = None;
    let mut args = Vec::new();
    let mut seen_action = false;
    loop {
        let ev = r.read_event().map_err(|_| INVALID_ARGS)?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(INVALID_ARGS);
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if body_at.is_none() && name == "Body" {
                    body_at = Some(depth);
                } else if body_at == Some(depth - 1) && action_at.is_none() && !seen_action {
                    if name != action {
                        return Err(INVALID_ACTION);
                    }
                    action_at = Some(depth);
                    seen_action = true;
                } else if action_at == Some(depth - 1) {
                    arg = Some((name, String::new()));
                }
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if body_at == Some(depth) && !seen_action {
                    if name != action {
                        return Err(INVALID_ACTION);
                    }
                    seen_action = true;
                } else if action_at == Some(depth) {
                    args.push((name, String::new()));
                }
            }
            Event::End(_) => {
                if action_at == Some(depth) {
                    action_at = None;
                } else if let Some(a) = arg.take() {
                    if args.len() >= MAX_ARGS {
                        return Err(INVALID_ARGS);
                    }
                    args.push(a);
                }
                depth = depth.checked_sub(1).ok_or(INVALID_ARGS)?;
            }
            Event::Text(t) => {
                if let Some((_, v)) = &mut arg {
                    v.push_str(&t.decode().map_err(|_| INVALID_ARGS)?);
                }
            }
            Event::CData(t) => {
                if let Some((_, v)) = &mut arg {
                    v.push_str(&t.decode().map_err(|_| INVALID_ARGS)?);
                }
            }
            Event::GeneralRef(g) => {
                if let Some((_, v)) = &mut arg {
                    let c = match g.resolve_char_ref().map_err(|_| INVALID_ARGS)? {
                        Some(c) => c,
                        None => match &*g {
                            b"lt" => '<',
                            b"gt" => '>',
                            b"amp" => '&',
                            b"quot" => '"',
                            b"apos" => '\'',
                            _ => return Err(INVALID_ARGS),
                        },
                    };
                    v.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        if arg.as_ref().is_some_and(|(_, v)| v.len() > MAX_VALUE) {
            return Err(INVALID_ARGS);
        }
    }
    if !seen_action || depth != 0 {
        return Err(INVALID_ARGS);
    }
    Ok(Call {
        service: service.to_string(),
        action: action.to_string(),
        args,
    })
}

/// Escapes text for XML.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

const ENVELOPE: &str = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>";

/// The answer to a call that succeeded.
pub fn response(call: &Call, outs: &[(&str, String)]) -> String {
    let mut s = String::from(ENVELOPE);
    let _ = write!(
        s,
        "<u:{}Response xmlns:u=\"{}\">",
        call.action,
        escape(&call.service)
    );
    for (k, v) in outs {
        let _ = write!(s, "<{k}>{}</{k}>", escape(v));
    }
    let _ = write!(s, "</u:{}Response></s:Body></s:Envelope>\r\n", call.action);
    s
}

/// A SOAP fault carrying a UPnP error (sent with HTTP status 500).
pub fn fault((code, desc): Fault) -> String {
    format!(
        "{ENVELOPE}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>\
         <UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{code}</errorCode>\
         <errorDescription>{desc}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n"
    )
}

/// What a call may read and change.
pub struct Ctx<'a> {
    pub maps: &'a mut PortMaps,
    pub nat: &'a Nat,
    /// The inside host that made the call.
    pub client: Ipv4Addr,
    pub now: Instant,
    /// Packets forwarded out and in, for WANCommonInterfaceConfig.
    pub packets: (u64, u64),
}

fn protocol(s: Option<&str>) -> Result<Protocol, Fault> {
    match s.map(str::trim) {
        Some(p) if p.eq_ignore_ascii_case("TCP") => Ok(Protocol::Tcp),
        Some(p) if p.eq_ignore_ascii_case("UDP") => Ok(Protocol::Udp),
        _ => Err(INVALID_ARGS),
    }
}

fn number<T: std::str::FromStr>(s: Option<&str>) -> Result<T, Fault> {
    s.and_then(|s| s.trim().parse().ok()).ok_or(INVALID_ARGS)
}

fn wildcard_remote(s: Option<&str>) -> Result<(), Fault> {
    match s.map(str::trim) {
        None | Some("") | Some("*") => Ok(()),
        Some(_) => Err(REMOTE_HOST_WILDCARD),
    }
}

/// The mapping a call names: protocol and external port (the remote host a wildcard).
fn map_key(call: &Call) -> Result<(Protocol, u16), Fault> {
    wildcard_remote(call.arg("NewRemoteHost"))?;
    let ext = number(call.arg("NewExternalPort"))?;
    Ok((protocol(call.arg("NewProtocol"))?, ext))
}

/// The range of external ports a call names.
fn range(call: &Call) -> Result<(u16, u16, Protocol), Fault> {
    let start: u16 = number(call.arg("NewStartPort"))?;
    let end: u16 = number(call.arg("NewEndPort"))?;
    if end < start {
        return Err(INVALID_ARGS);
    }
    Ok((start, end, protocol(call.arg("NewProtocol"))?))
}

/// A mapping's entry beyond its key, as the Get...Entry actions answer it.
fn entry(m: &crate::portmap::PortMap, now: Instant) -> Vec<(&'static str, String)> {
    vec![
        ("NewInternalPort", m.internal.to_string()),
        ("NewInternalClient", m.client.to_string()),
        ("NewEnabled", "1".into()),
        ("NewPortMappingDescription", m.description.clone()),
        (
            "NewLeaseDuration",
            m.remaining(now).unwrap_or(0).to_string(),
        ),
    ]
}

/// Runs `call`: the output arguments, or the UPnP error.
pub fn run(call: &Call, ctx: &mut Ctx) -> Result<Vec<(&'static str, String)>, Fault> {
    let v1 = call.v1();
    let external = ctx.nat.config().outside.addr;
    let ip_conn = call.service.contains(":service:WANIPConnection:");
    match (ip_conn, call.action.as_str()) {
        (true, "GetExternalIPAddress") => Ok(vec![("NewExternalIPAddress", external.to_string())]),
        (true, "GetStatusInfo") => Ok(vec![
            ("NewConnectionStatus", "Connected".into()),
            ("NewLastConnectionError", "ERROR_NONE".into()),
            ("NewUptime", ctx.maps.epoch(ctx.now).to_string()),
        ]),
        (true, "GetConnectionTypeInfo") => Ok(vec![
            ("NewConnectionType", "IP_Routed".into()),
            ("NewPossibleConnectionTypes", "IP_Routed".into()),
        ]),
        (true, "GetNATRSIPStatus") => Ok(vec![
            ("NewRSIPAvailable", "0".into()),
            ("NewNATEnabled", "1".into()),
        ]),
        (true, "AddPortMapping") | (true, "AddAnyPortMapping") => {
            let any = call.action == "AddAnyPortMapping";
            if any && v1 {
                return Err(INVALID_ACTION);
            }
            wildcard_remote(call.arg("NewRemoteHost"))?;
            let ext: u16 = number(call.arg("NewExternalPort"))?;
            let protocol = protocol(call.arg("NewProtocol"))?;
            let internal: u16 = number(call.arg("NewInternalPort"))?;
            let client: Ipv4Addr = number(call.arg("NewInternalClient"))?;
            let lease: u32 = number(call.arg("NewLeaseDuration"))?;
            match call.arg("NewEnabled").map(str::trim) {
                Some("1") | Some("true") | Some("yes") => {}
                _ => return Err(INVALID_ARGS),
            }
            if ext == 0 && !any {
                return Err(WILDCARD_EXT_PORT);
            }
            if internal == 0 {
                return Err(INVALID_ARGS);
            }
            if client != ctx.client {
                log::info!(
                    "upnp: {} asked for a mapping to {client}: refused",
                    ctx.client
                );
                return Err(CONFLICT);
            }
            let lifetime = match (v1, lease) {
                (true, 0) => None,
                (false, 0) => Some(V2_MAX_LEASE),
                (_, l) => Some(l.min(V2_MAX_LEASE)),
            };
            let want = Want {
                protocol,
                client,
                internal,
                external: ext,
                exact: !any,
                lifetime: lifetime.map(|l| Duration::from_secs(l.into())),
                source: Source::Upnp,
                nonce: [0; 12],
                description: call
                    .arg("NewPortMappingDescription")
                    .unwrap_or("")
                    .chars()
                    .take(64)
                    .collect(),
            };
            match ctx.maps.add(&want, ctx.nat, ctx.now) {
                Ok(m) if any => Ok(vec![("NewReservedPort", m.external.to_string())]),
                Ok(_) => Ok(vec![]),
                Err(Refusal::PortTaken) | Err(Refusal::NotOwner) => Err(CONFLICT),
                Err(Refusal::NotAuthorized) => Err(NOT_AUTHORIZED),
                Err(Refusal::NoResources) | Err(Refusal::NoPort) => Err(NO_PORT_MAPS),
            }
        }
        (true, "DeletePortMapping") => {
            let (protocol, ext) = map_key(call)?;
            match ctx.maps.delete_external(protocol, ext, ctx.client) {
                Ok(Some(_)) => Ok(vec![]),
                Ok(None) => Err(NO_SUCH_ENTRY),
                Err(_) => Err(NOT_AUTHORIZED),
            }
        }
        (true, "DeletePortMappingRange") if !v1 => {
            let (start, end, protocol) = range(call)?;
            let ports: Vec<u16> = (ctx.maps.iter())
                .filter(|m| {
                    m.protocol == protocol
                        && m.client == ctx.client
                        && (start..=end).contains(&m.external)
                })
                .map(|m| m.external)
                .collect();
            if ports.is_empty() {
                return Err(NOT_FOUND);
            }
            for p in ports {
                let _ = ctx.maps.delete_external(protocol, p, ctx.client);
            }
            Ok(vec![])
        }
        (true, "GetGenericPortMappingEntry") => {
            let i: usize = number(call.arg("NewPortMappingIndex"))?;
            let m = ctx.maps.iter().nth(i).ok_or(INDEX_INVALID)?;
            let mut out = vec![
                ("NewRemoteHost", String::new()),
                ("NewExternalPort", m.external.to_string()),
                ("NewProtocol", m.protocol.name().to_ascii_uppercase()),
            ];
            out.extend(entry(m, ctx.now));
            Ok(out)
        }
        (true, "GetSpecificPortMappingEntry") => {
            let (protocol, ext) = map_key(call)?;
            let m = ctx.maps.by_external(protocol, ext).ok_or(NO_SUCH_ENTRY)?;
            Ok(entry(m, ctx.now))
        }
        (true, "GetListOfPortMappings") if !v1 => {
            let (start, end, protocol) = range(call)?;
            let most: usize = number::<usize>(call.arg("NewNumberOfPorts"))?.clamp(1, 1000);
            let mut list = String::from(
                "<p:PortMappingList xmlns:p=\"urn:schemas-upnp-org:gw:WANIPConnection\">",
            );
            let mut n = 0;
            for m in ctx
                .maps
                .iter()
                .filter(|m| m.protocol == protocol && (start..=end).contains(&m.external))
                .take(most)
            {
                n += 1;
                let _ = write!(
                    list,
                    "<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost><p:NewExternalPort>{}</p:NewExternalPort>\
                     <p:NewProtocol>{}</p:NewProtocol><p:NewInternalPort>{}</p:NewInternalPort>\
                     <p:NewInternalClient>{}</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled>\
                     <p:NewDescription>{}</p:NewDescription><p:NewLeaseTime>{}</p:NewLeaseTime></p:PortMappingEntry>",
                    m.external,
                    m.protocol.name().to_ascii_uppercase(),
                    m.internal,
                    m.client,
                    escape(&m.description),
                    m.remaining(ctx.now).unwrap_or(0)
                );
            }
            if n == 0 {
                return Err(NOT_FOUND);
            }
            list.push_str("</p:PortMappingList>");
            Ok(vec![("NewPortListing", list)])
        }
        (false, "GetCommonLinkProperties") => Ok(vec![
            ("NewWANAccessType", "Ethernet".into()),
            ("NewLayer1UpstreamMaxBitRate", "1000000000".into()),
            ("NewLayer1DownstreamMaxBitRate", "1000000000".into()),
            ("NewPhysicalLinkStatus", "Up".into()),
        ]),
        (false, "GetTotalPacketsSent") => Ok(vec![(
            "NewTotalPacketsSent",
            (ctx.packets.0 as u32).to_string(),
        )]),
        (false, "GetTotalPacketsReceived") => Ok(vec![(
            "NewTotalPacketsReceived",
            (ctx.packets.1 as u32).to_string(),
        )]),
        _ => Err(INVALID_ACTION),
    }
}

/// Runs a call given as its header and body: the HTTP status and the SOAP body.
pub fn serve(soap_action: &str, body: &[u8], ctx: &mut Ctx) -> (u16, String) {
    let r = parse(soap_action, body).and_then(|c| run(&c, ctx).map(|outs| response(&c, &outs)));
    match r {
        Ok(s) => (200, s),
        Err(f) => {
            if f != ACTION_FAILED {
                log::debug!(
                    "upnp: {} from {}: error {} {}",
                    soap_action.escape_default(),
                    ctx.client,
                    f.0,
                    f.1
                );
            }
            (500, fault(f))
        }
    }
}

#[cfg(test)]
mod test;
