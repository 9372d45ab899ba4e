//! Red team, issue 9: attacks on the purge floor (`Checkpoint::purged_through`)
//! and on what surrounds it. Each test is an attack that held; it asserts
//! the exact behaviour that makes it hold, so it fails if that changes.
//!
//! - a purge whose commit future is dropped (before or after the write)
//!   and the redelivery that follows;
//! - a store written by a build without the `purged_through` column
//!   (SQLite and PostgreSQL), and the floor a purge then stores;
//! - hostile `deleted_at` values written into the store by hand
//!   (negative, `i64::MIN`, `i64::MAX`, far future): they load, and a purge
//!   removes exactly the ones before its cutoff;
//! - a change feed that panics: the batch stays committed, memory equals
//!   the store, the redelivery reports nothing, the next batch is reported;
//! - `BlockingReplica` over a store whose futures stay pending: a typed
//!   error, never a hang, and the next call reloads.
//!
//! PostgreSQL: 127.0.0.1:5432 (trust, database `test`), or
//! `ECST_TEST_POSTGRES`; the older-schema test works in a schema of its own.

#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![forbid(unsafe_code)]

#[path = "support/stores.rs"]
mod store_common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecst::consume::ParkKind;
use ecst::store::blocking::{BlockingReplica, ReadyStore};
use ecst::store::postgres::PostgresStore;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{
    Commit, DurableReplica, Loaded, MemoryStore, Message, ReplicaStore, StoreContext, StoreError,
};
use ecst::{Entry, Envelope, Outcome, Producer, StateEvent};
use futures_util::FutureExt;
use store_common::{account1, consumer, v1, Backend, Postgres, Sqlite};

/// A stream as a transport gives it: (position, subject, bytes).
#[derive(Default)]
struct Log(Vec<(u64, String, Vec<u8>)>);

impl Log {
    fn push<T: StateEvent>(&mut self, position: u64, envelope: Envelope<T>) {
        let subject = format!("bank.{}.{}", T::ENTITY, envelope.key);
        self.0
            .push((position, subject, envelope.to_json().expect("encode")));
    }

    /// The messages at `positions`, in that order.
    fn at(&self, positions: &[u64]) -> Vec<Message<'_>> {
        positions
            .iter()
            .map(|position| {
                let (at, subject, bytes) = self
                    .0
                    .iter()
                    .find(|(at, _, _)| at == position)
                    .expect("a published position");
                Message::new(*at, subject, bytes)
            })
            .collect()
    }

    fn all(&self) -> Vec<Message<'_>> {
        self.0
            .iter()
            .map(|(at, subject, bytes)| Message::new(*at, subject, bytes))
            .collect()
    }
}

/// `(key, sequence, balance or None for a tombstone)`, sorted.
fn contents<S: ReplicaStore<v1::Account>>(
    durable: &DurableReplica<v1::Account, S>,
) -> Vec<(String, u64, Option<i64>)> {
    let mut out: Vec<_> = durable
        .replica()
        .entries()
        .map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => (key.clone(), sequence.get(), Some(state.balance)),
            Entry::Tombstone { sequence } => (key.clone(), sequence.get(), None),
        })
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// A store whose futures stop where they are told to.

/// Where a store call stops (never to finish) instead of returning.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Never = 0,
    /// A commit pends before writing anything.
    BeforeWrite = 1,
    /// A commit writes, then pends: the store has it, the caller never
    /// learns.
    AfterWrite = 2,
    /// A load pends.
    Load = 3,
}

/// A `MemoryStore` shared by its clones, whose futures stop where told.
#[derive(Clone, Default)]
struct Stopping {
    inner: Arc<Mutex<MemoryStore>>,
    stop: Arc<AtomicUsize>,
}

impl Stopping {
    fn set(&self, stop: Stop) {
        self.stop.store(stop as usize, Ordering::SeqCst);
    }

    fn stop(&self) -> Stop {
        match self.stop.load(Ordering::SeqCst) {
            0 => Stop::Never,
            1 => Stop::BeforeWrite,
            2 => Stop::AfterWrite,
            _ => Stop::Load,
        }
    }
}

/// A future that is never ready.
struct Forever;

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl ReplicaStore<v1::Account> for Stopping {
    type Error = StoreError;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<v1::Account>, StoreError>> + Send {
        let stop = self.stop();
        let loaded = {
            let mut inner = self.inner.lock().expect("lock");
            ReplicaStore::<v1::Account>::load(&mut *inner)
                .now_or_never()
                .expect("MemoryStore loads at once")
        };
        async move {
            if stop == Stop::Load {
                Forever.await;
            }
            loaded
        }
    }

    fn commit(
        &mut self,
        commit: Commit<'_, v1::Account>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let stop = self.stop();
        let inner = Arc::clone(&self.inner);
        // Encoded now, written when the future first runs (or never).
        let mut written = inner.lock().expect("lock").clone();
        let result = ReplicaStore::<v1::Account>::commit(&mut written, commit)
            .now_or_never()
            .expect("MemoryStore commits at once");
        async move {
            result?;
            if stop == Stop::BeforeWrite {
                Forever.await;
            }
            *inner.lock().expect("lock") = written;
            if stop == Stop::AfterWrite {
                Forever.await;
            }
            Ok(())
        }
    }
}

