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

/// Whether a test that cannot run here must fail instead of skipping: under CI (`CI=true` or
/// `CI=1`) and when `MEMZINC_NO_SKIP=1` (scripts/test.sh sets it).
pub fn skips_fail() -> bool {
    let set = |name: &str, values: &[&str]| std::env::var(name).is_ok_and(|v| values.contains(&v.as_str()));
    set("CI", &["true", "1"]) || set("MEMZINC_NO_SKIP", &["1"])
}

/// The one way a test says it cannot run here (a tool, a privilege or a mount it needs is
/// missing). Under CI or `MEMZINC_NO_SKIP=1` that is a failure: panics with
/// `<test>: cannot run here: <why>`. Otherwise prints `SKIPPED: <test>: <why>` to stderr and
/// the caller returns without checking anything. Either line (the failure as `FAILED: …`) is
/// also appended to the file `MEMZINC_SKIP_LOG` names, if set, so scripts/test.sh can count and
/// list them. Only the first line of `why` is kept.
#[track_caller]
pub fn skip(test: &str, why: &str) {
    let why = why.lines().next().unwrap_or_default().trim();
    let fail = skips_fail();
    let reason = format!("{test}: cannot run here: {why}");
    let line = if fail {
        format!("FAILED: {reason}")
    } else {
        format!("SKIPPED: {test}: {why}")
    };
    if let Some(log) = std::env::var_os("MEMZINC_SKIP_LOG") {
        append_line(std::path::Path::new(&log), &line);
    }
    if fail {
        panic!("{reason}");
    }
    // Straight to stderr, not through eprintln!: the test harness captures that for passing
    // tests, and a skip must show in a plain `cargo test` too.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Appends `line` to `log` with one write under O_APPEND, so lines from tests running at the
/// same time (threads or test binaries) do not interleave.
fn append_line(log: &std::path::Path, line: &str) {
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        panic!("cannot append to MEMZINC_SKIP_LOG {}: {e}", log.display());
    }
}

#[cfg(test)]
mod skip_log_tests {
    #[test]
    fn lines_appended_at_the_same_time_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skipped.log");
        let line = |i: usize| format!("SKIPPED: test{i}: {}", "x".repeat(200));
        std::thread::scope(|s| {
            for i in 0..8 {
                let (log, line) = (&log, line(i));
                s.spawn(move || super::append_line(log, &line));
            }
        });
        let mut got: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        got.sort();
        assert_eq!(got, (0..8).map(line).collect::<Vec<_>>());
    }
}

/// A synthetic snapshot for program tests: regions with known flags and every page of them
/// captured with deterministic contents, so plans with valid Merkle evidence can be built
/// without a live process.
pub mod synthetic {
    use memzinc::base::Sha2;
    use memzinc_verifier::hash::Hash;
    use memzinc_verifier::plan::{PatchPlan, SnapshotSymbol, SnapshotTrees, Submission, Write};
    use memzinc_verifier::wire::{Region, PAGE_LEN, REGION_EXEC, REGION_READ, REGION_WRITE};

    pub const RW: u8 = REGION_READ | REGION_WRITE;
    pub const RX: u8 = REGION_READ | REGION_EXEC;
    pub const RO: u8 = REGION_READ;

    /// The model hash synthetic plans name, and the test policies (`svm::config`) pin.
    pub const MODEL_HASH: Hash = [1; 32];

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

    /// The module the synthetic snapshot's symbols belong to.
    pub const MODULE: &str = "synthetic";

    /// `state` (64 bytes at 0x70_0100), `table` (256 bytes at 0x70_1000), `code` (in the
    /// code region) and 29 filler symbols, so a symbol proof has five siblings.
    pub fn symbols() -> Vec<(String, u64, u64)> {
        let mut out = vec![
            ("state".to_string(), 0x70_0100, 64),
            ("table".to_string(), 0x70_1000, 256),
            ("code".to_string(), 0x40_0010, 32),
        ];
        out.extend((0..29).map(|i| (format!("filler{i}"), 0x70_2000 + i * 16, 16)));
        out
    }

    pub fn symbol_key(name: &str) -> Hash {
        memzinc_verifier::hash::symbol_key::<Sha2>(MODULE.as_bytes(), name.as_bytes())
    }

    /// The page leaves of every page of `regions`.
    pub fn page_leaves(regions: &[Region]) -> Vec<(u64, Hash)> {
        regions
            .iter()
            .flat_map(|r| (r.start..r.end).step_by(PAGE_LEN))
            .map(|a| (a, memzinc_verifier::merkle::page_leaf::<Sha2>(a, &page(a))))
            .collect()
    }

    pub fn trees() -> SnapshotTrees {
        let pages = page_leaves(&regions());
        let symbols = symbols()
            .into_iter()
            .map(|(name, address, size)| SnapshotSymbol {
                key: symbol_key(&name),
                address,
                size,
            })
            .collect();
        SnapshotTrees::new::<Sha2>(regions(), pages).with_symbols::<Sha2>(symbols)
    }

