//! Red team, issue 9 item 2: attacks on the `DurableRouter` that hold,
//! kept as regression tests.
//!
//! - hostile publishers on the prefix: a subject of one registered entity
//!   carrying another registered entity's envelope (or an unregistered
//!   one's) is parked under the entity and key it was sent to and touches
//!   nothing else; an envelope of a registered entity on an unregistered
//!   entity's subject is skipped and applies nowhere; entity names that
//!   differ only by case, or that are `*`, reach no replica; a flood of
//!   distinct unregistered names keeps `skipped()` bounded; an oversized
//!   (refused) message is parked under its entity unread;
//! - cancellation on PostgreSQL: `apply_batch`,
//!   `merge_unsequenced`, `purge_tombstones_before`, `discard_parked` and
//!   `rewind_stream_position` dropped after each of their pending polls in
//!   turn leave the store with all of the call or none of it, never one
//!   entity without the other or ahead of the shared checkpoint; the
//!   router, used again, reaches the expected state;
//! - a consumer name switched from single `DurableReplica`s to a router
//!   and back: each keeps its own checkpoint row, nothing is lost;
//! - a change feed that panics leaves no share behind for the next call;
//! - a `RouterFollower` against a real nats-server, with a hostile
//!   publisher on the prefix and a broker crash, reaches the owners' state.

#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![forbid(unsafe_code)]

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/router.rs"]
mod router_common;

use std::time::{Duration, SystemTime};

use ecst::consume::{Address, ParkKind};
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, DurableRouter, MemoryRouterStore, Message, RouterStore};
use ecst::{Entry, Outcome, Producer, StateEvent};
use router_common::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An entity whose name differs from `customer` only by case.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "Customer", version = 1)]
pub struct ShoutingCustomer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

fn customer_json(producer: &mut Producer<Customer>, id: &str, name: &str) -> Vec<u8> {
    producer
        .upsert(customer(id, name))
        .expect("upsert")
        .to_json()
        .expect("json")
}

fn order_json(producer: &mut Producer<Order>, id: &str, total: u64) -> Vec<u8> {
    producer
        .upsert(order(id, total))
        .expect("upsert")
        .to_json()
        .expect("json")
}

fn kinds(list: &[(u64, ecst::consume::ParkReason)]) -> Vec<(u64, ParkKind)> {
    list.iter().map(|(s, r)| (*s, r.kind)).collect()
}

/// A subject names one entity, the envelope another: whatever the pair,
/// the message applies to nothing; on a registered entity's subject it is
/// parked under that entity and the key it was sent to.
#[tokio::test]
async fn a_subject_and_an_envelope_that_disagree_apply_nowhere() {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let mut invoices = Producer::<Invoice>::new("urn:example:billing");
    let honest_c = customer_json(&mut customers, "c-1", "Ada");
    let honest_o = order_json(&mut orders, "o-1", 10);
    // An order envelope of key `c-1` on the customer subject of `c-1`.
    let order_as_customer = order_json(&mut orders, "c-1", 999);
    // A customer envelope on an order's subject, newer than the honest one.
    let customer_as_order = customer_json(&mut customers, "o-1", "Mallory");
    // A customer envelope (newer than c-1's) on an invoice's subject: the
    // router registers no invoice, so it is skipped, not routed by its
    // envelope.
    let customer_as_invoice = customer_json(&mut customers, "c-1", "Mallory");
    // An invoice envelope on a customer's subject.
    let invoice_as_customer = invoices
        .upsert(Invoice {
            id: "c-1".into(),
            amount: 1,
        })
        .unwrap()
        .to_json()
        .unwrap();
    let batch = vec![
        Message::new(1, "bank.customer.c-1", &honest_c).addressed_to("customer", "c-1"),
        Message::new(2, "bank.order.o-1", &honest_o).addressed_to("order", "o-1"),
        Message::new(3, "bank.customer.c-1", &order_as_customer).addressed_to("customer", "c-1"),
        Message::new(4, "bank.order.o-1", &customer_as_order).addressed_to("order", "o-1"),
        Message::new(5, "bank.invoice.c-1", &customer_as_invoice).addressed_to("invoice", "c-1"),
        Message::new(6, "bank.customer.c-1", &invoice_as_customer).addressed_to("customer", "c-1"),
    ];
    let mut router = open_router(MemoryRouterStore::new()).await;
    let outcome = router.apply_batch(&batch).await.expect("commit");
    assert_eq!(
        outcome.applied,
        [(1, Outcome::Inserted), (2, Outcome::Inserted)]
    );
    assert_eq!(
        kinds(&outcome.parked),
        [
            (3, ParkKind::Misaddressed),
            (4, ParkKind::Misaddressed),
            (6, ParkKind::Misaddressed)
        ]
    );
    assert_eq!(kinds(&outcome.rejected), [(5, ParkKind::Invalid)]);
    let parked: Vec<(&str, u64, Option<&str>)> = router
        .parked()
        .map(|(entity, p)| (entity, p.stream_sequence, p.key.as_deref()))
        .collect();
    assert_eq!(
        parked,
        [
            ("customer", 3, Some("c-1")),
            ("customer", 6, Some("c-1")),
            ("order", 4, Some("o-1"))
        ]
    );
    assert_eq!(
        router.replica::<Customer>().unwrap().get("c-1"),
        Some(&customer("c-1", "Ada"))
    );
    assert_eq!(
        router.replica::<Order>().unwrap().get("o-1"),
        Some(&order("o-1", 10))
    );
    assert_eq!(router.replica::<Customer>().unwrap().len(), 1);
    assert_eq!(router.replica::<Order>().unwrap().len(), 1);
    // Retried (after an upgrade, say): misaddressed stays parked.
    let retried = router.retry_parked().await.expect("retry");
    assert!(retried.applied.is_empty());
    assert_eq!(router.pending_parked(), 3);
    assert_eq!(router.resume_after(), 6);
    assert_eq!(router.skipped().get("invoice"), Some(&1));
}

