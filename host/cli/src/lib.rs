//! The libraries the `memzinc` command glues onto memzinc's core (crate `memzinc`):
//!
//! - [`attest`] (stage 4): the on-chain attestor's client — instructions, RPC, localnet,
//!   replay in the sBPF VM, policies' symbol rules, the gate before any change
//! - [`interop`]: Parquet tables, protobuf records, Hugging Face datasets, reports
//! - [`watch`]: the loop — snapshot, check, plan, attest, apply, every period
//! - [`demo`]: the whole story on an embedded localnet
//!
//! The binary (`src/main.rs`, one file per command under `src/commands/`) parses arguments,
//! calls these and prints; nothing below it prints or exits.

pub mod attest;
pub mod demo;
pub mod interop;
pub mod watch;
