//! [`StoreError`], the one error of the durable stores, and
//! [`StoreContext`], where it happened.

use core::fmt;

use crate::upcast::{BoxError, PayloadError};

/// Where a [`StoreError`] happened: the backend, the consumer and, when the
/// operation concerned one entity type, its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreContext {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// The consumer whose rows were read or written.
    pub consumer: String,
    /// The entity (`StateEvent::ENTITY`), `None` for operations on the whole
    /// database (opening it, creating the tables, purging a consumer).
    pub entity: Option<&'static str>,
}

impl StoreContext {
    /// The context of `backend` (e.g. `"sqlite"`) for `consumer`, and
    /// `entity` when the operation concerns one; for stores of your own.
    pub fn new(backend: &'static str, consumer: &str, entity: Option<&'static str>) -> Self {
        StoreContext {
            backend,
            consumer: consumer.to_owned(),
            entity,
        }
    }

    /// A [`StoreError::Database`] for `operation`, from any database error.
    pub fn database(&self, operation: &'static str, source: impl Into<BoxError>) -> StoreError {
        StoreError::Database {
            context: Box::new(self.clone()),
            operation,
            source: source.into(),
        }
    }
}

impl fmt::Display for StoreContext {
    /// For example ``sqlite store, consumer `billing`, entity `customer` ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} store, consumer `{}`", self.backend, self.consumer)?;
        if let Some(entity) = self.entity {
            write!(f, ", entity `{entity}`")?;
        }
        Ok(())
    }
}

/// What a durable store (`sqlite::SqliteStore`, `postgres::PostgresStore`)
/// reports when a load or a commit fails.
///
/// Every variant carries a [`StoreContext`] (backend, consumer, entity) and,
/// where a row is concerned, its key. A failed commit has written nothing:
/// the transaction is rolled back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error (I/O, locking, a lost connection, a
    /// constraint, a column of an unexpected type).
    #[error("{context}: {operation} failed: {}", chain(.source.as_ref()))]
    Database {
        /// Where.
        context: Box<StoreContext>,
        /// What was being done, e.g. `committing` or `reading ecst_replica`.
        operation: &'static str,
        /// The database driver's error.
        #[source]
        source: BoxError,
    },
    /// A state could not be serialized to JSON for writing.
    #[error("{context}: cannot encode the state of key `{key}` as JSON: {source}")]
    EncodeState {
        /// Where.
        context: Box<StoreContext>,
        /// The key, as written in `subject`.
        key: String,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// A stored state could not be decoded (or upcast) into the newest
    /// version this build knows.
    #[error(
        "{context}: the stored state of key `{key}` (schema version {version}) cannot be \
         decoded: {source}"
    )]
    DecodeState {
        /// Where.
        context: Box<StoreContext>,
        /// The key, as stored.
        key: String,
        /// The schema version the state was written in.
        version: u32,
        /// Why it failed.
        #[source]
        source: PayloadError,
    },
    /// A stored state was written by a newer build, in a schema version this
    /// build does not know: downgrading a consumer past its store's data.
    #[error(
        "{context}: the stored state of key `{key}` is in schema version {version}, newer than \
         this build knows (v{newest}); load the store with a build that knows v{version}"
    )]
    FutureVersion {
        /// Where.
        context: Box<StoreContext>,
        /// The key, as stored.
        key: String,
        /// The stored schema version.
        version: u32,
        /// The newest version this build knows (`StateEvent::VERSION`).
        newest: u32,
    },
    /// A stored key does not parse as the entity's key type, or two stored
    /// keys parse to the same key.
    #[error("{context}: stored key `{key}` is not a valid key: {reason}")]
    InvalidKey {
        /// Where.
        context: Box<StoreContext>,
        /// The key, as stored.
        key: String,
        /// Why.
        reason: String,
    },
    /// An integer does not fit its column or its Rust type: a `u64` above
    /// `i64::MAX` cannot be written to a signed 64-bit column (it is not
    /// wrapped), and a negative stored value is not a `u64`.
    #[error(
        "{context}: {column} = {value}{} is out of range: {expected}",
        for_key(.key)
    )]
    OutOfRange {
        /// Where.
        context: Box<StoreContext>,
        /// The column, as `table.column`.
        column: &'static str,
        /// The key of the row, when the row has one.
        key: Option<String>,
        /// The value.
        value: i128,
        /// The range the value must be in.
        expected: &'static str,
    },
    /// Another writer committed on this consumer name (and entity, or
    /// router) since this store last loaded or committed it: two processes
    /// (or an overlapping deploy) writing one consumer name. Nothing was
    /// written; reload to continue from what the store holds. One consumer
    /// name must have one writer at a time.
    #[error(
        "{context}: another writer moved the checkpoint since this one last read or wrote it \
         (stream position {}, now {}); nothing was written: one consumer name must have one \
         writer at a time",
        shown_position(.seen),
        shown_position(.stored)
    )]
    CheckpointMoved {
        /// Where.
        context: Box<StoreContext>,
        /// The stream position this writer last loaded or committed
        /// (`None`: no checkpoint).
        seen: Option<u64>,
        /// The stream position stored now (`None`: no checkpoint).
        stored: Option<u64>,
    },
    /// The entity's name is not one token of letters, digits, `_` and `-`
    /// starting with a letter (a hand-written
    /// [`StateEvent`](crate::StateEvent) impl; the derive refuses such a
    /// name): it could collide with a router's checkpoint row (`*`) or
    /// with other entities' subjects.
    #[error("{context}: `{entity}` is not a valid entity name: {reason}")]
    InvalidEntity {
        /// Where.
        context: Box<StoreContext>,
        /// The entity name.
        entity: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// The error and its causes, `a: b: c`, leaving out a cause its error's
/// message already repeats (some drivers' messages name only the kind of
/// failure, `db error`, and keep the server's message in the cause).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = error.source();
    }
    out
}

fn shown_position(position: &Option<u64>) -> String {
    position.map_or_else(|| "none".to_owned(), |p| p.to_string())
}

fn for_key(key: &Option<String>) -> String {
    key.as_ref()
        .map_or_else(String::new, |key| format!(" (key `{key}`)"))
}

impl StoreError {
    /// The key whose content this store cannot hold, when that is what the
    /// error is about (a state that does not serialize): the batch's other
    /// messages can still be committed without it.
    pub fn unstorable_key(&self) -> Option<&str> {
        match self {
            StoreError::EncodeState { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Where the error happened.
    pub fn context(&self) -> &StoreContext {
        match self {
            StoreError::Database { context, .. }
            | StoreError::EncodeState { context, .. }
            | StoreError::DecodeState { context, .. }
            | StoreError::FutureVersion { context, .. }
            | StoreError::InvalidKey { context, .. }
            | StoreError::OutOfRange { context, .. }
            | StoreError::InvalidEntity { context, .. }
            | StoreError::CheckpointMoved { context, .. } => context,
        }
    }
}
