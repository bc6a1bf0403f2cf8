//! `plan --relocate ROOT[,ROOT...]`: move the objects of the linked structures (lists, trees)
//! reached from globals so that address order is traversal order, and rewrite every pointer to
//! a moved object — as ordinary writes with their old bytes, attested and applied like any plan.
//!
//! The objects are permuted among the chunks they already occupy, each only among chunks of
//! its own size, so no allocator call is needed and every chunk header stays as it is (a chunk
//! handed back to `free` is still one `malloc` gave out, of the same size). The traversal is a
//! structure's own links, depth first in field order (a list's `next`; a tree's `left` before
//! `right`). Placing the i-th object of the traversal in the i-th lowest chunk is optimal for
//! the distance the traversal jumps (the sum of |a(i+1) − a(i)| is at least max − min, reached
//! only by a monotone order) and for cache lines and pages changed along it, so no search is
//! left to a solver. Several structures whose objects share a chunk size (a list node and a
//! tree node are both 32-byte chunks in glibc) are placed one after the other, in the order
//! named: each gets a run of the chunks the two occupied, so a structure allocated interleaved
//! with another ends up twice as dense as a permutation among its own chunks could make it.
//!
//! Safety first: an object moves only if every reference to it is known. Every readable word
//! of the snapshot (stacks, untyped memory, other modules, the objects themselves) and every
//! register is scanned, as a conservative collector does; a word that points into an object's
//! chunk and is not a pointer the typed graph knows (and so rewrites) pins that object, and
//! the relocation says which and why. Memory the allocator holds free is not the program's
//! and is not scanned. Interior pointers are rewritten by their offset. Rust re-walks the moved
//! image and compares the structure, object by object along the traversal, before the plan is
//! written.

use rustc_hash::{FxHashMap, FxHashSet};

use serde::Serialize;

use super::spans::Spans;
use super::{ChunkState, Graph, GraphInput, GraphLimits, Landing, Root, NONE};
use crate::base::{Error, Result};
use crate::describe::{Image, Snapshot};
use crate::introspect::DebugTypes;
use crate::reason::plan::{Plan, PlannedWrite};
use memzinc_verifier::wire::Slot;

/// Pins listed in full at most (the rest are counted).
const MAX_PINS_LISTED: usize = 100;
const CACHE_LINE: u64 = 64;
const PAGE: u64 = 4096;

