//! Stage 2 (describe): taking a snapshot — freezing the target, holding it copy-on-write (a
//! write-protected view or a fork) or stopped until its pages are copied, capturing them
//! (`capture`), and writing the notes in place after the pages, sealed. The file it writes is
//! the one `snapshot` lays out and opens.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::capture::{self, should_capture, CaptureRange, PageHashes};
use super::corefile::{self, FileMapping, LoadRegion, ProcessIds, PsInfo};
use super::region::SnapRegion;
use super::roots::{roots_of, KnownLevel, Roots};
use super::snapshot::{
    parse_auxv, same_file, sealer, to_pb, Snapshot, SnapshotMeta, StoredRun, ThreadState, NOTE_OWNER,
    NT_MEMZINC_FAST_HASHES, NT_MEMZINC_LEAVES, NT_MEMZINC_META, NT_MEMZINC_PARENT, NT_MEMZINC_SEAL,
    NT_MEMZINC_TREE_LEVEL,
};
use super::track::Scan;
use crate::base::pb::snapshot as pb;
use crate::base::{write_atomically, Error, Result};
use crate::introspect::{
    self, Frozen, MapEntry, Symbol, ThreadRegisters, VmFlags, WriteProtected, NT_PRFPREG, NT_X86_XSTATE, PAGE_SIZE,
};

/// An incremental snapshot reads its pages during the freeze, rather than from a fork, when
/// they are at most this fraction of the captured memory: the fork's pause (copying every page
/// table: 43 ms at 4 GiB here) is then longer than the copy's.
const FORK_OR_FROZEN_READ: u64 = 32;

/// An incremental snapshot's previous one (`snapshot --since`), and where the pages not read
/// again go. The new snapshot takes the previous one's leaves and fast hashes for its own
/// (`Snapshot::take_page_hashes`): afterwards the previous one is good for its metadata and
/// pages only.
pub enum Since<'a> {
    /// The new core refers to the previous one for them: it stores only what was read.
    Refer(&'a mut Snapshot),
    /// Their bytes are copied from the previous one: a full core.
    Copy(&'a mut Snapshot),
}

impl<'a> Since<'a> {
    pub fn prev(&self) -> &Snapshot {
        match self {
            Since::Refer(p) | Since::Copy(p) => p,
        }
    }

    fn reborrow(&mut self) -> Since<'_> {
        match self {
            Since::Refer(p) => Since::Refer(p),
            Since::Copy(p) => Since::Copy(p),
        }
    }

    /// Its page hashes, and it as the rest of the snapshot reads it: `taken`, the hashes are
    /// moved out of the previous snapshot, else copied.
    fn split(self, taken: bool) -> (Prev<'a>, PageHashes) {
        let (prev, refer) = match self {
            Since::Refer(p) => (p, true),
            Since::Copy(p) => (p, false),
        };
        let hashes = match taken {
            true => prev.take_page_hashes(),
            false => prev.page_hashes(),
        };
        let prev: &'a Snapshot = prev;
        (if refer { Prev::Refer(prev) } else { Prev::Copy(prev) }, hashes)
    }
}

/// [`Since`] once its page hashes are the new snapshot's.
#[derive(Clone, Copy)]
enum Prev<'a> {
    Refer(&'a Snapshot),
    Copy(&'a Snapshot),
}

impl<'a> Prev<'a> {
    fn prev(self) -> &'a Snapshot {
        match self {
            Prev::Refer(p) | Prev::Copy(p) => p,
        }
    }
}

/// Summary of `take`, for the CLI.
#[derive(Debug, Serialize, Deserialize)]
pub struct TakeReport {
    pub root: String,
    pub regions: usize,
    pub captured_regions: usize,
    pub pages: u64,
    pub unreadable_pages: u64,
    pub bytes: u64,
    pub symbols: usize,
    pub threads: usize,
    pub fds: usize,
    /// Size of the core file.
    pub file_bytes: u64,
    /// How long the target was stopped, from the freeze to the thaw: with copy-on-write until
    /// its copy was forked, else until its last page was copied (it resumes before hashing
    /// and writing either way).
    pub frozen_ms: f64,
    /// Whether the pages were read while the target ran (see [`Pause::CopyOnWrite`]).
    #[serde(default)]
    pub copy_on_write: bool,
    /// How: "write-protect" (`introspect::WriteProtected`) or "fork" (`introspect::ForkedCopy`).
    #[serde(default)]
    pub copy_on_write_by: Option<String>,
    /// Copy-on-write only: memory held for the snapshot because the target wrote pages while
    /// they were read — with write-protect the pages copied before a write (at most at once);
    /// with a fork what the copy held alone by the end, plus its page tables — in bytes.
    #[serde(default)]
    pub extra_bytes: Option<u64>,
    /// Pages read from the target; the others came from the `since` snapshot.
    pub pages_from_target: u64,
    /// Root of the previous snapshot an incremental one was taken since.
    pub since: Option<String>,
    /// An incremental snapshot that refers to its parent: the parent as the new file names it.
    #[serde(default)]
    pub parent: Option<String>,
}

/// How a snapshot holds its target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pause {
    /// Frozen only to read its state; the pages are read while the target runs. Its private
    /// anonymous memory is write-protected before the freeze (`introspect::WriteProtected`:
    /// the freeze only protects again what was written since) and read through that view;
    /// the rest is read during the freeze. Where the view cannot be had or loses a page (the
    /// target empties or unmaps memory before it is read), the snapshot is taken again with a
    /// fork (`introspect::ForkedCopy`) — or with a fork only, with `MEMZINC_COW=fork`, and
    /// for a tracked process (its memory has `track`'s userfaultfd). Either way the image is
    /// the state at the freeze instant.
    #[default]
    CopyOnWrite,
    /// Frozen until every page is copied (`--stop-the-world`).
    StopTheWorld,
}