    /// A plan for `target` writing `len` bytes at each address (old bytes from the snapshot,
    /// new bytes their complement), with evidence. Regions are those the writes touch.
    pub fn submission(target: &str, writes: &[(u64, usize)]) -> Submission {
        let writes: Vec<(u64, Vec<u8>)> = writes
            .iter()
            .map(|&(address, len)| (address, (0..len as u64).map(|i| !byte(address + i)).collect()))
            .collect();
        submission_with(target, &writes, &[], &[])
    }

    /// A plan for `target` writing the given new bytes at each address (old bytes from the
    /// snapshot), with evidence that proves the symbols `keys` name. Regions are those the
    /// writes touch and those holding `also` (the targets of pointer writes).
    pub fn submission_with(target: &str, writes: &[(u64, Vec<u8>)], also: &[u64], keys: &[Hash]) -> Submission {
        submission_against(&trees(), &regions(), target, writes, also, keys)
    }

    /// As [`submission_with`], against the trees `t` of a snapshot whose regions are
    /// `snapshot_regions` (pages as [`page`] says): a forger's own trees, with a root of its own
    /// that the evidence proves consistently.
    pub fn submission_against(
        t: &SnapshotTrees,
        snapshot_regions: &[Region],
        target: &str,
        writes: &[(u64, Vec<u8>)],
        also: &[u64],
        keys: &[Hash],
    ) -> Submission {
        let writes: Vec<Write> = writes
            .iter()
            .map(|(address, new)| {
                let old: Vec<u8> = (0..new.len() as u64).map(|i| byte(address + i)).collect();
                Write {
                    address: *address,
                    old,
                    new: new.clone(),
                }
            })
            .collect();
        let mut used: Vec<Region> = snapshot_regions
            .iter()
            .copied()
            .filter(|r| {
                writes
                    .iter()
                    .map(|w| w.address)
                    .chain(also.iter().copied())
                    .any(|a| r.start <= a && a < r.end)
            })
            .collect();
        used.dedup();
        let plan = PatchPlan {
            target_id: memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes()),
            snapshot_root: t.root::<Sha2>(),
            model_hash: MODEL_HASH,
            regions: used,
            writes,
            slots: Vec::new(),
        };
        // Writes outside the snapshot have no pages to prove; the rest keep their evidence, so
        // the program's own rules are what refuses such plans.
        let in_snapshot = |a: u64| snapshot_regions.iter().any(|r| r.start <= a && a < r.end);
        let provable = PatchPlan {
            writes: plan
                .writes
                .iter()
                .filter(|w| in_snapshot(w.address) && in_snapshot(w.address + w.old.len() as u64 - 1))
                .cloned()
                .collect(),
            ..plan.clone()
        };
        let evidence = t
            .evidence_with_symbols(&provable, keys, |a| Some(page(a)))
            .expect("pages and symbols exist");
        Submission { plan, evidence }
    }
}

/// A synthetic relocation for the program tests and the compute-unit bench: a list of `n`
/// 16-byte nodes `{ value, next }`, one per page of a heap at 0x80_0000 and scattered over the
/// pages (node `k` on page `(5k + 1) mod n`, `n` a power of two), its head at 0x90_0000. The
/// plan moves every node `k` onto page `k` (address order = list order) and rewrites the head;
/// its writes are computed here, independently of the verifier's rules.
pub mod relocation {
    use std::collections::BTreeMap;

    use memzinc::base::Sha2;
    use memzinc_verifier::plan::{PatchPlan, SnapshotTrees, Submission, Write};
    use memzinc_verifier::wire::{Region, Slot, PAGE_LEN};

    pub const HEAP: u64 = 0x80_0000;
    pub const HEAD: u64 = 0x90_0000;

    /// Node position `pos`: `per_page` nodes to a page, `stride` bytes apart (a 16-byte node in
    /// a 32-byte malloc chunk).
    fn node(pos: u64, per_page: u64, stride: u64) -> u64 {
        HEAP + pos / per_page * PAGE_LEN as u64 + 0x40 + pos % per_page * stride
    }

    /// The list of `n` nodes and its relocation; `n` a power of two (so `(5k + 1) mod n` is a
    /// permutation, and moves every node: `4k + 1` is odd, never a multiple of `n`).
    pub fn submission(target: &str, n: u64) -> Submission {
        submission_edited(target, n, |_| {})
    }

    /// As [`submission`], with the slots changed by `edit` before the writes are computed from
    /// them: a forger's plan whose bytes and pointers agree with its own slots.
    pub fn submission_edited(target: &str, n: u64, edit: impl Fn(&mut Vec<Slot>)) -> Submission {
        submission_of(target, n, 1, 16, false, edit)
    }

    /// As [`submission`], with `per_page` nodes to a page (at most 120), as a real heap packs
    /// them.
    pub fn dense_submission(target: &str, n: u64, per_page: u64) -> Submission {
        submission_of(target, n, per_page, 16, false, |_| {})
    }

