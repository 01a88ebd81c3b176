//! Paired captures (`--pcap-pair DIR`): `DIR/inside.pcapng` and `DIR/outside.pcapng`, in
//! which every packet carries a comment (pcapng `opt_comment`, Wireshark's
//! `frame.comment`) tying the two sides of one translation together:
//!
//! ```text
//! inside  #3  "-> outside #3: src 192.168.122.101:40000 -> 172.16.1.186:40000;
//!              session tcp 192.168.122.101:40000 <-> 172.16.1.1:80 via 172.16.1.186:40000"
//! outside #3  "<- inside #3: src 192.168.122.101:40000 -> 172.16.1.186:40000; session ..."
//! ```
//!
//! A packet read and not written on is marked "not forwarded"; a packet the router made
//! itself with no packet just read behind it (a timer's) is marked so. The driver tells
//! the observer where the consequences of one read end ([`Observer::end_of_packet`]); the
//! read packet is held until then so that its comment can name them.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use super::pcap::create_capture_file;
use super::{Crossing, Observer};
use crate::nat::Side;
use crate::wire::summary::summary;

/// The endpoints of a packet, as far as a comment needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ends {
    proto: &'static str,
    src: String,
    dst: String,
}

/// The protocol (`icmp-error` for an ICMP message that is not an echo) and endpoints of
/// an IPv4 or IPv6 packet; `None` for anything else.
fn ends(p: &[u8]) -> Option<Ends> {
    let s = summary(p)?;
    Some(Ends {
        proto: if s.icmp_error {
            "icmp-error"
        } else {
            s.proto_name()
        },
        src: s.endpoint(s.src),
        dst: s.endpoint(s.dst),
    })
}

/// What changed between a packet read (`a`) and one written because of it (`b`), and the
/// session they belong to.
fn translation(from: Side, a: &Option<Ends>, to: Side, b: &Option<Ends>) -> String {
    let (Some(a), Some(b)) = (a, b) else {
        return "not IP".into();
    };
    if b.proto == "icmp-error" && a.proto != "icmp-error" {
        return format!("an ICMP error about it, to {}", b.dst);
    }
    if from == to && b.src == a.dst && b.dst == a.src {
        return "the router's own answer".into();
    }
    let mut s = String::new();
    if a.src != b.src {
        let _ = write!(s, "src {} -> {}; ", a.src, b.src);
    }
    if a.dst != b.dst {
        let _ = write!(s, "dst {} -> {}; ", a.dst, b.dst);
    }
    if s.is_empty() {
        s.push_str("not translated; ");
    }
    let session = match (from, to) {
        (Side::Inside, Side::Outside) => {
            format!("{} {} <-> {} via {}", a.proto, a.src, b.dst, b.src)
        }
        (Side::Outside, Side::Inside) => {
            format!("{} {} <-> {} via {}", a.proto, b.dst, a.src, a.dst)
        }
        (Side::Inside, Side::Inside) => format!("{} hairpinned", a.proto),
        (Side::Outside, Side::Outside) => format!("{} back out", a.proto),
    };
    let _ = write!(s, "session {session}");
    s
}

/// One packet waiting for its comment.
struct Held {
    side: Side,
    ts: Duration,
    data: Vec<u8>,
}

/// The paired-capture observer.
pub struct PcapPair {
    writers: [PcapNgWriter<File>; 2],
    /// Packets written to each file so far (Wireshark's frame numbers start at 1).
    frames: [u64; 2],
    /// The packet being processed, and what was written because of it.
    read: Option<Held>,
    written: Vec<Held>,
}

impl PcapPair {
    /// Creates `DIR/inside.pcapng` and `DIR/outside.pcapng` (as `--pcap-dir` does).
    pub fn create(dir: &Path) -> Result<PcapPair> {
        let open = |name: &str, port: &str| -> Result<PcapNgWriter<File>> {
            let f = create_capture_file(dir, name, "--pcap-pair")?;
            let mut w =
                PcapNgWriter::new(f).with_context(|| format!("writing {}", dir.display()))?;
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::RAW,
                snaplen: 65535,
                options: vec![
                    InterfaceDescriptionOption::IfName(port.to_string().into()),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            w.write_pcapng_block(idb)
                .with_context(|| format!("writing {name}"))?;
            Ok(w)
        };
        Ok(PcapPair {
            writers: [
                open("inside.pcapng", "inside")?,
                open("outside.pcapng", "outside")?,
            ],
            frames: [0, 0],
            read: None,
            written: Vec::new(),
        })
    }

    fn write(&mut self, p: &Held, comment: String) {
        let i = p.side.index();
        self.frames[i] += 1;
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: p.ts,
            original_len: p.data.len() as u32,
            data: p.data.as_slice().into(),
            options: vec![EnhancedPacketOption::Comment(comment.into())],
        };
        if let Err(e) = self.writers[i].write_pcapng_block(block) {
            log::warn!("pcap-pair: {e}");
        }
    }

