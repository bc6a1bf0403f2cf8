//! Shared pieces of the fuzz targets: hashers and a reference implementation of memzinc's
//! wire format, Merkle tree and rules, written independently of `memzinc-verifier` (tags and
//! layouts spelled out here from the documentation, quadratic scans instead of merges, a
//! recursive tree instead of a level-by-level one) so the targets can compare verdicts.
//!
//! Everything here is deliberately simple and slow; none of it is used outside `fuzz/`.

use memzinc_verifier::plan::{Evidence, PatchPlan, Write};
use memzinc_verifier::rules::PlanTotals;
use memzinc_verifier::wire::{PolicyRules, Region, Slot, SymbolRule, SymbolRules};
use memzinc_verifier::VerifyError;

pub type Hash = [u8; 32];

/// With `FUZZ_VERDICTS` set, targets print each verdict to stderr (`verdict: ...`), so
/// `scripts/fuzz.sh` can show how deep a corpus reaches (`sort | uniq -c` over a corpus replay).
pub fn report_verdict(verdict: &dyn std::fmt::Debug) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FUZZ_VERDICTS").is_some()) {
        eprintln!("verdict: {verdict:?}");
    }
}
pub const PAGE: u64 = 4096;

/// Real SHA-256 (the `sha2` crate), as the host uses.
pub struct Sha2;

impl memzinc_verifier::Sha256 for Sha2 {
    fn hashv(parts: &[&[u8]]) -> Hash {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }
}

/// A "hash" that is always zero: every Merkle proof of the right length verifies against a zero
/// root, so a byte-level fuzzer can get past the proofs and reach the old-bytes comparison.
pub struct ZeroHash;

impl memzinc_verifier::Sha256 for ZeroHash {
    fn hashv(_: &[&[u8]]) -> Hash {
        [0; 32]
    }
}

/// The hash functions the references use, spelled from the documented domain tags.
pub trait RefHash: memzinc_verifier::Sha256 {
    fn h(parts: &[&[u8]]) -> Hash {
        <Self as memzinc_verifier::Sha256>::hashv(parts)
    }
    fn node(l: &Hash, r: &Hash) -> Hash {
        Self::h(&[b"memzinc/node/v1", l, r])
    }
    fn page_leaf(address: u64, contents: &[u8]) -> Hash {
        Self::h(&[b"memzinc/page/v1", &address.to_le_bytes(), contents])
    }
    fn unreadable_leaf(address: u64) -> Hash {
        Self::h(&[b"memzinc/unreadable/v1", &address.to_le_bytes()])
    }
    fn region_leaf(r: &Region) -> Hash {
        Self::h(&[
            b"memzinc/region/v1",
            &r.start.to_le_bytes(),
            &r.end.to_le_bytes(),
            &[r.flags],
        ])
    }
    fn symbol_leaf(key: &Hash, address: u64, size: u64) -> Hash {
        Self::h(&[b"memzinc/symbol/v1", key, &address.to_le_bytes(), &size.to_le_bytes()])
    }
    /// Over (pages root, regions root, page count, region count, symbols root, symbol count).
    fn snapshot_root(roots: (&Hash, &Hash, u64, u64, &Hash, u64)) -> Hash {
        let (pages_root, regions_root, page_count, region_count, symbols_root, symbol_count) = roots;
        Self::h(&[
            b"memzinc/snapshot/v2",
            pages_root,
            regions_root,
            &page_count.to_le_bytes(),
            &region_count.to_le_bytes(),
            symbols_root,
            &symbol_count.to_le_bytes(),
        ])
    }
    fn evidence_root(e: &Evidence) -> Hash {
        Self::snapshot_root((
            &e.pages_root,
            &e.regions_root,
            e.page_count,
            e.region_count,
            &e.symbols_root,
            e.symbol_count,
        ))
    }
}

impl RefHash for Sha2 {}
impl RefHash for ZeroHash {}

// ---------------------------------------------------------------------------------------------
// Merkle tree, recursively: a tree of n > 1 leaves is a perfect tree of the largest power of two
// k < n leaves on the left and the tree of the other n - k on the right. (The verifier builds
// level by level, promoting the odd last node; both describe the same tree.)

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root; the empty tree's root is all zeroes.
pub fn ref_root<H: RefHash>(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => [0; 32],
        1 => leaves[0],
        n => {
            let k = split(n);
            H::node(&ref_root::<H>(&leaves[..k]), &ref_root::<H>(&leaves[k..]))
        }
    }
}

