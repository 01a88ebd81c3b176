//! UPnP IGD (Internet Gateway Device v2, with v1 clients answered in v1's terms) for the
//! inside network: discovery ([`ssdp`]), the device description and the services'
//! descriptions over HTTP ([`http`]), and the WANIPConnection and
//! WANCommonInterfaceConfig actions in SOAP ([`soap`]). Port mappings go into the shared
//! [`super::PortMaps`] like PCP's and NAT-PMP's, owned by the host that asked.
//!
//! Not served: eventing (SUBSCRIBE gets 501; miniupnpc and the common clients never
//! subscribe), WANPPPConnection, remote-host filters (a mapping is for any remote host:
//! error 726 otherwise), disabled mappings.

pub mod http;
pub mod soap;
pub mod ssdp;

use std::fmt::Write;
use std::net::Ipv4Addr;

pub const IGD: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:2";
pub const WAN_DEVICE: &str = "urn:schemas-upnp-org:device:WANDevice:2";
pub const WAN_CONNECTION_DEVICE: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:2";
pub const WAN_IP_CONNECTION: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";
pub const WAN_COMMON: &str = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1";
pub const DEVICE_TYPES: &[&str] = &[IGD, WAN_DEVICE, WAN_CONNECTION_DEVICE];
pub const SERVICE_TYPES: &[&str] = &[WAN_IP_CONNECTION, WAN_COMMON];

pub const DESC_PATH: &str = "/rootDesc.xml";
pub const IP_CONN_SCPD: &str = "/WANIPCn.xml";
pub const COMMON_SCPD: &str = "/WANCfg.xml";
pub const IP_CONN_CONTROL: &str = "/ctl/IPConn";
pub const COMMON_CONTROL: &str = "/ctl/CmnIfCfg";
pub const IP_CONN_EVENTS: &str = "/evt/IPConn";
pub const COMMON_EVENTS: &str = "/evt/CmnIfCfg";

/// The HTTP port by default.
pub const DEFAULT_PORT: u16 = 5000;

/// The device's UUID, fixed by the router's inside address (the same across restarts, as
/// UPnP asks).
pub fn uuid(inside: Ipv4Addr) -> String {
    let o = inside.octets();
    format!(
        "7f3a6e2c-{:02x}{:02x}-4{:01x}{:02x}-8000-74756e6e6174",
        o[0],
        o[1],
        o[2] & 0xf,
        o[3]
    )
}

/// The device description (`/rootDesc.xml`).
pub fn description(inside: Ipv4Addr, port: u16) -> String {
    let uuid = uuid(inside);
    let service = |ty: &str, id: &str, scpd: &str, ctl: &str, evt: &str| {
        format!(
            "<service><serviceType>{ty}</serviceType><serviceId>urn:upnp-org:serviceId:{id}</serviceId>\
             <SCPDURL>{scpd}</SCPDURL><controlURL>{ctl}</controlURL><eventSubURL>{evt}</eventSubURL></service>"
        )
    };
    let device = |ty: &str, name: &str, n: u8, services: String, devices: String| {
        format!(
            "<device><deviceType>{ty}</deviceType><friendlyName>tunnat {name}</friendlyName>\
             <manufacturer>tunnat</manufacturer><manufacturerURL>https://example.invalid/tunnat</manufacturerURL>\
             <modelName>tunnat</modelName><modelNumber>{}</modelNumber><UDN>uuid:{}{n}</UDN>\
             <serviceList>{services}</serviceList>{devices}</device>",
            env!("CARGO_PKG_VERSION"),
            &uuid[..uuid.len() - 1]
        )
    };
    let conn = device(
        WAN_CONNECTION_DEVICE,
        "WAN connection",
        2,
        service(
            WAN_IP_CONNECTION,
            "WANIPConn1",
            IP_CONN_SCPD,
            IP_CONN_CONTROL,
            IP_CONN_EVENTS,
        ),
        String::new(),
    );
    let wan = device(
        WAN_DEVICE,
        "WAN",
        1,
        service(
            WAN_COMMON,
            "WANCommonIFC1",
            COMMON_SCPD,
            COMMON_CONTROL,
            COMMON_EVENTS,
        ),
        format!("<deviceList>{conn}</deviceList>"),
    );
    let mut root = device(
        IGD,
        "router",
        0,
        String::new(),
        format!("<deviceList>{wan}</deviceList>"),
    );
    // The root device's UDN is the UUID itself.
    root = root.replacen(
        &format!("uuid:{}0", &uuid[..uuid.len() - 1]),
        &format!("uuid:{uuid}"),
        1,
    );
    format!(
        "<?xml version=\"1.0\"?>\r\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\" configId=\"1\">\
         <specVersion><major>1</major><minor>1</minor></specVersion>\
         <URLBase>http://{inside}:{port}/</URLBase>{root}</root>\r\n"
    )
}

