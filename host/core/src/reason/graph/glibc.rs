//! The allocator's view of a snapshot: glibc malloc's heaps walked chunk by chunk, so the object
//! graph can say of every heap pointer whether it is the start of a live chunk, inside one,
//! into a freed chunk (use after free), into a chunk's header or past a chunk's end.
//!
//! With libc's separate debug file (Debian's `libc6-dbg`, found by build-id) memzinc reads
//! `main_arena`, `mp_` and the TLS variable `tcache` by symbol and the allocator's own structs
//! (`malloc_state`, `malloc_par`, `heap_info`, `tcache_perthread_struct`) from its DWARF, and
//! walks every arena: the main heap from `mp_.sbrk_base` to `top`, each thread arena's heaps
//! (`heap_info` chains from the one holding its `top`), the fast bins, the other bins and each
//! thread's tcache (safe-linked lists demangled: `stored = (&next >> 12) ^ next`). Without it,
//! only the main heap is walked (`[heap]` from its start; the chunk that ends the mapping is
//! `top`), the first chunk is taken as the main thread's tcache when it validates as one, and
//! fast-bin chunks count as live: the view says so in one line. Mmapped chunks (IS_MMAPPED
//! headers at the start of anonymous mappings) are found either way.
//!
//! Heap bytes are input: every size, link and count is checked; a header that is not a chunk
//! ends that heap's walk with one line (and a `heap-corrupt` finding), and pointers into the
//! part not walked are then judged by mapping only. Every loop is bounded by the bytes it walks.
//! Another allocator (jemalloc, mimalloc, tcmalloc, or a `malloc` defined outside libc) is
//! detected by its symbols and named; what it allocated is judged by mapping only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::super::finding::{Finding, Rule};
use super::little_endian;
use super::spans::Spans;
use crate::describe::{Image, ModuleFile, Snapshot};
use crate::introspect::{separate_debug_file, DebugTypes};

const SIZE_SZ: u64 = 8;
/// Chunk header: prev_size and size.
pub const CHUNK_HDR: u64 = 16;
pub const MIN_CHUNK: u64 = 32;
const ALIGN: u64 = 16;
const PREV_INUSE: u64 = 1;
const IS_MMAPPED: u64 = 2;
const NON_MAIN_ARENA: u64 = 4;
/// Arenas followed through `next` at most.
const MAX_ARENAS: usize = 1024;
/// Heaps of one thread arena followed through `prev` at most.
const MAX_HEAPS: usize = 4096;
/// Notes kept (the rest are counted).
const MAX_NOTES: usize = 32;

/// Where the allocator's structs keep what the walk reads: offsets from DWARF, or the layout
/// a test or fuzz target gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MallocLayout {
    /// `sizeof(struct malloc_state)` and its members' offsets.
    pub state_size: u64,
    pub fastbins: u64,
    pub nfastbins: u64,
    pub top: u64,
    pub bins: u64,
    /// Pointers in `bins` (254 in glibc 2.36: fd and bk of 127 bins).
    pub nbins: u64,
    pub next: u64,
    pub system_mem: u64,
    /// `struct malloc_par`: `sbrk_base`, `n_mmaps`.
    pub par_sbrk_base: u64,
    pub par_n_mmaps: u64,
    /// `heap_info`: its size, `ar_ptr`, `prev`, `size`; and HEAP_MAX_SIZE (the alignment of
    /// thread heaps).
    pub heap_info_size: u64,
    pub heap_ar_ptr: u64,
    pub heap_prev: u64,
    pub heap_size: u64,
    pub heap_max: u64,
    /// `struct tcache_perthread_struct`: its size, `counts` (of `count_size` bytes each) and
    /// `entries`, `tcache_bins` of each.
    pub tcache: TcacheLayout,
}

/// `struct tcache_perthread_struct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcacheLayout {
    pub size: u64,
    pub counts: u64,
    pub count_size: u64,
    pub entries: u64,
    pub bins: u64,
}

impl TcacheLayout {
    /// glibc ≥ 2.30 on 64-bit: `uint16_t counts[64]` then `tcache_entry *entries[64]` — the
    /// layout heap.md describes, used when libc's DWARF is not there.
    pub const GLIBC_2_30: TcacheLayout = TcacheLayout {
        size: 64 * 2 + 64 * 8,
        counts: 0,
        count_size: 2,
        entries: 128,
        bins: 64,
    };

    /// The chunk size malloc gives the struct.
    pub fn chunk_size(&self) -> u64 {
        request_size(self.size)
    }
}

/// The chunk size malloc gives a request of `n` bytes (`request2size`).
pub fn request_size(n: u64) -> u64 {
    (n + SIZE_SZ + ALIGN - 1).max(MIN_CHUNK) & !(ALIGN - 1)
}

fn member(types: &DebugTypes, ty: u64, name: &str) -> Result<u64, String> {
    types
        .fields(ty)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|f| f.field.name == name)
        .map(|f| f.field.offset)
        .ok_or_else(|| format!("{} has no member {name}", types.type_name(Some(ty))))
}

fn array_len(types: &DebugTypes, ty: u64, name: &str) -> Result<u64, String> {
    let f = types
        .fields(ty)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|f| f.field.name == name)
        .ok_or_else(|| format!("{} has no member {name}", types.type_name(Some(ty))))?;
    match f.shape {
        crate::introspect::Shape::Array { count: Some(n), .. } => Ok(n),
        _ => Err(format!("{name} is not an array of known length")),
    }
}

