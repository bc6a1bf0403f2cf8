//! Offline replay of recorded decisions: the deployed program's own bytes run again in an sBPF
//! VM (LiteSVM, which executes programs with `solana-sbpf`) on the recorded inputs, and the
//! record they produce must equal, byte for byte, the attestation on chain.
//!
//! For attestation `seq`, the VM gets the state the program saw then: the policy account as it
//! is on chain now, at the recorded revision (a decision whose recorded configuration hash is
//! not the policy's current one cannot be replayed, and is counted as such), the target chain at `(next_seq = seq, head = prev_hash)`, the clock at the
//! recorded slot, a buffer holding the plan and its evidence from the operator's plan file, and
//! the witnessed-snapshot records the attestation names as counted, read from the chain (a
//! record missing there makes the replay fail). A record's slot only moves forward (witnessing
//! the same root again refreshes it), so a record refreshed since the decision is replayed at
//! the slot the attestation recorded for it, and counted as refreshed; everything else about it
//! (owner, type, witness, target, root) is the chain's. Signatures are not re-checked (the VM
//! runs without signature verification), everything the program itself checks is, the witness
//! tally included. A relocation attested in parts is replayed in parts, cut as `attest` cuts it.

use litesvm::LiteSVM;
use memzinc_verifier::accounts::{Attestation, BufferHeader, TargetChain, WitnessedSnapshot};
use memzinc_verifier::plan::Submission;
use serde::Serialize;
use solana_account::Account;
use solana_message::Message;
use solana_pubkey::Pubkey;
use solana_transaction::Transaction;

use super::program as instructions;
use memzinc::base::Sha2;
use memzinc::base::{Error, Result};

/// The deployed program compared with a local reproducible build.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramCheck {
    pub deployed_sha256: String,
    pub local_sha256: Option<String>,
    /// The deployed bytes are the local build's, followed only by the loader's zero padding.
    pub matches_local_build: bool,
}

/// One replayed decision.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayOutcome {
    pub seq: u64,
    pub plan_hash: String,
    /// "identical", "differs: …", "refused: …", or, for a decision that could not be replayed,
    /// "missing: …" (no plan file, or the policy's configuration changed since).
    pub verdict: String,
    /// Of the decision's transactions (a relocation in parts: all of them, summed).
    pub compute_units: Option<u64>,
    /// Witness records (read from the chain) whose slot was refreshed after the decision, so
    /// they were replayed at the slot the attestation recorded.
    pub refreshed_witness_records: usize,
}

/// Strips the upgradeable loader's header from a ProgramData account: what follows is the ELF,
/// zero-padded to the maximum length chosen at deploy time.
pub fn program_from_programdata(data: &[u8]) -> &[u8] {
    const HEADER: usize = 45; // tag u32, slot u64, Option<Pubkey>
    let body = data.get(HEADER..).unwrap_or(&[]);
    let end = body.iter().rposition(|&b| b != 0).map(|i| i + 1).unwrap_or(0);
    &body[..end]
}

pub fn check_program(deployed_padded: &[u8], local: Option<&[u8]>) -> ProgramCheck {
    use sha2::Digest;
    let body = deployed_padded.get(45..).unwrap_or(&[]);
    let deployed = program_from_programdata(deployed_padded);
    let matches = local
        .is_some_and(|l| body.len() >= l.len() && &body[..l.len()] == l && body[l.len()..].iter().all(|&b| b == 0));
    ProgramCheck {
        deployed_sha256: hex::encode(sha2::Sha256::digest(deployed)),
        local_sha256: local.map(|l| hex::encode(sha2::Sha256::digest(l))),
        matches_local_build: matches,
    }
}

/// A VM holding the deployed program and the policy account, ready to replay decisions.
pub struct Replayer {
    svm: LiteSVM,
    program_id: Pubkey,
    policy_address: Pubkey,
    policy_account: Account,
}

