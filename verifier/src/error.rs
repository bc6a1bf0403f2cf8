//! Every way a plan or an instruction can be refused, each with a stable code.
//!
//! The program reports `ProgramError::Custom(ANCHOR_ERROR_OFFSET + code)`, as Anchor programs
//! do for their `#[error_code]` enums, and the IDL lists the same names and numbers.

/// Anchor numbers user errors from 6000; keep that so Anchor clients decode them.
pub const ANCHOR_ERROR_OFFSET: u32 = 6000;

macro_rules! verify_errors {
    ($($name:ident = $code:literal => $msg:literal,)*) => {
        /// A refusal by the verifier or the program. `code()` is stable: it is part of the IDL.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum VerifyError {
            $($name = $code,)*
        }

        impl VerifyError {
            /// Every error, in code order (the IDL's `errors` array).
            pub const ALL: &'static [VerifyError] = &[$(VerifyError::$name,)*];

            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The code an Anchor client sees: 6000 + `code()`.
            pub const fn anchor_code(self) -> u32 {
                ANCHOR_ERROR_OFFSET + self as u32
            }

            pub const fn name(self) -> &'static str {
                match self { $(VerifyError::$name => stringify!($name),)* }
            }

            pub const fn message(self) -> &'static str {
                match self { $(VerifyError::$name => $msg,)* }
            }

            pub fn from_code(code: u32) -> Option<VerifyError> {
                match code { $($code => Some(VerifyError::$name),)* _ => None }
            }
        }
    };
}

