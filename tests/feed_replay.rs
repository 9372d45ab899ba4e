//! The durable change feed is at least once (issue 9, item 1): a crash, or
//! a feed that panics, after a batch is committed and before its report
//! finished loses no change. The keys not yet known to be reported are
//! committed with the batch ("owed"); after a restart `on_change` reports
//! each one's current state (`replayed`) before any new change, and after
//! a panic the next call does.
//!
//! The property: a feed keeps a derived view (key → state) and checks that
//! every change it gets starts where the view is (`before` equals what the
//! view holds: per-key order, nothing missed); it panics at a random
//! change; the consumer is either used again in the same process or
//! "crashes" (dropped, reopened from what its store committed) and goes on
//! with the rest of the stream. At the end the view equals the replica,
//! always. For `DurableReplica` and `DurableRouter` (two entities), on
//! memory stores and SQLite; PostgreSQL with fixed scenarios.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

#[path = "support/router.rs"]
mod router_common;

use std::collections::HashMap;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ecst::store::blocking::{BlockingReplica, BlockingRouter, ReadyRouterStore, ReadyStore};
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, DurableRouter, MemoryRouterStore, MemoryStore, Message};
use ecst::{Entry, Producer, Replica, StateChange, StateEvent};
use futures_util::FutureExt;
use proptest::prelude::*;
use router_common::*;

/// A view derived from the feed, and what the feed saw that was wrong.
struct View<T> {
    states: HashMap<String, T>,
    /// Changes that did not start where the view was.
    errors: Vec<String>,
    replayed: usize,
}

impl<T> Default for View<T> {
    fn default() -> Self {
        View {
            states: HashMap::new(),
            errors: Vec::new(),
            replayed: 0,
        }
    }
}

type Shared<T> = Arc<Mutex<View<T>>>;

/// A feed that keeps `view`, and panics on its `panic_at`-th call (counted
/// in `calls`, shared by every feed of one consumer) before touching it.
fn feed<T: StateEvent + Clone + PartialEq + Debug>(
    view: &Shared<T>,
    calls: &Arc<AtomicUsize>,
    panic_at: Option<usize>,
) -> impl FnMut(StateChange<'_, T>) + Send + Sync + 'static {
    let view = Arc::clone(view);
    let calls = Arc::clone(calls);
    move |change| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(call) == panic_at {
            panic!("the feed fails at change {call}");
        }
        let mut view = view.lock().expect("view");
        let key = change.key.to_string();
        if change.replayed {
            view.replayed += 1;
            if change.before.is_some() {
                view.errors.push(format!("replayed {key} with a `before`"));
            }
        } else if view.states.get(&key) != change.before {
            let error = format!(
                "{} {key} at {}: the view holds {:?}, the change starts from {:?}",
                T::ENTITY,
                change.sequence.get(),
                view.states.get(&key),
                change.before
            );
            view.errors.push(error);
        }
        match change.after {
            Some(state) => view.states.insert(key, state.clone()),
            None => view.states.remove(&key),
        };
    }
}

/// The live states of `replica`, as a view holds them.
fn live<T: StateEvent + Clone>(replica: &Replica<T>) -> HashMap<String, T> {
    replica
        .entries()
        .filter_map(|(key, entry)| match entry {
            Entry::Live { state, .. } => Some((key.to_string(), state.clone())),
            Entry::Tombstone { .. } => None,
        })
        .collect()
}

/// Checks that `view` is in step with `replica`.
fn assert_in_step<T: StateEvent + Clone + PartialEq + Debug>(
    view: &Shared<T>,
    replica: &Replica<T>,
    what: &str,
) -> Result<(), TestCaseError> {
    let view = view.lock().expect("view");
    prop_assert!(view.errors.is_empty(), "{what}: {:?}", view.errors);
    prop_assert_eq!(&view.states, &live(replica), "{}", what);
    Ok(())
}

/// One event of the generated streams: an upsert or a delete of one of a
/// few keys of one of two entities.
#[derive(Clone, Debug)]
struct Op {
    order: bool,
    key: u8,
    /// `None`: a delete.
    value: Option<u64>,
}