impl ReadyStore<v1::Account> for Stopping {
    fn not_ready(operation: &'static str) -> StoreError {
        StoreContext::new("stopping", "", None).database(operation, "the future stayed pending")
    }
}

/// Polls `future` once; `true` if it finished (then it is dropped).
fn poll_once<F: Future>(future: F) -> bool {
    future.now_or_never().is_some()
}

/// `a-1` upserted (1) then deleted (2), `a-2` upserted (3).
fn deleted_and_live() -> Log {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let mut log = Log::default();
    log.push(1, producer.upsert(account1("a-1", "Ada", 10)).unwrap());
    log.push(2, producer.delete("a-1".to_owned()).unwrap());
    log.push(3, producer.upsert(account1("a-2", "Bea", 20)).unwrap());
    log
}

/// A purge whose commit future is dropped after the store wrote it: the
/// next call reloads, so the floor the store holds guards the redelivered
/// upsert (parked, not applied). Dropped before the write: the store still
/// holds the tombstone, memory is reloaded, and the redelivery is stale.
#[tokio::test]
async fn a_purge_dropped_mid_commit_still_guards_the_redelivery() {
    let log = deleted_and_live();
    let cutoff = SystemTime::now() + Duration::from_secs(3600);

    // After the write.
    let store = Stopping::default();
    let mut durable = DurableReplica::<v1::Account, _>::open(store.clone())
        .await
        .expect("open");
    durable.apply_batch(&log.all()).await.expect("batch");
    store.set(Stop::AfterWrite);
    assert!(!poll_once(durable.purge_tombstones_before(cutoff)));
    store.set(Stop::Never);
    let outcome = durable
        .apply_batch(&log.at(&[1]))
        .await
        .expect("redelivery");
    assert_eq!(outcome.applied, vec![]);
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].0, 1);
    assert_eq!(outcome.parked[0].1.kind, ParkKind::PurgedTombstone);
    assert_eq!(durable.replica().entry("a-1"), None);
    let checkpoint = durable.checkpoint().expect("a checkpoint");
    assert_eq!(
        (checkpoint.stream_sequence, checkpoint.purged_through),
        (3, 3)
    );
    assert_eq!(contents(&durable), vec![("a-2".into(), 1, Some(20))]);

    // Before the write.
    let store = Stopping::default();
    let mut durable = DurableReplica::<v1::Account, _>::open(store.clone())
        .await
        .expect("open");
    durable.apply_batch(&log.all()).await.expect("batch");
    store.set(Stop::BeforeWrite);
    assert!(!poll_once(durable.purge_tombstones_before(cutoff)));
    store.set(Stop::Never);
    let outcome = durable
        .apply_batch(&log.at(&[1]))
        .await
        .expect("redelivery");
    assert_eq!(outcome.applied, vec![(1, Outcome::Stale)]);
    assert_eq!(outcome.parked, vec![]);
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(0));
    assert_eq!(
        contents(&durable),
        vec![("a-1".into(), 2, None), ("a-2".into(), 1, Some(20))]
    );
    // The purge, done again, lands.
    assert_eq!(
        durable
            .purge_tombstones_before(cutoff)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(3));
}

/// `BlockingReplica` over a store whose futures stay pending: every call
/// returns a typed error at once (never hangs, never panics), the store
/// keeps what it had, and once the store answers again the next call
/// reloads and the redelivered batch brings the replica to the owner's
/// state.
#[test]
fn a_blocking_replica_over_a_pending_store_errs_and_recovers() {
    let log = deleted_and_live();
    let store = Stopping::default();

    store.set(Stop::Load);
    let error = BlockingReplica::<v1::Account, _>::open(store.clone())
        .err()
        .expect("a pending load is an error");
    assert!(
        error
            .to_string()
            .contains("loading failed: the future stayed pending"),
        "{error}"
    );

    store.set(Stop::Never);
    let mut blocking = BlockingReplica::<v1::Account, _>::open(store.clone()).expect("open");

    store.set(Stop::BeforeWrite);
    let error = blocking
        .apply_batch(&log.all())
        .expect_err("pending commit");
    assert!(
        error
            .to_string()
            .contains("committing failed: the future stayed pending"),
        "{error}"
    );
    // The store has nothing of it.
    let fresh = BlockingReplica::<v1::Account, _>::open(Stopping {
        inner: Arc::clone(&store.inner),
        stop: Arc::new(AtomicUsize::new(0)),
    })
    .expect("open a second view");
    assert_eq!(fresh.checkpoint(), None);
    assert_eq!(fresh.replica().len(), 0);

    // A pending load on the reload the next call does: an error too.
    store.set(Stop::Load);
    let error = blocking
        .purge_tombstones_before(SystemTime::now())
        .expect_err("pending reload");
    assert!(error.to_string().contains("stayed pending"), "{error}");

    store.set(Stop::AfterWrite);
    let error = blocking
        .apply_batch(&log.all())
        .expect_err("pending commit");
    assert!(error.to_string().contains("committing"), "{error}");

    // The store answers again: the next call reloads (the batch landed),
    // and the purge works from what the store holds.
    store.set(Stop::Never);
    let purged = blocking
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .expect("purge");
    assert_eq!(purged, 1);
    let checkpoint = blocking.checkpoint().expect("a checkpoint");
    assert_eq!(
        (checkpoint.stream_sequence, checkpoint.purged_through),
        (3, 3)
    );
    let outcome = blocking.apply_batch(&log.at(&[1])).expect("redelivery");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::PurgedTombstone);
    assert_eq!(blocking.replica().get("a-1"), None);
}

