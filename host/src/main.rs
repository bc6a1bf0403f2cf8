//! `memzinc`: the CLI. Thin glue over the `memzinc` library; errors are printed in one line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use memzinc::chain::{self, Client};
use memzinc::reason::{PlanFile, SolverOptions, TargetSpec};
use memzinc::snapshot::Snapshot;
use memzinc::solver::Cancel;
use memzinc::{apply, demo, localnet, snapshot, Sha2};
use memzinc_verifier::accounts::{PolicyConfig, MAX_SIGNERS};
use memzinc_verifier::wire::{PolicyRules, SymbolRules};
use serde::Serialize;
use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

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

#[derive(Args, Clone)]
struct Global {
    /// JSON-RPC URL or moniker (localhost, devnet, testnet, mainnet-beta); default from the Solana CLI config.
    #[arg(short = 'u', long = "url", global = true)]
    url: Option<String>,
    /// Keypair file that signs and pays; default from the Solana CLI config.
    #[arg(short = 'k', long = "keypair", global = true)]
    keypair: Option<PathBuf>,
    /// Solana CLI config file.
    #[arg(short = 'C', long = "config", global = true)]
    config: Option<PathBuf>,
    /// The attestor program's address.
    #[arg(long, global = true, default_value = chain::ATTESTOR_PROGRAM_ID)]
    program_id: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Freeze a process and write a snapshot: one ELF core file (gdb opens it) with registers,
    /// map, resources, symbols, pages and their Merkle root.
    Snapshot {
        #[arg(long)]
        pid: i32,
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the core's tables (regions, pages, symbols, types, notes) here as Parquet.
        #[arg(long)]
        parquet: Option<PathBuf>,
        /// Also write the MiniZinc facts of the `--spec` object (models/schema.md) to this file:
        /// `minizinc models/repair.mzn FILE` runs on it unchanged.
        #[arg(long, requires = "spec")]
        dzn: Option<PathBuf>,
        /// Target description for `--dzn`, e.g. models/targets/healme.json.
        #[arg(long, requires = "dzn")]
        spec: Option<PathBuf>,
        /// The previous snapshot of this (tracked) process: read only the pages written since
        /// it, take the others from it. Same core, same root as a full snapshot.
        #[arg(long)]
        since: Option<PathBuf>,
    },
    /// The self-modification loop: every period snapshot the target, check the spec's
    /// invariants, and on a violation plan, attest and apply the repair. Ctrl-C stops it.
    Watch {
        #[arg(long)]
        pid: i32,
        /// Target description (layout and invariants), e.g. models/targets/healme.json.
        #[arg(long)]
        spec: PathBuf,
        /// Period: 5s, 500ms, 2m.
        #[arg(long, default_value = "5s", value_parser = memzinc::watch::parse_duration)]
        every: Duration,
        /// Plan repairs but never attest or apply them.
        #[arg(long)]
        dry_run: bool,
        /// At most this many repairs applied per `--per` window.
        #[arg(long, default_value_t = 3)]
        max_applies: usize,
        #[arg(long, default_value = "1h", value_parser = memzinc::watch::parse_duration)]
        per: Duration,
        /// Stop after this many rounds (default: until Ctrl-C).
        #[arg(long)]
        rounds: Option<u64>,
        /// Where each round's snapshot, facts and plan go.
        #[arg(long, default_value = "memzinc-watch")]
        workdir: PathBuf,
        /// Solver backend, as for `plan`.
        #[arg(long, default_value = "cbc")]
        solver: String,
        /// Wall-clock limit per solve, seconds.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        #[arg(long)]
        authority: Option<String>,
    },
    /// Track which pages a process writes (userfaultfd write-protect inside the target), so
    /// `snapshot --since PREV` reads only those. The tracking stays in the target; memzinc exits.
    Track {
        #[arg(long)]
        pid: i32,
    },
    /// Write a snapshot's tables as Parquet (regions, pages, symbols, types, notes, violations;
    /// plans and attestations when given); `import` rebuilds the core from them.
    Export {
        /// The directory to write `<table>.parquet` files into.
        #[arg(long)]
        parquet: PathBuf,
        #[command(flatten)]
        what: ExportArgs,
    },
    /// Rebuild a snapshot core from the tables `export` (or `hub export`/`hub pull`) wrote;
    /// the core is byte-identical to the exported one and checked before it is written.
    Import {
        dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Hugging Face datasets: a dataset repository of a snapshot's tables, and the Hub's HTTP API.
    Hub {
        #[command(subcommand)]
        action: HubAction,
    },
    /// Checkpoint a process: a snapshot core plus what `restore` needs (mm fields, rseq,
    /// signal masks, cwd). The process keeps running unless --kill.
    Checkpoint {
        #[arg(long)]
        pid: i32,
        #[arg(short, long)]
        output: PathBuf,
        /// Kill the process (while still frozen) once the checkpoint is on disk.
        #[arg(long, conflicts_with = "leave_running")]
        kill: bool,
        /// Resume the process after the checkpoint (the default).
        #[arg(long)]
        leave_running: bool,
    },
    /// Recreate a checkpointed process with its PID, memory, registers and files, and leave
    /// it running detached. With --apply, an attested plan's writes are made to the image
    /// before it resumes.
    Restore {
        core: PathBuf,
        /// A plan file for this core's snapshot root; it must be attested on chain.
        #[arg(long)]
        apply: Option<PathBuf>,
        #[arg(long)]
        authority: Option<String>,
    },
    /// Summarise a snapshot core file and check its integrity.
    Inspect {
        snapshot: PathBuf,
        /// Print this global's fields and values, typed by the binary's DWARF (repeatable).
        #[arg(long = "var")]
        vars: Vec<String>,
    },
    /// Find violated invariants and solve for the smallest repair with MiniZinc: a target
    /// spec's bounds and orderings (--spec), or the rules of the target's model file (--rules;
    /// by default models/targets/<executable name>.mzn when there is one).
    Plan {
        snapshot: PathBuf,
        /// Target description (layout and invariants), e.g. models/targets/healme.json.
        #[arg(long, conflicts_with = "rules")]
        spec: Option<PathBuf>,
        /// The target's model file of rules over the generated facts (models/schema.md).
        #[arg(long, conflicts_with = "heap")]
        rules: Option<PathBuf>,
        /// Repair the reference-counted heap the target exports (MEMZINC_HEAP_* globals) with
        /// the aggregated model (models/heap_repair.mzn); the default when there is no spec and
        /// no model file but such a heap.
        #[arg(long, conflicts_with = "spec")]
        heap: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Solver backend: cbc (linear FlatZinc -> LP -> cbc; proves repairs of 100k pointers
        /// optimal, which Gecode cannot), gecode, pumpkin, or wasm-highs|wasm-cbc|wasm-chuffed|
        /// wasm-gecode (MiniZinc 2.10 in WebAssembly). Every answer is checked against the FlatZinc.
        #[arg(long, default_value = "cbc")]
        solver: String,
        /// Wall-clock limit for the solver, seconds (enforced by memzinc, flattening included).
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// The repair model.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Suggest the field order of each struct that wastes least space (pahole --reorganize
    /// style), from DWARF, decided by MiniZinc (models/layout.mzn, Gecode).
    Layout {
        /// A snapshot (its binary's DWARF is read) or an ELF binary built with -g.
        target: PathBuf,
        /// Only this struct (repeatable).
        #[arg(long = "struct")]
        structs: Vec<String>,
        /// Member names that must share one 64-byte cache line, comma-separated.
        #[arg(long, value_delimiter = ',')]
        hot: Vec<String>,
        /// Also list structs that are already as small as they can be.
        #[arg(long)]
        all: bool,
        /// Wall-clock limit per distinct struct shape, seconds.
        #[arg(long, default_value_t = 10)]
        time_limit: u64,
    },
    /// Check a snapshot's invariants: pointers land in readable memory, aligned; bools are 0/1
    /// and enums hold an enumerator (from the binary's DWARF); no W+X or executable anonymous
    /// memory; the bounds and orderings of target specs. Exits 2 when something is violated.
    Check {
        snapshot: PathBuf,
        /// A target spec whose bounds and orderings to check too (repeatable).
        #[arg(long)]
        spec: Vec<PathBuf>,
        /// Read the DWARF from this file instead of the path the snapshot records.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The target's model file of rules (default: models/targets/<executable name>.mzn
        /// when it exists).
        #[arg(long, conflicts_with = "no_rules")]
        rules: Option<PathBuf>,
        /// Do not judge the target's model file.
        #[arg(long)]
        no_rules: bool,
    },
    /// Manage the signer's policy on chain.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Record a plan on chain (uploaded with its evidence; the program re-checks it).
    Attest {
        plan: PathBuf,
        /// The policy's authority, when the keypair is one of its host signers.
        #[arg(long)]
        authority: Option<String>,
        /// The plan's snapshot: when the policy has symbol rules, the evidence is cut again
        /// with proofs of the symbols they name.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
    /// Apply an attested plan to a live process (compare-and-swap, rollback on failure), then
    /// record a receipt on chain.
    Apply {
        plan: PathBuf,
        #[arg(long)]
        pid: i32,
        #[arg(long)]
        authority: Option<String>,
    },
    /// Revoke an attestation (policy authority only): the plan must then not be applied.
    Revoke {
        #[arg(long)]
        target: String,
        #[arg(long)]
        seq: u64,
    },
    /// Walk a target's attestation history and verify every link.
    Audit {
        /// Target name as in the plan (e.g. healme).
        #[arg(long)]
        target: String,
        #[arg(long)]
        authority: Option<String>,
        /// Replay every decision whose plan file (`*.plan.json`) is in this directory: the
        /// deployed program's bytes run again in the sBPF VM and must produce the same record.
        #[arg(long)]
        replay: Option<PathBuf>,
        /// The local reproducible build to compare the deployed program with.
        #[arg(long)]
        program: Option<PathBuf>,
        /// Write the decision timeline as a Parquet table.
        #[arg(long)]
        parquet: Option<PathBuf>,
        /// Write an HTML report (memory maps of the patches, timeline, replay verdicts).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Run a local Solana network (surfpool) with the attestor deployed, until Ctrl-C.
    Localnet {
        /// Write {"rpc_url","ws_url","program_id"} here once ready.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// The program to deploy.
        #[arg(long)]
        program: Option<PathBuf>,
    },
    /// Write a new keypair file.
    Keygen {
        #[arg(short, long)]
        output: PathBuf,
    },
    /// The whole story on an embedded localnet: corrupt, snapshot, plan, attest, apply, audit.
    Demo {
        /// The program to deploy.
        #[arg(long)]
        program: Option<PathBuf>,
    },
}

/// What `export` and `hub export` put besides the snapshot's own tables.
#[derive(Args, Clone)]
struct ExportArgs {
    /// The snapshot core file.
    core: PathBuf,
    /// A plan file whose writes go into the plans table (repeatable).
    #[arg(long = "plan")]
    plans: Vec<PathBuf>,
    /// The output of `memzinc audit --json`: its links go into the attestations table.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// A target spec `check` judges too for the violations table (repeatable).
    #[arg(long)]
    spec: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum HubAction {
    /// Write a dataset repository: `data/<table>/<table>.parquet` and a dataset card
    /// (`README.md`) whose YAML `configs` name each table.
    Export {
        dir: PathBuf,
        #[command(flatten)]
        what: ExportArgs,
    },
    /// Upload a dataset repository directory in one commit (token from HF_TOKEN).
    Push {
        dir: PathBuf,
        /// `namespace/name` of the dataset repository.
        #[arg(long)]
        repo: String,
        #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
        endpoint: String,
        #[arg(long, default_value = "main")]
        revision: String,
    },
    /// Download every file of a dataset repository into a directory (token from HF_TOKEN).
    Pull {
        #[arg(long)]
        repo: String,
        dir: PathBuf,
        #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
        endpoint: String,
        #[arg(long, default_value = "main")]
        revision: String,
    },
}

impl ExportArgs {
    fn export(
        &self,
        dir: &std::path::Path,
        layout: memzinc::interop::Layout,
    ) -> Result<memzinc::interop::ExportReport> {
        let snap = Snapshot::open(&self.core)?;
        let specs = self
            .spec
            .iter()
            .map(|p| TargetSpec::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        let violations = Some(memzinc::check::check_snapshot(&snap, &specs, None)?);
        let plans = self
            .plans
            .iter()
            .map(|p| Ok(PlanFile::load(p)?.0))
            .collect::<Result<Vec<_>>>()?;
        let audit = match &self.audit {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
                Some(serde_json::from_str(&text).map_err(|e| memzinc::Error::Corrupt {
                    path: p.clone(),
                    kind: "audit report (`memzinc audit --json`)",
                    why: e.to_string(),
                })?)
            }
        };
        let extras = memzinc::interop::Extras {
            violations,
            plans,
            audit,
        };
        Ok(memzinc::interop::export(&snap, dir, layout, &extras)?)
    }
}

fn print_export(report: &memzinc::interop::ExportReport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    for (table, rows) in &report.tables {
        println!("{table}: {rows} rows");
    }
    for record in &report.records {
        println!("{record}: protobuf");
    }
    if let Some(why) = &report.types_unavailable {
        println!("types table empty: {why}");
    }
    println!("-> {} (root {})", report.dir.display(), report.root);
    Ok(())
}

#[derive(Args, Clone)]
struct PolicyArgs {
    /// Allow writes into executable regions (W^X off).
    #[arg(long)]
    allow_wx: bool,
    #[arg(long, default_value_t = 256)]
    max_bytes: u32,
    #[arg(long, default_value_t = 16)]
    max_writes: u32,
    /// A host signer allowed to attest and record receipts besides the authority (up to 4).
    #[arg(long = "signer")]
    signers: Vec<String>,
    /// SHA-256 of the MiniZinc models plans are made with; default: the hash of models/*.mzn.
    #[arg(long)]
    model_hash: Option<String>,
    /// SHA-256 of the verifier build; default: the hash of the attestor program file.
    #[arg(long)]
    verifier_hash: Option<String>,
    /// Allow writes only in these ranges, relative to a symbol: MODULE:SYMBOL+START..END
    /// (with --field/--pointer: at most 8 rules; with any, writes outside all are refused).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// A typed field whose new value must be in bounds: MODULE:SYMBOL+OFFSET:TYPE=MIN..MAX
    /// (TYPE u8, u16, u32, u64, i8, i16, i32, i64); also an allowed range.
    #[arg(long = "field")]
    fields: Vec<String>,
    /// A pointer field whose new value must point into a readable region the plan proves:
    /// MODULE:SYMBOL+OFFSET; also an allowed range.
    #[arg(long = "pointer")]
    pointers: Vec<String>,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Create the signer's policy.
    Init(PolicyArgs),
    /// Replace the policy's rules, signers and hashes (rotating signers is an update).
    Update(PolicyArgs),
    /// Show the signer's policy.
    Show,
    /// Close the policy and take its rent back (attestations stay).
    Close,
}

fn parse_hash(hex_str: &str, what: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).map_err(|e| anyhow::anyhow!("{what} {hex_str:?}: {e}"))?;
    Ok(out)
}

impl PolicyArgs {
    fn config(&self) -> Result<PolicyConfig> {
        let rules = PolicyRules {
            wx: !self.allow_wx,
            max_bytes: self.max_bytes,
            max_writes: self.max_writes,
        };
        rules.validate()?;
        if self.signers.len() > MAX_SIGNERS {
            anyhow::bail!("at most {MAX_SIGNERS} --signer");
        }
        let mut signers = [[0u8; 32]; MAX_SIGNERS];
        for (slot, s) in signers.iter_mut().zip(&self.signers) {
            let key: Pubkey = s
                .parse()
                .map_err(|_| anyhow::anyhow!("--signer {s} is not a valid address"))?;
            *slot = key.to_bytes();
        }
        let model_hash = match &self.model_hash {
            Some(h) => parse_hash(h, "--model-hash")?,
            None => memzinc::reason::models_hash(&memzinc::repo_root().join("models"))?,
        };
        let verifier_hash = match &self.verifier_hash {
            Some(h) => parse_hash(h, "--verifier-hash")?,
            None => memzinc::reason::file_hash(&default_program())?,
        };
        let symbol_rules = self
            .allow
            .iter()
            .map(|s| memzinc::policy::parse_allow(s))
            .chain(self.fields.iter().map(|s| memzinc::policy::parse_field(s)))
            .chain(self.pointers.iter().map(|s| memzinc::policy::parse_pointer(s)))
            .collect::<memzinc::Result<Vec<_>>>()?;
        Ok(PolicyConfig {
            rules,
            signer_count: self.signers.len() as u8,
            signers,
            model_hash,
            verifier_hash,
            symbol_rules: SymbolRules::from_rules(&symbol_rules)?,
        })
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

impl Global {
    fn cli_config(&self) -> chain::CliConfig {
        self.config
            .clone()
            .or_else(chain::default_cli_config_path)
            .map(|p| chain::read_cli_config(&p))
            .unwrap_or_default()
    }

    fn keypair(&self) -> Result<Keypair> {
        let path = self
            .keypair
            .clone()
            .or_else(|| self.cli_config().keypair_path)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/solana/id.json")))
            .context("no keypair: pass -k FILE")?;
        Ok(chain::read_keypair(&path)?)
    }

    fn client(&self) -> Result<Client> {
        let url = self
            .url
            .clone()
            .or_else(|| self.cli_config().json_rpc_url)
            .unwrap_or_else(|| "localhost".into());
        let program_id = self
            .program_id
            .parse()
            .map_err(|_| anyhow::anyhow!("--program-id {} is not a valid address", self.program_id))?;
        Ok(Client::connect(&url, self.keypair()?, program_id)?)
    }
}

fn authority_or_self(client: &Client, authority: Option<&str>) -> Result<Pubkey> {
    match authority {
        Some(a) => a
            .parse()
            .map_err(|_| anyhow::anyhow!("--authority {a} is not a valid address")),
        None => Ok(client.authority()),
    }
}

fn default_program() -> PathBuf {
    std::env::var_os("MEMZINC_PROGRAM_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|| memzinc::repo_root().join("target/deploy/attestor.so"))
}

fn progress_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    })
}

/// One line of solver statistics.
fn stats_line(s: &memzinc::solver::Stats) -> String {
    let part = |name: &str, v: Option<u64>, unit: &str| v.map(|v| format!(" {name} {v}{unit}")).unwrap_or_default();
    format!(
        "solver {}: total {} ms;{}{}{}{}{}{}{}",
        s.backend,
        s.total_ms,
        part("flatten", s.flatten_ms, " ms"),
        part("solve", s.solve_ms, " ms"),
        part("check", s.check_ms, " ms"),
        part("variables", s.variables, ""),
        part("constraints", s.constraints, ""),
        part("nodes", s.nodes, ""),
        part("peak RSS", s.peak_rss_kb.map(|kb| kb / 1024), " MiB"),
    )
}

/// DWARF types of a snapshot's binary (at the snapshot's addresses) or of an ELF file.
fn debug_types_of(target: &std::path::Path) -> Result<memzinc::types::DebugTypes> {
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(
        &mut std::fs::File::open(target).with_context(|| target.display().to_string())?,
        &mut magic,
    )
    .with_context(|| target.display().to_string())?;
    anyhow::ensure!(&magic == b"\x7fELF", "{}: not an ELF file", target.display());
    // A memzinc snapshot is an ELF core with a MEMZINC seal; anything else is a binary.
    match Snapshot::open(target) {
        Ok(snap) => Ok(memzinc::types::DebugTypes::for_snapshot(&snap)?),
        Err(memzinc::Error::Corrupt { .. }) => Ok(memzinc::types::DebugTypes::load(target)?),
        Err(e) => Err(e.into()),
    }
}

fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Snapshot {
            pid,
            output,
            dzn,
            spec,
            since,
            parquet,
        } => {
            // A bad spec or previous snapshot is refused before the target is frozen.
            let spec = spec.map(|s| TargetSpec::load(&s)).transpose()?;
            let since = since.map(|p| Snapshot::open(&p)).transpose()?;
            let bar = progress_bar(g.json);
            let report = snapshot::take_since(pid, since.as_ref(), &output, bar.as_ref())?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if let (Some(dzn), Some(spec)) = (&dzn, &spec) {
                memzinc::reason::write_dzn(&Snapshot::open(&output)?, spec, dzn)?;
            }
            if let Some(dir) = &parquet {
                let snap = Snapshot::open(&output)?;
                memzinc::interop::export(&snap, dir, memzinc::interop::Layout::Flat, &Default::default())?;
            }
            if g.json {
                print_json(&report)?;
            } else {
                println!(
                    "snapshot of pid {pid} -> {} ({} bytes, ELF core): {} regions ({} captured), {} pages ({} unreadable), {} symbols, {} threads, {} fds\nroot {}\ntarget stopped {:.1} ms; {} pages read from it{}",
                    output.display(),
                    report.file_bytes,
                    report.regions,
                    report.captured_regions,
                    report.pages,
                    report.unreadable_pages,
                    report.symbols,
                    report.threads,
                    report.fds,
                    report.root,
                    report.frozen_ms,
                    report.pages_from_target,
                    if report.since.is_some() { ", the rest from --since" } else { "" }
                );
            }
        }
        Command::Watch {
            pid,
            spec,
            every,
            dry_run,
            max_applies,
            per,
            rounds,
            workdir,
            solver,
            time_limit,
            authority,
        } => {
            let cancel = Cancel::on_signals()?;
            let mut solver_opts = SolverOptions::new(&memzinc::repo_root().join("models"));
            solver_opts.solver.backend = solver.parse()?;
            solver_opts.solver.time_limit = Duration::from_secs(time_limit);
            solver_opts.solver.cancel = Some(cancel.clone());
            let opts = memzinc::watch::WatchOptions {
                pid,
                every,
                spec: TargetSpec::load(&spec)?,
                solver: solver_opts,
                dry_run,
                max_applies,
                per,
                rounds,
                workdir,
                cancel,
            };
            let client = if dry_run { None } else { Some(g.client()?) };
            let authority = client
                .as_ref()
                .map(|c| authority_or_self(c, authority.as_deref()))
                .transpose()?;
            let chain = client.as_ref().zip(authority.as_ref());
            let json = g.json;
            let summary = memzinc::watch::watch(&opts, chain, |event| {
                if json {
                    println!("{}", serde_json::to_string(event).unwrap_or_default());
                } else {
                    match event {
                        memzinc::watch::WatchEvent::Healthy { round, root, .. } => {
                            println!("round {round}: healthy, root {root}")
                        }
                        memzinc::watch::WatchEvent::Planned {
                            round,
                            violations,
                            writes,
                            plan,
                            dry_run,
                            ..
                        } => println!(
                            "round {round}: {} violation(s): {}; plan {} ({writes} writes){}",
                            violations.len(),
                            violations.join("; "),
                            plan.display(),
                            if *dry_run { ", dry run: not applied" } else { "" }
                        ),
                        memzinc::watch::WatchEvent::RateLimited { round, applied_recently } => println!(
                            "round {round}: not applied, {applied_recently} repair(s) applied within --per already"
                        ),
                        memzinc::watch::WatchEvent::Applied {
                            round,
                            attestation,
                            seq,
                            writes,
                            stopped_us,
                        } => println!(
                            "round {round}: applied {writes} writes under attestation {attestation} (seq {seq}); target stopped {stopped_us} µs"
                        ),
                    }
                }
            })?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!(
                    "watch {}: {} rounds, {} repairs planned, {} applied",
                    if summary.cancelled { "stopped" } else { "done" },
                    summary.rounds,
                    summary.repairs_planned,
                    summary.repairs_applied
                );
            }
        }
        Command::Track { pid } => {
            let report = memzinc::track::start(pid)?;
            if g.json {
                print_json(&report)?;
            } else {
                println!(
                    "{} pid {pid}: {} regions ({} KiB) write-protected through fd {} in the target ({} not trackable); state {}",
                    if report.already { "already tracking" } else { "tracking" },
                    report.tracked_regions,
                    report.tracked_bytes / 1024,
                    report.uffd,
                    report.untracked_regions,
                    report.state_file.display()
                );
            }
        }
        Command::Export { parquet, what } => {
            let report = what.export(&parquet, memzinc::interop::Layout::Flat)?;
            print_export(&report, g.json)?;
        }
        Command::Import { dir, output } => {
            let report = memzinc::interop::import(&dir, &output)?;
            if g.json {
                print_json(&report)?;
            } else {
                println!(
                    "{} pages -> {} ({} bytes)\nroot {}",
                    report.pages,
                    output.display(),
                    report.file_bytes,
                    report.root
                );
            }
        }
        Command::Checkpoint {
            pid,
            output,
            kill,
            leave_running: _,
        } => {
            let after = if kill {
                memzinc::checkpoint::AfterCheckpoint::Kill
            } else {
                memzinc::checkpoint::AfterCheckpoint::LeaveRunning
            };
            let report = memzinc::checkpoint::checkpoint(pid, &output, after)?;
            if g.json {
                print_json(&report)?;
            } else {
                println!(
                    "checkpoint of pid {pid} -> {} ({} bytes): {} regions, {} pages, {} fds; process {} (stopped {} µs)\nroot {}",
                    output.display(),
                    report.snapshot.file_bytes,
                    report.snapshot.regions,
                    report.snapshot.pages,
                    report.snapshot.fds,
                    if report.killed { "killed" } else { "resumed" },
                    report.stopped_us,
                    report.snapshot.root
                );
            }
        }
        Command::Restore { core, apply, authority } => match apply {
            None => {
                let report = memzinc::restore::restore(&core, None)?;
                if g.json {
                    print_json(&report)?;
                } else {
                    println!(
                        "restored pid {} from {}: {} regions, {} bytes, {} fds in {} µs; running detached",
                        report.pid,
                        core.display(),
                        report.regions,
                        report.bytes,
                        report.fds,
                        report.elapsed_us
                    );
                }
            }
            Some(plan) => {
                let (_, patch) = PlanFile::load(&plan)?;
                let client = g.client()?;
                let authority = authority_or_self(&client, authority.as_deref())?;
                let done = memzinc::restore::restore_attested(&client, &authority, &core, &patch)?;
                if g.json {
                    print_json(&done)?;
                } else {
                    println!(
                        "restored pid {} from {} with {} writes under attestation {} (seq {}); running detached",
                        done.report.pid,
                        core.display(),
                        done.report.writes_applied,
                        done.attestation,
                        done.seq
                    );
                }
            }
        },
        Command::Hub { action } => match action {
            HubAction::Export { dir, what } => {
                let report = what.export(&dir, memzinc::interop::Layout::Hub)?;
                memzinc::hub::write_card(&dir, &report)?;
                print_export(&report, g.json)?;
            }
            HubAction::Push {
                dir,
                repo,
                endpoint,
                revision,
            } => {
                let hub = memzinc::hub::Hub::new(&endpoint, std::env::var("HF_TOKEN").ok())?;
                let report = hub.push(&dir, &repo, &revision)?;
                if g.json {
                    print_json(&report)?;
                } else {
                    println!(
                        "{} file(s) ({} by LFS) -> {endpoint} datasets/{repo}@{revision}: commit {}",
                        report.files, report.lfs_files, report.commit
                    );
                }
            }
            HubAction::Pull {
                repo,
                dir,
                endpoint,
                revision,
            } => {
                let hub = memzinc::hub::Hub::new(&endpoint, std::env::var("HF_TOKEN").ok())?;
                let report = hub.pull(&repo, &revision, &dir)?;
                if g.json {
                    print_json(&report)?;
                } else {
                    println!("{} file(s), {} bytes -> {}", report.files, report.bytes, dir.display());
                }
            }
        },
        Command::Inspect { snapshot, vars } => {
            let snap = Snapshot::open(&snapshot)?;
            snap.verify_pages()?;
            let values = if vars.is_empty() {
                Vec::new()
            } else {
                let types = memzinc::types::DebugTypes::for_snapshot(&snap)?;
                vars.iter()
                    .map(|v| types.read_object(&snap, v))
                    .collect::<memzinc::Result<Vec<_>>>()?
            };
            if g.json {
                let mut value = serde_json::to_value(&snap.meta)?;
                value["values"] = serde_json::to_value(&values)?;
                print_json(&value)?;
            } else {
                let m = &snap.meta;
                println!("{}: pid {} ({}) {}", snapshot.display(), m.pid, m.comm, m.exe);
                println!("cmdline {:?}", m.cmdline);
                println!("root {}  pages {}  threads {}", m.root, m.page_count, m.threads.len());
                for t in &m.threads {
                    println!(
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
                    println!("  fd {} {} flags {:#o} pos {}", f.fd, f.path, f.flags, f.pos);
                }
                if let Some(c) = &m.checkpoint {
                    let pending = c.shared_pending.len() + c.threads.iter().map(|t| t.pending.len()).sum::<usize>();
                    let ids = |v: &[u32]| match v {
                        [] => "(not kept)".to_string(),
                        v => v.iter().map(u32::to_string).collect::<Vec<_>>().join("/"),
                    };
                    let main = c.threads.first();
                    println!(
                        "  checkpoint: process {}; cwd {}; {} signal handler(s), {} pending signal(s); uid {} gid {}",
                        if c.killed { "killed" } else { "left running" },
                        c.cwd,
                        c.handlers.len(),
                        pending,
                        main.map_or(String::new(), |t| ids(&t.uids)),
                        main.map_or(String::new(), |t| ids(&t.gids)),
                    );
                    println!(
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
                for r in &m.regions {
                    println!(
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
                println!("{} symbols", m.symbols.len());
                for v in &values {
                    println!("{}: {} at {:#x} ({} bytes)", v.symbol, v.type_name, v.address, v.size);
                    for f in &v.fields {
                        println!("  {:<20} {:<8} = {}", f.name, f.type_name, f.value);
                    }
                }
            }
        }
        Command::Plan {
            snapshot,
            spec,
            rules,
            heap,
            output,
            solver,
            time_limit,
            model,
        } => {
            let snap = Snapshot::open(&snapshot)?;
            let models = memzinc::repo_root().join("models");
            let mut opts = SolverOptions::new(&models);
            opts.solver.backend = solver.parse()?;
            opts.solver.time_limit = Duration::from_secs(time_limit);
            opts.solver.cancel = Some(Cancel::on_signals()?);
            if let Some(m) = model {
                opts.model = m;
            }
            let output = output.unwrap_or_else(|| snapshot.with_extension("plan.json"));
            let target = std::path::Path::new(&snap.meta.exe)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("target")
                .to_string();
            let rules = if heap {
                None
            } else {
                rules.or_else(|| memzinc::invariants::model_for(&snap, &models))
            };
            let plan = match (spec, rules) {
                (Some(spec), _) => {
                    let spec = TargetSpec::load(&spec)?;
                    memzinc::reason::plan(&snap, &spec, &opts, &output.with_extension("dzn"))?
                }
                (None, Some(rules)) => {
                    let types = memzinc::types::DebugTypes::for_snapshot(&snap)?;
                    let judge = memzinc::invariants::Judge {
                        snapshot: &snap,
                        types: &types,
                        model: &rules,
                        models_dir: &models,
                    };
                    judge.plan(&target, &opts.solver, &output.with_extension("facts.mzn"))?
                }
                (None, None) => match memzinc::heap::Heap::from_snapshot(&snap)? {
                    Some(exported) => memzinc::heap::plan_snapshot(
                        &snap,
                        &exported,
                        &opts.solver,
                        &models,
                        &output.with_extension("dzn"),
                        &target,
                    )?,
                    None => anyhow::bail!(
                        "nothing to plan against: give --spec or --rules (no models/targets/<name>.mzn and no exported heap for {})",
                        snap.meta.exe
                    ),
                },
            };
            plan.save(&output)?;
            if g.json {
                print_json(&plan)?;
            } else {
                for v in &plan.violations {
                    println!("violation {:#x} {}: {}", v.address, v.field, v.rule);
                }
                for w in &plan.writes {
                    println!("write {:#x} {}: {} -> {}", w.address, w.field, w.old, w.new);
                }
                println!(
                    "plan -> {} ({} writes, {} bytes changed, {} by {})",
                    output.display(),
                    plan.writes.len(),
                    plan.changed_bytes,
                    plan.status,
                    plan.solver
                );
                if let Some(s) = &plan.stats {
                    println!("{}", stats_line(s));
                }
            }
        }
        Command::Layout {
            target,
            structs,
            hot,
            all,
            time_limit,
        } => {
            let types = debug_types_of(&target)?;
            let mut opts = memzinc::layout::LayoutOptions::new(&memzinc::repo_root().join("models"));
            opts.solver.time_limit = Duration::from_secs(time_limit);
            opts.solver.cancel = Some(Cancel::on_signals()?);
            opts.hot = hot;
            opts.only = structs;
            opts.all = all;
            let report = memzinc::layout::reorganize(&types, &opts)?;
            if g.json {
                print_json(&report)?;
            } else {
                for s in &report.structs {
                    print!("{}", memzinc::layout::render(&s.name, &s.current, s.size));
                    let how = match s.decided {
                        memzinc::layout::Decided::AlreadyMinimal => "already minimal".to_string(),
                        memzinc::layout::Decided::Optimal => "optimal, proven by gecode".to_string(),
                        memzinc::layout::Decided::Feasible => "best found, not proven optimal".to_string(),
                    };
                    println!(
                        "/* --- reorganized: size {} -> {} (saved {}; lower bound {}; {how}{}) --- */",
                        s.size,
                        s.optimal_size,
                        s.saved,
                        s.lower_bound,
                        s.hot_line
                            .map(|l| format!("; hot fields in cache line {l}"))
                            .unwrap_or_default()
                    );
                    print!("{}", memzinc::layout::render(&s.name, &s.suggested, s.optimal_size));
                    println!();
                }
                for k in &report.skipped {
                    println!("skipped struct {}: {}", k.name, k.why);
                }
                println!(
                    "{} struct(s) reported, {} skipped; {} distinct shape(s), {} solver run(s), {} ms",
                    report.structs.len(),
                    report.skipped.len(),
                    report.distinct_shapes,
                    report.solver_runs,
                    report.solve_ms
                );
            }
        }
        Command::Check {
            snapshot,
            spec,
            binary,
            rules,
            no_rules,
        } => {
            let snap = Snapshot::open(&snapshot)?;
            let specs = spec
                .iter()
                .map(|p| TargetSpec::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            let (mut report, types) = memzinc::check::check_with_types(&snap, &specs, binary.as_deref())?;
            let models = memzinc::repo_root().join("models");
            let rules = if no_rules {
                None
            } else {
                rules.or_else(|| memzinc::invariants::model_for(&snap, &models))
            };
            if let Some(rules) = &rules {
                anyhow::ensure!(
                    report.types_unavailable.is_none(),
                    "{}: rules need the binary's DWARF: {}",
                    rules.display(),
                    report.types_unavailable.as_deref().unwrap_or_default()
                );
                let judge = memzinc::invariants::Judge {
                    snapshot: &snap,
                    types: &types,
                    model: rules,
                    models_dir: &models,
                };
                let solver = memzinc::solver::SolverOptions {
                    cancel: Some(Cancel::on_signals()?),
                    ..Default::default()
                };
                let judged = judge.check(&solver)?;
                report.merge_rules(rules, judged);
            }
            if g.json {
                print_json(&report)?;
            } else {
                for f in &report.findings {
                    let at = f.location();
                    let rule = serde_json::to_value(f.rule)?;
                    println!(
                        "{:#018x} {at}: {} — {}",
                        f.address,
                        rule.as_str().unwrap_or("?"),
                        f.detail
                    );
                }
                if let Some(why) = &report.types_unavailable {
                    println!("type checks skipped: {why}");
                }
                if report.heap_objects > 0 {
                    println!("heap: {} exported object(s) judged", report.heap_objects);
                }
                if let Some(r) = &report.rules {
                    println!("rules: {} rule(s) of {} over {} object(s)", r.rules, r.model, r.objects);
                }
                println!(
                    "{} violation(s); {} globals, {} fields, {} pointers, {} regions, {} spec(s) checked; {} part(s) not judged",
                    report.findings.len(),
                    report.globals,
                    report.fields,
                    report.pointers,
                    report.regions,
                    report.specs,
                    report.not_judged.len()
                );
            }
            if !report.findings.is_empty() {
                std::process::exit(2);
            }
        }
        Command::Policy { action } => {
            let client = g.client()?;
            let authority = client.authority();
            let address = chain::policy_address(&client.program_id, &authority);
            match action {
                PolicyAction::Init(args) => {
                    let (address, signature) = client.initialize_policy(&args.config()?)?;
                    if g.json {
                        print_json(
                            &serde_json::json!({"policy": address.to_string(), "signature": signature.map(|s| s.to_string())}),
                        )?;
                    } else {
                        println!(
                            "policy {address}{}",
                            signature
                                .map(|s| format!(" (signature {s})"))
                                .unwrap_or(" (already existed)".into())
                        );
                    }
                }
                PolicyAction::Update(args) => {
                    let signature = client.update_policy(&args.config()?)?;
                    if g.json {
                        print_json(
                            &serde_json::json!({"policy": address.to_string(), "signature": signature.to_string()}),
                        )?;
                    } else {
                        println!("policy {address} updated (signature {signature})");
                    }
                }
                PolicyAction::Close => {
                    let signature = client.close_policy()?;
                    if g.json {
                        print_json(
                            &serde_json::json!({"policy": address.to_string(), "signature": signature.to_string()}),
                        )?;
                    } else {
                        println!("policy {address} closed (signature {signature})");
                    }
                }
                PolicyAction::Show => {
                    let policy = client.policy(&authority)?.context("no policy for this keypair")?;
                    let c = &policy.config;
                    let value = serde_json::json!({
                        "policy": address.to_string(), "authority": authority.to_string(), "revision": policy.revision,
                        "wx": c.rules.wx, "max_bytes": c.rules.max_bytes, "max_writes": c.rules.max_writes,
                        "signers": c.allowed_signers().iter().map(|k| Pubkey::from(*k).to_string()).collect::<Vec<_>>(),
                        "model_hash": hex::encode(c.model_hash), "verifier_hash": hex::encode(c.verifier_hash),
                        "symbol_rules": memzinc::policy::show_rules(c),
                    });
                    if g.json {
                        print_json(&value)?;
                    } else {
                        println!("{}", serde_json::to_string_pretty(&value)?);
                    }
                }
            }
        }
        Command::Attest {
            plan,
            authority,
            snapshot,
        } => {
            let (file, _) = PlanFile::load(&plan)?;
            let mut submission = file.to_submission(&plan)?;
            let client = g.client()?;
            let authority = authority_or_self(&client, authority.as_deref())?;
            if let Some(path) = snapshot {
                let policy = client.policy(&authority)?;
                submission.evidence = memzinc::policy::evidence_under(
                    &Snapshot::open(&path)?,
                    &submission.plan,
                    policy.as_ref().map(|p| &p.config),
                )?;
            }
            let outcome = client.attest(&authority, &submission)?;
            if g.json {
                print_json(&outcome)?;
            } else {
                println!(
                    "attestation {} (seq {}, plan {}){}",
                    outcome.attestation,
                    outcome.seq,
                    outcome.plan_hash,
                    outcome
                        .signature
                        .as_ref()
                        .map(|s| format!(" signature {s}"))
                        .unwrap_or(" (already attested)".into())
                );
            }
        }
        Command::Apply { plan, pid, authority } => {
            let (_, patch) = PlanFile::load(&plan)?;
            let client = g.client()?;
            let authority = authority_or_self(&client, authority.as_deref())?;
            let done = apply::apply_attested(&client, &authority, pid, &patch)?;
            if g.json {
                print_json(&done)?;
            } else {
                println!(
                    "applied {} writes ({} bytes) to pid {pid} under attestation {} (seq {}); target stopped {} µs",
                    done.report.writes, done.report.bytes, done.attestation, done.seq, done.report.stopped_us
                );
            }
        }
        Command::Revoke { target, seq } => {
            let client = g.client()?;
            let target_id = memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes());
            let signature = client.revoke(&target_id, seq)?;
            if g.json {
                print_json(&serde_json::json!({"target": target, "seq": seq, "signature": signature.to_string()}))?;
            } else {
                println!("attestation #{seq} of {target} revoked (signature {signature})");
            }
        }
        Command::Audit {
            target,
            authority,
            replay,
            program,
            parquet,
            report: html_report,
        } => {
            let client = g.client()?;
            let authority = authority_or_self(&client, authority.as_deref())?;
            let target_id = memzinc_verifier::hash::target_id::<Sha2>(target.as_bytes());
            let report = client.audit(&authority, &target_id)?;
            let mut plans = Vec::new();
            if let Some(dir) = &replay {
                for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
                    let path = entry?.path();
                    if path.to_string_lossy().ends_with(".plan.json") {
                        let (file, _) = PlanFile::load(&path)?;
                        plans.push(file.to_submission(&path)?);
                    }
                }
            }
            let replayed = match replay {
                None => None,
                Some(_) => {
                    let local = std::fs::read(program.unwrap_or_else(default_program)).ok();
                    Some(memzinc::replay::replay_history(
                        &client,
                        &authority,
                        &target_id,
                        &plans,
                        local.as_deref(),
                    )?)
                }
            };
            if let Some(path) = &parquet {
                memzinc::report::write_timeline_parquet(&report, path)?;
            }
            if let Some(path) = &html_report {
                let page = memzinc::report::html(&report, replayed.as_ref(), &plans, &target);
                memzinc::fsutil::write_file_atomically(path, page.as_bytes())?;
            }
            if g.json {
                let mut value = serde_json::to_value(&report)?;
                value["replay"] = serde_json::to_value(&replayed)?;
                print_json(&value)?;
            } else {
                println!("target {target} ({}), chain {}", report.target_id, report.target_chain);
                for e in &report.entries {
                    println!(
                        "  #{} slot {} plan {} writes {} bytes {} by {}",
                        e.seq,
                        e.slot,
                        &e.plan_hash[..16],
                        e.writes,
                        e.bytes,
                        e.signer
                    );
                }
                println!(
                    "{} attestations, every link verified; head {}",
                    report.entries.len(),
                    report.head_hash
                );
                if let Some(r) = &replayed {
                    println!(
                        "deployed program sha256 {} {}",
                        r.program.deployed_sha256,
                        if r.program.matches_local_build {
                            "= the local reproducible build"
                        } else {
                            "DIFFERS from the local build"
                        }
                    );
                    for d in &r.decisions {
                        println!("  replay #{} plan {}: {}", d.seq, &d.plan_hash[..16], d.verdict);
                    }
                    println!(
                        "{} of {} replayed decisions identical ({:.0}/s)",
                        r.identical, r.replayed, r.decisions_per_second
                    );
                }
            }
            if let Some(r) = &replayed {
                if !r.verified() {
                    anyhow::bail!(
                        "audit of {target}: the replay did not reproduce every decision with the audited program"
                    );
                }
            }
        }
        Command::Localnet { ready_file, program } => {
            // Block the stop signals before any thread starts, then wait for one of them.
            use nix::sys::signal::{SigSet, Signal};
            let mut stop = SigSet::empty();
            stop.add(Signal::SIGINT);
            stop.add(Signal::SIGTERM);
            stop.thread_block()?;
            let payer = g.keypair()?;
            let program_keypair =
                chain::read_keypair(&memzinc::repo_root().join("programs/attestor/attestor-keypair.json"))?;
            let net = localnet::Localnet::start(&payer, &[])?;
            net.deploy(&payer, &program_keypair, &program.unwrap_or_else(default_program))?;
            let info = serde_json::json!({
                "rpc_url": net.rpc_url, "ws_url": net.ws_url, "program_id": program_keypair.pubkey().to_string(),
                "payer": payer.pubkey().to_string(),
            });
            if let Some(path) = ready_file {
                memzinc::fsutil::write_file_atomically(&path, info.to_string().as_bytes())?;
            }
            println!("{info}");
            let signal = stop.wait()?;
            eprintln!("localnet: {signal:?}, shutting down");
            net.stop()?;
        }
        Command::Keygen { output } => {
            let keypair = Keypair::new();
            if output.exists() {
                anyhow::bail!("{} exists; refusing to overwrite a keypair", output.display());
            }
            chain::write_keypair(&keypair, &output)?;
            println!("{}", keypair.pubkey());
        }
        Command::Demo { program } => {
            demo::run(&program.unwrap_or_else(default_program), &mut std::io::stdout())?;
        }
    }
    Ok(())
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
