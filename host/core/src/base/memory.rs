//! Where target memory is read from: a live process (`introspect`) or a snapshot (`describe`).

use super::Result;

/// Somewhere target memory can be read from.
pub trait Memory {
    /// Exactly `len` bytes at `address`, or an error.
    fn read(&self, address: u64, len: usize) -> Result<Vec<u8>>;
}
