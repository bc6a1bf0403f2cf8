//! memzinc attestor: re-checks patch plans against a registered policy inside the sBPF VM and
//! records each accepted plan as a link in a hash-chained history per target.
//!
//! Wire format is Anchor's (see `memzinc_verifier::accounts` and `idl/attestor.json`), so
//! Anchor clients work although the program is written with pinocchio: anchor-lang cannot be
//! built for the upstream BPF target. Every rule lives in `memzinc_verifier`; this file only
//! checks accounts, creates PDAs and stores what the verifier computed.
//!
//! Account checks, the same everywhere: accounts the program writes are either PDAs it derives
//! itself (canonical bump, `find_program_address`) or accounts it owns whose discriminator and
//! stored keys it verifies; signers are checked before anything is read; the only CPI target is
//! the system program, whose address is checked; the clock comes from the syscall, never from a
//! passed account. Every PDA is created so that lamports someone sent to its address first cannot
//! block it (`create_pda`). Accounts the program only reads as evidence (witnessed-snapshot
//! records) are accepted by owner and discriminator: only this program writes them, at the PDA
//! of their own fields. Each instruction says who may call it and what it proves.
#![no_std]

// memcpy/memset and friends for the upstream BPF target, routed to the runtime's syscalls.
#[cfg(target_arch = "bpf")]
extern crate solana_compiler_builtins;

use memzinc_verifier::accounts::{
    Attestation, BufferHeader, PlanMarker, Policy, Receipt, Relocation, RelocationStore, TargetChain, WitnessTally,
    WitnessedSnapshot, ATTESTATION_SEED, EVENT_ATTESTATION_REVOKED, EVENT_POLICY_INITIALIZED, EVENT_POLICY_UPDATED,
    MAX_STORES, PLAN_SEED, POLICY_SEED, RECEIPT_SEED, SNAPSHOT_SEED, TARGET_SEED,
};
use memzinc_verifier::hash::{link_hash, LinkFields};
use memzinc_verifier::instruction::{
    parse_append_slots, parse_no_args, parse_policy_config, CheckPartArgs, Ix, OpenBufferArgs, OpenRelocationArgs,
    PlanHashArgs, RecordAppliedArgs, RevokeArgs, WitnessSnapshotArgs, WriteBufferArgs,
};
use memzinc_verifier::relocation_stream::{self, Records, StreamState, RECORD_LEN};
use memzinc_verifier::rules::{verify_submission, Verdict};
use memzinc_verifier::wire::POLICY_RULES_LEN;
use memzinc_verifier::{Sha256, VerifyError};
use pinocchio::cpi::{Seed, Signer};
use pinocchio::error::ProgramError;
use pinocchio::sysvars::{clock::Clock, rent::Rent, Sysvar};
use pinocchio::{AccountView, Address, ProgramResult};
use pinocchio_system::instructions::{Allocate, Assign, CreateAccount, Transfer};

#[cfg(not(feature = "no-entrypoint"))]
mod entrypoint {
    pinocchio::program_entrypoint!(crate::process_instruction);
    pinocchio::no_allocator!();
    pinocchio::nostd_panic_handler!();
}

const SYSTEM_PROGRAM_ID: Address = Address::new_from_array([0; 32]);

/// Largest submission a buffer may hold (64 pages of evidence and then some).
pub use memzinc_verifier::instruction::MAX_BUFFER_LEN;

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

/// Anchor's `emit!`: one `sol_log_data` call with a single slice, discriminator + Borsh body. The
/// runtime base64-encodes each slice as its own field of the `Program data:` line, and Anchor
/// clients decode the line as one event, so the body must not be split across slices.
fn emit(event: &[u8]) {
    #[cfg(any(target_os = "solana", target_arch = "bpf"))]
    // SAFETY: a slice of one byte slice is the layout `sol_log_data` reads; both live for the
    // duration of the call.
    unsafe {
        let parts: [&[u8]; 1] = [event];
        pinocchio::syscalls::sol_log_data(parts.as_ptr() as *const u8, 1)
    };
    #[cfg(not(any(target_os = "solana", target_arch = "bpf")))]
    let _ = event;
}

/// Concatenates fields whose sizes add up to `N` (an event's fixed size).
fn concat<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    for part in parts {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, N);
    out
}

/// Anchor's error log line (`AnchorError occurred. Error Code: <name>. Error Number: <code>.
/// Error Message: <msg>.`), from which Anchor clients (`AnchorError.parse`) report the IDL's
/// error name; without it they only see `custom program error: 0x…`.
fn log_anchor_error(code: u32) {
    let Some(error) = code
        .checked_sub(memzinc_verifier::error::ANCHOR_ERROR_OFFSET)
        .and_then(VerifyError::from_code)
    else {
        return;
    };
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut n = code;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut line = [0u8; 256];
    let mut len = 0;
    for part in [
        b"AnchorError occurred. Error Code: ".as_slice(),
        error.name().as_bytes(),
        b". Error Number: ",
        &digits[start..],
        b". Error Message: ",
        error.message().as_bytes(),
        b".",
    ] {
        let take = part.len().min(line.len() - len);
        line[len..len + take].copy_from_slice(&part[..take]);
        len += take;
    }
    #[cfg(any(target_os = "solana", target_arch = "bpf"))]
    // SAFETY: `line[..len]` is initialized ASCII that lives for the duration of the call.
    unsafe {
        pinocchio::syscalls::sol_log_(line.as_ptr(), len as u64)
    };
    #[cfg(not(any(target_os = "solana", target_arch = "bpf")))]
    let _ = &line[..len];
}

pub fn process_instruction(program_id: &Address, accounts: &mut [AccountView], data: &[u8]) -> ProgramResult {
    let result = dispatch(program_id, accounts, data);
    if let Err(ProgramError::Custom(code)) = result {
        log_anchor_error(code);
    }
    result
}