fn svm_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::AuditFailed {
        target: "replay".into(),
        why: format!("{what}: {e:?}"),
    }
}

impl Replayer {
    pub fn new(
        program_id: Pubkey,
        program: &[u8],
        policy_address: Pubkey,
        policy_account: Account,
    ) -> Result<Replayer> {
        let mut svm = LiteSVM::new().with_sigverify(false);
        svm.add_program(program_id, program)
            .map_err(|e| svm_err("loading the deployed program", e))?;
        Ok(Replayer {
            svm,
            program_id,
            policy_address,
            policy_account,
        })
    }

    /// Replays attestation `recorded` (at `address`) from `submission`, with the witness records
    /// it names as they are on chain (`witness_records`: each record's address and account,
    /// None where the chain has none). A relocation attested in parts (its recorded plan hash is
    /// the plan's streamed hash) is replayed in parts: opened, its table appended, every part
    /// checked, finished. The attestation does not record when it was opened, so it is opened
    /// at the slot its youngest witness record had (the witnesses are judged as of the opening)
    /// and finished at the recorded slot.
    pub fn replay(
        &mut self,
        address: &Pubkey,
        recorded: &Attestation,
        submission: &Submission,
        witness_records: &[(Pubkey, Option<Account>)],
    ) -> Result<ReplayOutcome> {
        let plan_hash = submission.plan.plan_hash::<Sha2>();
        let streamed = plan_hash != recorded.plan_hash
            && !submission.plan.slots.is_empty()
            && submission.plan.streamed_plan_hash::<Sha2>() == recorded.plan_hash;
        if plan_hash != recorded.plan_hash && !streamed {
            return Ok(outcome(
                recorded,
                "differs: the plan file does not hash to the recorded plan".into(),
                None,
                0,
            ));
        }
        let staged = match self.stage(recorded, witness_records)? {
            Ok(staged) => staged,
            Err(missing) => return Ok(missing),
        };
        let result = if streamed {
            self.decide_in_parts(recorded, submission, &staged)?
        } else {
            self.svm.warp_to_slot(recorded.slot);
            let buffer = self.put_buffer(&recorded.signer, &plan_hash, &submission.encode())?;
            let attest = instructions::attest(
                &self.program_id,
                &staged.signer,
                &staged.authority,
                &recorded.target_id,
                &plan_hash,
                recorded.seq,
                &buffer,
                &staged.witnessed,
            );
            self.run(&staged.signer, attest)
        };
        let cu = match result {
            Ok(cu) => cu,
            Err((why, cu)) => return Ok(outcome(recorded, format!("refused: {why}"), Some(cu), staged.refreshed)),
        };
        let replayed = self.svm.get_account(address).map(|a| a.data).unwrap_or_default();
        let mut recorded_bytes = [0u8; Attestation::LEN];
        // The revocation flag is set after the decision, by the authority: compare the decision.
        Attestation {
            revoked: false,
            ..*recorded
        }
        .encode(&mut recorded_bytes);
        let verdict = if replayed == recorded_bytes {
            "identical"
        } else {
            "differs: the replayed record is not the recorded one"
        };
        Ok(outcome(recorded, verdict.into(), Some(cu), staged.refreshed))
    }

