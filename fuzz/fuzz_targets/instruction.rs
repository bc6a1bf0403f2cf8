//! Arbitrary bytes as the attestor's instruction data, through the functions the program
//! decodes it with (`memzinc_verifier::instruction`: `Ix::split` and each instruction's
//! argument parser; `process_instruction` itself needs the Solana runtime).
//!
//! Asserts, for the input as it is and once more with its first byte replaced by a valid
//! discriminator (so every argument parser gets arbitrary arguments, not only the few inputs
//! that hit an 8-byte discriminator): nothing panics; the instruction found and every parse
//! result, value or error code, equal a reference decoder written here from the documented
//! layouts (discriminators recomputed as `sha256("global:<name>")[..8]`); a decoded
//! `PolicyConfig` re-encodes to exactly its input bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use memzinc_fuzz::ref_rule_valid;
use memzinc_verifier::accounts::{PolicyConfig, MAX_SIGNERS, MAX_WITNESSES};
use memzinc_verifier::instruction::{
    parse_append_slots, parse_no_args, parse_policy_config, CheckPartArgs, Ix, OpenBufferArgs, OpenRelocationArgs,
    PlanHashArgs, RecordAppliedArgs, RevokeArgs, WitnessSnapshotArgs, WriteBufferArgs,
};
use memzinc_verifier::wire::{PolicyRules, SymbolRule, SymbolRules};
use memzinc_verifier::VerifyError::{self, *};

const NAMES: [(&str, Ix); 15] = [
    ("open_relocation", Ix::OpenRelocation),
    ("append_slots", Ix::AppendSlots),
    ("check_relocation_part", Ix::CheckRelocationPart),
    ("finish_relocation", Ix::FinishRelocation),
    ("close_relocation", Ix::CloseRelocation),
    ("initialize_policy", Ix::InitializePolicy),
    ("update_policy", Ix::UpdatePolicy),
    ("close_policy", Ix::ClosePolicy),
    ("open_buffer", Ix::OpenBuffer),
    ("write_buffer", Ix::WriteBuffer),
    ("close_buffer", Ix::CloseBuffer),
    ("attest", Ix::Attest),
    ("revoke", Ix::Revoke),
    ("record_applied", Ix::RecordApplied),
    ("witness_snapshot", Ix::WitnessSnapshot),
];

fn discriminators() -> &'static [([u8; 8], Ix); 15] {
    static D: OnceLock<[([u8; 8], Ix); 15]> = OnceLock::new();
    D.get_or_init(|| {
        NAMES.map(|(name, ix)| {
            use sha2::Digest;
            let h = sha2::Sha256::digest(format!("global:{name}").as_bytes());
            (h[..8].try_into().unwrap(), ix)
        })
    })
}

fn u32_at(a: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(a[at..at + 4].try_into().unwrap())
}

fn hash_at(a: &[u8], at: usize) -> [u8; 32] {
    a[at..at + 32].try_into().unwrap()
}

fn ref_policy_config(a: &[u8]) -> Result<PolicyConfig, VerifyError> {
    // PolicyRules (wx u8, max_bytes, max_writes, max_moves u32), then Vec<Pubkey> signers.
    if a.len() < 17 || a[0] > 1 {
        return Err(MalformedInstruction);
    }
    let count = u32_at(a, 13) as usize;
    if count > MAX_SIGNERS {
        return Err(TooManySigners);
    }
    // Then Vec<Pubkey> witnesses (at most 4), threshold u8, max_snapshot_age u64.
    let witnesses_at = 17 + 32 * count;
    if a.len() < witnesses_at + 4 {
        return Err(MalformedInstruction);
    }
    let witness_count = u32_at(a, witnesses_at) as usize;
    if witness_count > MAX_WITNESSES {
        return Err(InvalidWitnessSet);
    }
    let threshold_at = witnesses_at + 4 + 32 * witness_count;
    let hashes_at = threshold_at + 1 + 8;
    // Then the two hashes and Vec<SymbolRule>: u32 count (at most 8), 65 bytes each.
    let rules_at = hashes_at + 64;
    if a.len() < rules_at + 4 {
        return Err(MalformedInstruction);
    }
    let rule_count = u32_at(a, rules_at) as usize;
    if rule_count > 8 {
        return Err(TooManySymbolRules);
    }
    if a.len() != rules_at + 4 + 65 * rule_count {
        return Err(MalformedInstruction);
    }
    let (max_bytes, max_writes) = (u32_at(a, 1), u32_at(a, 5));
    if max_bytes == 0 || max_writes == 0 {
        return Err(InvalidPolicyRules);
    }
    let u64_at = |at: usize| u64::from_le_bytes(a[at..at + 8].try_into().unwrap());
    let symbol_rules: Vec<SymbolRule> = (0..rule_count)
        .map(|i| {
            let at = rules_at + 4 + 65 * i;
            SymbolRule {
                symbol: hash_at(a, at),
                start: u64_at(at + 32),
                end: u64_at(at + 40),
                kind: a[at + 48],
                min: u64_at(at + 49),
                max: u64_at(at + 57),
            }
        })
        .collect();
    if !symbol_rules.iter().all(ref_rule_valid) {
        return Err(InvalidPolicyRules);
    }
    let mut signers = [[0u8; 32]; MAX_SIGNERS];
    for (i, s) in signers.iter_mut().take(count).enumerate() {
        *s = hash_at(a, 17 + 32 * i);
    }
    let mut witnesses = [[0u8; 32]; MAX_WITNESSES];
    for (i, w) in witnesses.iter_mut().take(witness_count).enumerate() {
        *w = hash_at(a, witnesses_at + 4 + 32 * i);
    }
    Ok(PolicyConfig {
        rules: PolicyRules {
            wx: a[0] == 1,
            max_bytes,
            max_writes,
            max_moves: u32_at(a, 9),
        },
        signer_count: count as u8,
        signers,
        witness_count: witness_count as u8,
        witnesses,
        witness_threshold: a[threshold_at],
        max_snapshot_age: u64::from_le_bytes(a[threshold_at + 1..hashes_at].try_into().unwrap()),
        model_hash: hash_at(a, hashes_at),
        verifier_hash: hash_at(a, hashes_at + 32),
        symbol_rules: SymbolRules::from_rules(&symbol_rules).expect("valid by the reference"),
    })
}

