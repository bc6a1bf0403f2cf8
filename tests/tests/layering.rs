//! The tree is the architecture (ARCHITECTURE.md): this test reads every `use crate::…`,
//! `crate::…`, `super::…`, `memzinc::…` and `memzinc_cli::…` path in `host/` and fails on an
//! edge the layering forbids or on a cycle between files.
//!
//! - `host/core` (crate `memzinc`): base ← introspect ← describe ← reason, apply ← checkpoint.
//!   A stage may use only the stages before it; its files are private (the compiler holds
//!   every other stage to the stage's `mod.rs`).
//! - `host/cli` (crate `memzinc-cli` and the `memzinc` binary): attest ← interop, watch, demo ←
//!   commands; any of them may use the core.
//! - `host/core` depends on no Solana crate, no HTTP client, no Parquet (checked in its
//!   Cargo.toml): checkpoint/restore builds without the Solana stack.

use memzinc_tests::repo_root;
use std::collections::{BTreeMap, BTreeSet};

/// Which components each component of a crate may use (besides itself).
fn allowed(crate_dir: &str, from: &str) -> Option<&'static [&'static str]> {
    Some(match (crate_dir, from) {
        ("core", "lib") => &["base", "introspect", "describe", "reason", "apply", "checkpoint"],
        ("core", "base") => &[],
        ("core", "introspect") => &["base"],
        ("core", "describe") => &["base", "introspect"],
        ("core", "reason") => &["base", "introspect", "describe"],
        ("core", "apply") => &["base", "introspect", "describe"],
        ("core", "checkpoint") => &["base", "introspect", "describe", "apply"],
        ("cli", "lib") => &["attest", "interop", "watch", "demo"],
        ("cli", "attest") => &[],
        ("cli", "interop") => &["attest"],
        ("cli", "watch") => &["attest"],
        ("cli", "demo") => &["attest"],
        ("cli", "main") => &["commands"],
        ("cli", "commands") => &["attest", "interop", "watch", "demo"],
        _ => return None,
    })
}

/// A source file of `host/`: its crate, component and (for cross-file edges) its module path.
struct Source {
    krate: &'static str,
    component: String,
    /// The file's directory and stem, e.g. `describe/snapshot` or `reason/solver/runner`.
    module: String,
    text: String,
}

fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    for krate in ["core", "cli"] {
        let src = repo_root().join("host").join(krate).join("src");
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(&src).unwrap().with_extension("");
                    let rel = rel.to_string_lossy().into_owned();
                    let component = rel.split('/').next().unwrap().to_string();
                    out.push(Source {
                        krate,
                        component,
                        module: rel,
                        text: code_only(&std::fs::read_to_string(&path).unwrap()),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (a.krate, &a.module).cmp(&(b.krate, &b.module)));
    out
}

/// The text without line comments (`//…` outside a string); test modules count like any code.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `root::` in `text`: the first segment after it, including
/// each name of a brace group (`root::{a, b::c}` gives `a` and `b`).
fn first_segments(text: &str, root: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pat = format!("{root}::");
    let mut at = 0;
    while let Some(i) = text[at..].find(&pat) {
        let start = at + i;
        at = start + pat.len();
        // A whole word: `xcrate::` is not `crate::`.
        if text[..start]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut names = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        names.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                if depth >= 1 {
                    item.push(c);
                }
            }
            names.push(item);
            for n in names {
                let n = n.trim();
                let first: String = n.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !first.is_empty() {
                    out.insert(first);
                }
            }
        } else {
            let first: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(first);
        }
    }
    out
}

/// What a file uses: components of its own crate, and files of its own folder (`super::x`,
/// `self::x` for a folder's `mod.rs`).
fn uses(s: &Source, all: &[Source]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut components = BTreeSet::new();
    let roots: &[&str] = match s.krate {
        "core" => &["crate"],
        // The binary names the library `memzinc_cli`; inside the library it is `crate`.
        _ => &["crate", "memzinc_cli"],
    };
    for root in roots {
        components.extend(first_segments(&s.text, root));
    }
    // The binary's own modules are `crate::commands` from main.rs and `super::` inside.
    let dir = match s.module.rsplit_once('/') {
        Some((dir, stem)) if stem != "mod" => dir.to_string(),
        Some((dir, _)) => dir.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string()),
        None => String::new(),
    };
    let own_dir = if s.module.ends_with("/mod") {
        s.module.trim_end_matches("/mod").to_string()
    } else {
        dir.clone()
    };
    let mut files = BTreeSet::new();
    let siblings = |base: &str, names: BTreeSet<String>, files: &mut BTreeSet<String>| {
        for n in names {
            let m = if base.is_empty() {
                n.clone()
            } else {
                format!("{base}/{n}")
            };
            if all
                .iter()
                .any(|o| o.krate == s.krate && (o.module == m || o.module == format!("{m}/mod")))
            {
                files.insert(m);
            }
        }
    };
    if !s.module.ends_with("/mod") {
        siblings(&dir, first_segments(&s.text, "super"), &mut files);
    }
    siblings(&own_dir, first_segments(&s.text, "self"), &mut files);
    (components, files)
}

