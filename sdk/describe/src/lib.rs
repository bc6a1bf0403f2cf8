//! memzinc-describe: a cooperating program describes its own state to memzinc.
//!
//! `#[derive(Describe)]` on a `#[repr(C)]` struct builds, at compile time, a [`TypeLayout`]: the
//! type's name, size, alignment and, per field, its name, offset (`core::mem::offset_of!`), size
//! (`size_of`), the type as written and a [`Kind`]. [`register`] records a live instance in
//! [`MEMZINC_REGISTRY`], a `#[no_mangle]` static that memzinc finds by symbol in the target (or
//! in a snapshot of it) and reads with plain memory reads: every structure here is `#[repr(C)]`
//! with pointers and lengths as machine words, so no Rust ABI detail leaks into the reader.
//!
//! ```
//! use memzinc_describe::{Describe, Kind};
//!
//! #[derive(Describe)]
//! #[repr(C)]
//! struct Counter {
//!     hits: u32,
//!     delta: i16,
//! }
//!
//! static COUNTER: Counter = Counter { hits: 0, delta: 0 };
//!
//! let layout = Counter::LAYOUT;
//! assert_eq!(layout.name(), "Counter");
//! assert_eq!(layout.fields()[1].name(), "delta");
//! assert_eq!(layout.fields()[1].offset, 4);
//! assert_eq!(layout.fields()[1].kind, Kind::Signed);
//! memzinc_describe::register("COUNTER", &COUNTER).unwrap();
//! ```

#![no_std]

// The derive names this crate by its absolute path; this lets the crate's own tests use it.
extern crate self as memzinc_describe;

use core::sync::atomic::{AtomicUsize, Ordering};

pub use memzinc_describe_derive::Describe;

/// The symbol memzinc looks up to find the registry.
pub const REGISTRY_SYMBOL: &str = "MEMZINC_REGISTRY";
/// First bytes of the registry; the last byte is the format version.
pub const REGISTRY_MAGIC: [u8; 8] = *b"MZDESC\0\x01";
/// How many instances one process can register.
pub const REGISTRY_CAPACITY: usize = 64;

/// Entry states (the `state` word of an [`Entry`]).
pub const ENTRY_FREE: usize = 0;
pub const ENTRY_WRITING: usize = 1;
pub const ENTRY_READY: usize = 2;

/// A `&'static str` as a `#[repr(C)]` pointer and length (the layout of `&str` is not
/// guaranteed; this one is).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    ptr: *const u8,
    len: usize,
}

impl Str {
    pub const fn new(s: &'static str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    pub fn as_str(&self) -> &'static str {
        // SAFETY: a `Str` is only built by `Str::new` (the fields are private) from a
        // `&'static str`, so the pointer and length describe valid, immutable UTF-8 forever.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(self.ptr, self.len)) }
    }
}

/// What a field holds, as far as memzinc needs to know to decode it. Stored as a `u32`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No element (the `element_kind` of a field that is not an array).
    None = 0,
    Unsigned = 1,
    Signed = 2,
    Float = 3,
    Bool = 4,
    Char = 5,
    Pointer = 6,
    Array = 7,
    /// A type that itself derives `Describe`; `layout` points at its description.
    Struct = 8,
    /// A field marked `#[describe(opaque)]`: only its place and size are known.
    Opaque = 9,
}

impl Kind {
    /// The kind stored as `value`, if it is one.
    pub fn from_u32(value: u32) -> Option<Kind> {
        Some(match value {
            0 => Kind::None,
            1 => Kind::Unsigned,
            2 => Kind::Signed,
            3 => Kind::Float,
            4 => Kind::Bool,
            5 => Kind::Char,
            6 => Kind::Pointer,
            7 => Kind::Array,
            8 => Kind::Struct,
            9 => Kind::Opaque,
            _ => return None,
        })
    }
}

