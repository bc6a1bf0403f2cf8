//! A snapshot as tables and back: `export` writes a core's regions, pages (with contents),
//! symbols, DWARF types and notes as Parquet (plus, when given, `check`'s violations, plan
//! files' writes and an audit's attestations); `import` rebuilds the core from the tables,
//! byte for byte, and refuses tables that do not give back a core whose pages match its leaves
//! and root (the core's layout is memzinc's core's: `describe::CoreParts`). The table
//! definitions live in `tables`; `export` also writes the metadata, plans and attestations as
//! protobuf records (`records`).

use std::path::{Path, PathBuf};

use memzinc::base::pb::snapshot as pb;
use memzinc::base::{Error, Result};
use memzinc::describe::{CoreParts, Snapshot, NOTE_OWNER, NT_MEMZINC_META};
use memzinc::introspect::{DebugTypes, TypeKind, PAGE_SIZE};
use memzinc::reason::{CheckReport, Plan};
use prost::Message as _;
use serde::Serialize;

use super::records;
use super::table_defs::{self as tables, Table, Value};
use crate::attest::AuditReport;

/// Where the tables go in a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `DIR/<table>.parquet`.
    Flat,
    /// `DIR/data/<table>/<table>.parquet`: a Hugging Face dataset repository's layout.
    Hub,
}

impl Layout {
    pub fn table_path(self, dir: &Path, table: &Table) -> PathBuf {
        match self {
            Layout::Flat => dir.join(format!("{}.parquet", table.name)),
            Layout::Hub => dir
                .join("data")
                .join(table.name)
                .join(format!("{}.parquet", table.name)),
        }
    }
}

/// The file holding `table` in `dir`, in either layout (for the hub layout, the first
/// `*.parquet` of `data/<table>/` by name).
pub fn find_table(dir: &Path, table: &Table) -> Option<PathBuf> {
    let flat = Layout::Flat.table_path(dir, table);
    if flat.is_file() {
        return Some(flat);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("data").join(table.name))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    files.into_iter().next()
}

/// What else to export besides the snapshot's own tables.
#[derive(Default)]
pub struct Extras {
    pub violations: Option<CheckReport>,
    /// The object graph `check` walked, as rows.
    pub graph: Option<memzinc::reason::graph::GraphData>,
    /// Plans (read from their files).
    pub plans: Vec<Plan>,
    pub audit: Option<AuditReport>,
}

/// Rows written per table, and why the types table is empty if it is.
#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    pub dir: PathBuf,
    pub root: String,
    pub tables: Vec<(String, u64)>,
    /// Protobuf records written (paths relative to `dir`, see `crate::records`).
    pub records: Vec<String>,
    pub types_unavailable: Option<String>,
}

