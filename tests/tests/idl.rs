//! The Anchor IDL in `idl/attestor.json` is the contract with Anchor clients: it must say exactly
//! what the program does. Discriminators, account sizes, error codes and the Borsh layout of
//! `attest`'s arguments are checked against the verifier crate the program is built from.

use memzinc::base::Sha2;
use memzinc_cli::attest::instructions as ix;
use memzinc_verifier::accounts::{
    self, Attestation, BufferHeader, PlanMarker, Policy, PolicyConfig, Receipt, Relocation, RelocationStore,
    TargetChain, WitnessedSnapshot,
};
use memzinc_verifier::plan::{PatchPlan, Write};
use memzinc_verifier::wire::{field_kind, PolicyRules, Region, Slot, SymbolRule, SymbolRules};
use memzinc_verifier::VerifyError;
use serde_json::{json, Value};
use solana_pubkey::Pubkey;
use solana_signer::Signer;

fn idl() -> Value {
    let path = memzinc_tests::repo_root().join("idl/attestor.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn disc(v: &Value) -> [u8; 8] {
    let bytes: Vec<u8> = v["discriminator"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    bytes.try_into().unwrap()
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("IDL lacks {name}"))
}

fn type_def<'a>(idl: &'a Value, name: &str) -> &'a Value {
    &named(&idl["types"], name)["type"]
}

/// Borsh-encodes a JSON value as the IDL type says (the subset this IDL uses).
fn borsh(idl: &Value, ty: &Value, v: &Value, out: &mut Vec<u8>) {
    match ty {
        Value::String(s) => match s.as_str() {
            "u8" => out.push(v.as_u64().unwrap() as u8),
            "bool" => out.push(v.as_bool().unwrap() as u8),
            "u32" => out.extend((v.as_u64().unwrap() as u32).to_le_bytes()),
            "u64" => out.extend(v.as_u64().unwrap().to_le_bytes()),
            "pubkey" => out.extend(v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8)),
            "bytes" => {
                let b = v.as_array().unwrap();
                out.extend((b.len() as u32).to_le_bytes());
                out.extend(b.iter().map(|x| x.as_u64().unwrap() as u8));
            }
            other => panic!("type {other} not handled"),
        },
        Value::Object(o) if o.contains_key("array") => {
            for x in v.as_array().unwrap() {
                borsh(idl, &o["array"][0], x, out);
            }
        }
        Value::Object(o) if o.contains_key("vec") => {
            let items = v.as_array().unwrap();
            out.extend((items.len() as u32).to_le_bytes());
            for x in items {
                borsh(idl, &o["vec"], x, out);
            }
        }
        Value::Object(o) if o.contains_key("defined") => {
            let def = type_def(idl, o["defined"]["name"].as_str().unwrap());
            for field in def["fields"].as_array().unwrap() {
                borsh(idl, &field["type"], &v[field["name"].as_str().unwrap()], out);
            }
        }
        other => panic!("type {other} not handled"),
    }
}

