//! `memzinc restore`: recreates a checkpointed process from its core file, with the same PID,
//! by syscall injection into a stopped tracee (no helper binary, no code in the target):
//!
//! 1. `clone3` with `set_tid` = the checkpointed PID forks memzinc; the child maps a small
//!    "injection page" (`syscall; int3`) at an address the image does not use, asks to be
//!    traced and stops itself. Every later step is a syscall memzinc makes the child run there.
//! 2. The child drops its rseq registration and unmaps everything memzinc left in it; the
//!    kernel's own vdso/vvar pages are moved (mremap) to the image's addresses, so the image's
//!    code calls the vdso where it expects it (same kernel required; ASLR may stay on).
//! 3. Every mapping of the image is mapped at its address; the child `pread`s captured pages
//!    straight from the core file (one copy). An `--apply` plan's writes are compared and made
//!    here, before the process runs again.
//! 4. Protections, PR_SET_MM_MAP (mm fields, auxv, exe), comm, cwd, fds (regular files reopened
//!    with their flags and offsets; eventfds, timerfds, signalfds, pipes with both ends in the
//!    process and epolls recreated with their counts, timers, masks, bytes and watches; stdio
//!    that was a pipe, socket or tty gone with the original becomes /dev/null), signal mask and
//!    ignored signals, rseq, a new session, POSIX timers with their ids, the signals that were
//!    pending (queued again with their siginfo), resource limits, and last each thread's
//!    credentials and capabilities (everything before needs root).
//! 5. The injection page is unmapped at a syscall-exit stop, where the image's registers (and
//!    FPU/XSAVE state) are set; detaching resumes the process where it was checkpointed.
//!
//! With `--lazy` (`restore_lazy`, see `lazy`), step 3 leaves the captured mappings empty,
//! registered with the process's own userfaultfd and served by a thread of memzinc's from there
//! on; memzinc stays until every page is in ([`LazyRestore::wait`]).
//!
//! A syscall the checkpoint interrupted is restarted as the kernel would have (or returns EINTR
//! where the kernel kept a restart block). memzinc exits after step 5; the process is then
//! reparented like `criu restore -d`. Memzinc dying mid-restore kills the half-built child
//! (PTRACE_O_EXITKILL); a failed step kills it too: nothing half-restored keeps running.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use memzinc_verifier::plan::PatchPlan;
use nix::errno::Errno;
use nix::libc;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

use super::dump::status_mask;
use super::fds::{never_restorable, object_fds, reopenable, restore_fds, InheritFd};
use super::lazy::{self, LazyReport};
use super::sockets;
use crate::base::pb::snapshot as pb;
use crate::base::{Error, Result};
use crate::describe::{SnapRegion, Snapshot, SnapshotMeta};
use crate::introspect::rseq_config;
use crate::introspect::{self, GpRegs, Injector, NT_PRFPREG, NT_X86_XSTATE, PAGE_CODE, PAGE_LEN, PAGE_SIZE};
/// Kernel mappings that move with mremap instead of being recreated.
const SPECIAL: &[&str] = &["[vdso]", "[vvar]", "[vvar_vclock]"];
/// Fixed by the kernel at the same address in every process.
const VSYSCALL: &str = "[vsyscall]";

#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub pid: i32,
    pub regions: usize,
    /// Bytes of memory read back from the core into the process.
    pub bytes: u64,
    pub fds: usize,
    /// Writes of an `--apply` plan made before the process resumed.
    pub writes_applied: usize,
    /// From opening the core to the process running, microseconds.
    pub elapsed_us: u128,
    /// SHA-256 over the `--apply` plan's ranges read back from the process before it resumed,
    /// in plan order (zeroes without a plan); the receipt records it.
    #[serde(serialize_with = "crate::base::hex_hash")]
    pub readback_hash: [u8; 32],
    /// One line per descriptor that is not what it was: a replacement `--inherit-fd` named,
    /// /dev/null for a pipe whose other end was elsewhere, a unix socket connected again.
    pub notices: Vec<String>,
}

/// Restores the process checkpointed in `core` and leaves it running detached. With `plan`,
/// whose snapshot root must be the core's root, the plan's writes are applied to the image
/// first (every old byte must match, else nothing runs). Whether the plan is attested is the
/// caller's check.
/// `inherit` names what stands in at descriptors whose other end was outside the process.
pub fn restore(core: &Path, plan: Option<&PatchPlan>, inherit: &[InheritFd]) -> Result<RestoreReport> {
    let (report, server, child, _) = build(core, plan, inherit, false)?;
    debug_assert!(server.is_none());
    // Detached and running: no longer ours to kill.
    std::mem::forget(child);
    Ok(report)
}

/// A process restored with `--lazy`: running, its pages still arriving (see `lazy`).
pub struct LazyRestore {
    pub report: RestoreReport,
    /// The core's leaves-give-the-root check, running beside the process (see `build`).
    root_check: Option<RootCheckThread>,
    server: lazy::Server,
    child: ChildGuard,
    started: std::time::Instant,
}

impl LazyRestore {
    /// Serves the process's pages until every one is in, then leaves it running detached. On
    /// failure (a page that does not match its leaf, above all) the process is killed.
    pub fn wait(mut self) -> Result<LazyReport> {
        if let Some(check) = self.root_check.take() {
            // On failure `server` stops serving and `child` kills and reaps the process.
            check
                .join()
                .unwrap_or_else(|_| Err(Error::Restore("the root check panicked".into())))?;
        }
        let running_after = std::time::Duration::from_micros(self.report.elapsed_us as u64);
        match self.server.finish(self.started, running_after) {
            Ok(report) => {
                std::mem::forget(self.child);
                Ok(report)
            }
            // `child` kills and reaps it.
            Err(e) => Err(e),
        }
    }
}

/// [`restore`], but the process runs as soon as its registers, map and kernel objects are back;
/// its captured pages arrive on first touch and from a background copy, each checked against
/// its leaf ([`LazyRestore::wait`] until all are in). A plan's writes are what it first sees.
pub fn restore_lazy(core: &Path, plan: Option<&PatchPlan>, inherit: &[InheritFd]) -> Result<LazyRestore> {
    let started = std::time::Instant::now();
    let (report, server, child, root_check) = build(core, plan, inherit, true)?;
    let server = server.ok_or_else(|| Error::Restore("no page server".into()))?;
    Ok(LazyRestore {
        report,
        root_check,
        server,
        child,
        started,
    })
}