    /// As [`dense_submission`], with nodes of `len` bytes (a multiple of 8, at least 16): a
    /// value, the link, then `len / 8 - 2` more values; in chunks of `len + 16` bytes rounded
    /// up to 16, at least 32. At most 255 pages of nodes.
    pub fn sized_submission(target: &str, n: u64, per_page: u64, len: u32) -> Submission {
        submission_of(target, n, per_page, len, false, |_| {})
    }

    /// As [`dense_submission`], but the nodes are alike and unlinked (a pool of objects with the
    /// same bytes, the head pointing at one): every node moves, yet no node's bytes change, so
    /// the only write is the head's, at the highest address.
    pub fn alike_submission(target: &str, n: u64, per_page: u64) -> Submission {
        submission_of(target, n, per_page, 16, true, |_| {})
    }

    /// The relocation of `n` nodes of `len` bytes, `per_page` to a page, linked into a list
    /// (or, `alike`, unlinked with the same bytes), its slots changed by `edit`.
    fn submission_of(
        target: &str,
        n: u64,
        per_page: u64,
        len: u32,
        alike: bool,
        edit: impl Fn(&mut Vec<Slot>),
    ) -> Submission {
        let stride = (u64::from(len) + 16).next_multiple_of(16).max(32);
        assert!(n.is_power_of_two() && n >= 4 && len >= 16 && len.is_multiple_of(8));
        assert!(
            per_page >= 1 && 0x40 + per_page * stride <= PAGE_LEN as u64,
            "{per_page} nodes of {len} bytes"
        );
        assert!(
            n.div_ceil(per_page) < (HEAD - HEAP) / PAGE_LEN as u64,
            "the nodes reach the head"
        );
        let node = |pos: u64| node(pos, per_page, stride);
        let page_of = |k: u64| (5 * k + 1) % n;
        let mut words: BTreeMap<u64, u64> = BTreeMap::new();
        for k in 0..n {
            let (value, next) = match alike {
                true => (1000, 0),
                false => (1000 + k, if k + 1 < n { node(page_of(k + 1)) } else { 0 }),
            };
            words.insert(node(page_of(k)), value);
            words.insert(node(page_of(k)) + 8, next);
            for j in 2..u64::from(len) / 8 {
                words.insert(node(page_of(k)) + 8 * j, 2000 + k + j);
            }
        }
        words.insert(HEAD, node(page_of(0)));
        let page = |at: u64| -> Vec<u8> {
            let mut out = vec![0u8; PAGE_LEN];
            for (&a, v) in words.range(at..at + PAGE_LEN as u64) {
                let off = (a - at) as usize;
                out[off..off + 8].copy_from_slice(&v.to_le_bytes());
            }
            out
        };
        let word = |a: u64| words.get(&a).copied().unwrap_or(0);
        let regions = vec![
            Region {
                start: HEAP,
                end: HEAP + n.div_ceil(per_page) * PAGE_LEN as u64,
                flags: crate::synthetic::RW,
            },
            Region {
                start: HEAD,
                end: HEAD + PAGE_LEN as u64,
                flags: crate::synthetic::RW,
            },
        ];
        let leaves = regions
            .iter()
            .flat_map(|r| (r.start..r.end).step_by(PAGE_LEN))
            .map(|a| (a, memzinc_verifier::merkle::page_leaf::<Sha2>(a, &page(a))))
            .collect();
        let t = SnapshotTrees::new::<Sha2>(regions.clone(), leaves);
        // Node k moves from page_of(k) to page k.
        let moving: Vec<u64> = (0..n).collect();
        let mut by_address: Vec<(u64, u64)> = moving.iter().map(|&k| (node(page_of(k)), k)).collect();
        by_address.sort_unstable();
        let index: BTreeMap<u64, u32> = by_address
            .iter()
            .enumerate()
            .map(|(i, &(a, _))| (a, i as u32))
            .collect();
        let mut slots: Vec<Slot> = by_address
            .iter()
            .map(|&(address, k)| Slot {
                address,
                len,
                from: 0,
                to: index[&node(k)],
            })
            .collect();
        for i in 0..slots.len() {
            let to = slots[i].to as usize;
            slots[to].from = i as u32;
        }
        edit(&mut slots);
        let moved = |v: u64| match index.range(..=v).next_back() {
            Some((&at, &i)) if v < at + u64::from(len) => slots[slots[i as usize].to as usize].address + (v - at),
            _ => v,
        };
        let mut writes: Vec<Write> = slots
            .iter()
            .map(|s| {
                let source = slots[s.from as usize].address;
                Write {
                    address: s.address,
                    old: (0..u64::from(len) / 8)
                        .flat_map(|j| word(s.address + 8 * j).to_le_bytes())
                        .collect(),
                    new: (0..u64::from(len) / 8)
                        .flat_map(|j| moved(word(source + 8 * j)).to_le_bytes())
                        .collect(),
                }
            })
            // A slot whose bytes stay has no write (a plan writes no bytes it leaves alone).
            .filter(|w| w.old != w.new)
            .collect();
        writes.push(Write {
            address: HEAD,
            old: word(HEAD).to_le_bytes().to_vec(),
            new: moved(word(HEAD)).to_le_bytes().to_vec(),
        });
        let plan = PatchPlan {
            target_id: memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes()),
            snapshot_root: t.root::<Sha2>(),
            model_hash: crate::synthetic::MODEL_HASH,
            regions,
            writes,
            slots,
        };
        let evidence = t.evidence(&plan, |a| Some(page(a))).expect("every page is captured");
        Submission { plan, evidence }
    }
}

