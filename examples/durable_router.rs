//! Durable router: one consumer for several entities, with one store, one
//! checkpoint and one transaction per batch.
//!
//! - The "transport" is a log carrying three entities (customers, orders,
//!   invoices), each message with its position and its subject
//!   `shop.<entity>.<key>`, as a NATS stream over the prefix `shop` would
//!   give them. The consumer keeps replicas of customers and orders only.
//! - A `DurableRouter` (driven by plain calls: `BlockingRouter`) sends each
//!   message to the replica of the entity its subject names, and commits
//!   every entity's changes with the one checkpoint in one SQLite
//!   transaction: after a crash, either the whole batch is in the file, for
//!   every entity, or none of it.
//! - Invoices have no replica here: they are skipped and counted, never
//!   parked and never lost silently.
//! - Halfway through, the consumer "restarts": the router is reopened from
//!   the file and resumes after its one checkpoint.
//!
//! Run with `cargo run -p ecst-examples --example durable_router --features sqlite`.
//! Over NATS, the same router goes to `ecst::nats::RouterFollower::start`.

use std::error::Error;

use ecst::store::blocking::BlockingRouter;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableRouter, Message};
use ecst::{Producer, StateEvent};
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
    pub customer: String,
    pub total: u64,
}

/// Published by the owner, not needed by this consumer.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "invoice", version = 1)]
pub struct Invoice {
    #[state_event(key)]
    pub id: String,
    pub amount: u64,
}

/// One message of the log: position, subject, bytes.
type Logged = (u64, String, Vec<u8>);

/// What the owners publish, in stream order.
fn log() -> Result<Vec<Logged>, Box<dyn Error>> {
    let mut customers = Producer::<Customer>::new("urn:example:crm");
    let mut orders = Producer::<Order>::new("urn:example:shop");
    let mut invoices = Producer::<Invoice>::new("urn:example:billing");
    let mut out: Vec<(String, String, Vec<u8>)> = Vec::new();
    let customer = |id: &str, name: &str| Customer {
        id: id.into(),
        name: name.into(),
    };
    let order = |id: &str, customer: &str, total| Order {
        id: id.into(),
        customer: customer.into(),
        total,
    };
    for envelope in [
        customers.upsert(customer("c-1", "Ada"))?,
        customers.upsert(customer("c-2", "Bea"))?,
    ] {
        out.push(("customer".into(), envelope.key.clone(), envelope.to_json()?));
    }
    for envelope in [
        orders.upsert(order("o-1", "c-1", 120))?,
        orders.upsert(order("o-2", "c-2", 80))?,
    ] {
        out.push(("order".into(), envelope.key.clone(), envelope.to_json()?));
    }
    let invoice = invoices.upsert(Invoice {
        id: "i-1".into(),
        amount: 120,
    })?;
    out.push(("invoice".into(), invoice.key.clone(), invoice.to_json()?));
    let renamed = customers.upsert(customer("c-1", "Ada Lovelace"))?;
    out.push(("customer".into(), renamed.key.clone(), renamed.to_json()?));
    let cancelled = orders.delete("o-2".into())?;
    out.push(("order".into(), cancelled.key.clone(), cancelled.to_json()?));
    let grown = orders.upsert(order("o-1", "c-1", 150))?;
    out.push(("order".into(), grown.key.clone(), grown.to_json()?));
    Ok(out
        .into_iter()
        .zip(1..)
        .map(|((entity, key, bytes), position)| (position, format!("shop.{entity}.{key}"), bytes))
        .collect())
}

/// The messages after `after`, at most `count`, addressed by their subject
/// (`shop.<entity>.<key>`), as a transport that addresses messages does.
fn read_after(log: &[Logged], after: u64, count: usize) -> Vec<Message<'_>> {
    log.iter()
        .filter(|(position, _, _)| *position > after)
        .take(count)
        .map(|(position, subject, bytes)| {
            let mut tokens = subject.splitn(3, '.').skip(1);
            let entity = tokens.next().unwrap_or_default();
            let key = tokens.next().unwrap_or_default();
            Message::new(*position, subject, bytes).addressed_to(entity, key)
        })
        .collect()
}

fn open(path: &std::path::Path) -> Result<BlockingRouter<SqliteStore>, Box<dyn Error>> {
    let store = SqliteStore::open(path, "shop-view")?;
    let router = BlockingRouter::open(
        DurableRouter::builder(store)
            .register::<Customer>()?
            .register::<Order>()?,
    )?;
    Ok(router)
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::temp_dir().join(format!("ecst-durable-router-{}.db", std::process::id()));
    let log = log()?;

    // First run: one batch of 4, then the process "stops".
    let mut router = open(&path)?;
    let batch = read_after(&log, router.resume_after(), 4);
    let outcome = router.apply_batch(&batch)?;
    println!(
        "first run: {} messages applied, checkpoint at {}",
        outcome.applied.len(),
        router.resume_after()
    );
    drop(router);

    // Second run: resumes after the one checkpoint, for every entity.
    let mut router = open(&path)?;
    println!("restarted: resuming after {}", router.resume_after());
    loop {
        let batch = read_after(&log, router.resume_after(), 2);
        if batch.is_empty() {
            break;
        }
        let outcome = router.apply_batch(&batch)?;
        // Committed, every entity and the checkpoint together: acknowledge
        // the batch to the transport here.
        for (position, reason) in &outcome.rejected {
            println!("  skipped #{position}: {reason}");
        }
    }

    let customers = router
        .replica::<Customer>()
        .ok_or("customer is registered")?;
    let orders = router.replica::<Order>().ok_or("order is registered")?;
    for (id, customer) in customers.iter() {
        let total: u64 = orders
            .iter()
            .filter(|(_, order)| order.customer == *id)
            .map(|(_, order)| order.total)
            .sum();
        println!("{id} {}: orders worth {total}", customer.name);
    }
    let checkpoint = router.checkpoint().ok_or("a checkpoint")?;
    println!(
        "one checkpoint: stream position {}, {} changes applied; skipped: {:?}",
        checkpoint.stream_sequence,
        checkpoint.applied,
        router.skipped()
    );
    assert_eq!(
        customers.get("c-1").map(|c| c.name.as_str()),
        Some("Ada Lovelace")
    );
    assert_eq!(orders.get("o-1").map(|o| o.total), Some(150));
    assert_eq!(orders.get("o-2"), None);
    assert_eq!(checkpoint.stream_sequence, log.len() as u64);
    drop(router);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}
