//! The rules every plan must satisfy under a policy. One pass, no allocation.
//!
//! Canonical form the rules rely on: regions sorted by start and disjoint; writes sorted by
//! address. Both make the overlap and containment checks a linear merge instead of a quadratic
//! scan, which matters inside the compute budget.

use crate::error::VerifyError;
use crate::wire::{AttestArgs, PolicyRules, Region};

/// What a plan that passed the rules amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PlanTotals {
    pub writes: u32,
    pub bytes: u32,
}

/// Checks the region table: non-empty ranges, sorted, disjoint, known flag bits only.
pub fn check_region_table(regions: impl Iterator<Item = Region>) -> Result<u32, VerifyError> {
    let mut prev_end: Option<u64> = None;
    let mut count = 0u32;
    for region in regions {
        if region.start >= region.end || region.flags & !crate::wire::REGION_FLAGS_MASK != 0 {
            return Err(VerifyError::InvalidRegionTable);
        }
        if let Some(end) = prev_end {
            if region.start < end {
                return Err(VerifyError::InvalidRegionTable);
            }
        }
        prev_end = Some(region.end);
        count += 1;
    }
    Ok(count)
}

/// Checks a decoded plan against `rules`. Returns the totals the attestation records.
pub fn check_plan(rules: &PolicyRules, args: &AttestArgs<'_>) -> Result<PlanTotals, VerifyError> {
    check_region_table(args.regions())?;
    if args.write_count == 0 {
        return Err(VerifyError::EmptyPlan);
    }
    if args.write_count > rules.max_writes {
        return Err(VerifyError::PlanTooManyWrites);
    }

    let mut regions = args.regions().peekable();
    let mut prev: Option<(u64, u64)> = None; // (address, end) of the previous write
    let mut total_bytes: u64 = 0;

    for write in args.writes() {
        let len = write.old.len();
        if len != write.new.len() {
            return Err(VerifyError::WriteLengthMismatch);
        }
        if len == 0 {
            return Err(VerifyError::EmptyWrite);
        }
        if write.old == write.new {
            return Err(VerifyError::NoOpWrite);
        }
        let end = write
            .address
            .checked_add(len as u64)
            .ok_or(VerifyError::AddressOverflow)?;
        if let Some((prev_address, prev_end)) = prev {
            if write.address < prev_address {
                return Err(VerifyError::UnsortedWrites);
            }
            if write.address < prev_end {
                return Err(VerifyError::OverlappingWrites);
            }
        }
        prev = Some((write.address, end));

        // Writes ascend, so regions that end at or before this write can never hold a later one.
        while regions.peek().is_some_and(|r| r.end <= write.address) {
            regions.next();
        }
        let region = match regions.peek() {
            Some(r) if r.start <= write.address && end <= r.end => r,
            _ => return Err(VerifyError::WriteOutsideRegions),
        };
        if rules.wx && region.executable() {
            return Err(VerifyError::WriteInExecutableRegion);
        }
        if !region.writable() {
            return Err(VerifyError::WriteToReadOnlyRegion);
        }

        total_bytes += len as u64;
        if total_bytes > rules.max_bytes as u64 {
            return Err(VerifyError::PlanTooManyBytes);
        }
    }

    Ok(PlanTotals {
        writes: args.write_count,
        bytes: total_bytes as u32,
    })
}
