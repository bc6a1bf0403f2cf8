//! Account and instruction layouts of the attestor, in Anchor's wire format: an 8-byte
//! discriminator (`sha256("account:<Name>")[..8]`, `sha256("global:<ix>")[..8]`,
//! `sha256("event:<Name>")[..8]`) followed by Borsh fields. Fixed sizes, so the program can
//! decode in place and the IDL can state them. A test recomputes every discriminator.

use crate::error::VerifyError;
use crate::hash::Hash;
use crate::wire::{PolicyRules, Reader, SymbolRules, MAX_SYMBOL_RULES, POLICY_RULES_LEN, SYMBOL_RULE_LEN};

pub type Discriminator = [u8; 8];

pub const IX_INITIALIZE_POLICY: Discriminator = [9, 186, 86, 225, 129, 162, 231, 56];
pub const IX_UPDATE_POLICY: Discriminator = [212, 245, 246, 7, 163, 151, 18, 57];
pub const IX_CLOSE_POLICY: Discriminator = [55, 42, 248, 229, 222, 138, 26, 252];
pub const IX_OPEN_BUFFER: Discriminator = [44, 175, 185, 234, 87, 198, 98, 249];
pub const IX_WRITE_BUFFER: Discriminator = [164, 194, 69, 154, 75, 169, 228, 85];
pub const IX_CLOSE_BUFFER: Discriminator = [46, 114, 179, 58, 57, 45, 194, 172];
pub const IX_ATTEST: Discriminator = [83, 148, 120, 119, 144, 139, 117, 160];
pub const IX_REVOKE: Discriminator = [170, 23, 31, 34, 133, 173, 93, 242];
pub const IX_RECORD_APPLIED: Discriminator = [188, 96, 138, 140, 130, 180, 191, 213];
pub const IX_WITNESS_SNAPSHOT: Discriminator = [75, 76, 178, 113, 155, 158, 165, 61];

pub const IX_OPEN_RELOCATION: Discriminator = [30, 74, 197, 155, 98, 145, 137, 157];
pub const IX_APPEND_SLOTS: Discriminator = [96, 139, 170, 40, 222, 158, 76, 10];
pub const IX_CHECK_RELOCATION_PART: Discriminator = [79, 206, 184, 1, 79, 154, 254, 232];
pub const IX_FINISH_RELOCATION: Discriminator = [159, 203, 70, 76, 198, 242, 214, 114];
pub const IX_CLOSE_RELOCATION: Discriminator = [190, 21, 132, 204, 38, 106, 211, 123];

pub const EVENT_ATTESTATION_RECORDED: Discriminator = [207, 97, 52, 58, 217, 238, 97, 21];
pub const EVENT_POLICY_INITIALIZED: Discriminator = [102, 184, 59, 178, 235, 69, 251, 181];
pub const EVENT_POLICY_UPDATED: Discriminator = [225, 112, 112, 67, 95, 236, 245, 161];
pub const EVENT_ATTESTATION_REVOKED: Discriminator = [47, 106, 65, 238, 200, 127, 163, 50];
pub const EVENT_APPLY_RECORDED: Discriminator = [208, 74, 242, 240, 100, 236, 128, 235];
pub const EVENT_SNAPSHOT_WITNESSED: Discriminator = [252, 16, 171, 131, 190, 51, 140, 12];

pub const POLICY_SEED: &[u8] = b"policy";
pub const TARGET_SEED: &[u8] = b"target";
pub const ATTESTATION_SEED: &[u8] = b"attestation";
pub const PLAN_SEED: &[u8] = b"plan";
pub const RECEIPT_SEED: &[u8] = b"receipt";
pub const SNAPSHOT_SEED: &[u8] = b"snapshot";

/// Most host signers a policy names besides its authority.
pub const MAX_SIGNERS: usize = 4;
/// Most snapshot witnesses a policy names.
pub const MAX_WITNESSES: usize = 4;

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

/// What the authority sets on a policy: the rules, the host signers allowed to attest and record
/// receipts, the snapshot witnesses whose word fixes a snapshot root (k of n, no older than
/// `max_snapshot_age` slots), and the hashes of what produced plans under it (MiniZinc models,
/// verifier build).
/// Borsh: `PolicyConfig { rules: PolicyRules, signers: Vec<Pubkey>, witnesses: Vec<Pubkey>,
/// witness_threshold: u8, max_snapshot_age: u64, model_hash: [u8;32], verifier_hash: [u8;32],
/// symbol_rules: Vec<SymbolRule> }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    pub rules: PolicyRules,
    pub signer_count: u8,
    pub signers: [[u8; 32]; MAX_SIGNERS],
    pub witness_count: u8,
    pub witnesses: [[u8; 32]; MAX_WITNESSES],
    /// How many distinct witnesses must have recorded a plan's snapshot root.
    pub witness_threshold: u8,
    /// How old (in slots, at attest) a witnessed snapshot may be.
    pub max_snapshot_age: u64,
    pub model_hash: Hash,
    pub verifier_hash: Hash,
    /// Address ranges relative to symbols, and the typed fields in them (`wire::SymbolRule`).
    pub symbol_rules: SymbolRules,
}