impl MallocLayout {
    /// glibc 2.36 on x86-64 (Debian 12), as its DWARF gives it: what the fuzz target walks
    /// hostile heaps with, and what a test compares [`MallocLayout::from_dwarf`] against.
    pub const GLIBC_2_36_X86_64: MallocLayout = MallocLayout {
        state_size: 2200,
        fastbins: 16,
        nfastbins: 10,
        top: 96,
        bins: 112,
        nbins: 254,
        next: 2160,
        system_mem: 2184,
        par_sbrk_base: 96,
        par_n_mmaps: 60,
        heap_info_size: 48,
        heap_ar_ptr: 0,
        heap_prev: 8,
        heap_size: 16,
        heap_max: 64 << 20,
        tcache: TcacheLayout::GLIBC_2_30,
    };

    /// The layout from the allocator's DWARF (`malloc.c`'s unit of libc's debug file).
    pub fn from_dwarf(types: &DebugTypes) -> Result<MallocLayout, String> {
        let named = |n: &str| types.type_named(n).ok_or_else(|| format!("no struct {n} in the DWARF"));
        let state = named("malloc_state")?;
        let par = named("malloc_par")?;
        let heap = named("_heap_info")?;
        let tcache = named("tcache_perthread_struct")?;
        let counts_ty = types
            .fields(tcache)
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|f| f.field.name == "counts")
            .and_then(|f| match f.shape {
                crate::introspect::Shape::Array { element_id, .. } => element_id.and_then(|e| types.size_of(e)),
                _ => None,
            })
            .ok_or("tcache_perthread_struct.counts is not an array")?;
        let size = |t: u64| {
            types
                .size_of(t)
                .ok_or_else(|| format!("the size of {} is unknown", types.type_name(Some(t))))
        };
        Ok(MallocLayout {
            state_size: size(state)?,
            fastbins: member(types, state, "fastbinsY")?,
            nfastbins: array_len(types, state, "fastbinsY")?,
            top: member(types, state, "top")?,
            bins: member(types, state, "bins")?,
            nbins: array_len(types, state, "bins")?,
            next: member(types, state, "next")?,
            system_mem: member(types, state, "system_mem")?,
            par_sbrk_base: member(types, par, "sbrk_base")?,
            par_n_mmaps: member(types, par, "n_mmaps")?,
            heap_info_size: size(heap)?,
            heap_ar_ptr: member(types, heap, "ar_ptr")?,
            heap_prev: member(types, heap, "prev")?,
            heap_size: member(types, heap, "size")?,
            // 2 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: not in DWARF (a macro).
            heap_max: 64 << 20,
            tcache: TcacheLayout {
                size: size(tcache)?,
                counts: member(types, tcache, "counts")?,
                count_size: counts_ty,
                entries: member(types, tcache, "entries")?,
                bins: array_len(types, tcache, "entries")?,
            },
        })
    }
}

/// What memzinc knows of glibc's allocator in one snapshot: where its globals are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlibcDebug {
    pub layout: MallocLayout,
    /// Runtime addresses of `main_arena` and `mp_`.
    pub main_arena: u64,
    pub mp: u64,
    /// The offset of the TLS variable `tcache` in libc's TLS block.
    pub tcache_tls: Option<u64>,
    pub debug_file: PathBuf,
}

impl GlibcDebug {
    /// libc's debug file for the snapshot's libc: `Ok(None)` when the process maps no glibc,
    /// `Err(why)` (one line) when it does but its debug file cannot be used.
    pub fn load(snap: &Snapshot) -> Result<Option<GlibcDebug>, String> {
        let Some(libc) = libc_path(snap) else {
            return Ok(None);
        };
        let file = ModuleFile::read(snap, &libc).map_err(|e| e.to_string())?;
        let debug_file = separate_debug_file(&file.data, std::path::Path::new(&libc))?;
        let data = std::fs::read(&debug_file).map_err(|e| format!("{}: {e}", debug_file.display()))?;
        let types = DebugTypes::parse_units(&data, &debug_file, |unit| unit.ends_with("malloc.c"))
            .map_err(|e| e.to_string())?;
        let layout = MallocLayout::from_dwarf(&types).map_err(|e| format!("{}: {e}", debug_file.display()))?;
        use object::{Object, ObjectSymbol};
        let elf = object::File::parse(&*data).map_err(|e| format!("{}: {e}", debug_file.display()))?;
        let symbol = |name: &str| elf.symbols().find(|s| s.name() == Ok(name));
        let address = |name: &str| {
            symbol(name)
                .map(|s| s.address().wrapping_add(file.bias))
                .ok_or_else(|| format!("{}: no symbol {name}", debug_file.display()))
        };
        Ok(Some(GlibcDebug {
            layout,
            main_arena: address("main_arena")?,
            mp: address("mp_")?,
            tcache_tls: symbol("tcache")
                .filter(|s| s.kind() == object::SymbolKind::Tls)
                .map(|s| s.address()),
            debug_file,
        }))
    }
}

/// The mapped glibc (`libc.so.6`), if any.
fn libc_path(snap: &Snapshot) -> Option<String> {
    snap.meta
        .regions
        .iter()
        .find(|r| {
            let name = r.map.path.rsplit('/').next().unwrap_or("");
            r.map.offset == 0 && (name == "libc.so.6" || (name.starts_with("libc-2.") && name.ends_with(".so")))
        })
        .map(|r| r.map.path.clone())
}

/// Which allocator serves `malloc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Allocator {
    /// glibc's malloc (ptmalloc): walked.
    Glibc,
    /// Another allocator, by name (what allocated through it is judged by mapping only).
    Other { name: String, why: String },
    /// No allocator memzinc knows (a static binary without glibc's heap, ...).
    Unknown,
}