#[test]
fn the_host_crates_depend_one_way_and_have_no_cycles() {
    let all = sources();
    assert!(all.len() > 50, "only {} files found under host/", all.len());
    let known: BTreeMap<&str, BTreeSet<&str>> = [
        (
            "core",
            ["lib", "base", "introspect", "describe", "reason", "apply", "checkpoint"].into(),
        ),
        (
            "cli",
            ["lib", "main", "attest", "interop", "watch", "demo", "commands"].into(),
        ),
    ]
    .into();
    let mut forbidden = Vec::new();
    let mut edges = 0;
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &all {
        let permitted = allowed(s.krate, &s.component).unwrap_or_else(|| {
            panic!(
                "host/{}/src/{}.rs: component `{}` is not in the layering (tests/tests/layering.rs)",
                s.krate, s.module, s.component
            )
        });
        let (components, files) = uses(s, &all);
        for c in components {
            if !known[s.krate].contains(c.as_str()) || c == s.component {
                continue;
            }
            edges += 1;
            if !permitted.contains(&c.as_str()) {
                forbidden.push(format!(
                    "host/{}/src/{}.rs uses `{c}`: {} may use only {:?}",
                    s.krate, s.module, s.component, permitted
                ));
            }
        }
        let key = format!("{}:{}", s.krate, s.module);
        graph
            .entry(key)
            .or_default()
            .extend(files.into_iter().map(|f| format!("{}:{f}", s.krate)));
    }
    let cycles = cycles(&graph);
    let file_edges: usize = graph.values().map(BTreeSet::len).sum();
    println!(
        "layering: {} files, {edges} edges between components and {file_edges} between files checked; {} forbidden, {} cycle(s)",
        all.len(),
        forbidden.len(),
        cycles.len()
    );
    assert!(
        edges > 20 && file_edges > 20,
        "too few edges found: the reader is broken"
    );
    assert!(forbidden.is_empty(), "forbidden edges:\n{}", forbidden.join("\n"));
    assert!(
        cycles.is_empty(),
        "dependency cycles between files:\n{}",
        cycles.join("\n")
    );
}

/// The strongly connected components of more than one file (and files that use themselves).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Tarjan, iteratively simple enough at this size: recursion depth is the file count.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<String>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                let self_loop = self.g.get(v).is_some_and(|n| n.contains(v));
                if scc.len() > 1 || self_loop {
                    scc.sort();
                    self.out.push(scc.join(" <-> "));
                }
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn the_core_crate_has_no_solana_http_or_parquet_dependency() {
    let manifest = repo_root().join("host/core/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section.contains("dependencies") && !line.is_empty() && !line.starts_with('#') {
            deps.push(line.split(['=', '.', ' ']).next().unwrap().to_string());
        }
    }
    let banned = ["solana", "litesvm", "surfpool", "reqwest", "tokio", "parquet", "anchor"];
    let found: Vec<&String> = deps
        .iter()
        .filter(|d| banned.iter().any(|b| d.starts_with(b)))
        .collect();
    println!("host/core: {} dependencies checked, none of {banned:?}", deps.len());
    assert!(deps.len() > 10, "no dependencies read from {}", manifest.display());
    assert!(found.is_empty(), "{} depends on {found:?}", manifest.display());
}

#[test]
fn the_path_reader_sees_groups_and_whole_words() {
    let text = "use crate::{base::{Error, Result}, introspect::Frozen};\nlet x = xcrate::nope; crate::reason::plan()";
    let got: Vec<String> = first_segments(text, "crate").into_iter().collect();
    assert_eq!(got, ["base", "introspect", "reason"]);
}
