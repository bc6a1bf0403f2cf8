//! Builders for every attestor instruction (Anchor wire format: 8-byte discriminator, Borsh
//! arguments) and the addresses they use. The IDL (`idl/attestor.json`) describes the same.

use memzinc_verifier::accounts::{
    BufferHeader, PolicyConfig, RelocationStore, ATTESTATION_SEED, IX_APPEND_SLOTS, IX_ATTEST,
    IX_CHECK_RELOCATION_PART, IX_CLOSE_BUFFER, IX_CLOSE_POLICY, IX_CLOSE_RELOCATION, IX_FINISH_RELOCATION,
    IX_INITIALIZE_POLICY, IX_OPEN_BUFFER, IX_OPEN_RELOCATION, IX_RECORD_APPLIED, IX_REVOKE, IX_UPDATE_POLICY,
    IX_WITNESS_SNAPSHOT, IX_WRITE_BUFFER, PLAN_SEED, POLICY_SEED, RECEIPT_SEED, SNAPSHOT_SEED, TARGET_SEED,
};
use memzinc_verifier::relocation_stream::{StreamState, RECORD_LEN};
use solana_instruction::{AccountMeta, Instruction};
use solana_pubkey::Pubkey;

fn system_program() -> AccountMeta {
    AccountMeta::new_readonly(solana_sdk_ids::system_program::id(), false)
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

pub fn plan_marker_address(program_id: &Pubkey, chain: &Pubkey, plan_hash: &[u8; 32]) -> Pubkey {
    Pubkey::find_program_address(&[PLAN_SEED, chain.as_ref(), plan_hash], program_id).0
}

pub fn receipt_address(program_id: &Pubkey, attestation: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(&[RECEIPT_SEED, attestation.as_ref()], program_id).0
}

/// Where `witness` records that `target_id` had `snapshot_root`.
pub fn witnessed_snapshot_address(
    program_id: &Pubkey,
    witness: &Pubkey,
    target_id: &[u8; 32],
    snapshot_root: &[u8; 32],
) -> Pubkey {
    Pubkey::find_program_address(&[SNAPSHOT_SEED, witness.as_ref(), target_id, snapshot_root], program_id).0
}

/// `witness_snapshot`: `witness` vouches that `target_id` had `snapshot_root`; `payer` pays.
pub fn witness_snapshot(
    program_id: &Pubkey,
    witness: &Pubkey,
    payer: &Pubkey,
    target_id: &[u8; 32],
    snapshot_root: &[u8; 32],
) -> Instruction {
    ix(
        program_id,
        IX_WITNESS_SNAPSHOT,
        &[target_id, snapshot_root],
        vec![
            AccountMeta::new(*witness, true),
            AccountMeta::new(*payer, true),
            AccountMeta::new(
                witnessed_snapshot_address(program_id, witness, target_id, snapshot_root),
                false,
            ),
            system_program(),
        ],
    )
}

fn ix(program_id: &Pubkey, disc: [u8; 8], args: &[&[u8]], accounts: Vec<AccountMeta>) -> Instruction {
    let mut data = disc.to_vec();
    for a in args {
        data.extend_from_slice(a);
    }
    Instruction {
        program_id: *program_id,
        accounts,
        data,
    }
}

pub fn initialize_policy(program_id: &Pubkey, authority: &Pubkey, config: &PolicyConfig) -> Instruction {
    ix(
        program_id,
        IX_INITIALIZE_POLICY,
        &[&config.encode()],
        vec![
            AccountMeta::new(*authority, true),
            AccountMeta::new(policy_address(program_id, authority), false),
            system_program(),
        ],
    )
}

pub fn update_policy(program_id: &Pubkey, authority: &Pubkey, config: &PolicyConfig) -> Instruction {
    ix(
        program_id,
        IX_UPDATE_POLICY,
        &[&config.encode()],
        vec![
            AccountMeta::new_readonly(*authority, true),
            AccountMeta::new(policy_address(program_id, authority), false),
        ],
    )
}

pub fn close_policy(program_id: &Pubkey, authority: &Pubkey) -> Instruction {
    ix(
        program_id,
        IX_CLOSE_POLICY,
        &[],
        vec![
            AccountMeta::new(*authority, true),
            AccountMeta::new(policy_address(program_id, authority), false),
        ],
    )
}

/// Allocates `buffer` (a fresh keypair's account, owned by the attestor, `len` bytes of room)
/// and stamps it for `plan_hash`: two instructions for one transaction, signed by both.
pub fn open_buffer(
    program_id: &Pubkey,
    uploader: &Pubkey,
    buffer: &Pubkey,
    plan_hash: &[u8; 32],
    len: u32,
    rent_lamports: u64,
) -> Vec<Instruction> {
    let space = (BufferHeader::LEN + len as usize) as u64;
    vec![
        solana_system_interface::instruction::create_account(uploader, buffer, rent_lamports, space, program_id),
        ix(
            program_id,
            IX_OPEN_BUFFER,
            &[plan_hash, &len.to_le_bytes()],
            vec![
                AccountMeta::new_readonly(*uploader, true),
                AccountMeta::new(*buffer, true),
            ],
        ),
    ]
}

pub fn write_buffer(
    program_id: &Pubkey,
    uploader: &Pubkey,
    buffer: &Pubkey,
    plan_hash: &[u8; 32],
    offset: u32,
    bytes: &[u8],
) -> Instruction {
    ix(
        program_id,
        IX_WRITE_BUFFER,
        &[
            plan_hash,
            &offset.to_le_bytes(),
            &(bytes.len() as u32).to_le_bytes(),
            bytes,
        ],
        vec![
            AccountMeta::new_readonly(*uploader, true),
            AccountMeta::new(*buffer, false),
        ],
    )
}

pub fn close_buffer(program_id: &Pubkey, uploader: &Pubkey, buffer: &Pubkey, plan_hash: &[u8; 32]) -> Instruction {
    ix(
        program_id,
        IX_CLOSE_BUFFER,
        &[plan_hash],
        vec![AccountMeta::new(*uploader, true), AccountMeta::new(*buffer, false)],
    )
}

/// `attest` of the plan uploaded into `buffer` by `signer`, under `authority`'s policy, as
/// attestation number `seq` of `target_id`, citing the witnessed-snapshot records `witnessed`
/// (`witnessed_snapshot_address`) of the plan's snapshot root.
#[allow(clippy::too_many_arguments)]
pub fn attest(
    program_id: &Pubkey,
    signer: &Pubkey,
    authority: &Pubkey,
    target_id: &[u8; 32],
    plan_hash: &[u8; 32],
    seq: u64,
    buffer: &Pubkey,
    witnessed: &[Pubkey],
) -> Instruction {
    let policy = policy_address(program_id, authority);
    let chain = target_chain_address(program_id, &policy, target_id);
    let mut accounts = vec![
        AccountMeta::new(*signer, true),
        AccountMeta::new_readonly(policy, false),
        AccountMeta::new(chain, false),
        AccountMeta::new(attestation_address(program_id, &chain, seq), false),
        AccountMeta::new(plan_marker_address(program_id, &chain, plan_hash), false),
        AccountMeta::new(*buffer, false),
        system_program(),
    ];
    accounts.extend(witnessed.iter().map(|w| AccountMeta::new_readonly(*w, false)));
    ix(program_id, IX_ATTEST, &[plan_hash], accounts)
}

pub fn revoke(program_id: &Pubkey, authority: &Pubkey, target_id: &[u8; 32], seq: u64) -> Instruction {
    let policy = policy_address(program_id, authority);
    let chain = target_chain_address(program_id, &policy, target_id);
    ix(
        program_id,
        IX_REVOKE,
        &[&seq.to_le_bytes()],
        vec![
            AccountMeta::new_readonly(*authority, true),
            AccountMeta::new_readonly(policy, false),
            AccountMeta::new_readonly(chain, false),
            AccountMeta::new(attestation_address(program_id, &chain, seq), false),
        ],
    )
}

#[allow(clippy::too_many_arguments)]
pub fn record_applied(
    program_id: &Pubkey,
    signer: &Pubkey,
    authority: &Pubkey,
    target_id: &[u8; 32],
    seq: u64,
    outcome: u8,
    readback_hash: &[u8; 32],
) -> Instruction {
    let policy = policy_address(program_id, authority);
    let chain = target_chain_address(program_id, &policy, target_id);
    let attestation = attestation_address(program_id, &chain, seq);
    ix(
        program_id,
        IX_RECORD_APPLIED,
        &[&seq.to_le_bytes(), &[outcome], readback_hash],
        vec![
            AccountMeta::new(*signer, true),
            AccountMeta::new_readonly(policy, false),
            AccountMeta::new_readonly(chain, false),
            AccountMeta::new_readonly(attestation, false),
            AccountMeta::new(receipt_address(program_id, &attestation), false),
            system_program(),
        ],
    )
}

/// The bytes each write of [`upload`] carries (the last may carry fewer). A transaction is
/// 1,232 bytes; a write_buffer with one signature and three accounts leaves a little over 1,000
/// bytes for data.
pub const UPLOAD_CHUNK: usize = 900;

/// The instructions that upload `submission` into its buffer, each fitting one transaction.
pub fn upload(
    program_id: &Pubkey,
    uploader: &Pubkey,
    buffer: &Pubkey,
    plan_hash: &[u8; 32],
    submission: &[u8],
) -> Vec<Instruction> {
    submission
        .chunks(UPLOAD_CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            write_buffer(
                program_id,
                uploader,
                buffer,
                plan_hash,
                (i * UPLOAD_CHUNK) as u32,
                chunk,
            )
        })
        .collect()
}

