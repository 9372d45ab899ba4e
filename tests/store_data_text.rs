//! The JSON stores keep an event's own `data` text as a key's row, instead
//! of serializing the state, when the state was decoded from that text as
//! written at the newest version (`StoredEntry::json`). A store reloaded
//! after such commits must hold exactly what the replica holds: every
//! state, tombstone, sequence and read version, whatever the batches mixed
//! (duplicates, stale events, deletes, events of an older version upcast,
//! of a newer version read tolerantly, data laid out differently from what
//! serializing gives, with fields `T` does not have).
//!
//! A batch that changes a key twice must keep the text of the last change
//! (the first one's text holds another state), and a delete after an upsert
//! a tombstone: both happen in the generated batches, whose events of one
//! key carry different names.

#![cfg(feature = "sqlite")]

#[path = "support/replica.rs"]
mod support;

use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, DurableRouter, MemoryRouterStore, MemoryStore, Message};
use ecst::{Replica, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use support::snapshot;

/// Version 2 of an account, promising FORWARD compatibility (version 3
/// events are read as version 2), with a version 1 whose `name` was
/// `holder` and which had no `note`.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 2, compatibility = "FORWARD")]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "holder"))]
    pub name: String,
    #[state_event(added(since = 2))]
    pub note: Option<String>,
    pub balance: i64,
}

const KEYS: [&str; 3] = ["a-1", "a-2", "a-3"];

/// How an event's `data` is written.
#[derive(Clone, Copy, Debug)]
enum Form {
    /// Version 2, as serde_json writes it.
    Plain,
    /// Version 2, fields reordered, spaces, an escape, a field `Account`
    /// does not have.
    Spaced,
    /// Version 1 (`holder`, no `note`): upcast.
    Old,
    /// Version 3 (a field more): read tolerantly as version 2.
    Newer,
    /// A delete (no data).
    Delete,
}

#[derive(Clone, Debug)]
struct Event {
    key: usize,
    sequence: u64,
    form: Form,
    /// Makes the states of one key differ.
    name: u8,
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        3 => Just(Form::Plain),
        3 => Just(Form::Spaced),
        2 => Just(Form::Old),
        2 => Just(Form::Newer),
        2 => Just(Form::Delete),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    // Few keys and sequences: repeats, ties and stale events are common.
    (0..KEYS.len(), 1u64..=5, form(), 0u8..4)
        .prop_map(|(key, sequence, form, name)| Event::new(key, sequence, form, name))
}

impl Event {
    fn new(key: usize, sequence: u64, form: Form, name: u8) -> Event {
        Event {
            key,
            sequence,
            form,
            name,
        }
    }

    fn payload(&self) -> Vec<u8> {
        let key = KEYS[self.key];
        let name = format!("n{}-{}", self.name, self.sequence);
        let balance = i64::from(self.name) * 10 - 15;
        let (version, operation, data) = match self.form {
            Form::Plain => (
                2,
                "upsert",
                format!(r#"{{"id":"{key}","name":"{name}","note":null,"balance":{balance}}}"#),
            ),
            Form::Spaced => (
                2,
                "upsert",
                format!(
                    "{{ \"balance\" : {balance},\n \"extra\": [1, {{\"x\": \"\\u00e9\"}}], \
                     \"note\": \"caf\\u00e9 \\\"q\\\"\\n\", \"name\": \"{name}\", \"id\": \"{key}\" }}"
                ),
            ),
            Form::Old => (
                1,
                "upsert",
                format!(r#"{{"id":"{key}","holder":"{name}","balance":{balance}}}"#),
            ),
            Form::Newer => (
                3,
                "upsert",
                format!(
                    r#"{{"id":"{key}","name":"{name}","note":"v3","balance":{balance},"since":2027}}"#
                ),
            ),
            Form::Delete => (2, "delete", String::new()),
        };
        let data = if data.is_empty() {
            String::new()
        } else {
            format!(r#","data":{data}"#)
        };
        format!(
            r#"{{"specversion":"1.0","id":"account:{key}:{}","source":"urn:test","type":"account","subject":"{key}","sequence":"{}","schemaversion":{version},"operation":"{operation}"{data}}}"#,
            self.sequence, self.sequence
        )
        .into_bytes()
    }
}

/// The events and how they are cut into batches.
fn stream() -> impl Strategy<Value = (Vec<Event>, Vec<usize>)> {
    (
        prop::collection::vec(event(), 1..40),
        prop::collection::vec(1usize..8, 1..40),
    )
}

/// The messages of `events`, at stream positions 1, 2, ….
fn payloads(events: &[Event]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| (format!("ecst.account.{}", KEYS[e.key]), e.payload()))
        .collect()
}

/// `payloads` cut into batches of the given sizes (the last one repeated).
fn batches<'a>(payloads: &'a [(String, Vec<u8>)], sizes: &[usize]) -> Vec<Vec<Message<'a>>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = sizes.iter().copied().chain(std::iter::repeat(3));
    while start < payloads.len() {
        let end = (start + size.next().unwrap_or(3)).min(payloads.len());
        let batch = (start..end)
            .map(|i| {
                let (subject, payload) = &payloads[i];
                Message::new(i as u64 + 1, subject, payload)
            })
            .collect();
        out.push(batch);
        start = end;
    }
    out
}

