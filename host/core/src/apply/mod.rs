//! Stage 5, apply: change a live process by a plan, all or nothing — every thread stopped,
//! every old byte compared before anything is written, one write batch, a read-back, the old
//! bytes restored on any failure.
//!
//! Boundary: depends on `base` and `introspect`. Knows nothing of the chain: whether a plan may
//! be applied (an unrevoked attestation) is checked by the caller before [`apply`] runs.

mod patch;

pub use patch::{apply, expect_old_bytes, ApplyReport, FAULT_POINTS};