fn op() -> impl Strategy<Value = Op> {
    (
        any::<bool>(),
        0..4u8,
        proptest::option::weighted(0.75, 0..100u64),
    )
        .prop_map(|(order, key, value)| Op { order, key, value })
}

/// The stream of `ops` (only customers when `customers_only`), as a
/// transport gives it.
fn stream(ops: &[Op], customers_only: bool) -> Log {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let mut log = Log::new();
    for op in ops {
        if op.order && !customers_only {
            let key = format!("o-{}", op.key);
            let envelope = match op.value {
                Some(total) => orders.upsert(order(&key, total)),
                None => orders.delete(key.clone()),
            };
            push(
                &mut log,
                "order",
                &key,
                envelope.unwrap().to_json().unwrap(),
            );
        } else {
            let key = format!("c-{}", op.key);
            let envelope = match op.value {
                Some(name) => customers.upsert(customer(&key, &format!("n{name}"))),
                None => customers.delete(key.clone()),
            };
            push(
                &mut log,
                "customer",
                &key,
                envelope.unwrap().to_json().unwrap(),
            );
        }
    }
    log
}

/// The batches of `messages`, cut by the sizes in `cuts` (the rest in one
/// last batch).
fn batches<'m>(messages: &'m [Message<'m>], cuts: &[usize]) -> Vec<&'m [Message<'m>]> {
    let mut out = Vec::new();
    let mut rest = messages;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(cut.min(rest.len()));
        out.push(batch);
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// A store a consumer "crashes" on and is reopened from.
trait Reopen<S> {
    fn first(&self) -> S;
    /// A store on what `crashed` committed, as a restarted process opens it.
    fn after_crash(&self, crashed: &S) -> S;
}

/// A fresh `MemoryStore`, reopened as a clone of what was committed.
struct InMemory;

impl Reopen<MemoryStore> for InMemory {
    fn first(&self) -> MemoryStore {
        MemoryStore::new()
    }
    fn after_crash(&self, crashed: &MemoryStore) -> MemoryStore {
        crashed.clone()
    }
}

impl Reopen<MemoryRouterStore> for InMemory {
    fn first(&self) -> MemoryRouterStore {
        MemoryRouterStore::new()
    }
    fn after_crash(&self, crashed: &MemoryRouterStore) -> MemoryRouterStore {
        crashed.clone()
    }
}

/// A SQLite file of its own, reopened by path.
struct InSqlite(TempDb);

static CASES: AtomicUsize = AtomicUsize::new(0);

impl InSqlite {
    fn new(test: &str) -> Self {
        let case = CASES.fetch_add(1, Ordering::SeqCst);
        InSqlite(TempDb::new(&format!("{test}-{case}")))
    }
}

impl Reopen<SqliteStore> for InSqlite {
    fn first(&self) -> SqliteStore {
        SqliteStore::open(&self.0 .0, "feed").expect("sqlite")
    }
    fn after_crash(&self, _: &SqliteStore) -> SqliteStore {
        self.first()
    }
}

/// The replica scenario: batches through a `DurableReplica` whose feed
/// panics at change `panic_at`; then either the same replica goes on
/// (`crash: false`) or a new one is opened on what was committed.
fn replica_scenario<S: ReadyStore<Customer>>(
    backend: &impl Reopen<S>,
    ops: &[Op],
    cuts: &[usize],
    panic_at: usize,
    crash: bool,
) -> Result<(), TestCaseError> {
    let log = stream(ops, true);
    let all = messages(&log, 0);
    let view = Shared::<Customer>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut replica = BlockingReplica::<Customer, S>::open(backend.first()).expect("open");
    replica.on_change(feed(&view, &calls, Some(panic_at)));
    let mut failed = false;
    for batch in batches(&all, cuts) {
        if failed && crash {
            break;
        }
        // The batch is committed whether or not its report panics.
        let result = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(batch)));
        match result {
            Ok(outcome) => {
                outcome.expect("commit");
            }
            Err(_) => failed = true,
        }
    }
    if failed && crash {
        // A restart: what the store committed, a feed registered again
        // (it replays the owed keys before this returns), then the stream
        // from the checkpoint on.
        let store = backend.after_crash(replica.store());
        drop(replica);
        replica = BlockingReplica::open(store).expect("reopen");
        replica.on_change(feed(&view, &calls, None));
        let rest = messages(&log, replica.resume_after());
        for batch in batches(&rest, cuts) {
            replica.apply_batch(batch).expect("commit");
        }
    }
    // An idle poll: the next call reports what a panic left owed.
    replica.apply_batch(&[]).expect("idle");
    assert_in_step(&view, replica.replica(), "customers")
}

