//! `memzinc localnet`: a local Solana network (surfpool) with the attestor deployed, until
//! Ctrl-C.

use std::path::PathBuf;

use anyhow::Result;
use memzinc_cli::attest;
use solana_signer::Signer;

use super::{default_program, Global};

#[derive(clap::Args)]
pub struct Args {
    /// Write {"rpc_url","ws_url","program_id"} here once ready.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The program to deploy.
    #[arg(long)]
    program: Option<PathBuf>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    // Block the stop signals before any thread starts, then wait for one of them.
    use nix::sys::signal::{SigSet, Signal};
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block()?;
    let payer = g.keypair()?;
    let program_keypair =
        attest::read_keypair(&memzinc::base::repo_root().join("programs/attestor/attestor-keypair.json"))?;
    let net = attest::Localnet::start(&payer, &[])?;
    net.deploy(&payer, &program_keypair, &a.program.unwrap_or_else(default_program))?;
    let info = serde_json::json!({
        "rpc_url": net.rpc_url, "ws_url": net.ws_url, "program_id": program_keypair.pubkey().to_string(),
        "payer": payer.pubkey().to_string(),
    });
    if let Some(path) = a.ready_file {
        memzinc::base::write_file_atomically(&path, info.to_string().as_bytes())?;
    }
    outln!("{info}");
    let signal = stop.wait()?;
    eprintln!("localnet: {signal:?}, shutting down");
    net.stop()?;
    Ok(())
}
