//! The typed object graph of a snapshot: from every global of every module with DWARF, every
//! typed pointer followed transitively — C pointers, arrays, nested structs; Rust references,
//! `Box`, `Option<Box<T>>`, `Vec<T>`, slices, `String` — with each object's access path
//! (`g_list->next->next`), each edge, and each heap pointer judged by the allocator's view
//! ([`HeapView`]): start of a live chunk, inside one, into a freed chunk, into a header, past a
//! chunk's end, or by mapping only where the allocator is not glibc's.
//!
//! Heap and DWARF bytes are input: every read is bounds-checked through [`Image`], every loop
//! bounded (objects, array elements, time), and the bound that stopped a walk is reported,
//! never a hang on a cyclic or hostile graph (an object is visited once per type).

mod glibc;
mod layout;
mod relocate;
mod repair;
mod spans;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use glibc::{
    other_allocator, request_size, walk as walk_heap, Allocator, Arena, Chunk, ChunkState, GlibcDebug, HeapView,
    Landing, MallocLayout, TcacheLayout, WalkInput, CHUNK_HDR, MIN_CHUNK,
};
pub use layout::{EnumValues, GType, Layouts, Op, Pointee, TyIx};
pub use relocate::{plan_relocation, Relocation};
pub use repair::plan_graph;

use super::finding::{Finding, Rule};
use crate::describe::{Image, Snapshot};
use crate::introspect::DebugTypes;

/// No object (a root's parent), no element index.
pub const NONE: u32 = u32::MAX;
/// Elements of one array or buffer judged at most.
const MAX_ELEMENTS: u64 = 1 << 16;
/// Findings kept (the rest counted).
const MAX_FINDINGS: usize = 100_000;
/// A run of the same hop longer than this is written `(->next)*N` in a path.
const MAX_REPEAT: usize = 8;

/// How far a walk may go.
#[derive(Clone, Copy, Debug)]
pub struct GraphLimits {
    pub max_objects: usize,
    pub max_time: Duration,
}

impl Default for GraphLimits {
    fn default() -> Self {
        GraphLimits {
            max_objects: 8_000_000,
            max_time: Duration::from_secs(120),
        }
    }
}

/// Where a pointer lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointsTo {
    /// The start of a live heap chunk's memory (what malloc returned).
    ChunkStart,
    /// Inside a live chunk, the pointee within it.
    ChunkInterior,
    /// Into a chunk the allocator holds free (tcache, fast bin, bins, top): use after free.
    FreedChunk,
    /// Into a chunk's header (below what malloc returned).
    ChunkHeader,
    /// The pointee runs past the end of the chunk it starts in.
    PastChunk,
    /// Mapped memory the allocator view does not cover (globals, stacks, mappings, heaps of
    /// another allocator or that could not be walked): judged by mapping only.
    Mapped,
    /// One past the end of a region (valid to form, not to follow).
    OnePastEnd,
    Unmapped,
    Unreadable,
    Misaligned,
    /// A function pointer into memory that is not executable.
    NotExecutable,
    /// A function pointer into executable memory.
    Code,
    /// NULL where Rust promises a pointer is not (a reference, `Box`, `NonNull`).
    Null,
}

impl PointsTo {
    pub fn as_str(self) -> &'static str {
        match self {
            PointsTo::ChunkStart => "chunk-start",
            PointsTo::ChunkInterior => "chunk-interior",
            PointsTo::FreedChunk => "freed-chunk",
            PointsTo::ChunkHeader => "chunk-header",
            PointsTo::PastChunk => "past-chunk",
            PointsTo::Mapped => "mapped",
            PointsTo::OnePastEnd => "one-past-end",
            PointsTo::Unmapped => "unmapped",
            PointsTo::Unreadable => "unreadable",
            PointsTo::Misaligned => "misaligned",
            PointsTo::NotExecutable => "not-executable",
            PointsTo::Code => "code",
            PointsTo::Null => "null",
        }
    }

    /// Whether a pointer that lands here is broken.
    pub fn is_invalid(self) -> bool {
        matches!(
            self,
            PointsTo::FreedChunk
                | PointsTo::ChunkHeader
                | PointsTo::PastChunk
                | PointsTo::Unmapped
                | PointsTo::Unreadable
                | PointsTo::Misaligned
                | PointsTo::NotExecutable
                | PointsTo::Null
        )
    }

    fn rule(self) -> Option<Rule> {
        Some(match self {
            PointsTo::FreedChunk => Rule::PointerIntoFreedChunk,
            PointsTo::ChunkHeader | PointsTo::PastChunk => Rule::PointerOutsideChunk,
            PointsTo::Unmapped => Rule::PointerUnmapped,
            PointsTo::Unreadable => Rule::PointerUnreadable,
            PointsTo::Misaligned => Rule::PointerMisaligned,
            PointsTo::NotExecutable => Rule::FunctionPointerNotExecutable,
            PointsTo::Null => Rule::PointerNullNotAllowed,
            _ => return None,
        })
    }
}

