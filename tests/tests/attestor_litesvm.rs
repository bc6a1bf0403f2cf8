//! The attestor program in LiteSVM: the real .so, deployed with the upgradeable loader, driven
//! by the host's own instruction builders. Every refusal is checked by its error code; the
//! security tests follow the well-known Solana/Anchor attack classes (see the test names).

use memzinc::base::Sha2;
use memzinc_cli::attest::instructions::{self as ix, attestation_address, plan_marker_address};
use memzinc_tests::relocation;
use memzinc_tests::svm::{config, env, env_with, funded, Env};
use memzinc_tests::synthetic::{self, RW};
use memzinc_verifier::accounts::{
    Attestation, PlanMarker, Policy, PolicyConfig, Receipt, Relocation, TargetChain, EVENT_ATTESTATION_REVOKED,
    EVENT_POLICY_INITIALIZED, EVENT_POLICY_UPDATED, OUTCOME_APPLIED,
};
use memzinc_verifier::plan::Submission;
use memzinc_verifier::wire::{field_kind, Region, SymbolRule, SymbolRules};
use memzinc_verifier::VerifyError;
use solana_account::Account;
use solana_instruction::AccountMeta;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

fn expect_refusal<T: std::fmt::Debug>(result: Result<T, String>, error: VerifyError) {
    let text = result.expect_err("the program must refuse");
    let code = format!("Custom({})", error.anchor_code());
    assert!(text.contains(&code), "expected {error} ({code}), got {text}");
}

#[test]
fn attest_accepts_a_proven_plan_and_chains_records() {
    let mut e = env();
    let policy = e.account(&e.policy_key(), Policy::decode);
    assert_eq!(policy.config, config(&[]));
    assert_eq!(policy.authority, e.authority.pubkey().to_bytes());

    let first = synthetic::submission("litesvm", &[(0x70_0010, 2)]);
    let a = e.authority.insecure_clone();
    e.upload(&a, &first);
    let attest = e.attest_ix(&a, &first, 0);
    let (cu, logs) = e
        .transact(vec![ix::compute_unit_limit(1_400_000), attest], &[&a])
        .expect("good plan accepted");
    println!("attest, 1 write with Merkle evidence: {cu} compute units (first attestation, creates the chain)");

    let chain_key = e.chain_key(&first.plan.target_id);
    let a0 = e.account(&attestation_address(&e.program_id, &chain_key, 0), Attestation::decode);
    assert_eq!((a0.seq, a0.prev_hash), (0, [0; 32]));
    assert_eq!(a0.plan_hash, first.plan.plan_hash::<Sha2>());
    assert_eq!(a0.region_table_hash, first.plan.region_table_hash::<Sha2>());
    assert_eq!(a0.snapshot_root, first.plan.snapshot_root);
    assert_eq!(a0.signer, e.authority.pubkey().to_bytes());
    assert_eq!((a0.write_count, a0.byte_count, a0.revoked), (1, 2, false));
    assert_eq!(a0.hash, a0.computed_hash::<Sha2>());
    // The policy witness whose record counted, with the record's slot.
    let record = e.account(
        &ix::witnessed_snapshot_address(
            &e.program_id,
            &memzinc_tests::svm::witness().pubkey(),
            &first.plan.target_id,
            &first.plan.snapshot_root,
        ),
        memzinc_verifier::accounts::WitnessedSnapshot::decode,
    );
    assert_eq!(
        a0.cited_witnesses().map(|(w, s)| (*w, s)).collect::<Vec<_>>(),
        vec![(record.witness, record.slot)]
    );
    // The Anchor event carries the same record (`Program data: base64(discriminator + body)`).
    use base64::Engine;
    let event = logs
        .iter()
        .filter_map(|l| l.strip_prefix("Program data: "))
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .find_map(|bytes| Attestation::decode_event(&bytes).ok())
        .expect("an AttestationRecorded event in the logs");
    assert_eq!(event, Attestation { bump: 0, ..a0 });
    let marker = e.account(
        &plan_marker_address(&e.program_id, &chain_key, &a0.plan_hash),
        PlanMarker::decode,
    );
    assert_eq!(marker.seq, 0);
    // The buffer was closed and its rent returned.
    let buffer = e.buffer(&e.authority, &a0.plan_hash);
    assert!(e
        .svm
        .get_account(&buffer)
        .is_none_or(|a| a.lamports == 0 && a.data.is_empty()));

    let second = synthetic::submission("litesvm", &[(0x70_0000, 1), (0x70_3ff0, 16)]);
    let cu = e.attest(&second, 1).expect("second plan accepted");
    println!("attest, 2 writes: {cu} compute units (chain exists)");
    let a1 = e.account(&attestation_address(&e.program_id, &chain_key, 1), Attestation::decode);
    assert_eq!(a1.prev_hash, a0.hash, "the second link names the first");
    let chain = e.account(&chain_key, TargetChain::decode);
    assert_eq!((chain.next_seq, chain.head_hash), (2, a1.hash));
}

#[test]
fn each_broken_rule_is_refused_with_its_own_error() {
    let mut e = env();
    let cases: Vec<(Submission, VerifyError)> = vec![
        (
            synthetic::submission("rules", &[(0x40_0100, 1)]),
            VerifyError::WriteInExecutableRegion,
        ),
        (
            synthetic::submission("rules", &[(0x50_0000, 1)]),
            VerifyError::WriteOutsideRegions,
        ),
        (
            synthetic::submission("rules", &[(0x60_0000, 1)]),
            VerifyError::WriteToReadOnlyRegion,
        ),
        (
            synthetic::submission("rules", &[(0x70_0000, 4), (0x70_0002, 1)]),
            VerifyError::OverlappingWrites,
        ),
        (
            synthetic::submission("rules", &[(0x70_0000, 65)]),
            VerifyError::PlanTooManyBytes,
        ),
        (
            synthetic::submission("rules", &(0..9).map(|i| (0x70_0000 + i * 8, 1)).collect::<Vec<_>>()),
            VerifyError::PlanTooManyWrites,
        ),
    ];
    for (s, error) in cases {
        expect_refusal(e.attest(&s, 0), error);
    }
    // Nothing was recorded by any refused plan.
    let target = synthetic::submission("rules", &[(0x70_0000, 1)]).plan.target_id;
    assert!(e
        .svm
        .get_account(&e.chain_key(&target))
        .is_none_or(|a| a.data.is_empty()));
}

/// The policy of the symbol-rule tests, relative to the synthetic snapshot's `state`
/// (0x70_0100): any bytes in +0..16, a u32 in [1, 100] at +16, an i16 in [-5, 5] at +20, a
/// pointer at +24.
fn symbol_policy() -> PolicyConfig {
    let state = synthetic::symbol_key("state");
    let rule = |start, end, kind, min: i64, max: i64| SymbolRule {
        symbol: state,
        start,
        end,
        kind,
        min: min as u64,
        max: max as u64,
    };
    PolicyConfig {
        symbol_rules: SymbolRules::from_rules(&[
            rule(0, 16, field_kind::BYTES, 0, 0),
            rule(16, 20, field_kind::UNSIGNED, 1, 100),
            rule(20, 22, field_kind::SIGNED, -5, 5),
            rule(24, 32, field_kind::POINTER, 0, 0),
        ])
        .unwrap(),
        ..config(&[])
    }
}

const STATE: u64 = 0x70_0100;

type Writes = Vec<(u64, Vec<u8>)>;

#[test]
fn symbol_rules_accept_a_good_plan_and_refuse_each_violation() {
    let mut e = env_with(&symbol_policy());
    let policy = e.account(&e.policy_key(), Policy::decode);
    assert_eq!(policy.config, symbol_policy(), "the account stores the rules as given");
    let state = [synthetic::symbol_key("state")];
    let write = |offset: u64, bytes: &[u8]| (STATE + offset, bytes.to_vec());
    let ro_pointer = 0x60_0010u64.to_le_bytes(); // into the read-only data region: readable

    let good = synthetic::submission_with(
        "symbols",
        &[
            write(0, &[1, 2]),
            write(16, &50u32.to_le_bytes()),
            write(20, &(-5i16).to_le_bytes()),
            write(24, &ro_pointer),
        ],
        &[0x60_0010],
        &state,
    );
    let cu = e.attest(&good, 0).expect("a plan inside the symbol rules is accepted");
    println!("attest, 4 writes under 4 symbol rules with a symbol proof: {cu} compute units");

    // Each rule refuses its own violation; nothing is recorded (the next seq stays 1).
    let unmapped = 0x90_0000u64.to_le_bytes();
    let cases: Vec<(Writes, VerifyError)> = vec![
        (vec![write(40, &[9])], VerifyError::WriteOutsideAllowedRanges),
        (vec![(0x70_3000, vec![9])], VerifyError::WriteOutsideAllowedRanges),
        (vec![write(16, &[7, 0])], VerifyError::PartialFieldWrite),
        (vec![write(12, &[1; 6])], VerifyError::PartialFieldWrite),
        (
            vec![write(16, &101u32.to_le_bytes())],
            VerifyError::FieldValueOutOfBounds,
        ),
        (vec![write(16, &0u32.to_le_bytes())], VerifyError::FieldValueOutOfBounds),
        (
            vec![write(20, &(-6i16).to_le_bytes())],
            VerifyError::FieldValueOutOfBounds,
        ),
        (vec![write(24, &unmapped)], VerifyError::PointerTargetUnreadable),
        // A mapped address, but its region is not among the plan's proven regions.
        (vec![write(24, &ro_pointer)], VerifyError::PointerTargetUnreadable),
        (
            vec![write(24, &0u64.to_le_bytes())],
            VerifyError::PointerTargetUnreadable,
        ),
    ];
    for (writes, error) in cases {
        let s = synthetic::submission_with("symbols", &writes, &[], &state);
        expect_refusal(e.attest(&s, 1), error);
    }
    // Without the symbol's proof the rules cannot be judged.
    let s = synthetic::submission_with("symbols", &[write(0, &[3])], &[], &[]);
    expect_refusal(e.attest(&s, 1), VerifyError::MissingSymbolProof);
    let chain = e.account(&e.chain_key(&good.plan.target_id), TargetChain::decode);
    assert_eq!(chain.next_seq, 1);
}

