//! `memzinc layout`: struct field orders that waste least space, decided by MiniZinc.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use memzinc::describe::Snapshot;
use memzinc::introspect::DebugTypes;
use memzinc::reason::layout::{self, LayoutOptions};
use memzinc::reason::solver::Cancel;

use super::{models_dir, print_json, Global};

#[derive(clap::Args)]
pub struct Args {
    /// A snapshot (its binary's DWARF is read) or an ELF binary built with -g.
    target: PathBuf,
    /// Only this struct (repeatable).
    #[arg(long = "struct")]
    structs: Vec<String>,
    /// Member names that must share one 64-byte cache line, comma-separated.
    #[arg(long, value_delimiter = ',')]
    hot: Vec<String>,
    /// Also list structs that are already as small as they can be.
    #[arg(long)]
    all: bool,
    /// Wall-clock limit per distinct struct shape, seconds.
    #[arg(long, default_value_t = 10)]
    time_limit: u64,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let types = debug_types_of(&a.target)?;
    let mut opts = LayoutOptions::new(&models_dir());
    opts.solver.time_limit = Duration::from_secs(a.time_limit);
    opts.solver.cancel = Some(Cancel::on_signals()?);
    opts.hot = a.hot;
    opts.only = a.structs;
    opts.all = a.all;
    let report = layout::reorganize(&types, &opts)?;
    if g.json {
        print_json(&report)?;
    } else {
        for s in &report.structs {
            out!("{}", layout::render(&s.name, &s.current, s.size));
            let how = match s.decided {
                layout::Decided::AlreadyMinimal => "already minimal".to_string(),
                layout::Decided::Optimal => "optimal, proven by gecode".to_string(),
                layout::Decided::Feasible => "best found, not proven optimal".to_string(),
            };
            outln!(
                "/* --- reorganized: size {} -> {} (saved {}; lower bound {}; {how}{}) --- */",
                s.size,
                s.optimal_size,
                s.saved,
                s.lower_bound,
                s.hot_line
                    .map(|l| format!("; hot fields in cache line {l}"))
                    .unwrap_or_default()
            );
            out!("{}", layout::render(&s.name, &s.suggested, s.optimal_size));
            outln!();
        }
        for k in &report.skipped {
            outln!("skipped struct {}: {}", k.name, k.why);
        }
        outln!(
            "{} struct(s) reported, {} skipped; {} distinct shape(s), {} solver run(s), {} ms",
            report.structs.len(),
            report.skipped.len(),
            report.distinct_shapes,
            report.solver_runs,
            report.solve_ms
        );
    }
    Ok(())
}

/// DWARF types of a snapshot's binary (at the snapshot's addresses) or of an ELF file.
fn debug_types_of(target: &std::path::Path) -> Result<DebugTypes> {
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(target).with_context(|| target.display().to_string())?,
        &mut magic,
    )
    .with_context(|| target.display().to_string())?;
    anyhow::ensure!(&magic == b"\x7fELF", "{}: not an ELF file", target.display());
    // A memzinc snapshot is an ELF core with a MEMZINC seal; anything else is a binary.
    match Snapshot::open(target) {
        Ok(snap) => Ok(DebugTypes::for_snapshot(&snap)?),
        Err(memzinc::base::Error::Corrupt { .. }) => Ok(DebugTypes::load(target)?),
        Err(e) => Err(e.into()),
    }
}
