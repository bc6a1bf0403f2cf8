//! A live target: its map, its threads frozen and thawed, its memory read and written.
//!
//! Freezing uses PTRACE_SEIZE + PTRACE_INTERRUPT, never SIGSTOP: if memzinc dies for any reason
//! (panic, SIGINT, SIGKILL) the kernel detaches its tracees and an interrupt-stop simply ends,
//! so the target is never left stopped. The `Frozen` guard detaches on every normal exit path.

use std::collections::BTreeSet;
use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::libc;
use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

use crate::base::pb::snapshot as pb;
use crate::base::{Error, Result};

pub const PAGE_SIZE: u64 = 4096;

/// Fault injection for the kill-at-every-step tests: with `MEMZINC_FAULT_POINT=<name>` set,
/// memzinc SIGKILLs itself at that point (`<name>:TERM`: sends itself SIGTERM). Without the
/// variable this does nothing.
pub fn fault_point(name: &str) {
    use nix::sys::signal::Signal;
    let Some(point) = std::env::var_os("MEMZINC_FAULT_POINT") else {
        return;
    };
    let signal = if point == name {
        Signal::SIGKILL
    } else if point.to_str().and_then(|p| p.strip_suffix(":TERM")) == Some(name) {
        Signal::SIGTERM
    } else {
        return;
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), signal);
}

/// The signals that end memzinc by default and that a user or a service manager sends: held
/// off (blocked in this thread) while a target is mid-way through something memzinc does in it
/// — a thread's registers replaced for an injected syscall, a forked copy not yet made no child
/// of it — and delivered when the guard drops, between steps. SIGKILL cannot be held off.
pub struct HoldSignals(nix::sys::signal::SigSet);

impl HoldSignals {
    fn set() -> nix::sys::signal::SigSet {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            set.add(s);
        }
        set
    }

    pub fn new() -> HoldSignals {
        let mut old = nix::sys::signal::SigSet::empty();
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&Self::set()),
            Some(&mut old),
        );
        HoldSignals(old)
    }

    /// For a thread of memzinc's that never needs them (a worker): blocked for its life, so
    /// they reach the thread that holds or takes them.
    pub fn in_this_thread_for_good() {
        let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&Self::set()), None);
    }
}

impl Default for HoldSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HoldSignals {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    /// "rwxp" style permissions; the last letter is p (private) or s (shared).
    pub perms: String,
    pub offset: u64,
    pub dev: String,
    pub inode: u64,
    /// Backing file, or a pseudo-path such as [heap], [stack], [vdso]; empty for anonymous.
    pub path: String,
}

impl MapEntry {
    pub fn readable(&self) -> bool {
        self.perms.as_bytes().first() == Some(&b'r')
    }
    pub fn writable(&self) -> bool {
        self.perms.as_bytes().get(1) == Some(&b'w')
    }
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
    pub fn private(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b'p')
    }
    /// The verifier's region flags for this mapping.
    pub fn region_flags(&self) -> u8 {
        use memzinc_verifier::wire::{REGION_EXEC, REGION_READ, REGION_WRITE};
        (self.readable() as u8 * REGION_READ)
            | (self.writable() as u8 * REGION_WRITE)
            | (self.executable() as u8 * REGION_EXEC)
    }
}

/// PTRACE_SEIZE of thread `tid` of `pid`: false if the thread ended between listing and
/// seizing.
fn seize(pid: i32, tid: i32) -> Result<bool> {
    match ptrace::seize(Pid::from_raw(tid), ptrace::Options::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(Errno::EPERM) if thread_ended(pid, tid) => Ok(false),
        Err(e) => Err(pid_errno(pid, "PTRACE_SEIZE", e)),
    }
}

/// Whether thread `tid` of `pid` has ended: gone from /proc, or a zombie. PTRACE_SEIZE refuses
/// a thread whose exit has begun with EPERM, not ESRCH, so a process tree that changes while it
/// is frozen would otherwise read as a permission error.
fn thread_ended(pid: i32, tid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) {
        Err(_) => true,
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'Z' || state == 'X'),
    }
}

pub fn pid_errno(pid: i32, what: &str, e: Errno) -> Error {
    match e {
        Errno::ESRCH => Error::NoSuchProcess { pid },
        Errno::EPERM | Errno::EACCES => Error::NotPermitted {
            pid,
            what: what.to_string(),
        },
        other => Error::Process {
            pid,
            what: what.to_string(),
            source: std::io::Error::from(other),
        },
    }
}

