//! The kernel's userfaultfd and `PAGEMAP_SCAN` ABI (<linux/userfaultfd.h>, <linux/fs.h>; libc
//! has none of it), in one place for its users: `track` (asynchronous write-protect, asked
//! with `PAGEMAP_SCAN`), the write-protected snapshot view (`protect`: write faults served)
//! and lazy restore (missing pages served with `UFFDIO_COPY`).
//! Each struct's size is asserted to be the kernel's, so each ioctl number below is the kernel's.
//! Also [`ForeignUffd`]: a userfaultfd a process opened (injected) and memzinc holds, with the
//! write-protect ioctls `track` and `protect` share.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

use super::inject::Injector;
use super::process;
use crate::base::{Error, Result};

/// A userfaultfd over another process's memory: the process opened it (`userfaultfd(2)`
/// injected into one of its frozen threads, so it covers that process's memory) and memzinc
/// holds a duplicate (`pidfd_getfd`).
pub struct ForeignUffd {
    pub pid: i32,
    pub fd: OwnedFd,
    /// The descriptor's number in the process, which still has it open unless its caller
    /// closes it there.
    pub target_fd: i32,
}

/// An ioctl on a process's userfaultfd that failed, as one error.
pub fn uffd_error(pid: i32, what: &str, e: Errno) -> Error {
    Error::Process {
        pid,
        what: format!("{what} on its userfaultfd"),
        source: e.into(),
    }
}

impl ForeignUffd {
    /// Makes the process `inject` borrows a thread of open a userfaultfd (close-on-exec,
    /// non-blocking), takes a duplicate and enables `features` on it (UFFDIO_API; `what` names
    /// them in an error). On failure the process's descriptor is closed again.
    pub fn open(pid: i32, inject: &Injector, features: u64, what: &str) -> Result<ForeignUffd> {
        let fd = inject.call(
            "userfaultfd() in the target",
            libc::SYS_userfaultfd,
            &[(libc::O_CLOEXEC | libc::O_NONBLOCK) as u64],
        )? as i32;
        let opened = (|| {
            let fd = process::pidfd_getfd(pid, fd)?;
            let mut api = UffdioApi {
                api: UFFD_API,
                features,
                ..Default::default()
            };
            ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api).map_err(|e| uffd_error(pid, what, e))?;
            Ok(fd)
        })();
        match opened {
            Ok(dup) => Ok(ForeignUffd {
                pid,
                fd: dup,
                target_fd: fd,
            }),
            Err(e) => {
                let _ = inject.call("close its userfaultfd", libc::SYS_close, &[fd as u64]);
                Err(e)
            }
        }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Registers `[start, end)` for write-protect faults.
    pub fn register_wp(&self, start: u64, end: u64) -> Result<()> {
        let mut register = UffdioRegister {
            range: UffdioRange {
                start,
                len: end - start,
            },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        ioctl(self.raw(), UFFDIO_REGISTER, &mut register)
            .map(drop)
            .map_err(|e| uffd_error(self.pid, "UFFDIO_REGISTER", e))
    }

    /// Write-protects `[start, end)`, or lets it be written again (waking who waits on it).
    pub fn write_protect(&self, start: u64, end: u64, on: bool) -> Result<()> {
        let mut protect = UffdioWriteprotect {
            range: UffdioRange {
                start,
                len: end - start,
            },
            mode: if on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
        };
        ioctl(self.raw(), UFFDIO_WRITEPROTECT, &mut protect)
            .map(drop)
            .map_err(|e| uffd_error(self.pid, "UFFDIO_WRITEPROTECT", e))
    }
}

pub const UFFD_API: u64 = 0xAA;
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

/// `_IOC(dir, type, nr, size)`.
const fn ioc(dir: u64, ty: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (ty << 8) | nr
}
const READ_WRITE: u64 = 3;
const READ: u64 = 2;
pub const UFFDIO_API: u64 = ioc(READ_WRITE, 0xAA, 0x3F, size_of::<UffdioApi>());
pub const UFFDIO_REGISTER: u64 = ioc(READ_WRITE, 0xAA, 0x00, size_of::<UffdioRegister>());
pub const UFFDIO_UNREGISTER: u64 = ioc(READ, 0xAA, 0x01, size_of::<UffdioRange>());
pub const UFFDIO_WAKE: u64 = ioc(READ, 0xAA, 0x02, size_of::<UffdioRange>());
pub const UFFDIO_COPY: u64 = ioc(READ_WRITE, 0xAA, 0x03, size_of::<UffdioCopy>());
pub const UFFDIO_ZEROPAGE: u64 = ioc(READ_WRITE, 0xAA, 0x04, size_of::<UffdioZeropage>());
pub const UFFDIO_WRITEPROTECT: u64 = ioc(READ_WRITE, 0xAA, 0x06, size_of::<UffdioWriteprotect>());
pub const PAGEMAP_SCAN: u64 = ioc(READ_WRITE, b'f' as u64, 16, size_of::<PmScanArg>());
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;

#[repr(C)]
#[derive(Default)]
pub struct UffdioApi {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct UffdioRegister {
    pub range: UffdioRange,
    pub mode: u64,
    pub ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct UffdioWriteprotect {
    pub range: UffdioRange,
    pub mode: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct UffdioCopy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub copy: i64,
}

#[repr(C)]
#[derive(Default)]
pub struct UffdioZeropage {
    pub range: UffdioRange,
    pub mode: u64,
    pub zeropage: i64,
}

/// `struct uffd_msg`: the event, then its arguments (a union of at most three u64).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct UffdMsg {
    pub event: u8,
    pub _reserved: [u8; 7],
    pub arg: [u64; 3],
}

#[repr(C)]
#[derive(Default)]
pub struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

const _: () = assert!(size_of::<UffdioApi>() == 24);
const _: () = assert!(size_of::<UffdioRange>() == 16);
const _: () = assert!(size_of::<UffdioRegister>() == 32);
const _: () = assert!(size_of::<UffdioWriteprotect>() == 24);
const _: () = assert!(size_of::<UffdioCopy>() == 40);
const _: () = assert!(size_of::<UffdioZeropage>() == 32);
const _: () = assert!(size_of::<UffdMsg>() == 32);
const _: () = assert!(size_of::<PmScanArg>() == 96);
const _: () = assert!(size_of::<PageRegion>() == 24);

/// Marker for the argument types above: each is the struct its ioctl number was made with.
pub trait IoctlArg {}
impl IoctlArg for UffdioApi {}
impl IoctlArg for UffdioRange {}
impl IoctlArg for UffdioRegister {}
impl IoctlArg for UffdioWriteprotect {}
impl IoctlArg for UffdioCopy {}
impl IoctlArg for UffdioZeropage {}
impl IoctlArg for PmScanArg {}

/// One of the ioctls above on `fd`; its non-negative return value (`PAGEMAP_SCAN`: regions).
pub fn ioctl<T: IoctlArg>(fd: i32, request: u64, arg: &mut T) -> Result<i32, Errno> {
    // SAFETY: `T` is one of this module's kernel structs, of the kernel's size (asserted
    // above), and `request` the ioctl made for it; `arg` is a live, exclusive reference for the
    // call. The kernel reads and writes only that struct, and for PAGEMAP_SCAN the `vec_len`
    // regions `vec` points at, which the caller owns for the call; UFFDIO_COPY reads `len`
    // bytes at `src`, which the caller owns.
    Errno::result(unsafe { libc::ioctl(fd, request as libc::c_ulong, arg as *mut T) })
}
