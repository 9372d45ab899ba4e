//! The producer side: envelopes with a strictly increasing per-key sequence.

use std::collections::HashMap;

use crate::envelope::{check_key, shown, Envelope, MAX_KEY_BYTES};
use crate::event::StateEvent;
use crate::sequence::Sequence;

/// A sequence that would not move the key forward, or an event no consumer
/// could accept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    /// The given revision is not above the last one used for the key.
    #[error("`{entity}` key `{key}`: revision {given} is not above the last one used, {last}")]
    NotIncreasing {
        /// The entity name.
        entity: &'static str,
        /// The key, as written in `subject`.
        key: String,
        /// The revision given.
        given: Sequence,
        /// The last sequence used for the key.
        last: Sequence,
    },
    /// The given revision is above [`Sequence::MAX`] (`i64::MAX`), the
    /// largest sequence every store holds; the decoder would refuse it.
    #[error(
        "`{entity}` key `{key}`: revision {given} is out of range: sequences run \
         0..=9223372036854775807 (i64::MAX), the largest value every store holds"
    )]
    OutOfRange {
        /// The entity name.
        entity: &'static str,
        /// The key, as written in `subject`.
        key: String,
        /// The revision given.
        given: Sequence,
    },
    /// The key's text form cannot be a `subject`: it is empty, longer than
    /// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES), or holds a control
    /// character. The decoder would refuse every event of it.
    #[error("`{entity}` key `{key}`: {reason}")]
    InvalidKey {
        /// The entity name.
        entity: &'static str,
        /// The key, control characters escaped and cut at
        /// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES).
        key: String,
        /// Why it cannot be a subject.
        reason: String,
    },
    /// The key's counter reached [`Sequence::MAX`].
    #[error("`{entity}` key `{key}`: the sequence is exhausted")]
    Exhausted {
        /// The entity name.
        entity: &'static str,
        /// The key, as written in `subject`.
        key: String,
    },
}

/// Builds the envelopes of one entity type for one `source`, keeping the
/// per-key sequence strictly increasing.
///
/// Two ways to number events, pick per call:
///
/// - **The owner's revision** ([`Producer::upsert_at`],
///   [`Producer::delete_at`]): the sequence is a revision the owner already
///   stores with the entity (a row version, an optimistic-lock counter). This
///   is the recommended way: it survives restarts and several producer
///   instances, because it lives with the data.
/// - **A per-key counter** ([`Producer::upsert`], [`Producer::delete`]): the
///   producer counts for you, starting after the last sequence it knows for
///   the key. The counter lives in memory: after a restart, seed it with
///   [`Producer::resume`] from durable storage, or the sequence restarts at 1
///   and every replica will treat the new events as stale.
///
/// Either way the producer refuses a sequence that is not above the last one
/// it used for the key, a sequence above [`Sequence::MAX`] (`i64::MAX`, the
/// largest value every store holds), and a key whose text form the decoder
/// would refuse as a `subject` (empty, over
/// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES) bytes, or holding a
/// control character). The event `id` is `<entity>:<key>:<sequence>`, so a
/// retried publish of the same event carries the same id (brokers can
/// de-duplicate on it).
///
/// Every envelope gets the current span's W3C `traceparent` (with the
/// `opentelemetry` feature, see [`Envelope::with_current_trace`]), so that
/// the consumer's apply span joins the producer's trace, however the
/// envelope travels (published at once, or staged in an outbox first).
pub struct Producer<T: StateEvent> {
    source: String,
    last: HashMap<T::Key, Sequence>,
}

impl<T: StateEvent> Producer<T> {
    /// A producer for `source` (a URI-reference naming the owning service,
    /// e.g. `urn:example:crm`) that has not published anything yet.
    pub fn new(source: impl Into<String>) -> Self {
        Producer {
            source: source.into(),
            last: HashMap::new(),
        }
    }

    /// A producer that continues after the given last sequences per key.
    pub fn resume(
        source: impl Into<String>,
        last: impl IntoIterator<Item = (T::Key, Sequence)>,
    ) -> Self {
        Producer {
            source: source.into(),
            last: last.into_iter().collect(),
        }
    }

    /// An upsert of `state` at the key's next counter value.
    pub fn upsert(&mut self, state: T) -> Result<Envelope<T>, SequenceError> {
        let sequence = self.next(state.key())?;
        self.upsert_at(state, sequence)
    }

    /// An upsert of `state` at the owner's `revision`, which must be above
    /// the last sequence used for the key and at most [`Sequence::MAX`].
    pub fn upsert_at(
        &mut self,
        state: T,
        revision: Sequence,
    ) -> Result<Envelope<T>, SequenceError> {
        self.advance(state.key(), revision)?;
        let id = event_id::<T>(state.key(), revision);
        Ok(Envelope::upsert(self.source.clone(), id, revision, state).with_current_trace())
    }

    /// A delete of `key` at the key's next counter value.
    pub fn delete(&mut self, key: T::Key) -> Result<Envelope<T>, SequenceError> {
        let sequence = self.next(&key)?;
        self.delete_at(key, sequence)
    }

    /// A delete of `key` at the owner's `revision`, which must be above the
    /// last sequence used for the key and at most [`Sequence::MAX`].
    pub fn delete_at(
        &mut self,
        key: T::Key,
        revision: Sequence,
    ) -> Result<Envelope<T>, SequenceError> {
        self.advance(&key, revision)?;
        let id = event_id::<T>(&key, revision);
        Ok(Envelope::delete(self.source.clone(), id, key, revision).with_current_trace())
    }

    /// The last sequence used for `key`.
    pub fn last_sequence(&self, key: &T::Key) -> Option<Sequence> {
        self.last.get(key).copied()
    }

    /// The `source` this producer writes.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn next(&self, key: &T::Key) -> Result<Sequence, SequenceError> {
        match self.last.get(key) {
            None => Ok(Sequence::new(1)),
            Some(last) => last.next().ok_or_else(|| SequenceError::Exhausted {
                entity: T::ENTITY,
                key: key.to_string(),
            }),
        }
    }

    fn advance(&mut self, key: &T::Key, revision: Sequence) -> Result<(), SequenceError> {
        let text = key.to_string();
        let invalid = if text.is_empty() {
            Some("an empty key cannot be a subject".to_owned())
        } else {
            check_key(&text).err().map(|kind| kind.to_string())
        };
        if let Some(reason) = invalid {
            return Err(SequenceError::InvalidKey {
                entity: T::ENTITY,
                key: shown(&text, MAX_KEY_BYTES),
                reason,
            });
        }
        if !revision.in_range() {
            return Err(SequenceError::OutOfRange {
                entity: T::ENTITY,
                key: text,
                given: revision,
            });
        }
        match self.last.get_mut(key) {
            Some(last) if revision <= *last => Err(SequenceError::NotIncreasing {
                entity: T::ENTITY,
                key: key.to_string(),
                given: revision,
                last: *last,
            }),
            Some(last) => {
                *last = revision;
                Ok(())
            }
            None => {
                self.last.insert(key.clone(), revision);
                Ok(())
            }
        }
    }
}

fn event_id<T: StateEvent>(key: &T::Key, sequence: Sequence) -> String {
    format!("{}:{}:{}", T::ENTITY, key, sequence)
}
