//! Heap repair that scales: reference-counted objects whose pointers went bad, repaired with
//! the fewest bytes written, decided by an aggregated MiniZinc model that cbc proves optimal.
//!
//! The heap (one read-write region) holds `n` objects of 16 bytes each:
//!
//! ```text
//! +0  u32 type tag (1..=types)    +4  u32 refcount    +8  u64 pointer to an object
//! ```
//!
//! Invariants: every object's pointer points at the start of an object of the type its own type
//! requires (`succ[type]`; never null), and every refcount equals the number of pointers to its
//! object. A repair rewrites each invalid pointer (8 bytes) and the refcounts that then differ
//! (4 bytes each).
//!
//! Rust does the O(n) work first: which pointers are valid, each object's *deficit* (stored refcount minus valid incoming pointers),
//! and two observations that make the problem small — a valid pointer never needs to move under
//! these costs (dominance), and objects of one type with equal deficit are interchangeable, as
//! are the invalid pointers that need one type (symmetry). The solver sees counts per
//! (type, deficit) class (`models/heap_repair.mzn`): how many objects of each class keep their
//! refcount. Rust expands the counts back into concrete writes ([`expand`]).
//!
//! A plan is then judged three independent ways: by the verifier's rules
//! (`PatchPlan::check`, what the program runs), by the per-object model `models/heap.mzn`
//! with every variable fixed to the heap the plan leaves behind ([`decode`]; MiniZinc as a
//! solution checker), and in Rust by applying the writes and re-checking the invariants
//! ([`Heap::apply`], [`HeapFacts::violations`]).
//!
//! [`Heap::generate`] makes seeded synthetic instances for the tests and the bench.

use std::collections::BTreeMap;

use memzinc_verifier::plan::{PatchPlan, Write};
use memzinc_verifier::wire::{Region, REGION_EXEC, REGION_READ, REGION_WRITE};

use super::finding::{Finding, Rule};
use super::plan::{Plan, PlannedWrite};
use super::solver::{self, SolverOptions, Status};
use crate::base::{Error, Result, Sha2};
use crate::describe::Snapshot;

pub const OBJECT_SIZE: u64 = 16;
pub const PAGE: u64 = 4096;
/// Where the synthetic snapshot puts its regions.
pub const CODE_BASE: u64 = 0x40_0000;
pub const RODATA_BASE: u64 = 0x60_0000;
pub const HEAP_BASE: u64 = 0x1000_0000;

/// A heap image: the bytes of the heap region and what its types require.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heap {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub objects: usize,
    /// `succ[t - 1]`: the type an object of type `t` must point to.
    pub succ: Vec<u32>,
}

/// SplitMix64: a small seeded generator, so instances reproduce from their seed.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

impl Heap {
    pub fn object_address(&self, j: usize) -> u64 {
        self.base + j as u64 * OBJECT_SIZE
    }

    fn u32_at(&self, offset: u64) -> u32 {
        let o = offset as usize;
        u32::from_le_bytes(self.bytes[o..o + 4].try_into().unwrap_or([0; 4]))
    }

    fn u64_at(&self, offset: u64) -> u64 {
        let o = offset as usize;
        u64::from_le_bytes(self.bytes[o..o + 8].try_into().unwrap_or([0; 8]))
    }

    pub fn type_of(&self, j: usize) -> u32 {
        self.u32_at(j as u64 * OBJECT_SIZE)
    }
    pub fn refcount(&self, j: usize) -> u32 {
        self.u32_at(j as u64 * OBJECT_SIZE + 4)
    }
    pub fn pointer(&self, j: usize) -> u64 {
        self.u64_at(j as u64 * OBJECT_SIZE + 8)
    }

    /// The object whose start `address` is, if any.
    pub fn object_at(&self, address: u64) -> Option<usize> {
        let off = address.checked_sub(self.base)?;
        (off % OBJECT_SIZE == 0 && off / OBJECT_SIZE < self.objects as u64).then_some((off / OBJECT_SIZE) as usize)
    }