    /// The VM as the program saw it at decision `recorded`: the policy at its revision, the
    /// signer funded, the target chain at `(seq, prev_hash)`, the witness records; or, when the
    /// policy no longer has the configuration that judged, the outcome saying so.
    fn stage(
        &mut self,
        recorded: &Attestation,
        witness_records: &[(Pubkey, Option<Account>)],
    ) -> Result<std::result::Result<Staged, ReplayOutcome>> {
        let mut refreshed = 0;
        // The policy as it was when it judged: same configuration (else nothing to replay it
        // under), at the recorded revision, open.
        let mut policy = memzinc_verifier::accounts::Policy::decode(&self.policy_account.data)?;
        if policy.config_hash != recorded.policy_hash {
            return Ok(Err(outcome(
                recorded,
                format!(
                    "missing: judged under policy revision {}, whose configuration the policy no longer has",
                    recorded.policy_revision
                ),
                None,
                0,
            )));
        }
        policy.revision = recorded.policy_revision;
        policy.opened_revision = 0;
        policy.closed = false;
        let mut policy_data = [0u8; memzinc_verifier::accounts::Policy::LEN];
        policy.encode(&mut policy_data);
        let policy_account = Account {
            data: policy_data.to_vec(),
            ..self.policy_account.clone()
        };
        let signer = Pubkey::from(recorded.signer);
        let chain_address =
            instructions::target_chain_address(&self.program_id, &self.policy_address, &recorded.target_id);

        self.svm
            .set_account(self.policy_address, policy_account)
            .map_err(|e| svm_err("policy", e))?;
        self.svm
            .set_account(
                signer,
                Account {
                    lamports: 1_000_000_000_000,
                    ..Account::default()
                },
            )
            .map_err(|e| svm_err("signer", e))?;
        if recorded.seq > 0 {
            let bump = Pubkey::find_program_address(
                &[
                    memzinc_verifier::accounts::TARGET_SEED,
                    self.policy_address.as_ref(),
                    &recorded.target_id,
                ],
                &self.program_id,
            )
            .1;
            let chain = TargetChain {
                policy: self.policy_address.to_bytes(),
                target_id: recorded.target_id,
                next_seq: recorded.seq,
                head_hash: recorded.prev_hash,
                bump,
            };
            let mut data = [0u8; TargetChain::LEN];
            chain.encode(&mut data);
            self.put_owned(chain_address, data.to_vec(), "target chain")?;
        }

        // The records the attestation counted, as the chain holds them; the program checks them
        // again (owner, type, policy witness, target, root, age, distinct).
        let mut witnessed = Vec::new();
        for ((record_address, account), (_, recorded_slot)) in witness_records.iter().zip(recorded.cited_witnesses()) {
            if let Some(account) = account {
                let mut account = account.clone();
                if let Ok(record) = WitnessedSnapshot::decode(&account.data) {
                    if record.slot > recorded_slot {
                        let mut data = [0u8; WitnessedSnapshot::LEN];
                        WitnessedSnapshot {
                            slot: recorded_slot,
                            ..record
                        }
                        .encode(&mut data);
                        account.data = data.to_vec();
                        refreshed += 1;
                    }
                }
                self.svm
                    .set_account(*record_address, account)
                    .map_err(|e| svm_err("witnessed snapshot", e))?;
            }
            witnessed.push(*record_address);
        }
        Ok(Ok(Staged {
            signer,
            authority: Pubkey::from(policy.authority),
            witnessed,
            refreshed,
        }))
    }

