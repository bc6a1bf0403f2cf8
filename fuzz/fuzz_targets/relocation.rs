//! Structured relocations of a small heap, honest and forged, deep into `check_relocation`.
//!
//! `arbitrary` builds a heap of 1 to 3 pages (low in the address space or just below its top)
//! and a page of roots, each its own writable region; objects of 1 to 4 words placed with gaps,
//! their words integers, pointers to an object's start or inside it (interior), or integers
//! that look like pointers (just before or past an object, into a gap); a root to every object.
//! Some objects of equal size move, along cycles of a random permutation; the slots, the
//! honest writes (each slot's new bytes, each pointer outside the slots moved: computed as
//! `tests/src/lib.rs` `relocation::submission` does, by `memzinc_fuzz::relocation`) and the
//! evidence (`SnapshotTrees::evidence`, SHA-256) follow. Then one forgery: a slot field changed
//! (as is, or with the writes recomputed from the changed table), a write's byte flipped, a
//! write dropped, duplicated or added, a pointer rewritten into another slot, two objects sent
//! to one slot with the writes recomputed consistently, a page of evidence dropped.
//!
//! The same relocation is also checked in parts (`relocation_stream`), and must be judged as
//! in one submission (`check_streamed`).
//!
//! Asserts: `verify_submission` returns exactly what `ref_verify_submission` returns; an
//! unforged relocation is accepted under a policy that allows its moves (and refused with
//! `RelocationNotAllowed` / `PlanTooManyMoves` otherwise); forgeries that change what the plan
//! claims about a moved object's bytes (a flipped byte, a duplicated write, a dropped slot write,
//! a pointer rewritten, two objects to one slot, a dropped page) are refused.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use memzinc_fuzz::relocation::{honest_writes, moved, Memory};
use memzinc_fuzz::{ref_verify_submission, report_verdict, RefHash, Sha2, PAGE};
use memzinc_verifier::plan::{Evidence, PatchPlan, SnapshotTrees, StreamedCheck, Submission, Write};
use memzinc_verifier::relocation_stream::STREAM_SLOT_LEN;
use memzinc_verifier::rules::verify_submission;
use memzinc_verifier::wire::{PolicyRules, Region, Slot, SymbolRules, REGION_READ, REGION_WRITE};
use memzinc_verifier::VerifyError;

const LOW_HEAP: u64 = 0x10_0000;
/// The highest page-aligned region end (a region cannot end at 2^64).
const TOP: u64 = 0xffff_ffff_ffff_f000;
const ROOTS: u64 = 0x20_0000;
const MAX_OBJECTS: usize = 24;

