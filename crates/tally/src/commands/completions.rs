//! `tally completions`: shell completion scripts.

use std::process::ExitCode;

use clap::CommandFactory as _;

/// Print a shell completion script.
///
/// Example:
///
///   tally completions bash > /etc/bash_completion.d/tally
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The shell.
    shell: clap_complete::Shell,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    clap_complete::generate(
        args.shell,
        &mut super::Cli::command(),
        "tally",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
