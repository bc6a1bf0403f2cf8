//! Owned plans for the host: build, canonicalise, encode. Decoding and checking go through
//! [`crate::wire`] and [`crate::rules`], the same path the program takes.

use std::vec::Vec;

use crate::error::VerifyError;
use crate::hash::{self, Hash, Sha256};
use crate::merkle::{self, tree::MerkleTree};
use crate::relocation_stream::{self, StreamSlot, StreamState};
use crate::rules::{check_plan, verify_submission, PlanTotals, Verdict};
use crate::wire::{PlanView, PolicyRules, Region, Slot, SymbolRules, PAGE_LEN};

/// One write of an owned plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub address: u64,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// A patch plan as the program receives it in `attest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchPlan {
    pub target_id: Hash,
    pub snapshot_root: Hash,
    /// The hash of the MiniZinc models the plan was solved with (`PolicyConfig::model_hash`).
    pub model_hash: Hash,
    pub regions: Vec<Region>,
    pub writes: Vec<Write>,
    /// A relocation's slots, ascending by address (empty for any other plan; `wire::Slot`).
    pub slots: Vec<Slot>,
}

impl PatchPlan {
    /// Sorts regions and writes into the canonical order the rules require.
    pub fn canonicalize(&mut self) {
        self.regions.sort_by_key(|r| (r.start, r.end));
        self.writes.sort_by_key(|w| w.address);
    }

    /// Borsh encoding of the region table, length prefix included.
    pub fn encode_regions(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.regions.len() * crate::wire::REGION_LEN);
        out.extend_from_slice(&(self.regions.len() as u32).to_le_bytes());
        for r in &self.regions {
            out.extend_from_slice(&r.encode());
        }
        out
    }

    /// The canonical encoding, `PlanCore`: what the plan hash covers.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.target_id);
        out.extend_from_slice(&self.snapshot_root);
        out.extend_from_slice(&self.model_hash);
        out.extend_from_slice(&self.encode_regions());
        out.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for w in &self.writes {
            out.extend_from_slice(&w.address.to_le_bytes());
            out.extend_from_slice(&(w.old.len() as u32).to_le_bytes());
            out.extend_from_slice(&w.old);
            out.extend_from_slice(&(w.new.len() as u32).to_le_bytes());
            out.extend_from_slice(&w.new);
        }
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        for s in &self.slots {
            out.extend_from_slice(&s.encode());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PatchPlan, VerifyError> {
        let args = PlanView::parse(bytes)?;
        Ok(PatchPlan {
            target_id: *args.target_id,
            snapshot_root: *args.snapshot_root,
            model_hash: *args.model_hash,
            regions: args.regions().collect(),
            writes: args
                .writes()
                .map(|w| Write {
                    address: w.address,
                    old: w.old.to_vec(),
                    new: w.new.to_vec(),
                })
                .collect(),
            slots: args.slots().collect(),
        })
    }

    pub fn plan_hash<H: Sha256>(&self) -> Hash {
        hash::plan_hash::<H>(&self.encode())
    }

    pub fn region_table_hash<H: Sha256>(&self) -> Hash {
        hash::region_table_hash::<H>(&self.encode_regions())
    }

    /// The relocation's slots as a streamed relocation appends them.
    pub fn stream_slots(&self) -> Vec<StreamSlot> {
        self.slots
            .iter()
            .map(|s| StreamSlot {
                address: s.address,
                len: s.len,
                to: s.to,
            })
            .collect()
    }

    /// The state a streamed relocation of this plan is opened with.
    pub fn stream_start<H: Sha256>(&self) -> StreamState {
        StreamState::new(
            self.target_id,
            self.snapshot_root,
            self.model_hash,
            self.region_table_hash::<H>(),
            self.slots.len() as u32,
        )
    }

    /// The plan hash a streamed relocation of this plan is attested under, however its parts
    /// are cut (`relocation_stream::streamed_plan_hash`).
    pub fn streamed_plan_hash<H: Sha256>(&self) -> Hash {
        let mut state = self.stream_start::<H>();
        for slot in self.stream_slots() {
            state.slot_digest = relocation_stream::slot_link::<H>(&state.slot_digest, &slot.encode());
        }
        for w in &self.writes {
            state.write_digest = relocation_stream::write_link::<H>(&state.write_digest, w.address, &w.old, &w.new);
        }
        state.write_count = self.writes.len() as u64;
        relocation_stream::streamed_plan_hash::<H>(&state)
    }

    /// The plan without writes or slots.
    fn clone_header(&self) -> PatchPlan {
        PatchPlan {
            target_id: self.target_id,
            snapshot_root: self.snapshot_root,
            model_hash: self.model_hash,
            regions: self.regions.clone(),
            writes: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Where to cut this relocation into parts for `relocation_stream::check_part`, in address
    /// order: each part at most `max_len` bytes encoded (estimated from its pages, with proofs
    /// into a tree of `page_count` pages, and its writes), `max_slots` slots and an estimated
    /// `PART_CU_BUDGET` compute units, never cut inside a slot or a write, each with at least
    /// one write or slot (a part may be slots whose bytes stay, however many). Returns each
    /// part's end (the last is `u64::MAX`) and what it is estimated to cost.
    pub fn stream_cuts(
        &self,
        max_len: usize,
        max_slots: usize,
        page_count: u64,
    ) -> Vec<(u64, relocation_stream::PartCost)> {
        use relocation_stream::{PartCost, PART_CU_BUDGET};
        let page = PAGE_LEN as u64;
        let depth = 64 - page_count.leading_zeros() as usize;
        let page_cost = 8 + 8 + PAGE_LEN + 4 + 32 * depth;
        let empty = PartCost {
            depth: depth as u64,
            records: self.slots.len() as u64,
            ..PartCost::default()
        };
        let mut part = empty;
        // Items in address order: (start, end, is a slot, has a write); a slot's write is one
        // item with it, so no cut falls between them.
        let mut items: Vec<(u64, u64, bool, bool)> = self
            .writes
            .iter()
            .map(|w| (w.address, w.address.saturating_add(w.new.len() as u64), false, true))
            .collect();
        let write_items = items.len();
        for s in &self.slots {
            // Only the writes are searched: the slot items pushed meanwhile are not in order.
            match items[..write_items].binary_search_by_key(&s.address, |i| i.0) {
                Ok(at) => items[at].2 = true,
                Err(_) => items.push((s.address, s.address.saturating_add(s.len as u64), true, false)),
            }
        }
        items.sort_unstable();
        let mut cuts: Vec<(u64, PartCost)> = Vec::new();
        let (mut len, mut items_in_part) = (0usize, 0usize);
        let mut last_page: Option<u64> = None;
        for &(start, end, is_slot, has_write) in &items {
            // Saturating: the plan may be a forger's (empty or overflowing ranges), which the
            // program refuses; cutting it must not panic.
            let (first, last) = (start / page, end.saturating_sub(1).max(start) / page);
            let new_pages = |last_page: Option<u64>| last - first + 1 - u64::from(last_page == Some(first));
            let write_len = if has_write {
                16 + 2 * end.saturating_sub(start) as usize
            } else {
                0
            };
            // The part's encoded length and estimated cost with this item added.
            let grown = |len: usize, part: &PartCost, last_page: Option<u64>| {
                let len = len
                    .saturating_add((new_pages(last_page) as usize).saturating_mul(page_cost))
                    .saturating_add(write_len);
                let part = PartCost {
                    pages: part.pages.saturating_add(new_pages(last_page)),
                    slots: part.slots + u64::from(is_slot),
                    slot_words: part.slot_words + u64::from(is_slot) * end.saturating_sub(start) / 8,
                    pointer_writes: part.pointer_writes + u64::from(has_write && !is_slot),
                    ..*part
                };
                (len, part)
            };
            let (with_len, with) = grown(len, &part, last_page);
            // A part holds at least one item: a write, or a slot (its bytes may stay).
            if items_in_part > 0
                && (with_len > max_len || with.slots as usize > max_slots || with.estimate() > PART_CU_BUDGET)
            {
                cuts.push((start, part));
                (len, items_in_part, last_page, part) = (0, 0, None, empty);
            }
            (len, part) = grown(len, &part, last_page);
            items_in_part += 1;
            last_page = Some(last);
        }
        cuts.push((u64::MAX, part));
        cuts
    }

    /// The pages its writes and slots touch, ascending.
    fn touched_pages(&self) -> Result<Vec<u64>, VerifyError> {
        let mut touched: Vec<u64> = Vec::new();
        let ranges = (self.writes.iter().map(|w| (w.address, w.old.len() as u64)))
            .chain(self.slots.iter().map(|s| (s.address, s.len as u64)));
        for (address, len) in ranges {
            let page = PAGE_LEN as u64;
            let end = address.checked_add(len).ok_or(VerifyError::AddressOverflow)?;
            // Checked: the last page of the address space has no successor.
            let mut p = Some(address - address % page);
            while let Some(at) = p.filter(|&at| at < end) {
                touched.push(at);
                p = at.checked_add(page);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        Ok(touched)
    }

    /// This relocation cut into parts (`stream_cuts`, proofs into a tree of `page_count`
    /// pages), each part's evidence from `evidence_of` (given the part with its slots, which
    /// are cleared after).
    fn stream_parts_with(
        &self,
        max_len: usize,
        max_slots: usize,
        page_count: u64,
        mut evidence_of: impl FnMut(&PatchPlan) -> Result<Evidence, VerifyError>,
    ) -> Result<Vec<StreamPart>, VerifyError> {
        self.check_streamable()?;
        // A checked plan's writes and slots ascend: each part is then found by binary search,
        // not by a pass over all of them (a million-object relocation has thousands of parts).
        let ascending = self.writes.is_sorted_by(|a, b| a.address < b.address)
            && self.slots.is_sorted_by(|a, b| a.address < b.address);
        let mut lo = 0;
        let mut parts = Vec::new();
        for (hi, estimate) in self.stream_cuts(max_len, max_slots, page_count) {
            let mut plan = match ascending {
                true => PatchPlan {
                    writes: ascending_in(&self.writes, |w| w.address, lo, hi).to_vec(),
                    slots: ascending_in(&self.slots, |s| s.address, lo, hi).to_vec(),
                    ..self.clone_header()
                },
                false => self.stream_part(lo, hi),
            };
            let evidence = evidence_of(&plan)?;
            plan.slots.clear();
            parts.push(StreamPart {
                hi,
                estimate,
                submission: Submission { plan, evidence },
            });
            lo = hi;
        }
        Ok(parts)
    }

    /// A relocation can be checked in parts only with slots of at most
    /// `MAX_STREAMED_SLOT_LEN` bytes (the program refuses longer ones, and their pages are not
    /// cut into parts).
    fn check_streamable(&self) -> Result<(), VerifyError> {
        match self
            .slots
            .iter()
            .any(|s| s.len > relocation_stream::MAX_STREAMED_SLOT_LEN)
        {
            true => Err(VerifyError::StreamedSlotTooLong),
            false => Ok(()),
        }
    }

    /// The part of this relocation in `[lo, hi)` (any order): its writes, and its slots (which the
    /// evidence needs; they are cleared before the part is sent).
    pub fn stream_part(&self, lo: u64, hi: u64) -> PatchPlan {
        PatchPlan {
            writes: self
                .writes
                .iter()
                .filter(|w| lo <= w.address && w.address < hi)
                .cloned()
                .collect(),
            slots: self
                .slots
                .iter()
                .filter(|s| lo <= s.address && s.address < hi)
                .copied()
                .collect(),
            ..self.clone_header()
        }
    }

    /// The plan rules the program runs (without the evidence), on the same encoding.
    pub fn check(&self, rules: &PolicyRules) -> Result<PlanTotals, VerifyError> {
        let bytes = self.encode();
        check_plan(rules, &PlanView::parse(&bytes)?)
    }
}

/// The run of `items` (ascending by `address`) whose addresses are in `[lo, hi)`.
fn ascending_in<T>(items: &[T], address: impl Fn(&T) -> u64, lo: u64, hi: u64) -> &[T] {
    let start = items.partition_point(|i| address(i) < lo);
    let end = items.partition_point(|i| address(i) < hi).max(start);
    &items[start..end]
}

/// The Merkle proof that `index` is the leaf of a region of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionProof {
    pub index: u64,
    pub siblings: Vec<Hash>,
}

/// One page of the snapshot with its proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageProof {
    pub address: u64,
    pub index: u64,
    pub contents: Vec<u8>,
    pub siblings: Vec<Hash>,
}

/// A symbol of the snapshot: its key (`hash::symbol_key`), runtime address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSymbol {
    pub key: Hash,
    pub address: u64,
    pub size: u64,
}

/// One symbol of the snapshot with its proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolProof {
    pub symbol: SnapshotSymbol,
    pub index: u64,
    pub siblings: Vec<Hash>,
}

