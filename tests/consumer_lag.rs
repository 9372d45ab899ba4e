//! The `ecst_consumer_lag` gauge of a `Follower`, against a real
//! nats-server, read back from a local recorder (`support/recorder.rs`): it
//! is the stream's last sequence minus the checkpoint (issue 9), not the
//! server's count of what is pending for the consumer; and it costs at most
//! one request for the stream's state per `FollowSettings::lag_refresh`
//! (counted by a second client listening to the JetStream API subject).

#![cfg(all(feature = "metrics", feature = "nats"))]

#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/recorder.rs"]
mod recorder;

use std::time::Duration;

use async_nats::Subscriber;
use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Producer, StateEvent};
use futures_util::FutureExt;
use futures_util::StreamExt;
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

/// Another entity in the same stream, outside the customer follower's
/// filter.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
pub struct Order {
    #[state_event(key)]
    pub id: String,
}

const LAG: &str = "ecst_consumer_lag{consumer=billing,entity=customer}";

/// A server with the `crm` state stream `CRM`, and its producers.
struct Setup {
    _server: nats_server::NatsServer,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    subjects: Subjects,
    customers: Producer<Customer>,
    orders: Producer<Order>,
}

impl Setup {
    async fn start() -> Setup {
        let server = nats_server::NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        let subjects = Subjects::new("crm").unwrap();
        StateStream::new("CRM", subjects.clone())
            .ensure(&js, ServerVersion::of(&client).unwrap())
            .await
            .unwrap();
        Setup {
            _server: server,
            client,
            js,
            subjects,
            customers: Producer::new("urn:example:crm"),
            orders: Producer::new("urn:example:shop"),
        }
    }

    /// Publishes the next event of customers `keys`.
    async fn customers(&mut self, keys: std::ops::Range<usize>, name: &str) {
        let publisher = Publisher::new(self.js.clone(), self.subjects.clone());
        for i in keys {
            let envelope = self
                .customers
                .upsert(Customer {
                    id: format!("c-{i}"),
                    name: name.into(),
                })
                .unwrap();
            publisher.publish(&envelope).await.unwrap();
        }
    }

    /// Publishes the first event of orders `keys`.
    async fn orders(&mut self, keys: std::ops::Range<usize>) {
        let publisher = Publisher::new(self.js.clone(), self.subjects.clone());
        for i in keys {
            let envelope = self
                .orders
                .upsert(Order {
                    id: format!("o-{i}"),
                })
                .unwrap();
            publisher.publish(&envelope).await.unwrap();
        }
    }

    async fn last_sequence(&self) -> u64 {
        let mut stream = self.js.get_stream("CRM").await.unwrap();
        stream.info().await.unwrap().state.last_sequence
    }

    async fn follower(&self, lag_refresh: Duration) -> Follower<Customer, MemoryStore> {
        let mut settings = FollowSettings::new("CRM", "billing", self.subjects.clone());
        settings.batch = 4;
        settings.fetch_wait = Duration::from_millis(250);
        settings.lease_ttl = None;
        settings.lag_refresh = lag_refresh;
        let durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
            .await
            .unwrap();
        Follower::start(self.client.clone(), settings, durable)
            .await
            .unwrap()
    }
}

fn checkpoint(follower: &Follower<Customer, MemoryStore>) -> u64 {
    follower.replica().resume_after()
}

fn gauge(recorder: &Recorded) -> Option<f64> {
    recorder.gauges().get(LAG).copied()
}

