//! Stage 4 (attest) and the chain side of apply and audit: a client of the attestor program
//! over JSON-RPC, following Solana CLI conventions (config file, URL monikers, keypair files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use memzinc_verifier::accounts::{
    Attestation, Policy, TargetChain, ATTESTATION_SEED, IX_ATTEST, IX_INITIALIZE_POLICY, POLICY_SEED, TARGET_SEED,
};
use memzinc_verifier::plan::PatchPlan;
use memzinc_verifier::wire::PolicyRules;
use memzinc_verifier::VerifyError;
use serde::Serialize;
use solana_commitment_config::CommitmentConfig;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::rpc_client::RpcClient;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;

use crate::error::{Error, Result};
use crate::Sha2;

/// The attestor's address: the public key of `programs/attestor/attestor-keypair.json`
/// (a test keeps this, the keypair and the IDL in agreement).
pub const ATTESTOR_PROGRAM_ID: &str = "3uDr6PDqENa1s7SUBnPmi8i3GZXrTZUPxVBbVWqX7fpJ";

pub fn attestor_program_id() -> Pubkey {
    ATTESTOR_PROGRAM_ID
        .parse()
        .expect("ATTESTOR_PROGRAM_ID is valid base58")
}

/// What the Solana CLI config file (`~/.config/solana/cli/config.yml`) says, where it exists.
#[derive(Clone, Debug, Default)]
pub struct CliConfig {
    pub json_rpc_url: Option<String>,
    pub keypair_path: Option<PathBuf>,
}

pub fn default_cli_config_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/solana/cli/config.yml"))
}

/// Reads the two keys memzinc uses from the Solana CLI's YAML config (flat `key: value` lines).
pub fn read_cli_config(path: &Path) -> CliConfig {
    let Ok(text) = std::fs::read_to_string(path) else {
        return CliConfig::default();
    };
    let mut config = CliConfig::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        match key.trim() {
            "json_rpc_url" => config.json_rpc_url = Some(value),
            "keypair_path" => config.keypair_path = Some(PathBuf::from(value)),
            _ => {}
        }
    }
    config
}

/// Expands the Solana CLI's URL monikers.
pub fn resolve_url(url: &str) -> String {
    match url {
        "localhost" | "l" => "http://127.0.0.1:8899".into(),
        "devnet" | "d" => "https://api.devnet.solana.com".into(),
        "testnet" | "t" => "https://api.testnet.solana.com".into(),
        "mainnet-beta" | "m" => "https://api.mainnet-beta.solana.com".into(),
        other => other.into(),
    }
}

pub fn read_keypair(path: &Path) -> Result<Keypair> {
    solana_keypair::read_keypair_file(path).map_err(|e| Error::Keypair {
        path: path.into(),
        why: if path.exists() {
            e.to_string()
        } else {
            "no such file (create one with `memzinc keygen -o FILE`)".into()
        },
    })
}

pub fn write_keypair(keypair: &Keypair, path: &Path) -> Result<()> {
    let json = serde_json::to_vec(&keypair.to_bytes().to_vec()).map_err(|e| Error::Keypair {
        path: path.into(),
        why: e.to_string(),
    })?;
    crate::fsutil::write_file_atomically(path, &json)
}

pub fn policy_address(program_id: &Pubkey, authority: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[POLICY_SEED, authority.as_ref()], program_id).0
}

pub fn target_chain_address(program_id: &Pubkey, policy: &Pubkey, target_id: &[u8; 32]) -> Pubkey {
    Pubkey::find_program_address(&[TARGET_SEED, policy.as_ref(), target_id], program_id).0
}

pub fn attestation_address(program_id: &Pubkey, chain: &Pubkey, seq: u64) -> Pubkey {
    Pubkey::find_program_address(&[ATTESTATION_SEED, chain.as_ref(), &seq.to_le_bytes()], program_id).0
}

