//! `memzinc layout`: the field order of each struct that wastes least space, from DWARF, with
//! MiniZinc (`models/layout.mzn`, Gecode) deciding the offsets.
//!
//! Rust does the fact-finding: each struct's members in memory order with size and natural
//! alignment, and whether natural alignment explains the compiler's layout at all (packed
//! structs, explicit alignment, bit fields and zero-sized members are reported as skipped, not
//! guessed). Structs that already reach the lower bound (the members' sizes summed and rounded
//! up to the struct's alignment) and have no hot fields need no solve. The rest are solved once
//! per distinct *shape* — the multiset of (size, alignment, hot) — since identical shapes have
//! identical answers; the solver sees only sizes, alignments and flags, never names.
//!
//! Hot fields (`--hot a,b`) must share one cache line (64 bytes), assuming the object starts on
//! a line boundary; among the smallest layouts the earliest line is preferred.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::solver::{self, SolverOptions, Status};
use crate::base::{Error, Result};
use crate::introspect::{DebugTypes, Encoding, Field, TypeId, TypeKind};

/// Cache line size the hot-field constraint uses.
pub const CACHE_LINE: u64 = 64;
const MAX_DEPTH: usize = 32;

/// One member of a struct, as the layout sees it: the [`Field`], its natural alignment, and
/// whether it is hot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    #[serde(flatten)]
    pub field: Field,
    pub align: u64,
    pub hot: bool,
}

/// A struct whose layout natural alignment explains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructInfo {
    pub name: String,
    pub size: u64,
    pub align: u64,
    /// In memory order (ascending offset).
    pub members: Vec<Member>,
}

/// A struct left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub name: String,
    pub why: String,
}

/// Holes between members and the padding at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waste {
    pub holes: u64,
    pub hole_bytes: u64,
    pub padding: u64,
}

/// How the suggestion was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decided {
    /// The current layout already reaches the lower bound; no solve needed.
    AlreadyMinimal,
    /// Gecode proved the suggestion optimal.
    Optimal,
    /// Gecode found it but did not prove it optimal within the limit.
    Feasible,
}

/// The answer for one struct.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StructReport {
    pub name: String,
    pub size: u64,
    pub align: u64,
    pub optimal_size: u64,
    pub saved: u64,
    /// The lower bound: sizes summed, rounded up to the alignment.
    pub lower_bound: u64,
    pub decided: Decided,
    /// Index of the distinct shape this struct was solved as (shared answers share it).
    pub shape: Option<usize>,
    pub current: Vec<Member>,
    pub current_waste: Waste,
    /// The suggested members in memory order with their new offsets.
    pub suggested: Vec<Member>,
    pub suggested_waste: Waste,
    /// The cache line holding the hot fields, if any are hot.
    pub hot_line: Option<u64>,
}

/// Everything `memzinc layout` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayoutReport {
    pub structs: Vec<StructReport>,
    pub skipped: Vec<Skipped>,
    /// Distinct shapes sent to the solver, and the solver processes that ran.
    pub distinct_shapes: usize,
    pub solver_runs: usize,
    pub solve_ms: u64,
}

fn round_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The natural alignment of a type on x86_64 (the System V ABI): scalars their size (up to
/// 16), pointers 8, arrays their element's, aggregates their largest member's. `None` when
/// DWARF does not say enough (complex floats, Rust enums, unknown sizes).
pub fn align_of(types: &DebugTypes, id: TypeId) -> Option<u64> {
    align_depth(types, id, 0)
}

fn align_depth(types: &DebugTypes, id: TypeId, depth: usize) -> Option<u64> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (rid, t) = types.resolve(id)?;
    match &t.kind {
        TypeKind::Base { encoding } => {
            let size = t.size?;
            let scalar = !matches!(encoding, Encoding::Other);
            (scalar && size.is_power_of_two() && size <= 16).then_some(size)
        }
        TypeKind::Pointer { .. } => Some(types.size_of(rid)?.max(1)),
        TypeKind::Enum { underlying, .. } => match underlying {
            Some(u) => align_depth(types, *u, depth + 1),
            None => t.size.filter(|s| s.is_power_of_two() && *s <= 8),
        },
        TypeKind::Array { element, .. } => align_depth(types, (*element)?, depth + 1),
        TypeKind::Struct {
            members,
            variant_part: None,
        }
        | TypeKind::Union { members } => {
            let mut a = 1;
            for m in members {
                a = a.max(align_depth(types, m.type_id?, depth + 1)?);
            }
            Some(a)
        }
        _ => None,
    }
}

