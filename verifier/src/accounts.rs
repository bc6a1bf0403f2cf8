//! Account and instruction layouts of the attestor, in Anchor's wire format: an 8-byte
//! discriminator (`sha256("account:<Name>")[..8]`, `sha256("global:<ix>")[..8]`,
//! `sha256("event:<Name>")[..8]`) followed by Borsh fields. Fixed sizes, so the program can
//! decode in place and the IDL can state them. A test recomputes every discriminator.

use crate::error::VerifyError;
use crate::hash::Hash;
use crate::wire::{PolicyRules, Reader, POLICY_RULES_LEN};

pub type Discriminator = [u8; 8];

pub const IX_INITIALIZE_POLICY: Discriminator = [9, 186, 86, 225, 129, 162, 231, 56];
pub const IX_ATTEST: Discriminator = [83, 148, 120, 119, 144, 139, 117, 160];

pub const EVENT_ATTESTATION_RECORDED: Discriminator = [207, 97, 52, 58, 217, 238, 97, 21];
pub const EVENT_POLICY_INITIALIZED: Discriminator = [102, 184, 59, 178, 235, 69, 251, 181];

pub const POLICY_SEED: &[u8] = b"policy";
pub const TARGET_SEED: &[u8] = b"target";
pub const ATTESTATION_SEED: &[u8] = b"attestation";

/// Appends little-endian fields to a fixed buffer. Panics are impossible: sizes are constants
/// checked by the tests, and `put` is only used by `encode` with the matching `LEN`.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

fn check_discriminator<'a>(data: &'a [u8], disc: &Discriminator, len: usize) -> Result<Reader<'a>, VerifyError> {
    if data.len() != len || data[..8] != disc[..] {
        return Err(VerifyError::AccountDiscriminatorMismatch);
    }
    Ok(Reader::new(&data[8..]))
}

/// A policy: who may attest under it and the rules every plan must satisfy.
/// PDA seeds: `["policy", authority]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub authority: [u8; 32],
    pub rules: PolicyRules,
    pub bump: u8,
}

impl Policy {
    pub const DISCRIMINATOR: Discriminator = [222, 135, 7, 163, 235, 177, 33, 68];
    pub const LEN: usize = 8 + 32 + POLICY_RULES_LEN + 1;

    pub fn decode(data: &[u8]) -> Result<Policy, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        Ok(Policy {
            authority: *r.array()?,
            rules: PolicyRules::parse(&mut r)?,
            bump: r.u8()?,
        })
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.authority);
        w.put(&self.rules.encode());
        w.put(&[self.bump]);
    }
}

/// The head of one target's attestation chain under one policy.
/// PDA seeds: `["target", policy, target_id]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetChain {
    pub policy: [u8; 32],
    pub target_id: Hash,
    /// Sequence number the next attestation gets (= number of attestations so far).
    pub next_seq: u64,
    /// Link hash of the latest attestation; zeroes before the first.
    pub head_hash: Hash,
    pub bump: u8,
}

impl TargetChain {
    pub const DISCRIMINATOR: Discriminator = [61, 33, 169, 133, 18, 166, 63, 98];
    pub const LEN: usize = 8 + 32 + 32 + 8 + 32 + 1;

    pub fn decode(data: &[u8]) -> Result<TargetChain, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        Ok(TargetChain {
            policy: *r.array()?,
            target_id: *r.array()?,
            next_seq: r.u64()?,
            head_hash: *r.array()?,
            bump: r.u8()?,
        })
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.policy);
        w.put(&self.target_id);
        w.put(&self.next_seq.to_le_bytes());
        w.put(&self.head_hash);
        w.put(&[self.bump]);
    }
}

/// One recorded decision. PDA seeds: `["attestation", target_chain, seq_le]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attestation {
    pub target_id: Hash,
    pub policy: [u8; 32],
    pub signer: [u8; 32],
    pub seq: u64,
    pub slot: u64,
    pub snapshot_root: Hash,
    pub region_table_hash: Hash,
    pub plan_hash: Hash,
    pub prev_hash: Hash,
    /// `hash::link_hash` of the fields above.
    pub hash: Hash,
    pub write_count: u32,
    pub byte_count: u32,
    pub bump: u8,
}

impl Attestation {
    pub const DISCRIMINATOR: Discriminator = [152, 125, 183, 86, 36, 146, 121, 73];
    /// The Borsh body without the trailing bump; the `AttestationRecorded` event carries it.
    pub const BODY_LEN: usize = 32 * 8 + 8 + 8 + 4 + 4;
    pub const LEN: usize = 8 + Self::BODY_LEN + 1;