/// Entity names that differ only by case are different entities: each
/// message reaches the replica its subject names exactly, or none.
#[tokio::test]
async fn entity_names_that_differ_by_case_stay_apart() {
    let mut router = DurableRouter::builder(MemoryRouterStore::new())
        .register::<Customer>()
        .and_then(|b| b.register::<ShoutingCustomer>())
        .expect("register")
        .open()
        .await
        .expect("open");
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut shouting = Producer::<ShoutingCustomer>::new("urn:example:crm");
    let lower = customer_json(&mut customers, "c-1", "lower");
    let upper = shouting
        .upsert(ShoutingCustomer {
            id: "c-1".into(),
            name: "UPPER".into(),
        })
        .unwrap()
        .to_json()
        .unwrap();
    let batch = vec![
        Message::new(1, "bank.customer.c-1", &lower).addressed_to("customer", "c-1"),
        Message::new(2, "bank.Customer.c-1", &upper).addressed_to("Customer", "c-1"),
        // Crossed: each envelope on the other's subject.
        Message::new(3, "bank.Customer.c-2", &lower).addressed_to("Customer", "c-2"),
        Message::new(4, "bank.customer.c-2", &upper).addressed_to("customer", "c-2"),
        // A case no one registered.
        Message::new(5, "bank.CUSTOMER.c-1", &lower).addressed_to("CUSTOMER", "c-1"),
    ];
    let outcome = router.apply_batch(&batch).await.expect("commit");
    assert_eq!(
        outcome.applied,
        [(1, Outcome::Inserted), (2, Outcome::Inserted)]
    );
    assert_eq!(
        kinds(&outcome.parked),
        [(3, ParkKind::Misaddressed), (4, ParkKind::Misaddressed)]
    );
    assert_eq!(kinds(&outcome.rejected), [(5, ParkKind::Invalid)]);
    let lower_held = router.replica::<Customer>().unwrap();
    let upper_held = router.replica::<ShoutingCustomer>().unwrap();
    assert_eq!(lower_held.len(), 1);
    assert_eq!(upper_held.len(), 1);
    assert_eq!(
        lower_held.get("c-1").map(|c| c.name.as_str()),
        Some("lower")
    );
    assert_eq!(
        upper_held.get("c-1").map(|c| c.name.as_str()),
        Some("UPPER")
    );

    // The same in SQLite: rows of `customer` and `Customer` never mix.
    let db = TempDb::new("redteam_case");
    let open = || async {
        DurableRouter::builder(SqliteStore::open(&db.0, "case").expect("open"))
            .register::<Customer>()
            .and_then(|b| b.register::<ShoutingCustomer>())
            .expect("register")
            .open()
            .await
            .expect("load")
    };
    let mut router = open().await;
    router.apply_batch(&batch).await.expect("commit");
    drop(router);
    let router = open().await;
    assert_eq!(
        router
            .replica::<Customer>()
            .unwrap()
            .get("c-1")
            .map(|c| c.name.as_str()),
        Some("lower")
    );
    assert_eq!(
        router
            .replica::<ShoutingCustomer>()
            .unwrap()
            .get("c-1")
            .map(|c| c.name.as_str()),
        Some("UPPER")
    );
    assert_eq!(router.pending_parked(), 2);
}

/// An address naming entity `*` (the router checkpoint's entity, and the
/// name `skipped()` counts the overflow under) reaches no replica and no
/// checkpoint; a flood of distinct names keeps `skipped()` at 65 names
/// at most while every message is counted.
#[tokio::test]
async fn star_and_a_flood_of_names_reach_no_replica_and_stay_bounded() {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let honest = customer_json(&mut customers, "c-1", "Ada");
    let hostile = customer_json(&mut customers, "c-1", "Mallory");
    let names: Vec<String> = (0..500).map(|i| format!("e{i}")).collect();
    let subjects: Vec<String> = names.iter().map(|n| format!("bank.{n}.c-1")).collect();
    let mut batch = vec![
        Message::new(1, "bank.customer.c-1", &honest).addressed_to("customer", "c-1"),
        Message::new(2, "bank.*.c-1", &hostile).addressed_to("*", "c-1"),
        Message::new(3, "", &hostile).addressed_to("", "c-1"),
    ];
    for (i, (name, subject)) in names.iter().zip(&subjects).enumerate() {
        batch
            .push(Message::new(4 + i as u64, subject, &hostile).addressed_to(name.as_str(), "c-1"));
    }
    let db = TempDb::new("redteam_star");
    let mut router = open_router(SqliteStore::open(&db.0, "star").expect("open")).await;
    let outcome = router.apply_batch(&batch).await.expect("commit");
    assert_eq!(outcome.applied, [(1, Outcome::Inserted)]);
    assert_eq!(outcome.rejected.len(), 502);
    assert!(outcome.parked.is_empty());
    assert!(router.skipped().len() <= 65, "{}", router.skipped().len());
    assert_eq!(router.skipped().values().sum::<u64>(), 502);
    assert_eq!(
        router.replica::<Customer>().unwrap().get("c-1"),
        Some(&customer("c-1", "Ada"))
    );
    drop(router);
    // Nothing was written under `*` or any wire name but the checkpoint.
    let store = SqliteStore::open(&db.0, "star").expect("open");
    let entities: Vec<String> = store
        .connection()
        .prepare("SELECT DISTINCT entity FROM ecst_replica WHERE consumer = 'star' ORDER BY 1")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(entities, ["customer"]);
    let checkpoints: Vec<(String, i64)> = store
        .connection()
        .prepare("SELECT entity, stream_sequence FROM ecst_checkpoint WHERE consumer = 'star'")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(checkpoints, [("*".to_owned(), 503)]);
}

