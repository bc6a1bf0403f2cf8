//! The solver runner against the real `minizinc`, Gecode and Debian's `cbc`: both backends,
//! statistics, the FlatZinc check of every cbc answer, MiniZinc as a solution checker, the
//! wall-clock limit during flattening, and cancellation killing the whole process group.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memzinc::reason::solver::{self, Backend, Cancel, SolverOptions, Status};
use memzinc_tests::repo_root;

fn model(name: &str) -> PathBuf {
    repo_root().join("tests/models").join(name)
}

fn healme_dzn(dir: &Path) -> PathBuf {
    let spec = memzinc::reason::TargetSpec::load(&repo_root().join("models/targets/healme.json")).unwrap();
    let dzn = dir.join("facts.dzn");
    std::fs::write(&dzn, memzinc::reason::dzn(&spec, &[0x7E4A_0001, 16, 24, 9000, 7, 0])).unwrap();
    dzn
}

fn opts(backend: Backend) -> SolverOptions {
    SolverOptions {
        backend,
        time_limit: Duration::from_secs(60),
        ..Default::default()
    }
}

/// No process of the session is left.
fn session_gone(sid: i32) -> bool {
    solver::session_members(sid).is_empty()
}

/// Cancels (and waits for) a solve running on another thread when the test ends, even by a
/// failed assertion, so no solver outlives the test.
struct Stop(
    Arc<Cancel>,
    Option<std::thread::JoinHandle<memzinc::Result<solver::Run>>>,
);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.cancel();
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn both_backends_prove_the_same_healme_repair_and_cbc_answers_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let dzn = healme_dzn(dir.path());
    let repair = repo_root().join("models/repair.mzn");
    let expected = vec![0x7E4A_0001, 16, 24, 21, 1, 0];

    let gecode = solver::run(&opts(Backend::Gecode), &repair, &[&dzn]).unwrap();
    assert_eq!(gecode.status, Status::Optimal);
    assert_eq!(gecode.ints("value").unwrap(), expected);
    assert!(gecode.check.is_none(), "unverified unless asked");
    assert!(
        gecode.stats.nodes.is_some() && gecode.stats.flatten_ms.is_some(),
        "{:?}",
        gecode.stats
    );

    let mut o = opts(Backend::Cbc);
    o.work_dir = Some(dir.path().join("work"));
    let cbc = solver::run(&o, &repair, &[&dzn]).unwrap();
    assert_eq!(cbc.status, Status::Optimal);
    assert_eq!(cbc.ints("value").unwrap(), expected);
    assert_eq!(cbc.objective, gecode.objective);
    let check = cbc.check.as_ref().expect("cbc answers are checked");
    assert!(
        check.ok() && check.constraints > 10 && check.variables > 10,
        "{check:?}"
    );
    assert_eq!(check.objective, cbc.objective);
    let s = &cbc.stats;
    assert_eq!(s.backend, "cbc");
    assert!(
        s.flatten_ms.is_some() && s.solve_ms.is_some() && s.check_ms.is_some(),
        "{s:?}"
    );
    assert!(
        s.solver.get("status").unwrap().as_str().unwrap().starts_with("Optimal"),
        "{s:?}"
    );
    // The work files are kept where asked: the linear FlatZinc, the LP, cbc's solution.
    for f in ["model.fzn", "model.ozn", "model.lp", "model.sol"] {
        assert!(dir.path().join("work").join(f).exists(), "{f}");
    }

    // Verified Gecode: the answer extends to a checked solution of the linear model.
    let mut o = opts(Backend::Gecode);
    o.verify = true;
    let verified = solver::run(&o, &repair, &[&dzn]).unwrap();
    assert!(verified.check.as_ref().unwrap().ok());
    assert_eq!(verified.check.as_ref().unwrap().objective, gecode.objective);
}

#[test]
fn both_backends_prove_the_unique_knapsack_optimum() {
    for backend in [Backend::Gecode, Backend::Cbc] {
        let run = solver::run(&opts(backend), &model("knapsack.mzn"), &[]).unwrap();
        assert_eq!(run.status, Status::Optimal, "{backend:?}");
        assert_eq!(run.objective, Some(14), "{backend:?}");
        assert_eq!(run.ints("take").unwrap(), vec![1, 1, 1, 0, 0, 0], "{backend:?}");
    }
}