#[test]
fn forged_symbol_proofs_are_refused() {
    let mut e = env_with(&symbol_policy());
    let keys = [synthetic::symbol_key("state"), synthetic::symbol_key("table")];
    // Every forgery wants to write into `table` (0x70_1000), which no rule allows, by making
    // `state` appear to be there. Each case is a distinct plan, so each has its own buffer.
    let forged = |value: u8| synthetic::submission_with("forged", &[(0x70_1000, vec![value])], &[], &keys);
    let state_index = |s: &Submission| s.evidence.symbols.iter().position(|p| p.symbol.key == keys[0]).unwrap();

    // Honest evidence: the write is outside the allowed ranges.
    expect_refusal(e.attest(&forged(1), 0), VerifyError::WriteOutsideAllowedRanges);
    // `state` claimed at table's address.
    let mut s = forged(2);
    let i = state_index(&s);
    s.evidence.symbols[i].symbol.address = 0x70_1000;
    expect_refusal(e.attest(&s, 0), VerifyError::InvalidSymbolProof);
    // table's leaf, index and siblings relabelled with state's key.
    let mut s = forged(3);
    let table = s.evidence.symbols[1 - state_index(&s)].clone();
    s.evidence.symbols = vec![memzinc_verifier::plan::SymbolProof {
        symbol: memzinc_verifier::plan::SnapshotSymbol {
            key: keys[0],
            ..table.symbol
        },
        ..table
    }];
    expect_refusal(e.attest(&s, 0), VerifyError::InvalidSymbolProof);
    // A flipped sibling.
    let mut s = forged(4);
    let i = state_index(&s);
    s.evidence.symbols[i].siblings[0][0] ^= 1;
    expect_refusal(e.attest(&s, 0), VerifyError::InvalidSymbolProof);
    // Proofs out of key order (so duplicates and choices between them are impossible).
    let mut s = forged(5);
    s.evidence.symbols.swap(0, 1);
    expect_refusal(e.attest(&s, 0), VerifyError::InvalidSymbolProof);
    // A symbol tree of the planner's own that puts `state` at table, with the snapshot root
    // recomputed from it: the evidence is consistent, only the witnesses can refuse it.
    let fake = memzinc_verifier::plan::SnapshotTrees::new::<Sha2>(
        synthetic::regions(),
        synthetic::page_leaves(&synthetic::regions()),
    )
    .with_symbols::<Sha2>(vec![memzinc_verifier::plan::SnapshotSymbol {
        key: keys[0],
        address: 0x70_1000,
        size: 64,
    }]);
    let s = synthetic::submission_against(
        &fake,
        &synthetic::regions(),
        "forged",
        &[(0x70_1000, vec![6])],
        &[],
        &keys[..1],
    );
    assert_eq!(
        s.plan.snapshot_root,
        s.evidence.snapshot_root::<Sha2>(),
        "a consistent forgery"
    );
    assert_ne!(s.plan.snapshot_root, synthetic::trees().root::<Sha2>());
    expect_forged_root_refused(&mut e, &s);
}

/// A plan whose snapshot root the planner computed from trees of its own: refused because no
/// policy witness recorded that root (the planner's own record does not count), and accepted
/// only once a policy witness does, which shows the witness check is the one that refuses it.
fn expect_forged_root_refused(e: &mut memzinc_tests::svm::Env, s: &Submission) {
    let a = e.authority.insecure_clone();
    e.upload_unwitnessed(&a, s);
    // The policy witness never recorded this root: there is no record to cite.
    let attest = e.attest_ix(&a, s, 0);
    expect_refusal(e.send_attest(&a, attest), VerifyError::WrongAccountOwner);
    let attest = e.attest_ix_citing(&a, s, 0, &[]);
    expect_refusal(e.send_attest(&a, attest), VerifyError::NotEnoughWitnesses);
    // The planner records the root itself: its key is not a witness of the policy.
    e.witness_as(&a, s).expect("anyone may record a root");
    let attest = e.attest_ix_citing(&a, s, 0, &[a.pubkey()]);
    expect_refusal(e.send_attest(&a, attest), VerifyError::WitnessNotInPolicy);
    // Were a policy witness to vouch for the forged root, every other check would pass.
    e.witness_as(&memzinc_tests::svm::witness(), s).unwrap();
    let attest = e.attest_ix(&a, s, 0);
    e.send_attest(&a, attest)
        .expect("the forgery is consistent: the witnesses are the defence");
}

#[test]
fn symbol_rules_in_a_policy_are_validated() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let bad_rule = SymbolRule {
        symbol: [1; 32],
        start: 0,
        end: 3, // a 3-byte integer
        kind: field_kind::UNSIGNED,
        min: 0,
        max: 1,
    };
    let mut update = ix::update_policy(&e.program_id, &a.pubkey(), &config(&[]));
    let with_rules = |rules: &[SymbolRule]| {
        let mut data = config(&[]).encode();
        let n = data.len();
        data.truncate(n - 4); // the empty Vec<SymbolRule>
        data.extend((rules.len() as u32).to_le_bytes());
        rules.iter().for_each(|r| data.extend(r.encode()));
        data
    };
    update.data = [&update.data[..8], &with_rules(&[bad_rule])[..]].concat();
    expect_refusal(e.send(vec![update.clone()], &[&a]), VerifyError::InvalidPolicyRules);
    let fine = SymbolRule { end: 4, ..bad_rule };
    update.data = [&update.data[..8], &with_rules(&[fine; 9])[..]].concat();
    expect_refusal(e.send(vec![update.clone()], &[&a]), VerifyError::TooManySymbolRules);
    update.data = [&update.data[..8], &with_rules(&[fine; 8])[..]].concat();
    e.send(vec![update], &[&a]).expect("8 valid rules");
    let policy = e.account(&e.policy_key(), Policy::decode);
    assert_eq!(policy.config.symbol_rules.len(), 8);
    assert_eq!(policy.revision, 1);
}

#[test]
fn evidence_faults_are_refused() {
    let mut e = env();
    let good = synthetic::submission("evidence", &[(0x70_0100, 4)]);

    // Wrong snapshot root: the plan names a root its evidence does not hash to.
    let mut s = good.clone();
    s.plan.snapshot_root[0] ^= 1;
    expect_refusal(e.attest(&s, 0), VerifyError::SnapshotRootMismatch);

    // Old bytes that are not the snapshot's.
    let mut s = good.clone();
    s.plan.writes[0].old[0] ^= 1;
    expect_refusal(e.attest(&s, 0), VerifyError::OldBytesMismatch);

    // A page whose contents were altered no longer proves.
    let mut s = good.clone();
    s.evidence.pages[0].contents[7] ^= 1;
    expect_refusal(e.attest(&s, 0), VerifyError::InvalidPageProof);

    // A region whose flags were upgraded no longer proves against the witnessed root.
    let mut s = good.clone();
    s.plan.regions = vec![Region {
        start: 0x60_0000,
        end: 0x60_1000,
        flags: RW,
    }];
    s.plan.writes[0].address = 0x60_0000;
    s.plan.writes[0].old = (0..4).map(|i| synthetic::byte(0x60_0000 + i)).collect();
    expect_refusal(e.attest(&s, 0), VerifyError::InvalidRegionProof);

    // The planner's own region tree that marks the read-only data writable, with the snapshot
    // root recomputed from it: consistent evidence, refused for want of a witness.
    let forged_regions: Vec<Region> = synthetic::regions()
        .into_iter()
        .map(|r| Region {
            flags: if r.start == 0x60_0000 { RW } else { r.flags },
            ..r
        })
        .collect();
    let fake = memzinc_verifier::plan::SnapshotTrees::new::<Sha2>(
        forged_regions.clone(),
        synthetic::page_leaves(&forged_regions),
    );
    let new: Vec<u8> = (0..4).map(|i| !synthetic::byte(0x60_0000 + i)).collect();
    let s = synthetic::submission_against(&fake, &forged_regions, "evidence", &[(0x60_0000, new)], &[], &[]);
    assert_eq!(
        s.plan.snapshot_root,
        s.evidence.snapshot_root::<Sha2>(),
        "a consistent forgery"
    );
    expect_forged_root_refused(&mut e, &s);
}

