//! PCP, the Port Control Protocol (RFC 6887), version 2, on UDP 5351 of the router's
//! inside address, beside NAT-PMP (its version 0, Appendix A).
//!
//! * Section 7: the common header (24 bytes: version, R bit and opcode, lifetime, the
//!   client's address as IPv4-mapped IPv6) and options (code, length, data padded to 4).
//! * Section 8.1: checks in order: shorter than 2 bytes or with the R bit set: ignored;
//!   another version: UNSUPP_VERSION; an unknown opcode: UNSUPP_OPCODE; not a multiple of
//!   4, over 1100 bytes or shorter than the opcode's format: MALFORMED_REQUEST; a client
//!   address other than the packet's source (a NAT between): ADDRESS_MISMATCH; an unknown
//!   mandatory option (code < 128): UNSUPP_OPTION, an option cut short: MALFORMED_OPTION.
//!   An error answer carries the request's opcode data as it came.
//! * Section 11: MAP, with its mapping nonce (a mapping is renewed or deleted only with
//!   the nonce that made it), lifetime 0 deleting, PREFER_FAILURE (section 13.2: the
//!   suggested port or nothing, CANNOT_PROVIDE_EXTERNAL). THIRD_PARTY (a host mapping
//!   for another) and FILTER are not supported: UNSUPP_OPTION.
//! * Section 12: PEER: the host's outbound session with a remote peer, made if new, its
//!   idle time restarted; the lifetime answered is the session's idle timeout.
//! * Section 14.1: ANNOUNCE; the epoch (seconds since the mappings were last lost) in
//!   every answer; at start, unsolicited ANNOUNCEs to 224.0.0.1:5350 so clients renew.
//! * Section 15: lifetimes granted between 120 s and `--portmap-max-lifetime`.
//!
//! An answer is never longer than its request plus the fixed part, so the service cannot
//! amplify; it is only served on the inside address.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::{PortMaps, Refusal, Source, Want};
use crate::nat::{Endpoint, Instant, Nat};
use crate::wire::transport::Protocol;

pub const VERSION: u8 = 2;
pub const MAX_LEN: usize = 1100;
pub const HEADER: usize = 24;
pub const MAP_LEN: usize = 36;
pub const PEER_LEN: usize = 56;

pub const OP_ANNOUNCE: u8 = 0;
pub const OP_MAP: u8 = 1;
pub const OP_PEER: u8 = 2;

pub const OPT_THIRD_PARTY: u8 = 1;
pub const OPT_PREFER_FAILURE: u8 = 2;
pub const OPT_FILTER: u8 = 3;

/// Result codes (section 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Success = 0,
    UnsuppVersion = 1,
    NotAuthorized = 2,
    MalformedRequest = 3,
    UnsuppOpcode = 4,
    UnsuppOption = 5,
    MalformedOption = 6,
    NetworkFailure = 7,
    NoResources = 8,
    UnsuppProtocol = 9,
    UserExQuota = 10,
    CannotProvideExternal = 11,
    AddressMismatch = 12,
    ExcessiveRemotePeers = 13,
}

impl Code {
    /// How long an error holds (the lifetime field of an error answer, section 7.2):
    /// short for what may soon change, long for what the configuration says.
    fn lifetime(self) -> u32 {
        match self {
            Code::NoResources | Code::UserExQuota | Code::CannotProvideExternal => 30,
            Code::NetworkFailure => 30,
            _ => 1800,
        }
    }
}

/// The minimum lifetime granted (section 15).
pub const MIN_LIFETIME: u32 = 120;

fn mapped(a: Ipv4Addr) -> [u8; 16] {
    a.to_ipv6_mapped().octets()
}

fn v4_of(b: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 16] = b.try_into().ok()?;
    Ipv6Addr::from(b).to_ipv4_mapped()
}

fn is_zero_address(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0) || v4_of(b) == Some(Ipv4Addr::UNSPECIFIED)
}

