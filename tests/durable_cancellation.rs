//! Every async method of `DurableReplica` is cancellation-safe: its future
//! dropped at any await point (a `select!`, a `timeout`) leaves the store
//! with the whole batch or none of it, memory never ahead of the store, and
//! a redelivery of the batch brings the replica to the owner's state.
//!
//! A store wrapper stops each commit at a chosen point: before writing
//! (the commit never reached the database) or after writing (it did, but
//! the answer was lost), and the test drops the future there.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ecst::store::{Commit, DurableReplica, Loaded, MemoryStore, Message, ReplicaStore};
use ecst::{Entry, Producer, StateEvent};
use futures_util::FutureExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "item", version = 1)]
pub struct Item {
    #[state_event(key)]
    pub id: String,
    pub count: u64,
}

/// Where a commit stops (never to finish) instead of returning.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    /// Return normally.
    Never,
    /// Pend before writing anything.
    BeforeWrite,
    /// Write, then pend: the store has the batch, the caller never learns.
    AfterWrite,
}

/// A `MemoryStore`, shared by its clones (a database several connections
/// see), whose commits stop where they are told to.
#[derive(Clone)]
struct Stopping {
    inner: Arc<Mutex<MemoryStore>>,
    stop: Arc<AtomicUsize>,
}

impl Stopping {
    fn set(&self, stop: Stop) {
        self.stop.store(stop as usize, Ordering::SeqCst);
    }
}

/// A future that is never ready.
struct Forever;

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl ReplicaStore<Item> for Stopping {
    type Error = ecst::store::StoreError;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<Item>, Self::Error>> + Send {
        // MemoryStore does its work when called; its future is ready.
        let loaded = {
            let mut inner = self.inner.lock().unwrap();
            ReplicaStore::<Item>::load(&mut *inner)
                .now_or_never()
                .expect("MemoryStore loads at once")
        };
        async move { loaded }
    }

    fn commit(
        &mut self,
        commit: Commit<'_, Item>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let stop = match self.stop.load(Ordering::SeqCst) {
            0 => Stop::Never,
            1 => Stop::BeforeWrite,
            _ => Stop::AfterWrite,
        };
        let inner = Arc::clone(&self.inner);
        // Encoded now, written when the future first runs (or never).
        let mut pending = Some(MemoryStore::new());
        {
            let scratch = pending.as_mut().unwrap();
            *scratch = inner.lock().unwrap().clone();
            ReplicaStore::<Item>::commit(scratch, commit)
                .now_or_never()
                .expect("MemoryStore commits at once")
                .unwrap();
        }
        async move {
            if stop == Stop::BeforeWrite {
                Forever.await;
            }
            if let Some(written) = pending.take() {
                *inner.lock().unwrap() = written;
            }
            if stop == Stop::AfterWrite {
                Forever.await;
            }
            Ok(())
        }
    }
}

fn contents<S: ReplicaStore<Item>>(
    durable: &DurableReplica<Item, S>,
) -> Vec<(String, u64, Option<u64>)> {
    let mut out: Vec<_> = durable
        .replica()
        .entries()
        .map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => (key.clone(), sequence.get(), Some(state.count)),
            Entry::Tombstone { sequence } => (key.clone(), sequence.get(), None),
        })
        .collect();
    out.sort();
    out
}

/// Drops `apply_batch` inside every commit, before and after the write, on
/// every batch of a stream; each time the batch is delivered again (as the
/// broker would, unacknowledged). In the end the replica, in memory and in
/// the store, equals the owner's state and the checkpoint is exact.
#[tokio::test]
async fn apply_batch_dropped_mid_commit_loses_nothing() {
    let store = Stopping {
        inner: Arc::new(Mutex::new(MemoryStore::new())),
        stop: Arc::new(AtomicUsize::new(0)),
    };
    let mut producer = Producer::<Item>::new("urn:test");
    let mut events = Vec::new();
    for round in 0..6u64 {
        for k in 0..5 {
            let envelope = producer
                .upsert(Item {
                    id: format!("i-{k}"),
                    count: round * 10 + k,
                })
                .unwrap();
            events.push(envelope.to_json().unwrap());
        }
    }
    let mut durable = DurableReplica::<Item, _>::open(store.clone())
        .await
        .unwrap();
    let mut stream_sequence = 0;
    for (round, batch) in events.chunks(5).enumerate() {
        let messages: Vec<Message<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, payload)| Message::new(stream_sequence + i as u64 + 1, "items", payload))
            .collect();
        for stop in [Stop::BeforeWrite, Stop::AfterWrite] {
            store.set(stop);
            let dropped =
                tokio::time::timeout(std::time::Duration::ZERO, durable.apply_batch(&messages))
                    .await;
            assert!(
                dropped.is_err(),
                "round {round}: the commit must be dropped ({stop:?})"
            );
            // Whatever memory holds now, the next call must start from the
            // store: a replica reopened from it agrees with one that goes on.
            let reopened = DurableReplica::<Item, _>::open(store.clone())
                .await
                .unwrap();
            store.set(Stop::Never);
            let outcome = durable.apply_batch(&[]).await.unwrap();
            assert!(outcome.applied.is_empty());
            assert_eq!(
                contents(&durable),
                contents(&reopened),
                "round {round}, {stop:?}"
            );
            assert_eq!(durable.checkpoint(), reopened.checkpoint());
        }
        // Delivered again, as an unacknowledged batch is.
        store.set(Stop::Never);
        durable.apply_batch(&messages).await.unwrap();
        stream_sequence += batch.len() as u64;
    }
    let expected: Vec<(String, u64, Option<u64>)> = (0..5)
        .map(|k| (format!("i-{k}"), 6, Some(50 + k)))
        .collect();
    assert_eq!(contents(&durable), expected);
    let reopened = DurableReplica::<Item, _>::open(store.clone())
        .await
        .unwrap();
    assert_eq!(contents(&reopened), expected);
    let checkpoint = reopened.checkpoint().unwrap();
    assert_eq!(checkpoint.stream_sequence, 30);
    assert_eq!(checkpoint.applied, 30, "every event applied exactly once");
}