/// The attestor in LiteSVM with a policy, for the program tests and the compute-unit bench.
pub mod svm {
    use litesvm::LiteSVM;
    use memzinc::base::Sha2;
    use memzinc_cli::attest::instructions::{self as ix, policy_address, target_chain_address};
    use memzinc_verifier::accounts::{PolicyConfig, MAX_SIGNERS, MAX_WITNESSES};
    use memzinc_verifier::plan::Submission;
    use memzinc_verifier::relocation_stream::PartCost;
    use memzinc_verifier::wire::PolicyRules;
    use memzinc_verifier::VerifyError;
    use solana_instruction::Instruction;
    use solana_keypair::Keypair;
    use solana_pubkey::Pubkey;
    use solana_signer::Signer;
    use solana_transaction::Transaction;

    /// What a relocation attested in parts cost (`Env::attest_in_parts`).
    #[derive(Debug, Default)]
    pub struct PartsCost {
        /// Each part's `check_relocation_part`, in compute units, and what it was estimated to
        /// cost when it was cut.
        pub parts: Vec<(u64, PartCost)>,
        /// Compute units of `finish_relocation`.
        pub finish_cu: u64,
        /// The parts' submissions, in bytes.
        pub uploaded_bytes: usize,
        /// Every transaction after the opening: appends, buffers opened and written, checks,
        /// the finish and the close.
        pub transactions: usize,
    }

    impl PartsCost {
        /// Compute units of the costliest `check_relocation_part`.
        pub fn most_part_cu(&self) -> u64 {
            self.parts.iter().map(|p| p.0).max().unwrap_or(0)
        }
    }

    pub struct Env {
        pub svm: LiteSVM,
        pub program_id: Pubkey,
        pub authority: Keypair,
    }

    pub fn rules() -> PolicyRules {
        PolicyRules {
            wx: true,
            max_bytes: 64,
            max_writes: 8,
            max_moves: 0,
        }
    }

    /// The snapshot witness every test policy names (a fixed key, so policies are comparable).
    pub fn witness() -> Keypair {
        Keypair::new_from_array([77; 32])
    }

    /// How old a witnessed snapshot may be under the test policies, in slots.
    pub const MAX_SNAPSHOT_AGE: u64 = 100;

    pub fn config(signers: &[Pubkey]) -> PolicyConfig {
        let mut keys = [[0u8; 32]; MAX_SIGNERS];
        for (k, s) in keys.iter_mut().zip(signers) {
            *k = s.to_bytes();
        }
        let mut witnesses = [[0u8; 32]; MAX_WITNESSES];
        witnesses[0] = witness().pubkey().to_bytes();
        PolicyConfig {
            rules: rules(),
            signer_count: signers.len() as u8,
            signers: keys,
            witness_count: 1,
            witnesses,
            witness_threshold: 1,
            max_snapshot_age: MAX_SNAPSHOT_AGE,
            model_hash: crate::synthetic::MODEL_HASH,
            verifier_hash: [2; 32],
            symbol_rules: Default::default(),
        }
    }

    pub fn funded(svm: &mut LiteSVM) -> Keypair {
        let k = Keypair::new();
        svm.airdrop(&k.pubkey(), 100_000_000_000).unwrap();
        k
    }

    /// The attestor deployed, a funded authority, and its policy with `config(&[])`.
    pub fn env() -> Env {
        env_with(&config(&[]))
    }

    pub fn env_with(policy: &PolicyConfig) -> Env {
        env_with_authority(policy, Keypair::new())
    }

    /// With a given authority: a fixed key makes every PDA (and so every bump search, and the
    /// compute units) the same from run to run.
    pub fn env_with_authority(policy: &PolicyConfig, authority: Keypair) -> Env {
        let mut svm = LiteSVM::new();
        let program_id = memzinc_cli::attest::attestor_program_id();
        let bytes = std::fs::read(crate::program_so()).unwrap();
        svm.add_program(program_id, &bytes).unwrap();
        svm.airdrop(&authority.pubkey(), 100_000_000_000).unwrap();
        svm.airdrop(&witness().pubkey(), 100_000_000_000).unwrap();
        let mut e = Env {
            svm,
            program_id,
            authority,
        };
        let a = e.authority.insecure_clone();
        e.send(vec![ix::initialize_policy(&e.program_id, &a.pubkey(), policy)], &[&a])
            .expect("initialize_policy");
        e
    }

