//! Target specs: how a cooperating target describes one object — where it is, its fields'
//! bounds and orderings (`models/targets/<name>.json`, `healme --describe`) — and the planner
//! that repairs it: facts become MiniZinc data (`models/repair.mzn`), the real `minizinc`
//! decides the new values, Rust re-checks them and makes the writes.
//!
//! Rust does the fact-finding (where the object is, what each field holds, which invariants
//! fail); the solver only decides the new values. Indices and small integers go to MiniZinc,
//! never addresses (Gecode's integers are 32-bit).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::finding::{Finding, Rule};
use super::plan::{Plan, PlannedWrite};
use super::solver::{self, SolverOptions, Status};
use crate::base::{Error, Result};
use crate::describe::Snapshot;
use crate::introspect::{Field, ObjectLayout};

/// How a cooperating target describes one object: where it is and what must hold.
/// (`healme --describe` prints this; [`ObjectLayout::merge_spec`] builds one from DWARF.)
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

/// A field of a spec: the [`Field`] and what no layout can know, its bounds and preferred value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldSpec {
    #[serde(flatten)]
    pub field: Field,
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

    /// Every spec of `paths`, or the first one's error.
    pub fn load_all(paths: &[std::path::PathBuf]) -> Result<Vec<TargetSpec>> {
        paths.iter().map(|p| TargetSpec::load(p)).collect()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        for f in &self.fields {
            let (name, size) = (&f.field.name, f.field.size);
            if ![1, 2, 4].contains(&size) {
                return Err(format!("field {name}: size {size} (supported: 1, 2, 4 bytes)"));
            }
            if f.field.offset + size > self.size {
                return Err(format!("field {name} lies outside the {}-byte object", self.size));
            }
            // Keep every number the solver sees inside Gecode's 32-bit integers.
            if f.min > f.max || f.min < -(1 << 30) || f.max > (1 << 30) * 2 - 1 {
                return Err(format!("field {name}: bounds {}..{} unusable", f.min, f.max));
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
        self.fields.iter().position(|f| f.field.name == name)
    }
}

impl ObjectLayout {
    /// A `TargetSpec` for this object: the fields `bounds` lists, in its order, with offset,
    /// size and signedness from this layout and min/max/default (which no layout can know) and
    /// the `le` orderings from `bounds`. Fails if `bounds` names a field this layout lacks.
    pub fn merge_spec(&self, bounds: &TargetSpec) -> Result<TargetSpec> {
        let fields = bounds
            .fields
            .iter()
            .map(|b| {
                let f = self
                    .fields
                    .iter()
                    .find(|f| f.name == b.field.name)
                    .ok_or_else(|| Error::Layout {
                        object: self.symbol.clone(),
                        why: format!("field `{}` is not a scalar field of {}", b.field.name, self.type_name),
                    })?;
                Ok(FieldSpec {
                    field: Field {
                        name: b.field.name.clone(),
                        type_name: b.field.type_name.clone(),
                        offset: f.offset,
                        size: f.size,
                        signed: f.signed,
                    },
                    min: b.min,
                    max: b.max,
                    default: b.default,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TargetSpec {
            target: bounds.target.clone(),
            symbol: self.symbol.clone(),
            size: self.size,
            fields,
            le: bounds.le.clone(),
        })
    }

    /// Where a hand-written spec disagrees with this layout, one line per difference; empty
    /// when they agree on the object size and every listed field's offset, size and signedness.
    pub fn check_spec(&self, spec: &TargetSpec) -> Vec<String> {
        let mut out = Vec::new();
        if spec.size != self.size {
            out.push(format!("size: spec {} vs layout {}", spec.size, self.size));
        }
        for s in &spec.fields {
            let s = &s.field;
            match self.fields.iter().find(|f| f.name == s.name) {
                None => out.push(format!("{}: not in the layout", s.name)),
                Some(f) => {
                    if (f.offset, f.size, f.signed) != (s.offset, s.size, s.signed) {
                        out.push(format!(
                            "{}: spec offset {} size {} signed {} vs layout offset {} size {} signed {}",
                            s.name, s.offset, s.size, s.signed, f.offset, f.size, f.signed
                        ));
                    }
                }
            }
        }
        out
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

/// Checks values against the spec's bounds and orderings in Rust: a solver's answer becomes a
/// plan only if the repaired object satisfies every invariant.
pub fn check_values(spec: &TargetSpec, values: &[i64]) -> std::result::Result<(), String> {
    if values.len() != spec.fields.len() {
        return Err(format!("expected {} values, got {}", spec.fields.len(), values.len()));
    }
    for (f, &v) in spec.fields.iter().zip(values) {
        if v < f.min || v > f.max {
            return Err(format!("{} = {v} is outside {}..{}", f.field.name, f.min, f.max));
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

/// What a spec says of a snapshot: the object's address, its current values, and what is
/// wrong (findings of rule `SpecBounds` or `SpecOrder`; the symbol is the spec's, the field
/// the spec's field, the detail the invariant as a plan records it).
pub struct SpecFacts {
    pub address: u64,
    pub current: Vec<i64>,
    pub findings: Vec<Finding>,
}

/// Reads the spec's object from the snapshot and judges it.
pub fn spec_facts(snapshot: &Snapshot, spec: &TargetSpec) -> Result<SpecFacts> {
    let base = snapshot.symbol(&spec.symbol)?.address;
    let mut current = Vec::with_capacity(spec.fields.len());
    let mut findings = Vec::new();
    let finding = |rule, address, field: &str, detail| Finding {
        rule,
        address,
        symbol: spec.symbol.clone(),
        field: field.to_string(),
        detail,
    };
    for f in &spec.fields {
        let Field {
            name,
            offset,
            size,
            signed,
            ..
        } = &f.field;
        let bytes = snapshot.read(base + offset, *size as usize)?;
        let v = decode_field(&bytes, *signed);
        if v < f.min || v > f.max {
            findings.push(finding(
                Rule::SpecBounds,
                base + offset,
                name,
                format!("{} <= {name} <= {} (is {v})", f.min, f.max),
            ));
        }
        current.push(v);
    }
    for (l, r) in &spec.le {
        let (li, ri) = (spec.index(l).unwrap_or(0), spec.index(r).unwrap_or(0));
        if current[li] > current[ri] {
            findings.push(finding(
                Rule::SpecOrder,
                base + spec.fields[li].field.offset,
                l,
                format!("{l} <= {r} ({} > {})", current[li], current[ri]),
            ));
        }
    }
    Ok(SpecFacts {
        address: base,
        current,
        findings,
    })
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
        list(spec.fields.iter().map(|f| f.field.size as i64).collect()),
        list(spec.fields.iter().map(|f| f.default).collect()),
        spec.le.len(),
        list(spec.le.iter().map(|(l, _)| idx(l)).collect()),
        list(spec.le.iter().map(|(_, r)| idx(r)).collect()),
    )
}

/// Writes the `.dzn` facts of `spec` in `snapshot` to `path` (atomically); returns the facts.
pub fn write_dzn(snapshot: &Snapshot, spec: &TargetSpec, path: &Path) -> Result<SpecFacts> {
    let facts = spec_facts(snapshot, spec)?;
    crate::base::write_file_atomically(path, dzn(spec, &facts.current).as_bytes())?;
    Ok(facts)
}

/// What the solver answered for a spec's facts.
#[derive(Clone, Debug)]
pub struct Solution {
    /// The new value of every field of the spec, in its order.
    pub values: Vec<i64>,
    /// Proven optimal by the solver (and, for cbc or a verified Gecode answer, checked).
    pub optimal: bool,
    pub stats: solver::Stats,
}

/// Solves `model` (`repair.mzn`) on a spec's `.dzn` facts with the runner (limits,
/// cancellation, statistics, checking: see `solver`).
pub fn solve(opts: &SolverOptions, model: &Path, dzn: &Path) -> Result<Solution> {
    let run = solver::run(opts, model, &[dzn])?;
    run.answered("the invariants", opts.time_limit)?;
    let values = run
        .ints("value")
        .ok_or_else(|| Error::MiniZinc(format!("the answer has no integer array `value`: {}", run.output)))?;
    Ok(Solution {
        values,
        optimal: run.status == Status::Optimal,
        stats: run.stats,
    })
}

/// The spec planner: facts → `.dzn` (kept at `dzn_path`) → `model` (`repair.mzn`) → writes.
pub(super) fn plan(
    snapshot: &Snapshot,
    spec: &TargetSpec,
    opts: &SolverOptions,
    model: &Path,
    dzn_path: &Path,
) -> Result<Plan> {
    let SpecFacts {
        address: base,
        current,
        findings,
    } = write_dzn(snapshot, spec, dzn_path)?;
    let (values, optimal, stats) = if findings.is_empty() {
        (current.clone(), true, None)
    } else {
        let solved = solve(opts, model, dzn_path)?;
        (solved.values, solved.optimal, Some(solved.stats))
    };
    check_values(spec, &values)
        .map_err(|why| Error::MiniZinc(format!("the solver's answer breaks an invariant: {why}")))?;

    let mut writes = Vec::new();
    for (f, (&old, &new)) in spec.fields.iter().zip(current.iter().zip(&values)) {
        if old == new {
            continue;
        }
        let address = base + f.field.offset;
        let rule = findings
            .iter()
            .filter(|v| v.field == f.field.name)
            .map(|v| v.detail.clone())
            .collect::<Vec<_>>()
            .join("; ");
        writes.push(PlannedWrite {
            address,
            old: snapshot.read(address, f.field.size as usize)?,
            new: encode_field(new, f.field.size as usize),
            field: format!("{}.{}", spec.symbol, f.field.name),
            rule: if rule.is_empty() {
                "ordering invariant".into()
            } else {
                rule
            },
        });
    }
    Plan::new(
        snapshot,
        &spec.target,
        opts.backend.name(),
        optimal,
        findings,
        writes,
        stats,
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
