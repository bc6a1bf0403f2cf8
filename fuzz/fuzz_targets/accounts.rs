//! Arbitrary bytes as account data (and event payloads) through every decoder in
//! `memzinc_verifier::accounts`.
//!
//! Each decoder sees the input as it is, the input behind the type's discriminator, and that
//! resized to the type's exact length (so the fuzzer does not have to find 8-byte magic numbers
//! and lengths before it reaches the fields). Asserts: nothing panics; a decoder accepts exactly
//! when a reference check written here says so (recomputed discriminator `sha256("account:<Name>")`,
//! exact size, `bool` bytes 0 or 1, at most 4 signers, 4 witnesses and 8 symbol rules, a buffer's version 1
//! and its length field equal to the bytes that follow), with the error code the reference predicts; whatever decodes re-encodes to
//! exactly the input bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use memzinc_verifier::accounts::{
    Attestation, BufferHeader, Discriminator, PlanMarker, Policy, Receipt, TargetChain, WitnessedSnapshot, MAX_SIGNERS,
    MAX_WITNESSES,
};
use memzinc_verifier::VerifyError::{self, *};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Policy,
    TargetChain,
    Attestation,
    AttestationEvent,
    PlanMarker,
    Buffer,
    Receipt,
    WitnessedSnapshot,
}

const KINDS: [(Kind, &str, usize); 8] = [
    (Kind::Policy, "account:Policy", Policy::LEN),
    (Kind::TargetChain, "account:TargetChain", TargetChain::LEN),
    (Kind::Attestation, "account:Attestation", Attestation::LEN),
    (
        Kind::AttestationEvent,
        "event:AttestationRecorded",
        8 + Attestation::BODY_LEN,
    ),
    (Kind::PlanMarker, "account:PlanMarker", PlanMarker::LEN),
    (Kind::Buffer, "account:Buffer", BufferHeader::LEN),
    (Kind::Receipt, "account:Receipt", Receipt::LEN),
    (
        Kind::WitnessedSnapshot,
        "account:WitnessedSnapshot",
        WitnessedSnapshot::LEN,
    ),
];

/// Sizes written out from the documented field lists, not from the `LEN` constants.
const SIZES: [usize; 8] = [
    // authority, rules (wx, max_bytes, max_writes, max_moves), signers, witnesses + threshold +
    // max age, two hashes, revision, bump, opened revision, closed, config hash, symbol rules
    8 + 32 + 13 + 1 + 32 * 4 + 1 + 32 * 4 + 1 + 8 + 32 + 32 + 4 + 1 + 4 + 1 + 32 + 1 + 65 * 8,
    8 + 32 + 32 + 8 + 32 + 1,
    // Attestation and its event: ..., policy hash, witness count, 4 witnesses, 4 slots
    // (+ revoked, bump for the account).
    8 + 32 * 3 + 8 + 8 + 32 * 5 + 4 + 4 + 4 + 32 + 1 + 32 * 4 + 8 * 4 + 1 + 1,
    8 + 32 * 3 + 8 + 8 + 32 * 5 + 4 + 4 + 4 + 32 + 1 + 32 * 4 + 8 * 4,
    8 + 8 + 1,
    8 + 32 + 32 + 1 + 4,
    8 + 32 + 32 + 8 + 8 + 1 + 32 + 1,
    8 + 32 * 3 + 8 + 1,
];

fn discriminator(i: usize) -> Discriminator {
    static D: OnceLock<[Discriminator; 8]> = OnceLock::new();
    D.get_or_init(|| {
        KINDS.map(|(_, name, _)| {
            use sha2::Digest;
            sha2::Sha256::digest(name.as_bytes())[..8].try_into().unwrap()
        })
    })[i]
}

