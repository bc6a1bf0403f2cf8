//! The typed object graph and the allocator's view on an ordinary C program
//! (tests/targets/clist.c, built here with `gcc -g`, no memzinc code in it): `memzinc check`
//! with no flags follows the heap from the globals, names a broken pointer by its access path,
//! tells use after free from unmapped, survives cycles, thread arenas, a garbage chunk header,
//! an allocator of the program's own and a graph larger than its bound.

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use memzinc_tests::{memzinc, repo_root};
use serde_json::Value;

fn build(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    build_c(dir, "clist.c", name, defines)
}

fn build_c(dir: &Path, source: &str, name: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-Wall", "-Werror", "-pthread"])
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(repo_root().join("tests/targets").join(source))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc failed");
    out
}

/// clist running, driven through its stdin.
struct Clist {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    facts: Vec<String>,
}

impl Clist {
    fn start(exe: &Path, args: &[&str]) -> Clist {
        Clist::start_with(exe, args, &[])
    }

    fn start_with(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Clist {
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut facts = Vec::new();
        loop {
            let line = lines.next().expect("clist ended early").unwrap();
            if line == "ready" {
                break;
            }
            facts.push(line);
        }
        Clist {
            child,
            stdin,
            lines,
            facts,
        }
    }

    fn say(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.lines.next().unwrap().unwrap()
    }

    fn address(&self, name: &str) -> u64 {
        let prefix = format!("address {name} 0x");
        let line = self.facts.iter().find(|l| l.starts_with(&prefix)).unwrap();
        u64::from_str_radix(&line[prefix.len()..], 16).unwrap()
    }

    fn snapshot(&self, path: &Path) -> String {
        let p = path.to_str().unwrap().to_string();
        let out = memzinc(&["snapshot", "--pid", &self.child.id().to_string(), "-o", &p]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        p
    }
}

impl Drop for Clist {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `memzinc check --json` (exit 0 or 2), parsed; and its text form.
fn check(snap: &str, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["--json", "check", snap];
    args.extend_from_slice(extra);
    let out = memzinc(&args);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(2)),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    let mut args = vec!["check", snap];
    args.extend_from_slice(extra);
    let text = String::from_utf8_lossy(&memzinc(&args).stdout).into_owned();
    (json, text)
}

fn findings<'a>(report: &'a Value, rule: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

/// As `Finding::location` writes it.
fn location(f: &Value) -> String {
    let (symbol, field) = (f["symbol"].as_str().unwrap(), f["field"].as_str().unwrap());
    match field {
        "" => symbol.to_string(),
        _ if field.starts_with('[') || field.starts_with("->") => format!("{symbol}{field}"),
        _ => format!("{symbol}.{field}"),
    }
}

#[test]
fn a_broken_next_on_the_heap_is_named_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist", &[]);
    let mut target = Clist::start(&exe, &[]);
    let (healthy, _) = check(&target.snapshot(&dir.path().join("a.core")), &[]);
    assert_eq!(healthy["findings"].as_array().unwrap().len(), 0, "{healthy:#}");
    let graph = &healthy["graph"];
    assert!(graph["heap_objects"].as_u64().unwrap() >= 8, "{graph:#}");
    assert!(graph["heap"].as_str().unwrap().starts_with("glibc malloc"), "{graph:#}");

    assert_eq!(target.say("break 3"), "done");
    assert!(target.say("status").starts_with("CORRUPT"));
    let snap_b = target.snapshot(&dir.path().join("b.core"));
    let (report, text) = check(&snap_b, &[]);
    let broken = findings(&report, "pointer-unmapped");
    assert_eq!(broken.len(), 1, "{report:#}");
    // Node 3's `next`, reached from the pointer global through three `next`s.
    assert_eq!(location(broken[0]), "g_list->next->next->next->next");
    assert_eq!(broken[0]["address"].as_u64().unwrap(), target.address("node3") + 8);
    assert!(
        text.contains("g_list->next->next->next->next: pointer-unmapped"),
        "{text}"
    );
    // inspect --var follows the same path: node 2's next is node 3, node 3's next the broken
    // value.
    let value = |path: &str| {
        let shown: Value = serde_json::from_slice(&memzinc(&["--json", "inspect", &snap_b, "--var", path]).stdout)
            .expect("inspect --json");
        shown["values"][0]["fields"][0]["value"].as_i64().unwrap() as u64
    };
    assert_eq!(value("g_list->next->next->next"), target.address("node3"));
    assert_eq!(value("g_list->next->next->next->next"), 0xdead0000);
    assert_eq!(value("g_list->next->next->next->id"), 3);
    // The graph as data: the same objects, the broken edge with its landing; and as Parquet.
    let (data, _) = check(&snap_b, &["--graph"]);
    let graph_data = &data["graph_data"];
    assert_eq!(
        graph_data["objects"].as_array().unwrap().len() as u64,
        data["graph"]["objects"].as_u64().unwrap()
    );
    let broken_edges: Vec<&Value> = graph_data["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["landing"] == "unmapped")
        .collect();
    assert_eq!(broken_edges.len(), 1);
    assert_eq!(broken_edges[0]["value"], 0xdead0000u64);
    let tables = dir.path().join("tables");
    memzinc_tests::ok(&["export", "--parquet", tables.to_str().unwrap(), &snap_b]);
    for table in ["graph_objects", "graph_edges", "heap_chunks"] {
        assert!(tables.join(format!("{table}.parquet")).is_file(), "no {table} table");
    }
    let err = memzinc_tests::fails(&["inspect", &snap_b, "--var", "g_list->nope"]);
    assert!(err.contains("g_list->nope: node has no member nope"), "{err}");
    // The four nodes after it are reached from nothing typed any more: found by scanning the
    // chunks, from the first of them (node 4, named as gdb names an unnamed object).
    assert_eq!(report["graph"]["orphans"].as_u64().unwrap(), 1, "{report:#}");
    assert_eq!(report["graph"]["heap_objects"], graph["heap_objects"]);
    assert!(text.contains("1 orphan(s)"), "{text}");
}

#[test]
fn a_freed_node_still_linked_is_use_after_free() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist", &[]);
    let mut target = Clist::start(&exe, &["index"]);
    assert_eq!(target.say("free 5"), "done");
    let (report, _) = check(&target.snapshot(&dir.path().join("a.core")), &[]);
    let freed = findings(&report, "pointer-into-freed-chunk");
    assert_eq!(freed.len(), 1, "{report:#}");
    assert_eq!(freed[0]["address"].as_u64().unwrap(), target.address("node4") + 8);
    let detail = freed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("tcache chunk") && detail.contains("use after free"),
        "{detail}"
    );
    // Not followed into the allocator's bytes: nothing else is reported.
    assert_eq!(report["findings"].as_array().unwrap().len(), 1, "{report:#}");
}

