//! Checkpoint and restore: a snapshot core plus what a restore needs beyond memory, registers
//! and files (mm fields, rseq, signal state, credentials, limits, timers, the kernel objects
//! behind eventfd/timerfd/signalfd/pipe/epoll descriptors), all taken under one freeze; and the
//! process recreated from it with its PID by syscall injection. Dump and restore of each kind
//! of descriptor sit together (`fds`), as in CRIU.
//!
//! Boundary: depends on `base`, `introspect`, `describe` and `apply` (a plan applied to the
//! image); knows nothing of the chain — whether a plan may be applied is the caller's check.
//! Nothing half-restored: a failed step or memzinc dying kills the half-built process.

mod dump;
mod fds;
mod restore;

pub use dump::{checkpoint, AfterCheckpoint, CheckpointReport};
pub use restore::{restore, RestoreReport};
