//! `memzinc track`: follow a process's writes from inside it (userfaultfd write-protect).

use anyhow::Result;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pid: i32,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let report = memzinc::describe::track(a.pid)?;
    g.print(&report, |report| {
        format!(
            "{} pid {}: {} regions ({} KiB) write-protected through fd {} in the target ({} not trackable); state {}",
            if report.already { "already tracking" } else { "tracking" },
            a.pid,
            report.tracked_regions,
            report.tracked_bytes / 1024,
            report.uffd,
            report.untracked_regions,
            report.state_file.display()
        )
    })
}
