//! Data interop against real engines: a real process's snapshot exported as Parquet, read by
//! pyarrow and duckdb (PyPI) and compared with `inspect --json`; imported back into a
//! byte-identical core; bad tables refused in one line with nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use memzinc_tests::{fails, ok, repo_root, Target};

/// The Python with pyarrow, duckdb and datasets (`scripts/install-tools.sh python`).
pub fn python() -> PathBuf {
    let path = std::env::var_os("MEMZINC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("MEMZINC_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/memzinc"));
            cache.join("venv/bin/python")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-tools.sh python (the test command does)",
        path.display()
    );
    path
}

/// Runs a Python script with `args`; returns its stdout as JSON.
fn py(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A corrupted healme snapshotted (with `--parquet`), planned, exported.
struct Exported {
    _dir: tempfile::TempDir,
    root: PathBuf,
    core: PathBuf,
    tables: PathBuf,
    inspect: serde_json::Value,
    plan: serde_json::Value,
}

fn exported() -> Exported {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let core = root.join("h.core");
    let target = Target::healme(&["--corrupt-at", "2", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");
    ok(&[
        "snapshot",
        "--pid",
        &target.pid(),
        "-o",
        s(&core),
        "--parquet",
        s(&root.join("side")),
    ]);
    drop(target);
    let spec = repo_root().join("models/targets/healme.json");
    let plan_path = root.join("h.plan.json");
    ok(&["plan", s(&core), "--spec", s(&spec), "-o", s(&plan_path)]);
    let tables = root.join("tables");
    ok(&[
        "export",
        "--parquet",
        s(&tables),
        s(&core),
        "--plan",
        s(&plan_path),
        "--spec",
        s(&spec),
    ]);
    let inspect = serde_json::from_str(&ok(&["inspect", s(&core), "--json", "--var", "HEALME_STATE"])).unwrap();
    let plan = serde_json::from_str(&std::fs::read_to_string(&plan_path).unwrap()).unwrap();
    Exported {
        _dir: dir,
        root,
        core,
        tables,
        inspect,
        plan,
    }
}

#[test]
fn export_then_import_gives_the_same_core_byte_for_byte() {
    let e = exported();
    // `snapshot --parquet` wrote the snapshot's own tables, identical to export's.
    for table in ["regions", "pages", "symbols", "types", "notes"] {
        let side = std::fs::read(e.root.join("side").join(format!("{table}.parquet"))).unwrap();
        let full = std::fs::read(e.tables.join(format!("{table}.parquet"))).unwrap();
        assert!(
            side == full,
            "{table}.parquet differs between snapshot --parquet and export"
        );
    }
    let back = e.root.join("back.core");
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["import", s(&e.tables), "-o", s(&back), "--json"])).unwrap();
    assert_eq!(out["root"], e.inspect["root"]);
    let original = std::fs::read(&e.core).unwrap();
    let imported = std::fs::read(&back).unwrap();
    assert_eq!(original.len(), imported.len());
    assert!(original == imported, "the imported core differs from the original");
    // inspect accepts it (seal, leaves, root, every page re-hashed) and reads the same values.
    let again: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&back), "--json", "--var", "HEALME_STATE"])).unwrap();
    assert_eq!(again, e.inspect);
}

const READ_WITH_ENGINES: &str = r#"
import json, sys
import pyarrow.parquet as pq, duckdb
d, address = sys.argv[1], int(sys.argv[2])
t = lambda name: f"{d}/{name}.parquet"
out = {name: pq.read_table(t(name)).num_rows for name in
       ["regions", "pages", "symbols", "types", "notes", "violations", "plans"]}
regions = pq.read_table(t("regions")).to_pylist()
out["regions_start"] = [r["start"] & (2**64 - 1) for r in regions]
out["regions_perms"] = [r["perms"] for r in regions]
out["regions_captured"] = sum(r["captured"] for r in regions)
out["symbol"] = duckdb.sql(f"select address, size, kind from '{t('symbols')}' where name = 'HEALME_STATE'").fetchall()
# The live value of HEALME_STATE.target_temp (offset 12, i32), read out of the page contents.
row = duckdb.sql(f"""select contents, address from '{t('pages')}'
                     where address <= {address} and {address} < address + 4096""").fetchall()[0]
off = address - row[1] + 12
out["target_temp"] = int.from_bytes(row[0][off:off + 4], "little", signed=True)
out["page_bytes"] = duckdb.sql(f"select sum(octet_length(contents)) from '{t('pages')}'").fetchall()[0][0]
out["first_leaf"] = duckdb.sql(f"select leaf from '{t('pages')}' order by index limit 1").fetchall()[0][0]
out["members"] = duckdb.sql(f"""select member, member_offset, member_type from '{t('types')}'
                                where type_name = 'Thermostat' order by member_offset""").fetchall()
out["violations"] = duckdb.sql(f"select distinct rule, symbol from '{t('violations')}' order by all").fetchall()
out["writes"] = duckdb.sql(f"select address, old, new from '{t('plans')}' order by write_index").fetchall()
print(json.dumps(out))
"#;