    impl Env {
        /// One transaction; returns the compute units it used.
        pub fn send(&mut self, ixs: Vec<Instruction>, signers: &[&Keypair]) -> Result<u64, String> {
            self.transact(ixs, signers).map(|(cu, _)| cu).map_err(|(e, _)| e)
        }

        /// One transaction; returns its log lines, or its error and its log lines.
        pub fn send_logged(
            &mut self,
            ixs: Vec<Instruction>,
            signers: &[&Keypair],
        ) -> Result<Vec<String>, (String, Vec<String>)> {
            self.transact(ixs, signers).map(|(_, logs)| logs)
        }

        /// One transaction: compute units and logs, or the error and the logs.
        pub fn transact(
            &mut self,
            ixs: Vec<Instruction>,
            signers: &[&Keypair],
        ) -> Result<(u64, Vec<String>), (String, Vec<String>)> {
            let tx = Transaction::new_signed_with_payer(
                &ixs,
                Some(&signers[0].pubkey()),
                signers,
                self.svm.latest_blockhash(),
            );
            let result = self
                .svm
                .send_transaction(tx)
                .map(|m| (m.compute_units_consumed, m.logs))
                .map_err(|f| (format!("{:?}", f.err), f.meta.logs));
            self.svm.expire_blockhash();
            result
        }

        /// `witness` records `submission`'s snapshot root for its target (it pays).
        pub fn witness_as(&mut self, witness: &Keypair, submission: &Submission) -> Result<u64, String> {
            let ix = ix::witness_snapshot(
                &self.program_id,
                &witness.pubkey(),
                &witness.pubkey(),
                &submission.plan.target_id,
                &submission.plan.snapshot_root,
            );
            self.send(vec![ix], &[witness])
        }

        /// The policy's witness records the root of `submission`, then `signer` uploads it.
        pub fn upload(&mut self, signer: &Keypair, submission: &Submission) -> [u8; 32] {
            self.witness_as(&witness(), submission).expect("witness_snapshot");
            self.upload_unwitnessed(signer, submission)
        }

        /// Uploads `submission` into `signer`'s buffer; nobody witnesses its root.
        pub fn upload_unwitnessed(&mut self, signer: &Keypair, submission: &Submission) -> [u8; 32] {
            let plan_hash = submission.plan.plan_hash::<Sha2>();
            let bytes = submission.encode();
            let buffer = ix::buffer_keypair(signer, &plan_hash);
            let space = memzinc_verifier::accounts::BufferHeader::LEN + bytes.len();
            let rent = self.svm.minimum_balance_for_rent_exemption(space);
            let open = ix::open_buffer(
                &self.program_id,
                &signer.pubkey(),
                &buffer.pubkey(),
                &plan_hash,
                bytes.len() as u32,
                rent,
            );
            self.send(open, &[signer, &buffer]).expect("open_buffer");
            for w in ix::upload(&self.program_id, &signer.pubkey(), &buffer.pubkey(), &plan_hash, &bytes) {
                self.send(vec![w], &[signer]).expect("write_buffer");
            }
            plan_hash
        }

        /// `attest`, citing the policy witness's record of the plan's root.
        pub fn attest_ix(&self, signer: &Keypair, submission: &Submission, seq: u64) -> Instruction {
            self.attest_ix_citing(signer, submission, seq, &[witness().pubkey()])
        }

        /// `attest`, citing the records of `witnesses` for the plan's root.
        pub fn attest_ix_citing(
            &self,
            signer: &Keypair,
            submission: &Submission,
            seq: u64,
            witnesses: &[Pubkey],
        ) -> Instruction {
            let plan_hash = submission.plan.plan_hash::<Sha2>();
            let records: Vec<Pubkey> = witnesses
                .iter()
                .map(|w| {
                    ix::witnessed_snapshot_address(
                        &self.program_id,
                        w,
                        &submission.plan.target_id,
                        &submission.plan.snapshot_root,
                    )
                })
                .collect();
            ix::attest(
                &self.program_id,
                &signer.pubkey(),
                &self.authority.pubkey(),
                &submission.plan.target_id,
                &plan_hash,
                seq,
                &ix::buffer_keypair(signer, &plan_hash).pubkey(),
                &records,
            )
        }

        /// Where `signer` uploads `plan_hash`.
        pub fn buffer(&self, signer: &Keypair, plan_hash: &[u8; 32]) -> Pubkey {
            ix::buffer_keypair(signer, plan_hash).pubkey()
        }

        pub fn send_attest(&mut self, signer: &Keypair, attest: Instruction) -> Result<u64, String> {
            self.send(vec![ix::compute_unit_limit(1_400_000), attest], &[signer])
        }

