//! The memory half of a snapshot: copy every captured page while the target is frozen, thaw it
//! as soon as the last page is copied, hash and write on every core meanwhile.
//!
//! Measured on the 2-core box (notes/process.md): process_vm_readv moves 3–8 GB/s, SHA-256 with
//! SHA-NI ~1.7 GB/s per core (the bottleneck), buffered `write` into the page cache costs ~0.6
//! GB/s of *CPU* (the VM's page cache is expensive) while O_DIRECT writes cost almost no CPU
//! and the disk takes ~1.6 GB/s; faulting in fresh buffer memory costs more than the copy. So:
//!
//! - the reader (the calling thread) copies 8 MiB chunks into a small pool of page-aligned
//!   buffers and queues them; the target is thawed right after the last chunk is copied, before
//!   the last hashing and the disk; what is hashed is what was copied while it was stopped (a
//!   consistent image). With more than the pool (`max_buffers`) to copy, the reader waits for a
//!   free buffer, so a large target stays stopped for about as long as hashing takes;
//! - every chunk goes at once to a hasher (one per core: SHA-256 leaf + xxh3 per page) and to
//!   a writer, which writes it with O_DIRECT straight from the buffer at its file offset. Both
//!   only read the buffer, so the disk starts on a chunk as soon as it is copied rather than
//!   after its hashing (1 GiB checkpoint: capture 0.58 -> 0.43 s); the buffer is reused when
//!   both are done;
//! - the caller's final fsync then has no dirty page data to flush, only the notes and headers,
//!   so durability (temp + fsync + rename) is kept at no extra cost. Where O_DIRECT is refused
//!   (a file system without it) the workers write through the page cache instead.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memzinc_verifier::merkle;
use nix::libc;

use crate::base::{Error, Result, Sha2};
use crate::introspect::{self, ForkedCopy, Frozen, MapEntry, WriteProtected, PAGE_SIZE};

/// Pages are copied, hashed and written in chunks of this size.
const CHUNK: usize = 8 << 20;
/// Chunk buffers in use at most with `workers` hashers and as many writers: one for the reader
/// to fill while each worker holds one, and a spare (48 MiB on 2 cores), at most 16. Buffers are
/// reused (the reader allocates one only when none is free), and no more are made than the
/// pipeline can use, since fresh memory costs more to fault in than to copy into (on this VM
/// 0.3–2 ms per MiB, huge pages included): with 16 on 2 cores, zeroing them was a sixth of a
/// 1 GiB snapshot's CPU (perf), and 6 made it 8 % faster with the same pause (README). A target
/// larger than the pool stays frozen while its last chunks are hashed. Faulting them in before
/// the freeze made the total longer (100 MiB checkpoint: 0.07–0.10 s allocating on demand,
/// 0.15–0.32 s prepared first) and the freeze hardly shorter.
fn max_buffers(workers: usize) -> usize {
    (2 * workers + 2).min(16)
}

/// Which mappings a snapshot copies (and `track` follows).
pub(super) fn should_capture(m: &MapEntry) -> bool {
    // [vvar] pages fault on read; shared file mappings are the file's state. Shared anonymous
    // memory (MAP_SHARED|MAP_ANONYMOUS, shown as `/dev/zero (deleted)`, and System V segments)
    // is the process's own, shared with its children or parent: captured.
    m.readable() && (m.private() || shared_anonymous(m)) && m.path != "[vvar]" && m.path != "[vvar_vclock]"
}

/// Shared memory that no file a restore could open holds: MAP_SHARED|MAP_ANONYMOUS
/// (`/dev/zero (deleted)`, or no path) and System V segments (`/SYSV…`).
pub fn shared_anonymous(m: &MapEntry) -> bool {
    !m.private() && (m.path.is_empty() || m.path.starts_with("/dev/zero") || m.path.starts_with("/SYSV"))
}

/// One captured range of the target and where its pages go in the file.
pub(super) struct CaptureRange<'a> {
    pub start: u64,
    pub end: u64,
    /// File offset of the range's first page, in a file that holds the whole range.
    pub file_offset: u64,
    /// For an incremental snapshot: the same range in the previous snapshot, whose pages are
    /// reused except those listed to be read again.
    pub reuse: Option<Reuse<'a>>,
    /// Where the pages read go when the file does not hold the whole range (an incremental
    /// snapshot that refers to its parent): the file offset of each run of [`Self::runs`], in
    /// order. `None`: at `file_offset` plus their offset in the range.
    pub packed: Option<Vec<u64>>,
}

/// Reads the previous snapshot's bytes at an address into a buffer.
pub(super) type PrevBytes<'a> = Box<dyn Fn(u64, &mut [u8]) -> Result<()> + Sync + 'a>;

/// The previous snapshot's copy of a range (see [`CaptureRange::reuse`]).
pub(super) struct Reuse<'a> {
    /// Reads the previous snapshot's bytes at an address of the range into a buffer.
    pub bytes: PrevBytes<'a>,
    /// The index of the range's first page among the previous snapshot's leaves
    /// ([`PageHashes`]).
    pub prev_first: usize,
    /// Page runs (start, end) to read from the target: written since, or unreadable then.
    /// Sorted, disjoint, inside the range.
    pub read: Vec<(u64, u64)>,
    /// Whether the other pages' bytes are copied into the new file (a full core) or left in
    /// the previous snapshot (one that refers to it).
    pub copy: bool,
}

impl CaptureRange<'_> {
    /// The page runs read from the target.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        match &self.reuse {
            None => vec![(self.start, self.end)],
            Some(r) => r.read.clone(),
        }
    }

    /// The page runs read from the target, each with where it goes in the file.
    fn placed_runs(&self) -> Vec<(u64, u64, u64)> {
        let runs = self.runs();
        match &self.packed {
            Some(offsets) => runs.into_iter().zip(offsets).map(|((s, e), &at)| (s, e, at)).collect(),
            None => runs
                .into_iter()
                .map(|(s, e)| (s, e, self.file_offset + (s - self.start)))
                .collect(),
        }
    }
}

/// A snapshot's page hashes, one of each per captured page, in leaf order.
pub(super) struct PageHashes {
    pub leaves: Vec<[u8; 32]>,
    /// xxh3-64 of every page's stored bytes.
    pub fast_hashes: Vec<u64>,
}

