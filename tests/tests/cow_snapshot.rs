//! Copy-on-write snapshots (issue 16 item 1) of a real process that keeps writing its memory:
//! `tests/targets/ccow.c` (compiled here) updates pages under a cross-page invariant from two
//! threads and stamps a page with the clock from a third while memzinc reads it. Every
//! copy-on-write snapshot — through the write-protected view (the default) and through a fork
//! (`MEMZINC_COW=fork`, and the fallback) — must show the invariant and the values of its
//! freeze instant; the target is left with no child and no userfaultfd, and memzinc killed at
//! any step leaves it running and no process of its own behind.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;

use memzinc::describe::Snapshot;
use memzinc_tests::{binary, repo_root, skip, KillOnDrop};

fn build_ccow(dir: &Path) -> Option<PathBuf> {
    let out = dir.join("ccow");
    let status = Command::new("gcc")
        .args(["-g", "-O1", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/ccow.c"))
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("gcc failed: {s}"),
        Err(e) => {
            skip("cow_snapshot", &format!("gcc: {e}"));
            None
        }
    }
}

/// The running ccow: its stdin, its stdout lines on a channel, where its region is.
struct Ccow {
    child: KillOnDrop,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Every "gap LAST NOW" seen so far, as (LAST, NOW).
    gaps: Vec<(u64, u64)>,
    region: u64,
    pages: u64,
    /// 4 pages of 0xd1 with MADV_DONTFORK, 4 pages of 0xe2 with MADV_WIPEONFORK.
    dontfork: u64,
    wipeonfork: u64,
    /// CHURN pages emptied and rewritten over and over (`churn` mode).
    churn: Option<u64>,
}

impl Ccow {
    fn start(program: &Path) -> Ccow {
        Ccow::start_with(program, &[])
    }

    fn start_with(program: &Path, mode: &[&str]) -> Ccow {
        // At memzinc's priority while it reads (nice 19, see `capture::Yielding`): its spinning
        // threads would otherwise starve a debug memzinc on two cores for minutes.
        let mut child = Command::new("nice")
            .args(["-n", "19"])
            .arg(program)
            .arg("16")
            .args(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The ticker may report a gap before the main thread says it is ready.
        let ready = loop {
            let line = lines.recv().expect("ccow prints ready");
            if line.starts_with("ready ") {
                break line;
            }
        };
        let mut words = ready.split_whitespace().skip(1);
        let region = u64::from_str_radix(words.next().unwrap().trim_start_matches("0x"), 16).unwrap();
        let pages = words.next().unwrap().parse().unwrap();
        let mut address = || u64::from_str_radix(words.next().unwrap().trim_start_matches("0x"), 16).unwrap();
        let (dontfork, wipeonfork) = (address(), address());
        let churn = words
            .next()
            .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
        Ccow {
            churn,
            dontfork,
            wipeonfork,
            child: KillOnDrop(child),
            stdin,
            lines,
            gaps: Vec::new(),
            region,
            pages,
        }
    }

    fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// The next line that is not a gap (gaps are collected); panics if none comes in 60 s.
    fn next_line(&mut self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("ccow answers");
            match parse_gap(&line) {
                Some(gap) => self.gaps.push(gap),
                None => return line,
            }
        }
    }

    /// (SEQ, TICK) from a ping: proof that its threads run.
    fn ping(&mut self) -> (u64, u64) {
        writeln!(self.stdin, "ping").unwrap();
        let line = self.next_line();
        let mut w = line.strip_prefix("pong ").expect("pong").split_whitespace();
        (w.next().unwrap().parse().unwrap(), w.next().unwrap().parse().unwrap())
    }

    /// Whether `tick` is the clock page's value at a gap the ticker printed: at most its LAST
    /// and less than 1 ms before it (the thread may be stopped after reading the clock and
    /// before storing it, so the value stored just before LAST may be the one in memory; values
    /// 1 ms apart would have been a gap of their own). A value stored after the thaw is at least
    /// that gap's NOW. Waits for the ticker's lines up to 60 s.
    fn saw_gap_at(&mut self, tick: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let at = |g: &(u64, u64)| tick <= g.0 && g.0 - tick < 1_000_000;
        while !self.gaps.iter().any(at) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                Ok(line) => {
                    if let Some(gap) = parse_gap(&line) {
                        self.gaps.push(gap);
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn word(&self, snap: &Snapshot, page: u64) -> u64 {
        let bytes = snap.read(self.region + page * 4096, 8).unwrap();
        u64::from_le_bytes(bytes.try_into().unwrap())
    }

    /// Checks the invariants in `snap`; returns the ticker's value.
    fn check(&self, snap: &Snapshot, what: &str) -> u64 {
        let pairs = [(0, self.pages - 1), (1, self.pages - 2), (2, self.pages - 3)];
        for (first, second) in pairs {
            let (a, b) = (self.word(snap, first), self.word(snap, second));
            assert!(
                a == b || a == b + 1,
                "{what}: pages {first} and {second} hold {a} and {b}: not one instant"
            );
        }
        // What a fork does not copy is still the process's memory in the snapshot.
        for (at, byte, what) in [
            (self.dontfork, 0xd1u8, "MADV_DONTFORK"),
            (self.wipeonfork, 0xe2, "MADV_WIPEONFORK"),
        ] {
            let bytes = snap
                .read(at, 4 * 4096)
                .unwrap_or_else(|e| panic!("{what} mapping: {e}"));
            assert!(
                bytes.iter().all(|&b| b == byte),
                "{what} mapping is not as the process holds it"
            );
        }
        self.word(snap, self.pages / 2)
    }
}

/// Pages in the churn mapping (`CHURN` in ccow.c).
const CHURN: u64 = 8192;

/// The churn mapping in `snap` is one instant: its last page holds 0 or its first page's
/// generation (see ccow.c).
fn check_churn(snap: &Snapshot, at: u64, what: &str) {
    let word = |page: u64| u64::from_le_bytes(snap.read(at + page * 4096, 8).unwrap().try_into().unwrap());
    let (first, last) = (word(0), word(CHURN - 1));
    assert!(
        last == 0 || last == first,
        "{what}: the churn mapping is not one instant: generation {first} in its first page, {last} in its last"
    );
}

fn parse_gap(line: &str) -> Option<(u64, u64)> {
    let mut w = line.strip_prefix("gap ")?.split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// How a copy-on-write snapshot is asked to copy.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Route {
    /// memzinc's choice: the write-protected view, a fork where it cannot be had.
    Chosen,
    /// `MEMZINC_COW=fork`.
    Fork,
}

fn memzinc_json(args: &[&str]) -> serde_json::Value {
    memzinc_json_by(args, Route::Chosen)
}

fn memzinc_json_by(args: &[&str], route: Route) -> serde_json::Value {
    let mut command = Command::new(binary("memzinc"));
    if route == Route::Fork {
        command.env("MEMZINC_COW", "fork");
    }
    let out = command.arg("--json").args(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "memzinc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The children of every thread of `pid`, with their state letter.
fn children(pid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map_while(Result::ok)
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
            out.push((child, state(child).unwrap_or('?')));
        }
    }
    out
}

/// The target's open userfaultfds (a view memzinc left behind would show as one).
fn userfaultfds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains("userfaultfd"))
        .count()
}

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

/// Live (not zombie) processes running `exe`, other than `except`.
fn others_running(exe: &Path, except: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != except)
        .filter(|&p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|l| l == exe))
        .filter(|&p| state(p).is_some_and(|s| s != 'Z' && s != 'X'))
        .collect()
}

