//! Writes seed inputs for the host-side targets into `<CORPUS>/<target>/` (the argument; default
//! `fuzz/corpus/`, git-ignored; `scripts/fuzz.sh` keeps corpora in its cache), so each target
//! starts from input its decoder accepts instead of having to find ELF framing, a seal or a
//! registry magic by chance:
//!
//! - `snapshot_open`: a real snapshot core (`memzinc::describe::take`) of a tiny static process
//!   (`gcc -static -nostdlib`, a loop around `pause`), about 40 pages; and, the process tracked,
//!   an incremental snapshot since a full one that refers to it, both in one input
//!   (`memzinc_fuzz::host::join_parent`);
//! - `plan_file`: a plan file for that snapshot (one byte of its stack) with its evidence;
//! - `debug_types`: `tests/targets/ctypes.c` compiled with `gcc -g`;
//! - `registry`: a registry image at `REGISTRY_BASE` built from `memzinc_describe::abi`: one
//!   ready entry whose layout has an unsigned, a signed and a pointer field.
//!
//! Needs gcc and root (ptrace), as the tests do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use memzinc::base::Sha2;
use memzinc::describe::Snapshot;
use memzinc::reason::{Plan, PlannedWrite};
use memzinc_describe::{abi, Kind, ENTRY_READY, REGISTRY_MAGIC};
use memzinc_verifier::plan::{PatchPlan, Write};
use memzinc_verifier::wire::Region;

const TINY_C: &str = "void _start(void) { for (;;) __asm__ volatile(\"mov $34, %%eax\\n syscall\" ::: \"rax\", \"rcx\", \"r11\", \"memory\"); }\n";

fn gcc(args: &[&str]) {
    let status = Command::new("gcc").args(args).status().expect("run gcc");
    assert!(status.success(), "gcc {args:?} failed");
}

/// The tiny process tracked, a full snapshot named as the fuzz target names a parent, and an
/// incremental one since it that refers to it: (parent bytes, snapshot bytes).
fn incremental_seed(pid: i32, work: &Path) -> (Vec<u8>, Vec<u8>) {
    std::env::set_var("MEMZINC_STATE_DIR", work.join("state"));
    memzinc::describe::track(pid).expect("track the tiny process");
    let parent = work.join(memzinc_fuzz::host::PARENT_NAME);
    memzinc::describe::take(pid, &parent, None).expect("the parent snapshot");
    let mut prev = memzinc::describe::open_since(pid, &parent, false).expect("the parent opens");
    let snapshot = work.join("snapshot");
    let since = memzinc::describe::Since::Refer(&mut prev);
    let report = memzinc::describe::take_since(pid, Some(since), &snapshot, None).expect("the incremental snapshot");
    assert!(report.parent.is_some(), "the seed refers to its parent");
    let opened = Snapshot::open(&snapshot).expect("the incremental seed opens");
    assert!(opened.parent().is_some());
    (
        std::fs::read(&parent).expect("read the parent"),
        std::fs::read(&snapshot).expect("read the snapshot"),
    )
}

fn snapshot_and_plan(corpus: &Path, work: &Path) {
    let source = work.join("tiny.c");
    let exe = work.join("tiny");
    std::fs::write(&source, TINY_C).expect("write tiny.c");
    gcc(&[
        "-static",
        "-nostdlib",
        "-O1",
        "-o",
        exe.to_str().unwrap(),
        source.to_str().unwrap(),
    ]);
    let mut child = Command::new(&exe).stdin(Stdio::null()).spawn().expect("start tiny");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let core = corpus.join("snapshot_open").join("tiny-core");
    let taken = memzinc::describe::take(child.id() as i32, &core, None);
    let delta = taken.as_ref().ok().map(|_| incremental_seed(child.id() as i32, work));
    let _ = child.kill();
    let _ = child.wait();
    taken.expect("snapshot of the tiny process");
    let (parent, snapshot) = delta.expect("an incremental snapshot of the tiny process");
    std::fs::write(
        corpus.join("snapshot_open").join("tiny-incremental"),
        memzinc_fuzz::host::join_parent(&parent, &snapshot),
    )
    .expect("write the incremental seed");

    let snap = Snapshot::open(&core).expect("the seed core opens");
    let stack = snap
        .meta
        .regions
        .iter()
        .find(|r| r.map.path == "[stack]" && r.captured)
        .expect("a captured stack");
    let address = stack.map.end - 64;
    let old = snap.read(address, 1).expect("stack byte");
    let region = Region {
        start: stack.map.start,
        end: stack.map.end,
        flags: stack.map.region_flags(),
    };
    let plan = PatchPlan {
        target_id: memzinc_verifier::hash::target_id::<Sha2>(b"tiny"),
        snapshot_root: snap.root(),
        model_hash: [0; 32],
        regions: vec![region],
        writes: vec![Write {
            address,
            old: old.clone(),
            new: vec![!old[0]],
        }],
        slots: Vec::new(),
    };
    let mut evidence = Vec::new();
    snap.evidence(&plan).expect("evidence").encode_into(&mut evidence);
    let file = Plan {
        target: "tiny".into(),
        target_id: plan.target_id,
        snapshot_root: plan.snapshot_root,
        model_hash: plan.model_hash,
        solver: "gecode".into(),
        optimal: true,
        findings: Vec::new(),
        regions: vec![region],
        writes: vec![PlannedWrite {
            address,
            old: old.clone(),
            new: vec![!old[0]],
            field: "stack.byte".into(),
            rule: "seed".into(),
        }],
        slots: Vec::new(),
        evidence,
        stats: None,
    };
    let path = corpus.join("plan_file").join("tiny-plan.json");
    file.save(&path).expect("write the plan seed");
    let loaded = Plan::load(&path).expect("the plan seed loads");
    assert_eq!(loaded.patch(), plan);
}

