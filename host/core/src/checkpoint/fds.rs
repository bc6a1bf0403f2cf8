//! The kernel objects behind a checkpointed process's descriptors that are not files, as
//! `restore` recreates them: eventfds (count, semaphore mode), timerfds (clock, time left,
//! interval, expirations not yet read), signalfds (their mask), pipes whose read and write ends
//! are all in the process (the bytes they hold), pipes with an end elsewhere (replaced at
//! restore by what `--inherit-fd` names, else /dev/null, said either way), epoll instances
//! (what they watch) and sockets (`sockets`). Read from /proc/PID/fdinfo and, for a pipe's
//! bytes, from a duplicate of its read end (`pidfd_getfd`) with `tee`, which copies what the
//! pipe holds without consuming it: the process, frozen meanwhile, finds its pipes as they were.
//! Any other kind of descriptor is refused here, at checkpoint time, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::libc;

use super::sockets::{self, Repairing};
use crate::base::pb::snapshot as pb;
use crate::base::{Error, Result};
use crate::describe::Snapshot;
use crate::introspect::{self, FdInfo, Injector};

const EVENTFD: &str = "anon_inode:[eventfd]";
const EVENTPOLL: &str = "anon_inode:[eventpoll]";
const TIMERFD: &str = "anon_inode:[timerfd]";
const SIGNALFD: &str = "anon_inode:[signalfd]";

/// What `collect` found, by kind.
#[derive(Default)]
pub(super) struct FdObjects {
    pub eventfds: Vec<pb::EventFd>,
    pub timerfds: Vec<pb::TimerFd>,
    pub signalfds: Vec<pb::SignalFd>,
    pub pipes: Vec<pb::Pipe>,
    pub external_pipes: Vec<pb::ExternalPipe>,
    pub epolls: Vec<pb::Epoll>,
    pub sockets: Vec<pb::Socket>,
    /// Established TCP connections held in repair mode until the process is killed (then
    /// closed silently) or resumed (repair mode left).
    pub repairing: Vec<Repairing>,
    /// The network lock over the established connections, if any (`sockets::NetLock`).
    pub lock: Option<sockets::NetLock>,
}