// ---------------------------------------------------------------------------
// A change feed that panics.

/// A feed panics in the middle of a batch's report. The panic reaches the
/// caller (it is not swallowed), but the batch is committed: memory and the
/// store agree, the checkpoint moved, the changes reported before the panic
/// are the batch's first ones. The broker redelivers the batch (the panic
/// prevented the ack): duplicates, nothing reported as a change; but the
/// feed is at least once, so that call first replays the batch's keys
/// (owed: their report panicked) as they are now. The feed stays set and
/// reports the next batch.
#[tokio::test]
async fn a_panicking_feed_leaves_the_batch_committed() {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let mut log = Log::default();
    log.push(1, producer.upsert(account1("a-1", "Ada", 1)).unwrap());
    log.push(2, producer.upsert(account1("boom", "Bob", 2)).unwrap());
    log.push(3, producer.upsert(account1("a-3", "Cy", 3)).unwrap());
    log.push(4, producer.upsert(account1("a-4", "Di", 4)).unwrap());

    let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .expect("open");
    let seen = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let armed = Arc::new(AtomicBool::new(true));
    {
        let seen = Arc::clone(&seen);
        let armed = Arc::clone(&armed);
        durable.on_change(move |change| {
            if change.key == "boom" && armed.swap(false, Ordering::SeqCst) {
                panic!("the observer failed");
            }
            seen.lock()
                .expect("lock")
                .push((change.key.clone(), change.sequence.get()));
        });
    }

    let messages = log.at(&[1, 2, 3]);
    let result = AssertUnwindSafe(durable.apply_batch(&messages))
        .catch_unwind()
        .await;
    assert!(result.is_err(), "the panic reaches the caller");
    assert_eq!(*seen.lock().expect("lock"), vec![("a-1".to_owned(), 1)]);

    // Committed, and memory is what the store holds.
    let checkpoint = durable.checkpoint().expect("committed");
    assert_eq!((checkpoint.stream_sequence, checkpoint.applied), (3, 3));
    let stored = DurableReplica::<v1::Account, _>::open(durable.store().clone())
        .await
        .expect("open the store");
    assert_eq!(stored.checkpoint(), Some(checkpoint));
    assert_eq!(contents(&stored), contents(&durable));
    assert_eq!(
        contents(&durable),
        vec![
            ("a-1".into(), 1, Some(1)),
            ("a-3".into(), 1, Some(3)),
            ("boom".into(), 1, Some(2)),
        ]
    );

    // The redelivery: duplicates, nothing counted; the owed keys replayed
    // first, in the order the batch changed them.
    let outcome = durable.apply_batch(&messages).await.expect("redelivery");
    assert_eq!(
        outcome.applied,
        vec![
            (1, Outcome::Duplicate),
            (2, Outcome::Duplicate),
            (3, Outcome::Duplicate)
        ]
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            ("a-1".to_owned(), 1),
            ("a-1".to_owned(), 1),
            ("boom".to_owned(), 1),
            ("a-3".to_owned(), 1)
        ]
    );
    assert_eq!(durable.checkpoint().map(|c| c.applied), Some(3));

    // The next batch is reported.
    let outcome = durable.apply_batch(&log.at(&[4])).await.expect("next");
    assert_eq!(outcome.applied, vec![(4, Outcome::Inserted)]);
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            ("a-1".to_owned(), 1),
            ("a-1".to_owned(), 1),
            ("boom".to_owned(), 1),
            ("a-3".to_owned(), 1),
            ("a-4".to_owned(), 1)
        ]
    );
}

// ---------------------------------------------------------------------------
// Stores written by hand.

/// Makes `ecst_checkpoint` what a build before the purge floor wrote: no
/// `purged_through` column (SQLite cannot drop a column with a default
/// from a STRICT table in place on every version: the table is rebuilt).
fn sqlite_drop_purged_through(store: &SqliteStore) {
    store
        .connection()
        .execute_batch(
            "BEGIN;
             CREATE TABLE ecst_checkpoint_old (
                 consumer        TEXT    NOT NULL,
                 entity          TEXT    NOT NULL,
                 stream_sequence INTEGER NOT NULL,
                 applied         INTEGER NOT NULL,
                 PRIMARY KEY (consumer, entity)
             ) STRICT;
             INSERT INTO ecst_checkpoint_old
                 SELECT consumer, entity, stream_sequence, applied FROM ecst_checkpoint;
             DROP TABLE ecst_checkpoint;
             ALTER TABLE ecst_checkpoint_old RENAME TO ecst_checkpoint;
             COMMIT;",
        )
        .expect("rebuild ecst_checkpoint without purged_through");
}

/// The columns of `ecst_checkpoint`, as SQLite reports them.
fn sqlite_checkpoint_columns(store: &SqliteStore) -> Vec<String> {
    let mut statement = store
        .connection()
        .prepare("SELECT name FROM pragma_table_info('ecst_checkpoint') ORDER BY cid")
        .expect("prepare");
    let names = statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    names
}

