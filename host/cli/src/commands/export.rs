//! `memzinc export`: a snapshot's tables as Parquet (with `check`'s violations, plans and an
//! audit when given) and its records as protobuf. What `hub export` exports too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use memzinc::describe::Snapshot;
use memzinc::reason::{self, Plan, TargetSpec};
use memzinc_cli::interop::{self, ExportReport, Layout};

use super::{print_json, Global};

#[derive(clap::Args)]
pub struct Args {
    /// The directory to write `<table>.parquet` files into.
    #[arg(long)]
    parquet: PathBuf,
    #[command(flatten)]
    what: ExportArgs,
}

/// What `export` and `hub export` put besides the snapshot's own tables.
#[derive(clap::Args, Clone)]
pub struct ExportArgs {
    /// The snapshot core file.
    core: PathBuf,
    /// A plan file whose writes go into the plans table (repeatable).
    #[arg(long = "plan")]
    plans: Vec<PathBuf>,
    /// The output of `memzinc audit --json`: its links go into the attestations table.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// A target spec `check` judges too for the violations table (repeatable).
    #[arg(long)]
    spec: Vec<PathBuf>,
}

impl ExportArgs {
    pub fn export(&self, dir: &Path, layout: Layout) -> Result<ExportReport> {
        let snap = Snapshot::open(&self.core)?;
        let specs = TargetSpec::load_all(&self.spec)?;
        let (violations, _, graph) =
            reason::check_with_graph(&snap, &specs, None, &reason::graph::GraphLimits::default(), true)?;
        let violations = Some(violations);
        let plans = self
            .plans
            .iter()
            .map(|p| Plan::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        let audit = match &self.audit {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
                Some(serde_json::from_str(&text).map_err(|e| memzinc::base::Error::Corrupt {
                    path: p.clone(),
                    kind: "audit report (`memzinc audit --json`)",
                    why: e.to_string(),
                })?)
            }
        };
        let extras = interop::Extras {
            violations,
            graph,
            plans,
            audit,
        };
        Ok(interop::export(&snap, dir, layout, &extras)?)
    }
}

/// What an export wrote, one line per table and record.
pub fn print_export(report: &ExportReport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    for (table, rows) in &report.tables {
        outln!("{table}: {rows} rows");
    }
    for record in &report.records {
        outln!("{record}: protobuf");
    }
    if let Some(why) = &report.types_unavailable {
        outln!("types table empty: {why}");
    }
    outln!("-> {} (root {})", report.dir.display(), report.root);
    Ok(())
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let report = a.what.export(&a.parquet, Layout::Flat)?;
    print_export(&report, g.json)
}