/// What a chunk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkState {
    Live,
    /// A live chunk of its own mapping (IS_MMAPPED).
    Mmapped,
    /// The allocator's own (a thread's tcache_perthread_struct).
    Allocator,
    /// Free, in a thread's tcache.
    Tcache,
    /// Free, in a fast bin.
    Fastbin,
    /// Free, in the unsorted, small or large bins (the next chunk's PREV_INUSE is clear).
    Bin,
    /// The arena's top chunk: memory never handed out since.
    Top,
}

impl ChunkState {
    pub fn is_free(self) -> bool {
        matches!(
            self,
            ChunkState::Tcache | ChunkState::Fastbin | ChunkState::Bin | ChunkState::Top
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChunkState::Live => "live",
            ChunkState::Mmapped => "mmapped",
            ChunkState::Allocator => "allocator",
            ChunkState::Tcache => "tcache",
            ChunkState::Fastbin => "fastbin",
            ChunkState::Bin => "bin",
            ChunkState::Top => "top",
        }
    }
}

/// One chunk (its header's address; the user's memory starts `CHUNK_HDR` bytes in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub address: u64,
    pub size: u64,
    pub state: ChunkState,
    /// The arena's index in [`HeapView::arenas`] (mmapped chunks: none, `u16::MAX`).
    pub arena: u16,
}

impl Chunk {
    /// Where the user's memory starts (what malloc returned).
    pub fn mem(&self) -> u64 {
        self.address.wrapping_add(CHUNK_HDR)
    }

    /// Bytes the user may use from [`Chunk::mem`] (`malloc_usable_size`): a live chunk also
    /// owns the next chunk's prev_size field; an mmapped one does not.
    pub fn usable(&self) -> u64 {
        match self.state {
            ChunkState::Mmapped => self.size.saturating_sub(CHUNK_HDR),
            _ => self.size.saturating_sub(CHUNK_HDR - SIZE_SZ),
        }
    }
}

/// One arena.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arena {
    pub address: u64,
    pub main: bool,
    /// Its heaps as `[start, end)`, and whether each was walked to its end.
    pub heaps: Vec<(u64, u64, bool)>,
    pub top: u64,
}

/// The allocator's view of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapView {
    pub allocator: Option<Allocator>,
    /// Where the view comes from: libc's debug file, or why it is degraded (one line).
    pub source: String,
    /// Whether libc's DWARF and globals were read (else the view is the degraded one).
    pub full: bool,
    pub arenas: Vec<Arena>,
    /// Sorted by address, disjoint. Not changed once the view is built: `landing` indexes
    /// them on its first call.
    pub chunks: Vec<Chunk>,
    /// Heap memory (arena heaps) that could not be walked, `[start, end)`: pointers there are
    /// judged by mapping only.
    pub unwalked: Vec<(u64, u64)>,
    /// Tcaches found (their chunks' addresses).
    pub tcaches: Vec<u64>,
    /// What the walk could not accept, one line each (at most 32; `notes_dropped` more).
    pub notes: Vec<String>,
    pub notes_dropped: usize,
    /// Corrupt headers and free lists, as findings.
    pub corrupt: Vec<Finding>,
    #[serde(skip)]
    index: ChunkIndex,
}

/// [`HeapView::chunks`] by address (`Spans`: a graph walk looks up every pointer, a heap has
/// millions of chunks), made on first use. Not part of the view's value: equal to any other,
/// and cloned empty.
#[derive(Default)]
struct ChunkIndex(std::sync::OnceLock<Spans<u32>>);

impl Clone for ChunkIndex {
    fn clone(&self) -> ChunkIndex {
        ChunkIndex::default()
    }
}

impl PartialEq for ChunkIndex {
    fn eq(&self, _: &ChunkIndex) -> bool {
        true
    }
}

impl Eq for ChunkIndex {}

impl std::fmt::Debug for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkIndex")
    }
}

/// Where a pointer lands, for the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landing<'a> {
    /// Not in memory the allocator manages (as far as the view knows).
    Outside,
    /// In a heap that could not be walked: judged by mapping only.
    Unwalked,
    Chunk(&'a Chunk),
}

