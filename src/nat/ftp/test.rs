//! The FTP helper on real segments through the NAT core, and its text rewriting.

use super::*;
use crate::nat::{NatConfig, Side, Verdict};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 101);
const SERVER_IN: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 73);
const OUT: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 186);
const SERVER: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);

use crate::fuzz::tcp_segment as seg;

fn payload(p: &[u8]) -> &[u8] {
    let ihl = (p[0] & 0xf) as usize * 4;
    let doff = (p[ihl + 12] >> 4) as usize * 4;
    &p[ihl + doff..]
}

fn seq_of(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[24..28].try_into().unwrap())
}

fn ack_of(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[28..32].try_into().unwrap())
}

fn valid(p: &[u8]) {
    use crate::wire::ipv4::{Check, Ipv4};
    let v = Ipv4::new_checked(p, Check::Full).expect("valid IPv4");
    let s = checksum::pseudo_header_sum(v.src(), v.dst(), 6, v.payload().len() as u16);
    assert_eq!(
        checksum::fold(checksum::sum(v.payload(), s)),
        0xffff,
        "TCP checksum"
    );
}

fn nat() -> Nat {
    let mut cfg = NatConfig::lab();
    cfg.alg_ftp = true;
    cfg.dnat.push("tcp:2121=192.168.122.73:21".parse().unwrap());
    Nat::new(cfg)
}

/// Sends `p` from `side` and returns what leaves (the packet, whether rewritten or not).
fn through(n: &mut Nat, side: Side, mut p: Vec<u8>) -> Option<Vec<u8>> {
    match n.process(side, &mut p, Instant::ZERO) {
        Verdict::Forward { len } => Some(p[..len].to_vec()),
        Verdict::Emit { .. } => n.poll_transmit().map(|t| t.packet),
        _ => None,
    }
}

#[test]
fn lines_parse_and_rewrite() {
    let a = Ipv4Addr::new(192, 168, 122, 101);
    assert_eq!(
        parse(b"PORT 192,168,122,101,19,137", Role::Client),
        Some(Named::Port(a, 5001))
    );
    assert_eq!(
        parse(b"port 192,168,122,101,19,137", Role::Client),
        Some(Named::Port(a, 5001))
    );
    assert_eq!(
        parse(b"EPRT |1|192.168.122.101|5001|", Role::Client),
        Some(Named::Eprt(a, 5001))
    );
    assert_eq!(parse(b"EPRT |2|fd00::1|5001|", Role::Client), None);
    assert_eq!(
        parse(
            b"227 Entering Passive Mode (192,168,122,101,19,137).",
            Role::Server
        ),
        Some(Named::Pasv(a, 5001))
    );
    assert_eq!(
        parse(
            b"229 Entering Extended Passive Mode (|||5001|)",
            Role::Server
        ),
        Some(Named::Epsv(5001))
    );
    for bad in [
        &b"PORT 1,2,3"[..],
        b"PORT 300,1,1,1,1,1",
        b"PORT ",
        b"EPRT |1|x|y|",
        b"227 no numbers",
    ] {
        assert_eq!(
            parse(bad, Role::Client).or(parse(bad, Role::Server)),
            None,
            "{bad:?}"
        );
    }
    assert_eq!(parse(b"PORT 192,168,122,101,19,137", Role::Server), None);
    let out = Ipv4Addr::new(172, 16, 1, 186);
    assert_eq!(
        rewrite(
            b"PORT 192,168,122,101,19,137",
            Named::Port(a, 5001),
            out,
            40000,
            b"\r\n"
        ),
        b"PORT 172,16,1,186,156,64\r\n"
    );
    assert_eq!(
        rewrite(
            b"227 Entering Passive Mode (192,168,122,73,19,137).",
            Named::Pasv(a, 5001),
            out,
            40000,
            b"\r\n"
        ),
        b"227 Entering Passive Mode (172,16,1,186,156,64).\r\n"
    );
    assert_eq!(
        rewrite(
            b"229 Entering Extended Passive Mode (|||5001|)",
            Named::Epsv(5001),
            out,
            40000,
            b"\r\n"
        ),
        b"229 Entering Extended Passive Mode (|||40000|)\r\n"
    );
}