/// The inode of `pipe:[N]` or `socket:[N]`.
fn inode_of(path: &str, kind: &str) -> Option<u64> {
    path.strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Why a descriptor of this kind cannot be restored; None if it can (sockets are judged by
/// `sockets::collect`). Stdio that cannot be reopened becomes /dev/null, with a notice.
pub(crate) fn never_restorable(f: &FdInfo) -> Option<String> {
    let known = reopenable(&f.path)
        || [EVENTFD, EVENTPOLL, TIMERFD, SIGNALFD].contains(&f.path.as_str())
        || inode_of(&f.path, "pipe").is_some()
        || inode_of(&f.path, "socket").is_some();
    (!known && f.fd > 2).then(|| {
        let kind = if f.path.ends_with(" (deleted)") {
            "a file deleted since it was opened"
        } else if f.path.starts_with("anon_inode:") {
            "a kernel object memzinc does not know how to make again"
        } else {
            "not something memzinc can reopen"
        };
        format!(
            "fd {} is {} ({kind}): memzinc restores files, pipes, eventfds, timerfds, signalfds, epolls, TCP and unix sockets",
            f.fd, f.path
        )
    })
}

/// The objects behind `fds` of the frozen process `pid`. Refuses, before anything is written,
/// a descriptor that restore could not make again. Pipes in `shared` (by inode: held by other
/// processes of the checkpointed tree too) are taken end by end as `external_pipes`, even when
/// this process holds both ends, so the tree's restore makes each of them once; a unix socket
/// whose peer is in `tree_sockets` (another process's of the tree) keeps the bytes waiting at it.
pub(super) fn collect(
    pid: i32,
    fds: &[FdInfo],
    shared: &BTreeSet<u64>,
    tree_sockets: &BTreeSet<u64>,
) -> Result<FdObjects> {
    let mut objects = FdObjects::default();
    let mut pipes: BTreeMap<&str, pb::Pipe> = BTreeMap::new();
    let mut sockets: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
    for f in fds {
        if let Some(why) = never_restorable(f) {
            return Err(Error::NotCheckpointable { pid, why });
        }
        if let Some(inode) = inode_of(&f.path, "socket") {
            sockets.entry(inode).or_default().push(f.fd);
            continue;
        }
        if f.path.starts_with("pipe:[") {
            let pipe = pipes.entry(&f.path).or_default();
            if f.flags & libc::O_ACCMODE as u32 == libc::O_RDONLY as u32 {
                pipe.read_fds.push(f.fd);
            } else {
                pipe.write_fds.push(f.fd);
            }
            continue;
        }
        if ![EVENTFD, EVENTPOLL, TIMERFD, SIGNALFD].contains(&f.path.as_str()) {
            continue;
        }
        let info = fdinfo(pid, f.fd)?;
        let bad = || unparseable(pid, f.fd, &info);
        let hex = |key: &str| field(&info, key).and_then(|v| u64::from_str_radix(v, 16).ok());
        match f.path.as_str() {
            EVENTFD => objects.eventfds.push(pb::EventFd {
                fd: f.fd,
                count: hex("eventfd-count:").ok_or_else(bad)?,
                semaphore: field(&info, "eventfd-semaphore:") == Some("1"),
            }),
            SIGNALFD => objects.signalfds.push(pb::SignalFd {
                fd: f.fd,
                sigmask: hex("sigmask:").ok_or_else(bad)?,
            }),
            TIMERFD => objects.timerfds.push(timerfd(f.fd, &info).ok_or_else(bad)?),
            _ => objects.epolls.push(pb::Epoll {
                fd: f.fd,
                watches: info
                    .lines()
                    .filter(|l| l.starts_with("tfd:"))
                    .map(|l| epoll_watch(l).ok_or_else(bad))
                    .collect::<Result<_>>()?,
            }),
        }
    }
    for (path, mut pipe) in pipes {
        let inode = inode_of(path, "pipe").unwrap_or_default();
        if shared.contains(&inode) {
            let (data, capacity) = match pipe.read_fds.first() {
                Some(&fd) => pipe_contents(pid, fd)?,
                None => (Vec::new(), 0),
            };
            for (fds, write_end) in [(pipe.read_fds, false), (pipe.write_fds, true)] {
                if !fds.is_empty() {
                    objects.external_pipes.push(pb::ExternalPipe {
                        inode,
                        fds,
                        write_end,
                        data: if write_end { Vec::new() } else { data.clone() },
                        capacity,
                    });
                }
            }
            continue;
        }
        // Only a pipe with both ends here is the process's own state; the other end of any
        // other pipe is someone else's, and restore replaces it.
        let (Some(&read_fd), false) = (pipe.read_fds.first(), pipe.write_fds.is_empty()) else {
            let write_end = pipe.read_fds.is_empty();
            // Its bytes, for a restore that has the other end too (a process tree).
            let (data, capacity) = match pipe.read_fds.first() {
                Some(&fd) => pipe_contents(pid, fd)?,
                None => (Vec::new(), 0),
            };
            objects.external_pipes.push(pb::ExternalPipe {
                inode,
                fds: if write_end { pipe.write_fds } else { pipe.read_fds },
                write_end,
                data,
                capacity,
            });
            continue;
        };
        let (data, capacity) = pipe_contents(pid, read_fd)?;
        pipe.data = data;
        pipe.capacity = capacity;
        objects.pipes.push(pipe);
    }
    let taken = sockets::collect(pid, &sockets, tree_sockets)?;
    objects.sockets = taken.sockets;
    objects.repairing = taken.repairing;
    objects.lock = taken.lock;
    Ok(objects)
}

/// `clockid: 1`, `ticks: 1`, `settime flags: 01` (octal), `it_value: (0, 49999678)` (the time
/// left), `it_interval: (0, 50000000)`.
fn timerfd(fd: i32, info: &str) -> Option<pb::TimerFd> {
    let pair = |key: &str| -> Option<(u64, u64)> {
        let (sec, nsec) = field(info, key)?
            .strip_prefix('(')?
            .strip_suffix(')')?
            .split_once(',')?;
        Some((sec.trim().parse().ok()?, nsec.trim().parse().ok()?))
    };
    let (value_sec, value_nsec) = pair("it_value:")?;
    let (interval_sec, interval_nsec) = pair("it_interval:")?;
    Some(pb::TimerFd {
        fd,
        clockid: field(info, "clockid:")?.parse().ok()?,
        ticks: field(info, "ticks:")?.parse().ok()?,
        settime_flags: u32::from_str_radix(field(info, "settime flags:")?, 8).ok()?,
        value_sec,
        value_nsec,
        interval_sec,
        interval_nsec,
    })
}

fn fdinfo(pid: i32, fd: i32) -> Result<String> {
    let path = format!("/proc/{pid}/fdinfo/{fd}");
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
        _ => Error::io(&path, e),
    })
}

fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

fn unparseable(pid: i32, fd: i32, info: &str) -> Error {
    Error::Process {
        pid,
        what: format!("unparseable /proc/{pid}/fdinfo/{fd} {info:?}"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    }
}

/// `tfd: 6 events: 19 data: 2 pos:0 ino:18bae8 sdev:f` (events and data in hex).
fn epoll_watch(line: &str) -> Option<pb::EpollWatch> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1));
    Some(pb::EpollWatch {
        fd: after("tfd:")?.parse().ok()?,
        events: u32::from_str_radix(after("events:")?, 16).ok()?,
        data: u64::from_str_radix(after("data:")?, 16).ok()?,
    })
}

/// What the pipe whose read end is `read_fd` in `pid` holds, and its capacity.
fn pipe_contents(pid: i32, read_fd: i32) -> Result<(Vec<u8>, u32)> {
    let err = |what: &str, e: Errno| Error::Process {
        pid,
        what: format!("{what} (pipe at fd {read_fd})"),
        source: e.into(),
    };
    let theirs = introspect::pidfd_getfd(pid, read_fd)?;
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let capacity = Errno::result(unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_GETPIPE_SZ) })
        .map_err(|e| err("F_GETPIPE_SZ", e))?;
    let mut ends = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`, which has room for them.
    Errno::result(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })
        .map_err(|e| err("pipe2", e))?;
    // SAFETY: the kernel just gave us these descriptors.
    let (ours_r, ours_w) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    // SAFETY: as above, on our own pipe.
    Errno::result(unsafe { libc::fcntl(ours_w.as_raw_fd(), libc::F_SETPIPE_SZ, capacity) })
        .map_err(|e| err("F_SETPIPE_SZ", e))?;
    // SAFETY: tee between two pipe descriptors we own; no memory is passed.
    let copied = unsafe {
        libc::tee(
            theirs.as_raw_fd(),
            ours_w.as_raw_fd(),
            capacity as usize,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    let copied = match Errno::result(copied) {
        Ok(n) => n as usize,
        // An empty pipe.
        Err(Errno::EAGAIN) => 0,
        Err(e) => return Err(err("tee", e)),
    };
    let mut data = vec![0u8; copied];
    let mut got = 0;
    while got < copied {
        // SAFETY: reads into the unfilled tail of `data`, which has that many bytes.
        let n = unsafe { libc::read(ours_r.as_raw_fd(), data[got..].as_mut_ptr().cast(), copied - got) };
        got += Errno::result(n).map_err(|e| err("read the tee'd bytes", e))? as usize;
    }
    Ok((data, capacity as u32))
}

/// Paths the restored process can open again: real files that still exist under that name.
pub(super) fn reopenable(path: &str) -> bool {
    path.starts_with('/') && !path.ends_with(" (deleted)")
}

/// The descriptors a checkpoint's kernel objects (eventfds, timerfds, signalfds, pipes, epolls)
/// take.
pub(super) fn object_fds(checkpoint: &pb::Checkpoint) -> impl Iterator<Item = i32> + '_ {
    let eventfds = checkpoint.eventfds.iter().map(|e| e.fd);
    let timers = checkpoint.timerfds.iter().map(|t| t.fd);
    let signals = checkpoint.signalfds.iter().map(|s| s.fd);
    let pipes = checkpoint
        .pipes
        .iter()
        .flat_map(|p| p.read_fds.iter().chain(&p.write_fds).copied());
    let external = checkpoint.external_pipes.iter().flat_map(|p| p.fds.iter().copied());
    let sockets = checkpoint.sockets.iter().flat_map(|s| s.fds.iter().copied());
    eventfds
        .chain(timers)
        .chain(signals)
        .chain(pipes)
        .chain(external)
        .chain(sockets)
        .chain(checkpoint.epolls.iter().map(|e| e.fd))
}

/// What the user names, with `--inherit-fd FD=…`, to stand in at a descriptor whose other end
/// was outside the process (a pipe, a unix socket) or that cannot be reopened (stdio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// A file (opened for the descriptor's access, appended to and created if written) or a
    /// unix socket's path (connected to).
    Path(PathBuf),
    /// A descriptor of memzinc's own (as a shell's `3>&…` gives it), shared with the process.
    Fd(i32),
    /// What the restore of a tree made again for a pipe or socket whose other end is in
    /// another process of the tree (memzinc's descriptor of it): nothing changed, nothing said.
    Tree(i32),
}

/// One `--inherit-fd`: `FD=PATH` or `FD=fd:N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InheritFd {
    pub fd: i32,
    pub with: Replacement,
}

