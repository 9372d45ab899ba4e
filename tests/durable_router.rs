//! `DurableRouter`: one durable consumer for several entities, with one
//! store, one checkpoint and one transaction per batch, on real SQLite and
//! PostgreSQL (127.0.0.1:5432, database `test`, or `ECST_TEST_POSTGRES`)
//! and in memory (`durable_router_props.rs` compares a router with
//! separate durable replicas; `durable_router_nats.rs` follows a real
//! nats-server with it).
//!
//! - every entity's changes and the one checkpoint land together; a
//!   reopened store gives back each entity and the checkpoint;
//! - a commit that fails at its last statement (the checkpoint) leaves no
//!   entity ahead of the checkpoint, and the batch delivered again applies
//!   once;
//! - a commit future dropped at any point (PostgreSQL) leaves all or
//!   nothing, and the redelivery applies nothing twice;
//! - parking, retry and discard stay per entity; a state no store can hold
//!   is parked under its entity and the rest commits;
//! - a message of an entity nobody registered is skipped and counted,
//!   never parked or applied, and never silently lost;
//! - each entity keeps its change feed, and the purge floor guards every
//!   entity.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

#[cfg(feature = "metrics")]
#[path = "support/recorder.rs"]
mod recorder;
#[path = "support/router.rs"]
mod router_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecst::consume::ParkKind;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{
    DurableRouter, MemoryRouterStore, Message, RouterStore, ROUTER_CHECKPOINT_ENTITY,
};
use ecst::{Outcome, Producer, StateChange, StateEvent};
use router_common::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The batches of the mixed log: 3, 3 and 2 messages.
const CUTS: [u64; 4] = [0, 3, 6, 8];

/// Applies `log` in the batches of `CUTS` and checks what the router
/// holds; reopens with `reopen` and checks that the store gave back the
/// same, with one checkpoint.
async fn commits_every_entity_with_one_checkpoint<S: RouterStore>(
    store: S,
    reopen: impl AsyncFnOnce(DurableRouter<S>) -> S,
) -> Dumps {
    let log = mixed_log();
    let mut router = open_router(store).await;
    assert_eq!(router.resume_after(), 0);
    for window in CUTS.windows(2) {
        let batch: Vec<Message<'_>> = messages(&log, window[0])
            .into_iter()
            .take((window[1] - window[0]) as usize)
            .collect();
        let outcome = router.apply_batch(&batch).await.expect("commit");
        assert_eq!(outcome.applied.len(), batch.len());
        let checkpoint = router.checkpoint().expect("a checkpoint");
        assert_eq!(checkpoint.stream_sequence, window[1]);
        assert_eq!(checkpoint.applied, window[1], "every message changed a key");
    }
    let held = dumps(&router);
    assert_eq!(
        held.0,
        vec![
            ("c-1".to_owned(), 2, Some(customer("c-1", "Ada L."))),
            ("c-2".to_owned(), 2, None),
        ]
    );
    assert_eq!(
        held.1,
        vec![
            ("o-1".to_owned(), 2, None),
            ("o-2".to_owned(), 2, Some(order("o-2", 25))),
        ]
    );
    // A redelivery of the whole log: duplicates and stale events, nothing
    // applied twice.
    let again = router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    assert!(again
        .applied
        .iter()
        .all(|(_, outcome)| matches!(outcome, Outcome::Duplicate | Outcome::Stale)));
    assert_eq!(router.checkpoint().map(|c| c.applied), Some(8));

    let store = reopen(router).await;
    let reopened = open_router(store).await;
    assert_eq!(dumps(&reopened), held, "the store gives back every entity");
    assert_eq!(
        reopened
            .checkpoint()
            .map(|c| (c.stream_sequence, c.applied)),
        Some((8, 8))
    );
    held
}