/// A global the walk starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Its DWARF qualified name (`g_list`, `inventory::INVENTORY`).
    pub name: String,
    pub module: String,
    pub address: u64,
    pub object: u32,
}

/// One object: a global, or memory a typed pointer reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    pub address: u64,
    pub ty: TyIx,
    pub size: u64,
    /// The object whose pointer first reached it ([`NONE`] for a global).
    pub parent: u32,
    /// The field path of that pointer in the parent (an index into [`Layouts::fields`]).
    pub via: u32,
    /// The element index, when reached as element of a buffer or array ([`NONE`] otherwise).
    pub element: u32,
    /// Whether it was reached through a pointer (its fields are `p->f`) or is a value (a
    /// global, an element: `g.f`).
    pub deref: bool,
    /// Its heap chunk's index in [`HeapView::chunks`] ([`NONE`] when not on the heap).
    pub chunk: u32,
}

/// One non-null pointer of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: u32,
    /// The pointer's field path in `from` ([`Layouts::fields`]).
    pub field: u32,
    /// Where the pointer is stored, and its value.
    pub slot: u64,
    pub value: u64,
    /// The object it reaches ([`NONE`] when not followed: broken, untyped, or past the bound).
    pub to: u32,
    /// The type it points to ([`NONE`]: untyped, a function, a buffer).
    pub pointee: u32,
    /// A Rust `Vec`/slice/`String` buffer pointer (its length says how far it reaches).
    pub buffer: bool,
    /// A Rust reference, `Box` or `NonNull`: NULL is no repair for it.
    pub non_null: bool,
    pub landing: PointsTo,
}

/// An enum or bool of an object holding no valid value, with the values it may take instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    pub object: u32,
    pub field: u32,
    pub address: u64,
    pub size: u8,
    pub value: u64,
    /// The valid values (at most [`MAX_OPTIONS`], the ones closest in bytes first).
    pub options: Vec<u64>,
}

/// Valid values offered to the solver for one bad value at most.
pub const MAX_OPTIONS: usize = 64;

/// Bytes that differ between the `size` low bytes of `a` and `b`.
pub fn bytes_changed(a: u64, b: u64, size: u8) -> u32 {
    (0..size.min(8) as u32)
        .filter(|i| (a >> (8 * i)) as u8 != (b >> (8 * i)) as u8)
        .count() as u32
}

/// The graph of one snapshot.
pub struct Graph<'a> {
    pub layouts: Layouts<'a>,
    pub roots: Vec<Root>,
    pub objects: Vec<Object>,
    pub edges: Vec<Edge>,
    pub heap: HeapView,
    pub findings: Vec<Finding>,
    pub findings_dropped: usize,
    /// Live heap objects found only by scanning the chunks (nothing typed reaches them).
    pub orphans: Vec<u32>,
    /// The invalid enums and bools, with their valid values.
    pub bad_values: Vec<BadValue>,
    /// The bound that ended the walk early, in one line.
    pub bound: Option<String>,
    /// Parts not judged, and why.
    pub not_judged: Vec<String>,
    pub elapsed: Duration,
}

/// The graph as data (`check --json --graph`, `export --parquet`): every object, every
/// pointer, every heap chunk.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GraphData {
    pub objects: Vec<ObjectRow>,
    pub edges: Vec<EdgeRow>,
    pub chunks: Vec<Chunk>,
}

/// One object: objects are numbered by their place in [`GraphData::objects`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectRow {
    pub address: u64,
    pub type_name: String,
    pub size: u64,
    /// The global's name, for a root (an orphan's is `*(T *)0x…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The object whose pointer first reached it, the pointer's field and the element index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub via: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u32>,
    /// Its heap chunk's state (`live`, `mmapped`, ...), when it is on the heap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkState>,
}

