//! The mapping table with the NAT core, on a fake clock.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::policy::Policy;
use super::*;
use crate::nat::NatConfig;

pub fn maps(now: Instant) -> PortMaps {
    PortMaps::new(
        Policy::new(vec![], NatConfig::lab().inside),
        Limits {
            per_host: 4,
            total: 100,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        },
        now,
        7,
    )
}

const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 74);

fn want(client: Ipv4Addr, internal: u16, external: u16, exact: bool) -> Want {
    Want {
        protocol: Protocol::Tcp,
        client,
        internal,
        external,
        exact,
        lifetime: Some(Duration::from_secs(600)),
        source: if exact { Source::Upnp } else { Source::NatPmp },
        nonce: [0; 12],
        description: String::new(),
    }
}

fn nat_with(m: &PortMaps, cfg: NatConfig) -> Nat {
    Nat::new(NatConfig {
        port_maps: m.rules(),
        ..cfg
    })
}

#[test]
fn suggested_port_else_own_else_any() {
    let mut nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let a = m
        .add(&want(HOST, 5000, 6000, false), &nat, Instant::ZERO)
        .unwrap();
    assert_eq!(a.external, 6000);
    nat = nat_with(&m, NatConfig::lab());
    // Another host suggesting the same port gets its own port instead.
    let b = m
        .add(&want(OTHER, 5000, 6000, false), &nat, Instant::ZERO)
        .unwrap();
    assert_eq!(b.external, 5000);
    nat = nat_with(&m, NatConfig::lab());
    // A third, suggesting a taken port for a taken own port: some other allowed port.
    let c = m
        .add(
            &want(Ipv4Addr::new(192, 168, 122, 75), 5000, 6000, false),
            &nat,
            Instant::ZERO,
        )
        .unwrap();
    assert!(c.external >= 1024 && c.external != 5000 && c.external != 6000);
}

#[test]
fn never_a_static_forward_or_service_port() {
    let mut cfg = NatConfig::lab();
    cfg.dnat
        .push("tcp:8888=192.168.122.73:9999".parse().unwrap());
    let nat = Nat::new(cfg);
    let mut m = maps(Instant::ZERO);
    assert_eq!(
        m.add(&want(OTHER, 8888, 8888, true), &nat, Instant::ZERO),
        Err(Refusal::PortTaken)
    );
    let p = m
        .add(&want(OTHER, 8888, 8888, false), &nat, Instant::ZERO)
        .unwrap();
    assert_ne!(p.external, 8888);
    // Below 1024 is refused by the default policy, exact or not.
    assert_eq!(
        m.add(&want(OTHER, 843, 843, true), &nat, Instant::ZERO),
        Err(Refusal::NotAuthorized)
    );
    assert_eq!(
        m.add(&want(OTHER, 80, 0, false), &nat, Instant::ZERO),
        Err(Refusal::NotAuthorized)
    );
}

#[test]
fn exact_port_of_another_host_conflicts_same_host_replaces() {
    let nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    m.add(&want(HOST, 5000, 7000, true), &nat, Instant::ZERO)
        .unwrap();
    let nat = nat_with(&m, NatConfig::lab());
    assert_eq!(
        m.add(&want(OTHER, 5000, 7000, true), &nat, Instant::ZERO),
        Err(Refusal::PortTaken)
    );
    let r = m
        .add(&want(HOST, 5001, 7000, true), &nat, Instant::ZERO)
        .unwrap();
    assert_eq!((r.external, r.internal), (7000, 5001));
    assert_eq!(m.len(), 1);
}

#[test]
fn per_host_limit_and_expiry() {
    let nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    for p in 0..4 {
        m.add(&want(HOST, 5000 + p, 0, false), &nat, Instant::ZERO)
            .unwrap();
    }
    assert_eq!(
        m.add(&want(HOST, 5010, 0, false), &nat, Instant::ZERO),
        Err(Refusal::NoResources)
    );
    assert!(m
        .add(&want(OTHER, 5010, 0, false), &nat, Instant::ZERO)
        .is_ok());
    assert_eq!(m.poll_timeout(), Some(Instant::from_secs(600)));
    m.expire(Instant::from_secs(599));
    assert_eq!(m.len(), 5);
    m.expire(Instant::from_secs(600));
    assert!(m.is_empty());
    assert_eq!(m.stats.expired, 5);
    assert!(m.take_changed());
}

#[test]
fn a_mapping_is_used_both_ways() {
    use crate::nat::test::tcp;
    use crate::nat::{Side, Verdict};
    let nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let p = m
        .add(&want(HOST, 5000, 7000, true), &nat, Instant::ZERO)
        .unwrap();
    let mut nat = nat_with(&m, NatConfig::lab());
    let remote = Ipv4Addr::new(172, 16, 1, 1);
    let out = Ipv4Addr::new(172, 16, 1, 186);
    // Inbound to 7000 reaches the host's 5000.
    let mut syn = tcp(remote, 40000, out, p.external, 0x02);
    assert!(matches!(
        nat.process(Side::Outside, &mut syn, Instant::ZERO),
        Verdict::Forward { .. }
    ));
    assert_eq!(&syn[16..20], &HOST.octets());
    // The host's own outbound traffic from 5000 leaves by 7000.
    let mut out_syn = tcp(HOST, 5000, Ipv4Addr::new(172, 16, 1, 2), 80, 0x02);
    assert!(matches!(
        nat.process(Side::Inside, &mut out_syn, Instant::ZERO),
        Verdict::Forward { .. }
    ));
    assert_eq!(u16::from_be_bytes([out_syn[20], out_syn[21]]), 7000);
}