    /// `open_relocation`, `append_slots`, every `check_relocation_part` and `finish_relocation`
    /// of `submission`, cut as `attest` cuts it: the compute units of them all, or why one was
    /// refused.
    fn decide_in_parts(
        &mut self,
        recorded: &Attestation,
        submission: &Submission,
        staged: &Staged,
    ) -> Result<std::result::Result<u64, (String, u64)>> {
        use memzinc_verifier::accounts::Relocation;
        let layout = instructions::InParts::of(submission, None)?;
        let relocation = Pubkey::new_unique();
        let stores: Vec<Pubkey> = (0..layout.store_count).map(|_| Pubkey::new_unique()).collect();
        self.put_owned(relocation, vec![0; Relocation::LEN], "relocation")?;
        for store in &stores {
            self.put_owned(
                *store,
                vec![0; instructions::relocation_store_len(layout.per_store)],
                "store",
            )?;
        }
        let opened = recorded
            .cited_witnesses()
            .map(|(_, slot)| slot)
            .max()
            .unwrap_or(recorded.slot)
            .min(recorded.slot);
        self.svm.warp_to_slot(opened);
        let signer = &staged.signer;
        let mut steps = vec![instructions::open_relocation(
            &self.program_id,
            signer,
            &staged.authority,
            &relocation,
            &stores,
            &submission.plan.stream_start::<Sha2>(),
            layout.per_store,
        )];
        steps.extend(
            layout
                .appends
                .iter()
                .map(|append| append.instruction(&self.program_id, signer, &relocation, &stores)),
        );
        let mut cu = 0;
        for step in steps {
            match self.run(signer, step) {
                Ok(used) => cu += used,
                Err((why, used)) => return Ok(Err((why, cu + used))),
            }
        }
        for (i, part) in layout.parts.iter().enumerate() {
            let label = part.submission.plan.plan_hash::<Sha2>();
            let buffer = self.put_buffer(&recorded.signer, &label, &layout.encoded_part(i)?)?;
            let check = instructions::check_relocation_part(
                &self.program_id,
                signer,
                &staged.authority,
                &relocation,
                &buffer,
                &stores,
                &label,
                part.hi,
            );
            match self.run(signer, check) {
                Ok(used) => cu += used,
                Err((why, used)) => return Ok(Err((format!("part {i}: {why}"), cu + used))),
            }
        }
        self.svm.warp_to_slot(recorded.slot);
        let finish = instructions::finish_relocation(
            &self.program_id,
            signer,
            &staged.authority,
            &recorded.target_id,
            &recorded.plan_hash,
            recorded.seq,
            &relocation,
            &staged.witnessed,
        );
        Ok(self
            .run(signer, finish)
            .map(|used| cu + used)
            .map_err(|(why, used)| (why, cu + used)))
    }

    /// A buffer at a new address holding `body` uploaded by `uploader` under `label`.
    fn put_buffer(&mut self, uploader: &[u8; 32], label: &[u8; 32], body: &[u8]) -> Result<Pubkey> {
        let mut buffer = vec![0u8; BufferHeader::LEN];
        let header = BufferHeader {
            authority: *uploader,
            plan_hash: *label,
            version: BufferHeader::VERSION,
            len: body.len() as u32,
        };
        header.encode((&mut buffer[..]).try_into().map_err(|e| svm_err("buffer", e))?);
        buffer.extend_from_slice(body);
        let address = Pubkey::new_unique();
        self.put_owned(address, buffer, "buffer")?;
        Ok(address)
    }

    /// An account of the program's holding `data`, rent-exempt.
    fn put_owned(&mut self, address: Pubkey, data: Vec<u8>, what: &str) -> Result<()> {
        let account = Account {
            lamports: self.svm.minimum_balance_for_rent_exemption(data.len()),
            data,
            owner: self.program_id,
            executable: false,
            rent_epoch: 0,
        };
        self.svm.set_account(address, account).map_err(|e| svm_err(what, e))
    }

    /// One transaction of `ix` (at the compute-unit limit) paid by `signer`: its compute units,
    /// or why it failed and what it used.
    fn run(&mut self, signer: &Pubkey, ix: solana_instruction::Instruction) -> std::result::Result<u64, (String, u64)> {
        let message = Message::new_with_blockhash(
            &[instructions::compute_unit_limit(1_400_000), ix],
            Some(signer),
            &self.svm.latest_blockhash(),
        );
        let result = self.svm.send_transaction(Transaction::new_unsigned(message));
        self.svm.expire_blockhash();
        match result {
            Ok(meta) => Ok(meta.compute_units_consumed),
            Err(failed) => Err((format!("{:?}", failed.err), failed.meta.compute_units_consumed)),
        }
    }
}

/// The accounts a staged decision is replayed with.
struct Staged {
    signer: Pubkey,
    authority: Pubkey,
    witnessed: Vec<Pubkey>,
    /// Witness records refreshed since the decision, replayed at the recorded slot.
    refreshed: usize,
}