/// An argument: its name and its state variable.
type Arg = (&'static str, &'static str);
/// `(action, [(direction "in"/"out", arguments)])`.
type Action = (&'static str, &'static [(&'static str, &'static [Arg])]);

/// The three arguments that name a mapping.
const MAP_KEY: &[Arg] = &[
    ("NewRemoteHost", "RemoteHost"),
    ("NewExternalPort", "ExternalPort"),
    ("NewProtocol", "PortMappingProtocol"),
];
/// What a mapping holds beyond its key.
const MAP_ENTRY: &[Arg] = &[
    ("NewInternalPort", "InternalPort"),
    ("NewInternalClient", "InternalClient"),
    ("NewEnabled", "PortMappingEnabled"),
    ("NewPortMappingDescription", "PortMappingDescription"),
    ("NewLeaseDuration", "PortMappingLeaseDuration"),
];
/// A range of external ports.
const RANGE: &[Arg] = &[
    ("NewStartPort", "ExternalPort"),
    ("NewEndPort", "ExternalPort"),
    ("NewProtocol", "PortMappingProtocol"),
    ("NewManage", "A_ARG_TYPE_Manage"),
];

pub const IP_CONN_ACTIONS: &[Action] = &[
    (
        "GetConnectionTypeInfo",
        &[(
            "out",
            &[
                ("NewConnectionType", "ConnectionType"),
                ("NewPossibleConnectionTypes", "PossibleConnectionTypes"),
            ],
        )],
    ),
    (
        "GetStatusInfo",
        &[(
            "out",
            &[
                ("NewConnectionStatus", "ConnectionStatus"),
                ("NewLastConnectionError", "LastConnectionError"),
                ("NewUptime", "Uptime"),
            ],
        )],
    ),
    (
        "GetExternalIPAddress",
        &[("out", &[("NewExternalIPAddress", "ExternalIPAddress")])],
    ),
    (
        "GetNATRSIPStatus",
        &[(
            "out",
            &[
                ("NewRSIPAvailable", "RSIPAvailable"),
                ("NewNATEnabled", "NATEnabled"),
            ],
        )],
    ),
    ("AddPortMapping", &[("in", MAP_KEY), ("in", MAP_ENTRY)]),
    (
        "AddAnyPortMapping",
        &[
            ("in", MAP_KEY),
            ("in", MAP_ENTRY),
            ("out", &[("NewReservedPort", "ExternalPort")]),
        ],
    ),
    ("DeletePortMapping", &[("in", MAP_KEY)]),
    ("DeletePortMappingRange", &[("in", RANGE)]),
    (
        "GetGenericPortMappingEntry",
        &[
            (
                "in",
                &[("NewPortMappingIndex", "PortMappingNumberOfEntries")],
            ),
            ("out", MAP_KEY),
            ("out", MAP_ENTRY),
        ],
    ),
    (
        "GetSpecificPortMappingEntry",
        &[("in", MAP_KEY), ("out", MAP_ENTRY)],
    ),
    (
        "GetListOfPortMappings",
        &[
            ("in", RANGE),
            ("in", &[("NewNumberOfPorts", "PortMappingNumberOfEntries")]),
            ("out", &[("NewPortListing", "A_ARG_TYPE_PortListing")]),
        ],
    ),
];

