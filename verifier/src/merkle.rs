//! The snapshot's Merkle tree over pages, and proof verification.
//!
//! A snapshot has three trees: pages, regions (every mapping, `region_leaf`) and symbols
//! (`symbol_leaf`), and its root is `hash::snapshot_root` over all three. Page leaves, in ascending page address order:
//! - a readable page: `H(PAGE_LEAF_TAG || address_le || contents)`
//! - a page that could not be read: `H(UNREADABLE_LEAF_TAG || address_le)`, so a snapshot
//!   never guesses what it did not see.
//!
//! Interior nodes are `H(NODE_TAG || left || right)`. A level with an odd count promotes its
//! last node unchanged. A proof is the list of sibling hashes from the leaf upwards; the leaf's
//! index and the leaf count determine which side each sibling is on and where none exists.

use crate::hash::{Hash, Sha256, NODE_TAG, PAGE_LEAF_TAG, REGION_LEAF_TAG, SYMBOL_LEAF_TAG, UNREADABLE_LEAF_TAG};
use crate::wire::Region;

pub fn page_leaf<H: Sha256>(address: u64, contents: &[u8]) -> Hash {
    H::hashv(&[PAGE_LEAF_TAG, &address.to_le_bytes(), contents])
}

pub fn unreadable_leaf<H: Sha256>(address: u64) -> Hash {
    H::hashv(&[UNREADABLE_LEAF_TAG, &address.to_le_bytes()])
}

/// A leaf of the region tree: every mapping of the snapshot, in address order.
pub fn region_leaf<H: Sha256>(region: &Region) -> Hash {
    H::hashv(&[REGION_LEAF_TAG, &region.encode()])
}

/// A leaf of the symbol tree: a symbol's key (`hash::symbol_key`) and where it was at runtime.
/// Leaves are in ascending key order; keys that name more than one symbol are left out.
pub fn symbol_leaf<H: Sha256>(key: &Hash, address: u64, size: u64) -> Hash {
    H::hashv(&[SYMBOL_LEAF_TAG, key, &address.to_le_bytes(), &size.to_le_bytes()])
}

pub fn node<H: Sha256>(left: &Hash, right: &Hash) -> Hash {
    H::hashv(&[NODE_TAG, left, right])
}

/// How many siblings a proof for a tree of `leaf_count` leaves has at `index`.
pub fn proof_len(mut index: u64, mut leaf_count: u64) -> usize {
    let mut len = 0;
    while leaf_count > 1 {
        if index % 2 == 1 || index + 1 < leaf_count {
            len += 1;
        }
        index /= 2;
        leaf_count = leaf_count.div_ceil(2);
    }
    len
}

/// Recomputes the root from `leaf` at `index` and its siblings; true if it equals `root`.
pub fn verify_proof<H: Sha256>(
    root: &Hash,
    leaf: &Hash,
    mut index: u64,
    mut leaf_count: u64,
    siblings: impl IntoIterator<Item = Hash>,
) -> bool {
    if index >= leaf_count {
        return false;
    }
    let mut siblings = siblings.into_iter();
    let mut acc = *leaf;
    while leaf_count > 1 {
        if index % 2 == 1 {
            match siblings.next() {
                Some(left) => acc = node::<H>(&left, &acc),
                None => return false,
            }
        } else if index + 1 < leaf_count {
            match siblings.next() {
                Some(right) => acc = node::<H>(&acc, &right),
                None => return false,
            }
        }
        index /= 2;
        leaf_count = leaf_count.div_ceil(2);
    }
    siblings.next().is_none() && acc == *root
}

/// Builds trees on the host. Keeps every level so proofs are cheap to cut.
#[cfg(feature = "std")]
pub mod tree {
    use super::*;
    use std::vec::Vec;

    /// A complete Merkle tree; `levels[0]` are the leaves, the last level is the root.
    pub struct MerkleTree {
        levels: Vec<Vec<Hash>>,
    }

    /// Levels with at least this many nodes are hashed on every core: a snapshot's page tree
    /// (a quarter million leaves per GiB) took 40 ms on one.
    const PARALLEL_FROM: usize = 1 << 14;

