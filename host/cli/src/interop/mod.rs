//! Interop: a snapshot, its plans and its audited attestations in formats other tools read —
//! Parquet tables (every table defined once, read back with its schema checked), protobuf
//! records, a Hugging Face dataset repository and the Hub's HTTP API, the audit timeline and an
//! HTML report — and a snapshot imported back from its tables, byte for byte.
//!
//! Boundary: depends on memzinc's core and on `attest` (audit reports). The core file's layout
//! is the core's (`describe::CoreParts`); nothing here restates it.

mod export;
mod hub;
mod records;
mod report;
mod table_defs;

pub use export::{attestation_rows, export, find_table, import, ExportReport, Extras, ImportReport, Layout};
pub use hub::{write_card, Hub, PullReport, PushReport};
pub use records::{attestation_record, plan_record, write_record, ATTESTATIONS_FILE, PLANS_FILE, SNAPSHOT_META_FILE};
pub use report::{html, write_timeline_parquet};

/// Every Parquet table memzinc writes, defined once: schema, writer, schema-checking reader.
pub mod tables {
    pub use super::table_defs::{
        Column, Kind, Row, Table, Value, ALL, ATTESTATIONS, GRAPH_EDGES, GRAPH_OBJECTS, HEAP_CHUNKS, NOTES, PAGES,
        PLANS, REGIONS, SYMBOLS, TYPES, VIOLATIONS,
    };
}