/// What proves a plan against its snapshot (see `wire::EvidenceView`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub pages_root: Hash,
    pub regions_root: Hash,
    pub page_count: u64,
    pub region_count: u64,
    pub region_proofs: Vec<RegionProof>,
    pub pages: Vec<PageProof>,
    pub symbols_root: Hash,
    pub symbol_count: u64,
    pub symbols: Vec<SymbolProof>,
}

fn put_siblings(out: &mut Vec<u8>, siblings: &[Hash]) {
    out.extend_from_slice(&(siblings.len() as u32).to_le_bytes());
    for s in siblings {
        out.extend_from_slice(s);
    }
}

impl Evidence {
    /// An owned copy of parsed evidence.
    pub fn from_view(v: &crate::wire::EvidenceView<'_>) -> Evidence {
        Evidence {
            pages_root: *v.pages_root,
            regions_root: *v.regions_root,
            page_count: v.page_count,
            region_count: v.region_count,
            region_proofs: v
                .region_proofs()
                .map(|p| RegionProof {
                    index: p.index,
                    siblings: p.siblings().collect(),
                })
                .collect(),
            pages: v
                .pages()
                .map(|p| PageProof {
                    address: p.address,
                    index: p.index,
                    contents: p.contents.to_vec(),
                    siblings: p.siblings().collect(),
                })
                .collect(),
            symbols_root: *v.symbols_root,
            symbol_count: v.symbol_count,
            symbols: v
                .symbols()
                .map(|p| SymbolProof {
                    symbol: SnapshotSymbol {
                        key: *p.key,
                        address: p.address,
                        size: p.size,
                    },
                    index: p.index,
                    siblings: p.siblings().collect(),
                })
                .collect(),
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pages_root);
        out.extend_from_slice(&self.regions_root);
        out.extend_from_slice(&self.page_count.to_le_bytes());
        out.extend_from_slice(&self.region_count.to_le_bytes());
        out.extend_from_slice(&(self.region_proofs.len() as u32).to_le_bytes());
        for p in &self.region_proofs {
            out.extend_from_slice(&p.index.to_le_bytes());
            put_siblings(out, &p.siblings);
        }
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for p in &self.pages {
            out.extend_from_slice(&p.address.to_le_bytes());
            out.extend_from_slice(&p.index.to_le_bytes());
            let mut page = [0u8; PAGE_LEN];
            let n = p.contents.len().min(PAGE_LEN);
            page[..n].copy_from_slice(&p.contents[..n]);
            out.extend_from_slice(&page);
            put_siblings(out, &p.siblings);
        }
        out.extend_from_slice(&self.symbols_root);
        out.extend_from_slice(&self.symbol_count.to_le_bytes());
        out.extend_from_slice(&(self.symbols.len() as u32).to_le_bytes());
        for p in &self.symbols {
            out.extend_from_slice(&p.symbol.key);
            out.extend_from_slice(&p.symbol.address.to_le_bytes());
            out.extend_from_slice(&p.symbol.size.to_le_bytes());
            out.extend_from_slice(&p.index.to_le_bytes());
            put_siblings(out, &p.siblings);
        }
    }

    pub fn snapshot_root<H: Sha256>(&self) -> Hash {
        hash::snapshot_root::<H>(&hash::TreeRoots {
            pages_root: &self.pages_root,
            regions_root: &self.regions_root,
            symbols_root: &self.symbols_root,
            page_count: self.page_count,
            region_count: self.region_count,
            symbol_count: self.symbol_count,
        })
    }
}

/// A plan with its evidence: the bytes the host uploads and `attest` verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub plan: PatchPlan,
    pub evidence: Evidence,
}