    /// The heap region, page-aligned.
    pub fn region(&self) -> Region {
        Region {
            start: self.base,
            end: self.base + self.bytes.len() as u64,
            flags: REGION_READ | REGION_WRITE,
        }
    }

    /// Every region of the synthetic snapshot: code (r-x), read-only data, the heap.
    pub fn regions(&self) -> Vec<Region> {
        vec![
            Region {
                start: CODE_BASE,
                end: CODE_BASE + PAGE,
                flags: REGION_READ | REGION_EXEC,
            },
            Region {
                start: RODATA_BASE,
                end: RODATA_BASE + PAGE,
                flags: REGION_READ,
            },
            self.region(),
        ]
    }

    /// The snapshot's bytes of the page at `address` (code and rodata are a fixed pattern).
    pub fn page(&self, address: u64) -> Option<Vec<u8>> {
        let r = self
            .regions()
            .into_iter()
            .find(|r| r.start <= address && address < r.end)?;
        if r.start == self.base {
            let o = (address - self.base) as usize;
            Some(self.bytes[o..o + PAGE as usize].to_vec())
        } else {
            Some((0..PAGE).map(|i| ((address + i) * 31 % 251) as u8).collect())
        }
    }

    /// The Merkle trees of the synthetic snapshot (plans bind to its root).
    pub fn trees(&self) -> memzinc_verifier::plan::SnapshotTrees {
        let mut pages = Vec::new();
        for r in self.regions() {
            let mut a = r.start;
            while a < r.end {
                let leaf = memzinc_verifier::merkle::page_leaf::<Sha2>(a, &self.page(a).unwrap_or_default());
                pages.push((a, leaf));
                a += PAGE;
            }
        }
        memzinc_verifier::plan::SnapshotTrees::new::<Sha2>(self.regions(), pages)
    }

    /// A seeded instance: `objects` objects of `types` types, consistent, then a `bad_ratio` of
    /// the pointers corrupted (garbage, misaligned, or an object of the wrong type) and a
    /// `noise_ratio` of the refcounts nudged.
    pub fn generate(seed: u64, objects: usize, types: u32, bad_ratio: f64, noise_ratio: f64) -> Heap {
        let mut rng = Rng(seed);
        let len = (objects as u64 * OBJECT_SIZE).div_ceil(PAGE).max(1) * PAGE;
        let mut heap = Heap {
            base: HEAP_BASE,
            bytes: vec![0; len as usize],
            objects,
            succ: Vec::new(),
        };
        let kinds: Vec<u32> = (0..objects).map(|_| 1 + rng.below(types as u64) as u32).collect();
        let mut by_type: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (j, &t) in kinds.iter().enumerate() {
            by_type.entry(t).or_default().push(j);
        }
        let present: Vec<u32> = by_type.keys().copied().collect();
        heap.succ = (0..types)
            .map(|_| present[rng.below(present.len() as u64) as usize])
            .collect();
        let mut refcounts = vec![0u32; objects];
        let mut pointers = vec![0u64; objects];
        for j in 0..objects {
            let targets = &by_type[&heap.succ[kinds[j] as usize - 1]];
            let k = targets[rng.below(targets.len() as u64) as usize];
            pointers[j] = heap.object_address(k);
            refcounts[k] += 1;
        }
        // Corruption: the pointer changes, the refcounts stay (a stray write hits one field).
        for j in 0..objects {
            if (rng.below(1_000_000) as f64) >= bad_ratio * 1_000_000.0 {
                continue;
            }
            let need = heap.succ[kinds[j] as usize - 1];
            pointers[j] = match rng.below(3) {
                0 => rng.next_u64() | 1,
                1 => pointers[j] + 3,
                _ => {
                    let wrong: Vec<u32> = present.iter().copied().filter(|&t| t != need).collect();
                    if wrong.is_empty() {
                        rng.next_u64() | 1
                    } else {
                        let t = wrong[rng.below(wrong.len() as u64) as usize];
                        let objs = &by_type[&t];
                        heap.object_address(objs[rng.below(objs.len() as u64) as usize])
                    }
                }
            };
        }
        for rc in refcounts.iter_mut() {
            if (rng.below(1_000_000) as f64) < noise_ratio * 1_000_000.0 {
                *rc = (*rc as i64 + rng.below(6) as i64 - 2).max(0) as u32;
            }
        }
        for j in 0..objects {
            let o = j * OBJECT_SIZE as usize;
            heap.bytes[o..o + 4].copy_from_slice(&kinds[j].to_le_bytes());
            heap.bytes[o + 4..o + 8].copy_from_slice(&refcounts[j].to_le_bytes());
            heap.bytes[o + 8..o + 16].copy_from_slice(&pointers[j].to_le_bytes());
        }
        heap
    }

