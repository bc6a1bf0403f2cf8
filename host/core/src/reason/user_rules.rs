//! User invariants: rules a target's own model file states (`models/targets/<name>.mzn`),
//! judged by `memzinc check` and repaired by `memzinc plan`.
//!
//! The host does the fact-finding: starting at the globals the model file names, it reads every
//! struct object they point to (heap nodes, buffers), transitively, with the binary's DWARF,
//! and gives MiniZinc each struct type's members as arrays over its objects
//! (`<struct>_<member>[k]`). A pointer to a struct becomes the number of the object it points
//! to (0 for NULL, -1 when it is invalid: unmapped, unreadable, misaligned — the same rule
//! `check` applies to globals), so no address reaches the solver. The model file states the
//! rules over those names (models/schema.md); `models/invariants_check.mzn` evaluates every
//! (rule, object) pair with the fields fixed, `models/invariants_repair.mzn` makes every field a
//! decision and finds the fewest bytes to write so that every rule holds and every pointer is
//! valid. Rust maps the decided values back to writes, and re-judges the repaired facts with
//! the check model before anything becomes a plan.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::field_order::align_of;
use super::finding::{judge_data_pointer, Finding, Rule};
use super::plan::{Plan, PlannedWrite};
use super::solver::{self, Backend, SolverOptions, Status};
use crate::base::{Error, Result};
use crate::describe::Snapshot;
use crate::introspect::{DebugTypes, Encoding, Shape, TypeId, TypeKind};

/// Objects followed from the roots at most (a larger graph is refused, not truncated).
pub const MAX_OBJECTS: usize = 100_000;
/// Values the repair model may choose lie within ±this (Gecode's integers are 32-bit).
const SOLVER_LIMIT: i64 = (1 << 30) - 1;

/// The model file for the target a snapshot was taken of: `models/targets/<exe name>.mzn`.
pub fn model_for(snapshot: &Snapshot, models_dir: &Path) -> Option<PathBuf> {
    let name = Path::new(&snapshot.meta.exe).file_name()?.to_str()?.to_string();
    let path = models_dir.join("targets").join(format!("{name}.mzn"));
    path.is_file().then_some(path)
}

/// What a member holds, as MiniZinc sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberKind {
    /// An integer, bool, char or C enum: its value, within `lo..=hi` (the type's range).
    Scalar { signed: bool, lo: i64, hi: i64 },
    /// A pointer to a struct type (an index into [`Facts::types`]), aligned to `align`.
    Pointer { to: usize, align: u64 },
}

/// A member of a struct type, nested structs flattened (`stats_hits` for `stats.hits`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFact {
    /// The C path inside the struct (`stats.hits`).
    pub path: String,
    /// The MiniZinc name: `<struct>_<path with _>`.
    pub mzn: String,
    pub offset: u64,
    pub size: u64,
    pub kind: MemberKind,
}

/// A struct type objects of which were found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructFact {
    pub name: String,
    #[serde(skip)]
    pub id: TypeId,
    pub size: u64,
    pub members: Vec<MemberFact>,
    /// Its objects, in [`Facts::objects`].
    pub objects: Vec<usize>,
}

/// One object: a global or something a followed pointer lands on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectFact {
    pub ty: usize,
    pub address: u64,
    /// How it is reached: the global's name, or the pointer expression (`QUEUE.head->next`).
    pub name: String,
    pub global: bool,
    /// Per member of its type: the value (for pointers: the object number within the pointee
    /// type, 1-based; 0 NULL; -1 invalid).
    pub values: Vec<i64>,
}

/// The facts of a snapshot for a model file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub types: Vec<StructFact>,
    pub objects: Vec<ObjectFact>,
    /// The globals the model names, and their objects.
    pub roots: Vec<(String, usize)>,
    /// Invalid pointers met while following.
    pub invalid_pointers: Vec<Finding>,
    /// Members not given to MiniZinc, and why.
    pub not_given: Vec<String>,
}

