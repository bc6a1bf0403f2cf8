//! Stage 4, attest: the client of the on-chain attestor. Every instruction and address of the
//! program (`instructions`), the JSON-RPC client that uploads a plan with its evidence,
//! attests, revokes, records receipts and audits the chain (`Client`), an embedded surfpool
//! localnet, decisions replayed in the sBPF VM, a policy's symbol rules as operators write
//! them, and the gate before any change: an unrevoked attestation of exactly this plan.
//!
//! Boundary: depends on memzinc's core and the verifier; the rules themselves are the
//! verifier's (one implementation for program and host), never restated here.

mod chain;
mod flights;
mod gate;
mod localnet;
mod parts;
mod policy;
mod program;
mod replay;

pub use chain::{
    attestation_address, attestor_program_id, default_cli_config_path, plan_marker_address, policy_address,
    read_cli_config, read_keypair, receipt_address, resolve_url, target_chain_address, witnessed_snapshot_address,
    write_keypair, AttestOutcome, AuditEntry, AuditReceipt, AuditReport, AuditWitness, CliConfig, Client,
    ATTESTOR_PROGRAM_ID,
};
pub use gate::{
    apply_attested, attestation_of, restore_attested, restore_attested_lazy, restore_tree_attested, AttestedApply,
    AttestedRestore, AttestedTreeRestore,
};
pub use localnet::Localnet;
pub use policy::{evidence_under, parse_allow, parse_field, parse_pointer, show_rules, symbol_keys, ShownRule};
pub use replay::{
    check_program, program_from_programdata, replay_history, ProgramCheck, ReplayOutcome, ReplayReport, Replayer,
};

/// Every instruction of the attestor program, and every address it derives.
pub mod instructions {
    pub use super::program::*;
}
