//! What the outbox tests share (`outbox.rs`, `outbox_redteam.rs`): the
//! owner's entity, bounded waits, one PostgreSQL table per test, and draining
//! a relay.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ecst::outbox::tokio_postgres::{self, NoTls};
use ecst::outbox::{Outbox, OutboxRelay};
use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The owner's entity.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub owner: String,
    pub balance: i64,
}

pub const POSTGRES: &str = "host=127.0.0.1 user=postgres dbname=test";
/// The bound of every wait for a condition.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn account(id: &str, balance: i64) -> Account {
    Account {
        id: id.to_owned(),
        owner: format!("owner of {id}"),
        balance,
    }
}

pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

/// A table name unique per test and process, starting with `prefix`.
pub fn unique_table(prefix: &str, test: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{test}_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(POSTGRES, NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432, database `test`");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops the outbox's tables and its notify function.
pub async fn drop_postgres(outbox: &Outbox) {
    let client = postgres().await;
    let t = outbox.table();
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{t}\"; DROP TABLE IF EXISTS \"{t}_sequence\";
             DROP TABLE IF EXISTS \"{t}_lease\"; DROP FUNCTION IF EXISTS \"{t}_notify\"();"
        ))
        .await
        .unwrap();
}

/// Runs relay passes until one reads nothing.
pub async fn drain(relay: &mut OutboxRelay) {
    bounded("draining the outbox", async {
        loop {
            let report = relay.relay_once().await.unwrap();
            assert!(report.leader, "the only relay must hold the lease");
            if report.read == 0 {
                return;
            }
        }
    })
    .await;
}