/// A registry image as `memzinc_describe` lays it out, placed at `base`.
fn registry_image(base: u64) -> Vec<u8> {
    let mut image = vec![0u8; 0x800];
    let word = |image: &mut Vec<u8>, at: usize, v: u64| image[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let mut strings_at = 0x600usize;
    let mut string = |image: &mut Vec<u8>, s: &str| {
        image[strings_at..strings_at + s.len()].copy_from_slice(s.as_bytes());
        let ptr = base + strings_at as u64;
        strings_at += s.len();
        (ptr, s.len() as u64)
    };
    image[abi::REGISTRY_MAGIC..abi::REGISTRY_MAGIC + 8].copy_from_slice(&REGISTRY_MAGIC);
    image[abi::REGISTRY_WORD_SIZE..abi::REGISTRY_WORD_SIZE + 4].copy_from_slice(&(abi::WORD as u32).to_le_bytes());
    image[abi::REGISTRY_ENTRY_SIZE..abi::REGISTRY_ENTRY_SIZE + 4]
        .copy_from_slice(&(abi::ENTRY_SIZE as u32).to_le_bytes());
    word(&mut image, abi::REGISTRY_CAPACITY, 1);
    word(&mut image, abi::REGISTRY_LEN, 1);
    let (layout_at, fields_at) = (0x200usize, 0x300usize);
    let entry = abi::REGISTRY_ENTRIES;
    word(&mut image, entry + abi::ENTRY_STATE, ENTRY_READY as u64);
    word(&mut image, entry + abi::ENTRY_ADDRESS, 0x5555_0000);
    word(&mut image, entry + abi::ENTRY_LAYOUT, base + layout_at as u64);
    let (p, n) = string(&mut image, "STATE");
    word(&mut image, entry + abi::ENTRY_NAME_PTR, p);
    word(&mut image, entry + abi::ENTRY_NAME_LEN, n);

    let (p, n) = string(&mut image, "State");
    word(&mut image, layout_at + abi::TYPE_NAME + abi::STR_PTR, p);
    word(&mut image, layout_at + abi::TYPE_NAME + abi::STR_LEN, n);
    word(&mut image, layout_at + abi::TYPE_SIZE, 16);
    word(&mut image, layout_at + abi::TYPE_ALIGN, 8);
    word(&mut image, layout_at + abi::TYPE_FIELDS, base + fields_at as u64);
    word(&mut image, layout_at + abi::TYPE_FIELD_COUNT, 3);
    let fields = [
        ("hits", "u32", 0, 4, Kind::Unsigned),
        ("delta", "i16", 4, 2, Kind::Signed),
        ("next", "*const State", 8, 8, Kind::Pointer),
    ];
    for (i, (name, ty, offset, size, kind)) in fields.into_iter().enumerate() {
        let f = fields_at + i * abi::FIELD_SIZE_OF;
        let (p, n) = string(&mut image, name);
        word(&mut image, f + abi::FIELD_NAME + abi::STR_PTR, p);
        word(&mut image, f + abi::FIELD_NAME + abi::STR_LEN, n);
        let (p, n) = string(&mut image, ty);
        word(&mut image, f + abi::FIELD_TYPE_NAME + abi::STR_PTR, p);
        word(&mut image, f + abi::FIELD_TYPE_NAME + abi::STR_LEN, n);
        word(&mut image, f + abi::FIELD_OFFSET, offset);
        word(&mut image, f + abi::FIELD_SIZE, size);
        image[f + abi::FIELD_KIND..f + abi::FIELD_KIND + 4].copy_from_slice(&(kind as u32).to_le_bytes());
        image[f + abi::FIELD_ELEMENT_KIND..f + abi::FIELD_ELEMENT_KIND + 4]
            .copy_from_slice(&(Kind::None as u32).to_le_bytes());
        word(&mut image, f + abi::FIELD_COUNT, 1);
    }
    image
}

fn main() {
    let corpus = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    for t in ["snapshot_open", "plan_file", "debug_types", "registry"] {
        std::fs::create_dir_all(corpus.join(t)).expect("create the corpus directories");
    }
    let work = tempfile::tempdir().expect("a temporary directory");

    snapshot_and_plan(&corpus, work.path());

    let ctypes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/targets/ctypes.c");
    let out = corpus.join("debug_types").join("ctypes");
    gcc(&["-g", "-O0", "-o", out.to_str().unwrap(), ctypes.to_str().unwrap()]);

    let base = memzinc_fuzz::host::REGISTRY_BASE;
    let image = registry_image(base);
    let memory = memzinc_fuzz::host::SliceMemory { base, bytes: &image };
    let objects = memzinc::introspect::read_registry(&memory, base).expect("the registry seed decodes");
    assert_eq!(objects.len(), 1);
    objects[0].object_layout().expect("the seed's layout is valid");
    std::fs::write(corpus.join("registry").join("one-entry"), &image).expect("write the registry seed");

    println!("wrote host seeds to {}", corpus.display());
}
