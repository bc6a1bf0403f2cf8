//! `plan --relocate ROOT`: move the objects of a linked structure (a list, a tree) reached from
//! a global so that address order is traversal order, and rewrite every pointer to a moved
//! object — as ordinary writes with their old bytes, attested and applied like any plan.
//!
//! The objects are permuted among the chunks they already occupy (all of one size class), so
//! no allocator call is needed and every chunk header stays as it is. The traversal is the
//! structure's own links, depth first in field order (a list's `next`; a tree's `left` before
//! `right`). Placing the i-th object of the traversal in the i-th lowest chunk is optimal for
//! the distance the traversal jumps (the sum of |a(i+1) − a(i)| is at least max − min, reached
//! only by a monotone order) and for cache lines and pages changed along it, so no search is
//! left to a solver.
//!
//! Safety first: an object moves only if every reference to it is known. Every readable word
//! of the snapshot (stacks, untyped memory, other modules, the objects themselves) and every
//! register is scanned, as a conservative collector does; a word that points into an object's
//! chunk and is not a pointer the typed graph knows (and so rewrites) pins that object, and
//! the relocation says which and why. Memory the allocator holds free is not the program's
//! and is not scanned. Interior pointers are rewritten by their offset. Rust re-walks the moved
//! image and compares the structure, object by object along the traversal, before the plan is
//! written.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{ChunkState, Graph, GraphInput, GraphLimits, Landing, NONE};
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
    pub root: String,
    pub type_name: String,
    /// Objects of the structure, in traversal order.
    pub objects: usize,
    pub moved: usize,
    pub pinned: usize,
    /// The first pinned objects, with why.
    pub pins: Vec<Pin>,
    /// Pointers rewritten outside the moved objects (roots, index arrays, pinned objects).
    pub pointers_rewritten: usize,
    /// Along the traversal: how often it moves to another cache line / page, before and after.
    pub line_changes_before: usize,
    pub line_changes_after: usize,
    pub page_changes_before: usize,
    pub page_changes_after: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pin {
    pub address: u64,
    pub path: String,
    pub why: String,
}