/// One non-null pointer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EdgeRow {
    pub from: u32,
    pub field: String,
    pub slot: u64,
    pub value: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    pub landing: PointsTo,
}

/// What `check` says of the graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSummary {
    pub roots: usize,
    /// Live heap objects nothing typed reaches (found by scanning chunks).
    pub orphans: usize,
    pub objects: usize,
    pub heap_objects: usize,
    pub edges: usize,
    pub broken_edges: usize,
    /// The allocator's view in one line.
    pub heap: String,
    pub chunks: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub millis: u64,
}

struct Walk<'g, 'a> {
    g: &'g mut Graph<'a>,
    image: &'g Image,
    /// Keyed by address: FxHash, as a walk of millions of objects hashes each several times.
    seen: FxHashMap<(u64, TyIx), u32>,
    queue: VecDeque<u32>,
    started: Instant,
    limits: GraphLimits,
}

impl<'a> Graph<'a> {
    /// Walks the graph of `image` from every global of `modules` (name, DWARF at the
    /// snapshot's addresses), judging heap pointers by `heap`.
    pub fn walk(
        image: &Image,
        modules: &'a [DebugTypes],
        names: &[String],
        heap: HeapView,
        limits: GraphLimits,
    ) -> Graph<'a> {
        let mut g = Graph {
            layouts: Layouts::new(modules),
            roots: Vec::new(),
            objects: Vec::new(),
            edges: Vec::new(),
            findings: heap.corrupt.clone(),
            heap,
            findings_dropped: 0,
            orphans: Vec::new(),
            bad_values: Vec::new(),
            bound: None,
            not_judged: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let started = Instant::now();
        let mut w = Walk {
            g: &mut g,
            image,
            seen: FxHashMap::default(),
            queue: VecDeque::new(),
            started,
            limits,
        };
        for (m, types) in modules.iter().enumerate() {
            for v in &types.variables {
                let Some(id) = v.type_id else { continue };
                let Some(ty) = w.g.layouts.type_of(m as u16, id) else {
                    continue;
                };
                let size = w.g.layouts.types[ty as usize].size;
                if size == 0 || v.address == 0 || w.seen.contains_key(&(v.address, ty)) {
                    continue;
                }
                let Some(object) = w.add(v.address, ty, NONE, 0, NONE, false) else {
                    break;
                };
                w.g.roots.push(Root {
                    name: v.qualified_name.clone(),
                    module: names.get(m).cloned().unwrap_or_default(),
                    address: v.address,
                    object,
                });
            }
        }
        while let Some(o) = w.queue.pop_front() {
            if w.g.bound.is_some() {
                break;
            }
            if o % 4096 == 0 && w.started.elapsed() > w.limits.max_time {
                w.g.bound = Some(format!(
                    "stopped after {} s with {} objects (the time bound); the rest not judged",
                    w.limits.max_time.as_secs(),
                    w.g.objects.len()
                ));
                break;
            }
            w.visit(o);
        }
        if w.g.bound.is_none() {
            w.orphans();
        }
        let not_judged = std::mem::take(&mut g.layouts.not_judged);
        g.not_judged.extend(not_judged);
        g.elapsed = started.elapsed();
        g
    }

    /// What `check` prints of it.
    pub fn summary(&self) -> GraphSummary {
        GraphSummary {
            roots: self.roots.len() - self.orphans.len(),
            orphans: self.orphans.len(),
            objects: self.objects.len(),
            heap_objects: self.objects.iter().filter(|o| o.chunk != NONE).count(),
            edges: self.edges.len(),
            broken_edges: self.edges.iter().filter(|e| e.landing.is_invalid()).count(),
            heap: self.heap.summary(),
            chunks: self.heap.chunks.len(),
            bound: self.bound.clone(),
            notes: self.heap.notes.clone(),
            millis: self.elapsed.as_millis() as u64,
        }
    }