impl PolicyConfig {
    pub fn parse(r: &mut Reader<'_>) -> Result<PolicyConfig, VerifyError> {
        let rules = PolicyRules::parse(r)?;
        let count = r.u32()?;
        if count as usize > MAX_SIGNERS {
            return Err(VerifyError::TooManySigners);
        }
        let mut signers = [[0u8; 32]; MAX_SIGNERS];
        for s in signers.iter_mut().take(count as usize) {
            *s = *r.array()?;
        }
        let witness_count = r.u32()?;
        if witness_count as usize > MAX_WITNESSES {
            return Err(VerifyError::InvalidWitnessSet);
        }
        let mut witnesses = [[0u8; 32]; MAX_WITNESSES];
        for w in witnesses.iter_mut().take(witness_count as usize) {
            *w = *r.array()?;
        }
        Ok(PolicyConfig {
            rules,
            signer_count: count as u8,
            signers,
            witness_count: witness_count as u8,
            witnesses,
            witness_threshold: r.u8()?,
            max_snapshot_age: r.u64()?,
            model_hash: *r.array()?,
            verifier_hash: *r.array()?,
            symbol_rules: SymbolRules::parse_vec(r)?,
        })
    }

    /// Borsh encoding (the instruction argument).
    #[cfg(feature = "std")]
    pub fn encode(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec::Vec::new();
        out.extend_from_slice(&self.rules.encode());
        out.extend_from_slice(&(self.signer_count as u32).to_le_bytes());
        for s in &self.signers[..self.signer_count as usize] {
            out.extend_from_slice(s);
        }
        out.extend_from_slice(&(self.witness_count as u32).to_le_bytes());
        for w in &self.witnesses[..self.witness_count as usize] {
            out.extend_from_slice(w);
        }
        out.push(self.witness_threshold);
        out.extend_from_slice(&self.max_snapshot_age.to_le_bytes());
        out.extend_from_slice(&self.model_hash);
        out.extend_from_slice(&self.verifier_hash);
        out.extend(self.symbol_rules.encoded_vec());
        out
    }

    pub fn allowed_signers(&self) -> &[[u8; 32]] {
        &self.signers[..(self.signer_count as usize).min(MAX_SIGNERS)]
    }

    pub fn snapshot_witnesses(&self) -> &[[u8; 32]] {
        &self.witnesses[..(self.witness_count as usize).min(MAX_WITNESSES)]
    }

    /// A policy that pins a model hash (any non-zero `model_hash`) takes only plans that name
    /// it: a plan solved with other MiniZinc models is refused. A zero hash pins nothing.
    pub fn check_model_hash(&self, plan_model_hash: &Hash) -> Result<(), VerifyError> {
        if self.model_hash == [0; 32] || &self.model_hash == plan_model_hash {
            Ok(())
        } else {
            Err(VerifyError::ModelHashMismatch)
        }
    }

    /// The witness set of a policy of `authority`: 1 to [`MAX_WITNESSES`] distinct keys, none
    /// the authority or a host signer (a planner must not vouch for its own snapshot), a
    /// threshold from 1 to their number, and a maximum age of at least one slot.
    pub fn validate_witnesses(&self, authority: &[u8; 32]) -> Result<(), VerifyError> {
        let witnesses = self.snapshot_witnesses();
        let ok = !witnesses.is_empty()
            && self.witness_count as usize <= MAX_WITNESSES
            && self.witness_threshold >= 1
            && self.witness_threshold <= self.witness_count
            && self.max_snapshot_age >= 1
            && witnesses
                .iter()
                .enumerate()
                .all(|(i, w)| w != authority && !self.allowed_signers().contains(w) && !witnesses[..i].contains(w));
        if ok {
            Ok(())
        } else {
            Err(VerifyError::InvalidWitnessSet)
        }
    }

    /// The hash of everything this configuration decides (rules, signers, hashes, symbol
    /// rules), without unused slots. The policy account keeps it, so `attest` records the hash
    /// of the rules that judged a plan without hashing them again.
    pub fn hash<H: crate::Sha256>(&self) -> Hash {
        let signers = self.allowed_signers();
        let signer_bytes = signers.as_flattened();
        H::hashv(&[
            crate::hash::POLICY_TAG,
            &self.rules.encode(),
            &[signers.len() as u8],
            signer_bytes,
            &[self.snapshot_witnesses().len() as u8],
            self.snapshot_witnesses().as_flattened(),
            &[self.witness_threshold],
            &self.max_snapshot_age.to_le_bytes(),
            &self.model_hash,
            &self.verifier_hash,
            &[self.symbol_rules.len() as u8],
            self.symbol_rules.encoded_used(),
        ])
    }
}

