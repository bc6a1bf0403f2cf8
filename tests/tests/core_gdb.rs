//! The snapshot is an ELF core file that the real gdb opens: registers, backtraces and globals
//! of real targets (Rust `healme`, C `ctarget`), read back from memzinc's core. And a memzinc
//! killed mid-snapshot leaves its target running.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memzinc_tests::{binary, ok, repo_root, Target};

/// Runs gdb in batch mode on `program` + `core`; returns stdout and stderr together.
fn gdb(program: &Path, core: &Path, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    // No ~/.gdbinit, no debuginfod lookups (no network here).
    cmd.args(["-nx", "-batch", "-iex", "set debuginfod enabled off"]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd
        .arg(program)
        .arg(core)
        .stdin(Stdio::null())
        .output()
        .expect("run gdb (scripts/install-tools.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- gdb {} {}\n{text}---", program.display(), core.display());
    assert!(out.status.success(), "gdb failed");
    for refusal in ["not a core dump", "is not in executable format", "Cannot access memory"] {
        assert!(!text.contains(refusal), "gdb: {refusal}");
    }
    text
}

/// The value of `info registers rip`.
fn gdb_rip(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("rip "))
        .unwrap_or_else(|| panic!("no rip register in gdb's output"));
    let hex = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.strip_prefix("0x"))
        .unwrap();
    u64::from_str_radix(hex, 16).unwrap()
}

fn snapshot_and_inspect(pid: &str, core: &Path) -> serde_json::Value {
    ok(&["snapshot", "--pid", pid, "-o", core.to_str().unwrap()]);
    serde_json::from_str(&ok(&["inspect", core.to_str().unwrap(), "--json"])).unwrap()
}

