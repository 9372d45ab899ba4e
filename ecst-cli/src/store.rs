//! A replica store read through its tables, without the user's types.
//!
//! The tables are the ones `SqliteStore` and `PostgresStore` create (see
//! their module documentation in ecst-runtime): `ecst_replica`,
//! `ecst_checkpoint` and `ecst_parked`. Only their documented columns are
//! read, always by name, so columns a newer version adds are ignored.

use std::path::Path;
use std::time::Duration;

use ecst_runtime::store::postgres::tokio_postgres::{self, NoTls};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::cli::StoreArgs;
use crate::error::{chain, redacted, Failure};

/// The tables every ecst store has.
const TABLES: [&str; 3] = ["ecst_replica", "ecst_checkpoint", "ecst_parked"];

/// An open replica store.
pub enum Store {
    /// An SQLite file.
    Sqlite {
        /// The connection.
        connection: Connection,
        /// The file, for messages.
        name: String,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The client (its connection is driven by a spawned task).
        client: tokio_postgres::Client,
        /// The connection string without its password, for messages.
        name: String,
    },
}

/// One row of `ecst_replica`.
pub struct ReplicaRow {
    /// The key.
    pub key: String,
    /// The sequence the key holds.
    pub sequence: u64,
    /// The schema version of the stored state.
    pub schema_version: i64,
    /// The state as JSON text; `None` for a tombstone.
    pub state: Option<String>,
}

/// One key of `ecst_replica`, without its state.
pub struct ReplicaKey {
    /// The key.
    pub key: String,
    /// The sequence the key holds.
    pub sequence: u64,
    /// `true` for a tombstone.
    pub tombstone: bool,
}

/// One row of `ecst_checkpoint`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Checkpoint {
    /// The stream sequence of the last message the consumer handled.
    pub stream_sequence: u64,
    /// Events that changed the replica, counted since the store was made.
    pub applied: u64,
    /// `true` for the one checkpoint of a durable router (stored under
    /// entity `*`), shared by every entity it consumes; `false` for the
    /// entity's own.
    pub shared: bool,
}

/// The `entity` of a durable router's one checkpoint (ecst-runtime's
/// `ROUTER_CHECKPOINT_ENTITY`).
const ROUTER_CHECKPOINT: &str = "*";

/// One row of `ecst_parked`.
#[derive(Clone, Debug)]
pub struct ParkedRow {
    /// The entity.
    pub entity: String,
    /// The message's stream sequence.
    pub stream_sequence: u64,
    /// The subject it arrived on.
    pub subject: String,
    /// The key it is parked under, if any.
    pub key: Option<String>,
    /// Why it was parked.
    pub reason: String,
    /// The kind of reason (`future_version`, `invalid`, ...); `None` in
    /// rows older than the column.
    pub kind: Option<String>,
    /// `None` while pending; `superseded` or `discarded: <why>`.
    pub resolution: Option<String>,
    /// The message body.
    pub payload: Vec<u8>,
}

impl Store {
    /// Opens the store `args` names and checks that it is an ecst store.
    pub async fn open(args: &StoreArgs) -> Result<Self, Failure> {
        let store = match (&args.sqlite, &args.postgres) {
            (Some(path), _) => open_sqlite(path)?,
            (None, Some(url)) => open_postgres(url).await?,
            (None, None) => {
                return Err(Failure::new(
                    "give a store: --sqlite FILE or --postgres URL",
                ))
            }
        };
        store.check_tables().await?;
        Ok(store)
    }

    /// The store, for messages: `SQLite file x.db` or `PostgreSQL host=..`.
    pub fn name(&self) -> String {
        match self {
            Store::Sqlite { name, .. } => format!("SQLite file `{name}`"),
            Store::Postgres { name, .. } => format!("PostgreSQL database `{name}`"),
        }
    }

