//! Stage 2 (describe): a snapshot of a frozen process as one ELF core file that gdb opens —
//! map, registers, resources, symbols, page contents, per-page SHA-256 leaves and the Merkle
//! root the attestor records: the file's format, and reading it — opening and checking a core,
//! the chain of incremental ones, its pages, merging it into a full one. `take` writes it.
//!
//! File layout (x86_64 ET_CORE; schema and note types in `proto/snapshot.proto`):
//!
//! ```text
//! ELF header, program headers     PT_NOTE, then one PT_LOAD per mapping in map order
//!                                 (p_filesz 0 for a mapping whose contents were not captured)
//! zero padding to a page
//! page data                       every page of every captured mapping, in map order (a page
//!                                 that could not be read is stored as zeroes and listed in the
//!                                 region's `unreadable_pages`; its leaf says so)
//! PT_NOTE                         owner "MEMZINC" type 2, the leaves (page_count x 32 bytes),
//!                                 and type 4, the fast hashes (page_count x 8), written first
//!                                 so they go to the disk while the roots are hashed; per thread
//!                                 NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE (the main thread
//!                                 first, with NT_PRPSINFO, NT_AUXV and NT_FILE after its
//!                                 NT_PRSTATUS, as the kernel orders them); MEMZINC type 1 the
//!                                 metadata (protobuf `SnapshotMeta`), type 5 the parent (in an
//!                                 incremental snapshot), type 6 the page tree's kept level;
//!                                 last, type 3 the seal (`seal_of`: BLAKE3 of every note byte
//!                                 before it, under a domain tag). Readers find notes by type.
//! ```
//!
//! An incremental snapshot that refers to its parent (`snapshot --since PREV`, the default)
//! stores only the pages it read again: its PT_LOADs are those runs, back to back after the
//! headers, and a MEMZINC note of type 5 names the parent (its root and file). Its metadata,
//! leaves and root are the full snapshot's; every page it does not store is the parent's, with
//! the same leaf (checked on opening). gdb sees the stored pages; `merge` writes the full core.
//!
//! The notes go last so pages stream straight to disk; the headers are written at the end, when
//! the note segment's size is known. Opening checks the framing, the seal, that the program
//! headers and the metadata describe the same regions, and that the leaves give the root;
//! `verify_pages` re-hashes every page.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memzinc_verifier::merkle;
use memzinc_verifier::plan::{Evidence, PatchPlan};
use memzinc_verifier::Sha256 as _;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::capture::{PageHashes, Reuse};
use super::corefile::{self, Desc, DescAs, LoadRegion, OwnedNote, Segment};
use super::region::SnapRegion;
use super::roots::{check_root, trees_of, BLOCK};
use crate::base::pb::snapshot as pb;
use crate::base::{hex_bytes, Error, Memory, Result, Sha2};
use crate::introspect::{FdInfo, GpRegs, MapEntry, Symbol, SymbolKind, NT_PRFPREG, NT_X86_XSTATE, PAGE_SIZE};

/// The layout version this memzinc writes and reads (`SnapshotMeta.format_version`).
pub const FORMAT_VERSION: u32 = 1;
/// Owner name of memzinc's own notes.
pub const NOTE_OWNER: &str = "MEMZINC";
pub const NT_MEMZINC_META: u32 = 1;
pub const NT_MEMZINC_LEAVES: u32 = 2;
pub const NT_MEMZINC_SEAL: u32 = 3;
/// In an incremental snapshot that refers to its parent: protobuf `ParentImage`.
pub const NT_MEMZINC_PARENT: u32 = 5;
/// The page tree's nodes at the level a core keeps (`roots::KEPT_LEVEL`), 32 bytes each.
pub const NT_MEMZINC_TREE_LEVEL: u32 = 6;
/// How many snapshots a chain of incremental ones may go back: opening one opens its parents.
const MAX_CHAIN: usize = 256;
/// xxh3-64 of every page's stored bytes, in leaf order: cheap change detection between
/// snapshots (the Merkle leaves are what is trusted; these only say where to look).
pub const NT_MEMZINC_FAST_HASHES: u32 = 4;
/// Domain tag of the seal hash ([`seal_of`]), so it cannot pose as a leaf, node or plan hash.
const SEAL_TAG: &[u8] = b"memzinc/core-notes/v2";
/// The tag of the seal cores had before it was BLAKE3 ([`legacy_seal_of`]).
const LEGACY_SEAL_TAG: &[u8] = b"memzinc/core-notes/v1";

/// The seal of a core: the last note, BLAKE3 of [`SEAL_TAG`] and every note byte before it.
/// Not SHA-256 like the page tree: nothing on chain checks it, and every open and every write
/// of a core hashes all its notes (32 bytes of leaf a page: 52 MiB at 4 GiB), which BLAKE3 does
/// in under a third of the time here (12 ms against 40).
pub fn seal_of(notes: &[u8]) -> [u8; 32] {
    *sealer().update(notes).finalize().as_bytes()
}

/// The hasher of [`seal_of`], before the notes.
pub(super) fn sealer() -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(SEAL_TAG);
    hasher
}

/// Whether the first `sealed_len` bytes of the note `segment` of `file` (at `path`) have the
/// seal of a core written before [`seal_of`] ([`legacy_seal_of`]).
fn legacy_sealed(path: &Path, file: &File, segment: &Segment, sealed_len: u64, seal: &[u8]) -> Result<bool> {
    let mut sealed = vec![0u8; sealed_len as usize];
    file.read_exact_at(&mut sealed, segment.offset)
        .map_err(|e| Error::io(path, e))?;
    Ok(legacy_seal_of(&sealed) == seal)
}

/// The seal of a core written before [`seal_of`]: SHA-256 with [`LEGACY_SEAL_TAG`]. Such cores
/// are still read (an attestation's evidence may be one).
fn legacy_seal_of(notes: &[u8]) -> [u8; 32] {
    Sha2::hashv(&[LEGACY_SEAL_TAG, notes])
}

const AT_NULL: u64 = 0;

/// One thread's state: its registers as the NT_PRSTATUS / NT_PRFPREG / NT_X86_XSTATE notes
/// hold them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: i32,
    pub name: String,
    pub regs: GpRegs,
    /// The FXSAVE area (NT_PRFPREG), hex in JSON; empty if not taken.
    #[serde(with = "hex_bytes")]
    pub fpregs: Vec<u8>,
    /// The XSAVE area (NT_X86_XSTATE), hex in JSON; empty if not taken.
    #[serde(with = "hex_bytes")]
    pub xstate: Vec<u8>,
}

