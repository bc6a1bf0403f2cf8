//! The attestor program in LiteSVM: the real .so, deployed with the upgradeable loader, driven
//! by the host's own instruction builders. Each refusal is checked by its error code.

use litesvm::LiteSVM;
use memzinc::chain::{attest_ix, attestation_address, initialize_policy_ix, policy_address, target_chain_address};
use memzinc::Sha2;
use memzinc_verifier::accounts::{Attestation, Policy, TargetChain};
use memzinc_verifier::plan::{PatchPlan, Write};
use memzinc_verifier::wire::{PolicyRules, Region, REGION_EXEC, REGION_READ, REGION_WRITE};
use memzinc_verifier::VerifyError;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use solana_transaction::Transaction;

const RW: u8 = REGION_READ | REGION_WRITE;
const RX: u8 = REGION_READ | REGION_EXEC;

struct Env {
    svm: LiteSVM,
    program_id: Pubkey,
    authority: Keypair,
}

fn env() -> Env {
    let mut svm = LiteSVM::new();
    let program_id = memzinc::chain::attestor_program_id();
    let bytes = std::fs::read(memzinc_tests::program_so()).unwrap();
    svm.add_program(program_id, &bytes).unwrap();
    let authority = Keypair::new();
    svm.airdrop(&authority.pubkey(), 10_000_000_000).unwrap();
    Env {
        svm,
        program_id,
        authority,
    }
}

fn rules() -> PolicyRules {
    PolicyRules {
        wx: true,
        max_bytes: 32,
        max_writes: 4,
    }
}

impl Env {
    fn send(&mut self, ix: Instruction, signers: &[&Keypair]) -> Result<u64, String> {
        let tx =
            Transaction::new_signed_with_payer(&[ix], Some(&signers[0].pubkey()), signers, self.svm.latest_blockhash());
        let result = self
            .svm
            .send_transaction(tx)
            .map(|meta| meta.compute_units_consumed)
            .map_err(|failed| format!("{:?}", failed.err));
        self.svm.expire_blockhash();
        result
    }

    fn init_policy(&mut self) {
        let ix = initialize_policy_ix(&self.program_id, &self.authority.pubkey(), &rules());
        let authority = self.authority.insecure_clone();
        self.send(ix, &[&authority]).expect("initialize_policy");
    }

    fn attest(&mut self, plan: &PatchPlan, seq: u64) -> Result<u64, String> {
        let ix = attest_ix(&self.program_id, &self.authority.pubkey(), plan, seq);
        let authority = self.authority.insecure_clone();
        self.send(ix, &[&authority])
    }

    fn account<T>(&self, address: &Pubkey, decode: fn(&[u8]) -> Result<T, VerifyError>) -> T {
        let account = self.svm.get_account(address).expect("account exists");
        assert_eq!(account.owner, self.program_id);
        decode(&account.data).expect("decodes")
    }
}

fn expect_refusal(result: Result<u64, String>, error: VerifyError) {
    let text = result.expect_err("the program must refuse");
    let code = format!("Custom({})", error.anchor_code());
    assert!(text.contains(&code), "expected {error} ({code}), got {text}");
}

fn plan(writes: &[(u64, &[u8], &[u8])]) -> PatchPlan {
    PatchPlan {
        target_id: memzinc_verifier::hash::target_id::<Sha2>(b"litesvm-target"),
        snapshot_root: [7; 32],
        regions: vec![
            Region {
                start: 0x40_0000,
                end: 0x40_2000,
                flags: RX,
            },
            Region {
                start: 0x60_0000,
                end: 0x60_1000,
                flags: REGION_READ,
            },
            Region {
                start: 0x70_0000,
                end: 0x70_4000,
                flags: RW,
            },
        ],
        writes: writes
            .iter()
            .map(|&(address, old, new)| Write {
                address,
                old: old.to_vec(),
                new: new.to_vec(),
            })
            .collect(),
    }
}

#[test]
fn attest_accepts_a_good_plan_and_chains_records() {
    let mut e = env();
    e.init_policy();
    let policy_key = policy_address(&e.program_id, &e.authority.pubkey());
    let policy = e.account(&policy_key, Policy::decode);
    assert_eq!(policy.rules, rules());
    assert_eq!(policy.authority, e.authority.pubkey().to_bytes());

    let first = plan(&[(0x70_0010, &[0x28, 0x23], &[0x15, 0x00])]);
    let cu = e.attest(&first, 0).expect("good plan accepted");
    println!("attest, 1 write: {cu} compute units (first attestation, creates the target chain)");

    let chain_key = target_chain_address(&e.program_id, &policy_key, &first.target_id);
    let a0 = e.account(&attestation_address(&e.program_id, &chain_key, 0), Attestation::decode);
    assert_eq!(a0.seq, 0);
    assert_eq!(a0.prev_hash, [0; 32]);
    assert_eq!(a0.plan_hash, first.plan_hash::<Sha2>());
    assert_eq!(a0.region_table_hash, first.region_table_hash::<Sha2>());
    assert_eq!(a0.snapshot_root, first.snapshot_root);
    assert_eq!(a0.signer, e.authority.pubkey().to_bytes());
    assert_eq!((a0.write_count, a0.byte_count), (1, 2));
    assert_eq!(a0.hash, a0.computed_hash::<Sha2>());

    let second = plan(&[(0x70_0000, &[1], &[2]), (0x70_3ff0, &[0; 16], &[1; 16])]);
    let cu = e.attest(&second, 1).expect("second plan accepted");
    println!("attest, 2 writes: {cu} compute units (chain exists)");
    let a1 = e.account(&attestation_address(&e.program_id, &chain_key, 1), Attestation::decode);
    assert_eq!(a1.prev_hash, a0.hash, "the second link names the first");
    let chain = e.account(&chain_key, TargetChain::decode);
    assert_eq!((chain.next_seq, chain.head_hash), (2, a1.hash));

    // Replaying seq 0's attestation address is refused: that account exists.
    expect_refusal(e.attest(&first, 0), VerifyError::InvalidPda);
}

