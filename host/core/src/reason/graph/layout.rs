//! DWARF types compiled into what the graph walker does at each offset of an object: follow a
//! pointer, follow a buffer of `len` elements (Rust `Vec<T>`, `String`, `&[T]`, `&str`), judge
//! a bool, char or enum, pick a Rust enum's live variant, walk a large array element by element.
//!
//! Layouts come from DWARF, the way gdb's Rust support reads them: a `Vec`'s element type is its
//! template parameter `T`, its buffer the first pointer inside `buf`, its length the member
//! `len`; a slice is a struct with `data_ptr` and `length`; `Option<Box<T>>` and every other
//! niche-encoded enum is a `DW_TAG_variant_part` whose discriminant member holds either one of
//! the variants' values or anything else for the dataful variant. No offset is hard-coded.
//!
//! Types are compiled once, lazily (a type that points to itself is registered before its
//! members are compiled), and shared by every object of the type.

use std::collections::HashMap;
use std::rc::Rc;

use crate::introspect::{DebugTypes, Encoding, Shape, TypeId, TypeKind};

use super::super::field_order::align_of;

/// An index into [`Layouts::types`].
pub type TyIx = u32;

/// Nested structs are inlined at most this deep.
const MAX_DEPTH: usize = 32;
/// Arrays are expanded into their elements' operations while that makes at most this many.
const MAX_EXPANDED_OPS: usize = 256;
/// Operations of one type at most (beyond: the rest of the type is not judged, and said so).
const MAX_OPS: usize = 4096;

/// What a pointer points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointee {
    /// The type of the object it points to, when one is followed (not for `void *`, function
    /// pointers and types of unknown or zero size).
    pub ty: Option<TyIx>,
    /// Bytes of one pointee (0: unknown).
    pub size: u64,
    pub align: u64,
    pub function: bool,
    /// Zero-sized: Rust keeps dangling (aligned, non-null) pointers to such types.
    pub zero_sized: bool,
}

/// The valid values of a C-like enum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumValues {
    pub type_name: String,
    /// Each enumerator as (name, value masked to the enum's size).
    pub values: Vec<(String, u64)>,
    /// Every enumerator is 0 or a single bit: combinations are valid too.
    pub flags: bool,
    pub all_bits: u64,
}

impl EnumValues {
    pub fn accepts(&self, v: u64) -> bool {
        self.values.iter().any(|(_, x)| *x == v) || (self.flags && v & !self.all_bits == 0)
    }
}

/// One thing to do at an offset of an object.
#[derive(Clone, Debug)]
pub enum Op {
    Pointer {
        at: u64,
        field: u32,
        to: Pointee,
        /// A Rust reference, `Box` or `NonNull`: NULL is itself broken (an `Option` of one
        /// keeps its `None` in a variant arm, never here).
        non_null: bool,
    },
    /// A pointer to `len` elements: a Rust `Vec`/`String` (with its capacity) or slice.
    Buffer {
        at: u64,
        len_at: u64,
        cap_at: Option<u64>,
        field: u32,
        elem: Pointee,
    },
    Bool {
        at: u64,
        field: u32,
    },
    /// A Rust `char` (a Unicode scalar value).
    Char {
        at: u64,
        field: u32,
    },
    Enum {
        at: u64,
        size: u8,
        field: u32,
        values: u32,
    },
    /// A Rust enum: the discriminant at `at` (`size` bytes) selects an arm; a value no arm has
    /// selects `default` (the dataful variant of a niche encoding), or is invalid without one.
    Variant {
        at: u64,
        size: u8,
        field: u32,
        type_name: u32,
        arms: Vec<(u64, String, Vec<Op>)>,
        default: Option<Vec<Op>>,
    },
    /// `count` elements `stride` apart, each with `ops` relative to its start.
    Array {
        at: u64,
        count: u64,
        stride: u64,
        field: u32,
        ops: Vec<Op>,
    },
}

impl Op {
    pub fn at(&self) -> u64 {
        match self {
            Op::Pointer { at, .. }
            | Op::Buffer { at, .. }
            | Op::Bool { at, .. }
            | Op::Char { at, .. }
            | Op::Enum { at, .. }
            | Op::Variant { at, .. }
            | Op::Array { at, .. } => *at,
        }
    }