/// What the capture found, in range and page order.
pub(super) struct Captured {
    pub hashes: PageHashes,
    /// Runs of leaf indices `[start, end)` whose leaves are not the previous snapshot's at the
    /// same index (every leaf, without one): where the page tree's kept level may differ.
    pub fresh: Vec<(usize, usize)>,
    /// Per range: addresses of the pages that could not be read, ascending.
    pub unreadable: Vec<Vec<u64>>,
    /// How long the target stayed frozen for the copy.
    pub frozen_for: Duration,
    /// Pages read from the target (the rest came from the previous snapshot).
    pub pages_read: u64,
    /// This thread kept off the cores the target keeps busy, if it runs again: hold it while
    /// the snapshot is finished ([`BusyCores`]).
    pub kept_off: Option<KeptOff>,
}

/// A page-aligned buffer of anonymous memory (O_DIRECT needs the alignment), on huge pages
/// where the kernel can give them: faulting in fresh 4 KiB pages costs ten times the copy
/// (1 GiB: 1.4 s of faults with 4 KiB pages, 0.14 s with 2 MiB ones, measured here). The
/// mapping is larger than the buffer so the buffer can start on a 2 MiB boundary.
struct PageBuf {
    map: memmap2::MmapMut,
    offset: usize,
}

const HUGE_PAGE: usize = 2 << 20;

impl PageBuf {
    /// `huge`: on huge pages where the kernel can give them; else on 4 KiB pages, where only
    /// the pages written are faulted in.
    fn new(huge: bool) -> std::io::Result<PageBuf> {
        let map = memmap2::MmapMut::map_anon(CHUNK + HUGE_PAGE)?;
        // Only a hint; without THP the buffer still works.
        let _ = map.advise(if huge {
            memmap2::Advice::HugePage
        } else {
            memmap2::Advice::NoHugePage
        });
        let address = map.as_ptr() as usize;
        let offset = address.next_multiple_of(HUGE_PAGE) - address;
        Ok(PageBuf { map, offset })
    }

    fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + CHUNK]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map[self.offset..self.offset + CHUNK]
    }
}

/// Runs of pages that lie back to back in a buffer, each at its own address and file offset.
struct Chunk {
    pieces: Vec<Piece>,
    len: usize,
    /// Per page of the chunk.
    readable: Vec<bool>,
    /// Taken only by `drop`.
    buf: Option<PageBuf>,
    /// Where the buffer goes when the chunk is dropped: by the last worker done with it, or
    /// unprocessed when a queue closes because its workers stopped. Either way the reader gets
    /// it back, so it never waits for a buffer that cannot come.
    free: mpsc::Sender<PageBuf>,
}

/// A run of pages of a chunk: its address, the index of its first page among all pages of the
/// capture (its leaf), where it goes in the file, and its length in bytes.
#[derive(Clone, Copy)]
struct Piece {
    address: u64,
    leaf_index: usize,
    file_offset: u64,
    len: usize,
    /// Index of its capture range.
    range: usize,
}

impl Chunk {
    fn pages(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| &b.bytes()[..self.len])
    }

    /// The chunk's bytes as writes: (file offset, bytes), pieces that follow each other in the
    /// file joined into one.
    fn writes(&self) -> Vec<(u64, &[u8])> {
        let pages = self.pages();
        let mut writes: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        let mut at = 0;
        for p in &self.pieces {
            match writes.last_mut() {
                Some((offset, range)) if *offset + range.len() as u64 == p.file_offset => range.end += p.len,
                _ => writes.push((p.file_offset, at..at + p.len)),
            }
            at += p.len;
        }
        writes
            .into_iter()
            .map(|(offset, range)| (offset, &pages[range]))
            .collect()
    }

    /// Each piece with its bytes and its pages' readability.
    fn pieces(&self) -> impl Iterator<Item = (Piece, &[u8], &[bool])> {
        let pages = self.pages();
        self.pieces.iter().scan(0usize, move |at, p| {
            let (from, page) = (*at, *at / PAGE_SIZE as usize);
            *at += p.len;
            let readable = self
                .readable
                .get(page..page + p.len / PAGE_SIZE as usize)
                .unwrap_or(&[]);
            Some((*p, &pages[from..from + p.len], readable))
        })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let _ = self.free.send(buf);
        }
    }
}

struct ChunkDone {
    leaf_index: usize,
    leaves: Vec<[u8; 32]>,
    fast_hashes: Vec<u64>,
}

/// The file the workers write page data through: a second descriptor with O_DIRECT when the
/// file system allows it, else the file itself.
struct DataWriter<'a> {
    direct: Option<File>,
    buffered: &'a File,
}

impl DataWriter<'_> {
    fn open(file: &File) -> DataWriter<'_> {
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .ok();
        DataWriter { direct, buffered: file }
    }

    fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        if let Some(direct) = &self.direct {
            match direct.write_all_at(bytes, offset) {
                // EINVAL: this file system or block size refuses the alignment.
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {}
                other => return other,
            }
        }
        self.buffered.write_all_at(bytes, offset)
    }
}

/// Who holds the freeze during a capture.
pub(super) enum Hold<'a> {
    /// A snapshot with `--stop-the-world`: the target is thawed as soon as its pages are copied.
    ThawAfterCopy(Frozen),
    /// A checkpoint: the caller keeps the target frozen until the core is on disk (and then
    /// kills or resumes it), so nothing it does after the copy can be lost or repeated.
    Keep(&'a Frozen),
    /// A copy-on-write snapshot: the target is thawed once the ranges a fork does not copy
    /// faithfully are read; the others are read from the copy (`introspect::ForkedCopy`).
    CopyOnWrite(CowSource<'a>),
    /// A write-protected snapshot: the target is thawed once the ranges the view does not
    /// hold are read; the others are read from the running target through the view
    /// (`introspect::WriteProtected`).
    Protected(ProtectedSource<'a>),
}

/// A capture thread's CPU given to the target first (nice 19) while the target runs again:
/// on a machine with fewer cores than runnable threads, a thread of the target otherwise waits
/// tens of milliseconds behind the hashing — a pause it sees though it is not frozen (measured
/// here: 50 ms at 1 GiB where the freeze was 12 ms). Linux's nice value is a thread's, so
/// this is the calling thread's only, and it gets its own back when this drops (raising it
/// back needs privilege; the workers end with the capture anyway).
struct Yielding {
    tid: libc::id_t,
    nice: Option<i32>,
}

impl Yielding {
    fn start() -> Yielding {
        // SAFETY: gettid, getpriority and setpriority take plain values and touch no memory of
        // ours; a failure is reported through errno (cleared first: -1 is also a nice value).
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
            let known = *libc::__errno_location() == 0;
            let lowered = libc::setpriority(libc::PRIO_PROCESS, tid, 19) == 0;
            Yielding {
                tid,
                nice: (known && lowered).then_some(nice),
            }
        }
    }
}

impl Drop for Yielding {
    fn drop(&mut self) {
        if let Some(nice) = self.nice {
            // SAFETY: as in `start`.
            let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, self.tid, nice) };
        }
    }
}

