//! Data interop against real engines: a real process's snapshot exported as Parquet, read by
//! pyarrow and duckdb (PyPI) and compared with `inspect --json`; imported back into a
//! byte-identical core; bad tables refused in one line with nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use memzinc_tests::{fails, ok, repo_root, Target};

/// The Python with pyarrow, duckdb and datasets (`scripts/install-tools.sh python`).
fn python() -> PathBuf {
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
        // Local files only: `datasets` must not ask huggingface.co about a local directory.
        .env("HF_HUB_OFFLINE", "1")
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
    // Exporting again without --plan leaves no plans table or record from the first export.
    let again = e.root.join("again");
    copy_tables(&e.tables, &again);
    std::fs::create_dir_all(again.join("records")).unwrap();
    std::fs::copy(e.tables.join("records/plans.pb"), again.join("records/plans.pb")).unwrap();
    ok(&["export", "--parquet", s(&again), s(&e.core)]);
    assert!(!again.join("plans.parquet").exists() && !again.join("records/plans.pb").exists());
    assert!(again.join("violations.parquet").exists());

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
    // MEMZINC's metadata, leaves, fast hashes, kept tree level and seal.
    let thread_notes: usize = e.inspect["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| 1 + usize::from(t["fpregs"] != "") + usize::from(t["xstate"] != ""))
        .sum();
    assert_eq!(got["notes"], thread_notes + 3 + 5);
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

/// `protoc --decode TYPE proto/SCHEMA < file`: the text format of one of our records.
fn protoc_decode(message: &str, schema: &str, file: &Path) -> String {
    let out = Command::new("protoc")
        .arg(format!("--decode={message}"))
        .arg(format!("--proto_path={}", s(&repo_root().join("proto"))))
        .arg(schema)
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("run protoc (Debian protobuf-compiler)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "protoc: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn protoc_decodes_the_metadata_and_plan_records() {
    let e = exported();
    let meta = protoc_decode(
        "memzinc.snapshot.v1.SnapshotMeta",
        "snapshot.proto",
        &e.tables.join("records/snapshot_meta.pb"),
    );
    assert!(meta.contains(&format!("pid: {}\n", e.inspect["pid"])), "{meta}");
    assert!(
        meta.contains(&format!("page_count: {}\n", e.inspect["page_count"])),
        "{meta}"
    );
    assert_eq!(
        meta.matches("\nregions {").count(),
        e.inspect["regions"].as_array().unwrap().len()
    );
    assert!(meta.contains("name: \"HEALME_STATE\""), "{meta}");
    // The record is the metadata note of the core, byte for byte.
    let note = std::fs::read(e.tables.join("records/snapshot_meta.pb")).unwrap();
    let core = std::fs::read(&e.core).unwrap();
    assert!(
        core.windows(note.len()).any(|w| w == note),
        "the note's bytes are not in the core"
    );

    let plans = protoc_decode(
        "memzinc.plan.v1.PlanSet",
        "plan.proto",
        &e.tables.join("records/plans.pb"),
    );
    let writes = e.plan["writes"].as_array().unwrap();
    assert_eq!(plans.matches("writes {").count(), writes.len(), "{plans}");
    for w in writes {
        assert!(plans.contains(&format!("address: {}\n", w["address"])), "{plans}");
        assert!(plans.contains(&format!("field: {}\n", w["field"])), "{plans}");
    }
    assert!(plans.contains("target: \"healme\""), "{plans}");
    assert!(plans.contains(&format!("status: {}\n", e.plan["status"])), "{plans}");
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
        if entry.path().is_dir() {
            continue;
        }
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

const LOAD_DATASETS: &str = r#"
import json, sys
import datasets
datasets.disable_progress_bars()
d, cache = sys.argv[1], sys.argv[2]
out = {}
for config in sys.argv[3:]:
    ds = datasets.load_dataset(d, config, split="train", cache_dir=cache)
    out[config] = {"rows": ds.num_rows, "columns": ds.column_names}
out["HEALME_STATE"] = datasets.load_dataset(d, "symbols", split="train", cache_dir=cache).filter(
    lambda r: r["name"] == "HEALME_STATE")[0]["address"]
print(json.dumps(out))
"#;

/// `memzinc` with HF_TOKEN set (or unset): (success, stdout, stderr).
fn memzinc_with_token(args: &[&str], token: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(memzinc_tests::binary("memzinc"));
    cmd.args(args).env("MEMZINC_ROOT", repo_root()).env_remove("HF_TOKEN");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// tests/hub_server.py on a free port, killed when dropped.
struct HubServer {
    _child: memzinc_tests::KillOnDrop,
    url: String,
}

fn hub_server(token: &str) -> HubServer {
    use std::io::BufRead;
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/hub_server.py"))
        .arg(token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("server said {line:?}"));
    HubServer {
        url: format!("http://127.0.0.1:{port}"),
        _child: memzinc_tests::KillOnDrop(child),
    }
}

#[test]
fn hub_export_loads_with_datasets_and_round_trips_through_push_and_pull() {
    let e = exported();
    let repo_dir = e.root.join("hub");
    let plan = e.root.join("h.plan.json");
    ok(&["hub", "export", s(&repo_dir), s(&e.core), "--plan", s(&plan)]);
    let card = std::fs::read_to_string(repo_dir.join("README.md")).unwrap();
    let configs = ["regions", "pages", "symbols", "types", "notes", "plans"];
    // Without --spec nothing is violated: the empty table is in data/ but is no config, as
    // `datasets` cannot load an empty split.
    assert!(repo_dir.join("data/violations/violations.parquet").is_file());
    assert!(
        !card.contains("config_name: violations") && card.contains("| `violations` | 0 (empty: no config)"),
        "{card}"
    );
    for c in configs {
        assert!(
            card.contains(&format!("- config_name: {c}\n")) && card.contains(&format!("path: data/{c}/*.parquet")),
            "{card}"
        );
        assert!(repo_dir.join(format!("data/{c}/{c}.parquet")).is_file());
    }
    // Python's `datasets` loads every table by its config name.
    // A cache of this test's own: `datasets` would otherwise reuse an earlier run's tables.
    let cache = e.root.join("datasets-cache");
    let got = py(LOAD_DATASETS, &[&[s(&repo_dir), s(&cache)], &configs[..]].concat());
    assert_eq!(got["regions"]["rows"], e.inspect["regions"].as_array().unwrap().len());
    assert_eq!(got["pages"]["rows"], e.inspect["page_count"]);
    assert_eq!(got["symbols"]["rows"], e.inspect["symbols"].as_array().unwrap().len());
    assert_eq!(got["plans"]["rows"], e.plan["writes"].as_array().unwrap().len());
    assert_eq!(
        got["pages"]["columns"],
        serde_json::json!(["index", "region", "address", "readable", "leaf", "contents"])
    );
    let sym = e.inspect["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "HEALME_STATE")
        .unwrap();
    assert_eq!(got["HEALME_STATE"], sym["address"]);

    // Push to the local Hub stand-in, pull into an empty directory: the same files, and the
    // same core imported from them.
    let token = "hf_memzinc_test_token";
    let server = hub_server(token);
    let push = [
        "hub",
        "push",
        s(&repo_dir),
        "--repo",
        "memzinc/healme",
        "--endpoint",
        &server.url,
        "--json",
    ];
    let (pushed, stdout, stderr) = memzinc_with_token(&push, Some(token));
    assert!(pushed, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // The server asks for everything but the card by LFS: these tables, violations, the three
    // object-graph tables (objects, edges, heap chunks) and 2 protobuf records.
    assert_eq!(report["lfs_files"], configs.len() + 1 + 3 + 2, "{report}");
    assert_eq!(report["files"], configs.len() + 1 + 3 + 2 + 1, "{report}");
    // Pushing again reuses the stored LFS objects and makes a second commit.
    let (again, stdout2, stderr) = memzinc_with_token(&push, Some(token));
    assert!(again, "{stderr}");
    let report2: serde_json::Value = serde_json::from_str(&stdout2).unwrap();
    assert_ne!(report2["commit"], report["commit"]);

    // A wrong or missing token is one line and a non-zero exit.
    for t in [Some("wrong"), None] {
        let (pushed, _, stderr) = memzinc_with_token(&push, t);
        assert!(!pushed && stderr.lines().count() == 1, "{stderr}");
        assert!(
            stderr.contains("401") && stderr.contains("Invalid credentials"),
            "{stderr}"
        );
    }

    // A Hub that does not answer is one line too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (pushed, _, stderr) = memzinc_with_token(
        &[
            "hub",
            "push",
            s(&repo_dir),
            "--repo",
            "memzinc/healme",
            "--endpoint",
            &format!("http://{closed}"),
        ],
        Some(token),
    );
    assert!(
        !pushed && stderr.lines().count() == 1 && stderr.starts_with("error: hub http://"),
        "{stderr}"
    );

    let pull = |repo: &str, into: &Path| {
        memzinc_with_token(
            &["hub", "pull", "--repo", repo, s(into), "--endpoint", &server.url],
            Some(token),
        )
    };
    // A repository the Hub does not have: one line, no directory.
    let missing = e.root.join("missing");
    let (pulled_any, _, stderr) = pull("memzinc/nothing", &missing);
    assert!(
        !pulled_any && stderr.lines().count() == 1 && stderr.contains("404"),
        "{stderr}"
    );
    assert!(!missing.exists());
    let staged = std::fs::read_dir(&e.root)
        .unwrap()
        .filter(|x| {
            x.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".memzinc")
        })
        .count();
    assert_eq!(staged, 0, "a staging directory was left behind");

    let pulled = e.root.join("pulled");
    let (ok_pull, _, stderr) = pull("memzinc/healme", &pulled);
    assert!(ok_pull, "{stderr}");
    let files = same_files(&repo_dir, &pulled);
    assert_eq!(report["files"], files);
    let back = e.root.join("pulled.core");
    ok(&["import", s(&pulled), "-o", s(&back)]);
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&e.core).unwrap());

    // The endpoints the client used are the documented ones; large tables went in parts.
    let log = http_get(&format!("{}/_log", server.url));
    for needle in [
        "POST /api/repos/create",
        "POST /api/datasets/memzinc/healme/preupload/main",
        "POST /datasets/memzinc/healme.git/info/lfs/objects/batch",
        "PUT /lfs/",
        "PUT /lfs-part/",
        "/complete",
        "POST /api/datasets/memzinc/healme/commit/main",
        "GET /api/datasets/memzinc/healme/revision/main",
        "GET /datasets/memzinc/healme/resolve/main/data/pages/pages.parquet",
    ] {
        assert!(log.contains(needle), "{needle} not in {log}");
    }

    // `huggingface_hub`, the reference client, pushes the same directory to the stand-in (so
    // the stand-in answers as the Hub does for it, parts included, and checks that the card's
    // YAML parses), and memzinc pulls what it pushed: the same files.
    let hf = py(HF_PUSH, &[&server.url, token, s(&repo_dir), "memzinc/healme-hf"]);
    assert!(hf["commit"].as_str().is_some_and(|c| !c.is_empty()), "{hf}");
    let pulled_hf = e.root.join("pulled-hf");
    let (ok_pull, _, stderr) = pull("memzinc/healme-hf", &pulled_hf);
    assert!(ok_pull, "{stderr}");
    assert_eq!(same_files(&repo_dir, &pulled_hf), files);

    // A download whose bytes are not the ones the Hub names is refused: one line, nothing
    // pulled.
    py(
        "import sys, json, urllib.request\nurllib.request.urlopen(urllib.request.Request(sys.argv[1], method='POST'))\nprint('{}')",
        &[&format!("{}/_tamper/memzinc/healme-hf/data/pages/pages.parquet", server.url)],
    );
    let tampered = e.root.join("tampered");
    let (ok_pull, _, stderr) = pull("memzinc/healme-hf", &tampered);
    assert!(
        !ok_pull && stderr.lines().count() == 1 && stderr.contains("the server said"),
        "{stderr}"
    );
    assert!(!tampered.exists());
}

/// How many files `dir` holds, each one byte for byte the same in `copy`.
fn same_files(dir: &Path, copy: &Path) -> usize {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap();
            assert!(
                std::fs::read(&path).unwrap() == std::fs::read(copy.join(rel)).unwrap(),
                "{} differs in {}",
                rel.display(),
                copy.display()
            );
            files += 1;
        }
    }
    files
}

/// `huggingface_hub` commits every file of a directory to a dataset repository: ENDPOINT TOKEN
/// DIR REPO; prints the commit.
const HF_PUSH: &str = r#"
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "0"           # py() sets it for `datasets`; this talks to a server
os.environ["HF_HUB_DISABLE_XET"] = "1"       # the stand-in speaks Git LFS, not Xet
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
from huggingface_hub import HfApi, CommitOperationAdd
endpoint, token, folder, repo = sys.argv[1:5]
api = HfApi(endpoint=endpoint, token=token)
api.create_repo(repo, repo_type="dataset", exist_ok=True)
ops = [CommitOperationAdd(os.path.relpath(os.path.join(d, f), folder), os.path.join(d, f))
       for d, _, files in os.walk(folder) for f in files]
print(json.dumps({"commit": api.create_commit(repo, repo_type="dataset", operations=ops, commit_message="hf").oid}))
"#;

/// A GET with Python's urllib (the tests crate has no HTTP client).
fn http_get(url: &str) -> String {
    py(
        "import sys, json, urllib.request\nprint(json.dumps(urllib.request.urlopen(sys.argv[1]).read().decode()))",
        &[url],
    )
    .as_str()
    .unwrap()
    .to_string()
}
