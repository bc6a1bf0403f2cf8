//! The solver runner: one way to run MiniZinc models for every stage that needs a solver
//! (repairs, layouts), with limits memzinc enforces itself.
//!
//! Backends:
//! - [`Backend::Gecode`]: `minizinc --solver gecode --json-stream`, MiniZinc's own pipeline.
//! - `wasm-highs`, `wasm-cbc`, `wasm-chuffed`, `wasm-gecode`: the same pipeline in the npm
//!   `minizinc` package's WebAssembly MiniZinc 2.10, run by node through
//!   `host/core/wasm/minizinc-wasm.cjs` (installed by `scripts/install-tools.sh minizinc-wasm`).
//!   Their answers are verified like Gecode's when [`SolverOptions::verify`] is set. No
//!   address-space cap (V8 reserves far more virtual memory than it uses; wasm32 itself stops
//!   at 4 GiB).
//! - [`Backend::Pumpkin`]: `pumpkin-solver` (an LCG solver, `install-tools.sh pumpkin`) on the
//!   linear FlatZinc of the cbc route with every variable exposed; its full assignment is
//!   checked like cbc's. It uses 32-bit integers: models with big coefficients are refused
//!   ("integer too big").
//! - [`Backend::Cbc`]: memzinc's own pipeline around Debian's `cbc`: `minizinc -c -G linear`
//!   flattens to linear FlatZinc, [`crate::fzn`] writes it as an LP file, `cbc` solves it, the
//!   full assignment is checked against the FlatZinc ([`crate::fzn::FlatZinc::check`]) and
//!   `minizinc --ozn-file` maps it back to the model's output. OPTIMAL is reported only when
//!   cbc proved it *and* the assignment passed the check.
//!
//! Every process runs in a session of its own (`setsid`) under an address-space cap
//! (`RLIMIT_AS`) and a wall-clock deadline that covers flattening too (memzinc's own `-c` runs
//! get no `--time-limit` at all). A session, not a process group: `minizinc` puts the solver it
//! starts (`fzn-gecode`) into a process group of its own, so killing minizinc's group would
//! leave Gecode running. On the deadline or on [`Cancel::cancel`] (the CLI wires Ctrl-C to it)
//! every process of the session is killed, before the session leader is reaped so its id
//! cannot have been reused.
//!
//! A Gecode answer can be verified too ([`SolverOptions::verify`]): the output values are fixed
//! as data, the model is flattened with `-G linear` again and the rest of the assignment is
//! completed by cbc and checked. An answer that does not extend to a checked solution is an
//! error, never a plan.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::fzn::{self, CbcStatus, FlatZinc, FznCheck};
use crate::base::{Error, Result};

/// Which solver decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Gecode through MiniZinc (`--solver gecode`).
    Gecode,
    /// `-G linear` FlatZinc → LP → Debian's `cbc`, checked.
    Cbc,
    /// WebAssembly MiniZinc 2.10 (npm `minizinc`) under node, with one of its solvers.
    #[serde(rename = "wasm-highs")]
    WasmHighs,
    #[serde(rename = "wasm-cbc")]
    WasmCbc,
    #[serde(rename = "wasm-chuffed")]
    WasmChuffed,
    #[serde(rename = "wasm-gecode")]
    WasmGecode,
    /// `-G linear` FlatZinc → `pumpkin-solver`, checked.
    Pumpkin,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "gecode" => Ok(Backend::Gecode),
            "cbc" | "coin-bc" | "coinbc" => Ok(Backend::Cbc),
            "wasm-highs" => Ok(Backend::WasmHighs),
            "wasm-cbc" => Ok(Backend::WasmCbc),
            "wasm-chuffed" => Ok(Backend::WasmChuffed),
            "wasm-gecode" => Ok(Backend::WasmGecode),
            "pumpkin" => Ok(Backend::Pumpkin),
            other => Err(Error::Usage(format!(
                "unknown solver backend {other:?} (gecode, cbc, wasm-highs, wasm-cbc, wasm-chuffed, wasm-gecode, pumpkin)"
            ))),
        }
    }
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gecode => "gecode",
            Backend::Cbc => "cbc",
            Backend::WasmHighs => "wasm-highs",
            Backend::WasmCbc => "wasm-cbc",
            Backend::WasmChuffed => "wasm-chuffed",
            Backend::WasmGecode => "wasm-gecode",
            Backend::Pumpkin => "pumpkin",
        }
    }

    /// The solver id inside the WebAssembly MiniZinc, for the wasm backends.
    fn wasm_solver(self) -> Option<&'static str> {
        match self {
            Backend::WasmHighs => Some("highs"),
            Backend::WasmCbc => Some("coin-bc"),
            Backend::WasmChuffed => Some("chuffed"),
            Backend::WasmGecode => Some("gecode"),
            _ => None,
        }
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    // Async-signal-safe: one atomic store.
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Cancels running solves: every process of every session started under it is killed.
#[derive(Debug, Default)]
pub struct Cancel {
    flag: AtomicBool,
    /// Also cancelled by SIGINT/SIGTERM once [`Cancel::on_signals`] installed the handler.
    signals: bool,
    groups: Mutex<Vec<i32>>,
    started: Mutex<Vec<i32>>,
}

