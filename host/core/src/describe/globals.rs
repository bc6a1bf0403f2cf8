//! A snapshot read through its binary: the DWARF types of the main binary at the snapshot's
//! addresses, a global's fields with the values the snapshot holds (`inspect --var`), and the
//! registry a cooperating target describes itself with, as the snapshot captured it.

use std::path::Path;

use memzinc_describe::REGISTRY_SYMBOL;
use serde::{Deserialize, Serialize};

use super::snapshot::Snapshot;
use crate::base::{Error, Result};
use crate::introspect::{self, read_registry, DebugTypes, DescribedObject, TypeId, TypeKind, PAGE_SIZE};

fn dwarf_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::DebugInfo {
        path: path.into(),
        why: why.to_string(),
    }
}

impl DebugTypes {
    /// The DWARF of the main binary a snapshot was taken of, with the snapshot's load bias.
    /// The file is read from the path the snapshot records; its first page must equal the
    /// captured first page of its mapping (ELF header, program headers, build-id note), so a
    /// rebuilt or replaced binary is refused rather than misread.
    pub fn for_snapshot(snap: &Snapshot) -> Result<DebugTypes> {
        DebugTypes::for_snapshot_from(snap, Path::new(&snap.meta.exe))
    }

    /// [`DebugTypes::for_snapshot`] reading the binary from `exe` (a copy kept elsewhere, or
    /// one with debug info when the process ran a stripped one); it must still match the
    /// captured first page.
    pub fn for_snapshot_from(snap: &Snapshot, exe: &Path) -> Result<DebugTypes> {
        let exe = exe.to_path_buf();
        let mapped = snap
            .meta
            .regions
            .iter()
            .filter(|r| r.map.path == snap.meta.exe && r.map.offset == 0)
            .min_by_key(|r| r.map.start)
            .ok_or_else(|| dwarf_error(&exe, "the snapshot has no mapping of it at offset 0"))?;
        let data = std::fs::read(&exe).map_err(|e| Error::io(&exe, e))?;
        let page = PAGE_SIZE as usize;
        let want = data.len().min(page).min((mapped.map.end - mapped.map.start) as usize);
        let captured = snap.read(mapped.map.start, want)?;
        if captured[..] != data[..want] {
            return Err(dwarf_error(
                &exe,
                "this file is not the binary the snapshot was taken of (its first page differs)",
            ));
        }
        let types = DebugTypes::parse(&data, &exe)?;
        let file = object::File::parse(&*data).map_err(|e| dwarf_error(&exe, e))?;
        Ok(types.with_bias(introspect::load_bias(&file, mapped.map.start)))
    }
}

/// One scalar field of a global with the value a snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    pub name: String,
    pub type_name: String,
    pub address: u64,
    pub size: u64,
    pub value: i64,
}

/// A global read out of a snapshot through its DWARF type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectValue {
    pub symbol: String,
    pub type_name: String,
    pub address: u64,
    pub size: u64,
    pub fields: Vec<FieldValue>,
}