/// One field of a described type.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FieldLayout {
    pub name: Str,
    /// The field's type as written in the source (`u32`, `[u8; 4]`, `*const Node`).
    pub type_name: Str,
    pub offset: usize,
    pub size: usize,
    pub kind: Kind,
    /// For arrays, the kind of the elements; otherwise [`Kind::None`].
    pub element_kind: Kind,
    /// For arrays, the element count; otherwise 1.
    pub count: usize,
    /// For a described struct (or an array of them), its layout. (`Option<&T>` is a nullable
    /// pointer in memory: null for `None`.)
    pub layout: Option<&'static TypeLayout>,
}

impl FieldLayout {
    pub fn name(&self) -> &'static str {
        self.name.as_str()
    }
    pub fn type_name(&self) -> &'static str {
        self.type_name.as_str()
    }
    /// The nested layout of a described struct field (or array of them).
    pub fn nested(&self) -> Option<&'static TypeLayout> {
        self.layout
    }
}

/// The description of one `#[repr(C)]` type.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TypeLayout {
    pub name: Str,
    pub size: usize,
    pub align: usize,
    fields: *const FieldLayout,
    field_count: usize,
}

impl TypeLayout {
    /// Used by the derive; `fields` must be the type's fields in declaration order.
    pub const fn new(name: &'static str, size: usize, align: usize, fields: &'static [FieldLayout]) -> TypeLayout {
        TypeLayout {
            name: Str::new(name),
            size,
            align,
            fields: fields.as_ptr(),
            field_count: fields.len(),
        }
    }
    pub fn name(&self) -> &'static str {
        self.name.as_str()
    }
    pub fn fields(&self) -> &'static [FieldLayout] {
        // SAFETY: the private fields are only set by `TypeLayout::new` from a `&'static` slice.
        unsafe { core::slice::from_raw_parts(self.fields, self.field_count) }
    }
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static FieldLayout> {
        self.fields().iter().find(|f| f.name() == name)
    }
}

/// A type with a compile-time layout description. Implement it with `#[derive(Describe)]`,
/// which refuses enums, generic types and types without `#[repr(C)]` (whose layout the
/// compiler may reorder); a field of a type that is not [`Field`] needs `#[describe(opaque)]`.
pub trait Describe {
    const LAYOUT: &'static TypeLayout;
}

/// How a field's type is described. Implemented for the primitive types, raw pointers,
/// references, arrays of described types and every `#[derive(Describe)]` type; mark a field of
/// any other type `#[describe(opaque)]`.
pub trait Field {
    const KIND: Kind;
    const ELEMENT_KIND: Kind = Kind::None;
    const COUNT: usize = 1;
    /// The layout of a described struct (or of an array's described elements).
    const NESTED: Option<&'static TypeLayout> = None;
}

macro_rules! field_kind {
    ($kind:ident: $($t:ty),*) => {
        $(impl Field for $t {
            const KIND: Kind = Kind::$kind;
        })*
    };
}
field_kind!(Unsigned: u8, u16, u32, u64, u128, usize);
field_kind!(Signed: i8, i16, i32, i64, i128, isize);
field_kind!(Float: f32, f64);
field_kind!(Bool: bool);
field_kind!(Char: char);

impl<T: ?Sized> Field for *const T {
    const KIND: Kind = Kind::Pointer;
}
impl<T: ?Sized> Field for *mut T {
    const KIND: Kind = Kind::Pointer;
}
impl<T: ?Sized> Field for &T {
    const KIND: Kind = Kind::Pointer;
}
impl<T: ?Sized> Field for &mut T {
    const KIND: Kind = Kind::Pointer;
}
impl<T: Field, const N: usize> Field for [T; N] {
    const KIND: Kind = Kind::Array;
    const ELEMENT_KIND: Kind = T::KIND;
    const COUNT: usize = N;
    const NESTED: Option<&'static TypeLayout> = T::NESTED;
}