#[tokio::test]
async fn sqlite_commits_every_entity_with_one_checkpoint() {
    let db = TempDb::new("one_checkpoint");
    let name = consumer("one_checkpoint");
    let store = SqliteStore::open(&db.0, &name).expect("open");
    let path = db.0.clone();
    let reopen_name = name.clone();
    commits_every_entity_with_one_checkpoint(store, async move |router| {
        drop(router);
        SqliteStore::open(&path, &reopen_name).expect("reopen")
    })
    .await;
    // One checkpoint row, under the router's name, and rows of both
    // entities.
    let store = SqliteStore::open(&db.0, &name).expect("open");
    let mut statement = store
        .connection()
        .prepare("SELECT entity FROM ecst_checkpoint WHERE consumer = ?1")
        .unwrap();
    let rows: Vec<String> = statement
        .query_map([&name], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, [ROUTER_CHECKPOINT_ENTITY]);
}

#[tokio::test]
async fn postgres_commits_every_entity_with_one_checkpoint() {
    let name = consumer("pg_one_checkpoint");
    let mut store = postgres(&name).await;
    store.purge_consumer().await.expect("purge");
    let reopen_name = name.clone();
    commits_every_entity_with_one_checkpoint(store, async move |router| {
        drop(router);
        postgres(&reopen_name).await
    })
    .await;
    let mut store = postgres(&name).await;
    let rows: Vec<String> = store
        .client()
        .query(
            "SELECT entity FROM ecst_checkpoint WHERE consumer = $1",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(rows, [ROUTER_CHECKPOINT_ENTITY]);
    store.purge_consumer().await.expect("purge");
}

#[tokio::test]
async fn memory_commits_every_entity_with_one_checkpoint() {
    commits_every_entity_with_one_checkpoint(MemoryRouterStore::new(), async |router| {
        router.store().clone()
    })
    .await;
}

/// The SQL that makes every write of `consumer`'s checkpoint fail, the
/// last statement of a router's transaction: everything before it (both
/// entities' rows) must roll back.
fn sqlite_failing_checkpoint(consumer: &str) -> String {
    let mut sql = String::new();
    for event in ["INSERT", "UPDATE"] {
        sql.push_str(&format!(
            "CREATE TRIGGER fail_checkpoint_{event} BEFORE {event} ON ecst_checkpoint \
             WHEN NEW.consumer = '{consumer}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        ));
    }
    sql
}

#[tokio::test]
async fn sqlite_a_failed_commit_leaves_no_entity_ahead_of_the_checkpoint() {
    let db = TempDb::new("failed_commit");
    let name = consumer("failed_commit");
    let log = mixed_log();
    let mut router = open_router(SqliteStore::open(&db.0, &name).expect("open")).await;
    router
        .apply_batch(&messages(&log, 0)[..4])
        .await
        .expect("commit");
    let before = dumps(&router);

    let saboteur = SqliteStore::open(&db.0, "saboteur").expect("open");
    saboteur
        .connection()
        .execute_batch(&sqlite_failing_checkpoint(&name))
        .expect("trigger");
    let error = router
        .apply_batch(&messages(&log, 4))
        .await
        .expect_err("the checkpoint cannot be written");
    assert!(error.to_string().contains("injected failure"), "{error}");

    // The store: as before the batch, for every entity.
    let reopened = open_router(SqliteStore::open(&db.0, &name).expect("open")).await;
    assert_eq!(dumps(&reopened), before);
    assert_eq!(reopened.resume_after(), 4);
    drop(reopened);

    // The batch again, once the database takes it: applied once.
    saboteur
        .connection()
        .execute_batch("DROP TRIGGER fail_checkpoint_INSERT; DROP TRIGGER fail_checkpoint_UPDATE;")
        .expect("drop trigger");
    router
        .apply_batch(&messages(&log, 4))
        .await
        .expect("commit");
    assert_eq!(
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        Some((8, 8))
    );
    let reopened = open_router(SqliteStore::open(&db.0, &name).expect("open")).await;
    assert_eq!(dumps(&reopened), dumps(&router));
}

#[tokio::test]
async fn postgres_a_failed_commit_leaves_no_entity_ahead_of_the_checkpoint() {
    let name = consumer("pg_failed_commit");
    let log = mixed_log();
    let mut store = postgres(&name).await;
    store.purge_consumer().await.expect("purge");
    let mut router = open_router(store).await;
    router
        .apply_batch(&messages(&log, 0)[..4])
        .await
        .expect("commit");
    let before = dumps(&router);

    let saboteur = postgres("saboteur").await;
    let function = format!("ecst_fail_{}", std::process::id());
    saboteur
        .client()
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
             CREATE TRIGGER {function} BEFORE INSERT OR UPDATE ON ecst_checkpoint \
             FOR EACH ROW WHEN (NEW.consumer = '{name}') EXECUTE FUNCTION {function}();"
        ))
        .await
        .expect("trigger");
    let failed = router.apply_batch(&messages(&log, 4)).await;
    saboteur
        .client()
        .batch_execute(&format!(
            "DROP TRIGGER {function} ON ecst_checkpoint; DROP FUNCTION {function}();"
        ))
        .await
        .expect("drop trigger");
    let error = failed.expect_err("the checkpoint cannot be written");
    assert!(error.to_string().contains("injected failure"), "{error}");

    let reopened = open_router(postgres(&name).await).await;
    assert_eq!(dumps(&reopened), before);
    assert_eq!(reopened.resume_after(), 4);

    router
        .apply_batch(&messages(&log, 4))
        .await
        .expect("commit");
    assert_eq!(
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        Some((8, 8))
    );
    let mut reopened = open_router(postgres(&name).await).await;
    assert_eq!(dumps(&reopened), dumps(&router));
    drop(router);
    // Leave nothing behind.
    let mut store = postgres(&name).await;
    store.purge_consumer().await.expect("purge");
    let _ = reopened.reload().await;
}

/// Drops the PostgreSQL commit future after `wait`, at whatever point it
/// has reached (before the transaction, inside it, after it), for many
/// waits: the store holds all of the batch or none of it, never one entity
/// without the other; delivered again, the batch is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_commit_dropped_anywhere_loses_nothing_and_applies_nothing_twice() {
    let log = mixed_log();
    let after_first = {
        let mut router = open_router(MemoryRouterStore::new()).await;
        router.apply_batch(&messages(&log, 0)[..4]).await.unwrap();
        dumps(&router)
    };
    let after_all = {
        let mut router = open_router(MemoryRouterStore::new()).await;
        router.apply_batch(&messages(&log, 0)).await.unwrap();
        dumps(&router)
    };
    let mut outcomes = [0usize; 2];
    for step in 0..40u64 {
        let name = consumer(&format!("pg_dropped_{step}"));
        let mut store = postgres(&name).await;
        store.purge_consumer().await.expect("purge");
        let mut router = open_router(store).await;
        router
            .apply_batch(&messages(&log, 0)[..4])
            .await
            .expect("commit");
        let wait = Duration::from_micros(step * step * 15);
        let _ = tokio::time::timeout(wait, router.apply_batch(&messages(&log, 4))).await;

        // Another connection, as a restarted process: all or nothing.
        let reopened = open_router(postgres(&name).await).await;
        let held = dumps(&reopened);
        match reopened.resume_after() {
            4 => {
                assert_eq!(
                    held, after_first,
                    "step {step}: the checkpoint did not move"
                );
                outcomes[0] += 1;
            }
            8 => {
                assert_eq!(held, after_all, "step {step}: the checkpoint moved");
                outcomes[1] += 1;
            }
            other => panic!("step {step}: checkpoint at {other}"),
        }
        // The broker delivers the unacknowledged batch again.
        router
            .apply_batch(&messages(&log, 4))
            .await
            .expect("commit");
        assert_eq!(dumps(&router), after_all, "step {step}");
        assert_eq!(
            router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
            Some((8, 8)),
            "step {step}: every change counted once"
        );
        let mut store = postgres(&name).await;
        store.purge_consumer().await.expect("purge");
    }
    eprintln!(
        "dropped commits: {} left nothing, {} landed whole",
        outcomes[0], outcomes[1]
    );
}