/// ComputeBudget `SetComputeUnitLimit`: attest with many proofs needs more than the default.
pub fn compute_unit_limit(units: u32) -> Instruction {
    let mut data = vec![2u8];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction {
        program_id: solana_sdk_ids::compute_budget::id(),
        accounts: vec![],
        data,
    }
}

/// The buffer keypair for uploading `plan_hash` as `uploader`: derived from the uploader's
/// secret, so an interrupted upload is found and resumed, and nobody else can derive it.
pub fn buffer_keypair(uploader: &solana_keypair::Keypair, plan_hash: &[u8; 32]) -> solana_keypair::Keypair {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"memzinc/buffer-key/v1");
    h.update(uploader.secret_bytes());
    h.update(plan_hash);
    solana_keypair::Keypair::new_from_array(h.finalize().into())
}

/// Stream slots per `append_slots` (896 bytes of a transaction's 1,232).
pub const APPEND_SLOTS: usize = 56;

/// A relocation attested in parts, as `attest` sends it to a cluster and `audit --replay` runs
/// it again: its stores, its slot table cut into appends, its parts.
pub struct InParts {
    pub store_count: usize,
    /// Records per store.
    pub per_store: u32,
    pub appends: Vec<SlotAppend>,
    pub parts: Vec<memzinc_verifier::plan::StreamPart>,
}

