//! Staging into SQLite (feature `sqlite`).

use rusqlite::{params, Connection, Transaction};

use super::stage::{sealed, Row, StagingTransaction};
use super::{Outbox, OutboxError, Staged};
use crate::event::StateEvent;

impl Outbox {
    /// Creates the outbox tables in SQLite if they are missing.
    pub fn create_sqlite(&self, conn: &Connection) -> Result<(), OutboxError> {
        let t = &self.tables;
        let (outbox, sequence, lease, base) = (&t.outbox, &t.sequence, &t.lease, &t.base);
        let (unsent, sent) = (&t.unsent_index, &t.sent_index);
        conn.execute_batch(&format!(
            "
CREATE TABLE IF NOT EXISTS {outbox} (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    aggregatetype TEXT    NOT NULL,
    aggregateid   TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    sequence      INTEGER NOT NULL,
    schemaversion INTEGER NOT NULL,
    headers       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    error         TEXT,
    subject       TEXT
);
CREATE INDEX IF NOT EXISTS {unsent} ON {base} (position)
    WHERE sent_at IS NULL AND error IS NULL;
CREATE INDEX IF NOT EXISTS {sent} ON {base} (sent_at) WHERE sent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {sequence} (
    aggregatetype TEXT    NOT NULL,
    aggregateid   TEXT    NOT NULL,
    sequence      INTEGER NOT NULL,
    PRIMARY KEY (aggregatetype, aggregateid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {lease} (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);"
        ))
        .map_err(|e| OutboxError::database("creating the tables", e))?;
        // A table created by an earlier version: `subject` was added. (A
        // statement naming a missing column does not prepare; any other
        // reason shows in the ALTER's error.)
        let has_subject = conn
            .prepare(&format!("SELECT subject FROM {outbox} LIMIT 0"))
            .is_ok();
        if !has_subject {
            conn.execute_batch(&format!("ALTER TABLE {outbox} ADD COLUMN subject TEXT"))
                .map_err(|e| OutboxError::database("creating the tables", e))?;
        }
        Ok(())
    }

    fn stage_sqlite<T: StateEvent + Clone>(
        &self,
        tx: &Transaction<'_>,
        key: &T::Key,
        state: Option<&T>,
    ) -> Result<Staged, OutboxError> {
        let key_text = self.key_text::<T>(key)?;
        let t = &self.tables;
        let sequence: i64 = tx
            .prepare_cached(&format!(
                "INSERT INTO {} AS s (aggregatetype, aggregateid, sequence) VALUES (?1, ?2, 1)
                 ON CONFLICT (aggregatetype, aggregateid) DO UPDATE SET sequence = s.sequence + 1
                 RETURNING sequence",
                t.sequence
            ))
            .and_then(|mut statement| {
                statement.query_row(params![T::ENTITY, key_text], |row| row.get(0))
            })
            .map_err(|e| OutboxError::database("taking the key's next sequence", e))?;
        let row = self.row::<T>(key, key_text, state, sequence)?;
        insert(tx, &t.outbox, &row)?;
        self.staged();
        Ok(row.staged())
    }
}

impl sealed::Sealed for Transaction<'_> {}

impl StagingTransaction for Transaction<'_> {
    type Staging<'a>
        = Result<Staged, OutboxError>
    where
        Self: 'a;

    fn stage_event<'a, T: StateEvent + Clone>(
        &'a self,
        outbox: &'a Outbox,
        key: &'a T::Key,
        state: Option<&'a T>,
    ) -> Self::Staging<'a> {
        outbox.stage_sqlite(self, key, state)
    }
}

fn insert(tx: &Transaction<'_>, table: &str, row: &Row) -> Result<(), OutboxError> {
    let now = now_millis();
    tx.prepare_cached(&format!(
        "INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload, sequence,
                              schemaversion, headers, created_at, subject)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut statement| {
        statement.execute(params![
            row.id,
            row.aggregatetype,
            row.aggregateid,
            row.operation,
            row.payload,
            row.sequence,
            row.schemaversion,
            row.headers,
            now,
            row.subject
        ])
    })
    .map_err(|e| OutboxError::database("inserting the event", e))?;
    Ok(())
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
