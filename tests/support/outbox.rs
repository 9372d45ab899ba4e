//! What the outbox tests share (`outbox.rs`, `outbox_redteam.rs`): the
//! owner's entity, bounded waits, a nats-server with its state stream, a
//! temporary SQLite file, one PostgreSQL table per test, and draining a
//! relay. The test crate declares `mod nats_server` (support/nats_server.rs).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use ecst::nats::{Publisher, ServerVersion, StateStream, Subjects};
use ecst::outbox::rusqlite::Connection;
use ecst::outbox::tokio_postgres::{self, NoTls};
use ecst::outbox::{Outbox, OutboxRelay};
use ecst::{Envelope, StateEvent};
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::nats_server::NatsServer;

/// The owner's entity.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub owner: String,
    pub balance: i64,
}

pub const POSTGRES: &str = "host=127.0.0.1 user=postgres dbname=test";
/// The bound of every wait for a condition.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn account(id: &str, balance: i64) -> Account {
    Account {
        id: id.to_owned(),
        owner: format!("owner of {id}"),
        balance,
    }
}

pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

/// A table name unique per test and process, starting with `prefix`.
pub fn unique_table(prefix: &str, test: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{test}_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(POSTGRES, NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432, database `test`");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops the outbox's tables and its notify function.
pub async fn drop_postgres(outbox: &Outbox) {
    let client = postgres().await;
    let t = outbox.table();
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{t}\"; DROP TABLE IF EXISTS \"{t}_sequence\";
             DROP TABLE IF EXISTS \"{t}_lease\"; DROP FUNCTION IF EXISTS \"{t}_notify\"();"
        ))
        .await
        .unwrap();
}

/// Runs relay passes until one reads nothing.
pub async fn drain(relay: &mut OutboxRelay) {
    bounded("draining the outbox", async {
        loop {
            let report = relay.relay_once().await.unwrap();
            assert!(report.leader, "the only relay must hold the lease");
            if report.read == 0 {
                return;
            }
        }
    })
    .await;
}

/// The last event of every key: key → (sequence, state).
pub type Truth = BTreeMap<String, (u64, Option<Account>)>;

/// A nats-server of the test's own and its state stream.
pub struct Broker {
    /// Stopped and restarted by the broker-down tests.
    pub server: NatsServer,
    pub js: Context,
    pub subjects: Subjects,
    stream: &'static str,
}

/// Starts a nats-server and creates the state stream `stream` over
/// `prefix`. The client reconnects every 100 ms (a test stops the server).
pub async fn broker(stream: &'static str, prefix: &str) -> Broker {
    let server = NatsServer::start();
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(server.url())
        .await
        .expect("connecting to nats-server");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(prefix).unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new(stream, subjects.clone())
        .ensure(&js, version)
        .await
        .expect("creating the state stream");
    Broker {
        server,
        js,
        subjects,
        stream,
    }
}

impl Broker {
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.js.clone(), self.subjects.clone())
    }

    async fn consumer(&self) -> jetstream::consumer::Consumer<pull::Config> {
        let stream = self.js.get_stream(self.stream).await.unwrap();
        stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// Every message the stream holds now, in stream order, as `T`.
    pub async fn read_all<T: StateEvent>(&self) -> Vec<Envelope<T>> {
        let mut consumer = self.consumer().await;
        let pending = consumer.info().await.unwrap().num_pending;
        let mut out = Vec::new();
        let mut messages = consumer.messages().await.unwrap();
        while (out.len() as u64) < pending {
            let message = bounded("reading the stream", messages.next())
                .await
                .unwrap()
                .unwrap();
            out.push(Envelope::<T>::from_json(&message.payload).unwrap());
        }
        out
    }

    /// The last event of every subject: key → (sequence, state).
    pub async fn stream_state(&self) -> Truth {
        let mut last = BTreeMap::new();
        for envelope in self.read_all::<Account>().await {
            let state = envelope.state().cloned();
            last.insert(envelope.key.clone(), (envelope.sequence.get(), state));
        }
        last
    }

    /// A consumer that records every event it sees, live, in stream order:
    /// (key, sequence).
    pub async fn observe(&self) -> (Arc<Mutex<Vec<(String, u64)>>>, tokio::task::JoinHandle<()>) {
        let consumer = self.consumer().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            while let Some(Ok(message)) = messages.next().await {
                let envelope = Envelope::<Account>::from_json(&message.payload).unwrap();
                sink.lock()
                    .unwrap()
                    .push((envelope.key.clone(), envelope.sequence.get()));
            }
        });
        (seen, task)
    }
}

/// A temporary SQLite file (`owner.db` in a directory of its own), deleted
/// with its directory on drop.
pub struct SqliteFile(PathBuf);

impl SqliteFile {
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("{}-{nanos}", unique_table("ecst-outbox", test)));
        std::fs::create_dir_all(&dir).unwrap();
        SqliteFile(dir)
    }

    pub fn path(&self) -> PathBuf {
        self.0.join("owner.db")
    }

    /// A connection to the file (WAL, 10 s busy timeout).
    pub fn open(&self) -> Connection {
        open_sqlite(&self.path())
    }

    /// A connection to the file, with the outbox's tables created.
    pub fn owner(&self, outbox: &Outbox) -> Connection {
        let conn = self.open();
        outbox.create_sqlite(&conn).unwrap();
        conn
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A connection to the SQLite file at `path` (WAL, 10 s busy timeout).
pub fn open_sqlite(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    // The timeout first: switching to WAL takes a lock.
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn
}
