//! A mapping of a snapshot: what the map said of it, whether its pages are in the core, where,
//! and which could not be read.

use serde::{Deserialize, Serialize};

use super::corefile::LoadRegion;
use crate::introspect::MapEntry;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapRegion {
    #[serde(flatten)]
    pub map: MapEntry,
    /// Whether the contents are in the file (readable private mappings are).
    pub captured: bool,
    /// Offset of the region's first page in the file (its PT_LOAD's p_offset), when captured.
    pub data_offset: u64,
    /// Addresses of pages that could not be read, ascending; their leaves say so.
    pub unreadable_pages: Vec<u64>,
}

impl SnapRegion {
    /// The region as its core's PT_LOAD describes it.
    pub(super) fn load(&self) -> LoadRegion<'_> {
        LoadRegion {
            start: self.map.start,
            end: self.map.end,
            data_offset: self.data_offset,
            captured: self.captured,
            perms: &self.map.perms,
        }
    }
}

/// The module a symbol belongs to, for its key (`hash::symbol_key`): the file name of the last
/// file mapping that starts at or below it. A module's `.bss` continues in an anonymous mapping
/// right after its file mappings, so that is still the module's.
pub fn symbol_module(regions: &[SnapRegion], address: u64) -> Option<&str> {
    regions
        .iter()
        .take_while(|r| r.map.start <= address)
        .filter(|r| r.map.path.starts_with('/'))
        .last()
        .and_then(|r| r.map.path.rsplit('/').next())
}
