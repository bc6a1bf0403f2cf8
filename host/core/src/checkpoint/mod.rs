//! Checkpoint and restore: a snapshot core plus what a restore needs beyond memory, registers
//! and files (mm fields, rseq, signal state, credentials, limits, timers, the kernel objects
//! behind eventfd/timerfd/signalfd/pipe/epoll descriptors, sockets), all taken under one freeze; and the
//! process recreated from it with its PID by syscall injection. Dump and restore of each kind
//! of descriptor sit together (`fds`, `sockets`), as in CRIU. What a restore could not make
//! again is refused when checkpointing, with the reason.
//!
//! Boundary: depends on `base`, `introspect`, `describe` and `apply` (a plan applied to the
//! image); knows nothing of the chain — whether a plan may be applied is the caller's check.
//! Nothing half-restored: a failed step or memzinc dying kills the half-built process.

mod dump;
mod fds;
mod lazy;
mod restore;
mod sockets;
mod tree;

pub use dump::{checkpoint, AfterCheckpoint, CheckpointReport};
pub use fds::{InheritFd, Replacement};
pub use lazy::LazyReport;
pub use restore::{restore, restore_lazy, restore_notes, LazyRestore, RestoreReport};
pub use tree::{
    checkpoint_tree, is_tree, restore_tree, tree_members, Member, TreeCheckpointReport, TreeRestoreReport, TREE_FILE,
};
