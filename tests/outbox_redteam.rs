//! The transactional outbox attacked as a crash, a cancellation, a confused
//! operator or concurrency would, against real SQLite, PostgreSQL
//! (127.0.0.1:5432, database `test`, one table per test) and a real
//! `nats-server`. Each test states the promise it checks: every replica
//! ends equal to the owner's tables or visibly parked with a reason; never
//! stuck, never a lost event, never an older state on top of a newer one,
//! never a rolled-back state published.
//!
//! Waits are bounded loops on a condition; no duration is an assertion.

#![cfg(all(feature = "nats", feature = "sqlite", feature = "postgres"))]

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/outbox.rs"]
mod outbox_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use ecst::nats::Publisher;
use ecst::outbox::rusqlite::Connection;
use ecst::outbox::tokio_postgres::error::SqlState;
use ecst::outbox::tokio_postgres::{self, IsolationLevel};
use ecst::outbox::{Outbox, OutboxError, OutboxRelay, RelaySettings};
use ecst::{Envelope, Producer, Sequence, StateEvent};
use futures_util::StreamExt;
use outbox_support::{
    account, bounded, drain, drop_postgres, postgres, unique_table, Account, Broker, SqliteFile,
    Truth, POSTGRES,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const STREAM: &str = "REDTEAM";
const PREFIX: &str = "red";
const SOURCE: &str = "urn:test:red";

/// A unique table name per test and process.
fn table(test: &str) -> String {
    unique_table("red", test)
}

async fn broker() -> Broker {
    outbox_support::broker(STREAM, PREFIX).await
}

// ---------------------------------------------------------------------------
// SQLite helpers
// ---------------------------------------------------------------------------

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// Rows neither sent (or deleted) nor set aside.
fn unsent(conn: &Connection, outbox: &Outbox) -> i64 {
    count(
        conn,
        &format!(
            "SELECT count(*) FROM {} WHERE sent_at IS NULL AND error IS NULL",
            outbox.table()
        ),
    )
}

// ---------------------------------------------------------------------------
// PostgreSQL helpers
// ---------------------------------------------------------------------------

async fn postgres_outbox(test: &str) -> Outbox {
    let outbox = Outbox::new(SOURCE).with_table(&table(test)).unwrap();
    let mut client = postgres().await;
    outbox.create_postgres(&mut client).await.unwrap();
    outbox
}

/// Waits until a backend is waiting on a lock while running a statement
/// on `table` (the second writer of a key, blocked on the counter row).
async fn until_blocked_on(observer: &tokio_postgres::Client, table: &str) {
    bounded("the second transaction waiting on the counter row", async {
        loop {
            let waiting: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
                    &[&table],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// PostgreSQL: concurrent owner transactions
// ---------------------------------------------------------------------------

/// Two READ COMMITTED transactions both staging the first event of a key
/// that has no counter row yet: the INSERT ... ON CONFLICT of the second
/// waits for the first, then takes 2. No duplicate sequence, no error, and
/// the stream ends with the later commit's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_transactions_creating_one_key_get_1_and_2() {
    let broker = broker().await;
    let outbox = postgres_outbox("newkey").await;
    let mut first = postgres().await;
    let observer = postgres().await;

    let tx = first.transaction().await.unwrap();
    let staged = outbox.stage(&tx, &account("n-1", 10)).await.unwrap();
    assert_eq!(staged.sequence.get(), 1);

    let second = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            let mut client = postgres().await;
            let tx = client.transaction().await.unwrap();
            let staged = outbox.stage(&tx, &account("n-1", 20)).await.unwrap();
            tx.commit().await.unwrap();
            staged
        })
    };
    until_blocked_on(&observer, &format!("{}_sequence", outbox.table())).await;
    tx.commit().await.unwrap();
    let staged = bounded("the second writer", second).await.unwrap();
    assert_eq!(staged.sequence.get(), 2, "{staged:?}");
    assert_eq!(staged.id, "account:n-1:2");

    let mut relay =
        OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher()).entity::<Account>();
    drain(&mut relay).await;
    assert_eq!(
        broker.stream_state().await,
        BTreeMap::from([("n-1".to_owned(), (2, Some(account("n-1", 20))))])
    );
    drop_postgres(&outbox).await;
}

