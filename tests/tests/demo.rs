//! `memzinc demo`, the README's main job (scripts/demo.sh), end to end through the built binary:
//! every stage must print its header and its result line, in order, and the target's own output
//! must show it overheating before the snapshot and healed (`status=ok`) after the apply.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memzinc_tests::{binary, program_so, repo_root, KillOnDrop};

/// Each stage of `memzinc_cli::demo::run`: its name and what its result line must contain.
const STAGES: [(&str, &str); 10] = [
    ("localnet", "policy "),
    ("target", "is misbehaving"),
    ("snapshot", "pages, "),
    ("plan", "OPTIMAL"),
    ("refuse", "refused: no attestation on chain matches this plan"),
    ("attest", "seq 0 ("),
    ("apply", "bytes written; target stopped"),
    ("healed", "status=ok again"),
    ("audit", "1 attestation(s), chain verified"),
    ("replay", "1 of 1 decision(s) identical"),
];

/// The demo takes ~10-20 s here; a hung stage must not hang the test command.
const DEADLINE: Duration = Duration::from_secs(300);

/// The result of a stage's closing line `    T ms  result` (T in milliseconds).
fn result_line(line: &str) -> Option<&str> {
    let (ms, result) = line.strip_prefix("    ")?.trim_start().split_once(" ms  ")?;
    ms.parse::<f64>().ok().map(|_| result)
}

/// Runs `memzinc demo`; its exit status, stdout and stderr.
fn demo() -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(binary("memzinc"))
        .args(["demo", "--program"])
        .arg(program_so())
        .env("MEMZINC_ROOT", repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memzinc demo");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let mut child = KillOnDrop(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "memzinc demo still running after {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}

#[test]
fn the_demo_runs_every_stage_and_heals_the_target() {
    let started = Instant::now();
    let (status, stdout, stderr) = demo();
    println!("{stdout}");
    assert!(status.success(), "memzinc demo failed ({status}): {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();

    // Each stage: `[N] name      what`, then (after the target's lines) `    T ms  result`.
    let mut at = 0;
    let mut checked = 0;
    for (i, (name, result)) in STAGES.iter().enumerate() {
        let header = format!("[{}] {name:<9} ", i + 1);
        let start = at
            + lines[at..]
                .iter()
                .position(|l| l.starts_with(&header))
                .unwrap_or_else(|| panic!("no stage line {header:?} after line {at}:\n{stdout}"));
        let done = start
            + 1
            + lines[start + 1..]
                .iter()
                .position(|l| result_line(l).is_some())
                .unwrap_or_else(|| panic!("stage {name} printed no result line:\n{stdout}"));
        assert!(
            !lines[start + 1..done].iter().any(|l| l.starts_with('[')),
            "stage {name} ended without its result line:\n{stdout}"
        );
        let text = result_line(lines[done]).unwrap();
        assert!(text.contains(result), "stage {name}: {text:?} does not say {result:?}");
        // The target misbehaves before the snapshot, and is healthy again after the apply.
        let target_said = |needle: &str| {
            lines[start + 1..done]
                .iter()
                .any(|l| l.starts_with("      healme | ") && l.contains(needle))
        };
        match *name {
            "target" => assert!(target_said("OVERHEAT"), "healme never overheated:\n{stdout}"),
            "plan" => assert!(
                lines[start + 1..done].iter().any(|l| l.starts_with("      write 0x")),
                "the plan writes nothing:\n{stdout}"
            ),
            "healed" => assert!(target_said("status=ok"), "healme did not heal:\n{stdout}"),
            _ => {}
        }
        at = done + 1;
        checked += 1;
    }
    assert!(
        lines[at..].iter().any(|l| l.starts_with("demo complete in ")),
        "no closing line:\n{stdout}"
    );
    println!(
        "{checked} of {} demo stages checked in {:.1} s",
        STAGES.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(checked, STAGES.len());
}