/// A message the transport refused (oversized) is parked unread under the
/// entity its subject names, whatever its envelope claims; one of an
/// unregistered entity is skipped.
#[tokio::test]
async fn an_oversized_message_is_parked_under_its_subject_unread() {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let big = customer_json(&mut customers, "c-1", &"x".repeat(64 * 1024));
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let big_order = order_json(&mut orders, "o-1", 1);
    let batch = vec![
        Message::new(1, "bank.customer.c-1", &big)
            .addressed_to("customer", "c-1")
            .refused("payload over the limit"),
        Message::new(2, "bank.invoice.i-1", &big)
            .addressed_to("invoice", "i-1")
            .refused("payload over the limit"),
        // Refused, on an order subject, an order envelope: never applied.
        Message::new(3, "bank.order.o-1", &big_order)
            .addressed_to("order", "o-1")
            .refused("payload over the limit"),
    ];
    let mut router = open_router(MemoryRouterStore::new()).await;
    let outcome = router.apply_batch(&batch).await.expect("commit");
    assert!(outcome.applied.is_empty());
    assert_eq!(
        kinds(&outcome.parked),
        [(1, ParkKind::Refused), (3, ParkKind::Refused)]
    );
    assert_eq!(kinds(&outcome.rejected), [(2, ParkKind::Invalid)]);
    let parked: Vec<(&str, u64)> = router
        .parked()
        .map(|(e, p)| (e, p.stream_sequence))
        .collect();
    assert_eq!(parked, [("customer", 1), ("order", 3)]);
    // A retry does not read them either.
    let retried = router.retry_parked().await.expect("retry");
    assert!(retried.applied.is_empty());
    assert!(router.replica::<Customer>().unwrap().is_empty());
    assert!(router.replica::<Order>().unwrap().is_empty());
}

/// Subjects with no key, an empty entity token, or outside the prefix:
/// skipped as misaddressed, counted under no entity, never applied, even
/// with a valid envelope of a registered entity.
#[tokio::test]
async fn addresses_that_are_no_state_events_are_skipped() {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let json = customer_json(&mut customers, "c-1", "Mallory");
    let batch = vec![
        Message::new(1, "bank.customer", &json).addressed(Address::Invalid(
            "subject `bank.customer` has no key".into(),
        )),
        Message::new(2, "bank..c-1", &json).addressed(Address::Invalid("an empty token".into())),
    ];
    let mut router = open_router(MemoryRouterStore::new()).await;
    let outcome = router.apply_batch(&batch).await.expect("commit");
    assert_eq!(
        kinds(&outcome.rejected),
        [(1, ParkKind::Misaddressed), (2, ParkKind::Misaddressed)]
    );
    assert!(router.replica::<Customer>().unwrap().is_empty());
    assert_eq!(router.skipped().get(""), Some(&2));
    assert_eq!(router.resume_after(), 2);
}

