//! `plan` with no spec and no rules: the repair of what the object graph found, decided by
//! MiniZinc (`models/graph_repair.mzn`). A broken pointer becomes NULL or the start of a
//! *detached* live object of its pointee's type — one that no pointer of the structure it
//! belonged to reaches any more (for a type that links to itself, no incoming `next`/`left`/…,
//! and not a head; for another type, nothing typed at all) — each used at most once, never
//! closing a ring of repairs. An invalid enum or bool gets a valid value. Lexicographic: fewest
//! objects left detached (a candidate weighs the objects its links hold: the rest of a list
//! outweighs a stray chunk that merely looks like a node), then fewest bytes, then most
//! pointers given back the node their old value names but for one byte. The solver sees
//! classes of interchangeable members, not pairs ([`Transport`]). Rust re-walks the repaired
//! graph before the answer becomes a plan.

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
/// Arcs (pointer class, candidate class) given to the solver at most.
const MAX_ARCS: usize = 2_000_000;
/// One-byte matches kept per broken pointer at most.
const MAX_NEAR: usize = 8;

/// (broken pointer, candidate), by index.
type Pair = (usize, usize);

/// A broken pointer the plan may write.
struct Broken {
    edge: usize,
    /// Index into the pointee types (0: untyped, only NULL).
    ty: usize,
    /// A Rust reference or `Box`: NULL is no repair.
    non_null: bool,
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
        broken.push(Broken {
            edge: i,
            ty,
            non_null: e.non_null,
        });
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

    let near = near_pairs(&graph, &broken, &candidates, &forbidden);
    let model = Transport::new(&broken, &candidates, &weight, &forbidden, &near)?;

    // The facts.
    let mut dzn = String::new();
    model.facts(&mut dzn);
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
    let take = run
        .ints("take")
        .filter(|t| t.len() == model.arcs.len())
        .ok_or_else(|| Error::MiniZinc(format!("the answer has no `take` per arc: {}", run.output)))?;
    let picked = run
        .ints("value")
        .filter(|v| v.len() == values.len())
        .ok_or_else(|| Error::MiniZinc(format!("the answer has no `value` per invalid value: {}", run.output)))?;

