//! `memzinc hub`: a snapshot's tables as a Hugging Face dataset repository; push and pull.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use memzinc_cli::interop::{write_card, Hub, Layout};

use super::export::{print_export, ExportArgs};
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: HubAction,
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

pub fn run(a: Args, g: &Global) -> Result<()> {
    match a.action {
        HubAction::Export { dir, what } => {
            let report = what.export(&dir, Layout::Hub)?;
            write_card(&dir, &report)?;
            print_export(&report, g.json)
        }
        HubAction::Push {
            dir,
            repo,
            endpoint,
            revision,
        } => {
            let hub = Hub::new(&endpoint, std::env::var("HF_TOKEN").ok())?;
            let report = hub.push(&dir, &repo, &revision)?;
            g.print(&report, |report| {
                format!(
                    "{} file(s) ({} by LFS) -> {endpoint} datasets/{repo}@{revision}: commit {}",
                    report.files, report.lfs_files, report.commit
                )
            })
        }
        HubAction::Pull {
            repo,
            dir,
            endpoint,
            revision,
        } => {
            let hub = Hub::new(&endpoint, std::env::var("HF_TOKEN").ok())?;
            let report = hub.pull(&repo, &revision, &dir)?;
            g.print(&report, |report| {
                format!("{} file(s), {} bytes -> {}", report.files, report.bytes, dir.display())
            })
        }
    }
}
