//! `memzinc demo`: the whole story on an embedded localnet.

use std::path::PathBuf;

use anyhow::Result;

use super::{default_program, Global};

#[derive(clap::Args)]
pub struct Args {
    /// The program to deploy.
    #[arg(long)]
    program: Option<PathBuf>,
}

pub fn run(a: Args, _g: &Global) -> Result<()> {
    memzinc_cli::demo::run(&a.program.unwrap_or_else(default_program), &mut std::io::stdout())?;
    Ok(())
}
