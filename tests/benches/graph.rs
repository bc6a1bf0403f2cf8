//! The typed object graph at scale, timed as the user runs it (the `memzinc` process, with
//! `/usr/bin/time` for wall time and peak memory), interleaved, 5 runs each, medians and
//! min–max:
//!
//! - `memzinc check` of a snapshot of tests/targets/cgraph_bench.c with 1,000,000 live heap
//!   objects (lists and trees, allocated in shuffled order): graph walk and chunk
//!   classification, against `memzinc inspect` of the same snapshot (which re-hashes every
//!   captured page), and their ratio. Goal: < 2 s and < 1 GiB peak.
//! - `memzinc plan` (no flags) with K broken pointers and K orphans (K = 100, 1,000, 10,000):
//!   time, and whether the plan was proven optimal. Goal: 10,000 in < 10 s, proven optimal.
//!
//! Asserts correctness only (the walk finds every object; each plan writes K pointers), never
//! timings.
//!
//!     cargo bench -p memzinc-tests --bench graph

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use memzinc_tests::{binary, repo_root};

const RUNS: usize = 5;

/// Wall seconds and peak resident KiB of one `memzinc` run (through `/usr/bin/time`), and its
/// stdout.
fn timed(args: &[&str]) -> (f64, u64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .arg(binary("memzinc"))
        .args(args)
        .env("MEMZINC_ROOT", repo_root())
        .output()
        .expect("/usr/bin/time runs (apt install time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("TIME "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let mut f = line.split_whitespace().skip(1);
    let wall = f.next().unwrap().parse().unwrap();
    let kib = f.next().unwrap().parse().unwrap();
    (wall, kib, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn stats(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.3} (min {:.3}, max {:.3})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

fn start(exe: &Path, args: &[&str]) -> Child {
    let mut child = Command::new(exe).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while lines.next().unwrap().unwrap() != "ready" {}
    child
}

fn snapshot(child: &Child, core: &Path) {
    let out = Command::new(binary("memzinc"))
        .args([
            "snapshot",
            "--pid",
            &child.id().to_string(),
            "-o",
            core.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("cgraph_bench");
    let ok = Command::new("gcc")
        .args(["-g", "-O2", "-o"])
        .arg(&exe)
        .arg(repo_root().join("tests/targets/cgraph_bench.c"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc failed");

    // 1. The walk of 1,000,000 objects.
    let objects = 1_000_000u64;
    let mut child = start(&exe, &[&objects.to_string()]);
    let core = dir.path().join("million.core");
    snapshot(&child, &core);
    let _ = child.kill();
    let _ = child.wait();
    let core = core.to_str().unwrap();
    let (mut check_wall, mut check_kib, mut inspect_wall, mut ratio) = (vec![], vec![], vec![], vec![]);
    for run in 0..RUNS {
        let (w, kib, out) = timed(&["--json", "check", core]);
        let report: serde_json::Value = serde_json::from_str(&out).expect("check --json");
        let heap = report["graph"]["heap_objects"].as_u64().unwrap();
        assert!(
            heap >= objects,
            "run {run}: the walk reached {heap} heap objects of {objects}"
        );
        let (iw, _, _) = timed(&["inspect", core]);
        check_wall.push(w);
        check_kib.push(kib as f64 / 1024.0);
        inspect_wall.push(iw);
        ratio.push(w / iw);
    }
    println!("graph walk of {objects} heap objects (`memzinc check`, whole process, {RUNS} runs, interleaved):");
    println!("  check wall s     {}", stats(&mut check_wall));
    println!("  check peak MiB   {}", stats(&mut check_kib));
    println!(
        "  inspect wall s   {}  (re-hashes every captured page)",
        stats(&mut inspect_wall)
    );
    println!("  check / inspect  {}", stats(&mut ratio));

    // 2. Plans of K broken pointers with K orphans: one snapshot each, then the plans
    // interleaved across K.
    // The last case: every broken pointer one byte off the orphan it named (a flipped bit), so
    // each is a one-byte match of its own.
    let cases = [(100u64, ""), (1_000, ""), (10_000, ""), (10_000, "flip")];
    let ks: Vec<u64> = cases.iter().map(|c| c.0).collect();
    let mut cores = Vec::new();
    for (i, (k, how)) in cases.iter().enumerate() {
        let mut args = vec!["1000".to_string(), k.to_string()];
        if !how.is_empty() {
            args.push(how.to_string());
        }
        let mut child = start(&exe, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let core = dir.path().join(format!("broken{i}.core"));
        snapshot(&child, &core);
        let _ = child.kill();
        let _ = child.wait();
        cores.push(core);
    }
    let mut plan_wall = vec![Vec::new(); ks.len()];
    let mut plan_mib = vec![Vec::new(); ks.len()];
    let mut optimal = vec![0usize; ks.len()];
    for _ in 0..RUNS {
        for (i, (&k, core)) in ks.iter().zip(&cores).enumerate() {
            let plan = dir.path().join(format!("broken{i}.plan.json"));
            let (w, kib, out) = timed(&[
                "--json",
                "plan",
                core.to_str().unwrap(),
                "-o",
                plan.to_str().unwrap(),
                "--time-limit",
                "60",
            ]);
            let p: serde_json::Value =
                serde_json::from_str(&out).unwrap_or_else(|_| panic!("no plan of {k} broken pointers ({w:.2} s)"));
            let writes = p["writes"].as_array().map_or(0, |w| w.len()) as u64;
            assert_eq!(writes, k, "every broken pointer is written");
            optimal[i] += usize::from(p["status"] == "OPTIMAL");
            if cases[i].1 == "flip" {
                // Each head gets back its own node: the flipped bit undone.
                let undone = p["writes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|w| {
                        let old = u64::from_str_radix(w["old"].as_str().unwrap(), 16)
                            .unwrap()
                            .swap_bytes();
                        let new = u64::from_str_radix(w["new"].as_str().unwrap(), 16)
                            .unwrap()
                            .swap_bytes();
                        old ^ new == 1 << 44
                    })
                    .count() as u64;
                assert_eq!(undone, k, "every flipped bit is undone");
            }
            plan_wall[i].push(w);
            plan_mib[i].push(kib as f64 / 1024.0);
        }
    }
    println!("plan (no flags), K broken pointers and K orphans ({RUNS} runs, interleaved):");
    for (i, (k, how)) in cases.iter().enumerate() {
        println!(
            "  K = {k:>6}{}: wall s {}, peak MiB {}, proven optimal {}/{RUNS}",
            if how.is_empty() { "" } else { " (one bit off)" },
            stats(&mut plan_wall[i]),
            stats(&mut plan_mib[i]),
            optimal[i]
        );
    }
}