impl Submission {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.plan.encode();
        self.evidence.encode_into(&mut out);
        out
    }

    /// This relocation cut into parts (`PatchPlan::stream_cuts`), each proving the pages of its
    /// writes and slots with this submission's proofs.
    pub fn stream_parts(&self, max_len: usize, max_slots: usize) -> Result<Vec<StreamPart>, VerifyError> {
        let all = &self.evidence;
        let ascending = all.pages.is_sorted_by(|a, b| a.address < b.address);
        self.plan.stream_parts_with(max_len, max_slots, all.page_count, |part| {
            let pages = part.touched_pages()?;
            let chosen = match ascending {
                true => pages
                    .iter()
                    .filter_map(|a| all.pages.binary_search_by_key(a, |p| p.address).ok())
                    .map(|i| all.pages[i].clone())
                    .collect(),
                false => all
                    .pages
                    .iter()
                    .filter(|p| pages.binary_search(&p.address).is_ok())
                    .cloned()
                    .collect(),
            };
            // Every field but the pages, which are chosen (cloning them all for each part
            // copied the whole snapshot's proofs thousands of times).
            let evidence = Evidence {
                pages: chosen,
                pages_root: all.pages_root,
                regions_root: all.regions_root,
                page_count: all.page_count,
                region_count: all.region_count,
                region_proofs: all.region_proofs.clone(),
                symbols_root: all.symbols_root,
                symbol_count: all.symbol_count,
                symbols: all.symbols.clone(),
            };
            match evidence.pages.len() == pages.len() {
                true => Ok(evidence),
                false => Err(VerifyError::MissingPageProof),
            }
        })
    }

    /// Everything the program checks under a policy without symbol rules, on the same bytes.
    pub fn verify<H: Sha256>(&self, rules: &PolicyRules) -> Result<Verdict, VerifyError> {
        self.verify_under::<H>(rules, &SymbolRules::default())
    }

    /// Everything the program checks, on the same bytes.
    pub fn verify_under<H: Sha256>(
        &self,
        rules: &PolicyRules,
        symbol_rules: &SymbolRules,
    ) -> Result<Verdict, VerifyError> {
        let bytes = self.encode();
        verify_submission::<H>(rules, symbol_rules, &bytes).map(|(_, verdict)| verdict)
    }
}

/// One part of a streamed relocation: what `relocation_stream::check_part` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPart {
    /// One past the part's range; `u64::MAX` for the last part.
    pub hi: u64,
    /// What `check_part` is estimated to spend on it.
    pub estimate: relocation_stream::PartCost,
    /// The part's writes and the proofs of their pages and of its slots' pages.
    pub submission: Submission,
}

/// A relocation checked in parts in memory, exactly as the program checks it in its accounts
/// (`relocation_stream`): the table appended into stores of `per_store` records, each append
/// seeing only the stores its slots land in, then each part, then the finish. The host's
/// pre-check of a relocation it sends in parts: linear in the plan, where checking the whole
/// plan at once re-reads the page proofs for each object whose address is below the last.
pub struct StreamedCheck {
    state: StreamState,
    stores: Vec<Vec<u8>>,
    per_store: u32,
}

impl StreamedCheck {
    /// The state `open_relocation` starts `plan`'s relocation in, with its stores empty.
    pub fn open<H: Sha256>(plan: &PatchPlan, per_store: u32) -> StreamedCheck {
        let per_store = per_store.max(1);
        let n = plan.slots.len() as u32;
        StreamedCheck {
            state: plan.stream_start::<H>(),
            stores: (0..n.div_ceil(per_store))
                .map(|_| std::vec![0u8; per_store as usize * relocation_stream::RECORD_LEN])
                .collect(),
            per_store,
        }
    }

    /// `append_slots` of `slots` (whole encoded stream slots) as the table's slots `first..`.
    pub fn append<H: Sha256>(&mut self, first: u32, slots: &[u8]) -> Result<(), VerifyError> {
        let count = (slots.len() / relocation_stream::STREAM_SLOT_LEN) as u32;
        let at = relocation_stream::Records::append_stores(self.state.appended, count, self.per_store);
        let mut window: Vec<&mut [u8]> = self
            .stores
            .iter_mut()
            .enumerate()
            .map(|(j, v)| if at.contains(&j) { v.as_mut_slice() } else { &mut [] })
            .collect();
        let mut records = relocation_stream::Records::window(&mut window, self.per_store, self.state.slot_count)?;
        relocation_stream::append_slots::<H>(&mut self.state, &mut records, first, slots)
    }

    /// `check_relocation_part` of `part` (an encoded [`Submission`]) reaching up to `hi`.
    pub fn part<H: Sha256>(
        &mut self,
        rules: &PolicyRules,
        symbol_rules: &SymbolRules,
        part: &[u8],
        hi: u64,
    ) -> Result<(), VerifyError> {
        let mut views: Vec<&mut [u8]> = self.stores.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut records = relocation_stream::Records::new(&mut views, self.per_store, self.state.slot_count)?;
        relocation_stream::check_part::<H>(&mut self.state, rules, symbol_rules, &mut records, part, hi)
    }

    /// `finish_relocation`'s check: every slot appended and checked, every record balanced,
    /// at least one write, the totals within `rules`. Returns the streamed plan hash and the totals.
    pub fn finish<H: Sha256>(&self, rules: &PolicyRules) -> Result<(Hash, PlanTotals), VerifyError> {
        relocation_stream::finish::<H>(&self.state, rules)
    }
}

/// A snapshot's three Merkle trees, from which the host cuts evidence for a plan.
pub struct SnapshotTrees {
    regions: Vec<Region>,
    region_tree: MerkleTree,
    page_addresses: Vec<u64>,
    page_tree: MerkleTree,
    symbols: Vec<SnapshotSymbol>,
    symbol_tree: MerkleTree,
}

impl SnapshotTrees {
    /// `regions`: every mapping in address order; `pages`: (address, leaf) in address order.
    pub fn new<H: Sha256>(regions: Vec<Region>, pages: Vec<(u64, Hash)>) -> SnapshotTrees {
        let region_tree = MerkleTree::from_leaves::<H>(regions.iter().map(merkle::region_leaf::<H>).collect());
        let (page_addresses, leaves): (Vec<u64>, Vec<Hash>) = pages.into_iter().unzip();
        SnapshotTrees {
            regions,
            region_tree,
            page_addresses,
            page_tree: MerkleTree::from_leaves::<H>(leaves),
            symbols: Vec::new(),
            symbol_tree: MerkleTree::from_leaves::<H>(Vec::new()),
        }
    }

    /// Adds the symbol tree: leaves in ascending key order; a key that names more than one
    /// symbol (two modules' `static` of the same name in one file name, say) is left out, so a
    /// key proves one address or none.
    pub fn with_symbols<H: Sha256>(mut self, mut symbols: Vec<SnapshotSymbol>) -> SnapshotTrees {
        symbols.sort_by_key(|s| s.key);
        let mut unique: Vec<SnapshotSymbol> = Vec::with_capacity(symbols.len());
        let mut i = 0;
        while i < symbols.len() {
            let same = symbols[i..].iter().take_while(|s| s.key == symbols[i].key).count();
            if same == 1 {
                unique.push(symbols[i]);
            }
            i += same;
        }
        self.symbol_tree = MerkleTree::from_leaves::<H>(
            unique
                .iter()
                .map(|s| merkle::symbol_leaf::<H>(&s.key, s.address, s.size))
                .collect(),
        );
        self.symbols = unique;
        self
    }

    pub fn symbols_root(&self) -> Hash {
        self.symbol_tree.root()
    }

    pub fn symbol_count(&self) -> u64 {
        self.symbol_tree.leaf_count()
    }

