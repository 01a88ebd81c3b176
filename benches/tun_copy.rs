//! The benchmark's floor: a bare TUN-to-TUN copy loop with no NAT, built from the same
//! pieces as tunnat (the same TUN opening in namespaces, the same mio loop, one packet per
//! read and write). Whatever tunnat costs above this is the price of its NAT work.
//!
//! With `--offload` it opens the TUNs as tunnat does by default (partial checksums, GSO
//! super-packets) and passes each packet's offload header through unchanged.
//!
//! `tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload]`; prints
//! `tun_copy: ready`.

use std::io;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tunnat::port::{netns, Tun};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let offload = a.get(5).map(String::as_str) == Some("--offload");
    if a.len() != 5 && !(a.len() == 6 && offload) {
        anyhow::bail!(
            "usage: tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload]"
        );
    }
    let tuns = [
        Tun::open(&a[1], Some(&netns::resolve(&a[2])), offload)?,
        Tun::open(&a[3], Some(&netns::resolve(&a[4])), offload)?,
    ];
    if tuns[0].offloads() != offload || tuns[1].offloads() != offload {
        anyhow::bail!("the kernel refused TUN offloads");
    }
    let mut poll = Poll::new()?;
    for (i, t) in tuns.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&t.as_raw_fd()), Token(i), Interest::READABLE)?;
    }
    eprintln!("tun_copy: ready");
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; 65536];
    let mut readable = [true, true];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            readable[ev.token().0] = true;
        }
        while readable.iter().any(|r| *r) {
            for i in 0..2 {
                if !readable[i] {
                    continue;
                }
                for _ in 0..64 {
                    match tuns[i].recv(&mut buf) {
                        Ok((n, Ok(off))) => {
                            let _ = tuns[1 - i].send(&buf[..n], &off);
                        }
                        Ok((_, Err(_))) => {} // IPv6 GSO
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            readable[i] = false;
                            break;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}
