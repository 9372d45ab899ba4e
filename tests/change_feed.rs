//! The change feed: `Replica::on_change`, a `Router`'s replicas, and
//! `DurableReplica::on_change` (reported after the commit, only what was
//! committed, in order, with the state before and after).

#[path = "support/replica.rs"]
mod common_replica;

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common_replica::{customer, Customer, Order};
use ecst::store::{
    Commit, DurableReplica, Loaded, MemoryStore, Message, ReplicaStore, StoreContext, StoreError,
};
use ecst::{Outcome, Producer, Replica, Router, StateChange, StateEvent};
use proptest::prelude::*;

/// One reported change, owned.
#[derive(Clone, Debug, PartialEq)]
struct Seen<T> {
    entity: &'static str,
    key: String,
    sequence: u64,
    before: Option<T>,
    after: Option<T>,
    outcome: Outcome,
}

/// The changes a [`recorder`] saw.
type SeenList<T> = Arc<Mutex<Vec<Seen<T>>>>;

/// A feed that records every change into the returned list.
fn recorder<T: StateEvent + Clone>() -> (
    SeenList<T>,
    impl FnMut(StateChange<'_, T>) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let feed = move |change: StateChange<'_, T>| {
        sink.lock().unwrap().push(Seen {
            entity: change.entity,
            key: change.key.to_string(),
            sequence: change.sequence.get(),
            before: change.before.cloned(),
            after: change.after.cloned(),
            outcome: change.outcome,
        });
    };
    (seen, feed)
}

fn seen<T: StateEvent>(
    key: &str,
    sequence: u64,
    before: Option<T>,
    after: Option<T>,
    outcome: Outcome,
) -> Seen<T> {
    Seen {
        entity: T::ENTITY,
        key: key.into(),
        sequence,
        before,
        after,
        outcome,
    }
}

fn taken<T>(list: &Arc<Mutex<Vec<T>>>) -> Vec<T> {
    std::mem::take(&mut *list.lock().unwrap())
}

#[test]
fn a_replica_reports_each_change_with_the_state_before_and_after() {
    let mut producer = Producer::<Customer>::new("urn:test");
    let ada = customer("c-1", "Ada");
    let ada2 = customer("c-1", "Ada Lovelace");
    let first = producer.upsert(ada.clone()).unwrap().to_json().unwrap();
    let second = producer.upsert(ada2.clone()).unwrap().to_json().unwrap();
    let delete = producer.delete("c-1".into()).unwrap().to_json().unwrap();
    let again = producer.upsert(ada.clone()).unwrap().to_json().unwrap();

    let mut replica = Replica::<Customer>::new();
    let (list, feed) = recorder();
    replica.on_change(feed);

    replica.apply_json(&first).unwrap();
    replica.apply_json(&first).unwrap(); // a duplicate: nothing changes
    replica.apply_json(&second).unwrap();
    replica.apply_json(&first).unwrap(); // stale: nothing changes
    assert!(replica.apply_json(b"{not an event").is_err());
    replica.apply_json(&delete).unwrap();
    replica.apply_json(&second).unwrap(); // stale under the tombstone
    replica.apply_json(&again).unwrap();
    assert_eq!(
        taken(&list),
        vec![
            seen("c-1", 1, None, Some(ada.clone()), Outcome::Inserted),
            seen(
                "c-1",
                2,
                Some(ada.clone()),
                Some(ada2.clone()),
                Outcome::Updated
            ),
            seen("c-1", 3, Some(ada2), None, Outcome::Deleted),
            seen("c-1", 4, None, Some(ada.clone()), Outcome::Inserted),
        ]
    );

    // A delete of a key never seen records a tombstone: reported, with
    // nothing before or after.
    let mut other = Producer::<Customer>::new("urn:test");
    replica.apply(other.delete("c-9".into()).unwrap());
    assert_eq!(
        taken(&list),
        vec![seen::<Customer>("c-9", 1, None, None, Outcome::Deleted)]
    );

    // Without the observer, nothing is reported.
    replica.clear_on_change();
    replica.apply(other.upsert(customer("c-9", "Bea")).unwrap());
    assert!(taken(&list).is_empty());
    assert_eq!(replica.len(), 2);
}

#[test]
fn a_router_keeps_the_observer_of_each_replica() {
    let mut customers = Replica::<Customer>::new();
    let (customer_changes, feed) = recorder();
    customers.on_change(feed);
    let mut router = Router::new();
    router.add(customers).unwrap();
    router.add(Replica::<Order>::new()).unwrap();
    // Set after `add`, through the router.
    let (order_changes, feed) = recorder();
    router.replica_mut::<Order>().unwrap().on_change(feed);

    let mut customers = Producer::<Customer>::new("urn:test");
    let mut orders = Producer::<Order>::new("urn:test");
    let order = Order {
        number: 7,
        total_cents: 1250,
    };
    for json in [
        customers.upsert(customer("c-1", "Ada")).unwrap().to_json(),
        orders.upsert(order.clone()).unwrap().to_json(),
        orders.delete(7).unwrap().to_json(),
    ] {
        router.apply_json(&json.unwrap()).unwrap();
    }
    assert_eq!(
        taken(&customer_changes),
        vec![seen(
            "c-1",
            1,
            None,
            Some(customer("c-1", "Ada")),
            Outcome::Inserted
        )]
    );
    assert_eq!(
        taken(&order_changes),
        vec![
            seen("7", 1, None, Some(order.clone()), Outcome::Inserted),
            seen("7", 2, Some(order), None, Outcome::Deleted),
        ]
    );
}

proptest! {
    /// A view kept only from the reported changes (insert `after`, or
    /// remove on a delete) equals the replica, whatever the delivery order
    /// and duplication.
    #[test]
    fn a_view_kept_from_the_changes_equals_the_replica(
        plan in proptest::collection::vec((0u8..4, 0u8..3), 1..40),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..60),
    ) {
        let mut producers: HashMap<u8, Producer<Customer>> = HashMap::new();
        let mut events = Vec::new();
        for (key, action) in plan {
            let producer = producers
                .entry(key)
                .or_insert_with(|| Producer::new("urn:test"));
            let id = format!("c-{key}");
            let envelope = if action == 0 {
                producer.delete(id).unwrap()
            } else {
                producer.upsert(customer(&id, &format!("name {action}"))).unwrap()
            };
            events.push(envelope.to_json().unwrap());
        }
        // Shuffled, with duplicates: every event once, then picks.
        let mut delivery: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        for index in &order {
            delivery.push(&events[index.index(events.len())]);
        }
        let len = delivery.len();
        for (i, index) in order.iter().enumerate() {
            delivery.swap(i % len, index.index(len));
        }

        let view: Arc<Mutex<HashMap<String, Customer>>> = Arc::default();
        let mut replica = Replica::<Customer>::new();
        let sink = Arc::clone(&view);
        replica.on_change(move |change: StateChange<'_, Customer>| {
            let mut view = sink.lock().unwrap();
            match change.after {
                Some(state) => view.insert(change.key.clone(), state.clone()),
                None => view.remove(change.key),
            };
        });
        for json in delivery {
            replica.apply_json(json).unwrap();
        }
        let expected: HashMap<String, Customer> = replica
            .iter()
            .map(|(key, state)| (key.clone(), state.clone()))
            .collect();
        prop_assert_eq!(&*view.lock().unwrap(), &expected);
    }
}