#[test]
fn seqadj_before_and_after_the_change() {
    let mut a = SeqAdj::default();
    a.record(1000, -3);
    assert_eq!((a.seq_offset(1000), a.seq_offset(1001)), (0, -3));
    assert_eq!(a.unadjust(1030 - 3), 1030);
    a.record(2000, 5);
    assert_eq!((a.seq_offset(1500), a.seq_offset(2001)), (-3, 2));
    assert_eq!(a.unadjust(2100 + 2), 2100);
}

#[test]
fn active_ftp_from_inside_port_rewritten_data_connection_admitted_acks_fixed() {
    let mut n = nat();
    let c = (CLIENT, 40000);
    let s = (SERVER, 21);
    through(&mut n, Side::Inside, seg(c, s, 0x02, 100, 0, b"")).unwrap();
    let ext = (OUT, 40000);
    through(&mut n, Side::Outside, seg(s, ext, 0x12, 500, 101, b"")).unwrap();
    // "PORT 192,168,122,101,19,137" (28 bytes + CRLF) becomes the outside address's line.
    let line = b"PORT 192,168,122,101,19,137\r\n";
    let out = through(&mut n, Side::Inside, seg(c, s, 0x18, 101, 501, line)).unwrap();
    valid(&out);
    assert_eq!(payload(&out), b"PORT 172,16,1,186,19,137\r\n");
    assert_eq!(seq_of(&out), 101);
    let delta = line.len() as u32 - payload(&out).len() as u32; // 3 shorter
                                                                // The server acknowledges the rewritten line: the client sees its own numbers.
    let ack = through(
        &mut n,
        Side::Outside,
        seg(s, ext, 0x10, 501, 101 + line.len() as u32 - delta, b""),
    )
    .unwrap();
    valid(&ack);
    assert_eq!(ack_of(&ack), 101 + line.len() as u32);
    // The next command's sequence number moves by the difference.
    let next = through(
        &mut n,
        Side::Inside,
        seg(c, s, 0x18, 101 + line.len() as u32, 501, b"LIST\r\n"),
    )
    .unwrap();
    valid(&next);
    assert_eq!(seq_of(&next), 101 + line.len() as u32 - delta);
    // The server's data connection, from port 20, reaches the client's port 5001; from
    // another address it does not.
    let mut other = seg(
        (Ipv4Addr::new(172, 16, 1, 2), 20),
        (OUT, 5001),
        0x02,
        9000,
        0,
        b"",
    );
    assert!(!matches!(
        n.process(Side::Outside, &mut other, Instant::ZERO),
        Verdict::Forward { .. }
    ));
    let data = through(
        &mut n,
        Side::Outside,
        seg((SERVER, 20), (OUT, 5001), 0x02, 9000, 0, b""),
    )
    .unwrap();
    assert_eq!(&data[16..20], &CLIENT.octets());
    assert_eq!(u16::from_be_bytes([data[22], data[23]]), 5001);
    assert_eq!(
        (n.ftp_stats().rewritten, n.ftp_stats().data_connections),
        (1, 1)
    );
}

#[test]
fn a_retransmitted_port_line_is_rewritten_alike_and_counted_once() {
    let mut n = nat();
    let c = (CLIENT, 40004);
    let s = (SERVER, 21);
    through(&mut n, Side::Inside, seg(c, s, 0x02, 100, 0, b"")).unwrap();
    let line = b"PORT 192,168,122,101,19,137\r\n";
    let first = through(&mut n, Side::Inside, seg(c, s, 0x18, 101, 0, line)).unwrap();
    let again = through(&mut n, Side::Inside, seg(c, s, 0x18, 101, 0, line)).unwrap();
    assert_eq!(payload(&first), payload(&again));
    assert_eq!(seq_of(&again), 101);
    let next = through(
        &mut n,
        Side::Inside,
        seg(c, s, 0x18, 101 + line.len() as u32, 0, b"LIST\r\n"),
    )
    .unwrap();
    let delta = line.len() as u32 - payload(&first).len() as u32;
    assert_eq!(
        seq_of(&next),
        101 + line.len() as u32 - delta,
        "the difference counted once"
    );
    assert_eq!(n.ftp_expectations(), 1);
}

