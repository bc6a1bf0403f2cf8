//! Stage 1 (introspect): the objects a cooperating target describes itself with
//! `memzinc-describe` — its `MEMZINC_REGISTRY`, found by symbol and read as plain bytes from the
//! live process (process_vm_readv) or from a snapshot.
//!
//! The registry lives in the target's memory, so it is read as untrusted input: magic and word
//! size are checked, counts and string lengths are bounded, nested layouts are followed to a
//! fixed depth, and every failure is an error rather than a guess.

use serde::{Deserialize, Serialize};

/// What a described field holds (re-exported from `memzinc-describe`).
pub use memzinc_describe::Kind;
use memzinc_describe::{abi, ENTRY_READY, REGISTRY_MAGIC, REGISTRY_SYMBOL};

use super::dwarf::ObjectLayout;
use super::field::Field;
use crate::base::{Error, Memory, Result};

/// More entries, fields or string bytes than these means the registry is not what it claims.
const MAX_ENTRIES: u64 = 4096;
const MAX_FIELDS: u64 = 1024;
const MAX_STRING: u64 = 4096;
const MAX_NESTING: usize = 16;
/// Arrays of scalars are flattened element by element up to this many elements.
const MAX_FLATTENED_ELEMENTS: u64 = 256;

/// A live process, read with process_vm_readv.
pub struct LiveProcess(pub i32);

impl Memory for LiveProcess {
    fn read(&self, address: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = super::process::read_at(self.0, address, &mut buf)?;
        if n != len {
            return Err(Error::Registry(format!(
                "process {}: {address:#x}+{len} is not readable (got {n} bytes)",
                self.0
            )));
        }
        Ok(buf)
    }
}

/// One field of a described type, as the target's registry states it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedField {
    pub name: String,
    pub type_name: String,
    pub offset: u64,
    pub size: u64,
    #[serde(with = "kind_serde")]
    pub kind: Kind,
    /// For arrays, the kind of the elements; `Kind::None` otherwise.
    #[serde(with = "kind_serde")]
    pub element_kind: Kind,
    /// For arrays, the element count; 1 otherwise.
    pub count: u64,
    /// The layout of a described struct field (or of an array's described elements).
    pub nested: Option<Box<DescribedType>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedType {
    pub name: String,
    pub size: u64,
    pub align: u64,
    pub fields: Vec<DescribedField>,
}

/// A registered live instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribedObject {
    pub name: String,
    pub address: u64,
    pub layout: DescribedType,
}

mod kind_serde {
    use memzinc_describe::Kind;
    use serde::{Deserialize, Deserializer, Serializer};

    const NAMES: [(Kind, &str); 10] = [
        (Kind::None, "none"),
        (Kind::Unsigned, "unsigned"),
        (Kind::Signed, "signed"),
        (Kind::Float, "float"),
        (Kind::Bool, "bool"),
        (Kind::Char, "char"),
        (Kind::Pointer, "pointer"),
        (Kind::Array, "array"),
        (Kind::Struct, "struct"),
        (Kind::Opaque, "opaque"),
    ];

    pub fn serialize<S: Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
        let name = NAMES.iter().find(|(k, _)| k == kind).map(|(_, n)| *n).unwrap_or("none");
        s.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let name = String::deserialize(d)?;
        NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown field kind {name:?}")))
    }
}

fn bad(why: String) -> Error {
    Error::Registry(why)
}

fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(src) = bytes.get(at..at + abi::WORD) {
        w[..abi::WORD].copy_from_slice(src);
    }
    u64::from_le_bytes(w)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        w.copy_from_slice(src);
    }
    u32::from_le_bytes(w)
}

fn read_string(mem: &impl Memory, ptr: u64, len: u64, what: &str) -> Result<String> {
    if len > MAX_STRING {
        return Err(bad(format!("{what}: string of {len} bytes")));
    }
    if len == 0 {
        return Ok(String::new());
    }
    let bytes = mem.read(ptr, len as usize)?;
    String::from_utf8(bytes)
        .map(crate::base::printable)
        .map_err(|_| bad(format!("{what}: not UTF-8")))
}