#[tokio::test]
async fn parking_retry_and_discard_stay_per_entity() {
    let db = TempDb::new("parking");
    let name = consumer("parking");
    let mut log = mixed_log();
    // Position 9: a customer of a newer build; 10: garbage on an order's
    // subject.
    let mut newer_producer = Producer::<newer::Customer>::new("urn:example:crm");
    let newer = newer_producer
        .upsert_at(
            newer::Customer {
                id: "c-3".into(),
                name: "Cy".into(),
                email: Some("cy@example.com".into()),
            },
            ecst::Sequence::new(1),
        )
        .unwrap()
        .to_json()
        .unwrap();
    push(&mut log, "customer", "c-3", newer);
    push(&mut log, "order", "o-9", b"{not json".to_vec());

    let mut router = open_router(SqliteStore::open(&db.0, &name).expect("open")).await;
    let outcome = router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let parked: Vec<(u64, ParkKind)> = outcome.parked.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(
        parked,
        [(9, ParkKind::FutureVersion), (10, ParkKind::Invalid)]
    );
    let by_entity: Vec<(&str, u64)> = router
        .parked()
        .map(|(entity, parked)| (entity, parked.stream_sequence))
        .collect();
    assert_eq!(by_entity, [("customer", 9), ("order", 10)]);
    assert_eq!(router.pending_parked(), 2);
    assert_eq!(router.resume_after(), 10);

    // The rows name their entity; a reopened router finds each in place.
    drop(router);
    let mut router = open_router(SqliteStore::open(&db.0, &name).expect("open")).await;
    assert_eq!(router.pending_parked(), 2);
    // A retry leaves both (this build still cannot read them).
    let retried = router.retry_parked().await.expect("retry");
    assert_eq!(retried.parked.len(), 2);
    // Discarding is by entity: the order's stream sequence is not a
    // customer's.
    assert!(!router
        .discard_parked("customer", 10, "wrong entity")
        .await
        .unwrap());
    assert!(router.discard_parked("order", 10, "junk").await.unwrap());
    assert_eq!(router.pending_parked(), 1);
    let reopened = open_router(SqliteStore::open(&db.0, &name).expect("open")).await;
    assert_eq!(reopened.pending_parked(), 1);
    assert_eq!(
        reopened.resume_after(),
        10,
        "parking and discarding kept the checkpoint"
    );
    assert_eq!(dumps(&reopened), dumps(&router));
}