fn build(
    core: &Path,
    plan: Option<&PatchPlan>,
    inherit: &[InheritFd],
    lazy: bool,
) -> Result<(RestoreReport, Option<lazy::Server>, ChildGuard, Option<RootCheckThread>)> {
    let started = std::time::Instant::now();
    // A lazy restore without a plan checks the root beside the running process: the seal over
    // the leaves and metadata is checked first and every page is checked against its leaf before
    // the process gets it, so what the process runs on is what the core sealed; a root that
    // the leaves do not give kills it before memzinc reports success, as a page that does not
    // match its leaf does. With a plan, the root is what the attestation names, so it is
    // checked before anything runs.
    let (snap, root) = Snapshot::open_deferring_root(core)?;
    snap.require_full("a restore")?;
    let root_check = if lazy && plan.is_none() {
        Some(std::thread::spawn(move || root.check()))
    } else {
        root.check()?;
        None
    };
    tracing::debug!("restore: core opened and checked in {:?}", started.elapsed());
    let checkpoint = snap.meta.checkpoint.clone().ok_or_else(|| {
        Error::Restore(format!(
            "{} is a snapshot, not a checkpoint (take one with `memzinc checkpoint`)",
            core.display()
        ))
    })?;
    preflight(&snap, &checkpoint, plan, inherit, &[])?;
    let pid = snap.meta.pid;

    let own_maps = introspect::read_maps(std::process::id() as i32)?;
    let mut avoid: Vec<(u64, u64)> = snap.meta.regions.iter().map(|r| (r.map.start, r.map.end)).collect();
    avoid.extend(own_maps.iter().map(|m| (m.start, m.end)));
    let helper = free_range(PAGE_LEN, &avoid)?;

    let shared = SharedMemory::of(&[&snap])?;
    let child = spawn_stopped(pid, helper)?;
    let inject = Injector::in_built(child.0, helper)?;
    let mut server = None;
    let built = rebuild(
        &inject,
        &snap,
        &checkpoint,
        core,
        plan,
        inherit,
        Session::Own,
        &shared,
        lazy.then_some(&mut server),
    )
    .and_then(|(bytes, readback_hash, notices, ready)| {
        ready.run(&inject, helper, &snap.meta)?;
        Ok((bytes, readback_hash, notices))
    });
    let (bytes, readback_hash, mut notices) = match built {
        Ok(built) => built,
        // The page server's refusal (it killed the process) is the cause, not what the
        // injection saw of it.
        Err(e) => return Err(server.and_then(lazy::Server::failure).unwrap_or(e)),
    };
    tracing::debug!("restore: running {:?} after the start", started.elapsed());
    lift_network_lock(&checkpoint, &mut notices);
    let report = RestoreReport {
        pid,
        regions: snap.meta.regions.len(),
        bytes,
        fds: snap.meta.fds.len(),
        writes_applied: plan.map_or(0, |p| p.writes.len()),
        elapsed_us: started.elapsed().as_micros(),
        readback_hash,
        notices,
    };
    Ok((report, server, child, root_check))
}

type RootCheckThread = std::thread::JoinHandle<Result<()>>;

/// The process's connections are back: their peers' packets may come in again. A lock already
/// lifted (the same checkpoint restored before) is no error; one that cannot be lifted is said.
pub(super) fn lift_network_lock(checkpoint: &pb::Checkpoint, notices: &mut Vec<String>) {
    if checkpoint.network_lock.is_empty() {
        return;
    }
    if let Err(e) = sockets::unlock(&checkpoint.network_lock) {
        if e.contains("No such file") {
            tracing::debug!("network lock {}: already lifted", checkpoint.network_lock);
        } else {
            notices.push(format!(
                "the network lock (nftables table inet {}) could not be lifted: {e}; `nft delete table inet {}` lifts it",
                checkpoint.network_lock, checkpoint.network_lock
            ));
        }
    }
}

/// Whether the process being built starts a session of its own (a process restored alone, or
/// a tree's root) or keeps the one it was given when it was made (the rest of a tree).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Session {
    Own,
    Kept,
}

/// Shared anonymous memory of the processes restored together: one memfd per mapped object
/// (device and inode as /proc/PID/maps names them), filled from the first core that captured
/// it — all were frozen at once, so every core holds the same bytes — and mapped MAP_SHARED by
/// each process where it was.
pub(super) struct SharedMemory {
    files: std::collections::BTreeMap<(String, u64), std::os::fd::OwnedFd>,
}

impl SharedMemory {
    pub(super) fn of(snaps: &[&Snapshot]) -> Result<SharedMemory> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::fs::FileExt;
        let mut files = std::collections::BTreeMap::new();
        for snap in snaps {
            for r in snap
                .meta
                .regions
                .iter()
                .filter(|r| r.captured && crate::describe::shared_anonymous(&r.map))
            {
                let key = (r.map.dev.clone(), r.map.inode);
                if !files.contains_key(&key) {
                    let name = c"memzinc-shared";
                    // SAFETY: memfd_create reads the NUL-terminated name and returns a new
                    // descriptor or -1.
                    let fd = Errno::result(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })
                        .map_err(|e| Error::Restore(format!("memfd_create: {e}")))?;
                    // SAFETY: the kernel just gave us this descriptor.
                    files.insert(key.clone(), unsafe { OwnedFd::from_raw_fd(fd) });
                }
                let fd = &files[&key];
                let file = std::fs::File::from(fd.try_clone().map_err(|e| Error::Restore(format!("dup: {e}")))?);
                let len = r.map.end - r.map.start;
                let size = file
                    .metadata()
                    .map_err(|e| Error::Restore(format!("memfd: {e}")))?
                    .len();
                if size < r.map.offset + len {
                    file.set_len(r.map.offset + len)
                        .map_err(|e| Error::Restore(format!("memfd: {e}")))?;
                }
                let bytes = snap.read(r.map.start, len as usize)?;
                file.write_all_at(&bytes, r.map.offset)
                    .map_err(|e| Error::Restore(format!("memfd: {e}")))?;
                tracing::debug!(
                    "shared memory {:?}: {len} bytes at offset {} (fd {})",
                    key,
                    r.map.offset,
                    fd.as_raw_fd()
                );
            }
        }
        Ok(SharedMemory { files })
    }

    fn fd(&self, r: &SnapRegion) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.files.get(&(r.map.dev.clone(), r.map.inode)).map(|f| f.as_raw_fd())
    }
}