/// Witnessed snapshots: a plan is attested only against a root recorded by enough distinct
/// policy witnesses, for its target, recently enough; witness sets are validated.
#[test]
fn snapshot_roots_must_be_witnessed_by_the_policy() {
    use memzinc_tests::svm::{witness, MAX_SNAPSHOT_AGE};
    let second = solana_keypair::Keypair::new_from_array([78; 32]);
    let two_of_two = PolicyConfig {
        witness_count: 2,
        witnesses: [
            witness().pubkey().to_bytes(),
            second.pubkey().to_bytes(),
            [0; 32],
            [0; 32],
        ],
        witness_threshold: 2,
        ..config(&[])
    };
    let mut e = env_with(&two_of_two);
    e.svm.airdrop(&second.pubkey(), 10_000_000_000).unwrap();
    let a = e.authority.insecure_clone();
    let plan = synthetic::submission("witnessed", &[(0x70_0000, 2)]);
    e.upload(&a, &plan); // recorded by the first witness
    let attest = e.attest_ix(&a, &plan, 0);
    expect_refusal(e.send_attest(&a, attest), VerifyError::NotEnoughWitnesses);
    // The same record twice is one witness.
    let attest = e.attest_ix_citing(&a, &plan, 0, &[witness().pubkey(), witness().pubkey()]);
    expect_refusal(e.send_attest(&a, attest), VerifyError::DuplicateWitness);
    // Another target's record of the same root does not count.
    let elsewhere = synthetic::submission("elsewhere", &[(0x70_0000, 2)]);
    e.witness_as(&second, &elsewhere).unwrap();
    let mut attest = e.attest_ix(&a, &plan, 0);
    attest.accounts.push(solana_instruction::AccountMeta::new_readonly(
        ix::witnessed_snapshot_address(
            &e.program_id,
            &second.pubkey(),
            &elsewhere.plan.target_id,
            &elsewhere.plan.snapshot_root,
        ),
        false,
    ));
    expect_refusal(e.send_attest(&a, attest), VerifyError::WitnessedRootMismatch);
    // A non-record account passed as a record.
    let mut attest = e.attest_ix(&a, &plan, 0);
    attest
        .accounts
        .push(solana_instruction::AccountMeta::new_readonly(e.policy_key(), false));
    expect_refusal(e.send_attest(&a, attest), VerifyError::AccountDiscriminatorMismatch);
    // Both witnesses, but too long ago; recording again refreshes the slot.
    e.witness_as(&second, &plan).unwrap();
    let both = [witness().pubkey(), second.pubkey()];
    let recorded = ix::witnessed_snapshot_address(
        &e.program_id,
        &witness().pubkey(),
        &plan.plan.target_id,
        &plan.plan.snapshot_root,
    );
    let slot = e
        .account(&recorded, memzinc_verifier::accounts::WitnessedSnapshot::decode)
        .slot;
    e.svm.warp_to_slot(slot + MAX_SNAPSHOT_AGE + 1);
    let attest = e.attest_ix_citing(&a, &plan, 0, &both);
    expect_refusal(e.send_attest(&a, attest), VerifyError::StaleSnapshot);
    e.witness_as(&witness(), &plan).unwrap();
    e.witness_as(&second, &plan).unwrap();
    let attest = e.attest_ix_citing(&a, &plan, 0, &both);
    e.send_attest(&a, attest).expect("2 of 2 fresh witnesses");
    // The attestation names both witnesses, in the order cited, with their records' slots.
    let record = e.account(
        &attestation_address(&e.program_id, &e.chain_key(&plan.plan.target_id), 0),
        Attestation::decode,
    );
    let slot_of = |w: &Pubkey| {
        let address = ix::witnessed_snapshot_address(&e.program_id, w, &plan.plan.target_id, &plan.plan.snapshot_root);
        e.account(&address, memzinc_verifier::accounts::WitnessedSnapshot::decode)
            .slot
    };
    assert_eq!(
        record
            .cited_witnesses()
            .map(|(w, s)| (Pubkey::from(*w), s))
            .collect::<Vec<_>>(),
        vec![(both[0], slot_of(&both[0])), (both[1], slot_of(&both[1]))]
    );
    assert_eq!(record.computed_hash::<Sha2>(), record.hash);

    // Witness sets: the authority or a host signer may not witness; a threshold within the set.
    let host = funded(&mut e.svm);
    let program_id = e.program_id;
    let invalid = |c: PolicyConfig| ix::update_policy(&program_id, &a.pubkey(), &c);
    let mut as_authority = config(&[]);
    as_authority.witnesses[0] = a.pubkey().to_bytes();
    let mut as_host = config(&[host.pubkey()]);
    as_host.witnesses[0] = host.pubkey().to_bytes();
    let none = PolicyConfig {
        witness_count: 0,
        ..config(&[])
    };
    let too_high = PolicyConfig {
        witness_threshold: 2,
        ..config(&[])
    };
    for c in [as_authority, as_host, none, too_high] {
        expect_refusal(e.send(vec![invalid(c)], &[&a]), VerifyError::InvalidWitnessSet);
    }
}

/// A policy that pins a model hash takes only plans solved with those models: a planner that
/// made its plan with another model (a laxer repair.mzn, say) and names that model's hash is
/// refused; naming the pinned hash for it changes the plan hash, so the attestation would not
/// be of the plan it made. A policy with a zero model hash pins nothing.
#[test]
fn a_plan_solved_with_other_models_is_refused() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let pinned = e.account(&e.policy_key(), Policy::decode).config.model_hash;
    assert_eq!(pinned, synthetic::MODEL_HASH);
    let mut other = synthetic::submission("models", &[(0x70_0000, 2)]);
    other.plan.model_hash = [9; 32];
    e.upload(&a, &other);
    let attest = e.attest_ix(&a, &other, 0);
    expect_refusal(e.send_attest(&a, attest), VerifyError::ModelHashMismatch);
    // No hash at all is not the pinned one either.
    let mut unnamed = synthetic::submission("models", &[(0x70_0010, 2)]);
    unnamed.plan.model_hash = [0; 32];
    e.upload(&a, &unnamed);
    let attest = e.attest_ix(&a, &unnamed, 0);
    expect_refusal(e.send_attest(&a, attest), VerifyError::ModelHashMismatch);
    // The same writes made with the pinned models pass.
    let same = synthetic::submission("models", &[(0x70_0000, 2)]);
    e.attest(&same, 0).expect("made with the pinned models");
    // A policy that pins no models takes the other plan.
    let unpinned = PolicyConfig {
        model_hash: [0; 32],
        ..config(&[])
    };
    e.send(vec![ix::update_policy(&e.program_id, &a.pubkey(), &unpinned)], &[&a])
        .unwrap();
    let attest = e.attest_ix(&a, &other, 1);
    e.send_attest(&a, attest).expect("no model hash pinned");
}

/// `audit --replay` runs the deployed program again on the witness records the attestation
/// names, read from the chain: a record that is not on chain, or one whose content is not a
/// policy witness's record of the plan's root, makes the replay refuse (re-created records
/// would pass); a record refreshed since is replayed at the slot the attestation recorded.
#[test]
fn a_replay_reads_the_witness_records_from_the_chain() {
    use memzinc_cli::attest::Replayer;
    let mut e = env();
    let plan = synthetic::submission("replay", &[(0x70_0000, 2)]);
    e.attest(&plan, 0).unwrap();
    let chain = e.chain_key(&plan.plan.target_id);
    let address = attestation_address(&e.program_id, &chain, 0);
    let recorded = e.account(&address, Attestation::decode);
    assert_eq!(recorded.witness_count, 1);
    let program = std::fs::read(memzinc_tests::program_so()).unwrap();
    let policy_account = e.svm.get_account(&e.policy_key()).unwrap();
    let (program_id, policy_key) = (e.program_id, e.policy_key());
    // A fresh VM for each replay: a VM that replayed the decision holds its plan marker.
    let replay = |records: &[(Pubkey, Option<Account>)]| {
        Replayer::new(program_id, &program, policy_key, policy_account.clone())
            .unwrap()
            .replay(&address, &recorded, &plan, records)
            .unwrap()
    };

    let records = memzinc_tests::svm::witness_records(&e, &recorded);
    assert!(records[0].1.is_some());
    let outcome = replay(&records);
    assert_eq!(
        (outcome.verdict.as_str(), outcome.refreshed_witness_records),
        ("identical", 0),
        "{outcome:?}"
    );

    // Not on chain: the program refuses the record it is not given.
    let missing = vec![(records[0].0, None)];
    let outcome = replay(&missing);
    assert!(outcome.verdict.starts_with("refused"), "{outcome:?}");
    assert!(
        outcome
            .verdict
            .contains(&format!("Custom({})", VerifyError::WrongAccountOwner.anchor_code())),
        "{outcome:?}"
    );

    // At the record's address, another key's record of the same root: not a policy witness.
    let stranger = funded(&mut e.svm);
    e.witness_as(&stranger, &plan).unwrap();
    let strangers = ix::witnessed_snapshot_address(
        &e.program_id,
        &stranger.pubkey(),
        &plan.plan.target_id,
        &plan.plan.snapshot_root,
    );
    let forged = vec![(records[0].0, e.svm.get_account(&strangers))];
    let outcome = replay(&forged);
    assert!(
        outcome
            .verdict
            .contains(&format!("Custom({})", VerifyError::WitnessNotInPolicy.anchor_code())),
        "{outcome:?}"
    );

    // The witness records the same root again later: the chain's record has a newer slot; the
    // replay uses the record at the slot the attestation recorded, and says so.
    e.svm.warp_to_slot(recorded.slot + 500);
    e.witness_as(&memzinc_tests::svm::witness(), &plan).unwrap();
    let refreshed = memzinc_tests::svm::witness_records(&e, &recorded);
    let on_chain = memzinc_verifier::accounts::WitnessedSnapshot::decode(&refreshed[0].1.as_ref().unwrap().data)
        .unwrap()
        .slot;
    assert!(on_chain > recorded.witness_slots[0]);
    let outcome = replay(&refreshed);
    assert_eq!(
        (outcome.verdict.as_str(), outcome.refreshed_witness_records),
        ("identical", 1),
        "{outcome:?}"
    );
}