impl Cancel {
    pub fn new() -> Arc<Cancel> {
        Arc::new(Cancel::default())
    }

    /// A token that SIGINT (Ctrl-C) and SIGTERM trip. The solver processes run in sessions of
    /// their own (no controlling terminal), so the terminal's SIGINT reaches only memzinc, which
    /// kills them.
    pub fn on_signals() -> Result<Arc<Cancel>> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let action = SigAction::new(SigHandler::Handler(on_stop_signal), SaFlags::empty(), SigSet::empty());
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { sigaction(sig, &action) }.map_err(|e| Error::Usage(format!("cannot handle {sig}: {e}")))?;
        }
        Ok(Arc::new(Cancel {
            signals: true,
            ..Cancel::default()
        }))
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || (self.signals && SIGNALLED.load(Ordering::SeqCst))
    }

    /// Sessions (ids of their leaders) still running under this token.
    pub fn running(&self) -> Vec<i32> {
        self.groups.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Every session ever started under this token (for tests that check none survive).
    pub fn started(&self) -> Vec<i32> {
        self.started.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// How to run a model.
#[derive(Clone, Debug)]
pub struct SolverOptions {
    pub minizinc: PathBuf,
    pub cbc: PathBuf,
    /// `node`, for the wasm backends.
    pub node: PathBuf,
    /// Where `npm install --prefix` put the `minizinc` package.
    pub wasm_package: PathBuf,
    pub pumpkin: PathBuf,
    pub backend: Backend,
    /// Wall-clock limit for the whole run (flattening, solving, checking, output).
    pub time_limit: Duration,
    /// Address-space cap per solver process, bytes.
    pub memory_limit: u64,
    pub cancel: Option<Arc<Cancel>>,
    /// Gecode: verify the answer by completing it under `-G linear` and checking it.
    pub verify: bool,
    /// Where the FlatZinc, LP and solution files go (kept); a temporary directory otherwise.
    pub work_dir: Option<PathBuf>,
    /// Gecode: read the model's own output item (which must print one JSON object) instead of
    /// MiniZinc's JSON of the decision variables — for models whose answer includes
    /// parameters or strings.
    pub output_item: bool,
}

impl Default for SolverOptions {
    fn default() -> SolverOptions {
        SolverOptions {
            minizinc: PathBuf::from("minizinc"),
            cbc: PathBuf::from("cbc"),
            node: PathBuf::from("node"),
            wasm_package: tools_dir().join("minizinc-wasm"),
            pumpkin: {
                let installed = tools_dir().join("bin/pumpkin-solver");
                if installed.exists() {
                    installed
                } else {
                    PathBuf::from("pumpkin-solver")
                }
            },
            backend: Backend::Gecode,
            time_limit: Duration::from_secs(60),
            memory_limit: 4 << 30,
            cancel: None,
            verify: false,
            work_dir: None,
            output_item: false,
        }
    }
}

/// What a run concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The solver proved the solution optimal (for satisfaction problems: found one).
    Optimal,
    /// A solution, not proven optimal.
    Satisfied,
    Unsatisfiable,
    /// No solution and no proof there is none.
    Unknown,
}

/// Measurements of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub backend: String,
    pub total_ms: u64,
    /// Flattening (`minizinc -c`, or MiniZinc's own `flatTime`).
    pub flatten_ms: Option<u64>,
    /// The solver itself (Gecode's `solveTime`, cbc's wall time).
    pub solve_ms: Option<u64>,
    /// Checking the assignment against the FlatZinc.
    pub check_ms: Option<u64>,
    pub variables: Option<u64>,
    pub constraints: Option<u64>,
    pub nodes: Option<u64>,
    /// The largest peak resident set (VmHWM) of any process of the run (flattening, solver,
    /// checking), KiB; sampled while they run, so growth in the last few ms may be missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_kb: Option<u64>,
    /// Everything the solver reported, as it reported it.
    pub solver: serde_json::Map<String, serde_json::Value>,
}