/// Freezes `pid`, snapshots it into the core file `out` (atomically) and resumes it.
pub fn take(pid: i32, out: &Path, progress: Option<&indicatif::ProgressBar>) -> Result<TakeReport> {
    take_since(pid, None, out, progress)
}

/// [`take`]; with `since`, the previous snapshot of a tracked process (`super::track`), only
/// the pages written after it are read from the target; the rest are the previous snapshot's,
/// referred to or copied as `since` says. The metadata, leaves and root are a full one's.
pub fn take_since(
    pid: i32,
    since: Option<Since<'_>>,
    out: &Path,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<TakeReport> {
    take_paused(pid, since, out, progress, Pause::default())
}

/// [`take_since`], holding the target as `pause` says.
pub fn take_paused(
    pid: i32,
    mut since: Option<Since<'_>>,
    out: &Path,
    progress: Option<&indicatif::ProgressBar>,
    pause: Pause,
) -> Result<TakeReport> {
    if let Some(since) = &since {
        check_not_over_parent(pid, out, since.prev(), matches!(since, Since::Refer(_)))?;
    }
    if let Some(since) = &since {
        check_since(pid, since.prev())?;
    }
    let mut viewed = false;
    match take_held(
        pid,
        since.as_mut().map(Since::reborrow),
        out,
        progress,
        pause,
        true,
        &mut viewed,
    ) {
        Err(Error::CopyOnWrite { why, .. }) if viewed => {
            tracing::warn!("pid {pid}: the write-protected view lost the freeze instant ({why}); taking the snapshot again with a fork");
            take_held(pid, since, out, progress, pause, false, &mut viewed)
        }
        other => other,
    }
}

/// [`take_paused`] once; `protect`: try the write-protected view first. `viewed` says whether
/// one was used.
fn take_held(
    pid: i32,
    since: Option<Since<'_>>,
    out: &Path,
    progress: Option<&indicatif::ProgressBar>,
    pause: Pause,
    protect: bool,
    viewed: &mut bool,
) -> Result<TakeReport> {
    let hold = match pause {
        Pause::StopTheWorld => Hold::StopTheWorld(Frozen::freeze(pid)?),
        // A fork's copy of a mapping with these flags is not the mapping: read before the
        // freeze (printing smaps walks every page table), checked again after. Not when the
        // pages written since `since` will be read during the freeze: neither a fork nor the
        // view (a tracked process has none) is wanted then.
        Pause::CopyOnWrite => {
            let flags = match since.is_some() && writes_little(pid)? {
                true => None,
                false => Some(introspect::vm_flags(pid)?),
            };
            let view = match (&flags, protect) {
                (Some(flags), true) => write_protected_view(pid, flags),
                _ => None,
            };
            *viewed = view.is_some();
            let frozen = Frozen::freeze(pid)?;
            introspect::fault_point(if view.is_some() { "wp-frozen" } else { "cow-frozen" });
            Hold::CopyOnWrite(frozen, flags, view)
        }
    };
    write_frozen(pid, hold, since, out, progress, None).map_err(killed_while_snapshotting(pid))
}

/// Whether a tracked process wrote so little since its last scan that an incremental snapshot
/// will read those pages during the freeze (`write_frozen` decides, frozen, on what it wrote by
/// then; should that be more, the flags are read frozen).
fn writes_little(pid: i32) -> Result<bool> {
    if super::track::load_tracking(pid)?.is_none() {
        return Ok(false);
    }
    let pagemap = super::track::open_pagemap(pid)?;
    let (mut total, mut written) = (0, 0);
    for m in introspect::read_maps(pid)?.iter().filter(|m| should_capture(m)) {
        total += m.end - m.start;
        written += match super::track::written_since_last_scan(&pagemap, m.start, m.end, Scan::Peek)? {
            Some(runs) => runs.iter().map(|(s, e)| e - s).sum(),
            None => m.end - m.start,
        };
    }
    Ok(written.saturating_mul(FORK_OR_FROZEN_READ) <= total)
}

/// Memory the write-protected view can hold: private anonymous mappings (the kernel protects
/// no other kind without features this one lacks), none with the flags a fork would not copy
/// faithfully (hugetlb, which the view cannot hold either, and MADV_DONTFORK/WIPEONFORK, which
/// it could: one rule for both routes; such mappings are small); the rest is read while frozen.
fn protectable(m: &MapEntry, flags: &[VmFlags]) -> bool {
    let anonymous = m.inode == 0
        && (m.path.is_empty() || m.path == "[heap]" || m.path == "[stack]" || m.path.starts_with("[anon:"));
    should_capture(m) && m.private() && anonymous && !flagged(flags, m.start, m.end)
}

/// Phase 1 of the write-protected view (`introspect::WriteProtected::start`), the target
/// running, before its freeze; `flags` are its `VmFlags` (`introspect::vm_flags`). `None`
/// where it cannot be had (the reason is logged): `MEMZINC_COW=fork`, a tracked process, a
/// kernel or target that refuses.
pub fn write_protected_view(pid: i32, flags: &[VmFlags]) -> Option<WriteProtected> {
    if std::env::var_os("MEMZINC_COW").is_some_and(|v| v == "fork") {
        return None;
    }
    if super::track::load_tracking(pid).ok()?.is_some() {
        return None;
    }
    let maps = introspect::read_maps(pid).ok()?;
    let ranges: Vec<(u64, u64)> = maps
        .iter()
        .filter(|m| protectable(m, flags))
        .map(|m| (m.start, m.end))
        .collect();
    match WriteProtected::start(pid, &ranges) {
        Ok(view) => {
            introspect::fault_point("wp-protected");
            Some(view)
        }
        Err(e) => {
            tracing::debug!("pid {pid}: no write-protected view ({e}); a fork is the copy");
            None
        }
    }
}

/// Writes the snapshot of the process `frozen` holds, with `checkpoint` in its metadata, and
/// keeps it frozen: the caller decides what happens to the process afterwards.
pub fn take_frozen(
    frozen: &Frozen,
    out: &Path,
    progress: Option<&indicatif::ProgressBar>,
    checkpoint: Option<pb::Checkpoint>,
) -> Result<TakeReport> {
    let pid = frozen.pid();
    write_frozen(pid, Hold::Keep(frozen), None, out, progress, checkpoint).map_err(killed_while_snapshotting(pid))
}

/// [`take_frozen`] for a process that goes on running: copy-on-write, it is thawed once its
/// state is taken (see [`Pause::CopyOnWrite`]); `flags` are its `VmFlags`
/// (`introspect::vm_flags`), read before it was frozen; `view` the write-protected view laid
/// before the freeze ([`write_protected_view`]), else a fork is the copy. A view that loses
/// a page fails with [`Error::CopyOnWrite`]: the caller takes it again without one.
pub fn take_frozen_cow(
    frozen: Frozen,
    flags: Vec<VmFlags>,
    view: Option<WriteProtected>,
    out: &Path,
    progress: Option<&indicatif::ProgressBar>,
    checkpoint: Option<pb::Checkpoint>,
) -> Result<TakeReport> {
    let pid = frozen.pid();
    write_frozen(
        pid,
        Hold::CopyOnWrite(frozen, Some(flags), view),
        None,
        out,
        progress,
        checkpoint,
    )
    .map_err(killed_while_snapshotting(pid))
}

/// What `write_frozen` hands the capture.
enum Freeze<'a> {
    ThawAfterCopy(Frozen),
    Keep(&'a Frozen),
    CopyOnWrite(Frozen),
    Protected(Frozen),
}

enum Prepared<'a> {
    Plain(Freeze<'a>),
    CopyOnWrite(Frozen, Box<CowPlan>),
    /// The view, and per captured range whether it is read during the freeze.
    Protected(Frozen, WriteProtected, Vec<bool>),
}

/// How `write_frozen` holds the target (see [`Pause`]).
enum Hold<'a> {
    StopTheWorld(Frozen),
    /// With the target's `VmFlags` read just before the freeze (`None`: not read, as a fork was
    /// not expected; read frozen if one is needed), and the write-protected view laid before
    /// it, if there is one (else a fork is the copy).
    CopyOnWrite(Frozen, Option<Vec<VmFlags>>, Option<WriteProtected>),
    Keep(&'a Frozen),
}

impl Hold<'_> {
    fn frozen(&self) -> &Frozen {
        match self {
            Hold::StopTheWorld(f) | Hold::CopyOnWrite(f, _, _) => f,
            Hold::Keep(f) => f,
        }
    }
}