/// A policy. PDA seeds: `["policy", authority]`.
///
/// The account outlives `close_policy`: closing marks it closed, so `initialize_policy` at the
/// same address reopens it with the next revision, never revision 0 again, and attestations
/// made before the close stay blocked (`Attestation::may_apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub authority: [u8; 32],
    pub config: PolicyConfig,
    /// Bumped by every update and every reopening, so a record can name the policy version it
    /// was judged under.
    pub revision: u32,
    pub bump: u8,
    /// The revision at which the policy was last (re)opened: attestations of older revisions
    /// were made before a close and may not be applied.
    pub opened_revision: u32,
    pub closed: bool,
    /// `config.hash()`, kept up to date by every write of the config.
    pub config_hash: Hash,
}

impl Policy {
    pub const DISCRIMINATOR: Discriminator = [222, 135, 7, 163, 235, 177, 33, 68];
    pub const LEN: usize = 8
        + 32
        + POLICY_RULES_LEN
        + 1
        + 32 * MAX_SIGNERS
        + 1
        + 32 * MAX_WITNESSES
        + 1
        + 8
        + 32
        + 32
        + 4
        + 1
        + 4
        + 1
        + 32
        + 1
        + SYMBOL_RULE_LEN * MAX_SYMBOL_RULES;

    pub fn decode(data: &[u8]) -> Result<Policy, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        let authority = *r.array()?;
        let rules = PolicyRules::parse(&mut r)?;
        let signer_count = r.u8()?;
        if signer_count as usize > MAX_SIGNERS {
            return Err(VerifyError::TooManySigners);
        }
        let mut signers = [[0u8; 32]; MAX_SIGNERS];
        for s in signers.iter_mut() {
            *s = *r.array()?;
        }
        let witness_count = r.u8()?;
        if witness_count as usize > MAX_WITNESSES {
            return Err(VerifyError::InvalidWitnessSet);
        }
        let mut witnesses = [[0u8; 32]; MAX_WITNESSES];
        for w in witnesses.iter_mut() {
            *w = *r.array()?;
        }
        let witness_threshold = r.u8()?;
        let max_snapshot_age = r.u64()?;
        let model_hash = *r.array()?;
        let verifier_hash = *r.array()?;
        let revision = r.u32()?;
        let bump = r.u8()?;
        let opened_revision = r.u32()?;
        let closed = r.bool()?;
        let config_hash = *r.array()?;
        Ok(Policy {
            authority,
            config: PolicyConfig {
                rules,
                signer_count,
                signers,
                witness_count,
                witnesses,
                witness_threshold,
                max_snapshot_age,
                model_hash,
                verifier_hash,
                symbol_rules: SymbolRules::parse_fixed(&mut r)?,
            },
            revision,
            bump,
            opened_revision,
            closed,
            config_hash,
        })
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.authority);
        w.put(&self.config.rules.encode());
        w.put(&[self.config.signer_count]);
        for s in &self.config.signers {
            w.put(s);
        }
        w.put(&[self.config.witness_count]);
        for x in &self.config.witnesses {
            w.put(x);
        }
        w.put(&[self.config.witness_threshold]);
        w.put(&self.config.max_snapshot_age.to_le_bytes());
        w.put(&self.config.model_hash);
        w.put(&self.config.verifier_hash);
        w.put(&self.revision.to_le_bytes());
        w.put(&[self.bump]);
        w.put(&self.opened_revision.to_le_bytes());
        w.put(&[self.closed as u8]);
        w.put(&self.config_hash);
        let (count, slots) = self.config.symbol_rules.encoded_fixed();
        w.put(&[count]);
        w.put(slots);
    }

    /// The authority and the listed host signers may attest and record receipts.
    pub fn may_sign(&self, key: &[u8; 32]) -> bool {
        key == &self.authority || self.config.allowed_signers().contains(key)
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
    /// The policy revision that judged the plan and the hash of its configuration.
    pub policy_revision: u32,
    pub policy_hash: Hash,
    /// The witnesses whose records of `snapshot_root` counted (in the order cited), and the
    /// slot each record had then; unused slots zero. Records are at
    /// `["snapshot", witness, target_id, snapshot_root]`.
    pub witness_count: u8,
    pub witnesses: [[u8; 32]; MAX_WITNESSES],
    pub witness_slots: [u64; MAX_WITNESSES],
    /// Set by `revoke`; a revoked plan must not be applied.
    pub revoked: bool,
    pub bump: u8,
}

