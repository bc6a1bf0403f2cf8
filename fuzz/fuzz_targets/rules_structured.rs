//! Structured plans against a small synthetic snapshot, deep into `check_plan` and
//! `check_evidence`.
//!
//! `arbitrary` builds a snapshot (up to 6 page-aligned regions within 16 pages, low in the
//! address space, in the middle, or ending at the very top; pages captured or unreadable), a
//! plan (regions taken from the snapshot, re-flagged, resized or made up; writes in or out of
//! them, old bytes true to the snapshot or not, sorted or not), a policy, and one tampering
//! of the evidence. The evidence is built twice, by the host's `SnapshotTrees::evidence` and by
//! a reference builder over a recursive Merkle tree; they must agree (or the host must refuse
//! with the error the reference predicts). Then `verify_submission` must return exactly what
//! two references return: the generic brute-force one of `fuzz/src/lib.rs`, and one that judges
//! the evidence by what it means, not by hashing: a proof is valid iff it names the snapshot's
//! own leaf at its index and carries the snapshot's own siblings for that index, and an old
//! byte is right iff it equals the synthetic page's byte. Any disagreement is a bug.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use memzinc_fuzz::{
    ref_check_plan, ref_encode_evidence, ref_encode_plan, ref_proof, ref_root, ref_verify_submission, report_verdict,
    Hash, RefHash, Sha2, PAGE,
};
use memzinc_verifier::plan::{Evidence, PageProof, PatchPlan, RegionProof, SnapshotTrees, Submission, Write};
use memzinc_verifier::rules::{verify_submission, PlanTotals};
use memzinc_verifier::wire::{PolicyRules, Region, SymbolRules};
use memzinc_verifier::VerifyError;

const MAX_PAGES: u64 = 16;

#[derive(Arbitrary, Debug)]
enum Base {
    Low,
    Middle,
    /// The snapshot's 16 pages end at 2^64: its last region ends at u64::MAX.
    Top,
}

#[derive(Arbitrary, Debug)]
struct SnapRegion {
    gap: u8,
    pages: u8,
    flags: u8,
}

#[derive(Arbitrary, Debug)]
enum PlanRegion {
    Snapshot(u8),
    Flags { of: u8, flags: u8 },
    Resized { of: u8, start: i16, end: i16 },
    Raw { start: u64, end: u64, flags: u8 },
}