/// VmFlags that make a fork's copy of a mapping differ from it: MADV_DONTFORK (absent),
/// MADV_WIPEONFORK (zeroes), hugetlb (its copy-on-write may take the page from the child).
const NOT_FORKED_FAITHFULLY: [&str; 3] = ["dc", "wf", "ht"];

fn flagged(flags: &[VmFlags], start: u64, end: u64) -> bool {
    flags
        .iter()
        .any(|((s, e), f)| *s < end && start < *e && f.iter().any(|f| NOT_FORKED_FAITHFULLY.contains(&f.as_str())))
}

type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

/// What identifies a mapped file's contents: device, inode, size, modification and change
/// times of the file mapped at `[start, end)` in process `pid` (`map_files` names the mapped
/// file itself, even if its path was replaced).
fn file_stamp(pid: i32, start: u64, end: u64) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/map_files/{start:x}-{end:x}")).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// The copy-on-write set-up, while frozen: which captured ranges are read during the freeze,
/// the stamps of the mapped files the copy will be read through.
struct CowPlan {
    copy: introspect::ForkedCopy,
    during_freeze: Vec<bool>,
    overlay: Vec<(u64, Vec<u8>)>,
    /// Captured file-backed ranges read from the copy, with the file's stamp at the freeze.
    files: Vec<(u64, u64, String, Option<FileStamp>)>,
    flags: Vec<VmFlags>,
}

fn plan_cow(frozen: &Frozen, captured: &[&SnapRegion], flags: Vec<VmFlags>) -> Result<CowPlan> {
    let pid = frozen.pid();
    // Before anything runs in the thread the fork borrows.
    let overlay: Vec<(u64, Vec<u8>)> = introspect::ForkedCopy::rseq_page(pid, frozen.tids()[0])?
        .into_iter()
        .collect();
    let copy = introspect::ForkedCopy::fork(frozen)?;
    introspect::fault_point("cow-forked");
    let maps: Vec<MapEntry> = captured.iter().map(|r| r.map.clone()).collect();
    let missing = match copy.missing(&maps) {
        Ok(m) => m,
        Err(e) => {
            let _ = copy.finish_frozen(frozen);
            return Err(e);
        }
    };
    let mut files = Vec::new();
    let during_freeze: Vec<bool> = captured
        .iter()
        .zip(missing)
        .map(|(r, missing)| {
            let m = &r.map;
            let file_backed = m.inode != 0 && m.path.starts_with('/');
            let stamp = file_backed.then(|| file_stamp(pid, m.start, m.end)).flatten();
            // A fork shares shared memory instead of copying it: read while frozen.
            let during = missing || !m.private() || flagged(&flags, m.start, m.end) || (file_backed && stamp.is_none());
            if file_backed && !during {
                files.push((m.start, m.end, m.path.clone(), stamp));
            }
            during
        })
        .collect();
    let early: u64 = captured
        .iter()
        .zip(&during_freeze)
        .filter(|(_, d)| **d)
        .map(|(r, _)| (r.map.end - r.map.start) / PAGE_SIZE)
        .sum();
    tracing::debug!("copy-on-write: {early} pages to read during the freeze, the rest from the copy");
    Ok(CowPlan {
        copy,
        during_freeze,
        overlay,
        files,
        flags,
    })
}