    /// The heap after `writes`, applied in the given order the way a careless patcher would:
    /// the bytes of each write that fall inside the heap are stored, the rest ignored (they
    /// land in other regions, or nowhere).
    pub fn apply(&self, writes: &[Write]) -> Heap {
        let mut out = self.clone();
        for w in writes {
            for (i, b) in w.new.iter().enumerate() {
                let Some(a) = w.address.checked_add(i as u64) else {
                    break;
                };
                if a >= self.base && a < self.base + self.bytes.len() as u64 {
                    out.bytes[(a - self.base) as usize] = *b;
                }
            }
        }
        out
    }
}

/// The globals a target exports so memzinc finds its reference-counted heap (see
/// tests/targets/crefheap.c): a pointer to the first object, the number of objects, the number
/// of types and `succ` (`u32[types]`).
pub const ARENA_SYMBOL: &str = "MEMZINC_HEAP_ARENA";
pub const OBJECTS_SYMBOL: &str = "MEMZINC_HEAP_OBJECTS";
pub const TYPES_SYMBOL: &str = "MEMZINC_HEAP_TYPES";
pub const SUCC_SYMBOL: &str = "MEMZINC_HEAP_SUCC";
/// Objects read from a snapshot at most.
pub const MAX_SNAPSHOT_OBJECTS: u64 = 10_000_000;

impl Heap {
    /// The heap a target exports (`MEMZINC_HEAP_*`), read from its snapshot; `None` when it
    /// exports none. The exported values are input: bounded, and every type tag must be one of
    /// the types (the model has no repair for a tag).
    pub fn from_snapshot(snap: &Snapshot) -> Result<Option<Heap>> {
        let Ok(arena) = snap.symbol(ARENA_SYMBOL) else {
            return Ok(None);
        };
        let bad = |why: String| Error::Usage(format!("the exported heap ({ARENA_SYMBOL}): {why}"));
        let read_u64 = |address: u64, len: usize| -> Result<u64> {
            let mut b = [0u8; 8];
            b[..len].copy_from_slice(&snap.read(address, len)?);
            Ok(u64::from_le_bytes(b))
        };
        let base = read_u64(arena.address, 8)?;
        let objects = read_u64(snap.symbol(OBJECTS_SYMBOL)?.address, 8)?;
        let types = read_u64(snap.symbol(TYPES_SYMBOL)?.address, 4)?;
        if objects > MAX_SNAPSHOT_OBJECTS || !(1..=1 << 16).contains(&types) {
            return Err(bad(format!("{objects} objects of {types} types is out of range")));
        }
        let succ_bytes = snap.read(snap.symbol(SUCC_SYMBOL)?.address, types as usize * 4)?;
        let succ: Vec<u32> = succ_bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|c| u32::from_le_bytes(*c))
            .collect();
        if let Some(t) = succ.iter().find(|&&t| t == 0 || t as u64 > types) {
            return Err(bad(format!("{SUCC_SYMBOL} names type {t}, not 1..={types}")));
        }
        let bytes = snap.read(base, (objects * OBJECT_SIZE) as usize)?;
        let heap = Heap {
            base,
            bytes,
            objects: objects as usize,
            succ,
        };
        if let Some(j) = (0..heap.objects).find(|&j| heap.type_of(j) == 0 || heap.type_of(j) as u64 > types) {
            return Err(bad(format!(
                "object {j} has type tag {}, not 1..={types}: no repair of tags is modelled",
                heap.type_of(j)
            )));
        }
        Ok(Some(heap))
    }
}