        /// Uploads and attests as the authority; returns the compute units of `attest` alone.
        pub fn attest(&mut self, submission: &Submission, seq: u64) -> Result<u64, String> {
            let a = self.authority.insecure_clone();
            self.upload(&a, submission);
            let attest = self.attest_ix(&a, submission, seq);
            self.send_attest(&a, attest)
        }

        /// Attests `submission`'s relocation in parts cut as `attest` cuts them (`InParts`, of at
        /// most `max_slots` slots when given), as the authority: the policy witness records the
        /// root; the relocation and `stores` stores are allocated and opened; the table is
        /// appended; each part is uploaded
        /// and checked; then `finish_relocation` (as attestation `seq`) and `close_relocation`.
        /// `edit_part` may change each part before its upload. Returns what it cost; the first
        /// refusal is the error.
        pub fn attest_in_parts(
            &mut self,
            submission: &Submission,
            seq: u64,
            max_slots: Option<usize>,
            stores: u32,
            edit_part: impl Fn(usize, &mut Submission),
        ) -> Result<PartsCost, String> {
            let a = self.authority.insecure_clone();
            self.witness_as(&witness(), submission)?;
            let (relocation, store_keys) = self.open_relocation_as(&a, submission, stores, &[])?;
            let relocation = relocation.pubkey();
            let stores: Vec<Pubkey> = store_keys.iter().map(|k| k.pubkey()).collect();
            let checked = self.check_in_parts(submission, seq, max_slots, &relocation, &stores, edit_part);
            if checked.is_err() {
                // Given up: the relocation and its stores go back, so the next try finds them fresh.
                let mut all = vec![relocation];
                all.extend(&stores);
                self.send(vec![ix::close_relocation(&self.program_id, &a.pubkey(), &all)], &[&a])
                    .expect("close_relocation");
            }
            checked
        }

        /// `signer` allocates a relocation of `submission`'s slots and `stores` stores (keys derived
        /// from its secret) and opens it, the stores in `reused` (already opened ones) after its
        /// own. Returns the relocation's and the stores' keypairs.
        pub fn open_relocation_as(
            &mut self,
            signer: &Keypair,
            submission: &Submission,
            stores: u32,
            reused: &[&Keypair],
        ) -> Result<(Keypair, Vec<Keypair>), String> {
            let plan = &submission.plan;
            let plan_hash = plan.streamed_plan_hash::<Sha2>();
            let n = plan.slots.len() as u32;
            let per_store = n.div_ceil(stores + reused.len() as u32);
            let relocation = ix::relocation_keypair(signer, &plan_hash, 0);
            let mut store_keys: Vec<Keypair> = (1..=stores)
                .map(|i| ix::relocation_keypair(signer, &plan_hash, i as u8))
                .collect();
            let len = memzinc_verifier::accounts::Relocation::LEN;
            let rent = self.svm.minimum_balance_for_rent_exemption(len);
            let create =
                ix::allocate_relocation_account(&self.program_id, &signer.pubkey(), &relocation.pubkey(), len, rent);
            self.send(vec![create], &[signer, &relocation])?;
            for k in &store_keys {
                let len = ix::relocation_store_len(per_store);
                let rent = self.svm.minimum_balance_for_rent_exemption(len);
                let create =
                    ix::allocate_relocation_account(&self.program_id, &signer.pubkey(), &k.pubkey(), len, rent);
                self.send(vec![create], &[signer, k])?;
            }
            store_keys.extend(reused.iter().map(|k| k.insecure_clone()));
            let stores: Vec<Pubkey> = store_keys.iter().map(|k| k.pubkey()).collect();
            let open = ix::open_relocation(
                &self.program_id,
                &signer.pubkey(),
                &self.authority.pubkey(),
                &relocation.pubkey(),
                &stores,
                &plan.stream_start::<Sha2>(),
                per_store,
            );
            let mut signers: Vec<&Keypair> = vec![signer, &relocation];
            signers.extend(store_keys.iter());
            self.send(vec![open], &signers)?;
            Ok((relocation, store_keys))
        }

