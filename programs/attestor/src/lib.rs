//! memzinc attestor: re-checks patch plans against a registered policy inside the sBPF VM and
//! records each accepted plan as a link in a hash-chained history per target.
//!
//! Wire format is Anchor's (see `memzinc_verifier::accounts` and `idl/attestor.json`), so
//! Anchor clients work although the program is written with pinocchio: anchor-lang cannot be
//! built for the upstream BPF target. Every rule lives in `memzinc_verifier`; this file only
//! checks accounts, creates PDAs and stores what the verifier computed.
#![no_std]

// memcpy/memset and friends for the upstream BPF target, routed to the runtime's syscalls.
#[cfg(target_arch = "bpf")]
extern crate solana_compiler_builtins;

use memzinc_verifier::accounts::{
    Attestation, Policy, TargetChain, ATTESTATION_SEED, EVENT_POLICY_INITIALIZED, IX_ATTEST, IX_INITIALIZE_POLICY,
    POLICY_SEED, TARGET_SEED,
};
use memzinc_verifier::hash::{link_hash, plan_hash, region_table_hash, LinkFields};
use memzinc_verifier::rules::check_plan;
use memzinc_verifier::wire::{AttestArgs, PolicyRules, Reader};
use memzinc_verifier::{Sha256, VerifyError};
use pinocchio::cpi::{Seed, Signer};
use pinocchio::error::ProgramError;
use pinocchio::sysvars::{clock::Clock, Sysvar};
use pinocchio::{AccountView, Address, ProgramResult};
use pinocchio_system::instructions::CreateAccount;

#[cfg(not(feature = "no-entrypoint"))]
mod entrypoint {
    pinocchio::program_entrypoint!(crate::process_instruction);
    pinocchio::no_allocator!();
    pinocchio::nostd_panic_handler!();
}

const SYSTEM_PROGRAM_ID: Address = Address::new_from_array([0; 32]);

fn fail(e: VerifyError) -> ProgramError {
    ProgramError::Custom(e.anchor_code())
}

/// SHA-256 through the runtime's syscall (off-chain builds use the `sha2` fallback).
struct SyscallSha256;

impl Sha256 for SyscallSha256 {
    fn hashv(parts: &[&[u8]]) -> [u8; 32] {
        solana_sha256_hasher::hashv(parts).to_bytes()
    }
}

/// Anchor's `emit!`: one `sol_log_data` call whose payload is discriminator + Borsh body.
fn emit(parts: &[&[u8]]) {
    #[cfg(any(target_os = "solana", target_arch = "bpf"))]
    // SAFETY: `parts` is a slice of byte slices, the layout `sol_log_data` reads; both live
    // for the duration of the call.
    unsafe {
        pinocchio::syscalls::sol_log_data(parts.as_ptr() as *const u8, parts.len() as u64)
    };
    #[cfg(not(any(target_os = "solana", target_arch = "bpf")))]
    let _ = parts;
}

pub fn process_instruction(program_id: &Address, accounts: &mut [AccountView], data: &[u8]) -> ProgramResult {
    if data.len() < 8 {
        return Err(fail(VerifyError::UnknownInstruction));
    }
    let (disc, args) = data.split_at(8);
    if disc == IX_ATTEST {
        attest(program_id, accounts, args)
    } else if disc == IX_INITIALIZE_POLICY {
        initialize_policy(program_id, accounts, args)
    } else {
        Err(fail(VerifyError::UnknownInstruction))
    }
}

fn require_signer(a: &AccountView) -> Result<(), ProgramError> {
    if a.is_signer() {
        Ok(())
    } else {
        Err(fail(VerifyError::MissingSigner))
    }
}

fn require_writable(a: &AccountView) -> Result<(), ProgramError> {
    if a.is_writable() {
        Ok(())
    } else {
        Err(fail(VerifyError::AccountNotWritable))
    }
}

fn require_system_program(a: &AccountView) -> Result<(), ProgramError> {
    if a.address() == &SYSTEM_PROGRAM_ID {
        Ok(())
    } else {
        Err(fail(VerifyError::WrongSystemProgram))
    }
}

/// A PDA about to be created must be the canonical address for `seeds` and still unused.
fn require_fresh_pda(account: &AccountView, seeds: &[&[u8]], program_id: &Address) -> Result<u8, ProgramError> {
    let (expected, bump) = Address::find_program_address(seeds, program_id);
    if account.address() != &expected {
        return Err(fail(VerifyError::InvalidPda));
    }
    if !account.is_data_empty() || !account.owned_by(&SYSTEM_PROGRAM_ID) {
        return Err(fail(VerifyError::AlreadyInitialized));
    }
    Ok(bump)
}

fn create_pda(
    payer: &AccountView,
    account: &AccountView,
    space: usize,
    program_id: &Address,
    seeds: &[Seed],
) -> ProgramResult {
    CreateAccount::with_minimum_balance(payer, account, space as u64, program_id, None)?
        .invoke_signed(&[Signer::from(seeds)])
}

