//! Incremental tracking: which pages a process wrote since its last snapshot, so the next one
//! reads only those (`memzinc track`, `memzinc snapshot --since PREV`).
//!
//! Soft-dirty bits are not available on this kernel (notes/process.md). Instead:
//!
//! - `track` freezes the target and makes *it* call `userfaultfd(2)` (one syscall injected at
//!   its vdso, `introspect::Injector`), so
//!   the userfaultfd belongs to the target's memory; memzinc fetches a duplicate with
//!   `pidfd_getfd`, enables asynchronous write-protect (`UFFD_FEATURE_WP_ASYNC`: a write fault is
//!   resolved by the kernel itself, the target never blocks, nothing needs serving), registers
//!   every captured mapping and write-protects all of its pages, then closes its duplicate and
//!   exits. The userfaultfd stays open in the target (an `anon_inode:[userfaultfd]` fd), and
//!   with it the tracking: no memzinc process keeps running.
//! - every later snapshot of a tracked process asks the kernel, while the target is frozen,
//!   with the `PAGEMAP_SCAN` ioctl on `/proc/PID/pagemap`, for the pages written since the last
//!   scan and write-protects them again in the same call; `PM_SCAN_CHECK_WPASYNC` makes the
//!   call fail for memory that is not tracked (a mapping created after `track`, or after an
//!   exec), which memzinc then reads in full.
//!
//! The kernel's "written since the last scan" is only meaningful relative to the snapshot that
//! made that scan, so memzinc keeps a small state file per tracked process
//! (`$MEMZINC_STATE_DIR`, default `/run/memzinc`): the process's start time (pid reuse), the
//! fd number in the target, and the root of the snapshot that made the last scan. It is
//! cleared before every scan and set again only once the snapshot is on disk: `--since PREV` is
//! accepted only when PREV is that snapshot, so a failed or foreign snapshot in between forces
//! a full one rather than a wrong one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::libc;
use serde::{Deserialize, Serialize};

use crate::base::{Error, Result};
use crate::introspect::uffd::{
    ioctl, ForeignUffd, PageRegion, PmScanArg, PAGEMAP_SCAN, PAGE_IS_WRITTEN, PM_SCAN_CHECK_WPASYNC,
    PM_SCAN_WP_MATCHING, UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED,
};
use crate::introspect::{self, Frozen, Injector};

/// What memzinc remembers of a tracked process between commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackState {
    pub pid: i32,
    /// `/proc/PID/stat` start time: the same pid with another start time is another process.
    pub start_time: u64,
    /// The userfaultfd's number in the target.
    pub uffd: i32,
    /// Mappings registered at `track` time (start, end).
    pub tracked: Vec<(u64, u64)>,
    /// Root (hex) of the snapshot that made the last scan; `None` until one succeeds, and while
    /// a snapshot is being taken.
    pub last_root: Option<String>,
    /// The seal (hex) over that snapshot's notes: a `--since` file with this seal has the notes,
    /// leaves included, that memzinc hashed into `last_root`, so they need not be hashed again.
    #[serde(default)]
    pub last_seal: Option<String>,
}

/// Summary of `track`, for the CLI.
#[derive(Debug, Serialize)]
pub struct TrackReport {
    pub pid: i32,
    pub uffd: i32,
    pub tracked_regions: usize,
    pub tracked_bytes: u64,
    /// Captured mappings the kernel would not register (their pages are always read in full).
    pub untracked_regions: usize,
    pub state_file: PathBuf,
    /// Whether the process was tracked already (nothing was changed then).
    pub already: bool,
}

/// Where tracking state lives: `$MEMZINC_STATE_DIR`, else `/run/memzinc`.
pub fn tracking_dir() -> PathBuf {
    std::env::var_os("MEMZINC_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/memzinc"))
}

fn state_path(pid: i32) -> PathBuf {
    tracking_dir().join(format!("track-{pid}.json"))
}

/// The tracking state of `pid`, if this very process (same start time) is tracked and its
/// userfaultfd is still open.
pub fn load_tracking(pid: i32) -> Result<Option<TrackState>> {
    let path = state_path(pid);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let state: TrackState = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.clone(),
        kind: "tracking state",
        why: e.to_string(),
    })?;
    let alive = introspect::stat(pid).is_ok_and(|s| s.start_time == state.start_time)
        && std::fs::read_link(format!("/proc/{pid}/fd/{}", state.uffd))
            .is_ok_and(|l| l.to_string_lossy().contains("userfaultfd"));
    if !alive {
        // Another process now has the pid, or the target closed the fd: stale.
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(state))
}

