//! Stage 1 (introspect): a snapshot of a frozen process — map, symbols, page contents,
//! per-page SHA-256 leaves and the Merkle root the attestor records.
//!
//! File layout (little-endian; metadata last so pages stream straight to disk):
//!
//! ```text
//! "MZSNAP\0\x01"                          8-byte magic + format version
//! page data                               every page of every captured region, in map order
//!                                         (a page that could not be read is stored as zeroes
//!                                         and listed in `unreadable_pages`)
//! leaves                                  leaf_count × 32-byte Merkle leaves, address order
//! metadata                                JSON (`SnapshotMeta`)
//! footer: leaves_offset u64, leaf_count u64, meta_offset u64, meta_len u64, "MZSNAPFT"
//! ```

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memzinc_verifier::merkle::{self, tree::MerkleTree};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::write_atomically;
use crate::process::{self, MapEntry, PAGE_SIZE};
use crate::Sha2;

const MAGIC: &[u8; 8] = b"MZSNAP\0\x01";
const FOOTER_MAGIC: &[u8; 8] = b"MZSNAPFT";
const FOOTER_LEN: u64 = 40;

/// A named address in the target, at its runtime address (load bias applied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    pub name: String,
    pub address: u64,
    pub size: u64,
    /// "function" or "object".
    pub kind: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapRegion {
    #[serde(flatten)]
    pub map: MapEntry,
    /// Whether the contents are in the file (readable private mappings are).
    pub captured: bool,
    /// Offset of the region's first page in the file, when captured.
    pub data_offset: u64,
    /// Addresses of pages that could not be read; their leaves say so.
    pub unreadable_pages: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub memzinc_version: String,
    pub pid: i32,
    pub comm: String,
    pub exe: String,
    pub taken_at_unix: u64,
    pub threads: usize,
    pub regions: Vec<SnapRegion>,
    pub symbols: Vec<Symbol>,
    /// Merkle root over all captured pages, hex.
    pub root: String,
    pub page_count: u64,
}

/// A snapshot file opened for reading; page contents stay on disk.
pub struct Snapshot {
    pub path: PathBuf,
    pub meta: SnapshotMeta,
    pub leaves: Vec<[u8; 32]>,
    file: File,
}

/// Summary of `take`, for the CLI.
#[derive(Debug, Serialize)]
pub struct TakeReport {
    pub root: String,
    pub regions: usize,
    pub captured_regions: usize,
    pub pages: u64,
    pub unreadable_pages: u64,
    pub bytes: u64,
    pub symbols: usize,
    pub threads: usize,
}

fn should_capture(m: &MapEntry) -> bool {
    // [vvar] pages fault on read; shared mappings belong to someone else's state.
    m.readable() && m.private() && m.path != "[vvar]" && m.path != "[vvar_vclock]"
}

