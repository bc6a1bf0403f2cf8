//! Stage 5 (apply): change a live process by an attested plan, all or nothing.
//!
//! Every thread is held in an interrupt-stop for the whole compare-and-swap: first every
//! write's current bytes must equal the plan's old bytes (else nothing is written), then the
//! writes, then a read-back; any failure restores every byte already written. The `Frozen`
//! guard resumes the target on every path. Whether a plan may be applied at all (an attestation
//! on chain) is the caller's check, made before this runs.

use std::time::Instant;

use memzinc_verifier::plan::PatchPlan;
use serde::Serialize;

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
}

/// The gate: applies `plan` only if the signer's policy holds an attestation of exactly this
/// plan (same plan hash, re-verified link hash), then applies it.
pub fn apply_attested(client: &Client, pid: i32, plan: &PatchPlan) -> Result<AttestedApply> {
    let (address, attestation) =
        client
            .find_attestation(&client.authority(), plan)?
            .ok_or_else(|| Error::NotAttested {
                plan_hash: hex::encode(plan.plan_hash::<Sha2>()),
            })?;
    if attestation.computed_hash::<Sha2>() != attestation.hash {
        return Err(Error::AuditFailed {
            target: hex::encode(plan.target_id),
            why: format!("attestation {address} does not hash to its recorded link"),
        });
    }
    let report = apply(pid, plan)?;
    Ok(AttestedApply {
        attestation: address.to_string(),
        seq: attestation.seq,
        report,
    })
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
    for (index, w) in plan.writes.iter().enumerate() {
        let outcome = process::write_at(pid, w.address, &w.new).and_then(|()| {
            if read_exact(pid, w.address, w.new.len())? == w.new {
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
    })
}