impl DebugTypes {
    /// Reads `symbol`'s scalar fields (see `object_layout`) from the snapshot's memory. The
    /// symbol may be an access path as C writes it — `g_list->next->next`, `QUEUE.items[2]`,
    /// `rlist::INVENTORY.head->next` — followed through the snapshot's memory.
    pub fn read_object(&self, snapshot: &Snapshot, symbol: &str) -> Result<ObjectValue> {
        let layout = match symbol.find(['.', '[']).or_else(|| symbol.find("->")) {
            None => self.object_layout(symbol)?,
            Some(_) => {
                let (type_id, address) = self.follow_path(snapshot, symbol)?;
                let mut layout = self.layout_at(symbol, type_id, address)?;
                // A path may end at a pointer or a scalar: its value is the one field.
                if layout.fields.is_empty() && (1..=8).contains(&layout.size) {
                    layout.fields.push(introspect::Field {
                        name: String::new(),
                        type_name: layout.type_name.clone(),
                        offset: 0,
                        size: layout.size,
                        signed: false,
                    });
                }
                layout
            }
        };
        let bytes = snapshot.read(layout.address, layout.size as usize)?;
        let fields = layout
            .fields
            .iter()
            .map(|f| {
                let raw = &bytes[f.offset as usize..(f.offset + f.size) as usize];
                let mut buf = [0u8; 8];
                buf[..raw.len()].copy_from_slice(raw);
                let unsigned = u64::from_le_bytes(buf);
                let shift = 64 - 8 * raw.len() as u32;
                let value = if f.signed && shift > 0 {
                    ((unsigned << shift) as i64) >> shift
                } else {
                    unsigned as i64
                };
                FieldValue {
                    name: f.name.clone(),
                    type_name: f.type_name.clone(),
                    address: layout.address + f.offset,
                    size: f.size,
                    value,
                }
            })
            .collect();
        Ok(ObjectValue {
            symbol: layout.symbol,
            type_name: layout.type_name,
            address: layout.address,
            size: layout.size,
            fields,
        })
    }
}

/// The described objects as a snapshot captured them.
pub fn read_snapshot_registry(snapshot: &Snapshot) -> Result<Vec<DescribedObject>> {
    let registry = snapshot.symbol(REGISTRY_SYMBOL)?;
    read_registry(snapshot, registry.address)
}

impl DebugTypes {
    /// The type and address an access path names (`root` then `.member`, `->member`, `[index]`).
    fn follow_path(&self, snapshot: &Snapshot, path: &str) -> Result<(TypeId, u64)> {
        let err = |why: String| Error::Usage(format!("{path}: {why}"));
        let end = path
            .char_indices()
            .find(|&(i, c)| c == '.' || c == '[' || path[i..].starts_with("->"))
            .map_or(path.len(), |(i, _)| i);
        let root = &path[..end];
        let v = self
            .variable(root)
            .ok_or_else(|| err(format!("no global {root} with a static address in the debug info")))?;
        let mut ty = v.type_id.ok_or_else(|| err(format!("{root} has no type")))?;
        let mut address = v.address;
        let mut rest = &path[end..];
        let read_pointer = |address: u64| -> Result<u64> {
            let b = snapshot.read(address, 8)?;
            Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default()))
        };
        let pointee = |ty: TypeId| match self.resolve(ty).map(|(_, t)| &t.kind) {
            Some(TypeKind::Pointer { pointee: Some(p) }) => Some(*p),
            _ => None,
        };
        for _ in 0..1024 {
            if rest.is_empty() {
                return Ok((ty, address));
            }
            let (deref, after) = if let Some(r) = rest.strip_prefix("->") {
                (true, r)
            } else if let Some(r) = rest.strip_prefix('.') {
                (false, r)
            } else if let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']').ok_or_else(|| err("an unclosed [".into()))?;
                let index: u64 = r[..close]
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("[{}] is not an index", &r[..close])))?;
                rest = &r[close + 1..];
                let name = self.type_name(Some(ty));
                match self.resolve(ty).map(|(_, t)| t.kind.clone()) {
                    Some(TypeKind::Array { element: Some(e), .. }) => {
                        let size = self
                            .size_of(e)
                            .ok_or_else(|| err(format!("the size of {name}'s elements is unknown")))?;
                        address = address.wrapping_add(index.wrapping_mul(size));
                        ty = e;
                    }
                    Some(TypeKind::Pointer { pointee: Some(p) }) => {
                        let size = self
                            .size_of(p)
                            .ok_or_else(|| err(format!("the size of *{name} is unknown")))?;
                        address = read_pointer(address)?.wrapping_add(index.wrapping_mul(size));
                        ty = p;
                    }
                    _ => return Err(err(format!("{name} is neither an array nor a pointer"))),
                }
                continue;
            } else {
                return Err(err(format!(
                    "cannot read {rest:?}: expected .member, ->member or [index]"
                )));
            };
            let len = after.find(['.', '[', '-']).unwrap_or(after.len());
            let member = &after[..len];
            rest = &after[len..];
            if deref {
                let p = pointee(ty).ok_or_else(|| err(format!("-> on {}, not a pointer", self.type_name(Some(ty)))))?;
                address = read_pointer(address)?;
                if address == 0 {
                    return Err(err(format!("->{member} through a null pointer")));
                }
                ty = p;
            }
            let (offset, mty) = self
                .member(ty, member)
                .ok_or_else(|| err(format!("{} has no member {member}", self.type_name(Some(ty)))))?;
            address = address.wrapping_add(offset);
            ty = mty;
        }
        Err(err("more than 1024 steps".into()))
    }
}