impl HeapView {
    /// Where `address` lands.
    pub fn landing(&self, address: u64) -> Landing<'_> {
        if let Some(i) = self.chunk_index(address) {
            return Landing::Chunk(&self.chunks[i as usize]);
        }
        if self.unwalked.iter().any(|&(s, e)| s <= address && address < e) {
            return Landing::Unwalked;
        }
        Landing::Outside
    }

    /// The index in [`HeapView::chunks`] of the chunk holding `address`.
    pub fn chunk_index(&self, address: u64) -> Option<u32> {
        let index = self.index.0.get_or_init(|| {
            Spans::new(
                self.chunks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.address, c.address.saturating_add(c.size), i as u32))
                    .collect(),
            )
        });
        index.find(address).map(|(i, _)| i)
    }

    /// The chunk whose user memory starts exactly at `mem`.
    pub fn chunk_at_mem(&self, mem: u64) -> Option<&Chunk> {
        self.chunk_at(mem.checked_sub(CHUNK_HDR)?)
    }

    fn chunk_at(&self, address: u64) -> Option<&Chunk> {
        let i = self.chunks.binary_search_by_key(&address, |c| c.address).ok()?;
        Some(&self.chunks[i])
    }

    fn chunk_at_mut(&mut self, address: u64) -> Option<&mut Chunk> {
        let i = self.chunks.binary_search_by_key(&address, |c| c.address).ok()?;
        Some(&mut self.chunks[i])
    }

    fn in_unwalked(&self, address: u64) -> bool {
        self.unwalked.iter().any(|&(s, e)| s <= address && address < e)
    }

    fn note(&mut self, line: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(crate::base::printable(line));
        } else {
            self.notes_dropped += 1;
        }
    }

    fn corrupt(&mut self, address: u64, what: &str, detail: String) {
        self.note(format!("{what}: {detail}"));
        self.corrupt.push(Finding {
            rule: Rule::HeapCorrupt,
            address,
            symbol: what.to_string(),
            field: String::new(),
            detail,
        });
    }

    /// Counts of chunks per state.
    pub fn counts(&self) -> std::collections::BTreeMap<ChunkState, usize> {
        let mut out = std::collections::BTreeMap::new();
        for c in &self.chunks {
            *out.entry(c.state).or_insert(0) += 1;
        }
        out
    }

    /// One line: the allocator, its source, and what was found.
    pub fn summary(&self) -> String {
        let counts = self.counts();
        let n = |s: ChunkState| counts.get(&s).copied().unwrap_or(0);
        let name = match &self.allocator {
            Some(Allocator::Glibc) => "glibc malloc".to_string(),
            Some(Allocator::Other { name, why }) if self.chunks.is_empty() => {
                return format!("{name} ({why}): heap pointers are judged by mapping only");
            }
            Some(Allocator::Other { name, why }) => {
                format!("{name} ({why}): its heap pointers are judged by mapping only; glibc malloc")
            }
            Some(Allocator::Unknown) | None => "no allocator memzinc knows".to_string(),
        };
        format!(
            "{name}: {} arena(s), {} chunk(s): {} live, {} mmapped, {} free (tcache {}, fastbin {}, bins {}); {}",
            self.arenas.len(),
            self.chunks.len(),
            n(ChunkState::Live) + n(ChunkState::Allocator),
            n(ChunkState::Mmapped),
            n(ChunkState::Tcache) + n(ChunkState::Fastbin) + n(ChunkState::Bin),
            n(ChunkState::Tcache),
            n(ChunkState::Fastbin),
            n(ChunkState::Bin),
            self.source
        )
    }
}

/// What the heap walk is given besides the image.
#[derive(Clone, Debug, Default)]
pub struct WalkInput {
    /// libc's globals and layout, when its debug file was read.
    pub glibc: Option<GlibcDebug>,
    /// Why not, when a glibc is mapped but its debug file could not be used.
    pub degraded_why: Option<String>,
    /// Each thread's thread pointer (`fs_base`), for its tcache.
    pub thread_pointers: Vec<u64>,
    /// Another allocator found by its symbols.
    pub other: Option<(String, String)>,
}

impl WalkInput {
    /// What the snapshot says: libc's debug file, threads, other allocators.
    pub fn of(snap: &Snapshot) -> WalkInput {
        let (glibc, degraded_why) = match GlibcDebug::load(snap) {
            Ok(g) => (g, None),
            Err(why) => (None, Some(why)),
        };
        WalkInput {
            glibc,
            degraded_why,
            thread_pointers: snap.meta.threads.iter().map(|t| t.regs.fs_base).collect(),
            other: other_allocator(snap),
        }
    }
}

/// Another allocator, by the modules mapped and the symbols defined: (name, why).
pub fn other_allocator(snap: &Snapshot) -> Option<(String, String)> {
    const KNOWN: [(&str, &[&str]); 4] = [
        ("jemalloc", &["je_malloc", "mallctl", "je_mallctl"]),
        ("mimalloc", &["mi_malloc", "mi_free"]),
        ("tcmalloc", &["tc_malloc", "TCMallocGetenvSafe"]),
        ("Hoard", &["xxmalloc"]),
    ];
    for r in &snap.meta.regions {
        let file = r.map.path.rsplit('/').next().unwrap_or("");
        for (name, _) in KNOWN {
            if file.to_ascii_lowercase().contains(&name.to_ascii_lowercase()) {
                return Some((name.to_string(), format!("{} is mapped", r.map.path)));
            }
        }
    }
    for s in &snap.meta.symbols {
        for (name, symbols) in KNOWN {
            if symbols.contains(&s.name.as_str()) {
                let module = crate::describe::symbol_module(&snap.meta.regions, s.address).unwrap_or("?");
                return Some((name.to_string(), format!("{module} defines {}", s.name)));
            }
        }
    }
    // `malloc` defined outside libc: it interposes glibc's for the whole process.
    for s in snap
        .meta
        .symbols
        .iter()
        .filter(|s| s.name == "malloc" && s.kind == crate::introspect::SymbolKind::Function)
    {
        let module = crate::describe::symbol_module(&snap.meta.regions, s.address).unwrap_or("?");
        if module != "libc.so.6" && !module.starts_with("libc-2.") && !module.starts_with("ld-linux") {
            return Some((
                format!("a malloc of {module}'s own"),
                format!("{module} defines malloc, which interposes glibc's"),
            ));
        }
    }
    None
}