pub fn read_proc(pid: i32, file: &str) -> Result<String> {
    // /proc text files are ASCII; a lossy decode never loses a field we parse.
    Ok(String::from_utf8_lossy(&read_proc_bytes(pid, file)?).into_owned())
}

/// Fails with a clear error for a pid that is not a live, non-zombie process.
pub fn check_target(pid: i32) -> Result<()> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess { pid });
    }
    let stat = read_proc(pid, "stat")?;
    // The state follows the parenthesised comm, which may itself contain spaces or ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    match state {
        Some("Z") | Some("X") => Err(Error::Zombie { pid }),
        _ => Ok(()),
    }
}

pub fn read_maps(pid: i32) -> Result<Vec<MapEntry>> {
    let text = read_proc(pid, "maps")?;
    text.lines()
        .map(|line| {
            parse_maps_line(line).ok_or_else(|| Error::Process {
                pid,
                what: format!("unparseable maps line {line:?}"),
                source: std::io::Error::from(std::io::ErrorKind::InvalidData),
            })
        })
        .collect()
}

fn parse_maps_line(line: &str) -> Option<MapEntry> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.to_string();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let dev = fields.next()?.to_string();
    let inode = fields.next()?.parse().ok()?;
    let path = fields.next().unwrap_or("").trim_start().to_string();
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        dev,
        inode,
        path,
    })
}

pub fn exe_path(pid: i32) -> Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        _ => Error::NotPermitted {
            pid,
            what: "reading /proc/PID/exe".into(),
        },
    })
}

pub fn comm(pid: i32) -> Result<String> {
    Ok(read_proc(pid, "comm")?.trim_end().to_string())
}

fn thread_ids(pid: i32) -> Result<BTreeSet<i32>> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        _ => Error::io(&dir, e),
    })?;
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// A thread's time on a CPU so far and the CPU it ran on last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCpuTime {
    pub tid: i32,
    /// Nanoseconds spent running (`/proc/PID/task/TID/schedstat`, first field).
    pub ran_ns: u64,
    /// The CPU it ran on last (`stat`'s `processor`, field 39).
    pub cpu: usize,
}

/// Every thread's [`ThreadCpuTime`]; a thread that ends meanwhile is left out.
pub fn thread_cpu_times(pid: i32) -> Result<Vec<ThreadCpuTime>> {
    let mut times = Vec::new();
    for tid in thread_ids(pid)? {
        let task = format!("/proc/{pid}/task/{tid}");
        let (Ok(schedstat), Ok(stat)) = (
            std::fs::read_to_string(format!("{task}/schedstat")),
            std::fs::read_to_string(format!("{task}/stat")),
        ) else {
            continue;
        };
        let ran_ns = schedstat.split_whitespace().next().and_then(|f| f.parse().ok());
        if let (Some(ran_ns), Some(cpu)) = (ran_ns, parse_stat(&stat).and_then(|s| s.processor)) {
            times.push(ThreadCpuTime { tid, ran_ns, cpu });
        }
    }
    Ok(times)
}

/// Every thread of a target held in a ptrace interrupt-stop. Dropping it resumes them.
pub struct Frozen {
    pid: i32,
    tids: Vec<i32>,
    /// When the first thread was told to stop.
    since: std::time::Instant,
}