impl ObjectFact {
    /// Where member `path` of this object is, as C would say it.
    pub fn field(&self, path: &str) -> String {
        if self.global {
            format!(".{path}")
        } else {
            format!("->{path}")
        }
    }
}

/// Identifiers in MiniZinc text, comments and strings left out.
fn identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut code = String::new();
        let mut in_string = false;
        for c in line.chars() {
            match c {
                '"' => in_string = !in_string,
                '%' if !in_string => break,
                _ if in_string => {}
                _ => code.push(c),
            }
        }
        for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.insert(word.to_string());
            }
        }
    }
    out
}

/// The MiniZinc name of a global (its DWARF qualified name): `::` becomes `__` and any other
/// character that cannot be in an identifier `_` (`inventory::INVENTORY` → `inventory__INVENTORY`).
pub fn mzn_name(qualified: &str) -> String {
    qualified
        .replace("::", "__")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// The name a model uses for the global `qualified`, if it uses one: the qualified name itself
/// (C), its [`mzn_name`], or its last `::` segment when no other global ends the same way.
fn global_name(types: &DebugTypes, qualified: &str, names: &BTreeSet<String>) -> Option<String> {
    if names.contains(qualified) && is_identifier(qualified) {
        return Some(qualified.to_string());
    }
    let full = mzn_name(qualified);
    if names.contains(&full) {
        return Some(full);
    }
    let last = qualified.rsplit("::").next()?;
    let unique = types
        .variables
        .iter()
        .filter(|v| v.qualified_name.rsplit("::").next() == Some(last))
        .map(|v| v.address)
        .collect::<BTreeSet<_>>()
        .len()
        == 1;
    (last != qualified && unique && names.contains(last)).then(|| last.to_string())
}

fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn decode(bytes: &[u8], signed: bool) -> i64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    let v = u64::from_le_bytes(b);
    if signed && n < 8 && n > 0 && bytes[n - 1] & 0x80 != 0 {
        (v | (u64::MAX << (n * 8))) as i64
    } else if !signed && v > i64::MAX as u64 {
        // Beyond MiniZinc's integers; any rule bounding it sees it as huge.
        i64::MAX
    } else {
        v as i64
    }
}

fn scalar_range(size: u64, signed: bool) -> (i64, i64) {
    let bits = (size * 8).min(64) as u32;
    if signed {
        let hi = if bits >= 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
        (-hi - 1, hi)
    } else {
        let hi = if bits >= 63 { i64::MAX } else { (1i64 << bits) - 1 };
        (0, hi)
    }
}

struct Gatherer<'a> {
    snap: &'a Snapshot,
    types: &'a DebugTypes,
    facts: Facts,
    by_id: BTreeMap<TypeId, usize>,
    by_object: BTreeMap<(usize, u64), usize>,
    queue: VecDeque<usize>,
}

