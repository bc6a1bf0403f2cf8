//! Arbitrary bytes as a plan file, through `Plan::load` (what `attest` and `apply` read a plan
//! with) and `submission` (the bytes `attest` uploads).
//!
//! Asserts: nothing panics; an error is one line; a loaded plan's submission carries the same
//! plan and re-encodes to bytes the verifier parses back to it; saving a loaded plan and
//! loading it again gives the same plan (nothing is lost or invented on the way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc::reason::Plan;
use memzinc_fuzz::host::{one_line, scratch_file};
use memzinc_verifier::plan::PatchPlan;

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("plan.json", data);
    let plan = match Plan::load(&path) {
        Err(e) => return one_line(&e),
        Ok(p) => p,
    };
    let patch = plan.patch();
    match plan.submission() {
        Err(e) => assert!(
            plan.writes.is_empty(),
            "a loaded plan with writes has parsable evidence: {e}"
        ),
        Ok(s) => {
            assert_eq!(s.plan, patch);
            let bytes = s.encode();
            let parsed = memzinc_verifier::wire::Submission::parse(&bytes).expect("a submission's encoding parses");
            assert_eq!(PatchPlan::decode(parsed.plan.encoded).as_ref(), Ok(&patch));
        }
    }
    plan.save(&path).expect("saving a plan file to /dev/shm");
    let again = Plan::load(&path).expect("a saved plan file loads");
    assert_eq!(again, plan);
});
