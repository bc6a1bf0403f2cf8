//! `memzinc check` on snapshots of real processes: a C target with globals broken on purpose
//! (tests/targets/cbroken.c, compiled here with `gcc -g`) and healme. Expected addresses come
//! from the targets themselves (`&STATE`, the mappings they made), never from memzinc.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use memzinc::describe::Snapshot;
use memzinc::introspect::DebugTypes;
use memzinc::reason::{self, Check, Rule};
use memzinc_tests::{binary, repo_root, Running};

fn build_cbroken(dir: &Path) -> PathBuf {
    let out = dir.join("cbroken");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/cbroken.c"))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc failed");
    out
}

fn key(f: &reason::Finding) -> (Rule, String) {
    (f.rule, f.location())
}

#[test]
fn the_broken_globals_and_mappings_and_only_they_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_cbroken(dir.path());
    let target = Running::start(&mut Command::new(&exe), "ready");
    let snap = target.snapshot(&dir.path().join("cbroken.core"));
    let types = DebugTypes::for_snapshot(&snap).unwrap();
    let report = reason::check(&Check {
        snapshot: &snap,
        types: Some(&types),
        specs: &[],
    })
    .unwrap();
    let found: BTreeSet<(Rule, String)> = report.findings.iter().map(key).collect();
    let expected: BTreeSet<(Rule, String)> = [
        (Rule::BoolNotZeroOrOne, "STATE.ready"),
        (Rule::BoolNotZeroOrOne, "LONE_BOOL"),
        (Rule::EnumInvalid, "STATE.mode"),
        (Rule::EnumInvalid, "STATE.bad_perms"),
        (Rule::PointerUnmapped, "STATE.dangling"),
        (Rule::PointerUnmapped, "STATE.nodes[1].next"),
        (Rule::PointerMisaligned, "STATE.misaligned"),
        (Rule::FunctionPointerNotExecutable, "STATE.bad_callback"),
        (Rule::WritableAndExecutable, "[anonymous]"),
        (Rule::ExecutableAnonymous, "[anonymous]"),
    ]
    .into_iter()
    .map(|(r, s)| (r, s.to_string()))
    .collect();
    assert_eq!(found, expected, "{:#?}", report.findings);
    // Two executable anonymous mappings (rwx and rx), one of them also writable.
    assert_eq!(report.count(Rule::ExecutableAnonymous), 2);
    assert_eq!(report.findings.len(), 11);

    // Addresses are the target's own: field addresses inside STATE, the mappings it made.
    let state = target.fact("address", "STATE");
    let state_var = types.variable("STATE").unwrap();
    assert_eq!(state_var.address, state);
    let fields = types.fields(state_var.type_id.unwrap()).unwrap();
    let offset = |name: &str| fields.iter().find(|f| f.field.name == name).unwrap().field.offset;
    let at = |rule: Rule, field: &str| {
        report
            .findings
            .iter()
            .find(|f| f.rule == rule && key(f).1 == field)
            .unwrap()
            .address
    };
    assert_eq!(at(Rule::BoolNotZeroOrOne, "STATE.ready"), state + offset("ready"));
    assert_eq!(at(Rule::PointerUnmapped, "STATE.dangling"), state + offset("dangling"));
    assert_eq!(at(Rule::EnumInvalid, "STATE.mode"), state + offset("mode"));
    assert_eq!(
        at(Rule::BoolNotZeroOrOne, "LONE_BOOL"),
        target.fact("address", "LONE_BOOL")
    );
    let node_size = 16;
    assert_eq!(
        at(Rule::PointerUnmapped, "STATE.nodes[1].next"),
        state + offset("nodes") + node_size
    );
    assert_eq!(
        at(Rule::WritableAndExecutable, "[anonymous]"),
        target.fact("address", "rwx")
    );
    let exec_anon: BTreeSet<u64> = report
        .findings
        .iter()
        .filter(|f| f.rule == Rule::ExecutableAnonymous)
        .map(|f| f.address)
        .collect();
    assert_eq!(
        exec_anon,
        [target.fact("address", "rwx"), target.fact("address", "rx")]
            .into_iter()
            .collect()
    );
    // The one-past-the-end pointer, the heap-ish node, the string and the function are sound.
    assert!(report.pointers >= 11, "{report:?}");
    assert!(report.not_judged.is_empty(), "{:?}", report.not_judged);
}

