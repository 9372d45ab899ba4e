//! `retry_parked` is cancellation-safe, on a `DurableRouter` and on a
//! `DurableReplica`: its future dropped after each of its pending polls in
//! turn (a `select!`, a `timeout`) leaves the store with the whole retry or
//! none of it, never a parked event applied without leaving the parking lot
//! or the reverse, and the retry, called again, ends where an undisturbed
//! one ends.
//!
//! The retry has something to do: a build that knows only version 1 of
//! `customer` parks a version-2 event as a future version; the consumer is
//! then reopened by a build that knows version 2 (an upgrade), whose retry
//! applies it. PostgreSQL, because its futures pend (SQLite's and the
//! memory stores' are ready at once, so there is no await to drop at).

#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![forbid(unsafe_code)]

#[path = "support/router.rs"]
mod router_common;

use ecst::consume::ParkKind;
use ecst::store::{
    DurableReplica, DurableRouter, MemoryRouterStore, MemoryStore, ReplicaStore, RouterStore,
};
use ecst::{Producer, Sequence};
use router_common::*;

/// The mixed log of two entities, then two version-2 customers (one new
/// key, one newer state of a key the log holds): parked by the old build,
/// applied by the new one's retry.
fn log_with_future_versions() -> Log {
    let mut log = mixed_log();
    let mut owner = Producer::<newer::Customer>::new("urn:example:crm");
    for (id, sequence) in [("c-9", 1), ("c-1", 50)] {
        let json = owner
            .upsert_at(
                newer::Customer {
                    id: id.into(),
                    name: format!("{id} v2"),
                    email: Some(format!("{id}@example.com")),
                },
                Sequence::new(sequence),
            )
            .expect("an upsert")
            .to_json()
            .expect("encodes");
        push(&mut log, "customer", id, json);
    }
    log
}