/// Size of a fixed-size IDL type.
fn size(idl: &Value, ty: &Value) -> usize {
    match ty {
        Value::String(s) => match s.as_str() {
            "u8" | "bool" => 1,
            "u32" => 4,
            "u64" => 8,
            "pubkey" => 32,
            other => panic!("{other} has no fixed size"),
        },
        Value::Object(o) if o.contains_key("array") => {
            size(idl, &o["array"][0]) * o["array"][1].as_u64().unwrap() as usize
        }
        Value::Object(o) if o.contains_key("defined") => {
            let def = type_def(idl, o["defined"]["name"].as_str().unwrap());
            def["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| size(idl, &f["type"]))
                .sum()
        }
        other => panic!("{other} has no fixed size"),
    }
}

#[test]
fn address_matches_the_program_keypair() {
    let keypair =
        memzinc_cli::attest::read_keypair(&memzinc_tests::repo_root().join("programs/attestor/attestor-keypair.json"))
            .unwrap();
    assert_eq!(keypair.pubkey().to_string(), memzinc_cli::attest::ATTESTOR_PROGRAM_ID);
    assert_eq!(idl()["address"], memzinc_cli::attest::ATTESTOR_PROGRAM_ID);
}

#[test]
fn discriminators_and_account_sizes_match() {
    let idl = idl();
    for (name, d) in [
        ("attest", accounts::IX_ATTEST),
        ("initialize_policy", accounts::IX_INITIALIZE_POLICY),
        ("update_policy", accounts::IX_UPDATE_POLICY),
        ("close_policy", accounts::IX_CLOSE_POLICY),
        ("open_buffer", accounts::IX_OPEN_BUFFER),
        ("write_buffer", accounts::IX_WRITE_BUFFER),
        ("close_buffer", accounts::IX_CLOSE_BUFFER),
        ("revoke", accounts::IX_REVOKE),
        ("record_applied", accounts::IX_RECORD_APPLIED),
        ("witness_snapshot", accounts::IX_WITNESS_SNAPSHOT),
        ("open_relocation", accounts::IX_OPEN_RELOCATION),
        ("append_slots", accounts::IX_APPEND_SLOTS),
        ("check_relocation_part", accounts::IX_CHECK_RELOCATION_PART),
        ("finish_relocation", accounts::IX_FINISH_RELOCATION),
        ("close_relocation", accounts::IX_CLOSE_RELOCATION),
    ] {
        assert_eq!(disc(named(&idl["instructions"], name)), d, "{name}");
    }
    assert_eq!(
        idl["instructions"].as_array().unwrap().len(),
        15,
        "every instruction is listed"
    );
    for (name, d, len) in [
        ("Attestation", Attestation::DISCRIMINATOR, Attestation::LEN),
        ("Policy", Policy::DISCRIMINATOR, Policy::LEN),
        ("TargetChain", TargetChain::DISCRIMINATOR, TargetChain::LEN),
        ("PlanMarker", PlanMarker::DISCRIMINATOR, PlanMarker::LEN),
        ("Receipt", Receipt::DISCRIMINATOR, Receipt::LEN),
        (
            "WitnessedSnapshot",
            WitnessedSnapshot::DISCRIMINATOR,
            WitnessedSnapshot::LEN,
        ),
        ("Relocation", Relocation::DISCRIMINATOR, Relocation::LEN),
        ("RelocationStore", RelocationStore::DISCRIMINATOR, RelocationStore::LEN),
    ] {
        assert_eq!(disc(named(&idl["accounts"], name)), d, "{name}");
        assert_eq!(8 + size(&idl, &json!({"defined": {"name": name}})), len, "{name} size");
    }
    assert_eq!(disc(named(&idl["accounts"], "Buffer")), BufferHeader::DISCRIMINATOR);
    for (name, d) in [
        ("AttestationRecorded", accounts::EVENT_ATTESTATION_RECORDED),
        ("PolicyInitialized", accounts::EVENT_POLICY_INITIALIZED),
        ("PolicyUpdated", accounts::EVENT_POLICY_UPDATED),
        ("AttestationRevoked", accounts::EVENT_ATTESTATION_REVOKED),
        ("ApplyRecorded", accounts::EVENT_APPLY_RECORDED),
        ("SnapshotWitnessed", accounts::EVENT_SNAPSHOT_WITNESSED),
    ] {
        assert_eq!(disc(named(&idl["events"], name)), d, "{name}");
    }
    assert_eq!(
        size(&idl, &json!({"defined": {"name": "AttestationRecorded"}})),
        Attestation::BODY_LEN
    );
    assert_eq!(
        size(&idl, &json!({"defined": {"name": "ApplyRecorded"}})),
        Receipt::BODY_LEN
    );
}

#[test]
fn errors_match_codes_names_and_messages() {
    let idl = idl();
    let errors = idl["errors"].as_array().unwrap();
    assert_eq!(errors.len(), VerifyError::ALL.len());
    for (e, v) in errors.iter().zip(VerifyError::ALL) {
        assert_eq!(e["code"], v.anchor_code());
        assert_eq!(e["name"], v.name());
        assert_eq!(e["msg"], v.message());
    }
}

fn encode_args(idl: &Value, instruction: &str, args: &Value) -> Vec<u8> {
    let mut encoded = Vec::new();
    for arg in named(&idl["instructions"], instruction)["args"].as_array().unwrap() {
        borsh(idl, &arg["type"], &args[arg["name"].as_str().unwrap()], &mut encoded);
    }
    encoded
}

#[test]
fn instruction_args_encode_exactly_as_the_program_decodes() {
    let idl = idl();
    let plan = PatchPlan {
        target_id: memzinc_verifier::hash::target_id::<Sha2>(b"idl"),
        snapshot_root: [9; 32],
        model_hash: [8; 32],
        regions: vec![
            Region {
                start: 0x1000,
                end: 0x3000,
                flags: 3,
            },
            Region {
                start: 0x5000,
                end: 0x6000,
                flags: 5,
            },
        ],
        writes: vec![
            Write {
                address: 0x1008,
                old: vec![1, 2, 3],
                new: vec![4, 5, 6],
            },
            Write {
                address: 0x2000,
                old: vec![0],
                new: vec![7],
            },
        ],
        slots: vec![
            Slot {
                address: 0x1100,
                len: 16,
                from: 1,
                to: 1,
            },
            Slot {
                address: 0x1200,
                len: 16,
                from: 0,
                to: 0,
            },
        ],
    };
    let core = json!({
        "target_id": plan.target_id.to_vec(),
        "snapshot_root": plan.snapshot_root.to_vec(),
        "model_hash": plan.model_hash.to_vec(),
        "regions": plan.regions.iter().map(|r| json!({"start": r.start, "end": r.end, "flags": r.flags})).collect::<Vec<_>>(),
        "writes": plan.writes.iter().map(|w| json!({"address": w.address, "old": w.old, "new": w.new})).collect::<Vec<_>>(),
        "slots": plan.slots.iter().map(|s| json!({"address": s.address, "len": s.len, "from": s.from, "to": s.to})).collect::<Vec<_>>(),
    });
    let mut encoded = Vec::new();
    borsh(&idl, &json!({"defined": {"name": "PlanCore"}}), &core, &mut encoded);
    assert_eq!(encoded, plan.encode(), "PlanCore is what the plan hash covers");

    let signer = Pubkey::new_unique();
    let config = PolicyConfig {
        rules: PolicyRules {
            wx: true,
            max_bytes: 300,
            max_writes: 9,
            max_moves: 17,
        },
        signer_count: 1,
        signers: [signer.to_bytes(), [0; 32], [0; 32], [0; 32]],
        witness_count: 1,
        witnesses: [[4; 32], [0; 32], [0; 32], [0; 32]],
        witness_threshold: 1,
        max_snapshot_age: 1234,
        model_hash: [5; 32],
        verifier_hash: [6; 32],
        symbol_rules: SymbolRules::from_rules(&[SymbolRule {
            symbol: [7; 32],
            start: 16,
            end: 20,
            kind: field_kind::SIGNED,
            min: (-3i64) as u64,
            max: 90,
        }])
        .unwrap(),
    };
    let args = json!({"config": {
        "rules": {"wx": true, "max_bytes": 300, "max_writes": 9, "max_moves": 17},
        "signers": [signer.to_bytes().to_vec()],
        "witnesses": [vec![4u8; 32]], "witness_threshold": 1, "max_snapshot_age": 1234,
        "model_hash": vec![5u8; 32], "verifier_hash": vec![6u8; 32],
        "symbol_rules": [{"symbol": vec![7u8; 32], "start": 16, "end": 20, "kind": 2, "min": (-3i64) as u64, "max": 90}],
    }});
    let program = Pubkey::new_unique();
    let authority = Pubkey::new_unique();
    let built = ix::initialize_policy(&program, &authority, &config);
    assert_eq!(built.data[8..], encode_args(&idl, "initialize_policy", &args)[..]);

    let plan_hash = [3u8; 32];
    let buffer = Pubkey::new_unique();
    let built = ix::write_buffer(&program, &authority, &buffer, &plan_hash, 1234, &[1, 2, 3]);
    let args = json!({"plan_hash": plan_hash.to_vec(), "offset": 1234, "data": [1, 2, 3]});
    assert_eq!(built.data[8..], encode_args(&idl, "write_buffer", &args)[..]);

    let built = ix::record_applied(&program, &authority, &authority, &plan.target_id, 7, 1, &[8; 32]);
    let args = json!({"seq": 7, "outcome": 1, "readback_hash": vec![8u8; 32]});
    assert_eq!(built.data[8..], encode_args(&idl, "record_applied", &args)[..]);

    let state = plan.stream_start::<Sha2>();
    let built = ix::open_relocation(&program, &authority, &authority, &buffer, &[], &state, 7);
    let args = json!({
        "target_id": plan.target_id.to_vec(), "snapshot_root": plan.snapshot_root.to_vec(),
        "model_hash": plan.model_hash.to_vec(), "region_table_hash": plan.region_table_hash::<Sha2>().to_vec(),
        "slot_count": 2, "per_store": 7,
    });
    assert_eq!(built.data[8..], encode_args(&idl, "open_relocation", &args)[..]);
    let built = ix::append_slots(&program, &authority, &buffer, &[], 56, &[1, 2]);
    assert_eq!(
        built.data[8..],
        encode_args(&idl, "append_slots", &json!({"first": 56, "slots": [1, 2]}))[..]
    );
    let built = ix::check_relocation_part(&program, &authority, &authority, &buffer, &buffer, &[], &plan_hash, 99);
    let args = json!({"plan_hash": plan_hash.to_vec(), "hi": 99});
    assert_eq!(built.data[8..], encode_args(&idl, "check_relocation_part", &args)[..]);

    // Account lists: the builders pass as many accounts as the IDL names, writable/signer alike.
    for (name, built) in [
        (
            "open_relocation",
            ix::open_relocation(&program, &authority, &authority, &buffer, &[], &state, 7),
        ),
        (
            "append_slots",
            ix::append_slots(&program, &authority, &buffer, &[], 0, &[]),
        ),
        (
            "check_relocation_part",
            ix::check_relocation_part(&program, &authority, &authority, &buffer, &buffer, &[], &plan_hash, 0),
        ),
        (
            "finish_relocation",
            ix::finish_relocation(
                &program,
                &authority,
                &authority,
                &plan.target_id,
                &plan_hash,
                0,
                &buffer,
                &[],
            ),
        ),
        ("close_relocation", ix::close_relocation(&program, &authority, &[])),
        (
            "attest",
            ix::attest(
                &program,
                &authority,
                &authority,
                &plan.target_id,
                &plan_hash,
                0,
                &buffer,
                &[],
            ),
        ),
        (
            "record_applied",
            ix::record_applied(&program, &authority, &authority, &plan.target_id, 7, 1, &[8; 32]),
        ),
        ("revoke", ix::revoke(&program, &authority, &plan.target_id, 0)),
        (
            "open_buffer",
            ix::open_buffer(&program, &authority, &buffer, &plan_hash, 10, 1)[1].clone(),
        ),
        ("update_policy", ix::update_policy(&program, &authority, &config)),
        (
            "witness_snapshot",
            ix::witness_snapshot(&program, &authority, &buffer, &plan.target_id, &[9; 32]),
        ),
    ] {
        let declared = named(&idl["instructions"], name)["accounts"].as_array().unwrap();
        assert_eq!(declared.len(), built.accounts.len(), "{name}");
        for (d, b) in declared.iter().zip(&built.accounts) {
            assert_eq!(
                d["writable"].as_bool().unwrap_or(false),
                b.is_writable,
                "{name}.{}",
                d["name"]
            );
            assert_eq!(
                d["signer"].as_bool().unwrap_or(false),
                b.is_signer,
                "{name}.{}",
                d["name"]
            );
        }
    }
}

/// The IDL's PDA seeds (what Anchor clients resolve accounts from) derive exactly the addresses
/// the host's instruction builders use, for every PDA the IDL declares.
#[test]
fn pda_seeds_derive_the_builders_addresses() {
    let idl = idl();
    let program = Pubkey::new_unique();
    let authority = Pubkey::new_unique();
    let host = Pubkey::new_unique();
    let buffer = Pubkey::new_unique();
    let target_id = [7u8; 32];
    let plan_hash = [3u8; 32];
    let seq = 5u64;
    let config = PolicyConfig {
        rules: PolicyRules {
            wx: true,
            max_bytes: 64,
            max_writes: 8,
            max_moves: 0,
        },
        signer_count: 0,
        signers: [[0; 32]; 4],
        witness_count: 1,
        witnesses: [[4; 32], [0; 32], [0; 32], [0; 32]],
        witness_threshold: 1,
        max_snapshot_age: 10,
        model_hash: [0; 32],
        verifier_hash: [0; 32],
        symbol_rules: SymbolRules::default(),
    };
    let built = |name: &str| -> (solana_instruction::Instruction, Value) {
        match name {
            "initialize_policy" => (ix::initialize_policy(&program, &authority, &config), json!({})),
            "update_policy" => (ix::update_policy(&program, &authority, &config), json!({})),
            "close_policy" => (ix::close_policy(&program, &authority), json!({})),
            "attest" => (
                ix::attest(&program, &host, &authority, &target_id, &plan_hash, seq, &buffer, &[]),
                json!({"plan_hash": plan_hash.to_vec()}),
            ),
            "revoke" => (ix::revoke(&program, &authority, &target_id, seq), json!({"seq": seq})),
            "record_applied" => (
                ix::record_applied(&program, &host, &authority, &target_id, seq, 1, &[8; 32]),
                json!({"seq": seq}),
            ),
            "witness_snapshot" => (
                ix::witness_snapshot(&program, &host, &authority, &target_id, &[9; 32]),
                json!({"target_id": target_id.to_vec(), "snapshot_root": vec![9u8; 32]}),
            ),
            other => panic!("{other} declares a PDA but this test has no builder for it"),
        }
    };
    // Account data seeds read: the chain's `next_seq` is the sequence number being attested.
    let data = json!({"target_chain": {"next_seq": seq}});

    let mut checked = Vec::new();
    for instruction in idl["instructions"].as_array().unwrap() {
        let name = instruction["name"].as_str().unwrap();
        let declared = instruction["accounts"].as_array().unwrap();
        if !declared.iter().any(|a| a.get("pda").is_some()) {
            continue;
        }
        let (ix, args) = built(name);
        let key = |account: &str| {
            let i = declared.iter().position(|a| a["name"] == account).unwrap();
            ix.accounts[i].pubkey
        };
        for (i, account) in declared.iter().enumerate() {
            let Some(pda) = account.get("pda") else {
                continue;
            };
            let seeds: Vec<Vec<u8>> = pda["seeds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|seed| {
                    let path = seed["path"].as_str().unwrap_or_default();
                    let mut out = Vec::new();
                    match seed["kind"].as_str().unwrap() {
                        "const" => out.extend(
                            seed["value"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|b| b.as_u64().unwrap() as u8),
                        ),
                        "arg" => {
                            let arg = named(&instruction["args"], path);
                            borsh(&idl, &arg["type"], &args[path], &mut out);
                        }
                        "account" => match path.split_once('.') {
                            None => out.extend(key(path).to_bytes()),
                            Some((holder, field)) => {
                                let ty = named(&type_def(&idl, seed["account"].as_str().unwrap())["fields"], field);
                                borsh(&idl, &ty["type"], &data[holder][field], &mut out);
                            }
                        },
                        other => panic!("seed kind {other}"),
                    }
                    out
                })
                .collect();
            let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
            let (expected, _) = Pubkey::find_program_address(&seeds, &program);
            let path = format!("{name}.{}", account["name"].as_str().unwrap());
            assert_eq!(ix.accounts[i].pubkey, expected, "{path}");
            checked.push(path);
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "attest.attestation",
            "attest.plan_marker",
            "close_policy.policy",
            "initialize_policy.policy",
            "record_applied.attestation",
            "record_applied.receipt",
            "revoke.attestation",
            "revoke.policy",
            "update_policy.policy",
            "witness_snapshot.witnessed_snapshot",
        ]
    );
}
