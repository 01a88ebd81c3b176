//! A port of the router: a Linux TUN device opened inside a network namespace.
//!
//! The device is created (or, if it already exists, attached to) from a thread that has
//! temporarily entered the target namespace with `setns(2)`; the file descriptor keeps
//! the device in that namespace after the thread returns to its own. tunnat never sets
//! addresses or routes on the device: those belong to the hosts of that namespace. It
//! only sets the link up, as a cable plugged in would.

pub mod bridge;
pub mod netns;
pub mod pcap;
pub mod pcap_pair;
pub mod tracer;
pub mod uring;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};
use tun::AbstractDevice;

use crate::nat::Side;
use crate::wire::offload::{Offload, Unsupported, VNET_HDR_LEN};

/// Where on a port an [`Observer`] saw a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// Read from the port, before translation (`PRE IN:`).
    Read,
    /// Written to the port, after translation (`POST OUT:`).
    Written,
}

/// An observer of the packets crossing the ports: the tracer and the pcap writer. The
/// driver calls each one as it reads and writes a TUN; nothing else knows of them.
pub trait Observer {
    /// `port` is the TUN's name, `side` which port it is.
    fn packet(&mut self, crossing: Crossing, side: Side, port: &str, pkt: &[u8]);
    /// Everything written because of the packet last read has been written.
    fn end_of_packet(&mut self) {}
}

/// `TUNSETOFFLOAD`, `_IOW('T', 208, unsigned int)`, and its flags (linux/if_tun.h).
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// An open TUN device in non-blocking mode.
pub struct Tun {
    dev: tun::Device,
    name: String,
    /// Every read and write carries a `virtio_net_hdr` ([`crate::wire::offload`]).
    vnet: bool,
    /// The device takes UDP segmentation (USO) too.
    uso: bool,
}

/// Which offloads a TUN was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offloads {
    None,
    /// Partial checksums and TCP segmentation (TSO).
    Tso,
    /// Also UDP segmentation (USO, Linux 6.2 and later).
    TsoUso,
}

impl Tun {
    /// Opens (or creates) TUN `name` inside the namespace at `netns` (the caller's own
    /// namespace if `None`) and sets it up. With `offload`, asks the kernel for partial
    /// checksums and TCP (and, where it has them, UDP) segmentation offload, so reads and
    /// writes carry up to 64 KB; if the kernel refuses, the device is opened without.
    pub fn open(name: &str, netns: Option<&Path>, offload: bool) -> Result<Tun> {
        if name.is_empty()
            || name.len() > 15
            || name.contains('/')
            || name.contains(char::is_whitespace)
        {
            anyhow::bail!(
                "'{name}' is not a valid interface name (1-15 characters, no '/' or spaces)"
            );
        }
        let open = |vnet: bool| -> Result<tun::Device> {
            let mut cfg = tun::Configuration::default();
            cfg.tun_name(name);
            cfg.platform_config(|p| {
                p.ensure_root_privileges(false);
                p.vnet_hdr(vnet);
            });
            let mut dev = tun::create(&cfg).map_err(|e| match e {
                tun::Error::Io(io) if io.kind() == io::ErrorKind::PermissionDenied => anyhow::anyhow!(
                    "no permission to open /dev/net/tun or attach to TUN '{name}' ({io}); run as root, \
                     inside 'unshare -rn', or make the device persistent and owned by this user"
                ),
                other => anyhow::anyhow!("cannot open TUN '{name}': {other}"),
            })?;
            if let Err(e) = dev.enabled(true) {
                log::warn!("could not set TUN '{name}' up ({e}); set it up from its namespace");
            }
            Ok(dev)
        };
        let within = |vnet: bool| match netns {
            Some(path) => netns::within(path, || open(vnet)),
            None => open(vnet),
        };
        let mut dev = within(offload)?;
        let (mut vnet, mut uso) = (false, false);
        if offload {
            match set_offload(dev.as_raw_fd()) {
                Ok(o) => (vnet, uso) = (true, o == Offloads::TsoUso),
                Err(e) => {
                    log::warn!("TUN '{name}': no offloads ({e}); one packet per read and write");
                    drop(dev);
                    dev = within(false)?;
                }
            }
        }
        dev.set_nonblock()
            .with_context(|| format!("setting TUN '{name}' non-blocking"))?;
        Ok(Tun {
            dev,
            name: name.to_string(),
            vnet,
            uso,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes the device persistent (TUNSETPERSIST): it stays, with its namespace's
    /// addresses and routes, when tunnat closes it, until `ip link del`.
    pub fn make_persistent(&mut self) -> Result<()> {
        self.dev
            .persist()
            .map_err(|e| anyhow::anyhow!("making TUN '{}' persistent: {e}", self.name))
    }

    /// Is there a network device `name` in the namespace at `netns` now?
    pub fn exists(name: &str, netns: Option<&Path>) -> Result<bool> {
        let name = std::ffi::CString::new(name).context("interface name")?;
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let look = || Ok(unsafe { libc::if_nametoindex(name.as_ptr()) } != 0);
        match netns {
            Some(path) => netns::within(path, look),
            None => look(),
        }
    }

    /// Whether reads and writes carry offload headers.
    pub fn offloads(&self) -> bool {
        self.vnet
    }

    /// Whether the device takes UDP GSO super-packets (Linux 6.2 and later).
    pub fn udp_segmentation(&self) -> bool {
        self.uso
    }

    /// Reads one packet into `buf` and what the kernel says of it; `WouldBlock` when none
    /// is waiting. A packet with offloads tunnat cannot handle (IPv6 GSO) is reported as
    /// `Err(Unsupported)` inside `Ok`, so the caller can count it.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Result<Offload, Unsupported>)> {
        if !self.vnet {
            return Ok((self.dev.recv(buf)?, Ok(Offload::NONE)));
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point to live, writable buffers of the given lengths.
        let n = unsafe { libc::readv(self.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).saturating_sub(VNET_HDR_LEN);
        Ok((n, Offload::parse(&hdr)))
    }

    /// Writes one packet, telling the kernel `off` about it (ignored without offloads).
    pub fn send(&self, pkt: &[u8], off: &Offload) -> io::Result<usize> {
        if !self.vnet {
            return self.dev.send(pkt);
        }
        let hdr = off.emit();
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: pkt.as_ptr() as *mut libc::c_void,
                iov_len: pkt.len(),
            },
        ];
        // SAFETY: both iovecs point to live buffers of the given lengths; writev only
        // reads them.
        let n = unsafe { libc::writev(self.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(VNET_HDR_LEN))
    }
}

/// Asks for partial checksums, TSO and, if the kernel has it, USO on `dev`.
/// Asks the kernel for the offloads tunnat uses on the TUN (queue) open at `fd`: partial
/// checksums, TSO and, where it has them, USO. Which it got.
pub fn set_offload(fd: RawFd) -> io::Result<Offloads> {
    let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    for (flags, what) in [
        (tso | TUN_F_USO4 | TUN_F_USO6, Offloads::TsoUso),
        (tso, Offloads::Tso),
    ] {
        // SAFETY: TUNSETOFFLOAD takes its flags by value; the descriptor is open.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, flags as libc::c_ulong) } == 0 {
            return Ok(what);
        }
    }
    Err(io::Error::last_os_error())
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}