/// Accounts: 0 `[writable, signer]` authority, 1 `[writable]` policy PDA `["policy", authority]`,
/// 2 system program. Args: `PolicyRules`.
fn initialize_policy(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [authority, policy, system_program, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let mut reader = Reader::new(args);
    let rules = PolicyRules::parse(&mut reader).map_err(fail)?;
    reader.finish().map_err(fail)?;
    rules.validate().map_err(fail)?;

    require_signer(authority)?;
    require_writable(authority)?;
    require_writable(policy)?;
    require_system_program(system_program)?;
    let bump = require_fresh_pda(policy, &[POLICY_SEED, authority.address().as_ref()], program_id)?;

    let bump_seed = [bump];
    create_pda(
        authority,
        policy,
        Policy::LEN,
        program_id,
        &[
            Seed::from(POLICY_SEED),
            Seed::from(authority.address().as_ref()),
            Seed::from(&bump_seed),
        ],
    )?;
    let record = Policy {
        authority: authority.address().to_bytes(),
        rules,
        bump,
    };
    let mut data = policy.try_borrow_mut()?;
    let out: &mut [u8; Policy::LEN] = (&mut data[..])
        .try_into()
        .map_err(|_| fail(VerifyError::AccountDiscriminatorMismatch))?;
    record.encode(out);
    emit(&[&EVENT_POLICY_INITIALIZED, authority.address().as_ref(), &rules.encode()]);
    Ok(())
}

/// Accounts: 0 `[writable, signer]` policy authority (pays), 1 policy, 2 `[writable]` target
/// chain PDA `["target", policy, target_id]` (created on first use), 3 `[writable]` attestation
/// PDA `["attestation", target_chain, next_seq_le]`, 4 system program. Args: `AttestArgs`.
fn attest(program_id: &Address, accounts: &mut [AccountView], args_bytes: &[u8]) -> ProgramResult {
    let [signer, policy_account, chain_account, attestation_account, system_program, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let args = AttestArgs::parse(args_bytes).map_err(fail)?;

    require_signer(signer)?;
    require_writable(signer)?;
    require_writable(chain_account)?;
    require_writable(attestation_account)?;
    require_system_program(system_program)?;

    // Only initialize_policy writes Policy-shaped data into accounts this program owns, at the
    // PDA it checked; so owner + discriminator identify a real policy.
    if !policy_account.owned_by(program_id) {
        return Err(fail(VerifyError::WrongAccountOwner));
    }
    let policy = Policy::decode(&policy_account.try_borrow()?).map_err(fail)?;
    if signer.address().as_array() != &policy.authority {
        return Err(fail(VerifyError::Unauthorized));
    }

    let totals = check_plan(&policy.rules, &args).map_err(fail)?;

    let policy_key = policy_account.address().to_bytes();
    let mut chain = if chain_account.is_data_empty() && chain_account.owned_by(&SYSTEM_PROGRAM_ID) {
        let bump = require_fresh_pda(chain_account, &[TARGET_SEED, &policy_key, args.target_id], program_id)?;
        let bump_seed = [bump];
        create_pda(
            signer,
            chain_account,
            TargetChain::LEN,
            program_id,
            &[
                Seed::from(TARGET_SEED),
                Seed::from(&policy_key),
                Seed::from(args.target_id),
                Seed::from(&bump_seed),
            ],
        )?;
        TargetChain {
            policy: policy_key,
            target_id: *args.target_id,
            next_seq: 0,
            head_hash: [0; 32],
            bump,
        }
    } else {
        if !chain_account.owned_by(program_id) {
            return Err(fail(VerifyError::WrongAccountOwner));
        }
        let chain = TargetChain::decode(&chain_account.try_borrow()?).map_err(fail)?;
        if chain.policy != policy_key || &chain.target_id != args.target_id {
            return Err(fail(VerifyError::PolicyMismatch));
        }
        chain
    };

    let chain_key = chain_account.address().to_bytes();
    let seq_bytes = chain.next_seq.to_le_bytes();
    let bump = require_fresh_pda(
        attestation_account,
        &[ATTESTATION_SEED, &chain_key, &seq_bytes],
        program_id,
    )?;
    let bump_seed = [bump];
    create_pda(
        signer,
        attestation_account,
        Attestation::LEN,
        program_id,
        &[
            Seed::from(ATTESTATION_SEED),
            Seed::from(&chain_key),
            Seed::from(&seq_bytes),
            Seed::from(&bump_seed),
        ],
    )?;

    let slot = Clock::get()?.slot;
    let signer_key = signer.address().to_bytes();
    let plan = plan_hash::<SyscallSha256>(args_bytes);
    let regions = region_table_hash::<SyscallSha256>(args.regions_encoded);
    let hash = link_hash::<SyscallSha256>(&LinkFields {
        prev_hash: &chain.head_hash,
        seq: chain.next_seq,
        policy: &policy_key,
        target_id: args.target_id,
        signer: &signer_key,
        slot,
        plan_hash: &plan,
        snapshot_root: args.snapshot_root,
        region_table_hash: &regions,
    });
    let record = Attestation {
        target_id: *args.target_id,
        policy: policy_key,
        signer: signer_key,
        seq: chain.next_seq,
        slot,
        snapshot_root: *args.snapshot_root,
        region_table_hash: regions,
        plan_hash: plan,
        prev_hash: chain.head_hash,
        hash,
        write_count: totals.writes,
        byte_count: totals.bytes,
        bump,
    };
    {
        let mut data = attestation_account.try_borrow_mut()?;
        let out: &mut [u8; Attestation::LEN] = (&mut data[..])
            .try_into()
            .map_err(|_| fail(VerifyError::AccountDiscriminatorMismatch))?;
        record.encode(out);
    }

    chain.next_seq += 1;
    chain.head_hash = hash;
    {
        let mut data = chain_account.try_borrow_mut()?;
        let out: &mut [u8; TargetChain::LEN] = (&mut data[..])
            .try_into()
            .map_err(|_| fail(VerifyError::AccountDiscriminatorMismatch))?;
        chain.encode(out);
    }

    let mut event = [0u8; 8 + Attestation::BODY_LEN];
    record.encode_event(&mut event);
    emit(&[&event]);
    Ok(())
}
