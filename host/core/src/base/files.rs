//! Files are never half-written: write a temp file beside the target, fsync, rename, fsync
//! the directory. A crash leaves the old file or the new one, never a torn one. And copying a
//! range of one file into another through the kernel where it can.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{Error, Result};

/// Runs `fill` against a buffered temp file in `path`'s directory and moves it into place
/// only if `fill` succeeds. On error the temp file is removed.
pub fn write_atomically<T>(path: &Path, fill: impl FnOnce(&mut BufWriter<File>) -> Result<T>) -> Result<T> {
    write_checked(path, fill, |_, value| Ok(value))
}

/// [`write_atomically`], with `check` run on the complete, synced temp file (its path and what
/// `fill` returned) before it takes its name: a file that fails the check never gets it.
pub fn write_checked<T, U>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
    check: impl FnOnce(&Path, T) -> Result<U>,
) -> Result<U> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".memzinc-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let value = fill(&mut writer)?;
    let file = writer.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    drop(file);
    let checked = check(&tmp_path, value)?;
    tmp_path.persist(path).map_err(|e| Error::io(path, e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(checked)
}

pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Copies `len` bytes of `from` at `from_offset` into `to` at `to_offset`, through the kernel
/// where it can (`copy_file_range`), through a buffer across file systems.
pub fn copy_file_range_all(from: &File, from_offset: u64, to: &File, to_offset: u64, len: u64) -> std::io::Result<()> {
    let (mut off_in, mut off_out) = (from_offset as i64, to_offset as i64);
    let mut left = len as usize;
    while left > 0 {
        // SAFETY: both fds are open files we borrow; the offsets are our own variables.
        let n =
            unsafe { nix::libc::copy_file_range(from.as_raw_fd(), &mut off_in, to.as_raw_fd(), &mut off_out, left, 0) };
        if n > 0 {
            left -= n as usize;
            continue;
        }
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(nix::libc::EXDEV)
            | Some(nix::libc::EINVAL)
            | Some(nix::libc::ENOSYS)
            | Some(nix::libc::EOPNOTSUPP) => break,
            Some(nix::libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
    // Fallback (another file system): through a buffer.
    let mut buf = vec![0u8; (1 << 20).min(left)];
    while left > 0 {
        let n = left.min(buf.len());
        from.read_exact_at(&mut buf[..n], off_in as u64)?;
        to.write_all_at(&buf[..n], off_out as u64)?;
        off_in += n as i64;
        off_out += n as i64;
        left -= n;
    }
    Ok(())
}