        /// The table, the parts and the finish of `attest_in_parts`, of a relocation opened with
        /// `open_relocation_as`.
        pub fn check_in_parts(
            &mut self,
            submission: &Submission,
            seq: u64,
            max_slots: Option<usize>,
            relocation: &Pubkey,
            stores: &[Pubkey],
            edit_part: impl Fn(usize, &mut Submission),
        ) -> Result<PartsCost, String> {
            let a = self.authority.insecure_clone();
            let plan = &submission.plan;
            let plan_hash = plan.streamed_plan_hash::<Sha2>();
            let mut cost = PartsCost::default();
            let layout = ix::InParts::in_stores(submission, max_slots, stores.len()).map_err(|e| e.to_string())?;
            for append in &layout.appends {
                let append = append.instruction(&self.program_id, &a.pubkey(), relocation, stores);
                self.send(vec![append], &[&a])?;
                cost.transactions += 1;
            }
            for (i, part) in layout.parts.iter().enumerate() {
                let mut sub = part.submission.clone();
                edit_part(i, &mut sub);
                // A part refused in an earlier try leaves its buffer open: close it first.
                let label = sub.plan.plan_hash::<Sha2>();
                if self
                    .svm
                    .get_account(&self.buffer(&a, &label))
                    .is_some_and(|b| b.lamports > 0)
                {
                    let close = ix::close_buffer(&self.program_id, &a.pubkey(), &self.buffer(&a, &label), &label);
                    self.send(vec![close], &[&a])?;
                }
                let label = self.upload_unwitnessed(&a, &sub);
                let bytes = sub.encode();
                cost.uploaded_bytes += bytes.len();
                cost.transactions +=
                    2 + ix::upload(&self.program_id, &a.pubkey(), &self.buffer(&a, &label), &label, &bytes).len();
                let check = ix::check_relocation_part(
                    &self.program_id,
                    &a.pubkey(),
                    &self.authority.pubkey(),
                    relocation,
                    &self.buffer(&a, &label),
                    stores,
                    &label,
                    part.hi,
                );
                cost.parts.push((self.send_attest(&a, check)?, part.estimate));
            }
            let record = ix::witnessed_snapshot_address(
                &self.program_id,
                &witness().pubkey(),
                &plan.target_id,
                &plan.snapshot_root,
            );
            let finish = ix::finish_relocation(
                &self.program_id,
                &a.pubkey(),
                &self.authority.pubkey(),
                &plan.target_id,
                &plan_hash,
                seq,
                relocation,
                &[record],
            );
            cost.finish_cu = self.send_attest(&a, finish)?;
            self.send(vec![ix::close_relocation(&self.program_id, &a.pubkey(), stores)], &[&a])?;
            cost.transactions += 2;
            Ok(cost)
        }

        pub fn policy_key(&self) -> Pubkey {
            policy_address(&self.program_id, &self.authority.pubkey())
        }

        pub fn chain_key(&self, target: &[u8; 32]) -> Pubkey {
            target_chain_address(&self.program_id, &self.policy_key(), target)
        }

        pub fn account<T>(&self, address: &Pubkey, decode: fn(&[u8]) -> Result<T, VerifyError>) -> T {
            let account = self.svm.get_account(address).expect("account exists");
            assert_eq!(account.owner, self.program_id);
            decode(&account.data).expect("decodes")
        }
    }

    /// The witness records attestation `a` names, as `e`'s chain holds them (what `audit
    /// --replay` reads from the RPC node).
    pub fn witness_records(
        e: &Env,
        a: &memzinc_verifier::accounts::Attestation,
    ) -> Vec<(Pubkey, Option<solana_account::Account>)> {
        a.cited_witnesses()
            .map(|(w, _)| {
                let record =
                    ix::witnessed_snapshot_address(&e.program_id, &Pubkey::from(*w), &a.target_id, &a.snapshot_root);
                (record, e.svm.get_account(&record))
            })
            .collect()
    }
}

/// Runs the `memzinc` binary with `MEMZINC_ROOT` set to this checkout.
pub fn memzinc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("memzinc"))
        .args(args)
        .env("MEMZINC_ROOT", repo_root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run memzinc")
}

