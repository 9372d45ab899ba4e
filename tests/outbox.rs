//! The transactional outbox against real SQLite, PostgreSQL (127.0.0.1:5432,
//! database `test`, one table per test) and a real `nats-server`:
//! atomicity (rollback publishes nothing, commit publishes once), bad input
//! refused at stage time, the broker down and back, two relays at once,
//! relays cancelled at random points, and concurrent writers of one key.
//!
//! Every test that publishes ends by comparing the stream (the last event of
//! every subject) with the owner's truth. Waits are bounded loops on a
//! condition; no sleep is an assertion.

#![cfg(all(feature = "nats", feature = "sqlite", feature = "postgres"))]

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/outbox.rs"]
mod outbox_support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ecst::outbox::rusqlite::{self, Connection};
use ecst::outbox::tokio_postgres;
use ecst::outbox::{Outbox, OutboxError, OutboxRelay, RelayError, RelaySettings};
use outbox_support::{
    account, bounded, drain, drop_postgres, open_sqlite, postgres, unique_table, Account, Broker,
    SqliteFile, POSTGRES,
};

const STREAM: &str = "OUTBOX";
const PREFIX: &str = "bank";

/// A unique table name per test and process.
fn table(test: &str) -> String {
    unique_table("outbox", test)
}

async fn broker() -> Broker {
    outbox_support::broker(STREAM, PREFIX).await
}

/// Per key, the sequences seen must strictly increase.
fn assert_in_order(seen: &[(String, u64)]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (key, sequence) in seen {
        if let Some(before) = last.insert(key, *sequence) {
            assert!(
                *sequence > before,
                "key {key}: sequence {sequence} seen after {before}"
            );
        }
    }
}

/// The owner's own table and its outbox, in one SQLite file.
fn sqlite_owner(path: &std::path::Path, outbox: &Outbox) -> Connection {
    let conn = open_sqlite(path);
    outbox.create_sqlite(&conn).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, owner TEXT, balance INTEGER)",
    )
    .unwrap();
    conn
}

fn save_sqlite(tx: &rusqlite::Transaction<'_>, account: &Account) {
    tx.execute(
        "INSERT INTO accounts (id, owner, balance) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, balance = excluded.balance",
        rusqlite::params![account.id, account.owner, account.balance],
    )
    .unwrap();
}

fn unsent_sqlite(conn: &Connection, outbox: &Outbox) -> i64 {
    conn.query_row(
        &format!(
            "SELECT count(*) FROM {} WHERE sent_at IS NULL",
            outbox.table()
        ),
        [],
        |row| row.get(0),
    )
    .unwrap()
}

async fn postgres_owner(outbox: &Outbox) -> tokio_postgres::Client {
    let mut client = postgres().await;
    outbox.create_postgres(&mut client).await.unwrap();
    client
}

