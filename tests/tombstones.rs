//! Purging tombstones of a durable replica, on SQLite and PostgreSQL: the
//! deletion time is stored with the tombstone, survives a reload (the age
//! is not reset), purges delete from the store and from memory, tombstones
//! written without a time are stamped when the store opens, a redelivery
//! of a message handled before a purge never brings a purged key back, and
//! purging too early lets a late copy of an upsert published again (on a
//! new stream position) bring a deleted key back.
//!
//! PostgreSQL: as `store_postgres.rs` (127.0.0.1:5432, trust, database
//! `test`, or `ECST_TEST_POSTGRES`).

#![cfg(all(feature = "sqlite", feature = "postgres"))]

#[path = "support/stores.rs"]
mod store_common;

use std::time::{Duration, SystemTime};

use ecst::consume::ParkKind;
use ecst::store::postgres::PostgresStore;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{Checkpoint, DurableReplica, Message};
use ecst::{Entry, Envelope, Outcome, Producer};
use store_common::{account1, consumer, v1, Backend, Postgres, Sqlite};

/// Owned messages for a batch.
struct Batch(Vec<(u64, String, Vec<u8>)>);

impl Batch {
    fn of(events: Vec<(u64, Envelope<v1::Account>)>) -> Self {
        Batch(
            events
                .into_iter()
                .map(|(stream_sequence, envelope)| {
                    let subject = format!("bank.account.{}", envelope.key);
                    (
                        stream_sequence,
                        subject,
                        envelope.to_json().expect("encode"),
                    )
                })
                .collect(),
        )
    }

    fn messages(&self) -> Vec<Message<'_>> {
        self.0
            .iter()
            .map(|(sequence, subject, payload)| Message::new(*sequence, subject, payload))
            .collect()
    }
}

/// The tombstone's time is stored and survives reloads; a purge with a
/// cutoff just after the delete (but before the reload) removes it from
/// memory and from the store, and leaves live keys alone.
async fn purge_survives_reloads<B: Backend>(backend: &B, test: &str) {
    let consumer = consumer(test);
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;

    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let batch = Batch::of(vec![
        (1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        (2, producer.upsert(account1("a-2", "Bea", 20)).unwrap()),
        (3, producer.delete("a-1".to_owned()).unwrap()),
    ]);
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    let before_delete = SystemTime::now();
    durable.apply_batch(&batch.messages()).await.expect("batch");
    let deleted_at = durable
        .replica()
        .deleted_at("a-1")
        .expect("a tombstone with a time");
    assert!(deleted_at >= before_delete);
    assert_eq!(durable.replica().deleted_at("a-2"), None, "a live key");
    drop(durable);

    // Time passes before the restart, so a reload that reset the age would
    // give the tombstone a time after the cutoff used below.
    std::thread::sleep(Duration::from_millis(20));
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    let reloaded = durable
        .replica()
        .deleted_at("a-1")
        .expect("the tombstone, reloaded with its time");
    // Stored in microseconds: equal to the original up to that precision.
    assert!(reloaded <= deleted_at, "{reloaded:?} after {deleted_at:?}");
    assert!(
        deleted_at.duration_since(reloaded).unwrap() < Duration::from_micros(1),
        "{reloaded:?} is not {deleted_at:?}"
    );

    // A cutoff before the delete purges nothing.
    let purged = durable
        .purge_tombstones_before(before_delete - Duration::from_secs(1))
        .await
        .expect("purge nothing");
    assert_eq!(purged, 0);
    assert_eq!(durable.replica().tombstones(), 1);

    // Just after the delete (and before the reload): purged.
    // The purge records the stream position it happened at.
    let checkpoint = durable.checkpoint().map(|c| Checkpoint {
        purged_through: c.stream_sequence,
        ..c
    });
    let purged = durable
        .purge_tombstones_before(deleted_at + Duration::from_millis(1))
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    assert_eq!(durable.replica().entry("a-1"), None);
    assert_eq!(durable.replica().tombstones(), 0);
    assert_eq!(durable.replica().len(), 1);
    assert_eq!(
        durable.checkpoint(),
        checkpoint,
        "the checkpoint does not move"
    );
    drop(durable);

    let durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen after the purge");
    assert_eq!(durable.replica().entry("a-1"), None, "gone from the store");
    assert_eq!(durable.replica().tombstones(), 0);
    assert_eq!(
        durable.replica().get("a-2"),
        Some(&account1("a-2", "Bea", 20))
    );
    assert_eq!(durable.checkpoint(), checkpoint);

    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
}

/// Why the horizon matters: while the tombstone is kept, a late copy of an
/// upsert older than the delete is stale; once the tombstone is purged, the
/// same late upsert, sent again on a new stream position (a producer
/// replaying old states, a copy from a mirror), is inserted and the
/// deleted account is back, in memory and in the store. (A redelivery of
/// the original message is caught: see the test above.) Purge only past
/// the longest time such a copy can still arrive.
async fn purging_too_early_resurrects<B: Backend>(backend: &B, test: &str) {
    let consumer = consumer(test);
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;

    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let upsert = producer.upsert(account1("a-1", "Ada", 10)).unwrap();
    let late_copy = upsert.to_json().expect("encode");
    let batch = Batch::of(vec![
        (1, upsert),
        (2, producer.delete("a-1".to_owned()).unwrap()),
    ]);
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    durable.apply_batch(&batch.messages()).await.expect("batch");

    // A redelivery of the old upsert while the tombstone is held: stale.
    let late = [Message::new(3, "bank.account.a-1", &late_copy)];
    let outcome = durable.apply_batch(&late).await.expect("late copy");
    assert_eq!(outcome.applied, vec![(3, Outcome::Stale)]);
    assert_eq!(durable.replica().get("a-1"), None);

    // Purged too early (everything before now)...
    let purged = durable
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(1))
        .await
        .expect("purge");
    assert_eq!(purged, 1);

    // ...the same late copy now brings the deleted account back.
    let late = [Message::new(4, "bank.account.a-1", &late_copy)];
    let outcome = durable.apply_batch(&late).await.expect("late copy again");
    assert_eq!(outcome.applied, vec![(4, Outcome::Inserted)]);
    assert_eq!(
        durable.replica().get("a-1"),
        Some(&account1("a-1", "Ada", 10)),
        "resurrected"
    );
    drop(durable);
    let durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert!(
        matches!(durable.replica().entry("a-1"), Some(Entry::Live { .. })),
        "resurrected in the store too"
    );

    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
}

