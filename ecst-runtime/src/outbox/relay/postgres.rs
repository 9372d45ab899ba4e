//! The relay's side of a PostgreSQL outbox: its own connection, which
//! `LISTEN`s for the insert trigger's notifications.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::batch::UnsentRow;
use super::RelayError;
use crate::outbox::postgres::channel;
use crate::outbox::table::Tables;

pub(crate) struct PostgresSource {
    config: String,
    channel: String,
    client: Option<Client>,
    wake: Arc<Notify>,
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

fn fail(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RelayError {
    move |e| RelayError::database(operation, e)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl PostgresSource {
    pub(crate) fn new(config: &str, tables: &Tables, wake: Arc<Notify>) -> Self {
        let (outbox, lease, sequence) = (&tables.outbox, &tables.lease, &tables.sequence);
        // $1: the entity names, $3: the schema version each is relayed up to.
        let relayed = "EXISTS (SELECT 1 FROM UNNEST($1::text[], $3::bigint[]) AS t(name, version)
                               WHERE t.name = aggregatetype AND schemaversion <= t.version)";
        PostgresSource {
            config: config.to_owned(),
            channel: channel(&tables.given),
            client: None,
            wake,
            fetch: format!(
                "SELECT position, aggregatetype, aggregateid, sequence, payload::text FROM {outbox}
                 WHERE sent_at IS NULL AND error IS NULL AND {relayed}
                 ORDER BY position LIMIT $2"
            ),
            // `$2` (always 0) keeps the parameters numbered as in `fetch`.
            skipped: format!(
                "SELECT count(*) FILTER (WHERE aggregatetype = ANY($1)), count(*)
                 FROM {outbox}
                 WHERE sent_at IS NULL AND error IS NULL AND NOT {relayed} AND $2::bigint = 0"
            ),
            last_sequence: format!(
                "SELECT sequence FROM {sequence} WHERE aggregatetype = $1 AND aggregateid = $2"
            ),
            take_lease: format!(
                "INSERT INTO {lease} AS l (id, holder, expires_at)
                 VALUES (1, $1, clock_timestamp() + $2 * interval '1 millisecond')
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder,
                                                expires_at = EXCLUDED.expires_at
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at < clock_timestamp()
                 RETURNING holder"
            ),
            mark_sent: format!(
                "UPDATE {outbox} SET sent_at = clock_timestamp() WHERE position = ANY($1)"
            ),
            delete_sent: format!("DELETE FROM {outbox} WHERE position = ANY($1)"),
            mark_error: format!(
                "UPDATE {outbox} SET error = u.reason
                 FROM UNNEST($1::bigint[], $2::text[]) AS u(position, reason)
                 WHERE {outbox}.position = u.position"
            ),
            purge: format!(
                "DELETE FROM {outbox} WHERE position IN (
                     SELECT position FROM {outbox}
                     WHERE sent_at IS NOT NULL
                       AND sent_at < clock_timestamp() - $1 * interval '1 millisecond'
                     LIMIT $2)"
            ),
            release: format!("DELETE FROM {lease} WHERE holder = $1"),
        }
    }

    /// The connection, opened (again) if it is missing or broke.
    async fn client(&mut self) -> Result<&Client, RelayError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, mut connection) = tokio_postgres::connect(&self.config, NoTls)
                .await
                .map_err(fail("connecting"))?;
            let wake = Arc::clone(&self.wake);
            tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "the outbox relay's connection broke");
                            break;
                        }
                    }
                }
                // Wake the relay so that it notices and reconnects.
                wake.notify_one();
            });
            client
                .batch_execute(&format!("LISTEN \"{}\"", self.channel))
                .await
                .map_err(fail("listening for new events"))?;
            // Rows committed before the LISTEN were not notified: the
            // relay reads after connecting anyway.
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| RelayError::database("connecting", "no connection"))
    }

    pub(crate) async fn take_lease(
        &mut self,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, RelayError> {
        let sql = self.take_lease.clone();
        let ttl = millis(ttl) as f64;
        let client = self.client().await?;
        let rows = client
            .query_typed(&sql, &[(&holder, Type::TEXT), (&ttl, Type::FLOAT8)])
            .await
            .map_err(fail("taking the relay lease"))?;
        Ok(!rows.is_empty())
    }

    pub(crate) async fn release(&mut self, holder: &str) -> Result<(), RelayError> {
        let sql = self.release.clone();
        let client = self.client().await?;
        client
            .execute_typed(&sql, &[(&holder, Type::TEXT)])
            .await
            .map_err(fail("releasing the relay lease"))?;
        Ok(())
    }

    pub(crate) async fn fetch(
        &mut self,
        types: &[String],
        versions: &[i64],
        limit: usize,
    ) -> Result<Vec<UnsentRow>, RelayError> {
        let sql = self.fetch.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&types, Type::TEXT_ARRAY),
            (&limit, Type::INT8),
            (&versions, Type::INT8_ARRAY),
        ];
        let rows = client
            .query_typed(&sql, &params)
            .await
            .map_err(fail("reading unsent events"))?;
        rows.iter()
            .map(|row| {
                Ok(UnsentRow {
                    position: row.try_get(0)?,
                    aggregatetype: row.try_get(1)?,
                    aggregateid: row.try_get(2)?,
                    sequence: row.try_get(3)?,
                    payload: row.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(fail("reading unsent events"))
    }

    /// The unsent rows this relay does not read: (of a newer schema
    /// version than it relays, of a type it does not relay).
    pub(crate) async fn skipped(
        &mut self,
        types: &[String],
        versions: &[i64],
    ) -> Result<(usize, usize), RelayError> {
        let sql = self.skipped.clone();
        let client = self.client().await?;
        let zero = 0_i64;
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&types, Type::TEXT_ARRAY),
            (&zero, Type::INT8),
            (&versions, Type::INT8_ARRAY),
        ];
        let row = client
            .query_typed(&sql, &params)
            .await
            .map_err(fail("counting the events not relayed"))?;
        let counts = row
            .first()
            .map(|row| Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
            .map_err(fail("counting the events not relayed"))?;
        let (newer, all): (i64, i64) = counts.unwrap_or((0, 0));
        let newer = usize::try_from(newer).unwrap_or(0);
        let all = usize::try_from(all).unwrap_or(0);
        Ok((newer, all.saturating_sub(newer)))
    }

    /// The last sequence the outbox handed out for a key.
    pub(crate) async fn last_sequence(
        &mut self,
        entity: &str,
        key: &str,
    ) -> Result<Option<i64>, RelayError> {
        let sql = self.last_sequence.clone();
        let client = self.client().await?;
        let rows = client
            .query_typed(&sql, &[(&entity, Type::TEXT), (&key, Type::TEXT)])
            .await
            .map_err(fail("reading a key's last sequence"))?;
        rows.first()
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(fail("reading a key's last sequence"))
    }

    /// Marks `sent` sent (or deletes them, without `keep`) and `poison`
    /// failed. Two statements, each atomic: a crash between them only
    /// leaves poison rows to be found again.
    pub(crate) async fn finish(
        &mut self,
        sent: &[i64],
        poison: &[(i64, String)],
        keep: bool,
    ) -> Result<(), RelayError> {
        let sql = if keep {
            self.mark_sent.clone()
        } else {
            self.delete_sent.clone()
        };
        let mark_error = self.mark_error.clone();
        let client = self.client().await?;
        if !sent.is_empty() {
            client
                .execute_typed(&sql, &[(&sent, Type::INT8_ARRAY)])
                .await
                .map_err(fail("marking events sent"))?;
        }
        if !poison.is_empty() {
            let positions: Vec<i64> = poison.iter().map(|(p, _)| *p).collect();
            let reasons: Vec<&str> = poison.iter().map(|(_, r)| r.as_str()).collect();
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(&positions, Type::INT8_ARRAY), (&reasons, Type::TEXT_ARRAY)];
            client
                .execute_typed(&mark_error, &params)
                .await
                .map_err(fail("setting events aside"))?;
        }
        Ok(())
    }

    /// Deletes up to `limit` rows sent more than `keep` ago.
    pub(crate) async fn purge(
        &mut self,
        keep: Duration,
        limit: usize,
    ) -> Result<usize, RelayError> {
        let sql = self.purge.clone();
        let keep = millis(keep) as f64;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let purged = client
            .execute_typed(&sql, &[(&keep, Type::FLOAT8), (&limit, Type::INT8)])
            .await
            .map_err(fail("deleting sent events"))?;
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }
}