/// What a consumer holds: each entity's entries, the checkpoint, and the
/// parked events with whether they are pending.
type Held = (
    Vec<(String, u64, Option<newer::Customer>)>,
    Vec<(String, u64, Option<Order>)>,
    Option<(u64, u64)>,
    Vec<(&'static str, u64, bool)>,
);

async fn open_upgraded<S: RouterStore>(store: S) -> DurableRouter<S> {
    DurableRouter::builder(store)
        .register::<newer::Customer>()
        .expect("customer")
        .register::<Order>()
        .expect("order")
        .open()
        .await
        .expect("opening the upgraded router")
}

fn held<S: RouterStore>(router: &DurableRouter<S>) -> Held {
    (
        dump(router.replica::<newer::Customer>().expect("registered")),
        dump(router.replica::<Order>().expect("registered")),
        router.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        router
            .parked()
            .map(|(entity, parked)| (entity, parked.stream_sequence, parked.is_pending()))
            .collect(),
    )
}

/// The old build applies the whole log: the two version-2 events park.
async fn park_with_the_old_build<S: RouterStore>(store: S) -> DurableRouter<S> {
    let log = log_with_future_versions();
    let mut router = open_router(store).await;
    let outcome = router
        .apply_batch(&messages(&log, 0))
        .await
        .expect("commit");
    let parked: Vec<(u64, ParkKind)> = outcome.parked.iter().map(|(s, r)| (*s, r.kind)).collect();
    assert_eq!(
        parked,
        [(9, ParkKind::FutureVersion), (10, ParkKind::FutureVersion)]
    );
    router
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_retry_dropped_at_every_await_lands_whole_or_not_at_all() {
    // Where the retry leads undisturbed, and where it starts.
    let (before, after) = {
        let parked = park_with_the_old_build(MemoryRouterStore::new()).await;
        let mut router = open_upgraded(parked.store().clone()).await;
        let before = held(&router);
        let retried = router.retry_parked().await.expect("retry");
        assert_eq!(retried.applied.len(), 2, "both version-2 events apply");
        (before, held(&router))
    };
    assert_ne!(before, after);
    assert!(after.3.iter().all(|(_, _, pending)| !pending));
    let mut landed = [0usize; 2];
    let mut pendings = 0;
    loop {
        let name = consumer(&format!("retry_drop_router_{pendings}"));
        let mut store = postgres(&name).await;
        store.purge_consumer().await.expect("purge");
        park_with_the_old_build(store).await;
        let mut router = open_upgraded(postgres(&name).await).await;
        assert_eq!(held(&router), before, "the store gave back what was parked");
        let finished = drop_after(router.retry_parked(), pendings).await;
        let found = held(&open_upgraded(postgres(&name).await).await);
        if found == before {
            landed[0] += 1;
        } else if found == after {
            landed[1] += 1;
        } else {
            panic!("a retry dropped after {pendings} pending polls left {found:?}");
        }
        // Retried again, by the same router (its memory behind or level
        // with the store) and by a fresh one: both end where it would have.
        router.retry_parked().await.expect("retry again");
        assert_eq!(held(&router), after, "after {pendings} pending polls");
        let mut reopened = open_upgraded(postgres(&name).await).await;
        reopened.retry_parked().await.expect("retry again");
        assert_eq!(held(&reopened), after, "reopened, {pendings} pending polls");
        postgres(&name).await.purge_consumer().await.expect("purge");
        if finished.is_some() {
            break;
        }
        pendings += 1;
    }
    assert!(landed[0] > 0, "never dropped before the retry landed");
    eprintln!(
        "router retry: dropped at {pendings} awaits; {} left nothing, {} landed whole",
        landed[0], landed[1]
    );
}

/// The single-replica counterpart: `customer` alone.
type HeldOne = (
    Vec<(String, u64, Option<newer::Customer>)>,
    Option<(u64, u64)>,
    Vec<(u64, bool)>,
);

fn held_one<S: ReplicaStore<newer::Customer>>(
    replica: &DurableReplica<newer::Customer, S>,
) -> HeldOne {
    (
        dump(replica.replica()),
        replica.checkpoint().map(|c| (c.stream_sequence, c.applied)),
        replica
            .parked()
            .map(|parked| (parked.stream_sequence, parked.is_pending()))
            .collect(),
    )
}

/// The customers of the log, applied by a build that knows version 1.
async fn park_one_with_the_old_build<S: ReplicaStore<Customer>>(
    store: S,
) -> DurableReplica<Customer, S>
where
    S::Error: std::fmt::Debug,
{
    let log = log_with_future_versions();
    let customers: Vec<_> = messages(&log, 0)
        .into_iter()
        .filter(|m| m.subject.contains(".customer."))
        .collect();
    let mut replica = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("open");
    let outcome = replica.apply_batch(&customers).await.expect("commit");
    assert_eq!(outcome.parked.len(), 2, "{:?}", outcome.parked);
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_retry_dropped_at_every_await_lands_whole_or_not_at_all() {
    let (before, after) = {
        let parked = park_one_with_the_old_build(MemoryStore::new()).await;
        let mut replica = DurableReplica::<newer::Customer, _>::open(parked.store().clone())
            .await
            .expect("open");
        let before = held_one(&replica);
        let retried = replica.retry_parked().await.expect("retry");
        assert_eq!(retried.applied.len(), 2, "both version-2 events apply");
        (before, held_one(&replica))
    };
    assert_ne!(before, after);
    let mut landed = [0usize; 2];
    let mut pendings = 0;
    loop {
        let name = consumer(&format!("retry_drop_replica_{pendings}"));
        let mut store = postgres(&name).await;
        store.purge_consumer().await.expect("purge");
        park_one_with_the_old_build(store).await;
        let open = async || {
            DurableReplica::<newer::Customer, _>::open(postgres(&name).await)
                .await
                .expect("open")
        };
        let mut replica = open().await;
        assert_eq!(held_one(&replica), before);
        let finished = drop_after(replica.retry_parked(), pendings).await;
        let found = held_one(&open().await);
        if found == before {
            landed[0] += 1;
        } else if found == after {
            landed[1] += 1;
        } else {
            panic!("a retry dropped after {pendings} pending polls left {found:?}");
        }
        replica.retry_parked().await.expect("retry again");
        assert_eq!(held_one(&replica), after, "after {pendings} pending polls");
        let mut reopened = open().await;
        reopened.retry_parked().await.expect("retry again");
        assert_eq!(held_one(&reopened), after);
        postgres(&name).await.purge_consumer().await.expect("purge");
        if finished.is_some() {
            break;
        }
        pendings += 1;
    }
    assert!(landed[0] > 0, "never dropped before the retry landed");
    eprintln!(
        "replica retry: dropped at {pendings} awaits; {} left nothing, {} landed whole",
        landed[0], landed[1]
    );
}
