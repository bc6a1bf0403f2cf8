//! `plan` with no spec and no rules: the repair of what the object graph found, decided by
//! MiniZinc (`models/graph_repair.mzn`). A broken pointer becomes NULL or the start of a
//! *detached* live object of its pointee's type — one that no pointer of the structure it
//! belonged to reaches any more (for a type that links to itself, no incoming `next`/`left`/…;
//! for another type, nothing typed at all) — each used at most once, never closing a cycle
//! through the type's own links. An invalid enum or bool gets a valid value. Lexicographic:
//! fewest objects left detached (a candidate weighs the objects its links hold: the rest of a
//! list outweighs a stray chunk that merely looks like a node), then fewest bytes. Rust re-walks the repaired graph before the
//! answer becomes a plan.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use super::{bytes_changed, Graph, GraphInput, GraphLimits, NONE};
use crate::base::{Error, Result};
use crate::describe::Snapshot;
use crate::introspect::DebugTypes;
use crate::reason::plan::{Plan, PlannedWrite};
use crate::reason::solver::{self, SolverOptions, Status};

/// Steps of the cycle search (objects visited over all candidates) at most.
const MAX_CYCLE_STEPS: usize = 20_000_000;

/// (broken pointer, candidate), by index.
type Pair = (usize, usize);

/// A broken pointer the plan may write.
struct Broken {
    edge: usize,
    /// Index into the pointee types given to the model (0: untyped, only NULL).
    ty: usize,
}

