//! A relocation too large for one submission, checked in parts, one transaction each, against
//! state kept in accounts. A million moved objects carry a 16 MB slot table and about 155 MB of
//! pages, where one submission holds 512 KiB and one account 10 MiB.
//!
//! First the slot table is appended, in order ([`append_slots`]: ascending, disjoint, aligned,
//! each slot's `to` in range, not itself). Each slot becomes a *record* in the relocation's
//! stores. Then come the parts, in address order ([`check_part`]). A part is an ordinary
//! submission (the plan's regions, its writes in the part's range `[lo, hi)`, their pages
//! proven; no slots of its own), and its slots are the table's slots that start in that range.
//! For each slot `t` of a part, two hashes are XORed into records:
//! - into `t`'s own record: the hash of what `t` holds after the plan (its write's new bytes,
//!   or its old bytes when no write touches it);
//! - into the record of `to(t)`: the hash of `t`'s old bytes with every word that points into a
//!   slot moved with that slot's object. `to(t)` is also marked taken, and taken only once.
//!
//! Why that proves what `check_relocation` proves at once. Every slot is in exactly one part,
//! so every record gets one hash of the first kind; n slots mark n distinct records taken, so
//! `to` is a bijection and every record gets exactly one hash of the second kind. A record is
//! zero only if its two hashes are equal: the slot holds the object that moved in, every
//! pointer moved. [`finish`] requires every record zero, which a count of non-zero records
//! (`unbalanced`) keeps O(1). Every other write is a pointer moved, checked in its part as in
//! `check_relocation`.
//!
//! The plan hash of a streamed relocation ([`streamed_plan_hash`]) covers the same plan as
//! `plan_hash`, but as hash chains over slots and writes, so that it can be computed one part
//! at a time and does not depend on where the parts were cut.

use crate::error::VerifyError;
use crate::hash::{Hash, Sha256};
use crate::rules::{check_evidence, check_plan_writes, check_symbol_rules, ProvenWords};
use crate::wire::{PolicyRules, Reader, Submission, SymbolRules};

/// A slot as the table is appended: `address: u64, len: u32, to: u32` (`from` is `to`'s
/// inverse, which the taken marks prove).
pub const STREAM_SLOT_LEN: usize = 16;
/// A slot's record in the stores: its stream slot, then `taken: u8` and `balance: [u8; 32]`.
pub const RECORD_LEN: usize = STREAM_SLOT_LEN + 1 + 32;
/// Longest object a streamed relocation moves: its moved bytes are built on the stack.
pub const MAX_STREAMED_SLOT_LEN: u32 = 512;
/// Most slots one relocation holds: `MAX_STORES` stores of the largest account, the most one
/// transaction can load. A larger relocation is done in rounds, each a relocation of its own.
pub const MAX_SLOTS: u32 = crate::accounts::MAX_STORES as u32
    * Records::per_store(crate::accounts::RelocationStore::MAX_ACCOUNT_LEN - crate::accounts::RelocationStore::LEN);

/// What a part may be estimated to cost: the program's limit is 1,400,000 compute units; the
/// rest is room for what the estimate does not see.
pub const PART_CU_BUDGET: u64 = 1_100_000;

/// Compute units `check_part` is estimated to spend on the deployed program, from above: a
/// least-squares fit to 77 parts measured in LiteSVM (1 to 120 objects to a page, objects of
/// 16 to 512 bytes, 64 to 4,096 objects, 3 to 117 pages a part, proofs 4 to 8 hashes deep;
/// within 1 % of every one), rounded up: each cost 93 to 98 % of its estimate.
/// `tests/tests/attestor_litesvm.rs` checks it against parts measured there, and the relocation
/// bench prints it beside the costliest part's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartCost {
    /// Pages proven, with proofs `depth` hashes long.
    pub pages: u64,
    pub depth: u64,
    /// Slots starting in the part and their words (each looked up among all the slots).
    pub slots: u64,
    pub slot_words: u64,
    /// Writes that are not a slot's bytes: pointers rewritten, each looked up.
    pub pointer_writes: u64,
    /// All the relocation's slots: a lookup is a binary search among them.
    pub records: u64,
}