impl Attestation {
    pub const DISCRIMINATOR: Discriminator = [152, 125, 183, 86, 36, 146, 121, 73];
    /// The Borsh body without the trailing bump; the `AttestationRecorded` event carries it.
    pub const BODY_LEN: usize = 32 * 8 + 8 + 8 + 4 + 4 + 4 + 32 + 1 + 32 * MAX_WITNESSES + 8 * MAX_WITNESSES;
    pub const LEN: usize = 8 + Self::BODY_LEN + 1 + 1;
    /// Offset of the `revoked` flag in the account data.
    pub const REVOKED_OFFSET: usize = 8 + Self::BODY_LEN;

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
        let witness_count = |r: &mut Reader<'_>| match r.u8()? {
            n if n as usize <= MAX_WITNESSES => Ok(n),
            _ => Err(VerifyError::InvalidWitnessSet),
        };
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
            policy_revision: r.u32()?,
            policy_hash: *r.array()?,
            witness_count: witness_count(r)?,
            witnesses: [*r.array()?, *r.array()?, *r.array()?, *r.array()?],
            witness_slots: [r.u64()?, r.u64()?, r.u64()?, r.u64()?],
            revoked: if with_bump { r.bool()? } else { false },
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
        w.put(&self.policy_revision.to_le_bytes());
        w.put(&self.policy_hash);
        w.put(&[self.witness_count]);
        w.put(self.witnesses.as_flattened());
        w.put(&crate::hash::slots_le(&self.witness_slots));
    }

    /// The witnesses that counted, each with its record's slot at attest.
    pub fn cited_witnesses(&self) -> impl Iterator<Item = (&[u8; 32], u64)> {
        let n = (self.witness_count as usize).min(MAX_WITNESSES);
        self.witnesses[..n].iter().zip(self.witness_slots[..n].iter().copied())
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        self.put_body(&mut w);
        w.put(&[self.revoked as u8, self.bump]);
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
            policy_revision: self.policy_revision,
            policy_hash: &self.policy_hash,
            witness_count: self.witness_count,
            witnesses: &self.witnesses,
            witness_slots: &self.witness_slots,
        })
    }

    /// Whether this attestation may still be applied (and take a receipt) under `policy`, the
    /// current state of the policy it names: not revoked, the policy open, and made since the
    /// policy was last (re)opened. The program's `record_applied` and the host's gate both ask.
    pub fn may_apply(&self, policy: &Policy) -> Result<(), VerifyError> {
        if self.revoked {
            return Err(VerifyError::AttestationRevoked);
        }
        if policy.closed {
            return Err(VerifyError::PolicyClosed);
        }
        if self.policy_revision < policy.opened_revision {
            return Err(VerifyError::AttestationBlocked);
        }
        Ok(())
    }
}

/// Marks a plan as attested for a target, so the same plan cannot be attested twice, and finds
/// its attestation in O(1). PDA seeds: `["plan", target_chain, plan_hash]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanMarker {
    pub seq: u64,
    pub bump: u8,
}

impl PlanMarker {
    pub const DISCRIMINATOR: Discriminator = [155, 136, 246, 159, 165, 33, 21, 170];
    pub const LEN: usize = 8 + 8 + 1;

    pub fn decode(data: &[u8]) -> Result<PlanMarker, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        Ok(PlanMarker {
            seq: r.u64()?,
            bump: r.u8()?,
        })
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.seq.to_le_bytes());
        w.put(&[self.bump]);
    }
}

/// An upload area for a submission larger than a transaction: an account the uploader
/// allocates (owner: the attestor) and `open_buffer` stamps. Layout: header, then `data: bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferHeader {
    pub authority: [u8; 32],
    pub plan_hash: Hash,
    /// Layout version, [`BufferHeader::VERSION`]; others are refused.
    pub version: u8,
    pub len: u32,
}

impl BufferHeader {
    pub const DISCRIMINATOR: Discriminator = [115, 5, 212, 192, 85, 30, 46, 41];
    pub const LEN: usize = 8 + 32 + 32 + 1 + 4;
    pub const VERSION: u8 = 1;

    /// Decodes the header and returns the data that follows it.
    pub fn decode(data: &[u8]) -> Result<(BufferHeader, &[u8]), VerifyError> {
        if data.len() < Self::LEN || data[..8] != Self::DISCRIMINATOR {
            return Err(VerifyError::AccountDiscriminatorMismatch);
        }
        let mut r = Reader::new(&data[8..Self::LEN]);
        let header = BufferHeader {
            authority: *r.array()?,
            plan_hash: *r.array()?,
            version: r.u8()?,
            len: r.u32()?,
        };
        if header.version != Self::VERSION {
            return Err(VerifyError::UnsupportedVersion);
        }
        let body = &data[Self::LEN..];
        if body.len() != header.len as usize {
            return Err(VerifyError::AccountDiscriminatorMismatch);
        }
        Ok((header, body))
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.authority);
        w.put(&self.plan_hash);
        w.put(&[self.version]);
        w.put(&self.len.to_le_bytes());
    }
}

/// Most stores one streamed relocation spreads its records over: six of 10 MiB, a buffer and
/// the program stay inside the 64 MiB of accounts one transaction may load.
pub const MAX_STORES: usize = 6;

/// A relocation checked in parts (`relocation_stream`): an account its authority allocates
/// (owner: the attestor, `Relocation::LEN` bytes) and `open_relocation` stamps, with the keys of
/// the stores that hold its records. Closed by `finish_relocation` or `close_relocation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// The host signer that opened it; only it adds slots and parts and finishes it.
    pub authority: [u8; 32],
    pub policy: [u8; 32],
    /// The policy's revision at the opening; every part and the finish require it unchanged.
    pub policy_revision: u32,
    /// The slot of the opening: the finish judges the snapshot's witnesses as of this slot, so
    /// a relocation of many parts is held to the snapshot's age when it began.
    pub opened_slot: u64,
    /// Records per store.
    pub per_store: u32,
    pub store_count: u8,
    pub stores: [[u8; 32]; MAX_STORES],
    pub state: crate::relocation_stream::StreamState,
}

