//! Every Parquet table memzinc writes or reads, each defined once: its columns (the schema),
//! a writer that streams rows into row groups, and a reader that checks a file's schema against
//! the definition (a missing column or a wrong type is an error, not a guess) before it yields
//! rows. Parquet without arrow: the tables are flat, so plain columns are enough.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;

use memzinc::base::{Error, Result};

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int64,
    Bool,
    /// UTF-8 text (`BYTE_ARRAY (UTF8)`).
    Text,
    /// Raw bytes (`BYTE_ARRAY`).
    Binary,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// OPTIONAL in Parquet; everything else is REQUIRED.
    pub nullable: bool,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
    }
}

const fn nullable(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
    }
}

/// One table: its name (also its file's stem), what one row is, and its columns.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// "regions table": how errors name a file that should hold this table.
    pub kind: &'static str,
    pub row_is: &'static str,
    pub columns: &'static [Column],
}

use Kind::{Binary, Bool, Int64, Text};

pub const REGIONS: Table = Table {
    name: "regions",
    kind: "regions table",
    row_is: "one mapping of /proc/PID/maps, in map order (PT_LOAD i of the core)",
    columns: &[
        col("index", Int64),
        col("start", Int64),
        col("end", Int64),
        col("perms", Text),
        col("offset", Int64),
        col("dev", Text),
        col("inode", Int64),
        col("path", Text),
        col("captured", Bool),
        col("data_offset", Int64),
        col("unreadable_pages", Int64),
    ],
};

pub const PAGES: Table = Table {
    name: "pages",
    kind: "pages table",
    row_is: "one captured 4 KiB page, in leaf order, with its contents and Merkle leaf",
    columns: &[
        col("index", Int64),
        col("region", Int64),
        col("address", Int64),
        col("readable", Bool),
        col("leaf", Text),
        col("contents", Binary),
    ],
};

pub const SYMBOLS: Table = Table {
    name: "symbols",
    kind: "symbols table",
    row_is: "one function or data symbol at its runtime address",
    columns: &[
        col("name", Text),
        col("address", Int64),
        col("size", Int64),
        col("kind", Text),
    ],
};

pub const TYPES: Table = Table {
    name: "types",
    kind: "types table",
    row_is: "one member of a DWARF type (or the type alone when it has no members)",
    columns: &[
        col("type_id", Int64),
        col("type_name", Text),
        col("kind", Text),
        nullable("size", Int64),
        nullable("member", Text),
        nullable("member_offset", Int64),
        nullable("member_type_id", Int64),
        nullable("member_type", Text),
    ],
};

pub const NOTES: Table = Table {
    name: "notes",
    kind: "notes table",
    row_is: "one ELF note of the core, verbatim and in order (registers, process info, the \
             protobuf metadata, leaves, seal): what makes the imported core byte-identical",
    columns: &[
        col("index", Int64),
        col("owner", Text),
        col("type", Int64),
        col("desc", Binary),
    ],
};

pub const VIOLATIONS: Table = Table {
    name: "violations",
    kind: "violations table",
    row_is: "one finding of `memzinc check`",
    columns: &[
        col("rule", Text),
        col("address", Int64),
        col("symbol", Text),
        col("field", Text),
        col("detail", Text),
    ],
};

pub const PLANS: Table = Table {
    name: "plans",
    kind: "plans table",
    row_is: "one write of a plan file (plan columns repeated per write)",
    columns: &[
        col("plan_hash", Text),
        col("target", Text),
        col("target_id", Text),
        col("snapshot_root", Text),
        col("model_hash", Text),
        col("solver", Text),
        col("status", Text),
        col("write_index", Int64),
        col("address", Int64),
        col("old", Text),
        col("new", Text),
        col("field", Text),
        col("rule", Text),
    ],
};

pub const ATTESTATIONS: Table = Table {
    name: "attestations",
    kind: "attestations table",
    row_is: "one link of a target's attestation chain, as `memzinc audit` verified it",
    columns: &[
        col("seq", Int64),
        col("slot", Int64),
        col("address", Text),
        col("signer", Text),
        col("plan_hash", Text),
        col("snapshot_root", Text),
        col("writes", Int64),
        col("bytes", Int64),
        col("link_hash", Text),
        col("policy_revision", Int64),
        col("policy_hash", Text),
        col("witness_count", Int64),
        // The witnesses whose records counted (base58, in the order cited) and each record's
        // slot then, comma-separated in the same order.
        col("witnesses", Text),
        col("witness_slots", Text),
        col("revoked", Bool),
        nullable("receipt_outcome", Text),
        nullable("receipt_slot", Int64),
    ],
};