#[derive(Arbitrary, Debug)]
enum WordSpec {
    Integer(u64),
    Zero,
    /// A pointer to object `object` at `offset` bytes (reduced modulo its length: 0 is its
    /// start, anything else an interior pointer, maybe unaligned).
    Pointer {
        object: u8,
        offset: u8,
    },
    /// An integer near an object that points at none: `delta` bytes before its start or past
    /// its end (which may be another object, or a gap).
    Near {
        object: u8,
        before: bool,
        delta: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct ObjectSpec {
    /// Gap before the object, in words.
    gap: u8,
    /// 1 to 4 words.
    words: u8,
    fill: Vec<WordSpec>,
    moves: bool,
}

#[derive(Arbitrary, Debug)]
enum SlotField {
    Address(i16),
    Len(i16),
    From(u8),
    To(u8),
}

#[derive(Arbitrary, Debug)]
enum Forgery {
    None,
    /// A slot field changed after the writes were computed.
    Slot {
        slot: u8,
        field: SlotField,
    },
    /// A slot field changed, the writes recomputed from the changed table.
    SlotRecomputed {
        slot: u8,
        field: SlotField,
    },
    /// Two slots take the object of one: `slot[a].from = slot[b].from` (and `to` made to
    /// match), writes recomputed from that table.
    TwoToOne {
        a: u8,
        b: u8,
    },
    FlipNew {
        write: u8,
        at: u8,
        mask: u8,
    },
    FlipOld {
        write: u8,
        at: u8,
        mask: u8,
    },
    DropWrite {
        write: u8,
    },
    DuplicateWrite {
        write: u8,
    },
    /// A write of `value` (its old bytes the captured ones) at a heap or root word, maybe
    /// unaligned.
    AddWrite {
        at: u16,
        len: u8,
        value: u64,
    },
    /// One word of a write's new bytes pointed into slot `slot` at `offset`.
    Retarget {
        write: u8,
        word: u8,
        slot: u8,
        offset: u8,
    },
    DropPage {
        page: u8,
    },
    DropSlot {
        slot: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    high: bool,
    pages: u8,
    seed: u8,
    objects: Vec<ObjectSpec>,
    roots: Vec<WordSpec>,
    /// Orders the moving objects of a size before they are cut into cycles.
    shuffle: u64,
    /// Where a cycle may end (a cycle has at least two objects).
    cuts: u32,
    /// The policy's max_moves: any (None), or this many.
    max_moves: Option<u8>,
    forgery: Forgery,
}

struct Object {
    address: u64,
    len: u64,
}

struct Heap {
    memory: Memory,
    regions: Vec<Region>,
    objects: Vec<Object>,
}

fn pick<T>(items: &[T], i: u8) -> Option<&T> {
    (!items.is_empty()).then(|| &items[i as usize % items.len()])
}

fn value(spec: &WordSpec, objects: &[Object]) -> u64 {
    match *spec {
        WordSpec::Integer(v) => v,
        WordSpec::Zero => 0,
        WordSpec::Pointer { object, offset } => pick(objects, object).map_or(0, |o| o.address + offset as u64 % o.len),
        WordSpec::Near { object, before, delta } => pick(objects, object).map_or(0, |o| {
            if before {
                o.address - 1 - delta as u64 % 64
            } else {
                o.address + o.len + delta as u64 % 64
            }
        }),
    }
}

fn build_heap(input: &Input) -> Heap {
    let pages = 1 + input.pages as u64 % 3;
    let heap = if input.high { TOP - pages * PAGE } else { LOW_HEAP };
    let mut memory = Memory::default();
    for k in 0..pages {
        // Filler that looks like no address of the heap.
        let filler = (0..PAGE as usize)
            .map(|i| (i as u8).wrapping_mul(13) ^ input.seed ^ 0x80 ^ k as u8)
            .collect();
        memory.pages.insert(heap + k * PAGE, filler);
    }
    memory.pages.insert(ROOTS, vec![0; PAGE as usize]);
    let mut objects = Vec::new();
    let mut at = heap;
    for spec in input.objects.iter().take(MAX_OBJECTS) {
        let len = 8 * (1 + spec.words as u64 % 4);
        let address = at + 8 * (spec.gap as u64 % 128);
        if address + len > heap + pages * PAGE {
            break;
        }
        objects.push(Object { address, len });
        at = address + len;
    }
    for (o, spec) in objects.iter().zip(&input.objects) {
        for k in 0..o.len / 8 {
            let v = spec.fill.get(k as usize).map_or(0, |w| value(w, &objects));
            memory.set_word(o.address + 8 * k, v);
        }
    }
    // A root to every object, then the input's own roots.
    let roots = objects
        .iter()
        .map(|o| o.address)
        .chain(input.roots.iter().map(|w| value(w, &objects)))
        .take((PAGE / 8) as usize);
    for (k, v) in roots.enumerate() {
        memory.set_word(ROOTS + 8 * k as u64, v);
    }
    let mut regions = vec![
        Region {
            start: ROOTS,
            end: ROOTS + PAGE,
            flags: REGION_READ | REGION_WRITE,
        },
        Region {
            start: heap,
            end: heap + pages * PAGE,
            flags: REGION_READ | REGION_WRITE,
        },
    ];
    regions.sort_by_key(|r| r.start);
    Heap {
        memory,
        regions,
        objects,
    }
}

/// The slot table of a random permutation of the moving objects, each size on its own cycles
/// of at least two objects.
fn build_slots(input: &Input, heap: &Heap) -> Vec<Slot> {
    let moving: Vec<usize> = (0..heap.objects.len()).filter(|&i| input.objects[i].moves).collect();
    // Slots are the moving objects in address order (objects already are).
    let mut slots: Vec<Slot> = moving
        .iter()
        .map(|&i| Slot {
            address: heap.objects[i].address,
            len: heap.objects[i].len as u32,
            from: u32::MAX,
            to: u32::MAX,
        })
        .collect();
    let mut cut = 0;
    for len in [8, 16, 24, 32] {
        let mut group: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].len == len).collect();
        // A shuffle by a keyed hash of the position.
        group.sort_by_key(|&i| (i as u64 ^ input.shuffle).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7);
        let mut start = 0;
        while group.len() - start >= 2 {
            let left = group.len() - start;
            let mut n = 2;
            while n < left && (left - n < 2 || input.cuts & (1 << (cut % 32)) == 0) {
                n += 1;
                cut += 1;
            }
            cut += 1;
            let cycle = &group[start..start + n];
            for k in 0..n {
                let (i, j) = (cycle[k], cycle[(k + 1) % n]);
                slots[i].to = j as u32;
                slots[j].from = i as u32;
            }
            start += n;
        }
    }
    // An object alone of its size stays where it is: no slot.
    slots.retain(|s| s.to != u32::MAX);
    // Renumber after the removal: indices are positions in the kept table.
    let kept: Vec<u64> = slots.iter().map(|s| s.address).collect();
    let all: Vec<u64> = moving.iter().map(|&i| heap.objects[i].address).collect();
    let renumber = |old: u32| kept.iter().position(|&a| a == all[old as usize]).expect("kept") as u32;
    slots
        .iter()
        .map(|s| Slot {
            from: renumber(s.from),
            to: renumber(s.to),
            ..*s
        })
        .collect()
}

fn edit(slot: &mut Slot, field: &SlotField) {
    match *field {
        SlotField::Address(d) => slot.address = slot.address.wrapping_add(d as i64 as u64),
        SlotField::Len(d) => slot.len = slot.len.wrapping_add(d as i32 as u32),
        SlotField::From(v) => slot.from = v as u32,
        SlotField::To(v) => slot.to = v as u32,
    }
}

fn evidence(trees: &SnapshotTrees, plan: &PatchPlan, memory: &Memory) -> Option<Evidence> {
    let contents = |a: u64| memory.pages.get(&a).cloned();
    // A slot outside the snapshot has no page to prove: prove the writes' pages only. (So has
    // a slot of a forged length past the heap's 3 pages, whose pages are not even listed.)
    let in_reach = plan.slots.iter().all(|s| s.len as u64 <= 4 * PAGE);
    let all = in_reach.then(|| trees.evidence(plan, contents).ok()).flatten();
    all.or_else(|| {
        let writes_only = PatchPlan {
            slots: Vec::new(),
            ..plan.clone()
        };
        trees.evidence(&writes_only, contents).ok()
    })
}

fuzz_target!(|input: Input| {
    let heap = build_heap(&input);
    let mut slots = build_slots(&input, &heap);
    if slots.is_empty() {
        return;
    }
    let mut writes = honest_writes(&heap.memory, &slots);
    // Whether the forgery must be refused whatever else happens.
    let mut must_refuse = false;
    let mut drop_page = None;
    match input.forgery {
        Forgery::None => {}
        Forgery::Slot { slot, ref field } => {
            let i = slot as usize % slots.len();
            edit(&mut slots[i], field);
        }
        Forgery::SlotRecomputed { slot, ref field } => {
            let i = slot as usize % slots.len();
            edit(&mut slots[i], field);
            writes = honest_writes(&heap.memory, &slots);
        }
        Forgery::TwoToOne { a, b } => {
            let (a, b) = (a as usize % slots.len(), b as usize % slots.len());
            if slots[a].from != slots[b].from {
                // Slot a takes b's source too; the source sends its object to a as well as b.
                slots[a].from = slots[b].from;
                writes = honest_writes(&heap.memory, &slots);
                must_refuse = true;
            }
        }
        Forgery::FlipNew { write, at, mask } => {
            if let (Some(i), true) = ((!writes.is_empty()).then(|| write as usize % writes.len()), mask != 0) {
                let w = &mut writes[i];
                let at = at as usize % w.new.len();
                w.new[at] ^= mask;
                must_refuse = true;
            }
        }
        Forgery::FlipOld { write, at, mask } => {
            if let (Some(i), true) = ((!writes.is_empty()).then(|| write as usize % writes.len()), mask != 0) {
                let w = &mut writes[i];
                let at = at as usize % w.old.len();
                w.old[at] ^= mask;
                must_refuse = true;
            }
        }
        Forgery::DropWrite { write } => {
            if !writes.is_empty() {
                let w = writes.remove(write as usize % writes.len());
                // A slot's write is its new bytes, needed; a dropped pointer write is a
                // reference left alone, which only the host's scan can see.
                must_refuse = slots.iter().any(|s| s.address == w.address);
            }
        }
        Forgery::DuplicateWrite { write } => {
            if !writes.is_empty() {
                let i = write as usize % writes.len();
                writes.insert(i, writes[i].clone());
                must_refuse = true;
            }
        }
        Forgery::AddWrite { at, len, value } => {
            let pages: Vec<u64> = heap.memory.pages.keys().copied().collect();
            let page = pages[at as usize % pages.len()];
            let address = page + (at as u64 >> 4) % (PAGE - 8);
            let len = 1 + len as u64 % 8;
            let old = heap.memory.bytes(address, len).expect("inside one page");
            let new = value.to_le_bytes()[..len as usize].to_vec();
            writes.retain(|w| w.address != address);
            writes.push(Write { address, old, new });
            writes.sort_by_key(|w| w.address);
        }
        Forgery::Retarget {
            write,
            word,
            slot,
            offset,
        } => {
            if !writes.is_empty() {
                let i = write as usize % writes.len();
                let target = &slots[slot as usize % slots.len()];
                let v = target.address + offset as u64 % target.len as u64;
                let w = &mut writes[i];
                let k = 8 * (word as usize % w.new.len().div_ceil(8));
                let end = (k + 8).min(w.new.len());
                let honest = w.new.clone();
                w.new[k..end].copy_from_slice(&v.to_le_bytes()[..end - k]);
                must_refuse = w.new != honest;
            }
        }
        Forgery::DropPage { page } => drop_page = Some(page),
        Forgery::DropSlot { slot } => {
            slots.remove(slot as usize % slots.len());
        }
    }

    let trees = SnapshotTrees::new::<Sha2>(
        heap.regions.clone(),
        heap.memory
            .pages
            .iter()
            .map(|(&a, c)| (a, Sha2::page_leaf(a, c)))
            .collect(),
    );
    let plan = PatchPlan {
        target_id: [7; 32],
        snapshot_root: trees.root::<Sha2>(),
        model_hash: [0; 32],
        regions: heap.regions.clone(),
        writes,
        slots,
    };
    let Some(mut evidence) = evidence(&trees, &plan, &heap.memory) else {
        return;
    };
    if let Some(page) = drop_page {
        if !evidence.pages.is_empty() {
            let i = page as usize % evidence.pages.len();
            evidence.pages.remove(i);
            // Every page of honest evidence holds a write's old bytes or a slot's words, each
            // read by the checks (every slot is some slot's source).
            must_refuse = true;
        }
    }
    let rules = PolicyRules {
        wx: true,
        max_bytes: u32::MAX,
        max_writes: u32::MAX,
        max_moves: input.max_moves.map_or(u32::MAX, u32::from),
    };
    let submission = Submission { plan, evidence };
    let bytes = submission.encode();
    let got = verify_submission::<Sha2>(&rules, &SymbolRules::default(), &bytes)
        .map(|(_, v)| (v.plan_hash, v.region_table_hash, v.totals));
    let reference = ref_verify_submission::<Sha2>(&rules, &[], &submission.plan, &submission.evidence);
    assert_eq!(got, reference, "verifier vs reference");

    let moves = submission.plan.slots.len() as u64;
    let verdict = got.map(|_| ());
    if matches!(input.forgery, Forgery::None) {
        let expected = match rules.max_moves {
            0 => Err(VerifyError::RelocationNotAllowed),
            m if (m as u64) < moves => Err(VerifyError::PlanTooManyMoves),
            _ => Ok(()),
        };
        assert_eq!(verdict, expected, "an honest relocation");
        // The honest writes move every pointer into a slot, so every root now points where its
        // object went.
        for (k, o) in heap.objects.iter().enumerate() {
            let root = submission
                .plan
                .writes
                .iter()
                .find(|w| w.address == ROOTS + 8 * k as u64);
            let now = root.map_or(o.address, |w| {
                u64::from_le_bytes(w.new[..8].try_into().expect("8 bytes"))
            });
            assert_eq!(now, moved(&submission.plan.slots, o.address));
        }
    }
    if must_refuse {
        assert!(verdict.is_err(), "a forgery was accepted: {:?}", input.forgery);
    }
    if !submission.plan.slots.is_empty() {
        check_streamed(&submission, &rules, 1 + input.cuts as usize % 4);
    }
    report_verdict(&verdict);
});

/// The relocation checked in parts of at most `max_slots` slots: accepted exactly when the
/// same plan is accepted in one submission with each slot's `from` made the inverse of its `to`
/// (a stream never reads `from`: the taken marks prove `to` a bijection instead), and refused
/// when `to` is no permutation.
fn check_streamed(submission: &Submission, rules: &PolicyRules, max_slots: usize) {
    let streamed = streamed(submission, rules, max_slots);
    let n = submission.plan.slots.len();
    let mut seen = vec![false; n];
    let permutation = submission
        .plan
        .slots
        .iter()
        .all(|s| (s.to as usize) < n && !std::mem::replace(&mut seen[s.to as usize], true));
    if !permutation {
        assert!(streamed.is_err(), "a stream accepted slots that are no permutation");
        return;
    }
    let mut canonical = submission.clone();
    for i in 0..n {
        let to = canonical.plan.slots[i].to as usize;
        canonical.plan.slots[to].from = i as u32;
    }
    let whole = verify_submission::<Sha2>(rules, &SymbolRules::default(), &canonical.encode()).map(|_| ());
    assert_eq!(
        streamed.is_ok(),
        whole.is_ok(),
        "in parts {streamed:?}, whole {whole:?}"
    );
}

fn streamed(submission: &Submission, rules: &PolicyRules, max_slots: usize) -> Result<(), VerifyError> {
    let parts = submission.stream_parts(usize::MAX, max_slots)?;
    let plan = &submission.plan;
    let mut check = StreamedCheck::open::<Sha2>(plan, 3);
    let table: Vec<u8> = plan.stream_slots().iter().flat_map(|s| s.encode()).collect();
    // Five slots an append (into the stores they land in only, as the program gives them).
    for (i, chunk) in table.chunks(5 * STREAM_SLOT_LEN).enumerate() {
        check.append::<Sha2>(5 * i as u32, chunk)?;
    }
    for p in &parts {
        check.part::<Sha2>(rules, &SymbolRules::default(), &p.submission.encode(), p.hi)?;
    }
    let (hash, _) = check.finish::<Sha2>(rules)?;
    assert_eq!(hash, plan.streamed_plan_hash::<Sha2>(), "the stream's plan hash");
    Ok(())
}