#[test]
fn tampered_buffer_and_replays_are_refused() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let good = synthetic::submission("tamper", &[(0x70_0200, 2)]);
    let plan_hash = e.upload(&a, &good);
    // Tampered plan bytes after upload: the last new byte of the write (inside PlanCore, before
    // the 4-byte count of its relocation slots, 0).
    let last_new_byte = good.plan.encode().len() as u32 - 5;
    e.send(
        vec![ix::write_buffer(
            &e.program_id,
            &a.pubkey(),
            &e.buffer(&a, &plan_hash),
            &plan_hash,
            last_new_byte,
            &[0x5a],
        )],
        &[&a],
    )
    .unwrap();
    let attest = e.attest_ix(&a, &good, 0);
    expect_refusal(e.send_attest(&a, attest), VerifyError::PlanHashMismatch);
    // Tampered evidence bytes (a page's contents) after upload.
    e.send(
        vec![ix::write_buffer(
            &e.program_id,
            &a.pubkey(),
            &e.buffer(&a, &plan_hash),
            &plan_hash,
            last_new_byte,
            &[!synthetic::byte(0x70_0201)],
        )],
        &[&a],
    )
    .unwrap();
    let encoded = good.encode();
    let page = synthetic::page(0x70_0000);
    let page_offset = encoded
        .windows(page.len())
        .position(|w| w == page)
        .expect("page in the upload") as u32;
    e.send(
        vec![ix::write_buffer(
            &e.program_id,
            &a.pubkey(),
            &e.buffer(&a, &plan_hash),
            &plan_hash,
            page_offset + 100,
            &[0xee],
        )],
        &[&a],
    )
    .unwrap();
    let attest = e.attest_ix(&a, &good, 0);
    expect_refusal(e.send_attest(&a, attest), VerifyError::InvalidPageProof);
    // Writing past the buffer's end.
    let len = good.encode().len() as u32;
    expect_refusal(
        e.send(
            vec![ix::write_buffer(
                &e.program_id,
                &a.pubkey(),
                &e.buffer(&a, &plan_hash),
                &plan_hash,
                len - 1,
                &[0, 0],
            )],
            &[&a],
        ),
        VerifyError::BufferOutOfBounds,
    );
    e.send(
        vec![ix::close_buffer(
            &e.program_id,
            &a.pubkey(),
            &e.buffer(&a, &plan_hash),
            &plan_hash,
        )],
        &[&a],
    )
    .unwrap();

    // A replayed old attestation: the same plan again, freshly uploaded.
    e.attest(&good, 0).expect("first attestation");
    expect_refusal(e.attest(&good, 1), VerifyError::PlanAlreadyAttested);
    // Replaying seq 0's address for a new plan, and a sequence gap.
    let next = synthetic::submission("tamper", &[(0x70_0300, 2)]);
    expect_refusal(e.attest(&next, 0), VerifyError::InvalidPda);
    let a = e.authority.insecure_clone();
    let attest = e.attest_ix(&a, &next, 5);
    expect_refusal(e.send_attest(&a, attest), VerifyError::InvalidPda);
    e.send_attest(&a, e.attest_ix(&a, &next, 1))
        .expect("the right sequence number works");
}

#[test]
fn signers_owners_and_account_types_are_checked() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let good = synthetic::submission("accounts", &[(0x70_0000, 1)]);

    // Re-initialisation.
    expect_refusal(
        e.send(
            vec![ix::initialize_policy(&e.program_id, &a.pubkey(), &config(&[]))],
            &[&a],
        ),
        VerifyError::AlreadyInitialized,
    );

    // Wrong signer: someone outside the policy uploads and attests under it.
    let intruder = funded(&mut e.svm);
    e.upload(&intruder, &good);
    let attest = e.attest_ix(&intruder, &good, 0);
    expect_refusal(e.send_attest(&intruder, attest), VerifyError::SignerNotAllowed);

    // Missing signer: the authority listed but not signing (someone else pays).
    e.upload(&a, &good);
    let mut attest = e.attest_ix(&a, &good, 0);
    attest.accounts[0].is_signer = false;
    expect_refusal(e.send(vec![attest], &[&intruder]), VerifyError::MissingSigner);

    // Arbitrary CPI target: a fake system program.
    let mut attest = e.attest_ix(&a, &good, 0);
    attest.accounts[6].pubkey = Pubkey::new_unique();
    expect_refusal(e.send_attest(&a, attest), VerifyError::WrongSystemProgram);

    // Duplicate mutable accounts: the attestation PDA passed again as the plan marker.
    let mut attest = e.attest_ix(&a, &good, 0);
    attest.accounts[4].pubkey = attest.accounts[3].pubkey;
    expect_refusal(e.send_attest(&a, attest), VerifyError::InvalidPda);

    // Non-canonical bump: a valid PDA of the same seeds with a lower bump.
    let chain = e.chain_key(&good.plan.target_id);
    let (_, canonical) =
        Pubkey::find_program_address(&[b"attestation", chain.as_ref(), &0u64.to_le_bytes()], &e.program_id);
    let other = (0..canonical)
        .rev()
        .find_map(|b| {
            Pubkey::create_program_address(
                &[b"attestation", chain.as_ref(), &0u64.to_le_bytes(), &[b]],
                &e.program_id,
            )
            .ok()
        })
        .expect("a non-canonical bump exists");
    let mut attest = e.attest_ix(&a, &good, 0);
    attest.accounts[3].pubkey = other;
    expect_refusal(e.send_attest(&a, attest), VerifyError::InvalidPda);

    e.send_attest(&a, e.attest_ix(&a, &good, 0)).expect("the honest attest");

    // Type cosplay: the program's own TargetChain passed where a Policy goes.
    let next = synthetic::submission("accounts", &[(0x70_0010, 1)]);
    e.upload(&a, &next);
    let mut attest = e.attest_ix(&a, &next, 1);
    attest.accounts[1].pubkey = chain;
    expect_refusal(e.send_attest(&a, attest), VerifyError::AccountDiscriminatorMismatch);

    // Wrong owner: a perfect Policy image in an account another program owns.
    let forged = Pubkey::new_unique();
    let real = e.svm.get_account(&e.policy_key()).unwrap();
    e.svm
        .set_account(
            forged,
            Account {
                owner: Pubkey::new_unique(),
                ..real
            },
        )
        .unwrap();
    let mut attest = e.attest_ix(&a, &next, 1);
    attest.accounts[1].pubkey = forged;
    expect_refusal(e.send_attest(&a, attest), VerifyError::WrongAccountOwner);

    // PDA sharing between targets: target A's chain passed for target B's plan.
    let other_target = synthetic::submission("another-target", &[(0x70_0020, 1)]);
    e.upload(&a, &other_target);
    let mut attest = e.attest_ix(&a, &other_target, 0);
    attest.accounts[2].pubkey = chain;
    expect_refusal(e.send_attest(&a, attest), VerifyError::PolicyMismatch);

    // Sysvar spoofing: there is no clock account to spoof; the slot comes from the runtime.
    e.svm.warp_to_slot(4242);
    let mut attest = e.attest_ix(&a, &next, 1);
    attest
        .accounts
        .push(AccountMeta::new_readonly(Pubkey::new_unique(), false));
    // Accounts after the system program are witnessed-snapshot records: a foreign one is refused.
    expect_refusal(e.send_attest(&a, attest), VerifyError::WrongAccountOwner);
    e.send_attest(&a, e.attest_ix(&a, &next, 1))
        .expect("the honest attest at the warped slot");
    let a1 = e.account(&attestation_address(&e.program_id, &chain, 1), Attestation::decode);
    assert_eq!(a1.slot, 4242);
}

