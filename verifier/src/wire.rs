//! Zero-copy decoding of the Borsh-layout instruction arguments.
//!
//! Layouts (Borsh: little-endian integers, `Vec<T>`/`bytes` = u32 length then items):
//!
//! ```text
//! Region        { start: u64, end: u64, flags: u8 }            // [start, end), flags: R=1 W=2 X=4
//! Write         { address: u64, old: bytes, new: bytes }
//! Slot          { address: u64, len: u32, from: u32, to: u32 }        // a relocation's slot
//! PlanCore      { target_id: [u8;32], snapshot_root: [u8;32], model_hash: [u8;32],
//!                 regions: Vec<Region>, writes: Vec<Write>, slots: Vec<Slot> }
//! PolicyRules   { wx: bool, max_bytes: u32, max_writes: u32, max_moves: u32 }
//! SymbolRule    { symbol: [u8;32], start: u64, end: u64, kind: u8, min: u64, max: u64 }
//! ```
//!
//! Every `parse` walks its input once and rejects anything that does not decode
//! exactly (trailing bytes included); after that the iterators cannot fail.

use crate::error::VerifyError;

pub const REGION_READ: u8 = 1;
pub const REGION_WRITE: u8 = 2;
pub const REGION_EXEC: u8 = 4;
pub const REGION_FLAGS_MASK: u8 = REGION_READ | REGION_WRITE | REGION_EXEC;

pub const REGION_LEN: usize = 17;

/// A mapped range of the target, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub flags: u8,
}

impl Region {
    pub fn readable(&self) -> bool {
        self.flags & REGION_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & REGION_WRITE != 0
    }
    pub fn executable(&self) -> bool {
        self.flags & REGION_EXEC != 0
    }
    fn decode(b: &[u8; REGION_LEN]) -> Region {
        Region {
            start: u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8])),
            end: u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])),
            flags: b[16],
        }
    }
    pub fn encode(&self) -> [u8; REGION_LEN] {
        let mut out = [0u8; REGION_LEN];
        out[0..8].copy_from_slice(&self.start.to_le_bytes());
        out[8..16].copy_from_slice(&self.end.to_le_bytes());
        out[16] = self.flags;
        out
    }
}

pub const SLOT_LEN: usize = 20;

/// One slot of a relocation: the object-sized range `[address, address + len)`. The object in
/// slot number `from` moves into this slot, and this slot's object moves into slot number `to`
/// (numbers index the plan's slots, which ascend by address). A plan with slots is a
/// relocation: its writes are the slots' new bytes and pointers rewritten to the move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub address: u64,
    pub len: u32,
    pub from: u32,
    pub to: u32,
}

impl Slot {
    fn decode(b: &[u8; SLOT_LEN]) -> Slot {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
        Slot {
            address: u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8])),
            len: u32_at(8),
            from: u32_at(12),
            to: u32_at(16),
        }
    }
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[0..8].copy_from_slice(&self.address.to_le_bytes());
        out[8..12].copy_from_slice(&self.len.to_le_bytes());
        out[12..16].copy_from_slice(&self.from.to_le_bytes());
        out[16..20].copy_from_slice(&self.to.to_le_bytes());
        out
    }
    /// One past the slot's last byte (`address + len`, checked when the table was checked).
    pub fn end(&self) -> u64 {
        self.address.wrapping_add(self.len as u64)
    }
}

/// One byte write of a plan: at `address`, replace `old` by `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteView<'a> {
    pub address: u64,
    pub old: &'a [u8],
    pub new: &'a [u8],
}

/// A cursor over untrusted bytes; every read is bounds-checked.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], VerifyError> {
        if self.buf.len() < n {
            return Err(VerifyError::MalformedInstruction);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], VerifyError> {
        self.take(N)?.try_into().map_err(|_| VerifyError::MalformedInstruction)
    }
    pub fn u8(&mut self) -> Result<u8, VerifyError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, VerifyError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(VerifyError::MalformedInstruction),
        }
    }
    pub fn u32(&mut self) -> Result<u32, VerifyError> {
        Ok(u32::from_le_bytes(*self.array::<4>()?))
    }
    pub fn u64(&mut self) -> Result<u64, VerifyError> {
        Ok(u64::from_le_bytes(*self.array::<8>()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], VerifyError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    pub fn finish(self) -> Result<(), VerifyError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::MalformedInstruction)
        }
    }
}

