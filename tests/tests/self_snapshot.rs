//! A program snapshots and describes itself in-process (`memzinc::selfsnap`, issue 3 item 4):
//! `tests/targets/selfaware.rs` writes its own core, keeps running, and the core holds its
//! registry, its known global with the values it had, and both of its threads.

use std::process::{Command, Stdio};

use memzinc::describe::read_snapshot_registry;
use memzinc::describe::Snapshot;
use memzinc_tests::binary;

fn line_value<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {text}"))
}

#[test]
fn a_program_snapshots_itself_and_the_core_describes_it() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("self.core");
    let child = Command::new(binary("selfaware"))
        .arg(&core)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id() as u64;
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let values = line_value(&text, "values ");
    let field = |name: &str| -> u64 {
        values
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {values}"))
    };
    let (generation, pid) = (field("generation"), field("pid"));
    assert_eq!(pid, child_pid);
    // It carried on after the snapshot.
    assert_eq!(line_value(&text, "after "), (generation + 1).to_string());
    let report: serde_json::Value = serde_json::from_str(line_value(&text, "report ")).unwrap();

    let snap = Snapshot::open(&core).unwrap();
    snap.verify_pages().unwrap();
    assert_eq!(snap.meta.pid as u64, pid);
    assert_eq!(report["root"], snap.meta.root.as_str());
    // Both threads were frozen and recorded: the one that asked and the worker.
    let names: Vec<&str> = snap.meta.threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"selfaware-work"), "{names:?}");

    // Its registry, read from the core, describes its state; the bytes are the values it held.
    let objects = read_snapshot_registry(&snap).unwrap();
    let state = objects
        .iter()
        .find(|o| o.name == "SELFAWARE_STATE")
        .unwrap_or_else(|| panic!("{objects:?}"));
    assert_eq!(state.address, snap.symbol("SELFAWARE_STATE").unwrap().address);
    let read_field = |name: &str| -> u64 {
        let f = state.layout.fields.iter().find(|f| f.name == name).unwrap();
        let bytes = snap.read(state.address + f.offset, f.size as usize).unwrap();
        bytes.iter().rev().fold(0u64, |v, b| v << 8 | *b as u64)
    };
    assert_eq!(read_field("magic"), 0x5E1F_A3A4);
    assert_eq!(read_field("generation"), generation);
    assert_eq!(read_field("pid"), pid);
    assert_eq!(read_field("snapshots"), 1);

    // `memzinc inspect --json` opens it like any snapshot and types the global from DWARF.
    let inspect = Command::new(binary("memzinc"))
        .args(["--json", "inspect", "--var", "SELFAWARE_STATE"])
        .arg(&core)
        .output()
        .unwrap();
    let inspected = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success(),
        "{inspected} {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert!(inspected.contains(&generation.to_string()), "{inspected}");
}
