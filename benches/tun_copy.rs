//! The benchmark's floor: a bare TUN-to-TUN copy loop with no NAT, built from the same
//! pieces as tunnat (the same TUN opening in namespaces, the same mio loop, one packet per
//! read and write). Whatever tunnat costs above this is the price of its NAT work.
//!
//! With `--offload` it opens the TUNs as tunnat does by default (partial checksums, GSO
//! super-packets) and passes each packet's offload header through unchanged.
//!
//! With `--busy-poll USECS` (a lever of issue 18, tried here first): when both TUNs are
//! empty it keeps trying to read for up to USECS before sleeping in epoll, as NAPI's busy
//! polling does, so a packet arriving soon after costs no wakeup.
//!
//! `tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload] [--busy-poll USECS]`;
//! prints `tun_copy: ready`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tunnat::port::{netns, Tun};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: tun_copy INSIDE_TUN INSIDE_NETNS OUTSIDE_TUN OUTSIDE_NETNS [--offload] [--busy-poll USECS]";
    if a.len() < 5 {
        anyhow::bail!(usage);
    }
    let (mut offload, mut busy) = (false, Duration::ZERO);
    let mut flags = a[5..].iter();
    while let Some(f) = flags.next() {
        match f.as_str() {
            "--offload" => offload = true,
            "--busy-poll" => {
                let us: u64 = flags
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!(usage))?;
                busy = Duration::from_micros(us);
            }
            _ => anyhow::bail!(usage),
        }
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
        loop {
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
            // Both empty: spin on them a while before sleeping (--busy-poll).
            if busy.is_zero() || !spin(&tuns, &mut buf, busy, &mut readable)? {
                break;
            }
        }
    }
}

/// Tries both TUNs until one has a packet (forwarded, and its TUN marked readable for
/// the loop to drain) or `busy` has passed; returns whether a packet came.
fn spin(
    tuns: &[Tun; 2],
    buf: &mut [u8],
    busy: Duration,
    readable: &mut [bool; 2],
) -> io::Result<bool> {
    let until = Instant::now() + busy;
    while Instant::now() < until {
        for i in 0..2 {
            match tuns[i].recv(buf) {
                Ok((n, Ok(off))) => {
                    let _ = tuns[1 - i].send(&buf[..n], &off);
                    readable[i] = true;
                    return Ok(true);
                }
                Ok((_, Err(_))) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        std::hint::spin_loop();
    }
    Ok(false)
}
