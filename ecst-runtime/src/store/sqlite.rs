//! [`SqliteStore`]: a [`ReplicaStore`] in an SQLite database file (feature
//! `sqlite`; SQLite is compiled in, nothing needs to be installed).
//!
//! # Tables
//!
//! Created if missing, shared by every consumer and entity in the file:
//!
//! | table | key | columns |
//! |---|---|---|
//! | `ecst_replica` | `consumer, entity, key` | `sequence`, `schema_version`, `state` (JSON text, `NULL` for a tombstone), `read_version`, `deleted_at` (a tombstone's deletion time, microseconds since the Unix epoch) |
//! | `ecst_checkpoint` | `consumer, entity` | `stream_sequence`, `applied`, `purged_through`, `stream_created` (nanoseconds since the Unix epoch, `NULL` until recorded), `entities` (a router's: the entities its checkpoint covers, sorted, comma-separated; `NULL` otherwise), `owed` (the keys owed to the change feed, JSON: an array of keys, a router's an object of arrays by entity; `NULL`: none); a [`DurableRouter`](super::DurableRouter)'s one checkpoint under entity `*` ([`ROUTER_CHECKPOINT_ENTITY`]) |
//! | `ecst_parked` | `consumer, entity, stream_sequence` | `subject`, `key` (nullable), `reason`, `payload` (blob), `kind`, `resolution` (nullable: pending) |
//!
//! Sequences and counters are `u64` in Rust and signed 64-bit integers in
//! SQLite: a value above `i64::MAX` is a [`StoreError::OutOfRange`], never
//! wrapped.
//!
//! # Blocking
//!
//! SQLite is a synchronous library. The futures of [`ReplicaStore::load`]
//! and [`ReplicaStore::commit`] do all their work, blocking, the first time
//! they are polled, and are then ready: they contain no await point. A
//! commit costs one `fsync` of the write-ahead log (with the default
//! `synchronous=FULL`), typically a millisecond or a few. On a
//! multi-threaded Tokio runtime that is usually acceptable; when it is not,
//! run the replica on a thread of its own or inside
//! `tokio::task::block_in_place`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub use rusqlite;

use core::future::ready;

use super::rows::{
    check_unmoved, checkpoint_columns, created_column, loaded, stored_checkpoint, to_bigint,
    to_micros, RawCheckpoint, StoredParked, StoredRow,
};
use super::share::sealed::Sealed;
use super::share::{
    check_entity_name, encode, EntityRows, RouterCommit, RouterRows, Share,
    ROUTER_CHECKPOINT_ENTITY,
};
use super::{Checkpoint, Commit, Loaded, Parked, ReplicaStore, StoreContext, StoreError};
use crate::event::StateEvent;

const BACKEND: &str = "sqlite";

/// How long a writer waits for another connection's lock by default.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS ecst_replica (
    consumer       TEXT    NOT NULL,
    entity         TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    state          TEXT,
    read_version   INTEGER,
    deleted_at     INTEGER,
    PRIMARY KEY (consumer, entity, key)
) STRICT;
CREATE TABLE IF NOT EXISTS ecst_checkpoint (
    consumer        TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    stream_sequence INTEGER NOT NULL,
    applied         INTEGER NOT NULL,
    purged_through  INTEGER NOT NULL DEFAULT 0,
    stream_created  INTEGER,
    entities        TEXT,
    owed            TEXT,
    PRIMARY KEY (consumer, entity)
) STRICT;
CREATE TABLE IF NOT EXISTS ecst_parked (
    consumer        TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    stream_sequence INTEGER NOT NULL,
    subject         TEXT    NOT NULL,
    key             TEXT,
    reason          TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    kind            TEXT,
    resolution      TEXT,
    PRIMARY KEY (consumer, entity, stream_sequence)
) STRICT;
";