#[test]
fn cycles_interior_pointers_and_thread_arenas_are_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist", &[]);
    let target = Clist::start(&exe, &["tree", "thread", "index"]);
    let (report, _) = check(&target.snapshot(&dir.path().join("a.core")), &[]);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report:#}");
    let graph = &report["graph"];
    // 8 list nodes, 7 tree nodes (parent pointers make cycles), a 2-node ring, 8 nodes of the
    // second thread, and the `int` inside a tree node that g_interior points to: each once.
    assert_eq!(graph["heap_objects"].as_u64().unwrap(), 8 + 7 + 2 + 8 + 1, "{graph:#}");
    assert!(graph["heap"].as_str().unwrap().contains("2 arena(s)"), "{graph:#}");
    assert!(graph.get("bound").is_none());
}

#[test]
fn a_garbage_chunk_header_is_one_finding_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist", &[]);
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("smash 2"), "done");
    let (report, text) = check(&target.snapshot(&dir.path().join("a.core")), &[]);
    let corrupt = findings(&report, "heap-corrupt");
    assert_eq!(corrupt.len(), 1, "{report:#}");
    let detail = corrupt[0]["detail"].as_str().unwrap();
    assert!(detail.contains("garbage header") && !detail.contains('\n'), "{detail}");
    assert_eq!(corrupt[0]["address"].as_u64().unwrap(), target.address("node2") - 16);
    assert!(text.contains("heap-corrupt"), "{text}");
}

#[test]
fn an_allocator_of_the_programs_own_is_named_and_pointers_judged_by_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist_own", &["-DOWN_MALLOC"]);
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("break 5"), "done");
    let (report, _) = check(&target.snapshot(&dir.path().join("a.core")), &[]);
    let heap = report["graph"]["heap"].as_str().unwrap();
    assert!(heap.starts_with("a malloc of clist_own's own"), "{heap}");
    assert!(findings(&report, "pointer-into-freed-chunk").is_empty());
    let broken = findings(&report, "pointer-unmapped");
    assert_eq!(broken.len(), 1, "{report:#}");
    assert_eq!(location(broken[0]), "g_list->next->next->next->next->next->next");
}

#[test]
fn jemalloc_and_mimalloc_are_named_and_pointers_judged_by_mapping() {
    // Debian's libjemalloc2 and libmimalloc2.0 (scripts/install-tools.sh apt), preloaded the
    // way services switch allocators.
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist", &[]);
    for (lib, name) in [
        ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
        ("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2", "mimalloc"),
    ] {
        if !Path::new(lib).exists() {
            memzinc_tests::skip("jemalloc_and_mimalloc", &format!("{lib} is not installed"));
            return;
        }
        let mut target = Clist::start_with(&exe, &[], &[("LD_PRELOAD", lib)]);
        assert_eq!(target.say("break 5"), "done");
        let (report, text) = check(&target.snapshot(&dir.path().join(format!("{name}.core"))), &[]);
        let heap = report["graph"]["heap"].as_str().unwrap();
        assert!(
            heap.starts_with(name) && heap.contains("judged by mapping only") && !heap.contains('\n'),
            "{heap}"
        );
        assert!(text.contains(name), "{text}");
        assert!(findings(&report, "pointer-into-freed-chunk").is_empty());
        let broken = findings(&report, "pointer-unmapped");
        assert_eq!(broken.len(), 1, "{name}: {report:#}");
        assert_eq!(location(broken[0]), "g_list->next->next->next->next->next->next");
    }
}

