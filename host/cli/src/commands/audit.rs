//! `memzinc audit`: a target's attestation history walked and every link verified; decisions
//! replayed in the sBPF VM; the timeline as Parquet and an HTML report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use memzinc::base::Sha2;
use memzinc::reason::Plan;
use memzinc_cli::{attest, interop};

use super::{authority_or_self, default_program, print_json, Global};

#[derive(clap::Args)]
pub struct Args {
    /// Target name as in the plan (e.g. healme).
    #[arg(long)]
    target: String,
    #[arg(long)]
    authority: Option<String>,
    /// Replay every decision whose plan file (`*.plan.json`) is in this directory: the
    /// deployed program's bytes run again in the sBPF VM and must produce the same record.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// With --replay: succeed although some decisions on chain have no plan file (they are
    /// still counted as missing).
    #[arg(long, requires = "replay")]
    allow_missing: bool,
    /// The local reproducible build to compare the deployed program with.
    #[arg(long)]
    program: Option<PathBuf>,
    /// Write the decision timeline as a Parquet table.
    #[arg(long)]
    parquet: Option<PathBuf>,
    /// Write an HTML report (memory maps of the patches, timeline, replay verdicts).
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let client = g.client()?;
    let authority = authority_or_self(&client, a.authority.as_deref())?;
    let target_id = memzinc_verifier::hash::target_id::<Sha2>(a.target.as_bytes());
    let report = client.audit(&authority, &target_id)?;
    let mut plans = Vec::new();
    if let Some(dir) = &a.replay {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".plan.json") {
                plans.push(Plan::load(&path)?.submission()?);
            }
        }
    }
    let replayed = match a.replay {
        None => None,
        Some(_) => {
            let local = std::fs::read(a.program.unwrap_or_else(default_program)).ok();
            Some(attest::replay_history(
                &client,
                &authority,
                &target_id,
                &plans,
                local.as_deref(),
            )?)
        }
    };
    if let Some(path) = &a.parquet {
        interop::write_timeline_parquet(&report, path)?;
    }
    if let Some(path) = &a.report {
        let page = interop::html(&report, replayed.as_ref(), &plans, &a.target);
        memzinc::base::write_file_atomically(path, page.as_bytes())?;
    }
    if g.json {
        let mut value = serde_json::to_value(&report)?;
        value["replay"] = serde_json::to_value(&replayed)?;
        print_json(&value)?;
    } else {
        outln!(
            "target {} ({}), chain {}",
            a.target,
            report.target_id,
            report.target_chain
        );
        for e in &report.entries {
            outln!(
                "  #{} slot {} plan {} writes {} bytes {} by {}{}",
                e.seq,
                e.slot,
                &e.plan_hash[..16],
                e.writes,
                e.bytes,
                e.signer,
                if e.revoked { " (revoked)" } else { "" }
            );
            outln!(
                "     policy revision {} config {}; snapshot {} witnessed by {}",
                e.policy_revision,
                &e.policy_hash[..16],
                &e.snapshot_root[..16],
                e.witnesses
                    .iter()
                    .map(|w| format!("{} (slot {})", w.witness, w.slot))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        outln!(
            "{} attestations, every link verified; head {}",
            report.entries.len(),
            report.head_hash
        );
        if let Some(r) = &replayed {
            outln!(
                "deployed program sha256 {} {}",
                r.program.deployed_sha256,
                if r.program.matches_local_build {
                    "= the local reproducible build"
                } else {
                    "DIFFERS from the local build"
                }
            );
            for d in &r.decisions {
                let refreshed = match d.refreshed_witness_records {
                    0 => String::new(),
                    n => format!(" ({n} witness record(s) refreshed since, replayed at the recorded slot)"),
                };
                outln!(
                    "  replay #{} plan {}: {}{refreshed}",
                    d.seq,
                    &d.plan_hash[..16],
                    d.verdict
                );
            }
            outln!(
                "{} of {} replayed decisions identical ({:.0}/s); {} of {} on chain not replayed",
                r.identical,
                r.replayed,
                r.decisions_per_second,
                r.missing,
                r.decisions.len()
            );
        }
    }
    if let Some(r) = &replayed {
        if r.missing > 0 && !a.allow_missing {
            anyhow::bail!(
                "audit of {}: {} of {} decisions on chain could not be replayed (no plan file or a changed policy); --allow-missing accepts that",
                a.target,
                r.missing,
                r.decisions.len()
            );
        }
        if !r.verified(a.allow_missing) {
            anyhow::bail!(
                "audit of {}: the replay did not reproduce every decision with the audited program",
                a.target
            );
        }
    }
    Ok(())
}
