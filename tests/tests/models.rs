//! The models and specs in `models/` run with the plain `minizinc` CLI and agree with the code.

use std::process::Command;

use memzinc_tests::{binary, repo_root};

#[test]
fn healme_spec_is_what_healme_describes() {
    let out = Command::new(binary("healme")).arg("--describe").output().unwrap();
    assert!(out.status.success());
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("models/targets/healme.json")).unwrap())
            .unwrap();
    assert_eq!(
        described, committed,
        "regenerate with `healme --describe > models/targets/healme.json`"
    );
}

#[test]
fn repair_model_runs_unchanged_with_the_minizinc_cli() {
    let spec = memzinc::reason::TargetSpec::load(&repo_root().join("models/targets/healme.json")).unwrap();
    // The corruption healme simulates: target 9000, fan 7; every other field as initialised.
    let current = [0x7E4A_0001, 16, 24, 9000, 7, 0];
    let dir = tempfile::tempdir().unwrap();
    let dzn = dir.path().join("facts.dzn");
    std::fs::write(&dzn, memzinc::reason::dzn(&spec, &current)).unwrap();
    let out = Command::new("minizinc")
        .args(["--solver", "gecode", "--output-mode", "json"])
        .arg(repo_root().join("models/repair.mzn"))
        .arg(&dzn)
        .output()
        .expect("minizinc is installed (apt-get install minizinc)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "==========" is MiniZinc's mark for a proven optimum.
    assert!(stdout.contains("=========="), "{stdout}");
    let json_end = stdout.find("----------").unwrap();
    let solution: serde_json::Value = serde_json::from_str(&stdout[..json_end]).unwrap();
    assert_eq!(solution["value"], serde_json::json!([0x7E4A_0001, 16, 24, 21, 1, 0]));
}

#[test]
fn an_unrepairable_object_is_reported_unsatisfiable() {
    let spec = memzinc_tests::unrepairable_healme_spec();
    let dir = tempfile::tempdir().unwrap();
    let dzn = dir.path().join("facts.dzn");
    std::fs::write(&dzn, memzinc::reason::dzn(&spec, &[0x7E4A_0001, 16, 24, 21, 1, 0])).unwrap();
    let opts = memzinc::reason::PlanOptions::new(&repo_root().join("models"));
    let err = memzinc::reason::solve_spec(&opts.solver, &repo_root().join("models/repair.mzn"), &dzn)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no repair exists"), "{err}");
}
