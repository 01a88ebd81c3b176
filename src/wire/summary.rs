//! A packet in brief: protocol, endpoints, TTL and what it is (TCP flags, the ICMP
//! message), for the words and pictures that show a packet to a person: `tunnat explain`,
//! the event ring of `tunnat web`, the comments of `--pcap-pair`. Reads only what is
//! there; anything short or odd gives `None` or a plain description.

use std::net::{IpAddr, SocketAddr};

/// What a packet is, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The IP protocol number (58 for ICMPv6).
    pub proto: u8,
    /// The endpoints; the port of an ICMP echo is its identifier, of other ICMP 0.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ttl: u8,
    /// `TCP [SYN ACK]`, `UDP`, `ping (echo request)`, `ICMP port unreachable`...
    pub what: String,
    /// An ICMP or ICMPv6 message that is not an echo (an error).
    pub icmp_error: bool,
}

/// The summary of an IPv4 or IPv6 packet; `None` if it is neither or too short.
pub fn summary(p: &[u8]) -> Option<Summary> {
    let (proto, src, dst, ttl, l4): (u8, IpAddr, IpAddr, u8, &[u8]) = match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 15) * 4;
            let a = |i: usize| IpAddr::from([p[i], p[i + 1], p[i + 2], p[i + 3]]);
            (p[9], a(12), a(16), p[8], p.get(ihl..)?)
        }
        6 if p.len() >= 40 => {
            let a = |i: usize| IpAddr::from(<[u8; 16]>::try_from(&p[i..i + 16]).unwrap_or([0; 16]));
            (p[6], a(8), a(24), p[7], &p[40..])
        }
        _ => return None,
    };
    let port = |i: usize| {
        l4.get(i..i + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (sp, dp, what, icmp_error) = match proto {
        6 => {
            let f = l4.get(13).copied().unwrap_or(0);
            let names: Vec<&str> = [(2, "SYN"), (16, "ACK"), (1, "FIN"), (4, "RST"), (8, "PSH")]
                .iter()
                .filter(|(b, _)| f & b != 0)
                .map(|(_, n)| *n)
                .collect();
            (
                port(0),
                port(2),
                format!("TCP [{}]", names.join(" ")),
                false,
            )
        }
        17 => (port(0), port(2), "UDP".to_string(), false),
        1 | 58 => {
            let (t, c) = (
                l4.first().copied().unwrap_or(0),
                l4.get(1).copied().unwrap_or(0),
            );
            let what = match (proto, t, c) {
                (1, 8, _) | (58, 128, _) => "ping (echo request)".to_string(),
                (1, 0, _) | (58, 129, _) => "echo reply".to_string(),
                (1, 3, 3) | (58, 1, 4) => "ICMP port unreachable".to_string(),
                (1, 3, 4) => "ICMP fragmentation needed".to_string(),
                (58, 2, _) => "ICMPv6 packet too big".to_string(),
                (1, 3, 13) | (58, 1, 1) => "ICMP administratively prohibited".to_string(),
                (1, 11, _) | (58, 3, _) => "ICMP time exceeded".to_string(),
                _ => format!("ICMP type {t} code {c}"),
            };
            let echo = matches!((proto, t), (1, 0 | 8) | (58, 128 | 129));
            let id = if echo { port(4) } else { 0 };
            (id, id, what, !echo)
        }
        n => (0, 0, format!("protocol {n}"), false),
    };
    Some(Summary {
        proto,
        src: SocketAddr::new(src, sp),
        dst: SocketAddr::new(dst, dp),
        ttl,
        icmp_error,
        what,
    })
}

impl Summary {
    /// `tcp`, `udp`, `icmp` (either family's) or `ip`.
    pub fn proto_name(&self) -> &'static str {
        match self.proto {
            6 => "tcp",
            17 => "udp",
            1 | 58 => "icmp",
            _ => "ip",
        }
    }

    /// An endpoint as written: with its port for TCP and UDP and an ICMP echo, the
    /// address alone otherwise.
    pub fn endpoint(&self, a: SocketAddr) -> String {
        if matches!(self.proto, 6 | 17) || a.port() != 0 {
            a.to_string()
        } else {
            a.ip().to_string()
        }
    }
}

/// A packet's protocol, source, destination and what it is, as the event ring records
/// them.
pub fn endpoints(p: &[u8]) -> (String, String, String, String) {
    match summary(p) {
        Some(s) => (
            s.proto_name().into(),
            s.endpoint(s.src),
            s.endpoint(s.dst),
            s.what.clone(),
        ),
        None => ("?".into(), String::new(), String::new(), "not IP".into()),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn echo_carries_its_identifier_and_an_error_only_addresses() {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 63, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let s = summary(&p).unwrap();
        assert_eq!(
            (s.what.as_str(), s.icmp_error, s.ttl),
            ("ping (echo request)", false, 63)
        );
        assert_eq!(s.endpoint(s.src), "10.0.0.1:4660");
        p[20..22].copy_from_slice(&[3, 3]);
        let s = summary(&p).unwrap();
        assert_eq!(
            (s.what.as_str(), s.icmp_error),
            ("ICMP port unreachable", true)
        );
        assert_eq!(
            (s.endpoint(s.src), s.proto_name()),
            ("10.0.0.1".to_string(), "icmp")
        );
        assert_eq!(summary(&p[..19]), None);
        assert_eq!(endpoints(&[]).3, "not IP");
    }
}