    /// The same operation `by` bytes further and under `prefix`.
    fn shifted(&self, by: u64, prefix: &str, layouts: &mut Layouts<'_>) -> Op {
        let mut op = self.clone();
        let re = |f: &mut u32, layouts: &mut Layouts<'_>| {
            let name = join(prefix, &layouts.fields[*f as usize].clone());
            *f = layouts.field(&name);
        };
        match &mut op {
            Op::Pointer { at, field, .. }
            | Op::Buffer { at, field, .. }
            | Op::Bool { at, field }
            | Op::Char { at, field }
            | Op::Enum { at, field, .. }
            | Op::Array { at, field, .. } => {
                *at += by;
                re(field, layouts);
            }
            Op::Variant {
                at,
                field,
                arms,
                default,
                ..
            } => {
                *at += by;
                re(field, layouts);
                for (_, _, ops) in arms.iter_mut() {
                    *ops = ops.iter().map(|o| o.shifted(by, prefix, layouts)).collect();
                }
                if let Some(d) = default {
                    *d = d.iter().map(|o| o.shifted(by, prefix, layouts)).collect();
                }
            }
        }
        if let Op::Buffer { len_at, cap_at, .. } = &mut op {
            *len_at += by;
            if let Some(c) = cap_at {
                *c += by;
            }
        }
        op
    }
}

/// `a.b`, or whichever is not empty.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ if b.starts_with('[') => format!("{a}{b}"),
        _ => format!("{a}.{b}"),
    }
}

/// A type objects of which the graph holds.
#[derive(Clone, Debug)]
pub struct GType {
    pub module: u16,
    pub id: TypeId,
    pub name: String,
    /// Bytes of one object (0 when DWARF does not say).
    pub size: u64,
    pub align: u64,
    /// Compiled on first use.
    pub ops: Option<Rc<[Op]>>,
    /// The offsets of its pointers to its own type (`next`, `left`, `right`): it forms a list
    /// or a tree. Known once `ops` is compiled.
    pub self_slots: Vec<u64>,
}

/// Every type the graph met, compiled.
pub struct Layouts<'a> {
    pub modules: &'a [DebugTypes],
    pub types: Vec<GType>,
    by_id: HashMap<(u16, TypeId), TyIx>,
    /// Interned field paths (`next`, `stats.head`, `children[3]`).
    pub fields: Vec<String>,
    field_ix: HashMap<String, u32>,
    pub enums: Vec<EnumValues>,
    /// Parts of types not judged, and why (unions, truncated types), once per type.
    pub not_judged: Vec<String>,
}

/// Whether a pointer type's name is a Rust reference or `Box` (rustc describes a thin `Box<T>`
/// as a pointer type named `alloc::boxed::Box<T, Global>`), which are never NULL.
fn rust_non_null(name: &str) -> bool {
    name.starts_with('&') || name.starts_with("alloc::boxed::Box<") || name.starts_with("Box<")
}