/// The `initialize_policy` instruction, Anchor wire format.
pub fn initialize_policy_ix(program_id: &Pubkey, authority: &Pubkey, rules: &PolicyRules) -> Instruction {
    let mut data = IX_INITIALIZE_POLICY.to_vec();
    data.extend_from_slice(&rules.encode());
    Instruction {
        program_id: *program_id,
        accounts: vec![
            AccountMeta::new(*authority, true),
            AccountMeta::new(policy_address(program_id, authority), false),
            AccountMeta::new_readonly(solana_sdk_ids::system_program::id(), false),
        ],
        data,
    }
}

/// The `attest` instruction for `plan` as attestation number `seq` of its target.
pub fn attest_ix(program_id: &Pubkey, authority: &Pubkey, plan: &PatchPlan, seq: u64) -> Instruction {
    let policy = policy_address(program_id, authority);
    let chain = target_chain_address(program_id, &policy, &plan.target_id);
    let mut data = IX_ATTEST.to_vec();
    data.extend_from_slice(&plan.encode());
    Instruction {
        program_id: *program_id,
        accounts: vec![
            AccountMeta::new(*authority, true),
            AccountMeta::new_readonly(policy, false),
            AccountMeta::new(chain, false),
            AccountMeta::new(attestation_address(program_id, &chain, seq), false),
            AccountMeta::new_readonly(solana_sdk_ids::system_program::id(), false),
        ],
        data,
    }
}

/// The result of `attest`: where the decision is recorded.
#[derive(Clone, Debug, Serialize)]
pub struct AttestOutcome {
    pub attestation: String,
    pub target_chain: String,
    pub seq: u64,
    pub plan_hash: String,
    /// None when an attestation of this exact plan already existed (attest is idempotent).
    pub signature: Option<String>,
}

/// One verified link of a target's history.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub slot: u64,
    pub address: String,
    pub signer: String,
    pub plan_hash: String,
    pub snapshot_root: String,
    pub writes: u32,
    pub bytes: u32,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub target_id: String,
    pub policy: String,
    pub target_chain: String,
    pub head_hash: String,
    pub entries: Vec<AuditEntry>,
    pub verified: bool,
}

/// A connected client of the attestor.
pub struct Client {
    pub rpc: RpcClient,
    pub url: String,
    pub payer: Keypair,
    pub program_id: Pubkey,
}

fn rpc_err(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Rpc {
        url: url.into(),
        why: e.to_string().lines().next().unwrap_or("").to_string(),
    }
}

impl Client {
    /// Connects and checks the RPC answers, so a node that is down fails here in one line.
    pub fn connect(url: &str, payer: Keypair, program_id: Pubkey) -> Result<Client> {
        let url = resolve_url(url);
        let rpc = RpcClient::new_with_timeout_and_commitment(
            url.clone(),
            Duration::from_secs(30),
            CommitmentConfig::confirmed(),
        );
        rpc.get_version()
            .map_err(|e| rpc_err(&url, format!("not reachable ({e})")))?;
        Ok(Client {
            rpc,
            url,
            payer,
            program_id,
        })
    }

    pub fn authority(&self) -> Pubkey {
        self.payer.pubkey()
    }

    /// Sends and confirms, turning the attestor's custom errors into their names.
    pub fn send(&self, instructions: &[Instruction], extra_signers: &[&Keypair]) -> Result<Signature> {
        let blockhash = self.rpc.get_latest_blockhash().map_err(|e| rpc_err(&self.url, e))?;
        let mut signers: Vec<&Keypair> = vec![&self.payer];
        signers.extend_from_slice(extra_signers);
        let tx = Transaction::new_signed_with_payer(instructions, Some(&self.payer.pubkey()), &signers, blockhash);
        self.rpc.send_and_confirm_transaction(&tx).map_err(|e| {
            if let Some(tx_err) = e.get_transaction_error() {
                let text = format!("{tx_err:?}");
                if let Some(code) = custom_code(&text) {
                    if let Some(v) = code
                        .checked_sub(memzinc_verifier::error::ANCHOR_ERROR_OFFSET)
                        .and_then(VerifyError::from_code)
                    {
                        return Error::Transaction(format!("the attestor refused: {v}"));
                    }
                }
                return Error::Transaction(text);
            }
            rpc_err(&self.url, e)
        })
    }