/// What a replica holds, comparable: the snapshot (states, tombstones,
/// sequences) and each key's read version.
fn content(replica: &Replica<Account>) -> (Vec<u8>, Vec<Option<u32>>) {
    let versions = KEYS.iter().map(|key| replica.read_version(*key)).collect();
    (snapshot(replica), versions)
}

/// The replica the events make without any store.
fn reference(payloads: &[(String, Vec<u8>)]) -> Replica<Account> {
    let mut replica = Replica::<Account>::new();
    for (_, payload) in payloads {
        replica
            .apply_json(payload)
            .expect("every generated event decodes");
    }
    replica
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_reloaded_memory_store_holds_what_the_replica_holds((events, sizes) in stream()) {
        let payloads = payloads(&events);
        let expected = content(&reference(&payloads));
        runtime().block_on(async {
            let mut durable = DurableReplica::<Account, _>::open(MemoryStore::new()).await.unwrap();
            for batch in batches(&payloads, &sizes) {
                durable.apply_batch(&batch).await.unwrap();
            }
            prop_assert_eq!(content(durable.replica()), expected.clone());
            let reopened = DurableReplica::<Account, _>::open(durable.store().clone()).await.unwrap();
            prop_assert_eq!(content(reopened.replica()), expected);
            prop_assert_eq!(reopened.checkpoint(), durable.checkpoint());
            Ok(())
        })?;
    }

    #[test]
    fn a_reloaded_typed_memory_store_holds_what_the_replica_holds((events, sizes) in stream()) {
        let payloads = payloads(&events);
        let expected = content(&reference(&payloads));
        runtime().block_on(async {
            let store = MemoryStore::<Account>::typed();
            let mut durable = DurableReplica::<Account, _>::open(store).await.unwrap();
            for batch in batches(&payloads, &sizes) {
                durable.apply_batch(&batch).await.unwrap();
            }
            prop_assert_eq!(content(durable.replica()), expected.clone());
            let reopened = DurableReplica::<Account, _>::open(durable.store().clone()).await.unwrap();
            prop_assert_eq!(content(reopened.replica()), expected);
            Ok(())
        })?;
    }

    #[test]
    fn a_reloaded_sqlite_store_holds_what_the_replica_holds((events, sizes) in stream()) {
        let payloads = payloads(&events);
        let expected = content(&reference(&payloads));
        let file = TempFile::new("sqlite");
        runtime().block_on(async {
            let store = SqliteStore::open(&file.0, "c").unwrap();
            let mut durable = DurableReplica::<Account, _>::open(store).await.unwrap();
            for batch in batches(&payloads, &sizes) {
                durable.apply_batch(&batch).await.unwrap();
            }
            prop_assert_eq!(content(durable.replica()), expected.clone());
            let checkpoint = durable.checkpoint();
            drop(durable);
            let store = SqliteStore::open(&file.0, "c").unwrap();
            let reopened = DurableReplica::<Account, _>::open(store).await.unwrap();
            prop_assert_eq!(content(reopened.replica()), expected);
            prop_assert_eq!(reopened.checkpoint(), checkpoint);
            Ok(())
        })?;
    }

    #[test]
    fn a_reloaded_router_store_holds_what_the_replica_holds((events, sizes) in stream()) {
        let payloads = payloads(&events);
        let expected = content(&reference(&payloads));
        runtime().block_on(async {
            let mut router = DurableRouter::builder(MemoryRouterStore::new())
                .register::<Account>()
                .unwrap()
                .open()
                .await
                .unwrap();
            for batch in batches(&payloads, &sizes) {
                router.apply_batch(&batch).await.unwrap();
            }
            prop_assert_eq!(content(router.replica::<Account>().unwrap()), expected.clone());
            let reopened = DurableRouter::builder(router.store().clone())
                .register::<Account>()
                .unwrap()
                .open()
                .await
                .unwrap();
            prop_assert_eq!(content(reopened.replica::<Account>().unwrap()), expected);
            Ok(())
        })?;
    }
}

