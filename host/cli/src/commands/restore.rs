//! `memzinc restore`: the checkpointed process back with its PID, optionally with an attested
//! plan applied to its image first.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::reason::Plan;
use memzinc_cli::attest::{restore_attested, restore_attested_lazy, restore_tree_attested};

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
    /// Run the process as soon as its registers, map and kernel objects are back; its pages
    /// arrive on first touch and from a background copy, each checked against its leaf in the
    /// core (a page that does not match kills the process). memzinc stays in the foreground
    /// until every page is in; killed before that, it takes the process with it.
    #[arg(long)]
    lazy: bool,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let inherit = a
        .inherit_fd
        .iter()
        .map(|i| i.parse())
        .collect::<memzinc::base::Result<Vec<memzinc::checkpoint::InheritFd>>>()?;
    if memzinc::checkpoint::is_tree(&a.core) {
        if a.lazy {
            anyhow::bail!("--lazy restores one process; a tree is restored eagerly");
        }
        return restore_tree(a, &inherit, g);
    }
    if a.lazy {
        return run_lazy(a, inherit, g);
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

/// `--lazy`: one line when the process runs again, one when every page is in.
fn run_lazy(a: Args, inherit: Vec<memzinc::checkpoint::InheritFd>, g: &Global) -> Result<()> {
    let (lazy, attested) = match &a.apply {
        None => (memzinc::checkpoint::restore_lazy(&a.core, None, &inherit)?, None),
        Some(plan) => {
            let patch = Plan::load(plan)?.patch();
            let client = g.client()?;
            let authority = authority_or_self(&client, a.authority.as_deref())?;
            let (done, lazy) = restore_attested_lazy(&client, &authority, &a.core, &patch, &inherit)?;
            (lazy, Some(done))
        }
    };
    for notice in &lazy.report.notices {
        eprintln!("notice: {notice}");
    }
    let report = &lazy.report;
    if !g.json {
        let applied = attested.as_ref().map_or(String::new(), |d| {
            format!(
                " with {} writes under attestation {} (seq {})",
                d.report.writes_applied, d.attestation, d.seq
            )
        });
        outln!(
            "restored pid {} from {}{applied}: running again after {:.1} ms; {} regions, {} fds; pages arriving lazily",
            report.pid,
            a.core.display(),
            report.elapsed_us as f64 / 1000.0,
            report.regions,
            report.fds
        );
        use std::io::Write as _;
        std::io::stdout().flush()?;
    }
    let pages = lazy.wait()?;
    #[derive(serde::Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        pages: &'a memzinc::checkpoint::LazyReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        attested: Option<&'a memzinc_cli::attest::AttestedRestore>,
    }
    g.print(
        &Out {
            pages: &pages,
            attested: attested.as_ref(),
        },
        |_| {
            format!(
                "all {} pages in after {:.1} ms ({} on first touch, {} by the background copy, {} dropped by the process{}){}; running detached",
                pages.pages,
                pages.all_in_after_us as f64 / 1000.0,
                pages.pages_on_fault,
                pages.pages_in_background,
                pages.pages_dropped,
                if pages.forks > 0 { format!(", {} forked children served", pages.forks) } else { String::new() },
                if pages.exited { "; the process exited before" } else { "" },
            )
        },
    )
}
