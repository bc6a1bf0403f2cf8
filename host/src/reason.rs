//! Stage 3 (reason): facts from a snapshot become MiniZinc data; the real `minizinc` solves
//! `models/repair.mzn`; its answer becomes a patch plan of concrete byte writes.
//!
//! Rust does the fact-finding (where the object is, what each field holds, which invariants
//! fail); the solver only decides the new values. Indices and small integers go to MiniZinc,
//! never addresses (Gecode's integers are 32-bit).

use std::path::{Path, PathBuf};

use memzinc_verifier::plan::{PatchPlan, Submission, Write as PlanWrite};
use memzinc_verifier::wire::Region;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::Sha2;

/// How a cooperating target describes one object: where it is and what must hold.
/// (`healme --describe` prints this; the DWARF reader will produce the same shape.)
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetSpec {
    pub target: String,
    pub symbol: String,
    pub size: u64,
    pub fields: Vec<FieldSpec>,
    /// Pairs of field names that must satisfy `left <= right`.
    #[serde(default)]
    pub le: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    pub offset: u64,
    pub size: u64,
    pub signed: bool,
    pub min: i64,
    pub max: i64,
    pub default: i64,
}

impl TargetSpec {
    pub fn load(path: &Path) -> Result<TargetSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: TargetSpec = serde_json::from_str(&text).map_err(|e| Error::Spec {
            path: path.into(),
            why: e.to_string(),
        })?;
        spec.validate().map_err(|why| Error::Spec { path: path.into(), why })?;
        Ok(spec)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        for f in &self.fields {
            if ![1, 2, 4].contains(&f.size) {
                return Err(format!("field {}: size {} (supported: 1, 2, 4 bytes)", f.name, f.size));
            }
            if f.offset + f.size > self.size {
                return Err(format!("field {} lies outside the {}-byte object", f.name, self.size));
            }
            // Keep every number the solver sees inside Gecode's 32-bit integers.
            if f.min > f.max || f.min < -(1 << 30) || f.max > (1 << 30) * 2 - 1 {
                return Err(format!("field {}: bounds {}..{} unusable", f.name, f.min, f.max));
            }
        }
        for (l, r) in &self.le {
            if self.index(l).is_none() || self.index(r).is_none() {
                return Err(format!("ordering {l} <= {r} names an unknown field"));
            }
        }
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

fn decode_field(bytes: &[u8], signed: bool) -> i64 {
    let mut buf = [0u8; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    let raw = u64::from_le_bytes(buf);
    if signed && bytes[bytes.len() - 1] & 0x80 != 0 {
        (raw | (u64::MAX << (bytes.len() * 8))) as i64
    } else {
        raw as i64
    }
}

fn encode_field(value: i64, size: usize) -> Vec<u8> {
    value.to_le_bytes()[..size].to_vec()
}

/// An invariant the snapshot violates, found by Rust before any solving.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Violation {
    pub address: u64,
    pub field: String,
    pub rule: String,
}

/// One planned write with where it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlannedWrite {
    pub address: u64,
    pub old: String,
    pub new: String,
    pub field: String,
    pub rule: String,
}

/// The plan file `memzinc plan` writes and `attest`/`apply` read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanFile {
    pub memzinc_plan: u32,
    pub target: String,
    pub target_id: String,
    pub snapshot_root: String,
    pub solver: String,
    /// OPTIMAL only when the solver proved it.
    pub status: String,
    pub changed_bytes: u64,
    pub violations: Vec<Violation>,
    pub regions: Vec<PlanRegion>,
    pub writes: Vec<PlannedWrite>,
    pub plan_hash: String,
    /// The Merkle evidence binding the plan to its snapshot (regions, old bytes' pages), as the
    /// hex of its wire encoding. It makes the plan file all `attest` needs.
    pub evidence: String,
    /// How the solve went (absent when nothing needed solving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::solver::Stats>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlanRegion {
    pub start: u64,
    pub end: u64,
    pub flags: u8,
}

fn hex32(s: &str, what: &str, path: &Path) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::Corrupt {
        path: path.into(),
        kind: "plan",
        why: format!("{what}: {e}"),
    })?;
    Ok(out)
}

