//! The ELF core container: x86_64 ET_CORE headers, notes and the layouts of the notes gdb reads
//! (`elf_prstatus`, `elf_prpsinfo`, NT_FILE), and where a memzinc core puts each part
//! ([`data_start`], [`place`], [`program_headers`]: the one definition `take` writes by,
//! `open` checks by and `rebuild` writes by). Pure encoding and decoding; `snapshot` decides
//! what goes in.
//!
//! Layouts follow the kernel's `fs/binfmt_elf.c` and `include/uapi/linux/elfcore.h` for x86_64;
//! note names are "CORE" (and "LINUX" for NT_X86_XSTATE), descriptors 4-byte aligned.

use std::fs::File;
use std::os::unix::fs::FileExt;

use object::elf;
use object::endian::{LittleEndian as LE, U16, U32, U64};
use object::read::elf::{FileHeader as _, ProgramHeader as _};

use crate::introspect::GpRegs;

pub const PAGE: u64 = 4096;
const EHDR_LEN: u64 = size_of::<elf::FileHeader64<LE>>() as u64;
const SHDR_LEN: u64 = size_of::<elf::SectionHeader64<LE>>() as u64;
const PHDR_LEN: u64 = size_of::<elf::ProgramHeader64<LE>>() as u64;

/// `sizeof(struct elf_prstatus)` on x86_64.
pub const PRSTATUS_LEN: usize = 336;
const PRSTATUS_PID: usize = 32;
const PRSTATUS_REG: usize = 112;
const PRSTATUS_FPVALID: usize = PRSTATUS_REG + GpRegs::WORDS * 8;
/// `sizeof(struct elf_prpsinfo)` on x86_64.
pub const PRPSINFO_LEN: usize = 136;

/// Where a memzinc core's page data starts: after the ELF header and the program headers of
/// `regions` mappings and the note segment, padded to a page.
pub fn data_start(regions: usize) -> u64 {
    headers_len(regions + 1).next_multiple_of(PAGE)
}

/// Where each region's pages go: captured regions back to back from `start`, in map order.
/// Takes (length, captured) per region; returns each one's data offset (0 when not captured)
/// and the end of the page data, where the notes go.
pub fn place(start: u64, regions: impl IntoIterator<Item = (u64, bool)>) -> (Vec<u64>, u64) {
    let mut offset = start;
    let offsets = regions
        .into_iter()
        .map(|(len, captured)| {
            if !captured {
                return 0;
            }
            let at = offset;
            offset += len;
            at
        })
        .collect();
    (offsets, offset)
}

/// A region as its PT_LOAD describes it.
pub struct LoadRegion<'a> {
    pub start: u64,
    pub end: u64,
    pub data_offset: u64,
    pub captured: bool,
    pub perms: &'a str,
}

impl LoadRegion<'_> {
    /// Its PT_LOAD: the whole mapping in memory, its pages in the file only if captured.
    pub fn segment(&self) -> Segment {
        let len = self.end - self.start;
        Segment::load(
            self.start,
            len,
            self.data_offset,
            if self.captured { len } else { 0 },
            self.perms,
        )
    }
}

/// The ELF header and program headers of a memzinc core: the note segment (at `notes_at`,
/// `notes_len` bytes), then one PT_LOAD per region in map order.
pub fn program_headers<'a>(
    notes_at: u64,
    notes_len: u64,
    regions: impl IntoIterator<Item = LoadRegion<'a>>,
) -> Vec<u8> {
    let mut segments = vec![Segment::note(notes_at, notes_len)];
    segments.extend(regions.into_iter().map(|r| r.segment()));
    encode_headers(&segments)
}

/// One program header, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Segment {
    /// A PT_LOAD for a mapping with "rwxp"-style permissions.
    pub fn load(vaddr: u64, memsz: u64, offset: u64, filesz: u64, perms: &str) -> Segment {
        let p = perms.as_bytes();
        let flags = [(0, elf::PF_R, b'r'), (1, elf::PF_W, b'w'), (2, elf::PF_X, b'x')]
            .into_iter()
            .filter(|&(i, _, letter)| p.get(i) == Some(&letter))
            .fold(0, |acc, (_, flag, _)| acc | flag);
        Segment {
            p_type: elf::PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: PAGE,
        }
    }

    pub fn note(offset: u64, filesz: u64) -> Segment {
        Segment {
            p_type: elf::PT_NOTE,
            flags: 0,
            offset,
            vaddr: 0,
            filesz,
            memsz: 0,
            align: 4,
        }
    }
}

