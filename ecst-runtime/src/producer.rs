//! The producer side: envelopes with a strictly increasing per-key sequence.

use std::collections::HashMap;

use crate::envelope::Envelope;
use crate::event::StateEvent;
use crate::sequence::Sequence;

/// A sequence that would not move the key forward.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
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
    /// The key's counter reached `u64::MAX`.
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
/// it used for the key. The event `id` is `<entity>:<key>:<sequence>`, so a
/// retried publish of the same event carries the same id (brokers can
/// de-duplicate on it).
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
    /// the last sequence used for the key.
    pub fn upsert_at(
        &mut self,
        state: T,
        revision: Sequence,
    ) -> Result<Envelope<T>, SequenceError> {
        self.advance(state.key(), revision)?;
        let id = event_id::<T>(state.key(), revision);
        Ok(Envelope::upsert(self.source.clone(), id, revision, state))
    }

    /// A delete of `key` at the key's next counter value.
    pub fn delete(&mut self, key: T::Key) -> Result<Envelope<T>, SequenceError> {
        let sequence = self.next(&key)?;
        self.delete_at(key, sequence)
    }

    /// A delete of `key` at the owner's `revision`, which must be above the
    /// last sequence used for the key.
    pub fn delete_at(
        &mut self,
        key: T::Key,
        revision: Sequence,
    ) -> Result<Envelope<T>, SequenceError> {
        self.advance(&key, revision)?;
        let id = event_id::<T>(&key, revision);
        Ok(Envelope::delete(self.source.clone(), id, key, revision))
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
