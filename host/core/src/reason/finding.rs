//! What is wrong with a snapshot: the one [`Finding`] type every check, planner and plan uses,
//! and the pointer rule they share.

use serde::{Deserialize, Serialize};

use crate::describe::Snapshot;

/// The rule a finding breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A non-null pointer into no mapped region.
    PointerUnmapped,
    /// A pointer into a region that cannot be read.
    PointerUnreadable,
    /// A heap pointer into a chunk the allocator holds free (tcache, bins, top): use after
    /// free.
    PointerIntoFreedChunk,
    /// A heap pointer into a chunk's header, or whose pointee runs past its chunk's end.
    PointerOutsideChunk,
    /// A Rust `Vec`/slice whose length exceeds its capacity or the address space.
    BufferLengthInvalid,
    /// A malloc chunk header or free list that is not one (the allocator's own memory corrupt).
    HeapCorrupt,
    /// A pointer not aligned for its pointee.
    PointerMisaligned,
    /// NULL in a Rust reference, `Box` or `NonNull` (outside an `Option`'s `None`).
    PointerNullNotAllowed,
    /// A function pointer into memory that is not executable.
    FunctionPointerNotExecutable,
    /// A bool other than 0 or 1.
    BoolNotZeroOrOne,
    /// A C enum holding no enumerator (nor a combination of flag enumerators), or a Rust enum
    /// whose tag names no variant.
    EnumInvalid,
    /// A Rust `char` that is not a Unicode scalar value.
    CharInvalid,
    /// A region both writable and executable.
    WritableAndExecutable,
    /// Executable memory backed by no file (heap, stack, anonymous mappings).
    ExecutableAnonymous,
    /// A target spec's field outside its bounds.
    SpecBounds,
    /// A target spec's ordering that does not hold.
    SpecOrder,
    /// A rule of the target's model file (`models/targets/<name>.mzn`) that does not hold.
    UserRule,
    /// A pointer of the target's exported reference-counted heap (`reason::heap`) that is not
    /// the start of an object of the type it needs.
    HeapPointerInvalid,
    /// A refcount of the exported heap that differs from the pointers to its object.
    HeapRefcountWrong,
    /// A finding read back from a plan file, which records where and what was wrong, not which
    /// rule said so.
    Recorded,
}

/// One violated invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub address: u64,
    /// The global (its DWARF qualified name), the region's path, or the spec's symbol.
    pub symbol: String,
    /// The field path inside it (`head.next`, `nodes[1].value`); empty for the whole object.
    pub field: String,
    pub detail: String,
}

impl Finding {
    /// `symbol.field`, `symbol[i].field`, or the symbol alone.
    pub fn location(&self) -> String {
        match self.field.as_str() {
            "" => self.symbol.clone(),
            f if f.starts_with('[') || f.starts_with("->") => format!("{}{f}", self.symbol),
            f => format!("{}.{f}", self.symbol),
        }
    }
}

/// Judges a non-null data pointer (what `check` requires of every pointer it walks; the user
/// invariants use the same rule for the objects they follow): it lands in a mapped, readable
/// region, or one past the end of one, and is aligned to `align`.
pub fn judge_data_pointer(snap: &Snapshot, value: u64, align: u64) -> Option<(Rule, String)> {
    let region = snap.region_of(value, 1).or_else(|| {
        value
            .checked_sub(1)
            .and_then(|v| snap.region_of(v, 1))
            .filter(|r| r.map.end == value)
    });
    let Some(region) = region else {
        return Some((Rule::PointerUnmapped, format!("{value:#x} is in no mapped region")));
    };
    if !region.map.readable() {
        return Some((
            Rule::PointerUnreadable,
            format!(
                "{value:#x} is in {:x}-{:x} {} {}",
                region.map.start, region.map.end, region.map.perms, region.map.path
            ),
        ));
    }
    if !value.is_multiple_of(align.max(1)) {
        return Some((Rule::PointerMisaligned, format!("{value:#x} is not aligned to {align}")));
    }
    None
}