#[test]
fn gdb_reads_registers_backtrace_and_state_from_a_healme_core() {
    let dir = tempfile::tempdir().unwrap();
    // Corrupted at tick 2: memory now differs from the executable's .data (target_temp 21).
    let target = Target::healme(&["--corrupt-at", "2", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");
    let core = dir.path().join("healme.core");
    let inspect = snapshot_and_inspect(&target.pid(), &core);
    let main_thread = &inspect["threads"][0];
    assert_eq!(main_thread["tid"].to_string(), target.pid());
    assert_eq!(
        main_thread["fpregs"].as_str().unwrap().len(),
        2 * 512,
        "NT_PRFPREG is 512 bytes"
    );
    assert!(!main_thread["xstate"].as_str().unwrap().is_empty());
    assert!(inspect["auxv"].as_array().unwrap().len() > 5);
    assert_eq!(inspect["cmdline"][1], "--corrupt-at");
    let fds = inspect["fds"].as_array().unwrap();
    assert!(fds
        .iter()
        .any(|f| f["fd"] == 1 && f["path"].as_str().unwrap().starts_with("pipe:")));

    // `print HEALME_STATE` alone says "unknown type": Rust's debug info names the static in
    // its crate's namespace, so gdb wants the path.
    let out = gdb(
        &binary("healme"),
        &core,
        &["info registers rip", "bt", "print healme::HEALME_STATE"],
    );
    assert_eq!(gdb_rip(&out), main_thread["regs"]["rip"].as_u64().unwrap());
    assert!(out.lines().any(|l| l.starts_with("#0 ")), "no frame #0");
    assert!(out.contains("healme::main"), "the backtrace reaches healme::main");
    assert!(
        out.contains("target_temp = 9000") && out.contains("fan_level = 7"),
        "live state"
    );
}

#[test]
fn gdb_reads_threads_and_globals_from_a_c_core() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("ctarget");
    let source = repo_root().join("tests/targets/ctarget.c");
    let built = Command::new("gcc")
        .args(["-g", "-O0", "-pthread", "-Wall", "-Werror", "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .expect("run gcc (scripts/install-tools.sh installs it)");
    assert!(built.success(), "gcc failed on {}", source.display());
    // One page of file mapped as two: the second page faults when read.
    let short_file = dir.path().join("one-page.bin");
    let target = Target::spawn(&program, &[short_file.to_str().unwrap()]);
    let ready = target.wait_for("ready");
    let map = ready
        .strip_prefix(&format!("ready pid={} map=0x", target.pid()))
        .and_then(|a| u64::from_str_radix(a, 16).ok())
        .unwrap_or_else(|| panic!("unexpected {ready:?}"));

    let core = dir.path().join("ctarget.core");
    let inspect = snapshot_and_inspect(&target.pid(), &core);
    let threads = inspect["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2, "main thread and worker");
    // The page past the end of the file is recorded as unreadable, not guessed.
    let region = inspect["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["start"] == map)
        .expect("the short file's mapping");
    assert_eq!(region["captured"], true);
    assert_eq!(region["unreadable_pages"], serde_json::json!([map + 4096]));

    let out = gdb(
        &program,
        &core,
        &[
            "info registers rip",
            "bt",
            "print CTARGET_STATE",
            "info threads",
            "thread apply all bt",
            &format!("print *(char (*)[4]){map:#x}"),
        ],
    );
    assert_eq!(gdb_rip(&out), threads[0]["regs"]["rip"].as_u64().unwrap());
    assert!(
        out.contains("in main (argc=2") && out.contains("ctarget.c:"),
        "backtrace to main"
    );
    assert!(out.contains("in worker (arg=0x0) at"), "the second thread's backtrace");
    let state = out
        .lines()
        .find(|l| l.starts_with("$1 = "))
        .expect("printed CTARGET_STATE");
    // Set at run time: the executable's .data says pid 0, answer 0, "initial".
    assert!(state.contains(&format!("pid = {}", target.pid())), "{state}");
    assert!(
        state.contains("answer = 42") && state.contains("label = \"live-memory"),
        "{state}"
    );
    assert!(out.contains(" = \"mmmm\""), "the readable page of the short file");
    for t in threads {
        assert!(
            out.contains(&format!("(LWP {})", t["tid"])),
            "gdb lists thread {}",
            t["tid"]
        );
    }
}

/// TracerPid and the state letter from /proc/PID/status.
fn tracer_and_state(pid: &str) -> (i32, char) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap()
            .to_string()
    };
    (
        field("TracerPid:").parse().unwrap(),
        field("State:").chars().next().unwrap(),
    )
}

fn tick_of(line: &str) -> u64 {
    line.split_whitespace().nth(1).and_then(|t| t.parse().ok()).unwrap_or(0)
}

#[test]
fn sigkill_mid_snapshot_leaves_the_target_running() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::healme(&["--ballast-mib", "512", "--period-ms", "20"]);
    let mut last_tick = tick_of(&target.wait_for("status=ok"));
    let pid = target.pid();
    let core: PathBuf = dir.path().join("big.core");
    // Stopped for the whole copy, so it can be killed while it holds the target frozen (the
    // copy-on-write snapshot's steps: tests/cow_snapshot.rs).
    let mut snapshot = Command::new(binary("memzinc"))
        .args([
            "snapshot",
            "--stop-the-world",
            "--pid",
            &pid,
            "-o",
            core.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until memzinc holds the target: traced by it and in a ptrace stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (tracer, state) = tracer_and_state(&pid);
        if tracer == snapshot.id() as i32 && state == 't' {
            break;
        }
        assert!(
            snapshot.try_wait().unwrap().is_none(),
            "memzinc finished before it could be killed mid-snapshot"
        );
        assert!(Instant::now() < deadline, "memzinc never froze the target");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Still frozen a little later: we are mid-snapshot, not at its very end.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        tracer_and_state(&pid),
        (snapshot.id() as i32, 't'),
        "frozen mid-snapshot"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(snapshot.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = snapshot.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "memzinc was killed, it did not finish");

    // The kernel detached the dead tracer's tracee: no tracer, not stopped, ticking again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (tracer, state) = tracer_and_state(&pid);
        if tracer == 0 && !matches!(state, 't' | 'T') {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "target still traced ({tracer}) or stopped ({state})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    while let Ok(line) = target.lines.try_recv() {
        last_tick = last_tick.max(tick_of(&line));
    }
    // Lines printed before the freeze are all drained; three more ticks prove it runs.
    loop {
        let tick = tick_of(&target.wait_for("status=ok"));
        if tick >= last_tick + 3 {
            break;
        }
    }
    assert!(!core.exists(), "no snapshot file from a killed memzinc");
}
