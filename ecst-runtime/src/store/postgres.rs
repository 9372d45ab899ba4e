//! [`PostgresStore`]: a [`ReplicaStore`] in PostgreSQL (feature `postgres`,
//! through [`tokio_postgres`]; needs a Tokio runtime).
//!
//! # Tables
//!
//! Created if missing, shared by every consumer and entity in the database:
//!
//! | table | key | columns |
//! |---|---|---|
//! | `ecst_replica` | `consumer, entity, key` | `sequence`, `schema_version`, `state` (`JSON`, `NULL` for a tombstone), `read_version`, `deleted_at` (a tombstone's deletion time, microseconds since the Unix epoch) |
//! | `ecst_checkpoint` | `consumer, entity` | `stream_sequence`, `applied`, `purged_through`, `stream_created` (nanoseconds since the Unix epoch, `NULL` until recorded), `entities` (a router's: the entities its checkpoint covers, sorted, comma-separated; `NULL` otherwise), `owed` (the keys owed to the change feed, JSON text: an array of keys, a router's an object of arrays by entity; `NULL`: none); a [`DurableRouter`](super::DurableRouter)'s one checkpoint under entity `*` ([`ROUTER_CHECKPOINT_ENTITY`]) |
//! | `ecst_parked` | `consumer, entity, stream_sequence` | `subject`, `key` (nullable), `reason`, `payload` (`BYTEA`), `kind`, `resolution` (nullable: pending) |
//!
//! Sequences and counters are `u64` in Rust and `BIGINT` in SQL: a value
//! above `i64::MAX` is a [`StoreError::OutOfRange`], never wrapped.
//!
//! States are stored as `JSON` in the newest schema version the writing
//! build knows, with that version beside them; a newer build upcasts them
//! when it loads the store. `JSON`, not `JSONB`: `JSONB` refuses a string
//! holding `\u0000`, which JSON and Rust strings allow, and a state the store
//! cannot hold would stop the consumer. Tables created by an earlier version
//! with a `JSONB` column are converted when the store opens.

use std::time::SystemTime;

use std::collections::HashMap;

use tokio_postgres::{Client, IsolationLevel, NoTls, Statement};

pub use tokio_postgres;

use super::rows::{
    check_unmoved, checkpoint_columns, created_column, loaded, stored_checkpoint, to_bigint,
    to_micros, RawCheckpoint, StoredParked, StoredRow,
};
use super::share::sealed::Sealed;
use super::share::{
    check_entity_name, encode, EncodedEntry, EntityRows, RouterCommit, RouterRows, Share,
    ROUTER_CHECKPOINT_ENTITY,
};
use super::{Checkpoint, Commit, Loaded, Parked, ReplicaStore, StoreContext, StoreError};
use crate::event::StateEvent;

const BACKEND: &str = "postgres";

