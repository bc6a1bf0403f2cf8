//! The kernel objects behind a checkpointed process's descriptors that are not files, as
//! `restore` recreates them: eventfds (count, semaphore mode), timerfds (clock, time left,
//! interval, expirations not yet read), signalfds (their mask), pipes whose read and write ends
//! are all in the process (the bytes they hold), and epoll instances (what they watch). Read
//! from /proc/PID/fdinfo and, for a pipe's bytes, from a duplicate of its read end
//! (`pidfd_getfd`) with `tee`, which copies what the pipe holds without consuming it: the
//! process, frozen meanwhile, finds its pipes as they were.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

use crate::error::{Error, Result};
use crate::process::{self, FdInfo};
use crate::snapshot::pb;

pub const EVENTFD: &str = "anon_inode:[eventfd]";
pub const EVENTPOLL: &str = "anon_inode:[eventpoll]";
pub const TIMERFD: &str = "anon_inode:[timerfd]";
pub const SIGNALFD: &str = "anon_inode:[signalfd]";

/// What `collect` found, by kind.
#[derive(Default)]
pub struct FdObjects {
    pub eventfds: Vec<pb::EventFd>,
    pub timerfds: Vec<pb::TimerFd>,
    pub signalfds: Vec<pb::SignalFd>,
    pub pipes: Vec<pb::Pipe>,
    pub epolls: Vec<pb::Epoll>,
}

/// The objects behind `fds` of the frozen process `pid`. Pipes with an end outside the process
/// are left out (restore refuses them, as it does sockets).
pub fn collect(pid: i32, fds: &[FdInfo]) -> Result<FdObjects> {
    let mut objects = FdObjects::default();
    let mut pipes: BTreeMap<&str, pb::Pipe> = BTreeMap::new();
    for f in fds {
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
    for mut pipe in pipes.into_values() {
        // Only a pipe with both ends here is the process's own state; the other end of any
        // other pipe is someone else's.
        let (Some(&read_fd), false) = (pipe.read_fds.first(), pipe.write_fds.is_empty()) else {
            continue;
        };
        let (data, capacity) = pipe_contents(pid, read_fd)?;
        pipe.data = data;
        pipe.capacity = capacity;
        objects.pipes.push(pipe);
    }
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
    let theirs = process::pidfd_getfd(pid, read_fd)?;
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
