//! `memzinc policy`: the signer's policy on chain — created, updated (signers rotated), shown,
//! closed.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use memzinc_cli::attest;
use memzinc_verifier::accounts::{PolicyConfig, MAX_SIGNERS, MAX_WITNESSES};
use memzinc_verifier::wire::{PolicyRules, SymbolRules};
use solana_pubkey::Pubkey;

use super::{default_program, models_dir, print_json, Global};

#[derive(Args)]
pub struct PolicyCommand {
    #[command(subcommand)]
    action: PolicyAction,
}

#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// Allow writes into executable regions (W^X off).
    #[arg(long)]
    allow_wx: bool,
    #[arg(long, default_value_t = 256)]
    max_bytes: u32,
    #[arg(long, default_value_t = 16)]
    max_writes: u32,
    /// Most objects one relocation (`plan --relocate`) may move; 0, the default, refuses
    /// relocations.
    #[arg(long, default_value_t = 0)]
    max_moves: u32,
    /// A host signer allowed to attest and record receipts besides the authority (up to 4).
    #[arg(long = "signer")]
    signers: Vec<String>,
    /// A snapshot witness (1 to 4; not the authority or a host signer): plans are attested only
    /// against snapshot roots the witnesses recorded (`memzinc snapshot --witness`).
    #[arg(long = "witness", required = true)]
    witnesses: Vec<String>,
    /// How many distinct witnesses must have recorded a plan's snapshot root.
    #[arg(long, default_value_t = 1)]
    witnesses_required: u8,
    /// How old, in slots, a witnessed snapshot may be when a plan is attested against it.
    #[arg(long, default_value_t = 9000)]
    max_snapshot_age: u64,
    /// SHA-256 of the MiniZinc models plans are made with; default: the hash of models/*.mzn.
    #[arg(long)]
    model_hash: Option<String>,
    /// SHA-256 of the verifier build; default: the hash of the attestor program file.
    #[arg(long)]
    verifier_hash: Option<String>,
    /// Allow writes only in these ranges, relative to a symbol: MODULE:SYMBOL+START..END
    /// (with --field/--pointer: at most 8 rules; with any, writes outside all are refused).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// A typed field whose new value must be in bounds: MODULE:SYMBOL+OFFSET:TYPE=MIN..MAX
    /// (TYPE u8, u16, u32, u64, i8, i16, i32, i64); also an allowed range.
    #[arg(long = "field")]
    fields: Vec<String>,
    /// A pointer field whose new value must point into a readable region the plan proves:
    /// MODULE:SYMBOL+OFFSET; also an allowed range.
    #[arg(long = "pointer")]
    pointers: Vec<String>,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Create the signer's policy, or reopen it at its next revision if it was closed.
    Init(PolicyArgs),
    /// Replace the policy's rules, signers and hashes (rotating signers is an update).
    Update(PolicyArgs),
    /// Show the signer's policy.
    Show,
    /// Close the policy: nothing more is attested under it, and its attestations may no longer
    /// be applied (also after reopening it). The account stays, so revisions are never reused.
    Close,
}

fn parse_hash(hex_str: &str, what: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).map_err(|e| anyhow::anyhow!("{what} {hex_str:?}: {e}"))?;
    Ok(out)
}

