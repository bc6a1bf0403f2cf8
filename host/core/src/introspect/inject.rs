//! memzinc's one syscall injector (CRIU's `compel`): makes a stopped tracee run a syscall of
//! memzinc's choosing and returns its result. Checkpoint (signal state, timers, credentials
//! asked from the target), track (the target's own userfaultfd) and restore (every step of
//! rebuilding a process) all go through it. Two places a syscall can run:
//!
//! - **in a live process** ([`Injector::in_frozen`]): a thread held in an interrupt-stop by
//!   [`super::Frozen`] is borrowed. It runs at the `syscall` instruction every x86_64 vdso has
//!   in its fallback paths (nothing is written to the target's code), between its syscall-entry
//!   and -exit stops; output goes to 32 scratch bytes below its red zone. Afterwards the thread
//!   is put back exactly as it was — registers, scratch bytes, and an interrupt-stop again, so
//!   an interrupted syscall of its own still restarts when it resumes. While it is borrowed its
//!   signal mask blocks everything (`PTRACE_SETSIGMASK`, as `compel` does): a signal that
//!   arrives meanwhile (a child's SIGCHLD) stays pending for the thread's own code, instead of
//!   stopping the injection in a signal-delivery stop that would be taken for its syscall stop
//!   and the signal lost.
//! - **in a process memzinc builds** ([`Injector::in_built`]): restore's child maps an
//!   injection page ([`PAGE_CODE`] then scratch) and stops; a syscall runs there and traps on
//!   the `int3` after it. Its registers are memzinc's to set; arguments go to the scratch area
//!   ([`Injector::put`]).

use nix::errno::Errno;
use nix::libc;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::process::{self, Frozen, PAGE_SIZE};
use crate::base::{Error, Result};

/// The injection page of a process memzinc builds: `syscall; int3`, then scratch space.
pub const PAGE_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];
/// Its length; the scratch space starts on its second page.
pub const PAGE_LEN: u64 = 4 * PAGE_SIZE;
const PAGE_SCRATCH: u64 = PAGE_SIZE;

/// Scratch space for a borrowed thread's syscall output: below its red zone, on its stack.
const SCRATCH_BELOW_SP: u64 = 512;
/// Bytes of output [`Injector::call_out`] returns.
pub const OUT_LEN: usize = 32;

enum Site {
    /// A `syscall` in the vdso of a live, frozen process; `during` names the work in the error
    /// if the process dies under it.
    Vdso { at: u64, during: &'static str },
    /// The injection page of a process memzinc builds, and the registers it stopped with.
    Page { at: u64, base: libc::user_regs_struct },
}

/// Runs syscalls in the threads of one stopped process (see the module comment).
pub struct Injector {
    pid: i32,
    site: Site,
    /// Signals a process being built stopped with during an injection (a child of it that
    /// already runs exited, say): held back then, sent again once it runs
    /// ([`Injector::take_deferred`]).
    deferred: std::cell::RefCell<Vec<Signal>>,
}

impl Injector {
    /// Syscalls in the threads of the live process `frozen` holds, at its vdso's `syscall`.
    pub fn in_frozen(frozen: &Frozen, during: &'static str) -> Result<Injector> {
        let pid = frozen.pid();
        Ok(Injector {
            pid,
            site: Site::Vdso {
                at: vdso_syscall(pid)?,
                during,
            },
            deferred: Default::default(),
        })
    }