/// The relocation of the linked structure reached from the global `root` of `snap`.
pub fn plan_relocation(snap: &Snapshot, types: DebugTypes, root: &str, target: &str) -> Result<Relocation> {
    let input = GraphInput::of(snap, types)?;
    let graph = input.walk(GraphLimits::default());
    if let Some(bound) = &graph.bound {
        return Err(Error::Usage(format!(
            "the object graph is not whole, so nothing is relocated: {bound}"
        )));
    }
    let r = graph
        .roots
        .iter()
        .find(|r| r.name == root || r.name.rsplit("::").next() == Some(root))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{root}: no global of that name has DWARF (`memzinc check --json --graph` lists the roots)"
            ))
        })?;
    let order = traversal(&graph, r.object);
    let Some(&first) = order.first() else {
        return Err(Error::Usage(format!(
            "{root} reaches no linked structure (a type that links to itself)"
        )));
    };
    let type_name = graph.type_name(first).to_string();

    // Which objects may move: at the start of a live chunk of the first one's size.
    let class = chunk_of(&graph, first).map(|c| c.size);
    let mut pins: HashMap<u32, String> = HashMap::new();
    for &o in &order {
        match (chunk_of(&graph, o), class) {
            (Some(c), Some(size)) if c.size == size => {}
            (Some(_), _) => {
                pins.insert(o, "its chunk is another size than the others'".into());
            }
            (None, _) => {
                pins.insert(o, "not at the start of a live heap chunk".into());
            }
        }
    }
    // Each member's chunk memory [mem, mem + usable), sorted, for the scan.
    let mut ranges: Vec<(u64, u64, u32)> = order
        .iter()
        .filter_map(|&o| chunk_of(&graph, o).map(|c| (c.mem(), c.mem() + c.usable(), o)))
        .collect();
    ranges.sort_unstable();
    let member_at = |v: u64| -> Option<(u32, u64)> {
        let i = ranges.partition_point(|r| r.0 <= v).checked_sub(1)?;
        let (start, end, o) = ranges[i];
        (v < end).then_some((o, v - start))
    };

    // The pointers the typed graph knows (and so rewrites): every edge into a member.
    let known: HashSet<u64> = graph
        .edges
        .iter()
        .filter(|e| member_at(e.value).is_some())
        .map(|e| e.slot)
        .collect();
    scan(&input.image, &graph, &known, &member_at, &mut pins);
    for t in &snap.meta.threads {
        for v in t.regs.to_words() {
            if let Some((o, _)) = member_at(v) {
                pins.entry(o)
                    .or_insert_with(|| format!("a register of thread {} holds {v:#x}", t.tid));
            }
        }
    }

    // An object moves as whole words, [address, address + len): what the attestor proves moved
    // (`wire::Slot`). A pointer between its end and its chunk's end would not move with it.
    let len_of = |o: u32| (graph.objects[o as usize].size + 7) & !7;
    for e in &graph.edges {
        if let Some((o, off)) = member_at(e.value) {
            if off >= len_of(o) {
                pins.entry(o)
                    .or_insert_with(|| format!("{:#x} holds {:#x}, past the end of the object", e.slot, e.value));
            }
        }
    }

    // Placement: the movable objects, in traversal order, into their chunks in address order.
    let movable: Vec<u32> = order.iter().copied().filter(|o| !pins.contains_key(o)).collect();
    let mut places: Vec<u64> = movable.iter().map(|&o| graph.objects[o as usize].address).collect();
    places.sort_unstable();
    let new_of: HashMap<u32, u64> = movable
        .iter()
        .zip(&places)
        .filter(|(&o, &a)| graph.objects[o as usize].address != a)
        .map(|(&o, &a)| (o, a))
        .collect();
    // The moved objects' ranges, ascending: the relocation's slots.
    let mut moving: Vec<(u64, u64, u32)> = new_of
        .keys()
        .map(|&o| (graph.objects[o as usize].address, len_of(o), o))
        .collect();
    moving.sort_unstable();
    let moving_at = |v: u64| -> Option<(u32, u64)> {
        let i = moving.partition_point(|r| r.0 <= v).checked_sub(1)?;
        let (start, len, o) = moving[i];
        (v < start + len).then_some((o, v - start))
    };
    let moved = |v: u64| -> u64 {
        match moving_at(v) {
            Some((o, off)) => new_of[&o] + off,
            None => v,
        }
    };

    // Writes: each moved object's bytes at its new place, its pointers rewritten; every other
    // pointer into a moved object rewritten where it is.
    let mut copies: HashMap<u32, Vec<u8>> = HashMap::new();
    for &(address, len, o) in &moving {
        let bytes = input
            .image
            .bytes(address, len as usize)
            .ok_or_else(|| Error::Usage(format!("{address:#x}: the object's bytes are not in the snapshot")))?;
        copies.insert(o, bytes.to_vec());
    }
    let mut writes = Vec::new();
    let mut pointers_rewritten = 0;
    for e in &graph.edges {
        let new = moved(e.value);
        if new == e.value {
            continue;
        }
        match moving_at(e.slot).filter(|(o, off)| off + 8 <= len_of(*o)) {
            Some((o, off)) => {
                copies.get_mut(&o).expect("a copy per moved object")[off as usize..off as usize + 8]
                    .copy_from_slice(&new.to_le_bytes());
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
    for (&o, bytes) in &copies {
        let at = new_of[&o];
        let old = input
            .image
            .bytes(at, bytes.len())
            .ok_or_else(|| Error::Usage(format!("{at:#x}: the destination's bytes are not in the snapshot")))?;
        // Named by address: an access path costs the object's depth (a list's length).
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
    let patched = input
        .image
        .patched(&writes.iter().map(|w| (w.address, w.new.clone())).collect::<Vec<_>>())?;
    let after = Graph::walk(
        &patched,
        &input.modules,
        &input.names,
        input.heap.clone(),
        GraphLimits::default(),
    );
    let after_root = after
        .roots
        .iter()
        .find(|x| x.name == r.name)
        .ok_or_else(|| Error::Usage(format!("{root}: gone from the moved image")))?;
    let after_order = traversal(&after, after_root.object);
    let want: Vec<u64> = order
        .iter()
        .map(|&o| moved(graph.objects[o as usize].address))
        .collect();
    let got: Vec<u64> = after_order.iter().map(|&o| after.objects[o as usize].address).collect();
    if want != got {
        return Err(Error::Usage(format!(
            "the moved structure is not the planned one ({} objects before, {} after)",
            want.len(),
            got.len()
        )));
    }
    for (&b, &a) in order.iter().zip(&after_order) {
        if unlinked(&graph, &input.image, b) != unlinked(&after, &patched, a) {
            return Err(Error::Usage(format!(
                "{:#x}: the moved object's bytes differ from the original's",
                graph.objects[b as usize].address
            )));
        }
    }
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

    let addresses: Vec<u64> = order.iter().map(|&o| graph.objects[o as usize].address).collect();
    let changes = |a: &[u64], unit: u64| a.windows(2).filter(|w| w[0] / unit != w[1] / unit).count();
    let pinned = order.iter().filter(|o| pins.contains_key(o)).count();
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
        root: r.name.clone(),
        type_name,
        objects: order.len(),
        moved: new_of.len(),
        pinned,
        pins: pin_list,
        pointers_rewritten,
        line_changes_before: changes(&addresses, CACHE_LINE),
        line_changes_after: changes(&got, CACHE_LINE),
        page_changes_before: changes(&addresses, PAGE),
        page_changes_after: changes(&got, PAGE),
    };
    let index_of: HashMap<u64, u32> = moving
        .iter()
        .enumerate()
        .map(|(i, &(address, _, _))| (address, i as u32))
        .collect();
    let mut slots: Vec<Slot> = moving
        .iter()
        .map(|&(address, len, o)| Slot {
            address,
            len: len as u32,
            from: 0,
            to: index_of[&new_of[&o]],
        })
        .collect();
    for i in 0..slots.len() {
        let to = slots[i].to as usize;
        slots[to].from = i as u32;
    }
    let plan = Plan::new(
        snap,
        target,
        "none (address order is optimal)",
        true,
        vec![],
        writes,
        None,
    )?
    .with_slots(snap, slots)?;
    Ok(Relocation { plan, summary })
}

/// The objects of the linked structure reached from `root`: depth first through the links of
/// the first object's type, in field order, each once.
fn traversal(g: &Graph<'_>, root: u32) -> Vec<u32> {
    let valid = |e: &&super::Edge| e.to != NONE && !e.landing.is_invalid();
    let heads: Vec<u32> = g
        .edges
        .iter()
        .filter(|e| e.from == root)
        .filter(valid)
        .map(|e| e.to)
        .collect();
    let Some(&head) = heads
        .iter()
        .find(|&&h| !g.layouts.types[g.objects[h as usize].ty as usize].self_slots.is_empty())
    else {
        return Vec::new();
    };
    let ty = g.objects[head as usize].ty;
    let mut links: HashMap<u32, Vec<(u64, u32)>> = HashMap::new();
    for e in g.edges.iter().filter(valid) {
        if g.is_link(e) && g.objects[e.from as usize].ty == ty {
            links.entry(e.from).or_default().push((e.slot, e.to));
        }
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<u32> = heads
        .iter()
        .rev()
        .copied()
        .filter(|&h| g.objects[h as usize].ty == ty)
        .collect();
    while let Some(o) = stack.pop() {
        if !seen.insert(o) {
            continue;
        }
        order.push(o);
        if let Some(next) = links.get_mut(&o) {
            next.sort_unstable();
            stack.extend(next.iter().rev().map(|&(_, to)| to));
        }
    }
    order
}

/// The live chunk an object starts.
fn chunk_of<'g>(g: &'g Graph<'_>, o: u32) -> Option<&'g super::Chunk> {
    let obj = &g.objects[o as usize];
    let c = g.heap.chunks.get(obj.chunk as usize)?;
    (obj.chunk != NONE && c.mem() == obj.address && c.state == ChunkState::Live).then_some(c)
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
    known: &HashSet<u64>,
    member_at: &dyn Fn(u64) -> Option<(u32, u64)>,
    pins: &mut HashMap<u32, String>,
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
