//! Printing results: text for people, `--json` for scripts.

use serde::Serialize;

/// Prints `value` as one line of JSON.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    write(format_args!("{}\n", serde_json::to_string(value)?));
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

/// Prints an error and its causes to stderr.
pub(crate) fn error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
