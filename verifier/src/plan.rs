//! Owned plans for the host: build, canonicalise, encode. Decoding and checking go through
//! [`crate::wire`] and [`crate::rules`], the same path the program takes.

use std::vec::Vec;

use crate::error::VerifyError;
use crate::hash::{self, Hash, Sha256};
use crate::rules::{check_plan, PlanTotals};
use crate::wire::{AttestArgs, PolicyRules, Region};

/// One write of an owned plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub address: u64,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// A patch plan as the program receives it in `attest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchPlan {
    pub target_id: Hash,
    pub snapshot_root: Hash,
    pub regions: Vec<Region>,
    pub writes: Vec<Write>,
}

impl PatchPlan {
    /// Sorts regions and writes into the canonical order the rules require.
    pub fn canonicalize(&mut self) {
        self.regions.sort_by_key(|r| (r.start, r.end));
        self.writes.sort_by_key(|w| w.address);
    }

    /// Borsh encoding of the region table, length prefix included.
    pub fn encode_regions(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.regions.len() * crate::wire::REGION_LEN);
        out.extend_from_slice(&(self.regions.len() as u32).to_le_bytes());
        for r in &self.regions {
            out.extend_from_slice(&r.encode());
        }
        out
    }

    /// The `attest` arguments (without the instruction discriminator).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.target_id);
        out.extend_from_slice(&self.snapshot_root);
        out.extend_from_slice(&self.encode_regions());
        out.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for w in &self.writes {
            out.extend_from_slice(&w.address.to_le_bytes());
            out.extend_from_slice(&(w.old.len() as u32).to_le_bytes());
            out.extend_from_slice(&w.old);
            out.extend_from_slice(&(w.new.len() as u32).to_le_bytes());
            out.extend_from_slice(&w.new);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PatchPlan, VerifyError> {
        let args = AttestArgs::parse(bytes)?;
        Ok(PatchPlan {
            target_id: *args.target_id,
            snapshot_root: *args.snapshot_root,
            regions: args.regions().collect(),
            writes: args
                .writes()
                .map(|w| Write {
                    address: w.address,
                    old: w.old.to_vec(),
                    new: w.new.to_vec(),
                })
                .collect(),
        })
    }

    pub fn plan_hash<H: Sha256>(&self) -> Hash {
        hash::plan_hash::<H>(&self.encode())
    }

    pub fn region_table_hash<H: Sha256>(&self) -> Hash {
        hash::region_table_hash::<H>(&self.encode_regions())
    }

    /// The same check the program runs, on the same encoding.
    pub fn check(&self, rules: &PolicyRules) -> Result<PlanTotals, VerifyError> {
        let bytes = self.encode();
        check_plan(rules, &AttestArgs::parse(&bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{REGION_EXEC, REGION_READ, REGION_WRITE};
    use std::vec;

    const RW: u8 = REGION_READ | REGION_WRITE;
    const RX: u8 = REGION_READ | REGION_EXEC;

    fn rules() -> PolicyRules {
        PolicyRules {
            wx: true,
            max_bytes: 16,
            max_writes: 4,
        }
    }

    fn plan(writes: Vec<(u64, &[u8], &[u8])>) -> PatchPlan {
        PatchPlan {
            target_id: [1; 32],
            snapshot_root: [2; 32],
            regions: vec![
                Region {
                    start: 0x1000,
                    end: 0x2000,
                    flags: RX,
                },
                Region {
                    start: 0x2000,
                    end: 0x3000,
                    flags: REGION_READ,
                },
                Region {
                    start: 0x4000,
                    end: 0x6000,
                    flags: RW,
                },
                Region {
                    start: 0x7000,
                    end: 0x8000,
                    flags: RW | REGION_EXEC,
                },
            ],
            writes: writes
                .into_iter()
                .map(|(address, old, new)| Write {
                    address,
                    old: old.to_vec(),
                    new: new.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_good_plan_passes_and_round_trips() {
        let p = plan(vec![(0x4000, &[0, 0], &[1, 2]), (0x5ffe, &[3, 3], &[4, 4])]);
        assert_eq!(p.check(&rules()), Ok(PlanTotals { writes: 2, bytes: 4 }));
        assert_eq!(PatchPlan::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let cases: Vec<(PatchPlan, VerifyError)> = vec![
            (plan(vec![(0x1000, &[0], &[1])]), VerifyError::WriteInExecutableRegion),
            (plan(vec![(0x7000, &[0], &[1])]), VerifyError::WriteInExecutableRegion),
            (plan(vec![(0x3000, &[0], &[1])]), VerifyError::WriteOutsideRegions),
            (plan(vec![(0x5fff, &[0, 0], &[1, 1])]), VerifyError::WriteOutsideRegions),
            (plan(vec![(0x2000, &[0], &[1])]), VerifyError::WriteToReadOnlyRegion),
            (
                plan(vec![(0x4000, &[0, 0], &[1, 1]), (0x4001, &[0], &[1])]),
                VerifyError::OverlappingWrites,
            ),
            (
                plan(vec![(0x4001, &[0], &[1]), (0x4000, &[0], &[1])]),
                VerifyError::UnsortedWrites,
            ),
            (plan(vec![(0x4000, &[0; 17], &[1; 17])]), VerifyError::PlanTooManyBytes),
            (plan(vec![(0x4000, &[0], &[1]); 5]), VerifyError::PlanTooManyWrites),
            (plan(vec![(0x4000, &[0], &[1, 2])]), VerifyError::WriteLengthMismatch),
            (plan(vec![(0x4000, &[], &[])]), VerifyError::EmptyWrite),
            (plan(vec![(0x4000, &[5], &[5])]), VerifyError::NoOpWrite),
            (plan(vec![]), VerifyError::EmptyPlan),
            (plan(vec![(u64::MAX, &[0, 0], &[1, 1])]), VerifyError::AddressOverflow),
        ];
        for (p, expected) in cases {
            assert_eq!(p.check(&rules()), Err(expected), "{p:?}");
        }
        // Without W^X a writable+executable region accepts writes.
        let lax = PolicyRules { wx: false, ..rules() };
        assert!(plan(vec![(0x7000, &[0], &[1])]).check(&lax).is_ok());
        // A broken region table is refused before any write is looked at.
        let mut p = plan(vec![(0x4000, &[0], &[1])]);
        p.regions.swap(0, 1);
        assert_eq!(p.check(&rules()), Err(VerifyError::InvalidRegionTable));
    }

    #[test]
    fn truncated_or_padded_encodings_are_malformed() {
        let bytes = plan(vec![(0x4000, &[0, 0], &[1, 2])]).encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                AttestArgs::parse(&bytes[..cut]).err(),
                Some(VerifyError::MalformedInstruction)
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(
            AttestArgs::parse(&padded).err(),
            Some(VerifyError::MalformedInstruction)
        );
    }
}