/// Reads the allocator's view of `image`.
pub fn walk(image: &Image, input: &WalkInput) -> HeapView {
    let mut view = HeapView::default();
    match &input.glibc {
        Some(g) => {
            view.full = true;
            view.source = format!("layout and globals from {}", g.debug_file.display());
            walk_glibc(image, g, input, &mut view);
        }
        None => {
            view.source = match &input.degraded_why {
                Some(why) => format!(
                    "without libc's debug file ({why}; install libc6-dbg): only the main heap is walked, fast-bin chunks count as live, thread arenas are judged by mapping only"
                ),
                None => "no glibc is mapped".into(),
            };
            if input.degraded_why.is_some() {
                walk_degraded(image, &mut view);
            }
        }
    }
    mmapped_chunks(image, &mut view);
    view.chunks.sort_by_key(|c| c.address);
    let glibc_used = view.chunks.iter().any(|c| c.state != ChunkState::Top) || !view.arenas.is_empty();
    view.allocator = Some(
        match (
            &input.other,
            glibc_used || input.glibc.is_some() || input.degraded_why.is_some(),
        ) {
            (Some((name, why)), _) => Allocator::Other {
                name: name.clone(),
                why: why.clone(),
            },
            (None, true) => Allocator::Glibc,
            (None, false) => Allocator::Unknown,
        },
    );
    view
}

fn align_up(v: u64) -> u64 {
    v.saturating_add(ALIGN - 1) & !(ALIGN - 1)
}

/// How one heap's walk ended.
struct HeapWalk {
    chunks: Vec<Chunk>,
    /// Size words, parallel to `chunks` (for PREV_INUSE).
    words: Vec<u64>,
    /// Where the walk stopped short of `end`, if it did, and why.
    stopped: Option<(u64, String)>,
}

/// Walks the chunks of `[start, end)`: until `top` (which becomes the Top chunk), or the end
/// (thread heaps end with two 16-byte fenceposts; without a known top, the chunk that ends
/// exactly at `end` is top).
fn walk_heap(image: &Image, start: u64, end: u64, top: Option<u64>, arena: u16) -> HeapWalk {
    let mut out = HeapWalk {
        chunks: Vec::new(),
        words: Vec::new(),
        stopped: None,
    };
    let mut p = start;
    let bound = (end.saturating_sub(start) / ALIGN).saturating_add(2);
    for _ in 0..bound {
        if p >= end {
            break;
        }
        let Some(word) = image.u64_at(p.saturating_add(SIZE_SZ)) else {
            out.stopped = Some((p, format!("chunk header at {p:#x} is not in the snapshot")));
            break;
        };
        let size = word & !7;
        if top == Some(p) {
            out.chunks.push(Chunk {
                address: p,
                size: size.min(end - p),
                state: ChunkState::Top,
                arena,
            });
            out.words.push(word);
            if p.checked_add(size).is_none_or(|e| e > end) {
                out.stopped = Some((
                    p,
                    format!("top chunk at {p:#x} has size {size:#x}, past the heap's end {end:#x}"),
                ));
            }
            break;
        }
        // Fenceposts: the end of a thread heap that grew into a new one.
        if size == CHUNK_HDR && p + 2 * CHUNK_HDR >= end {
            break;
        }
        if size < MIN_CHUNK || !size.is_multiple_of(ALIGN) {
            out.stopped = Some((
                p,
                format!("chunk at {p:#x} has size word {word:#x}: not a chunk size (garbage header)"),
            ));
            break;
        }
        if word & IS_MMAPPED != 0 {
            out.stopped = Some((
                p,
                format!("chunk at {p:#x} has size word {word:#x}: IS_MMAPPED inside an arena heap"),
            ));
            break;
        }
        let Some(next) = p.checked_add(size).filter(|&n| n <= end) else {
            out.stopped = Some((
                p,
                format!("chunk at {p:#x} has size {size:#x}, past the heap's end {end:#x} (garbage header)"),
            ));
            break;
        };
        let is_top = top.is_none() && next == end;
        out.chunks.push(Chunk {
            address: p,
            size,
            state: if is_top { ChunkState::Top } else { ChunkState::Live },
            arena,
        });
        out.words.push(word);
        p = next;
    }
    if top.is_some_and(|t| t >= start && t < end && !out.chunks.iter().any(|c| c.state == ChunkState::Top))
        && out.stopped.is_none()
    {
        out.stopped = Some((p, format!("the walk from {start:#x} never met top")));
    }
    // A chunk whose successor's PREV_INUSE is clear is free (tcache and fast-bin chunks keep it
    // set: they are free only by being on a list).
    for i in 0..out.chunks.len().saturating_sub(1) {
        if out.words[i + 1] & PREV_INUSE == 0 && out.chunks[i].state == ChunkState::Live {
            out.chunks[i].state = ChunkState::Bin;
        }
    }
    out
}

impl HeapView {
    /// Adds one heap's walk: its chunks, and what was not walked.
    fn add_heap(&mut self, walk: HeapWalk, end: u64, what: &str) -> bool {
        let whole = walk.stopped.is_none();
        if let Some((at, why)) = walk.stopped {
            self.corrupt(at, what, why);
            self.unwalked.push((at, end));
        }
        self.chunks.extend(walk.chunks);
        whole
    }
}