/// The same race with the second transaction at REPEATABLE READ or
/// SERIALIZABLE: it cannot see the first one's counter row, so PostgreSQL
/// refuses it (a serialization failure) and staging says so with a typed
/// error; rolled back, it publishes nothing, and its retry takes the next
/// sequence: no gap a consumer could mistake, no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_serialization_failure_is_an_error_never_a_duplicate_sequence() {
    for level in [IsolationLevel::RepeatableRead, IsolationLevel::Serializable] {
        let broker = broker().await;
        let outbox = postgres_outbox("serial").await;
        let mut first = postgres().await;
        let observer = postgres().await;
        // The key exists already (sequence 1, published): the race is on an
        // existing counter row.
        let tx = first.transaction().await.unwrap();
        outbox.stage(&tx, &account("s-1", 1)).await.unwrap();
        tx.commit().await.unwrap();

        let tx = first.transaction().await.unwrap();
        assert_eq!(
            outbox
                .stage(&tx, &account("s-1", 2))
                .await
                .unwrap()
                .sequence
                .get(),
            2
        );
        let second = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut client = postgres().await;
                let tx = client
                    .build_transaction()
                    .isolation_level(level)
                    .start()
                    .await
                    .unwrap();
                // Take the snapshot before the first transaction commits.
                tx.execute("SELECT 1", &[]).await.unwrap();
                let result = outbox.stage(&tx, &account("s-1", 3)).await;
                tx.rollback().await.unwrap();
                // The owner retries its transaction.
                let tx = client
                    .build_transaction()
                    .isolation_level(level)
                    .start()
                    .await
                    .unwrap();
                let retried = outbox.stage(&tx, &account("s-1", 3)).await.unwrap();
                tx.commit().await.unwrap();
                (result, retried)
            })
        };
        until_blocked_on(&observer, &format!("{}_sequence", outbox.table())).await;
        tx.commit().await.unwrap();
        let (result, retried) = bounded("the second writer", second).await.unwrap();
        match result {
            Err(OutboxError::Database { operation, source }) => {
                assert_eq!(operation, "taking the key's next sequence");
                // The owner retries on SQLSTATE 40001, found in the chain.
                let code = source
                    .downcast_ref::<tokio_postgres::Error>()
                    .and_then(tokio_postgres::Error::code);
                assert_eq!(
                    code,
                    Some(&SqlState::T_R_SERIALIZATION_FAILURE),
                    "{level:?}: {source:?}"
                );
            }
            other => panic!("{level:?}: expected a serialization failure, got {other:?}"),
        }
        assert_eq!(retried.sequence.get(), 3, "{level:?}");

        let mut relay =
            OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher()).entity::<Account>();
        drain(&mut relay).await;
        let all = broker.read_all::<Account>().await;
        let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            all.last().map(|e| (e.sequence.get(), e.state().cloned())),
            Some((3, Some(account("s-1", 3)))),
            "{level:?}: {ids:?}"
        );
        drop_postgres(&outbox).await;
    }
}

/// A long owner transaction holds an older position of key `slow` while
/// later transactions of other keys commit and are relayed: the relay
/// never uses the highest position sent as a cursor, so the slow row is
/// published once it commits, and a rolled-back one never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_long_transaction_committing_late_is_still_published() {
    let broker = broker().await;
    let outbox = postgres_outbox("late").await;
    let mut slow = postgres().await;
    let mut doomed = postgres().await;
    let mut fast = postgres().await;
    let mut relay =
        OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher()).entity::<Account>();

    let slow_tx = slow.transaction().await.unwrap();
    outbox.stage(&slow_tx, &account("slow", 1)).await.unwrap();
    let doomed_tx = doomed.transaction().await.unwrap();
    outbox
        .stage(&doomed_tx, &account("doomed", 1))
        .await
        .unwrap();
    for k in 0..5 {
        let tx = fast.transaction().await.unwrap();
        outbox
            .stage(&tx, &account(&format!("fast-{k}"), k))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    drain(&mut relay).await;
    assert_eq!(broker.stream_state().await.len(), 5);

    doomed_tx.rollback().await.unwrap();
    slow_tx.commit().await.unwrap();
    drain(&mut relay).await;
    let state = broker.stream_state().await;
    assert_eq!(state.len(), 6, "{state:?}");
    assert_eq!(state["slow"], (1, Some(account("slow", 1))));
    assert!(!state.contains_key("doomed"));
    drop_postgres(&outbox).await;
}

// ---------------------------------------------------------------------------
// Relay: batches, deletes, retention, other processes
// ---------------------------------------------------------------------------