pub(super) fn save_tracking(state: &TrackState) -> Result<()> {
    let dir = tracking_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::io(&dir, std::io::Error::other(e)))?;
    crate::base::write_file_atomically(&state_path(state.pid), &bytes)
}

/// Starts tracking `pid`'s writes (see the module comment). Idempotent.
pub fn track(pid: i32) -> Result<TrackReport> {
    let frozen = Frozen::freeze(pid)?;
    if let Some(state) = load_tracking(pid)? {
        return Ok(report(&state, 0, true));
    }
    let stat = introspect::stat(pid)?;
    let maps = introspect::read_maps(pid)?;
    let inject = Injector::in_frozen(&frozen, "tracking it")?;
    let uffd = ForeignUffd::open(
        pid,
        &inject,
        UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
        "UFFDIO_API (async write-protect)",
    )?;
    let fd = uffd.target_fd;
    let result = (|| {
        let mut tracked = Vec::new();
        let mut untracked = 0;
        for m in maps.iter().filter(|m| super::capture::should_capture(m) && m.private()) {
            if let Err(e) = uffd.register_wp(m.start, m.end) {
                tracing::debug!("track: {:#x}-{:#x} {} not registered: {e}", m.start, m.end, m.path);
                untracked += 1;
                continue;
            }
            uffd.write_protect(m.start, m.end, true)?;
            tracked.push((m.start, m.end));
        }
        let state = TrackState {
            pid,
            start_time: stat.start_time,
            uffd: fd,
            tracked,
            last_root: None,
            last_seal: None,
        };
        save_tracking(&state)?;
        Ok(report(&state, untracked, false))
    })();
    if result.is_err() {
        // Leave nothing behind in the target: its fd is closed again (the registrations go with it).
        let _ = inject.call("close", libc::SYS_close, &[fd as u64]);
    }
    drop(frozen);
    result
}

fn report(state: &TrackState, untracked: usize, already: bool) -> TrackReport {
    TrackReport {
        pid: state.pid,
        uffd: state.uffd,
        tracked_regions: state.tracked.len(),
        tracked_bytes: state.tracked.iter().map(|(s, e)| e - s).sum(),
        untracked_regions: untracked,
        state_file: state_path(state.pid),
        already,
    }
}

/// Opens the target's pagemap for [`written_since_last_scan`].
pub(super) fn open_pagemap(pid: i32) -> Result<File> {
    let path = format!("/proc/{pid}/pagemap");
    File::open(&path).map_err(|e| Error::io(path, e))
}

/// What a scan of the written pages does to them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// Write-protects them again, in the same atomic `PAGEMAP_SCAN`: the next interval starts.
    Reset,
    /// Leaves them as they are (an estimate ahead of the scan that resets).
    Peek,
}

/// Pages of `[start, end)` written since the last scan, as sorted disjoint ranges (and
/// protected again, as `scan` says). `None` if part of the range is not tracked (then nothing
/// can be said of it and it must be read in full).
pub(super) fn written_since_last_scan(
    pagemap: &File,
    start: u64,
    end: u64,
    scan: Scan,
) -> Result<Option<Vec<(u64, u64)>>> {
    let flags = match scan {
        Scan::Reset => PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        Scan::Peek => PM_SCAN_CHECK_WPASYNC,
    };
    let mut out = Vec::new();
    let mut regions = vec![PageRegion::default(); 512];
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags,
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_mask: PAGE_IS_WRITTEN,
            return_mask: PAGE_IS_WRITTEN,
            ..Default::default()
        };
        let n = match ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) {
            Ok(n) => n as usize,
            // EPERM: memory without async write-protect (not tracked).
            Err(Errno::EPERM) => return Ok(None),
            Err(e) => return Err(Error::io("/proc/PID/pagemap (PAGEMAP_SCAN)", std::io::Error::from(e))),
        };
        for r in &regions[..n.min(regions.len())] {
            match out.last_mut() {
                Some((_, last_end)) if *last_end == r.start => *last_end = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        if arg.walk_end <= at {
            break;
        }
        at = arg.walk_end;
    }
    Ok(Some(out))
}