/// One run's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub status: Status,
    /// The model's output variables as MiniZinc's JSON output mode shows them (with
    /// `_objective` for optimisation problems); `Null` without a solution.
    pub output: serde_json::Value,
    pub objective: Option<i64>,
    pub stats: Stats,
    /// The FlatZinc check of the full assignment (cbc, or a verified Gecode answer).
    pub check: Option<FznCheck>,
}

impl Run {
    /// Fails unless the run found an answer: `what` (the invariants, a model file's rules)
    /// cannot all hold, or nothing was found within `limit` and nothing proved there is none.
    pub fn answered(&self, what: &str, limit: Duration) -> Result<()> {
        match self.status {
            Status::Unsatisfiable => Err(Error::MiniZinc(format!("{what} cannot all hold: no repair exists"))),
            Status::Unknown => Err(Error::MiniZinc(format!(
                "no repair within {limit:?} and no proof there is none"
            ))),
            _ => Ok(()),
        }
    }

    /// An output variable's integer values (a scalar as one value).
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        let v = self.output.get(name)?;
        match v {
            serde_json::Value::Array(items) => items.iter().map(|x| x.as_i64()).collect(),
            other => other.as_i64().map(|x| vec![x]),
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A finished process.
struct Finished {
    stdout: String,
    stderr: String,
    status: ExitStatus,
}

/// memzinc's tools folder: `$MEMZINC_TOOLS`, else `$MEMZINC_CACHE/tools`, else
/// `~/.cache/memzinc/tools` (as `scripts/env.sh` sets them).
pub fn tools_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("MEMZINC_TOOLS") {
        return PathBuf::from(t);
    }
    if let Some(c) = std::env::var_os("MEMZINC_CACHE") {
        return PathBuf::from(c).join("tools");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/memzinc/tools")
}

thread_local! {
    /// The peak RSS seen by `run_process` on this thread since `run` started, KiB.
    static PEAK_RSS_KB: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The largest VmHWM of `pid` and its descendants (children from /proc), KiB.
fn tree_peak_rss_kb(pid: i32, depth: usize) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    if depth == 0 {
        return own;
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .map(|c| tree_peak_rss_kb(c, depth - 1))
        .fold(own, u64::max)
}

/// The processes of session `sid` that are still running (not zombies), from /proc.
pub fn session_members(sid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else { continue };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next();
        let session = fields.nth(2).and_then(|f| f.parse::<i32>().ok());
        if session == Some(sid) && state != Some("Z") {
            out.push(pid);
        }
    }
    out
}

/// SIGKILLs every process of session `sid` until none is left (a dying process cannot start
/// new ones, so this ends).
fn kill_session(sid: i32) {
    use nix::sys::signal::{kill, Signal};
    for _ in 0..200 {
        let members = session_members(sid);
        if members.is_empty() {
            return;
        }
        for pid in members {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!("processes of session {sid} survived SIGKILL");
}

/// Runs `cmd` in a session of its own under the memory cap, feeding `stdin`, until it exits,
/// `deadline` passes or `cancel` trips (then every process of the session is killed and an
/// error returned).
fn run_process(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    opts: &SolverOptions,
    deadline: Instant,
    what: &str,
) -> Result<Finished> {
    use std::os::unix::process::CommandExt;
    // V8 reserves tens of GiB of address space for WebAssembly memories; wasm32 caps itself.
    let limit = if opts.backend.wasm_solver().is_some() && what.starts_with("wasm") {
        nix::sys::resource::RLIM_INFINITY
    } else {
        opts.memory_limit
    };
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls setsid and
    // setrlimit, which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit)
                .map_err(std::io::Error::from)
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|e| {
        Error::MiniZinc(format!(
            "cannot run {program}: {e} (install it: scripts/install-tools.sh apt)"
        ))
    })?;
    let sid = child.id() as i32;
    if let Some(c) = &opts.cancel {
        if let Ok(mut g) = c.groups.lock() {
            g.push(sid);
        }
        if let Ok(mut g) = c.started.lock() {
            g.push(sid);
        }
    }
    let writer = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });

    let forget = || {
        if let Some(c) = &opts.cancel {
            if let Ok(mut g) = c.groups.lock() {
                g.retain(|&p| p != sid);
            }
        }
    };
    let outcome = loop {
        let peak = tree_peak_rss_kb(sid, 4);
        PEAK_RSS_KB.with(|p| p.set(p.get().max(peak)));
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(Error::MiniZinc(format!("waiting for {program}: {e}"))),
        }
        let cancelled = opts.cancel.as_ref().is_some_and(|c| c.is_cancelled());
        if cancelled || Instant::now() > deadline {
            // The leader is not reaped yet, so `sid` still names its session.
            kill_session(sid);
            let _ = child.wait();
            break Err(if cancelled {
                Error::Cancelled(format!("{what} cancelled; {program} and its session ({sid}) killed"))
            } else {
                Error::MiniZinc(format!(
                    "{what}: no answer within {:?}; {program} and its session ({sid}) killed",
                    opts.time_limit
                ))
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    forget();
    // Anything the leader left behind in its session goes too (a session id is not reused
    // while a process of the session lives).
    kill_session(sid);
    let status = outcome?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(Finished {
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        status,
    })
}

/// stderr without MiniZinc's deprecation chatter, on one line.
fn stderr_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("deprecated") && !l.contains("overrides a global constraint"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `model` with `data` files under `opts`.
pub fn run(opts: &SolverOptions, model: &Path, data: &[&Path]) -> Result<Run> {
    let start = Instant::now();
    PEAK_RSS_KB.with(|p| p.set(0));
    // Flattening and output mapping get a little beyond the solver's own limit.
    let deadline = start + opts.time_limit + Duration::from_secs(5);
    let mut run = match opts.backend {
        Backend::Gecode | Backend::WasmHighs | Backend::WasmCbc | Backend::WasmChuffed | Backend::WasmGecode => {
            run_gecode(opts, model, data, deadline)?
        }
        Backend::Cbc | Backend::Pumpkin => {
            let dir = WorkDir::new(opts)?;
            run_cbc(opts, model, data, deadline, &dir.path, "model")?
        }
    };
    if opts.verify && !matches!(opts.backend, Backend::Cbc | Backend::Pumpkin) && run.output.is_object() {
        let check_start = Instant::now();
        let report = verify(opts, model, data, &run.output, deadline)?;
        if let (Some(claimed), Some(found)) = (run.objective, report.objective) {
            if claimed != found {
                return Err(Error::MiniZinc(format!(
                    "Gecode claims objective {claimed} but its answer gives {found}"
                )));
            }
        }
        run.stats.check_ms = Some(ms(check_start.elapsed()));
        run.check = Some(report);
    }
    run.stats.total_ms = ms(start.elapsed());
    run.stats.peak_rss_kb = Some(PEAK_RSS_KB.with(|p| p.get())).filter(|&kb| kb > 0);
    Ok(run)
}

struct WorkDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl WorkDir {
    fn new(opts: &SolverOptions) -> Result<WorkDir> {
        match &opts.work_dir {
            Some(p) => {
                std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
                Ok(WorkDir {
                    path: p.clone(),
                    _temp: None,
                })
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("memzinc-solve-")
                    .tempdir()
                    .map_err(|e| Error::io(std::env::temp_dir(), e))?;
                Ok(WorkDir {
                    path: t.path().to_path_buf(),
                    _temp: Some(t),
                })
            }
        }
    }
}

/// MiniZinc's own pipeline with `--json-stream`: native Gecode, or a wasm backend's solver.
fn run_gecode(opts: &SolverOptions, model: &Path, data: &[&Path], deadline: Instant) -> Result<Run> {
    let backend = opts.backend.name();
    let mut cmd = match opts.backend.wasm_solver() {
        Some(solver) => {
            let shim = crate::base::repo_root().join("host/core/wasm/minizinc-wasm.cjs");
            let package = opts.wasm_package.join("node_modules/minizinc/dist/minizinc.wasm");
            if !package.exists() {
                return Err(Error::MiniZinc(format!(
                    "{backend}: {} is missing (install it: scripts/install-tools.sh minizinc-wasm)",
                    package.display()
                )));
            }
            let mut cmd = Command::new(&opts.node);
            cmd.arg(shim).arg(&opts.wasm_package).args(["--solver", solver]);
            cmd
        }
        None => {
            let mut cmd = Command::new(&opts.minizinc);
            cmd.args(["--solver", "gecode"]);
            cmd
        }
    };
    cmd.arg("--json-stream");
    if !opts.output_item {
        cmd.args(["--output-mode", "json", "--output-objective"]);
    }
    cmd.arg("--statistics")
        .arg("--time-limit")
        .arg(opts.time_limit.as_millis().to_string())
        .arg(model)
        .args(data);
    let done = run_process(cmd, None, opts, deadline, backend)?;
    let mut output = serde_json::Value::Null;
    let mut status = None;
    let mut errors = Vec::new();
    let mut solver = serde_json::Map::new();
    for line in done.stdout.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match event["type"].as_str() {
            Some("solution") if opts.output_item => {
                let text = event["output"]["default"].as_str().unwrap_or_default();
                output = serde_json::from_str(text)
                    .map_err(|e| Error::MiniZinc(format!("the model's output is not one JSON object ({e}): {text}")))?;
            }
            Some("solution") => output = event["output"]["json"].clone(),
            Some("status") => status = event["status"].as_str().map(str::to_string),
            Some("error") => errors.push(event["message"].as_str().unwrap_or("error").to_string()),
            Some("statistics") => {
                if let Some(m) = event["statistics"].as_object() {
                    solver.extend(m.clone());
                }
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(Error::MiniZinc(errors.join("; ")));
    }
    let status = match (status.as_deref(), output.is_object()) {
        (Some("OPTIMAL_SOLUTION" | "ALL_SOLUTIONS"), true) => Status::Optimal,
        (Some("UNSATISFIABLE"), _) => Status::Unsatisfiable,
        (_, true) => Status::Satisfied,
        (s, false) if done.status.success() || s.is_some() => Status::Unknown,
        (_, false) => {
            return Err(Error::MiniZinc(format!(
                "{backend} failed (exit {}): {}",
                done.status,
                stderr_line(&done.stderr)
            )))
        }
    };
    // A satisfaction problem's first solution is its answer: Gecode reports SATISFIED.
    let status = if status == Status::Satisfied && solver.get("method").and_then(|m| m.as_str()) == Some("satisfy") {
        Status::Optimal
    } else {
        status
    };
    let secs = |k: &str| solver.get(k).and_then(|v| v.as_f64()).map(|s| (s * 1000.0) as u64);
    let int = |k: &str| solver.get(k).and_then(|v| v.as_u64());
    let stats = Stats {
        backend: backend.into(),
        total_ms: 0,
        flatten_ms: secs("flatTime"),
        solve_ms: secs("solveTime"),
        check_ms: None,
        variables: int("flatIntVars").or(int("variables")),
        constraints: int("flatIntConstraints").or(int("propagators")),
        nodes: int("nodes"),
        peak_rss_kb: None,
        solver,
    };
    Ok(Run {
        status,
        objective: output.get("_objective").and_then(|v| v.as_i64()),
        output,
        stats,
        check: None,
    })
}

/// `minizinc -c -G linear`: the linear FlatZinc and the output model, in `dir`.
fn flatten_linear(
    opts: &SolverOptions,
    model: &Path,
    data: &[&Path],
    deadline: Instant,
    dir: &Path,
    base: &str,
) -> Result<(PathBuf, PathBuf)> {
    let fzn_path = dir.join(format!("{base}.fzn"));
    let ozn_path = dir.join(format!("{base}.ozn"));
    let mut cmd = Command::new(&opts.minizinc);
    cmd.args(["-c", "-G", "linear", "--output-mode", "json", "--output-objective"])
        .arg("--fzn")
        .arg(&fzn_path)
        .arg("--ozn")
        .arg(&ozn_path)
        .arg(model)
        .args(data);
    let done = run_process(cmd, None, opts, deadline, "flattening")?;
    if !done.status.success() || !fzn_path.exists() {
        return Err(Error::MiniZinc(format!(
            "flattening {} failed (exit {}): {}",
            model.display(),
            done.status,
            stderr_line(&done.stderr)
        )));
    }
    Ok((fzn_path, ozn_path))
}

/// What solving linear FlatZinc with cbc gave: a checked full assignment or none.
struct LinearAnswer {
    status: Status,
    assignment: Option<Vec<Option<i64>>>,
    check: Option<FznCheck>,
    solve_ms: Option<u64>,
    check_ms: u64,
    solver: serde_json::Map<String, serde_json::Value>,
}

fn solve_linear(
    opts: &SolverOptions,
    fz: &FlatZinc,
    deadline: Instant,
    dir: &Path,
    base: &str,
) -> Result<LinearAnswer> {
    let free = fz.free_vars().count();
    let mut solver = serde_json::Map::new();
    let (cbc_status, values, solve_ms) = if free == 0 {
        // Everything is fixed: nothing to solve, only to check.
        (CbcStatus::Optimal, vec![None; fz.vars.len()], None)
    } else if opts.backend == Backend::Pumpkin {
        let (status, values, solve_ms) = solve_pumpkin(opts, fz, deadline, dir, base, &mut solver)?;
        (status, values, Some(solve_ms))
    } else {
        let lp = fz
            .to_lp()
            .map_err(|why| Error::MiniZinc(format!("LP for cbc: {why}")))?;
        let lp_path = dir.join(format!("{base}.lp"));
        let sol_path = dir.join(format!("{base}.sol"));
        std::fs::write(&lp_path, lp).map_err(|e| Error::io(&lp_path, e))?;
        let _ = std::fs::remove_file(&sol_path);
        let remaining = deadline.saturating_duration_since(Instant::now()).as_secs().max(1);
        let mut cmd = Command::new(&opts.cbc);
        cmd.arg(&lp_path)
            .args(["timeMode", "elapsed", "sec"])
            .arg(remaining.to_string())
            // No gap tolerance: "Optimal" must mean proven optimal.
            .args(["ratioGap", "0", "allowableGap", "0", "threads", "1", "solve"])
            .args(["printingOptions", "all", "solution"])
            .arg(&sol_path);
        let t = Instant::now();
        let done = run_process(cmd, None, opts, deadline, "cbc")?;
        let solve_ms = ms(t.elapsed());
        for line in done.stdout.lines() {
            let mut put = |key: &str, prefix: &str| {
                if let Some(v) = line.strip_prefix(prefix) {
                    if let Ok(x) = v.trim().parse::<f64>() {
                        solver.insert(key.into(), serde_json::json!(x));
                    }
                }
            };
            put("objective", "Objective value:");
            put("nodes", "Enumerated nodes:");
            put("iterations", "Total iterations:");
            put("cpuTime", "Time (CPU seconds):");
            put("wallTime", "Time (Wallclock seconds):");
        }
        let text = std::fs::read_to_string(&sol_path).map_err(|_| {
            Error::MiniZinc(format!(
                "cbc wrote no solution (exit {}): {}",
                done.status,
                stderr_line(&done.stderr)
            ))
        })?;
        let (status, values) =
            fzn::parse_cbc_solution(&text, fz.vars.len()).map_err(|why| Error::MiniZinc(format!("cbc: {why}")))?;
        solver.insert("status".into(), serde_json::json!(text.lines().next().unwrap_or("")));
        (status, values, Some(solve_ms))
    };
    let t = Instant::now();
    match cbc_status {
        CbcStatus::Infeasible => Ok(LinearAnswer {
            status: Status::Unsatisfiable,
            assignment: None,
            check: None,
            solve_ms,
            check_ms: 0,
            solver,
        }),
        CbcStatus::Unknown(_) => Ok(LinearAnswer {
            status: Status::Unknown,
            assignment: None,
            check: None,
            solve_ms,
            check_ms: 0,
            solver,
        }),
        CbcStatus::Optimal | CbcStatus::Feasible => {
            let assignment = fz.complete(&values);
            let report = fz.check(&assignment);
            if !report.ok() {
                if free == 0 {
                    // The compiler fixed everything and the fixed values violate a constraint
                    // (`bool_eq(false,true)`: it found the model inconsistent).
                    return Ok(LinearAnswer {
                        status: Status::Unsatisfiable,
                        assignment: None,
                        check: Some(report),
                        solve_ms,
                        check_ms: ms(t.elapsed()),
                        solver,
                    });
                }
                let first = &report.failures[0];
                return Err(Error::MiniZinc(format!(
                    "cbc's answer fails the FlatZinc check ({} failure(s); first: {}: {})",
                    report.failures.len(),
                    first.what,
                    first.why
                )));
            }
            Ok(LinearAnswer {
                status: if cbc_status == CbcStatus::Optimal {
                    Status::Optimal
                } else {
                    Status::Satisfied
                },
                assignment: Some(assignment),
                check: Some(report),
                solve_ms,
                check_ms: ms(t.elapsed()),
                solver,
            })
        }
    }
}

/// `pumpkin-solver` on the linear FlatZinc with every variable exposed: its last solution as a
/// full assignment, and whether it proved it optimal (`==========`).
fn solve_pumpkin(
    opts: &SolverOptions,
    fz: &FlatZinc,
    deadline: Instant,
    dir: &Path,
    base: &str,
    stats: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(CbcStatus, Vec<Option<i64>>, u64)> {
    let fzn_path = dir.join(format!("{base}.fzn"));
    let text = std::fs::read_to_string(&fzn_path).map_err(|e| Error::io(&fzn_path, e))?;
    let exposed = dir.join(format!("{base}.exposed.fzn"));
    std::fs::write(&exposed, FlatZinc::expose_all(&text)).map_err(|e| Error::io(&exposed, e))?;
    let remaining = deadline.saturating_duration_since(Instant::now()).as_millis().max(1000);
    let mut cmd = Command::new(&opts.pumpkin);
    cmd.arg("-s").arg("-t").arg(remaining.to_string()).arg(&exposed);
    let t = Instant::now();
    let done = run_process(cmd, None, opts, deadline, "pumpkin")?;
    let solve_ms = ms(t.elapsed());
    let out = &done.stdout;
    for line in out.lines() {
        if let Some((k, v)) = line.strip_prefix("%%%mzn-stat: ").and_then(|l| l.split_once('=')) {
            if let Ok(x) = v.trim().parse::<f64>() {
                stats.insert(k.to_string(), serde_json::json!(x));
            }
        }
    }
    if out.contains("=====UNSATISFIABLE=====") {
        return Ok((CbcStatus::Infeasible, Vec::new(), solve_ms));
    }
    // The last complete solution: the text between the last two `----------` lines.
    let mut blocks: Vec<&str> = out.split("----------").collect();
    blocks.pop();
    let Some(last) = blocks.last() else {
        let why = out
            .lines()
            .find(|l| l.contains("error") || l.contains("failed"))
            .map(str::to_string)
            .unwrap_or_else(|| stderr_line(&done.stderr));
        if !done.status.success() || why.contains("error") || why.contains("failed") {
            return Err(Error::MiniZinc(format!("pumpkin failed (exit {}): {why}", done.status)));
        }
        return Ok((CbcStatus::Unknown("no solution".into()), Vec::new(), solve_ms));
    };
    let parsed = fzn::parse_solution(last).map_err(|e| Error::MiniZinc(format!("pumpkin's solution: {e}")))?;
    let mut values = vec![None; fz.vars.len()];
    for (name, v) in parsed {
        if let (Some(i), [x]) = (fz.var_index(&name), v.as_slice()) {
            values[i] = Some(*x);
        }
    }
    let status = if out.contains("==========") {
        CbcStatus::Optimal
    } else {
        CbcStatus::Feasible
    };
    Ok((status, values, solve_ms))
}

fn read_fzn(path: &Path) -> Result<FlatZinc> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    FlatZinc::parse(&text).map_err(|e| Error::MiniZinc(format!("{}: {e}", path.display())))
}

fn run_cbc(
    opts: &SolverOptions,
    model: &Path,
    data: &[&Path],
    deadline: Instant,
    dir: &Path,
    base: &str,
) -> Result<Run> {
    let t = Instant::now();
    let (fzn_path, ozn_path) = flatten_linear(opts, model, data, deadline, dir, base)?;
    let flatten_ms = ms(t.elapsed());
    let fz = read_fzn(&fzn_path)?;
    let answer = solve_linear(opts, &fz, deadline, dir, base)?;
    let output = match &answer.assignment {
        Some(a) => map_output(opts, &fz, a, &ozn_path, deadline)?,
        None => serde_json::Value::Null,
    };
    let objective = answer
        .check
        .as_ref()
        .and_then(|c| c.objective)
        .filter(|_| answer.assignment.is_some());
    Ok(Run {
        status: answer.status,
        output,
        objective,
        stats: Stats {
            backend: opts.backend.name().into(),
            total_ms: 0,
            flatten_ms: Some(flatten_ms),
            solve_ms: answer.solve_ms,
            check_ms: Some(answer.check_ms),
            variables: Some(fz.free_vars().count() as u64),
            constraints: Some(fz.constraints.len() as u64),
            nodes: answer.solver.get("nodes").and_then(|v| v.as_f64()).map(|v| v as u64),
            peak_rss_kb: None,
            solver: answer.solver,
        },
        check: answer.check,
    })
}

/// The model's own output for an assignment: `minizinc --ozn-file` on the solution text.
fn map_output(
    opts: &SolverOptions,
    fz: &FlatZinc,
    assignment: &[Option<i64>],
    ozn: &Path,
    deadline: Instant,
) -> Result<serde_json::Value> {
    let mut text = fz.solution_text(assignment);
    text.push_str("----------\n");
    let mut cmd = Command::new(&opts.minizinc);
    cmd.arg("--ozn-file").arg(ozn);
    let done = run_process(cmd, Some(text.into_bytes()), opts, deadline, "output")?;
    let end = done.stdout.find("----------").unwrap_or(done.stdout.len());
    serde_json::from_str(&done.stdout[..end]).map_err(|e| {
        Error::MiniZinc(format!(
            "output of the solution is not JSON ({e}): {} {}",
            done.stdout.trim(),
            stderr_line(&done.stderr)
        ))
    })
}

/// MiniZinc data text fixing output variables to the values in `output` (a JSON object as the
/// JSON output mode prints it; `_`-prefixed keys such as `_objective` are skipped).
pub fn fixing_data(output: &serde_json::Value) -> Result<String> {
    let obj = output
        .as_object()
        .ok_or_else(|| Error::MiniZinc("no output to fix".into()))?;
    let mut out = String::new();
    for (name, v) in obj {
        if name.starts_with('_') {
            continue;
        }
        let text = match v {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Array(items) => {
                let flat: Option<Vec<String>> = items
                    .iter()
                    .map(|x| match x {
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        serde_json::Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    })
                    .collect();
                match flat {
                    Some(f) => format!("[{}]", f.join(", ")),
                    None => {
                        return Err(Error::MiniZinc(format!(
                            "output {name} is not a flat array of integers; cannot fix it"
                        )))
                    }
                }
            }
            _ => {
                return Err(Error::MiniZinc(format!(
                    "output {name} is not an integer; cannot fix it"
                )))
            }
        };
        out.push_str(&format!("{name} = {text};\n"));
    }
    Ok(out)
}

/// Whether `output` extends to a solution: fixes it as data, flattens with `-G linear`,
/// completes the rest with cbc and checks the full assignment. `Ok(report)` when it does;
/// an error naming the reason when it does not.
pub fn verify(
    opts: &SolverOptions,
    model: &Path,
    data: &[&Path],
    output: &serde_json::Value,
    deadline: Instant,
) -> Result<FznCheck> {
    match check_fixed(opts, model, data, &fixing_data(output)?, deadline)? {
        (Status::Optimal | Status::Satisfied, Some(report)) => Ok(report),
        (status, _) => Err(Error::MiniZinc(format!(
            "the solver's answer does not extend to a solution of the linear model ({status:?})"
        ))),
    }
}

/// MiniZinc as a solution checker: `model` + `data` + `fixed` (data fixing decision variables),
/// flattened with `-G linear`, completed by cbc, checked. Returns the status (UNSATISFIABLE
/// when the fixed values cannot be part of any solution) and the check of the assignment.
pub fn check_fixed(
    opts: &SolverOptions,
    model: &Path,
    data: &[&Path],
    fixed: &str,
    deadline: Instant,
) -> Result<(Status, Option<FznCheck>)> {
    // The completion is cbc's, whichever backend gave the answer.
    let opts = &SolverOptions {
        backend: Backend::Cbc,
        ..opts.clone()
    };
    let dir = WorkDir::new(opts)?;
    let fixed_path = dir.path.join("fixed.dzn");
    std::fs::write(&fixed_path, fixed).map_err(|e| Error::io(&fixed_path, e))?;
    let mut all: Vec<&Path> = data.to_vec();
    all.push(&fixed_path);
    let (fzn_path, _) = flatten_linear(opts, model, &all, deadline, &dir.path, "fixed")?;
    let fz = read_fzn(&fzn_path)?;
    let answer = solve_linear(opts, &fz, deadline, &dir.path, "fixed")?;
    Ok((answer.status, answer.check))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixing_data_writes_scalars_and_flat_arrays_and_refuses_the_rest() {
        let out = serde_json::json!({"x": [1, -2, 3], "y": 4, "b": true, "_objective": 9});
        assert_eq!(fixing_data(&out).unwrap(), "b = true;\nx = [1, -2, 3];\ny = 4;\n");
        assert!(fixing_data(&serde_json::json!({"m": [[1, 2], [3, 4]]})).is_err());
        assert!(fixing_data(&serde_json::Value::Null).is_err());
    }

    #[test]
    fn backends_parse_by_name() {
        assert_eq!("gecode".parse::<Backend>().unwrap(), Backend::Gecode);
        assert_eq!("cbc".parse::<Backend>().unwrap(), Backend::Cbc);
        assert!("chuffed".parse::<Backend>().is_err());
        for b in ["wasm-highs", "wasm-cbc", "wasm-chuffed", "wasm-gecode", "pumpkin"] {
            assert_eq!(b.parse::<Backend>().unwrap().name(), b);
        }
    }
}