/// An answer: the request with the R bit set, the result, the lifetime, the epoch.
fn answer_from(req: &[u8], code: Code, lifetime: u32, epoch: u32) -> Vec<u8> {
    let n = req.len().min(MAX_LEN) & !3;
    let mut a = req[..n.max(HEADER.min(req.len()))].to_vec();
    a.resize(a.len().max(HEADER), 0);
    a[0] = VERSION;
    a[1] = 0x80 | (req[1] & 0x7f);
    a[2] = 0;
    a[3] = code as u8;
    a[4..8].copy_from_slice(&lifetime.to_be_bytes());
    a[8..12].copy_from_slice(&epoch.to_be_bytes());
    a[12..24].fill(0);
    a
}

fn error(req: &[u8], code: Code, epoch: u32) -> Vec<u8> {
    answer_from(req, code, code.lifetime(), epoch)
}

/// The unsolicited ANNOUNCE sent to 224.0.0.1:5350 at start (section 14.1.3).
pub fn announce(epoch: u32) -> Vec<u8> {
    let mut a = vec![0u8; HEADER];
    a[0] = VERSION;
    a[1] = 0x80 | OP_ANNOUNCE;
    a[8..12].copy_from_slice(&epoch.to_be_bytes());
    a
}

/// The options after the opcode data: `Ok(prefer_failure)`, or the error.
fn options(opts: &[u8], op: u8) -> Result<bool, Code> {
    let mut prefer_failure = false;
    let mut rest = opts;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Code::MalformedOption);
        }
        let code = rest[0];
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let padded = (len + 3) & !3;
        if rest.len() < 4 + padded {
            return Err(Code::MalformedOption);
        }
        match code {
            OPT_PREFER_FAILURE if op == OP_MAP => {
                if len != 0 {
                    return Err(Code::MalformedOption);
                }
                prefer_failure = true;
            }
            OPT_THIRD_PARTY | OPT_FILTER => return Err(Code::UnsuppOption),
            c if c < 128 => return Err(Code::UnsuppOption),
            _ => {} // optional to process: ignored
        }
        rest = &rest[4 + padded..];
    }
    Ok(prefer_failure)
}

fn protocol_of(p: u8) -> Option<Protocol> {
    match p {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        _ => None,
    }
}

/// The answer to PCP request `req` from inside host `client`; `None`: ignored.
pub fn answer(
    req: &[u8],
    client: Ipv4Addr,
    maps: &mut PortMaps,
    nat: &mut Nat,
    now: Instant,
) -> Option<Vec<u8>> {
    let epoch = maps.epoch(now);
    if req.len() < 2 || req[1] & 0x80 != 0 {
        return None;
    }
    if req[0] != VERSION {
        return Some(error(req, Code::UnsuppVersion, epoch));
    }
    let op = req[1] & 0x7f;
    let need = match op {
        OP_ANNOUNCE => HEADER,
        OP_MAP => HEADER + MAP_LEN,
        OP_PEER => HEADER + PEER_LEN,
        _ => return Some(error(req, Code::UnsuppOpcode, epoch)),
    };
    if req.len() % 4 != 0 || req.len() > MAX_LEN || req.len() < need {
        return Some(error(req, Code::MalformedRequest, epoch));
    }
    if v4_of(&req[8..24]) != Some(client) {
        return Some(error(req, Code::AddressMismatch, epoch));
    }
    let prefer_failure = match options(&req[need..], op) {
        Ok(p) => p,
        Err(c) => return Some(error(req, c, epoch)),
    };
    let lifetime = u32::from_be_bytes([req[4], req[5], req[6], req[7]]);
    match op {
        OP_ANNOUNCE => Some(answer_from(req, Code::Success, 0, epoch)),
        OP_MAP => Some(map(req, client, lifetime, prefer_failure, maps, nat, now)),
        _ => Some(peer(req, client, lifetime, maps, nat, now)),
    }
}

