//! A live target: its map, its threads frozen and thawed, its memory read and written.
//!
//! Freezing uses PTRACE_SEIZE + PTRACE_INTERRUPT, never SIGSTOP: if memzinc dies for any reason
//! (panic, SIGINT, SIGKILL) the kernel detaches its tracees and an interrupt-stop simply ends,
//! so the target is never left stopped. The `Frozen` guard detaches on every normal exit path.

use std::collections::BTreeSet;
use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};

pub const PAGE_SIZE: u64 = 4096;

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

fn pid_errno(pid: i32, what: &str, e: Errno) -> Error {
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

fn read_proc(pid: i32, file: &str) -> Result<String> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
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

/// Every thread of a target held in a ptrace interrupt-stop. Dropping it resumes them.
pub struct Frozen {
    pid: i32,
    tids: Vec<i32>,
}

impl Frozen {
    /// Seizes and interrupts every thread, repeating until no new thread appears.
    pub fn freeze(pid: i32) -> Result<Frozen> {
        check_target(pid)?;
        let mut frozen = Frozen { pid, tids: Vec::new() };
        loop {
            let current = thread_ids(pid)?;
            let new: Vec<i32> = current.iter().copied().filter(|t| !frozen.tids.contains(t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                match ptrace::seize(Pid::from_raw(tid), ptrace::Options::empty()) {
                    Ok(()) => {}
                    // The thread ended between listing and seizing.
                    Err(Errno::ESRCH) => continue,
                    Err(e) => return Err(pid_errno(pid, "PTRACE_SEIZE", e)),
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

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn thread_count(&self) -> usize {
        self.tids.len()
    }
}

fn wait_for_stop(pid: i32, tid: i32) -> Result<()> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::Stopped(..)) => return Ok(()),
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                return Err(Error::TargetExited {
                    pid,
                    during: "freezing it",
                })
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(pid_errno(pid, "waitpid", e)),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
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
    for (chunk_index, chunk) in out.chunks_mut(BATCH).enumerate() {
        let chunk_start = start + (chunk_index * BATCH) as u64;
        let n = read_at(pid, chunk_start, chunk)?;
        if n == chunk.len() {
            continue;
        }
        let first_page = chunk_index * BATCH / PAGE_SIZE as usize;
        for (i, page) in chunk.chunks_mut(PAGE_SIZE as usize).enumerate() {
            let address = chunk_start + i as u64 * PAGE_SIZE;
            if read_at(pid, address, page)? != page.len() {
                page.fill(0);
                readable[first_page + i] = false;
            }
        }
    }
    Ok(readable)
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