#[test]
fn a_graph_larger_than_its_bound_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path(), "clist", &[]);
    let target = Clist::start(&exe, &["tree"]);
    let (report, text) = check(&target.snapshot(&dir.path().join("a.core")), &["--max-objects", "10"]);
    let graph = &report["graph"];
    assert_eq!(graph["objects"].as_u64().unwrap(), 10, "{graph:#}");
    assert!(graph["bound"].as_str().unwrap().contains("object bound"), "{graph:#}");
    assert!(text.contains("graph: stopped at 10 objects"), "{text}");
}

/// `memzinc` with these arguments (a localnet's `-u` and `-k` among them), which must succeed.
fn run(args: Vec<String>) -> String {
    memzinc_tests::ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// check → plan (no flags) → attest → apply on a real localnet, and the program's own check.
fn heal_the_list(args: &[&str], path: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let exe = build(dir.path(), "clist", &[]);
    let mut target = Clist::start(&exe, args);
    assert_eq!(target.say("break 3"), "done");
    assert_eq!(target.say("status"), "CORRUPT at 4");
    // The snapshot is taken under the policy's witness key, which records its root on chain.
    let net = memzinc_tests::own_localnet(dir.path());
    run(net.policy_args(&["policy", "init", "--max-bytes", "64", "--max-writes", "8"]));
    let snap = p("a.core");
    run(net.witnessed_snapshot(&target.child.id().to_string(), &snap, "clist"));
    let plan = p("a.plan.json");
    let planned: Value = serde_json::from_str(&memzinc_tests::ok(&["plan", &snap, "-o", &plan, "--json"])).unwrap();
    let writes = planned["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 1, "{planned:#}");
    // Node 3's next reconnected to node 4 (the detached rest of the list), not NULL — also when
    // the index still reaches node 4.
    assert_eq!(writes[0]["field"], path);
    assert_eq!(writes[0]["address"].as_u64().unwrap(), target.address("node3") + 8);
    let new = u64::from_str_radix(writes[0]["new"].as_str().unwrap(), 16)
        .unwrap()
        .swap_bytes();
    assert_eq!(new, target.address("node4"), "{planned:#}");
    assert_eq!(planned["status"], "OPTIMAL");

    run(net.args(&["attest", &plan]));
    run(net.args(&["apply", &plan, "--pid", &target.child.id().to_string()]));
    assert_eq!(target.say("status"), "OK");
    let (after, _) = check(&target.snapshot(&dir.path().join("b.core")), &[]);
    assert_eq!(after["findings"].as_array().unwrap().len(), 0, "{after:#}");
}

#[test]
fn plan_with_no_flags_reconnects_the_detached_rest_of_a_list() {
    heal_the_list(&[], "g_list->next->next->next->next");
}

#[test]
fn plan_reconnects_the_list_when_an_index_still_reaches_the_nodes() {
    // The index reaches node 3 first (breadth first), so that is the path named.
    heal_the_list(&["index"], "g_index[3]->next");
}

/// A plain Rust program (`rustc -g`, no memzinc crate): corruptions planted on SIGUSR1 in a
/// `#[no_mangle] static mut` struct, a `Vec` of structs and a `Box`-linked list; `check` finds
/// them by path, `plan` with no flags and `plan --rules` repair them, attested and applied on
/// a localnet, and the program's own check passes.
#[test]
fn a_plain_rust_program_is_checked_planned_attested_applied_and_healed() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let exe = dir.path().join("rlist");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["-g", "-C", "opt-level=0", "--edition", "2021", "-o"])
        .arg(&exe)
        .arg(repo_root().join("tests/targets/rlist.rs"))
        .status()
        .expect("rustc runs");
    assert!(status.success(), "rustc failed");
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("status"), "OK");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(target.child.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    assert_eq!(target.say("planted"), "planted");
    assert_eq!(target.say("status"), "CORRUPT stats");
    let net = memzinc_tests::own_localnet(dir.path());
    run(net.policy_args(&["policy", "init", "--max-bytes", "64", "--max-writes", "8"]));
    let snap = p("a.core");
    let pid = target.child.id().to_string();
    run(net.witnessed_snapshot(&pid, &snap, "rlist"));
    let rules = repo_root().join("tests/models/rlist_rules.mzn");
    let rules = rules.to_str().unwrap();
    let (report, _) = check(&snap, &["--rules", rules]);
    let mut found: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap().to_string(), location(f)))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("enum-invalid", "rlist::INVENTORY.items[2].mode"),
            ("enum-invalid", "rlist::STATS.mode"),
            ("pointer-unmapped", "rlist::INVENTORY.head->next->next->next"),
            ("user-rule", "STATS.count"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{report:#}"
    );

    let graph_plan = p("graph.plan.json");
    let planned: Value =
        serde_json::from_str(&memzinc_tests::ok(&["plan", &snap, "-o", &graph_plan, "--json"])).unwrap();
    let mut fields: Vec<&str> = planned["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "rlist::INVENTORY.head->next->next->next",
            "rlist::INVENTORY.items[2].mode",
            "rlist::STATS.mode"
        ],
        "{planned:#}"
    );
    let next = planned["writes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["field"] == "rlist::INVENTORY.head->next->next->next")
        .unwrap();
    let new = u64::from_str_radix(next["new"].as_str().unwrap(), 16)
        .unwrap()
        .swap_bytes();
    assert_eq!(new, target.address("node3"), "the detached rest of the list, not None");
    let rules_plan = p("rules.plan.json");
    memzinc_tests::ok(&["plan", &snap, "--rules", rules, "-o", &rules_plan]);

    for plan in [&graph_plan, &rules_plan] {
        run(net.args(&["attest", plan]));
        run(net.args(&["apply", plan, "--pid", &pid]));
    }
    assert_eq!(target.say("status"), "OK");
    let (after, _) = check(&target.snapshot(&dir.path().join("b.core")), &["--rules", rules]);
    assert_eq!(after["findings"].as_array().unwrap().len(), 0, "{after:#}");
}