/// Siblings from the leaf upwards.
pub fn ref_proof<H: RefHash>(leaves: &[Hash], index: usize) -> Vec<Hash> {
    assert!(index < leaves.len());
    if leaves.len() == 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if index < k {
        let mut p = ref_proof::<H>(&leaves[..k], index);
        p.push(ref_root::<H>(&leaves[k..]));
        p
    } else {
        let mut p = ref_proof::<H>(&leaves[k..], index - k);
        p.push(ref_root::<H>(&leaves[..k]));
        p
    }
}

/// Which side each sibling of a proof for `index` of `count` leaves is on, from the leaf
/// upwards: `true` = the sibling is on the left. `None` if `index >= count`.
pub fn ref_shape(index: u64, count: u64) -> Option<Vec<bool>> {
    if index >= count {
        return None;
    }
    if count == 1 {
        return Some(Vec::new());
    }
    let mut k = 1u64;
    while k < count - k {
        k *= 2;
    }
    let (mut s, left) = if index < k {
        (ref_shape(index, k)?, false)
    } else {
        (ref_shape(index - k, count - k)?, true)
    };
    s.push(left);
    Some(s)
}

/// Proof check by the recursive shape.
pub fn ref_verify<H: RefHash>(root: &Hash, leaf: &Hash, index: u64, count: u64, siblings: &[Hash]) -> bool {
    let Some(shape) = ref_shape(index, count) else {
        return false;
    };
    if shape.len() != siblings.len() {
        return false;
    }
    let mut acc = *leaf;
    for (left, s) in shape.iter().zip(siblings) {
        acc = if *left { H::node(s, &acc) } else { H::node(&acc, s) };
    }
    &acc == root
}

// ---------------------------------------------------------------------------------------------
// Encoding (Borsh as documented in verifier/src/wire.rs).

pub fn ref_encode_regions(regions: &[Region]) -> Vec<u8> {
    let mut out = (regions.len() as u32).to_le_bytes().to_vec();
    for r in regions {
        out.extend(r.start.to_le_bytes());
        out.extend(r.end.to_le_bytes());
        out.push(r.flags);
    }
    out
}

pub fn ref_encode_plan(p: &PatchPlan) -> Vec<u8> {
    let mut out = p.target_id.to_vec();
    out.extend(p.snapshot_root);
    out.extend(p.model_hash);
    out.extend(ref_encode_regions(&p.regions));
    out.extend((p.writes.len() as u32).to_le_bytes());
    for w in &p.writes {
        out.extend(w.address.to_le_bytes());
        out.extend((w.old.len() as u32).to_le_bytes());
        out.extend(&w.old);
        out.extend((w.new.len() as u32).to_le_bytes());
        out.extend(&w.new);
    }
    out.extend((p.slots.len() as u32).to_le_bytes());
    for s in &p.slots {
        out.extend(s.address.to_le_bytes());
        out.extend(s.len.to_le_bytes());
        out.extend(s.from.to_le_bytes());
        out.extend(s.to.to_le_bytes());
    }
    out
}