/// Everything that can be refused before a process exists.
/// `restored_with`: the TCP connections (local, peer) restored together with this process.
pub(super) fn preflight(
    snap: &Snapshot,
    checkpoint: &pb::Checkpoint,
    plan: Option<&PatchPlan>,
    inherit: &[InheritFd],
    restored_with: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    let meta = &snap.meta;
    let replaceable = replaceable_fds(meta, checkpoint);
    for i in inherit {
        if !replaceable.contains(&i.fd) {
            return Err(Error::Restore(format!(
                "--inherit-fd {}: fd {} is restored from the checkpoint as it was; --inherit-fd replaces descriptors whose other end was outside the process ({})",
                i.fd,
                i.fd,
                if replaceable.is_empty() {
                    "this checkpoint has none".to_string()
                } else {
                    format!("here fd {}", replaceable.iter().map(i32::to_string).collect::<Vec<_>>().join(", "))
                }
            )));
        }
    }
    sockets::preflight(&checkpoint.sockets, restored_with)?;
    if meta.threads.len() != checkpoint.threads.len()
        || meta
            .threads
            .iter()
            .zip(&checkpoint.threads)
            .any(|(a, b)| a.tid != b.tid)
    {
        return Err(Error::Restore(
            "the checkpoint's threads disagree with the register notes".into(),
        ));
    }
    for t in &meta.threads[1..] {
        if Path::new(&format!("/proc/{}", t.tid)).exists() {
            return Err(Error::Restore(format!("tid {} is in use", t.tid)));
        }
    }
    if Path::new(&format!("/proc/{}", meta.pid)).exists() {
        return Err(Error::Restore(format!(
            "pid {} is in use (a running process or a zombie its parent has not reaped)",
            meta.pid
        )));
    }
    if checkpoint.mm.is_none() {
        return Err(Error::Restore("the checkpoint has no mm fields".into()));
    }
    let objects: Vec<i32> = object_fds(checkpoint).collect();
    for f in &meta.fds {
        if !reopenable(&f.path) && f.fd > 2 && !objects.contains(&f.fd) {
            return Err(Error::Restore(format!(
                "fd {} is {}: memzinc restores regular files, stdio, eventfds, timerfds, signalfds, epolls and pipes with both ends in the process",
                f.fd, f.path
            )));
        }
    }
    for e in &checkpoint.epolls {
        if let Some(w) = e.watches.iter().find(|w| !meta.fds.iter().any(|f| f.fd == w.fd)) {
            return Err(Error::Restore(format!(
                "the epoll at fd {} watches fd {}, which is not open in the checkpoint",
                e.fd, w.fd
            )));
        }
    }
    for r in &meta.regions {
        let special = SPECIAL.contains(&r.map.path.as_str()) || r.map.path == VSYSCALL;
        if r.map.private() || special {
            continue;
        }
        // Shared anonymous memory comes back from the captured pages (`SharedMemory`).
        if crate::describe::shared_anonymous(&r.map) && !r.captured {
            return Err(Error::Restore(format!(
                "shared anonymous memory at {:#x} ({}) was not captured (unreadable): it cannot be restored",
                r.map.start, r.map.path
            )));
        }
        if !crate::describe::shared_anonymous(&r.map) && !r.map.path.starts_with('/') {
            return Err(Error::Restore(format!(
                "shared memory at {:#x} ({}) is not restored by memzinc",
                r.map.start, r.map.path
            )));
        }
    }
    // The vdso must be this kernel's: same special mappings, same sizes.
    let own = introspect::read_maps(std::process::id() as i32)?;
    for name in SPECIAL {
        let theirs = meta
            .regions
            .iter()
            .find(|r| r.map.path == *name)
            .map(|r| r.map.end - r.map.start);
        let ours = own.iter().find(|m| m.path == *name).map(|m| m.end - m.start);
        if theirs.is_some() && theirs != ours {
            return Err(Error::Restore(format!(
                "the image's {name} ({theirs:?} bytes) is not this kernel's ({ours:?}): restore on the kernel that checkpointed"
            )));
        }
    }
    if let Some(plan) = plan {
        if plan.snapshot_root != snap.root() {
            return Err(Error::Restore(format!(
                "the plan is for snapshot root {}, the core's root is {}",
                hex::encode(plan.snapshot_root),
                hex::encode(snap.root())
            )));
        }
        for w in &plan.writes {
            let inside = snap
                .region_of(w.address, w.old.len() as u64)
                .is_some_and(|r| r.captured);
            if !inside || w.old.len() != w.new.len() {
                return Err(Error::Restore(format!(
                    "plan write at {:#x} is not inside a captured region of the core",
                    w.address
                )));
            }
        }
    }
    Ok(())
}

/// The descriptors `--inherit-fd` may replace: pipes with an end elsewhere, unix sockets whose
/// peer is outside the process, and descriptors that cannot be reopened.
pub(super) fn replaceable_fds(meta: &SnapshotMeta, checkpoint: &pb::Checkpoint) -> Vec<i32> {
    let objects: Vec<i32> = object_fds(checkpoint).collect();
    let mut fds: Vec<i32> = checkpoint
        .external_pipes
        .iter()
        .flat_map(|p| p.fds.iter().copied())
        .chain(
            checkpoint
                .sockets
                .iter()
                .filter(|s| s.unix_peer == pb::UnixPeer::Outside as i32)
                .flat_map(|s| s.fds.iter().copied()),
        )
        .chain(
            meta.fds
                .iter()
                .filter(|f| !objects.contains(&f.fd) && !reopenable(&f.path))
                .map(|f| f.fd),
        )
        .collect();
    fds.sort_unstable();
    fds
}

/// What `inspect` says about restoring this core, one line each: for a checkpoint, every
/// descriptor a restore will not give back as it was (and what it will do instead); for a
/// plain snapshot, what a checkpoint of that process would have refused.
pub fn restore_notes(meta: &SnapshotMeta) -> Vec<String> {
    let Some(checkpoint) = &meta.checkpoint else {
        let mut notes: Vec<String> = meta
            .fds
            .iter()
            .filter_map(|f| never_restorable(f).map(|why| format!("a checkpoint would refuse it: {why}")))
            .collect();
        notes.extend(
            meta.regions
                .iter()
                .filter(|r| !r.map.private() && !r.map.path.starts_with('/') && !r.map.path.starts_with('['))
                .map(|r| {
                    format!(
                        "a checkpoint would refuse it: shared anonymous memory at {:#x}-{:#x}",
                        r.map.start, r.map.end
                    )
                }),
        );
        return notes;
    };
    let mut notes = Vec::new();
    for p in &checkpoint.external_pipes {
        notes.push(format!(
            "fd {}: the {} end of pipe:[{}], whose other end was outside the process: /dev/null at restore unless --inherit-fd names a replacement",
            p.fds.iter().map(i32::to_string).collect::<Vec<_>>().join(","),
            if p.write_end { "write" } else { "read" },
            p.inode
        ));
    }
    for s in &checkpoint.sockets {
        let fds = s.fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let what = sockets::describe(s);
        let how = if s.tcp.is_some() {
            "established: restored in TCP repair mode (same connection), if its peer is still there".to_string()
        } else if s.unix_peer == pb::UnixPeer::Outside as i32 {
            if s.peer.len() > 2 {
                format!(
                    "peer outside the process: connected again to {} unless --inherit-fd names a replacement",
                    sockets::address(&s.peer)
                )
            } else {
                "peer outside the process, without an address: restore needs --inherit-fd".to_string()
            }
        } else if s.unix_peer == pb::UnixPeer::Inside as i32 {
            "peer inside the process: made again as a pair".to_string()
        } else if s.state == pb::SocketState::SocketListen as i32 {
            format!("listening (backlog {}): bound and listening again", s.backlog)
        } else {
            "bound again".to_string()
        };
        notes.push(format!("fd {fds}: {what}: {how}"));
    }
    if !checkpoint.network_lock.is_empty() {
        notes.push(format!(
            "network lock: the peers' packets to its connections are dropped (nftables table inet {}) until the restore lifts it",
            checkpoint.network_lock
        ));
    }
    let objects: Vec<i32> = object_fds(checkpoint).collect();
    for f in meta
        .fds
        .iter()
        .filter(|f| !objects.contains(&f.fd) && !reopenable(&f.path))
    {
        notes.push(format!(
            "fd {}: {} cannot be reopened: /dev/null at restore unless --inherit-fd names a replacement",
            f.fd, f.path
        ));
    }
    notes
}

/// The lowest page-aligned address from 256 MiB up where `len` bytes overlap none of `avoid`.
pub(super) fn free_range(len: u64, avoid: &[(u64, u64)]) -> Result<u64> {
    let mut sorted = avoid.to_vec();
    sorted.sort_unstable();
    let mut candidate: u64 = 0x1000_0000;
    for &(start, end) in &sorted {
        if end <= candidate {
            continue;
        }
        if candidate + len <= start {
            break;
        }
        candidate = end.next_multiple_of(PAGE_SIZE);
    }
    if candidate + len > 0x7fff_0000_0000 {
        return Err(Error::Restore("no free address range for the injection page".into()));
    }
    Ok(candidate)
}

