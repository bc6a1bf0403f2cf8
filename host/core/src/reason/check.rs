//! `memzinc check`: invariants of a snapshot, judged in Rust with the binary's DWARF types.
//!
//! Every global of the main binary with a static address is decoded from the snapshot by its
//! DWARF type and walked field by field (nested structs, arrays element by element):
//!
//! - **pointers**: a non-null pointer lands in a mapped, readable region (or exactly one past
//!   the end of one), aligned for its pointee; a function pointer lands in executable memory;
//! - **types**: a `bool` holds 0 or 1, a C enum one of its enumerators (or, for an enum whose
//!   enumerators are all single bits, a combination of them), a Rust `char` a Unicode scalar;
//! - **regions**: none writable and executable at once (W^X), no executable anonymous memory;
//! - **specs**: a target spec's bounds and orderings ([`super::TargetSpec`]);
//! - **the exported heap** of a target that exports one (`super::heap`).
//!
//! A Rust enum with an explicit tag must hold one of its variants' discriminants, and the live
//! variant's payload is walked like a struct. Unions and niche-encoded Rust enums are not
//! judged (which member is live is not in memory in a form DWARF describes); bit fields neither. Every violation names the address, the global, the field
//! path and the rule. Nothing here solves anything: facts only.

use serde::{Deserialize, Serialize};

use super::finding::{judge_data_pointer, Finding, Rule};
use super::spec::TargetSpec;
use crate::base::Result;
use crate::describe::{SnapRegion, Snapshot};
use crate::introspect::{DebugTypes, Encoding, Shape, TypeId, TypeKind};

/// Arrays are judged up to this many elements; larger ones are counted as truncated.
const MAX_ELEMENTS: u64 = 1 << 16;
/// Objects larger than this are read only this far.
const MAX_OBJECT: u64 = 16 << 20;
const MAX_DEPTH: usize = 32;

/// What `check` looked at and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub globals: u64,
    pub fields: u64,
    pub pointers: u64,
    pub regions: u64,
    pub specs: u64,
    /// Globals or parts left unjudged, and why (not captured, unions, truncated arrays...).
    pub not_judged: Vec<String>,
    /// Why the DWARF checks did not run, if they did not.
    pub types_unavailable: Option<String>,
    /// Objects of the target's exported reference-counted heap judged (`reason::heap`).
    #[serde(default)]
    pub heap_objects: u64,
    /// The target's model file judged, if any, with its rule and object counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesJudged>,
    /// The typed object graph walked from every global (`reason::graph`), when the DWARF was
    /// there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<super::graph::GraphSummary>,
}

/// What the user rules of a model file covered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesJudged {
    pub model: String,
    pub rules: usize,
    /// Struct objects followed from the globals the model names.
    pub objects: usize,
}

impl CheckReport {
    /// Adds the findings of a model file's rules (an invalid pointer `check` already reported
    /// for a global is kept once).
    pub fn merge_rules(&mut self, model: &std::path::Path, judged: super::user_rules::Judged) {
        for f in judged.findings {
            if !self.findings.iter().any(|g| g.rule == f.rule && g.address == f.address) {
                self.findings.push(f);
            }
        }
        self.not_judged.extend(
            judged
                .not_given
                .into_iter()
                .map(|n| format!("{n} (not given to the rules)")),
        );
        self.rules = Some(RulesJudged {
            model: model.display().to_string(),
            rules: judged.rules,
            objects: judged.objects,
        });
        self.findings.sort_by_key(|f| (f.rule, f.address));
    }

    /// Adds what the object graph found (a finding the global walk already made at the same
    /// address under the same rule is kept once) and its summary.
    pub fn merge_graph(&mut self, graph: &super::graph::Graph<'_>) {
        for f in &graph.findings {
            if !self.findings.iter().any(|g| g.rule == f.rule && g.address == f.address) {
                self.findings.push(f.clone());
            }
        }
        self.not_judged.extend(graph.not_judged.iter().cloned());
        self.graph = Some(graph.summary());
        self.findings.sort_by_key(|f| (f.rule, f.address));
    }

    pub fn count(&self, rule: Rule) -> usize {
        self.findings.iter().filter(|f| f.rule == rule).count()
    }
}

/// Everything the checks need.
pub struct Check<'a> {
    pub snapshot: &'a Snapshot,
    /// The main binary's DWARF at the snapshot's addresses; `None` skips the type checks.
    pub types: Option<&'a DebugTypes>,
    pub specs: &'a [TargetSpec],
}

fn is_anonymous(r: &SnapRegion) -> bool {
    matches!(r.map.path.as_str(), "" | "[heap]" | "[stack]") || r.map.path.starts_with("[anon:")
}