/// A relocation plan and what it decided.
#[derive(Debug)]
pub struct Relocation {
    pub plan: Plan,
    pub summary: RelocationSummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelocationSummary {
    /// Each structure, in the order its root was named.
    pub structures: Vec<StructureSummary>,
    /// Objects of all the structures.
    pub objects: usize,
    pub moved: usize,
    pub pinned: usize,
    /// The first pinned objects, with why.
    pub pins: Vec<Pin>,
    /// Pointers rewritten outside the moved objects (roots, index arrays, pinned objects).
    pub pointers_rewritten: usize,
    /// Objects this plan leaves short of their place, for a later round: a relocation moves
    /// at most `max_moves` (what one attestation holds). Apply it, snapshot and plan again.
    pub deferred: usize,
}

/// One structure of a relocation: the objects a root reaches that no root named before it does.
#[derive(Clone, Debug, Serialize)]
pub struct StructureSummary {
    pub root: String,
    pub type_name: String,
    /// Objects of the structure, in traversal order.
    pub objects: usize,
    pub moved: usize,
    pub pinned: usize,
    /// Along the traversal: how often it moves to another cache line / page, before and after.
    pub line_changes_before: usize,
    pub line_changes_after: usize,
    pub page_changes_before: usize,
    pub page_changes_after: usize,
    /// Bytes from its lowest object's start to its highest object's end, before and after.
    pub span_before: u64,
    pub span_after: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pin {
    pub address: u64,
    pub path: String,
    pub why: String,
}

/// The relocation of the linked structures reached from the globals `roots` of `snap`, laid
/// out in that order, moving at most `max_moves` objects (the rest in later rounds).
pub fn plan_relocation(
    snap: &Snapshot,
    types: DebugTypes,
    roots: &[String],
    target: &str,
    max_moves: usize,
) -> Result<Relocation> {
    if roots.is_empty() {
        return Err(Error::Usage("name the global whose structure to relocate".into()));
    }
    let started = std::time::Instant::now();
    let phase = |what: &str| tracing::debug!("relocate: {what} at {:?}", started.elapsed());
    let input = GraphInput::of(snap, types)?;
    phase("input");
    let graph = input.walk(GraphLimits::default());
    if let Some(bound) = &graph.bound {
        return Err(Error::Usage(format!(
            "the object graph is not whole, so nothing is relocated: {bound}"
        )));
    }
    let named: Vec<&Root> = roots
        .iter()
        .map(|root| find_root(&graph, root))
        .collect::<Result<_>>()?;
    let structures = structures_of(&graph, &named);
    for ((s, r), root) in structures.iter().zip(&named).zip(roots) {
        if s.is_empty() {
            let why = if traversal(&graph, &Links::of(&graph), r.object).is_empty() {
                "reaches no linked structure (a type that links to itself)"
            } else {
                "reaches only objects a root named before it reaches"
            };
            return Err(Error::Usage(format!("{root} {why}")));
        }
    }
    let order: Vec<u32> = structures.iter().flatten().copied().collect();

    // Which objects may move: at the start of a live chunk of the size its structure's first
    // object has, and no longer than the chunk's usable bytes. They move among chunks of one
    // size and usable bytes (an mmapped chunk has fewer than a heap chunk of its size).
    let mut pins: FxHashMap<u32, String> = FxHashMap::default();
    let mut class: FxHashMap<u32, (u64, u64)> = FxHashMap::default();
    for s in &structures {
        let size = chunk_of(&graph, s[0]).map(|c| c.size);
        for &o in s {
            match (chunk_of(&graph, o), size) {
                (Some(c), Some(size)) if c.size == size && len_of(&graph, o) <= c.usable() => {
                    class.insert(o, (size, c.usable()));
                }
                (Some(c), Some(size)) if c.size == size => {
                    pins.insert(o, "it is longer than its chunk".into());
                }
                (Some(_), _) => {
                    pins.insert(o, "its chunk is another size than the others'".into());
                }
                (None, _) => {
                    pins.insert(o, "not at the start of a live malloc chunk".into());
                }
            }
        }
    }
    // An object moves as whole words, [address, address + len): what the attestor proves moved
    // (`wire::Slot`). A slot moves only to a slot of its length, so the objects of one chunk
    // size all move as the longest of them (a list node moved into a tree node's chunk takes
    // the rest of its own chunk's bytes along).
    let mut class_len: FxHashMap<(u64, u64), u64> = FxHashMap::default();
    for (&o, &size) in &class {
        let len = class_len.entry(size).or_insert(0);
        *len = (*len).max(len_of(&graph, o));
    }
    let len_at = |o: u32| class.get(&o).map_or_else(|| len_of(&graph, o), |size| class_len[size]);

    // Each member's chunk memory [mem, mem + usable), for the scan.
    let members = Spans::new(
        order
            .iter()
            .filter_map(|&o| chunk_of(&graph, o).map(|c| (c.mem(), c.mem() + c.usable(), o)))
            .collect(),
    );
    let member_at = |v: u64| members.find(v);

    // The pointers the typed graph knows (and so rewrites): every edge into a member.
    let known: FxHashSet<u64> = graph
        .edges
        .iter()
        .filter(|e| member_at(e.value).is_some())
        .map(|e| e.slot)
        .collect();
    phase("graph walked");
    scan(&input.image, &graph, &known, &member_at, &mut pins);
    for t in &snap.meta.threads {
        for v in t.regs.to_words() {
            if let Some((o, _)) = member_at(v) {
                pins.entry(o)
                    .or_insert_with(|| format!("a register of thread {} holds {v:#x}", t.tid));
            }
        }
    }

    // A pointer between an object's slot and its chunk's end would not move with it.
    for e in &graph.edges {
        if let Some((o, off)) = member_at(e.value) {
            if off >= len_at(o) {
                pins.entry(o)
                    .or_insert_with(|| format!("{:#x} holds {:#x}, past the end of the object", e.slot, e.value));
            }
        }
    }

    phase("scanned");
    // Placement: the movable objects, in traversal order (structure by structure), into the
    // chunks of their size in address order. Each structure takes a run of those chunks, so
    // no other structure's objects lie between its own.
    let movable: Vec<u32> = order.iter().copied().filter(|o| !pins.contains_key(o)).collect();
    let mut places: FxHashMap<(u64, u64), Vec<u64>> = FxHashMap::default();
    for &o in &movable {
        places
            .entry(class[&o])
            .or_default()
            .push(graph.objects[o as usize].address);
    }
    for p in places.values_mut() {
        p.sort_unstable();
        p.reverse();
    }
    let new_of: FxHashMap<u32, u64> = movable
        .iter()
        .map(|&o| {
            (
                o,
                places
                    .get_mut(&class[&o])
                    .and_then(Vec::pop)
                    .expect("a place per movable object"),
            )
        })
        .filter(|&(o, a)| graph.objects[o as usize].address != a)
        .collect();
    let (new_of, deferred) = keep_moves(new_of, |o| graph.objects[o as usize].address, max_moves);
    // The moved objects' ranges, ascending (the relocation's slots), each with its object and
    // its index among them.
    let mut moving: Vec<(u64, u64, u32)> = new_of
        .keys()
        .map(|&o| {
            let address = graph.objects[o as usize].address;
            (address, address + len_at(o), o)
        })
        .collect();
    moving.sort_unstable();
    let moving = Spans::new(
        moving
            .into_iter()
            .enumerate()
            .map(|(i, (start, end, o))| (start, end, (o, i as u32)))
            .collect(),
    );
    let moving_at = |v: u64| moving.find(v);
    let moved = |v: u64| -> u64 {
        match moving_at(v) {
            Some(((o, _), off)) => new_of[&o] + off,
            None => v,
        }
    };
    // Where an object starts after the move.
    let new_address = |o: u32| new_of.get(&o).copied().unwrap_or(graph.objects[o as usize].address);

    phase("placed");
    // Writes: each moved object's bytes at its new place, its pointers rewritten; every other
    // pointer into a moved object rewritten where it is.
    let mut copies: Vec<Vec<u8>> = Vec::with_capacity(moving.ranges().len());
    for &(start, end, _) in moving.ranges() {
        let bytes = input
            .image
            .bytes(start, (end - start) as usize)
            .ok_or_else(|| Error::Usage(format!("{start:#x}: the object's bytes are not in the snapshot")))?;
        copies.push(bytes.to_vec());
    }
    let mut writes = Vec::new();
    let mut pointers_rewritten = 0;
    for e in &graph.edges {
        let new = moved(e.value);
        if new == e.value {
            continue;
        }
        match moving_at(e.slot).filter(|((o, _), off)| off + 8 <= len_at(*o)) {
            Some(((_, i), off)) => {
                copies[i as usize][off as usize..off as usize + 8].copy_from_slice(&new.to_le_bytes());
            }
            None => {
                // A global's field by its path; a heap object's by address (a path costs the
                // object's depth).
                let from = &graph.objects[e.from as usize];
                let field = if from.parent == NONE {
                    let (root_name, path) = graph.field_path(e.from, e.field);
                    format!("{root_name}{path}")
                } else {
                    format!(
                        "(*({} *){:#x}).{}",
                        graph.type_name(e.from),
                        from.address,
                        graph.layouts.fields[e.field as usize]
                    )
                };
                writes.push(PlannedWrite {
                    address: e.slot,
                    old: e.value.to_le_bytes().to_vec(),
                    new: new.to_le_bytes().to_vec(),
                    field,
                    rule: format!("relocate: {:#x} → {new:#x}", e.value),
                });
                pointers_rewritten += 1;
            }
        }
    }
    for (&(_, _, (o, _)), bytes) in moving.ranges().iter().zip(&copies) {
        let at = new_of[&o];
        let old = input
            .image
            .bytes(at, bytes.len())
            .ok_or_else(|| Error::Usage(format!("{at:#x}: the destination's bytes are not in the snapshot")))?;
        // Named by address: an access path costs the object's depth (a list's length).
        let type_name = graph.type_name(o);
        writes.push(PlannedWrite {
            address: at,
            old: old.to_vec(),
            new: bytes.clone(),
            field: format!("*({type_name} *){at:#x}"),
            rule: format!(
                "relocate: the {type_name} at {:#x} to {at:#x}",
                graph.objects[o as usize].address
            ),
        });
    }
    writes.retain(|w| w.old != w.new);

    // The moved image has the same structure: along the traversal, object by object, the same
    // bytes but for its links, now in address order.
    phase("writes");
    let patched = input
        .image
        .patched(&writes.iter().map(|w| (w.address, w.new.clone())).collect::<Vec<_>>())?;
    phase("patched");
    let after = Graph::walk(
        &patched,
        &input.modules,
        &input.names,
        input.heap.clone(),
        GraphLimits::default(),
    );
    let after_named: Vec<&Root> = named
        .iter()
        .map(|r| find_root(&after, &r.name))
        .collect::<Result<_>>()?;
    let after_structures = structures_of(&after, &after_named);
    for ((s, a), root) in structures.iter().zip(&after_structures).zip(roots) {
        let want: Vec<u64> = s.iter().map(|&o| new_address(o)).collect();
        let got: Vec<u64> = a.iter().map(|&o| after.objects[o as usize].address).collect();
        if want != got {
            return Err(Error::Usage(format!(
                "{root}: the moved structure is not the planned one ({} objects before, {} after)",
                want.len(),
                got.len()
            )));
        }
        for (&b, &a) in s.iter().zip(a) {
            if unlinked(&graph, &input.image, b) != unlinked(&after, &patched, a) {
                return Err(Error::Usage(format!(
                    "{:#x}: the moved object's bytes differ from the original's",
                    graph.objects[b as usize].address
                )));
            }
        }
    }
    phase("re-walked and compared");
    // Moving changes the addresses findings name, not how many of each there are.
    let count = |fs: &[crate::reason::Finding], rule| fs.iter().filter(|f| f.rule == rule).count();
    if let Some(f) = after
        .findings
        .iter()
        .find(|f| count(&after.findings, f.rule) > count(&graph.findings, f.rule))
    {
        return Err(Error::Usage(format!(
            "the moved image breaks a rule: {} {}",
            f.location(),
            f.detail
        )));
    }

    phase("findings compared");
    let changes = |a: &[u64], unit: u64| a.windows(2).filter(|w| w[0] / unit != w[1] / unit).count();
    let span = |s: &[u32], at: &dyn Fn(u32) -> u64| {
        let (lo, hi) = s.iter().fold((u64::MAX, 0), |(lo, hi), &o| {
            let a = at(o);
            (lo.min(a), hi.max(a + graph.objects[o as usize].size))
        });
        hi.saturating_sub(lo)
    };
    let summaries: Vec<StructureSummary> = structures
        .iter()
        .zip(&named)
        .map(|(s, r)| {
            let before: Vec<u64> = s.iter().map(|&o| graph.objects[o as usize].address).collect();
            let after: Vec<u64> = s.iter().map(|&o| new_address(o)).collect();
            StructureSummary {
                root: r.name.clone(),
                type_name: graph.type_name(s[0]).to_string(),
                objects: s.len(),
                moved: s.iter().filter(|o| new_of.contains_key(o)).count(),
                pinned: s.iter().filter(|o| pins.contains_key(o)).count(),
                line_changes_before: changes(&before, CACHE_LINE),
                line_changes_after: changes(&after, CACHE_LINE),
                page_changes_before: changes(&before, PAGE),
                page_changes_after: changes(&after, PAGE),
                span_before: span(s, &|o| graph.objects[o as usize].address),
                span_after: span(s, &new_address),
            }
        })
        .collect();
    let pin_list: Vec<Pin> = order
        .iter()
        .filter(|o| pins.contains_key(o))
        .take(MAX_PINS_LISTED)
        .filter_map(|o| {
            pins.get(o).map(|why| {
                let (root_name, path) = graph.path(*o);
                Pin {
                    address: graph.objects[*o as usize].address,
                    path: format!("{root_name}{path}"),
                    why: why.clone(),
                }
            })
        })
        .collect();
    let summary = RelocationSummary {
        objects: order.len(),
        moved: new_of.len(),
        pinned: order.iter().filter(|o| pins.contains_key(o)).count(),
        pins: pin_list,
        pointers_rewritten,
        deferred,
        structures: summaries,
    };
    // A moved object goes to the slot of another moved object.
    let index_of = |address: u64| match moving.find(address) {
        Some(((_, i), 0)) => i,
        _ => unreachable!("a moved object's new place is a moved object's old one"),
    };
    let mut slots: Vec<Slot> = moving
        .ranges()
        .iter()
        .map(|&(start, end, (o, _))| Slot {
            address: start,
            len: (end - start) as u32,
            from: 0,
            to: index_of(new_of[&o]),
        })
        .collect();
    for i in 0..slots.len() {
        let to = slots[i].to as usize;
        slots[to].from = i as u32;
    }
    phase("summarised");
    let plan = Plan::relocation(snap, target, "none (address order is optimal)", writes, slots)?;
    phase("plan made");
    Ok(Relocation { plan, summary })
}

/// At most `budget` of the moves `new_of` (object → new address), for a relocation done in
/// rounds, and how many objects are left short of their place. The moves form a permutation
/// of the moved objects' addresses; its cycles are kept whole, lowest address first, while they
/// fit. The first cycle that does not fit is cut: its first `r` objects each move to the next
/// one's place, as planned, and the `r`-th takes the first one's place for now. That is a
/// permutation too, and from the moved image the next round's plan is the rest of the cycle
/// (every object is placed by traversal order among the same chunks, wherever it is).
fn keep_moves(
    new_of: FxHashMap<u32, u64>,
    address: impl Fn(u32) -> u64,
    budget: usize,
) -> (FxHashMap<u32, u64>, usize) {
    let total = new_of.len();
    if total <= budget {
        return (new_of, 0);
    }
    let at: FxHashMap<u64, u32> = new_of.keys().map(|&o| (address(o), o)).collect();
    let mut starts: Vec<(u64, u32)> = at.iter().map(|(&a, &o)| (a, o)).collect();
    starts.sort_unstable();
    let mut kept = FxHashMap::with_capacity_and_hasher(budget, Default::default());
    let mut seen = FxHashSet::default();
    let mut placed = 0;
    for (_, first) in starts {
        let room = budget - kept.len();
        if room < 2 {
            break;
        }
        if seen.contains(&first) {
            continue;
        }
        let mut cycle = vec![first];
        let mut o = at[&new_of[&first]];
        while o != first {
            cycle.push(o);
            o = at[&new_of[&o]];
        }
        seen.extend(cycle.iter().copied());
        if cycle.len() <= room {
            placed += cycle.len();
            kept.extend(cycle.iter().map(|&o| (o, new_of[&o])));
        } else {
            let cut = &cycle[..room];
            placed += room - 1;
            kept.extend(cut[..room - 1].iter().map(|&o| (o, new_of[&o])));
            kept.insert(cut[room - 1], address(first));
        }
    }
    (kept, total - placed)
}

/// The global named `root` (qualified, or its last path component).
fn find_root<'g>(g: &'g Graph<'_>, root: &str) -> Result<&'g Root> {
    g.roots
        .iter()
        .find(|r| r.name == root || r.name.rsplit("::").next() == Some(root))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{root}: no global of that name has DWARF (`memzinc check --json --graph` lists the roots)"
            ))
        })
}