/// Whether `count` program headers need extended numbering (PN_XNUM and section header 0).
fn extended(count: usize) -> bool {
    count >= elf::PN_XNUM as usize
}

/// Bytes the ELF header, the extended-numbering section header (if any) and `count` program
/// headers take.
pub fn headers_len(count: usize) -> u64 {
    EHDR_LEN + if extended(count) { SHDR_LEN } else { 0 } + PHDR_LEN * count as u64
}

/// The ELF header followed by the program headers (section header 0 between them when there
/// are 65535 or more, as the kernel does).
pub fn encode_headers(segments: &[Segment]) -> Vec<u8> {
    let xnum = extended(segments.len());
    let phoff = EHDR_LEN + if xnum { SHDR_LEN } else { 0 };
    let header = elf::FileHeader64::<LE> {
        e_ident: elf::Ident {
            magic: elf::ELFMAG,
            class: elf::ELFCLASS64,
            data: elf::ELFDATA2LSB,
            version: elf::EV_CURRENT,
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            padding: [0; 7],
        },
        e_type: U16::new(LE, elf::ET_CORE),
        e_machine: U16::new(LE, elf::EM_X86_64),
        e_version: U32::new(LE, elf::EV_CURRENT as u32),
        e_entry: U64::new(LE, 0),
        e_phoff: U64::new(LE, phoff),
        e_shoff: U64::new(LE, if xnum { EHDR_LEN } else { 0 }),
        e_flags: U32::new(LE, 0),
        e_ehsize: U16::new(LE, EHDR_LEN as u16),
        e_phentsize: U16::new(LE, PHDR_LEN as u16),
        e_phnum: U16::new(LE, if xnum { elf::PN_XNUM } else { segments.len() as u16 }),
        e_shentsize: U16::new(LE, if xnum { SHDR_LEN as u16 } else { 0 }),
        e_shnum: U16::new(LE, xnum as u16),
        e_shstrndx: U16::new(LE, elf::SHN_UNDEF),
    };
    let mut out = Vec::with_capacity(headers_len(segments.len()) as usize);
    out.extend_from_slice(object::pod::bytes_of(&header));
    if xnum {
        let section_0 = elf::SectionHeader64::<LE> {
            sh_name: U32::new(LE, 0),
            sh_type: U32::new(LE, elf::SHT_NULL),
            sh_flags: U64::new(LE, 0),
            sh_addr: U64::new(LE, 0),
            sh_offset: U64::new(LE, 0),
            sh_size: U64::new(LE, 1),
            sh_link: U32::new(LE, elf::SHN_UNDEF as u32),
            sh_info: U32::new(LE, segments.len() as u32),
            sh_addralign: U64::new(LE, 0),
            sh_entsize: U64::new(LE, 0),
        };
        out.extend_from_slice(object::pod::bytes_of(&section_0));
    }
    for s in segments {
        let phdr = elf::ProgramHeader64::<LE> {
            p_type: U32::new(LE, s.p_type),
            p_flags: U32::new(LE, s.flags),
            p_offset: U64::new(LE, s.offset),
            p_vaddr: U64::new(LE, s.vaddr),
            p_paddr: U64::new(LE, 0),
            p_filesz: U64::new(LE, s.filesz),
            p_memsz: U64::new(LE, s.memsz),
            p_align: U64::new(LE, s.align),
        };
        out.extend_from_slice(object::pod::bytes_of(&phdr));
    }
    out
}