pub fn ref_encode_evidence(e: &Evidence) -> Vec<u8> {
    let mut out = e.pages_root.to_vec();
    out.extend(e.regions_root);
    out.extend(e.page_count.to_le_bytes());
    out.extend(e.region_count.to_le_bytes());
    out.extend((e.region_proofs.len() as u32).to_le_bytes());
    for p in &e.region_proofs {
        out.extend(p.index.to_le_bytes());
        out.extend((p.siblings.len() as u32).to_le_bytes());
        p.siblings.iter().for_each(|s| out.extend(s));
    }
    out.extend((e.pages.len() as u32).to_le_bytes());
    for p in &e.pages {
        assert_eq!(p.contents.len(), PAGE as usize, "harness: a page is 4096 bytes");
        out.extend(p.address.to_le_bytes());
        out.extend(p.index.to_le_bytes());
        out.extend(&p.contents);
        out.extend((p.siblings.len() as u32).to_le_bytes());
        p.siblings.iter().for_each(|s| out.extend(s));
    }
    out.extend(e.symbols_root);
    out.extend(e.symbol_count.to_le_bytes());
    out.extend((e.symbols.len() as u32).to_le_bytes());
    for p in &e.symbols {
        out.extend(p.symbol.key);
        out.extend(p.symbol.address.to_le_bytes());
        out.extend(p.symbol.size.to_le_bytes());
        out.extend(p.index.to_le_bytes());
        out.extend((p.siblings.len() as u32).to_le_bytes());
        p.siblings.iter().for_each(|s| out.extend(s));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rules, as ARCHITECTURE.md and rules.rs document them, by brute force.

/// `check_plan` by quadratic scans and linear region lookup. Checks are reported in the
/// documented order: region table, empty plan, write count, then write by write (length
/// mismatch, empty, no-op, overflow, order, overlap, containment, W^X, writable, byte budget).
pub fn ref_check_plan(rules: &PolicyRules, p: &PatchPlan) -> Result<PlanTotals, VerifyError> {
    for (i, r) in p.regions.iter().enumerate() {
        if r.start >= r.end || r.flags > 7 {
            return Err(VerifyError::InvalidRegionTable);
        }
        // Sorted by start and pairwise disjoint = every earlier region ends at or before it.
        if p.regions[..i].iter().any(|q| q.end > r.start) {
            return Err(VerifyError::InvalidRegionTable);
        }
    }
    if p.writes.is_empty() {
        return Err(VerifyError::EmptyPlan);
    }
    if p.writes.len() as u64 > rules.max_writes as u64 {
        return Err(VerifyError::PlanTooManyWrites);
    }
    let mut bytes: u64 = 0;
    for (i, w) in p.writes.iter().enumerate() {
        if w.old.len() != w.new.len() {
            return Err(VerifyError::WriteLengthMismatch);
        }
        if w.old.is_empty() {
            return Err(VerifyError::EmptyWrite);
        }
        if w.old == w.new {
            return Err(VerifyError::NoOpWrite);
        }
        let start = w.address as u128;
        let end = start + w.old.len() as u128;
        if end > u64::MAX as u128 {
            return Err(VerifyError::AddressOverflow);
        }
        if p.writes[..i].iter().any(|q| q.address > w.address) {
            return Err(VerifyError::UnsortedWrites);
        }
        if p.writes[..i].iter().any(|q| {
            let (qs, qe) = (q.address as u128, q.address as u128 + q.old.len() as u128);
            qs < end && start < qe
        }) {
            return Err(VerifyError::OverlappingWrites);
        }
        let Some(region) = p
            .regions
            .iter()
            .find(|r| r.start as u128 <= start && end <= r.end as u128)
        else {
            return Err(VerifyError::WriteOutsideRegions);
        };
        if rules.wx && region.flags & 4 != 0 {
            return Err(VerifyError::WriteInExecutableRegion);
        }
        if region.flags & 2 == 0 {
            return Err(VerifyError::WriteToReadOnlyRegion);
        }
        bytes += w.old.len() as u64;
        if bytes > rules.max_bytes as u64 {
            return Err(VerifyError::PlanTooManyBytes);
        }
    }
    if !p.slots.is_empty() {
        ref_check_slot_table(rules, &p.slots)?;
    }
    Ok(PlanTotals {
        writes: p.writes.len() as u32,
        bytes: bytes as u32,
    })
}

/// A relocation's slot table, after the writes: the policy allows moves at all and this many,
/// then slot by slot (first failing slot decides): no wrap past 2^64 (`AddressOverflow`); a
/// non-empty, 8-aligned, 8-sized range after every earlier slot, `from`/`to` other slots, the
/// object of slot `from` as long as this one (`InvalidRelocation`); and slot `to` takes its
/// object from this one (`RelocationNotAPermutation`).
fn ref_check_slot_table(rules: &PolicyRules, slots: &[Slot]) -> Result<(), VerifyError> {
    if rules.max_moves == 0 {
        return Err(VerifyError::RelocationNotAllowed);
    }
    if slots.len() as u64 > rules.max_moves as u64 {
        return Err(VerifyError::PlanTooManyMoves);
    }
    let n = slots.len();
    let end = |s: &Slot| s.address as u128 + s.len as u128;
    for (i, s) in slots.iter().enumerate() {
        if end(s) > u64::MAX as u128 {
            return Err(VerifyError::AddressOverflow);
        }
        let (from, to) = (s.from as usize, s.to as usize);
        let shaped = s.len != 0 && s.len % 8 == 0 && s.address % 8 == 0;
        let after_earlier = slots[..i].iter().all(|q| end(q) <= s.address as u128);
        let linked = from < n && to < n && from != i && to != i && slots[from].len == s.len;
        if !(shaped && after_earlier && linked) {
            return Err(VerifyError::InvalidRelocation);
        }
        if slots[to].from as usize != i {
            return Err(VerifyError::RelocationNotAPermutation);
        }
    }
    Ok(())
}

/// `check_relocation` by images of memory: the proven bytes before (pages looked up in a map),
/// the bytes after (every write's new bytes laid over them), and what each slot must hold after
/// (its source slot's bytes before, every word pointing into a slot moved by a linear scan).
/// Each write is judged where it lies (a write touching a slot must be that first slot exactly,
/// else `MovedBytesMismatch`; a write touching none is one aligned pointer moved, else
/// `PointerNotMoved`), and each slot once every write below its end has been judged, word by
/// word: a word unproven before or after is `MissingPageProof`, one that differs from the
/// expected image `MovedBytesMismatch`. Only meaningful after `ref_check_plan` and
/// `ref_check_evidence` accepted (table a permutation, writes disjoint, old bytes proven).
pub fn ref_check_relocation(p: &PatchPlan, e: &Evidence) -> Result<(), VerifyError> {
    if p.slots.is_empty() {
        return Ok(());
    }
    let pages: std::collections::BTreeMap<u64, &[u8]> =
        e.pages.iter().map(|q| (q.address, q.contents.as_slice())).collect();
    let before = |a: u64| pages.get(&(a - a % PAGE)).map(|c| c[(a % PAGE) as usize]);
    let mut written: std::collections::HashMap<u64, u8> = std::collections::HashMap::new();
    for w in &p.writes {
        for (k, b) in w.new.iter().enumerate() {
            written.insert(w.address + k as u64, *b);
        }
    }
    let after = |a: u64| written.get(&a).copied().or_else(|| before(a));
    let word = |image: &dyn Fn(u64) -> Option<u8>, a: u64| -> Option<u64> {
        (0..8)
            .rev()
            .try_fold(0u64, |acc, k| Some(acc << 8 | image(a + k)? as u64))
    };
    let end = |s: &Slot| s.address as u128 + s.len as u128;
    let holding = |v: u64| p.slots.iter().position(|s| s.address <= v && (v as u128) < end(s));
    let moved = |v: u64| match holding(v) {
        Some(i) => p.slots[p.slots[i].to as usize].address + (v - p.slots[i].address),
        None => v,
    };

    // What is judged, in the order the checks meet it: (position, slots before writes there).
    enum Judged<'a> {
        Slot(&'a Slot),
        Misfit,
        Pointer(&'a Write),
    }
    let mut order: Vec<(u64, u8, Judged)> = Vec::new();
    let mut exactly_written = vec![false; p.slots.len()];
    for w in &p.writes {
        let w_end = w.address as u128 + w.new.len() as u128;
        let touched = p
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| (s.address as u128) < w_end && (w.address as u128) < end(s))
            .min_by_key(|(_, s)| s.address);
        let judged = match touched {
            None => Judged::Pointer(w),
            Some((i, s)) if s.address == w.address && s.len as usize == w.new.len() => {
                exactly_written[i] = true;
                Judged::Slot(s)
            }
            Some(_) => Judged::Misfit,
        };
        order.push((w.address, 1, judged));
    }
    for (i, s) in p.slots.iter().enumerate() {
        if !exactly_written[i] {
            order.push(((end(s)) as u64, 0, Judged::Slot(s)));
        }
    }
    order.sort_by_key(|(at, rank, _)| (*at, *rank));

    for (_, _, judged) in order {
        match judged {
            Judged::Misfit => return Err(VerifyError::MovedBytesMismatch),
            Judged::Pointer(w) => {
                // An aligned 8-byte write lies inside one page, so `address + 7` does not wrap.
                if w.new.len() != 8 || w.address % 8 != 0 {
                    return Err(VerifyError::PointerNotMoved);
                }
                let old = word(&|a| w.old.get((a - w.address) as usize).copied(), w.address);
                let new = word(&|a| w.new.get((a - w.address) as usize).copied(), w.address);
                match (old, new) {
                    (Some(old), Some(new)) if holding(old).is_some() && new == moved(old) => {}
                    _ => return Err(VerifyError::PointerNotMoved),
                }
            }
            Judged::Slot(s) => {
                let source = &p.slots[s.from as usize];
                for k in (0..s.len as u64).step_by(8) {
                    let (Some(was), Some(is)) = (word(&before, source.address + k), word(&after, s.address + k)) else {
                        return Err(VerifyError::MissingPageProof);
                    };
                    if moved(was) != is {
                        return Err(VerifyError::MovedBytesMismatch);
                    }
                }
            }
        }
    }
    Ok(())
}

/// `check_evidence` on owned evidence, generic over the hash: proofs checked with
/// [`ref_verify`], old bytes compared byte by byte with a linear page search. Only meaningful
/// after `ref_check_plan` accepted the plan (as the verifier documents).
pub fn ref_check_evidence<H: RefHash>(p: &PatchPlan, e: &Evidence) -> Result<(), VerifyError> {
    if H::evidence_root(e) != p.snapshot_root {
        return Err(VerifyError::SnapshotRootMismatch);
    }
    if e.region_proofs.len() != p.regions.len() {
        return Err(VerifyError::MissingRegionProof);
    }
    for (r, proof) in p.regions.iter().zip(&e.region_proofs) {
        if !ref_verify::<H>(
            &e.regions_root,
            &H::region_leaf(r),
            proof.index,
            e.region_count,
            &proof.siblings,
        ) {
            return Err(VerifyError::InvalidRegionProof);
        }
    }
    for (i, page) in e.pages.iter().enumerate() {
        if page.address % PAGE != 0 || e.pages[..i].iter().any(|q| q.address >= page.address) {
            return Err(VerifyError::UnsortedPages);
        }
        if !ref_verify::<H>(
            &e.pages_root,
            &H::page_leaf(page.address, &page.contents),
            page.index,
            e.page_count,
            &page.siblings,
        ) {
            return Err(VerifyError::InvalidPageProof);
        }
    }
    for (i, symbol) in e.symbols.iter().enumerate() {
        if e.symbols[..i].iter().any(|q| q.symbol.key >= symbol.symbol.key) {
            return Err(VerifyError::InvalidSymbolProof);
        }
        let s = &symbol.symbol;
        if !ref_verify::<H>(
            &e.symbols_root,
            &H::symbol_leaf(&s.key, s.address, s.size),
            symbol.index,
            e.symbol_count,
            &symbol.siblings,
        ) {
            return Err(VerifyError::InvalidSymbolProof);
        }
    }
    for w in &p.writes {
        for (k, old) in w.old.iter().enumerate() {
            let a = w.address + k as u64; // no overflow: the plan check passed
            let Some(page) = e.pages.iter().find(|q| q.address == a - a % PAGE) else {
                return Err(VerifyError::MissingPageProof);
            };
            if page.contents[(a % PAGE) as usize] != *old {
                return Err(VerifyError::OldBytesMismatch);
            }
        }
    }
    Ok(())
}

/// Whether a symbol rule is in range, from the documented kinds: a typed field is 1, 2, 4 or 8
/// bytes (a pointer 8) with min <= max (as i64 for signed ones).
pub fn ref_rule_valid(r: &SymbolRule) -> bool {
    let width = r.end as i128 - r.start as i128;
    width > 0
        && match r.kind {
            0 => true,
            1 => [1, 2, 4, 8].contains(&width) && r.min <= r.max,
            2 => [1, 2, 4, 8].contains(&width) && (r.min as i64) <= (r.max as i64),
            3 => width == 8,
            _ => false,
        }
}

/// `check_symbol_rules` with 128-bit arithmetic: every rule's symbol proven (first rule first),
/// then write by write and rule by rule, a typed field the write touches must lie inside it and
/// hold a value in bounds (integers, sign-extended for signed ones) or a pointer into a
/// readable plan region; a write no rule's range holds is refused after its fields.
pub fn ref_check_symbol_rules(rules: &[SymbolRule], p: &PatchPlan, e: &Evidence) -> Result<(), VerifyError> {
    let mut ranges = Vec::new();
    for r in rules {
        let Some(symbol) = e.symbols.iter().find(|s| s.symbol.key == r.symbol) else {
            return Err(VerifyError::MissingSymbolProof);
        };
        let (lo, hi) = (
            symbol.symbol.address as u128 + r.start as u128,
            symbol.symbol.address as u128 + r.end as u128,
        );
        if lo > u64::MAX as u128 || hi > u64::MAX as u128 {
            return Err(VerifyError::AddressOverflow);
        }
        ranges.push((r, lo, hi));
    }
    if ranges.is_empty() {
        return Ok(());
    }
    for w in &p.writes {
        let (ws, we) = (w.address as u128, w.address as u128 + w.new.len() as u128);
        for &(r, lo, hi) in &ranges {
            if r.kind == 0 || hi <= ws || we <= lo {
                continue;
            }
            if lo < ws || we < hi {
                return Err(VerifyError::PartialFieldWrite);
            }
            let bytes = &w.new[(lo - ws) as usize..(hi - ws) as usize];
            let unsigned = bytes.iter().rev().fold(0u128, |acc, b| acc << 8 | *b as u128);
            let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
            let signed = unsigned as i128 - if negative { 1i128 << (8 * bytes.len()) } else { 0 };
            let ok = match r.kind {
                1 => r.min as u128 <= unsigned && unsigned <= r.max as u128,
                2 => r.min as i64 as i128 <= signed && signed <= r.max as i64 as i128,
                _ => {
                    if !p
                        .regions
                        .iter()
                        .any(|g| g.flags & 1 != 0 && g.start as u128 <= unsigned && unsigned < g.end as u128)
                    {
                        return Err(VerifyError::PointerTargetUnreadable);
                    }
                    true
                }
            };
            if !ok {
                return Err(VerifyError::FieldValueOutOfBounds);
            }
        }
        if !ranges.iter().any(|&(_, lo, hi)| lo <= ws && we <= hi) {
            return Err(VerifyError::WriteOutsideAllowedRanges);
        }
    }
    Ok(())
}

/// What `verify_submission` must return for these owned values: (plan hash, region table hash,
/// totals) or the first refusal.
pub fn ref_verify_submission<H: RefHash>(
    rules: &PolicyRules,
    symbol_rules: &[SymbolRule],
    p: &PatchPlan,
    e: &Evidence,
) -> Result<(Hash, Hash, PlanTotals), VerifyError> {
    let totals = ref_check_plan(rules, p)?;
    ref_check_evidence::<H>(p, e)?;
    ref_check_relocation(p, e)?;
    ref_check_symbol_rules(symbol_rules, p, e)?;
    Ok((
        H::h(&[b"memzinc/plan/v1", &ref_encode_plan(p)]),
        H::h(&[b"memzinc/regions/v1", &ref_encode_regions(&p.regions)]),
        totals,
    ))
}

/// A few policies, strictest first: whatever a policy accepts, every later one accepts too.
pub const POLICIES: [PolicyRules; 4] = [
    PolicyRules {
        wx: true,
        max_bytes: 8,
        max_writes: 2,
        max_moves: 0,
    },
    PolicyRules {
        wx: true,
        max_bytes: 4096,
        max_writes: 16,
        max_moves: 0,
    },
    PolicyRules {
        wx: false,
        max_bytes: 4096,
        max_writes: 16,
        max_moves: 0,
    },
    PolicyRules {
        wx: false,
        max_bytes: u32::MAX,
        max_writes: u32::MAX,
        max_moves: u32::MAX,
    },
];

/// Symbol rules the byte-level targets judge under besides none: keys a fuzzer can spell
/// (`[0x5a; 32]`, `[0xa5; 32]`), one range, one of each typed kind.
pub fn symbol_policies() -> [(Vec<SymbolRule>, SymbolRules); 2] {
    let rule = |symbol: u8, start, end, kind, min: i64, max: i64| SymbolRule {
        symbol: [symbol; 32],
        start,
        end,
        kind,
        min: min as u64,
        max: max as u64,
    };
    let some = vec![
        rule(0x5a, 0, 64, 0, 0, 0),
        rule(0x5a, 8, 12, 1, 1, 1000),
        rule(0x5a, 16, 18, 2, -100, 100),
        rule(0xa5, 0, 8, 3, 0, 0),
    ];
    [
        (Vec::new(), SymbolRules::default()),
        (some.clone(), SymbolRules::from_rules(&some).expect("valid rules")),
    ]
}

/// Helpers of the host-side targets (`snapshot_open`, `debug_types`, `registry`, `plan_file`):
/// they drive `memzinc`'s own entry points, which read files.
pub mod host {
    use std::path::PathBuf;

    /// Writes `bytes` to this process's scratch file `name` in /dev/shm (memory, not disk) and
    /// returns its path; each execution overwrites it.
    /// Marks an input that holds two cores: an incremental snapshot's parent, then the
    /// snapshot (`MZPARENT`, the parent's length as u32 LE, the parent, the snapshot).
    pub const PARENT_MAGIC: &[u8; 8] = b"MZPARENT";
    /// What an incremental snapshot's parent note names in the seeds: the file beside it.
    pub const PARENT_NAME: &str = "parent.core";

    /// Splits a two-core input ([`PARENT_MAGIC`]) into (parent, snapshot); `None` for a plain
    /// one.
    pub fn split_parent(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let rest = bytes.strip_prefix(PARENT_MAGIC)?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let rest = &rest[4..];
        (len <= rest.len()).then(|| rest.split_at(len))
    }

    /// A two-core input: `parent` then `snapshot`.
    pub fn join_parent(parent: &[u8], snapshot: &[u8]) -> Vec<u8> {
        let mut out = PARENT_MAGIC.to_vec();
        out.extend_from_slice(&(parent.len() as u32).to_le_bytes());
        out.extend_from_slice(parent);
        out.extend_from_slice(snapshot);
        out
    }

    /// A scratch directory of this process (on /dev/shm), for files that name each other.
    pub fn scratch_dir() -> PathBuf {
        let dir = PathBuf::from(format!("/dev/shm/memzinc-fuzz-{}-dir", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    }

    pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = PathBuf::from(format!("/dev/shm/memzinc-fuzz-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write the scratch file");
        path
    }

    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
    }

    /// Recomputes the seal of a memzinc core whose notes were mutated, so mutations reach what
    /// lies behind the seal check (metadata protobuf, leaves, register notes, region checks).
    /// The seal, as snapshot.rs documents it: the last note (owner MEMZINC, 32-byte desc) of the
    /// PT_NOTE segment holds `memzinc::describe::seal_of(every note byte before it)`.
    /// Returns whether the input had a note segment to reseal. ELF64 little-endian offsets:
    /// e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38; p_type at +0, p_offset at +8,
    /// p_filesz at +32.
    pub fn reseal(bytes: &mut [u8]) -> bool {
        let phoff = u64_at(bytes, 0x20).unwrap_or(u64::MAX) as usize;
        let (Some(entsize), Some(count)) = (u16_at(bytes, 0x36), u16_at(bytes, 0x38)) else {
            return false;
        };
        // 12-byte note header, "MEMZINC\0" (8 bytes, already 4-aligned), the 32-byte hash.
        let seal_note = 12 + 8 + 32;
        for i in 0..count as usize {
            let Some(at) = (i * entsize as usize)
                .checked_add(phoff)
                .filter(|at| at.checked_add(40).is_some())
            else {
                return false;
            };
            if bytes.get(at..at + 4) != Some(&4u32.to_le_bytes()[..]) {
                continue;
            }
            let (Some(offset), Some(size)) = (u64_at(bytes, at + 8), u64_at(bytes, at + 32)) else {
                return false;
            };
            let (offset, size) = (offset as usize, size as usize);
            let Some(end) = offset
                .checked_add(size)
                .filter(|e| *e <= bytes.len() && size >= seal_note)
            else {
                return false;
            };
            let seal = memzinc::describe::seal_of(&bytes[offset..end - seal_note]);
            bytes[end - 32..end].copy_from_slice(&seal);
            return true;
        }
        false
    }

    /// Where the `registry` target places its input in the target's address space.
    pub const REGISTRY_BASE: u64 = 0x10_0000;

    /// Target memory that is `bytes` at `base` and unmapped everywhere else.
    pub struct SliceMemory<'a> {
        pub base: u64,
        pub bytes: &'a [u8],
    }

    impl memzinc::base::Memory for SliceMemory<'_> {
        fn read(&self, address: u64, len: usize) -> memzinc::Result<Vec<u8>> {
            address
                .checked_sub(self.base)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| self.bytes.get(at..at.checked_add(len)?))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| memzinc::Error::Registry(format!("{address:#x}+{len} is not mapped")))
        }
    }

    /// Every memzinc error is one line (the CLI prints it as is).
    pub fn one_line(e: &memzinc::Error) {
        let text = e.to_string();
        assert!(!text.contains('\n'), "a multi-line error: {text}");
    }
}