/// Accepted, or the error the decoder must give.
fn reference(i: usize, data: &[u8]) -> Result<(), VerifyError> {
    let (kind, _, _) = KINDS[i];
    let size_ok = match kind {
        Kind::Buffer => data.len() >= SIZES[i],
        _ => data.len() == SIZES[i],
    };
    if !size_ok || data[..8] != discriminator(i) {
        return Err(AccountDiscriminatorMismatch);
    }
    if let Kind::Buffer = kind {
        if data[72] != 1 {
            return Err(UnsupportedVersion);
        }
        if u32::from_le_bytes(data[73..77].try_into().unwrap()) as u64 != (data.len() - SIZES[i]) as u64 {
            return Err(AccountDiscriminatorMismatch);
        }
    }
    // Policy offsets: witness count after authority, rules, signer count and signers; `closed`
    // after the witnesses, threshold, max age, two hashes, revision, bump and opened revision;
    // the symbol-rule count after the config hash.
    let witness_count = 8 + 32 + 13 + 1 + 32 * MAX_SIGNERS;
    let closed = witness_count + 1 + 32 * MAX_WITNESSES + 1 + 8 + 64 + 4 + 1 + 4;
    match kind {
        Kind::Policy if data[40] > 1 => Err(MalformedInstruction),
        Kind::Policy if data[53] as usize > MAX_SIGNERS => Err(TooManySigners),
        Kind::Policy if data[witness_count] as usize > MAX_WITNESSES => Err(InvalidWitnessSet),
        Kind::Policy if data[closed] > 1 => Err(MalformedInstruction),
        Kind::Policy if data[closed + 1 + 32] > 8 => Err(TooManySymbolRules),
        // The witness count follows the 8 hashes and keys, seq, slot, the two counts, the
        // revision and the policy hash.
        Kind::Attestation | Kind::AttestationEvent
            if data[8 + 32 * 8 + 8 + 8 + 4 + 4 + 4 + 32] as usize > MAX_WITNESSES =>
        {
            Err(InvalidWitnessSet)
        }
        Kind::Attestation if data[8 + Attestation::BODY_LEN] > 1 => Err(MalformedInstruction),
        _ => Ok(()),
    }
}

fn round_trip<const N: usize>(data: &[u8], encode: impl FnOnce(&mut [u8; N])) {
    let mut out = [0u8; N];
    encode(&mut out);
    assert_eq!(&out[..], data, "decode then encode changed the bytes");
}

fn check(i: usize, data: &[u8]) {
    let got: Result<(), VerifyError> = match KINDS[i].0 {
        Kind::Policy => Policy::decode(data).map(|v| round_trip(data, |o| v.encode(o))),
        Kind::TargetChain => TargetChain::decode(data).map(|v| round_trip(data, |o| v.encode(o))),
        Kind::Attestation => Attestation::decode(data).map(|v| round_trip(data, |o| v.encode(o))),
        Kind::AttestationEvent => Attestation::decode_event(data).map(|v| {
            assert!(!v.revoked && v.bump == 0);
            round_trip(data, |o| v.encode_event(o))
        }),
        Kind::PlanMarker => PlanMarker::decode(data).map(|v| round_trip(data, |o| v.encode(o))),
        Kind::Buffer => BufferHeader::decode(data).map(|(h, body)| {
            round_trip(&data[..BufferHeader::LEN], |o| h.encode(o));
            assert_eq!(body, &data[BufferHeader::LEN..]);
            assert_eq!(h.len as usize, body.len());
        }),
        Kind::Receipt => Receipt::decode(data).map(|v| round_trip(data, |o| v.encode(o))),
        Kind::WitnessedSnapshot => WitnessedSnapshot::decode(data).map(|v| round_trip(data, |o| v.encode(o))),
    };
    assert_eq!(got, reference(i, data), "{:?} on {} bytes", KINDS[i].0, data.len());
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(KINDS.map(|k| k.2), SIZES);
    for i in 0..KINDS.len() {
        check(i, data);
    }
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let i = *selector as usize % KINDS.len();
    let mut d = discriminator(i).to_vec();
    d.extend_from_slice(rest);
    check(i, &d);
    // Exactly the size (a buffer: the header plus whatever follows, its length field fixed up,
    // unless the selector's top bit asks to keep the fuzzer's own length field).
    let body = d.len().saturating_sub(SIZES[i]);
    d.resize(SIZES[i] + if matches!(KINDS[i].0, Kind::Buffer) { body } else { 0 }, 0);
    if matches!(KINDS[i].0, Kind::Buffer) && selector & 0x80 == 0 {
        d[73..77].copy_from_slice(&(body as u32).to_le_bytes());
    }
    check(i, &d);
});