/// Reads and checks the ELF header and program headers of an x86_64 core file of `len` bytes.
/// Every segment is checked to lie inside the file. Errors say why, in a few words.
pub fn read_segments(file: &File, len: u64) -> Result<Vec<Segment>, String> {
    let read = |offset: u64, n: u64| -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; n as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("reading {n} bytes at {offset:#x}: {e}"))?;
        Ok(buf)
    };
    if len < EHDR_LEN {
        return Err("too short for an ELF header".into());
    }
    // The header and, with extended numbering, section header 0 right after it.
    let prefix = read(0, len.min(EHDR_LEN + SHDR_LEN))?;
    let header = elf::FileHeader64::<LE>::parse(&*prefix).map_err(|e| format!("not an ELF file ({e})"))?;
    if !header.is_little_endian() {
        return Err("not a little-endian ELF file".into());
    }
    if header.e_type(LE) != elf::ET_CORE || header.e_machine(LE) != elf::EM_X86_64 {
        return Err(format!(
            "not an x86_64 core file (e_type {}, e_machine {})",
            header.e_type(LE),
            header.e_machine(LE)
        ));
    }
    let phnum = header
        .phnum(LE, &*prefix)
        .map_err(|e| format!("bad program header count ({e})"))? as u64;
    if header.e_phentsize(LE) as u64 != PHDR_LEN {
        return Err(format!(
            "program header size {}, expected {PHDR_LEN}",
            header.e_phentsize(LE)
        ));
    }
    // Only the table is read, wherever it is: never more than the file holds.
    let phoff = header.e_phoff(LE);
    let table_len = phnum
        .checked_mul(PHDR_LEN)
        .filter(|&n| phoff.checked_add(n).is_some_and(|end| end <= len))
        .ok_or("truncated (program headers end past the end of the file)")?;
    let table = read(phoff, table_len)?;
    let phdrs = object::pod::slice_from_all_bytes::<elf::ProgramHeader64<LE>>(&table)
        .map_err(|()| "bad program headers".to_string())?;
    phdrs
        .iter()
        .map(|p| {
            let s = Segment {
                p_type: p.p_type(LE),
                flags: p.p_flags(LE),
                offset: p.p_offset(LE),
                vaddr: p.p_vaddr(LE),
                filesz: p.p_filesz(LE),
                memsz: p.p_memsz(LE),
                align: p.p_align(LE),
            };
            match s.offset.checked_add(s.filesz) {
                Some(end) if end <= len => Ok(s),
                _ => Err(format!(
                    "truncated (segment at file offset {:#x}, {} bytes, ends past the end of the file)",
                    s.offset, s.filesz
                )),
            }
        })
        .collect()
}

/// A note as read back: owner name (without the NUL), type, descriptor.
pub struct Note<'a> {
    pub name: &'a [u8],
    pub n_type: u32,
    pub desc: &'a [u8],
}

/// How [`read_notes`] holds a note's descriptor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DescAs {
    Bytes,
    /// 32-byte words (leaves, tree nodes).
    Words32,
    /// Little-endian u64s (fast hashes).
    U64,
    /// Not read at all (a reader that wants one small note of a core's many).
    Skip,
}

/// A note's descriptor as [`read_notes`] read it.
pub enum Desc {
    Bytes(Vec<u8>),
    Words32(Vec<[u8; 32]>),
    U64(Vec<u64>),
    /// [`DescAs::Skip`]: not read.
    Skipped,
}

impl Desc {
    /// The descriptor's bytes as the note holds them.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Desc::Bytes(bytes) => bytes,
            Desc::Words32(words) => words.into_flattened(),
            Desc::U64(words) => words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            Desc::Skipped => Vec::new(),
        }
    }
}

/// A note as [`read_notes`] read it.
pub struct OwnedNote {
    /// Without the NUL.
    pub name: Vec<u8>,
    pub n_type: u32,
    pub desc: Desc,
}

