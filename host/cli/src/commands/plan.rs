//! `memzinc plan`: what is wrong and the smallest repair, decided by MiniZinc, as a plan file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use memzinc::describe::Snapshot;
use memzinc::reason::solver::{Cancel, Stats};
use memzinc::reason::{self, PlanOptions, Planner, TargetSpec};

use super::{models_dir, Global};

#[derive(clap::Args)]
pub struct Args {
    snapshot: PathBuf,
    #[command(flatten)]
    planner: PlannerArgs,
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Solver backend: cbc (linear FlatZinc -> LP -> cbc; proves repairs of 100k pointers
    /// optimal, which Gecode cannot), gecode, pumpkin, or wasm-highs|wasm-cbc|wasm-chuffed|
    /// wasm-gecode (MiniZinc 2.10 in WebAssembly). Every answer is checked against the FlatZinc.
    #[arg(long, default_value = "cbc")]
    solver: String,
    /// Wall-clock limit for the solver, seconds (enforced by memzinc, flattening included).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// The repair model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Instead of a repair: move the objects of the linked structure this global reaches (a
    /// list, a tree) into traversal order among the chunks they occupy, rewriting every
    /// pointer to them; objects an untyped word points to stay where they are (pinned).
    /// Several globals (repeated, or comma-separated) share their chunks of one size: each
    /// structure gets a run of them, in the order named.
    #[arg(long, value_name = "GLOBAL", value_delimiter = ',', conflicts_with_all = ["spec", "rules", "heap", "model"])]
    relocate: Vec<String>,
    /// Most objects one relocation moves (default: the most one attestation holds). A larger
    /// one is done in rounds: apply this plan, snapshot and plan again for the rest.
    #[arg(long, requires = "relocate", value_parser = clap::value_parser!(u32).range(2..))]
    max_moves: Option<u32>,
}

/// What to plan against: the flags `plan` and `watch` share (none: the target's model file,
/// else its exported heap).
#[derive(clap::Args)]
pub struct PlannerArgs {
    /// Target description (layout and invariants), e.g. models/targets/healme.json.
    #[arg(long, conflicts_with = "rules")]
    spec: Option<PathBuf>,
    /// The target's model file of rules over the generated facts (models/schema.md); default
    /// models/targets/<executable name>.mzn when there is one.
    #[arg(long, conflicts_with = "heap")]
    rules: Option<PathBuf>,
    /// Repair the reference-counted heap the target exports (MEMZINC_HEAP_* globals) with
    /// the aggregated model (models/heap_repair.mzn); the default when there is no spec and
    /// no model file but such a heap.
    #[arg(long, conflicts_with = "spec")]
    heap: bool,
}

impl PlannerArgs {
    pub fn planner(self) -> Result<Planner> {
        Ok(Planner {
            spec: self.spec.map(|s| TargetSpec::load(&s)).transpose()?,
            rules: self.rules,
            heap: self.heap,
        })
    }
}

/// Solver options from `--solver` and `--time-limit`, cancelled by Ctrl-C.
pub fn options(solver: &str, time_limit: u64) -> Result<PlanOptions> {
    let mut opts = PlanOptions::new(&models_dir());
    opts.solver.backend = solver.parse()?;
    opts.solver.time_limit = Duration::from_secs(time_limit);
    opts.solver.cancel = Some(Cancel::on_signals()?);
    Ok(opts)
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let snap = Snapshot::open(&a.snapshot)?;
    if !a.relocate.is_empty() {
        let output = a.output.unwrap_or_else(|| a.snapshot.with_extension("plan.json"));
        let max_moves = a.max_moves.unwrap_or(memzinc_verifier::relocation_stream::MAX_SLOTS);
        return relocate(&snap, &a.relocate, max_moves as usize, &output, g);
    }
    let mut opts = options(&a.solver, a.time_limit)?;
    opts.model = a.model;
    let output = a.output.unwrap_or_else(|| a.snapshot.with_extension("plan.json"));
    let plan = reason::plan(&snap, &a.planner.planner()?, &opts, &output)?;
    plan.save(&output)?;
    if g.json {
        outln!("{}", plan.to_json_pretty()?);
        return Ok(());
    }
    for f in &plan.findings {
        outln!("violation {:#x} {}: {}", f.address, f.location(), f.detail);
    }
    for w in &plan.writes {
        outln!(
            "write {:#x} {}: {} -> {}",
            w.address,
            w.field,
            hex::encode(&w.old),
            hex::encode(&w.new)
        );
    }
    outln!(
        "plan -> {} ({} writes, {} bytes changed, {} by {})",
        output.display(),
        plan.writes.len(),
        plan.changed_bytes(),
        plan.status(),
        plan.solver
    );
    if let Some(s) = &plan.stats {
        outln!("{}", stats_line(s));
    }
    Ok(())
}

/// `plan --relocate GLOBAL[,GLOBAL...]`.
fn relocate(snap: &Snapshot, roots: &[String], max_moves: usize, output: &std::path::Path, g: &Global) -> Result<()> {
    let types = memzinc::introspect::DebugTypes::for_snapshot(snap)?;
    let mut r = memzinc::reason::graph::plan_relocation(snap, types, roots, &reason::target_name(snap), max_moves)?;
    // No model decides a relocation; it names the models of this memzinc like every plan, so a
    // policy that pins them accepts it.
    r.plan.model_hash = PlanOptions::new(&models_dir()).models_hash()?;
    let t = std::time::Instant::now();
    r.plan.save(output)?;
    tracing::debug!("relocate: saved in {:?}", t.elapsed());
    let s = &r.summary;
    if g.json {
        use std::io::Write as _;
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        crate::output_written(
            r.plan
                .write_json_with(&mut stdout, "relocation", s)
                .and_then(|()| writeln!(stdout))
                .and_then(|()| stdout.flush()),
        );
        return Ok(());
    }
    for p in &s.pins {
        outln!("pinned {:#x} {}: {}", p.address, p.path, p.why);
    }
    for t in &s.structures {
        outln!(
            "relocate {} ({}): {} object(s), {} moved, {} pinned; along its traversal: cache-line changes {} -> {}, \
             page changes {} -> {}; span {} -> {} bytes",
            t.root,
            t.type_name,
            t.objects,
            t.moved,
            t.pinned,
            t.line_changes_before,
            t.line_changes_after,
            t.page_changes_before,
            t.page_changes_after,
            t.span_before,
            t.span_after
        );
    }
    outln!("{} other pointer(s) rewritten", s.pointers_rewritten);
    if s.deferred > 0 {
        outln!(
            "{} object(s) left for a later round: this plan moves {}, at most {max_moves}; apply it, then snapshot and plan again",
            s.deferred,
            s.moved
        );
    }
    outln!(
        "plan -> {} ({} writes, {} bytes)",
        output.display(),
        r.plan.writes.len(),
        r.plan.writes.iter().map(|w| w.new.len()).sum::<usize>()
    );
    Ok(())
}

/// One line of solver statistics.
fn stats_line(s: &Stats) -> String {
    let part = |name: &str, v: Option<u64>, unit: &str| v.map(|v| format!(" {name} {v}{unit}")).unwrap_or_default();
    format!(
        "solver {}: total {} ms;{}{}{}{}{}{}{}",
        s.backend,
        s.total_ms,
        part("flatten", s.flatten_ms, " ms"),
        part("solve", s.solve_ms, " ms"),
        part("check", s.check_ms, " ms"),
        part("variables", s.variables, ""),
        part("constraints", s.constraints, ""),
        part("nodes", s.nodes, ""),
        part("peak RSS", s.peak_rss_kb.map(|kb| kb / 1024), " MiB"),
    )
}
