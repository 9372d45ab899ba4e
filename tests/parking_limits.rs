//! A flood of bad messages cannot grow a replica's parking lot without
//! bound: past its pending limits the oldest pending messages are discarded
//! visibly (resolved with the reason, reported, then purged), and the keys'
//! later events still apply.

use ecst::consume::{ParkingLimits, Resolution};
use ecst::store::{DurableReplica, MemoryStore, Message};
use ecst::{Producer, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "note", version = 1)]
pub struct Note {
    #[state_event(key)]
    pub id: String,
    pub text: String,
}

#[tokio::test]
async fn a_flood_of_bad_messages_stays_within_the_limits() {
    let limits = ParkingLimits {
        max_pending: 3,
        max_pending_bytes: 1 << 20,
        max_resolved: 2,
        ..ParkingLimits::default()
    };
    let mut durable = DurableReplica::<Note, _>::open(MemoryStore::new())
        .await
        .unwrap()
        .with_parking_limits(limits);
    // Ten pieces of junk, each on a key of its own.
    let junk: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("notes.n-{i}"), format!("junk {i}").into_bytes()))
        .collect();
    let messages: Vec<Message<'_>> = junk
        .iter()
        .enumerate()
        .map(|(i, (subject, payload))| {
            Message::new(i as u64 + 1, subject, payload).addressed_to("note", format!("n-{i}"))
        })
        .collect();
    let outcome = durable.apply_batch(&messages).await.unwrap();
    assert_eq!(outcome.parked.len(), 10, "every message is parked first");
    assert_eq!(outcome.overflowed, (1..=7).collect::<Vec<u64>>());
    assert_eq!(durable.pending_parked(), 3);
    assert!(
        durable.parked_len() <= 3 + 2,
        "resolved ones are purged past their limit"
    );
    let kept: Vec<u64> = durable
        .parked()
        .filter(|p| p.is_pending())
        .map(|p| p.stream_sequence)
        .collect();
    assert_eq!(kept, vec![8, 9, 10], "the newest pending are kept");
    for parked in durable.parked().filter(|p| !p.is_pending()) {
        assert!(
            matches!(&parked.resolution, Some(Resolution::Discarded(why)) if why.contains("over its limit")),
            "{parked:?}"
        );
    }
    // A valid event of an overflowed key applies as usual.
    let mut producer = Producer::<Note>::new("urn:notes");
    let event = producer
        .upsert(Note {
            id: "n-0".into(),
            text: "fine".into(),
        })
        .unwrap()
        .to_json()
        .unwrap();
    durable
        .apply_batch(&[Message::new(11, "notes.n-0", &event).addressed_to("note", "n-0")])
        .await
        .unwrap();
    assert_eq!(
        durable.replica().get("n-0").map(|n| n.text.as_str()),
        Some("fine")
    );
    // And the store holds what memory holds.
    let reopened = DurableReplica::<Note, _>::open(durable.store().clone())
        .await
        .unwrap();
    assert_eq!(
        reopened.parked().cloned().collect::<Vec<_>>(),
        durable.parked().cloned().collect::<Vec<_>>()
    );
}