    /// The level above `below`: each pair hashed into a node, an odd last node carried up.
    fn level_above<H: Sha256>(below: &[Hash]) -> Vec<Hash> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if below.len() < PARALLEL_FROM || threads == 1 {
            return pairs_hashed::<H>(below);
        }
        // Parts of an even length start on a pair, so the parts' levels concatenate into the
        // whole level's.
        let part = below.len().div_ceil(2 * threads) * 2;
        std::thread::scope(|scope| {
            let parts: Vec<_> = below
                .chunks(part)
                .map(|p| scope.spawn(move || pairs_hashed::<H>(p)))
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    fn pairs_hashed<H: Sha256>(below: &[Hash]) -> Vec<Hash> {
        below
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => node::<H>(l, r),
                [only] => *only,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect()
    }

    impl MerkleTree {
        pub fn from_leaves<H: Sha256>(leaves: Vec<Hash>) -> MerkleTree {
            let mut levels = std::vec![leaves];
            while levels.last().is_some_and(|l| l.len() > 1) {
                let below = levels.last().map(Vec::as_slice).unwrap_or(&[]);
                let above = level_above::<H>(below);
                levels.push(above);
            }
            MerkleTree { levels }
        }
        /// The root; the empty tree's root is all zeroes.
        pub fn root(&self) -> Hash {
            self.levels.last().and_then(|l| l.first().copied()).unwrap_or([0; 32])
        }

        pub fn leaf_count(&self) -> u64 {
            self.levels[0].len() as u64
        }

        pub fn proof(&self, mut index: usize) -> Option<Vec<Hash>> {
            if index >= self.levels[0].len() {
                return None;
            }
            let mut siblings = Vec::new();
            for level in &self.levels[..self.levels.len() - 1] {
                let sibling = index ^ 1;
                if sibling < level.len() {
                    siblings.push(level[sibling]);
                }
                index /= 2;
            }
            Some(siblings)
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::tree::MerkleTree;
    use super::*;
    use std::vec::Vec;

    use crate::test_hash::Sha2;

    #[test]
    fn every_proof_verifies_and_tampering_fails() {
        for count in 1..=17u64 {
            let leaves: Vec<Hash> = (0..count)
                .map(|i| page_leaf::<Sha2>(i * 4096, &[i as u8; 64]))
                .collect();
            let tree = MerkleTree::from_leaves::<Sha2>(leaves.clone());
            for (i, leaf) in leaves.iter().enumerate() {
                let proof = tree.proof(i).unwrap();
                assert_eq!(proof.len(), proof_len(i as u64, count));
                assert!(verify_proof::<Sha2>(&tree.root(), leaf, i as u64, count, proof.clone()));
                let wrong_leaf = unreadable_leaf::<Sha2>(i as u64 * 4096);
                assert!(!verify_proof::<Sha2>(
                    &tree.root(),
                    &wrong_leaf,
                    i as u64,
                    count,
                    proof.clone()
                ));
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = [first[0] ^ 1; 32];
                    assert!(!verify_proof::<Sha2>(&tree.root(), leaf, i as u64, count, bad));
                }
                let mut long = proof.clone();
                long.push([0; 32]);
                assert!(!verify_proof::<Sha2>(&tree.root(), leaf, i as u64, count, long));
            }
            assert!(!verify_proof::<Sha2>(
                &tree.root(),
                &leaves[0],
                count,
                count,
                Vec::new()
            ));
        }
    }

    /// A proof does not bind the leaf count by itself: leaf 0 of 5 and leaf 0 of 7 both have
    /// siblings on the right at three levels. The snapshot root commits to the counts, and
    /// `check_evidence` checks it before any proof (fuzz/fuzz_targets/merkle.rs states the rule).
    #[test]
    fn the_count_is_bound_by_the_snapshot_root_not_by_the_proof() {
        let leaves: Vec<Hash> = (0..5).map(|i| unreadable_leaf::<Sha2>(i * 4096)).collect();
        let tree = MerkleTree::from_leaves::<Sha2>(leaves.clone());
        let proof = tree.proof(0).unwrap();
        assert!(verify_proof::<Sha2>(&tree.root(), &leaves[0], 0, 7, proof.clone()));
        assert!(!verify_proof::<Sha2>(&tree.root(), &leaves[0], 0, 9, proof)); // four levels
        let root = |page_count| {
            crate::hash::snapshot_root::<Sha2>(&crate::hash::TreeRoots {
                pages_root: &tree.root(),
                regions_root: &[0; 32],
                symbols_root: &[0; 32],
                page_count,
                region_count: 1,
                symbol_count: 0,
            })
        };
        assert_ne!(root(5), root(7));
    }

    /// Levels hashed on several cores give the tree one core gives: every size around the
    /// parallel threshold and the parts' boundaries, odd ones included, same root, and every
    /// proof checks.
    #[test]
    fn a_tree_built_on_every_core_is_the_one_built_on_one() {
        fn one_core(mut level: Vec<Hash>) -> Hash {
            while level.len() > 1 {
                level = level
                    .chunks(2)
                    .map(|p| if p.len() == 2 { node::<Sha2>(&p[0], &p[1]) } else { p[0] })
                    .collect();
            }
            level[0]
        }
        for count in [(1 << 14) - 1, 1 << 14, (1 << 14) + 1, (1 << 15) + 3, 3 * (1 << 14) + 5] {
            let leaves: Vec<Hash> = (0..count as u64)
                .map(|i| page_leaf::<Sha2>(i << 12, &i.to_le_bytes()))
                .collect();
            let tree = MerkleTree::from_leaves::<Sha2>(leaves.clone());
            assert_eq!(tree.root(), one_core(leaves.clone()), "{count} leaves");
            for index in [0, 1, count / 2 - 1, count / 2, count - 2, count - 1] {
                let proof = tree.proof(index).unwrap();
                assert!(
                    verify_proof::<Sha2>(&tree.root(), &leaves[index], index as u64, count as u64, proof),
                    "{count} leaves, proof of {index}"
                );
            }
        }
    }
}