/// One key's rows split over several batches, deletes and re-creations in
/// between: every pass publishes a key's newest row of its batch, so a
/// consumer sees the key's sequences strictly increasing and the stream
/// ends with the owner's last state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_split_over_batches_with_deletes_and_recreations_ends_equal() {
    let broker = broker().await;
    let file = SqliteFile::new("split");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let mut truth = Truth::new();
    let tx = conn.transaction().unwrap();
    for i in 0..23_i64 {
        let key = format!("s-{}", i % 3);
        let staged = if i % 5 == 4 {
            outbox.stage_delete::<Account, _>(&tx, &key).unwrap()
        } else {
            outbox.stage(&tx, &account(&key, i)).unwrap()
        };
        truth.insert(
            key.clone(),
            (
                staged.sequence.get(),
                (i % 5 != 4).then(|| account(&key, i)),
            ),
        );
    }
    tx.commit().unwrap();

    let mut settings = RelaySettings::default();
    settings.batch = 4;
    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .with_settings(settings);
    drain(&mut relay).await;
    assert_eq!(unsent(&conn, &outbox), 0);
    assert_eq!(broker.stream_state().await, truth);
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for envelope in broker.read_all::<Account>().await {
        if let Some(before) = last.insert(envelope.key.clone(), envelope.sequence.get()) {
            assert!(envelope.sequence.get() > before, "{}", envelope.id);
        }
    }
}

/// Retention never deletes an unsent row: with `keep_sent` zero and the
/// broker refusing every publish (the stream is gone), a pass fails and
/// every row is still there to publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_deletes_an_unsent_row() {
    let broker = broker().await;
    let file = SqliteFile::new("retain");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let tx = conn.transaction().unwrap();
    for k in 0..10 {
        outbox.stage(&tx, &account(&format!("r-{k}"), k)).unwrap();
    }
    tx.commit().unwrap();
    broker.js.delete_stream(STREAM).await.unwrap();

    let mut settings = RelaySettings::default();
    settings.keep_sent = Some(Duration::ZERO);
    settings.purge_batch = 1;
    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .with_settings(settings);
    for _ in 0..3 {
        assert!(
            relay.relay_once().await.is_err(),
            "no stream: publishing fails"
        );
    }
    let total = count(&conn, &format!("SELECT count(*) FROM {}", outbox.table()));
    assert_eq!((total, unsent(&conn, &outbox)), (10, 10));
}

/// A second process stages into the SQLite file with an outbox of its own
/// (no notifier shared with the relay): the relay's polling finds the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_staged_by_another_connection_without_a_notification_are_published() {
    let broker = broker().await;
    let file = SqliteFile::new("foreign");
    let relay_outbox = Outbox::new(SOURCE);
    drop(file.owner(&relay_outbox));
    let mut settings = RelaySettings::default();
    settings.poll_interval = Duration::from_millis(100);
    let mut relay = OutboxRelay::sqlite(&relay_outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .with_settings(settings);
    let running = tokio::spawn(async move { relay.run().await });

    // "Another process": a separate Outbox value, a separate connection.
    let other = Outbox::new(SOURCE);
    let mut conn = file.open();
    let tx = conn.transaction().unwrap();
    other.stage(&tx, &account("elsewhere", 7)).unwrap();
    tx.commit().unwrap();
    bounded("the relay polling the row in", async {
        while unsent(&conn, &relay_outbox) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    running.abort();
    assert_eq!(
        broker.stream_state().await,
        BTreeMap::from([("elsewhere".to_owned(), (1, Some(account("elsewhere", 7))))])
    );
}

// ---------------------------------------------------------------------------
// Migration from `upsert_at`: the stream already holds higher sequences
// ---------------------------------------------------------------------------

/// An owner that published with `upsert_at` up to sequence 5 and seeds the
/// sequence table as the module documentation says: its first outbox event
/// of the key is 6 and is published on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_sequence_table_continues_above_the_streams_sequence() {
    let broker = broker().await;
    let file = SqliteFile::new("seeded");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let mut producer = Producer::<Account>::new(SOURCE);
    let before = producer
        .upsert_at(account("m-1", 5), Sequence::new(5))
        .unwrap();
    broker.publisher().publish(&before).await.unwrap();

    conn.execute(
        &format!(
            "INSERT INTO {}_sequence (aggregatetype, aggregateid, sequence) VALUES ('account', 'm-1', 5)",
            outbox.table()
        ),
        [],
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    let staged = outbox.stage(&tx, &account("m-1", 6)).unwrap();
    tx.commit().unwrap();
    assert_eq!(staged.sequence.get(), 6);

    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.published, report.superseded), (1, 0));
    assert_eq!(
        broker.stream_state().await,
        BTreeMap::from([("m-1".to_owned(), (6, Some(account("m-1", 6))))])
    );
}