    // The writes, each checked against what the model was told.
    let chosen = model.assign(&take, broken.len())?;
    let addresses: Vec<u64> = candidates.iter().map(|c| graph.objects[c.0 as usize].address).collect();
    let mut writes = Vec::new();
    for (b, c) in broken.iter().zip(&chosen) {
        let e = &graph.edges[b.edge];
        if b.non_null && c.is_none() {
            return Err(Error::MiniZinc(format!(
                "the answer makes the Rust reference at {:#x} NULL",
                e.slot
            )));
        }
        let new = c.map_or(0, |c| addresses[c]);
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
                    None => "NULL".to_string(),
                    Some(c) => format!("the detached {} at {new:#x}", graph.type_name(candidates[*c].0)),
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

/// The detached live objects of each broken pointer's pointee type, as (object, model type):
/// at the start of a live chunk, and reached by no link of their own type (a type that links
/// to itself) or by nothing typed at all (another type).
///
/// A head is not detached: in a healthy list only the head has no incoming `next`. A pointer
/// *family* — one global's pointers of one field (`g_heads[]`), or one field of every object
/// of a type (`struct list`'s `head`) — names heads when every object it reaches lacks an
/// incoming link of its own type; a family that also reaches nodes with one (an index array,
/// a `tail` or cursor pointer) names no heads, so a node that lost its `next` stays detached
/// even while an index still points at it.
fn detached(g: &Graph<'_>, types_ix: &HashMap<u32, usize>) -> Vec<(u32, usize)> {
    let mut reached_by_link = vec![false; g.objects.len()];
    let mut reached = vec![false; g.objects.len()];
    for e in &g.edges {
        if e.to == NONE || e.landing.is_invalid() {
            continue;
        }
        reached[e.to as usize] = true;
        if g.is_link(e) {
            reached_by_link[e.to as usize] = true;
        }
    }

    // Families of the other pointers into objects of the types the repair needs.
    let mut field_family: HashMap<u32, u32> = HashMap::new();
    let mut family_names: HashMap<String, u32> = HashMap::new();
    let mut families: HashMap<(bool, u32, u32), (bool, Vec<u32>)> = HashMap::new();
    for e in &g.edges {
        if e.to == NONE || e.landing.is_invalid() || g.is_link(e) {
            continue;
        }
        let to = e.to as usize;
        if !types_ix.contains_key(&g.objects[to].ty) {
            continue;
        }
        let field = *field_family.entry(e.field).or_insert_with(|| {
            let n = family_names.len() as u32;
            *family_names
                .entry(without_indices(&g.layouts.fields[e.field as usize]))
                .or_insert(n)
        });
        let from = &g.objects[e.from as usize];
        let global = from.parent == NONE && from.chunk == NONE;
        let key = (global, if global { e.from } else { from.ty }, field);
        let f = families.entry(key).or_insert((true, Vec::new()));
        f.0 &= !reached_by_link[to];
        f.1.push(e.to);
    }
    let mut head = vec![false; g.objects.len()];
    for (names_heads, reached) in families.values() {
        if *names_heads {
            for &o in reached {
                head[o as usize] = true;
            }
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
            !reached_by_link[i] && !head[i]
        } else {
            !reached[i]
        };
        if free {
            out.push((i as u32, ty));
        }
    }
    out
}

/// A field path with its array indices dropped (`g_heads[17]` → `g_heads[]`).
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for ch in path.chars() {
        match ch {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(ch),
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
        if e.to != NONE && g.is_link(e) {
            links.entry(e.from).or_default().push(e.to);
        }
    }
    let mut owners: HashMap<u32, Vec<usize>> = HashMap::new();
    for (p, b) in broken.iter().enumerate() {
        let e = &g.edges[b.edge];
        if g.is_link(e) {
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

/// The (broken pointer, candidate) pairs whose old value is the candidate's address but for one
/// byte: a flipped bit or an overwritten byte, most likely the object the pointer named.
fn near_pairs(g: &Graph<'_>, broken: &[Broken], candidates: &[(u32, usize)], forbidden: &[Pair]) -> Vec<Pair> {
    let mut by_masked: HashMap<(usize, u32, u64), Vec<usize>> = HashMap::new();
    for (c, &(o, ty)) in candidates.iter().enumerate() {
        let a = g.objects[o as usize].address;
        for b in 0..8u32 {
            by_masked.entry((ty, b, a & !(0xff << (8 * b)))).or_default().push(c);
        }
    }
    let forbidden: HashSet<Pair> = forbidden.iter().copied().collect();
    let mut out = Vec::new();
    for (p, bp) in broken.iter().enumerate() {
        if bp.ty == 0 {
            continue;
        }
        let old = g.edges[bp.edge].value;
        let mut found: Vec<usize> = (0..8u32)
            .filter_map(|b| by_masked.get(&(bp.ty, b, old & !(0xff << (8 * b)))))
            .flatten()
            .copied()
            .filter(|&c| !forbidden.contains(&(p, c)))
            .collect();
        found.sort_unstable();
        found.dedup();
        out.extend(found.into_iter().take(MAX_NEAR).map(|c| (p, c)));
    }
    out
}

/// A pointer class may take a candidate class; a one-byte match names its two members.
struct TransportArc {
    from: usize,
    to: usize,
    near: Option<Pair>,
}

/// The repair as a transportation problem over classes of interchangeable members
/// (`models/graph_repair.mzn`): the data grows with what tells members apart.
struct Transport {
    /// Members of each pointer class (indices into the broken pointers), and whether NULL is
    /// barred.
    pointer_classes: Vec<(Vec<usize>, bool)>,
    /// Members of each candidate class (indices into the candidates), and their weight.
    candidate_classes: Vec<(Vec<usize>, usize)>,
    arcs: Vec<TransportArc>,
    /// Rank index of each candidate class that is a holder of broken pointers.
    holder: Vec<Option<usize>>,
    holders: usize,
    /// The holders (rank indices) of each pointer class: empty for one reached from a global.
    held_by: Vec<Vec<usize>>,
}

impl Transport {
    fn new(
        broken: &[Broken],
        candidates: &[(u32, usize)],
        weight: &[usize],
        forbidden: &[Pair],
        near: &[Pair],
    ) -> Result<Transport> {
        // Who must be a class of one: holders and what they hold (anchoring and ranks are
        // theirs alone). A one-byte match is an arc of its own between two members instead.
        let mut single_p = vec![false; broken.len()];
        let mut single_c = vec![false; candidates.len()];
        for &(p, c) in forbidden {
            single_p[p] = true;
            single_c[c] = true;
        }
        let mut pointer_classes: Vec<(Vec<usize>, bool)> = Vec::new();
        let mut p_class = vec![0usize; broken.len()];
        let mut p_key: HashMap<(usize, bool), usize> = HashMap::new();
        for (p, b) in broken.iter().enumerate() {
            let non_null = b.non_null && b.ty != 0;
            let k = if single_p[p] {
                pointer_classes.push((vec![], non_null));
                pointer_classes.len() - 1
            } else {
                *p_key.entry((b.ty, non_null)).or_insert_with(|| {
                    pointer_classes.push((vec![], non_null));
                    pointer_classes.len() - 1
                })
            };
            pointer_classes[k].0.push(p);
            p_class[p] = k;
        }
        let mut candidate_classes: Vec<(Vec<usize>, usize)> = Vec::new();
        let mut c_ty = Vec::new();
        let mut c_class = vec![0usize; candidates.len()];
        let mut c_key: HashMap<(usize, usize), usize> = HashMap::new();
        for (c, &(_, ty)) in candidates.iter().enumerate() {
            let k = if single_c[c] {
                candidate_classes.push((vec![], weight[c]));
                c_ty.push(ty);
                candidate_classes.len() - 1
            } else {
                *c_key.entry((ty, weight[c])).or_insert_with(|| {
                    candidate_classes.push((vec![], weight[c]));
                    c_ty.push(ty);
                    candidate_classes.len() - 1
                })
            };
            candidate_classes[k].0.push(c);
            c_class[c] = k;
        }

        // A NULL-barred class needs a candidate of its type for every member.
        let mut supply: HashMap<usize, usize> = HashMap::new();
        for &(_, ty) in candidates {
            *supply.entry(ty).or_default() += 1;
        }
        let mut demand: HashMap<usize, usize> = HashMap::new();
        for (members, non_null) in &pointer_classes {
            if *non_null {
                let ty = broken[members[0]].ty;
                *demand.entry(ty).or_default() += members.len();
            }
        }
        for (ty, n) in demand {
            let have = supply.get(&ty).copied().unwrap_or(0);
            if n > have {
                return Err(Error::Usage(format!(
                    "{n} broken Rust reference(s) may not become NULL, and only {have} detached object(s) of their type can take their place"
                )));
            }
        }

        // Arcs: same type, not closing a cycle by themselves.
        let forbidden_classes: HashSet<(usize, usize)> =
            forbidden.iter().map(|&(p, c)| (p_class[p], c_class[c])).collect();
        let mut by_type: HashMap<usize, Vec<usize>> = HashMap::new();
        for (j, &ty) in c_ty.iter().enumerate() {
            by_type.entry(ty).or_default().push(j);
        }
        let mut arcs = Vec::new();
        for (i, (members, _)) in pointer_classes.iter().enumerate() {
            let ty = broken[members[0]].ty;
            if ty == 0 {
                continue;
            }
            for &j in by_type.get(&ty).map(Vec::as_slice).unwrap_or(&[]) {
                if forbidden_classes.contains(&(i, j)) {
                    continue;
                }
                arcs.push(TransportArc {
                    from: i,
                    to: j,
                    near: None,
                });
                if arcs.len() > MAX_ARCS {
                    return Err(Error::Usage(format!(
                        "the repair has too many distinct broken pointers and detached objects to plan (over {MAX_ARCS} pairs of classes)"
                    )));
                }
            }
        }
        // One-byte matches: a pointer and a candidate by name, each in its class as before (a
        // class's other members stay interchangeable).
        for &(p, c) in near {
            arcs.push(TransportArc {
                from: p_class[p],
                to: c_class[c],
                near: Some((p, c)),
            });
        }

        // Holders (candidates whose links hold broken pointers) are classes of one, and so are
        // the pointers they hold.
        let mut holder = vec![None; candidate_classes.len()];
        let mut holders = 0;
        let mut held_by = vec![Vec::new(); pointer_classes.len()];
        for &(p, c) in forbidden {
            let j = c_class[c];
            let r = *holder[j].get_or_insert_with(|| {
                holders += 1;
                holders - 1
            });
            held_by[p_class[p]].push(r);
        }
        Ok(Transport {
            pointer_classes,
            candidate_classes,
            arcs,
            holder,
            holders,
            held_by,
        })
    }

    fn facts(&self, dzn: &mut String) {
        let _ = writeln!(
            dzn,
            "PC = {};\nCC = {};",
            self.pointer_classes.len(),
            self.candidate_classes.len()
        );
        let _ = writeln!(
            dzn,
            "pointers_in = {};",
            list(self.pointer_classes.iter().map(|c| c.0.len()))
        );
        let _ = writeln!(
            dzn,
            "non_null = {};",
            list(self.pointer_classes.iter().map(|c| u8::from(c.1)))
        );
        let _ = writeln!(
            dzn,
            "candidates_in = {};",
            list(self.candidate_classes.iter().map(|c| c.0.len()))
        );
        let _ = writeln!(dzn, "weight = {};", list(self.candidate_classes.iter().map(|c| c.1)));
        let _ = writeln!(dzn, "A = {};", self.arcs.len());
        let _ = writeln!(dzn, "arc_from = {};", list(self.arcs.iter().map(|a| a.from + 1)));
        let _ = writeln!(dzn, "arc_to = {};", list(self.arcs.iter().map(|a| a.to + 1)));
        let _ = writeln!(
            dzn,
            "arc_near = {};",
            list(self.arcs.iter().map(|a| u8::from(a.near.is_some())))
        );
        let mut from = vec![Vec::new(); self.pointer_classes.len()];
        let mut to = vec![Vec::new(); self.candidate_classes.len()];
        let mut near_p: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut near_c: HashMap<usize, Vec<usize>> = HashMap::new();
        for (a, arc) in self.arcs.iter().enumerate() {
            from[arc.from].push(a + 1);
            to[arc.to].push(a + 1);
            if let Some((p, c)) = arc.near {
                near_p.entry(p).or_default().push(a + 1);
                near_c.entry(c).or_default().push(a + 1);
            }
        }
        // Members with two or more one-byte matches: one of them at most.
        let shared = |m: HashMap<usize, Vec<usize>>| {
            let mut v: Vec<Vec<usize>> = m.into_values().filter(|a| a.len() > 1).collect();
            v.sort();
            v
        };
        let (near_p, near_c) = (shared(near_p), shared(near_c));
        let sets = |v: &[Vec<usize>]| {
            let mut s = String::from("[");
            for (k, set) in v.iter().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                s.push('{');
                for (n, x) in set.iter().enumerate() {
                    if n > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, "{x}");
                }
                s.push('}');
            }
            s.push(']');
            s
        };
        let _ = writeln!(dzn, "arcs_from = {};\narcs_to = {};", sets(&from), sets(&to));
        let _ = writeln!(dzn, "R = {};", self.holders);
        let _ = writeln!(
            dzn,
            "holder = {};",
            list(self.holder.iter().map(|h| h.map_or(0, |h| h + 1)))
        );
        let held: Vec<Vec<usize>> = self.held_by.iter().map(|h| h.iter().map(|r| r + 1).collect()).collect();
        let _ = writeln!(dzn, "held_by = {};", sets(&held));
        let _ = writeln!(
            dzn,
            "NP = {};\nnear_by_pointer = {};\nNC = {};\nnear_by_candidate = {};",
            near_p.len(),
            sets(&near_p),
            near_c.len(),
            sets(&near_c)
        );
    }

    /// The candidate each broken pointer takes (None: NULL), from the solver's `take` per arc:
    /// the members of a class are handed out in order.
    fn assign(&self, take: &[i64], pointers: usize) -> Result<Vec<Option<usize>>> {
        let mut out = vec![None; pointers];
        let counts: Vec<usize> = take
            .iter()
            .map(|&n| {
                usize::try_from(n).map_err(|_| Error::MiniZinc(format!("the answer takes {n} candidates along an arc")))
            })
            .collect::<Result<_>>()?;
        // One-byte matches first: they name their members.
        let mut used_c = HashSet::new();
        for (arc, &n) in self.arcs.iter().zip(&counts) {
            if let (Some((p, c)), 1) = (arc.near, n) {
                if out[p].is_some() || !used_c.insert(c) {
                    return Err(Error::MiniZinc(
                        "the answer gives a pointer or a candidate two one-byte matches".into(),
                    ));
                }
                out[p] = Some(c);
            } else if arc.near.is_some() && n > 1 {
                return Err(Error::MiniZinc("the answer takes a one-byte match twice".into()));
            }
        }
        // Then each class's other members, in order.
        let mut free_p: Vec<std::vec::IntoIter<usize>> = self
            .pointer_classes
            .iter()
            .map(|(m, _)| {
                m.iter()
                    .copied()
                    .filter(|&p| out[p].is_none())
                    .collect::<Vec<_>>()
                    .into_iter()
            })
            .collect();
        let mut free_c: Vec<std::vec::IntoIter<usize>> = self
            .candidate_classes
            .iter()
            .map(|(m, _)| {
                m.iter()
                    .copied()
                    .filter(|c| !used_c.contains(c))
                    .collect::<Vec<_>>()
                    .into_iter()
            })
            .collect();
        for (arc, &n) in self.arcs.iter().zip(&counts) {
            if arc.near.is_some() {
                continue;
            }
            for _ in 0..n {
                let (Some(p), Some(c)) = (free_p[arc.from].next(), free_c[arc.to].next()) else {
                    return Err(Error::MiniZinc(
                        "the answer gives a class more candidates or pointers than it has".into(),
                    ));
                };
                out[p] = Some(c);
            }
        }
        Ok(out)
    }
}
