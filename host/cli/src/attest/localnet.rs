//! An embedded local Solana network: surfpool (the engine Anchor 1.x uses for localnet) serving
//! JSON-RPC and WebSocket on 127.0.0.1, with the attestor deployed through the real
//! upgradeable loader by ordinary transactions.
//!
//! Started from surfpool's core as its SDK starts it (offline, a block per transaction), but
//! with its instruction profiling off: surfpool profiles every transaction in a copy of its
//! whole state, keeping the last 200 profiles, which made the network take about 20
//! transactions a second when a relocation is attested in parts (measured in the README).

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use surfpool_core::surfnet::locker::SurfnetSvmLocker;
use surfpool_core::surfnet::svm::{SurfnetSvm, SurfnetSvmConfig};
use surfpool_types::{BlockProductionMode, RpcConfig, SimnetCommand, SimnetConfig, SimnetEvent, SurfpoolConfig};

use super::chain::Client;
use memzinc::base::{Error, Result};

/// What the payer and each funded address get: 1,000 SOL, more than the rent of a relocation's
/// six 10 MiB stores (about 440 SOL) and its part buffers.
const AIRDROP_LAMPORTS: u64 = 1_000_000_000_000;

/// A running localnet. Dropping it shuts the network down.
pub struct Localnet {
    commands: Sender<SimnetCommand>,
    events: Receiver<SimnetEvent>,
    stopped: bool,
    pub rpc_url: String,
    pub ws_url: String,
}

fn localnet_err(e: impl std::fmt::Display) -> Error {
    Error::Localnet(e.to_string())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(localnet_err)?;
    Ok(listener.local_addr().map_err(localnet_err)?.port())
}

impl Localnet {
    /// Starts a network that funds `payer` (and `fund`) with 1,000 SOL each.
    pub fn start(payer: &Keypair, fund: &[Pubkey]) -> Result<Localnet> {
        let (bind_port, ws_port) = (free_port()?, free_port()?);
        let host = "127.0.0.1".to_string();
        let funded: Vec<Pubkey> = std::iter::once(payer.pubkey()).chain(fund.iter().copied()).collect();
        let simnet = SimnetConfig {
            offline_mode: true,
            remote_rpc_url: None,
            slot_time: 1,
            block_production_mode: BlockProductionMode::Transaction,
            airdrop_addresses: funded.clone(),
            airdrop_token_amount: AIRDROP_LAMPORTS,
            instruction_profiling_enabled: false,
            max_profiles: 1,
            ..SimnetConfig::default()
        };
        let svm_config = SurfnetSvmConfig {
            surfnet_id: simnet.surfnet_id.clone(),
            slot_time: simnet.slot_time,
            instruction_profiling_enabled: simnet.instruction_profiling_enabled,
            max_profiles: simnet.max_profiles,
            log_bytes_limit: simnet.log_bytes_limit,
            feature_config: Default::default(),
            skip_blockhash_check: simnet.skip_blockhash_check,
        };
        let config = SurfpoolConfig {
            simnets: vec![simnet],
            rpc: RpcConfig {
                bind_host: host.clone(),
                bind_port,
                ws_port,
                ..RpcConfig::default()
            },
            ..SurfpoolConfig::default()
        };
        let (svm, events, geyser_events) = SurfnetSvm::new(svm_config).map_err(localnet_err)?;
        let (commands, command_queue) = crossbeam_channel::unbounded();
        let locker = SurfnetSvmLocker::new(svm);
        let commands_for_loop = commands.clone();
        std::thread::Builder::new()
            .name("surfnet".into())
            .spawn(move || {
                // The runloop blocks in place: it needs a multi-thread runtime.
                let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => return tracing::error!("localnet runtime: {e}"),
                };
                let run = surfpool_core::runloops::start_local_surfnet_runloop(
                    locker,
                    config,
                    commands_for_loop,
                    command_queue,
                    geyser_events,
                );
                if let Err(e) = runtime.block_on(run) {
                    tracing::error!("localnet exited: {e}");
                }
            })
            .map_err(localnet_err)?;
        let net = Localnet {
            commands,
            events,
            stopped: false,
            rpc_url: format!("http://{host}:{bind_port}"),
            ws_url: format!("ws://{host}:{ws_port}"),
        };
        net.wait_until_started()?;
        net.wait_until_funded(&funded)?;
        Ok(net)
    }

    fn wait_until_started(&self) -> Result<()> {
        loop {
            match self.events.recv() {
                Ok(SimnetEvent::CoreStarted(_)) => return Ok(()),
                Ok(SimnetEvent::Aborted(e)) => return Err(localnet_err(format!("surfpool aborted: {e}"))),
                Ok(SimnetEvent::Shutdown) => return Err(localnet_err("surfpool shut down while starting")),
                Ok(_) => continue,
                Err(e) => return Err(localnet_err(format!("surfpool's events ended while starting: {e}"))),
            }
        }
    }

    /// The airdrops are made as the network starts; they are visible over RPC a moment later.
    fn wait_until_funded(&self, funded: &[Pubkey]) -> Result<()> {
        let rpc = solana_rpc_client::rpc_client::RpcClient::new(self.rpc_url.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let balances: Vec<u64> = funded
                .iter()
                .map(|a| {
                    rpc.get_balance_with_commitment(a, CommitmentConfig::processed())
                        .map(|r| r.value)
                        .unwrap_or(0)
                })
                .collect();
            if balances.iter().all(|&b| b == AIRDROP_LAMPORTS) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(localnet_err(format!(
                    "the airdrops were not visible over RPC within 10 s: balances {balances:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Deploys the attestor's `.so` at the address of `program_keypair`.
    pub fn deploy(&self, payer: &Keypair, program_keypair: &Keypair, program_so: &Path) -> Result<()> {
        let program = std::fs::read(program_so).map_err(|e| Error::io(program_so, e))?;
        let client = Client::connect(&self.rpc_url, payer.insecure_clone(), program_keypair.pubkey())?;
        client.deploy_program(program_keypair, &program)
    }

    /// Shuts the network down and waits until both of its servers (RPC and WebSocket) stopped.
    pub fn stop(mut self) -> Result<()> {
        self.stopped = true;
        self.commands
            .send(SimnetCommand::Terminate(None))
            .map_err(|e| localnet_err(format!("cannot stop surfpool: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut shutdowns = 0;
        while shutdowns < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(SimnetEvent::Shutdown) => shutdowns += 1,
                Ok(_) => {}
                Err(_) => {
                    return Err(localnet_err(format!(
                        "surfpool did not confirm its shutdown within 5 s ({shutdowns} of 2 servers)"
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.commands.send(SimnetCommand::Terminate(None));
        }
    }
}
