//! The typed memory store (`MemoryStore::<T>::typed()`, states kept as `T`)
//! holds exactly what the JSON one (`MemoryStore::new()`) holds: random
//! batches of upserts, deletes, stale and undecodable events go through a
//! `DurableReplica` on each, with tombstone purges between them; after
//! every batch both replicas, their checkpoints and parked events are
//! equal, and so are replicas reopened on clones of the stores.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ecst::store::{DurableReplica, MemoryStore, Message, ReplicaStore};
use ecst::{Entry, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "item", version = 1)]
pub struct Item {
    #[state_event(key)]
    pub id: String,
    pub label: String,
    pub count: u32,
}

/// One event: key, sequence, and the change (`None`: a delete; an empty
/// label: a payload that does not decode, to be parked).
fn event() -> impl Strategy<Value = (u8, u64, Option<(String, u32)>)> {
    (
        0..5u8,
        0..6u64,
        proptest::option::weighted(0.8, ("[a-c]{0,2}", 0..3u32)),
    )
}

fn bytes((key, sequence, change): &(u8, u64, Option<(String, u32)>)) -> Vec<u8> {
    let mut event = json!({
        "specversion": "1.0",
        "id": format!("e-{key}-{sequence}"),
        "source": "urn:test",
        "type": "item",
        "subject": format!("i-{key}"),
        "sequence": sequence.to_string(),
        "schemaversion": 1,
        "operation": if change.is_some() { "upsert" } else { "delete" },
    });
    if let Some((label, count)) = change {
        event["data"] = if label.is_empty() {
            json!({"id": format!("i-{key}"), "label": 5, "count": count})
        } else {
            json!({"id": format!("i-{key}"), "label": label, "count": count})
        };
    }
    serde_json::to_vec(&event).expect("JSON")
}

type Contents = BTreeMap<String, (u64, Option<Item>, Option<u32>)>;

fn contents<S: ReplicaStore<Item>>(durable: &DurableReplica<Item, S>) -> Contents {
    let replica = durable.replica();
    replica
        .entries()
        .map(|(key, entry)| {
            let value = match entry {
                Entry::Live { sequence, state } => (
                    sequence.get(),
                    Some(state.clone()),
                    replica.read_version(key),
                ),
                Entry::Tombstone { sequence } => (sequence.get(), None, None),
            };
            (key.clone(), value)
        })
        .collect()
}

fn same<A: ReplicaStore<Item>, B: ReplicaStore<Item>>(
    a: &DurableReplica<Item, A>,
    b: &DurableReplica<Item, B>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(contents(a), contents(b));
    prop_assert_eq!(a.checkpoint(), b.checkpoint());
    prop_assert_eq!(
        a.parked().cloned().collect::<Vec<_>>(),
        b.parked().cloned().collect::<Vec<_>>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_typed_store_holds_what_the_json_store_holds(
        batches in proptest::collection::vec(
            (proptest::collection::vec(event(), 1..10), proptest::bool::weighted(0.3)),
            1..6
        )
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut json = DurableReplica::<Item, _>::open(MemoryStore::new()).await.unwrap();
            let mut typed = DurableReplica::<Item, _>::open(MemoryStore::<Item>::typed())
                .await
                .unwrap();
            let mut stream_sequence = 0;
            for (events, purge) in &batches {
                let payloads: Vec<Vec<u8>> = events.iter().map(bytes).collect();
                let messages: Vec<Message<'_>> = payloads
                    .iter()
                    .map(|payload| {
                        stream_sequence += 1;
                        Message::new(stream_sequence, "items", payload)
                    })
                    .collect();
                let a = json.apply_batch(&messages).await.unwrap();
                let b = typed.apply_batch(&messages).await.unwrap();
                prop_assert_eq!(a.applied, b.applied);
                if *purge {
                    // Every tombstone is older than a second from now.
                    let cutoff = SystemTime::now() + Duration::from_secs(1);
                    prop_assert_eq!(
                        json.purge_tombstones_before(cutoff).await.unwrap(),
                        typed.purge_tombstones_before(cutoff).await.unwrap()
                    );
                }
                same(&json, &typed)?;
                let json_again =
                    DurableReplica::<Item, _>::open(json.store().clone()).await.unwrap();
                let typed_again =
                    DurableReplica::<Item, _>::open(typed.store().clone()).await.unwrap();
                same(&json_again, &typed_again)?;
                same(&json, &typed_again)?;
            }
            Ok(())
        })?;
    }
}