/// One registered instance. Written once by [`register`]; `state` is set to [`ENTRY_READY`]
/// (release) after the other words, so a reader that sees READY sees the whole entry.
#[repr(C)]
pub struct Entry {
    state: AtomicUsize,
    /// Address of the instance.
    address: AtomicUsize,
    /// Address of its `TypeLayout`.
    layout: AtomicUsize,
    /// The name it was registered under (pointer and length of a `&'static str`).
    name_ptr: AtomicUsize,
    name_len: AtomicUsize,
}

impl Entry {
    const fn empty() -> Entry {
        Entry {
            state: AtomicUsize::new(ENTRY_FREE),
            address: AtomicUsize::new(0),
            layout: AtomicUsize::new(0),
            name_ptr: AtomicUsize::new(0),
            name_len: AtomicUsize::new(0),
        }
    }
}

/// The registry memzinc reads. Fixed capacity: registering never allocates. Its fields are
/// private (only [`register`] writes them); another process reads them at the [`abi`] offsets.
#[repr(C)]
pub struct Registry {
    magic: [u8; 8],
    /// `size_of::<usize>()` of the process, so a reader can refuse a layout it cannot read.
    word_size: u32,
    /// `size_of::<Entry>()`.
    entry_size: u32,
    capacity: usize,
    /// Slots claimed so far (some may still be `WRITING`).
    len: AtomicUsize,
    entries: [Entry; REGISTRY_CAPACITY],
}

/// The process's registry, found by memzinc through this symbol.
#[no_mangle]
#[used]
pub static MEMZINC_REGISTRY: Registry = Registry {
    magic: REGISTRY_MAGIC,
    word_size: core::mem::size_of::<usize>() as u32,
    entry_size: core::mem::size_of::<Entry>() as u32,
    capacity: REGISTRY_CAPACITY,
    len: AtomicUsize::new(0),
    entries: [const { Entry::empty() }; REGISTRY_CAPACITY],
};

/// Byte offsets and sizes of the registry's structures, for a reader in another process (the
/// memzinc host) that sees them only as bytes. They hold for every target with the same word
/// size as the reader (the registry's `word_size` says which).
pub mod abi {
    use super::{Entry, FieldLayout, Registry, Str, TypeLayout};
    use core::mem::{offset_of, size_of};

    pub const WORD: usize = size_of::<usize>();

    pub const REGISTRY_MAGIC: usize = offset_of!(Registry, magic);
    pub const REGISTRY_WORD_SIZE: usize = offset_of!(Registry, word_size);
    pub const REGISTRY_ENTRY_SIZE: usize = offset_of!(Registry, entry_size);
    pub const REGISTRY_CAPACITY: usize = offset_of!(Registry, capacity);
    pub const REGISTRY_LEN: usize = offset_of!(Registry, len);
    pub const REGISTRY_ENTRIES: usize = offset_of!(Registry, entries);

    pub const ENTRY_SIZE: usize = size_of::<Entry>();
    pub const ENTRY_STATE: usize = offset_of!(Entry, state);
    pub const ENTRY_ADDRESS: usize = offset_of!(Entry, address);
    pub const ENTRY_LAYOUT: usize = offset_of!(Entry, layout);
    pub const ENTRY_NAME_PTR: usize = offset_of!(Entry, name_ptr);
    pub const ENTRY_NAME_LEN: usize = offset_of!(Entry, name_len);

    pub const STR_PTR: usize = offset_of!(Str, ptr);
    pub const STR_LEN: usize = offset_of!(Str, len);

    pub const TYPE_SIZE_OF: usize = size_of::<TypeLayout>();
    pub const TYPE_NAME: usize = offset_of!(TypeLayout, name);
    pub const TYPE_SIZE: usize = offset_of!(TypeLayout, size);
    pub const TYPE_ALIGN: usize = offset_of!(TypeLayout, align);
    pub const TYPE_FIELDS: usize = offset_of!(TypeLayout, fields);
    pub const TYPE_FIELD_COUNT: usize = offset_of!(TypeLayout, field_count);