#[test]
fn every_copy_on_write_snapshot_is_one_instant_and_leaves_no_child() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = build_ccow(dir.path()) else { return };
    let mut target = Ccow::start(&program);
    let pid = target.pid().to_string();
    let core = dir.path().join("s.core");
    let core_arg = core.to_str().unwrap();
    // A debug memzinc at nice 19 beside three spinning threads on two cores: ~10 s a round.
    const ROUNDS: usize = 15;
    let mut by = std::collections::BTreeMap::new();
    for round in 0..ROUNDS {
        let route = if round % 3 == 2 { Route::Fork } else { Route::Chosen };
        let report = memzinc_json_by(&["snapshot", "--pid", &pid, "-o", core_arg], route);
        assert_eq!(report["copy_on_write"], true, "{report}");
        let expected = if route == Route::Fork { "fork" } else { "write-protect" };
        assert_eq!(report["copy_on_write_by"], expected, "round {round}: {report}");
        *by.entry(expected).or_insert(0) += 1;
        assert!(report["extra_bytes"].is_u64(), "extra memory is reported: {report}");
        let snap = Snapshot::open(&core).unwrap();
        if round == 0 {
            snap.verify_pages().unwrap();
        }
        let tick = target.check(&snap, &format!("copy-on-write snapshot {round}"));
        // The ticker's value is the one it held when the freeze stopped it, not a later one.
        assert!(
            target.saw_gap_at(tick),
            "snapshot {round}: the clock page holds {tick}, which the ticker did not hold at a gap"
        );
        assert_eq!(
            children(target.pid()),
            Vec::<(i32, char)>::new(),
            "snapshot {round} left the target a child"
        );
        assert_eq!(
            others_running(&program, target.pid()),
            Vec::<i32>::new(),
            "snapshot {round} left a copy running"
        );
        assert_eq!(
            userfaultfds(target.pid()),
            0,
            "snapshot {round} left the target a userfaultfd"
        );
    }
    eprintln!("copy-on-write snapshots checked, by route: {by:?}");
    // The same checks hold for the snapshot that keeps the target stopped.
    memzinc_json(&["snapshot", "--pid", &pid, "-o", core_arg, "--stop-the-world"]);
    let snap = Snapshot::open(&core).unwrap();
    let tick = target.check(&snap, "stop-the-world snapshot");
    assert!(target.saw_gap_at(tick));
    // And the target ran on.
    let (seq, _) = target.ping();
    let (later, _) = target.ping();
    assert!(later > seq || later == seq && seq > 0);
}

