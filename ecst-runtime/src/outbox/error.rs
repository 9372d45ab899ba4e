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
    /// The event's JSON does not decode back into the entity (a float that
    /// is NaN or infinite, written as `null`; a `Serialize` that does not
    /// match its `Deserialize`): no consumer, and not the relay, could
    /// read it, so it is refused while the transaction can roll back.
    #[error("cannot stage `{entity}` key `{key}`: the event does not decode back: {reason}")]
    DoesNotDecode {
        /// The entity name.
        entity: &'static str,
        /// The key.
        key: String,
        /// The decoder's error.
        reason: String,
    },
    /// The database cannot store the event as it is: PostgreSQL's `jsonb`
    /// refuses the character U+0000 (`\u0000`) anywhere in the JSON.
    /// Checked before the insert, so the transaction is still usable.
    #[error("cannot stage `{entity}` key `{key}`: {reason}")]
    Unstorable {
        /// The entity name.
        entity: &'static str,
        /// The key.
        key: String,
        /// What the database cannot store.
        reason: &'static str,
    },
    /// The table name given cannot be written into SQL as it is.
    #[error("`{table}` cannot be an outbox table: {reason}")]
    InvalidTable {
        /// The name given.
        table: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The database refused a statement (the transaction is then to be
    /// rolled back, as after any failed statement). The source is the
    /// driver's error (`rusqlite::Error`, `tokio_postgres::Error`); shown
    /// with the database's own message and SQLSTATE.
    #[error("the outbox's {operation} failed: {}", described(source))]
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

/// A driver's error as text: for a PostgreSQL error, the server's message,
/// SQLSTATE, detail and hint (tokio-postgres shows only "db error").
pub(crate) fn described(source: &BoxError) -> String {
    #[cfg(feature = "postgres")]
    if let Some(db) = source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        let mut text = format!(
            "{} {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str("; detail: ");
            text.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            text.push_str("; hint: ");
            text.push_str(hint);
        }
        return text;
    }
    let mut text = source.to_string();
    let mut next = source.source();
    while let Some(cause) = next {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        next = cause.source();
    }
    text
}