/// How long the target runs again before its busy threads are told apart ([`BusyCores`]).
const BUSY_WINDOW: Duration = Duration::from_millis(20);
/// A thread of the target that ran at least this share of the window keeps a core busy.
const BUSY_SHARE: f64 = 0.25;

/// The cores the target keeps busy once it runs again, so that the capture's threads (and the
/// rest of the snapshot's work, on the thread that thawed it) stay off them. A lower priority
/// is not enough: a terminal's `memzinc` and a service are in different scheduling groups
/// (autogroups, cgroups), which share a core evenly whatever their threads' nice values, and a
/// hasher on the core of a target thread that spins took half of it in slices of 4–60 ms
/// (traced, 4 GiB, 2 cores). Kept off that core, the largest pause the target saw fell from a
/// median of 9.2 ms (worst 26 ms) to 4.1 ms (worst 6.4 ms), and the snapshot took 5.0 s
/// instead of 4.9 (an ad-hoc A/B, 8 alternated runs each). Nothing is kept off when every core
/// is busy (or no thread is).
struct BusyCores {
    pid: i32,
    thawed: Instant,
    before: Vec<introspect::ThreadCpuTime>,
    /// The CPUs to run on, decided once the window has passed (`None`: stay where allowed).
    decided: std::sync::OnceLock<Option<libc::cpu_set_t>>,
}

impl BusyCores {
    /// Starts watching the target, which runs again from now on. `None` if its threads' times
    /// cannot be read (without them every thread's whole life would count).
    fn thawed(pid: i32) -> Option<BusyCores> {
        Some(BusyCores {
            pid,
            thawed: Instant::now(),
            before: introspect::thread_cpu_times(pid).ok()?,
            decided: std::sync::OnceLock::new(),
        })
    }

    /// The CPUs to run on: `None` until the window has passed, then the decision, the same for
    /// every thread that asks. With `now`, it is made early once a quarter of the window has
    /// passed; before that there is none for this thread (run times advance in ticks: too
    /// short a window says nothing).
    fn decided(&self, now: bool) -> Option<&Option<libc::cpu_set_t>> {
        if let Some(d) = self.decided.get() {
            return Some(d);
        }
        let elapsed = self.thawed.elapsed();
        if elapsed >= BUSY_WINDOW || (now && elapsed >= BUSY_WINDOW / 4) {
            Some(self.decided.get_or_init(|| self.decide(elapsed)))
        } else if now {
            Some(&None)
        } else {
            None
        }
    }

    /// The CPUs the target's threads that ran at least [`BUSY_SHARE`] of `elapsed` ran on last.
    fn busy_cpus(&self, elapsed: Duration) -> Option<Vec<usize>> {
        let after = introspect::thread_cpu_times(self.pid).ok()?;
        Some(
            after
                .iter()
                .filter(|a| {
                    let before = self.before.iter().find(|b| b.tid == a.tid).map_or(0, |b| b.ran_ns);
                    a.ran_ns.saturating_sub(before) as f64 >= BUSY_SHARE * elapsed.as_nanos() as f64
                })
                .map(|a| a.cpu)
                .collect(),
        )
    }

    fn decide(&self, elapsed: Duration) -> Option<libc::cpu_set_t> {
        let busy = self.busy_cpus(elapsed)?;
        let left = cpus_left(&busy);
        tracing::debug!(
            "capture: target threads busy on cpus {busy:?} in its first {elapsed:?}; {} cpus left to us",
            left.as_ref().map_or("no".to_string(), |l| {
                // SAFETY: CPU_COUNT reads the set.
                unsafe { libc::CPU_COUNT(l) }.to_string()
            })
        );
        left
    }
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the size given into the set; 0 is this thread.
    let read = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&allowed), &mut allowed) };
    (read == 0).then_some(allowed)
}

/// The CPUs this thread may run on but `busy`; `None` if that leaves all of them or none.
fn cpus_left(busy: &[usize]) -> Option<libc::cpu_set_t> {
    let allowed = allowed_cpus()?;
    let mut left = allowed;
    for &cpu in busy {
        if cpu < libc::CPU_SETSIZE as usize {
            // SAFETY: `cpu` is within the set's size.
            unsafe { libc::CPU_CLR(cpu, &mut left) };
        }
    }
    // SAFETY: CPU_COUNT reads the sets.
    let (left_n, allowed_n) = unsafe { (libc::CPU_COUNT(&left), libc::CPU_COUNT(&allowed)) };
    (left_n > 0 && left_n < allowed_n).then_some(left)
}

/// The calling thread kept on the CPUs a [`BusyCores`] left to it, until dropped.
pub(super) struct KeptOff {
    tid: libc::pid_t,
    allowed: libc::cpu_set_t,
}

impl KeptOff {
    fn start(cpus: &Option<libc::cpu_set_t>) -> Option<KeptOff> {
        let cpus = cpus.as_ref()?;
        let allowed = allowed_cpus()?;
        // SAFETY: gettid takes nothing; sched_setaffinity reads at most the size given, a plain
        // value, for this thread (0).
        unsafe {
            (libc::sched_setaffinity(0, std::mem::size_of_val(cpus), cpus) == 0).then(|| KeptOff {
                tid: libc::gettid(),
                allowed,
            })
        }
    }
}

impl Drop for KeptOff {
    fn drop(&mut self) {
        // SAFETY: as in `start`; the thread is named by its id, wherever this drops.
        let _ = unsafe { libc::sched_setaffinity(self.tid, std::mem::size_of_val(&self.allowed), &self.allowed) };
    }
}

/// A capture thread's way onto the CPUs a [`BusyCores`] leaves it, once the target runs and
/// the decision is made.
struct Confinement<'a> {
    busy: &'a std::sync::OnceLock<BusyCores>,
    kept: Option<KeptOff>,
    settled: bool,
}