    /// Syscalls in the process memzinc is building, stopped with [`PAGE_CODE`] mapped at `page`.
    pub fn in_built(pid: i32, page: u64) -> Result<Injector> {
        let base = ptrace::getregs(Pid::from_raw(pid)).map_err(|e| Error::Restore(format!("PTRACE_GETREGS: {e}")))?;
        Ok(Injector {
            pid,
            site: Site::Page { at: page, base },
            deferred: Default::default(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Holds `sig` back until the process runs (a stop for it came during an injection made
    /// outside [`Injector::call`]).
    pub fn defer(&self, sig: Signal) {
        self.deferred.borrow_mut().push(sig);
    }

    /// The signals held back while the process was being built (see `deferred`), in order.
    pub fn take_deferred(&self) -> Vec<Signal> {
        std::mem::take(&mut self.deferred.borrow_mut())
    }

    /// The injection page of a process being built (`None` in a live one).
    pub fn page(&self) -> Option<u64> {
        match self.site {
            Site::Page { at, .. } => Some(at),
            Site::Vdso { .. } => None,
        }
    }

    /// An error about the injection: in a live process the thread's own error (gone, not
    /// permitted, …), in a process being built a restore error.
    fn fail(&self, tid: i32, what: &str, e: Errno) -> Error {
        match self.site {
            Site::Vdso { .. } => process::pid_errno(self.pid, &format!("{what} in thread {tid}"), e),
            Site::Page { .. } => Error::Restore(format!("{what}: {e}")),
        }
    }

    /// The registers that make a built process's thread run syscall `nr` at the injection page
    /// (for the steps that wait for other stops than the trap after it: clone events, the final
    /// syscall-exit stop).
    pub fn regs_for(&self, nr: i64, args: &[u64]) -> Result<libc::user_regs_struct> {
        match self.site {
            Site::Page { at, base } => Ok(with_syscall(base, at, nr, args)),
            Site::Vdso { .. } => Err(Error::Restore(
                "a live process's registers are its own: use call/call_out".into(),
            )),
        }
    }

    /// Syscall `nr` in the main thread; the raw return value (negative errno on failure).
    pub fn raw(&self, nr: i64, args: &[u64]) -> Result<i64> {
        self.raw_in(self.pid, nr, args)
    }

    /// [`Injector::raw`] in thread `tid`.
    pub fn raw_in(&self, tid: i32, nr: i64, args: &[u64]) -> Result<i64> {
        match self.site {
            Site::Page { .. } => self.run_built(tid, nr, args),
            Site::Vdso { .. } => self
                .run_borrowed(tid, &format!("syscall {nr}"), nr, &|_| args.to_vec())
                .map(|(rc, _)| rc),
        }
    }

    /// Syscall `nr` in the main thread, which must succeed; `what` names it in the error.
    pub fn call(&self, what: &str, nr: i64, args: &[u64]) -> Result<u64> {
        self.call_in(self.pid, what, nr, args)
    }

    /// [`Injector::call`] in thread `tid`.
    pub fn call_in(&self, tid: i32, what: &str, nr: i64, args: &[u64]) -> Result<u64> {
        let rc = match self.site {
            Site::Page { .. } => self.run_built(tid, nr, args)?,
            Site::Vdso { .. } => self.run_borrowed(tid, what, nr, &|_| args.to_vec())?.0,
        };
        if (-4095..0).contains(&rc) {
            return Err(self.fail(tid, what, Errno::from_raw(-rc as i32)));
        }
        Ok(rc as u64)
    }

    /// A syscall that writes its answer to memory, in a live process's thread `tid`: `args`
    /// builds the arguments around the address of a [`OUT_LEN`]-byte output buffer; returns the
    /// result and the buffer.
    pub fn call_out(
        &self,
        tid: i32,
        what: &str,
        nr: i64,
        args: impl Fn(u64) -> Vec<u64>,
    ) -> Result<(u64, [u8; OUT_LEN])> {
        if matches!(self.site, Site::Page { .. }) {
            return Err(Error::Restore(format!("{what}: output buffers are for live processes")));
        }
        let (rc, out) = self.run_borrowed(tid, what, nr, &args)?;
        if (-4095..0).contains(&rc) {
            return Err(self.fail(tid, what, Errno::from_raw(-rc as i32)));
        }
        Ok((rc as u64, out))
    }

    /// Writes `bytes` into a built process's scratch area at `offset`; returns their address.
    pub fn put(&self, offset: u64, bytes: &[u8]) -> Result<u64> {
        let Site::Page { at, .. } = self.site else {
            return Err(Error::Restore("scratch space is for processes memzinc builds".into()));
        };
        if PAGE_SCRATCH + offset + bytes.len() as u64 > PAGE_LEN {
            return Err(Error::Restore(format!(
                "{} bytes do not fit the injection page",
                bytes.len()
            )));
        }
        let address = at + PAGE_SCRATCH + offset;
        process::write_at(self.pid, address, bytes)?;
        Ok(address)
    }

    /// A NUL-terminated copy of `path` in the scratch area.
    pub fn put_path(&self, path: &[u8]) -> Result<u64> {
        let mut c = path.to_vec();
        c.push(0);
        self.put(0, &c)
    }

    /// `openat(AT_FDCWD, path, flags)` in a built process.
    pub fn open(&self, path: &str, flags: u32) -> Result<u64> {
        let at = self.put_path(path.as_bytes())?;
        self.call(
            &format!("open {path}"),
            libc::SYS_openat,
            &[libc::AT_FDCWD as u64, at, flags as u64, 0],
        )
    }

    /// A built process's thread runs to the `int3` after the injection page's `syscall`.
    fn run_built(&self, tid: i32, nr: i64, args: &[u64]) -> Result<i64> {
        let t = Pid::from_raw(tid);
        let fail = |what: &str, e: Errno| Error::Restore(format!("{what} (syscall {nr}): {e}"));
        // Signals wait, blocked, while the syscall runs: a signal queued again from the
        // checkpoint (pending and unblocked) or sent from outside stays pending, siginfo and
        // all, for the process's own code. The thread's mask is put back after, unless the
        // syscall was the one that sets it.
        let blocked = SignalsBlocked::in_thread(tid).map_err(|e| fail("PTRACE_SETSIGMASK", e))?;
        if nr == libc::SYS_rt_sigprocmask {
            blocked.keep_the_new_mask();
        }
        ptrace::setregs(t, self.regs_for(nr, args)?).map_err(|e| fail("PTRACE_SETREGS", e))?;
        ptrace::cont(t, None).map_err(|e| fail("PTRACE_CONT", e))?;
        loop {
            match waitpid(t, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => break,
                Err(Errno::EINTR) => continue,
                // A signal for the process, not for this injection: held back until it runs.
                Ok(WaitStatus::Stopped(_, sig)) if sig != Signal::SIGSTOP => {
                    self.deferred.borrow_mut().push(sig);
                    ptrace::cont(t, None).map_err(|e| fail("PTRACE_CONT", e))?;
                }
                other => {
                    return Err(Error::Restore(format!(
                        "the new process stopped unexpectedly in syscall {nr}: {other:?}"
                    )));
                }
            }
        }
        Ok(ptrace::getregs(t).map_err(|e| fail("PTRACE_GETREGS", e))?.rax as i64)
    }

    /// A live thread runs one syscall at the vdso and is put back as it was.
    fn run_borrowed(
        &self,
        tid: i32,
        what: &str,
        nr: i64,
        args: &dyn Fn(u64) -> Vec<u64>,
    ) -> Result<(i64, [u8; OUT_LEN])> {
        let Site::Vdso { at, during } = self.site else {
            unreachable!("run_borrowed is only called for live processes");
        };
        let t = Pid::from_raw(tid);
        let fail = |e: Errno| self.fail(tid, what, e);
        let _held = process::HoldSignals::new();
        let _blocked = SignalsBlocked::in_thread(tid).map_err(fail)?;
        let saved = ptrace::getregs(t).map_err(fail)?;
        let out = (saved.rsp - SCRATCH_BELOW_SP) & !15;
        let mut kept = [0u8; OUT_LEN];
        process::read_at(self.pid, out, &mut kept)?;
        ptrace::setregs(t, with_syscall(saved, at, nr, &args(out))).map_err(fail)?;
        for _ in ["entry", "exit"] {
            ptrace::syscall(t, None).map_err(fail)?;
            wait_stop(self.pid, tid, during)?;
        }
        let rc = ptrace::getregs(t).map_err(fail)?.rax as i64;
        let mut result = [0u8; OUT_LEN];
        process::read_at(self.pid, out, &mut result)?;
        process::write_at(self.pid, out, &kept)?;
        ptrace::setregs(t, saved).map_err(fail)?;
        // Back into an interrupt-stop: the exit stop would return to user space without the
        // restart handling an interrupted syscall of the thread's own needs.
        ptrace::interrupt(t).map_err(fail)?;
        ptrace::cont(t, None).map_err(fail)?;
        wait_stop(self.pid, tid, during)?;
        Ok((rc, result))
    }
}

impl Injector {
    /// Makes thread `tid` of the live process run `clone(flags)` at `code` (a `syscall`
    /// instruction memzinc placed; see `super::fork`) and returns the child, which the kernel
    /// attached to memzinc (PTRACE_O_TRACECLONE, set on the thread for this call only) and which
    /// is held in its first stop with PTRACE_O_EXITKILL: if memzinc dies, the kernel kills it.
    /// The thread is put back exactly as [`Injector::raw_in`] puts it back.
    pub fn clone_stopped(&self, tid: i32, code: u64, flags: u64) -> Result<i32> {
        let Site::Vdso { during, .. } = self.site else {
            return Err(Error::Restore("clone_stopped is for live processes".into()));
        };
        clone_stopped(self.pid, tid, code, flags, ptrace::Options::empty(), during)
    }
}

/// [`Injector::clone_stopped`] in thread `tid` of process `pid`, held in an interrupt-stop by
/// memzinc; `keep` are the ptrace options the thread has and keeps.
pub(super) fn clone_stopped(
    pid: i32,
    tid: i32,
    code: u64,
    flags: u64,
    keep: ptrace::Options,
    during: &'static str,
) -> Result<i32> {
    let t = Pid::from_raw(tid);
    let what = "clone";
    let _held = process::HoldSignals::new();
    let fail = |e: Errno| process::pid_errno(pid, &format!("{what} in thread {tid}"), e);
    let _blocked = SignalsBlocked::in_thread(tid).map_err(fail)?;
    let saved = ptrace::getregs(t).map_err(fail)?;
    let tracing = keep
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACESYSGOOD;
    ptrace::setoptions(t, tracing).map_err(fail)?;
    ptrace::setregs(t, with_syscall(saved, code, libc::SYS_clone, &[flags, 0, 0, 0, 0])).map_err(fail)?;
    let mut child = None;
    let mut stops = 0;
    // Syscall-entry stop, the clone event (the child exists), syscall-exit stop.
    let rc = loop {
        ptrace::syscall(t, None).map_err(fail)?;
        match wait_status(pid, tid, during)? {
            WaitStatus::PtraceEvent(_, _, event)
                if event == libc::PTRACE_EVENT_CLONE
                    || event == libc::PTRACE_EVENT_FORK
                    || event == libc::PTRACE_EVENT_VFORK =>
            {
                let new = ptrace::getevent(t).map_err(fail)? as i32;
                // Its first stop; from here on it dies with memzinc.
                hold_new_child(pid, new)?;
                child = Some(new);
            }
            WaitStatus::PtraceSyscall(_) => {
                stops += 1;
                if stops == 2 {
                    break ptrace::getregs(t).map_err(fail)?.rax as i64;
                }
            }
            _ => {}
        }
    };
    ptrace::setoptions(t, keep).map_err(fail)?;
    ptrace::setregs(t, saved).map_err(fail)?;
    ptrace::interrupt(t).map_err(fail)?;
    ptrace::cont(t, None).map_err(fail)?;
    wait_stop(pid, tid, during)?;
    match child {
        Some(new) if rc == new as i64 => Ok(new),
        Some(new) => {
            let _ = nix::sys::signal::kill(Pid::from_raw(new), Signal::SIGKILL);
            Err(fail(Errno::EINVAL))
        }
        None if (-4095..0).contains(&rc) => Err(fail(Errno::from_raw(-rc as i32))),
        None => Err(fail(Errno::ECHILD)),
    }
}

/// A stopped tracee thread's signal mask set to block every signal, and put back when this
/// drops (after the thread is back in its interrupt-stop, so what arrived meanwhile is still
/// pending when it resumes). SIGKILL and SIGSTOP cannot be blocked.
pub struct SignalsBlocked {
    tid: i32,
    /// The mask to put back; `None` once the syscall run meanwhile sets the mask itself.
    mask: Option<u64>,
}

impl SignalsBlocked {
    pub fn in_thread(tid: i32) -> std::result::Result<SignalsBlocked, Errno> {
        let mut mask = 0u64;
        // SAFETY: PTRACE_GETSIGMASK writes the kernel's sigset (8 bytes on x86_64, the size
        // passed) to `mask`, which lives for the call; the tracee is in a ptrace-stop.
        let rc = unsafe {
            libc::ptrace(
                libc::PTRACE_GETSIGMASK,
                tid,
                std::mem::size_of::<u64>(),
                &mut mask as *mut u64,
            )
        };
        Errno::result(rc)?;
        set_sigmask(tid, u64::MAX)?;
        Ok(SignalsBlocked { tid, mask: Some(mask) })
    }

    /// For an `rt_sigprocmask` run while blocked: the mask it sets is the thread's.
    fn keep_the_new_mask(mut self) {
        self.mask = None;
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        if let Some(mask) = self.mask {
            // Fails only if the thread is gone or not stopped (an injection that failed midway).
            let _ = set_sigmask(self.tid, mask);
        }
    }
}

fn set_sigmask(tid: i32, mask: u64) -> std::result::Result<(), Errno> {
    // SAFETY: PTRACE_SETSIGMASK reads an 8-byte kernel sigset from `&mask`, alive for the call.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid,
            std::mem::size_of::<u64>(),
            &mask as *const u64,
        )
    };
    Errno::result(rc).map(drop)
}

/// Waits for the new child's first stop and makes it die with memzinc (PTRACE_O_EXITKILL).
fn hold_new_child(target: i32, child: i32) -> Result<()> {
    let c = Pid::from_raw(child);
    loop {
        match waitpid(c, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::Stopped(..)) => break,
            Err(Errno::EINTR) | Ok(WaitStatus::StillAlive) | Ok(WaitStatus::Continued(_)) => continue,
            Ok(WaitStatus::PtraceSyscall(_)) => continue,
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => {
                return Err(Error::TargetExited {
                    pid: target,
                    during: "forking a copy of it",
                })
            }
            Err(e) => return Err(process::pid_errno(target, "waitpid for the copy", e)),
        }
    }
    ptrace::setoptions(c, ptrace::Options::PTRACE_O_EXITKILL)
        .map_err(|e| process::pid_errno(target, "PTRACE_SETOPTIONS of the copy", e))
}

fn wait_status(pid: i32, tid: i32, during: &'static str) -> Result<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                return Err(Error::TargetExited { pid, during })
            }
            Ok(status) => return Ok(status),
            Err(e) => return Err(process::pid_errno(pid, "waitpid", e)),
        }
    }
}

