//! One batch of unsent rows: grouped per key, the newest event of each key
//! published, the outcome of each row decided.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream::context::PublishErrorKind;

use crate::envelope::Envelope;
use crate::event::StateEvent;
use crate::nats::{NatsError, Publisher};

/// An unsent outbox row, as the relay reads it.
#[derive(Debug)]
pub(crate) struct UnsentRow {
    pub(crate) position: i64,
    pub(crate) aggregatetype: String,
    pub(crate) aggregateid: String,
    pub(crate) sequence: i64,
    pub(crate) payload: String,
}

/// What became of the newest row of a key.
pub(crate) enum Outcome {
    /// The stream stored it (or already had it: a re-send after a crash).
    Published,
    /// The stream holds this key at sequence `stored`, not lower than the
    /// row's: superseded, or (above every sequence the outbox handed out
    /// for the key) a stream ahead of the outbox.
    NotNewer {
        /// The ecst sequence the stream holds.
        stored: u64,
    },
    /// It can never be published: kept with this reason, skipped.
    Poison(String),
    /// Not by this relay: it is of a schema version newer than this build
    /// knows. Left unsent for an upgraded relay.
    NewerVersion(String),
    /// Not now (the broker is down, say): tried again later.
    Failed(NatsError),
}

type Publishing<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// Publishes rows of one entity type: decodes the staged CloudEvents JSON
/// into the entity's envelope (upcasting a row staged by an older build)
/// and publishes it with the [`Publisher`].
pub(crate) trait Relayed: Send + Sync {
    fn publish<'a>(&'a self, publisher: &'a Publisher, payload: &'a str) -> Publishing<'a>;
}

pub(crate) struct Entity<T>(core::marker::PhantomData<fn() -> T>);

impl<T> Entity<T> {
    pub(crate) fn new() -> Self {
        Entity(core::marker::PhantomData)
    }
}

impl<T: StateEvent> Relayed for Entity<T> {
    fn publish<'a>(&'a self, publisher: &'a Publisher, payload: &'a str) -> Publishing<'a> {
        Box::pin(async move {
            let envelope = match Envelope::<T>::from_json(payload.as_bytes()) {
                Ok(envelope) => envelope,
                Err(error) if error.is_future_version() => {
                    return Outcome::NewerVersion(error.to_string())
                }
                Err(error) => {
                    return Outcome::Poison(format!("the staged event does not decode: {error}"))
                }
            };
            match publisher.publish(&envelope).await {
                Ok(_) => Outcome::Published,
                Err(NatsError::NotNewer { stored, .. }) => Outcome::NotNewer { stored },
                Err(
                    error @ (NatsError::InvalidSubject { .. }
                    | NatsError::SubjectTooLong { .. }
                    | NatsError::Encode(_)),
                ) => Outcome::Poison(error.to_string()),
                Err(NatsError::Publish { subject, source })
                    if source.kind() == PublishErrorKind::MaxPayloadExceeded =>
                {
                    Outcome::Poison(format!(
                        "the message to `{subject}` is larger than the server accepts \
                         (max_payload): {source}"
                    ))
                }
                Err(error) => Outcome::Failed(error),
            }
        })
    }
}

/// The rows of one key in a batch: the newest is published, the older ones
/// go with it (the stream keeps one message per subject: a state
/// published later would only be replaced by the newest).
pub(crate) struct KeyRows {
    /// Index of the newest row in the batch.
    pub(crate) newest: usize,
    /// Positions of every row of the key in the batch.
    pub(crate) positions: Vec<i64>,
}

/// Groups `rows` by (entity, key), keeping the one with the highest
/// sequence as the one to publish.
pub(crate) fn group(rows: &[UnsentRow]) -> Vec<KeyRows> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut groups: Vec<KeyRows> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let slot = *index
            .entry((&row.aggregatetype, &row.aggregateid))
            .or_insert_with(|| {
                groups.push(KeyRows {
                    newest: i,
                    positions: Vec::new(),
                });
                groups.len() - 1
            });
        let group = &mut groups[slot];
        group.positions.push(row.position);
        if row.sequence > rows[group.newest].sequence {
            group.newest = i;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: i64, key: &str, sequence: i64) -> UnsentRow {
        UnsentRow {
            position,
            aggregatetype: "customer".into(),
            aggregateid: key.into(),
            sequence,
            payload: String::new(),
        }
    }

    #[test]
    fn each_key_is_published_once_at_its_highest_sequence() {
        let rows = vec![
            row(1, "a", 1),
            row(2, "b", 4),
            row(3, "a", 3),
            row(4, "a", 2),
        ];
        let groups = group(&rows);
        assert_eq!(groups.len(), 2);
        assert_eq!(rows[groups[0].newest].sequence, 3);
        assert_eq!(groups[0].positions, vec![1, 3, 4]);
        assert_eq!(rows[groups[1].newest].position, 2);
    }
}
