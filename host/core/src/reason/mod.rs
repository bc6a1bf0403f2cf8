//! Stage 3, reason: what is wrong with a snapshot and the smallest repair, decided by MiniZinc.
//! Rust does the fact-finding — pointers, bools and enums judged by the binary's DWARF, W^X, a
//! target spec's bounds, the rules of a target's model file, an exported heap — and hands the
//! solver indices and small integers only; the solver decides values; Rust re-checks the
//! answer and makes it a [`Plan`] of byte writes with its Merkle evidence.
//!
//! Boundary: depends on `base`, `introspect` and `describe`; never touches a live process. One
//! [`Finding`] for everything found, one [`Plan`] for everything planned (its file form is
//! private here), one entry point for planning ([`plan`]).

mod check;
mod field_order;
mod finding;
mod plan;
mod plan_file;
mod planner;
mod refheap;
mod spec;
mod user_rules;

pub mod graph;

pub mod solver;

pub use check::{check, check_snapshot, check_with_graph, check_with_types, Check, CheckReport, RulesJudged};
pub use finding::{judge_data_pointer, Finding, Rule};
pub use plan::{Plan, PlannedWrite};
pub use plan_file::PLAN_FORMAT;
pub use planner::{plan, target_name, PlanOptions, Planner};
pub use spec::{
    check_values, dzn, solve as solve_spec, spec_facts, write_dzn, FieldSpec, Solution, SpecFacts, TargetSpec,
};

/// The reference-counted heap a target exports (`MEMZINC_HEAP_*` globals), and repair at
/// scale: interchangeable objects grouped into classes so the model's size depends on the
/// classes, counts expanded back into writes (`models/heap_repair.mzn`; `models/heap.mzn`
/// judges a plan per object).
pub mod heap {
    pub use super::refheap::{
        decode, expand, expand_writes, findings, plan_bytes, plan_snapshot, summary, Class, ExpandError, Heap,
        HeapFacts, Rng, ARENA_SYMBOL, CODE_BASE, HEAP_BASE, MAX_SNAPSHOT_OBJECTS, OBJECTS_SYMBOL, OBJECT_SIZE, PAGE,
        RODATA_BASE, SUCC_SYMBOL, TYPES_SYMBOL,
    };
}

/// User rules: a target's model file (`models/targets/<name>.mzn`) judged over the struct
/// objects reachable from the globals it names, and repaired with the fewest bytes.
pub mod rules {
    pub use super::user_rules::{
        model_for, mzn_name, Facts, Judge, Judged, MemberFact, MemberKind, ObjectFact, StructFact, MAX_OBJECTS,
    };
}

/// Struct field orders that waste least space (`memzinc layout`), decided by MiniZinc.
pub mod layout {
    pub use super::field_order::{
        align_of, lower_bound, render, reorganize, reorganize_structs, struct_info, structs, waste, Decided,
        LayoutOptions, LayoutReport, Member, Skipped, StructInfo, StructReport, Waste, CACHE_LINE,
    };
}