    pub fn decode(data: &[u8]) -> Result<Attestation, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        Self::decode_body(&mut r, true)
    }

    /// Decodes an `AttestationRecorded` event payload (discriminator included).
    pub fn decode_event(data: &[u8]) -> Result<Attestation, VerifyError> {
        let mut r = check_discriminator(data, &EVENT_ATTESTATION_RECORDED, 8 + Self::BODY_LEN)?;
        Self::decode_body(&mut r, false)
    }

    fn decode_body(r: &mut Reader<'_>, with_bump: bool) -> Result<Attestation, VerifyError> {
        Ok(Attestation {
            target_id: *r.array()?,
            policy: *r.array()?,
            signer: *r.array()?,
            seq: r.u64()?,
            slot: r.u64()?,
            snapshot_root: *r.array()?,
            region_table_hash: *r.array()?,
            plan_hash: *r.array()?,
            prev_hash: *r.array()?,
            hash: *r.array()?,
            write_count: r.u32()?,
            byte_count: r.u32()?,
            bump: if with_bump { r.u8()? } else { 0 },
        })
    }

    fn put_body(&self, w: &mut Writer<'_>) {
        w.put(&self.target_id);
        w.put(&self.policy);
        w.put(&self.signer);
        w.put(&self.seq.to_le_bytes());
        w.put(&self.slot.to_le_bytes());
        w.put(&self.snapshot_root);
        w.put(&self.region_table_hash);
        w.put(&self.plan_hash);
        w.put(&self.prev_hash);
        w.put(&self.hash);
        w.put(&self.write_count.to_le_bytes());
        w.put(&self.byte_count.to_le_bytes());
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        self.put_body(&mut w);
        w.put(&[self.bump]);
    }

    pub fn encode_event(&self, out: &mut [u8; 8 + Self::BODY_LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&EVENT_ATTESTATION_RECORDED);
        self.put_body(&mut w);
    }

    /// Recomputes this attestation's link hash from its fields.
    pub fn computed_hash<H: crate::Sha256>(&self) -> Hash {
        crate::hash::link_hash::<H>(&crate::hash::LinkFields {
            prev_hash: &self.prev_hash,
            seq: self.seq,
            policy: &self.policy,
            target_id: &self.target_id,
            signer: &self.signer,
            slot: self.slot,
            plan_hash: &self.plan_hash,
            snapshot_root: &self.snapshot_root,
            region_table_hash: &self.region_table_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn disc(name: &str) -> Discriminator {
        sha2::Sha256::digest(name.as_bytes())[..8].try_into().unwrap()
    }

    #[test]
    fn discriminators_are_anchors() {
        assert_eq!(IX_INITIALIZE_POLICY, disc("global:initialize_policy"));
        assert_eq!(IX_ATTEST, disc("global:attest"));
        assert_eq!(Policy::DISCRIMINATOR, disc("account:Policy"));
        assert_eq!(TargetChain::DISCRIMINATOR, disc("account:TargetChain"));
        assert_eq!(Attestation::DISCRIMINATOR, disc("account:Attestation"));
        assert_eq!(EVENT_ATTESTATION_RECORDED, disc("event:AttestationRecorded"));
        assert_eq!(EVENT_POLICY_INITIALIZED, disc("event:PolicyInitialized"));
    }

    #[test]
    fn layouts_round_trip_and_reject_cosplay() {
        let a = Attestation {
            target_id: [1; 32],
            policy: [2; 32],
            signer: [3; 32],
            seq: 7,
            slot: 99,
            snapshot_root: [4; 32],
            region_table_hash: [5; 32],
            plan_hash: [6; 32],
            prev_hash: [7; 32],
            hash: [8; 32],
            write_count: 3,
            byte_count: 12,
            bump: 254,
        };
        let mut buf = [0u8; Attestation::LEN];
        a.encode(&mut buf);
        assert_eq!(Attestation::decode(&buf), Ok(a));
        // The same bytes are not a TargetChain or a Policy.
        assert_eq!(
            TargetChain::decode(&buf),
            Err(VerifyError::AccountDiscriminatorMismatch)
        );
        let p = Policy {
            authority: [9; 32],
            rules: PolicyRules {
                wx: true,
                max_bytes: 64,
                max_writes: 4,
            },
            bump: 255,
        };
        let mut pbuf = [0u8; Policy::LEN];
        p.encode(&mut pbuf);
        assert_eq!(Policy::decode(&pbuf), Ok(p));
        assert_eq!(
            Policy::decode(&pbuf[..Policy::LEN - 1]),
            Err(VerifyError::AccountDiscriminatorMismatch)
        );
    }
}
