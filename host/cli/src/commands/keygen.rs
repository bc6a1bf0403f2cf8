//! `memzinc keygen`: a new keypair file (never over an existing one).

use std::path::PathBuf;

use anyhow::Result;
use memzinc_cli::attest;
use solana_keypair::Keypair;
use solana_signer::Signer;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: Args, _g: &Global) -> Result<()> {
    let keypair = Keypair::new();
    if a.output.exists() {
        anyhow::bail!("{} exists; refusing to overwrite a keypair", a.output.display());
    }
    attest::write_keypair(&keypair, &a.output)?;
    outln!("{}", keypair.pubkey());
    Ok(())
}
