//! `memzinc apply`: an attested plan applied to a live process, all or nothing, and the
//! receipt recorded on chain.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::reason::Plan;
use memzinc_cli::attest::apply_attested;

use super::{authority_or_self, Global};

#[derive(clap::Args)]
pub struct Args {
    plan: PathBuf,
    #[arg(long)]
    pid: i32,
    #[arg(long)]
    authority: Option<String>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let patch = Plan::load(&a.plan)?.patch();
    let client = g.client()?;
    let authority = authority_or_self(&client, a.authority.as_deref())?;
    let done = apply_attested(&client, &authority, a.pid, &patch)?;
    g.print(&done, |done| {
        format!(
            "applied {} writes ({} bytes) to pid {} under attestation {} (seq {}); target stopped {} µs",
            done.report.writes, done.report.bytes, a.pid, done.attestation, done.seq, done.report.stopped_us
        )
    })
}
