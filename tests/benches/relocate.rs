//! `plan --relocate`'s measured effect (issue 17), as the user runs it: a plain C program
//! (tests/targets/crelocate_bench.c, `gcc -O2 -g`) holds a 1,000,000-node list and a
//! 1,000,000-node binary search tree allocated in shuffled order among other allocations, and
//! times its own traversals (CLOCK_MONOTONIC). Two such processes run side by side: one gets
//! a plan per structure (`--relocate g_list` and `--relocate g_tree`: each permuted among its
//! own chunks), the other one plan for both (`--relocate g_tree,g_list`: the two share their
//! 32-byte chunks, each in a run of them). While they run: their traversal times before,
//! `memzinc snapshot`, the three `memzinc plan` commands (the `memzinc` process under
//! `/usr/bin/time`: wall and peak RSS, 5 runs each, interleaved), the plans applied, their
//! traversal times after and their own checks. Printed: medians with min–max, and the
//! before/after ratio from each target's own measurements in its one run. Goals: planning
//! 1M objects < 30 s, traversal ≥ 2× faster.
//!
//! Attesting: one submission holds ~64 pages of evidence, so each plan is attested in parts
//! (`relocation_stream`) by the deployed program in LiteSVM, with what that cost printed. One
//! relocation holds at most `relocation_stream::MAX_SLOTS` objects (six stores, what one
//! transaction loads), so the two-million joint plan is done in rounds, as `plan --relocate`
//! leaves it: apply, snapshot, plan the rest, attest, apply. The bench applies each planned
//! file through the library's stage 5 (`memzinc::apply::apply`: all threads frozen, every old
//! byte compared, written, read back) — the CLI's attestation gate (`apply_attested`), which
//! asks a cluster, is the one step skipped, and it says so.
//!
//! Asserts correctness only (every node is in the plan's structure, the targets' checks pass
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
use memzinc_verifier::accounts::PolicyConfig;
use memzinc_verifier::wire::PolicyRules;

const RUNS: usize = 5;
/// Traversals timed before and after, each.
const TRAVERSALS: usize = 9;
/// The structures and the walk each target times of them.
const ROOTS: [(&str, &str); 2] = [("g_list", "list"), ("g_tree", "tree")];
/// The plans: one per structure for the first target, one for both for the second.
const PLANS: [(usize, &str); 3] = [(0, "g_list"), (0, "g_tree"), (1, "g_tree,g_list")];
const TARGETS: [&str; 2] = ["apart (a plan per structure)", "together (one plan for both)"];

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

/// The summary line of `root`'s structure in `plan --relocate`'s text output.
fn structure_line<'a>(out: &'a str, root: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("relocate {root} ")))
        .unwrap_or_else(|| panic!("no line for {root} in: {out}"))
}

/// "A -> B" after `label` in `line`.
fn before_after(line: &str, label: &str) -> (u64, u64) {
    let a = number_after(line, label);
    (a, number_after(line, &format!("{label}{a} -> ")))
}

/// What `plan --relocate` prints when it leaves objects for a later round.
const LATER_ROUND: &str = "left for a later round";

