//! An embedded local Solana network: surfpool (the engine Anchor 1.x uses for localnet) serving
//! JSON-RPC and WebSocket on 127.0.0.1, with the attestor deployed through the real
//! upgradeable loader by ordinary transactions.

use std::path::Path;

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use surfpool_sdk::Surfnet;

use super::chain::Client;
use memzinc::base::{Error, Result};

/// A running localnet. Dropping it shuts the network down.
pub struct Localnet {
    surfnet: Surfnet,
    pub rpc_url: String,
    pub ws_url: String,
}

impl Localnet {
    /// Starts a network that funds `payer` (and `fund`) with 100 SOL each.
    pub fn start(payer: &Keypair, fund: &[Pubkey]) -> Result<Localnet> {
        // The SDK's startup uses a blocking RPC client (block_in_place): needs a multi-thread runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Localnet(e.to_string()))?;
        let surfnet = runtime
            .block_on(
                Surfnet::builder()
                    .offline(true)
                    .payer(payer.insecure_clone())
                    .airdrop_addresses(fund.to_vec())
                    .airdrop_sol(100_000_000_000)
                    .start(),
            )
            .map_err(|e| Error::Localnet(e.to_string()))?;
        Ok(Localnet {
            rpc_url: surfnet.rpc_url().to_string(),
            ws_url: surfnet.ws_url().to_string(),
            surfnet,
        })
    }

    /// Deploys the attestor's `.so` at the address of `program_keypair`.
    pub fn deploy(&self, payer: &Keypair, program_keypair: &Keypair, program_so: &Path) -> Result<()> {
        let program = std::fs::read(program_so).map_err(|e| Error::io(program_so, e))?;
        let client = Client::connect(&self.rpc_url, payer.insecure_clone(), program_keypair.pubkey())?;
        client.deploy_program(program_keypair, &program)
    }

    pub fn stop(mut self) -> Result<()> {
        self.surfnet.stop().map_err(|e| Error::Localnet(e.to_string()))
    }
}