#[test]
fn a_port_command_split_across_segments_is_sent_whole() {
    let mut n = nat();
    let c = (CLIENT, 40001);
    let s = (SERVER, 21);
    through(&mut n, Side::Inside, seg(c, s, 0x02, 100, 0, b"")).unwrap();
    through(
        &mut n,
        Side::Outside,
        seg(s, (OUT, 40001), 0x12, 500, 101, b""),
    )
    .unwrap();
    let mut first = seg(c, s, 0x18, 101, 501, b"PORT 192,168,1");
    assert_eq!(
        n.process(Side::Inside, &mut first, Instant::ZERO),
        Verdict::Held
    );
    let out = through(
        &mut n,
        Side::Inside,
        seg(c, s, 0x18, 115, 501, b"22,101,19,137\r\n"),
    )
    .unwrap();
    valid(&out);
    assert_eq!(payload(&out), b"PORT 172,16,1,186,19,137\r\n");
    assert_eq!(
        seq_of(&out),
        101,
        "sent from the held part's sequence number"
    );
    assert_eq!(n.ftp_stats().held_split, 1);
}

#[test]
fn passive_ftp_to_a_server_behind_a_port_forward() {
    let mut n = nat();
    let c = (SERVER, 50000);
    through(
        &mut n,
        Side::Outside,
        seg(c, (OUT, 2121), 0x02, 100, 0, b""),
    )
    .unwrap();
    through(
        &mut n,
        Side::Inside,
        seg((SERVER_IN, 21), c, 0x12, 500, 101, b""),
    )
    .unwrap();
    let reply = b"227 Entering Passive Mode (192,168,122,73,23,113).\r\n";
    let out = through(
        &mut n,
        Side::Inside,
        seg((SERVER_IN, 21), c, 0x18, 501, 101, reply),
    )
    .unwrap();
    valid(&out);
    let text = String::from_utf8(payload(&out).to_vec()).unwrap();
    assert!(
        text.starts_with("227 Entering Passive Mode (172,16,1,186,"),
        "{text}"
    );
    // The client's data connection to the port named reaches the server's 6001.
    let nums: Vec<u16> = text[text.find('(').unwrap() + 1..text.find(')').unwrap()]
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let port = nums[4] << 8 | nums[5];
    let data = through(
        &mut n,
        Side::Outside,
        seg((SERVER, 50001), (OUT, port), 0x02, 7000, 0, b""),
    )
    .unwrap();
    assert_eq!(
        (&data[16..20], u16::from_be_bytes([data[22], data[23]])),
        (&SERVER_IN.octets()[..], 6001)
    );
}

#[test]
fn a_third_party_port_opens_nothing() {
    let mut n = nat();
    let c = (CLIENT, 40002);
    let s = (SERVER, 21);
    through(&mut n, Side::Inside, seg(c, s, 0x02, 100, 0, b"")).unwrap();
    let line = b"PORT 192,168,122,73,19,137\r\n";
    let out = through(&mut n, Side::Inside, seg(c, s, 0x18, 101, 0, line)).unwrap();
    assert_eq!(payload(&out), line, "left as it is");
    assert_eq!((n.ftp_stats().third_party, n.ftp_stats().expected), (1, 0));
}

#[test]
fn an_unused_expectation_expires_and_frees_its_port() {
    let mut n = nat();
    let c = (CLIENT, 40003);
    let s = (SERVER, 21);
    through(&mut n, Side::Inside, seg(c, s, 0x02, 100, 0, b"")).unwrap();
    through(
        &mut n,
        Side::Inside,
        seg(c, s, 0x18, 101, 0, b"PORT 192,168,122,101,19,137\r\n"),
    )
    .unwrap();
    assert_eq!(
        n.poll_timeout()
            .map(|t| t <= Instant::ZERO + EXPECT_TIMEOUT),
        Some(true)
    );
    n.expire_ftp(Instant::ZERO + EXPECT_TIMEOUT);
    assert_eq!(n.ftp_stats().expired, 1);
    let mut late = seg((SERVER, 20), (OUT, 5001), 0x02, 9000, 0, b"");
    assert!(!matches!(
        n.process(Side::Outside, &mut late, Instant::ZERO + EXPECT_TIMEOUT),
        Verdict::Forward { .. }
    ));
}
