//! A tracer: one line per packet crossing a port, in the format of the Linux kernel's
//! `LOG` target (`nf_log_syslog`), prefixed `PRE IN: ` as read and `POST OUT: ` as
//! written, so a trace can be put beside the kernel's for the same experiment. An
//! [`Observer`] of the ports, in the manner of smoltcp's `phy::Tracer`: the NAT core
//! knows nothing of it.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::{Crossing, Observer};
use crate::nat::Side;
use crate::wire::ipv4::{Check, Ipv4, FLAG_DF, FLAG_MF};
use crate::wire::ipv6::Ipv6;
use crate::wire::transport::Protocol;

/// Which packets a trace shows: `tcp`, `udp`, `icmp`, or `tcp:PORT` / `udp:PORT`
/// (either source or destination port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceFilter {
    pub protocol: Protocol,
    pub port: Option<u16>,
}

impl FromStr for TraceFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<TraceFilter, String> {
        let (p, port) = match s.split_once(':') {
            Some((p, port)) => (p, Some(port)),
            None => (s, None),
        };
        let protocol = match p {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => {
                return Err(format!(
                    "'{s}': expected tcp, udp, icmp, tcp:PORT or udp:PORT"
                ))
            }
        };
        let port = match port {
            None => None,
            Some(_) if protocol == Protocol::Icmp => {
                return Err(format!("'{s}': ICMP has no ports"))
            }
            Some(x) => Some(
                x.parse()
                    .map_err(|_| format!("'{s}': '{x}' is not a port"))?,
            ),
        };
        Ok(TraceFilter { protocol, port })
    }
}

impl TraceFilter {
    fn matches(&self, pkt: &[u8]) -> bool {
        let (protocol, start, end) = if pkt.first().is_some_and(|b| b >> 4 == 6) {
            let Ok(ip) = Ipv6::new_quoted(pkt) else {
                return false;
            };
            let p = match ip.protocol() {
                58 => Protocol::Icmp.number(),
                p => p,
            };
            (p, ip.l4_offset(), ip.total_len())
        } else {
            let Ok(ip) = Ipv4::new_checked(pkt, Check::Quoted) else {
                return false;
            };
            (ip.protocol(), ip.header_len(), ip.total_len())
        };
        let l4 = &pkt[start..end];
        if protocol != self.protocol.number() {
            return false;
        }
        match self.port {
            None => true,
            Some(port) => {
                l4.len() >= 4
                    && (u16::from_be_bytes([l4[0], l4[1]]) == port
                        || u16::from_be_bytes([l4[2], l4[3]]) == port)
            }
        }
    }
}

/// Prints packets as the kernel's LOG target does.
pub struct Tracer<W: Write> {
    out: W,
    filters: Vec<TraceFilter>,
    line: String,
}

impl<W: Write> Tracer<W> {
    pub fn new(out: W, filters: Vec<TraceFilter>) -> Tracer<W> {
        Tracer {
            out,
            filters,
            line: String::with_capacity(256),
        }
    }
}

impl<W: Write> Observer for Tracer<W> {
    fn packet(&mut self, crossing: Crossing, _side: Side, port: &str, pkt: &[u8]) {
        if !self.filters.is_empty() && !self.filters.iter().any(|f| f.matches(pkt)) {
            return;
        }
        self.line.clear();
        let (prefix, inp, outp) = match crossing {
            Crossing::Read => ("PRE IN: ", port, ""),
            Crossing::Written => ("POST OUT: ", "", port),
        };
        let _ = write!(self.line, "{prefix}IN={inp} OUT={outp} ");
        log_format(&mut self.line, pkt, false);
        self.line.push('\n');
        let _ = self.out.write_all(self.line.as_bytes());
    }
}