impl Relocation {
    pub const DISCRIMINATOR: Discriminator = [36, 56, 109, 253, 38, 74, 233, 205];
    pub const LEN: usize = 8 + 32 + 32 + 4 + 8 + 4 + 1 + 32 * MAX_STORES + crate::relocation_stream::StreamState::LEN;

    pub fn decode(data: &[u8]) -> Result<Relocation, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        let authority = *r.array()?;
        let policy = *r.array()?;
        let policy_revision = r.u32()?;
        let opened_slot = r.u64()?;
        let per_store = r.u32()?;
        let store_count = r.u8()?;
        if store_count as usize > MAX_STORES {
            return Err(VerifyError::RelocationStoreMismatch);
        }
        let mut stores = [[0u8; 32]; MAX_STORES];
        for s in stores.iter_mut() {
            *s = *r.array()?;
        }
        let state = crate::relocation_stream::StreamState::decode(r.take(crate::relocation_stream::StreamState::LEN)?)?;
        r.finish()?;
        Ok(Relocation {
            authority,
            policy,
            policy_revision,
            opened_slot,
            per_store,
            store_count,
            stores,
            state,
        })
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.authority);
        w.put(&self.policy);
        w.put(&self.policy_revision.to_le_bytes());
        w.put(&self.opened_slot.to_le_bytes());
        w.put(&self.per_store.to_le_bytes());
        w.put(&[self.store_count]);
        for s in &self.stores {
            w.put(s);
        }
        let mut state = [0u8; crate::relocation_stream::StreamState::LEN];
        self.state.encode(&mut state);
        w.put(&state);
    }
}

/// The head of a store of a streamed relocation's records: an account the relocation's
/// authority allocates (owner: the attestor, `RelocationStore::LEN + per_store * RECORD_LEN`
/// bytes) and `open_relocation` stamps. The records follow the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelocationStore {
    pub relocation: [u8; 32],
    pub authority: [u8; 32],
}

impl RelocationStore {
    pub const DISCRIMINATOR: Discriminator = [121, 54, 140, 193, 210, 70, 219, 245];
    pub const LEN: usize = 8 + 32 + 32;
    /// The largest account data Solana allows (`MAX_PERMITTED_DATA_LENGTH`), header included.
    pub const MAX_ACCOUNT_LEN: usize = 10 * 1024 * 1024;

    /// Decodes the header and returns the records' bytes after it.
    pub fn decode(data: &[u8]) -> Result<(RelocationStore, &[u8]), VerifyError> {
        if data.len() < Self::LEN || data[..8] != Self::DISCRIMINATOR {
            return Err(VerifyError::AccountDiscriminatorMismatch);
        }
        let mut r = Reader::new(&data[8..Self::LEN]);
        let store = RelocationStore {
            relocation: *r.array()?,
            authority: *r.array()?,
        };
        Ok((store, &data[Self::LEN..]))
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        w.put(&self.relocation);
        w.put(&self.authority);
    }
}

/// A snapshot witness's word: the process it calls `target_id` had snapshot root
/// `snapshot_root` at `slot` (the witness took that snapshot from the live process itself).
/// PDA seeds: `["snapshot", witness, target_id, snapshot_root]`; written only by
/// `witness_snapshot`, signed by `witness`. A policy counts it when it names `witness`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WitnessedSnapshot {
    pub witness: [u8; 32],
    pub target_id: Hash,
    pub snapshot_root: Hash,
    /// When the witness last recorded this root (recording it again refreshes the slot).
    pub slot: u64,
    pub bump: u8,
}

impl WitnessedSnapshot {
    pub const DISCRIMINATOR: Discriminator = [57, 134, 30, 138, 88, 39, 147, 156];
    pub const BODY_LEN: usize = 32 + 32 + 32 + 8;
    pub const LEN: usize = 8 + Self::BODY_LEN + 1;

    pub fn decode(data: &[u8]) -> Result<WitnessedSnapshot, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        Ok(WitnessedSnapshot {
            witness: *r.array()?,
            target_id: *r.array()?,
            snapshot_root: *r.array()?,
            slot: r.u64()?,
            bump: r.u8()?,
        })
    }

    fn put_body(&self, w: &mut Writer<'_>) {
        w.put(&self.witness);
        w.put(&self.target_id);
        w.put(&self.snapshot_root);
        w.put(&self.slot.to_le_bytes());
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        self.put_body(&mut w);
        w.put(&[self.bump]);
    }

    /// The `SnapshotWitnessed` event: discriminator + body.
    pub fn encode_event(&self, out: &mut [u8; 8 + Self::BODY_LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&EVENT_SNAPSHOT_WITNESSED);
        self.put_body(&mut w);
    }
}

