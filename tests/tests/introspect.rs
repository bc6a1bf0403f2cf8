//! Introspection against real processes: symbols of every mapped module, DWARF types of
//! globals (a Rust target and a C target compiled here with `gcc -g`), and the
//! `memzinc-describe` registry. Every expected value comes from the target itself (its own
//! `addr_of!`, `offsetof`, `sizeof`), never from memzinc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use memzinc::introspect::{read_process_symbols, SymbolKind};
use memzinc::introspect::{DebugTypes, Encoding, Shape, TypeKind};
use memzinc::reason::TargetSpec;
use memzinc_tests::{binary, repo_root, Running};

fn healme() -> Running {
    Running::start(
        Command::new(binary("healme")).args(["--print-address", "--period-ms", "50"]),
        "tick 0",
    )
}

/// Compiles tests/targets/ctypes.c with `gcc -g` into `dir`.
fn build_ctypes(dir: &Path, pie: bool) -> PathBuf {
    let out = dir.join(if pie { "ctypes-pie" } else { "ctypes-nopie" });
    let status = Command::new("gcc")
        .args([
            "-g",
            "-O0",
            "-Wall",
            "-Werror",
            if pie { "-pie" } else { "-no-pie" },
            "-o",
        ])
        .arg(&out)
        .arg(repo_root().join("tests/targets/ctypes.c"))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc failed");
    out
}

fn read_live(pid: i32, address: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    assert_eq!(memzinc::introspect::read_at(pid, address, &mut buf).unwrap(), len);
    buf
}

#[test]
fn healme_symbols_resolve_to_the_addresses_it_reports() {
    let target = healme();
    let reported = target.fact("address", "HEALME_STATE");
    let syms = read_process_symbols(target.pid()).unwrap();

    let state = syms.lookup("HEALME_STATE").expect("HEALME_STATE in healme's .symtab");
    assert_eq!(state.address, reported, "symbol address vs healme's own addr_of!");
    assert_eq!((state.size, state.kind), (20, SymbolKind::Object));
    let main = syms.main_module().unwrap();
    assert_eq!(state.module, main.path);
    assert!(main.path.ends_with("/healme"), "{}", main.path);
    // healme is position-independent: its bias is where the kernel put it.
    assert_ne!(main.bias, 0);

    // A Rust function, found by its demangled name.
    let f = syms.lookup("healme::main").expect("healme::main, demangled");
    assert_eq!(f.kind, SymbolKind::Function);
    assert!(f.name.starts_with("_ZN") || f.name.starts_with("_R"), "{}", f.name);

    // malloc resolves inside an executable mapping of libc.
    let malloc = syms.lookup("malloc").expect("malloc in libc's .dynsym");
    assert_eq!(malloc.kind, SymbolKind::Function);
    assert!(malloc.module.contains("libc"), "{}", malloc.module);
    let maps = memzinc::introspect::read_maps(target.pid()).unwrap();
    let mapping = maps
        .iter()
        .find(|m| m.start <= malloc.address && malloc.address < m.end)
        .expect("malloc's address is mapped");
    assert_eq!(mapping.path, malloc.module);
    assert!(mapping.executable(), "{mapping:?}");
    assert!(syms.modules.iter().any(|m| m.path.contains("ld-linux")));
}

