//! What ends a command: an error (one line on stderr, exit status 2) or a
//! check that found a problem (its report on stdout, exit status 1).

use core::fmt;

/// A command that could not do its job. Its text is one line, for people:
/// what failed and, where it helps, what to do.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        // One line, whatever the sources said.
        let message: String = message.into();
        Failure(message.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A command's result: how the process should end.
pub type Outcome = Result<Verdict, Failure>;

/// How a command that ran ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// All is well (exit status 0).
    Good,
    /// A check found a problem, reported on stdout (exit status 1).
    Problem,
}

/// `error` and the chain of its sources, as one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
