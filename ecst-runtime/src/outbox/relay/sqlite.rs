//! The relay's side of an SQLite outbox: its own connection to the file.

use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use super::batch::UnsentRow;
use super::RelayError;
use crate::outbox::sqlite::now_millis;
use crate::outbox::table::Tables;

pub(crate) struct SqliteSource {
    conn: Connection,
    fetch: String,
    skipped: String,
    last_sequence: String,
    take_lease: String,
    mark_sent: String,
    delete_sent: String,
    mark_error: String,
    purge: String,
    release: String,
}

fn fail(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> RelayError {
    move |e| RelayError::database(operation, e)
}

impl SqliteSource {
    pub(crate) fn new(conn: Connection, tables: &Tables) -> Result<Self, RelayError> {
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(fail("setting the busy timeout"))?;
        let (outbox, lease, sequence) = (&tables.outbox, &tables.lease, &tables.sequence);
        // ?1: a JSON object, entity name -> the schema version it is relayed up to.
        let relayed = "EXISTS (SELECT 1 FROM json_each(?1) AS t
                               WHERE t.key = aggregatetype AND schemaversion <= t.value)";
        Ok(SqliteSource {
            conn,
            fetch: format!(
                "SELECT position, aggregatetype, aggregateid, sequence, payload FROM {outbox}
                 WHERE sent_at IS NULL AND error IS NULL AND {relayed}
                 ORDER BY position LIMIT ?2"
            ),
            skipped: format!(
                "SELECT COALESCE(SUM(aggregatetype IN (SELECT key FROM json_each(?1))), 0),
                        COUNT(*)
                 FROM {outbox} WHERE sent_at IS NULL AND error IS NULL AND NOT {relayed}"
            ),
            last_sequence: format!(
                "SELECT sequence FROM {sequence} WHERE aggregatetype = ?1 AND aggregateid = ?2"
            ),
            take_lease: format!(
                "INSERT INTO {lease} AS l (id, holder, expires_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                                                expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder OR l.expires_at < ?3"
            ),
            mark_sent: format!("UPDATE {outbox} SET sent_at = ?2 WHERE position = ?1"),
            delete_sent: format!("DELETE FROM {outbox} WHERE position = ?1"),
            mark_error: format!("UPDATE {outbox} SET error = ?2 WHERE position = ?1"),
            purge: format!(
                "DELETE FROM {outbox} WHERE position IN (
                     SELECT position FROM {outbox} WHERE sent_at IS NOT NULL AND sent_at < ?1
                     LIMIT ?2)"
            ),
            release: format!("DELETE FROM {lease} WHERE holder = ?1"),
        })
    }

    pub(crate) fn take_lease(&mut self, holder: &str, ttl: Duration) -> Result<bool, RelayError> {
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let changed = self
            .conn
            .prepare_cached(&self.take_lease)
            .and_then(|mut s| s.execute(params![holder, until, now]))
            .map_err(fail("taking the relay lease"))?;
        Ok(changed == 1)
    }

    pub(crate) fn release(&mut self, holder: &str) -> Result<(), RelayError> {
        self.conn
            .prepare_cached(&self.release)
            .and_then(|mut s| s.execute(params![holder]))
            .map_err(fail("releasing the relay lease"))?;
        Ok(())
    }

    pub(crate) fn fetch(
        &mut self,
        types: &str,
        limit: usize,
    ) -> Result<Vec<UnsentRow>, RelayError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = self
            .conn
            .prepare_cached(&self.fetch)
            .map_err(fail("reading unsent events"))?;
        let rows = statement
            .query_map(params![types, limit], |row| {
                Ok(UnsentRow {
                    position: row.get(0)?,
                    aggregatetype: row.get(1)?,
                    aggregateid: row.get(2)?,
                    sequence: row.get(3)?,
                    payload: row.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(fail("reading unsent events"))?;
        Ok(rows)
    }

    /// The unsent rows this relay does not read: (of a newer schema
    /// version than it relays, of a type it does not relay).
    pub(crate) fn skipped(&mut self, types: &str) -> Result<(usize, usize), RelayError> {
        let (newer, all): (i64, i64) = self
            .conn
            .prepare_cached(&self.skipped)
            .and_then(|mut s| s.query_row(params![types], |row| Ok((row.get(0)?, row.get(1)?))))
            .map_err(fail("counting the events not relayed"))?;
        let newer = usize::try_from(newer).unwrap_or(0);
        let all = usize::try_from(all).unwrap_or(0);
        Ok((newer, all.saturating_sub(newer)))
    }

    /// The last sequence the outbox handed out for a key.
    pub(crate) fn last_sequence(
        &mut self,
        entity: &str,
        key: &str,
    ) -> Result<Option<i64>, RelayError> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached(&self.last_sequence)
            .and_then(|mut s| {
                s.query_row(params![entity, key], |row| row.get(0))
                    .optional()
            })
            .map_err(fail("reading a key's last sequence"))
    }

    /// Marks `sent` sent (or deletes them, without `keep`) and `poison`
    /// failed, in one transaction.
    pub(crate) fn finish(
        &mut self,
        sent: &[i64],
        poison: &[(i64, String)],
        keep: bool,
    ) -> Result<(), RelayError> {
        let now = now_millis();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail("marking events sent"))?;
        {
            let mut statement = if keep {
                tx.prepare_cached(&self.mark_sent)
            } else {
                tx.prepare_cached(&self.delete_sent)
            }
            .map_err(fail("marking events sent"))?;
            for position in sent {
                if keep {
                    statement.execute(params![position, now])
                } else {
                    statement.execute(params![position])
                }
                .map_err(fail("marking events sent"))?;
            }
            let mut statement = tx
                .prepare_cached(&self.mark_error)
                .map_err(fail("setting events aside"))?;
            for (position, reason) in poison {
                statement
                    .execute(params![position, reason])
                    .map_err(fail("setting events aside"))?;
            }
        }
        tx.commit().map_err(fail("marking events sent"))
    }

    /// Deletes up to `limit` rows sent more than `keep` ago.
    pub(crate) fn purge(&mut self, keep: Duration, limit: usize) -> Result<usize, RelayError> {
        let before =
            now_millis().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(&self.purge)
            .and_then(|mut s| s.execute(params![before, limit]))
            .map_err(fail("deleting sent events"))
    }
}