#[test]
fn healme_state_layout_from_dwarf_agrees_with_the_spec() {
    let target = healme();
    let reported = target.fact("address", "HEALME_STATE");
    let types = DebugTypes::for_process(target.pid()).unwrap();
    let var = types.variable("HEALME_STATE").unwrap();
    assert_eq!(
        var.address, reported,
        "DWARF address plus bias vs healme's own addr_of!"
    );
    assert_eq!(var.qualified_name, "healme::HEALME_STATE");
    let ty = var.type_id.unwrap();
    assert_eq!(types.type_name(Some(ty)), "Thermostat");
    assert_eq!(types.size_of(ty), Some(20));

    let fields: Vec<(String, u64, u64, Shape)> = types
        .fields(ty)
        .unwrap()
        .into_iter()
        .map(|f| (f.field.name, f.field.offset, f.field.size, f.shape))
        .collect();
    let base = |encoding| Shape::Base { encoding };
    let expected = [
        ("magic", 0, 4, base(Encoding::Unsigned)),
        ("min_temp", 4, 4, base(Encoding::Signed)),
        ("max_temp", 8, 4, base(Encoding::Signed)),
        ("target_temp", 12, 4, base(Encoding::Signed)),
        ("fan_level", 16, 1, base(Encoding::Unsigned)),
        ("heater_on", 17, 1, base(Encoding::Unsigned)),
    ]
    .map(|(n, o, s, shape)| (n.to_string(), o, s, shape));
    assert_eq!(fields, expected);

    // DWARF agrees with the committed spec, and can rebuild it from the bounds alone.
    let spec = TargetSpec::load(&repo_root().join("models/targets/healme.json")).unwrap();
    let layout = types.object_layout("HEALME_STATE").unwrap();
    assert_eq!(layout.address, reported);
    assert_eq!(layout.check_spec(&spec), Vec::<String>::new());
    let mut wrong = spec.clone();
    for f in &mut wrong.fields {
        (f.field.offset, f.field.size, f.field.signed) = (99, 8, !f.field.signed);
    }
    wrong.size = 1;
    assert_eq!(layout.check_spec(&wrong).len(), 7);
    assert_eq!(layout.merge_spec(&wrong).unwrap(), spec);
    wrong.fields[0].field.name = "no_such_field".into();
    let err = layout.merge_spec(&wrong).unwrap_err().to_string();
    assert!(err.contains("HEALME_STATE") && err.contains("no_such_field"), "{err}");

    // The file alone gives the same layout at the link-time address.
    let from_file = DebugTypes::load(&binary("healme")).unwrap();
    let v = from_file.variable("HEALME_STATE").unwrap();
    assert_eq!(v.file_address + types.bias, reported);
}

#[test]
fn rust_enum_from_dwarf_decodes_healme_live_memory() {
    let target = healme();
    let types = DebugTypes::for_process(target.pid()).unwrap();
    let modes = types.variable("HEALME_MODES").unwrap();
    let array = modes.type_id.unwrap();
    let Shape::Array {
        element,
        element_id,
        count,
    } = types.shape(Some(array))
    else {
        panic!("HEALME_MODES is not an array");
    };
    assert_eq!((element.as_str(), count), ("Mode", Some(3)));
    let mode = element_id.unwrap();
    let stride = types.size_of(mode).unwrap();
    assert_eq!(types.size_of(array), Some(3 * stride));
    let Some(TypeKind::Struct {
        variant_part: Some(part),
        ..
    }) = types.get(mode).map(|t| &t.kind)
    else {
        panic!("Mode has no variant part");
    };
    let discr = part.discriminant.as_ref().expect("a tag");
    let discr_size = types.size_of(discr.type_id.unwrap()).unwrap() as usize;
    let discr_offset = discr.offset.unwrap();
    let variants: Vec<(&str, Option<u64>)> = part
        .variants
        .iter()
        .map(|v| (v.name.as_deref().unwrap(), v.discr_value))
        .collect();
    assert_eq!(variants, [("Off", Some(0)), ("Heat", Some(1)), ("Fan", Some(2))]);

    // Decode the live array with nothing but DWARF: [Off, Heat { target: 21 }, Fan(2)].
    let bytes = read_live(target.pid(), modes.address, (3 * stride) as usize);
    let tag = |i: u64| {
        let at = (i * stride + discr_offset) as usize;
        let mut v = [0u8; 8];
        v[..discr_size].copy_from_slice(&bytes[at..at + discr_size]);
        u64::from_le_bytes(v)
    };
    let payload_field = |variant: &str, field: &str| {
        let v = part
            .variants
            .iter()
            .find(|v| v.name.as_deref() == Some(variant))
            .unwrap();
        let f = types
            .fields(v.type_id.unwrap())
            .unwrap()
            .into_iter()
            .find(|f| f.field.name == field)
            .unwrap();
        (v.offset.unwrap() + f.field.offset, f.field.size as usize)
    };
    assert_eq!([tag(0), tag(1), tag(2)], [0, 1, 2]);
    let (off, size) = payload_field("Heat", "target");
    let at = (stride + off) as usize;
    assert_eq!(size, 4);
    assert_eq!(i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 21);
    let (off, size) = payload_field("Fan", "__0");
    assert_eq!(size, 1);
    assert_eq!(bytes[(2 * stride + off) as usize], 2);
}