/// What a store written by an older build must give: the checkpoint it
/// had, with no floor; a purge then records its floor, which a reopen
/// reads back and which guards the redelivery.
async fn older_store_then_purge<S, F, Fut>(mut open: F)
where
    S: ReplicaStore<v1::Account, Error = StoreError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let log = deleted_and_live();
    let mut durable = DurableReplica::<v1::Account, _>::open(open().await)
        .await
        .expect("open the older store");
    let checkpoint = durable.checkpoint().expect("the older checkpoint");
    assert_eq!(
        (
            checkpoint.stream_sequence,
            checkpoint.applied,
            checkpoint.purged_through
        ),
        (3, 3, 0)
    );
    // No floor yet: the redelivered upsert meets the tombstone, stale.
    let outcome = durable
        .apply_batch(&log.at(&[1]))
        .await
        .expect("redelivery");
    assert_eq!(outcome.applied, vec![(1, Outcome::Stale)]);
    assert_eq!(
        durable
            .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
            .await
            .expect("purge"),
        1
    );
    drop(durable);

    let mut durable = DurableReplica::<v1::Account, _>::open(open().await)
        .await
        .expect("reopen");
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(3));
    let outcome = durable
        .apply_batch(&log.at(&[1]))
        .await
        .expect("redelivery");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::PurgedTombstone);
    assert_eq!(contents(&durable), vec![("a-2".into(), 1, Some(20))]);
}

/// SQLite: a database whose `ecst_checkpoint` has no `purged_through`
/// (an older build) gets the column on open, its checkpoint reads with
/// floor 0, and a purge stores the floor.
#[tokio::test]
async fn sqlite_store_of_an_older_build_gets_the_floor() {
    let backend = Sqlite::new("redteam-older");
    let consumer = consumer("redteam_older");
    {
        let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
            .await
            .expect("open");
        durable
            .apply_batch(&deleted_and_live().all())
            .await
            .expect("batch");
        sqlite_drop_purged_through(durable.store());
        assert_eq!(
            sqlite_checkpoint_columns(durable.store()),
            ["consumer", "entity", "stream_sequence", "applied"]
        );
    }
    older_store_then_purge(|| backend.open(&consumer)).await;
    let store = backend.open(&consumer).await;
    assert_eq!(
        sqlite_checkpoint_columns(&store),
        [
            "consumer",
            "entity",
            "stream_sequence",
            "applied",
            "purged_through",
            "stream_created",
            "entities",
            "owed"
        ]
    );
}

/// PostgreSQL, in a schema of its own (the tables of other tests are not
/// touched): `ecst_checkpoint` without `purged_through` gets it on open.
#[tokio::test]
async fn postgres_store_of_an_older_build_gets_the_floor() {
    let base = Postgres::new().config;
    let schema = format!("redteam_older_{}", std::process::id());
    let (admin, connection) = ecst::store::postgres::tokio_postgres::connect(
        &base,
        ecst::store::postgres::tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .await
        .expect("create the schema");
    let config = format!("{base} options='-c search_path={schema}'");
    let consumer = "redteam_older";
    {
        let store = PostgresStore::connect(&config, consumer)
            .await
            .expect("connect the store");
        let mut durable = DurableReplica::<v1::Account, _>::open(store)
            .await
            .expect("open");
        durable
            .apply_batch(&deleted_and_live().all())
            .await
            .expect("batch");
    }
    admin
        .batch_execute(&format!(
            "ALTER TABLE {schema}.ecst_checkpoint DROP COLUMN purged_through"
        ))
        .await
        .expect("an older build's table");
    older_store_then_purge(|| async {
        PostgresStore::connect(&config, consumer)
            .await
            .expect("connect the store")
    })
    .await;
    let column: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'ecst_checkpoint' \
             AND column_name = 'purged_through'",
            &[&schema],
        )
        .await
        .expect("columns")
        .get(0);
    assert_eq!(column, 1);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop the schema");
}

/// Tombstones whose `deleted_at` was written by hand: negative,
/// `i64::MIN`, `0`, `i64::MAX` and the year 3000. They load (a negative
/// time is the epoch, as documented), a purge at now removes exactly those
/// before it and records the floor, the others keep their time through a
/// reopen, and a cutoff past `i64::MAX` microseconds removes them too.
#[tokio::test]
async fn hostile_deletion_times_load_and_purge_by_their_time() {
    let backend = Sqlite::new("redteam-deleted-at");
    let consumer = consumer("redteam_deleted_at");
    let year_3000: i64 = 32_503_680_000_000_000;
    let hostile: [(&str, i64); 5] = [
        ("neg", -1),
        ("min", i64::MIN),
        ("zero", 0),
        ("max", i64::MAX),
        ("y3000", year_3000),
    ];
    {
        let mut producer = Producer::<v1::Account>::new("urn:example:bank");
        let mut log = Log::default();
        let mut position = 0;
        for (key, _) in hostile {
            position += 1;
            log.push(position, producer.upsert(account1(key, "X", 1)).unwrap());
            position += 1;
            log.push(position, producer.delete(key.to_owned()).unwrap());
        }
        let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
            .await
            .expect("open");
        durable.apply_batch(&log.all()).await.expect("batch");
        for (key, micros) in hostile {
            let changed = durable
                .store()
                .connection()
                .execute(
                    "UPDATE ecst_replica SET deleted_at = ?1 WHERE consumer = ?2 AND key = ?3",
                    ecst::store::sqlite::rusqlite::params![micros, consumer, key],
                )
                .expect("write deleted_at");
            assert_eq!(changed, 1, "{key}");
        }
    }

    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("open with hostile times");
    let times: Vec<_> = hostile
        .iter()
        .map(|(key, _)| durable.replica().deleted_at(*key))
        .collect();
    let max = UNIX_EPOCH + Duration::from_micros(u64::MAX >> 1);
    let y3000 = UNIX_EPOCH + Duration::from_micros(year_3000.unsigned_abs());
    assert_eq!(
        times,
        vec![
            Some(UNIX_EPOCH),
            Some(UNIX_EPOCH),
            Some(UNIX_EPOCH),
            Some(max),
            Some(y3000)
        ]
    );
    let purged = durable
        .purge_tombstones_before(SystemTime::now())
        .await
        .expect("purge");
    assert_eq!(purged, 3);
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(10));
    drop(durable);

    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(
        contents(&durable),
        vec![("max".into(), 2, None), ("y3000".into(), 2, None)]
    );
    assert_eq!(durable.replica().deleted_at("max"), Some(max));
    assert_eq!(durable.replica().deleted_at("y3000"), Some(y3000));
    // A cutoff at the largest time the column holds keeps it; past it,
    // everything goes.
    assert_eq!(
        durable.purge_tombstones_before(max).await.expect("purge"),
        1
    );
    let past = max + Duration::from_micros(1);
    assert_eq!(
        durable.purge_tombstones_before(past).await.expect("purge"),
        1
    );
    assert_eq!(durable.replica().len(), 0);
    drop(durable);
    let durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(durable.replica().len(), 0);
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(10));
}