/// After the copy was read: a mapped file whose contents may have changed meanwhile, or a
/// mapping that became MADV_WIPEONFORK/DONTFORK, makes the copy's pages not the freeze
/// instant's; the snapshot is refused rather than silently different.
fn check_cow(pid: i32, plan: &CowPlan, captured: &[(u64, u64, bool)]) -> Result<()> {
    let copy = plan.copy.pid();
    for (start, end, path, stamp) in &plan.files {
        if file_stamp(copy, *start, *end) != *stamp {
            return Err(Error::CopyOnWrite {
                pid,
                why: format!("{path} changed while its mapping was being read"),
            });
        }
    }
    let now = introspect::vm_flags(pid).unwrap_or_default();
    for &(start, end, during) in captured {
        if !during && flagged(&now, start, end) && !flagged(&plan.flags, start, end) {
            return Err(Error::CopyOnWrite {
                pid,
                why: format!(
                    "the mapping at {start:#x} became MADV_DONTFORK, MADV_WIPEONFORK or hugetlb during the snapshot"
                ),
            });
        }
    }
    Ok(())
}

/// Once frozen, a process that vanishes (or turns zombie) was killed under us.
fn killed_while_snapshotting(pid: i32) -> impl Fn(Error) -> Error {
    move |e| match e {
        Error::NoSuchProcess { .. } | Error::Zombie { .. } => Error::TargetExited {
            pid,
            during: "snapshotting it",
        },
        e => e,
    }
}

/// A snapshot since `prev` may not be written over a file `prev` refers to for its pages (at
/// any depth of its chain): they would be lost to `prev`. One that refers to `prev`, `refer`,
/// may not be written over `prev` either: the pages it does not store would be lost with it.
fn check_not_over_parent(pid: i32, out: &Path, prev: &Snapshot, refer: bool) -> Result<()> {
    if refer && same_file(out, &prev.path) {
        return Err(Error::NotIncremental {
            pid,
            why: format!(
                "{} would replace {}, which holds the pages it does not store; write it to another file (or take it --merged)",
                out.display(),
                prev.path.display()
            ),
        });
    }
    if let Some(ancestor) = prev.ancestor_paths().into_iter().find(|a| same_file(out, a)) {
        return Err(Error::NotIncremental {
            pid,
            why: format!(
                "{} would replace {}, which {} refers to for its pages; write it to another file",
                out.display(),
                ancestor.display(),
                prev.path.display()
            ),
        });
    }
    Ok(())
}

/// `prev` can serve `--since` only if it is the snapshot that made the tracking's last scan.
fn check_since(pid: i32, prev: &Snapshot) -> Result<()> {
    let refuse = |why: String| Error::NotIncremental { pid, why };
    let state = super::track::load_tracking(pid)?
        .ok_or_else(|| refuse(format!("it is not tracked (run `memzinc track --pid {pid}` first)")))?;
    if prev.meta.pid != pid {
        return Err(refuse(format!(
            "{} is a snapshot of pid {}",
            prev.path.display(),
            prev.meta.pid
        )));
    }
    if state.last_root.as_deref() != Some(prev.meta.root.as_str()) {
        return Err(refuse(format!(
            "{} is not its latest snapshot since tracking began; take a full one",
            prev.path.display()
        )));
    }
    Ok(())
}