#[test]
fn infeasible_models_are_unsatisfiable_on_both_backends() {
    let spec = memzinc_tests::unrepairable_healme_spec();
    let dir = tempfile::tempdir().unwrap();
    let dzn = dir.path().join("facts.dzn");
    std::fs::write(&dzn, memzinc::reason::dzn(&spec, &[0x7E4A_0001, 16, 24, 21, 1, 0])).unwrap();
    for backend in [Backend::Gecode, Backend::Cbc] {
        let run = solver::run(&opts(backend), &repo_root().join("models/repair.mzn"), &[&dzn]).unwrap();
        assert_eq!(run.status, Status::Unsatisfiable, "{backend:?}");
        assert!(run.output.is_null());
    }
}

#[test]
fn minizinc_as_solution_checker_accepts_the_optimum_and_refuses_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let dzn = healme_dzn(dir.path());
    let repair = repo_root().join("models/repair.mzn");
    let o = opts(Backend::Cbc);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, report) = solver::check_fixed(
        &o,
        &repair,
        &[&dzn],
        "value = [2118778881, 16, 24, 21, 1, 0];\n",
        deadline,
    )
    .unwrap();
    assert_eq!(status, Status::Optimal);
    assert!(report.unwrap().ok());
    // target_temp 61 is outside its bounds; fan 5 too; 30 > max_temp 24 breaks the ordering.
    for wrong in [
        "value = [2118778881, 16, 24, 61, 1, 0];\n",
        "value = [2118778881, 16, 24, 21, 5, 0];\n",
        "value = [2118778881, 16, 24, 30, 1, 0];\n",
    ] {
        let (status, _) = solver::check_fixed(&o, &repair, &[&dzn], wrong, deadline).unwrap();
        assert_eq!(status, Status::Unsatisfiable, "{wrong}");
    }
    // A claim that does not extend to a solution is refused as an error by `verify`.
    let err = solver::verify(
        &o,
        &repair,
        &[&dzn],
        &serde_json::json!({"value": [2118778881, 16, 24, 30, 1, 0]}),
        deadline,
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not extend"), "{err}");
}

#[test]
fn the_deadline_covers_flattening_and_kills_the_group() {
    for backend in [Backend::Gecode, Backend::Cbc] {
        let cancel = Cancel::new();
        let mut o = opts(backend);
        o.time_limit = Duration::from_secs(1);
        o.cancel = Some(cancel.clone());
        let start = Instant::now();
        let result = solver::run(&o, &model("slow_flatten.mzn"), &[]);
        let took = start.elapsed();
        match (backend, result) {
            // memzinc's own `minizinc -c` has no time limit: memzinc's deadline kills it.
            (_, Err(e)) => assert!(e.to_string().contains("no answer within"), "{backend:?}: {e}"),
            // minizinc 2.6.4 stops its own flattening at --time-limit (older notes said it
            // did not): no solution, no proof.
            (Backend::Gecode, Ok(run)) => assert_eq!(run.status, Status::Unknown),
            (other, Ok(run)) => panic!("{other:?} flattened 2 million constraints in 1 s: {run:?}"),
        }
        // 1 s limit + 5 s grace; flattening alone takes far longer.
        assert!(took < Duration::from_secs(20), "{backend:?}: {took:?}");
        let started = cancel.started();
        assert!(!started.is_empty());
        assert!(cancel.running().is_empty());
        for sid in started {
            assert!(session_gone(sid), "{backend:?}: session {sid} survived");
        }
    }
}

#[test]
fn cancel_kills_minizinc_and_the_solver_it_started() {
    let cancel = Cancel::new();
    let mut o = opts(Backend::Gecode);
    o.time_limit = Duration::from_secs(600);
    o.cancel = Some(cancel.clone());
    let dir = tempfile::tempdir().unwrap();
    let dzn = healme_dzn(dir.path());
    let mut stop = Stop(
        cancel.clone(),
        Some(std::thread::spawn(move || {
            solver::run(&o, &model("pigeons.mzn"), &[&dzn])
        })),
    );
    // Wait until Gecode itself is running: minizinc's child, in a process group of its own
    // but in the session memzinc started.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sid = loop {
        assert!(Instant::now() < deadline, "fzn-gecode never started");
        if let Some(&sid) = cancel.running().first() {
            if names(&solver::session_members(sid)).iter().any(|c| c == "fzn-gecode") {
                break sid;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let cancelled_at = Instant::now();
    cancel.cancel();
    let err = stop.1.take().unwrap().join().unwrap().unwrap_err();
    assert!(matches!(err, memzinc::Error::Cancelled(_)), "{err}");
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));
    assert!(
        session_gone(sid),
        "session {sid} survived: {:?}",
        names(&solver::session_members(sid))
    );
}

/// The command names of processes, from /proc.
fn names(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}
