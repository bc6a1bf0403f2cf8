//! Stage 1 (introspect): where a stripped library's DWARF lives — its separate debug file, found
//! the way gdb finds it: by the build-id note (`<dir>/.build-id/<2 hex>/<rest>.debug`), then by
//! `.gnu_debuglink` (beside the file, in `.debug/` beside it, and under `<dir>` + the file's
//! directory). `<dir>` is each entry of `MEMZINC_DEBUG_FILE_DIRECTORY` (colon-separated), else
//! `/usr/lib/debug` (where Debian's `-dbg` packages install, e.g. `libc6-dbg`). A debug file
//! found by build-id must carry the same build-id.

use std::path::{Path, PathBuf};

use object::Object;

/// The directories searched for debug files.
pub fn debug_file_directories() -> Vec<PathBuf> {
    match std::env::var_os("MEMZINC_DEBUG_FILE_DIRECTORY") {
        Some(dirs) => std::env::split_paths(&dirs)
            .filter(|d| !d.as_os_str().is_empty())
            .collect(),
        None => vec![PathBuf::from("/usr/lib/debug")],
    }
}

/// The separate debug file of the ELF image `data` (the file at `path`), or why there is none
/// (one line).
pub fn separate_debug_file(data: &[u8], path: &Path) -> Result<PathBuf, String> {
    let file = object::File::parse(data).map_err(|e| format!("{}: {e}", path.display()))?;
    let dirs = debug_file_directories();
    let build_id = file.build_id().ok().flatten().filter(|id| id.len() >= 2);
    if let Some(id) = build_id {
        let hex = hex::encode(id);
        for dir in &dirs {
            let candidate = dir
                .join(".build-id")
                .join(&hex[..2])
                .join(format!("{}.debug", &hex[2..]));
            if let Ok(bytes) = std::fs::read(&candidate) {
                let same = object::File::parse(&*bytes)
                    .ok()
                    .and_then(|f| f.build_id().ok().flatten().map(|b| b == id))
                    .unwrap_or(false);
                if same {
                    return Ok(candidate);
                }
            }
        }
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        let parent = path.parent().unwrap_or(Path::new("/"));
        let mut candidates = vec![parent.join(&name), parent.join(".debug").join(&name)];
        for dir in &dirs {
            candidates.push(dir.join(parent.strip_prefix("/").unwrap_or(parent)).join(&name));
        }
        if let Some(found) = candidates.into_iter().find(|c| c.is_file()) {
            return Ok(found);
        }
    }
    let searched = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    Err(match build_id {
        Some(id) => format!("no debug file with build-id {} under {searched}", hex::encode(id)),
        None => format!("{} has no build-id and no debug file under {searched}", path.display()),
    })
}
