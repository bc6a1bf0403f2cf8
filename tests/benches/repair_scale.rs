//! Check and heap repair at 10, 1k, 10k and 100k pointers: the Rust check (facts and
//! violations), then the aggregated model (models/heap_repair.mzn) with cbc and with Gecode.
//! Prints, per size, flattening and solving times, the peak resident set of the solver
//! processes, the end-to-end time of a proven-optimal plan (facts, data, solve, expansion,
//! verifier rules, re-check) and ratios against the 10-pointer run (the fixed cost of starting
//! MiniZinc, measured in the same run). Asserts only correctness (every plan repairs its heap
//! and passes the verifier's rules), never timings. The goal it reports on: a proven-optimal
//! repair of 100k pointers in under 10 s end to end.
//!
//!     cargo bench -p memzinc-tests --bench repair_scale

use std::time::{Duration, Instant};

use memzinc::heap::{self, Heap, HeapFacts};
use memzinc::solver::{self, Backend, SolverOptions, Status};
use memzinc_verifier::wire::PolicyRules;

fn main() {
    let models = memzinc_tests::repo_root().join("models");
    let dir = tempfile::tempdir().unwrap();
    let rules = PolicyRules {
        wx: true,
        max_bytes: u32::MAX,
        max_writes: u32::MAX,
    };
    println!(
        "pointers  invalid  classes  check_ms  backend  status       bytes    flatten_ms  solve_ms  total_ms  peak_MiB  end_to_end_ms  x_anchor"
    );
    let mut anchor: Option<u128> = None;
    let mut goal = None;
    for (objects, types) in [(10, 3), (1_000, 20), (10_000, 40), (100_000, 200)] {
        // 5% of the pointers corrupted (at least two, so the smallest instance has work too).
        let bad_ratio = (2.0 / objects as f64).max(0.05);
        let heap = Heap::generate(objects as u64, objects, types, bad_ratio, 0.01);
        // The check: what Rust finds before any solving (invalid pointers, wrong refcounts).
        let t = Instant::now();
        let facts = HeapFacts::of(&heap);
        let violations = facts.violations().len();
        let check_ms = t.elapsed().as_millis();
        for backend in [Backend::Cbc, Backend::Gecode] {
            let start = Instant::now();
            let facts = HeapFacts::of(&heap);
            let dzn = dir.path().join(format!("heap{objects}.dzn"));
            std::fs::write(&dzn, facts.aggregated_dzn(&heap)).unwrap();
            let opts = SolverOptions {
                backend,
                time_limit: Duration::from_secs(if backend == Backend::Gecode { 20 } else { 60 }),
                ..Default::default()
            };
            let run = solver::run(&opts, &models.join("heap_repair.mzn"), &[&dzn]).unwrap();
            let bytes = match run.ints("kept") {
                Some(kept) => {
                    let plan = heap::expand(&heap, &facts, &kept).unwrap();
                    assert!(HeapFacts::of(&heap.apply(&plan.writes)).violations().is_empty());
                    plan.check(&rules).unwrap();
                    heap::plan_bytes(&plan).to_string()
                }
                None => "-".into(),
            };
            let end_to_end = start.elapsed().as_millis();
            let status = match run.status {
                Status::Optimal => "OPTIMAL",
                Status::Satisfied => "SATISFIED",
                Status::Unsatisfiable => "UNSAT",
                Status::Unknown => "UNKNOWN",
            };
            if backend == Backend::Cbc && anchor.is_none() {
                anchor = Some(end_to_end.max(1));
            }
            if backend == Backend::Cbc && objects == 100_000 {
                goal = Some((run.status == Status::Optimal, end_to_end));
            }
            println!(
                "{objects:>8}  {:>7}  {:>7}  {check_ms:>8}  {:<7}  {status:<11}  {bytes:>7}  {:>10}  {:>8}  {:>8}  {:>8}  {end_to_end:>13}  {:>8.1}",
                facts.bad.len(),
                facts.classes.len(),
                backend.name(),
                run.stats.flatten_ms.unwrap_or(0),
                run.stats.solve_ms.unwrap_or(0),
                run.stats.total_ms,
                run.stats.peak_rss_kb.unwrap_or(0) / 1024,
                end_to_end as f64 / anchor.unwrap_or(1) as f64,
            );
        }
        println!("{objects:>8}  check found {violations} violation(s) in {check_ms} ms (Rust, O(n))");
    }
    if let Some((optimal, ms)) = goal {
        println!(
            "goal (proven-optimal repair of 100k pointers in < 10 s end to end, cbc): {} — {} in {ms} ms ({:.2} of the goal)",
            if optimal && ms < 10_000 { "met" } else { "not met" },
            if optimal { "OPTIMAL" } else { "not proven" },
            ms as f64 / 10_000.0
        );
    }
}
