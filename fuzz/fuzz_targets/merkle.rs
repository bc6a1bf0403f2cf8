//! Random leaf sets and proofs through `merkle::verify_proof` (and the host's `MerkleTree`).
//!
//! Leaves are page leaves (or unreadable-page leaves) of distinct addresses, so they are
//! distinct and domain-tagged, as in a real snapshot. Asserts: `MerkleTree` gives the root and
//! proofs of an independent recursive construction; `proof_len` is the proof's length; a valid
//! proof verifies; flipping any one bit of the leaf or of any sibling, or dropping or adding a
//! sibling, fails; an index or a count with one bit flipped verifies exactly when the reference
//! says the proof's shape (which side each sibling is on) is unchanged — with a changed count
//! that can happen (e.g. leaf 0 of 5 vs of 7), which is why `hash::snapshot_root` commits to the
//! counts: the target also checks that a flipped count changes the snapshot root.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use memzinc_fuzz::{ref_proof, ref_root, ref_shape, ref_verify, Hash, RefHash, Sha2, PAGE};
use memzinc_verifier::hash::{snapshot_root, TreeRoots};
use memzinc_verifier::merkle::{proof_len, tree::MerkleTree, verify_proof};

#[derive(Arbitrary, Debug)]
struct Input {
    /// One leaf each: (page contents seed, readable?).
    leaves: Vec<(u8, bool)>,
    base_page: u32,
    index: u16,
    /// Bits to flip: in the leaf, in a sibling (which sibling, which bit), in the index, in the count.
    leaf_bit: u8,
    sibling: u8,
    sibling_bit: u8,
    index_bit: u8,
    count_bit: u8,
}

fn flip(h: &Hash, bit: u8) -> Hash {
    let mut h = *h;
    h[bit as usize / 8] ^= 1 << (bit % 8);
    h
}

fuzz_target!(|input: Input| {
    if input.leaves.is_empty() {
        return;
    }
    let leaves: Vec<Hash> = input
        .leaves
        .iter()
        .take(200)
        .enumerate()
        .map(|(i, &(seed, readable))| {
            let address = (input.base_page as u64 + i as u64) * PAGE;
            if readable {
                Sha2::page_leaf(address, &[seed; 64])
            } else {
                Sha2::unreadable_leaf(address)
            }
        })
        .collect();
    let n = leaves.len() as u64;
    let index = input.index as u64 % n;
    let leaf = leaves[index as usize];

    let tree = MerkleTree::from_leaves::<Sha2>(leaves.clone());
    let root = ref_root::<Sha2>(&leaves);
    assert_eq!(tree.root(), root);
    assert_eq!(tree.leaf_count(), n);
    let proof = tree.proof(index as usize).expect("a proof for every leaf");
    assert_eq!(proof, ref_proof::<Sha2>(&leaves, index as usize));
    assert_eq!(proof.len(), proof_len(index, n));
    assert!(tree.proof(n as usize).is_none());

    let verify = |leaf: &Hash, index: u64, count: u64, siblings: &[Hash]| {
        let got = verify_proof::<Sha2>(&root, leaf, index, count, siblings.iter().copied());
        assert_eq!(got, ref_verify::<Sha2>(&root, leaf, index, count, siblings));
        got
    };
    assert!(verify(&leaf, index, n, &proof), "a valid proof failed");

    // The leaf: every one of its bits matters.
    assert!(!verify(&flip(&leaf, input.leaf_bit), index, n, &proof));
    // A sibling: every bit of every sibling matters.
    if !proof.is_empty() {
        let mut bad = proof.clone();
        let s = input.sibling as usize % bad.len();
        bad[s] = flip(&bad[s], input.sibling_bit);
        assert!(!verify(&leaf, index, n, &bad));
        bad = proof.clone();
        bad.remove(s);
        assert!(!verify(&leaf, index, n, &bad));
    }
    let mut longer = proof.clone();
    longer.push(root);
    assert!(!verify(&leaf, index, n, &longer));

    // The index and the count: verify exactly when the shape is the same.
    let shape = ref_shape(index, n);
    let other_index = index ^ (1u64 << (input.index_bit % 64));
    assert_eq!(
        verify(&leaf, other_index, n, &proof),
        ref_shape(other_index, n) == shape
    );
    // An index maps to its shape one to one within a tree: another index never verifies.
    assert!(!verify(&leaf, other_index, n, &proof));
    let other_count = n ^ (1u64 << (input.count_bit % 64));
    assert_eq!(
        verify(&leaf, index, other_count, &proof),
        ref_shape(index, other_count) == shape
    );
    // Whatever verify_proof says about another count, the snapshot root tells them apart.
    let roots = |page_count| TreeRoots {
        pages_root: &root,
        regions_root: &[0; 32],
        symbols_root: &[0; 32],
        page_count,
        region_count: 1,
        symbol_count: 0,
    };
    assert_ne!(
        snapshot_root::<Sha2>(&roots(n)),
        snapshot_root::<Sha2>(&roots(other_count))
    );
});