fn kind(value: u32, what: &str) -> Result<Kind> {
    Kind::from_u32(value).ok_or_else(|| bad(format!("{what}: unknown kind {value}")))
}

fn read_type(mem: &impl Memory, address: u64, depth: usize) -> Result<DescribedType> {
    if depth > MAX_NESTING {
        return Err(bad(format!(
            "layouts nested more than {MAX_NESTING} deep at {address:#x}"
        )));
    }
    let t = mem.read(address, abi::TYPE_SIZE_OF)?;
    let name = read_string(
        mem,
        word_at(&t, abi::TYPE_NAME + abi::STR_PTR),
        word_at(&t, abi::TYPE_NAME + abi::STR_LEN),
        "type name",
    )?;
    let count = word_at(&t, abi::TYPE_FIELD_COUNT);
    if count > MAX_FIELDS {
        return Err(bad(format!("type {name}: {count} fields")));
    }
    let fields_at = word_at(&t, abi::TYPE_FIELDS);
    let raw = if count == 0 {
        Vec::new()
    } else {
        mem.read(fields_at, count as usize * abi::FIELD_SIZE_OF)?
    };
    let mut fields = Vec::with_capacity(count as usize);
    for f in raw.as_chunks::<{ abi::FIELD_SIZE_OF }>().0 {
        let f = &f[..];
        let field_name = read_string(
            mem,
            word_at(f, abi::FIELD_NAME + abi::STR_PTR),
            word_at(f, abi::FIELD_NAME + abi::STR_LEN),
            "field name",
        )?;
        let what = format!("{name}.{field_name}");
        let nested_at = word_at(f, abi::FIELD_LAYOUT);
        fields.push(DescribedField {
            type_name: read_string(
                mem,
                word_at(f, abi::FIELD_TYPE_NAME + abi::STR_PTR),
                word_at(f, abi::FIELD_TYPE_NAME + abi::STR_LEN),
                &what,
            )?,
            offset: word_at(f, abi::FIELD_OFFSET),
            size: word_at(f, abi::FIELD_SIZE),
            kind: kind(u32_at(f, abi::FIELD_KIND), &what)?,
            element_kind: kind(u32_at(f, abi::FIELD_ELEMENT_KIND), &what)?,
            count: word_at(f, abi::FIELD_COUNT),
            nested: if nested_at == 0 {
                None
            } else {
                Some(Box::new(read_type(mem, nested_at, depth + 1)?))
            },
            name: field_name,
        });
    }
    Ok(DescribedType {
        name,
        size: word_at(&t, abi::TYPE_SIZE),
        align: word_at(&t, abi::TYPE_ALIGN),
        fields,
    })
}

/// Reads the registry at `address` (the `MEMZINC_REGISTRY` symbol's) and every ready entry's
/// layout. Entries still being written when the target was read are left out.
pub fn read_registry(mem: &impl Memory, address: u64) -> Result<Vec<DescribedObject>> {
    let header = mem.read(address, abi::REGISTRY_ENTRIES)?;
    if header.get(abi::REGISTRY_MAGIC..abi::REGISTRY_MAGIC + 8) != Some(&REGISTRY_MAGIC[..]) {
        return Err(bad(format!(
            "no registry at {address:#x} (bad magic or format version)"
        )));
    }
    let word_size = u32_at(&header, abi::REGISTRY_WORD_SIZE) as usize;
    let entry_size = u32_at(&header, abi::REGISTRY_ENTRY_SIZE) as usize;
    if word_size != abi::WORD || entry_size != abi::ENTRY_SIZE {
        return Err(bad(format!(
            "registry words are {word_size} bytes and entries {entry_size}; this memzinc reads {} and {}",
            abi::WORD,
            abi::ENTRY_SIZE
        )));
    }
    let capacity = word_at(&header, abi::REGISTRY_CAPACITY);
    if capacity > MAX_ENTRIES {
        return Err(bad(format!("registry claims {capacity} entries")));
    }
    let len = word_at(&header, abi::REGISTRY_LEN).min(capacity);
    let entries_at = address + abi::REGISTRY_ENTRIES as u64;
    let raw = if len == 0 {
        Vec::new()
    } else {
        mem.read(entries_at, len as usize * abi::ENTRY_SIZE)?
    };
    let mut out = Vec::new();
    for e in raw.as_chunks::<{ abi::ENTRY_SIZE }>().0 {
        let e = &e[..];
        if word_at(e, abi::ENTRY_STATE) != ENTRY_READY as u64 {
            continue;
        }
        out.push(DescribedObject {
            name: read_string(
                mem,
                word_at(e, abi::ENTRY_NAME_PTR),
                word_at(e, abi::ENTRY_NAME_LEN),
                "instance name",
            )?,
            address: word_at(e, abi::ENTRY_ADDRESS),
            layout: read_type(mem, word_at(e, abi::ENTRY_LAYOUT), 0)?,
        });
    }
    Ok(out)
}