/// The heap's broken invariants as `check` findings: invalid pointers, then refcounts that
/// differ from the pointers to their object.
pub fn findings(heap: &Heap, facts: &HeapFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    for &j in &facts.bad {
        out.push(Finding {
            rule: Rule::HeapPointerInvalid,
            address: heap.object_address(j) + 8,
            symbol: ARENA_SYMBOL.into(),
            field: format!("[{j}].pointer"),
            detail: format!(
                "{:#x} is not the start of an object of type {}",
                heap.pointer(j),
                facts.needs(heap, j)
            ),
        });
    }
    let mut incoming = vec![0u32; facts.ty.len()];
    for k in facts.points_to.iter().flatten() {
        incoming[*k] += 1;
    }
    for (k, (&rc, &inc)) in facts.refcount.iter().zip(&incoming).enumerate() {
        if rc != inc {
            out.push(Finding {
                rule: Rule::HeapRefcountWrong,
                address: heap.object_address(k) + 4,
                symbol: ARENA_SYMBOL.into(),
                field: format!("[{k}].refcount"),
                detail: format!("refcount {rc}, {inc} pointer(s) to the object"),
            });
        }
    }
    out
}

/// The fewest bytes that repair a snapshot's exported heap (`models/heap_repair.mzn`), as a
/// plan for `target`: facts → aggregated data (kept at `dzn_path`) → solver → writes, the
/// repaired heap re-checked in Rust before the plan is made.
pub fn plan_snapshot(
    snap: &Snapshot,
    heap: &Heap,
    opts: &SolverOptions,
    models_dir: &std::path::Path,
    dzn_path: &std::path::Path,
    target: &str,
) -> Result<Plan> {
    let facts = HeapFacts::of(heap);
    let found = findings(heap, &facts);
    if found.is_empty() {
        return Plan::new(snap, target, opts.backend.name(), true, found, vec![], None);
    }
    crate::base::write_file_atomically(dzn_path, facts.aggregated_dzn(heap).as_bytes())?;
    let run = solver::run(opts, &models_dir.join("heap_repair.mzn"), &[dzn_path])?;
    let kept = match run.status {
        Status::Optimal | Status::Satisfied => run.ints("kept"),
        _ => None,
    }
    .ok_or_else(|| Error::MiniZinc(format!("heap repair: no answer ({:?})", run.status)))?;
    let writes = expand_writes(heap, &facts, &kept).map_err(|e| Error::MiniZinc(e.to_string()))?;
    let after = HeapFacts::of(&heap.apply(&writes));
    if let Some(v) = after.violations().first() {
        return Err(Error::MiniZinc(format!("the solver's heap repair leaves {v}")));
    }
    let planned = writes
        .iter()
        .map(|w| {
            let j = (w.address - heap.base) / OBJECT_SIZE;
            let (field, rule) = if (w.address - heap.base) % OBJECT_SIZE == 8 {
                (
                    "pointer",
                    format!("points at an object of type {}", facts.needs(heap, j as usize)),
                )
            } else {
                ("refcount", "equals the pointers to its object".to_string())
            };
            PlannedWrite {
                address: w.address,
                old: w.old.clone(),
                new: w.new.clone(),
                field: format!("{ARENA_SYMBOL}[{j}].{field}"),
                rule: format!("heap: {rule}"),
            }
        })
        .collect();
    Plan::new(
        snap,
        target,
        opts.backend.name(),
        run.status == Status::Optimal,
        found,
        planned,
        Some(run.stats),
    )
}

