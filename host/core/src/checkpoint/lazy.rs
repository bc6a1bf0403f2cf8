//! Lazy restore (`memzinc restore --lazy`, CRIU's `--lazy-pages`): the process runs as soon as
//! its registers, map and kernel objects are back; its captured pages arrive on first touch and
//! a background copy brings the rest, each page checked against its leaf in the core first.
//!
//! - **The userfaultfd is the target's.** Once the image's mappings exist (empty), the process
//!   being built calls `userfaultfd(O_CLOEXEC | O_NONBLOCK)` (injected); the fd is moved above
//!   every descriptor of the checkpoint and memzinc takes a duplicate with `pidfd_getfd`, enables
//!   the API and registers every captured mapping for missing pages. Not
//!   `UFFD_USER_MODE_ONLY`: with it, a fault the kernel takes for the process (a `read(2)` into
//!   a page not yet in, memzinc's own `process_vm_readv`) fails with EFAULT instead of waiting
//!   for the page (measured here, kernel 6.18).
//! - **One server thread** (started before anything else touches the image, so an `--apply`
//!   plan's compare-and-swap and the kernel's rseq writes fault in like the process's own
//!   accesses) reads fault events and copies the page (and up to [`FAULT_RUN`] pending
//!   neighbours) with `UFFDIO_COPY`; between events it copies the rest, which a prefetch
//!   thread reads from the core and checks ahead of it ([`PREFETCH_RUN`] pages at a time: the
//!   hashing, the slowest step, runs beside the copy). A page not pending any more (already in, then dropped by
//!   `MADV_DONTNEED`/`MADV_FREE`; stack growth; a mapping grown by `mremap`) is given zeroes, as
//!   the kernel would. The process's own changes are followed: `UFFD_EVENT_REMOVE` and `UNMAP`
//!   drop pending pages (the kernel's zeroes are right there), `REMAP` moves them, and `FORK`
//!   hands memzinc the child's userfaultfd, whose pages are served from the same core.
//! - **Every page is checked before the process gets it:** `page_leaf(address, bytes)` (or the
//!   unreadable leaf, with zeroes) must equal the core's leaf. A page that does not match is
//!   never copied: the server kills the process and the restore fails with one line.
//! - **memzinc dying never leaves the process on wrong bytes.** If the last reference to a
//!   userfaultfd goes, the kernel unregisters its ranges and fills missing pages with zeroes,
//!   silently. So the process keeps its own userfaultfd until every page is in (memzinc dying
//!   leaves its faults waiting, not zero-filled), and it has `PR_SET_PDEATHSIG` = SIGKILL,
//!   set after its credentials (a credential change clears it) and before it runs: memzinc
//!   killed at any moment of the lazy phase kills it. Once every page is in, memzinc freezes it
//!   briefly to close its userfaultfd and clear the death signal, then closes its own copies.
//!   Not covered: a child the process forks during the lazy phase is served from the same core
//!   while memzinc lives, but holds no userfaultfd and no death signal of its own: memzinc
//!   killed then, the restored process dies, and that child's pages not yet in would be zeroes.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memzinc_verifier::merkle;
use nix::errno::Errno;
use nix::libc;
use serde::Serialize;

use crate::base::{Error, Result, Sha2};
use crate::describe::Snapshot;
use crate::introspect::uffd::{
    ioctl, UffdMsg, UffdioApi, UffdioCopy, UffdioRange, UffdioRegister, UffdioZeropage, UFFDIO_API, UFFDIO_COPY,
    UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING, UFFDIO_WAKE, UFFDIO_ZEROPAGE, UFFD_API, UFFD_EVENT_FORK,
    UFFD_EVENT_PAGEFAULT, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP, UFFD_FEATURE_EVENT_FORK,
    UFFD_FEATURE_EVENT_REMAP, UFFD_FEATURE_EVENT_REMOVE, UFFD_FEATURE_EVENT_UNMAP,
};
use crate::introspect::{Frozen, Injector, PAGE_SIZE};