/// The plan that repairs what the object graph of `snap` finds, with the main binary's DWARF
/// `types`; `work` keeps the facts given to the solver.
pub fn plan_graph(
    snap: &Snapshot,
    types: DebugTypes,
    opts: &SolverOptions,
    models_dir: &Path,
    work: &Path,
    target: &str,
) -> Result<Plan> {
    let input = GraphInput::of(snap, types)?;
    let graph = input.walk(GraphLimits::default());
    if let Some(bound) = &graph.bound {
        return Err(Error::Usage(format!(
            "the object graph is not whole, so no repair is planned: {bound}"
        )));
    }
    if graph.findings.is_empty() {
        return Plan::new(snap, target, opts.backend.name(), true, vec![], vec![], None);
    }

    // The broken pointers the plan may write: in writable memory, not a buffer's (a Rust
    // buffer pointer is never null; its repair is not a pointer's).
    let mut types_ix: HashMap<u32, usize> = HashMap::new();
    let mut broken = Vec::new();
    for (i, e) in graph.edges.iter().enumerate() {
        if !e.landing.is_invalid() || e.buffer || !input.image.segment(e.slot).is_some_and(|s| s.writable) {
            continue;
        }
        let next = types_ix.len() + 1;
        let ty = if e.pointee == NONE {
            0
        } else {
            *types_ix.entry(e.pointee).or_insert(next)
        };
        broken.push(Broken { edge: i, ty });
    }

    let candidates = detached(&graph, &types_ix);
    let (forbidden, weight) = cycles(&graph, &broken, &candidates)?;
    let values: Vec<&super::BadValue> = graph
        .bad_values
        .iter()
        .filter(|b| input.image.segment(b.address).is_some_and(|s| s.writable) && !b.options.is_empty())
        .collect();
    if broken.is_empty() && values.is_empty() {
        return Err(Error::Usage(format!(
            "nothing the object graph found can be repaired by writing memory ({} finding(s); `memzinc check` lists them)",
            graph.findings.len()
        )));
    }

    // The facts.
    let mut dzn = String::new();
    let n_types = types_ix.len() + 1;
    let _ = writeln!(dzn, "P = {};\nC = {};\nT = {n_types};", broken.len(), candidates.len());
    let _ = writeln!(dzn, "slot_type = {};", list(broken.iter().map(|b| b.ty + 1)));
    let _ = writeln!(dzn, "candidate_type = {};", list(candidates.iter().map(|c| c.1 + 1)));
    let _ = writeln!(dzn, "weight = {};", list(weight.iter()));
    let _ = writeln!(
        dzn,
        "F = {};\nforbidden_pointer = {};\nforbidden_candidate = {};",
        forbidden.len(),
        list(forbidden.iter().map(|f| f.0 + 1)),
        list(forbidden.iter().map(|f| f.1 + 1))
    );
    let bytes_of = |v: u64| (0..8).map(move |i| (v >> (8 * i)) & 0xff);
    let _ = writeln!(
        dzn,
        "old_byte = array2d(1..{}, 1..8, {});",
        broken.len(),
        list(broken.iter().flat_map(|b| bytes_of(graph.edges[b.edge].value)))
    );
    let addresses: Vec<u64> = std::iter::once(0)
        .chain(candidates.iter().map(|c| graph.objects[c.0 as usize].address))
        .collect();
    let _ = writeln!(
        dzn,
        "new_byte = array2d(0..{}, 1..8, {});",
        candidates.len(),
        list(addresses.iter().flat_map(|&a| bytes_of(a)))
    );
    let options: Vec<(usize, u64, u32)> = values
        .iter()
        .enumerate()
        .flat_map(|(v, b)| {
            b.options
                .iter()
                .map(move |&x| (v, x, bytes_changed(x, b.value, b.size)))
        })
        .collect();
    let _ = writeln!(
        dzn,
        "V = {};\nK = {};\noption_of = {};\noption_cost = {};",
        values.len(),
        options.len(),
        list(options.iter().map(|o| o.0 + 1)),
        list(options.iter().map(|o| o.2))
    );
    crate::base::write_file_atomically(work, dzn.as_bytes())?;
    let run = solver::run(opts, &models_dir.join("graph_repair.mzn"), &[work])?;
    run.answered("the object graph's repairs", opts.time_limit)?;
    let chosen = run
        .ints("target")
        .filter(|t| t.len() == broken.len())
        .ok_or_else(|| Error::MiniZinc(format!("the answer has no `target` per broken pointer: {}", run.output)))?;
    let picked = run
        .ints("value")
        .filter(|v| v.len() == values.len())
        .ok_or_else(|| Error::MiniZinc(format!("the answer has no `value` per invalid value: {}", run.output)))?;

    // The writes, each checked against what the model was told.
    let mut writes = Vec::new();
    let mut used = HashSet::new();
    for (b, &c) in broken.iter().zip(&chosen) {
        let e = &graph.edges[b.edge];
        let c = usize::try_from(c)
            .ok()
            .filter(|&c| c <= candidates.len())
            .ok_or_else(|| Error::MiniZinc(format!("the answer names candidate {c}, which does not exist")))?;
        if c > 0 && (candidates[c - 1].1 != b.ty || !used.insert(c)) {
            return Err(Error::MiniZinc(format!(
                "the answer gives candidate {c} to a pointer of another type, or twice"
            )));
        }
        let new = addresses[c];
        let (root, path) = graph.field_path(e.from, e.field);
        writes.push(PlannedWrite {
            address: e.slot,
            old: e.value.to_le_bytes().to_vec(),
            new: new.to_le_bytes().to_vec(),
            field: format!("{root}{path}"),
            rule: format!(
                "{}: {:#x} → {}",
                e.landing.as_str(),
                e.value,
                match c {
                    0 => "NULL".to_string(),
                    _ => format!("the detached {} at {new:#x}", graph.type_name(candidates[c - 1].0)),
                }
            ),
        });
    }
    for (b, &k) in values.iter().zip(&picked) {
        let (_, x, _) = usize::try_from(k - 1)
            .ok()
            .and_then(|k| options.get(k))
            .copied()
            .filter(|o| b.options.contains(&o.1))
            .ok_or_else(|| Error::MiniZinc(format!("the answer picks value option {k}, which is not valid here")))?;
        let (root, path) = graph.field_path(b.object, b.field);
        writes.push(PlannedWrite {
            address: b.address,
            old: b.value.to_le_bytes()[..b.size as usize].to_vec(),
            new: x.to_le_bytes()[..b.size as usize].to_vec(),
            field: format!("{root}{path}"),
            rule: format!("invalid value {} → {x}", b.value),
        });
    }
    writes.retain(|w| w.old != w.new);
    for w in &writes {
        let now = input.image.bytes(w.address, w.old.len());
        if now != Some(&w.old[..]) {
            return Err(Error::Usage(format!(
                "{:#x}: the snapshot's bytes are not what the graph read",
                w.address
            )));
        }
    }

    // Re-walk the repaired graph: nothing broken where the plan writes, nothing new anywhere.
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
    let before: HashSet<(crate::reason::Rule, u64)> = graph.findings.iter().map(|f| (f.rule, f.address)).collect();
    let written: HashSet<u64> = writes.iter().map(|w| w.address).collect();
    if let Some(f) = after
        .findings
        .iter()
        .find(|f| written.contains(&f.address) || !before.contains(&(f.rule, f.address)))
    {
        return Err(Error::MiniZinc(format!(
            "the repaired graph still breaks a rule: {} {}",
            f.location(),
            f.detail
        )));
    }
    Plan::new(
        snap,
        target,
        opts.backend.name(),
        run.status == Status::Optimal,
        graph.findings.clone(),
        writes,
        Some(run.stats),
    )
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let mut s = String::from("[");
    for (i, x) in items.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// Whether `e` is one of its object's links to its own type (`next`, `left`, ...).
fn structural(g: &Graph<'_>, e: &super::Edge) -> bool {
    let from = &g.objects[e.from as usize];
    e.pointee == from.ty
        && g.layouts.types[from.ty as usize]
            .self_slots
            .contains(&(e.slot - from.address))
}

/// The detached live objects of each broken pointer's pointee type, as (object, model type):
/// at the start of a live chunk, and reached by no link of their own type (a type that links
/// to itself) or by nothing typed at all (another type).
fn detached(g: &Graph<'_>, types_ix: &HashMap<u32, usize>) -> Vec<(u32, usize)> {
    let mut reached_by_link = vec![false; g.objects.len()];
    let mut reached = vec![false; g.objects.len()];
    for e in &g.edges {
        if e.to == NONE || e.landing.is_invalid() {
            continue;
        }
        reached[e.to as usize] = true;
        if structural(g, e) {
            reached_by_link[e.to as usize] = true;
        }
    }
    let mut out = Vec::new();
    for (i, o) in g.objects.iter().enumerate() {
        let Some(&ty) = types_ix.get(&o.ty) else { continue };
        if o.chunk == NONE || g.heap.chunks[o.chunk as usize].mem() != o.address {
            continue;
        }
        let links_to_itself = !g.layouts.types[o.ty as usize].self_slots.is_empty();
        let free = if links_to_itself {
            !reached_by_link[i]
        } else {
            !reached[i]
        };
        if free {
            out.push((i as u32, ty));
        }
    }
    out
}

/// The (broken pointer, candidate) pairs that would close a cycle — the pointer is a link of
/// its type and its object is reachable from the candidate through such links — and each
/// candidate's weight: the objects its links hold (what stays detached if it is not chosen).
fn cycles(g: &Graph<'_>, broken: &[Broken], candidates: &[(u32, usize)]) -> Result<(Vec<Pair>, Vec<usize>)> {
    let mut links: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in &g.edges {
        if e.to != NONE && structural(g, e) {
            links.entry(e.from).or_default().push(e.to);
        }
    }
    let mut owners: HashMap<u32, Vec<usize>> = HashMap::new();
    for (p, b) in broken.iter().enumerate() {
        let e = &g.edges[b.edge];
        if structural(g, e) {
            owners.entry(e.from).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut weight = Vec::with_capacity(candidates.len());
    let mut steps = 0usize;
    for (c, &(start, _)) in candidates.iter().enumerate() {
        let mut seen = HashSet::from([start]);
        let mut stack = vec![start];
        while let Some(o) = stack.pop() {
            steps += 1;
            if steps > MAX_CYCLE_STEPS {
                return Err(Error::Usage(format!(
                    "the detached structures are too large to search for cycles ({MAX_CYCLE_STEPS} steps)"
                )));
            }
            for &p in owners.get(&o).map(Vec::as_slice).unwrap_or(&[]) {
                out.push((p, c));
            }
            for &next in links.get(&o).map(Vec::as_slice).unwrap_or(&[]) {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        weight.push(seen.len());
    }
    Ok((out, weight))
}
