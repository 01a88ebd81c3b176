//! SOAP calls as clients send them, and the errors of IGD v1 and v2.

use super::*;
use crate::nat::NatConfig;
use crate::portmap::test::maps;

const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);

fn envelope(service: &str, action: &str, args: &[(&str, &str)]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{service}\">"
    );
    for (k, v) in args {
        s.push_str(&format!("<{k}>{v}</{k}>"));
    }
    s.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
    s
}

fn add(ext: &str, internal: &str, client: &str, lease: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", ext.into()),
        ("NewProtocol", "TCP".into()),
        ("NewInternalPort", internal.into()),
        ("NewInternalClient", client.into()),
        ("NewEnabled", "1".into()),
        ("NewPortMappingDescription", "a &amp; b".into()),
        ("NewLeaseDuration", lease.into()),
    ]
}

fn call(
    v: u8,
    action: &str,
    args: &[(&str, String)],
    m: &mut PortMaps,
    nat: &Nat,
) -> (u16, String) {
    let service = format!("urn:schemas-upnp-org:service:WANIPConnection:{v}");
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = envelope(&service, action, &args);
    let mut ctx = Ctx {
        maps: m,
        nat,
        client: HOST,
        now: Instant::ZERO,
        packets: (0, 0),
    };
    serve(
        &format!("\"{service}#{action}\""),
        body.as_bytes(),
        &mut ctx,
    )
}

fn error_code(body: &str) -> u16 {
    let a = body.find("<errorCode>").unwrap() + 11;
    body[a..a + 3].parse().unwrap()
}

#[test]
fn add_get_delete() {
    let nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let (st, _) = call(
        2,
        "AddPortMapping",
        &add("7000", "5000", "192.168.122.73", "3600"),
        &mut m,
        &nat,
    );
    assert_eq!(st, 200);
    let p = m.by_external(Protocol::Tcp, 7000).unwrap();
    assert_eq!(
        (p.internal, p.client, p.description.as_str()),
        (5000, HOST, "a & b")
    );
    let (st, b) = call(
        1,
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", "7000".into()),
            ("NewProtocol", "TCP".into()),
        ],
        &mut m,
        &nat,
    );
    assert_eq!(st, 200);
    assert!(
        b.contains("<NewInternalClient>192.168.122.73</NewInternalClient>"),
        "{b}"
    );
    assert!(b.contains("<NewPortMappingDescription>a &amp; b</NewPortMappingDescription>"));
    assert!(
        b.contains("xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\""),
        "answered in the version asked"
    );
    let (st, b) = call(
        2,
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "0".into())],
        &mut m,
        &nat,
    );
    assert_eq!(st, 200);
    assert!(b.contains("<NewExternalPort>7000</NewExternalPort>"));
    let (st, b) = call(
        2,
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "1".into())],
        &mut m,
        &nat,
    );
    assert_eq!((st, error_code(&b)), (500, 713));
    let del = [
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", "7000".into()),
        ("NewProtocol", "TCP".into()),
    ];
    assert_eq!(call(2, "DeletePortMapping", &del, &mut m, &nat).0, 200);
    let (st, b) = call(2, "DeletePortMapping", &del, &mut m, &nat);
    assert_eq!((st, error_code(&b)), (500, 714));
}

#[test]
fn errors_v1_and_v2() {
    let mut cfg = NatConfig::lab();
    cfg.dnat
        .push("tcp:8888=192.168.122.74:9999".parse().unwrap());
    let nat = Nat::new(cfg);
    let mut m = maps(Instant::ZERO);
    let mut code =
        |v, args: &[(&str, String)]| error_code(&call(v, "AddPortMapping", args, &mut m, &nat).1);
    // Another host as the target: 718, as miniupnpd's secure mode.
    assert_eq!(code(1, &add("7000", "5000", "192.168.122.74", "0")), 718);
    assert_eq!(code(2, &add("7000", "5000", "192.168.122.74", "0")), 718);
    // A static port forward's port.
    assert_eq!(code(2, &add("8888", "5000", "192.168.122.73", "0")), 718);
    // Below 1024, by the policy: 606, as miniupnpd.
    assert_eq!(code(1, &add("80", "80", "192.168.122.73", "0")), 606);
    assert_eq!(code(2, &add("80", "80", "192.168.122.73", "0")), 606);
    // Wildcard external port; remote host; bad arguments.
    assert_eq!(code(2, &add("0", "5000", "192.168.122.73", "0")), 716);
    let mut remote = add("7000", "5000", "192.168.122.73", "0");
    remote[0].1 = "172.16.1.1".into();
    assert_eq!(code(2, &remote), 726);
    let mut bad = add("7000", "5000", "192.168.122.73", "0");
    bad[2].1 = "SCTP".into();
    assert_eq!(code(2, &bad), 402);
    assert_eq!(code(2, &add("70000", "5000", "192.168.122.73", "0")), 402);
    assert_eq!(code(2, &add("7000", "5000", "not-an-address", "0")), 402);
    assert!(m.is_empty());
}

