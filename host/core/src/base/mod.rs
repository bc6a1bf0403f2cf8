//! The ground every stage stands on: the one error type, files that are never half-written,
//! the protobuf types of `proto/` (all prost output), hashing, and the trait target memory is
//! read through. Depends on no other part of memzinc.

mod error;
mod files;
mod hash;
mod memory;
pub mod pb;

pub use error::{printable, Error, Result};
pub use files::{write_atomically, write_checked, write_file_atomically};
pub use hash::{file_hash, hex_bytes, hex_hash, models_hash, models_hash_with, repo_root, Sha2};
pub use memory::Memory;