/// `regs` set up to run syscall `nr` with `args` at `site`.
fn with_syscall(regs: libc::user_regs_struct, site: u64, nr: i64, args: &[u64]) -> libc::user_regs_struct {
    let mut r = regs;
    r.rip = site;
    r.rax = nr as u64;
    // Not in a syscall: the kernel must not treat our rax as a restart code.
    r.orig_rax = u64::MAX;
    let mut a = args.iter().copied().chain(std::iter::repeat(0));
    r.rdi = a.next().unwrap_or(0);
    r.rsi = a.next().unwrap_or(0);
    r.rdx = a.next().unwrap_or(0);
    r.r10 = a.next().unwrap_or(0);
    r.r8 = a.next().unwrap_or(0);
    r.r9 = a.next().unwrap_or(0);
    r
}

fn wait_stop(pid: i32, tid: i32, during: &'static str) -> Result<()> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(..)) | Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::PtraceSyscall(..)) => {
                return Ok(())
            }
            Err(Errno::EINTR) => continue,
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                return Err(Error::TargetExited { pid, during })
            }
            Ok(_) => continue,
            Err(e) => return Err(process::pid_errno(pid, "waitpid", e)),
        }
    }
}

/// The address of a `syscall` instruction in the target's vdso (every x86_64 vdso has one in
/// its fallback paths): where syscalls are injected without writing to the target's code.
fn vdso_syscall(pid: i32) -> Result<u64> {
    let maps = process::read_maps(pid)?;
    let vdso = maps.iter().find(|m| m.path == "[vdso]").ok_or_else(|| Error::Process {
        pid,
        what: "no [vdso] mapping to run syscalls at".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
    let n = process::read_at(pid, vdso.start, &mut code)?;
    code[..n]
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|i| vdso.start + i as u64)
        .ok_or_else(|| Error::Process {
            pid,
            what: "no syscall instruction in the vdso".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}
