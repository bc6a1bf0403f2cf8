//! `plan --relocate`'s measured effect (issue 17), as the user runs it: a plain C program
//! (tests/targets/crelocate_bench.c, `gcc -O2 -g`) holds a 1,000,000-node list and a
//! 1,000,000-node binary search tree allocated in shuffled order among other allocations, and
//! times its own traversals (CLOCK_MONOTONIC). While it runs: its traversal times before,
//! `memzinc snapshot`, `memzinc plan --relocate g_list` and `--relocate g_tree` (the `memzinc`
//! process under `/usr/bin/time`: wall and peak RSS, 5 runs each, interleaved), both plans
//! applied, its traversal times after and its own check. Printed: medians with min–max, and the
//! before/after ratio from the target's own measurements in this one run. Goals: planning
//! 1M objects < 30 s, traversal ≥ 2× faster.
//!
//! Applying: the attestor proves at most ~64 pages of evidence per attestation (Solana's
//! account and compute limits), so a relocation of a million objects cannot be attested in one
//! transaction. The bench applies the planned file through the library's stage 5
//! (`memzinc::apply::apply`: all threads frozen, every old byte compared, written, read back) —
//! the CLI's attestation gate (`apply_attested`) is the one step skipped, and it says so.
//!
//! Asserts correctness only (every node is in the plan's structure, the target's check passes
//! after), never timings.
//!
//!     cargo build --release -p memzinc-cli && cargo bench -p memzinc-tests --bench relocate
//!
//! `MEMZINC_RELOCATE_N` sets N (default 1,000,000).

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use memzinc_tests::{binary, repo_root};

const RUNS: usize = 5;
/// Traversals timed before and after, each.
const TRAVERSALS: usize = 9;
const ROOTS: [(&str, &str); 2] = [("g_list", "list"), ("g_tree", "tree")];