/// A redelivery kept out by the floor, discarded by hand, comes again: it
/// stays discarded (the same payload at the same position). Once the
/// parking limits have dropped the discarded row, it comes again: parked
/// again by the floor, never applied. The owner re-creating the key on a
/// new position supersedes it.
#[tokio::test]
async fn a_discarded_purged_redelivery_never_applies_even_after_the_limits_drop_it() {
    use ecst::consume::{ParkingLimits, Resolution};
    let mut log = deleted_and_live();
    let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .expect("open");
    durable.apply_batch(&log.all()).await.expect("batch");
    durable
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .await
        .expect("purge");
    let outcome = durable
        .apply_batch(&log.at(&[1]))
        .await
        .expect("redelivery");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert!(durable
        .discard_parked(1, "deleted by the owner")
        .await
        .expect("discard"));
    let outcome = durable.apply_batch(&log.at(&[1])).await.expect("again");
    assert_eq!(outcome.applied, vec![]);
    assert_eq!(outcome.parked, vec![]);
    assert_eq!(
        durable.parked_at(1).and_then(|p| p.resolution.clone()),
        Some(Resolution::Discarded("deleted by the owner".into()))
    );
    assert_eq!(durable.replica().entry("a-1"), None);

    // The limits drop resolved rows: the next redelivery is parked again.
    let mut durable = durable.with_parking_limits(ParkingLimits {
        max_resolved: 0,
        ..ParkingLimits::default()
    });
    let outcome = durable.retry_parked().await.expect("close");
    assert_eq!(outcome.applied, vec![]);
    assert_eq!(durable.parked_len(), 0);
    let outcome = durable.apply_batch(&log.at(&[1])).await.expect("again");
    assert_eq!(outcome.applied, vec![]);
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::PurgedTombstone);
    assert_eq!(durable.replica().entry("a-1"), None);
    let retried = durable.retry_parked().await.expect("retry");
    assert_eq!(retried.applied, vec![]);
    assert_eq!(durable.replica().entry("a-1"), None);

    // The owner creates the key again: applied, the parked one superseded.
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    producer.upsert(account1("a-1", "Ada", 10)).unwrap();
    producer.delete("a-1".to_owned()).unwrap();
    log.push(4, producer.upsert(account1("a-1", "Ada", 11)).unwrap());
    let outcome = durable
        .apply_batch(&log.at(&[4]))
        .await
        .expect("re-created");
    assert_eq!(outcome.applied, vec![(4, Outcome::Inserted)]);
    assert_eq!(outcome.superseded, vec![1]);
    assert_eq!(durable.pending_parked(), 0);
    assert_eq!(
        contents(&durable),
        vec![("a-1".into(), 3, Some(11)), ("a-2".into(), 1, Some(20))]
    );
}