/// Pages copied for one fault: the faulting page and pending neighbours after it.
const FAULT_RUN: u64 = 16;
/// Pages per background copy, between two looks at the fault queue.
const BACKGROUND_RUN: u64 = 64;
/// Pages read and checked ahead by the prefetch thread, per chunk; chunks in flight.
const PREFETCH_RUN: u64 = 256;
const PREFETCH_CHUNKS: usize = 4;

/// What the lazy phase did, for the CLI.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LazyReport {
    pub pid: i32,
    /// From opening the core to the process running again, microseconds.
    pub running_after_us: u128,
    /// From opening the core to the last page in, microseconds.
    pub all_in_after_us: u128,
    /// Captured pages the lazy phase had to bring in.
    pub pages: u64,
    /// Of those, copied because the process (or the kernel for it) touched them or a neighbour.
    pub pages_on_fault: u64,
    pub pages_in_background: u64,
    /// Pending pages the process unmapped or dropped before they were needed.
    pub pages_dropped: u64,
    /// Faults answered with zeroes (pages no longer pending: dropped, grown, new).
    pub zero_pages: u64,
    /// Children the process forked during the lazy phase, served from the same core.
    pub forks: u64,
    /// Whether the process exited (or exec'd) before every page was in.
    pub exited: bool,
}

/// One captured region of the image, as the server needs it.
#[derive(Clone)]
struct PageRegion {
    start: u64,
    end: u64,
    data_offset: u64,
    first_leaf: usize,
    unreadable: Vec<u64>,
}

/// Where the pages come from and what they must hash to.
struct Source {
    core: PathBuf,
    file: File,
    leaves: Vec<[u8; 32]>,
    /// Captured regions memzinc serves, by address.
    regions: Vec<PageRegion>,
}

impl Source {
    fn region_at(&self, address: u64) -> Option<&PageRegion> {
        let i = self.regions.partition_point(|r| r.end <= address);
        self.regions.get(i).filter(|r| r.start <= address)
    }

    /// Reads `n` pages at image address `orig` (inside one region) into `buf` and checks each
    /// against its leaf.
    fn read_checked(&self, orig: u64, n: u64, buf: &mut [u8]) -> Result<()> {
        let r = self
            .region_at(orig)
            .ok_or_else(|| Error::Restore(format!("no captured region at {orig:#x}")))?;
        let len = (n * PAGE_SIZE) as usize;
        self.file
            .read_exact_at(&mut buf[..len], r.data_offset + (orig - r.start))
            .map_err(|e| Error::io(&self.core, e))?;
        for (i, page) in buf[..len]
            .as_chunks_mut::<{ PAGE_SIZE as usize }>()
            .0
            .iter_mut()
            .enumerate()
        {
            let address = orig + i as u64 * PAGE_SIZE;
            let leaf_index = r.first_leaf + ((address - r.start) / PAGE_SIZE) as usize;
            let leaf = if r.unreadable.binary_search(&address).is_ok() {
                page.fill(0);
                merkle::unreadable_leaf::<Sha2>(address)
            } else {
                merkle::page_leaf::<Sha2>(address, page)
            };
            if self.leaves.get(leaf_index) != Some(&leaf) {
                return Err(Error::Restore(format!(
                    "page {address:#x} in {} does not match its leaf: not given to the process, which was killed",
                    self.core.display()
                )));
            }
        }
        Ok(())
    }
}

/// A run of the image's pages at an address of a process: image address `orig` is at `cur`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    cur: u64,
    len: u64,
    orig: u64,
}

/// One address space being served: the restored process, or a child it forked.
struct Space {
    uffd: OwnedFd,
    /// One bit per leaf: still to be copied.
    pending: Vec<u64>,
    left: u64,
    /// Where the image's served pages are now, sorted by `cur`.
    segments: Vec<Segment>,
    /// Next leaf the background copy looks at.
    cursor: usize,
    alive: bool,
}

impl Space {
    fn is_pending(&self, leaf: usize) -> bool {
        self.pending.get(leaf / 64).is_some_and(|w| w & (1 << (leaf % 64)) != 0)
    }

