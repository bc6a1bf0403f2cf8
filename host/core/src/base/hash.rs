//! SHA-256 as the verifier hashes with it, the hashes a policy pins (models, program file), hex
//! in JSON, and where the repository's files are.

use std::path::{Path, PathBuf};

use super::{Error, Result};

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

/// SHA-256 of the MiniZinc models (`*.mzn` in `dir`, by name): what a policy's `model_hash` pins.
pub fn models_hash(dir: &Path) -> Result<[u8; 32]> {
    use sha2::Digest;
    let mut models: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mzn"))
        .collect();
    models.sort();
    let mut h = sha2::Sha256::new();
    for m in &models {
        h.update(std::fs::read(m).map_err(|e| Error::io(m, e))?);
    }
    Ok(h.finalize().into())
}

/// SHA-256 of one file (a policy's `verifier_hash` pins the program file's).
pub fn file_hash(path: &Path) -> Result<[u8; 32]> {
    use sha2::Digest;
    Ok(sha2::Sha256::digest(std::fs::read(path).map_err(|e| Error::io(path, e))?).into())
}

/// A 32-byte hash as hex in JSON (`#[serde(serialize_with = "hex_hash")]`).
pub fn hex_hash<S: serde::Serializer>(v: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

/// `Vec<u8>` as a hex string in JSON (`#[serde(with = "hex_bytes")]`).
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Where the repository's files are when running from a checkout (models, program, keypair).
/// `MEMZINC_ROOT` overrides it for an installed binary.
pub fn repo_root() -> PathBuf {
    std::env::var_os("MEMZINC_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
