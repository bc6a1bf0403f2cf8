//! Stage 4 (attest) and the chain side of apply and audit: a client of the attestor program
//! over JSON-RPC, following Solana CLI conventions (config file, URL monikers, keypair files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use memzinc_verifier::accounts::{
    Attestation, PlanMarker, Policy, PolicyConfig, Receipt, TargetChain, WitnessTally, WitnessedSnapshot,
};
use memzinc_verifier::plan::Submission;
use memzinc_verifier::relocation_stream::StreamState;
use memzinc_verifier::VerifyError;
use serde::{Deserialize, Serialize};
use solana_commitment_config::CommitmentConfig;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_rpc_client::rpc_client::RpcClient;
use solana_signature::Signature;
use solana_signer::Signer;

use super::program as instructions;
use memzinc::base::Sha2;
use memzinc::base::{Error, Result};

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
    memzinc::base::write_file_atomically(path, &json)
}

pub use super::program::{
    attestation_address, plan_marker_address, policy_address, receipt_address, target_chain_address,
    witnessed_snapshot_address,
};

/// The result of `attest`: where the decision is recorded.
#[derive(Clone, Debug, Serialize)]
pub struct AttestOutcome {
    pub attestation: String,
    pub target_chain: String,
    pub seq: u64,
    pub plan_hash: String,
    /// None when an attestation of this exact plan already existed (attest is idempotent).
    pub signature: Option<String>,
    /// Transactions that carried the submission into the program's buffer.
    pub upload_transactions: usize,
    /// Parts a relocation was checked in (`attest --in-parts`); 0 for one submission.
    pub parts: usize,
    /// Of those, the parts an interrupted run had checked already: this run went on after them.
    pub parts_resumed: usize,
}

impl AttestOutcome {
    /// An attestation of the plan that already existed (`attest` is idempotent).
    fn existing(address: &Pubkey, chain: &Pubkey, attestation: &Attestation, plan_hash: &[u8; 32]) -> AttestOutcome {
        AttestOutcome {
            attestation: address.to_string(),
            target_chain: chain.to_string(),
            seq: attestation.seq,
            plan_hash: hex::encode(plan_hash),
            signature: None,
            upload_transactions: 0,
            parts: 0,
            parts_resumed: 0,
        }
    }
}

/// One verified link of a target's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// The policy revision that judged the plan and the hash of its configuration.
    pub policy_revision: u32,
    pub policy_hash: String,
    /// The witnesses whose records of the snapshot root counted, with each record's slot then.
    pub witnesses: Vec<AuditWitness>,
    pub revoked: bool,
    pub receipt: Option<AuditReceipt>,
}

/// A snapshot witness an attestation counted: its key, its record's address and the slot the
/// record had when it counted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditWitness {
    pub witness: String,
    pub record: String,
    pub slot: u64,
}

/// What the host reported after applying.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditReceipt {
    pub slot: u64,
    pub outcome: String,
    pub signer: String,
    pub readback_hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub(super) recent_blockhash: RecentBlockhash,
}

/// The blockhash transactions are signed with, and how many have used it (`flights`).
#[derive(Default)]
pub(super) struct RecentBlockhash(pub(super) std::sync::Mutex<Option<(solana_hash::Hash, u32)>>);

/// A relocation opened on chain, whose parts are to be checked (`parts`).
pub(super) struct OpenRelocation<'a> {
    pub policy_authority: &'a Pubkey,
    pub relocation: &'a Pubkey,
    pub stores: &'a [Pubkey],
    pub layout: &'a instructions::InParts,
}

/// Attempts for a call that failed in transport (not a transaction the cluster refused).
pub(super) const RETRIES: u32 = 4;

