//! The Anchor IDL in `idl/attestor.json` is the contract with Anchor clients: it must say exactly
//! what the program does. Discriminators, account sizes, error codes and the Borsh layout of
//! `attest`'s arguments are checked against the verifier crate the program is built from.

use memzinc::Sha2;
use memzinc_verifier::accounts::{self, Attestation, Policy, TargetChain};
use memzinc_verifier::plan::{PatchPlan, Write};
use memzinc_verifier::wire::{PolicyRules, Region};
use memzinc_verifier::VerifyError;
use serde_json::{json, Value};
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
        memzinc::chain::read_keypair(&memzinc_tests::repo_root().join("programs/attestor/attestor-keypair.json"))
            .unwrap();
    assert_eq!(keypair.pubkey().to_string(), memzinc::chain::ATTESTOR_PROGRAM_ID);
    assert_eq!(idl()["address"], memzinc::chain::ATTESTOR_PROGRAM_ID);
}

#[test]
fn discriminators_and_account_sizes_match() {
    let idl = idl();
    assert_eq!(disc(named(&idl["instructions"], "attest")), accounts::IX_ATTEST);
    assert_eq!(
        disc(named(&idl["instructions"], "initialize_policy")),
        accounts::IX_INITIALIZE_POLICY
    );
    for (name, d, len) in [
        ("Attestation", Attestation::DISCRIMINATOR, Attestation::LEN),
        ("Policy", Policy::DISCRIMINATOR, Policy::LEN),
        ("TargetChain", TargetChain::DISCRIMINATOR, TargetChain::LEN),
    ] {
        assert_eq!(disc(named(&idl["accounts"], name)), d, "{name}");
        assert_eq!(8 + size(&idl, &json!({"defined": {"name": name}})), len, "{name} size");
    }
    assert_eq!(
        disc(named(&idl["events"], "AttestationRecorded")),
        accounts::EVENT_ATTESTATION_RECORDED
    );
    assert_eq!(
        disc(named(&idl["events"], "PolicyInitialized")),
        accounts::EVENT_POLICY_INITIALIZED
    );
    assert_eq!(
        size(&idl, &json!({"defined": {"name": "AttestationRecorded"}})),
        Attestation::BODY_LEN
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

#[test]
fn instruction_args_encode_exactly_as_the_program_decodes() {
    let idl = idl();
    let plan = PatchPlan {
        target_id: memzinc_verifier::hash::target_id::<Sha2>(b"idl"),
        snapshot_root: [9; 32],
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
    };
    let args = json!({
        "target_id": plan.target_id.to_vec(),
        "snapshot_root": plan.snapshot_root.to_vec(),
        "regions": plan.regions.iter().map(|r| json!({"start": r.start, "end": r.end, "flags": r.flags})).collect::<Vec<_>>(),
        "writes": plan.writes.iter().map(|w| json!({"address": w.address, "old": w.old, "new": w.new})).collect::<Vec<_>>(),
    });
    let mut encoded = Vec::new();
    for arg in named(&idl["instructions"], "attest")["args"].as_array().unwrap() {
        borsh(&idl, &arg["type"], &args[arg["name"].as_str().unwrap()], &mut encoded);
    }
    assert_eq!(encoded, plan.encode());

    let rules = PolicyRules {
        wx: true,
        max_bytes: 300,
        max_writes: 9,
    };
    let mut encoded = Vec::new();
    for arg in named(&idl["instructions"], "initialize_policy")["args"]
        .as_array()
        .unwrap()
    {
        borsh(
            &idl,
            &arg["type"],
            &json!({"wx": true, "max_bytes": 300, "max_writes": 9}),
            &mut encoded,
        );
    }
    assert_eq!(encoded, rules.encode());
}