#[test]
fn c_layouts_from_dwarf_match_offsetof_and_sizeof() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_ctypes(dir.path(), true);
    let target = Running::start(&mut Command::new(&exe), "ready");
    let types = DebugTypes::for_process(target.pid()).unwrap();

    let gadget = types.variable("GADGET").unwrap();
    assert_eq!(gadget.address, target.fact("address", "GADGET"));
    let calls = types.variable("main::calls").expect("main's static, by qualified name");
    assert_eq!(calls.address, target.fact("address", "calls"));
    assert_eq!(
        types.variable("NODES").unwrap().address,
        target.fact("address", "NODES")
    );

    let ty = gadget.type_id.unwrap();
    assert_eq!(types.type_name(Some(ty)), "gadget");
    assert_eq!(types.size_of(ty), Some(target.fact("size", "gadget")));
    let fields: BTreeMap<String, _> = types
        .fields(ty)
        .unwrap()
        .into_iter()
        .map(|f| (f.field.name.clone(), f))
        .collect();
    for name in [
        "tag", "origin", "cursor", "label", "samples", "grid", "value", "color", "head", "ratio", "ready", "name",
        "total",
    ] {
        assert_eq!(
            fields[name].field.offset,
            target.fact("offset", &format!("gadget.{name}")),
            "gadget.{name}"
        );
    }
    let shape = |name: &str| fields[name].shape.clone();
    assert_eq!(
        shape("tag"),
        Shape::Base {
            encoding: Encoding::UnsignedChar
        }
    );
    assert_eq!(
        shape("total"),
        Shape::Base {
            encoding: Encoding::Signed
        }
    );
    assert_eq!(
        shape("ratio"),
        Shape::Base {
            encoding: Encoding::Float
        }
    );
    assert_eq!(
        shape("ready"),
        Shape::Base {
            encoding: Encoding::Bool
        }
    );
    assert_eq!(shape("origin"), Shape::Struct);
    assert_eq!(fields["origin"].field.type_name, "point_t");
    assert_eq!(fields["origin"].field.size, target.fact("size", "point"));
    assert!(matches!(shape("cursor"), Shape::Pointer { pointee, .. } if pointee == "point"));
    assert!(matches!(shape("label"), Shape::Pointer { pointee, .. } if pointee == "const char"));
    assert!(matches!(shape("head"), Shape::Pointer { pointee, .. } if pointee == "node"));
    assert!(
        matches!(shape("samples"), Shape::Array { element, count: Some(5), .. } if element == "int32_t"),
        "{:?}",
        shape("samples")
    );
    assert!(matches!(shape("grid"), Shape::Array { element, count: Some(6), .. } if element == "uint16_t"));
    assert_eq!(fields["grid"].field.type_name, "uint16_t[2][3]");
    assert_eq!(fields["grid"].field.size, 12);
    assert_eq!(shape("value"), Shape::Union);
    assert_eq!(fields["value"].field.size, target.fact("size", "value"));
    assert_eq!(shape("color"), Shape::Enum { signed: true });
    assert_eq!(fields["color"].field.size, target.fact("size", "color"));
    assert_eq!((fields["flags"].bit_size, fields["mode"].bit_size), (Some(3), Some(5)));

    // Nested and linked types: the same offsetof facts through the pointee types.
    let point = types.type_named("point").unwrap();
    let node = types.type_named("node").unwrap();
    for (ty, tyname, field) in [
        (point, "point", "x"),
        (point, "point", "y"),
        (node, "node", "next"),
        (node, "node", "id"),
    ] {
        let f = types
            .fields(ty)
            .unwrap()
            .into_iter()
            .find(|f| f.field.name == field)
            .unwrap();
        assert_eq!(
            f.field.offset,
            target.fact("offset", &format!("{tyname}.{field}")),
            "{tyname}.{field}"
        );
    }
    let value = types.type_named("value").unwrap();
    let members: Vec<(String, u64)> = types
        .fields(value)
        .unwrap()
        .into_iter()
        .map(|f| (f.field.name, f.field.offset))
        .collect();
    assert_eq!(members, [("u".to_string(), 0), ("f".into(), 0), ("bytes".into(), 0)]);
    let Some(TypeKind::Enum { enumerators, .. }) =
        types.resolve(types.type_named("color").unwrap()).map(|(_, t)| &t.kind)
    else {
        panic!("color is not an enum");
    };
    let values: Vec<(&str, i64)> = enumerators.iter().map(|e| (e.name.as_str(), e.value)).collect();
    assert_eq!(values, [("RED", 1), ("GREEN", 2), ("ULTRAVIOLET", -3)]);

    // The flattened layout decodes the live object to the values it was initialised with.
    let layout = types.object_layout("GADGET").unwrap();
    let bytes = read_live(target.pid(), layout.address, layout.size as usize);
    let value_of = |name: &str| {
        let f = layout
            .fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} not flattened"));
        let mut v = [0u8; 8];
        v[..f.size as usize].copy_from_slice(&bytes[f.offset as usize..(f.offset + f.size) as usize]);
        let raw = u64::from_le_bytes(v);
        let shift = 64 - 8 * f.size as u32;
        if f.signed {
            ((raw << shift) as i64) >> shift
        } else {
            raw as i64
        }
    };
    assert_eq!(value_of("tag"), 7);
    assert_eq!(value_of("origin.x"), -2);
    assert_eq!(value_of("origin.y"), 40000);
    assert_eq!(value_of("samples[3]"), -4);
    assert_eq!(value_of("grid[4]"), 5);
    assert_eq!(value_of("color"), -3);
    assert_eq!(value_of("total"), -1234567890123);
    assert_eq!(
        value_of("cursor") as u64,
        layout.address + target.fact("offset", "gadget.origin")
    );
    assert_eq!(value_of("head") as u64, target.fact("address", "NODES"));
    assert!(!layout
        .fields
        .iter()
        .any(|f| f.name.starts_with("value") || f.name == "flags"));
}