/// One (type, deficit) class of objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub ty: u32,
    pub deficit: i64,
    /// Its objects, ascending.
    pub objects: Vec<usize>,
}

/// What Rust found in a heap: the fact-finding the model's counts come from.
#[derive(Clone, Debug)]
pub struct HeapFacts {
    pub types: u32,
    /// Per object: its type, stored refcount, the object its pointer points at (if it is the
    /// start of one), and valid incoming pointers.
    pub ty: Vec<u32>,
    pub refcount: Vec<u32>,
    pub points_to: Vec<Option<usize>>,
    pub valid_in: Vec<u32>,
    /// Objects whose pointer is invalid, ascending.
    pub bad: Vec<usize>,
    pub classes: Vec<Class>,
}

impl HeapFacts {
    pub fn of(heap: &Heap) -> HeapFacts {
        let n = heap.objects;
        let ty: Vec<u32> = (0..n).map(|j| heap.type_of(j)).collect();
        let refcount: Vec<u32> = (0..n).map(|j| heap.refcount(j)).collect();
        let points_to: Vec<Option<usize>> = (0..n).map(|j| heap.object_at(heap.pointer(j))).collect();
        let need = |j: usize| heap.succ.get(ty[j] as usize - 1).copied().unwrap_or(0);
        let mut valid_in = vec![0u32; n];
        let mut bad = Vec::new();
        for (j, p) in points_to.iter().enumerate() {
            match *p {
                Some(k) if ty[k] == need(j) => valid_in[k] += 1,
                _ => bad.push(j),
            }
        }
        let mut classes: BTreeMap<(u32, i64), Vec<usize>> = BTreeMap::new();
        for k in 0..n {
            classes
                .entry((ty[k], refcount[k] as i64 - valid_in[k] as i64))
                .or_default()
                .push(k);
        }
        HeapFacts {
            types: heap.succ.len() as u32,
            ty,
            refcount,
            points_to,
            valid_in,
            bad,
            classes: classes
                .into_iter()
                .map(|((ty, deficit), objects)| Class { ty, deficit, objects })
                .collect(),
        }
    }

    /// The type object `j`'s pointer must point to.
    pub fn needs(&self, heap: &Heap, j: usize) -> u32 {
        heap.succ.get(self.ty[j] as usize - 1).copied().unwrap_or(0)
    }

    /// Every broken invariant, as text: invalid pointers, then refcounts that disagree.
    pub fn violations(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .bad
            .iter()
            .map(|j| format!("object {j}: invalid pointer"))
            .collect();
        let mut incoming = vec![0u32; self.ty.len()];
        for k in self.points_to.iter().flatten() {
            incoming[*k] += 1;
        }
        for (k, (&rc, &inc)) in self.refcount.iter().zip(&incoming).enumerate() {
            if rc != inc {
                out.push(format!("object {k}: refcount {rc}, {inc} pointer(s) to it"));
            }
        }
        out
    }

    /// MiniZinc data for `models/heap_repair.mzn`: counts per class, nothing per object.
    pub fn aggregated_dzn(&self, heap: &Heap) -> String {
        let mut bad = vec![0u64; self.types as usize];
        for &j in &self.bad {
            bad[self.needs(heap, j) as usize - 1] += 1;
        }
        let list = |v: Vec<String>| v.join(", ");
        format!(
            "% memzinc heap facts: {} objects, {} invalid pointers, {} classes\n\
             n_types = {};\nbad = [{}];\nn_class = {};\nclass_type = [{}];\nclass_deficit = [{}];\nclass_count = [{}];\n",
            self.ty.len(),
            self.bad.len(),
            self.classes.len(),
            self.types,
            list(bad.iter().map(u64::to_string).collect()),
            self.classes.len(),
            list(self.classes.iter().map(|c| c.ty.to_string()).collect()),
            list(self.classes.iter().map(|c| c.deficit.to_string()).collect()),
            list(self.classes.iter().map(|c| c.objects.len().to_string()).collect()),
        )
    }

