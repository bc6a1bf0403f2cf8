//! `memzinc layout` against a C target compiled here with `gcc -g` (tests/targets/clayout.c),
//! a snapshot of it, and random structs: every expected size is computed by the test itself
//! (sorting members by decreasing alignment; trying every member order), never by memzinc.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use memzinc::introspect::DebugTypes;
use memzinc::introspect::Field;
use memzinc::reason::layout::{self, Decided, LayoutOptions, Member, StructInfo, CACHE_LINE};
use memzinc_tests::{binary, repo_root};

fn build_clayout(dir: &Path) -> PathBuf {
    let out = dir.join("clayout");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(repo_root().join("tests/targets/clayout.c"))
        .status()
        .expect("gcc is installed (scripts/install-tools.sh apt)");
    assert!(status.success(), "gcc failed");
    out
}

fn options() -> LayoutOptions {
    LayoutOptions::new(&repo_root().join("models"))
}

/// Members laid out in the given order the way a C compiler does: each at the next multiple of
/// its alignment; the size rounded up to the largest alignment.
fn natural_size(members: &[(u64, u64)]) -> (Vec<u64>, u64) {
    let mut at = 0u64;
    let mut offsets = Vec::new();
    for &(size, align) in members {
        at = at.div_ceil(align) * align;
        offsets.push(at);
        at += size;
    }
    let align = members.iter().map(|m| m.1).max().unwrap_or(1);
    (offsets, at.div_ceil(align) * align)
}

/// The size after sorting by decreasing alignment: the textbook answer when nothing is hot.
fn sorted_by_alignment_size(members: &[Member]) -> u64 {
    let mut m: Vec<(u64, u64)> = members.iter().map(|m| (m.field.size, m.align)).collect();
    m.sort_by_key(|&(_, a)| std::cmp::Reverse(a));
    natural_size(&m).1
}

fn same_line(m: &Member) -> u64 {
    assert_eq!(
        m.field.offset / CACHE_LINE,
        (m.field.offset + m.field.size - 1) / CACHE_LINE,
        "{} straddles a line",
        m.field.name
    );
    m.field.offset / CACHE_LINE
}