/// One auxiliary vector entry (AT_* key and value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxEntry {
    pub key: u64,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub memzinc_version: String,
    pub pid: i32,
    pub comm: String,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub taken_at_unix: u64,
    /// The main thread first.
    pub threads: Vec<ThreadState>,
    pub fds: Vec<FdInfo>,
    /// Without the terminating AT_NULL.
    pub auxv: Vec<AuxEntry>,
    pub regions: Vec<SnapRegion>,
    pub symbols: Vec<Symbol>,
    /// The snapshot root (hex): `hash::snapshot_root` over the page tree and the region tree.
    pub root: String,
    /// Merkle root over all captured pages, hex.
    pub pages_root: String,
    pub page_count: u64,
    /// What `memzinc checkpoint` adds for `memzinc restore`; `None` in a plain snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<pb::Checkpoint>,
}

/// A snapshot file opened for reading; page contents stay on disk.
pub struct Snapshot {
    pub path: PathBuf,
    pub meta: SnapshotMeta,
    pub leaves: Vec<[u8; 32]>,
    /// xxh3-64 per page, in leaf order.
    pub fast_hashes: Vec<u64>,
    file: File,
    note_segment: Segment,
    pages: Pages,
    /// The seal over the notes (checked on opening).
    seal: [u8; 32],
    /// The page tree's nodes at `roots::KEPT_LEVEL` as the core keeps them (none in a core from
    /// before them), and whether they are known to be the leaves' (checked with the root, or
    /// in the core the tracking recorded).
    kept_level: Vec<[u8; 32]>,
    kept_level_known: bool,
}

/// Where a snapshot's page bytes are.
enum Pages {
    /// Every captured page in the file, at its region's `data_offset`.
    Full,
    /// An incremental snapshot: the runs stored in the file (sorted, disjoint, each inside a
    /// captured region); every other captured page is the parent's (at `parent_path`; opened
    /// unless only the leaves were wanted, [`open_since`]).
    Delta {
        stored: Vec<StoredRun>,
        parent_path: PathBuf,
        parent: Option<Box<Snapshot>>,
    },
}

/// Whether opening an incremental snapshot opens its parents too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parents {
    Open,
    /// Not opened: only this file's metadata and leaves are wanted (an incremental snapshot
    /// taken since it that refers to it); its pages cannot be read.
    Skip,
}

/// A run of pages an incremental snapshot stores: [start, end) at `offset` of its file.
#[derive(Clone, Copy, Debug)]
pub(super) struct StoredRun {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) offset: u64,
}

/// Opens `path` as the previous snapshot of the tracked process `pid`, for `--since`. When it is
/// the snapshot the tracking recorded — its root, and the seal over its notes, leaves included —
/// its leaves are those memzinc hashed into that root, so the root is not computed again (a
/// quarter of a second at 4 GiB); any other file is opened as [`Snapshot::open`] opens it (and
/// then refused by the `--since` check). Without `with_parents`, an incremental one's parents are
/// not opened (a snapshot that refers to it needs only its leaves; one that copies its pages,
/// [`Since::Copy`](super::Since::Copy), needs them).
pub fn open_since(pid: i32, path: &Path, with_parents: bool) -> Result<Snapshot> {
    let started = std::time::Instant::now();
    let parents = match with_parents {
        true => Parents::Open,
        false => Parents::Skip,
    };
    let mut snap = Snapshot::open_chain(path, 0, parents)?;
    tracing::debug!("snapshot: {} opened in {:?}", path.display(), started.elapsed());
    let state = super::track::load_tracking(pid)?;
    let recorded = state.is_some_and(|s| {
        s.last_root.as_deref() == Some(snap.meta.root.as_str()) && s.last_seal == Some(hex::encode(snap.seal))
    });
    if recorded {
        // The notes memzinc wrote, the kept level with them.
        snap.kept_level_known = true;
    } else {
        snap.check_root()?;
    }
    Ok(snap)
}

/// Whether `a` and `b` name one existing file.
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Where the parent the core at `path` names is: `None` for a full core. Only its parent note
/// is read.
fn parent_named_in(path: &Path) -> std::result::Result<Option<PathBuf>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let segments = corefile::read_segments(&file, len)?;
    let Some(notes) = segments.iter().find(|s| s.p_type == object::elf::PT_NOTE) else {
        return Ok(None);
    };
    let is_parent = |name: &[u8], n_type| name == NOTE_OWNER.as_bytes() && n_type == NT_MEMZINC_PARENT;
    let read = corefile::read_notes(
        &file,
        notes,
        |name, n_type| {
            if is_parent(name, n_type) {
                DescAs::Bytes
            } else {
                DescAs::Skip
            }
        },
        0,
        &mut |_| {},
    )?;
    let Some(note) = read
        .iter()
        .find(|n| is_parent(&n.name, n.n_type))
        .and_then(OwnedNote::bytes)
    else {
        return Ok(None);
    };
    let note = pb::ParentImage::decode(note).map_err(|e| format!("parent note: {e}"))?;
    Ok(Some(parent_path(path, &note)))
}

/// Where the parent `note` of the incremental snapshot at `path` names is: relative to `path`'s
/// directory, or absolute.
fn parent_path(path: &Path, note: &pb::ParentImage) -> PathBuf {
    let named = Path::new(&note.file);
    match path.parent() {
        Some(dir) if named.is_relative() => dir.join(named),
        _ => named.to_path_buf(),
    }
}

pub(super) fn parse_auxv(raw: &[u8]) -> Vec<AuxEntry> {
    raw.as_chunks::<16>()
        .0
        .iter()
        .map(|pair| AuxEntry {
            key: u64::from_le_bytes(pair[..8].try_into().unwrap_or([0; 8])),
            value: u64::from_le_bytes(pair[8..].try_into().unwrap_or([0; 8])),
        })
        .take_while(|e| e.key != AT_NULL)
        .collect()
}

