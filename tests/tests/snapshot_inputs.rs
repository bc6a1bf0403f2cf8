//! `memzinc snapshot` and `inspect` on real processes: the typed round trip, and bad input —
//! a zombie, an unprivileged caller, a target that dies mid-snapshot, a full disk — each one
//! line, a non-zero exit and no file left behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use memzinc_tests::{binary, fails, memzinc, ok, Target};

fn no_files_left(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn inspect_round_trip_shows_symbols_types_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("h.core");
    let core = core.to_str().unwrap();
    let target = Target::healme(&["--corrupt-at", "2", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");
    ok(&["snapshot", "--pid", &target.pid(), "-o", core]);
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", core, "--var", "HEALME_STATE", "--json"])).unwrap();
    let symbols = out["symbols"].as_array().unwrap();
    for name in ["HEALME_STATE", "malloc"] {
        assert!(
            symbols.iter().any(|s| s["name"] == name),
            "{name} missing from the symbols"
        );
    }
    let state = &out["values"][0];
    assert_eq!(state["type_name"], "Thermostat");
    let field = |name: &str| {
        state["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(field("target_temp")["type_name"], "i32");
    assert_eq!(
        field("target_temp")["value"],
        9000,
        "the corrupted live value, not the initialiser"
    );
    assert_eq!(field("fan_level")["value"], 7);
    assert_eq!(field("min_temp")["value"], 16);
    let text = ok(&["inspect", core, "--var", "HEALME_STATE"]);
    assert!(text.contains("target_temp") && text.contains("9000"), "{text}");

    // A reader that stops reading (`inspect | head`): the output ends quietly, no panic.
    let mut child = Command::new(binary("memzinc"))
        .args(["inspect", core])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{:?}: {stderr}", out.status);
}

#[test]
fn a_zombie_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A child that exits and is not reaped (yet) is a zombie.
    let mut child = Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = dir.path().join("z.core");
    let err = fails(&[
        "snapshot",
        "--pid",
        &child.id().to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("zombie"), "{err}");
    no_files_left(dir.path());
    child.wait().unwrap();
}

#[test]
fn an_unprivileged_caller_is_not_permitted() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // The cargo target dir is under root's home; give `nobody` a copy of the binary.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.path().join("memzinc");
    std::fs::copy(binary("memzinc"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = Target::healme(&["--period-ms", "50"]);
    target.wait_for("status=ok");
    let out = dir.path().join("n.core");
    let result = Command::new(&bin)
        .args(["snapshot", "--pid", &target.pid(), "-o", out.to_str().unwrap()])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not permitted"), "{stderr}");
    assert!(!out.exists());
    target.wait_for("status=ok");
}

#[test]
fn a_target_that_dies_mid_snapshot_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.core");
    let target = Target::healme(&["--ballast-mib", "768", "--period-ms", "50"]);
    target.wait_for("status=ok");
    let pid = target.pid();
    // Stopped for the whole copy, so the kill lands while memzinc reads it (a copy-on-write
    // snapshot holds it for milliseconds).
    let snapshot = Command::new(binary("memzinc"))
        .args([
            "snapshot",
            "--stop-the-world",
            "--pid",
            &pid,
            "-o",
            out.to_str().unwrap(),
        ])
        .env("MEMZINC_ROOT", memzinc_tests::repo_root())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once memzinc has it frozen (its tracer is set), i.e. in the middle of reading.
    let traced = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !traced() {
        assert!(std::time::Instant::now() < deadline, "memzinc never froze the target");
        std::thread::sleep(Duration::from_millis(2));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let result = snapshot.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    if result.status.success() {
        // The snapshot won the race; the file it wrote must then be whole.
        ok(&["inspect", out.to_str().unwrap()]);
        eprintln!("snapshot finished before the target died; raced, checked the file instead");
        return;
    }
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exited while memzinc was"), "{stderr}");
    no_files_left(dir.path());
}

#[test]
fn a_full_disk_is_one_line_and_leaves_nothing() {
    full_disk("a_full_disk_is_one_line_and_leaves_nothing", "256k", &[]);
}

/// The disk fills after 64 MiB of a 300 MiB target: more than the copy's buffer pool (at most
/// 128 MiB) is in flight when the writes start failing, and the copy must still stop and report it.
#[test]
fn a_disk_that_fills_midway_through_a_large_target_is_one_line_and_leaves_nothing() {
    full_disk(
        "a_disk_that_fills_midway_through_a_large_target_is_one_line_and_leaves_nothing",
        "64m",
        &["--ballast-mib", "300"],
    );
}

/// A snapshot of healme (`args` added) into a tmpfs of `size`, too small for it.
fn full_disk(test: &str, size: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mount = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.path().to_str().unwrap(),
        ])
        .output();
    let failed = match &mount {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("mount: {e}")),
    };
    if let Some(why) = failed {
        let why = format!("cannot mount a {size} tmpfs to fill (needs root and mount rights): {why}");
        memzinc_tests::skip(test, &why);
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let target = Target::healme(&[&["--period-ms", "50"], args].concat());
    target.wait_for("status=ok");
    let out = dir.path().join("full.core");
    let result = memzinc(&["snapshot", "--pid", &target.pid(), "-o", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "a snapshot cannot fit in {size}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("No space left").count(), 1, "said once: {stderr}");
    no_files_left(dir.path());
    target.wait_for("status=ok");
}

#[test]
fn fast_hashes_find_the_pages_a_process_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = (dir.path().join("before.core"), dir.path().join("after.core"));
    // Corrupts itself at tick 15 (0.75 s): one snapshot before, one after.
    let target = Target::healme(&["--corrupt-at", "15", "--period-ms", "50"]);
    target.wait_for("tick 2 ");
    ok(&["snapshot", "--pid", &target.pid(), "-o", before.to_str().unwrap()]);
    target.wait_for("OVERHEAT");
    ok(&["snapshot", "--pid", &target.pid(), "-o", after.to_str().unwrap()]);

    let before = memzinc::describe::Snapshot::open(&before).unwrap();
    let after = memzinc::describe::Snapshot::open(&after).unwrap();
    before.verify_pages().unwrap();
    assert_eq!(after.fast_hashes.len(), after.leaves.len());
    let state = after.symbol("HEALME_STATE").unwrap().address;
    let state_page = state - state % 4096;
    let changed = after.changed_pages(&before);
    assert!(
        changed.contains(&state_page),
        "the page of HEALME_STATE changed: {changed:x?}"
    );
    let total = after.page_addresses().count();
    assert!(
        changed.len() * 4 < total,
        "most pages did not change: {} of {total}",
        changed.len()
    );
}
