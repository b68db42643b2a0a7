//! `tally completions`: shell completion scripts.

use std::process::ExitCode;

use clap::CommandFactory as _;

use crate::output;

/// Print a shell completion script
///
/// With --json, the script is the "script" field of one JSON object.
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

pub(crate) fn run(args: Args, json: bool) -> anyhow::Result<ExitCode> {
    // clap_complete panics when its writer fails, so it writes to memory and the output
    // goes through `output`, which stops quietly when the reader has gone (`| head -1`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut super::Cli::command(), "tally", &mut script);
    let script = String::from_utf8(script)?;
    if json {
        output::json(&serde_json::json!({"shell": args.shell.to_string(), "script": script}))?;
    } else {
        output::write(format_args!("{script}"));
    }
    Ok(ExitCode::SUCCESS)
}