/// Appends the kernel LOG target's description of packet `pkt` to `s`
/// (`nf_log_dump_ipv4_packet` or, for IPv6, `dump_ipv6_packet`, with default flags).
/// `quoted`: inside an ICMP error.
pub fn log_format(s: &mut String, pkt: &[u8], quoted: bool) {
    if pkt.len() >= 40 && pkt[0] >> 4 == 6 {
        return log_format_v6(s, pkt, quoted);
    }
    let ip = match Ipv4::new_checked(pkt, if quoted { Check::Quoted } else { Check::Full }) {
        Ok(ip) => ip,
        Err(_) if pkt.len() >= 20 && pkt[0] >> 4 == 4 => {
            let _ = write!(s, "TRUNCATED [{} bytes] ", pkt.len());
            return;
        }
        Err(_) => {
            let _ = write!(s, "NOT-IPV4 LEN={} ", pkt.len());
            return;
        }
    };
    let f = ip.fields();
    let total = u16::from_be_bytes([pkt[2], pkt[3]]);
    let _ = write!(
        s,
        "SRC={} DST={} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
        f.src,
        f.dst,
        total,
        f.tos & 0x1e,
        f.tos & 0xe0,
        f.ttl,
        f.ident
    );
    if f.flags & 0b100 != 0 {
        s.push_str("CE ");
    }
    if f.flags & FLAG_DF != 0 {
        s.push_str("DF ");
    }
    if f.flags & FLAG_MF != 0 {
        s.push_str("MF ");
    }
    if f.frag_offset != 0 {
        let _ = write!(s, "FRAG:{} ", f.frag_offset);
        // Later fragments carry no transport header; the kernel prints only the protocol.
        let _ = write!(s, "PROTO={} ", proto_name(f.protocol));
        return;
    }
    let l4 = ip.payload();
    match Protocol::from_number(f.protocol) {
        Some(Protocol::Tcp) => log_tcp(s, l4),
        Some(Protocol::Udp) => log_udp(s, l4),
        Some(Protocol::Icmp) => {
            s.push_str("PROTO=ICMP ");
            if l4.len() < 4 {
                let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
                return;
            }
            let (t, c) = (l4[0], l4[1]);
            let _ = write!(s, "TYPE={t} CODE={c} ");
            if l4.len() < 8 {
                let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
                return;
            }
            let w = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
            match t {
                0 | 8 => {
                    let _ = write!(s, "ID={} SEQ={} ", w(4), w(6));
                }
                12 => {
                    let _ = write!(s, "PARAMETER={} ", l4[4]);
                }
                5 => {
                    let _ = write!(s, "GATEWAY={} ", Ipv4Addr::new(l4[4], l4[5], l4[6], l4[7]));
                }
                3 | 4 | 11 if !quoted => {
                    s.push('[');
                    log_format(s, &l4[8..], true);
                    s.push_str("] ");
                    if t == 3 && c == 4 {
                        let _ = write!(s, "MTU={} ", w(6));
                    }
                }
                _ => {}
            }
        }
        None => {
            let _ = write!(s, "PROTO={} ", f.protocol);
        }
    }
}

/// The IPv6 line, as `ip6tables -j LOG` writes it: `LEN= TC= HOPLIMIT= FLOWLBL=`, a
/// fragment header's offset, then the transport header as for IPv4 (ICMPv6 as
/// `PROTO=ICMPv6`).
fn log_format_v6(s: &mut String, pkt: &[u8], quoted: bool) {
    let ip = if quoted {
        Ipv6::new_quoted(pkt)
    } else {
        Ipv6::new_checked(pkt)
    };
    let ip = match ip {
        Ok(ip) => ip,
        Err(e) => {
            let _ = write!(s, "SRC=? DST=? LEN={} ({e}) ", pkt.len());
            return;
        }
    };
    let _ = write!(
        s,
        "SRC={} DST={} LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
        ip.src(),
        ip.dst(),
        40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
        ip.traffic_class(),
        ip.hop_limit(),
        ip.flow_label()
    );
    if let Some(f) = ip.fragment() {
        let _ = write!(s, "FRAG:{} ", f.offset * 8);
        if f.more {
            s.push_str("INCOMPLETE ");
        }
        let _ = write!(s, "ID:{:08x} ", f.ident);
        if f.offset != 0 {
            let _ = write!(s, "PROTO={} ", ip.protocol());
            return;
        }
    }
    let l4 = ip.payload();
    match ip.protocol() {
        6 => log_tcp(s, l4),
        17 => log_udp(s, l4),
        58 => {
            s.push_str("PROTO=ICMPv6 ");
            if l4.len() < 8 {
                let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
                return;
            }
            let (t, c) = (l4[0], l4[1]);
            let _ = write!(s, "TYPE={t} CODE={c} ");
            let w = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
            match t {
                128 | 129 => {
                    let _ = write!(s, "ID={} SEQ={} ", w(4), w(6));
                }
                1..=4 if !quoted => {
                    if t == 4 {
                        let _ = write!(
                            s,
                            "POINTER={:08x} ",
                            u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])
                        );
                    }
                    s.push('[');
                    log_format(s, &l4[8..], true);
                    s.push_str("] ");
                    if t == 2 {
                        let _ = write!(
                            s,
                            "MTU={} ",
                            u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])
                        );
                    }
                }
                _ => {}
            }
        }
        p => {
            let _ = write!(s, "PROTO={p} ");
        }
    }
}