/// Keys that are fine Rust strings but would not be subject tokens as they
/// are (dots, wildcards, spaces, escapes, non-ASCII, the longest key of
/// multi-byte characters): staged without `with_subjects`, every one is
/// published under its own subject and read back as the same key; none is
/// set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_are_not_subject_tokens_are_published_and_read_back_unchanged() {
    let broker = broker().await;
    let file = SqliteFile::new("keys");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let keys = [
        "a.b".to_owned(),
        ".x".to_owned(),
        "x.".to_owned(),
        "x..y".to_owned(),
        "*".to_owned(),
        ">".to_owned(),
        "a b".to_owned(),
        "%".to_owned(),
        "%2E".to_owned(),
        "a%2Eb".to_owned(),
        "é/ü".to_owned(),
        "é".repeat(ecst::envelope::MAX_KEY_BYTES / 2),
        ".".repeat(ecst::envelope::MAX_KEY_BYTES),
    ];
    let mut truth = Truth::new();
    let tx = conn.transaction().unwrap();
    for (i, key) in keys.iter().enumerate() {
        let state = account(key, i as i64);
        let staged = outbox.stage(&tx, &state).unwrap();
        truth.insert(key.clone(), (staged.sequence.get(), Some(state)));
    }
    tx.commit().unwrap();
    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!(
        (report.published, report.set_aside),
        (keys.len(), 0),
        "{report:?}"
    );
    assert_eq!(broker.stream_state().await, truth);
}