struct Walker<'a> {
    snap: &'a Snapshot,
    types: &'a DebugTypes,
    report: CheckReport,
    symbol: String,
}

impl Walker<'_> {
    fn find(&mut self, rule: Rule, address: u64, field: &str, detail: String) {
        self.report.findings.push(Finding {
            rule,
            address,
            symbol: self.symbol.clone(),
            field: field.to_string(),
            detail,
        });
    }

    /// Walks the value of type `id` at `bytes[at..]` (runtime address `base + at`).
    fn walk(&mut self, id: TypeId, bytes: &[u8], at: u64, base: u64, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.report
                .not_judged
                .push(format!("{}{path}: nested too deep", self.symbol));
            return;
        }
        let Some((rid, t)) = self.types.resolve(id) else {
            return;
        };
        let size = self.types.size_of(rid).unwrap_or(0);
        let Some(raw) = bytes.get(at as usize..(at + size) as usize) else {
            if size > 0 {
                self.report
                    .not_judged
                    .push(format!("{}{path}: beyond the bytes read", self.symbol));
            }
            return;
        };
        let address = base + at;
        let int = |signed: bool| -> i64 {
            let mut b = [0u8; 8];
            let n = raw.len().min(8);
            b[..n].copy_from_slice(&raw[..n]);
            let v = u64::from_le_bytes(b);
            if signed && n < 8 && n > 0 && raw[n - 1] & 0x80 != 0 {
                (v | (u64::MAX << (n * 8))) as i64
            } else {
                v as i64
            }
        };
        match &t.kind {
            TypeKind::Base { encoding } => {
                self.report.fields += 1;
                match encoding {
                    Encoding::Bool => {
                        let v = int(false);
                        if v != 0 && v != 1 {
                            self.find(Rule::BoolNotZeroOrOne, address, path, format!("bool holds {v}"));
                        }
                    }
                    Encoding::Utf if size == 4 => {
                        let v = int(false) as u32;
                        if char::from_u32(v).is_none() {
                            self.find(Rule::CharInvalid, address, path, format!("char holds {v:#x}"));
                        }
                    }
                    _ => {}
                }
            }
            TypeKind::Enum { enumerators, .. } => {
                self.report.fields += 1;
                let signed = matches!(self.types.shape(Some(rid)), Shape::Enum { signed: true });
                let v = int(signed);
                let mask = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
                let known = |x: i64| enumerators.iter().any(|e| (e.value as u64 & mask) == (x as u64 & mask));
                let flags = !enumerators.is_empty()
                    && enumerators
                        .iter()
                        .all(|e| e.value == 0 || (e.value as u64 & mask).is_power_of_two());
                let all_bits = enumerators.iter().fold(0u64, |acc, e| acc | (e.value as u64 & mask));
                let ok = known(v) || (flags && (v as u64 & mask) & !all_bits == 0);
                if !ok && !enumerators.is_empty() {
                    let names: Vec<String> = enumerators.iter().map(|e| format!("{}={}", e.name, e.value)).collect();
                    self.find(
                        Rule::EnumInvalid,
                        address,
                        path,
                        format!(
                            "{} holds {v}, not one of {}",
                            self.types.type_name(Some(rid)),
                            names.join(", ")
                        ),
                    );
                }
            }
            TypeKind::Pointer { pointee } => {
                self.report.fields += 1;
                self.report.pointers += 1;
                self.pointer(*pointee, int(false) as u64, address, path);
            }
            TypeKind::Struct {
                members,
                variant_part: None,
            } => {
                for m in members {
                    let (Some(offset), Some(ty)) = (m.offset, m.type_id) else {
                        continue;
                    };
                    if m.bit_size.is_some() {
                        continue;
                    }
                    let name = m.name.as_deref().unwrap_or("<anonymous>");
                    let sub = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    self.walk(ty, bytes, at + offset, base, &sub, depth + 1);
                }
            }
            TypeKind::Array {
                element: Some(element),
                dims,
            } => {
                let Some(count) = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul((*d)?)) else {
                    return;
                };
                let Some(stride) = self.types.size_of(*element).filter(|s| *s > 0) else {
                    return;
                };
                // Arrays of plain numbers hold nothing to judge; skip walking them.
                if matches!(
                    self.types.resolve(*element).map(|(_, t)| &t.kind),
                    Some(TypeKind::Base {
                        encoding: Encoding::Signed
                            | Encoding::Unsigned
                            | Encoding::SignedChar
                            | Encoding::UnsignedChar
                            | Encoding::Float
                            | Encoding::Other
                    })
                ) {
                    self.report.fields += count.min(MAX_ELEMENTS);
                    return;
                }
                if count > MAX_ELEMENTS {
                    self.report
                        .not_judged
                        .push(format!("{}{path}: elements {MAX_ELEMENTS}.. of {count}", self.symbol));
                }
                for i in 0..count.min(MAX_ELEMENTS) {
                    self.walk(
                        *element,
                        bytes,
                        at + i * stride,
                        base,
                        &format!("{path}[{i}]"),
                        depth + 1,
                    );
                }
            }
            TypeKind::Struct {
                variant_part: Some(vp), ..
            } if vp.discriminant.is_some() && vp.variants.iter().all(|v| v.discr_value.is_some()) => {
                // A Rust enum with an explicit tag: the tag names the live variant.
                let Some(d) = &vp.discriminant else { return };
                let (Some(offset), Some(tag_ty)) = (d.offset, d.type_id) else {
                    return;
                };
                let tag_size = self.types.size_of(tag_ty).unwrap_or(0).min(8);
                let Some(tag_bytes) = bytes.get((at + offset) as usize..(at + offset + tag_size) as usize) else {
                    return;
                };
                self.report.fields += 1;
                let mut b = [0u8; 8];
                b[..tag_bytes.len()].copy_from_slice(tag_bytes);
                let tag = u64::from_le_bytes(b);
                let mask = if tag_size >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (tag_size * 8)) - 1
                };
                match vp
                    .variants
                    .iter()
                    .find(|v| v.discr_value.map(|x| x & mask) == Some(tag))
                {
                    Some(v) => {
                        if let Some(payload) = v.type_id {
                            let name = v.name.as_deref().unwrap_or("<variant>");
                            let sub = if path.is_empty() {
                                name.to_string()
                            } else {
                                format!("{path}.{name}")
                            };
                            self.walk(payload, bytes, at + v.offset.unwrap_or(0), base, &sub, depth + 1);
                        }
                    }
                    None => {
                        let names: Vec<String> = vp
                            .variants
                            .iter()
                            .map(|v| format!("{}={}", v.name.as_deref().unwrap_or("?"), v.discr_value.unwrap_or(0)))
                            .collect();
                        self.find(
                            Rule::EnumInvalid,
                            address + offset,
                            path,
                            format!(
                                "{} has discriminant {tag}, not one of {}",
                                self.types.type_name(Some(rid)),
                                names.join(", ")
                            ),
                        );
                    }
                }
            }
            TypeKind::Union { .. } | TypeKind::Struct { .. } => {
                // Unions, and Rust enums whose variant is encoded in a niche.
                self.report.not_judged.push(format!(
                    "{}{}{path}: {} (which member is live is unknown)",
                    self.symbol,
                    if path.is_empty() || path.starts_with('[') {
                        ""
                    } else {
                        "."
                    },
                    self.types.type_name(Some(rid))
                ));
            }
            _ => {}
        }
    }

    fn pointer(&mut self, pointee: Option<TypeId>, value: u64, address: u64, path: &str) {
        if value == 0 {
            return;
        }
        let function = pointee
            .and_then(|p| self.types.resolve(p))
            .is_some_and(|(_, t)| matches!(t.kind, TypeKind::Function));
        let region = self.snap.region_of(value, 1).or_else(|| {
            // One past the end of an object at the end of a mapping is a valid C pointer.
            value
                .checked_sub(1)
                .and_then(|v| self.snap.region_of(v, 1))
                .filter(|r| r.map.end == value && !function)
        });
        let Some(region) = region else {
            self.find(
                Rule::PointerUnmapped,
                address,
                path,
                format!("{value:#x} is in no mapped region"),
            );
            return;
        };
        if !region.map.readable() {
            self.find(
                Rule::PointerUnreadable,
                address,
                path,
                format!(
                    "{value:#x} is in {:x}-{:x} {} {}",
                    region.map.start, region.map.end, region.map.perms, region.map.path
                ),
            );
            return;
        }
        if function {
            if !region.map.executable() {
                self.find(
                    Rule::FunctionPointerNotExecutable,
                    address,
                    path,
                    format!(
                        "{value:#x} is in {:x}-{:x} {} {}",
                        region.map.start, region.map.end, region.map.perms, region.map.path
                    ),
                );
            }
            return;
        }
        let align = pointee
            .and_then(|p| super::field_order::align_of(self.types, p))
            .unwrap_or(1);
        if let Some((rule, detail)) = judge_data_pointer(self.snap, value, align) {
            self.find(
                rule,
                address,
                path,
                format!("{detail} for {}", self.types.type_name(pointee)),
            );
        }
    }
}

