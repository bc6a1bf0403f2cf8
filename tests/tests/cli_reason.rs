//! `memzinc plan` end to end on a corrupted healme (no chain involved): both backends give the
//! same repair, statistics land in the plan file, an incremental snapshot plans and checks as
//! its full core, and Ctrl-C kills the solver and exits 130.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memzinc_tests::{binary, repo_root};

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A healme that has corrupted itself (target 9000, fan 7), its output drained.
fn corrupted_healme() -> Running {
    let mut child = Command::new(binary("healme"))
        .args(["--corrupt-at", "1", "--period-ms", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let target = Running(child);
    while !lines.next().unwrap().unwrap().starts_with("tick 2") {}
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    target
}

/// Snapshots a [`corrupted_healme`] into `core`.
fn corrupted_healme_core(core: &Path) {
    let target = corrupted_healme();
    memzinc::describe::take(target.0.id() as i32, core, None).unwrap();
}

#[test]
fn plan_with_cbc_equals_plan_with_gecode_and_records_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("healme.core");
    corrupted_healme_core(&core);
    let spec = repo_root().join("models/targets/healme.json");
    let mut plans = Vec::new();
    for solver in ["gecode", "cbc"] {
        let out_path = dir.path().join(format!("{solver}.plan.json"));
        let out = Command::new(binary("memzinc"))
            .args(["plan", "--solver", solver, "--spec"])
            .arg(&spec)
            .arg("-o")
            .arg(&out_path)
            .arg(&core)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("OPTIMAL by {solver}")), "{text}");
        assert!(text.contains(&format!("solver {solver}: total")), "{text}");
        let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
        assert_eq!(plan["stats"]["backend"], solver);
        plans.push(plan);
    }
    // Same writes, same plan hash: the backend does not change the repair.
    assert_eq!(plans[0]["writes"], plans[1]["writes"]);
    assert_eq!(plans[0]["plan_hash"], plans[1]["plan_hash"]);
    assert_eq!(plans[0]["changed_bytes"], 5);
    // Gecode's answer in a plan is verified: the check ran (it has a time of its own).
    assert!(plans[0]["stats"]["check_ms"].is_u64(), "{}", plans[0]["stats"]);
}

/// `plan` and `check` read an incremental snapshot, one that stores only the pages written
/// since its parent and refers to the parent for the rest, as the full core of that instant
/// (`merge` writes it): the same findings, the same writes, the same plan hash.
#[test]
fn plan_and_check_read_an_incremental_snapshot_as_its_full_core() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let target = corrupted_healme();
    let pid = target.0.id().to_string();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let memzinc = |args: &[&str]| {
        let out = Command::new(binary("memzinc"))
            .args(args)
            .env("MEMZINC_STATE_DIR", &state)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = memzinc(args);
        assert_eq!(code, Some(0), "{args:?}: {stdout} {stderr}");
        stdout
    };
    ok(&["track", "--pid", &pid]);
    ok(&["snapshot", "--pid", &pid, "-o", &p("s0.core")]);
    // healme ticks every 20 ms: some pages are written between the two.
    std::thread::sleep(Duration::from_millis(100));
    let taken: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "snapshot",
        "--pid",
        &pid,
        "-o",
        &p("s1.core"),
        "--since",
        &p("s0.core"),
    ]))
    .unwrap();
    assert_eq!(taken["parent"], "s0.core", "{taken}");
    let (stored, pages) = (
        taken["pages_from_target"].as_u64().unwrap(),
        taken["pages"].as_u64().unwrap(),
    );
    assert!(stored > 0 && stored < pages / 2, "{stored} of {pages} pages stored");
    drop(target);
    ok(&["merge", &p("s1.core"), "-o", &p("full.core")]);

    let spec = repo_root().join("models/targets/healme.json");
    let spec = spec.to_str().unwrap();
    let mut plans = Vec::new();
    let mut checks = Vec::new();
    for core in ["s1.core", "full.core"] {
        let plan_file = p(&format!("{core}.plan.json"));
        ok(&["plan", "--spec", spec, "-o", &plan_file, &p(core)]);
        plans.push(serde_json::from_slice::<serde_json::Value>(&std::fs::read(&plan_file).unwrap()).unwrap());
        let (code, stdout, stderr) = memzinc(&["check", "--json", "--spec", spec, &p(core)]);
        assert_eq!(code, Some(2), "{core}: {stderr}");
        checks.push(serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["findings"].clone());
    }
    assert_eq!(plans[0]["changed_bytes"], 5, "{}", plans[0]);
    assert_eq!(plans[0]["writes"], plans[1]["writes"]);
    assert_eq!(plans[0]["plan_hash"], plans[1]["plan_hash"]);
    let findings = checks[0].as_array().unwrap();
    assert!(!findings.is_empty());
    assert_eq!(checks[0], checks[1]);
    println!(
        "delta: {stored} of {pages} pages stored; {} findings and the plan the same as the merged core's",
        findings.len()
    );
}

