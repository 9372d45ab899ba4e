//! The PostgreSQL store: every scenario of `store_common` on a real server.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 with trust authentication and a
//! database `test` (or a connection string in `ECST_TEST_POSTGRES`). Each
//! test uses consumer names unique to the run and deletes its rows.

#![cfg(feature = "postgres")]

#[path = "support/stores.rs"]
mod store_common;

use ecst::store::postgres::PostgresStore;
use ecst::store::{ReplicaStore, StoreError};
use store_common::{v1, Backend, Postgres};

#[tokio::test]
async fn commit_then_reopen() {
    store_common::commit_then_reopen(&Postgres::new(), "pg_commit_then_reopen").await;
}

#[tokio::test]
async fn undecodable_state_is_an_error() {
    store_common::undecodable_state_is_an_error(&Postgres::new(), "pg_undecodable").await;
}

#[tokio::test]
async fn durable_replica_batch() {
    store_common::durable_replica_batch(&Postgres::new(), "pg_durable_replica_batch").await;
}

#[tokio::test]
async fn parking_and_retry() {
    store_common::parking_and_retry(&Postgres::new(), "pg_parking_and_retry").await;
}

#[tokio::test]
async fn failed_commit_changes_nothing() {
    store_common::failed_commit_changes_nothing(&Postgres::new(), "pg_failed_commit").await;
}

#[tokio::test]
async fn consumers_are_isolated() {
    store_common::consumers_are_isolated(&Postgres::new(), "pg_consumers_are_isolated").await;
}

/// A negative value in a BIGINT column (written by hand, not by the store)
/// is a typed out-of-range error on load, not a wrapped `u64`.
#[tokio::test]
async fn negative_stored_sequence_is_an_error() {
    let backend = Postgres::new();
    let consumer = store_common::consumer("pg_negative");
    let mut store = backend.open(&consumer).await;
    backend.purge(&mut store).await;
    store
        .client()
        .execute(
            "INSERT INTO ecst_replica (consumer, entity, key, sequence, schema_version, state) \
             VALUES ($1, 'account', 'n-1', -5, 1, '{\"id\":\"n-1\",\"owner\":\"N\",\"balance\":1}')",
            &[&consumer],
        )
        .await
        .expect("insert");
    let error = match ReplicaStore::<v1::Account>::load(&mut store).await {
        Ok(_) => panic!("loaded a negative sequence"),
        Err(error) => error,
    };
    assert!(
        matches!(&error, StoreError::OutOfRange { column: "ecst_replica.sequence", key: Some(k), value: -5, .. } if k == "n-1"),
        "{error:?}"
    );
    backend.purge(&mut store).await;
}

/// `connect` outside a Tokio runtime is an error, not a panic.
#[test]
fn connect_needs_a_runtime() {
    let backend = Postgres::new();
    let future = PostgresStore::connect(&backend.config, "no-runtime");
    use std::future::Future;
    // Poll it once by hand, outside any runtime.
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(Err(error)) => {
            assert!(error.to_string().contains("Tokio"), "{error}");
        }
        std::task::Poll::Ready(Ok(_)) => panic!("connected without a runtime"),
        std::task::Poll::Pending => panic!("pending without a runtime"),
    }
}

/// A server-side error reaches the message: the driver's own text
/// (`db error`) is followed by the server's.
#[tokio::test]
async fn database_errors_say_what_the_server_said() {
    let config = format!("{} dbname=ecst_no_such_database", Postgres::new().config);
    let error = match PostgresStore::connect(&config, "no-such-db").await {
        Ok(_) => panic!("connected to a database that does not exist"),
        Err(error) => error,
    };
    assert!(matches!(error, StoreError::Database { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("ecst_no_such_database"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn an_unstorable_state_is_parked_and_the_rest_commits() {
    store_common::an_unstorable_state_is_parked_and_the_rest_commits(
        &Postgres::new(),
        "pg_unstorable",
    )
    .await;
}

#[tokio::test]
async fn a_misaddressed_undecodable_event_never_reaches_its_claimed_key() {
    store_common::a_misaddressed_undecodable_event_never_reaches_its_claimed_key(
        &Postgres::new(),
        "pg_misaddressed_retry",
    )
    .await;
}

#[tokio::test]
async fn a_rewound_stream_is_not_taken_for_parked_messages() {
    store_common::a_rewound_stream_is_not_taken_for_parked_messages(
        &Postgres::new(),
        "pg_rewound_parked",
    )
    .await;
}
