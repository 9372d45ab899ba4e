//! `ecst parked retry` and the purge floor (issue 9, red team): the command
//! never makes pending a parked event that `retry_parked` could apply to
//! bring back a key whose tombstone was purged. The store is written by
//! the runtime's `SqliteStore` (its tables), its rows set by hand.

#![forbid(unsafe_code)]

mod support;

use ecst::store::sqlite::SqliteStore;
use support::{ecst, fresh_dir};

/// A store of consumer `billing` whose `customer` checkpoint is at 10 with
/// its purge floor at 5, holding a tombstone of `c-6`, and these parked
/// events: #3 `purged_tombstone` pending (key c-9), #4 superseded (key c-8,
/// nothing stored), #5 superseded (key c-6, a tombstone stored), #7
/// superseded (key c-7, above the floor).
fn store() -> std::path::PathBuf {
    let dir = fresh_dir("floor");
    std::fs::create_dir_all(&dir).expect("creating the store directory");
    let path = dir.join("replica.db");
    let store = SqliteStore::open(&path, "billing").expect("the store");
    store
        .connection()
        .execute_batch(
            "INSERT INTO ecst_checkpoint (consumer, entity, stream_sequence, applied, purged_through)
                 VALUES ('billing', 'customer', 10, 4, 5);
             INSERT INTO ecst_replica (consumer, entity, key, sequence, schema_version, state, deleted_at)
                 VALUES ('billing', 'customer', 'c-6', 2, 1, NULL, 0);
             INSERT INTO ecst_parked (consumer, entity, stream_sequence, subject, key, reason, payload, kind, resolution) VALUES
                 ('billing', 'customer', 3, 'shop.customer.c-9', 'c-9', 'kept out', X'7B7D', 'purged_tombstone', NULL),
                 ('billing', 'customer', 4, 'shop.customer.c-8', 'c-8', 'v99', X'7B7D', 'future_version', 'superseded'),
                 ('billing', 'customer', 5, 'shop.customer.c-6', 'c-6', 'v99', X'7B7D', 'future_version', 'superseded'),
                 ('billing', 'customer', 7, 'shop.customer.c-7', 'c-7', 'v99', X'7B7D', 'future_version', 'superseded');",
        )
        .expect("writing the rows");
    path
}

#[tokio::test]
async fn retry_refuses_what_could_bring_back_a_purged_key() {
    let path = store();
    let file = path.to_str().expect("a UTF-8 path");

    let line = ecst(&["parked", "retry", "customer", "3", "--sqlite", file])
        .await
        .one_error_line();
    assert!(
        line.contains("is `purged_tombstone`") && line.contains("never applies it"),
        "{line}"
    );

    let line = ecst(&["parked", "retry", "customer", "4", "--sqlite", file])
        .await
        .one_error_line();
    assert!(
        line.contains("at or below the purge floor 5") && line.contains("`c-8`"),
        "{line}"
    );

    // Its key's tombstone is held: the version gate decides.
    let run = ecst(&["parked", "retry", "customer", "5", "--sqlite", file])
        .await
        .expect_code(0);
    assert!(
        run.stdout.contains("pending again") && run.stdout.contains("through the version gate"),
        "{}",
        run.stdout
    );
    // Above the floor: as before.
    ecst(&["parked", "retry", "customer", "7", "--sqlite", file])
        .await
        .expect_code(0);

    let connection = rusqlite::Connection::open(&path).expect("the store");
    let pending: Vec<i64> = connection
        .prepare("SELECT stream_sequence FROM ecst_parked WHERE resolution IS NULL ORDER BY 1")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()
        })
        .expect("reading ecst_parked");
    assert_eq!(pending, vec![3, 5, 7]);
}
