//! `memzinc import`: the byte-identical core, rebuilt from its tables and checked first.

use std::path::PathBuf;

use anyhow::Result;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    dir: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(a: Args, g: &Global) -> Result<()> {
    let report = memzinc_cli::interop::import(&a.dir, &a.output)?;
    g.print(&report, |report| {
        format!(
            "{} pages -> {} ({} bytes)\nroot {}",
            report.pages,
            a.output.display(),
            report.file_bytes,
            report.root
        )
    })
}
