//! Red team of the at-least-once durable change feed (issue 9 item 1): the
//! attacks that hold, kept as regression tests (the last group broke the
//! promise until 283f03b).
//!
//! Every attack keeps a view from the feed (key → `after`, removed on
//! `None`) and checks, after the attack, that it equals the replica and
//! that no key was reported at an older sequence after a newer one:
//!
//! - a feed that panics at each change in turn, the consumer used again in
//!   the same process, and then restarted;
//! - a feed cleared after a panic, tombstones purged meanwhile (one of them
//!   owed), registered again, in process and after a restart;
//! - `reload`, `merge_unsequenced`, `discard_parked`, `retry_parked` and
//!   `rewind_stream_position` after a panic;
//! - a router whose second lane's feed panics after the first reported, and
//!   an entity added to a router whose stored owed keys name another one;
//! - hostile or corrupt `owed` columns written by hand in SQLite, for a
//!   replica and for a router's `*` row: a typed error, never a panic;
//! - a `Follower` over a real nats-server whose feed panics between the
//!   commit and the acknowledgement, restarted from its SQLite file;
//! - a commit that lands without its call returning (a memory store that
//!   commits then pends or fails; PostgreSQL dropped at every await), for
//!   a replica and a router: the reload replays what it loaded.

#![cfg(all(feature = "sqlite", feature = "nats"))]

#[path = "support/router.rs"]
mod router_common;

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecst::store::blocking::{BlockingReplica, BlockingRouter};
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, DurableRouter, Message, StoreError};
use ecst::{Entry, Producer, Replica, StateChange, StateEvent};
use router_common::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A view kept from the feed, and what went wrong in it.
struct View<T> {
    states: HashMap<String, T>,
    /// The last sequence reported per key (a replayed key holding nothing
    /// reports 0, and resets it).
    sequences: HashMap<String, u64>,
    errors: Vec<String>,
    replayed: usize,
}

impl<T> Default for View<T> {
    fn default() -> Self {
        View {
            states: HashMap::new(),
            sequences: HashMap::new(),
            errors: Vec::new(),
            replayed: 0,
        }
    }
}

type Shared<T> = Arc<Mutex<View<T>>>;

/// A feed keeping `view` that panics on its `panic_at`-th call (counted in
/// `calls`) before touching it.
fn keep<T: StateEvent + Clone>(
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
        let sequence = change.sequence.get();
        let held_nothing = change.replayed && change.after.is_none() && sequence == 0;
        if let Some(seen) = view.sequences.get(&key).copied() {
            if sequence < seen && !held_nothing {
                let error = format!("{key}: sequence {sequence} reported after {seen}");
                view.errors.push(error);
            }
        }
        if change.replayed {
            view.replayed += 1;
        }
        view.sequences.insert(key.clone(), sequence);
        match change.after {
            Some(state) => view.states.insert(key, state.clone()),
            None => view.states.remove(&key),
        };
    }
}

fn live<T: StateEvent + Clone>(replica: &Replica<T>) -> HashMap<String, T> {
    replica
        .entries()
        .filter_map(|(key, entry)| match entry {
            Entry::Live { state, .. } => Some((key.to_string(), state.clone())),
            Entry::Tombstone { .. } => None,
        })
        .collect()
}

fn assert_in_step<T: StateEvent + Clone + PartialEq + std::fmt::Debug>(
    view: &Shared<T>,
    replica: &Replica<T>,
    what: &str,
) {
    let view = view.lock().expect("view");
    assert!(view.errors.is_empty(), "{what}: {:?}", view.errors);
    assert_eq!(
        view.states,
        live(replica),
        "{what}: the view is not the replica"
    );
}

/// Three customers over nine events, by one producer so sequences rise:
/// inserts, updates, deletes, and a key inserted again after its delete.
fn customer_log_with_deletes() -> Log {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let mut log = Log::new();
    let steps: [(&str, Option<&str>); 9] = [
        ("c-1", Some("Ada")),
        ("c-2", Some("Bea")),
        ("c-1", Some("Ada L.")),
        ("c-3", Some("Cy")),
        ("c-2", None),
        ("c-3", Some("Cyd")),
        ("c-1", None),
        ("c-2", Some("Bea again")),
        ("c-3", None),
    ];
    for (key, name) in steps {
        let envelope = match name {
            Some(name) => producer.upsert(customer(key, name)),
            None => producer.delete(key.to_owned()),
        }
        .expect("envelope");
        push(&mut log, "customer", key, envelope.to_json().expect("json"));
    }
    log
}

