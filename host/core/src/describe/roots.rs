//! The roots of a snapshot: its three trees (regions, captured pages, symbols) as
//! `memzinc_verifier::plan::SnapshotTrees` builds them for proofs, and the same roots computed
//! without keeping the page tree's levels, but for the one a core keeps (note type 6), so that
//! a snapshot since a known one hashes again only the blocks with a changed leaf.

use std::path::Path;

use memzinc_verifier::merkle;
use memzinc_verifier::plan::{SnapshotSymbol, SnapshotTrees};
use memzinc_verifier::wire::Region;

use super::region::{symbol_module, SnapRegion};
use crate::base::{Error, Result, Sha2};
use crate::introspect::{Symbol, PAGE_SIZE};

/// The level of the page tree a core keeps (note type 6): node i is the root of leaves
/// [8i, 8i + 8). An incremental snapshot since a core whose level is known good hashes again
/// only the blocks with a changed leaf and the levels above them (4 GiB, 100 MiB written in
/// scattered pages: a fifth of the blocks).
const KEPT_LEVEL: usize = 3;
pub(super) const BLOCK: usize = 1 << KEPT_LEVEL;

/// Why a snapshot's trees do not give its recorded root: a core from before the symbol tree
/// (format v1: the root committed to pages and regions only) says so, anything else is corrupt.
pub(super) fn root_mismatch(trees: &SnapshotTrees, pages: usize, regions: usize, recorded: &str) -> String {
    use memzinc_verifier::Sha256 as _;
    let v1 = Sha2::hashv(&[
        b"memzinc/snapshot/v1",
        &trees.pages_root(),
        &trees.regions_root(),
        &(pages as u64).to_le_bytes(),
        &(regions as u64).to_le_bytes(),
    ]);
    if hex::encode(v1) == recorded {
        "snapshot format v1 (written before memzinc's roots committed to symbols): take a new snapshot".into()
    } else {
        "leaves and regions do not hash to the recorded root".into()
    }
}

/// The snapshot's three trees: every mapping as a region leaf, every captured page as a page
/// leaf, every symbol (keyed by module file name and name) as a symbol leaf.
pub(super) fn trees_of(regions: &[SnapRegion], symbols: &[Symbol], leaves: &[[u8; 32]]) -> SnapshotTrees {
    let tree_symbols = symbols
        .iter()
        .filter_map(|s| {
            let module = symbol_module(regions, s.address)?;
            Some(SnapshotSymbol {
                key: memzinc_verifier::hash::symbol_key::<Sha2>(module.as_bytes(), s.name.as_bytes()),
                address: s.address,
                size: s.size,
            })
        })
        .collect();
    let all_regions = regions
        .iter()
        .map(|r| Region {
            start: r.map.start,
            end: r.map.end,
            flags: r.map.region_flags(),
        })
        .collect();
    let addresses = regions
        .iter()
        .filter(|r| r.captured)
        .flat_map(|r| (r.map.start..r.map.end).step_by(PAGE_SIZE as usize));
    SnapshotTrees::new::<Sha2>(all_regions, addresses.zip(leaves.iter().copied()).collect())
        .with_symbols::<Sha2>(tree_symbols)
}

/// The kept level of an earlier snapshot of `leaf_count` leaves, known to be its leaves', and
/// where a later one's leaves are not that one's (runs of leaf indices `[start, end)`, any
/// order): with as many leaves (so blocks of the same leaves), the later one's blocks without
/// such a leaf keep their node.
#[derive(Clone, Copy)]
pub(super) struct KnownLevel<'a> {
    pub kept: &'a [[u8; 32]],
    pub leaf_count: usize,
    pub fresh: &'a [(usize, usize)],
}

/// A snapshot's roots as [`trees_of`] gives them, and its page tree's kept level.
pub(super) struct Roots {
    pub root: [u8; 32],
    pub pages_root: [u8; 32],
    pub kept_level: Vec<[u8; 32]>,
}