    async fn check_tables(&self) -> Result<(), Failure> {
        let found: Vec<String> = match self {
            Store::Sqlite { connection, .. } => {
                let query = "SELECT name FROM sqlite_master WHERE type = 'table' \
                             AND name IN ('ecst_replica', 'ecst_checkpoint', 'ecst_parked')";
                sqlite_strings(connection, query, []).map_err(|e| self.failed("reading", &e))?
            }
            Store::Postgres { client, .. } => client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() \
                     AND table_name IN ('ecst_replica', 'ecst_checkpoint', 'ecst_parked')",
                    &[],
                )
                .await
                .map_err(|e| self.failed("reading", &e))?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(|e| self.failed("reading", &e))?,
        };
        let missing: Vec<&str> = TABLES
            .into_iter()
            .filter(|table| !found.iter().any(|f| f == table))
            .collect();
        match missing.len() {
            0 => Ok(()),
            3 => Err(Failure::new(format!(
                "{} is not an ecst replica store: it has none of the tables {}",
                self.name(),
                TABLES.join(", ")
            ))),
            _ => Err(Failure::new(format!(
                "{} is not a whole ecst replica store: table {} is missing",
                self.name(),
                missing.join(", ")
            ))),
        }
    }

    fn failed(&self, what: &str, error: &dyn std::error::Error) -> Failure {
        let why = chain(error);
        if why.contains("file is not a database") {
            return Failure::new(format!("{} is not an SQLite database", self.name()));
        }
        Failure::new(format!("{what} {} failed: {why}", self.name()))
    }

    /// The consumer to read: `given`, or the only one the store holds.
    pub async fn consumer(&self, given: Option<String>) -> Result<String, Failure> {
        let query = "SELECT consumer FROM ecst_replica UNION SELECT consumer FROM ecst_checkpoint \
                     UNION SELECT consumer FROM ecst_parked ORDER BY 1";
        let consumers: Vec<String> = match self {
            Store::Sqlite { connection, .. } => {
                sqlite_strings(connection, query, []).map_err(|e| self.failed("reading", &e))?
            }
            Store::Postgres { client, .. } => client
                .query(query, &[])
                .await
                .map_err(|e| self.failed("reading", &e))?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(|e| self.failed("reading", &e))?,
        };
        match given {
            Some(consumer) if consumers.contains(&consumer) => Ok(consumer),
            Some(consumer) => Err(Failure::new(format!(
                "{} holds no rows of consumer `{consumer}` (it holds: {})",
                self.name(),
                listed(&consumers)
            ))),
            None => match consumers.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(Failure::new(format!(
                    "{} holds no consumer's rows yet",
                    self.name()
                ))),
                _ => Err(Failure::new(format!(
                    "{} holds several consumers ({}): pick one with --consumer",
                    self.name(),
                    listed(&consumers)
                ))),
            },
        }
    }

    /// The row of `key`, if any.
    pub async fn row(
        &self,
        consumer: &str,
        entity: &str,
        key: &str,
    ) -> Result<Option<ReplicaRow>, Failure> {
        let raw: Option<(String, i64, i64, Option<String>)> = match self {
            Store::Sqlite { connection, .. } => connection
                .query_row(
                    "SELECT key, sequence, schema_version, state FROM ecst_replica \
                     WHERE consumer = ?1 AND entity = ?2 AND key = ?3",
                    [consumer, entity, key],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()
                .map_err(|e| self.failed("reading ecst_replica of", &e))?,
            Store::Postgres { client, .. } => client
                .query_opt(
                    "SELECT key, sequence, schema_version, state::text FROM ecst_replica \
                     WHERE consumer = $1 AND entity = $2 AND key = $3",
                    &[&consumer, &entity, &key],
                )
                .await
                .map_err(|e| self.failed("reading ecst_replica of", &e))?
                .map(|row| {
                    Ok::<_, tokio_postgres::Error>((
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                    ))
                })
                .transpose()
                .map_err(|e| self.failed("reading ecst_replica of", &e))?,
        };
        raw.map(|(key, sequence, schema_version, state)| {
            Ok(ReplicaRow {
                sequence: unsigned(sequence, "ecst_replica.sequence")?,
                key,
                schema_version,
                state,
            })
        })
        .transpose()
    }

    /// Every key of `entity` with its sequence.
    pub async fn keys(&self, consumer: &str, entity: &str) -> Result<Vec<ReplicaKey>, Failure> {
        let raw: Vec<(String, i64, bool)> = match self {
            Store::Sqlite { connection, .. } => {
                let read = |e: rusqlite::Error| self.failed("reading ecst_replica of", &e);
                let mut statement = connection
                    .prepare(
                        "SELECT key, sequence, state IS NULL FROM ecst_replica \
                         WHERE consumer = ?1 AND entity = ?2",
                    )
                    .map_err(read)?;
                let rows = statement
                    .query_map([consumer, entity], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .map_err(read)?;
                rows.collect::<Result<_, _>>().map_err(read)?
            }
            Store::Postgres { client, .. } => client
                .query(
                    "SELECT key, sequence, state IS NULL FROM ecst_replica \
                     WHERE consumer = $1 AND entity = $2",
                    &[&consumer, &entity],
                )
                .await
                .map_err(|e| self.failed("reading ecst_replica of", &e))?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| self.failed("reading ecst_replica of", &e))?,
        };
        raw.into_iter()
            .map(|(key, sequence, tombstone)| {
                Ok(ReplicaKey {
                    sequence: unsigned(sequence, "ecst_replica.sequence")?,
                    key,
                    tombstone,
                })
            })
            .collect()
    }

    /// The checkpoint of `consumer` for `entity`, if any: the consumer's
    /// router checkpoint when it has one (a router keeps one checkpoint
    /// for all its entities, under entity `*`), otherwise the entity's own.
    pub async fn checkpoint(
        &self,
        consumer: &str,
        entity: &str,
    ) -> Result<Option<Checkpoint>, Failure> {
        let raw: Vec<(String, i64, i64)> = match self {
            Store::Sqlite { connection, .. } => {
                let read = |e: rusqlite::Error| self.failed("reading ecst_checkpoint of", &e);
                let mut statement = connection
                    .prepare(
                        "SELECT entity, stream_sequence, applied FROM ecst_checkpoint \
                         WHERE consumer = ?1 AND entity IN (?2, ?3)",
                    )
                    .map_err(read)?;
                let rows = statement
                    .query_map([consumer, entity, ROUTER_CHECKPOINT], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .map_err(read)?;
                rows.collect::<Result<_, _>>().map_err(read)?
            }
            Store::Postgres { client, .. } => client
                .query(
                    "SELECT entity, stream_sequence, applied FROM ecst_checkpoint \
                     WHERE consumer = $1 AND entity IN ($2, $3)",
                    &[&consumer, &entity, &ROUTER_CHECKPOINT],
                )
                .await
                .map_err(|e| self.failed("reading ecst_checkpoint of", &e))?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| self.failed("reading ecst_checkpoint of", &e))?,
        };
        let chosen = raw
            .iter()
            .find(|(row_entity, _, _)| row_entity == ROUTER_CHECKPOINT)
            .or_else(|| raw.first());
        chosen
            .map(|(row_entity, stream_sequence, applied)| {
                Ok(Checkpoint {
                    stream_sequence: unsigned(*stream_sequence, "ecst_checkpoint.stream_sequence")?,
                    applied: unsigned(*applied, "ecst_checkpoint.applied")?,
                    shared: row_entity == ROUTER_CHECKPOINT,
                })
            })
            .transpose()
    }

    /// The purge floor (`purged_through`) of the checkpoint
    /// [`Store::checkpoint`] chooses for `consumer` and `entity`: every
    /// message at or below it was handled before tombstones were purged.
    /// `0` when there is no checkpoint.
    pub async fn purge_floor(&self, consumer: &str, entity: &str) -> Result<u64, Failure> {
        let raw: Vec<(String, i64)> = match self {
            Store::Sqlite { connection, .. } => {
                let read = |e: rusqlite::Error| self.failed("reading ecst_checkpoint of", &e);
                let mut statement = connection
                    .prepare(
                        "SELECT entity, purged_through FROM ecst_checkpoint \
                         WHERE consumer = ?1 AND entity IN (?2, ?3)",
                    )
                    .map_err(read)?;
                let rows = statement
                    .query_map([consumer, entity, ROUTER_CHECKPOINT], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .map_err(read)?;
                rows.collect::<Result<_, _>>().map_err(read)?
            }
            Store::Postgres { client, .. } => client
                .query(
                    "SELECT entity, purged_through FROM ecst_checkpoint \
                     WHERE consumer = $1 AND entity IN ($2, $3)",
                    &[&consumer, &entity, &ROUTER_CHECKPOINT],
                )
                .await
                .map_err(|e| self.failed("reading ecst_checkpoint of", &e))?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| self.failed("reading ecst_checkpoint of", &e))?,
        };
        let chosen = raw
            .iter()
            .find(|(row_entity, _)| row_entity == ROUTER_CHECKPOINT)
            .or_else(|| raw.first());
        chosen.map_or(Ok(0), |(_, floor)| {
            unsigned(*floor, "ecst_checkpoint.purged_through")
        })
    }

    /// The parked rows of `consumer` (of `entity`, if given), by entity and
    /// stream sequence.
    pub async fn parked(
        &self,
        consumer: &str,
        entity: Option<&str>,
    ) -> Result<Vec<ParkedRow>, Failure> {
        type Raw = (
            String,
            i64,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Vec<u8>,
        );
        let columns = "entity, stream_sequence, subject, key, reason, kind, resolution, payload";
        let raw: Vec<Raw> = match self {
            Store::Sqlite { connection, .. } => {
                let read = |e: rusqlite::Error| self.failed("reading ecst_parked of", &e);
                let mut statement = connection
                    .prepare(&format!(
                        "SELECT {columns} FROM ecst_parked WHERE consumer = ?1 \
                         AND (?2 IS NULL OR entity = ?2) ORDER BY entity, stream_sequence"
                    ))
                    .map_err(read)?;
                let rows = statement
                    .query_map(rusqlite::params![consumer, entity], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                        ))
                    })
                    .map_err(read)?;
                rows.collect::<Result<_, _>>().map_err(read)?
            }
            Store::Postgres { client, .. } => client
                .query(
                    &format!(
                        "SELECT {columns} FROM ecst_parked WHERE consumer = $1 \
                         AND ($2::text IS NULL OR entity = $2) ORDER BY entity, stream_sequence"
                    ),
                    &[&consumer, &entity],
                )
                .await
                .map_err(|e| self.failed("reading ecst_parked of", &e))?
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                        row.try_get(4)?,
                        row.try_get(5)?,
                        row.try_get(6)?,
                        row.try_get(7)?,
                    ))
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| self.failed("reading ecst_parked of", &e))?,
        };
        raw.into_iter()
            .map(
                |(entity, stream_sequence, subject, key, reason, kind, resolution, payload)| {
                    Ok(ParkedRow {
                        stream_sequence: unsigned(stream_sequence, "ecst_parked.stream_sequence")?,
                        entity,
                        subject,
                        key,
                        reason,
                        kind,
                        resolution,
                        payload,
                    })
                },
            )
            .collect()
    }

    /// Sets the resolution of one parked row; returns whether a row was
    /// changed.
    pub async fn set_resolution(
        &self,
        consumer: &str,
        entity: &str,
        stream_sequence: u64,
        resolution: Option<&str>,
    ) -> Result<bool, Failure> {
        let sequence = i64::try_from(stream_sequence).map_err(|_| {
            Failure::new(format!("stream sequence {stream_sequence} is out of range"))
        })?;
        let changed = match self {
            Store::Sqlite { connection, .. } => connection
                .execute(
                    "UPDATE ecst_parked SET resolution = ?1 \
                     WHERE consumer = ?2 AND entity = ?3 AND stream_sequence = ?4",
                    rusqlite::params![resolution, consumer, entity, sequence],
                )
                .map_err(|e| self.failed("writing ecst_parked of", &e))?
                as u64,
            Store::Postgres { client, .. } => client
                .execute(
                    "UPDATE ecst_parked SET resolution = $1 \
                     WHERE consumer = $2 AND entity = $3 AND stream_sequence = $4",
                    &[&resolution, &consumer, &entity, &sequence],
                )
                .await
                .map_err(|e| self.failed("writing ecst_parked of", &e))?,
        };
        Ok(changed > 0)
    }
}