#[test]
fn closed_buffers_cannot_be_revived() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let good = synthetic::submission("revival", &[(0x70_0000, 1)]);
    let plan_hash = e.upload(&a, &good);
    let buffer = e.buffer(&a, &plan_hash);
    // Close, refund the address within the same transaction, then try to use it again.
    let refund = solana_system_interface::instruction::transfer(&a.pubkey(), &buffer, 10_000_000);
    let write = ix::write_buffer(
        &e.program_id,
        &a.pubkey(),
        &e.buffer(&a, &plan_hash),
        &plan_hash,
        0,
        &[1],
    );
    expect_refusal(
        e.send(
            vec![
                ix::close_buffer(&e.program_id, &a.pubkey(), &e.buffer(&a, &plan_hash), &plan_hash),
                refund,
                write,
            ],
            &[&a],
        ),
        VerifyError::WrongAccountOwner,
    );
}

#[test]
fn host_signers_revocation_and_receipts() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let host = funded(&mut e.svm);

    // Rotating signers is an update by the authority only.
    expect_refusal(
        e.send(
            vec![ix::update_policy(
                &e.program_id,
                &host.pubkey(),
                &config(&[host.pubkey()]),
            )],
            &[&host],
        ),
        VerifyError::WrongAccountOwner,
    );
    let mut forged_update = ix::update_policy(&e.program_id, &a.pubkey(), &config(&[host.pubkey()]));
    forged_update.accounts[0] = AccountMeta::new_readonly(host.pubkey(), true);
    expect_refusal(e.send(vec![forged_update], &[&host]), VerifyError::Unauthorized);
    e.send(
        vec![ix::update_policy(&e.program_id, &a.pubkey(), &config(&[host.pubkey()]))],
        &[&a],
    )
    .unwrap();
    assert_eq!(e.account(&e.policy_key(), Policy::decode).revision, 1);

    // The host signer attests under the authority's policy.
    let plan = synthetic::submission("receipts", &[(0x70_0000, 2)]);
    e.upload(&host, &plan);
    let attest = e.attest_ix(&host, &plan, 0);
    e.send_attest(&host, attest).expect("allowed host signer attests");
    let target = plan.plan.target_id;

    // A receipt, once.
    let record = ix::record_applied(
        &e.program_id,
        &host.pubkey(),
        &a.pubkey(),
        &target,
        0,
        OUTCOME_APPLIED,
        &[9; 32],
    );
    e.send(vec![record.clone()], &[&host]).expect("receipt");
    let attestation = attestation_address(&e.program_id, &e.chain_key(&target), 0);
    let receipt = e.account(&ix::receipt_address(&e.program_id, &attestation), Receipt::decode);
    assert_eq!(
        (receipt.seq, receipt.outcome, receipt.readback_hash),
        (0, OUTCOME_APPLIED, [9; 32])
    );
    expect_refusal(e.send(vec![record], &[&host]), VerifyError::ReceiptAlreadyRecorded);

    // Revocation: the authority only, once; a revoked attestation takes no receipt.
    let second = synthetic::submission("receipts", &[(0x70_0100, 2)]);
    e.attest(&second, 1).unwrap();
    let mut revoke = ix::revoke(&e.program_id, &a.pubkey(), &target, 1);
    revoke.accounts[0] = AccountMeta::new_readonly(host.pubkey(), true);
    expect_refusal(e.send(vec![revoke], &[&host]), VerifyError::Unauthorized);
    e.send(vec![ix::revoke(&e.program_id, &a.pubkey(), &target, 1)], &[&a])
        .expect("revoke");
    expect_refusal(
        e.send(vec![ix::revoke(&e.program_id, &a.pubkey(), &target, 1)], &[&a]),
        VerifyError::AttestationRevoked,
    );
    let record = ix::record_applied(
        &e.program_id,
        &a.pubkey(),
        &a.pubkey(),
        &target,
        1,
        OUTCOME_APPLIED,
        &[0; 32],
    );
    expect_refusal(e.send(vec![record], &[&a]), VerifyError::AttestationRevoked);
    assert!(
        e.account(
            &attestation_address(&e.program_id, &e.chain_key(&target), 1),
            Attestation::decode
        )
        .revoked
    );

    // Rotating the host out: it can no longer attest.
    e.send(vec![ix::update_policy(&e.program_id, &a.pubkey(), &config(&[]))], &[&a])
        .unwrap();
    let third = synthetic::submission("receipts", &[(0x70_0200, 2)]);
    e.upload(&host, &third);
    let attest = e.attest_ix(&host, &third, 2);
    expect_refusal(e.send_attest(&host, attest), VerifyError::SignerNotAllowed);

    // Closing the policy: nothing can be attested under it any more.
    e.send(vec![ix::close_policy(&e.program_id, &a.pubkey())], &[&a])
        .expect("close");
    expect_refusal(e.attest(&third, 2), VerifyError::PolicyClosed);
}

/// Pre-funding DoS: every PDA address the program creates is predictable, and the system
/// program's `CreateAccount` refuses an address that holds lamports. Someone sends lamports to
/// each address first (the rent minimum to some, the least a system account may hold to others,
/// more than enough to one); every instruction still succeeds and every account ends up the program's, rent-exempt.
#[test]
fn every_pda_the_program_creates_can_be_pre_funded() {
    let mut e = env();
    let griefer = funded(&mut e.svm);
    let prefund = |e: &mut memzinc_tests::svm::Env, address: Pubkey, lamports: u64| {
        let tx = solana_system_interface::instruction::transfer(&griefer.pubkey(), &address, lamports);
        e.send(vec![tx], &[&griefer]).expect("pre-fund");
    };
    let rent = |e: &memzinc_tests::svm::Env, len: usize| e.svm.minimum_balance_for_rent_exemption(len);

    // The policy of a new authority.
    let authority = funded(&mut e.svm);
    let policy = ix::policy_address(&e.program_id, &authority.pubkey());
    let r = rent(&e, Policy::LEN);
    prefund(&mut e, policy, r);
    e.send(
        vec![ix::initialize_policy(&e.program_id, &authority.pubkey(), &config(&[]))],
        &[&authority],
    )
    .expect("initialize_policy on a pre-funded address");

    // Target chain, attestation #0 and plan marker of the first plan; attestation #1 of the next.
    let plan = synthetic::submission("prefund", &[(0x70_0000, 2)]);
    let chain = e.chain_key(&plan.plan.target_id);
    let plan_hash = plan.plan.plan_hash::<Sha2>();
    let attestation0 = attestation_address(&e.program_id, &chain, 0);
    let attestation1 = attestation_address(&e.program_id, &chain, 1);
    let marker = plan_marker_address(&e.program_id, &chain, &plan_hash);
    let receipt = ix::receipt_address(&e.program_id, &attestation0);
    let r = rent(&e, Attestation::LEN);
    let dust = rent(&e, 0); // the least a system account may hold: a shortfall to top up
    prefund(&mut e, chain, dust);
    prefund(&mut e, attestation0, r);
    prefund(&mut e, marker, dust);
    prefund(&mut e, attestation1, r * 3);
    prefund(&mut e, receipt, dust);
    let record = ix::witnessed_snapshot_address(
        &e.program_id,
        &memzinc_tests::svm::witness().pubkey(),
        &plan.plan.target_id,
        &plan.plan.snapshot_root,
    );
    prefund(&mut e, record, dust);
    e.attest(&plan, 0).expect("attest on pre-funded addresses");
    let next = synthetic::submission("prefund", &[(0x70_0100, 2)]);
    e.attest(&next, 1).expect("attest on a pre-funded attestation address");
    let a = e.authority.insecure_clone();
    e.send(
        vec![ix::record_applied(
            &e.program_id,
            &a.pubkey(),
            &a.pubkey(),
            &plan.plan.target_id,
            0,
            OUTCOME_APPLIED,
            &[1; 32],
        )],
        &[&a],
    )
    .expect("record_applied on a pre-funded receipt address");

    for (address, len) in [
        (policy, Policy::LEN),
        (chain, TargetChain::LEN),
        (attestation0, Attestation::LEN),
        (attestation_address(&e.program_id, &chain, 1), Attestation::LEN),
        (plan_marker_address(&e.program_id, &chain, &plan_hash), PlanMarker::LEN),
        (ix::receipt_address(&e.program_id, &attestation0), Receipt::LEN),
        (record, memzinc_verifier::accounts::WitnessedSnapshot::LEN),
    ] {
        let account = e.svm.get_account(&address).unwrap();
        assert_eq!((account.owner, account.data.len()), (e.program_id, len), "{address}");
        assert!(account.lamports >= rent(&e, len), "{address} is rent-exempt");
    }
    assert_eq!(e.account(&attestation0, Attestation::decode).seq, 0);
}