/// Writes the snapshot's tables (regions, pages, symbols, types, notes) and `extras` into `dir`.
pub fn export(snap: &Snapshot, dir: &Path, layout: Layout, extras: &Extras) -> Result<ExportReport> {
    // The pages table is the core's page data as stored: one file's, at its regions' offsets.
    snap.require_full("export")?;
    let mut report = ExportReport {
        dir: dir.into(),
        root: snap.meta.root.clone(),
        ..ExportReport::default()
    };
    let mut write = |table: &Table, rows: Box<dyn Iterator<Item = Result<Vec<Value>>> + '_>| -> Result<()> {
        let path = layout.table_path(dir, table);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let n = table.write(&path, rows)?;
        report.tables.push((table.name.to_string(), n));
        Ok(())
    };
    let m = &snap.meta;
    write(
        &tables::REGIONS,
        Box::new(m.regions.iter().enumerate().map(|(i, r)| {
            Ok(vec![
                (i as u64).into(),
                r.map.start.into(),
                r.map.end.into(),
                r.map.perms.as_str().into(),
                r.map.offset.into(),
                r.map.dev.as_str().into(),
                r.map.inode.into(),
                r.map.path.as_str().into(),
                r.captured.into(),
                r.data_offset.into(),
                (r.unreadable_pages.len() as u64).into(),
            ])
        })),
    )?;
    let pages = m
        .regions
        .iter()
        .enumerate()
        .filter(|(_, r)| r.captured)
        .flat_map(|(i, r)| {
            (r.map.start..r.map.end)
                .step_by(PAGE_SIZE as usize)
                .map(move |a| (i, r, a))
        });
    write(
        &tables::PAGES,
        Box::new(
            pages
                .zip(&snap.leaves)
                .enumerate()
                .map(|(index, ((region, r, address), leaf))| {
                    Ok(vec![
                        (index as u64).into(),
                        (region as u64).into(),
                        address.into(),
                        r.unreadable_pages.binary_search(&address).is_err().into(),
                        hex::encode(leaf).into(),
                        Value::Binary(snap.stored_page(r, address)?),
                    ])
                }),
        ),
    )?;
    write(
        &tables::SYMBOLS,
        Box::new(m.symbols.iter().map(|s| {
            Ok(vec![
                s.name.as_str().into(),
                s.address.into(),
                s.size.into(),
                s.kind.as_str().into(),
            ])
        })),
    )?;
    let types = match DebugTypes::for_snapshot(snap) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("no DWARF types for {}: {e}", m.exe);
            report.types_unavailable = Some(e.to_string());
            DebugTypes::default()
        }
    };
    write(&tables::TYPES, Box::new(type_rows(&types).into_iter().map(Ok)))?;
    let notes = snap.raw_notes()?;
    let meta_note = notes
        .iter()
        .find(|(owner, ty, _)| owner == NOTE_OWNER && *ty == NT_MEMZINC_META)
        .map(|(_, _, desc)| desc.clone())
        .unwrap_or_default();
    write(
        &tables::NOTES,
        Box::new(notes.into_iter().enumerate().map(|(i, (owner, ty, desc))| {
            Ok(vec![
                (i as u64).into(),
                owner.into(),
                i64::from(ty).into(),
                Value::Binary(desc),
            ])
        })),
    )?;
    if let Some(check) = &extras.violations {
        write(
            &tables::VIOLATIONS,
            Box::new(check.findings.iter().map(|f| {
                let rule = serde_json::to_value(f.rule)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                Ok(vec![
                    rule.into(),
                    f.address.into(),
                    f.symbol.as_str().into(),
                    f.field.as_str().into(),
                    f.detail.as_str().into(),
                ])
            })),
        )?;
    }
    if let Some(graph) = &extras.graph {
        let opt = |v: Option<u32>| -> Value { v.map(i64::from).into() };
        write(
            &tables::GRAPH_OBJECTS,
            Box::new(graph.objects.iter().enumerate().map(move |(i, o)| {
                Ok(vec![
                    (i as u64).into(),
                    o.address.into(),
                    o.type_name.as_str().into(),
                    o.size.into(),
                    o.root.clone().into(),
                    opt(o.parent),
                    o.via.as_str().into(),
                    opt(o.element),
                    o.chunk.map(|c| c.as_str()).into(),
                ])
            })),
        )?;
        write(
            &tables::GRAPH_EDGES,
            Box::new(graph.edges.iter().map(move |e| {
                Ok(vec![
                    i64::from(e.from).into(),
                    e.field.as_str().into(),
                    e.slot.into(),
                    e.value.into(),
                    opt(e.to),
                    e.landing.as_str().into(),
                ])
            })),
        )?;
        write(
            &tables::HEAP_CHUNKS,
            Box::new(graph.chunks.iter().map(|c| {
                Ok(vec![
                    c.address.into(),
                    c.size.into(),
                    c.state.as_str().into(),
                    (c.arena != u16::MAX).then_some(i64::from(c.arena)).into(),
                ])
            })),
        )?;
    }
    if !extras.plans.is_empty() {
        write(
            &tables::PLANS,
            Box::new(extras.plans.iter().flat_map(|p| {
                let plan_hash = hex::encode(p.plan_hash());
                p.writes.iter().enumerate().map(move |(i, w)| {
                    Ok(vec![
                        plan_hash.as_str().into(),
                        p.target.as_str().into(),
                        hex::encode(p.target_id).into(),
                        hex::encode(p.snapshot_root).into(),
                        hex::encode(p.model_hash).into(),
                        p.solver.as_str().into(),
                        p.status().into(),
                        (i as u64).into(),
                        w.address.into(),
                        hex::encode(&w.old).into(),
                        hex::encode(&w.new).into(),
                        w.field.as_str().into(),
                        w.rule.as_str().into(),
                    ])
                })
            })),
        )?;
    }
    if let Some(audit) = &extras.audit {
        write(
            &tables::ATTESTATIONS,
            Box::new(attestation_rows(audit).into_iter().map(Ok)),
        )?;
    }
    // The same records as protobuf: the metadata note as stored, the plans, the audit.
    let meta = pb::SnapshotMeta::decode(&meta_note[..]).map_err(|e| Error::Corrupt {
        path: snap.path.clone(),
        kind: "snapshot",
        why: format!("metadata: {e}"),
    })?;
    records::write_record(dir, records::SNAPSHOT_META_FILE, &meta)?;
    report.records.push(records::SNAPSHOT_META_FILE.into());
    if !extras.plans.is_empty() {
        let set = memzinc::base::pb::plan::PlanSet {
            plans: extras.plans.iter().map(records::plan_record).collect(),
        };
        records::write_record(dir, records::PLANS_FILE, &set)?;
        report.records.push(records::PLANS_FILE.into());
    }
    if let Some(audit) = &extras.audit {
        records::write_record(dir, records::ATTESTATIONS_FILE, &records::attestation_record(audit)?)?;
        report.records.push(records::ATTESTATIONS_FILE.into());
    }
    // A table or record this export did not write must not survive from an earlier one.
    let stale = tables::ALL
        .iter()
        .filter(|t| !report.tables.iter().any(|(name, _)| name == t.name))
        .map(|t| layout.table_path(dir, t))
        .chain(
            [records::PLANS_FILE, records::ATTESTATIONS_FILE]
                .into_iter()
                .filter(|r| !report.records.iter().any(|w| w == r))
                .map(|r| dir.join(r)),
        );
    for path in stale {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
    }
    Ok(report)
}

