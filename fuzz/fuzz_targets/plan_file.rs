//! Arbitrary bytes as a plan file, through `PlanFile::load` (what `attest` and `apply` read a
//! plan with) and `to_submission` (the bytes `attest` uploads).
//!
//! Asserts: nothing panics; an error is one line; a loaded plan's submission carries the same
//! plan and re-encodes to bytes the verifier parses back to it; saving a loaded plan file and
//! loading it again gives the same plan file and plan (nothing is lost or invented on the way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memzinc::reason::PlanFile;
use memzinc_fuzz::host::{one_line, scratch_file};
use memzinc_verifier::plan::PatchPlan;

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("plan.json", data);
    let (file, plan) = match PlanFile::load(&path) {
        Err(e) => return one_line(&e),
        Ok(p) => p,
    };
    match file.to_submission(&path) {
        Err(e) => one_line(&e),
        Ok(s) => {
            assert_eq!(s.plan, plan);
            let bytes = s.encode();
            let parsed = memzinc_verifier::wire::Submission::parse(&bytes).expect("a submission's encoding parses");
            assert_eq!(PatchPlan::decode(parsed.plan.encoded).as_ref(), Ok(&plan));
        }
    }
    file.save(&path).expect("saving a plan file to /dev/shm");
    let (again, plan_again) = PlanFile::load(&path).expect("a saved plan file loads");
    assert_eq!((again, plan_again), (file, plan));
});
