//! A `RouterFollower` (the NATS follower over a `DurableRouter`) against a
//! real nats-server: one durable consumer over the prefix reaches the
//! owners' state of every registered entity, skips and counts an entity it
//! does not hold, resumes from the one checkpoint after a restart, and
//! merges one owner's bootstrap answer without moving the checkpoint; an
//! entity registered later is followed from the start of the stream.

#![cfg(all(feature = "nats", feature = "sqlite"))]

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/router.rs"]
mod router_common;

use std::time::Duration;

use async_nats::jetstream;
use ecst::nats::{
    serve_bootstrap, BootstrapRequest, FollowSettings, Follower, Publisher, RouterFollower,
    ServerVersion, StateStream, Subjects,
};
use ecst::store::sqlite::SqliteStore;
use ecst::store::{MemoryRouterStore, MemoryStore};
use ecst::{Entry, Outcome, Producer};
use nats_server::NatsServer;
use router_common::*;

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
    replica: &mut Follower<Customer, MemoryStore>,
) {
    drop(assert_send(router.poll()));
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
    // A foreign message on a customer subject that is not ecst's encoding
    // of any key: parked under `customer`, as its DurableReplica would.
    js.publish("bank.customer.a%41", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

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
    let parked: Vec<(&str, Option<&str>)> = router
        .parked()
        .map(|(entity, parked)| (entity, parked.key.as_deref()))
        .collect();
    assert_eq!(parked, [("customer", None)], "the foreign message, parked");
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
                serve_bootstrap::<Order, _>(client, &subjects, move |_| vec![answer.clone()]).await;
        })
    };
    let position = follower.replica().resume_after();
    let merged = tokio::time::timeout(PATIENCE, async {
        loop {
            let asked = follower
                .bootstrap_from_owner::<Order>(&BootstrapRequest::all(), Duration::from_millis(300))
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

/// Red team R1 over NATS: a router that followed the stream with customers
/// only, restarted with orders registered too, reads the stream again from
/// the start (its checkpoint did not cover `order`), so the orders
/// published before are held, not skipped for good.
#[tokio::test]
async fn an_entity_registered_later_is_followed_from_the_start_of_the_stream() {
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
    for i in 0..5u64 {
        publisher
            .publish(&customers.upsert(customer(&format!("c-{i}"), "n")).unwrap())
            .await
            .expect("publish");
        publisher
            .publish(&orders.upsert(order(&format!("o-{i}"), i)).unwrap())
            .await
            .expect("publish");
    }
    let db = TempDb::new("follower_later");
    let customers_only =
        ecst::store::DurableRouter::builder(SqliteStore::open(&db.0, "router").expect("open"))
            .register::<Customer>()
            .expect("customer")
            .open()
            .await
            .expect("open the router");
    let mut follower = RouterFollower::start(client.clone(), settings(&subjects), customers_only)
        .await
        .expect("start");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("caught up in time")
        .expect("catch up");
    // With one entity the follower filters on `bank.customer.>`: the
    // checkpoint (the last customer's position) is past four orders.
    assert_eq!(follower.replica().resume_after(), 9);
    drop(follower.stop().await);

    let router = open_router(SqliteStore::open(&db.0, "router").expect("open")).await;
    assert_eq!(router.resume_after(), 0, "`order` is new: rewound");
    let mut follower = RouterFollower::start(client.clone(), settings(&subjects), router)
        .await
        .expect("restart");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("caught up in time")
        .expect("catch up");
    let router = follower.replica();
    let held: Vec<(String, u64)> = router
        .replica::<Order>()
        .unwrap()
        .iter()
        .map(|(key, order)| (key.clone(), order.total))
        .collect();
    assert_eq!(held.len(), 5, "{held:?}");
    for (key, total) in held {
        assert_eq!(key, format!("o-{total}"));
    }
    assert_eq!(router.replica::<Customer>().unwrap().len(), 5);
}
