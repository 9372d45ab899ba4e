//! What the durable router tests share (`durable_router*.rs`,
//! `redteam_router.rs`, `retry_cancellation.rs`): the entities (and
//! `customer` as a newer build writes it), a log as any transport gives
//! it, the mixed log of two entities, helpers to open routers and stores,
//! and a driver that drops a future at a chosen await.

#![allow(dead_code)]

use std::path::PathBuf;

#[cfg(feature = "postgres")]
use ecst::store::postgres::PostgresStore;
use ecst::store::{DurableRouter, Message, RouterStore};
use ecst::{Entry, Producer, Replica, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
pub struct Order {
    #[state_event(key)]
    pub id: String,
    pub total: u64,
}

/// An entity the consumer does not register.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "invoice", version = 1)]
pub struct Invoice {
    #[state_event(key)]
    pub id: String,
    pub amount: u64,
}

pub fn customer(id: &str, name: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
    }
}

pub fn order(id: &str, total: u64) -> Order {
    Order {
        id: id.into(),
        total,
    }
}

/// A stream as any transport gives it: (position, subject, bytes).
pub type Log = Vec<(u64, String, Vec<u8>)>;

/// Appends one envelope's bytes on `bank.<entity>.<key>`.
pub fn push(log: &mut Log, entity: &str, key: &str, bytes: Vec<u8>) {
    let position = log.len() as u64 + 1;
    log.push((position, format!("bank.{entity}.{key}"), bytes));
}

/// The messages of `log` after `after`, addressed by their subjects.
pub fn messages(log: &Log, after: u64) -> Vec<Message<'_>> {
    log.iter()
        .filter(|(position, _, _)| *position > after)
        .map(|(position, subject, bytes)| {
            let mut parts = subject.splitn(3, '.').skip(1);
            let entity = parts.next().unwrap_or_default();
            let key = parts.next().unwrap_or_default();
            Message::new(*position, subject, bytes).addressed_to(entity, key)
        })
        .collect()
}

/// Two customers and two orders, interleaved, with an update and a delete
/// of each entity: 8 messages, 8 changes.
pub fn mixed_log() -> Log {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let mut log = Log::new();
    let c = |e: ecst::Envelope<Customer>| e.to_json().unwrap();
    let o = |e: ecst::Envelope<Order>| e.to_json().unwrap();
    push(
        &mut log,
        "customer",
        "c-1",
        c(customers.upsert(customer("c-1", "Ada")).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-1",
        o(orders.upsert(order("o-1", 10)).unwrap()),
    );
    push(
        &mut log,
        "customer",
        "c-2",
        c(customers.upsert(customer("c-2", "Bea")).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-2",
        o(orders.upsert(order("o-2", 20)).unwrap()),
    );
    push(
        &mut log,
        "customer",
        "c-1",
        c(customers.upsert(customer("c-1", "Ada L.")).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-1",
        o(orders.delete("o-1".into()).unwrap()),
    );
    push(
        &mut log,
        "customer",
        "c-2",
        c(customers.delete("c-2".into()).unwrap()),
    );
    push(
        &mut log,
        "order",
        "o-2",
        o(orders.upsert(order("o-2", 25)).unwrap()),
    );
    log
}

/// What a replica holds, comparable: (key, sequence, state or tombstone).
pub fn dump<T: StateEvent + Clone>(replica: &Replica<T>) -> Vec<(String, u64, Option<T>)> {
    let mut out: Vec<_> = replica
        .entries()
        .map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => {
                (key.to_string(), sequence.get(), Some(state.clone()))
            }
            Entry::Tombstone { sequence } => (key.to_string(), sequence.get(), None),
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub type Dumps = (
    Vec<(String, u64, Option<Customer>)>,
    Vec<(String, u64, Option<Order>)>,
);

pub fn dumps<S: RouterStore>(router: &DurableRouter<S>) -> Dumps {
    (
        dump(router.replica::<Customer>().expect("customer registered")),
        dump(router.replica::<Order>().expect("order registered")),
    )
}

pub async fn open_router<S: RouterStore>(store: S) -> DurableRouter<S> {
    DurableRouter::builder(store)
        .register::<Customer>()
        .expect("customer")
        .register::<Order>()
        .expect("order")
        .open()
        .await
        .expect("opening the router")
}

/// A unique consumer name for this run and test.
pub fn consumer(test: &str) -> String {
    format!("ecst-router-{}-{test}", std::process::id())
}

/// A temporary SQLite file, deleted with its WAL files on drop.
pub struct TempDb(pub PathBuf);

impl TempDb {
    pub fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ecst-router-{}-{test}.db", std::process::id()));
        let db = TempDb(path);
        db.remove();
        db
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.0.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(feature = "postgres")]
pub fn postgres_config() -> String {
    std::env::var("ECST_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

#[cfg(feature = "postgres")]
pub async fn postgres(consumer: &str) -> PostgresStore {
    match PostgresStore::connect(&postgres_config(), consumer).await {
        Ok(store) => store,
        Err(error) => panic!(
            "cannot reach PostgreSQL with `{}`: {error} (these tests need PostgreSQL with trust \
             authentication and a database `test`, or ECST_TEST_POSTGRES)",
            postgres_config()
        ),
    }
}

/// `customer` as a newer build writes it: a future version to this one.
pub mod newer {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "customer", version = 2)]
    pub struct Customer {
        #[state_event(key)]
        pub id: String,
        pub name: String,
        #[state_event(added(since = 2))]
        pub email: Option<String>,
    }
}

/// Drives `future` and drops it after its `pendings`-th pending poll (a
/// `select!` or a `timeout` that fired there); `Some(output)` if it
/// finished first.
pub async fn drop_after<F: std::future::Future>(future: F, pendings: usize) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut seen = 0;
    std::future::poll_fn(move |cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending if seen == pendings => std::task::Poll::Ready(None),
        std::task::Poll::Pending => {
            seen += 1;
            std::task::Poll::Pending
        }
    })
    .await
}
