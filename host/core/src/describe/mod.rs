//! Stage 2, describe: a frozen process written down as one ELF core file that gdb opens — map,
//! registers, resources, symbols, every captured page with its SHA-256 leaf, the Merkle root
//! the attestor records, and protobuf metadata — and such a file opened and checked again.
//! Also incremental tracking (which pages a process wrote since its last snapshot), a program
//! that snapshots itself, and the snapshot read through its binary's DWARF.
//!
//! Boundary: depends on `base` and `introspect`. Owns the core file's layout: `take` writes it,
//! `Snapshot::open` checks it and `CoreParts` writes it again from exported parts, all by the one
//! definition in `corefile`. A snapshot is the state of one freeze: nothing here reasons about it.

mod capture;
mod corefile;
mod globals;
mod image;
mod region;
mod roots;
mod selfsnap;
mod snapshot;
mod take;
mod track;

pub use capture::shared_anonymous;
pub use globals::{library_types, read_snapshot_registry, FieldValue, ModuleFile, ObjectValue};
pub use image::{Image, Segment};
pub use region::{symbol_module, SnapRegion};
pub use selfsnap::{helper_request, serve_helper, snapshot_self, HELPER_ENV};
pub use snapshot::{
    open_since, seal_of, AuxEntry, CoreParts, RootCheck, Snapshot, SnapshotMeta, ThreadState, FORMAT_VERSION,
    NOTE_OWNER, NT_MEMZINC_FAST_HASHES, NT_MEMZINC_LEAVES, NT_MEMZINC_META, NT_MEMZINC_PARENT, NT_MEMZINC_SEAL,
    NT_MEMZINC_TREE_LEVEL,
};
pub use take::{
    take, take_frozen, take_frozen_cow, take_paused, take_since, write_protected_view, Pause, Since, TakeReport,
};
pub use track::{load_tracking, track, tracking_dir, TrackReport, TrackState};
