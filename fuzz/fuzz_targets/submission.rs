//! Arbitrary bytes as the buffer `attest` verifies (`PlanCore || Evidence`).
//!
//! Asserts: parsing and verification never panic; a parse failure is `MalformedInstruction`;
//! a parsed submission's counts match its iterators and re-encoding its owned form reproduces
//! the input exactly (the encoding is canonical, so the plan hash is unambiguous); under each of
//! four policies, with and without symbol rules, and two hashes (SHA-256, and an all-zero hash
//! that lets random bytes pass the Merkle checks and reach the old-bytes comparison and the
//! symbol rules) `verify_submission` returns exactly what the brute-force reference in
//! `fuzz/src/lib.rs` returns; and a laxer policy never refuses what a stricter one accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc_fuzz::{
    ref_encode_evidence, ref_encode_plan, ref_verify_submission, report_verdict, symbol_policies, RefHash, Sha2,
    ZeroHash, POLICIES,
};
use memzinc_verifier::plan::{self, Evidence, PatchPlan};
use memzinc_verifier::rules::verify_submission;
use memzinc_verifier::wire::{PlanView, Submission, SymbolRule, SymbolRules, REGION_LEN};
use memzinc_verifier::VerifyError;

fn check_hash<H: RefHash>(data: &[u8], owned: Option<&plan::Submission>) {
    for (symbol_list, symbol_rules) in &symbol_policies() {
        check_policies::<H>(data, owned, symbol_list, symbol_rules);
    }
}

fn check_policies<H: RefHash>(
    data: &[u8],
    owned: Option<&plan::Submission>,
    symbol_list: &[SymbolRule],
    symbol_rules: &SymbolRules,
) {
    let mut accepted_by_stricter = None;
    for rules in &POLICIES {
        let got = verify_submission::<H>(rules, symbol_rules, data)
            .map(|(_, v)| (v.plan_hash, v.region_table_hash, v.totals));
        match owned {
            None => assert_eq!(got, Err(VerifyError::MalformedInstruction)),
            Some(s) => assert_eq!(
                got,
                ref_verify_submission::<H>(rules, symbol_list, &s.plan, &s.evidence),
                "{rules:?} {symbol_list:?}"
            ),
        }
        if let Some(v) = accepted_by_stricter {
            assert_eq!(got, Ok(v), "a laxer policy refused what a stricter one accepted");
        }
        if let Ok(v) = got {
            accepted_by_stricter = Some(v);
        }
        report_verdict(&(std::any::type_name::<H>(), got.map(|_| ())));
    }
}

fuzz_target!(|data: &[u8]| {
    let owned = match Submission::parse(data) {
        Err(e) => {
            assert_eq!(e, VerifyError::MalformedInstruction);
            None
        }
        Ok(s) => {
            let p = &s.plan;
            assert_eq!(p.regions().count(), p.region_count as usize);
            assert_eq!(p.writes().count(), p.write_count as usize);
            assert_eq!(
                s.evidence.region_proofs().count(),
                s.evidence.region_proof_count as usize
            );
            assert_eq!(s.evidence.pages().count(), s.evidence.page_proof_count as usize);
            assert_eq!(s.evidence.symbols().count(), s.evidence.symbol_proof_count as usize);
            assert!(data.starts_with(p.encoded));
            assert_eq!(
                p.regions_encoded,
                &p.encoded[96..96 + 4 + REGION_LEN * p.region_count as usize]
            );
            // target_id, snapshot_root, model_hash: the plan's first 96 bytes.
            assert_eq!(p.model_hash, &p.encoded[64..96]);
            assert_eq!(PlanView::parse(p.encoded).map(|v| v.encoded), Ok(p.encoded));

            let plan = PatchPlan::decode(p.encoded).expect("a parsed plan decodes");
            assert_eq!(plan.encode(), p.encoded, "plan encoding is not canonical");
            assert_eq!(ref_encode_plan(&plan), p.encoded);
            let evidence = Evidence::from_view(&s.evidence);
            let mut tail = Vec::new();
            evidence.encode_into(&mut tail);
            assert_eq!(tail, &data[p.encoded.len()..], "evidence encoding is not canonical");
            assert_eq!(ref_encode_evidence(&evidence), tail);
            let owned = plan::Submission { plan, evidence };
            assert_eq!(owned.encode(), data);
            Some(owned)
        }
    };
    check_hash::<Sha2>(data, owned.as_ref());
    check_hash::<ZeroHash>(data, owned.as_ref());
});
