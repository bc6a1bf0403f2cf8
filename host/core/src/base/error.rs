//! The library's one error type. Every variant renders as a single line the CLI prints as is.

use std::path::PathBuf;

use memzinc_verifier::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: i32 },
    #[error("not permitted to access process {pid} (need root or CAP_SYS_PTRACE): {what}")]
    NotPermitted { pid: i32, what: String },
    #[error("process {pid} is a zombie; it has no memory to read")]
    Zombie { pid: i32 },
    #[error("restore: {0}")]
    Restore(String),
    #[error("process {pid} cannot be checkpointed: {why}; nothing was written")]
    NotCheckpointable { pid: i32, why: String },
    #[error("process {pid}: no incremental snapshot: {why}")]
    NotIncremental { pid: i32, why: String },
    #[error("{path} is an incremental snapshot (its unchanged pages are in {parent}); {what} needs a full core: `memzinc merge {path} -o FULL` writes one")]
    NeedsFullCore {
        path: PathBuf,
        parent: PathBuf,
        what: &'static str,
    },
    #[error("{path} is an incremental snapshot of {parent}, which {why}")]
    Parent {
        path: PathBuf,
        parent: PathBuf,
        why: String,
    },
    #[error("process {pid}: no copy-on-write snapshot: {why} (`--stop-the-world` takes one without a copy)")]
    CopyOnWrite { pid: i32, why: String },
    #[error("process {pid} exited while memzinc was {during}")]
    TargetExited { pid: i32, during: &'static str },
    #[error("process {pid}: {what}: {source}")]
    Process {
        pid: i32,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a memzinc {kind}: {why}")]
    Corrupt {
        path: PathBuf,
        kind: &'static str,
        why: String,
    },
    #[error("{path}: debug info: {why}")]
    DebugInfo { path: PathBuf, why: String },
    #[error("layout of {object}: {why}")]
    Layout { object: String, why: String },
    #[error("describe registry: {0}")]
    Registry(String),
    #[error("symbol `{0}` not found in the snapshot's symbol table")]
    SymbolNotFound(String),
    #[error("target spec {path}: {why}")]
    Spec { path: PathBuf, why: String },
    #[error("minizinc: {0}")]
    MiniZinc(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("plan refused by the verifier: {0}")]
    Verify(#[from] VerifyError),
    #[error("RPC {url}: {why}")]
    Rpc { url: String, why: String },
    #[error("transaction failed: {0}")]
    Transaction(String),
    #[error("keypair {path}: {why}")]
    Keypair { path: PathBuf, why: String },
    #[error("no attestation on chain matches this plan (plan hash {plan_hash}); run `memzinc attest` first")]
    NotAttested { plan_hash: String },
    #[error("attestation {attestation} was revoked; the plan must not be applied")]
    Revoked { attestation: String },
    #[error("snapshot root {root} of {target} is witnessed by {have} of the {need} policy witnesses it needs; record it with `memzinc snapshot --witness KEYPAIR --target NAME`")]
    NotWitnessed {
        target: String,
        root: String,
        have: usize,
        need: usize,
    },
    #[error("the plan was solved with MiniZinc models {plan} but the policy pins {policy}; plan again with the pinned models, or update the policy's --model-hash")]
    ModelHashMismatch { plan: String, policy: String },
    #[error("attestation {attestation} may not be applied: {why}")]
    NotApplicable { attestation: String, why: VerifyError },
    #[error(
        "write #{index} at {address:#x}: memory holds {found} but the plan expects {expected}; nothing was written"
    )]
    OldBytesMismatch {
        index: usize,
        address: u64,
        found: String,
        expected: String,
    },
    #[error("apply failed at write #{index} ({address:#x}): {why}; {restored} write(s) were rolled back")]
    ApplyFailed {
        index: usize,
        address: u64,
        why: String,
        restored: usize,
    },
    #[error("audit of target {target}: {why}")]
    AuditFailed { target: String, why: String },
    #[error("hub {url}: {why}")]
    Hub { url: String, why: String },
    #[error("localnet: {0}")]
    Localnet(String),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Text from a target (DWARF names, registry strings) with control characters escaped
/// (`\n` → `\\n`), so names and the errors that quote them stay on one line.
pub fn printable(text: String) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    /// Found by the `debug_types` and `registry` fuzz targets: names from a target quoted in
    /// errors made them several lines.
    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(super::printable("a\nb\tc\u{0}é".into()), "a\\nb\\tc\\u{0}é");
        assert_eq!(super::printable("plain::name<T>".into()), "plain::name<T>");
    }
}