impl<'a> Confinement<'a> {
    fn new(busy: &'a std::sync::OnceLock<BusyCores>) -> Confinement<'a> {
        Confinement {
            busy,
            kept: None,
            settled: false,
        }
    }

    /// Moves this thread if the decision is made (`now`: make it now if enough of the window
    /// has passed, see [`BusyCores::decided`]).
    fn check(&mut self, now: bool) {
        if self.settled {
            return;
        }
        if let Some(cpus) = self.busy.get().and_then(|b| b.decided(now)) {
            self.kept = KeptOff::start(cpus);
            self.settled = true;
        }
    }
}

/// Where a copy-on-write capture reads (see [`Freeze::CopyOnWrite`]).
pub(super) struct CowSource<'a> {
    pub frozen: Frozen,
    /// The forked copy, made no child of the target ([`ForkedCopy::orphan`]) once it is thawed.
    pub copy: &'a mut ForkedCopy,
    /// Per capture range: read from the target while it is frozen (not from the copy).
    pub during_freeze: &'a [bool],
    /// Whole pages read from the target before anything was injected into it, which take the
    /// place of what was read later (the rseq area the kernel rewrites as the borrowed thread
    /// returns to user space). Page-aligned, each a whole number of pages.
    pub overlay: &'a [(u64, Vec<u8>)],
}

/// Where a write-protected capture reads (see [`Hold::Protected`]).
pub(super) struct ProtectedSource<'a> {
    pub frozen: Frozen,
    pub view: &'a WriteProtected,
    /// Per capture range: read while the target is frozen (the view does not hold it).
    pub during_freeze: &'a [bool],
}

impl Hold<'_> {
    pub fn frozen(&self) -> &Frozen {
        match self {
            Hold::ThawAfterCopy(f) => f,
            Hold::Keep(f) => f,
            Hold::CopyOnWrite(c) => &c.frozen,
            Hold::Protected(p) => &p.frozen,
        }
    }
}

