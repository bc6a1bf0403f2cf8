//! `memzinc checkpoint`: a snapshot plus what `restore` needs.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::checkpoint::{checkpoint, checkpoint_tree, AfterCheckpoint};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    /// The core file; with --tree, a new directory (one core per process and tree.json).
    #[arg(short, long)]
    output: PathBuf,
    /// The process and all its descendants, frozen together; `restore DIR` makes every PID,
    /// parent, process group and session again, with the pipes and shared anonymous memory
    /// between them. Held stopped until every core is written.
    #[arg(long, conflicts_with = "stop_the_world")]
    tree: bool,
    /// Kill the process (while still frozen) once the checkpoint is on disk.
    #[arg(long, conflicts_with = "leave_running")]
    kill: bool,
    /// Resume the process after the checkpoint (the default).
    #[arg(long)]
    leave_running: bool,
    /// Witness the checkpoint's snapshot root for `--target` under this keypair (as
    /// `snapshot --witness`), so a plan against it can be attested for `restore --apply`; with
    /// --tree, every process's root.
    #[arg(long, requires = "target")]
    witness: Option<PathBuf>,
    /// Target name the root is recorded for, as plans name it (e.g. healme).
    #[arg(long, requires = "witness")]
    target: Option<String>,
    /// With the process left running: keep it stopped until every page is copied, instead of
    /// resuming it once its state is taken and reading its pages while it runs (through a
    /// write-protected view, or a forked copy where the view cannot be had; the same checkpoint).
    #[arg(long)]
    stop_the_world: bool,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let after = if a.kill {
        AfterCheckpoint::Kill
    } else {
        AfterCheckpoint::LeaveRunning
    };
    let pause = if a.stop_the_world {
        memzinc::describe::Pause::StopTheWorld
    } else {
        memzinc::describe::Pause::CopyOnWrite
    };
    if a.tree {
        let report = checkpoint_tree(a.pid, &a.output, after)?;
        if let (Some(key), Some(target)) = (&a.witness, &a.target) {
            for m in &report.processes {
                g.witness(key, target, &a.output.join(&m.core))?;
            }
        }
        return g.print(&report, |report| {
            let pids: Vec<String> = report.processes.iter().map(|m| m.pid.to_string()).collect();
            format!(
                "checkpoint of the tree of pid {} -> {} ({} bytes): {} processes ({}); {} (stopped {} µs)",
                a.pid,
                a.output.display(),
                report.bytes,
                report.processes.len(),
                pids.join(", "),
                if report.killed { "killed" } else { "resumed" },
                report.stopped_us
            )
        });
    }
    let report = checkpoint(a.pid, &a.output, after, pause)?;
    if let (Some(key), Some(target)) = (&a.witness, &a.target) {
        g.witness(key, target, &a.output)?;
    }
    g.print(&report, |report| {
        format!(
            "checkpoint of pid {} -> {} ({} bytes): {} regions, {} pages, {} fds; process {} (stopped {} µs)\nroot {}",
            a.pid,
            a.output.display(),
            report.snapshot.file_bytes,
            report.snapshot.regions,
            report.snapshot.pages,
            report.snapshot.fds,
            if report.killed { "killed" } else { "resumed" },
            report.stopped_us,
            report.snapshot.root
        )
    })
}
