//! Arbitrary bytes as an executable with DWARF, through `DebugTypes::parse` (what `types`,
//! `check`, `layout` and `inspect` read a target's debug info with), then every query the CLI
//! makes of the result: type names, shapes, sizes, fields and object layouts of the variables.
//!
//! Asserts: nothing panics (DWARF is input: cycles, bogus offsets and sizes are errors or
//! answers); an error is one line.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use memzinc::introspect::DebugTypes;
use memzinc_fuzz::host::one_line;

fuzz_target!(|data: &[u8]| {
    let types = match DebugTypes::parse(data, Path::new("fuzz")) {
        Err(e) => return one_line(&e),
        Ok(t) => t,
    };
    for v in types.variables.iter().take(64) {
        let _ = types.type_name(v.type_id);
        let _ = types.shape(v.type_id);
        if let Some(t) = v.type_id {
            let _ = types.size_of(t);
            let _ = types.resolve(t);
            if let Err(e) = types.fields(t) {
                one_line(&e);
            }
        }
        if let Err(e) = types.object_layout(&v.qualified_name) {
            one_line(&e);
        }
    }
});
