//! Stage 1 (introspect): what the globals of a binary are, from its DWARF debug info.
//!
//! [`DebugTypes`] holds every type DIE of `.debug_info` (keyed by its section offset, which is
//! stable across units, so cross-unit references resolve) and every variable with a static
//! location (a lone `DW_OP_addr`/`DW_OP_addrx`: globals, statics, function-local statics).
//! Types are kept as DWARF says them — base types with their encoding, structs, unions, C enums,
//! Rust enums (a struct holding a `DW_TAG_variant_part`), pointers, arrays, typedefs,
//! qualifiers — and [`DebugTypes::fields`] shows a struct's members through typedefs and
//! qualifiers. [`DebugTypes::object_layout`] flattens a global into the scalar [`Field`]s
//! memzinc reasons about (the reason stage turns them into target specs).
//!
//! The reader never trusts the input: every malformed unit, attribute or reference becomes an
//! error or an unresolved (`None`) type, never a panic; type graphs are walked with depth limits
//! and the DIE tree with an explicit stack, so cycles and deep nesting cannot overflow anything.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gimli::{constants as dw, AttributeValue, DebuggingInformationEntry, EndianSlice, RunTimeEndian};
use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};

use super::field::Field;
use crate::base::{Error, Result};

type Slice<'a> = EndianSlice<'a, RunTimeEndian>;
type Die<'a> = DebuggingInformationEntry<Slice<'a>>;
type Unit<'a> = gimli::Unit<Slice<'a>>;

/// A type's identity: the `.debug_info` offset of its DIE.
pub type TypeId = u64;

/// Typedef chains, pointer renderings and flattening stop this deep.
const MAX_DEPTH: usize = 32;
/// Arrays of scalars are flattened element by element up to this many elements.
const MAX_FLATTENED_ELEMENTS: u64 = 256;

/// How a base type's bits are to be read (`DW_AT_encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Signed,
    Unsigned,
    SignedChar,
    UnsignedChar,
    /// A Unicode code point (Rust's `char`).
    Utf,
    Bool,
    Float,
    Address,
    Other,
}

impl Encoding {
    pub fn is_signed(self) -> bool {
        matches!(self, Encoding::Signed | Encoding::SignedChar)
    }

    fn from_dw(ate: dw::DwAte) -> Encoding {
        match ate {
            dw::DW_ATE_signed => Encoding::Signed,
            dw::DW_ATE_unsigned => Encoding::Unsigned,
            dw::DW_ATE_signed_char => Encoding::SignedChar,
            dw::DW_ATE_unsigned_char => Encoding::UnsignedChar,
            dw::DW_ATE_UTF => Encoding::Utf,
            dw::DW_ATE_boolean => Encoding::Bool,
            dw::DW_ATE_float => Encoding::Float,
            dw::DW_ATE_address => Encoding::Address,
            _ => Encoding::Other,
        }
    }
}

/// `const`, `volatile`, `restrict`, `_Atomic`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Qualifier {
    Const,
    Volatile,
    Restrict,
    Atomic,
}

/// A data member of a struct or union (or the payload of a Rust enum variant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `None` for an anonymous member or a C++ base class.
    pub name: Option<String>,
    /// Byte offset from the start of the containing object (`DW_AT_data_member_location`).
    pub offset: Option<u64>,
    pub type_id: Option<TypeId>,
    /// For bit fields: width and offset in bits from the start of the containing object.
    pub bit_size: Option<u64>,
    pub bit_offset: Option<u64>,
    pub artificial: bool,
}

/// One variant of a Rust enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's name (the name of the member that carries its payload).
    pub name: Option<String>,
    /// The discriminant value that selects it; `None` for the default variant (the dataful
    /// variant of a niche-optimised enum).
    pub discr_value: Option<u64>,
    /// The payload struct and where it starts.
    pub type_id: Option<TypeId>,
    pub offset: Option<u64>,
}

/// The tagged part of a Rust enum (`DW_TAG_variant_part`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantPart {
    /// The member holding the discriminant (tag or niche): its offset and type. `None` for an
    /// enum with a single variant.
    pub discriminant: Option<Member>,
    pub variants: Vec<Variant>,
}