fn walk_glibc(image: &Image, g: &GlibcDebug, input: &WalkInput, view: &mut HeapView) {
    let l = &g.layout;
    let Some(top) = image.u64_at(g.main_arena.wrapping_add(l.top)) else {
        view.note(format!("main_arena at {:#x} is not in the snapshot", g.main_arena));
        return;
    };
    let mut arena = g.main_arena;
    for index in 0..MAX_ARENAS {
        let main = index == 0;
        if !main && arena == g.main_arena {
            break;
        }
        let what = if main {
            "main arena".to_string()
        } else {
            format!("arena at {arena:#x}")
        };
        let Some(a_top) = image.u64_at(arena.wrapping_add(l.top)) else {
            view.corrupt(arena, &what, format!("{what} is not in the snapshot"));
            break;
        };
        let mut record = Arena {
            address: arena,
            main,
            heaps: Vec::new(),
            top: a_top,
        };
        let a = index as u16;
        if main {
            let sbrk = image.u64_at(g.mp.wrapping_add(l.par_sbrk_base)).unwrap_or(0);
            if top != 0 && sbrk != 0 {
                let start = align_up(sbrk);
                // The main heap ends where its top chunk ends.
                let end = image
                    .u64_at(top.wrapping_add(SIZE_SZ))
                    .map(|w| top.saturating_add(w & !7))
                    .filter(|&e| e > top && image.segment(top).is_some_and(|s| e <= s.end))
                    .or_else(|| image.segment(top).map(|s| s.end))
                    .unwrap_or(top);
                let walk = walk_heap(image, start, end, Some(top), a);
                let whole = view.add_heap(walk, end, &what);
                record.heaps.push((start, end, whole));
            }
        } else {
            walk_thread_arena(image, l, arena, a_top, a, &what, &mut record, view);
        }
        fastbins(image, l, arena, &what, view);
        bins(image, l, arena, &what, view);
        view.arenas.push(record);
        match image.u64_at(arena.wrapping_add(l.next)) {
            Some(next) if next != 0 => arena = next,
            _ => {
                view.note(format!("{what}: its next arena link cannot be read"));
                break;
            }
        }
    }
    // Tcaches: through each thread's TLS block of libc (dtv), else the main heap's first chunk.
    let mut found = Vec::new();
    if let Some(offset) = g.tcache_tls {
        for &tp in &input.thread_pointers {
            if let Some(t) = tls_tcache(image, view, tp, offset, l.tcache) {
                if !found.contains(&t) {
                    found.push(t);
                }
            }
        }
    }
    first_chunk_tcache(view, image, l.tcache, &mut found);
    for t in found {
        tcache_lists(image, l.tcache, t, view);
    }
}

/// The heaps of a thread arena, newest (the one holding top) first, through `heap_info.prev`.
#[allow(clippy::too_many_arguments)]
fn walk_thread_arena(
    image: &Image,
    l: &MallocLayout,
    arena: u64,
    top: u64,
    a: u16,
    what: &str,
    record: &mut Arena,
    view: &mut HeapView,
) {
    let mut heap = top & !(l.heap_max - 1);
    for _ in 0..MAX_HEAPS {
        let (Some(ar_ptr), Some(prev), Some(size)) = (
            image.u64_at(heap.wrapping_add(l.heap_ar_ptr)),
            image.u64_at(heap.wrapping_add(l.heap_prev)),
            image.u64_at(heap.wrapping_add(l.heap_size)),
        ) else {
            view.corrupt(heap, what, format!("heap_info at {heap:#x} is not in the snapshot"));
            return;
        };
        if ar_ptr != arena || size > l.heap_max || size < l.heap_info_size {
            view.corrupt(
                heap,
                what,
                format!("heap_info at {heap:#x} names arena {ar_ptr:#x} and size {size:#x} (garbage header)"),
            );
            view.unwalked.push((heap, heap.saturating_add(size.min(l.heap_max))));
            return;
        }
        let first = arena > heap && arena < heap + l.heap_max;
        let start = if first {
            align_up(arena + l.state_size)
        } else {
            align_up(heap + l.heap_info_size)
        };
        let end = heap + size;
        let walk = walk_heap(image, start, end, (top >= start && top < end).then_some(top), a);
        let whole = view.add_heap(walk, end, what);
        record.heaps.push((start, end, whole));
        if prev == 0 || first {
            return;
        }
        if !prev.is_multiple_of(l.heap_max) {
            view.corrupt(
                heap,
                what,
                format!("heap_info at {heap:#x} has prev {prev:#x}, not a heap's start"),
            );
            return;
        }
        heap = prev;
    }
}

/// Marks the chunks of one singly linked free list as `state`. `entry` is where the first
/// chunk's link is stored (its user memory, `CHUNK_HDR` past its header); each link is
/// safe-linked (`stored = (&link >> 12) ^ next`) and points at the next chunk's header
/// (`to_header`, fast bins) or at its user memory (tcache). `expect_size` is the size every
/// chunk must have (0: any).
#[allow(clippy::too_many_arguments)]
fn free_list(
    image: &Image,
    view: &mut HeapView,
    mut entry: u64,
    to_header: bool,
    state: ChunkState,
    expect_size: u64,
    what: &str,
) -> usize {
    let bound = view.chunks.len() + 1;
    let mut n = 0;
    while entry != 0 && n <= bound {
        let chunk = entry.wrapping_sub(CHUNK_HDR);
        if !entry.is_multiple_of(ALIGN) {
            view.corrupt(
                entry,
                what,
                format!("entry {entry:#x} is misaligned (a corrupt or poisoned list)"),
            );
            return n;
        }
        if view.in_unwalked(chunk) {
            // Its heap's walk stopped before it (reported there): the list cannot be judged.
            view.note(format!(
                "{what}: entry {entry:#x} is in heap memory that could not be walked"
            ));
            return n;
        }
        let Some(c) = view.chunk_at_mut(chunk) else {
            view.corrupt(
                entry,
                what,
                format!("entry {entry:#x} is not a chunk of the heap (a corrupt or poisoned list)"),
            );
            return n;
        };
        if expect_size != 0 && c.size != expect_size {
            let size = c.size;
            view.corrupt(
                entry,
                what,
                format!("chunk at {chunk:#x} has size {size:#x}, the list holds {expect_size:#x}"),
            );
            return n;
        }
        if c.state == state {
            view.corrupt(
                entry,
                what,
                format!("chunk at {chunk:#x} is on it twice (a loop or a double free)"),
            );
            return n;
        }
        if c.state.is_free() && c.state != ChunkState::Bin {
            let other = c.state.as_str();
            view.corrupt(entry, what, format!("chunk at {chunk:#x} is also on a {other} list"));
            return n;
        }
        c.state = state;
        n += 1;
        let Some(stored) = image.u64_at(entry) else {
            return n;
        };
        let next = (entry >> 12) ^ stored;
        entry = if to_header && next != 0 {
            next.wrapping_add(CHUNK_HDR)
        } else {
            next
        };
    }
    n
}