/// One `append_slots` of a relocation's table.
pub struct SlotAppend {
    /// The index of its first slot in the table.
    pub first: u32,
    /// Its encoded stream slots.
    pub slots: Vec<u8>,
    /// The stores (indices among the relocation's) they land in.
    pub stores: std::ops::Range<usize>,
}

impl SlotAppend {
    /// Its instruction, for the relocation with stores `stores` (all of them, in order).
    pub fn instruction(
        &self,
        program_id: &Pubkey,
        authority: &Pubkey,
        relocation: &Pubkey,
        stores: &[Pubkey],
    ) -> Instruction {
        append_slots(
            program_id,
            authority,
            relocation,
            &stores[self.stores.clone()],
            self.first,
            &self.slots,
        )
    }
}

impl InParts {
    /// `submission` (a relocation) in the fewest stores, cut into parts each within the
    /// estimated compute budget (`PART_CU_BUDGET`), of at most `max_slots` slots when given,
    /// and fitting one buffer with the header and region proofs every part carries.
    pub fn of(
        submission: &memzinc_verifier::plan::Submission,
        max_slots: Option<usize>,
    ) -> memzinc::base::Result<InParts> {
        let stores = InParts::fewest_stores(submission.plan.slots.len())?;
        InParts::in_stores(submission, max_slots, stores)
    }

    /// The fewest stores that hold a relocation of `slots` objects, refused over
    /// `relocation_stream::MAX_SLOTS` (more than one transaction loads).
    pub fn fewest_stores(slots: usize) -> memzinc::base::Result<usize> {
        use memzinc::base::Error;
        use memzinc_verifier::accounts::MAX_STORES;
        use memzinc_verifier::relocation_stream::{Records, MAX_SLOTS};
        if slots > MAX_SLOTS as usize {
            return Err(Error::Usage(format!(
                "a relocation of {slots} objects needs more than {MAX_STORES} stores of 10 MiB; a transaction loads at most 64 MiB, which holds {MAX_SLOTS} objects: plan it in rounds (`plan --relocate` does by default)"
            )));
        }
        let most_per_store = Records::per_store(RelocationStore::MAX_ACCOUNT_LEN - RelocationStore::LEN);
        Ok(slots.div_ceil(most_per_store as usize))
    }

