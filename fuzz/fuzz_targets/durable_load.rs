//! The durable store's load path: arbitrary rows written straight into the
//! SQLite tables, then `DurableReplica::open`.
//!
//! The database is a shared-cache in-memory SQLite database
//! (`file:...?mode=memory&cache=shared`): `SqliteStore::open` creates the
//! tables in it once, a plain rusqlite connection keeps it alive and writes
//! each input's rows, and every run opens fresh stores on the same URI.
//!
//! Invariants: `DurableReplica::open` returns `Ok` or a `StoreError` with a
//! non-empty message, never panics; a loaded replica holds sequences up to
//! `Sequence::MAX`, and reloading gives the same content.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use arbitrary::{Arbitrary, Unstructured};
use ecst::store::sqlite::SqliteStore;
use ecst::store::DurableReplica;
use ecst::{Sequence, StateEvent};
use ecst_fuzz::{snapshot, Customer, Order};
use libfuzzer_sys::fuzz_target;
use rusqlite::{params, Connection};

const URI: &str = "file:ecst-fuzz-durable-load?mode=memory&cache=shared";
const CONSUMER: &str = "fuzz";

/// The connection that keeps the in-memory database alive and writes rows.
fn database() -> &'static Mutex<Connection> {
    static DATABASE: OnceLock<Mutex<Connection>> = OnceLock::new();
    DATABASE.get_or_init(|| {
        let connection = Connection::open(URI).expect("open the shared in-memory database");
        // The store creates (and migrates) its tables.
        drop(SqliteStore::open(URI, CONSUMER).expect("create the tables"));
        Mutex::new(connection)
    })
}

/// SQLite stores do all their work on the first poll (no await point).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a SQLite store future was not ready on its first poll"),
    }
}

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Raw(String),
}

impl Text {
    fn get<'a>(&'a self, known: &'a [&'a str]) -> &'a str {
        match self {
            Text::Known(i) => known[usize::from(*i) % known.len()],
            Text::Raw(text) => text,
        }
    }
}

const CONSUMERS: &[&str] = &[CONSUMER, CONSUMER, CONSUMER, "other"];
const ENTITIES: &[&str] = &["customer", "customer", "order", "Customer"];
const KEYS: &[&str] = &["c-1", "c-2", "", "1", "01", "+1", "18446744073709551616", "a\nb"];
const KINDS: &[&str] = &[
    "refused",
    "misaddressed",
    "future_version",
    "upcast",
    "invalid",
    "other",
    "",
];
const RESOLUTIONS: &[&str] = &["superseded", "discarded", "discarded: why", "discarded:", ""];

/// A `state` column: any text, or a state of a known version.
#[derive(Arbitrary, Debug)]
enum State {
    Raw(String),
    CustomerV1 { id: Option<Text>, full_name: String, credit: i64 },
    CustomerV2 { id: Option<Text>, name: String, email: Option<String>, credit: u64 },
    Order { number: Option<u64>, total_cents: u64 },
}

impl State {
    fn json(&self, key: &str) -> String {
        let id = |id: &Option<Text>| id.as_ref().map_or(key, |id| id.get(KEYS)).to_owned();
        match self {
            State::Raw(text) => text.clone(),
            State::CustomerV1 { id: i, full_name, credit } => serde_json::json!({
                "id": id(i), "full_name": full_name, "credit": credit,
            })
            .to_string(),
            State::CustomerV2 { id: i, name, email, credit } => serde_json::json!({
                "id": id(i), "name": name, "email": email, "credit": credit,
            })
            .to_string(),
            State::Order { number, total_cents } => {
                let number = number.map_or_else(|| key.to_owned(), |n| n.to_string());
                format!(r#"{{"number":{number},"total_cents":{total_cents}}}"#)
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct ReplicaRow {
    consumer: Text,
    entity: Text,
    key: Text,
    sequence: i64,
    schema_version: i64,
    state: Option<State>,
    read_version: Option<i64>,
}

#[derive(Arbitrary, Debug)]
struct ParkedRow {
    consumer: Text,
    entity: Text,
    stream_sequence: i64,
    subject: String,
    key: Option<Text>,
    reason: String,
    payload: Vec<u8>,
    kind: Option<Text>,
    resolution: Option<Text>,
}

#[derive(Arbitrary, Debug)]
struct Rows {
    replica: Vec<ReplicaRow>,
    checkpoint: Option<(Text, i64, i64)>,
    parked: Vec<ParkedRow>,
}

fn write(connection: &mut Connection, rows: &Rows) -> rusqlite::Result<()> {
    let tx = connection.transaction()?;
    for table in ["ecst_replica", "ecst_checkpoint", "ecst_parked"] {
        tx.execute(&format!("DELETE FROM {table}"), [])?;
    }
    for row in &rows.replica {
        let key = row.key.get(KEYS);
        tx.execute(
            "INSERT OR REPLACE INTO ecst_replica \
             (consumer, entity, key, sequence, schema_version, state, read_version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.consumer.get(CONSUMERS),
                row.entity.get(ENTITIES),
                key,
                row.sequence,
                row.schema_version,
                row.state.as_ref().map(|state| state.json(key)),
                row.read_version,
            ],
        )?;
    }
    if let Some((entity, stream_sequence, applied)) = &rows.checkpoint {
        tx.execute(
            "INSERT OR REPLACE INTO ecst_checkpoint (consumer, entity, stream_sequence, applied) \
             VALUES (?1, ?2, ?3, ?4)",
            params![CONSUMER, entity.get(ENTITIES), stream_sequence, applied],
        )?;
    }
    for row in &rows.parked {
        tx.execute(
            "INSERT OR REPLACE INTO ecst_parked \
             (consumer, entity, stream_sequence, subject, key, reason, payload, kind, resolution) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.consumer.get(CONSUMERS),
                row.entity.get(ENTITIES),
                row.stream_sequence,
                row.subject,
                row.key.as_ref().map(|key| key.get(KEYS)),
                row.reason,
                row.payload,
                row.kind.as_ref().map(|kind| kind.get(KINDS)),
                row.resolution.as_ref().map(|r| r.get(RESOLUTIONS)),
            ],
        )?;
    }
    tx.commit()
}

fn load<T: StateEvent>() {
    let store = SqliteStore::open(URI, CONSUMER).expect("open the store");
    match ready(DurableReplica::<T, _>::open(store)) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(mut durable) => {
            for (_, entry) in durable.replica().entries() {
                assert!(entry.sequence() <= Sequence::MAX);
            }
            let _ = durable.checkpoint();
            let _ = durable.resume_after();
            let parked = durable.parked().count();
            let pending = durable.pending_parked();
            assert!(pending <= parked);
            let before = snapshot(durable.replica());
            ready(durable.reload()).expect("a store that loaded once loads again");
            assert_eq!(snapshot(durable.replica()), before, "reload changed the replica");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(rows) = Rows::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut connection = database().lock().unwrap_or_else(|e| e.into_inner());
    if write(&mut connection, &rows).is_err() {
        return;
    }
    drop(connection);
    load::<Customer>();
    load::<Order>();
});
