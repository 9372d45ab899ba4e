//! Replicas converge: whatever the delivery order and however often an event
//! is redelivered, a replica ends up holding exactly the producer's final
//! state, with tombstones for the deleted keys. The same holds through a
//! `Router` and when partial replicas are merged by snapshot.

#[path = "support/replica.rs"]
mod common_replica;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use common_replica::{live, snapshot, Customer, Order};
use ecst::{Entry, Outcome, Producer, Replica, Router, Sequence, StateEvent};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// One step of the owner's history.
#[derive(Clone, Debug)]
enum Op<T: StateEvent> {
    Upsert(T),
    Delete(T::Key),
}

/// One published event: its bytes and what it says.
#[derive(Clone, Debug)]
struct Event<K> {
    bytes: Vec<u8>,
    key: K,
    sequence: u64,
    upsert: bool,
}

/// The events a producer published for a history, and the final state per
/// key: the last sequence and the state (`None` when the last event was a
/// delete).
struct History<T: StateEvent> {
    events: Vec<Event<T::Key>>,
    last: HashMap<T::Key, (u64, Option<T>)>,
}

fn publish<T: StateEvent + Clone>(ops: &[Op<T>]) -> History<T> {
    let mut producer = Producer::<T>::new("urn:example:owner");
    let mut events = Vec::new();
    let mut last = HashMap::new();
    for op in ops {
        let envelope = match op {
            Op::Upsert(state) => producer.upsert(state.clone()).expect("sequence"),
            Op::Delete(key) => producer.delete(key.clone()).expect("sequence"),
        };
        let key = envelope.key.clone();
        let sequence = envelope.sequence.get();
        // The counter is per key: one above the key's previous event.
        let previous = last.get(&key).map_or(0, |(s, _)| *s);
        assert_eq!(sequence, previous + 1, "per-key counter");
        last.insert(key.clone(), (sequence, envelope.state().cloned()));
        events.push(Event {
            bytes: envelope.to_json().expect("encode"),
            key,
            sequence,
            upsert: matches!(op, Op::Upsert(_)),
        });
    }
    History { events, last }
}

/// The version gate, written out independently: per key, the sequence held
/// and whether it is live.
#[derive(Default)]
struct Model<K>(HashMap<K, (u64, bool)>);

impl<K: std::hash::Hash + Eq + Clone> Model<K> {
    fn apply(&mut self, event: &Event<K>) -> Outcome {
        let held = self.0.get(&event.key).copied();
        let outcome = match held {
            None if event.upsert => Outcome::Inserted,
            None => Outcome::Deleted,
            Some((s, _)) if event.sequence < s => Outcome::Stale,
            Some((s, _)) if event.sequence == s => Outcome::Duplicate,
            Some((_, _)) if !event.upsert => Outcome::Deleted,
            Some((_, true)) => Outcome::Updated,
            Some((_, false)) => Outcome::Inserted,
        };
        if matches!(
            outcome,
            Outcome::Inserted | Outcome::Updated | Outcome::Deleted
        ) {
            self.0
                .insert(event.key.clone(), (event.sequence, event.upsert));
        }
        outcome
    }
}

/// The replica holds exactly the final state: the live entities, and a
/// tombstone at the delete's sequence for every key whose last event was a
/// delete.
fn assert_converged<T>(replica: &Replica<T>, history: &History<T>) -> Result<(), TestCaseError>
where
    T: StateEvent + Clone + PartialEq + Debug,
{
    let expected: HashMap<T::Key, T> = history
        .last
        .iter()
        .filter_map(|(key, (_, state))| state.clone().map(|s| (key.clone(), s)))
        .collect();
    let deleted = history.last.len() - expected.len();
    prop_assert_eq!(live(replica), expected.clone());
    prop_assert_eq!(replica.len(), expected.len());
    prop_assert_eq!(replica.is_empty(), expected.is_empty());
    prop_assert_eq!(replica.tombstones(), deleted);
    prop_assert_eq!(replica.entries().count(), history.last.len());
    for (key, (sequence, state)) in &history.last {
        let sequence = Sequence::new(*sequence);
        match state {
            Some(state) => {
                prop_assert_eq!(replica.get(key), Some(state));
                prop_assert_eq!(replica.entry(key), Some(Entry::Live { sequence, state }));
            }
            None => {
                prop_assert_eq!(replica.get(key), None);
                prop_assert_eq!(replica.entry(key), Some(Entry::Tombstone { sequence }));
            }
        }
    }
    Ok(())
}