/// The snapshot root and the page tree's root, as [`trees_of`] gives them, without keeping the
/// page tree's levels (what a proof needs, and what writing and opening a core do not) but the
/// kept one: blocks of [`BLOCK`] leaves hashed into it (with `prev`, the kept level of a
/// snapshot whose level is known good, only the blocks with a fresh leaf), then the
/// levels above it in two buffers, half on each of two threads.
pub(super) fn roots_of(
    regions: &[SnapRegion],
    symbols: &[Symbol],
    leaves: &[[u8; 32]],
    prev: Option<KnownLevel<'_>>,
) -> Roots {
    let small = trees_of(regions, symbols, &[]);
    let kept_level = kept_level(leaves, prev);
    let pages_root = page_root(&kept_level);
    let root = memzinc_verifier::hash::snapshot_root::<Sha2>(&memzinc_verifier::hash::TreeRoots {
        pages_root: &pages_root,
        regions_root: &small.regions_root(),
        symbols_root: &small.symbols_root(),
        page_count: leaves.len() as u64,
        region_count: regions.len() as u64,
        symbol_count: small.symbol_count(),
    });
    Roots {
        root,
        pages_root,
        kept_level,
    }
}

/// The page tree's nodes at [`KEPT_LEVEL`]: node i is the root of the block
/// `leaves[BLOCK * i..]` (the last may be short), paired as the tree pairs them; the levels above
/// are the tree's over these nodes. With `prev` (of as many leaves), a block without a fresh
/// leaf keeps its node. (As many blocks is not enough: the last one may have had more leaves.)
fn kept_level(leaves: &[[u8; 32]], prev: Option<KnownLevel<'_>>) -> Vec<[u8; 32]> {
    let blocks = leaves.len().div_ceil(BLOCK);
    let prev = prev.filter(|p| p.leaf_count == leaves.len() && p.kept.len() == blocks);
    let mut stale = vec![prev.is_none(); blocks];
    for &(start, end) in prev.map_or(&[][..], |p| p.fresh) {
        if start < end {
            stale[start / BLOCK..=((end - 1) / BLOCK).min(blocks.saturating_sub(1))].fill(true);
        }
    }
    let fill = |first: usize, nodes: &mut [[u8; 32]]| {
        let mut hashed = 0usize;
        for (j, node) in nodes.iter_mut().enumerate() {
            let from = (first + j) * BLOCK;
            let block = &leaves[from..(from + BLOCK).min(leaves.len())];
            *node = match prev {
                Some(p) if !stale[first + j] => p.kept[first + j],
                _ => {
                    hashed += 1;
                    block_root(block)
                }
            };
        }
        hashed
    };
    let mut nodes = vec![[0u8; 32]; blocks];
    let half = blocks / 2;
    let (a, b) = nodes.split_at_mut(half);
    let hashed = if blocks >= 1 << 12 {
        std::thread::scope(|scope| {
            let first = scope.spawn(|| fill(0, a));
            let second = fill(half, b);
            first.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) + second
        })
    } else {
        fill(0, a) + fill(half, b)
    };
    tracing::debug!("roots: {hashed} of {blocks} blocks of leaves hashed");
    nodes
}

/// The root of a block of 1 to [`BLOCK`] leaves, paired as the page tree pairs them.
fn block_root(block: &[[u8; 32]]) -> [u8; 32] {
    let mut level = [[0u8; 32]; BLOCK];
    let mut n = block.len().min(BLOCK);
    level[..n].copy_from_slice(&block[..n]);
    while n > 1 {
        // Node i is written after its pair, 2i and 2i + 1, is read; i <= 2i.
        for i in 0..n.div_ceil(2) {
            level[i] = match level.get(2 * i + 1).filter(|_| 2 * i + 1 < n) {
                Some(right) => merkle::node::<Sha2>(&level[2 * i], right),
                None => level[2 * i],
            };
        }
        n = n.div_ceil(2);
    }
    level[0]
}