/// Names of Rust wrappers whose member names add nothing to a path (`ptr.pointer`).
fn transparent(name: &str) -> bool {
    [
        "NonNull<",
        "Unique<",
        "UnsafeCell<",
        "ManuallyDrop<",
        "Cell<",
        "SyncUnsafeCell<",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

impl<'a> Layouts<'a> {
    pub fn new(modules: &'a [DebugTypes]) -> Layouts<'a> {
        let mut l = Layouts {
            modules,
            types: Vec::new(),
            by_id: HashMap::new(),
            fields: Vec::new(),
            field_ix: HashMap::new(),
            enums: Vec::new(),
            not_judged: Vec::new(),
        };
        l.field("");
        l
    }

    pub fn field(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.field_ix.get(name) {
            return i;
        }
        let i = self.fields.len() as u32;
        self.fields.push(name.to_string());
        self.field_ix.insert(name.to_string(), i);
        i
    }

    fn dwarf(&self, module: u16) -> &'a DebugTypes {
        &self.modules[module as usize]
    }

    /// The graph type of DWARF type `id` of `module` (through typedefs and qualifiers).
    pub fn type_of(&mut self, module: u16, id: TypeId) -> Option<TyIx> {
        let types = self.dwarf(module);
        let (rid, t) = types.resolve(id)?;
        if let Some(&ix) = self.by_id.get(&(module, rid)) {
            return Some(ix);
        }
        let size = types.size_of(rid).unwrap_or(0);
        let ix = self.types.len() as TyIx;
        self.types.push(GType {
            module,
            id: rid,
            name: match (&t.name, &t.kind) {
                (Some(n), TypeKind::Struct { .. }) if !n.contains('<') && !n.starts_with('&') => {
                    if types.template_params.contains_key(&rid) || n.contains("::") {
                        n.clone()
                    } else {
                        format!("struct {n}")
                    }
                }
                _ => types.type_name(Some(rid)),
            },
            size,
            align: align_of(types, rid).unwrap_or(1).max(1),
            ops: None,
            self_slots: Vec::new(),
        });
        self.by_id.insert((module, rid), ix);
        Some(ix)
    }

    /// Compiles `ty`'s operations if that has not happened yet.
    pub fn compile(&mut self, ty: TyIx) {
        if self.types[ty as usize].ops.is_some() {
            return;
        }
        // Registered empty first, so a type reached again while compiling is not recompiled.
        self.types[ty as usize].ops = Some(Rc::from([]));
        let (module, id) = (self.types[ty as usize].module, self.types[ty as usize].id);
        let mut ops = Vec::new();
        self.ops_of(module, id, 0, "", &mut ops, 0);
        if ops.len() > MAX_OPS {
            ops.truncate(MAX_OPS);
            let name = self.types[ty as usize].name.clone();
            self.not_judged.push(format!(
                "{name}: more than {MAX_OPS} pointers and values; the rest not judged"
            ));
        }
        let mut self_slots = Vec::new();
        self_pointers(&ops, ty, &mut self_slots);
        self_slots.sort_unstable();
        self_slots.dedup();
        let t = &mut self.types[ty as usize];
        t.ops = Some(ops.into());
        t.self_slots = self_slots;
    }

    pub fn ops(&self, ty: TyIx) -> &[Op] {
        self.types[ty as usize].ops.as_deref().unwrap_or(&[])
    }

    /// [`Layouts::ops`], shared: what the walker holds while it also adds types and fields.
    pub fn shared_ops(&self, ty: TyIx) -> Rc<[Op]> {
        self.types[ty as usize].ops.clone().unwrap_or_else(|| Rc::from([]))
    }

    fn pointee(&mut self, module: u16, pointee: Option<TypeId>) -> Pointee {
        let types = self.dwarf(module);
        let unknown = Pointee {
            ty: None,
            size: 0,
            align: 1,
            function: false,
            zero_sized: false,
        };
        let Some((rid, t)) = pointee.and_then(|p| types.resolve(p)) else {
            return unknown;
        };
        if matches!(t.kind, TypeKind::Function) {
            return Pointee {
                function: true,
                ..unknown
            };
        }
        let size = types.size_of(rid);
        let align = align_of(types, rid).unwrap_or(1).max(1);
        match size {
            Some(0) => Pointee {
                zero_sized: true,
                align,
                ..unknown
            },
            None => Pointee { align, ..unknown },
            Some(size) => Pointee {
                ty: if matches!(t.kind, TypeKind::Other { .. }) {
                    None
                } else {
                    self.type_of(module, rid)
                },
                size,
                align,
                function: false,
                zero_sized: false,
            },
        }
    }

    /// The operations of type `id` placed at `base`, its fields under `prefix`.
    fn ops_of(&mut self, module: u16, id: TypeId, base: u64, prefix: &str, out: &mut Vec<Op>, depth: usize) {
        if depth > MAX_DEPTH || out.len() > MAX_OPS {
            return;
        }
        let types = self.dwarf(module);
        let Some((rid, t)) = types.resolve(id) else {
            return;
        };
        let name = t.name.clone().unwrap_or_default();
        match &t.kind {
            TypeKind::Base { encoding } => match encoding {
                Encoding::Bool if t.size == Some(1) => out.push(Op::Bool {
                    at: base,
                    field: self.field(prefix),
                }),
                Encoding::Utf if t.size == Some(4) => out.push(Op::Char {
                    at: base,
                    field: self.field(prefix),
                }),
                _ => {}
            },
            TypeKind::Enum { enumerators, .. } if !enumerators.is_empty() => {
                let size = types.size_of(rid).unwrap_or(0).min(8);
                if size == 0 {
                    return;
                }
                let mask = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
                let values: Vec<(String, u64)> = enumerators
                    .iter()
                    .map(|e| (e.name.clone(), e.value as u64 & mask))
                    .collect();
                let flags = values.iter().all(|(_, v)| *v == 0 || v.is_power_of_two());
                let all_bits = values.iter().fold(0, |a, (_, v)| a | v);
                let ix = self.enums.len() as u32;
                self.enums.push(EnumValues {
                    type_name: types.type_name(Some(rid)),
                    values,
                    flags,
                    all_bits,
                });
                out.push(Op::Enum {
                    at: base,
                    size: size as u8,
                    field: self.field(prefix),
                    values: ix,
                });
            }
            TypeKind::Pointer { pointee } => {
                let to = self.pointee(module, *pointee);
                out.push(Op::Pointer {
                    at: base,
                    field: self.field(prefix),
                    to,
                    non_null: rust_non_null(&name),
                });
            }
            TypeKind::Struct {
                members,
                variant_part: None,
            } => {
                if let Some(op) = self.rust_buffer(module, rid, &name, members, base, prefix) {
                    out.push(op);
                    return;
                }
                let skip_names = transparent(&name);
                let first = out.len();
                for m in members {
                    let (Some(offset), Some(mt)) = (m.offset, m.type_id) else {
                        continue;
                    };
                    if m.bit_size.is_some() {
                        continue;
                    }
                    let sub = match (&m.name, skip_names) {
                        (Some(n), false) => join(prefix, n),
                        _ => prefix.to_string(),
                    };
                    self.ops_of(module, mt, base + offset, &sub, out, depth + 1);
                }
                // `Box<T>` is `Unique<T>` is `NonNull<T>`: its one raw pointer is never NULL.
                if name.starts_with("NonNull<") {
                    for op in &mut out[first..] {
                        if let Op::Pointer { non_null, .. } = op {
                            *non_null = true;
                        }
                    }
                }
            }
            TypeKind::Struct {
                variant_part: Some(vp), ..
            } => {
                let vp = vp.clone();
                let option = name.starts_with("Option<");
                let payload = |l: &mut Layouts<'a>, v: &crate::introspect::Variant| -> Vec<Op> {
                    let mut ops = Vec::new();
                    if let Some(pt) = v.type_id {
                        // Option's `Some.__0` adds nothing to a path; other variants keep their name.
                        let sub = if option {
                            prefix.to_string()
                        } else {
                            join(prefix, v.name.as_deref().unwrap_or("<variant>"))
                        };
                        l.payload_ops(
                            module,
                            pt,
                            base + v.offset.unwrap_or(0),
                            &sub,
                            option,
                            &mut ops,
                            depth + 1,
                        );
                    }
                    ops
                };
                let Some(d) = vp.discriminant.as_ref() else {
                    // One variant: always live.
                    for v in &vp.variants {
                        let ops = payload(self, v);
                        out.extend(ops);
                    }
                    return;
                };
                let (Some(d_offset), Some(d_ty)) = (d.offset, d.type_id) else {
                    return;
                };
                let size = types.size_of(d_ty).unwrap_or(0).min(8);
                if size == 0 {
                    return;
                }
                let mask = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
                let mut arms = Vec::new();
                let mut default = None;
                for v in &vp.variants {
                    let ops = payload(self, v);
                    match v.discr_value {
                        Some(value) => arms.push((value & mask, v.name.clone().unwrap_or_default(), ops)),
                        None => default = Some(ops),
                    }
                }
                let type_name = types.type_name(Some(rid));
                out.push(Op::Variant {
                    at: base + d_offset,
                    size: size as u8,
                    field: self.field(prefix),
                    type_name: self.field(&type_name),
                    arms,
                    default,
                });
            }
            TypeKind::Union { .. } => {
                let what = format!(
                    "{} (a union: which member is live is unknown)",
                    types.type_name(Some(rid))
                );
                if !self.not_judged.contains(&what) {
                    self.not_judged.push(what);
                }
            }
            TypeKind::Array {
                element: Some(element),
                dims,
            } => {
                let Some(count) = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul((*d)?)) else {
                    return;
                };
                let Some(stride) = types.size_of(*element).filter(|s| *s > 0) else {
                    return;
                };
                let mut one = Vec::new();
                self.ops_of(module, *element, 0, "", &mut one, depth + 1);
                if one.is_empty() || count == 0 {
                    return;
                }
                if (count as usize).saturating_mul(one.len()) <= MAX_EXPANDED_OPS {
                    for i in 0..count {
                        let at = base + i * stride;
                        let p = format!("{prefix}[{i}]");
                        for op in &one {
                            let s = op.shifted(at, &p, self);
                            out.push(s);
                        }
                    }
                } else {
                    out.push(Op::Array {
                        at: base,
                        count,
                        stride,
                        field: self.field(prefix),
                        ops: one,
                    });
                }
            }
            _ => {}
        }
    }

    /// A variant's payload: for Option, its single `__0` member without the name.
    #[allow(clippy::too_many_arguments)]
    fn payload_ops(
        &mut self,
        module: u16,
        id: TypeId,
        base: u64,
        prefix: &str,
        option: bool,
        out: &mut Vec<Op>,
        depth: usize,
    ) {
        let types = self.dwarf(module);
        if option {
            if let Some((_, t)) = types.resolve(id) {
                if let TypeKind::Struct { members, .. } = &t.kind {
                    if let [m] = &members[..] {
                        if let (Some(o), Some(mt)) = (m.offset, m.type_id) {
                            self.ops_of(module, mt, base + o, prefix, out, depth + 1);
                            return;
                        }
                    }
                }
            }
        }
        self.ops_of(module, id, base, prefix, out, depth);
    }

    /// A Rust `Vec<T>`, `String` or slice (`&[T]`, `&str`, `Box<[T]>`), as one buffer operation.
    fn rust_buffer(
        &mut self,
        module: u16,
        rid: TypeId,
        name: &str,
        members: &[crate::introspect::Member],
        base: u64,
        prefix: &str,
    ) -> Option<Op> {
        let types = self.dwarf(module);
        let member = |n: &str| members.iter().find(|m| m.name.as_deref() == Some(n));
        // A slice: data_ptr and length.
        if let (Some(ptr), Some(len), 2) = (member("data_ptr"), member("length"), members.len()) {
            let Shape::Pointer { pointee_id, .. } = types.shape(ptr.type_id) else {
                return None;
            };
            let elem = self.pointee(module, pointee_id);
            return Some(Op::Buffer {
                at: base + ptr.offset?,
                len_at: base + len.offset?,
                cap_at: None,
                field: self.field(prefix),
                elem,
            });
        }
        // String { vec: Vec<u8> }.
        if name == "String" {
            if let (Some(vec), 1) = (member("vec"), members.len()) {
                let (vid, vt) = types.resolve(vec.type_id?)?;
                if let TypeKind::Struct {
                    members: vm,
                    variant_part: None,
                } = &vt.kind
                {
                    let vname = vt.name.clone().unwrap_or_default();
                    return self.rust_buffer(module, vid, &vname, vm, base + vec.offset?, prefix);
                }
            }
            return None;
        }
        // Vec<T, A> { buf: RawVec { inner: RawVecInner { ptr, cap, .. }, .. }, len }.
        if !name.starts_with("Vec<") {
            return None;
        }
        let elem_id = types.template_param(rid, "T")?;
        let (buf, len) = (member("buf")?, member("len")?);
        let buf_at = buf.offset?;
        let ptr_at = buf_at
            + first_member(types, buf.type_id?, &|m, t| {
                m.name.as_deref() != Some("cap") && matches!(t.kind, TypeKind::Pointer { .. })
            })?;
        let cap_at =
            first_member(types, buf.type_id?, &|m, _| m.name.as_deref() == Some("cap")).map(|c| base + buf_at + c);
        let elem = self.pointee(module, Some(elem_id));
        Some(Op::Buffer {
            at: base + ptr_at,
            len_at: base + len.offset?,
            cap_at,
            field: self.field(prefix),
            elem,
        })
    }
}