/// A TCP proxy in front of nats-server that can hold every byte sent to the
/// server (a relay paused mid-publish, as by a GC pause or a stopped VM),
/// then let them through.
struct Freezer {
    url: String,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes from the client that arrived while frozen and are held.
    held: std::sync::Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Freezer {
    async fn start(server: &str) -> Self {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = server.trim_start_matches("nats://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let frozen = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicU64::new(0));
        let (f, h) = (Arc::clone(&frozen), Arc::clone(&held));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = upstream.into_split();
                let (f, h) = (Arc::clone(&f), Arc::clone(&h));
                tokio::spawn(async move {
                    let mut buffer = vec![0_u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        if f.load(Ordering::SeqCst) {
                            h.fetch_add(n as u64, Ordering::SeqCst);
                            while f.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                        }
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
            }
        });
        Freezer {
            url,
            frozen,
            held,
            task,
        }
    }

    fn freeze(&self) {
        self.held.store(0, Ordering::SeqCst);
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Waits until the client sent something that is being held.
    async fn until_holding(&self) {
        bounded("the paused relay's publish reaching the proxy", async {
            while self.held.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A relay paused in the middle of a pass (its publish of sequence 2 held
/// on the wire) past its lease: a new leader takes over and publishes the
/// owner's newer sequence 3. When the paused relay's stale publish finally
/// reaches the server, the guard (`Nats-Expected-Last-Subject-Sequence`)
/// refuses it: the stream keeps sequence 3, never the older state on top,
/// and the stale relay counts its rows superseded (or fails the pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_paused_past_its_lease_cannot_put_an_older_state_on_top() {
    let broker = broker().await;
    let file = SqliteFile::new("paused");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let freezer = Freezer::start(&broker.server.url()).await;
    let slow_client = async_nats::connect(&freezer.url).await.unwrap();
    let slow_publisher = Publisher::new(jetstream::new(slow_client), broker.subjects.clone());
    let mut settings = RelaySettings::default();
    settings.lease_ttl = Duration::from_millis(300);
    let mut paused = OutboxRelay::sqlite(&outbox, file.open(), slow_publisher)
        .unwrap()
        .entity::<Account>()
        .with_settings(settings.clone());
    let mut successor = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .with_settings(settings);

    // The paused relay publishes sequence 1 normally: its guard now
    // remembers the subject's last message.
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("p-1", 1)).unwrap();
    tx.commit().unwrap();
    assert_eq!(paused.relay_once().await.unwrap().published, 1);

    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("p-1", 2)).unwrap();
    tx.commit().unwrap();
    freezer.freeze();
    let stale = tokio::spawn(async move {
        let result = paused.relay_once().await;
        (result, paused)
    });
    freezer.until_holding().await;

    // The owner commits sequence 3; the lease runs out; the successor
    // takes over and publishes it.
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("p-1", 3)).unwrap();
    tx.commit().unwrap();
    bounded("the successor taking the lease and publishing", async {
        loop {
            let report = successor.relay_once().await.unwrap();
            if report.leader && report.read > 0 {
                assert_eq!(report.published, 1, "{report:?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        broker.stream_state().await["p-1"],
        (3, Some(account("p-1", 3)))
    );

    freezer.thaw();
    let (result, _paused) = bounded("the stale pass ending", stale).await.unwrap();
    println!("the stale pass: {result:?}");
    if let Ok(report) = &result {
        assert_eq!(report.published, 0, "{report:?}");
    }
    assert_eq!(
        broker.stream_state().await["p-1"],
        (3, Some(account("p-1", 3))),
        "the stale pass: {result:?}"
    );
    assert_eq!(unsent(&conn, &outbox), 0);
}

/// Two relays, each with its own PostgreSQL connection (as two processes
/// would have), running while two owner connections commit changes and
/// deletes of the same few keys: a live consumer sees every key's
/// sequences strictly increasing, and the stream ends equal to the owner's
/// last committed state of every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_relays_and_two_writers_keep_order_and_end_equal() {
    let broker = broker().await;
    let outbox = postgres_outbox("tworelays").await;
    let stream = broker.js.get_stream(STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let observer = {
        let seen = std::sync::Arc::clone(&seen);
        tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            while let Some(Ok(message)) = messages.next().await {
                let envelope = Envelope::<Account>::from_json(&message.payload).unwrap();
                seen.lock()
                    .unwrap()
                    .push((envelope.key.clone(), envelope.sequence.get()));
            }
        })
    };
    let mut settings = RelaySettings::default();
    settings.lease_ttl = Duration::from_millis(200);
    settings.poll_interval = Duration::from_millis(50);
    settings.batch = 50;
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let mut relay = OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher())
                .entity::<Account>()
                .with_settings(settings.clone());
            tokio::spawn(async move { relay.run().await })
        })
        .collect();
    let writers: Vec<_> = (1..=2_u64)
        .map(|writer| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut client = postgres().await;
                let mut truth = Truth::new();
                let mut rng = writer.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut deadlocks = 0;
                for _ in 0..100 {
                    let mut plan = Vec::new();
                    for _ in 0..5 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let key = format!("w-{}", rng % 8);
                        let state = (rng % 7 != 0).then(|| account(&key, (rng % 1000) as i64));
                        plan.push((key, state));
                    }
                    // Staging several keys locks their counter rows in the
                    // order staged: in random orders two owners deadlock
                    // often (40P01, each found after `deadlock_timeout`).
                    // Staged in key order they do not; a deadlock is still
                    // retried, as an owner must for any row lock.
                    plan.sort_by(|a, b| a.0.cmp(&b.0));
                    'retry: loop {
                        let tx = client.transaction().await.unwrap();
                        let mut staged = Vec::new();
                        for (key, state) in &plan {
                            let result = match state {
                                Some(state) => outbox.stage(&tx, state).await,
                                None => outbox.stage_delete::<Account, _>(&tx, key).await,
                            };
                            match result {
                                Ok(done) => staged.push(done.sequence.get()),
                                Err(OutboxError::Database { source, .. })
                                    if source
                                        .downcast_ref::<tokio_postgres::Error>()
                                        .and_then(tokio_postgres::Error::code)
                                        == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
                                {
                                    deadlocks += 1;
                                    continue 'retry;
                                }
                                Err(other) => panic!("staging failed: {other}"),
                            }
                        }
                        tx.commit().await.unwrap();
                        for ((key, state), sequence) in plan.iter().zip(staged) {
                            truth.insert(key.clone(), (sequence, state.clone()));
                        }
                        break;
                    }
                }
                println!("writer {writer}: {deadlocks} deadlock(s) retried");
                truth
            })
        })
        .collect();
    let mut truth = Truth::new();
    for writer in writers {
        for (key, value) in bounded("a writer", writer).await.unwrap() {
            if truth.get(&key).is_none_or(|held| held.0 < value.0) {
                truth.insert(key, value);
            }
        }
    }
    let client = postgres().await;
    bounded("the relays draining the outbox", async {
        loop {
            let left: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE error IS NULL",
                        outbox.table()
                    ),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for relay in relays {
        relay.abort();
    }
    assert_eq!(broker.stream_state().await, truth);
    bounded("the consumer seeing every key's last event", async {
        loop {
            let got: BTreeMap<String, u64> = seen.lock().unwrap().iter().cloned().collect();
            if truth.iter().all(|(k, (s, _))| got.get(k) == Some(s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    observer.abort();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (key, sequence) in seen.lock().unwrap().iter() {
        if let Some(before) = last.insert(key.clone(), *sequence) {
            assert!(*sequence > before, "key {key}: {sequence} after {before}");
        }
    }
    drop_postgres(&outbox).await;
}

// ---------------------------------------------------------------------------
// Found by the red team (issue 8), and what holds now
// ---------------------------------------------------------------------------

/// The next build of the owner's entity: version 2 adds a field.
mod v2 {
    use ecst::StateEvent;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// `Account` at version 2.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "account", version = 2)]
    pub struct Account {
        #[state_event(key)]
        pub id: String,
        pub owner: String,
        pub balance: i64,
        #[state_event(added(since = 2))]
        pub branch: String,
    }
}

/// A reading: a float whose `Serialize` succeeds for every value.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "reading", version = 1)]
pub struct Reading {
    #[state_event(key)]
    pub id: String,
    pub value: f64,
}

fn error_column(conn: &Connection, outbox: &Outbox) -> Vec<String> {
    let mut statement = conn
        .prepare(&format!(
            "SELECT error FROM {} WHERE error IS NOT NULL ORDER BY position",
            outbox.table()
        ))
        .unwrap();
    let rows = statement.query_map([], |row| row.get(0)).unwrap();
    rows.collect::<Result<Vec<String>, _>>().unwrap()
}

/// A rolling upgrade: the owner already runs version 2 of `Account`, the
/// relay (its own process) still version 1. The old relay leaves the row
/// unsent (counted in its report, never set aside) and publishes the other
/// keys; the upgraded relay publishes the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_a_newer_schema_version_waits_for_an_upgraded_relay() {
    let broker = broker().await;
    let file = SqliteFile::new("future");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let upgraded = v2::Account {
        id: "f-1".to_owned(),
        owner: "owner of f-1".to_owned(),
        balance: 1,
        branch: "north".to_owned(),
    };
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &upgraded).unwrap();
    outbox.stage(&tx, &account("f-2", 2)).unwrap();
    tx.commit().unwrap();

    let mut old_relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = old_relay.relay_once().await.unwrap();
    assert_eq!(
        (report.published, report.newer_version, report.set_aside),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(unsent(&conn, &outbox), 1);
    assert!(error_column(&conn, &outbox).is_empty());
    old_relay.release().await.unwrap();
    drop(old_relay);

    let mut new_relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<v2::Account>();
    drain(&mut new_relay).await;
    let stream = broker.read_all::<v2::Account>().await;
    assert_eq!(stream.len(), 2);
    assert_eq!(
        stream.last().and_then(|e| e.state().cloned()),
        Some(upgraded)
    );
    assert_eq!(unsent(&conn, &outbox), 0);
}

/// An event whose CloudEvents JSON is within the outbox's limit by a few
/// bytes, but whose message (with its `Nats-Msg-Id` and
/// `Nats-Expected-Last-Subject-Sequence` headers) would be over the
/// server's 1 MiB: refused at stage time, where the transaction can still
/// roll back, since room for the headers is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_leaves_no_room_for_its_headers_is_refused_at_stage_time() {
    let file = SqliteFile::new("boundary");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let base = Producer::<Account>::new(SOURCE)
        .upsert_at(
            Account {
                id: "big".to_owned(),
                owner: String::new(),
                balance: 1,
            },
            Sequence::new(1),
        )
        .unwrap()
        .to_json()
        .unwrap()
        .len();
    let limit = ecst::outbox::DEFAULT_MAX_EVENT_BYTES;
    let big = Account {
        id: "big".to_owned(),
        owner: "x".repeat(limit - base - 8),
        balance: 1,
    };
    let tx = conn.transaction().unwrap();
    match outbox.stage(&tx, &big) {
        Err(OutboxError::TooLarge { size, limit: l, .. }) => {
            assert_eq!(l, limit);
            assert!(size > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Room for the headers is all it takes: a little smaller, it stages.
    let fits = Account {
        id: "big".to_owned(),
        owner: "x".repeat(limit - base - ecst::outbox::HEADER_ROOM - "account:big:1".len()),
        balance: 1,
    };
    outbox.stage(&tx, &fits).unwrap();
}

/// An outbox allowing larger events than the server's `max_payload` (a
/// misconfiguration): the message the server cannot take is set aside with
/// the reason, the pass succeeds, and the other keys are published, instead
/// of every pass failing on it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_servers_max_payload_is_set_aside_and_blocks_nothing() {
    let broker = broker().await;
    let file = SqliteFile::new("max_payload");
    let outbox = Outbox::new(SOURCE).with_max_event_bytes(4 << 20);
    let mut conn = file.owner(&outbox);
    let mut big = account("big", 1);
    big.owner = "x".repeat(2 << 20);
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("small", 1)).unwrap();
    outbox.stage(&tx, &big).unwrap();
    tx.commit().unwrap();
    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.published, report.set_aside), (1, 1), "{report:?}");
    let parked = error_column(&conn, &outbox);
    assert!(parked[0].contains("max_payload"), "{parked:?}");
    assert_eq!(unsent(&conn, &outbox), 0);
    assert_eq!(broker.stream_state().await.len(), 1);
}

/// An owner moving to the outbox from `upsert_at` that did not seed the
/// sequence table: the stream holds the key at sequence 5, the outbox
/// stages the new state at 1. The guard refuses it; the relay does not
/// count it superseded (a committed state would be lost) but sets it aside
/// with a reason naming the stream's sequence and the fix, and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ahead_of_an_unseeded_sequence_table_sets_the_row_aside_with_the_fix() {
    let broker = broker().await;
    let file = SqliteFile::new("unseeded");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let before = Producer::<Account>::new(SOURCE)
        .upsert_at(account("m-1", 5), Sequence::new(5))
        .unwrap();
    broker.publisher().publish(&before).await.unwrap();

    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("m-1", 6)).unwrap();
    tx.commit().unwrap();
    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!(
        (report.stream_ahead, report.superseded, report.published),
        (1, 0, 0),
        "{report:?}"
    );
    let parked = error_column(&conn, &outbox);
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].contains("sequence 5") && parked[0].contains("sequence table"),
        "{parked:?}"
    );
    // The fix the reason names: raise the key's sequence, stage again.
    conn.execute(
        &format!(
            "UPDATE {}_sequence SET sequence = 5 WHERE aggregateid = 'm-1'",
            outbox.table()
        ),
        [],
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("m-1", 6)).unwrap();
    tx.commit().unwrap();
    drain(&mut relay).await;
    assert_eq!(
        broker.stream_state().await["m-1"],
        (6, Some(account("m-1", 6)))
    );
}