/// Any constant: serializes concurrent `CREATE TABLE IF NOT EXISTS`, which
/// PostgreSQL does not (two sessions creating the same table at once can
/// fail on a unique index of the catalog).
const CREATE_LOCK: i64 = 0x6563_7374_7461_626c; // "ecsttabl"

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS ecst_replica (
    consumer       TEXT   NOT NULL,
    entity         TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    sequence       BIGINT NOT NULL,
    schema_version BIGINT NOT NULL,
    state          JSON,
    read_version   BIGINT,
    deleted_at     BIGINT,
    PRIMARY KEY (consumer, entity, key)
);
CREATE TABLE IF NOT EXISTS ecst_checkpoint (
    consumer        TEXT   NOT NULL,
    entity          TEXT   NOT NULL,
    stream_sequence BIGINT NOT NULL,
    applied         BIGINT NOT NULL,
    purged_through  BIGINT NOT NULL DEFAULT 0,
    stream_created  BIGINT,
    entities        TEXT,
    owed            TEXT,
    PRIMARY KEY (consumer, entity)
);
CREATE TABLE IF NOT EXISTS ecst_parked (
    consumer        TEXT   NOT NULL,
    entity          TEXT   NOT NULL,
    stream_sequence BIGINT NOT NULL,
    subject         TEXT   NOT NULL,
    key             TEXT,
    reason          TEXT   NOT NULL,
    payload         BYTEA  NOT NULL,
    kind            TEXT,
    resolution      TEXT,
    PRIMARY KEY (consumer, entity, stream_sequence)
);
-- Tables made by an earlier version: `read_version` was added, and `state`
-- was JSONB (which cannot hold the NUL character).
ALTER TABLE ecst_replica ADD COLUMN IF NOT EXISTS read_version BIGINT;
ALTER TABLE ecst_replica ADD COLUMN IF NOT EXISTS deleted_at BIGINT;
ALTER TABLE ecst_parked ADD COLUMN IF NOT EXISTS kind TEXT;
ALTER TABLE ecst_parked ADD COLUMN IF NOT EXISTS resolution TEXT;
ALTER TABLE ecst_checkpoint ADD COLUMN IF NOT EXISTS purged_through BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ecst_checkpoint ADD COLUMN IF NOT EXISTS stream_created BIGINT;
ALTER TABLE ecst_checkpoint ADD COLUMN IF NOT EXISTS entities TEXT;
ALTER TABLE ecst_checkpoint ADD COLUMN IF NOT EXISTS owed TEXT;
DO $$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'ecst_replica'
          AND column_name = 'state') = 'jsonb' THEN
        ALTER TABLE ecst_replica ALTER COLUMN state TYPE json USING state::json;
    END IF;
END $$;
";

const UPSERT_ENTRIES: &str = "
INSERT INTO ecst_replica (consumer, entity, key, sequence, schema_version, state, read_version, deleted_at)
SELECT $1, $2, u.key, u.sequence, $3, u.state::json, u.read_version, u.deleted_at
FROM UNNEST($4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[])
    AS u(key, sequence, state, read_version, deleted_at)
ON CONFLICT (consumer, entity, key) DO UPDATE SET
    sequence = EXCLUDED.sequence,
    schema_version = EXCLUDED.schema_version,
    state = EXCLUDED.state,
    read_version = EXCLUDED.read_version,
    deleted_at = EXCLUDED.deleted_at";

/// Whether an event's own `data` ([`StoredEntry::json`]) is written as
/// it is: not when it holds a `\u` escape. Serialized states write none
/// but for control characters; an event's text may hold any (in a field
/// `T` does not read, a lone surrogate that serde_json skips), and
/// servers have differed in what their `JSON` input takes of them.
///
/// [`StoredEntry::json`]: super::StoredEntry::json
fn keeps_json(json: &str) -> bool {
    !json.contains("\\u")
}

/// Deletes purged tombstones (never a state).
const DELETE_TOMBSTONES: &str = "
DELETE FROM ecst_replica
WHERE consumer = $1 AND entity = $2 AND key = ANY($3::text[]) AND state IS NULL";

/// Gives tombstones written without a deletion time (by a version of ecst
/// that did not store it) the time the store is opened: their age counts
/// from then, never from before the delete.
const STAMP_TOMBSTONES: &str = "
UPDATE ecst_replica SET deleted_at = $1 WHERE state IS NULL AND deleted_at IS NULL";

const UPSERT_PARKED: &str = "
INSERT INTO ecst_parked (consumer, entity, stream_sequence, subject, key, reason, payload, kind, resolution)
SELECT $1, $2, u.stream_sequence, u.subject, u.key, u.reason, u.payload, u.kind, u.resolution
FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::text[])
    AS u(stream_sequence, subject, key, reason, payload, kind, resolution)
ON CONFLICT (consumer, entity, stream_sequence) DO UPDATE SET
    subject = EXCLUDED.subject,
    key = EXCLUDED.key,
    reason = EXCLUDED.reason,
    payload = EXCLUDED.payload,
    kind = EXCLUDED.kind,
    resolution = EXCLUDED.resolution";

const DELETE_PARKED: &str = "
DELETE FROM ecst_parked
WHERE consumer = $1 AND entity = $2 AND stream_sequence = ANY($3::bigint[])";