/// The router scenario: as [`replica_scenario`], with a feed per entity
/// (one call counter, so the panic can be in either lane).
fn router_scenario<S: ReadyRouterStore>(
    backend: &impl Reopen<S>,
    ops: &[Op],
    cuts: &[usize],
    panic_at: usize,
    crash: bool,
) -> Result<(), TestCaseError> {
    let log = stream(ops, false);
    let all = messages(&log, 0);
    let customers = Shared::<Customer>::default();
    let orders = Shared::<Order>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let open = |store: S| {
        BlockingRouter::open(
            DurableRouter::builder(store)
                .register::<Customer>()
                .expect("customer")
                .register::<Order>()
                .expect("order"),
        )
        .expect("open")
    };
    let mut router = open(backend.first());
    router
        .on_change(feed(&customers, &calls, Some(panic_at)))
        .expect("customer");
    router
        .on_change(feed(&orders, &calls, Some(panic_at)))
        .expect("order");
    let mut failed = false;
    for batch in batches(&all, cuts) {
        if failed && crash {
            break;
        }
        match catch_unwind(AssertUnwindSafe(|| router.apply_batch(batch))) {
            Ok(outcome) => {
                outcome.expect("commit");
            }
            Err(_) => failed = true,
        }
    }
    if failed && crash {
        let store = backend.after_crash(router.store());
        drop(router);
        router = open(store);
        router
            .on_change(feed(&customers, &calls, None))
            .expect("customer");
        router
            .on_change(feed(&orders, &calls, None))
            .expect("order");
        let rest = messages(&log, router.resume_after());
        for batch in batches(&rest, cuts) {
            router.apply_batch(batch).expect("commit");
        }
    }
    router.apply_batch(&[]).expect("idle");
    let customer_replica = router.replica::<Customer>().expect("customer");
    assert_in_step(&customers, customer_replica, "customers")?;
    assert_in_step(&orders, router.replica::<Order>().expect("order"), "orders")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_replica_feed_on_a_memory_store_misses_nothing_across_a_crash(
        ops in proptest::collection::vec(op(), 1..30),
        cuts in proptest::collection::vec(1..6usize, 1..8),
        panic_at in 1..30usize,
        crash in any::<bool>(),
    ) {
        replica_scenario::<MemoryStore>(&InMemory, &ops, &cuts, panic_at, crash)?;
    }

    #[test]
    fn a_replica_feed_on_sqlite_misses_nothing_across_a_crash(
        ops in proptest::collection::vec(op(), 1..30),
        cuts in proptest::collection::vec(1..6usize, 1..8),
        panic_at in 1..30usize,
        crash in any::<bool>(),
    ) {
        let backend = InSqlite::new("replica");
        replica_scenario(&backend, &ops, &cuts, panic_at, crash)?;
    }

    #[test]
    fn a_router_feed_on_a_memory_store_misses_nothing_across_a_crash(
        ops in proptest::collection::vec(op(), 1..30),
        cuts in proptest::collection::vec(1..6usize, 1..8),
        panic_at in 1..30usize,
        crash in any::<bool>(),
    ) {
        router_scenario::<MemoryRouterStore>(&InMemory, &ops, &cuts, panic_at, crash)?;
    }

    #[test]
    fn a_router_feed_on_sqlite_misses_nothing_across_a_crash(
        ops in proptest::collection::vec(op(), 1..30),
        cuts in proptest::collection::vec(1..6usize, 1..8),
        panic_at in 1..30usize,
        crash in any::<bool>(),
    ) {
        let backend = InSqlite::new("router");
        router_scenario(&backend, &ops, &cuts, panic_at, crash)?;
    }
}