/// The feed survives a reload (a restart of the replica in place); a
/// redelivery kept out by the floor reports nothing; a retry that still
/// cannot apply reports nothing; the upgraded build's retry reports what it
/// applies and still keeps the floor's redelivery out.
#[tokio::test]
async fn the_feed_survives_a_reload_and_reports_only_what_a_retry_applies() {
    use store_common::{account2, v2};
    let mut log = deleted_and_live();
    // Position 4: `a-3` from a newer build (a future version here).
    let mut newer = Producer::<v2::Account>::new("urn:example:bank");
    log.push(4, newer.upsert(account2("a-3", "Cy", None, 30)).unwrap());

    let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .expect("open");
    let seen = Arc::new(Mutex::new(Vec::<(String, u64, Outcome)>::new()));
    {
        let seen = Arc::clone(&seen);
        durable.on_change(move |change| {
            seen.lock().expect("lock").push((
                change.key.clone(),
                change.sequence.get(),
                change.outcome,
            ));
        });
    }
    let outcome = durable.apply_batch(&log.all()).await.expect("batch");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::FutureVersion);
    assert_eq!(
        std::mem::take(&mut *seen.lock().expect("lock")),
        vec![
            ("a-1".to_owned(), 1, Outcome::Inserted),
            ("a-1".to_owned(), 2, Outcome::Deleted),
            ("a-2".to_owned(), 1, Outcome::Inserted),
        ]
    );
    durable
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .await
        .expect("purge");
    durable.reload().await.expect("reload");
    let outcome = durable
        .apply_batch(&log.at(&[1]))
        .await
        .expect("redelivery");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::PurgedTombstone);
    let retried = durable.retry_parked().await.expect("retry");
    assert_eq!(retried.applied, vec![]);
    assert_eq!(retried.parked.len(), 2, "{retried:?}");
    assert_eq!(*seen.lock().expect("lock"), vec![]);

    // A new event reaches the feed after the reload.
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let mut next = Log::default();
    next.push(5, producer.upsert(account1("a-5", "Ed", 50)).unwrap());
    durable.apply_batch(&next.all()).await.expect("next");
    assert_eq!(
        std::mem::take(&mut *seen.lock().expect("lock")),
        vec![("a-5".to_owned(), 1, Outcome::Inserted)]
    );

    // The upgraded build: its retry applies `a-3` (reported), and keeps
    // the purged key out.
    let mut upgraded = DurableReplica::<v2::Account, _>::open(durable.store().clone())
        .await
        .expect("upgrade");
    let reported = Arc::new(Mutex::new(Vec::<(String, u64, Outcome)>::new()));
    {
        let reported = Arc::clone(&reported);
        upgraded.on_change(move |change| {
            reported.lock().expect("lock").push((
                change.key.clone(),
                change.sequence.get(),
                change.outcome,
            ));
        });
    }
    let retried = upgraded.retry_parked().await.expect("retry");
    assert_eq!(retried.applied, vec![(4, Outcome::Inserted)]);
    assert_eq!(retried.parked.len(), 1, "{retried:?}");
    assert_eq!(retried.parked[0].0, 1);
    // `a-5` first: the feed is at least once, and a restart replays the
    // keys of the last batch committed with a feed (`on_change`, as it is
    // now), before anything new.
    assert_eq!(
        *reported.lock().expect("lock"),
        vec![
            ("a-5".to_owned(), 1, Outcome::Inserted),
            ("a-3".to_owned(), 1, Outcome::Inserted)
        ]
    );
    assert_eq!(upgraded.replica().entry("a-1"), None);
}

/// A negative `purged_through` written by hand: opening the store is a
/// typed error naming the column, never a floor read as something else.
#[tokio::test]
async fn a_negative_floor_in_the_store_is_a_typed_error() {
    let backend = Sqlite::new("redteam-negative-floor");
    let consumer = consumer("redteam_negative_floor");
    {
        let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
            .await
            .expect("open");
        durable
            .apply_batch(&deleted_and_live().all())
            .await
            .expect("batch");
        let changed = durable
            .store()
            .connection()
            .execute(
                "UPDATE ecst_checkpoint SET purged_through = -5 WHERE consumer = ?1",
                [&consumer],
            )
            .expect("write purged_through");
        assert_eq!(changed, 1);
    }
    let error = match DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await).await {
        Ok(_) => panic!("a negative floor was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("ecst_checkpoint.purged_through = -5 is out of range"),
        "{error}"
    );
}

// 1. Position 0 is gated with no purge ever done.
#[tokio::test]
async fn position_zero_is_not_taken_for_a_purged_redelivery() {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let bytes = producer
        .upsert(account1("a-0", "Zed", 0))
        .unwrap()
        .to_json()
        .unwrap();
    let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let outcome = durable
        .apply_batch(&[Message::new(0, "bank.account.a-0", &bytes)])
        .await
        .unwrap();
    assert_eq!(outcome.applied, vec![(0, Outcome::Inserted)], "{outcome:?}");
}
// 2. A purged key is never brought back by retry_parked.
#[tokio::test]
async fn retry_after_a_purge_never_resurrects() {
    use ecst::consume::ParkingLimits;
    use store_common::{account2, v2};
    let mut producer = Producer::<v2::Account>::new("urn:example:bank");
    let mut log = Log::default();
    log.push(
        1,
        producer.upsert(account2("a-1", "Ada", None, 10)).unwrap(),
    );
    // The delete as a v1 build reads it (a delete carries no state).
    let delete = producer
        .delete("a-1".to_owned())
        .unwrap()
        .to_json()
        .unwrap();
    let mut delete: serde_json::Value = serde_json::from_slice(&delete).unwrap();
    eprintln!("delete: {delete}");
    delete["schemaversion"] = serde_json::json!(1);
    log.0.push((
        2,
        "bank.account.a-1".into(),
        serde_json::to_vec(&delete).unwrap(),
    ));
    let limits = ParkingLimits {
        max_resolved: 0,
        ..ParkingLimits::default()
    };
    let mut old = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .expect("open")
        .with_parking_limits(limits);
    let outcome = old.apply_batch(&log.all()).await.expect("batch");
    eprintln!("first: {outcome:?}");
    old.purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .await
        .expect("purge");
    let outcome = old.apply_batch(&log.at(&[1])).await.expect("redelivery");
    eprintln!("redelivery: {outcome:?}");
    let mut new = DurableReplica::<v2::Account, _>::open(old.store().clone())
        .await
        .expect("upgrade");
    let outcome = new.retry_parked().await.expect("retry");
    eprintln!("retry: {outcome:?}");
    assert_eq!(new.replica().get("a-1"), None, "resurrected: {outcome:?}");
}

