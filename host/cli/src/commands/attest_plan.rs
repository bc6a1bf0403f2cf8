//! `memzinc attest`: a plan uploaded with its evidence; the program re-checks it and records it.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::describe::Snapshot;
use memzinc::reason::Plan;
use memzinc_cli::attest;

use super::{authority_or_self, Global};

#[derive(clap::Args)]
pub struct Args {
    plan: PathBuf,
    /// The policy's authority, when the keypair is one of its host signers.
    #[arg(long)]
    authority: Option<String>,
    /// The plan's snapshot: when the policy has symbol rules, the evidence is cut again
    /// with proofs of the symbols they name.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Attest a relocation in parts (its slot table, then parts each within an estimated
    /// 1,100,000 compute units and of at most MAX_SLOTS slots when given, then the finish)
    /// even when it fits one submission; a relocation that does not fit always is.
    #[arg(long, value_name = "MAX_SLOTS", num_args = 0..=1)]
    in_parts: Option<Option<usize>>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let mut submission = Plan::load(&a.plan)?.submission()?;
    let client = g.client()?;
    let authority = authority_or_self(&client, a.authority.as_deref())?;
    if let Some(path) = a.snapshot {
        let policy = client.policy(&authority)?;
        submission.evidence = attest::evidence_under(
            &Snapshot::open(&path)?,
            &submission.plan,
            policy.as_ref().map(|p| &p.config),
        )?;
    }
    let outcome = client.attest_as(&authority, &submission, a.in_parts)?;
    g.print(&outcome, |outcome| {
        format!(
            "attestation {} (seq {}, plan {}){}",
            outcome.attestation,
            outcome.seq,
            outcome.plan_hash,
            outcome
                .signature
                .as_ref()
                .map(|s| format!(" signature {s}"))
                .unwrap_or(" (already attested)".into())
        )
    })
}