impl PlanFile {
    /// The verifier's view of this plan: what `attest` sends and `apply` executes.
    pub fn to_patch_plan(&self, path: &Path) -> Result<PatchPlan> {
        let corrupt = |why: String| Error::Corrupt {
            path: path.into(),
            kind: "plan",
            why,
        };
        let writes = self
            .writes
            .iter()
            .map(|w| {
                Ok(PlanWrite {
                    address: w.address,
                    old: hex::decode(&w.old).map_err(|e| corrupt(format!("old bytes: {e}")))?,
                    new: hex::decode(&w.new).map_err(|e| corrupt(format!("new bytes: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PatchPlan {
            target_id: hex32(&self.target_id, "target_id", path)?,
            snapshot_root: hex32(&self.snapshot_root, "snapshot_root", path)?,
            regions: self
                .regions
                .iter()
                .map(|r| Region {
                    start: r.start,
                    end: r.end,
                    flags: r.flags,
                })
                .collect(),
            writes,
        })
    }

    /// The plan with its evidence, as uploaded to the attestor.
    pub fn to_submission(&self, path: &Path) -> Result<Submission> {
        let plan = self.to_patch_plan(path)?;
        let corrupt = |why: String| Error::Corrupt {
            path: path.into(),
            kind: "plan",
            why,
        };
        let evidence = hex::decode(&self.evidence).map_err(|e| corrupt(format!("evidence: {e}")))?;
        let mut bytes = plan.encode();
        bytes.extend_from_slice(&evidence);
        let parsed =
            memzinc_verifier::wire::Submission::parse(&bytes).map_err(|e| corrupt(format!("evidence: {e}")))?;
        Ok(Submission {
            plan,
            evidence: memzinc_verifier::plan::Evidence::from_view(&parsed.evidence),
        })
    }

    pub fn load(path: &Path) -> Result<(PlanFile, PatchPlan)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: PlanFile = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            path: path.into(),
            kind: "plan",
            why: e.to_string(),
        })?;
        let plan = file.to_patch_plan(path)?;
        Ok((file, plan))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Corrupt {
            path: path.into(),
            kind: "plan",
            why: e.to_string(),
        })?;
        crate::fsutil::write_file_atomically(path, &json)
    }
}

/// SHA-256 of the MiniZinc models (`*.mzn` in `dir`, by name): what a policy's `model_hash` pins.
pub fn models_hash(dir: &Path) -> Result<[u8; 32]> {
    use sha2::Digest;
    let mut models: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mzn"))
        .collect();
    models.sort();
    let mut h = sha2::Sha256::new();
    for m in &models {
        h.update(std::fs::read(m).map_err(|e| Error::io(m, e))?);
    }
    Ok(h.finalize().into())
}

/// SHA-256 of one file (a policy's `verifier_hash` pins the program file's).
pub fn file_hash(path: &Path) -> Result<[u8; 32]> {
    use sha2::Digest;
    Ok(sha2::Sha256::digest(std::fs::read(path).map_err(|e| Error::io(path, e))?).into())
}

/// The repair model and how to run it.
#[derive(Clone, Debug)]
pub struct SolverOptions {
    pub solver: crate::solver::SolverOptions,
    pub model: PathBuf,
}

impl SolverOptions {
    /// Gecode, 60 s, 4 GiB, `repair.mzn` in `models_dir`, answers verified.
    pub fn new(models_dir: &Path) -> SolverOptions {
        SolverOptions {
            solver: crate::solver::SolverOptions {
                verify: true,
                ..Default::default()
            },
            model: models_dir.join("repair.mzn"),
        }
    }
}

/// What the solver answered.
#[derive(Clone, Debug)]
pub struct Solution {
    pub values: Vec<i64>,
    /// Proven optimal by the solver (and, for cbc or a verified Gecode answer, checked).
    pub optimal: bool,
    pub stats: crate::solver::Stats,
    /// Whether the full assignment was checked against the FlatZinc.
    pub checked: bool,
}

/// Solves the repair model on `dzn` with the runner (limits, cancellation, statistics,
/// checking: see `crate::solver`).
pub fn solve(opts: &SolverOptions, dzn: &Path) -> Result<Solution> {
    let run = crate::solver::run(&opts.solver, &opts.model, &[dzn])?;
    match run.status {
        crate::solver::Status::Unsatisfiable => {
            return Err(Error::MiniZinc(
                "the invariants cannot all hold: no repair exists".into(),
            ))
        }
        crate::solver::Status::Unknown => {
            return Err(Error::MiniZinc(format!(
                "no solution within {:?} and no proof there is none",
                opts.solver.time_limit
            )))
        }
        _ => {}
    }
    let values = run
        .ints("value")
        .ok_or_else(|| Error::MiniZinc(format!("the answer has no integer array `value`: {}", run.output)))?;
    Ok(Solution {
        values,
        optimal: run.status == crate::solver::Status::Optimal,
        checked: run.check.as_ref().is_some_and(|c| c.ok()),
        stats: run.stats,
    })
}

/// Checks values against the spec's bounds and orderings in Rust: a solver's answer becomes a
/// plan only if the repaired object satisfies every invariant.
pub fn check_values(spec: &TargetSpec, values: &[i64]) -> std::result::Result<(), String> {
    if values.len() != spec.fields.len() {
        return Err(format!("expected {} values, got {}", spec.fields.len(), values.len()));
    }
    for (f, &v) in spec.fields.iter().zip(values) {
        if v < f.min || v > f.max {
            return Err(format!("{} = {v} is outside {}..{}", f.name, f.min, f.max));
        }
    }
    for (l, r) in &spec.le {
        let (li, ri) = (spec.index(l).unwrap_or(0), spec.index(r).unwrap_or(0));
        if values[li] > values[ri] {
            return Err(format!("{l} = {} > {r} = {}", values[li], values[ri]));
        }
    }
    Ok(())
}

/// Which invariant of a spec a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecRule {
    /// A field outside its `min..=max`.
    Bounds,
    /// An ordering `left <= right` that does not hold.
    Order,
}