/// Each root's structure in traversal order, without the objects a root before it reaches.
fn structures_of(g: &Graph<'_>, roots: &[&Root]) -> Vec<Vec<u32>> {
    let links = Links::of(g);
    let mut claimed = FxHashSet::default();
    roots
        .iter()
        .map(|r| {
            traversal(g, &links, r.object)
                .into_iter()
                .filter(|&o| claimed.insert(o))
                .collect()
        })
        .collect()
}

/// An object's length in whole words.
fn len_of(g: &Graph<'_>, o: u32) -> u64 {
    (g.objects[o as usize].size + 7) & !7
}

fn is_valid(e: &super::Edge) -> bool {
    e.to != NONE && !e.landing.is_invalid()
}

/// Every object's valid links to its own type (`next`, `left`, `right`), in field order: one
/// table for all objects, as a walk of millions of objects would spend more on a map of small
/// lists than on the walk.
struct Links {
    /// Object `o`'s links are `to[first[o]..first[o + 1]]`.
    first: Vec<u32>,
    to: Vec<u32>,
}

impl Links {
    fn of(g: &Graph<'_>) -> Links {
        let link = |e: &&super::Edge| is_valid(e) && g.is_link(e);
        let mut first = vec![0u32; g.objects.len() + 1];
        for e in g.edges.iter().filter(link) {
            first[e.from as usize + 1] += 1;
        }
        for i in 1..first.len() {
            first[i] += first[i - 1];
        }
        let mut next = first.clone();
        let mut slots = vec![(0u64, 0u32); first[g.objects.len()] as usize];
        for e in g.edges.iter().filter(link) {
            let at = &mut next[e.from as usize];
            slots[*at as usize] = (e.slot, e.to);
            *at += 1;
        }
        for w in first.windows(2) {
            slots[w[0] as usize..w[1] as usize].sort_unstable();
        }
        Links {
            first,
            to: slots.into_iter().map(|(_, to)| to).collect(),
        }
    }

