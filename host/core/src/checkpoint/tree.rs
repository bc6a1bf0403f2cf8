//! `checkpoint --tree` and the restore of a process tree: a process and all its descendants
//! frozen together, one core per process in a new directory with `tree.json` naming them, and
//! made again with every PID and parent, process group and session, as CRIU does.
//!
//! - **Freezing.** Descendants are listed (`/proc/PID/task/TID/children`) and frozen until a
//!   listing finds none new: a frozen process forks no more. A tree that keeps growing for 16
//!   rounds is refused. A child that exited and was not waited for (a zombie) is kept with its
//!   wait status, and made again as a zombie of its parent (forked in it, then ended the same
//!   way).
//! - **Shared among the processes.** A pipe several of them hold is taken end by end with its
//!   bytes and made once by the restore, in memzinc, each process taking its ends
//!   (`--inherit-fd`'s route); shared anonymous memory is captured in each core and made once
//!   as a memfd every process maps (`restore::SharedMemory`). What is shared with a process
//!   outside the tree is refused (`dump::collect`).
//! - **Restore.** The root is made as a process restored alone is; each child is forked inside
//!   its parent while both are still empty stubs (clone3 with set_tid, so it is that parent's
//!   child), takes its session and process group, and then every process is rebuilt, leaves
//!   first, each resuming when it is done. A failure kills every stub: nothing half-restored.
//! - **Nothing half-written.** The cores and `tree.json` are written into a temporary directory
//!   that takes its name last.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use memzinc_verifier::plan::PatchPlan;
use nix::errno::Errno;
use nix::libc;
use serde::{Deserialize, Serialize};

use super::dump::{collect, kill_frozen, AfterCheckpoint, Tree};
use super::fds::{InheritFd, Replacement};
use super::restore::{
    fork_stub, free_range, lift_network_lock, preflight, rebuild, replaceable_fds, spawn_stopped, ChildGuard, Session,
    SharedMemory,
};
use crate::base::pb::snapshot as pb;
use crate::base::{Error, Result};
use crate::describe::{self, Snapshot, TakeReport};
use crate::introspect::{self, Frozen, Injector, PAGE_LEN};

/// The file of a checkpointed tree that names its processes; written last.
pub const TREE_FILE: &str = "tree.json";
const TREE_FORMAT: u32 = 1;
/// Rounds of listing and freezing before a tree that keeps changing is refused.
const FREEZE_ROUNDS: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    memzinc_tree: u32,
    root: i32,
    processes: Vec<Member>,
}

/// One process of the tree, parents before children.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// The core's file name in the tree's directory (empty for a zombie).
    pub core: String,
    /// Its snapshot root (hex): a core swapped or changed since is refused.
    pub snapshot_root: String,
    /// A child that had exited and was not waited for yet: its wait status (as waitpid gives
    /// it); the restore makes it again as a zombie of its parent, to be waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zombie: Option<i32>,
}