/// The attestations table's rows of an audit.
pub fn attestation_rows(audit: &AuditReport) -> Vec<Vec<Value>> {
    audit
        .entries
        .iter()
        .map(|e| {
            vec![
                e.seq.into(),
                e.slot.into(),
                e.address.as_str().into(),
                e.signer.as_str().into(),
                e.plan_hash.as_str().into(),
                e.snapshot_root.as_str().into(),
                u64::from(e.writes).into(),
                u64::from(e.bytes).into(),
                e.hash.as_str().into(),
                u64::from(e.policy_revision).into(),
                e.policy_hash.as_str().into(),
                (e.witnesses.len() as u64).into(),
                e.witnesses
                    .iter()
                    .map(|w| w.witness.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
                    .into(),
                e.witnesses
                    .iter()
                    .map(|w| w.slot.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
                    .into(),
                e.revoked.into(),
                e.receipt.as_ref().map(|r| r.outcome.as_str()).into(),
                e.receipt.as_ref().map(|r| r.slot).into(),
            ]
        })
        .collect()
}

/// One row per member (struct and union members, Rust enum variants), or one per type
/// without members.
fn type_rows(types: &DebugTypes) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    for (&id, ty) in &types.types {
        let name = types.type_name(Some(id));
        let kind = match &ty.kind {
            TypeKind::Base { .. } => "base",
            TypeKind::Struct {
                variant_part: Some(_), ..
            } => "rust_enum",
            TypeKind::Struct { .. } => "struct",
            TypeKind::Union { .. } => "union",
            TypeKind::Enum { .. } => "enum",
            TypeKind::Pointer { .. } => "pointer",
            TypeKind::Array { .. } => "array",
            TypeKind::Typedef { .. } => "typedef",
            TypeKind::Qualified { .. } => "qualified",
            TypeKind::Function => "function",
            TypeKind::Other { .. } => "other",
        };
        let mut members: Vec<(Option<&str>, Option<u64>, Option<u64>)> = Vec::new();
        match &ty.kind {
            TypeKind::Struct {
                members: ms,
                variant_part,
            } => {
                members.extend(ms.iter().map(|m| (m.name.as_deref(), m.offset, m.type_id)));
                if let Some(vp) = variant_part {
                    members.extend(vp.variants.iter().map(|v| (v.name.as_deref(), v.offset, v.type_id)));
                }
            }
            TypeKind::Union { members: ms } => {
                members.extend(ms.iter().map(|m| (m.name.as_deref(), m.offset, m.type_id)))
            }
            _ => {}
        }
        let head = |rows: &mut Vec<Vec<Value>>, member: Option<(Option<&str>, Option<u64>, Option<u64>)>| {
            let (m_name, m_offset, m_type) = member.unwrap_or((None, None, None));
            rows.push(vec![
                id.into(),
                name.as_str().into(),
                kind.into(),
                ty.size.into(),
                member.map(|_| m_name.unwrap_or("")).into(),
                m_offset.into(),
                m_type.into(),
                m_type.map(|t| types.type_name(Some(t))).into(),
            ]);
        };
        if members.is_empty() {
            head(&mut rows, None);
        } else {
            for m in members {
                head(&mut rows, Some(m));
            }
        }
    }
    rows
}

/// What `import` rebuilt.
#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub output: PathBuf,
    pub root: String,
    pub pages: u64,
    pub file_bytes: u64,
}

