//! A snapshot's memory as one address space, read in place: the core file mapped read-only,
//! its regions sorted so an address finds its region by binary search, and bytes handed out as
//! slices of the mapping (no copy, no system call per read). What the object graph and the heap
//! walker read a million objects through; [`Snapshot::read`] stays the one-off reader.
//!
//! An image can also be built from parts (the fuzz targets' hostile heaps) and patched (a plan's
//! writes applied to a copy of the regions they touch, for re-checking a repair).

use std::sync::Arc;

use super::region::SnapRegion;
use super::snapshot::Snapshot;
use crate::base::{Error, Result};
use crate::introspect::PAGE_SIZE;

/// Where a segment's bytes are.
#[derive(Clone)]
enum Bytes {
    /// Not captured (or not readable): no bytes.
    None,
    /// At this offset of the mapped core file.
    Mapped(usize),
    Owned(Arc<Vec<u8>>),
}

/// One mapping of the snapshot's process.
#[derive(Clone)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// The mapping's path as /proc/PID/maps shows it (`[heap]`, `""` for anonymous memory).
    pub path: String,
    bytes: Bytes,
    /// Pages that could not be read when the snapshot was taken, ascending.
    unreadable: Vec<u64>,
}

impl Segment {
    /// A segment of `bytes` at `start` (for images built from parts).
    pub fn new(start: u64, bytes: Vec<u8>, perms: &str, path: &str) -> Segment {
        let p = perms.as_bytes();
        Segment {
            start,
            end: start.saturating_add(bytes.len() as u64),
            readable: p.first() == Some(&b'r'),
            writable: p.get(1) == Some(&b'w'),
            executable: p.get(2) == Some(&b'x'),
            path: path.to_string(),
            bytes: Bytes::Owned(Arc::new(bytes)),
            unreadable: Vec::new(),
        }
    }

    /// A snapshot region as a segment, its bytes where `bytes` says.
    fn of_region(r: &SnapRegion, bytes: Bytes) -> Segment {
        Segment {
            start: r.map.start,
            end: r.map.end,
            readable: r.map.readable(),
            writable: r.map.writable(),
            executable: r.map.executable(),
            path: r.map.path.clone(),
            bytes,
            unreadable: r.unreadable_pages.clone(),
        }
    }

    /// Whether its bytes are in the snapshot.
    pub fn captured(&self) -> bool {
        !matches!(self.bytes, Bytes::None)
    }

    /// Anonymous memory: no file behind it (the heap, thread arenas, mmapped chunks, stacks).
    pub fn anonymous(&self) -> bool {
        self.path.is_empty() || self.path == "[heap]" || self.path.starts_with("[anon:")
    }
}

/// A snapshot's address space.
#[derive(Clone)]
pub struct Image {
    map: Option<Arc<memmap2::Mmap>>,
    segments: Vec<Segment>,
}

impl Image {
    /// The snapshot's regions over its core file, mapped read-only.
    pub fn of(snapshot: &Snapshot) -> Result<Image> {
        if snapshot.parent_path().is_some() {
            return Image::of_chain(snapshot);
        }
        let file = std::fs::File::open(&snapshot.path).map_err(|e| Error::io(&snapshot.path, e))?;
        // SAFETY: the core is mapped read-only and private; memzinc writes cores atomically
        // (a temp file renamed into place) and never in place, so the mapped file does not change
        // under the mapping. Every slice handed out is bounds-checked against the file's length
        // below, so a truncated core is an error here, not a SIGBUS later.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&snapshot.path, e))?;
        let len = map.len() as u64;
        let mut segments = Vec::with_capacity(snapshot.meta.regions.len());
        for r in &snapshot.meta.regions {
            let size = r.map.end.saturating_sub(r.map.start);
            let bytes = if r.captured && r.map.readable() {
                if r.data_offset.checked_add(size).is_none_or(|end| end > len) {
                    return Err(Error::Corrupt {
                        path: snapshot.path.clone(),
                        kind: "snapshot",
                        why: format!("region {:#x} runs past the end of the file", r.map.start),
                    });
                }
                Bytes::Mapped(r.data_offset as usize)
            } else {
                Bytes::None
            };
            segments.push(Segment::of_region(r, bytes));
        }
        Ok(Image::sorted(Some(Arc::new(map)), segments))
    }

    /// An incremental snapshot's regions, read into memory from it and its parents.
    fn of_chain(snapshot: &Snapshot) -> Result<Image> {
        let mut segments = Vec::with_capacity(snapshot.meta.regions.len());
        for r in &snapshot.meta.regions {
            let bytes = if r.captured && r.map.readable() {
                let mut bytes = vec![0u8; r.map.end.saturating_sub(r.map.start) as usize];
                snapshot.read_captured(r, r.map.start, &mut bytes)?;
                Bytes::Owned(Arc::new(bytes))
            } else {
                Bytes::None
            };
            segments.push(Segment::of_region(r, bytes));
        }
        Ok(Image::sorted(None, segments))
    }

    /// An image of the given segments (overlapping ones after the first are dropped).
    pub fn from_segments(segments: Vec<Segment>) -> Image {
        Image::sorted(None, segments)
    }