/// Ten customers (sequences 1-10) then ten orders (11-20); a customer
/// follower reading 4 at a time, reading the stream's state after every
/// batch. After its first batch the server has 6 customer events pending for
/// it, but the lag is 20 - 4 = 16; orders published meanwhile count too; once
/// the server confirms nothing is left for it, 0, though orders lie past its
/// checkpoint (they are not its events); five more customer events read 4
/// at a time leave 1.
#[tokio::test]
async fn the_lag_is_the_streams_last_sequence_minus_the_checkpoint() {
    let recorder = Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut setup = Setup::start().await;
    setup.customers(0..10, "x").await;
    setup.orders(0..10).await;
    assert_eq!(setup.last_sequence().await, 20);
    let mut follower = setup.follower(Duration::ZERO).await;

    let progress = follower.poll().await.unwrap();
    assert_eq!(progress.batch.applied.len(), 4);
    assert_eq!(checkpoint(&follower), 4);
    assert_eq!(progress.pending, 6, "the server's own count");
    assert_eq!(gauge(&recorder), Some(16.0), "{:#?}", recorder.gauges());

    setup.orders(10..15).await;
    assert_eq!(setup.last_sequence().await, 25);
    follower.poll().await.unwrap();
    assert_eq!(checkpoint(&follower), 8);
    assert_eq!(gauge(&recorder), Some(17.0));

    tokio::time::timeout(Duration::from_secs(30), follower.catch_up())
        .await
        .expect("caught up in time")
        .unwrap();
    assert_eq!(checkpoint(&follower), 10);
    assert_eq!(follower.replica().replica().len(), 10);
    assert_eq!(gauge(&recorder), Some(0.0));

    // New customer events: 26-30. A batch of 4 leaves one.
    setup.customers(0..5, "y").await;
    let progress = follower.poll().await.unwrap();
    assert_eq!(checkpoint(&follower), 29, "{progress:?}");
    assert_eq!(gauge(&recorder), Some(1.0));
}

/// All `$JS.API.STREAM.INFO` requests received so far by `monitor`.
async fn info_requests(client: &async_nats::Client, monitor: &mut Subscriber) -> usize {
    // Everything the server routed to this client before the flush's PONG
    // is in the subscription by the time the flush returns.
    client.flush().await.unwrap();
    let mut count = 0;
    while let Some(Some(_)) = monitor.next().now_or_never() {
        count += 1;
    }
    count
}

/// With a refresh interval longer than the test, the follower asks for the
/// stream's state once when it creates its consumer, and not again while it
/// catches up: the gauge then follows what deliveries say (each carries its
/// stream sequence and what is pending after it), exact here since the
/// stream has no gap past the checkpoint, until a read of the stream's state
/// counts the other entity's events again.
#[tokio::test]
async fn between_refreshes_the_gauge_costs_no_request() {
    let recorder = Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut setup = Setup::start().await;
    let monitor_client = async_nats::connect(setup._server.url()).await.unwrap();
    let mut monitor = monitor_client
        .subscribe("$JS.API.STREAM.INFO.CRM")
        .await
        .unwrap();
    monitor_client.flush().await.unwrap();
    setup.customers(0..10, "x").await;
    setup.orders(0..10).await;

    let mut follower = setup.follower(Duration::from_secs(3600)).await;
    let at_start = info_requests(&monitor_client, &mut monitor).await;
    assert!(at_start >= 1, "creating the consumer reads the stream");

    follower.poll().await.unwrap();
    assert_eq!(checkpoint(&follower), 4);
    assert_eq!(
        gauge(&recorder),
        Some(16.0),
        "read when the consumer was created"
    );

    // Orders published now are not seen until the next read.
    setup.orders(10..15).await;
    follower.poll().await.unwrap();
    assert_eq!(checkpoint(&follower), 8);
    assert_eq!(gauge(&recorder), Some(12.0), "20 - 8: not read again");
    assert_eq!(
        info_requests(&monitor_client, &mut monitor).await,
        0,
        "no stream info request while catching up"
    );

    // Customer events at 26-30. The batch asked for ahead by the last poll
    // was answered before they were published: customers 9 and 10. Then 4
    // of the new events, one left: the deliveries say the stream reaches 30.
    setup.customers(0..5, "y").await;
    follower.poll().await.unwrap();
    assert_eq!(checkpoint(&follower), 10);
    let progress = follower.poll().await.unwrap();
    assert_eq!(checkpoint(&follower), 29, "{progress:?}");
    assert_eq!(progress.pending, 1);
    assert_eq!(gauge(&recorder), Some(1.0), "30 - 29, from the deliveries");
    assert_eq!(info_requests(&monitor_client, &mut monitor).await, 0);
}
