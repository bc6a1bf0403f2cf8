//! Arbitrary bytes as a snapshot core file, through `Snapshot::open` (what `inspect`, `plan`,
//! `check` and `attest --snapshot` run first on a file they are given), once as they are and
//! once resealed (`memzinc_fuzz::host::reseal`), so mutated notes — the protobuf metadata note,
//! the leaves, the fast hashes, the register notes — get past the seal and reach the metadata
//! decoding and the consistency checks behind it.
//!
//! An input that starts with `MZPARENT` holds two cores, an incremental snapshot's parent and
//! the snapshot (`memzinc_fuzz::host::split_parent`): the parent is written beside it under the
//! name the seed's parent note gives, so the chain is opened — the stored runs, the parent's
//! root, every page not stored checked against the parent's leaves, reads down the chain.
//!
//! Asserts: nothing panics; an error is one line; an opened snapshot is self-consistent (as many
//! leaves and captured page addresses as its page count, leaves and regions give the recorded
//! root, which `open` checked), and reading pages, re-hashing them and cutting evidence for a
//! one-byte plan in each region are answers or errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc::describe::Snapshot;
use memzinc_fuzz::host::{one_line, reseal, scratch_dir, scratch_file, split_parent, PARENT_NAME};
use memzinc_fuzz::report_verdict;
use memzinc_verifier::plan::{PatchPlan, Write};

fn exercise(bytes: &[u8]) {
    let path = match split_parent(bytes) {
        None => scratch_file("snapshot", bytes),
        Some((parent, snapshot)) => {
            let dir = scratch_dir();
            std::fs::write(dir.join(PARENT_NAME), parent).expect("write the parent");
            let path = dir.join("snapshot");
            std::fs::write(&path, snapshot).expect("write the snapshot");
            path
        }
    };
    let snap = match Snapshot::open(&path) {
        Err(e) => {
            // The check that refused, without the numbers (FUZZ_VERDICTS=1 lists how deep a
            // corpus gets: framing, seal, metadata, regions, leaves, root).
            let text = e.to_string();
            let why = text.rsplit("snapshot: ").next().unwrap_or(&text);
            report_verdict(&why.split(|c: char| c.is_ascii_digit()).next().unwrap_or(why));
            return one_line(&e);
        }
        Ok(s) => s,
    };
    report_verdict(&"opened");
    assert_eq!(snap.leaves.len() as u64, snap.meta.page_count);
    assert_eq!(snap.page_addresses().count() as u64, snap.meta.page_count);
    // The chain as the files' parent notes alone name it starts at the parent opened.
    assert_eq!(snap.ancestor_paths().first().map(|p| p.as_path()), snap.parent_path());
    if let Err(e) = snap.verify_pages() {
        one_line(&e);
    }
    for r in snap.meta.regions.iter().take(16) {
        if let Err(e) = snap.read(r.map.start, 16) {
            one_line(&e);
        }
        let plan = PatchPlan {
            target_id: [0; 32],
            snapshot_root: snap.root(),
            model_hash: [0; 32],
            regions: Vec::new(),
            writes: vec![Write {
                address: r.map.start,
                old: vec![0],
                new: vec![1],
            }],
            slots: Vec::new(),
        };
        if let Err(e) = snap.evidence(&plan) {
            one_line(&e);
        }
    }
    for s in snap.meta.symbols.iter().take(16) {
        let _ = memzinc::describe::symbol_module(&snap.meta.regions, s.address);
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    match split_parent(data) {
        // The snapshot resealed (the parent as it is).
        Some((parent, snapshot)) => {
            let mut resealed = snapshot.to_vec();
            if reseal(&mut resealed) && resealed != snapshot {
                exercise(&memzinc_fuzz::host::join_parent(parent, &resealed));
            }
        }
        None => {
            let mut resealed = data.to_vec();
            if reseal(&mut resealed) && resealed != data {
                exercise(&resealed);
            }
        }
    }
});