/// The struct `id` with members in memory order, if natural alignment explains its layout.
pub fn struct_info(types: &DebugTypes, id: TypeId) -> std::result::Result<StructInfo, String> {
    let (_, t) = types.resolve(id).ok_or("unknown type")?;
    let name = types.type_name(Some(id));
    let TypeKind::Struct {
        members,
        variant_part: None,
    } = &t.kind
    else {
        return Err("not a plain struct".into());
    };
    let size = t.size.ok_or("no size (a declaration)")?;
    let mut out = Vec::with_capacity(members.len());
    for (k, m) in members.iter().enumerate() {
        let mname = m.name.clone().unwrap_or_else(|| format!("<anonymous #{k}>"));
        if m.bit_size.is_some() {
            return Err(format!("bit field {mname}"));
        }
        let offset = m.offset.ok_or_else(|| format!("{mname} has no offset"))?;
        let ty = m.type_id.ok_or_else(|| format!("{mname} has no type"))?;
        let msize = types.size_of(ty).ok_or_else(|| format!("{mname}: unknown size"))?;
        if msize == 0 {
            return Err(format!("zero-sized member {mname}"));
        }
        let align = align_of(types, ty).ok_or_else(|| format!("{mname}: alignment unknown"))?;
        out.push(Member {
            field: Field {
                name: mname,
                type_name: types.type_name(Some(ty)),
                offset,
                size: msize,
                signed: false,
            },
            align,
            hot: false,
        });
    }
    if out.is_empty() {
        return Err("no members".into());
    }
    out.sort_by_key(|m| m.field.offset);
    let align = out.iter().map(|m| m.align).max().unwrap_or(1);
    // Natural alignment must reproduce every offset and the size.
    let mut at = 0;
    for m in &out {
        if round_up(at, m.align) != m.field.offset {
            return Err(format!(
                "{} at offset {} is not where natural alignment puts it (packed or explicitly aligned)",
                m.field.name, m.field.offset
            ));
        }
        at = m.field.offset + m.field.size;
    }
    if round_up(at, align) != size {
        return Err(format!(
            "size {size} is not the natural {} (explicitly aligned or padded)",
            round_up(at, align)
        ));
    }
    Ok(StructInfo {
        name,
        size,
        align,
        members: out,
    })
}

/// Every named struct with a definition, deduplicated (one per name and layout), with the ones
/// natural alignment cannot explain in the second list.
pub fn structs(types: &DebugTypes) -> (Vec<StructInfo>, Vec<Skipped>) {
    let mut seen: BTreeMap<(String, u64), ()> = BTreeMap::new();
    let mut ok: Vec<StructInfo> = Vec::new();
    let mut skipped = Vec::new();
    for (&id, t) in &types.types {
        // Zero-sized structs (Rust's PhantomData, unit structs) have nothing to lay out.
        let (TypeKind::Struct { variant_part: None, .. }, Some(name), Some(1..)) = (&t.kind, &t.name, t.size) else {
            continue;
        };
        match struct_info(types, id) {
            Ok(info) => {
                // Same name, same member list: one struct seen from many units.
                let key = (name.clone(), fingerprint(&info));
                if seen.insert(key, ()).is_none() {
                    ok.push(info);
                }
            }
            Err(why) => {
                if !skipped.iter().any(|s: &Skipped| &s.name == name && s.why == why) {
                    skipped.push(Skipped {
                        name: name.clone(),
                        why,
                    });
                }
            }
        }
    }
    ok.sort_by(|a, b| a.name.cmp(&b.name));
    (ok, skipped)
}

fn fingerprint(s: &StructInfo) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in &s.members {
        (&m.field.name, m.field.offset, m.field.size, m.align).hash(&mut h);
    }
    s.size.hash(&mut h);
    h.finish()
}

/// Holes and tail padding of members laid out in the given (memory) order.
pub fn waste(members: &[Member], size: u64) -> Waste {
    let mut w = Waste {
        holes: 0,
        hole_bytes: 0,
        padding: 0,
    };
    let mut end = 0;
    for m in members {
        if m.field.offset > end {
            w.holes += 1;
            w.hole_bytes += m.field.offset - end;
        }
        end = end.max(m.field.offset + m.field.size);
    }
    w.padding = size.saturating_sub(end);
    w
}

/// The smallest size any order can have: sizes summed, rounded up to the alignment.
pub fn lower_bound(info: &StructInfo) -> u64 {
    round_up(info.members.iter().map(|m| m.field.size).sum(), info.align)
}