/// A float field holding NaN: `serde_json` writes it as `null`, which does
/// not decode as an `f64`. Refused at stage time (the relay could never
/// publish it); the reading's committed state is then published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_does_not_decode_back_is_refused_at_stage_time() {
    let broker = broker().await;
    let file = SqliteFile::new("nan");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let tx = conn.transaction().unwrap();
    let good = Reading {
        id: "r-1".to_owned(),
        value: 1.0,
    };
    outbox.stage(&tx, &good).unwrap();
    tx.commit().unwrap();
    let tx = conn.transaction().unwrap();
    let staged = outbox.stage(
        &tx,
        &Reading {
            id: "r-1".to_owned(),
            value: f64::NAN,
        },
    );
    assert!(
        matches!(
            staged,
            Err(OutboxError::DoesNotDecode {
                entity: "reading",
                ..
            })
        ),
        "{staged:?}"
    );
    tx.rollback().unwrap();

    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Reading>();
    drain(&mut relay).await;
    let stream = broker.read_all::<Reading>().await;
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].state(), Some(&good));
    assert!(error_column(&conn, &outbox).is_empty());
}

/// A key whose newest row can never be published (written by hand here:
/// not an event): its older rows in the batch are set aside with it, never
/// published as if they were the key's current state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_keys_newest_row_is_set_aside_its_older_rows_are_not_published() {
    let broker = broker().await;
    let file = SqliteFile::new("older");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("o-1", 1)).unwrap();
    outbox.stage(&tx, &account("o-2", 1)).unwrap();
    tx.commit().unwrap();
    conn.execute(
        &format!(
            "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload, sequence,
                             schemaversion, headers, created_at)
             VALUES ('account:o-1:2', 'account', 'o-1', 'upsert', '{{\"not\":\"an event\"}}',
                     2, 1, '{{}}', 0)",
            outbox.table()
        ),
        [],
    )
    .unwrap();
    let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    drain(&mut relay).await;
    assert_eq!((report.published, report.set_aside), (1, 2), "{report:?}");
    let parked = error_column(&conn, &outbox);
    assert!(
        parked[0].contains("a newer event of this key (sequence 2) was set aside"),
        "{parked:?}"
    );
    let state = broker.stream_state().await;
    assert!(!state.contains_key("o-1"), "{state:?}");
    assert!(state.contains_key("o-2"), "{state:?}");
}

