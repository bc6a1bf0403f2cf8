//! The rules every plan must satisfy under a policy. One pass, no allocation.
//!
//! Canonical form the rules rely on: regions sorted by start and disjoint; writes sorted by
//! address. Both make the overlap and containment checks a linear merge instead of a quadratic
//! scan, which matters inside the compute budget.

use crate::error::VerifyError;
use crate::hash::{self, Hash, Sha256};
use crate::merkle;
use crate::wire::{
    field_kind, EvidenceView, PageIter, PlanView, PolicyRules, Region, Slot, Submission, SymbolRule, SymbolRules,
    MAX_SYMBOL_RULES, PAGE_LEN,
};

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
    check_plan_writes(rules, args, true)
}

/// [`check_plan`], where `need_a_write` says whether a plan without writes is refused: a part
/// of a relocation checked in parts may hold only slots whose bytes stay as they are (the
/// relocation as a whole still needs a write, `relocation_stream::finish`).
pub(crate) fn check_plan_writes(
    rules: &PolicyRules,
    args: &PlanView<'_>,
    need_a_write: bool,
) -> Result<PlanTotals, VerifyError> {
    check_region_table(args.regions())?;
    if need_a_write && args.write_count == 0 {
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

    if args.slot_count > 0 {
        if rules.max_moves == 0 {
            return Err(VerifyError::RelocationNotAllowed);
        }
        if args.slot_count > rules.max_moves {
            return Err(VerifyError::PlanTooManyMoves);
        }
        check_slot_table(args)?;
    }

    Ok(PlanTotals {
        writes: args.write_count,
        bytes: total_bytes as u32,
    })
}

/// A relocation's slots: ascending, disjoint, 8-byte aligned and sized ranges, each taking the
/// object of another slot of its size; and a permutation. `slot[slot[i].to].from == i` for every
/// `i` makes `to` one-to-one (`to(i) = to(k)` gives `i = k`), so on finitely many slots it is a
/// bijection and `from` its inverse: no two objects go to one slot, no object goes nowhere.
fn check_slot_table(plan: &PlanView<'_>) -> Result<(), VerifyError> {
    let n = plan.slot_count;
    let mut prev_end: Option<u64> = None;
    for (i, slot) in plan.slots().enumerate() {
        let i = i as u32;
        let end = slot
            .address
            .checked_add(slot.len as u64)
            .ok_or(VerifyError::AddressOverflow)?;
        let well_formed = slot.len > 0
            && slot.len % 8 == 0
            && slot.address % 8 == 0
            && slot.from < n
            && slot.to < n
            && slot.from != i
            && slot.to != i
            && prev_end.is_none_or(|e| e <= slot.address);
        if !well_formed || plan.slot(slot.from).is_none_or(|s| s.len != slot.len) {
            return Err(VerifyError::InvalidRelocation);
        }
        if plan.slot(slot.to).is_none_or(|s| s.from != i) {
            return Err(VerifyError::RelocationNotAPermutation);
        }
        prev_end = Some(end);
    }
    Ok(())
}

/// The proven pages of the evidence, read a word at a time; the page last found is kept, since
/// an object's words are read in order.
pub(crate) struct ProvenWords<'a> {
    evidence: &'a EvidenceView<'a>,
    last: Option<(u64, &'a [u8; PAGE_LEN])>,
    /// The pages after the last one found. Words are read in address order, and the pages
    /// ascend (`check_evidence`), so a search goes on from there: reading every page's words
    /// costs one pass over the pages, not one from the first page per page.
    after: PageIter<'a>,
}

impl<'a> ProvenWords<'a> {
    pub(crate) fn new(evidence: &'a EvidenceView<'a>) -> Self {
        ProvenWords {
            evidence,
            last: None,
            after: evidence.pages(),
        }
    }

    /// The little-endian word at `address` (8-aligned, so inside one page).
    pub(crate) fn word(&mut self, address: u64) -> Result<u64, VerifyError> {
        let page = address - address % PAGE_LEN as u64;
        let contents = match self.last {
            Some((at, contents)) if at == page => contents,
            last => {
                let mut pages = match last {
                    Some((at, _)) if at < page => self.after,
                    _ => self.evidence.pages(),
                };
                let found = pages
                    .find(|p| p.address >= page)
                    .filter(|p| p.address == page)
                    .ok_or(VerifyError::MissingPageProof)?;
                self.after = pages;
                self.last = Some((page, found.contents));
                found.contents
            }
        };
        let at = (address - page) as usize;
        Ok(u64::from_le_bytes(
            contents[at..at + 8]
                .try_into()
                .map_err(|_| VerifyError::MissingPageProof)?,
        ))
    }
}

/// Where the relocation moves the byte at `v`: into slot `from`'s object, by its offset there,
/// if `v` lies in a slot; else nowhere.
fn moved(plan: &PlanView<'_>, v: u64) -> u64 {
    // The last slot starting at or below `v` (slots ascend and are disjoint).
    let (mut lo, mut hi) = (0u32, plan.slot_count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match plan.slot(mid) {
            Some(s) if s.address <= v => lo = mid + 1,
            _ => hi = mid,
        }
    }
    let Some(slot) = lo.checked_sub(1).and_then(|i| plan.slot(i)) else {
        return v;
    };
    if v >= slot.end() {
        return v;
    }
    match plan.slot(slot.to) {
        Some(target) => target.address + (v - slot.address),
        None => v,
    }
}

/// Word `k` of what slot `slot` must hold after the relocation: word `k` of the object that
/// moves in, moved if it points into a moved object.
fn slot_word(plan: &PlanView<'_>, words: &mut ProvenWords<'_>, slot: Slot, k: u32) -> Result<u64, VerifyError> {
    let source = plan.slot(slot.from).ok_or(VerifyError::InvalidRelocation)?;
    Ok(moved(plan, words.word(source.address + 8 * k as u64)?))
}

/// What makes a relocation sound, from the proven pages; run after `check_plan` (slot table a
/// permutation of equal-sized slots, writes ascending and disjoint) and `check_evidence` (old
/// bytes proven). Each slot ends up holding the object of its `from` slot, byte for byte,
/// except that every word pointing into a moved object is moved with it (interior pointers by
/// their offset): written so, or already so. Every other write is one aligned 8-byte pointer
/// into a moved object, rewritten to the move of its old value. Nothing else is written.
///
/// Not proven here: that no reference the plan leaves alone still points to a moved object.
/// That needs every readable word of the process, which the host scans (and pins what it
/// cannot rewrite); the program sees only the proven pages.
pub fn check_relocation(plan: &PlanView<'_>, evidence: &EvidenceView<'_>) -> Result<(), VerifyError> {
    if plan.slot_count == 0 {
        return Ok(());
    }
    let mut words = ProvenWords::new(evidence);
    let slots_left_alone = |from: u32, to: u32, words: &mut ProvenWords<'_>| -> Result<(), VerifyError> {
        for i in from..to {
            let slot = plan.slot(i).ok_or(VerifyError::InvalidRelocation)?;
            for k in 0..slot.len / 8 {
                if slot_word(plan, words, slot, k)? != words.word(slot.address + 8 * k as u64)? {
                    return Err(VerifyError::MovedBytesMismatch);
                }
            }
        }
        Ok(())
    };
    let mut next = 0u32; // the first slot no write has reached yet
    for write in plan.writes() {
        let end = write.address + write.new.len() as u64;
        let mut passed = next;
        while plan.slot(passed).is_some_and(|s| s.end() <= write.address) {
            passed += 1;
        }
        slots_left_alone(next, passed, &mut words)?;
        next = passed;
        match plan.slot(next) {
            Some(slot) if slot.address < end => {
                if write.address != slot.address || write.new.len() != slot.len as usize {
                    return Err(VerifyError::MovedBytesMismatch);
                }
                for (k, new) in write.new.as_chunks::<8>().0.iter().enumerate() {
                    if slot_word(plan, &mut words, slot, k as u32)? != u64::from_le_bytes(*new) {
                        return Err(VerifyError::MovedBytesMismatch);
                    }
                }
                next += 1;
            }
            _ => {
                let (Ok(old), Ok(new)) = (<[u8; 8]>::try_from(write.old), <[u8; 8]>::try_from(write.new)) else {
                    return Err(VerifyError::PointerNotMoved);
                };
                let old = u64::from_le_bytes(old);
                if write.address % 8 != 0 || moved(plan, old) == old || u64::from_le_bytes(new) != moved(plan, old) {
                    return Err(VerifyError::PointerNotMoved);
                }
            }
        }
    }
    slots_left_alone(next, plan.slot_count, &mut words)
}