/// The members in the order the model sees them: hot first, then by decreasing alignment and
/// size; ties keep memory order. Returns indices into `info.members`.
fn model_order(info: &StructInfo) -> Vec<usize> {
    let mut order: Vec<usize> = (0..info.members.len()).collect();
    order.sort_by_key(|&i| {
        let m = &info.members[i];
        (
            !m.hot,
            std::cmp::Reverse(m.align),
            std::cmp::Reverse(m.field.size),
            m.field.offset,
        )
    });
    order
}

/// What the solver sees of a struct: no names. Equal shapes have equal answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Shape {
    fields: Vec<(u64, u64, bool)>,
    align: u64,
    min_size: u64,
    max_size: u64,
}

/// The MiniZinc data for `models/layout.mzn`.
fn shape_dzn(s: &Shape) -> String {
    let list = |f: &dyn Fn(&(u64, u64, bool)) -> String| s.fields.iter().map(f).collect::<Vec<_>>().join(", ");
    format!(
        "n = {};\nsize = [{}];\nalign = [{}];\nhot = [{}];\nstruct_align = {};\nline = {CACHE_LINE};\nmin_size = {};\nmax_size = {};\n",
        s.fields.len(),
        list(&|f| f.0.to_string()),
        list(&|f| f.1.to_string()),
        list(&|f| f.2.to_string()),
        s.align,
        s.min_size,
        s.max_size
    )
}

/// The solver's answer for one shape.
#[derive(Clone, Debug)]
struct ShapeAnswer {
    offsets: Vec<u64>,
    size: u64,
    hot_line: u64,
    optimal: bool,
}

/// Options for [`reorganize`].
#[derive(Clone, Debug)]
pub struct LayoutOptions {
    pub solver: SolverOptions,
    pub model: PathBuf,
    /// Member names that must share a cache line, in every struct that has them.
    pub hot: Vec<String>,
    /// Only these structs (by name); all when empty.
    pub only: Vec<String>,
    /// Report structs that are already minimal too.
    pub all: bool,
}

impl LayoutOptions {
    pub fn new(models_dir: &Path) -> LayoutOptions {
        LayoutOptions {
            solver: SolverOptions {
                time_limit: std::time::Duration::from_secs(10),
                ..Default::default()
            },
            model: models_dir.join("layout.mzn"),
            hot: Vec::new(),
            only: Vec::new(),
            all: false,
        }
    }
}

/// Suggests the best field order for every selected struct of `types`.
pub fn reorganize(types: &DebugTypes, opts: &LayoutOptions) -> Result<LayoutReport> {
    let (mut infos, mut skipped) = structs(types);
    if !opts.only.is_empty() {
        for want in &opts.only {
            if !infos.iter().any(|s| &s.name == want) {
                let why = skipped
                    .iter()
                    .find(|s| &s.name == want)
                    .map(|s| s.why.clone())
                    .unwrap_or_else(|| "no struct of that name in the debug info".into());
                return Err(Error::Layout {
                    object: want.clone(),
                    why,
                });
            }
        }
        infos.retain(|s| opts.only.contains(&s.name));
        skipped.retain(|s| opts.only.contains(&s.name));
    }
    reorganize_structs(infos, skipped, opts)
}

