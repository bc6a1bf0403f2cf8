//! A field at an offset: the one shape memzinc gives a scalar member of an object, whether DWARF
//! ([`super::DebugTypes::object_layout`]), a target's registry
//! ([`super::DescribedObject::object_layout`]), a target spec or the layout solver describes it.
//! What the raw inputs say before they are resolved — a DWARF member DIE ([`super::Member`]), a
//! registry's self-description ([`super::DescribedField`]) — keeps its own shape, since it is
//! read as is from untrusted bytes.

use serde::{Deserialize, Serialize};

/// One field of an object: where it is, how wide, how its bits read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Dotted path for nested structs, `[i]` for array elements: `inner.x`, `samples[2]`.
    pub name: String,
    /// The type as DWARF or the registry names it; empty where nobody said (a hand-written spec).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub type_name: String,
    /// Bytes from the start of the object.
    pub offset: u64,
    pub size: u64,
    /// Whether the bits read as a two's-complement integer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
}
