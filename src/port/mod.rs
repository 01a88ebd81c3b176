//! A port of the router: a Linux TUN device opened inside a network namespace.
//!
//! The device is created (or, if it already exists, attached to) from a thread that has
//! temporarily entered the target namespace with `setns(2)`; the file descriptor keeps
//! the device in that namespace after the thread returns to its own. tunnat never sets
//! addresses or routes on the device: those belong to the hosts of that namespace. It
//! only sets the link up, as a cable plugged in would.

// The data path: no unwrap, expect or panic outside tests (malformed input is counted and
// dropped, never a crash); `scripts/fuzz.sh` and the netns corpus test hold it to that.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod bridge;
pub mod netns;
pub mod tap;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};
use tun::AbstractDevice;

/// An open TUN device in non-blocking mode.
pub struct Tun {
    dev: tun::Device,
    name: String,
}

impl Tun {
    /// Opens (or creates) TUN `name` inside the namespace at `netns` (the caller's own
    /// namespace if `None`) and sets it up.
    pub fn open(name: &str, netns: Option<&Path>) -> Result<Tun> {
        if name.is_empty()
            || name.len() > 15
            || name.contains('/')
            || name.contains(char::is_whitespace)
        {
            anyhow::bail!(
                "'{name}' is not a valid interface name (1-15 characters, no '/' or spaces)"
            );
        }
        let open = || -> Result<tun::Device> {
            let mut cfg = tun::Configuration::default();
            cfg.tun_name(name);
            cfg.platform_config(|p| {
                p.ensure_root_privileges(false);
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
        let dev = match netns {
            Some(path) => netns::within(path, open)?,
            None => open()?,
        };
        dev.set_nonblock()
            .with_context(|| format!("setting TUN '{name}' non-blocking"))?;
        Ok(Tun {
            dev,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf)
    }

    /// Writes one packet.
    pub fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        self.dev.send(pkt)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}