pub(super) fn rpc_err(url: &str, e: impl std::fmt::Display) -> Error {
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
            recent_blockhash: RecentBlockhash::default(),
        })
    }

    pub fn authority(&self) -> Pubkey {
        self.payer.pubkey()
    }

    /// Turns the attestor's custom errors into their names.
    pub(super) fn explain(&self, e: solana_rpc_client_api::client_error::Error) -> Error {
        match e.get_transaction_error() {
            Some(tx_err) => self.explain_transaction_error(&tx_err),
            None => rpc_err(&self.url, e),
        }
    }

    /// A transaction's failure, the attestor's custom errors by their names.
    pub(super) fn explain_transaction_error(&self, tx_err: &solana_transaction_error::TransactionError) -> Error {
        match attestor_error(tx_err) {
            Some(v) => Error::Transaction(format!("the attestor refused: {v}")),
            None => Error::Transaction(format!("{tx_err:?}")),
        }
    }

    /// Runs a read-only RPC call, retrying transport errors with backoff.
    pub(super) fn retrying<T>(
        &self,
        mut call: impl FnMut() -> std::result::Result<T, solana_rpc_client_api::client_error::Error>,
    ) -> Result<T> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            match call() {
                Ok(v) => return Ok(v),
                Err(e) if attempt < RETRIES => {
                    tracing::warn!("RPC {}: {e}; retrying in {delay:?}", self.url);
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => return Err(rpc_err(&self.url, e)),
            }
        }
        unreachable!("the loop returns")
    }

    fn account_data(&self, address: &Pubkey) -> Result<Option<(Pubkey, Vec<u8>)>> {
        let response = self.retrying(|| {
            self.rpc
                .get_account_with_commitment(address, CommitmentConfig::confirmed())
        })?;
        Ok(response.value.map(|a| (a.owner, a.data)))
    }

    /// The balance that keeps an account of `space` bytes rent-exempt.
    pub(super) fn rent_exempt(&self, space: usize) -> Result<u64> {
        self.rpc
            .get_minimum_balance_for_rent_exemption(space)
            .map_err(|e| rpc_err(&self.url, e))
    }

    pub(super) fn owned_data(&self, address: &Pubkey) -> Result<Option<Vec<u8>>> {
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
        let rent = |len| self.rent_exempt(len);
        let create = loader::create_buffer(
            &self.payer.pubkey(),
            &buffer.pubkey(),
            &self.payer.pubkey(),
            rent(UpgradeableLoaderState::size_of_buffer(program.len()))?,
            program.len(),
        )
        .map_err(|e| Error::Transaction(e.to_string()))?;
        self.send(&create, &[&buffer])?;

        const CHUNK: usize = 900;
        let writes = program
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                loader::write(
                    &buffer.pubkey(),
                    &self.payer.pubkey(),
                    (i * CHUNK) as u32,
                    chunk.to_vec(),
                )
            })
            .collect();
        self.send_all(writes)?;

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

    /// The attestor's ProgramData account (loader header + ELF + zero padding).
    pub fn programdata(&self) -> Result<Vec<u8>> {
        let address = solana_loader_v3_interface::get_program_data_address(&self.program_id);
        self.account_data(&address)?
            .map(|(_, data)| data)
            .ok_or_else(|| Error::Transaction(format!("no program data at {address} for {}", self.program_id)))
    }

    /// An account as the VM needs it for a replay.
    pub fn raw_account(&self, address: &Pubkey) -> Result<Option<solana_account::Account>> {
        Ok(self
            .rpc
            .get_account_with_commitment(address, CommitmentConfig::confirmed())
            .map_err(|e| rpc_err(&self.url, e))?
            .value)
    }

    pub fn policy(&self, authority: &Pubkey) -> Result<Option<Policy>> {
        let address = policy_address(&self.program_id, authority);
        self.owned_data(&address)?
            .map(|d| Policy::decode(&d).map_err(|e| Error::Transaction(format!("policy {address}: {e}"))))
            .transpose()
    }

    /// Creates the payer's policy; returns its address and, if it was created now, the signature.
    /// An existing policy with another configuration is an error (use `update_policy`).
    pub fn initialize_policy(&self, config: &PolicyConfig) -> Result<(Pubkey, Option<Signature>)> {
        let authority = self.authority();
        let address = policy_address(&self.program_id, &authority);
        if let Some(existing) = self.policy(&authority)? {
            if existing.closed {
                // A closed policy is reopened at its next revision.
                let signature = self.send(
                    &[instructions::initialize_policy(&self.program_id, &authority, config)],
                    &[],
                )?;
                return Ok((address, Some(signature)));
            }
            if existing.config != *config {
                return Err(Error::Usage(format!(
                    "policy {address} already exists with another configuration; use `memzinc policy update`"
                )));
            }
            return Ok((address, None));
        }
        let signature = self.send(
            &[instructions::initialize_policy(&self.program_id, &authority, config)],
            &[],
        )?;
        Ok((address, Some(signature)))
    }

    pub fn update_policy(&self, config: &PolicyConfig) -> Result<Signature> {
        self.send(
            &[instructions::update_policy(&self.program_id, &self.authority(), config)],
            &[],
        )
    }

    pub fn close_policy(&self) -> Result<Signature> {
        self.send(&[instructions::close_policy(&self.program_id, &self.authority())], &[])
    }

    pub fn target_chain(&self, policy: &Pubkey, target_id: &[u8; 32]) -> Result<(Pubkey, Option<TargetChain>)> {
        let address = target_chain_address(&self.program_id, policy, target_id);
        let chain = self
            .owned_data(&address)?
            .map(|d| TargetChain::decode(&d).map_err(|e| Error::Transaction(format!("target chain {address}: {e}"))))
            .transpose()?;
        Ok((address, chain))
    }

    /// Decoded program accounts at `addresses` (batched reads); None where absent or malformed.
    fn many<T>(
        &self,
        addresses: &[Pubkey],
        decode: fn(&[u8]) -> Result<T, memzinc_verifier::VerifyError>,
    ) -> Result<Vec<Option<T>>> {
        let mut out = Vec::with_capacity(addresses.len());
        for batch in addresses.chunks(100) {
            let accounts = self
                .rpc
                .get_multiple_accounts(batch)
                .map_err(|e| rpc_err(&self.url, e))?;
            out.extend(accounts.into_iter().map(|account| match account {
                Some(a) if a.owner == self.program_id => decode(&a.data).ok(),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// Every attestation of a chain, in sequence order.
    pub fn attestations(&self, chain_address: &Pubkey, count: u64) -> Result<Vec<(Pubkey, Option<Attestation>)>> {
        let addresses: Vec<Pubkey> = (0..count)
            .map(|s| attestation_address(&self.program_id, chain_address, s))
            .collect();
        Ok(addresses
            .iter()
            .copied()
            .zip(self.many(&addresses, Attestation::decode)?)
            .collect())
    }

    /// The attestation of `plan_hash` for `target_id` under `authority`'s policy, if any
    /// (found through the plan's marker account in one lookup).
    pub fn find_attestation(
        &self,
        authority: &Pubkey,
        target_id: &[u8; 32],
        plan_hash: &[u8; 32],
    ) -> Result<Option<(Pubkey, Attestation)>> {
        let policy = policy_address(&self.program_id, authority);
        let chain = target_chain_address(&self.program_id, &policy, target_id);
        let marker_address = plan_marker_address(&self.program_id, &chain, plan_hash);
        let Some(marker) = self.owned_data(&marker_address)? else {
            return Ok(None);
        };
        let marker = PlanMarker::decode(&marker).map_err(|e| Error::Transaction(format!("plan marker: {e}")))?;
        let address = attestation_address(&self.program_id, &chain, marker.seq);
        let data = self
            .owned_data(&address)?
            .ok_or_else(|| Error::Transaction(format!("plan marker names attestation {address}, which is missing")))?;
        let attestation =
            Attestation::decode(&data).map_err(|e| Error::Transaction(format!("attestation {address}: {e}")))?;
        if &attestation.plan_hash != plan_hash || attestation.policy != policy.to_bytes() {
            return Err(Error::Transaction(format!(
                "attestation {address} does not record this plan"
            )));
        }
        Ok(Some((address, attestation)))
    }

    /// Records, as `witness` (the payer pays), that `target_id` has `snapshot_root` now.
    pub fn witness(&self, witness: &Keypair, target_id: &[u8; 32], snapshot_root: &[u8; 32]) -> Result<Signature> {
        let ix = instructions::witness_snapshot(
            &self.program_id,
            &witness.pubkey(),
            &self.payer.pubkey(),
            target_id,
            snapshot_root,
        );
        if witness.pubkey() == self.payer.pubkey() {
            self.send(&[ix], &[])
        } else {
            self.send(&[ix], &[witness])
        }
    }

    /// The records of `policy`'s witnesses for this target and root that the program will count
    /// now; an error naming how many are missing if fewer than its threshold.
    pub fn witnessed(&self, policy: &Policy, target_id: &[u8; 32], snapshot_root: &[u8; 32]) -> Result<Vec<Pubkey>> {
        let addresses: Vec<Pubkey> = policy
            .config
            .snapshot_witnesses()
            .iter()
            .map(|w| witnessed_snapshot_address(&self.program_id, &Pubkey::from(*w), target_id, snapshot_root))
            .collect();
        let slot = self.retrying(|| self.rpc.get_slot())?;
        let mut tally = WitnessTally::default();
        let mut counted = Vec::new();
        for (address, record) in addresses.iter().zip(self.many(&addresses, WitnessedSnapshot::decode)?) {
            // A little slack: the attest lands a few slots after this check.
            if let Some(r) = record {
                if tally
                    .add(&policy.config, &r, target_id, snapshot_root, slot.saturating_add(8))
                    .is_ok()
                {
                    counted.push(*address);
                }
            }
        }
        tally.finish(&policy.config).map_err(|_| Error::NotWitnessed {
            target: hex::encode(target_id),
            root: hex::encode(snapshot_root),
            have: counted.len(),
            need: policy.config.witness_threshold as usize,
        })?;
        Ok(counted)
    }

    /// Pre-checks the submission with the policy's rules (the program's own code), uploads it
    /// into a buffer in chunks, then attests. Idempotent: a plan already attested under this
    /// policy for its target is not attested again, and a half-finished upload is resumed.
    pub fn attest(&self, authority: &Pubkey, submission: &Submission) -> Result<AttestOutcome> {
        self.attest_as(authority, submission, None)
    }

    /// [`Self::attest`]; with `in_parts`, a relocation is attested in parts even when it fits
    /// one submission (one that does not fit always is), of at most `Some(max_slots)` slots
    /// each when given (`InParts::of`).
    pub fn attest_as(
        &self,
        authority: &Pubkey,
        submission: &Submission,
        in_parts: Option<Option<usize>>,
    ) -> Result<AttestOutcome> {
        let signer = self.authority();
        let policy_key = policy_address(&self.program_id, authority);
        let policy = self.policy(authority)?.ok_or_else(|| {
            Error::Usage(format!(
                "no policy {policy_key} for {authority}; create it with `memzinc policy init`"
            ))
        })?;
        if policy.closed {
            return Err(Error::Usage(format!(
                "policy {policy_key} is closed; reopen it with `memzinc policy init`"
            )));
        }
        if !policy.may_sign(&signer.to_bytes()) {
            return Err(Error::Usage(format!("{signer} is not a signer of policy {policy_key}")));
        }
        let (rules, symbol_rules) = (&policy.config.rules, &policy.config.symbol_rules);
        let model_hash_pinned = || match policy.config.check_model_hash(&submission.plan.model_hash) {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::ModelHashMismatch {
                plan: hex::encode(submission.plan.model_hash),
                policy: hex::encode(policy.config.model_hash),
            }),
        };
        let bytes = submission.encode();
        let too_large = bytes.len() > memzinc_verifier::instruction::MAX_BUFFER_LEN as usize;
        if !submission.plan.slots.is_empty() && (in_parts.is_some() || too_large) {
            drop(bytes);
            // Pre-checked as the program will check it: part by part.
            let layout = instructions::InParts::of(submission, in_parts.flatten())?;
            let plan_hash = layout.check(&submission.plan, rules, symbol_rules)?;
            model_hash_pinned()?;
            return self.attest_in_parts(authority, &policy, submission, &layout, plan_hash);
        }
        let verdict = memzinc_verifier::rules::verify_submission::<Sha2>(rules, symbol_rules, &bytes)?.1;
        model_hash_pinned()?;
        let plan_hash = verdict.plan_hash;
        let target_id = submission.plan.target_id;
        let witnessed = || self.witnessed(&policy, &target_id, &submission.plan.snapshot_root);
        let (chain_address, chain) = self.target_chain(&policy_key, &target_id)?;
        if let Some((address, existing)) = self.find_attestation(authority, &target_id, &plan_hash)? {
            return Ok(AttestOutcome::existing(&address, &chain_address, &existing, &plan_hash));
        }

        // Refused before anything is uploaded when the root is not witnessed (enough) yet.
        witnessed()?;
        let buffer_key = instructions::buffer_keypair(&self.payer, &plan_hash);
        let buffer = buffer_key.pubkey();
        if let Some(data) = self.owned_data(&buffer)? {
            // A previous run left this plan's buffer: reuse it if it has the right size (every
            // chunk is written again below), else reclaim it and start over.
            match memzinc_verifier::accounts::BufferHeader::decode(&data) {
                Ok((h, _)) if h.len as usize == bytes.len() && h.plan_hash == plan_hash => {}
                _ => {
                    self.send(
                        &[instructions::close_buffer(
                            &self.program_id,
                            &signer,
                            &buffer,
                            &plan_hash,
                        )],
                        &[],
                    )?;
                }
            }
        }
        if self.owned_data(&buffer)?.is_none() {
            let space = memzinc_verifier::accounts::BufferHeader::LEN + bytes.len();
            let rent = self.rent_exempt(space)?;
            let open =
                instructions::open_buffer(&self.program_id, &signer, &buffer, &plan_hash, bytes.len() as u32, rent);
            self.send(&open, &[&buffer_key])?;
        }
        let upload_transactions = self.upload_buffer(&buffer, &plan_hash, bytes)?;

        let seq = chain.map(|c| c.next_seq).unwrap_or(0);
        let ix = instructions::attest(
            &self.program_id,
            &signer,
            authority,
            &target_id,
            &plan_hash,
            seq,
            &buffer,
            &witnessed()?,
        );
        let signature = self.send(&[instructions::compute_unit_limit(1_400_000), ix], &[])?;
        Ok(AttestOutcome {
            attestation: attestation_address(&self.program_id, &chain_address, seq).to_string(),
            target_chain: chain_address.to_string(),
            seq,
            plan_hash: hex::encode(plan_hash),
            signature: Some(signature.to_string()),
            upload_transactions,
            parts: 0,
            parts_resumed: 0,
        })
    }

    /// A relocation whose submission does not fit one buffer, attested in parts
    /// (`relocation_stream`): its records in up to `MAX_STORES` stores of at most 10 MiB, its
    /// slot table appended, each part uploaded into a buffer of its own and checked, then
    /// finished under its streamed plan hash. A relocation an interrupted run left open goes
    /// on where it stopped when it can ([`resume_at`]); else it is closed and started again.
    /// `plan_hash`: its streamed plan hash, as the pre-check (`InParts::check`) found it.
    fn attest_in_parts(
        &self,
        authority: &Pubkey,
        policy: &Policy,
        submission: &Submission,
        layout: &instructions::InParts,
        plan_hash: [u8; 32],
    ) -> Result<AttestOutcome> {
        use memzinc_verifier::accounts::Relocation;
        let signer = self.authority();
        let plan = &submission.plan;
        let target_id = plan.target_id;
        let policy_key = policy_address(&self.program_id, authority);
        let (chain_address, chain) = self.target_chain(&policy_key, &target_id)?;
        if let Some((address, existing)) = self.find_attestation(authority, &target_id, &plan_hash)? {
            return Ok(AttestOutcome::existing(&address, &chain_address, &existing, &plan_hash));
        }
        // Judged as of the opening: the finish checks the witnesses at the slot it was opened.
        let witnessed = self.witnessed(policy, &target_id, &plan.snapshot_root)?;
        let n = plan.slots.len();
        let (store_count, per_store) = (layout.store_count, layout.per_store);
        let relocation = instructions::relocation_keypair(&self.payer, &plan_hash, 0);
        let stores: Vec<Keypair> = (1..=store_count)
            .map(|i| instructions::relocation_keypair(&self.payer, &plan_hash, i as u8))
            .collect();
        let store_keys: Vec<Pubkey> = stores.iter().map(|k| k.pubkey()).collect();
        let left_open = self
            .owned_data(&relocation.pubkey())?
            .and_then(|data| Relocation::decode(&data).ok());
        let opener = Opener {
            signer,
            policy: policy_key,
            revision: policy.revision,
            start: plan.stream_start::<Sha2>(),
        };
        let resumed = left_open.and_then(|open| resume_at(&open, &opener, &store_keys, layout));
        let first_part = match resumed {
            Some(part) => {
                tracing::info!(
                    "going on with the relocation an interrupted run left open, after its {part} checked parts"
                );
                part
            }
            None => {
                self.open_relocation_afresh(authority, &opener.start, &relocation, &stores, per_store)?;
                0
            }
        };
        let appends: Vec<(u32, Instruction)> = layout
            .appends
            .iter()
            .map(|a| {
                (
                    a.first,
                    a.instruction(&self.program_id, &signer, &relocation.pubkey(), &store_keys),
                )
            })
            .collect();
        let mut upload_transactions = self.append_in_order(&relocation.pubkey(), &appends, n as u32)?;
        tracing::info!(
            parts = layout.parts.len(),
            stores = store_count,
            "attesting a relocation of {n} objects in parts"
        );
        upload_transactions += self.check_parts(
            first_part,
            &OpenRelocation {
                policy_authority: authority,
                relocation: &relocation.pubkey(),
                stores: &store_keys,
                layout,
            },
        )?;

        let seq = chain.map(|c| c.next_seq).unwrap_or(0);
        let finish = instructions::finish_relocation(
            &self.program_id,
            &signer,
            authority,
            &target_id,
            &plan_hash,
            seq,
            &relocation.pubkey(),
            &witnessed,
        );
        let signature = self.send(&[instructions::compute_unit_limit(1_400_000), finish], &[])?;
        self.send(
            &[instructions::close_relocation(&self.program_id, &signer, &store_keys)],
            &[],
        )?;
        Ok(AttestOutcome {
            attestation: attestation_address(&self.program_id, &chain_address, seq).to_string(),
            target_chain: chain_address.to_string(),
            seq,
            plan_hash: hex::encode(plan_hash),
            signature: Some(signature.to_string()),
            upload_transactions,
            parts: layout.parts.len(),
            parts_resumed: first_part,
        })
    }

    /// Opens relocation `relocation` in state `start` with `stores` of `per_store` records each,
    /// closing first what an interrupted run left of them.
    fn open_relocation_afresh(
        &self,
        authority: &Pubkey,
        start: &StreamState,
        relocation: &Keypair,
        stores: &[Keypair],
        per_store: u32,
    ) -> Result<()> {
        use memzinc_verifier::accounts::Relocation;
        let signer = self.authority();
        let store_keys: Vec<Pubkey> = stores.iter().map(|k| k.pubkey()).collect();
        let leftovers: Vec<Pubkey> = std::iter::once(relocation.pubkey())
            .chain(store_keys.iter().copied())
            .filter(|k| matches!(self.owned_data(k), Ok(Some(_))))
            .collect();
        if !leftovers.is_empty() {
            self.send(
                &[instructions::close_relocation(&self.program_id, &signer, &leftovers)],
                &[],
            )?;
        }
        let allocate = |key: &Keypair, space: usize| -> Result<()> {
            let rent = self.rent_exempt(space)?;
            let ix = instructions::allocate_relocation_account(&self.program_id, &signer, &key.pubkey(), space, rent);
            self.send(&[ix], &[key]).map(|_| ())
        };
        allocate(relocation, Relocation::LEN)?;
        for store in stores {
            allocate(store, instructions::relocation_store_len(per_store))?;
        }
        let open = instructions::open_relocation(
            &self.program_id,
            &signer,
            authority,
            &relocation.pubkey(),
            &store_keys,
            start,
            per_store,
        );
        let mut signers: Vec<&Keypair> = vec![relocation];
        signers.extend(stores.iter());
        self.send(&[open], &signers).map(|_| ())
    }

    /// Marks attestation `seq` of `target_id` revoked (policy authority only).
    pub fn revoke(&self, target_id: &[u8; 32], seq: u64) -> Result<Signature> {
        self.send(
            &[instructions::revoke(
                &self.program_id,
                &self.authority(),
                target_id,
                seq,
            )],
            &[],
        )
    }

    /// Records what applying attestation `seq` did.
    pub fn record_applied(
        &self,
        authority: &Pubkey,
        target_id: &[u8; 32],
        seq: u64,
        outcome: u8,
        readback_hash: &[u8; 32],
    ) -> Result<Signature> {
        let ix = instructions::record_applied(
            &self.program_id,
            &self.authority(),
            authority,
            target_id,
            seq,
            outcome,
            readback_hash,
        );
        self.send(&[ix], &[])
    }

    /// Walks a target's whole history and verifies every link: sequence, previous hash, the
    /// recomputed link hash, and that the last link is the chain's head. Receipts and
    /// revocations are reported with each entry.
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
        let attestations = self.attestations(&chain_address, chain.next_seq)?;
        let receipt_addresses: Vec<Pubkey> = attestations
            .iter()
            .map(|(a, _)| receipt_address(&self.program_id, a))
            .collect();
        let receipts = self.many(&receipt_addresses, Receipt::decode)?;
        let mut prev = [0u8; 32];
        let mut entries = Vec::new();
        for (seq, ((address, attestation), receipt)) in attestations.into_iter().zip(receipts).enumerate() {
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
            if let Some(r) = &receipt {
                if r.attestation != address.to_bytes() || r.seq != a.seq {
                    return Err(fail(format!("receipt of #{seq} names another attestation")));
                }
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
                policy_revision: a.policy_revision,
                policy_hash: hex::encode(a.policy_hash),
                witnesses: a
                    .cited_witnesses()
                    .map(|(w, slot)| AuditWitness {
                        witness: Pubkey::from(*w).to_string(),
                        record: witnessed_snapshot_address(
                            &self.program_id,
                            &Pubkey::from(*w),
                            target_id,
                            &a.snapshot_root,
                        )
                        .to_string(),
                        slot,
                    })
                    .collect(),
                revoked: a.revoked,
                receipt: receipt.map(|r| AuditReceipt {
                    slot: r.slot,
                    outcome: match r.outcome {
                        memzinc_verifier::accounts::OUTCOME_APPLIED => "applied",
                        memzinc_verifier::accounts::OUTCOME_ROLLED_BACK => "rolled back",
                        _ => "refused",
                    }
                    .into(),
                    signer: Pubkey::from(r.signer).to_string(),
                    readback_hash: hex::encode(r.readback_hash),
                }),
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

/// Who opens a relocation, under which policy revision, in which state.
struct Opener {
    signer: Pubkey,
    policy: Pubkey,
    revision: u32,
    start: StreamState,
}

/// The part to go on from with relocation `open`, which an interrupted run left: it must be
/// the one `opener` would open (same signer, policy revision and plan: the state it was opened
/// in), with `stores` of `layout`'s size, its table appended up to one of `layout`'s appends
/// (or whole), and stopped where one of `layout`'s parts ends (or before the first). Otherwise
/// `None`: it is closed and opened anew. The slots already appended are the plan's: its address
/// is derived from the plan's hash, and only the signer appends.
fn resume_at(
    open: &memzinc_verifier::accounts::Relocation,
    opener: &Opener,
    stores: &[Pubkey],
    layout: &instructions::InParts,
) -> Option<usize> {
    let (state, start) = (&open.state, &opener.start);
    let same = open.authority == opener.signer.to_bytes()
        && open.policy == opener.policy.to_bytes()
        && open.policy_revision == opener.revision
        && open.per_store == layout.per_store
        && open.store_count as usize == stores.len()
        && open.stores.iter().zip(stores).all(|(a, b)| *a == b.to_bytes())
        && (
            state.target_id,
            state.snapshot_root,
            state.model_hash,
            state.region_table_hash,
            state.slot_count,
        ) == (
            start.target_id,
            start.snapshot_root,
            start.model_hash,
            start.region_table_hash,
            start.slot_count,
        );
    let appended_at_a_cut =
        state.appended == state.slot_count || layout.appends.iter().any(|a| a.first == state.appended);
    if !same || !appended_at_a_cut {
        return None;
    }
    if state.done {
        return Some(layout.parts.len());
    }
    if state.next_address == start.next_address {
        return Some(0);
    }
    layout
        .parts
        .iter()
        .position(|p| p.hi == state.next_address)
        .map(|i| i + 1)
}

/// The attestor's own error, when that is what a transaction failed with.
fn attestor_error(e: &solana_transaction_error::TransactionError) -> Option<VerifyError> {
    use solana_instruction::error::InstructionError;
    use solana_transaction_error::TransactionError;
    match e {
        TransactionError::InstructionError(_, InstructionError::Custom(code)) => code
            .checked_sub(memzinc_verifier::error::ANCHOR_ERROR_OFFSET)
            .and_then(VerifyError::from_code),
        _ => None,
    }
}

/// The attestor's own error, when that is why the node refused a transaction sent to it (its
/// simulation failed there).
pub(super) fn refusal(e: &solana_rpc_client_api::client_error::Error) -> Option<VerifyError> {
    e.get_transaction_error().as_ref().and_then(attestor_error)
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
    }

    /// A relocation an interrupted run left goes on after its checked parts only when it is the
    /// one this run would open, stopped at one of this run's cuts.
    #[test]
    fn a_relocation_left_open_goes_on_only_if_it_is_this_runs() {
        use memzinc_verifier::accounts::{Relocation, MAX_STORES};
        use memzinc_verifier::plan::{Evidence, PatchPlan, StreamPart};
        let empty = Submission {
            plan: PatchPlan {
                target_id: [1; 32],
                snapshot_root: [2; 32],
                model_hash: [3; 32],
                regions: Vec::new(),
                writes: Vec::new(),
                slots: Vec::new(),
            },
            evidence: Evidence {
                pages_root: [0; 32],
                regions_root: [0; 32],
                page_count: 0,
                region_count: 0,
                region_proofs: Vec::new(),
                pages: Vec::new(),
                symbols_root: [0; 32],
                symbol_count: 0,
                symbols: Vec::new(),
            },
        };
        let layout = instructions::InParts {
            store_count: 2,
            per_store: 8,
            appends: [0, 8]
                .map(|first| instructions::SlotAppend {
                    first,
                    slots: Vec::new(),
                    stores: 0..1,
                })
                .into_iter()
                .collect(),
            parts: [0x5000, 0x9000, u64::MAX]
                .map(|hi| StreamPart {
                    hi,
                    estimate: Default::default(),
                    submission: empty.clone(),
                })
                .to_vec(),
        };
        let stores = [Pubkey::new_unique(), Pubkey::new_unique()];
        let start = StreamState::new([1; 32], [2; 32], [3; 32], [4; 32], 16);
        let opener = Opener {
            signer: Pubkey::new_unique(),
            policy: Pubkey::new_unique(),
            revision: 3,
            start,
        };
        let mut store_keys = [[0; 32]; MAX_STORES];
        store_keys[0] = stores[0].to_bytes();
        store_keys[1] = stores[1].to_bytes();
        let open = Relocation {
            authority: opener.signer.to_bytes(),
            policy: opener.policy.to_bytes(),
            policy_revision: 3,
            opened_slot: 7,
            per_store: 8,
            store_count: 2,
            stores: store_keys,
            state: start,
        };
        let at = |change: &dyn Fn(&mut Relocation)| {
            let mut open = open;
            change(&mut open);
            resume_at(&open, &opener, &stores, &layout)
        };
        assert_eq!(at(&|_| {}), Some(0), "opened, nothing appended");
        assert_eq!(at(&|o| o.state.appended = 8), Some(0), "half appended");
        assert_eq!(
            at(&|o| o.state.appended = 9),
            None,
            "appended where no append of this run starts"
        );
        assert_eq!(at(&|o| o.state.next_address = 0x5000), Some(1));
        assert_eq!(at(&|o| o.state.next_address = 0x9000), Some(2));
        assert_eq!(at(&|o| o.state.done = true), Some(3), "every part checked");
        assert_eq!(at(&|o| o.state.next_address = 0x7000), None, "not at a cut of this run");
        assert_eq!(at(&|o| o.authority = [9; 32]), None, "another signer's");
        assert_eq!(at(&|o| o.policy_revision = 4), None, "the policy changed since");
        assert_eq!(at(&|o| o.per_store = 9), None, "stores of another size");
        assert_eq!(at(&|o| o.stores.swap(0, 1)), None, "other stores");
        assert_eq!(at(&|o| o.state.snapshot_root = [9; 32]), None, "another snapshot");
        assert_eq!(at(&|o| o.state.slot_count = 17), None, "another table");
    }

    #[test]
    fn the_attestors_errors_are_named_by_their_codes() {
        use solana_instruction::error::InstructionError;
        use solana_transaction_error::TransactionError;
        let failed = |code| TransactionError::InstructionError(1, InstructionError::Custom(code));
        assert_eq!(attestor_error(&failed(6069)), Some(VerifyError::SlotsNotNext));
        assert_eq!(attestor_error(&failed(6005)), Some(VerifyError::OverlappingWrites));
        assert_eq!(attestor_error(&failed(5)), None);
        assert_eq!(attestor_error(&TransactionError::BlockhashNotFound), None);
    }
}