    /// As [`InParts::of`], in `store_count` stores (more than the fewest spreads a small
    /// relocation's records, as tests do).
    pub fn in_stores(
        submission: &memzinc_verifier::plan::Submission,
        max_slots: Option<usize>,
        store_count: usize,
    ) -> memzinc::base::Result<InParts> {
        use memzinc_verifier::instruction::MAX_BUFFER_LEN;
        use memzinc_verifier::relocation_stream::Records;
        let plan = &submission.plan;
        let n = plan.slots.len() as u32;
        let per_store = n.div_ceil(store_count.max(1) as u32);
        let appends = plan
            .stream_slots()
            .chunks(APPEND_SLOTS)
            .enumerate()
            .map(|(i, chunk)| {
                let first = (i * APPEND_SLOTS) as u32;
                SlotAppend {
                    first,
                    slots: chunk.iter().flat_map(|s| s.encode()).collect(),
                    stores: Records::append_stores(first, chunk.len() as u32, per_store),
                }
            })
            .collect();
        // What every part carries besides its pages and writes: the header and region proofs.
        let overhead = memzinc_verifier::plan::Submission {
            plan: memzinc_verifier::plan::PatchPlan {
                writes: Vec::new(),
                slots: Vec::new(),
                ..plan.clone()
            },
            evidence: memzinc_verifier::plan::Evidence {
                pages: Vec::new(),
                ..submission.evidence.clone()
            },
        }
        .encode()
        .len();
        let room = (MAX_BUFFER_LEN as usize).saturating_sub(overhead + 4096);
        let parts = submission.stream_parts(room, max_slots.unwrap_or(usize::MAX).max(1))?;
        Ok(InParts {
            store_count,
            per_store,
            appends,
            parts,
        })
    }

    /// Checks the relocation in memory as the program will check it in these appends and
    /// parts (`StreamedCheck`): every append, every part as its buffer will hold it, the
    /// finish under `rules`. Returns the streamed plan hash.
    pub fn check(
        &self,
        plan: &memzinc_verifier::plan::PatchPlan,
        rules: &memzinc_verifier::wire::PolicyRules,
        symbol_rules: &memzinc_verifier::wire::SymbolRules,
    ) -> memzinc::base::Result<[u8; 32]> {
        use memzinc::base::Sha2;
        let mut check = memzinc_verifier::plan::StreamedCheck::open::<Sha2>(plan, self.per_store);
        for append in &self.appends {
            check.append::<Sha2>(append.first, &append.slots)?;
        }
        for (i, part) in self.parts.iter().enumerate() {
            check.part::<Sha2>(rules, symbol_rules, &self.encoded_part(i)?, part.hi)?;
        }
        Ok(check.finish::<Sha2>(rules)?.0)
    }