fn customer_op(keys: usize) -> impl Strategy<Value = Op<Customer>> {
    prop_oneof![
        3 => (0..keys, "[a-z]{0,6}", option::of("[a-z]{1,4}"), any::<u64>()).prop_map(
            |(k, name, email, credit)| Op::Upsert(Customer {
                id: format!("c-{k}"),
                name,
                email,
                credit,
            })
        ),
        1 => (0..keys).prop_map(|k| Op::Delete(format!("c-{k}"))),
    ]
}

fn order_op(keys: u64) -> impl Strategy<Value = Op<Order>> {
    prop_oneof![
        3 => (0..keys, any::<u64>()).prop_map(|(number, total_cents)| Op::Upsert(Order {
            number,
            total_cents,
        })),
        1 => (0..keys).prop_map(Op::Delete),
    ]
}

/// Histories over 3 to 5 keys, 1 to 40 events.
fn customer_history() -> impl Strategy<Value = Vec<Op<Customer>>> {
    (3usize..=5).prop_flat_map(|keys| vec(customer_op(keys), 1..=40))
}

fn order_history() -> impl Strategy<Value = Vec<Op<Order>>> {
    (3u64..=5).prop_flat_map(|keys| vec(order_op(keys), 1..=40))
}

/// A delivery schedule of `n` events: every event at least once, some again,
/// in any order.
fn schedule(n: usize) -> impl Strategy<Value = Vec<usize>> {
    vec(0..n, 0..=n).prop_flat_map(move |redelivered| {
        let mut order: Vec<usize> = (0..n).collect();
        order.extend(redelivered);
        Just(order).prop_shuffle()
    })
}

