//! Quickstart: an owner service and a consumer in one process.
//!
//! - The owner keeps customers in its own "database" and publishes a state
//!   event (a CloudEvents JSON envelope) for every change.
//! - The "broker" here is a Vec that delivers the events shuffled and with
//!   duplicates, as real brokers may after retries and redeliveries.
//! - One event comes from an old log: it was written years ago in schema
//!   version 1 and is upcast, typed, on the way in.
//! - Two messages are bad: garbage bytes, and an event from a newer producer
//!   (schema version 4). Both are typed errors; the consumer parks them.
//! - At the end the consumer's replica is printed and compared with the
//!   owner's state.
//!
//! Run with `cargo run --example quickstart`.

use std::collections::BTreeMap;
use std::error::Error;

use ecst::{Producer, Replica, Router, Sequence, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer as the CRM service owns it, in its newest shape (version 3).
///
/// - v1 had `full_name`, a credit limit in whole dollars and a `fax`;
/// - v2 renamed `full_name` to `name` and added `email`;
/// - v3 dropped `fax` and counts the credit limit in cents.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 3)]
#[state_event(removed(since = 3, field = "fax", ty = Option<String>))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    #[state_event(retyped(since = 3, from = u32, with = dollars_to_cents))]
    pub credit_limit_cents: u64,
}

fn dollars_to_cents(dollars: u32) -> Result<u64, std::convert::Infallible> {
    Ok(u64::from(dollars) * 100)
}

/// The owner: its database and its producer.
struct CrmService {
    customers: BTreeMap<String, Customer>,
    producer: Producer<Customer>,
    outbox: Vec<Vec<u8>>,
}

impl CrmService {
    fn save(&mut self, customer: Customer) -> Result<(), Box<dyn Error>> {
        let event = self.producer.upsert(customer.clone())?;
        self.outbox.push(event.to_json()?);
        self.customers.insert(customer.id.clone(), customer);
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<(), Box<dyn Error>> {
        let event = self.producer.delete(id.to_owned())?;
        self.outbox.push(event.to_json()?);
        self.customers.remove(id);
        Ok(())
    }
}

/// An event from an old log: schema version 1, credit limit in dollars.
const OLD_LOG_EVENT: &str = r#"{
  "specversion": "1.0", "id": "customer:c-0:1", "source": "urn:example:crm",
  "type": "customer", "subject": "c-0", "time": "2019-03-01T09:30:00Z",
  "datacontenttype": "application/json", "dataschema": "urn:ecst:schema:customer:v1",
  "sequence": "00000000000000000001", "schemaversion": 1, "operation": "upsert",
  "data": {"id": "c-0", "full_name": "Grace Hopper", "credit_limit_cents": 50, "fax": "+1 555 0100"}
}"#;

/// An event from a producer that was upgraded before this consumer.
const FUTURE_EVENT: &str = r#"{
  "specversion": "1.0", "id": "customer:c-9:1", "source": "urn:example:crm",
  "type": "customer", "subject": "c-9", "sequence": "1", "schemaversion": 4,
  "operation": "upsert", "data": {"id": "c-9", "display_name": "?"}
}"#;

fn customer(id: &str, name: &str, email: Option<&str>, cents: u64) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
        email: email.map(Into::into),
        credit_limit_cents: cents,
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // The owner already knew c-0 from the old days (sequence 1, above).
    let mut crm = CrmService {
        customers: BTreeMap::new(),
        producer: Producer::resume("urn:example:crm", [("c-0".to_owned(), Sequence::new(1))]),
        outbox: vec![OLD_LOG_EVENT.as_bytes().to_vec()],
    };
    crm.customers
        .insert("c-0".into(), customer("c-0", "Grace Hopper", None, 5_000));

    // Business as usual.
    crm.save(customer(
        "c-1",
        "Ada Lovelace",
        Some("ada@example.com"),
        100_000,
    ))?;
    crm.save(customer("c-2", "Alan Turing", None, 50_000))?;
    crm.save(customer("c-3", "Edsger Dijkstra", None, 75_000))?;
    crm.save(customer(
        "c-1",
        "Ada King",
        Some("ada@example.com"),
        120_000,
    ))?;
    crm.remove("c-2")?;
    crm.save(customer(
        "c-3",
        "Edsger W. Dijkstra",
        Some("ewd@example.com"),
        75_000,
    ))?;
    crm.save(customer(
        "c-1",
        "Ada King",
        Some("countess@example.com"),
        150_000,
    ))?;

    // The broker: shuffled delivery, every third event twice, two bad messages.
    let mut delivery = crm.outbox.clone();
    let duplicates: Vec<Vec<u8>> = delivery.iter().step_by(3).cloned().collect();
    delivery.extend(duplicates);
    delivery.push(b"\x00not json at all".to_vec());
    delivery.push(FUTURE_EVENT.as_bytes().to_vec());
    shuffle(&mut delivery, 0x5eed);

    // The consumer: a router holding its replicas.
    let mut router = Router::new();
    router.add(Replica::<Customer>::new())?;
    let mut parked = Vec::new();
    println!("consumer receives {} messages:", delivery.len());
    for message in &delivery {
        match router.apply_json(message) {
            Ok(routed) => println!("  {:<8} {:?}", routed.entity, routed.outcome),
            Err(error) if error.is_future_version() => {
                println!("  parked until upgraded: {error}");
                parked.push(message.clone());
            }
            Err(error) => {
                println!("  rejected: {error}");
                parked.push(message.clone());
            }
        }
    }

    let replica = router
        .replica::<Customer>()
        .ok_or("the customer replica is registered above")?;
    let mut local: BTreeMap<String, Customer> = replica
        .iter()
        .map(|(key, state)| (key.clone(), state.clone()))
        .collect();
    println!(
        "\nconsumer replica ({} live, {} tombstones):",
        replica.len(),
        replica.tombstones()
    );
    for (key, state) in &mut local {
        println!("  {key}: {state:?}");
    }
    println!("stats: {:?}", replica.stats());
    println!("parked messages: {}", parked.len());

    let converged = local == crm.customers;
    println!("\nreplica equals the owner's state: {converged}");
    if !converged {
        return Err("the replica diverged from the owner".into());
    }
    Ok(())
}

/// A deterministic Fisher-Yates shuffle (xorshift64), so every run delivers
/// in the same scrambled order.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