/// What `memzinc check` runs: the DWARF of `binary` (default: the path the snapshot records;
/// without DWARF the region and spec checks still run and the report says why) and `specs`.
pub fn check_snapshot(
    snapshot: &Snapshot,
    specs: &[TargetSpec],
    binary: Option<&std::path::Path>,
) -> Result<CheckReport> {
    Ok(check_with_types(snapshot, specs, binary, &super::graph::GraphLimits::default())?.0)
}

/// [`check_snapshot`] with the object graph walked within `limits`, also returning the debug
/// types it read (empty when unavailable), for the user invariants that follow pointers by type.
pub fn check_with_types(
    snapshot: &Snapshot,
    specs: &[TargetSpec],
    binary: Option<&std::path::Path>,
    limits: &super::graph::GraphLimits,
) -> Result<(CheckReport, DebugTypes)> {
    let (report, types, _) = check_with_graph(snapshot, specs, binary, limits, false)?;
    Ok((report, types))
}

/// [`check_with_types`], also returning the object graph as data when `want_data` (and the
/// DWARF was there).
pub fn check_with_graph(
    snapshot: &Snapshot,
    specs: &[TargetSpec],
    binary: Option<&std::path::Path>,
    limits: &super::graph::GraphLimits,
    want_data: bool,
) -> Result<(CheckReport, DebugTypes, Option<super::graph::GraphData>)> {
    let (types, unavailable) = match binary {
        Some(b) => (DebugTypes::for_snapshot_from(snapshot, b)?, None),
        None => match DebugTypes::for_snapshot(snapshot) {
            Ok(t) => (t, None),
            Err(e) => (DebugTypes::default(), Some(e.to_string())),
        },
    };
    let mut report = check(&Check {
        snapshot,
        types: unavailable.is_none().then_some(&types),
        specs,
    })?;
    let mut data = None;
    if unavailable.is_none() {
        let input = super::graph::GraphInput::of(snapshot, types.clone())?;
        let graph = input.walk(*limits);
        report.merge_graph(&graph);
        data = want_data.then(|| graph.data());
    }
    report.types_unavailable = unavailable;
    Ok((report, types, data))
}