/// Two relays on one outbox table, one per entity type: the lease lets one
/// relay of a table work at a time, so the rows of the type the working
/// relay does not register wait. They are not lost nor set aside: counted
/// in its report (`unregistered`), and published by a relay that registers
/// every type of the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_counts_the_rows_of_types_it_does_not_register_and_leaves_them_unsent() {
    let broker = broker().await;
    let file = SqliteFile::new("types");
    let outbox = Outbox::new(SOURCE);
    let mut conn = file.owner(&outbox);
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("a-1", 1)).unwrap();
    outbox
        .stage(
            &tx,
            &Reading {
                id: "r-1".to_owned(),
                value: 2.5,
            },
        )
        .unwrap();
    tx.commit().unwrap();

    let mut accounts = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = accounts.relay_once().await.unwrap();
    assert_eq!(
        (report.published, report.unregistered, report.set_aside),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(unsent(&conn, &outbox), 1);
    accounts.release().await.unwrap();

    let mut both = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .entity::<Reading>();
    let report = both.relay_once().await.unwrap();
    assert_eq!(
        (report.published, report.unregistered),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(unsent(&conn, &outbox), 0);
}

/// A text field holding U+0000 (valid in a Rust `String`, accepted by the
/// SQLite outbox): PostgreSQL's `jsonb` payload column cannot store it.
/// Refused before the insert with a typed error naming the character, so
/// the owner's transaction is still usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_refused_in_postgres_with_the_cause_and_the_transaction_lives() {
    let outbox = postgres_outbox("nul").await;
    let mut client = postgres().await;
    let mut state = account("z-1", 1);
    state.owner = "before\u{0}after".to_owned();
    let tx = client.transaction().await.unwrap();
    let staged = outbox.stage(&tx, &state).await;
    let shown = staged.as_ref().map_err(ToString::to_string).err();
    let refused = matches!(staged, Err(OutboxError::Unstorable { .. }));
    let after = outbox.stage(&tx, &account("z-2", 1)).await;
    let committed = tx.commit().await;
    drop_postgres(&outbox).await;
    assert!(refused, "{shown:?}");
    assert!(shown.is_some_and(|s| s.contains("U+0000")));
    assert!(after.is_ok(), "{after:?}");
    assert!(committed.is_ok(), "{committed:?}");
}