/// Copies `ranges` of the frozen target into `file` at their offsets, hashing every page, and
/// thaws the target as soon as the copy is done unless `frozen` says to keep it. `path` names
/// the file in errors. `prev`: the previous snapshot's page hashes, when a range reuses it
/// ([`CaptureRange::reuse`]).
pub(super) fn capture(
    pid: i32,
    frozen: Hold<'_>,
    ranges: &[CaptureRange],
    prev: Option<PageHashes>,
    file: &File,
    path: &Path,
) -> Result<Captured> {
    let writer = DataWriter::open(file);
    let first_leaf: Vec<usize> = ranges
        .iter()
        .scan(0usize, |n, r| {
            let first = *n;
            *n += ((r.end - r.start) / PAGE_SIZE) as usize;
            Some(first)
        })
        .collect();
    // Every chunk goes to a hasher (one per core) and, at the same time, to a writer: both only
    // read the buffer, so the disk starts on a chunk as soon as it is copied instead of after
    // its hashing, and stays busy. The buffer is free again when both are done with it (when
    // the chunk, shared by both, is dropped).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let buffers = max_buffers(cores);
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Arc<Chunk>>(buffers);
    let (write_tx, write_rx) = mpsc::sync_channel::<Arc<Chunk>>(buffers);
    let (free_tx, free_rx) = mpsc::channel::<PageBuf>();
    let (hash_rx, write_rx) = (Arc::new(Mutex::new(hash_rx)), Arc::new(Mutex::new(write_rx)));

    // Set once the target runs again: from then on every capture thread yields it the CPU.
    let target_runs = AtomicBool::new(false);
    let busy_cores = std::sync::OnceLock::new();
    std::thread::scope(|scope| {
        let hashers: Vec<_> = (0..cores)
            .map(|_| {
                let hash_rx = Arc::clone(&hash_rx);
                let target_runs = &target_runs;
                let busy_cores = &busy_cores;
                let named = std::thread::Builder::new().name("memzinc-hash".into());
                named.spawn_scoped(scope, move || {
                    introspect::HoldSignals::in_this_thread_for_good();
                    let mut yielding = None;
                    let mut confinement = Confinement::new(busy_cores);
                    let mut done = Vec::new();
                    let mut hashing = Duration::ZERO;
                    while let Ok(chunk) = next(&hash_rx) {
                        if yielding.is_none() && target_runs.load(Ordering::Relaxed) {
                            yielding = Some(Yielding::start());
                        }
                        confinement.check(false);
                        let started = Instant::now();
                        for (piece, pages, readable) in chunk.pieces() {
                            done.push(ChunkDone {
                                leaf_index: piece.leaf_index,
                                leaves: page_leaves(piece.address, pages, readable),
                                fast_hashes: pages
                                    .chunks(PAGE_SIZE as usize)
                                    .map(xxhash_rust::xxh3::xxh3_64)
                                    .collect(),
                            });
                        }
                        hashing += started.elapsed();
                    }
                    tracing::debug!("capture hasher: {hashing:?}");
                    done
                })
            })
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io("a capture thread", e))?;
        let writers: Vec<_> = (0..cores)
            .map(|_| {
                let write_rx = Arc::clone(&write_rx);
                let writer = &writer;
                let target_runs = &target_runs;
                let busy_cores = &busy_cores;
                let named = std::thread::Builder::new().name("memzinc-write".into());
                named.spawn_scoped(scope, move || -> Result<()> {
                    introspect::HoldSignals::in_this_thread_for_good();
                    let mut yielding = None;
                    let mut confinement = Confinement::new(busy_cores);
                    let mut writing = Duration::ZERO;
                    while let Ok(chunk) = next(&write_rx) {
                        if yielding.is_none() && target_runs.load(Ordering::Relaxed) {
                            yielding = Some(Yielding::start());
                        }
                        confinement.check(false);
                        let started = Instant::now();
                        for (offset, bytes) in chunk.writes() {
                            writer.write_at(bytes, offset).map_err(|e| Error::io(path, e))?;
                        }
                        writing += started.elapsed();
                    }
                    tracing::debug!("capture writer: {writing:?}");
                    Ok(())
                })
            })
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io("a capture thread", e))?;
        // The workers own the receivers: if every writer stops (a write failed), sending fails.
        drop((hash_rx, write_rx));

        let copy_started = Instant::now();
        let mut pool = Pool {
            confinement: Confinement::new(&busy_cores),
            allocated: 0,
            max: buffers,
            small_pages: matches!(frozen, Hold::CopyOnWrite(_) | Hold::Protected(_)),
            free_tx,
            free_rx,
        };
        let queues = [&hash_tx, &write_tx];
        // Once the target is thawed: the workers yield to it, and every capture thread keeps off
        // the cores it keeps busy.
        let runs_again = || {
            if let Some(watch) = BusyCores::thawed(pid) {
                let _ = busy_cores.set(watch);
            }
            target_runs.store(true, Ordering::Relaxed);
        };
        let (read, frozen_for, thawed) = match frozen {
            Hold::CopyOnWrite(cow) => {
                let during = |i: usize| cow.during_freeze.get(i).copied().unwrap_or(true);
                let early = read_chunks(
                    Source::Live(pid),
                    ranges,
                    &first_leaf,
                    queues,
                    &mut pool,
                    &during,
                    cow.overlay,
                );
                let frozen_for = cow.frozen.stopped_for();
                drop(cow.frozen);
                runs_again();
                pool.small_pages = false;
                introspect::fault_point("cow-thawed");
                // This thread reads the copy while the target runs: it yields too, until then
                // (if it can take its priority back afterwards: root can).
                // SAFETY: geteuid takes nothing and cannot fail.
                let root = unsafe { libc::geteuid() } == 0;
                let _yielding = root.then(Yielding::start);
                let read = early.and_then(|mut unreadable| {
                    cow.copy.orphan()?;
                    introspect::fault_point("cow-orphaned");
                    let copy_pid = cow.copy.pid();
                    let path = format!("/proc/{copy_pid}/mem");
                    let mem = File::open(&path).map_err(|e| Error::io(&path, e))?;
                    let copy = Source::Copy(copy_pid, &mem);
                    let later = read_chunks(
                        copy,
                        ranges,
                        &first_leaf,
                        queues,
                        &mut pool,
                        &|i| !during(i),
                        cow.overlay,
                    )?;
                    // A copy killed under us reads as nothing, which is not the target's memory.
                    introspect::check_target(copy_pid).map_err(|_| Error::CopyOnWrite {
                        pid,
                        why: format!("its copy (pid {copy_pid}) was killed while being read"),
                    })?;
                    for (u, more) in unreadable.iter_mut().zip(later) {
                        u.extend(more);
                    }
                    Ok(unreadable)
                });
                (read, frozen_for, true)
            }
            Hold::Protected(p) => {
                let during = |i: usize| p.during_freeze.get(i).copied().unwrap_or(true);
                let early = read_chunks(Source::Live(pid), ranges, &first_leaf, queues, &mut pool, &during, &[]);
                let frozen_for = p.frozen.stopped_for();
                drop(p.frozen);
                runs_again();
                pool.small_pages = false;
                introspect::fault_point("wp-thawed");
                // SAFETY: geteuid takes nothing and cannot fail.
                let root = unsafe { libc::geteuid() } == 0;
                let _yielding = root.then(Yielding::start);
                let read = early.and_then(|mut unreadable| {
                    let later = read_chunks(
                        Source::Protected(pid, p.view),
                        ranges,
                        &first_leaf,
                        queues,
                        &mut pool,
                        &|i| !during(i),
                        &[],
                    )?;
                    for (u, more) in unreadable.iter_mut().zip(later) {
                        u.extend(more);
                    }
                    Ok(unreadable)
                });
                (read, frozen_for, true)
            }
            frozen => {
                let read = read_chunks(
                    Source::Live(pid),
                    ranges,
                    &first_leaf,
                    queues,
                    &mut pool,
                    &|_| true,
                    &[],
                );
                let frozen_for = frozen.frozen().stopped_for();
                let thawed = matches!(frozen, Hold::ThawAfterCopy(_));
                drop(frozen);
                if thawed {
                    runs_again();
                }
                (read, frozen_for, thawed)
            }
        };
        tracing::debug!(
            "capture: target stopped {frozen_for:?}, copied in {:?}, thawed: {thawed}",
            copy_started.elapsed()
        );
        let read = read.and_then(|unreadable| {
            copy_reused(ranges, &write_tx, &mut pool)?;
            Ok(unreadable)
        });
        drop((hash_tx, write_tx));

        let mut failure = None;
        for h in writers {
            if let Err(e) = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) {
                failure = failure.or(Some(e));
            }
        }
        let done: Vec<ChunkDone> = hashers
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        // A reader error explains a worker's failure, not the other way round.
        let unreadable = read?;
        if let Some(e) = failure {
            return Err(e);
        }
        let pages_read = done.iter().map(|d| d.leaves.len() as u64).sum();
        let (hashes, fresh) = page_hashes(ranges, &first_leaf, done, prev);
        tracing::debug!(
            "capture: hashed and written {:?} after the copy began",
            copy_started.elapsed()
        );
        Ok(Captured {
            hashes,
            fresh,
            unreadable,
            frozen_for,
            pages_read,
            kept_off: {
                pool.confinement.check(true);
                pool.confinement.kept
            },
        })
    })
}

