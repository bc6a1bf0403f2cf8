//! `memzinc demo`: every stage once, for real, on an embedded localnet — a sample target
//! corrupts itself, memzinc snapshots it, plans the smallest repair with MiniZinc, records the
//! plan on chain, applies it, and the target's own output shows it healed; then the audit.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memzinc_verifier::accounts::PolicyConfig;
use memzinc_verifier::wire::PolicyRules;
use solana_keypair::Keypair;
use solana_signer::Signer;

use memzinc::base::{file_hash, models_hash, repo_root, Error, Result, Sha2};
use memzinc::describe::{self, Snapshot};
use memzinc::reason::{self, Plan, PlanOptions, Planner, TargetSpec};

use crate::attest::{self, apply_attested, Client, Localnet};

/// The sample target, built beside the `memzinc` binary (same cargo target directory).
pub fn healme_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", e))?;
    let dir = exe
        .parent()
        .ok_or_else(|| Error::Usage("memzinc has no parent directory".into()))?;
    // Test binaries live one level deeper, in deps/.
    for candidate in [dir.join("healme"), dir.join("../healme")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(Error::Usage(format!(
        "healme not found beside {}; run `cargo build -p healme`",
        exe.display()
    )))
}

/// A running healme whose output lines arrive on a channel; killed on drop.
pub struct Healme {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Healme {
    pub fn spawn(args: &[&str]) -> Result<Healme> {
        let mut child = Command::new(healme_path()?)
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("healme", e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Usage("healme has no stdout".into()))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Healme { child, lines })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a line containing `needle`, echoing lines to `out`.
    pub fn wait_for(&self, needle: &str, timeout: Duration, out: &mut dyn Write) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let _ = writeln!(out, "      healme | {line}");
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    return Err(Error::Usage(format!(
                        "healme printed no line with {needle:?} within {timeout:?}"
                    )))
                }
            }
        }
    }
}

impl Healme {
    /// Discards lines printed so far (while memzinc was busy), saying how many there were.
    pub fn skip_backlog(&self, out: &mut dyn Write) {
        let backlog: Vec<String> = self.lines.try_iter().collect();
        if let Some(last) = backlog.last() {
            let _ = writeln!(
                out,
                "      healme | ({} lines while memzinc worked; the last: {last})",
                backlog.len()
            );
        }
    }
}

impl Drop for Healme {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Stage<'a> {
    out: &'a mut dyn Write,
    started: Instant,
    number: usize,
}

impl Stage<'_> {
    fn step(&mut self, name: &str, what: &str) -> Instant {
        self.number += 1;
        let _ = writeln!(self.out, "[{}] {name:<9} {what}", self.number);
        Instant::now()
    }
    fn done(&mut self, since: Instant, result: &str) {
        let _ = writeln!(
            self.out,
            "    {:>7.1} ms  {result}",
            since.elapsed().as_secs_f64() * 1e3
        );
    }
}