/// Counts the witnessed snapshots cited for one plan under one policy: each must be by a
/// distinct witness the policy names, for the plan's target and snapshot root, and no older than
/// the policy's `max_snapshot_age` at slot `now`; `finish` wants at least the policy's threshold.
/// No allocation: a bit per witness slot.
#[derive(Clone, Copy, Debug, Default)]
pub struct WitnessTally {
    seen: u8,
    count: u8,
    /// The witnesses counted, in the order cited, and their records' slots (what the
    /// attestation records).
    pub witnesses: [[u8; 32]; MAX_WITNESSES],
    pub slots: [u64; MAX_WITNESSES],
}

impl WitnessTally {
    pub fn add(
        &mut self,
        config: &PolicyConfig,
        record: &WitnessedSnapshot,
        target_id: &Hash,
        snapshot_root: &Hash,
        now: u64,
    ) -> Result<(), VerifyError> {
        let index = config
            .snapshot_witnesses()
            .iter()
            .position(|w| w == &record.witness)
            .ok_or(VerifyError::WitnessNotInPolicy)?;
        if &record.target_id != target_id || &record.snapshot_root != snapshot_root {
            return Err(VerifyError::WitnessedRootMismatch);
        }
        if now.saturating_sub(record.slot) > config.max_snapshot_age {
            return Err(VerifyError::StaleSnapshot);
        }
        if self.seen & (1 << index) != 0 {
            return Err(VerifyError::DuplicateWitness);
        }
        self.seen |= 1 << index;
        // At most MAX_WITNESSES distinct policy witnesses can get here, so `count` indexes.
        let at = (self.count as usize).min(MAX_WITNESSES - 1);
        self.witnesses[at] = record.witness;
        self.slots[at] = record.slot;
        self.count += 1;
        Ok(())
    }

    /// How many witnesses were counted.
    pub fn count(&self) -> u8 {
        self.count
    }

    pub fn finish(&self, config: &PolicyConfig) -> Result<(), VerifyError> {
        if self.count >= config.witness_threshold && self.count > 0 {
            Ok(())
        } else {
            Err(VerifyError::NotEnoughWitnesses)
        }
    }
}

/// Outcomes a host reports after applying.
pub const OUTCOME_APPLIED: u8 = 0;
pub const OUTCOME_ROLLED_BACK: u8 = 1;
pub const OUTCOME_REFUSED: u8 = 2;

/// What the host reports after applying an attested plan. PDA seeds: `["receipt", attestation]`,
/// so there is at most one receipt per attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub attestation: [u8; 32],
    pub signer: [u8; 32],
    pub seq: u64,
    pub slot: u64,
    pub outcome: u8,
    /// SHA-256 of the bytes read back after the writes (in plan order).
    pub readback_hash: Hash,
    pub bump: u8,
}

impl Receipt {
    pub const DISCRIMINATOR: Discriminator = [39, 154, 73, 106, 80, 102, 145, 153];
    pub const BODY_LEN: usize = 32 + 32 + 8 + 8 + 1 + 32;
    pub const LEN: usize = 8 + Self::BODY_LEN + 1;

    pub fn decode(data: &[u8]) -> Result<Receipt, VerifyError> {
        let mut r = check_discriminator(data, &Self::DISCRIMINATOR, Self::LEN)?;
        Ok(Receipt {
            attestation: *r.array()?,
            signer: *r.array()?,
            seq: r.u64()?,
            slot: r.u64()?,
            outcome: r.u8()?,
            readback_hash: *r.array()?,
            bump: r.u8()?,
        })
    }

