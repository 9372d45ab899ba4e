//! The cost of the at-least-once feed: the same batches through a
//! `BlockingReplica` with no feed, and with a feed that does nothing.
//! `feed-cost <none|feed> <memory|sqlite>`; `run.sh` measures `run` under
//! callgrind for the four combinations (instructions, so the figures do not
//! depend on the machine's load).

use ecst::store::blocking::{BlockingReplica, ReadyStore};
use ecst::store::sqlite::SqliteStore;
use ecst::store::{MemoryStore, Message};
use ecst::{Producer, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    pub credit: u64,
}

const EVENTS: usize = 4000;
const KEYS: usize = 500;
const BATCH: usize = 20;

#[inline(never)]
fn run<S: ReadyStore<Customer>>(store: S, feed: bool, log: &[(u64, String, Vec<u8>)]) -> u64 {
    let mut replica = BlockingReplica::<Customer, S>::open(store).expect("open");
    if feed {
        replica.on_change(|change| {
            std::hint::black_box(&change);
        });
    }
    let messages: Vec<Message<'_>> = log
        .iter()
        .map(|(p, subject, bytes)| {
            let key = subject.rsplit('.').next().unwrap_or_default();
            Message::new(*p, subject, bytes).addressed_to("customer", key)
        })
        .collect();
    for batch in messages.chunks(BATCH) {
        replica.apply_batch(batch).expect("commit");
    }
    replica.checkpoint().map_or(0, |c| c.applied)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let feed = args.get(1).map(String::as_str) == Some("feed");
    let backend = args.get(2).cloned().unwrap_or_else(|| "memory".into());
    let mut producer = Producer::<Customer>::new("urn:cost");
    let log: Vec<(u64, String, Vec<u8>)> = (0..EVENTS)
        .map(|i| {
            let id = format!("c-{}", i % KEYS);
            let envelope = producer
                .upsert(Customer {
                    id: id.clone(),
                    name: format!("n{i}"),
                    credit: i as u64,
                })
                .expect("upsert");
            (
                (i + 1) as u64,
                format!("bank.customer.{id}"),
                envelope.to_json().expect("json"),
            )
        })
        .collect();
    let applied = match backend.as_str() {
        "sqlite" => run(SqliteStore::in_memory("cost").expect("sqlite"), feed, &log),
        _ => run(MemoryStore::new(), feed, &log),
    };
    println!("applied {applied}");
}