/// The fault points of a copy-on-write snapshot by write-protect, in order: after the
/// protection is laid (target running), frozen, thawed, read. SIGTERM kills as SIGKILL does.
const WP_FAULT_POINTS: &[&str] = &["wp-protected", "wp-frozen", "wp-thawed", "wp-read", "wp-frozen:TERM"];

/// The fault points of a copy-on-write snapshot by fork, in order. Between "cow-forked" and the reap
/// right after "cow-reaping" the first fork is the target's child: a SIGKILL there leaves it a
/// dead child entry (which it never waits for), never a running process. SIGTERM, SIGINT,
/// SIGHUP and SIGQUIT wait until that window is over: sent there, memzinc ends right after it
/// and leaves nothing.
const FAULT_POINTS: &[&str] = &[
    "cow-frozen",
    "cow-forked",
    "cow-thawed",
    "cow-reaping",
    "cow-orphaned",
    "cow-read",
    "cow-forked:TERM",
    "cow-thawed:TERM",
    "cow-reaping:TERM",
];
const DEAD_CHILD_WINDOW: &[&str] = &["cow-forked", "cow-thawed", "cow-reaping"];

#[test]
fn memzinc_killed_at_every_step_of_a_copy_on_write_snapshot_leaves_the_target_running_alone() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = build_ccow(dir.path()) else { return };
    let points = WP_FAULT_POINTS
        .iter()
        .map(|p| (p, Route::Chosen))
        .chain(FAULT_POINTS.iter().map(|p| (p, Route::Fork)));
    let mut killed = 0;
    for (point, route) in points {
        let mut target = Ccow::start(&program);
        let core = dir.path().join(format!("{point}.core"));
        let mut command = Command::new(binary("memzinc"));
        if route == Route::Fork {
            command.env("MEMZINC_COW", "fork");
        }
        let out = command
            .args(["snapshot", "--pid", &target.pid().to_string(), "-o"])
            .arg(&core)
            .env("MEMZINC_FAULT_POINT", point)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        let signal = if point.ends_with(":TERM") { 15 } else { 9 };
        assert_eq!(
            out.status.signal(),
            Some(signal),
            "memzinc should have died at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!core.exists(), "a core after a kill at {point}");
        // The target runs on: all its threads (the writers' sequence and the ticker move).
        let (seq, tick) = target.ping();
        let moved = (0..1000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let (s, t) = target.ping();
            s > seq && t > tick
        });
        assert!(moved, "killed at {point}: the target's threads do not run");
        // No copy runs on: the kernel kills it with its tracer (allow it a moment to die).
        let settled = |done: &dyn Fn() -> bool| {
            (0..1000).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                done()
            })
        };
        settled(&|| others_running(&program, target.pid()).is_empty());
        assert_eq!(
            others_running(&program, target.pid()),
            Vec::<i32>::new(),
            "killed at {point}: a copy runs on"
        );
        let left = if DEAD_CHILD_WINDOW.contains(point) {
            settled(&|| children(target.pid()).iter().all(|&(_, s)| s == 'Z'));
            let left = children(target.pid());
            assert!(left.iter().all(|&(_, s)| s == 'Z'), "killed at {point}: {left:?}");
            left
        } else {
            let left = children(target.pid());
            assert_eq!(
                left,
                Vec::<(i32, char)>::new(),
                "killed at {point}: the target has a child"
            );
            left
        };
        assert_eq!(
            userfaultfds(target.pid()),
            0,
            "killed at {point}: the target has a userfaultfd"
        );
        eprintln!("killed at {point}: target running, children left: {left:?}");
        killed += 1;
    }
    eprintln!("memzinc killed at {killed} fault points");
    assert_eq!(killed, WP_FAULT_POINTS.len() + FAULT_POINTS.len());
}