// 3. A router feed that panics leaks nothing into the next batch.
#[tokio::test]
async fn router_feed_panic_does_not_leak_into_the_next_batch() {
    use ecst::store::{DurableRouter, MemoryRouterStore};
    use store_common::Fragile;
    let mut accounts = Producer::<v1::Account>::new("urn:example:bank");
    let mut fragiles = Producer::<Fragile>::new("urn:example:bank");
    let mut log = Log::default();
    log.push(1, accounts.upsert(account1("a-1", "Ada", 1)).unwrap());
    log.push(
        2,
        fragiles
            .upsert(Fragile {
                id: "f-1".into(),
                note: "x".into(),
                tag: None,
            })
            .unwrap(),
    );
    log.push(
        3,
        fragiles
            .upsert(Fragile {
                id: "f-2".into(),
                note: "y".into(),
                tag: None,
            })
            .unwrap(),
    );
    let addressed = |positions: &[u64]| -> Vec<Message<'_>> {
        log.at(positions)
            .into_iter()
            .map(|m| {
                let mut parts = m.subject.splitn(3, '.').skip(1);
                let entity = parts.next().unwrap_or_default();
                let key = parts.next().unwrap_or_default();
                m.addressed_to(entity, key)
            })
            .collect()
    };
    let mut router = DurableRouter::builder(MemoryRouterStore::new())
        .register::<v1::Account>()
        .unwrap()
        .register::<Fragile>()
        .unwrap()
        .open()
        .await
        .unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let armed = Arc::clone(&armed);
        router
            .on_change::<v1::Account>(move |_| {
                if armed.swap(false, Ordering::SeqCst) {
                    panic!("observer failed");
                }
            })
            .unwrap();
        let seen = Arc::clone(&seen);
        router
            .on_change::<Fragile>(move |c| seen.lock().unwrap().push(c.key.clone()))
            .unwrap();
    }
    let first = addressed(&[1, 2]);
    let result = AssertUnwindSafe(router.apply_batch(&first))
        .catch_unwind()
        .await;
    assert!(result.is_err());
    eprintln!(
        "after panic: checkpoint {:?} seen {:?}",
        router.checkpoint(),
        seen.lock().unwrap()
    );
    let next = addressed(&[3]);
    let outcome = router.apply_batch(&next).await.expect("next");
    eprintln!(
        "next: {outcome:?} checkpoint {:?} seen {:?}",
        router.checkpoint(),
        seen.lock().unwrap()
    );
    assert_eq!(outcome.applied, vec![(3, Outcome::Inserted)], "{outcome:?}");
    assert_eq!(router.checkpoint().map(|c| c.applied), Some(3));
}

/// The stream's identity (`Checkpoint::stream_created`) set on a consumer
/// is written with its next commit, never alone, read back on open, and
/// cleared by a rewind: for a `DurableReplica` (its entity's row) and a
/// `DurableRouter` (the `*` row).
async fn the_stream_identity_is_stored<B>(backend: &B, test: &str)
where
    B: Backend,
    B::Store: ecst::store::RouterStore,
{
    use ecst::store::DurableRouter;
    // Nanoseconds matter: a stream's creation time is compared exactly.
    let created = UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789);
    let log = deleted_and_live();

    let consumer = consumer(test);
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    durable.set_stream_created(created);
    assert_eq!(durable.stream_created(), Some(created));
    drop(durable);
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(durable.checkpoint(), None, "nothing written by setting it");
    assert_eq!(durable.stream_created(), None);
    durable.set_stream_created(created);
    durable.apply_batch(&log.all()).await.expect("batch");
    drop(durable);
    let mut durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(
        durable.checkpoint().and_then(|c| c.stream_created),
        Some(created)
    );
    durable.rewind_stream_position().await.expect("rewind");
    drop(durable);
    let durable = DurableReplica::<v1::Account, _>::open(backend.open(&consumer).await)
        .await
        .expect("reopen");
    assert_eq!(durable.stream_created(), None, "a rewind clears it");
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;

    let consumer = format!("{consumer}_router");
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
    let mut router = DurableRouter::builder(store)
        .register::<v1::Account>()
        .expect("register")
        .open()
        .await
        .expect("open");
    router.set_stream_created(created);
    router.apply_batch(&log.all()).await.expect("batch");
    drop(router);
    let router = DurableRouter::builder(backend.open(&consumer).await)
        .register::<v1::Account>()
        .expect("register")
        .open()
        .await
        .expect("reopen");
    assert_eq!(
        router.checkpoint().and_then(|c| c.stream_created),
        Some(created)
    );
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
}

#[tokio::test]
async fn sqlite_stores_the_stream_identity() {
    let backend = Sqlite::new("redteam-identity");
    the_stream_identity_is_stored(&backend, "redteam_identity").await;
}

#[tokio::test]
async fn postgres_stores_the_stream_identity() {
    the_stream_identity_is_stored(&Postgres::new(), "redteam_identity").await;
}