#[test]
fn badly_padded_struct_shrinks_to_the_sorted_by_alignment_size_and_twins_share_one_solve() {
    let dir = tempfile::tempdir().unwrap();
    let types = DebugTypes::load(&build_clayout(dir.path())).unwrap();
    let mut opts = options();
    opts.only = vec![
        "badly_padded".into(),
        "badly_padded_twin".into(),
        "already_tight".into(),
    ];
    let report = layout::reorganize(&types, &opts).unwrap();
    let names: Vec<&str> = report.structs.iter().map(|s| s.name.as_str()).collect();
    // already_tight has no holes: not reported, never solved.
    assert_eq!(names, ["badly_padded", "badly_padded_twin"]);
    for s in &report.structs {
        assert_eq!(s.size, 64, "sizeof as gcc laid it out");
        assert_eq!(s.current_waste.hole_bytes + s.current_waste.padding, 64 - 35);
        assert_eq!(s.optimal_size, sorted_by_alignment_size(&s.current));
        assert_eq!(s.optimal_size, 40);
        assert_eq!((s.saved, s.lower_bound, s.decided), (24, 40, Decided::Optimal));
        assert_eq!(s.suggested_waste.hole_bytes, 0);
        // The suggestion is a real layout: aligned, disjoint, every member once.
        let mut end = 0;
        for m in &s.suggested {
            assert_eq!(m.field.offset % m.align, 0, "{}", m.field.name);
            assert!(m.field.offset >= end, "{} overlaps", m.field.name);
            end = m.field.offset + m.field.size;
        }
        assert!(end <= s.optimal_size);
        let mut a: Vec<&str> = s.current.iter().map(|m| m.field.name.as_str()).collect();
        let mut b: Vec<&str> = s.suggested.iter().map(|m| m.field.name.as_str()).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
    // Same shape, different names: solved once.
    assert_eq!(report.structs[0].shape, report.structs[1].shape);
    assert_eq!((report.distinct_shapes, report.solver_runs), (1, 1));

    opts.all = true;
    let report = layout::reorganize(&types, &opts).unwrap();
    let tight = report.structs.iter().find(|s| s.name == "already_tight").unwrap();
    assert_eq!(
        (tight.decided, tight.saved, tight.shape),
        (Decided::AlreadyMinimal, 0, None)
    );
    assert_eq!(report.solver_runs, 1);
}

#[test]
fn hot_fields_end_up_in_one_cache_line_at_the_smallest_size() {
    let dir = tempfile::tempdir().unwrap();
    let types = DebugTypes::load(&build_clayout(dir.path())).unwrap();
    let mut opts = options();
    opts.only = vec!["hot_cold".into()];
    opts.hot = vec!["flag".into(), "counter".into(), "state".into()];
    let report = layout::reorganize(&types, &opts).unwrap();
    let s = &report.structs[0];
    // gcc's layout spreads them: flag in line 0, counter and state in line 1.
    let line_of = |ms: &[Member], name: &str| same_line(ms.iter().find(|m| m.field.name == name).unwrap());
    assert_ne!(line_of(&s.current, "flag"), line_of(&s.current, "counter"));
    // The suggestion keeps all three in one line...
    let hot_lines: Vec<u64> = ["flag", "counter", "state"]
        .iter()
        .map(|n| line_of(&s.suggested, n))
        .collect();
    assert!(hot_lines.iter().all(|&l| l == hot_lines[0]), "{hot_lines:?}");
    assert_eq!(s.hot_line, Some(hot_lines[0]));
    // ...the earliest one, at the smallest size there is: 155 bytes of members rounded to 8.
    assert_eq!(hot_lines[0], 0);
    assert_eq!((s.optimal_size, s.lower_bound, s.decided), (160, 160, Decided::Optimal));
    assert!(s.suggested.iter().all(|m| m.hot == opts.hot.contains(&m.field.name)));
}

#[test]
fn packed_structs_are_skipped_and_unknown_names_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let types = DebugTypes::load(&build_clayout(dir.path())).unwrap();
    let report = layout::reorganize(&types, &options()).unwrap();
    let packed = report.skipped.iter().find(|s| s.name == "packed_one").unwrap();
    assert!(packed.why.contains("packed"), "{}", packed.why);
    assert!(report.structs.iter().any(|s| s.name == "badly_padded"));

    let mut opts = options();
    opts.only = vec!["packed_one".into()];
    let err = layout::reorganize(&types, &opts).unwrap_err().to_string();
    assert!(err.contains("packed"), "{err}");
    opts.only = vec!["no_such_struct".into()];
    assert!(layout::reorganize(&types, &opts).is_err());
    let mut opts = options();
    opts.hot = vec!["no_such_member".into()];
    assert!(layout::reorganize(&types, &opts).is_err());
}

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn random_structs_match_sorting_and_never_lose_to_any_member_order() {
    // (size, align) kinds a C compiler produces: scalars, small arrays, nested structs.
    const KINDS: [(u64, u64); 9] = [
        (1, 1),
        (2, 2),
        (4, 4),
        (8, 8),
        (16, 16),
        (3, 1),
        (12, 4),
        (24, 8),
        (6, 2),
    ];
    let mut rng = Rng(0x6d656d7a696e63);
    let mut structs = Vec::new();
    let mut hot_structs = Vec::new();
    for k in 0..24 {
        let n = 2 + rng.below(5) as usize; // up to 6 members: 720 orders to try
        let members: Vec<(u64, u64)> = (0..n).map(|_| KINDS[rng.below(KINDS.len() as u64) as usize]).collect();
        let (offsets, size) = natural_size(&members);
        let info = StructInfo {
            name: format!("s{k}"),
            size,
            align: members.iter().map(|m| m.1).max().unwrap(),
            members: members
                .iter()
                .zip(offsets)
                .enumerate()
                .map(|(i, (&(size, align), offset))| Member {
                    field: Field {
                        name: format!("m{k}_{i}"),
                        type_name: "t".into(),
                        offset,
                        size,
                        signed: false,
                    },
                    align,
                    hot: false,
                })
                .collect(),
        };
        if k % 2 == 0 {
            structs.push(info);
        } else {
            hot_structs.push(info);
        }
    }
    // Nothing hot: the optimum is the sorted-by-alignment size, which is the lower bound.
    let mut opts = options();
    opts.all = true;
    let report = layout::reorganize_structs(structs.clone(), Vec::new(), &opts).unwrap();
    assert_eq!(report.structs.len(), structs.len());
    for (s, info) in report.structs.iter().zip(&structs) {
        assert_eq!(s.optimal_size, sorted_by_alignment_size(&info.members), "{}", s.name);
        assert_eq!(s.optimal_size, s.lower_bound, "{}", s.name);
        assert!(s.decided != Decided::Feasible);
    }
    // Hot: two members per struct must share a line. Every member order packed naturally is a
    // candidate; the solver may also leave holes, so it must do at least as well as the best.
    let mut opts = options();
    opts.all = true;
    for info in &mut hot_structs {
        for m in info.members.iter_mut().take(2) {
            opts.hot.push(m.field.name.clone());
        }
    }
    let report = layout::reorganize_structs(hot_structs.clone(), Vec::new(), &opts).unwrap();
    for info in &hot_structs {
        let Some(s) = report.structs.iter().find(|s| s.name == info.name) else {
            let why = &report.skipped.iter().find(|k| k.name == info.name).unwrap().why;
            panic!("{} skipped: {why}", info.name);
        };
        assert_eq!(s.decided, Decided::Optimal, "{}", s.name);
        let hot_lines: Vec<u64> = s.suggested.iter().filter(|m| m.hot).map(same_line).collect();
        assert_eq!(hot_lines.len(), 2);
        assert_eq!(hot_lines[0], hot_lines[1], "{}", s.name);
        let mut best = u64::MAX;
        for order in permutations(info.members.len()) {
            let ms: Vec<(u64, u64)> = order
                .iter()
                .map(|&i| (info.members[i].field.size, info.members[i].align))
                .collect();
            let (offsets, size) = natural_size(&ms);
            let lines: Vec<(u64, u64)> = order
                .iter()
                .zip(&offsets)
                .filter(|(&i, _)| i < 2)
                .map(|(&i, &o)| (o / CACHE_LINE, (o + info.members[i].field.size - 1) / CACHE_LINE))
                .collect();
            if lines.iter().all(|l| l.0 == l.1 && l.0 == lines[0].0) {
                best = best.min(size);
            }
        }
        assert!(s.optimal_size <= best, "{}: {} > {best}", s.name, s.optimal_size);
        assert!(s.optimal_size >= s.lower_bound);
    }
}

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn layout_of_a_snapshot_reads_its_binary_and_prints_like_pahole() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_clayout(dir.path());
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let target = Running(child);
    while lines.next().unwrap().unwrap() != "ready" {}
    let core = dir.path().join("clayout.core");
    memzinc::describe::take(target.0.id() as i32, &core, None).unwrap();

    let memzinc = binary("memzinc");
    let out = Command::new(&memzinc)
        .args(["layout", "--struct", "badly_padded", "--json"])
        .arg(&core)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_core: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = Command::new(&memzinc)
        .args(["layout", "--struct", "badly_padded", "--json"])
        .arg(&exe)
        .output()
        .unwrap();
    let from_exe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_core["structs"], from_exe["structs"]);
    assert_eq!(from_core["structs"][0]["optimal_size"], 40);

    let out = Command::new(&memzinc)
        .args(["layout", "--struct", "hot_cold", "--hot", "flag,counter,state"])
        .arg(&core)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("struct hot_cold {"), "{text}");
    assert!(text.contains("reorganized: size 160 -> 160"), "{text}");
    assert!(text.contains("hot fields in cache line 0"), "{text}");
    assert!(text.contains("char cold_a[60];"), "{text}");

    // A binary rebuilt since the snapshot is refused, not misread.
    drop(target);
    std::fs::write(&exe, b"\x7fELF not the same binary any more").unwrap();
    let out = Command::new(&memzinc).arg("layout").arg(&core).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the binary the snapshot was taken of"), "{err}");
}