/// `struct clone_args` of clone3(2), up to `set_tid_size`/`cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The child being built: killed and reaped if the restore fails.
pub(super) struct ChildGuard(pub i32);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.0), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.0), Some(WaitPidFlag::__WALL));
    }
}

/// Forks memzinc into `pid` with the injection page at `helper`, traced by this thread and
/// stopped. The child runs only async-signal-safe calls before it stops.
pub(super) fn spawn_stopped(pid: i32, helper: u64) -> Result<ChildGuard> {
    let set_tid = [pid as libc::pid_t];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (and `set_tid` through it), both alive across the call.
    // Without CLONE_VM the child gets a copy of this address space; it calls only raw,
    // async-signal-safe functions (`child_stop`) and never returns into Rust code.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc == 0 {
        // SAFETY: we are the freshly cloned child; see `child_stop`.
        unsafe { child_stop(helper) }
    }
    if rc < 0 {
        let e = Errno::last();
        return Err(Error::Restore(match e {
            Errno::EEXIST => format!("pid {pid} is in use"),
            Errno::EPERM => format!("clone3 with set_tid {pid} not permitted (needs CAP_SYS_ADMIN / root)"),
            e => format!("clone3 with set_tid {pid}: {e}"),
        }));
    }
    let guard = ChildGuard(pid);
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {}
        other => {
            return Err(Error::Restore(format!(
                "the new process did not stop as expected: {other:?}"
            )));
        }
    }
    ptrace::setoptions(
        Pid::from_raw(pid),
        ptrace::Options::PTRACE_O_EXITKILL
            | ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_TRACECLONE
            | ptrace::Options::PTRACE_O_TRACEFORK,
    )
    .map_err(|e| Error::Restore(format!("PTRACE_SETOPTIONS: {e}")))?;
    Ok(guard)
}

/// The child's side of `spawn_stopped`.
///
/// # Safety
/// Only in the child of clone3 (a copy of a possibly multi-threaded process): uses raw
/// syscalls only and exits without running destructors.
unsafe fn child_stop(helper: u64) -> ! {
    // SAFETY: plain syscalls on this process's own state; `p` is a fresh private mapping of
    // PAGE_LEN bytes we own.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            libc::_exit(120);
        }
        let p = libc::mmap(
            helper as *mut libc::c_void,
            PAGE_LEN as usize,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if p as u64 != helper {
            libc::_exit(121);
        }
        std::ptr::copy_nonoverlapping(PAGE_CODE.as_ptr(), p.cast::<u8>(), PAGE_CODE.len());
        libc::kill(libc::getpid(), libc::SIGSTOP);
        libc::_exit(122)
    }
}

fn prot_of(perms: &str) -> u64 {
    let b = perms.as_bytes();
    let mut prot = 0;
    if b.first() == Some(&b'r') {
        prot |= libc::PROT_READ;
    }
    if b.get(1) == Some(&b'w') {
        prot |= libc::PROT_WRITE;
    }
    if b.get(2) == Some(&b'x') {
        prot |= libc::PROT_EXEC;
    }
    prot as u64
}