/// A feed that panics at each change in turn (every change of every batch,
/// replays included), the replica used again in the same process and then
/// restarted from its SQLite file: the view always ends equal to the
/// replica, in per-key order.
#[test]
fn a_feed_panicking_at_each_change_loses_nothing() {
    let log = customer_log_with_deletes();
    let all = messages(&log, 0);
    // 9 changes, plus the replays after each panic: 20 covers them all.
    for panic_at in 1..=20 {
        let db = TempDb::new(&format!("redfeed-panic-{panic_at}"));
        let view = Shared::<Customer>::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        let mut replica = BlockingReplica::<Customer, _>::open(store).expect("open");
        replica.on_change(keep(&view, &calls, Some(panic_at)));
        for batch in all.chunks(3) {
            let result = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(batch)));
            if let Ok(result) = result {
                result.expect("batch");
            }
        }
        let _ = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(&[])));
        replica.apply_batch(&[]).expect("idle poll");
        assert_in_step(&view, replica.replica(), &format!("in process, {panic_at}"));

        // A restart keeps the view (it lives outside the process).
        drop(replica);
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        let mut replica = BlockingReplica::<Customer, _>::open(store).expect("reopen");
        replica.on_change(keep(&view, &calls, None));
        replica
            .apply_batch(&messages(&log, 0))
            .expect("redelivered");
        assert_in_step(&view, replica.replica(), &format!("restarted, {panic_at}"));
    }
}

/// The same, but the process "crashes" right after the panic (the replica
/// dropped, not used again): the reopened store replays what was owed.
#[test]
fn a_crash_after_each_panic_loses_nothing() {
    let log = customer_log_with_deletes();
    let all = messages(&log, 0);
    for panic_at in 1..=9 {
        let db = TempDb::new(&format!("redfeed-crash-{panic_at}"));
        let view = Shared::<Customer>::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut done = 0;
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        let mut replica = BlockingReplica::<Customer, _>::open(store).expect("open");
        replica.on_change(keep(&view, &calls, Some(panic_at)));
        for batch in all.chunks(2) {
            let result = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(batch)));
            let Ok(result) = result else {
                break;
            };
            result.expect("batch");
            done += batch.len();
        }
        drop(replica);
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        let mut replica = BlockingReplica::<Customer, _>::open(store).expect("reopen");
        replica.on_change(keep(&view, &calls, None));
        // Not acknowledged: the panicked batch comes again, then the rest.
        let resume = replica.resume_after();
        assert!(resume as usize >= done, "the panicked batch was committed");
        replica
            .apply_batch(&messages(&log, done as u64))
            .expect("rest");
        assert_in_step(&view, replica.replica(), &format!("crash at {panic_at}"));
    }
}

/// A feed cleared after a panic, a tombstone that is owed purged, changes
/// made with no feed to keys that are owed, then a feed registered again:
/// the owed keys are replayed as they are now (the purged one as gone), in
/// process and after a restart.
#[test]
fn cleared_purged_and_registered_again() {
    let log = customer_log_with_deletes();
    let all = messages(&log, 0);
    let db = TempDb::new("redfeed-cleared");
    let view = Shared::<Customer>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let store = SqliteStore::open(&db.0, "feed").expect("store");
    let mut replica = BlockingReplica::<Customer, _>::open(store).expect("open");
    replica.on_change(keep(&view, &calls, None));
    replica.apply_batch(&all[..4]).expect("first four");
    assert_in_step(&view, replica.replica(), "first four");
    // Positions 5..=7: c-2 deleted, c-3 updated, c-1 deleted; the feed
    // panics at its first change.
    calls.store(0, Ordering::SeqCst);
    replica.on_change(keep(&view, &calls, Some(1)));
    let panicked = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(&all[4..7])));
    assert!(panicked.is_err(), "the feed panicked");
    replica.clear_on_change();
    // With no feed: the owed tombstones purged, and c-3 (owed) changed.
    let purged = replica
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .expect("purge");
    assert_eq!(purged, 2, "c-1 and c-2's tombstones");
    replica
        .apply_batch(&all[8..9])
        .expect("c-3 deleted, no feed");
    replica
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .expect("purge c-3");
    assert_eq!(replica.replica().len(), 0);

    let again = view_copy(&view);
    replica.on_change(keep(&again, &calls, None));
    assert_in_step(&again, replica.replica(), "registered again");
    // After a restart, what the store still lists is replayed again.
    drop(replica);
    let store = SqliteStore::open(&db.0, "feed").expect("store");
    let mut replica = BlockingReplica::<Customer, _>::open(store).expect("reopen");
    let restarted = view_copy(&view);
    replica.on_change(keep(&restarted, &calls, None));
    assert_in_step(&restarted, replica.replica(), "restarted");
}