impl Gatherer<'_> {
    /// The struct type behind `id`, registered on first sight; `None` if it is no named struct.
    fn struct_type(&mut self, id: TypeId) -> Option<usize> {
        let (rid, t) = self.types.resolve(id)?;
        if let Some(&i) = self.by_id.get(&rid) {
            return Some(i);
        }
        let TypeKind::Struct { variant_part: None, .. } = &t.kind else {
            return None;
        };
        let name = t.name.clone().filter(|n| is_identifier(n))?;
        let size = self.types.size_of(rid).filter(|s| *s > 0)?;
        let index = self.facts.types.len();
        self.by_id.insert(rid, index);
        self.facts.types.push(StructFact {
            name: name.clone(),
            id: rid,
            size,
            members: Vec::new(),
            objects: Vec::new(),
        });
        let mut members = Vec::new();
        self.members(rid, 0, "", &name, &mut members, 0);
        self.facts.types[index].members = members;
        Some(index)
    }

    fn members(&mut self, id: TypeId, base: u64, prefix: &str, sname: &str, out: &mut Vec<MemberFact>, depth: usize) {
        let Some((_, t)) = self.types.resolve(id) else {
            return;
        };
        let TypeKind::Struct {
            members,
            variant_part: None,
        } = &t.kind
        else {
            return;
        };
        for m in members.clone() {
            let (Some(offset), Some(ty), Some(name)) = (m.offset, m.type_id, m.name.clone()) else {
                continue;
            };
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let mzn = format!("{sname}_{}", path.replace('.', "_"));
            if m.bit_size.is_some() || !is_identifier(&name) {
                self.facts
                    .not_given
                    .push(format!("{sname}.{path}: bit field or unnamed"));
                continue;
            }
            let Some((rid, mt)) = self.types.resolve(ty) else {
                continue;
            };
            let size = self.types.size_of(rid).unwrap_or(0);
            let offset = base + offset;
            let kind = match &mt.kind {
                TypeKind::Base { encoding } => match encoding {
                    Encoding::Bool => Some(MemberKind::Scalar {
                        signed: false,
                        lo: 0,
                        hi: 1,
                    }),
                    Encoding::Float | Encoding::Other | Encoding::Address => None,
                    e => {
                        let signed = e.is_signed();
                        let (lo, hi) = scalar_range(size, signed);
                        Some(MemberKind::Scalar { signed, lo, hi })
                    }
                },
                TypeKind::Enum { enumerators, .. } if !enumerators.is_empty() => {
                    let signed = matches!(self.types.shape(Some(rid)), Shape::Enum { signed: true });
                    let lo = enumerators.iter().map(|e| e.value).min().unwrap_or(0).min(0);
                    let hi = enumerators.iter().map(|e| e.value).max().unwrap_or(0);
                    Some(MemberKind::Scalar { signed, lo, hi })
                }
                TypeKind::Pointer { pointee: Some(p) } => {
                    let align = align_of(self.types, *p).unwrap_or(1);
                    self.struct_type(*p).map(|to| MemberKind::Pointer { to, align })
                }
                TypeKind::Struct { variant_part: None, .. } if depth < 8 => {
                    self.members(rid, offset, &path, sname, out, depth + 1);
                    continue;
                }
                _ => None,
            };
            match kind {
                Some(kind) if (1..=8).contains(&size) => out.push(MemberFact {
                    path,
                    mzn,
                    offset,
                    size,
                    kind,
                }),
                _ => self.facts.not_given.push(format!(
                    "{sname}.{path}: {} (not an integer or a pointer to a named struct)",
                    self.types.type_name(Some(ty))
                )),
            }
        }
    }

    /// The object of type `ty` at `address`, read on first sight.
    fn object(&mut self, ty: usize, address: u64, name: String, global: bool) -> Result<usize> {
        if let Some(&o) = self.by_object.get(&(ty, address)) {
            return Ok(o);
        }
        if self.facts.objects.len() >= MAX_OBJECTS {
            return Err(Error::Usage(format!(
                "more than {MAX_OBJECTS} objects are reachable from the model's globals"
            )));
        }
        let index = self.facts.objects.len();
        self.by_object.insert((ty, address), index);
        self.facts.types[ty].objects.push(index);
        self.facts.objects.push(ObjectFact {
            ty,
            address,
            name,
            global,
            values: Vec::new(),
        });
        self.queue.push_back(index);
        Ok(index)
    }

    /// Reads object `o`'s members; pointers to readable objects enqueue them.
    fn read(&mut self, o: usize) -> Result<()> {
        let (ty, address) = (self.facts.objects[o].ty, self.facts.objects[o].address);
        let size = self.facts.types[ty].size;
        let bytes = self.snap.read(address, size as usize)?;
        let members = self.facts.types[ty].members.clone();
        let mut values = Vec::with_capacity(members.len());
        for m in &members {
            let raw = &bytes[m.offset as usize..(m.offset + m.size) as usize];
            let value = match m.kind {
                MemberKind::Scalar { signed, .. } => decode(raw, signed),
                MemberKind::Pointer { to, align } => {
                    let target = decode(raw, false) as u64;
                    let field = self.facts.objects[o].field(&m.path);
                    let here = format!("{}{field}", self.facts.objects[o].name);
                    let judged = if target == 0 {
                        Ok(None)
                    } else {
                        match judge_data_pointer(self.snap, target, align) {
                            Some(bad) => Err(bad),
                            None => match self.snap.read(target, self.facts.types[to].size as usize) {
                                Ok(_) => Ok(Some(target)),
                                Err(e) => Err((Rule::PointerUnreadable, format!("{target:#x}: {e}"))),
                            },
                        }
                    };
                    match judged {
                        Ok(None) => 0,
                        Ok(Some(target)) => {
                            let k = self.object(to, target, here, false)?;
                            1 + self.facts.types[to].objects.iter().position(|&x| x == k).unwrap_or(0) as i64
                        }
                        Err((rule, detail)) => {
                            self.facts.invalid_pointers.push(Finding {
                                rule,
                                address: address + m.offset,
                                symbol: self.facts.objects[o].name.clone(),
                                field: field.trim_start_matches('.').to_string(),
                                detail: format!("{detail} for struct {}", self.facts.types[to].name),
                            });
                            -1
                        }
                    }
                }
            };
            values.push(value);
        }
        self.facts.objects[o].values = values;
        Ok(())
    }
}