/// A file mapped into the snapshot's process, read from disk and checked against the capture.
pub struct ModuleFile {
    /// The path /proc/PID/maps showed.
    pub path: String,
    /// The lowest address of its offset-0 mapping.
    pub start: u64,
    /// Runtime address minus link-time address.
    pub bias: u64,
    /// The file's bytes.
    pub data: Vec<u8>,
}

impl ModuleFile {
    /// The file `path` (a mapping of `snap`), if its first page is the page the snapshot
    /// captured there (a rebuilt or replaced file is refused, not misread).
    pub fn read(snap: &Snapshot, path: &str) -> Result<ModuleFile> {
        let p = Path::new(path);
        let mapped = snap
            .meta
            .regions
            .iter()
            .filter(|r| r.map.path == path && r.map.offset == 0)
            .min_by_key(|r| r.map.start)
            .ok_or_else(|| dwarf_error(p, "the snapshot has no mapping of it at offset 0"))?;
        let data = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        let want = data
            .len()
            .min(PAGE_SIZE as usize)
            .min((mapped.map.end - mapped.map.start) as usize);
        if snap.read(mapped.map.start, want)?[..] != data[..want] {
            return Err(dwarf_error(
                p,
                "this file is not the one the snapshot mapped (its first page differs)",
            ));
        }
        let file = object::File::parse(&*data).map_err(|e| dwarf_error(p, e))?;
        let bias = introspect::load_bias(&file, mapped.map.start);
        Ok(ModuleFile {
            path: path.to_string(),
            start: mapped.map.start,
            bias,
            data,
        })
    }

    /// Every file-backed ELF module of the snapshot except the main binary, in map order (the
    /// vdso and anonymous memory are not files).
    pub fn libraries(snap: &Snapshot) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &snap.meta.regions {
            if r.map.offset == 0
                && r.map.path.starts_with('/')
                && r.map.path != snap.meta.exe
                && !out.contains(&r.map.path)
                && snap.read(r.map.start, 4).is_ok_and(|magic| magic == b"\x7fELF")
            {
                out.push(r.map.path.clone());
            }
        }
        out
    }

    /// Whether the file carries DWARF of its own (`.debug_info`).
    pub fn has_dwarf(&self) -> bool {
        use object::Object;
        object::File::parse(&*self.data).is_ok_and(|f| f.section_by_name(".debug_info").is_some())
    }

    /// Its DWARF at the snapshot's addresses.
    pub fn types(&self) -> Result<DebugTypes> {
        Ok(DebugTypes::parse(&self.data, Path::new(&self.path))?.with_bias(self.bias))
    }
}

/// The DWARF of every library of the snapshot built with debug info, at the snapshot's
/// addresses. Libraries without DWARF (distribution libraries are stripped) are skipped; their
/// globals are not walked.
pub fn library_types(snap: &Snapshot) -> Vec<(String, DebugTypes)> {
    let mut out = Vec::new();
    for path in ModuleFile::libraries(snap) {
        let Ok(file) = ModuleFile::read(snap, &path) else {
            continue;
        };
        if file.has_dwarf() {
            if let Ok(types) = file.types() {
                out.push((path, types));
            }
        }
    }
    out
}
