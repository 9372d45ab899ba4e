//! `DurableRouter`: one durable consumer for several entities, with one
//! store, one checkpoint and one transaction per batch, on real SQLite and
//! PostgreSQL (127.0.0.1:5432, database `test`, or `ECST_TEST_POSTGRES`)
//! and in memory; and the NATS follower over it against a real
//! nats-server.
//!
//! - every entity's changes and the one checkpoint land together; a
//!   reopened store gives back each entity and the checkpoint;
//! - a commit that fails at its last statement (the checkpoint) leaves no
//!   entity ahead of the checkpoint, and the batch delivered again applies
//!   once;
//! - a commit future dropped at any point (PostgreSQL) leaves all or
//!   nothing, and the redelivery applies nothing twice;
//! - parking, retry and discard stay per entity;
//! - a message of an entity nobody registered is skipped and counted,
//!   never parked or applied, and never silently lost;
//! - the purge floor guards every entity of a router;
//! - a property: the router's replicas equal separate `DurableReplica`s fed
//!   the same messages.

#![cfg(all(feature = "sqlite", feature = "postgres", feature = "nats"))]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecst::consume::ParkKind;
use ecst::store::postgres::PostgresStore;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{
    DurableReplica, DurableRouter, MemoryRouterStore, MemoryStore, Message, RouterStore,
    ROUTER_CHECKPOINT_ENTITY,
};
use ecst::{Entry, Outcome, Producer, Replica, StateChange, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
pub struct Order {
    #[state_event(key)]
    pub id: String,
    pub total: u64,
}

/// An entity the consumer does not register.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "invoice", version = 1)]
pub struct Invoice {
    #[state_event(key)]
    pub id: String,
    pub amount: u64,
}

/// `customer` as a newer build writes it: a future version to this one.
mod newer {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "customer", version = 2)]
    pub struct Customer {
        #[state_event(key)]
        pub id: String,
        pub name: String,
        #[state_event(added(since = 2))]
        pub email: Option<String>,
    }
}

fn customer(id: &str, name: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
    }
}

fn order(id: &str, total: u64) -> Order {
    Order {
        id: id.into(),
        total,
    }
}

/// A stream as any transport gives it: (position, subject, bytes).
type Log = Vec<(u64, String, Vec<u8>)>;

/// Appends one envelope's bytes on `bank.<entity>.<key>`.
fn push(log: &mut Log, entity: &str, key: &str, bytes: Vec<u8>) {
    let position = log.len() as u64 + 1;
    log.push((position, format!("bank.{entity}.{key}"), bytes));
}

/// The messages of `log` after `after`, addressed by their subjects.
fn messages(log: &Log, after: u64) -> Vec<Message<'_>> {
    log.iter()
        .filter(|(position, _, _)| *position > after)
        .map(|(position, subject, bytes)| {
            let mut parts = subject.splitn(3, '.').skip(1);
            let entity = parts.next().unwrap_or_default();
            let key = parts.next().unwrap_or_default();
            Message::new(*position, subject, bytes).addressed_to(entity, key)
        })
        .collect()
}