    /// MiniZinc data for the per-object model `models/heap.mzn` (the snapshot's side).
    pub fn object_dzn(&self, heap: &Heap) -> String {
        let n = self.ty.len();
        let list = |v: Vec<String>| v.join(", ");
        format!(
            "n_obj = {n};\nn_types = {};\nobj_type = [{}];\nrefcount = [{}];\nneeds = [{}];\npoints_to = [{}];\n",
            self.types,
            list(self.ty.iter().map(u32::to_string).collect()),
            list(self.refcount.iter().map(u32::to_string).collect()),
            list((0..n).map(|j| self.needs(heap, j).to_string()).collect()),
            list(
                self.points_to
                    .iter()
                    .map(|p| p.map_or(0, |k| k + 1).to_string())
                    .collect()
            ),
        )
    }
}

/// The heap a plan leaves behind, as fixed values of `models/heap.mzn`'s variables: the
/// object each pointer points at (0: the start of no object), each refcount, each type tag.
pub fn decode(heap: &Heap, plan: &PatchPlan) -> String {
    let after = heap.apply(&plan.writes);
    let n = heap.objects;
    let list = |v: Vec<String>| v.join(", ");
    format!(
        "target = [{}];\nnew_refcount = [{}];\nnew_type = [{}];\n",
        list(
            (0..n)
                .map(|j| after.object_at(after.pointer(j)).map_or(0, |k| k + 1).to_string())
                .collect()
        ),
        list((0..n).map(|j| after.refcount(j).to_string()).collect()),
        list((0..n).map(|j| after.type_of(j).to_string()).collect()),
    )
}

/// Why the solver's counts cannot be expanded into writes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("heap repair: {0}")]
pub struct ExpandError(pub String);

/// Expands the solver's answer — `kept[c]`: objects of class `c` whose refcount stays — into
/// writes: each invalid pointer gets a target of its type (kept objects receive exactly their
/// deficit, the rest go to an object whose refcount is written anyway), then every refcount
/// that differs from its object's new incoming count is written.
pub fn expand(heap: &Heap, facts: &HeapFacts, kept: &[i64]) -> Result<PatchPlan, ExpandError> {
    let writes = expand_writes(heap, facts, kept)?;
    let mut plan = PatchPlan {
        target_id: memzinc_verifier::hash::target_id::<Sha2>(b"synthetic-heap"),
        snapshot_root: heap.trees().root::<Sha2>(),
        model_hash: [0; 32],
        regions: if writes.is_empty() {
            Vec::new()
        } else {
            vec![heap.region()]
        },
        writes,
        slots: Vec::new(),
    };
    plan.canonicalize();
    Ok(plan)
}