/// Four customer events: c-1 inserted, c-2 inserted, c-1 updated, c-2
/// deleted.
fn four_customer_events() -> Log {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut log = Log::new();
    let mut add = |key: &str, envelope: ecst::Envelope<Customer>| {
        push(&mut log, "customer", key, envelope.to_json().unwrap());
    };
    add("c-1", customers.upsert(customer("c-1", "Ada")).unwrap());
    add("c-2", customers.upsert(customer("c-2", "Bea")).unwrap());
    add("c-1", customers.upsert(customer("c-1", "Ada L.")).unwrap());
    add("c-2", customers.delete("c-2".into()).unwrap());
    log
}

/// What the feed got, in order: (key, replayed, after).
type Got = Arc<Mutex<Vec<(String, bool, Option<Customer>)>>>;

fn recording(got: &Got) -> impl FnMut(StateChange<'_, Customer>) + Send + Sync + 'static {
    let got = Arc::clone(got);
    move |change| {
        got.lock()
            .expect("got")
            .push((change.key.clone(), change.replayed, change.after.cloned()));
    }
}

/// The exact replay after a crash: the keys of the batch whose report
/// panicked, each once, as they are now (c-1 updated, c-2 deleted: the
/// states in between are not replayed), before any new change.
#[test]
fn a_restart_replays_each_owed_key_once_as_it_is_now() {
    let log = four_customer_events();
    let db = TempDb::new("feed-exact");
    let mut replica =
        BlockingReplica::<Customer, _>::open(SqliteStore::open(&db.0, "feed").unwrap()).unwrap();
    replica.on_change(|_| panic!("the feed fails"));
    let panicked = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(&messages(&log, 0))));
    assert!(panicked.is_err());
    assert_eq!(replica.resume_after(), 4, "the batch was committed");
    drop(replica);

    let got = Got::default();
    let mut replica =
        BlockingReplica::<Customer, _>::open(SqliteStore::open(&db.0, "feed").unwrap()).unwrap();
    replica.on_change(recording(&got));
    let mut replayed = got.lock().unwrap().clone();
    replayed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        replayed,
        [
            ("c-1".to_owned(), true, Some(customer("c-1", "Ada L."))),
            ("c-2".to_owned(), true, None),
        ]
    );
    // Reported: nothing is replayed again by the next call...
    replica.apply_batch(&[]).unwrap();
    assert_eq!(got.lock().unwrap().len(), 2);
    // ...and the next commit writes the new owed set (its own keys only).
    let mut more = Log::new();
    let envelope = Producer::<Customer>::new("urn:example:crm")
        .upsert(customer("c-3", "Cy"))
        .unwrap();
    push(&mut more, "customer", "c-3", envelope.to_json().unwrap());
    let (_, subject, bytes) = &more[0];
    replica
        .apply_batch(&[Message::new(5, subject, bytes).addressed_to("customer", "c-3")])
        .unwrap();
    let owed: Option<String> = replica
        .store()
        .connection()
        .query_row(
            "SELECT owed FROM ecst_checkpoint WHERE consumer = 'feed' AND entity = 'customer'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(owed.as_deref(), Some(r#"["c-3"]"#));
}