fn log_tcp(s: &mut String, l4: &[u8]) {
    s.push_str("PROTO=TCP ");
    if l4.len() < 20 {
        let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
        return;
    }
    let w = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let _ = write!(
        s,
        "SPT={} DPT={} WINDOW={} RES=0x{:02x} ",
        w(0),
        w(2),
        w(14),
        (l4[12] & 0x0f) << 2
    );
    let flags = l4[13];
    for (bit, name) in [
        (0x80, "CWR "),
        (0x40, "ECE "),
        (0x20, "URG "),
        (0x10, "ACK "),
        (0x08, "PSH "),
        (0x04, "RST "),
        (0x02, "SYN "),
        (0x01, "FIN "),
    ] {
        if flags & bit != 0 {
            s.push_str(name);
        }
    }
    let _ = write!(s, "URGP={} ", w(18));
}

fn log_udp(s: &mut String, l4: &[u8]) {
    s.push_str("PROTO=UDP ");
    if l4.len() < 8 {
        let _ = write!(s, "INCOMPLETE [{} bytes] ", l4.len());
        return;
    }
    let w = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let _ = write!(s, "SPT={} DPT={} LEN={} ", w(0), w(2), w(4));
}

fn proto_name(p: u8) -> String {
    match Protocol::from_number(p) {
        Some(pr) => pr.name().to_ascii_uppercase(),
        None => p.to_string(),
    }
}

/// A tracer on standard output.
pub fn stdout_tracer(filters: Vec<TraceFilter>) -> Tracer<io::LineWriter<io::Stdout>> {
    Tracer::new(io::LineWriter::new(io::stdout()), filters)
}

#[cfg(test)]
mod test {
    use super::*;

    // The SYN of the first seed scenario, as the kernel logged it:
    // IN=eth0 OUT= SRC=192.168.18.25 DST=192.168.18.58 LEN=60 TOS=0x00 PREC=0x00 TTL=63
    // ID=28721 DF PROTO=TCP SPT=50270 DPT=8888 WINDOW=14600 RES=0x00 SYN URGP=0
    fn seed_syn() -> Vec<u8> {
        let mut p = vec![0u8; 60];
        let (s, d) = (
            Ipv4Addr::new(192, 168, 18, 25),
            Ipv4Addr::new(192, 168, 18, 58),
        );
        crate::wire::ipv4::emit_header(&mut p, 0, 60, 28721, true, 63, 6, s, d);
        p[20..22].copy_from_slice(&50270u16.to_be_bytes());
        p[22..24].copy_from_slice(&8888u16.to_be_bytes());
        p[32] = 0xa0; // data offset 10 words (options follow)
        p[33] = 0x02; // SYN
        p[34..36].copy_from_slice(&14600u16.to_be_bytes());
        p
    }

    #[test]
    fn matches_the_kernel_line_of_the_seed_scenario() {
        let mut t = Tracer::new(Vec::new(), vec![]);
        t.packet(Crossing::Read, Side::Outside, "eth0", &seed_syn());
        assert_eq!(
            String::from_utf8(t.out).unwrap(),
            "PRE IN: IN=eth0 OUT= SRC=192.168.18.25 DST=192.168.18.58 LEN=60 TOS=0x00 PREC=0x00 TTL=63 \
             ID=28721 DF PROTO=TCP SPT=50270 DPT=8888 WINDOW=14600 RES=0x00 SYN URGP=0 \n"
        );
    }

