//! Plans and attestations as protobuf records (`proto/plan.proto`, `proto/attestation.proto`;
//! the snapshot metadata note is `proto/snapshot.proto`, see [`crate::snapshot::pb`]). What
//! `export` writes under `records/`, for tools that speak protobuf rather than JSON or Parquet.

use std::path::Path;

use memzinc::base::pb::{attestation as attestation_pb, plan as plan_pb};
use memzinc::base::{Error, Result};
use memzinc::reason::{Plan, PLAN_FORMAT};

use crate::attest::AuditReport;

/// Where `export` puts the records, relative to its directory.
pub const PLANS_FILE: &str = "records/plans.pb";
pub const ATTESTATIONS_FILE: &str = "records/attestations.pb";
pub const SNAPSHOT_META_FILE: &str = "records/snapshot_meta.pb";

fn unhex(s: &str, what: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|e| Error::Usage(format!("{what} {s:?} is not hex: {e}")))
}

/// A plan as a `memzinc.plan.v1.Plan`.
pub fn plan_record(p: &Plan) -> plan_pb::Plan {
    plan_pb::Plan {
        format_version: PLAN_FORMAT,
        target: p.target.clone(),
        target_id: p.target_id.to_vec(),
        snapshot_root: p.snapshot_root.to_vec(),
        model_hash: p.model_hash.to_vec(),
        solver: p.solver.clone(),
        status: p.status().into(),
        changed_bytes: p.changed_bytes(),
        violations: p
            .recorded_findings()
            .map(|(address, field, rule)| plan_pb::Violation { address, field, rule })
            .collect(),
        regions: p
            .regions
            .iter()
            .map(|r| plan_pb::Region {
                start: r.start,
                end: r.end,
                flags: r.flags.into(),
            })
            .collect(),
        writes: p
            .writes
            .iter()
            .map(|w| plan_pb::Write {
                address: w.address,
                old: w.old.clone(),
                new: w.new.clone(),
                field: w.field.clone(),
                rule: w.rule.clone(),
            })
            .collect(),
        slots: p
            .slots
            .iter()
            .map(|s| plan_pb::Slot {
                address: s.address,
                len: s.len,
                from: s.from,
                to: s.to,
            })
            .collect(),
        plan_hash: p.plan_hash().to_vec(),
        evidence: p.evidence.clone(),
        stats: p.stats.as_ref().map(|s| plan_pb::SolverStats {
            backend: s.backend.clone(),
            total_ms: s.total_ms,
            flatten_ms: s.flatten_ms,
            solve_ms: s.solve_ms,
            check_ms: s.check_ms,
            variables: s.variables,
            constraints: s.constraints,
            nodes: s.nodes,
        }),
    }
}

/// An audit as a `memzinc.attestation.v1.AttestationChain`.
pub fn attestation_record(a: &AuditReport) -> Result<attestation_pb::AttestationChain> {
    Ok(attestation_pb::AttestationChain {
        target_id: unhex(&a.target_id, "target_id")?,
        policy: a.policy.clone(),
        target_chain: a.target_chain.clone(),
        head_hash: unhex(&a.head_hash, "head_hash")?,
        attestations: a
            .entries
            .iter()
            .map(|e| {
                Ok(attestation_pb::Attestation {
                    seq: e.seq,
                    slot: e.slot,
                    address: e.address.clone(),
                    signer: e.signer.clone(),
                    plan_hash: unhex(&e.plan_hash, "plan_hash")?,
                    snapshot_root: unhex(&e.snapshot_root, "snapshot_root")?,
                    writes: e.writes,
                    bytes: e.bytes,
                    link_hash: unhex(&e.hash, "link hash")?,
                    policy_revision: e.policy_revision,
                    policy_hash: unhex(&e.policy_hash, "policy_hash")?,
                    witnesses: e
                        .witnesses
                        .iter()
                        .map(|w| attestation_pb::Witness {
                            witness: w.witness.clone(),
                            record: w.record.clone(),
                            slot: w.slot,
                        })
                        .collect(),
                    revoked: e.revoked,
                    receipt: e
                        .receipt
                        .as_ref()
                        .map(|r| {
                            Ok::<_, Error>(attestation_pb::Receipt {
                                slot: r.slot,
                                outcome: r.outcome.clone(),
                                signer: r.signer.clone(),
                                readback_hash: unhex(&r.readback_hash, "readback_hash")?,
                            })
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        verified: a.verified,
    })
}

/// Writes `message` at `dir/relative` (atomically).
pub fn write_record(dir: &Path, relative: &str, message: &impl prost::Message) -> Result<()> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    memzinc::base::write_file_atomically(&path, &message.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use memzinc::reason::PlannedWrite;
    use memzinc_verifier::wire::Region;
    use prost::Message as _;

    #[test]
    fn a_plan_record_decodes_to_the_plan() {
        let plan = Plan {
            target: "t".into(),
            target_id: [1u8; 32],
            snapshot_root: [2u8; 32],
            model_hash: [3u8; 32],
            solver: "cbc".into(),
            optimal: true,
            findings: vec![],
            regions: vec![Region {
                start: 0x1000,
                end: 0x2000,
                flags: 3,
            }],
            writes: vec![PlannedWrite {
                address: 0x1008,
                old: vec![1, 2],
                new: vec![3, 4],
                field: "x".into(),
                rule: "bounds".into(),
            }],
            slots: vec![],
            evidence: vec![0],
            stats: None,
        };
        let bytes = plan_record(&plan).encode_to_vec();
        let back = plan_pb::Plan::decode(&*bytes).unwrap();
        assert_eq!(back.writes[0].new, [3, 4]);
        assert_eq!(back.plan_hash, plan.plan_hash());
        assert_eq!((back.status.as_str(), back.changed_bytes), ("OPTIMAL", 2));
    }
}