/// Steps 2 to 5 of the module comment. Returns the bytes read into memory and the read-back
/// hash of the plan's writes.
#[allow(clippy::too_many_arguments)]
pub(super) fn rebuild(
    inject: &Injector,
    snap: &Snapshot,
    checkpoint: &pb::Checkpoint,
    core: &Path,
    plan: Option<&PatchPlan>,
    inherit: &[InheritFd],
    session: Session,
    shared: &SharedMemory,
    mut lazy: Option<&mut Option<lazy::Server>>,
) -> Result<(u64, [u8; 32], Vec<String>, Ready)> {
    let pid = inject.pid();
    let helper = inject
        .page()
        .ok_or_else(|| Error::Restore("no injection page".into()))?;
    let meta = &snap.meta;

    // Leave rseq first: the kernel writes to the registered area, which is about to go.
    let rseq = rseq_config(pid).map_err(|e| Error::Restore(format!("PTRACE_GET_RSEQ_CONFIGURATION: {e}")))?;
    if let Some(rseq) = rseq {
        inject.call(
            "rseq unregister",
            libc::SYS_rseq,
            &[rseq.address, rseq.size as u64, 1, rseq.signature as u64],
        )?;
    }

    // Empty the child: everything but the injection page and the kernel's special mappings.
    let mut specials = Vec::new();
    for m in introspect::read_maps(pid)? {
        if m.start == helper || m.path == VSYSCALL {
            continue;
        }
        if SPECIAL.contains(&m.path.as_str()) {
            specials.push(m);
            continue;
        }
        inject.call("munmap", libc::SYS_munmap, &[m.start, m.end - m.start])?;
    }

    // Move the kernel's vdso/vvar to the image's addresses, through free addresses first so
    // no move lands on a mapping that has yet to move.
    let mut avoid: Vec<(u64, u64)> = meta.regions.iter().map(|r| (r.map.start, r.map.end)).collect();
    avoid.push((helper, helper + PAGE_LEN));
    avoid.extend(specials.iter().map(|m| (m.start, m.end)));
    let mut parked = Vec::new();
    for m in &specials {
        let len = m.end - m.start;
        let Some(target) = meta.regions.iter().find(|r| r.map.path == m.path) else {
            inject.call("munmap", libc::SYS_munmap, &[m.start, len])?;
            continue;
        };
        let temp = free_range(len, &avoid)?;
        avoid.push((temp, temp + len));
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        inject.call(
            &format!("mremap {}", m.path),
            libc::SYS_mremap,
            &[m.start, len, len, flags, temp],
        )?;
        parked.push((temp, len, target.map.start, m.path.clone()));
    }
    for (temp, len, to, name) in parked {
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        inject.call(
            &format!("mremap {name}"),
            libc::SYS_mremap,
            &[temp, len, len, flags, to],
        )?;
    }

    let (mut bytes, reading) = (0, std::time::Instant::now());
    let mut core_fd = None;
    if let Some(server) = lazy.as_deref_mut() {
        // Empty mappings, registered with the process's own userfaultfd and served from here
        // on, before anything (a plan's compare-and-swap, the kernel's rseq writes) touches them.
        for r in meta.regions.iter().filter(|r| !is_special(r)) {
            bytes += map_region(inject, r, None, shared)?;
        }
        // Shared anonymous memory is in its memfd already, not served.
        let served: Vec<(u64, u64)> = meta
            .regions
            .iter()
            .filter(|r| !is_special(r) && r.captured && shared.fd(r).is_none())
            .map(|r| (r.map.start, r.map.end))
            .collect();
        *server = Some(lazy::start(inject, snap, core, &served)?);
    } else {
        // The image's mappings; captured pages come straight from the core file.
        let core_path = std::fs::canonicalize(core).map_err(|e| Error::io(core, e))?;
        let plain = inject.call(
            "open the core",
            libc::SYS_openat,
            &[
                libc::AT_FDCWD as u64,
                inject.put_path(core_path.as_os_str().as_bytes())?,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                0,
            ],
        )?;
        // A second descriptor with O_DIRECT: the pages go from the disk straight into the
        // process's memory, not through the page cache (a checkpoint's core is written with
        // O_DIRECT, so it is not cached). Where the file system refuses it, the plain one serves.
        let direct_fd = inject
            .call(
                "open the core (O_DIRECT)",
                libc::SYS_openat,
                &[
                    libc::AT_FDCWD as u64,
                    inject.put_path(core_path.as_os_str().as_bytes())?,
                    (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECT) as u64,
                    0,
                ],
            )
            .ok();
        for r in meta.regions.iter().filter(|r| !is_special(r)) {
            bytes += map_region(inject, r, Some((plain, direct_fd)), shared)?;
        }
        tracing::debug!("restore: {bytes} bytes mapped and read in {:?}", reading.elapsed());
        if let Some(fd) = direct_fd {
            inject.call("close the core (O_DIRECT)", libc::SYS_close, &[fd])?;
        }
        core_fd = Some(plain);
    }
    let readback_hash = match plan {
        Some(plan) => apply_to_image(pid, plan)?,
        None => [0; 32],
    };
    for r in meta.regions.iter().filter(|r| !is_special(r) && r.captured) {
        let prot = prot_of(&r.map.perms);
        if prot != (libc::PROT_READ | libc::PROT_WRITE) as u64 {
            inject.call(
                "mprotect",
                libc::SYS_mprotect,
                &[r.map.start, r.map.end - r.map.start, prot],
            )?;
        }
    }
    if let Some(fd) = core_fd {
        inject.call("close the core", libc::SYS_close, &[fd])?;
    }
    let keep = lazy.as_deref().and_then(|s| s.as_ref()).map(|s| s.target_fd);

    set_mm(inject, snap, checkpoint)?;
    let mut comm = meta.comm.as_bytes()[..meta.comm.len().min(15)].to_vec();
    comm.push(0);
    let at = inject.put(0, &comm)?;
    inject.call("PR_SET_NAME", libc::SYS_prctl, &[libc::PR_SET_NAME as u64, at])?;
    if !checkpoint.cwd.is_empty() {
        let at = inject.put_path(checkpoint.cwd.as_bytes())?;
        inject.call(&format!("chdir {}", checkpoint.cwd), libc::SYS_chdir, &[at])?;
    }
    let restored = restore_fds(inject, snap, checkpoint, inherit, keep)?;
    restore_signals(inject, checkpoint)?;
    // Its own session, as after `setsid`: nothing of memzinc's terminal job reaches it.
    if session == Session::Own {
        inject.call("setsid", libc::SYS_setsid, &[])?;
    }
    // The other threads first, each stopped at its own injection until all exist.
    let mut threads = vec![inject.pid()];
    for t in &checkpoint.threads[1..] {
        threads.push(clone_thread(inject, t)?);
    }
    for (&tid, t) in threads.iter().zip(&checkpoint.threads) {
        thread_state(inject, tid, t)?;
    }
    restore_posix_timers(inject, checkpoint)?;
    queue_pending_signals(inject, &threads, checkpoint)?;
    for l in &checkpoint.rlimits {
        introspect::prlimit(pid, l.resource, Some((l.soft, l.hard)))?;
    }
    // Last, as everything before needed root: the process's own credentials, per thread (the
    // raw syscalls change only the calling thread), then dumpable as it was (a uid change
    // clears it).
    for (&tid, t) in threads.iter().zip(&checkpoint.threads) {
        set_credentials(inject, tid, t)?;
    }
    if checkpoint.threads.first().is_some_and(|t| t.uids.len() == 4) {
        let dumpable = u64::from(checkpoint.dumpable);
        inject.call(
            "PR_SET_DUMPABLE",
            libc::SYS_prctl,
            &[libc::PR_SET_DUMPABLE as u64, dumpable],
        )?;
    }
    if keep.is_some() {
        // Until every page is in, the process dies with memzinc (see `lazy`); after the
        // credentials, whose change would clear it.
        inject.call(
            "PR_SET_PDEATHSIG",
            libc::SYS_prctl,
            &[libc::PR_SET_PDEATHSIG as u64, libc::SIGKILL as u64],
        )?;
    }
    for (&tid, t) in threads.iter().zip(&meta.threads).skip(1) {
        let fail = |what: &str, e: Errno| Error::Restore(format!("thread {tid}: {what}: {e}"));
        let pid = Pid::from_raw(tid);
        ptrace::setregs(pid, resumable(&t.regs).to_user()).map_err(|e| fail("PTRACE_SETREGS", e))?;
        set_fpu(tid, &t.fpregs, &t.xstate).map_err(|e| fail("PTRACE_SETREGSET", e))?;
    }
    let ready = Ready {
        threads,
        repairing: restored.repairing,
    };
    Ok((bytes, readback_hash, restored.notices, ready))
}

/// A process rebuilt and still stopped, every thread in place: [`Ready::run`] lets it go.
pub(super) struct Ready {
    threads: Vec<i32>,
    repairing: Vec<sockets::Repairing>,
}

impl Ready {
    /// Step 5: the other threads run, connections leave repair mode, the injection page goes
    /// and the main thread resumes where it was checkpointed; signals held back while it was
    /// built are sent again.
    pub(super) fn run(self, inject: &Injector, helper: u64, meta: &SnapshotMeta) -> Result<()> {
        for &tid in &self.threads[1..] {
            ptrace::detach(Pid::from_raw(tid), None)
                .map_err(|e| Error::Restore(format!("thread {tid}: PTRACE_DETACH: {e}")))?;
        }
        // Connections leave repair mode last, just before the process runs: a restore that
        // failed before closes them in repair mode, silently, and can be tried again.
        for r in self.repairing {
            r.finish()?;
        }
        resume(
            inject,
            helper,
            &meta.threads[0].regs,
            &meta.threads[0].fpregs,
            &meta.threads[0].xstate,
        )?;
        for sig in inject.take_deferred() {
            let _ = nix::sys::signal::kill(Pid::from_raw(inject.pid()), sig);
        }
        Ok(())
    }
}