fn write_frozen(
    pid: i32,
    hold: Hold<'_>,
    since: Option<Since<'_>>,
    out: &Path,
    progress: Option<&indicatif::ProgressBar>,
    checkpoint: Option<pb::Checkpoint>,
) -> Result<TakeReport> {
    // The previous snapshot's page hashes become this one's (`capture`). Copied, not taken,
    // when a write-protected view is in play: losing the freeze instant takes the snapshot
    // again (`take_paused`), which needs them.
    let viewed = matches!(hold, Hold::CopyOnWrite(_, _, Some(_)));
    let (since, prev_hashes) = match since.map(|s| s.split(!viewed)) {
        Some((prev, hashes)) => (Some(prev), Some(hashes)),
        None => (None, None),
    };
    let maps = introspect::read_maps(pid)?;
    let exe = introspect::exe_path(pid)?;
    let comm = introspect::comm(pid)?;
    // With copy-on-write the symbols are read after the thaw (through the copy, if forked).
    let cow = matches!(hold, Hold::CopyOnWrite(..));
    let symbols = if cow {
        Vec::new()
    } else {
        read_symbols(pid, pid, &maps, &exe)?
    };
    let registers = hold.frozen().registers()?;
    let stat = introspect::stat(pid)?;
    let (uid, gid) = introspect::ids(pid)?;
    let cmdline_raw = introspect::cmdline(pid)?;
    let auxv_raw = introspect::auxv(pid)?;
    let fds = introspect::fds(pid)?;

    // Headers, padding to a page, then the captured regions' pages in map order.
    let data_start = corefile::data_start(maps.len());
    let (offsets, data_end) = corefile::place(data_start, maps.iter().map(|m| (m.end - m.start, should_capture(m))));
    let mut regions: Vec<SnapRegion> = maps
        .into_iter()
        .zip(offsets)
        .map(|(map, data_offset)| SnapRegion {
            captured: should_capture(&map),
            map,
            data_offset,
            unreadable_pages: Vec::new(),
        })
        .collect();
    let total = data_end - data_start;
    if let Some(p) = progress {
        p.set_length(total);
    }

    // A tracked process: the kernel says which pages were written since the last snapshot, and
    // the next interval starts now, while frozen. Until this snapshot is on disk the state
    // names no snapshot, so a failure here cannot make a later `--since` wrong.
    let tracking = super::track::load_tracking(pid)?;
    let written: Vec<Option<Vec<(u64, u64)>>> = match &tracking {
        None => Vec::new(),
        Some(state) => {
            super::track::save_tracking(&super::track::TrackState {
                last_root: None,
                last_seal: None,
                ..state.clone()
            })?;
            let pagemap = super::track::open_pagemap(pid)?;
            regions
                .iter()
                .filter(|r| r.captured)
                .map(|r| super::track::written_since_last_scan(&pagemap, r.map.start, r.map.end, Scan::Reset))
                .collect::<Result<_>>()?
        }
    };
    let ranges: Vec<CaptureRange> = regions
        .iter()
        .filter(|r| r.captured)
        .enumerate()
        .map(|(i, r)| CaptureRange {
            start: r.map.start,
            end: r.map.end,
            file_offset: r.data_offset,
            reuse: since.and_then(|since| {
                since
                    .prev()
                    .reuse(&r.map, written.get(i)?.as_ref()?, matches!(since, Prev::Copy(_)))
            }),
            packed: None,
        })
        .collect();
    // Referring to the previous snapshot: the file holds only the runs read, back to back after
    // headers with one PT_LOAD per run.
    let refer = matches!(since, Some(Prev::Refer(_)));
    let mut ranges = ranges;
    let (data_end, stored) = if refer {
        let count: usize = ranges.iter().map(|r| r.runs().len()).sum();
        let start = corefile::data_start(count);
        let mut at = start;
        let mut stored = Vec::with_capacity(count);
        for r in &mut ranges {
            let runs = r.runs();
            let mut offsets = Vec::with_capacity(runs.len());
            for (s, e) in runs {
                offsets.push(at);
                stored.push(StoredRun {
                    start: s,
                    end: e,
                    offset: at,
                });
                at += e - s;
            }
            r.packed = Some(offsets);
        }
        (at, Some(stored))
    } else {
        (data_end, None)
    };
    let parent_note = match since {
        Some(Prev::Refer(prev)) => Some(pb::ParentImage {
            root: prev.root().to_vec(),
            file: parent_name(&prev.path, out),
        }),
        _ => None,
    };
    let pages_reused: u64 = ranges
        .iter()
        .filter(|r| r.reuse.is_some())
        .map(|r| (r.end - r.start) / PAGE_SIZE)
        .sum();
    tracing::debug!("snapshot: {pages_reused} pages in regions that can reuse the previous snapshot");

    let to_read: u64 = ranges.iter().flat_map(|r| r.runs()).map(|(s, e)| e - s).sum();
    let prepared = match hold {
        Hold::StopTheWorld(f) => Prepared::Plain(Freeze::ThawAfterCopy(f)),
        Hold::Keep(f) => Prepared::Plain(Freeze::Keep(f)),
        Hold::CopyOnWrite(f, flags, Some(view)) => {
            let flags = flags.unwrap_or_default();
            let captured: Vec<(u64, u64, bool)> = regions
                .iter()
                .filter(|r| r.captured)
                .map(|r| (r.map.start, r.map.end, protectable(&r.map, &flags)))
                .collect();
            match view.at_freeze(&captured) {
                Ok(during) => Prepared::Protected(f, view, during),
                Err(e) => {
                    view.finish();
                    tracing::warn!("pid {pid}: no write-protected view ({e}); the target stays stopped for the copy");
                    Prepared::Plain(Freeze::ThawAfterCopy(f))
                }
            }
        }
        // An incremental snapshot that reads little: its pages are copied during the freeze, a
        // pause that grows with what was written, where a fork's grows with the whole memory
        // (it copies every page table).
        Hold::CopyOnWrite(f, _, None) if since.is_some() && to_read.saturating_mul(FORK_OR_FROZEN_READ) <= total => {
            tracing::debug!("snapshot: {to_read} bytes written since the previous one, read during the freeze");
            Prepared::Plain(Freeze::ThawAfterCopy(f))
        }
        Hold::CopyOnWrite(f, flags, None) => {
            let captured: Vec<&SnapRegion> = regions.iter().filter(|r| r.captured).collect();
            let flags = match flags {
                Some(flags) => flags,
                None => introspect::vm_flags(pid)?,
            };
            match plan_cow(&f, &captured, flags) {
                Ok(plan) => Prepared::CopyOnWrite(f, Box::new(plan)),
                Err(e @ (Error::NoSuchProcess { .. } | Error::Zombie { .. } | Error::TargetExited { .. })) => {
                    return Err(e)
                }
                // A target dying under the fork fails it in many ways: that is what to say.
                Err(_)
                    if introspect::check_target(pid).is_err()
                        || introspect::read_maps(pid).is_ok_and(|m| m.is_empty()) =>
                {
                    return Err(Error::TargetExited {
                        pid,
                        during: "snapshotting it",
                    })
                }
                // No copy (no memory for the fork, the process limit, ...): still a correct
                // snapshot, held as before.
                Err(e) => {
                    tracing::warn!("pid {pid}: no copy-on-write ({e}); the target stays stopped for the copy");
                    Prepared::Plain(Freeze::ThawAfterCopy(f))
                }
            }
        }
    };

    let mut seal = None;
    let report = write_atomically(out, |w| {
        let io = |e| Error::io(out, e);
        // The page data goes in at its offsets (see `capture`); the headers, which need the
        // note segment's size, and the notes after the data come last.
        let mut view = None;
        let (freeze, mut plan) = match prepared {
            Prepared::Plain(freeze) => (freeze, None),
            Prepared::CopyOnWrite(frozen, plan) => (Freeze::CopyOnWrite(frozen), Some(plan)),
            Prepared::Protected(frozen, protected, during) => {
                view = Some((protected, during));
                (Freeze::Protected(frozen), None)
            }
        };
        let hold = match (freeze, plan.as_deref_mut()) {
            (Freeze::CopyOnWrite(frozen), Some(plan)) => capture::Hold::CopyOnWrite(capture::CowSource {
                frozen,
                copy: &mut plan.copy,
                during_freeze: &plan.during_freeze,
                overlay: &plan.overlay,
            }),
            (Freeze::Protected(frozen), _) => {
                let (view, during) = view.as_ref().expect("a write-protected freeze comes with its view");
                capture::Hold::Protected(capture::ProtectedSource {
                    frozen,
                    view,
                    during_freeze: during,
                })
            }
            (Freeze::ThawAfterCopy(f), _) => capture::Hold::ThawAfterCopy(f),
            (Freeze::Keep(f), _) => capture::Hold::Keep(f),
            (Freeze::CopyOnWrite(_), None) => unreachable!("a copy-on-write freeze comes with its plan"),
        };
        let captured = capture::capture(pid, hold, &ranges, prev_hashes, w.get_ref(), out)?;
        let frozen_ms = captured.frozen_for.as_secs_f64() * 1e3;
        let copy_on_write = plan.is_some() || view.is_some();
        let copy_on_write_by = if plan.is_some() {
            Some("fork".to_string())
        } else {
            view.is_some().then(|| "write-protect".to_string())
        };
        let mut symbols = symbols;
        let mut extra_bytes = None;
        if let Some((view, _)) = view {
            view.check()?;
            introspect::fault_point("wp-read");
            extra_bytes = Some(view.extra_bytes());
            view.finish();
            // After the thaw: the modules are read from the target itself.
            symbols = read_symbols(pid, pid, &maps_of(&regions), &exe)?;
        }
        if cow && !copy_on_write {
            // Held for copy-on-write but read during the freeze (an incremental snapshot that
            // reads little): the modules are read from the target, running again.
            symbols = read_symbols(pid, pid, &maps_of(&regions), &exe)?;
        }
        if let Some(plan) = plan {
            symbols = read_symbols(pid, plan.copy.pid(), &maps_of(&regions), &exe)?;
            extra_bytes = plan.copy.extra_bytes().ok();
            let read: Vec<(u64, u64, bool)> = ranges
                .iter()
                .zip(&plan.during_freeze)
                .map(|(r, &during)| (r.start, r.end, during))
                .collect();
            check_cow(pid, &plan, &read)?;
            introspect::fault_point("cow-read");
            plan.copy.finish()?;
        }
        let pages_from_target = captured.pages_read;
        for (r, unreadable) in regions.iter_mut().filter(|r| r.captured).zip(captured.unreadable) {
            r.unreadable_pages = unreadable;
        }
        let (PageHashes { leaves, fast_hashes }, fresh) = (captured.hashes, captured.fresh);
        // Off the cores the running target keeps busy while the rest is written (the final
        // fsync and rename come after).
        let _kept_off = captured.kept_off;
        if let Some(p) = progress {
            p.inc(total);
        }
        // The process may have died while we read: an empty read of everything is not a snapshot.
        introspect::check_target(pid).map_err(|_| Error::TargetExited {
            pid,
            during: "snapshotting it",
        })?;
        w.seek(SeekFrom::Start(data_end)).map_err(io)?;

        // The notes about the pages first: on their way to the disk while the roots are hashed.
        let after_capture = std::time::Instant::now();
        let mut notes = SealedWriter::new(w, out);
        notes.note(NOTE_OWNER, NT_MEMZINC_LEAVES, leaves.as_flattened())?;
        // Little-endian, as the note holds them (x86_64).
        notes.note(
            NOTE_OWNER,
            NT_MEMZINC_FAST_HASHES,
            object::pod::bytes_of_slice(&fast_hashes),
        )?;
        notes.start_writeback(data_end)?;
        let page_count = leaves.len() as u64;
        let prev_level = since.and_then(|s| {
            let prev = s.prev();
            prev.known_level().map(|kept| KnownLevel {
                kept,
                leaf_count: prev.meta.page_count as usize,
                fresh: &fresh,
            })
        });
        let Roots {
            root,
            pages_root,
            kept_level,
        } = roots_of(&regions, &symbols, &leaves, prev_level);
        tracing::debug!("snapshot: roots in {:?}", after_capture.elapsed());
        let meta = SnapshotMeta {
            memzinc_version: env!("CARGO_PKG_VERSION").to_string(),
            pid,
            comm,
            exe: exe.display().to_string(),
            cmdline: split_cmdline(&cmdline_raw),
            taken_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            threads: registers.into_iter().map(ThreadState::from).collect(),
            fds,
            auxv: parse_auxv(&auxv_raw),
            regions,
            symbols,
            root: hex::encode(root),
            pages_root: hex::encode(pages_root),
            page_count,
            checkpoint,
        };
        let ids = ProcessIds {
            ppid: stat.ppid,
            pgrp: stat.pgrp,
            sid: stat.session,
        };
        let psinfo = PsInfo {
            state: stat.state,
            nice: stat.nice,
            flags: stat.flags,
            uid,
            gid,
            pid,
            ids,
            comm: &meta.comm,
            cmdline: &cmdline_raw,
        };
        let (notes_len, notes_seal) = write_notes(
            notes,
            &meta,
            ids,
            &psinfo,
            &auxv_raw,
            kept_level.as_flattened(),
            parent_note.as_ref(),
        )?;
        seal = Some(notes_seal);
        tracing::debug!(
            "snapshot: notes written {:?} after the capture",
            after_capture.elapsed()
        );

        w.seek(SeekFrom::Start(0)).map_err(io)?;
        let headers = match &stored {
            Some(stored) => corefile::program_headers(data_end, notes_len, stored_loads(&meta.regions, stored)),
            None => corefile::program_headers(data_end, notes_len, meta.regions.iter().map(SnapRegion::load)),
        };
        w.write_all(&headers).map_err(io)?;
        Ok(TakeReport {
            root: meta.root.clone(),
            regions: meta.regions.len(),
            captured_regions: meta.regions.iter().filter(|r| r.captured).count(),
            pages: page_count,
            unreadable_pages: meta.regions.iter().map(|r| r.unreadable_pages.len() as u64).sum(),
            bytes: total,
            symbols: meta.symbols.len(),
            threads: meta.threads.len(),
            fds: meta.fds.len(),
            file_bytes: data_end + notes_len,
            frozen_ms,
            copy_on_write,
            copy_on_write_by,
            extra_bytes,
            pages_from_target,
            since: since.map(|since| since.prev().meta.root.clone()),
            parent: parent_note.as_ref().map(|p| p.file.clone()),
        })
    })?;

    if let Some(state) = tracking {
        super::track::save_tracking(&super::track::TrackState {
            last_root: Some(report.root.clone()),
            last_seal: seal.map(hex::encode),
            ..state
        })?;
    }
    Ok(report)
}