    fn account_data(&self, address: &Pubkey) -> Result<Option<(Pubkey, Vec<u8>)>> {
        let response = self
            .rpc
            .get_account_with_commitment(address, CommitmentConfig::confirmed())
            .map_err(|e| rpc_err(&self.url, e))?;
        Ok(response.value.map(|a| (a.owner, a.data)))
    }

    fn owned_data(&self, address: &Pubkey) -> Result<Option<Vec<u8>>> {
        match self.account_data(address)? {
            Some((owner, data)) if owner == self.program_id => Ok(Some(data)),
            Some(_) => Err(Error::Transaction(format!(
                "{address} is not owned by the attestor {}",
                self.program_id
            ))),
            None => Ok(None),
        }
    }

    /// Deploys `program` at `program_keypair`'s address through the upgradeable loader, as
    /// `solana program deploy` does: buffer, chunked writes, deploy. No-op if already there.
    pub fn deploy_program(&self, program_keypair: &Keypair, program: &[u8]) -> Result<()> {
        use solana_loader_v3_interface::{instruction as loader, state::UpgradeableLoaderState};
        let program_id = program_keypair.pubkey();
        if let Some((_, _)) = self.account_data(&program_id)? {
            tracing::info!("program {program_id} already deployed");
            return Ok(());
        }
        let buffer = Keypair::new();
        let rent = |len| {
            self.rpc
                .get_minimum_balance_for_rent_exemption(len)
                .map_err(|e| rpc_err(&self.url, e))
        };
        let create = loader::create_buffer(
            &self.payer.pubkey(),
            &buffer.pubkey(),
            &self.payer.pubkey(),
            rent(UpgradeableLoaderState::size_of_buffer(program.len()))?,
            program.len(),
        )
        .map_err(|e| Error::Transaction(e.to_string()))?;
        self.send(&create, &[&buffer])?;

        // Send every chunk, then confirm them together: sequential confirmation costs a slot each.
        const CHUNK: usize = 900;
        let blockhash = self.rpc.get_latest_blockhash().map_err(|e| rpc_err(&self.url, e))?;
        let mut pending = Vec::new();
        for (i, chunk) in program.chunks(CHUNK).enumerate() {
            let ix = loader::write(
                &buffer.pubkey(),
                &self.payer.pubkey(),
                (i * CHUNK) as u32,
                chunk.to_vec(),
            );
            let tx = Transaction::new_signed_with_payer(&[ix], Some(&self.payer.pubkey()), &[&self.payer], blockhash);
            pending.push(self.rpc.send_transaction(&tx).map_err(|e| rpc_err(&self.url, e))?);
        }
        for signature in pending {
            self.rpc
                .poll_for_signature_with_commitment(&signature, CommitmentConfig::confirmed())
                .map_err(|e| rpc_err(&self.url, e))?;
            if let Some(Err(e)) = self
                .rpc
                .get_signature_status(&signature)
                .map_err(|e| rpc_err(&self.url, e))?
            {
                return Err(Error::Transaction(format!("buffer write {signature}: {e:?}")));
            }
        }

        let deploy = loader::deploy_with_max_program_len(
            &self.payer.pubkey(),
            &program_id,
            &buffer.pubkey(),
            &self.payer.pubkey(),
            rent(UpgradeableLoaderState::size_of_program())?,
            program.len() * 2,
            true,
        )
        .map_err(|e| Error::Transaction(e.to_string()))?;
        self.send(&deploy, &[program_keypair])?;
        Ok(())
    }