pub const COMMON_ACTIONS: &[Action] = &[
    (
        "GetCommonLinkProperties",
        &[(
            "out",
            &[
                ("NewWANAccessType", "WANAccessType"),
                ("NewLayer1UpstreamMaxBitRate", "Layer1UpstreamMaxBitRate"),
                (
                    "NewLayer1DownstreamMaxBitRate",
                    "Layer1DownstreamMaxBitRate",
                ),
                ("NewPhysicalLinkStatus", "PhysicalLinkStatus"),
            ],
        )],
    ),
    (
        "GetTotalPacketsSent",
        &[("out", &[("NewTotalPacketsSent", "TotalPacketsSent")])],
    ),
    (
        "GetTotalPacketsReceived",
        &[(
            "out",
            &[("NewTotalPacketsReceived", "TotalPacketsReceived")],
        )],
    ),
];

const IP_CONN_VARS: &[(&str, &str)] = &[
    ("ConnectionType", "string"),
    ("PossibleConnectionTypes", "string"),
    ("ConnectionStatus", "string"),
    ("Uptime", "ui4"),
    ("LastConnectionError", "string"),
    ("RSIPAvailable", "boolean"),
    ("NATEnabled", "boolean"),
    ("ExternalIPAddress", "string"),
    ("PortMappingNumberOfEntries", "ui2"),
    ("PortMappingEnabled", "boolean"),
    ("PortMappingLeaseDuration", "ui4"),
    ("RemoteHost", "string"),
    ("ExternalPort", "ui2"),
    ("InternalPort", "ui2"),
    ("PortMappingProtocol", "string"),
    ("InternalClient", "string"),
    ("PortMappingDescription", "string"),
    ("A_ARG_TYPE_Manage", "boolean"),
    ("A_ARG_TYPE_PortListing", "string"),
];

const COMMON_VARS: &[(&str, &str)] = &[
    ("WANAccessType", "string"),
    ("Layer1UpstreamMaxBitRate", "ui4"),
    ("Layer1DownstreamMaxBitRate", "ui4"),
    ("PhysicalLinkStatus", "string"),
    ("TotalPacketsSent", "ui4"),
    ("TotalPacketsReceived", "ui4"),
];

/// A service description (SCPD) from its actions and state variables.
fn scpd(actions: &[Action], vars: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\r\n<scpd xmlns=\"urn:schemas-upnp-org:service-1-0\">\
         <specVersion><major>1</major><minor>0</minor></specVersion><actionList>",
    );
    for (name, args) in actions {
        let _ = write!(s, "<action><name>{name}</name><argumentList>");
        for (dir, group) in *args {
            for (arg, var) in *group {
                let _ = write!(
                    s,
                    "<argument><name>{arg}</name><direction>{dir}</direction><relatedStateVariable>{var}</relatedStateVariable></argument>"
                );
            }
        }
        s.push_str("</argumentList></action>");
    }
    s.push_str("</actionList><serviceStateTable>");
    for (name, ty) in vars {
        let _ = write!(
            s,
            "<stateVariable sendEvents=\"no\"><name>{name}</name><dataType>{ty}</dataType></stateVariable>"
        );
    }
    s.push_str("</serviceStateTable></scpd>\r\n");
    s
}

pub fn ip_conn_scpd() -> String {
    scpd(IP_CONN_ACTIONS, IP_CONN_VARS)
}

pub fn common_scpd() -> String {
    scpd(COMMON_ACTIONS, COMMON_VARS)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn descriptions_are_well_formed_xml() {
        let inside = Ipv4Addr::new(192, 168, 122, 100);
        for doc in [description(inside, 5000), ip_conn_scpd(), common_scpd()] {
            let mut r = quick_xml::Reader::from_str(&doc);
            let mut depth = 0i32;
            loop {
                match r.read_event().expect("well-formed") {
                    quick_xml::events::Event::Start(_) => depth += 1,
                    quick_xml::events::Event::End(_) => depth -= 1,
                    quick_xml::events::Event::Eof => break,
                    _ => {}
                }
                assert!(depth >= 0);
            }
            assert_eq!(depth, 0);
        }
        let d = description(inside, 5000);
        assert!(d.contains(&format!("<UDN>uuid:{}</UDN>", uuid(inside))));
        assert!(d.contains("<controlURL>/ctl/IPConn</controlURL>"));
        assert_eq!(d.matches("<UDN>").count(), 3);
    }
}