#[test]
fn ctrl_c_during_a_solve_kills_the_solver_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("healme.core");
    corrupted_healme_core(&core);
    // A model that searches for hours (tests/models/pigeons.mzn) in place of repair.mzn.
    let memzinc = Command::new(binary("memzinc"))
        .args(["plan", "--solver", "gecode", "--time-limit", "600", "--spec"])
        .arg(repo_root().join("models/targets/healme.json"))
        .arg("--model")
        .arg(repo_root().join("tests/models/pigeons.mzn"))
        .arg(&core)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let memzinc = Running(memzinc);
    let pid = memzinc.0.id() as i32;
    // Wait for fzn-gecode in a session memzinc started (its leader is memzinc's child).
    let deadline = Instant::now() + Duration::from_secs(60);
    let sid = loop {
        assert!(Instant::now() < deadline, "fzn-gecode never started");
        let found = children(pid).into_iter().find(|&c| {
            memzinc::reason::solver::session_members(c)
                .iter()
                .any(|p| comm(*p).as_deref() == Some("fzn-gecode"))
        });
        if let Some(sid) = found {
            break sid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let sent = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT).unwrap();
    let mut memzinc = memzinc;
    let status = memzinc.0.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    let mut err = String::new();
    std::io::Read::read_to_string(memzinc.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("cancelled"), "{err}");
    assert!(
        memzinc::reason::solver::session_members(sid).is_empty(),
        "the solver survived Ctrl-C"
    );
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The children of `pid`, from /proc.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

#[test]
fn snapshot_writes_dzn_facts_that_plain_minizinc_solves() {
    let dir = tempfile::tempdir().unwrap();
    let target = corrupted_healme();

    let core = dir.path().join("healme.core");
    let dzn = dir.path().join("healme.dzn");
    let spec = repo_root().join("models/targets/healme.json");
    let out = Command::new(binary("memzinc"))
        .args(["snapshot", "--pid", &target.0.id().to_string(), "-o"])
        .arg(&core)
        .arg("--dzn")
        .arg(&dzn)
        .arg("--spec")
        .arg(&spec)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let facts = std::fs::read_to_string(&dzn).unwrap();
    // The corruption (target 9000, fan 7) is in the facts, read from the core just written.
    assert!(facts.contains("9000") && facts.contains("n_fields"), "{facts}");

    // The plain MiniZinc CLI runs the repair model on the file unchanged, and repairs the same
    // 5 bytes `memzinc plan` does.
    let solved = Command::new("minizinc")
        .args(["--solver", "gecode"])
        .arg(repo_root().join("models/repair.mzn"))
        .arg(&dzn)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&solved.stdout);
    assert!(
        solved.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&solved.stderr)
    );
    let last_solution = text
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no solution in {text}"));
    let solution: serde_json::Value = serde_json::from_str(last_solution).unwrap();
    assert_eq!(solution["changed_bytes"], 5, "{text}");
    assert!(text.contains("=========="), "not proven optimal: {text}");

    // `--dzn` without `--spec` is refused before anything is frozen or written.
    let out = Command::new(binary("memzinc"))
        .args(["snapshot", "--pid", &target.0.id().to_string(), "-o"])
        .arg(dir.path().join("other.core"))
        .arg("--dzn")
        .arg(dir.path().join("other.dzn"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!dir.path().join("other.core").exists());
}
