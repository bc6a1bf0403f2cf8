//! Checkpoint and restore speed against CRIU 4.1.1 and gdb's `gcore`, measured in one run on
//! the same target: tests/targets/zdtm_counter.c with 100 MiB and 1 GiB of touched heap.
//! Dump: `memzinc::checkpoint` (--kill; hashing and the Merkle root included) vs
//! `criu dump -t PID -D DIR` vs `gcore` (dump only, the process keeps running). Restore:
//! `memzinc::checkpoint` vs `criu restore -D DIR -d`, both until the process runs detached.
//! Each restored process must then write its next line. Prints seconds and ratios; asserts
//! nothing about time.
//!
//! `cargo bench -p memzinc-tests --bench checkpoint` (release, as root). `MEMZINC_BENCH_SIZES=100`
//! limits the sizes (MiB); CRIU comes from `/work/shared/tools/criu41.sh` (or `MEMZINC_CRIU`)
//! and is skipped with the reason printed if it cannot run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

fn target(binary: &Path, out: &Path, mib: u64) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    // Lines of an earlier run must not count as this one's progress.
    let _ = std::fs::remove_file(out);
    let mut cmd = Command::new(binary);
    cmd.arg(out)
        .args(["--heap-mib", &mib.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid and close_range are async-signal-safe and only act on the child. CRIU
    // wants a session leader without a terminal, and the target's fds must be its own.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::setsid();
            nix::libc::close_range(3, u32::MAX, 0);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start the target");
    wait_lines(out, 3);
    child
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
}

fn wait_lines(path: &Path, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while line_count(path) < at_least {
        assert!(Instant::now() < deadline, "{}: no progress", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// After a restore: the process writes on, then is killed and reaped (we are its subreaper).
fn check_and_stop(pid: i32, out: &Path) {
    let n = line_count(out);
    wait_lines(out, n + 2);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let _ = waitpid(Pid::from_raw(pid), None);
}

fn criu() -> Result<PathBuf, String> {
    let path = std::env::var_os("MEMZINC_CRIU")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/tools/criu41.sh"));
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!("{} --version failed", path.display()));
    }
    Ok(path)
}

fn run(cmd: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let out = cmd.output().map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err
            .lines()
            .rfind(|l| l.contains("Error"))
            .unwrap_or("failed")
            .to_string());
    }
    Ok(secs)
}