/// Wall seconds and peak resident KiB of one successful `memzinc` run (through
/// `/usr/bin/time`), and its stdout.
fn timed(args: &[&str]) -> (f64, u64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .arg(binary("memzinc"))
        .args(args)
        .env("MEMZINC_ROOT", repo_root())
        .output()
        .expect("/usr/bin/time runs (apt install time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memzinc {}: {stderr}", args.join(" "));
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("TIME "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let mut f = line.split_whitespace().skip(1);
    let wall = f.next().unwrap().parse().unwrap();
    let kib = f.next().unwrap().parse().unwrap();
    (wall, kib, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn stats(v: &mut [f64]) -> (f64, String) {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    (
        median,
        format!("median {median:.3} (min {:.3}, max {:.3})", v[0], v[v.len() - 1]),
    )
}

/// The target running, driven through its stdin.
struct Target {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Target {
    fn start(exe: &Path, n: u64) -> Target {
        let mut child = Command::new(exe)
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        Target { child, stdin, lines }
    }

    fn say(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.lines.next().expect("the target ended").unwrap()
    }

    /// Milliseconds per traversal of `kind`, as the target measured them.
    fn traversals(&mut self, kind: &str) -> Vec<f64> {
        let line = self.say(&format!("{kind} {TRAVERSALS}"));
        let times: Vec<f64> = line
            .strip_prefix(kind)
            .unwrap_or_else(|| panic!("{line}"))
            .split_whitespace()
            .map(|t| t.parse::<f64>().unwrap() / 1e6)
            .collect();
        assert_eq!(times.len(), TRAVERSALS, "{line}");
        times
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `label` in `text` ("1000000 object(s)" → label " object(s)" before it).
fn number_before(text: &str, label: &str) -> u64 {
    let at = text.find(label).unwrap_or_else(|| panic!("no `{label}` in: {text}"));
    let digits: String = text[..at].chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

/// The number right after `label` in `text`.
fn number_after(text: &str, label: &str) -> u64 {
    let at = text.find(label).unwrap_or_else(|| panic!("no `{label}` in: {text}")) + label.len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn main() {
    let n: u64 = std::env::var("MEMZINC_RELOCATE_N").map_or(1_000_000, |v| v.parse().expect("MEMZINC_RELOCATE_N"));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("crelocate_bench");
    let ok = Command::new("gcc")
        .args(["-g", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(repo_root().join("tests/targets/crelocate_bench.c"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc failed");

    let started = Instant::now();
    let mut target = Target::start(&exe, n);
    println!(
        "target: {n}-node list and {n}-node tree, shuffled among other allocations (built in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(target.say("check"), "OK");
    let before: Vec<Vec<f64>> = ROOTS.iter().map(|(_, kind)| target.traversals(kind)).collect();

    // One snapshot; the two plans write disjoint bytes (each its own nodes' chunks and root),
    // so both hold against it and apply one after the other.
    let core = dir.path().join("target.core");
    let core = core.to_str().unwrap();
    let pid = target.child.id().to_string();
    let (snap_wall, snap_kib, _) = timed(&["snapshot", "--pid", &pid, "-o", core]);
    println!(
        "snapshot: {snap_wall:.2} s wall, {:.0} MiB peak",
        snap_kib as f64 / 1024.0
    );
    let plans: Vec<String> = ROOTS
        .iter()
        .map(|(root, _)| {
            dir.path()
                .join(format!("{root}.plan.json"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut wall = vec![Vec::new(); ROOTS.len()];
    let mut mib = vec![Vec::new(); ROOTS.len()];
    let mut summary = vec![String::new(); ROOTS.len()];
    for _ in 0..RUNS {
        for (i, (root, _)) in ROOTS.iter().enumerate() {
            // Text output: its summary lines are the `--json` summary's numbers, without
            // printing a plan of millions of writes to a pipe.
            let (w, kib, out) = timed(&["plan", core, "--relocate", root, "-o", &plans[i]]);
            wall[i].push(w);
            mib[i].push(kib as f64 / 1024.0);
            summary[i] = out;
        }
    }
    println!("plan --relocate ({RUNS} runs each, interleaved; the memzinc process under /usr/bin/time):");
    for (i, (root, _)) in ROOTS.iter().enumerate() {
        let s = &summary[i];
        let objects = number_before(s, " object(s)");
        assert_eq!(objects, n, "the plan of {root} holds every node: {s}");
        println!(
            "  {root}: wall s {}, peak MiB {}",
            stats(&mut wall[i]).1,
            stats(&mut mib[i]).1
        );
        println!(
            "    {} objects, {} moved, {} pinned; along the traversal: cache-line changes {} -> {}, page changes {} -> {}; {} writes",
            objects,
            number_before(s, " moved"),
            number_before(s, " pinned"),
            number_after(s, "cache-line changes "),
            number_after(s, &format!("cache-line changes {} -> ", number_after(s, "cache-line changes "))),
            number_after(s, "page changes "),
            number_after(s, &format!("page changes {} -> ", number_after(s, "page changes "))),
            number_after(s, "plan.json ("),
        );
    }

    println!(
        "apply: through memzinc::apply::apply (stage 5: all threads frozen, every old byte compared, \
         one write batch per {} writes, read back), NOT attested — one attestation proves at most ~64 \
         pages of evidence (Solana account and compute limits), and these plans write millions of \
         bytes over thousands of pages; the CLI's gate (apply_attested) is the one step skipped",
        1024
    );
    let pid_n: i32 = pid.parse().unwrap();
    for (i, (root, _)) in ROOTS.iter().enumerate() {
        let plan = memzinc::reason::Plan::load(Path::new(&plans[i])).expect("the plan file loads");
        let report = memzinc::apply::apply(pid_n, &plan.patch()).unwrap_or_else(|e| panic!("apply {root}: {e}"));
        println!(
            "  {root}: {} writes, {} bytes, target stopped {:.1} ms",
            report.writes,
            report.bytes,
            report.stopped_us as f64 / 1000.0
        );
    }
    assert_eq!(target.say("check"), "OK", "the target's own check after the move");
    let after: Vec<Vec<f64>> = ROOTS.iter().map(|(_, kind)| target.traversals(kind)).collect();
    assert_eq!(target.say("check"), "OK", "the target's own check after the traversals");

    println!("the target's own traversal times, ms ({TRAVERSALS} each, one process, before and after):");
    for (i, (root, kind)) in ROOTS.iter().enumerate() {
        let (b, bs) = stats(&mut before[i].clone());
        let (a, as_) = stats(&mut after[i].clone());
        let order = if *kind == "tree" { " (preorder)" } else { "" };
        println!(
            "  {root}{order}: before {bs}; after {as_}; {:.1}x faster (median / median)",
            b / a
        );
    }
}