impl OwnedNote {
    /// The descriptor's bytes, when it was read as bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.desc {
            Desc::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The notes of the PT_NOTE `segment` of `file` (laid out as [`parse_notes`] reads them), read
/// note by note: a descriptor `desc_as(name, type)` names as words, and whose size is a whole
/// number of them, goes straight into its vector, not copied out of one buffer of the whole
/// segment (a 4 GiB process has 44 MiB of leaves, hashes and tree nodes; fresh memory costs
/// more here than the copy). `hash` is given the segment's first `hashed` bytes, in order.
pub fn read_notes(
    file: &File,
    segment: &Segment,
    desc_as: impl Fn(&[u8], u32) -> DescAs,
    hashed: u64,
    hash: &mut dyn FnMut(&[u8]),
) -> Result<Vec<OwnedNote>, String> {
    let align: u64 = match segment.align {
        0..=4 => 4,
        8 => 8,
        a => return Err(format!("invalid note alignment {a}")),
    };
    let end = segment.filesz;
    // Reads [at, at + buf.len()) of the segment, hashing what lies below `hashed`.
    let mut read = |at: u64, buf: &mut [u8]| -> Result<(), String> {
        file.read_exact_at(buf, segment.offset + at)
            .map_err(|e| format!("reading notes at {:#x}: {e}", segment.offset + at))?;
        let hashed_here = hashed.saturating_sub(at).min(buf.len() as u64) as usize;
        hash(&buf[..hashed_here]);
        Ok(())
    };
    let mut notes = Vec::new();
    let mut at = 0u64;
    while at < end {
        if end - at < 12 {
            return Err("bad note (ELF note is too short)".into());
        }
        let mut header = [0u8; 12];
        read(at, &mut header)?;
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes")) as u64;
        let (namesz, descsz, n_type) = (word(0), word(4), word(8) as u32);
        let name_end = at + 12 + namesz;
        let desc_start = at + (12 + namesz).next_multiple_of(align);
        let desc_end = desc_start + descsz;
        if name_end > end {
            return Err("bad note (Invalid ELF note namesz)".into());
        }
        if desc_end > end {
            return Err("bad note (Invalid ELF note descsz)".into());
        }
        let mut name = vec![0u8; (desc_start - at - 12) as usize];
        read(at + 12, &mut name)?;
        name.truncate(namesz as usize);
        while name.last() == Some(&0) {
            name.pop();
        }
        let len = descsz as usize;
        let desc = match desc_as(&name, n_type) {
            DescAs::Words32 if len.is_multiple_of(32) => {
                let mut words = vec![[0u8; 32]; len / 32];
                read(desc_start, words.as_flattened_mut())?;
                Desc::Words32(words)
            }
            DescAs::U64 if len.is_multiple_of(8) => {
                let mut words = vec![0u64; len / 8];
                read(desc_start, object::pod::bytes_of_slice_mut(&mut words))?;
                words.iter_mut().for_each(|w| *w = u64::from_le(*w));
                Desc::U64(words)
            }
            DescAs::Skip => Desc::Skipped,
            _ => {
                let mut bytes = vec![0u8; len];
                read(desc_start, &mut bytes)?;
                Desc::Bytes(bytes)
            }
        };
        notes.push(OwnedNote { name, n_type, desc });
        // The padding after the descriptor, as far as the segment goes.
        let next = (at + (desc_end - at).next_multiple_of(align)).min(end);
        let mut pad = vec![0u8; (next - desc_end) as usize];
        read(desc_end, &mut pad)?;
        at = next;
    }
    Ok(notes)
}

/// Bytes one note takes: header, name with NUL, descriptor, each padded to 4.
pub fn note_len(name: &str, desc_len: usize) -> usize {
    12 + (name.len() + 1).next_multiple_of(4) + desc_len.next_multiple_of(4)
}

/// Appends one note to a PT_NOTE segment under construction. Fails if the descriptor does not
/// fit the 32-bit size field.
pub fn push_note(out: &mut Vec<u8>, name: &str, n_type: u32, desc: &[u8]) -> Result<(), String> {
    push_note_head(out, name, n_type, desc.len())?;
    out.extend_from_slice(desc);
    pad4(out);
    Ok(())
}

/// What [`push_note`] appends before the descriptor: header, name, padding. The descriptor
/// and [`note_padding`] follow it.
pub fn push_note_head(out: &mut Vec<u8>, name: &str, n_type: u32, desc_len: usize) -> Result<(), String> {
    let descsz =
        u32::try_from(desc_len).map_err(|_| format!("note {name}/{n_type:#x} is too large ({desc_len} bytes)"))?;
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&descsz.to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    Ok(())
}

/// The zero bytes after a descriptor of `desc_len` bytes.
pub fn note_padding(desc_len: usize) -> &'static [u8] {
    &[0; 3][..desc_len.next_multiple_of(4) - desc_len]
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Process ids an NT_PRSTATUS carries besides the thread id.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessIds {
    pub ppid: i32,
    pub pgrp: i32,
    pub sid: i32,
}

/// `struct elf_prstatus` for one thread: no pending signal, `pr_reg` = its registers.
pub fn prstatus(tid: i32, ids: ProcessIds, regs: &GpRegs, fpvalid: bool) -> [u8; PRSTATUS_LEN] {
    let mut out = [0u8; PRSTATUS_LEN];
    // pr_info (12), pr_cursig (2 + 2 pad), pr_sigpend (8), pr_sighold (8): zero.
    for (i, id) in [tid, ids.ppid, ids.pgrp, ids.sid].into_iter().enumerate() {
        out[PRSTATUS_PID + 4 * i..][..4].copy_from_slice(&id.to_le_bytes());
    }
    // pr_utime, pr_stime, pr_cutime, pr_cstime (4 x 16 bytes): zero.
    for (i, word) in regs.to_words().into_iter().enumerate() {
        out[PRSTATUS_REG + 8 * i..][..8].copy_from_slice(&word.to_le_bytes());
    }
    out[PRSTATUS_FPVALID..][..4].copy_from_slice(&(fpvalid as i32).to_le_bytes());
    out
}

/// The thread id and registers of an NT_PRSTATUS descriptor.
pub fn parse_prstatus(desc: &[u8]) -> Option<(i32, GpRegs)> {
    if desc.len() != PRSTATUS_LEN {
        return None;
    }
    let tid = i32::from_le_bytes(desc[PRSTATUS_PID..][..4].try_into().ok()?);
    let mut words = [0u64; GpRegs::WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64::from_le_bytes(desc[PRSTATUS_REG + 8 * i..][..8].try_into().ok()?);
    }
    Some((tid, GpRegs::from_words(words)))
}

/// What NT_PRPSINFO says about the process.
pub struct PsInfo<'a> {
    pub state: char,
    pub nice: i64,
    pub flags: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub ids: ProcessIds,
    pub comm: &'a str,
    /// The raw command line (NUL-separated arguments).
    pub cmdline: &'a [u8],
}