/// What a router holds, with its checkpoint and parked events.
type Held = (
    Dumps,
    Option<(u64, u64, u64)>,
    Vec<(&'static str, u64, bool)>,
);

fn held<S: RouterStore>(router: &DurableRouter<S>) -> Held {
    (
        dumps(router),
        router
            .checkpoint()
            .map(|c| (c.stream_sequence, c.applied, c.purged_through)),
        router
            .parked()
            .map(|(e, p)| (e, p.stream_sequence, p.is_pending()))
            .collect(),
    )
}

/// One call of a router, to drop at every await.
#[derive(Clone, Copy, Debug)]
enum Call {
    Apply,
    Merge,
    Purge,
    Discard,
    Rewind,
}

async fn call<S: RouterStore>(
    router: &mut DurableRouter<S>,
    call: Call,
    log: &Log,
    answers: &[Vec<u8>],
) -> bool {
    let far = SystemTime::now() + Duration::from_secs(3600);
    match call {
        Call::Apply => router.apply_batch(&messages(log, 4)).await.is_ok(),
        Call::Merge => {
            let payloads: Vec<&[u8]> = answers.iter().map(Vec::as_slice).collect();
            router.merge_unsequenced(&payloads).await.is_ok()
        }
        Call::Purge => router.purge_tombstones_before(far).await.is_ok(),
        Call::Discard => router
            .discard_parked("order", 10, "dropped junk")
            .await
            .is_ok(),
        Call::Rewind => router.rewind_stream_position().await.is_ok(),
    }
}

/// The state before a call (the mixed log's first 4 messages, or all of it
/// and the parked ones for the calls that need them) and how to get there.
async fn prepare<S: RouterStore>(router: &mut DurableRouter<S>, what: Call, log: &Log) {
    let upto = match what {
        Call::Apply => 4,
        _ => log.len() as u64,
    };
    let batch: Vec<Message<'_>> = messages(log, 0)
        .into_iter()
        .filter(|m| m.stream_sequence <= upto)
        .collect();
    router.apply_batch(&batch).await.expect("prepare");
}

/// Every async method of a router over PostgreSQL, its future dropped
/// after each of its pending polls in turn: the store holds the whole
/// call or none of it (never one entity without the other, never an
/// entity ahead of the checkpoint), and the router, called again, ends
/// where an undisturbed router ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_call_dropped_at_every_await_lands_whole_or_not_at_all() {
    let mut log = mixed_log();
    // 9: a customer of a build this one cannot read yet (stays parked);
    // 10: junk on an order subject (discarded by `Call::Discard`).
    push(
        &mut log,
        "customer",
        "c-3",
        b"{\"not\": \"an envelope\"}".to_vec(),
    );
    push(&mut log, "order", "o-9", b"{junk".to_vec());
    let mut owner = Producer::<Order>::new("urn:example:shop");
    let answers: Vec<Vec<u8>> = vec![
        owner
            .upsert_at(order("o-2", 30), ecst::Sequence::new(99))
            .unwrap()
            .to_json()
            .unwrap(),
        owner
            .upsert_at(order("o-7", 70), ecst::Sequence::new(1))
            .unwrap()
            .to_json()
            .unwrap(),
    ];
    for what in [
        Call::Apply,
        Call::Merge,
        Call::Purge,
        Call::Discard,
        Call::Rewind,
    ] {
        // Where the call leads, undisturbed, and where it started.
        let (before, after) = {
            let mut router = open_router(MemoryRouterStore::new()).await;
            prepare(&mut router, what, &log).await;
            let before = held(&router);
            assert!(call(&mut router, what, &log, &answers).await, "{what:?}");
            (before, held(&router))
        };
        assert_ne!(before, after, "{what:?} changes something");
        let mut landed = [0usize; 2];
        let mut pendings = 0;
        loop {
            let name = consumer(&format!("redteam_drop_{what:?}_{pendings}"));
            let mut store = postgres(&name).await;
            store.purge_consumer().await.expect("purge");
            let mut router = open_router(store).await;
            prepare(&mut router, what, &log).await;
            let finished = drop_after(call(&mut router, what, &log, &answers), pendings).await;
            let reopened = open_router(postgres(&name).await).await;
            let found = held(&reopened);
            if found == before {
                landed[0] += 1;
            } else if found == after {
                landed[1] += 1;
            } else {
                panic!("{what:?} dropped after {pendings} pending polls: {found:?}");
            }
            // Called again (a redelivery): ends where it would have.
            assert!(
                call(&mut router, what, &log, &answers).await,
                "{what:?} again"
            );
            // Applied twice: duplicates, counted once in the checkpoint.
            assert_eq!(
                held(&router),
                after,
                "{what:?} after {pendings} pending polls"
            );
            let mut store = postgres(&name).await;
            store.purge_consumer().await.expect("purge");
            if finished.is_some() {
                break;
            }
            pendings += 1;
        }
        assert!(landed[0] > 0, "{what:?}: never dropped before landing");
        eprintln!(
            "{what:?}: dropped at {pendings} awaits; {} left nothing, {} landed whole",
            landed[0], landed[1]
        );
    }
}

/// A consumer name that held a single `DurableReplica` becomes a router
/// and then a single replica again: each keeps its own checkpoint row
/// (the router's under `*`), so no message is skipped on either switch;
/// what was delivered twice is a duplicate.
#[tokio::test]
async fn switching_a_consumer_between_single_replicas_and_a_router_loses_nothing() {
    let db = TempDb::new("redteam_switch");
    let name = "switch";
    let log = mixed_log();
    let single = || async {
        DurableReplica::<Order, _>::open(SqliteStore::open(&db.0, name).expect("open"))
            .await
            .expect("open single")
    };
    // The single replica of orders takes the first half.
    let mut orders = single().await;
    let first: Vec<Message<'_>> = messages(&log, 0)
        .into_iter()
        .filter(|m| m.stream_sequence <= 4 && m.subject.starts_with("bank.order."))
        .collect();
    orders.apply_batch(&first).await.expect("commit");
    assert_eq!(orders.resume_after(), 4);
    drop(orders);
    // The router starts with no checkpoint of its own: from the start.
    let mut router = open_router(SqliteStore::open(&db.0, name).expect("open")).await;
    assert_eq!(router.resume_after(), 0);
    assert_eq!(router.replica::<Order>().unwrap().len(), 2);
    let outcome = router
        .apply_batch(&messages(&log, router.resume_after()))
        .await
        .expect("commit");
    assert_eq!(
        outcome
            .applied
            .iter()
            .filter(|(_, o)| *o == Outcome::Duplicate)
            .count(),
        2,
        "the single replica's orders are duplicates"
    );
    let routed = dumps(&router);
    drop(router);
    // Back to the single replica: it resumes after its own row (4) and
    // reaches the same orders.
    let mut orders = single().await;
    assert_eq!(orders.resume_after(), 4);
    let rest: Vec<Message<'_>> = messages(&log, orders.resume_after())
        .into_iter()
        .filter(|m| m.subject.starts_with("bank.order."))
        .collect();
    orders.apply_batch(&rest).await.expect("commit");
    assert_eq!(dump(orders.replica()), routed.1);
    drop(orders);
    // And the router again: its `*` row is where it left it.
    let router = open_router(SqliteStore::open(&db.0, name).expect("open")).await;
    assert_eq!(router.resume_after(), 8);
    assert_eq!(dumps(&router), routed);
    assert!(matches!(
        router.replica::<Order>().unwrap().entry("o-1"),
        Some(Entry::Tombstone { .. })
    ));
}

/// A `RouterFollower` against a real nats-server, with a hostile publisher
/// on the prefix and a broker crash between batches.
#[cfg(feature = "nats")]
mod over_nats {
    use super::*;
    use crate::nats_server::NatsServer;
    use async_nats::jetstream;
    use bytes::Bytes;
    use ecst::nats::{FollowSettings, Publisher, RouterFollower, StateStream, Subjects};
    use ecst::store::MemoryRouterStore;

    const PATIENCE: Duration = Duration::from_secs(30);