/// Two customers and two orders, interleaved, with an update and a delete
/// of each entity: 8 messages, 8 changes.
fn mixed_log() -> Log {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let mut log = Log::new();
    let c = |e: ecst::Envelope<Customer>| e.to_json().unwrap();
    let o = |e: ecst::Envelope<Order>| e.to_json().unwrap();
    push(
        &mut log,
        "customer",
        "c-1",
        c(customers.upsert(customer("c-1", "Ada")).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-1",
        o(orders.upsert(order("o-1", 10)).unwrap()),
    );
    push(
        &mut log,
        "customer",
        "c-2",
        c(customers.upsert(customer("c-2", "Bea")).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-2",
        o(orders.upsert(order("o-2", 20)).unwrap()),
    );
    push(
        &mut log,
        "customer",
        "c-1",
        c(customers.upsert(customer("c-1", "Ada L.")).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-1",
        o(orders.delete("o-1".into()).unwrap()),
    );
    push(
        &mut log,
        "customer",
        "c-2",
        c(customers.delete("c-2".into()).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-2",
        o(orders.upsert(order("o-2", 25)).unwrap()),
    );
    log
}

/// What a replica holds, comparable: (key, sequence, state or tombstone).
fn dump<T: StateEvent + Clone>(replica: &Replica<T>) -> Vec<(String, u64, Option<T>)> {
    let mut out: Vec<_> = replica
        .entries()
        .map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => {
                (key.to_string(), sequence.get(), Some(state.clone()))
            }
            Entry::Tombstone { sequence } => (key.to_string(), sequence.get(), None),
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

type Dumps = (
    Vec<(String, u64, Option<Customer>)>,
    Vec<(String, u64, Option<Order>)>,
);

fn dumps<S: RouterStore>(router: &DurableRouter<S>) -> Dumps {
    (
        dump(router.replica::<Customer>().expect("customer registered")),
        dump(router.replica::<Order>().expect("order registered")),
    )
}

async fn open_router<S: RouterStore>(store: S) -> DurableRouter<S> {
    DurableRouter::builder(store)
        .register::<Customer>()
        .expect("customer")
        .register::<Order>()
        .expect("order")
        .open()
        .await
        .expect("opening the router")
}

/// A unique consumer name for this run and test.
fn consumer(test: &str) -> String {
    format!("ecst-router-{}-{test}", std::process::id())
}

/// A temporary SQLite file, deleted with its WAL files on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ecst-router-{}-{test}.db", std::process::id()));
        let db = TempDb(path);
        db.remove();
        db
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.0.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn postgres_config() -> String {
    std::env::var("ECST_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

async fn postgres(consumer: &str) -> PostgresStore {
    match PostgresStore::connect(&postgres_config(), consumer).await {
        Ok(store) => store,
        Err(error) => panic!(
            "cannot reach PostgreSQL with `{}`: {error} (these tests need PostgreSQL with trust \
             authentication and a database `test`, or ECST_TEST_POSTGRES)",
            postgres_config()
        ),
    }
}

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
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "fragile", version = 1)]
pub struct Fragile {
    #[state_event(key)]
    pub id: String,
    #[serde(serialize_with = "refuse_poison")]
    pub note: String,
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
    // fine and cannot be encoded again).
    let fragile = |p: &mut Producer<Fragile>, id: &str, note: &str| {
        let json = p
            .upsert(Fragile {
                id: id.into(),
                note: "stand-in".into(),
            })
            .unwrap()
            .to_json()
            .unwrap();
        String::from_utf8(json)
            .unwrap()
            .replace("\"stand-in\"", &format!("\"{note}\""))
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
    let Err(error) = taken else {
        panic!("registered twice")
    };
    assert_eq!(error.entity, "customer");
}

// ---------------------------------------------------------------------
// The property: a router equals separate durable replicas.

/// One message of the generated stream.
#[derive(Clone, Debug)]
enum Event {
    /// An upsert (`Some(value)`) or delete (`None`) of `key` at `sequence`.
    Customer(u8, u64, Option<u8>),
    Order(u8, u64, Option<u8>),
    /// Bytes that are no envelope, on a customer's or an order's subject.
    Garbage(bool, u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0..4u8, 1..6u64, proptest::option::weighted(0.8, any::<u8>()))
            .prop_map(|(k, s, v)| Event::Customer(k, s, v)),
        6 => (0..4u8, 1..6u64, proptest::option::weighted(0.8, any::<u8>()))
            .prop_map(|(k, s, v)| Event::Order(k, s, v)),
        1 => (any::<bool>(), 0..4u8).prop_map(|(c, k)| Event::Garbage(c, k)),
    ]
}

fn encode(event: &Event) -> (String, Vec<u8>) {
    use ecst::Sequence;
    match event {
        Event::Customer(k, s, v) => {
            let key = format!("c-{k}");
            let mut p = Producer::<Customer>::new("urn:example:crm");
            let envelope = match v {
                Some(v) => p.upsert_at(customer(&key, &format!("n{v}")), Sequence::new(*s)),
                None => p.delete_at(key.clone(), Sequence::new(*s)),
            };
            (
                format!("bank.customer.{key}"),
                envelope.unwrap().to_json().unwrap(),
            )
        }
        Event::Order(k, s, v) => {
            let key = format!("o-{k}");
            let mut p = Producer::<Order>::new("urn:example:shop");
            let envelope = match v {
                Some(v) => p.upsert_at(order(&key, u64::from(*v)), Sequence::new(*s)),
                None => p.delete_at(key.clone(), Sequence::new(*s)),
            };
            (
                format!("bank.order.{key}"),
                envelope.unwrap().to_json().unwrap(),
            )
        }
        Event::Garbage(to_customer, k) => {
            let entity = if *to_customer { "customer" } else { "order" };
            let prefix = if *to_customer { 'c' } else { 'o' };
            (format!("bank.{entity}.{prefix}-{k}"), b"{oops".to_vec())
        }
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_router_equals_separate_durable_replicas(
        events in proptest::collection::vec(event(), 1..40),
        cuts in proptest::collection::vec(1..8usize, 1..10),
    ) {
        let mut log = Log::new();
        for event in &events {
            let (subject, bytes) = encode(event);
            let mut parts = subject.splitn(3, '.').skip(1);
            let entity = parts.next().unwrap().to_owned();
            let key = parts.next().unwrap().to_owned();
            push(&mut log, &entity, &key, bytes);
        }
        let all = messages(&log, 0);
        block_on(async {
            let mut router = open_router(MemoryRouterStore::new()).await;
            let mut customers = DurableReplica::<Customer, _>::open(MemoryStore::new()).await.unwrap();
            let mut orders = DurableReplica::<Order, _>::open(MemoryStore::new()).await.unwrap();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= all.len() {
                    break;
                }
                let end = (at + cut).min(all.len());
                let batch = &all[at..end];
                router.apply_batch(batch).await.unwrap();
                let of = |entity: &str| -> Vec<Message<'_>> {
                    batch
                        .iter()
                        .filter(|m| matches!(&m.address, ecst::consume::Address::Key { entity: e, .. } if *e == entity))
                        .cloned()
                        .collect()
                };
                customers.apply_batch(&of("customer")).await.unwrap();
                orders.apply_batch(&of("order")).await.unwrap();
                at = end;
            }
            // Every batch once more, as a redelivery after a crash.
            router.apply_batch(&all).await.unwrap();
            let reopened = open_router(router.store().clone()).await;
            prop_assert_eq!(dump(reopened.replica::<Customer>().unwrap()), dump(customers.replica()));
            prop_assert_eq!(dump(reopened.replica::<Order>().unwrap()), dump(orders.replica()));
            let parked_router: Vec<(&str, u64, ParkKind)> = reopened
                .parked()
                .map(|(e, p)| (e, p.stream_sequence, p.reason.kind))
                .collect();
            let mut parked_alone: Vec<(&str, u64, ParkKind)> = customers
                .parked()
                .map(|p| ("customer", p.stream_sequence, p.reason.kind))
                .collect();
            parked_alone.extend(orders.parked().map(|p| ("order", p.stream_sequence, p.reason.kind)));
            prop_assert_eq!(parked_router, parked_alone);
            let applied = customers.checkpoint().map_or(0, |c| c.applied)
                + orders.checkpoint().map_or(0, |c| c.applied);
            prop_assert_eq!(reopened.checkpoint().map(|c| c.applied), Some(applied));
            prop_assert_eq!(reopened.resume_after(), log.len() as u64);
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------
// The NATS follower over a router.

mod follower {
    use super::*;
    use async_nats::jetstream;
    use ecst::nats::{
        serve_bootstrap, BootstrapRequest, FollowSettings, Publisher, RouterFollower,
        ServerVersion, StateStream, Subjects,
    };
    use nats_server::NatsServer;

    const PATIENCE: Duration = Duration::from_secs(20);

    fn settings(subjects: &Subjects) -> FollowSettings {
        let mut settings = FollowSettings::new("BANK", "router", subjects.clone());
        settings.fetch_wait = Duration::from_millis(200);
        settings.lease_ttl = Some(Duration::from_secs(2));
        settings.lease_wait = Duration::from_secs(3);
        settings
    }

    fn assert_send<F: Send>(future: F) -> F {
        future
    }

    /// A follower's poll can run on a spawned task, over a router as over
    /// one replica (with a store that is `Sync`: SQLite's connection is
    /// not, so a follower over SQLite runs where it was created).
    #[allow(dead_code)]
    fn polls_are_send(
        router: &mut RouterFollower<MemoryRouterStore>,
        postgres: &mut RouterFollower<PostgresStore>,
        replica: &mut ecst::nats::Follower<Customer, MemoryStore>,
    ) {
        drop(assert_send(router.poll()));
        drop(assert_send(postgres.poll()));
        drop(assert_send(replica.poll()));
    }

    #[tokio::test]
    async fn a_follower_over_a_router_reaches_the_owners_state_and_resumes() {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new("bank").unwrap();
        let version = ServerVersion::of(&client).unwrap();
        StateStream::new("BANK", subjects.clone())
            .ensure(&js, version)
            .await
            .expect("stream");
        let publisher = Publisher::new(js.clone(), subjects.clone());
        let mut customers = Producer::<Customer>::new("urn:example:crm");
        let mut orders = Producer::<Order>::new("urn:example:shop");
        let mut invoices = Producer::<Invoice>::new("urn:example:billing");
        for i in 0..30 {
            publisher
                .publish(
                    &customers
                        .upsert(customer(&format!("c-{}", i % 7), &format!("n{i}")))
                        .unwrap(),
                )
                .await
                .expect("publish");
            publisher
                .publish(&orders.upsert(order(&format!("o-{}", i % 5), i)).unwrap())
                .await
                .expect("publish");
        }
        publisher
            .publish(&orders.delete("o-1".into()).unwrap())
            .await
            .expect("publish");
        publisher
            .publish(
                &invoices
                    .upsert(Invoice {
                        id: "i-1".into(),
                        amount: 3,
                    })
                    .unwrap(),
            )
            .await
            .expect("publish");

        let db = TempDb::new("follower");
        let store = SqliteStore::open(&db.0, "router").expect("open");
        let router = open_router(store).await;
        let mut follower = RouterFollower::start(client.clone(), settings(&subjects), router)
            .await
            .expect("start");
        tokio::time::timeout(PATIENCE, follower.catch_up())
            .await
            .expect("caught up in time")
            .expect("catch up");
        let router = follower.replica();
        let held_customers: Vec<(String, String)> = router
            .replica::<Customer>()
            .unwrap()
            .iter()
            .map(|(k, c)| (k.clone(), c.name.clone()))
            .collect();
        assert_eq!(held_customers.len(), 7);
        for (key, name) in &held_customers {
            let k: usize = key[2..].parse().unwrap();
            let last = (0..30).filter(|i| i % 7 == k).max().unwrap();
            assert_eq!(name, &format!("n{last}"), "{key}");
        }
        let orders_held = router.replica::<Order>().unwrap();
        assert_eq!(orders_held.len(), 4);
        assert!(matches!(
            orders_held.entry("o-1"),
            Some(Entry::Tombstone { .. })
        ));
        for k in [0u64, 2, 3, 4] {
            let last = (0..30).filter(|i| i % 5 == k).max().unwrap();
            assert_eq!(
                orders_held.get(&format!("o-{k}")).map(|o| o.total),
                Some(last)
            );
        }
        assert_eq!(router.skipped().get("invoice"), Some(&1));
        let checkpoint = router.resume_after();
        assert!(checkpoint > 0);

        // Stopped, more published, restarted from the one checkpoint.
        let router = follower.stop().await;
        drop(router);
        publisher
            .publish(&customers.upsert(customer("c-100", "late")).unwrap())
            .await
            .expect("publish");
        publisher
            .publish(&orders.upsert(order("o-100", 100)).unwrap())
            .await
            .expect("publish");
        let router = open_router(SqliteStore::open(&db.0, "router").expect("open")).await;
        assert_eq!(router.resume_after(), checkpoint);
        let mut follower = RouterFollower::start(client.clone(), settings(&subjects), router)
            .await
            .expect("restart");
        tokio::time::timeout(PATIENCE, follower.catch_up())
            .await
            .expect("caught up in time")
            .expect("catch up");
        let router = follower.replica();
        assert_eq!(
            router
                .replica::<Customer>()
                .unwrap()
                .get("c-100")
                .map(|c| c.name.as_str()),
            Some("late")
        );
        assert_eq!(
            router
                .replica::<Order>()
                .unwrap()
                .get("o-100")
                .map(|o| o.total),
            Some(100)
        );
        // The stream keeps the last event of each key: 7 customers and 5
        // orders (o-1's a delete) the first time; then only the 2 new ones,
        // resumed after the checkpoint.
        assert_eq!(router.checkpoint().map(|c| c.applied), Some(7 + 5 + 2));

        // The orders' owner answers a bootstrap request with a key the
        // stream never carried: merged into the router's orders, the
        // checkpoint's position unmoved.
        let responder = {
            let client = client.clone();
            let subjects = subjects.clone();
            let mut owner = Producer::<Order>::new("urn:example:shop");
            let answer = owner.upsert(order("o-200", 200)).unwrap();
            tokio::spawn(async move {
                let _ =
                    serve_bootstrap::<Order, _>(client, &subjects, move |_| vec![answer.clone()])
                        .await;
            })
        };
        let position = follower.replica().resume_after();
        let merged = tokio::time::timeout(PATIENCE, async {
            loop {
                let asked = follower
                    .bootstrap_from_owner::<Order>(
                        &BootstrapRequest::all(),
                        Duration::from_millis(300),
                    )
                    .await;
                if let Ok(outcome) = asked {
                    break outcome;
                }
            }
        })
        .await
        .expect("the owner answered in time");
        assert_eq!(merged.applied, [(0, Outcome::Inserted)]);
        let router = follower.replica();
        assert_eq!(
            router
                .replica::<Order>()
                .unwrap()
                .get("o-200")
                .map(|o| o.total),
            Some(200)
        );
        assert_eq!(router.resume_after(), position);
        responder.abort();
        follower.stop().await;
    }
}