    /// The graph as rows.
    pub fn data(&self) -> GraphData {
        let some = |v: u32| (v != NONE).then_some(v);
        let roots: HashMap<u32, &str> = self.roots.iter().map(|r| (r.object, r.name.as_str())).collect();
        GraphData {
            objects: self
                .objects
                .iter()
                .enumerate()
                .map(|(i, o)| ObjectRow {
                    address: o.address,
                    type_name: self.layouts.types[o.ty as usize].name.clone(),
                    size: o.size,
                    root: roots.get(&(i as u32)).map(|n| n.to_string()),
                    parent: some(o.parent),
                    via: if o.parent == NONE {
                        String::new()
                    } else {
                        self.layouts.fields[o.via as usize].clone()
                    },
                    element: some(o.element),
                    chunk: (o.chunk != NONE).then(|| self.heap.chunks[o.chunk as usize].state),
                })
                .collect(),
            edges: self
                .edges
                .iter()
                .map(|e| EdgeRow {
                    from: e.from,
                    field: self.layouts.fields[e.field as usize].clone(),
                    slot: e.slot,
                    value: e.value,
                    to: some(e.to),
                    landing: e.landing,
                })
                .collect(),
            chunks: self.heap.chunks.clone(),
        }
    }

    /// Whether `e` is one of its object's links to its own type (`next`, `left`, ...).
    pub fn is_link(&self, e: &Edge) -> bool {
        let from = &self.objects[e.from as usize];
        e.pointee == from.ty
            && self.layouts.types[from.ty as usize]
                .self_slots
                .contains(&(e.slot - from.address))
    }

    /// The object's type name.
    pub fn type_name(&self, o: u32) -> &str {
        &self.layouts.types[self.objects[o as usize].ty as usize].name
    }

    /// The root an object was reached from, and the path from it (`->next->next`, `.items[3]`),
    /// runs of one hop shortened to `(->next)*N`.
    pub fn path(&self, o: u32) -> (String, String) {
        let mut hops = Vec::new();
        let mut at = o;
        let mut guard = self.objects.len() + 1;
        while at != NONE && guard > 0 {
            guard -= 1;
            let obj = &self.objects[at as usize];
            if obj.parent == NONE {
                break;
            }
            hops.push(self.hop(obj.parent, obj.via, obj.element));
            at = obj.parent;
        }
        let root = self
            .roots
            .iter()
            .find(|r| r.object == at)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        hops.reverse();
        (root, compress(&hops))
    }

    /// The path of a field of object `o` (`g_list->next->next` + `->next`).
    pub fn field_path(&self, o: u32, field: u32) -> (String, String) {
        let (root, mut path) = self.path(o);
        path.push_str(&self.access(o, field));
        (root, path)
    }

    /// `parent`'s field `via`, then element `element`.
    fn hop(&self, parent: u32, via: u32, element: u32) -> String {
        let mut s = self.access(parent, via);
        if element != NONE {
            s.push_str(&format!("[{element}]"));
        }
        s
    }

    /// How field `field` of object `o` is written after `o`'s own path.
    fn access(&self, o: u32, field: u32) -> String {
        let name = &self.layouts.fields[field as usize];
        if name.is_empty() {
            return String::new();
        }
        let deref = self.objects[o as usize].deref;
        match (deref, name.starts_with('[')) {
            (true, true) => format!("->{name}"),
            (true, false) => format!("->{name}"),
            (false, true) => name.clone(),
            (false, false) => format!(".{name}"),
        }
    }
}

/// `["->next", "->next", ...]` as one string, runs longer than [`MAX_REPEAT`] as `(->next)*N`.
fn compress(hops: &[String]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < hops.len() {
        let mut j = i + 1;
        while j < hops.len() && hops[j] == hops[i] {
            j += 1;
        }
        let n = j - i;
        if n > MAX_REPEAT {
            out.push_str(&format!("({})*{n}", hops[i]));
        } else {
            for _ in 0..n {
                out.push_str(&hops[i]);
            }
        }
        i = j;
    }
    out
}

impl Walk<'_, '_> {
    /// Adds an object once per (address, type); `None` when the object bound is reached.
    fn add(&mut self, address: u64, ty: TyIx, parent: u32, via: u32, element: u32, deref: bool) -> Option<u32> {
        if let Some(&o) = self.seen.get(&(address, ty)) {
            return Some(o);
        }
        if self.g.objects.len() >= self.limits.max_objects {
            if self.g.bound.is_none() {
                self.g.bound = Some(format!(
                    "stopped at {} objects (the object bound); the rest not judged",
                    self.limits.max_objects
                ));
            }
            return None;
        }
        let chunk = self.g.heap.chunk_index(address).unwrap_or(NONE);
        let o = self.g.objects.len() as u32;
        self.g.objects.push(Object {
            address,
            ty,
            size: self.g.layouts.types[ty as usize].size,
            parent,
            via,
            element,
            deref,
            chunk,
        });
        self.seen.insert((address, ty), o);
        self.queue.push_back(o);
        Some(o)
    }