    /// Crossed envelopes, an unregistered entity's subject carrying a
    /// registered entity's envelope, a name that differs by case and an
    /// oversized message, all raw on the prefix between honest events;
    /// the broker killed and restarted; the router ends with the owners'
    /// state for every registered entity, each hostile message parked
    /// under the entity and key it was sent to or skipped, and its
    /// checkpoint at the stream's last message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_router_follower_survives_a_hostile_prefix_and_a_broker_crash() {
        let mut server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new("bank").expect("subjects");
        let version = ecst::nats::ServerVersion::of(&client).expect("version");
        StateStream::new("REDTEAM_ROUTER", subjects.clone())
            .ensure(&js, version)
            .await
            .expect("stream");
        let publisher = Publisher::new(js.clone(), subjects.clone());
        let mut customers = Producer::<Customer>::new("urn:example:crm");
        let mut orders = Producer::<Order>::new("urn:example:shop");
        for i in 0..5u64 {
            let c = customers
                .upsert(customer(&format!("c-{i}"), "honest"))
                .unwrap();
            publisher.publish(&c).await.expect("publish");
            let o = orders.upsert(order(&format!("o-{i}"), i)).unwrap();
            publisher.publish(&o).await.expect("publish");
        }
        let mut settings = FollowSettings::new("REDTEAM_ROUTER", "router", subjects.clone());
        settings.fetch_wait = Duration::from_millis(200);
        settings.max_payload = 4096;
        settings.lease_ttl = None;
        let router = open_router(MemoryRouterStore::new()).await;
        let mut follower = RouterFollower::start(client.clone(), settings, router)
            .await
            .expect("start");
        tokio::time::timeout(PATIENCE, follower.catch_up())
            .await
            .expect("caught up in time")
            .expect("catch up");

        // The hostile publisher, with sequences far above the owners'.
        let mut mallory_c = Producer::<Customer>::new("urn:example:mallory");
        let mut mallory_o = Producer::<Order>::new("urn:example:mallory");
        let high = ecst::Sequence::new(1_000_000);
        // A fresh producer each: the same high sequence every time.
        let raw = |_: &mut Producer<Customer>, id: &str| {
            Bytes::from(
                Producer::<Customer>::new("urn:example:mallory")
                    .upsert_at(customer(id, "Mallory"), high)
                    .unwrap()
                    .to_json()
                    .unwrap(),
            )
        };
        let hostile: Vec<(&str, Bytes)> = vec![
            // An order envelope on a customer subject (same key).
            (
                "bank.customer.c-0",
                Bytes::from(
                    mallory_o
                        .upsert_at(order("c-0", 666), high)
                        .unwrap()
                        .to_json()
                        .unwrap(),
                ),
            ),
            // A customer envelope on an order subject.
            ("bank.order.o-0", raw(&mut mallory_c, "o-0")),
            // A customer envelope of c-1 on an unregistered entity's subject.
            ("bank.invoice.c-1", raw(&mut mallory_c, "c-1")),
            // The same on a subject differing by case.
            ("bank.Customer.c-1", raw(&mut mallory_c, "c-1")),
            // A customer envelope of c-2 on c-3's subject.
            ("bank.customer.c-3", raw(&mut mallory_c, "c-2")),
            // An oversized customer envelope of c-4, addressed right.
            (
                "bank.customer.c-4",
                Bytes::from(
                    mallory_c
                        .upsert_at(customer("c-4", &"M".repeat(8192)), high)
                        .unwrap()
                        .to_json()
                        .unwrap(),
                ),
            ),
        ];
        for (subject, payload) in &hostile {
            js.publish(subject.to_string(), payload.clone())
                .await
                .expect("hostile publish")
                .await
                .expect("stored");
        }
        // Applied in part, then the broker crashes.
        let _ = tokio::time::timeout(PATIENCE, follower.poll()).await;
        server.restart();
        // The owners publish again what the hostile subjects overwrote
        // (each envelope retried while the client reconnects).
        let again = [
            customers.upsert(customer("c-0", "honest again")).unwrap(),
            customers.upsert(customer("c-3", "honest again")).unwrap(),
        ];
        let order_again = orders.upsert(order("o-0", 100)).unwrap();
        tokio::time::timeout(PATIENCE, async {
            for envelope in &again {
                while publisher.publish(envelope).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            while publisher.publish(&order_again).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("published after the restart in time");
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(progress) = follower.poll().await {
                    if progress.caught_up() {
                        break;
                    }
                }
            }
        })
        .await
        .expect("caught up after the restart in time");

        let router = follower.replica();
        let held_customers: Vec<(String, String)> = router
            .replica::<Customer>()
            .unwrap()
            .iter()
            .map(|(k, c)| (k.clone(), c.name.clone()))
            .collect();
        let mut expected: Vec<(String, String)> = (0..5)
            .map(|i| (format!("c-{i}"), "honest".to_owned()))
            .collect();
        // (c-4 is not published again: the `Publisher` refuses to put an
        // older sequence over the hostile 1000000 on its subject.)
        for key in ["c-0", "c-3"] {
            if let Some(entry) = expected.iter_mut().find(|(k, _)| k == key) {
                entry.1 = "honest again".to_owned();
            }
        }
        let mut held_customers = held_customers;
        held_customers.sort();
        assert_eq!(held_customers, expected);
        let held_orders: Vec<(String, u64)> = {
            let mut v: Vec<(String, u64)> = router
                .replica::<Order>()
                .unwrap()
                .iter()
                .map(|(k, o)| (k.clone(), o.total))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            held_orders,
            [
                ("o-0".to_owned(), 100),
                ("o-1".to_owned(), 1),
                ("o-2".to_owned(), 2),
                ("o-3".to_owned(), 3),
                ("o-4".to_owned(), 4)
            ]
        );
        // Parked under the entity and key each was sent to (some may have
        // been superseded by the owners' new events since; none applied).
        let parked: Vec<(&str, Option<&str>, ParkKind)> = router
            .parked()
            .map(|(e, p)| (e, p.key.as_deref(), p.reason.kind))
            .collect();
        for (entity, key, kind) in [
            ("customer", "c-0", ParkKind::Misaddressed),
            ("order", "o-0", ParkKind::Misaddressed),
            ("customer", "c-3", ParkKind::Misaddressed),
            ("customer", "c-4", ParkKind::Refused),
        ] {
            assert!(
                parked.contains(&(entity, Some(key), kind)),
                "{entity} {key} {kind:?} not in {parked:?}"
            );
        }
        assert_eq!(parked.len(), 4, "{parked:?}");
        assert_eq!(router.skipped().get("invoice"), Some(&1));
        assert_eq!(router.skipped().get("Customer"), Some(&1));
        let last = js
            .get_stream("REDTEAM_ROUTER")
            .await
            .expect("stream")
            .cached_info()
            .state
            .last_sequence;
        assert_eq!(router.resume_after(), last);
        follower.stop().await;
    }
}