#[test]
fn pyarrow_and_duckdb_read_what_inspect_reports() {
    let e = exported();
    let state = &e.inspect["values"][0];
    let address = state["address"].as_u64().unwrap();
    let got = py(READ_WITH_ENGINES, &[s(&e.tables), &address.to_string()]);
    let regions = e.inspect["regions"].as_array().unwrap();
    let symbols = e.inspect["symbols"].as_array().unwrap();
    assert_eq!(got["regions"], regions.len());
    assert_eq!(got["pages"], e.inspect["page_count"]);
    assert_eq!(got["page_bytes"], e.inspect["page_count"].as_u64().unwrap() * 4096);
    assert_eq!(got["symbols"], symbols.len());
    // Per thread NT_PRSTATUS (+ FP and XSAVE notes when taken); NT_PRPSINFO, NT_AUXV, NT_FILE;
    // MEMZINC's metadata, leaves, fast hashes and seal.
    let thread_notes: usize = e.inspect["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| 1 + usize::from(t["fpregs"] != "") + usize::from(t["xstate"] != ""))
        .sum();
    assert_eq!(got["notes"], thread_notes + 3 + 4);
    let starts: Vec<u64> = regions.iter().map(|r| r["start"].as_u64().unwrap()).collect();
    assert_eq!(got["regions_start"], serde_json::json!(starts));
    let perms: Vec<&str> = regions.iter().map(|r| r["perms"].as_str().unwrap()).collect();
    assert_eq!(got["regions_perms"], serde_json::json!(perms));
    let captured = regions.iter().filter(|r| r["captured"] == true).count();
    assert_eq!(got["regions_captured"], captured);
    let sym = symbols.iter().find(|x| x["name"] == "HEALME_STATE").unwrap();
    assert_eq!(
        got["symbol"],
        serde_json::json!([[sym["address"], sym["size"], sym["kind"]]])
    );
    let target_temp = state["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "target_temp")
        .unwrap();
    assert_eq!(got["target_temp"], target_temp["value"]);
    assert_eq!(got["target_temp"], 9000, "the corrupted live value");
    // The DWARF layout of Thermostat, as the spec has it.
    let members = got["members"].as_array().unwrap();
    let field = |name: &str| {
        members
            .iter()
            .find(|m| m[0] == name)
            .unwrap_or_else(|| panic!("{name}: {members:?}"))
    };
    assert_eq!(field("target_temp")[1], 12);
    assert_eq!(field("target_temp")[2], "i32");
    assert_eq!(field("fan_level")[1], 16);
    // `check --spec` found the corrupted fields; the plan's writes are the plans table.
    let violations = got["violations"].to_string();
    assert!(
        violations.contains("spec-bounds") && violations.contains("HEALME_STATE"),
        "{violations}"
    );
    let writes: Vec<serde_json::Value> = e.plan["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| serde_json::json!([w["address"], w["old"], w["new"]]))
        .collect();
    assert!(!writes.is_empty());
    assert_eq!(got["writes"], serde_json::json!(writes));
    assert_eq!(got["plans"], writes.len());
    // The first page's leaf is the leaf the core stores (which `inspect` re-hashed).
    assert_eq!(got["first_leaf"].as_str().unwrap().len(), 64);
}

/// Rewrites `table` in `dir` with a Python expression over `t` (a pyarrow Table).
fn tamper(dir: &Path, table: &str, expression: &str) {
    let script = format!(
        "import sys, json, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc\n\
         p = sys.argv[1]\nt = pq.read_table(p)\nt = {expression}\npq.write_table(t, p)\nprint('{{}}')"
    );
    py(&script, &[s(&dir.join(format!("{table}.parquet")))]);
}

fn copy_tables(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn assert_refused(tables: &Path, out_dir: &Path, needle: &str) {
    let out = out_dir.join("x.core");
    let err = fails(&["import", s(tables), "-o", s(&out)]);
    assert!(err.contains(needle), "{err}");
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bad_tables_are_refused_in_one_line_and_nothing_is_written() {
    let e = exported();
    let out_dir = e.root.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let case = |name: &str, table: &str, expression: &str, needle: &str| {
        let dir = e.root.join(name);
        copy_tables(&e.tables, &dir);
        tamper(&dir, table, expression);
        assert_refused(&dir, &out_dir, needle);
    };
    case(
        "missing-column",
        "regions",
        "t.drop_columns(['perms'])",
        "not a memzinc regions table: column `perms` is missing",
    );
    case(
        "wrong-type",
        "pages",
        "t.set_column(t.schema.get_field_index('address'), 'address', pc.cast(t['address'], pa.string()))",
        "not a memzinc pages table: column `address` is BYTE_ARRAY",
    );
    // One byte of one page changed: the rebuilt core's page no longer matches its leaf.
    case(
        "changed-page",
        "pages",
        "t.set_column(5, 'contents', pa.array([c[:100] + bytes([c[100] ^ 1]) + c[101:] if i == 3 else c \
         for i, c in enumerate(t['contents'].to_pylist())], pa.binary()))",
        "does not match its leaf",
    );
    // The protobuf metadata note cut short.
    case(
        "truncated-note",
        "notes",
        "t.set_column(3, 'desc', pa.array([d[:len(d) // 2] if o == 'MEMZINC' and ty == 1 else d \
         for o, ty, d in zip(t['owner'].to_pylist(), t['type'].to_pylist(), t['desc'].to_pylist())], pa.binary()))",
        "metadata note",
    );
    let no_pages = e.root.join("no-pages");
    copy_tables(&e.tables, &no_pages);
    std::fs::remove_file(no_pages.join("pages.parquet")).unwrap();
    assert_refused(&no_pages, &out_dir, "no pages table");

    // A truncated core is refused by export before any table is written.
    let bytes = std::fs::read(&e.core).unwrap();
    let cut = e.root.join("cut.core");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let dir = e.root.join("from-cut");
    let err = fails(&["export", "--parquet", s(&dir), s(&cut)]);
    assert!(err.contains("cut.core"), "{err}");
    assert!(!dir.exists());
}
