//! A pcap writer: every packet crossing a port goes to `DIR/inside.pcap` or
//! `DIR/outside.pcap` (LINKTYPE_RAW), readable by tcpdump and Wireshark. An [`Observer`]
//! of the ports, in the manner of smoltcp's `phy::PcapWriter`.

use std::fs::File;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use super::{Crossing, Observer};
use crate::nat::Side;

/// Writes every packet crossing a port to `DIR/inside.pcap` or `DIR/outside.pcap`.
pub struct PcapCapture {
    writers: [PcapWriter<File>; 2],
}

impl PcapCapture {
    pub fn create(dir: &Path) -> Result<PcapCapture> {
        std::fs::create_dir_all(dir).with_context(|| format!("--pcap-dir {}", dir.display()))?;
        let open = |name: &str| -> Result<PcapWriter<File>> {
            let path = dir.join(name);
            let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let header = PcapHeader {
                datalink: DataLink::RAW,
                snaplen: 65535,
                ..Default::default()
            };
            PcapWriter::with_header(f, header)
                .with_context(|| format!("writing {}", path.display()))
        };
        Ok(PcapCapture {
            writers: [open("inside.pcap")?, open("outside.pcap")?],
        })
    }
}

impl Observer for PcapCapture {
    fn packet(&mut self, _crossing: Crossing, side: Side, _port: &str, pkt: &[u8]) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let w = match side {
            Side::Inside => &mut self.writers[0],
            Side::Outside => &mut self.writers[1],
        };
        if let Err(e) = w.write_packet(&PcapPacket::new(ts, pkt.len() as u32, pkt)) {
            log::warn!("pcap: {e}");
        }
    }
}