/// With no feed registered nothing is recorded and the stored owed keys
/// stay: a feed registered later (even after a restart) replays them.
#[test]
fn owed_keys_wait_for_a_feed() {
    let log = four_customer_events();
    let db = TempDb::new("feed-wait");
    let mut replica =
        BlockingReplica::<Customer, _>::open(SqliteStore::open(&db.0, "feed").unwrap()).unwrap();
    // No feed: the column stays NULL.
    replica.apply_batch(&messages(&log, 0)[..1]).unwrap();
    let owed = |replica: &BlockingReplica<Customer, SqliteStore>| -> Option<String> {
        replica
            .store()
            .connection()
            .query_row(
                "SELECT owed FROM ecst_checkpoint WHERE consumer = 'feed' AND entity = 'customer'",
                [],
                |row| row.get(0),
            )
            .unwrap()
    };
    assert_eq!(owed(&replica), None);
    replica.on_change(|_| panic!("the feed fails"));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        replica.apply_batch(&messages(&log, 0)[1..3])
    }));
    assert!(panicked.is_err());
    // c-2, c-1 owed. Without a feed, the next batch leaves them stored.
    replica.clear_on_change();
    replica.apply_batch(&messages(&log, 0)[3..]).unwrap();
    let stored = owed(&replica).expect("owed keys stored");
    assert!(stored.contains("c-1") && stored.contains("c-2"), "{stored}");
    drop(replica);

    let got = Got::default();
    let mut replica =
        BlockingReplica::<Customer, _>::open(SqliteStore::open(&db.0, "feed").unwrap()).unwrap();
    replica.on_change(recording(&got));
    let mut replayed = got.lock().unwrap().clone();
    replayed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        replayed,
        [
            ("c-1".to_owned(), true, Some(customer("c-1", "Ada L."))),
            ("c-2".to_owned(), true, None),
        ]
    );
}

/// The tables of the previous build: `ecst_checkpoint` without `owed`;
/// consumer `replica` (a replica's row) and `router` (a router's row), both
/// at stream position 2.
const PREVIOUS_TABLES: &str = "
CREATE TABLE ecst_replica (
    consumer TEXT NOT NULL, entity TEXT NOT NULL, key TEXT NOT NULL,
    sequence INTEGER NOT NULL, schema_version INTEGER NOT NULL, state TEXT,
    read_version INTEGER, deleted_at INTEGER,
    PRIMARY KEY (consumer, entity, key)
) STRICT;
CREATE TABLE ecst_checkpoint (
    consumer TEXT NOT NULL, entity TEXT NOT NULL,
    stream_sequence INTEGER NOT NULL, applied INTEGER NOT NULL,
    purged_through INTEGER NOT NULL DEFAULT 0, stream_created INTEGER, entities TEXT,
    PRIMARY KEY (consumer, entity)
) STRICT;
CREATE TABLE ecst_parked (
    consumer TEXT NOT NULL, entity TEXT NOT NULL, stream_sequence INTEGER NOT NULL,
    subject TEXT NOT NULL, key TEXT, reason TEXT NOT NULL, payload BLOB NOT NULL,
    kind TEXT, resolution TEXT,
    PRIMARY KEY (consumer, entity, stream_sequence)
) STRICT;
INSERT INTO ecst_replica VALUES ('replica', 'customer', 'c-9', 7, 1, '{\"id\":\"c-9\",\"name\":\"Old\"}', 1, NULL);
INSERT INTO ecst_checkpoint VALUES ('replica', 'customer', 2, 1, 0, NULL, NULL);
INSERT INTO ecst_replica VALUES ('router', 'customer', 'c-9', 7, 1, '{\"id\":\"c-9\",\"name\":\"Old\"}', 1, NULL);
INSERT INTO ecst_checkpoint VALUES ('router', '*', 2, 1, 0, NULL, 'customer,order');
";