/// This capture's page hashes, in leaf order, and the runs of leaves that are not the previous
/// snapshot's at the same index ([`Captured::fresh`]): the pages read (`done`), the others the
/// previous snapshot's (`prev`). Where every page has its previous index, `prev`'s vectors
/// become this snapshot's, the pages read written over (at 4 GiB that spares 40 MiB of fresh
/// memory, 20-40 ms here); else its hashes are copied to their places.
fn page_hashes(
    ranges: &[CaptureRange],
    first_leaf: &[usize],
    done: Vec<ChunkDone>,
    prev: Option<PageHashes>,
) -> (PageHashes, Vec<(usize, usize)>) {
    let page_count: usize = ranges.iter().map(|r| ((r.end - r.start) / PAGE_SIZE) as usize).sum();
    let in_place = prev.as_ref().is_some_and(|p| {
        p.leaves.len() == page_count
            && p.fast_hashes.len() == page_count
            && ranges
                .iter()
                .zip(first_leaf)
                .all(|(r, &first)| r.reuse.as_ref().is_none_or(|u| u.prev_first == first))
    });
    if prev.is_some() {
        tracing::debug!(
            "capture: the previous snapshot's page hashes {}",
            if in_place {
                "taken over in place"
            } else {
                "copied to their places"
            }
        );
    }
    let (mut leaves, mut fast_hashes, copy_from) = match prev {
        Some(p) if in_place => (p.leaves, p.fast_hashes, None),
        prev => (vec![[0u8; 32]; page_count], vec![0u64; page_count], prev),
    };
    let mut fresh = Vec::with_capacity(done.len());
    for d in done {
        leaves[d.leaf_index..d.leaf_index + d.leaves.len()].copy_from_slice(&d.leaves);
        fast_hashes[d.leaf_index..d.leaf_index + d.fast_hashes.len()].copy_from_slice(&d.fast_hashes);
        fresh.push((d.leaf_index, d.leaf_index + d.leaves.len()));
    }
    if !in_place {
        for (r, &first) in ranges.iter().zip(first_leaf) {
            let Some(reuse) = &r.reuse else {
                continue;
            };
            let prev = copy_from
                .as_ref()
                .expect("a range that reuses the previous snapshot comes with its hashes");
            for (start, end) in unread_runs(r.start, r.end, &reuse.read) {
                let (skip, len) = (start - r.start, end - start);
                let (i, n) = ((skip / PAGE_SIZE) as usize, (len / PAGE_SIZE) as usize);
                let theirs = reuse.prev_first + i;
                leaves[first + i..first + i + n].copy_from_slice(&prev.leaves[theirs..theirs + n]);
                fast_hashes[first + i..first + i + n].copy_from_slice(&prev.fast_hashes[theirs..theirs + n]);
                if theirs != first + i {
                    fresh.push((first + i, first + i + n));
                }
            }
        }
    }
    (PageHashes { leaves, fast_hashes }, fresh)
}

/// Where the reader reads.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The target (process_vm_readv).
    Live(i32),
    /// A forked copy, through its /proc/PID/mem (see `introspect::read_pages_mem`).
    Copy(i32, &'a File),
    /// The running target through its write-protected view: each chunk is settled with it.
    Protected(i32, &'a WriteProtected),
}

/// The reader's buffers: those allocated so far and the way back of those in use.
struct Pool<'a> {
    /// The reader's: it reads from the running target or its copy after the thaw.
    confinement: Confinement<'a>,
    allocated: usize,
    /// Buffers allocated at most ([`max_buffers`]).
    max: usize,
    /// New buffers on 4 KiB pages (see [`Pool::take`]): until a copy-on-write target is thawed.
    small_pages: bool,
    free_tx: mpsc::Sender<PageBuf>,
    free_rx: mpsc::Receiver<PageBuf>,
}

impl Pool<'_> {
    /// A free buffer: one back from a dropped chunk, a new one while fewer than
    /// [`Pool::max`] exist, else the next to come back. Every buffer is in a chunk then: it
    /// comes back when its chunk is dropped, also when the workers stopped (a write failed);
    /// the next send fails, and their error is the one to report. `None`: none can come.
    fn take(&mut self) -> Result<Option<PageBuf>> {
        match self.free_rx.try_recv() {
            Ok(buf) => Ok(Some(buf)),
            Err(_) if self.allocated < self.max => {
                self.allocated += 1;
                // The buffers of a copy-on-write capture filled during the freeze take what is
                // read then, usually a few pages: a huge page's fault (2 MiB zeroed, memory the
                // VM's host may have to give back first) would stop the target for it.
                let buf =
                    PageBuf::new(!self.small_pages).map_err(|e| Error::io("anonymous memory for the page copy", e))?;
                Ok(Some(buf))
            }
            Err(_) => Ok(self.free_rx.recv().ok()),
        }
    }

    /// An empty chunk around a free buffer ([`Pool::take`]); `None`: none can come.
    fn chunk(&mut self) -> Result<Option<Chunk>> {
        self.confinement.check(false);
        Ok(self.take()?.map(|buf| Chunk {
            pieces: Vec::new(),
            len: 0,
            readable: Vec::new(),
            buf: Some(buf),
            free: self.free_tx.clone(),
        }))
    }
}

/// The pages an incremental capture does not read again ([`CaptureRange::reuse`]) when they
/// are copied: the previous snapshot's bytes, read from its file (or files, if it refers to
/// its parent) and queued to the writers only (their leaves are the previous ones). Through the
/// O_DIRECT writers, not `copy_file_range`: that copy left the whole unchanged image dirty in
/// the page cache for the final fsync to flush (measured: 1 GiB with 38 MiB written took 3.8 s,
/// a full snapshot 1.1 s).
fn copy_reused(ranges: &[CaptureRange], writers: &mpsc::SyncSender<Arc<Chunk>>, pool: &mut Pool) -> Result<()> {
    let mut filling: Option<Chunk> = None;
    for r in ranges {
        let Some(prev) = r.reuse.as_ref().filter(|p| p.copy) else {
            continue;
        };
        for (start, end) in unread_runs(r.start, r.end, &prev.read) {
            let mut at = start;
            while at < end {
                if let Some(full) = filling.take_if(|c| c.len == CHUNK) {
                    if writers.send(Arc::new(full)).is_err() {
                        // Every writer stopped: their error is the one to report.
                        return Ok(());
                    }
                }
                // Not hashed: the leaves come from the previous snapshot.
                let Some(mut chunk) = filling.take().map_or_else(|| pool.chunk(), |c| Ok(Some(c)))? else {
                    return Ok(());
                };
                let len = ((end - at) as usize).min(CHUNK - chunk.len);
                let from = chunk.len;
                let buf = chunk.buf.as_mut().expect("a chunk being filled has its buffer");
                (prev.bytes)(at, &mut buf.bytes_mut()[from..from + len])?;
                chunk.pieces.push(Piece {
                    address: at,
                    leaf_index: 0,
                    file_offset: r.file_offset + (at - r.start),
                    len,
                    range: 0,
                });
                chunk.len += len;
                filling = Some(chunk);
                at += len as u64;
            }
        }
    }
    if let Some(chunk) = filling {
        let _ = writers.send(Arc::new(chunk));
    }
    Ok(())
}

