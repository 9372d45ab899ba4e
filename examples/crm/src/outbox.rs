//! The owner's database with a transactional outbox (`crm-outbox-owner`):
//! a `crm_customers` table (one JSON state per live customer) and ecst's
//! outbox tables, in SQLite or PostgreSQL. Every edit writes the customer
//! row and stages its event in one transaction, so the published stream
//! can never disagree with the table.

use std::collections::BTreeMap;

use ecst::outbox::rusqlite::{self, params, OptionalExtension, TransactionBehavior};
use ecst::outbox::tokio_postgres::{self, NoTls};
use ecst::outbox::{Outbox, OutboxError};

use crate::{customer_id, Customer, Rng, SOURCE};

/// The default outbox table of the example.
pub const OUTBOX_TABLE: &str = "crm_outbox";

/// The outbox of the CRM owner, in `table`.
pub fn crm_outbox(table: &str) -> Result<Outbox, String> {
    Outbox::new(SOURCE)
        .with_table(table)
        .map_err(|e| e.to_string())
}

/// The owner's truth as the tables hold it: per customer that has events,
/// its last sequence and its state (`None` once deleted).
pub type Truth = BTreeMap<String, (u64, Option<Customer>)>;

const FIRST: &[&str] = &[
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Radia", "Ken",
];
const LAST: &[&str] = &[
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Perlman",
];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    let index = usize::try_from(rng.below(from.len() as u64)).unwrap_or(0);
    from.get(index).copied().unwrap_or("Anonymous")
}

/// One invented edit of customer `id`, given its current state: `None` is
/// a delete.
pub fn invent_edit(rng: &mut Rng, id: &str, current: Option<Customer>) -> Option<Customer> {
    match current {
        Some(_) if rng.chance(10) => None,
        Some(mut customer) => {
            match rng.below(3) {
                0 => customer.name = format!("{} {}", pick(rng, FIRST), pick(rng, LAST)),
                1 => {
                    customer.email = match customer.email {
                        Some(_) => None,
                        None => Some(format!("{}@example.com", customer.id)),
                    }
                }
                _ => customer.credit_limit_cents = (rng.below(500) + 1) * 10_000,
            }
            Some(customer)
        }
        None => Some(Customer {
            id: id.to_owned(),
            name: format!("{} {}", pick(rng, FIRST), pick(rng, LAST)),
            email: rng
                .chance(70)
                .then(|| format!("{}@example.com", id.to_lowercase())),
            credit_limit_cents: (rng.below(500) + 1) * 10_000,
        }),
    }
}

/// The customers one transaction edits, sorted: concurrent writers then
/// lock rows in one order and never deadlock each other.
fn pick_keys(rng: &mut Rng, keys: u64, count: u64) -> Vec<String> {
    let mut picked: Vec<u64> = (0..count).map(|_| rng.below(keys)).collect();
    picked.sort_unstable();
    picked.into_iter().map(customer_id).collect()
}

fn json_error(e: serde_json::Error) -> String {
    format!("a customer's JSON: {e}")
}

/// A PostgreSQL error with the server's message and SQLSTATE (the
/// driver's own `Display` says only "db error").
fn postgres_error(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None => format!("PostgreSQL: {e}"),
    }
}

fn staging_error(e: OutboxError) -> String {
    format!("staging an event: {e}")
}

/// The owner's SQLite database file.
pub struct SqliteOwner {
    conn: rusqlite::Connection,
    outbox: Outbox,
}

/// Opens an SQLite connection the way the owner and the relay do: WAL, a
/// generous busy timeout.
pub fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, String> {
    let fail = |e: rusqlite::Error| format!("SQLite `{}`: {e}", path.display());
    let conn = rusqlite::Connection::open(path).map_err(fail)?;
    // The timeout first: switching to WAL takes a lock, and without a busy
    // handler a process that opens the file while another writes failed
    // at once with "database is locked" (seen in the outbox crash test).
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(fail)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    Ok(conn)
}

impl SqliteOwner {
    /// Opens (creating the tables if missing) the owner's database.
    pub fn open(path: &std::path::Path, outbox: &Outbox) -> Result<Self, String> {
        let conn = open_sqlite(path)?;
        outbox.create_sqlite(&conn).map_err(|e| e.to_string())?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS crm_customers (id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        )
        .map_err(|e| e.to_string())?;
        Ok(SqliteOwner {
            conn,
            outbox: outbox.clone(),
        })
    }