impl std::str::FromStr for InheritFd {
    type Err = Error;

    fn from_str(text: &str) -> Result<InheritFd> {
        let bad = || {
            Error::Usage(format!(
                "--inherit-fd {text:?}: expected FD=PATH or FD=fd:N (FD: the checkpointed descriptor)"
            ))
        };
        let (fd, with) = text.split_once('=').ok_or_else(bad)?;
        let fd = fd.trim().parse::<i32>().ok().filter(|fd| *fd >= 0).ok_or_else(bad)?;
        let with = match with.strip_prefix("fd:") {
            Some(n) => Replacement::Fd(n.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(bad)?),
            None if !with.is_empty() => Replacement::Path(PathBuf::from(with)),
            None => return Err(bad()),
        };
        Ok(InheritFd { fd, with })
    }
}

impl std::fmt::Display for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replacement::Path(p) => write!(f, "{}", p.display()),
            Replacement::Fd(n) => write!(f, "memzinc's fd {n}"),
            Replacement::Tree(_) => write!(f, "its peer in the restored tree"),
        }
    }
}

/// The replacement opened (or duplicated) in memzinc: for writing (`write`) or reading, and
/// for a socket of `socket_type` when a socket is replaced.
fn open_replacement(with: &Replacement, write: bool, socket_type: Option<i32>) -> Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    match with {
        Replacement::Fd(n) | Replacement::Tree(n) => {
            // SAFETY: fcntl takes integers and returns a new descriptor or -1.
            let dup = Errno::result(unsafe { libc::fcntl(*n, libc::F_DUPFD_CLOEXEC, 0) })
                .map_err(|e| Error::Restore(format!("--inherit-fd …=fd:{n}: memzinc has no fd {n} ({e})")))?;
            // SAFETY: the kernel just gave us this descriptor.
            Ok(unsafe { OwnedFd::from_raw_fd(dup) })
        }
        Replacement::Path(path) => {
            if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let kind = socket_type.unwrap_or(libc::SOCK_STREAM);
                let stream = |kind| -> std::io::Result<OwnedFd> {
                    use std::os::unix::ffi::OsStrExt;
                    // SAFETY: socket takes integers.
                    let fd = Errno::result(unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) })?;
                    // SAFETY: the kernel just gave us this descriptor.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    let mut sa = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
                    sa.extend_from_slice(path.as_os_str().as_bytes());
                    sa.push(0);
                    // SAFETY: connect reads `sa.len()` bytes of sockaddr from `sa`.
                    Errno::result(unsafe {
                        libc::connect(fd.as_raw_fd(), sa.as_ptr().cast(), sa.len() as libc::socklen_t)
                    })?;
                    Ok(fd)
                };
                return stream(kind)
                    .map_err(|e| Error::Restore(format!("--inherit-fd: connecting to {}: {e}", path.display())));
            }
            let file = std::fs::OpenOptions::new()
                .read(!write)
                .append(write)
                .create(write)
                .mode(0o644)
                .open(path)
                .map_err(|e| Error::Restore(format!("--inherit-fd: {}: {e}", path.display())))?;
            Ok(OwnedFd::from(file))
        }
    }
}

/// Descriptors memzinc made taken by the process being built (`pidfd_getfd` run in it).
struct Pull<'a> {
    inject: &'a Injector,
    pidfd: u64,
}

