//! Shared helpers for memzinc's end-to-end and program tests.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The attestor built by `scripts/build-program.sh`. Tests fail (not skip) without it: the test
/// command builds it first.
pub fn program_so() -> PathBuf {
    let path = std::env::var_os("MEMZINC_PROGRAM_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/deploy/attestor.so"));
    assert!(
        path.exists(),
        "{} is missing: build it with scripts/build-program.sh",
        path.display()
    );
    path
}

/// A built binary of this workspace (memzinc, healme), from cargo's target directory.
pub fn binary(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; binaries are one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Runs the `memzinc` binary with `MEMZINC_ROOT` set to this checkout.
pub fn memzinc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("memzinc"))
        .args(args)
        .env("MEMZINC_ROOT", repo_root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run memzinc")
}

/// Runs a memzinc command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = memzinc(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memzinc {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a memzinc command that must fail; returns its one-line error.
pub fn fails(args: &[&str]) -> String {
    let out = memzinc(args);
    assert!(!out.status.success(), "memzinc {args:?} should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "error must be one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        use std::time::{Duration, Instant};
        // SIGTERM first so `memzinc localnet` shuts surfpool down cleanly.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running target program whose stdout lines arrive on a channel.
pub struct Target {
    pub child: KillOnDrop,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Target {
    pub fn spawn(program: &std::path::Path, args: &[&str]) -> Target {
        use std::io::BufRead;
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Target {
            child: KillOnDrop(child),
            lines,
        }
    }

    /// The sample target `healme` of this workspace.
    pub fn healme(args: &[&str]) -> Target {
        Target::spawn(&binary("healme"), args)
    }

    pub fn pid(&self) -> String {
        self.child.0.id().to_string()
    }

    /// The next line containing `needle`; panics after 15 s without one.
    pub fn wait_for(&self, needle: &str) -> String {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}