/// A view as it was (the same states), to replay into.
fn view_copy(view: &Shared<Customer>) -> Shared<Customer> {
    let held = view.lock().expect("view");
    Arc::new(Mutex::new(View {
        states: held.states.clone(),
        sequences: held.sequences.clone(),
        errors: Vec::new(),
        replayed: 0,
    }))
}

/// After a panic, every other call that commits reports the owed keys
/// first: `reload`, `merge_unsequenced`, `discard_parked`, `retry_parked`,
/// `rewind_stream_position` (each after its own panic).
#[test]
fn every_call_after_a_panic_replays_first() {
    type Call = fn(&mut BlockingReplica<Customer, SqliteStore>, &Log);
    let calls_to_try: [(&str, Call); 5] = [
        ("reload", |r, _| r.reload().expect("reload")),
        ("merge_unsequenced", |r, log| {
            let payloads: Vec<&[u8]> = log.iter().map(|(_, _, b)| b.as_slice()).collect();
            r.merge_unsequenced(&payloads).expect("merge");
        }),
        ("discard_parked", |r, _| {
            r.discard_parked(2, "by hand").expect("discard");
        }),
        ("retry_parked", |r, _| {
            r.retry_parked().expect("retry");
        }),
        ("rewind_stream_position", |r, _| {
            r.rewind_stream_position().expect("rewind")
        }),
    ];
    let log = customer_log_with_deletes();
    let all = messages(&log, 0);
    // A future version of c-2 at position 2: parked, for discard and retry.
    let mut newer = Producer::<newer::Customer>::new("urn:example:crm");
    let future = newer
        .upsert(newer::Customer {
            id: "c-2".into(),
            name: "Bea".into(),
            email: None,
        })
        .expect("envelope")
        .to_json()
        .expect("json");
    let parked = Message::new(100, "bank.customer.c-2", &future).addressed_to("customer", "c-2");
    for (name, call) in calls_to_try {
        let db = TempDb::new(&format!("redfeed-call-{name}"));
        let view = Shared::<Customer>::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        let mut replica = BlockingReplica::<Customer, _>::open(store).expect("open");
        replica.on_change(keep(&view, &calls, Some(1)));
        let panicked = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(&all[..4])));
        assert!(panicked.is_err(), "{name}: the feed panicked");
        call(&mut replica, &log);
        assert!(
            view.lock().expect("view").replayed > 0,
            "{name}: the owed keys were replayed by the call"
        );
        replica.apply_batch(&all[4..]).expect("the rest");
        replica
            .apply_batch(std::slice::from_ref(&parked))
            .expect("parked");
        replica.retry_parked().expect("retry");
        assert_in_step(&view, replica.replica(), name);
    }
}

