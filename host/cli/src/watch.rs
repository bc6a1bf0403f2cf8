//! The self-modification loop (`memzinc watch`): every period, snapshot the target, judge it
//! with its planner (a spec, a model file's rules, the exported heap: `reason::plan`, the one
//! entry point `memzinc plan` uses too), and on a finding plan the smallest repair with
//! MiniZinc, attest it on chain and apply it — the same steps as `snapshot`, `plan`, `attest`,
//! `apply`, one definition each. `--dry-run` stops at the plan. Applies are rate-limited (at most `max_applies` per
//! `per`), and a cancel token (Ctrl-C) stops the loop between steps and kills a running solver.
//!
//! When the target is tracked (`memzinc track`), each round's snapshot is incremental, since
//! the previous round's.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use solana_pubkey::Pubkey;

use memzinc::base::{Error, Result};
use memzinc::describe::{self, Snapshot};
use memzinc::reason::solver::Cancel;
use memzinc::reason::{self, PlanOptions, Planner};

use crate::attest::{apply_attested, Client};

pub struct WatchOptions {
    pub pid: i32,
    pub every: Duration,
    /// What each round's snapshot is judged and repaired by.
    pub planner: Planner,
    pub plan: PlanOptions,
    /// Plan but never attest or apply.
    pub dry_run: bool,
    pub max_applies: usize,
    pub per: Duration,
    /// Stop after this many rounds (None: until cancelled).
    pub rounds: Option<u64>,
    /// Where the round's core, facts and plan files go (the last round's are kept; a plan
    /// file per round that planned).
    pub workdir: PathBuf,
    pub cancel: Arc<Cancel>,
    /// The snapshot witness key: each round's root is recorded on chain under it before the
    /// plan is attested (the policy must name it). Needed unless `dry_run`.
    pub witness: Option<solana_keypair::Keypair>,
}

/// What one round found and did.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    Healthy {
        round: u64,
        root: String,
        pages_from_target: u64,
    },
    /// Violations found and a repair planned; `dry_run` says whether it stops here.
    Planned {
        round: u64,
        violations: Vec<String>,
        writes: usize,
        changed_bytes: u64,
        plan: PathBuf,
        dry_run: bool,
    },
    /// A planned repair not applied because `max_applies` were applied in the last `per`.
    RateLimited { round: u64, applied_recently: usize },
    Applied {
        round: u64,
        attestation: String,
        seq: u64,
        writes: usize,
        stopped_us: u128,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct WatchSummary {
    pub rounds: u64,
    pub repairs_planned: u64,
    pub repairs_applied: u64,
    pub cancelled: bool,
}

/// Runs the loop until `opts.rounds` or cancellation. `chain` is needed unless `dry_run`.
pub fn watch(
    opts: &WatchOptions,
    chain: Option<(&Client, &Pubkey)>,
    mut on_event: impl FnMut(&WatchEvent),
) -> Result<WatchSummary> {
    if !opts.dry_run && chain.is_none() {
        return Err(Error::Usage(
            "watch without --dry-run needs a chain to attest on".into(),
        ));
    }
    std::fs::create_dir_all(&opts.workdir).map_err(|e| Error::io(&opts.workdir, e))?;
    let mut summary = WatchSummary::default();
    let mut applied: VecDeque<Instant> = VecDeque::new();
    let mut prev: Option<PathBuf> = None;
    loop {
        if opts.cancel.is_cancelled() {
            summary.cancelled = true;
            return Ok(summary);
        }
        let round = summary.rounds;
        let started = Instant::now();
        let core = opts.workdir.join(format!("round-{}.core", round % 2));
        let report = take(opts.pid, prev.as_deref(), &core)?;
        prev = Some(core.clone());
        let snap = Snapshot::open(&core)?;
        let plan = match reason::plan(&snap, &opts.planner, &opts.plan, &opts.workdir.join("facts")) {
            Ok(plan) => plan,
            // Ctrl-C during a solve is the same clean stop as Ctrl-C between rounds.
            Err(Error::Cancelled(_)) if opts.cancel.is_cancelled() => {
                summary.cancelled = true;
                return Ok(summary);
            }
            Err(e) => return Err(e),
        };
        if plan.findings.is_empty() {
            on_event(&WatchEvent::Healthy {
                round,
                root: report.root,
                pages_from_target: report.pages_from_target,
            });
        } else {
            let plan_path = opts.workdir.join(format!("round-{round}.plan.json"));
            plan.save(&plan_path)?;
            summary.repairs_planned += 1;
            on_event(&WatchEvent::Planned {
                round,
                violations: plan
                    .findings
                    .iter()
                    .map(|f| format!("{}: {}", f.location(), f.detail))
                    .collect(),
                writes: plan.writes.len(),
                changed_bytes: plan.changed_bytes(),
                plan: plan_path.clone(),
                dry_run: opts.dry_run,
            });
            if let (false, Some((client, authority))) = (opts.dry_run, chain) {
                while applied.front().is_some_and(|t| t.elapsed() > opts.per) {
                    applied.pop_front();
                }
                if applied.len() >= opts.max_applies {
                    on_event(&WatchEvent::RateLimited {
                        round,
                        applied_recently: applied.len(),
                    });
                } else if !opts.cancel.is_cancelled() && !plan.writes.is_empty() {
                    // This round's snapshot, taken by this process, is witnessed under the
                    // witness key: the second key of a single-machine setup.
                    let witness = opts
                        .witness
                        .as_ref()
                        .ok_or_else(|| Error::Usage("watch needs a snapshot witness key to attest".into()))?;
                    client.witness(witness, &plan.target_id, &snap.root())?;
                    client.attest(authority, &plan.submission()?)?;
                    let done = apply_attested(client, authority, opts.pid, &plan.patch())?;
                    applied.push_back(Instant::now());
                    summary.repairs_applied += 1;
                    on_event(&WatchEvent::Applied {
                        round,
                        attestation: done.attestation.to_string(),
                        seq: done.seq,
                        writes: done.report.writes,
                        stopped_us: done.report.stopped_us,
                    });
                }
            }
        }
        summary.rounds += 1;
        if opts.rounds.is_some_and(|n| summary.rounds >= n) {
            return Ok(summary);
        }
        // Sleep out the period in slices, so Ctrl-C stops promptly.
        while started.elapsed() < opts.every && !opts.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(20).min(opts.every.saturating_sub(started.elapsed())));
        }
    }
}

/// This round's snapshot: incremental since the last round's when the target is tracked and
/// that one was its latest.
fn take(pid: i32, prev: Option<&Path>, out: &Path) -> Result<describe::TakeReport> {
    let state = describe::load_tracking(pid)?;
    let mut since = match (prev, state) {
        (Some(p), Some(state)) => {
            let prev = describe::open_since(pid, p, true)?;
            (state.last_root.as_deref() == Some(prev.meta.root.as_str())).then_some(prev)
        }
        _ => None,
    };
    // Each round's core is a full one: the loop plans on it and keeps only the latest.
    describe::take_since(pid, since.as_mut().map(describe::Since::Copy), out, None)
}

/// `5s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (5s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
