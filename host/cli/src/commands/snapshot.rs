//! `memzinc snapshot`: freeze, read, hash, resume — one ELF core.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::describe::{self, Snapshot};
use memzinc::reason::TargetSpec;
use memzinc_cli::interop;

use super::{progress_bar, Global};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the core's tables (regions, pages, symbols, types, notes) here as Parquet.
    #[arg(long)]
    parquet: Option<PathBuf>,
    /// Also write the MiniZinc facts of the `--spec` object (models/schema.md) to this file:
    /// `minizinc models/repair.mzn FILE` runs on it unchanged.
    #[arg(long, requires = "spec")]
    dzn: Option<PathBuf>,
    /// Target description for `--dzn`, e.g. models/targets/healme.json.
    #[arg(long, requires = "dzn")]
    spec: Option<PathBuf>,
    /// The previous snapshot of this (tracked) process: read only the pages written since
    /// it. The new core stores only those and refers to PREV for the others (same metadata,
    /// leaves and root as a full snapshot; keep PREV beside it; `memzinc merge` writes the
    /// full core).
    #[arg(long)]
    since: Option<PathBuf>,
    /// With --since: write the full core, the unchanged pages copied from PREV (it costs a
    /// copy of the whole image; the core stands alone).
    #[arg(long, requires = "since")]
    merged: bool,
    /// Witness the snapshot: record its root on chain for `--target`, signed by this keypair
    /// (a snapshot witness the policy names; the `-k` keypair pays). Plans are attested only
    /// against witnessed roots.
    #[arg(long, requires = "target")]
    witness: Option<PathBuf>,
    /// Target name the root is recorded for, as plans name it (e.g. healme).
    #[arg(long, requires = "witness")]
    target: Option<String>,
    /// Keep the target stopped until every page is copied, instead of reading its pages while
    /// it runs through a write-protected view (or a forked copy where the view cannot be had):
    /// the default stops it only for its state; the image is the same.
    #[arg(long)]
    stop_the_world: bool,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    // A bad spec or previous snapshot is refused before the target is frozen.
    let spec = a.spec.map(|s| TargetSpec::load(&s)).transpose()?;
    let mut since = a.since.map(|p| describe::open_since(a.pid, &p, a.merged)).transpose()?;
    let bar = progress_bar(g.json);
    let pause = if a.stop_the_world {
        describe::Pause::StopTheWorld
    } else {
        describe::Pause::CopyOnWrite
    };
    let since_how = since.as_mut().map(|prev| {
        if a.merged {
            describe::Since::Copy(prev)
        } else {
            describe::Since::Refer(prev)
        }
    });
    let report = describe::take_paused(a.pid, since_how, &a.output, bar.as_ref(), pause)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let (Some(dzn), Some(spec)) = (&a.dzn, &spec) {
        memzinc::reason::write_dzn(&Snapshot::open(&a.output)?, spec, dzn)?;
    }
    if let (Some(key), Some(target)) = (&a.witness, &a.target) {
        g.witness(key, target, &a.output)?;
    }
    if let Some(dir) = &a.parquet {
        let snap = Snapshot::open(&a.output)?;
        interop::export(&snap, dir, interop::Layout::Flat, &Default::default())?;
    }
    g.print(&report, |report| format!(
        "snapshot of pid {} -> {} ({} bytes, ELF core): {} regions ({} captured), {} pages ({} unreadable), {} symbols, {} threads, {} fds\nroot {}\ntarget stopped {:.1} ms{}; {} pages read from it{}",
        a.pid,
        a.output.display(),
        report.file_bytes,
        report.regions,
        report.captured_regions,
        report.pages,
        report.unreadable_pages,
        report.symbols,
        report.threads,
        report.fds,
        report.root,
        report.frozen_ms,
        match (report.copy_on_write_by.as_deref(), report.extra_bytes) {
            (Some(by), extra) => format!(
                " (copy-on-write by {by}: read while it ran{})",
                extra.map_or(String::new(), |e| format!("; {:.1} MiB held for pages it wrote meanwhile", e as f64 / (1 << 20) as f64))
            ),
            (None, _) if report.copy_on_write => " (copy-on-write: read while it ran)".to_string(),
            (None, _) => String::new(),
        },
        report.pages_from_target,
        match (&report.since, &report.parent) {
            (Some(_), Some(parent)) => format!(", the rest referred to in {parent} (`memzinc merge` writes the full core)"),
            (Some(_), None) => ", the rest copied from --since".to_string(),
            _ => String::new(),
        }
    ))
}
