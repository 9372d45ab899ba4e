//! Red team of the tombstone purge (issue 9) on SQLite: a key deleted and
//! re-inserted in one batch is live and never purged, whatever the cutoff
//! (far future, before the Unix epoch); the live state survives a reload.

#![cfg(feature = "sqlite")]

#[path = "support/stores.rs"]
mod store_common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, Message};
use ecst::{Envelope, Producer};
use store_common::{account1, consumer, v1};

/// A SQLite file removed (with its WAL files) on drop.
struct Db(PathBuf);

impl Db {
    fn new(test: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "redteam-tombstones-{}-{test}.db",
            std::process::id()
        ));
        remove(&path);
        Db(path)
    }

    fn open(&self, consumer: &str) -> SqliteStore {
        SqliteStore::open(&self.0, consumer).expect("open sqlite")
    }
}

fn remove(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

fn encode(events: Vec<(u64, Envelope<v1::Account>)>) -> Vec<(u64, String, Vec<u8>)> {
    events
        .into_iter()
        .map(|(sequence, envelope)| {
            let subject = format!("bank.account.{}", envelope.key);
            (sequence, subject, envelope.to_json().expect("encode"))
        })
        .collect()
}

fn messages(batch: &[(u64, String, Vec<u8>)]) -> Vec<Message<'_>> {
    batch
        .iter()
        .map(|(sequence, subject, payload)| Message::new(*sequence, subject, payload))
        .collect()
}

/// Deleted then re-inserted in one batch: live, no deletion time, and a
/// purge with any cutoff (far future, before the epoch) keeps it, in memory
/// and after a reload; only the real tombstone goes.
#[tokio::test]
async fn a_key_deleted_and_reinserted_in_one_batch_is_never_purged() {
    let db = Db::new("reinserted");
    let consumer = consumer("redteam-reinserted");
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let batch = encode(vec![
        (1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        (2, producer.delete("a-1".to_owned()).unwrap()),
        (3, producer.upsert(account1("a-1", "Ada", 11)).unwrap()),
        (4, producer.upsert(account1("a-2", "Bea", 20)).unwrap()),
        (5, producer.delete("a-2".to_owned()).unwrap()),
    ]);
    let mut durable = DurableReplica::<v1::Account, _>::open(db.open(&consumer))
        .await
        .expect("open");
    durable.apply_batch(&messages(&batch)).await.expect("batch");
    assert_eq!(durable.replica().deleted_at("a-1"), None, "live again");
    assert_eq!(durable.replica().tombstones(), 1);

    let before_epoch = UNIX_EPOCH
        .checked_sub(Duration::from_secs(1))
        .expect("a time before the epoch");
    let purged = durable
        .purge_tombstones_before(before_epoch)
        .await
        .expect("a cutoff before the epoch purges nothing");
    assert_eq!(purged, 0);

    let far_future = SystemTime::now() + Duration::from_secs(1_000 * 365 * 24 * 3600);
    let purged = durable
        .purge_tombstones_before(far_future)
        .await
        .expect("purge with a far-future cutoff");
    assert_eq!(purged, 1, "only the tombstone of a-2");
    assert_eq!(
        durable.replica().get("a-1"),
        Some(&account1("a-1", "Ada", 11))
    );
    assert_eq!(durable.replica().entry("a-2"), None);
    drop(durable);

    let durable = DurableReplica::<v1::Account, _>::open(db.open(&consumer))
        .await
        .expect("reopen");
    assert_eq!(
        durable.replica().get("a-1"),
        Some(&account1("a-1", "Ada", 11)),
        "the live key survives the purge and the reload"
    );
    assert_eq!(durable.replica().entry("a-2"), None);
    assert_eq!(durable.replica().tombstones(), 0);
    assert_eq!(durable.replica().len(), 1);
}

/// One reported change: key, the producer's sequence of the key, before, after.
type Seen = (String, u64, Option<v1::Account>, Option<v1::Account>);

/// A key inserted, deleted and re-inserted in one batch: the durable feed
/// reports each step in order with the state before and after it; a
/// purge of the batch's tombstone reports nothing (no live state changed).
#[tokio::test]
async fn the_feed_reports_each_step_of_a_key_in_one_batch_and_nothing_for_a_purge() {
    use std::sync::{Arc, Mutex};

    let db = Db::new("feed");
    let consumer = consumer("redteam-feed");
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let batch = encode(vec![
        (1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        (2, producer.delete("a-1".to_owned()).unwrap()),
        (3, producer.upsert(account1("a-1", "Ada", 11)).unwrap()),
        (4, producer.upsert(account1("a-2", "Bea", 20)).unwrap()),
        (5, producer.delete("a-2".to_owned()).unwrap()),
    ]);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let mut durable = DurableReplica::<v1::Account, _>::open(db.open(&consumer))
        .await
        .expect("open");
    durable.on_change(move |change| {
        sink.lock().unwrap().push((
            change.key.clone(),
            change.sequence.get(),
            change.before.cloned(),
            change.after.cloned(),
        ));
    });
    durable.apply_batch(&messages(&batch)).await.expect("batch");
    let ada10 = account1("a-1", "Ada", 10);
    let ada11 = account1("a-1", "Ada", 11);
    let bea = account1("a-2", "Bea", 20);
    let expected: Vec<Seen> = vec![
        ("a-1".into(), 1, None, Some(ada10.clone())),
        ("a-1".into(), 2, Some(ada10), None),
        ("a-1".into(), 3, None, Some(ada11)),
        ("a-2".into(), 1, None, Some(bea.clone())),
        ("a-2".into(), 2, Some(bea), None),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);

    let far_future = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(
        durable
            .purge_tombstones_before(far_future)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        *seen.lock().unwrap(),
        expected,
        "a purge changes no live state and reports nothing"
    );
}
