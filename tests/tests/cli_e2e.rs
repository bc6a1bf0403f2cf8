//! End to end through the real `memzinc` binary: a real target process, the real `minizinc`,
//! a real localnet (ours, started as `memzinc localnet`, or the one in ANCHOR_PROVIDER_URL with
//! the attestor deployed and ANCHOR_WALLET funded).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memzinc_tests::{binary, fails, localnet, ok, own_localnet, repo_root, KillOnDrop, Target};

/// `memzinc policy init --allow/--field` on a real healme snapshot: the rules name
/// `healme:HEALME_STATE`, the snapshot's symbol tree proves where it was, and the program judges
/// the real plan by them.
#[test]
fn symbol_rules_from_the_cli_judge_a_real_plan() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let net = own_localnet(dir.path());
    let chain = |args: &[&str]| net.args(args);
    let run_ok = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fail = |args: Vec<String>| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let target = Target::healme(&["--corrupt-at", "3", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");
    let snap = p("s.core");
    run_ok(net.witnessed_snapshot(&target.pid(), &snap, "healme"));
    let inspect: serde_json::Value = serde_json::from_str(&ok(&["inspect", &snap, "--json"])).unwrap();
    let state = inspect["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "HEALME_STATE")
        .expect("HEALME_STATE in the snapshot");
    let (state_at, state_size) = (state["address"].as_u64().unwrap(), state["size"].as_u64().unwrap());
    let plan = p("s.plan.json");
    let spec = repo_root().join("models/targets/healme.json");
    let planned: serde_json::Value = serde_json::from_str(&ok(&[
        "plan",
        &snap,
        "--spec",
        spec.to_str().unwrap(),
        "-o",
        &plan,
        "--json",
    ]))
    .unwrap();
    let temp = &planned["writes"][0];
    assert_eq!(temp["field"], "HEALME_STATE.target_temp");
    let temp_offset = temp["address"].as_u64().unwrap() - state_at;
    let allow = format!("healme:HEALME_STATE+0..{state_size}");
    let field = |bounds: &str| format!("healme:HEALME_STATE+{temp_offset}:i32={bounds}");

    run_ok(net.policy_args(&["policy", "init", "--allow", &allow, "--field", &field("-50..150")]));
    let shown: serde_json::Value = serde_json::from_str(&run_ok(chain(&["policy", "show", "--json"]))).unwrap();
    let rules = shown["symbol_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        (rules[1]["kind"].as_str(), rules[1]["min"].as_i64()),
        (Some("signed"), Some(-50))
    );
    assert_eq!(rules[0]["symbol_key"], rules[1]["symbol_key"]);

    // The plan file's evidence proves no symbols: the rules cannot be judged without them.
    let err = run_fail(chain(&["attest", &plan]));
    assert!(err.contains("MissingSymbolProof"), "{err}");
    let attested: serde_json::Value =
        serde_json::from_str(&run_ok(chain(&["attest", &plan, "--snapshot", &snap, "--json"]))).unwrap();
    assert_eq!(attested["seq"], 0);

    // Another run of healme (a PIE: ASLR places it elsewhere) under the same policy: the rules
    // follow the symbol to its new address.
    let other = Target::healme(&["--corrupt-at", "3", "--period-ms", "50"]);
    other.wait_for("OVERHEAT");
    let snap2 = p("s2.core");
    run_ok(net.witnessed_snapshot(&other.pid(), &snap2, "healme"));
    let inspect2: serde_json::Value = serde_json::from_str(&ok(&["inspect", &snap2, "--json"])).unwrap();
    let state2_at = inspect2["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "HEALME_STATE")
        .and_then(|s| s["address"].as_u64())
        .unwrap();
    if state2_at == state_at {
        eprintln!("ASLR is off here: both runs have HEALME_STATE at {state_at:#x}; the rules are still judged");
    }
    let plan2 = p("s2.plan.json");
    ok(&["plan", &snap2, "--spec", spec.to_str().unwrap(), "-o", &plan2]);
    let attested: serde_json::Value =
        serde_json::from_str(&run_ok(chain(&["attest", &plan2, "--snapshot", &snap2, "--json"]))).unwrap();
    assert_eq!(attested["seq"], 1);

    // Bounds the repaired temperature (21) violates: the same plan is refused under them.
    run_ok(net.policy_args(&["policy", "update", "--allow", &allow, "--field", &field("100..150")]));
    let err = run_fail(chain(&["attest", &plan, "--snapshot", &snap]));
    assert!(err.contains("FieldValueOutOfBounds"), "{err}");
    // A range elsewhere: the writes are outside it.
    let elsewhere = format!("healme:HEALME_STATE+{}..{}", state_size, state_size + 8);
    run_ok(net.policy_args(&["policy", "update", "--allow", &elsewhere]));
    let err = run_fail(chain(&["attest", &plan, "--snapshot", &snap]));
    assert!(err.contains("WriteOutsideAllowedRanges"), "{err}");
    // Another snapshot than the plan's is refused before anything is sent.
    let err = run_fail(chain(&["attest", &plan, "--snapshot", &snap2]));
    assert!(err.contains("is not the plan's snapshot"), "{err}");
    // A bound that does not fit the type is a usage error, nothing is sent.
    let err = run_fail(net.policy_args(&["policy", "update", "--field", "healme:HEALME_STATE+0:u8=0..256"]));
    assert!(err.contains("--field"), "{err}");

    // A snapshot nobody witnessed: its plan is refused before anything is uploaded.
    run_ok(net.policy_args(&["policy", "update", "--allow", &allow]));
    let snap3 = p("s3.core");
    ok(&["snapshot", "--pid", &other.pid(), "-o", &snap3]);
    let plan3 = p("s3.plan.json");
    ok(&["plan", &snap3, "--spec", spec.to_str().unwrap(), "-o", &plan3]);
    let err = run_fail(chain(&["attest", &plan3, "--snapshot", &snap3]));
    assert!(err.contains("witnessed by 0 of the 1"), "{err}");

    // Closing the policy blocks what it attested: `apply` refuses plan2 (attested, never
    // applied) at the gate, before touching the target, and still once the policy is reopened.
    run_ok(chain(&["policy", "close"]));
    let err = run_fail(chain(&["apply", &plan2, "--pid", &other.pid()]));
    assert!(
        err.contains("may not be applied") && err.contains("PolicyClosed"),
        "{err}"
    );
    run_ok(net.policy_args(&["policy", "init", "--allow", &allow]));
    let err = run_fail(chain(&["apply", &plan2, "--pid", &other.pid()]));
    assert!(
        err.contains("may not be applied") && err.contains("AttestationBlocked"),
        "{err}"
    );
}

#[test]
fn snapshot_plan_attest_apply_audit_on_a_localnet() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let net = localnet(dir.path());
    let chain = |args: &[&str]| net.args(args);
    let run_ok = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fail = |args: Vec<String>| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());

    run_ok(net.policy_args(&["policy", "init", "--max-bytes", "64", "--max-writes", "8"]));

    let target = Target::healme(&["--corrupt-at", "3", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");

    let snap = p("t.core");
    let mut witnessed = net.witnessed_snapshot(&target.pid(), &snap, "healme");
    witnessed.push("--json".into());
    let report: serde_json::Value = serde_json::from_str(&run_ok(witnessed)).unwrap();
    assert!(report["pages"].as_u64().unwrap() > 10);

    let inspect: serde_json::Value = serde_json::from_str(&ok(&["inspect", &snap, "--json"])).unwrap();
    assert_eq!(inspect["root"], report["root"]);
    assert!(inspect["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "HEALME_STATE"));

    let plan = p("t.plan.json");
    let spec = repo_root().join("models/targets/healme.json");
    let planned: serde_json::Value = serde_json::from_str(&ok(&[
        "plan",
        &snap,
        "--spec",
        spec.to_str().unwrap(),
        "-o",
        &plan,
        "--json",
    ]))
    .unwrap();
    assert_eq!(planned["status"], "OPTIMAL");
    let fields: Vec<&str> = planned["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["HEALME_STATE.target_temp", "HEALME_STATE.fan_level"]);
    // 9000 -> 21 changes two bytes of the i32 but costs the field's four; the fan one byte.
    assert_eq!(planned["changed_bytes"], 5);
    assert!(
        Path::new(&p("t.plan.dzn")).exists(),
        "the .dzn facts are kept beside the plan"
    );

    // The plan names the models it was solved with; the policy pins the checkout's models.
    let models: String = memzinc::base::models_hash(&repo_root().join("models"))
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(planned["model_hash"], models);
    // A plan solved with another repair model is refused before anything is uploaded.
    let laxer = p("laxer.mzn");
    let mut text = std::fs::read_to_string(repo_root().join("models/repair.mzn")).unwrap();
    text.push_str("% another model\n");
    std::fs::write(&laxer, text).unwrap();
    let other = p("other.plan.json");
    ok(&[
        "plan",
        &snap,
        "--spec",
        spec.to_str().unwrap(),
        "--model",
        &laxer,
        "-o",
        &other,
    ]);
    let err = run_fail(chain(&["attest", &other]));
    assert!(
        err.contains("solved with MiniZinc models") && err.contains(&models),
        "{err}"
    );

    // Not attested yet: refused, target untouched.
    let err = run_fail(chain(&["apply", &plan, "--pid", &target.pid()]));
    assert!(err.contains("no attestation"), "{err}");

    let attested: serde_json::Value = serde_json::from_str(&run_ok(chain(&["attest", &plan, "--json"]))).unwrap();
    assert_eq!(attested["seq"], 0);
    assert!(attested["signature"].is_string());
    // Idempotent: the same plan is not attested twice.
    let again: serde_json::Value = serde_json::from_str(&run_ok(chain(&["attest", &plan, "--json"]))).unwrap();
    assert_eq!(again["attestation"], attested["attestation"]);
    assert!(again["signature"].is_null());

    // A plan tampered after attestation has no attestation of its own.
    let mut tampered: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    tampered["writes"][0]["new"] = "ff000000".into();
    let tampered_path = p("tampered.plan.json");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    let err = run_fail(chain(&["apply", &tampered_path, "--pid", &target.pid()]));
    assert!(err.contains("no attestation"), "{err}");

    let applied: serde_json::Value =
        serde_json::from_str(&run_ok(chain(&["apply", &plan, "--pid", &target.pid(), "--json"]))).unwrap();
    assert_eq!(applied["report"]["bytes"], 5);
    // The target's own output shows it healed (skip a line that may predate the write).
    target.wait_for("status=ok");
    let line = target.wait_for("status=ok");
    assert!(line.contains("target=21 fan=1"), "{line}");

    // Applying again: memory no longer holds the old bytes, so nothing is written.
    let err = run_fail(chain(&["apply", &plan, "--pid", &target.pid()]));
    assert!(err.contains("nothing was written"), "{err}");

    let audit: serde_json::Value =
        serde_json::from_str(&run_ok(chain(&["audit", "--target", "healme", "--json"]))).unwrap();
    assert_eq!(audit["verified"], true);
    let entries = audit["entries"].as_array().unwrap();
    if net.is_own() {
        assert_eq!(entries.len(), 1, "a fresh localnet holds exactly this attestation");
    }
    let last = entries.last().unwrap();
    assert_eq!(last["plan_hash"], planned["plan_hash"]);
    assert_eq!(last["receipt"]["outcome"], "applied", "apply recorded its receipt");
    assert_eq!(last["revoked"], false);
    // The record names the policy revision and configuration that judged it and the witness
    // whose record of the snapshot root counted.
    let policy: serde_json::Value = serde_json::from_str(&run_ok(chain(&["policy", "show", "--json"]))).unwrap();
    assert_eq!(last["policy_revision"], policy["revision"], "{last}");
    assert_eq!(last["policy_hash"], policy["config_hash"], "{last}");
    let witnesses = last["witnesses"].as_array().unwrap();
    assert_eq!(witnesses.len(), 1, "{last}");
    assert_eq!(
        witnesses[0]["witness"].as_str(),
        Some(net.witness_key.as_str()),
        "{last}"
    );
    assert!(
        witnesses[0]["slot"].as_u64().unwrap() <= last["slot"].as_u64().unwrap(),
        "{last}"
    );
    // And the text form says so.
    let text = run_ok(chain(&["audit", "--target", "healme"]));
    assert!(
        text.contains(&format!("witnessed by {} (slot ", net.witness_key)) && text.contains("policy revision "),
        "{text}"
    );

    // The audit exported with the snapshot and the plan: the attestations table and the
    // AttestationChain protobuf record (decoded by protoc) hold this link.
    let audit_file = p("audit.json");
    std::fs::write(&audit_file, audit.to_string()).unwrap();
    let tables = p("tables");
    ok(&[
        "export",
        "--parquet",
        &tables,
        &snap,
        "--plan",
        &plan,
        "--audit",
        &audit_file,
    ]);
    let rows = memzinc_cli::interop::tables::ATTESTATIONS
        .read_all(&Path::new(&tables).join("attestations.parquet"))
        .unwrap();
    assert_eq!(rows.len(), entries.len());
    assert_eq!(rows.last().unwrap().text(4), planned["plan_hash"].as_str().unwrap());
    let column = |name: &str| {
        memzinc_cli::interop::tables::ATTESTATIONS
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap()
    };
    assert_eq!(
        rows.last().unwrap().text(column("policy_hash")),
        last["policy_hash"].as_str().unwrap()
    );
    assert_eq!(rows.last().unwrap().text(column("witnesses")), net.witness_key);
    assert_eq!(
        rows.last().unwrap().text(column("witness_slots")),
        witnesses[0]["slot"].to_string()
    );
    let decoded = Command::new("protoc")
        .arg("--decode=memzinc.attestation.v1.AttestationChain")
        .arg(format!("--proto_path={}", repo_root().join("proto").display()))
        .arg("attestation.proto")
        .stdin(std::fs::File::open(Path::new(&tables).join("records/attestations.pb")).unwrap())
        .output()
        .unwrap();
    assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
    let decoded = String::from_utf8(decoded.stdout).unwrap();
    assert_eq!(decoded.matches("attestations {").count(), entries.len(), "{decoded}");
    assert!(
        decoded.contains("outcome: \"applied\"") && decoded.contains("verified: true"),
        "{decoded}"
    );
    assert!(decoded.contains(&format!("signer: {}", last["signer"])), "{decoded}");
    assert!(
        decoded.contains(&format!("witness: \"{}\"", net.witness_key)),
        "{decoded}"
    );

    // Offline replay: the deployed program's bytes (the reproducible build) run again in the
    // sBPF VM on the kept plan file and produce the recorded attestation byte for byte.
    let program = repo_root().join("target/deploy/attestor.so");
    // The same run writes the Parquet timeline and the HTML report.
    let (table, page) = (dir.path().join("timeline.parquet"), dir.path().join("report.html"));
    let replayed: serde_json::Value = serde_json::from_str(&run_ok(chain(&[
        "audit",
        "--target",
        "healme",
        "--replay",
        dir.path().to_str().unwrap(),
        "--program",
        program.to_str().unwrap(),
        "--parquet",
        table.to_str().unwrap(),
        "--report",
        page.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    let replay = &replayed["replay"];
    assert_eq!(replay["program"]["matches_local_build"], true, "{replay}");
    let decision = replay["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["plan_hash"] == planned["plan_hash"])
        .unwrap();
    assert_eq!(decision["verdict"], "identical", "{replay}");
    // A replay of an empty directory while the chain holds attestations replays nothing: that
    // fails, and says how many decisions were not replayed; --allow-missing accepts it, and the
    // summary still counts them.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let replay_empty = |extra: &[&str]| {
        let mut args = vec!["audit", "--target", "healme", "--replay", empty.to_str().unwrap()];
        args.extend(["--program", program.to_str().unwrap()]);
        args.extend(extra);
        chain(&args)
    };
    let err = run_fail(replay_empty(&[]));
    assert!(err.contains("could not be replayed"), "{err}");
    let allowed: serde_json::Value =
        serde_json::from_str(&run_ok(replay_empty(&["--allow-missing", "--json"]))).unwrap();
    assert_eq!(allowed["replay"]["replayed"], 0, "{allowed}");
    assert_eq!(allowed["replay"]["missing"], entries.len(), "{allowed}");
    // The Parquet timeline reads back; a headless Chromium renders the report.
    {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(std::fs::File::open(&table).unwrap()).unwrap();
        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(rows.len(), entries.len());
        let last_row = rows.last().unwrap();
        assert!(last_row.contains(planned["plan_hash"].as_str().unwrap()), "{last_row}");
        assert!(last_row.contains("receipt_outcome: \"applied\""), "{last_row}");
    }
    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .stdin(Stdio::null())
            .output()
            .expect("chromium is installed (apt-get install chromium)")
    };
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom"]).stdout).into_owned();
    assert!(
        dom.contains("id=\"timeline\"") && dom.contains("class=\"decision\""),
        "{dom}"
    );
    assert!(
        dom.contains("class=\"patch\""),
        "the memory map marks the patched addresses"
    );
    assert!(
        dom.contains("identical") && dom.contains("= the local reproducible build"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("{} @ ", net.witness_key)),
        "the timeline names the witness"
    );
    let shot = dir.path().join("report.png");
    chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1200,900"]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );

    // The same plan with doctored evidence does not replay: the audit fails.
    let doctored_dir = dir.path().join("doctored");
    std::fs::create_dir(&doctored_dir).unwrap();
    let mut doctored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let evidence = doctored["evidence"].as_str().unwrap().to_string();
    let flip_at = evidence.len() - 2 * 32 * 3; // inside the last page's bytes or proof
    let flipped = if &evidence[flip_at..flip_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    doctored["evidence"] = format!("{}{flipped}{}", &evidence[..flip_at], &evidence[flip_at + 1..]).into();
    std::fs::write(doctored_dir.join("x.plan.json"), doctored.to_string()).unwrap();
    let err = run_fail(chain(&[
        "audit",
        "--target",
        "healme",
        "--replay",
        doctored_dir.to_str().unwrap(),
        "--program",
        program.to_str().unwrap(),
    ]));
    assert!(err.contains("did not reproduce"), "{err}");

    // Revoked: apply refuses before looking at memory.
    let seq = last["seq"].as_u64().unwrap().to_string();
    run_ok(chain(&["revoke", "--target", "healme", "--seq", &seq]));
    let err = run_fail(chain(&["apply", &plan, "--pid", &target.pid()]));
    assert!(err.contains("revoked"), "{err}");
    let audit: serde_json::Value =
        serde_json::from_str(&run_ok(chain(&["audit", "--target", "healme", "--json"]))).unwrap();
    assert_eq!(audit["entries"].as_array().unwrap().last().unwrap()["revoked"], true);
}

#[test]
fn bad_input_gets_one_line_and_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let err = fails(&["snapshot", "--pid", "2147483646", "-o", &p("x.core")]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!Path::new(&p("x.core")).exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temp file left behind"
    );

    // A real snapshot, then truncated and corrupted copies of it.
    let target = Target::healme(&["--period-ms", "50"]);
    target.wait_for("status=ok");
    let snap = p("ok.core");
    ok(&["snapshot", "--pid", &target.pid(), "-o", &snap]);
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(p("cut.core"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["inspect", &p("cut.core")]);
    assert!(err.contains("not a memzinc snapshot"), "{err}");
    let mut flipped = bytes.clone();
    flipped[4096 * 2] ^= 0xff; // inside the page data (headers take the first page)
    std::fs::write(p("flip.core"), &flipped).unwrap();
    let err = fails(&["inspect", &p("flip.core")]);
    assert!(err.contains("does not match its leaf"), "{err}");
    // A flipped byte in the notes (the metadata, registers, leaves live there, at the end).
    let mut flipped = bytes.clone();
    let near_end = bytes.len() - 200;
    flipped[near_end] ^= 0xff;
    std::fs::write(p("flip-notes.core"), &flipped).unwrap();
    let err = fails(&["inspect", &p("flip-notes.core")]);
    assert!(err.contains("not a memzinc snapshot") && err.contains("seal"), "{err}");
    // An ELF file that is not a core, and a file that is not ELF at all.
    let err = fails(&["inspect", binary("healme").to_str().unwrap()]);
    assert!(
        err.contains("not a memzinc snapshot") && err.contains("not an x86_64 core"),
        "{err}"
    );
    std::fs::write(p("text.core"), b"hello, this is not a core file at all, just text\n").unwrap();
    let err = fails(&["inspect", &p("text.core")]);
    assert!(err.contains("not a memzinc snapshot"), "{err}");

    // The target kept running through all of it.
    target.wait_for("status=ok");

    // An RPC that is down.
    let key = p("k.json");
    ok(&["keygen", "-o", &key]);
    let err = fails(&["policy", "show", "-u", "http://127.0.0.1:9", "-k", &key]);
    assert!(err.contains("not reachable"), "{err}");
    // A missing keypair.
    let err = fails(&["policy", "show", "-u", "http://127.0.0.1:9", "-k", &p("nope.json")]);
    assert!(err.contains("no such file"), "{err}");
}

/// Kill memzinc with SIGKILL at each step of apply: the target keeps running and is either
/// untouched or fully patched, never half (two writes: target_temp and fan_level).
#[test]
fn apply_killed_at_every_step_never_leaves_half_a_patch() {
    let dir = tempfile::tempdir().unwrap();
    let net = localnet(dir.path());
    let auth = ["-u", net.url.as_str(), "-k", net.keypair.to_str().unwrap()];
    let with_auth = |args: &[&str]| -> Vec<String> { args.iter().chain(auth.iter()).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(net.policy_args(&["policy", "init", "--max-bytes", "64", "--max-writes", "8"]));
    let spec = repo_root().join("models/targets/healme.json");

    for (i, point) in memzinc::apply::FAULT_POINTS.iter().enumerate() {
        let target = Target::healme(&["--corrupt-at", "1", "--period-ms", "20"]);
        target.wait_for("OVERHEAT");
        let core = dir.path().join(format!("f{i}.core"));
        let plan = dir.path().join(format!("f{i}.plan.json"));
        let (core, plan) = (core.to_str().unwrap(), plan.to_str().unwrap());
        run(net.witnessed_snapshot(&target.pid(), core, "healme"));
        ok(&["plan", core, "--spec", spec.to_str().unwrap(), "-o", plan]);
        run(with_auth(&["attest", plan]));

        let args = with_auth(&["apply", plan, "--pid", &target.pid()]);
        let out = Command::new(binary("memzinc"))
            .args(&args)
            .env("MEMZINC_ROOT", repo_root())
            .env("MEMZINC_FAULT_POINT", point)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(9),
            "memzinc should have died at {point}: {stderr}"
        );

        // The target runs on (not left stopped): fresh ticks arrive. Skip lines already queued.
        while target.try_line().is_some() {}
        let line = target.wait_for("tick");
        let line = if line.contains("target=") {
            line
        } else {
            target.wait_for("tick")
        };
        let untouched = line.contains("target=9000 fan=7");
        let patched = line.contains("target=21 fan=1");
        assert!(untouched || patched, "half a patch after a kill at {point}: {line}");
        let expect_patched = matches!(*point, "written" | "verified");
        assert_eq!(patched, expect_patched, "after a kill at {point}: {line}");
        eprintln!(
            "killed at {point}: target {}",
            if patched { "fully patched" } else { "untouched" }
        );
    }
}

/// `memzinc watch` started with `args` (JSON events), its events arriving on a channel.
struct Watch {
    child: KillOnDrop,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        use std::io::BufRead;
        let mut child = Command::new(binary("memzinc"))
            .args(["--json", "watch"])
            .args(args)
            .env("MEMZINC_ROOT", repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start memzinc watch");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx
                    .send(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)))
                    .is_err()
                {
                    break;
                }
            }
        });
        Watch {
            child: KillOnDrop(child),
            events,
        }
    }

    /// The next event of kind `kind`; the ones before it are returned too.
    fn until(&self, kind: &str) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut seen = Vec::new();
        loop {
            let event = self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {kind} event; saw {:?}", &seen[seen.len().saturating_sub(5)..]));
            let done = event["event"] == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Ctrl-C; the loop stops cleanly (exit 0) and reports the summary.
    fn interrupt(mut self) -> serde_json::Value {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "watch did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status}");
        let summary = loop {
            let event = self
                .events
                .recv_timeout(Duration::from_secs(5))
                .expect("a summary line");
            if event.get("rounds").is_some() {
                break event;
            }
        };
        assert_eq!(summary["cancelled"], true, "{summary}");
        summary
    }
}

#[test]
fn watch_dry_run_plans_the_repair_touches_nothing_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::healme(&["--corrupt-at", "2", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");
    let spec = repo_root().join("models/targets/healme.json");
    let workdir = dir.path().join("watch");
    let watch = Watch::start(&[
        "--pid",
        &target.pid(),
        "--spec",
        spec.to_str().unwrap(),
        "--every",
        "200ms",
        "--dry-run",
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    let events = watch.until("planned");
    let planned = events.last().unwrap();
    assert_eq!(planned["dry_run"], true);
    assert_eq!(planned["changed_bytes"], 5, "{planned}");
    assert!(Path::new(planned["plan"].as_str().unwrap()).exists());
    // A second round plans again: nothing was applied.
    watch.until("planned");
    let summary = watch.interrupt();
    assert_eq!(summary["repairs_applied"], 0);
    assert!(summary["rounds"].as_u64().unwrap() >= 2);
    target.wait_for("OVERHEAT");
}

#[test]
fn watch_heals_a_corrupted_target_through_the_attestor() {
    let dir = tempfile::tempdir().unwrap();
    let net = localnet(dir.path());
    let chain = ["-u", &net.url, "-k", net.keypair.to_str().unwrap()];
    let mut init = vec![
        "policy",
        "init",
        "--max-bytes",
        "64",
        "--max-writes",
        "8",
        "--witness",
        &net.witness_key,
    ];
    init.extend(chain);
    ok(&init);

    let target = Target::healme(&["--corrupt-at", "3", "--period-ms", "50"]);
    target.wait_for("OVERHEAT");
    let spec = repo_root().join("models/targets/healme.json");
    let workdir = dir.path().join("watch");
    let pid = target.pid();
    let mut args = vec![
        "--pid",
        &pid,
        "--spec",
        spec.to_str().unwrap(),
        "--every",
        "300ms",
        "--max-applies",
        "1",
        "--workdir",
        workdir.to_str().unwrap(),
        "--witness",
        net.witness.to_str().unwrap(),
    ];
    args.extend(chain);
    // The rate limit: with no applies allowed, the repair is planned but not applied.
    let mut limited = args.clone();
    let at = limited.iter().position(|a| *a == "--max-applies").unwrap();
    limited[at + 1] = "0";
    let watch = Watch::start(&limited);
    watch.until("rate_limited");
    assert_eq!(watch.interrupt()["repairs_applied"], 0);
    target.wait_for("OVERHEAT");

    let watch = Watch::start(&args);
    let events = watch.until("applied");
    assert!(events.iter().any(|e| e["event"] == "planned" && e["dry_run"] == false));
    let applied = events.last().unwrap();
    assert_eq!(applied["seq"], 0, "{applied}");
    // The next rounds find it healthy, and the target says so itself.
    watch.until("healthy");
    target.wait_for("status=ok");
    let summary = watch.interrupt();
    assert_eq!(summary["repairs_applied"], 1);
}