pub(super) fn to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        format_version: FORMAT_VERSION,
        memzinc_version: meta.memzinc_version.clone(),
        pid: meta.pid,
        comm: meta.comm.clone(),
        exe: meta.exe.clone(),
        cmdline: meta.cmdline.clone(),
        taken_at_unix: meta.taken_at_unix,
        regions: meta
            .regions
            .iter()
            .map(|r| pb::Region {
                start: r.map.start,
                end: r.map.end,
                perms: r.map.perms.clone(),
                offset: r.map.offset,
                dev: r.map.dev.clone(),
                inode: r.map.inode,
                path: r.map.path.clone(),
                captured: r.captured,
                data_offset: r.data_offset,
                unreadable_pages: r.unreadable_pages.clone(),
            })
            .collect(),
        threads: meta
            .threads
            .iter()
            .map(|t| pb::Thread {
                tid: t.tid,
                name: t.name.clone(),
                fpregs_size: t.fpregs.len() as u32,
                xstate_size: t.xstate.len() as u32,
            })
            .collect(),
        fds: meta
            .fds
            .iter()
            .map(|f| pb::FileDescriptor {
                fd: f.fd,
                path: f.path.clone(),
                flags: f.flags,
                pos: f.pos,
            })
            .collect(),
        symbols: meta
            .symbols
            .iter()
            .map(|s| pb::Symbol {
                name: s.name.clone(),
                address: s.address,
                size: s.size,
                kind: match s.kind {
                    SymbolKind::Function => pb::SymbolKind::Function,
                    SymbolKind::Object => pb::SymbolKind::Object,
                    SymbolKind::Unknown => pb::SymbolKind::Unspecified,
                } as i32,
            })
            .collect(),
        root: hex::decode(&meta.root).unwrap_or_default(),
        pages_root: hex::decode(&meta.pages_root).unwrap_or_default(),
        page_count: meta.page_count,
        checkpoint: meta.checkpoint.clone(),
    }
}

/// Registers of one thread as read from the standard notes.
struct NoteThread<'a> {
    tid: i32,
    regs: GpRegs,
    fpregs: &'a [u8],
    xstate: &'a [u8],
}