/// A receipt is filed once per attestation; only the host that attested (or the authority)
/// may file it, so another host signer cannot report a false outcome first.
#[test]
fn a_foreign_receipt_is_refused() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let (host, other) = (funded(&mut e.svm), funded(&mut e.svm));
    e.send(
        vec![ix::update_policy(
            &e.program_id,
            &a.pubkey(),
            &config(&[host.pubkey(), other.pubkey()]),
        )],
        &[&a],
    )
    .unwrap();
    let plan = synthetic::submission("foreign-receipt", &[(0x70_0000, 2)]);
    e.upload(&host, &plan);
    let attest = e.attest_ix(&host, &plan, 0);
    e.send_attest(&host, attest).expect("host attests");
    let program_id = e.program_id;
    let record = |signer: &Pubkey, seq| {
        ix::record_applied(
            &program_id,
            signer,
            &a.pubkey(),
            &plan.plan.target_id,
            seq,
            memzinc_verifier::accounts::OUTCOME_REFUSED,
            &[0; 32],
        )
    };
    let foreign = record(&other.pubkey(), 0);
    expect_refusal(e.send(vec![foreign], &[&other]), VerifyError::ReceiptNotBySigner);
    e.send(vec![record(&host.pubkey(), 0)], &[&host])
        .expect("the attesting host files its receipt");
    // The authority may file one for any attestation.
    let second = synthetic::submission("foreign-receipt", &[(0x70_0100, 2)]);
    e.upload(&host, &second);
    let attest = e.attest_ix(&host, &second, 1);
    e.send_attest(&host, attest).unwrap();
    e.send(vec![record(&a.pubkey(), 1)], &[&a])
        .expect("the authority files a receipt");
}

/// Loosen, attest, tighten: the attestation records the revision and the configuration hash
/// of the loose rules that judged it (and its link hash commits to both), and closing and
/// reopening the policy continues the revisions instead of starting again at 0.
#[test]
fn loosen_attest_tighten_leaves_a_trace_and_revisions_are_never_reused() {
    use memzinc_verifier::wire::PolicyRules;
    let mut e = env();
    let a = e.authority.insecure_clone();
    let strict = config(&[]);
    let loose = PolicyConfig {
        rules: PolicyRules {
            max_bytes: 4096,
            ..strict.rules
        },
        ..strict
    };
    let update = |c: &PolicyConfig| ix::update_policy(&e.program_id, &a.pubkey(), c);
    let (loosen, tighten) = (update(&loose), update(&strict));
    e.send(vec![loosen], &[&a]).unwrap();
    let big = synthetic::submission("loosen", &[(0x70_0000, 100)]);
    e.attest(&big, 0).expect("allowed under the loose rules");
    e.send(vec![tighten], &[&a]).unwrap();
    expect_refusal(
        e.attest(&synthetic::submission("loosen", &[(0x70_1000, 100)]), 1),
        VerifyError::PlanTooManyBytes,
    );

    let chain = e.chain_key(&big.plan.target_id);
    let record = e.account(&attestation_address(&e.program_id, &chain, 0), Attestation::decode);
    let policy = e.account(&e.policy_key(), Policy::decode);
    assert_eq!((record.policy_revision, policy.revision), (1, 2));
    assert_eq!(record.policy_hash, loose.hash::<Sha2>());
    assert_eq!(policy.config_hash, strict.hash::<Sha2>());
    assert_ne!(record.policy_hash, policy.config_hash, "the loose rules are on record");
    // The link commits to them: the same record claiming the strict rules does not hash to it.
    let claimed = Attestation {
        policy_hash: policy.config_hash,
        ..record
    };
    assert_ne!(claimed.computed_hash::<Sha2>(), record.hash);
    assert_eq!(record.computed_hash::<Sha2>(), record.hash);

    // Close and reopen: the next revision, not 0 again.
    e.send(vec![ix::close_policy(&e.program_id, &a.pubkey())], &[&a])
        .unwrap();
    e.send(vec![ix::initialize_policy(&e.program_id, &a.pubkey(), &loose)], &[&a])
        .expect("reopen");
    let reopened = e.account(&e.policy_key(), Policy::decode);
    assert_eq!(
        (reopened.revision, reopened.opened_revision, reopened.closed),
        (3, 3, false)
    );
    e.attest(&synthetic::submission("loosen", &[(0x70_2000, 100)]), 1)
        .expect("attest after reopening");
    let after = e.account(&attestation_address(&e.program_id, &chain, 1), Attestation::decode);
    assert_eq!(after.policy_revision, 3, "no revision is used twice");
    // Reopening is only for a closed policy.
    expect_refusal(
        e.send(vec![ix::initialize_policy(&e.program_id, &a.pubkey(), &strict)], &[&a]),
        VerifyError::AlreadyInitialized,
    );
}

/// Closing a policy blocks what it attested: no receipt (and the host's gate refuses to apply,
/// through the same `Attestation::may_apply`), also after the policy is reopened.
#[test]
fn close_then_apply_is_refused() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let plan = synthetic::submission("close-apply", &[(0x70_0000, 2)]);
    e.attest(&plan, 0).unwrap();
    let record = ix::record_applied(
        &e.program_id,
        &a.pubkey(),
        &a.pubkey(),
        &plan.plan.target_id,
        0,
        OUTCOME_APPLIED,
        &[1; 32],
    );
    e.send(vec![ix::close_policy(&e.program_id, &a.pubkey())], &[&a])
        .unwrap();
    expect_refusal(e.send(vec![record.clone()], &[&a]), VerifyError::PolicyClosed);
    let attestation = e.account(
        &attestation_address(&e.program_id, &e.chain_key(&plan.plan.target_id), 0),
        Attestation::decode,
    );
    let closed = e.account(&e.policy_key(), Policy::decode);
    assert_eq!(attestation.may_apply(&closed), Err(VerifyError::PolicyClosed));
    e.send(
        vec![ix::initialize_policy(&e.program_id, &a.pubkey(), &config(&[]))],
        &[&a],
    )
    .unwrap();
    expect_refusal(e.send(vec![record], &[&a]), VerifyError::AttestationBlocked);
    let reopened = e.account(&e.policy_key(), Policy::decode);
    assert_eq!(attestation.may_apply(&reopened), Err(VerifyError::AttestationBlocked));
}

/// A buffer is stamped only with its own key's signature: someone who sees another uploader's
/// freshly allocated buffer cannot open it as theirs (and then close it for its rent).
#[test]
fn a_hijacked_buffer_is_refused() {
    let mut e = env();
    let victim = e.authority.insecure_clone();
    let thief = funded(&mut e.svm);
    let plan = synthetic::submission("hijack", &[(0x70_0000, 2)]);
    let plan_hash = plan.plan.plan_hash::<Sha2>();
    let bytes = plan.encode();
    let buffer = ix::buffer_keypair(&victim, &plan_hash);
    let space = memzinc_verifier::accounts::BufferHeader::LEN + bytes.len();
    let rent = e.svm.minimum_balance_for_rent_exemption(space);
    let [allocate, _] = <[_; 2]>::try_from(ix::open_buffer(
        &e.program_id,
        &victim.pubkey(),
        &buffer.pubkey(),
        &plan_hash,
        bytes.len() as u32,
        rent,
    ))
    .unwrap();
    e.send(vec![allocate], &[&victim, &buffer])
        .expect("the victim allocates");
    // The thief stamps it as its own without the buffer's signature.
    let mut open = ix::open_buffer(
        &e.program_id,
        &thief.pubkey(),
        &buffer.pubkey(),
        &plan_hash,
        bytes.len() as u32,
        rent,
    )[1]
    .clone();
    open.accounts[1].is_signer = false;
    expect_refusal(e.send(vec![open], &[&thief]), VerifyError::MissingSigner);
    let close = ix::close_buffer(&e.program_id, &thief.pubkey(), &buffer.pubkey(), &plan_hash);
    assert!(
        e.send(vec![close], &[&thief]).is_err(),
        "nothing to close for the thief"
    );
    assert_eq!(e.svm.get_account(&buffer.pubkey()).unwrap().lamports, rent);
}

#[test]
fn malformed_instructions_are_refused() {
    let mut e = env();
    let a = e.authority.insecure_clone();
    let good = synthetic::submission("malformed", &[(0x70_0000, 1)]);
    let mut attest = e.attest_ix(&a, &good, 0);
    attest.data.truncate(20);
    expect_refusal(e.send_attest(&a, attest.clone()), VerifyError::MalformedInstruction);
    attest.data = vec![1, 2, 3, 4, 5, 6, 7, 8];
    expect_refusal(e.send_attest(&a, attest), VerifyError::UnknownInstruction);
    let too_many = PolicyConfig {
        signer_count: 5,
        ..config(&[])
    };
    let mut init = ix::initialize_policy(&e.program_id, &a.pubkey(), &config(&[]));
    init.data = [&init.data[..8], &too_many.rules.encode()[..], &5u32.to_le_bytes()].concat();
    expect_refusal(e.send(vec![init], &[&a]), VerifyError::TooManySigners);
}

/// Standard base64 (what the runtime writes into `Program data:` lines).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// The payloads of a transaction's `Program data:` lines.
fn program_data(logs: &[String]) -> Vec<&str> {
    logs.iter().filter_map(|l| l.strip_prefix("Program data: ")).collect()
}

