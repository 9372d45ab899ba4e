//! The property of a `DurableRouter`: its replicas, parked events and
//! checkpoint equal those of separate `DurableReplica`s, one per entity,
//! fed the same messages (each its entity's), whatever the events (upserts
//! and deletes at any sequence, duplicates, out of order, junk on either
//! entity's subject) and however they are cut into batches; also after a
//! redelivery of everything and a reopening of the store.

#[path = "support/router.rs"]
mod router_common;

use ecst::consume::ParkKind;
use ecst::store::{DurableReplica, MemoryRouterStore, MemoryStore, Message};
use ecst::Producer;
use proptest::prelude::*;
use router_common::*;

/// One message of the generated stream.
#[derive(Clone, Debug)]
enum Event {
    /// An upsert (`Some(value)`) or delete (`None`) of `key` at `sequence`.
    Customer(u8, u64, Option<u8>),
    Order(u8, u64, Option<u8>),
    /// Bytes that are no envelope, on a customer's or an order's subject.
    Garbage(bool, u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0..4u8, 1..6u64, proptest::option::weighted(0.8, any::<u8>()))
            .prop_map(|(k, s, v)| Event::Customer(k, s, v)),
        6 => (0..4u8, 1..6u64, proptest::option::weighted(0.8, any::<u8>()))
            .prop_map(|(k, s, v)| Event::Order(k, s, v)),
        1 => (any::<bool>(), 0..4u8).prop_map(|(c, k)| Event::Garbage(c, k)),
    ]
}

fn encode(event: &Event) -> (String, Vec<u8>) {
    use ecst::Sequence;
    match event {
        Event::Customer(k, s, v) => {
            let key = format!("c-{k}");
            let mut p = Producer::<Customer>::new("urn:example:crm");
            let envelope = match v {
                Some(v) => p.upsert_at(customer(&key, &format!("n{v}")), Sequence::new(*s)),
                None => p.delete_at(key.clone(), Sequence::new(*s)),
            };
            (
                format!("bank.customer.{key}"),
                envelope.unwrap().to_json().unwrap(),
            )
        }
        Event::Order(k, s, v) => {
            let key = format!("o-{k}");
            let mut p = Producer::<Order>::new("urn:example:shop");
            let envelope = match v {
                Some(v) => p.upsert_at(order(&key, u64::from(*v)), Sequence::new(*s)),
                None => p.delete_at(key.clone(), Sequence::new(*s)),
            };
            (
                format!("bank.order.{key}"),
                envelope.unwrap().to_json().unwrap(),
            )
        }
        Event::Garbage(to_customer, k) => {
            let entity = if *to_customer { "customer" } else { "order" };
            let prefix = if *to_customer { 'c' } else { 'o' };
            (format!("bank.{entity}.{prefix}-{k}"), b"{oops".to_vec())
        }
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_router_equals_separate_durable_replicas(
        events in proptest::collection::vec(event(), 1..40),
        cuts in proptest::collection::vec(1..8usize, 1..10),
    ) {
        let mut log = Log::new();
        for event in &events {
            let (subject, bytes) = encode(event);
            let mut parts = subject.splitn(3, '.').skip(1);
            let entity = parts.next().unwrap().to_owned();
            let key = parts.next().unwrap().to_owned();
            push(&mut log, &entity, &key, bytes);
        }
        let all = messages(&log, 0);
        block_on(async {
            let mut router = open_router(MemoryRouterStore::new()).await;
            let mut customers = DurableReplica::<Customer, _>::open(MemoryStore::new()).await.unwrap();
            let mut orders = DurableReplica::<Order, _>::open(MemoryStore::new()).await.unwrap();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= all.len() {
                    break;
                }
                let end = (at + cut).min(all.len());
                let batch = &all[at..end];
                router.apply_batch(batch).await.unwrap();
                let of = |entity: &str| -> Vec<Message<'_>> {
                    batch
                        .iter()
                        .filter(|m| matches!(&m.address, ecst::consume::Address::Key { entity: e, .. } if *e == entity))
                        .cloned()
                        .collect()
                };
                customers.apply_batch(&of("customer")).await.unwrap();
                orders.apply_batch(&of("order")).await.unwrap();
                at = end;
            }
            // Every batch once more, as a redelivery after a crash.
            router.apply_batch(&all).await.unwrap();
            let reopened = open_router(router.store().clone()).await;
            prop_assert_eq!(dump(reopened.replica::<Customer>().unwrap()), dump(customers.replica()));
            prop_assert_eq!(dump(reopened.replica::<Order>().unwrap()), dump(orders.replica()));
            let parked_router: Vec<(&str, u64, ParkKind)> = reopened
                .parked()
                .map(|(e, p)| (e, p.stream_sequence, p.reason.kind))
                .collect();
            let mut parked_alone: Vec<(&str, u64, ParkKind)> = customers
                .parked()
                .map(|p| ("customer", p.stream_sequence, p.reason.kind))
                .collect();
            parked_alone.extend(orders.parked().map(|p| ("order", p.stream_sequence, p.reason.kind)));
            prop_assert_eq!(parked_router, parked_alone);
            let applied = customers.checkpoint().map_or(0, |c| c.applied)
                + orders.checkpoint().map_or(0, |c| c.applied);
            prop_assert_eq!(reopened.checkpoint().map(|c| c.applied), Some(applied));
            prop_assert_eq!(reopened.resume_after(), log.len() as u64);
            Ok(())
        })?;
    }
}
