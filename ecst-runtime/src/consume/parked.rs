//! [`Parked`]: a message set aside, and why ([`ParkReason`]).

use core::fmt;
use std::borrow::Cow;

use crate::error::{DecodeError, DecodeErrorKind};

/// Why a message was parked: a kind to match on, and the message to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkReason {
    /// What went wrong, for code.
    pub kind: ParkKind,
    /// What went wrong, for people: the error's full text.
    pub message: String,
}

impl ParkReason {
    /// A reason of `kind` saying `message`. Control characters in the
    /// message (a hostile key may hold a NUL, which no SQL text column
    /// stores) are written as `\u{..}` escapes.
    pub fn new(kind: ParkKind, message: impl AsRef<str>) -> Self {
        ParkReason {
            kind,
            message: printable(message.as_ref()).into_owned(),
        }
    }

    pub(crate) fn of_error(error: &DecodeError) -> Self {
        let kind = match error.kind() {
            DecodeErrorKind::FutureVersion { .. } => ParkKind::FutureVersion,
            DecodeErrorKind::Upcast(_) => ParkKind::Upcast,
            _ => ParkKind::Invalid,
        };
        ParkReason::new(kind, error.to_string())
    }
}

impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of [`ParkReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParkKind {
    /// The transport refused it before decoding (a payload over the size
    /// limit).
    Refused,
    /// Its envelope names another entity or key than the transport
    /// addressed it to, or the transport's address is not one of a state
    /// event: a spoofing attempt or a misconfigured producer.
    Misaddressed,
    /// Written in a schema version newer than this build knows: fine, but
    /// the consumer is old. Retry after upgrading.
    FutureVersion,
    /// The upcast from its version failed (a user hop refused the data).
    Upcast,
    /// Not a valid event of this entity: malformed JSON, a missing or
    /// invalid attribute, a payload that does not match its version, an
    /// invalid key.
    Invalid,
    /// Valid, but the store refused to hold its state (a state whose
    /// `Serialize` fails, when the store must serialize it: the JSON
    /// stores keep a state decoded as written at the newest version as its
    /// event's own `data`, and serialize the others); the rest of its batch
    /// was committed without it.
    Unstorable,
    /// A redelivery of a message handled before tombstones were purged
    /// ([`Checkpoint::purged_through`](crate::store::Checkpoint::purged_through))
    /// that would bring back a key the replica does not hold: most likely
    /// an older upsert of a key deleted since, whose tombstone (what made
    /// such an upsert stale) is gone. Kept out rather than resurrect the
    /// key; superseded when the key's next event applies. A retry keeps it
    /// parked: discard it, or, if the key should exist, have the owner
    /// publish it again (or ask it for the key's state).
    PurgedTombstone,
    /// A kind this build does not know (read from a store written by a
    /// newer build).
    Other,
}

impl ParkKind {
    /// Every kind but [`ParkKind::Other`].
    pub const KNOWN: [ParkKind; 7] = [
        ParkKind::Refused,
        ParkKind::Misaddressed,
        ParkKind::FutureVersion,
        ParkKind::Upcast,
        ParkKind::Invalid,
        ParkKind::Unstorable,
        ParkKind::PurgedTombstone,
    ];

    /// The name stored in the `kind` column: `refused`, `misaddressed`,
    /// `future_version`, `upcast`, `invalid`, `unstorable`,
    /// `purged_tombstone`, `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParkKind::Refused => "refused",
            ParkKind::Misaddressed => "misaddressed",
            ParkKind::FutureVersion => "future_version",
            ParkKind::Upcast => "upcast",
            ParkKind::Invalid => "invalid",
            ParkKind::Unstorable => "unstorable",
            ParkKind::PurgedTombstone => "purged_tombstone",
            ParkKind::Other => "other",
        }
    }

    /// The kind named `name` ([`ParkKind::as_str`]), [`ParkKind::Other`]
    /// for a name this build does not know.
    pub fn from_name(name: &str) -> Self {
        ParkKind::KNOWN
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .unwrap_or(ParkKind::Other)
    }
}

impl fmt::Display for ParkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a parked message was resolved without being applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Its key holds a state at least as new: for full-state events the
    /// parked one has nothing left to give.
    Superseded,
    /// An operator discarded it, saying why.
    Discarded(String),
}

impl Resolution {
    /// The text stored in the `resolution` column: `superseded`, or
    /// `discarded: <why>`.
    pub fn to_column(&self) -> Cow<'_, str> {
        match self {
            Resolution::Superseded => Cow::Borrowed("superseded"),
            Resolution::Discarded(why) => Cow::Owned(format!("discarded: {why}")),
        }
    }

    /// The resolution stored as `text` ([`Resolution::to_column`]).
    pub fn from_column(text: &str) -> Self {
        match text.strip_prefix("discarded: ") {
            Some(why) => Resolution::Discarded(why.to_owned()),
            None if text == "discarded" => Resolution::Discarded(String::new()),
            None => Resolution::Superseded,
        }
    }
}

/// A message the consumer could not apply and set aside.
///
/// Parking holds nothing back: the key's later events apply as they come
/// (the version gate orders full-state events by sequence). A parked
/// message whose event sequence is at or below what the replica holds for
/// its key, or whose sequence could not be read once a later valid event
/// of its key applied, is [superseded](Resolution::Superseded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parked {
    /// The broker's sequence of the message.
    pub stream_sequence: u64,
    /// The subject it arrived on.
    pub subject: String,
    /// The entity key: what the envelope said, else what the transport
    /// addressed. `None` when neither said, or for a key no store could
    /// hold (control characters).
    pub key: Option<String>,
    /// Why it was parked.
    pub reason: ParkReason,
    /// The message body as received.
    pub payload: Vec<u8>,
    /// `None` while it waits (for an upgrade, a fix, an operator);
    /// `Some` once resolved.
    pub resolution: Option<Resolution>,
}

impl Parked {
    /// `true` while the message waits to be retried or discarded.
    pub fn is_pending(&self) -> bool {
        self.resolution.is_none()
    }
}

/// `text` with control characters escaped as `\u{..}`.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ParkKind::KNOWN {
            assert_eq!(ParkKind::from_name(kind.as_str()), kind);
        }
        assert_eq!(ParkKind::from_name("from the future"), ParkKind::Other);
        for resolution in [
            Resolution::Superseded,
            Resolution::Discarded("owner re-published".into()),
        ] {
            assert_eq!(Resolution::from_column(&resolution.to_column()), resolution);
        }
    }

    #[test]
    fn reasons_hold_no_control_characters() {
        let reason = ParkReason::new(ParkKind::Invalid, "key `a\u{0}b\nc`");
        assert_eq!(reason.message, "key `a\\u{0}b\\u{a}c`");
    }
}