    /// The frame number the next packet written to `side`'s file will have.
    fn next_frame(&self, side: Side) -> u64 {
        self.frames[side.index()] + 1
    }

    /// Writes the packet read and what came of it, each commented with the others.
    fn finish(&mut self) {
        let Some(read) = self.read.take() else {
            return;
        };
        let written = std::mem::take(&mut self.written);
        let ra = ends(&read.data);
        // Frame numbers: the read packet first in its file, then the written ones in order.
        let read_frame = self.next_frame(read.side);
        let mut frames = self.frames;
        frames[read.side.index()] += 1;
        let mut numbered = Vec::with_capacity(written.len());
        for w in &written {
            frames[w.side.index()] += 1;
            numbered.push(frames[w.side.index()]);
        }
        let mut comment = String::new();
        if written.is_empty() {
            comment.push_str("not forwarded: dropped, or for the router itself (tunnat stats)");
        }
        for (w, n) in written.iter().zip(&numbered) {
            let t = translation(read.side, &ra, w.side, &ends(&w.data));
            if !comment.is_empty() {
                comment.push_str(" | ");
            }
            let _ = write!(comment, "-> {} #{n}: {t}", w.side.name());
        }
        self.write(&read, comment);
        for w in written {
            let t = translation(read.side, &ra, w.side, &ends(&w.data));
            let c = format!("<- {} #{read_frame}: {t}", read.side.name());
            self.write(&w, c);
        }
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Observer for PcapPair {
    fn packet(&mut self, crossing: Crossing, side: Side, _port: &str, pkt: &[u8]) {
        let held = Held {
            side,
            ts: now(),
            data: pkt.to_vec(),
        };
        match crossing {
            Crossing::Read => {
                self.finish();
                self.read = Some(held);
            }
            Crossing::Written if self.read.is_some() => self.written.push(held),
            Crossing::Written => {
                let c = match ends(&held.data) {
                    Some(e) => format!(
                        "made by the router ({} {} -> {}), not in answer to a packet just read",
                        e.proto, e.src, e.dst
                    ),
                    None => "made by the router".into(),
                };
                self.write(&held, c);
            }
        }
    }

    fn end_of_packet(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sp.to_be_bytes());
        p.extend_from_slice(&dp.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    #[test]
    fn comments_name_the_other_side_and_the_session() {
        let a = ends(&udp([192, 168, 122, 101], 40000, [172, 16, 1, 1], 53));
        let b = ends(&udp([172, 16, 1, 186], 40001, [172, 16, 1, 1], 53));
        let t = translation(Side::Inside, &a, Side::Outside, &b);
        assert_eq!(
            t,
            "src 192.168.122.101:40000 -> 172.16.1.186:40001; session udp 192.168.122.101:40000 <-> 172.16.1.1:53 via 172.16.1.186:40001"
        );
        // The reply comes back.
        let c = ends(&udp([172, 16, 1, 1], 53, [172, 16, 1, 186], 40001));
        let d = ends(&udp([172, 16, 1, 1], 53, [192, 168, 122, 101], 40000));
        let t = translation(Side::Outside, &c, Side::Inside, &d);
        assert!(
            t.ends_with(
                "session udp 192.168.122.101:40000 <-> 172.16.1.1:53 via 172.16.1.186:40001"
            ),
            "{t}"
        );
        assert_eq!(ends(&[0x45, 0]), None);
        assert_eq!(ends(&[]), None);
    }

    #[test]
    fn a_pair_is_written_with_cross_references() {
        let dir = std::env::temp_dir().join(format!("tunnat-pcap-pair-{}", std::process::id()));
        let mut p = PcapPair::create(&dir).unwrap();
        let out = udp([192, 168, 122, 101], 40000, [172, 16, 1, 1], 53);
        let tr = udp([172, 16, 1, 186], 40000, [172, 16, 1, 1], 53);
        p.packet(Crossing::Read, Side::Inside, "nat-in", &out);
        p.packet(Crossing::Written, Side::Outside, "nat-out", &tr);
        p.end_of_packet();
        p.packet(Crossing::Read, Side::Outside, "nat-out", &tr); // nothing written: dropped
        p.end_of_packet();
        drop(p);
        let inside = std::fs::read(dir.join("inside.pcapng")).unwrap();
        let outside = std::fs::read(dir.join("outside.pcapng")).unwrap();
        let has = |f: &[u8], s: &str| f.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(has(
            &inside,
            "-> outside #1: src 192.168.122.101:40000 -> 172.16.1.186:40000"
        ));
        assert!(has(&outside, "<- inside #1: src 192.168.122.101:40000"));
        assert!(has(&outside, "not forwarded"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