impl Facts {
    /// Follows every pointer to a struct from the globals `model` names.
    pub fn gather(snap: &Snapshot, types: &DebugTypes, model_text: &str) -> Result<Facts> {
        let names = identifiers(model_text);
        let mut g = Gatherer {
            snap,
            types,
            facts: Facts::default(),
            by_id: BTreeMap::new(),
            by_object: BTreeMap::new(),
            queue: VecDeque::new(),
        };
        let mut roots: Vec<(String, u64, TypeId)> = types
            .variables
            .iter()
            .filter_map(|v| Some((global_name(types, &v.qualified_name, &names)?, v.address, v.type_id?)))
            .collect();
        roots.sort();
        roots.dedup_by(|a, b| a.0 == b.0);
        for (name, address, ty) in roots {
            if let Some(t) = g.struct_type(ty) {
                let o = g.object(t, address, name.clone(), true)?;
                g.facts.roots.push((name, o));
                continue;
            }
            // A pointer global (`struct node *g_list`): the root is the struct it points to.
            let pointee = match types.shape(Some(ty)) {
                Shape::Pointer { pointee_id, .. } => pointee_id.and_then(|p| g.struct_type(p)),
                _ => None,
            };
            let Some(t) = pointee else {
                g.facts
                    .not_given
                    .push(format!("{name}: neither a named struct nor a pointer to one"));
                continue;
            };
            let value = match snap.read(address, 8) {
                Ok(b) => u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                Err(e) => {
                    g.facts.not_given.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let align = align_of(types, g.facts.types[t].id).unwrap_or(1);
            if value == 0 {
                g.facts.not_given.push(format!("{name}: a null pointer"));
                continue;
            }
            if let Some((_, why)) = judge_data_pointer(snap, value, align) {
                g.facts.not_given.push(format!("{name}: {why}"));
                continue;
            }
            let o = g.object(t, value, name.clone(), false)?;
            g.facts.roots.push((name, o));
        }
        while let Some(o) = g.queue.pop_front() {
            g.read(o)?;
        }
        Ok(g.facts)
    }

    fn prelude(&self, out: &mut String) {
        out.push_str(&format!("n_types = {};\n", self.types.len()));
        for (i, t) in self.types.iter().enumerate() {
            out.push_str(&format!("int: T_{} = {};\n", t.name, i + 1));
        }
        out.push_str(&format!(
            "n_objects = [{}];\n",
            join(self.types.iter().map(|t| t.objects.len()))
        ));
        for (name, o) in &self.roots {
            let ty = &self.types[self.objects[*o].ty];
            let k = 1 + ty.objects.iter().position(|x| x == o).unwrap_or(0);
            out.push_str(&format!(
                "int: {name} = {k};  % the global {name}: {} object {k}\n",
                ty.name
            ));
        }
    }

    /// The facts with every field fixed, for `invariants_check.mzn`.
    pub fn check_mzn(&self) -> String {
        let mut out = String::from("% memzinc facts (fields fixed), generated from a snapshot: models/schema.md\n");
        self.prelude(&mut out);
        for t in &self.types {
            for (i, m) in t.members.iter().enumerate() {
                let values = join(t.objects.iter().map(|&o| self.objects[o].values[i]));
                out.push_str(&format!(
                    "array[1..{}] of int: {} = [{values}];\n",
                    t.objects.len(),
                    m.mzn
                ));
            }
        }
        out
    }

    /// The facts for `invariants_repair.mzn`: the members the model mentions (`mentioned`, by
    /// MiniZinc name) and pointer members holding an invalid pointer are decisions, the rest
    /// stay fixed (no rule can reach them). Returns the `.mzn` text and, per decided field,
    /// (object, member).
    pub fn repair_mzn(&self, mentioned: &BTreeSet<String>) -> (String, Vec<(usize, usize)>) {
        let mut out = String::from("% memzinc facts (fields decided), generated from a snapshot: models/schema.md\n");
        self.prelude(&mut out);
        let mut fields = Vec::new();
        let (mut current, mut lo, mut hi, mut width, mut names) = (vec![], vec![], vec![], vec![], vec![]);
        let mut arrays = String::new();
        let mut decls = String::new();
        for t in &self.types {
            for (i, m) in t.members.iter().enumerate() {
                let invalid = t.objects.iter().any(|&o| self.objects[o].values[i] < 0)
                    && matches!(m.kind, MemberKind::Pointer { .. });
                if !mentioned.contains(&m.mzn) && !invalid {
                    let values = join(t.objects.iter().map(|&o| self.objects[o].values[i]));
                    arrays.push_str(&format!(
                        "array[1..{}] of int: {} = [{values}];\n",
                        t.objects.len(),
                        m.mzn
                    ));
                    continue;
                }
                let mut refs = Vec::new();
                for &o in &t.objects {
                    fields.push((o, i));
                    refs.push(format!("f{}", fields.len()));
                    let (l, h) = match m.kind {
                        MemberKind::Scalar { lo, hi, .. } => (lo.max(-SOLVER_LIMIT), hi.min(SOLVER_LIMIT)),
                        MemberKind::Pointer { to, .. } => (0, self.types[to].objects.len() as i64),
                    };
                    let v = self.objects[o].values[i];
                    // Beyond the solver's range: outside the domain, so it must change anyway.
                    current.push(if v.abs() > SOLVER_LIMIT { h + 1 } else { v });
                    decls.push_str(&format!(
                        "var {l}..{h}: f{i} :: no_output;\nconstraint value[{i}] = f{i};\n",
                        i = fields.len()
                    ));
                    lo.push(l);
                    hi.push(h);
                    width.push(m.size as i64);
                    names.push(format!("{:?}", m.mzn));
                }
                arrays.push_str(&format!(
                    "array[1..{}] of var int: {} = [{}];\n",
                    t.objects.len(),
                    m.mzn,
                    refs.join(", ")
                ));
            }
        }
        out.push_str(&format!(
            "n_fields = {};\ncurrent = [{}];\nlo = [{}];\nhi = [{}];\nwidth = [{}];\nfield_name = [{}];\n",
            fields.len(),
            join(current),
            join(lo),
            join(hi),
            join(width),
            names.join(", ")
        ));
        out.push_str(&decls);
        out.push_str(&arrays);
        (out, fields)
    }

    /// The facts after the decided `values` (per field of [`Facts::repair_mzn`]).
    fn with_values(&self, fields: &[(usize, usize)], values: &[i64]) -> Facts {
        let mut out = self.clone();
        for (&(o, i), &v) in fields.iter().zip(values) {
            out.objects[o].values[i] = v;
        }
        out
    }
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// A model file and the facts of one snapshot for it.
pub struct Judge<'a> {
    pub snapshot: &'a Snapshot,
    pub types: &'a DebugTypes,
    /// `models/targets/<name>.mzn`.
    pub model: &'a Path,
    /// `models/` (the drivers).
    pub models_dir: &'a Path,
}

/// What `invariants_check.mzn` answered.
#[derive(Deserialize)]
struct CheckAnswer {
    holds: Vec<bool>,
    rule: Vec<usize>,
    object: Vec<usize>,
    name: Vec<String>,
    field: Vec<String>,
    on: Vec<usize>,
}

/// The result of judging the user rules.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Judged {
    pub findings: Vec<Finding>,
    pub rules: usize,
    pub objects: usize,
    pub pointers_invalid: usize,
    pub not_given: Vec<String>,
    #[serde(skip)]
    pub facts: Facts,
}

impl Judge<'_> {
    fn model_text(&self) -> Result<String> {
        std::fs::read_to_string(self.model).map_err(|e| Error::io(self.model, e))
    }

