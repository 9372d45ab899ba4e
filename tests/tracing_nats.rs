//! Distributed tracing through a real nats-server, with OpenTelemetry: the
//! producer's span is written into each event as its W3C `traceparent`
//! (by `Producer`, or by `Publisher` for an envelope without one, also as
//! the `ce-traceparent` header in binary mode), and the consumer's apply
//! span of each event is a child of that span in the same trace.

#![cfg(all(feature = "nats", feature = "opentelemetry"))]

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/spans.rs"]
mod spans;

use std::future::{ready, Future};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ecst::envelope::TraceParent;
use ecst::nats::{FollowSettings, Follower, Mode, Publisher, ServerVersion, StateStream, Subjects};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Envelope, Producer, Sequence, StateEvent};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use spans::Capture;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

/// Keeps every finished OpenTelemetry span.
#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl Exported {
    fn named(&self, name: &str) -> Vec<SpanData> {
        let spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

impl SpanExporter for Exported {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        ready(Ok(()))
    }
}

#[tokio::test]
async fn apply_spans_are_children_of_the_producer_span() {
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("ecst-test")))
        .with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = nats_server::NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::new("crm").unwrap();
    StateStream::new("CRM", subjects.clone())
        .ensure(&js, ServerVersion::of(&client).unwrap())
        .await
        .unwrap();

    // The owner changes two customers inside one span of its own.
    let owner_span = tracing::info_span!("update_customers");
    let owner = {
        let context = owner_span.context();
        let span = context.span();
        let ids = span.span_context();
        assert!(ids.is_valid(), "the OpenTelemetry layer gives the span ids");
        TraceParent::new(
            ids.trace_id().to_bytes(),
            ids.span_id().to_bytes(),
            ids.trace_flags().to_u8(),
        )
        .unwrap()
    };
    let structured = Publisher::new(js.clone(), subjects.clone());
    let binary = Publisher::new(js.clone(), subjects.clone()).with_mode(Mode::Binary);
    async {
        let mut producer = Producer::<Customer>::new("urn:example:crm");
        let built = producer
            .upsert(Customer {
                id: "c-1".into(),
                name: "Ada".into(),
            })
            .unwrap();
        // The producer wrote the current span's traceparent.
        assert_eq!(built.traceparent, Some(owner.to_string()));
        structured.publish(&built).await.unwrap();
        // Built by hand, without one: the publisher writes it.
        let by_hand = Envelope::upsert(
            "urn:example:crm",
            "customer:c-2:1",
            Sequence::new(1),
            Customer {
                id: "c-2".into(),
                name: "Grace".into(),
            },
        );
        assert_eq!(by_hand.traceparent, None);
        binary.publish(&by_hand).await.unwrap();
    }
    .instrument(owner_span.clone())
    .await;
    drop(owner_span);

    // On the wire: in the JSON of the structured event, in `ce-traceparent`
    // for the binary one.
    let stream = js.get_stream("CRM").await.unwrap();
    let first = stream
        .get_last_raw_message_by_subject("crm.customer.c-1")
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(json["traceparent"], owner.to_string());
    let second = stream
        .get_last_raw_message_by_subject("crm.customer.c-2")
        .await
        .unwrap();
    let header = second
        .headers
        .get("ce-traceparent")
        .map(|v| v.as_str().to_owned());
    assert_eq!(header, Some(owner.to_string()));

    // The consumer, in a process of its own in real life.
    let mut settings = FollowSettings::new("CRM", "billing", subjects);
    settings.fetch_wait = Duration::from_millis(250);
    settings.lease_ttl = None;
    let durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let mut follower = Follower::start(client, settings, durable).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), follower.catch_up())
        .await
        .expect("caught up in time")
        .unwrap();
    assert_eq!(follower.replica().replica().len(), 2);

    let applied = exported.named("ecst.event");
    assert_eq!(applied.len(), 2, "one apply span per event");
    for span in &applied {
        assert_eq!(
            span.span_context.trace_id().to_bytes(),
            owner.trace_id(),
            "{span:#?}"
        );
        assert_eq!(
            span.parent_span_id.to_bytes(),
            owner.parent_id(),
            "{span:#?}"
        );
        assert!(span.parent_span_is_remote, "{span:#?}");
    }
    // The tracing side sees the same: the batch span names the stream and
    // the durable, and each event span carries the traceparent as sent.
    let batches = capture.spans_named("ecst.batch");
    assert!(!batches.is_empty());
    assert_eq!(
        batches[0].fields.get("stream").map(String::as_str),
        Some("CRM")
    );
    assert_eq!(
        batches[0].fields.get("consumer").map(String::as_str),
        Some("billing")
    );
    for event in capture.spans_named("ecst.event") {
        assert_eq!(event.fields.get("traceparent"), Some(&owner.to_string()));
    }
    provider.shutdown().unwrap();
}