const UPSERT_CHECKPOINT: &str = "
INSERT INTO ecst_checkpoint (consumer, entity, stream_sequence, applied, purged_through, stream_created, entities, owed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (consumer, entity) DO UPDATE SET
    stream_sequence = EXCLUDED.stream_sequence,
    applied = EXCLUDED.applied,
    purged_through = EXCLUDED.purged_through,
    stream_created = EXCLUDED.stream_created,
    entities = EXCLUDED.entities,
    owed = COALESCE(EXCLUDED.owed, ecst_checkpoint.owed)";

/// The router's covered entities and a checkpoint row's owed keys.
const SELECT_EXTRAS: &str = "
SELECT entities, owed FROM ecst_checkpoint WHERE consumer = $1 AND entity = $2";

const SELECT_ENTRIES: &str = "
SELECT key, sequence, schema_version, state::text, read_version, deleted_at FROM ecst_replica
WHERE consumer = $1 AND entity = $2";

const SELECT_CHECKPOINT: &str = "
SELECT stream_sequence, applied, purged_through, stream_created FROM ecst_checkpoint
WHERE consumer = $1 AND entity = $2";

/// Serializes the commits of one consumer name and checkpoint row (even
/// before the row exists), so that the check that it is still the row this
/// writer saw and the write are one step.
const LOCK_CHECKPOINT: &str = "
SELECT pg_advisory_xact_lock(hashtext($1::text || '/' || $2::text))";

const SELECT_PARKED: &str = "
SELECT stream_sequence, subject, key, reason, payload, kind, resolution FROM ecst_parked
WHERE consumer = $1 AND entity = $2
ORDER BY stream_sequence";

/// The statements, prepared once per connection.
struct Statements {
    upsert_entries: Statement,
    delete_tombstones: Statement,
    upsert_parked: Statement,
    delete_parked: Statement,
    upsert_checkpoint: Statement,
    select_entries: Statement,
    select_checkpoint: Statement,
    select_parked: Statement,
    lock_checkpoint: Statement,
    select_extras: Statement,
}

/// A [`ReplicaStore`] in PostgreSQL, for one consumer and any number of
/// entity types.
///
/// Rows are keyed by the consumer name and the entity name of the
/// replica's type, so several consumers and entities can share one
/// database. One consumer name must have one writer at a time: a commit
/// checks, in its transaction and under an advisory lock on the consumer
/// name and checkpoint row, that the row is still the one this store last
/// loaded or committed, and otherwise fails with
/// [`StoreError::CheckpointMoved`], writing nothing. Every
/// [`ReplicaStore::commit`] is one transaction (one statement per table,
/// the rows passed as arrays); every [`ReplicaStore::load`] reads from one
/// `REPEATABLE READ` snapshot.
///
/// ```no_run
/// use ecst_runtime::store::postgres::PostgresStore;
/// use ecst_runtime::store::DurableReplica;
/// # use ecst_runtime::StateEvent;
///
/// # async fn run<Customer: StateEvent>() -> Result<(), ecst_runtime::store::StoreError> {
/// let store = PostgresStore::connect("host=127.0.0.1 user=postgres dbname=app", "billing").await?;
/// let replica = DurableReplica::<Customer, _>::open(store).await?;
/// println!("resume after stream sequence {}", replica.resume_after());
/// # Ok(())
/// # }
/// ```
pub struct PostgresStore {
    client: Client,
    consumer: String,
    statements: Statements,
    /// The checkpoint rows last loaded or committed, by entity (`*`: a
    /// router's): a commit writes only over the row it saw.
    seen: HashMap<String, Option<RawCheckpoint>>,
}

impl PostgresStore {
    /// Connects without TLS (`config` is a `tokio_postgres` connection
    /// string, `host=.. user=.. dbname=..` or a `postgresql://` URL), creates
    /// the tables if missing and prepares the statements.
    ///
    /// Must be called inside a Tokio runtime (otherwise it returns a
    /// [`StoreError::Database`] saying so): the connection is driven by a
    /// task spawned with `tokio::spawn`, which ends when the store is
    /// dropped or the connection breaks; after a break every call returns an
    /// error. For TLS, pooling or custom settings, connect yourself and use
    /// [`PostgresStore::from_client`].
    pub async fn connect(config: &str, consumer: &str) -> Result<Self, StoreError> {
        let context = StoreContext::new(BACKEND, consumer, None);
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| context.database("connecting", e))?;
        let (client, connection) = tokio_postgres::connect(config, NoTls)
            .await
            .map_err(|e| context.database("connecting", e))?;
        // A broken connection surfaces as the error of the client's next
        // call; nothing to report here.
        runtime.spawn(async move {
            let _ = connection.await;
        });
        Self::from_client(client, consumer).await
    }

    /// Uses a client connected by the caller (whose connection task the
    /// caller drives), creates the tables if missing and prepares the
    /// statements.
    pub async fn from_client(client: Client, consumer: &str) -> Result<Self, StoreError> {
        let context = StoreContext::new(BACKEND, consumer, None);
        let mut client = client;
        {
            let create = |e| context.database("creating the tables", e);
            let tx = client.transaction().await.map_err(create)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CREATE_LOCK])
                .await
                .map_err(create)?;
            tx.batch_execute(CREATE_TABLES).await.map_err(create)?;
            tx.execute(STAMP_TOMBSTONES, &[&to_micros(SystemTime::now())])
                .await
                .map_err(create)?;
            tx.commit().await.map_err(create)?;
        }
        let prepare = |e| context.database("preparing the statements", e);
        let statements = Statements {
            upsert_entries: client.prepare(UPSERT_ENTRIES).await.map_err(prepare)?,
            delete_tombstones: client.prepare(DELETE_TOMBSTONES).await.map_err(prepare)?,
            upsert_parked: client.prepare(UPSERT_PARKED).await.map_err(prepare)?,
            delete_parked: client.prepare(DELETE_PARKED).await.map_err(prepare)?,
            upsert_checkpoint: client.prepare(UPSERT_CHECKPOINT).await.map_err(prepare)?,
            select_entries: client.prepare(SELECT_ENTRIES).await.map_err(prepare)?,
            select_checkpoint: client.prepare(SELECT_CHECKPOINT).await.map_err(prepare)?,
            select_parked: client.prepare(SELECT_PARKED).await.map_err(prepare)?,
            lock_checkpoint: client.prepare(LOCK_CHECKPOINT).await.map_err(prepare)?,
            select_extras: client.prepare(SELECT_EXTRAS).await.map_err(prepare)?,
        };
        Ok(PostgresStore {
            client,
            consumer: consumer.to_owned(),
            statements,
            seen: HashMap::new(),
        })
    }

    /// The consumer name whose rows this store reads and writes.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The client, for queries of your own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Deletes every row of this consumer (all entities: replicas,
    /// checkpoints, parked events) in one transaction. Other consumers'
    /// rows are untouched.
    pub async fn purge_consumer(&mut self) -> Result<(), StoreError> {
        let context = self.context(None);
        let fail = |e| context.database("purging the consumer", e);
        let tx = self.client.transaction().await.map_err(fail)?;
        for table in ["ecst_replica", "ecst_checkpoint", "ecst_parked"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE consumer = $1"),
                &[&self.consumer],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        self.seen.clear();
        Ok(())
    }

    fn context(&self, entity: Option<&'static str>) -> StoreContext {
        StoreContext::new(BACKEND, &self.consumer, entity)
    }

    async fn load_now<T: StateEvent>(&mut self) -> Result<Loaded<T>, StoreError> {
        let context = self.context(Some(T::ENTITY));
        check_entity_name(T::ENTITY, &context)?;
        let consumer = self.consumer.as_str();
        let tx = begin_load(&mut self.client, &context).await?;
        let (rows, parked) = read_entity(&tx, &self.statements, consumer, &context).await?;
        let raw = read_checkpoint(&tx, &self.statements, consumer, T::ENTITY, &context).await?;
        let (_, owed) = read_extras(&tx, &self.statements, consumer, T::ENTITY, &context).await?;
        tx.commit()
            .await
            .map_err(|e| context.database("finishing the load", e))?;
        // No await below: nothing of type `T` lives across one, so the
        // future is `Send` whatever `T` is.
        loaded(rows, parked, raw, owed.as_deref(), &mut self.seen, &context)
    }

    /// A router's rows: every entity's, and its one checkpoint, from one
    /// snapshot.
    async fn load_router_now(
        &mut self,
        entities: Vec<&'static str>,
    ) -> Result<RouterRows, StoreError> {
        let context = self.context(None);
        let consumer = self.consumer.as_str();
        let tx = begin_load(&mut self.client, &context).await?;
        let mut loaded = Vec::with_capacity(entities.len());
        for entity in entities {
            let context = StoreContext::new(BACKEND, consumer, Some(entity));
            let (entries, parked) = read_entity(&tx, &self.statements, consumer, &context).await?;
            loaded.push(EntityRows {
                context,
                entries,
                parked,
            });
        }
        let raw = read_checkpoint(
            &tx,
            &self.statements,
            consumer,
            ROUTER_CHECKPOINT_ENTITY,
            &context,
        )
        .await?;
        let checkpoint = raw
            .map(|(columns, created)| stored_checkpoint(columns, created, &context))
            .transpose()?;
        let (covered, owed) = read_extras(
            &tx,
            &self.statements,
            consumer,
            ROUTER_CHECKPOINT_ENTITY,
            &context,
        )
        .await?;
        tx.commit()
            .await
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
    /// transaction.
    async fn commit_now(
        &mut self,
        shares: &[Share<'_>],
        checkpoint_entity: &str,
        checkpoint: &Checkpoint,
        covered: Option<&str>,
        owed: Option<String>,
    ) -> Result<(), StoreError> {
        let consumer = self.consumer.as_str();
        let context = StoreContext::new(BACKEND, consumer, None);
        let statements = &self.statements;
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| context.database("committing", e))?;
        // Every `?` below drops `tx`, which rolls the transaction back.
        for share in shares {
            let context = StoreContext::new(BACKEND, consumer, Some(share.entity));
            write_share(&tx, statements, consumer, share, &context).await?;
        }
        let context = match shares {
            [one] if one.entity == checkpoint_entity => {
                StoreContext::new(BACKEND, consumer, Some(one.entity))
            }
            _ => context,
        };
        let write = |e| context.database("committing", e);
        tx.execute(
            &statements.lock_checkpoint,
            &[&consumer, &checkpoint_entity],
        )
        .await
        .map_err(write)?;
        let stored =
            read_checkpoint(&tx, statements, consumer, checkpoint_entity, &context).await?;
        check_unmoved(self.seen.get(checkpoint_entity), stored, &context)?;
        let [stream_sequence, applied, purged_through] = checkpoint_columns(checkpoint, &context)?;
        tx.execute(
            &statements.upsert_checkpoint,
            &[
                &consumer,
                &checkpoint_entity,
                &stream_sequence,
                &applied,
                &purged_through,
                &created_column(checkpoint),
                &covered,
                &owed,
            ],
        )
        .await
        .map_err(write)?;
        tx.commit().await.map_err(write)?;
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

/// A read-only `REPEATABLE READ` transaction: every table from one
/// snapshot.
async fn begin_load<'c>(
    client: &'c mut Client,
    context: &StoreContext,
) -> Result<tokio_postgres::Transaction<'c>, StoreError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| context.database("starting the load", e))
}

/// One entity's `ecst_replica` and `ecst_parked` rows (`context` names
/// the entity).
async fn read_entity(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    consumer: &str,
    context: &StoreContext,
) -> Result<(Vec<StoredRow<String>>, Vec<Parked>), StoreError> {
    let entity = context.entity.unwrap_or_default();
    let rows = tx
        .query(&statements.select_entries, &[&consumer, &entity])
        .await
        .map_err(|e| context.database("reading ecst_replica", e))?;
    let parked_rows = tx
        .query(&statements.select_parked, &[&consumer, &entity])
        .await
        .map_err(|e| context.database("reading ecst_parked", e))?;
    let read = |e| context.database("reading ecst_replica", e);
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        entries.push(StoredRow::<String> {
            key: row.try_get(0).map_err(read)?,
            sequence: row.try_get(1).map_err(read)?,
            schema_version: row.try_get(2).map_err(read)?,
            state: row.try_get(3).map_err(read)?,
            read_version: row.try_get(4).map_err(read)?,
            deleted_at: row.try_get(5).map_err(read)?,
        });
    }
    let read = |e| context.database("reading ecst_parked", e);
    let mut parked = Vec::with_capacity(parked_rows.len());
    for row in parked_rows {
        let stored = StoredParked {
            key: row.try_get(2).map_err(read)?,
            stream_sequence: row.try_get(0).map_err(read)?,
            subject: row.try_get(1).map_err(read)?,
            reason: row.try_get(3).map_err(read)?,
            payload: row.try_get(4).map_err(read)?,
            kind: row.try_get(5).map_err(read)?,
            resolution: row.try_get(6).map_err(read)?,
        };
        parked.push(stored.into_parked(context)?);
    }
    Ok((entries, parked))
}

