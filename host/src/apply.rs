//! Stage 5 (apply): change a live process by an attested plan, all or nothing.
//!
//! Every thread is held in an interrupt-stop for the whole compare-and-swap: first every
//! write's current bytes must equal the plan's old bytes (else nothing is written), then the
//! writes, then a read-back; any failure restores every byte already written. The `Frozen`
//! guard resumes the target on every path. Whether a plan may be applied at all (an attestation
//! on chain) is the caller's check, made before this runs.

use std::time::Instant;

use sha2::Digest;

use memzinc_verifier::plan::PatchPlan;
use serde::Serialize;

use memzinc_verifier::accounts::{OUTCOME_APPLIED, OUTCOME_ROLLED_BACK};
use solana_pubkey::Pubkey;

use crate::chain::Client;
use crate::error::{Error, Result};
use crate::process::{self, Frozen};
use crate::Sha2;

#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub writes: usize,
    pub bytes: usize,
    pub threads_stopped: usize,
    /// How long the target was held stopped, microseconds.
    pub stopped_us: u128,
    /// SHA-256 over the bytes read back after writing, in plan order (the receipt records it).
    #[serde(serialize_with = "crate::apply::hex32")]
    pub readback_hash: [u8; 32],
}

pub fn hex32<S: serde::Serializer>(v: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn read_exact(pid: i32, address: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if process::read_at(pid, address, &mut buf)? != len {
        return Err(Error::Process {
            pid,
            what: format!("reading {len} bytes at {address:#x}"),
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        });
    }
    Ok(buf)
}

/// What `apply_attested` did and under which record.
#[derive(Clone, Debug, Serialize)]
pub struct AttestedApply {
    pub attestation: String,
    pub seq: u64,
    pub report: ApplyReport,
    /// The `record_applied` transaction.
    pub receipt_signature: String,
}

/// The gate: applies `plan` only if `authority`'s policy holds an unrevoked attestation of
/// exactly this plan (same plan hash, re-verified link hash); then records a receipt on chain
/// (applied, or rolled back if a write failed and was undone).
pub fn apply_attested(client: &Client, authority: &Pubkey, pid: i32, plan: &PatchPlan) -> Result<AttestedApply> {
    let plan_hash = plan.plan_hash::<Sha2>();
    let (address, attestation) = client
        .find_attestation(authority, &plan.target_id, &plan_hash)?
        .ok_or_else(|| Error::NotAttested {
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
            // The target is back as it was; say so on chain, then report the failure.
            let readback = [0u8; 32];
            let _ = client.record_applied(
                authority,
                &plan.target_id,
                attestation.seq,
                OUTCOME_ROLLED_BACK,
                &readback,
            );
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Applies `plan` to `pid` without looking at the chain: callers go through `apply_attested`.
pub fn apply(pid: i32, plan: &PatchPlan) -> Result<ApplyReport> {
    let frozen = Frozen::freeze(pid)?;
    let started = Instant::now();

    for (index, w) in plan.writes.iter().enumerate() {
        let found = read_exact(pid, w.address, w.old.len())?;
        if found != w.old {
            return Err(Error::OldBytesMismatch {
                index,
                address: w.address,
                found: hex::encode(found),
                expected: hex::encode(&w.old),
            });
        }
    }

    let mut written = 0usize;
    let mut failure = None;
    let mut readback = sha2::Sha256::new();
    for (index, w) in plan.writes.iter().enumerate() {
        let outcome = process::write_at(pid, w.address, &w.new).and_then(|()| {
            let back = read_exact(pid, w.address, w.new.len())?;
            readback.update(&back);
            if back == w.new {
                Ok(())
            } else {
                Err(Error::Usage("read-back differs from what was written".into()))
            }
        });
        match outcome {
            Ok(()) => written += 1,
            Err(e) => {
                written += 1; // the failed write may have landed partially: restore it too
                failure = Some((index, w.address, e.to_string()));
                break;
            }
        }
    }

    if let Some((index, address, why)) = failure {
        let mut restored = 0usize;
        for w in plan.writes[..written].iter().rev() {
            if process::write_at(pid, w.address, &w.old).is_ok() {
                restored += 1;
            }
        }
        return Err(Error::ApplyFailed {
            index,
            address,
            why,
            restored,
        });
    }

    let stopped_us = started.elapsed().as_micros();
    let threads_stopped = frozen.thread_count();
    drop(frozen);
    Ok(ApplyReport {
        writes: plan.writes.len(),
        bytes: plan.writes.iter().map(|w| w.new.len()).sum(),
        threads_stopped,
        stopped_us,
        readback_hash: readback.finalize().into(),
    })
}