fn map(
    req: &[u8],
    client: Ipv4Addr,
    lifetime: u32,
    prefer_failure: bool,
    maps: &mut PortMaps,
    nat: &Nat,
    now: Instant,
) -> Vec<u8> {
    let epoch = maps.epoch(now);
    let d = &req[HEADER..HEADER + MAP_LEN];
    let nonce: [u8; 12] = d[..12].try_into().unwrap_or_default();
    let internal = u16::from_be_bytes([d[16], d[17]]);
    let suggested = u16::from_be_bytes([d[18], d[19]]);
    let Some(protocol) = protocol_of(d[12]) else {
        return error(req, Code::UnsuppProtocol, epoch);
    };
    let external = nat.config().outside.addr;
    let with = |mut a: Vec<u8>, port: u16| {
        a[HEADER + 18..HEADER + 20].copy_from_slice(&port.to_be_bytes());
        a[HEADER + 20..HEADER + 36].copy_from_slice(&mapped(external));
        a
    };
    if lifetime == 0 {
        if internal == 0 {
            // "All ports" of this nonce.
            let n: Vec<u16> = maps
                .iter()
                .filter(|m| {
                    m.client == client
                        && m.protocol == protocol
                        && m.source == Source::Pcp
                        && m.nonce == nonce
                })
                .map(|m| m.internal)
                .collect();
            for p in n {
                let _ = maps.delete_internal(protocol, client, p, Source::Pcp, nonce);
            }
            return with(answer_from(req, Code::Success, 0, epoch), 0);
        }
        return match maps.delete_internal(protocol, client, internal, Source::Pcp, nonce) {
            Ok(m) => with(
                answer_from(req, Code::Success, 0, epoch),
                m.map_or(0, |m| m.external),
            ),
            Err(_) => error(req, Code::NotAuthorized, epoch),
        };
    }
    if internal == 0 {
        return error(req, Code::NotAuthorized, epoch);
    }
    let suggested_addr = &d[20..36];
    if prefer_failure && !is_zero_address(suggested_addr) && v4_of(suggested_addr) != Some(external)
    {
        return error(req, Code::CannotProvideExternal, epoch);
    }
    let want = Want {
        protocol,
        client,
        internal,
        external: suggested,
        exact: prefer_failure && suggested != 0,
        lifetime: Some(Duration::from_secs(lifetime.max(MIN_LIFETIME).into())),
        source: Source::Pcp,
        nonce,
        description: String::from("PCP"),
    };
    match maps.add(&want, nat, now) {
        Ok(m) => {
            let granted = m.remaining(now).unwrap_or(u32::MAX);
            with(answer_from(req, Code::Success, granted, epoch), m.external)
        }
        Err(r) => {
            let code = match r {
                Refusal::NotAuthorized | Refusal::NotOwner => Code::NotAuthorized,
                Refusal::PortTaken => Code::CannotProvideExternal,
                Refusal::NoResources => Code::UserExQuota,
                Refusal::NoPort => Code::NoResources,
            };
            error(req, code, epoch)
        }
    }
}

fn peer(
    req: &[u8],
    client: Ipv4Addr,
    lifetime: u32,
    maps: &mut PortMaps,
    nat: &mut Nat,
    now: Instant,
) -> Vec<u8> {
    let epoch = maps.epoch(now);
    let d = &req[HEADER..HEADER + PEER_LEN];
    let internal = u16::from_be_bytes([d[16], d[17]]);
    let remote_port = u16::from_be_bytes([d[36], d[37]]);
    let Some(protocol) = protocol_of(d[12]) else {
        return error(req, Code::UnsuppProtocol, epoch);
    };
    let Some(remote) = v4_of(&d[40..56]).filter(|a| !a.is_unspecified()) else {
        return error(req, Code::MalformedRequest, epoch);
    };
    if internal == 0 || remote_port == 0 {
        return error(req, Code::MalformedRequest, epoch);
    }
    if lifetime == 0 {
        // The session's own idle timer ends it; nothing to delete early.
        return answer_from(req, Code::Success, 0, epoch);
    }
    let inside = Endpoint::new(client, internal);
    match nat.peer_session(protocol, inside, Endpoint::new(remote, remote_port), now) {
        Ok((port, idle)) => {
            let mut a = answer_from(
                req,
                Code::Success,
                (idle.as_secs() as u32).min(lifetime.max(MIN_LIFETIME)),
                epoch,
            );
            a[HEADER + 18..HEADER + 20].copy_from_slice(&port.to_be_bytes());
            a[HEADER + 20..HEADER + 36].copy_from_slice(&mapped(nat.config().outside.addr));
            a
        }
        Err(_) => error(req, Code::NoResources, epoch),
    }
}

#[cfg(test)]
mod test;