/// The `entities` and `owed` columns of the checkpoint row stored under
/// `entity` (`NULL`, or no row: `None`).
async fn read_extras(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    consumer: &str,
    entity: &str,
    context: &StoreContext,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let read = |e| context.database("reading ecst_checkpoint", e);
    let Some(row) = tx
        .query_opt(&statements.select_extras, &[&consumer, &entity])
        .await
        .map_err(read)?
    else {
        return Ok((None, None));
    };
    Ok((row.try_get(0).map_err(read)?, row.try_get(1).map_err(read)?))
}

/// The checkpoint row stored under `entity` (a router's:
/// [`ROUTER_CHECKPOINT_ENTITY`]), as stored.
async fn read_checkpoint(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    consumer: &str,
    entity: &str,
    context: &StoreContext,
) -> Result<Option<RawCheckpoint>, StoreError> {
    let read = |e| context.database("reading ecst_checkpoint", e);
    let row = tx
        .query_opt(&statements.select_checkpoint, &[&consumer, &entity])
        .await
        .map_err(read)?;
    row.map(|row| {
        Ok((
            [
                row.try_get(0).map_err(read)?,
                row.try_get(1).map_err(read)?,
                row.try_get(2).map_err(read)?,
            ],
            row.try_get(3).map_err(read)?,
        ))
    })
    .transpose()
}