/// Two lanes: the order lane's feed panics after the customer lane's feed
/// reported; used again, and restarted. Then an entity (invoice) is added
/// to the router, which rewinds the stream, with owed keys stored: they
/// are replayed, the new entity's events come, and every view holds.
#[test]
fn a_router_lane_panicking_after_another_reported() {
    let log = mixed_log();
    let db = TempDb::new("redfeed-router");
    let customers = Shared::<Customer>::default();
    let orders = Shared::<Order>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let order_calls = Arc::new(AtomicUsize::new(0));
    let open = |db: &TempDb| {
        let store = SqliteStore::open(&db.0, "router").expect("store");
        BlockingRouter::open(
            DurableRouter::builder(store)
                .register::<Customer>()
                .expect("customer")
                .register::<Order>()
                .expect("order"),
        )
        .expect("open")
    };
    let mut router = open(&db);
    router
        .on_change::<Customer>(keep(&customers, &calls, None))
        .expect("customer");
    router
        .on_change::<Order>(keep(&orders, &order_calls, Some(1)))
        .expect("order");
    let all = messages(&log, 0);
    let panicked = catch_unwind(AssertUnwindSafe(|| router.apply_batch(&all)));
    assert!(panicked.is_err(), "the order feed panicked");
    assert!(
        !customers.lock().expect("view").states.is_empty(),
        "the customer lane reported before the order lane panicked"
    );
    router.apply_batch(&[]).expect("idle poll");
    assert_in_step(
        &customers,
        router.replica::<Customer>().expect("c"),
        "customers",
    );
    assert_in_step(&orders, router.replica::<Order>().expect("o"), "orders");

    // The order feed panics again on its next report, and the process
    // restarts with invoices added.
    let mut more = Log::new();
    let mut orders_producer = Producer::<Order>::new("urn:example:shop");
    for _ in 0..5 {
        drop(orders_producer.upsert(order("o-9", 0)));
    }
    let envelope = orders_producer.upsert(order("o-9", 9)).expect("envelope");
    for (position, subject, bytes) in &log {
        more.push((*position, subject.clone(), bytes.clone()));
    }
    push(&mut more, "order", "o-9", envelope.to_json().expect("json"));
    let mut invoices = Producer::<Invoice>::new("urn:example:billing");
    let envelope = invoices
        .upsert(Invoice {
            id: "i-1".into(),
            amount: 3,
        })
        .expect("envelope");
    push(
        &mut more,
        "invoice",
        "i-1",
        envelope.to_json().expect("json"),
    );
    order_calls.store(0, Ordering::SeqCst);
    router
        .on_change::<Order>(keep(&orders, &order_calls, Some(1)))
        .expect("order");
    let tail = messages(&more, log.len() as u64);
    let panicked = catch_unwind(AssertUnwindSafe(|| router.apply_batch(&tail[..1])));
    assert!(panicked.is_err(), "the order feed panicked again");
    drop(router);

    let store = SqliteStore::open(&db.0, "router").expect("store");
    let mut router = BlockingRouter::open(
        DurableRouter::builder(store)
            .register::<Customer>()
            .expect("customer")
            .register::<Order>()
            .expect("order")
            .register::<Invoice>()
            .expect("invoice"),
    )
    .expect("reopen with invoices");
    assert_eq!(router.resume_after(), 0, "rewound for the new entity");
    let invoice_view = Shared::<Invoice>::default();
    router
        .on_change::<Customer>(keep(&customers, &calls, None))
        .expect("customer");
    router
        .on_change::<Order>(keep(&orders, &order_calls, None))
        .expect("order");
    router
        .on_change::<Invoice>(keep(&invoice_view, &calls, None))
        .expect("invoice");
    router
        .apply_batch(&messages(&more, 0))
        .expect("from the start");
    assert_in_step(
        &customers,
        router.replica::<Customer>().expect("c"),
        "c, after",
    );
    assert_in_step(&orders, router.replica::<Order>().expect("o"), "o, after");
    assert_in_step(&invoice_view, router.replica::<Invoice>().expect("i"), "i");
    assert_eq!(
        router.replica::<Order>().expect("o").get("o-9"),
        Some(&order("o-9", 9))
    );
}

/// A feed that panics on every new change (replays go through) over many
/// batches of new keys: the stored owed set never holds more than the last
/// batch's keys, and each batch's keys are replayed by the next call, once.
#[test]
fn repeated_panics_do_not_grow_the_owed_column() {
    const BATCHES: usize = 20;
    const KEYS: usize = 50;
    let db = TempDb::new("redfeed-bounded");
    let store = SqliteStore::open(&db.0, "feed").expect("store");
    let mut replica = BlockingReplica::<Customer, _>::open(store).expect("open");
    let replayed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&replayed);
    replica.on_change(move |change| {
        if !change.replayed {
            panic!("the feed fails on every new change");
        }
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let mut log = Log::new();
    for batch in 0..BATCHES {
        for key in 0..KEYS {
            let key = format!("c-{batch}-{key}");
            let envelope = producer.upsert(customer(&key, "x")).expect("envelope");
            push(
                &mut log,
                "customer",
                &key,
                envelope.to_json().expect("json"),
            );
        }
    }
    for (index, batch) in messages(&log, 0).chunks(KEYS).enumerate() {
        let panicked = catch_unwind(AssertUnwindSafe(|| replica.apply_batch(batch)));
        assert!(panicked.is_err(), "batch {index}: the feed panicked");
        assert_eq!(
            replayed.load(Ordering::SeqCst),
            index * KEYS,
            "batch {index}"
        );
        let owed: String = replica
            .store()
            .connection()
            .query_row(
                "SELECT owed FROM ecst_checkpoint WHERE consumer = 'feed'",
                [],
                |row| row.get(0),
            )
            .expect("owed");
        let owed: Vec<String> = serde_json::from_str(&owed).expect("a JSON array");
        assert_eq!(owed.len(), KEYS, "batch {index}: only this batch's keys");
    }
    replica
        .apply_batch(&[])
        .expect("idle poll replays the last batch");
    assert_eq!(replayed.load(Ordering::SeqCst), BATCHES * KEYS);
}

/// An entity whose key is a number: an owed key that is not one is an
/// [`StoreError::InvalidKey`].
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "meter", version = 1)]
pub struct Meter {
    #[state_event(key)]
    pub id: u32,
    pub reading: u64,
}

