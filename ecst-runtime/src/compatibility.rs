//! The compatibility mode an event type declares (`#[state_event(compatibility = "..")]`),
//! named as Confluent's registry names it.
//!
//! The core needs it for tolerant reads: an entity that promises `FORWARD`
//! compatibility lets a consumer read a newer version as the newest it knows.
//! The checker that enforces the promise lives in the `ecst-schema` crate.

use core::fmt;
use core::str::FromStr;

/// Which versions a new schema must stay compatible with, and in which
/// direction (Confluent Schema Registry's `compatibility` setting).
///
/// *Backward* means a reader on the new schema reads data written with an
/// older one; *forward* means a reader on an older schema reads data written
/// with the new one; *full* is both. The transitive modes compare the new
/// schema with every earlier version instead of only the latest one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `BACKWARD`: the new schema reads data written with the latest one.
    /// The registry's default.
    #[default]
    Backward,
    /// `BACKWARD_TRANSITIVE`: the new schema reads data written with every
    /// earlier version.
    BackwardTransitive,
    /// `FORWARD`: the latest schema reads data written with the new one.
    Forward,
    /// `FORWARD_TRANSITIVE`: every earlier version reads data written with
    /// the new one.
    ForwardTransitive,
    /// `FULL`: backward and forward against the latest version.
    Full,
    /// `FULL_TRANSITIVE`: backward and forward against every earlier version.
    FullTransitive,
    /// `NONE`: nothing is checked.
    None,
}

impl Mode {
    /// Every mode, in the order Confluent documents them.
    pub const ALL: [Mode; 7] = [
        Mode::Backward,
        Mode::BackwardTransitive,
        Mode::Forward,
        Mode::ForwardTransitive,
        Mode::Full,
        Mode::FullTransitive,
        Mode::None,
    ];

    /// The registry's name for the mode: `"BACKWARD"`, `"FULL_TRANSITIVE"`…
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Backward => "BACKWARD",
            Mode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Mode::Forward => "FORWARD",
            Mode::ForwardTransitive => "FORWARD_TRANSITIVE",
            Mode::Full => "FULL",
            Mode::FullTransitive => "FULL_TRANSITIVE",
            Mode::None => "NONE",
        }
    }

    /// Whether the new schema is checked against every earlier version
    /// rather than only the latest one.
    pub const fn is_transitive(self) -> bool {
        matches!(
            self,
            Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive
        )
    }

    /// Whether a reader on the new schema must read older data.
    pub const fn checks_backward(self) -> bool {
        matches!(
            self,
            Mode::Backward | Mode::BackwardTransitive | Mode::Full | Mode::FullTransitive
        )
    }

    /// Whether a reader on an older schema must read new data.
    pub const fn checks_forward(self) -> bool {
        matches!(
            self,
            Mode::Forward | Mode::ForwardTransitive | Mode::Full | Mode::FullTransitive
        )
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no compatibility mode or policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{found}`: expected one of {expected}")]
pub struct ParseModeError {
    what: &'static str,
    found: String,
    expected: &'static str,
}

impl ParseModeError {
    #[doc(hidden)]
    pub fn new(what: &'static str, found: &str, expected: &'static str) -> Self {
        ParseModeError {
            what,
            found: found.to_owned(),
            expected,
        }
    }
}

impl FromStr for Mode {
    type Err = ParseModeError;

    /// Reads Confluent's names (`BACKWARD`, `FULL_TRANSITIVE`, …), ignoring
    /// ASCII case and accepting `-` for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        Mode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == wanted)
            .ok_or_else(|| ParseModeError {
                what: "compatibility mode",
                found: s.to_owned(),
                expected: "BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, \
                           FULL, FULL_TRANSITIVE, NONE",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        assert_eq!("full-transitive".parse::<Mode>(), Ok(Mode::FullTransitive));
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = "SIDEWAYS".parse::<Mode>().unwrap_err();
        assert!(err.to_string().contains("SIDEWAYS"), "{err}");
    }

    #[test]
    fn directions() {
        assert!(Mode::Full.checks_backward() && Mode::Full.checks_forward());
        assert!(!Mode::None.checks_backward() && !Mode::None.checks_forward());
        assert!(Mode::ForwardTransitive.is_transitive());
        assert!(!Mode::Forward.is_transitive());
        assert_eq!(Mode::default(), Mode::Backward);
    }
}