    fn sorted(map: Option<Arc<memmap2::Mmap>>, mut segments: Vec<Segment>) -> Image {
        segments.retain(|s| s.start < s.end);
        segments.sort_by_key(|s| s.start);
        let mut kept: Vec<Segment> = Vec::with_capacity(segments.len());
        for s in segments {
            if kept.last().is_none_or(|k| k.end <= s.start) {
                kept.push(s);
            }
        }
        Image { map, segments: kept }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The segment holding `address`.
    pub fn segment(&self, address: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.start <= address).checked_sub(1)?;
        let s = &self.segments[i];
        (address < s.end).then_some(s)
    }

    /// The `len` bytes at `address`, if one captured, readable segment holds them all.
    pub fn bytes(&self, address: u64, len: usize) -> Option<&[u8]> {
        let s = self.segment(address)?;
        let end = address.checked_add(len as u64)?;
        if end > s.end {
            return None;
        }
        if !s.unreadable.is_empty() {
            let first = address & !(PAGE_SIZE - 1);
            let i = s.unreadable.partition_point(|&p| p < first);
            if s.unreadable.get(i).is_some_and(|&p| p < end) {
                return None;
            }
        }
        let at = (address - s.start) as usize;
        match &s.bytes {
            Bytes::None => None,
            Bytes::Mapped(offset) => self.map.as_ref()?.get(offset + at..offset + at + len),
            Bytes::Owned(v) => v.get(at..at + len),
        }
    }

    /// The `len` bytes at `address` copied out of adjacent captured segments (a large global
    /// whose end lies in the anonymous mapping after its file's `.bss`), if they hold them all.
    pub fn bytes_across(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        let end = address.checked_add(len as u64)?;
        let mut out = Vec::with_capacity(len);
        let mut at = address;
        while at < end {
            let s = self.segment(at)?;
            let n = (s.end.min(end) - at) as usize;
            out.extend_from_slice(self.bytes(at, n)?);
            at += n as u64;
        }
        Some(out)
    }

    /// The little-endian u64 at `address`.
    pub fn u64_at(&self, address: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(address, 8)?.try_into().ok()?))
    }

    /// The image with `writes` (address, new bytes) made: the segments they touch are copied and
    /// changed, the rest stays shared. A write outside every captured segment is an error.
    pub fn patched(&self, writes: &[(u64, Vec<u8>)]) -> Result<Image> {
        let mut out = self.clone();
        // Each touched segment is copied once, however many writes it takes.
        let mut copies: std::collections::HashMap<usize, Vec<u8>> = std::collections::HashMap::new();
        for (address, new) in writes {
            let missing = || Error::Usage(format!("{address:#x}+{}: not in the snapshot's memory", new.len()));
            let i = out
                .segments
                .partition_point(|s| s.start <= *address)
                .checked_sub(1)
                .ok_or_else(missing)?;
            if out.bytes(*address, new.len()).is_none() || out.segments[i].end < address + new.len() as u64 {
                return Err(missing());
            }
            let s = &out.segments[i];
            let owned = match copies.entry(i) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let size = (s.end - s.start) as usize;
                    e.insert(match &s.bytes {
                        Bytes::Owned(v) => v.as_ref().clone(),
                        Bytes::Mapped(offset) => out.map.as_ref().ok_or_else(missing)?[*offset..offset + size].to_vec(),
                        Bytes::None => return Err(missing()),
                    })
                }
            };
            let at = (address - s.start) as usize;
            owned[at..at + new.len()].copy_from_slice(new);
        }
        for (i, bytes) in copies {
            out.segments[i].bytes = Bytes::Owned(Arc::new(bytes));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_stay_inside_one_segment() {
        let image = Image::from_segments(vec![
            Segment::new(0x2000, vec![2; 0x1000], "rw-p", "[heap]"),
            Segment::new(0x1000, (0..=255).cycle().take(0x1000).collect(), "r--p", "/bin/x"),
        ]);
        assert_eq!(image.segment(0x1fff).map(|s| s.start), Some(0x1000));
        assert_eq!(image.segment(0x2000).map(|s| s.path.as_str()), Some("[heap]"));
        assert!(image.segment(0x3000).is_none() && image.segment(0xfff).is_none());
        assert_eq!(image.bytes(0x1001, 2), Some(&[1u8, 2][..]));
        // Across two segments, past the end, or overflowing: no bytes.
        assert!(image.bytes(0x1fff, 2).is_none());
        assert_eq!(image.bytes_across(0x1fff, 2), Some(vec![255, 2]));
        assert!(image.bytes_across(0x2fff, 2).is_none());
        assert!(image.bytes(0x2fff, 2).is_none());
        assert!(image.bytes(u64::MAX - 1, 8).is_none());
        let patched = image.patched(&[(0x2008, vec![7, 7])]).unwrap();
        assert_eq!(patched.bytes(0x2007, 4), Some(&[2u8, 7, 7, 2][..]));
        assert_eq!(image.bytes(0x2008, 1), Some(&[2u8][..]));
        assert!(image.patched(&[(0x2fff, vec![0, 0])]).is_err());
    }
}