/// A change feed that panics in the first entity's lane, the router used
/// again (as behind a `tokio::sync::Mutex`, which does not poison): the
/// next call reports only its own messages, and the checkpoint counts each
/// change once (no share of the panicked batch is left behind in a later
/// lane to be reported and counted again).
#[tokio::test]
async fn a_panicking_feed_leaves_no_share_behind_for_the_next_call() {
    use futures_util::FutureExt;
    use std::panic::AssertUnwindSafe;
    use std::sync::{Arc, Mutex};

    let log = mixed_log();
    let mut router = open_router(MemoryRouterStore::new()).await;
    router
        .on_change::<Customer>(|change| {
            assert_ne!(change.key, "c-1", "feed failure");
        })
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let orders_seen = Arc::clone(&seen);
    router
        .on_change::<Order>(move |change| {
            orders_seen
                .lock()
                .unwrap()
                .push((change.key.clone(), change.sequence.get()));
        })
        .unwrap();
    let all = messages(&log, 0);
    // Positions 1..=4 (c-1, o-1, c-2, o-2): committed, then the customer
    // feed panics.
    let panicked = AssertUnwindSafe(router.apply_batch(&all[..4]))
        .catch_unwind()
        .await;
    assert!(panicked.is_err());
    assert_eq!(router.resume_after(), 4);
    router.clear_on_change::<Customer>().unwrap();
    // Position 5 only (a customer update).
    let outcome = router.apply_batch(&all[4..5]).await.expect("commit");
    let positions: Vec<u64> = outcome.applied.iter().map(|(s, _)| *s).collect();
    assert_eq!(positions, [5]);
    assert_eq!(
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        Some((5, 5))
    );
    // The orders' feed reported each order change at most once.
    let reported = seen.lock().unwrap().clone();
    let mut unique = reported.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(reported.len(), unique.len(), "{reported:?}");
    assert!(reported.len() <= 2, "{reported:?}");
}

/// R1. An entity registered in a router after the router has consumed
/// past its events: the new entity's replica starts at the SHARED
/// checkpoint, so every earlier event of it is silently never applied.
/// (Also: an entity dropped from the router and registered again later
/// resumes with its old rows at the shared checkpoint, missing what came
/// in between.)
#[tokio::test]
async fn an_entity_registered_later_gets_every_earlier_event_by_a_rewind() {
    let log = mixed_log();
    let db = TempDb::new("repro_r1");
    // Version 1 of the consumer: customers only. Orders are skipped and
    // passed by the checkpoint.
    let mut router = DurableRouter::builder(SqliteStore::open(&db.0, "r1").unwrap())
        .register::<Customer>()
        .unwrap()
        .open()
        .await
        .unwrap();
    router.apply_batch(&messages(&log, 0)).await.unwrap();
    assert_eq!(router.resume_after(), 8);
    drop(router);
    // Version 2 of the consumer registers orders too.
    let mut router = open_router(SqliteStore::open(&db.0, "r1").unwrap()).await;
    // The transport resumes after the checkpoint: nothing of o-2 comes.
    router
        .apply_batch(&messages(&log, router.resume_after()))
        .await
        .unwrap();
    // EXPECTED: the orders' owner state (o-2 live at 25, o-1 deleted),
    // or open() refusing / rewinding because `order` has no checkpoint.
    // ACTUAL: the order replica is empty and the router says it is at 8.
    assert_eq!(
        router.replica::<Order>().unwrap().get("o-2"),
        Some(&order("o-2", 25)),
        "order registered after the checkpoint passed its events: resume_after = {}",
        router.resume_after()
    );
}