/// Writes one entity's share (one statement per table, the rows passed as
/// arrays). A key given twice keeps its last entry, as row-by-row upserts
/// would.
async fn write_share(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    consumer: &str,
    share: &Share<'_>,
    context: &StoreContext,
) -> Result<(), StoreError> {
    let entity = share.entity;
    let write = |e| context.database("committing", e);
    if !share.entries.is_empty() {
        let mut index = HashMap::with_capacity(share.entries.len());
        let mut entries: Vec<&EncodedEntry> = Vec::with_capacity(share.entries.len());
        for entry in &share.entries {
            match index.get(entry.key.as_str()) {
                Some(&i) => entries[i] = entry,
                None => {
                    index.insert(entry.key.as_str(), entries.len());
                    entries.push(entry);
                }
            }
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut sequences = Vec::with_capacity(entries.len());
        let mut states = Vec::with_capacity(entries.len());
        let mut read_versions = Vec::with_capacity(entries.len());
        let mut deleted_ats = Vec::with_capacity(entries.len());
        for entry in entries {
            read_versions.push(i64::from(entry.read_version));
            deleted_ats.push(entry.deleted_at.map(to_micros));
            sequences.push(to_bigint(
                entry.sequence,
                context,
                "ecst_replica.sequence",
                Some(&entry.key),
            )?);
            keys.push(entry.key.as_str());
            states.push(entry.state.as_deref());
        }
        tx.execute(
            &statements.upsert_entries,
            &[
                &consumer,
                &entity,
                &i64::from(share.version),
                &keys,
                &sequences,
                &states,
                &read_versions,
                &deleted_ats,
            ],
        )
        .await
        .map_err(write)?;
    }

    if !share.purged.is_empty() {
        tx.execute(
            &statements.delete_tombstones,
            &[&consumer, &entity, &share.purged],
        )
        .await
        .map_err(write)?;
    }

    if !share.parked.is_empty() {
        let parked = last_of_each(share.parked);
        let mut stream_sequences = Vec::with_capacity(parked.len());
        let mut subjects = Vec::with_capacity(parked.len());
        let mut keys = Vec::with_capacity(parked.len());
        let mut reasons = Vec::with_capacity(parked.len());
        let mut payloads = Vec::with_capacity(parked.len());
        let mut kinds = Vec::with_capacity(parked.len());
        let mut resolutions = Vec::with_capacity(parked.len());
        for parked in parked {
            kinds.push(parked.reason.kind.as_str());
            resolutions.push(parked.resolution.as_ref().map(|r| r.to_column()));
            stream_sequences.push(to_bigint(
                parked.stream_sequence,
                context,
                "ecst_parked.stream_sequence",
                parked.key.as_deref(),
            )?);
            subjects.push(parked.subject.as_str());
            keys.push(parked.key.as_deref());
            reasons.push(parked.reason.message.as_str());
            payloads.push(parked.payload.as_slice());
        }
        tx.execute(
            &statements.upsert_parked,
            &[
                &consumer,
                &entity,
                &stream_sequences,
                &subjects,
                &keys,
                &reasons,
                &payloads,
                &kinds,
                &resolutions,
            ],
        )
        .await
        .map_err(write)?;
    }

    if !share.unparked.is_empty() {
        let unparked = share
            .unparked
            .iter()
            .map(|&s| to_bigint(s, context, "ecst_parked.stream_sequence", None))
            .collect::<Result<Vec<_>, _>>()?;
        tx.execute(&statements.delete_parked, &[&consumer, &entity, &unparked])
            .await
            .map_err(write)?;
    }
    Ok(())
}

/// The parked events with, for a stream sequence given twice, only the last
/// (as row-by-row upserts would leave it; one `INSERT .. ON CONFLICT` may
/// not touch a row twice).
fn last_of_each(parked: &[Parked]) -> Vec<&Parked> {
    let mut index = std::collections::HashMap::with_capacity(parked.len());
    let mut out: Vec<&Parked> = Vec::with_capacity(parked.len());
    for p in parked {
        match index.get(&p.stream_sequence) {
            Some(&i) => out[i] = p,
            None => {
                index.insert(p.stream_sequence, out.len());
                out.push(p);
            }
        }
    }
    out
}

impl core::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("consumer", &self.consumer)
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// Every entity type in one database, each under its own `entity` name.
impl<T: StateEvent> ReplicaStore<T> for PostgresStore {
    type Error = StoreError;

    fn unstorable_key(error: &StoreError) -> Option<String> {
        error.unstorable_key().map(str::to_owned)
    }

    fn load(&mut self) -> impl core::future::Future<Output = Result<Loaded<T>, StoreError>> + Send {
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
            keeps_json,
        );
        let checkpoint = commit.checkpoint;
        let owed = super::owed::replica_column(commit.owed);
        let context = self.context(None);
        async move {
            match share {
                Ok(share) => {
                    self.commit_now(&[share], T::ENTITY, &checkpoint, None, owed)
                        .await
                }
                Err(unencodable) => Err(unencodable.into_error(context)),
            }
        }
    }
}

/// A router's entities in one database, each under its own `entity` name,
/// and its checkpoint under [`ROUTER_CHECKPOINT_ENTITY`].
impl Sealed for PostgresStore {
    fn router_context(&self) -> StoreContext {
        self.context(None)
    }

    fn keeps_json(json: &str) -> bool {
        keeps_json(json)
    }

    fn load_router(
        &mut self,
        entities: &[&'static str],
    ) -> impl core::future::Future<Output = Result<RouterRows, StoreError>> + Send {
        self.load_router_now(entities.to_vec())
    }

    async fn commit_router(&mut self, commit: RouterCommit<'_>) -> Result<(), StoreError> {
        self.commit_now(
            &commit.shares,
            ROUTER_CHECKPOINT_ENTITY,
            &commit.checkpoint,
            Some(&commit.covered),
            super::owed::router_column(commit.owed.as_ref()),
        )
        .await
    }
}