fn main() {
    // SAFETY: an integer flag; no memory is touched.
    assert_eq!(
        unsafe { nix::libc::prctl(nix::libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } != 0 {
        println!("SKIP checkpoint bench: needs root");
        return;
    }
    let sizes = memzinc_tests::bench_sizes();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("zdtm_counter");
    let built = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&binary)
        .arg(memzinc_tests::repo_root().join("tests/targets/zdtm_counter.c"))
        .arg("-lpthread")
        .status()
        .expect("gcc");
    assert!(built.success());
    let criu = criu();
    let profile = if cfg!(debug_assertions) {
        "debug build (numbers are not representative)"
    } else {
        "release build"
    };
    println!(
        "checkpoint bench, {profile}, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if let Err(why) = &criu {
        println!("CRIU skipped: {why}");
    }
    let rounds = memzinc_tests::bench_rounds();
    println!("best of {rounds} rounds; the tools take turns going first (a fresh file's first page-cache pages cost more than pages another file just freed)");
    println!("CRIU as shipped leaves its images in the page cache (no fsync); 'CRIU durable' adds the fsync of every image to its dump and restores with the images evicted from the cache, which is what memzinc does (O_DIRECT + fsync, restore reads the disk)");
    println!("| heap | memzinc dump s | CRIU dump s | CRIU durable dump s | gcore s | memzinc restore s | CRIU restore s | CRIU durable restore s | CRIU/memzinc dump | CRIU/memzinc restore | CRIU durable/memzinc dump | CRIU durable/memzinc restore | gcore/memzinc dump |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mib in sizes {
        let out = dir.path().join("out.txt");
        let mut memzinc = Best::default();
        let mut criu_best = Best::default();
        let mut criu_durable = Best::default();
        let mut gcore = Err("not run".to_string());
        for round in 0..rounds {
            let memzinc_first = round % 2 == 0;
            if memzinc_first {
                memzinc.add(Ok(memzinc_round(&binary, dir.path(), &out, mib)));
            }
            for (best, durable) in [(&mut criu_best, false), (&mut criu_durable, true)] {
                best.add(match &criu {
                    Ok(criu) => criu_round(criu, &binary, dir.path(), &out, mib, durable),
                    Err(why) => Err(why.clone()),
                });
            }
            if !memzinc_first {
                memzinc.add(Ok(memzinc_round(&binary, dir.path(), &out, mib)));
            }
            let g = gcore_round(&binary, dir.path(), &out, mib);
            gcore = match (gcore, g) {
                (Ok(a), Ok(b)) => Ok(f64::min(a, b)),
                (_, g) => g,
            };
        }
        let (Ok(memzinc_dump), Ok(memzinc_restore)) = (memzinc.dump.clone(), memzinc.restore.clone()) else {
            unreachable!("memzinc rounds panic on failure")
        };
        let show = |r: &Result<f64, String>| match r {
            Ok(s) => format!("{s:.3}"),
            Err(e) => format!("n/a ({e})"),
        };
        let ratio = |r: &Result<f64, String>, m: f64| match r {
            Ok(s) => format!("{:.2}x", s / m),
            Err(_) => "n/a".into(),
        };
        println!(
            "| {mib} MiB | {memzinc_dump:.3} | {} | {} | {} | {memzinc_restore:.3} | {} | {} | {} | {} | {} | {} | {} |",
            show(&criu_best.dump),
            show(&criu_durable.dump),
            show(&gcore),
            show(&criu_best.restore),
            show(&criu_durable.restore),
            ratio(&criu_best.dump, memzinc_dump),
            ratio(&criu_best.restore, memzinc_restore),
            ratio(&criu_durable.dump, memzinc_dump),
            ratio(&criu_durable.restore, memzinc_restore),
            ratio(&gcore, memzinc_dump),
        );
    }
}

/// Seconds, or why there are none.
type Seconds = Result<f64, String>;
/// A round's dump and restore, or why it could not run.
type Round = Result<(Seconds, Seconds), String>;

/// The best dump and restore seconds over the rounds (or the last failure).
struct Best {
    dump: Result<f64, String>,
    restore: Result<f64, String>,
}

impl Default for Best {
    fn default() -> Best {
        Best {
            dump: Err("not run".into()),
            restore: Err("not run".into()),
        }
    }
}

impl Best {
    fn add(&mut self, round: Round) {
        let (dump, restore) = match round {
            Ok(r) => r,
            Err(e) => (Err(e.clone()), Err(e)),
        };
        let better = |old: &Result<f64, String>, new: Result<f64, String>| match (old, new) {
            (Ok(a), Ok(b)) => Ok(a.min(b)),
            (Ok(a), Err(_)) => Ok(*a),
            (Err(_), n) => n,
        };
        self.dump = better(&self.dump, dump);
        self.restore = better(&self.restore, restore);
    }
}

/// memzinc checkpoint --kill, then restore; both through the library, as the CLI runs them.
fn memzinc_round(binary: &Path, dir: &Path, out: &Path, mib: u64) -> (Seconds, Seconds) {
    let core = dir.join("m.core");
    let mut child = target(binary, out, mib);
    let pid = child.id() as i32;
    let started = Instant::now();
    memzinc::checkpoint::checkpoint(
        pid,
        &core,
        memzinc::checkpoint::AfterCheckpoint::Kill,
        memzinc::describe::Pause::StopTheWorld,
    )
    .expect("checkpoint");
    let dump = started.elapsed().as_secs_f64();
    // The checkpoint, as the tracer, may already have reaped its own child here.
    let _ = child.wait();
    let started = Instant::now();
    memzinc::checkpoint::restore(&core, None, &[]).expect("restore");
    let restore = started.elapsed().as_secs_f64();
    check_and_stop(pid, out);
    std::fs::remove_file(&core).unwrap();
    (Ok(dump), Ok(restore))
}

/// criu dump (kills the target), then criu restore -d. `durable`: the dump's time includes
/// making its images durable (fsync of each file and the directory), and they are evicted from
/// the page cache before the restore, so it reads them from the disk as memzinc's does.
fn criu_round(criu: &Path, binary: &Path, dir: &Path, out: &Path, mib: u64, durable: bool) -> Round {
    let images = dir.join("criu");
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir(&images).unwrap();
    let mut child = target(binary, out, mib);
    let pid = child.id() as i32;
    let mut dump = run(Command::new(criu)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&images));
    if let (true, Ok(secs)) = (durable, &mut dump) {
        *secs += sync_and_evict(&images);
    }
    if dump.is_err() {
        let _ = child.kill();
    }
    child.wait().unwrap();
    let restore = match &dump {
        Ok(_) => {
            let r = run(Command::new(criu).args(["restore", "-d", "-D"]).arg(&images));
            if r.is_ok() {
                check_and_stop(pid, out);
            }
            r
        }
        Err(e) => Err(e.clone()),
    };
    std::fs::remove_dir_all(&images).unwrap();
    Ok((dump, restore))
}

/// Seconds to fsync every file in `images` and the directory itself; then drops the files'
/// (now clean) pages from the page cache (not timed).
fn sync_and_evict(images: &Path) -> f64 {
    use std::os::fd::AsRawFd;
    let files: Vec<std::fs::File> = std::fs::read_dir(images)
        .unwrap()
        .map(|e| std::fs::File::open(e.unwrap().path()).unwrap())
        .collect();
    let started = Instant::now();
    for f in &files {
        f.sync_all().unwrap();
    }
    std::fs::File::open(images).unwrap().sync_all().unwrap();
    let secs = started.elapsed().as_secs_f64();
    for f in &files {
        // SAFETY: an advice on an open descriptor; no memory is passed.
        let rc = unsafe { nix::libc::posix_fadvise(f.as_raw_fd(), 0, 0, nix::libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
    }
    secs
}

/// gcore of a running target (dump only).
fn gcore_round(binary: &Path, dir: &Path, out: &Path, mib: u64) -> Result<f64, String> {
    let mut child = target(binary, out, mib);
    let pid = child.id() as i32;
    let gcore_out = dir.join("g");
    let gcore = run(Command::new("gcore").arg("-o").arg(&gcore_out).arg(pid.to_string()));
    let _ = std::fs::remove_file(format!("{}.{pid}", gcore_out.display()));
    child.kill().unwrap();
    child.wait().unwrap();
    gcore
}
