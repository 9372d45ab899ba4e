//! A durable replica without NATS and without an async runtime: plain
//! `#[test]` functions drive `BlockingReplica` over SQLite and the memory
//! store, with messages from a "transport" that gives only a position and
//! bytes.

#![cfg(feature = "sqlite")]

#[path = "support/stores.rs"]
mod store_common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ecst::consume::ParkKind;
use ecst::store::blocking::BlockingReplica;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{Checkpoint, MemoryStore, Message};
use ecst::{Outcome, Producer, StateChange};
use store_common::{account1, v1};

struct TempDb(PathBuf);

impl TempDb {
    fn new(test: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("durable_blocking-{}-{test}.db", std::process::id()));
        let db = TempDb(path);
        db.remove();
        db
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A log of (position, subject, bytes), as any transport can give it.
fn log() -> Vec<(u64, String, Vec<u8>)> {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    let mut out = Vec::new();
    for (position, envelope) in [
        (1, producer.upsert(account1("a-1", "Ada", 10)).unwrap()),
        (2, producer.upsert(account1("a-2", "Bea", 20)).unwrap()),
        (3, producer.delete("a-1".into()).unwrap()),
    ] {
        let subject = format!("bank.account.{}", envelope.key);
        out.push((position, subject, envelope.to_json().unwrap()));
    }
    out.push((4, "bank.account.a-3".into(), b"{garbage".to_vec()));
    out
}

fn read_after(log: &[(u64, String, Vec<u8>)], after: u64) -> Vec<Message<'_>> {
    log.iter()
        .filter(|(position, _, _)| *position > after)
        .map(|(position, subject, bytes)| Message::new(*position, subject, bytes))
        .collect()
}

#[test]
fn sqlite_without_a_runtime_commits_resumes_and_reports_changes() {
    let db = TempDb::new("sqlite");
    let log = log();
    let store = SqliteStore::open(&db.0, "blocking").expect("open");
    let mut replica = BlockingReplica::<v1::Account, _>::open(store).expect("load");
    assert_eq!(replica.resume_after(), 0);
    let changes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&changes);
    replica.on_change(move |change: StateChange<'_, v1::Account>| {
        sink.lock()
            .unwrap()
            .push((change.key.clone(), change.outcome));
    });

    // The first two messages, then a "crash" before the rest.
    let outcome = replica
        .apply_batch(&read_after(&log, 0)[..2])
        .expect("batch");
    assert_eq!(
        outcome.applied,
        vec![(1, Outcome::Inserted), (2, Outcome::Inserted)]
    );
    assert_eq!(
        *changes.lock().unwrap(),
        vec![
            ("a-1".to_owned(), Outcome::Inserted),
            ("a-2".to_owned(), Outcome::Inserted)
        ]
    );
    drop(replica);

    let store = SqliteStore::open(&db.0, "blocking").expect("reopen");
    let mut replica = BlockingReplica::<v1::Account, _>::open(store).expect("reload");
    assert_eq!(replica.resume_after(), 2, "resumes after its checkpoint");
    let outcome = replica
        .apply_batch(&read_after(&log, replica.resume_after()))
        .expect("rest");
    assert_eq!(outcome.applied, vec![(3, Outcome::Deleted)]);
    assert_eq!(outcome.parked.len(), 1);
    assert_eq!(outcome.parked[0].0, 4);
    assert_eq!(outcome.parked[0].1.kind, ParkKind::Invalid);
    assert_eq!(
        replica.checkpoint(),
        Some(Checkpoint {
            stream_sequence: 4,
            applied: 3,
            purged_through: 0,
            stream_created: None,
        })
    );
    assert_eq!(replica.replica().get("a-1"), None);
    assert_eq!(
        replica.replica().get("a-2"),
        Some(&account1("a-2", "Bea", 20))
    );
    assert!(replica
        .discard_parked(4, "garbage from a test")
        .expect("discard"));
    assert_eq!(replica.pending_parked(), 0);
    let purged = replica
        .purge_tombstones_before(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
        .expect("purge");
    assert_eq!(purged, 1);
}

#[test]
fn the_memory_store_works_the_same_way() {
    let log = log();
    let mut replica =
        BlockingReplica::<v1::Account, _>::open(MemoryStore::new()).expect("memory store");
    let outcome = replica.apply_batch(&read_after(&log, 0)).expect("batch");
    assert_eq!(outcome.applied.len(), 3);
    assert_eq!(replica.resume_after(), 4);
    assert_eq!(replica.replica().len(), 1);
    assert_eq!(replica.retry_parked().expect("retry").parked.len(), 1);

    // Purged from the store too: a reload from it does not bring the
    // tombstone back, and keeps its live key.
    assert_eq!(replica.replica().tombstones(), 1);
    let cutoff = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    assert_eq!(replica.purge_tombstones_before(cutoff).expect("purge"), 1);
    replica.reload().expect("reload");
    assert_eq!(replica.replica().tombstones(), 0);
    assert_eq!(replica.replica().len(), 1);
}
