//! Whatever the decoder accepts, every store can hold.
//!
//! A value the decoder accepted but a store refused (a sequence above
//! `i64::MAX`, a NUL character in a key or in a state, which PostgreSQL's
//! TEXT and JSONB refuse) used to fail the commit of its whole batch, again
//! and again: the consumer stalled for good. The class test: random
//! envelopes, hostile in every attribute and every string, go through a
//! `DurableReplica` on the memory, SQLite and PostgreSQL stores. Every
//! batch commits, every message is either applied or parked (at decode
//! time, with a reason), and the store, reopened, holds exactly what memory
//! held.
//!
//! PostgreSQL at 127.0.0.1:5432 (trust, database `test`), or
//! `ECST_TEST_POSTGRES`. `ECST_PROPTEST_CASES` raises the case count.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::collections::BTreeMap;

use ecst::store::postgres::PostgresStore;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, MemoryStore, Message, ReplicaStore};
use ecst::{Entry, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "note", version = 1)]
pub struct Note {
    #[state_event(key)]
    pub id: String,
    pub text: String,
    pub tags: Vec<String>,
    pub score: f64,
}

/// Strings that stores and encoders find hard: NUL and other control
/// characters, escapes, quotes, non-BMP characters, long runs.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,8}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('\u{0}'),
                Just('\u{1}'),
                Just('\u{7f}'),
                Just('\u{fffe}'),
                Just('\u{1f600}'),
                Just('"'),
                Just('\\'),
                Just('\''),
                Just('%'),
                Just('a'),
            ],
            0..40
        )
        .prop_map(|chars| chars.into_iter().collect()),
        "\\PC{500,3000}",
    ]
}

/// Sequences around every boundary a store has.
fn sequence() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..20).prop_map(|n| json!(n.to_string())),
        Just(json!(i64::MAX.to_string())),
        Just(json!((i64::MAX as u64 + 1).to_string())),
        Just(json!(u64::MAX.to_string())),
        Just(json!("99999999999999999999999")),
        (0u64..20).prop_map(|n| json!(n)),
        Just(json!(-1)),
        Just(json!(1.5)),
    ]
}

fn envelope() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![3 => (0..6u8).prop_map(|k| format!("n-{k}")), 1 => nasty_string()],
        sequence(),
        nasty_string(),
        proptest::collection::vec(nasty_string(), 0..3),
        prop_oneof![
            Just(json!(1.0)),
            Just(json!(-0.0)),
            Just(json!(1e308)),
            Just(json!(5e-324))
        ],
        prop_oneof![4 => Just("upsert"), 1 => Just("delete")],
        prop_oneof![4 => Just(json!(1)), 1 => Just(json!(2)), 1 => Just(json!("1"))],
    )
        .prop_map(|(key, sequence, text, tags, score, operation, version)| {
            let mut event = json!({
                "specversion": "1.0",
                "id": format!("note:{key}"),
                "source": "urn:test",
                "type": "note",
                "subject": key,
                "sequence": sequence,
                "schemaversion": version,
                "operation": operation,
            });
            if operation == "upsert" {
                event["data"] = json!({"id": key, "text": text, "tags": tags, "score": score});
            }
            serde_json::to_vec(&event).expect("JSON")
        })
}

/// What a replica holds, comparable.
fn contents<S: ReplicaStore<Note>>(
    durable: &DurableReplica<Note, S>,
) -> BTreeMap<String, (u64, Option<Note>)> {
    durable
        .replica()
        .entries()
        .map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => (key.clone(), (sequence.get(), Some(state.clone()))),
            Entry::Tombstone { sequence } => (key.clone(), (sequence.get(), None)),
        })
        .collect()
}

/// Applies `batch` to a replica on `store`, checks that it committed and
/// that every message was applied or parked, then reopens `reopen` (the
/// same store, opened again) and checks it holds the same.
async fn check_store<S: ReplicaStore<Note>>(
    store: S,
    reopen: impl std::future::Future<Output = S>,
    batch: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    let mut durable = DurableReplica::<Note, S>::open(store)
        .await
        .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
    let messages: Vec<Message<'_>> = batch
        .iter()
        .enumerate()
        .map(|(i, payload)| Message::new(i as u64 + 1, "notes", payload))
        .collect();
    let outcome = match durable.apply_batch(&messages).await {
        Ok(outcome) => outcome,
        Err(error) => {
            return Err(TestCaseError::fail(format!(
                "a batch of decoder-accepted or parked messages failed to commit: {error}"
            )))
        }
    };
    prop_assert_eq!(outcome.applied.len() + outcome.parked.len(), batch.len());
    let in_memory = contents(&durable);
    let parked: Vec<_> = durable.parked().cloned().collect();
    drop(durable);
    let reopened = DurableReplica::<Note, S>::open(reopen.await)
        .await
        .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
    prop_assert_eq!(contents(&reopened), in_memory);
    prop_assert_eq!(reopened.parked().cloned().collect::<Vec<_>>(), parked);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("ECST_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_accepted_envelope_commits_in_every_store(
        batch in proptest::collection::vec(envelope(), 1..12)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // Memory.
            let memory = MemoryStore::new();
            let mut durable = DurableReplica::<Note, _>::open(memory).await.unwrap();
            let messages: Vec<Message<'_>> = batch
                .iter()
                .enumerate()
                .map(|(i, payload)| Message::new(i as u64 + 1, "notes", payload))
                .collect();
            let outcome = durable.apply_batch(&messages).await.unwrap();
            prop_assert_eq!(outcome.applied.len() + outcome.parked.len(), batch.len());

            // SQLite, in a file so that it can be reopened.
            let dir = std::env::temp_dir().join(format!("ecst-storable-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("replica.db");
            let _ = std::fs::remove_file(&path);
            let open_sqlite = || SqliteStore::open(&path, "storable").expect("sqlite");
            check_store(open_sqlite(), async { open_sqlite() }, &batch).await?;
            let _ = std::fs::remove_dir_all(&dir);

            // PostgreSQL.
            let config = std::env::var("ECST_TEST_POSTGRES").unwrap_or_else(|_| {
                "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned()
            });
            let consumer = format!("storable-{}", std::process::id());
            let open_postgres = || async {
                PostgresStore::connect(&config, &consumer)
                    .await
                    .expect("PostgreSQL at 127.0.0.1:5432 (see README.md)")
            };
            let mut store = open_postgres().await;
            store.purge_consumer().await.expect("purge");
            check_store(store, open_postgres(), &batch).await?;
            open_postgres().await.purge_consumer().await.expect("purge");
            Ok(())
        })?;
    }
}