/// cchains' nodes as it printed them: (chain, index) → address.
fn nodes(target: &Clist) -> std::collections::HashMap<(u32, u32), u64> {
    target
        .facts
        .iter()
        .filter_map(|l| {
            let mut w = l.strip_prefix("node ")?.split(' ');
            let chain = w.next()?.parse().ok()?;
            let i = w.next()?.parse().ok()?;
            let a = u64::from_str_radix(w.next()?.trim_start_matches("0x"), 16).ok()?;
            Some(((chain, i), a))
        })
        .collect()
}

/// `memzinc plan` (no flags) of a snapshot of `target`: the plan's writes as slot → new value.
fn planned_writes(target: &Clist, dir: &Path) -> (Value, std::collections::HashMap<u64, u64>) {
    let snap = target.snapshot(&dir.join("a.core"));
    let plan = dir.join("a.plan.json");
    let planned: Value = serde_json::from_str(&memzinc_tests::ok(&[
        "plan",
        &snap,
        "-o",
        plan.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(planned["status"], "OPTIMAL", "{planned:#}");
    let writes = planned["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let new = u64::from_str_radix(w["new"].as_str().unwrap(), 16)
                .unwrap()
                .swap_bytes();
            (w["address"].as_u64().unwrap(), new)
        })
        .collect();
    (planned, writes)
}

#[test]
fn a_pointer_one_byte_off_gets_back_the_node_it_named() {
    // Chains are allocated last to first, so handing detached nodes out in address order would
    // give chain 0's pointer chain 3's node: only the one-byte match says which is whose.
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), "cchains.c", "cchains", &[]);
    let mut target = Clist::start(&exe, &[]);
    let node = nodes(&target);
    for c in ["flip 0", "flip 1", "cut 3"] {
        assert_eq!(target.say(c), "done");
    }
    assert_eq!(target.say("status"), "CORRUPT");
    let (planned, writes) = planned_writes(&target, dir.path());
    assert_eq!(writes.len(), 3, "{planned:#}");
    for c in [0, 1, 3] {
        let slot = node[&(c, 0)] + 8;
        assert_eq!(writes.get(&slot), Some(&node[&(c, 1)]), "chain {c}: {planned:#}");
    }
}