impl PartCost {
    pub fn estimate(&self) -> u64 {
        // Saturating: the counts may be a forger's plan's.
        let levels = 64 - u64::from(self.records.leading_zeros());
        let lookup = 80 + 30 * levels;
        [
            (self.pages, 2_900u64.saturating_add(self.depth.saturating_mul(160))),
            (self.slots, 1_800),
            (self.slot_words, lookup),
            (self.pointer_writes, 1_800 + lookup),
        ]
        .iter()
        .fold(1_200u64, |sum, &(count, each)| {
            sum.saturating_add(count.saturating_mul(each))
        })
    }
}

pub const STREAM_SLOTS_TAG: &[u8] = b"memzinc/stream-slots/v1";
pub const STREAM_WRITES_TAG: &[u8] = b"memzinc/stream-writes/v1";
pub const STREAM_PLAN_TAG: &[u8] = b"memzinc/stream-plan/v1";
pub const STREAM_OBJECT_TAG: &[u8] = b"memzinc/stream-object/v1";

/// One slot of a streamed relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSlot {
    pub address: u64,
    pub len: u32,
    pub to: u32,
}

impl StreamSlot {
    pub fn encode(&self) -> [u8; STREAM_SLOT_LEN] {
        let mut out = [0u8; STREAM_SLOT_LEN];
        out[0..8].copy_from_slice(&self.address.to_le_bytes());
        out[8..12].copy_from_slice(&self.len.to_le_bytes());
        out[12..16].copy_from_slice(&self.to.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> StreamSlot {
        let mut r = Reader::new(b);
        StreamSlot {
            address: r.u64().unwrap_or(0),
            len: r.u32().unwrap_or(0),
            to: r.u32().unwrap_or(0),
        }
    }

    fn end(&self) -> u64 {
        self.address.wrapping_add(self.len as u64)
    }
}

/// What a streamed relocation has proven so far; the program keeps it in the relocation's
/// account, between the fields it adds of its own (authority, policy, stores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StreamState {
    pub target_id: Hash,
    pub snapshot_root: Hash,
    pub model_hash: Hash,
    pub region_table_hash: Hash,
    pub slot_count: u32,
    /// Slots appended so far; parts wait until all `slot_count` are.
    pub appended: u32,
    /// One past the last appended slot's last byte.
    pub last_end: u64,
    /// The chain over the appended slots.
    pub slot_digest: Hash,
    /// The first slot and the first address no part has reached yet.
    pub next_slot: u32,
    pub next_address: u64,
    /// The last part (the one that reached the end of the address space) was checked.
    pub done: bool,
    pub write_count: u64,
    pub write_bytes: u64,
    /// The chain over the checked parts' writes.
    pub write_digest: Hash,
    /// Records whose balance is not zero.
    pub unbalanced: u32,
}

impl StreamState {
    pub const LEN: usize = 32 * 4 + 4 + 4 + 8 + 32 + 4 + 8 + 1 + 8 + 8 + 32 + 4;