/// The domain metadata from the protobuf message and the standard notes, checked against
/// each other.
fn from_pb(
    m: pb::SnapshotMeta,
    note_threads: Vec<NoteThread>,
    auxv: Vec<AuxEntry>,
) -> std::result::Result<SnapshotMeta, String> {
    if m.format_version != FORMAT_VERSION {
        return Err(format!(
            "format version {} (this memzinc reads {FORMAT_VERSION})",
            m.format_version
        ));
    }
    if m.root.len() != 32 || m.pages_root.len() != 32 {
        return Err(format!(
            "roots are {} and {} bytes, not 32",
            m.root.len(),
            m.pages_root.len()
        ));
    }
    if m.threads.len() != note_threads.len() {
        return Err(format!(
            "{} threads in the metadata but {} NT_PRSTATUS notes",
            m.threads.len(),
            note_threads.len()
        ));
    }
    let threads = m
        .threads
        .into_iter()
        .zip(note_threads)
        .map(|(t, n)| {
            if t.tid != n.tid || t.fpregs_size as usize != n.fpregs.len() || t.xstate_size as usize != n.xstate.len() {
                return Err(format!("thread {} disagrees with its register notes", t.tid));
            }
            Ok(ThreadState {
                tid: t.tid,
                name: t.name,
                regs: n.regs,
                fpregs: n.fpregs.to_vec(),
                xstate: n.xstate.to_vec(),
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let regions = m
        .regions
        .into_iter()
        .map(|r| SnapRegion {
            map: MapEntry {
                start: r.start,
                end: r.end,
                perms: r.perms,
                offset: r.offset,
                dev: r.dev,
                inode: r.inode,
                path: r.path,
            },
            captured: r.captured,
            data_offset: r.data_offset,
            unreadable_pages: r.unreadable_pages,
        })
        .collect();
    let symbols = m
        .symbols
        .into_iter()
        .map(|s| Symbol {
            kind: match pb::SymbolKind::try_from(s.kind) {
                Ok(pb::SymbolKind::Function) => SymbolKind::Function,
                Ok(pb::SymbolKind::Object) => SymbolKind::Object,
                _ => SymbolKind::Unknown,
            },
            name: s.name,
            demangled: None,
            address: s.address,
            size: s.size,
            module: String::new(),
        })
        .collect();
    Ok(SnapshotMeta {
        memzinc_version: m.memzinc_version,
        pid: m.pid,
        comm: m.comm,
        exe: m.exe,
        cmdline: m.cmdline,
        taken_at_unix: m.taken_at_unix,
        threads,
        fds: m
            .fds
            .into_iter()
            .map(|f| FdInfo {
                fd: f.fd,
                path: f.path,
                flags: f.flags,
                pos: f.pos,
            })
            .collect(),
        auxv,
        regions,
        symbols,
        root: hex::encode(&m.root),
        pages_root: hex::encode(&m.pages_root),
        page_count: m.page_count,
        checkpoint: m.checkpoint,
    })
}

/// Checks the regions against the PT_LOAD segments and themselves: same order, same ranges,
/// captured data where the metadata says, page-aligned, unreadable pages sorted and inside.
/// Checks the regions against the PT_LOADs of a full core (`loads`; `None` for an incremental
/// snapshot, whose PT_LOADs are its stored runs: [`check_stored`]); returns the captured pages.
fn check_regions(regions: &[SnapRegion], loads: Option<&[Segment]>) -> std::result::Result<u64, String> {
    if let Some(loads) = loads.filter(|l| l.len() != regions.len()) {
        return Err(format!(
            "{} regions in the metadata but {} PT_LOAD segments",
            regions.len(),
            loads.len()
        ));
    }
    let mut pages = 0u64;
    for (i, r) in regions.iter().enumerate() {
        let m = &r.map;
        let len = m
            .end
            .checked_sub(m.start)
            .filter(|l| l.is_multiple_of(PAGE_SIZE) && m.start.is_multiple_of(PAGE_SIZE));
        let Some(len) = len else {
            return Err(format!("region {:#x}-{:#x} is not page-aligned", m.start, m.end));
        };
        let expected = r.load().segment();
        let disagrees = |s: &Segment| {
            s.p_type != expected.p_type
                || s.vaddr != expected.vaddr
                || s.memsz != expected.memsz
                || s.filesz != expected.filesz
                || s.flags != expected.flags
                || (r.captured && s.offset != expected.offset)
        };
        if loads.and_then(|l| l.get(i)).is_some_and(disagrees) {
            return Err(format!(
                "PT_LOAD for {:#x}-{:#x} disagrees with the metadata",
                m.start, m.end
            ));
        }
        if !r.captured && !r.unreadable_pages.is_empty() {
            return Err(format!("uncaptured region {:#x} lists unreadable pages", m.start));
        }
        if !r.unreadable_pages.is_sorted_by(|a, b| a < b)
            || r.unreadable_pages
                .iter()
                .any(|&p| !p.is_multiple_of(PAGE_SIZE) || p < m.start || p >= m.end)
        {
            return Err(format!("region {:#x}: bad unreadable page list", m.start));
        }
        if r.captured {
            pages += len / PAGE_SIZE;
        }
    }
    Ok(pages)
}

/// The PT_LOADs of an incremental snapshot as its stored runs: sorted and disjoint, each whole
/// pages inside one captured region, with its bytes in the file between the headers and the notes.
fn check_stored(
    regions: &[SnapRegion],
    loads: &[Segment],
    data: std::ops::Range<u64>,
) -> std::result::Result<Vec<StoredRun>, String> {
    let mut runs: Vec<StoredRun> = Vec::with_capacity(loads.len());
    for s in loads {
        let end = s.vaddr.checked_add(s.memsz);
        let file_end = s.offset.checked_add(s.filesz);
        let whole_pages = [s.vaddr, s.memsz, s.offset].iter().all(|v| v.is_multiple_of(PAGE_SIZE));
        let (Some(end), Some(file_end)) = (end, file_end) else {
            return Err(format!("stored run at {:#x} overflows", s.vaddr));
        };
        if s.p_type != object::elf::PT_LOAD || s.filesz != s.memsz || s.memsz == 0 || !whole_pages {
            return Err(format!("stored run at {:#x} is not whole pages in the file", s.vaddr));
        }
        if s.offset < data.start || file_end > data.end {
            return Err(format!("stored run at {:#x} lies outside the page data", s.vaddr));
        }
        if let Some(last) = runs.last() {
            if s.vaddr < last.end || s.offset < last.offset + (last.end - last.start) {
                return Err(format!("stored run at {:#x} overlaps the one before", s.vaddr));
            }
        }
        if !regions
            .iter()
            .any(|r| r.captured && r.map.start <= s.vaddr && end <= r.map.end)
        {
            return Err(format!("stored run at {:#x} is in no captured region", s.vaddr));
        }
        runs.push(StoredRun {
            start: s.vaddr,
            end,
            offset: s.offset,
        });
    }
    Ok(runs)
}

/// Captured regions as (start, end, index of the first page's leaf), in address order.
fn leaf_starts(regions: &[SnapRegion]) -> Vec<(u64, u64, usize)> {
    let mut first = 0usize;
    regions
        .iter()
        .filter(|r| r.captured)
        .map(|r| {
            let at = first;
            first += ((r.map.end - r.map.start) / PAGE_SIZE) as usize;
            (r.map.start, r.map.end, at)
        })
        .collect()
}

/// The leaf index of the captured page at `address`, if one is captured there.
fn leaf_of(starts: &[(u64, u64, usize)], address: u64) -> Option<usize> {
    let i = starts.partition_point(|&(_, end, _)| end <= address);
    let &(start, _, first) = starts.get(i).filter(|&&(start, _, _)| start <= address)?;
    Some(first + ((address - start) / PAGE_SIZE) as usize)
}

/// The parts of captured regions that `stored` (sorted, disjoint) does not cover, with the
/// leaf index of each part's first page.
fn unstored_runs(regions: &[SnapRegion], stored: &[StoredRun]) -> Vec<(u64, u64, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    for (start, end, first) in leaf_starts(regions) {
        let mut at = start;
        while i < stored.len() && stored[i].start < end {
            if stored[i].start > at {
                out.push((at, stored[i].start, first + ((at - start) / PAGE_SIZE) as usize));
            }
            at = at.max(stored[i].end);
            i += 1;
        }
        if at < end {
            out.push((at, end, first + ((at - start) / PAGE_SIZE) as usize));
        }
    }
    out
}

/// What [`Snapshot::open_deferring_root`] left to check: that the snapshot's leaves, regions
/// and symbols hash to its recorded root. Owns its inputs, so it can run on any thread.
pub struct RootCheck {
    path: PathBuf,
    regions: Vec<SnapRegion>,
    symbols: Vec<Symbol>,
    leaves: Vec<[u8; 32]>,
    pages_root: String,
    root: String,
}

impl RootCheck {
    pub fn check(self) -> Result<()> {
        check_root(
            &self.path,
            &self.regions,
            &self.symbols,
            &self.leaves,
            &self.pages_root,
            &self.root,
        )
        .map(|_| ())
    }
}

impl Snapshot {
    /// Opens a snapshot core file, checking its framing, its seal, that its program headers
    /// and metadata agree and that the stored leaves give the stored root.
    pub fn open(path: &Path) -> Result<Snapshot> {
        let mut snap = Snapshot::open_chain(path, 0, Parents::Open)?;
        snap.check_root()?;
        Ok(snap)
    }

    /// That the leaves, regions and symbols give the recorded root, and the leaves the kept
    /// tree level (which is then known good).
    fn check_root(&mut self) -> Result<()> {
        let m = &self.meta;
        let kept = check_root(&self.path, &m.regions, &m.symbols, &self.leaves, &m.pages_root, &m.root)?;
        if !self.kept_level.is_empty() {
            if kept != self.kept_level {
                return Err(self.corrupt("the kept tree level does not match the leaves".into()));
            }
            self.kept_level_known = true;
        }
        Ok(())
    }

    /// The kept tree level, when that is known to be the leaves'.
    pub(super) fn known_level(&self) -> Option<&[[u8; 32]]> {
        (self.kept_level_known && !self.kept_level.is_empty()).then_some(&self.kept_level)
    }

    /// The leaves and fast hashes, moved out: for the snapshot taken since this one, which
    /// makes them its own. This one is then good for its metadata, its pages and its kept
    /// level only.
    pub(super) fn take_page_hashes(&mut self) -> PageHashes {
        PageHashes {
            leaves: std::mem::take(&mut self.leaves),
            fast_hashes: std::mem::take(&mut self.fast_hashes),
        }
    }

    /// A copy of the leaves and fast hashes.
    pub(super) fn page_hashes(&self) -> PageHashes {
        PageHashes {
            leaves: self.leaves.clone(),
            fast_hashes: self.fast_hashes.clone(),
        }
    }

    /// [`Snapshot::open`] but the leaves-give-the-root check is left to the caller, who runs
    /// [`RootCheck::check`] later, on another thread if it likes (a lazy restore, whose every
    /// page is checked against its sealed leaf as it arrives, runs the process meanwhile).
    /// Everything else `open` checks, the seal over the leaves and the root included, is checked.
    pub fn open_deferring_root(path: &Path) -> Result<(Snapshot, RootCheck)> {
        let snap = Snapshot::open_chain(path, 0, Parents::Open)?;
        let root = RootCheck {
            path: path.into(),
            regions: snap.meta.regions.clone(),
            symbols: snap.meta.symbols.clone(),
            leaves: snap.leaves.clone(),
            pages_root: snap.meta.pages_root.clone(),
            root: snap.meta.root.clone(),
        };
        Ok((snap, root))
    }

    /// [`Snapshot::open`] of a snapshot `depth` steps down a chain of incremental ones, all but
    /// the root check: a parent is opened with its child.
    fn open_chain(path: &Path, depth: usize, parents: Parents) -> Result<Snapshot> {
        let corrupt = |why: String| Error::Corrupt {
            path: path.into(),
            kind: "snapshot",
            why,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let segments = corefile::read_segments(&file, len).map_err(corrupt)?;
        let (note_segments, loads): (Vec<Segment>, Vec<Segment>) =
            segments.into_iter().partition(|s| s.p_type == object::elf::PT_NOTE);
        let [note_segment] = note_segments[..] else {
            return Err(corrupt(format!("{} PT_NOTE segments, expected 1", note_segments.len())));
        };
        // The seal is the last note and covers every byte before it; hashed as the notes are
        // read, the leaves, fast hashes and kept level straight into their vectors.
        let sealed_len = note_segment
            .filesz
            .checked_sub(corefile::note_len(NOTE_OWNER, 32) as u64);
        let mut sealer = sealer();
        let mut owned = corefile::read_notes(
            &file,
            &note_segment,
            |name, n_type| match (name, n_type) {
                (b"MEMZINC", NT_MEMZINC_LEAVES | NT_MEMZINC_TREE_LEVEL) => DescAs::Words32,
                (b"MEMZINC", NT_MEMZINC_FAST_HASHES) => DescAs::U64,
                _ => DescAs::Bytes,
            },
            sealed_len.unwrap_or(0),
            &mut |bytes| {
                sealer.update(bytes);
            },
        )
        .map_err(corrupt)?;
        let seal_note = owned
            .last()
            .filter(|n| n.name == NOTE_OWNER.as_bytes() && n.n_type == NT_MEMZINC_SEAL)
            .and_then(OwnedNote::bytes);
        let (Some(sealed_len), Some(seal_note)) = (sealed_len, seal_note) else {
            return Err(corrupt("no MEMZINC seal note (not written by memzinc?)".into()));
        };
        if sealer.finalize().as_bytes() != seal_note
            && !legacy_sealed(path, &file, &note_segment, sealed_len, seal_note)?
        {
            return Err(corrupt("notes do not match their seal".into()));
        }
        let seal: [u8; 32] = seal_note
            .try_into()
            .map_err(|_| corrupt("a seal of the wrong size".into()))?;

        let (mut leaves, mut fast_hashes, mut level) = (None, None, None);
        for n in owned.iter_mut().filter(|n| n.name == NOTE_OWNER.as_bytes()) {
            let slot = match n.n_type {
                NT_MEMZINC_LEAVES => &mut leaves,
                NT_MEMZINC_FAST_HASHES => &mut fast_hashes,
                NT_MEMZINC_TREE_LEVEL => &mut level,
                _ => continue,
            };
            *slot = Some(std::mem::replace(&mut n.desc, Desc::Bytes(Vec::new())));
        }
        let notes: Vec<corefile::Note> = owned
            .iter()
            .map(|n| corefile::Note {
                name: &n.name,
                n_type: n.n_type,
                desc: n.bytes().unwrap_or_default(),
            })
            .collect();

        let mut note_threads: Vec<NoteThread> = Vec::new();
        let mut auxv = None;
        let mut meta_pb = None;
        let mut parent_pb = None;
        for n in &notes {
            match (n.name, n.n_type) {
                (b"CORE", object::elf::NT_PRSTATUS) => {
                    let (tid, regs) =
                        corefile::parse_prstatus(n.desc).ok_or_else(|| corrupt("bad NT_PRSTATUS".into()))?;
                    note_threads.push(NoteThread {
                        tid,
                        regs,
                        fpregs: &[],
                        xstate: &[],
                    });
                }
                (b"CORE", NT_PRFPREG) | (b"LINUX", NT_X86_XSTATE) => {
                    let t = note_threads
                        .last_mut()
                        .ok_or_else(|| corrupt("register note before any NT_PRSTATUS".into()))?;
                    if n.n_type == NT_PRFPREG {
                        t.fpregs = n.desc;
                    } else {
                        t.xstate = n.desc;
                    }
                }
                (b"CORE", object::elf::NT_AUXV) => auxv = Some(parse_auxv(n.desc)),
                (b"MEMZINC", NT_MEMZINC_META) => meta_pb = Some(n.desc),
                (b"MEMZINC", NT_MEMZINC_PARENT) => parent_pb = Some(n.desc),
                _ => {}
            }
        }
        let meta_pb = meta_pb.ok_or_else(|| corrupt("no MEMZINC metadata note".into()))?;
        let leaves = match leaves.ok_or_else(|| corrupt("no MEMZINC leaves note".into()))? {
            Desc::Words32(leaves) => leaves,
            _ => return Err(corrupt("the leaves note is not a whole number of leaves".into())),
        };
        let fast_hashes = match fast_hashes.ok_or_else(|| corrupt("no MEMZINC fast-hash note".into()))? {
            Desc::U64(hashes) if hashes.len() == leaves.len() => hashes,
            _ => return Err(corrupt("the fast hashes do not match the leaves in number".into())),
        };
        let meta_pb = pb::SnapshotMeta::decode(meta_pb).map_err(|e| corrupt(format!("metadata: {e}")))?;
        let meta =
            from_pb(meta_pb, note_threads, auxv.unwrap_or_default()).map_err(|e| corrupt(format!("metadata: {e}")))?;

        let parent_pb = parent_pb
            .map(pb::ParentImage::decode)
            .transpose()
            .map_err(|e| corrupt(format!("parent note: {e}")))?;
        let pages = check_regions(&meta.regions, parent_pb.is_none().then_some(&loads[..])).map_err(corrupt)?;
        if leaves.len() as u64 != meta.page_count || pages != meta.page_count {
            return Err(corrupt(format!(
                "page count {} disagrees with the leaves ({}) or the captured regions ({pages})",
                meta.page_count,
                leaves.len()
            )));
        }
        let kept_level = match level {
            None => Vec::new(),
            Some(Desc::Words32(nodes)) if nodes.len() == leaves.len().div_ceil(BLOCK) => nodes,
            Some(_) => {
                return Err(corrupt(
                    "the kept tree level does not match the leaves in number".into(),
                ))
            }
        };
        let pages = match parent_pb {
            None => Pages::Full,
            Some(note) if parents == Parents::Skip => {
                let data = corefile::data_start(loads.len())..note_segment.offset;
                Pages::Delta {
                    stored: check_stored(&meta.regions, &loads, data).map_err(corrupt)?,
                    parent_path: parent_path(path, &note),
                    parent: None,
                }
            }
            Some(note) => {
                let data = corefile::data_start(loads.len())..note_segment.offset;
                let stored = check_stored(&meta.regions, &loads, data).map_err(corrupt)?;
                let parent = Snapshot::open_parent(path, &note, depth)?;
                // Every page not stored here is the parent's: captured there, with this leaf.
                let starts = leaf_starts(&parent.meta.regions);
                for (start, end, first) in unstored_runs(&meta.regions, &stored) {
                    let n = ((end - start) / PAGE_SIZE) as usize;
                    let same = leaf_of(&starts, start)
                        .filter(|_| leaf_of(&starts, end - PAGE_SIZE).is_some())
                        .and_then(|at| parent.leaves.get(at..at + n))
                        .is_some_and(|theirs| theirs == &leaves[first..first + n]);
                    if !same {
                        return Err(Error::Parent {
                            path: path.into(),
                            parent: parent.path.clone(),
                            why: format!("does not hold the pages {start:#x}-{end:#x} it is said to (not its parent?)"),
                        });
                    }
                }
                Pages::Delta {
                    stored,
                    parent_path: parent.path.clone(),
                    parent: Some(Box::new(parent)),
                }
            }
        };
        let snap = Snapshot {
            path: path.into(),
            meta,
            leaves,
            fast_hashes,
            file,
            note_segment,
            pages,
            seal,
            kept_level,
            kept_level_known: false,
        };
        Ok(snap)
    }

    /// The parent `note` of the incremental snapshot at `path` names, opened and checked: the
    /// file is found beside `path` (or at its absolute path) and has the recorded root.
    fn open_parent(path: &Path, note: &pb::ParentImage, depth: usize) -> Result<Snapshot> {
        let parent_path = parent_path(path, note);
        let refuse = |why: String| Error::Parent {
            path: path.into(),
            parent: parent_path.clone(),
            why,
        };
        if depth + 1 >= MAX_CHAIN {
            return Err(refuse(format!(
                "is more than {MAX_CHAIN} incremental snapshots back (a cycle?)"
            )));
        }
        // The parent's own root is not hashed again: what is read from it is checked against the
        // child's leaves (equal to the parent's for every page it holds, checked by the caller),
        // and those give the child's root.
        let parent = match Snapshot::open_chain(&parent_path, depth + 1, Parents::Open) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse("is not there (an incremental snapshot needs its parent)".into()))
            }
            other => other?,
        };
        if parent.root()[..] != note.root[..] {
            return Err(refuse(format!(
                "has root {}, not the recorded {} (replaced since?)",
                parent.meta.root,
                hex::encode(&note.root)
            )));
        }
        Ok(parent)
    }

    /// The snapshot an incremental one refers to for the pages it does not store.
    pub fn parent(&self) -> Option<&Snapshot> {
        match &self.pages {
            Pages::Full => None,
            Pages::Delta { parent, .. } => parent.as_deref(),
        }
    }

    /// Where an incremental snapshot's parent is (whether or not it was opened).
    pub fn parent_path(&self) -> Option<&Path> {
        match &self.pages {
            Pages::Full => None,
            Pages::Delta { parent_path, .. } => Some(parent_path),
        }
    }

    /// The files an incremental snapshot's pages are in besides its own: its parent, the
    /// parent's parent, and so on to a full core, as each file's parent note names the next
    /// (read from the note alone, not the whole core; a file that cannot be read ends the walk:
    /// what lies beyond it is lost already). Writing over any of them loses pages.
    pub fn ancestor_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        let mut next = self.parent_path().map(Path::to_path_buf);
        while let Some(path) = next.take() {
            if paths.len() >= MAX_CHAIN || paths.contains(&path) {
                break;
            }
            next = parent_named_in(&path).ok().flatten();
            paths.push(path);
        }
        paths
    }

    /// Pages stored in this file (all captured pages, unless it refers to a parent).
    pub fn stored_pages(&self) -> u64 {
        match &self.pages {
            Pages::Full => self.meta.page_count,
            Pages::Delta { stored, .. } => stored.iter().map(|r| (r.end - r.start) / PAGE_SIZE).sum(),
        }
    }

    /// Fails, naming `what` and how to get a full core, if this snapshot refers to a parent:
    /// for readers that need every page at its region's offset in this one file.
    pub fn require_full(&self, what: &'static str) -> Result<()> {
        match self.parent_path() {
            None => Ok(()),
            Some(parent) => Err(Error::NeedsFullCore {
                path: self.path.clone(),
                parent: parent.into(),
                what,
            }),
        }
    }

    /// Reads the captured bytes at `address` of region `r` (this snapshot's) into `buf`: from
    /// this file, or from the parent for what an incremental snapshot does not store.
    pub(super) fn read_captured(&self, r: &SnapRegion, address: u64, buf: &mut [u8]) -> Result<()> {
        let io = |e| Error::io(&self.path, e);
        let Pages::Delta {
            stored,
            parent,
            parent_path,
        } = &self.pages
        else {
            return self
                .file
                .read_exact_at(buf, r.data_offset + (address - r.map.start))
                .map_err(io);
        };
        let end = address + buf.len() as u64;
        let mut at = address;
        while at < end {
            let i = stored.partition_point(|run| run.end <= at);
            let (to, offset) = match stored.get(i) {
                Some(run) if run.start <= at => (run.end.min(end), Some(run.offset + (at - run.start))),
                Some(run) => (run.start.min(end), None),
                None => (end, None),
            };
            let piece = &mut buf[(at - address) as usize..(to - address) as usize];
            match offset {
                Some(offset) => self.file.read_exact_at(piece, offset).map_err(io)?,
                None => {
                    let parent = parent.as_deref().ok_or_else(|| Error::Parent {
                        path: self.path.clone(),
                        parent: parent_path.clone(),
                        why: "was not opened (memzinc opened only the leaves)".into(),
                    })?;
                    // Checked on opening: the parent captured every page not stored here.
                    let pr = parent
                        .region_of(at, to - at)
                        .filter(|r| r.captured)
                        .ok_or_else(|| Error::Parent {
                            path: self.path.clone(),
                            parent: parent.path.clone(),
                            why: format!("does not hold {at:#x}-{to:#x}"),
                        })?;
                    parent.read_captured(pr, at, piece)?;
                }
            }
            at = to;
        }
        Ok(())
    }

    /// Writes the full core of this snapshot to `out` (atomically): the same notes (but the
    /// parent note) and every captured page, from this file or its parents. Checked as
    /// `inspect` checks a core, every page against its leaf, before it takes its name.
    pub fn merge(&self, out: &Path) -> Result<Snapshot> {
        // Over this file is fine (the same root, every page now in it); over a file it takes
        // pages from, those pages are lost to every other snapshot that refers to that file.
        if let Some(ancestor) = self.ancestor_paths().into_iter().find(|a| same_file(out, a)) {
            return Err(Error::Parent {
                path: self.path.clone(),
                parent: ancestor,
                why: format!(
                    "the merged core {} would replace: write it to another file",
                    out.display()
                ),
            });
        }
        let mut notes: Vec<(String, u32, Vec<u8>)> = self
            .raw_notes()?
            .into_iter()
            .filter(|(owner, ty, _)| !(owner == NOTE_OWNER && (*ty == NT_MEMZINC_PARENT || *ty == NT_MEMZINC_SEAL)))
            .collect();
        let mut sealed = Vec::new();
        for (owner, ty, desc) in &notes {
            corefile::push_note(&mut sealed, owner, *ty, desc).map_err(|why| self.corrupt(why))?;
        }
        notes.push((NOTE_OWNER.into(), NT_MEMZINC_SEAL, seal_of(&sealed).to_vec()));
        let parts = CoreParts::from_notes(notes.iter().map(|(o, t, d)| (o.as_str(), *t, d.as_slice())))
            .map_err(|why| self.corrupt(why))?;
        parts.write(
            out,
            &self.path,
            |address| {
                let r = self
                    .region_of(address, PAGE_SIZE)
                    .ok_or_else(|| self.corrupt(format!("page {address:#x} is in no region")))?;
                self.stored_page(r, address)
            },
            || Ok(()),
        )
    }

    fn corrupt(&self, why: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            kind: "snapshot",
            why,
        }
    }

    /// Every note of the file, verbatim and in order: (owner, type, descriptor).
    pub fn raw_notes(&self) -> Result<Vec<(String, u32, Vec<u8>)>> {
        let notes = corefile::read_notes(&self.file, &self.note_segment, |_, _| DescAs::Bytes, 0, &mut |_| {})
            .map_err(|why| self.corrupt(why))?;
        Ok(notes
            .into_iter()
            .map(|n| {
                (
                    String::from_utf8_lossy(&n.name).into_owned(),
                    n.n_type,
                    n.desc.into_bytes(),
                )
            })
            .collect())
    }

    /// The stored bytes of the captured page at `address` of region `r` (zeroes for an
    /// unreadable page, as stored).
    pub fn stored_page(&self, r: &SnapRegion, address: u64) -> Result<Vec<u8>> {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        self.read_captured(r, address, &mut page)?;
        Ok(page)
    }

    /// This snapshot's copy of the mapping `map` of the same process, for an incremental
    /// snapshot: the same range and backing, captured here; `written` are the page runs
    /// written since, to which the pages unreadable here are added (they are tried again);
    /// `copy`: the other pages' bytes are copied into the new core.
    pub(super) fn reuse(&self, map: &MapEntry, written: &[(u64, u64)], copy: bool) -> Option<Reuse<'_>> {
        let mut first = 0usize;
        let region = self.meta.regions.iter().filter(|r| r.captured).find(|r| {
            let same = r.map.start == map.start && r.map.end == map.end;
            if !same {
                first += ((r.map.end - r.map.start) / PAGE_SIZE) as usize;
            }
            same
        })?;
        if (region.map.offset, region.map.inode, &region.map.path) != (map.offset, map.inode, &map.path) {
            return None;
        }
        let pages = ((map.end - map.start) / PAGE_SIZE) as usize;
        let mut read: Vec<(u64, u64)> = written.to_vec();
        read.extend(region.unreadable_pages.iter().map(|&p| (p, p + PAGE_SIZE)));
        read.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(read.len());
        for (s, e) in read {
            match merged.last_mut() {
                Some((_, last)) if *last >= s => *last = (*last).max(e),
                _ => merged.push((s, e)),
            }
        }
        // Its leaves, whether still here or taken (`take_page_hashes`).
        if (first + pages) as u64 > self.meta.page_count {
            return None;
        }
        Some(Reuse {
            bytes: Box::new(move |address, buf| self.read_captured(region, address, buf)),
            prev_first: first,
            read: merged,
            copy,
        })
    }

    /// Every captured page address, in leaf order.
    pub fn page_addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.meta
            .regions
            .iter()
            .filter(|r| r.captured)
            .flat_map(|r| (r.map.start..r.map.end).step_by(PAGE_SIZE as usize))
    }

    /// Pages whose contents differ from `earlier`'s by their fast hash, plus pages only one of
    /// the two captured: where a process changed between two snapshots.
    pub fn changed_pages(&self, earlier: &Snapshot) -> Vec<u64> {
        let before: std::collections::HashMap<u64, u64> = earlier
            .page_addresses()
            .zip(earlier.fast_hashes.iter().copied())
            .collect();
        let now: std::collections::HashSet<u64> = self.page_addresses().collect();
        let mut changed: Vec<u64> = self
            .page_addresses()
            .zip(self.fast_hashes.iter().copied())
            .filter(|(a, h)| before.get(a) != Some(h))
            .map(|(a, _)| a)
            .chain(before.keys().copied().filter(|a| !now.contains(a)))
            .collect();
        changed.sort_unstable();
        changed
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
                self.read_captured(r, address, &mut page)?;
                let leaf = if r.unreadable_pages.binary_search(&address).is_ok() {
                    merkle::unreadable_leaf::<Sha2>(address)
                } else {
                    merkle::page_leaf::<Sha2>(address, &page)
                };
                let fast = xxhash_rust::xxh3::xxh3_64(&page);
                if self.leaves.get(index) != Some(&leaf) || self.fast_hashes.get(index) != Some(&fast) {
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

    /// The Merkle proofs that bind `plan` to this snapshot: its regions and the pages it writes.
    pub fn evidence(&self, plan: &PatchPlan) -> Result<Evidence> {
        self.evidence_with_symbols(plan, &[])
    }

    /// [`Self::evidence`] plus proofs of the symbols `keys` name (`hash::symbol_key`), for a
    /// policy with symbol rules.
    pub fn evidence_with_symbols(&self, plan: &PatchPlan, keys: &[[u8; 32]]) -> Result<Evidence> {
        let trees = trees_of(&self.meta.regions, &self.meta.symbols, &self.leaves);
        Ok(trees.evidence_with_symbols(plan, keys, |address| self.read(address, PAGE_SIZE as usize).ok())?)
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
        self.read_captured(r, address, &mut out)?;
        Ok(out)
    }
}

/// A core file written again from its parts as `export` keeps them (the notes, verbatim and in
/// order, and the pages of the captured regions), laid out as `take` lays out every core.
pub struct CoreParts {
    notes: Vec<u8>,
    /// The metadata note, decoded: the regions the pages fill.
    pub meta: pb::SnapshotMeta,
    data_start: u64,
    data_end: u64,
}

impl CoreParts {
    /// The parts from the core's notes (owner, type, descriptor). Fails if there is no metadata
    /// note or its captured regions are not where a memzinc core puts them.
    pub fn from_notes<'a>(
        notes: impl IntoIterator<Item = (&'a str, u32, &'a [u8])>,
    ) -> std::result::Result<CoreParts, String> {
        let mut bytes = Vec::new();
        let mut meta = None;
        for (owner, ty, desc) in notes {
            if owner == NOTE_OWNER && ty == NT_MEMZINC_META {
                meta = Some(pb::SnapshotMeta::decode(desc).map_err(|e| format!("metadata note: {e}"))?);
            }
            corefile::push_note(&mut bytes, owner, ty, desc)?;
        }
        let meta = meta.ok_or("no MEMZINC metadata note")?;
        let data_start = corefile::data_start(meta.regions.len());
        let (offsets, data_end) = corefile::place(
            data_start,
            meta.regions.iter().map(|r| (r.end.saturating_sub(r.start), r.captured)),
        );
        for (r, at) in meta.regions.iter().zip(offsets) {
            if r.captured && (r.data_offset != at || r.end < r.start) {
                return Err(format!("region {:#x} is not where memzinc puts it in a core", r.start));
            }
        }
        Ok(CoreParts {
            notes: bytes,
            meta,
            data_start,
            data_end,
        })
    }

    /// The size of the core these parts make.
    pub fn file_bytes(&self) -> u64 {
        self.data_end + self.notes.len() as u64
    }

    /// Writes the core to `out` (atomically): `page(address)` gives each captured page in
    /// order, `done` is asked once they are all in (whether the source holds more). The core is
    /// opened and every page checked against its leaf, as `inspect` does, before it takes its
    /// name; a core that fails is reported against `source`, where the parts came from.
    pub fn write(
        &self,
        out: &Path,
        source: &Path,
        mut page: impl FnMut(u64) -> Result<Vec<u8>>,
        done: impl FnOnce() -> Result<()>,
    ) -> Result<Snapshot> {
        let io = |e| Error::io(out, e);
        let fill = |w: &mut std::io::BufWriter<File>| -> Result<()> {
            w.write_all(&vec![0u8; self.data_start as usize]).map_err(io)?;
            for r in self.meta.regions.iter().filter(|r| r.captured) {
                for address in (r.start..r.end).step_by(PAGE_SIZE as usize) {
                    let contents = page(address)?;
                    if contents.len() as u64 != PAGE_SIZE {
                        return Err(Error::Corrupt {
                            path: source.into(),
                            kind: "snapshot table set",
                            why: format!("page {address:#x} has {} bytes, not {PAGE_SIZE}", contents.len()),
                        });
                    }
                    w.write_all(&contents).map_err(io)?;
                }
            }
            done()?;
            w.write_all(&self.notes).map_err(io)?;
            w.seek(SeekFrom::Start(0)).map_err(io)?;
            let regions = self.meta.regions.iter().map(|r| LoadRegion {
                start: r.start,
                end: r.end,
                data_offset: r.data_offset,
                captured: r.captured,
                perms: &r.perms,
            });
            w.write_all(&corefile::program_headers(
                self.data_end,
                self.notes.len() as u64,
                regions,
            ))
            .map_err(io)
        };
        let check = |tmp: &Path, ()| -> Result<Snapshot> {
            let about_source = |e: Error| match e {
                Error::Corrupt { path, why, .. } if path == tmp => Error::Corrupt {
                    path: source.into(),
                    kind: "snapshot table set",
                    why: format!("the rebuilt core fails its checks: {why}"),
                },
                e => e,
            };
            let snap = Snapshot::open(tmp).map_err(about_source)?;
            snap.verify_pages().map_err(about_source)?;
            Ok(snap)
        };
        let mut snap = crate::base::write_checked(out, fill, check)?;
        snap.path = out.into();
        Ok(snap)
    }
}

