//! Hashing, abstracted so the program can use the `sol_sha256` syscall and the host `sha2`.
//!
//! Every hash memzinc records starts with a domain tag, so a page leaf can never be replayed
//! as a plan, a link or a Merkle node.

/// SHA-256 over the concatenation of `parts`.
pub trait Sha256 {
    fn hashv(parts: &[&[u8]]) -> [u8; 32];
}

pub type Hash = [u8; 32];

pub const PLAN_TAG: &[u8] = b"memzinc/plan/v1";
pub const REGION_TABLE_TAG: &[u8] = b"memzinc/regions/v1";
pub const LINK_TAG: &[u8] = b"memzinc/attestation/v3";
pub const POLICY_TAG: &[u8] = b"memzinc/policy/v1";
pub const PAGE_LEAF_TAG: &[u8] = b"memzinc/page/v1";
pub const UNREADABLE_LEAF_TAG: &[u8] = b"memzinc/unreadable/v1";
pub const NODE_TAG: &[u8] = b"memzinc/node/v1";
pub const TARGET_TAG: &[u8] = b"memzinc/target/v1";
pub const REGION_LEAF_TAG: &[u8] = b"memzinc/region/v1";
pub const SNAPSHOT_TAG: &[u8] = b"memzinc/snapshot/v2";
pub const SYMBOL_KEY_TAG: &[u8] = b"memzinc/symbol-key/v1";
pub const SYMBOL_LEAF_TAG: &[u8] = b"memzinc/symbol/v1";

/// Hash of a plan: its canonical encoding (`PlanCore`, see [`crate::wire`]). The evidence that
/// accompanies a plan is not hashed: it is checked against the roots the plan names.
pub fn plan_hash<H: Sha256>(plan_core: &[u8]) -> Hash {
    H::hashv(&[PLAN_TAG, plan_core])
}

/// The roots and sizes of a snapshot's three trees: pages, regions (every mapping) and symbols
/// (every symbol whose module and name are unique, at its runtime address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeRoots<'a> {
    pub pages_root: &'a Hash,
    pub regions_root: &'a Hash,
    pub symbols_root: &'a Hash,
    pub page_count: u64,
    pub region_count: u64,
    pub symbol_count: u64,
}

/// A snapshot's root commits to its page, region and symbol trees (and their sizes).
pub fn snapshot_root<H: Sha256>(t: &TreeRoots<'_>) -> Hash {
    H::hashv(&[
        SNAPSHOT_TAG,
        t.pages_root,
        t.regions_root,
        &t.page_count.to_le_bytes(),
        &t.region_count.to_le_bytes(),
        t.symbols_root,
        &t.symbol_count.to_le_bytes(),
    ])
}

/// What a policy names a symbol by: its module's file name (`libc.so.6`, the executable's
/// name) and the symbol's name, hashed to a fixed size. Addresses are not part of the key, so a
/// policy written once holds for every run of the target, whatever ASLR chose.
pub fn symbol_key<H: Sha256>(module: &[u8], name: &[u8]) -> Hash {
    H::hashv(&[SYMBOL_KEY_TAG, &(module.len() as u32).to_le_bytes(), module, name])
}

/// Hash of a Borsh-encoded region table (`Vec<Region>`, length prefix included).
pub fn region_table_hash<H: Sha256>(encoded_regions: &[u8]) -> Hash {
    H::hashv(&[REGION_TABLE_TAG, encoded_regions])
}

/// A target id is the hash of the operator's name for the target, so ids have a fixed size.
pub fn target_id<H: Sha256>(name: &[u8]) -> Hash {
    H::hashv(&[TARGET_TAG, name])
}

/// The fields one attestation commits to; `link_hash` chains them to the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFields<'a> {
    pub prev_hash: &'a Hash,
    pub seq: u64,
    pub policy: &'a [u8; 32],
    pub target_id: &'a Hash,
    pub signer: &'a [u8; 32],
    pub slot: u64,
    pub plan_hash: &'a Hash,
    pub snapshot_root: &'a Hash,
    pub region_table_hash: &'a Hash,
    /// The revision of the policy that judged the plan, and the hash of its configuration
    /// (`PolicyConfig::hash`): a loosen-attest-tighten sequence leaves the loose rules' hash.
    pub policy_revision: u32,
    pub policy_hash: &'a Hash,
    /// The witnesses whose records of `snapshot_root` counted, and each record's slot then
    /// (`accounts::WitnessTally`; unused slots zero).
    pub witness_count: u8,
    pub witnesses: &'a [[u8; 32]; crate::accounts::MAX_WITNESSES],
    pub witness_slots: &'a [u64; crate::accounts::MAX_WITNESSES],
}

/// The hash of one link of a target's attestation chain. The program stores it and the next
/// attestation of the same target must name it as `prev_hash`; `memzinc audit` recomputes it.
pub fn link_hash<H: Sha256>(f: &LinkFields<'_>) -> Hash {
    H::hashv(&[
        LINK_TAG,
        f.prev_hash,
        &f.seq.to_le_bytes(),
        f.policy,
        f.target_id,
        f.signer,
        &f.slot.to_le_bytes(),
        f.plan_hash,
        f.snapshot_root,
        f.region_table_hash,
        &f.policy_revision.to_le_bytes(),
        f.policy_hash,
        &[f.witness_count],
        f.witnesses.as_flattened(),
        &slots_le(f.witness_slots),
    ])
}

/// Witness slots as they are hashed and stored: little-endian, one after the other.
pub fn slots_le(slots: &[u64; crate::accounts::MAX_WITNESSES]) -> [u8; 8 * crate::accounts::MAX_WITNESSES] {
    let mut out = [0u8; 8 * crate::accounts::MAX_WITNESSES];
    for (chunk, slot) in out.as_chunks_mut::<8>().0.iter_mut().zip(slots) {
        *chunk = slot.to_le_bytes();
    }
    out
}
