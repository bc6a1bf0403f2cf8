//! `memzinc inspect`: a snapshot's integrity checked and summarised; typed globals.

use std::path::PathBuf;

use anyhow::Result;
use memzinc::describe::Snapshot;
use memzinc::introspect::DebugTypes;

use super::{print_json, Global};

#[derive(clap::Args)]
pub struct Args {
    snapshot: PathBuf,
    /// Print this global's fields and values, typed by the binary's DWARF (repeatable).
    #[arg(long = "var")]
    vars: Vec<String>,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    if memzinc::checkpoint::is_tree(&a.snapshot) {
        // A tree's checkpoint: its processes; `inspect DIR/PID.core` shows each one.
        let members = memzinc::checkpoint::tree_members(&a.snapshot)?;
        if g.json {
            return print_json(&serde_json::json!({ "processes": members }));
        }
        outln!(
            "{}: a process tree of {} processes",
            a.snapshot.display(),
            members.len()
        );
        for m in &members {
            match m.zombie {
                Some(status) => outln!("  pid {} (parent {}): a zombie, wait status {status:#x}", m.pid, m.ppid),
                None => outln!(
                    "  pid {} (parent {}, group {}, session {}): {} root {}",
                    m.pid,
                    m.ppid,
                    m.pgid,
                    m.sid,
                    m.core,
                    m.snapshot_root
                ),
            }
        }
        return Ok(());
    }
    let snap = Snapshot::open(&a.snapshot)?;
    snap.verify_pages()?;
    let values = if a.vars.is_empty() {
        Vec::new()
    } else {
        let types = DebugTypes::for_snapshot(&snap)?;
        a.vars
            .iter()
            .map(|v| types.read_object(&snap, v))
            .collect::<memzinc::base::Result<Vec<_>>>()?
    };
    let parent = snap
        .parent()
        .map(|p| (p.path.display().to_string(), p.meta.root.clone()));
    if g.json {
        let mut value = serde_json::to_value(&snap.meta)?;
        value["stored_pages"] = snap.stored_pages().into();
        value["parent"] = serde_json::to_value(
            parent
                .as_ref()
                .map(|(path, root)| serde_json::json!({ "path": path, "root": root })),
        )?;
        value["values"] = serde_json::to_value(&values)?;
        value["restore_notes"] = serde_json::to_value(memzinc::checkpoint::restore_notes(&snap.meta))?;
        print_json(&value)?;
    } else {
        let m = &snap.meta;
        outln!("{}: pid {} ({}) {}", a.snapshot.display(), m.pid, m.comm, m.exe);
        outln!("cmdline {:?}", m.cmdline);
        outln!("root {}  pages {}  threads {}", m.root, m.page_count, m.threads.len());
        if let Some((path, root)) = &parent {
            outln!(
                "incremental: {} of its pages stored here, the others in its parent {path} (root {root}); `memzinc merge` writes the full core",
                snap.stored_pages()
            );
        }
        for t in &m.threads {
            outln!(
                "  thread {} ({}) rip {:#x} rsp {:#x}; fp {} B, xstate {} B",
                t.tid,
                t.name,
                t.regs.rip,
                t.regs.rsp,
                t.fpregs.len(),
                t.xstate.len()
            );
        }
        for f in &m.fds {
            outln!("  fd {} {} flags {:#o} pos {}", f.fd, f.path, f.flags, f.pos);
        }
        if let Some(c) = &m.checkpoint {
            let pending = c.shared_pending.len() + c.threads.iter().map(|t| t.pending.len()).sum::<usize>();
            let ids = |v: &[u32]| match v {
                [] => "(not kept)".to_string(),
                v => v.iter().map(u32::to_string).collect::<Vec<_>>().join("/"),
            };
            let main = c.threads.first();
            outln!(
                "  checkpoint: process {}; cwd {}; {} signal handler(s), {} pending signal(s); uid {} gid {}",
                if c.killed { "killed" } else { "left running" },
                c.cwd,
                c.handlers.len(),
                pending,
                main.map_or(String::new(), |t| ids(&t.uids)),
                main.map_or(String::new(), |t| ids(&t.gids)),
            );
            outln!(
                "  checkpoint: {} eventfd(s), {} timerfd(s), {} signalfd(s), {} pipe(s), {} epoll(s), {} POSIX timer(s), {} resource limits",
                c.eventfds.len(),
                c.timerfds.len(),
                c.signalfds.len(),
                c.pipes.len(),
                c.epolls.len(),
                c.posix_timers.len(),
                c.rlimits.len(),
            );
        }
        for note in memzinc::checkpoint::restore_notes(m) {
            outln!("  restore: {note}");
        }
        for r in &m.regions {
            outln!(
                "  {:016x}-{:016x} {} {:>8} KiB {}{}{}",
                r.map.start,
                r.map.end,
                r.map.perms,
                (r.map.end - r.map.start) / 1024,
                r.map.path,
                if r.captured { "" } else { "  (not captured)" },
                if r.unreadable_pages.is_empty() {
                    String::new()
                } else {
                    format!("  ({} page(s) unreadable)", r.unreadable_pages.len())
                }
            );
        }
        outln!("{} symbols", m.symbols.len());
        for v in &values {
            outln!("{}: {} at {:#x} ({} bytes)", v.symbol, v.type_name, v.address, v.size);
            for f in &v.fields {
                outln!("  {:<20} {:<8} = {}", f.name, f.type_name, f.value);
            }
        }
    }
    Ok(())
}
