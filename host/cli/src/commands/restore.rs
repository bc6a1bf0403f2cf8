//! `memzinc restore`: the checkpointed process back with its PID, optionally with an attested
//! plan applied to its image first.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::reason::Plan;
use memzinc_cli::attest::{restore_attested, restore_tree_attested};

use super::{authority_or_self, Global};

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint's core, or a tree's directory (`checkpoint --tree`).
    core: PathBuf,
    /// A plan file for this core's snapshot root; it must be attested on chain.
    #[arg(long)]
    apply: Option<PathBuf>,
    #[arg(long)]
    authority: Option<String>,
    /// What stands in at a descriptor whose other end was outside the process (a pipe, a unix
    /// socket to a logger) or that cannot be reopened: `FD=PATH` (a file, appended to when
    /// written; a unix socket's path, connected to) or `FD=fd:N` (memzinc's own fd N, shared).
    /// Without it such a pipe becomes /dev/null and such a socket is connected again to its
    /// peer's address; each is said on stderr. Repeatable.
    #[arg(long = "inherit-fd", value_name = "FD=PATH|FD=fd:N")]
    inherit_fd: Vec<String>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let inherit = a
        .inherit_fd
        .iter()
        .map(|i| i.parse())
        .collect::<memzinc::base::Result<Vec<memzinc::checkpoint::InheritFd>>>()?;
    if memzinc::checkpoint::is_tree(&a.core) {
        return restore_tree(a, &inherit, g);
    }
    let Some(plan) = a.apply else {
        let report = memzinc::checkpoint::restore(&a.core, None, &inherit)?;
        for notice in &report.notices {
            eprintln!("notice: {notice}");
        }
        g.print(&report, |report| {
            format!(
                "restored pid {} from {}: {} regions, {} bytes, {} fds in {} µs; running detached",
                report.pid,
                a.core.display(),
                report.regions,
                report.bytes,
                report.fds,
                report.elapsed_us
            )
        })?;
        return Ok(());
    };
    let patch = Plan::load(&plan)?.patch();
    let client = g.client()?;
    let authority = authority_or_self(&client, a.authority.as_deref())?;
    let done = restore_attested(&client, &authority, &a.core, &patch, &inherit)?;
    for notice in &done.report.notices {
        eprintln!("notice: {notice}");
    }
    g.print(&done, |done| {
        format!(
            "restored pid {} from {} with {} writes under attestation {} (seq {}); running detached",
            done.report.pid,
            a.core.display(),
            done.report.writes_applied,
            done.attestation,
            done.seq
        )
    })
}

/// `restore DIR` of a tree (`checkpoint --tree`).
fn restore_tree(a: Args, inherit: &[memzinc::checkpoint::InheritFd], g: &Global) -> Result<()> {
    let line = |r: &memzinc::checkpoint::TreeRestoreReport| {
        let pids: Vec<String> = r.pids.iter().map(i32::to_string).collect();
        format!(
            "restored the tree of pid {} from {}: {} processes ({}), {} bytes in {} µs; running detached",
            r.root,
            a.core.display(),
            r.pids.len(),
            pids.join(", "),
            r.bytes,
            r.elapsed_us
        )
    };
    let Some(plan) = &a.apply else {
        let report = memzinc::checkpoint::restore_tree(&a.core, None, inherit)?;
        for notice in &report.notices {
            eprintln!("notice: {notice}");
        }
        return g.print(&report, line);
    };
    let patch = Plan::load(plan)?.patch();
    let client = g.client()?;
    let authority = authority_or_self(&client, a.authority.as_deref())?;
    let done = restore_tree_attested(&client, &authority, &a.core, &patch, inherit)?;
    for notice in &done.report.notices {
        eprintln!("notice: {notice}");
    }
    g.print(&done, |done| {
        format!(
            "{}; {} writes applied to pid {} under attestation {} (seq {})",
            line(&done.report),
            done.report.writes_applied,
            done.report.patched_pid,
            done.attestation,
            done.seq
        )
    })
}