/// A plan's canonical encoding, `PlanCore`, validated for structure and borrowed from the input.
/// This is what the plan hash covers.
#[derive(Clone, Copy, Debug)]
pub struct PlanView<'a> {
    pub target_id: &'a [u8; 32],
    pub snapshot_root: &'a [u8; 32],
    /// The hash of the MiniZinc models the plan was solved with (what a policy's `model_hash`
    /// pins; zero when no model decided it).
    pub model_hash: &'a [u8; 32],
    /// The Borsh encoding of `regions`, length prefix included (what `region_table_hash` hashes).
    pub regions_encoded: &'a [u8],
    region_bytes: &'a [u8],
    writes_bytes: &'a [u8],
    slot_bytes: &'a [u8],
    pub region_count: u32,
    pub write_count: u32,
    /// Slots of a relocation (zero for any other plan).
    pub slot_count: u32,
    /// The whole `PlanCore` encoding (what `plan_hash` hashes).
    pub encoded: &'a [u8],
}

impl<'a> PlanView<'a> {
    /// Parses a `PlanCore` that must fill `data` exactly.
    pub fn parse(data: &'a [u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(data);
        let plan = Self::parse_from(&mut r)?;
        r.finish()?;
        Ok(plan)
    }

    /// Parses a `PlanCore` at the reader's position and advances past it.
    pub fn parse_from(r: &mut Reader<'a>) -> Result<Self, VerifyError> {
        let start = *r;
        let target_id = r.array::<32>()?;
        let snapshot_root = r.array::<32>()?;
        let model_hash = r.array::<32>()?;
        let before_regions = *r;
        let region_count = r.u32()?;
        let region_len = (region_count as usize)
            .checked_mul(REGION_LEN)
            .ok_or(VerifyError::MalformedInstruction)?;
        let region_bytes = r.take(region_len)?;
        let regions_encoded = &before_regions.buf[..4 + region_len];
        let write_count = r.u32()?;
        let writes_start = *r;
        for _ in 0..write_count {
            r.u64()?;
            r.bytes()?;
            r.bytes()?;
        }
        let writes_bytes = &writes_start.buf[..writes_start.remaining() - r.remaining()];
        let slot_count = r.u32()?;
        let slot_len = (slot_count as usize)
            .checked_mul(SLOT_LEN)
            .ok_or(VerifyError::MalformedInstruction)?;
        let slot_bytes = r.take(slot_len)?;
        Ok(PlanView {
            target_id,
            snapshot_root,
            model_hash,
            regions_encoded,
            region_bytes,
            writes_bytes,
            slot_bytes,
            region_count,
            write_count,
            slot_count,
            encoded: &start.buf[..start.remaining() - r.remaining()],
        })
    }

    pub fn regions(&self) -> impl Iterator<Item = Region> + 'a {
        self.region_bytes.as_chunks::<REGION_LEN>().0.iter().map(Region::decode)
    }

    /// The relocation's slots, in the plan's order.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + 'a {
        self.slot_bytes.as_chunks::<SLOT_LEN>().0.iter().map(Slot::decode)
    }

    /// Slot number `i` (None past the end).
    pub fn slot(&self, i: u32) -> Option<Slot> {
        self.slot_bytes
            .as_chunks::<SLOT_LEN>()
            .0
            .get(i as usize)
            .map(Slot::decode)
    }

    pub fn writes(&self) -> WriteIter<'a> {
        WriteIter {
            reader: Reader::new(self.writes_bytes),
        }
    }
}

/// Iterates writes already validated by [`PlanView::parse`].
pub struct WriteIter<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for WriteIter<'a> {
    type Item = WriteView<'a>;
    fn next(&mut self) -> Option<WriteView<'a>> {
        if self.reader.remaining() == 0 {
            return None;
        }
        let address = self.reader.u64().ok()?;
        let old = self.reader.bytes().ok()?;
        let new = self.reader.bytes().ok()?;
        Some(WriteView { address, old, new })
    }
}

pub const PAGE_LEN: usize = 4096;

/// A proof that `Region` number `index` of the snapshot's region tree is the plan's region.
#[derive(Clone, Copy, Debug)]
pub struct RegionProofView<'a> {
    pub index: u64,
    siblings: &'a [u8],
}

/// A page of the snapshot with its Merkle proof.
#[derive(Clone, Copy, Debug)]
pub struct PageProofView<'a> {
    pub address: u64,
    pub index: u64,
    pub contents: &'a [u8; PAGE_LEN],
    siblings: &'a [u8],
}

/// A symbol of the snapshot (by key) at its runtime address, with its Merkle proof.
#[derive(Clone, Copy, Debug)]
pub struct SymbolProofView<'a> {
    pub key: &'a [u8; 32],
    pub address: u64,
    pub size: u64,
    pub index: u64,
    siblings: &'a [u8],
}

