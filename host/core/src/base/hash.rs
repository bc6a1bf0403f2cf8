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

/// SHA-256 of the MiniZinc models (`*.mzn` in `dir`, by name): what a policy's `model_hash` pins
/// by default, and what a plan solved with the models in `dir` names.
pub fn models_hash(dir: &Path) -> Result<[u8; 32]> {
    models_hash_with(dir, &[])
}

/// SHA-256 of the models a planner ran with: the models in `dir` (`*.mzn`, by name), each named
/// in `replaced` (file name, path) read from that path instead (`plan --model`). The same
/// models give the same hash wherever they lie; any other model text gives another.
pub fn models_hash_with(dir: &Path, replaced: &[(&str, &Path)]) -> Result<[u8; 32]> {
    use sha2::Digest;
    let mut models: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mzn"))
        .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
        .collect();
    for (name, path) in replaced {
        match models.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = path.to_path_buf(),
            None => models.push((name.to_string(), path.to_path_buf())),
        }
    }
    models.sort();
    let mut h = sha2::Sha256::new();
    for (_, m) in &models {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan names the hash of the models it ran with: the same texts give the policy's
    /// default hash wherever they lie; a model standing in for another with other text does not.
    #[test]
    fn the_models_hash_is_of_the_models_used() {
        let dir = std::env::temp_dir().join(format!("memzinc-models-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("repair.mzn"), "constraint true;\n").unwrap();
        std::fs::write(dir.join("heap.mzn"), "var 0..1: x;\n").unwrap();
        std::fs::write(dir.join("schema.md"), "not a model\n").unwrap();
        let default = models_hash(&dir).unwrap();
        assert_eq!(models_hash_with(&dir, &[]).unwrap(), default);
        let same = dir.join("copy.txt");
        std::fs::write(&same, "constraint true;\n").unwrap();
        assert_eq!(models_hash_with(&dir, &[("repair.mzn", &same)]).unwrap(), default);
        let laxer = dir.join("laxer.txt");
        std::fs::write(&laxer, "constraint false;\n").unwrap();
        assert_ne!(models_hash_with(&dir, &[("repair.mzn", &laxer)]).unwrap(), default);
        std::fs::write(dir.join("repair.mzn"), "constraint false;\n").unwrap();
        assert_ne!(models_hash(&dir).unwrap(), default, "an edited model changes the hash");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