    /// A relocation of `slot_count` slots about to be appended.
    pub fn new(
        target_id: Hash,
        snapshot_root: Hash,
        model_hash: Hash,
        region_table_hash: Hash,
        slot_count: u32,
    ) -> Self {
        StreamState {
            target_id,
            snapshot_root,
            model_hash,
            region_table_hash,
            slot_count,
            ..StreamState::default()
        }
    }

    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        let mut at = 0;
        let mut put = |b: &[u8]| {
            out[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        put(&self.target_id);
        put(&self.snapshot_root);
        put(&self.model_hash);
        put(&self.region_table_hash);
        put(&self.slot_count.to_le_bytes());
        put(&self.appended.to_le_bytes());
        put(&self.last_end.to_le_bytes());
        put(&self.slot_digest);
        put(&self.next_slot.to_le_bytes());
        put(&self.next_address.to_le_bytes());
        put(&[self.done as u8]);
        put(&self.write_count.to_le_bytes());
        put(&self.write_bytes.to_le_bytes());
        put(&self.write_digest);
        put(&self.unbalanced.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(b);
        let s = StreamState {
            target_id: *r.array()?,
            snapshot_root: *r.array()?,
            model_hash: *r.array()?,
            region_table_hash: *r.array()?,
            slot_count: r.u32()?,
            appended: r.u32()?,
            last_end: r.u64()?,
            slot_digest: *r.array()?,
            next_slot: r.u32()?,
            next_address: r.u64()?,
            done: r.bool()?,
            write_count: r.u64()?,
            write_bytes: r.u64()?,
            write_digest: *r.array()?,
            unbalanced: r.u32()?,
        };
        r.finish()?;
        Ok(s)
    }
}

/// The records of a streamed relocation, `per_store` to a store (the stores' data after their
/// headers, in order).
pub struct Records<'a, 'b> {
    stores: &'a mut [&'b mut [u8]],
    per_store: u32,
    count: u32,
}

impl<'a, 'b> Records<'a, 'b> {
    /// Refuses stores that cannot hold `count` records at `per_store` each.
    pub fn new(stores: &'a mut [&'b mut [u8]], per_store: u32, count: u32) -> Result<Self, VerifyError> {
        let need = (count as u64).div_ceil(per_store.max(1) as u64);
        let room = per_store as usize * RECORD_LEN;
        if per_store == 0 || (stores.len() as u64) < need || stores.iter().any(|s| s.len() < room) {
            return Err(VerifyError::RelocationStoreMismatch);
        }
        Ok(Records {
            stores,
            per_store,
            count,
        })
    }

    /// The records of the stores present only (the others empty slices): what one
    /// `append_slots` writes, into the one or two stores its slots land in. A record in an
    /// absent store is refused as `RelocationStoreMismatch`. Parts look slots up anywhere, so
    /// they take every store ([`Records::new`]).
    pub fn window(stores: &'a mut [&'b mut [u8]], per_store: u32, count: u32) -> Result<Self, VerifyError> {
        let room = per_store as usize * RECORD_LEN;
        if per_store == 0 || stores.iter().any(|s| !s.is_empty() && s.len() < room) {
            return Err(VerifyError::RelocationStoreMismatch);
        }
        Ok(Records {
            stores,
            per_store,
            count,
        })
    }

    /// The stores (their indices) `append_slots` of `count` slots writes after `appended`.
    pub fn append_stores(appended: u32, count: u32, per_store: u32) -> core::ops::Range<usize> {
        let per_store = per_store.max(1);
        let first = appended / per_store;
        let last = (appended + count.max(1) - 1) / per_store;
        first as usize..last as usize + 1
    }

    /// How many records `per_store` of which fit in a store's data of `len` bytes.
    pub const fn per_store(len: usize) -> u32 {
        (len / RECORD_LEN) as u32
    }

    fn at(&self, i: u32) -> Option<(usize, usize)> {
        (i < self.count).then(|| {
            let store = (i / self.per_store) as usize;
            let at = (i % self.per_store) as usize * RECORD_LEN;
            (store, at)
        })
    }

    fn record(&self, i: u32) -> Option<&[u8]> {
        let (store, at) = self.at(i)?;
        self.stores.get(store)?.get(at..at + RECORD_LEN)
    }

    fn record_mut(&mut self, i: u32) -> Option<&mut [u8]> {
        let (store, at) = self.at(i)?;
        self.stores.get_mut(store)?.get_mut(at..at + RECORD_LEN)
    }

    pub fn slot(&self, i: u32) -> Option<StreamSlot> {
        self.record(i).map(StreamSlot::decode)
    }