/// R1, continued, on PostgreSQL: a router reopened with the same entities
/// resumes where it was; an entity dropped from the router is no longer
/// covered by its checkpoint, so when it is registered again the router
/// reads the stream again from the start and the entity gets what came in
/// between (here o-3, published while only customers were consumed).
#[tokio::test]
async fn an_entity_dropped_and_registered_again_is_read_again_from_the_start() {
    let mut log = mixed_log();
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let o3 = orders.upsert(order("o-3", 30)).unwrap().to_json().unwrap();
    push(&mut log, "order", "o-3", o3);
    let name = consumer("r1_dropped_again");
    let mut router = open_router(postgres(&name).await).await;
    router.apply_batch(&messages(&log, 0)[..8]).await.unwrap();
    drop(router);
    let router = open_router(postgres(&name).await).await;
    assert_eq!(router.resume_after(), 8, "same entities: no rewind");
    drop(router);
    let mut customers_only = DurableRouter::builder(postgres(&name).await)
        .register::<Customer>()
        .unwrap()
        .open()
        .await
        .unwrap();
    assert_eq!(
        customers_only.resume_after(),
        8,
        "fewer entities: no rewind"
    );
    customers_only
        .apply_batch(&messages(&log, 8))
        .await
        .unwrap();
    assert_eq!(customers_only.resume_after(), 9);
    drop(customers_only);
    let mut router = open_router(postgres(&name).await).await;
    assert_eq!(
        router.resume_after(),
        0,
        "`order` registered again: rewound"
    );
    assert_eq!(
        router.replica::<Order>().unwrap().get("o-2"),
        Some(&order("o-2", 25)),
        "its rows are kept"
    );
    router.apply_batch(&messages(&log, 0)).await.unwrap();
    assert_eq!(
        router.replica::<Order>().unwrap().get("o-3"),
        Some(&order("o-3", 30))
    );
    drop(router);
    let router = open_router(postgres(&name).await).await;
    assert_eq!(router.resume_after(), 9, "covered again: no rewind");
}

/// R4 (red team's R5). The "no entity can be named `*`" rule is enforced
/// by the derive only; `StateEvent` can be implemented by hand with
/// `ENTITY = "*"`, whose `DurableReplica` would read and write a router's
/// checkpoint row on the same consumer name. Refused, with a typed error,
/// by `DurableReplica::open` on SQLite and PostgreSQL and by
/// `RouterBuilder::register`; the router's checkpoint is untouched.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct Star {
    pub id: String,
}

impl StateEvent for Star {
    type Key = String;
    const ENTITY: &'static str = "*";
    const VERSION: u32 = 1;
    fn key(&self) -> &String {
        &self.id
    }
    fn deserialize_version<'de, D: serde::Deserializer<'de>>(
        version: u32,
        deserializer: D,
    ) -> Result<Self, ecst::DecodeVersionError<D::Error>> {
        match version {
            1 => Star::deserialize(deserializer)
                .map_err(|source| ecst::PayloadError::Mismatch { version, source }),
            _ => Err(ecst::PayloadError::UnknownVersion { version, newest: 1 }),
        }
    }
    fn schema(version: u32) -> Option<schemars::Schema> {
        (version == 1).then(|| schemars::schema_for!(Star))
    }
}

#[tokio::test]
async fn an_entity_named_star_is_refused_by_replicas_and_routers() {
    let log = mixed_log();
    let db = TempDb::new("r4_star");
    let mut router = open_router(SqliteStore::open(&db.0, "r4").unwrap()).await;
    router.apply_batch(&messages(&log, 0)).await.unwrap();
    drop(router);
    let opened = DurableReplica::<Star, _>::open(SqliteStore::open(&db.0, "r4").unwrap()).await;
    assert!(
        matches!(
            opened,
            Err(ecst::store::StoreError::InvalidEntity { entity: "*", .. })
        ),
        "SQLite: {:?}",
        opened.map(|star| star.resume_after())
    );
    let opened = DurableReplica::<Star, _>::open(postgres(&consumer("r4_star")).await).await;
    assert!(
        matches!(
            opened,
            Err(ecst::store::StoreError::InvalidEntity { entity: "*", .. })
        ),
        "PostgreSQL: {:?}",
        opened.map(|star| star.resume_after())
    );
    let registered = DurableRouter::builder(MemoryRouterStore::new()).register::<Star>();
    assert!(
        matches!(
            registered,
            Err(ecst::store::RegisterError::InvalidEntity { entity: "*", .. })
        ),
        "the router registered `*`"
    );
    let router = open_router(SqliteStore::open(&db.0, "r4").unwrap()).await;
    assert_eq!(router.resume_after(), 8);
}

/// R3. A message on a REGISTERED entity's subject whose key is not in
/// ecst's subject encoding, e.g. `bank.customer.a%41` from a foreign
/// publisher that percent-encodes more than needed: a
/// `DurableReplica<Customer>` parks it; the router skipped it (no durable
/// trace). Its invalid address now names the entity (NATS:
/// `Subjects::message_address`), and the router parks it under that
/// entity, stored, as the replica does. An invalid address naming an
/// unregistered entity, or none, is still skipped.
#[tokio::test]
async fn an_undecodable_key_on_a_registered_subject_is_parked_as_by_a_replica() {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let json = customers
        .upsert(customer("aA", "Ada"))
        .unwrap()
        .to_json()
        .unwrap();
    let subject = "bank.customer.a%41";
    let address = || {
        ecst::consume::InvalidAddress::of_entity(
            "customer",
            format!("subject `{subject}` is not the subject of a state event: bad key"),
        )
    };
    #[cfg(feature = "nats")]
    {
        let from_nats = ecst::nats::Subjects::new("bank")
            .unwrap()
            .message_address(subject);
        let Address::Invalid(invalid) = from_nats else {
            panic!("decoded: {from_nats:?}")
        };
        assert_eq!(invalid.entity, Some("customer"));
    }
    let message = || Message::new(1, subject, &json).addressed(Address::Invalid(address()));
    let mut single = DurableReplica::<Customer, _>::open(ecst::store::MemoryStore::new())
        .await
        .unwrap();
    let parked_by_single = single.apply_batch(&[message()]).await.unwrap().parked.len();
    assert_eq!(parked_by_single, 1);
    let db = TempDb::new("r3_invalid_key");
    let mut router = open_router(SqliteStore::open(&db.0, "r3").unwrap()).await;
    let outcome = router.apply_batch(&[message()]).await.unwrap();
    assert_eq!(
        (outcome.parked.len(), router.pending_parked()),
        (1, 1),
        "router skipped it instead: {:?}",
        outcome.rejected
    );
    let unregistered = ecst::consume::InvalidAddress::of_entity("invoice", "bad key");
    let nameless = ecst::consume::InvalidAddress::from("bad subject");
    let outcome = router
        .apply_batch(&[
            Message::new(2, "bank.invoice.a%41", &json).addressed(Address::Invalid(unregistered)),
            Message::new(3, "bank..x", &json).addressed(Address::Invalid(nameless)),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.parked.len(), outcome.rejected.len()), (0, 2));
    drop(router);
    let router = open_router(SqliteStore::open(&db.0, "r3").unwrap()).await;
    let parked: Vec<_> = router
        .parked()
        .map(|(entity, parked)| {
            (
                entity,
                parked.stream_sequence,
                parked.key.clone(),
                parked.reason.kind,
            )
        })
        .collect();
    assert_eq!(parked, vec![("customer", 1, None, ParkKind::Misaddressed)]);
    assert_eq!(router.resume_after(), 3);
}

