//! Running a closure inside another network namespace (`setns(2)` with `CLONE_NEWNET`).
//!
//! Only the calling thread changes namespace, and it is moved back before `within`
//! returns, whether the closure succeeded or not. Sockets and TUN devices created
//! meanwhile stay in the namespace they were created in.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `NAME` means `/run/netns/NAME` (as `ip netns` names it); anything with a `/` is a path.
pub fn resolve(spec: &str) -> PathBuf {
    if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new("/run/netns").join(spec)
    }
}

fn enter(ns: &File, what: &Path) -> Result<()> {
    // SAFETY: setns takes a valid open file descriptor and a flag; no memory is shared.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot enter network namespace {}: {e}", what.display());
    }
    Ok(())
}

/// Runs `f` with the current thread inside the network namespace at `path`.
pub fn within<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let target =
        File::open(path).with_context(|| format!("network namespace {}", path.display()))?;
    let home_path = Path::new("/proc/thread-self/ns/net");
    let home = File::open(home_path).context("opening this thread's own network namespace")?;
    enter(&target, path)?;
    let result = f();
    enter(&home, home_path).context("returning to the original network namespace")?;
    result
}