#[tokio::test]
async fn a_message_of_an_unregistered_entity_is_skipped_and_counted() {
    let mut log = mixed_log();
    let mut invoices = Producer::<Invoice>::new("urn:example:billing");
    let invoice = |p: &mut Producer<Invoice>, id: &str| {
        p.upsert(Invoice {
            id: id.into(),
            amount: 5,
        })
        .unwrap()
        .to_json()
        .unwrap()
    };
    push(&mut log, "invoice", "i-1", invoice(&mut invoices, "i-1"));
    // An invoice sent on a customer's subject: misaddressed, parked under
    // the customer it was sent to, never skipped.
    push(&mut log, "customer", "c-1", invoice(&mut invoices, "i-2"));
    let unaddressed = invoice(&mut invoices, "i-3");

    let mut router = open_router(MemoryRouterStore::new()).await;
    let mut batch = messages(&log, 0);
    // Position 11: no address, the envelope says `invoice`; 12: an
    // address that is no state event's.
    batch.push(Message::new(11, "queue", &unaddressed));
    batch.push(
        Message::new(12, "bank.junk", b"{}").addressed(ecst::consume::Address::Invalid(
            "subject `bank.junk` has no key".into(),
        )),
    );
    let outcome = router.apply_batch(&batch).await.expect("commit");
    let rejected: Vec<(u64, ParkKind)> =
        outcome.rejected.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(
        rejected,
        [
            (9, ParkKind::Invalid),
            (11, ParkKind::Invalid),
            (12, ParkKind::Misaddressed)
        ]
    );
    assert!(outcome.rejected[0].1.message.contains("`invoice`"));
    let parked: Vec<(u64, ParkKind)> = outcome.parked.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(parked, [(10, ParkKind::Misaddressed)]);
    let skipped: Vec<(&str, u64)> = router
        .skipped()
        .iter()
        .map(|(entity, count)| (entity.as_str(), *count))
        .collect();
    assert_eq!(skipped, [("", 1), ("invoice", 2)]);
    // Passed by the checkpoint; nothing else moved.
    assert_eq!(
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        Some((12, 8))
    );
    assert_eq!(
        router.replica::<Customer>().unwrap().get("c-1"),
        Some(&customer("c-1", "Ada L."))
    );
    assert!(router.replica::<Invoice>().is_none());
}