/// The offsets of the pointers to `ty` among `ops`, also inside a Rust enum's arms (a `next`
/// that is an `Option<Box<Node>>`); array elements are not links of the type itself.
fn self_pointers(ops: &[Op], ty: TyIx, out: &mut Vec<u64>) {
    for op in ops {
        match op {
            Op::Pointer { at, to, .. } if to.ty == Some(ty) => out.push(*at),
            Op::Variant { arms, default, .. } => {
                for (_, _, arm) in arms {
                    self_pointers(arm, ty, out);
                }
                if let Some(d) = default {
                    self_pointers(d, ty, out);
                }
            }
            _ => {}
        }
    }
}

/// The offset (from the start of `id`) of the first member, depth first, that `want` accepts
/// (the member and its resolved type).
fn first_member(
    types: &DebugTypes,
    id: TypeId,
    want: &dyn Fn(&crate::introspect::Member, &crate::introspect::Type) -> bool,
) -> Option<u64> {
    fn go(
        types: &DebugTypes,
        id: TypeId,
        want: &dyn Fn(&crate::introspect::Member, &crate::introspect::Type) -> bool,
        depth: usize,
    ) -> Option<u64> {
        if depth > 8 {
            return None;
        }
        let (_, t) = types.resolve(id)?;
        let TypeKind::Struct { members, .. } = &t.kind else {
            return None;
        };
        for m in members {
            let (Some(o), Some(mt)) = (m.offset, m.type_id) else {
                continue;
            };
            let Some((_, rt)) = types.resolve(mt) else {
                continue;
            };
            if want(m, rt) {
                return Some(o);
            }
            if let Some(inner) = go(types, mt, want, depth + 1) {
                return Some(o + inner);
            }
        }
        None
    }
    go(types, id, want, 0)
}