/// R2 (red team's R4). Two routers on one consumer name (two processes, or a deploy that
/// overlaps; no NATS lease when each follows with its own durable name or
/// the Message API): the second writes its own stale memory over the
/// first's rows with no error. The store's checkpoint goes BACK and a
/// key's state goes back to an older sequence; after a restart the newer
/// event is never delivered again (it is below neither checkpoint's
/// resume point... it is below the first's and the first is gone).
/// Documented: "One consumer name must have one writer at a time" -- but
/// nothing detects it; a compare-and-set on the checkpoint row (commit
/// only if the stored checkpoint is the one this router loaded) would.
#[tokio::test]
async fn a_second_writer_on_one_consumer_name_is_refused_by_the_checkpoint() {
    let mut log = mixed_log();
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    // Position 9: a customer nobody else touches.
    let c9 = customers
        .upsert(customer("c-9", "Nine"))
        .unwrap()
        .to_json()
        .unwrap();
    push(&mut log, "customer", "c-9", c9);
    let db = TempDb::new("repro_r4");
    let mut first = open_router(SqliteStore::open(&db.0, "r4").unwrap()).await;
    let mut second = open_router(SqliteStore::open(&db.0, "r4").unwrap()).await;
    first.apply_batch(&messages(&log, 0)[..8]).await.unwrap();
    // The second, opened before, gets position 1 (c-1 "Ada", seq 1) late.
    let late = second.apply_batch(&messages(&log, 0)[..1]).await;
    // The first goes on: position 9, checkpoint 9.
    first.apply_batch(&messages(&log, 8)).await.unwrap();
    drop((first, second));
    let reopened = open_router(SqliteStore::open(&db.0, "r4").unwrap()).await;
    // EXPECTED: the second's commit failed with a typed error (another
    // writer moved the checkpoint since it loaded), and the store holds
    // c-1 = "Ada L." (seq 2).
    // ACTUAL: Ok; the store holds c-1 = "Ada" (seq 1) with checkpoint 9:
    // position 2 is never delivered again, c-1 stays stale until its
    // owner publishes it again.
    assert!(
        matches!(
            late,
            Err(ecst::store::StoreError::CheckpointMoved {
                seen: None,
                stored: Some(8),
                ..
            })
        ),
        "the second writer's commit: {late:?}"
    );
    assert_eq!(reopened.resume_after(), 9);
    assert_eq!(
        reopened.replica::<Customer>().unwrap().get("c-1"),
        Some(&customer("c-1", "Ada L."))
    );
}

/// R2, on PostgreSQL, for a router and for single `DurableReplica`s: a
/// second writer opened before the first committed is refused (typed
/// error, nothing written); reloaded, it writes over what it now saw.
#[tokio::test]
async fn a_second_writer_is_refused_on_postgres_for_routers_and_replicas() {
    let log = mixed_log();
    let name = consumer("r2_second_writer");
    let mut first = open_router(postgres(&name).await).await;
    let mut second = open_router(postgres(&name).await).await;
    first.apply_batch(&messages(&log, 0)[..4]).await.unwrap();
    let late = second.apply_batch(&messages(&log, 0)[..1]).await;
    assert!(
        matches!(
            late,
            Err(ecst::store::StoreError::CheckpointMoved {
                seen: None,
                stored: Some(4),
                ..
            })
        ),
        "router: {late:?}"
    );
    // The refused writer reloads before its next batch: it then sees the
    // first's checkpoint and may go on (the first must not, now).
    second.apply_batch(&messages(&log, 4)).await.unwrap();
    assert_eq!(second.resume_after(), 8);
    assert!(first.apply_batch(&messages(&log, 4)).await.is_err());

    let name = consumer("r2_second_replica");
    let batch = messages(&log, 0);
    let customers: Vec<_> = batch
        .iter()
        .filter(|m| m.subject.starts_with("bank.customer."))
        .cloned()
        .collect();
    let mut first = DurableReplica::<Customer, _>::open(postgres(&name).await)
        .await
        .unwrap();
    let mut second = DurableReplica::<Customer, _>::open(postgres(&name).await)
        .await
        .unwrap();
    first.apply_batch(&customers[1..]).await.unwrap();
    let late = second.apply_batch(&customers[..1]).await;
    assert!(
        matches!(
            late,
            Err(ecst::store::StoreError::CheckpointMoved { seen: None, .. })
        ),
        "replica: {late:?}"
    );
    let reopened = DurableReplica::<Customer, _>::open(postgres(&name).await)
        .await
        .unwrap();
    assert_eq!(reopened.resume_after(), 7);
    assert_eq!(
        reopened.replica().get("c-1"),
        Some(&customer("c-1", "Ada L."))
    );
}