// ---------------------------------------------------------------------------
// Atomicity
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rollback_publishes_nothing_and_a_commit_publishes_once() {
    let broker = broker().await;
    let file = SqliteFile::new("atomic");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank");
    let mut conn = sqlite_owner(&path, &outbox);

    let tx = conn.transaction().unwrap();
    save_sqlite(&tx, &account("a-1", 10));
    let staged = outbox.stage(&tx, &account("a-1", 10)).unwrap();
    assert_eq!(staged.sequence.get(), 1);
    tx.rollback().unwrap();

    let tx = conn.transaction().unwrap();
    save_sqlite(&tx, &account("a-1", 20));
    let staged = outbox.stage(&tx, &account("a-1", 20)).unwrap();
    // The rolled-back transaction took no sequence.
    assert_eq!(staged.sequence.get(), 1);
    assert_eq!(staged.id, "account:a-1:1");
    tx.commit().unwrap();

    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.read, report.published), (1, 1));
    // Nothing left: a second pass publishes nothing again.
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.read, report.published), (0, 0));
    assert_eq!(unsent_sqlite(&conn, &outbox), 0);

    let all = broker.read_all().await;
    assert_eq!(all.len(), 1, "exactly one message: {all:?}");
    assert_eq!(all[0].id, "account:a-1:1");
    assert_eq!(all[0].state(), Some(&account("a-1", 20)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rollback_publishes_nothing_and_a_commit_publishes_once() {
    let broker = broker().await;
    let outbox = Outbox::new("urn:test:bank")
        .with_table(&table("atomic"))
        .unwrap();
    let mut client = postgres_owner(&outbox).await;

    let tx = client.transaction().await.unwrap();
    outbox.stage(&tx, &account("a-1", 10)).await.unwrap();
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let staged = outbox.stage(&tx, &account("a-1", 20)).await.unwrap();
    assert_eq!(staged.sequence.get(), 1);
    let deleted = outbox
        .stage_delete::<Account, _>(&tx, &"a-2".to_owned())
        .await
        .unwrap();
    assert_eq!(deleted.id, "account:a-2:1");
    tx.commit().await.unwrap();

    let mut relay =
        OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher()).entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.read, report.published), (2, 2));
    drain(&mut relay).await;

    let state = broker.stream_state().await;
    assert_eq!(state.len(), 2);
    assert_eq!(state["a-1"], (1, Some(account("a-1", 20))));
    assert_eq!(state["a-2"], (1, None));
    drop_postgres(&outbox).await;
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_at_stage_time_and_never_reaches_the_relay() {
    let broker = broker().await;
    let file = SqliteFile::new("bad");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank")
        .with_max_event_bytes(2_000)
        .with_subjects(broker.subjects.clone());
    let mut conn = sqlite_owner(&path, &outbox);

    let tx = conn.transaction().unwrap();
    for key in ["", "line\nbreak", &"k".repeat(1025)] {
        match outbox.stage(&tx, &account(key, 1)) {
            Err(OutboxError::InvalidKey { entity, .. }) => assert_eq!(entity, "account"),
            other => panic!("key {key:?}: expected InvalidKey, got {other:?}"),
        }
    }
    let mut big = account("big", 1);
    big.owner = "x".repeat(3_000);
    match outbox.stage(&tx, &big) {
        Err(OutboxError::TooLarge { size, limit, .. }) => {
            assert!(size > limit);
            assert_eq!(limit, 2_000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The transaction is still usable: a good event after the bad ones.
    outbox.stage(&tx, &account("good", 1)).unwrap();
    tx.commit().unwrap();

    let rows: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM {}", outbox.table()),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "only the good event is staged");

    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.published, report.set_aside), (1, 0));
    assert_eq!(broker.stream_state().await.len(), 1);

    // A bad table name is refused before any SQL is written.
    assert!(matches!(
        Outbox::new("urn:test:bank").with_table("x; DROP TABLE accounts"),
        Err(OutboxError::InvalidTable { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_decode_is_set_aside_and_blocks_nothing() {
    let broker = broker().await;
    let file = SqliteFile::new("poison");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank");
    let mut conn = sqlite_owner(&path, &outbox);
    // A row written by hand, by someone else: not an ecst event.
    conn.execute(
        &format!(
            "INSERT INTO {} (id, aggregatetype, aggregateid, type, payload, sequence,
                             schemaversion, headers, created_at)
             VALUES ('x', 'account', 'p-1', 'upsert', '{{\"not\":\"an event\"}}', 1, 1, '{{}}', 0)",
            outbox.table()
        ),
        [],
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    outbox.stage(&tx, &account("p-2", 5)).unwrap();
    tx.commit().unwrap();

    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>();
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.published, report.set_aside), (1, 1));
    let reason: String = conn
        .query_row(
            &format!("SELECT error FROM {} WHERE id = 'x'", outbox.table()),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("does not decode"), "{reason}");
    // Set aside: not read again.
    assert_eq!(relay.relay_once().await.unwrap().read, 0);
    assert_eq!(broker.stream_state().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_rows_are_kept_for_the_retention_period_then_deleted_in_bounded_batches() {
    let broker = broker().await;
    let file = SqliteFile::new("retention");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank");
    let mut conn = sqlite_owner(&path, &outbox);
    let tx = conn.transaction().unwrap();
    for k in 0..12 {
        outbox.stage(&tx, &account(&format!("r-{k}"), k)).unwrap();
    }
    tx.commit().unwrap();
    let rows = |conn: &Connection| -> i64 {
        conn.query_row(
            &format!("SELECT count(*) FROM {}", outbox.table()),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };

    // Kept for an hour: marked sent, not read again, not deleted.
    let mut settings = RelaySettings::default();
    settings.keep_sent = Some(Duration::from_secs(3600));
    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .with_settings(settings);
    let report = relay.relay_once().await.unwrap();
    assert_eq!((report.published, report.purged), (12, 0));
    assert_eq!(relay.relay_once().await.unwrap().read, 0);
    assert_eq!((unsent_sqlite(&conn, &outbox), rows(&conn)), (0, 12));

    // Kept for no time, purged at most 5 a pass.
    relay.release().await.unwrap();
    let mut settings = RelaySettings::default();
    settings.keep_sent = Some(Duration::ZERO);
    settings.purge_batch = 5;
    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>()
        .with_settings(settings);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut purged = Vec::new();
    while rows(&conn) > 0 {
        purged.push(relay.relay_once().await.unwrap().purged);
        assert!(purged.len() <= 3, "purged {purged:?}");
    }
    assert_eq!(purged, vec![5, 5, 2]);
    assert_eq!(broker.stream_state().await.len(), 12);
}

// ---------------------------------------------------------------------------
// The broker down
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_kept_while_the_broker_is_down_and_drained_when_it_returns() {
    let mut broker = broker().await;
    let file = SqliteFile::new("down");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank");
    let mut conn = sqlite_owner(&path, &outbox);
    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>();

    let mut truth = BTreeMap::new();
    let mut stage_round = |conn: &mut Connection, round: i64| {
        let tx = conn.transaction().unwrap();
        for k in 0..20 {
            let state = account(&format!("d-{k}"), round * 100 + k);
            let staged = outbox.stage(&tx, &state).unwrap();
            truth.insert(state.id.clone(), (staged.sequence.get(), Some(state)));
        }
        tx.commit().unwrap();
    };
    stage_round(&mut conn, 1);
    drain(&mut relay).await;

    broker.server.stop();
    stage_round(&mut conn, 2);
    stage_round(&mut conn, 3);
    let failed = relay.relay_once().await;
    assert!(
        matches!(failed, Err(RelayError::Publish { .. })),
        "expected a publish failure, got {failed:?}"
    );
    assert_eq!(unsent_sqlite(&conn, &outbox), 40, "every row is kept");

    broker.server.restart();
    // The relay's own loop retries with backoff until the broker is back.
    let running = tokio::spawn(async move {
        relay.run().await;
    });
    bounded("the outbox draining after the broker returned", async {
        while unsent_sqlite(&conn, &outbox) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    running.abort();
    assert_eq!(broker.stream_state().await, truth);
}

// ---------------------------------------------------------------------------
// Two relays, concurrent writers, cancellation
// ---------------------------------------------------------------------------

/// Two writer tasks staging `changes` edits each over `keys` keys into
/// SQLite; returns the truth.
fn write_sqlite(
    path: &std::path::Path,
    outbox: &Outbox,
    writer: u64,
    changes: u64,
    keys: u64,
) -> BTreeMap<String, (u64, Option<Account>)> {
    let mut conn = open_sqlite(path);
    let mut seen = BTreeMap::new();
    let mut rng = writer.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut done = 0;
    while done < changes {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        for _ in 0..10 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let id = format!("k-{}", rng % keys);
            let state = account(&id, (rng % 1000) as i64);
            let delete = rng.is_multiple_of(10);
            let staged = if delete {
                outbox.stage_delete::<Account, _>(&tx, &id).unwrap()
            } else {
                outbox.stage(&tx, &state).unwrap()
            };
            seen.insert(id, (staged.sequence.get(), (!delete).then_some(state)));
            done += 1;
        }
        tx.commit().unwrap();
    }
    seen
}

/// The owner's truth from both writers: per key, the higher sequence wins.
fn merge(
    a: BTreeMap<String, (u64, Option<Account>)>,
    b: BTreeMap<String, (u64, Option<Account>)>,
) -> BTreeMap<String, (u64, Option<Account>)> {
    let mut out = a;
    for (key, value) in b {
        match out.get(&key) {
            Some(held) if held.0 > value.0 => {}
            _ => {
                out.insert(key, value);
            }
        }
    }
    out
}

fn quick_settings() -> RelaySettings {
    let mut settings = RelaySettings::default();
    settings.poll_interval = Duration::from_millis(100);
    settings.lease_ttl = Duration::from_millis(200);
    settings.batch = 100;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_keep_per_key_order() {
    let broker = broker().await;
    let file = SqliteFile::new("two");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank");
    drop(sqlite_owner(&path, &outbox));
    let (seen, observer) = broker.observe().await;

    let mut relays = Vec::new();
    for _ in 0..2 {
        let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
            .unwrap()
            .entity::<Account>()
            .with_settings(quick_settings());
        relays.push(tokio::spawn(async move { relay.run().await }));
    }
    let writers: Vec<_> = (1..=2)
        .map(|writer| {
            let (path, outbox) = (path.clone(), outbox.clone());
            tokio::task::spawn_blocking(move || write_sqlite(&path, &outbox, writer, 2_000, 50))
        })
        .collect();
    let mut truth = BTreeMap::new();
    for writer in writers {
        truth = merge(truth, writer.await.unwrap());
    }
    let conn = open_sqlite(&path);
    bounded("both relays draining the outbox", async {
        while unsent_sqlite(&conn, &outbox) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for relay in relays {
        relay.abort();
    }
    assert_eq!(broker.stream_state().await, truth);
    bounded("the observer seeing every key's last event", async {
        loop {
            let got: BTreeMap<String, u64> = seen.lock().unwrap().iter().cloned().collect();
            if truth.iter().all(|(k, (s, _))| got.get(k) == Some(s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    observer.abort();
    assert_in_order(&seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cancelled_at_random_points_loses_nothing() {
    let broker = broker().await;
    let file = SqliteFile::new("cancel");
    let path = file.path();
    let outbox = Outbox::new("urn:test:bank");
    drop(sqlite_owner(&path, &outbox));
    let (seen, observer) = broker.observe().await;
    let seed: u64 = std::env::var("ECST_OUTBOX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("seed {seed} (ECST_OUTBOX_SEED)");
    let writer = {
        let (path, outbox) = (path.clone(), outbox.clone());
        tokio::task::spawn_blocking(move || write_sqlite(&path, &outbox, seed, 3_000, 200))
    };
    let mut rng = seed | 1;
    let mut cancelled = 0;
    while !writer.is_finished() || cancelled < 20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // A fresh relay each time (a restart); its lease is released by
        // nobody, so the next one takes the same holder's place only after
        // the lease expires: use one relay per round, with a short lease.
        let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
            .unwrap()
            .entity::<Account>()
            .with_settings(quick_settings());
        let budget = Duration::from_micros(rng % 20_000);
        if tokio::time::timeout(budget, relay.run()).await.is_err() {
            cancelled += 1;
        }
        let _ = relay.release().await;
    }
    let truth = writer.await.unwrap();
    let mut relay = OutboxRelay::sqlite(&outbox, open_sqlite(&path), broker.publisher())
        .unwrap()
        .entity::<Account>();
    drain(&mut relay).await;
    assert_eq!(broker.stream_state().await, truth);
    bounded("the observer seeing every key's last event", async {
        loop {
            let got: BTreeMap<String, u64> = seen.lock().unwrap().iter().cloned().collect();
            if truth.iter().all(|(k, (s, _))| got.get(k) == Some(s)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    observer.abort();
    assert_in_order(&seen.lock().unwrap());
    assert!(cancelled >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writers_of_one_key_get_distinct_increasing_sequences() {
    let broker = broker().await;
    let outbox = Outbox::new("urn:test:bank")
        .with_table(&table("race"))
        .unwrap();
    drop(postgres_owner(&outbox).await);
    let mut relay = OutboxRelay::postgres(&outbox, POSTGRES, broker.publisher())
        .entity::<Account>()
        .with_settings(quick_settings());
    let (seen, observer) = broker.observe().await;
    let running = tokio::spawn(async move { relay.run().await });

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut client = postgres().await;
                let mut sequences = Vec::new();
                for i in 0..50 {
                    let tx = client.transaction().await.unwrap();
                    let staged = outbox
                        .stage(&tx, &account("hot", w * 1000 + i))
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    sequences.push(staged.sequence.get());
                }
                sequences
            })
        })
        .collect();
    let mut all = Vec::new();
    for writer in writers {
        let sequences = writer.await.unwrap();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]));
        all.extend(sequences);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=200).collect::<Vec<u64>>(),
        "one sequence each, no gaps"
    );

    bounded("the relay publishing the hot key's last state", async {
        loop {
            if seen.lock().unwrap().iter().any(|(_, s)| *s == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    running.abort();
    observer.abort();
    assert_in_order(&seen.lock().unwrap());
    assert_eq!(broker.stream_state().await["hot"].0, 200);
    drop_postgres(&outbox).await;
}

// ---------------------------------------------------------------------------
// The `subject` column (what a Debezium pipeline into NATS routes by)
// ---------------------------------------------------------------------------

/// An outbox given its subjects writes each row's NATS subject, exactly the
/// one `Subjects::event` names (an awkward key encoded); one without writes
/// `NULL`. A table made by a version without the column gets it when the
/// tables are created again. SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_column_holds_what_the_relay_publishes_on() {
    let subjects = ecst::nats::Subjects::new(PREFIX).unwrap();
    let awkward = "a 1.*>";
    let expected = subjects.event("account", awkward).unwrap();

    // SQLite.
    let file = SqliteFile::new("subject");
    let with = Outbox::new("urn:test:bank").with_subjects(subjects.clone());
    let without = Outbox::new("urn:test:bank")
        .with_table("outbox_nosubject")
        .unwrap();
    let mut conn = file.owner(&with);
    // As a version without the column left it.
    conn.execute_batch(&format!("ALTER TABLE {} DROP COLUMN subject", with.table()))
        .unwrap();
    with.create_sqlite(&conn).unwrap();
    without.create_sqlite(&conn).unwrap();
    let tx = conn.transaction().unwrap();
    with.stage(&tx, &account(awkward, 1)).unwrap();
    without.stage(&tx, &account("a-2", 2)).unwrap();
    tx.commit().unwrap();
    let subject_of = |table: &str| -> Option<String> {
        conn.query_row(&format!("SELECT subject FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    assert_eq!(subject_of(with.table()), Some(expected.clone()));
    assert_eq!(subject_of(without.table()), None);

    // PostgreSQL.
    let table = table("subject");
    let with = Outbox::new("urn:test:bank")
        .with_table(&table)
        .unwrap()
        .with_subjects(subjects);
    let mut client = postgres_owner(&with).await;
    client
        .batch_execute(&format!("ALTER TABLE \"{table}\" DROP COLUMN subject"))
        .await
        .unwrap();
    with.create_postgres(&mut client).await.unwrap();
    let tx = client.transaction().await.unwrap();
    with.stage(&tx, &account(awkward, 1)).await.unwrap();
    tx.commit().await.unwrap();
    let row = client
        .query_one(&format!("SELECT subject FROM \"{table}\""), &[])
        .await
        .unwrap();
    let stored: Option<String> = row.get(0);
    assert_eq!(stored, Some(expected));
    drop_postgres(&with).await;
}