impl<'a> Pull<'a> {
    fn new(inject: &'a Injector) -> Result<Pull<'a>> {
        let pidfd = inject.call(
            "pidfd_open of memzinc",
            libc::SYS_pidfd_open,
            &[std::process::id() as u64, 0],
        )?;
        Ok(Pull { inject, pidfd })
    }

    /// The process's new descriptor for `ours`.
    fn take(&self, ours: &OwnedFd) -> Result<u64> {
        self.inject.call(
            "pidfd_getfd of a descriptor memzinc made",
            libc::SYS_pidfd_getfd,
            &[self.pidfd, ours.as_raw_fd() as u64, 0],
        )
    }

    fn close(self) -> Result<()> {
        self.inject.call("close", libc::SYS_close, &[self.pidfd]).map(drop)
    }
}

/// What `restore_fds` leaves to its caller: one line per descriptor that is not what it was
/// (a replacement, /dev/null, a reconnection), and the connections held in repair mode until
/// the process runs.
pub(super) struct Restored {
    pub notices: Vec<String>,
    pub repairing: Vec<Repairing>,
}

/// Closes what the child inherited from memzinc, recreates the checkpoint's eventfds, timerfds,
/// signalfds and pipes (refilled), opens the image's files at their numbers, flags and offsets (stdio that cannot
/// be reopened becomes /dev/null), and last the epolls, watching what they watched.
pub(super) fn restore_fds(
    inject: &Injector,
    snap: &Snapshot,
    checkpoint: &pb::Checkpoint,
    inherit: &[InheritFd],
    keep: Option<i32>,
) -> Result<Restored> {
    let mut restored = Restored {
        notices: Vec::new(),
        repairing: Vec::new(),
    };
    let chosen = |fd: i32| inherit.iter().find(|i| i.fd == fd).map(|i| &i.with);
    for fd in introspect::fds(inject.pid())?
        .into_iter()
        .filter(|f| Some(f.fd) != keep)
    {
        inject.call("close", libc::SYS_close, &[fd.fd as u64])?;
    }
    let fds = &snap.meta.fds;
    // A new object's descriptor is first moved above every descriptor to restore, so that
    // putting it at its numbers cannot close one put there before.
    let top = fds.iter().map(|f| f.fd).max().unwrap_or(2) as u64 + 1;
    let lift = |fd: u64| -> Result<u64> {
        let high = inject.call("F_DUPFD", libc::SYS_fcntl, &[fd, libc::F_DUPFD as u64, top])?;
        inject.call("close", libc::SYS_close, &[fd])?;
        Ok(high)
    };
    let flags_of = |fd: i32| fds.iter().find(|f| f.fd == fd).map_or(0, |f| f.flags);
    // One open file at its descriptors: status flags (O_NONBLOCK…, shared by them) and
    // close-on-exec (each its own) as they were.
    let place = |high: u64, at: &[i32]| -> Result<()> {
        let status = (libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_NOATIME) as u32;
        let first = at.first().copied().unwrap_or(0);
        inject.call(
            "F_SETFL",
            libc::SYS_fcntl,
            &[high, libc::F_SETFL as u64, (flags_of(first) & status) as u64],
        )?;
        for &fd in at {
            let cloexec = (flags_of(fd) & libc::O_CLOEXEC as u32) as u64;
            inject.call("dup3", libc::SYS_dup3, &[high, fd as u64, cloexec])?;
        }
        inject.call("close", libc::SYS_close, &[high])?;
        Ok(())
    };
    // Bytes go into a new object through a descriptor of ours for it.
    let write_into = |high: u64, bytes: &[u8]| -> Result<()> {
        use std::io::Write as _;
        let ours = introspect::pidfd_getfd(inject.pid(), high as i32)?;
        std::fs::File::from(ours)
            .write_all(bytes)
            .map_err(|e| Error::Restore(format!("refill a pipe or eventfd: {e}")))
    };

    for e in &checkpoint.eventfds {
        let flags = if e.semaphore { libc::EFD_SEMAPHORE as u64 } else { 0 };
        let high = lift(inject.call("eventfd2", libc::SYS_eventfd2, &[0, flags])?)?;
        // The count is 64-bit, eventfd2's initial value 32: it is written instead.
        if e.count != 0 {
            write_into(high, &e.count.to_le_bytes())?;
        }
        place(high, &[e.fd])?;
    }
    for t in &checkpoint.timerfds {
        let high = lift(inject.call("timerfd_create", libc::SYS_timerfd_create, &[t.clockid as u64, 0])?)?;
        // An interval timer that fired stays disarmed until its expirations are read; it runs
        // again one interval on. The time left is set relative to now, whatever the clock.
        let value = match (t.value_sec, t.value_nsec) {
            (0, 0) if t.ticks > 0 => (t.interval_sec, t.interval_nsec),
            v => v,
        };
        if value != (0, 0) {
            let spec: Vec<u8> = [t.interval_sec, t.interval_nsec, value.0, value.1]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let at = inject.put(0, &spec)?;
            inject.call("timerfd_settime", libc::SYS_timerfd_settime, &[high, 0, at, 0])?;
        }
        if t.ticks > 0 {
            // TFD_IOC_SET_TICKS = _IOW('T', 0, u64): the expirations not yet read.
            let at = inject.put(0, &t.ticks.to_le_bytes())?;
            inject.call("TFD_IOC_SET_TICKS", libc::SYS_ioctl, &[high, 0x4008_5400, at])?;
        }
        place(high, &[t.fd])?;
    }
    for sfd in &checkpoint.signalfds {
        let at = inject.put(0, &sfd.sigmask.to_le_bytes())?;
        let high = lift(inject.call("signalfd4", libc::SYS_signalfd4, &[u64::MAX, at, 8, 0])?)?;
        place(high, &[sfd.fd])?;
    }
    for p in &checkpoint.pipes {
        let at = inject.put(0, &[0u8; 8])?;
        inject.call("pipe2", libc::SYS_pipe2, &[at, 0])?;
        let mut ends = [0u8; 8];
        introspect::read_at(inject.pid(), at, &mut ends)?;
        let end = |i: usize| u32::from_le_bytes(ends[i * 4..i * 4 + 4].try_into().unwrap_or_default()) as u64;
        let (r, w) = (lift(end(0))?, lift(end(1))?);
        if p.capacity != 0 {
            inject.call(
                "F_SETPIPE_SZ",
                libc::SYS_fcntl,
                &[w, libc::F_SETPIPE_SZ as u64, p.capacity as u64],
            )?;
        }
        write_into(w, &p.data)?;
        place(r, &p.read_fds)?;
        place(w, &p.write_fds)?;
    }

    let pull = Pull::new(inject)?;
    for p in &checkpoint.external_pipes {
        let end = if p.write_end { "write" } else { "read" };
        let at = p.fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let with = p.fds.iter().find_map(|&fd| chosen(fd));
        let high = match with {
            Some(with) => {
                let ours = open_replacement(with, p.write_end, None)?;
                let said = !matches!(with, Replacement::Tree(_));
                restored.notices.extend(said.then(|| format!(
                    "fd {at} (the {end} end of pipe:[{}], whose other end was outside the process) is now {with}, as --inherit-fd asked",
                    p.inode
                )));
                lift(pull.take(&ours)?)?
            }
            None => {
                let mode = if p.write_end { libc::O_WRONLY } else { libc::O_RDONLY };
                restored.notices.push(format!(
                    "fd {at} (the {end} end of pipe:[{}], whose other end was outside the process) is now /dev/null; --inherit-fd {}=PATH or {}=fd:N names a replacement",
                    p.inode, p.fds[0], p.fds[0]
                ));
                lift(inject.open("/dev/null", (mode | libc::O_CLOEXEC) as u32)?)?
            }
        };
        place(high, &p.fds)?;
    }
    let mut outside = |s: &pb::Socket| -> Result<Option<sockets::Replacing>> {
        match s.fds.iter().find_map(|&fd| chosen(fd)) {
            Some(with) => {
                let whose = match with {
                    Replacement::Tree(_) => String::new(),
                    with => with.to_string(),
                };
                Ok(Some((open_replacement(with, true, Some(s.r#type))?, whose)))
            }
            None => Ok(None),
        }
    };
    for (inode, built) in sockets::build(&checkpoint.sockets, &mut outside)? {
        let Some(s) = checkpoint.sockets.iter().find(|s| s.inode == inode) else {
            continue;
        };
        let high = lift(pull.take(&built.fd)?)?;
        place(high, &s.fds)?;
        restored.notices.extend(built.notice);
        restored.repairing.extend(built.repairing);
    }

    let objects: Vec<i32> = object_fds(checkpoint).collect();
    let strip = (libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC) as u32;
    for f in fds.iter().filter(|f| !objects.contains(&f.fd)) {
        let got = if let Some(with) = chosen(f.fd) {
            let write = f.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
            let ours = open_replacement(with, write, None)?;
            restored
                .notices
                .push(format!("fd {} ({}) is now {with}, as --inherit-fd asked", f.fd, f.path));
            pull.take(&ours)?
        } else if reopenable(&f.path) {
            inject.open(&f.path, f.flags & !strip)?
        } else {
            restored.notices.push(format!(
                "fd {} ({}) cannot be reopened: it is now /dev/null; --inherit-fd {}=PATH or {}=fd:N names a replacement",
                f.fd, f.path, f.fd, f.fd
            ));
            inject.open("/dev/null", f.flags & !strip)?
        };
        let path = if chosen(f.fd).is_none() && reopenable(&f.path) {
            f.path.as_str()
        } else {
            ""
        };
        if got != f.fd as u64 {
            let cloexec = (f.flags & libc::O_CLOEXEC as u32) as u64;
            inject.call("dup3", libc::SYS_dup3, &[got, f.fd as u64, cloexec])?;
            inject.call("close", libc::SYS_close, &[got])?;
        } else {
            // pidfd_getfd sets close-on-exec; an open keeps the flags it was given.
            let cloexec = if f.flags & libc::O_CLOEXEC as u32 != 0 {
                libc::FD_CLOEXEC
            } else {
                0
            };
            inject.call("F_SETFD", libc::SYS_fcntl, &[got, libc::F_SETFD as u64, cloexec as u64])?;
        }
        if !path.is_empty() && f.pos != 0 {
            let rc = inject.raw(libc::SYS_lseek, &[f.fd as u64, f.pos, libc::SEEK_SET as u64])?;
            if rc < 0 && rc != -(libc::ESPIPE as i64) {
                return Err(Error::Restore(format!(
                    "lseek fd {} to {}: {}",
                    f.fd,
                    f.pos,
                    Errno::from_raw(-rc as i32)
                )));
            }
        }
    }

    // Last: what each epoll watches is restored by now.
    for e in &checkpoint.epolls {
        let high = lift(inject.call("epoll_create1", libc::SYS_epoll_create1, &[0])?)?;
        for w in &e.watches {
            // struct epoll_event is packed on x86_64: events (u32), data (u64).
            let mut event = w.events.to_le_bytes().to_vec();
            event.extend_from_slice(&w.data.to_le_bytes());
            let at = inject.put(0, &event)?;
            inject.call(
                &format!("epoll_ctl ADD fd {}", w.fd),
                libc::SYS_epoll_ctl,
                &[high, libc::EPOLL_CTL_ADD as u64, w.fd as u64, at],
            )?;
        }
        place(high, &[e.fd])?;
    }
    pull.close()?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timerfds_parse_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02004002\nclockid: 1\nticks: 3\nsettime flags: 01\nit_value: (0, 49999678)\nit_interval: (2, 50000000)\n";
        let t = timerfd(4, info).unwrap();
        assert_eq!((t.clockid, t.ticks, t.settime_flags), (1, 3, 1));
        assert_eq!(
            (t.value_sec, t.value_nsec, t.interval_sec, t.interval_nsec),
            (0, 49999678, 2, 50000000)
        );
        assert!(timerfd(4, "clockid: 1\n").is_none());
    }

    #[test]
    fn epoll_watches_parse_from_fdinfo() {
        let w = epoll_watch("tfd:        6 events:       19 data:                2  pos:0 ino:18bae8 sdev:f").unwrap();
        assert_eq!((w.fd, w.events, w.data), (6, 0x19, 2));
        assert!(epoll_watch("tfd: x events: 19 data: 2").is_none());
    }
}
