//! `memzinc merge`: an incremental snapshot written as the full core it stands for.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::describe::Snapshot;
use serde::Serialize;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// An incremental snapshot (`snapshot --since`); its parents are found as it names them.
    snapshot: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Serialize)]
struct Report {
    output: PathBuf,
    root: String,
    pages: u64,
    /// Pages taken from the snapshot's parents (not stored in it).
    from_parents: u64,
    /// Snapshots the pages came from: the incremental one and each parent.
    chain: Vec<PathBuf>,
    file_bytes: u64,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let snap = Snapshot::open(&a.snapshot)?;
    let mut chain = vec![snap.path.clone()];
    let mut at = &snap;
    while let Some(parent) = at.parent() {
        chain.push(parent.path.clone());
        at = parent;
    }
    let merged = snap.merge(&a.output)?;
    let report = Report {
        output: a.output.clone(),
        root: merged.meta.root.clone(),
        pages: merged.meta.page_count,
        from_parents: snap.meta.page_count - snap.stored_pages(),
        chain,
        file_bytes: std::fs::metadata(&a.output)?.len(),
    };
    g.print(&report, |r| {
        format!(
            "{} -> {} ({} bytes, ELF core): {} pages, {} from {} parent(s); root {}",
            a.snapshot.display(),
            r.output.display(),
            r.file_bytes,
            r.pages,
            r.from_parents,
            r.chain.len() - 1,
            r.root
        )
    })
}