/// `struct elf_prpsinfo`.
pub fn prpsinfo(p: &PsInfo) -> [u8; PRPSINFO_LEN] {
    let mut out = [0u8; PRPSINFO_LEN];
    // pr_state is the index of the state letter in "RSDTZW" (the kernel's encoding), pr_sname
    // the letter, pr_zomb whether it is a zombie.
    out[0] = "RSDTZW".find(p.state.to_ascii_uppercase()).unwrap_or(0) as u8;
    out[1] = if p.state.is_ascii() { p.state as u8 } else { b'.' };
    out[2] = (p.state == 'Z') as u8;
    out[3] = p.nice.clamp(i8::MIN as i64, i8::MAX as i64) as i8 as u8;
    out[8..16].copy_from_slice(&p.flags.to_le_bytes());
    out[16..20].copy_from_slice(&p.uid.to_le_bytes());
    out[20..24].copy_from_slice(&p.gid.to_le_bytes());
    for (i, id) in [p.pid, p.ids.ppid, p.ids.pgrp, p.ids.sid].into_iter().enumerate() {
        out[24 + 4 * i..][..4].copy_from_slice(&id.to_le_bytes());
    }
    // pr_fname[16] and pr_psargs[80], each NUL-terminated; arguments joined by spaces.
    let fname = &p.comm.as_bytes()[..p.comm.len().min(15)];
    out[40..40 + fname.len()].copy_from_slice(fname);
    let args = p.cmdline.strip_suffix(b"\0").unwrap_or(p.cmdline);
    for (i, &b) in args.iter().take(79).enumerate() {
        out[56 + i] = if b == 0 { b' ' } else { b };
    }
    out
}