    /// The symbols of the tree whose `[address, address + size)` holds `[address, address + len)`.
    pub fn symbols_holding(&self, address: u64, len: u64) -> impl Iterator<Item = &SnapshotSymbol> + '_ {
        self.symbols
            .iter()
            .filter(move |s| s.address <= address && address.saturating_add(len) <= s.address.saturating_add(s.size))
    }

    pub fn pages_root(&self) -> Hash {
        self.page_tree.root()
    }

    pub fn regions_root(&self) -> Hash {
        self.region_tree.root()
    }

    pub fn root<H: Sha256>(&self) -> Hash {
        hash::snapshot_root::<H>(&hash::TreeRoots {
            pages_root: &self.pages_root(),
            regions_root: &self.regions_root(),
            symbols_root: &self.symbols_root(),
            page_count: self.page_tree.leaf_count(),
            region_count: self.region_tree.leaf_count(),
            symbol_count: self.symbol_tree.leaf_count(),
        })
    }

    /// Proofs for the plan's regions and for every page its writes or slots touch, no symbols.
    /// `contents` returns a page's captured bytes (None if it was not captured).
    pub fn evidence(
        &self,
        plan: &PatchPlan,
        contents: impl Fn(u64) -> Option<Vec<u8>>,
    ) -> Result<Evidence, VerifyError> {
        self.evidence_with_symbols(plan, &[], contents)
    }

    /// A relocation cut into parts (`PatchPlan::stream_cuts`), each with its evidence.
    pub fn stream_parts(
        &self,
        plan: &PatchPlan,
        max_len: usize,
        max_slots: usize,
        contents: impl Fn(u64) -> Option<Vec<u8>>,
    ) -> Result<Vec<StreamPart>, VerifyError> {
        plan.stream_parts_with(max_len, max_slots, self.page_tree.leaf_count(), |part| {
            self.evidence(part, &contents)
        })
    }

    /// [`Self::evidence`] plus proofs of the symbols named by `keys` (what a policy's symbol
    /// rules need); a key the tree does not hold is `MissingSymbolProof`.
    pub fn evidence_with_symbols(
        &self,
        plan: &PatchPlan,
        keys: &[Hash],
        contents: impl Fn(u64) -> Option<Vec<u8>>,
    ) -> Result<Evidence, VerifyError> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let symbols = keys
            .iter()
            .map(|key| {
                let index = self
                    .symbols
                    .binary_search_by_key(key, |s| s.key)
                    .map_err(|_| VerifyError::MissingSymbolProof)?;
                Ok(SymbolProof {
                    symbol: self.symbols[index],
                    index: index as u64,
                    siblings: self.symbol_tree.proof(index).ok_or(VerifyError::MissingSymbolProof)?,
                })
            })
            .collect::<Result<Vec<_>, VerifyError>>()?;
        let region_proofs = plan
            .regions
            .iter()
            .map(|r| {
                let index = self
                    .regions
                    .iter()
                    .position(|x| x == r)
                    .ok_or(VerifyError::InvalidRegionProof)?;
                let siblings = self.region_tree.proof(index).ok_or(VerifyError::InvalidRegionProof)?;
                Ok(RegionProof {
                    index: index as u64,
                    siblings,
                })
            })
            .collect::<Result<Vec<_>, VerifyError>>()?;
        let pages = plan
            .touched_pages()?
            .into_iter()
            .map(|address| {
                let index = self
                    .page_addresses
                    .binary_search(&address)
                    .map_err(|_| VerifyError::MissingPageProof)?;
                Ok(PageProof {
                    address,
                    index: index as u64,
                    contents: contents(address).ok_or(VerifyError::MissingPageProof)?,
                    siblings: self.page_tree.proof(index).ok_or(VerifyError::MissingPageProof)?,
                })
            })
            .collect::<Result<Vec<_>, VerifyError>>()?;
        Ok(Evidence {
            pages_root: self.pages_root(),
            regions_root: self.regions_root(),
            page_count: self.page_tree.leaf_count(),
            region_count: self.region_tree.leaf_count(),
            region_proofs,
            pages,
            symbols_root: self.symbols_root(),
            symbol_count: self.symbol_tree.leaf_count(),
            symbols,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relocation_stream::{self, StreamSlot, StreamState};
    use crate::wire::{REGION_EXEC, REGION_READ, REGION_WRITE};
    use std::vec;

    const RW: u8 = REGION_READ | REGION_WRITE;
    const RX: u8 = REGION_READ | REGION_EXEC;

    fn rules() -> PolicyRules {
        PolicyRules {
            wx: true,
            max_bytes: 16,
            max_writes: 4,
            max_moves: 0,
        }
    }

    fn plan(writes: Vec<(u64, &[u8], &[u8])>) -> PatchPlan {
        PatchPlan {
            target_id: [1; 32],
            snapshot_root: [2; 32],
            model_hash: [3; 32],
            regions: vec![
                Region {
                    start: 0x1000,
                    end: 0x2000,
                    flags: RX,
                },
                Region {
                    start: 0x2000,
                    end: 0x3000,
                    flags: REGION_READ,
                },
                Region {
                    start: 0x4000,
                    end: 0x6000,
                    flags: RW,
                },
                Region {
                    start: 0x7000,
                    end: 0x8000,
                    flags: RW | REGION_EXEC,
                },
            ],
            writes: writes
                .into_iter()
                .map(|(address, old, new)| Write {
                    address,
                    old: old.to_vec(),
                    new: new.to_vec(),
                })
                .collect(),
            slots: Vec::new(),
        }
    }

    #[test]
    fn a_good_plan_passes_and_round_trips() {
        let p = plan(vec![(0x4000, &[0, 0], &[1, 2]), (0x5ffe, &[3, 3], &[4, 4])]);
        assert_eq!(p.check(&rules()), Ok(PlanTotals { writes: 2, bytes: 4 }));
        assert_eq!(PatchPlan::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let cases: Vec<(PatchPlan, VerifyError)> = vec![
            (plan(vec![(0x1000, &[0], &[1])]), VerifyError::WriteInExecutableRegion),
            (plan(vec![(0x7000, &[0], &[1])]), VerifyError::WriteInExecutableRegion),
            (plan(vec![(0x3000, &[0], &[1])]), VerifyError::WriteOutsideRegions),
            (plan(vec![(0x5fff, &[0, 0], &[1, 1])]), VerifyError::WriteOutsideRegions),
            (plan(vec![(0x2000, &[0], &[1])]), VerifyError::WriteToReadOnlyRegion),
            (
                plan(vec![(0x4000, &[0, 0], &[1, 1]), (0x4001, &[0], &[1])]),
                VerifyError::OverlappingWrites,
            ),
            (
                plan(vec![(0x4001, &[0], &[1]), (0x4000, &[0], &[1])]),
                VerifyError::UnsortedWrites,
            ),
            (plan(vec![(0x4000, &[0; 17], &[1; 17])]), VerifyError::PlanTooManyBytes),
            (plan(vec![(0x4000, &[0], &[1]); 5]), VerifyError::PlanTooManyWrites),
            (plan(vec![(0x4000, &[0], &[1, 2])]), VerifyError::WriteLengthMismatch),
            (plan(vec![(0x4000, &[], &[])]), VerifyError::EmptyWrite),
            (plan(vec![(0x4000, &[5], &[5])]), VerifyError::NoOpWrite),
            (plan(vec![]), VerifyError::EmptyPlan),
            (plan(vec![(u64::MAX, &[0, 0], &[1, 1])]), VerifyError::AddressOverflow),
        ];
        for (p, expected) in cases {
            assert_eq!(p.check(&rules()), Err(expected), "{p:?}");
        }
        // Without W^X a writable+executable region accepts writes.
        let lax = PolicyRules { wx: false, ..rules() };
        assert!(plan(vec![(0x7000, &[0], &[1])]).check(&lax).is_ok());
        // A broken region table is refused before any write is looked at.
        let mut p = plan(vec![(0x4000, &[0], &[1])]);
        p.regions.swap(0, 1);
        assert_eq!(p.check(&rules()), Err(VerifyError::InvalidRegionTable));
    }

    #[test]
    fn truncated_or_padded_encodings_are_malformed() {
        let bytes = plan(vec![(0x4000, &[0, 0], &[1, 2])]).encode();
        for cut in 0..bytes.len() {
            assert_eq!(
                PlanView::parse(&bytes[..cut]).err(),
                Some(VerifyError::MalformedInstruction)
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(PlanView::parse(&padded).err(), Some(VerifyError::MalformedInstruction));
    }

    use crate::test_hash::Sha2;

    fn page_bytes(address: u64) -> Vec<u8> {
        (0..PAGE_LEN)
            .map(|i| (address as usize / PAGE_LEN * 31 + i) as u8)
            .collect()
    }

    /// A small snapshot: the regions of `plan()` plus one unmapped gap, every page captured.
    fn trees() -> SnapshotTrees {
        let regions = plan(vec![]).regions;
        let pages = regions
            .iter()
            .flat_map(|r| (r.start..r.end).step_by(PAGE_LEN))
            .map(|a| (a, crate::merkle::page_leaf::<Sha2>(a, &page_bytes(a))))
            .collect();
        SnapshotTrees::new::<Sha2>(regions, pages)
    }

    fn submission(writes: Vec<(u64, usize, &[u8])>) -> Submission {
        let t = trees();
        let mut p = plan(vec![]);
        p.snapshot_root = t.root::<Sha2>();
        p.regions.retain(|r| r.start == 0x4000);
        p.writes = writes
            .into_iter()
            .map(|(address, len, new)| {
                let page = address - address % PAGE_LEN as u64;
                let mut old = page_bytes(page);
                old.extend(page_bytes(page + PAGE_LEN as u64));
                let at = (address - page) as usize;
                Write {
                    address,
                    old: old[at..at + len].to_vec(),
                    new: new.to_vec(),
                }
            })
            .collect();
        let evidence = t.evidence(&p, |a| Some(page_bytes(a))).unwrap();
        Submission { plan: p, evidence }
    }

    #[test]
    fn evidence_proves_old_bytes_even_across_pages() {
        let s = submission(vec![(0x4010, 2, &[0xaa, 0xbb]), (0x4ffe, 4, &[1, 2, 3, 4])]);
        assert_eq!(s.evidence.pages.len(), 2);
        let verdict = s.verify::<Sha2>(&rules()).unwrap();
        assert_eq!(verdict.plan_hash, s.plan.plan_hash::<Sha2>());
        assert_eq!(verdict.totals, PlanTotals { writes: 2, bytes: 6 });
    }

    /// Found by fuzz/fuzz_targets/rules_structured.rs: a write on the last page of the address
    /// space made the page walk overflow (a panic in debug builds, an endless walk from page 0
    /// in release builds).
    #[test]
    fn evidence_for_the_last_page_of_the_address_space() {
        let top = u64::MAX - (PAGE_LEN as u64 - 1);
        let region = Region {
            start: top,
            end: u64::MAX,
            flags: RW,
        };
        let t = SnapshotTrees::new::<Sha2>(
            vec![region],
            vec![(top, crate::merkle::page_leaf::<Sha2>(top, &page_bytes(top)))],
        );
        let p = PatchPlan {
            target_id: [1; 32],
            snapshot_root: t.root::<Sha2>(),
            model_hash: [0; 32],
            regions: vec![region],
            writes: vec![Write {
                address: u64::MAX - 4,
                old: page_bytes(top)[PAGE_LEN - 5..PAGE_LEN - 1].to_vec(),
                new: vec![0xee; 4],
            }],
            slots: Vec::new(),
        };
        let evidence = t.evidence(&p, |a| Some(page_bytes(a))).unwrap();
        assert_eq!(evidence.pages.iter().map(|p| p.address).collect::<Vec<_>>(), vec![top]);
        let s = Submission { plan: p, evidence };
        assert_eq!(s.verify::<Sha2>(&rules()), Ok(verdict_of(&s, 1, 4)));
    }

    fn verdict_of(s: &Submission, writes: u32, bytes: u32) -> Verdict {
        Verdict {
            plan_hash: s.plan.plan_hash::<Sha2>(),
            region_table_hash: s.plan.region_table_hash::<Sha2>(),
            totals: PlanTotals { writes, bytes },
        }
    }

    #[test]
    fn each_evidence_fault_has_its_own_error() {
        let good = submission(vec![(0x4010, 2, &[0xaa, 0xbb])]);
        let mut cases: Vec<(Submission, VerifyError)> = Vec::new();

        let mut s = good.clone();
        s.plan.snapshot_root[0] ^= 1;
        cases.push((s, VerifyError::SnapshotRootMismatch));

        let mut s = good.clone();
        s.evidence.pages[0].contents[0x10] ^= 1;
        cases.push((s, VerifyError::InvalidPageProof));

        let mut s = good.clone();
        s.plan.writes[0].old[0] ^= 1;
        cases.push((s, VerifyError::OldBytesMismatch));

        let mut s = good.clone();
        s.evidence.pages.clear();
        cases.push((s, VerifyError::MissingPageProof));

        let mut s = good.clone();
        s.evidence.region_proofs[0].index += 1;
        cases.push((s, VerifyError::InvalidRegionProof));

        let mut s = good.clone();
        s.evidence.region_proofs.clear();
        cases.push((s, VerifyError::MissingRegionProof));

        // A region the snapshot never had, flags upgraded from read-only to writable.
        let mut s = good.clone();
        s.plan.regions = vec![Region {
            start: 0x2000,
            end: 0x3000,
            flags: RW,
        }];
        s.plan.writes = vec![Write {
            address: 0x2000,
            old: page_bytes(0x2000)[..1].to_vec(),
            new: vec![0],
        }];
        s.evidence.region_proofs[0].index = 1;
        cases.push((s, VerifyError::InvalidRegionProof));

        let mut s = submission(vec![(0x4010, 2, &[0xaa, 0xbb]), (0x5010, 1, &[0])]);
        s.evidence.pages.swap(0, 1);
        cases.push((s, VerifyError::UnsortedPages));

        for (s, expected) in cases {
            assert_eq!(s.verify::<Sha2>(&rules()), Err(expected));
        }
        // The snapshot cannot prove a page it did not capture.
        let t = trees();
        let mut p = good.plan.clone();
        p.writes[0].address = 0x9000;
        assert_eq!(
            t.evidence(&p, |a| Some(page_bytes(a))).err(),
            Some(VerifyError::MissingPageProof)
        );
    }

    /// Symbols of the test snapshot: `state` (0x4000, 64 bytes) and `other` (0x5000); `dup`
    /// twice (left out of the tree).
    fn symbol_trees() -> SnapshotTrees {
        let sym = |name: &[u8], address, size| SnapshotSymbol {
            key: hash::symbol_key::<Sha2>(b"target", name),
            address,
            size,
        };
        trees().with_symbols::<Sha2>(vec![
            sym(b"state", 0x4000, 64),
            sym(b"other", 0x5000, 8),
            sym(b"dup", 0x4100, 8),
            sym(b"dup", 0x4200, 8),
        ])
    }

    fn symbol_submission(writes: Vec<(u64, usize, &[u8])>, keys: &[Hash]) -> Submission {
        let t = symbol_trees();
        let mut s = submission(writes);
        s.plan.snapshot_root = t.root::<Sha2>();
        s.plan.regions = vec![
            Region {
                start: 0x2000,
                end: 0x3000,
                flags: REGION_READ,
            },
            Region {
                start: 0x4000,
                end: 0x6000,
                flags: RW,
            },
        ];
        s.evidence = t.evidence_with_symbols(&s.plan, keys, |a| Some(page_bytes(a))).unwrap();
        s
    }

    #[test]
    fn symbol_rules_each_refusal_has_its_own_error() {
        use crate::wire::{field_kind, SymbolRule};
        let state = hash::symbol_key::<Sha2>(b"target", b"state");
        let rule = |start, end, kind, min, max| SymbolRule {
            symbol: state,
            start,
            end,
            kind,
            min,
            max,
        };
        let symbol_rules = SymbolRules::from_rules(&[
            rule(0, 16, field_kind::BYTES, 0, 0),
            rule(16, 20, field_kind::UNSIGNED, 1, 100),
            rule(20, 22, field_kind::SIGNED, (-5i64) as u64, 5),
            rule(24, 32, field_kind::POINTER, 0, 0),
        ])
        .unwrap();
        let verify = |writes: Vec<(u64, usize, &[u8])>, keys: &[Hash]| {
            symbol_submission(writes, keys).verify_under::<Sha2>(&rules(), &symbol_rules)
        };
        let ptr = 0x2010u64.to_le_bytes();
        let good = verify(
            vec![
                (0x4000, 2, &[0xaa, 0xbb]),
                (0x4010, 4, &[100, 0, 0, 0]),
                (0x4014, 2, &(-5i16).to_le_bytes()),
                (0x4018, 8, &ptr),
            ],
            &[state],
        );
        assert!(good.is_ok(), "{good:?}");
        // Without rules, the same plan passes; without the symbol proof, it cannot.
        assert!(symbol_submission(vec![(0x4030, 1, &[0])], &[])
            .verify::<Sha2>(&rules())
            .is_ok());
        let with = [state];
        let minus6 = (-6i16).to_le_bytes();
        let far = 0x9000u64.to_le_bytes();
        let null = 0u64.to_le_bytes();
        type Case<'a> = (Vec<(u64, usize, &'a [u8])>, &'a [Hash], VerifyError);
        let cases: Vec<Case> = vec![
            (vec![(0x4000, 1, &[0])], &[], VerifyError::MissingSymbolProof),
            (vec![(0x4020, 1, &[0])], &with, VerifyError::WriteOutsideAllowedRanges),
            (vec![(0x5000, 1, &[0])], &with, VerifyError::WriteOutsideAllowedRanges),
            (vec![(0x4010, 2, &[1, 0])], &with, VerifyError::PartialFieldWrite),
            (
                vec![(0x4010, 4, &[101, 0, 0, 0])],
                &with,
                VerifyError::FieldValueOutOfBounds,
            ),
            (
                vec![(0x4010, 4, &[0, 0, 0, 0])],
                &with,
                VerifyError::FieldValueOutOfBounds,
            ),
            (vec![(0x4014, 2, &minus6)], &with, VerifyError::FieldValueOutOfBounds),
            (vec![(0x4018, 8, &far)], &with, VerifyError::PointerTargetUnreadable),
            (vec![(0x4018, 8, &null)], &with, VerifyError::PointerTargetUnreadable),
        ];
        for (writes, keys, expected) in cases {
            assert_eq!(verify(writes.clone(), keys), Err(expected), "{writes:x?}");
        }
        // Forged symbol proofs: another address, a wrong sibling, keys out of order.
        let base = symbol_submission(vec![(0x4000, 1, &[0])], &[state]);
        let mut moved = base.clone();
        moved.evidence.symbols[0].symbol.address = 0x5000;
        let mut sibling = base.clone();
        sibling.evidence.symbols[0].siblings[0][0] ^= 1;
        let other = hash::symbol_key::<Sha2>(b"target", b"other");
        let mut unsorted = symbol_submission(vec![(0x4000, 1, &[0])], &[state, other]);
        unsorted.evidence.symbols.swap(0, 1);
        for s in [moved, sibling, unsorted] {
            assert_eq!(
                s.verify_under::<Sha2>(&rules(), &symbol_rules),
                Err(VerifyError::InvalidSymbolProof)
            );
        }
        // An ambiguous name is not in the tree, so it cannot be proven.
        let dup = hash::symbol_key::<Sha2>(b"target", b"dup");
        assert_eq!(
            symbol_trees()
                .evidence_with_symbols(&base.plan, &[dup], |a| Some(page_bytes(a)))
                .err(),
            Some(VerifyError::MissingSymbolProof)
        );
        // Out-of-range rules are refused when the policy is set.
        for bad in [
            rule(8, 8, field_kind::BYTES, 0, 0),
            rule(0, 3, field_kind::UNSIGNED, 0, 1),
            rule(0, 4, field_kind::UNSIGNED, 2, 1),
            rule(0, 4, field_kind::POINTER, 0, 0),
            rule(0, 8, 4, 0, 0),
        ] {
            assert_eq!(
                SymbolRules::from_rules(&[bad]).err(),
                Some(VerifyError::InvalidPolicyRules)
            );
        }
        assert_eq!(
            SymbolRules::from_rules(&[rule(0, 1, 0, 0, 0); 9]).err(),
            Some(VerifyError::TooManySymbolRules)
        );
    }

    /// A heap page at 0x4000 holding a list of four 16-byte nodes `{ value, next }` scattered
    /// in the order 0x4300 → 0x4100 → 0x4400 → 0x4200, a word at 0x4500 holding an interior
    /// pointer (into the node at 0x4100, offset 8) and one holding a plain integer; the list's
    /// head pointer at 0x5000.
    fn heap_page(address: u64) -> Vec<u8> {
        let mut page = vec![0u8; PAGE_LEN];
        let mut put = |at: u64, v: u64| {
            let off = (at - address) as usize;
            page[off..off + 8].copy_from_slice(&v.to_le_bytes());
        };
        if address == 0x4000 {
            for (node, value, next) in [
                (0x4300, 10, 0x4100),
                (0x4100, 11, 0x4400),
                (0x4400, 12, 0x4200),
                (0x4200, 13, 0),
            ] {
                put(node, value);
                put(node + 8, next);
            }
            put(0x4500, 0x4108);
            put(0x4508, 7);
        } else if address == 0x5000 {
            put(0x5000, 0x4300);
        }
        page
    }

    fn word(address: u64) -> u64 {
        let page = address - address % PAGE_LEN as u64;
        let off = (address - page) as usize;
        u64::from_le_bytes(heap_page(page)[off..off + 8].try_into().unwrap())
    }

    /// The relocation that puts the list in traversal order (0x4300 → 0x4100, 0x4100 → 0x4200,
    /// 0x4400 → 0x4300, 0x4200 → 0x4400), its writes computed here independently of the rules:
    /// each slot's new bytes and every pointer outside the slots, moved.
    fn relocation() -> Submission {
        let regions = heap_regions();
        let t = heap_trees();
        // Slot i is the node at 0x4100 * (i + 1); slot `to` is where its node goes.
        let dest = [0x4200u64, 0x4400, 0x4100, 0x4300];
        let index = |a: u64| ((a - 0x4100) / 0x100) as u32;
        let mut slots: Vec<Slot> = (0..4)
            .map(|i| Slot {
                address: 0x4100 + 0x100 * i as u64,
                len: 16,
                from: 0,
                to: index(dest[i]),
            })
            .collect();
        for i in 0..4 {
            let to = slots[i].to as usize;
            slots[to].from = i as u32;
        }
        let moved = |v: u64| match (0x4100..0x4500).contains(&v) && v % 0x100 < 16 {
            true => dest[index(v - v % 0x100) as usize] + v % 0x100,
            false => v,
        };
        let mut writes = Vec::new();
        for s in &slots {
            let source = slots[s.from as usize].address;
            let old: Vec<u8> = (0..2).flat_map(|k| word(s.address + 8 * k).to_le_bytes()).collect();
            let new: Vec<u8> = (0..2).flat_map(|k| moved(word(source + 8 * k)).to_le_bytes()).collect();
            writes.push(Write {
                address: s.address,
                old,
                new,
            });
        }
        for at in [0x4500u64, 0x5000] {
            writes.push(Write {
                address: at,
                old: word(at).to_le_bytes().to_vec(),
                new: moved(word(at)).to_le_bytes().to_vec(),
            });
        }
        let plan = PatchPlan {
            target_id: [1; 32],
            snapshot_root: t.root::<Sha2>(),
            model_hash: [0; 32],
            regions,
            writes,
            slots,
        };
        let evidence = t.evidence(&plan, |a| Some(heap_page(a))).unwrap();
        Submission { plan, evidence }
    }

    fn moves(max_moves: u32) -> PolicyRules {
        PolicyRules {
            wx: true,
            max_bytes: 4096,
            max_writes: 64,
            max_moves,
        }
    }

    #[test]
    fn a_relocation_that_moves_every_pointer_with_its_object_passes() {
        let s = relocation();
        assert_eq!(s.plan.writes.len(), 6);
        assert_eq!(s.verify::<Sha2>(&moves(4)), Ok(verdict_of(&s, 6, 80)));
        assert_eq!(PatchPlan::decode(&s.plan.encode()), Ok(s.plan.clone()));
        // The new head is the first node at the lowest address, and so on along the list.
        assert_eq!(s.plan.writes[5].new, 0x4100u64.to_le_bytes());
        assert_eq!(
            s.plan.writes[0].new,
            [10u64.to_le_bytes(), 0x4200u64.to_le_bytes()].concat()
        );
    }

    #[test]
    fn each_forged_relocation_has_its_own_error() {
        let good = relocation();
        let mut cases: Vec<(Submission, PolicyRules, VerifyError)> = Vec::new();
        cases.push((good.clone(), moves(0), VerifyError::RelocationNotAllowed));
        cases.push((good.clone(), moves(3), VerifyError::PlanTooManyMoves));

        // The head rewritten to another node than the one its old value moved to.
        let mut s = good.clone();
        s.plan.writes[5].new = 0x4200u64.to_le_bytes().to_vec();
        cases.push((s, moves(4), VerifyError::PointerNotMoved));
        // A write that is no pointer into a moved object (the plain integer).
        let mut s = good.clone();
        s.plan.writes[4] = Write {
            address: 0x4508,
            old: 7u64.to_le_bytes().to_vec(),
            new: 8u64.to_le_bytes().to_vec(),
        };
        cases.push((s, moves(4), VerifyError::PointerNotMoved));
        // A moved node whose link names the wrong node; one whose value changed.
        let mut s = good.clone();
        s.plan.writes[0].new[8..].copy_from_slice(&0x4300u64.to_le_bytes());
        cases.push((s, moves(4), VerifyError::MovedBytesMismatch));
        let mut s = good.clone();
        s.plan.writes[1].new[0] ^= 1;
        cases.push((s, moves(4), VerifyError::MovedBytesMismatch));
        // A slot's write cut short; a slot left without its write.
        let mut s = good.clone();
        s.plan.writes[2].old.truncate(8);
        s.plan.writes[2].new.truncate(8);
        cases.push((s, moves(4), VerifyError::MovedBytesMismatch));
        let mut s = good.clone();
        s.plan.writes.remove(3);
        cases.push((s, moves(4), VerifyError::MovedBytesMismatch));
        // Two objects to one slot (the second slot's node to where the third one's goes).
        let mut s = good.clone();
        s.plan.slots[1].to = s.plan.slots[2].to;
        cases.push((s, moves(4), VerifyError::RelocationNotAPermutation));
        // A slot that keeps its own object, one of another size, unaligned, overlapping.
        let mut s = good.clone();
        s.plan.slots[0].from = 0;
        cases.push((s, moves(4), VerifyError::InvalidRelocation));
        let mut s = good.clone();
        s.plan.slots[3].len = 24;
        cases.push((s, moves(4), VerifyError::InvalidRelocation));
        let mut s = good.clone();
        s.plan.slots[2].address += 4;
        cases.push((s, moves(4), VerifyError::InvalidRelocation));
        let mut s = good.clone();
        s.plan.slots[1].address = 0x4108;
        cases.push((s, moves(4), VerifyError::InvalidRelocation));
        let mut s = good.clone();
        s.plan.slots[3].to = 9;
        cases.push((s, moves(4), VerifyError::InvalidRelocation));
        for (i, (s, rules, expected)) in cases.into_iter().enumerate() {
            assert_eq!(s.verify::<Sha2>(&rules), Err(expected), "case {i}");
        }
    }

    /// Runs a streamed relocation of `s`'s plan cut at `cuts` (the last part's end is added):
    /// open, append the table in chunks of three slots, check each part, finish.
    fn stream(s: &Submission, rules: &PolicyRules, cuts: &[u64]) -> Result<(Hash, PlanTotals), VerifyError> {
        let t = heap_trees();
        let plan = &s.plan;
        let mut check = StreamedCheck::open::<Sha2>(plan, 3);
        let table: Vec<u8> = plan.stream_slots().iter().flat_map(|s| s.encode()).collect();
        // Two slots an append.
        for (i, chunk) in table.chunks(2 * relocation_stream::STREAM_SLOT_LEN).enumerate() {
            check.append::<Sha2>(2 * i as u32, chunk)?;
        }
        let mut lo = 0u64;
        for &hi in cuts.iter().chain([u64::MAX].iter()) {
            let part = PatchPlan {
                writes: plan
                    .writes
                    .iter()
                    .filter(|w| lo <= w.address && w.address < hi)
                    .cloned()
                    .collect(),
                slots: plan
                    .slots
                    .iter()
                    .filter(|x| lo <= x.address && x.address < hi)
                    .copied()
                    .collect(),
                ..plan.clone_header()
            };
            let mut evidence = t.evidence(&part, |a| Some(heap_page(a))).unwrap();
            if evidence.pages.is_empty() {
                evidence = s.evidence.clone();
            }
            let sub = Submission {
                plan: PatchPlan {
                    slots: Vec::new(),
                    ..part
                },
                evidence,
            };
            check.part::<Sha2>(rules, &SymbolRules::default(), &sub.encode(), hi)?;
            lo = hi;
        }
        check.finish::<Sha2>(rules)
    }

    fn heap_regions() -> Vec<Region> {
        vec![Region {
            start: 0x4000,
            end: 0x6000,
            flags: RW,
        }]
    }

    /// The trees of the snapshot [`heap_page`] describes.
    fn heap_trees() -> SnapshotTrees {
        let pages = [0x4000u64, 0x5000]
            .iter()
            .map(|&a| (a, crate::merkle::page_leaf::<Sha2>(a, &heap_page(a))))
            .collect();
        SnapshotTrees::new::<Sha2>(heap_regions(), pages)
    }

    #[test]
    fn a_relocation_checked_in_parts_passes_however_it_is_cut() {
        let s = relocation();
        let hash = s.plan.streamed_plan_hash::<Sha2>();
        assert_ne!(hash, s.plan.plan_hash::<Sha2>());
        let totals = PlanTotals { writes: 6, bytes: 80 };
        for cuts in [&[][..], &[0x4200], &[0x4200, 0x4300, 0x4400, 0x5000], &[0x4500]] {
            assert_eq!(stream(&s, &moves(4), cuts), Ok((hash, totals)), "cut at {cuts:x?}");
        }
        // The host's own cutting gives parts the program accepts, and the same hash.
        let t = heap_trees();
        for max_slots in [1, 2, 4] {
            let parts = t
                .stream_parts(&s.plan, usize::MAX, max_slots, |a| Some(heap_page(a)))
                .unwrap();
            assert!(parts.len() >= 4 / max_slots, "{max_slots}: {} parts", parts.len());
            let cuts: Vec<u64> = parts.iter().map(|p| p.hi).filter(|&h| h != u64::MAX).collect();
            assert_eq!(stream(&s, &moves(4), &cuts), Ok((hash, totals)));
            // Cut from the whole submission's proofs, the parts are the same.
            assert_eq!(s.stream_parts(usize::MAX, max_slots), Ok(parts));
        }
    }

    /// In an ascending plan each part is found by binary search; it holds what a pass over all
    /// writes and all page proofs finds.
    #[test]
    fn parts_found_by_search_hold_what_a_full_pass_finds() {
        let s = relocation();
        let mut checked = 0;
        for max_slots in 1..=s.plan.slots.len() {
            let mut lo = 0;
            for part in s.stream_parts(usize::MAX, max_slots).unwrap() {
                let whole = s.plan.stream_part(lo, part.hi);
                assert_eq!(part.submission.plan.writes, whole.writes, "[{lo:x}, {:x})", part.hi);
                let pages = whole.touched_pages().unwrap();
                let proofs: Vec<PageProof> = (s.evidence.pages.iter())
                    .filter(|p| pages.binary_search(&p.address).is_ok())
                    .cloned()
                    .collect();
                assert_eq!(part.submission.evidence.pages, proofs, "[{lo:x}, {:x})", part.hi);
                lo = part.hi;
                checked += 1;
            }
        }
        assert!(checked > s.plan.slots.len(), "{checked} parts");
    }

    /// Slots whose bytes do not change have no write. A part may be only such slots (the
    /// program takes it), so the slot cap holds for every part, and no part is empty; a slot is
    /// never cut from its write (found by the `relocation` fuzz target).
    #[test]
    fn every_part_holds_a_write_or_a_slot_and_at_most_its_slots() {
        let slot = |address: u64, to: u32| Slot {
            address,
            len: 8,
            from: 0,
            to,
        };
        let write = |address: u64| Write {
            address,
            old: vec![1; 8],
            new: vec![2; 8],
        };
        let plan = PatchPlan {
            writes: vec![write(0x100), write(0x108), write(0x5018), write(0x5020)],
            slots: vec![
                slot(0x5000, 1),
                slot(0x5008, 2),
                slot(0x5010, 0),
                slot(0x5018, 4),
                slot(0x5020, 3),
            ],
            ..relocation().plan.clone_header()
        };
        for max_slots in 1..=5 {
            let cuts: Vec<u64> = plan.stream_cuts(usize::MAX, max_slots, 4).iter().map(|c| c.0).collect();
            let mut lo = 0;
            for &hi in &cuts {
                let part = plan.stream_part(lo, hi);
                let why = || std::format!("{max_slots}: [{lo:x}, {hi:x}) of {cuts:x?}");
                assert!(!part.writes.is_empty() || !part.slots.is_empty(), "{}", why());
                assert!(part.slots.len() <= max_slots, "{}", why());
                for s in &part.slots {
                    let written = plan.writes.iter().any(|w| w.address == s.address);
                    assert!(
                        !written || part.writes.iter().any(|w| w.address == s.address),
                        "{}",
                        why()
                    );
                }
                lo = hi;
            }
        }
    }

    #[test]
    fn each_forged_streamed_relocation_has_its_own_error() {
        let good = relocation();
        let all = &[0x4200u64, 0x4300, 0x4400, 0x5000][..];
        // The head rewritten to another node than its old value moved to: refused in its part.
        let mut s = good.clone();
        s.plan.writes[5].new = 0x4200u64.to_le_bytes().to_vec();
        assert_eq!(stream(&s, &moves(4), all), Err(VerifyError::PointerNotMoved));
        // A moved node whose link names the wrong node: its record stays unbalanced.
        let mut s = good.clone();
        s.plan.writes[0].new[8..].copy_from_slice(&0x4400u64.to_le_bytes());
        assert_eq!(stream(&s, &moves(4), all), Err(VerifyError::MovedBytesMismatch));
        assert_eq!(stream(&s, &moves(4), &[]), Err(VerifyError::MovedBytesMismatch));
        // Two objects to one slot.
        let mut s = good.clone();
        s.plan.slots[1].to = s.plan.slots[2].to;
        assert_eq!(stream(&s, &moves(4), all), Err(VerifyError::RelocationNotAPermutation));
        // A slot that keeps its own object; one whose object is of another size.
        let mut s = good.clone();
        s.plan.slots[0].to = 0;
        assert_eq!(stream(&s, &moves(4), all), Err(VerifyError::InvalidRelocation));
        let mut s = good.clone();
        s.plan.slots[3].len = 8;
        assert_eq!(stream(&s, &moves(4), all), Err(VerifyError::InvalidRelocation));
        // The policy's limits, on the whole relocation.
        assert_eq!(stream(&good, &moves(0), all), Err(VerifyError::RelocationNotAllowed));
        assert_eq!(stream(&good, &moves(3), all), Err(VerifyError::PlanTooManyMoves));
        let mut few = moves(4);
        few.max_writes = 5;
        assert_eq!(stream(&good, &few, all), Err(VerifyError::PlanTooManyWrites));
        // Parts may have no writes, but the relocation as a whole must write something, as any
        // plan must.
        let mut s = good.clone();
        s.plan.writes.clear();
        assert_eq!(s.verify::<Sha2>(&moves(4)), Err(VerifyError::EmptyPlan));
        assert_eq!(stream(&s, &moves(4), all), Err(VerifyError::EmptyPlan));
    }

    /// An append writes only the stores its slots land in; a slot whose store is not given is
    /// refused, not skipped.
    #[test]
    fn an_append_writes_only_the_stores_its_slots_land_in() {
        use relocation_stream::Records;
        assert_eq!(Records::append_stores(0, 3, 3), 0..1);
        assert_eq!(Records::append_stores(2, 2, 3), 0..2);
        assert_eq!(Records::append_stores(3, 3, 3), 1..2);
        let plan = &relocation().plan;
        let n = plan.slots.len() as u32;
        assert!(n > 3, "{n} slots");
        let table: Vec<u8> = plan.stream_slots().iter().flat_map(|s| s.encode()).collect();
        let mut first = vec![0u8; 3 * relocation_stream::RECORD_LEN];
        let mut window: Vec<&mut [u8]> = vec![first.as_mut_slice(), &mut []];
        let mut records = Records::window(&mut window, 3, n).unwrap();
        let mut state = plan.stream_start::<Sha2>();
        let four = &table[..4 * relocation_stream::STREAM_SLOT_LEN];
        assert_eq!(
            relocation_stream::append_slots::<Sha2>(&mut state, &mut records, 0, four),
            Err(VerifyError::RelocationStoreMismatch)
        );
    }

    #[test]
    fn streamed_parts_come_in_order_and_match_their_relocation() {
        let s = relocation();
        let t = heap_trees();
        let plan = &s.plan;
        let rules = moves(4);
        let n = plan.slots.len() as u32;
        let mut store = vec![0u8; n as usize * relocation_stream::RECORD_LEN];
        let mut views: Vec<&mut [u8]> = vec![store.as_mut_slice()];
        let mut records = relocation_stream::Records::new(&mut views, n, n).unwrap();
        let mut state = plan.stream_start::<Sha2>();
        let table: Vec<u8> = plan.stream_slots().iter().flat_map(|s| s.encode()).collect();
        let parts = t.stream_parts(plan, usize::MAX, 2, |a| Some(heap_page(a))).unwrap();
        let part = |i: usize| parts[i].submission.encode();
        let check =
            |state: &mut StreamState, records: &mut relocation_stream::Records<'_, '_>, bytes: &[u8], hi: u64| {
                relocation_stream::check_part::<Sha2>(state, &rules, &SymbolRules::default(), records, bytes, hi)
            };
        // No part before the whole table; no slot past the count; no slot too long.
        relocation_stream::append_slots::<Sha2>(&mut state, &mut records, 0, &table[..16]).unwrap();
        assert_eq!(
            check(&mut state, &mut records, &part(0), parts[0].hi),
            Err(VerifyError::RelocationStreamOutOfOrder)
        );
        let mut long = StreamSlot {
            address: 0x4200,
            len: 1024,
            to: 0,
        };
        assert_eq!(
            relocation_stream::append_slots::<Sha2>(&mut state.clone(), &mut records, 1, &long.encode()),
            Err(VerifyError::StreamedSlotTooLong)
        );
        long.len = 16;
        long.address = 0x4100; // not above the last slot
        assert_eq!(
            relocation_stream::append_slots::<Sha2>(&mut state.clone(), &mut records, 1, &long.encode()),
            Err(VerifyError::InvalidRelocation)
        );
        assert_eq!(
            relocation_stream::append_slots::<Sha2>(&mut state.clone(), &mut records, 0, &table[16..]),
            Err(VerifyError::SlotsNotNext)
        );
        relocation_stream::append_slots::<Sha2>(&mut state, &mut records, 1, &table[16..]).unwrap();
        // Past the count: the whole table is there, and no slot beyond it is taken.
        let end = state.appended;
        assert_eq!(
            relocation_stream::append_slots::<Sha2>(&mut state.clone(), &mut records, end, &table[..16]),
            Err(VerifyError::InvalidRelocation)
        );
        // A part of another snapshot; one with slots of its own; one out of its range.
        let mut other = parts[0].submission.clone();
        other.plan.snapshot_root = [9; 32];
        assert_eq!(
            check(&mut state.clone(), &mut records, &other.encode(), parts[0].hi),
            Err(VerifyError::RelocationPartMismatch)
        );
        let mut other = parts[0].submission.clone();
        other.plan.slots = plan.slots[..1].to_vec();
        assert_eq!(
            check(&mut state.clone(), &mut records, &other.encode(), parts[0].hi),
            Err(VerifyError::RelocationPartMismatch)
        );
        assert_eq!(
            check(&mut state.clone(), &mut records, &part(0), 0x4100),
            Err(VerifyError::RelocationStreamOutOfOrder)
        );
        // In order they pass; a part again or finishing early does not; nothing after the last.
        let mut done = state;
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(
                relocation_stream::finish::<Sha2>(&done, &rules).map(|_| ()),
                Err(VerifyError::RelocationUnfinished)
            );
            check(&mut done, &mut records, &p.submission.encode(), p.hi).unwrap();
            let again = check(&mut done.clone(), &mut records, &p.submission.encode(), u64::MAX);
            assert_eq!(again, Err(VerifyError::RelocationStreamOutOfOrder), "part {i} again");
        }
        assert!(relocation_stream::finish::<Sha2>(&done, &rules).is_ok());
        assert_eq!(
            check(&mut done, &mut records, &part(0), u64::MAX),
            Err(VerifyError::RelocationStreamOutOfOrder)
        );
        let mut bytes = [0u8; StreamState::LEN];
        done.encode(&mut bytes);
        assert_eq!(StreamState::decode(&bytes), Ok(done));
    }
}
