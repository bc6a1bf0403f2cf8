//! User invariants (`models/targets/cqueue.mzn`) on real snapshots of tests/targets/cqueue.c:
//! `check` finds the planted corruption (with the addresses the target prints itself), `plan`
//! repairs it, the verifier accepts the plan with its evidence, and the plan applied to the live
//! process heals it — `check` on a new snapshot reports nothing and the target's own view agrees.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use memzinc::base::Sha2;
use memzinc::describe::Snapshot;
use memzinc::introspect::DebugTypes;
use memzinc::reason::rules::Judge;
use memzinc::reason::Plan;
use memzinc::reason::{Finding, Rule};
use memzinc_tests::{binary, repo_root};
use memzinc_verifier::wire::PolicyRules;

fn build_cqueue(dir: &Path) -> PathBuf {
    let out = dir.join("cqueue");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/cqueue.c"))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc failed");
    out
}

/// cqueue running in `mode`, with the addresses it printed and a way to ask for its status.
struct Cqueue {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    facts: Vec<String>,
}

impl Cqueue {
    fn start(exe: &Path, mode: &str) -> Cqueue {
        let mut child = Command::new(exe)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut facts = Vec::new();
        loop {
            let line = lines.next().expect("cqueue ended early").unwrap();
            if line == "ready" {
                break;
            }
            facts.push(line);
        }
        Cqueue {
            child,
            stdin,
            lines,
            facts,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn address(&self, name: &str) -> u64 {
        let prefix = format!("address {name} 0x");
        let line = self.facts.iter().find(|l| l.starts_with(&prefix)).unwrap();
        u64::from_str_radix(&line[prefix.len()..], 16).unwrap()
    }

    /// The target's own `status count=.. capacity=.. len=.. list=..` line.
    fn status(&mut self) -> String {
        writeln!(self.stdin.as_mut().unwrap(), "status").unwrap();
        self.lines.next().unwrap().unwrap()
    }

    fn snapshot(&self, path: &Path) -> Snapshot {
        memzinc::describe::take(self.pid(), path, None).unwrap();
        Snapshot::open(path).unwrap()
    }
}

impl Drop for Cqueue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rules() -> PathBuf {
    repo_root().join("models/targets/cqueue.mzn")
}

fn judge(snap: &Snapshot) -> memzinc::reason::rules::Judged {
    let types = DebugTypes::for_snapshot(snap).unwrap();
    let models = repo_root().join("models");
    Judge {
        snapshot: snap,
        types: &types,
        model: &rules(),
        models_dir: &models,
    }
    .check(&Default::default())
    .unwrap()
}

fn keys(findings: &[Finding]) -> BTreeSet<(Rule, String, u64)> {
    findings.iter().map(|f| (f.rule, f.location(), f.address)).collect()
}

fn memzinc(args: &[&str]) -> std::process::Output {
    Command::new(binary("memzinc")).args(args).output().unwrap()
}

#[test]
fn a_sound_queue_keeps_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let target = Cqueue::start(&build_cqueue(dir.path()), "ok");
    let core = dir.path().join("ok.core");
    let snap = target.snapshot(&core);
    let judged = judge(&snap);
    assert!(judged.findings.is_empty(), "{:#?}", judged.findings);
    // The queue, four nodes and the buffer were followed from QUEUE.
    assert_eq!((judged.rules, judged.objects), (3, 6));

    // The CLI finds models/targets/cqueue.mzn by the executable's name; --no-rules skips it.
    let out = memzinc(&["check", core.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("rules: 3 rule(s)") && text.contains("over 6 object(s)"),
        "{text}"
    );
    assert!(text.contains("models/targets/cqueue.mzn"), "{text}");
    let out = memzinc(&["check", core.to_str().unwrap(), "--no-rules"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("rules:"));

    // A model file that names no global of the binary: one clear line, non-zero exit.
    let stray = dir.path().join("stray.mzn");
    std::fs::write(&stray, "roots = [NO_SUCH_GLOBAL];\n").unwrap();
    let out = memzinc(&["check", core.to_str().unwrap(), "--rules", stray.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("names no global struct"), "{err}");
}

#[test]
fn planted_corruption_is_reported_with_address_symbol_field_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let target = Cqueue::start(&build_cqueue(dir.path()), "corrupt");
    let core = dir.path().join("corrupt.core");
    let snap = target.snapshot(&core);
    let queue = target.address("QUEUE");
    let expected: BTreeSet<(Rule, String, u64)> = [
        (Rule::UserRule, "QUEUE.count", queue),
        (Rule::UserRule, "QUEUE.head", queue + 8),
        (Rule::UserRule, "QUEUE.buf->len", target.address("buf")),
    ]
    .into_iter()
    .map(|(r, s, a)| (r, s.to_string(), a))
    .collect();
    let judged = judge(&snap);
    assert_eq!(keys(&judged.findings), expected, "{:#?}", judged.findings);
    let detail = |field: &str| {
        judged
            .findings
            .iter()
            .find(|f| f.location() == field)
            .unwrap()
            .detail
            .clone()
    };
    assert!(detail("QUEUE.count").contains("count <= capacity"));
    assert!(detail("QUEUE.head").contains("acyclic"));

    // --json: the same findings, exit 2.
    let out = memzinc(&[
        "--json",
        "check",
        core.to_str().unwrap(),
        "--rules",
        rules().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let user: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "user-rule")
        .collect();
    assert_eq!(user.len(), 3, "{report}");
    assert!(user
        .iter()
        .any(|f| f["symbol"] == "QUEUE.buf" && f["field"] == "->len" && f["address"] == target.address("buf")));
    assert_eq!(report["rules"]["rules"], 3);
}

#[test]
fn a_dangling_heap_pointer_is_reported_where_it_lies() {
    let dir = tempfile::tempdir().unwrap();
    let target = Cqueue::start(&build_cqueue(dir.path()), "dangling");
    let snap = target.snapshot(&dir.path().join("dangling.core"));
    let judged = judge(&snap);
    // node1->next: in the heap, reached as QUEUE.head->next; nodes 2 and 3 are unreachable.
    let expected: BTreeSet<(Rule, String, u64)> = [(
        Rule::PointerUnmapped,
        "QUEUE.head->next->next".to_string(),
        target.address("node1"),
    )]
    .into_iter()
    .collect();
    assert_eq!(keys(&judged.findings), expected, "{:#?}", judged.findings);
    assert_eq!(judged.objects, 4);
}

/// Plans with `solver`, checks the plan with the verifier, applies it to the live target and
/// returns the plan; `check` on a new snapshot must then report nothing.
fn plan_apply_recheck(dir: &Path, target: &Cqueue, solver: &str) -> Plan {
    let core = dir.join(format!("{solver}.core"));
    target.snapshot(&core);
    let plan_path = dir.join(format!("{solver}.plan.json"));
    let out = memzinc(&[
        "plan",
        core.to_str().unwrap(),
        "--rules",
        rules().to_str().unwrap(),
        "--solver",
        solver,
        "-o",
        plan_path.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("OPTIMAL by {solver}")), "{text}");
    let file = Plan::load(&plan_path).unwrap();
    let patch = file.patch();
    assert_eq!(file.target, "cqueue");

    // The program's rules and Merkle checks accept it against the snapshot it came from.
    let policy = PolicyRules {
        wx: true,
        max_bytes: 64,
        max_writes: 8,
        max_moves: 0,
    };
    let submission = file.submission().unwrap();
    assert_eq!(submission.plan, patch);
    submission
        .verify::<Sha2>(&policy)
        .expect("the verifier accepts the plan and its evidence");

    memzinc::apply::apply(target.pid(), &patch).unwrap();
    let after = dir.join(format!("{solver}.after.core"));
    target.snapshot(&after);
    let model = rules();
    let out = memzinc(&["check", after.to_str().unwrap(), "--rules", model.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "healed target still breaks a rule: {text}");
    assert!(text.starts_with("rules: 3 rule(s)"), "{text}");
    file
}

#[test]
fn the_plan_heals_a_corrupted_queue_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_cqueue(dir.path());
    for solver in ["gecode", "cbc"] {
        let mut target = Cqueue::start(&exe, "corrupt");
        assert_eq!(target.status(), "status count=9 capacity=8 len=1000 list=-1");
        let file = plan_apply_recheck(dir.path(), &target, solver);
        // count (4 bytes), len (4) and one link of the cycle (8): the fewest bytes.
        assert_eq!(file.changed_bytes(), 16, "{solver}: {:#?}", file.writes);
        assert_eq!(file.writes.len(), 3);
        let status = target.status();
        assert!(status.starts_with("status count="), "{status}");
        let field = |name: &str| -> i64 {
            let at = status.find(&format!("{name}=")).unwrap() + name.len() + 1;
            status[at..].split(' ').next().unwrap().parse().unwrap()
        };
        // Capacities are trusted by the model file: only counts came down.
        assert_eq!(field("capacity"), 8);
        assert!(field("count") <= 8 && field("len") <= 16, "{solver}: {status}");
        assert!(field("list") >= 2, "{solver}: the list ends again: {status}");
        if solver == "gecode" {
            // Gecode's search prefers the values nearest the current ones.
            assert_eq!(status, "status count=8 capacity=8 len=16 list=4");
        }
    }
}

#[test]
fn the_plan_heals_a_dangling_heap_pointer_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Cqueue::start(&build_cqueue(dir.path()), "dangling");
    assert_eq!(target.status(), "status count=4 capacity=8 len=3 list=-2");
    let file = plan_apply_recheck(dir.path(), &target, "gecode");
    assert_eq!(file.writes.len(), 1, "{:#?}", file.writes);
    assert_eq!(file.writes[0].address, target.address("node1"));
    assert_eq!(file.writes[0].new, [0u8; 8]);
    assert_eq!(target.status(), "status count=4 capacity=8 len=3 list=2");
}

/// `watch` plans through the same entry point as `plan`: with no flag it finds the target's
/// model file by its executable's name and plans the rules' repair (dry run: nothing applied).
#[test]
fn watch_plans_with_the_targets_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Cqueue::start(&build_cqueue(dir.path()), "corrupt");
    let workdir = dir.path().join("watch");
    let out = Command::new(binary("memzinc"))
        .env("MEMZINC_ROOT", repo_root())
        .args(["--json", "watch", "--dry-run", "--rounds", "1", "--every", "10ms"])
        .args(["--pid", &target.pid().to_string(), "--solver", "gecode", "--workdir"])
        .arg(&workdir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let planned = events
        .iter()
        .find(|e| e["event"] == "planned")
        .expect("a planned round");
    assert_eq!(planned["writes"], 3, "{planned}");
    assert!(
        planned["violations"].as_array().is_some_and(|v| !v.is_empty()),
        "{planned}"
    );
    assert_eq!(events.last().unwrap()["repairs_planned"], 1, "{text}");
    // Dry run: the target is still as corrupt as it was.
    assert_eq!(target.status(), "status count=9 capacity=8 len=1000 list=-1");
    let plan = Plan::load(&workdir.join("round-0.plan.json")).unwrap();
    assert_eq!(plan.target, "cqueue");
}