#[test]
fn a_list_cut_in_three_places_is_joined_whole_without_a_ring() {
    // The queue's head and two of its links are cut: three broken pointers, three detached
    // pieces, two of which hold broken pointers themselves. Only a repair that hangs every
    // piece from the head, with no ring among them, leaves no node detached.
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), "cchains.c", "cchains", &[]);
    let mut target = Clist::start(&exe, &[]);
    let node = nodes(&target);
    assert_eq!(target.say("chop"), "done");
    let (planned, writes) = planned_writes(&target, dir.path());
    assert_eq!(writes.len(), 3, "{planned:#}");
    // The queue after the plan: the original links, with the plan's writes over them.
    let q: Vec<u64> = (0..6).map(|i| node[&(4, i)]).collect();
    let mut next: std::collections::HashMap<u64, u64> = (0..5).map(|i| (q[i] + 8, q[i + 1])).collect();
    next.insert(q[5] + 8, 0);
    let links: Vec<(u64, u64)> = writes
        .iter()
        .filter(|(slot, _)| next.contains_key(slot))
        .map(|(&s, &v)| (s, v))
        .collect();
    next.extend(links);
    let head_slot = writes
        .keys()
        .copied()
        .find(|s| !next.contains_key(s))
        .expect("one write is the queue's head");
    let mut seen = vec![];
    let mut at = writes[&head_slot];
    while at != 0 && seen.len() <= 6 {
        assert!(q.contains(&at), "{at:#x} is no queue node: {planned:#}");
        assert!(!seen.contains(&at), "a ring through {at:#x}: {planned:#}");
        seen.push(at);
        at = next[&(at + 8)];
    }
    assert_eq!(seen.len(), 6, "every node hangs from the head again: {planned:#}");
}

fn build_rust(dir: &Path, name: &str) -> PathBuf {
    let exe = dir.join(name);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["-g", "-C", "opt-level=0", "--edition", "2021", "-o"])
        .arg(&exe)
        .arg(repo_root().join(format!("tests/targets/{name}.rs")))
        .status()
        .expect("rustc runs");
    assert!(status.success(), "rustc failed");
    exe
}

#[test]
fn a_null_box_is_found_and_never_planned_null() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_rust(dir.path(), "rboxes");
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("status"), "OK");
    assert_eq!(target.say("null"), "done");
    assert_eq!(target.say("status"), "CORRUPT");
    let snap = target.snapshot(&dir.path().join("a.core"));
    let (report, text) = check(&snap, &[]);
    let nulls = findings(&report, "pointer-null-not-allowed");
    assert_eq!(nulls.len(), 1, "{report:#}");
    assert!(location(nulls[0]).ends_with("left"), "{}", location(nulls[0]));
    assert!(text.contains("NULL, which Rust never lets this pointer be"), "{text}");
    // The leaf the Box held is still allocated and reached by nothing: it takes its place.
    let (planned, writes) = planned_writes(&target, dir.path());
    assert_eq!(writes.len(), 1, "{planned:#}");
    assert_eq!(writes.values().next(), Some(&target.address("left")), "{planned:#}");
}

#[test]
fn a_null_box_with_nothing_to_take_its_place_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_rust(dir.path(), "rboxes");
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("lose"), "done");
    let snap = target.snapshot(&dir.path().join("a.core"));
    let plan = dir.path().join("a.plan.json");
    let out = memzinc(&["plan", &snap, "-o", plan.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("may not become NULL"), "{err}");
    assert!(!plan.exists(), "no plan is written");
}

/// memzinc's own localnet, under a policy that allows relocations of up to 64 objects.
fn relocation_localnet(dir: &Path) -> memzinc_tests::Net {
    relocation_localnet_writing(dir, 8192)
}

/// [`relocation_localnet`] with a policy that lets a plan write `max_bytes`.
fn relocation_localnet_writing(dir: &Path, max_bytes: u32) -> memzinc_tests::Net {
    let net = memzinc_tests::own_localnet(dir);
    let max_bytes = max_bytes.to_string();
    run(net.policy_args(&[
        "policy",
        "init",
        "--max-bytes",
        &max_bytes,
        "--max-writes",
        "128",
        "--max-moves",
        "64",
    ]));
    net
}

/// `plan --relocate ROOTS` of `snap` into `plan`: its `--json` summary of the relocation.
fn relocation(snap: &str, roots: &str, plan: &str) -> Value {
    relocation_with(snap, roots, plan, &[])
}

/// [`relocation`] with more arguments to `plan`.
fn relocation_with(snap: &str, roots: &str, plan: &str, more: &[&str]) -> Value {
    let mut args = vec!["--json", "plan", snap, "--relocate", roots, "-o", plan];
    args.extend(more);
    let planned: Value = serde_json::from_str(&memzinc_tests::ok(&args)).unwrap();
    planned["relocation"].clone()
}