/// The current values and the violations, read from the snapshot.
pub fn facts(snapshot: &Snapshot, spec: &TargetSpec) -> Result<(u64, Vec<i64>, Vec<Violation>)> {
    let (base, current, violations) = spec_violations(snapshot, spec)?;
    Ok((base, current, violations.into_iter().map(|(_, v)| v).collect()))
}

/// What a spec says of a snapshot: the object's address, its current values, and each
/// violation with the kind of invariant it breaks.
pub type SpecFacts = (u64, Vec<i64>, Vec<(SpecRule, Violation)>);

/// [`facts`] with each violation's kind of invariant.
pub fn spec_violations(snapshot: &Snapshot, spec: &TargetSpec) -> Result<SpecFacts> {
    let base = snapshot.symbol(&spec.symbol)?.address;
    let mut current = Vec::with_capacity(spec.fields.len());
    let mut violations = Vec::new();
    for f in &spec.fields {
        let bytes = snapshot.read(base + f.offset, f.size as usize)?;
        let v = decode_field(&bytes, f.signed);
        if v < f.min || v > f.max {
            violations.push((
                SpecRule::Bounds,
                Violation {
                    address: base + f.offset,
                    field: format!("{}.{}", spec.symbol, f.name),
                    rule: format!("{} <= {} <= {} (is {v})", f.min, f.name, f.max),
                },
            ));
        }
        current.push(v);
    }
    for (l, r) in &spec.le {
        let (li, ri) = (spec.index(l).unwrap_or(0), spec.index(r).unwrap_or(0));
        if current[li] > current[ri] {
            violations.push((
                SpecRule::Order,
                Violation {
                    address: base + spec.fields[li].offset,
                    field: format!("{}.{}", spec.symbol, l),
                    rule: format!("{l} <= {r} ({} > {})", current[li], current[ri]),
                },
            ));
        }
    }
    Ok((base, current, violations))
}

/// MiniZinc data for `models/repair.mzn` (schema in models/schema.md).
pub fn dzn(spec: &TargetSpec, current: &[i64]) -> String {
    let list = |v: Vec<i64>| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let idx = |name: &str| spec.index(name).map(|i| i + 1).unwrap_or(0) as i64;
    format!(
        "% memzinc facts for {} ({}), generated by memzinc (models/schema.md)\n\
         n_fields = {};\ncurrent = [{}];\nlo = [{}];\nhi = [{}];\nwidth = [{}];\npreferred = [{}];\n\
         n_le = {};\nle_left = [{}];\nle_right = [{}];\n",
        spec.target,
        spec.symbol,
        spec.fields.len(),
        list(current.to_vec()),
        list(spec.fields.iter().map(|f| f.min).collect()),
        list(spec.fields.iter().map(|f| f.max).collect()),
        list(spec.fields.iter().map(|f| f.size as i64).collect()),
        list(spec.fields.iter().map(|f| f.default).collect()),
        spec.le.len(),
        list(spec.le.iter().map(|(l, _)| idx(l)).collect()),
        list(spec.le.iter().map(|(_, r)| idx(r)).collect()),
    )
}