/// A relocation built the way the host builds one (and `tests/src/lib.rs` `relocation` does),
/// for the `relocation` target and the seeds: memory as pages, writes computed from a slot
/// table. Robust to any slot table (out-of-range `from`/`to`, unequal sizes, overlaps), so a
/// forger's edited table gets writes that agree with it.
pub mod relocation {
    use std::collections::BTreeMap;

    use memzinc_verifier::plan::Write;
    use memzinc_verifier::wire::Slot;

    use super::PAGE;

    /// Captured memory: page address → 4096 bytes.
    #[derive(Clone, Debug, Default)]
    pub struct Memory {
        pub pages: BTreeMap<u64, Vec<u8>>,
    }

    impl Memory {
        pub fn byte(&self, a: u64) -> Option<u8> {
            self.pages.get(&(a - a % PAGE)).map(|p| p[(a % PAGE) as usize])
        }
        /// `len` bytes at `a`, None if any is not captured or the range wraps.
        pub fn bytes(&self, a: u64, len: u64) -> Option<Vec<u8>> {
            (0..len).map(|k| self.byte(a.checked_add(k)?)).collect()
        }
        pub fn word(&self, a: u64) -> Option<u64> {
            Some(u64::from_le_bytes(self.bytes(a, 8)?.try_into().ok()?))
        }
        pub fn set_word(&mut self, a: u64, v: u64) {
            for (k, b) in v.to_le_bytes().into_iter().enumerate() {
                let at = a + k as u64;
                if let Some(p) = self.pages.get_mut(&(at - at % PAGE)) {
                    p[(at % PAGE) as usize] = b;
                }
            }
        }
    }