    /// Part `i`'s submission as a buffer holds it, refused if it does not fit one.
    pub fn encoded_part(&self, i: usize) -> memzinc::base::Result<Vec<u8>> {
        use memzinc_verifier::instruction::MAX_BUFFER_LEN;
        let bytes = self.parts[i].submission.encode();
        if bytes.len() > MAX_BUFFER_LEN as usize {
            return Err(memzinc::base::Error::Usage(format!(
                "a part of the relocation takes {} bytes, more than a buffer's {MAX_BUFFER_LEN} (one write or slot too large)",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// The size of a relocation's store holding `per_store` records.
pub fn relocation_store_len(per_store: u32) -> usize {
    RelocationStore::LEN + per_store as usize * RECORD_LEN
}

/// Allocates one account of a relocation (owner: the attestor): the relocation itself
/// (`Relocation::LEN`) or a store (`relocation_store_len`). One per transaction: a transaction
/// may allocate at most 20 MiB.
pub fn allocate_relocation_account(
    program_id: &Pubkey,
    authority: &Pubkey,
    account: &Pubkey,
    space: usize,
    rent_lamports: u64,
) -> Instruction {
    solana_system_interface::instruction::create_account(authority, account, rent_lamports, space as u64, program_id)
}

/// `open_relocation` of the relocation `state` starts from (`PatchPlan::stream_start`), its
/// records `per_store` to each of `stores`; the relocation and the stores sign.
pub fn open_relocation(
    program_id: &Pubkey,
    authority: &Pubkey,
    policy_authority: &Pubkey,
    relocation: &Pubkey,
    stores: &[Pubkey],
    state: &StreamState,
    per_store: u32,
) -> Instruction {
    let mut accounts = vec![
        AccountMeta::new_readonly(*authority, true),
        AccountMeta::new_readonly(policy_address(program_id, policy_authority), false),
        AccountMeta::new(*relocation, true),
    ];
    accounts.extend(stores.iter().map(|s| AccountMeta::new(*s, true)));
    ix(
        program_id,
        IX_OPEN_RELOCATION,
        &[
            &state.target_id,
            &state.snapshot_root,
            &state.model_hash,
            &state.region_table_hash,
            &state.slot_count.to_le_bytes(),
            &per_store.to_le_bytes(),
        ],
        accounts,
    )
}

fn relocation_accounts(first: Vec<AccountMeta>, stores: &[Pubkey]) -> Vec<AccountMeta> {
    let mut accounts = first;
    accounts.extend(stores.iter().map(|s| AccountMeta::new(*s, false)));
    accounts
}

/// `append_slots` of `slots` (whole encoded stream slots), the table's slots `first..`, into
/// `stores`, the ones they land in (`Records::append_stores`).
pub fn append_slots(
    program_id: &Pubkey,
    authority: &Pubkey,
    relocation: &Pubkey,
    stores: &[Pubkey],
    first: u32,
    slots: &[u8],
) -> Instruction {
    ix(
        program_id,
        IX_APPEND_SLOTS,
        &[&first.to_le_bytes(), &(slots.len() as u32).to_le_bytes(), slots],
        relocation_accounts(
            vec![
                AccountMeta::new_readonly(*authority, true),
                AccountMeta::new(*relocation, false),
            ],
            stores,
        ),
    )
}

/// `check_relocation_part` of the part uploaded into `buffer` under the label `plan_hash`,
/// reaching up to `hi`.
#[allow(clippy::too_many_arguments)]
pub fn check_relocation_part(
    program_id: &Pubkey,
    authority: &Pubkey,
    policy_authority: &Pubkey,
    relocation: &Pubkey,
    buffer: &Pubkey,
    stores: &[Pubkey],
    plan_hash: &[u8; 32],
    hi: u64,
) -> Instruction {
    ix(
        program_id,
        IX_CHECK_RELOCATION_PART,
        &[plan_hash, &hi.to_le_bytes()],
        relocation_accounts(
            vec![
                AccountMeta::new(*authority, true),
                AccountMeta::new_readonly(policy_address(program_id, policy_authority), false),
                AccountMeta::new(*relocation, false),
                AccountMeta::new(*buffer, false),
            ],
            stores,
        ),
    )
}

/// `finish_relocation`: records the relocation as attestation number `seq` of `target_id` under
/// `plan_hash` (`PatchPlan::streamed_plan_hash`), citing the witnessed-snapshot records.
#[allow(clippy::too_many_arguments)]
pub fn finish_relocation(
    program_id: &Pubkey,
    authority: &Pubkey,
    policy_authority: &Pubkey,
    target_id: &[u8; 32],
    plan_hash: &[u8; 32],
    seq: u64,
    relocation: &Pubkey,
    witnessed: &[Pubkey],
) -> Instruction {
    let policy = policy_address(program_id, policy_authority);
    let chain = target_chain_address(program_id, &policy, target_id);
    let mut accounts = vec![
        AccountMeta::new(*authority, true),
        AccountMeta::new_readonly(policy, false),
        AccountMeta::new(chain, false),
        AccountMeta::new(attestation_address(program_id, &chain, seq), false),
        AccountMeta::new(plan_marker_address(program_id, &chain, plan_hash), false),
        AccountMeta::new(*relocation, false),
        system_program(),
    ];
    accounts.extend(witnessed.iter().map(|w| AccountMeta::new_readonly(*w, false)));
    ix(program_id, IX_FINISH_RELOCATION, &[], accounts)
}

/// `close_relocation` of `accounts` (the relocation and its stores, any of them).
pub fn close_relocation(program_id: &Pubkey, authority: &Pubkey, accounts: &[Pubkey]) -> Instruction {
    let mut metas = vec![AccountMeta::new(*authority, true)];
    metas.extend(accounts.iter().map(|a| AccountMeta::new(*a, false)));
    ix(program_id, IX_CLOSE_RELOCATION, &[], metas)
}

/// The keypair of a relocation's account number `index` (0: the relocation, then its stores)
/// for `plan_hash` (its streamed plan hash): derived as `buffer_keypair` is.
pub fn relocation_keypair(
    uploader: &solana_keypair::Keypair,
    plan_hash: &[u8; 32],
    index: u8,
) -> solana_keypair::Keypair {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"memzinc/relocation-key/v1");
    h.update(uploader.secret_bytes());
    h.update(plan_hash);
    h.update([index]);
    solana_keypair::Keypair::new_from_array(h.finalize().into())
}