/// The root of the Merkle tree over `leaves` (`merkle::tree::MerkleTree`'s: pairs hashed into
/// nodes, an odd last node carried up, the empty tree's root all zeroes). Each level goes into
/// one of two buffers in turn; a long level is hashed in two halves at once.
fn page_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    /// Levels at least this long are hashed on two threads.
    const PARALLEL_FROM: usize = 1 << 14;
    fn pairs_into(below: &[[u8; 32]], above: &mut [[u8; 32]]) {
        for (pair, node) in below.chunks(2).zip(above) {
            *node = match pair {
                [l, r] => merkle::node::<Sha2>(l, r),
                [only] => *only,
                _ => unreachable!("chunks(2) yields one or two"),
            };
        }
    }
    fn level_above(below: &[[u8; 32]], above: &mut [[u8; 32]]) {
        if below.len() < PARALLEL_FROM {
            return pairs_into(below, above);
        }
        // The first half of an even length, so the halves' levels join into the whole one's.
        let split = (below.len() / 2) & !1;
        let (first, second) = above.split_at_mut(split / 2);
        std::thread::scope(|scope| {
            scope.spawn(|| pairs_into(&below[..split], first));
            pairs_into(&below[split..], second);
        });
    }
    match leaves {
        [] => return [0; 32],
        [only] => return *only,
        _ => {}
    }
    let mut a = vec![[0u8; 32]; leaves.len().div_ceil(2)];
    let mut b = vec![[0u8; 32]; a.len().div_ceil(2)];
    level_above(leaves, &mut a);
    let mut len = a.len();
    let mut in_a = true;
    while len > 1 {
        let above = len.div_ceil(2);
        if in_a {
            level_above(&a[..len], &mut b[..above]);
        } else {
            level_above(&b[..len], &mut a[..above]);
        }
        in_a = !in_a;
        len = above;
    }
    if in_a {
        a[0]
    } else {
        b[0]
    }
}

