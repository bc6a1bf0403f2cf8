//! Shared helpers for memzinc's end-to-end and program tests.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The attestor built by `scripts/build-program.sh`. Tests fail (not skip) without it: the test
/// command builds it first.
pub fn program_so() -> PathBuf {
    let path = std::env::var_os("MEMZINC_PROGRAM_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/deploy/attestor.so"));
    assert!(
        path.exists(),
        "{} is missing: build it with scripts/build-program.sh",
        path.display()
    );
    path
}

/// A built binary of this workspace (memzinc, healme), from cargo's target directory.
pub fn binary(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; binaries are one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        path.display()
    );
    path
}