#[test]
fn leases_v1_permanent_v2_a_week_at_most() {
    let nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    call(
        1,
        "AddPortMapping",
        &add("7000", "5000", "192.168.122.73", "0"),
        &mut m,
        &nat,
    );
    assert_eq!(m.by_external(Protocol::Tcp, 7000).unwrap().expires, None);
    call(
        2,
        "AddPortMapping",
        &add("7001", "5001", "192.168.122.73", "0"),
        &mut m,
        &nat,
    );
    // Capped by the table's maximum lifetime (a day in tests' maps()).
    assert_eq!(
        m.by_external(Protocol::Tcp, 7001)
            .unwrap()
            .remaining(Instant::ZERO),
        Some(86400)
    );
}

#[test]
fn add_any_and_v1_has_no_such_action() {
    let nat = Nat::new(NatConfig::lab());
    let mut m = maps(Instant::ZERO);
    let (st, b) = call(
        2,
        "AddAnyPortMapping",
        &add("7000", "5000", "192.168.122.73", "60"),
        &mut m,
        &nat,
    );
    assert_eq!(st, 200);
    assert!(b.contains("<NewReservedPort>7000</NewReservedPort>"));
    let (st, b) = call(
        1,
        "AddAnyPortMapping",
        &add("7001", "5001", "192.168.122.73", "60"),
        &mut m,
        &nat,
    );
    assert_eq!((st, error_code(&b)), (500, 401));
}

#[test]
fn malformed_calls_get_faults() {
    let svc = "urn:schemas-upnp-org:service:WANIPConnection:2";
    let good = envelope(svc, "GetExternalIPAddress", &[]);
    for (header, body) in [
        (
            format!("{svc}#GetExternalIPAddress"),
            "<s:Envelope><s:Body>".to_string(),
        ),
        (
            format!("{svc}#GetExternalIPAddress"),
            "not xml at all <<<".to_string(),
        ),
        (
            format!("{svc}#GetExternalIPAddress"),
            good.replace("GetExternalIPAddress", "Other"),
        ),
        (
            format!("{svc}#GetExternalIPAddress"),
            format!("{}{}", "<a>".repeat(20), "</a>".repeat(20)),
        ),
        (
            "urn:schemas-upnp-org:service:Other:1#GetExternalIPAddress".into(),
            good.clone(),
        ),
        (format!("{svc}GetExternalIPAddress"), good.clone()),
        (
            format!("{svc}#GetExternalIPAddress"),
            good.replace(
                "<s:Body>",
                "<s:Body><u:GetExternalIPAddress><x>&bogus;</x></u:GetExternalIPAddress>",
            ),
        ),
    ] {
        assert!(parse(&header, body.as_bytes()).is_err(), "{header} {body}");
    }
    assert!(parse(&format!("\"{svc}#GetExternalIPAddress\""), good.as_bytes()).is_ok());
    assert!(parse(
        "urn:schemas-upnp-org:service:WANIPConnection:3#GetExternalIPAddress",
        good.as_bytes()
    )
    .is_err());
    let long = envelope(
        svc,
        "AddPortMapping",
        &[("NewPortMappingDescription", &"x".repeat(2000))],
    );
    assert_eq!(
        parse(&format!("{svc}#AddPortMapping"), long.as_bytes()),
        Err(INVALID_ARGS)
    );
}