/// `plan --relocate` on a plain C program whose list and tree are scattered over the heap:
/// attested and applied on a localnet while it runs; its own checks pass after, the node whose
/// address it hides in an integer is pinned (moving it would break the program's check), and
/// both structures are in address order along their traversal.
#[test]
fn a_scattered_list_and_tree_are_moved_into_traversal_order_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let exe = build_c(dir.path(), "cscatter.c", "cscatter", &[]);
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("status"), "OK");
    let (list0, tree0) = descents(&mut target);
    assert!(list0 > 10 && tree0 > 10, "scattered to begin with: {list0} {tree0}");
    let net = relocation_localnet(dir.path());
    let pid = target.child.id().to_string();
    let mut pinned_total = 0;
    for (i, root) in ["g_list", "g_tree"].iter().enumerate() {
        let snap = p(&format!("{root}.core"));
        run(net.witnessed_snapshot(&pid, &snap, "cscatter"));
        let plan = p(&format!("{root}.plan.json"));
        let r = &relocation(&snap, root, &plan);
        assert_eq!(r["objects"], 64, "{r:#}");
        assert!(r["moved"].as_u64().unwrap() > 32, "{r:#}");
        let s = &r["structures"][0];
        assert_eq!(s["root"], *root, "{r:#}");
        assert!(
            s["page_changes_after"].as_u64().unwrap() < s["page_changes_before"].as_u64().unwrap(),
            "{r:#}"
        );
        let pins: Vec<u64> = r["pins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["address"].as_u64().unwrap())
            .collect();
        if i == 0 {
            assert!(
                pins.contains(&target.address("hidden")),
                "the hidden node is pinned: {r:#}"
            );
        }
        pinned_total += r["pinned"].as_u64().unwrap();
        run(net.args(&["attest", &plan]));
        run(net.args(&["apply", &plan, "--pid", &pid]));
        assert_eq!(target.say("status"), "OK");
    }
    // Each pinned object can break the address order once going in and once going out.
    let (list1, tree1) = descents(&mut target);
    assert!(
        list1 + tree1 <= 2 * pinned_total,
        "descents {list1} {tree1}, {pinned_total} pinned"
    );
    for _ in 0..20 {
        assert_eq!(target.say("status"), "OK");
    }
}

/// `plan --relocate g_tree,g_list` on the same C program, whose list and tree nodes were
/// allocated alternately (both 32-byte chunks): the two structures share those chunks, the tree
/// in the lower run and the list above it, so the tree ends up in about half the bytes it
/// spanned, which no permutation among its own chunks can do. Attested and applied while it
/// runs; its own checks pass after, and both are in address order but around the pinned node.
#[test]
fn a_list_and_a_tree_relocated_together_share_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let exe = build_c(dir.path(), "cscatter.c", "cscatter", &[]);
    let mut target = Clist::start(&exe, &["32"]);
    assert_eq!(target.say("status"), "OK");
    let net = relocation_localnet(dir.path());
    let pid = target.child.id().to_string();
    let snap = p("both.core");
    run(net.witnessed_snapshot(&pid, &snap, "cscatter"));
    // At most 40 moves a plan: done in rounds, as a relocation larger than one attestation
    // holds is. The first round is attested in parts (`relocation_stream`), as a relocation too
    // large for one submission is: the table, parts (here of at most 16 slots), the finish;
    // `apply` finds it by its streamed hash.
    let plan = p("both.plan.json");
    let r = &relocation_with(&snap, "g_tree,g_list", &plan, &["--max-moves", "40"]);
    assert_eq!(r["objects"], 64, "{r:#}");
    let (tree, list) = (&r["structures"][0], &r["structures"][1]);
    assert_eq!(
        (tree["root"].as_str(), list["root"].as_str()),
        (Some("g_tree"), Some("g_list"))
    );
    assert_eq!(
        (tree["objects"].as_u64(), list["objects"].as_u64()),
        (Some(32), Some(32))
    );
    let moved = r["moved"].as_u64().unwrap();
    assert!(
        (39..=40).contains(&moved) && r["deferred"].as_u64().unwrap() > 0,
        "a round of at most 40 moves, the rest deferred: {r:#}"
    );
    // Parts of at most 4 slots. A run killed once it has checked a part leaves its relocation
    // open; `attest` again goes on after the parts it checked.
    let attest = ["--json", "attest", &plan, "--in-parts", "4"];
    killed_after_its_first_part(&net.args(&attest));
    let first: Value = serde_json::from_str(&run(net.args(&attest))).unwrap();
    let (parts, resumed) = (
        first["parts"].as_u64().unwrap(),
        first["parts_resumed"].as_u64().unwrap(),
    );
    assert!(parts >= 10, "40 slots in parts of 4: {first}");
    assert!(
        (1..parts).contains(&resumed),
        "went on after the parts the killed run checked: {first}"
    );
    run(net.args(&["apply", &plan, "--pid", &pid]));
    for _ in 0..5 {
        assert_eq!(target.say("status"), "OK");
    }
    let again: Value = serde_json::from_str(&run(net.args(&attest))).unwrap();
    assert_eq!(again["signature"], Value::Null, "attested once: {again}");
    let plan_file = memzinc::reason::Plan::load(std::path::Path::new(&plan)).unwrap();
    let streamed = plan_file
        .submission()
        .unwrap()
        .plan
        .streamed_plan_hash::<memzinc::base::Sha2>();
    let streamed: String = streamed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(again["plan_hash"], streamed, "{again}");

    // The second round, planned from a snapshot of the target as the first left it, moves the
    // rest: the tree ends up in about half the bytes it spanned.
    let snap2 = p("both2.core");
    run(net.witnessed_snapshot(&pid, &snap2, "cscatter"));
    let plan2 = p("both2.plan.json");
    let r2 = &relocation(&snap2, "g_tree,g_list", &plan2);
    assert_eq!(r2["deferred"], 0, "{r2:#}");
    assert!(r2["moved"].as_u64().unwrap() > 0, "{r2:#}");
    let span = |s: &Value, when: &str| s[format!("span_{when}")].as_u64().unwrap();
    assert!(
        3 * span(&r2["structures"][0], "after") < 2 * span(tree, "before"),
        "the tree is packed into about half its span: {r:#} {r2:#}"
    );
    attest_and_apply_in_order(&net, &plan2, &mut target, r2, 20);

    // `audit --replay` runs both decisions again in the sBPF VM, the first in parts, and gets
    // the recorded attestations byte for byte.
    let program = memzinc_tests::repo_root().join("target/deploy/attestor.so");
    let audit: Value = serde_json::from_str(&run(net.args(&[
        "--json",
        "audit",
        "--target",
        "cscatter",
        "--replay",
        dir.path().to_str().unwrap(),
        "--program",
        program.to_str().unwrap(),
    ])))
    .unwrap();
    let replay = &audit["replay"];
    assert_eq!(
        (replay["replayed"].as_u64(), replay["identical"].as_u64()),
        (Some(2), Some(2)),
        "{replay:#}"
    );
    let decision = replay["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["plan_hash"] == streamed)
        .unwrap_or_else(|| panic!("the streamed decision: {replay:#}"));
    assert_eq!(decision["verdict"], "identical", "{replay:#}");
}