/// What Anchor clients read from the logs: every event as one base64 field of a `Program data:`
/// line, discriminator + Borsh body (their event parsers decode the line as one event), and every
/// refusal as Anchor's error line naming the IDL error (`AnchorError.parse` reads the name there).
#[test]
fn events_and_refusals_are_logged_as_anchor_does() {
    assert_eq!(base64(b"memzinc"), "bWVtemluYw==");
    let mut e = env();
    let a = e.authority.insecure_clone();

    let other = funded(&mut e.svm);
    let logs = e
        .send_logged(
            vec![ix::initialize_policy(&e.program_id, &other.pubkey(), &config(&[]))],
            &[&other],
        )
        .unwrap();
    let event = [
        &EVENT_POLICY_INITIALIZED[..],
        &other.pubkey().to_bytes(),
        &config(&[]).rules.encode(),
    ]
    .concat();
    assert_eq!(program_data(&logs), [base64(&event)]);

    let logs = e
        .send_logged(vec![ix::update_policy(&e.program_id, &a.pubkey(), &config(&[]))], &[&a])
        .unwrap();
    let event = [&EVENT_POLICY_UPDATED[..], &a.pubkey().to_bytes(), &1u32.to_le_bytes()].concat();
    assert_eq!(program_data(&logs), [base64(&event)]);

    let plan = synthetic::submission("logs", &[(0x70_0000, 2)]);
    e.upload(&a, &plan);
    let attest = e.attest_ix(&a, &plan, 0);
    let logs = e
        .send_logged(vec![ix::compute_unit_limit(1_400_000), attest], &[&a])
        .unwrap();
    let attestation = attestation_address(&e.program_id, &e.chain_key(&plan.plan.target_id), 0);
    let mut event = [0u8; 8 + Attestation::BODY_LEN];
    e.account(&attestation, Attestation::decode).encode_event(&mut event);
    assert_eq!(program_data(&logs), [base64(&event)]);

    let logs = e
        .send_logged(
            vec![ix::revoke(&e.program_id, &a.pubkey(), &plan.plan.target_id, 0)],
            &[&a],
        )
        .unwrap();
    let event = [
        &EVENT_ATTESTATION_REVOKED[..],
        &attestation.to_bytes(),
        &0u64.to_le_bytes(),
    ]
    .concat();
    assert_eq!(program_data(&logs), [base64(&event)]);

    e.upload(&a, &plan);
    let replay = e.attest_ix(&a, &plan, 1);
    let (err, logs) = e
        .send_logged(vec![ix::compute_unit_limit(1_400_000), replay], &[&a])
        .unwrap_err();
    assert!(err.contains("Custom(6033)"), "{err}");
    let line = "Program log: AnchorError occurred. Error Code: PlanAlreadyAttested. Error Number: 6033. \
                Error Message: this plan is already attested for this target.";
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("Program log: AnchorError"))
            .collect::<Vec<_>>(),
        [line]
    );
    assert!(program_data(&logs).is_empty());

    // Errors that are not the program's own codes (here a missing account) get no such line.
    let mut short = ix::update_policy(&e.program_id, &a.pubkey(), &config(&[]));
    short.accounts.truncate(1);
    let (err, logs) = e.send_logged(vec![short], &[&a]).unwrap_err();
    assert!(err.contains("NotEnoughAccountKeys"), "{err}");
    assert!(!logs.iter().any(|l| l.contains("AnchorError")), "{logs:?}");
}

/// A policy that allows relocations of `max_moves` objects, writing at most `max_bytes` in
/// `max_writes` writes.
fn allowing_moves(max_bytes: u32, max_writes: u32, max_moves: u32) -> PolicyConfig {
    PolicyConfig {
        rules: memzinc_verifier::wire::PolicyRules {
            max_bytes,
            max_writes,
            max_moves,
            ..memzinc_tests::svm::rules()
        },
        ..config(&[])
    }
}

/// Relocations (issue 17): a list moved into address order, every pointer moved with its
/// node, is attested under a policy that allows that many moves. A policy without moves, one
/// with too few, the head rewritten to the wrong node, a moved node whose link names the wrong
/// node and two nodes sent to one slot are each refused with their own code.
#[test]
fn relocations_are_attested_only_when_sound_and_allowed() {
    let allowing = |max_moves| allowing_moves(4096, 64, max_moves);
    let good = relocation::submission("relocation", 16);
    assert_eq!((good.plan.slots.len(), good.plan.writes.len()), (16, 17));
    expect_refusal(
        env_with(&allowing(0)).attest(&good, 0),
        VerifyError::RelocationNotAllowed,
    );
    expect_refusal(env_with(&allowing(15)).attest(&good, 0), VerifyError::PlanTooManyMoves);

    let mut e = env_with(&allowing(16));
    let head = good.plan.writes.len() - 1;
    let mut forged = Vec::new();
    let mut s = good.clone();
    s.plan.writes[head].new = (relocation::HEAP + 2 * 4096 + 0x40).to_le_bytes().to_vec();
    forged.push((s, VerifyError::PointerNotMoved));
    let mut s = good.clone();
    let wrong = s.plan.writes[7].address;
    s.plan.writes[3].new[8..].copy_from_slice(&wrong.to_le_bytes());
    forged.push((s, VerifyError::MovedBytesMismatch));
    // Two nodes to one slot, bytes and pointers computed consistently from the forged slots:
    // only the permutation check stands in the way.
    let s = relocation::submission_edited("relocation", 16, |slots| slots[1].to = slots[2].to);
    forged.push((s, VerifyError::RelocationNotAPermutation));
    for (s, error) in forged {
        expect_refusal(e.attest(&s, 0), error);
    }
    e.attest(&good, 0).expect("a sound relocation is attested");
    let chain = e.chain_key(&good.plan.target_id);
    let a0 = e.account(&attestation_address(&e.program_id, &chain, 0), Attestation::decode);
    assert_eq!(a0.plan_hash, good.plan.plan_hash::<Sha2>());
    assert_eq!((a0.write_count, a0.byte_count), (17, 16 * 16 + 8));
}

/// A relocation too large for one submission is attested in parts (`relocation_stream`): the
/// same list as above, 64 nodes, its table over two stores and its parts of at most 8 slots,
/// under its streamed plan hash. A part with the head rewritten to the wrong node, a moved node
/// whose link names the wrong node, two nodes sent to one slot, and a part that carries slots of
/// its own are each refused with their own code.
#[test]
fn a_relocation_checked_in_parts_is_attested_only_when_sound() {
    let policy = allowing_moves(4096, 128, 64);
    let good = relocation::submission("streamed", 64);
    let last = |_: usize, _: &mut Submission| {};
    let mut e = env_with(&policy);
    let head = good.plan.writes.len() - 1;
    let mut s = good.clone();
    s.plan.writes[head].new = (relocation::HEAP + 2 * 4096 + 0x40).to_le_bytes().to_vec();
    expect_refusal(e.attest_in_parts(&s, 0, Some(8), 2, last), VerifyError::PointerNotMoved);
    let mut s = good.clone();
    let wrong = s.plan.writes[7].address;
    s.plan.writes[3].new[8..].copy_from_slice(&wrong.to_le_bytes());
    expect_refusal(
        e.attest_in_parts(&s, 0, Some(8), 2, last),
        VerifyError::MovedBytesMismatch,
    );
    let s = relocation::submission_edited("streamed", 64, |slots| slots[1].to = slots[2].to);
    expect_refusal(
        e.attest_in_parts(&s, 0, Some(8), 2, last),
        VerifyError::RelocationNotAPermutation,
    );
    let with_slots = |i: usize, part: &mut Submission| {
        if i == 1 {
            part.plan.slots = good.plan.slots[..1].to_vec();
        }
    };
    expect_refusal(
        e.attest_in_parts(&good, 0, Some(8), 2, with_slots),
        VerifyError::RelocationPartMismatch,
    );

    let cost = e
        .attest_in_parts(&good, 0, Some(8), 2, last)
        .expect("a sound relocation in parts");
    assert!(
        cost.parts.len() >= 8 && cost.most_part_cu() > 0 && cost.finish_cu > 0,
        "{cost:?}"
    );
    let chain = e.chain_key(&good.plan.target_id);
    let a0 = e.account(&attestation_address(&e.program_id, &chain, 0), Attestation::decode);
    assert_eq!(a0.plan_hash, good.plan.streamed_plan_hash::<Sha2>());
    assert_eq!((a0.write_count, a0.byte_count), (65, 64 * 16 + 8));
    // The same relocation again is a replay.
    expect_refusal(
        e.attest_in_parts(&good, 1, Some(8), 2, last),
        VerifyError::PlanAlreadyAttested,
    );
}

/// Parts are cut by what they are estimated to cost (`relocation_stream::PartCost`), so a part
/// of many small objects on few pages stays within the 1,400,000 limit without a slot count:
/// 1,024 list nodes 120 to a page (on 9 pages, all of which one buffer holds) in one part would
/// exceed it. The estimate is from above and close: every part measured here costs 85 to 100 %
/// of it, for objects of 16 to 512 bytes, 1 to 120 to a page.
#[test]
fn relocation_parts_are_cut_by_their_estimated_cost() {
    let mut checked = 0;
    for (n, per_page, len) in [(1024u64, 120u64, 16u32), (128, 1, 16), (2048, 26, 24), (64, 1, 512)] {
        let policy = allowing_moves(u32::MAX, u32::MAX, n as u32);
        let mut e = env_with(&policy);
        let s = relocation::sized_submission("estimated", n, per_page, len);
        let cost = e
            .attest_in_parts(&s, 0, None, 1, |_, _| {})
            .unwrap_or_else(|err| panic!("{n} objects of {len} bytes, {per_page} to a page: {err}"));
        for &(cu, part) in &cost.parts {
            let estimate = part.estimate();
            assert!(
                estimate <= memzinc_verifier::relocation_stream::PART_CU_BUDGET,
                "{estimate}"
            );
            assert!(
                cu <= estimate && cu * 100 >= estimate * 85,
                "{n} objects of {len} bytes, {per_page} to a page: a part cost {cu} CU, estimated {estimate} ({part:?})"
            );
            checked += 1;
        }
        if per_page == 120 {
            assert!(cost.parts.len() >= 2 && cost.most_part_cu() > 700_000, "{cost:?}");
        }
    }
    assert!(checked >= 8, "{checked} parts");
    println!("{checked} parts measured within their estimates");
}

