//! SSDP discovery (UPnP Device Architecture 1.1/2.0, section 1.3): an inside host
//! multicasts `M-SEARCH * HTTP/1.1` with `MAN: "ssdp:discover"` and a search target
//! (`ST`) to 239.255.255.250:1900; the router answers each target it has with a unicast
//! `HTTP/1.1 200 OK` naming its description's URL (`LOCATION`).
//!
//! Only asked for from the inside (the router never answers on its outside port) and
//! only with at most [`MAX_ANSWERS`] small datagrams per search.

use std::net::Ipv4Addr;

use super::{DEVICE_TYPES, SERVICE_TYPES};

pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
pub const PORT: u16 = 1900;
/// Answers to one `ssdp:all` search at most.
pub const MAX_ANSWERS: usize = 8;
/// Largest search read.
pub const MAX_SEARCH: usize = 1500;

/// The search target of an `M-SEARCH` request; `None`: not one (or malformed).
pub fn search_target(req: &[u8]) -> Option<&str> {
    if req.len() > MAX_SEARCH {
        return None;
    }
    let text = std::str::from_utf8(req).ok()?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    if lines.next()?.trim() != "M-SEARCH * HTTP/1.1" {
        return None;
    }
    let mut man = false;
    let mut st = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_uppercase().as_str() {
            "MAN" => man = v.trim_matches('"') == "ssdp:discover",
            "ST" => st = Some(v),
            _ => {}
        }
    }
    st.filter(|_| man)
}

/// The targets of the router's device matching search target `st`: each answer carries
/// one. A search for an older version of a type is answered with that version, as UPnP
/// asks of a device that implements a newer one.
pub fn matches(st: &str, uuid: &str) -> Vec<String> {
    if st == "ssdp:all" {
        let mut v = vec!["upnp:rootdevice".to_string(), format!("uuid:{uuid}")];
        v.extend(
            DEVICE_TYPES
                .iter()
                .chain(SERVICE_TYPES)
                .map(|t| t.to_string()),
        );
        v.truncate(MAX_ANSWERS);
        return v;
    }
    if st == "upnp:rootdevice" || st == format!("uuid:{uuid}") {
        return vec![st.to_string()];
    }
    let Some((base, version)) = st.rsplit_once(':') else {
        return vec![];
    };
    let Ok(version) = version.parse::<u32>() else {
        return vec![];
    };
    let ours = DEVICE_TYPES.iter().chain(SERVICE_TYPES).find(|t| {
        t.rsplit_once(':').is_some_and(|(b, v)| {
            b == base && v.parse::<u32>().is_ok_and(|v| version >= 1 && version <= v)
        })
    });
    match ours {
        Some(_) => vec![st.to_string()],
        None => vec![],
    }
}

/// The answer for target `st`.
pub fn answer(st: &str, uuid: &str, location: &str, boot_id: u32) -> Vec<u8> {
    let usn = if st.starts_with("uuid:") {
        st.to_string()
    } else {
        format!("uuid:{uuid}::{st}")
    };
    format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {st}\r\nUSN: {usn}\r\nEXT:\r\n\
         SERVER: Linux UPnP/1.1 tunnat/{}\r\nLOCATION: {location}\r\n\
         OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: {boot_id}\r\n\
         BOOTID.UPNP.ORG: {boot_id}\r\nCONFIGID.UPNP.ORG: 1\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

#[cfg(test)]
mod test {
    use super::*;

    const UUID: &str = "7f3a0000-0000-4000-8000-00000000000a";

    #[test]
    fn search() {
        let req = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n";
        let st = search_target(req).unwrap();
        assert_eq!(
            matches(st, UUID),
            ["urn:schemas-upnp-org:device:InternetGatewayDevice:1"]
        );
        assert_eq!(
            matches("urn:schemas-upnp-org:service:WANIPConnection:2", UUID).len(),
            1
        );
        assert!(matches("urn:schemas-upnp-org:service:WANIPConnection:3", UUID).is_empty());
        assert!(matches("urn:schemas-upnp-org:device:MediaServer:1", UUID).is_empty());
        assert!(matches("urn:x:0", UUID).is_empty());
        assert_eq!(matches("ssdp:all", UUID).len(), 7);
        let a = String::from_utf8(answer(
            st,
            UUID,
            "http://192.168.122.100:5000/rootDesc.xml",
            1,
        ))
        .unwrap();
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(a.contains("\r\nLOCATION: http://192.168.122.100:5000/rootDesc.xml\r\n"));
        assert!(a.contains(&format!(
            "USN: uuid:{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
        )));
    }

    #[test]
    fn not_searches() {
        assert_eq!(
            search_target(b"NOTIFY * HTTP/1.1\r\nST: ssdp:all\r\n\r\n"),
            None
        );
        assert_eq!(
            search_target(b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n"),
            None,
            "no MAN"
        );
        assert_eq!(search_target(&[0xff; 40]), None);
        assert_eq!(search_target(&[b'a'; 2000]), None);
    }
}
