//! The attestor's instruction data: an 8-byte Anchor discriminator, then the instruction's
//! Borsh arguments. The program decodes instruction data with these functions and nothing
//! else, so the fuzz target `fuzz/fuzz_targets/instruction.rs` exercises the program's own
//! decoding. Each `parse` takes the bytes after the discriminator and rejects anything that
//! does not fill them exactly.
//!
//! ```text
//! initialize_policy, update_policy   PolicyConfig                       (see accounts)
//! close_policy                       ()
//! open_buffer                        plan_hash: [u8;32], len: u32       1 <= len <= MAX_BUFFER_LEN
//! write_buffer                       plan_hash: [u8;32], offset: u32, data: bytes
//! close_buffer, attest               plan_hash: [u8;32]
//! revoke                             seq: u64
//! record_applied                     seq: u64, outcome: u8, readback_hash: [u8;32]   outcome <= 2
//! witness_snapshot                   target_id: [u8;32], snapshot_root: [u8;32]
//! open_relocation                    target_id, snapshot_root, model_hash, region_table_hash: [u8;32],
//!                                    slot_count: u32, per_store: u32         both >= 1
//! append_slots                       first: u32, slots: bytes           whole 16-byte stream slots
//! check_relocation_part              plan_hash: [u8;32], hi: u64        plan_hash: the part's buffer
//! finish_relocation, close_relocation ()
//! ```

use crate::accounts::{
    Discriminator, PolicyConfig, IX_APPEND_SLOTS, IX_ATTEST, IX_CHECK_RELOCATION_PART, IX_CLOSE_BUFFER,
    IX_CLOSE_POLICY, IX_CLOSE_RELOCATION, IX_FINISH_RELOCATION, IX_INITIALIZE_POLICY, IX_OPEN_BUFFER,
    IX_OPEN_RELOCATION, IX_RECORD_APPLIED, IX_REVOKE, IX_UPDATE_POLICY, IX_WITNESS_SNAPSHOT, IX_WRITE_BUFFER,
    OUTCOME_REFUSED,
};
use crate::error::VerifyError;
use crate::hash::Hash;
use crate::wire::Reader;

/// Largest submission a buffer may hold (64 pages of evidence and then some).
pub const MAX_BUFFER_LEN: u32 = 512 * 1024;

/// The attestor's instructions, named by their discriminators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ix {
    InitializePolicy,
    UpdatePolicy,
    ClosePolicy,
    OpenBuffer,
    WriteBuffer,
    CloseBuffer,
    Attest,
    Revoke,
    RecordApplied,
    WitnessSnapshot,
    OpenRelocation,
    AppendSlots,
    CheckRelocationPart,
    FinishRelocation,
    CloseRelocation,
}

impl Ix {
    /// Every instruction; the ones sent most often first, since `split` searches in this order.
    pub const ALL: [Ix; 15] = [
        Ix::WriteBuffer,
        Ix::Attest,
        Ix::AppendSlots,
        Ix::CheckRelocationPart,
        Ix::InitializePolicy,
        Ix::UpdatePolicy,
        Ix::ClosePolicy,
        Ix::OpenBuffer,
        Ix::CloseBuffer,
        Ix::Revoke,
        Ix::RecordApplied,
        Ix::WitnessSnapshot,
        Ix::OpenRelocation,
        Ix::FinishRelocation,
        Ix::CloseRelocation,
    ];

    pub const fn discriminator(self) -> Discriminator {
        match self {
            Ix::InitializePolicy => IX_INITIALIZE_POLICY,
            Ix::UpdatePolicy => IX_UPDATE_POLICY,
            Ix::ClosePolicy => IX_CLOSE_POLICY,
            Ix::OpenBuffer => IX_OPEN_BUFFER,
            Ix::WriteBuffer => IX_WRITE_BUFFER,
            Ix::CloseBuffer => IX_CLOSE_BUFFER,
            Ix::Attest => IX_ATTEST,
            Ix::Revoke => IX_REVOKE,
            Ix::RecordApplied => IX_RECORD_APPLIED,
            Ix::WitnessSnapshot => IX_WITNESS_SNAPSHOT,
            Ix::OpenRelocation => IX_OPEN_RELOCATION,
            Ix::AppendSlots => IX_APPEND_SLOTS,
            Ix::CheckRelocationPart => IX_CHECK_RELOCATION_PART,
            Ix::FinishRelocation => IX_FINISH_RELOCATION,
            Ix::CloseRelocation => IX_CLOSE_RELOCATION,
        }
    }