#[test]
fn attest_refuses_each_broken_rule_with_its_own_error() {
    let mut e = env();
    e.init_policy();
    let cases: Vec<(PatchPlan, VerifyError)> = vec![
        (
            plan(&[(0x40_0100, &[0x90], &[0xcc])]),
            VerifyError::WriteInExecutableRegion,
        ),
        (plan(&[(0x50_0000, &[0], &[1])]), VerifyError::WriteOutsideRegions),
        (plan(&[(0x70_3fff, &[0, 0], &[1, 1])]), VerifyError::WriteOutsideRegions),
        (plan(&[(0x60_0000, &[0], &[1])]), VerifyError::WriteToReadOnlyRegion),
        (
            plan(&[(0x70_0000, &[0; 4], &[1; 4]), (0x70_0002, &[0], &[1])]),
            VerifyError::OverlappingWrites,
        ),
        (plan(&[(0x70_0000, &[0; 33], &[1; 33])]), VerifyError::PlanTooManyBytes),
        (
            plan(&[
                (0x70_0000, &[0], &[1]),
                (0x70_0001, &[0], &[1]),
                (0x70_0002, &[0], &[1]),
                (0x70_0003, &[0], &[1]),
                (0x70_0004, &[0], &[1]),
            ]),
            VerifyError::PlanTooManyWrites,
        ),
        (plan(&[(0x70_0000, &[0], &[1, 1])]), VerifyError::WriteLengthMismatch),
    ];
    for (p, error) in cases {
        expect_refusal(e.attest(&p, 0), error);
    }
    // Nothing was recorded by any refused plan.
    let policy_key = policy_address(&e.program_id, &e.authority.pubkey());
    let chain_key = target_chain_address(&e.program_id, &policy_key, &plan(&[]).target_id);
    assert!(e.svm.get_account(&chain_key).is_none_or(|a| a.data.is_empty()));
}

#[test]
fn accounts_and_signers_are_checked() {
    let mut e = env();
    e.init_policy();
    let good = plan(&[(0x70_0000, &[0], &[1])]);

    // Re-initialising the policy is refused.
    let ix = initialize_policy_ix(&e.program_id, &e.authority.pubkey(), &rules());
    let authority = e.authority.insecure_clone();
    expect_refusal(e.send(ix, &[&authority]), VerifyError::AlreadyInitialized);

    // Someone else cannot attest under this policy, even paying themselves.
    let intruder = Keypair::new();
    e.svm.airdrop(&intruder.pubkey(), 1_000_000_000).unwrap();
    let mut ix = attest_ix(&e.program_id, &e.authority.pubkey(), &good, 0);
    ix.accounts[0] = solana_instruction::AccountMeta::new(intruder.pubkey(), true);
    expect_refusal(e.send(ix, &[&intruder]), VerifyError::Unauthorized);

    // The authority listed but not signing.
    let mut ix = attest_ix(&e.program_id, &e.authority.pubkey(), &good, 0);
    ix.accounts[0].is_signer = false;
    let payer = Keypair::new();
    e.svm.airdrop(&payer.pubkey(), 1_000_000_000).unwrap();
    expect_refusal(e.send(ix, &[&payer]), VerifyError::MissingSigner);

    // A policy account that is not a policy (type cosplay: the program's own TargetChain).
    e.attest(&good, 0).expect("good plan");
    let policy_key = policy_address(&e.program_id, &e.authority.pubkey());
    let chain_key = target_chain_address(&e.program_id, &policy_key, &good.target_id);
    let mut ix = attest_ix(
        &e.program_id,
        &e.authority.pubkey(),
        &plan(&[(0x70_0000, &[1], &[2])]),
        1,
    );
    ix.accounts[1].pubkey = chain_key;
    let authority = e.authority.insecure_clone();
    expect_refusal(e.send(ix, &[&authority]), VerifyError::AccountDiscriminatorMismatch);

    // A fake system program.
    let mut ix = attest_ix(
        &e.program_id,
        &e.authority.pubkey(),
        &plan(&[(0x70_0000, &[1], &[2])]),
        1,
    );
    ix.accounts[4].pubkey = Pubkey::new_unique();
    expect_refusal(e.send(ix, &[&authority]), VerifyError::WrongSystemProgram);

    // A sequence gap: attestation address for seq 5 when the chain is at 1.
    expect_refusal(e.attest(&plan(&[(0x70_0000, &[1], &[2])]), 5), VerifyError::InvalidPda);

    // Garbage instruction data and unknown discriminators.
    let mut ix = attest_ix(&e.program_id, &e.authority.pubkey(), &good, 1);
    ix.data.truncate(40);
    expect_refusal(e.send(ix.clone(), &[&authority]), VerifyError::MalformedInstruction);
    ix.data = vec![1, 2, 3, 4, 5, 6, 7, 8];
    expect_refusal(e.send(ix, &[&authority]), VerifyError::UnknownInstruction);
}
