//! The compatibility policies, named as Confluent's registry names them.
//! [`Mode`] itself lives in the core (`ecst_runtime::compatibility`), where
//! tolerant reads need it; it is re-exported here.

use core::fmt;
use core::str::FromStr;

pub use ecst_runtime::compatibility::{Mode, ParseModeError};

/// Which set of changes counts as compatible (Confluent's
/// `compatibilityPolicy` for JSON Schema).
///
/// [`Strict`](Policy::Strict) assumes any reader validates against its
/// schema and any writer may have used whatever its schema allows, including
/// properties it does not name. [`Lenient`](Policy::Lenient) follows the
/// robustness principle: writers write only the properties their schema
/// declares and readers ignore properties they do not know, so adding or
/// removing optional properties and closing or narrowing
/// `additionalProperties` become compatible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Confluent's default.
    #[default]
    Strict,
    /// Confluent's `LENIENT` policy.
    Lenient,
}

impl Policy {
    /// The registry's name: `"STRICT"` or `"LENIENT"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Policy::Strict => "STRICT",
            Policy::Lenient => "LENIENT",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = ParseModeError;

    /// Reads `STRICT` or `LENIENT`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "STRICT" => Ok(Policy::Strict),
            "LENIENT" => Ok(Policy::Lenient),
            _ => Err(ParseModeError::new(
                "compatibility policy",
                s,
                "STRICT, LENIENT",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!("lenient".parse::<Policy>(), Ok(Policy::Lenient));
        assert_eq!(Policy::Strict.to_string(), "STRICT");
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = "loose".parse::<Policy>().unwrap_err();
        assert!(err.to_string().contains("loose"), "{err}");
    }
}
