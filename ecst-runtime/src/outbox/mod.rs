//! The owner side: a transactional outbox, so an owner never publishes a
//! state it did not commit (features `sqlite` and/or `postgres`; the relay
//! also needs `nats`).
//!
//! An owner that writes its row and then publishes can crash in between
//! (the event is lost, replicas stay stale) or publish a state its database
//! rolled back. With the outbox the event is a row written in the owner's
//! own transaction:
//!
//! ```ignore
//! let tx = conn.transaction()?;
//! save_customer(&tx, &customer)?;          // the owner's own write
//! outbox.stage(&tx, &customer)?;           // the event, in the same transaction
//! tx.commit()?;                            // both, or neither
//! ```
//!
//! [`Outbox::stage`] (and [`Outbox::stage_delete`]) assigns the key's next
//! sequence inside the transaction, from a per-key counter row
//! (`<table>_sequence`, upserted with `sequence = sequence + 1`): two owner
//! instances writing one key at once are serialised by that row's lock, so
//! the sequence is strictly increasing per key and per key the commit order
//! is the sequence order. It builds the CloudEvents envelope with the same
//! code as [`Producer`](crate::Producer) (event id
//! `<entity>:<key>:<sequence>`) and inserts one row into the outbox table.
//! What no consumer could accept is refused there, while the transaction
//! can still roll back: a key that cannot be a `subject`
//! ([`OutboxError::InvalidKey`]), an event whose message (with room for
//! its headers, [`HEADER_ROOM`]) is over the configured size
//! ([`OutboxError::TooLarge`]), a state whose JSON does not decode back
//! ([`OutboxError::DoesNotDecode`]: a NaN float, written as `null`), and in
//! PostgreSQL a text holding U+0000, which `jsonb` cannot store
//! ([`OutboxError::Unstorable`]). A staged row never blocks the relay.
//!
//! The relay ([`OutboxRelay`], feature `nats`) publishes committed rows to
//! JetStream and marks them sent only after the server's acknowledgement;
//! see its documentation for ordering, crashes and several relays.
//!
//! # Tables
//!
//! [`Outbox::create_sqlite`] / [`Outbox::create_postgres`] create them if
//! missing. The outbox table uses the column names of Debezium's outbox
//! event router, so a team that already runs Debezium can route the same
//! table without ecst's relay (see `docs/outbox-debezium.md`):
//!
//! | column | content |
//! |---|---|
//! | `position` | row number; orders the rows of one key, never used as a high-water mark |
//! | `id` | the event id, `<entity>:<key>:<sequence>` (the `Nats-Msg-Id`) |
//! | `aggregatetype` | the entity name (CloudEvents `type`) |
//! | `aggregateid` | the key, as the envelope's `subject` |
//! | `type` | the operation: `upsert` or `delete` |
//! | `payload` | the CloudEvents JSON of the event (structured mode); `jsonb` in PostgreSQL |
//! | `sequence` | the per-key sequence |
//! | `schemaversion` | the schema version of the payload's `data` |
//! | `headers` | the message headers as a JSON object: `{"Nats-Msg-Id": "<id>"}` |
//! | `created_at` | when the row was staged |
//! | `sent_at` | when the relay had it acknowledged (kept only with a retention period) |
//! | `error` | why the relay could not publish the row (it is then skipped, and kept) |
//! | `subject` | the NATS subject the relay publishes the row on, `<prefix>.<entity>.<encoded key>`, when the outbox was given its subjects ([`Outbox::with_subjects`], feature `nats`); `NULL` otherwise. A Debezium pipeline into NATS routes by it |
//!
//! `<table>_sequence` holds the last sequence per (`aggregatetype`,
//! `aggregateid`): the first event of a key is sequence 1. An owner that
//! numbered its events before (with [`Producer::upsert_at`](crate::Producer::upsert_at))
//! inserts its last sequence per key there once. `<table>_lease` holds the
//! relay lease.

mod error;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod stage;
mod table;

#[cfg(feature = "nats")]
mod relay;

pub use error::OutboxError;
pub use stage::{Staged, StagingTransaction, HEADER_ROOM};

#[cfg(feature = "nats")]
pub use relay::{OutboxRelay, RelayError, RelayReport, RelaySettings};

/// The `rusqlite` crate the outbox stages into, so a transaction of the
/// same version is at hand.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use rusqlite;
/// The `tokio-postgres` crate the outbox stages into, so a transaction of
/// the same version is at hand.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use tokio_postgres;

use std::sync::Arc;

use crate::event::StateEvent;

use table::Tables;