fn fastbins(image: &Image, l: &MallocLayout, arena: u64, what: &str, view: &mut HeapView) {
    for i in 0..l.nfastbins {
        let Some(head) = image.u64_at(arena.wrapping_add(l.fastbins + 8 * i)) else {
            return;
        };
        if head != 0 {
            // fastbinsY holds chunk addresses; fd is at +16, mangled.
            free_list(
                image,
                view,
                head.wrapping_add(CHUNK_HDR),
                true,
                ChunkState::Fastbin,
                MIN_CHUNK + ALIGN * i,
                &format!("{what} fast bin {i}"),
            );
        }
    }
}

/// The doubly linked bins (unsorted, small, large): every chunk on them must be free.
fn bins(image: &Image, l: &MallocLayout, arena: u64, what: &str, view: &mut HeapView) {
    let bound = view.chunks.len() + 1;
    for i in 0..l.nbins / 2 {
        let slot = arena + l.bins + 16 * i;
        // bin_at(i): the fake chunk whose fd is the slot.
        let head = slot - CHUNK_HDR;
        let Some(mut fd) = image.u64_at(slot) else {
            return;
        };
        let mut n = 0;
        while fd != head && fd != 0 && n <= bound {
            if view.in_unwalked(fd) {
                view.note(format!(
                    "{what} bin {i}: {fd:#x} is in heap memory that could not be walked"
                ));
                break;
            }
            let Some(c) = view.chunk_at_mut(fd) else {
                view.corrupt(
                    slot,
                    what,
                    format!("bin {i}: {fd:#x} is not a chunk of the heap (a corrupt list)"),
                );
                break;
            };
            if c.state != ChunkState::Bin {
                let s = c.state.as_str();
                view.corrupt(fd, what, format!("bin {i}: chunk at {fd:#x} is {s}, not free"));
                break;
            }
            n += 1;
            match image.u64_at(fd.wrapping_add(CHUNK_HDR)) {
                Some(next) => fd = next,
                None => break,
            }
        }
    }
}

/// The tcache a thread's TLS block of libc points to: through the dtv (`tcbhead_t.dtv`,
/// entries of 16 bytes, libc's module id unknown so every entry is tried), validated.
fn tls_tcache(image: &Image, view: &HeapView, tp: u64, offset: u64, t: TcacheLayout) -> Option<u64> {
    let dtv = image.u64_at(tp.checked_add(8)?)?;
    let slots = image.u64_at(dtv.checked_sub(16)?).unwrap_or(16).min(64);
    for m in 1..=slots {
        let Some(block) = image.u64_at(dtv.checked_add(16 * m)?) else {
            continue;
        };
        if block == 0 || block == u64::MAX {
            continue;
        }
        let Some(cand) = block.checked_add(offset).and_then(|a| image.u64_at(a)) else {
            continue;
        };
        if cand != 0 && view.chunk_at_mem(cand).is_some_and(|c| c.size == t.chunk_size()) {
            return Some(cand - CHUNK_HDR);
        }
    }
    None
}

/// The main heap's first chunk, when it has the size of a tcache (the main thread's, allocated
/// by its first malloc) and no tcache was found through TLS.
fn first_chunk_tcache(view: &HeapView, image: &Image, t: TcacheLayout, found: &mut Vec<u64>) {
    let Some(first) = view
        .arenas
        .iter()
        .find(|a| a.main)
        .and_then(|a| a.heaps.first())
        .map(|h| h.0)
    else {
        return;
    };
    if found.contains(&first) {
        return;
    }
    let Some(c) = view.chunk_at(first) else {
        return;
    };
    if c.size != t.chunk_size() || c.state != ChunkState::Live {
        return;
    }
    // Valid only if every non-empty bin's count is non-zero and every empty one's is zero.
    let ok = (0..t.bins).all(|i| {
        let count = image.bytes(c.mem().wrapping_add(t.counts + t.count_size * i), t.count_size as usize);
        let entry = image.u64_at(c.mem() + t.entries + 8 * i);
        match (count, entry) {
            (Some(b), Some(e)) => {
                let n = little_endian(b);
                (n == 0) == (e == 0)
            }
            _ => false,
        }
    });
    if ok && found.is_empty() {
        found.push(first);
    }
}

