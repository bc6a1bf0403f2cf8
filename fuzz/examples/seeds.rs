//! Writes seed inputs for the `submission` target into the directory given as the argument
//! (default `fuzz/corpus/submission/`, git-ignored; `scripts/fuzz.sh` keeps corpora in its cache):
//! submissions that pass every check, one under SHA-256 and three under the all-zero hash (one
//! with symbol proofs that pass the fuzz symbol policy, one relocation that the laxest policy
//! allows), so the
//! byte-level fuzzer starts past the plan rules and can mutate its way through the evidence
//! checks and the old-bytes comparison instead of having to find a valid region table, a write
//! in a writable region and 4 KiB pages by chance.

use std::path::PathBuf;

use memzinc_fuzz::relocation::{honest_writes, Memory};
use memzinc_fuzz::{symbol_policies, RefHash, Sha2, ZeroHash, PAGE, POLICIES};
use memzinc_verifier::merkle::page_leaf;
use memzinc_verifier::plan::{
    PageProof, PatchPlan, RegionProof, SnapshotSymbol, SnapshotTrees, Submission, SymbolProof, Write,
};
use memzinc_verifier::wire::{Region, Slot, REGION_EXEC, REGION_READ, REGION_WRITE};

fn page(address: u64) -> Vec<u8> {
    (0..PAGE).map(|i| (address / PAGE + i) as u8).collect()
}

fn plan(snapshot_root: [u8; 32], regions: Vec<Region>) -> PatchPlan {
    let old = |a: u64, n: usize| -> Vec<u8> {
        (0..n as u64)
            .map(|k| page(a - a % PAGE)[((a + k) % PAGE) as usize])
            .collect()
    };
    PatchPlan {
        target_id: [1; 32],
        snapshot_root,
        model_hash: [4; 32],
        regions,
        writes: vec![
            Write {
                address: 0x4010,
                old: old(0x4010, 2),
                new: vec![0xaa, 0xbb],
            },
            Write {
                address: 0x4ffe,
                old: [old(0x4ffe, 2), old(0x5000, 2)].concat(),
                new: vec![1, 2, 3, 4],
            },
        ],
        slots: Vec::new(),
    }
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/submission"));
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let regions = vec![
        Region {
            start: 0x1000,
            end: 0x3000,
            flags: REGION_READ | REGION_EXEC,
        },
        Region {
            start: 0x4000,
            end: 0x6000,
            flags: REGION_READ | REGION_WRITE,
        },
    ];

    // Under SHA-256: a real snapshot of both regions, every page captured.
    let pages: Vec<(u64, [u8; 32])> = (0x1000..0x6000)
        .step_by(PAGE as usize)
        .filter(|a| *a != 0x3000)
        .map(|a| (a, page_leaf::<Sha2>(a, &page(a))))
        .collect();
    let trees = SnapshotTrees::new::<Sha2>(regions.clone(), pages);
    let mut p = plan(trees.root::<Sha2>(), regions[1..].to_vec());
    let evidence = trees.evidence(&p, |a| Some(page(a))).expect("evidence");
    let sha = Submission {
        plan: p.clone(),
        evidence,
    };
    assert!(sha.verify::<Sha2>(&POLICIES[1]).is_ok());

    // Under the all-zero hash: every root is zero, proofs only need the right length.
    p.snapshot_root = [0; 32];
    let mut zero = sha.clone();
    zero.plan = p;
    zero.evidence.pages_root = [0; 32];
    zero.evidence.regions_root = [0; 32];
    zero.evidence.region_proofs = vec![RegionProof {
        index: 1,
        siblings: vec![[0; 32]],
    }];
    for (i, page) in zero.evidence.pages.iter_mut().enumerate() {
        let PageProof { index, siblings, .. } = page;
        *index = 2 + i as u64;
        siblings.iter_mut().for_each(|s| *s = [0; 32]);
    }
    assert!(zero.verify::<ZeroHash>(&POLICIES[1]).is_ok());
    assert_eq!(ZeroHash::h(&[b"anything"]), [0; 32]);

    // Under the all-zero hash with symbol proofs for both keys of the fuzz symbol policy: one
    // write at `[0x5a; 32]` + 0, so it passes the symbol rules too.
    let mut symbols = zero.clone();
    symbols.plan.writes.truncate(1);
    symbols.evidence.symbol_count = 2;
    symbols.evidence.symbols = [(0x5a, 0x4010), (0xa5, 0x4800)]
        .into_iter()
        .enumerate()
        .map(|(index, (key, address))| SymbolProof {
            symbol: SnapshotSymbol {
                key: [key; 32],
                address,
                size: 64,
            },
            index: index as u64,
            siblings: vec![[0; 32]],
        })
        .collect();
    let [_, (_, symbol_rules)] = symbol_policies();
    assert!(symbols.verify_under::<ZeroHash>(&POLICIES[1], &symbol_rules).is_ok());

    let relocation = relocation_seed();

    for (name, s) in [
        ("seed-sha256", &sha),
        ("seed-zerohash", &zero),
        ("seed-symbols", &symbols),
        ("seed-relocation", &relocation),
    ] {
        std::fs::write(dir.join(name), s.encode()).expect("write seed");
    }
    println!("wrote 4 seeds to {}", dir.display());
}

/// Under the all-zero hash, a relocation on one page at 0x4000 that the last fuzz policy
/// allows: two 16-byte list nodes swap slots (0x4100 holds `{7, &B}`, 0x4200 `{9, &A + 8}`, an
/// interior pointer), a root at 0x4300 points at A, and 0x4310 holds an integer just past B's end
/// (not moved). Writes: both slots' new bytes and the root.
fn relocation_seed() -> Submission {
    let (a, b) = (0x4100, 0x4200);
    let mut memory = Memory::default();
    memory.pages.insert(0x4000, page(0x4000));
    for (at, v) in [
        (a, 7),
        (a + 8, b),
        (b, 9),
        (b + 8, a + 8),
        (0x4300, a),
        (0x4310, b + 16),
    ] {
        memory.set_word(at, v);
    }
    let slots = vec![
        Slot {
            address: a,
            len: 16,
            from: 1,
            to: 1,
        },
        Slot {
            address: b,
            len: 16,
            from: 0,
            to: 0,
        },
    ];
    let plan = PatchPlan {
        target_id: [1; 32],
        snapshot_root: [0; 32],
        model_hash: [4; 32],
        regions: vec![Region {
            start: 0x4000,
            end: 0x5000,
            flags: REGION_READ | REGION_WRITE,
        }],
        writes: honest_writes(&memory, &slots),
        slots,
    };
    assert_eq!(plan.writes.len(), 3);
    let trees = SnapshotTrees::new::<ZeroHash>(plan.regions.clone(), vec![(0x4000, [0; 32])]);
    let evidence = trees
        .evidence(&plan, |at| memory.pages.get(&at).cloned())
        .expect("evidence");
    let s = Submission { plan, evidence };
    assert!(s.verify::<ZeroHash>(&POLICIES[3]).is_ok());
    assert_eq!(
        s.verify::<ZeroHash>(&POLICIES[2]).err(),
        Some(memzinc_verifier::VerifyError::RelocationNotAllowed)
    );
    s
}