/// How an incremental snapshot names its parent: by file name when both are in one directory
/// (the pair can be moved together), else by absolute path.
fn parent_name(parent: &Path, out: &Path) -> String {
    let dir = |p: &Path| {
        let d = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        d.canonicalize().ok()
    };
    match (dir(parent), dir(out), parent.file_name()) {
        (Some(a), Some(b), Some(name)) if a == b => name.to_string_lossy().into_owned(),
        _ => std::path::absolute(parent)
            .unwrap_or_else(|_| parent.to_path_buf())
            .display()
            .to_string(),
    }
}

/// The PT_LOADs of an incremental snapshot that refers to its parent: one per stored run, with
/// its region's permissions.
fn stored_loads<'a>(regions: &'a [SnapRegion], stored: &'a [StoredRun]) -> impl Iterator<Item = LoadRegion<'a>> {
    stored.iter().map(|run| {
        let perms = regions
            .iter()
            .find(|r| r.map.start <= run.start && run.end <= r.map.end)
            .map_or("r--p", |r| r.map.perms.as_str());
        LoadRegion {
            start: run.start,
            end: run.end,
            data_offset: run.offset,
            captured: true,
            perms,
        }
    })
}

fn maps_of(regions: &[SnapRegion]) -> Vec<MapEntry> {
    regions.iter().map(|r| r.map.clone()).collect()
}