#[derive(Arbitrary, Debug)]
enum Address {
    InRegion { of: u8, offset: u16 },
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Old {
    Snapshot,
    Flipped { at: u16, mask: u8 },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum New {
    Inverted,
    Flipped { at: u16, mask: u8 },
    Same,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct WriteSpec {
    address: Address,
    len: u16,
    old: Old,
    new: New,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    None,
    SnapshotRoot { bit: u8 },
    PageCount { bit: u8 },
    RegionCount { bit: u8 },
    PageContents { page: u8, at: u16, mask: u8 },
    PageSibling { page: u8, sibling: u8, bit: u8 },
    PageExtraSibling { page: u8 },
    PageIndex { page: u8, index: u16 },
    PageAddress { page: u8, delta: i16 },
    DropPage { page: u8 },
    SwapPages { a: u8, b: u8 },
    DuplicatePage { page: u8 },
    RegionSibling { proof: u8, sibling: u8, bit: u8 },
    RegionIndex { proof: u8, index: u16 },
    DropRegionProof { proof: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    base: Base,
    snapshot: Vec<SnapRegion>,
    seed: u8,
    unreadable: u16,
    plan_regions: Vec<PlanRegion>,
    sort_regions: bool,
    writes: Vec<WriteSpec>,
    sort_writes: bool,
    wx: bool,
    max_bytes: u16,
    max_writes: u8,
    tamper: Tamper,
}

/// The synthetic snapshot: regions, pages (address, contents if captured) and both trees' leaves.
struct Snapshot {
    regions: Vec<Region>,
    pages: Vec<(u64, Option<Vec<u8>>)>,
    region_leaves: Vec<Hash>,
    page_leaves: Vec<Hash>,
}

impl Snapshot {
    fn build(input: &Input) -> Snapshot {
        let base_page: u64 = match input.base {
            Base::Low => 0x10,
            Base::Middle => 0x5_5555_5555,
            Base::Top => (1 << 52) - MAX_PAGES,
        };
        let (mut regions, mut pages) = (Vec::new(), Vec::new());
        let mut at = 0u64;
        for sr in input.snapshot.iter().take(6) {
            at += sr.gap as u64 % 3;
            let n = sr.pages as u64 % 3 + 1;
            if at + n > MAX_PAGES {
                break;
            }
            let end = (base_page + at + n) as u128 * PAGE as u128;
            regions.push(Region {
                start: (base_page + at) * PAGE,
                end: end.min(u64::MAX as u128) as u64,
                flags: sr.flags & 7,
            });
            for k in at..at + n {
                let address = (base_page + k) * PAGE;
                let captured = input.unreadable & (1 << k) == 0;
                let contents: Vec<u8> = (0..PAGE as usize)
                    .map(|i| (k as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7) ^ (i >> 8) as u8 ^ input.seed)
                    .collect();
                pages.push((address, captured.then_some(contents)));
            }
            at += n;
        }
        let region_leaves = regions.iter().map(Sha2::region_leaf).collect();
        let page_leaves = pages
            .iter()
            .map(|(a, c)| match c {
                Some(c) => Sha2::page_leaf(*a, c),
                None => Sha2::unreadable_leaf(*a),
            })
            .collect();
        Snapshot {
            regions,
            pages,
            region_leaves,
            page_leaves,
        }
    }

    fn contents(&self, page: u64) -> Option<&Vec<u8>> {
        self.pages
            .iter()
            .find(|(a, _)| *a == page)
            .and_then(|(_, c)| c.as_ref())
    }

    /// The captured byte at `a`, 0 where nothing was captured.
    fn byte(&self, a: u64) -> u8 {
        self.contents(a - a % PAGE).map_or(0, |c| c[(a % PAGE) as usize])
    }

    fn pages_root(&self) -> Hash {
        ref_root::<Sha2>(&self.page_leaves)
    }

    fn regions_root(&self) -> Hash {
        ref_root::<Sha2>(&self.region_leaves)
    }

    fn root(&self) -> Hash {
        // This harness's snapshots have no symbols: an empty symbol tree (zero root).
        Sha2::snapshot_root((
            &self.pages_root(),
            &self.regions_root(),
            self.pages.len() as u64,
            self.regions.len() as u64,
            &[0; 32],
            0,
        ))
    }
}

fn pick<T: Copy>(items: &[T], i: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[i as usize % items.len()])
}

fn build_plan(input: &Input, snap: &Snapshot) -> PatchPlan {
    let mut regions: Vec<Region> = input
        .plan_regions
        .iter()
        .take(6)
        .filter_map(|pr| match *pr {
            PlanRegion::Snapshot(of) => pick(&snap.regions, of),
            PlanRegion::Flags { of, flags } => pick(&snap.regions, of).map(|r| Region { flags, ..r }),
            PlanRegion::Resized { of, start, end } => pick(&snap.regions, of).map(|r| Region {
                start: r.start.wrapping_add_signed(start as i64),
                end: r.end.wrapping_add_signed(end as i64),
                flags: r.flags,
            }),
            PlanRegion::Raw { start, end, flags } => Some(Region { start, end, flags }),
        })
        .collect();
    if input.sort_regions {
        regions.sort_by_key(|r| (r.start, r.end));
        regions.dedup();
    }
    let mut writes: Vec<Write> = input
        .writes
        .iter()
        .take(8)
        .map(|ws| {
            let address = match ws.address {
                Address::InRegion { of, offset } => {
                    let start = pick(&regions, of).map_or(0x10 * PAGE, |r| r.start);
                    start.wrapping_add(offset as u64 % (4 * PAGE))
                }
                Address::Raw(a) => a,
            };
            let len = ws.len as u64 % 300;
            let true_old: Vec<u8> = (0..len)
                .map(|k| address.checked_add(k).map_or(0, |a| snap.byte(a)))
                .collect();
            let flipped = |v: &[u8], at: u16, mask: u8| {
                let mut v = v.to_vec();
                if !v.is_empty() {
                    let i = at as usize % v.len();
                    v[i] ^= mask;
                }
                v
            };
            let old = match &ws.old {
                Old::Snapshot => true_old,
                Old::Flipped { at, mask } => flipped(&true_old, *at, *mask),
                Old::Raw(v) => v.iter().copied().take(300).collect(),
            };
            let new = match &ws.new {
                New::Inverted => old.iter().map(|b| !b).collect(),
                New::Flipped { at, mask } => flipped(&old, *at, *mask),
                New::Same => old.clone(),
                New::Raw(v) => v.iter().copied().take(300).collect(),
            };
            Write { address, old, new }
        })
        .collect();
    if input.sort_writes {
        writes.sort_by_key(|w| w.address);
    }
    PatchPlan {
        target_id: [7; 32],
        snapshot_root: snap.root(),
        model_hash: [3; 32],
        regions,
        writes,
        slots: Vec::new(),
    }
}

/// The pages a plan's old bytes lie in, ascending; None if a write wraps past 2^64.
fn touched_pages(plan: &PatchPlan) -> Option<Vec<u64>> {
    let mut pages = Vec::new();
    for w in &plan.writes {
        let start = w.address as u128;
        let end = start + w.old.len() as u128;
        if end > u64::MAX as u128 {
            return None;
        }
        let mut p = start - start % PAGE as u128;
        while p < end {
            pages.push(p as u64);
            p += PAGE as u128;
        }
    }
    pages.sort_unstable();
    pages.dedup();
    Some(pages)
}

/// Evidence as the reference builds it: honest proofs for every plan region the snapshot has
/// (index 0's proof for one it lacks) and for every touched page it captured (none for the rest).
fn reference_evidence(plan: &PatchPlan, snap: &Snapshot) -> Evidence {
    let region_proofs = plan
        .regions
        .iter()
        .map(|r| {
            let index = snap.regions.iter().position(|x| x == r).unwrap_or(0);
            RegionProof {
                index: index as u64,
                siblings: if index < snap.regions.len() {
                    ref_proof::<Sha2>(&snap.region_leaves, index)
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    let pages = touched_pages(plan)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|address| {
            let index = snap.pages.iter().position(|(a, _)| *a == address)?;
            Some(PageProof {
                address,
                index: index as u64,
                contents: snap.pages[index].1.clone()?,
                siblings: ref_proof::<Sha2>(&snap.page_leaves, index),
            })
        })
        .collect();
    Evidence {
        pages_root: snap.pages_root(),
        regions_root: snap.regions_root(),
        page_count: snap.pages.len() as u64,
        region_count: snap.regions.len() as u64,
        region_proofs,
        pages,
        symbols_root: [0; 32],
        symbol_count: 0,
        symbols: Vec::new(),
    }
}

/// What `SnapshotTrees::evidence` must do: refuse a region the snapshot lacks, a wrapping write,
/// a page it did not capture, in that order; otherwise give the reference evidence.
fn check_host_evidence(plan: &PatchPlan, snap: &Snapshot, reference: &Evidence) {
    let trees = SnapshotTrees::new::<Sha2>(
        snap.regions.clone(),
        snap.pages
            .iter()
            .map(|(a, _)| *a)
            .zip(snap.page_leaves.iter().copied())
            .collect(),
    );
    assert_eq!(
        trees.root::<Sha2>(),
        snap.root(),
        "SnapshotTrees root differs from the reference tree"
    );
    let got = trees.evidence(plan, |a| snap.contents(a).cloned());
    let expected = if !plan.regions.iter().all(|r| snap.regions.contains(r)) {
        Err(VerifyError::InvalidRegionProof)
    } else {
        match touched_pages(plan) {
            None => Err(VerifyError::AddressOverflow),
            Some(pages) if pages.iter().any(|p| snap.contents(*p).is_none()) => Err(VerifyError::MissingPageProof),
            Some(_) => Ok(reference.clone()),
        }
    };
    assert_eq!(got, expected, "SnapshotTrees::evidence");
}

fn flip(h: &mut Hash, bit: u8) {
    h[bit as usize / 8] ^= 1 << (bit % 8);
}

fn tamper(t: &Tamper, plan: &mut PatchPlan, e: &mut Evidence) {
    fn at<T>(v: &mut [T], i: u8) -> Option<&mut T> {
        let n = v.len();
        (n > 0).then(|| &mut v[i as usize % n])
    }
    match *t {
        Tamper::None => {}
        Tamper::SnapshotRoot { bit } => flip(&mut plan.snapshot_root, bit),
        Tamper::PageCount { bit } => e.page_count ^= 1 << (bit % 64),
        Tamper::RegionCount { bit } => e.region_count ^= 1 << (bit % 64),
        Tamper::PageContents { page, at: i, mask } => {
            if let Some(p) = at(&mut e.pages, page) {
                p.contents[i as usize % PAGE as usize] ^= mask;
            }
        }
        Tamper::PageSibling { page, sibling, bit } => {
            if let Some(s) = at(&mut e.pages, page).and_then(|p| at(&mut p.siblings, sibling)) {
                flip(s, bit);
            }
        }
        Tamper::PageExtraSibling { page } => {
            if let Some(p) = at(&mut e.pages, page) {
                p.siblings.push([0; 32]);
            }
        }
        Tamper::PageIndex { page, index } => {
            if let Some(p) = at(&mut e.pages, page) {
                p.index = index as u64;
            }
        }
        Tamper::PageAddress { page, delta } => {
            if let Some(p) = at(&mut e.pages, page) {
                p.address = p.address.wrapping_add_signed(delta as i64);
            }
        }
        Tamper::DropPage { page } => {
            if !e.pages.is_empty() {
                e.pages.remove(page as usize % e.pages.len());
            }
        }
        Tamper::SwapPages { a, b } => {
            let n = e.pages.len();
            if n > 0 {
                e.pages.swap(a as usize % n, b as usize % n);
            }
        }
        Tamper::DuplicatePage { page } => {
            if let Some(p) = at(&mut e.pages, page).cloned() {
                let i = page as usize % e.pages.len();
                e.pages.insert(i, p);
            }
        }
        Tamper::RegionSibling { proof, sibling, bit } => {
            if let Some(s) = at(&mut e.region_proofs, proof).and_then(|p| at(&mut p.siblings, sibling)) {
                flip(s, bit);
            }
        }
        Tamper::RegionIndex { proof, index } => {
            if let Some(p) = at(&mut e.region_proofs, proof) {
                p.index = index as u64;
            }
        }
        Tamper::DropRegionProof { proof } => {
            if !e.region_proofs.is_empty() {
                e.region_proofs.remove(proof as usize % e.region_proofs.len());
            }
        }
    }
}

/// `check_evidence` judged by meaning: proofs are the snapshot's own, old bytes its bytes.
fn semantic_evidence(plan: &PatchPlan, e: &Evidence, snap: &Snapshot) -> Result<(), VerifyError> {
    let honest = (
        snap.pages_root(),
        snap.regions_root(),
        snap.pages.len() as u64,
        snap.regions.len() as u64,
    );
    if Sha2::evidence_root(e) != plan.snapshot_root {
        return Err(VerifyError::SnapshotRootMismatch);
    }
    // The harness never forges a second snapshot: a matching root means the honest one.
    assert_eq!((e.pages_root, e.regions_root, e.page_count, e.region_count), honest);
    assert_eq!((e.symbols_root, e.symbol_count, e.symbols.len()), ([0; 32], 0, 0));
    if e.region_proofs.len() != plan.regions.len() {
        return Err(VerifyError::MissingRegionProof);
    }
    for (r, proof) in plan.regions.iter().zip(&e.region_proofs) {
        let i = proof.index as usize;
        let valid = i < snap.regions.len()
            && snap.regions[i] == *r
            && proof.siblings == ref_proof::<Sha2>(&snap.region_leaves, i);
        if !valid {
            return Err(VerifyError::InvalidRegionProof);
        }
    }
    let mut prev: Option<u64> = None;
    for page in &e.pages {
        if page.address % PAGE != 0 || prev.is_some_and(|p| page.address <= p) {
            return Err(VerifyError::UnsortedPages);
        }
        prev = Some(page.address);
        let i = page.index as usize;
        let valid = i < snap.pages.len()
            && snap.pages[i].0 == page.address
            && snap.pages[i].1.as_ref() == Some(&page.contents)
            && page.siblings == ref_proof::<Sha2>(&snap.page_leaves, i);
        if !valid {
            return Err(VerifyError::InvalidPageProof);
        }
    }
    for w in &plan.writes {
        for (k, old) in w.old.iter().enumerate() {
            let a = w.address + k as u64;
            if !e.pages.iter().any(|p| p.address == a - a % PAGE) {
                return Err(VerifyError::MissingPageProof);
            }
            if snap.byte(a) != *old {
                return Err(VerifyError::OldBytesMismatch);
            }
        }
    }
    Ok(())
}

fuzz_target!(|input: Input| {
    let snap = Snapshot::build(&input);
    let mut plan = build_plan(&input, &snap);
    let rules = PolicyRules {
        wx: input.wx,
        max_bytes: input.max_bytes as u32,
        max_writes: input.max_writes as u32,
        max_moves: 0,
    };
    let plan_verdict = ref_check_plan(&rules, &plan);
    assert_eq!(plan.check(&rules), plan_verdict, "check_plan");

    let mut evidence = reference_evidence(&plan, &snap);
    check_host_evidence(&plan, &snap, &evidence);
    tamper(&input.tamper, &mut plan, &mut evidence);

    let submission = Submission { plan, evidence };
    let bytes = submission.encode();
    let mut expected_bytes = ref_encode_plan(&submission.plan);
    expected_bytes.extend(ref_encode_evidence(&submission.evidence));
    assert_eq!(bytes, expected_bytes, "encoding");

    let got: Result<(Hash, Hash, PlanTotals), VerifyError> =
        verify_submission::<Sha2>(&rules, &SymbolRules::default(), &bytes)
            .map(|(_, v)| (v.plan_hash, v.region_table_hash, v.totals));
    let generic = ref_verify_submission::<Sha2>(&rules, &[], &submission.plan, &submission.evidence);
    assert_eq!(got, generic, "verifier vs brute-force reference");
    let semantic = ref_check_plan(&rules, &submission.plan)
        .and_then(|_| semantic_evidence(&submission.plan, &submission.evidence, &snap));
    assert_eq!(got.map(|_| ()), semantic, "verifier vs meaning of the evidence");
    report_verdict(&semantic);
});