/// The largest staged event by default, in bytes of CloudEvents JSON:
/// nats-server's default `max_payload` (1 MiB), which is also what a
/// [`Follower`](crate::nats::Follower) accepts by default.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// The default outbox table.
pub const DEFAULT_TABLE: &str = "ecst_outbox";

/// An outbox: where and how an owner stages its events.
///
/// Cheap to clone; clones share the notifier that wakes an in-process
/// [`OutboxRelay`].
#[derive(Clone, Debug)]
pub struct Outbox {
    tables: Arc<Tables>,
    source: String,
    max_event_bytes: usize,
    #[cfg(feature = "nats")]
    subjects: Option<crate::nats::Subjects>,
    #[cfg(feature = "nats")]
    wake: Arc<tokio::sync::Notify>,
}

impl Outbox {
    /// An outbox in the table [`DEFAULT_TABLE`] for events of `source` (a
    /// URI-reference naming the owning service, e.g. `urn:example:crm`).
    pub fn new(source: impl Into<String>) -> Self {
        Outbox {
            tables: Arc::new(Tables::new(DEFAULT_TABLE)),
            source: source.into(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            #[cfg(feature = "nats")]
            subjects: None,
            #[cfg(feature = "nats")]
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The same outbox in `table` (`name` or `schema.name`, ASCII letters,
    /// digits and `_`, not starting with a digit, at most 48 bytes a part).
    /// The name is quoted in SQL (a keyword such as `order` works) and
    /// taken in lower case, as PostgreSQL takes an unquoted name.
    pub fn with_table(mut self, table: &str) -> Result<Self, OutboxError> {
        table::check_name(table)?;
        self.tables = Arc::new(Tables::new(table));
        Ok(self)
    }

    /// The same outbox refusing events whose message would be over `bytes`
    /// ([`DEFAULT_MAX_EVENT_BYTES`] by default): the CloudEvents JSON, plus
    /// the event id and [`HEADER_ROOM`] bytes for the message's headers.
    /// Set it no higher than the server's `max_payload` and the consumers'
    /// limit. (A message the server refuses all the same, with trace
    /// headers longer than the room kept, is set aside by the relay with
    /// the reason, never retried for ever.)
    #[must_use]
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// The same outbox also checking, at stage time, that each key's
    /// subject under `subjects` is within
    /// [`MAX_SUBJECT_BYTES`](crate::nats::MAX_SUBJECT_BYTES) (without it,
    /// keys are checked as the envelope decoder does: at most
    /// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES) bytes, no control
    /// character, not empty, which fits any prefix and entity of up to 254
    /// bytes), and writing each row's subject in the column `subject` (what
    /// a Debezium pipeline into NATS routes by; `docs/outbox-debezium.md`).
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[must_use]
    pub fn with_subjects(mut self, subjects: crate::nats::Subjects) -> Self {
        self.subjects = Some(subjects);
        self
    }

    /// The outbox table's name.
    pub fn table(&self) -> &str {
        &self.tables.given
    }

    /// The `source` of the events staged.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The largest message staged, in bytes (see
    /// [`Outbox::with_max_event_bytes`]).
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Wakes the in-process relays of this outbox (and its clones) now.
    ///
    /// [`Outbox::stage`] already does it; a relay woken before the
    /// transaction commits looks again shortly after, and polls anyway.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn notify(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Stages an upsert of `state` in the owner's transaction `tx`: takes
    /// the key's next sequence and inserts the event's row, published once
    /// `tx` commits and never if it rolls back.
    ///
    /// With rusqlite's `Transaction` it returns the result; with
    /// tokio-postgres's, a future of it:
    ///
    /// ```ignore
    /// outbox.stage(&tx, &customer)?;          // SQLite
    /// outbox.stage(&tx, &customer).await?;    // PostgreSQL
    /// ```
    ///
    /// An error ([`OutboxError`]) stages nothing for this event; the caller
    /// rolls the transaction back (or carries on without the event).
    pub fn stage<'a, T, X>(&'a self, tx: &'a X, state: &'a T) -> X::Staging<'a>
    where
        T: StateEvent + Clone,
        X: StagingTransaction,
    {
        tx.stage_event(self, state.key(), Some(state))
    }

    /// Stages a delete of `key` in the owner's transaction `tx`, at the
    /// key's next sequence (the sequence row is kept, so a key created again
    /// continues above the delete):
    /// `outbox.stage_delete::<Customer, _>(&tx, &id)`.
    pub fn stage_delete<'a, T, X>(&'a self, tx: &'a X, key: &'a T::Key) -> X::Staging<'a>
    where
        T: StateEvent + Clone,
        X: StagingTransaction,
    {
        tx.stage_event::<T>(self, key, None)
    }

    fn staged(&self) {
        #[cfg(feature = "nats")]
        self.notify();
    }
}
