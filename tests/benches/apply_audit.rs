//! How long `apply` holds a live target stopped (1 and 64 writes; goal < 1 ms), and how many
//! recorded decisions per second `audit --replay` re-runs in the sBPF VM (goal >= 5,000/s).
//! Prints medians and rates; asserts nothing about time.
//!
//! `cargo bench -p memzinc-tests --bench apply_audit` (needs target/deploy/attestor.so).

use memzinc::apply;
use memzinc_cli::attest::instructions::{attestation_address, policy_address, target_chain_address};
use memzinc_cli::attest::Replayer;
use memzinc_tests::svm::{config, env_with_authority};
use memzinc_tests::{synthetic, Target};
use memzinc_verifier::accounts::{Attestation, PolicyConfig};
use memzinc_verifier::plan::{PatchPlan, Write};
use memzinc_verifier::wire::{PolicyRules, PAGE_LEN};
use solana_signer::Signer;

fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn stopped_time(writes: usize) -> u128 {
    let target = Target::healme(&["--ballast-mib", "1", "--period-ms", "100"]);
    target.wait_for("status=ok");
    let pid: i32 = target.pid().parse().unwrap();
    let maps = memzinc::introspect::read_maps(pid).unwrap();
    let heap = maps
        .iter()
        .filter(|m| m.readable() && m.writable() && m.private() && m.path.is_empty())
        .max_by_key(|m| m.end - m.start)
        .expect("an anonymous writable mapping (the ballast)");
    let pages = ((heap.end - heap.start) / PAGE_LEN as u64) as usize;
    assert!(pages >= writes, "{pages} pages");
    let ranges: Vec<(u64, usize)> = (0..writes)
        .map(|i| (heap.start + (i * pages / writes * PAGE_LEN) as u64 + 64, 8))
        .collect();
    let mut samples = Vec::new();
    for _ in 0..15 {
        let old = memzinc::introspect::read_many(pid, &ranges).unwrap();
        let plan = |from: &[Vec<u8>], invert: bool| PatchPlan {
            target_id: [0; 32],
            snapshot_root: [0; 32],
            model_hash: [0; 32],
            regions: vec![],
            writes: ranges
                .iter()
                .zip(from)
                .map(|(&(address, _), bytes)| {
                    let new: Vec<u8> = bytes.iter().map(|b| !b).collect();
                    if invert {
                        Write {
                            address,
                            old: new,
                            new: bytes.clone(),
                        }
                    } else {
                        Write {
                            address,
                            old: bytes.clone(),
                            new,
                        }
                    }
                })
                .collect(),
            slots: Vec::new(),
        };
        samples.push(apply::apply(pid, &plan(&old, false)).unwrap().stopped_us);
        apply::apply(pid, &plan(&old, true)).unwrap();
    }
    median(samples)
}

fn replay_rate(decisions: usize) -> f64 {
    let policy = PolicyConfig {
        rules: PolicyRules {
            wx: true,
            max_bytes: 64,
            max_writes: 8,
            max_moves: 0,
        },
        ..config(&[])
    };
    let mut e = env_with_authority(&policy, solana_keypair::Keypair::new_from_array([7; 32]));
    let mut recorded = Vec::new();
    for seq in 0..decisions as u64 {
        let s = synthetic::submission("replay-bench", &[(0x70_0000 + 8 * seq, 4)]);
        e.attest(&s, seq).expect("attest");
        recorded.push(s);
    }
    let policy_key = policy_address(&e.program_id, &e.authority.pubkey());
    let chain = target_chain_address(&e.program_id, &policy_key, &recorded[0].plan.target_id);
    let program = std::fs::read(memzinc_tests::program_so()).unwrap();
    let policy_account = e.svm.get_account(&policy_key).unwrap();
    let mut replayer = Replayer::new(e.program_id, &program, policy_key, policy_account).unwrap();
    let started = std::time::Instant::now();
    for (seq, s) in recorded.iter().enumerate() {
        let address = attestation_address(&e.program_id, &chain, seq as u64);
        let a = Attestation::decode(&e.svm.get_account(&address).unwrap().data).unwrap();
        let records = memzinc_tests::svm::witness_records(&e, &a);
        let outcome = replayer.replay(&address, &a, s, &records).unwrap();
        assert_eq!(outcome.verdict, "identical", "{outcome:?}");
    }
    decisions as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let profile = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    };
    println!("apply/audit bench, {profile}");
    for writes in [1, 64] {
        let us = stopped_time(writes);
        println!(
            "apply, {writes:>2} write(s): target stopped {us} µs (median of 15; goal < 1000 µs: {:.2}x of the goal)",
            us as f64 / 1000.0
        );
    }
    let rate = replay_rate(300);
    println!(
        "audit replay: {rate:.0} decisions/s in the sBPF VM (goal 5000/s: {:.2}x)",
        rate / 5000.0
    );
}