#[test]
fn non_pie_c_target_has_zero_bias_and_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_ctypes(dir.path(), false);
    let target = Running::start(&mut Command::new(&exe), "ready");
    let reported = target.fact("address", "GADGET");
    let syms = read_process_symbols(target.pid()).unwrap();
    assert_eq!(syms.main_module().unwrap().bias, 0);
    let gadget = syms.lookup("GADGET").unwrap();
    assert_eq!((gadget.address, gadget.size), (reported, target.fact("size", "gadget")));
    let types = DebugTypes::for_process(target.pid()).unwrap();
    assert_eq!(types.bias, 0);
    assert_eq!(types.variable("GADGET").unwrap().address, reported);
}

#[test]
fn hostile_dwarf_is_an_error_or_an_answer_never_a_panic() {
    use object::{Object, ObjectSection};
    let dir = tempfile::tempdir().unwrap();
    let exe = build_ctypes(dir.path(), true);
    let clean = std::fs::read(&exe).unwrap();
    let file = object::File::parse(&*clean).unwrap();
    let ranges: Vec<(String, usize, usize)> = [".debug_info", ".debug_abbrev", ".debug_str", ".debug_line_str"]
        .into_iter()
        .filter_map(|name| {
            let (off, len) = file.section_by_name(name)?.file_range()?;
            Some((name.to_string(), off as usize, len as usize))
        })
        .collect();
    assert!(ranges.len() >= 3);

    let exercise = |data: &[u8]| -> bool {
        match DebugTypes::parse(data, Path::new("mutant")) {
            Err(e) => {
                assert!(!e.to_string().contains('\n'), "errors are one line: {e}");
                false
            }
            Ok(types) => {
                for v in &types.variables {
                    let _ = types.type_name(v.type_id);
                    let _ = types.shape(v.type_id);
                    let _ = v.type_id.map(|t| (types.size_of(t), types.fields(t)));
                    let _ = types.object_layout(&v.qualified_name);
                }
                true
            }
        }
    };
    assert!(exercise(&clean));

    // A small deterministic generator: the same mutants every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut err) = (0, 0);
    for round in 0..300 {
        let mut data = clean.clone();
        let (_, off, len) = &ranges[round % ranges.len()];
        match round % 3 {
            // Flip a few bytes.
            0 => {
                for _ in 0..1 + next() % 8 {
                    data[off + (next() as usize % len)] ^= 1 << (next() % 8);
                }
            }
            // Overwrite a run with random bytes.
            1 => {
                let start = off + next() as usize % len;
                let end = (start + 1 + next() as usize % 64).min(off + len);
                for b in &mut data[start..end] {
                    *b = next() as u8;
                }
            }
            // Truncate the section: zero everything after a point.
            _ => {
                let cut = off + next() as usize % len;
                data[cut..off + len].fill(0);
            }
        }
        let answered = std::panic::catch_unwind(|| exercise(&data)).expect("the reader panicked");
        if answered {
            ok += 1;
        } else {
            err += 1;
        }
    }
    // Both outcomes occur: the mutants reach the parser (not only the ELF header check).
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");

    // A truncated file.
    for cut in [0, 4, 64, clean.len() / 3, clean.len() - 1] {
        assert!(std::panic::catch_unwind(|| exercise(&clean[..cut])).is_ok());
    }
}