/// Entity names come from the wire: a flood of new ones is counted, but
/// only 64 of them by name.
#[tokio::test]
async fn skipped_names_are_bounded() {
    let mut router = open_router(MemoryRouterStore::new()).await;
    let subjects: Vec<String> = (0..100).map(|i| format!("bank.junk{i}.k")).collect();
    let batch: Vec<Message<'_>> = subjects
        .iter()
        .enumerate()
        .map(|(i, subject)| {
            let entity = &subject[5..subject.len() - 2];
            Message::new(i as u64 + 1, subject, b"{}").addressed_to(entity, "k")
        })
        .collect();
    let outcome = router.apply_batch(&batch).await.expect("commit");
    assert_eq!(outcome.rejected.len(), 100);
    assert_eq!(router.skipped().len(), 65);
    assert_eq!(router.skipped().get("*"), Some(&36));
    assert_eq!(router.skipped().values().sum::<u64>(), 100);
    assert_eq!(router.resume_after(), 100);
}

/// Metrics through a router: counters and gauges per entity, the batch
/// latency under `entity="*"`.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_are_labelled_per_entity_through_the_router() {
    let recorder = recorder::Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let log = mixed_log();
    let mut router = open_router(MemoryRouterStore::new())
        .await
        .with_consumer("BANK", "view");
    router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let counters = recorder.counters();
    let labels = |entity: &str| format!("consumer=view,entity={entity}");
    for entity in ["customer", "order"] {
        let applied = format!("ecst_events_applied_total{{{}}}", labels(entity));
        assert_eq!(counters.get(&applied), Some(&4), "{counters:#?}");
    }
    let gauges = recorder.gauges();
    for (entity, keys) in [("customer", 1.0), ("order", 1.0)] {
        let metric = format!("ecst_replica_keys{{{}}}", labels(entity));
        assert_eq!(gauges.get(&metric), Some(&keys), "{gauges:#?}");
    }
    let histograms = recorder.histograms();
    let latency = format!("ecst_batch_apply_seconds{{{}}}", labels("*"));
    assert_eq!(histograms[&latency].len(), 1, "{histograms:#?}");
}

#[tokio::test]
async fn each_entity_has_its_own_change_feed_through_the_router() {
    let log = mixed_log();
    let mut router = open_router(MemoryRouterStore::new()).await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    router
        .on_change::<Customer>(move |change: StateChange<'_, Customer>| {
            sink.lock().unwrap().push(format!(
                "{} {} {:?} -> {:?}",
                change.entity,
                change.key,
                change.before.map(|c| c.name.as_str()),
                change.after.map(|c| c.name.as_str())
            ));
        })
        .expect("customer is registered");
    let sink = Arc::clone(&seen);
    router
        .on_change::<Order>(move |change: StateChange<'_, Order>| {
            sink.lock().unwrap().push(format!(
                "{} {} {:?} -> {:?}",
                change.entity,
                change.key,
                change.before.map(|o| o.total),
                change.after.map(|o| o.total)
            ));
        })
        .expect("order is registered");
    assert!(router.on_change::<Invoice>(|_| {}).is_err());
    router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let seen = seen.lock().unwrap().clone();
    // Per entity, in apply order.
    let of = |entity: &str| -> Vec<String> {
        seen.iter()
            .filter(|line| line.starts_with(entity))
            .cloned()
            .collect()
    };
    assert_eq!(
        of("customer"),
        [
            "customer c-1 None -> Some(\"Ada\")",
            "customer c-2 None -> Some(\"Bea\")",
            "customer c-1 Some(\"Ada\") -> Some(\"Ada L.\")",
            "customer c-2 Some(\"Bea\") -> None",
        ]
    );
    assert_eq!(
        of("order"),
        [
            "order o-1 None -> Some(10)",
            "order o-2 None -> Some(20)",
            "order o-1 Some(10) -> None",
            "order o-2 Some(20) -> Some(25)",
        ]
    );
    // Redelivered: duplicates, reported nowhere.
    router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    assert_eq!(seen.len(), 8);
}

