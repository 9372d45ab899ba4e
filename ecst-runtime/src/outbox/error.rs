//! [`OutboxError`]: why an event could not be staged.

use crate::envelope::EncodeError;
use crate::upcast::BoxError;

/// Why an event could not be staged. Every variant is returned by the
/// staging call, inside the owner's transaction, which can then roll back:
/// nothing that reaches the outbox table can block the relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The key cannot be a `subject`: empty, over
    /// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES), holding a control
    /// character, or (with [`Outbox::with_subjects`](super::Outbox::with_subjects))
    /// its subject would be too long.
    #[error("cannot stage `{entity}` key `{key}`: {reason}")]
    InvalidKey {
        /// The entity name.
        entity: &'static str,
        /// The key, control characters escaped and cut at
        /// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES).
        key: String,
        /// Why it cannot be a subject.
        reason: String,
    },
    /// The event's CloudEvents JSON is larger than the outbox accepts
    /// ([`Outbox::with_max_event_bytes`](super::Outbox::with_max_event_bytes)).
    #[error(
        "cannot stage `{entity}` key `{key}`: the event is {size} bytes, over the limit of {limit}"
    )]
    TooLarge {
        /// The entity name.
        entity: &'static str,
        /// The key.
        key: String,
        /// The event's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The key's sequence reached [`Sequence::MAX`](crate::Sequence::MAX),
    /// or the sequence table holds a value out of range.
    #[error("cannot stage `{entity}` key `{key}`: sequence {sequence} is out of range")]
    SequenceOutOfRange {
        /// The entity name.
        entity: &'static str,
        /// The key.
        key: String,
        /// The sequence the table handed out.
        sequence: i64,
    },
    /// The state's `Serialize` implementation failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The table name given cannot be written into SQL as it is.
    #[error("`{table}` cannot be an outbox table: {reason}")]
    InvalidTable {
        /// The name given.
        table: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The database refused a statement (the transaction is then to be
    /// rolled back, as after any failed statement).
    #[error("the outbox's {operation} failed: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        source: BoxError,
    },
}

impl OutboxError {
    pub(crate) fn database(operation: &'static str, source: impl Into<BoxError>) -> Self {
        OutboxError::Database {
            operation,
            source: source.into(),
        }
    }
}