/// A memory store whose commits fail while `failing` is set.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
}

impl<T: StateEvent> ReplicaStore<T> for Flaky {
    type Error = StoreError;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<T>, StoreError>> + Send {
        <MemoryStore as ReplicaStore<T>>::load(&mut self.inner)
    }

    fn commit(
        &mut self,
        commit: Commit<'_, T>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        if self.failing.load(Ordering::SeqCst) {
            let context = StoreContext::new("flaky", "test", Some(T::ENTITY));
            return ready(Err(context.database("committing", "the disk is gone")));
        }
        // The memory store's future is ready at once.
        let result = futures_util::FutureExt::now_or_never(
            <MemoryStore as ReplicaStore<T>>::commit(&mut self.inner, commit),
        );
        ready(result.unwrap_or_else(|| {
            Err(StoreContext::new("flaky", "test", None).database("committing", "not ready"))
        }))
    }
}

struct Batch(Vec<(u64, String, Vec<u8>)>);

impl Batch {
    fn of<T: StateEvent>(events: Vec<(u64, ecst::Envelope<T>)>) -> Self {
        Batch(
            events
                .into_iter()
                .map(|(sequence, envelope)| {
                    let subject = format!("test.{}.{}", T::ENTITY, envelope.key);
                    (sequence, subject, envelope.to_json().unwrap())
                })
                .collect(),
        )
    }

    fn messages(&self) -> Vec<Message<'_>> {
        self.0
            .iter()
            .map(|(sequence, subject, payload)| Message::new(*sequence, subject, payload))
            .collect()
    }
}

/// The durable feed: a batch that fails to commit reports nothing; once it
/// commits, its changes come in order, a key changed twice in one batch
/// with the state between the two; a redelivery reports nothing.
#[tokio::test]
async fn a_durable_replica_reports_only_committed_changes_in_order() {
    let store = Flaky::default();
    let failing = Arc::clone(&store.failing);
    let mut durable = DurableReplica::<Customer, _>::open(store).await.unwrap();
    let (list, feed) = recorder();
    durable.on_change(feed);

    let mut producer = Producer::<Customer>::new("urn:test");
    let ada = customer("c-1", "Ada");
    let ada2 = customer("c-1", "Ada Lovelace");
    let bea = customer("c-2", "Bea");
    let batch = Batch::of(vec![
        (1, producer.upsert(ada.clone()).unwrap()),
        (2, producer.upsert(bea.clone()).unwrap()),
        (3, producer.upsert(ada2.clone()).unwrap()),
        (4, producer.delete("c-1".into()).unwrap()),
    ]);

    failing.store(true, Ordering::SeqCst);
    assert!(durable.apply_batch(&batch.messages()).await.is_err());
    assert!(
        taken(&list).is_empty(),
        "nothing committed, nothing reported"
    );

    failing.store(false, Ordering::SeqCst);
    durable.apply_batch(&batch.messages()).await.unwrap();
    assert_eq!(
        taken(&list),
        vec![
            seen("c-1", 1, None, Some(ada.clone()), Outcome::Inserted),
            seen("c-2", 1, None, Some(bea), Outcome::Inserted),
            seen("c-1", 2, Some(ada), Some(ada2.clone()), Outcome::Updated),
            seen("c-1", 3, Some(ada2), None, Outcome::Deleted),
        ]
    );

    // Redelivered (an acknowledgement lost): duplicates and stale events,
    // no change, nothing reported.
    durable.apply_batch(&batch.messages()).await.unwrap();
    assert!(taken(&list).is_empty());
}