    /// Where the relocation moves the byte at `v`: into the slot its object moves to, by its
    /// offset, if `v` lies in a slot; else nowhere. Parts run once every slot is appended.
    fn moved(&self, v: u64) -> u64 {
        let (mut lo, mut hi) = (0u32, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.slot(mid) {
                Some(s) if s.address <= v => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let Some(slot) = lo.checked_sub(1).and_then(|i| self.slot(i)) else {
            return v;
        };
        if v >= slot.end() {
            return v;
        }
        match self.slot(slot.to) {
            Some(target) => target.address + (v - slot.address),
            None => v,
        }
    }

    /// XORs `h` into record `i`'s balance; returns the change in non-zero balances.
    fn balance(&mut self, i: u32, h: &Hash) -> Result<i32, VerifyError> {
        let record = self.record_mut(i).ok_or(VerifyError::RelocationStoreMismatch)?;
        let balance = &mut record[STREAM_SLOT_LEN + 1..];
        let was_zero = balance.iter().all(|&b| b == 0);
        for (b, x) in balance.iter_mut().zip(h) {
            *b ^= x;
        }
        let is_zero = balance.iter().all(|&b| b == 0);
        Ok(was_zero as i32 - is_zero as i32)
    }

    /// Marks record `i` as the destination of an object; a second mark is refused.
    fn take(&mut self, i: u32) -> Result<(), VerifyError> {
        let record = self.record_mut(i).ok_or(VerifyError::InvalidRelocation)?;
        if record[STREAM_SLOT_LEN] != 0 {
            return Err(VerifyError::RelocationNotAPermutation);
        }
        record[STREAM_SLOT_LEN] = 1;
        Ok(())
    }
}

/// Appends `data` (whole [`StreamSlot`]s) to the table as its slots `first..`: each slot
/// ascending and disjoint from the last, 8-byte aligned and sized, at most
/// [`MAX_STREAMED_SLOT_LEN`] long, its `to` another slot of the table. Sizes of `to` are
/// compared in the parts, once every slot is known. `first` must be the count appended so far,
/// so appends that run out of order or twice are refused rather than put in the wrong place.
pub fn append_slots<H: Sha256>(
    state: &mut StreamState,
    records: &mut Records<'_, '_>,
    first: u32,
    data: &[u8],
) -> Result<(), VerifyError> {
    let (chunks, rest) = data.as_chunks::<STREAM_SLOT_LEN>();
    if !rest.is_empty() || chunks.is_empty() {
        return Err(VerifyError::MalformedInstruction);
    }
    if first != state.appended {
        return Err(VerifyError::SlotsNotNext);
    }
    for chunk in chunks {
        let i = state.appended;
        let slot = StreamSlot::decode(chunk);
        let end = slot
            .address
            .checked_add(slot.len as u64)
            .ok_or(VerifyError::AddressOverflow)?;
        if slot.len > MAX_STREAMED_SLOT_LEN {
            return Err(VerifyError::StreamedSlotTooLong);
        }
        let well_formed = i < state.slot_count
            && slot.len > 0
            && slot.len.is_multiple_of(8)
            && slot.address.is_multiple_of(8)
            && slot.to < state.slot_count
            && slot.to != i
            && (i == 0 || state.last_end <= slot.address);
        if !well_formed {
            return Err(VerifyError::InvalidRelocation);
        }
        let record = records.record_mut(i).ok_or(VerifyError::RelocationStoreMismatch)?;
        record.fill(0);
        record[..STREAM_SLOT_LEN].copy_from_slice(chunk);
        state.slot_digest = slot_link::<H>(&state.slot_digest, chunk);
        state.last_end = end;
        state.appended += 1;
    }
    Ok(())
}

/// The slot chain after one more slot (its [`StreamSlot`] encoding).
pub fn slot_link<H: Sha256>(digest: &Hash, slot: &[u8]) -> Hash {
    H::hashv(&[STREAM_SLOTS_TAG, digest, slot])
}

/// The write chain after one more write, over the write's `PlanCore` encoding.
pub fn write_link<H: Sha256>(digest: &Hash, address: u64, old: &[u8], new: &[u8]) -> Hash {
    H::hashv(&[
        STREAM_WRITES_TAG,
        digest,
        &address.to_le_bytes(),
        &(old.len() as u32).to_le_bytes(),
        old,
        &(new.len() as u32).to_le_bytes(),
        new,
    ])
}

/// The hash a slot's object contributes, from its bytes.
fn object_hash<H: Sha256>(bytes: &[u8]) -> Hash {
    H::hashv(&[STREAM_OBJECT_TAG, bytes])
}

/// Slot `i` of a part: what it holds after the plan (`new`, or its old bytes) into its own
/// record, its old bytes moved into the record of `to`, which is marked taken.
#[inline(never)]
fn slot_contributions<H: Sha256>(
    records: &mut Records<'_, '_>,
    words: &mut ProvenWords<'_>,
    i: u32,
    new: Option<&[u8]>,
) -> Result<i32, VerifyError> {
    let slot = records.slot(i).ok_or(VerifyError::InvalidRelocation)?;
    let len = slot.len as usize;
    let mut old = [0u8; MAX_STREAMED_SLOT_LEN as usize];
    let mut moved = [0u8; MAX_STREAMED_SLOT_LEN as usize];
    for k in 0..len / 8 {
        let word = words.word(slot.address + 8 * k as u64)?;
        old[8 * k..8 * k + 8].copy_from_slice(&word.to_le_bytes());
        moved[8 * k..8 * k + 8].copy_from_slice(&records.moved(word).to_le_bytes());
    }
    if records.slot(slot.to).is_none_or(|t| t.len != slot.len) {
        return Err(VerifyError::InvalidRelocation);
    }
    records.take(slot.to)?;
    let held = object_hash::<H>(new.unwrap_or(&old[..len]));
    let arriving = object_hash::<H>(&moved[..len]);
    Ok(records.balance(i, &held)? + records.balance(slot.to, &arriving)?)
}

/// Checks one part of a streamed relocation: `submission` holds the part's writes (all inside
/// `[state.next_address, hi)`) and proves the pages of those writes and of every slot starting
/// in that range; `hi == u64::MAX` makes it the last part. The submission is judged by the same
/// `check_plan`, `check_evidence` and `check_symbol_rules` as any plan, with the totals left to
/// [`finish`], and it may have no writes (only slots whose bytes stay); its writes are the
/// moved slots' new bytes and pointers rewritten to the move.
pub fn check_part<H: Sha256>(
    state: &mut StreamState,
    rules: &PolicyRules,
    symbol_rules: &SymbolRules,
    records: &mut Records<'_, '_>,
    submission: &[u8],
    hi: u64,
) -> Result<(), VerifyError> {
    let lo = state.next_address;
    if state.appended != state.slot_count || state.done || hi <= lo {
        return Err(VerifyError::RelocationStreamOutOfOrder);
    }
    let Submission { plan, evidence } = Submission::parse(submission)?;
    if plan.target_id != &state.target_id
        || plan.snapshot_root != &state.snapshot_root
        || plan.model_hash != &state.model_hash
        || crate::hash::region_table_hash::<H>(plan.regions_encoded) != state.region_table_hash
        || plan.slot_count != 0
    {
        return Err(VerifyError::RelocationPartMismatch);
    }
    let part_rules = PolicyRules {
        max_bytes: u32::MAX,
        max_writes: u32::MAX,
        ..*rules
    };
    // A part may be only slots left alone: the cut between parts does not wait for a write.
    let totals = check_plan_writes(&part_rules, &plan, false)?;
    check_evidence::<H>(&plan, &evidence)?;
    check_symbol_rules(symbol_rules, &plan, &evidence)?;

    let mut words = ProvenWords::new(&evidence);
    let mut unbalanced = state.unbalanced as i64;
    let mut next = state.next_slot;
    let in_part = |records: &Records<'_, '_>, i: u32| records.slot(i).filter(|s| s.address < hi);
    let mut digest = state.write_digest;
    for write in plan.writes() {
        let end = write.address + write.new.len() as u64;
        if write.address < lo || end > hi {
            return Err(VerifyError::RelocationStreamOutOfOrder);
        }
        digest = write_link::<H>(&digest, write.address, write.old, write.new);
        // Slots wholly before this write are left alone.
        while in_part(records, next).is_some_and(|s| s.end() <= write.address) {
            unbalanced += slot_contributions::<H>(records, &mut words, next, None)? as i64;
            next += 1;
        }
        match in_part(records, next) {
            Some(slot) if slot.address < end => {
                if write.address != slot.address || write.new.len() != slot.len as usize {
                    return Err(VerifyError::MovedBytesMismatch);
                }
                unbalanced += slot_contributions::<H>(records, &mut words, next, Some(write.new))? as i64;
                next += 1;
            }
            _ => {
                let (Ok(old), Ok(new)) = (<[u8; 8]>::try_from(write.old), <[u8; 8]>::try_from(write.new)) else {
                    return Err(VerifyError::PointerNotMoved);
                };
                let old = u64::from_le_bytes(old);
                let moved = records.moved(old);
                if !write.address.is_multiple_of(8) || moved == old || u64::from_le_bytes(new) != moved {
                    return Err(VerifyError::PointerNotMoved);
                }
            }
        }
    }
    while let Some(slot) = in_part(records, next) {
        if slot.end() > hi {
            return Err(VerifyError::RelocationStreamOutOfOrder);
        }
        unbalanced += slot_contributions::<H>(records, &mut words, next, None)? as i64;
        next += 1;
    }
    state.unbalanced = u32::try_from(unbalanced).map_err(|_| VerifyError::RelocationStoreMismatch)?;
    state.write_digest = digest;
    state.write_count += totals.writes as u64;
    state.write_bytes += totals.bytes as u64;
    state.next_slot = next;
    state.next_address = hi;
    state.done = hi == u64::MAX;
    Ok(())
}

/// The plan hash of a streamed relocation from its parts: the same fields `plan_hash` covers,
/// slots and writes as chains.
pub fn streamed_plan_hash<H: Sha256>(state: &StreamState) -> Hash {
    H::hashv(&[
        STREAM_PLAN_TAG,
        &state.target_id,
        &state.snapshot_root,
        &state.model_hash,
        &state.region_table_hash,
        &state.slot_count.to_le_bytes(),
        &state.slot_digest,
        &state.write_count.to_le_bytes(),
        &state.write_digest,
    ])
}

/// What the whole relocation amounts to, once its last part passed: every slot reached, every
/// record balanced, and the totals within the policy. Returns the plan hash and totals.
pub fn finish<H: Sha256>(
    state: &StreamState,
    rules: &PolicyRules,
) -> Result<(Hash, crate::rules::PlanTotals), VerifyError> {
    if !state.done || state.next_slot != state.slot_count || state.appended != state.slot_count {
        return Err(VerifyError::RelocationUnfinished);
    }
    if state.write_count == 0 {
        return Err(VerifyError::EmptyPlan);
    }
    if rules.max_moves == 0 {
        return Err(VerifyError::RelocationNotAllowed);
    }
    if state.slot_count > rules.max_moves {
        return Err(VerifyError::PlanTooManyMoves);
    }
    if state.write_count > rules.max_writes as u64 {
        return Err(VerifyError::PlanTooManyWrites);
    }
    if state.write_bytes > rules.max_bytes as u64 {
        return Err(VerifyError::PlanTooManyBytes);
    }
    if state.unbalanced != 0 {
        return Err(VerifyError::MovedBytesMismatch);
    }
    Ok((
        streamed_plan_hash::<H>(state),
        crate::rules::PlanTotals {
            writes: state.write_count as u32,
            bytes: state.write_bytes as u32,
        },
    ))
}
