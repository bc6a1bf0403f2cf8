//! The gate every plan passes before it touches a process: an unrevoked attestation of exactly
//! this plan under the authority's policy, its link hash re-verified; then the change (`apply`
//! to a live process, or `restore --apply` into a checkpoint's image) and the receipt on chain.

use std::path::Path;

use memzinc::apply::{apply, ApplyReport};
use memzinc::base::{Error, Result, Sha2};
use memzinc::checkpoint::{restore, restore_lazy, LazyRestore, RestoreReport};
use memzinc::describe::Snapshot;
use memzinc_verifier::accounts::{OUTCOME_APPLIED, OUTCOME_ROLLED_BACK};
use memzinc_verifier::plan::PatchPlan;
use serde::Serialize;
use solana_pubkey::Pubkey;

use super::chain::Client;

/// What `apply_attested` did and under which record.
#[derive(Clone, Debug, Serialize)]
pub struct AttestedApply {
    pub attestation: String,
    pub seq: u64,
    pub report: ApplyReport,
    /// The `record_applied` transaction.
    pub receipt_signature: String,
}

/// The gate: applies `plan` only if `authority`'s policy holds an attestation of exactly this
/// plan that may still be applied (same plan hash, re-verified link hash, not revoked, its
/// policy open and not closed since); then records a receipt on chain (applied, with the hash
/// of the bytes read back from the process, or rolled back if a write failed and was undone).
pub fn apply_attested(client: &Client, authority: &Pubkey, pid: i32, plan: &PatchPlan) -> Result<AttestedApply> {
    let (address, attestation) = attestation_of(client, authority, plan)?;
    match apply(pid, plan) {
        Ok(report) => {
            let signature = client.record_applied(
                authority,
                &plan.target_id,
                attestation.seq,
                OUTCOME_APPLIED,
                &report.readback_hash,
            )?;
            Ok(AttestedApply {
                attestation: address.to_string(),
                seq: attestation.seq,
                report,
                receipt_signature: signature.to_string(),
            })
        }
        Err(e @ Error::ApplyFailed { .. }) => {
            // The target is back as it was; say so on chain, then report the failure (and the
            // receipt's, if it could not be recorded either).
            let readback = [0u8; 32];
            match client.record_applied(
                authority,
                &plan.target_id,
                attestation.seq,
                OUTCOME_ROLLED_BACK,
                &readback,
            ) {
                Ok(_) => Err(e),
                Err(receipt) => Err(Error::Transaction(format!(
                    "{e}; and the rolled-back receipt was not recorded: {receipt}"
                ))),
            }
        }
        Err(e) => Err(e),
    }
}

/// The gate every plan passes before it touches a process: `authority`'s policy holds an
/// attestation of exactly this plan (same plan hash) whose link hash re-verifies and that may
/// still be applied (`Attestation::may_apply`: not revoked, the policy open and not reopened
/// since the attestation was made).
pub fn attestation_of(
    client: &Client,
    authority: &Pubkey,
    plan: &PatchPlan,
) -> Result<(Pubkey, memzinc_verifier::accounts::Attestation)> {
    let mut plan_hash = plan.plan_hash::<Sha2>();
    let mut found = client.find_attestation(authority, &plan.target_id, &plan_hash)?;
    if found.is_none() && !plan.slots.is_empty() {
        // A relocation too large for one submission is attested in parts, under its streamed hash.
        plan_hash = plan.streamed_plan_hash::<Sha2>();
        found = client.find_attestation(authority, &plan.target_id, &plan_hash)?;
    }
    let (address, attestation) = found.ok_or_else(|| Error::NotAttested {
        plan_hash: hex::encode(plan_hash),
    })?;
    if attestation.computed_hash::<Sha2>() != attestation.hash {
        return Err(Error::AuditFailed {
            target: hex::encode(plan.target_id),
            why: format!("attestation {address} does not hash to its recorded link"),
        });
    }
    if attestation.revoked {
        return Err(Error::Revoked {
            attestation: address.to_string(),
        });
    }
    let policy = client.policy(authority)?.ok_or_else(|| Error::NotAttested {
        plan_hash: hex::encode(plan_hash),
    })?;
    attestation.may_apply(&policy).map_err(|why| Error::NotApplicable {
        attestation: address.to_string(),
        why,
    })?;
    Ok((address, attestation))
}