    /// Live heap objects nothing typed reaches any more (leaked by a broken pointer): for each
    /// struct type a broken pointer points to, the live chunks of exactly its size class not yet
    /// holding an object of any type, whose bytes read as one — every pointer to its own type null or the start of
    /// a live chunk of the same size, every enum and bool valid. Added as roots named the way gdb
    /// names an unnamed object (`*(struct node *)0x55…`), and walked at once (so what one
    /// reaches is not taken for another).
    fn orphans(&mut self) {
        let mut wanted: Vec<TyIx> = self
            .g
            .edges
            .iter()
            .filter(|e| e.landing.is_invalid() && e.pointee != NONE)
            .map(|e| e.pointee)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut occupied = vec![false; self.g.heap.chunks.len()];
        let mut marked = 0;
        for ty in wanted {
            let size = self.g.layouts.types[ty as usize].size;
            if size == 0 {
                continue;
            }
            self.g.layouts.compile(ty);
            let class = request_size(size);
            let ops = self.g.layouts.shared_ops(ty);
            let starts: Vec<(usize, u64)> = self
                .g
                .heap
                .chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.size == class && matches!(c.state, ChunkState::Live))
                .map(|(i, c)| (i, c.mem()))
                .collect();
            for (chunk, mem) in starts {
                // A chunk that holds an object of any type is that object's, not an orphan.
                while marked < self.g.objects.len() {
                    if let Some(o) = occupied.get_mut(self.g.objects[marked].chunk as usize) {
                        *o = true;
                    }
                    marked += 1;
                }
                if occupied[chunk] || !self.looks_like(mem, size, ty, class, &ops) {
                    continue;
                }
                let name = format!("*({} *){mem:#x}", self.g.layouts.types[ty as usize].name);
                let Some(object) = self.add(mem, ty, NONE, 0, NONE, true) else {
                    return;
                };
                self.g.roots.push(Root {
                    name,
                    module: String::new(),
                    address: mem,
                    object,
                });
                self.g.orphans.push(object);
                // Walk it now, so what it reaches is not taken for another orphan.
                while let Some(o) = self.queue.pop_front() {
                    if self.g.bound.is_some() {
                        return;
                    }
                    self.visit(o);
                }
            }
        }
    }

    /// Whether the `size` bytes at `mem` read as an object of type `ty` (see [`Walk::orphans`]).
    fn looks_like(&self, mem: u64, size: u64, ty: TyIx, class: u64, ops: &[Op]) -> bool {
        let Some(bytes) = self.image.bytes(mem, size as usize) else {
            return false;
        };
        ops.iter().all(|op| match op {
            Op::Pointer { at, to, .. } if to.ty == Some(ty) => match word(bytes, *at, 8) {
                Some(0) => true,
                Some(v) => self
                    .g
                    .heap
                    .chunk_at_mem(v)
                    .is_some_and(|c| c.size == class && c.state == ChunkState::Live),
                None => false,
            },
            Op::Enum { at, size, values, .. } => {
                word(bytes, *at, *size as u64).is_some_and(|v| self.g.layouts.enums[*values as usize].accepts(v))
            }
            Op::Bool { at, .. } => word(bytes, *at, 1).is_some_and(|v| v <= 1),
            _ => true,
        })
    }

    fn visit(&mut self, o: u32) {
        let obj = self.g.objects[o as usize];
        self.g.layouts.compile(obj.ty);
        let ops = self.g.layouts.shared_ops(obj.ty);
        if ops.is_empty() {
            return;
        }
        let image = self.image;
        let owned;
        let bytes = match image.bytes(obj.address, obj.size as usize) {
            Some(b) => b,
            None => match image.bytes_across(obj.address, obj.size as usize) {
                Some(v) => {
                    owned = v;
                    &owned[..]
                }
                None => {
                    let (root, path) = self.g.path(o);
                    self.g.not_judged.push(format!(
                        "{root}{path}: {} bytes at {:#x} not in the snapshot",
                        obj.size, obj.address
                    ));
                    return;
                }
            },
        };
        self.ops(o, bytes, &ops, 0, None);
    }

    /// Runs `ops` on `bytes` (the object `o`'s), shifted by `base`; `prefix` names the array
    /// element they belong to (`nodes[3]`).
    fn ops(&mut self, o: u32, bytes: &[u8], ops: &[Op], base: u64, prefix: Option<&str>) {
        let name = |w: &mut Self, field: u32| -> u32 {
            match prefix {
                None => field,
                Some(p) => {
                    let f = layout::join(p, &w.g.layouts.fields[field as usize].clone());
                    w.g.layouts.field(&f)
                }
            }
        };
        for op in ops {
            if self.g.bound.is_some() {
                return;
            }
            let at = base + op.at();
            match op {
                Op::Pointer {
                    field, to, non_null, ..
                } => {
                    let Some(value) = word(bytes, at, 8) else { continue };
                    if value == 0 && !non_null {
                        continue;
                    }
                    let field = name(self, *field);
                    self.pointer(o, field, at, value, to, *non_null);
                }
                Op::Buffer {
                    len_at,
                    cap_at,
                    field,
                    elem,
                    ..
                } => {
                    let (Some(ptr), Some(len)) = (word(bytes, at, 8), word(bytes, base + len_at, 8)) else {
                        continue;
                    };
                    let cap = cap_at.and_then(|c| word(bytes, base + c, 8));
                    let field = name(self, *field);
                    self.buffer(o, field, at, ptr, len, cap, elem);
                }
                Op::Bool { field, .. } => {
                    if let Some(v) = word(bytes, at, 1) {
                        if v > 1 {
                            let field = name(self, *field);
                            self.find(o, field, at, Rule::BoolNotZeroOrOne, format!("bool holds {v}"));
                            self.bad_value(o, field, at, 1, v, vec![0, 1]);
                        }
                    }
                }
                Op::Char { field, .. } => {
                    if let Some(v) = word(bytes, at, 4) {
                        if char::from_u32(v as u32).is_none() {
                            let field = name(self, *field);
                            self.find(
                                o,
                                field,
                                at,
                                Rule::CharInvalid,
                                format!("char holds {v:#x}, not a Unicode scalar value"),
                            );
                        }
                    }
                }
                Op::Enum {
                    size, field, values, ..
                } => {
                    if let Some(v) = word(bytes, at, *size as u64) {
                        let e = &self.g.layouts.enums[*values as usize];
                        if !e.accepts(v) {
                            let detail = format!("{} holds {v}, none of its enumerators", e.type_name);
                            let options = e.values.iter().map(|(_, x)| *x).collect();
                            let field = name(self, *field);
                            self.find(o, field, at, Rule::EnumInvalid, detail);
                            self.bad_value(o, field, at, *size, v, options);
                        }
                    }
                }
                Op::Variant {
                    size,
                    field,
                    type_name,
                    arms,
                    default,
                    ..
                } => {
                    let Some(v) = word(bytes, at, *size as u64) else {
                        continue;
                    };
                    match arms.iter().find(|(d, _, _)| *d == v) {
                        Some((_, _, arm)) => self.ops(o, bytes, arm, base, prefix),
                        None => match default {
                            Some(arm) => self.ops(o, bytes, arm, base, prefix),
                            None => {
                                let detail = format!(
                                    "{} has tag {v}, which names no variant",
                                    self.g.layouts.fields[*type_name as usize]
                                );
                                let options = arms.iter().map(|(d, _, _)| *d).collect();
                                let field = name(self, *field);
                                self.find(o, field, at, Rule::EnumInvalid, detail);
                                self.bad_value(o, field, at, *size, v, options);
                            }
                        },
                    }
                }
                Op::Array {
                    count,
                    stride,
                    field,
                    ops: inner,
                    ..
                } => {
                    let field = name(self, *field);
                    let field_name = self.g.layouts.fields[field as usize].clone();
                    let n = (*count).min(MAX_ELEMENTS);
                    if n < *count {
                        let (root, path) = self.g.field_path(o, field);
                        self.g
                            .not_judged
                            .push(format!("{root}{path}: elements {n}.. of {count} not judged"));
                    }
                    for i in 0..n {
                        let p = format!("{field_name}[{i}]");
                        self.ops(o, bytes, inner, at + i * stride, Some(&p));
                    }
                }
            }
        }
    }

    /// Judges (and follows) one non-null pointer.
    fn pointer(&mut self, o: u32, field: u32, slot_offset: u64, value: u64, to: &Pointee, non_null: bool) {
        let element = NONE;
        let slot = self.g.objects[o as usize].address + slot_offset;
        let landing = self.land(value, to);
        let mut target = NONE;
        if !landing.is_invalid() && landing != PointsTo::OnePastEnd && !to.function {
            if let Some(ty) = to.ty {
                if to.size > 0 && self.image.bytes(value, to.size as usize).is_some() {
                    target = self.add(value, ty, o, field, element, true).unwrap_or(NONE);
                }
            }
        }
        if let Some(rule) = landing.rule() {
            let detail = self.landing_detail(value, landing, to);
            self.find(o, field, slot_offset, rule, detail);
        }
        self.g.edges.push(Edge {
            from: o,
            field,
            slot,
            value,
            to: target,
            pointee: to.ty.unwrap_or(NONE),
            buffer: false,
            non_null,
            landing,
        });
    }

    /// A buffer of `len` elements at `ptr` (a `Vec`, slice or `String`).
    #[allow(clippy::too_many_arguments)]
    fn buffer(&mut self, o: u32, field: u32, at: u64, ptr: u64, len: u64, cap: Option<u64>, elem: &Pointee) {
        if len == 0 || elem.zero_sized {
            return;
        }
        if let Some(cap) = cap {
            if len > cap {
                self.find(
                    o,
                    field,
                    at,
                    Rule::BufferLengthInvalid,
                    format!("length {len} is larger than its capacity {cap}"),
                );
                return;
            }
        }
        let Some(total) = len.checked_mul(elem.size.max(1)) else {
            self.find(
                o,
                field,
                at,
                Rule::BufferLengthInvalid,
                format!("length {len} overflows the address space"),
            );
            return;
        };
        let whole = Pointee {
            ty: None,
            size: total,
            align: elem.align,
            function: false,
            zero_sized: false,
        };
        let landing = self.land(ptr, &whole);
        let slot = self.g.objects[o as usize].address + at;
        if let Some(rule) = landing.rule() {
            let detail = format!(
                "buffer of {len} element(s): {}",
                self.landing_detail(ptr, landing, &whole)
            );
            self.find(o, field, at, rule, detail);
        }
        self.g.edges.push(Edge {
            from: o,
            field,
            slot,
            value: ptr,
            to: NONE,
            pointee: NONE,
            buffer: true,
            non_null: true,
            landing,
        });
        if landing.is_invalid() || self.image.bytes(ptr, total as usize).is_none() {
            return;
        }
        let Some(ty) = elem.ty else { return };
        self.g.layouts.compile(ty);
        if self.g.layouts.ops(ty).is_empty() {
            return;
        }
        for i in 0..len.min(MAX_ELEMENTS) {
            if self.add(ptr + i * elem.size, ty, o, field, i as u32, false).is_none() {
                return;
            }
        }
    }

    /// Where a non-null pointer to `to` lands.
    fn land(&self, value: u64, to: &Pointee) -> PointsTo {
        if value == 0 {
            return PointsTo::Null;
        }
        let Some(segment) = self.image.segment(value) else {
            let one_past = value
                .checked_sub(1)
                .and_then(|v| self.image.segment(v))
                .is_some_and(|s| s.end == value);
            return if one_past && !to.function {
                PointsTo::OnePastEnd
            } else {
                PointsTo::Unmapped
            };
        };
        if !segment.readable {
            return PointsTo::Unreadable;
        }
        if to.function {
            return if segment.executable {
                PointsTo::Code
            } else {
                PointsTo::NotExecutable
            };
        }
        if !value.is_multiple_of(to.align.max(1)) {
            return PointsTo::Misaligned;
        }
        match self.g.heap.landing(value) {
            Landing::Chunk(c) if c.state.is_free() => PointsTo::FreedChunk,
            Landing::Chunk(c) if c.state == ChunkState::Allocator => PointsTo::Mapped,
            Landing::Chunk(c) => {
                if value < c.mem() {
                    PointsTo::ChunkHeader
                } else if value.saturating_add(to.size) > c.mem() + c.usable() {
                    PointsTo::PastChunk
                } else if value == c.mem() {
                    PointsTo::ChunkStart
                } else {
                    PointsTo::ChunkInterior
                }
            }
            Landing::Unwalked | Landing::Outside => PointsTo::Mapped,
        }
    }

    fn landing_detail(&self, value: u64, landing: PointsTo, to: &Pointee) -> String {
        let chunk = match self.g.heap.landing(value) {
            Landing::Chunk(c) => format!(
                "the {} chunk at {:#x} (size {:#x})",
                c.state.as_str(),
                c.address,
                c.size
            ),
            _ => String::new(),
        };
        match landing {
            PointsTo::FreedChunk => format!("{value:#x} is in {chunk}: use after free"),
            PointsTo::ChunkHeader => format!("{value:#x} is in the header of {chunk}"),
            PointsTo::PastChunk => format!("{value:#x}: {} byte(s) from there run past the end of {chunk}", to.size),
            PointsTo::Unmapped => format!("{value:#x} is in no mapped region"),
            PointsTo::Unreadable => format!("{value:#x} is in memory that cannot be read"),
            PointsTo::Misaligned => format!("{value:#x} is not aligned to {}", to.align),
            PointsTo::NotExecutable => format!("{value:#x} is not in executable memory"),
            PointsTo::Null => "NULL, which Rust never lets this pointer be".to_string(),
            _ => format!("{value:#x}"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bad_value(&mut self, o: u32, field: u32, offset: u64, size: u8, value: u64, mut options: Vec<u64>) {
        options.sort_by_key(|&x| (bytes_changed(x, value, size), x));
        options.dedup();
        options.truncate(MAX_OPTIONS);
        self.g.bad_values.push(BadValue {
            object: o,
            field,
            address: self.g.objects[o as usize].address + offset,
            size,
            value,
            options,
        });
    }

    fn find(&mut self, o: u32, field: u32, offset: u64, rule: Rule, detail: String) {
        if self.g.findings.len() >= MAX_FINDINGS {
            self.g.findings_dropped += 1;
            return;
        }
        let (symbol, field) = self.g.field_path(o, field);
        let type_name = self.g.type_name(o).to_string();
        self.g.findings.push(Finding {
            rule,
            address: self.g.objects[o as usize].address + offset,
            symbol,
            // A finding's field has no leading dot (`Finding::location` adds it).
            field: field.strip_prefix('.').map(str::to_string).unwrap_or(field),
            detail: format!("{detail} (in {type_name})"),
        });
    }
}

/// The little-endian unsigned integer of `size` bytes at `at` in `bytes`.
fn word(bytes: &[u8], at: u64, size: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(little_endian(bytes.get(at..at.checked_add(size as usize)?)?))
}

/// The unsigned little-endian integer `b` holds (at most 8 bytes of it).
fn little_endian(b: &[u8]) -> u64 {
    b.iter().take(8).rev().fold(0u64, |a, x| a << 8 | *x as u64)
}

/// The graph and heap view of a snapshot, ready to walk: its image, the allocator's view and
/// the DWARF of every module that has some.
pub struct GraphInput {
    pub image: Image,
    pub heap: HeapView,
    pub names: Vec<String>,
    pub modules: Vec<DebugTypes>,
}

impl GraphInput {
    /// Reads what [`Graph::walk`] needs from `snap`; `main` is the main binary's DWARF at the
    /// snapshot's addresses (the libraries' is read here, for those that carry their own).
    pub fn of(snap: &Snapshot, main: DebugTypes) -> crate::base::Result<GraphInput> {
        let image = Image::of(snap)?;
        let heap = walk_heap(&image, &WalkInput::of(snap));
        let (mut names, mut modules) = (vec![snap.meta.exe.clone()], vec![main]);
        for (name, types) in crate::describe::library_types(snap) {
            names.push(name);
            modules.push(types);
        }
        Ok(GraphInput {
            image,
            heap,
            names,
            modules,
        })
    }

    pub fn walk(&self, limits: GraphLimits) -> Graph<'_> {
        Graph::walk(&self.image, &self.modules, &self.names, self.heap.clone(), limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_of_one_hop_are_shortened() {
        let hops: Vec<String> = ["->next"; 9]
            .iter()
            .map(|s| s.to_string())
            .chain(["->prev".to_string()])
            .collect();
        assert_eq!(compress(&hops), "(->next)*9->prev");
        assert_eq!(compress(&hops[..3]), "->next->next->next");
        assert_eq!(compress(&[]), "");
    }
}