verify_errors! {
    MalformedInstruction = 0 => "instruction data does not decode as the declared layout",
    UnknownInstruction = 1 => "unknown instruction discriminator",
    WriteInExecutableRegion = 2 => "write lands in an executable region (W^X policy)",
    WriteOutsideRegions = 3 => "write is not contained in any region of the table",
    WriteToReadOnlyRegion = 4 => "write lands in a region the table does not mark writable",
    OverlappingWrites = 5 => "two writes overlap",
    UnsortedWrites = 6 => "writes are not in ascending address order",
    PlanTooManyBytes = 7 => "plan writes more bytes than the policy allows",
    PlanTooManyWrites = 8 => "plan has more writes than the policy allows",
    WriteLengthMismatch = 9 => "a write's old and new bytes differ in length",
    EmptyWrite = 10 => "a write has no bytes",
    InvalidRegionTable = 11 => "region table is not sorted, non-empty and non-overlapping",
    AddressOverflow = 12 => "a write or region wraps past the end of the address space",
    EmptyPlan = 13 => "a plan must contain at least one write",
    MissingSigner = 14 => "a required signer did not sign",
    Unauthorized = 15 => "signer is not the policy authority",
    AccountNotWritable = 16 => "an account that must be writable is not",
    WrongAccountOwner = 17 => "account is not owned by the expected program",
    AccountDiscriminatorMismatch = 18 => "account data has the wrong discriminator or size",
    InvalidPda = 19 => "account address is not the expected program-derived address",
    AlreadyInitialized = 20 => "account is already initialized",
    PolicyMismatch = 21 => "account belongs to a different policy or target",
    WrongSystemProgram = 22 => "the system program account is not the system program",
    InvalidPolicyRules = 23 => "policy rules are out of range",
    NoOpWrite = 24 => "a write's new bytes equal its old bytes",
    InvalidPageProof = 25 => "a page's Merkle proof does not lead to the snapshot's page root",
    InvalidRegionProof = 26 => "a region's Merkle proof does not lead to the snapshot's region root",
    SnapshotRootMismatch = 27 => "the plan's snapshot root is not the hash of the proven sub-roots",
    MissingPageProof = 28 => "a write touches a page the evidence does not prove",
    OldBytesMismatch = 29 => "a write's old bytes differ from the snapshot's bytes at that address",
    MissingRegionProof = 30 => "every region of the table needs exactly one proof",
    UnsortedPages = 31 => "page proofs are not page-aligned and in ascending order",
    PlanHashMismatch = 32 => "the uploaded plan does not hash to the plan hash given",
    PlanAlreadyAttested = 33 => "this plan is already attested for this target",
    BufferOutOfBounds = 34 => "buffer write lies outside the buffer",
    SignerNotAllowed = 35 => "signer is neither the policy authority nor an allowed host signer",
    TooManySigners = 36 => "a policy holds at most 4 host signers",
    AttestationRevoked = 37 => "the attestation was revoked",
    AttestationNotFound = 38 => "the attestation account does not match the target chain and sequence",
    ReceiptAlreadyRecorded = 39 => "an apply receipt is already recorded for this attestation",
    WriteOutsideAllowedRanges = 40 => "write is not inside any address range the policy allows (relative to a symbol)",
    MissingSymbolProof = 41 => "a symbol the policy's rules name has no proof in the evidence",
    InvalidSymbolProof = 42 => "a symbol's Merkle proof does not lead to the snapshot's symbol root, or proofs are not in ascending key order",
    PartialFieldWrite = 43 => "a write covers only part of a typed field",
    FieldValueOutOfBounds = 44 => "a typed field's new value is outside the policy's bounds",
    PointerTargetUnreadable = 45 => "a pointer field's new value does not point into a readable region of the plan's proven regions",
    TooManySymbolRules = 46 => "a policy holds at most 8 symbol rules",
    PolicyClosed = 47 => "the policy is closed",
    AttestationBlocked = 48 => "the attestation was made before its policy was last closed",
    ReceiptNotBySigner = 49 => "only the attestation's signer or the policy authority may record its receipt",
    UnsupportedVersion = 50 => "the account's layout version is not one this program reads",
    NotEnoughWitnesses = 51 => "the plan's snapshot root is witnessed by fewer of the policy's witnesses than it requires",
    WitnessNotInPolicy = 52 => "a witnessed snapshot was recorded by a key the policy does not name as a witness",
    DuplicateWitness = 53 => "the same witness is cited twice",
    WitnessedRootMismatch = 54 => "a witnessed snapshot names another target or snapshot root than the plan",
    StaleSnapshot = 55 => "the witnessed snapshot is older than the policy's max_snapshot_age",
    InvalidWitnessSet = 56 => "policy witnesses: 1 to 4 distinct keys that are neither the authority nor a host signer, a threshold from 1 to their number, and a max_snapshot_age of at least 1 slot",
    ModelHashMismatch = 57 => "the plan was solved with other MiniZinc models than the policy pins (model_hash)",
    RelocationNotAllowed = 58 => "the policy allows no relocations (its max_moves is 0)",
    PlanTooManyMoves = 59 => "the relocation moves more objects than the policy allows",
    InvalidRelocation = 60 => "relocation slots are not ascending, disjoint and 8-byte aligned and sized, or a slot's from or to is out of range, itself, or a slot of another size",
    RelocationNotAPermutation = 61 => "the relocation is not a permutation: two objects go to one slot, or one slot's object goes nowhere",
    MovedBytesMismatch = 62 => "a moved object's new bytes are not its old bytes with every pointer to a moved object moved",
    PointerNotMoved = 63 => "a write of a relocation is neither a slot's new bytes nor an 8-byte pointer rewritten to the move of its old value",
    RelocationStreamOutOfOrder = 64 => "a relocation part is out of order: the slot table is not all appended, the last part was already checked, or the part holds a write or a slot outside its range",
    RelocationPartMismatch = 65 => "a relocation part names another target, snapshot root, models or region table than its relocation, or carries slots of its own",
    RelocationUnfinished = 66 => "the relocation's parts do not reach every slot and the end of the address space yet",
    RelocationStoreMismatch = 67 => "the relocation's stores are not the ones it was opened with, in order, sized for its slots",
    StreamedSlotTooLong = 68 => "a slot of a relocation checked in parts is longer than 512 bytes",
    SlotsNotNext = 69 => "append_slots does not start at the relocation's count of appended slots: it ran before an earlier append, or again",
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.anchor_code(), self.message())
    }
}

impl core::error::Error for VerifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, e) in VerifyError::ALL.iter().enumerate() {
            assert_eq!(e.code() as usize, i, "{} is out of order", e.name());
            assert_eq!(VerifyError::from_code(e.code()), Some(*e));
        }
        assert_eq!(VerifyError::from_code(VerifyError::ALL.len() as u32), None);
    }
}