#[test]
fn the_cli_exits_2_on_violations_and_keeps_region_checks_without_dwarf() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_cbroken(dir.path());
    let core = dir.path().join("cbroken.core");
    let target = Running::start(&mut Command::new(&exe), "ready");
    target.snapshot(&core);
    drop(target);
    let memzinc = binary("memzinc");
    let out = Command::new(&memzinc)
        .args(["check", "--json"])
        .arg(&core)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 11);
    let text = Command::new(&memzinc).arg("check").arg(&core).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("STATE.dangling: pointer-unmapped"), "{text}");
    assert!(text.contains("11 violation(s)"), "{text}");

    // The binary is gone: the DWARF checks cannot run, the region checks still do.
    std::fs::remove_file(&exe).unwrap();
    let out = Command::new(&memzinc)
        .args(["check", "--json"])
        .arg(&core)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["executable-anonymous", "writable-and-executable"]
            .into_iter()
            .collect()
    );
    assert!(report["types_unavailable"].as_str().is_some());
    // A different binary is refused, not misread.
    let out = Command::new(&memzinc)
        .args(["check", "--binary"])
        .arg(binary("healme"))
        .arg(&core)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the binary the snapshot was taken of"));
}

fn healme(args: &[&str]) -> Running {
    let mut cmd = Command::new(binary("healme"));
    cmd.args(["--period-ms", "20"]).args(args);
    Running::start(&mut cmd, "tick 2")
}

#[test]
fn healme_breaks_only_its_spec_after_corrupting_itself() {
    let dir = tempfile::tempdir().unwrap();
    let spec = memzinc::reason::TargetSpec::load(&repo_root().join("models/targets/healme.json")).unwrap();
    let healthy = healme(&[]).snapshot(&dir.path().join("ok.core"));
    let corrupted = healme(&["--corrupt-at", "1"]).snapshot(&dir.path().join("bad.core"));

    let run = |snap: &Snapshot| {
        let types = DebugTypes::for_snapshot(snap).unwrap();
        reason::check(&Check {
            snapshot: snap,
            types: Some(&types),
            specs: std::slice::from_ref(&spec),
        })
        .unwrap()
    };
    let ok = run(&healthy);
    assert!(ok.findings.is_empty(), "{:#?}", ok.findings);
    assert!(ok.globals >= 2 && ok.specs == 1);
    // HEALME_MODES is a Rust enum array with explicit tags: judged, variant payloads too.
    assert!(
        ok.not_judged.iter().all(|n| !n.contains("HEALME_MODES")),
        "{:?}",
        ok.not_judged
    );

    let bad = run(&corrupted);
    let found: BTreeSet<(Rule, String)> = bad.findings.iter().map(key).collect();
    let expected: BTreeSet<(Rule, String)> = [
        (Rule::SpecBounds, "HEALME_STATE.target_temp"),
        (Rule::SpecBounds, "HEALME_STATE.fan_level"),
        (Rule::SpecOrder, "HEALME_STATE.target_temp"),
    ]
    .into_iter()
    .map(|(r, s)| (r, s.to_string()))
    .collect();
    assert_eq!(found, expected, "{:#?}", bad.findings);
    let state = corrupted.symbol("HEALME_STATE").unwrap().address;
    assert!(bad
        .findings
        .iter()
        .any(|f| f.address == state + 12 && f.rule == Rule::SpecBounds));
}

#[test]
fn a_rust_enum_tag_naming_no_variant_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("healme.core");
    let snap = healme(&[]).snapshot(&core);
    let types = DebugTypes::for_snapshot(&snap).unwrap();
    // Where HEALME_MODES[1]'s tag lives: its DWARF discriminant member.
    let var = types.variable("HEALME_MODES").unwrap();
    let array = types.get(var.type_id.unwrap()).unwrap();
    let memzinc::introspect::TypeKind::Array {
        element: Some(element), ..
    } = array.kind
    else {
        panic!("HEALME_MODES is not an array")
    };
    let stride = types.size_of(element).unwrap();
    let memzinc::introspect::TypeKind::Struct {
        variant_part: Some(vp), ..
    } = &types.resolve(element).unwrap().1.kind
    else {
        panic!("Mode is not a Rust enum")
    };
    let tag = vp.discriminant.as_ref().unwrap();
    let tag_at = var.address + stride + tag.offset.unwrap();
    // The snapshot edited as a stray write would have left it: tag 0x5a names no variant. The
    // page no longer matches its leaf (inspect would say so); check judges the bytes as they are.
    let region = snap.region_of(tag_at, 1).unwrap();
    let file_offset = region.data_offset + (tag_at - region.map.start);
    drop(snap);
    let mut bytes = std::fs::read(&core).unwrap();
    bytes[file_offset as usize] = 0x5a;
    std::fs::write(&core, bytes).unwrap();
    let snap = Snapshot::open(&core).unwrap();
    let report = reason::check(&Check {
        snapshot: &snap,
        types: Some(&types),
        specs: &[],
    })
    .unwrap();
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(
        (f.rule, key(f).1.as_str(), f.address),
        (Rule::EnumInvalid, "healme::HEALME_MODES[1]", tag_at)
    );
    assert!(f.detail.contains("discriminant 90"), "{}", f.detail);
}
