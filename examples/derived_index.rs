//! Derived index: a durable consumer without NATS and without an async
//! runtime, keeping an index of its own in step through the change feed.
//!
//! - The "transport" is a log: a Vec of messages, each with its position in
//!   the stream and its bytes. Any transport that gives those two works the
//!   same way (a file, a queue, Kafka offsets, an HTTP feed).
//! - The replica is durable, in an SQLite file, driven by plain function
//!   calls (`BlockingReplica`): each batch is applied and committed with
//!   the checkpoint in one transaction; "acknowledge" it to the transport
//!   after that.
//! - The application keeps an index of customers by email domain. The
//!   change feed (`on_change`) tells it, after each commit, what changed,
//!   with the state before and after, so it updates only what moved.
//! - Halfway through, the consumer "restarts": the replica is reopened from
//!   the file and resumes after its checkpoint; the index, kept in memory,
//!   is rebuilt from the replica (the feed reports changes, not the state
//!   at start).
//! - At the end, tombstones older than the horizon are purged, and the
//!   index is checked against the replica.
//!
//! Run with `cargo run -p ecst-examples --example derived_index --features sqlite`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecst::store::blocking::BlockingReplica;
use ecst::store::sqlite::SqliteStore;
use ecst::store::Message;
use ecst::{Outcome, Producer, StateChange, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    pub email: String,
}

fn customer(id: &str, name: &str, email: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
        email: email.into(),
    }
}

/// Customer ids by email domain: what the application derives.
#[derive(Default, Debug, PartialEq)]
struct DomainIndex(BTreeMap<String, BTreeSet<String>>);

fn domain(customer: &Customer) -> String {
    customer
        .email
        .rsplit_once('@')
        .map_or("?", |(_, domain)| domain)
        .to_owned()
}

impl DomainIndex {
    fn add(&mut self, customer: &Customer) {
        self.0
            .entry(domain(customer))
            .or_default()
            .insert(customer.id.clone());
    }

    fn remove(&mut self, customer: &Customer) {
        let domain = domain(customer);
        if let Some(ids) = self.0.get_mut(&domain) {
            ids.remove(&customer.id);
            if ids.is_empty() {
                self.0.remove(&domain);
            }
        }
    }

    /// One change: out with the old state, in with the new.
    fn apply(&mut self, change: StateChange<'_, Customer>) {
        if let Some(before) = change.before {
            self.remove(before);
        }
        if let Some(after) = change.after {
            self.add(after);
        }
    }

    fn of<'a>(states: impl Iterator<Item = &'a Customer>) -> Self {
        let mut index = DomainIndex::default();
        states.for_each(|customer| index.add(customer));
        index
    }
}

/// The owner's side: every change as a CloudEvents envelope, appended to
/// the log with its position.
struct Log {
    producer: Producer<Customer>,
    messages: Vec<(u64, String, Vec<u8>)>,
}

impl Log {
    fn upsert(&mut self, customer: Customer) -> Result<(), Box<dyn Error>> {
        let event = self.producer.upsert(customer)?;
        self.push(&event.key.clone(), event.to_json()?);
        Ok(())
    }

    fn delete(&mut self, id: &str) -> Result<(), Box<dyn Error>> {
        let event = self.producer.delete(id.to_owned())?;
        self.push(id, event.to_json()?);
        Ok(())
    }

    fn push(&mut self, id: &str, bytes: Vec<u8>) {
        let position = self.messages.len() as u64 + 1;
        self.messages
            .push((position, format!("crm.customer.{id}"), bytes));
    }

    /// What a consumer that has handled everything up to `after` reads
    /// next.
    fn read_after(&self, after: u64, limit: usize) -> Vec<Message<'_>> {
        self.messages
            .iter()
            .filter(|(position, _, _)| *position > after)
            .take(limit)
            .map(|(position, subject, bytes)| Message::new(*position, subject, bytes))
            .collect()
    }
}

/// Opens the replica in `path` and connects the index to its feed.
fn start(
    path: &std::path::Path,
    index: &Arc<Mutex<DomainIndex>>,
) -> Result<BlockingReplica<Customer, SqliteStore>, Box<dyn Error>> {
    let store = SqliteStore::open(path, "search")?;
    let mut replica = BlockingReplica::<Customer, _>::open(store)?;
    // The index is kept in memory: rebuilt from the replica at start.
    *index.lock().map_err(|_| "index poisoned")? =
        DomainIndex::of(replica.replica().iter().map(|(_, c)| c));
    let feed = Arc::clone(index);
    replica.on_change(move |change| {
        if let Ok(mut index) = feed.lock() {
            index.apply(change);
        }
    });
    Ok(replica)
}

/// Reads and commits everything the log has after the checkpoint, batch by
/// batch.
fn catch_up(
    replica: &mut BlockingReplica<Customer, SqliteStore>,
    log: &Log,
) -> Result<(), Box<dyn Error>> {
    loop {
        let batch = log.read_after(replica.resume_after(), 3);
        if batch.is_empty() {
            return Ok(());
        }
        let outcome = replica.apply_batch(&batch)?;
        // Committed: this is where a real transport is acknowledged.
        for (position, outcome) in &outcome.applied {
            if *outcome != Outcome::Duplicate {
                println!("  #{position}: {outcome:?}");
            }
        }
        for (position, reason) in &outcome.parked {
            println!("  #{position}: parked ({reason})");
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::temp_dir().join(format!("ecst-derived-index-{}.db", std::process::id()));
    let mut log = Log {
        producer: Producer::new("urn:example:crm"),
        messages: Vec::new(),
    };
    log.upsert(customer("c-1", "Ada", "ada@example.com"))?;
    log.upsert(customer("c-2", "Bea", "bea@example.org"))?;
    log.upsert(customer("c-3", "Cy", "cy@example.com"))?;
    log.upsert(customer("c-1", "Ada", "ada@lovelace.dev"))?;

    let index = Arc::new(Mutex::new(DomainIndex::default()));
    println!("first run:");
    let mut replica = start(&path, &index)?;
    catch_up(&mut replica, &log)?;
    println!("  index: {:?}", index.lock().map_err(|_| "poisoned")?.0);
    drop(replica);

    // Meanwhile, the owner changes more; a garbage message arrives too.
    log.delete("c-3")?;
    log.upsert(customer("c-4", "Dee", "dee@example.org"))?;
    log.push("c-5", b"{not an event".to_vec());
    log.upsert(customer("c-2", "Bea", "bea@example.com"))?;

    println!("after a restart:");
    let mut replica = start(&path, &index)?;
    println!("  resuming after #{}", replica.resume_after());
    catch_up(&mut replica, &log)?;
    println!("  index: {:?}", index.lock().map_err(|_| "poisoned")?.0);

    // Tombstones: keep each one longer than an older event of its key can
    // still arrive; here everything is read already, so a zero horizon is
    // safe. A real consumer uses days (see `purge_tombstones_before`).
    let horizon = Duration::ZERO;
    let purged = replica.purge_tombstones_before(SystemTime::now() - horizon)?;
    println!("  purged {purged} tombstone(s)");

    let expected = DomainIndex::of(replica.replica().iter().map(|(_, c)| c));
    let same = *index.lock().map_err(|_| "poisoned")? == expected;
    println!(
        "index equals one built from the replica ({} customers): {same}",
        replica.replica().len()
    );
    drop(replica);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
    if !same {
        return Err("the derived index drifted from the replica".into());
    }
    Ok(())
}