/// The red team's break (issue 9): a batch upserts then deletes a key, the
/// tombstone is purged, and the broker delivers the upsert again (a crash
/// before the acknowledgement). The redelivery is at or below the stream
/// position where the purge happened, so it is parked as
/// `PurgedTombstone` with a reason instead of bringing the key back; the
/// gate survives a reload, a retry keeps it parked, the key's next event
/// supersedes it, and a rewound stream (numbered afresh) lifts the gate.
async fn a_redelivery_after_a_purge_is_parked<B: Backend>(backend: &B, test: &str) {
    let consumer = consumer(test);
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;

    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let batch = Batch::of(vec![
        (1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        (2, producer.delete("a-1".to_owned()).unwrap()),
        (3, producer.upsert(account1("a-2", "Bea", 20)).unwrap()),
    ]);
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    durable.apply_batch(&batch.messages()).await.expect("batch");
    let purged = durable
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(1))
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(3));
    drop(durable);

    // The process restarts; the broker redelivers the upsert.
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(
        durable.checkpoint().map(|c| c.purged_through),
        Some(3),
        "stored"
    );
    let messages = batch.messages();
    let outcome = durable
        .apply_batch(&messages[..1])
        .await
        .expect("redelivery");
    assert_eq!(durable.replica().entry("a-1"), None, "not resurrected");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    let (at, reason) = &outcome.parked[0];
    assert_eq!(*at, 1);
    assert_eq!(reason.kind, ParkKind::PurgedTombstone);
    assert!(
        reason.message.contains("a-1") && reason.message.contains("purge"),
        "{}",
        reason.message
    );
    drop(durable);

    // Parked durably; delivered again, it stays parked; a retry does not
    // apply it.
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(durable.pending_parked(), 1);
    let outcome = durable.apply_batch(&messages[..1]).await.expect("again");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    let retried = durable.retry_parked().await.expect("retry");
    assert_eq!(retried.parked.len(), 1, "{retried:?}");
    assert_eq!(durable.replica().entry("a-1"), None);
    assert_eq!(durable.pending_parked(), 1);

    // The rest of the redelivery: the delete was applied before the purge
    // and is stale now (a tombstone re-created by it would be older than a
    // newer purged one, and let a redelivered upsert between the two
    // pass); the key stays unknown, the parked upsert kept out; the live
    // key stays.
    let outcome = durable.apply_batch(&messages[1..]).await.expect("rest");
    assert_eq!(outcome.applied[0], (2, Outcome::Stale), "{outcome:?}");
    assert!(outcome.superseded.is_empty(), "{outcome:?}");
    assert_eq!(durable.pending_parked(), 1);
    assert_eq!(durable.replica().entry("a-1"), None);
    assert_eq!(
        durable.replica().get("a-2"),
        Some(&account1("a-2", "Bea", 20))
    );

    // The owner creates the key again, on a new stream position: applied,
    // and the parked older upsert superseded.
    let again = Batch::of(vec![(
        4,
        producer.upsert(account1("a-1", "Ada", 12)).unwrap(),
    )]);
    let outcome = durable.apply_batch(&again.messages()).await.expect("again");
    assert_eq!(outcome.applied, vec![(4, Outcome::Inserted)]);
    assert_eq!(outcome.superseded, vec![1], "{outcome:?}");
    assert_eq!(durable.pending_parked(), 0);
    assert_eq!(
        durable.replica().get("a-1"),
        Some(&account1("a-1", "Ada", 12))
    );
    drop(durable);

    // A stream re-created from scratch numbers from 1 again: after the
    // rewind, its messages are new, whatever their position.
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    durable
        .purge_tombstones_before(SystemTime::now())
        .await
        .expect("purge");
    durable.rewind_stream_position().await.expect("rewind");
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(0));
    let mut fresh = Producer::<v1::Account>::new("urn:example:bank");
    let fresh = Batch::of(vec![(1, fresh.upsert(account1("a-9", "Cy", 9)).unwrap())]);
    let outcome = durable.apply_batch(&fresh.messages()).await.expect("fresh");
    assert_eq!(outcome.applied, vec![(1, Outcome::Inserted)]);
    drop(durable);

    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
}