/// A target that empties memory (MADV_DONTNEED) while it is read: the write-protected view
/// cannot copy such pages before they go, so it must notice and memzinc take the snapshot (or
/// checkpoint) again with a fork — never an image of two instants.
#[test]
fn memory_emptied_while_a_write_protected_view_is_read_never_makes_a_wrong_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = build_ccow(dir.path()) else { return };
    let target = Ccow::start_with(&program, &["churn"]);
    let churn = target.churn.expect("ccow churn prints its churn mapping");
    let pid = target.pid().to_string();
    let core = dir.path().join("s.core");
    let mut by = std::collections::BTreeMap::new();
    // Four snapshots, then a checkpoint left running (which takes its whole checkpoint again).
    for round in 0..5 {
        let command = if round < 4 { "snapshot" } else { "checkpoint" };
        let mut args = vec![command, "--pid", &pid, "-o", core.to_str().unwrap()];
        if command == "checkpoint" {
            args.push("--leave-running");
        }
        let report = memzinc_json(&args);
        let snap = Snapshot::open(&core).unwrap();
        check_churn(&snap, churn, &format!("{command} {round} ({report})"));
        target.check(&snap, &format!("{command} {round}"));
        *by.entry(report["copy_on_write_by"].as_str().unwrap_or("none").to_string())
            .or_insert(0) += 1;
        assert_eq!(userfaultfds(target.pid()), 0);
    }
    eprintln!("snapshots of a churning target, by route: {by:?}");
    assert!(
        by.get("fork").is_some_and(|&n| n > 0),
        "the view never fell back to a fork under MADV_DONTNEED: {by:?}"
    );
}
