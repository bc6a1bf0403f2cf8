//! `memzinc revoke`: the policy authority withdraws a decision; it must then not be applied.

use anyhow::Result;
use memzinc::base::Sha2;

use super::{print_json, Global};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    target: String,
    #[arg(long)]
    seq: u64,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let client = g.client()?;
    let target_id = memzinc_verifier::hash::target_id::<Sha2>(a.target.as_bytes());
    let signature = client.revoke(&target_id, a.seq)?;
    if g.json {
        print_json(&serde_json::json!({"target": a.target, "seq": a.seq, "signature": signature.to_string()}))?;
    } else {
        outln!("attestation #{} of {} revoked (signature {signature})", a.seq, a.target);
    }
    Ok(())
}