pub fn run(program_so: &Path, out: &mut dyn Write) -> Result<()> {
    let root = repo_root();
    let work = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let mut s = Stage {
        out,
        started: Instant::now(),
        number: 0,
    };

    let t = s.step(
        "localnet",
        "start surfpool on 127.0.0.1 and deploy the attestor through the upgradeable loader",
    );
    let authority = Keypair::new();
    // The snapshot witness: a second key on the same machine. The policy takes snapshot roots
    // only on its word, so the planner (the authority here) cannot pick its own.
    let witness = Keypair::new();
    let program_keypair = attest::read_keypair(&root.join("programs/attestor/attestor-keypair.json"))?;
    let net = Localnet::start(&authority, &[])?;
    net.deploy(&authority, &program_keypair, program_so)?;
    let client = Client::connect(&net.rpc_url, authority.insecure_clone(), program_keypair.pubkey())?;
    let config = PolicyConfig {
        rules: PolicyRules {
            wx: true,
            max_bytes: 64,
            max_writes: 8,
            max_moves: 0,
        },
        signer_count: 0,
        signers: [[0; 32]; memzinc_verifier::accounts::MAX_SIGNERS],
        witness_count: 1,
        witnesses: [witness.pubkey().to_bytes(), [0; 32], [0; 32], [0; 32]],
        witness_threshold: 1,
        // About ten minutes of slots: the snapshot, the plan and the attest are one sitting.
        max_snapshot_age: 1500,
        model_hash: models_hash(&root.join("models"))?,
        verifier_hash: file_hash(program_so)?,
        symbol_rules: Default::default(),
    };
    let (policy, _) = client.initialize_policy(&config)?;
    s.done(
        t,
        &format!(
            "RPC {}  program {}  policy {policy} (W^X, <= 64 bytes, <= 8 writes, snapshots witnessed by {})",
            net.rpc_url,
            program_keypair.pubkey(),
            witness.pubkey()
        ),
    );

    let t = s.step(
        "target",
        "start healme; at tick 5 a stray write corrupts its thermostat state",
    );
    let healme = Healme::spawn(&["--corrupt-at", "5", "--period-ms", "100"])?;
    healme.wait_for("status=ok", Duration::from_secs(10), s.out)?;
    healme.wait_for("OVERHEAT", Duration::from_secs(10), s.out)?;
    s.done(t, &format!("pid {} is misbehaving", healme.pid()));

    let t = s.step(
        "snapshot",
        "freeze every thread, read registers, map, symbols and pages into one ELF core (gdb opens it), hash the pages into a Merkle root; the witness key records the root on chain",
    );
    let snap_path = work.path().join("healme.core");
    let report = describe::take(healme.pid(), &snap_path, None)?;
    let spec = TargetSpec::load(&root.join("models/targets/healme.json"))?;
    let target_id = memzinc_verifier::hash::target_id::<Sha2>(spec.target.as_bytes());
    client.witness(&witness, &target_id, &Snapshot::open(&snap_path)?.root())?;
    s.done(
        t,
        &format!(
            "{} pages, {} symbols, root {}",
            report.pages,
            report.symbols,
            &report.root[..16]
        ),
    );

    let t = s.step(
        "plan",
        "check invariants, then let MiniZinc (Gecode) find the fewest bytes to change",
    );
    let snap = Snapshot::open(&snap_path)?;
    let plan_path = work.path().join("healme.plan.json");
    let planner = Planner {
        spec: Some(spec.clone()),
        ..Planner::default()
    };
    let plan = reason::plan(&snap, &planner, &PlanOptions::new(&root.join("models")), &plan_path)?;
    plan.save(&plan_path)?;
    for f in &plan.findings {
        let _ = writeln!(s.out, "      violation {}: {}", f.location(), f.detail);
    }
    for w in &plan.writes {
        let _ = writeln!(
            s.out,
            "      write {:#x} {} {} -> {}",
            w.address,
            w.field,
            hex::encode(&w.old),
            hex::encode(&w.new)
        );
    }
    s.done(
        t,
        &format!(
            "{} writes, {} bytes, {}",
            plan.writes.len(),
            plan.changed_bytes(),
            plan.status()
        ),
    );

    // What attest and apply read: the plan file, as a user's `memzinc attest`/`apply` would.
    let plan = Plan::load(&plan_path)?;
    let (patch, submission) = (plan.patch(), plan.submission()?);
    let me = authority.pubkey();
    let t = s.step("refuse", "apply before attesting: memzinc must refuse");
    match apply_attested(&client, &me, healme.pid(), &patch) {
        Err(e @ Error::NotAttested { .. }) => s.done(t, &format!("refused: {e}")),
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::Usage("apply went ahead without an attestation".into())),
    }

    let t = s.step(
        "attest",
        "upload plan + Merkle evidence; the program re-checks both in the sBPF VM and chains a record",
    );
    let outcome = client.attest(&me, &submission)?;
    s.done(
        t,
        &format!(
            "attestation {} seq {} ({} upload transactions)",
            outcome.attestation, outcome.seq, outcome.upload_transactions
        ),
    );

    healme.skip_backlog(s.out);
    let t = s.step(
        "apply",
        "stop all threads, compare old bytes, write, read back, resume, record a receipt",
    );
    let applied = apply_attested(&client, &me, healme.pid(), &patch)?.report;
    s.done(
        t,
        &format!(
            "{} bytes written; target stopped {} µs; receipt recorded",
            applied.bytes, applied.stopped_us
        ),
    );

    let t = s.step("healed", "the target's own output, after the patch");
    // Skip lines printed before the write, then require healthy ticks.
    healme.wait_for("status=ok", Duration::from_secs(10), s.out)?;
    healme.wait_for("status=ok", Duration::from_secs(10), s.out)?;
    s.done(t, "status=ok again: the thermostat is back within its invariants");

    let t = s.step("audit", "walk the target's attestation chain and verify every link");
    let audit = client.audit(&authority.pubkey(), &target_id)?;
    s.done(
        t,
        &format!(
            "{} attestation(s), chain verified, head {}",
            audit.entries.len(),
            &audit.head_hash[..16]
        ),
    );

    let t = s.step(
        "replay",
        "run the deployed program's bytes again in the sBPF VM on the kept plan file",
    );
    let local = std::fs::read(program_so).map_err(|e| Error::io(program_so, e))?;
    let replay = attest::replay_history(&client, &me, &target_id, &[submission], Some(&local))?;
    if !replay.verified(false) {
        return Err(Error::AuditFailed {
            target: spec.target.clone(),
            why: format!("replay: {:?}", replay.decisions),
        });
    }
    s.done(
        t,
        &format!(
            "deployed program = reproducible build (sha256 {}…); {} of {} decision(s) identical",
            &replay.program.deployed_sha256[..16],
            replay.identical,
            replay.replayed
        ),
    );

    drop(healme);
    net.stop()?;
    let total = s.started.elapsed();
    let _ = writeln!(
        s.out,
        "demo complete in {:.2} s: corrupted, planned, attested, applied, healed, audited, replayed",
        total.as_secs_f64()
    );
    Ok(())
}