    /// Splits instruction data into the instruction and its argument bytes.
    pub fn split(data: &[u8]) -> Result<(Ix, &[u8]), VerifyError> {
        let (disc, args) = data.split_first_chunk::<8>().ok_or(VerifyError::UnknownInstruction)?;
        // One 8-byte compare per instruction: the discriminators as words (every instruction
        // pays for this search, `write_buffer` thousands of times per upload).
        let key = u64::from_le_bytes(*disc);
        let ix = Ix::ALL
            .into_iter()
            .zip(Self::KEYS)
            .find(|&(_, k)| k == key)
            .map(|(ix, _)| ix)
            .ok_or(VerifyError::UnknownInstruction)?;
        Ok((ix, args))
    }

    /// The discriminators of [`Ix::ALL`] as little-endian words.
    const KEYS: [u64; 15] = {
        let mut keys = [0u64; 15];
        let mut i = 0;
        while i < keys.len() {
            keys[i] = u64::from_le_bytes(Ix::ALL[i].discriminator());
            i += 1;
        }
        keys
    };
}

/// `initialize_policy` and `update_policy`: a `PolicyConfig` whose rules are in range.
pub fn parse_policy_config(args: &[u8]) -> Result<PolicyConfig, VerifyError> {
    let mut r = Reader::new(args);
    let config = PolicyConfig::parse(&mut r)?;
    r.finish()?;
    config.rules.validate()?;
    config.symbol_rules.validate()?;
    Ok(config)
}

/// `close_policy` takes no arguments.
pub fn parse_no_args(args: &[u8]) -> Result<(), VerifyError> {
    Reader::new(args).finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenBufferArgs {
    pub plan_hash: Hash,
    pub len: u32,
}

impl OpenBufferArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let plan_hash = *r.array::<32>()?;
        let len = r.u32()?;
        r.finish()?;
        if len == 0 || len > MAX_BUFFER_LEN {
            return Err(VerifyError::BufferOutOfBounds);
        }
        Ok(OpenBufferArgs { plan_hash, len })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBufferArgs<'a> {
    pub plan_hash: &'a Hash,
    pub offset: u32,
    pub data: &'a [u8],
}

impl<'a> WriteBufferArgs<'a> {
    pub fn parse(args: &'a [u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let plan_hash = r.array::<32>()?;
        let offset = r.u32()?;
        let data = r.bytes()?;
        r.finish()?;
        Ok(WriteBufferArgs {
            plan_hash,
            offset,
            data,
        })
    }
}

/// `close_buffer` and `attest`: the plan hash the buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanHashArgs {
    pub plan_hash: Hash,
}

impl PlanHashArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let plan_hash = *r.array::<32>()?;
        r.finish()?;
        Ok(PlanHashArgs { plan_hash })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevokeArgs {
    pub seq: u64,
}

impl RevokeArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let seq = r.u64()?;
        r.finish()?;
        Ok(RevokeArgs { seq })
    }
}

/// `witness_snapshot`: the target and the root the witness vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WitnessSnapshotArgs {
    pub target_id: Hash,
    pub snapshot_root: Hash,
}

impl WitnessSnapshotArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let target_id = *r.array::<32>()?;
        let snapshot_root = *r.array::<32>()?;
        r.finish()?;
        Ok(WitnessSnapshotArgs {
            target_id,
            snapshot_root,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAppliedArgs {
    pub seq: u64,
    /// One of `accounts::OUTCOME_*`.
    pub outcome: u8,
    pub readback_hash: Hash,
}

impl RecordAppliedArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let seq = r.u64()?;
        let outcome = r.u8()?;
        let readback_hash = *r.array::<32>()?;
        r.finish()?;
        if outcome > OUTCOME_REFUSED {
            return Err(VerifyError::MalformedInstruction);
        }
        Ok(RecordAppliedArgs {
            seq,
            outcome,
            readback_hash,
        })
    }
}

