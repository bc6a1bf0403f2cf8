//! A point-in-time copy of a frozen process's memory, the way Redis' BGSAVE gets one: the
//! target forks (one `clone` injected while it is frozen), the child is held stopped under
//! ptrace and read at leisure while the target runs on, then killed.
//!
//! What the target sees of it, and why:
//!
//! - **No SIGCHLD, no child**: the child's exit signal is 0, so its death signals no one and a
//!   `wait` without `__WALL`/`__WCLONE` never sees it. Right after the thaw it forks once more
//!   ([`ForkedCopy::orphan`]: the grandchild is the copy that is read) and is killed, and
//!   memzinc reaps it *in* the target (a `wait4` injected into one briefly stopped thread; the
//!   other threads run on). The grandchild, an orphan, belongs to init (or the nearest
//!   subreaper), which reaps it when memzinc kills it — or when memzinc dies, since it dies
//!   with memzinc. Only a memzinc killed between the fork and that reap (the freeze and a few
//!   milliseconds after it) leaves the target a dead child entry, which it never waits for.
//! - **No shared state kept alive**: `CLONE_FILES | CLONE_FS` — the child shares the target's
//!   descriptor table instead of holding a reference to every open file, so a descriptor the
//!   target closes meanwhile is really closed (a peer sees EOF, a lock on close is released).
//! - **No runaway copy**: the child is attached by the kernel as it is created
//!   (PTRACE_O_TRACECLONE on the borrowed thread for the one call) and gets PTRACE_O_EXITKILL
//!   at its first stop, so if memzinc dies the kernel kills it. Until that option is set (a
//!   few microseconds) it would run on if memzinc died: the `clone` therefore runs at a page
//!   memzinc maps in the target for the call ([`CODE`]) whose next instructions are
//!   `exit_group(0)`, never the target's own code.
//! - Limits, signal handlers, masks and timers are the target's own and untouched; the child
//!   counts against RLIMIT_NPROC and the pid limit while it lives, and its (tiny) CPU time
//!   joins the target's children's usage when it is reaped.
//!
//! What a fork does not copy faithfully, the caller reads from the target while it is still
//! frozen: mappings with MADV_DONTFORK (absent from the child: [`ForkedCopy::missing`]) or
//! MADV_WIPEONFORK (zero in the child), and hugetlb ones (their copy-on-write can take the
//! page from the child). Shared mappings are not captured by a snapshot at all.
//!
//! The PTRACE_GET_RSEQ_CONFIGURATION area of the borrowed thread is the one place an injected
//! syscall writes the target's memory (the kernel updates it when the thread returns to user
//! space): the caller reads it before the first injection ([`ForkedCopy::rseq_page`]).

use nix::errno::Errno;
use nix::libc;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::inject::Injector;
use super::process::{self, Frozen, MapEntry, PAGE_SIZE};
use crate::base::{Error, Result};

/// The page the `clone` runs at: `syscall`, then — only ever reached by a child that runs on
/// because memzinc died before it could hold it — `exit_group(0)`.
pub const CODE: [u8; 13] = [
    0x0f, 0x05, // syscall
    0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
    0x31, 0xff, // xor edi, edi
    0x0f, 0x05, // syscall
    0x0f, 0x0b, // ud2
];

/// clone(2) flags: share the descriptor table and the cwd/umask (see the module comment); the
/// low byte, the exit signal, is 0.
const CLONE_FLAGS: u64 = (libc::CLONE_FILES | libc::CLONE_FS) as u64;

/// A stopped, traced process whose memory is the target's at the fork.
pub struct ForkedCopy {
    target: i32,
    /// The copy to read.
    pid: i32,
    /// A child of the target to reap there (the first fork, until [`ForkedCopy::orphan`]).
    child_of_target: Option<i32>,
    /// Where the fork's code page is in the copy.
    page: u64,
    done: bool,
    /// From the fork until the copy is no child of the target, termination signals wait (a
    /// memzinc ended in between would leave the target a dead child). Fork and
    /// [`ForkedCopy::orphan`] run on the same thread.
    held: Option<process::HoldSignals>,
}