/// Creates one more thread of the image with its tid (clone3 with set_tid, in the main
/// thread), its clear_child_tid set; returns once the new thread is in its first stop.
fn clone_thread(inject: &Injector, t: &pb::ThreadCheckpoint) -> Result<i32> {
    let set_tid_at = inject.put(512, &(t.tid as u64).to_le_bytes()[..4])?;
    let mut flags = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM;
    if t.tid_address != 0 {
        flags |= libc::CLONE_CHILD_CLEARTID;
    }
    let args = CloneArgs {
        flags: flags as u64,
        child_tid: t.tid_address,
        set_tid: set_tid_at,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let what = format!("creating thread {}", t.tid);
    inject_clone3(inject, &args, libc::PTRACE_EVENT_CLONE, t.tid, &what)?;
    first_stop(t.tid, &what)?;
    Ok(t.tid)
}

/// Makes the process `pid` (clone3 with set_tid, exit signal SIGCHLD) as a child of the process
/// being built behind `parent`: a copy of it, stopped in its first ptrace stop (traced by
/// memzinc, as forks of a tracee with PTRACE_O_TRACEFORK are), the injection page in place.
pub(super) fn fork_stub(parent: &Injector, pid: i32) -> Result<ChildGuard> {
    let set_tid_at = parent.put(512, &(pid as u64).to_le_bytes()[..4])?;
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid_at,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let what = format!("making process {pid} in process {}", parent.pid());
    inject_clone3(parent, &args, libc::PTRACE_EVENT_FORK, pid, &what)?;
    let guard = ChildGuard(pid);
    first_stop(pid, &what)?;
    Ok(guard)
}

/// Runs clone3(`args`) in the main thread behind `inject` and waits out the ptrace `event` and
/// the trap after the syscall; the new thread or process must have the id `expected`.
fn inject_clone3(inject: &Injector, args: &CloneArgs, event: i32, expected: i32, what: &str) -> Result<()> {
    let bytes: Vec<u8> = [
        args.flags,
        args.pidfd,
        args.child_tid,
        args.parent_tid,
        args.exit_signal,
        args.stack,
        args.stack_size,
        args.tls,
        args.set_tid,
        args.set_tid_size,
        args.cgroup,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect();
    let args_at = inject.put(0, &bytes)?;
    let main = Pid::from_raw(inject.pid());
    let fail = |step: &str, e: String| Error::Restore(format!("{what}: {step}: {e}"));
    ptrace::setregs(main, inject.regs_for(libc::SYS_clone3, &[args_at, bytes.len() as u64])?)
        .map_err(|e| fail("PTRACE_SETREGS", e.to_string()))?;
    ptrace::cont(main, None).map_err(|e| fail("PTRACE_CONT", e.to_string()))?;
    // The clone or fork event, then the trap after the syscall.
    let mut stops = 0;
    while stops < 2 {
        match waitpid(main, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(_, _, e)) if e == event => {
                stops += 1;
                ptrace::cont(main, None).map_err(|e| fail("PTRACE_CONT", e.to_string()))?;
            }
            Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => stops = 2,
            Err(Errno::EINTR) => {}
            // A signal for the process (a zombie of the tree just ended): held back.
            Ok(WaitStatus::Stopped(_, sig)) if sig != Signal::SIGSTOP => {
                inject.defer(sig);
                ptrace::cont(main, None).map_err(|e| fail("PTRACE_CONT", e.to_string()))?;
            }
            other => return Err(fail("clone3", format!("{other:?}"))),
        }
    }
    let rc = ptrace::getregs(main)
        .map_err(|e| fail("PTRACE_GETREGS", e.to_string()))?
        .rax as i64;
    if rc != expected as i64 {
        let why = match rc {
            rc if rc == -(libc::EEXIST as i64) => format!("id {expected} is in use"),
            rc if rc < 0 => Errno::from_raw(-rc as i32).to_string(),
            rc => format!("got id {rc}"),
        };
        return Err(fail("clone3", why));
    }
    Ok(())
}

/// Waits for the new thread or process `tid` to reach its first stop.
fn first_stop(tid: i32, what: &str) -> Result<()> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(..)) | Ok(WaitStatus::PtraceEvent(..)) => return Ok(()),
            Err(Errno::EINTR) => {}
            other => return Err(Error::Restore(format!("{what}: first stop: {other:?}"))),
        }
    }
}

/// Per-thread state, run in the thread itself: clear_child_tid, alternate signal stack,
/// blocked signals, rseq.
fn thread_state(inject: &Injector, tid: i32, t: &pb::ThreadCheckpoint) -> Result<()> {
    inject.call_in(tid, "set_tid_address", libc::SYS_set_tid_address, &[t.tid_address])?;
    let mut stack = [0u8; 24];
    let flags = if t.altstack_sp == 0 && t.altstack_size == 0 {
        libc::SS_DISABLE
    } else {
        // SS_ONSTACK is a report, not a setting; SS_AUTODISARM is kept.
        t.altstack_flags & !libc::SS_ONSTACK
    };
    stack[..8].copy_from_slice(&t.altstack_sp.to_le_bytes());
    stack[8..12].copy_from_slice(&flags.to_le_bytes());
    stack[16..].copy_from_slice(&t.altstack_size.to_le_bytes());
    let at = inject.put(0, &stack)?;
    inject.call_in(tid, "sigaltstack", libc::SYS_sigaltstack, &[at, 0])?;
    let at = inject.put(0, &t.sig_blocked.to_le_bytes())?;
    inject.call_in(
        tid,
        "rt_sigprocmask",
        libc::SYS_rt_sigprocmask,
        &[libc::SIG_SETMASK as u64, at, 0, 8],
    )?;
    if let Some(rseq) = &t.rseq {
        inject.call_in(
            tid,
            "rseq register",
            libc::SYS_rseq,
            &[rseq.address, rseq.size as u64, 0, rseq.signature as u64],
        )?;
    }
    Ok(())
}

/// The process's POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS: timer_create takes
/// the id asked for), events, intervals and the time they had left. After the threads exist:
/// a timer may signal one of them.
fn restore_posix_timers(inject: &Injector, checkpoint: &pb::Checkpoint) -> Result<()> {
    const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
    if checkpoint.posix_timers.is_empty() {
        return Ok(());
    }
    inject.call(
        "PR_TIMER_CREATE_RESTORE_IDS on",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 1],
    )?;
    for t in &checkpoint.posix_timers {
        // struct sigevent: sigev_value, sigev_signo, sigev_notify, then the thread id.
        let mut event = [0u8; 64];
        event[..8].copy_from_slice(&t.sigval.to_le_bytes());
        event[8..12].copy_from_slice(&t.signo.to_le_bytes());
        event[12..16].copy_from_slice(&t.notify.to_le_bytes());
        event[16..20].copy_from_slice(&t.notify_tid.to_le_bytes());
        let at_event = inject.put(0, &event)?;
        let at_id = inject.put(64, &t.id.to_le_bytes())?;
        inject.call(
            &format!("timer_create (id {})", t.id),
            libc::SYS_timer_create,
            &[t.clockid as u64, at_event, at_id],
        )?;
        if (t.value_sec, t.value_nsec) != (0, 0) {
            let spec: Vec<u8> = [t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let at = inject.put(0, &spec)?;
            inject.call("timer_settime", libc::SYS_timer_settime, &[t.id as u64, 0, at, 0])?;
        }
    }
    inject.call(
        "PR_TIMER_CREATE_RESTORE_IDS off",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 0],
    )?;
    Ok(())
}

/// Queues again the signals that were pending at the checkpoint, with their siginfo, once every
/// thread has its signal mask: the process-wide ones from the main thread, each thread's own
/// from that thread (the kernel takes a siginfo it did not make only from the receiver itself).
fn queue_pending_signals(inject: &Injector, threads: &[i32], checkpoint: &pb::Checkpoint) -> Result<()> {
    let signo = |info: &[u8]| {
        info.get(..4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or_default())) as u64
    };
    for info in &checkpoint.shared_pending {
        let at = inject.put(0, info)?;
        inject.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            &[inject.pid() as u64, signo(info), at],
        )?;
    }
    for (&tid, t) in threads.iter().zip(&checkpoint.threads) {
        for info in &t.pending {
            let at = inject.put(0, info)?;
            inject.call_in(
                tid,
                "rt_tgsigqueueinfo",
                libc::SYS_rt_tgsigqueueinfo,
                &[inject.pid() as u64, tid as u64, signo(info), at],
            )?;
        }
    }
    Ok(())
}

