//! The `tracing` spans of the durable apply path, without any transport: a
//! `DurableReplica` over the memory store, a batch of known messages, and a
//! capturing subscriber (`support/spans.rs`). Asserts the batch span and
//! its fields, one event span per applied event with the CloudEvents
//! attributes and the `traceparent` as sent, the outcome, the parked
//! message's event, and that a malformed `traceparent` is only reported.

#![cfg(feature = "tracing")]

#[path = "support/spans.rs"]
mod spans;

use ecst::store::{DurableReplica, MemoryStore, Message};
use ecst::{Producer, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use spans::Capture;
use tracing_subscriber::layer::SubscriberExt;

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const MALFORMED: &str = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";

fn customer(id: &str, name: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn a_batch_and_each_event_get_a_span_with_their_attributes() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let first = producer
        .upsert(customer("c-1", "Ada"))
        .unwrap()
        .with_traceparent(TRACEPARENT)
        .to_json()
        .unwrap();
    let second = producer
        .upsert(customer("c-2", "Grace"))
        .unwrap()
        .with_traceparent(MALFORMED)
        .to_json()
        .unwrap();
    let messages = [
        Message::new(11, "crm.customer.c-1", &first).addressed_to("customer", "c-1"),
        Message::new(12, "crm.customer.c-2", &second).addressed_to("customer", "c-2"),
        Message::new(13, "crm.customer.c-3", b"not json").addressed_to("customer", "c-3"),
        // A redelivery: a duplicate.
        Message::new(14, "crm.customer.c-1", &first).addressed_to("customer", "c-1"),
    ];
    let mut durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap()
        .with_consumer("CRM", "billing");
    let outcome = durable.apply_batch(&messages).await.unwrap();
    assert_eq!(outcome.applied.len(), 3);
    assert_eq!(outcome.parked.len(), 1);

    let batches = capture.spans_named("ecst.batch");
    assert_eq!(batches.len(), 1, "{batches:#?}");
    let batch = &batches[0];
    assert_eq!(batch.target, "ecst");
    for (field, value) in [
        ("stream", "CRM"),
        ("consumer", "billing"),
        ("entity", "customer"),
        ("count", "4"),
        ("first", "11"),
        ("last", "14"),
        ("applied", "3"),
        ("parked", "1"),
    ] {
        assert_eq!(
            batch.fields.get(field).map(String::as_str),
            Some(value),
            "{field}: {batch:#?}"
        );
    }

    let events = capture.spans_named("ecst.event");
    assert_eq!(events.len(), 3, "one span per decoded event: {events:#?}");
    for event in &events {
        assert_eq!(
            event.parent,
            Some(batch.id),
            "inside the batch span: {event:#?}"
        );
    }
    let expect = [
        ("11", "customer:c-1:1", "c-1", Some(TRACEPARENT), "inserted"),
        ("12", "customer:c-2:1", "c-2", Some(MALFORMED), "inserted"),
        (
            "14",
            "customer:c-1:1",
            "c-1",
            Some(TRACEPARENT),
            "duplicate",
        ),
    ];
    for (event, (stream_sequence, id, subject, traceparent, outcome)) in events.iter().zip(expect) {
        let field = |name: &str| event.fields.get(name).map(String::as_str);
        assert_eq!(
            field("stream_sequence"),
            Some(stream_sequence),
            "{event:#?}"
        );
        assert_eq!(field("id"), Some(id), "{event:#?}");
        assert_eq!(field("type"), Some("customer"), "{event:#?}");
        assert_eq!(field("subject"), Some(subject), "{event:#?}");
        assert_eq!(field("sequence"), Some("1"), "{event:#?}");
        assert_eq!(field("schemaversion"), Some("1"), "{event:#?}");
        assert_eq!(field("traceparent"), traceparent, "{event:#?}");
        assert_eq!(field("outcome"), Some(outcome), "{event:#?}");
    }

    // The malformed traceparent is reported inside its event's span, and
    // nothing else happens to the event (it applied, above).
    let malformed = capture.events_saying("ignored a malformed traceparent");
    assert_eq!(malformed.len(), 1, "{:#?}", capture.events());
    assert_eq!(malformed[0].span, Some(events[1].id));
    assert_eq!(
        malformed[0].fields.get("error").map(String::as_str),
        Some("the trace id is not lower-case hexadecimal")
    );

    // The parked message: an event in the batch span, with its reason.
    let parked = capture.events_saying("parked");
    assert_eq!(parked.len(), 1, "{:#?}", capture.events());
    assert_eq!(parked[0].span, Some(batch.id));
    let field = |name: &str| parked[0].fields.get(name).map(String::as_str);
    assert_eq!(field("stream_sequence"), Some("13"));
    assert_eq!(field("key"), Some("c-3"));
    assert_eq!(field("kind"), Some("invalid"));
}

#[tokio::test]
async fn retrying_parked_events_is_a_batch_span_too() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let junk = [Message::new(1, "crm.customer.c-9", b"{}").addressed_to("customer", "c-9")];
    durable.apply_batch(&junk).await.unwrap();
    durable.retry_parked().await.unwrap();
    let batches = capture.spans_named("ecst.batch");
    assert_eq!(batches.len(), 2, "{batches:#?}");
    // Unnamed: empty stream and consumer.
    assert_eq!(
        batches[1].fields.get("consumer").map(String::as_str),
        Some("")
    );
    assert_eq!(
        batches[1].fields.get("count").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        batches[1].fields.get("parked").map(String::as_str),
        Some("1")
    );
}

#[tokio::test]
async fn bootstrap_answers_get_spans_too() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let answer = Producer::<Customer>::new("urn:example:crm")
        .upsert(customer("c-5", "Barbara"))
        .unwrap()
        .with_traceparent(TRACEPARENT)
        .to_json()
        .unwrap();
    let mut durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap();
    durable.merge_unsequenced(&[&answer]).await.unwrap();
    let batches = capture.spans_named("ecst.batch");
    assert_eq!(batches.len(), 1, "{batches:#?}");
    assert_eq!(
        batches[0].fields.get("applied").map(String::as_str),
        Some("1")
    );
    let events = capture.spans_named("ecst.event");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].parent, Some(batches[0].id));
    let field = |name: &str| events[0].fields.get(name).map(String::as_str);
    assert_eq!(field("subject"), Some("c-5"));
    assert_eq!(field("stream_sequence"), Some("0"));
    assert_eq!(field("traceparent"), Some(TRACEPARENT));
    assert_eq!(field("outcome"), Some("inserted"));
}