    /// Runs the check model on `facts`: the (rule, object) pairs that fail, as findings.
    fn evaluate(&self, facts: &Facts, opts: &SolverOptions) -> Result<(usize, Vec<Finding>)> {
        let dir = tempfile::Builder::new()
            .prefix("memzinc-rules-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let facts_path = dir.path().join("facts.mzn");
        std::fs::write(&facts_path, facts.check_mzn()).map_err(|e| Error::io(&facts_path, e))?;
        let mut opts = opts.clone();
        opts.backend = Backend::Gecode;
        opts.output_item = true;
        opts.verify = false;
        let run = solver::run(
            &opts,
            &self.models_dir.join("invariants_check.mzn"),
            &[&facts_path, self.model],
        )?;
        let answer: CheckAnswer = serde_json::from_value(run.output.clone()).map_err(|e| {
            Error::MiniZinc(format!(
                "{}: unexpected answer ({e}): {}",
                self.model.display(),
                run.output
            ))
        })?;
        let mut findings = Vec::new();
        for ((holds, &r), &k) in answer.holds.iter().zip(&answer.rule).zip(&answer.object) {
            if *holds {
                continue;
            }
            let (Some(name), Some(field)) = (answer.name.get(r - 1), answer.field.get(r - 1)) else {
                continue;
            };
            let Some(o) = answer
                .on
                .get(r - 1)
                .and_then(|t| facts.types.get(t.checked_sub(1)?))
                .and_then(|t| t.objects.get(k.checked_sub(1)?))
                .copied()
            else {
                continue;
            };
            let object = &facts.objects[o];
            let ty = &facts.types[object.ty];
            let member = ty.members.iter().find(|m| &m.path == field);
            findings.push(Finding {
                rule: Rule::UserRule,
                address: object.address + member.map_or(0, |m| m.offset),
                symbol: object.name.clone(),
                field: if field.is_empty() {
                    String::new()
                } else {
                    object.field(field).trim_start_matches('.').to_string()
                },
                detail: format!(
                    "rule \"{name}\" fails for struct {} #{k} ({})",
                    ty.name,
                    self.model.file_name().and_then(|n| n.to_str()).unwrap_or("model")
                ),
            });
        }
        Ok((answer.name.len(), findings))
    }

    /// Judges the snapshot: invalid pointers met, then every rule on every object of its type.
    pub fn check(&self, opts: &SolverOptions) -> Result<Judged> {
        let facts = Facts::gather(self.snapshot, self.types, &self.model_text()?)?;
        if facts.roots.is_empty() {
            return Err(Error::Spec {
                path: self.model.into(),
                why: "names no global struct of the snapshot's binary".into(),
            });
        }
        let (rules, mut findings) = self.evaluate(&facts, opts)?;
        findings.extend(facts.invalid_pointers.iter().cloned());
        Ok(Judged {
            findings,
            rules,
            objects: facts.objects.len(),
            pointers_invalid: facts.invalid_pointers.len(),
            not_given: facts.not_given.clone(),
            facts,
        })
    }

    /// The fewest bytes to write so that every rule holds and every followed pointer is valid,
    /// as a plan for the target `target`.
    pub fn plan(&self, target: &str, opts: &SolverOptions, work: &Path) -> Result<Plan> {
        let judged = self.check(opts)?;
        let facts = &judged.facts;
        if judged.findings.is_empty() {
            return Plan::new(self.snapshot, target, opts.backend.name(), true, vec![], vec![], None);
        }
        let (text, fields) = facts.repair_mzn(&identifiers(&self.model_text()?));
        crate::base::write_file_atomically(work, text.as_bytes())?;
        let run = solver::run(
            opts,
            &self.models_dir.join("invariants_repair.mzn"),
            &[work, self.model],
        )?;
        run.answered(&format!("the rules of {}", self.model.display()), opts.time_limit)?;
        let values = run
            .ints("value")
            .filter(|v| v.len() == fields.len())
            .ok_or_else(|| Error::MiniZinc(format!("the answer has no `value` per field: {}", run.output)))?;

        // Re-judge the repaired facts before trusting the answer.
        let repaired = facts.with_values(&fields, &values);
        for (&(o, i), &v) in fields.iter().zip(&values) {
            let m = &facts.types[facts.objects[o].ty].members[i];
            let ok = match m.kind {
                MemberKind::Scalar { lo, hi, .. } => (lo..=hi).contains(&v),
                MemberKind::Pointer { to, .. } => (0..=facts.types[to].objects.len() as i64).contains(&v),
            };
            if !ok {
                return Err(Error::MiniZinc(format!(
                    "the answer gives {} the impossible value {v}",
                    m.mzn
                )));
            }
        }
        let (_, still) = self.evaluate(&repaired, opts)?;
        if let Some(f) = still.first() {
            return Err(Error::MiniZinc(format!(
                "the solver's repair breaks a rule: {} {}",
                f.location(),
                f.detail
            )));
        }

        let mut writes = Vec::new();
        for (&(o, i), &v) in fields.iter().zip(&values) {
            let object = &facts.objects[o];
            if object.values[i] == v {
                continue;
            }
            let m = &facts.types[object.ty].members[i];
            let address = object.address + m.offset;
            let new = match m.kind {
                MemberKind::Scalar { .. } => v.to_le_bytes()[..m.size as usize].to_vec(),
                MemberKind::Pointer { to, .. } => {
                    let target = match v {
                        0 => 0,
                        k => facts.objects[facts.types[to].objects[k as usize - 1]].address,
                    };
                    target.to_le_bytes()[..m.size as usize].to_vec()
                }
            };
            let rules: Vec<String> = judged
                .findings
                .iter()
                .filter(|f| f.symbol == object.name)
                .map(|f| f.detail.clone())
                .collect();
            writes.push(PlannedWrite {
                address,
                old: self.snapshot.read(address, m.size as usize)?,
                new,
                field: format!("{}{}", object.name, object.field(&m.path)),
                rule: if rules.is_empty() {
                    "needed so that every rule holds".into()
                } else {
                    rules.join("; ")
                },
            });
        }
        Plan::new(
            self.snapshot,
            target,
            opts.backend.name(),
            run.status == Status::Optimal,
            judged.findings.clone(),
            writes,
            Some(run.stats),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_skip_comments_and_strings() {
        let ids = identifiers("% QUEUE in a comment\nrule_name = [\"HIDDEN\"]; x = LIST_HEAD[1] % tail\n");
        assert!(ids.contains("LIST_HEAD") && ids.contains("rule_name") && ids.contains("x"));
        assert!(!ids.contains("QUEUE") && !ids.contains("HIDDEN") && !ids.contains("tail"));
    }

    #[test]
    fn values_decode_by_signedness_and_ranges_fit_the_type() {
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], true), -1);
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], false), 0xffff_ffff);
        assert_eq!(decode(&[0xff; 8], false), i64::MAX);
        assert_eq!(scalar_range(1, false), (0, 255));
        assert_eq!(scalar_range(4, true), (i32::MIN as i64, i32::MAX as i64));
        assert_eq!(scalar_range(8, false), (0, i64::MAX));
    }
}