impl Memory for Snapshot {
    fn read(&self, address: u64, len: usize) -> Result<Vec<u8>> {
        Snapshot::read(self, address, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_meta() -> SnapshotMeta {
        let (regions, symbols) = super::super::roots::tests::sample();
        SnapshotMeta {
            memzinc_version: "0.1.0".into(),
            pid: 42,
            comm: "t".into(),
            exe: "/bin/t".into(),
            cmdline: vec!["/bin/t".into(), "--x".into()],
            taken_at_unix: 1,
            threads: vec![ThreadState {
                tid: 42,
                name: "t".into(),
                regs: GpRegs {
                    rip: 0x1000,
                    ..GpRegs::default()
                },
                fpregs: vec![1; 512],
                xstate: vec![2; 832],
            }],
            fds: vec![FdInfo {
                fd: 0,
                path: "/dev/null".into(),
                flags: 0o100000,
                pos: 0,
            }],
            auxv: vec![AuxEntry { key: 6, value: 4096 }],
            regions,
            symbols,
            root: hex::encode([7u8; 32]),
            pages_root: hex::encode([8u8; 32]),
            page_count: 2,
            checkpoint: None,
        }
    }

    #[test]
    fn metadata_round_trips_through_protobuf_and_notes() {
        let meta = sample_meta();
        let bytes = to_pb(&meta).encode_to_vec();
        let t = &meta.threads[0];
        let back = from_pb(
            pb::SnapshotMeta::decode(&*bytes).unwrap(),
            vec![NoteThread {
                tid: t.tid,
                regs: t.regs,
                fpregs: &t.fpregs,
                xstate: &t.xstate,
            }],
            meta.auxv.clone(),
        )
        .unwrap();
        assert_eq!(back, meta);
        // A thread whose register notes disagree with the metadata is refused.
        let err = from_pb(
            pb::SnapshotMeta::decode(&*bytes).unwrap(),
            vec![NoteThread {
                tid: 43,
                regs: t.regs,
                fpregs: &t.fpregs,
                xstate: &t.xstate,
            }],
            vec![],
        )
        .unwrap_err();
        assert!(err.contains("disagrees"), "{err}");
    }

    #[test]
    fn regions_must_match_the_program_headers() {
        let meta = sample_meta();
        let good = [Segment::load(0x1000, 0x2000, 0x1000, 0x2000, "rw-p")];
        assert_eq!(check_regions(&meta.regions, Some(&good)), Ok(2));
        let wrong_size = [Segment::load(0x1000, 0x2000, 0x1000, 0, "rw-p")];
        assert!(check_regions(&meta.regions, Some(&wrong_size)).is_err());
        let mut outside = meta.regions.clone();
        outside[0].unreadable_pages = vec![0x5000];
        assert!(check_regions(&outside, Some(&good)).unwrap_err().contains("unreadable"));
        assert!(check_regions(&meta.regions, Some(&[])).is_err());
    }
}
