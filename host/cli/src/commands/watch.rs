//! `memzinc watch`: snapshot, check, plan, attest, apply every period, until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use memzinc_cli::watch::{parse_duration, watch, WatchEvent, WatchOptions};

use super::plan::{options, PlannerArgs};
use super::{authority_or_self, Global};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    #[command(flatten)]
    planner: PlannerArgs,
    /// Period: 5s, 500ms, 2m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    every: Duration,
    /// The snapshot witness keypair (named by the policy; not the -k keypair): each round's
    /// snapshot root is recorded on chain under it before the plan is attested.
    #[arg(long)]
    witness: Option<std::path::PathBuf>,
    /// Plan repairs but never attest or apply them.
    #[arg(long)]
    dry_run: bool,
    /// At most this many repairs applied per `--per` window.
    #[arg(long, default_value_t = 3)]
    max_applies: usize,
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    per: Duration,
    /// Stop after this many rounds (default: until Ctrl-C).
    #[arg(long)]
    rounds: Option<u64>,
    /// Where each round's snapshot, facts and plan go.
    #[arg(long, default_value = "memzinc-watch")]
    workdir: PathBuf,
    /// Solver backend, as for `plan`.
    #[arg(long, default_value = "cbc")]
    solver: String,
    /// Wall-clock limit per solve, seconds.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    #[arg(long)]
    authority: Option<String>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let plan = options(&a.solver, a.time_limit)?;
    let cancel = plan
        .solver
        .cancel
        .clone()
        .context("plan options without a cancel token")?;
    let opts = WatchOptions {
        pid: a.pid,
        every: a.every,
        planner: a.planner.planner()?,
        plan,
        dry_run: a.dry_run,
        max_applies: a.max_applies,
        per: a.per,
        rounds: a.rounds,
        workdir: a.workdir,
        cancel,
        witness: a
            .witness
            .as_deref()
            .map(memzinc_cli::attest::read_keypair)
            .transpose()?,
    };
    if !a.dry_run && opts.witness.is_none() {
        anyhow::bail!("watch without --dry-run needs --witness KEYPAIR: each round's snapshot root is recorded under it before its plan is attested");
    }
    let client = if a.dry_run { None } else { Some(g.client()?) };
    let authority = client
        .as_ref()
        .map(|c| authority_or_self(c, a.authority.as_deref()))
        .transpose()?;
    let chain = client.as_ref().zip(authority.as_ref());
    let json = g.json;
    let summary = watch(&opts, chain, |event| {
        if json {
            outln!("{}", serde_json::to_string(event).unwrap_or_default());
        } else {
            match event {
                WatchEvent::Healthy { round, root, .. } => {
                    outln!("round {round}: healthy, root {root}")
                }
                WatchEvent::Planned {
                    round,
                    violations,
                    writes,
                    plan,
                    dry_run,
                    ..
                } => outln!(
                    "round {round}: {} violation(s): {}; plan {} ({writes} writes){}",
                    violations.len(),
                    violations.join("; "),
                    plan.display(),
                    if *dry_run { ", dry run: not applied" } else { "" }
                ),
                WatchEvent::RateLimited { round, applied_recently } => outln!(
                    "round {round}: not applied, {applied_recently} repair(s) applied within --per already"
                ),
                WatchEvent::Applied {
                    round,
                    attestation,
                    seq,
                    writes,
                    stopped_us,
                } => outln!(
                    "round {round}: applied {writes} writes under attestation {attestation} (seq {seq}); target stopped {stopped_us} µs"
                ),
            }
        }
    })?;
    if json {
        outln!("{}", serde_json::to_string(&summary)?);
    } else {
        outln!(
            "watch {}: {} rounds, {} repairs planned, {} applied",
            if summary.cancelled { "stopped" } else { "done" },
            summary.rounds,
            summary.repairs_planned,
            summary.repairs_applied
        );
    }
    Ok(())
}