/// A replica's `owed` column written by hand: each hostile value is a typed
/// error at open, not a panic and not an empty set.
#[test]
fn a_hostile_replica_owed_column_is_a_typed_error() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let hostile: [(&str, &str); 6] = [
        ("not json", "not json"),
        ("an object", r#"{"1":["1"]}"#),
        ("numbers", "[1,2]"),
        ("json null", "null"),
        ("not a key", r#"["1","seven"]"#),
        ("deep", &deep),
    ];
    for (what, column) in hostile {
        let db = TempDb::new(&format!("redfeed-hostile-{}", what.replace(' ', "-")));
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        let mut replica = BlockingReplica::<Meter, _>::open(store).expect("open");
        replica.on_change(|_| {});
        let mut producer = Producer::<Meter>::new("urn:example:grid");
        let bytes = producer
            .upsert(Meter { id: 1, reading: 5 })
            .expect("envelope")
            .to_json()
            .expect("json");
        replica
            .apply_batch(&[Message::new(1, "grid.meter.1", &bytes).addressed_to("meter", "1")])
            .expect("batch");
        let written = replica
            .store()
            .connection()
            .execute(
                "UPDATE ecst_checkpoint SET owed = ?1 WHERE consumer = 'feed'",
                [column],
            )
            .expect("written by hand");
        assert_eq!(written, 1);
        drop(replica);
        let store = SqliteStore::open(&db.0, "feed").expect("store");
        match BlockingReplica::<Meter, _>::open(store) {
            Ok(_) => panic!("{what}: opened over a corrupt owed column"),
            Err(StoreError::InvalidKey { key, .. }) => {
                assert_eq!(what, "not a key");
                assert_eq!(key, "seven");
            }
            Err(StoreError::Database { .. }) => assert_ne!(what, "not a key"),
            Err(other) => panic!("{what}: {other}"),
        }
    }
}

/// The router's `*` row's `owed` column written by hand: hostile values are
/// typed errors at open; an entity the router does not register is kept,
/// and written back as it is.
#[test]
fn a_hostile_router_owed_column_is_a_typed_error() {
    let deep = format!(
        r#"{{"customer":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let hostile: [(&str, &str); 7] = [
        ("not json", "{"),
        ("an array", r#"["c-1"]"#),
        ("a string", r#"{"customer":"c-1"}"#),
        ("numbers", r#"{"customer":[1]}"#),
        ("null keys", r#"{"customer":null}"#),
        ("json null", "null"),
        ("deep", &deep),
    ];
    let log = mixed_log();
    for (what, column) in hostile {
        let db = TempDb::new(&format!(
            "redfeed-router-hostile-{}",
            what.replace(' ', "-")
        ));
        let mut router = router_over(&db);
        router.on_change::<Customer>(|_| {}).expect("customer");
        router.apply_batch(&messages(&log, 0)).expect("batch");
        write_router_owed(&router, column);
        drop(router);
        let store = SqliteStore::open(&db.0, "router").expect("store");
        let opened = BlockingRouter::open(
            DurableRouter::builder(store)
                .register::<Customer>()
                .expect("customer")
                .register::<Order>()
                .expect("order"),
        );
        match opened {
            Ok(_) => panic!("{what}: opened over a corrupt owed column"),
            Err(StoreError::Database { .. }) => {}
            Err(other) => panic!("{what}: {other}"),
        }
    }

    // An entity not registered here, and a key of a registered one.
    let db = TempDb::new("redfeed-router-foreign");
    let mut router = router_over(&db);
    router.on_change::<Customer>(|_| {}).expect("customer");
    router.apply_batch(&messages(&log, 0)).expect("batch");
    write_router_owed(&router, r#"{"customer":["c-1"],"ledger":["l-1"]}"#);
    drop(router);
    let mut router = router_over(&db);
    let view = Shared::<Customer>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    router
        .on_change::<Customer>(keep(&view, &calls, None))
        .expect("customer");
    assert_eq!(view.lock().expect("view").replayed, 1, "c-1 replayed");
    router.apply_batch(&[]).expect("idle");
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    for _ in 0..9 {
        drop(producer.upsert(customer("c-9", "x")));
    }
    let bytes = producer
        .upsert(customer("c-9", "Nine"))
        .expect("envelope")
        .to_json()
        .expect("json");
    router
        .apply_batch(&[
            Message::new(99, "bank.customer.c-9", &bytes).addressed_to("customer", "c-9")
        ])
        .expect("one more");
    let owed: Option<String> = router
        .store()
        .connection()
        .query_row(
            "SELECT owed FROM ecst_checkpoint WHERE consumer = 'router' AND entity = '*'",
            [],
            |row| row.get(0),
        )
        .expect("row");
    assert_eq!(
        owed.as_deref(),
        Some(r#"{"customer":["c-9"],"ledger":["l-1"]}"#),
        "the unregistered entity's keys are written back as they are"
    );
}

fn router_over(db: &TempDb) -> BlockingRouter<SqliteStore> {
    let store = SqliteStore::open(&db.0, "router").expect("store");
    BlockingRouter::open(
        DurableRouter::builder(store)
            .register::<Customer>()
            .expect("customer")
            .register::<Order>()
            .expect("order"),
    )
    .expect("open")
}

fn write_router_owed(router: &BlockingRouter<SqliteStore>, column: &str) {
    let written = router
        .store()
        .connection()
        .execute(
            "UPDATE ecst_checkpoint SET owed = ?1 WHERE consumer = 'router' AND entity = '*'",
            [column],
        )
        .expect("written by hand");
    assert_eq!(written, 1);
}

/// A `Follower` over a real nats-server whose feed panics after a batch is
/// committed and before it is acknowledged: the process "crashes", a new
/// follower opens the same SQLite file, the owed keys are replayed and the
/// redelivered messages (duplicates) change nothing: the view holds.
#[tokio::test]
async fn a_follower_crashing_between_commit_and_ack() {
    use async_nats::jetstream;
    use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
    use futures_util::FutureExt;

    const PATIENCE: Duration = Duration::from_secs(15);
    let server = nats_server::NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new("bank").expect("subjects");
    let version = ServerVersion::of(&client).expect("version");
    StateStream::new("CUSTOMERS", subjects.clone())
        .ensure(&js, version)
        .await
        .expect("stream");
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Producer::<Customer>::new("urn:example:crm");
    publisher
        .publish_all(&[
            owner.upsert(customer("c-1", "Ada")).expect("envelope"),
            owner.upsert(customer("c-2", "Bea")).expect("envelope"),
            owner.delete("c-2".into()).expect("envelope"),
            owner.upsert(customer("c-1", "Ada L.")).expect("envelope"),
        ])
        .await
        .expect("publish");

    let db = TempDb::new("redfeed-follower");
    let view = Shared::<Customer>::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut settings = FollowSettings::new("CUSTOMERS", "feed", subjects.clone());
    settings.fetch_wait = Duration::from_millis(200);
    settings.ack_wait = Duration::from_secs(1);
    let store = SqliteStore::open(&db.0, "feed").expect("store");
    let mut durable = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("open");
    // The stream keeps the last event per subject: c-2's delete, then c-1's
    // update, two changes. The feed panics at the last one: whatever
    // batches the fetches make, it is committed, and never delivered as new
    // again.
    durable.on_change(keep(&view, &calls, Some(2)));
    let mut follower = Follower::start(client.clone(), settings.clone(), durable)
        .await
        .expect("start");
    let crashed = AssertUnwindSafe(tokio::time::timeout(PATIENCE, follower.catch_up()))
        .catch_unwind()
        .await;
    assert!(crashed.is_err(), "the feed panicked after the commit");
    drop(follower);

    let store = SqliteStore::open(&db.0, "feed").expect("store");
    let mut durable = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("reopen");
    assert!(durable.resume_after() > 0, "the batch was committed");
    durable.on_change(keep(&view, &calls, None));
    let mut follower = Follower::start(client.clone(), settings, durable)
        .await
        .expect("restart");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("catch-up in time")
        .expect("catch-up");
    assert_in_step(&view, follower.replica().replica(), "after the restart");
    let replica = follower.replica().replica();
    assert_eq!(replica.get("c-1"), Some(&customer("c-1", "Ada L.")));
    assert_eq!(replica.get("c-2"), None, "c-2 deleted");
    follower.stop().await;
}

/// A commit that lands in the store without its call returning (its future
/// dropped while the store's COMMIT is in flight, or an error after the
/// transaction committed) is still reported: the reload that follows
/// replays the owed keys it loads. Failed before 283f03b (the reload
/// trusted the previous report and dropped them, and the batch's
/// redelivered messages were duplicates: its changes were never reported).
#[cfg(feature = "postgres")]
mod landed_without_returning {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::task::Poll;

    use super::router_common::*;
    use ecst::store::{Commit, DurableReplica, Loaded, MemoryStore, ReplicaStore};
    use ecst::{Entry, Producer, Replica, StateChange};

    /// A view kept from the feed: key → state (removed on `None`), and every
    /// change that went back in a key's sequence.
    #[derive(Default)]
    struct View {
        states: HashMap<String, Customer>,
        sequences: HashMap<String, u64>,
        errors: Vec<String>,
    }

    type Shared = Arc<Mutex<View>>;

    fn keep(view: &Shared) -> impl FnMut(StateChange<'_, Customer>) + Send + Sync + 'static {
        let view = Arc::clone(view);
        move |change| {
            let mut view = view.lock().expect("view");
            let key = change.key.clone();
            let sequence = change.sequence.get();
            if let Some(seen) = view.sequences.get(&key) {
                if *seen > sequence && sequence != 0 {
                    let error = format!("{key}: {sequence} reported after {seen}");
                    view.errors.push(error);
                }
            }
            view.sequences.insert(key.clone(), sequence);
            match change.after {
                Some(state) => view.states.insert(key, state.clone()),
                None => view.states.remove(&key),
            };
        }
    }

    fn live(replica: &Replica<Customer>) -> HashMap<String, Customer> {
        replica
            .entries()
            .filter_map(|(key, entry)| match entry {
                Entry::Live { state, .. } => Some((key.clone(), state.clone())),
                Entry::Tombstone { .. } => None,
            })
            .collect()
    }

    fn assert_in_step(view: &Shared, replica: &Replica<Customer>, what: &str) {
        let view = view.lock().expect("view");
        assert!(view.errors.is_empty(), "{what}: {:?}", view.errors);
        assert_eq!(
            view.states,
            live(replica),
            "{what}: the view is not the replica"
        );
    }

    /// c-1 and c-2 inserted (positions 1, 2), then c-1 updated and c-3
    /// inserted (3, 4).
    fn two_batches() -> Log {
        let mut producer = Producer::<Customer>::new("urn:example:crm");
        let mut log = Log::new();
        for (key, name) in [
            ("c-1", "Ada"),
            ("c-2", "Bea"),
            ("c-1", "Ada L."),
            ("c-3", "Cy"),
        ] {
            let envelope = producer.upsert(customer(key, name)).expect("envelope");
            push(&mut log, "customer", key, envelope.to_json().expect("json"));
        }
        log
    }

    /// Resolves after one `Pending`: where a store's COMMIT is in flight.
    async fn in_flight() {
        let mut polled = false;
        std::future::poll_fn(move |cx| {
            if polled {
                Poll::Ready(())
            } else {
                polled = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    }

    /// How a commit that lands ends, the next time.
    #[derive(Clone, Copy, PartialEq)]
    enum Landing {
        Returns,
        /// Lands, then waits for the server's answer (a future dropped there
        /// leaves the batch committed).
        InFlight,
        /// Lands, then fails (the connection lost on the way back).
        Fails,
    }

    /// A store that commits to memory, and whose next commit can land without
    /// returning normally (set through `next`, which the test keeps).
    struct Ambiguous {
        inner: MemoryStore,
        next: Arc<Mutex<Landing>>,
    }

    impl ReplicaStore<Customer> for Ambiguous {
        type Error = std::io::Error;

        async fn load(&mut self) -> Result<Loaded<Customer>, std::io::Error> {
            ReplicaStore::<Customer>::load(&mut self.inner)
                .await
                .map_err(std::io::Error::other)
        }

        async fn commit(&mut self, commit: Commit<'_, Customer>) -> Result<(), std::io::Error> {
            ReplicaStore::<Customer>::commit(&mut self.inner, commit)
                .await
                .map_err(std::io::Error::other)?;
            let landing =
                std::mem::replace(&mut *self.next.lock().expect("landing"), Landing::Returns);
            match landing {
                Landing::Returns => Ok(()),
                Landing::InFlight => {
                    in_flight().await;
                    Ok(())
                }
                Landing::Fails => Err(std::io::Error::other(
                    "the connection was lost after COMMIT",
                )),
            }
        }
    }

    async fn lands_without_returning(landing: Landing) {
        let log = two_batches();
        let all = messages(&log, 0);
        let view = Shared::default();
        let next = Arc::new(Mutex::new(Landing::Returns));
        let store = Ambiguous {
            inner: MemoryStore::new(),
            next: Arc::clone(&next),
        };
        let mut replica = DurableReplica::<Customer, _>::open(store)
            .await
            .expect("open");
        replica.on_change(keep(&view));
        replica.apply_batch(&all[..2]).await.expect("batch 1");
        assert_in_step(&view, replica.replica(), "after batch 1");

        // Batch 2 lands, but its call does not return normally.
        *next.lock().expect("landing") = landing;
        if landing == Landing::InFlight {
            let dropped = drop_after(replica.apply_batch(&all[2..]), 0).await;
            assert!(dropped.is_none(), "dropped while the commit was in flight");
        } else {
            let failed = replica.apply_batch(&all[2..]).await;
            assert!(failed.is_err(), "the commit reported a failure");
        }
        // The caller goes on: the next call reloads; batch 2 was not
        // acknowledged, so it comes again.
        replica.apply_batch(&[]).await.expect("idle poll");
        replica.apply_batch(&all[2..]).await.expect("batch 2 again");
        assert_eq!(replica.replica().len(), 3, "batch 2 is in the replica");
        assert_in_step(&view, replica.replica(), "after batch 2 landed");
    }

    #[tokio::test]
    async fn a_commit_dropped_in_flight_after_it_landed_is_reported() {
        lands_without_returning(Landing::InFlight).await;
    }

    #[tokio::test]
    async fn a_commit_that_landed_and_then_failed_is_reported() {
        lands_without_returning(Landing::Fails).await;
    }

    /// The same over PostgreSQL, no test store: the second batch's
    /// `apply_batch` dropped at every await point in turn (a `select!` or a
    /// `timeout` firing there); at the last ones the COMMIT has been sent, so
    /// the batch lands with its future dropped.
    #[tokio::test]
    async fn postgres_replica_dropped_at_every_await_reports_every_landed_change() {
        let log = two_batches();
        let all = messages(&log, 0);
        for pendings in 0.. {
            let name = consumer(&format!("redfeed-drop-{pendings}"));
            let mut store = postgres(&name).await;
            store.purge_consumer().await.expect("purge");
            let view = Shared::default();
            let mut replica = DurableReplica::<Customer, _>::open(store)
                .await
                .expect("open");
            replica.on_change(keep(&view));
            replica.apply_batch(&all[..2]).await.expect("batch 1");
            let finished = drop_after(replica.apply_batch(&all[2..]), pendings)
                .await
                .is_some();
            replica.apply_batch(&[]).await.expect("idle poll");
            replica.apply_batch(&all[2..]).await.expect("batch 2 again");
            assert_in_step(
                &view,
                replica.replica(),
                &format!("dropped after {pendings} pending polls"),
            );
            // And after a restart (the view kept outside the process).
            drop(replica);
            let store = postgres(&name).await;
            let mut replica = DurableReplica::<Customer, _>::open(store)
                .await
                .expect("reopen");
            replica.on_change(keep(&view));
            assert_in_step(&view, replica.replica(), &format!("restart, {pendings}"));
            if finished {
                break;
            }
        }
    }

    /// The router over PostgreSQL, the same way.
    #[tokio::test]
    async fn postgres_router_dropped_at_every_await_reports_every_landed_change() {
        let log = two_batches();
        let all = messages(&log, 0);
        for pendings in 0.. {
            let name = consumer(&format!("redfeed-router-drop-{pendings}"));
            let mut store = postgres(&name).await;
            store.purge_consumer().await.expect("purge");
            let view = Shared::default();
            let mut router = open_router(store).await;
            router
                .on_change::<Customer>(keep(&view))
                .expect("registered");
            router.apply_batch(&all[..2]).await.expect("batch 1");
            let finished = drop_after(router.apply_batch(&all[2..]), pendings)
                .await
                .is_some();
            router.apply_batch(&[]).await.expect("idle poll");
            router.apply_batch(&all[2..]).await.expect("batch 2 again");
            let replica = router.replica::<Customer>().expect("customer");
            assert_in_step(
                &view,
                replica,
                &format!("dropped after {pendings} pending polls"),
            );
            if finished {
                break;
            }
        }
    }
}
