//! NAT-PMP (RFC 6886): a host asks the router for its public address and for port
//! mappings, in small UDP datagrams to port 5351 of the router's inside address.
//!
//! * Section 3.2: `[0, 0]` asks for the public address; the answer is `[0, 128, result,
//!   epoch, address]`.
//! * Section 3.3: `[0, 1|2, 0, 0, internal port, suggested external port, lifetime]` maps
//!   UDP (1) or TCP (2); the answer echoes the internal port and gives the mapped port and
//!   the lifetime granted. Lifetime 0 deletes the port's mapping, or with internal port 0
//!   all of the host's mappings of that protocol (section 3.4).
//! * Section 3.5: result codes; a request of another version gets "unsupported version"
//!   (1), an unknown opcode "unsupported opcode" (5), a refused one "not authorized" (2)
//!   or "out of resources" (4).
//! * Section 3.2.1: the router multicasts its address to 224.0.0.1:5350 when it starts
//!   (ten times, 250 ms apart and doubling), so hosts renew their mappings.
//!
//! Requests shorter than their opcode's format are ignored (section 3.1's "MUST be
//! ignored" for malformed requests); answers never exceed 16 bytes, so the service
//! cannot amplify.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{PortMaps, Refusal, Source, Want};
use crate::nat::{Instant, Nat};
use crate::wire::transport::Protocol;

pub const SERVER_PORT: u16 = 5351;
pub const CLIENT_PORT: u16 = 5350;
/// The lifetime RFC 6886 section 3.3 recommends clients ask for.
pub const RECOMMENDED_LIFETIME: u32 = 7200;

pub const SUCCESS: u16 = 0;
pub const UNSUPPORTED_VERSION: u16 = 1;
pub const NOT_AUTHORIZED: u16 = 2;
pub const NETWORK_FAILURE: u16 = 3;
pub const OUT_OF_RESOURCES: u16 = 4;
pub const UNSUPPORTED_OPCODE: u16 = 5;