/// The reader: copies every range `which` selects from process `pid`, chunk by chunk, puts the
/// `overlay` pages over what it read, settles each chunk with the write-protected view if it
/// reads through one, and queues the chunks. Runs share a chunk until it is full and are read
/// together (an incremental snapshot's scattered pages: one process_vm_readv per 1024 runs, a
/// few buffers, one write per run of them that follows in the file). Returns the unreadable
/// pages per range (none for the ranges not selected).
fn read_chunks(
    source: Source<'_>,
    ranges: &[CaptureRange],
    first_leaf: &[usize],
    queues: [&mpsc::SyncSender<Arc<Chunk>>; 2],
    pool: &mut Pool,
    which: &dyn Fn(usize) -> bool,
    overlay: &[(u64, Vec<u8>)],
) -> Result<Vec<Vec<u64>>> {
    let mut unreadable = vec![Vec::new(); ranges.len()];
    let mut filling: Option<Chunk> = None;
    for (range_index, r) in ranges.iter().enumerate() {
        if !which(range_index) {
            continue;
        }
        for (run_start, run_end, run_offset) in r.placed_runs() {
            let mut address = run_start;
            while address < run_end {
                // Runs share a chunk until it is full (scattered pages: few reads, few buffers).
                if let Some(chunk) = filling.take_if(|c| c.len == CHUNK) {
                    if !fill_and_send(source, chunk, queues, overlay, &mut unreadable)? {
                        return Ok(unreadable);
                    }
                }
                let Some(mut chunk) = filling.take().map_or_else(|| pool.chunk(), |c| Ok(Some(c)))? else {
                    return Ok(unreadable);
                };
                let len = ((run_end - address) as usize).min(CHUNK - chunk.len);
                chunk.pieces.push(Piece {
                    address,
                    leaf_index: first_leaf[range_index] + ((address - r.start) / PAGE_SIZE) as usize,
                    file_offset: run_offset + (address - run_start),
                    len,
                    range: range_index,
                });
                chunk.len += len;
                filling = Some(chunk);
                address += len as u64;
            }
        }
    }
    if let Some(chunk) = filling {
        fill_and_send(source, chunk, queues, overlay, &mut unreadable)?;
    }
    Ok(unreadable)
}

/// Reads a chunk's pieces from `source` into its buffer, lays the `overlay` over them, settles
/// them with the write-protected view if there is one, notes their unreadable pages and queues
/// the chunk. False once every writer stopped (their error is the one to report).
fn fill_and_send(
    source: Source<'_>,
    mut chunk: Chunk,
    queues: [&mpsc::SyncSender<Arc<Chunk>>; 2],
    overlay: &[(u64, Vec<u8>)],
    unreadable: &mut [Vec<u64>],
) -> Result<bool> {
    let pieces: Vec<(u64, usize)> = chunk.pieces.iter().map(|p| (p.address, p.len)).collect();
    let len = chunk.len;
    let buf = chunk.buf.as_mut().expect("a chunk being filled has its buffer");
    let bytes = &mut buf.bytes_mut()[..len];
    // A vanished target is named by the snapshot's caller (`killed_while_snapshotting`).
    let mut readable = match source {
        Source::Live(pid) | Source::Protected(pid, _) => introspect::read_scattered(pid, &pieces, bytes)?,
        Source::Copy(pid, mem) => {
            let mut readable = Vec::with_capacity(len / PAGE_SIZE as usize);
            let mut at = 0;
            for &(address, n) in &pieces {
                readable.extend(introspect::read_pages_mem(pid, mem, address, &mut bytes[at..at + n])?);
                at += n;
            }
            readable
        }
    };
    let mut at = 0;
    for p in &chunk.pieces {
        let (bytes, page) = (&mut bytes[at..at + p.len], at / PAGE_SIZE as usize);
        let readable = &mut readable[page..page + p.len / PAGE_SIZE as usize];
        lay_over(p.address, bytes, readable, overlay);
        if let Source::Protected(_, view) = source {
            view.settle(p.address, bytes, readable)?;
        }
        unreadable[p.range].extend(
            readable
                .iter()
                .enumerate()
                .filter(|(_, ok)| !**ok)
                .map(|(i, _)| p.address + i as u64 * PAGE_SIZE),
        );
        at += p.len;
    }
    chunk.readable = readable;
    let chunk = Arc::new(chunk);
    Ok(queues.iter().all(|q| q.send(Arc::clone(&chunk)).is_ok()))
}

/// Puts the `overlay` pages that fall in `[address, address + bytes.len())` over `bytes`.
fn lay_over(address: u64, bytes: &mut [u8], readable: &mut [bool], overlay: &[(u64, Vec<u8>)]) {
    let end = address + bytes.len() as u64;
    for (at, pages) in overlay {
        for (i, page) in pages.chunks(PAGE_SIZE as usize).enumerate() {
            let page_address = at + i as u64 * PAGE_SIZE;
            if (address..end).contains(&page_address) && page.len() == PAGE_SIZE as usize {
                let offset = (page_address - address) as usize;
                bytes[offset..offset + page.len()].copy_from_slice(page);
                readable[offset / PAGE_SIZE as usize] = true;
            }
        }
    }
}

/// The next chunk from a queue shared by workers (the lock is held only to take it).
fn next(queue: &Mutex<mpsc::Receiver<Arc<Chunk>>>) -> std::result::Result<Arc<Chunk>, mpsc::RecvError> {
    queue.lock().unwrap_or_else(|p| p.into_inner()).recv()
}