    fn clear(&mut self, leaf: usize) -> bool {
        let was = self.is_pending(leaf);
        if was {
            self.pending[leaf / 64] &= !(1 << (leaf % 64));
            self.left -= 1;
        }
        was
    }

    fn to_orig(&self, cur: u64) -> Option<(u64, Segment)> {
        self.segments
            .iter()
            .find(|s| s.cur <= cur && cur < s.cur + s.len)
            .map(|s| (s.orig + (cur - s.cur), *s))
    }

    fn to_cur(&self, orig: u64) -> Option<(u64, Segment)> {
        self.segments
            .iter()
            .find(|s| s.orig <= orig && orig < s.orig + s.len)
            .map(|s| (s.cur + (orig - s.orig), *s))
    }

    /// Splits the segments so that none crosses `at`.
    fn split_at(&mut self, at: u64) {
        if let Some(i) = self.segments.iter().position(|s| s.cur < at && at < s.cur + s.len) {
            let s = self.segments[i];
            let head = at - s.cur;
            self.segments[i].len = head;
            self.segments.insert(
                i + 1,
                Segment {
                    cur: at,
                    len: s.len - head,
                    orig: s.orig + head,
                },
            );
        }
    }

    fn take_range(&mut self, start: u64, end: u64) -> Vec<Segment> {
        self.split_at(start);
        self.split_at(end);
        let (inside, outside): (Vec<Segment>, Vec<Segment>) = self
            .segments
            .iter()
            .partition(|s| s.cur >= start && s.cur + s.len <= end);
        self.segments = outside;
        inside
    }
}

/// What the server and the thread that waits for it share.
struct Shared {
    stop: AtomicBool,
    all_in: std::sync::Mutex<Option<Instant>>,
}

/// The server of a lazy restore: started while the process is being built, stopped once every
/// page is in (or on failure).
pub(super) struct Server {
    pid: i32,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<Result<LazyReport>>>,
    /// The process's own userfaultfd number, closed once every page is in.
    pub(super) target_fd: i32,
}

/// Creates the process's userfaultfd (above every descriptor the checkpoint has, so restoring
/// descriptors cannot close it), registers the image's captured mappings and starts serving.
pub(super) fn start(inject: &Injector, snap: &Snapshot, core: &Path, served: &[(u64, u64)]) -> Result<Server> {
    let pid = inject.pid();
    let fd = inject.call(
        "userfaultfd",
        libc::SYS_userfaultfd,
        &[(libc::O_CLOEXEC | libc::O_NONBLOCK) as u64],
    )?;
    let above = snap.meta.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2) as u64 + 1;
    let target_fd = inject.call(
        "F_DUPFD_CLOEXEC",
        libc::SYS_fcntl,
        &[fd, libc::F_DUPFD_CLOEXEC as u64, above],
    )?;
    inject.call("close", libc::SYS_close, &[fd])?;
    let uffd = crate::introspect::pidfd_getfd(pid, target_fd as i32)?;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_EVENT_FORK
            | UFFD_FEATURE_EVENT_REMAP
            | UFFD_FEATURE_EVENT_REMOVE
            | UFFD_FEATURE_EVENT_UNMAP,
        ioctls: 0,
    };
    ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api).map_err(|e| Error::Restore(format!("UFFDIO_API: {e}")))?;

    let mut regions = Vec::new();
    let mut first_leaf = 0usize;
    for r in snap.meta.regions.iter().filter(|r| r.captured) {
        let pages = ((r.map.end - r.map.start) / PAGE_SIZE) as usize;
        if served.contains(&(r.map.start, r.map.end)) {
            regions.push(PageRegion {
                start: r.map.start,
                end: r.map.end,
                data_offset: r.data_offset,
                first_leaf,
                unreadable: r.unreadable_pages.clone(),
            });
        }
        first_leaf += pages;
    }
    let mut pending = vec![0u64; first_leaf.div_ceil(64)];
    let mut left = 0;
    for r in &regions {
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: r.start,
                len: r.end - r.start,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut reg)
            .map_err(|e| Error::Restore(format!("UFFDIO_REGISTER {:#x}-{:#x}: {e}", r.start, r.end)))?;
        for leaf in r.first_leaf..r.first_leaf + ((r.end - r.start) / PAGE_SIZE) as usize {
            pending[leaf / 64] |= 1 << (leaf % 64);
            left += 1;
        }
    }
    let segments = regions
        .iter()
        .map(|r| Segment {
            cur: r.start,
            len: r.end - r.start,
            orig: r.start,
        })
        .collect();
    let source = Source {
        core: core.to_path_buf(),
        file: File::open(core).map_err(|e| Error::io(core, e))?,
        leaves: snap.leaves.clone(),
        regions,
    };
    let space = Space {
        uffd,
        pending,
        left,
        segments,
        cursor: 0,
        alive: true,
    };
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        all_in: std::sync::Mutex::new(None),
    });
    let theirs = shared.clone();
    let thread = std::thread::Builder::new()
        .name("lazy-pages".into())
        .spawn(move || {
            crate::introspect::HoldSignals::in_this_thread_for_good();
            let result = serve(pid, source, space, &theirs);
            if result.is_err() {
                // Never left running without its pages, nor on wrong ones.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            result
        })
        .map_err(|e| Error::Restore(format!("starting the page server: {e}")))?;
    Ok(Server {
        pid,
        shared,
        thread: Some(thread),
        target_fd: target_fd as i32,
    })
}