impl PolicyArgs {
    fn config(&self) -> Result<PolicyConfig> {
        let rules = PolicyRules {
            wx: !self.allow_wx,
            max_bytes: self.max_bytes,
            max_writes: self.max_writes,
            max_moves: self.max_moves,
        };
        rules.validate()?;
        if self.signers.len() > MAX_SIGNERS {
            anyhow::bail!("at most {MAX_SIGNERS} --signer");
        }
        let mut signers = [[0u8; 32]; MAX_SIGNERS];
        for (slot, s) in signers.iter_mut().zip(&self.signers) {
            let key: Pubkey = s
                .parse()
                .map_err(|_| anyhow::anyhow!("--signer {s} is not a valid address"))?;
            *slot = key.to_bytes();
        }
        if self.witnesses.len() > MAX_WITNESSES {
            anyhow::bail!("at most {MAX_WITNESSES} --witness");
        }
        let mut witnesses = [[0u8; 32]; MAX_WITNESSES];
        for (slot, w) in witnesses.iter_mut().zip(&self.witnesses) {
            let key: Pubkey = w
                .parse()
                .map_err(|_| anyhow::anyhow!("--witness {w} is not a valid address"))?;
            *slot = key.to_bytes();
        }
        let model_hash = match &self.model_hash {
            Some(h) => parse_hash(h, "--model-hash")?,
            None => memzinc::base::models_hash(&models_dir())?,
        };
        let verifier_hash = match &self.verifier_hash {
            Some(h) => parse_hash(h, "--verifier-hash")?,
            None => memzinc::base::file_hash(&default_program())?,
        };
        let symbol_rules = self
            .allow
            .iter()
            .map(|s| attest::parse_allow(s))
            .chain(self.fields.iter().map(|s| attest::parse_field(s)))
            .chain(self.pointers.iter().map(|s| attest::parse_pointer(s)))
            .collect::<memzinc::base::Result<Vec<_>>>()?;
        Ok(PolicyConfig {
            rules,
            signer_count: self.signers.len() as u8,
            signers,
            witness_count: self.witnesses.len() as u8,
            witnesses,
            witness_threshold: self.witnesses_required,
            max_snapshot_age: self.max_snapshot_age,
            model_hash,
            verifier_hash,
            symbol_rules: SymbolRules::from_rules(&symbol_rules)?,
        })
    }
}

pub fn run(a: PolicyCommand, g: &Global) -> Result<()> {
    let client = g.client()?;
    let authority = client.authority();
    let address = attest::policy_address(&client.program_id, &authority);
    match a.action {
        PolicyAction::Init(args) => {
            let (address, signature) = client.initialize_policy(&args.config()?)?;
            if g.json {
                print_json(
                    &serde_json::json!({"policy": address.to_string(), "signature": signature.map(|s| s.to_string())}),
                )?;
            } else {
                outln!(
                    "policy {address}{}",
                    signature
                        .map(|s| format!(" (signature {s})"))
                        .unwrap_or(" (already existed)".into())
                );
            }
        }
        PolicyAction::Update(args) => {
            let signature = client.update_policy(&args.config()?)?;
            if g.json {
                print_json(&serde_json::json!({"policy": address.to_string(), "signature": signature.to_string()}))?;
            } else {
                outln!("policy {address} updated (signature {signature})");
            }
        }
        PolicyAction::Close => {
            let signature = client.close_policy()?;
            if g.json {
                print_json(&serde_json::json!({"policy": address.to_string(), "signature": signature.to_string()}))?;
            } else {
                outln!("policy {address} closed (signature {signature})");
            }
        }
        PolicyAction::Show => {
            let policy = client.policy(&authority)?.context("no policy for this keypair")?;
            let c = &policy.config;
            let value = serde_json::json!({
                "policy": address.to_string(), "authority": authority.to_string(), "revision": policy.revision,
                "wx": c.rules.wx, "max_bytes": c.rules.max_bytes, "max_writes": c.rules.max_writes, "max_moves": c.rules.max_moves,
                "signers": c.allowed_signers().iter().map(|k| Pubkey::from(*k).to_string()).collect::<Vec<_>>(),
                "witnesses": c.snapshot_witnesses().iter().map(|k| Pubkey::from(*k).to_string()).collect::<Vec<_>>(),
                "witnesses_required": c.witness_threshold, "max_snapshot_age": c.max_snapshot_age,
                "opened_revision": policy.opened_revision, "closed": policy.closed,
                "config_hash": hex::encode(policy.config_hash),
                "model_hash": hex::encode(c.model_hash), "verifier_hash": hex::encode(c.verifier_hash),
                "symbol_rules": attest::show_rules(c),
            });
            if g.json {
                print_json(&value)?;
            } else {
                outln!("{}", serde_json::to_string_pretty(&value)?);
            }
        }
    }
    Ok(())
}