/// The parts of `[start, end)` outside the sorted, disjoint `read` runs.
fn unread_runs(start: u64, end: u64, read: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for &(s, e) in read {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// The Merkle leaves of a run of pages starting at `address`.
pub(super) fn page_leaves(address: u64, pages: &[u8], readable: &[bool]) -> Vec<[u8; 32]> {
    pages
        .chunks(PAGE_SIZE as usize)
        .enumerate()
        .map(|(i, page)| {
            let page_address = address + i as u64 * PAGE_SIZE;
            if readable[i] {
                merkle::page_leaf::<Sha2>(page_address, page)
            } else {
                merkle::unreadable_leaf::<Sha2>(page_address)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_pages_replace_what_was_read() {
        let page = PAGE_SIZE as usize;
        let mut bytes = vec![1u8; 4 * page];
        let mut readable = vec![true, false, true, true];
        let overlay = vec![(0x1000 + PAGE_SIZE, vec![7u8; page]), (0x9000, vec![9u8; page])];
        lay_over(0x1000, &mut bytes, &mut readable, &overlay);
        assert!(bytes[page..2 * page].iter().all(|&b| b == 7));
        assert!(bytes[..page].iter().chain(&bytes[2 * page..]).all(|&b| b == 1));
        assert_eq!(readable, [true, true, true, true]);
    }

    /// A process that spins is found busy on the CPU it runs on, one that sleeps is not, and
    /// the capture's threads are left the other CPUs (none are taken away on one CPU).
    #[test]
    fn the_cores_a_running_target_keeps_busy_are_left_to_it() {
        /// A child killed however the test ends.
        struct Child(std::process::Child);
        impl Drop for Child {
            fn drop(&mut self) {
                let _ = (self.0.kill(), self.0.wait());
            }
        }
        let spinner = Child(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        );
        let sleeper = Child(std::process::Command::new("sleep").arg("30").spawn().unwrap());
        let spinning = BusyCores::thawed(spinner.0.id() as i32).unwrap();
        let sleeping = BusyCores::thawed(sleeper.0.id() as i32).unwrap();
        assert_eq!(spinning.before.len(), 1, "one thread, its time read");
        std::thread::sleep(Duration::from_millis(200));
        let busy = spinning.busy_cpus(spinning.thawed.elapsed()).unwrap();
        let quiet = sleeping.busy_cpus(sleeping.thawed.elapsed()).unwrap();
        assert_eq!(busy.len(), 1, "the spinning thread is busy: {busy:?}");
        assert!(quiet.is_empty(), "a sleeping thread is not: {quiet:?}");
        let allowed = allowed_cpus().unwrap();
        // SAFETY: CPU_COUNT and CPU_ISSET read the sets; the CPU is within their size.
        unsafe {
            match cpus_left(&busy) {
                Some(left) => {
                    assert!(!libc::CPU_ISSET(busy[0], &left), "the busy CPU is not left to us");
                    assert_eq!(libc::CPU_COUNT(&left), libc::CPU_COUNT(&allowed) - 1);
                }
                None => assert!(libc::CPU_COUNT(&allowed) == 1 || !libc::CPU_ISSET(busy[0], &allowed)),
            }
        }
    }

    /// The page hashes of an incremental capture, and the kept level from the previous one's
    /// with the fresh runs hashed again, are what hashing every page from scratch gives: when
    /// the previous snapshot's vectors are taken over in place, and when a mapping gone and a
    /// new one before the others move every leaf of one reused range (the total the same, so
    /// the previous kept level is of the right length and only the fresh runs tell).
    #[test]
    fn page_hashes_from_the_previous_snapshot_give_the_kept_level_from_scratch() {
        use super::super::roots::{roots_of, KnownLevel};
        let leaf = |i: usize, tag: u8| {
            let mut l = [tag; 32];
            l[..8].copy_from_slice(&(i as u64).to_le_bytes());
            l
        };
        let page = PAGE_SIZE;
        let range = |start: u64, pages: u64, reuse: Option<(usize, Vec<(u64, u64)>)>| CaptureRange {
            start,
            end: start + pages * page,
            file_offset: 0,
            reuse: reuse.map(|(prev_first, read)| Reuse {
                bytes: Box::new(|_, _| Ok(())),
                prev_first,
                read,
                copy: false,
            }),
            packed: None,
        };
        let done = |leaf_index: usize, leaves: Vec<[u8; 32]>| ChunkDone {
            leaf_index,
            fast_hashes: vec![7; leaves.len()],
            leaves,
        };
        let prev = |n: usize| PageHashes {
            leaves: (0..n).map(|i| leaf(i, 1)).collect(),
            fast_hashes: vec![1; n],
        };
        let check = |leaves: &[[u8; 32]], fresh: &[(usize, usize)], before: &PageHashes| {
            let theirs = roots_of(&[], &[], &before.leaves, None).kept_level;
            let scratch = roots_of(&[], &[], leaves, None);
            let known = KnownLevel {
                kept: &theirs,
                leaf_count: before.leaves.len(),
                fresh,
            };
            let since = roots_of(&[], &[], leaves, Some(known));
            assert_eq!(since.kept_level, scratch.kept_level);
            assert_eq!(since.pages_root, scratch.pages_root);
        };

        // Before: B (16 pages) at leaves 0-15, D (2) at 16-17, C (6) at 18-23. Now: A (2, new)
        // at 0-1, B at 2-17 with its page 5 written, C at 18-23; D is gone.
        let (a, b, c) = (0x10000, 0x100000, 0x200000);
        let ranges = [
            range(a, 2, None),
            range(b, 16, Some((0, vec![(b + 5 * page, b + 6 * page)]))),
            range(c, 6, Some((18, Vec::new()))),
        ];
        let before = prev(24);
        let read = vec![done(0, vec![leaf(0, 9), leaf(1, 9)]), done(7, vec![leaf(5, 9)])];
        let (hashes, fresh) = page_hashes(&ranges, &[0, 2, 18], read, Some(prev(24)));
        let mut expected: Vec<[u8; 32]> = vec![leaf(0, 9), leaf(1, 9)];
        expected.extend((0..16).map(|j| if j == 5 { leaf(5, 9) } else { leaf(j, 1) }));
        expected.extend((18..24).map(|i| leaf(i, 1)));
        assert_eq!(hashes.leaves, expected);
        assert_eq!(hashes.fast_hashes[7], 7);
        assert_eq!(hashes.fast_hashes[18], 1);
        // C keeps its indices: none of its leaves is fresh.
        assert!(fresh.iter().all(|&(_, e)| e <= 18), "{fresh:?}");
        check(&hashes.leaves, &fresh, &before);

        // The same layout: the previous vectors are this capture's.
        let ranges = [
            range(b, 16, Some((0, vec![(b + 5 * page, b + 6 * page)]))),
            range(c, 8, Some((16, Vec::new()))),
        ];
        let before = prev(24);
        let given = prev(24);
        let at = given.leaves.as_ptr();
        let (hashes, fresh) = page_hashes(&ranges, &[0, 16], vec![done(5, vec![leaf(5, 9)])], Some(given));
        assert_eq!(hashes.leaves.as_ptr(), at, "taken over, not copied");
        assert_eq!(fresh, [(5, 6)]);
        assert_eq!(hashes.leaves[5], leaf(5, 9));
        assert_eq!(hashes.leaves[6], leaf(6, 1));
        check(&hashes.leaves, &fresh, &before);
    }

    #[test]
    fn unread_runs_are_the_complement() {
        assert_eq!(unread_runs(0, 100, &[]), [(0, 100)]);
        assert_eq!(
            unread_runs(0, 100, &[(0, 10), (20, 30), (90, 100)]),
            [(10, 20), (30, 90)]
        );
        assert_eq!(unread_runs(0, 100, &[(0, 100)]), []);
    }
}