/// Attests the relocation `plan` in parts in the plan's LiteSVM (made on its first round) as
/// the `seq`-th attestation of its target, then applies it to `pid`.
fn attest_and_apply(env: &mut Option<memzinc_tests::svm::Env>, seq: u64, plan: &str, pid: i32, label: &str) {
    let plan = memzinc::reason::Plan::load(Path::new(plan)).expect("the plan file loads");
    let submission = plan.submission().expect("the plan's submission");
    let n = submission.plan.slots.len() as u32;
    // In as many stores as `memzinc attest` takes.
    let stores = memzinc_cli::attest::instructions::InParts::fewest_stores(n as usize)
        .unwrap_or_else(|e| panic!("{label}: {e}")) as u32;
    let e = env.get_or_insert_with(|| {
        let policy = PolicyConfig {
            rules: PolicyRules {
                wx: true,
                max_bytes: u32::MAX,
                max_writes: u32::MAX,
                max_moves: memzinc_verifier::relocation_stream::MAX_SLOTS,
            },
            model_hash: submission.plan.model_hash,
            ..memzinc_tests::svm::config(&[])
        };
        let mut e = memzinc_tests::svm::env_with(&policy);
        // The stores' rent: about 73 SOL per 10 MiB.
        e.svm
            .airdrop(&solana_signer::Signer::pubkey(&e.authority), 1_000_000_000_000)
            .expect("airdrop");
        e
    });
    let started = Instant::now();
    let cost = e
        .attest_in_parts(&submission, seq, None, stores, |_, _| {})
        .unwrap_or_else(|err| panic!("attest {label} in parts: {err}"));
    // Measured against estimated, per part: the estimate is meant to bound each from above.
    let ratios: Vec<f64> = cost
        .parts
        .iter()
        .map(|(cu, estimate)| *cu as f64 / estimate.estimate() as f64)
        .collect();
    let (least, most) = ratios
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let (most_cu, its_estimate) = cost.parts.iter().max_by_key(|p| p.0).copied().unwrap_or_default();
    println!(
        "  {label}: {n} objects in {stores} stores, {} parts, costliest part {most_cu} CU (estimated {}; parts cost \
         {:.0}–{:.0} % of their estimates), finish {} CU, {:.0} MB uploaded in {} transactions; {:.0} s",
        cost.parts.len(),
        its_estimate.estimate(),
        least * 100.0,
        most * 100.0,
        cost.finish_cu,
        cost.uploaded_bytes as f64 / 1e6,
        cost.transactions,
        started.elapsed().as_secs_f64()
    );
    let report = memzinc::apply::apply(pid, &plan.patch()).unwrap_or_else(|e| panic!("apply {label}: {e}"));
    println!(
        "  {label}: applied {} writes, {} bytes, target stopped {:.1} ms",
        report.writes,
        report.bytes,
        report.stopped_us as f64 / 1000.0
    );
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
    let mut targets: Vec<Target> = TARGETS.iter().map(|_| Target::start(&exe, n)).collect();
    println!(
        "targets: {} processes, each a {n}-node list and a {n}-node tree, shuffled among other allocations (built in {:.1} s)",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    let mut before = Vec::new();
    for t in &mut targets {
        assert_eq!(t.say("check"), "OK");
        before.push(ROOTS.iter().map(|(_, kind)| t.traversals(kind)).collect::<Vec<_>>());
    }

    // One snapshot per target; the first target's two plans write disjoint bytes (each its own
    // nodes' chunks and root), so both hold against its snapshot and apply one after the other.
    let mut cores = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let core = dir.path().join(format!("target{i}.core")).to_str().unwrap().to_string();
        let pid = t.child.id().to_string();
        let (snap_wall, snap_kib, _) = timed(&["snapshot", "--pid", &pid, "-o", &core]);
        println!(
            "snapshot of target {i}: {snap_wall:.2} s wall, {:.0} MiB peak",
            snap_kib as f64 / 1024.0
        );
        cores.push(core);
    }
    let plans: Vec<String> = PLANS
        .iter()
        .map(|(_, roots)| {
            dir.path()
                .join(format!("{}.plan.json", roots.replace(',', "+")))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut wall = vec![Vec::new(); PLANS.len()];
    let mut mib = vec![Vec::new(); PLANS.len()];
    let mut summary = vec![String::new(); PLANS.len()];
    for _ in 0..RUNS {
        for (i, (target, roots)) in PLANS.iter().enumerate() {
            // Text output: its summary lines are the `--json` summary's numbers, without
            // printing a plan of millions of writes to a pipe.
            let (w, kib, out) = timed(&["plan", &cores[*target], "--relocate", roots, "-o", &plans[i]]);
            wall[i].push(w);
            mib[i].push(kib as f64 / 1024.0);
            summary[i] = out;
        }
    }
    println!("plan --relocate ({RUNS} runs each, interleaved; the memzinc process under /usr/bin/time):");
    for (i, (target, roots)) in PLANS.iter().enumerate() {
        let s = &summary[i];
        println!(
            "  target {target}, --relocate {roots}: wall s {}, peak MiB {}; {} writes",
            stats(&mut wall[i]).1,
            stats(&mut mib[i]).1,
            number_after(s, "plan.json (")
        );
        for root in roots.split(',') {
            let line = structure_line(s, root);
            let objects = number_before(line, " object(s)");
            assert_eq!(objects, n, "the plan of {root} holds every node: {line}");
            let (l0, l1) = before_after(line, "cache-line changes ");
            let (p0, p1) = before_after(line, "page changes ");
            let (s0, s1) = before_after(line, "span ");
            println!(
                "    {root}: {objects} objects, {} moved, {} pinned; along the traversal: cache-line changes {l0} -> {l1}, \
                 page changes {p0} -> {p1}; span {:.1} -> {:.1} MiB",
                number_before(line, " moved"),
                number_before(line, " pinned"),
                s0 as f64 / (1 << 20) as f64,
                s1 as f64 / (1 << 20) as f64,
            );
        }
    }

    // Attested in parts by the deployed program (target/deploy/attestor.so) in LiteSVM: the
    // relocation_stream instructions, as `memzinc attest` sends them to a cluster. One LiteSVM
    // per plan; its later rounds extend the same target history.
    println!(
        "attest in parts (relocation_stream) by the program in LiteSVM, parts cut by their estimated cost \
         (the wall time is LiteSVM's, in this process, not a cluster's), then apply through memzinc::apply::apply \
         (stage 5: all threads frozen, every old byte compared, written, read back); the CLI's gate (apply_attested) \
         asks a cluster for the attestation, and these were made in LiteSVM: the gate is the one step skipped"
    );
    let mut envs: Vec<Option<memzinc_tests::svm::Env>> = PLANS.iter().map(|_| None).collect();
    for (i, (target, roots)) in PLANS.iter().enumerate() {
        let pid = targets[*target].child.id() as i32;
        attest_and_apply(
            &mut envs[i],
            0,
            &plans[i],
            pid,
            &format!("target {target}, {roots}, round 1"),
        );
    }
    // A relocation larger than one attestation holds is done in rounds: each round's plan is
    // made from a snapshot of the target as the last round left it.
    for (i, (target, roots)) in PLANS.iter().enumerate() {
        let mut out = summary[i].clone();
        let mut round = 1;
        while out.contains(LATER_ROUND) {
            round += 1;
            let pid = targets[*target].child.id().to_string();
            let core = dir.path().join(format!("target{target}.round{round}.core"));
            let core = core.to_str().unwrap();
            timed(&["snapshot", "--pid", &pid, "-o", core]);
            let plan = dir
                .path()
                .join(format!("{}.round{round}.plan.json", roots.replace(',', "+")));
            let plan = plan.to_str().unwrap();
            let (w, kib, o) = timed(&["plan", core, "--relocate", roots, "-o", plan]);
            println!(
                "  target {target}, {roots}, round {round}: planned from a new snapshot in {w:.1} s, {:.0} MiB peak; {}",
                kib as f64 / 1024.0,
                o.lines().filter(|l| l.starts_with("relocate ") || l.contains(LATER_ROUND)).collect::<Vec<_>>().join("; ")
            );
            attest_and_apply(
                &mut envs[i],
                round - 1,
                plan,
                pid.parse().unwrap(),
                &format!("target {target}, {roots}, round {round}"),
            );
            out = o;
        }
    }
    let mut after = Vec::new();
    for t in &mut targets {
        assert_eq!(t.say("check"), "OK", "the target's own check after the move");
        after.push(ROOTS.iter().map(|(_, kind)| t.traversals(kind)).collect::<Vec<_>>());
        assert_eq!(t.say("check"), "OK", "the target's own check after the traversals");
    }

    println!("each target's own traversal times, ms ({TRAVERSALS} each, one process, before and after):");
    for (t, name) in TARGETS.iter().enumerate() {
        println!("  target {t}, {name}:");
        for (i, (root, kind)) in ROOTS.iter().enumerate() {
            let (b, bs) = stats(&mut before[t][i].clone());
            let (a, as_) = stats(&mut after[t][i].clone());
            let order = if *kind == "tree" { " (preorder)" } else { "" };
            println!(
                "    {root}{order}: before {bs}; after {as_}; {:.1}x faster (median / median)",
                b / a
            );
        }
    }
}