/// The path is taken: a state set by a version 2 event is stored as the
/// event's `data`, byte for byte (spaces, a field `Account` lacks and all);
/// one upcast from version 1, or read from version 3, is serialized; and a
/// key changed twice in one batch keeps the text of its last change.
#[test]
fn sqlite_keeps_the_data_text_of_the_last_change() {
    let events = [
        Event::new(0, 1, Form::Spaced, 0),
        Event::new(0, 2, Form::Spaced, 1),
        Event::new(1, 1, Form::Old, 0),
        Event::new(2, 1, Form::Newer, 0),
    ];
    let payloads = payloads(&events);
    let file = TempFile::new("text");
    runtime().block_on(async {
        let store = SqliteStore::open(&file.0, "c").unwrap();
        let mut durable = DurableReplica::<Account, _>::open(store).await.unwrap();
        let batch = batches(&payloads, &[4]);
        assert_eq!(batch.len(), 1);
        durable.apply_batch(&batch[0]).await.unwrap();
    });
    let db = ecst::store::sqlite::rusqlite::Connection::open(&file.0).unwrap();
    let stored = |key: &str| -> String {
        db.query_row(
            "SELECT state FROM ecst_replica WHERE key = ?1",
            [key],
            |row| row.get(0),
        )
        .unwrap()
    };
    let data = |event: &Event| -> String {
        let envelope: serde_json::Value = serde_json::from_slice(&event.payload()).unwrap();
        let text = String::from_utf8(event.payload()).unwrap();
        // The data's text as written: from `"data":` to the envelope's end.
        let start = text.find(r#""data":"#).unwrap() + r#""data":"#.len();
        let data = text[start..text.len() - 1].to_owned();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&data).unwrap(),
            envelope["data"]
        );
        data
    };
    assert_eq!(stored("a-1"), data(&events[1]));
    assert_ne!(stored("a-1"), data(&events[0]));
    let serialized = |key: &str| {
        let store = SqliteStore::open(&file.0, "c").unwrap();
        let reopened = runtime()
            .block_on(DurableReplica::<Account, _>::open(store))
            .unwrap();
        serde_json::to_string(reopened.replica().get(key).unwrap()).unwrap()
    };
    assert_eq!(stored("a-2"), serialized("a-2"));
    assert_eq!(stored("a-3"), serialized("a-3"));
}

/// PostgreSQL (`JSON` column): the same property, and the text kept as
/// it is unless it holds a `\u` escape (then serialized: servers have
/// differed in what their `JSON` input takes of escapes a state's
/// serialization never writes). Needs the server of `store_postgres.rs`.
#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use ecst::store::postgres::PostgresStore;

    fn config() -> String {
        std::env::var("ECST_TEST_POSTGRES")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
    }

    async fn open(consumer: &str) -> PostgresStore {
        PostgresStore::connect(&config(), consumer)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (see store_postgres.rs)")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn a_reloaded_postgres_store_holds_what_the_replica_holds((events, sizes) in stream()) {
            let payloads = payloads(&events);
            let expected = content(&reference(&payloads));
            let consumer = format!("ecst-test-{}-data-text", std::process::id());
            runtime().block_on(async {
                let mut store = open(&consumer).await;
                store.purge_consumer().await.unwrap();
                let mut durable = DurableReplica::<Account, _>::open(store).await.unwrap();
                for batch in batches(&payloads, &sizes) {
                    durable.apply_batch(&batch).await.unwrap();
                }
                prop_assert_eq!(content(durable.replica()), expected.clone());
                let checkpoint = durable.checkpoint();
                drop(durable);
                let reopened = DurableReplica::<Account, _>::open(open(&consumer).await)
                    .await
                    .unwrap();
                prop_assert_eq!(content(reopened.replica()), expected);
                prop_assert_eq!(reopened.checkpoint(), checkpoint);
                open(&consumer).await.purge_consumer().await.unwrap();
                Ok(())
            })?;
        }
    }

    #[test]
    fn postgres_keeps_a_data_text_without_escapes() {
        let events = [
            Event::new(0, 1, Form::Plain, 0),
            Event::new(1, 1, Form::Spaced, 0),
        ];
        let payloads = payloads(&events);
        let consumer = format!("ecst-test-{}-data-text-kept", std::process::id());
        runtime().block_on(async {
            let mut store = open(&consumer).await;
            store.purge_consumer().await.unwrap();
            let mut durable = DurableReplica::<Account, _>::open(store).await.unwrap();
            durable
                .apply_batch(&batches(&payloads, &[2])[0])
                .await
                .unwrap();
            let stored = |key: &'static str| {
                let client = durable.store().client();
                let consumer = consumer.clone();
                async move {
                    let row = client
                        .query_one(
                            "SELECT state::text FROM ecst_replica WHERE consumer = $1 AND key = $2",
                            &[&consumer, &key],
                        )
                        .await
                        .unwrap();
                    row.get::<_, String>(0)
                }
            };
            let plain = String::from_utf8(events[0].payload()).unwrap();
            let a1 = stored("a-1").await;
            assert!(
                plain.contains(&format!(r#""data":{a1}}}"#)),
                "{a1} kept as sent"
            );
            let a2 = stored("a-2").await;
            let state = durable.replica().get("a-2").unwrap();
            assert_eq!(a2, serde_json::to_string(state).unwrap(), "serialized");
            let mut store = open(&consumer).await;
            store.purge_consumer().await.unwrap();
        });
    }
}

/// A temp file, deleted (with SQLite's companions) when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(what: &str) -> TempFile {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ecst-data-text-{what}-{}-{n}.db",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}
