//! A cooperating program snapshots itself: the same core `memzinc snapshot` writes, of its own
//! pid, taken from inside the program.
//!
//! ptrace cannot stop the thread that asks, and an in-process copy cannot stop the other threads
//! or read their registers, so the program re-executes itself (`/proc/self/exe`) as a helper
//! that seizes its parent: the helper freezes every thread of the program — the one waiting for
//! it included — takes the snapshot with [`crate::snapshot::take`] and exits; the program then
//! carries on. Under Yama's `ptrace_scope=1` a process may only trace its descendants, and the
//! helper is the program's child, so the program names it with `PR_SET_PTRACER` first and the
//! helper waits for the go-ahead on its stdin.
//!
//! A program opts in by calling [`helper_request`] first thing in `main` and, when it returns a
//! path, [`serve_helper`] (see `tests/targets/selfaware.rs`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::take::{self, TakeReport};
use crate::base::{Error, Result};

/// Set in the helper's environment: the core file to write.
pub const HELPER_ENV: &str = "MEMZINC_SELF_SNAPSHOT_TO";

/// The core file to write when this process is a self-snapshot helper, else `None`.
pub fn helper_request() -> Option<PathBuf> {
    std::env::var_os(HELPER_ENV).map(PathBuf::from)
}

/// The helper's work: waits for the go-ahead on stdin, snapshots the parent into `out`, and
/// writes the [`TakeReport`] as JSON to `reply` (the helper's stdout).
pub fn serve_helper(out: &Path, reply: &mut impl Write) -> Result<()> {
    let parent = nix::unistd::getppid().as_raw();
    let mut go = [0u8; 1];
    std::io::stdin()
        .read_exact(&mut go)
        .map_err(|e| Error::io("self-snapshot helper stdin", e))?;
    let report = take::take(parent, out, None)?;
    serde_json::to_writer(&mut *reply, &report)
        .map_err(|e| Error::io("self-snapshot helper stdout", std::io::Error::other(e)))?;
    reply.flush().map_err(|e| Error::io("self-snapshot helper stdout", e))
}

/// Snapshots the calling process into the core file `out` (atomically, like `memzinc
/// snapshot`). Every thread is stopped while the pages are copied, this one included.
pub fn snapshot_self(out: &Path) -> Result<TakeReport> {
    let pid = std::process::id() as i32;
    let helper_failed = |what: String| Error::Process {
        pid,
        what,
        source: std::io::Error::other("self-snapshot helper"),
    };
    let mut helper = Command::new("/proc/self/exe")
        .env(HELPER_ENV, out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("/proc/self/exe", e))?;
    set_ptracer(helper.id() as u64);
    // Closing stdin after the byte also tells a helper whose parent died early to give up.
    let go = helper.stdin.take().map(|mut s| s.write_all(b"g"));
    let output = helper.wait_with_output();
    set_ptracer(0);
    let output = output.map_err(|e| Error::io("self-snapshot helper", e))?;
    if let Some(Err(e)) = go {
        return Err(helper_failed(format!("could not start the helper: {e}")));
    }
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(helper_failed(format!(
            "snapshotting itself failed ({}): {}",
            output.status,
            stderr.trim()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        helper_failed(format!(
            "the helper's report is not JSON ({e}): does main() call serve_helper?"
        ))
    })
}

/// Lets `tracer` ptrace this process under Yama (0: only ancestors again). A kernel without Yama
/// refuses the call with EINVAL; it does not need it then.
fn set_ptracer(tracer: u64) {
    // SAFETY: prctl(PR_SET_PTRACER, pid) takes plain integers and touches no memory of ours.
    let _ = unsafe { nix::libc::prctl(nix::libc::PR_SET_PTRACER, tracer, 0u64, 0u64, 0u64) };
}
