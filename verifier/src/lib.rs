//! memzinc-verifier: the one definition of a patch plan, a region table, a policy, the
//! rules a plan must satisfy, the Merkle proof format and the on-chain account layouts.
//!
//! The on-chain attestor and the host both link this crate, so a plan the host pre-checks is
//! judged by exactly the code the program runs inside the sBPF VM. The check path
//! (`wire`, `rules`, `merkle::verify_proof`, `accounts` and `instruction` decoding) is `no_std` and never
//! allocates; the `std` feature adds owned builders the host uses to produce those bytes.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod accounts;
pub mod error;
pub mod hash;
pub mod instruction;
pub mod merkle;
pub mod relocation_stream;
pub mod rules;
pub mod wire;

#[cfg(feature = "std")]
pub mod plan;

pub use error::VerifyError;
pub use hash::Sha256;

/// SHA-256 through the `sha2` crate, for this crate's own tests.
#[cfg(test)]
pub(crate) mod test_hash {
    pub struct Sha2;

    impl crate::Sha256 for Sha2 {
        fn hashv(parts: &[&[u8]]) -> crate::hash::Hash {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().into()
        }
    }
}
