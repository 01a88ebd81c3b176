//! The driver's file access for `--state-file` ([`super::state`] is the format).
//!
//! The file carries port forwards, so it is trusted no more than the control socket:
//! * reading refuses a symbolic link, anything but a regular file, a file owned by
//!   another user than root or tunnat's, and one that others may write (as ssh's
//!   StrictModes does); it reads at most what a full table can take;
//! * writing is atomic: a new file (mode 0600, `O_EXCL | O_NOFOLLOW`) beside the
//!   target, synced, then renamed over it, and the directory synced, so a crash or a
//!   full disk leaves the old file or the new one, never half of one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::state::MAX_LINE;

/// Bytes believed of a state file per session the table may hold (a session line is
/// about 250).
const BYTES_PER_RECORD: u64 = 1024;

/// The directory the file lives in ("." for a bare name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks at start that the file can be written at stop: its directory exists.
pub fn check_dir(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    if !dir.is_dir() {
        bail!(
            "--state-file {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.file_name().is_none() {
        bail!("--state-file {}: not a file name", path.display());
    }
    Ok(())
}

/// The file's bytes, or `None` if there is no file at `path`. `max_sessions` bounds how
/// much is read.
pub fn read(path: &Path, max_sessions: usize) -> Result<Option<Vec<u8>>> {
    let named = || format!("--state-file {}", path.display());
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(named),
    };
    if meta.file_type().is_symlink() {
        bail!("{}: a symbolic link; refusing to follow it", named());
    }
    if !meta.is_file() {
        bail!("{}: not a regular file", named());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "{}: owned by uid {}, not by root or tunnat's uid {me}; a state file adds port forwards, so only they may write it",
            named(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{}: mode {:04o} lets others write it; a state file adds port forwards (chmod 600 it)",
            named(),
            meta.mode() & 0o7777
        );
    }
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(named)?;
    let limit = MAX_LINE as u64 + (max_sessions as u64 + 65536) * BYTES_PER_RECORD;
    let mut bytes = Vec::new();
    (&mut f)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(named)?;
    if bytes.len() as u64 > limit {
        bail!(
            "{}: larger than a state file of {max_sessions} sessions can be",
            named()
        );
    }
    Ok(Some(bytes))
}

/// Replaces the file at `path` with `bytes`, atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let named = || format!("saving state to {}", path.display());
    let dir = dir_of(path);
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", named()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        // The rename itself must reach the disk.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing directory {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(named)
}

#[cfg(test)]
mod test {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tunnat-statefile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn written_whole_0600_and_read_back() {
        let d = scratch("rw");
        let p = d.join("state");
        assert!(read(&p, 10).unwrap().is_none(), "no file yet");
        write(&p, b"one\n").unwrap();
        write(&p, b"two\n").unwrap();
        assert_eq!(read(&p, 10).unwrap().unwrap(), b"two\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_others_files_and_huge_files_are_refused() {
        let d = scratch("bad");
        let p = d.join("state");
        write(&p, b"x\n").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let e = read(&link, 10).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read(&p, 10).unwrap_err().to_string();
        assert!(e.contains("mode 0666 lets others write it"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read(&d, 10).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        // Sparse: its size is what counts.
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(MAX_LINE as u64 + 65536 * BYTES_PER_RECORD + 1)
            .unwrap();
        let e = read(&p, 0).unwrap_err().to_string();
        assert!(e.contains("larger than a state file of 0 sessions"), "{e}");
        let e = check_dir(&d.join("nowhere/state")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
