//! A snapshot read through its binary: the DWARF types of the main binary at the snapshot's
//! addresses, a global's fields with the values the snapshot holds (`inspect --var`), and the
//! registry a cooperating target describes itself with, as the snapshot captured it.

use std::path::Path;

use memzinc_describe::REGISTRY_SYMBOL;
use serde::{Deserialize, Serialize};

use super::snapshot::Snapshot;
use crate::base::{Error, Result};
use crate::introspect::{self, read_registry, DebugTypes, DescribedObject, PAGE_SIZE};

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
    /// Reads `symbol`'s scalar fields (see `object_layout`) from the snapshot's memory.
    pub fn read_object(&self, snapshot: &Snapshot, symbol: &str) -> Result<ObjectValue> {
        let layout = self.object_layout(symbol)?;
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