fn dispatch(program_id: &Address, accounts: &mut [AccountView], data: &[u8]) -> ProgramResult {
    // Instruction data is decoded by `memzinc_verifier::instruction` only (fuzzed there).
    // Every handler is `#[inline(never)]`: inlined into one function, their locals would share
    // one frame and exceed the 4 KiB sBPF stack frame.
    let (ix, args) = Ix::split(data).map_err(fail)?;
    match ix {
        Ix::Attest => attest(program_id, accounts, args),
        Ix::WriteBuffer => write_buffer(program_id, accounts, args),
        Ix::OpenBuffer => open_buffer(program_id, accounts, args),
        Ix::CloseBuffer => close_buffer(program_id, accounts, args),
        Ix::RecordApplied => record_applied(program_id, accounts, args),
        Ix::Revoke => revoke(program_id, accounts, args),
        Ix::InitializePolicy => initialize_policy(program_id, accounts, args),
        Ix::UpdatePolicy => update_policy(program_id, accounts, args),
        Ix::ClosePolicy => close_policy(program_id, accounts, args),
        Ix::WitnessSnapshot => witness_snapshot(program_id, accounts, args),
        Ix::OpenRelocation => open_relocation(program_id, accounts, args),
        Ix::AppendSlots => append_slots(program_id, accounts, args),
        Ix::CheckRelocationPart => check_relocation_part(program_id, accounts, args),
        Ix::FinishRelocation => finish_relocation(program_id, accounts, args),
        Ix::CloseRelocation => close_relocation(program_id, accounts, args),
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

fn require_owned(a: &AccountView, program_id: &Address) -> Result<(), ProgramError> {
    if a.owned_by(program_id) {
        Ok(())
    } else {
        Err(fail(VerifyError::WrongAccountOwner))
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

/// Creates the PDA `account` (signer seeds `seeds`): `space` bytes, owned by this program,
/// rent-exempt, paid by `payer`. Every PDA address is predictable, and `CreateAccount` refuses an
/// address that already holds lamports, so anyone could block one for the price of its rent;
/// such an address is topped up to the rent minimum, then allocated and assigned instead. Only
/// the PDA's signature, which only this program can give, may allocate or assign it.
fn create_pda(
    payer: &AccountView,
    account: &AccountView,
    space: usize,
    program_id: &Address,
    seeds: &[Seed],
) -> ProgramResult {
    if account.lamports() == 0 {
        return CreateAccount::with_minimum_balance(payer, account, space as u64, program_id, None)?
            .invoke_signed(&[Signer::from(seeds)]);
    }
    let shortfall = Rent::get()?
        .try_minimum_balance(space)?
        .saturating_sub(account.lamports());
    if shortfall > 0 {
        Transfer {
            from: payer,
            to: account,
            lamports: shortfall,
        }
        .invoke()?;
    }
    Allocate {
        account,
        space: space as u64,
    }
    .invoke_signed(&[Signer::from(seeds)])?;
    Assign {
        account,
        owner: program_id,
    }
    .invoke_signed(&[Signer::from(seeds)])
}

/// Closes a program-owned account: lamports to `to`, then data and owner cleared, so it cannot
/// be revived as the same account type within the transaction.
fn close_into(account: &mut AccountView, to: &mut AccountView) -> ProgramResult {
    let lamports = account.lamports();
    to.set_lamports(
        to.lamports()
            .checked_add(lamports)
            .ok_or(ProgramError::ArithmeticOverflow)?,
    );
    account.set_lamports(0);
    account.close()
}

fn write_fixed<const N: usize>(account: &mut AccountView, encode: impl FnOnce(&mut [u8; N])) -> ProgramResult {
    let mut data = account.try_borrow_mut()?;
    let out: &mut [u8; N] = (&mut data[..])
        .try_into()
        .map_err(|_| fail(VerifyError::AccountDiscriminatorMismatch))?;
    encode(out);
    Ok(())
}

/// Loads a policy: owned by this program and Policy-shaped. Only `initialize_policy` writes
/// Policy data into accounts this program owns, at the PDA it checked.
fn load_policy(account: &AccountView, program_id: &Address) -> Result<Policy, ProgramError> {
    require_owned(account, program_id)?;
    Policy::decode(&account.try_borrow()?).map_err(fail)
}

fn load_chain(account: &AccountView, program_id: &Address, policy: &Address) -> Result<TargetChain, ProgramError> {
    require_owned(account, program_id)?;
    let chain = TargetChain::decode(&account.try_borrow()?).map_err(fail)?;
    if &chain.policy != policy.as_array() {
        return Err(fail(VerifyError::PolicyMismatch));
    }
    Ok(chain)
}

/// The attestation number `seq` of `chain`: owned, Attestation-shaped, same policy, target, seq.
fn load_attestation(
    account: &AccountView,
    program_id: &Address,
    policy: &Address,
    chain: &TargetChain,
    seq: u64,
) -> Result<Attestation, ProgramError> {
    require_owned(account, program_id)?;
    let a = Attestation::decode(&account.try_borrow()?).map_err(fail)?;
    if &a.policy != policy.as_array() || a.target_id != chain.target_id || a.seq != seq || seq >= chain.next_seq {
        return Err(fail(VerifyError::AttestationNotFound));
    }
    Ok(a)
}

/// Accounts: 0 `[writable, signer]` authority (pays), 1 `[writable]` policy PDA
/// `["policy", authority]`, 2 system program. Args: `PolicyConfig`.
/// Who: the authority, for its own policy only (the PDA is seeded by its key).
/// Proves: the policy is new at revision 0, or, if it was closed, reopened at the revision after
/// its last one (a closed policy's account stays, so revisions are never reused).
#[inline(never)]
fn initialize_policy(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [authority, policy, system_program, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    require_signer(authority)?;
    require_writable(authority)?;
    require_writable(policy)?;
    require_system_program(system_program)?;
    let config = parse_policy_config(args).map_err(fail)?;
    config
        .validate_witnesses(authority.address().as_array())
        .map_err(fail)?;
    let config_hash = config.hash::<SyscallSha256>();

    let record = if policy.owned_by(program_id) {
        // Reopening: only this authority's own closed policy.
        let (expected, _) = Address::find_program_address(&[POLICY_SEED, authority.address().as_ref()], program_id);
        if policy.address() != &expected {
            return Err(fail(VerifyError::InvalidPda));
        }
        let old = load_policy(policy, program_id)?;
        if &old.authority != authority.address().as_array() {
            return Err(fail(VerifyError::Unauthorized));
        }
        if !old.closed {
            return Err(fail(VerifyError::AlreadyInitialized));
        }
        let revision = old.revision.checked_add(1).ok_or(ProgramError::ArithmeticOverflow)?;
        Policy {
            config,
            revision,
            opened_revision: revision,
            closed: false,
            config_hash,
            ..old
        }
    } else {
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
        Policy {
            authority: authority.address().to_bytes(),
            config,
            revision: 0,
            bump,
            opened_revision: 0,
            closed: false,
            config_hash,
        }
    };
    write_fixed(policy, |out| record.encode(out))?;
    emit(&concat::<{ 8 + 32 + POLICY_RULES_LEN }>(&[
        &EVENT_POLICY_INITIALIZED,
        authority.address().as_ref(),
        &config.rules.encode(),
    ]));
    Ok(())
}

/// Accounts: 0 `[signer]` authority, 1 `[writable]` policy. Args: `PolicyConfig`.
/// Who: the policy's authority. Proves: the policy is open; its rules, host signers and hashes
/// are replaced (rotating signers is an update) and its revision bumped.
#[inline(never)]
fn update_policy(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [authority, policy_account, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    require_signer(authority)?;
    require_writable(policy_account)?;
    let config = parse_policy_config(args).map_err(fail)?;
    let mut policy = load_policy(policy_account, program_id)?;
    if authority.address().as_array() != &policy.authority {
        return Err(fail(VerifyError::Unauthorized));
    }
    if policy.closed {
        return Err(fail(VerifyError::PolicyClosed));
    }
    config.validate_witnesses(&policy.authority).map_err(fail)?;
    policy.config = config;
    policy.config_hash = config.hash::<SyscallSha256>();
    policy.revision = policy.revision.checked_add(1).ok_or(ProgramError::ArithmeticOverflow)?;
    write_fixed(policy_account, |out| policy.encode(out))?;
    emit(&concat::<{ 8 + 32 + 4 }>(&[
        &EVENT_POLICY_UPDATED,
        authority.address().as_ref(),
        &policy.revision.to_le_bytes(),
    ]));
    Ok(())
}

/// Accounts: 0 `[writable, signer]` authority, 1 `[writable]` policy.
/// Who: the policy's authority. Proves: the policy is closed: nothing more is attested under
/// it, and its outstanding attestations can take no receipt (and the host's gate refuses to
/// apply them), even after a reopening. The account (and its rent) stays, so the revision
/// counter survives: a reopened policy never reuses a revision.
#[inline(never)]
fn close_policy(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [authority, policy_account, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    parse_no_args(args).map_err(fail)?;
    require_signer(authority)?;
    require_writable(authority)?;
    require_writable(policy_account)?;
    let mut policy = load_policy(policy_account, program_id)?;
    if authority.address().as_array() != &policy.authority {
        return Err(fail(VerifyError::Unauthorized));
    }
    if policy.closed {
        return Err(fail(VerifyError::PolicyClosed));
    }
    policy.closed = true;
    write_fixed(policy_account, |out| policy.encode(out))
}

/// Accounts: 0 `[signer]` uploader, 1 `[writable, signer]` buffer: an account the uploader
/// created in the same transaction with the system program (owner: this program, zeroed, sized
/// `BufferHeader::LEN + len`). Programs may only allocate 10 KiB per instruction through a CPI,
/// submissions are larger, so the buffer is allocated at the top level, as the upgradeable
/// loader's buffers are. Args: `plan_hash: [u8;32], len: u32`.
/// Who: whoever holds the buffer's key (the key that created it): without its signature anyone
/// could stamp someone else's freshly allocated buffer as theirs and close it for its rent.
/// Proves: the buffer belongs to the uploader and holds room for exactly `len` bytes.
#[inline(never)]
fn open_buffer(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [uploader, buffer, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let OpenBufferArgs { plan_hash, len } = OpenBufferArgs::parse(args).map_err(fail)?;
    require_signer(uploader)?;
    require_signer(buffer)?;
    require_writable(buffer)?;
    require_owned(buffer, program_id)?;
    if buffer.data_len() != BufferHeader::LEN + len as usize {
        return Err(fail(VerifyError::BufferOutOfBounds));
    }
    let header = BufferHeader {
        authority: uploader.address().to_bytes(),
        plan_hash,
        version: BufferHeader::VERSION,
        len,
    };
    let mut data = buffer.try_borrow_mut()?;
    // A zero discriminator is the only state a freshly allocated account can be in.
    if data[..8] != [0u8; 8] {
        return Err(fail(VerifyError::AlreadyInitialized));
    }
    let out: &mut [u8; BufferHeader::LEN] = (&mut data[..BufferHeader::LEN])
        .try_into()
        .map_err(|_| fail(VerifyError::AccountDiscriminatorMismatch))?;
    header.encode(out);
    Ok(())
}

/// A buffer this program owns, belonging to `uploader` and holding `plan_hash`.
fn check_buffer(
    buffer: &AccountView,
    program_id: &Address,
    uploader: &AccountView,
    plan_hash: &[u8; 32],
) -> ProgramResult {
    require_owned(buffer, program_id)?;
    let data = buffer.try_borrow()?;
    let (header, _) = BufferHeader::decode(&data).map_err(fail)?;
    if &header.authority != uploader.address().as_array() {
        return Err(fail(VerifyError::Unauthorized));
    }
    if &header.plan_hash != plan_hash {
        return Err(fail(VerifyError::PlanHashMismatch));
    }
    Ok(())
}

/// Accounts: 0 `[signer]` uploader, 1 `[writable]` buffer.
/// Args: `plan_hash: [u8;32], offset: u32, data: bytes`.
/// Who: the uploader who opened the buffer. Proves: nothing; the bytes are judged at `attest`.
#[inline(never)]
fn write_buffer(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [uploader, buffer, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let WriteBufferArgs {
        plan_hash,
        offset,
        data: bytes,
    } = WriteBufferArgs::parse(args).map_err(fail)?;
    let offset = offset as usize;
    require_signer(uploader)?;
    require_writable(buffer)?;
    check_buffer(buffer, program_id, uploader, plan_hash)?;
    let mut data = buffer.try_borrow_mut()?;
    let body = &mut data[BufferHeader::LEN..];
    let end = offset
        .checked_add(bytes.len())
        .ok_or(fail(VerifyError::BufferOutOfBounds))?;
    if end > body.len() {
        return Err(fail(VerifyError::BufferOutOfBounds));
    }
    body[offset..end].copy_from_slice(bytes);
    Ok(())
}

/// Accounts: 0 `[writable, signer]` uploader, 1 `[writable]` buffer. Args: `plan_hash`.
/// Who: the uploader who opened the buffer. Proves: nothing; the buffer is closed and its rent
/// goes back to the uploader.
#[inline(never)]
fn close_buffer(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [uploader, buffer, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let PlanHashArgs { plan_hash } = PlanHashArgs::parse(args).map_err(fail)?;
    require_signer(uploader)?;
    require_writable(uploader)?;
    require_writable(buffer)?;
    check_buffer(buffer, program_id, uploader, &plan_hash)?;
    close_into(buffer, uploader)
}

/// Accounts: 0 `[writable, signer]` witness, 1 `[writable, signer]` payer, 2 `[writable]`
/// witnessed-snapshot PDA `["snapshot", witness, target_id, snapshot_root]`, 3 system program.
/// Args: `target_id: [u8;32], snapshot_root: [u8;32]`.
/// Who: any key (the payer may be another); the record counts only under policies that name the
/// key as a witness. Proves: `witness` signed that `target_id` had `snapshot_root` at this slot
/// (recording the same root again refreshes the slot).
#[inline(never)]
fn witness_snapshot(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [witness, payer, record_account, system_program, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let WitnessSnapshotArgs {
        target_id,
        snapshot_root,
    } = WitnessSnapshotArgs::parse(args).map_err(fail)?;
    require_signer(witness)?;
    require_signer(payer)?;
    require_writable(payer)?;
    require_writable(record_account)?;
    require_system_program(system_program)?;
    let slot = Clock::get()?.slot;
    let witness_key = witness.address().to_bytes();
    let record = if record_account.owned_by(program_id) {
        // Only this instruction writes WitnessedSnapshot data, at the PDA of its own fields.
        let old = WitnessedSnapshot::decode(&record_account.try_borrow()?).map_err(fail)?;
        if old.witness != witness_key || old.target_id != target_id || old.snapshot_root != snapshot_root {
            return Err(fail(VerifyError::InvalidPda));
        }
        WitnessedSnapshot { slot, ..old }
    } else {
        let bump = require_fresh_pda(
            record_account,
            &[SNAPSHOT_SEED, &witness_key, &target_id, &snapshot_root],
            program_id,
        )?;
        let bump_seed = [bump];
        create_pda(
            payer,
            record_account,
            WitnessedSnapshot::LEN,
            program_id,
            &[
                Seed::from(SNAPSHOT_SEED),
                Seed::from(&witness_key),
                Seed::from(&target_id),
                Seed::from(&snapshot_root),
                Seed::from(&bump_seed),
            ],
        )?;
        WitnessedSnapshot {
            witness: witness_key,
            target_id,
            snapshot_root,
            slot,
            bump,
        }
    };
    write_fixed(record_account, |out| record.encode(out))?;
    let mut event = [0u8; 8 + WitnessedSnapshot::BODY_LEN];
    record.encode_event(&mut event);
    emit(&event);
    Ok(())
}

/// The plan's snapshot root is witnessed: `records` are witnessed-snapshot accounts (owned by
/// this program, of that type) that `WitnessTally` counts under `policy`; the tally (who
/// counted, each record's slot) goes into the attestation. Kept out of `attest`'s frame, which
/// is close to the 4 KiB sBPF stack limit.
#[inline(never)]
fn check_witnesses(
    program_id: &Address,
    records: &[AccountView],
    policy: &Policy,
    target_id: &[u8; 32],
    snapshot_root: &[u8; 32],
    slot: u64,
) -> Result<WitnessTally, ProgramError> {
    let mut tally = WitnessTally::default();
    for account in records {
        require_owned(account, program_id)?;
        let record = WitnessedSnapshot::decode(&account.try_borrow()?).map_err(fail)?;
        tally
            .add(&policy.config, &record, target_id, snapshot_root, slot)
            .map_err(fail)?;
    }
    tally.finish(&policy.config).map_err(fail)?;
    Ok(tally)
}

/// Accounts: 0 `[writable, signer]` host signer (authority or allowed signer; pays), 1 policy,
/// 2 `[writable]` target chain PDA `["target", policy, target_id]` (created on first use),
/// 3 `[writable]` attestation PDA `["attestation", target_chain, next_seq_le]`,
/// 4 `[writable]` plan marker PDA `["plan", target_chain, plan_hash]`,
/// 5 `[writable]` buffer (opened by the signer) holding `PlanCore || Evidence` (closed afterwards, rent to the signer),
/// 6 system program, 7.. witnessed-snapshot records of the plan's snapshot root.
/// Args: `plan_hash: [u8;32]`.
/// Who: the policy's authority or one of its host signers, with a buffer it opened itself.
/// Proves: the policy is open; the plan names the MiniZinc models the policy pins (when it pins
/// any: `PolicyConfig::check_model_hash`); the plan's snapshot root was recorded for its target by at least
/// the policy's threshold of distinct policy witnesses within `max_snapshot_age` slots (so the
/// region and symbol trees the evidence proves against are the witnessed process's, not the
/// planner's choice); the plan hashes to `plan_hash`, its evidence proves every region
/// and page against the plan's snapshot root, and it keeps every rule of the policy (a
/// relocation, only under a policy whose `max_moves` allows that many: its slots are a
/// permutation, each slot's new bytes are the moved object's with every pointer moved with it,
/// and every other write is a pointer moved: `rules::check_relocation`); the record
/// names the policy revision and configuration hash that judged it and the witnesses whose
/// records counted (with their slots), and links to the previous record of the target; the plan was never attested for this target before.
#[inline(never)]
fn attest(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, policy_account, chain_account, attestation_account, marker_account, buffer, system_program, witnesses @ ..] =
        accounts
    else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let PlanHashArgs { plan_hash } = PlanHashArgs::parse(args).map_err(fail)?;

    require_signer(signer)?;
    require_writable(signer)?;
    require_writable(chain_account)?;
    require_writable(attestation_account)?;
    require_writable(marker_account)?;
    require_writable(buffer)?;
    require_system_program(system_program)?;

    let policy = load_policy(policy_account, program_id)?;
    if policy.closed {
        return Err(fail(VerifyError::PolicyClosed));
    }
    if !policy.may_sign(signer.address().as_array()) {
        return Err(fail(VerifyError::SignerNotAllowed));
    }
    check_buffer(buffer, program_id, signer, &plan_hash)?;

    // Everything about the plan itself is the verifier's: rules, proofs, old bytes.
    let (target_id, snapshot_root, verdict) = {
        let data = buffer.try_borrow()?;
        let (_, body) = BufferHeader::decode(&data).map_err(fail)?;
        let (submission, verdict) =
            verify_submission::<SyscallSha256>(&policy.config.rules, &policy.config.symbol_rules, body)
                .map_err(fail)?;
        // Plans solved with other models than the policy pins are refused.
        policy
            .config
            .check_model_hash(submission.plan.model_hash)
            .map_err(fail)?;
        (*submission.plan.target_id, *submission.plan.snapshot_root, verdict)
    };
    if verdict.plan_hash != plan_hash {
        return Err(fail(VerifyError::PlanHashMismatch));
    }
    let accepted = Accepted {
        target_id: &target_id,
        snapshot_root: &snapshot_root,
        verdict: &verdict,
        witnessed_as_of: None,
    };
    record_plan(
        program_id,
        signer,
        policy_account,
        &policy,
        chain_account,
        attestation_account,
        marker_account,
        witnesses,
        &accepted,
    )?;
    close_into(buffer, signer)
}

/// What the verifier accepted, for `record_plan`.
struct Accepted<'a> {
    target_id: &'a [u8; 32],
    snapshot_root: &'a [u8; 32],
    verdict: &'a Verdict,
    /// The slot as of which the snapshot's witnesses are judged (None: now).
    witnessed_as_of: Option<u64>,
}

/// Records an accepted plan, the same for `attest` and `finish_relocation`: its snapshot root
/// witnessed, the target's chain created or extended, the attestation and the plan marker
/// (refusing a plan attested before) created.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn record_plan(
    program_id: &Address,
    signer: &AccountView,
    policy_account: &AccountView,
    policy: &Policy,
    chain_account: &mut AccountView,
    attestation_account: &mut AccountView,
    marker_account: &mut AccountView,
    witnesses: &[AccountView],
    accepted: &Accepted,
) -> ProgramResult {
    // The snapshot root is the witnesses' word, not the planner's: the evidence only proves
    // the plan against the trees of a root they recorded. Records are found by owner and type:
    // only `witness_snapshot` writes them, each at the PDA of its own fields.
    let slot = Clock::get()?.slot;
    let tally = check_witnesses(
        program_id,
        witnesses,
        policy,
        accepted.target_id,
        accepted.snapshot_root,
        accepted.witnessed_as_of.unwrap_or(slot),
    )?;

    let policy_key = policy_account.address().to_bytes();
    let mut chain = if chain_account.is_data_empty() && chain_account.owned_by(&SYSTEM_PROGRAM_ID) {
        let bump = require_fresh_pda(
            chain_account,
            &[TARGET_SEED, &policy_key, accepted.target_id],
            program_id,
        )?;
        let bump_seed = [bump];
        create_pda(
            signer,
            chain_account,
            TargetChain::LEN,
            program_id,
            &[
                Seed::from(TARGET_SEED),
                Seed::from(&policy_key),
                Seed::from(accepted.target_id),
                Seed::from(&bump_seed),
            ],
        )?;
        TargetChain {
            policy: policy_key,
            target_id: *accepted.target_id,
            next_seq: 0,
            head_hash: [0; 32],
            bump,
        }
    } else {
        let chain = load_chain(chain_account, program_id, policy_account.address())?;
        if &chain.target_id != accepted.target_id {
            return Err(fail(VerifyError::PolicyMismatch));
        }
        chain
    };
    let chain_key = chain_account.address().to_bytes();

    // One marker per (target, plan): a replayed plan finds it and is refused.
    let marker_seeds: [&[u8]; 3] = [PLAN_SEED, &chain_key, &accepted.verdict.plan_hash];
    let (marker_address, marker_bump) = Address::find_program_address(&marker_seeds, program_id);
    if marker_account.address() != &marker_address {
        return Err(fail(VerifyError::InvalidPda));
    }
    if !marker_account.is_data_empty() || !marker_account.owned_by(&SYSTEM_PROGRAM_ID) {
        return Err(fail(VerifyError::PlanAlreadyAttested));
    }

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
    let marker_bump_seed = [marker_bump];
    create_pda(
        signer,
        marker_account,
        PlanMarker::LEN,
        program_id,
        &[
            Seed::from(PLAN_SEED),
            Seed::from(&chain_key),
            Seed::from(&accepted.verdict.plan_hash),
            Seed::from(&marker_bump_seed),
        ],
    )?;

    let hash = record_attestation(
        attestation_account,
        &Decision {
            target_id: accepted.target_id,
            policy: &policy_key,
            signer: signer.address().as_array(),
            chain: &chain,
            slot,
            snapshot_root: accepted.snapshot_root,
            plan_hash: &accepted.verdict.plan_hash,
            verdict: accepted.verdict,
            policy_state: policy,
            tally: &tally,
            bump,
        },
    )?;
    let marker = PlanMarker {
        seq: chain.next_seq,
        bump: marker_bump,
    };
    write_fixed(marker_account, |out| marker.encode(out))?;

    chain.next_seq += 1;
    chain.head_hash = hash;
    write_fixed(chain_account, |out| chain.encode(out))?;

    Ok(())
}

/// What `attest` decided, for the record.
struct Decision<'a> {
    target_id: &'a [u8; 32],
    policy: &'a [u8; 32],
    signer: &'a [u8; 32],
    chain: &'a TargetChain,
    slot: u64,
    snapshot_root: &'a [u8; 32],
    plan_hash: &'a [u8; 32],
    verdict: &'a Verdict,
    policy_state: &'a Policy,
    tally: &'a WitnessTally,
    bump: u8,
}

/// Writes the attestation and emits the `AttestationRecorded` event; returns its link hash. In
/// a frame of its own: the record is larger than what is left of `attest`'s 4 KiB frame.
#[inline(never)]
fn record_attestation(account: &mut AccountView, d: &Decision) -> Result<[u8; 32], ProgramError> {
    let hash = link_hash::<SyscallSha256>(&LinkFields {
        prev_hash: &d.chain.head_hash,
        seq: d.chain.next_seq,
        policy: d.policy,
        target_id: d.target_id,
        signer: d.signer,
        slot: d.slot,
        plan_hash: d.plan_hash,
        snapshot_root: d.snapshot_root,
        region_table_hash: &d.verdict.region_table_hash,
        policy_revision: d.policy_state.revision,
        policy_hash: &d.policy_state.config_hash,
        witness_count: d.tally.count(),
        witnesses: &d.tally.witnesses,
        witness_slots: &d.tally.slots,
    });
    let record = Attestation {
        target_id: *d.target_id,
        policy: *d.policy,
        signer: *d.signer,
        seq: d.chain.next_seq,
        slot: d.slot,
        snapshot_root: *d.snapshot_root,
        region_table_hash: d.verdict.region_table_hash,
        plan_hash: *d.plan_hash,
        prev_hash: d.chain.head_hash,
        hash,
        write_count: d.verdict.totals.writes,
        byte_count: d.verdict.totals.bytes,
        policy_revision: d.policy_state.revision,
        policy_hash: d.policy_state.config_hash,
        witness_count: d.tally.count(),
        witnesses: d.tally.witnesses,
        witness_slots: d.tally.slots,
        revoked: false,
        bump: d.bump,
    };
    write_fixed(account, |out| record.encode(out))?;
    let mut event = [0u8; 8 + Attestation::BODY_LEN];
    record.encode_event(&mut event);
    emit(&event);
    Ok(hash)
}

/// Accounts: 0 `[signer]` policy authority, 1 policy, 2 target chain, 3 `[writable]` attestation.
/// Args: `seq: u64`. A revoked plan must not be applied; the chain itself is never rewritten.
/// Who: the policy's authority (also after closing it). Proves: attestation `seq` of the chain
/// is marked revoked, once.
#[inline(never)]
fn revoke(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [authority, policy_account, chain_account, attestation_account, ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let RevokeArgs { seq } = RevokeArgs::parse(args).map_err(fail)?;
    require_signer(authority)?;
    require_writable(attestation_account)?;
    let policy = load_policy(policy_account, program_id)?;
    if authority.address().as_array() != &policy.authority {
        return Err(fail(VerifyError::Unauthorized));
    }
    let chain = load_chain(chain_account, program_id, policy_account.address())?;
    let mut attestation = load_attestation(attestation_account, program_id, policy_account.address(), &chain, seq)?;
    if attestation.revoked {
        return Err(fail(VerifyError::AttestationRevoked));
    }
    attestation.revoked = true;
    write_fixed(attestation_account, |out| attestation.encode(out))?;
    emit(&concat::<{ 8 + 32 + 8 }>(&[
        &EVENT_ATTESTATION_REVOKED,
        attestation_account.address().as_ref(),
        &seq.to_le_bytes(),
    ]));
    Ok(())
}

/// Accounts: 0 `[writable, signer]` host signer, 1 policy, 2 target chain, 3 attestation,
/// 4 `[writable]` receipt PDA `["receipt", attestation]`, 5 system program.
/// Args: `seq: u64, outcome: u8, readback_hash: [u8;32]`.
/// Who: the attestation's own signer or the policy's authority (another host signer may not
/// file the one receipt first). Proves: the attestation may still be applied
/// (`Attestation::may_apply`: not revoked, its policy open and not reopened since); one receipt
/// per attestation, recording what the host reported.
#[inline(never)]
fn record_applied(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, policy_account, chain_account, attestation_account, receipt_account, system_program, ..] = accounts
    else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let RecordAppliedArgs {
        seq,
        outcome,
        readback_hash,
    } = RecordAppliedArgs::parse(args).map_err(fail)?;
    require_signer(signer)?;
    require_writable(signer)?;
    require_writable(receipt_account)?;
    require_system_program(system_program)?;
    let policy = load_policy(policy_account, program_id)?;
    let chain = load_chain(chain_account, program_id, policy_account.address())?;
    let attestation = load_attestation(attestation_account, program_id, policy_account.address(), &chain, seq)?;
    // The one receipt belongs to whoever attested (or the authority), not to any host signer:
    // another host must not file it first with a false outcome.
    let key = signer.address().as_array();
    if key != &attestation.signer && key != &policy.authority {
        return Err(fail(VerifyError::ReceiptNotBySigner));
    }
    attestation.may_apply(&policy).map_err(fail)?;
    let attestation_key = attestation_account.address().to_bytes();
    let (expected, bump) = Address::find_program_address(&[RECEIPT_SEED, &attestation_key], program_id);
    if receipt_account.address() != &expected {
        return Err(fail(VerifyError::InvalidPda));
    }
    if !receipt_account.is_data_empty() || !receipt_account.owned_by(&SYSTEM_PROGRAM_ID) {
        return Err(fail(VerifyError::ReceiptAlreadyRecorded));
    }
    let bump_seed = [bump];
    create_pda(
        signer,
        receipt_account,
        Receipt::LEN,
        program_id,
        &[
            Seed::from(RECEIPT_SEED),
            Seed::from(&attestation_key),
            Seed::from(&bump_seed),
        ],
    )?;
    let receipt = Receipt {
        attestation: attestation_key,
        signer: signer.address().to_bytes(),
        seq,
        slot: Clock::get()?.slot,
        outcome,
        readback_hash,
        bump,
    };
    write_fixed(receipt_account, |out| receipt.encode(out))?;
    let mut event = [0u8; 8 + Receipt::BODY_LEN];
    receipt.encode_event(&mut event);
    emit(&event);
    Ok(())
}

/// A policy a relocation may go on under: open, at the revision the relocation was opened at,
/// and the signer the relocation's authority.
fn load_relocation_policy(
    program_id: &Address,
    policy_account: &AccountView,
    relocation: &Relocation,
    signer: &AccountView,
) -> Result<Policy, ProgramError> {
    if signer.address().as_array() != &relocation.authority {
        return Err(fail(VerifyError::Unauthorized));
    }
    if policy_account.address().as_array() != &relocation.policy {
        return Err(fail(VerifyError::PolicyMismatch));
    }
    let policy = load_policy(policy_account, program_id)?;
    if policy.closed {
        return Err(fail(VerifyError::PolicyClosed));
    }
    if policy.revision != relocation.policy_revision {
        return Err(fail(VerifyError::PolicyMismatch));
    }
    Ok(policy)
}

fn load_relocation(account: &AccountView, program_id: &Address) -> Result<Relocation, ProgramError> {
    require_owned(account, program_id)?;
    Relocation::decode(&account.try_borrow()?).map_err(fail)
}

/// Runs `f` on a relocation's records: `stores` must be exactly its stores, in order, or, with
/// `window: Some(first)`, the ones from store `first` on (what an append writes; a record in a
/// store not given is refused).
fn with_records<R>(
    relocation: &Relocation,
    stores: &mut [AccountView],
    program_id: &Address,
    window: Option<usize>,
    f: impl FnOnce(&mut Records<'_, '_>) -> Result<R, VerifyError>,
) -> Result<R, ProgramError> {
    let count = relocation.store_count as usize;
    let first = window.unwrap_or(0);
    if (window.is_none() && stores.len() != count) || first + stores.len() > count {
        return Err(fail(VerifyError::RelocationStoreMismatch));
    }
    let mut guards = [const { None }; MAX_STORES];
    for (store, (key, guard)) in stores
        .iter_mut()
        .zip(relocation.stores[first..].iter().zip(guards[first..].iter_mut()))
    {
        require_owned(store, program_id)?;
        require_writable(store)?;
        if store.address().as_array() != key {
            return Err(fail(VerifyError::RelocationStoreMismatch));
        }
        *guard = Some(store.try_borrow_mut()?);
    }
    let mut slices: [&mut [u8]; MAX_STORES] = Default::default();
    for (slice, guard) in slices.iter_mut().zip(guards.iter_mut()) {
        if let Some(data) = guard {
            *slice = data.get_mut(RelocationStore::LEN..).unwrap_or_default();
        }
    }
    let (per_store, slot_count) = (relocation.per_store, relocation.state.slot_count);
    let mut records = match window {
        None => Records::new(&mut slices[..count], per_store, slot_count),
        Some(_) => Records::window(&mut slices[..count], per_store, slot_count),
    }
    .map_err(fail)?;
    f(&mut records).map_err(fail)
}

/// Accounts: 0 `[signer]` host signer (authority or allowed signer), 1 policy, 2 `[writable,
/// signer]` relocation: an account the signer allocated (owner: this program, zeroed,
/// `Relocation::LEN`), 3.. `[writable, signer]` stores, as many as `slot_count / per_store`
/// rounded up (at most `MAX_STORES`), each allocated the same way with `RelocationStore::LEN +
/// per_store * RECORD_LEN` bytes. Args: `OpenRelocationArgs`.
/// Who: the policy's authority or one of its host signers, holding the keys of the fresh
/// accounts (as for buffers: no one else can stamp them). Proves: the policy is open and allows
/// relocations of `slot_count` objects; the relocation and its stores are fresh, sized for it,
/// and bound to the signer, the policy's revision and what the relocation will be checked
/// against (target, snapshot root, models, region table).
#[inline(never)]
fn open_relocation(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, policy_account, relocation_account, stores @ ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let a = OpenRelocationArgs::parse(args).map_err(fail)?;
    require_signer(signer)?;
    require_signer(relocation_account)?;
    require_writable(relocation_account)?;
    require_owned(relocation_account, program_id)?;
    let policy = load_policy(policy_account, program_id)?;
    if policy.closed {
        return Err(fail(VerifyError::PolicyClosed));
    }
    if !policy.may_sign(signer.address().as_array()) {
        return Err(fail(VerifyError::SignerNotAllowed));
    }
    policy.config.check_model_hash(&a.model_hash).map_err(fail)?;
    if policy.config.rules.max_moves == 0 {
        return Err(fail(VerifyError::RelocationNotAllowed));
    }
    if a.slot_count > policy.config.rules.max_moves {
        return Err(fail(VerifyError::PlanTooManyMoves));
    }
    let count = a.slot_count.div_ceil(a.per_store) as usize;
    let store_len = (a.per_store as usize)
        .checked_mul(RECORD_LEN)
        .and_then(|n| n.checked_add(RelocationStore::LEN))
        .ok_or(fail(VerifyError::RelocationStoreMismatch))?;
    if count > MAX_STORES || stores.len() != count {
        return Err(fail(VerifyError::RelocationStoreMismatch));
    }
    let mut relocation = Relocation {
        authority: signer.address().to_bytes(),
        policy: policy_account.address().to_bytes(),
        policy_revision: policy.revision,
        opened_slot: Clock::get()?.slot,
        per_store: a.per_store,
        store_count: count as u8,
        stores: [[0; 32]; MAX_STORES],
        state: StreamState::new(
            a.target_id,
            a.snapshot_root,
            a.model_hash,
            a.region_table_hash,
            a.slot_count,
        ),
    };
    let header = RelocationStore {
        relocation: relocation_account.address().to_bytes(),
        authority: relocation.authority,
    };
    for (store, key) in stores.iter_mut().zip(relocation.stores.iter_mut()) {
        require_signer(store)?;
        require_writable(store)?;
        require_owned(store, program_id)?;
        if store.data_len() != store_len {
            return Err(fail(VerifyError::RelocationStoreMismatch));
        }
        // A zero discriminator is the only state a freshly allocated account can be in, and
        // the records after it are zero too.
        let mut data = store.try_borrow_mut()?;
        if data[..8] != [0u8; 8] {
            return Err(fail(VerifyError::AlreadyInitialized));
        }
        let out: &mut [u8; RelocationStore::LEN] = (&mut data[..RelocationStore::LEN])
            .try_into()
            .map_err(|_| fail(VerifyError::AccountDiscriminatorMismatch))?;
        header.encode(out);
        drop(data);
        *key = store.address().to_bytes();
    }
    if relocation_account.try_borrow()?.iter().take(8).any(|&b| b != 0) {
        return Err(fail(VerifyError::AlreadyInitialized));
    }
    write_fixed(relocation_account, |out| relocation.encode(out))
}

/// Accounts: 0 `[signer]` the relocation's authority, 1 `[writable]` relocation, 2.. `[writable]`
/// the stores the slots land in, in order (`Records::append_stores`: from the store of the
/// first slot appended; one or two). Args: `first: u32` (the first slot's index in the table),
/// `slots: bytes` (whole stream slots).
/// Who: the relocation's authority. Proves: the slots are the table's next (`first` is the
/// count appended so far, so an append that runs before an earlier one, or twice, is refused
/// with `SlotsNotNext`), they follow the ones before them (ascending, disjoint, aligned, sized,
/// at most 512 bytes, each `to` another slot), and they are chained into the relocation's slot
/// digest.
#[inline(never)]
fn append_slots(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, relocation_account, stores @ ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let (first_slot, slots) = parse_append_slots(args).map_err(fail)?;
    require_signer(signer)?;
    require_writable(relocation_account)?;
    let mut relocation = load_relocation(relocation_account, program_id)?;
    if signer.address().as_array() != &relocation.authority {
        return Err(fail(VerifyError::Unauthorized));
    }
    let mut state = relocation.state;
    let first_store = (state.appended / relocation.per_store.max(1)) as usize;
    with_records(&relocation, stores, program_id, Some(first_store), |records| {
        relocation_stream::append_slots::<SyscallSha256>(&mut state, records, first_slot, slots)
    })?;
    relocation.state = state;
    write_fixed(relocation_account, |out| relocation.encode(out))
}

/// Accounts: 0 `[writable, signer]` the relocation's authority, 1 policy, 2 `[writable]`
/// relocation, 3 `[writable]` buffer (opened by the authority) holding the part's `PlanCore ||
/// Evidence` (closed afterwards, rent to the authority), 4.. `[writable]` its stores in order.
/// Args: `plan_hash` (the buffer's), `hi`.
/// Who: the relocation's authority, under the policy at the revision it was opened at.
/// Proves (`relocation_stream::check_part`): the part starts where the last one ended and holds
/// only writes and slots inside `[lo, hi)` (it may have no writes: slots whose bytes stay); its
/// plan names the relocation's target, snapshot
/// root, models and region table; its evidence proves every region and page against that root,
/// its writes keep the policy's rules (limits on totals wait for the finish) and their old bytes
/// are the proven ones; every pointer write outside a slot is a pointer moved; each slot's new
/// bytes and moved old bytes are balanced into the records, and no slot is moved into twice.
#[inline(never)]
fn check_relocation_part(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, policy_account, relocation_account, buffer, stores @ ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    let CheckPartArgs { plan_hash, hi } = CheckPartArgs::parse(args).map_err(fail)?;
    require_signer(signer)?;
    require_writable(signer)?;
    require_writable(relocation_account)?;
    require_writable(buffer)?;
    let mut relocation = load_relocation(relocation_account, program_id)?;
    let policy = load_relocation_policy(program_id, policy_account, &relocation, signer)?;
    check_buffer(buffer, program_id, signer, &plan_hash)?;
    let mut state = relocation.state;
    {
        let data = buffer.try_borrow()?;
        let (_, body) = BufferHeader::decode(&data).map_err(fail)?;
        with_records(&relocation, stores, program_id, None, |records| {
            relocation_stream::check_part::<SyscallSha256>(
                &mut state,
                &policy.config.rules,
                &policy.config.symbol_rules,
                records,
                body,
                hi,
            )
        })?;
    }
    relocation.state = state;
    write_fixed(relocation_account, |out| relocation.encode(out))?;
    close_into(buffer, signer)
}

/// Accounts: 0 `[writable, signer]` the relocation's authority (pays), 1 policy, 2 `[writable]`
/// target chain PDA, 3 `[writable]` attestation PDA, 4 `[writable]` plan marker PDA (as for
/// `attest`), 5 `[writable]` relocation (closed afterwards, rent to the authority), 6 system
/// program, 7.. witnessed-snapshot records of the relocation's snapshot root. No args.
/// Who: the relocation's authority, under the policy at the revision it was opened at.
/// Proves (`relocation_stream::finish`): the parts reached every slot and the end of the address
/// space, every record is balanced (each slot holds the object moved into it, every pointer
/// moved), the relocation writes something, the totals keep the policy's limits; then records the relocation as `attest` records
/// a plan, under its streamed plan hash (`PatchPlan::streamed_plan_hash`), its snapshot root
/// witnessed as for `attest` but as of the slot the relocation was opened at (its parts may take
/// longer than the policy's `max_snapshot_age`).
#[inline(never)]
fn finish_relocation(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, policy_account, chain_account, attestation_account, marker_account, relocation_account, system_program, witnesses @ ..] =
        accounts
    else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    parse_no_args(args).map_err(fail)?;
    require_signer(signer)?;
    require_writable(signer)?;
    require_writable(chain_account)?;
    require_writable(attestation_account)?;
    require_writable(marker_account)?;
    require_writable(relocation_account)?;
    require_system_program(system_program)?;
    let relocation = load_relocation(relocation_account, program_id)?;
    let policy = load_relocation_policy(program_id, policy_account, &relocation, signer)?;
    let state = &relocation.state;
    let (plan_hash, totals) = relocation_stream::finish::<SyscallSha256>(state, &policy.config.rules).map_err(fail)?;
    let verdict = Verdict {
        plan_hash,
        region_table_hash: state.region_table_hash,
        totals,
    };
    let accepted = Accepted {
        target_id: &state.target_id,
        snapshot_root: &state.snapshot_root,
        verdict: &verdict,
        witnessed_as_of: Some(relocation.opened_slot),
    };
    record_plan(
        program_id,
        signer,
        policy_account,
        &policy,
        chain_account,
        attestation_account,
        marker_account,
        witnesses,
        &accepted,
    )?;
    close_into(relocation_account, signer)
}

/// Accounts: 0 `[writable, signer]` the authority, 1.. `[writable]` relocation and store accounts
/// it opened. No args.
/// Who: the authority that opened them. Proves: nothing; each account is closed and its rent
/// goes back to the authority (after `finish_relocation`, or to give a relocation up).
#[inline(never)]
fn close_relocation(program_id: &Address, accounts: &mut [AccountView], args: &[u8]) -> ProgramResult {
    let [signer, rest @ ..] = accounts else {
        return Err(ProgramError::NotEnoughAccountKeys);
    };
    parse_no_args(args).map_err(fail)?;
    require_signer(signer)?;
    require_writable(signer)?;
    for account in rest.iter_mut() {
        require_writable(account)?;
        require_owned(account, program_id)?;
        let authority = {
            let data = account.try_borrow()?;
            match Relocation::decode(&data) {
                Ok(r) => r.authority,
                Err(_) => RelocationStore::decode(&data).map_err(fail)?.0.authority,
            }
        };
        if signer.address().as_array() != &authority {
            return Err(fail(VerifyError::Unauthorized));
        }
        close_into(account, signer)?;
    }
    Ok(())
}