fn exact(a: &[u8], len: usize) -> Result<(), VerifyError> {
    if a.len() == len {
        Ok(())
    } else {
        Err(MalformedInstruction)
    }
}

fn check_args(ix: Ix, a: &[u8]) {
    match ix {
        Ix::InitializePolicy | Ix::UpdatePolicy => {
            let got = parse_policy_config(a);
            assert_eq!(got, ref_policy_config(a));
            if let Ok(c) = got {
                assert_eq!(c.encode(), a, "PolicyConfig encoding is not canonical");
            }
        }
        Ix::ClosePolicy => assert_eq!(parse_no_args(a), exact(a, 0)),
        Ix::OpenBuffer => {
            let expected = exact(a, 36).and_then(|()| match u32_at(a, 32) {
                0 | 524_289.. => Err(BufferOutOfBounds),
                len => Ok(OpenBufferArgs {
                    plan_hash: hash_at(a, 0),
                    len,
                }),
            });
            assert_eq!(OpenBufferArgs::parse(a), expected);
        }
        Ix::WriteBuffer => {
            let got = WriteBufferArgs::parse(a).map(|w| (*w.plan_hash, w.offset, w.data));
            let expected = if a.len() >= 40 && a.len() as u64 == 40 + u32_at(a, 36) as u64 {
                Ok((hash_at(a, 0), u32_at(a, 32), &a[40..]))
            } else {
                Err(MalformedInstruction)
            };
            assert_eq!(got, expected);
        }
        Ix::CloseBuffer | Ix::Attest => {
            let expected = exact(a, 32).map(|()| PlanHashArgs {
                plan_hash: hash_at(a, 0),
            });
            assert_eq!(PlanHashArgs::parse(a), expected);
        }
        Ix::Revoke => {
            let expected = exact(a, 8).map(|()| RevokeArgs {
                seq: u64::from_le_bytes(a[..8].try_into().unwrap()),
            });
            assert_eq!(RevokeArgs::parse(a), expected);
        }
        Ix::RecordApplied => {
            let expected = exact(a, 41).and_then(|()| match a[8] {
                0..=2 => Ok(RecordAppliedArgs {
                    seq: u64::from_le_bytes(a[..8].try_into().unwrap()),
                    outcome: a[8],
                    readback_hash: hash_at(a, 9),
                }),
                _ => Err(MalformedInstruction),
            });
            assert_eq!(RecordAppliedArgs::parse(a), expected);
        }
        Ix::WitnessSnapshot => {
            let expected = exact(a, 64).map(|()| WitnessSnapshotArgs {
                target_id: hash_at(a, 0),
                snapshot_root: hash_at(a, 32),
            });
            assert_eq!(WitnessSnapshotArgs::parse(a), expected);
        }
        Ix::OpenRelocation => {
            let expected = exact(a, 136).and_then(|()| match (u32_at(a, 128), u32_at(a, 132)) {
                (0, _) | (_, 0) => Err(MalformedInstruction),
                (slot_count, per_store) => Ok(OpenRelocationArgs {
                    target_id: hash_at(a, 0),
                    snapshot_root: hash_at(a, 32),
                    model_hash: hash_at(a, 64),
                    region_table_hash: hash_at(a, 96),
                    slot_count,
                    per_store,
                }),
            });
            assert_eq!(OpenRelocationArgs::parse(a), expected);
        }
        Ix::AppendSlots => {
            let expected = if a.len() >= 8 && a.len() as u64 == 8 + u32_at(a, 4) as u64 {
                Ok((u32_at(a, 0), &a[8..]))
            } else {
                Err(MalformedInstruction)
            };
            assert_eq!(parse_append_slots(a), expected);
        }
        Ix::CheckRelocationPart => {
            let expected = exact(a, 40).map(|()| CheckPartArgs {
                plan_hash: hash_at(a, 0),
                hi: u64::from_le_bytes(a[32..40].try_into().unwrap()),
            });
            assert_eq!(CheckPartArgs::parse(a), expected);
        }
        Ix::FinishRelocation | Ix::CloseRelocation => assert_eq!(parse_no_args(a), exact(a, 0)),
    }
}

fn check(data: &[u8]) {
    let expected = data
        .get(..8)
        .and_then(|d| discriminators().iter().find(|(disc, _)| disc == d))
        .map(|(_, ix)| (*ix, &data[8..]))
        .ok_or(UnknownInstruction);
    let got = Ix::split(data);
    assert_eq!(got, expected);
    if let Ok((ix, args)) = got {
        assert_eq!(ix.discriminator()[..], data[..8]);
        check_args(ix, args);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some((selector, rest)) = data.split_first() {
        let (disc, _) = discriminators()[*selector as usize % NAMES.len()];
        let mut steered = disc.to_vec();
        steered.extend_from_slice(rest);
        check(&steered);
    }
});