/// The purge floor guards every entity: after a purge, a redelivered older
/// upsert of a purged key is parked, not applied.
#[tokio::test]
async fn the_purge_floor_guards_every_entity_of_a_router() {
    let log = mixed_log();
    let mut router = open_router(MemoryRouterStore::new()).await;
    router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let far = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(router.purge_tombstones_before(far).await.expect("purge"), 2);
    assert_eq!(router.checkpoint().map(|c| c.purged_through), Some(8));
    assert!(router.replica::<Customer>().unwrap().entry("c-2").is_none());
    assert!(router.replica::<Order>().unwrap().entry("o-1").is_none());
    // Redelivered: the first upserts of c-2 (3) and o-1 (2).
    let outcome = router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let parked: Vec<(u64, ParkKind)> = outcome.parked.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(
        parked,
        [
            (2, ParkKind::PurgedTombstone),
            (3, ParkKind::PurgedTombstone)
        ]
    );
    // Never live again (the redelivered deletes make tombstones again).
    assert_eq!(router.replica::<Customer>().unwrap().get("c-2"), None);
    assert_eq!(router.replica::<Order>().unwrap().get("o-1"), None);
    let reopened = open_router(router.store().clone()).await;
    assert_eq!(reopened.checkpoint().map(|c| c.purged_through), Some(8));
    assert_eq!(dumps(&reopened), dumps(&router));
}

/// An entity whose state cannot be serialized when `note` is `"poison"`.
/// Version 2: a state upcast from version 1 is serialized to be stored (a
/// state decoded as written is stored as its event's `data`, unserialized).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "fragile", version = 2)]
pub struct Fragile {
    #[state_event(key)]
    pub id: String,
    #[serde(serialize_with = "refuse_poison")]
    pub note: String,
    #[state_event(added(since = 2))]
    pub tag: Option<String>,
}

fn refuse_poison<S: serde::Serializer>(note: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if note == "poison" {
        return Err(serde::ser::Error::custom("refusing to serialize poison"));
    }
    serializer.serialize_str(note)
}