/// Thread `tid`'s groups, gids and uids (real, effective, saved, filesystem) as checkpointed;
/// nothing for a checkpoint from before memzinc kept them. Gids before uids: once the uid is
/// not root's, the gids cannot change.
fn set_credentials(inject: &Injector, tid: i32, t: &pb::ThreadCheckpoint) -> Result<()> {
    let (Ok([ruid, euid, suid, fsuid]), Ok([rgid, egid, sgid, fsgid])) = (
        <[u32; 4]>::try_from(t.uids.as_slice()),
        <[u32; 4]>::try_from(t.gids.as_slice()),
    ) else {
        return Ok(());
    };
    let prctl = |what: &str, args: [u64; 3]| inject.call_in(tid, what, libc::SYS_prctl, &args);
    let caps = t.capabilities.as_ref();
    // The bounding set only shrinks, and only while the thread still has CAP_SETPCAP: drop what
    // it has now (memzinc's, inherited) and did not have then.
    if let Some(c) = caps {
        let status = introspect::read_proc(inject.pid(), &format!("task/{tid}/status"))?;
        let extra = status_mask(&status, "CapBnd:") & !c.bounding;
        for cap in (0..64u64).filter(|cap| extra & (1 << cap) != 0) {
            prctl("PR_CAPBSET_DROP", [libc::PR_CAPBSET_DROP as u64, cap, 0])?;
        }
    }
    let groups: Vec<u8> = t.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let at = inject.put(0, &groups)?;
    inject.call_in(tid, "setgroups", libc::SYS_setgroups, &[t.groups.len() as u64, at])?;
    let ids = |a: u32, b: u32, c: u32| [a as u64, b as u64, c as u64];
    inject.call_in(tid, "setresgid", libc::SYS_setresgid, &ids(rgid, egid, sgid))?;
    inject.call_in(tid, "setfsgid", libc::SYS_setfsgid, &[fsgid as u64])?;
    // Leaving uid 0 clears the permitted set, unless asked to keep it for the capset below.
    let keep = caps.is_some_and(|c| c.permitted != 0);
    if keep {
        prctl("PR_SET_KEEPCAPS", [libc::PR_SET_KEEPCAPS as u64, 1, 0])?;
    }
    inject.call_in(tid, "setresuid", libc::SYS_setresuid, &ids(ruid, euid, suid))?;
    inject.call_in(tid, "setfsuid", libc::SYS_setfsuid, &[fsuid as u64])?;
    if keep {
        prctl("PR_SET_KEEPCAPS", [libc::PR_SET_KEEPCAPS as u64, 0, 0])?;
    }
    if let Some(c) = caps {
        // capset, _LINUX_CAPABILITY_VERSION_3: a header (version, pid 0 = this thread), then
        // two {effective, permitted, inheritable} u32 triples, low bits first.
        let mut block = Vec::with_capacity(32);
        block.extend_from_slice(&0x2008_0522u32.to_le_bytes());
        block.extend_from_slice(&0u32.to_le_bytes());
        for half in [0, 32] {
            for set in [c.effective, c.permitted, c.inheritable] {
                block.extend_from_slice(&((set >> half) as u32).to_le_bytes());
            }
        }
        let at = inject.put(0, &block)?;
        inject.call_in(tid, "capset", libc::SYS_capset, &[at, at + 8])?;
        for cap in (0..64u64).filter(|cap| c.ambient & (1 << cap) != 0) {
            inject.call_in(
                tid,
                "PR_CAP_AMBIENT_RAISE",
                libc::SYS_prctl,
                &[libc::PR_CAP_AMBIENT as u64, libc::PR_CAP_AMBIENT_RAISE as u64, cap],
            )?;
        }
    }
    Ok(())
}

fn is_special(r: &SnapRegion) -> bool {
    SPECIAL.contains(&r.map.path.as_str()) || r.map.path == VSYSCALL
}

/// Maps one region of the image (read-write while it is filled); returns bytes read. Pages are
/// read through `direct_fd` when there is one and it takes the read (regions, their file
/// offsets and lengths are page-aligned, as O_DIRECT needs), else through `core_fd`; with no
/// core (a lazy restore) captured regions are left empty. Shared anonymous memory is `shared`'s
/// memfd, mapped shared, either way.
fn map_region(
    inject: &Injector,
    r: &SnapRegion,
    core: Option<(u64, Option<u64>)>,
    shared: &SharedMemory,
) -> Result<u64> {
    let m = &r.map;
    let len = m.end - m.start;
    let fixed = libc::MAP_FIXED as u64;
    if let Some(ours) = shared.fd(r).filter(|_| r.captured) {
        // Shared anonymous memory: the memfd memzinc filled, reopened by the process through
        // /proc and mapped where it was (the same object for every process restored with it).
        let fd = inject.open(
            &format!("/proc/{}/fd/{ours}", std::process::id()),
            (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        )?;
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        inject.call(
            "mmap shared memory",
            libc::SYS_mmap,
            &[m.start, len, rw, libc::MAP_SHARED as u64 | fixed, fd, m.offset],
        )?;
        inject.call("close", libc::SYS_close, &[fd])?;
        return Ok(len);
    }
    if r.captured {
        let mut flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64 | fixed;
        if m.path == "[stack]" {
            flags |= libc::MAP_GROWSDOWN as u64;
        }
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        inject.call("mmap", libc::SYS_mmap, &[m.start, len, rw, flags, u64::MAX, 0])?;
        let Some((core_fd, direct_fd)) = core else {
            return Ok(0);
        };
        let mut done = 0;
        let mut fd = direct_fd.unwrap_or(core_fd);
        while done < len {
            let args = |fd| [fd, m.start + done, (len - done).min(1 << 30), r.data_offset + done];
            let n = match inject.call("read pages from the core", libc::SYS_pread64, &args(fd)) {
                Err(_) if fd != core_fd => {
                    fd = core_fd;
                    continue;
                }
                n => n?,
            };
            if n == 0 {
                return Err(Error::Restore(format!("the core ends inside region {:#x}", m.start)));
            }
            done += n;
        }
        return Ok(len);
    }
    let prot = prot_of(&m.perms);
    if !m.private() {
        // A shared file mapping: the file holds the contents.
        let mode = if prot & libc::PROT_WRITE as u64 != 0 {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let fd = inject.open(&m.path, (mode | libc::O_CLOEXEC) as u32)?;
        inject.call(
            &format!("mmap {}", m.path),
            libc::SYS_mmap,
            &[m.start, len, prot, libc::MAP_SHARED as u64 | fixed, fd, m.offset],
        )?;
        inject.call("close", libc::SYS_close, &[fd])?;
        return Ok(0);
    }
    // Private and unreadable (guard pages, gaps between a library's segments).
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64 | fixed;
    inject.call("mmap", libc::SYS_mmap, &[m.start, len, prot, flags, u64::MAX, 0])?;
    Ok(0)
}

/// The plan's compare-and-swap on the stopped image: every old byte must match before any
/// write; the new bytes are read back, and their hash returned.
fn apply_to_image(pid: i32, plan: &PatchPlan) -> Result<[u8; 32]> {
    let ranges = crate::apply::expect_old_bytes(pid, plan)?;
    let new: Vec<(u64, &[u8])> = plan.writes.iter().map(|w| (w.address, w.new.as_slice())).collect();
    introspect::write_many(pid, &new)?;
    let back = introspect::read_many(pid, &ranges)?;
    if let Some((index, w)) = plan.writes.iter().enumerate().find(|(i, w)| back[*i] != w.new) {
        return Err(Error::ApplyFailed {
            index,
            address: w.address,
            why: "read-back differs from what was written".into(),
            restored: 0,
        });
    }
    use sha2::Digest;
    let mut readback = sha2::Sha256::new();
    back.iter().for_each(|b| readback.update(b));
    Ok(readback.finalize().into())
}

/// PR_SET_MM_MAP: code/data/brk/stack/args/env bounds, the auxv, and /proc/PID/exe.
fn set_mm(inject: &Injector, snap: &Snapshot, checkpoint: &pb::Checkpoint) -> Result<()> {
    let Some(mm) = &checkpoint.mm else {
        return Err(Error::Restore("the checkpoint has no mm fields".into()));
    };
    let exe_fd = if reopenable(&snap.meta.exe) {
        Some(inject.open(&snap.meta.exe, (libc::O_RDONLY | libc::O_CLOEXEC) as u32)?)
    } else {
        tracing::warn!("{} is gone: /proc/PID/exe stays memzinc's", snap.meta.exe);
        None
    };
    let mut auxv: Vec<u8> = snap
        .meta
        .auxv
        .iter()
        .flat_map(|e| [e.key.to_le_bytes(), e.value.to_le_bytes()])
        .flatten()
        .collect();
    auxv.extend([0u8; 16]);
    let auxv_at = inject.put(1024, &auxv)?;
    // struct prctl_mm_map.
    let mut map = Vec::with_capacity(104);
    for v in [
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack,
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        auxv_at,
    ] {
        map.extend(v.to_le_bytes());
    }
    map.extend((auxv.len() as u32).to_le_bytes());
    map.extend(exe_fd.map_or(u32::MAX, |fd| fd as u32).to_le_bytes());
    let map_at = inject.put(0, &map)?;
    inject.call(
        "PR_SET_MM_MAP",
        libc::SYS_prctl,
        &[
            libc::PR_SET_MM as u64,
            libc::PR_SET_MM_MAP as u64,
            map_at,
            map.len() as u64,
            0,
        ],
    )?;
    if let Some(fd) = exe_fd {
        inject.call("close", libc::SYS_close, &[fd])?;
    }
    Ok(())
}

fn restore_signals(inject: &Injector, checkpoint: &pb::Checkpoint) -> Result<()> {
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        let ignore = checkpoint.sig_ignored & (1 << (sig - 1)) != 0;
        // struct kernel_sigaction: handler, flags, restorer, mask.
        let words = match checkpoint.handlers.iter().find(|h| h.signal as u64 == sig) {
            Some(h) => [h.handler, h.flags, h.restorer, h.mask],
            None => [ignore as u64, 0, 0, 0],
        };
        let act: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let at = inject.put(0, &act)?;
        inject.call(&format!("rt_sigaction {sig}"), libc::SYS_rt_sigaction, &[sig, at, 0, 8])?;
    }
    Ok(())
}

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// The image's registers, with an interrupted syscall set up to restart as the kernel would
/// have restarted it on the way back to user space (which the checkpoint's stop preempted).
fn resumable(regs: &GpRegs) -> GpRegs {
    let mut r = *regs;
    if (r.orig_rax as i64) >= 0 {
        match -(r.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                r.rax = r.orig_rax;
                r.rip -= 2;
            }
            // The restart block (e.g. a relative nanosleep's remaining time) stayed in the
            // old kernel task: the call returns EINTR, as restart_syscall would in a new one.
            ERESTART_RESTARTBLOCK => r.rax = (-(libc::EINTR as i64)) as u64,
            _ => {}
        }
    }
    r.orig_rax = u64::MAX;
    r
}

