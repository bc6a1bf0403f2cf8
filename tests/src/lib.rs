//! Shared helpers for memzinc's end-to-end and program tests.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The attestor built by `scripts/build-program.sh`. Tests fail (not skip) without it: the test
/// command builds it first.
pub fn program_so() -> PathBuf {
    let path = std::env::var_os("MEMZINC_PROGRAM_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/deploy/attestor.so"));
    assert!(
        path.exists(),
        "{} is missing: build it with scripts/build-program.sh",
        path.display()
    );
    path
}

/// A built binary of this workspace (memzinc, healme), from cargo's target directory.
pub fn binary(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; binaries are one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// A synthetic snapshot for program tests: regions with known flags and every page of them
/// captured with deterministic contents, so plans with valid Merkle evidence can be built
/// without a live process.
pub mod synthetic {
    use memzinc::Sha2;
    use memzinc_verifier::plan::{PatchPlan, SnapshotTrees, Submission, Write};
    use memzinc_verifier::wire::{Region, PAGE_LEN, REGION_EXEC, REGION_READ, REGION_WRITE};

    pub const RW: u8 = REGION_READ | REGION_WRITE;
    pub const RX: u8 = REGION_READ | REGION_EXEC;
    pub const RO: u8 = REGION_READ;

    /// Code at 0x40_0000, read-only data at 0x60_0000, a 256 KiB read-write heap at 0x70_0000.
    pub fn regions() -> Vec<Region> {
        vec![
            Region {
                start: 0x40_0000,
                end: 0x40_2000,
                flags: RX,
            },
            Region {
                start: 0x60_0000,
                end: 0x60_1000,
                flags: RO,
            },
            Region {
                start: 0x70_0000,
                end: 0x74_0000,
                flags: RW,
            },
        ]
    }

    pub fn page(address: u64) -> Vec<u8> {
        (0..PAGE_LEN)
            .map(|i| ((address >> 12) as usize * 7 + i * 13) as u8)
            .collect()
    }

    /// The snapshot's byte at `address`.
    pub fn byte(address: u64) -> u8 {
        page(address - address % PAGE_LEN as u64)[(address % PAGE_LEN as u64) as usize]
    }

    pub fn trees() -> SnapshotTrees {
        let pages = regions()
            .iter()
            .flat_map(|r| (r.start..r.end).step_by(PAGE_LEN))
            .map(|a| (a, memzinc_verifier::merkle::page_leaf::<Sha2>(a, &page(a))))
            .collect();
        SnapshotTrees::new::<Sha2>(regions(), pages)
    }

    /// A plan for `target` writing `len` bytes at each address (old bytes from the snapshot,
    /// new bytes their complement), with evidence. Regions are those the writes touch.
    pub fn submission(target: &str, writes: &[(u64, usize)]) -> Submission {
        let t = trees();
        let writes: Vec<Write> = writes
            .iter()
            .map(|&(address, len)| {
                let old: Vec<u8> = (0..len as u64).map(|i| byte(address + i)).collect();
                let new = old.iter().map(|b| !b).collect();
                Write { address, old, new }
            })
            .collect();
        let mut used: Vec<Region> = regions()
            .into_iter()
            .filter(|r| writes.iter().any(|w| r.start <= w.address && w.address < r.end))
            .collect();
        used.dedup();
        let plan = PatchPlan {
            target_id: memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes()),
            snapshot_root: t.root::<Sha2>(),
            regions: used,
            writes,
        };
        // Writes outside the snapshot have no pages to prove; the rest keep their evidence, so
        // the program's own rules are what refuses such plans.
        let in_snapshot = |a: u64| regions().iter().any(|r| r.start <= a && a < r.end);
        let provable = PatchPlan {
            writes: plan
                .writes
                .iter()
                .filter(|w| in_snapshot(w.address) && in_snapshot(w.address + w.old.len() as u64 - 1))
                .cloned()
                .collect(),
            ..plan.clone()
        };
        let evidence = t.evidence(&provable, |a| Some(page(a))).expect("pages exist");
        Submission { plan, evidence }
    }
}
