//! Staging into PostgreSQL (feature `postgres`).
//!
//! Each statement goes out with its parameter types (`query_typed`), in one
//! round trip and without a prepared statement, so the outbox works on any
//! connection of the owner's pool: staging costs two round trips (the
//! sequence, then the row).

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Transaction;

use super::stage::{sealed, StagingTransaction};
use super::{Outbox, OutboxError, Staged};
use crate::event::StateEvent;

/// The `LISTEN` channel of an outbox table: its name with `.` as `_`.
pub(crate) fn channel(table: &str) -> String {
    table.replace('.', "_")
}

impl Outbox {
    /// Creates the outbox tables in PostgreSQL if they are missing, with a
    /// trigger that notifies the relays (`NOTIFY`, delivered at commit) on
    /// every insert. Safe to run from several processes at once.
    pub async fn create_postgres(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<(), OutboxError> {
        let t = &self.tables;
        let (outbox, sequence, lease) = (&t.outbox, &t.sequence, &t.lease);
        let (unsent, sent) = (&t.unsent_index, &t.sent_index);
        let (trigger, function) = (&t.trigger, &t.trigger_function);
        let channel = channel(&t.given);
        let fail = |e| OutboxError::database("creating the tables", e);
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&t.given])
            .await
            .map_err(fail)?;
        tx.batch_execute(&format!(
            "
CREATE TABLE IF NOT EXISTS {outbox} (
    position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            text        NOT NULL UNIQUE,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb       NOT NULL,
    sequence      bigint      NOT NULL,
    schemaversion integer     NOT NULL,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    error         text,
    subject       text
);
-- A table created by an earlier version: `subject` was added.
ALTER TABLE {outbox} ADD COLUMN IF NOT EXISTS subject text;
CREATE INDEX IF NOT EXISTS {unsent} ON {outbox} (position)
    WHERE sent_at IS NULL AND error IS NULL;
CREATE INDEX IF NOT EXISTS {sent} ON {outbox} (sent_at) WHERE sent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {sequence} (
    aggregatetype text   NOT NULL,
    aggregateid   text   NOT NULL,
    sequence      bigint NOT NULL,
    PRIMARY KEY (aggregatetype, aggregateid)
);
CREATE TABLE IF NOT EXISTS {lease} (
    id         integer     PRIMARY KEY CHECK (id = 1),
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS {trigger} ON {outbox};
CREATE TRIGGER {trigger} AFTER INSERT ON {outbox}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
        ))
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    async fn stage_postgres<T: StateEvent + Clone>(
        &self,
        tx: &Transaction<'_>,
        key: &T::Key,
        state: Option<&T>,
    ) -> Result<Staged, OutboxError> {
        let key_text = self.key_text::<T>(key)?;
        let t = &self.tables;
        // The row lock of the key's counter row is held until commit: a
        // second writer of the same key waits here, then reads the first
        // one's value (READ COMMITTED re-checks the updated row).
        let sequence: i64 = tx
            .query_typed_one(
                &format!(
                    "INSERT INTO {} AS s (aggregatetype, aggregateid, sequence) VALUES ($1, $2, 1)
                     ON CONFLICT (aggregatetype, aggregateid)
                     DO UPDATE SET sequence = s.sequence + 1
                     RETURNING sequence",
                    t.sequence
                ),
                &[(&T::ENTITY, Type::TEXT), (&key_text, Type::TEXT)],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| OutboxError::database("taking the key's next sequence", e))?;
        let row = self.row::<T>(key, key_text, state, sequence)?;
        if super::stage::holds_nul(&row.payload) {
            return Err(OutboxError::Unstorable {
                entity: T::ENTITY,
                key: row.aggregateid,
                reason: "a text holds the character U+0000, which PostgreSQL's `jsonb` payload \
                         column cannot store (remove it from the state, or stage this entity \
                         in SQLite)",
            });
        }
        let schemaversion = i32::try_from(row.schemaversion).unwrap_or(i32::MAX);
        let params: [(&(dyn ToSql + Sync), Type); 9] = [
            (&row.id, Type::TEXT),
            (&row.aggregatetype, Type::TEXT),
            (&row.aggregateid, Type::TEXT),
            (&row.operation, Type::TEXT),
            (&row.payload, Type::TEXT),
            (&row.sequence, Type::INT8),
            (&schemaversion, Type::INT4),
            (&row.headers, Type::TEXT),
            (&row.subject, Type::TEXT),
        ];
        tx.execute_typed(
            &format!(
                "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload, sequence,
                                     schemaversion, headers, subject)
                     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9)",
                t.outbox
            ),
            &params,
        )
        .await
        .map_err(|e| OutboxError::database("inserting the event", e))?;
        self.staged();
        Ok(row.staged())
    }
}

impl sealed::Sealed for Transaction<'_> {}

impl StagingTransaction for Transaction<'_> {
    type Staging<'a>
        = Pin<Box<dyn Future<Output = Result<Staged, OutboxError>> + Send + 'a>>
    where
        Self: 'a;

    fn stage_event<'a, T: StateEvent + Clone>(
        &'a self,
        outbox: &'a Outbox,
        key: &'a T::Key,
        state: Option<&'a T>,
    ) -> Self::Staging<'a> {
        Box::pin(outbox.stage_postgres(self, key, state))
    }
}