    pub const FIELD_SIZE_OF: usize = size_of::<FieldLayout>();
    pub const FIELD_NAME: usize = offset_of!(FieldLayout, name);
    pub const FIELD_TYPE_NAME: usize = offset_of!(FieldLayout, type_name);
    pub const FIELD_OFFSET: usize = offset_of!(FieldLayout, offset);
    pub const FIELD_SIZE: usize = offset_of!(FieldLayout, size);
    /// A `u32` ([`super::Kind`]).
    pub const FIELD_KIND: usize = offset_of!(FieldLayout, kind);
    /// A `u32` ([`super::Kind`]).
    pub const FIELD_ELEMENT_KIND: usize = offset_of!(FieldLayout, element_kind);
    pub const FIELD_COUNT: usize = offset_of!(FieldLayout, count);
    pub const FIELD_LAYOUT: usize = offset_of!(FieldLayout, layout);
}

/// [`register`] found every slot taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryFull;

impl core::fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the memzinc registry is full ({REGISTRY_CAPACITY} instances)")
    }
}

/// Records a live instance of a described type under `name`. Only the address is kept, so a
/// raw pointer is enough (`core::ptr::addr_of!(SOME_STATIC_MUT)`); the instance must stay at
/// that address for as long as memzinc may read it (a static, a leaked box).
pub fn register<T: Describe>(name: &'static str, instance: *const T) -> Result<(), RegistryFull> {
    let registry = &MEMZINC_REGISTRY;
    let mut slot = registry.len.load(Ordering::Relaxed);
    loop {
        if slot >= REGISTRY_CAPACITY {
            return Err(RegistryFull);
        }
        match registry
            .len
            .compare_exchange_weak(slot, slot + 1, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => slot = now,
        }
    }
    let entry = &registry.entries[slot];
    entry.state.store(ENTRY_WRITING, Ordering::Relaxed);
    entry.address.store(instance as usize, Ordering::Relaxed);
    entry
        .layout
        .store(T::LAYOUT as *const TypeLayout as usize, Ordering::Relaxed);
    entry.name_ptr.store(name.as_ptr() as usize, Ordering::Relaxed);
    entry.name_len.store(name.len(), Ordering::Relaxed);
    entry.state.store(ENTRY_READY, Ordering::Release);
    Ok(())
}

/// A registered instance, as this process sees its own registry.
#[derive(Clone, Copy, Debug)]
pub struct Registered {
    pub name: &'static str,
    pub address: usize,
    pub layout: &'static TypeLayout,
}

