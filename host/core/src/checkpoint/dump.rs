//! `memzinc checkpoint`: a snapshot core (the one format, written by [`snapshot`]) plus what a
//! restore needs beyond memory, registers and fds — the mm fields PR_SET_MM_MAP sets, every
//! thread's rseq registration, blocked and pending signals, credentials and capabilities, the
//! ignored/caught signal sets, resource limits, POSIX timers, the kernel objects behind eventfd,
//! timerfd, signalfd, pipe, epoll and socket descriptors (`fds`, `sockets`) — all taken under
//! the same freeze. What a restore could not make again is refused here, before anything is
//! written, and the process resumed. With `--kill` the process is killed while still frozen, so nothing runs between the
//! image and the kill.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

use super::sockets::{NetLock, Repairing};
use crate::base::pb::snapshot as pb;
use crate::base::{Error, Result};
use crate::describe::{self, Pause, TakeReport};
use crate::introspect::{self, Frozen, Injector};

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

/// Checkpoints `pid` into `out` (atomically), then resumes or kills it. A process left running
/// is, unless `pause` says to stop the world, resumed as soon as its state is taken: its pages
/// are read while it runs (`describe::Pause::CopyOnWrite`), through a write-protected view
/// laid before the freeze, or from a forked copy — also when the view lost a page: then the
/// whole checkpoint is taken again.
pub fn checkpoint(pid: i32, out: &Path, after: AfterCheckpoint, pause: Pause) -> Result<CheckpointReport> {
    let mut viewed = false;
    match checkpoint_once(pid, out, after, pause, true, &mut viewed) {
        Err(Error::CopyOnWrite { why, .. }) if viewed => {
            tracing::warn!("pid {pid}: the write-protected view lost the freeze instant ({why}); checkpointing it again with a fork");
            checkpoint_once(pid, out, after, pause, false, &mut viewed)
        }
        other => other,
    }
}

/// [`checkpoint`] once; `protect`: try the write-protected view. `viewed` says whether one was
/// used.
fn checkpoint_once(
    pid: i32,
    out: &Path,
    after: AfterCheckpoint,
    pause: Pause,
    protect: bool,
    viewed: &mut bool,
) -> Result<CheckpointReport> {
    let started = std::time::Instant::now();
    let cow = after == AfterCheckpoint::LeaveRunning && pause == Pause::CopyOnWrite;
    let flags = if cow { Some(introspect::vm_flags(pid)?) } else { None };
    let view = match &flags {
        Some(flags) if protect => describe::write_protected_view(pid, flags),
        _ => None,
    };
    *viewed = view.is_some();
    let frozen = Frozen::freeze(pid)?;
    let tree = Tree::of(&[pid])?;
    let (state, repairing, lock) = collect(&frozen, after == AfterCheckpoint::Kill, &tree).map_err(|e| match e {
        Error::NoSuchProcess { .. } | Error::Zombie { .. } => Error::TargetExited {
            pid,
            during: "checkpointing it",
        },
        e => e,
    })?;
    if let Some(flags) = flags {
        // Repair mode left before the process resumes.
        drop(repairing);
        let report = describe::take_frozen_cow(frozen, flags, view, out, None, Some(state))?;
        return Ok(CheckpointReport {
            stopped_us: (report.frozen_ms * 1e3) as u128,
            snapshot: report,
            killed: false,
        });
    }
    let report = describe::take_frozen(&frozen, out, None, Some(state))?;
    let killed = after == AfterCheckpoint::Kill;
    if killed {
        kill_frozen(&frozen)?;
        // Closed in repair mode: the peers of its connections hear nothing, and a restore
        // takes the connections over; until then the network lock keeps their packets out.
        for r in repairing {
            r.close_silently();
        }
        if let Some(lock) = lock {
            lock.keep();
        }
    } else {
        drop(repairing);
    }
    let stopped_us = started.elapsed().as_micros();
    // A process left running: the lock is lifted once it runs (repair mode left before).
    drop(frozen);
    Ok(CheckpointReport {
        snapshot: report,
        killed,
        stopped_us,
    })
}