/// A state no store can hold is parked under its entity (`unstorable`),
/// and the rest of the batch, of every entity, commits.
#[tokio::test]
async fn an_unstorable_state_is_parked_and_every_other_entity_commits() {
    let db = TempDb::new("unstorable");
    let open = || async {
        DurableRouter::builder(SqliteStore::open(&db.0, "unstorable").expect("open"))
            .register::<Customer>()
            .and_then(|b| b.register::<Fragile>())
            .expect("register")
            .open()
            .await
            .expect("load")
    };
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut fragiles = Producer::<Fragile>::new("urn:example:lab");
    // Encoded with a stand-in note, then given the poison (which decodes
    // fine and cannot be encoded again) as a version 1 event (upcast, so
    // serialized to be stored).
    let fragile = |p: &mut Producer<Fragile>, id: &str, note: &str| {
        let json = p
            .upsert(Fragile {
                id: id.into(),
                note: "stand-in".into(),
                tag: None,
            })
            .unwrap()
            .to_json()
            .unwrap();
        String::from_utf8(json)
            .unwrap()
            .replace("\"stand-in\"", &format!("\"{note}\""))
            .replace("\"schemaversion\":2", "\"schemaversion\":1")
            .replace("fragile:v2", "fragile:v1")
            .into_bytes()
    };
    let mut log = Log::new();
    let c1 = customers
        .upsert(customer("c-1", "Ada"))
        .unwrap()
        .to_json()
        .unwrap();
    push(&mut log, "customer", "c-1", c1);
    push(
        &mut log,
        "fragile",
        "f-1",
        fragile(&mut fragiles, "f-1", "poison"),
    );
    push(
        &mut log,
        "fragile",
        "f-2",
        fragile(&mut fragiles, "f-2", "fine"),
    );
    let c2 = customers
        .upsert(customer("c-2", "Bea"))
        .unwrap()
        .to_json()
        .unwrap();
    push(&mut log, "customer", "c-2", c2);

    let mut router = open().await;
    let outcome = router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let parked: Vec<(u64, ParkKind)> = outcome.parked.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(parked, [(2, ParkKind::Unstorable)]);
    assert_eq!(outcome.applied.len(), 3);
    drop(router);
    let router = open().await;
    assert_eq!(
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        Some((4, 3))
    );
    assert_eq!(router.replica::<Customer>().unwrap().len(), 2);
    let fragile = router.replica::<Fragile>().unwrap();
    assert_eq!(fragile.get("f-1"), None);
    assert_eq!(fragile.get("f-2").map(|f| f.note.as_str()), Some("fine"));
    let held: Vec<(&str, u64, ParkKind)> = router
        .parked()
        .map(|(entity, p)| (entity, p.stream_sequence, p.reason.kind))
        .collect();
    assert_eq!(held, [("fragile", 2, ParkKind::Unstorable)]);
}

/// Parking limits set on the builder hold for every entity, whenever it
/// was registered.
#[tokio::test]
async fn parking_limits_hold_for_every_entity() {
    let limits = ecst::consume::ParkingLimits {
        max_pending: 1,
        ..ecst::consume::ParkingLimits::default()
    };
    let mut router = DurableRouter::builder(MemoryRouterStore::new())
        .with_parking_limits(limits)
        .register::<Customer>()
        .and_then(|b| b.register::<Order>())
        .expect("register")
        .open()
        .await
        .expect("open");
    let mut log = Log::new();
    push(&mut log, "customer", "c-1", b"{junk".to_vec());
    push(&mut log, "customer", "c-2", b"{junk".to_vec());
    push(&mut log, "order", "o-1", b"{junk".to_vec());
    push(&mut log, "order", "o-2", b"{junk".to_vec());
    let outcome = router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    assert_eq!(
        outcome.overflowed,
        [1, 3],
        "the oldest of each entity's lot"
    );
    assert_eq!(router.pending_parked(), 2);
}

/// `BlockingRouter`: the same router with plain calls, no runtime.
#[test]
fn a_blocking_router_needs_no_runtime() {
    use ecst::store::blocking::BlockingRouter;
    let db = TempDb::new("blocking");
    let log = mixed_log();
    let open = || {
        let store = SqliteStore::open(&db.0, "blocking").expect("open");
        BlockingRouter::open(
            DurableRouter::builder(store)
                .register::<Customer>()
                .and_then(|b| b.register::<Order>())
                .expect("register"),
        )
        .expect("load")
    };
    let mut router = open();
    router.apply_batch(&messages(&log, 0)[..5]).expect("commit");
    drop(router);
    let mut router = open();
    assert_eq!(router.resume_after(), 5);
    router
        .apply_batch(&messages(&log, router.resume_after()))
        .expect("commit");
    assert_eq!(
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        Some((8, 8))
    );
    assert_eq!(
        router.replica::<Order>().unwrap().get("o-2"),
        Some(&order("o-2", 25))
    );
}

/// Registering an entity twice is refused.
#[tokio::test]
async fn registering_an_entity_twice_is_refused() {
    let taken = DurableRouter::builder(MemoryRouterStore::new())
        .register::<Customer>()
        .unwrap()
        .register::<Customer>();
    let Err(ecst::store::RegisterError::Taken(error)) = taken else {
        panic!("registered twice")
    };
    assert_eq!(error.entity, "customer");
}
