//! A plan's file form: the versioned JSON `memzinc plan` writes and `attest`, `apply`, `restore
//! --apply`, `audit --replay` and `export` read (format 1). Bytes are hex, hashes hex; the
//! file also carries the plan hash and the byte count for readers that do not hash. Converted
//! to and from the one in-memory [`Plan`] here and nowhere else. Format 2 added `model_hash`
//! (the plan hash covers it, so format 1 files name plans the attestor no longer takes);
//! format 3 a relocation's `slots` (covered too: every plan hash changed again).

use std::path::Path;

use memzinc_verifier::wire::{Region, Slot};
use serde::{Deserialize, Serialize};

use super::finding::{Finding, Rule};
use super::plan::{parse_evidence, Plan, PlannedWrite};
use super::solver::Stats;
use crate::base::{Error, Result};

/// The plan file format this memzinc writes and reads.
pub const PLAN_FORMAT: u32 = 3;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct PlanFile {
    memzinc_plan: u32,
    target: String,
    target_id: String,
    snapshot_root: String,
    /// SHA-256 of the MiniZinc models the plan was solved with (hex).
    model_hash: String,
    solver: String,
    /// OPTIMAL only when the solver proved it.
    status: String,
    changed_bytes: u64,
    violations: Vec<ViolationRecord>,
    regions: Vec<RegionRecord>,
    writes: Vec<WriteRecord>,
    /// A relocation's slots: the object in slot number `from` moves here, this one's to `to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    slots: Vec<SlotRecord>,
    plan_hash: String,
    /// The Merkle evidence, as the hex of its wire encoding: it makes the file all `attest` needs.
    evidence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
}

/// A finding as the file records it: where, which field, what was wrong.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct ViolationRecord {
    address: u64,
    field: String,
    rule: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct RegionRecord {
    start: u64,
    end: u64,
    flags: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct WriteRecord {
    address: u64,
    old: String,
    new: String,
    field: String,
    rule: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct SlotRecord {
    address: u64,
    len: u32,
    from: u32,
    to: u32,
}

/// `hex::encode`, by table: a relocation's plan holds millions of writes and hundreds of
/// megabytes of evidence, which `hex::encode`'s per-character iterator takes seconds over.
fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("two characters per byte");
    String::from_utf8(out).expect("hex is ASCII")
}

impl From<&Plan> for PlanFile {
    fn from(p: &Plan) -> PlanFile {
        PlanFile {
            memzinc_plan: PLAN_FORMAT,
            target: p.target.clone(),
            target_id: hex::encode(p.target_id),
            snapshot_root: hex::encode(p.snapshot_root),
            model_hash: hex::encode(p.model_hash),
            solver: p.solver.clone(),
            status: p.status().into(),
            changed_bytes: p.changed_bytes(),
            violations: p
                .recorded_findings()
                .map(|(address, field, rule)| ViolationRecord { address, field, rule })
                .collect(),
            regions: p
                .regions
                .iter()
                .map(|&Region { start, end, flags }| RegionRecord { start, end, flags })
                .collect(),
            writes: p
                .writes
                .iter()
                .map(|w| WriteRecord {
                    address: w.address,
                    old: to_hex(&w.old),
                    new: to_hex(&w.new),
                    field: w.field.clone(),
                    rule: w.rule.clone(),
                })
                .collect(),
            slots: p
                .slots
                .iter()
                .map(|&Slot { address, len, from, to }| SlotRecord { address, len, from, to })
                .collect(),
            plan_hash: hex::encode(p.plan_hash()),
            evidence: to_hex(&p.evidence),
            stats: p.stats.clone(),
        }
    }
}

impl PlanFile {
    fn into_plan(self, path: &Path) -> Result<Plan> {
        let corrupt = |why: String| Error::Corrupt {
            path: path.into(),
            kind: "plan",
            why,
        };
        if self.memzinc_plan != PLAN_FORMAT {
            return Err(corrupt(format!(
                "plan format {} (this memzinc reads {PLAN_FORMAT})",
                self.memzinc_plan
            )));
        }
        let hash = |s: &str, what: &str| -> Result<[u8; 32]> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(s, &mut out).map_err(|e| corrupt(format!("{what}: {e}")))?;
            Ok(out)
        };
        let writes = self
            .writes
            .into_iter()
            .map(|w| {
                Ok(PlannedWrite {
                    address: w.address,
                    old: hex::decode(&w.old).map_err(|e| corrupt(format!("old bytes: {e}")))?,
                    new: hex::decode(&w.new).map_err(|e| corrupt(format!("new bytes: {e}")))?,
                    field: w.field,
                    rule: w.rule,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = Plan {
            target_id: hash(&self.target_id, "target_id")?,
            snapshot_root: hash(&self.snapshot_root, "snapshot_root")?,
            model_hash: hash(&self.model_hash, "model_hash")?,
            target: self.target,
            solver: self.solver,
            optimal: self.status == "OPTIMAL",
            findings: self
                .violations
                .into_iter()
                .map(|v| Finding {
                    rule: Rule::Recorded,
                    address: v.address,
                    symbol: v.field,
                    field: String::new(),
                    detail: v.rule,
                })
                .collect(),
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
            slots: self
                .slots
                .iter()
                .map(|&SlotRecord { address, len, from, to }| Slot { address, len, from, to })
                .collect(),
            evidence: hex::decode(&self.evidence).map_err(|e| corrupt(format!("evidence: {e}")))?,
            stats: self.stats,
        };
        // A plan with writes carries evidence the attestor can parse: a file whose evidence was
        // cut or tampered with is refused when it is read, whatever reads it.
        if !plan.writes.is_empty() {
            parse_evidence(&plan.patch(), &plan.evidence).map_err(|e| corrupt(format!("evidence: {e}")))?;
        }
        Ok(plan)
    }
}

impl Plan {
    /// Reads a plan file.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Plan::from_json(&text, path)
    }

    /// A plan file's text; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Plan> {
        let file: PlanFile = serde_json::from_str(text).map_err(|e| Error::Corrupt {
            path: path.into(),
            kind: "plan",
            why: e.to_string(),
        })?;
        file.into_plan(path)
    }

    /// The plan file's text (what `save` writes, and `plan --json` prints).
    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(&PlanFile::from(self)).map_err(|e| Error::Corrupt {
            path: "plan".into(),
            kind: "plan",
            why: e.to_string(),
        })
    }

    /// The plan as its file holds it, with `extra` beside its fields under `key`, streamed to
    /// `w` (`plan --relocate --json` adds its summary): a relocation's plan is hundreds of
    /// megabytes, and held again as a JSON value several times that.
    pub fn write_json_with(
        &self,
        w: impl std::io::Write,
        key: &'static str,
        extra: &impl Serialize,
    ) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct With<'a, T: Serialize> {
            #[serde(flatten)]
            plan: PlanFile,
            #[serde(flatten)]
            extra: std::collections::BTreeMap<&'static str, &'a T>,
        }
        let with = With {
            plan: PlanFile::from(self),
            extra: [(key, extra)].into(),
        };
        serde_json::to_writer_pretty(w, &with).map_err(std::io::Error::from)
    }

    /// Writes the plan file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        // Streamed: a relocation's plan is hundreds of megabytes.
        crate::base::write_atomically(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &PlanFile::from(self)).map_err(|e| match e.is_io() {
                true => Error::io(path, e.into()),
                false => Error::Corrupt {
                    path: "plan".into(),
                    kind: "plan",
                    why: e.to_string(),
                },
            })
        })
    }
}