/// [`expand`]'s writes alone (for heaps that are not synthetic: the caller binds them to its
/// snapshot).
pub fn expand_writes(heap: &Heap, facts: &HeapFacts, kept: &[i64]) -> Result<Vec<Write>, ExpandError> {
    let err = |s: String| ExpandError(s);
    if kept.len() != facts.classes.len() {
        return Err(err(format!(
            "{} counts for {} classes",
            kept.len(),
            facts.classes.len()
        )));
    }
    let n = heap.objects;
    let mut is_kept = vec![false; n];
    for (c, &k) in facts.classes.iter().zip(kept) {
        if k < 0 || k as usize > c.objects.len() || (k > 0 && c.deficit < 0) {
            return Err(err(format!("class ({}, {}) cannot keep {k}", c.ty, c.deficit)));
        }
        for &j in &c.objects[..k as usize] {
            is_kept[j] = true;
        }
    }
    let mut receives = vec![0u32; n];
    let mut target = vec![None; n];
    let mut by_need: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &j in &facts.bad {
        by_need.entry(facts.needs(heap, j)).or_default().push(j);
    }
    for (&t, pointers) in &by_need {
        let mut queue = pointers.iter();
        // Kept objects of type t with a positive deficit take exactly that many.
        for c in facts.classes.iter().filter(|c| c.ty == t && c.deficit > 0) {
            for &k in c.objects.iter().filter(|&&k| is_kept[k]) {
                for _ in 0..c.deficit {
                    let j = *queue
                        .next()
                        .ok_or_else(|| err(format!("type {t}: too few invalid pointers for the kept objects")))?;
                    target[j] = Some(k);
                    receives[k] += 1;
                }
            }
        }
        let rest: Vec<usize> = queue.copied().collect();
        if !rest.is_empty() {
            let sink = (0..n)
                .find(|&k| facts.ty[k] == t && !is_kept[k])
                .ok_or_else(|| err(format!("type {t}: no object to take {} pointer(s)", rest.len())))?;
            for j in rest {
                target[j] = Some(sink);
                receives[sink] += 1;
            }
        }
    }
    let mut writes = Vec::new();
    for &j in &facts.bad {
        let k = target[j].ok_or_else(|| err(format!("object {j}: no target")))?;
        let at = heap.object_address(j) + 8;
        writes.push(Write {
            address: at,
            old: heap.pointer(j).to_le_bytes().to_vec(),
            new: heap.object_address(k).to_le_bytes().to_vec(),
        });
    }
    for k in 0..n {
        let new_rc = facts.valid_in[k] + receives[k];
        if new_rc != facts.refcount[k] {
            if is_kept[k] {
                return Err(err(format!("kept object {k} would need refcount {new_rc}")));
            }
            writes.push(Write {
                address: heap.object_address(k) + 4,
                old: facts.refcount[k].to_le_bytes().to_vec(),
                new: new_rc.to_le_bytes().to_vec(),
            });
        }
    }
    Ok(writes)
}

/// Bytes a plan writes.
pub fn plan_bytes(plan: &PatchPlan) -> u64 {
    plan.writes.iter().map(|w| w.new.len() as u64).sum()
}

/// A one-line summary of the facts, for logs and the bench.
pub fn summary(facts: &HeapFacts) -> String {
    format!(
        "{} objects, {} invalid pointers, {} classes",
        facts.ty.len(),
        facts.bad.len(),
        facts.classes.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_heaps_are_consistent_before_corruption() {
        let heap = Heap::generate(7, 500, 6, 0.0, 0.0);
        let facts = HeapFacts::of(&heap);
        assert!(facts.bad.is_empty());
        assert!(facts.violations().is_empty(), "{:?}", facts.violations());
        assert!(facts.classes.iter().all(|c| c.deficit == 0));
    }

    #[test]
    fn corruption_shows_as_invalid_pointers_and_deficits() {
        let heap = Heap::generate(7, 2000, 6, 0.05, 0.0);
        let facts = HeapFacts::of(&heap);
        assert!((50..=150).contains(&facts.bad.len()), "{}", facts.bad.len());
        // Each lost pointer leaves its old target one refcount too high: deficits sum to it.
        let deficit: i64 = facts.classes.iter().map(|c| c.deficit * c.objects.len() as i64).sum();
        assert_eq!(deficit, facts.bad.len() as i64);
    }

    #[test]
    fn expansion_of_a_hand_made_answer_repairs_the_heap() {
        let heap = Heap::generate(11, 300, 4, 0.05, 0.02);
        let facts = HeapFacts::of(&heap);
        // Keep nothing: every invalid pointer goes to a written object; always feasible here.
        let kept = vec![0; facts.classes.len()];
        let plan = expand(&heap, &facts, &kept).unwrap();
        let after = HeapFacts::of(&heap.apply(&plan.writes));
        assert!(after.violations().is_empty(), "{:?}", after.violations());
        // Keeping more than a class has, or a negative-deficit object, is refused.
        let mut bad = kept.clone();
        bad[0] = facts.classes[0].objects.len() as i64 + 1;
        assert!(expand(&heap, &facts, &bad).is_err());
    }
}