/// The symbols of every module `maps` (process `pid`'s) names, read through process `via`
/// (the target, or its forked copy). Without symbols the snapshot is still one, unless the
/// target is gone.
fn read_symbols(pid: i32, via: i32, maps: &[MapEntry], exe: &Path) -> Result<Vec<Symbol>> {
    let started = std::time::Instant::now();
    let symbols = match introspect::snapshot_symbols(via, maps) {
        Ok(symbols) => symbols,
        // A target killed under us is that error (one line), not a snapshot without symbols:
        // whether the reading itself found it gone, or its state says so now (a process dying
        // loses its memory before /proc shows it a zombie).
        Err(e @ (Error::NoSuchProcess { .. } | Error::Zombie { .. } | Error::TargetExited { .. })) => return Err(e),
        Err(e) => {
            introspect::check_target(pid)?;
            // Dying of SIGKILL while frozen, its memory and executable already let go: the
            // exe link is gone before /proc shows a zombie.
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
                return Err(Error::TargetExited {
                    pid,
                    during: "reading its symbols",
                });
            }
            tracing::warn!("no symbols for {}: {e}", exe.display());
            Vec::new()
        }
    };
    tracing::debug!("snapshot: {} symbols read in {:?}", symbols.len(), started.elapsed());
    Ok(symbols)
}

