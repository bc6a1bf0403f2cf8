//! A point-in-time view of a running process's private anonymous memory by userfaultfd
//! write-protect: a page the target writes after the freeze is copied before the write is let
//! through, so what memzinc reads is the freeze instant's, while the target runs on.
//!
//! Write-protecting costs ~10 ms per GiB (measured here: UFFDIO_WRITEPROTECT of 4 GiB of
//! written heap, 34–37 ms) and a fork as much (49–51 ms at 4 GiB): done while frozen, either
//! makes the pause grow with the process. So the protection is laid *before* the freeze, and
//! the freeze only repairs what changed since:
//!
//! 1. [`WriteProtected::start`], the target running: one thread is stopped for a moment to call
//!    `userfaultfd(2)`; memzinc takes a duplicate with `pidfd_getfd` and the target's own fd is
//!    closed again (it holds none afterwards; killing memzinc closes the last one, which
//!    releases every blocked thread and drops the protection). A server thread starts, then the
//!    ranges are registered and write-protected (`UFFD_FEATURE_WP_UNPOPULATED`: pages never
//!    touched are protected too). A write fault meanwhile is let through and its page noted;
//!    a range emptied (`MADV_DONTNEED` drops protection with the pages), unmapped or moved is
//!    noted too.
//! 2. [`WriteProtected::at_freeze`], all threads frozen: the noted pages are protected again,
//!    mappings not covered (new, moved, or refused) are registered and protected now; from
//!    here a write fault copies its page first.
//! 3. [`WriteProtected::settle`], after each chunk the reader copied from the running target:
//!    copied-before-write pages replace what was read, and the chunk's protection is dropped
//!    (unregistered, 8 MiB at a time, so the final close has nothing left to walk).
//!
//! Pages a fault cannot save first — emptied, unmapped or moved by the target before they were
//! read — make the view [`Error::CopyOnWrite`]: the caller takes the snapshot another way,
//! never a wrong one. The server takes its lock before reading the userfaultfd, so an event
//! is read and applied in one step: [`WriteProtected::at_freeze`] sees every event whose thread
//! the freeze waited for (a thread in an event or kernel-mode fault is not stopped until the
//! event is read).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::libc;

use super::inject::Injector;
use super::process::{self, Frozen, PAGE_SIZE};
use super::uffd::{
    ioctl, ForeignUffd, UffdMsg, UffdioRange, UFFDIO_UNREGISTER, UFFDIO_WAKE, UFFD_EVENT_PAGEFAULT, UFFD_EVENT_REMAP,
    UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP, UFFD_FEATURE_EVENT_REMAP, UFFD_FEATURE_EVENT_REMOVE, UFFD_FEATURE_EVENT_UNMAP,
    UFFD_FEATURE_WP_UNPOPULATED,
};
use crate::base::{Error, Result};

const FEATURES: u64 =
    UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP;
/// `UFFD_PAGEFAULT_FLAG_WP`: the fault is a write to a write-protected page.
const PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// A write-protected view of a process (see the module comment).
pub struct WriteProtected {
    pid: i32,
    shared: Arc<Shared>,
    /// Written to stop the server.
    stop: OwnedFd,
    server: Option<JoinHandle<()>>,
}

struct Shared {
    pid: i32,
    uffd: ForeignUffd,
    state: Mutex<State>,
}

#[derive(PartialEq, Eq)]
enum Phase {
    /// Before the freeze: writes are let through and noted.
    Recording,
    /// After it: a page of the view is copied before its first write.
    Copying,
}

struct State {
    phase: Phase,
    /// Registered and write-protected ranges (sorted, disjoint), less what was unmapped or moved.
    protected: Vec<(u64, u64)>,
    /// Recording: pages written and ranges emptied since the protection, to protect again.
    dirtied: Vec<(u64, u64)>,
    /// Copying: the ranges read through the view, and the parts of them read so far.
    view: Vec<(u64, u64)>,
    read: Vec<(u64, u64)>,
    /// Copying: pages of the view copied before the target's write, not read yet.
    saved: HashMap<u64, Box<[u8]>>,
    saved_peak: usize,
    /// Why the view no longer holds the freeze instant, if it does not.
    lost: Option<String>,
    faults: u64,
}

