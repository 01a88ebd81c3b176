//! Bindings: made on first use, kept while the host has a mapping, swept after.

use super::*;

fn cfg() -> Nat64Config {
    Nat64Config {
        prefix: "64:ff9b:1::/96".parse().unwrap(),
        inside6: "fd00:122::100/64".parse().unwrap(),
        inside4: Ipv4Addr::UNSPECIFIED,
        mtu: [1500, 1500],
        udp_zero_compute: true,
        max_bindings: 2,
        static_hosts: vec!["fd00:122::73".parse().unwrap()],
    }
}

fn udp_from(host: &str) -> Vec<u8> {
    let src: Ipv6Addr = host.parse().unwrap();
    let dst: Ipv6Addr = "64:ff9b:1::ac10:101".parse().unwrap();
    let mut p = vec![0u8; 48];
    crate::wire::icmpv6::emit_header(&mut p, 8, 17, 64, src, dst);
    p[40..48].copy_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
    let s = crate::wire::checksum::pseudo_header_sum_v6(src, dst, 17, 8);
    let c = !crate::wire::checksum::fold(crate::wire::checksum::sum(&p[40..], s));
    p[46..48].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn bindings_are_made_kept_while_mapped_and_released_after_the_grace() {
    let mut n = Nat64::new(cfg());
    let fixed = n.stand_in_of("fd00:122::73".parse().unwrap()).unwrap();
    assert!(is_stand_in(fixed));
    let t0 = Instant::ZERO;
    let mut p = udp_from("fd00:122::101");
    assert!(matches!(
        n.outbound(&mut p, &mut Offload::default(), t0),
        Outbound::Translated(_)
    ));
    let a = n.stand_in_of("fd00:122::101".parse().unwrap()).unwrap();
    assert_ne!(a, fixed);
    assert_eq!(n.host_of(a), Some("fd00:122::101".parse().unwrap()));
    // The limit (2, the static one not counted against it... it is: 2 in all).
    let mut q = udp_from("fd00:122::102");
    assert!(matches!(
        n.outbound(&mut q, &mut Offload::default(), t0),
        Outbound::Refused(1, 1, _, DropReason::TableFull)
    ));
    // Still mapped at the sweep: kept; unmapped and past the grace: released.
    let t1 = t0 + BINDING_GRACE;
    assert_eq!(n.poll_timeout(), Some(t1));
    n.sweep(t1, |_| true);
    assert!(n.stand_in_of("fd00:122::101".parse().unwrap()).is_some());
    let t2 = n.poll_timeout().unwrap();
    n.sweep(t2, |_| false);
    assert_eq!(n.stand_in_of("fd00:122::101".parse().unwrap()), None);
    assert_eq!(n.host_of(a), None);
    assert_eq!(
        n.stand_in_of("fd00:122::73".parse().unwrap()),
        Some(fixed),
        "static"
    );
    assert_eq!(n.poll_timeout(), None, "nothing left to sweep");
    // A new host gets the next stand-in, not the one just released.
    let mut r = udp_from("fd00:122::102");
    assert!(matches!(
        n.outbound(&mut r, &mut Offload::default(), t2),
        Outbound::Translated(_)
    ));
    assert_ne!(n.stand_in_of("fd00:122::102".parse().unwrap()), Some(a));
}

#[test]
fn sources_outside_the_inside_network_are_spoofed() {
    let mut n = Nat64::new(cfg());
    let mut p = udp_from("2001:db8::1");
    assert!(matches!(
        n.outbound(&mut p, &mut Offload::default(), Instant::ZERO),
        Outbound::Dropped(DropReason::SpoofedSource)
    ));
}

#[test]
fn a_routing_header_with_segments_left_gets_parameter_problem() {
    let mut n = Nat64::new(cfg());
    let p = udp_from("fd00:122::101");
    let mut q = p[..40].to_vec();
    q[6] = 43;
    // Routing header type 4 (segment routing), 1 segment left, one address.
    q.extend_from_slice(&[17, 2, 4, 1, 0, 0, 0, 0]);
    q.extend_from_slice(&[0u8; 16]);
    q.extend_from_slice(&p[40..]);
    let len = (q.len() - 40) as u16;
    q[4..6].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        n.outbound(&mut q, &mut Offload::default(), Instant::ZERO),
        Outbound::Refused(4, 0, 43, DropReason::BadExtensionHeader)
    ));
}