    pub fn policy(&self, authority: &Pubkey) -> Result<Option<Policy>> {
        let address = policy_address(&self.program_id, authority);
        self.owned_data(&address)?
            .map(|d| Policy::decode(&d).map_err(|e| Error::Transaction(format!("policy {address}: {e}"))))
            .transpose()
    }

    /// Creates the payer's policy; returns its address and, if it was created now, the signature.
    pub fn initialize_policy(&self, rules: &PolicyRules) -> Result<(Pubkey, Option<Signature>)> {
        let authority = self.authority();
        let address = policy_address(&self.program_id, &authority);
        if let Some(existing) = self.policy(&authority)? {
            if existing.rules != *rules {
                return Err(Error::Usage(format!(
                    "policy {address} already exists with other rules ({:?})",
                    existing.rules
                )));
            }
            return Ok((address, None));
        }
        let signature = self.send(&[initialize_policy_ix(&self.program_id, &authority, rules)], &[])?;
        Ok((address, Some(signature)))
    }

    pub fn target_chain(&self, policy: &Pubkey, target_id: &[u8; 32]) -> Result<(Pubkey, Option<TargetChain>)> {
        let address = target_chain_address(&self.program_id, policy, target_id);
        let chain = self
            .owned_data(&address)?
            .map(|d| TargetChain::decode(&d).map_err(|e| Error::Transaction(format!("target chain {address}: {e}"))))
            .transpose()?;
        Ok((address, chain))
    }

    /// Every attestation of a chain, in sequence order (batched reads).
    pub fn attestations(&self, chain_address: &Pubkey, count: u64) -> Result<Vec<(Pubkey, Option<Attestation>)>> {
        let addresses: Vec<Pubkey> = (0..count)
            .map(|s| attestation_address(&self.program_id, chain_address, s))
            .collect();
        let mut out = Vec::with_capacity(addresses.len());
        for batch in addresses.chunks(100) {
            let accounts = self
                .rpc
                .get_multiple_accounts(batch)
                .map_err(|e| rpc_err(&self.url, e))?;
            for (address, account) in batch.iter().zip(accounts) {
                let decoded = match account {
                    Some(a) if a.owner == self.program_id => Attestation::decode(&a.data).ok(),
                    _ => None,
                };
                out.push((*address, decoded));
            }
        }
        Ok(out)
    }

    /// The newest attestation of `plan` under the payer's policy, if any.
    pub fn find_attestation(&self, authority: &Pubkey, plan: &PatchPlan) -> Result<Option<(Pubkey, Attestation)>> {
        let policy = policy_address(&self.program_id, authority);
        let (chain_address, chain) = self.target_chain(&policy, &plan.target_id)?;
        let Some(chain) = chain else { return Ok(None) };
        let plan_hash = plan.plan_hash::<Sha2>();
        Ok(self
            .attestations(&chain_address, chain.next_seq)?
            .into_iter()
            .rev()
            .find_map(|(address, a)| {
                a.filter(|a| a.plan_hash == plan_hash && a.policy == policy.to_bytes())
                    .map(|a| (address, a))
            }))
    }

    /// Pre-checks `plan` with the policy's rules (the program's own code), then records it.
    /// Idempotent: a plan already attested under this policy is not attested again.
    pub fn attest(&self, plan: &PatchPlan) -> Result<AttestOutcome> {
        let authority = self.authority();
        let policy_key = policy_address(&self.program_id, &authority);
        let policy = self.policy(&authority)?.ok_or_else(|| {
            Error::Usage(format!(
                "no policy {policy_key} for {authority}; create it with `memzinc policy init`"
            ))
        })?;
        plan.check(&policy.rules)?;
        let plan_hash = hex::encode(plan.plan_hash::<Sha2>());
        let (chain_address, chain) = self.target_chain(&policy_key, &plan.target_id)?;
        if let Some((address, existing)) = self.find_attestation(&authority, plan)? {
            return Ok(AttestOutcome {
                attestation: address.to_string(),
                target_chain: chain_address.to_string(),
                seq: existing.seq,
                plan_hash,
                signature: None,
            });
        }
        let seq = chain.map(|c| c.next_seq).unwrap_or(0);
        let ix = attest_ix(&self.program_id, &authority, plan, seq);
        let signature = self.send(&[ix], &[])?;
        Ok(AttestOutcome {
            attestation: attestation_address(&self.program_id, &chain_address, seq).to_string(),
            target_chain: chain_address.to_string(),
            seq,
            plan_hash,
            signature: Some(signature.to_string()),
        })
    }