fn header(op: u8, result: u16, epoch: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.push(0);
    v.push(op);
    v.extend_from_slice(&result.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    v
}

/// The public address answer (also the announcement sent at start).
pub fn address_answer(external: Ipv4Addr, epoch: u32) -> Vec<u8> {
    let mut v = header(128, SUCCESS, epoch);
    v.extend_from_slice(&external.octets());
    v
}

/// "Unsupported version": what a request of another version gets (a PCP request, when
/// only NAT-PMP is on).
pub fn unsupported_version(epoch: u32) -> Vec<u8> {
    header(128, UNSUPPORTED_VERSION, epoch)
}

fn map_answer(
    op: u8,
    result: u16,
    epoch: u32,
    internal: u16,
    external: u16,
    lifetime: u32,
) -> Vec<u8> {
    let mut v = header(128 + op, result, epoch);
    v.extend_from_slice(&internal.to_be_bytes());
    v.extend_from_slice(&external.to_be_bytes());
    v.extend_from_slice(&lifetime.to_be_bytes());
    v
}

fn result_of(r: Refusal) -> u16 {
    match r {
        Refusal::NotAuthorized | Refusal::NotOwner | Refusal::PortTaken => NOT_AUTHORIZED,
        Refusal::NoResources | Refusal::NoPort => OUT_OF_RESOURCES,
    }
}

/// The answer to NAT-PMP request `req` (version 0) from inside host `client`; `None`:
/// ignored.
pub fn answer(
    req: &[u8],
    client: Ipv4Addr,
    maps: &mut PortMaps,
    nat: &Nat,
    now: Instant,
) -> Option<Vec<u8>> {
    let epoch = maps.epoch(now);
    let (&version, &op) = (req.first()?, req.get(1)?);
    if version != 0 {
        return Some(unsupported_version(epoch));
    }
    if op >= 128 {
        return None; // an answer, not a request
    }
    let external = nat.config().outside.addr;
    match op {
        0 => Some(address_answer(external, epoch)),
        1 | 2 => {
            let req: &[u8; 12] = req.get(..12)?.try_into().ok()?;
            let protocol = if op == 1 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            let internal = u16::from_be_bytes([req[4], req[5]]);
            let suggested = u16::from_be_bytes([req[6], req[7]]);
            let lifetime = u32::from_be_bytes([req[8], req[9], req[10], req[11]]);
            if lifetime == 0 {
                if internal == 0 {
                    maps.delete_all(protocol, client, Source::NatPmp);
                    return Some(map_answer(op, SUCCESS, epoch, 0, 0, 0));
                }
                return Some(
                    match maps.delete_internal(protocol, client, internal, Source::NatPmp, [0; 12])
                    {
                        Ok(_) => map_answer(op, SUCCESS, epoch, internal, 0, 0),
                        Err(r) => map_answer(op, result_of(r), epoch, internal, 0, 0),
                    },
                );
            }
            if internal == 0 {
                return Some(map_answer(op, NOT_AUTHORIZED, epoch, internal, 0, 0));
            }
            let want = Want {
                protocol,
                client,
                internal,
                external: suggested,
                exact: false,
                lifetime: Some(Duration::from_secs(lifetime.into())),
                source: Source::NatPmp,
                nonce: [0; 12],
                description: String::new(), // named by the table, as miniupnpd does
            };
            Some(match maps.add(&want, nat, now) {
                Ok(m) => map_answer(
                    op,
                    SUCCESS,
                    epoch,
                    internal,
                    m.external,
                    m.remaining(now).unwrap_or(u32::MAX),
                ),
                Err(r) => map_answer(op, result_of(r), epoch, internal, 0, 0),
            })
        }
        _ => Some(header(128 + op, UNSUPPORTED_OPCODE, epoch)),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::nat::NatConfig;
    use crate::portmap::test::maps;

    const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);

    fn map_req(op: u8, internal: u16, suggested: u16, lifetime: u32) -> Vec<u8> {
        let mut v = vec![0, op, 0, 0];
        v.extend_from_slice(&internal.to_be_bytes());
        v.extend_from_slice(&suggested.to_be_bytes());
        v.extend_from_slice(&lifetime.to_be_bytes());
        v
    }

    #[test]
    fn public_address() {
        let nat = Nat::new(NatConfig::lab());
        let mut m = maps(Instant::ZERO);
        let a = answer(&[0, 0], HOST, &mut m, &nat, Instant::from_secs(5)).unwrap();
        assert_eq!(a, [0, 128, 0, 0, 0, 0, 0, 5, 172, 16, 1, 186]);
    }

    #[test]
    fn map_renew_delete() {
        let nat = Nat::new(NatConfig::lab());
        let mut m = maps(Instant::ZERO);
        let a = answer(
            &map_req(2, 5000, 0, 3600),
            HOST,
            &mut m,
            &nat,
            Instant::ZERO,
        )
        .unwrap();
        assert_eq!(&a[..4], [0, 130, 0, 0]);
        assert_eq!(u16::from_be_bytes([a[8], a[9]]), 5000);
        assert_eq!(
            u16::from_be_bytes([a[10], a[11]]),
            5000,
            "the host's own port when free"
        );
        assert_eq!(u32::from_be_bytes([a[12], a[13], a[14], a[15]]), 3600);
        assert_eq!(m.len(), 1);
        // Renewed, same port.
        let a = answer(
            &map_req(2, 5000, 6000, 7200),
            HOST,
            &mut m,
            &nat,
            Instant::from_secs(60),
        )
        .unwrap();
        assert_eq!(u16::from_be_bytes([a[10], a[11]]), 5000);
        assert_eq!(m.len(), 1);
        // Deleted.
        let a = answer(
            &map_req(2, 5000, 0, 0),
            HOST,
            &mut m,
            &nat,
            Instant::from_secs(61),
        )
        .unwrap();
        assert_eq!(&a[2..4], [0, 0]);
        assert!(m.is_empty());
    }

    #[test]
    fn refusals() {
        let nat = Nat::new(NatConfig::lab());
        let mut m = maps(Instant::ZERO);
        // Below 1024: not authorized.
        let a = answer(&map_req(1, 80, 80, 3600), HOST, &mut m, &nat, Instant::ZERO).unwrap();
        assert_eq!(&a[2..4], [0, NOT_AUTHORIZED as u8]);
        // Unknown opcode, other version, an answer, short requests.
        assert_eq!(
            answer(&[0, 7], HOST, &mut m, &nat, Instant::ZERO).unwrap()[..4],
            [0, 135, 0, 5]
        );
        assert_eq!(
            answer(&[2, 1, 0, 0], HOST, &mut m, &nat, Instant::ZERO).unwrap()[..4],
            [0, 128, 0, 1]
        );
        assert_eq!(answer(&[0, 129], HOST, &mut m, &nat, Instant::ZERO), None);
        assert_eq!(
            answer(&[0, 1, 0, 0, 1], HOST, &mut m, &nat, Instant::ZERO),
            None
        );
        assert_eq!(answer(&[0], HOST, &mut m, &nat, Instant::ZERO), None);
        assert!(m.is_empty());
    }
}
