//! Writing results: JSON for scripts, and a progress bar on stderr for
//! long scans (hidden when stderr is not a terminal, or with `--json`).

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::Failure;

/// Prints a line on stdout, or returns the [`Failure`] of the write (a
/// closed pipe, `ecst tail | head`, is [`Failure::closed`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}

/// Writes `text` and a line break on stdout, flushed (a tail's reader sees
/// each line at once).
pub fn line(text: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(text)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::closed()
            } else {
                Failure::new(format!("writing to stdout failed: {error}"))
            }
        })
}

/// Prints `value` as one line of JSON on stdout.
pub fn json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string(value)
        .map_err(|error| Failure::new(format!("writing JSON failed: {error}")))?;
    line(format_args!("{text}"))
}

/// A progress bar of `total` steps saying `what`, drawn on stderr only when
/// it is a terminal and the output is for people.
pub fn progress(total: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}
