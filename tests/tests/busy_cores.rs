//! A copy-on-write snapshot of a process whose thread keeps a core busy: once the target runs
//! again, the capture's hashing threads keep off that core (`capture::BusyCores`), and the
//! target's own CPUs are left as they were. The target is `tests/targets/cpause.c` (its
//! watcher thread spins on the clock), compiled here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memzinc_tests::{binary, repo_root, skip, KillOnDrop};

/// The CPUs of a `Cpus_allowed_list` ("0-1", "0,2-5").
fn cpu_list(list: &str) -> Vec<usize> {
    list.trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => a.parse().unwrap()..=b.parse().unwrap(),
            None => part.parse().unwrap()..=part.parse().unwrap(),
        })
        .collect()
}

/// Per thread of `pid`: its id, name and the CPUs it may run on.
fn threads(pid: u32) -> Vec<(u32, String, Vec<usize>)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let tid = dir.file_name()?.to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            Some((tid, field("Name:")?.to_string(), cpu_list(field("Cpus_allowed_list:")?)))
        })
        .collect()
}

fn build_cpause(dir: &Path) -> Option<std::path::PathBuf> {
    let out = dir.join("cpause");
    let status = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/cpause.c"))
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        other => {
            skip("busy_cores", &format!("gcc could not build cpause.c: {other:?}"));
            None
        }
    }
}

#[test]
fn the_capture_keeps_off_the_core_a_running_target_keeps_busy() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        skip("busy_cores", "one CPU: there is no other core to keep to");
        return;
    }
    if !Path::new("/proc/self/schedstat").exists() {
        skip(
            "busy_cores",
            "no /proc/PID/schedstat (a kernel without CONFIG_SCHED_INFO)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(program) = build_cpause(dir.path()) else {
        return;
    };
    // 256 MiB: the capture hashes for a while after the thaw.
    let mut target = KillOnDrop(
        Command::new(&program)
            .arg("256")
            .stdout(Stdio::piped())
            .spawn()
            .expect("cpause starts"),
    );
    let mut ready = String::new();
    BufReader::new(target.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready"), "cpause says {ready:?}");
    let pid = target.0.id();
    let before = threads(pid);
    assert_eq!(
        before.len(),
        2,
        "cpause has its main thread and its watcher: {before:?}"
    );

    let log = dir.path().join("memzinc.log");
    let mut snapshot = KillOnDrop(
        Command::new(binary("memzinc"))
            .args(["snapshot", "--pid", &pid.to_string(), "-o"])
            .arg(dir.path().join("busy.core"))
            .env("MEMZINC_LOG", "memzinc::describe::capture=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("memzinc starts"),
    );
    // Every CPU list memzinc's hashing threads had while it ran.
    let started = Instant::now();
    let mut lists = Vec::new();
    while snapshot.0.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        for (_, name, allowed) in threads(snapshot.0.id()) {
            if name == "memzinc-hash" && !lists.contains(&allowed) {
                lists.push(allowed);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = snapshot.0.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "memzinc snapshot failed: {status}\n{log}");
    // "capture: target threads busy on cpus [1] in its first 20.1ms; 1 of 2 cpus left to us"
    let decision = log
        .lines()
        .find(|l| l.contains("target threads busy on cpus"))
        .unwrap_or_else(|| panic!("memzinc made no decision about the target's cores:\n{log}"));
    let listed = &decision[decision.find("cpus [").unwrap() + "cpus [".len()..];
    let busy = cpu_list(&listed[..listed.find(']').unwrap()].replace(' ', ""));
    assert_eq!(
        busy.len(),
        1,
        "the target's spinning watcher, alone, is busy: {decision}"
    );
    let everywhere: Vec<usize> = lists.iter().max_by_key(|l| l.len()).cloned().unwrap_or_default();
    let kept: Vec<usize> = everywhere.iter().copied().filter(|c| !busy.contains(c)).collect();
    eprintln!("busy_cores: {decision}; hashing threads' cpu lists seen: {lists:?}");
    assert!(
        lists.contains(&kept),
        "a hashing thread kept to {kept:?} (all but the busy cpu {busy:?}); it had only {lists:?}"
    );
    // The target's own CPUs are untouched.
    let after = threads(pid);
    for (tid, _, allowed) in &after {
        let was = before.iter().find(|t| t.0 == *tid).map(|t| &t.2);
        assert_eq!(
            Some(allowed),
            was,
            "the target's thread {tid} may run where it could before"
        );
    }
}
