//! Stage 5 (apply): change a live process by an attested plan, all or nothing.
//!
//! Every thread is held in an interrupt-stop for the whole compare-and-swap: first every
//! write's current bytes must equal the plan's old bytes (else nothing is written), then the
//! writes, then a read-back; any failure restores every byte already written. The `Frozen`
//! guard resumes the target on every path. Whether a plan may be applied at all (an attestation
//! on chain) is the caller's check, made before this runs (the attest client's gate).

use std::time::Instant;

use memzinc_verifier::plan::PatchPlan;
use serde::Serialize;
use sha2::Digest;

use crate::base::{Error, Result};
use crate::introspect::{self, fault_point, Frozen};

#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    pub writes: usize,
    pub bytes: usize,
    pub threads_stopped: usize,
    /// How long the target was held stopped, microseconds.
    pub stopped_us: u128,
    /// SHA-256 over the bytes read back after writing, in plan order (the receipt records it).
    #[serde(serialize_with = "crate::base::hex_hash")]
    pub readback_hash: [u8; 32],
}

/// The named fault points of `apply`, in order.
pub const FAULT_POINTS: &[&str] = &["frozen", "compared", "written", "verified"];

/// The ranges `plan` writes, once each is found to hold the plan's old bytes in `pid` (the
/// compare of compare-and-swap: nothing may be written unless every old byte is there).
pub fn expect_old_bytes(pid: i32, plan: &PatchPlan) -> Result<Vec<(u64, usize)>> {
    let ranges: Vec<(u64, usize)> = plan.writes.iter().map(|w| (w.address, w.old.len())).collect();
    let current = introspect::read_many(pid, &ranges)?;
    for (index, (w, found)) in plan.writes.iter().zip(&current).enumerate() {
        if found != &w.old {
            return Err(Error::OldBytesMismatch {
                index,
                address: w.address,
                found: hex::encode(found),
                expected: hex::encode(&w.old),
            });
        }
    }
    Ok(ranges)
}

/// Applies `plan` to `pid` without looking at the chain: callers go through `apply_attested`.
///
/// All new bytes go in with ONE process_vm_writev, so a memzinc killed between any two steps
/// leaves the target untouched or fully patched (the kernel then ends the ptrace stop). The one
/// window left is a SIGKILL landing inside that single syscall, which the kernel may stop
/// between pages. A short write or a read-back mismatch restores the old bytes.
///
/// A plan of more than [`introspect::IOV_MAX`] writes (the kernel's iovec limit) goes in one call
/// per batch, which widens that window to the gaps between batches; plans the attestor accepts
/// are far smaller (its compute budget holds a few hundred writes), but `restore --apply` and
/// unattested heap repairs can be larger.
pub fn apply(pid: i32, plan: &PatchPlan) -> Result<ApplyReport> {
    // Counted from before the freeze: conservative, the target stops at the interrupt.
    let started = Instant::now();
    let frozen = Frozen::freeze(pid)?;
    fault_point("frozen");

    let ranges = expect_old_bytes(pid, plan)?;
    fault_point("compared");

    let new: Vec<(u64, &[u8])> = plan.writes.iter().map(|w| (w.address, w.new.as_slice())).collect();
    let mut readback = sha2::Sha256::new();
    let written = introspect::write_many(pid, &new);
    fault_point("written");
    let failure = match written {
        Ok(n) if n == new.iter().map(|(_, b)| b.len()).sum::<usize>() => {
            let back = introspect::read_many(pid, &ranges)?;
            // The receipt's hash is of what the process holds now, not of what the plan says.
            for b in &back {
                readback.update(b);
            }
            plan.writes
                .iter()
                .zip(&back)
                .position(|(w, b)| b != &w.new)
                .map(|i| (i, "read-back differs from what was written".to_string()))
        }
        Ok(n) => {
            // The first write that did not land completely.
            let mut sum = 0;
            let i = plan.writes.iter().position(|w| {
                sum += w.new.len();
                sum > n
            });
            Some((i.unwrap_or(0), format!("short write: {n} bytes landed")))
        }
        Err(e) => Some((0, e.to_string())),
    };
    if let Some((index, why)) = failure {
        let old: Vec<(u64, &[u8])> = plan.writes.iter().map(|w| (w.address, w.old.as_slice())).collect();
        let restored = match introspect::write_many(pid, &old) {
            Ok(n) if n == old.iter().map(|(_, b)| b.len()).sum::<usize>() => plan.writes.len(),
            _ => 0,
        };
        return Err(Error::ApplyFailed {
            index,
            address: plan.writes[index].address,
            why,
            restored,
        });
    }
    fault_point("verified");

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