/// Runs `memzinc args` (an `attest` in parts) with debug logs and kills it once it logs that
/// it checked its first part.
fn killed_after_its_first_part(args: &[String]) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(memzinc_tests::binary("memzinc"))
        .args(args)
        .env("MEMZINC_ROOT", memzinc_tests::repo_root())
        .env("MEMZINC_LOG", "memzinc=debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run memzinc");
    let stderr = child.stderr.take().expect("its stderr");
    let mut logged = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.expect("a log line");
        if line.contains("part 1 of ") && line.contains(" checked") {
            child.kill().expect("kill memzinc");
            child.wait().expect("wait for memzinc");
            return;
        }
        logged.push(line);
    }
    let status = child.wait().expect("wait for memzinc");
    panic!(
        "memzinc ended ({status}) before it checked a part:\n{}",
        logged.join("\n")
    );
}

/// Attests `plan` (relocation `r`) on `net`, applies it to `target`, and checks that both of its
/// structures are in address order but around the pinned objects (each can break the order
/// once going in and once going out) and that its own check passes `checks` times.
fn attest_and_apply_in_order(net: &memzinc_tests::Net, plan: &str, target: &mut Clist, r: &Value, checks: usize) {
    run(net.args(&["attest", plan]));
    run(net.args(&["apply", plan, "--pid", &target.child.id().to_string()]));
    let (first, second) = descents(target);
    let pinned = r["pinned"].as_u64().unwrap();
    assert!(
        first + second <= 2 * pinned,
        "descents {first} {second}, {pinned} pinned: {r:#}"
    );
    for _ in 0..checks {
        assert_eq!(target.say("status"), "OK");
    }
}

/// `plan --relocate g_entries,g_buffers` on a plain C program that lowers malloc's mmap
/// threshold: both lists' nodes are in 4096-byte chunks, the buffers' in the heap (4088 usable
/// bytes) and the entries' each mapped on its own (4080). Each list moves only among chunks of
/// its own kind: placed first, the entries would otherwise take the lowest chunks of that size,
/// the buffers', and a buffer moved into an entry's chunk would write its last 8 bytes past it,
/// into the header of the mapping after it, which `free` trips over. Attested and applied while
/// it runs; its checks pass, both lists are in address order but around pinned nodes, and every
/// node frees.
#[test]
fn heap_and_mmapped_chunks_of_one_size_keep_their_own_objects() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let exe = build_c(dir.path(), "cmmapped.c", "cmmapped", &[]);
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("status"), "OK");
    let (buffers0, entries0) = descents(&mut target);
    assert!(
        buffers0 > 0 && entries0 > 0,
        "out of order to begin with: {buffers0} {entries0}"
    );
    // Six buffers of 4088 bytes move: more than the other tests' policy lets a plan write.
    let net = relocation_localnet_writing(dir.path(), 1 << 16);
    let pid = target.child.id().to_string();
    let snap = p("m.core");
    run(net.witnessed_snapshot(&pid, &snap, "cmmapped"));
    let plan = p("m.plan.json");
    let r = &relocation(&snap, "g_entries,g_buffers", &plan);
    assert_eq!(r["objects"], 12, "{r:#}");
    for s in r["structures"].as_array().unwrap() {
        assert!(s["moved"].as_u64().unwrap() > 0, "{r:#}");
    }
    attest_and_apply_in_order(&net, &plan, &mut target, r, 5);
    assert_eq!(target.say("free"), "freed");
    assert_eq!(target.say("order"), "descents 0 0", "alive after freeing every node");
}

