//! Files are never half-written: write a temp file beside the target, fsync, rename, fsync
//! the directory. A crash leaves the old file or the new one, never a torn one.

use std::fs::File;
use std::io::{BufWriter, Write};
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
