//! Checkpoint/restore in the spirit of CRIU's zdtm: real targets (tests/targets/zdtm_counter.c
//! built static and as a dynamic PIE, zdtm_rust.rs with Rust std) are checkpointed with
//! `memzinc checkpoint --kill`, restored with `memzinc restore`, and must continue exactly
//! where they were: their output file (written through an fd whose offset is restored) holds
//! 1, 2, 3, ... with no gap and no repeat, and the per-step state checks (heap pages, input
//! file offset, other threads advancing) stay "ok". The restored process has the original PID
//! (and its threads their tids).
//!
//! Needs root (ptrace, clone3 with set_tid, PR_SET_MM_MAP); without it each test skips with
//! the reason (`memzinc_tests::skip`: a failure under CI and in scripts/test.sh).
//! `MEMZINC_ZDTM_HEAP_MIB` sets the heap-heavy target's size (default 1 GiB).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memzinc_tests::{fails, ok};
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { nix::libc::geteuid() } == 0 {
        return true;
    }
    memzinc_tests::skip(
        test,
        "checkpoint/restore needs root (ptrace, clone3 set_tid, PR_SET_MM_MAP)",
    );
    false
}

/// Restored processes are orphaned when `memzinc restore` exits; as a subreaper this test
/// process inherits them and can reap them after killing them.
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    let rc = unsafe { nix::libc::prctl(nix::libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Starts a target with only stdio open: whatever else this test process inherited (a CI
/// runner's pipes) is not the target's state.
fn spawn(cmd: &mut Command) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe and only closes descriptors in the child.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::close_range(3, u32::MAX, 0);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// The counter built with `flags`, or gcc's first line of complaint.
fn gcc(dir: &Path, name: &str, flags: &[&str]) -> Result<PathBuf, String> {
    let out = dir.join(name);
    let source = memzinc_tests::repo_root().join("tests/targets/zdtm_counter.c");
    let result = Command::new("gcc")
        .args(["-O1", "-g", "-o"])
        .arg(&out)
        .arg(&source)
        .args(flags)
        .arg("-lpthread")
        .output()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        return Err(format!("gcc {flags:?} failed: {}", stderr.lines().next().unwrap_or("")));
    }
    Ok(out)
}

fn rustc(dir: &Path) -> PathBuf {
    let out = dir.join("zdtm_rust");
    let source = memzinc_tests::repo_root().join("tests/targets/zdtm_rust.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["-O", "--edition", "2021", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "rustc failed");
    out
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for_lines(path: &Path, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(path).len() < at_least {
        assert!(Instant::now() < deadline, "{what}: fewer than {at_least} lines in 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checkpoints `binary OUT args...` with --kill, restores it and checks its output sequence;
/// `check` judges each line after the counter. Returns the lines.
/// `memzinc checkpoint --kill` of `child` into `core`; reaps the killed original, which frees
/// its pid for the restore.
fn checkpoint_and_kill(child: &mut std::process::Child, core: &Path) {
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "checkpoint",
        "--pid",
        &child.id().to_string(),
        "--kill",
        "-o",
        core.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["killed"], true);
    child.wait().unwrap();
}

/// `memzinc checkpoint --kill` of a restored process (this test's child as a subreaper), which
/// is reaped.
fn memzinc_checkpoint_kill(pid: i32, core: &Path) {
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--kill",
        "-o",
        core.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["killed"], true);
    waitpid(Pid::from_raw(pid), None).unwrap();
}

fn checkpoint_restore(binary: &Path, args: &[&str], check: impl Fn(&str) -> bool) -> Vec<String> {
    checkpoint_restore_for(binary, args, 20, None, check)
}

/// `checkpoint_restore`, waiting for `steps_after` lines after the restore; with `as_user`,
/// the target runs as that uid and gid (no supplementary groups) and must be restored as them.
fn checkpoint_restore_for(
    binary: &Path,
    args: &[&str],
    steps_after: usize,
    as_user: Option<u32>,
    check: impl Fn(&str) -> bool,
) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let core = dir.path().join("target.core");
    let mut cmd = Command::new(binary);
    cmd.arg(&out)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(id) = as_user {
        // The target creates its output file in the test's directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        cmd.uid(id).gid(id);
    }
    let mut child = spawn(&mut cmd);
    let pid = child.id() as i32;
    wait_for_lines(&out, 5, "before the checkpoint");

    checkpoint_and_kill(&mut child, &core);
    let at_checkpoint = lines(&out).len();
    let summary = ok(&["inspect", core.to_str().unwrap()]);
    assert!(summary.contains("  checkpoint: process killed;"), "{summary}");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(lines(&out).len(), at_checkpoint, "nothing writes while checkpointed");

    // Lazily first, then — once every page is in, an ordinary process again — checkpointed
    // again and restored eagerly: both restores of every case, one sequence of lines.
    let mut at_checkpoint = at_checkpoint;
    for lazy in [true, false] {
        let mut args = vec!["--json", "restore", core.to_str().unwrap()];
        if lazy {
            args.push("--lazy");
        }
        let restored: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        assert_eq!(restored["pid"], pid);
        if lazy {
            assert!(restored["pages"].as_u64().unwrap() > 0, "{restored}");
            assert_eq!(
                restored["pages"].as_u64(),
                Some(
                    restored["pages_on_fault"].as_u64().unwrap()
                        + restored["pages_in_background"].as_u64().unwrap()
                        + restored["pages_dropped"].as_u64().unwrap()
                ),
                "{restored}"
            );
        }
        wait_for_lines(&out, at_checkpoint + steps_after, "after the restore");
        let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        tids.sort();
        let mut checkpointed: Vec<i32> = memzinc::describe::Snapshot::open(&core)
            .unwrap()
            .meta
            .threads
            .iter()
            .map(|t| t.tid)
            .collect();
        checkpointed.sort();
        assert_eq!(tids, checkpointed, "every thread back with its tid");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, binary, "the restored pid runs the checkpointed program");
        if let Some(id) = as_user {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            for key in ["Uid:", "Gid:"] {
                let ids: Vec<u32> = status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap()
                    .split_whitespace()
                    .map(|n| n.parse().unwrap())
                    .collect();
                assert_eq!(ids, [id; 4], "{key} of the restored process");
            }
            // Dumpable again, as it was: its /proc files are its own, not root's.
            let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(format!("/proc/{pid}")).unwrap());
            assert_eq!(owner, id, "the restored process is dumpable");
        }
        if lazy {
            assert!(
                !std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .unwrap()
                    .any(|e| std::fs::read_link(e.unwrap().path())
                        .is_ok_and(|l| l.to_string_lossy().contains("userfaultfd"))),
                "the lazily restored process keeps no userfaultfd"
            );
            assert_eq!(status_field(pid, "TracerPid:"), "0");
            memzinc_checkpoint_kill(pid, &core);
            at_checkpoint = lines(&out).len();
        }
    }
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    waitpid(Pid::from_raw(pid), None).unwrap();

    let all = lines(&out);
    for (i, line) in all.iter().enumerate() {
        let (n, rest) = line.split_once(' ').unwrap_or((line, ""));
        assert_eq!(
            n.parse::<usize>().ok(),
            Some(i + 1),
            "line {} is {line:?} (checkpointed after {at_checkpoint}): a gap or a repeat",
            i + 1
        );
        assert!(check(rest), "line {line:?} fails its state check");
    }
    all
}

fn no_extra(rest: &str) -> bool {
    rest.is_empty()
}

#[test]
fn static_c_continues_where_it_was() {
    if !root_or_skip("static_c_continues_where_it_was") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = match gcc(dir.path(), "counter_static", &["-static"]) {
        Ok(binary) => binary,
        Err(why) => {
            let why = format!("{why} (-static needs libc.a: libc6-dev)");
            memzinc_tests::skip("static_c_continues_where_it_was", &why);
            return;
        }
    };
    checkpoint_restore(&binary, &[], no_extra);
}

#[test]
fn dynamic_pie_c_continues_where_it_was() {
    if !root_or_skip("dynamic_pie_c_continues_where_it_was") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &["-fPIE", "-pie"]).expect("gcc builds a PIE");
    checkpoint_restore(&binary, &[], no_extra);
}

#[test]
fn rust_std_continues_where_it_was() {
    if !root_or_skip("rust_std_continues_where_it_was") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = rustc(dir.path());
    checkpoint_restore(&binary, &[], |rest| rest == "heap ok");
}

#[test]
fn open_files_keep_their_offsets() {
    if !root_or_skip("open_files_keep_their_offsets") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    let input = dir.path().join("input.txt");
    // One line per step; the target reads it through stdio (buffered: the fd offset runs
    // ahead of what it consumed, and both must survive).
    let text: String = (1..=100_000).map(|i| format!("line-{i}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let all = checkpoint_restore(&binary, &["--input", input.to_str().unwrap()], |_| true);
    for (i, line) in all.iter().enumerate() {
        assert!(
            line.ends_with(&format!(" input line-{}", i + 1)),
            "step {} read {line:?}: the input offset moved",
            i + 1
        );
    }
}

#[test]
fn a_process_in_the_middle_of_a_sleep_wakes_and_goes_on() {
    if !root_or_skip("a_process_in_the_middle_of_a_sleep_wakes_and_goes_on") {
        return;
    }
    // The counter spends nearly all its time in nanosleep: check the checkpoint caught it
    // inside the syscall, then that it resumed from there.
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    let out = dir.path().join("out.txt");
    let core = dir.path().join("sleep.core");
    let mut child = spawn(Command::new(&binary).arg(&out).stdout(Stdio::null()));
    let pid = child.id() as i32;
    wait_for_lines(&out, 3, "before the checkpoint");
    checkpoint_and_kill(&mut child, &core);
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let regs = snap.meta.threads[0].regs;
    assert_eq!(
        regs.orig_rax,
        nix::libc::SYS_clock_nanosleep as u64,
        "checkpointed inside its sleep"
    );
    let at_checkpoint = lines(&out).len();
    ok(&["restore", core.to_str().unwrap()]);
    wait_for_lines(&out, at_checkpoint + 10, "after the restore");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    waitpid(Pid::from_raw(pid), None).unwrap();
    for (i, line) in lines(&out).iter().enumerate() {
        assert_eq!(line, &(i + 1).to_string());
    }
}

/// A PIE build of zdtm_counter run with `OPTION 1`, checkpointed and restored: every line's
/// state check must say `ok`, up to `steps_after` steps after the restore.
fn option_state_survives(test: &str, option: &str, ok: &str, steps_after: usize) {
    if !root_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    checkpoint_restore_for(&binary, &[option, "1"], steps_after, None, |rest| rest == ok);
}

#[test]
fn heap_heavy_target_keeps_every_page() {
    if !root_or_skip("heap_heavy_target_keeps_every_page") {
        return;
    }
    let mib = std::env::var("MEMZINC_ZDTM_HEAP_MIB").unwrap_or_else(|_| "1024".into());
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    checkpoint_restore(&binary, &["--heap-mib", &mib], |rest| rest == "heap ok");
}

/// A heap target (each step checks every word of its heap) checkpointed with --kill; returns
/// the binary's directory, the output file, the core and the pid.
fn killed_heap_target(mib: &str) -> (tempfile::TempDir, PathBuf, PathBuf, i32) {
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    let out = dir.path().join("out.txt");
    let core = dir.path().join("target.core");
    let mut child = spawn(
        Command::new(&binary)
            .arg(&out)
            .args(["--heap-mib", mib])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let pid = child.id() as i32;
    wait_for_lines(&out, 3, "before the checkpoint");
    checkpoint_and_kill(&mut child, &core);
    (dir, out, core, pid)
}

fn dir_of(path: &Path) -> &str {
    path.parent().unwrap().to_str().unwrap()
}

/// Waits until `pid` is gone (reaped here as a subreaper if it was orphaned to us); false if
/// it still runs after 10 s.
fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_tampered_page_is_never_given_to_a_lazily_restored_process() {
    if !root_or_skip("a_tampered_page_is_never_given_to_a_lazily_restored_process") {
        return;
    }
    let (_dir, out, core, pid) = killed_heap_target("64");
    let at_checkpoint = lines(&out).len();
    // One byte of a page in the middle of the heap flipped in the core: its leaf no longer
    // matches. The seal and the Merkle root cover the leaves, not the page bytes: `open`
    // cannot tell.
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let heap = snap
        .meta
        .regions
        .iter()
        .filter(|r| r.captured && r.map.path.is_empty())
        .max_by_key(|r| r.map.end - r.map.start)
        .unwrap();
    let offset = heap.data_offset + (((heap.map.end - heap.map.start) / 2) & !4095) + 100;
    drop(snap);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&core).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
    }
    let started = Instant::now();
    let err = fails(&["restore", core.to_str().unwrap(), "--lazy"]);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("does not match its leaf"), "{err}");
    assert!(gone(pid), "the process is not left running");
    let after = lines(&out);
    assert!(
        after[at_checkpoint..].iter().all(|l| l.ends_with("heap ok")),
        "no step saw the tampered byte: {:?}",
        &after[at_checkpoint..]
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A lazy restore checks the core's root beside the running process (the seal and every page's
/// leaf before). A core whose page and leaf were changed together and resealed passes both;
/// only the root, which the leaves no longer give, tells: the process is killed and the
/// restore fails in one line.
#[test]
fn a_lazily_restored_process_dies_when_the_leaves_do_not_give_the_root() {
    if !root_or_skip("a_lazily_restored_process_dies_when_the_leaves_do_not_give_the_root") {
        return;
    }
    use memzinc::base::Sha2;
    use memzinc::describe::{seal_of, Snapshot, NOTE_OWNER, NT_MEMZINC_LEAVES, NT_MEMZINC_SEAL};
    use memzinc_verifier::merkle;
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    use std::os::unix::fs::FileExt;

    let (_dir, _out, core, pid) = killed_heap_target("64");
    // A page in the middle of the largest anonymous region, and its leaf's index.
    let snap = Snapshot::open(&core).unwrap();
    let captured: Vec<_> = snap.meta.regions.iter().filter(|r| r.captured).collect();
    let heap = *captured.iter().max_by_key(|r| r.map.end - r.map.start).unwrap();
    let page_at = heap.map.start + (((heap.map.end - heap.map.start) / 2) & !4095);
    let leaf_index = captured
        .iter()
        .take_while(|r| r.map.start < heap.map.start)
        .map(|r| ((r.map.end - r.map.start) / 4096) as usize)
        .sum::<usize>()
        + ((page_at - heap.map.start) / 4096) as usize;
    let file_offset = heap.data_offset + (page_at - heap.map.start);
    drop(snap);

    let f = std::fs::OpenOptions::new().read(true).write(true).open(&core).unwrap();
    let bytes = std::fs::read(&core).unwrap();
    let elf = ElfFile64::<object::Endianness>::parse(&*bytes).unwrap();
    let endian = elf.endian();
    let notes_header = elf
        .elf_program_headers()
        .iter()
        .find(|h| h.p_type(endian) == object::elf::PT_NOTE)
        .unwrap();
    let notes_at = notes_header.p_offset(endian) as usize;
    let mut notes = bytes[notes_at..notes_at + notes_header.p_filesz(endian) as usize].to_vec();
    // Where the leaves' and the seal's descriptors are in `notes`.
    let (mut leaves_at, mut seal_at) = (None, None);
    for n in notes_header.notes(endian, &*bytes).unwrap().unwrap() {
        let n = n.unwrap();
        let at = n.desc().as_ptr() as usize - bytes.as_ptr() as usize - notes_at;
        if n.name() == NOTE_OWNER.as_bytes() && n.n_type(endian) == NT_MEMZINC_LEAVES {
            leaves_at = Some(at);
        }
        if n.name() == NOTE_OWNER.as_bytes() && n.n_type(endian) == NT_MEMZINC_SEAL {
            // The seal covers every note byte before its own header (12 bytes before its name).
            let name_at = n.name().as_ptr() as usize - bytes.as_ptr() as usize - notes_at;
            seal_at = Some((name_at - 12, at));
        }
    }
    let (leaves_at, (sealed_len, seal_at)) = (leaves_at.unwrap(), seal_at.unwrap());
    // The page changed, its leaf made again from the new bytes, the notes resealed.
    let mut page = bytes[file_offset as usize..file_offset as usize + 4096].to_vec();
    page[100] ^= 0x40;
    f.write_all_at(&page, file_offset).unwrap();
    let leaf = merkle::page_leaf::<Sha2>(page_at, &page);
    notes[leaves_at + 32 * leaf_index..leaves_at + 32 * leaf_index + 32].copy_from_slice(&leaf);
    let seal = seal_of(&notes[..sealed_len]);
    notes[seal_at..seal_at + 32].copy_from_slice(&seal);
    f.write_all_at(&notes, notes_at as u64).unwrap();
    drop(f);

    let err = fails(&["restore", core.to_str().unwrap(), "--lazy"]);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("do not hash to the recorded root"), "{err}");
    assert!(gone(pid), "the process is not left running");
}

#[test]
fn killing_memzinc_during_a_lazy_restore_kills_the_process() {
    if !root_or_skip("killing_memzinc_during_a_lazy_restore_kills_the_process") {
        return;
    }
    let mib = std::env::var("MEMZINC_ZDTM_HEAP_MIB").unwrap_or_else(|_| "1024".into());
    let (_dir, out, core, pid) = killed_heap_target(&mib);
    let at_checkpoint = lines(&out).len();
    let mut memzinc = Command::new(memzinc_tests::binary("memzinc"))
        .args(["restore", core.to_str().unwrap(), "--lazy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as it says the process runs again: in the middle of the page copy.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(memzinc.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.contains("running again"), "{first}");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    memzinc.kill().unwrap();
    let status = memzinc.wait().unwrap();
    assert!(!status.success(), "memzinc was killed before every page was in");
    assert!(gone(pid), "the restored process died with memzinc");
    let after = lines(&out);
    assert!(
        after[at_checkpoint..].iter().all(|l| l.ends_with("heap ok")),
        "no step ran on zeroes: {:?}",
        &after[at_checkpoint..]
    );
    // No process of the restore is left: not the target, not a child of it.
    let strays: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let cmdline = std::fs::read_to_string(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            Some(format!("{}: {cmdline:?} {stat}", e.file_name().to_string_lossy()))
        })
        .filter(|c| c.contains(dir_of(&core)))
        .collect();
    assert!(strays.is_empty(), "stray processes: {strays:?}");
}

/// tests/targets/crestore.c in "touch" mode, restored lazily: right after the restore, with
/// most of its pages not yet in, it drops half of a mapping (MADV_DONTNEED must give zeroes,
/// not the core's bytes), moves the other half (mremap), forks a child that checks every byte
/// of its heap, and checks every byte itself.
#[test]
fn a_lazily_restored_process_drops_moves_forks_and_sees_its_bytes() {
    if !root_or_skip("a_lazily_restored_process_drops_moves_forks_and_sees_its_bytes") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("crestore");
    let source = memzinc_tests::repo_root().join("tests/targets/crestore.c");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap();
    assert!(built.success(), "gcc crestore.c");
    let out = dir.path().join("ran.txt");
    let core = dir.path().join("target.core");
    let mut child = Command::new(&binary)
        .arg(&out)
        .args(["256", "touch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut ready).unwrap();
    assert!(ready.starts_with("ready"), "{ready}");
    checkpoint_and_kill(&mut child, &core);
    std::thread::sleep(Duration::from_millis(500));
    let restored: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "restore", core.to_str().unwrap(), "--lazy"])).unwrap();
    assert_eq!(restored["pid"], pid);
    let deadline = Instant::now() + Duration::from_secs(60);
    let touched = loop {
        if let Some(l) = lines(&out).into_iter().find(|l| l.starts_with("touched")) {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the restored process never finished its checks"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    kill_restored(pid);
    assert!(touched.ends_with(" ok"), "{touched}; {restored}");
    assert!(restored["pages_dropped"].as_u64().unwrap() > 0, "{restored}");
    assert_eq!(restored["forks"], 1, "{restored}");
}

/// An epoll over an eventfd and a self-pipe: each step needs both ready, the pipe's pending
/// record (the step before's number) and the eventfd's count (its own number), all left
/// pending by the step before the checkpoint.
#[test]
fn event_loop_objects_continue_where_they_were() {
    option_state_survives(
        "event_loop_objects_continue_where_they_were",
        "--events",
        "events ok",
        20,
    );
}

/// Between steps SIGUSR1 is pending for the process (sigqueue, a value) and SIGUSR2 for the
/// main thread (tgkill), both blocked: each step needs both, with their siginfo.
#[test]
fn pending_signals_stay_pending_with_their_siginfo() {
    option_state_survives(
        "pending_signals_stay_pending_with_their_siginfo",
        "--signals",
        "signals ok",
        20,
    );
}

/// A timerfd firing every millisecond must go on firing; a signal sent to itself each step
/// must come out of the signalfd (a checkpoint between send and read leaves it pending).
#[test]
fn timerfds_and_signalfds_keep_working() {
    option_state_survives("timerfds_and_signalfds_keep_working", "--timers", "timers ok", 60);
}

/// A process of an unprivileged user comes back as that user, not as root who restored it.
#[test]
fn an_unprivileged_target_keeps_its_credentials() {
    if !root_or_skip("an_unprivileged_target_keeps_its_credentials") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    // The binary must be reachable by the user: the test's temporary directory is root's.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    checkpoint_restore_for(&binary, &[], 20, Some(65534), no_extra);
}

/// Lowered RLIMIT_NOFILE and RLIMIT_CORE, checked every step.
#[test]
fn resource_limits_are_kept() {
    option_state_survives("resource_limits_are_kept", "--limits", "limits ok", 20);
}

/// A root process that gave up capabilities (and made itself non-dumpable) does not get them
/// back from the root restoring it.
#[test]
fn dropped_capabilities_stay_dropped() {
    option_state_survives("dropped_capabilities_stay_dropped", "--caps", "caps ok", 20);
}

/// A 1 ms POSIX timer signalling a value: timer_gettime by its old id must work and it must
/// go on firing.
#[test]
fn posix_timers_keep_their_ids_and_keep_firing() {
    option_state_survives(
        "posix_timers_keep_their_ids_and_keep_firing",
        "--ptimer",
        "ptimer ok",
        60,
    );
}

#[test]
fn multi_threaded_target_keeps_every_thread() {
    if !root_or_skip("multi_threaded_target_keeps_every_thread") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    // Four threads: the main one writes; each line says whether the three others advanced
    // within the last 100 steps, so 300 steps after the restore prove they all run.
    checkpoint_restore_for(&binary, &["--threads", "4"], 300, None, |rest| rest == "threads ok");
}

#[test]
fn rust_signal_handlers_and_altstack_survive() {
    if !root_or_skip("rust_signal_handlers_and_altstack_survive") {
        return;
    }
    // Rust std installs SIGSEGV/SIGBUS handlers on an alternate stack: the checkpoint asks
    // the target for them and the restored process has them again.
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = rustc(dir.path());
    let out = dir.path().join("out.txt");
    let core = dir.path().join("rust.core");
    let mut child = spawn(Command::new(&binary).arg(&out).stdout(Stdio::null()));
    let pid = child.id() as i32;
    wait_for_lines(&out, 3, "before the checkpoint");
    let caught_before = status_field(pid, "SigCgt:");
    checkpoint_and_kill(&mut child, &core);
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let checkpoint = snap.meta.checkpoint.as_ref().expect("checkpoint state");
    let segv = checkpoint
        .handlers
        .iter()
        .find(|h| h.signal == nix::libc::SIGSEGV as u32)
        .expect("Rust std handles SIGSEGV");
    assert!(snap
        .region_of(segv.handler, 1)
        .is_some_and(|r| r.map.perms.contains('x')));
    assert_ne!(
        checkpoint.threads[0].altstack_sp, 0,
        "Rust std's alternate signal stack"
    );
    ok(&["restore", core.to_str().unwrap()]);
    assert_eq!(status_field(pid, "SigCgt:"), caught_before);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    waitpid(Pid::from_raw(pid), None).unwrap();
}

fn status_field(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn restore_refuses_a_taken_pid_and_a_plain_snapshot() {
    if !root_or_skip("restore_refuses_a_taken_pid_and_a_plain_snapshot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    let out = dir.path().join("out.txt");
    let child = spawn(Command::new(&binary).arg(&out).stdout(Stdio::null()));
    let _guard = memzinc_tests::KillOnDrop(child);
    let pid = _guard.0.id().to_string();
    wait_for_lines(&out, 2, "start");
    let running = dir.path().join("running.core");
    ok(&[
        "checkpoint",
        "--pid",
        &pid,
        "--leave-running",
        "-o",
        running.to_str().unwrap(),
    ]);
    let before = lines(&out).len();
    wait_for_lines(&out, before + 3, "left running");
    let err = fails(&["restore", running.to_str().unwrap()]);
    assert!(err.contains(&format!("pid {pid} is in use")), "{err}");

    let plain = dir.path().join("plain.core");
    ok(&["snapshot", "--pid", &pid, "-o", plain.to_str().unwrap()]);
    let err = fails(&["restore", plain.to_str().unwrap()]);
    assert!(err.contains("is a snapshot, not a checkpoint"), "{err}");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn restore_applies_an_attested_plan_to_the_image_only() {
    if !root_or_skip("restore_applies_an_attested_plan_to_the_image_only") {
        return;
    }
    attested_plan_restore(false);
}

#[test]
fn lazy_restore_applies_an_attested_plan_before_the_process_runs() {
    if !root_or_skip("lazy_restore_applies_an_attested_plan_before_the_process_runs") {
        return;
    }
    attested_plan_restore(true);
}

fn attested_plan_restore(lazy: bool) {
    // healme corrupts its state and prints OVERHEAT; it is checkpointed (killed), the repair
    // is planned from the checkpoint core, and the restored process must come back healed —
    // but only once the plan is attested.
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let net = memzinc_tests::own_localnet(dir.path());
    let chain = |args: &[&str]| net.args(args);
    let run = |args: Vec<String>| args;
    ok(
        &run(net.policy_args(&["policy", "init", "--max-bytes", "64", "--max-writes", "8"]))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    let out = dir.path().join("healme.out");
    let mut child = spawn(
        Command::new(memzinc_tests::binary("healme"))
            .args(["--corrupt-at", "3", "--period-ms", "20"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap()),
    );
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&out).unwrap().contains("OVERHEAT") {
        assert!(Instant::now() < deadline, "healme never overheated");
        std::thread::sleep(Duration::from_millis(10));
    }
    let core = p("healme.core");
    ok(&net
        .args(&[
            "checkpoint",
            "--pid",
            &pid.to_string(),
            "--kill",
            "-o",
            &core,
            "--witness",
            net.witness.to_str().unwrap(),
            "--target",
            "healme",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    child.wait().unwrap();
    let plan = p("healme.plan.json");
    let spec = memzinc_tests::repo_root().join("models/targets/healme.json");
    ok(&["plan", &core, "--spec", spec.to_str().unwrap(), "-o", &plan]);

    let with_lazy = |args: &[&str]| {
        let mut args = args.to_vec();
        if lazy {
            args.push("--lazy");
        }
        chain(&args)
    };
    let err = fails(&strs(&with_lazy(&["restore", &core, "--apply", &plan])));
    assert!(err.contains("no attestation"), "{err}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "refused: no process");

    ok(&strs(&chain(&["attest", &plan])));
    let at_restore = std::fs::read_to_string(&out).unwrap().len();
    let restored: serde_json::Value =
        serde_json::from_str(&ok(&strs(&with_lazy(&["restore", &core, "--apply", &plan, "--json"])))).unwrap();
    let restored = if lazy {
        assert!(restored["pages"].as_u64().unwrap() > 0, "{restored}");
        restored["attested"].clone()
    } else {
        restored
    };
    assert_eq!(restored["report"]["pid"], pid);
    assert_eq!(restored["report"]["writes_applied"], 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&out).unwrap();
        let after = &text[at_restore..];
        if after.lines().count() >= 3 {
            assert!(
                after.lines().all(|l| l.ends_with("status=ok")),
                "restored healme is healed from its first tick: {after}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "restored healme prints nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    waitpid(Pid::from_raw(pid), None).unwrap();
}

#[test]
fn bad_input_gets_one_line_and_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("none.core");
    let err = fails(&["checkpoint", "--pid", "999999999", "-o", core.to_str().unwrap()]);
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file left");
    let junk = dir.path().join("junk.core");
    std::fs::write(&junk, b"\x7fELF not really").unwrap();
    let err = fails(&["restore", junk.to_str().unwrap()]);
    assert!(err.contains("junk.core"), "{err}");
}

/// `checkpoint --leave-running` resumes the process once its state is taken and a copy of it
/// forked (copy-on-write), and reads its pages from the copy while it runs on. The checkpoint is
/// still the instant of the freeze: the original killed later and its output cut back to the
/// checkpointed offset, the restored process goes on from exactly there, every heap page as
/// checkpointed.
#[test]
fn a_copy_on_write_checkpoint_of_a_running_process_restores_where_it_was() {
    if !root_or_skip("a_copy_on_write_checkpoint_of_a_running_process_restores_where_it_was") {
        return;
    }
    become_subreaper();
    // Through the write-protected view (the default), then through a fork (`MEMZINC_COW`).
    for by in ["write-protect", "fork"] {
        checkpoint_running_and_restore(by);
    }
}

fn checkpoint_running_and_restore(by: &str) {
    let dir = tempfile::tempdir().unwrap();
    let binary = gcc(dir.path(), "counter_pie", &[]).expect("gcc");
    let out = dir.path().join("out.txt");
    let core = dir.path().join("running.core");
    let mut child = start(&binary, &[out.to_str().unwrap(), "--heap-mib", "64"]);
    let pid = child.id() as i32;
    wait_for_lines(&out, 5, "before the checkpoint");
    let checkpointed = Command::new(memzinc_tests::binary("memzinc"))
        .env("MEMZINC_COW", if by == "fork" { "fork" } else { "" })
        .args([
            "--json",
            "checkpoint",
            "--pid",
            &pid.to_string(),
            "--leave-running",
            "-o",
        ])
        .arg(&core)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        checkpointed.status.success(),
        "checkpoint by {by}: {}",
        String::from_utf8_lossy(&checkpointed.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&checkpointed.stdout).unwrap();
    assert_eq!(report["killed"], false);
    assert_eq!(report["copy_on_write"], true, "{report}");
    assert_eq!(report["copy_on_write_by"], by, "{report}");
    let ran_on = lines(&out).len();
    wait_for_lines(&out, ran_on + 3, "left running");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    child.wait().unwrap();

    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let pos = snap
        .meta
        .fds
        .iter()
        .find(|f| Path::new(&f.path) == out)
        .expect("the output file is an fd of the checkpoint")
        .pos;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(pos)
        .unwrap();
    let at_checkpoint = lines(&out).len();
    assert!(at_checkpoint >= 5 && at_checkpoint < ran_on + 3);

    let restored: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "restore", core.to_str().unwrap()])).unwrap();
    assert_eq!(restored["pid"], pid);
    wait_for_lines(&out, at_checkpoint + 20, "after the restore");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    waitpid(Pid::from_raw(pid), None).unwrap();
    for (i, line) in lines(&out).iter().enumerate() {
        let (n, rest) = line.split_once(' ').unwrap_or((line, ""));
        assert_eq!(n.parse::<usize>().ok(), Some(i + 1), "line {line:?}: a gap or a repeat");
        assert_eq!(rest, "heap ok", "line {line:?}");
    }
}

/// tests/targets/zdtm_sock.c built as a PIE.
/// `tests/targets/NAME.c` built with `gcc -O1 -g` into `dir`.
fn c_target(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-o"])
        .arg(&out)
        .arg(memzinc_tests::repo_root().join(format!("tests/targets/{name}.c")))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc {name}.c failed");
    out
}

/// Starts `binary args…` with stdio on /dev/null (the targets write to their OUT file).
fn start(binary: &Path, args: &[&str]) -> std::process::Child {
    spawn(
        Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

fn sock_target(dir: &Path) -> PathBuf {
    let out = c_target(dir, "zdtm_sock");
    // Reachable by everyone: the restored process reopens nothing from here, but tests may
    // run it as another user.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    out
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to `port` once something listens there (the target starts up).
fn connect_tcp(port: u16) -> std::net::TcpStream {
    connect_to("127.0.0.1", port)
}

fn connect_to(host: &str, port: u16) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpStream::connect((host, port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                return s;
            }
            Err(e) => assert!(Instant::now() < deadline, "nothing listens on {port}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `line` and reads one line of answer.
fn ask(stream: &mut (impl std::io::Read + std::io::Write), line: &str) -> String {
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    read_line(stream)
}

/// One line from `stream`, without its newline.
fn read_line(stream: &mut impl std::io::Read) -> String {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while answer.last() != Some(&b'\n') {
        let n = stream.read(&mut byte).expect("an answer within 20 s");
        assert_eq!(
            n,
            1,
            "the connection ended after {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.push(byte[0]);
    }
    String::from_utf8(answer).unwrap().trim_end().to_string()
}

/// Every line of OUT is `n` (1, 2, ...) followed by `rest`.
fn counted(out: &Path, rest: &str) {
    for (i, line) in lines(out).iter().enumerate() {
        let (n, tail) = line.split_once(' ').unwrap_or((line, ""));
        assert_eq!(n.parse::<usize>().ok(), Some(i + 1), "line {line:?}: a gap or a repeat");
        assert_eq!(tail, rest, "line {line:?}");
    }
}

/// Kills the target's pid (the original or the restored process) if the test fails, so a
/// failed test leaves no process behind.
struct KillIfPanicking(i32);

impl Drop for KillIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(self.0), None);
        }
    }
}

fn kill_restored(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    waitpid(Pid::from_raw(pid), None).unwrap();
}

/// A TCP echo server with a client connected (the test) and a socketpair carrying a record
/// between its steps: checkpoint --kill, restore; the same connection carries the next
/// message both ways (TCP repair), the listener accepts a new client, the pair's record is
/// there.
#[test]
fn a_tcp_connection_and_its_listener_survive_kill_and_restore() {
    if !root_or_skip("a_tcp_connection_and_its_listener_survive_kill_and_restore") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let port = free_port();
    let out = dir.path().join("out.txt");
    let core = dir.path().join("tcp.core");
    let mut child = start(
        &binary,
        &[out.to_str().unwrap(), "--tcp", &port.to_string(), "--pair", "1"],
    );
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut client = connect_tcp(port);
    assert_eq!(ask(&mut client, "hello"), "echo hello");
    wait_for_lines(&out, 5, "before the checkpoint");
    checkpoint_and_kill(&mut child, &core);
    let summary = ok(&["inspect", core.to_str().unwrap()]);
    assert!(
        summary.contains(&format!("a TCP socket 127.0.0.1:{port} -> 127.0.0.1:"))
            && summary.contains("TCP repair mode"),
        "{summary}"
    );
    assert!(summary.contains("listening (backlog 7)"), "{summary}");
    assert!(
        summary.contains("peer inside the process: made again as a pair"),
        "{summary}"
    );
    let at_checkpoint = lines(&out).len();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(lines(&out).len(), at_checkpoint, "nothing runs while checkpointed");

    let restored: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "restore", core.to_str().unwrap()])).unwrap();
    assert_eq!(restored["pid"], pid);
    assert_eq!(
        ask(&mut client, "again"),
        "echo again",
        "the same connection, both ways"
    );
    assert_eq!(ask(&mut client, "and again"), "echo and again");
    let mut second = connect_tcp(port);
    assert_eq!(ask(&mut second, "new"), "echo new", "the listener accepts new clients");
    wait_for_lines(&out, at_checkpoint + 20, "after the restore");
    kill_restored(pid);
    counted(&out, "pair ok");
}

/// The network lock: a line the client sends while the server is checkpointed and gone is not
/// answered with a reset by a host that no longer has the socket — the lock drops it and the
/// client's kernel sends it again — so after the restore the server answers it on the same
/// connection, and the lock is gone. Without the lock the connection is reset and this fails.
#[test]
fn a_line_sent_while_the_server_is_checkpointed_is_answered_after_restore() {
    if !root_or_skip("a_line_sent_while_the_server_is_checkpointed_is_answered_after_restore") {
        return;
    }
    use std::io::Write;
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let port = free_port();
    let out = dir.path().join("out.txt");
    let core = dir.path().join("tcp.core");
    let mut child = start(&binary, &[out.to_str().unwrap(), "--tcp", &port.to_string()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut client = connect_tcp(port);
    assert_eq!(ask(&mut client, "hello"), "echo hello");
    checkpoint_and_kill(&mut child, &core);
    let table = format!("memzinc_lock_{pid}");
    let tables = || {
        let out = Command::new("nft").args(["list", "tables"]).output().expect("nft runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(tables().contains(&table), "locked until the restore: {}", tables());
    let summary = ok(&["inspect", core.to_str().unwrap()]);
    assert!(
        summary.contains(&format!(
            "network lock: the peers' packets to its connections are dropped (nftables table inet {table})"
        )),
        "{summary}"
    );
    client.write_all(b"while gone\n").unwrap();
    // Long enough for the line to reach the host and, without the lock, the reset to come back.
    std::thread::sleep(Duration::from_millis(300));
    ok(&["restore", core.to_str().unwrap()]);
    assert_eq!(
        read_line(&mut client),
        "echo while gone",
        "answered on the same connection"
    );
    assert_eq!(ask(&mut client, "again"), "echo again");
    assert!(!tables().contains(&table), "the restore lifted the lock: {}", tables());
    kill_restored(pid);
}

/// Bytes the server had sent that the client had not read yet, and a line the client sent
/// that the server had not read yet, both in the kernel's queues at the checkpoint: after the
/// restore the client reads the first and the server answers the second.
#[test]
fn tcp_queues_survive_kill_and_restore() {
    if !root_or_skip("tcp_queues_survive_kill_and_restore") {
        return;
    }
    use std::io::Write;
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let port = free_port();
    let out = dir.path().join("out.txt");
    let core = dir.path().join("queues.core");
    let mut child = start(&binary, &[out.to_str().unwrap(), "--tcp", &port.to_string()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut client = connect_tcp(port);
    assert_eq!(ask(&mut client, "first"), "echo first");
    // Answered but not read: "echo unread" waits in the client's receive queue. The frozen
    // server cannot read what is sent during the checkpoint, so send it first and let the
    // answer come back.
    client.write_all(b"unread\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    checkpoint_and_kill(&mut child, &core);
    // Sent while nobody is there: the kernel of the restored socket must accept it later.
    ok(&["restore", core.to_str().unwrap()]);
    assert_eq!(
        ask(&mut client, "later"),
        "echo unread",
        "the answer queued before the checkpoint"
    );
    let mut rest = String::new();
    let mut byte = [0u8; 1];
    while !rest.ends_with('\n') {
        std::io::Read::read_exact(&mut client, &mut byte).unwrap();
        rest.push(byte[0] as char);
    }
    assert_eq!(rest, "echo later\n");
    kill_restored(pid);
}

/// A client that closed its side leaves the server's socket in CLOSE_WAIT: refused at
/// checkpoint time with the reason, the server left running. An established connection whose
/// peer goes away between checkpoint and restore: refused at restore, nothing restored.
#[test]
fn a_connection_whose_peer_is_gone_is_refused_with_one_line() {
    if !root_or_skip("a_connection_whose_peer_is_gone_is_refused_with_one_line") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let port = free_port();
    let out = dir.path().join("out.txt");
    let core = dir.path().join("gone.core");
    let mut child = start(&binary, &[out.to_str().unwrap(), "--tcp", &port.to_string()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut closing = connect_tcp(port);
    assert_eq!(ask(&mut closing, "bye"), "echo bye");
    closing.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let err = fails(&[
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--kill",
        "-o",
        core.to_str().unwrap(),
    ]);
    assert!(err.contains("CLOSE_WAIT (its peer closed it)"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!core.exists(), "no file");
    let before = lines(&out).len();
    wait_for_lines(&out, before + 3, "the refused target runs on");
    drop(closing);

    // A second server, checkpointed with a live client that then goes away.
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let mut child = start(&binary, &[out.to_str().unwrap(), "--tcp", &port.to_string()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut client = connect_tcp(port);
    assert_eq!(ask(&mut client, "hi"), "echo hi");
    checkpoint_and_kill(&mut child, &core);
    // The client aborts: SO_LINGER 0 sends a reset (which the network lock drops) and its
    // socket is gone at once. (A plain close would leave it retransmitting its FIN until the
    // restore, which then delivers it: a connection closed while the server was away.)
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a `linger` of the size passed.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&client),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER");
    drop(client);
    std::thread::sleep(Duration::from_millis(100));
    let err = fails(&["restore", core.to_str().unwrap()]);
    assert!(err.contains("whose peer is gone"), "{err}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing restored");
    // A failed restore leaves the network lock for the next try; this test lifts it.
    let lifted = Command::new("nft")
        .args(["delete", "table", "inet", &format!("memzinc_lock_{pid}")])
        .status()
        .unwrap();
    assert!(lifted.success(), "the lock was still there");
}

/// What a restore could not make again is refused at checkpoint time with the reason (the
/// process resumed, no file), and `inspect` of a plain snapshot lists it.
#[test]
fn checkpoint_refuses_what_restore_cannot_make() {
    if !root_or_skip("checkpoint_refuses_what_restore_cannot_make") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    for (option, expect) in [
        ("--udp", "is a UDP socket 127.0.0.1:"),
        (
            "--inotify",
            "is anon_inode:inotify (a kernel object memzinc does not know how to make again)",
        ),
    ] {
        let out = dir.path().join(format!("out{option}.txt"));
        let core = dir.path().join("refused.core");
        let child = spawn(
            Command::new(&binary)
                .arg(&out)
                .args([option, "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let guard = memzinc_tests::KillOnDrop(child);
        let pid = guard.0.id().to_string();
        wait_for_lines(&out, 3, "start");
        let err = fails(&["checkpoint", "--pid", &pid, "--kill", "-o", core.to_str().unwrap()]);
        assert!(
            err.contains(&format!("process {pid} cannot be checkpointed: fd ")),
            "{err}"
        );
        assert!(err.contains(expect), "{err}");
        assert!(!core.exists(), "nothing written");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            !status.contains("(stopped)") && !status.contains("(tracing stop)"),
            "{status}"
        );
        let before = lines(&out).len();
        wait_for_lines(&out, before + 3, "the refused target runs on");
        if option == "--inotify" {
            let snap = dir.path().join("plain.core");
            ok(&["snapshot", "--pid", &pid, "-o", snap.to_str().unwrap()]);
            let summary = ok(&["inspect", snap.to_str().unwrap()]);
            assert!(
                summary.contains("restore: a checkpoint would refuse it: fd "),
                "{summary}"
            );
            assert!(summary.contains(expect), "{summary}");
        }
    }
}

/// A unix stream socket to a logger outside the checkpoint, a unix datagram socket to a
/// syslog-style logger outside and a unix listener of its own: restored once with the user's
/// mapping for the stream (`--inherit-fd FD=PATH` of another logger), once without (connected
/// again to the logger's path, said so); the loggers keep receiving lines, the datagram one
/// too (reconnected by path both times), the listener answers.
#[test]
fn a_unix_socket_to_an_outside_logger_keeps_logging() {
    if !root_or_skip("a_unix_socket_to_an_outside_logger_keeps_logging") {
        return;
    }
    use std::io::BufRead;
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let out = dir.path().join("out.txt");
    let core = dir.path().join("logger.core");
    let log_path = dir.path().join("log.sock");
    let other_path = dir.path().join("other-log.sock");
    let own_path = dir.path().join("own.sock");
    let dlog_path = dir.path().join("dlog.sock");
    let dlogger = std::os::unix::net::UnixDatagram::bind(&dlog_path).unwrap();
    dlogger.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let datagram = || {
        let mut buf = [0u8; 64];
        let n = dlogger.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let drain = || {
        dlogger.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        while dlogger.recv(&mut buf).is_ok() {}
        dlogger.set_nonblocking(false).unwrap();
    };
    let logger = std::os::unix::net::UnixListener::bind(&log_path).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&other_path).unwrap();
    let mut child = spawn(
        Command::new(&binary)
            .arg(&out)
            .args([
                "--log",
                log_path.to_str().unwrap(),
                "--unix",
                own_path.to_str().unwrap(),
                "--dlog",
                dlog_path.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let (first, _) = logger.accept().unwrap();
    first.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut first = std::io::BufReader::new(first);
    let mut line = String::new();
    first.read_line(&mut line).unwrap();
    assert_eq!(line, "log 1\n");
    assert_eq!(datagram(), "dlog 1");
    wait_for_lines(&out, 5, "before the checkpoint");
    checkpoint_and_kill(&mut child, &core);
    drain();
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let checkpoint = snap.meta.checkpoint.as_ref().unwrap();
    let log_fd = checkpoint
        .sockets
        .iter()
        .find(|s| s.unix_peer == memzinc::base::pb::snapshot::UnixPeer::Outside as i32)
        .expect("the logger's socket is outside")
        .fds[0];
    let summary = ok(&["inspect", core.to_str().unwrap()]);
    assert!(
        summary.contains(&format!(
            "peer outside the process: connected again to {}",
            log_path.display()
        )),
        "{summary}"
    );
    // What the logger got before the checkpoint, up to the last line the target wrote.
    let mut last = 0;
    loop {
        line.clear();
        if first.read_line(&mut line).unwrap() == 0 {
            break;
        }
        last = line.trim().strip_prefix("log ").unwrap().parse::<usize>().unwrap();
    }
    assert_eq!(
        last,
        lines(&out).len(),
        "the logger got every line up to the checkpoint"
    );

    for mapped in [true, false] {
        let mut args = vec!["restore".to_string(), core.to_str().unwrap().to_string()];
        if mapped {
            args.push("--inherit-fd".into());
            args.push(format!("{log_fd}={}", other_path.display()));
        }
        let output = memzinc_tests::memzinc(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let expect = if mapped {
            format!("is now {}, as --inherit-fd asked", other_path.display())
        } else {
            format!("reconnected to {} by its address", log_path.display())
        };
        assert!(
            stderr.starts_with("notice: fd ") && stderr.contains(&expect),
            "{stderr}"
        );
        let (conn, _) = if mapped { other.accept() } else { logger.accept() }.unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut conn = std::io::BufReader::new(conn);
        line.clear();
        conn.read_line(&mut line).unwrap();
        assert_eq!(line, format!("log {}\n", last + 1), "the log goes on where it was");
        let mut own = std::os::unix::net::UnixStream::connect(&own_path).unwrap();
        own.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(ask(&mut own, "ping"), "echo ping", "its own listener answers");
        kill_restored(pid);
        drain();
        // The next restore starts from the checkpoint again: its output file too.
        let pos = snap.meta.fds.iter().find(|f| Path::new(&f.path) == out).unwrap().pos;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&out)
            .unwrap()
            .set_len(pos)
            .unwrap();
        let _ = std::fs::remove_file(&own_path);
    }
    counted(&out, "");
}

/// The motivating case: a program whose stdout is a pipe to someone else (a logger, a shell)
/// and which holds another inherited pipe at fd 251. Restored with `--inherit-fd 1=fd:N` its
/// output goes on into the pipe memzinc was given; fd 251 becomes /dev/null, said so; with
/// `--inherit-fd 251=PATH` it is that file.
#[test]
fn pipes_to_other_processes_are_replaced_as_the_user_says() {
    if !root_or_skip("pipes_to_other_processes_are_replaced_as_the_user_says") {
        return;
    }
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let out = dir.path().join("out.txt");
    let core = dir.path().join("piped.core");
    let (stdout_r, stdout_w) = nix::unistd::pipe().unwrap();
    let (_held_r, held_w) = nix::unistd::pipe().unwrap();
    let held = held_w.as_raw_fd();
    let mut cmd = Command::new(&binary);
    cmd.arg(&out)
        .args(["--stdout", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::null());
    // SAFETY: dup2 and close_range are async-signal-safe and act only on the child's fds.
    unsafe {
        cmd.pre_exec(move || {
            nix::libc::dup2(held, 251);
            nix::libc::close_range(3, 250, 0);
            nix::libc::close_range(252, u32::MAX, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(held_w);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut before = std::io::BufReader::new(std::fs::File::from(stdout_r));
    let mut line = String::new();
    before.read_line(&mut line).unwrap();
    assert_eq!(line, "out 1\n");
    wait_for_lines(&out, 5, "before the checkpoint");
    checkpoint_and_kill(&mut child, &core);
    let summary = ok(&["inspect", core.to_str().unwrap()]);
    assert!(summary.contains("fd 251: the write end of pipe:["), "{summary}");
    assert!(summary.contains("fd 1: the write end of pipe:["), "{summary}");
    let at_checkpoint = lines(&out).len();

    // memzinc's fd 3 is the write end of a new pipe; the restored process writes into it.
    let (new_r, new_w) = nix::unistd::pipe().unwrap();
    let new_w_fd = new_w.as_raw_fd();
    let mut restore = Command::new(memzinc_tests::binary("memzinc"));
    restore
        .args(["restore", core.to_str().unwrap(), "--inherit-fd", "1=fd:3"])
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe and acts only on the child's fds.
    unsafe {
        restore.pre_exec(move || {
            nix::libc::dup2(new_w_fd, 3);
            Ok(())
        });
    }
    let output = restore.output().unwrap();
    drop(new_w);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("notice: fd 1 (the write end of pipe:["), "{stderr}");
    assert!(
        stderr.contains("is now memzinc's fd 3, as --inherit-fd asked"),
        "{stderr}"
    );
    assert!(
        stderr.contains("notice: fd 251 (the write end of pipe:[") && stderr.contains("is now /dev/null"),
        "{stderr}"
    );
    let mut after = std::io::BufReader::new(std::fs::File::from(new_r));
    line.clear();
    after.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        format!("out {}\n", at_checkpoint + 1),
        "the output goes on into the new pipe"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/251")).unwrap(),
        Path::new("/dev/null")
    );
    kill_restored(pid);

    let file = dir.path().join("fd251.txt");
    let output = memzinc_tests::memzinc(&[
        "restore",
        core.to_str().unwrap(),
        "--inherit-fd",
        &format!("251={}", file.display()),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/251")).unwrap(), file);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap(),
        Path::new("/dev/null")
    );
    kill_restored(pid);

    let err = fails(&["restore", core.to_str().unwrap(), "--inherit-fd", "0=/dev/null"]);
    assert!(err.contains("fd 0 is restored from the checkpoint as it was"), "{err}");
    let err = fails(&["restore", core.to_str().unwrap(), "--inherit-fd", "x=/dev/null"]);
    assert!(err.contains("expected FD=PATH or FD=fd:N"), "{err}");
}

/// `checkpoint --leave-running` of a server with an established connection: the socket goes
/// into repair mode for the checkpoint and out again before the process resumes, so the
/// connection carries on as if nothing happened; IPv6 (an `IPV6_V6ONLY` listener on ::1 and a
/// connection to it) checkpointed, killed and restored like IPv4.
#[test]
fn tcp_over_ipv6_and_a_leave_running_checkpoint_keep_their_connections() {
    if !root_or_skip("tcp_over_ipv6_and_a_leave_running_checkpoint_keep_their_connections") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let port = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.path().join("out.txt");
    let mut child = start(&binary, &[out.to_str().unwrap(), "--tcp6", &port.to_string()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    let mut client = connect_to("::1", port);
    assert_eq!(ask(&mut client, "one"), "echo one");
    let running = dir.path().join("running.core");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--leave-running",
        "-o",
        running.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["killed"], false);
    assert_eq!(
        ask(&mut client, "two"),
        "echo two",
        "the running server's connection carries on"
    );
    let summary = ok(&["inspect", running.to_str().unwrap()]);
    assert!(
        summary.contains(&format!("a TCP socket [::1]:{port} -> [::1]:")) && summary.contains("TCP repair mode"),
        "{summary}"
    );
    assert!(summary.contains("listening (backlog 9)"), "{summary}");

    let core = dir.path().join("v6.core");
    checkpoint_and_kill(&mut child, &core);
    ok(&["restore", core.to_str().unwrap()]);
    assert_eq!(
        ask(&mut client, "three"),
        "echo three",
        "the same IPv6 connection after the restore"
    );
    // Options as they were: the connection inherited SO_REUSEADDR and IPV6_V6ONLY from its
    // listener (repair mode clears the first when it is left: set again after).
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let conn_fd = snap
        .meta
        .checkpoint
        .as_ref()
        .unwrap()
        .sockets
        .iter()
        .find(|s| s.tcp.is_some())
        .unwrap()
        .fds[0];
    let theirs = memzinc::introspect::pidfd_getfd(pid, conn_fd).unwrap();
    let option = |level, name| {
        let (mut value, mut len) = (0i32, 4u32);
        // SAFETY: getsockopt writes at most `len` (4) bytes to `value`.
        let rc = unsafe {
            nix::libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&theirs),
                level,
                name,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    };
    assert_eq!(option(nix::libc::SOL_SOCKET, nix::libc::SO_REUSEADDR), 1);
    assert_eq!(option(nix::libc::IPPROTO_IPV6, nix::libc::IPV6_V6ONLY), 1);
    drop(theirs);
    let mut second = connect_to("::1", port);
    assert_eq!(ask(&mut second, "new"), "echo new");
    kill_restored(pid);
}

/// A unix server with a client outside connected to it: the server's end has a peer outside
/// without an address, so nothing can connect it again. `inspect` says so, a restore without a
/// replacement is refused with one line and no process, and `--inherit-fd FD=PATH` gives it one;
/// with another process listening at the server's path, the restore is refused.
#[test]
fn an_accepted_unix_connection_from_outside_needs_a_replacement() {
    if !root_or_skip("an_accepted_unix_connection_from_outside_needs_a_replacement") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = sock_target(dir.path());
    let out = dir.path().join("out.txt");
    let core = dir.path().join("server.core");
    let own_path = dir.path().join("own.sock");
    let mut child = start(&binary, &[out.to_str().unwrap(), "--unix", own_path.to_str().unwrap()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    wait_for_lines(&out, 3, "start");
    let mut client = std::os::unix::net::UnixStream::connect(&own_path).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(ask(&mut client, "hi"), "echo hi");
    checkpoint_and_kill(&mut child, &core);
    let summary = ok(&["inspect", core.to_str().unwrap()]);
    assert!(
        summary.contains("peer outside the process, without an address: restore needs --inherit-fd"),
        "{summary}"
    );
    let snap = memzinc::describe::Snapshot::open(&core).unwrap();
    let accepted = snap
        .meta
        .checkpoint
        .as_ref()
        .unwrap()
        .sockets
        .iter()
        .find(|s| s.unix_peer == memzinc::base::pb::snapshot::UnixPeer::Outside as i32)
        .expect("the accepted connection")
        .fds[0];
    let err = fails(&["restore", core.to_str().unwrap()]);
    assert!(
        err.contains("has no address to connect to again: pass --inherit-fd"),
        "{err}"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing restored");
    let output = memzinc_tests::memzinc(&[
        "restore",
        core.to_str().unwrap(),
        "--inherit-fd",
        &format!("{accepted}=/dev/null"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("is now /dev/null, as --inherit-fd asked"), "{stderr}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/{accepted}")).unwrap(),
        Path::new("/dev/null")
    );
    kill_restored(pid);

    // Someone else listens at the server's path now: refused, their socket file left alone,
    // nothing restored.
    let _ = std::fs::remove_file(&own_path);
    let squatter = std::os::unix::net::UnixListener::bind(&own_path).unwrap();
    let err = fails(&[
        "restore",
        core.to_str().unwrap(),
        "--inherit-fd",
        &format!("{accepted}=/dev/null"),
    ]);
    assert!(err.contains("is in use: another socket listens there now"), "{err}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nothing restored");
    assert!(own_path.exists(), "their socket file is still there");
    drop(squatter);
    let output = memzinc_tests::memzinc(&[
        "restore",
        core.to_str().unwrap(),
        "--inherit-fd",
        &format!("{accepted}=/dev/null"),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The listener serves new clients.
    let mut again = std::os::unix::net::UnixStream::connect(&own_path).unwrap();
    again.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(ask(&mut again, "ping"), "echo ping");
    kill_restored(pid);
}

/// The children of `pid` as /proc lists them.
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// (ppid, pgid, sid) of `pid`.
fn family(pid: i32) -> (i32, i32, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<i32> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

/// Kills `pids` (restored processes, children of this subreaper by now or soon) and reaps them.
fn kill_all(pids: &[i32]) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    for &p in pids {
        let _ = waitpid(Pid::from_raw(p), None);
    }
}

/// A pre-fork server (issue 18): a parent and three workers sharing an anonymous shared page of
/// counters (MAP_SHARED|MAP_ANONYMOUS) and a pipe of jobs, checkpointed as a tree with --kill
/// and restored: all four PIDs back under the same parent, in one process group and session;
/// the page still shared (the parent sees the workers' counts go on) and the pipe still one
/// pipe (the jobs the parent sends are done), with the sum of the jobs done right at every step.
#[test]
fn a_prefork_server_comes_back_whole() {
    if !root_or_skip("a_prefork_server_comes_back_whole") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "zdtm_prefork");
    let out = dir.path().join("out.txt");
    let tree = dir.path().join("tree");
    let mut child = start(&binary, &[out.to_str().unwrap()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    wait_for_lines(&out, 20, "before the checkpoint");
    let workers = children_of(pid);
    assert_eq!(workers.len(), 3, "three workers: {workers:?}");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--tree",
        "--kill",
        "-o",
        tree.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["killed"], true);
    let pids: Vec<i64> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 4, "{report:#}");
    // The original and its workers (orphaned to this subreaper) are reaped: their pids free.
    child.wait().unwrap();
    for &w in &workers {
        let _ = waitpid(Pid::from_raw(w), None);
    }
    let at_checkpoint = lines(&out).len();
    let done = |line: &str| -> u64 {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words.get(3), Some(&"done"), "{line:?}");
        words[4].parse().unwrap()
    };
    let done_before = done(lines(&out).last().unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(lines(&out).len(), at_checkpoint, "nothing runs while checkpointed");

    let restored: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "restore", tree.to_str().unwrap()])).unwrap();
    let mut all = vec![pid];
    all.extend(&workers);
    let restored_pids: Vec<i32> = restored["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    let _reap = KillAll(restored_pids.clone());
    let mut sorted = restored_pids.clone();
    sorted.sort_unstable();
    let mut expected = all.clone();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "every pid back");
    let (_, pgid, sid) = family(pid);
    for &w in &workers {
        assert_eq!(
            family(w),
            (pid, pgid, sid),
            "worker {w}: the parent's child, in its group and session"
        );
    }
    wait_for_lines(&out, at_checkpoint + 40, "after the restore");
    let after = lines(&out);
    for (i, line) in after.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{} sent ", i + 1)),
            "line {line:?}: a gap, a repeat or a worker gone"
        );
        assert!(
            line.ends_with(" ok"),
            "line {line:?}: the sum of the jobs done is wrong"
        );
    }
    assert!(
        done(after.last().unwrap()) > done_before + 20,
        "the workers' counts reach the parent through the shared page, the jobs reach the workers through the pipe: {done_before} -> {}",
        after.last().unwrap()
    );
}

/// The number after `word` in a line of zdtm_prefork.
fn prefork_count(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line.split(' ').collect();
    let at = words
        .iter()
        .position(|w| *w == word)
        .unwrap_or_else(|| panic!("{word} in {line:?}"));
    words[at + 1].parse().unwrap()
}

/// `restore TREE --apply PLAN` (issue 18): one worker of the pre-fork server has a corrupted
/// `CONF.weight` (0) and does its jobs wrong. The plan that repairs it (a model file's rule,
/// `tests/models/prefork_rules.mzn`) is made from that worker's core, attested on a localnet,
/// and applied to that worker's image only while the tree is restored: from then on no job is
/// done wrong, and the tree works as before.
#[test]
fn a_restore_of_the_tree_patches_one_worker() {
    if !root_or_skip("a_restore_of_the_tree_patches_one_worker") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "zdtm_prefork");
    let net = memzinc_tests::own_localnet(dir.path());
    ok(&strs(&net.policy_args(&[
        "policy",
        "init",
        "--max-bytes",
        "64",
        "--max-writes",
        "8",
    ])));
    let out = dir.path().join("out.txt");
    let tree = dir.path().join("tree");
    let mut child = start(&binary, &[out.to_str().unwrap(), "3", "--break", "2"]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    wait_for_lines(&out, 40, "before the checkpoint");
    assert!(
        prefork_count(lines(&out).last().unwrap(), "wrong") > 0,
        "the broken worker does jobs wrong"
    );
    let workers = children_of(pid);
    assert_eq!(workers.len(), 3);
    ok(&strs(&net.args(&[
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--tree",
        "--kill",
        "-o",
        tree.to_str().unwrap(),
        "--witness",
        net.witness.to_str().unwrap(),
        "--target",
        "zdtm_prefork",
    ])));
    child.wait().unwrap();
    for &w in &workers {
        let _ = waitpid(Pid::from_raw(w), None);
    }
    let wrong_before = prefork_count(lines(&out).last().unwrap(), "wrong");
    let at_checkpoint = lines(&out).len();
    // The second worker forked is the broken one.
    let broken = workers[1];
    let plan = dir.path().join("fix.plan.json");
    let rules = memzinc_tests::repo_root().join("tests/models/prefork_rules.mzn");
    ok(&[
        "plan",
        tree.join(format!("{broken}.core")).to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ]);
    ok(&strs(&net.args(&["attest", plan.to_str().unwrap()])));
    let restored: serde_json::Value = serde_json::from_str(&ok(&strs(&net.args(&[
        "--json",
        "restore",
        tree.to_str().unwrap(),
        "--apply",
        plan.to_str().unwrap(),
    ]))))
    .unwrap();
    let report = &restored["report"];
    let mut pids: Vec<i32> = report["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    let _reap = KillAll(pids.clone());
    assert_eq!(report["patched_pid"], broken, "{restored:#}");
    assert_eq!(report["writes_applied"], 1, "{restored:#}");
    pids.sort_unstable();
    let mut all = vec![pid];
    all.extend(&workers);
    all.sort_unstable();
    assert_eq!(pids, all);
    wait_for_lines(&out, at_checkpoint + 40, "after the restore");
    let after = lines(&out);
    for (i, line) in after.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{} sent ", i + 1)) && line.ends_with(" ok"),
            "{line:?}"
        );
    }
    // The shared count at the freeze may be ahead of the last line printed before it (a job
    // done between the parent's last step and the freeze), and a job the broken worker was in
    // the middle of may still finish wrong: from a few steps after the restore on, the count
    // must not move while the workers go on doing jobs.
    let wrong_after_restore = prefork_count(&after[at_checkpoint + 5], "wrong");
    assert!(wrong_after_restore >= wrong_before);
    assert_eq!(
        prefork_count(after.last().unwrap(), "wrong"),
        wrong_after_restore,
        "no job done wrong since the patched restore"
    );
    assert!(prefork_count(after.last().unwrap(), "done") > prefork_count(&after[at_checkpoint - 1], "done") + 20);
}

/// A TCP echo server and its client in one tree (issue 18): both ends of their connection are
/// checkpointed (repair mode, under the network lock) and the tree killed; after the restore
/// the same connection carries the client's next message both ways at every step, so does the
/// unix socketpair the two share (made again as one pair), and the listener accepts a new
/// client.
#[test]
fn a_tcp_server_and_its_client_in_one_tree_keep_their_connection() {
    if !root_or_skip("a_tcp_server_and_its_client_in_one_tree_keep_their_connection") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "zdtm_tcptree");
    let port = free_port();
    let out = dir.path().join("out.txt");
    let tree = dir.path().join("tree");
    let mut child = start(&binary, &[out.to_str().unwrap(), &port.to_string()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    wait_for_lines(&out, 20, "before the checkpoint");
    let client = children_of(pid);
    assert_eq!(client.len(), 1);
    ok(&[
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--tree",
        "--kill",
        "-o",
        tree.to_str().unwrap(),
    ]);
    child.wait().unwrap();
    let _ = waitpid(Pid::from_raw(client[0]), None);
    let at_checkpoint = lines(&out).len();
    let restored: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "restore", tree.to_str().unwrap()])).unwrap();
    let pids: Vec<i32> = restored["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    let _reap = KillAll(pids.clone());
    assert_eq!(pids, vec![pid, client[0]]);
    wait_for_lines(&out, at_checkpoint + 40, "after the restore");
    for (i, line) in lines(&out).iter().enumerate() {
        assert_eq!(
            line,
            &format!("{} ok", i + 1),
            "the same connection, both ways, at every step"
        );
    }
    let mut second = connect_tcp(port);
    assert_eq!(ask(&mut second, "new"), "echo new", "the listener accepts new clients");
}

/// Signals that arrive while memzinc freezes a process and runs syscalls in it reach the
/// process, each once: a signal that comes before the interrupt-stop is delivered (not dropped
/// when the thread is let go), and one that comes during an injected syscall waits, blocked,
/// instead of being taken for the syscall's stop. A second process queues 30,000 real-time
/// signals (which do not merge) while `snapshot` (copy-on-write: an injected clone),
/// `snapshot --stop-the-world` and `checkpoint --leave-running` (injections for signal state,
/// timers, credentials) run one after another on the receiver; its count must come out exact.
#[test]
fn signals_sent_while_memzinc_works_in_a_process_all_arrive() {
    if !root_or_skip("signals_sent_while_memzinc_works_in_a_process_all_arrive") {
        return;
    }
    const SIGNALS: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "sigstorm");
    let out = dir.path().join("count.txt");
    let mut receiver = start(&binary, &["recv", out.to_str().unwrap()]);
    let _kill = KillIfPanicking(receiver.id() as i32);
    let count = || -> Option<u64> { std::fs::read_to_string(&out).ok()?.trim().parse().ok() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count().is_none() {
        assert!(Instant::now() < deadline, "the receiver does not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = receiver.id().to_string();
    let mut sender = start(&binary, &["send", &pid, &SIGNALS.to_string()]);
    let core = dir.path().join("s.core");
    let mut runs = 0;
    while sender.try_wait().unwrap().is_none() || runs < 3 {
        let core = core.to_str().unwrap();
        match runs % 3 {
            0 => ok(&["snapshot", "--pid", &pid, "-o", core]),
            1 => ok(&["snapshot", "--pid", &pid, "-o", core, "--stop-the-world"]),
            _ => ok(&["checkpoint", "--pid", &pid, "--leave-running", "-o", core]),
        };
        std::fs::remove_file(core).unwrap();
        runs += 1;
    }
    assert!(sender.wait().unwrap().success(), "the sender queued every signal");
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() != Some(SIGNALS) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(), Some(SIGNALS), "signals received, after {runs} memzinc runs");
    eprintln!("{SIGNALS} signals received once each across {runs} memzinc runs");
    let _ = receiver.kill();
    let _ = receiver.wait();
}

/// Signals that reach a process while it is checkpointed stay pending (unblocked: they came
/// while it was frozen), are queued again by the restore with their siginfo, and reach the
/// handler once it runs: the restore's own injected syscalls do not stop for them.
#[test]
fn signals_pending_at_a_checkpoint_reach_the_restored_process() {
    if !root_or_skip("signals_pending_at_a_checkpoint_reach_the_restored_process") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "sigstorm");
    let out = dir.path().join("count.txt");
    let count = || -> Option<u64> { std::fs::read_to_string(&out).ok()?.trim().parse().ok() };
    let core = dir.path().join("r.core");
    let core = core.to_str().unwrap();
    // Whether a signal is pending at the freeze is up to the scheduler (a sender starved by a
    // busy machine leaves none): the storm and checkpoint are tried again, up to 5 times, until
    // one leaves some. The assertions below are the same whichever attempt it is.
    let attempt = || -> (i32, u64, u64) {
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(core);
        let mut receiver = start(&binary, &["recv", out.to_str().unwrap()]);
        let pid = receiver.id() as i32;
        let _kill = KillIfPanicking(pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while count().is_none() {
            assert!(Instant::now() < deadline, "the receiver does not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut sender = start(&binary, &["send", &pid.to_string(), "100000000"]);
        std::thread::sleep(Duration::from_millis(300));
        ok(&["checkpoint", "--pid", &pid.to_string(), "--kill", "-o", core]);
        let _ = receiver.wait();
        let _ = sender.wait();
        let counted = count().unwrap();
        let summary = ok(&["inspect", core]);
        let pending: u64 = summary
            .split(" pending signal(s)")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no pending count in: {summary}"));
        (pid, counted, pending)
    };
    let (pid, counted, pending) = (0..5)
        .map(|_| attempt())
        .find(|&(_, _, pending)| pending > 0)
        .expect("no signal was pending at any of 5 checkpoints taken during a signal storm");
    let _kill = KillIfPanicking(pid);
    ok(&["restore", core]);
    // Every pending signal is handled once the process runs (the file lags the count by at
    // most one 5 ms step, so the count reaches at least what it showed plus those).
    let deadline = Instant::now() + Duration::from_secs(20);
    while count().unwrap_or(0) < counted + pending && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        count().unwrap_or(0) >= counted + pending,
        "{} signals counted after the restore; {counted} before and {pending} pending",
        count().unwrap_or(0)
    );
    eprintln!("{pending} signals pending at the checkpoint, all handled after the restore");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    gone(pid);
}

/// A tree that changes while it is being frozen (issue 18): a parent forking children that
/// fork and exit at once. Each `checkpoint --tree --leave-running` either writes a whole tree
/// or fails in one line and writes nothing; either way the parent runs on and no process of
/// the tree is left stopped.
#[test]
fn a_tree_that_changes_while_it_is_frozen_is_one_line_or_whole() {
    if !root_or_skip("a_tree_that_changes_while_it_is_frozen_is_one_line_or_whole") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "zdtm_forker");
    let out = dir.path().join("out.txt");
    let mut child = start(&binary, &[out.to_str().unwrap()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    wait_for_lines(&out, 20, "the forker starts");
    let (mut whole, mut refused) = (0, 0);
    for attempt in 0..6 {
        let tree = dir.path().join(format!("tree{attempt}"));
        let result = memzinc_tests::memzinc(&[
            "checkpoint",
            "--pid",
            &pid.to_string(),
            "--tree",
            "-o",
            tree.to_str().unwrap(),
        ]);
        if result.status.success() {
            whole += 1;
            assert!(tree.join("tree.json").is_file(), "a whole tree");
            std::fs::remove_dir_all(&tree).unwrap();
        } else {
            refused += 1;
            let err = String::from_utf8_lossy(&result.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(
                err.contains("zombie")
                    || err.contains("kept changing")
                    || err.contains("exited")
                    || err.contains("changed while the tree was frozen"),
                "{err}"
            );
            assert!(!tree.exists(), "nothing written: {err}");
        }
        let before = lines(&out).len();
        wait_for_lines(&out, before + 5, "the forker runs on");
        let stopped: Vec<i32> = std::iter::once(pid)
            .chain(children_of(pid))
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    matches!(
                        s.rsplit_once(')').map(|x| x.1.trim_start().as_bytes()[0]),
                        Some(b't' | b'T')
                    )
                })
            })
            .collect();
        assert!(stopped.is_empty(), "left stopped: {stopped:?}");
    }
    println!("{whole} whole tree(s), {refused} refused in one line");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

/// Zombies in a tree (issue 18): two children the parent has not waited for yet — one exited
/// with 7, one killed by SIGTERM — are checkpointed as such and made again as zombies of the
/// restored parent, which then waits for them and gets the same statuses.
#[test]
fn zombies_come_back_as_zombies_with_their_status() {
    if !root_or_skip("zombies_come_back_as_zombies_with_their_status") {
        return;
    }
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let binary = c_target(dir.path(), "zdtm_zombie");
    let out = dir.path().join("out.txt");
    let tree = dir.path().join("tree");
    let mut child = start(&binary, &[out.to_str().unwrap()]);
    let pid = child.id() as i32;
    let _kill = KillIfPanicking(pid);
    wait_for_lines(&out, 10, "before the checkpoint");
    let zombies = children_of(pid);
    assert_eq!(zombies.len(), 2);
    let state = |p: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .map_or(' ', |x| x.1.trim_start().chars().next().unwrap_or(' '))
    };
    assert!(zombies.iter().all(|&z| state(z) == 'Z'));
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "--json",
        "checkpoint",
        "--pid",
        &pid.to_string(),
        "--tree",
        "--kill",
        "-o",
        tree.to_str().unwrap(),
    ]))
    .unwrap();
    let statuses: Vec<i64> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["zombie"].as_i64())
        .collect();
    assert_eq!(statuses, vec![7 << 8, 15], "{report:#}");
    child.wait().unwrap();
    for &z in &zombies {
        let _ = waitpid(Pid::from_raw(z), None);
    }
    let restored: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "restore", tree.to_str().unwrap()])).unwrap();
    assert_eq!(restored["pids"].as_array().unwrap().len(), 1, "{restored:#}");
    let _reap = KillAll(vec![pid]);
    for &z in &zombies {
        assert_eq!(state(z), 'Z', "{z} is a zombie again");
        assert_eq!(family(z).0, pid, "{z} is the restored parent's");
    }
    let before = lines(&out).len();
    wait_for_lines(&out, before + 3, "the restored parent runs");
    std::fs::write(format!("{}.go", out.display()), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines(&out).last().is_some_and(|l| l.contains("reaped")) {
        assert!(Instant::now() < deadline, "the parent never reaped its children");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        lines(&out).last().unwrap().ends_with("reaped exit 7 signal 15"),
        "{:?}",
        lines(&out).last()
    );
}

/// Kills and reaps the restored processes when the test ends.
struct KillAll(Vec<i32>);

impl Drop for KillAll {
    fn drop(&mut self) {
        kill_all(&self.0);
    }
}