    fn put_body(&self, w: &mut Writer<'_>) {
        w.put(&self.attestation);
        w.put(&self.signer);
        w.put(&self.seq.to_le_bytes());
        w.put(&self.slot.to_le_bytes());
        w.put(&[self.outcome]);
        w.put(&self.readback_hash);
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&Self::DISCRIMINATOR);
        self.put_body(&mut w);
        w.put(&[self.bump]);
    }

    /// The `ApplyRecorded` event: discriminator + body.
    pub fn encode_event(&self, out: &mut [u8; 8 + Self::BODY_LEN]) {
        let mut w = Writer { buf: out, at: 0 };
        w.put(&EVENT_APPLY_RECORDED);
        self.put_body(&mut w);
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
        assert_eq!(EVENT_POLICY_UPDATED, disc("event:PolicyUpdated"));
        assert_eq!(EVENT_ATTESTATION_REVOKED, disc("event:AttestationRevoked"));
        assert_eq!(EVENT_APPLY_RECORDED, disc("event:ApplyRecorded"));
        assert_eq!(IX_UPDATE_POLICY, disc("global:update_policy"));
        assert_eq!(IX_CLOSE_POLICY, disc("global:close_policy"));
        assert_eq!(IX_OPEN_BUFFER, disc("global:open_buffer"));
        assert_eq!(IX_WRITE_BUFFER, disc("global:write_buffer"));
        assert_eq!(IX_CLOSE_BUFFER, disc("global:close_buffer"));
        assert_eq!(IX_REVOKE, disc("global:revoke"));
        assert_eq!(IX_RECORD_APPLIED, disc("global:record_applied"));
        assert_eq!(PlanMarker::DISCRIMINATOR, disc("account:PlanMarker"));
        assert_eq!(BufferHeader::DISCRIMINATOR, disc("account:Buffer"));
        assert_eq!(Receipt::DISCRIMINATOR, disc("account:Receipt"));
        assert_eq!(IX_WITNESS_SNAPSHOT, disc("global:witness_snapshot"));
        assert_eq!(WitnessedSnapshot::DISCRIMINATOR, disc("account:WitnessedSnapshot"));
        assert_eq!(EVENT_SNAPSHOT_WITNESSED, disc("event:SnapshotWitnessed"));
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
            policy_revision: 4,
            policy_hash: [10; 32],
            witness_count: 2,
            witnesses: [[11; 32], [12; 32], [0; 32], [0; 32]],
            witness_slots: [90, 95, 0, 0],
            revoked: true,
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
            config: PolicyConfig {
                rules: PolicyRules {
                    wx: true,
                    max_bytes: 64,
                    max_writes: 4,
                    max_moves: 0,
                },
                signer_count: 2,
                signers: [[1; 32], [2; 32], [0; 32], [0; 32]],
                witness_count: 1,
                witnesses: [[12; 32], [0; 32], [0; 32], [0; 32]],
                witness_threshold: 1,
                max_snapshot_age: 100,
                model_hash: [3; 32],
                verifier_hash: [4; 32],
                symbol_rules: SymbolRules::from_rules(&[crate::wire::SymbolRule {
                    symbol: [5; 32],
                    start: 8,
                    end: 16,
                    kind: crate::wire::field_kind::POINTER,
                    min: 0,
                    max: 0,
                }])
                .unwrap(),
            },
            revision: 7,
            bump: 255,
            opened_revision: 5,
            closed: true,
            config_hash: [11; 32],
        };
        assert!(p.may_sign(&[9; 32]) && p.may_sign(&[2; 32]) && !p.may_sign(&[0; 32]));
        let mut pbuf = [0u8; Policy::LEN];
        p.encode(&mut pbuf);
        assert_eq!(Policy::decode(&pbuf), Ok(p));
        assert_eq!(
            Policy::decode(&pbuf[..Policy::LEN - 1]),
            Err(VerifyError::AccountDiscriminatorMismatch)
        );
    }
}

#[cfg(test)]
mod policy_lifecycle_tests {
    use super::*;
    use crate::test_hash::Sha2;

    fn policy(revision: u32, opened_revision: u32, closed: bool) -> Policy {
        let config = PolicyConfig {
            rules: PolicyRules {
                wx: true,
                max_bytes: 64,
                max_writes: 8,
                max_moves: 0,
            },
            signer_count: 0,
            signers: [[0; 32]; MAX_SIGNERS],
            witness_count: 2,
            witnesses: [[7; 32], [8; 32], [0; 32], [0; 32]],
            witness_threshold: 2,
            max_snapshot_age: 10,
            model_hash: [0; 32],
            verifier_hash: [0; 32],
            symbol_rules: SymbolRules::default(),
        };
        Policy {
            authority: [1; 32],
            config,
            revision,
            bump: 255,
            opened_revision,
            closed,
            config_hash: config.hash::<Sha2>(),
        }
    }

    fn attestation(policy_revision: u32) -> Attestation {
        let mut buf = [0u8; Attestation::LEN];
        buf[..8].copy_from_slice(&Attestation::DISCRIMINATOR);
        Attestation {
            policy_revision,
            ..Attestation::decode(&buf).unwrap()
        }
    }

    /// The host's gate and the program's `record_applied` both ask `may_apply`: closing a
    /// policy blocks what it attested, and reopening it does not unblock them.
    #[test]
    fn closing_a_policy_blocks_its_attestations_for_good() {
        assert_eq!(attestation(2).may_apply(&policy(2, 0, false)), Ok(()));
        assert_eq!(
            attestation(2).may_apply(&policy(2, 0, true)),
            Err(VerifyError::PolicyClosed)
        );
        assert_eq!(
            attestation(2).may_apply(&policy(3, 3, false)),
            Err(VerifyError::AttestationBlocked)
        );
        assert_eq!(attestation(3).may_apply(&policy(3, 3, false)), Ok(()));
        let revoked = Attestation {
            revoked: true,
            ..attestation(3)
        };
        assert_eq!(
            revoked.may_apply(&policy(3, 3, false)),
            Err(VerifyError::AttestationRevoked)
        );
    }

    #[test]
    fn the_config_hash_sees_every_rule() {
        let base = policy(0, 0, false).config;
        let h = base.hash::<Sha2>();
        let looser = PolicyConfig {
            rules: PolicyRules {
                max_bytes: 65,
                ..base.rules
            },
            ..base
        };
        assert_ne!(looser.hash::<Sha2>(), h);
        let signer = PolicyConfig {
            signer_count: 1,
            ..base
        };
        assert_ne!(signer.hash::<Sha2>(), h);
        // Unused signer slots are not part of the configuration.
        let mut slots = base;
        slots.signers[3] = [9; 32];
        assert_eq!(slots.hash::<Sha2>(), h);
    }