    fn holds(s: &Slot, v: u64) -> bool {
        s.address <= v && (v as u128) < s.address as u128 + s.len as u128
    }

    /// Where the object byte at `v` goes: the slot holding it moves its object to slot `to`.
    pub fn moved(slots: &[Slot], v: u64) -> u64 {
        match slots.iter().find(|s| holds(s, v)) {
            Some(s) => match slots.get(s.to as usize) {
                Some(t) => t.address.wrapping_add(v - s.address),
                None => v,
            },
            None => v,
        }
    }

    /// Every slot's new bytes (its `from` slot's words, each moved) where they differ from what
    /// it holds, and every aligned word of memory outside the slots that points into one,
    /// moved; sorted by address. Slots whose source is missing, of another size, not a whole
    /// number of words or not captured get no write.
    pub fn honest_writes(memory: &Memory, slots: &[Slot]) -> Vec<Write> {
        let mut writes = Vec::new();
        for s in slots {
            let Some(source) = slots.get(s.from as usize) else {
                continue;
            };
            if source.len != s.len || s.len % 8 != 0 || s.len as u64 > 4 * PAGE {
                continue;
            }
            let (Some(old), Some(was)) = (
                memory.bytes(s.address, s.len as u64),
                memory.bytes(source.address, s.len as u64),
            ) else {
                continue;
            };
            let new: Vec<u8> = was
                .chunks(8)
                .flat_map(|w| moved(slots, u64::from_le_bytes(w.try_into().expect("8 bytes"))).to_le_bytes())
                .collect();
            if new != old {
                writes.push(Write {
                    address: s.address,
                    old,
                    new,
                });
            }
        }
        for (&page, contents) in &memory.pages {
            for at in (0..PAGE).step_by(8) {
                let a = page + at;
                if slots.iter().any(|s| holds(s, a) || holds(s, a + 7)) {
                    continue;
                }
                let old = &contents[at as usize..at as usize + 8];
                let v = u64::from_le_bytes(old.try_into().expect("8 bytes"));
                if moved(slots, v) != v {
                    writes.push(Write {
                        address: a,
                        old: old.to_vec(),
                        new: moved(slots, v).to_le_bytes().to_vec(),
                    });
                }
            }
        }
        writes.sort_by_key(|w| w.address);
        writes
    }
}