/// The described objects of a live process, finding its registry through its symbols.
pub fn read_process_registry(pid: i32) -> Result<Vec<DescribedObject>> {
    let symbols = super::symbols::read_process_symbols(pid)?;
    let registry = symbols
        .lookup(REGISTRY_SYMBOL)
        .ok_or_else(|| Error::SymbolNotFound(REGISTRY_SYMBOL.into()))?;
    read_registry(&LiveProcess(pid), registry.address)
}

impl DescribedObject {
    /// The object as scalar fields, the shape a target spec needs: nested described structs as `a.b`, arrays of scalars of up
    /// to 256 elements as `a[i]`; opaque fields are left out.
    pub fn object_layout(&self) -> Result<ObjectLayout> {
        let mut fields = Vec::new();
        flatten(&self.layout, "", 0, 0, &mut fields)?;
        Ok(ObjectLayout {
            symbol: self.name.clone(),
            type_name: self.layout.name.clone(),
            address: self.address,
            size: self.layout.size,
            fields,
        })
    }
}

fn scalar(kind: Kind) -> Option<bool> {
    match kind {
        Kind::Signed => Some(true),
        Kind::Unsigned | Kind::Bool | Kind::Char | Kind::Pointer | Kind::Float => Some(false),
        _ => None,
    }
}