/// An enumerator of a C-like enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enumerator {
    pub name: String,
    /// The value; values above `i64::MAX` are kept as their bit pattern.
    pub value: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TypeKind {
    Base {
        encoding: Encoding,
    },
    /// A struct or class; a Rust enum is a struct whose `variant_part` is set.
    Struct {
        members: Vec<Member>,
        variant_part: Option<VariantPart>,
    },
    Union {
        members: Vec<Member>,
    },
    /// A C-like enum (`DW_TAG_enumeration_type`).
    Enum {
        underlying: Option<TypeId>,
        enumerators: Vec<Enumerator>,
    },
    /// A pointer or reference; `pointee` is `None` for `void *`.
    Pointer {
        pointee: Option<TypeId>,
    },
    /// Dimensions outermost first; `None` for an unknown count (a flexible array member).
    Array {
        element: Option<TypeId>,
        dims: Vec<Option<u64>>,
    },
    Typedef {
        target: Option<TypeId>,
    },
    Qualified {
        qualifier: Qualifier,
        target: Option<TypeId>,
    },
    Function,
    /// Anything else (`DW_TAG_unspecified_type`, ...): its tag.
    Other {
        tag: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Type {
    pub name: Option<String>,
    /// `DW_AT_byte_size`; for pointers without one, the unit's address size.
    pub size: Option<u64>,
    #[serde(flatten)]
    pub kind: TypeKind,
}

/// A variable with a static address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    /// The name within its namespaces, functions and types (`healme::HEALME_STATE`,
    /// `main::counter` for a C function's static).
    pub qualified_name: String,
    pub linkage_name: Option<String>,
    /// The link-time address (`DW_OP_addr`).
    pub file_address: u64,
    /// `file_address` plus the load bias ([`DebugTypes::with_bias`]).
    pub address: u64,
    pub type_id: Option<TypeId>,
}

/// A generic type's parameter (`DW_TAG_template_type_param`): Rust's `Vec<T, A>` names its
/// element type only here (its buffer is a type-erased `*const u8`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParam {
    pub name: String,
    pub type_id: Option<TypeId>,
}

/// The DWARF types and static variables of one binary.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DebugTypes {
    pub types: BTreeMap<TypeId, Type>,
    /// The template type parameters of the structs that have some, in declaration order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_params: BTreeMap<TypeId, Vec<TemplateParam>>,
    pub variables: Vec<Variable>,
    /// Pointer size of the (last) unit read.
    pub address_size: u8,
    pub bias: u64,
}

/// What a field is, seen through typedefs and qualifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    Base {
        encoding: Encoding,
    },
    Pointer {
        pointee: String,
        pointee_id: Option<TypeId>,
    },
    Array {
        element: String,
        element_id: Option<TypeId>,
        /// Total element count over all dimensions, when every dimension is known.
        count: Option<u64>,
    },
    Struct,
    /// A Rust enum (a struct with a variant part).
    TaggedUnion,
    Union,
    Enum {
        signed: bool,
    },
    Function,
    Unknown,
}

/// A member of a struct or union, resolved for display and layout checks: the [`Field`] (size 0
/// when DWARF gives none) with what it is through typedefs and qualifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    #[serde(flatten)]
    pub field: Field,
    pub type_id: Option<TypeId>,
    #[serde(flatten)]
    pub shape: Shape,
    pub bit_size: Option<u64>,
}

/// A global object as scalars: the shape a target spec needs, from DWARF or from the
/// `memzinc-describe` registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLayout {
    pub symbol: String,
    pub type_name: String,
    /// Runtime address.
    pub address: u64,
    pub size: u64,
    pub fields: Vec<Field>,
}

fn layout_error(object: &str, why: String) -> Error {
    Error::Layout {
        object: object.to_string(),
        why,
    }
}

fn dwarf_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::DebugInfo {
        path: path.into(),
        why: why.to_string(),
    }
}

impl DebugTypes {
    /// Reads the DWARF of the ELF file at `path`.
    pub fn load(path: &Path) -> Result<DebugTypes> {
        let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        DebugTypes::parse(&data, path)
    }

    /// The DWARF of `pid`'s main binary, with its load bias applied.
    pub fn for_process(pid: i32) -> Result<DebugTypes> {
        let exe = super::process::exe_path(pid)?;
        let proc_exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let data = std::fs::read(&proc_exe).map_err(|e| Error::io(&proc_exe, e))?;
        let types = DebugTypes::parse(&data, &exe)?;
        let maps = super::process::read_maps(pid)?;
        let exe_str = exe.display().to_string();
        let mapped = maps
            .iter()
            .filter(|m| m.path == exe_str && m.offset == 0)
            .map(|m| m.start)
            .min()
            .ok_or_else(|| dwarf_error(&exe, format!("not mapped at offset 0 in process {pid}")))?;
        let file = object::File::parse(&*data).map_err(|e| dwarf_error(&exe, e))?;
        Ok(types.with_bias(super::symbols::load_bias(&file, mapped)))
    }

    /// Parses the DWARF sections of an ELF image. `path` only names it in errors. A file with no
    /// `.debug_info` is an error (nothing to describe), as is any malformed unit.
    pub fn parse(data: &[u8], path: &Path) -> Result<DebugTypes> {
        DebugTypes::parse_units(data, path, |_| true)
    }

