//! memzinc's host library. The `memzinc` binary is a thin CLI over these modules, one per stage:
//!
//! - [`process`], [`capture`], [`snapshot`], [`elfcore`]: introspect — freeze, map, registers, symbols, pages,
//!   Merkle root, written as one ELF core file gdb opens
//! - [`selfsnap`]: a cooperating program snapshots itself (a helper it spawns seizes it)
//! - [`track`]: incremental tracking — userfaultfd write-protect in the target, PAGEMAP_SCAN
//! - [`symbols`]: every mapped module's symbols at runtime addresses
//! - [`types`]: DWARF types and layouts of globals, as target specs
//! - [`registry`]: objects a target describes itself with `memzinc-describe`
//! - [`reason`]: reason — MiniZinc data, the real `minizinc`, solution to patch plan
//! - [`check`]: invariants of a snapshot (pointers, bools, enums, W^X, specs), from DWARF
//! - [`heap`]: heap repair that scales — counts per class to cbc, expanded into writes
//! - [`invariants`]: user invariants from `models/targets/<name>.mzn`, judged and repaired
//! - [`layout`]: struct field orders that waste least space, decided by MiniZinc
//! - [`solver`], [`fzn`]: the solver runner (Gecode, or linear FlatZinc → LP → cbc), limits,
//!   cancellation, statistics, and the FlatZinc checker every cbc answer passes
//! - [`chain`], [`localnet`]: attest — the attestor over JSON-RPC, an embedded localnet
//! - [`tables`], [`interop`]: every Parquet table defined once; a snapshot exported as tables
//!   and imported back byte for byte; [`records`]: plans and attestations as protobuf; [`hub`]: the same tables as a Hugging Face dataset
//! - [`policy`]: a policy's symbol rules (ranges, typed fields, pointers) as operators write them
//! - [`apply`]: apply — compare-and-swap under ptrace, rollback, resume
//! - [`checkpoint`], [`restore`]: a snapshot plus restore state; the process recreated with
//!   its PID by syscall injection, optionally with an attested plan applied to the image
//! - [`watch`]: the loop — snapshot, check, plan, attest, apply, every period
//!
//! Plans, rules and hashes come from `memzinc-verifier`, the code the on-chain program runs.

#[cfg(feature = "chain")]
pub mod apply;
pub mod capture;
#[cfg(feature = "chain")]
pub mod chain;
pub mod check;
pub mod checkpoint;
#[cfg(feature = "chain")]
pub mod demo;
pub mod elfcore;
pub mod error;
pub mod fdstate;
pub mod fsutil;
pub mod fzn;
pub mod heap;
#[cfg(feature = "chain")]
pub mod hub;
#[cfg(feature = "chain")]
pub mod instructions;
#[cfg(feature = "chain")]
pub mod interop;
pub mod invariants;
pub mod layout;
#[cfg(feature = "chain")]
pub mod localnet;
pub mod policy;
pub mod process;
pub mod reason;
#[cfg(feature = "chain")]
pub mod records;
pub mod registry;
#[cfg(feature = "chain")]
pub mod replay;
#[cfg(feature = "chain")]
pub mod report;
#[cfg(feature = "chain")]
pub mod restore;
pub mod selfsnap;
pub mod snapshot;
pub mod solver;
pub mod symbols;
#[cfg(feature = "chain")]
pub mod tables;
pub mod track;
pub mod types;
#[cfg(feature = "chain")]
pub mod watch;

pub use error::{Error, Result};

/// SHA-256 for the verifier's hashing trait, via the `sha2` crate.
pub struct Sha2;

impl memzinc_verifier::Sha256 for Sha2 {
    fn hashv(parts: &[&[u8]]) -> [u8; 32] {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }
}

/// Where the repository's files are when running from a checkout (models, program, keypair).
/// `MEMZINC_ROOT` overrides it for an installed binary.
pub fn repo_root() -> std::path::PathBuf {
    std::env::var_os("MEMZINC_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}