    /// Makes `count` invented edits over `keys` customers in one
    /// transaction: each writes the customer row and stages its event.
    pub fn edit(&mut self, rng: &mut Rng, keys: u64, count: u64) -> Result<(), String> {
        let fail = |e: rusqlite::Error| format!("SQLite: {e}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        for id in pick_keys(rng, keys, count) {
            let current: Option<String> = tx
                .query_row(
                    "SELECT state FROM crm_customers WHERE id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(fail)?;
            let current = match current {
                Some(json) => Some(serde_json::from_str(&json).map_err(json_error)?),
                None => None,
            };
            match invent_edit(rng, &id, current) {
                Some(customer) => {
                    let json = serde_json::to_string(&customer).map_err(json_error)?;
                    tx.execute(
                        "INSERT INTO crm_customers (id, state) VALUES (?1, ?2)
                         ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                        params![id, json],
                    )
                    .map_err(fail)?;
                    self.outbox.stage(&tx, &customer).map_err(staging_error)?;
                }
                None => {
                    tx.execute("DELETE FROM crm_customers WHERE id = ?1", params![id])
                        .map_err(fail)?;
                    self.outbox
                        .stage_delete::<Customer, _>(&tx, &id)
                        .map_err(staging_error)?;
                }
            }
        }
        tx.commit().map_err(fail)
    }

    /// The truth: the sequence table joined with the customers.
    pub fn truth(&self) -> Result<Truth, String> {
        let fail = |e: rusqlite::Error| format!("SQLite: {e}");
        let sql = format!(
            "SELECT s.aggregateid, s.sequence, c.state FROM {}_sequence s
             LEFT JOIN crm_customers c ON c.id = s.aggregateid
             WHERE s.aggregatetype = 'customer'",
            self.outbox.table()
        );
        let mut statement = self.conn.prepare(&sql).map_err(fail)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(fail)?;
        let mut truth = Truth::new();
        for row in rows {
            let (key, sequence, state) = row.map_err(fail)?;
            let state = match state {
                Some(json) => Some(serde_json::from_str(&json).map_err(json_error)?),
                None => None,
            };
            truth.insert(key, (sequence.unsigned_abs(), state));
        }
        Ok(truth)
    }

    /// Rows not yet acknowledged by the broker.
    pub fn unsent(&self) -> Result<u64, String> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE sent_at IS NULL AND error IS NULL",
            self.outbox.table()
        );
        self.conn
            .query_row(&sql, [], |row| row.get::<_, i64>(0))
            .map(i64::unsigned_abs)
            .map_err(|e| format!("SQLite: {e}"))
    }
}

/// The owner's PostgreSQL database.
pub struct PostgresOwner {
    client: tokio_postgres::Client,
    outbox: Outbox,
}

impl PostgresOwner {
    /// Connects (a tokio-postgres connection string) and creates the
    /// tables if missing.
    pub async fn connect(config: &str, outbox: &Outbox) -> Result<Self, String> {
        let fail = postgres_error;
        let (mut client, connection) =
            tokio_postgres::connect(config, NoTls).await.map_err(fail)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        outbox
            .create_postgres(&mut client)
            .await
            .map_err(|e| e.to_string())?;
        // Several processes start at once (writers, relays): `IF NOT EXISTS`
        // alone races (a duplicate in `pg_type`), so one at a time.
        let tx = client.transaction().await.map_err(fail)?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(hashtext('crm_customers'));
             CREATE TABLE IF NOT EXISTS crm_customers (id text PRIMARY KEY, state text NOT NULL)",
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(PostgresOwner {
            client,
            outbox: outbox.clone(),
        })
    }

    /// As [`SqliteOwner::edit`].
    pub async fn edit(&mut self, rng: &mut Rng, keys: u64, count: u64) -> Result<(), String> {
        let fail = postgres_error;
        let tx = self.client.transaction().await.map_err(fail)?;
        for id in pick_keys(rng, keys, count) {
            let current = tx
                .query_opt(
                    "SELECT state FROM crm_customers WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(fail)?;
            let current = match current {
                Some(row) => {
                    let json: String = row.try_get(0).map_err(fail)?;
                    Some(serde_json::from_str(&json).map_err(json_error)?)
                }
                None => None,
            };
            match invent_edit(rng, &id, current) {
                Some(customer) => {
                    let json = serde_json::to_string(&customer).map_err(json_error)?;
                    tx.execute(
                        "INSERT INTO crm_customers (id, state) VALUES ($1, $2)
                         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state",
                        &[&id, &json],
                    )
                    .await
                    .map_err(fail)?;
                    self.outbox
                        .stage(&tx, &customer)
                        .await
                        .map_err(staging_error)?;
                }
                None => {
                    tx.execute("DELETE FROM crm_customers WHERE id = $1", &[&id])
                        .await
                        .map_err(fail)?;
                    self.outbox
                        .stage_delete::<Customer, _>(&tx, &id)
                        .await
                        .map_err(staging_error)?;
                }
            }
        }
        tx.commit().await.map_err(fail)
    }

    /// As [`SqliteOwner::truth`].
    pub async fn truth(&self) -> Result<Truth, String> {
        let fail = postgres_error;
        let sql = format!(
            "SELECT s.aggregateid, s.sequence, c.state FROM {}_sequence s
             LEFT JOIN crm_customers c ON c.id = s.aggregateid
             WHERE s.aggregatetype = 'customer'",
            self.outbox.table()
        );
        let mut truth = Truth::new();
        for row in self.client.query(&sql, &[]).await.map_err(fail)? {
            let key: String = row.try_get(0).map_err(fail)?;
            let sequence: i64 = row.try_get(1).map_err(fail)?;
            let state: Option<String> = row.try_get(2).map_err(fail)?;
            let state = match state {
                Some(json) => Some(serde_json::from_str(&json).map_err(json_error)?),
                None => None,
            };
            truth.insert(key, (sequence.unsigned_abs(), state));
        }
        Ok(truth)
    }

    /// Rows not yet acknowledged by the broker.
    pub async fn unsent(&self) -> Result<u64, String> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE sent_at IS NULL AND error IS NULL",
            self.outbox.table()
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(postgres_error)?;
        row.try_get::<_, i64>(0)
            .map(i64::unsigned_abs)
            .map_err(postgres_error)
    }
}