/// SIGKILLs a frozen process and reaps its ptrace stops, so that when this returns no thread
/// runs again (its parent still reaps the zombie, which holds the pid until then).
pub(super) fn kill_frozen(frozen: &Frozen) -> Result<()> {
    let pid = frozen.pid();
    kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| introspect::pid_errno(pid, "SIGKILL", e))?;
    // The main thread last: the kernel reports a group leader's exit only after the others'.
    for tid in frozen.tids().into_iter().rev() {
        loop {
            match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(introspect::pid_errno(pid, "waitpid", e)),
            }
        }
    }
    Ok(())
}

/// The processes checkpointed together (one, or a tree): what is shared among them is made
/// once by the restore; what is shared with a process outside cannot be.
pub(super) struct Tree {
    pub pids: BTreeSet<i32>,
    /// Pipes (by inode) held by more than one of the processes.
    pub shared_pipes: BTreeSet<u64>,
    /// Every socket (by inode) any of the processes holds.
    pub sockets: BTreeSet<u64>,
}

impl Tree {
    pub fn of(pids: &[i32]) -> Result<Tree> {
        let mut holders: BTreeMap<u64, BTreeSet<i32>> = BTreeMap::new();
        let mut sockets = BTreeSet::new();
        let inode = |path: &str, kind: &str| -> Option<u64> {
            path.strip_prefix(kind)?
                .strip_prefix(":[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        };
        for &pid in pids {
            for f in introspect::fds(pid)? {
                if let Some(i) = inode(&f.path, "pipe") {
                    holders.entry(i).or_default().insert(pid);
                }
                sockets.extend(inode(&f.path, "socket"));
            }
        }
        Ok(Tree {
            sockets,
            pids: pids.iter().copied().collect(),
            shared_pipes: holders
                .into_iter()
                .filter(|(_, p)| p.len() > 1)
                .map(|(i, _)| i)
                .collect(),
        })
    }
}

/// Every process (but `except`) that maps the shared memory `dev:inode`.
fn sharers(dev: &str, inode: u64, except: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != except)
        .filter(|&p| {
            introspect::read_maps(p)
                .is_ok_and(|maps| maps.iter().any(|m| !m.private() && m.inode == inode && m.dev == dev))
        })
        .collect()
}

/// The process's state beyond memory, the connections held in repair mode meanwhile, and the
/// network lock over them.
pub(super) fn collect(
    frozen: &Frozen,
    killed: bool,
    tree: &Tree,
) -> Result<(pb::Checkpoint, Vec<Repairing>, Option<NetLock>)> {
    let pid = frozen.pid();
    // Shared anonymous memory is restored as one memory for the checkpointed processes that
    // map it; one that a process outside maps too would come back as a copy: refused before
    // anything else is asked.
    for m in introspect::read_maps(pid)?
        .iter()
        .filter(|m| describe::shared_anonymous(m))
    {
        let outside: Vec<i32> = sharers(&m.dev, m.inode, pid)
            .into_iter()
            .filter(|p| !tree.pids.contains(p))
            .collect();
        if let Some(other) = outside.first() {
            return Err(Error::NotCheckpointable {
                pid,
                why: format!(
                    "shared anonymous memory at {:#x}-{:#x} {} is shared with pid {other}, which is not checkpointed with it (checkpoint the tree that holds both: --tree)",
                    m.start,
                    m.end,
                    if m.path.is_empty() { "(MAP_SHARED|MAP_ANONYMOUS)" } else { m.path.as_str() }
                ),
            });
        }
    }
    let status = introspect::read_proc(pid, "status")?;
    let inject = Injector::in_frozen(frozen, "checkpointing it")?;
    let sig_caught = status_mask(&status, "SigCgt:");
    let threads = frozen
        .tids()
        .into_iter()
        .map(|tid| {
            let status = introspect::read_proc(pid, &format!("task/{tid}/status"))?;
            let tid_address = u64::from_le_bytes(
                inject
                    .call_out(tid, "PR_GET_TID_ADDRESS", libc::SYS_prctl, |out| {
                        vec![libc::PR_GET_TID_ADDRESS as u64, out]
                    })?
                    .1[..8]
                    .try_into()
                    .unwrap_or_default(),
            );
            let (_, stack) = inject.call_out(tid, "sigaltstack", libc::SYS_sigaltstack, |out| vec![0, out])?;
            let word = |i: usize| u64::from_le_bytes(stack[i..i + 8].try_into().unwrap_or_default());
            Ok(pb::ThreadCheckpoint {
                tid,
                sig_blocked: status_mask(&status, "SigBlk:"),
                rseq: introspect::rseq_config(tid).map_err(|e| {
                    introspect::pid_errno(pid, &format!("PTRACE_GET_RSEQ_CONFIGURATION of thread {tid}"), e)
                })?,
                tid_address,
                altstack_sp: word(0),
                altstack_flags: word(8) as u32 as i32,
                altstack_size: word(16),
                uids: id_line(&status, "Uid:"),
                gids: id_line(&status, "Gid:"),
                groups: id_line(&status, "Groups:"),
                capabilities: Some(pb::Capabilities {
                    inheritable: status_mask(&status, "CapInh:"),
                    permitted: status_mask(&status, "CapPrm:"),
                    effective: status_mask(&status, "CapEff:"),
                    bounding: status_mask(&status, "CapBnd:"),
                    ambient: status_mask(&status, "CapAmb:"),
                }),
                pending: pending_signals(tid, false)
                    .map_err(|e| introspect::pid_errno(pid, &format!("PTRACE_PEEKSIGINFO of thread {tid}"), e))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Handlers are process-wide: asked in the main thread.
    let mut handlers = Vec::new();
    for signal in (1..=64u32).filter(|s| sig_caught & (1 << (s - 1)) != 0) {
        // rt_sigaction(signal, NULL, out, sizeof(sigset_t))
        let (_, act) = inject.call_out(pid, "rt_sigaction", libc::SYS_rt_sigaction, |out| {
            vec![signal as u64, 0, out, 8]
        })?;
        let word = |i: usize| u64::from_le_bytes(act[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        handlers.push(pb::SignalHandler {
            signal,
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: word(3),
        });
    }
    let objects = super::fds::collect(pid, &introspect::fds(pid)?, &tree.shared_pipes, &tree.sockets)?;
    let rlimits = introspect::rlimits(pid)?;
    let mut posix_timers = posix_timers(pid)?;
    for t in &mut posix_timers {
        let (_, spec) = inject.call_out(pid, "timer_gettime", libc::SYS_timer_gettime, |out| {
            vec![t.id as u64, out]
        })?;
        let word = |i: usize| u64::from_le_bytes(spec[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        (t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec) = (word(0), word(1), word(2), word(3));
    }
    let stat = introspect::stat(pid)?;
    Ok((
        pb::Checkpoint {
            ppid: stat.ppid,
            pgid: stat.pgrp,
            sid: stat.session,
            posix_timers,
            rlimits,
            dumpable: inject.call_in(pid, "PR_GET_DUMPABLE", libc::SYS_prctl, &[libc::PR_GET_DUMPABLE as u64])? == 1,
            shared_pending: pending_signals(pid, true)
                .map_err(|e| introspect::pid_errno(pid, "PTRACE_PEEKSIGINFO (shared)", e))?,
            eventfds: objects.eventfds,
            timerfds: objects.timerfds,
            signalfds: objects.signalfds,
            pipes: objects.pipes,
            external_pipes: objects.external_pipes,
            sockets: objects.sockets,
            network_lock: match (&objects.lock, killed) {
                (Some(lock), true) => lock.table().to_string(),
                _ => String::new(),
            },
            epolls: objects.epolls,
            mm: Some(mm_fields(pid)?),
            threads,
            sig_ignored: status_mask(&status, "SigIgn:"),
            sig_caught,
            handlers,
            killed,
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        objects.repairing,
        objects.lock,
    ))
}

/// The process's POSIX timers as /proc/PID/timers lists them (times not yet filled in):
/// `ID: 5`, `signal: 36/0000000000000007` (signal number / sigval in hex), `notify:
/// signal/pid.N` (`none`, `thread`; `tid.N` for SIGEV_THREAD_ID), `ClockID: 1`.
fn posix_timers(pid: i32) -> Result<Vec<pb::PosixTimer>> {
    // A kernel without CONFIG_CHECKPOINT_RESTORE has no such file, nor the prctl that restores
    // timer ids: there is nothing to keep or to restore them with.
    if !std::path::Path::new("/proc/self/timers").exists() {
        tracing::warn!("this kernel has no /proc/PID/timers: POSIX timers are not kept");
        return Ok(Vec::new());
    }
    let text = introspect::read_proc(pid, "timers")?;
    let bad = |what: &str| Error::Process {
        pid,
        what: format!("unparseable /proc/{pid}/timers ({what}): {text:?}"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    };
    let mut timers: Vec<pb::PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key == "ID" {
            timers.push(pb::PosixTimer {
                id: value.parse().map_err(|_| bad("ID"))?,
                ..Default::default()
            });
            continue;
        }
        let Some(t) = timers.last_mut() else {
            return Err(bad("a field before the first ID"));
        };
        match key {
            "signal" => {
                let (signo, sigval) = value.split_once('/').ok_or_else(|| bad("signal"))?;
                t.signo = signo.parse().map_err(|_| bad("signal"))?;
                t.sigval = u64::from_str_radix(sigval, 16).map_err(|_| bad("signal"))?;
            }
            "notify" => {
                let (kind, target) = value.split_once('/').ok_or_else(|| bad("notify"))?;
                let kind = match kind {
                    "signal" => libc::SIGEV_SIGNAL,
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => return Err(bad("notify")),
                };
                let (whom, id) = target.split_once('.').ok_or_else(|| bad("notify"))?;
                t.notify = kind | if whom == "tid" { libc::SIGEV_THREAD_ID } else { 0 };
                t.notify_tid = if whom == "tid" {
                    id.parse().map_err(|_| bad("notify"))?
                } else {
                    0
                };
            }
            "ClockID" => t.clockid = value.parse().map_err(|_| bad("ClockID"))?,
            _ => {}
        }
    }
    Ok(timers)
}

/// The numbers of an id line of /proc/.../status (`Uid:`, `Gid:`, `Groups:`); empty when absent.
fn id_line(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// A hex signal mask line of /proc/.../status; 0 when absent.
pub(super) fn status_mask(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// The signals pending for the traced, stopped thread `tid` (or, with `shared`, for its whole
/// process), each its 128-byte siginfo, in queue order: a restore queues them again.
fn pending_signals(tid: i32, shared: bool) -> std::result::Result<Vec<Vec<u8>>, Errno> {
    const SIGINFO: usize = 128;
    const BATCH: usize = 32;
    let mut pending = Vec::new();
    loop {
        // struct ptrace_peeksiginfo_args: off (u64), flags (u32), nr (s32).
        let mut args = [0u8; 16];
        args[..8].copy_from_slice(&(pending.len() as u64).to_le_bytes());
        args[8..12].copy_from_slice(&u32::from(shared).to_le_bytes());
        args[12..].copy_from_slice(&(BATCH as i32).to_le_bytes());
        let mut infos = vec![0u8; SIGINFO * BATCH];
        // SAFETY: the request reads the 16-byte argument block at `addr` and writes at most
        // `nr` siginfos (BATCH * 128 bytes) to `data`, which has that room; `tid` is held in a
        // ptrace-stop by this process.
        let n = unsafe {
            nix::libc::ptrace(
                nix::libc::PTRACE_PEEKSIGINFO,
                tid,
                args.as_mut_ptr(),
                infos.as_mut_ptr(),
            )
        };
        let n = Errno::result(n)? as usize;
        pending.extend(infos[..n * SIGINFO].chunks(SIGINFO).map(<[u8]>::to_vec));
        if n < BATCH {
            return Ok(pending);
        }
    }
}

/// /proc/PID/stat's mm fields; brk is the end of [heap] (the stat file does not carry it).
fn mm_fields(pid: i32) -> Result<pb::MmFields> {
    let text = introspect::read_proc(pid, "stat")?;
    let bad = || Error::Process {
        pid,
        what: format!("unparseable /proc/{pid}/stat {text:?}"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    };
    let fields: Vec<&str> = text.rsplit_once(')').ok_or_else(bad)?.1.split_whitespace().collect();
    // Field n of proc_pid_stat(5) is fields[n - 3]: the list starts after pid and comm.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).ok_or_else(bad);
    let start_brk = field(47)?;
    let brk = introspect::read_maps(pid)?
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