impl SymbolProofView<'_> {
    pub fn siblings(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        siblings(self.siblings)
    }
}

fn siblings(bytes: &[u8]) -> impl Iterator<Item = [u8; 32]> + '_ {
    bytes.as_chunks::<32>().0.iter().copied()
}

impl RegionProofView<'_> {
    pub fn siblings(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        siblings(self.siblings)
    }
}

impl PageProofView<'_> {
    pub fn siblings(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        siblings(self.siblings)
    }
}

fn sibling_list<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], VerifyError> {
    let count = r.u32()? as usize;
    r.take(count.checked_mul(32).ok_or(VerifyError::MalformedInstruction)?)
}

/// What proves a plan's old bytes and regions: sub-roots of the snapshot and Merkle proofs.
///
/// ```text
/// Evidence { pages_root: [u8;32], regions_root: [u8;32], page_count: u64, region_count: u64,
///            region_proofs: Vec<{ index: u64, siblings: Vec<[u8;32]> }>,   // one per plan region
///            pages: Vec<{ address: u64, index: u64, contents: [u8;4096], siblings: Vec<[u8;32]> }>,
///            symbols_root: [u8;32], symbol_count: u64,
///            symbols: Vec<{ key: [u8;32], address: u64, size: u64, index: u64, siblings: Vec<[u8;32]> }> }
/// ```
///
/// Symbol proofs are in strictly ascending key order; a plan proves the symbols its policy's
/// rules name (and may prove none when the policy has no symbol rules).
#[derive(Clone, Copy, Debug)]
pub struct EvidenceView<'a> {
    pub pages_root: &'a [u8; 32],
    pub regions_root: &'a [u8; 32],
    pub page_count: u64,
    pub region_count: u64,
    region_proofs: &'a [u8],
    pages: &'a [u8],
    pub region_proof_count: u32,
    pub page_proof_count: u32,
    pub symbols_root: &'a [u8; 32],
    pub symbol_count: u64,
    symbols: &'a [u8],
    pub symbol_proof_count: u32,
}

impl<'a> EvidenceView<'a> {
    pub fn parse_from(r: &mut Reader<'a>) -> Result<Self, VerifyError> {
        let pages_root = r.array::<32>()?;
        let regions_root = r.array::<32>()?;
        let page_count = r.u64()?;
        let region_count = r.u64()?;
        let region_proof_count = r.u32()?;
        let start = *r;
        for _ in 0..region_proof_count {
            r.u64()?;
            sibling_list(r)?;
        }
        let region_proofs = &start.buf[..start.remaining() - r.remaining()];
        let page_proof_count = r.u32()?;
        let start = *r;
        for _ in 0..page_proof_count {
            r.u64()?;
            r.u64()?;
            r.take(PAGE_LEN)?;
            sibling_list(r)?;
        }
        let pages = &start.buf[..start.remaining() - r.remaining()];
        let symbols_root = r.array::<32>()?;
        let symbol_count = r.u64()?;
        let symbol_proof_count = r.u32()?;
        let start = *r;
        for _ in 0..symbol_proof_count {
            r.take(32 + 8 + 8 + 8)?;
            sibling_list(r)?;
        }
        let symbols = &start.buf[..start.remaining() - r.remaining()];
        Ok(EvidenceView {
            pages_root,
            regions_root,
            page_count,
            region_count,
            region_proofs,
            pages,
            region_proof_count,
            page_proof_count,
            symbols_root,
            symbol_count,
            symbols,
            symbol_proof_count,
        })
    }

    /// The roots and sizes this evidence claims for the snapshot's trees.
    pub fn tree_roots(&self) -> crate::hash::TreeRoots<'a> {
        crate::hash::TreeRoots {
            pages_root: self.pages_root,
            regions_root: self.regions_root,
            symbols_root: self.symbols_root,
            page_count: self.page_count,
            region_count: self.region_count,
            symbol_count: self.symbol_count,
        }
    }

    pub fn symbols(&self) -> impl Iterator<Item = SymbolProofView<'a>> + 'a {
        let mut r = Reader::new(self.symbols);
        core::iter::from_fn(move || {
            if r.remaining() == 0 {
                return None;
            }
            Some(SymbolProofView {
                key: r.array::<32>().ok()?,
                address: r.u64().ok()?,
                size: r.u64().ok()?,
                index: r.u64().ok()?,
                siblings: sibling_list(&mut r).ok()?,
            })
        })
    }

    pub fn region_proofs(&self) -> impl Iterator<Item = RegionProofView<'a>> + 'a {
        let mut r = Reader::new(self.region_proofs);
        core::iter::from_fn(move || {
            if r.remaining() == 0 {
                return None;
            }
            Some(RegionProofView {
                index: r.u64().ok()?,
                siblings: sibling_list(&mut r).ok()?,
            })
        })
    }

    pub fn pages(&self) -> PageIter<'a> {
        PageIter {
            r: Reader::new(self.pages),
        }
    }
}