/// A store written by the previous build (no `owed` column) opens, replays
/// nothing, and then keeps owed keys like a new one, for a replica and a
/// router.
#[test]
fn a_store_of_the_previous_build_opens_and_keeps_owed_keys() {
    let db = TempDb::new("feed-previous");
    {
        let connection = ecst::store::sqlite::rusqlite::Connection::open(&db.0).unwrap();
        connection.execute_batch(PREVIOUS_TABLES).unwrap();
    }
    let log = four_customer_events();
    // Positions 3 to 6.
    let batch: Vec<Message<'_>> = log
        .iter()
        .map(|(position, subject, bytes)| {
            let key = subject.rsplit('.').next().unwrap_or_default();
            Message::new(position + 2, subject, bytes).addressed_to("customer", key)
        })
        .collect();
    let expected = [
        ("c-1".to_owned(), true, Some(customer("c-1", "Ada L."))),
        ("c-2".to_owned(), true, None),
    ];

    // A replica's row.
    let open = || {
        BlockingReplica::<Customer, _>::open(SqliteStore::open(&db.0, "replica").unwrap()).unwrap()
    };
    let got = Got::default();
    let mut replica = open();
    assert_eq!(replica.resume_after(), 2);
    assert_eq!(replica.replica().len(), 1);
    replica.on_change(recording(&got));
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing owed in an old store"
    );
    replica.on_change(|_| panic!("the feed fails"));
    assert!(catch_unwind(AssertUnwindSafe(|| replica.apply_batch(&batch))).is_err());
    drop(replica);
    let mut replica = open();
    replica.on_change(recording(&got));
    let mut replayed = got.lock().unwrap().clone();
    replayed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(replayed, expected);
    drop(replica);

    // A router's row.
    let open = || {
        BlockingRouter::open(
            DurableRouter::builder(SqliteStore::open(&db.0, "router").unwrap())
                .register::<Customer>()
                .unwrap()
                .register::<Order>()
                .unwrap(),
        )
        .unwrap()
    };
    let got = Got::default();
    let mut router = open();
    assert_eq!(router.resume_after(), 2, "covered: not rewound");
    router.on_change(recording(&got)).unwrap();
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing owed in an old store"
    );
    router
        .on_change::<Customer>(|_| panic!("the feed fails"))
        .unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| router.apply_batch(&batch))).is_err());
    drop(router);
    let mut router = open();
    router.on_change(recording(&got)).unwrap();
    let mut replayed = got.lock().unwrap().clone();
    replayed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(replayed, expected);
}

/// PostgreSQL: a replica and a router whose feeds panic after the commit,
/// reopened on a new connection, replay the owed keys.
#[tokio::test]
async fn postgres_a_restart_replays_what_a_crash_left_unreported() {
    let log = four_customer_events();
    let all = messages(&log, 0);

    // A replica.
    let name = consumer("feed-replay-replica");
    let mut store = postgres(&name).await;
    store.purge_consumer().await.unwrap();
    let mut replica = DurableReplica::<Customer, _>::open(store).await.unwrap();
    replica.on_change(|change| assert_ne!(change.key, "c-1", "the feed fails"));
    let panicked = AssertUnwindSafe(replica.apply_batch(&all))
        .catch_unwind()
        .await;
    assert!(panicked.is_err());
    drop(replica);
    let view = Shared::<Customer>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut replica = DurableReplica::<Customer, _>::open(postgres(&name).await)
        .await
        .unwrap();
    replica.on_change(feed(&view, &calls, None));
    assert_eq!(view.lock().unwrap().replayed, 2);
    assert_in_step(&view, replica.replica(), "customers").unwrap();

    // A router (its own consumer name), the panic in the customers' lane:
    // the orders' lane, whose report never ran, is owed too.
    let log = mixed_log();
    let all = messages(&log, 0);
    let name = consumer("feed-replay-router");
    let mut store = postgres(&name).await;
    store.purge_consumer().await.unwrap();
    let mut router = open_router(store).await;
    router
        .on_change::<Customer>(|_| panic!("the feed fails"))
        .unwrap();
    router.on_change::<Order>(|_| {}).unwrap();
    let panicked = AssertUnwindSafe(router.apply_batch(&all))
        .catch_unwind()
        .await;
    assert!(panicked.is_err());
    drop(router);
    let customers = Shared::<Customer>::default();
    let orders = Shared::<Order>::default();
    let mut router = open_router(postgres(&name).await).await;
    router.on_change(feed(&customers, &calls, None)).unwrap();
    router.on_change(feed(&orders, &calls, None)).unwrap();
    assert_eq!(customers.lock().unwrap().replayed, 2);
    assert_eq!(orders.lock().unwrap().replayed, 2);
    assert_in_step(
        &customers,
        router.replica::<Customer>().unwrap(),
        "customers",
    )
    .unwrap();
    assert_in_step(&orders, router.replica::<Order>().unwrap(), "orders").unwrap();
}