impl Frozen {
    /// Seizes and interrupts every thread, repeating until no new thread appears.
    pub fn freeze(pid: i32) -> Result<Frozen> {
        check_target(pid)?;
        let mut frozen = Frozen {
            pid,
            tids: Vec::new(),
            since: std::time::Instant::now(),
        };
        loop {
            let current = thread_ids(pid)?;
            let new: Vec<i32> = current.iter().copied().filter(|t| !frozen.tids.contains(t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                if !seize(pid, tid)? {
                    continue;
                }
                frozen.tids.push(tid);
                ptrace::interrupt(Pid::from_raw(tid)).map_err(|e| pid_errno(pid, "PTRACE_INTERRUPT", e))?;
                wait_for_stop(pid, tid)?;
            }
        }
        if frozen.tids.is_empty() {
            return Err(Error::TargetExited {
                pid,
                during: "freezing it",
            });
        }
        Ok(frozen)
    }

    /// Only one thread, the main one (or, if it has exited, the first alive): for a moment's
    /// work in the process (an injected syscall) while its other threads run on.
    pub fn freeze_one(pid: i32) -> Result<Frozen> {
        check_target(pid)?;
        let mut ids: Vec<i32> = thread_ids(pid)?.into_iter().collect();
        ids.sort_by_key(|&t| (t != pid, t));
        for tid in ids {
            if !seize(pid, tid)? {
                continue;
            }
            let frozen = Frozen {
                pid,
                tids: vec![tid],
                since: std::time::Instant::now(),
            };
            ptrace::interrupt(Pid::from_raw(tid)).map_err(|e| pid_errno(pid, "PTRACE_INTERRUPT", e))?;
            wait_for_stop(pid, tid)?;
            return Ok(frozen);
        }
        Err(Error::TargetExited {
            pid,
            during: "freezing it",
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// How long since the freeze began.
    pub fn stopped_for(&self) -> std::time::Duration {
        self.since.elapsed()
    }

    pub fn thread_count(&self) -> usize {
        self.tids.len()
    }

    /// The frozen threads, the thread whose tid is the pid (the main thread) first, then by tid.
    pub fn tids(&self) -> Vec<i32> {
        let mut tids = self.tids.clone();
        tids.sort_by_key(|&t| (t != self.pid, t));
        tids
    }

    /// Every frozen thread's registers, in [`Frozen::tids`] order. Valid only while frozen: a
    /// thread in a ptrace-stop has its user registers saved where PTRACE_GET* reads them.
    pub fn registers(&self) -> Result<Vec<ThreadRegisters>> {
        self.tids()
            .into_iter()
            .map(|tid| {
                let exited = |e: Errno| match e {
                    Errno::ESRCH => Error::TargetExited {
                        pid: self.pid,
                        during: "reading its registers",
                    },
                    other => pid_errno(self.pid, &format!("reading the registers of thread {tid}"), other),
                };
                let regs = ptrace::getregs(Pid::from_raw(tid)).map_err(exited)?;
                Ok(ThreadRegisters {
                    tid,
                    name: read_proc(self.pid, &format!("task/{tid}/comm"))?.trim_end().to_string(),
                    regs: GpRegs::from_user(&regs),
                    fpregs: getregset_raw(tid, NT_PRFPREG).map_err(exited)?,
                    xstate: getregset_raw(tid, NT_X86_XSTATE).map_err(exited)?,
                })
            })
            .collect()
    }
}

/// `NT_PRFPREG`: the legacy FXSAVE area (`user_fpregs_struct`, 512 bytes).
pub const NT_PRFPREG: u32 = 2;
/// `NT_X86_XSTATE`: the XSAVE area, as large as the CPU's enabled features need.
pub const NT_X86_XSTATE: u32 = 0x202;

macro_rules! gp_regs {
    ($($name:ident),* $(,)?) => {
        /// x86_64 general-purpose registers in `user_regs_struct` order, which is also the
        /// `pr_reg` array of a core file's NT_PRSTATUS note.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct GpRegs {
            $(pub $name: u64,)*
        }

        impl GpRegs {
            pub const WORDS: usize = 27;

            pub fn to_words(&self) -> [u64; Self::WORDS] {
                [$(self.$name),*]
            }

            pub fn from_words(words: [u64; Self::WORDS]) -> GpRegs {
                let [$($name),*] = words;
                GpRegs { $($name),* }
            }

            fn from_user(regs: &nix::libc::user_regs_struct) -> GpRegs {
                GpRegs { $($name: regs.$name),* }
            }

            /// The registers as PTRACE_SETREGS takes them.
            pub fn to_user(&self) -> nix::libc::user_regs_struct {
                nix::libc::user_regs_struct { $($name: self.$name),* }
            }
        }

        // The field order above is the kernel's: checked against libc's struct at compile time.
        const _: () = {
            let mut index = 0;
            $(
                assert!(std::mem::offset_of!(nix::libc::user_regs_struct, $name) == index * 8);
                index += 1;
            )*
            assert!(index == GpRegs::WORDS);
            assert!(std::mem::size_of::<nix::libc::user_regs_struct>() == GpRegs::WORDS * 8);
        };
    };
}

gp_regs!(
    r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss,
    fs_base, gs_base, ds, es, fs, gs,
);

/// One thread's registers, read while frozen.
#[derive(Clone, Debug)]
pub struct ThreadRegisters {
    pub tid: i32,
    /// /proc/PID/task/TID/comm.
    pub name: String,
    pub regs: GpRegs,
    /// NT_PRFPREG as the kernel returned it; empty if the kernel has no such register set.
    pub fpregs: Vec<u8>,
    /// NT_X86_XSTATE as the kernel returned it; empty without XSAVE.
    pub xstate: Vec<u8>,
}

/// PTRACE_GETREGSET for `note_type`, as raw bytes (the kernel trims the buffer to the set's
/// size). An unsupported set (EINVAL, ENODEV) gives an empty vector.
fn getregset_raw(tid: i32, note_type: u32) -> std::result::Result<Vec<u8>, Errno> {
    // The largest XSAVE area (with AMX tiles) is about 11 KiB.
    let mut buf = vec![0u8; 32 << 10];
    let mut iov = nix::libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: PTRACE_GETREGSET writes at most `iov.iov_len` bytes to `iov.iov_base`, which
    // points at `buf` (alive and not otherwise borrowed for the call), and updates `iov_len`.
    // `tid` is a thread this process has seized and holds in a ptrace-stop.
    let rc = unsafe {
        nix::libc::ptrace(
            nix::libc::PTRACE_GETREGSET,
            tid as nix::libc::pid_t,
            note_type as nix::libc::c_ulong,
            &mut iov as *mut nix::libc::iovec,
        )
    };
    if rc == -1 {
        return match Errno::last() {
            Errno::EINVAL | Errno::ENODEV => Ok(Vec::new()),
            e => Err(e),
        };
    }
    buf.truncate(iov.iov_len.min(buf.len()));
    Ok(buf)
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` (linux/ptrace.h) and its result.
const PTRACE_GET_RSEQ_CONFIGURATION: nix::libc::c_uint = 0x420f;
#[repr(C)]
#[derive(Default)]
struct RseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// A traced, stopped thread's rseq registration; `None` when it has none.
pub fn rseq_config(tid: i32) -> std::result::Result<Option<pb::Rseq>, Errno> {
    let mut config = RseqConfiguration::default();
    // SAFETY: the request writes at most `addr` = size_of::<RseqConfiguration>() bytes to
    // `data`, which points at `config` (alive, exclusively borrowed for the call); `tid` is a
    // thread this process holds in a ptrace-stop.
    let rc = unsafe {
        nix::libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            std::mem::size_of::<RseqConfiguration>(),
            &mut config as *mut RseqConfiguration,
        )
    };
    if rc == -1 {
        return Err(Errno::last());
    }
    Ok((config.rseq_abi_pointer != 0).then_some(pb::Rseq {
        address: config.rseq_abi_pointer,
        size: config.rseq_abi_size,
        signature: config.signature,
    }))
}

/// One mapping's (start, end) and its `VmFlags` codes.
pub type VmFlags = ((u64, u64), Vec<String>);

/// The `VmFlags` of every mapping in /proc/PID/smaps, by (start, end): two-letter codes such
/// as `dc` (MADV_DONTFORK), `wf` (MADV_WIPEONFORK), `ht` (hugetlb). The kernel walks every
/// page table to print smaps (~20 ms per GiB here): not for a frozen process.
pub fn vm_flags(pid: i32) -> Result<Vec<VmFlags>> {
    let text = read_proc(pid, "smaps")?;
    let mut out = Vec::new();
    let mut range = None;
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(r) = range.take() {
                out.push((r, flags.split_whitespace().map(str::to_string).collect()));
            }
        } else if let Some(m) = parse_maps_line(line) {
            range = Some((m.start, m.end));
        }
    }
    Ok(out)
}

/// Writes `bytes` at `address` through /proc/PID/mem, as a debugger does: also into pages the
/// process may not write itself (code).
pub fn write_forced(pid: i32, address: u64, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/mem");
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
            _ => Error::io(&path, e),
        })?;
    mem.write_all_at(bytes, address).map_err(|e| Error::io(&path, e))
}

/// The fields of /proc/PID/stat a core's NT_PRPSINFO and NT_PRSTATUS carry, and the CPU it ran
/// on last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// R, S, D, T, t, Z, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// The kernel's PF_* flags.
    pub flags: u64,
    pub nice: i64,
    /// Clock ticks after boot when the process started: with the pid, it names one process
    /// (a pid can be reused, the pair cannot).
    pub start_time: u64,
    /// The CPU it ran on last (field 39).
    pub processor: Option<usize>,
}

pub fn stat(pid: i32) -> Result<ProcStat> {
    let text = read_proc(pid, "stat")?;
    parse_stat(&text).ok_or_else(|| Error::Process {
        pid,
        what: format!("unparseable /proc/{pid}/stat {text:?}"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The fields follow the parenthesised comm, which may itself contain spaces or ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        flags: fields.get(6)?.parse().ok()?,
        nice: fields.get(16)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        processor: fields.get(36).and_then(|f| f.parse().ok()),
    })
}

/// Real user and group id, from /proc/PID/status.
pub fn ids(pid: i32) -> Result<(u32, u32)> {
    let text = read_proc(pid, "status")?;
    let real = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    match (real("Uid:"), real("Gid:")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(Error::Process {
            pid,
            what: format!("no Uid/Gid in /proc/{pid}/status"),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        }),
    }
}

fn read_proc_bytes(pid: i32, file: &str) -> Result<Vec<u8>> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        std::io::ErrorKind::PermissionDenied => Error::NotPermitted {
            pid,
            what: format!("reading {path}"),
        },
        _ => Error::Process {
            pid,
            what: format!("reading {path}"),
            source: e,
        },
    })
}

/// `MemAvailable` of /proc/meminfo in bytes: how much memory memzinc may use for copies.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The auxiliary vector, raw (pairs of native u64 words ending with AT_NULL): a core's NT_AUXV.
pub fn auxv(pid: i32) -> Result<Vec<u8>> {
    read_proc_bytes(pid, "auxv")
}

/// The raw command line: arguments each ending with a NUL byte.
pub fn cmdline(pid: i32) -> Result<Vec<u8>> {
    read_proc_bytes(pid, "cmdline")
}

/// One open file descriptor: /proc/PID/fd/N and /proc/PID/fdinfo/N.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FdInfo {
    pub fd: i32,
    /// The link's target: a path, or pipe:[N], socket:[N], anon_inode:... .
    pub path: String,
    /// open(2) flags (fdinfo prints them in octal).
    pub flags: u32,
    pub pos: u64,
}

/// Every open file descriptor, by number. One that closes while being listed is skipped.
pub fn fds(pid: i32) -> Result<Vec<FdInfo>> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        std::io::ErrorKind::PermissionDenied => Error::NotPermitted {
            pid,
            what: format!("listing {dir}"),
        },
        _ => Error::io(&dir, e),
    })?;
    let mut fds = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, e))?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let (pos, flags) = parse_fdinfo(&info).ok_or_else(|| Error::Process {
            pid,
            what: format!("unparseable /proc/{pid}/fdinfo/{fd} {info:?}"),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?;
        fds.push(FdInfo {
            fd,
            path: target.to_string_lossy().into_owned(),
            flags,
            pos,
        });
    }
    fds.sort_by_key(|f| f.fd);
    Ok(fds)
}

/// Process `pid`'s resource limits, by resource number, from /proc/PID/limits (its lines are in
/// resource order, RLIMIT_CPU first; reading them needs no capability, unlike prlimit64 on a
/// process of another user).
pub fn rlimits(pid: i32) -> Result<Vec<pb::Rlimit>> {
    let text = read_proc(pid, "limits")?;
    let value = |v: &str| match v {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    };
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(resource, line)| {
            // "%-25s %-20s %-20s %-10s": the name has spaces, the limits do not.
            let mut limits = line.get(26..).unwrap_or("").split_whitespace();
            match (limits.next().and_then(value), limits.next().and_then(value)) {
                (Some(soft), Some(hard)) => Ok(pb::Rlimit {
                    resource: resource as u32,
                    soft,
                    hard,
                }),
                _ => Err(Error::Process {
                    pid,
                    what: format!("unparseable line of /proc/{pid}/limits: {line:?}"),
                    source: std::io::Error::from(std::io::ErrorKind::InvalidData),
                }),
            }
        })
        .collect()
}

/// Sets process `pid`'s (soft, hard) limit of `resource` (prlimit64); returns the old ones.
pub fn prlimit(pid: i32, resource: u32, set: Option<(u64, u64)>) -> Result<(u64, u64)> {
    let new = set.map(|(soft, hard)| nix::libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    });
    let mut old = nix::libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |n| n as *const nix::libc::rlimit64);
    // SAFETY: prlimit64 reads `new` (null or a live rlimit64) and writes `old`, both ours.
    let rc = unsafe { nix::libc::prlimit64(pid, resource as _, new_ptr, &mut old) };
    Errno::result(rc).map_err(|e| pid_errno(pid, &format!("prlimit64 of resource {resource}"), e))?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// A descriptor of ours for the target's `fd` (the same open file: pidfd_getfd).
pub fn pidfd_getfd(pid: i32, fd: i32) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let err = |what: String, e: nix::errno::Errno| Error::Process {
        pid,
        what,
        source: e.into(),
    };
    // SAFETY: plain-integer syscalls; each returns a new fd we own or -1.
    let pidfd = nix::errno::Errno::result(unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) })
        .map_err(|e| err("pidfd_open".into(), e))?;
    // SAFETY: as above; `pidfd` is ours and is closed right after.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: as above.
    let dup =
        nix::errno::Errno::result(unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
            .map_err(|e| err(format!("pidfd_getfd of its fd {fd}"), e))?;
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as i32) })
}

/// (pos, flags) from fdinfo text.
fn parse_fdinfo(text: &str) -> Option<(u64, u32)> {
    let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
    let pos = field("pos:")?.parse().ok()?;
    let flags = u32::from_str_radix(field("flags:")?, 8).ok()?;
    Some((pos, flags))
}

/// Waits for a seized, interrupted thread's interrupt-stop. A signal that reaches it first
/// shows as a signal-delivery stop: the thread is let go to take that signal (its handler runs,
/// as CRIU's seize lets it), and the interrupt still pending stops it right after. Resuming it
/// from that stop without the signal would lose it. The status is decoded here rather than by
/// nix, whose `WaitStatus` has no real-time signals (its waitpid fails with EINVAL on a stop
/// for one).
fn wait_for_stop(pid: i32, tid: i32) -> Result<()> {
    let exited = || Error::TargetExited {
        pid,
        during: "freezing it",
    };
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status to `status`, alive for the call.
        let rc = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if rc == -1 {
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return Err(exited()),
                e => return Err(pid_errno(pid, "waitpid", e)),
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Err(exited());
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        // A ptrace event (the interrupt-stop, or a group-stop) carries it in the high bits.
        if status >> 16 != 0 {
            return Ok(());
        }
        let signal = libc::WSTOPSIG(status);
        // SAFETY: PTRACE_CONT of a tracee in a signal-delivery stop, delivering that signal.
        let rc = unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0usize, signal as usize) };
        match Errno::result(rc) {
            Ok(_) => continue,
            Err(Errno::ESRCH) => return Err(exited()),
            Err(e) => return Err(pid_errno(pid, "PTRACE_CONT (a signal during the freeze)", e)),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        tracing::debug!("thawing pid {} after {:?}", self.pid, self.since.elapsed());
        for &tid in &self.tids {
            // Detaching ends the interrupt-stop. A thread that already exited returns ESRCH.
            let _ = ptrace::detach(Pid::from_raw(tid), None);
        }
    }
}

/// Reads `buf.len()` bytes at `address`. Returns how many bytes were read (short on a fault).
pub fn read_at(pid: i32, address: u64, buf: &mut [u8]) -> Result<usize> {
    let remote = [RemoteIoVec {
        base: address as usize,
        len: buf.len(),
    }];
    match process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) => Ok(n),
        Err(Errno::EFAULT) | Err(Errno::EIO) => Ok(0),
        Err(e) => Err(pid_errno(pid, "process_vm_readv", e)),
    }
}

/// Reads a range page by page into `out` (which has `len` bytes). Returns, per page, whether it
/// could be read. Large batches first; only a batch that comes back short is retried per page.
pub fn read_pages(pid: i32, start: u64, out: &mut [u8]) -> Result<Vec<bool>> {
    const BATCH: usize = 8 << 20;
    let pages = out.len() / PAGE_SIZE as usize;
    let mut readable = vec![true; pages];
    // Opened only if process_vm_readv comes back short: /proc/PID/mem reads what a debugger
    // can (it does not stop at a VMA that refuses a remote read).
    let mut mem: Option<std::fs::File> = None;
    for (chunk_index, chunk) in out.chunks_mut(BATCH).enumerate() {
        let chunk_start = start + (chunk_index * BATCH) as u64;
        let n = read_at(pid, chunk_start, chunk)?;
        if n == chunk.len() {
            continue;
        }
        let first_page = chunk_index * BATCH / PAGE_SIZE as usize;
        for (i, page) in chunk.chunks_mut(PAGE_SIZE as usize).enumerate() {
            let address = chunk_start + i as u64 * PAGE_SIZE;
            if read_at(pid, address, page)? == page.len() {
                continue;
            }
            if mem.is_none() {
                mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok();
            }
            let via_mem = mem.as_ref().is_some_and(|f| {
                use std::os::unix::fs::FileExt;
                f.read_exact_at(page, address).is_ok()
            });
            if !via_mem {
                page.fill(0);
                readable[first_page + i] = false;
            }
        }
    }
    Ok(readable)
}

/// [`read_pages`] through `mem`, process `pid`'s /proc/PID/mem: the way to read a forked copy
/// (`super::ForkedCopy`). process_vm_readv pins the pages it reads, and pinning an anonymous
/// page a fork left shared makes the kernel unshare it — copy it for the reader's side:
/// reading a 1 GiB copy that way ran at 0.6 GB/s and left the copy holding 1 GiB of its own;
/// a /proc/PID/mem read only looks (3.4 GB/s, nothing duplicated; measured here).
pub fn read_pages_mem(pid: i32, mem: &std::fs::File, start: u64, out: &mut [u8]) -> Result<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    let pages = out.len() / PAGE_SIZE as usize;
    if mem.read_exact_at(out, start).is_ok() {
        return Ok(vec![true; pages]);
    }
    check_target(pid)?;
    Ok(out
        .chunks_mut(PAGE_SIZE as usize)
        .enumerate()
        .map(|(i, page)| {
            let ok = mem.read_exact_at(page, start + i as u64 * PAGE_SIZE).is_ok();
            if !ok {
                page.fill(0);
            }
            ok
        })
        .collect())
}

/// The kernel's limit on iovecs per process_vm_readv/writev call (UIO_MAXIOV); more fail with
/// EINVAL, so longer lists go in batches of this many.
pub const IOV_MAX: usize = 1024;

/// The remote side of a process_vm_readv of `(address, len)` ranges.
fn remote_iovecs(ranges: &[(u64, usize)]) -> Vec<RemoteIoVec> {
    ranges
        .iter()
        .map(|&(base, len)| RemoteIoVec {
            base: base as usize,
            len,
        })
        .collect()
}

/// Reads several ranges (one process_vm_readv per [`IOV_MAX`] ranges); every range must be
/// read in full.
pub fn read_many(pid: i32, ranges: &[(u64, usize)]) -> Result<Vec<Vec<u8>>> {
    let mut bufs: Vec<Vec<u8>> = ranges.iter().map(|&(_, len)| vec![0u8; len]).collect();
    for (ranges, bufs) in ranges.chunks(IOV_MAX).zip(bufs.chunks_mut(IOV_MAX)) {
        let remote = remote_iovecs(ranges);
        let total: usize = ranges.iter().map(|r| r.1).sum();
        let mut local: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        match process_vm_readv(Pid::from_raw(pid), &mut local, &remote) {
            Ok(n) if n == total => {}
            Ok(n) => {
                return Err(Error::Process {
                    pid,
                    what: format!("short read: {n} of {total} bytes"),
                    source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                })
            }
            Err(e) => return Err(pid_errno(pid, "process_vm_readv", e)),
        }
    }
    Ok(bufs)
}

/// Reads scattered whole-page ranges `(address, len)` into `out`, back to back (`out` holds
/// their lengths' sum): one process_vm_readv per [`IOV_MAX`] ranges; a batch that comes back
/// short is read again range by range with [`read_pages`]. Returns, per page of `out`, whether
/// it could be read (an unreadable page is zeroes).
pub fn read_scattered(pid: i32, ranges: &[(u64, usize)], out: &mut [u8]) -> Result<Vec<bool>> {
    let mut readable = Vec::with_capacity(out.len() / PAGE_SIZE as usize);
    let mut rest = out;
    for batch in ranges.chunks(IOV_MAX) {
        let total: usize = batch.iter().map(|r| r.1).sum();
        let (mine, after) = std::mem::take(&mut rest).split_at_mut(total);
        rest = after;
        let remote = remote_iovecs(batch);
        let n = match process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(mine)], &remote) {
            Ok(n) => n,
            Err(Errno::EFAULT) | Err(Errno::EIO) => 0,
            Err(e) => return Err(pid_errno(pid, "process_vm_readv", e)),
        };
        if n == total {
            readable.resize(readable.len() + total / PAGE_SIZE as usize, true);
            continue;
        }
        let mut at = 0;
        for &(address, len) in batch {
            readable.extend(read_pages(pid, address, &mut mine[at..at + len])?);
            at += len;
        }
    }
    Ok(readable)
}

/// Writes several ranges: ONE process_vm_writev for up to [`IOV_MAX`] ranges (one kernel copy:
/// a caller that dies cannot leave it half done), one per batch of that many beyond. Returns
/// the bytes written, which is short only on a fault (later batches are then not tried).
pub fn write_many(pid: i32, writes: &[(u64, &[u8])]) -> Result<usize> {
    let mut written = 0;
    for batch in writes.chunks(IOV_MAX) {
        let remote: Vec<RemoteIoVec> = batch
            .iter()
            .map(|&(base, bytes)| RemoteIoVec {
                base: base as usize,
                len: bytes.len(),
            })
            .collect();
        let local: Vec<IoSlice<'_>> = batch.iter().map(|&(_, bytes)| IoSlice::new(bytes)).collect();
        let total: usize = batch.iter().map(|(_, b)| b.len()).sum();
        match process_vm_writev(Pid::from_raw(pid), &local, &remote) {
            Ok(n) => {
                written += n;
                if n < total {
                    break;
                }
            }
            Err(Errno::EFAULT) => break,
            Err(e) => return Err(pid_errno(pid, "process_vm_writev", e)),
        }
    }
    Ok(written)
}

/// Writes `bytes` at `address` with process_vm_writev (which honours page protections).
pub fn write_at(pid: i32, address: u64, bytes: &[u8]) -> Result<()> {
    let remote = [RemoteIoVec {
        base: address as usize,
        len: bytes.len(),
    }];
    match process_vm_writev(Pid::from_raw(pid), &[IoSlice::new(bytes)], &remote) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => Err(Error::Process {
            pid,
            what: format!("short write at {address:#x}: {n} of {} bytes", bytes.len()),
            source: std::io::Error::from(std::io::ErrorKind::WriteZero),
        }),
        Err(e) => Err(pid_errno(pid, &format!("process_vm_writev at {address:#x}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimits_read_from_proc_match_getrlimit() {
        use nix::sys::resource::{getrlimit, Resource};
        let own = rlimits(std::process::id() as i32).unwrap();
        assert_eq!(own.len(), 16, "RLIMIT_CPU to RLIMIT_RTTIME");
        for (resource, number) in [
            (Resource::RLIMIT_NOFILE, 7),
            (Resource::RLIMIT_STACK, 3),
            (Resource::RLIMIT_CPU, 0),
        ] {
            let (soft, hard) = getrlimit(resource).unwrap();
            assert_eq!((own[number].soft, own[number].hard), (soft, hard), "{resource:?}");
        }
    }

    #[test]
    fn parses_maps_lines() {
        let e =
            parse_maps_line("7f0000001000-7f0000003000 rw-p 00002000 fd:01 1234                       /usr/lib/x.so")
                .unwrap();
        assert_eq!(
            (e.start, e.end, e.offset, e.inode),
            (0x7f0000001000, 0x7f0000003000, 0x2000, 1234)
        );
        assert_eq!(e.path, "/usr/lib/x.so");
        assert!(e.readable() && e.writable() && !e.executable() && e.private());
        let anon = parse_maps_line("7ffd1000-7ffd2000 r-xp 00000000 00:00 0").unwrap();
        assert_eq!(anon.path, "");
        assert!(parse_maps_line("garbage").is_none());
    }

    #[test]
    fn parses_stat_and_fdinfo() {
        let stat = "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 -5 1 0 99 1 1";
        let s = parse_stat(stat).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgrp, s.session, s.flags, s.nice, s.start_time),
            ('S', 1, 4242, 4242, 4194560, -5, 99)
        );
        assert!(parse_stat("garbage").is_none());
        assert_eq!(s.processor, None, "a line too short to have it");
        let own = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(own.processor.is_some_and(|cpu| cpu < 4096), "{own:?}");
        assert_eq!(
            parse_fdinfo("pos:\t12\nflags:\t02100002\nmnt_id:\t25\nino:\t7\n"),
            Some((12, 0o2100002))
        );
        assert_eq!(parse_fdinfo("flags: 02\n"), None);
    }

    #[test]
    fn reads_own_resources() {
        let me = std::process::id() as i32;
        let fds = fds(me).unwrap();
        assert!(fds.iter().any(|f| f.fd == 0), "{fds:?}");
        let auxv = auxv(me).unwrap();
        assert!(auxv.len() >= 16 && auxv.len().is_multiple_of(16));
        assert!(cmdline(me).unwrap().ends_with(b"\0"));
        assert_eq!(stat(me).unwrap().ppid, nix::unistd::getppid().as_raw());
        // /proc/PID belongs to the process's (here also real) user.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(ids(me).unwrap().0, std::fs::metadata("/proc/self").unwrap().uid());
    }

    #[test]
    fn reads_own_memory_and_reports_unknown_pid() {
        let data = vec![0xabu8; 3 * PAGE_SIZE as usize];
        let mut out = vec![0u8; data.len()];
        let me = std::process::id() as i32;
        let n = read_at(me, data.as_ptr() as u64, &mut out).unwrap();
        assert_eq!(n, data.len());
        assert_eq!(out, data);
        assert!(matches!(check_target(i32::MAX), Err(Error::NoSuchProcess { .. })));
    }
}