    /// Walks a target's whole history and verifies every link: sequence, previous hash, the
    /// recomputed link hash, and that the last link is the chain's head.
    pub fn audit(&self, authority: &Pubkey, target_id: &[u8; 32]) -> Result<AuditReport> {
        let target = hex::encode(target_id);
        let fail = |why: String| Error::AuditFailed {
            target: target.clone(),
            why,
        };
        let policy = policy_address(&self.program_id, authority);
        let (chain_address, chain) = self.target_chain(&policy, target_id)?;
        let chain = chain.ok_or_else(|| fail(format!("no history under policy {policy}")))?;
        if chain.policy != policy.to_bytes() || &chain.target_id != target_id {
            return Err(fail("chain account names another policy or target".into()));
        }
        let mut prev = [0u8; 32];
        let mut entries = Vec::new();
        for (seq, (address, attestation)) in self
            .attestations(&chain_address, chain.next_seq)?
            .into_iter()
            .enumerate()
        {
            let a =
                attestation.ok_or_else(|| fail(format!("attestation #{seq} ({address}) is missing or malformed")))?;
            if a.seq != seq as u64 {
                return Err(fail(format!(
                    "attestation {address} claims seq {} at position {seq}",
                    a.seq
                )));
            }
            if a.prev_hash != prev {
                return Err(fail(format!("attestation #{seq} does not link to #{}", seq as i64 - 1)));
            }
            if a.computed_hash::<Sha2>() != a.hash {
                return Err(fail(format!(
                    "attestation #{seq}: stored hash does not match its fields"
                )));
            }
            if a.policy != policy.to_bytes() || &a.target_id != target_id {
                return Err(fail(format!("attestation #{seq} belongs to another policy or target")));
            }
            prev = a.hash;
            entries.push(AuditEntry {
                seq: a.seq,
                slot: a.slot,
                address: address.to_string(),
                signer: Pubkey::from(a.signer).to_string(),
                plan_hash: hex::encode(a.plan_hash),
                snapshot_root: hex::encode(a.snapshot_root),
                writes: a.write_count,
                bytes: a.byte_count,
                hash: hex::encode(a.hash),
            });
        }
        if prev != chain.head_hash {
            return Err(fail("the last attestation is not the chain's head".into()));
        }
        Ok(AuditReport {
            target_id: target,
            policy: policy.to_string(),
            target_chain: chain_address.to_string(),
            head_hash: hex::encode(chain.head_hash),
            entries,
            verified: true,
        })
    }
}

/// Pulls `N` out of `InstructionError(_, Custom(N))`.
fn custom_code(debug: &str) -> Option<u32> {
    let start = debug.find("Custom(")? + "Custom(".len();
    let end = debug[start..].find(')')? + start;
    debug[start..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monikers_and_config() {
        assert_eq!(resolve_url("localhost"), "http://127.0.0.1:8899");
        assert_eq!(resolve_url("d"), "https://api.devnet.solana.com");
        assert_eq!(resolve_url("http://x:1"), "http://x:1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(
            &path,
            "---\njson_rpc_url: \"http://127.0.0.1:9\"\nkeypair_path: /k/id.json\ncommitment: confirmed\n",
        )
        .unwrap();
        let c = read_cli_config(&path);
        assert_eq!(c.json_rpc_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.keypair_path, Some(PathBuf::from("/k/id.json")));
        assert_eq!(custom_code("InstructionError(0, Custom(6005))"), Some(6005));
    }
}