/// What `restore_attested` did and under which record.
#[derive(Debug, Serialize)]
pub struct AttestedRestore {
    pub attestation: String,
    pub seq: u64,
    pub report: RestoreReport,
    /// The `record_applied` receipt transaction.
    pub receipt_signature: String,
}

/// `memzinc restore --apply`: the same gate as `memzinc apply` (an unrevoked attestation of
/// exactly this plan under `authority`'s policy, its link hash re-verified), then the restore
/// with the plan applied to the image, then the applied receipt on chain.
pub fn restore_attested(
    client: &Client,
    authority: &Pubkey,
    core: &Path,
    plan: &PatchPlan,
    inherit: &[memzinc::checkpoint::InheritFd],
) -> Result<AttestedRestore> {
    let (done, ()) = gated_restore(client, authority, core, plan, |core, plan| {
        Ok((restore(core, Some(plan), inherit)?, ()))
    })?;
    Ok(done)
}

/// [`restore_attested`] with `restore --lazy`: the receipt is recorded once the process runs
/// with the plan's bytes; its pages are still arriving ([`LazyRestore::wait`]).
pub fn restore_attested_lazy(
    client: &Client,
    authority: &Pubkey,
    core: &Path,
    plan: &PatchPlan,
    inherit: &[memzinc::checkpoint::InheritFd],
) -> Result<(AttestedRestore, LazyRestore)> {
    gated_restore(client, authority, core, plan, |core, plan| {
        let lazy = restore_lazy(core, Some(plan), inherit)?;
        Ok((lazy.report.clone(), lazy))
    })
}

fn gated_restore<T>(
    client: &Client,
    authority: &Pubkey,
    core: &Path,
    plan: &PatchPlan,
    restore: impl FnOnce(&Path, &PatchPlan) -> Result<(RestoreReport, T)>,
) -> Result<(AttestedRestore, T)> {
    // Offline refusals first: a plan for another snapshot needs no chain to be refused.
    let root = Snapshot::open(core)?.root();
    if plan.snapshot_root != root {
        return Err(Error::Restore(format!(
            "the plan is for snapshot root {}, the core's root is {}",
            hex::encode(plan.snapshot_root),
            hex::encode(root)
        )));
    }
    let (address, attestation) = attestation_of(client, authority, plan)?;
    let (report, restored) = restore(core, plan)?;
    let signature = applied(client, authority, plan, attestation.seq, &report.readback_hash)?;
    Ok((
        AttestedRestore {
            attestation: address.to_string(),
            seq: attestation.seq,
            report,
            receipt_signature: signature.to_string(),
        },
        restored,
    ))
}

/// What `restore_tree_attested` did and under which record.
#[derive(Debug, Serialize)]
pub struct AttestedTreeRestore {
    pub attestation: String,
    pub seq: u64,
    pub report: memzinc::checkpoint::TreeRestoreReport,
    /// The `record_applied` receipt transaction.
    pub receipt_signature: String,
}

/// `memzinc restore TREE_DIR --apply`: the gate of [`restore_attested`], for the process of the
/// tree whose snapshot root the plan names; the rest of the tree is restored as it was.
pub fn restore_tree_attested(
    client: &Client,
    authority: &Pubkey,
    dir: &Path,
    plan: &PatchPlan,
    inherit: &[memzinc::checkpoint::InheritFd],
) -> Result<AttestedTreeRestore> {
    let (address, attestation) = attestation_of(client, authority, plan)?;
    let report = memzinc::checkpoint::restore_tree(dir, Some(plan), inherit)?;
    let signature = applied(client, authority, plan, attestation.seq, &report.readback_hash)?;
    Ok(AttestedTreeRestore {
        attestation: address.to_string(),
        seq: attestation.seq,
        report,
        receipt_signature: signature.to_string(),
    })
}

/// The applied receipt of attestation `seq` of `plan`'s target, with the read-back hash.
fn applied(
    client: &Client,
    authority: &Pubkey,
    plan: &PatchPlan,
    seq: u64,
    readback_hash: &[u8; 32],
) -> Result<solana_signature::Signature> {
    client.record_applied(
        authority,
        &plan.target_id,
        seq,
        memzinc_verifier::accounts::OUTCOME_APPLIED,
        readback_hash,
    )
}
