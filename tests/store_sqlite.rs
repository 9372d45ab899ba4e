//! The SQLite store: every scenario of `store_common` on a database file.

#![cfg(feature = "sqlite")]

#[path = "support/stores.rs"]
mod store_common;

use ecst::store::sqlite::SqliteStore;
use ecst::store::{Checkpoint, Commit, ReplicaStore};
use store_common::{v1, Sqlite};

#[tokio::test]
async fn commit_then_reopen() {
    store_common::commit_then_reopen(&Sqlite::new("commit_then_reopen"), "commit_then_reopen")
        .await;
}

#[tokio::test]
async fn undecodable_state_is_an_error() {
    let test = "undecodable_state_is_an_error";
    store_common::undecodable_state_is_an_error(&Sqlite::new(test), test).await;
}

#[tokio::test]
async fn durable_replica_batch() {
    let test = "durable_replica_batch";
    store_common::durable_replica_batch(&Sqlite::new(test), test).await;
}

#[tokio::test]
async fn parking_and_retry() {
    let test = "parking_and_retry";
    store_common::parking_and_retry(&Sqlite::new(test), test).await;
}

#[tokio::test]
async fn failed_commit_changes_nothing() {
    let test = "failed_commit_changes_nothing";
    store_common::failed_commit_changes_nothing(&Sqlite::new(test), test).await;
}

#[tokio::test]
async fn consumers_are_isolated() {
    let test = "consumers_are_isolated";
    store_common::consumers_are_isolated(&Sqlite::new(test), test).await;
}

/// `synchronous_normal` is a working option.
#[tokio::test]
async fn synchronous_normal_round_trips() {
    let backend = Sqlite::new("normal");
    let consumer = store_common::consumer("normal");
    let mut store = SqliteStore::open(&backend.path, &consumer)
        .and_then(SqliteStore::synchronous_normal)
        .expect("open");
    let checkpoint = Checkpoint {
        stream_sequence: 3,
        applied: 0,
        purged_through: 0,
        stream_created: None,
    };
    ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint,
        },
    )
    .await
    .expect("commit");
    let loaded = store_common::reopen::<v1::Account, _>(&backend, &consumer).await;
    assert_eq!(loaded.checkpoint, Some(checkpoint));
}

/// An in-memory store works, and is private to its connection.
#[tokio::test]
async fn in_memory() {
    let mut store = SqliteStore::in_memory("mem").expect("in memory");
    let loaded = ReplicaStore::<v1::Account>::load(&mut store)
        .await
        .expect("load");
    assert!(loaded.checkpoint.is_none() && loaded.parked.is_empty() && loaded.replica.is_empty());
    let checkpoint = Checkpoint {
        stream_sequence: 9,
        applied: 0,
        purged_through: 0,
        stream_created: None,
    };
    ReplicaStore::<v1::Account>::commit(
        &mut store,
        Commit {
            owed: None,
            entries: vec![],
            parked: &[],
            unparked: &[],
            purged: &[],
            checkpoint,
        },
    )
    .await
    .expect("commit");
    let loaded = ReplicaStore::<v1::Account>::load(&mut store)
        .await
        .expect("load");
    assert_eq!(loaded.checkpoint, Some(checkpoint));
    let mut other = SqliteStore::in_memory("mem").expect("in memory");
    let loaded = ReplicaStore::<v1::Account>::load(&mut other)
        .await
        .expect("load");
    assert_eq!(loaded.checkpoint, None);
}

#[tokio::test]
async fn an_unstorable_state_is_parked_and_the_rest_commits() {
    let test = "unstorable";
    store_common::an_unstorable_state_is_parked_and_the_rest_commits(&Sqlite::new(test), test)
        .await;
}

#[tokio::test]
async fn a_misaddressed_undecodable_event_never_reaches_its_claimed_key() {
    let test = "misaddressed_retry";
    store_common::a_misaddressed_undecodable_event_never_reaches_its_claimed_key(
        &Sqlite::new(test),
        test,
    )
    .await;
}

#[tokio::test]
async fn a_rewound_stream_is_not_taken_for_parked_messages() {
    let test = "rewound_parked";
    store_common::a_rewound_stream_is_not_taken_for_parked_messages(&Sqlite::new(test), test).await;
}