/// The page proofs of an evidence, in order; a copy goes on from where it was taken.
#[derive(Clone, Copy)]
pub struct PageIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for PageIter<'a> {
    type Item = PageProofView<'a>;
    fn next(&mut self) -> Option<PageProofView<'a>> {
        if self.r.remaining() == 0 {
            return None;
        }
        Some(PageProofView {
            address: self.r.u64().ok()?,
            index: self.r.u64().ok()?,
            contents: self.r.array::<PAGE_LEN>().ok()?,
            siblings: sibling_list(&mut self.r).ok()?,
        })
    }
}

/// What the host uploads into a buffer and `attest` verifies: `PlanCore || Evidence`.
#[derive(Clone, Copy, Debug)]
pub struct Submission<'a> {
    pub plan: PlanView<'a>,
    pub evidence: EvidenceView<'a>,
}

impl<'a> Submission<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(data);
        let plan = PlanView::parse_from(&mut r)?;
        let evidence = EvidenceView::parse_from(&mut r)?;
        r.finish()?;
        Ok(Submission { plan, evidence })
    }
}

/// Rules a policy imposes on every plan attested under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRules {
    /// Refuse writes into executable regions (W^X).
    pub wx: bool,
    /// Most bytes one plan may write in total.
    pub max_bytes: u32,
    /// Most writes one plan may contain.
    pub max_writes: u32,
    /// Most objects one relocation may move; 0 refuses relocations.
    pub max_moves: u32,
}

pub const POLICY_RULES_LEN: usize = 13;

impl PolicyRules {
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, VerifyError> {
        Ok(PolicyRules {
            wx: r.bool()?,
            max_bytes: r.u32()?,
            max_writes: r.u32()?,
            max_moves: r.u32()?,
        })
    }
    pub fn encode(&self) -> [u8; POLICY_RULES_LEN] {
        let mut out = [0u8; POLICY_RULES_LEN];
        out[0] = self.wx as u8;
        out[1..5].copy_from_slice(&self.max_bytes.to_le_bytes());
        out[5..9].copy_from_slice(&self.max_writes.to_le_bytes());
        out[9..13].copy_from_slice(&self.max_moves.to_le_bytes());
        out
    }
    pub fn validate(&self) -> Result<(), VerifyError> {
        if self.max_bytes == 0 || self.max_writes == 0 {
            return Err(VerifyError::InvalidPolicyRules);
        }
        Ok(())
    }
}

/// What a symbol rule says about the bytes in its range.
pub mod field_kind {
    /// Any bytes: the range is only where writes are allowed.
    pub const BYTES: u8 = 0;
    /// A little-endian unsigned integer of the range's width (1, 2, 4 or 8) in `[min, max]`.
    pub const UNSIGNED: u8 = 1;
    /// A little-endian two's-complement integer of the range's width in `[min, max]` (as i64).
    pub const SIGNED: u8 = 2;
    /// A 64-bit pointer that must point into a readable region of the plan's proven regions.
    pub const POINTER: u8 = 3;
}

pub const SYMBOL_RULE_LEN: usize = 65;
/// Most symbol rules one policy holds.
pub const MAX_SYMBOL_RULES: usize = 8;

/// An address range relative to a symbol, `[symbol + start, symbol + end)`, where a policy
/// allows writes, and what the bytes there are (see [`field_kind`]). The symbol is named by
/// `hash::symbol_key(module, name)`; its runtime address comes from a Merkle proof against the
/// snapshot's symbol tree, so the rule holds across ASLR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SymbolRule {
    pub symbol: [u8; 32],
    pub start: u64,
    pub end: u64,
    pub kind: u8,
    pub min: u64,
    pub max: u64,
}

impl SymbolRule {
    pub fn decode(b: &[u8; SYMBOL_RULE_LEN]) -> SymbolRule {
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        SymbolRule {
            symbol: b[0..32].try_into().unwrap_or([0; 32]),
            start: u64_at(32),
            end: u64_at(40),
            kind: b[48],
            min: u64_at(49),
            max: u64_at(57),
        }
    }