/// The outcome of replaying `recorded`.
fn outcome(recorded: &Attestation, verdict: String, compute_units: Option<u64>, refreshed: usize) -> ReplayOutcome {
    ReplayOutcome {
        seq: recorded.seq,
        plan_hash: hex::encode(recorded.plan_hash),
        verdict,
        compute_units,
        refreshed_witness_records: refreshed,
    }
}

/// The deployed program checked against the local build, and every decision with a plan file
/// replayed in the VM.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub program: ProgramCheck,
    pub decisions: Vec<ReplayOutcome>,
    pub replayed: usize,
    pub identical: usize,
    /// Decisions on chain that could not be replayed (no plan file, or the policy changed).
    pub missing: usize,
    /// Decisions replayed per second (VM set-up excluded).
    pub decisions_per_second: f64,
}

impl ReplayReport {
    /// The deployed program is the local build, every replayed decision came out identical,
    /// and, unless `allow_missing`, every decision on chain was replayed.
    pub fn verified(&self, allow_missing: bool) -> bool {
        self.program.matches_local_build && self.identical == self.replayed && (allow_missing || self.missing == 0)
    }
}

/// Replays `authority`'s history of `target_id` from the plan files the operator kept.
pub fn replay_history(
    client: &super::chain::Client,
    authority: &Pubkey,
    target_id: &[u8; 32],
    plans: &[Submission],
    local_program: Option<&[u8]>,
) -> Result<ReplayReport> {
    let programdata = client.programdata()?;
    let program = check_program(&programdata, local_program);
    let policy_address = instructions::policy_address(&client.program_id, authority);
    let policy_account = client.raw_account(&policy_address)?.ok_or_else(|| Error::AuditFailed {
        target: hex::encode(target_id),
        why: format!("no policy {policy_address}"),
    })?;
    let mut replayer = Replayer::new(
        client.program_id,
        program_from_programdata(&programdata),
        policy_address,
        policy_account,
    )?;
    let (chain_address, chain) = client.target_chain(&policy_address, target_id)?;
    let count = chain.map(|c| c.next_seq).unwrap_or(0);
    let started = std::time::Instant::now();
    let mut decisions = Vec::new();
    // The hashes each plan file may be recorded under, each computed once: its plan hash and,
    // for a relocation, its streamed hash (attested in parts).
    let names: Vec<Vec<[u8; 32]>> = plans
        .iter()
        .map(|s| {
            let mut hashes = vec![s.plan.plan_hash::<Sha2>()];
            if !s.plan.slots.is_empty() {
                hashes.push(s.plan.streamed_plan_hash::<Sha2>());
            }
            hashes
        })
        .collect();
    for (address, attestation) in client.attestations(&chain_address, count)? {
        let Some(a) = attestation else { continue };
        match names
            .iter()
            .position(|hashes| hashes.contains(&a.plan_hash))
            .map(|i| &plans[i])
        {
            Some(submission) => {
                let mut records = Vec::new();
                for (witness, _) in a.cited_witnesses() {
                    let record = instructions::witnessed_snapshot_address(
                        &client.program_id,
                        &Pubkey::from(*witness),
                        &a.target_id,
                        &a.snapshot_root,
                    );
                    records.push((record, client.raw_account(&record)?));
                }
                decisions.push(replayer.replay(&address, &a, submission, &records)?)
            }
            None => decisions.push(outcome(&a, "missing: no plan file".into(), None, 0)),
        }
    }
    let replayed = decisions.iter().filter(|d| d.compute_units.is_some()).count();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok(ReplayReport {
        program,
        identical: decisions.iter().filter(|d| d.verdict == "identical").count(),
        missing: decisions.iter().filter(|d| d.verdict.starts_with("missing")).count(),
        replayed,
        decisions_per_second: replayed as f64 / elapsed,
        decisions,
    })
}
