//! The metrics of the durable apply path, read back from a local recorder
//! (`support/recorder.rs`): the outcome counters (applied, duplicate,
//! stale), parked events by reason, superseded parked events, the size and
//! parked gauges and the latency histogram after known batches; and, against
//! a real nats-server, the consumer lag a `Follower` reports.

#![cfg(feature = "metrics")]

#[path = "support/recorder.rs"]
mod recorder;

use ecst::store::{DurableReplica, MemoryStore, Message};
use ecst::{Producer, Sequence, StateEvent};
use recorder::Recorded;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

fn customer(id: &str, name: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
    }
}

const LABELS: &str = "consumer=billing,entity=customer";

fn name(metric: &str) -> String {
    format!("{metric}{{{LABELS}}}")
}

fn with_reason(metric: &str, reason: &str) -> String {
    format!("{metric}{{{LABELS},reason={reason}}}")
}

/// A message of `key` at stream sequence `seq`.
fn at<'a>(seq: u64, key: &'a str, payload: &'a [u8]) -> Message<'a> {
    Message::new(seq, "crm.customer", payload).addressed_to("customer", key)
}

/// The JSON of `json` rewritten to schema version 9, which this build does
/// not know.
fn future_version(json: &[u8]) -> Vec<u8> {
    String::from_utf8(json.to_vec())
        .unwrap()
        .replace("\"schemaversion\":1", "\"schemaversion\":9")
        .replace("customer:v1", "customer:v9")
        .into_bytes()
}

#[tokio::test]
async fn a_known_batch_is_counted_by_outcome_and_reason() {
    let recorder = Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let json = |envelope: ecst::Envelope<Customer>| envelope.to_json().unwrap();
    let c1_v1 = json(producer.upsert(customer("c-1", "Ada")).unwrap());
    let c2 = json(producer.upsert(customer("c-2", "Grace")).unwrap());
    let c1_v2 = json(producer.upsert(customer("c-1", "Ada King")).unwrap());
    let c2_gone = json(producer.delete("c-2".into()).unwrap());
    let c3_future = future_version(&json(
        producer
            .upsert_at(customer("c-3", "Edsger"), Sequence::new(5))
            .unwrap(),
    ));
    let c3_now = json(
        producer
            .upsert_at(customer("c-3", "Edsger"), Sequence::new(6))
            .unwrap(),
    );

    let mut durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap()
        .with_consumer("CRM", "billing");
    let batch = [
        at(1, "c-1", &c1_v1),      // inserted
        at(2, "c-2", &c2),         // inserted
        at(3, "c-1", &c1_v2),      // updated
        at(4, "c-1", &c1_v2),      // duplicate (a redelivery)
        at(5, "c-4", b"not json"), // parked: invalid
        at(6, "c-3", &c3_future),  // parked: future_version
        at(7, "c-2", &c2_gone),    // deleted
        at(8, "c-1", &c1_v1),      // stale
    ];
    durable.apply_batch(&batch).await.unwrap();

    let counters = recorder.counters();
    let expected = [
        (name("ecst_events_applied_total"), 4),
        (name("ecst_events_duplicate_total"), 1),
        (name("ecst_events_stale_total"), 1),
        (with_reason("ecst_events_parked_total", "invalid"), 1),
        (with_reason("ecst_events_parked_total", "future_version"), 1),
    ];
    for (metric, value) in &expected {
        assert_eq!(counters.get(metric), Some(value), "{metric}: {counters:#?}");
    }
    assert_eq!(
        counters.len(),
        expected.len(),
        "nothing else counted: {counters:#?}"
    );
    let gauges = recorder.gauges();
    assert_eq!(
        gauges.get(&name("ecst_replica_keys")),
        Some(&1.0),
        "{gauges:#?}"
    );
    assert_eq!(
        gauges.get(&name("ecst_replica_tombstones")),
        Some(&1.0),
        "{gauges:#?}"
    );
    assert_eq!(
        gauges.get(&name("ecst_parked_pending")),
        Some(&2.0),
        "{gauges:#?}"
    );
    let histograms = recorder.histograms();
    let latency = &histograms[&name("ecst_batch_apply_seconds")];
    assert_eq!(latency.len(), 1, "one sample per batch");
    assert!(latency[0] >= 0.0);

    // c-3 at a newer sequence than its parked future-version event: the
    // parked one is superseded, and no longer pending.
    durable.apply_batch(&[at(9, "c-3", &c3_now)]).await.unwrap();
    let counters = recorder.counters();
    assert_eq!(counters.get(&name("ecst_events_applied_total")), Some(&5));
    assert_eq!(
        counters.get(&name("ecst_parked_superseded_total")),
        Some(&1)
    );
    let gauges = recorder.gauges();
    assert_eq!(gauges.get(&name("ecst_replica_keys")), Some(&2.0));
    assert_eq!(gauges.get(&name("ecst_parked_pending")), Some(&1.0));
    assert_eq!(
        recorder.histograms()[&name("ecst_batch_apply_seconds")].len(),
        2
    );
}

#[tokio::test]
async fn an_unnamed_replica_has_an_empty_consumer_label() {
    let recorder = Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let json = producer
        .upsert(customer("c-1", "Ada"))
        .unwrap()
        .to_json()
        .unwrap();
    let mut durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap();
    durable
        .apply_batch(&[Message::new(1, "crm.customer.c-1", &json)])
        .await
        .unwrap();
    assert_eq!(
        recorder
            .counters()
            .get("ecst_events_applied_total{consumer=,entity=customer}"),
        Some(&1)
    );
}

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;

/// The follower reports how many messages its consumer still has to apply:
/// after a first batch of 2 out of 5 keys, 3; once caught up, 0.
#[cfg(feature = "nats")]
#[tokio::test]
async fn a_follower_reports_its_consumer_lag() {
    use std::time::Duration;

    use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};

    let recorder = Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let server = nats_server::NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::new("crm").unwrap();
    StateStream::new("CRM", subjects.clone())
        .ensure(&js, ServerVersion::of(&client).unwrap())
        .await
        .unwrap();
    let publisher = Publisher::new(js, subjects.clone());
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    for i in 0..5 {
        let envelope = producer.upsert(customer(&format!("c-{i}"), "x")).unwrap();
        publisher.publish(&envelope).await.unwrap();
    }
    let mut settings = FollowSettings::new("CRM", "billing", subjects);
    settings.batch = 2;
    settings.fetch_wait = Duration::from_millis(250);
    settings.lease_ttl = None;
    let durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let mut follower = Follower::start(client, settings, durable).await.unwrap();
    let progress = follower.poll().await.unwrap();
    assert_eq!(progress.batch.applied.len(), 2);
    let lag = name("ecst_consumer_lag");
    assert_eq!(
        recorder.gauges().get(&lag),
        Some(&3.0),
        "{:#?}",
        recorder.gauges()
    );
    tokio::time::timeout(Duration::from_secs(30), follower.catch_up())
        .await
        .expect("caught up in time")
        .unwrap();
    assert_eq!(recorder.gauges().get(&lag), Some(&0.0));
    assert_eq!(
        recorder.counters().get(&name("ecst_events_applied_total")),
        Some(&5)
    );
}
