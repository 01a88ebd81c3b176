//! A pcap writer: every packet crossing a port goes to `DIR/inside.pcap` or
//! `DIR/outside.pcap` (LINKTYPE_RAW), readable by tcpdump and Wireshark. An [`Observer`]
//! of the ports, in the manner of smoltcp's `phy::PcapWriter`. Everything read from and
//! written to the TUN is written, whatever its protocol: IPv6 packets the namespaces'
//! kernels send (router solicitations) appear though tunnat drops them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use super::{Crossing, Observer};
use crate::nat::Side;

/// Writes every packet crossing a port to `DIR/inside.pcap` or `DIR/outside.pcap`.
pub struct PcapCapture {
    writers: [PcapWriter<File>; 2],
}

impl PcapCapture {
    /// Creates `DIR/inside.pcap` and `DIR/outside.pcap`, mode 0600. A capture left by an
    /// earlier run is replaced; anything else at those names (a symbolic link, which
    /// would make tunnat write through it, a directory, a device) is refused. The files
    /// are opened with `O_EXCL | O_NOFOLLOW`, so nothing swapped in meanwhile is followed.
    pub fn create(dir: &Path) -> Result<PcapCapture> {
        let open = |name: &str| -> Result<PcapWriter<File>> {
            let f = create_capture_file(dir, name, "--pcap-dir")?;
            let path = dir.join(name);
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

/// Creates capture file `DIR/name`, mode 0600 (`DIR` made if need be). A capture left by
/// an earlier run is replaced; anything else at that name (a symbolic link, which would
/// make tunnat write through it, a directory, a device) is refused. The file is opened
/// with `O_EXCL | O_NOFOLLOW`, so nothing swapped in meanwhile is followed. `flag` names
/// the option in messages.
pub fn create_capture_file(dir: &Path, name: &str, flag: &str) -> Result<File> {
    std::fs::create_dir_all(dir).with_context(|| format!("{flag} {}", dir.display()))?;
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => bail!(
            "{flag}: {} is a symbolic link; refusing to write through it",
            path.display()
        ),
        Ok(m) if !m.is_file() => bail!(
            "{flag}: {} exists and is not a regular file",
            path.display()
        ),
        Ok(_) => {
            std::fs::remove_file(&path).with_context(|| format!("replacing {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))
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