/// Freezes `pid`, snapshots it into `out` (atomically) and resumes it.
pub fn take(pid: i32, out: &Path, progress: Option<&indicatif::ProgressBar>) -> Result<TakeReport> {
    let frozen = process::Frozen::freeze(pid)?;
    let maps = process::read_maps(pid)?;
    let exe = process::exe_path(pid)?;
    let comm = process::comm(pid)?;
    let symbols = read_symbols(pid, &exe, &maps).unwrap_or_else(|e| {
        tracing::warn!("no symbols for {}: {e}", exe.display());
        Vec::new()
    });
    let total: u64 = maps.iter().filter(|m| should_capture(m)).map(|m| m.end - m.start).sum();
    if let Some(p) = progress {
        p.set_length(total);
    }

    let threads = frozen.thread_count();
    let report = write_atomically(out, |w| {
        w.write_all(MAGIC).map_err(|e| Error::io(out, e))?;
        let mut offset = MAGIC.len() as u64;
        let mut leaves = Vec::with_capacity((total / PAGE_SIZE) as usize);
        let mut regions = Vec::with_capacity(maps.len());
        let mut unreadable_total = 0;
        let mut buf = Vec::new();
        for map in maps {
            if !should_capture(&map) {
                regions.push(SnapRegion {
                    map,
                    captured: false,
                    data_offset: 0,
                    unreadable_pages: vec![],
                });
                continue;
            }
            let len = (map.end - map.start) as usize;
            buf.resize(len, 0);
            let readable = process::read_pages(pid, map.start, &mut buf)?;
            let mut unreadable_pages = Vec::new();
            for (i, page) in buf.chunks(PAGE_SIZE as usize).enumerate() {
                let address = map.start + i as u64 * PAGE_SIZE;
                if readable[i] {
                    leaves.push(merkle::page_leaf::<Sha2>(address, page));
                } else {
                    leaves.push(merkle::unreadable_leaf::<Sha2>(address));
                    unreadable_pages.push(address);
                }
            }
            w.write_all(&buf).map_err(|e| Error::io(out, e))?;
            unreadable_total += unreadable_pages.len() as u64;
            regions.push(SnapRegion {
                map,
                captured: true,
                data_offset: offset,
                unreadable_pages,
            });
            offset += len as u64;
            if let Some(p) = progress {
                p.inc(len as u64);
            }
        }
        // The process may have died while we read: an empty read of everything is not a snapshot.
        process::check_target(pid).map_err(|_| Error::TargetExited {
            pid,
            during: "snapshotting it",
        })?;

        let leaves_offset = offset;
        for leaf in &leaves {
            w.write_all(leaf).map_err(|e| Error::io(out, e))?;
        }
        let leaf_count = leaves.len() as u64;
        let root = MerkleTree::from_leaves::<Sha2>(leaves).root();
        let meta = SnapshotMeta {
            memzinc_version: env!("CARGO_PKG_VERSION").to_string(),
            pid,
            comm,
            exe: exe.display().to_string(),
            taken_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            threads,
            regions,
            symbols,
            root: hex::encode(root),
            page_count: leaf_count,
        };
        let meta_json = serde_json::to_vec(&meta).map_err(|e| Error::Corrupt {
            path: out.into(),
            kind: "snapshot",
            why: e.to_string(),
        })?;
        let meta_offset = leaves_offset + leaf_count * 32;
        w.write_all(&meta_json).map_err(|e| Error::io(out, e))?;
        for v in [leaves_offset, leaf_count, meta_offset, meta_json.len() as u64] {
            w.write_all(&v.to_le_bytes()).map_err(|e| Error::io(out, e))?;
        }
        w.write_all(FOOTER_MAGIC).map_err(|e| Error::io(out, e))?;
        Ok(TakeReport {
            root: meta.root.clone(),
            regions: meta.regions.len(),
            captured_regions: meta.regions.iter().filter(|r| r.captured).count(),
            pages: leaf_count,
            unreadable_pages: unreadable_total,
            bytes: total,
            symbols: meta.symbols.len(),
            threads,
        })
    })?;
    drop(frozen);
    Ok(report)
}

// --- symbols hook (issue 3): the symbol reading lives in `crate::symbols`. ---
/// Function and data symbols of the main binary and every mapped shared object, at runtime
/// addresses.
fn read_symbols(pid: i32, _exe: &Path, maps: &[MapEntry]) -> Result<Vec<Symbol>> {
    crate::symbols::snapshot_symbols(pid, maps)
}
// --- end of symbols hook ---

