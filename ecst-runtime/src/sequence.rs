//! The per-entity sequence that orders state events.

use core::fmt;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize};

/// The position of a state event in its entity's history.
///
/// Strictly increasing per key on the producer side; a replica applies an
/// event only when its sequence is higher than the one it holds for the key.
/// Sequences of different keys are not comparable.
///
/// # Range
///
/// A sequence runs `0..=Sequence::MAX`, where [`Sequence::MAX`] is `i64::MAX`
/// (9223372036854775807): the largest value every store holds (SQLite and
/// PostgreSQL keep it in a signed 64-bit column). The envelope decoder, the
/// [`Producer`](crate::Producer) and snapshot imports refuse anything larger,
/// so an event a replica accepts can always be committed. A producer's own
/// counter starts at 1; 0 is accepted (and below every other sequence).
///
/// [`Sequence::new`] does not check the range (it is `const` and infallible
/// for existing callers); use [`Sequence::try_new`] for values that come from
/// outside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Sequence(u64);

impl Sequence {
    /// The largest sequence: `i64::MAX`, the largest value a SQLite or
    /// PostgreSQL store holds.
    pub const MAX: Sequence = Sequence(i64::MAX as u64);

    /// The sequence with value `n`, unchecked.
    ///
    /// Values above [`Sequence::MAX`] can be built but go nowhere: the
    /// decoder refuses them on the wire and the [`Producer`](crate::Producer)
    /// refuses them as revisions. Prefer [`Sequence::try_new`] for values
    /// that come from outside.
    pub const fn new(n: u64) -> Self {
        Sequence(n)
    }

    /// The sequence with value `n`, or an error if `n` is above
    /// [`Sequence::MAX`].
    pub const fn try_new(n: u64) -> Result<Self, SequenceOutOfRange> {
        if n <= Self::MAX.0 {
            Ok(Sequence(n))
        } else {
            Err(SequenceOutOfRange { value: n })
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether the value is within `0..=Sequence::MAX`.
    pub const fn in_range(self) -> bool {
        self.0 <= Self::MAX.0
    }

    /// The next sequence, or `None` at (or past) [`Sequence::MAX`].
    pub const fn next(self) -> Option<Self> {
        if self.0 < Self::MAX.0 {
            Some(Sequence(self.0 + 1))
        } else {
            None
        }
    }
}

impl From<u64> for Sequence {
    /// Unchecked, like [`Sequence::new`].
    fn from(n: u64) -> Self {
        Sequence(n)
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Reads a non-negative integer and refuses one above [`Sequence::MAX`], so
/// a snapshot cannot bring in a sequence no store can hold.
impl<'de> Deserialize<'de> for Sequence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        Sequence::try_new(n).map_err(|_| {
            de::Error::invalid_value(
                Unexpected::Unsigned(n),
                &"a sequence in 0..=9223372036854775807 (i64::MAX)",
            )
        })
    }
}

/// A value above [`Sequence::MAX`] was given as a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "sequence {value} is out of range: sequences run 0..=9223372036854775807 (i64::MAX), \
     the largest value every store holds"
)]
pub struct SequenceOutOfRange {
    /// The value given.
    pub value: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_ends_at_i64_max() {
        assert_eq!(Sequence::MAX.get(), 9_223_372_036_854_775_807);
        assert_eq!(Sequence::try_new(0), Ok(Sequence::new(0)));
        assert_eq!(Sequence::try_new(i64::MAX as u64), Ok(Sequence::MAX));
        let over = i64::MAX as u64 + 1;
        assert_eq!(
            Sequence::try_new(over),
            Err(SequenceOutOfRange { value: over })
        );
        assert_eq!(Sequence::try_new(u64::MAX).unwrap_err().value, u64::MAX);
        assert!(Sequence::MAX.in_range());
        assert!(!Sequence::new(over).in_range());
    }

    #[test]
    fn next_stops_at_max() {
        assert_eq!(Sequence::new(0).next(), Some(Sequence::new(1)));
        assert_eq!(
            Sequence::new(i64::MAX as u64 - 1).next(),
            Some(Sequence::MAX)
        );
        assert_eq!(Sequence::MAX.next(), None);
        assert_eq!(Sequence::new(u64::MAX).next(), None);
    }

    #[test]
    fn deserializing_refuses_a_sequence_above_max() {
        let max: Sequence = serde_json::from_str("9223372036854775807").unwrap();
        assert_eq!(max, Sequence::MAX);
        let error = serde_json::from_str::<Sequence>("9223372036854775808").unwrap_err();
        assert!(
            error.to_string().contains("0..=9223372036854775807"),
            "{error}"
        );
        assert_eq!(
            serde_json::to_string(&Sequence::new(7)).unwrap(),
            "7",
            "serialized as a plain number"
        );
    }
}
