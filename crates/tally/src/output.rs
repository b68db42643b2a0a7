//! Printing results: text for people, `--json` for scripts.

use serde::Serialize;

/// Prints `value` as one line of JSON, in one write: a reader that stops once it has the
/// document never sees the command die between the document and its newline.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    write(format_args!("{line}"));
    Ok(())
}

/// Writes to stdout. When the reader has gone away (`tally … | head -1`) there is nobody
/// to tell, so the command stops quietly instead of panicking.
pub(crate) fn write(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `text` to stdout for a command that goes on running after it (the demo keeps its
/// federation up): a reader that has gone away is no reason to stop, so a closed pipe is
/// ignored instead of ending the process as [`write`] does.
pub(crate) fn write_ignoring_closed_reader(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing to stdout: {e}");
    }
}

/// `n` and the noun, singular or plural: "1 log", "3 logs".
pub(crate) fn count(n: impl std::fmt::Display, one: &str, many: &str) -> String {
    let n = n.to_string();
    let noun = if n == "1" { one } else { many };
    format!("{n} {noun}")
}

/// `print!` through [`write`].
macro_rules! out {
    ($($t:tt)*) => { $crate::output::write(format_args!($($t)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::output::write(format_args!("\n")) };
    ($($t:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($t)*))) };
}

pub(crate) use {out, outln};

/// Prints an error and its causes to stderr, each once (a cause that repeats what is
/// already said is left out); with `--json`, as one JSON object on stdout.
pub(crate) fn error(e: &anyhow::Error, json: bool) {
    let mut said: Vec<String> = Vec::new();
    for cause in e.chain().map(ToString::to_string) {
        let cause = cause.trim().to_owned();
        if !cause.is_empty() && !said.iter().any(|s| s.contains(&cause)) {
            said.push(cause);
        }
    }
    if json {
        let value =
            serde_json::json!({"error": said.first(), "causes": &said[1.min(said.len())..]});
        // The command fails either way: a reader that has gone changes nothing.
        write_ignoring_closed_reader(&format!("{value}\n"));
        return;
    }
    let mut lines = said.iter();
    if let Some(first) = lines.next() {
        eprintln!("error: {first}");
    }
    for cause in lines {
        eprintln!("  caused by: {cause}");
    }
}
