//! The further solver backends — WebAssembly MiniZinc 2.10 (npm `minizinc`: HiGHS, CBC,
//! Chuffed, Gecode) under node, and `pumpkin-solver` — on real instances: the aggregated heap
//! repair (their proven optimum must equal native cbc's, the expanded plan must repair the heap
//! and pass the verifier's rules, and the answer must have passed the FlatZinc check), and
//! the user-invariant repair of a real cqueue snapshot. A backend whose tool is not installed
//! (scripts/install-tools.sh minizinc-wasm / pumpkin) is skipped with the reason
//! (`memzinc_tests::skip`: a failure under CI and in scripts/test.sh); each test says how many
//! backends it checked and fails if that is none while none was skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use memzinc::reason::heap::{self, Heap, HeapFacts};
use memzinc::reason::solver::{self, Backend, SolverOptions, Status};
use memzinc_tests::repo_root;
use memzinc_verifier::wire::PolicyRules;

const BACKENDS: [Backend; 5] = [
    Backend::WasmHighs,
    Backend::WasmCbc,
    Backend::WasmChuffed,
    Backend::WasmGecode,
    Backend::Pumpkin,
];

fn opts(backend: Backend) -> SolverOptions {
    SolverOptions {
        backend,
        time_limit: Duration::from_secs(120),
        verify: true,
        ..Default::default()
    }
}

/// Why `backend` cannot run here, if it cannot.
fn missing(backend: Backend) -> Option<String> {
    let o = opts(backend);
    match backend {
        Backend::Pumpkin => (Command::new(&o.pumpkin).arg("--version").output().is_err())
            .then(|| format!("{} not found (scripts/install-tools.sh pumpkin)", o.pumpkin.display())),
        _ => (!o.wasm_package.join("node_modules/minizinc/dist/minizinc.wasm").exists()).then(|| {
            format!(
                "{} has no minizinc package (scripts/install-tools.sh minizinc-wasm)",
                o.wasm_package.display()
            )
        }),
    }
}

/// Those of `backends` installed here; each missing one is a skip of `test` (a failure under CI).
fn installed(test: &str, backends: &[Backend]) -> Vec<Backend> {
    let mut installed = Vec::new();
    for &backend in backends {
        match missing(backend) {
            Some(why) => memzinc_tests::skip(&format!("{test} [{}]", backend.name()), &why),
            None => installed.push(backend),
        }
    }
    installed
}

fn solve(dzn: &Path, backend: Backend) -> solver::Run {
    solver::run(&opts(backend), &repo_root().join("models/heap_repair.mzn"), &[dzn]).unwrap()
}

#[test]
fn every_backend_proves_the_heap_repair_optimum_cbc_proves() {
    let dir = tempfile::tempdir().unwrap();
    let heap = Heap::generate(5, 300, 5, 0.05, 0.02);
    let facts = HeapFacts::of(&heap);
    assert!(!facts.bad.is_empty());
    let dzn = dir.path().join("heap.dzn");
    std::fs::write(&dzn, facts.aggregated_dzn(&heap)).unwrap();
    let reference = solve(&dzn, Backend::Cbc);
    assert_eq!(reference.status, Status::Optimal);
    let optimum = reference.objective.unwrap();
    let rules = PolicyRules {
        wx: true,
        max_bytes: 1 << 20,
        max_writes: 1 << 16,
        max_moves: 0,
    };
    let backends = installed("every_backend_proves_the_heap_repair_optimum_cbc_proves", &BACKENDS);
    let mut ran = 0;
    for &backend in &backends {
        let run = solve(&dzn, backend);
        let name = backend.name();
        assert_eq!(run.status, Status::Optimal, "{name}: {:?}", run.stats);
        assert_eq!(run.stats.backend, name);
        // Checked: wasm answers completed and checked under the linear model, pumpkin's full
        // assignment checked against its FlatZinc.
        assert!(run.check.as_ref().is_some_and(|c| c.ok()), "{name}: answer not checked");
        assert_eq!(
            run.objective,
            Some(optimum),
            "{name} disagrees with cbc's proven optimum"
        );
        let plan = heap::expand(&heap, &facts, &run.ints("kept").unwrap()).unwrap();
        assert_eq!(heap::plan_bytes(&plan) as i64, optimum, "{name}");
        assert!(
            HeapFacts::of(&heap.apply(&plan.writes)).violations().is_empty(),
            "{name}"
        );
        plan.check(&rules).unwrap();
        println!("{name}: OPTIMAL {optimum} bytes; {:?}", run.stats.total_ms);
        ran += 1;
    }
    println!("{ran} of {} further backends ran", BACKENDS.len());
    assert_eq!(ran, backends.len());
    assert!(ran > 0 || backends.len() < BACKENDS.len(), "no backend checked");
}

fn build(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let ok = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&out)
        .arg(repo_root().join(format!("tests/targets/{name}.c")))
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc failed");
    out
}

#[test]
fn user_invariant_repairs_agree_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "cqueue");
    let mut child = Command::new(&exe)
        .arg("corrupt")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.as_mut().unwrap()).lines();
        while lines.next().unwrap().unwrap() != "ready" {}
    }
    let core = dir.path().join("cqueue.core");
    memzinc::describe::take(child.id() as i32, &core, None).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let types = memzinc::introspect::DebugTypes::for_snapshot(&snap).unwrap();
    let models = repo_root().join("models");
    let rules = models.join("targets/cqueue.mzn");
    let judge = memzinc::reason::rules::Judge {
        snapshot: &snap,
        types: &types,
        model: &rules,
        models_dir: &models,
    };
    // Chuffed is left out: its 32-bit integers do not take this model's value ranges.
    let all = [
        Backend::WasmHighs,
        Backend::WasmCbc,
        Backend::WasmGecode,
        Backend::Pumpkin,
    ];
    let backends = installed("user_invariant_repairs_agree_across_backends", &all);
    let mut ran = 0;
    for &backend in &backends {
        let facts = dir.path().join(format!("{}.facts.mzn", backend.name()));
        let plan = judge.plan("cqueue", &opts(backend), &facts).unwrap();
        assert_eq!(plan.status(), "OPTIMAL", "{}", backend.name());
        assert_eq!(plan.changed_bytes(), 16, "{}: {:#?}", backend.name(), plan.writes);
        ran += 1;
    }
    println!("{ran} of {} backends repaired the cqueue invariants", all.len());
    assert_eq!(ran, backends.len());
    assert!(ran > 0 || backends.len() < all.len(), "no backend checked");
}