fn customer_scenario() -> impl Strategy<Value = (Vec<Op<Customer>>, Vec<usize>)> {
    customer_history().prop_flat_map(|ops| {
        let n = ops.len();
        (Just(ops), schedule(n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Any order, any redelivery: the replica converges, every outcome is
    /// what the version gate prescribes, a redelivered event never changes
    /// anything, and the stats add up.
    #[test]
    fn replica_converges_in_any_order_with_duplicates((ops, order) in customer_scenario()) {
        let history = publish(&ops);
        let mut replica = Replica::<Customer>::new();
        let mut model = Model::default();
        let mut seen = HashSet::new();
        for &i in &order {
            let event = &history.events[i];
            let outcome = replica.apply_json(&event.bytes);
            prop_assert!(outcome.is_ok(), "rejected: {:?}", outcome);
            let outcome = outcome.unwrap();
            prop_assert_eq!(outcome, model.apply(event));
            if !seen.insert(i) {
                prop_assert!(
                    matches!(outcome, Outcome::Duplicate | Outcome::Stale),
                    "a redelivered event changed the replica: {:?}", outcome
                );
            }
        }
        assert_converged(&replica, &history)?;
        let stats = replica.stats();
        prop_assert_eq!(stats.applied() + stats.duplicates + stats.stale, order.len() as u64);
        prop_assert_eq!(stats.rejected, 0);
        prop_assert_eq!(stats.future_version, 0);
        // Each event is applied at most once, and the last event of every key
        // exactly once.
        prop_assert!(stats.applied() <= history.events.len() as u64);
        prop_assert!(stats.applied() >= history.last.len() as u64);
    }

    /// In producer order every event applies; replaying the whole stream
    /// afterwards changes nothing: each key's last event is a duplicate,
    /// everything before it stale.
    #[test]
    fn in_order_applies_everything_and_a_replay_nothing(ops in customer_history()) {
        let history = publish(&ops);
        let mut replica = Replica::<Customer>::new();
        for event in &history.events {
            let outcome = replica.apply_json(&event.bytes).unwrap();
            prop_assert!(
                matches!(outcome, Outcome::Inserted | Outcome::Updated | Outcome::Deleted),
                "{:?}", outcome
            );
        }
        let stats = replica.stats();
        prop_assert_eq!(stats.applied(), history.events.len() as u64);
        prop_assert_eq!(stats.deleted, ops.iter().filter(|op| matches!(op, Op::Delete(_))).count() as u64);
        for event in &history.events {
            replica.apply_json(&event.bytes).unwrap();
        }
        let replayed = replica.stats();
        prop_assert_eq!(replayed.applied(), stats.applied());
        prop_assert_eq!(replayed.duplicates, history.last.len() as u64);
        prop_assert_eq!(replayed.stale, (history.events.len() - history.last.len()) as u64);
        assert_converged(&replica, &history)?;
    }

    /// Two entity types interleaved through one router: each replica
    /// converges on its own history, and each event is routed to its type.
    #[test]
    fn router_converges_for_two_interleaved_entities(
        (customers, orders, order) in (customer_history(), order_history()).prop_flat_map(|(c, o)| {
            let n = c.len() + o.len();
            (Just(c), Just(o), schedule(n))
        })
    ) {
        let customers = publish(&customers);
        let orders = publish(&orders);
        let mut router = Router::new();
        router.add(Replica::<Customer>::new()).unwrap();
        router.add(Replica::<Order>::new()).unwrap();
        let mut customer_model = Model::default();
        let mut order_model = Model::default();
        let split = customers.events.len();
        for &i in &order {
            let routed = router.apply_json(if i < split {
                &customers.events[i].bytes
            } else {
                &orders.events[i - split].bytes
            });
            prop_assert!(routed.is_ok(), "rejected: {:?}", routed);
            let routed = routed.unwrap();
            if i < split {
                prop_assert_eq!(routed.entity, "customer");
                prop_assert_eq!(routed.outcome, customer_model.apply(&customers.events[i]));
            } else {
                prop_assert_eq!(routed.entity, "order");
                prop_assert_eq!(routed.outcome, order_model.apply(&orders.events[i - split]));
            }
        }
        prop_assert_eq!(router.rejected(), 0);
        let customer_replica = router.replica::<Customer>().unwrap();
        let order_replica = router.replica::<Order>().unwrap();
        assert_converged(customer_replica, &customers)?;
        assert_converged(order_replica, &orders)?;
        let (c, o) = (customer_replica.stats(), order_replica.stats());
        prop_assert_eq!(
            c.applied() + c.duplicates + c.stale + o.applied() + o.duplicates + o.stale,
            order.len() as u64
        );
        prop_assert_eq!(c.rejected + o.rejected, 0);
    }

    /// A replica that saw part of the stream, exported as a snapshot and
    /// merged with one that saw the rest, converges, whichever side imports
    /// and whether the import comes before or after the events.
    #[test]
    fn snapshot_merge_of_partial_replicas_converges(
        (ops, order, cut) in customer_scenario().prop_flat_map(|(ops, order)| {
            let len = order.len();
            (Just(ops), Just(order), 0..=len)
        })
    ) {
        let history = publish(&ops);
        let (head, tail) = order.split_at(cut);
        let fill = |indices: &[usize]| {
            let mut replica = Replica::<Customer>::new();
            for &i in indices {
                replica.apply_json(&history.events[i].bytes).unwrap();
            }
            replica
        };
        let mut first = fill(head);
        let mut second = fill(tail);
        let first_snapshot = snapshot(&first);
        let second_snapshot = snapshot(&second);

        // The rest imports the head's snapshot.
        let stats_before = second.stats();
        let merged = second.import_snapshot(&first_snapshot).unwrap();
        prop_assert_eq!(
            merged.applied() + merged.duplicates + merged.stale,
            first.entries().count() as u64
        );
        prop_assert_eq!(merged.rejected, 0);
        prop_assert_eq!(second.stats(), stats_before, "an import is not counted as events");
        assert_converged(&second, &history)?;

        // And the other way round.
        first.import_snapshot(&second_snapshot).unwrap();
        assert_converged(&first, &history)?;
        prop_assert_eq!(snapshot(&first), snapshot(&second));

        // Import first, then the rest of the events.
        let mut third = Replica::<Customer>::new();
        third.import_snapshot(&first_snapshot).unwrap();
        for &i in tail {
            third.apply_json(&history.events[i].bytes).unwrap();
        }
        assert_converged(&third, &history)?;

        // A snapshot of the converged replica restores it whole.
        let mut restored = Replica::<Customer>::new();
        restored.import_snapshot(&snapshot(&second)).unwrap();
        assert_converged(&restored, &history)?;
        prop_assert_eq!(snapshot(&restored), snapshot(&second));
    }
}

/// An event that competes with the producer's own at the same key and
/// sequence: another state (written in the current schema version or in
/// version 1), or a delete. Two owner instances racing, or a foreign
/// publisher, produce these.
#[derive(Clone, Debug)]
enum Rival {
    Upsert { name: String, credit: u32 },
    UpsertV1 { name: String, credit: u32 },
    Delete,
}

fn rival() -> impl Strategy<Value = Rival> {
    prop_oneof![
        ("[a-z]{0,3}", 0u32..3).prop_map(|(name, credit)| Rival::Upsert { name, credit }),
        ("[a-z]{0,3}", 0u32..3).prop_map(|(name, credit)| Rival::UpsertV1 { name, credit }),
        Just(Rival::Delete),
    ]
}

/// What a rival event is, on the wire and as the replica reads it: its
/// bytes, whether it deletes, the schema version it is read at, and the
/// state read.
fn rival_event(key: &str, sequence: u64, rival: &Rival) -> (Vec<u8>, Option<(u32, Customer)>) {
    let attrs = |version: u32, operation: &str| {
        format!(
            r#""specversion":"1.0","id":"rival:{key}:{sequence}","source":"urn:rival","type":"customer","subject":"{key}","sequence":"{sequence}","schemaversion":{version},"operation":"{operation}""#
        )
    };
    match rival {
        Rival::Delete => (format!("{{{}}}", attrs(2, "delete")).into_bytes(), None),
        Rival::Upsert { name, credit } => {
            let state = Customer {
                id: key.to_owned(),
                name: name.clone(),
                email: None,
                credit: u64::from(*credit),
            };
            let data = serde_json::to_string(&state).unwrap();
            let bytes = format!("{{{},\"data\":{data}}}", attrs(2, "upsert")).into_bytes();
            (bytes, Some((2, state)))
        }
        Rival::UpsertV1 { name, credit } => {
            let data = format!(r#"{{"id":"{key}","full_name":"{name}","credit":{credit}}}"#);
            let bytes = format!("{{{},\"data\":{data}}}", attrs(1, "upsert")).into_bytes();
            let state = Customer {
                id: key.to_owned(),
                name: name.clone(),
                email: None,
                credit: u64::from(*credit),
            };
            (bytes, Some((1, state)))
        }
    }
}

/// One event as the tie-break sees it: key, sequence, and the schema
/// version and state read (`None` for a delete).
type Read = (String, u64, Option<(u32, Customer)>);

/// The documented tie-break, written out independently: per key, among the
/// events of the highest sequence, a delete wins; then the higher schema
/// version read at; then the greater JSON serialization.
fn expected_winners(events: &[Read]) -> HashMap<String, (u64, Option<Customer>)> {
    type Rank = (u64, bool, u32, Vec<u8>);
    let rank = |sequence: u64, read: &Option<(u32, Customer)>| -> Rank {
        match read {
            None => (sequence, true, 0, Vec::new()),
            Some((version, state)) => (
                sequence,
                false,
                *version,
                serde_json::to_vec(state).unwrap(),
            ),
        }
    };
    let mut best: HashMap<String, (Rank, Option<Customer>)> = HashMap::new();
    for (key, sequence, read) in events {
        let candidate = rank(*sequence, read);
        let better = best.get(key).is_none_or(|(held, _)| candidate > *held);
        if better {
            best.insert(
                key.clone(),
                (candidate, read.as_ref().map(|(_, s)| s.clone())),
            );
        }
    }
    best.into_iter()
        .map(|(key, (rank, state))| (key, (rank.0, state)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    /// Two different events at one sequence (the producer's own and a
    /// rival: another state, a version-1 state, a delete), delivered in two
    /// different orders with redeliveries: both replicas end identical, and
    /// equal to what the documented tie-break prescribes.
    #[test]
    fn ties_at_one_sequence_resolve_the_same_in_every_order(
        (ops, rivals, first, second) in customer_history().prop_flat_map(|ops| {
            let n = ops.len();
            (Just(ops), vec((0..n, rival()), 1..=n))
        }).prop_flat_map(|(ops, rivals)| {
            let n = ops.len() + rivals.len();
            (Just(ops), Just(rivals), schedule(n), schedule(n))
        })
    ) {
        let history = publish(&ops);
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        let mut read: Vec<Read> = Vec::new();
        for (event, op) in history.events.iter().zip(&ops) {
            bytes.push(event.bytes.clone());
            let state = match op {
                Op::Upsert(state) => Some((2, state.clone())),
                Op::Delete(_) => None,
            };
            read.push((event.key.clone(), event.sequence, state));
        }
        for (target, rival) in &rivals {
            let event = &history.events[*target];
            let (rival_bytes, rival_read) = rival_event(&event.key, event.sequence, rival);
            bytes.push(rival_bytes);
            read.push((event.key.clone(), event.sequence, rival_read));
        }
        let deliver = |order: &[usize]| {
            let mut replica = Replica::<Customer>::new();
            for &i in order {
                replica.apply_json(&bytes[i]).expect("every event is valid");
            }
            replica
        };
        let one = deliver(&first);
        let two = deliver(&second);
        prop_assert_eq!(snapshot(&one), snapshot(&two));
        for (key, (sequence, state)) in expected_winners(&read) {
            let sequence = Sequence::new(sequence);
            match &state {
                Some(state) => prop_assert_eq!(one.entry(&key), Some(Entry::Live { sequence, state })),
                None => prop_assert_eq!(one.entry(&key), Some(Entry::Tombstone { sequence })),
            }
        }
    }
}

/// The case count: `ECST_PROPTEST_CASES` when set (say 10000 for a long
/// run), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("ECST_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