pub const GRAPH_OBJECTS: Table = Table {
    name: "graph_objects",
    kind: "object graph table",
    row_is: "one object of the typed object graph (`reason::graph`), numbered by its row",
    columns: &[
        col("object", Int64),
        col("address", Int64),
        col("type", Text),
        col("size", Int64),
        nullable("root", Text),
        nullable("parent", Int64),
        col("via", Text),
        nullable("element", Int64),
        nullable("chunk_state", Text),
    ],
};

pub const GRAPH_EDGES: Table = Table {
    name: "graph_edges",
    kind: "object graph table",
    row_is: "one non-null pointer of an object of the graph, and where it lands",
    columns: &[
        col("from", Int64),
        col("field", Text),
        col("slot", Int64),
        col("value", Int64),
        nullable("to", Int64),
        col("landing", Text),
    ],
};

pub const HEAP_CHUNKS: Table = Table {
    name: "heap_chunks",
    kind: "heap chunks table",
    row_is: "one chunk of glibc malloc's heaps, as the allocator's view read it",
    columns: &[
        col("address", Int64),
        col("size", Int64),
        col("state", Text),
        nullable("arena", Int64),
    ],
};

/// Every table, in the order `export` writes them.
pub const ALL: [&Table; 11] = [
    &REGIONS,
    &PAGES,
    &SYMBOLS,
    &TYPES,
    &NOTES,
    &VIOLATIONS,
    &GRAPH_OBJECTS,
    &GRAPH_EDGES,
    &HEAP_CHUNKS,
    &PLANS,
    &ATTESTATIONS,
];

/// One cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Text(String),
    Binary(Vec<u8>),
    Null,
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    /// Addresses above i64::MAX keep their bit pattern (read back with `as u64`).
    fn from(v: u64) -> Value {
        Value::Int(v as i64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// A row as read back: cells in the table's column order, each of its column's kind (the
/// reader checked), so the accessors need no error path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Value::Int(v)) => *v,
            _ => 0,
        }
    }
    pub fn uint(&self, i: usize) -> u64 {
        self.int(i) as u64
    }
    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn bool(&self, i: usize) -> bool {
        matches!(self.0.get(i), Some(Value::Bool(true)))
    }
    pub fn text(&self, i: usize) -> &str {
        match self.0.get(i) {
            Some(Value::Text(v)) => v,
            _ => "",
        }
    }
    pub fn bytes(&self, i: usize) -> &[u8] {
        match self.0.get(i) {
            Some(Value::Binary(v)) => v,
            _ => &[],
        }
    }
}

/// A row group is flushed at this many buffered bytes (page contents dominate) or rows.
const ROW_GROUP_BYTES: usize = 32 << 20;
const ROW_GROUP_ROWS: usize = 1 << 16;

impl Table {
    /// The Parquet message type of this table.
    pub fn message_type(&self) -> String {
        let mut s = format!("message {} {{\n", self.name);
        for c in self.columns {
            let repetition = if c.nullable { "OPTIONAL" } else { "REQUIRED" };
            let ty = match c.kind {
                Int64 => "INT64",
                Bool => "BOOLEAN",
                Text => "BYTE_ARRAY",
                Binary => "BYTE_ARRAY",
            };
            let annotation = if c.kind == Text { " (UTF8)" } else { "" };
            s.push_str(&format!("  {repetition} {ty} {}{annotation};\n", c.name));
        }
        s.push('}');
        s
    }