fn table_file(dir: &Path, table: &Table) -> Result<PathBuf> {
    find_table(dir, table).ok_or_else(|| Error::Corrupt {
        path: dir.into(),
        kind: "table directory",
        why: format!(
            "no {} table ({}.parquet or data/{}/*.parquet)",
            table.name, table.name, table.name
        ),
    })
}

/// Rebuilds the core file `out` from the tables in `dir` (either layout). The core is checked
/// like `inspect` checks one (seal, regions, leaves, root, every page against its leaf) before
/// it is moved into place; nothing is written otherwise.
pub fn import(dir: &Path, out: &Path) -> Result<ImportReport> {
    let notes_path = table_file(dir, &tables::NOTES)?;
    let regions_path = table_file(dir, &tables::REGIONS)?;
    let pages_path = table_file(dir, &tables::PAGES)?;
    let mut notes: Vec<tables::Row> = tables::NOTES.read_all(&notes_path)?;
    notes.sort_by_key(|r| r.int(0));
    let mut parts = Vec::with_capacity(notes.len());
    for n in &notes {
        let ty = n.int(2);
        let ty = u32::try_from(ty).map_err(|_| tables::NOTES.corrupt_at(&notes_path, format!("note type {ty}")))?;
        parts.push((n.text(1), ty, n.bytes(3)));
    }
    let core = CoreParts::from_notes(parts).map_err(|e| tables::NOTES.corrupt_at(&notes_path, e))?;
    let meta = &core.meta;

    // The regions table must say what the metadata says.
    let regions = tables::REGIONS.read_all(&regions_path)?;
    if regions.len() != meta.regions.len() {
        return Err(tables::REGIONS.corrupt_at(
            &regions_path,
            format!(
                "{} rows but the metadata has {} regions",
                regions.len(),
                meta.regions.len()
            ),
        ));
    }
    for (row, r) in regions.iter().zip(&meta.regions) {
        if row.uint(1) != r.start || row.uint(2) != r.end || row.text(3) != r.perms || row.bool(8) != r.captured {
            return Err(tables::REGIONS.corrupt_at(
                &regions_path,
                format!("region {:#x}-{:#x} disagrees with the metadata", r.start, r.end),
            ));
        }
    }

    let rows = std::cell::RefCell::new(tables::PAGES.read(&pages_path)?);
    let mut count = 0u64;
    let page = |address: u64| -> Result<Vec<u8>> {
        let row = rows
            .borrow_mut()
            .next()
            .transpose()?
            .ok_or_else(|| tables::PAGES.corrupt_at(&pages_path, format!("ends before page {address:#x}")))?;
        let contents = row.bytes(5);
        if row.uint(2) != address || contents.len() as u64 != PAGE_SIZE {
            return Err(tables::PAGES.corrupt_at(
                &pages_path,
                format!(
                    "row {count}: expected page {address:#x} with 4096 bytes, found {:#x} with {}",
                    row.uint(2),
                    contents.len()
                ),
            ));
        }
        count += 1;
        Ok(contents.to_vec())
    };
    let done = || match rows.borrow_mut().next() {
        Some(_) => Err(tables::PAGES.corrupt_at(&pages_path, "more pages than the captured regions hold")),
        None => Ok(()),
    };
    let snap = core.write(out, dir, page, done)?;
    Ok(ImportReport {
        output: out.into(),
        root: snap.meta.root.clone(),
        pages: snap.meta.page_count,
        file_bytes: core.file_bytes(),
    })
}