impl Server {
    /// Waits until every page is in, then closes the process's userfaultfd and clears its
    /// death signal (a brief freeze), and stops the server. On failure the process is dead.
    pub(super) fn finish(mut self, started: Instant, running_after: Duration) -> Result<LazyReport> {
        let all_in = loop {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                // The server ended on its own: an error (the process is dead), or a panic.
                return Err(self
                    .join()
                    .err()
                    .unwrap_or_else(|| Error::Restore("the page server stopped before every page was in".into())));
            }
            if let Some(at) = *self.shared.all_in.lock().unwrap_or_else(|e| e.into_inner()) {
                break at;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // Every page is in; the server keeps answering faults (zeroes) while this runs.
        let released = self.release();
        let mut report = self.join()?;
        released?;
        report.running_after_us = running_after.as_micros();
        report.all_in_after_us = all_in.saturating_duration_since(started).as_micros();
        Ok(report)
    }

    /// The process's own userfaultfd closed and PR_SET_PDEATHSIG cleared, by injection.
    fn release(&self) -> Result<()> {
        let frozen = match Frozen::freeze(self.pid) {
            Ok(f) => f,
            // Gone already: nothing of it to release.
            Err(Error::NoSuchProcess { .. }) | Err(Error::Zombie { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let inject = Injector::in_frozen(&frozen, "releasing its lazy pages")?;
        inject.call("close its userfaultfd", libc::SYS_close, &[self.target_fd as u64])?;
        inject.call(
            "PR_SET_PDEATHSIG 0",
            libc::SYS_prctl,
            &[libc::PR_SET_PDEATHSIG as u64, 0],
        )?;
        Ok(())
    }

    /// Stops the server; its error, if it had stopped on one.
    pub(super) fn failure(mut self) -> Option<Error> {
        self.join().err()
    }

    fn join(&mut self) -> Result<LazyReport> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Restore("the page server panicked".into())),
            None => Err(Error::Restore("the page server is gone".into())),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// What a copy did.
enum Copied {
    Done(u64),
    /// This many, then the process was changing its map: read its events, then try again.
    Again(u64),
    /// The address space is gone (the process exited or exec'd).
    Gone,
}

/// Pages read from the core and checked against their leaves, ahead of the copy.
struct Chunk {
    orig: u64,
    n: u64,
    buf: memmap2::MmapMut,
}

/// Reads and checks the served regions in order, a chunk at a time, on its own thread (hashing
/// is the slowest step; the server thread copies meanwhile). Stops at the first page that does
/// not match, or when the server drops its ends.
fn prefetch(
    source: &Source,
    free: &std::sync::mpsc::Receiver<memmap2::MmapMut>,
    out: &std::sync::mpsc::SyncSender<Result<Chunk>>,
) {
    for r in &source.regions {
        let mut orig = r.start;
        while orig < r.end {
            let n = ((r.end - orig) / PAGE_SIZE).min(PREFETCH_RUN);
            let Ok(mut buf) = free.recv() else { return };
            let checked = source.read_checked(orig, n, &mut buf).map(|()| Chunk { orig, n, buf });
            let failed = checked.is_err();
            if out.send(checked).is_err() || failed {
                return;
            }
            orig += n * PAGE_SIZE;
        }
    }
}

struct Pages {
    source: Arc<Source>,
    spaces: Vec<Space>,
    buf: memmap2::MmapMut,
    report: LazyReport,
    /// Faults to answer again once the process's map changes are read.
    retry: Vec<(usize, u64)>,
}

fn serve(pid: i32, source: Source, space: Space, shared: &Shared) -> Result<LazyReport> {
    let buffer = |pages: u64| {
        memmap2::MmapMut::map_anon((pages * PAGE_SIZE) as usize)
            .map_err(|e| Error::Restore(format!("a page buffer: {e}")))
    };
    let buf = buffer(BACKGROUND_RUN.max(FAULT_RUN))?;
    let source = Arc::new(source);
    let (free_tx, free_rx) = std::sync::mpsc::channel();
    for _ in 0..PREFETCH_CHUNKS {
        let _ = free_tx.send(buffer(PREFETCH_RUN)?);
    }
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel(PREFETCH_CHUNKS);
    let ahead = source.clone();
    std::thread::Builder::new()
        .name("lazy-prefetch".into())
        .spawn(move || {
            crate::introspect::HoldSignals::in_this_thread_for_good();
            prefetch(&ahead, &free_rx, &chunk_tx)
        })
        .map_err(|e| Error::Restore(format!("starting the page prefetch: {e}")))?;
    let mut prefetching = true;
    let mut s = Pages {
        report: LazyReport {
            pid,
            pages: space.left,
            ..LazyReport::default()
        },
        source,
        spaces: vec![space],
        buf,
        retry: Vec::new(),
    };
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(s.report);
        }
        let mut events = 0;
        for i in 0..s.spaces.len() {
            events += s.drain(i)?;
        }
        for (i, at) in std::mem::take(&mut s.retry) {
            s.fault(i, at)?;
        }
        if !s.retry.is_empty() {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        if prefetching && s.spaces[0].alive && s.spaces[0].left > 0 {
            match chunk_rx.try_recv() {
                Ok(Ok(chunk)) => {
                    s.copy_chunk(&chunk)?;
                    let _ = free_tx.send(chunk.buf);
                }
                Ok(Err(e)) => return Err(e),
                // Faults while the prefetch catches up.
                Err(std::sync::mpsc::TryRecvError::Empty) => s.wait(1),
                // Done: what is left (a copy the process's map changes interrupted) is
                // read here.
                Err(std::sync::mpsc::TryRecvError::Disconnected) => prefetching = false,
            }
            continue;
        }
        if let Some(i) = s.spaces.iter().position(|sp| sp.alive && sp.left > 0) {
            s.background(i)?;
            continue;
        }
        {
            let mut all_in = shared.all_in.lock().unwrap_or_else(|e| e.into_inner());
            if all_in.is_none() {
                *all_in = Some(Instant::now());
                s.report.exited = !s.spaces[0].alive;
            }
        }
        if events == 0 {
            s.wait(10);
        }
    }
}

impl Pages {
    /// Until an event arrives in any space, at most `ms` milliseconds.
    fn wait(&self, ms: i32) {
        let mut fds: Vec<libc::pollfd> = self
            .spaces
            .iter()
            .filter(|sp| sp.alive)
            .map(|sp| libc::pollfd {
                fd: sp.uffd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }

    /// The pages of a prefetched chunk still pending in the process, in runs.
    fn copy_chunk(&mut self, chunk: &Chunk) -> Result<()> {
        let Some(first) = leaf_of(&self.source, chunk.orig) else {
            return Ok(());
        };
        let mut k = 0;
        while k < chunk.n {
            let (orig, leaf) = (chunk.orig + k * PAGE_SIZE, first + k as usize);
            let sp = &mut self.spaces[0];
            if !sp.is_pending(leaf) {
                k += 1;
                continue;
            }
            let Some((cur, seg)) = sp.to_cur(orig) else {
                // Unmapped by the process before it was needed.
                if sp.clear(leaf) {
                    self.report.pages_dropped += 1;
                }
                k += 1;
                continue;
            };
            let mut m = 1;
            while k + m < chunk.n && sp.is_pending(leaf + m as usize) && orig + m * PAGE_SIZE < seg.orig + seg.len {
                m += 1;
            }
            let src = chunk.buf.as_ptr() as u64 + k * PAGE_SIZE;
            match self.copy_from(0, cur, leaf, m, src)? {
                Copied::Done(done) | Copied::Again(done) => self.report.pages_in_background += done,
                Copied::Gone => return Ok(()),
            }
            k += m;
        }
        Ok(())
    }

    /// Reads and handles every queued event of space `i`; returns how many there were.
    fn drain(&mut self, i: usize) -> Result<usize> {
        let mut count = 0;
        while self.spaces[i].alive {
            let mut msgs = [UffdMsg::default(); 16];
            // SAFETY: reading at most `size_of_val(&msgs)` bytes into `msgs`, plain old data.
            let n = unsafe {
                libc::read(
                    self.spaces[i].uffd.as_raw_fd(),
                    msgs.as_mut_ptr().cast(),
                    std::mem::size_of_val(&msgs),
                )
            };
            if n < 0 {
                match Errno::last() {
                    Errno::EAGAIN => break,
                    Errno::EINTR => continue,
                    e => return Err(Error::Restore(format!("reading userfaultfd events: {e}"))),
                }
            }
            let n = n as usize / std::mem::size_of::<UffdMsg>();
            if n == 0 {
                break;
            }
            for m in &msgs[..n] {
                count += 1;
                self.event(i, m)?;
            }
        }
        Ok(count)
    }

    fn event(&mut self, i: usize, m: &UffdMsg) -> Result<()> {
        match m.event {
            UFFD_EVENT_PAGEFAULT => {
                let at = m.arg[1] & !(PAGE_SIZE - 1);
                self.fault(i, at)
            }
            UFFD_EVENT_FORK => {
                // SAFETY: the kernel installed this descriptor in memzinc for the child's
                // userfaultfd; nothing else owns it.
                let uffd = unsafe { OwnedFd::from_raw_fd(m.arg[0] as u32 as i32) };
                let parent = &self.spaces[i];
                let child = Space {
                    uffd,
                    pending: parent.pending.clone(),
                    left: parent.left,
                    segments: parent.segments.clone(),
                    cursor: 0,
                    alive: true,
                };
                self.spaces.push(child);
                self.report.forks += 1;
                Ok(())
            }
            UFFD_EVENT_REMAP => {
                let (from, to, len) = (m.arg[0], m.arg[1], m.arg[2]);
                let sp = &mut self.spaces[i];
                // Whatever was at the destination is gone (an UNMAP event says so too).
                let _ = sp.take_range(to, to + len);
                let moved = sp.take_range(from, from + len);
                for mut seg in moved {
                    seg.cur = seg.cur - from + to;
                    sp.segments.push(seg);
                }
                sp.segments.sort_by_key(|seg| seg.cur);
                Ok(())
            }
            UFFD_EVENT_REMOVE | UFFD_EVENT_UNMAP => {
                let (start, end) = (m.arg[0], m.arg[1]);
                let unmap = m.event == UFFD_EVENT_UNMAP;
                let mut dropped = 0;
                let sp = &mut self.spaces[i];
                let mut page = start & !(PAGE_SIZE - 1);
                while page < end {
                    if let Some((orig, _)) = sp.to_orig(page) {
                        if let Some(leaf) = leaf_of(&self.source, orig) {
                            dropped += u64::from(sp.clear(leaf));
                        }
                    }
                    page += PAGE_SIZE;
                }
                if unmap {
                    let _ = sp.take_range(start, end);
                }
                if i == 0 {
                    self.report.pages_dropped += dropped;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A fault at `at` in space `i`: its pending page (and pending neighbours) from the core,
    /// else zeroes.
    fn fault(&mut self, i: usize, at: u64) -> Result<()> {
        let sp = &self.spaces[i];
        let pending = sp
            .to_orig(at)
            .and_then(|(orig, seg)| leaf_of(&self.source, orig).map(|leaf| (orig, seg, leaf)))
            .filter(|&(_, _, leaf)| sp.is_pending(leaf));
        let Some((orig, seg, leaf)) = pending else {
            return self.zero(i, at);
        };
        let n = self.run(i, orig, seg, leaf, FAULT_RUN);
        match self.copy(i, at, orig, leaf, n)? {
            Copied::Done(done) => {
                if i == 0 {
                    self.report.pages_on_fault += done;
                }
                // A copy wakes the thread, but not when the page was there already or is
                // gone from the map (then it faults again, and gets its SIGSEGV).
                self.wake(i, at);
            }
            Copied::Again(0) => self.retry.push((i, at)),
            Copied::Again(done) if i == 0 => self.report.pages_on_fault += done,
            Copied::Again(_) | Copied::Gone => {}
        }
        Ok(())
    }

    fn wake(&self, i: usize, at: u64) {
        let mut range = UffdioRange {
            start: at,
            len: PAGE_SIZE,
        };
        let _ = ioctl(self.spaces[i].uffd.as_raw_fd(), UFFDIO_WAKE, &mut range);
    }

    /// Pending pages from leaf `leaf` (at image address `orig`) on, within one segment and
    /// one region, at most `max`.
    fn run(&self, i: usize, orig: u64, seg: Segment, leaf: usize, max: u64) -> u64 {
        let sp = &self.spaces[i];
        let region_end = self.source.region_at(orig).map_or(orig + PAGE_SIZE, |r| r.end);
        let end = region_end.min(seg.orig + seg.len);
        let mut n = 1;
        while n < max && orig + n * PAGE_SIZE < end && sp.is_pending(leaf + n as usize) {
            n += 1;
        }
        n
    }

    /// The next pending run of space `i` in leaf order.
    fn background(&mut self, i: usize) -> Result<()> {
        let sp = &mut self.spaces[i];
        let total = self.source.leaves.len();
        while sp.cursor < total && !sp.is_pending(sp.cursor) {
            if sp.pending[sp.cursor / 64] == 0 {
                sp.cursor = (sp.cursor / 64 + 1) * 64;
            } else {
                sp.cursor += 1;
            }
        }
        if sp.cursor >= total {
            // Pages left behind the cursor (a fork copies the parent's cursor state): again.
            sp.cursor = 0;
            if sp.left > 0 && !sp.pending.iter().any(|w| *w != 0) {
                sp.left = 0;
            }
            return Ok(());
        }
        let leaf = sp.cursor;
        let Some(orig) = orig_of(&self.source, leaf) else {
            sp.clear(leaf);
            return Ok(());
        };
        let Some((cur, seg)) = sp.to_cur(orig) else {
            // Unmapped by the process before it was needed.
            if sp.clear(leaf) && i == 0 {
                self.report.pages_dropped += 1;
            }
            return Ok(());
        };
        let n = self.run(i, orig, seg, leaf, BACKGROUND_RUN);
        if let Copied::Done(done) | Copied::Again(done) = self.copy(i, cur, orig, leaf, n)? {
            if i == 0 {
                self.report.pages_in_background += done;
            }
        }
        Ok(())
    }

    /// Copies `n` checked pages of the image at `orig` (leaves from `leaf`) to `cur` in space
    /// `i`; pages already there count as done.
    fn copy(&mut self, i: usize, cur: u64, orig: u64, leaf: usize, n: u64) -> Result<Copied> {
        self.source.read_checked(orig, n, &mut self.buf)?;
        self.copy_from(i, cur, leaf, n, self.buf.as_ptr() as u64)
    }

    /// Copies `n` checked pages at `src` (memzinc's, page-aligned) to `cur` in space `i`.
    fn copy_from(&mut self, i: usize, cur: u64, leaf: usize, n: u64, src: u64) -> Result<Copied> {
        let mut done = 0;
        while done < n {
            let mut c = UffdioCopy {
                dst: cur + done * PAGE_SIZE,
                src: src + done * PAGE_SIZE,
                len: (n - done) * PAGE_SIZE,
                mode: 0,
                copy: 0,
            };
            let r = ioctl(self.spaces[i].uffd.as_raw_fd(), UFFDIO_COPY, &mut c);
            let copied = if c.copy > 0 { c.copy as u64 / PAGE_SIZE } else { 0 };
            for k in done..done + copied {
                self.spaces[i].clear(leaf + k as usize);
            }
            done += copied;
            match r {
                Ok(_) => {}
                // The process is changing its map: its events first; the rest of the run is
                // looked at again later.
                Err(Errno::EAGAIN) => return Ok(Copied::Again(done)),
                Err(Errno::EEXIST) => {
                    // Already there (put in by an earlier copy): nothing to do for that page.
                    self.spaces[i].clear(leaf + done as usize);
                    done += 1;
                }
                Err(Errno::ESRCH) => {
                    self.spaces[i].alive = false;
                    self.spaces[i].left = 0;
                    return Ok(Copied::Gone);
                }
                Err(Errno::ENOENT) => {
                    // No longer registered: unmapped (its UNMAP event is on its way).
                    for k in done..n {
                        self.spaces[i].clear(leaf + k as usize);
                    }
                    return Ok(Copied::Done(done));
                }
                Err(e) => return Err(Error::Restore(format!("UFFDIO_COPY at {:#x}: {e}", c.dst))),
            }
        }
        Ok(Copied::Done(done))
    }

    fn zero(&mut self, i: usize, at: u64) -> Result<()> {
        let mut z = UffdioZeropage {
            range: UffdioRange {
                start: at,
                len: PAGE_SIZE,
            },
            mode: 0,
            zeropage: 0,
        };
        match ioctl(self.spaces[i].uffd.as_raw_fd(), UFFDIO_ZEROPAGE, &mut z) {
            Ok(_) => {
                if i == 0 {
                    self.report.zero_pages += 1;
                }
                Ok(())
            }
            // Already there.
            Err(Errno::EEXIST) => {
                self.wake(i, at);
                Ok(())
            }
            Err(Errno::EAGAIN) => {
                self.retry.push((i, at));
                Ok(())
            }
            Err(Errno::ENOENT) => {
                self.wake(i, at);
                Ok(())
            }
            Err(Errno::ESRCH) => {
                self.spaces[i].alive = false;
                self.spaces[i].left = 0;
                Ok(())
            }
            Err(e) => Err(Error::Restore(format!("UFFDIO_ZEROPAGE at {at:#x}: {e}"))),
        }
    }
}

fn leaf_of(source: &Source, orig: u64) -> Option<usize> {
    source
        .region_at(orig)
        .map(|r| r.first_leaf + ((orig - r.start) / PAGE_SIZE) as usize)
}

fn orig_of(source: &Source, leaf: usize) -> Option<u64> {
    source
        .regions
        .iter()
        .find(|r| leaf >= r.first_leaf && leaf < r.first_leaf + ((r.end - r.start) / PAGE_SIZE) as usize)
        .map(|r| r.start + (leaf - r.first_leaf) as u64 * PAGE_SIZE)
}