#[test]
fn healme_registry_describes_its_state_live_and_in_a_snapshot() {
    use memzinc::describe::read_snapshot_registry;
    use memzinc::introspect::{read_process_registry, Kind};

    let target = healme();
    let reported = target.fact("address", "HEALME_STATE");
    let objects = read_process_registry(target.pid()).unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let state = &objects[0];
    assert_eq!((state.name.as_str(), state.address), ("HEALME_STATE", reported));
    assert_eq!(
        (state.layout.name.as_str(), state.layout.size, state.layout.align),
        ("Thermostat", 20, 4)
    );
    let fields: Vec<(&str, &str, u64, u64, Kind)> = state
        .layout
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.type_name.as_str(), f.offset, f.size, f.kind))
        .collect();
    assert_eq!(
        fields,
        [
            ("magic", "u32", 0, 4, Kind::Unsigned),
            ("min_temp", "i32", 4, 4, Kind::Signed),
            ("max_temp", "i32", 8, 4, Kind::Signed),
            ("target_temp", "i32", 12, 4, Kind::Signed),
            ("fan_level", "u8", 16, 1, Kind::Unsigned),
            ("heater_on", "u8", 17, 1, Kind::Unsigned),
        ]
    );

    // The registry, DWARF and the committed spec tell the same layout.
    let from_registry = state.object_layout().unwrap();
    let from_dwarf = DebugTypes::for_process(target.pid())
        .unwrap()
        .object_layout("HEALME_STATE")
        .unwrap();
    let scalars = |l: &memzinc::introspect::ObjectLayout| {
        l.fields
            .iter()
            .map(|f| (f.name.clone(), f.offset, f.size, f.signed))
            .collect::<Vec<_>>()
    };
    assert_eq!(scalars(&from_registry), scalars(&from_dwarf));
    assert_eq!(
        (from_registry.address, from_registry.size),
        (from_dwarf.address, from_dwarf.size)
    );
    let spec = TargetSpec::load(&repo_root().join("models/targets/healme.json")).unwrap();
    assert_eq!(from_registry.merge_spec(&spec).unwrap(), spec);

    // The same registry, read from a snapshot file instead of the live process.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("healme.mzsnap");
    memzinc::describe::take(target.pid(), &snap, None).unwrap();
    let snapshot = memzinc::describe::Snapshot::open(&snap).unwrap();
    assert_eq!(read_snapshot_registry(&snapshot).unwrap(), objects);

    // The snapshot records every module's symbols: libc's as well as healme's own.
    let live = read_process_symbols(target.pid()).unwrap();
    assert_eq!(snapshot.symbol("HEALME_STATE").unwrap().address, reported);
    assert_eq!(
        snapshot.symbol("malloc").unwrap().address,
        live.lookup("malloc").unwrap().address
    );
}
