//! Heap repair at 1k, 10k and 100k objects: the aggregated model (models/heap_repair.mzn)
//! with cbc and with Gecode. Prints times, model sizes, optimality and ratios; asserts only
//! correctness (every plan repairs its heap and passes the verifier's rules), never timings.
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
    println!("objects  invalid  classes  backend  status       bytes    flatten_ms  solve_ms  total_ms");
    for (objects, types) in [(1_000, 20), (10_000, 40), (100_000, 200)] {
        let t = Instant::now();
        let heap = Heap::generate(objects as u64, objects, types, 0.05, 0.01);
        let facts = HeapFacts::of(&heap);
        let facts_ms = t.elapsed().as_millis();
        let dzn = dir.path().join(format!("heap{objects}.dzn"));
        std::fs::write(&dzn, facts.aggregated_dzn(&heap)).unwrap();
        let mut totals = Vec::new();
        for backend in [Backend::Cbc, Backend::Gecode] {
            let opts = SolverOptions {
                backend,
                time_limit: Duration::from_secs(30),
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
            let status = match run.status {
                Status::Optimal => "OPTIMAL",
                Status::Satisfied => "SATISFIED",
                Status::Unsatisfiable => "UNSAT",
                Status::Unknown => "UNKNOWN",
            };
            println!(
                "{objects:>7}  {:>7}  {:>7}  {:<7}  {status:<11}  {bytes:>7}  {:>10}  {:>8}  {:>8}",
                facts.bad.len(),
                facts.classes.len(),
                backend.name(),
                run.stats.flatten_ms.unwrap_or(0),
                run.stats.solve_ms.unwrap_or(0),
                run.stats.total_ms
            );
            totals.push(run.stats.total_ms.max(1));
        }
        println!(
            "{objects:>7}  facts in Rust {facts_ms} ms; gecode/cbc wall-time ratio {:.2}",
            totals[1] as f64 / totals[0] as f64
        );
    }
}