    #[test]
    fn icmp_errors_show_the_quoted_packet() {
        let mut inner = vec![0u8; 28];
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        crate::wire::ipv4::emit_header(&mut inner, 0, 28, 7, false, 1, 17, a, b);
        inner[20..22].copy_from_slice(&1000u16.to_be_bytes());
        inner[22..24].copy_from_slice(&33434u16.to_be_bytes());
        inner[24..26].copy_from_slice(&8u16.to_be_bytes());
        let ip = Ipv4::new_checked(&inner[..], Check::Full).unwrap();
        let mut err = Vec::new();
        crate::wire::icmp::build_error(&mut err, Ipv4Addr::new(10, 0, 0, 9), 11, 0, 0, &ip);
        let mut s = String::new();
        log_format(&mut s, &err, false);
        assert!(
            s.ends_with(
                "PROTO=ICMP TYPE=11 CODE=0 [SRC=10.0.0.1 DST=10.0.0.2 LEN=28 TOS=0x00 PREC=0x00 TTL=1 ID=7 \
                 PROTO=UDP SPT=1000 DPT=33434 LEN=8 ] "
            ),
            "{s}"
        );
        assert!(
            s.starts_with("SRC=10.0.0.9 DST=10.0.0.1 LEN=56 TOS=0x00 PREC=0xC0 TTL=64"),
            "{s}"
        );
    }

    #[test]
    fn filters_select_protocol_and_port() {
        let syn = seed_syn();
        let f: TraceFilter = "tcp:8888".parse().unwrap();
        assert!(f.matches(&syn));
        assert!(!"tcp:80".parse::<TraceFilter>().unwrap().matches(&syn));
        assert!(!"udp".parse::<TraceFilter>().unwrap().matches(&syn));
        assert!("icmp:1".parse::<TraceFilter>().is_err());
        let mut t = Tracer::new(Vec::new(), vec!["udp".parse().unwrap()]);
        t.packet(Crossing::Read, Side::Outside, "eth0", &syn);
        assert!(t.out.is_empty());
    }

    #[test]
    fn ipv6_lines_follow_ip6tables_log() {
        let src: std::net::Ipv6Addr = "fd00:122::101".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let mut p = vec![0u8; 48];
        crate::wire::icmpv6::emit_header(&mut p, 8, 17, 64, src, dst);
        p[1] = 0x0a; // flow label 0xa0000 ... low nibble of the first byte is TC's
        p[40..42].copy_from_slice(&40000u16.to_be_bytes());
        p[42..44].copy_from_slice(&53u16.to_be_bytes());
        p[44..46].copy_from_slice(&8u16.to_be_bytes());
        let mut s = String::new();
        log_format(&mut s, &p, false);
        assert_eq!(
            s,
            "SRC=fd00:122::101 DST=2001:db8:1::1 LEN=48 TC=0 HOPLIMIT=64 FLOWLBL=655360 \
             PROTO=UDP SPT=40000 DPT=53 LEN=8 "
        );
        // An ICMPv6 error shows its quote; the filter sees the protocol.
        let q = crate::wire::ipv6::Ipv6::new_checked(&p[..]).unwrap();
        let mut e = Vec::new();
        crate::wire::icmpv6::build_error(&mut e, "fd00:122::100".parse().unwrap(), 2, 0, 1280, &q);
        let mut s = String::new();
        log_format(&mut s, &e, false);
        assert!(
            s.contains("PROTO=ICMPv6 TYPE=2 CODE=0 [SRC=fd00:122::101"),
            "{s}"
        );
        assert!(s.ends_with("] MTU=1280 "), "{s}");
        assert!("udp:53".parse::<TraceFilter>().unwrap().matches(&p));
        assert!("icmp".parse::<TraceFilter>().unwrap().matches(&e));
    }

    #[test]
    fn garbage_is_described_not_panicked_on() {
        let mut s = String::new();
        log_format(&mut s, &[0x60, 0, 0], false);
        assert_eq!(s, "NOT-IPV4 LEN=3 ");
        let mut s = String::new();
        log_format(&mut s, &[0x60; 45], false);
        assert!(s.starts_with("SRC=? DST=? LEN=45 ("), "{s}");
    }
}