    /// [`DebugTypes::parse`] of only the compile units whose name (`DW_AT_name` of the unit,
    /// usually its source file) `keep` accepts: a large library's debug file read for the few
    /// types of one source file (glibc's `malloc.c`). Compressed sections (`SHF_COMPRESSED`,
    /// zlib) are inflated, as distributions ship their debug files.
    pub fn parse_units(data: &[u8], path: &Path, keep: impl Fn(&str) -> bool) -> Result<DebugTypes> {
        let file = object::File::parse(data).map_err(|e| dwarf_error(path, e))?;
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        if file.section_by_name(".debug_info").is_none() {
            return Err(dwarf_error(path, "no .debug_info (build with -g / debug = true)"));
        }
        let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>> {
            match file.section_by_name(id.name()) {
                Some(section) => section_data(&section).map_err(|e| dwarf_error(path, format!("{}: {e}", id.name()))),
                None => Ok(Cow::Borrowed(&[][..])),
            }
        };
        let sections = gimli::DwarfSections::load(load)?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
        let mut out = DebugTypes::default();
        let mut units = dwarf.units();
        loop {
            let header = match units.next() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(dwarf_error(path, format!("unit header: {e}"))),
            };
            let at = header.offset().0;
            let unit = dwarf
                .unit(header)
                .map_err(|e| dwarf_error(path, format!("unit at {at:#x}: {e}")))?;
            let name = unit.name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !keep(&name) {
                continue;
            }
            out.address_size = unit.header.address_size();
            read_unit(&dwarf, &unit, &mut out).map_err(|e| dwarf_error(path, format!("unit at {at:#x}: {e}")))?;
        }
        Ok(out)
    }

    /// Sets the load bias: every variable's `address` becomes `file_address + bias`.
    pub fn with_bias(mut self, bias: u64) -> DebugTypes {
        self.bias = bias;
        for v in &mut self.variables {
            v.address = v.file_address.wrapping_add(bias);
        }
        self
    }

    /// The variable called `name`: its name, qualified name or linkage name. A name that is
    /// ambiguous (two statics `x` in two functions) matches the first; use the qualified name.
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables
            .iter()
            .find(|v| v.qualified_name == name || v.linkage_name.as_deref() == Some(name))
            .or_else(|| self.variables.iter().find(|v| v.name == name))
    }

    pub fn get(&self, id: TypeId) -> Option<&Type> {
        self.types.get(&id)
    }

    /// The type behind typedefs and qualifiers.
    pub fn resolve(&self, id: TypeId) -> Option<(TypeId, &Type)> {
        let mut id = id;
        for _ in 0..MAX_DEPTH {
            let t = self.types.get(&id)?;
            match t.kind {
                TypeKind::Typedef { target } | TypeKind::Qualified { target, .. } => id = target?,
                _ => return Some((id, t)),
            }
        }
        None
    }

    /// The size in bytes: `DW_AT_byte_size`, or through typedefs, qualifiers and arrays.
    pub fn size_of(&self, id: TypeId) -> Option<u64> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: TypeId, depth: usize) -> Option<u64> {
        if depth > MAX_DEPTH {
            return None;
        }
        let t = self.types.get(&id)?;
        if let Some(size) = t.size {
            return Some(size);
        }
        match &t.kind {
            TypeKind::Typedef { target } | TypeKind::Qualified { target, .. } => {
                self.size_of_depth((*target)?, depth + 1)
            }
            TypeKind::Array { element, dims } => {
                let element = self.size_of_depth((*element)?, depth + 1)?;
                dims.iter().try_fold(element, |acc, d| acc.checked_mul((*d)?))
            }
            TypeKind::Pointer { .. } => Some(self.address_size as u64),
            _ => None,
        }
    }

    /// A readable name: DWARF's own where it has one (Rust names its pointers `*const u8`),
    /// otherwise built C-style (`struct node *`, `int[4]`, `const char *`).
    pub fn type_name(&self, id: Option<TypeId>) -> String {
        self.type_name_depth(id, 0)
    }

    fn type_name_depth(&self, id: Option<TypeId>, depth: usize) -> String {
        let Some(id) = id else {
            return "void".into();
        };
        if depth > MAX_DEPTH {
            return "…".into();
        }
        let Some(t) = self.types.get(&id) else {
            return format!("<type {id:#x}>");
        };
        if let Some(name) = &t.name {
            return name.clone();
        }
        match &t.kind {
            TypeKind::Pointer { pointee } => format!("{} *", self.type_name_depth(*pointee, depth + 1)),
            TypeKind::Array { element, dims } => {
                let mut s = self.type_name_depth(*element, depth + 1);
                for d in dims {
                    match d {
                        Some(n) => s.push_str(&format!("[{n}]")),
                        None => s.push_str("[]"),
                    }
                }
                s
            }
            TypeKind::Qualified { qualifier, target } => {
                let q = match qualifier {
                    Qualifier::Const => "const",
                    Qualifier::Volatile => "volatile",
                    Qualifier::Restrict => "restrict",
                    Qualifier::Atomic => "_Atomic",
                };
                format!("{q} {}", self.type_name_depth(*target, depth + 1))
            }
            TypeKind::Typedef { target } => self.type_name_depth(*target, depth + 1),
            TypeKind::Struct { .. } => "struct <anonymous>".into(),
            TypeKind::Union { .. } => "union <anonymous>".into(),
            TypeKind::Enum { .. } => "enum <anonymous>".into(),
            TypeKind::Function => "fn".into(),
            TypeKind::Base { .. } | TypeKind::Other { .. } => format!("<type {id:#x}>"),
        }
    }

    /// What `id` is, through typedefs and qualifiers.
    pub fn shape(&self, id: Option<TypeId>) -> Shape {
        let Some((_, t)) = id.and_then(|id| self.resolve(id)) else {
            return Shape::Unknown;
        };
        match &t.kind {
            TypeKind::Base { encoding } => Shape::Base { encoding: *encoding },
            TypeKind::Pointer { pointee } => Shape::Pointer {
                pointee: self.type_name(*pointee),
                pointee_id: *pointee,
            },
            TypeKind::Array { element, dims } => Shape::Array {
                element: self.type_name(*element),
                element_id: *element,
                count: dims.iter().try_fold(1u64, |acc, d| acc.checked_mul((*d)?)),
            },
            TypeKind::Struct { variant_part: None, .. } => Shape::Struct,
            TypeKind::Struct { .. } => Shape::TaggedUnion,
            TypeKind::Union { .. } => Shape::Union,
            TypeKind::Enum { underlying, .. } => Shape::Enum {
                signed: self.enum_is_signed(t, *underlying),
            },
            TypeKind::Function => Shape::Function,
            TypeKind::Typedef { .. } | TypeKind::Qualified { .. } | TypeKind::Other { .. } => Shape::Unknown,
        }
    }

    fn enum_is_signed(&self, t: &Type, underlying: Option<TypeId>) -> bool {
        match underlying.and_then(|u| self.resolve(u)) {
            Some((
                _,
                Type {
                    kind: TypeKind::Base { encoding },
                    ..
                },
            )) => encoding.is_signed(),
            // Without DW_AT_type (older GCC), C enums with a negative enumerator are signed.
            _ => matches!(&t.kind, TypeKind::Enum { enumerators, .. } if enumerators.iter().any(|e| e.value < 0)),
        }
    }

    /// The members of a struct or union type (through typedefs), in declaration order.
    pub fn fields(&self, id: TypeId) -> Result<Vec<FieldInfo>> {
        let name = self.type_name(Some(id));
        let (_, t) = self
            .resolve(id)
            .ok_or_else(|| layout_error(&name, format!("type {id:#x} is unknown")))?;
        let members = match &t.kind {
            TypeKind::Struct { members, .. } | TypeKind::Union { members } => members,
            _ => return Err(layout_error(&name, "not a struct or union".into())),
        };
        Ok(members
            .iter()
            .map(|m| FieldInfo {
                field: Field {
                    name: m.name.clone().unwrap_or_default(),
                    type_name: self.type_name(m.type_id),
                    offset: m.offset.or(m.bit_offset.map(|b| b / 8)).unwrap_or(0),
                    size: m.type_id.and_then(|t| self.size_of(t)).unwrap_or(0),
                    signed: matches!(self.shape(m.type_id), Shape::Base { encoding } if encoding.is_signed())
                        || matches!(self.shape(m.type_id), Shape::Enum { signed: true }),
                },
                type_id: m.type_id,
                shape: self.shape(m.type_id),
                bit_size: m.bit_size,
            })
            .collect())
    }

    /// The template type parameter `name` of struct `id` (through typedefs), e.g. `T` of a
    /// Rust `Vec<T, A>`.
    pub fn template_param(&self, id: TypeId, name: &str) -> Option<TypeId> {
        let (rid, _) = self.resolve(id)?;
        self.template_params.get(&rid)?.iter().find(|p| p.name == name)?.type_id
    }

    /// The fields of a struct or union named `name`.
    pub fn type_named(&self, name: &str) -> Option<TypeId> {
        self.types
            .iter()
            .find(|(_, t)| {
                t.name.as_deref() == Some(name)
                    && matches!(
                        t.kind,
                        TypeKind::Struct { .. } | TypeKind::Union { .. } | TypeKind::Enum { .. }
                    )
                    && t.size.is_some()
            })
            .map(|(id, _)| *id)
    }

    /// The global `symbol` flattened into its scalar fields (integers, bools, chars, floats,
    /// pointers, C enums), nested structs as `a.b`, arrays of up to 256 elements as `a[i]`.
    /// Unions, Rust enums and bit fields are left out: one offset does not give their value.
    pub fn object_layout(&self, symbol: &str) -> Result<ObjectLayout> {
        let err = |why: String| layout_error(symbol, why);
        let v = self
            .variable(symbol)
            .ok_or_else(|| err("no variable of that name with a static address in the debug info".into()))?;
        let type_id = v.type_id.ok_or_else(|| err("it has no type".into()))?;
        self.layout_at(symbol, type_id, v.address)
    }

    /// The layout of an object of type `type_id` at `address`, named `name` in errors.
    pub fn layout_at(&self, name: &str, type_id: TypeId, address: u64) -> Result<ObjectLayout> {
        let symbol = name;
        let err = |why: String| layout_error(symbol, why);
        let size = self
            .size_of(type_id)
            .ok_or_else(|| err(format!("the size of {} is unknown", self.type_name(Some(type_id)))))?;
        let mut fields = Vec::new();
        self.flatten(type_id, "", 0, 0, &mut fields).map_err(err)?;
        Ok(ObjectLayout {
            symbol: symbol.to_string(),
            type_name: self.type_name(Some(type_id)),
            address,
            size,
            fields,
        })
    }

    /// The member `name` of the struct or union `id` (through typedefs): its offset and type.
    pub fn member(&self, id: TypeId, name: &str) -> Option<(u64, TypeId)> {
        let (_, t) = self.resolve(id)?;
        let members = match &t.kind {
            TypeKind::Struct { members, .. } | TypeKind::Union { members } => members,
            _ => return None,
        };
        members
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .and_then(|m| Some((m.offset.unwrap_or(0), m.type_id?)))
    }

    fn flatten(&self, id: TypeId, prefix: &str, base: u64, depth: usize, out: &mut Vec<Field>) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{prefix}: nested more than {MAX_DEPTH} deep"));
        }
        let (_, t) = self
            .resolve(id)
            .ok_or_else(|| format!("{prefix}: type {id:#x} is unknown"))?;
        let scalar = |signed: bool, out: &mut Vec<Field>| -> Result<(), String> {
            let size = self
                .size_of(id)
                .ok_or_else(|| format!("{prefix}: the size of {} is unknown", self.type_name(Some(id))))?;
            out.push(Field {
                name: prefix.to_string(),
                offset: base,
                size,
                signed,
                type_name: self.type_name(Some(id)),
            });
            Ok(())
        };
        match &t.kind {
            TypeKind::Base { encoding } => scalar(encoding.is_signed(), out),
            TypeKind::Pointer { .. } => scalar(false, out),
            TypeKind::Enum { underlying, .. } => scalar(self.enum_is_signed(t, *underlying), out),
            TypeKind::Struct {
                members,
                variant_part: None,
            } => {
                for m in members {
                    if m.bit_size.is_some() {
                        continue;
                    }
                    let (Some(offset), Some(member_type)) = (m.offset, m.type_id) else {
                        continue;
                    };
                    let name = match (&m.name, prefix.is_empty()) {
                        (Some(n), true) => n.clone(),
                        (Some(n), false) => format!("{prefix}.{n}"),
                        // An anonymous struct member's fields belong to the parent.
                        (None, _) => prefix.to_string(),
                    };
                    let at = base
                        .checked_add(offset)
                        .ok_or_else(|| format!("{name}: offset overflows"))?;
                    self.flatten(member_type, &name, at, depth + 1, out)?;
                }
                Ok(())
            }
            TypeKind::Array {
                element: Some(element),
                dims,
            } => {
                let count = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul((*d)?));
                let (Some(count), Some(stride)) = (count, self.size_of(*element)) else {
                    return Ok(());
                };
                if count > MAX_FLATTENED_ELEMENTS {
                    return Ok(());
                }
                for i in 0..count {
                    let at = stride
                        .checked_mul(i)
                        .and_then(|o| o.checked_add(base))
                        .ok_or_else(|| format!("{prefix}[{i}]: offset overflows"))?;
                    self.flatten(*element, &format!("{prefix}[{i}]"), at, depth + 1, out)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the DIE tree.

/// What an open DIE (one with children) means for the DIEs inside it.
enum Frame {
    /// A namespace, function, lexical block or unit: contributes `name` to qualified names.
    Scope(Option<String>),
    /// A struct, union or class being filled with members; also a naming scope.
    Aggregate(TypeId, Option<String>),
    Enum(TypeId),
    Array(TypeId),
    VariantPart {
        owner: TypeId,
        discr: Option<u64>,
        members: Vec<(u64, Member)>,
        variants: Vec<Variant>,
    },
    Variant(Variant),
    /// Anything else: its children matter only if they are types or variables.
    Other,
}

/// Most bytes a compressed section may inflate to (a hostile header cannot make memzinc
/// allocate more).
const MAX_SECTION: u64 = 1 << 30;

/// A section's bytes, inflated when it is compressed (`SHF_COMPRESSED` with zlib, or a GNU
/// `.zdebug` section).
fn section_data<'a>(section: &object::Section<'a, '_>) -> std::result::Result<Cow<'a, [u8]>, String> {
    let compressed = section.compressed_data().map_err(|e| e.to_string())?;
    match compressed.format {
        object::CompressionFormat::None => Ok(Cow::Borrowed(compressed.data)),
        object::CompressionFormat::Zlib => {
            if compressed.uncompressed_size > MAX_SECTION {
                return Err(format!("inflates to {} bytes", compressed.uncompressed_size));
            }
            use std::io::Read;
            let mut out = Vec::with_capacity(compressed.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(compressed.data)
                .take(compressed.uncompressed_size)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib: {e}"))?;
            if out.len() as u64 != compressed.uncompressed_size {
                return Err(format!(
                    "inflates to {} bytes, its header says {}",
                    out.len(),
                    compressed.uncompressed_size
                ));
            }
            Ok(Cow::Owned(out))
        }
        other => Err(format!("compressed as {other:?}, which memzinc does not inflate")),
    }
}

fn die_id(unit: &Unit<'_>, offset: gimli::UnitOffset) -> Option<u64> {
    offset.to_debug_info_offset(&unit.header).map(|o| o.0 as u64)
}

fn ref_attr(unit: &Unit<'_>, entry: &Die<'_>, at: dw::DwAt) -> Option<TypeId> {
    match entry.attr_value(at)? {
        AttributeValue::UnitRef(o) => die_id(unit, o),
        AttributeValue::DebugInfoRef(o) => Some(o.0 as u64),
        _ => None,
    }
}

fn string_attr(dwarf: &gimli::Dwarf<Slice<'_>>, unit: &Unit<'_>, entry: &Die<'_>, at: dw::DwAt) -> Option<String> {
    let value = entry.attr(at)?.raw_value();
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(crate::base::printable(s.to_string_lossy().into_owned()))
}

fn udata_attr(entry: &Die<'_>, at: dw::DwAt) -> Option<u64> {
    entry.attr(at)?.udata_value()
}

/// A member offset: a constant, or (DWARF 2) `DW_OP_plus_uconst N` / `DW_OP_constu N`.
fn member_offset(unit: &Unit<'_>, entry: &Die<'_>) -> Option<u64> {
    let attr = entry.attr(dw::DW_AT_data_member_location)?;
    if let Some(v) = attr.udata_value() {
        return Some(v);
    }
    let mut ops = attr.exprloc_value()?.operations(unit.encoding());
    let value = match ops.next().ok()?? {
        gimli::Operation::PlusConstant { value } | gimli::Operation::UnsignedConstant { value } => value,
        _ => return None,
    };
    matches!(ops.next(), Ok(None)).then_some(value)
}

/// The address of a variable whose whole location is one `DW_OP_addr` / `DW_OP_addrx`.
/// Thread-locals, register and stack locations have none, and neither has a variable whose
/// address is 0: the linker discarded it (an unused static) and left its DWARF behind.
fn static_address(dwarf: &gimli::Dwarf<Slice<'_>>, unit: &Unit<'_>, entry: &Die<'_>) -> Option<u64> {
    let mut ops = entry
        .attr(dw::DW_AT_location)?
        .exprloc_value()?
        .operations(unit.encoding());
    let address = match ops.next().ok()?? {
        gimli::Operation::Address { address } => address,
        gimli::Operation::AddressIndex { index } => dwarf.address(unit, index).ok()?,
        _ => return None,
    };
    (address != 0 && matches!(ops.next(), Ok(None))).then_some(address)
}

fn read_member(unit: &Unit<'_>, dwarf: &gimli::Dwarf<Slice<'_>>, entry: &Die<'_>) -> Member {
    let bit_offset = udata_attr(entry, dw::DW_AT_data_bit_offset);
    Member {
        name: string_attr(dwarf, unit, entry, dw::DW_AT_name),
        offset: member_offset(unit, entry).or(bit_offset.map(|b| b / 8)),
        type_id: ref_attr(unit, entry, dw::DW_AT_type),
        bit_size: udata_attr(entry, dw::DW_AT_bit_size),
        bit_offset,
        artificial: matches!(entry.attr_value(dw::DW_AT_artificial), Some(AttributeValue::Flag(true))),
    }
}

fn close(frame: Frame, stack: &mut [(isize, Frame)], out: &mut DebugTypes) {
    match frame {
        Frame::Variant(v) => {
            if let Some((_, Frame::VariantPart { variants, .. })) = stack.last_mut() {
                variants.push(v);
            }
        }
        Frame::VariantPart {
            owner,
            discr,
            members,
            variants,
        } => {
            let discriminant = discr.and_then(|d| members.into_iter().find(|(o, _)| *o == d).map(|(_, m)| m));
            if let Some(Type {
                kind: TypeKind::Struct { variant_part, .. },
                ..
            }) = out.types.get_mut(&owner)
            {
                *variant_part = Some(VariantPart { discriminant, variants });
            }
        }
        _ => {}
    }
}

fn read_unit(dwarf: &gimli::Dwarf<Slice<'_>>, unit: &Unit<'_>, out: &mut DebugTypes) -> gimli::Result<()> {
    let mut stack: Vec<(isize, Frame)> = Vec::new();
    let mut cursor = unit.entries();
    while let Some(entry) = cursor.next_dfs()? {
        let depth = entry.depth();
        while stack.last().is_some_and(|(d, _)| *d >= depth) {
            if let Some((_, frame)) = stack.pop() {
                close(frame, &mut stack, out);
            }
        }
        let Some(id) = die_id(unit, entry.offset()) else {
            continue;
        };
        let name = || string_attr(dwarf, unit, entry, dw::DW_AT_name);
        let size = udata_attr(entry, dw::DW_AT_byte_size);
        let target = ref_attr(unit, entry, dw::DW_AT_type);
        let mut add_type = |kind: TypeKind, size: Option<u64>| {
            out.types.insert(
                id,
                Type {
                    name: name(),
                    size,
                    kind,
                },
            );
        };
        let frame = match entry.tag() {
            dw::DW_TAG_base_type => {
                let encoding = match entry.attr_value(dw::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(e)) => Encoding::from_dw(e),
                    _ => Encoding::Other,
                };
                add_type(TypeKind::Base { encoding }, size);
                Frame::Other
            }
            dw::DW_TAG_structure_type | dw::DW_TAG_class_type => {
                add_type(
                    TypeKind::Struct {
                        members: Vec::new(),
                        variant_part: None,
                    },
                    size,
                );
                Frame::Aggregate(id, name())
            }
            dw::DW_TAG_union_type => {
                add_type(TypeKind::Union { members: Vec::new() }, size);
                Frame::Aggregate(id, name())
            }
            dw::DW_TAG_enumeration_type => {
                add_type(
                    TypeKind::Enum {
                        underlying: target,
                        enumerators: Vec::new(),
                    },
                    size,
                );
                Frame::Enum(id)
            }
            dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type | dw::DW_TAG_rvalue_reference_type => {
                add_type(
                    TypeKind::Pointer { pointee: target },
                    size.or(Some(unit.header.address_size() as u64)),
                );
                Frame::Other
            }
            dw::DW_TAG_array_type => {
                add_type(
                    TypeKind::Array {
                        element: target,
                        dims: Vec::new(),
                    },
                    size,
                );
                Frame::Array(id)
            }
            dw::DW_TAG_typedef => {
                add_type(TypeKind::Typedef { target }, size);
                Frame::Other
            }
            tag @ (dw::DW_TAG_const_type
            | dw::DW_TAG_volatile_type
            | dw::DW_TAG_restrict_type
            | dw::DW_TAG_atomic_type) => {
                let qualifier = match tag {
                    dw::DW_TAG_const_type => Qualifier::Const,
                    dw::DW_TAG_volatile_type => Qualifier::Volatile,
                    dw::DW_TAG_restrict_type => Qualifier::Restrict,
                    _ => Qualifier::Atomic,
                };
                add_type(TypeKind::Qualified { qualifier, target }, size);
                Frame::Other
            }
            dw::DW_TAG_subroutine_type => {
                add_type(TypeKind::Function, size);
                Frame::Other
            }
            dw::DW_TAG_unspecified_type => {
                add_type(
                    TypeKind::Other {
                        tag: "unspecified".into(),
                    },
                    size,
                );
                Frame::Other
            }
            dw::DW_TAG_template_type_parameter => {
                if let (Some((_, Frame::Aggregate(owner, _))), Some(name)) = (stack.last(), name()) {
                    out.template_params
                        .entry(*owner)
                        .or_default()
                        .push(TemplateParam { name, type_id: target });
                }
                Frame::Other
            }
            dw::DW_TAG_member | dw::DW_TAG_inheritance => {
                let member = read_member(unit, dwarf, entry);
                match stack.last_mut() {
                    Some((_, Frame::Aggregate(owner, _))) => {
                        if let Some(Type {
                            kind: TypeKind::Struct { members, .. } | TypeKind::Union { members },
                            ..
                        }) = out.types.get_mut(owner)
                        {
                            members.push(member);
                        }
                    }
                    Some((_, Frame::VariantPart { members, .. })) => members.push((id, member)),
                    Some((_, Frame::Variant(v))) => {
                        v.name = member.name;
                        v.type_id = member.type_id;
                        v.offset = member.offset;
                    }
                    _ => {}
                }
                Frame::Other
            }
            dw::DW_TAG_enumerator => {
                if let (Some((_, Frame::Enum(owner))), Some(name)) = (stack.last(), name()) {
                    let value = entry.attr(dw::DW_AT_const_value).and_then(|a| match a.raw_value() {
                        AttributeValue::Sdata(v) => Some(v),
                        other => other.udata_value().map(|v| v as i64),
                    });
                    if let (
                        Some(value),
                        Some(Type {
                            kind: TypeKind::Enum { enumerators, .. },
                            ..
                        }),
                    ) = (value, out.types.get_mut(owner))
                    {
                        enumerators.push(Enumerator { name, value });
                    }
                }
                Frame::Other
            }
            dw::DW_TAG_subrange_type => {
                if let Some((_, Frame::Array(owner))) = stack.last() {
                    let count = udata_attr(entry, dw::DW_AT_count).or_else(|| {
                        let upper = entry.attr(dw::DW_AT_upper_bound)?;
                        // An upper bound of -1 (all ones) is GCC's zero-length array.
                        let upper = match upper.raw_value() {
                            AttributeValue::Sdata(v) => v,
                            other => other.udata_value()? as i64,
                        };
                        let lower = udata_attr(entry, dw::DW_AT_lower_bound).unwrap_or(0) as i64;
                        upper
                            .checked_sub(lower)?
                            .checked_add(1)
                            .and_then(|n| u64::try_from(n).ok())
                    });
                    if let Some(Type {
                        kind: TypeKind::Array { dims, .. },
                        ..
                    }) = out.types.get_mut(owner)
                    {
                        dims.push(count);
                    }
                }
                Frame::Other
            }
            dw::DW_TAG_variant_part => match stack.last() {
                Some((_, Frame::Aggregate(owner, _))) => Frame::VariantPart {
                    owner: *owner,
                    discr: ref_attr(unit, entry, dw::DW_AT_discr),
                    members: Vec::new(),
                    variants: Vec::new(),
                },
                _ => Frame::Other,
            },
            dw::DW_TAG_variant => Frame::Variant(Variant {
                name: None,
                discr_value: udata_attr(entry, dw::DW_AT_discr_value),
                type_id: None,
                offset: None,
            }),
            dw::DW_TAG_variable => {
                if let Some(address) = static_address(dwarf, unit, entry) {
                    read_variable(dwarf, unit, entry, address, &stack, out);
                }
                Frame::Other
            }
            dw::DW_TAG_namespace
            | dw::DW_TAG_subprogram
            | dw::DW_TAG_module
            | dw::DW_TAG_lexical_block
            | dw::DW_TAG_compile_unit
            | dw::DW_TAG_partial_unit => Frame::Scope(
                // A lexical block adds nothing to a name; an out-of-line function body
                // (DW_AT_specification) is named by its declaration.
                if entry.tag() == dw::DW_TAG_lexical_block || entry.tag() == dw::DW_TAG_compile_unit {
                    None
                } else {
                    name().or_else(|| {
                        let spec = entry.attr_value(dw::DW_AT_specification)?;
                        let AttributeValue::UnitRef(o) = spec else { return None };
                        string_attr(dwarf, unit, &unit.entry(o).ok()?, dw::DW_AT_name)
                    })
                },
            ),
            _ => Frame::Other,
        };
        if entry.has_children() {
            stack.push((depth, frame));
        }
    }
    while let Some((_, frame)) = stack.pop() {
        close(frame, &mut stack, out);
    }
    Ok(())
}

fn read_variable(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &Unit<'_>,
    entry: &Die<'_>,
    address: u64,
    stack: &[(isize, Frame)],
    out: &mut DebugTypes,
) {
    // A definition may carry only the location and point at its declaration for the rest.
    let declaration = [dw::DW_AT_specification, dw::DW_AT_abstract_origin]
        .into_iter()
        .find_map(|at| match entry.attr_value(at) {
            Some(AttributeValue::UnitRef(o)) => unit.entry(o).ok(),
            _ => None,
        });
    let attr_str =
        |at| string_attr(dwarf, unit, entry, at).or_else(|| string_attr(dwarf, unit, declaration.as_ref()?, at));
    let Some(name) = attr_str(dw::DW_AT_name) else {
        return;
    };
    let linkage_name = attr_str(dw::DW_AT_linkage_name).or_else(|| attr_str(dw::DW_AT_MIPS_linkage_name));
    let type_id =
        ref_attr(unit, entry, dw::DW_AT_type).or_else(|| ref_attr(unit, declaration.as_ref()?, dw::DW_AT_type));
    let mut qualified_name: String = stack
        .iter()
        .filter_map(|(_, f)| match f {
            Frame::Scope(Some(n)) | Frame::Aggregate(_, Some(n)) => Some(format!("{n}::")),
            _ => None,
        })
        .collect();
    qualified_name.push_str(&name);
    out.variables.push(Variable {
        name,
        qualified_name,
        linkage_name,
        file_address: address,
        address: address.wrapping_add(out.bias),
        type_id,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_missing_debug_info_are_errors() {
        let path = Path::new("x");
        assert!(DebugTypes::parse(b"not an elf", path).is_err());
        // A real ELF without debug info: /bin/true from the distribution is stripped.
        let data = std::fs::read("/bin/true").unwrap();
        let err = DebugTypes::parse(&data, Path::new("/bin/true"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(".debug_info"), "{err}");
    }
}
