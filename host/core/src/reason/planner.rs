//! The one entry point to planning: which planner a snapshot gets, and its plan. `plan`,
//! `watch` and the demo all come through here, so each of them can use every planner.

use std::path::{Path, PathBuf};

use super::plan::Plan;
use super::refheap::{self, Heap};
use super::solver::SolverOptions;
use super::spec::{self, TargetSpec};
use super::user_rules::{self, Judge};
use crate::base::{Error, Result};
use crate::describe::Snapshot;
use crate::introspect::DebugTypes;

/// What to plan against, as the user asks for it. With nothing asked: the target's model file
/// (`models/targets/<executable name>.mzn`) if there is one, else the reference-counted heap it
/// exports, else what its typed object graph finds (`reason::graph`).
#[derive(Clone, Debug, Default)]
pub struct Planner {
    /// A target spec's bounds and orderings (`--spec`).
    pub spec: Option<TargetSpec>,
    /// The rules of a model file (`--rules`).
    pub rules: Option<PathBuf>,
    /// The exported heap (`--heap`), even when the target has a model file.
    pub heap: bool,
}

/// How plans are solved.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub solver: SolverOptions,
    /// `models/`: the drivers and the targets' model files.
    pub models_dir: PathBuf,
    /// The spec planner's model, instead of `models/repair.mzn` (`--model`).
    pub model: Option<PathBuf>,
}

impl PlanOptions {
    /// SHA-256 of the models these options plan with: `models_dir`'s, with `model` standing in
    /// for `repair.mzn` when given. What each plan names as its `model_hash`.
    pub fn models_hash(&self) -> Result<[u8; 32]> {
        match &self.model {
            Some(model) => crate::base::models_hash_with(&self.models_dir, &[("repair.mzn", model)]),
            None => crate::base::models_hash(&self.models_dir),
        }
    }

    /// Gecode, 60 s, 4 GiB, answers verified, the models in `models_dir`.
    pub fn new(models_dir: &Path) -> PlanOptions {
        PlanOptions {
            solver: SolverOptions {
                verify: true,
                ..Default::default()
            },
            models_dir: models_dir.into(),
            model: None,
        }
    }
}

/// The name a plan gives a snapshot's target: its executable's file name.
pub fn target_name(snap: &Snapshot) -> String {
    Path::new(&snap.meta.exe)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("target")
        .to_string()
}

/// Plans the smallest repair of what `planner` finds wrong in `snap`: a plan without writes
/// (and without findings) when nothing is. The facts given to the solver are kept beside
/// `work` (`work` with the extension `dzn` or `facts.mzn`). The plan names the hash of the
/// models it was solved with (`PlanOptions::models_hash`), which a policy may pin.
pub fn plan(snap: &Snapshot, planner: &Planner, opts: &PlanOptions, work: &Path) -> Result<Plan> {
    let model_hash = opts.models_hash()?;
    let mut plan = plan_unhashed(snap, planner, opts, work)?;
    plan.model_hash = model_hash;
    Ok(plan)
}

fn plan_unhashed(snap: &Snapshot, planner: &Planner, opts: &PlanOptions, work: &Path) -> Result<Plan> {
    if let Some(spec) = &planner.spec {
        let model = opts.model.clone().unwrap_or_else(|| opts.models_dir.join("repair.mzn"));
        return spec::plan(snap, spec, &opts.solver, &model, &work.with_extension("dzn"));
    }
    let rules = match planner.heap {
        true => None,
        false => planner
            .rules
            .clone()
            .or_else(|| user_rules::model_for(snap, &opts.models_dir)),
    };
    let target = target_name(snap);
    if let Some(rules) = rules {
        let types = DebugTypes::for_snapshot(snap)?;
        let judge = Judge {
            snapshot: snap,
            types: &types,
            model: &rules,
            models_dir: &opts.models_dir,
        };
        return judge.plan(&target, &opts.solver, &work.with_extension("facts.mzn"));
    }
    match Heap::from_snapshot(snap)? {
        Some(heap) => refheap::plan_snapshot(
            snap,
            &heap,
            &opts.solver,
            &opts.models_dir,
            &work.with_extension("dzn"),
            &target,
        ),
        // An ordinary program: repair what its object graph finds.
        None => {
            let types = DebugTypes::for_snapshot(snap).map_err(|e| {
                Error::Usage(format!(
                    "nothing to plan against: {e} (give --spec or --rules, or a binary built with -g)"
                ))
            })?;
            super::graph::plan_graph(
                snap,
                types,
                &opts.solver,
                &opts.models_dir,
                &work.with_extension("dzn"),
                &target,
            )
        }
    }
}
