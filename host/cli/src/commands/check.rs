//! `memzinc check`: a snapshot's invariants judged; exit 2 when something is violated.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::describe::Snapshot;
use memzinc::reason::graph::GraphLimits;
use memzinc::reason::solver::{Cancel, SolverOptions};
use memzinc::reason::{self, rules, TargetSpec};

use super::{models_dir, print_json, Exit, Global};

#[derive(clap::Args)]
pub struct Args {
    snapshot: PathBuf,
    /// A target spec whose bounds and orderings to check too (repeatable).
    #[arg(long)]
    spec: Vec<PathBuf>,
    /// Read the DWARF from this file instead of the path the snapshot records.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The target's model file of rules (default: models/targets/<executable name>.mzn
    /// when it exists).
    #[arg(long, conflicts_with = "no_rules")]
    rules: Option<PathBuf>,
    /// Do not judge the target's model file.
    #[arg(long)]
    no_rules: bool,
    /// Follow pointers to at most this many objects (the rest is not judged, and said so).
    #[arg(long, default_value_t = GraphLimits::default().max_objects)]
    max_objects: usize,
    /// With --json: also every object, pointer and heap chunk of the object graph.
    #[arg(long)]
    graph: bool,
    /// Stop following pointers after this many seconds (the rest is not judged, and said so).
    #[arg(long, default_value_t = GraphLimits::default().max_time.as_secs())]
    max_seconds: u64,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let snap = Snapshot::open(&a.snapshot)?;
    let specs = TargetSpec::load_all(&a.spec)?;
    let limits = GraphLimits {
        max_objects: a.max_objects,
        max_time: std::time::Duration::from_secs(a.max_seconds),
    };
    let (mut report, types, graph) =
        reason::check_with_graph(&snap, &specs, a.binary.as_deref(), &limits, a.graph && g.json)?;
    let models = models_dir();
    let model_file = if a.no_rules {
        None
    } else {
        a.rules.or_else(|| rules::model_for(&snap, &models))
    };
    if let Some(model_file) = &model_file {
        anyhow::ensure!(
            report.types_unavailable.is_none(),
            "{}: rules need the binary's DWARF: {}",
            model_file.display(),
            report.types_unavailable.as_deref().unwrap_or_default()
        );
        let judge = rules::Judge {
            snapshot: &snap,
            types: &types,
            model: model_file,
            models_dir: &models,
        };
        let solver = SolverOptions {
            cancel: Some(Cancel::on_signals()?),
            ..Default::default()
        };
        let judged = judge.check(&solver)?;
        report.merge_rules(model_file, judged);
    }
    if g.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(graph) = graph {
            value["graph_data"] = serde_json::to_value(graph)?;
        }
        print_json(&value)?;
    } else {
        for f in &report.findings {
            let at = f.location();
            let rule = serde_json::to_value(f.rule)?;
            outln!(
                "{:#018x} {at}: {} — {}",
                f.address,
                rule.as_str().unwrap_or("?"),
                f.detail
            );
        }
        if let Some(why) = &report.types_unavailable {
            outln!("type checks skipped: {why}");
        }
        if report.heap_objects > 0 {
            outln!("heap: {} exported object(s) judged", report.heap_objects);
        }
        if let Some(r) = &report.rules {
            outln!("rules: {} rule(s) of {} over {} object(s)", r.rules, r.model, r.objects);
        }
        if let Some(g) = &report.graph {
            outln!("heap: {}", g.heap);
            outln!(
                "graph: {} object(s) from {} global(s) and {} orphan(s), {} on the heap; {} pointer(s) followed, {} broken ({} ms)",
                g.objects, g.roots, g.orphans, g.heap_objects, g.edges, g.broken_edges, g.millis
            );
            if let Some(bound) = &g.bound {
                outln!("graph: {bound}");
            }
        }
        outln!(
            "{} violation(s); {} globals, {} fields, {} pointers, {} regions, {} spec(s) checked; {} part(s) not judged",
            report.findings.len(),
            report.globals,
            report.fields,
            report.pointers,
            report.regions,
            report.specs,
            report.not_judged.len()
        );
    }
    if !report.findings.is_empty() {
        return Err(Exit(2).into());
    }
    Ok(())
}
