//! What every backend does to stage an event: check the key, build the
//! envelope with the [`Producer`]'s code, encode it and check its size.

use crate::envelope::{check_key, shown, Envelope, MAX_KEY_BYTES};
use crate::event::StateEvent;
use crate::producer::{Producer, SequenceError};
use crate::sequence::Sequence;

use super::{Outbox, OutboxError};

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
        if json.len() > self.max_event_bytes {
            return Err(OutboxError::TooLarge {
                entity: T::ENTITY,
                key: key_text,
                size: json.len(),
                limit: self.max_event_bytes,
            });
        }
        // Serializing a Vec<u8> of JSON back into text cannot fail:
        // serde_json writes UTF-8.
        let payload = String::from_utf8(json).map_err(|e| OutboxError::database("encoding", e))?;
        let headers = serde_json::json!({ "Nats-Msg-Id": envelope.id }).to_string();
        Ok(Row {
            id: envelope.id,
            aggregatetype: T::ENTITY,
            aggregateid: key_text,
            operation: envelope.change.operation().as_str(),
            sequence,
            schemaversion: i64::from(T::VERSION),
            payload,
            headers,
        })
    }
}