/// That `leaves`, `regions` and `symbols` give the recorded `pages_root` and `root` (hex);
/// returns the page tree's kept level.
pub(super) fn check_root(
    path: &Path,
    regions: &[SnapRegion],
    symbols: &[Symbol],
    leaves: &[[u8; 32]],
    pages_root: &str,
    root: &str,
) -> Result<Vec<[u8; 32]>> {
    let roots = roots_of(regions, symbols, leaves, None);
    if hex::encode(roots.pages_root) != pages_root || hex::encode(roots.root) != root {
        let trees = trees_of(regions, symbols, leaves);
        return Err(Error::Corrupt {
            path: path.into(),
            kind: "snapshot",
            why: root_mismatch(&trees, leaves.len(), regions.len(), root),
        });
    }
    Ok(roots.kept_level)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::introspect::{MapEntry, SymbolKind};

    /// One captured region of two pages and a symbol in it.
    pub(in crate::describe) fn sample() -> (Vec<SnapRegion>, Vec<Symbol>) {
        let region = SnapRegion {
            map: MapEntry {
                start: 0x1000,
                end: 0x3000,
                perms: "rw-p".into(),
                offset: 0,
                dev: "00:00".into(),
                inode: 0,
                path: "[heap]".into(),
            },
            captured: true,
            data_offset: 0x1000,
            unreadable_pages: vec![0x2000],
        };
        let symbol = Symbol {
            name: "STATE".into(),
            demangled: None,
            address: 0x1008,
            size: 8,
            kind: SymbolKind::Object,
            module: String::new(),
        };
        (vec![region], vec![symbol])
    }

    /// The roots computed without the tree's levels, from scratch and since a known kept level,
    /// are the roots of the trees a proof is built from.
    #[test]
    fn roots_without_levels_are_the_trees_roots() {
        let (mut regions, symbols) = sample();
        for n in [0usize, 1, 2, 3, 5, 8, (1 << 14) + 3, 40_001] {
            // One captured region of n pages, so every leaf is in the trees.
            regions[0].map.end = regions[0].map.start + n as u64 * PAGE_SIZE;
            let leaves: Vec<[u8; 32]> = (0..n as u64).map(merkle::unreadable_leaf::<Sha2>).collect();
            let trees = trees_of(&regions, &symbols, &leaves);
            let roots = roots_of(&regions, &symbols, &leaves, None);
            assert_eq!(roots.pages_root, trees.pages_root(), "{n} leaves");
            assert_eq!(roots.root, trees.root::<Sha2>(), "{n} leaves");
            // Since a snapshot that differs in a few leaves (the first, one in the middle and
            // the last), with its kept level: the same roots and level.
            let mut before = leaves.clone();
            for i in [0, n / 2, n.saturating_sub(1)].into_iter().filter(|&i| i < n) {
                before[i] = [7; 32];
            }
            let theirs = roots_of(&regions, &symbols, &before, None);
            // These leaves' roots since an earlier level of `leaf_count` leaves.
            let since = |kept: &[[u8; 32]], leaf_count: usize, fresh: &[(usize, usize)]| {
                let known = KnownLevel {
                    kept,
                    leaf_count,
                    fresh,
                };
                roots_of(&regions, &symbols, &leaves, Some(known))
            };
            let fresh: Vec<(usize, usize)> = [0, n / 2, n.saturating_sub(1)]
                .into_iter()
                .filter(|&i| i < n)
                .map(|i| (i, i + 1))
                .collect();
            let again = since(&theirs.kept_level, n, &fresh);
            assert_eq!(
                (again.root, again.pages_root),
                (roots.root, roots.pages_root),
                "{n} leaves"
            );
            assert_eq!(again.kept_level, roots.kept_level, "{n} leaves");
            // The fresh runs are what says which nodes to hash again: without them, the earlier
            // level's nodes are kept where the leaves changed.
            if n > 0 {
                let blind = since(&theirs.kept_level, n, &[]);
                assert_ne!(blind.pages_root, roots.pages_root, "{n} leaves");
            }
            // A level of as many blocks but more leaves (a mapping at the end gone since): its
            // last node covers leaves that are no longer there, so it is not kept.
            if n % BLOCK != 0 {
                let more: Vec<[u8; 32]> = (0..n.next_multiple_of(BLOCK) as u64)
                    .map(merkle::unreadable_leaf::<Sha2>)
                    .collect();
                let theirs = roots_of(&regions, &symbols, &more, None);
                let longer = since(&theirs.kept_level, more.len(), &[]);
                assert_eq!(longer.pages_root, roots.pages_root, "{n} leaves");
            }
        }
    }

    /// A core whose root is the v1 formula (pages and regions, before symbols) is named as
    /// such; any other mismatch stays "corrupt".
    #[test]
    fn a_root_from_before_the_symbol_tree_is_named() {
        use sha2::Digest as _;
        let (regions, symbols) = sample();
        let pages: u64 = regions
            .iter()
            .filter(|r| r.captured)
            .map(|r| (r.map.end - r.map.start) / PAGE_SIZE)
            .sum();
        let leaves = vec![[7u8; 32]; pages as usize];
        let trees = trees_of(&regions, &symbols, &leaves);
        let mut v1 = sha2::Sha256::new();
        v1.update(b"memzinc/snapshot/v1");
        v1.update(trees.pages_root());
        v1.update(trees.regions_root());
        v1.update(pages.to_le_bytes());
        v1.update((regions.len() as u64).to_le_bytes());
        let v1 = hex::encode(v1.finalize());
        let said = root_mismatch(&trees, pages as usize, regions.len(), &v1);
        assert!(said.contains("snapshot format v1"), "{said}");
        let said = root_mismatch(&trees, pages as usize, regions.len(), &"00".repeat(32));
        assert!(said.contains("do not hash to the recorded root"), "{said}");
    }
}