impl WriteProtected {
    /// Phase 1: write-protects `ranges` (page-aligned) of the running process `pid`. Ranges the
    /// kernel refuses are left out (the freeze reads them).
    pub fn start(pid: i32, ranges: &[(u64, u64)]) -> Result<WriteProtected> {
        let began = std::time::Instant::now();
        let uffd = {
            let one = Frozen::freeze_one(pid)?;
            let inject = Injector::in_frozen(&one, "write-protecting it")?;
            let uffd = ForeignUffd::open(pid, &inject, FEATURES, "UFFDIO_API (write-protect)")?;
            // The target keeps no userfaultfd: ours is the only one, and it closes with memzinc.
            inject.call("close its userfaultfd", libc::SYS_close, &[uffd.target_fd as u64])?;
            uffd
        };
        // SAFETY: eventfd takes plain values and returns a new descriptor or -1.
        let stop = Errno::result(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(|e| Error::io("eventfd", e.into()))?;
        // SAFETY: `stop` is a new descriptor that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let shared = Arc::new(Shared {
            pid,
            uffd,
            state: Mutex::new(State {
                phase: Phase::Recording,
                protected: Vec::new(),
                dirtied: Vec::new(),
                view: Vec::new(),
                read: Vec::new(),
                saved: HashMap::new(),
                saved_peak: 0,
                lost: None,
                faults: 0,
            }),
        });
        let server = {
            let shared = Arc::clone(&shared);
            let stop = stop.as_raw_fd();
            std::thread::Builder::new()
                .name("memzinc-wp".into())
                .spawn(move || {
                    process::HoldSignals::in_this_thread_for_good();
                    shared.serve(stop);
                })
                .map_err(|e| Error::io("a thread for the write-protect view", e))?
        };
        let view = WriteProtected {
            pid,
            shared,
            stop,
            server: Some(server),
        };
        // The lock is not held while protecting: a fault meanwhile is served (and noted).
        let mut protected = Vec::new();
        for &(start, end) in ranges {
            match view
                .shared
                .register(start, end)
                .and_then(|()| view.shared.protect(start, end, true))
            {
                Ok(()) => protected.push((start, end)),
                Err(e) => tracing::debug!("write-protect: {start:#x}-{end:#x} left out: {e}"),
            }
        }
        tracing::debug!(
            "write-protect: {} of {} ranges protected in {:?}",
            protected.len(),
            ranges.len(),
            began.elapsed()
        );
        view.shared.lock().protected = normalized(protected);
        Ok(view)
    }

    /// Phase 2, with every thread frozen: `ranges` are the captured ranges (start, end, whether
    /// the view may hold them); returns per range whether it must be read now, during the
    /// freeze.
    pub fn at_freeze(&self, ranges: &[(u64, u64, bool)]) -> Result<Vec<bool>> {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.phase = Phase::Copying;
        let dirtied = normalized(std::mem::take(&mut state.dirtied));
        let mut again = 0u64;
        for &(s, e) in &dirtied {
            for (s, e) in intersect(&state.protected, s, e) {
                if shared.protect(s, e, true).is_err() {
                    state.protected = without(&state.protected, s, e);
                } else {
                    again += (e - s) / PAGE_SIZE;
                }
            }
        }
        let mut view = Vec::new();
        let mut fresh = 0u64;
        let during: Vec<bool> = ranges
            .iter()
            .map(|&(start, end, ok)| {
                if !ok {
                    return true;
                }
                for (s, e) in without_all(&[(start, end)], &state.protected) {
                    if shared.register(s, e).and_then(|()| shared.protect(s, e, true)).is_err() {
                        return true;
                    }
                    fresh += (e - s) / PAGE_SIZE;
                    state.protected = normalized([state.protected.as_slice(), &[(s, e)]].concat());
                }
                view.push((start, end));
                false
            })
            .collect();
        state.view = normalized(view);
        tracing::debug!(
            "write-protect at the freeze: {again} pages protected again, {fresh} newly, {} faults before",
            state.faults
        );
        Ok(during)
    }

    /// Phase 3: `bytes` (with `readable`, per page) were just read from the running target at
    /// `address`, inside a range of the view: pages copied before a write since the freeze
    /// take their place, and the chunk's protection is dropped.
    pub fn settle(&self, address: u64, bytes: &mut [u8], readable: &mut [bool]) -> Result<()> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if let Some(why) = &state.lost {
            return Err(Error::CopyOnWrite {
                pid: self.pid,
                why: why.clone(),
            });
        }
        let end = address + bytes.len() as u64;
        for (i, page) in bytes.chunks_mut(PAGE_SIZE as usize).enumerate() {
            let at = address + i as u64 * PAGE_SIZE;
            if let Some(saved) = state.saved.remove(&at) {
                page.copy_from_slice(&saved);
                readable[i] = true;
            }
        }
        state.read = normalized([state.read.as_slice(), &[(address, end)]].concat());
        for (s, e) in intersect(&state.protected, address, end) {
            shared.unregister(s, e);
        }
        state.protected = without(&state.protected, address, end);
        Ok(())
    }

    /// Whether the view still holds the freeze instant (see the module comment).
    pub fn check(&self) -> Result<()> {
        match &self.shared.lock().lost {
            Some(why) => Err(Error::CopyOnWrite {
                pid: self.pid,
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Memory the view held at most: pages copied before the target's write, in bytes.
    pub fn extra_bytes(&self) -> u64 {
        self.shared.lock().saved_peak as u64 * PAGE_SIZE
    }

    /// Ends the view: the server stops, the userfaultfd closes (the kernel drops what is left
    /// of the protection and wakes any thread still waiting).
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(server) = self.server.take() {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our eventfd.
            let _ = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
            let _ = server.join();
        }
    }
}

impl Drop for WriteProtected {
    fn drop(&mut self) {
        self.end();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, start: u64, end: u64) -> Result<()> {
        self.uffd.register_wp(start, end)
    }

    /// Write-protects `[start, end)`, or lets it be written again (waking who waits on it).
    fn protect(&self, start: u64, end: u64, on: bool) -> Result<()> {
        self.uffd.write_protect(start, end, on)
    }

    /// Drops the registration of `[start, end)` (and its protection) and wakes any thread
    /// waiting on it; a range already gone is no error.
    fn unregister(&self, start: u64, end: u64) {
        let mut range = UffdioRange {
            start,
            len: end - start,
        };
        let _ = ioctl(self.uffd.raw(), UFFDIO_UNREGISTER, &mut range);
        let mut range = UffdioRange {
            start,
            len: end - start,
        };
        let _ = ioctl(self.uffd.raw(), UFFDIO_WAKE, &mut range);
    }

    /// The server: reads the userfaultfd until `stop` is written.
    fn serve(&self, stop: i32) {
        let mut msgs = [UffdMsg::default(); 64];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.uffd.raw(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of two pollfd for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                tracing::warn!("write-protect server: poll: {}", Errno::last());
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return;
            }
            // Read and apply under the lock (see the module comment).
            let mut state = self.lock();
            loop {
                // SAFETY: reads at most `size_of_val(&msgs)` bytes into the live array, whose
                // elements are plain data of the kernel's `struct uffd_msg` size.
                let n = unsafe { libc::read(self.uffd.raw(), msgs.as_mut_ptr().cast(), std::mem::size_of_val(&msgs)) };
                if n <= 0 {
                    break;
                }
                for msg in &msgs[..n as usize / size_of::<UffdMsg>()] {
                    self.handle(&mut state, msg);
                }
            }
        }
    }

    fn handle(&self, state: &mut State, msg: &UffdMsg) {
        match msg.event {
            UFFD_EVENT_PAGEFAULT if msg.arg[0] & PAGEFAULT_FLAG_WP != 0 => {
                state.faults += 1;
                let page = msg.arg[1] & !(PAGE_SIZE - 1);
                match state.phase {
                    Phase::Recording => state.dirtied.push((page, page + PAGE_SIZE)),
                    Phase::Copying => {
                        if contains(&state.view, page)
                            && !contains(&state.read, page)
                            && !state.saved.contains_key(&page)
                        {
                            let mut bytes = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
                            if process::read_at(self.pid, page, &mut bytes).ok() == Some(bytes.len()) {
                                state.saved.insert(page, bytes);
                                state.saved_peak = state.saved_peak.max(state.saved.len());
                            } else {
                                state.lost.get_or_insert(format!(
                                    "the page at {page:#x} could not be copied before it was written"
                                ));
                            }
                        }
                    }
                }
                if self.protect(page, page + PAGE_SIZE, false).is_err() {
                    let mut range = UffdioRange {
                        start: page,
                        len: PAGE_SIZE,
                    };
                    let _ = ioctl(self.uffd.raw(), UFFDIO_WAKE, &mut range);
                }
            }
            UFFD_EVENT_REMOVE | UFFD_EVENT_UNMAP => {
                let (start, end) = (msg.arg[0], msg.arg[1]);
                let what = if msg.event == UFFD_EVENT_REMOVE {
                    "emptied"
                } else {
                    "unmapped"
                };
                match state.phase {
                    // Emptied pages lose their protection with their contents.
                    Phase::Recording if msg.event == UFFD_EVENT_REMOVE => state.dirtied.push((start, end)),
                    Phase::Recording => state.protected = without(&state.protected, start, end),
                    Phase::Copying => state.lose(start, end, what),
                }
            }
            UFFD_EVENT_REMAP => {
                let (from, to, len) = (msg.arg[0], msg.arg[1], msg.arg[2]);
                match state.phase {
                    Phase::Recording => {
                        state.protected = without(&state.protected, from, from + len);
                        state.protected = without(&state.protected, to, to + len);
                    }
                    Phase::Copying => state.lose(from, from + len, "moved"),
                }
            }
            _ => {}
        }
    }
}

impl State {
    /// `[start, end)` changed under the view: pages of it not read nor saved are lost.
    fn lose(&mut self, start: u64, end: u64, what: &str) {
        for (s, e) in intersect(&self.view, start, end) {
            for (s, e) in without_all(&[(s, e)], &self.read) {
                let mut page = s;
                while page < e {
                    if !self.saved.contains_key(&page) {
                        self.lost
                            .get_or_insert(format!("the target {what} memory at {page:#x} before it was read"));
                        return;
                    }
                    page += PAGE_SIZE;
                }
            }
        }
    }
}

/// Sorted, disjoint, adjacent runs merged.
fn normalized(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|(s, e)| s < e);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts of sorted, disjoint `ranges` inside `[start, end)`.
fn intersect(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .filter(|(s, e)| *s < end && start < *e)
        .map(|&(s, e)| (s.max(start), e.min(end)))
        .collect()
}

/// Sorted, disjoint `ranges` less `[start, end)`.
fn without(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(s, e) in ranges {
        if e <= start || end <= s {
            out.push((s, e));
            continue;
        }
        if s < start {
            out.push((s, start));
        }
        if end < e {
            out.push((end, e));
        }
    }
    out
}

/// Sorted, disjoint `ranges` less each of `cut`.
fn without_all(ranges: &[(u64, u64)], cut: &[(u64, u64)]) -> Vec<(u64, u64)> {
    cut.iter().fold(ranges.to_vec(), |left, &(s, e)| without(&left, s, e))
}

/// Whether `address` is in sorted, disjoint `ranges`.
fn contains(ranges: &[(u64, u64)], address: u64) -> bool {
    let i = ranges.partition_point(|&(_, e)| e <= address);
    ranges.get(i).is_some_and(|&(s, _)| s <= address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_sets() {
        assert_eq!(
            normalized(vec![(5, 9), (0, 2), (2, 3), (8, 12), (20, 20)]),
            [(0, 3), (5, 12)]
        );
        assert_eq!(intersect(&[(0, 10), (20, 30)], 5, 25), [(5, 10), (20, 25)]);
        assert_eq!(without(&[(0, 10), (20, 30)], 5, 25), [(0, 5), (25, 30)]);
        assert_eq!(
            without_all(&[(0, 100)], &[(10, 20), (30, 40)]),
            [(0, 10), (20, 30), (40, 100)]
        );
        assert!(contains(&[(0, 10), (20, 30)], 20) && !contains(&[(0, 10), (20, 30)], 10));
    }
}