impl From<ThreadRegisters> for ThreadState {
    fn from(t: ThreadRegisters) -> ThreadState {
        ThreadState {
            tid: t.tid,
            name: t.name,
            regs: t.regs,
            fpregs: t.fpregs,
            xstate: t.xstate,
        }
    }
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Writes the rest of the PT_NOTE segment after the notes `out` holds (the leaves and fast
/// hashes), the seal last. Its length and seal. Thread order is `meta.threads` order (main
/// thread first).
fn write_notes(
    mut out: SealedWriter<'_>,
    meta: &SnapshotMeta,
    ids: ProcessIds,
    psinfo: &PsInfo,
    auxv_raw: &[u8],
    kept_level: &[u8],
    parent: Option<&pb::ParentImage>,
) -> Result<(u64, [u8; 32])> {
    let path = out.path;
    let corrupt = |why: String| Error::io(path, std::io::Error::other(why));
    let files: Vec<FileMapping> = meta
        .regions
        .iter()
        .filter(|r| r.map.path.starts_with('/'))
        .map(|r| FileMapping {
            start: r.map.start,
            end: r.map.end,
            offset: r.map.offset,
            path: &r.map.path,
        })
        .collect();
    let meta_bytes = to_pb(meta).encode_to_vec();
    let mut notes = Vec::with_capacity(meta_bytes.len() + (64 << 10));
    for (i, t) in meta.threads.iter().enumerate() {
        let status = corefile::prstatus(t.tid, ids, &t.regs, !t.fpregs.is_empty());
        corefile::push_note(&mut notes, "CORE", object::elf::NT_PRSTATUS, &status).map_err(corrupt)?;
        if i == 0 {
            corefile::push_note(
                &mut notes,
                "CORE",
                object::elf::NT_PRPSINFO,
                &corefile::prpsinfo(psinfo),
            )
            .map_err(corrupt)?;
            corefile::push_note(&mut notes, "CORE", object::elf::NT_AUXV, auxv_raw).map_err(corrupt)?;
            corefile::push_note(&mut notes, "CORE", object::elf::NT_FILE, &corefile::nt_file(&files))
                .map_err(corrupt)?;
        }
        if !t.fpregs.is_empty() {
            corefile::push_note(&mut notes, "CORE", NT_PRFPREG, &t.fpregs).map_err(corrupt)?;
        }
        if !t.xstate.is_empty() {
            corefile::push_note(&mut notes, "LINUX", NT_X86_XSTATE, &t.xstate).map_err(corrupt)?;
        }
    }
    corefile::push_note(&mut notes, NOTE_OWNER, NT_MEMZINC_META, &meta_bytes).map_err(corrupt)?;
    if let Some(parent) = parent {
        corefile::push_note(&mut notes, NOTE_OWNER, NT_MEMZINC_PARENT, &parent.encode_to_vec()).map_err(corrupt)?;
    }
    out.write(&notes)?;
    out.note(NOTE_OWNER, NT_MEMZINC_TREE_LEVEL, kept_level)?;
    let seal = *out.sealer.finalize().as_bytes();
    notes.clear();
    corefile::push_note(&mut notes, NOTE_OWNER, NT_MEMZINC_SEAL, &seal).map_err(corrupt)?;
    out.w.write_all(&notes).map_err(|e| Error::io(out.path, e))?;
    Ok((out.len + notes.len() as u64, seal))
}

/// A core's notes on their way to its file, hashed for the seal and counted.
struct SealedWriter<'w> {
    w: &'w mut BufWriter<File>,
    /// The core's path, for errors.
    path: &'w Path,
    sealer: blake3::Hasher,
    len: u64,
}

impl<'w> SealedWriter<'w> {
    fn new(w: &'w mut BufWriter<File>, path: &'w Path) -> SealedWriter<'w> {
        SealedWriter {
            w,
            path,
            sealer: sealer(),
            len: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.sealer.update(bytes);
        self.len += bytes.len() as u64;
        self.w.write_all(bytes).map_err(|e| Error::io(self.path, e))
    }

    /// One note, its descriptor written from where it is.
    fn note(&mut self, name: &str, n_type: u32, desc: &[u8]) -> Result<()> {
        let mut head = Vec::new();
        corefile::push_note_head(&mut head, name, n_type, desc.len())
            .map_err(|why| Error::io(self.path, std::io::Error::other(why)))?;
        self.write(&head)?;
        self.write(desc)?;
        self.write(corefile::note_padding(desc.len()))
    }

    /// Starts writing what is written so far, from file offset `start` on, to the disk (the
    /// final fsync then waits for less).
    fn start_writeback(&mut self, start: u64) -> Result<()> {
        self.w.flush().map_err(|e| Error::io(self.path, e))?;
        // SAFETY: sync_file_range takes no pointers; a bad range or descriptor is an error.
        let done = unsafe {
            nix::libc::sync_file_range(
                self.w.get_ref().as_raw_fd(),
                start as i64,
                self.len as i64,
                nix::libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if done != 0 {
            // Only a head start: the fsync at the end is what makes the file durable.
            tracing::debug!("sync_file_range: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use memzinc_verifier::merkle;

    use super::super::snapshot::AuxEntry;
    use super::*;
    use crate::base::Sha2;

    #[test]
    fn auxv_and_cmdline_parsing() {
        let mut raw = Vec::new();
        for w in [6u64, 4096, 25, 0x7ffc0000, 0, 0] {
            raw.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(
            parse_auxv(&raw),
            vec![
                AuxEntry { key: 6, value: 4096 },
                AuxEntry {
                    key: 25,
                    value: 0x7ffc0000
                }
            ]
        );
        assert_eq!(split_cmdline(b"a\0b c\0\0"), ["a", "b c", ""]);
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn parallel_page_leaves_equal_sequential_ones() {
        let pages: Vec<u8> = (0..300 * PAGE_SIZE as usize).map(|i| (i * 7 / 4096) as u8).collect();
        let readable: Vec<bool> = (0..300).map(|i| i % 37 != 5).collect();
        let expected: Vec<[u8; 32]> = pages
            .chunks(PAGE_SIZE as usize)
            .enumerate()
            .map(|(i, p)| {
                let a = 0x7000_0000 + i as u64 * PAGE_SIZE;
                if readable[i] {
                    merkle::page_leaf::<Sha2>(a, p)
                } else {
                    merkle::unreadable_leaf::<Sha2>(a)
                }
            })
            .collect();
        assert_eq!(capture::page_leaves(0x7000_0000, &pages, &readable), expected);
    }
}
