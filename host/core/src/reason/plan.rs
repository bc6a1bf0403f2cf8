//! The one plan: what every planner makes, `attest` uploads, `apply` and `restore --apply`
//! execute and `export` records — byte writes to one snapshot's memory, each with where it came
//! from, the findings that called for them, and the Merkle evidence that binds them to the
//! snapshot. Its file form (versioned JSON) is `plan_file`; the verifier's wire form is
//! [`PatchPlan`], derived here.

use memzinc_verifier::plan::{Evidence, PatchPlan, Submission, Write};
use memzinc_verifier::wire::{Region, Slot};

use super::finding::Finding;
use super::solver::Stats;
use crate::base::{Error, Result, Sha2};
use crate::describe::Snapshot;

/// One write of a plan, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedWrite {
    pub address: u64,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    /// The field written, as C would name it (`STATE.count`, `QUEUE.head->next`).
    pub field: String,
    /// Why: the rule(s) it repairs.
    pub rule: String,
}

/// A plan for one snapshot of one target.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub target: String,
    pub target_id: [u8; 32],
    pub snapshot_root: [u8; 32],
    /// SHA-256 of the MiniZinc models the plan was solved with (`base::models_hash_with`), set
    /// by `reason::plan`; zero when no planner set it.
    pub model_hash: [u8; 32],
    /// The solver backend that decided it.
    pub solver: String,
    /// Whether the solver proved it optimal (and its answer was checked).
    pub optimal: bool,
    /// What was wrong.
    pub findings: Vec<Finding>,
    /// The snapshot's regions the writes lie in, sorted.
    pub regions: Vec<Region>,
    /// Sorted by address.
    pub writes: Vec<PlannedWrite>,
    /// A relocation's slots (`memzinc_verifier::wire::Slot`), ascending; empty for any other plan.
    pub slots: Vec<Slot>,
    /// The Merkle evidence binding the plan to its snapshot (regions, old bytes' pages), in its
    /// wire encoding; empty for a plan without writes.
    pub evidence: Vec<u8>,
    /// How the solve went (absent when nothing needed solving).
    pub stats: Option<Stats>,
}

/// The evidence in its wire encoding, parsed as the attestor parses it behind `plan`.
pub(super) fn parse_evidence(
    plan: &PatchPlan,
    evidence: &[u8],
) -> std::result::Result<Evidence, memzinc_verifier::VerifyError> {
    let mut bytes = plan.encode();
    bytes.extend_from_slice(evidence);
    let parsed = memzinc_verifier::wire::Submission::parse(&bytes)?;
    Ok(Evidence::from_view(&parsed.evidence))
}

impl Plan {
    /// The plan of `writes` to `snapshot` of `target`: the regions they lie in, writes sorted,
    /// and the Merkle evidence. Every planner ends here, a relocation in [`Plan::relocation`].
    pub fn new(
        snapshot: &Snapshot,
        target: &str,
        solver: &str,
        optimal: bool,
        findings: Vec<Finding>,
        writes: Vec<PlannedWrite>,
        stats: Option<Stats>,
    ) -> Result<Plan> {
        Plan::unproven(snapshot, target, solver, optimal, findings, writes, stats)?.proven(snapshot)
    }

    /// A relocation: its writes are the `slots`' new bytes and the pointers moved with them
    /// (`reason::graph::plan_relocation`); the evidence proves every slot's page too.
    pub fn relocation(
        snapshot: &Snapshot,
        target: &str,
        solver: &str,
        writes: Vec<PlannedWrite>,
        slots: Vec<Slot>,
    ) -> Result<Plan> {
        let mut plan = Plan::unproven(snapshot, target, solver, true, vec![], writes, None)?;
        plan.slots = slots;
        plan.proven(snapshot)
    }

    fn unproven(
        snapshot: &Snapshot,
        target: &str,
        solver: &str,
        optimal: bool,
        findings: Vec<Finding>,
        mut writes: Vec<PlannedWrite>,
        stats: Option<Stats>,
    ) -> Result<Plan> {
        let mut regions: Vec<Region> = Vec::new();
        for w in &writes {
            let region = snapshot
                .region_of(w.address, w.new.len() as u64)
                .ok_or_else(|| Error::Usage(format!("{:#x} is not mapped in the snapshot", w.address)))?;
            if !regions.iter().any(|r| r.start == region.map.start) {
                regions.push(Region {
                    start: region.map.start,
                    end: region.map.end,
                    flags: region.map.region_flags(),
                });
            }
        }
        regions.sort_by_key(|r| r.start);
        writes.sort_by_key(|w| w.address);
        let plan = Plan {
            target: target.to_string(),
            target_id: memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes()),
            snapshot_root: snapshot.root(),
            model_hash: [0; 32],
            solver: solver.to_string(),
            optimal,
            findings,
            regions,
            writes,
            slots: Vec::new(),
            evidence: Vec::new(),
            stats,
        };
        Ok(plan)
    }

    /// The plan with the evidence for its writes and slots.
    fn proven(mut self, snapshot: &Snapshot) -> Result<Plan> {
        if !self.writes.is_empty() || !self.slots.is_empty() {
            snapshot.evidence(&self.patch())?.encode_into(&mut self.evidence);
        }
        Ok(self)
    }

    /// The verifier's view of the plan: what `attest` sends and `apply` executes.
    pub fn patch(&self) -> PatchPlan {
        PatchPlan {
            target_id: self.target_id,
            snapshot_root: self.snapshot_root,
            model_hash: self.model_hash,
            regions: self.regions.clone(),
            writes: self
                .writes
                .iter()
                .map(|w| Write {
                    address: w.address,
                    old: w.old.clone(),
                    new: w.new.clone(),
                })
                .collect(),
            slots: self.slots.clone(),
        }
    }

    /// The hash the attestor records the plan under.
    pub fn plan_hash(&self) -> [u8; 32] {
        self.patch().plan_hash::<Sha2>()
    }

    /// The plan with its evidence, as uploaded to the attestor. Fails if the evidence does not
    /// parse (a plan without writes has none; a loaded plan's was checked when it was read).
    pub fn submission(&self) -> std::result::Result<Submission, memzinc_verifier::VerifyError> {
        let plan = self.patch();
        let evidence = parse_evidence(&plan, &self.evidence)?;
        Ok(Submission { plan, evidence })
    }

    /// Each finding as a plan records it: (address, where — `symbol.field` —, what was wrong).
    pub fn recorded_findings(&self) -> impl Iterator<Item = (u64, String, String)> + '_ {
        self.findings
            .iter()
            .map(|f| (f.address, f.location(), f.detail.clone()))
    }

    /// Bytes the plan changes.
    pub fn changed_bytes(&self) -> u64 {
        self.writes.iter().map(|w| w.new.len() as u64).sum()
    }

    /// `OPTIMAL` when the solver proved it, else `SATISFIED` (as plan files say it).
    pub fn status(&self) -> &'static str {
        if self.optimal {
            "OPTIMAL"
        } else {
            "SATISFIED"
        }
    }
}