/// `open_relocation`: what the relocation will be checked against, and how its records are
/// spread over its stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRelocationArgs {
    pub target_id: Hash,
    pub snapshot_root: Hash,
    pub model_hash: Hash,
    pub region_table_hash: Hash,
    pub slot_count: u32,
    pub per_store: u32,
}

impl OpenRelocationArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let parsed = OpenRelocationArgs {
            target_id: *r.array()?,
            snapshot_root: *r.array()?,
            model_hash: *r.array()?,
            region_table_hash: *r.array()?,
            slot_count: r.u32()?,
            per_store: r.u32()?,
        };
        r.finish()?;
        if parsed.slot_count == 0 || parsed.per_store == 0 {
            return Err(VerifyError::MalformedInstruction);
        }
        Ok(parsed)
    }
}

/// `append_slots`: the index of its first slot in the table, then whole stream slots
/// (`relocation_stream::STREAM_SLOT_LEN` bytes each).
pub fn parse_append_slots(args: &[u8]) -> Result<(u32, &[u8]), VerifyError> {
    let mut r = Reader::new(args);
    let first = r.u32()?;
    let slots = r.bytes()?;
    r.finish()?;
    Ok((first, slots))
}

/// `check_relocation_part`: the buffer holding the part, and the end of the part's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckPartArgs {
    pub plan_hash: Hash,
    pub hi: u64,
}

impl CheckPartArgs {
    pub fn parse(args: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(args);
        let plan_hash = *r.array::<32>()?;
        let hi = r.u64()?;
        r.finish()?;
        Ok(CheckPartArgs { plan_hash, hi })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_every_instruction_and_nothing_else() {
        for ix in Ix::ALL {
            let mut data = ix.discriminator().to_vec();
            data.push(7);
            assert_eq!(Ix::split(&data), Ok((ix, &[7u8][..])));
            data[3] ^= 1;
            assert_eq!(Ix::split(&data), Err(VerifyError::UnknownInstruction));
        }
        assert_eq!(Ix::split(&IX_ATTEST[..7]), Err(VerifyError::UnknownInstruction));
        assert_eq!(Ix::split(&IX_ATTEST), Ok((Ix::Attest, &[][..])));
    }

    #[test]
    fn arguments_must_fill_the_data_exactly_and_be_in_range() {
        let mut open = [0u8; 36];
        open[32..].copy_from_slice(&MAX_BUFFER_LEN.to_le_bytes());
        assert_eq!(
            OpenBufferArgs::parse(&open),
            Ok(OpenBufferArgs {
                plan_hash: [0; 32],
                len: MAX_BUFFER_LEN
            })
        );
        assert_eq!(
            OpenBufferArgs::parse(&open[..35]),
            Err(VerifyError::MalformedInstruction)
        );
        open[32..].copy_from_slice(&(MAX_BUFFER_LEN + 1).to_le_bytes());
        assert_eq!(OpenBufferArgs::parse(&open), Err(VerifyError::BufferOutOfBounds));
        open[32..].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(OpenBufferArgs::parse(&open), Err(VerifyError::BufferOutOfBounds));

        let mut write = [1u8; 32].to_vec();
        write.extend(5u32.to_le_bytes());
        write.extend(2u32.to_le_bytes());
        write.extend([9, 8]);
        let args = WriteBufferArgs::parse(&write).unwrap();
        assert_eq!((args.plan_hash, args.offset, args.data), (&[1u8; 32], 5, &[9u8, 8][..]));
        write.push(0);
        assert_eq!(WriteBufferArgs::parse(&write), Err(VerifyError::MalformedInstruction));

        let mut record = [0u8; 41];
        record[8] = OUTCOME_REFUSED;
        assert!(RecordAppliedArgs::parse(&record).is_ok());
        record[8] = OUTCOME_REFUSED + 1;
        assert_eq!(
            RecordAppliedArgs::parse(&record),
            Err(VerifyError::MalformedInstruction)
        );

        assert_eq!(RevokeArgs::parse(&7u64.to_le_bytes()), Ok(RevokeArgs { seq: 7 }));
        assert_eq!(PlanHashArgs::parse(&[0; 33]), Err(VerifyError::MalformedInstruction));
        assert_eq!(parse_no_args(&[]), Ok(()));
        assert_eq!(parse_no_args(&[0]), Err(VerifyError::MalformedInstruction));
    }
}