fn open_sqlite(path: &Path) -> Result<Store, Failure> {
    let name = path.display().to_string();
    if !path.is_file() {
        return Err(Failure::new(format!(
            "no SQLite file at `{name}` (ecst never creates one from the command line)"
        )));
    }
    // Never created here: a mistyped path is an error, not a new store.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| {
        Failure::new(format!(
            "opening SQLite file `{name}` failed: {}",
            chain(&error)
        ))
    })?;
    // A consumer may be writing: wait for its lock rather than fail.
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(|error| {
            Failure::new(format!(
                "opening SQLite file `{name}` failed: {}",
                chain(&error)
            ))
        })?;
    Ok(Store::Sqlite { connection, name })
}

async fn open_postgres(url: &str) -> Result<Store, Failure> {
    let config: tokio_postgres::Config = url.parse().map_err(|error| {
        Failure::new(format!(
            "`{}` is not a PostgreSQL connection string ({}); give one like \
             postgresql://user@127.0.0.1/db",
            redacted(url),
            chain(&error)
        ))
    })?;
    let name = describe(&config);
    let (client, connection) = config.connect(NoTls).await.map_err(|error| {
        Failure::new(format!(
            "cannot connect to PostgreSQL database `{name}`: {}",
            chain(&error)
        ))
    })?;
    tokio::spawn(async move {
        // A broken connection surfaces as the client's next error.
        let _ = connection.await;
    });
    Ok(Store::Postgres { client, name })
}

/// `user@host:port/db` of a connection config, never its password.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = config
        .get_hosts()
        .first()
        .map_or_else(String::new, |host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        });
    let port = config
        .get_ports()
        .first()
        .map_or_else(String::new, |port| format!(":{port}"));
    let user = config
        .get_user()
        .map_or_else(String::new, |user| format!("{user}@"));
    let db = config.get_dbname().unwrap_or_default();
    format!("{user}{host}{port}/{db}")
}

fn sqlite_strings<P: rusqlite::Params>(
    connection: &Connection,
    query: &str,
    params: P,
) -> Result<Vec<String>, rusqlite::Error> {
    let mut statement = connection.prepare(query)?;
    let rows = statement.query_map(params, |row| row.get(0))?;
    rows.collect()
}

fn unsigned(value: i64, column: &str) -> Result<u64, Failure> {
    u64::try_from(value).map_err(|_| {
        Failure::new(format!(
            "{column} holds {value}, which no ecst store writes"
        ))
    })
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