fn flatten(t: &DescribedType, prefix: &str, base: u64, depth: usize, out: &mut Vec<Field>) -> Result<()> {
    if depth > MAX_NESTING {
        return Err(bad(format!("{prefix}: nested more than {MAX_NESTING} deep")));
    }
    for f in &t.fields {
        let name = if prefix.is_empty() {
            f.name.clone()
        } else {
            format!("{prefix}.{}", f.name)
        };
        let at = base
            .checked_add(f.offset)
            .ok_or_else(|| bad(format!("{name}: offset overflows")))?;
        if let Some(signed) = scalar(f.kind) {
            out.push(Field {
                name,
                offset: at,
                size: f.size,
                signed,
                type_name: f.type_name.clone(),
            });
            continue;
        }
        match (f.kind, &f.nested) {
            (Kind::Struct, Some(nested)) => flatten(nested, &name, at, depth + 1, out)?,
            (Kind::Array, _) if f.count > 0 && f.count <= MAX_FLATTENED_ELEMENTS => {
                let stride = f.size / f.count;
                for i in 0..f.count {
                    let element = format!("{name}[{i}]");
                    let at = at + i * stride;
                    match (scalar(f.element_kind), &f.nested) {
                        (Some(signed), _) => out.push(Field {
                            name: element,
                            offset: at,
                            size: stride,
                            signed,
                            type_name: f.type_name.clone(),
                        }),
                        (None, Some(nested)) if f.element_kind == Kind::Struct => {
                            flatten(nested, &element, at, depth + 1, out)?
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use memzinc_describe::Describe;

    #[derive(Describe)]
    #[repr(C)]
    struct Sample {
        a: i32,
        b: u8,
    }

    #[derive(Describe)]
    #[repr(C)]
    struct Wrapper {
        flag: bool,
        samples: [Sample; 2],
        levels: [i16; 3],
        inner: Sample,
    }

    static WRAPPED: Wrapper = Wrapper {
        flag: true,
        samples: [Sample { a: -1, b: 2 }, Sample { a: 3, b: 4 }],
        levels: [1, -2, 3],
        inner: Sample { a: 5, b: 6 },
    };

    /// Found by the `registry` fuzz target: a name with a newline made its errors two lines.
    #[test]
    fn names_with_control_characters_are_escaped() {
        memzinc_describe::register("two\nlines\u{7}", &WRAPPED).unwrap();
        let registry = std::ptr::addr_of!(memzinc_describe::MEMZINC_REGISTRY) as u64;
        let objects = read_registry(&LiveProcess(std::process::id() as i32), registry).unwrap();
        assert!(objects.iter().any(|o| o.name == "two\\nlines\\u{7}"));
        assert!(objects.iter().all(|o| !o.name.chars().any(char::is_control)));
    }

    #[test]
    fn reads_this_process_registry_like_a_target() {
        memzinc_describe::register("WRAPPED", &WRAPPED).unwrap();
        let pid = std::process::id() as i32;
        let registry = std::ptr::addr_of!(memzinc_describe::MEMZINC_REGISTRY) as u64;
        let objects = read_registry(&LiveProcess(pid), registry).unwrap();
        let o = objects.iter().find(|o| o.name == "WRAPPED").unwrap();
        assert_eq!(o.address, &WRAPPED as *const Wrapper as u64);
        assert_eq!(o.layout.name, "Wrapper");
        assert_eq!(o.layout.size, std::mem::size_of::<Wrapper>() as u64);
        let samples = &o.layout.fields[1];
        assert_eq!(
            (samples.kind, samples.element_kind, samples.count),
            (Kind::Array, Kind::Struct, 2)
        );
        assert_eq!(samples.nested.as_ref().unwrap().name, "Sample");
        let layout = o.object_layout().unwrap();
        let names: Vec<(&str, u64, u64, bool)> = layout
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.offset, f.size, f.signed))
            .collect();
        let off = |o: usize| o as u64;
        assert_eq!(
            names,
            [
                ("flag", 0, 1, false),
                ("samples[0].a", off(std::mem::offset_of!(Wrapper, samples)), 4, true),
                (
                    "samples[0].b",
                    off(std::mem::offset_of!(Wrapper, samples)) + 4,
                    1,
                    false
                ),
                ("samples[1].a", off(std::mem::offset_of!(Wrapper, samples)) + 8, 4, true),
                (
                    "samples[1].b",
                    off(std::mem::offset_of!(Wrapper, samples)) + 12,
                    1,
                    false
                ),
                ("levels[0]", off(std::mem::offset_of!(Wrapper, levels)), 2, true),
                ("levels[1]", off(std::mem::offset_of!(Wrapper, levels)) + 2, 2, true),
                ("levels[2]", off(std::mem::offset_of!(Wrapper, levels)) + 4, 2, true),
                ("inner.a", off(std::mem::offset_of!(Wrapper, inner)), 4, true),
                ("inner.b", off(std::mem::offset_of!(Wrapper, inner)) + 4, 1, false),
            ]
        );
    }

    /// Memory made of byte runs at chosen addresses; anything else is unreadable.
    #[derive(Default)]
    struct Fake(BTreeMap<u64, Vec<u8>>);

    impl Memory for Fake {
        fn read(&self, address: u64, len: usize) -> Result<Vec<u8>> {
            let (start, bytes) = self
                .0
                .range(..=address)
                .next_back()
                .ok_or_else(|| bad(format!("{address:#x} unmapped")))?;
            let from = (address - start) as usize;
            bytes
                .get(from..from.checked_add(len).ok_or_else(|| bad("overflow".into()))?)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad(format!("{address:#x}+{len} unmapped")))
        }
    }

    fn put_word(buf: &mut [u8], at: usize, v: u64) {
        buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A registry at 0x1000 with one ready entry whose layout is at 0x2000 and has one field
    /// whose nested layout is `nested` (0x2000 itself makes a cycle).
    fn hostile(field_count: u64, name_len: u64, nested: u64, capacity: u64) -> Fake {
        let mut reg = vec![0u8; abi::REGISTRY_ENTRIES + abi::ENTRY_SIZE];
        reg[..8].copy_from_slice(&REGISTRY_MAGIC);
        reg[abi::REGISTRY_WORD_SIZE..abi::REGISTRY_WORD_SIZE + 4].copy_from_slice(&8u32.to_le_bytes());
        reg[abi::REGISTRY_ENTRY_SIZE..abi::REGISTRY_ENTRY_SIZE + 4]
            .copy_from_slice(&(abi::ENTRY_SIZE as u32).to_le_bytes());
        put_word(&mut reg, abi::REGISTRY_CAPACITY, capacity);
        put_word(&mut reg, abi::REGISTRY_LEN, u64::MAX);
        let e = abi::REGISTRY_ENTRIES;
        put_word(&mut reg, e + abi::ENTRY_STATE, ENTRY_READY as u64);
        put_word(&mut reg, e + abi::ENTRY_ADDRESS, 0x5000);
        put_word(&mut reg, e + abi::ENTRY_LAYOUT, 0x2000);
        put_word(&mut reg, e + abi::ENTRY_NAME_PTR, 0x3000);
        put_word(&mut reg, e + abi::ENTRY_NAME_LEN, name_len);
        let mut ty = vec![0u8; abi::TYPE_SIZE_OF + abi::FIELD_SIZE_OF];
        put_word(&mut ty, abi::TYPE_NAME + abi::STR_PTR, 0x3000);
        put_word(&mut ty, abi::TYPE_NAME + abi::STR_LEN, 1);
        put_word(&mut ty, abi::TYPE_FIELDS, 0x2000 + abi::TYPE_SIZE_OF as u64);
        put_word(&mut ty, abi::TYPE_FIELD_COUNT, field_count);
        let f = abi::TYPE_SIZE_OF;
        put_word(&mut ty, f + abi::FIELD_NAME + abi::STR_PTR, 0x3000);
        put_word(&mut ty, f + abi::FIELD_NAME + abi::STR_LEN, 1);
        ty[f + abi::FIELD_KIND..f + abi::FIELD_KIND + 4].copy_from_slice(&(Kind::Struct as u32).to_le_bytes());
        put_word(&mut ty, f + abi::FIELD_LAYOUT, nested);
        let mut mem = Fake::default();
        mem.0.insert(0x1000, reg);
        mem.0.insert(0x2000, ty);
        mem.0.insert(0x3000, b"x".repeat(16));
        mem
    }

    #[test]
    fn hostile_registries_are_errors() {
        let ok = read_registry(&hostile(1, 1, 0, 1), 0x1000).unwrap();
        assert_eq!(ok.len(), 1, "len is clamped to the capacity");
        assert_eq!(ok[0].layout.fields.len(), 1);
        let err = |mem: Fake| read_registry(&mem, 0x1000).unwrap_err().to_string();
        assert!(err(hostile(1, 1, 0x2000, 1)).contains("nested more than"));
        assert!(err(hostile(u64::MAX, 1, 0, 1)).contains("fields"));
        assert!(err(hostile(1, u64::MAX, 0, 1)).contains("string of"));
        assert!(err(hostile(1, 1, 0, u64::MAX)).contains("entries"));
        assert!(err(hostile(2, 1, 0, 1)).contains("unmapped"));
        let mut no_magic = hostile(1, 1, 0, 1);
        no_magic.0.get_mut(&0x1000).unwrap()[0] ^= 1;
        assert!(err(no_magic).contains("bad magic"));
        let mut bad_kind = hostile(1, 1, 0, 1);
        let f = abi::TYPE_SIZE_OF + abi::FIELD_KIND;
        bad_kind.0.get_mut(&0x2000).unwrap()[f] = 77;
        assert!(err(bad_kind).contains("unknown kind 77"));
    }
}