    fn of_object(&self, o: u32) -> &[u32] {
        &self.to[self.first[o as usize] as usize..self.first[o as usize + 1] as usize]
    }
}

/// The objects of the linked structure reached from `root`: depth first through the links of
/// the first object's type, in field order, each once.
fn traversal(g: &Graph<'_>, links: &Links, root: u32) -> Vec<u32> {
    let heads: Vec<u32> = g
        .edges
        .iter()
        .filter(|e| e.from == root && is_valid(e))
        .map(|e| e.to)
        .collect();
    let Some(&head) = heads
        .iter()
        .find(|&&h| !g.layouts.types[g.objects[h as usize].ty as usize].self_slots.is_empty())
    else {
        return Vec::new();
    };
    // A link leads to an object of its own object's type, so from heads of this type the
    // traversal stays among objects of this type.
    let ty = g.objects[head as usize].ty;
    let mut order = Vec::new();
    let mut seen = vec![false; g.objects.len()];
    let mut stack: Vec<u32> = heads
        .iter()
        .rev()
        .copied()
        .filter(|&h| g.objects[h as usize].ty == ty)
        .collect();
    while let Some(o) = stack.pop() {
        if std::mem::replace(&mut seen[o as usize], true) {
            continue;
        }
        order.push(o);
        stack.extend(links.of_object(o).iter().rev());
    }
    order
}

