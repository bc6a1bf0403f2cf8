//! Arbitrary bytes as a target's memory holding a `memzinc-describe` registry
//! (`MEMZINC_REGISTRY`), through `registry::read_registry` (what `memzinc registry` and the
//! registry-checked specs read a live process or a snapshot with), then each described
//! object's layout.
//!
//! The input is the memory at `REGISTRY_BASE`, the registry's address; reads outside it fail as reads of
//! unmapped memory do. Asserts: nothing panics (the registry is input: bounded counts, lengths
//! and nesting); an error is one line; a described object's layout is an answer or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc::introspect::read_registry;
use memzinc_fuzz::host::{one_line, SliceMemory, REGISTRY_BASE};

fuzz_target!(|data: &[u8]| {
    let memory = SliceMemory {
        base: REGISTRY_BASE,
        bytes: data,
    };
    let objects = match read_registry(&memory, REGISTRY_BASE) {
        Err(e) => return one_line(&e),
        Ok(o) => o,
    };
    for o in &objects {
        if let Err(e) = o.object_layout() {
            one_line(&e);
        }
    }
});
