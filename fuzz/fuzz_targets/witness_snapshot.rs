//! Arbitrary bytes as `witness_snapshot` instruction data, through what the program runs on
//! it: `Ix::split`, `WitnessSnapshotArgs::parse`, the `WitnessedSnapshot` record and event it
//! writes from the arguments, and the `WitnessTally` that `attest` later counts it with.
//!
//! The input is tried as it is, with its first 8 bytes replaced by the instruction's
//! discriminator, and with the discriminator put in front (so the argument parser sees
//! arbitrary arguments of every length). Asserts: nothing panics; `Ix::split` finds
//! `witness_snapshot` exactly when the first 8 bytes are `sha256("global:witness_snapshot")[..8]`;
//! the arguments parse exactly when they are 64 bytes, as `target_id ‖ snapshot_root` (else
//! `MalformedInstruction`), by a reference that slices the bytes; a record built from parsed
//! arguments (witness and slots taken from the input's hash) encodes to the documented layout
//! (`sha256("account:WitnessedSnapshot")[..8] ‖ witness ‖ target_id ‖ root ‖ slot ‖ bump`, its
//! event `sha256("event:SnapshotWitnessed")[..8] ‖` the same body without the bump) and decodes
//! back; and the tally counts it under a policy naming the witness exactly when the reference
//! says so (same target and root, `now - slot <= max_snapshot_age` saturating), with the error
//! the reference predicts otherwise, and records the witness and slot it counted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc_verifier::accounts::{PolicyConfig, WitnessTally, WitnessedSnapshot, MAX_SIGNERS};
use memzinc_verifier::instruction::{Ix, WitnessSnapshotArgs};
use memzinc_verifier::wire::{PolicyRules, SymbolRules};
use memzinc_verifier::VerifyError;
use sha2::Digest;

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn disc(name: &str) -> [u8; 8] {
    sha(&[name.as_bytes()])[..8].try_into().unwrap()
}

fn u64_at(h: &[u8; 32], at: usize) -> u64 {
    u64::from_le_bytes(h[at..at + 8].try_into().unwrap())
}

fn check(data: &[u8]) {
    let ix_disc = disc("global:witness_snapshot");
    let split = Ix::split(data);
    let is_witness = data.len() >= 8 && data[..8] == ix_disc;
    match split {
        Ok((Ix::WitnessSnapshot, args)) => {
            assert!(is_witness);
            assert_eq!(args, &data[8..]);
        }
        Ok(_) | Err(_) => {
            assert!(!is_witness, "witness_snapshot not found: {split:?}");
            return;
        }
    }
    let args = &data[8..];
    let parsed = WitnessSnapshotArgs::parse(args);
    let reference = if args.len() == 64 {
        Ok(WitnessSnapshotArgs {
            target_id: args[..32].try_into().unwrap(),
            snapshot_root: args[32..].try_into().unwrap(),
        })
    } else {
        Err(VerifyError::MalformedInstruction)
    };
    assert_eq!(parsed, reference);
    let Ok(WitnessSnapshotArgs {
        target_id,
        snapshot_root,
    }) = parsed
    else {
        return;
    };

    // The record the program writes from these arguments.
    let h = sha(&[b"memzinc-fuzz/witness", data]);
    let witness = sha(&[b"witness", &h]);
    let (slot, now, max_age) = (
        u64_at(&h, 0) >> (h[31] % 64),
        u64_at(&h, 8) >> (h[30] % 64),
        u64_at(&h, 16) >> (h[29] % 64),
    );
    let record = WitnessedSnapshot {
        witness,
        target_id,
        snapshot_root,
        slot,
        bump: h[24],
    };
    let mut account = [0u8; WitnessedSnapshot::LEN];
    record.encode(&mut account);
    let mut expected = disc("account:WitnessedSnapshot").to_vec();
    expected.extend_from_slice(&witness);
    expected.extend_from_slice(&target_id);
    expected.extend_from_slice(&snapshot_root);
    expected.extend_from_slice(&slot.to_le_bytes());
    expected.push(h[24]);
    assert_eq!(&account[..], &expected[..]);
    assert_eq!(WitnessedSnapshot::decode(&account), Ok(record));
    let mut event = [0u8; 8 + WitnessedSnapshot::BODY_LEN];
    record.encode_event(&mut event);
    assert_eq!(&event[..8], &disc("event:SnapshotWitnessed"));
    assert_eq!(&event[8..], &expected[8..expected.len() - 1]);

    // Counted under a policy that names the witness (second of two), for this or another root.
    let other = sha(&[b"other", &h]);
    let config = PolicyConfig {
        rules: PolicyRules {
            wx: true,
            max_bytes: 1,
            max_writes: 1,
            max_moves: 0,
        },
        signer_count: 0,
        signers: [[0; 32]; MAX_SIGNERS],
        witness_count: 2,
        witnesses: [other, witness, [0; 32], [0; 32]],
        witness_threshold: 1,
        max_snapshot_age: max_age,
        model_hash: [0; 32],
        verifier_hash: [0; 32],
        symbol_rules: SymbolRules::default(),
    };
    let root_cited = if h[25] & 1 == 0 { snapshot_root } else { other };
    let mut tally = WitnessTally::default();
    let got = tally.add(&config, &record, &target_id, &root_cited, now);
    let want = if root_cited != snapshot_root {
        Err(VerifyError::WitnessedRootMismatch)
    } else if now.saturating_sub(slot) > max_age {
        Err(VerifyError::StaleSnapshot)
    } else {
        Ok(())
    };
    assert_eq!(got, want);
    if want.is_ok() {
        assert_eq!(tally.count(), 1);
        assert_eq!((tally.witnesses[0], tally.slots[0]), (witness, slot));
        assert_eq!(tally.finish(&config), Ok(()));
        // The same witness again is a duplicate, not a second witness.
        assert_eq!(
            tally.add(&config, &record, &target_id, &root_cited, now),
            Err(VerifyError::DuplicateWitness)
        );
    } else {
        assert_eq!(tally.count(), 0);
        assert_eq!(tally.finish(&config), Err(VerifyError::NotEnoughWitnesses));
    }
    // A policy that does not name the witness never counts it.
    let stranger = PolicyConfig {
        witnesses: [other, [0; 32], [0; 32], [0; 32]],
        witness_count: 1,
        ..config
    };
    assert_eq!(
        WitnessTally::default().add(&stranger, &record, &target_id, &snapshot_root, now),
        Err(VerifyError::WitnessNotInPolicy)
    );
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let d = disc("global:witness_snapshot");
    let mut replaced = data.to_vec();
    if replaced.len() >= 8 {
        replaced[..8].copy_from_slice(&d);
        check(&replaced);
    }
    let mut prefixed = d.to_vec();
    prefixed.extend_from_slice(data);
    check(&prefixed);
});