    /// k of n distinct policy witnesses, each for this target and root, none too old.
    #[test]
    fn witness_tally_counts_distinct_fresh_policy_witnesses() {
        let config = policy(0, 0, false).config;
        let (target, root) = ([1u8; 32], [2u8; 32]);
        let record = |witness: u8, slot| WitnessedSnapshot {
            witness: [witness; 32],
            target_id: target,
            snapshot_root: root,
            slot,
            bump: 0,
        };
        let mut t = WitnessTally::default();
        assert_eq!(t.finish(&config), Err(VerifyError::NotEnoughWitnesses));
        t.add(&config, &record(7, 95), &target, &root, 100).unwrap();
        assert_eq!(t.finish(&config), Err(VerifyError::NotEnoughWitnesses), "1 of 2");
        assert_eq!(
            t.add(&config, &record(7, 95), &target, &root, 100),
            Err(VerifyError::DuplicateWitness)
        );
        assert_eq!(
            t.add(&config, &record(9, 95), &target, &root, 100),
            Err(VerifyError::WitnessNotInPolicy)
        );
        assert_eq!(
            t.add(&config, &record(8, 89), &target, &root, 100),
            Err(VerifyError::StaleSnapshot)
        );
        assert_eq!(
            t.add(&config, &record(8, 95), &target, &[3; 32], 100),
            Err(VerifyError::WitnessedRootMismatch)
        );
        t.add(&config, &record(8, 90), &target, &root, 100).unwrap();
        assert_eq!(t.finish(&config), Ok(()));
        // What the attestation records: who counted, in the order cited, and each record's slot.
        assert_eq!(t.count(), 2);
        assert_eq!(t.witnesses, [[7; 32], [8; 32], [0; 32], [0; 32]]);
        assert_eq!(t.slots, [95, 90, 0, 0]);
    }

    /// A policy with a non-zero model hash takes only plans that name it; a zero hash pins
    /// nothing.
    #[test]
    fn a_pinned_model_hash_must_be_the_plans() {
        let pinned = PolicyConfig {
            model_hash: [5; 32],
            ..policy(0, 0, false).config
        };
        assert_eq!(pinned.check_model_hash(&[5; 32]), Ok(()));
        assert_eq!(pinned.check_model_hash(&[6; 32]), Err(VerifyError::ModelHashMismatch));
        assert_eq!(pinned.check_model_hash(&[0; 32]), Err(VerifyError::ModelHashMismatch));
        let unpinned = policy(0, 0, false).config;
        assert_eq!(unpinned.check_model_hash(&[6; 32]), Ok(()));
    }

    /// The link hash commits to the witnesses that counted and their records' slots.
    #[test]
    fn the_link_hash_sees_the_witnesses() {
        let mut a = attestation(1);
        a.witness_count = 1;
        a.witnesses[0] = [7; 32];
        a.witness_slots[0] = 95;
        let h = a.computed_hash::<Sha2>();
        for other in [
            Attestation { witness_count: 2, ..a },
            Attestation {
                witnesses: [[8; 32], [0; 32], [0; 32], [0; 32]],
                ..a
            },
            Attestation {
                witness_slots: [96, 0, 0, 0],
                ..a
            },
        ] {
            assert_ne!(other.computed_hash::<Sha2>(), h);
        }
    }

    #[test]
    fn witness_sets_are_validated() {
        let ok = policy(0, 0, false).config;
        let authority = [1u8; 32];
        assert_eq!(ok.validate_witnesses(&authority), Ok(()));
        let bad = |c: PolicyConfig| assert_eq!(c.validate_witnesses(&authority), Err(VerifyError::InvalidWitnessSet));
        bad(PolicyConfig { witness_count: 0, ..ok });
        bad(PolicyConfig {
            witness_threshold: 0,
            ..ok
        });
        bad(PolicyConfig {
            witness_threshold: 3,
            ..ok
        });
        bad(PolicyConfig {
            max_snapshot_age: 0,
            ..ok
        });
        bad(PolicyConfig {
            witnesses: [[7; 32], [7; 32], [0; 32], [0; 32]],
            ..ok
        });
        bad(PolicyConfig {
            witnesses: [[7; 32], authority, [0; 32], [0; 32]],
            ..ok
        });
        bad(PolicyConfig {
            signer_count: 1,
            signers: [[8; 32], [0; 32], [0; 32], [0; 32]],
            ..ok
        });
    }

    #[test]
    fn buffer_headers_of_another_version_are_refused() {
        let header = BufferHeader {
            authority: [1; 32],
            plan_hash: [2; 32],
            version: BufferHeader::VERSION,
            len: 3,
        };
        let mut data = [0u8; BufferHeader::LEN + 3];
        header.encode((&mut data[..BufferHeader::LEN]).try_into().unwrap());
        assert!(BufferHeader::decode(&data).is_ok());
        let header = BufferHeader { version: 2, ..header };
        header.encode((&mut data[..BufferHeader::LEN]).try_into().unwrap());
        assert_eq!(BufferHeader::decode(&data), Err(VerifyError::UnsupportedVersion));
    }
}
