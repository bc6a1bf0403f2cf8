//! One file per command: its arguments, the library calls it makes, what it prints. What
//! several commands share — the global Solana-CLI-style options and the RPC client they give,
//! JSON output, progress bars — is here.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use memzinc_cli::attest::{self, Client};
use serde::Serialize;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;

pub mod apply;
pub mod attest_plan;
pub mod audit;
pub mod check;
pub mod checkpoint;
pub mod demo;
pub mod export;
pub mod hub;
pub mod import;
pub mod inspect;
pub mod keygen;
pub mod layout;
pub mod localnet;
pub mod merge;
pub mod plan;
pub mod policy;
pub mod restore;
pub mod revoke;
pub mod snapshot;
pub mod track;
pub mod watch;

/// Options every command takes, as the Solana CLI spells them.
#[derive(Args, Clone)]
pub struct Global {
    /// JSON-RPC URL or moniker (localhost, devnet, testnet, mainnet-beta); default from the Solana CLI config.
    #[arg(short = 'u', long = "url", global = true)]
    pub url: Option<String>,
    /// Keypair file that signs and pays; default from the Solana CLI config.
    #[arg(short = 'k', long = "keypair", global = true)]
    pub keypair: Option<PathBuf>,
    /// Solana CLI config file.
    #[arg(short = 'C', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// The attestor program's address.
    #[arg(long, global = true, default_value = attest::ATTESTOR_PROGRAM_ID)]
    pub program_id: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    fn cli_config(&self) -> attest::CliConfig {
        self.config
            .clone()
            .or_else(attest::default_cli_config_path)
            .map(|p| attest::read_cli_config(&p))
            .unwrap_or_default()
    }

    pub fn keypair(&self) -> Result<Keypair> {
        let path = self
            .keypair
            .clone()
            .or_else(|| self.cli_config().keypair_path)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/solana/id.json")))
            .context("no keypair: pass -k FILE")?;
        Ok(attest::read_keypair(&path)?)
    }

    pub fn client(&self) -> Result<Client> {
        let url = self
            .url
            .clone()
            .or_else(|| self.cli_config().json_rpc_url)
            .unwrap_or_else(|| "localhost".into());
        let program_id = self
            .program_id
            .parse()
            .map_err(|_| anyhow::anyhow!("--program-id {} is not a valid address", self.program_id))?;
        Ok(Client::connect(&url, self.keypair()?, program_id)?)
    }

    /// Records the root of the core at `core` on chain for `target`, signed by the snapshot
    /// witness whose keypair is at `key` (`snapshot`/`checkpoint --witness`).
    pub fn witness(&self, key: &std::path::Path, target: &str, core: &std::path::Path) -> Result<()> {
        let witness = attest::read_keypair(key)?;
        let target_id = memzinc_verifier::hash::target_id::<memzinc::base::Sha2>(target.as_bytes());
        let root = memzinc::describe::Snapshot::open(core)?.root();
        self.client()?.witness(&witness, &target_id, &root)?;
        Ok(())
    }

    /// `value` as pretty JSON with `--json`, else the line(s) `text` makes of it.
    pub fn print<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        if self.json {
            return print_json(value);
        }
        outln!("{}", text(value));
        Ok(())
    }
}

/// A command's outcome that is not an error but still not success: `check` finding violations
/// exits 2. `main` exits with the code and prints nothing more.
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

pub fn print_json(value: &impl Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `--authority`, or the keypair's own key.
pub fn authority_or_self(client: &Client, authority: Option<&str>) -> Result<Pubkey> {
    match authority {
        Some(a) => a
            .parse()
            .map_err(|_| anyhow::anyhow!("--authority {a} is not a valid address")),
        None => Ok(client.authority()),
    }
}

/// The attestor program file: `$MEMZINC_PROGRAM_SO`, else the checkout's reproducible build.
pub fn default_program() -> PathBuf {
    std::env::var_os("MEMZINC_PROGRAM_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|| memzinc::base::repo_root().join("target/deploy/attestor.so"))
}

/// `models/` of the checkout (or `$MEMZINC_ROOT`).
pub fn models_dir() -> PathBuf {
    memzinc::base::repo_root().join("models")
}

/// A progress bar on a terminal, none in JSON mode or when stderr is not a terminal.
pub fn progress_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}