/// Runs every check on the snapshot.
pub fn check(c: &Check<'_>) -> Result<CheckReport> {
    let snap = c.snapshot;
    let mut report = CheckReport::default();
    for r in &snap.meta.regions {
        report.regions += 1;
        let where_ = format!("{:x}-{:x} {}", r.map.start, r.map.end, r.map.perms);
        let name = if r.map.path.is_empty() {
            "[anonymous]".to_string()
        } else {
            r.map.path.clone()
        };
        if r.map.writable() && r.map.executable() {
            report.findings.push(Finding {
                rule: Rule::WritableAndExecutable,
                address: r.map.start,
                symbol: name.clone(),
                field: String::new(),
                detail: format!("{where_} is writable and executable"),
            });
        }
        if r.map.executable() && is_anonymous(r) {
            report.findings.push(Finding {
                rule: Rule::ExecutableAnonymous,
                address: r.map.start,
                symbol: name,
                field: String::new(),
                detail: format!("{where_} is executable and backed by no file"),
            });
        }
    }

    if let Some(heap) = super::refheap::Heap::from_snapshot(snap)? {
        let facts = super::refheap::HeapFacts::of(&heap);
        report.heap_objects = heap.objects as u64;
        report.findings.extend(super::refheap::findings(&heap, &facts));
    }

    for spec in c.specs {
        report.specs += 1;
        for f in super::spec::spec_facts(snap, spec)?.findings {
            report.findings.push(Finding {
                detail: format!("{} (spec {})", f.detail, spec.target),
                ..f
            });
        }
    }

    match c.types {
        None => report.types_unavailable = Some("no DWARF types given".into()),
        Some(types) => {
            let mut walker = Walker {
                snap,
                types,
                report,
                symbol: String::new(),
            };
            let mut seen = std::collections::BTreeSet::new();
            for v in &types.variables {
                let Some(ty) = v.type_id else { continue };
                if !seen.insert((v.address, ty)) {
                    continue;
                }
                let size = types.size_of(ty).unwrap_or(0);
                if size == 0 {
                    continue;
                }
                walker.symbol = v.qualified_name.clone();
                walker.report.globals += 1;
                let len = size.min(MAX_OBJECT);
                let bytes = match snap.read(v.address, len as usize) {
                    Ok(b) => b,
                    Err(e) => {
                        walker.report.not_judged.push(format!("{}: {e}", v.qualified_name));
                        continue;
                    }
                };
                if len < size {
                    walker
                        .report
                        .not_judged
                        .push(format!("{}: bytes {len}.. of {size}", v.qualified_name));
                }
                walker.walk(ty, &bytes, 0, v.address, "", 0);
            }
            report = walker.report;
        }
    }
    report.findings.sort_by_key(|f| (f.rule, f.address));
    Ok(report)
}