/// A stored floor above the stream position (written by hand) is lowered
/// to the position on load: a redelivery at or below the position is
/// still guarded, a new message above it is not.
#[tokio::test]
async fn a_floor_above_the_position_is_lowered_on_load() {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let mut log = Log::default();
    log.push(1, producer.upsert(account1("a-1", "Ada", 1)).unwrap());
    log.push(2, producer.upsert(account1("a-2", "Bea", 2)).unwrap());
    let mut store = MemoryStore::new();
    ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint: ecst::store::Checkpoint {
                stream_sequence: 1,
                purged_through: 50,
                ..Default::default()
            },
        },
    )
    .await
    .expect("commit");
    let mut durable = DurableReplica::<v1::Account, _>::open(store)
        .await
        .expect("open");
    assert_eq!(durable.checkpoint().map(|c| c.purged_through), Some(1));
    let outcome = durable.apply_batch(&log.all()).await.expect("batch");
    assert_eq!(outcome.applied, vec![(2, Outcome::Inserted)], "{outcome:?}");
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::PurgedTombstone);
}

/// Below the floor, the version gate decides wherever a tombstone is
/// held: a redelivered upsert older than a tombstone still held is stale
/// (not parked with a reason saying its key was purged), and a redelivered
/// delete of a key the replica no longer holds is stale too, re-creating
/// no older tombstone.
#[tokio::test]
async fn below_the_floor_a_held_tombstone_decides_and_no_older_one_comes_back() {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let mut log = Log::default();
    log.push(1, producer.upsert(account1("a-1", "Ada", 1)).unwrap());
    log.push(2, producer.delete("a-1".to_owned()).unwrap());
    log.push(3, producer.upsert(account1("a-2", "Bea", 2)).unwrap());
    log.push(4, producer.delete("a-2".to_owned()).unwrap());
    let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .expect("open");
    durable.apply_batch(&log.all()).await.expect("batch");
    let purged = durable
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    // The owner deletes a-1 again (a new stream position): a tombstone.
    log.push(5, producer.delete("a-1".to_owned()).unwrap());
    let outcome = durable.apply_batch(&log.at(&[5])).await.expect("delete");
    assert_eq!(outcome.applied, vec![(5, Outcome::Deleted)]);

    let outcome = durable
        .apply_batch(&log.at(&[1, 4]))
        .await
        .expect("redelivery");
    assert_eq!(
        outcome.applied,
        vec![(1, Outcome::Stale), (4, Outcome::Stale)],
        "{outcome:?}"
    );
    assert!(outcome.parked.is_empty(), "{outcome:?}");
    assert_eq!(durable.parked_len(), 0);
    assert_eq!(
        durable.replica().entry("a-2"),
        None,
        "no tombstone re-created"
    );
}

/// A purge keeps the tombstone of a key with a pending parked event a
/// retry may apply (the key is in flux); the upgrade's retry applies the
/// parked upsert, newer than the delete.
#[tokio::test]
async fn a_purge_keeps_the_tombstone_of_a_key_in_flux() {
    use store_common::{account2, v2};
    let mut producer = Producer::<v2::Account>::new("urn:example:bank");
    let mut log = Log::default();
    let delete = producer
        .delete("a-1".to_owned())
        .unwrap()
        .to_json()
        .unwrap();
    let mut delete: serde_json::Value = serde_json::from_slice(&delete).unwrap();
    delete["schemaversion"] = serde_json::json!(1);
    if let Some(object) = delete.as_object_mut() {
        object.remove("dataschema");
    }
    log.0.push((
        1,
        "bank.account.a-1".into(),
        serde_json::to_vec(&delete).unwrap(),
    ));
    log.push(
        2,
        producer.upsert(account2("a-1", "Ada", None, 10)).unwrap(),
    );
    let mut old = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .expect("open");
    let outcome = old.apply_batch(&log.all()).await.expect("batch");
    assert_eq!(outcome.applied, vec![(1, Outcome::Deleted)], "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::FutureVersion);
    let purged = old
        .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
        .await
        .expect("purge");
    assert_eq!(purged, 0);
    assert!(matches!(
        old.replica().entry("a-1"),
        Some(Entry::Tombstone { .. })
    ));
    let mut new = DurableReplica::<v2::Account, _>::open(old.store().clone())
        .await
        .expect("upgrade");
    let outcome = new.retry_parked().await.expect("retry");
    assert_eq!(outcome.applied, vec![(2, Outcome::Inserted)], "{outcome:?}");
    assert_eq!(
        new.replica().get("a-1"),
        Some(&account2("a-1", "Ada", None, 10))
    );
}

/// Position 0 with no purge done, for a message that cannot apply: parked
/// under its own reason (a future version, retried after the upgrade),
/// not taken for a redelivery below the floor.
#[tokio::test]
async fn position_zero_that_cannot_apply_keeps_its_reason() {
    use store_common::{account2, v2};
    let mut producer = Producer::<v2::Account>::new("urn:example:bank");
    let bytes = producer
        .upsert(account2("a-0", "Zed", None, 0))
        .unwrap()
        .to_json()
        .unwrap();
    let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let outcome = durable
        .apply_batch(&[Message::new(0, "bank.account.a-0", &bytes)])
        .await
        .unwrap();
    assert_eq!(outcome.parked.len(), 1, "{outcome:?}");
    assert_eq!(outcome.parked[0].1.kind, ParkKind::FutureVersion);
}