    pub fn encode(&self) -> [u8; SYMBOL_RULE_LEN] {
        let mut out = [0u8; SYMBOL_RULE_LEN];
        out[0..32].copy_from_slice(&self.symbol);
        out[32..40].copy_from_slice(&self.start.to_le_bytes());
        out[40..48].copy_from_slice(&self.end.to_le_bytes());
        out[48] = self.kind;
        out[49..57].copy_from_slice(&self.min.to_le_bytes());
        out[57..65].copy_from_slice(&self.max.to_le_bytes());
        out
    }

    /// A typed field is 1, 2, 4 or 8 bytes (a pointer 8) with `min <= max`; a range is non-empty.
    pub fn validate(&self) -> Result<(), VerifyError> {
        let width = self.end.wrapping_sub(self.start);
        let ok = self.start < self.end
            && match self.kind {
                field_kind::BYTES => true,
                field_kind::UNSIGNED => matches!(width, 1 | 2 | 4 | 8) && self.min <= self.max,
                field_kind::SIGNED => matches!(width, 1 | 2 | 4 | 8) && (self.min as i64) <= (self.max as i64),
                field_kind::POINTER => width == 8,
                _ => false,
            };
        if ok {
            Ok(())
        } else {
            Err(VerifyError::InvalidPolicyRules)
        }
    }
}

/// A policy's symbol rules: up to [`MAX_SYMBOL_RULES`], kept as their encoded bytes so a policy
/// without any costs nothing to load on chain (one copy, no decoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolRules {
    count: u8,
    encoded: [u8; SYMBOL_RULE_LEN * MAX_SYMBOL_RULES],
}

impl Default for SymbolRules {
    fn default() -> Self {
        SymbolRules {
            count: 0,
            encoded: [0; SYMBOL_RULE_LEN * MAX_SYMBOL_RULES],
        }
    }
}

impl SymbolRules {
    /// Validated rules from a list (at most [`MAX_SYMBOL_RULES`]).
    pub fn from_rules(rules: &[SymbolRule]) -> Result<SymbolRules, VerifyError> {
        if rules.len() > MAX_SYMBOL_RULES {
            return Err(VerifyError::TooManySymbolRules);
        }
        let mut out = SymbolRules::default();
        for (i, rule) in rules.iter().enumerate() {
            rule.validate()?;
            out.encoded[i * SYMBOL_RULE_LEN..(i + 1) * SYMBOL_RULE_LEN].copy_from_slice(&rule.encode());
        }
        out.count = rules.len() as u8;
        Ok(out)
    }

    /// The instruction argument: Borsh `Vec<SymbolRule>`, each rule validated.
    pub fn parse_vec(r: &mut Reader<'_>) -> Result<SymbolRules, VerifyError> {
        let count = r.u32()? as usize;
        if count > MAX_SYMBOL_RULES {
            return Err(VerifyError::TooManySymbolRules);
        }
        let mut out = SymbolRules::default();
        out.encoded[..count * SYMBOL_RULE_LEN].copy_from_slice(r.take(count * SYMBOL_RULE_LEN)?);
        out.count = count as u8;
        Ok(out)
    }

    /// The account layout: `count: u8` then all [`MAX_SYMBOL_RULES`] slots (unused ones are
    /// kept as stored, so decoding and encoding round-trip).
    pub fn parse_fixed(r: &mut Reader<'_>) -> Result<SymbolRules, VerifyError> {
        let count = r.u8()?;
        if count as usize > MAX_SYMBOL_RULES {
            return Err(VerifyError::TooManySymbolRules);
        }
        Ok(SymbolRules {
            count,
            encoded: *r.array()?,
        })
    }

    pub fn validate(&self) -> Result<(), VerifyError> {
        self.iter().try_for_each(|rule| rule.validate())
    }

    pub fn len(&self) -> usize {
        (self.count as usize).min(MAX_SYMBOL_RULES)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = SymbolRule> + '_ {
        self.encoded.as_chunks::<SYMBOL_RULE_LEN>().0[..self.len()]
            .iter()
            .map(SymbolRule::decode)
    }

    /// `count` and every slot, as the Policy account stores them.
    pub fn encoded_fixed(&self) -> (u8, &[u8; SYMBOL_RULE_LEN * MAX_SYMBOL_RULES]) {
        (self.count, &self.encoded)
    }

    /// The encoded rules in use (no unused slots).
    pub fn encoded_used(&self) -> &[u8] {
        &self.encoded[..self.len() * SYMBOL_RULE_LEN]
    }

    /// The Borsh `Vec<SymbolRule>` of the instruction argument.
    pub fn encoded_vec(&self) -> impl Iterator<Item = u8> + '_ {
        (self.len() as u32)
            .to_le_bytes()
            .into_iter()
            .chain(self.encoded[..self.len() * SYMBOL_RULE_LEN].iter().copied())
    }
}