const UPSERT_ENTRY: &str = "
INSERT INTO ecst_replica (consumer, entity, key, sequence, schema_version, state, read_version, deleted_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (consumer, entity, key) DO UPDATE SET
    sequence = excluded.sequence,
    schema_version = excluded.schema_version,
    state = excluded.state,
    read_version = excluded.read_version,
    deleted_at = excluded.deleted_at";

/// Deletes a purged tombstone (never a state).
const DELETE_TOMBSTONE: &str = "
DELETE FROM ecst_replica WHERE consumer = ?1 AND entity = ?2 AND key = ?3 AND state IS NULL";

/// Gives tombstones written without a deletion time (by a version of ecst
/// that did not store it) the time the store is opened: their age counts
/// from then, never from before the delete.
const STAMP_TOMBSTONES: &str = "
UPDATE ecst_replica SET deleted_at = ?1 WHERE state IS NULL AND deleted_at IS NULL";

const UPSERT_PARKED: &str = "
INSERT INTO ecst_parked (consumer, entity, stream_sequence, subject, key, reason, payload, kind, resolution)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (consumer, entity, stream_sequence) DO UPDATE SET
    subject = excluded.subject,
    key = excluded.key,
    reason = excluded.reason,
    payload = excluded.payload,
    kind = excluded.kind,
    resolution = excluded.resolution";

const DELETE_PARKED: &str =
    "DELETE FROM ecst_parked WHERE consumer = ?1 AND entity = ?2 AND stream_sequence = ?3";

const UPSERT_CHECKPOINT: &str = "
INSERT INTO ecst_checkpoint (consumer, entity, stream_sequence, applied, purged_through, stream_created, entities, owed)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (consumer, entity) DO UPDATE SET
    stream_sequence = excluded.stream_sequence,
    applied = excluded.applied,
    purged_through = excluded.purged_through,
    stream_created = excluded.stream_created,
    entities = excluded.entities,
    owed = coalesce(excluded.owed, ecst_checkpoint.owed)";

/// The router's covered entities and a checkpoint row's owed keys.
const SELECT_EXTRAS: &str =
    "SELECT entities, owed FROM ecst_checkpoint WHERE consumer = ?1 AND entity = ?2";

/// A [`ReplicaStore`] in an SQLite database, for one consumer and any number
/// of entity types.
///
/// Rows are keyed by the consumer name given at [`SqliteStore::open`] and
/// the entity name of the replica's type, so several consumers and several
/// entities can share one file. One consumer name must have one writer at a
/// time: a commit checks, in its transaction, that the checkpoint row is
/// still the one this store last loaded or committed, and otherwise fails
/// with [`StoreError::CheckpointMoved`], writing nothing (a second process
/// on the same name, or an overlapping deploy, is refused instead of
/// writing its older state over the first's).
///
/// The connection runs in WAL mode with `synchronous=FULL` (see
/// [`SqliteStore::synchronous_normal`] for the trade-off) and a busy
/// timeout of 5 seconds ([`SqliteStore::busy_timeout`]). Every
/// [`ReplicaStore::commit`] is one `IMMEDIATE` transaction; every
/// [`ReplicaStore::load`] reads from one snapshot. See the [module
/// documentation](self) for the tables and for blocking.
///
/// ```no_run
/// use ecst_runtime::store::sqlite::SqliteStore;
/// use ecst_runtime::store::DurableReplica;
/// # use ecst_runtime::StateEvent;
///
/// # async fn run<Customer: StateEvent>() -> Result<(), ecst_runtime::store::StoreError> {
/// let store = SqliteStore::open("replica.db", "billing")?;
/// let replica = DurableReplica::<Customer, _>::open(store).await?;
/// println!("resume after stream sequence {}", replica.resume_after());
/// # Ok(())
/// # }
/// ```
pub struct SqliteStore {
    connection: Connection,
    consumer: String,
    /// The checkpoint rows last loaded or committed, by entity (`*`: a
    /// router's): a commit writes only over the row it saw.
    seen: HashMap<String, Option<RawCheckpoint>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` for `consumer` and creates
    /// the tables if missing.
    pub fn open(path: impl AsRef<Path>, consumer: &str) -> Result<Self, StoreError> {
        let context = StoreContext::new(BACKEND, consumer, None);
        let connection =
            Connection::open(path).map_err(|e| context.database("opening the database", e))?;
        Self::init(connection, consumer)
    }

    /// A private database in memory, gone when the store is dropped: for
    /// tests.
    pub fn in_memory(consumer: &str) -> Result<Self, StoreError> {
        let context = StoreContext::new(BACKEND, consumer, None);
        let connection = Connection::open_in_memory()
            .map_err(|e| context.database("opening the database", e))?;
        Self::init(connection, consumer)
    }

    fn init(connection: Connection, consumer: &str) -> Result<Self, StoreError> {
        let store = SqliteStore {
            connection,
            consumer: consumer.to_owned(),
            seen: HashMap::new(),
        };
        let context = store.context(None);
        store
            .connection
            .busy_timeout(DEFAULT_BUSY_TIMEOUT)
            .map_err(|e| context.database("setting busy_timeout", e))?;
        // An in-memory database answers `memory` and stays so; a file
        // switches to WAL for good.
        store
            .connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| context.database("setting journal_mode=WAL", e))?;
        store.set_synchronous("FULL")?;
        store
            .connection
            .execute_batch(CREATE_TABLES)
            .map_err(|e| context.database("creating the tables", e))?;
        store.migrate()?;
        Ok(store)
    }

    /// Brings tables made by an older version up to date: columns added
    /// since 0.1.0 (`NULL` in old rows, read as documented on each), and
    /// tombstones without a deletion time stamped with the present time.
    fn migrate(&self) -> Result<(), StoreError> {
        let context = self.context(None);
        let fail = |e| context.database("migrating the tables", e);
        for (table, column, ty) in [
            ("ecst_replica", "read_version", "INTEGER"),
            ("ecst_replica", "deleted_at", "INTEGER"),
            ("ecst_parked", "kind", "TEXT"),
            ("ecst_parked", "resolution", "TEXT"),
            (
                "ecst_checkpoint",
                "purged_through",
                "INTEGER NOT NULL DEFAULT 0",
            ),
            ("ecst_checkpoint", "stream_created", "INTEGER"),
            ("ecst_checkpoint", "entities", "TEXT"),
            ("ecst_checkpoint", "owed", "TEXT"),
        ] {
            let present: i64 = self
                .connection
                .query_row(
                    "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    params![table, column],
                    |row| row.get(0),
                )
                .map_err(fail)?;
            if present == 0 {
                self.connection
                    .execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .map_err(fail)?;
            }
        }
        self.connection
            .execute(STAMP_TOMBSTONES, [to_micros(SystemTime::now())])
            .map_err(fail)?;
        Ok(())
    }

    /// Switches to `synchronous=NORMAL`: commits no longer wait for the
    /// write-ahead log to reach the disk.
    ///
    /// The trade-off: in WAL mode, NORMAL still survives a crash of the
    /// process (every commit is atomic and the database stays consistent),
    /// but not a power loss or an operating-system crash, after which the
    /// last commits may be rolled back. Since the checkpoint is committed
    /// with the changes, the store still never holds half a batch; but if
    /// the messages of a lost commit were already acknowledged to the
    /// broker, they will not be redelivered and the replica misses them.
    /// Keep the default `FULL` unless the replica can be rebuilt (replayed
    /// from the start of the stream) after such a crash.
    pub fn synchronous_normal(self) -> Result<Self, StoreError> {
        self.set_synchronous("NORMAL")?;
        Ok(self)
    }

    /// Sets how long a write waits for a lock held by another connection to
    /// the same file before failing with "database is locked" (5 seconds by
    /// default).
    pub fn busy_timeout(self, timeout: Duration) -> Result<Self, StoreError> {
        self.connection
            .busy_timeout(timeout)
            .map_err(|e| self.context(None).database("setting busy_timeout", e))?;
        Ok(self)
    }

    fn set_synchronous(&self, level: &str) -> Result<(), StoreError> {
        self.connection
            .pragma_update(None, "synchronous", level)
            .map_err(|e| self.context(None).database("setting synchronous", e))
    }

    /// The consumer name whose rows this store reads and writes.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The connection, for queries of your own (reading the tables, or
    /// tables of your own in the same file).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Deletes every row of this consumer (all entities: replicas,
    /// checkpoints, parked events) in one transaction. Other consumers'
    /// rows are untouched.
    pub fn purge_consumer(&mut self) -> Result<(), StoreError> {
        let context = self.context(None);
        let fail = |e| context.database("purging the consumer", e);
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        for table in ["ecst_replica", "ecst_checkpoint", "ecst_parked"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE consumer = ?1"),
                [&self.consumer],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        self.seen.clear();
        Ok(())
    }

    fn context(&self, entity: Option<&'static str>) -> StoreContext {
        StoreContext::new(BACKEND, &self.consumer, entity)
    }

    fn load_now<T: StateEvent>(&mut self) -> Result<Loaded<T>, StoreError> {
        let context = self.context(Some(T::ENTITY));
        check_entity_name(T::ENTITY, &context)?;
        let consumer = self.consumer.as_str();
        // One read transaction: the three tables from the same snapshot.
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| context.database("starting the load", e))?;
        let (rows, parked) = read_entity(&tx, consumer, &context)?;
        let raw = read_checkpoint(&tx, consumer, T::ENTITY, &context)?;
        let (_, owed) = read_extras(&tx, consumer, T::ENTITY, &context)?;
        tx.commit()
            .map_err(|e| context.database("finishing the load", e))?;
        loaded(rows, parked, raw, owed.as_deref(), &mut self.seen, &context)
    }

    /// A router's rows: every entity's, and its one checkpoint, from one
    /// snapshot.
    fn load_router_now(&mut self, entities: &[&'static str]) -> Result<RouterRows, StoreError> {
        let context = self.context(None);
        let consumer = self.consumer.as_str();
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| context.database("starting the load", e))?;
        let mut loaded = Vec::with_capacity(entities.len());
        for &entity in entities {
            let context = StoreContext::new(BACKEND, consumer, Some(entity));
            let (entries, parked) = read_entity(&tx, consumer, &context)?;
            loaded.push(EntityRows {
                context,
                entries,
                parked,
            });
        }
        let raw = read_checkpoint(&tx, consumer, ROUTER_CHECKPOINT_ENTITY, &context)?;
        let checkpoint = raw
            .map(|(columns, created)| stored_checkpoint(columns, created, &context))
            .transpose()?;
        let (covered, owed) = read_extras(&tx, consumer, ROUTER_CHECKPOINT_ENTITY, &context)?;
        tx.commit()
            .map_err(|e| context.database("finishing the load", e))?;
        let owed = super::owed::router_map(owed.as_deref(), &context)?;
        self.seen.insert(ROUTER_CHECKPOINT_ENTITY.to_owned(), raw);
        Ok(RouterRows {
            entities: loaded,
            checkpoint,
            covered,
            owed,
        })
    }

    /// Writes `shares` and the checkpoint of `checkpoint_entity` in one
    /// `IMMEDIATE` transaction.
    fn commit_now(
        &mut self,
        shares: &[Share<'_>],
        checkpoint_entity: &str,
        checkpoint: &Checkpoint,
        covered: Option<&str>,
        owed: Option<String>,
    ) -> Result<(), StoreError> {
        let consumer = self.consumer.as_str();
        let context = StoreContext::new(BACKEND, consumer, None);
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| context.database("committing", e))?;
        // Every `?` below drops `tx`, which rolls the transaction back.
        for share in shares {
            let context = StoreContext::new(BACKEND, consumer, Some(share.entity));
            write_share(&tx, consumer, share, &context)?;
        }
        let context = match shares {
            [one] if one.entity == checkpoint_entity => {
                StoreContext::new(BACKEND, consumer, Some(one.entity))
            }
            _ => context,
        };
        let stored = read_checkpoint(&tx, consumer, checkpoint_entity, &context)?;
        check_unmoved(self.seen.get(checkpoint_entity), stored, &context)?;
        let write = |e| context.database("committing", e);
        let [stream_sequence, applied, purged_through] = checkpoint_columns(checkpoint, &context)?;
        // Cached: parsed once per connection, not once per commit.
        tx.prepare_cached(UPSERT_CHECKPOINT)
            .map_err(write)?
            .execute(params![
                consumer,
                checkpoint_entity,
                stream_sequence,
                applied,
                purged_through,
                created_column(checkpoint),
                covered,
                owed
            ])
            .map_err(write)?;
        tx.commit().map_err(write)?;
        self.seen.insert(
            checkpoint_entity.to_owned(),
            Some((
                [stream_sequence, applied, purged_through],
                created_column(checkpoint),
            )),
        );
        Ok(())
    }
}

/// One entity's `ecst_replica` and `ecst_parked` rows (`context` names
/// the entity).
fn read_entity(
    tx: &rusqlite::Transaction<'_>,
    consumer: &str,
    context: &StoreContext,
) -> Result<(Vec<StoredRow<String>>, Vec<Parked>), StoreError> {
    let entity = context.entity.unwrap_or_default();
    let mut entries = Vec::new();
    {
        let read = |e| context.database("reading ecst_replica", e);
        let mut statement = tx
            .prepare_cached(
                "SELECT key, sequence, schema_version, state, read_version, deleted_at \
                 FROM ecst_replica WHERE consumer = ?1 AND entity = ?2",
            )
            .map_err(read)?;
        let mut rows = statement.query(params![consumer, entity]).map_err(read)?;
        while let Some(row) = rows.next().map_err(read)? {
            entries.push(StoredRow::<String> {
                key: row.get(0).map_err(read)?,
                sequence: row.get(1).map_err(read)?,
                schema_version: row.get(2).map_err(read)?,
                state: row.get(3).map_err(read)?,
                read_version: row.get(4).map_err(read)?,
                deleted_at: row.get(5).map_err(read)?,
            });
        }
    }
    let mut parked = Vec::new();
    {
        let read = |e| context.database("reading ecst_parked", e);
        let mut statement = tx
            .prepare_cached(
                "SELECT stream_sequence, subject, key, reason, payload, kind, resolution \
                 FROM ecst_parked \
                 WHERE consumer = ?1 AND entity = ?2 ORDER BY stream_sequence",
            )
            .map_err(read)?;
        let mut rows = statement.query(params![consumer, entity]).map_err(read)?;
        while let Some(row) = rows.next().map_err(read)? {
            let stored = StoredParked {
                key: row.get(2).map_err(read)?,
                stream_sequence: row.get(0).map_err(read)?,
                subject: row.get(1).map_err(read)?,
                reason: row.get(3).map_err(read)?,
                payload: row.get(4).map_err(read)?,
                kind: row.get(5).map_err(read)?,
                resolution: row.get(6).map_err(read)?,
            };
            parked.push(stored.into_parked(context)?);
        }
    }
    Ok((entries, parked))
}

/// The `entities` and `owed` columns of the checkpoint row stored under
/// `entity` (`NULL`, or no row: `None`).
fn read_extras(
    tx: &rusqlite::Transaction<'_>,
    consumer: &str,
    entity: &str,
    context: &StoreContext,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let row: Option<(Option<String>, Option<String>)> = tx
        .query_row(SELECT_EXTRAS, params![consumer, entity], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(|e| context.database("reading ecst_checkpoint", e))?;
    Ok(row.unwrap_or_default())
}

/// The checkpoint row stored under `entity` (a router's:
/// [`ROUTER_CHECKPOINT_ENTITY`]), as stored.
fn read_checkpoint(
    tx: &rusqlite::Transaction<'_>,
    consumer: &str,
    entity: &str,
    context: &StoreContext,
) -> Result<Option<RawCheckpoint>, StoreError> {
    let read = |e| context.database("reading ecst_checkpoint", e);
    let row: Option<([i64; 3], Option<i64>)> = tx
        .query_row(
            "SELECT stream_sequence, applied, purged_through, stream_created \
             FROM ecst_checkpoint WHERE consumer = ?1 AND entity = ?2",
            params![consumer, entity],
            |row| Ok(([row.get(0)?, row.get(1)?, row.get(2)?], row.get(3)?)),
        )
        .optional()
        .map_err(read)?;
    Ok(row)
}

/// Writes one entity's share: its entries, purged tombstones, parked and
/// unparked events.
fn write_share(
    tx: &rusqlite::Transaction<'_>,
    consumer: &str,
    share: &Share<'_>,
    context: &StoreContext,
) -> Result<(), StoreError> {
    let entity = share.entity;
    let write = |e| context.database("committing", e);
    {
        let mut upsert = tx.prepare_cached(UPSERT_ENTRY).map_err(write)?;
        for entry in &share.entries {
            let sequence = to_bigint(
                entry.sequence,
                context,
                "ecst_replica.sequence",
                Some(&entry.key),
            )?;
            upsert
                .execute(params![
                    consumer,
                    entity,
                    entry.key,
                    sequence,
                    i64::from(share.version),
                    entry.state.as_deref(),
                    i64::from(entry.read_version),
                    entry.deleted_at.map(to_micros),
                ])
                .map_err(write)?;
        }
    }
    {
        let mut delete = tx.prepare_cached(DELETE_TOMBSTONE).map_err(write)?;
        for key in &share.purged {
            delete
                .execute(params![consumer, entity, key])
                .map_err(write)?;
        }
    }
    {
        let mut insert = tx.prepare_cached(UPSERT_PARKED).map_err(write)?;
        for parked in share.parked {
            let stream_sequence = to_bigint(
                parked.stream_sequence,
                context,
                "ecst_parked.stream_sequence",
                parked.key.as_deref(),
            )?;
            insert
                .execute(params![
                    consumer,
                    entity,
                    stream_sequence,
                    parked.subject,
                    parked.key,
                    parked.reason.message,
                    parked.payload,
                    parked.reason.kind.as_str(),
                    parked.resolution.as_ref().map(|r| r.to_column()),
                ])
                .map_err(write)?;
        }
    }
    {
        let mut delete = tx.prepare_cached(DELETE_PARKED).map_err(write)?;
        for &stream_sequence in share.unparked {
            let stream_sequence = to_bigint(
                stream_sequence,
                context,
                "ecst_parked.stream_sequence",
                None,
            )?;
            delete
                .execute(params![consumer, entity, stream_sequence])
                .map_err(write)?;
        }
    }
    Ok(())
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.connection.path())
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// Every entity type in one file, each under its own `entity` name.
///
/// The futures block: see the [module documentation](self).
impl<T: StateEvent> ReplicaStore<T> for SqliteStore {
    type Error = StoreError;

    fn unstorable_key(error: &StoreError) -> Option<String> {
        error.unstorable_key().map(str::to_owned)
    }

    async fn load(&mut self) -> Result<Loaded<T>, StoreError> {
        self.load_now::<T>()
    }

    fn commit(
        &mut self,
        commit: Commit<'_, T>,
    ) -> impl core::future::Future<Output = Result<(), StoreError>> + Send {
        // Encoding happens here, when `commit` is called: the future then
        // holds plain rows, no `T`, and is `Send` whatever `T` is.
        let share = encode(
            commit.entries,
            commit.parked,
            commit.unparked,
            commit.purged,
            |_| true,
        );
        let checkpoint = commit.checkpoint;
        let owed = super::owed::replica_column(commit.owed);
        let result = match share {
            Ok(share) => self.commit_now(&[share], T::ENTITY, &checkpoint, None, owed),
            Err(unencodable) => Err(unencodable.into_error(self.context(None))),
        };
        ready(result)
    }
}

/// A router's entities in one file, each under its own `entity` name, and
/// its checkpoint under [`ROUTER_CHECKPOINT_ENTITY`].
///
/// The futures block: see the [module documentation](self).
impl Sealed for SqliteStore {
    fn router_context(&self) -> StoreContext {
        self.context(None)
    }

    fn load_router(
        &mut self,
        entities: &[&'static str],
    ) -> impl core::future::Future<Output = Result<RouterRows, StoreError>> + Send {
        ready(self.load_router_now(entities))
    }

    fn commit_router(
        &mut self,
        commit: RouterCommit<'_>,
    ) -> impl core::future::Future<Output = Result<(), StoreError>> + Send {
        ready(self.commit_now(
            &commit.shares,
            ROUTER_CHECKPOINT_ENTITY,
            &commit.checkpoint,
            Some(&commit.covered),
            super::owed::router_column(commit.owed.as_ref()),
        ))
    }
}