/// Checks the evidence: the snapshot root is the hash of the proven sub-roots, every region of
/// the plan is a leaf of the region tree, every page is a leaf of the page tree, every symbol
/// proof leads to the symbol root (keys ascending), and every write's old bytes are the proven
/// pages' bytes. Run after `check_plan` (which guarantees
/// sorted, disjoint, in-region writes).
pub fn check_evidence<H: Sha256>(plan: &PlanView<'_>, evidence: &EvidenceView<'_>) -> Result<(), VerifyError> {
    let root = hash::snapshot_root::<H>(&evidence.tree_roots());
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

    let mut prev_key: Option<&[u8; 32]> = None;
    for symbol in evidence.symbols() {
        if prev_key.is_some_and(|k| symbol.key <= k) {
            return Err(VerifyError::InvalidSymbolProof);
        }
        prev_key = Some(symbol.key);
        let leaf = merkle::symbol_leaf::<H>(symbol.key, symbol.address, symbol.size);
        if !merkle::verify_proof::<H>(
            evidence.symbols_root,
            &leaf,
            symbol.index,
            evidence.symbol_count,
            symbol.siblings(),
        ) {
            return Err(VerifyError::InvalidSymbolProof);
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

/// The value of a typed field (its new bytes) against its rule.
fn check_field_value(rule: &SymbolRule, bytes: &[u8], plan: &PlanView<'_>) -> Result<(), VerifyError> {
    let mut le = [0u8; 8];
    le[..bytes.len()].copy_from_slice(bytes);
    let raw = u64::from_le_bytes(le);
    let in_bounds = match rule.kind {
        field_kind::UNSIGNED => rule.min <= raw && raw <= rule.max,
        field_kind::SIGNED => {
            let shift = 64 - 8 * bytes.len() as u32;
            let value = ((raw << shift) as i64) >> shift;
            rule.min as i64 <= value && value <= rule.max as i64
        }
        field_kind::POINTER => {
            // The plan's regions are proven leaves of the snapshot's region tree (check_evidence).
            if !plan.regions().any(|r| r.readable() && r.start <= raw && raw < r.end) {
                return Err(VerifyError::PointerTargetUnreadable);
            }
            true
        }
        _ => true,
    };
    if in_bounds {
        Ok(())
    } else {
        Err(VerifyError::FieldValueOutOfBounds)
    }
}

/// Checks a plan against a policy's symbol rules; run after `check_plan` and `check_evidence`
/// (writes well-formed and ascending, regions and symbol proofs proven). Without rules it costs
/// nothing. With rules: every write lies inside one rule's range `[symbol + start, symbol +
/// end)` at the symbol's proven address; a write that touches a typed field covers all of it,
/// and the field's new value is in bounds (integers) or points into a readable proven region
/// (pointers). O(writes × rules), rules ≤ 8.
pub fn check_symbol_rules(
    rules: &SymbolRules,
    plan: &PlanView<'_>,
    evidence: &EvidenceView<'_>,
) -> Result<(), VerifyError> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut resolved = [(SymbolRule::default(), 0u64, 0u64); MAX_SYMBOL_RULES];
    for (slot, rule) in resolved.iter_mut().zip(rules.iter()) {
        let symbol = evidence
            .symbols()
            .find(|s| s.key == &rule.symbol)
            .ok_or(VerifyError::MissingSymbolProof)?;
        let lo = symbol
            .address
            .checked_add(rule.start)
            .ok_or(VerifyError::AddressOverflow)?;
        let hi = symbol
            .address
            .checked_add(rule.end)
            .ok_or(VerifyError::AddressOverflow)?;
        *slot = (rule, lo, hi);
    }
    let resolved = &resolved[..rules.len()];
    for write in plan.writes() {
        let end = write
            .address
            .checked_add(write.new.len() as u64)
            .ok_or(VerifyError::AddressOverflow)?;
        let mut allowed = false;
        for (rule, lo, hi) in resolved {
            allowed |= *lo <= write.address && end <= *hi;
            if rule.kind != field_kind::BYTES && *lo < end && write.address < *hi {
                if *lo < write.address || end < *hi {
                    return Err(VerifyError::PartialFieldWrite);
                }
                let at = (*lo - write.address) as usize;
                check_field_value(rule, &write.new[at..at + (*hi - *lo) as usize], plan)?;
            }
        }
        if !allowed {
            return Err(VerifyError::WriteOutsideAllowedRanges);
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
    symbol_rules: &SymbolRules,
    data: &'a [u8],
) -> Result<(Submission<'a>, Verdict), VerifyError> {
    let submission = Submission::parse(data)?;
    let totals = check_plan(rules, &submission.plan)?;
    check_evidence::<H>(&submission.plan, &submission.evidence)?;
    check_relocation(&submission.plan, &submission.evidence)?;
    check_symbol_rules(symbol_rules, &submission.plan, &submission.evidence)?;
    Ok((
        submission,
        Verdict {
            plan_hash: hash::plan_hash::<H>(submission.plan.encoded),
            region_table_hash: hash::region_table_hash::<H>(submission.plan.regions_encoded),
            totals,
        },
    ))
}
