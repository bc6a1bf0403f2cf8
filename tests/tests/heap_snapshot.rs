//! The reference-counted heap of a real process (tests/targets/crefheap.c exports it through
//! the MEMZINC_HEAP_* globals): `check` finds the planted corruption exactly where the target
//! put it, and agrees with the target's own count; `plan` repairs it with the aggregated model
//! (the fewest bytes, proven by cbc); the verifier accepts the plan with its evidence; applied
//! to the live process it heals the heap — by the target's own count and by `check` on a new
//! snapshot.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use memzinc::base::Sha2;
use memzinc::describe::Snapshot;
use memzinc::reason::Plan;
use memzinc::reason::{self, Check, Rule};
use memzinc_tests::{binary, repo_root};
use memzinc_verifier::wire::PolicyRules;

fn build(dir: &Path) -> PathBuf {
    let out = dir.join("crefheap");
    let ok = Command::new("gcc")
        .args(["-g", "-O0", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/crefheap.c"))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)")
        .success();
    assert!(ok, "gcc failed");
    out
}

struct Target {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    arena: u64,
}

impl Target {
    fn start(exe: &Path, mode: &str) -> Target {
        Target::start_with(exe, &[mode])
    }

    fn start_with(exe: &Path, args: &[&str]) -> Target {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let hex = first.strip_prefix("address MEMZINC_HEAP_ARENA 0x").unwrap();
        let arena = u64::from_str_radix(hex, 16).unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        Target {
            child,
            stdin,
            lines,
            arena,
        }
    }

    fn status(&mut self) -> String {
        writeln!(self.stdin, "status").unwrap();
        self.lines.next().unwrap().unwrap()
    }

    fn snapshot(&self, path: &Path) -> Snapshot {
        memzinc::describe::take(self.child.id() as i32, path, None).unwrap();
        Snapshot::open(path).unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn heap_findings(snap: &Snapshot) -> Vec<reason::Finding> {
    let report = reason::check(&Check {
        snapshot: snap,
        types: None,
        specs: &[],
    })
    .unwrap();
    assert_eq!(report.heap_objects, 1000);
    report.findings
}

#[test]
fn a_sound_heap_has_no_findings() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Target::start(&build(dir.path()), "ok");
    assert_eq!(target.status(), "status bad_pointers=0 bad_refcounts=0");
    let snap = target.snapshot(&dir.path().join("ok.core"));
    assert!(heap_findings(&snap).is_empty());
}

#[test]
fn planted_heap_corruption_is_found_planned_and_healed_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    for solver in ["cbc", "gecode"] {
        let mut target = Target::start(&exe, "corrupt");
        assert_eq!(target.status(), "status bad_pointers=3 bad_refcounts=5");
        let core = dir.path().join(format!("{solver}.core"));
        let snap = target.snapshot(&core);
        let findings = heap_findings(&snap);
        let at = |j: u64, off: u64| target.arena + 16 * j + off;
        let pointers: Vec<u64> = findings
            .iter()
            .filter(|f| f.rule == Rule::HeapPointerInvalid)
            .map(|f| f.address)
            .collect();
        assert_eq!(pointers, vec![at(10, 8), at(200, 8), at(555, 8)], "{findings:#?}");
        let refcounts: Vec<u64> = findings
            .iter()
            .filter(|f| f.rule == Rule::HeapRefcountWrong)
            .map(|f| f.address)
            .collect();
        // 11, 201 and 556 lost their pointer, 557 got 555's, 777's count was bumped.
        assert_eq!(
            refcounts,
            vec![at(11, 4), at(201, 4), at(556, 4), at(557, 4), at(777, 4)]
        );
        assert!(findings
            .iter()
            .any(|f| f.location() == "MEMZINC_HEAP_ARENA[10].pointer"));

        let plan_path = dir.path().join(format!("{solver}.plan.json"));
        let out = Command::new(binary("memzinc"))
            .args(["plan", "--heap", "--solver", solver, "-o"])
            .arg(&plan_path)
            .arg(&core)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("OPTIMAL by {solver}")), "{text}");
        let plan = Plan::load(&plan_path).unwrap();
        let patch = plan.patch();
        // Three pointers back to the objects that lost one (8 bytes each) and 777's refcount:
        // every other refcount is then right again.
        assert_eq!(plan.changed_bytes(), 28, "{solver}: {:#?}", plan.writes);
        assert_eq!(plan.findings.len(), 8);
        let submission = plan.submission().unwrap();
        submission
            .verify::<Sha2>(&PolicyRules {
                wx: true,
                max_bytes: 64,
                max_writes: 8,
                max_moves: 0,
            })
            .expect("the verifier accepts the plan and its evidence");

        memzinc::apply::apply(target.child.id() as i32, &patch).unwrap();
        assert_eq!(target.status(), "status bad_pointers=0 bad_refcounts=0");
        let after = dir.path().join(format!("{solver}.after.core"));
        target.snapshot(&after);
        let out = Command::new(binary("memzinc"))
            .arg("check")
            .arg(&after)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{solver}: still broken after apply: {text}");
        assert!(text.contains("heap: 1000 exported object(s) judged"), "{text}");
    }
}

/// More writes than one process_vm_writev takes (the kernel's 1024 iovecs): apply goes in
/// batches and the whole heap is healed, old bytes compared for every write first.
#[test]
fn a_repair_larger_than_one_writev_is_applied_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    // Beyond the first thousand objects, `corrupt` misaligns one pointer in twenty.
    let mut target = Target::start_with(&exe, &["corrupt", "50000"]);
    let snap = target.snapshot(&dir.path().join("large.core"));
    let heap = memzinc::reason::heap::Heap::from_snapshot(&snap).unwrap().unwrap();
    let opts = memzinc::reason::solver::SolverOptions {
        backend: memzinc::reason::solver::Backend::Cbc,
        time_limit: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let plan = memzinc::reason::heap::plan_snapshot(
        &snap,
        &heap,
        &opts,
        &repo_root().join("models"),
        &dir.path().join("large.dzn"),
        "crefheap",
    )
    .unwrap();
    let patch = plan.patch();
    assert!(
        patch.writes.len() > memzinc::introspect::IOV_MAX,
        "{} writes",
        patch.writes.len()
    );
    let before = target.status();
    assert_ne!(before, "status bad_pointers=0 bad_refcounts=0");

    // A stale old value in the last batch: refused before anything is written.
    let mut stale = patch.clone();
    let last = stale.writes.last_mut().unwrap();
    last.old[0] ^= 0xff;
    let err = memzinc::apply::apply(target.child.id() as i32, &stale).unwrap_err();
    assert!(matches!(err, memzinc::Error::OldBytesMismatch { .. }), "{err}");
    assert_eq!(target.status(), before);

    let report = memzinc::apply::apply(target.child.id() as i32, &patch).unwrap();
    assert_eq!(report.writes, patch.writes.len());
    assert_eq!(target.status(), "status bad_pointers=0 bad_refcounts=0");
}
