//! `memzinc`: the command line. Parses arguments, hands each command to its file under
//! `commands/` (thin glue over the `memzinc` core and the `memzinc_cli` libraries), and prints
//! any error in one line with a non-zero exit status.

use clap::{Parser, Subcommand};

/// `println!` for a command's output (`out!`: `print!`). A reader that stops reading
/// (`memzinc inspect CORE | head`) ends the process quietly, as it ends `cat` (`println!`
/// panicked, with a backtrace); any other failure to write is one line and exit status 1.
macro_rules! outln {
    () => { $crate::write_output(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::write_output(format_args!($($arg)*), true) };
}
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_output(format_args!($($arg)*), false) };
}

fn write_output(text: std::fmt::Arguments, newline: bool) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    output_written(
        stdout
            .write_fmt(text)
            .and_then(|()| if newline { stdout.write_all(b"\n") } else { Ok(()) }),
    );
}

/// What [`outln!`] does with the outcome of writing a command's output.
fn output_written(written: std::io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }
}

mod commands;

use commands::Global;

#[derive(Parser)]
#[command(
    name = "memzinc",
    version,
    about = "Snapshot a live process, reason about it with MiniZinc, patch it only as an on-chain attestor recorded."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Freeze a process and write a snapshot: one ELF core file (gdb opens it) with registers,
    /// map, resources, symbols, pages and their Merkle root.
    Snapshot(commands::snapshot::Args),
    /// The self-modification loop: every period snapshot the target, check its invariants (a
    /// spec, its model file's rules, its exported heap), and on a violation plan, attest and
    /// apply the repair. Ctrl-C stops it.
    Watch(commands::watch::Args),
    /// Track which pages a process writes (userfaultfd write-protect inside the target), so
    /// `snapshot --since PREV` reads only those. The tracking stays in the target; memzinc exits.
    Track(commands::track::Args),
    /// Write a snapshot's tables as Parquet (regions, pages, symbols, types, notes, violations;
    /// plans and attestations when given); `import` rebuilds the core from them.
    Export(commands::export::Args),
    /// Rebuild a snapshot core from the tables `export` (or `hub export`/`hub pull`) wrote;
    /// the core is byte-identical to the exported one and checked before it is written.
    Import(commands::import::Args),
    /// Hugging Face datasets: a dataset repository of a snapshot's tables, and the Hub's HTTP API.
    Hub(commands::hub::Args),
    /// Checkpoint a process: a snapshot core plus what `restore` needs (mm fields, rseq,
    /// signal masks, cwd). The process keeps running unless --kill.
    Checkpoint(commands::checkpoint::Args),
    /// Recreate a checkpointed process with its PID, memory, registers and files, and leave
    /// it running detached. With --apply, an attested plan's writes are made to the image
    /// before it resumes.
    Restore(commands::restore::Args),
    /// Summarise a snapshot core file and check its integrity.
    Inspect(commands::inspect::Args),
    /// Write the full core of an incremental snapshot (`snapshot --since`), its unchanged pages
    /// taken from its parents; checked page by page before it takes its name.
    Merge(commands::merge::Args),
    /// Find violated invariants and solve for the smallest repair with MiniZinc: a target
    /// spec's bounds and orderings (--spec), or the rules of the target's model file (--rules;
    /// by default models/targets/<executable name>.mzn when there is one).
    Plan(commands::plan::Args),
    /// Suggest the field order of each struct that wastes least space (pahole --reorganize
    /// style), from DWARF, decided by MiniZinc (models/layout.mzn, Gecode).
    Layout(commands::layout::Args),
    /// Check a snapshot's invariants: pointers land in readable memory, aligned; bools are 0/1
    /// and enums hold an enumerator (from the binary's DWARF); no W+X or executable anonymous
    /// memory; the bounds and orderings of target specs. Exits 2 when something is violated.
    Check(commands::check::Args),
    /// Manage the signer's policy on chain.
    Policy(commands::policy::PolicyCommand),
    /// Record a plan on chain (uploaded with its evidence; the program re-checks it).
    Attest(commands::attest_plan::Args),
    /// Apply an attested plan to a live process (compare-and-swap, rollback on failure), then
    /// record a receipt on chain.
    Apply(commands::apply::Args),
    /// Revoke an attestation (policy authority only): the plan must then not be applied.
    Revoke(commands::revoke::Args),
    /// Walk a target's attestation history and verify every link.
    Audit(commands::audit::Args),
    /// Run a local Solana network (surfpool) with the attestor deployed, until Ctrl-C.
    Localnet(commands::localnet::Args),
    /// Write a new keypair file.
    Keygen(commands::keygen::Args),
    /// The whole story on an embedded localnet: corrupt, snapshot, plan, attest, apply, audit.
    Demo(commands::demo::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Snapshot(a) => commands::snapshot::run(a, g),
        Command::Watch(a) => commands::watch::run(a, g),
        Command::Track(a) => commands::track::run(a, g),
        Command::Export(a) => commands::export::run(a, g),
        Command::Import(a) => commands::import::run(a, g),
        Command::Hub(a) => commands::hub::run(a, g),
        Command::Checkpoint(a) => commands::checkpoint::run(a, g),
        Command::Restore(a) => commands::restore::run(a, g),
        Command::Inspect(a) => commands::inspect::run(a, g),
        Command::Merge(a) => commands::merge::run(a, g),
        Command::Plan(a) => commands::plan::run(a, g),
        Command::Layout(a) => commands::layout::run(a, g),
        Command::Check(a) => commands::check::run(a, g),
        Command::Policy(a) => commands::policy::run(a, g),
        Command::Attest(a) => commands::attest_plan::run(a, g),
        Command::Apply(a) => commands::apply::run(a, g),
        Command::Revoke(a) => commands::revoke::run(a, g),
        Command::Audit(a) => commands::audit::run(a, g),
        Command::Localnet(a) => commands::localnet::run(a, g),
        Command::Keygen(a) => commands::keygen::run(a, g),
        Command::Demo(a) => commands::demo::run(a, g),
    }
}

/// The error and its causes on one line, joined by ": ". A cause the message already ends with
/// (errors that print their source, as `path: source` does) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MEMZINC_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        if let Some(commands::Exit(code)) = e.downcast_ref::<commands::Exit>() {
            std::process::exit(*code);
        }
        eprintln!("error: {}", one_line(&e));
        // 130 = interrupted, as a shell reports Ctrl-C.
        let cancelled = matches!(e.downcast_ref::<memzinc::Error>(), Some(memzinc::Error::Cancelled(_)));
        std::process::exit(if cancelled { 130 } else { 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn an_error_that_prints_its_source_does_not_print_it_twice() {
        let e = anyhow::Error::from(memzinc::Error::io("x.core", std::io::Error::from_raw_os_error(28)));
        assert_eq!(one_line(&e), "x.core: No space left on device (os error 28)");
        let e = e.context("snapshot of pid 7");
        assert_eq!(
            one_line(&e),
            "snapshot of pid 7: x.core: No space left on device (os error 28)"
        );
        let e = anyhow::anyhow!("two\nlines").context("outer");
        assert_eq!(one_line(&e), "outer: two lines");
    }
}