#[test]
fn relocating_what_is_no_linked_structure_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_c(dir.path(), "cscatter.c", "cscatter", &[]);
    let target = Clist::start(&exe, &[]);
    let snap = target.snapshot(&dir.path().join("a.core"));
    let plan = dir.path().join("a.plan.json");
    for (root, says) in [
        ("no_such_global", "no global of that name"),
        ("g_hidden", "reaches no linked structure"),
        ("g_list,g_list", "reaches only objects a root named before it reaches"),
    ] {
        let out = memzinc(&["plan", &snap, "--relocate", root, "-o", plan.to_str().unwrap()]);
        assert!(!out.status.success(), "{root}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{root}: {err}");
        assert!(!plan.exists(), "no plan is written");
    }
}

/// `plan --relocate` on a plain Rust program: a `Box`-linked list behind a static, its links
/// inside `Option<Box<Node>>`, moved while it runs; its own check passes after.
#[test]
fn a_scattered_rust_box_list_is_moved_into_traversal_order_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_rust(dir.path(), "rscatter");
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("status"), "OK");
    assert!(descents(&mut target).0 > 10, "scattered to begin with");
    let net = relocation_localnet(dir.path());
    let pid = target.child.id().to_string();
    let snap = dir.path().join("a.core").to_str().unwrap().to_string();
    run(net.witnessed_snapshot(&pid, &snap, "rscatter"));
    let plan = dir.path().join("a.plan.json").to_str().unwrap().to_string();
    let r = &relocation(&snap, "LIST", &plan);
    assert_eq!(r["objects"], 64, "{r:#}");
    assert!(r["moved"].as_u64().unwrap() > 32, "{r:#}");
    run(net.args(&["attest", &plan]));
    run(net.args(&["apply", &plan, "--pid", &pid]));
    for _ in 0..20 {
        assert_eq!(target.say("status"), "OK");
    }
    let pinned = r["pinned"].as_u64().unwrap();
    assert!(descents(&mut target).0 <= 2 * pinned, "{r:#}");
}

/// cscatter's and rscatter's `order`: steps along the list and along the tree's preorder to a
/// lower address.
fn descents(t: &mut Clist) -> (u64, u64) {
    let line = t.say("order");
    let mut w = line.strip_prefix("descents ").unwrap().split(' ');
    (w.next().unwrap().parse().unwrap(), w.next().unwrap().parse().unwrap())
}

/// `plan --relocate` on the same plain Rust program's binary search tree (children in
/// `Option<Box<Tree>>`, nodes allocated in shuffled order): attested and applied on a localnet
/// while it runs; its own check (the in-order walk is 0..T-1, the list intact) passes for many
/// iterations after, and the tree's preorder is in address order but around pinned nodes.
#[test]
fn a_scattered_rust_box_tree_is_moved_into_preorder_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_rust(dir.path(), "rscatter");
    let mut target = Clist::start(&exe, &[]);
    assert_eq!(target.say("status"), "OK");
    let (list0, tree0) = descents(&mut target);
    assert!(tree0 > 10, "scattered to begin with: {tree0}");
    let net = relocation_localnet(dir.path());
    let pid = target.child.id().to_string();
    let snap = dir.path().join("a.core").to_str().unwrap().to_string();
    run(net.witnessed_snapshot(&pid, &snap, "rscatter"));
    let plan = dir.path().join("a.plan.json").to_str().unwrap().to_string();
    let r = &relocation(&snap, "TREE", &plan);
    assert_eq!(r["objects"], 63, "{r:#}");
    let s = &r["structures"][0];
    assert!(s["type_name"].as_str().unwrap().contains("Tree"), "{r:#}");
    assert!(r["moved"].as_u64().unwrap() > 32, "{r:#}");
    // Its chunks sit between other boxes' (one cache line apart), so along the preorder the
    // line changes at every step before and after; the pages it crosses are what drop.
    assert!(
        s["page_changes_after"].as_u64().unwrap() < s["page_changes_before"].as_u64().unwrap(),
        "{r:#}"
    );
    run(net.args(&["attest", &plan]));
    run(net.args(&["apply", &plan, "--pid", &pid]));
    for _ in 0..100 {
        assert_eq!(target.say("status"), "OK");
    }
    let pinned = r["pinned"].as_u64().unwrap();
    let (list1, tree1) = descents(&mut target);
    assert!(tree1 <= 2 * pinned, "preorder descents {tree1}, {pinned} pinned: {r:#}");
    assert_eq!(list1, list0, "the list is not the tree's to move");
}
