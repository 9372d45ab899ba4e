//! What ends a command: an error (one line on stderr, exit status 2) or a
//! check that found a problem (its report on stdout, exit status 1).

use core::fmt;

/// A command that could not do its job. Its text is one line, for people:
/// what failed and, where it helps, what to do.
#[derive(Debug)]
pub struct Failure {
    message: String,
    closed: bool,
}

impl Failure {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        // One line, whatever the sources said.
        let message: String = message.into();
        Failure {
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
            closed: false,
        }
    }

    /// Whoever read the output stopped reading (`ecst tail | head`): the
    /// command ends quietly.
    pub fn closed() -> Self {
        Failure {
            message: "stdout was closed".to_owned(),
            closed: true,
        }
    }

    /// `true` for [`Failure::closed`].
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
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

/// `url` without the password or token it may carry
/// (`nats://user:***@host`, `password=***`), for messages.
pub fn redacted(url: &str) -> String {
    if let Some(at) = url.find("password=") {
        // A key-value connection string: `host=.. password=.. user=..`.
        let end = url[at..]
            .find(char::is_whitespace)
            .map_or(url.len(), |n| at + n);
        return format!("{}password=***{}", &url[..at], &url[end..]);
    }
    let start = url.find("://").map_or(0, |at| at + 3);
    let Some(at) = url[start..].find('@').map(|at| start + at) else {
        return url.to_owned();
    };
    let userinfo = &url[start..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..start], &url[at..])
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn messages_never_show_a_password_or_token() {
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redacted("nats://ops:s3cret@nats:4222"),
            "nats://ops:***@nats:4222"
        );
        assert_eq!(redacted("nats://t0ken@nats"), "nats://***@nats");
        assert_eq!(redacted("ops:pw@host"), "ops:***@host");
        assert_eq!(
            redacted("postgresql://app:pw@db/x"),
            "postgresql://app:***@db/x"
        );
        assert_eq!(
            redacted("host=db password=pw user=app"),
            "host=db password=*** user=app"
        );
    }
}
