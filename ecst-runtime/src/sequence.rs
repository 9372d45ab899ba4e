//! The per-entity sequence that orders state events.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The position of a state event in its entity's history.
///
/// Strictly increasing per key on the producer side; a replica applies an
/// event only when its sequence is higher than the one it holds for the key.
/// Sequences of different keys are not comparable.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sequence(u64);

impl Sequence {
    /// The sequence with value `n`.
    pub const fn new(n: u64) -> Self {
        Sequence(n)
    }

    /// The numeric value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next sequence, or `None` at `u64::MAX`.
    pub const fn next(self) -> Option<Self> {
        match self.0.checked_add(1) {
            Some(n) => Some(Sequence(n)),
            None => None,
        }
    }
}

impl From<u64> for Sequence {
    fn from(n: u64) -> Self {
        Sequence(n)
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
