//! The rules every plan must satisfy under a policy. One pass, no allocation.
//!
//! Canonical form the rules rely on: regions sorted by start and disjoint; writes sorted by
//! address. Both make the overlap and containment checks a linear merge instead of a quadratic
//! scan, which matters inside the compute budget.

use crate::error::VerifyError;
use crate::hash::{self, Hash, Sha256};
use crate::merkle;
use crate::wire::{EvidenceView, PlanView, PolicyRules, Region, Submission, PAGE_LEN};

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
pub fn check_plan(rules: &PolicyRules, args: &PlanView<'_>) -> Result<PlanTotals, VerifyError> {
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

/// Checks the evidence: the snapshot root is the hash of the proven sub-roots, every region of
/// the plan is a leaf of the region tree, every page is a leaf of the page tree, and every
/// write's old bytes are the proven pages' bytes. Run after `check_plan` (which guarantees
/// sorted, disjoint, in-region writes).
pub fn check_evidence<H: Sha256>(plan: &PlanView<'_>, evidence: &EvidenceView<'_>) -> Result<(), VerifyError> {
    let root = hash::snapshot_root::<H>(
        evidence.pages_root,
        evidence.regions_root,
        evidence.page_count,
        evidence.region_count,
    );
    if &root != plan.snapshot_root {
        return Err(VerifyError::SnapshotRootMismatch);
    }

    if evidence.region_proof_count != plan.region_count {
        return Err(VerifyError::MissingRegionProof);
    }
    for (region, proof) in plan.regions().zip(evidence.region_proofs()) {
        let leaf = merkle::region_leaf::<H>(&region);
        if !merkle::verify_proof::<H>(
            evidence.regions_root,
            &leaf,
            proof.index,
            evidence.region_count,
            proof.siblings(),
        ) {
            return Err(VerifyError::InvalidRegionProof);
        }
    }

    let mut prev_page: Option<u64> = None;
    for page in evidence.pages() {
        if page.address % PAGE_LEN as u64 != 0 || prev_page.is_some_and(|p| page.address <= p) {
            return Err(VerifyError::UnsortedPages);
        }
        prev_page = Some(page.address);
        let leaf = merkle::page_leaf::<H>(page.address, page.contents);
        if !merkle::verify_proof::<H>(
            evidence.pages_root,
            &leaf,
            page.index,
            evidence.page_count,
            page.siblings(),
        ) {
            return Err(VerifyError::InvalidPageProof);
        }
    }

    // Writes and pages both ascend: one merge compares every old byte with the proven page.
    let mut pages = evidence.pages().peekable();
    for write in plan.writes() {
        let mut address = write.address;
        let mut old = write.old;
        while !old.is_empty() {
            let page_start = address - address % PAGE_LEN as u64;
            while pages.peek().is_some_and(|p| p.address < page_start) {
                pages.next();
            }
            let page = match pages.peek() {
                Some(p) if p.address == page_start => p,
                _ => return Err(VerifyError::MissingPageProof),
            };
            let offset = (address - page_start) as usize;
            let n = old.len().min(PAGE_LEN - offset);
            if page.contents[offset..offset + n] != old[..n] {
                return Err(VerifyError::OldBytesMismatch);
            }
            address += n as u64;
            old = &old[n..];
        }
    }
    Ok(())
}

/// The verdict on an accepted submission: what an attestation records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub plan_hash: Hash,
    pub region_table_hash: Hash,
    pub totals: PlanTotals,
}

/// Everything `attest` checks about the uploaded bytes, in one place for the program, the
/// host's pre-check and offline replays.
pub fn verify_submission<'a, H: Sha256>(
    rules: &PolicyRules,
    data: &'a [u8],
) -> Result<(Submission<'a>, Verdict), VerifyError> {
    let submission = Submission::parse(data)?;
    let totals = check_plan(rules, &submission.plan)?;
    check_evidence::<H>(&submission.plan, &submission.evidence)?;
    Ok((
        submission,
        Verdict {
            plan_hash: hash::plan_hash::<H>(submission.plan.encoded),
            region_table_hash: hash::region_table_hash::<H>(submission.plan.regions_encoded),
            totals,
        },
    ))
}