/// [`reorganize`] for structs already read (or made up: the tests' random structs).
pub fn reorganize_structs(
    mut infos: Vec<StructInfo>,
    mut skipped: Vec<Skipped>,
    opts: &LayoutOptions,
) -> Result<LayoutReport> {
    for h in &opts.hot {
        if !infos.iter().any(|s| s.members.iter().any(|m| &m.field.name == h)) {
            return Err(Error::Layout {
                object: h.clone(),
                why: "--hot names a member no selected struct has".into(),
            });
        }
    }
    for info in &mut infos {
        for m in &mut info.members {
            m.hot = opts.hot.contains(&m.field.name);
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("memzinc-layout-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut answers: HashMap<Shape, (usize, ShapeAnswer)> = HashMap::new();
    let mut solver_runs = 0;
    let mut solve_ms = 0;
    let mut reports = Vec::new();
    for info in infos {
        let lb = lower_bound(&info);
        let any_hot = info.members.iter().any(|m| m.hot);
        let current_waste = waste(&info.members, info.size);
        if info.size == lb && !any_hot {
            if opts.all {
                reports.push(StructReport {
                    name: info.name.clone(),
                    size: info.size,
                    align: info.align,
                    optimal_size: info.size,
                    saved: 0,
                    lower_bound: lb,
                    decided: Decided::AlreadyMinimal,
                    shape: None,
                    current: info.members.clone(),
                    current_waste: current_waste.clone(),
                    suggested: info.members.clone(),
                    suggested_waste: current_waste,
                    hot_line: None,
                });
            }
            continue;
        }
        let hot_bytes: u64 = info.members.iter().filter(|m| m.hot).map(|m| m.field.size).sum();
        if hot_bytes > CACHE_LINE {
            skipped.push(Skipped {
                name: info.name.clone(),
                why: format!("its hot fields take {hot_bytes} bytes, more than one {CACHE_LINE}-byte line"),
            });
            continue;
        }
        let order = model_order(&info);
        let shape = Shape {
            fields: order
                .iter()
                .map(|&i| {
                    let m = &info.members[i];
                    (m.field.size, m.align, m.hot)
                })
                .collect(),
            align: info.align,
            min_size: lb,
            // Never worse than now; hot fields may need up to a line more.
            max_size: if any_hot { info.size + CACHE_LINE } else { info.size },
        };
        let next_id = answers.len();
        let (shape_id, answer) = match answers.get(&shape) {
            Some((id, a)) => (*id, a.clone()),
            None => {
                let dzn = dir.path().join(format!("shape{next_id}.dzn"));
                std::fs::write(&dzn, shape_dzn(&shape)).map_err(|e| Error::io(&dzn, e))?;
                let t = Instant::now();
                let run = solver::run(&opts.solver, &opts.model, &[&dzn])?;
                solve_ms += t.elapsed().as_millis() as u64;
                solver_runs += 1;
                let answer = match run.status {
                    Status::Optimal | Status::Satisfied => ShapeAnswer {
                        offsets: run
                            .ints("offset")
                            .ok_or_else(|| Error::MiniZinc(format!("layout answer without offsets: {}", run.output)))?
                            .into_iter()
                            .map(|v| v as u64)
                            .collect(),
                        size: run.ints("total").and_then(|v| v.first().copied()).unwrap_or(0) as u64,
                        hot_line: run.ints("hot_line").and_then(|v| v.first().copied()).unwrap_or(0) as u64,
                        optimal: run.status == Status::Optimal,
                    },
                    Status::Unsatisfiable => {
                        skipped.push(Skipped {
                            name: info.name.clone(),
                            why: format!(
                                "no layout of at most {} bytes puts the hot fields in one line",
                                shape.max_size
                            ),
                        });
                        continue;
                    }
                    Status::Unknown => {
                        skipped.push(Skipped {
                            name: info.name.clone(),
                            why: format!("no layout found within {:?}", opts.solver.time_limit),
                        });
                        continue;
                    }
                };
                answers.insert(shape.clone(), (next_id, answer.clone()));
                (next_id, answer)
            }
        };
        let suggested = place(&info, &order, &answer).map_err(|why| Error::Layout {
            object: info.name.clone(),
            why,
        })?;
        let suggested_waste = waste(&suggested, answer.size);
        reports.push(StructReport {
            name: info.name.clone(),
            size: info.size,
            align: info.align,
            optimal_size: answer.size,
            saved: info.size.saturating_sub(answer.size),
            lower_bound: lb,
            decided: if answer.optimal {
                Decided::Optimal
            } else {
                Decided::Feasible
            },
            shape: Some(shape_id),
            current: info.members.clone(),
            current_waste,
            suggested,
            suggested_waste,
            hot_line: any_hot.then_some(answer.hot_line),
        });
    }
    Ok(LayoutReport {
        structs: reports,
        skipped,
        distinct_shapes: answers.len(),
        solver_runs,
        solve_ms,
    })
}

/// The members at the solver's offsets, in memory order — after checking the answer in Rust:
/// aligned, inside the size, disjoint, size a multiple of the alignment, hot fields in one line.
fn place(info: &StructInfo, order: &[usize], answer: &ShapeAnswer) -> std::result::Result<Vec<Member>, String> {
    if answer.offsets.len() != order.len() {
        return Err(format!("{} offsets for {} members", answer.offsets.len(), order.len()));
    }
    let mut placed: Vec<Member> = order
        .iter()
        .zip(&answer.offsets)
        .map(|(&i, &off)| {
            let mut m = info.members[i].clone();
            m.field.offset = off;
            m
        })
        .collect();
    placed.sort_by_key(|m| m.field.offset);
    if !answer.size.is_multiple_of(info.align) {
        return Err(format!("size {} is not a multiple of {}", answer.size, info.align));
    }
    let mut end = 0;
    for m in &placed {
        if !m.field.offset.is_multiple_of(m.align)
            || m.field.offset < end
            || m.field.offset + m.field.size > answer.size
        {
            return Err(format!(
                "the solver put {} at {} (misaligned or overlapping)",
                m.field.name, m.field.offset
            ));
        }
        end = m.field.offset + m.field.size;
        if m.hot && (m.field.offset / CACHE_LINE != answer.hot_line || (end - 1) / CACHE_LINE != answer.hot_line) {
            return Err(format!(
                "hot field {} is outside line {}",
                m.field.name, answer.hot_line
            ));
        }
    }
    Ok(placed)
}

/// pahole-style text of one struct: members with offset and size, holes, padding, totals.
pub fn render(name: &str, members: &[Member], size: u64) -> String {
    let mut out = format!("struct {name} {{\n");
    let mut end = 0;
    for m in members {
        if m.field.offset > end {
            out.push_str(&format!("\t/* XXX {} byte(s) hole */\n", m.field.offset - end));
        }
        // C declarator order: `char name[4]`, `char *name`.
        let decl = match m.field.type_name.find('[') {
            Some(i) => format!(
                "{} {}{};",
                &m.field.type_name[..i],
                m.field.name,
                &m.field.type_name[i..]
            ),
            None if m.field.type_name.ends_with(" *") => format!("{}{};", m.field.type_name, m.field.name),
            None => format!("{} {};", m.field.type_name, m.field.name),
        };
        out.push_str(&format!(
            "\t{decl:<40} /* {:>5} {:>5} */{}\n",
            m.field.offset,
            m.field.size,
            if m.hot { " /* hot */" } else { "" }
        ));
        end = end.max(m.field.offset + m.field.size);
    }
    let w = waste(members, size);
    out.push_str(&format!(
        "\n\t/* size: {size}, cachelines: {}, members: {} */\n",
        size.div_ceil(CACHE_LINE),
        members.len()
    ));
    out.push_str(&format!(
        "\t/* sum members: {}, holes: {}, sum holes: {} */\n",
        members.iter().map(|m| m.field.size).sum::<u64>(),
        w.holes,
        w.hole_bytes
    ));
    if w.padding > 0 {
        out.push_str(&format!("\t/* padding: {} */\n", w.padding));
    }
    out.push_str("};\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, offset: u64, size: u64, align: u64) -> Member {
        Member {
            field: Field {
                name: name.into(),
                type_name: "t".into(),
                offset,
                size,
                signed: false,
            },
            align,
            hot: false,
        }
    }

    #[test]
    fn waste_counts_holes_and_tail_padding() {
        let m = [member("a", 0, 1, 1), member("b", 8, 8, 8), member("c", 16, 4, 4)];
        assert_eq!(
            waste(&m, 24),
            Waste {
                holes: 1,
                hole_bytes: 7,
                padding: 4
            }
        );
        let info = StructInfo {
            name: "s".into(),
            size: 24,
            align: 8,
            members: m.to_vec(),
        };
        assert_eq!(lower_bound(&info), 16);
    }

    #[test]
    fn place_refuses_overlapping_misaligned_or_cold_hot_answers() {
        let mut info = StructInfo {
            name: "s".into(),
            size: 24,
            align: 8,
            members: vec![member("a", 0, 1, 1), member("b", 8, 8, 8), member("c", 16, 4, 4)],
        };
        let order = model_order(&info);
        assert_eq!(order, vec![1, 2, 0]);
        let good = ShapeAnswer {
            offsets: vec![0, 8, 12],
            size: 16,
            hot_line: 0,
            optimal: true,
        };
        let placed = place(&info, &order, &good).unwrap();
        assert_eq!(
            placed.iter().map(|m| m.field.name.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        for offsets in [vec![0, 6, 12], vec![0, 4, 12], vec![4, 8, 12], vec![0, 12, 16]] {
            let bad = ShapeAnswer {
                offsets,
                ..good.clone()
            };
            assert!(place(&info, &order, &bad).is_err(), "{:?}", bad.offsets);
        }
        info.members[0].hot = true;
        let order = model_order(&info);
        assert_eq!(order, vec![0, 1, 2]);
        let hot_outside = ShapeAnswer {
            offsets: vec![64, 0, 8],
            size: 72,
            hot_line: 0,
            optimal: true,
        };
        assert!(place(&info, &order, &hot_outside).is_err());
    }
}