impl Snapshot {
    /// Opens a snapshot, checking its framing and that the stored leaves give the stored root.
    pub fn open(path: &Path) -> Result<Snapshot> {
        let corrupt = |why: String| Error::Corrupt {
            path: path.into(),
            kind: "snapshot",
            why,
        };
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut magic = [0u8; 8];
        if len < MAGIC.len() as u64 + FOOTER_LEN || file.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(corrupt("bad magic or too short".into()));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.seek(SeekFrom::End(-(FOOTER_LEN as i64)))
            .map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut footer).map_err(|e| Error::io(path, e))?;
        if &footer[32..40] != FOOTER_MAGIC {
            return Err(corrupt("truncated (footer missing)".into()));
        }
        let word = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let (leaves_offset, leaf_count, meta_offset, meta_len) = (word(0), word(1), word(2), word(3));
        let body_end = len - FOOTER_LEN;
        if leaf_count.checked_mul(32).and_then(|l| l.checked_add(leaves_offset)) != Some(meta_offset)
            || meta_offset.checked_add(meta_len) != Some(body_end)
        {
            return Err(corrupt("footer offsets are inconsistent".into()));
        }
        let mut leaf_bytes = vec![0u8; (leaf_count * 32) as usize];
        file.read_exact_at(&mut leaf_bytes, leaves_offset)
            .map_err(|e| Error::io(path, e))?;
        let leaves: Vec<[u8; 32]> = leaf_bytes.as_chunks::<32>().0.to_vec();
        let mut meta_bytes = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut meta_bytes, meta_offset)
            .map_err(|e| Error::io(path, e))?;
        let meta: SnapshotMeta = serde_json::from_slice(&meta_bytes).map_err(|e| corrupt(format!("metadata: {e}")))?;
        if meta.page_count != leaf_count {
            return Err(corrupt("page count disagrees with the leaf count".into()));
        }
        let root = hex::encode(MerkleTree::from_leaves::<Sha2>(leaves.clone()).root());
        if root != meta.root {
            return Err(corrupt("leaves do not hash to the recorded root".into()));
        }
        Ok(Snapshot {
            path: path.into(),
            meta,
            leaves,
            file,
        })
    }

    pub fn root(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.meta.root, &mut out).unwrap_or(());
        out
    }

    /// Recomputes every page's leaf from the stored contents; fails on the first mismatch.
    pub fn verify_pages(&self) -> Result<()> {
        let mut index = 0usize;
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for r in self.meta.regions.iter().filter(|r| r.captured) {
            for i in 0..(r.map.end - r.map.start) / PAGE_SIZE {
                let address = r.map.start + i * PAGE_SIZE;
                let leaf = if r.unreadable_pages.binary_search(&address).is_ok() {
                    merkle::unreadable_leaf::<Sha2>(address)
                } else {
                    self.file
                        .read_exact_at(&mut page, r.data_offset + i * PAGE_SIZE)
                        .map_err(|e| Error::io(&self.path, e))?;
                    merkle::page_leaf::<Sha2>(address, &page)
                };
                if self.leaves.get(index) != Some(&leaf) {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        kind: "snapshot",
                        why: format!("page {address:#x} does not match its leaf"),
                    });
                }
                index += 1;
            }
        }
        Ok(())
    }

    pub fn symbol(&self, name: &str) -> Result<&Symbol> {
        self.meta
            .symbols
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::SymbolNotFound(name.to_string()))
    }

    /// The region holding `[address, address+len)`, if one does.
    pub fn region_of(&self, address: u64, len: u64) -> Option<&SnapRegion> {
        self.meta
            .regions
            .iter()
            .find(|r| r.map.start <= address && address.saturating_add(len) <= r.map.end)
    }

    /// Bytes as captured; errors if the range was not captured or was unreadable.
    pub fn read(&self, address: u64, len: usize) -> Result<Vec<u8>> {
        let missing = |why: &str| Error::Corrupt {
            path: self.path.clone(),
            kind: "snapshot covering this address",
            why: format!("{address:#x}+{len}: {why}"),
        };
        let r = self
            .region_of(address, len as u64)
            .ok_or_else(|| missing("not in one mapped region"))?;
        if !r.captured {
            return Err(missing("region was not captured"));
        }
        let first = address & !(PAGE_SIZE - 1);
        let mut page = first;
        while page < address + len as u64 {
            if r.unreadable_pages.binary_search(&page).is_ok() {
                return Err(missing("page was unreadable"));
            }
            page += PAGE_SIZE;
        }
        let mut out = vec![0u8; len];
        self.file
            .read_exact_at(&mut out, r.data_offset + (address - r.map.start))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(out)
    }
}
