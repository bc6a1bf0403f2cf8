//! memzinc's core: a live Linux process turned into a self-describing core dump, reasoned
//! about with MiniZinc, and changed only by plans — one folder per stage, each depending only
//! on the ones before it (tests/tests/layering.rs keeps it so):
//!
//! - [`base`]: the one error type, atomic files, protobuf types, hashing, the memory trait
//! - [`introspect`] (stage 1): freeze, map, registers, fds, memory I/O, the syscall injector,
//!   symbols, DWARF types, a target's registry
//! - [`describe`] (stage 2): the snapshot as one ELF core gdb opens — pages, leaves, Merkle
//!   root, protobuf metadata — opened and checked again; incremental tracking
//! - [`reason`] (stage 3): findings, target specs, user rules, the exported heap, the solver
//!   runner; one plan type and one entry point to planning
//! - [`apply`] (stage 5): compare-and-swap of a plan's writes, rollback
//! - [`checkpoint`]: a snapshot plus restore state, and the process restored from it
//!
//! Stage 4 (attest: the on-chain attestor's client) lives in the `memzinc-cli` crate, with the
//! interop formats and the CLI: this crate has no Solana stack and no HTTP client. Plans,
//! rules and hashes come from `memzinc-verifier`, the code the on-chain program runs.

pub mod apply;
pub mod base;
pub mod checkpoint;
pub mod describe;
pub mod introspect;
pub mod reason;

pub use base::{Error, Result};