impl ForkedCopy {
    /// Forks the process `frozen` holds (all its threads stopped): its main thread runs
    /// `mmap`, `clone` and `munmap` and is put back as it was.
    pub fn fork(frozen: &Frozen) -> Result<ForkedCopy> {
        let held = process::HoldSignals::new();
        let target = frozen.pid();
        let tid = frozen.tids()[0];
        let inject = Injector::in_frozen(frozen, "forking a copy of it")?;
        let page = inject.call(
            "mmap a page for the fork",
            libc::SYS_mmap,
            &[
                0,
                PAGE_SIZE,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        let child = process::write_forced(target, page, &CODE)
            .and_then(|()| inject.clone_stopped(tid, page, CLONE_FLAGS))
            .map(|pid| ForkedCopy {
                target,
                pid,
                child_of_target: Some(pid),
                page,
                done: false,
                held: None,
            });
        // The page goes whatever happened; the child keeps its own copy of it.
        let unmapped = inject.call("munmap the fork's page", libc::SYS_munmap, &[page, PAGE_SIZE]);
        let mut child = child?;
        unmapped?;
        child.held = Some(held);
        Ok(child)
    }

    /// Makes the copy no child of the target (see the module comment): the child forks a
    /// grandchild, which becomes the copy; the child is killed and reaped in the target. Call
    /// after the thaw: the second fork costs the target nothing.
    pub fn orphan(&mut self) -> Result<()> {
        let Some(child) = self.child_of_target else {
            return Ok(());
        };
        let grandchild = super::inject::clone_stopped(
            child,
            child,
            self.page,
            CLONE_FLAGS,
            ptrace::Options::PTRACE_O_EXITKILL,
            "forking a copy of it",
        )
        .map_err(|e| match e {
            Error::TargetExited { .. } | Error::NoSuchProcess { .. } => Error::Process {
                pid: self.target,
                what: format!("its copy {child} died"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            e => e,
        })?;
        self.pid = grandchild;
        kill_and_wait(self.target, child)?;
        super::process::fault_point("cow-reaping");
        reap_in(self.target, child, None)?;
        self.child_of_target = None;
        self.held = None;
        Ok(())
    }

    /// The copy's pid: read its memory as the target's at the fork.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Which of `maps` (the target's, read while frozen) the copy does not have — MADV_DONTFORK
    /// mappings — by index.
    pub fn missing(&self, maps: &[MapEntry]) -> Result<Vec<bool>> {
        let own = process::read_maps(self.pid)?;
        Ok(maps
            .iter()
            .map(|m| !own.iter().any(|o| o.start <= m.start && m.end <= o.end))
            .collect())
    }

    /// The page holding thread `tid`'s rseq area, if it registered one: (address, bytes), read
    /// now. Call before anything is injected into that thread.
    pub fn rseq_page(pid: i32, tid: i32) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(rseq) =
            process::rseq_config(tid).map_err(|e| process::pid_errno(pid, "PTRACE_GET_RSEQ_CONFIGURATION", e))?
        else {
            return Ok(None);
        };
        let first = rseq.address & !(PAGE_SIZE - 1);
        let last = (rseq.address + u64::from(rseq.size).max(1) - 1) & !(PAGE_SIZE - 1);
        let mut bytes = vec![0u8; (last - first + PAGE_SIZE) as usize];
        let n = process::read_at(pid, first, &mut bytes)?;
        Ok((n == bytes.len()).then_some((first, bytes)))
    }

    /// Memory only the copy holds now — pages the target wrote (or freed) since the fork, which
    /// the kernel had to duplicate — plus the copy's page tables, in bytes.
    pub fn extra_bytes(&self) -> Result<u64> {
        let rollup = process::read_proc(self.pid, "smaps_rollup")?;
        let status = process::read_proc(self.pid, "status")?;
        let kib = |text: &str, key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Ok((kib(&rollup, "Private_Clean:") + kib(&rollup, "Private_Dirty:") + kib(&status, "VmPTE:")) * 1024)
    }

    /// Kills the copy and reaps it in the target; the target is left as if there never was one.
    pub fn finish(mut self) -> Result<()> {
        self.done = true;
        self.end(None)
    }

    /// [`ForkedCopy::finish`] while the target is still frozen (an error before the thaw).
    pub fn finish_frozen(mut self, frozen: &Frozen) -> Result<()> {
        self.done = true;
        self.end(Some(frozen))
    }

    fn end(&self, frozen: Option<&Frozen>) -> Result<()> {
        kill_and_wait(self.target, self.pid)?;
        if let Some(child) = self.child_of_target {
            if child != self.pid {
                kill_and_wait(self.target, child)?;
            }
            reap_in(self.target, child, frozen)?;
        }
        Ok(())
    }
}

/// Kills the traced `copy` and waits for its death: memzinc, its tracer, sees it die first;
/// then it is its parent's zombie to reap.
fn kill_and_wait(target: i32, copy: i32) -> Result<()> {
    let copy = Pid::from_raw(copy);
    let _ = kill(copy, Signal::SIGKILL);
    loop {
        match waitpid(copy, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => return Ok(()),
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(e) => return Err(process::pid_errno(target, "waitpid for its copy", e)),
        }
    }
}

/// Reaps the dead `child` of `target` in the target: a `wait4` injected into one thread,
/// stopped for it alone (or into `frozen`'s, if it is still frozen).
fn reap_in(target: i32, child: i32, frozen: Option<&Frozen>) -> Result<()> {
    let one;
    let frozen = match frozen {
        Some(f) => f,
        None => match Frozen::freeze_one(target) {
            Ok(f) => {
                one = f;
                &one
            }
            // Gone: its children went to init, which reaps them.
            Err(Error::NoSuchProcess { .. } | Error::Zombie { .. } | Error::TargetExited { .. }) => return Ok(()),
            Err(e) => return Err(e),
        },
    };
    let inject = Injector::in_frozen(frozen, "reaping its copy")?;
    let options = (libc::WNOHANG | libc::__WALL) as u64;
    for _ in 0..1000 {
        match inject.raw(libc::SYS_wait4, &[child as u64, 0, options, 0])? {
            // Not a zombie yet: the kernel hands it over right after memzinc's wait.
            0 => std::thread::sleep(std::time::Duration::from_millis(1)),
            // Reaped, or the target reaped it itself (a wait with __WALL of its own).
            _ => return Ok(()),
        }
    }
    Err(Error::Process {
        pid: target,
        what: format!("its copy {child} did not become a zombie to reap"),
        source: std::io::Error::from(std::io::ErrorKind::TimedOut),
    })
}

impl Drop for ForkedCopy {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.end(None) {
                tracing::warn!("copy {} of pid {}: {e}", self.pid, self.target);
            }
        }
    }
}