/// Writes the `.dzn` facts of `spec` in `snapshot` to `path` (atomically); returns the object's
/// address, its current values and the violations, as [`facts`] does.
pub fn write_dzn(snapshot: &Snapshot, spec: &TargetSpec, path: &Path) -> Result<(u64, Vec<i64>, Vec<Violation>)> {
    let (base, current, violations) = facts(snapshot, spec)?;
    crate::fsutil::write_file_atomically(path, dzn(spec, &current).as_bytes())?;
    Ok((base, current, violations))
}

/// The plan file for `writes` to a snapshot of `target`: the regions they lie in, sorted
/// writes, the plan hash and the Merkle evidence.
pub fn finish_plan(
    snapshot: &Snapshot,
    target: &str,
    solver: &str,
    optimal: bool,
    violations: Vec<Violation>,
    mut writes: Vec<PlannedWrite>,
    stats: Option<crate::solver::Stats>,
) -> Result<PlanFile> {
    let mut regions: Vec<PlanRegion> = Vec::new();
    for w in &writes {
        let len = w.new.len() as u64 / 2;
        let region = snapshot
            .region_of(w.address, len)
            .ok_or_else(|| Error::Usage(format!("{:#x} is not mapped in the snapshot", w.address)))?;
        if !regions.iter().any(|r| r.start == region.map.start) {
            regions.push(PlanRegion {
                start: region.map.start,
                end: region.map.end,
                flags: region.map.region_flags(),
            });
        }
    }
    regions.sort_by_key(|r| r.start);
    writes.sort_by_key(|w| w.address);
    let target_id = memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes());
    let mut file = PlanFile {
        memzinc_plan: 1,
        target: target.to_string(),
        target_id: hex::encode(target_id),
        snapshot_root: snapshot.meta.root.clone(),
        solver: solver.to_string(),
        status: if optimal { "OPTIMAL" } else { "SATISFIED" }.into(),
        changed_bytes: writes.iter().map(|w| w.new.len() as u64 / 2).sum(),
        violations,
        regions,
        writes,
        plan_hash: String::new(),
        evidence: String::new(),
        stats,
    };
    let patch = file.to_patch_plan(Path::new("<new plan>"))?;
    file.plan_hash = hex::encode(patch.plan_hash::<Sha2>());
    if !patch.writes.is_empty() {
        let mut evidence = Vec::new();
        snapshot.evidence(&patch)?.encode_into(&mut evidence);
        file.evidence = hex::encode(evidence);
    }
    Ok(file)
}

/// Builds the plan: facts → `.dzn` (kept beside the plan) → minizinc → writes.
pub fn plan(snapshot: &Snapshot, spec: &TargetSpec, opts: &SolverOptions, dzn_path: &Path) -> Result<PlanFile> {
    let (base, current, violations) = write_dzn(snapshot, spec, dzn_path)?;
    let violations_empty = violations.is_empty();
    let solution = if violations.is_empty() {
        Solution {
            values: current.clone(),
            optimal: true,
            stats: Default::default(),
            checked: false,
        }
    } else {
        solve(opts, dzn_path)?
    };
    check_values(spec, &solution.values)
        .map_err(|why| Error::MiniZinc(format!("the solver's answer breaks an invariant: {why}")))?;

    let mut writes = Vec::new();
    for (f, (&old, &new)) in spec.fields.iter().zip(current.iter().zip(&solution.values)) {
        if old == new {
            continue;
        }
        let address = base + f.offset;
        let old_bytes = snapshot.read(address, f.size as usize)?;
        let new_bytes = encode_field(new, f.size as usize);
        let rule = violations
            .iter()
            .filter(|v| v.field.ends_with(&format!(".{}", f.name)))
            .map(|v| v.rule.clone())
            .collect::<Vec<_>>()
            .join("; ");
        writes.push(PlannedWrite {
            address,
            old: hex::encode(old_bytes),
            new: hex::encode(new_bytes),
            field: format!("{}.{}", spec.symbol, f.name),
            rule: if rule.is_empty() {
                "ordering invariant".into()
            } else {
                rule
            },
        });
    }
    finish_plan(
        snapshot,
        &spec.target,
        opts.solver.backend.name(),
        solution.optimal,
        violations,
        writes,
        (!violations_empty).then_some(solution.stats),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_signed_and_unsigned() {
        for (v, size) in [(-1i64, 4usize), (9000, 4), (-40, 4), (255, 1), (3, 1), (-2, 2)] {
            let signed = v < 0 || size == 4;
            assert_eq!(decode_field(&encode_field(v, size), signed), v, "{v} as {size} bytes");
        }
    }
}