fn tcache_lists(image: &Image, t: TcacheLayout, chunk: u64, view: &mut HeapView) {
    if let Some(c) = view.chunk_at_mut(chunk) {
        c.state = ChunkState::Allocator;
    }
    view.tcaches.push(chunk);
    let base = chunk + CHUNK_HDR;
    for i in 0..t.bins {
        let Some(entry) = image.u64_at(base.wrapping_add(t.entries + 8 * i)) else {
            return;
        };
        let count = image
            .bytes(base.wrapping_add(t.counts + t.count_size * i), t.count_size as usize)
            .map(little_endian)
            .unwrap_or(0);
        if entry == 0 {
            continue;
        }
        let what = format!("tcache at {chunk:#x} bin {i}");
        // entries[] point at user memory; next is its first word, mangled.
        let n = free_list(
            image,
            view,
            entry,
            false,
            ChunkState::Tcache,
            MIN_CHUNK + ALIGN * i,
            &what,
        );
        if n as u64 != count {
            view.note(format!("{what}: {n} chunk(s) on the list, its count says {count}"));
        }
    }
}

/// Without libc's DWARF: `[heap]` from its start, the chunk ending the mapping as top.
fn walk_degraded(image: &Image, view: &mut HeapView) {
    let Some(heap) = image.segments().iter().find(|s| s.path == "[heap]" && s.captured()) else {
        return;
    };
    let (start, end) = (align_up(heap.start), heap.end);
    let walk = walk_heap(image, start, end, None, 0);
    let whole = view.add_heap(walk, end, "main heap");
    view.arenas.push(Arena {
        address: 0,
        main: true,
        heaps: vec![(start, end, whole)],
        top: view
            .chunks
            .iter()
            .find(|c| c.state == ChunkState::Top)
            .map_or(0, |c| c.address),
    });
    let mut found = Vec::new();
    first_chunk_tcache(view, image, TcacheLayout::GLIBC_2_30, &mut found);
    for t in found {
        tcache_lists(image, TcacheLayout::GLIBC_2_30, t, view);
    }
}

/// Mmapped chunks: anonymous read-write mappings (outside the arenas' heaps) that start with
/// a chunk header whose IS_MMAPPED bit is set and whose size is whole pages within the mapping;
/// the kernel may have merged several into one mapping.
fn mmapped_chunks(image: &Image, view: &mut HeapView) {
    let heaps: Vec<(u64, u64)> = view
        .arenas
        .iter()
        .flat_map(|a| a.heaps.iter().map(|h| (h.0, h.1)))
        .collect();
    let mut found = Vec::new();
    for s in image.segments() {
        if !(s.anonymous() && s.writable && s.captured()) || s.path == "[heap]" {
            continue;
        }
        if heaps.iter().any(|&(hs, he)| hs < s.end && s.start < he) {
            continue;
        }
        let mut at = s.start;
        while at < s.end {
            let (Some(prev_size), Some(word)) = (image.u64_at(at), image.u64_at(at.wrapping_add(SIZE_SZ))) else {
                break;
            };
            let size = word & !7;
            let chunk = at.saturating_add(prev_size);
            let ok = word & IS_MMAPPED != 0
                && word & NON_MAIN_ARENA == 0
                && prev_size < 4096
                && prev_size.is_multiple_of(ALIGN)
                && size >= 4096
                && (size + prev_size).is_multiple_of(4096)
                && chunk.checked_add(size).is_some_and(|e| e <= s.end);
            if !ok {
                break;
            }
            found.push(Chunk {
                address: chunk,
                size,
                state: ChunkState::Mmapped,
                arena: u16::MAX,
            });
            at = chunk + size;
        }
    }
    view.chunks.extend(found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe::Segment;

    fn heap(chunks: &[(u64, u64)], top: u64) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x1000];
        let mut at = 0usize;
        for &(size, word_flags) in chunks {
            bytes[at + 8..at + 16].copy_from_slice(&(size | word_flags).to_le_bytes());
            at += size as usize;
        }
        bytes[at + 8..at + 16].copy_from_slice(&(top | PREV_INUSE).to_le_bytes());
        bytes
    }

    #[test]
    fn a_heap_walk_marks_free_chunks_by_the_next_ones_prev_inuse_and_stops_at_garbage() {
        // 0x20 live, 0x30 free (its successor's PREV_INUSE clear), 0x40 live, then top.
        let mut bytes = heap(&[(0x20, 1), (0x30, 1), (0x40, 0)], 0x1000 - 0x90);
        let base = 0x5555_0000_0000;
        let image = Image::from_segments(vec![Segment::new(base, bytes.clone(), "rw-p", "[heap]")]);
        let walk = walk_heap(&image, base, base + 0x1000, None, 0);
        let states: Vec<(u64, ChunkState)> = walk.chunks.iter().map(|c| (c.size, c.state)).collect();
        assert_eq!(
            states,
            vec![
                (0x20, ChunkState::Live),
                (0x30, ChunkState::Bin),
                (0x40, ChunkState::Live),
                (0x1000 - 0x90, ChunkState::Top)
            ]
        );
        assert!(walk.stopped.is_none());
        // A garbage size word in the second chunk: the walk stops there, with one line.
        bytes[0x28..0x30].copy_from_slice(&0x4141_4141_4141_4141u64.to_le_bytes());
        let image = Image::from_segments(vec![Segment::new(base, bytes, "rw-p", "[heap]")]);
        let walk = walk_heap(&image, base, base + 0x1000, None, 0);
        assert_eq!(walk.chunks.len(), 1);
        let (at, why) = walk.stopped.unwrap();
        assert_eq!(at, base + 0x20);
        assert!(why.contains("garbage header") && !why.contains('\n'), "{why}");
    }

    #[test]
    fn request_sizes_are_mallocs() {
        assert_eq!(request_size(1), 32);
        assert_eq!(request_size(24), 32);
        assert_eq!(request_size(25), 48);
        assert_eq!(TcacheLayout::GLIBC_2_30.chunk_size(), 0x290);
    }
}
