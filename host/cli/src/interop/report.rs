//! What `memzinc audit` writes besides its text: the decision timeline as a Parquet table, and a
//! self-contained HTML report (memory map picture with the patched addresses, the timeline,
//! the replay verdicts) that a browser opens without a network.

use std::fmt::Write as _;
use std::path::Path;

use memzinc_verifier::plan::Submission;

use memzinc::base::{Result, Sha2};

use crate::attest::{AuditReport, ReplayReport};

/// Writes the audit's timeline as the attestations table (`super::table_defs::ATTESTATIONS`) at
/// `path` (atomically).
pub fn write_timeline_parquet(report: &AuditReport, path: &Path) -> Result<()> {
    let rows = super::export::attestation_rows(report);
    super::table_defs::ATTESTATIONS.write(path, rows.into_iter().map(Ok))?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The memory map of one decision as SVG: every region of its plan as a bar (address order,
/// one lane each, width by size on a log scale so small regions stay visible) and a red tick
/// at each patched address.
fn memory_map_svg(submission: &Submission) -> String {
    let plan = &submission.plan;
    let lane = 26.0;
    let width = 900.0;
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' class='memmap' width='{width}' height='{}'>",
        lane * plan.regions.len().max(1) as f64 + 10.0
    );
    for (i, r) in plan.regions.iter().enumerate() {
        let y = 5.0 + lane * i as f64;
        let len = (r.end - r.start) as f64;
        let bar = (200.0 + 60.0 * len.log2()).min(width - 260.0);
        let perms = format!(
            "{}{}{}",
            if r.readable() { 'r' } else { '-' },
            if r.writable() { 'w' } else { '-' },
            if r.executable() { 'x' } else { '-' }
        );
        let _ = write!(
            svg,
            "<rect class='region' x='250' y='{y}' width='{bar:.0}' height='18' fill='{}'/>\
             <text x='0' y='{:.0}' font-size='12' font-family='monospace'>{:#x}-{:#x} {perms}</text>",
            if r.executable() { "#c9b" } else { "#9bd" },
            y + 13.0,
            r.start,
            r.end
        );
        for w in plan.writes.iter().filter(|w| r.start <= w.address && w.address < r.end) {
            let x = 250.0 + bar * (w.address - r.start) as f64 / len;
            let _ = write!(
                svg,
                "<rect class='patch' x='{:.1}' y='{}' width='3' height='22' fill='#d22'><title>{:#x}: {} -> {}</title></rect>",
                x - 1.0,
                y - 2.0,
                w.address,
                hex::encode(&w.old),
                hex::encode(&w.new)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A self-contained HTML report of an audit (and its replay, with the plan files' maps).
pub fn html(report: &AuditReport, replay: Option<&ReplayReport>, plans: &[Submission], target: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset='utf-8'><title>memzinc audit: {t}</title>\
         <style>body{{font-family:sans-serif;margin:24px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;font-family:monospace;font-size:12px}}\
         .ok{{color:#080}}.bad{{color:#c00}}</style></head><body>\
         <h1>memzinc audit of <code>{t}</code></h1>\
         <p id='verdict' class='{cls}'>{n} attestation(s); every link verified; head <code>{head}</code></p>\
         <p>policy <code>{policy}</code>, chain <code>{chain}</code></p>",
        t = esc(target),
        cls = if report.verified { "ok" } else { "bad" },
        n = report.entries.len(),
        head = esc(&report.head_hash),
        policy = esc(&report.policy),
        chain = esc(&report.target_chain),
    );
    if let Some(r) = replay {
        let _ = write!(
            h,
            "<p id='replay' class='{}'>deployed program sha256 <code>{}</code> {}; {} of {} replayed decision(s) identical</p>",
            if r.verified(false) { "ok" } else { "bad" },
            esc(&r.program.deployed_sha256),
            if r.program.matches_local_build { "= the local reproducible build" } else { "DIFFERS from the local build" },
            r.identical,
            r.replayed
        );
    }
    h.push_str(
        "<h2>Decision timeline</h2><table id='timeline'><tr><th>seq</th><th>slot</th><th>plan</th><th>writes</th>\
         <th>bytes</th><th>signer</th><th>policy revision</th><th>witnesses</th><th>receipt</th><th>revoked</th><th>replay</th></tr>",
    );
    for e in &report.entries {
        let verdict = replay
            .and_then(|r| r.decisions.iter().find(|d| d.seq == e.seq))
            .map(|d| d.verdict.clone())
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            h,
            "<tr class='decision'><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            e.slot,
            esc(&e.plan_hash[..16]),
            e.writes,
            e.bytes,
            esc(&e.signer),
            e.policy_revision,
            esc(&e.policy_hash[..16]),
            esc(&e
                .witnesses
                .iter()
                .map(|w| format!("{} @ {}", w.witness, w.slot))
                .collect::<Vec<_>>()
                .join(", ")),
            e.receipt.as_ref().map(|r| format!("{} @ {}", r.outcome, r.slot)).unwrap_or_else(|| "-".into()),
            if e.revoked { "REVOKED" } else { "" },
            esc(&verdict)
        );
    }
    h.push_str("</table><h2>Memory maps of the patches</h2>");
    for e in &report.entries {
        if let Some(s) = plans
            .iter()
            .find(|s| hex::encode(s.plan.plan_hash::<Sha2>()) == e.plan_hash)
        {
            let _ = write!(
                h,
                "<h3>#{} plan {}</h3>{}",
                e.seq,
                esc(&e.plan_hash[..16]),
                memory_map_svg(s)
            );
        }
    }
    h.push_str("</body></html>\n");
    h
}