/// The instances registered so far in this process, in registration order.
pub fn registered() -> impl Iterator<Item = Registered> {
    let registry = &MEMZINC_REGISTRY;
    let len = registry.len.load(Ordering::Acquire).min(REGISTRY_CAPACITY);
    registry.entries[..len].iter().filter_map(|entry| {
        if entry.state.load(Ordering::Acquire) != ENTRY_READY {
            return None;
        }
        let layout = entry.layout.load(Ordering::Relaxed) as *const TypeLayout;
        let (ptr, len) = (
            entry.name_ptr.load(Ordering::Relaxed) as *const u8,
            entry.name_len.load(Ordering::Relaxed),
        );
        // SAFETY: entries are private and only `register` writes them; a READY entry was filled
        // (acquire pairs with its release store) from a `&'static TypeLayout` and a
        // `&'static str`, which live and stay immutable for the whole program.
        unsafe {
            Some(Registered {
                name: core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)),
                address: entry.address.load(Ordering::Relaxed),
                layout: &*layout,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Describe)]
    #[repr(C)]
    struct Inner {
        a: u8,
        b: u64,
    }

    #[derive(Describe)]
    #[repr(C)]
    struct Outer {
        flag: bool,
        inner: Inner,
        items: [Inner; 3],
        bytes: [u8; 5],
        next: *const Outer,
        temp: f32,
        delta: i16,
        #[describe(opaque)]
        other: core::cell::Cell<u32>,
    }

    #[derive(Describe)]
    #[repr(C)]
    struct Pair(u16, i64);

    #[test]
    fn layouts_match_the_compiler() {
        use core::mem::{offset_of, size_of};
        let l = Outer::LAYOUT;
        assert_eq!(l.name(), "Outer");
        assert_eq!((l.size, l.align), (size_of::<Outer>(), core::mem::align_of::<Outer>()));
        let names: [&str; 8] = core::array::from_fn(|i| l.fields()[i].name());
        assert_eq!(
            names,
            ["flag", "inner", "items", "bytes", "next", "temp", "delta", "other"]
        );
        let inner = l.field("inner").unwrap();
        assert_eq!(inner.offset, offset_of!(Outer, inner));
        assert_eq!(inner.size, 16);
        assert_eq!(inner.kind, Kind::Struct);
        assert_eq!(inner.nested().unwrap().name(), "Inner");
        assert_eq!(inner.nested().unwrap().field("b").unwrap().offset, 8);
        let items = l.field("items").unwrap();
        assert_eq!(
            (items.kind, items.element_kind, items.count, items.size),
            (Kind::Array, Kind::Struct, 3, 48)
        );
        assert_eq!(items.nested().unwrap().name(), "Inner");
        assert_eq!(items.type_name(), "[Inner; 3]");
        let bytes = l.field("bytes").unwrap();
        assert_eq!((bytes.element_kind, bytes.count), (Kind::Unsigned, 5));
        assert!(bytes.nested().is_none());
        assert_eq!(l.field("next").unwrap().kind, Kind::Pointer);
        assert_eq!(l.field("next").unwrap().type_name(), "*const Outer");
        assert_eq!(l.field("temp").unwrap().kind, Kind::Float);
        assert_eq!(l.field("flag").unwrap().kind, Kind::Bool);
        let delta = l.field("delta").unwrap();
        assert_eq!(
            (delta.kind, delta.offset, delta.size),
            (Kind::Signed, offset_of!(Outer, delta), 2)
        );
        assert_eq!(l.field("other").unwrap().kind, Kind::Opaque);
        assert_eq!(l.field("other").unwrap().size, 4);

        let p = Pair::LAYOUT;
        assert_eq!((p.fields()[0].name(), p.fields()[1].name()), ("0", "1"));
        assert_eq!(p.fields()[1].offset, offset_of!(Pair, 1));
    }

    #[test]
    fn registry_records_instances_in_order() {
        static A: Inner = Inner { a: 1, b: 2 };
        static B: Pair = Pair(3, -4);
        register("A", &A).unwrap();
        register("B", &B).unwrap();
        let mine: [Option<Registered>; 2] = [
            registered().find(|r| r.name == "A"),
            registered().find(|r| r.name == "B"),
        ];
        let [a, b] = mine.map(Option::unwrap);
        assert_eq!(a.address, &A as *const Inner as usize);
        assert_eq!(a.layout.name(), "Inner");
        assert_eq!(b.address, &B as *const Pair as usize);
        assert_eq!(MEMZINC_REGISTRY.magic, REGISTRY_MAGIC);
        assert_eq!(MEMZINC_REGISTRY.entry_size as usize, 5 * size_of::<usize>());
        // Fill the rest: the registry refuses once full and never overwrites.
        while MEMZINC_REGISTRY.len.load(Ordering::Relaxed) < REGISTRY_CAPACITY {
            register("filler", &A).unwrap();
        }
        assert_eq!(register("one too many", &A), Err(RegistryFull));
        assert_eq!(registered().count(), REGISTRY_CAPACITY);
        assert_eq!(registered().next().unwrap().name, "A");
    }
}