    /// An error about `path` as a file that should hold this table.
    pub fn corrupt_at(&self, path: &Path, why: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            path: path.into(),
            kind: self.kind,
            why: why.to_string(),
        }
    }

    /// Writes `rows` as this table at `path` (atomically: a failing row leaves no file).
    /// Returns the number of rows written.
    pub fn write(&self, path: &Path, rows: impl IntoIterator<Item = Result<Vec<Value>>>) -> Result<u64> {
        let schema = Arc::new(parse_message_type(&self.message_type()).map_err(|e| self.corrupt_at(path, e))?);
        let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
        memzinc::base::write_atomically(path, |out| {
            let mut writer =
                SerializedFileWriter::new(out, schema.clone(), props.clone()).map_err(|e| self.corrupt_at(path, e))?;
            let mut buffered: Vec<Vec<Value>> = Vec::new();
            let mut bytes = 0usize;
            let mut count = 0u64;
            for row in rows {
                let row = row?;
                if row.len() != self.columns.len() {
                    return Err(self.corrupt_at(
                        path,
                        format!(
                            "a row has {} cells, the table {} columns",
                            row.len(),
                            self.columns.len()
                        ),
                    ));
                }
                bytes += row
                    .iter()
                    .map(|v| match v {
                        Value::Text(s) => s.len(),
                        Value::Binary(b) => b.len(),
                        _ => 8,
                    })
                    .sum::<usize>();
                buffered.push(row);
                count += 1;
                if bytes >= ROW_GROUP_BYTES || buffered.len() >= ROW_GROUP_ROWS {
                    self.write_group(path, &mut writer, &buffered)?;
                    buffered.clear();
                    bytes = 0;
                }
            }
            // An empty table has no row group: readers size batches by row-group rows.
            if !buffered.is_empty() {
                self.write_group(path, &mut writer, &buffered)?;
            }
            writer.close().map_err(|e| self.corrupt_at(path, e))?;
            Ok(count)
        })
    }

    fn write_group<W: std::io::Write + Send>(
        &self,
        path: &Path,
        writer: &mut SerializedFileWriter<W>,
        rows: &[Vec<Value>],
    ) -> Result<()> {
        let pq = |e: parquet::errors::ParquetError| self.corrupt_at(path, e);
        let mut group = writer.next_row_group().map_err(pq)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(pq)? {
            let c = self.columns[index];
            let cells = rows.iter().map(|r| &r[index]);
            let levels: Vec<i16> = cells.clone().map(|v| i16::from(*v != Value::Null)).collect();
            let def = c.nullable.then_some(&levels[..]);
            if !c.nullable && levels.contains(&0) {
                return Err(self.corrupt_at(path, format!("column `{}` must not be null", c.name)));
            }
            let mismatch = || self.corrupt_at(path, format!("a value of the wrong kind for column `{}`", c.name));
            match c.kind {
                Int64 => {
                    let values = cells
                        .filter(|v| **v != Value::Null)
                        .map(|v| if let Value::Int(x) = v { Ok(*x) } else { Err(mismatch()) })
                        .collect::<Result<Vec<i64>>>()?;
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, def, None)
                        .map_err(pq)?;
                }
                Bool => {
                    let values = cells
                        .filter(|v| **v != Value::Null)
                        .map(|v| {
                            if let Value::Bool(x) = v {
                                Ok(*x)
                            } else {
                                Err(mismatch())
                            }
                        })
                        .collect::<Result<Vec<bool>>>()?;
                    column.typed::<BoolType>().write_batch(&values, def, None).map_err(pq)?;
                }
                Text | Binary => {
                    let values = cells
                        .filter(|v| **v != Value::Null)
                        .map(|v| match v {
                            Value::Text(s) if c.kind == Text => Ok(ByteArray::from(s.as_bytes().to_vec())),
                            Value::Binary(b) if c.kind == Binary => Ok(ByteArray::from(b.clone())),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<Vec<ByteArray>>>()?;
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, def, None)
                        .map_err(pq)?;
                }
            }
            column.close().map_err(pq)?;
            index += 1;
        }
        group.close().map_err(pq)?;
        Ok(())
    }

    /// Opens `path` as this table: every column must be there with its kind and nullability
    /// (extra columns are ignored). Rows come in file order.
    pub fn read(&self, path: &Path) -> Result<impl Iterator<Item = Result<Row>> + '_> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| self.corrupt_at(path, e))?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        for c in self.columns {
            let found = schema.columns().iter().find(|d| d.path().parts() == [c.name]);
            let Some(found) = found else {
                return Err(self.corrupt_at(path, format!("column `{}` is missing", c.name)));
            };
            let is_text = matches!(found.logical_type_ref(), Some(LogicalType::String))
                || found.converted_type() == ConvertedType::UTF8;
            let ok = match c.kind {
                Int64 => found.physical_type() == PhysicalType::INT64,
                Bool => found.physical_type() == PhysicalType::BOOLEAN,
                Text => found.physical_type() == PhysicalType::BYTE_ARRAY && is_text,
                Binary => found.physical_type() == PhysicalType::BYTE_ARRAY,
            };
            if !ok {
                let ty = match found.logical_type_ref() {
                    Some(l) => format!("{} ({l:?})", found.physical_type()),
                    None => found.physical_type().to_string(),
                };
                return Err(self.corrupt_at(path, format!("column `{}` is {ty}, expected {:?}", c.name, c.kind)));
            }
        }
        // Project onto our columns as the file declares them: engines such as pyarrow write
        // every column OPTIONAL; a null where we accept none is refused row by row below.
        let fields = self
            .columns
            .iter()
            .filter_map(|c| {
                schema
                    .root_schema()
                    .get_fields()
                    .iter()
                    .find(|f| f.name() == c.name)
                    .cloned()
            })
            .collect();
        let projection = parquet::schema::types::Type::group_type_builder(schema.root_schema().name())
            .with_fields(fields)
            .build()
            .map_err(|e| self.corrupt_at(path, e))?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(projection))
            .map_err(|e| self.corrupt_at(path, e))?;
        let path = path.to_path_buf();
        Ok(rows.map(move |row| {
            let row = row.map_err(|e| self.corrupt_at(&path, e))?;
            let cells = row
                .into_columns()
                .into_iter()
                .zip(self.columns)
                .map(|((_, field), c)| match (field, c.kind) {
                    (Field::Long(v), Int64) => Ok(Value::Int(v)),
                    (Field::Bool(v), Bool) => Ok(Value::Bool(v)),
                    (Field::Str(v), Text) => Ok(Value::Text(v)),
                    (Field::Str(v), Binary) => Ok(Value::Binary(v.into_bytes())),
                    (Field::Bytes(v), Binary) => Ok(Value::Binary(v.data().to_vec())),
                    (Field::Null, _) if c.nullable => Ok(Value::Null),
                    (Field::Null, _) => Err(self.corrupt_at(&path, format!("column `{}` holds a null", c.name))),
                    (f, _) => Err(self.corrupt_at(&path, format!("column `{}` holds {f}", c.name))),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Row(cells))
        }))
    }

    /// Every row of `path` (see `read`).
    pub fn read_all(&self, path: &Path) -> Result<Vec<Row>> {
        self.read(path)?.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_schemas_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let rows = vec![
            vec![
                Value::from("name"),
                Value::from(u64::MAX),
                Value::from(8u64),
                Value::from("object"),
            ],
            vec![
                Value::from("f"),
                Value::from(1u64),
                Value::from(0u64),
                Value::from("function"),
            ],
        ];
        assert_eq!(SYMBOLS.write(&path, rows.clone().into_iter().map(Ok)).unwrap(), 2);
        let back = SYMBOLS.read_all(&path).unwrap();
        assert_eq!(back.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), rows);
        assert_eq!(back[0].uint(1), u64::MAX);

        // Another table's file lacks our columns; a wrong kind is refused before any row.
        let err = REGIONS.read(&path).err().unwrap().to_string();
        assert!(
            err.contains("not a memzinc regions table: column `index` is missing"),
            "{err}"
        );
        let wrong = dir.path().join("w.parquet");
        const ADDRESS_AS_TEXT: Table = Table {
            name: "symbols",
            kind: "symbols table",
            row_is: "",
            columns: &[
                col("name", Text),
                col("address", Text),
                col("size", Int64),
                col("kind", Text),
            ],
        };
        ADDRESS_AS_TEXT
            .write(&wrong, [Ok(vec!["x".into(), "y".into(), 1i64.into(), "z".into()])])
            .unwrap();
        let err = SYMBOLS.read(&wrong).err().unwrap().to_string();
        assert!(err.contains("column `address` is BYTE_ARRAY"), "{err}");

        // A bad row leaves no file.
        let none = dir.path().join("none.parquet");
        assert!(SYMBOLS.write(&none, [Ok(vec![Value::Null])]).is_err());
        assert!(!none.exists());
    }
}
