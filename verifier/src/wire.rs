//! Zero-copy decoding of the Borsh-layout instruction arguments.
//!
//! Layouts (Borsh: little-endian integers, `Vec<T>`/`bytes` = u32 length then items):
//!
//! ```text
//! Region        { start: u64, end: u64, flags: u8 }            // [start, end), flags: R=1 W=2 X=4
//! Write         { address: u64, old: bytes, new: bytes }
//! AttestArgs    { target_id: [u8;32], snapshot_root: [u8;32], regions: Vec<Region>, writes: Vec<Write> }
//! PolicyRules   { wx: bool, max_bytes: u32, max_writes: u32 }
//! ```
//!
//! `AttestArgs::parse` walks the whole buffer once and rejects anything that does not decode
//! exactly (trailing bytes included); after that the iterators cannot fail.

use crate::error::VerifyError;

pub const REGION_READ: u8 = 1;
pub const REGION_WRITE: u8 = 2;
pub const REGION_EXEC: u8 = 4;
pub const REGION_FLAGS_MASK: u8 = REGION_READ | REGION_WRITE | REGION_EXEC;

pub const REGION_LEN: usize = 17;

/// A mapped range of the target, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub flags: u8,
}

impl Region {
    pub fn readable(&self) -> bool {
        self.flags & REGION_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & REGION_WRITE != 0
    }
    pub fn executable(&self) -> bool {
        self.flags & REGION_EXEC != 0
    }
    fn decode(b: &[u8; REGION_LEN]) -> Region {
        Region {
            start: u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8])),
            end: u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])),
            flags: b[16],
        }
    }
    pub fn encode(&self) -> [u8; REGION_LEN] {
        let mut out = [0u8; REGION_LEN];
        out[0..8].copy_from_slice(&self.start.to_le_bytes());
        out[8..16].copy_from_slice(&self.end.to_le_bytes());
        out[16] = self.flags;
        out
    }
}

/// One byte write of a plan: at `address`, replace `old` by `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteView<'a> {
    pub address: u64,
    pub old: &'a [u8],
    pub new: &'a [u8],
}

/// A cursor over untrusted bytes; every read is bounds-checked.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], VerifyError> {
        if self.buf.len() < n {
            return Err(VerifyError::MalformedInstruction);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], VerifyError> {
        self.take(N)?.try_into().map_err(|_| VerifyError::MalformedInstruction)
    }
    pub fn u8(&mut self) -> Result<u8, VerifyError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, VerifyError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(VerifyError::MalformedInstruction),
        }
    }
    pub fn u32(&mut self) -> Result<u32, VerifyError> {
        Ok(u32::from_le_bytes(*self.array::<4>()?))
    }
    pub fn u64(&mut self) -> Result<u64, VerifyError> {
        Ok(u64::from_le_bytes(*self.array::<8>()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], VerifyError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    pub fn finish(self) -> Result<(), VerifyError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::MalformedInstruction)
        }
    }
}

/// The arguments of `attest`, validated for structure and borrowed from the instruction data.
#[derive(Clone, Copy, Debug)]
pub struct AttestArgs<'a> {
    pub target_id: &'a [u8; 32],
    pub snapshot_root: &'a [u8; 32],
    /// The Borsh encoding of `regions`, length prefix included (what `region_table_hash` hashes).
    pub regions_encoded: &'a [u8],
    region_bytes: &'a [u8],
    writes_bytes: &'a [u8],
    pub region_count: u32,
    pub write_count: u32,
}

impl<'a> AttestArgs<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, VerifyError> {
        let mut r = Reader::new(data);
        let target_id = r.array::<32>()?;
        let snapshot_root = r.array::<32>()?;
        let before_regions = r;
        let region_count = r.u32()?;
        let region_len = (region_count as usize)
            .checked_mul(REGION_LEN)
            .ok_or(VerifyError::MalformedInstruction)?;
        let region_bytes = r.take(region_len)?;
        let regions_encoded = &before_regions.buf[..4 + region_len];
        let write_count = r.u32()?;
        let writes_start = r;
        for _ in 0..write_count {
            r.u64()?;
            r.bytes()?;
            r.bytes()?;
        }
        let writes_len = writes_start.remaining() - r.remaining();
        let writes_bytes = &writes_start.buf[..writes_len];
        r.finish()?;
        Ok(AttestArgs {
            target_id,
            snapshot_root,
            regions_encoded,
            region_bytes,
            writes_bytes,
            region_count,
            write_count,
        })
    }

    pub fn regions(&self) -> impl Iterator<Item = Region> + 'a {
        self.region_bytes.as_chunks::<REGION_LEN>().0.iter().map(Region::decode)
    }

    pub fn writes(&self) -> WriteIter<'a> {
        WriteIter {
            reader: Reader::new(self.writes_bytes),
        }
    }
}

/// Iterates writes already validated by [`AttestArgs::parse`].
pub struct WriteIter<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for WriteIter<'a> {
    type Item = WriteView<'a>;
    fn next(&mut self) -> Option<WriteView<'a>> {
        if self.reader.remaining() == 0 {
            return None;
        }
        let address = self.reader.u64().ok()?;
        let old = self.reader.bytes().ok()?;
        let new = self.reader.bytes().ok()?;
        Some(WriteView { address, old, new })
    }
}

/// Rules a policy imposes on every plan attested under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRules {
    /// Refuse writes into executable regions (W^X).
    pub wx: bool,
    /// Most bytes one plan may write in total.
    pub max_bytes: u32,
    /// Most writes one plan may contain.
    pub max_writes: u32,
}

pub const POLICY_RULES_LEN: usize = 9;

impl PolicyRules {
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, VerifyError> {
        Ok(PolicyRules {
            wx: r.bool()?,
            max_bytes: r.u32()?,
            max_writes: r.u32()?,
        })
    }
    pub fn encode(&self) -> [u8; POLICY_RULES_LEN] {
        let mut out = [0u8; POLICY_RULES_LEN];
        out[0] = self.wx as u8;
        out[1..5].copy_from_slice(&self.max_bytes.to_le_bytes());
        out[5..9].copy_from_slice(&self.max_writes.to_le_bytes());
        out
    }
    pub fn validate(&self) -> Result<(), VerifyError> {
        if self.max_bytes == 0 || self.max_writes == 0 {
            return Err(VerifyError::InvalidPolicyRules);
        }
        Ok(())
    }
}