/// A file-backed mapping for NT_FILE.
pub struct FileMapping<'a> {
    pub start: u64,
    pub end: u64,
    /// File offset in bytes (written in pages, as the kernel does).
    pub offset: u64,
    pub path: &'a str,
}

/// The NT_FILE descriptor: count, page size, (start, end, page offset) triples, then the
/// NUL-terminated file names in the same order.
pub fn nt_file(mappings: &[FileMapping]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(mappings.len() as u64).to_le_bytes());
    out.extend_from_slice(&PAGE.to_le_bytes());
    for m in mappings {
        for word in [m.start, m.end, m.offset / PAGE] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    for m in mappings {
        out.extend_from_slice(m.path.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::NoteIterator;
    use std::io::Write;

    /// The notes of a PT_NOTE segment's bytes, as the `object` crate reads them: what
    /// [`read_notes`] is held against.
    fn parse_notes(data: &[u8], align: u64) -> Result<Vec<Note<'_>>, String> {
        let mut iter = NoteIterator::<elf::FileHeader64<LE>>::new(LE, align, data).map_err(|e| e.to_string())?;
        let mut notes = Vec::new();
        while let Some(note) = iter.next().map_err(|e| format!("bad note ({e})"))? {
            notes.push(Note {
                name: note.name(),
                n_type: note.n_type(LE),
                desc: note.desc(),
            });
        }
        Ok(notes)
    }

    /// `read_notes` reads what `parse_notes` reads from the same bytes, words only where they
    /// are whole, hashes exactly the first `hashed` bytes, and refuses a cut note as it does.
    #[test]
    fn notes_read_one_by_one_are_the_notes_parsed_at_once() {
        let mut out = Vec::new();
        push_note(&mut out, "CORE", 1, &[1, 2, 3]).unwrap();
        push_note(&mut out, "MEMZINC", 2, &[7; 64]).unwrap();
        push_note(&mut out, "MEMZINC", 2, &[8; 33]).unwrap();
        push_note(&mut out, "MEMZINC", 4, &5u64.to_le_bytes()).unwrap();
        push_note(&mut out, "LINUX", 0x202, &[]).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[0xee; 10]).unwrap();
        file.write_all(&out).unwrap();
        let segment = |filesz: u64| Segment {
            p_type: elf::PT_NOTE,
            flags: 0,
            offset: 10,
            vaddr: 0,
            filesz,
            memsz: 0,
            align: 4,
        };
        let desc_as = |name: &[u8], n_type: u32| match (name, n_type) {
            (b"MEMZINC", 2) => DescAs::Words32,
            (b"MEMZINC", 4) => DescAs::U64,
            _ => DescAs::Bytes,
        };
        let mut hashed = Vec::new();
        let read = read_notes(&file, &segment(out.len() as u64), desc_as, 50, &mut |b| {
            hashed.extend_from_slice(b)
        })
        .unwrap();
        assert_eq!(hashed, out[..50]);
        let parsed = parse_notes(&out, 4).unwrap();
        assert_eq!(read.len(), parsed.len());
        assert!(matches!(&read[1].desc, Desc::Words32(w) if w.len() == 2));
        assert!(matches!(&read[2].desc, Desc::Bytes(b) if b.len() == 33));
        assert!(matches!(&read[3].desc, Desc::U64(w) if w[..] == [5]));
        for (r, p) in read.into_iter().zip(&parsed) {
            let desc = r.desc.into_bytes();
            assert_eq!((&r.name[..], r.n_type, &desc[..]), (p.name, p.n_type, p.desc));
        }

        for cut in [out.len() as u64 - 1, 30, 5] {
            let err = read_notes(&file, &segment(cut), desc_as, 0, &mut |_| {}).err();
            assert!(err.is_some_and(|e| e.starts_with("bad note")), "cut at {cut}");
            assert!(parse_notes(&out[..cut as usize], 4).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn note_layout_is_padded_to_four() {
        let mut out = Vec::new();
        push_note(&mut out, "CORE", 1, &[1, 2, 3]).unwrap();
        assert_eq!(out.len(), note_len("CORE", 3));
        assert_eq!(out.len(), 12 + 8 + 4);
        push_note(&mut out, "MEMZINC", 2, &[9; 32]).unwrap();
        let notes = parse_notes(&out, 4).unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(
            (notes[0].name, notes[0].n_type, notes[0].desc),
            (&b"CORE"[..], 1, &[1u8, 2, 3][..])
        );
        assert_eq!(
            (notes[1].name, notes[1].n_type, notes[1].desc),
            (&b"MEMZINC"[..], 2, &[9u8; 32][..])
        );
    }

    #[test]
    fn prstatus_round_trips_and_matches_the_kernel_offsets() {
        let regs = GpRegs {
            rip: 0x401000,
            rsp: 0x7ffc_0000_1000,
            r15: 15,
            gs: 0x2b,
            ..GpRegs::default()
        };
        let bytes = prstatus(
            4242,
            ProcessIds {
                ppid: 1,
                pgrp: 4242,
                sid: 7,
            },
            &regs,
            true,
        );
        assert_eq!(parse_prstatus(&bytes), Some((4242, regs)));
        // pr_reg[0] is r15, pr_reg[16] is rip (user_regs_struct order).
        assert_eq!(bytes[112], 15);
        assert_eq!(
            u64::from_le_bytes(bytes[112 + 16 * 8..][..8].try_into().unwrap()),
            0x401000
        );
        assert_eq!(i32::from_le_bytes(bytes[36..40].try_into().unwrap()), 1);
        assert_eq!(i32::from_le_bytes(bytes[328..332].try_into().unwrap()), 1);
        assert_eq!(parse_prstatus(&bytes[..100]), None);
    }

    #[test]
    fn prpsinfo_fields() {
        let b = prpsinfo(&PsInfo {
            state: 'S',
            nice: -3,
            flags: 0x40,
            uid: 1000,
            gid: 100,
            pid: 99,
            ids: ProcessIds {
                ppid: 1,
                pgrp: 99,
                sid: 99,
            },
            comm: "a-very-long-command-name",
            cmdline: b"prog\0--flag\0value\0",
        });
        assert_eq!((b[0], b[1], b[3] as i8), (1, b'S', -3));
        assert_eq!(&b[40..56], b"a-very-long-com\0");
        assert_eq!(&b[56..74], b"prog --flag value\0");
        assert_eq!(i32::from_le_bytes(b[24..28].try_into().unwrap()), 99);
    }

    #[test]
    fn nt_file_layout() {
        let d = nt_file(&[FileMapping {
            start: 0x1000,
            end: 0x3000,
            offset: 0x2000,
            path: "/bin/x",
        }]);
        assert_eq!(d.len(), 16 + 24 + 7);
        assert_eq!(u64::from_le_bytes(d[32..40].try_into().unwrap()), 2, "offset in pages");
        assert_eq!(&d[40..], b"/bin/x\0");
    }

    fn round_trip(segments: &[Segment]) -> Result<Vec<Segment>, String> {
        let mut file = tempfile::tempfile().unwrap();
        let headers = encode_headers(segments);
        assert_eq!(headers.len() as u64, headers_len(segments.len()));
        file.write_all(&headers).unwrap();
        let len = headers.len() as u64 + 4 * PAGE;
        file.set_len(len).unwrap();
        read_segments(&file, len)
    }

    #[test]
    fn headers_round_trip_including_extended_numbering() {
        let few = vec![
            Segment::note(0x3000, 0x100),
            Segment::load(0x400000, 0x2000, 0x1000, 0x2000, "r-xp"),
        ];
        let back = round_trip(&few).unwrap();
        assert_eq!(back, few);
        assert_eq!(back[1].flags, elf::PF_R | elf::PF_X);
        // More than 65534 segments: e_phnum is PN_XNUM and the count lives in section 0.
        let mut many = vec![Segment::note(0, 0)];
        many.extend((0..70_000u64).map(|i| Segment::load(i * PAGE, PAGE, 0, 0, "rw-p")));
        assert_eq!(round_trip(&many).unwrap(), many);
        // A segment past the end of the file is refused.
        let past = vec![Segment::load(0, PAGE, 0x100_0000, PAGE, "r--p")];
        assert!(round_trip(&past).unwrap_err().contains("truncated"));
    }
}