/// Alike objects moved among themselves keep their bytes, so their slots have no writes: a run
/// of them is cut into parts of slots alone (the program takes a part without writes), each
/// within the limit, where waiting for a write to cut at would make one part of them all.
#[test]
fn slots_whose_bytes_stay_are_cut_into_parts_of_their_own() {
    let n = 1024;
    let policy = allowing_moves(u32::MAX, u32::MAX, n as u32);
    let mut e = env_with(&policy);
    let s = relocation::alike_submission("alike", n, 120);
    assert_eq!(s.plan.writes.len(), 1, "only the head is written");
    let cost = e
        .attest_in_parts(&s, 0, None, 1, |_, _| {})
        .unwrap_or_else(|err| panic!("{n} alike objects: {err}"));
    assert!(cost.parts.len() >= 3, "{cost:?}");
    for &(cu, part) in &cost.parts {
        assert!(
            cu <= part.estimate(),
            "a part cost {cu} CU, estimated {}",
            part.estimate()
        );
    }
    println!(
        "{n} alike objects: {} parts, the costliest {} CU",
        cost.parts.len(),
        cost.most_part_cu()
    );
}

/// The accounts of a relocation in parts: only a policy signer opens one, only its authority
/// adds to it, its stores are fresh at the opening and given in order after (an append: the ones
/// its slots land in), and its parts are
/// judged under the policy revision it was opened at; only its authority closes it.
#[test]
fn relocation_accounts_signers_and_policy_revisions_are_checked() {
    use memzinc_verifier::relocation_stream::STREAM_SLOT_LEN;
    let policy = allowing_moves(4096, 128, 64);
    let mut e = env_with(&policy);
    let a = e.authority.insecure_clone();
    let s = relocation::submission("streamed-accounts", 16);
    let stranger = funded(&mut e.svm);
    expect_refusal(
        e.open_relocation_as(&stranger, &s, 2, &[]),
        VerifyError::SignerNotAllowed,
    );
    let (relocation, stores) = e.open_relocation_as(&a, &s, 2, &[]).expect("open_relocation");
    let keys: Vec<Pubkey> = stores.iter().map(|k| k.pubkey()).collect();
    // A store opened for one relocation cannot be opened for another.
    let other = relocation::submission("streamed-other", 16);
    expect_refusal(
        e.open_relocation_as(&a, &other, 1, &[&stores[0]]),
        VerifyError::AlreadyInitialized,
    );

    let table: Vec<u8> = s.plan.stream_slots().iter().flat_map(|x| x.encode()).collect();
    let program = e.program_id;
    // Slots `slots` of the table (16 of them, 8 to a store).
    let append = |by: &Pubkey, stores: &[Pubkey], slots: std::ops::Range<usize>| {
        let bytes = &table[slots.start * STREAM_SLOT_LEN..slots.end * STREAM_SLOT_LEN];
        ix::append_slots(&program, by, &relocation.pubkey(), stores, slots.start as u32, bytes)
    };
    let by_stranger = append(&stranger.pubkey(), &keys, 0..1);
    expect_refusal(e.send(vec![by_stranger], &[&stranger]), VerifyError::Unauthorized);
    let swapped = append(&a.pubkey(), &[keys[1], keys[0]], 0..1);
    expect_refusal(e.send(vec![swapped], &[&a]), VerifyError::RelocationStoreMismatch);
    // An append takes the stores its slots land in, from the first one's.
    let one_short = append(&a.pubkey(), &keys[..1], 0..16);
    expect_refusal(e.send(vec![one_short], &[&a]), VerifyError::RelocationStoreMismatch);
    let not_its_store = append(&a.pubkey(), &keys[1..], 0..1);
    expect_refusal(e.send(vec![not_its_store], &[&a]), VerifyError::RelocationStoreMismatch);
    // An append that runs before the one ahead of it (its slots ascend from nothing, so only
    // its first slot's index tells) is refused, and the table is unchanged.
    let state = |e: &Env| {
        let account = e.svm.get_account(&relocation.pubkey()).expect("the relocation");
        Relocation::decode(&account.data).expect("a relocation").state
    };
    let opened = state(&e);
    let early = append(&a.pubkey(), &keys[..1], 8..16);
    expect_refusal(e.send(vec![early], &[&a]), VerifyError::SlotsNotNext);
    assert_eq!(state(&e), opened);
    e.send(vec![append(&a.pubkey(), &keys[..1], 0..8)], &[&a])
        .expect("append_slots into the first store");
    let behind = append(&a.pubkey(), &keys[..1], 8..16);
    expect_refusal(e.send(vec![behind], &[&a]), VerifyError::RelocationStoreMismatch);
    // The same append again (a copy signed anew that lands after the first) changes nothing.
    let halfway = state(&e);
    assert_eq!(halfway.appended, 8);
    let again = append(&a.pubkey(), &keys[1..], 0..8);
    expect_refusal(e.send(vec![again], &[&a]), VerifyError::SlotsNotNext);
    assert_eq!(state(&e), halfway);
    e.send(vec![append(&a.pubkey(), &keys[1..], 8..16)], &[&a])
        .expect("append_slots into the second store");

    // The policy changed since the opening: no part is judged under the new revision.
    let mut loosened = policy;
    loosened.rules.max_bytes += 1;
    e.send(vec![ix::update_policy(&e.program_id, &a.pubkey(), &loosened)], &[&a])
        .expect("update_policy");
    let part = &s.stream_parts(400 * 1024, 64).unwrap()[0];
    let label = e.upload_unwitnessed(&a, &part.submission);
    let check = ix::check_relocation_part(
        &e.program_id,
        &a.pubkey(),
        &a.pubkey(),
        &relocation.pubkey(),
        &e.buffer(&a, &label),
        &keys,
        &label,
        part.hi,
    );
    expect_refusal(e.send_attest(&a, check), VerifyError::PolicyMismatch);

    let mut all = vec![relocation.pubkey()];
    all.extend(&keys);
    let close = |by: &Pubkey| ix::close_relocation(&program, by, &all);
    expect_refusal(
        e.send(vec![close(&stranger.pubkey())], &[&stranger]),
        VerifyError::Unauthorized,
    );
    e.send(vec![close(&a.pubkey())], &[&a]).expect("close_relocation");
    assert!(all.iter().all(|k| e.svm.get_account(k).is_none_or(|x| x.lamports == 0)));
}

/// A relocation in parts may take longer than the policy's `max_snapshot_age`: its snapshot's
/// witnesses are judged as of the slot it was opened at. One opened after the witness record
/// aged past it is refused at the finish.
#[test]
fn a_relocation_in_parts_is_held_to_the_age_of_its_snapshot_when_opened() {
    let policy = allowing_moves(4096, 128, 64);
    let age = policy.max_snapshot_age;
    let mut e = env_with(&policy);
    let a = e.authority.insecure_clone();
    let s = relocation::submission("streamed-age", 16);
    e.witness_as(&memzinc_tests::svm::witness(), &s)
        .expect("witness_snapshot");
    let (relocation, stores) = e.open_relocation_as(&a, &s, 1, &[]).expect("open_relocation");
    let keys: Vec<Pubkey> = stores.iter().map(|k| k.pubkey()).collect();
    let witnessed_at = |e: &memzinc_tests::svm::Env, s: &Submission| {
        let record = ix::witnessed_snapshot_address(
            &e.program_id,
            &memzinc_tests::svm::witness().pubkey(),
            &s.plan.target_id,
            &s.plan.snapshot_root,
        );
        e.account(&record, memzinc_verifier::accounts::WitnessedSnapshot::decode)
            .slot
    };
    e.svm.warp_to_slot(witnessed_at(&e, &s) + 2 * age);
    e.check_in_parts(&s, 0, Some(4), &relocation.pubkey(), &keys, |_, _| {})
        .expect("judged as of its opening");

    let late = relocation::submission("streamed-age-late", 16);
    e.witness_as(&memzinc_tests::svm::witness(), &late)
        .expect("witness_snapshot");
    e.svm.warp_to_slot(witnessed_at(&e, &late) + age + 1);
    let (relocation, stores) = e.open_relocation_as(&a, &late, 1, &[]).expect("open_relocation");
    let keys: Vec<Pubkey> = stores.iter().map(|k| k.pubkey()).collect();
    expect_refusal(
        e.check_in_parts(&late, 0, Some(4), &relocation.pubkey(), &keys, |_, _| {}),
        VerifyError::StaleSnapshot,
    );
}
