//! What every backend does to stage an event: check the key, build the
//! envelope with the [`Producer`]'s code, encode it and check its size.

use crate::envelope::{check_key, shown, Envelope, MAX_KEY_BYTES};
use crate::event::StateEvent;
use crate::producer::{Producer, SequenceError};
use crate::sequence::Sequence;

use super::{Outbox, OutboxError};

/// The bytes kept free, beside an event's CloudEvents JSON and its id, for
/// the headers of its message: `Nats-Msg-Id` and
/// `Nats-Expected-Last-Subject-Sequence` (under 100 bytes), or in binary
/// mode the attributes as `ce-` headers (a few bytes more than in the JSON
/// each), and a `traceparent` the relay may add.
pub const HEADER_ROOM: usize = 512;

/// An event staged in the owner's transaction: it will be published if,
/// and only if, the transaction commits.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Staged {
    /// The event id, `<entity>:<key>:<sequence>` (the `Nats-Msg-Id`).
    pub id: String,
    /// The key's sequence assigned to the event.
    pub sequence: Sequence,
}

/// A database transaction an [`Outbox`] stages into: rusqlite's
/// `Transaction` (feature `sqlite`; staging returns its result) and
/// tokio-postgres's `Transaction` (feature `postgres`; staging returns a
/// future). Sealed: implemented by ecst only.
pub trait StagingTransaction: sealed::Sealed {
    /// What [`Outbox::stage`] returns: `Result<Staged, OutboxError>`, or a
    /// future of it.
    type Staging<'a>
    where
        Self: 'a;

    #[doc(hidden)]
    fn stage_event<'a, T: StateEvent + Clone>(
        &'a self,
        outbox: &'a Outbox,
        key: &'a T::Key,
        state: Option<&'a T>,
    ) -> Self::Staging<'a>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// One outbox row, ready to insert.
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) aggregatetype: &'static str,
    pub(crate) aggregateid: String,
    pub(crate) operation: &'static str,
    pub(crate) sequence: i64,
    pub(crate) schemaversion: i64,
    pub(crate) payload: String,
    pub(crate) headers: String,
    /// The NATS subject the relay publishes it on, when the outbox knows
    /// its subjects ([`Outbox::with_subjects`]): what a Debezium pipeline
    /// routes by.
    pub(crate) subject: Option<String>,
}

impl Row {
    pub(crate) fn staged(&self) -> Staged {
        Staged {
            id: self.id.clone(),
            sequence: Sequence::new(self.sequence.unsigned_abs()),
        }
    }
}

impl Outbox {
    /// The key's text if it can be a subject; checked before the sequence
    /// is taken, so a refused key costs no write.
    pub(crate) fn key_text<T: StateEvent>(&self, key: &T::Key) -> Result<String, OutboxError> {
        let text = key.to_string();
        let invalid = |reason: String| OutboxError::InvalidKey {
            entity: T::ENTITY,
            key: shown(&text, MAX_KEY_BYTES),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("an empty key cannot be a subject".to_owned()));
        }
        check_key(&text).map_err(|kind| invalid(kind.to_string()))?;
        #[cfg(feature = "nats")]
        if let Some(subjects) = &self.subjects {
            subjects
                .event(T::ENTITY, &text)
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(text)
    }

    /// The row of an upsert (`Some(state)`) or a delete of `key` at
    /// `sequence`, as the database handed it out.
    pub(crate) fn row<T: StateEvent + Clone>(
        &self,
        key: &T::Key,
        key_text: String,
        state: Option<&T>,
        sequence: i64,
    ) -> Result<Row, OutboxError> {
        let out_of_range = || OutboxError::SequenceOutOfRange {
            entity: T::ENTITY,
            key: key_text.clone(),
            sequence,
        };
        let revision = u64::try_from(sequence)
            .ok()
            .and_then(|n| Sequence::try_new(n).ok())
            .ok_or_else(out_of_range)?;
        let mut producer = Producer::<T>::new(self.source.clone());
        let envelope: Envelope<T> = match state {
            Some(state) => producer.upsert_at(state.clone(), revision),
            None => producer.delete_at(key.clone(), revision),
        }
        .map_err(|error| match error {
            SequenceError::InvalidKey {
                entity,
                key,
                reason,
            } => OutboxError::InvalidKey {
                entity,
                key,
                reason,
            },
            _ => out_of_range(),
        })?;
        let json = envelope.to_json()?;
        // The message also carries headers (`Nats-Msg-Id`,
        // `Nats-Expected-Last-Subject-Sequence`; in binary mode the
        // attributes as `ce-` headers): room for them is kept.
        let size = json.len() + HEADER_ROOM + envelope.id.len();
        if size > self.max_event_bytes {
            return Err(OutboxError::TooLarge {
                entity: T::ENTITY,
                key: key_text,
                size,
                limit: self.max_event_bytes,
            });
        }
        // What the relay will decode: refused now if it cannot (a NaN
        // written as `null`), not set aside after the commit.
        if let Err(error) = Envelope::<T>::from_json(&json) {
            return Err(OutboxError::DoesNotDecode {
                entity: T::ENTITY,
                key: key_text,
                reason: error.to_string(),
            });
        }
        // Serializing a Vec<u8> of JSON back into text cannot fail:
        // serde_json writes UTF-8.
        let payload = String::from_utf8(json).map_err(|e| OutboxError::database("encoding", e))?;
        let headers = serde_json::json!({ "Nats-Msg-Id": envelope.id }).to_string();
        #[cfg(feature = "nats")]
        let subject = self
            .subjects
            .as_ref()
            .and_then(|subjects| subjects.event(T::ENTITY, &key_text).ok());
        #[cfg(not(feature = "nats"))]
        let subject = None;
        Ok(Row {
            id: envelope.id,
            aggregatetype: T::ENTITY,
            aggregateid: key_text,
            operation: envelope.change.operation().as_str(),
            sequence,
            schemaversion: i64::from(T::VERSION),
            payload,
            headers,
            subject,
        })
    }
}

/// Whether `json` holds the escape `\u0000` (the character U+0000 in a
/// string), which PostgreSQL's `jsonb` refuses: an escape is a `\u0000`
/// preceded by an even number of backslashes.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn holds_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut from = 0;
    while let Some(found) = json[from..].find("\\u0000") {
        let at = from + found;
        let before = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if before % 2 == 0 {
            return true;
        }
        from = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::holds_nul;

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(holds_nul(r#"{"a":"x\u0000y"}"#));
        assert!(holds_nul(r#"{"a":"\\\u0000"}"#));
        assert!(!holds_nul(r#"{"a":"\\u0000"}"#));
        assert!(!holds_nul(r#"{"a":"u0000"}"#));
    }
}
