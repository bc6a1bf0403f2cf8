//! Compute units of `attest` with 1, 8 and 64 writes, each on its own page so every write
//! carries a full page and its Merkle proof, against a minimal pinocchio instruction of the
//! same program (`write_buffer` of one byte) measured in the same run. Writes COMPUTE_UNITS.md.
//!
//! `cargo bench -p memzinc-tests --bench compute_units` (needs target/deploy/attestor.so).

use memzinc::base::Sha2;
use memzinc_cli::attest::instructions as ix;
use memzinc_tests::svm::{config, env_with_authority};
use memzinc_tests::synthetic;
use memzinc_verifier::accounts::PolicyConfig;
use memzinc_verifier::wire::{field_kind, PolicyRules, SymbolRule, SymbolRules, PAGE_LEN};
use solana_signer::Signer;

fn main() {
    let policy = PolicyConfig {
        rules: PolicyRules {
            wx: true,
            max_bytes: 4096,
            max_writes: 64,
            max_moves: 0,
        },
        ..config(&[])
    };
    let mut rows = Vec::new();

    // A fixed authority: the same PDAs, bump searches and compute units in every run.
    let mut e = env_with_authority(&policy, solana_keypair::Keypair::new_from_array([42; 32]));
    let a = e.authority.insecure_clone();
    let probe = synthetic::submission("baseline", &[(0x70_0000, 1)]);
    let plan_hash = e.upload(&a, &probe);
    let baseline = e
        .send(
            vec![ix::write_buffer(
                &e.program_id,
                &a.pubkey(),
                &e.buffer(&a, &plan_hash),
                &plan_hash,
                0,
                &[probe.encode()[0]],
            )],
            &[&a],
        )
        .expect("write_buffer");
    rows.push((
        "write_buffer, 1 byte (pinocchio baseline)".to_string(),
        baseline,
        0usize,
        0usize,
    ));

    // The first attestation of a target also creates its chain account; measured apart.
    let first = synthetic::submission("bench", &[(0x70_0000 + 8, 4)]);
    let cu = e.attest(&first, 0).expect("attest");
    rows.push((
        "attest, 1 write, first of its target (creates the chain)".to_string(),
        cu,
        first.encode().len(),
        0,
    ));

    for (i, writes) in [1usize, 8, 64].into_iter().enumerate() {
        let plan: Vec<(u64, usize)> = (0..writes as u64)
            .map(|p| (0x70_0000 + p * PAGE_LEN as u64 + 16, 4))
            .collect();
        let submission = synthetic::submission("bench", &plan);
        assert_eq!(submission.evidence.pages.len(), writes);
        let bytes = submission.encode().len();
        let h = submission.plan.plan_hash::<Sha2>();
        let upload_txs = ix::upload(&e.program_id, &a.pubkey(), &e.buffer(&a, &h), &h, &submission.encode()).len();
        let cu = e.attest(&submission, 1 + i as u64).expect("attest");
        rows.push((
            format!("attest, {writes} write(s) on {writes} page(s)"),
            cu,
            bytes,
            upload_txs + 1,
        ));
    }

    // Symbol rules cost only when a policy has them: one range and one proof, then eight typed
    // fields on eight symbols (the most a policy holds), each proven.
    let rule = |name: &str, end: u64, kind: u8| SymbolRule {
        symbol: synthetic::symbol_key(name),
        start: 0,
        end,
        kind,
        min: 0,
        max: u32::MAX as u64,
    };
    let fillers: Vec<String> = (0..8).map(|i| format!("filler{i}")).collect();
    let filler_address = |i: u64| 0x70_2000 + i * 16;
    for (label, rules, writes) in [
        (
            "attest, 1 write, 1 symbol rule (1 symbol proof)",
            vec![rule("state", 64, field_kind::BYTES)],
            vec![(0x70_0100 + 8, 4)],
        ),
        (
            "attest, 8 writes, 8 symbol rules (typed u32 fields, 8 symbol proofs)",
            fillers.iter().map(|f| rule(f, 4, field_kind::UNSIGNED)).collect(),
            (0..8).map(|i| (filler_address(i), 4)).collect::<Vec<_>>(),
        ),
    ] {
        let policy = PolicyConfig {
            symbol_rules: SymbolRules::from_rules(&rules).expect("valid rules"),
            ..policy
        };
        let mut e = env_with_authority(&policy, solana_keypair::Keypair::new_from_array([43; 32]));
        let a = e.authority.insecure_clone();
        let keys: Vec<_> = rules.iter().map(|r| r.symbol).collect();
        let changed = |&(address, len): &(u64, usize), flip: u8| {
            let new = (0..len as u64).map(|k| synthetic::byte(address + k) ^ flip).collect();
            (address, new)
        };
        // The chain's first link (creating it costs extra), then the measured plan.
        let opener = synthetic::submission_with("bench-symbols", &[changed(&writes[0], 1)], &[], &keys);
        e.attest(&opener, 0).expect("creates the chain");
        let news: Vec<(u64, Vec<u8>)> = writes.iter().map(|w| changed(w, 0xff)).collect();
        let submission = synthetic::submission_with("bench-symbols", &news, &[], &keys);
        let bytes = submission.encode().len();
        let h = submission.plan.plan_hash::<Sha2>();
        let upload_txs = ix::upload(&e.program_id, &a.pubkey(), &e.buffer(&a, &h), &h, &submission.encode()).len();
        let cu = e.attest(&submission, 1).expect("attest under symbol rules");
        rows.push((label.to_string(), cu, bytes, upload_txs + 1));
    }

    // A relocation (issue 17): a 64-node list, one node per page, every node moved into list
    // order and the head rewritten: 64 slot writes and one pointer on 65 proven pages. Each
    // slot's new bytes are checked word by word against the moved source object.
    for n in [16u64, 64] {
        let policy = PolicyConfig {
            rules: PolicyRules {
                max_bytes: 4096,
                max_writes: 128,
                max_moves: 64,
                ..policy.rules
            },
            ..policy
        };
        let mut e = env_with_authority(&policy, solana_keypair::Keypair::new_from_array([44; 32]));
        let a = e.authority.insecure_clone();
        let opener = synthetic::submission("bench-relocation", &[(0x70_0000 + 8, 4)]);
        e.attest(&opener, 0).expect("creates the chain");
        let submission = memzinc_tests::relocation::submission("bench-relocation", n);
        let bytes = submission.encode().len();
        let h = submission.plan.plan_hash::<Sha2>();
        let upload_txs = ix::upload(&e.program_id, &a.pubkey(), &e.buffer(&a, &h), &h, &submission.encode()).len();
        let cu = e.attest(&submission, 1).expect("attest a relocation");
        rows.push((
            format!(
                "attest, relocation of {n} objects (one per page) and 1 pointer, {} pages",
                submission.evidence.pages.len()
            ),
            cu,
            bytes,
            upload_txs + 1,
        ));
    }

    // A relocation in parts (relocation_stream): the costliest part and the finish, for a list
    // of one node per page (the pages dominate) and one packed 26 to a page as glibc's 32-byte
    // chunks are in the relocation bench's heap (the slots dominate).
    let mut streamed = Vec::new();
    for (n, per_page, max_slots) in [(64u64, 1u64, Some(16usize)), (1024, 26, Some(128)), (1024, 26, None)] {
        let policy = PolicyConfig {
            rules: PolicyRules {
                max_bytes: u32::MAX,
                max_writes: u32::MAX,
                max_moves: n as u32,
                ..policy.rules
            },
            ..policy
        };
        let mut e = env_with_authority(&policy, solana_keypair::Keypair::new_from_array([45; 32]));
        let opener = synthetic::submission("bench-streamed", &[(0x70_0000 + 8, 4)]);
        e.attest(&opener, 0).expect("creates the chain");
        let submission = memzinc_tests::relocation::dense_submission("bench-streamed", n, per_page);
        let cost = e
            .attest_in_parts(&submission, 1, max_slots, 1, |_, _| {})
            .expect("attest a relocation in parts");
        streamed.push(format!(
            "| {n} objects, {per_page} to a page, parts {} | {} | {} | {} | {} | {} |\n",
            max_slots.map_or("cut by their estimated cost".to_string(), |m| format!(
                "of at most {m} slots"
            )),
            cost.parts.len(),
            cost.most_part_cu(),
            cost.finish_cu,
            cost.uploaded_bytes,
            cost.transactions
        ));
    }

    let mut md = String::from(
        "# Compute units\n\nWritten by `cargo bench -p memzinc-tests --bench compute_units` (LiteSVM, the real\n\
         `target/deploy/attestor.so`). Each write sits on its own page, so each carries a full 4 KiB page\n\
         and its Merkle proof; the program hashes the page, walks the proof, compares the old bytes, checks\n\
         the region proofs and the policy rules, compares the plan's model hash with the one the policy\n\
         pins, checks the witnessed-snapshot record of the plan's root (one policy witness), creates the\n\
         attestation (which names the witnesses that counted) and plan-marker PDAs, extends the chain and\n\
         closes the buffer. Goals (issues 5 and 15): <= 15,000 CU for 1 write, <= 400,000 for 64; the\n\
         per-transaction limit is 1,400,000. The first attestation of a target also creates its chain\n\
         account (measured apart); the others extend an existing chain. PDA derivations\n\
         (`find_program_address`, ~1,500 CU per try) and the two account-creating CPIs are most of\n\
         the fixed cost; the rest grows with the pages proven. Symbol rules (allowed ranges and typed\n\
         fields relative to a symbol) cost only under a policy that has them: a symbol proof and the\n\
         range checks per write (the two symbol rows, each on a chain that exists). A relocation\n\
         (issue 17, last two rows) also checks that its slots are a permutation and that every\n\
         slot's new bytes are the moved object's, word by word, every pointer moved with it (a\n\
         binary search over the slots per word); goal: 64 objects within the 1,400,000 limit.\n\n\
         | instruction | compute units | x baseline | uploaded bytes | upload txs |\n|---|---:|---:|---:|---:|\n",
    );
    for (name, cu, bytes, txs) in &rows {
        md += &format!(
            "| {name} | {cu} | {:.1} | {bytes} | {txs} |\n",
            *cu as f64 / baseline as f64
        );
    }
    md += "\nA relocation too large for one submission is attested in parts (`attest --in-parts`, and\n\
           always when it does not fit): `open_relocation`, its slot table in `append_slots` of 56\n\
           slots, then one `check_relocation_part` per part (its buffer uploaded first), then\n\
           `finish_relocation`. Each part must stay within the 1,400,000 limit on its own: `attest`\n\
           cuts parts where their estimated cost (`relocation_stream::PartCost`, a fit to measured\n\
           parts, from above) would pass 1,100,000, and at a slot count when given one.\n\n\
           | relocation | parts | costliest part (CU) | finish (CU) | uploaded bytes | transactions |\n|---|---:|---:|---:|---:|---:|\n";
    for row in &streamed {
        md += row;
    }
    print!("{md}");
    let path = memzinc_tests::repo_root().join("COMPUTE_UNITS.md");
    memzinc::base::write_file_atomically(&path, md.as_bytes()).expect("write COMPUTE_UNITS.md");
    eprintln!("wrote {}", path.display());
}