#[derive(Debug, Serialize)]
pub struct TreeCheckpointReport {
    pub root: i32,
    pub directory: PathBuf,
    pub processes: Vec<Member>,
    pub killed: bool,
    /// How long the tree was held stopped, microseconds.
    pub stopped_us: u128,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct TreeRestoreReport {
    pub root: i32,
    pub pids: Vec<i32>,
    pub bytes: u64,
    pub writes_applied: usize,
    /// The process the `--apply` plan was for (0 without one).
    pub patched_pid: i32,
    #[serde(serialize_with = "crate::base::hex_hash")]
    pub readback_hash: [u8; 32],
    pub elapsed_us: u128,
    pub notices: Vec<String>,
}

/// The children of `pid` (of all its threads).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<i32> = tasks
        .filter_map(|t| {
            let path = t.ok()?.path().join("children");
            std::fs::read_to_string(path).ok()
        })
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `root` and its descendants, parents before children.
fn descendants(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(p) = queue.pop_front() {
        if out.contains(&p) {
            continue;
        }
        out.push(p);
        queue.extend(children(p));
    }
    out
}

/// A zombie of the tree: (pid, its /proc stat line's parent, group, session, wait status).
type Zombie = (i32, introspect::ProcStat, i32);

/// The wait status a zombie's parent will get (`exit_code`, /proc/PID/stat field 52).
fn wait_status(pid: i32) -> Option<i32> {
    let text = introspect::read_proc(pid, "stat").ok()?;
    text.rsplit_once(')')?.1.split_whitespace().nth(49)?.parse().ok()
}

/// Freezes `root` and every descendant, listing again until no new one appears; children that
/// exited and were not waited for (zombies) are kept as they are, with their wait status.
fn freeze_tree(root: i32) -> Result<(Vec<Frozen>, Vec<Zombie>)> {
    let mut frozen: Vec<Frozen> = vec![Frozen::freeze(root)?];
    let mut zombies: Vec<Zombie> = Vec::new();
    for _ in 0..FREEZE_ROUNDS {
        let new: Vec<i32> = descendants(root)
            .into_iter()
            .filter(|p| !frozen.iter().any(|f| f.pid() == *p) && !zombies.iter().any(|z| z.0 == *p))
            .collect();
        if new.is_empty() {
            return Ok((frozen, zombies));
        }
        for p in new {
            match Frozen::freeze(p) {
                Ok(f) => frozen.push(f),
                // Gone between the listing and the freeze: the next listing says so.
                Err(Error::NoSuchProcess { .. } | Error::TargetExited { .. }) => {}
                // Its parent is frozen (or it would be reaped away): it stays a zombie.
                // (Reaped meanwhile if it cannot be read: gone, as above.)
                Err(Error::Zombie { .. }) => {
                    if let (Ok(stat), Some(status)) = (introspect::stat(p), wait_status(p)) {
                        zombies.push((p, stat, status));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(Error::NotCheckpointable {
        pid: root,
        why: format!("its process tree kept changing while it was being frozen (new processes in each of {FREEZE_ROUNDS} rounds)"),
    })
}

/// Checkpoints `root` and its descendants into the new directory `dir` (one core per process
/// and `tree.json`), then resumes or kills them all. Stop-the-world: the tree is held frozen
/// until every core is written.
pub fn checkpoint_tree(root: i32, dir: &Path, after: AfterCheckpoint) -> Result<TreeCheckpointReport> {
    let started = std::time::Instant::now();
    if dir.exists() {
        return Err(Error::Usage(format!(
            "{}: exists; a tree's checkpoint is written into a new directory",
            dir.display()
        )));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (frozen, zombies) = freeze_tree(root)?;
    let pids: Vec<i32> = frozen.iter().map(Frozen::pid).collect();
    let tree = Tree::of(&pids)?;
    let killed = after == AfterCheckpoint::Kill;
    let mut taken = Vec::new();
    for f in &frozen {
        // A descendant caught on its way out (between its last instruction and its zombie) fails
        // the injections; said as the tree changing, in one line.
        taken.push(collect(f, killed, &tree).map_err(|e| match e {
            e @ Error::NotCheckpointable { .. } => e,
            e if f.pid() != root => Error::NotCheckpointable {
                pid: root,
                why: format!("its process {} changed while the tree was frozen ({e})", f.pid()),
            },
            e => e,
        })?);
    }
    let partial = tempfile::Builder::new()
        .prefix(".memzinc-tree-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let mut processes = Vec::new();
    let mut bytes = 0;
    for (f, (state, _, _)) in frozen.iter().zip(&taken) {
        let core = format!("{}.core", f.pid());
        let report: TakeReport = describe::take_frozen(f, &partial.path().join(&core), None, Some(state.clone()))?;
        bytes += report.bytes;
        processes.push(Member {
            pid: f.pid(),
            ppid: state.ppid,
            pgid: state.pgid,
            sid: state.sid,
            core,
            snapshot_root: report.root,
            zombie: None,
        });
    }
    // Zombies after every living process: a parent always comes before its children.
    for (pid, stat, status) in &zombies {
        processes.push(Member {
            pid: *pid,
            ppid: stat.ppid,
            pgid: stat.pgrp,
            sid: stat.session,
            core: String::new(),
            snapshot_root: String::new(),
            zombie: Some(*status),
        });
    }
    let manifest = Manifest {
        memzinc_tree: TREE_FORMAT,
        root,
        processes: processes.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Usage(format!("tree.json: {e}")))?;
    crate::base::write_file_atomically(&partial.path().join(TREE_FILE), &json)?;
    let partial = partial.keep();
    std::fs::rename(&partial, dir).map_err(|e| Error::io(dir, e))?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    if killed {
        // Children first: no parent runs its SIGCHLD handler for them.
        for f in frozen.iter().rev() {
            kill_frozen(f)?;
        }
        for (_, repairing, lock) in taken {
            for r in repairing {
                r.close_silently();
            }
            if let Some(lock) = lock {
                lock.keep();
            }
        }
    } else {
        // Repair mode left, then the tree resumes, then the network locks are lifted.
        let locks: Vec<_> = taken
            .into_iter()
            .map(|(_, repairing, lock)| (drop(repairing), lock))
            .collect();
        drop(frozen);
        drop(locks);
        return Ok(TreeCheckpointReport {
            root,
            directory: dir.to_path_buf(),
            processes,
            killed,
            stopped_us: started.elapsed().as_micros(),
            bytes,
        });
    }
    let stopped_us = started.elapsed().as_micros();
    drop(frozen);
    Ok(TreeCheckpointReport {
        root,
        directory: dir.to_path_buf(),
        processes,
        killed,
        stopped_us,
        bytes,
    })
}

/// Whether `path` is a tree's checkpoint (a directory with `tree.json`).
pub fn is_tree(path: &Path) -> bool {
    path.join(TREE_FILE).is_file()
}

/// One process of the tree, opened.
struct Opened {
    member: Member,
    core: PathBuf,
    snap: Snapshot,
    checkpoint: pb::Checkpoint,
}

/// The living processes of the tree, opened, and its zombies.
fn open_tree(dir: &Path) -> Result<(i32, Vec<Opened>, Vec<Member>)> {
    let path = dir.join(TREE_FILE);
    let corrupt = |why: String| Error::Corrupt {
        path: path.clone(),
        kind: "process tree",
        why,
    };
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if manifest.memzinc_tree != TREE_FORMAT {
        return Err(corrupt(format!(
            "tree format {} (this memzinc reads {TREE_FORMAT})",
            manifest.memzinc_tree
        )));
    }
    let pids: BTreeSet<i32> = manifest.processes.iter().map(|m| m.pid).collect();
    if pids.len() != manifest.processes.len() || manifest.processes.first().map(|m| m.pid) != Some(manifest.root) {
        return Err(corrupt("the root must come first and every pid once".into()));
    }
    let mut opened = Vec::new();
    let mut zombies = Vec::new();
    for (i, m) in manifest.processes.iter().enumerate() {
        let parent = manifest.processes[..i].iter().find(|p| p.pid == m.ppid);
        if i > 0 && !parent.is_some_and(|p| p.zombie.is_none()) {
            return Err(corrupt(format!(
                "pid {}: its parent {} comes after it, is not in the tree, or is a zombie",
                m.pid, m.ppid
            )));
        }
        if m.zombie.is_some() {
            if i == 0 {
                return Err(corrupt("the root is a zombie".into()));
            }
            zombies.push(m.clone());
            continue;
        }
        if !zombies.is_empty() {
            return Err(corrupt(format!("pid {}: a living process after the zombies", m.pid)));
        }
        if m.core.contains('/') {
            return Err(corrupt(format!(
                "pid {}: core {:?} is not a file of the directory",
                m.pid, m.core
            )));
        }
        let core = dir.join(&m.core);
        let snap = Snapshot::open(&core)?;
        snap.require_full("a tree restore")?;
        if hex::encode(snap.root()) != m.snapshot_root || snap.meta.pid != m.pid {
            return Err(corrupt(format!(
                "{} is not the core of pid {} checkpointed with the tree",
                m.core, m.pid
            )));
        }
        let checkpoint = snap
            .meta
            .checkpoint
            .clone()
            .ok_or_else(|| corrupt(format!("{} is a snapshot, not a checkpoint", m.core)))?;
        opened.push(Opened {
            member: m.clone(),
            core,
            snap,
            checkpoint,
        });
    }
    Ok((manifest.root, opened, zombies))
}

/// The processes of the tree checkpointed in `dir`, parents first, every living one's core
/// opened and checked against `tree.json` (what `inspect DIR` shows).
pub fn tree_members(dir: &Path) -> Result<Vec<Member>> {
    let (_, opened, zombies) = open_tree(dir)?;
    Ok(opened.into_iter().map(|o| o.member).chain(zombies).collect())
}

/// Makes the freshly forked stub `pid` end with the wait status `status` (an exit code, or the
/// signal that killed it): it stays a zombie of its parent until the parent waits for it.
fn end_as(pid: i32, helper: u64, status: i32) -> Result<()> {
    use nix::sys::ptrace;
    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let inject = Injector::in_built(pid, helper)?;
    let signal = status & 0x7f;
    let (nr, args) = if signal == 0 {
        (libc::SYS_exit_group, vec![((status >> 8) & 0xff) as u64])
    } else {
        // The signal's default action (the stub has memzinc's handlers), and no core file.
        let dfl = inject.put(256, &[0u8; 32])?;
        inject.call("rt_sigaction", libc::SYS_rt_sigaction, &[signal as u64, dfl, 0, 8])?;
        introspect::prlimit(pid, libc::RLIMIT_CORE, Some((0, 0)))?;
        (libc::SYS_kill, vec![pid as u64, signal as u64])
    };
    let t = nix::unistd::Pid::from_raw(pid);
    let fail = |what: &str, e: String| Error::Restore(format!("zombie {pid}: {what}: {e}"));
    ptrace::setregs(t, inject.regs_for(nr, &args)?).map_err(|e| fail("PTRACE_SETREGS", e.to_string()))?;
    ptrace::cont(t, None).map_err(|e| fail("PTRACE_CONT", e.to_string()))?;
    loop {
        match waitpid(t, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(()),
            // Its own signal, delivered.
            Ok(WaitStatus::Stopped(_, sig)) if sig as i32 == signal => {
                ptrace::cont(t, Some(sig)).map_err(|e| fail("PTRACE_CONT", e.to_string()))?
            }
            Ok(WaitStatus::Stopped(_, Signal::SIGTRAP) | WaitStatus::PtraceEvent(..)) => {
                ptrace::cont(t, None).map_err(|e| fail("PTRACE_CONT", e.to_string()))?
            }
            Err(nix::errno::Errno::EINTR) => {}
            other => return Err(fail("ending", format!("{other:?}"))),
        }
    }
}

/// The pipes of the tree whose both ends are in it, made once in memzinc (refilled with the
/// bytes they held), and for each process what stands at its descriptors of them.
fn tree_pipes(opened: &[Opened]) -> Result<(Vec<OwnedFd>, Vec<Vec<InheritFd>>)> {
    let mut ends: BTreeMap<u64, (bool, bool)> = BTreeMap::new();
    for o in opened {
        for p in &o.checkpoint.external_pipes {
            let e = ends.entry(p.inode).or_default();
            if p.write_end {
                e.1 = true;
            } else {
                e.0 = true;
            }
        }
    }
    let mut made: BTreeMap<u64, (OwnedFd, OwnedFd)> = BTreeMap::new();
    for (&inode, _) in ends.iter().filter(|(_, (r, w))| *r && *w) {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which has room for them.
        Errno::result(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })
            .map_err(|e| Error::Restore(format!("pipe2: {e}")))?;
        // SAFETY: the kernel just gave us these descriptors.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let held = opened
            .iter()
            .flat_map(|o| &o.checkpoint.external_pipes)
            .find(|p| p.inode == inode && !p.write_end);
        if let Some(p) = held {
            if p.capacity > 0 {
                // SAFETY: fcntl on a descriptor we own; no memory is passed.
                Errno::result(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, p.capacity as i32) })
                    .map_err(|e| Error::Restore(format!("pipe:[{inode}]: F_SETPIPE_SZ: {e}")))?;
            }
            let mut file = std::fs::File::from(w.try_clone().map_err(|e| Error::Restore(format!("dup: {e}")))?);
            std::io::Write::write_all(&mut file, &p.data)
                .map_err(|e| Error::Restore(format!("pipe:[{inode}]: refilling it: {e}")))?;
        }
        made.insert(inode, (r, w));
    }
    let inherit = opened
        .iter()
        .map(|o| {
            o.checkpoint
                .external_pipes
                .iter()
                .filter_map(|p| made.get(&p.inode).map(|(r, w)| (p, if p.write_end { w } else { r })))
                .flat_map(|(p, ours)| {
                    p.fds.iter().map(|&fd| InheritFd {
                        fd,
                        with: Replacement::Tree(ours.as_raw_fd()),
                    })
                })
                .collect()
        })
        .collect();
    Ok((made.into_values().flat_map(|(r, w)| [r, w]).collect(), inherit))
}

/// The unix sockets of the tree connected to each other across two of its processes, made
/// again as socketpairs in memzinc (the bytes each end had waiting sent by the other), and for
/// each process what stands at its descriptors of them.
fn tree_socketpairs(opened: &[Opened]) -> Result<(Vec<OwnedFd>, Vec<Vec<InheritFd>>)> {
    let mut made: BTreeMap<u64, OwnedFd> = BTreeMap::new();
    let outside = |s: &&pb::Socket| s.family == libc::AF_UNIX && s.unix_peer == pb::UnixPeer::Outside as i32;
    let all: Vec<&pb::Socket> = opened
        .iter()
        .flat_map(|o| o.checkpoint.sockets.iter().filter(outside))
        .collect();
    for s in &all {
        if made.contains_key(&s.inode) {
            continue;
        }
        let Some(peer) = all.iter().find(|p| p.inode == s.peer_inode && p.peer_inode == s.inode) else {
            continue;
        };
        let mut ends = [0i32; 2];
        // SAFETY: socketpair writes two descriptors into `ends`.
        Errno::result(unsafe { libc::socketpair(libc::AF_UNIX, s.r#type | libc::SOCK_CLOEXEC, 0, ends.as_mut_ptr()) })
            .map_err(|e| Error::Restore(format!("socket:[{}]: socketpair: {e}", s.inode)))?;
        // SAFETY: the kernel just gave us these descriptors.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        // The bytes each end had waiting were sent by the other.
        for (from, queued, of) in [(&b, &s.queued, *s), (&a, &peer.queued, *peer)] {
            let mut file = std::fs::File::from(from.try_clone().map_err(|e| Error::Restore(format!("dup: {e}")))?);
            std::io::Write::write_all(&mut file, queued)
                .map_err(|e| Error::Restore(format!("socket:[{}]: refilling its queue: {e}", of.inode)))?;
        }
        made.insert(s.inode, a);
        made.insert(peer.inode, b);
    }
    let inherit = opened
        .iter()
        .map(|o| {
            o.checkpoint
                .sockets
                .iter()
                .filter_map(|s| made.get(&s.inode).map(|ours| (s, ours)))
                .flat_map(|(s, ours)| {
                    s.fds.iter().map(|&fd| InheritFd {
                        fd,
                        with: Replacement::Tree(ours.as_raw_fd()),
                    })
                })
                .collect()
        })
        .collect();
    Ok((made.into_values().collect(), inherit))
}

/// Restores the tree checkpointed in `dir` with every PID, parent, process group and session,
/// and leaves it running. With `plan`, the plan's writes are applied to the image of the
/// process whose snapshot root it names, before anything runs. `inherit` stands in at
/// descriptors whose other end was outside the tree (every process's).
pub fn restore_tree(dir: &Path, plan: Option<&PatchPlan>, inherit: &[InheritFd]) -> Result<TreeRestoreReport> {
    let started = std::time::Instant::now();
    let (root, opened, zombies) = open_tree(dir)?;
    for z in &zombies {
        if Path::new(&format!("/proc/{}", z.pid)).exists() {
            return Err(Error::Restore(format!(
                "pid {} (a zombie of the tree) is in use",
                z.pid
            )));
        }
    }
    let patched = match plan {
        Some(p) => Some(
            opened
                .iter()
                .position(|o| o.snap.root() == p.snapshot_root)
                .ok_or_else(|| Error::Restore("the plan is for a snapshot none of the tree's processes has".into()))?,
        ),
        None => None,
    };
    let (_pipes, pipe_inherit) = tree_pipes(&opened)?;
    let (_pairs, pair_inherit) = tree_socketpairs(&opened)?;
    // Both ends of a connection between two of the processes are made by this restore.
    let connections: Vec<(Vec<u8>, Vec<u8>)> = opened
        .iter()
        .flat_map(|o| &o.checkpoint.sockets)
        .filter(|s| s.tcp.is_some())
        .map(|s| (s.local.clone(), s.peer.clone()))
        .collect();
    let mut inherits = Vec::new();
    for (i, o) in opened.iter().enumerate() {
        let mut all = pipe_inherit[i].clone();
        all.extend(pair_inherit[i].iter().cloned());
        // The user's replacements stand in wherever such a descriptor is in a process.
        let replaceable = replaceable_fds(&o.snap.meta, &o.checkpoint);
        let user: Vec<InheritFd> = inherit
            .iter()
            .filter(|x| replaceable.contains(&x.fd) && !all.iter().any(|p| p.fd == x.fd))
            .cloned()
            .collect();
        all.extend(user);
        preflight(
            &o.snap,
            &o.checkpoint,
            plan.filter(|_| patched == Some(i)),
            &all,
            &connections,
        )?;
        inherits.push(all);
    }
    let shared = SharedMemory::of(&opened.iter().map(|o| &o.snap).collect::<Vec<_>>())?;

    let own_maps = introspect::read_maps(std::process::id() as i32)?;
    let mut avoid: Vec<(u64, u64)> = opened
        .iter()
        .flat_map(|o| o.snap.meta.regions.iter().map(|r| (r.map.start, r.map.end)))
        .collect();
    avoid.extend(own_maps.iter().map(|m| (m.start, m.end)));
    let helper = free_range(PAGE_LEN, &avoid)?;

    // The stubs, parents first: each child forked inside its parent, then given its session
    // and process group while the tree's processes are all empty.
    let mut guards: Vec<ChildGuard> = vec![spawn_stopped(root, helper)?];
    let mut injectors: Vec<Injector> = vec![Injector::in_built(root, helper)?];
    injectors[0].call("setsid", libc::SYS_setsid, &[])?;
    let pids: Vec<i32> = opened.iter().map(|o| o.member.pid).collect();
    for o in &opened[1..] {
        let m = &o.member;
        let parent = pids.iter().position(|&p| p == m.ppid).expect("checked by open_tree");
        guards.push(fork_stub(&injectors[parent], m.pid)?);
        let inject = Injector::in_built(m.pid, helper)?;
        if m.sid == m.pid {
            inject.call("setsid", libc::SYS_setsid, &[])?;
        }
        if m.pgid == m.pid {
            inject.call("setpgid", libc::SYS_setpgid, &[0, 0])?;
        } else if pids.contains(&m.pgid) && m.pgid != root {
            inject.call("setpgid", libc::SYS_setpgid, &[0, m.pgid as u64])?;
        }
        injectors.push(inject);
    }
    // Zombies: forked inside their parent and ended as they had ended.
    for z in &zombies {
        let parent = pids.iter().position(|&p| p == z.ppid).expect("checked by open_tree");
        let stub = fork_stub(&injectors[parent], z.pid)?;
        end_as(z.pid, helper, z.zombie.unwrap_or(0))?;
        std::mem::forget(stub);
        // The SIGCHLD its end sent the parent is the restore's doing, not news for the parent
        // (which had it before the checkpoint, or has it among the pending signals restored).
        // Injections block signals, so it waits pending (queued though ignored: the stub is
        // traced): taken off the queue here, before the parent's handlers are back.
        let parent = &injectors[parent];
        let status = introspect::read_proc(parent.pid(), "status")?;
        if super::dump::status_mask(&status, "ShdPnd:") & (1 << (libc::SIGCHLD - 1)) != 0 {
            let set = parent.put(0, &(1u64 << (libc::SIGCHLD - 1)).to_le_bytes())?;
            let no_wait = parent.put(8, &[0u8; 16])?;
            parent.call(
                "rt_sigtimedwait SIGCHLD",
                libc::SYS_rt_sigtimedwait,
                &[set, 0, no_wait, 8],
            )?;
        }
    }
    // Every process rebuilt while none runs (nothing of the tree can signal a process being
    // built), then all let go, leaves first.
    let mut bytes = 0;
    let mut readback_hash = [0u8; 32];
    let mut notices = Vec::new();
    let mut ready = Vec::new();
    for i in (0..opened.len()).rev() {
        let o = &opened[i];
        let (b, hash, n, r) = rebuild(
            &injectors[i],
            &o.snap,
            &o.checkpoint,
            &o.core,
            plan.filter(|_| patched == Some(i)),
            &inherits[i],
            Session::Kept,
            &shared,
            None,
        )?;
        bytes += b;
        if patched == Some(i) {
            readback_hash = hash;
        }
        notices.extend(n.into_iter().map(|n| format!("pid {}: {n}", o.member.pid)));
        ready.push((i, r));
    }
    for (i, r) in ready {
        r.run(&injectors[i], helper, &opened[i].snap.meta)?;
    }
    // Detached and running: no longer ours to kill.
    for g in guards {
        std::mem::forget(g);
    }
    for o in &opened {
        lift_network_lock(&o.checkpoint, &mut notices);
    }
    Ok(TreeRestoreReport {
        root,
        pids,
        bytes,
        writes_applied: plan.map_or(0, |p| p.writes.len()),
        patched_pid: patched.map_or(0, |i| opened[i].member.pid),
        readback_hash,
        elapsed_us: started.elapsed().as_micros(),
        notices,
    })
}