/// A tombstone row without a deletion time (written by an older version)
/// is stamped with the time the store is opened, and keeps that time
/// across later opens.
async fn legacy_tombstone_is_stamped<B: Backend>(
    backend: &B,
    test: &str,
    clear_time: impl AsyncFn(&B::Store, &str),
) {
    let consumer = consumer(test);
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let batch = Batch::of(vec![
        (1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        (2, producer.delete("a-1".to_owned()).unwrap()),
    ]);
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    durable.apply_batch(&batch.messages()).await.expect("batch");
    let deleted_at = durable.replica().deleted_at("a-1").expect("a tombstone");
    std::thread::sleep(Duration::from_millis(20));
    // The row is stamped by the next open of any store on this database
    // (this test's, or another's running meanwhile): after this moment.
    let cleared_at = SystemTime::now();
    clear_time(durable.store(), &consumer).await;
    drop(durable);

    let durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    let stamped = durable.replica().deleted_at("a-1").expect("a tombstone");
    assert!(
        stamped + Duration::from_micros(1) >= cleared_at && stamped > deleted_at,
        "{stamped:?} is not a stamp taken after the time was cleared at {cleared_at:?}"
    );
    drop(durable);

    std::thread::sleep(Duration::from_millis(20));
    let durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen again");
    assert_eq!(
        durable.replica().deleted_at("a-1"),
        Some(stamped),
        "the stamp was stored, not taken again"
    );

    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
}

#[tokio::test]
async fn sqlite_purge_survives_reloads() {
    purge_survives_reloads(&Sqlite::new("purge"), "purge").await;
}

#[tokio::test]
async fn postgres_purge_survives_reloads() {
    purge_survives_reloads(&Postgres::new(), "pg_tomb_purge").await;
}

#[tokio::test]
async fn sqlite_purging_too_early_resurrects() {
    purging_too_early_resurrects(&Sqlite::new("resurrect"), "resurrect").await;
}

#[tokio::test]
async fn postgres_purging_too_early_resurrects() {
    purging_too_early_resurrects(&Postgres::new(), "pg_tomb_resurrect").await;
}

#[tokio::test]
async fn sqlite_a_redelivery_after_a_purge_is_parked() {
    a_redelivery_after_a_purge_is_parked(&Sqlite::new("redelivery"), "redelivery").await;
}

#[tokio::test]
async fn postgres_a_redelivery_after_a_purge_is_parked() {
    a_redelivery_after_a_purge_is_parked(&Postgres::new(), "pg_tomb_redelivery").await;
}

#[tokio::test]
async fn sqlite_legacy_tombstone_is_stamped() {
    legacy_tombstone_is_stamped(
        &Sqlite::new("legacy"),
        "legacy",
        async |store: &SqliteStore, consumer: &str| {
            let cleared = store
                .connection()
                .execute(
                    "UPDATE ecst_replica SET deleted_at = NULL WHERE consumer = ?1",
                    [consumer],
                )
                .expect("clear");
            assert_eq!(cleared, 1);
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_legacy_tombstone_is_stamped() {
    legacy_tombstone_is_stamped(
        &Postgres::new(),
        "pg_tomb_legacy",
        async |store: &PostgresStore, consumer: &str| {
            let cleared = store
                .client()
                .execute(
                    "UPDATE ecst_replica SET deleted_at = NULL WHERE consumer = $1",
                    &[&consumer],
                )
                .await
                .expect("clear");
            assert_eq!(cleared, 1);
        },
    )
    .await;
}