/// Unmaps the injection page at a syscall-exit stop, sets the image's registers there and
/// detaches: the process continues at its checkpointed instruction.
fn resume(inject: &Injector, helper: u64, regs: &GpRegs, fpregs: &[u8], xstate: &[u8]) -> Result<()> {
    let pid = Pid::from_raw(inject.pid());
    let fail = |what: &str, e: Errno| Error::Restore(format!("{what}: {e}"));
    // Its pending signals wait for its own code, not for this last syscall's stops.
    let blocked = introspect::SignalsBlocked::in_thread(inject.pid()).map_err(|e| fail("PTRACE_SETSIGMASK", e))?;
    ptrace::setregs(pid, inject.regs_for(libc::SYS_munmap, &[helper, PAGE_LEN])?)
        .map_err(|e| fail("PTRACE_SETREGS", e))?;
    for stop in ["entry", "exit"] {
        ptrace::syscall(pid, None).map_err(|e| fail("PTRACE_SYSCALL", e))?;
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceSyscall(_)) => {}
            other => {
                return Err(Error::Restore(format!(
                    "no syscall-{stop} stop unmapping the injection page: {other:?}"
                )));
            }
        }
    }
    let rc = ptrace::getregs(pid).map_err(|e| fail("PTRACE_GETREGS", e))?.rax as i64;
    if rc != 0 {
        return Err(Error::Restore(format!("munmap of the injection page: {rc}")));
    }
    drop(blocked);
    ptrace::setregs(pid, resumable(regs).to_user()).map_err(|e| fail("PTRACE_SETREGS", e))?;
    set_fpu(inject.pid(), fpregs, xstate).map_err(|e| fail("PTRACE_SETREGSET", e))?;
    ptrace::detach(pid, None).map_err(|e| fail("PTRACE_DETACH", e))?;
    Ok(())
}

/// The XSAVE area when there is one, else the FXSAVE area.
fn set_fpu(tid: i32, fpregs: &[u8], xstate: &[u8]) -> std::result::Result<(), Errno> {
    if !xstate.is_empty() {
        setregset(tid, NT_X86_XSTATE, xstate)
    } else if !fpregs.is_empty() {
        setregset(tid, NT_PRFPREG, fpregs)
    } else {
        Ok(())
    }
}

fn setregset(tid: i32, note_type: u32, bytes: &[u8]) -> std::result::Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: PTRACE_SETREGSET only reads `iov.iov_len` bytes from `iov.iov_base`, which points
    // at `bytes` (alive for the call); `tid` is our tracee, in a ptrace-stop.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid as libc::pid_t,
            note_type as libc::c_ulong,
            &mut iov as *mut libc::iovec,
        )
    };
    if rc == -1 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_range_skips_every_overlap() {
        let avoid = [(0x1000_0000, 0x1000_2000), (0x1000_3000, 0x1000_4000)];
        assert_eq!(free_range(0x1000, &avoid).unwrap(), 0x1000_2000);
        assert_eq!(free_range(0x2000, &avoid).unwrap(), 0x1000_4000);
        assert_eq!(free_range(0x1000, &[]).unwrap(), 0x1000_0000);
    }

    #[test]
    fn interrupted_syscalls_restart_like_the_kernel() {
        let at = |rax: i64| GpRegs {
            rax: rax as u64,
            orig_rax: 35,
            rip: 0x1002,
            ..GpRegs::default()
        };
        let r = resumable(&at(-ERESTARTNOHAND));
        assert_eq!((r.rax, r.rip, r.orig_rax), (35, 0x1000, u64::MAX));
        let r = resumable(&at(-ERESTART_RESTARTBLOCK));
        assert_eq!((r.rax as i64, r.rip), (-(libc::EINTR as i64), 0x1002));
        let r = resumable(&at(0));
        assert_eq!((r.rax, r.rip), (0, 0x1002));
    }
}