/// A table named like an SQL keyword (`order`, `select`): quoted in SQL,
/// it is created, staged into and relayed in both databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_named_like_an_sql_keyword_works_in_both_databases() {
    let broker = broker().await;
    let file = SqliteFile::new("keyword");
    for name in ["order", "select"] {
        let outbox = Outbox::new(SOURCE).with_table(name).unwrap();
        let mut conn = file.open();
        outbox.create_sqlite(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        outbox.stage(&tx, &account(name, 1)).unwrap();
        tx.commit().unwrap();
        let mut relay = OutboxRelay::sqlite(&outbox, file.open(), broker.publisher())
            .unwrap()
            .entity::<Account>();
        drain(&mut relay).await;

        let mut client = postgres().await;
        drop_postgres(&outbox).await;
        outbox.create_postgres(&mut client).await.unwrap();
        let tx = client.transaction().await.unwrap();
        outbox.stage(&tx, &account(name, 2)).await.unwrap();
        tx.commit().await.unwrap();
        let mut relay =
            OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher()).entity::<Account>();
        drain(&mut relay).await;
        drop_postgres(&outbox).await;
    }
    let state = broker.stream_state().await;
    assert_eq!(state["order"].0, 1, "{state:?}");
    assert_eq!(state["select"].0, 1, "{state:?}");
}

/// A PostgreSQL error shows the server's message and SQLSTATE (the driver
/// alone shows "db error"), and stays a `tokio_postgres::Error` for code
/// that retries on its SQLSTATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_error_shows_the_servers_message_and_sqlstate() {
    // Never created.
    let outbox = Outbox::new(SOURCE).with_table(&table("missing")).unwrap();
    let mut client = postgres().await;
    let tx = client.transaction().await.unwrap();
    let error = outbox.stage(&tx, &account("e-1", 1)).await.unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.contains("does not exist") && shown.contains("SQLSTATE 42P01"),
        "{shown}"
    );
    match error {
        OutboxError::Database { source, .. } => assert_eq!(
            source
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::code),
            Some(&SqlState::UNDEFINED_TABLE)
        ),
        other => panic!("{other:?}"),
    }
}

/// The same in PostgreSQL: a relay leaves the rows of a newer schema
/// version and of types it does not register unsent, counts them, and
/// publishes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_of_a_newer_version_or_an_unregistered_type_wait_and_are_counted() {
    let broker = broker().await;
    let outbox = postgres_outbox("skipped").await;
    let mut client = postgres().await;
    let tx = client.transaction().await.unwrap();
    outbox.stage(&tx, &account("p-1", 1)).await.unwrap();
    let upgraded = v2::Account {
        id: "p-2".to_owned(),
        owner: "owner of p-2".to_owned(),
        balance: 2,
        branch: "south".to_owned(),
    };
    outbox.stage(&tx, &upgraded).await.unwrap();
    let reading = Reading {
        id: "r-1".to_owned(),
        value: 0.5,
    };
    outbox.stage(&tx, &reading).await.unwrap();
    tx.commit().await.unwrap();
    let mut old = OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher()).entity::<Account>();
    let report = old.relay_once().await.unwrap();
    old.release().await.unwrap();
    let mut upgraded_relay = OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher())
        .entity::<v2::Account>()
        .entity::<Reading>();
    let after = upgraded_relay.relay_once().await.unwrap();
    drop_postgres(&outbox).await;
    assert_eq!(
        (
            report.published,
            report.newer_version,
            report.unregistered,
            report.set_aside
        ),
        (1, 1, 1, 0),
        "{report:?}"
    );
    assert_eq!(
        (after.published, after.newer_version, after.unregistered),
        (2, 0, 0),
        "{after:?}"
    );
}
