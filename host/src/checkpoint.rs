//! `memzinc checkpoint`: a snapshot core (the one format, written by [`snapshot`]) plus what a
//! restore needs beyond memory, registers and fds — the mm fields PR_SET_MM_MAP sets, every
//! thread's rseq registration and blocked signals, the ignored/caught signal sets — all taken
//! under the same freeze. With `--kill` the process is killed while still frozen, so nothing
//! runs between the image and the kill.

use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::process::{self, Frozen};
use crate::snapshot::{self, pb, TakeReport};

/// What happens to the process once its checkpoint is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterCheckpoint {
    LeaveRunning,
    Kill,
}

#[derive(Debug, Serialize)]
pub struct CheckpointReport {
    #[serde(flatten)]
    pub snapshot: TakeReport,
    pub killed: bool,
    /// How long the process was held stopped, microseconds.
    pub stopped_us: u128,
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

/// Checkpoints `pid` into `out` (atomically), then resumes or kills it.
pub fn checkpoint(pid: i32, out: &Path, after: AfterCheckpoint) -> Result<CheckpointReport> {
    let started = std::time::Instant::now();
    let frozen = Frozen::freeze(pid)?;
    let state = collect(&frozen, after == AfterCheckpoint::Kill).map_err(|e| match e {
        Error::NoSuchProcess { .. } | Error::Zombie { .. } => Error::TargetExited {
            pid,
            during: "checkpointing it",
        },
        e => e,
    })?;
    let report = snapshot::take_frozen(&frozen, out, None, Some(state))?;
    let killed = after == AfterCheckpoint::Kill;
    if killed {
        kill_frozen(&frozen)?;
    }
    let stopped_us = started.elapsed().as_micros();
    drop(frozen);
    Ok(CheckpointReport {
        snapshot: report,
        killed,
        stopped_us,
    })
}

/// SIGKILLs a frozen process and reaps its ptrace stops, so that when this returns no thread
/// runs again (its parent still reaps the zombie, which holds the pid until then).
fn kill_frozen(frozen: &Frozen) -> Result<()> {
    let pid = frozen.pid();
    kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| process::pid_errno(pid, "SIGKILL", e))?;
    for tid in frozen.tids() {
        loop {
            match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(process::pid_errno(pid, "waitpid", e)),
            }
        }
    }
    Ok(())
}

fn collect(frozen: &Frozen, killed: bool) -> Result<pb::Checkpoint> {
    let pid = frozen.pid();
    let status = process::read_proc(pid, "status")?;
    let threads = frozen
        .tids()
        .into_iter()
        .map(|tid| {
            let status = process::read_proc(pid, &format!("task/{tid}/status"))?;
            Ok(pb::ThreadCheckpoint {
                tid,
                sig_blocked: status_mask(&status, "SigBlk:"),
                rseq: rseq_config(tid).map_err(|e| {
                    process::pid_errno(pid, &format!("PTRACE_GET_RSEQ_CONFIGURATION of thread {tid}"), e)
                })?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(pb::Checkpoint {
        mm: Some(mm_fields(pid)?),
        threads,
        sig_ignored: status_mask(&status, "SigIgn:"),
        sig_caught: status_mask(&status, "SigCgt:"),
        killed,
        cwd: std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

/// A hex signal mask line of /proc/.../status; 0 when absent.
fn status_mask(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
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

/// /proc/PID/stat's mm fields; brk is the end of [heap] (the stat file does not carry it).
fn mm_fields(pid: i32) -> Result<pb::MmFields> {
    let text = process::read_proc(pid, "stat")?;
    let bad = || Error::Process {
        pid,
        what: format!("unparseable /proc/{pid}/stat {text:?}"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    };
    let fields: Vec<&str> = text.rsplit_once(')').ok_or_else(bad)?.1.split_whitespace().collect();
    // Field n of proc_pid_stat(5) is fields[n - 3]: the list starts after pid and comm.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).ok_or_else(bad);
    let start_brk = field(47)?;
    let brk = process::read_maps(pid)?
        .iter()
        .find(|m| m.path == "[heap]")
        .map_or(start_brk, |m| m.end);
    Ok(pb::MmFields {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk,
        brk,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
    })
}