/// Runs a memzinc command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = memzinc(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "memzinc {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a memzinc command that must fail; returns its one-line error.
pub fn fails(args: &[&str]) -> String {
    let out = memzinc(args);
    assert!(!out.status.success(), "memzinc {args:?} should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "error must be one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        use std::time::{Duration, Instant};
        // SIGTERM first so `memzinc localnet` shuts surfpool down cleanly.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running target program whose stdout lines arrive on a channel.
pub struct Target {
    pub child: KillOnDrop,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Target {
    pub fn spawn(program: &std::path::Path, args: &[&str]) -> Target {
        use std::io::BufRead;
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Target {
            child: KillOnDrop(child),
            lines,
        }
    }

    /// The sample target `healme` of this workspace.
    pub fn healme(args: &[&str]) -> Target {
        Target::spawn(&binary("healme"), args)
    }

    pub fn pid(&self) -> String {
        self.child.0.id().to_string()
    }

    /// A line already printed, if any, without waiting.
    pub fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// The next line containing `needle`; panics after 15 s without one.
    pub fn wait_for(&self, needle: &str) -> String {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// A started target that is killed when the test ends, and the facts it printed first.
pub struct Running {
    pub child: std::process::Child,
    /// The lines it printed up to and including the `until` line.
    pub facts: Vec<String>,
}

impl Running {
    /// Starts `cmd` and collects its stdout lines until one equals `until` (or starts with it).
    pub fn start(cmd: &mut std::process::Command, until: &str) -> Running {
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let mut facts = Vec::new();
        loop {
            let line = lines.next().expect("target ended early").unwrap();
            let done = line.starts_with(until);
            facts.push(line);
            if done {
                break;
            }
        }
        // Keep reading (and dropping) whatever else it prints so it never blocks on a pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Running { child, facts }
    }

    /// Snapshots it into `path` and opens the core.
    pub fn snapshot(&self, path: &std::path::Path) -> memzinc::describe::Snapshot {
        memzinc::describe::take(self.pid(), path, None).unwrap();
        memzinc::describe::Snapshot::open(path).unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The value of the fact line `"{kind} {name} VALUE"`.
    pub fn fact(&self, kind: &str, name: &str) -> u64 {
        let prefix = format!("{kind} {name} ");
        let line = self
            .facts
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("target printed no {prefix:?}"));
        let value = &line[prefix.len()..];
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => value.parse().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A localnet URL and a funded keypair file, for tests that attest.
pub struct Net {
    pub url: String,
    pub keypair: PathBuf,
    /// A snapshot witness keypair (a second key, as on a single machine) and its address:
    /// policies name it, `snapshot --witness` records roots under it.
    pub witness: PathBuf,
    pub witness_key: String,
    _process: Option<KillOnDrop>,
}

impl Net {
    /// Whether this is our own fresh localnet (not one `anchor test` provided).
    pub fn is_own(&self) -> bool {
        self._process.is_some()
    }

    /// `args` followed by `--witness KEY` (a policy's witness).
    pub fn policy_args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--witness".into(), self.witness_key.clone()]);
        self.args(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `memzinc snapshot` args that also record the root for `target` under the witness key.
    pub fn witnessed_snapshot(&self, pid: &str, out: &str, target: &str) -> Vec<String> {
        self.args(&[
            "snapshot",
            "--pid",
            pid,
            "-o",
            out,
            "--witness",
            self.witness.to_str().unwrap(),
            "--target",
            target,
        ])
    }

    /// `args` followed by `-u URL -k KEYPAIR` for this network.
    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend([
            "-u".into(),
            self.url.clone(),
            "-k".into(),
            self.keypair.to_str().unwrap().into(),
        ]);
        v
    }
}

/// The validator in ANCHOR_PROVIDER_URL (with ANCHOR_WALLET funded) when `anchor test` provides
/// one, else [`own_localnet`].
pub fn localnet(dir: &std::path::Path) -> Net {
    if let (Ok(url), Ok(wallet)) = (std::env::var("ANCHOR_PROVIDER_URL"), std::env::var("ANCHOR_WALLET")) {
        eprintln!("using the validator at ANCHOR_PROVIDER_URL={url}");
        let (witness, witness_key) = witness_keypair(dir);
        return Net {
            url,
            keypair: wallet.into(),
            witness,
            witness_key,
            _process: None,
        };
    }
    own_localnet(dir)
}

/// Always memzinc's own localnet (`memzinc localnet`, killed on drop), with a fresh authority
/// (and so a policy of its own).
pub fn own_localnet(dir: &std::path::Path) -> Net {
    let keypair = dir.join("authority.json");
    ok(&["keygen", "-o", keypair.to_str().unwrap()]);
    let ready = dir.join("ready.json");
    let child = std::process::Command::new(binary("memzinc"))
        .args([
            "localnet",
            "-k",
            keypair.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ])
        .env("MEMZINC_ROOT", repo_root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start memzinc localnet");
    let process = KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline, "localnet not ready within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let (witness, witness_key) = witness_keypair(dir);
    Net {
        url: info["rpc_url"].as_str().unwrap().to_string(),
        keypair,
        witness,
        witness_key,
        _process: Some(process),
    }
}

/// A fresh witness keypair file in `dir` and its address.
fn witness_keypair(dir: &std::path::Path) -> (PathBuf, String) {
    let path = dir.join("witness.json");
    let key = ok(&["keygen", "-o", path.to_str().unwrap()]).trim().to_string();
    (path, key)
}

/// healme's spec with `min_temp > max_temp` for every allowed value: no repair exists.
pub fn unrepairable_healme_spec() -> memzinc::reason::TargetSpec {
    let mut spec = memzinc::reason::TargetSpec::load(&repo_root().join("models/targets/healme.json")).unwrap();
    for f in &mut spec.fields {
        if f.field.name == "min_temp" {
            (f.min, f.max) = (50, 60);
        }
        if f.field.name == "max_temp" {
            (f.min, f.max) = (-40, 10);
        }
    }
    spec
}

/// The target sizes (MiB) a size-scaling bench runs: `MEMZINC_BENCH_SIZES` (comma-separated),
/// else 100 MiB and 1 GiB.
pub fn bench_sizes() -> Vec<u64> {
    std::env::var("MEMZINC_BENCH_SIZES")
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![100, 1024])
}

/// How many rounds a bench keeps the best of: `MEMZINC_BENCH_ROUNDS`, else 2.
pub fn bench_rounds() -> usize {
    std::env::var("MEMZINC_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2)
}