/// The live chunk an object starts: an arena's, or one mapped on its own (`free` unmaps it
/// by its own header wherever the object went, as it frees an arena's chunk).
fn chunk_of<'g>(g: &'g Graph<'_>, o: u32) -> Option<&'g super::Chunk> {
    let obj = &g.objects[o as usize];
    let c = g.heap.chunks.get(obj.chunk as usize)?;
    let live = matches!(c.state, ChunkState::Live | ChunkState::Mmapped);
    (obj.chunk != NONE && c.mem() == obj.address && live).then_some(c)
}

/// An object's bytes with its links zeroed (what must not change when it moves).
fn unlinked(g: &Graph<'_>, image: &Image, o: u32) -> Option<Vec<u8>> {
    let obj = &g.objects[o as usize];
    let mut bytes = image.bytes(obj.address, obj.size as usize)?.to_vec();
    for &slot in &g.layouts.types[obj.ty as usize].self_slots {
        if let Some(b) = bytes.get_mut(slot as usize..slot as usize + 8) {
            b.fill(0);
        }
    }
    Some(bytes)
}

/// Pins each member that a word the typed graph does not know points into: every readable,
/// captured word outside the allocator's free chunks.
fn scan(
    image: &Image,
    g: &Graph<'_>,
    known: &FxHashSet<u64>,
    member_at: &dyn Fn(u64) -> Option<(u32, u64)>,
    pins: &mut FxHashMap<u32, String>,
) {
    for s in image.segments() {
        if !s.readable || !s.captured() {
            continue;
        }
        let mut at = (s.start + 7) & !7;
        while at + 8 <= s.end {
            let Some(v) = image.u64_at(at) else { break };
            if let Some((o, _)) = member_at(v) {
                let free = matches!(g.heap.landing(at), Landing::Chunk(c) if c.state.is_free());
                if !known.contains(&at) && !free {
                    pins.entry(o).or_insert_with(|| {
                        let place = if s.path.is_empty() {
                            "anonymous memory".to_string()
                        } else {
                            s.path.clone()
                        };
                        format!("{at:#x} in {place} holds {v:#x}, which no typed pointer explains")
                    });
                }
            }
            at += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of at most `budget` moves, each a permutation of the places it touches, reach
    /// the planned layout, every object but one per cut placed for good.
    #[test]
    fn a_relocation_in_rounds_reaches_the_planned_places() {
        let n = 10_000u32;
        // A fixed permutation of n places (an LCG shuffle), one object per place.
        let mut order: Vec<u32> = (0..n).collect();
        let mut x = 7u64;
        for i in (1..n as usize).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) as usize % (i + 1));
        }
        let goal = |o: u32| 0x1000 + order[o as usize] as u64 * 32;
        let mut at: Vec<u64> = (0..n).map(|o| 0x1000 + o as u64 * 32).collect();
        let budget = 3_001;
        let mut rounds = 0;
        loop {
            let new_of: FxHashMap<u32, u64> = (0..n)
                .filter(|&o| at[o as usize] != goal(o))
                .map(|o| (o, goal(o)))
                .collect();
            let want = new_of.len();
            if want == 0 {
                break;
            }
            let (kept, deferred) = keep_moves(new_of, |o| at[o as usize], budget);
            assert!(kept.len() <= budget && kept.len() >= 2, "{} moves", kept.len());
            let froms: FxHashSet<u64> = kept.keys().map(|&o| at[o as usize]).collect();
            let tos: FxHashSet<u64> = kept.values().copied().collect();
            assert_eq!(froms, tos, "a round's moves are a permutation of the places they touch");
            assert_eq!(tos.len(), kept.len(), "no two objects to one place");
            let placed = kept.iter().filter(|&(&o, &a)| a == goal(o)).count();
            assert_eq!(deferred, want - placed);
            assert!(want <= budget || kept.len() >= budget - 1, "a round fills its budget");
            for (o, a) in kept {
                at[o as usize] = a;
            }
            rounds += 1;
            assert!(rounds <= 10, "no progress");
        }
        assert!(rounds >= 4, "{n} moves in rounds of {budget}: {rounds} rounds");
        assert!((0..n).all(|o| at[o as usize] == goal(o)));
    }
}
