//! The two breaks the wire red team found, fixed, as regression tests.
//!
//! - Batch acknowledgements: a follower whose earlier durable consumer
//!   could not be deleted must not resume it while it holds deliveries the
//!   replica never committed. With `AckPolicy::All`, acknowledging the new
//!   run's first batch would acknowledge them too, and they would be lost for
//!   good. `StreamFollower::create_consumer` now refuses such a consumer with
//!   an error naming it.
//! - The envelope scanner read `data` with serde_json's depth limit counted
//!   from `data`, one level more than the serde path: the same event was
//!   accepted or refused depending on how an attribute was spelled.

use ecst::{Envelope, Replica, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An entity whose payload holds arbitrary JSON (a `Value` is read
/// recursively, so serde_json's recursion limit applies to it).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "doc", version = 1)]
pub struct Doc {
    #[state_event(key)]
    pub id: String,
    pub body: Value,
}

/// `data` = `{"id":"d","body":[[...]]}` with `depth` nested arrays in
/// `body`; `escaped` spells `id`'s value with an escape (the same event,
/// which the scanner leaves to the serde path).
fn envelope(depth: usize, escaped: bool) -> Vec<u8> {
    let id = if escaped { r#""\u0065-1""# } else { r#""e-1""# };
    format!(
        "{{\"specversion\":\"1.0\",\"id\":{id},\"source\":\"urn:s\",\"type\":\"doc\",\
         \"subject\":\"d\",\"sequence\":1,\"schemaversion\":1,\"operation\":\"upsert\",\
         \"data\":{{\"id\":\"d\",\"body\":{}{}}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes()
}

/// The same event, spelled with or without an escape in `id`, is accepted
/// by `Envelope::from_json` and `Replica::apply_json` alike, or refused by
/// both, at every depth around serde_json's limit. (A `Router` reads `data`
/// on its own and allows one level more; that predates the scanner.)
#[test]
fn the_depth_limit_does_not_depend_on_the_spelling_of_the_attributes() {
    let mut accepted_depths = Vec::new();
    for depth in 100..=140 {
        let mut seen = Vec::new();
        for escaped in [false, true] {
            let input = envelope(depth, escaped);
            seen.push(Envelope::<Doc>::from_json(&input).is_ok());
            seen.push(Replica::<Doc>::new().apply_json(&input).is_ok());
        }
        assert!(
            seen.iter().all(|&accepted| accepted == seen[0]),
            "depth {depth}: [from_json, apply_json] plain, then escaped: {seen:?}"
        );
        if seen[0] {
            accepted_depths.push(depth);
        }
    }
    // Both sides of the limit were reached.
    assert!(accepted_depths.contains(&100) && !accepted_depths.contains(&140));
}

#[cfg(all(feature = "nats", feature = "sqlite"))]
#[path = "support/nats_server.rs"]
mod nats_server;

#[cfg(all(feature = "nats", feature = "sqlite"))]
mod acks {
    use std::time::Duration;

    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
    use ecst::store::{DurableReplica, MemoryStore};
    use ecst::Producer;
    use futures_util::StreamExt;

    use super::nats_server::NatsServer;
    use super::Doc;

    /// `admin` may do anything; `app` everything but delete a consumer (a
    /// permission the follower tolerates the lack of, see
    /// `Follower::create_consumer`; the same happens when the deletion
    /// fails for any other reason, a timeout during a broker restart say).
    const USERS: &str = r#"authorization { users = [
        { user: admin, password: admin },
        { user: app, password: app,
          permissions: { publish: { allow: [">"], deny: ["$JS.API.CONSUMER.DELETE.>"] } } }
    ] }"#;

    async fn connect(server: &NatsServer, user: &str) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
            .connect(server.url())
            .await
            .expect("connects")
    }

    /// Eight docs d-0..d-7 (stream sequences 1-8). A follower's earlier
    /// run had its first batch (1-4) delivered and died before committing
    /// it (here: the same consumer, fetched by hand, not acknowledged). The
    /// follower starts again from its checkpoint (0) and cannot delete the
    /// old consumer; creating it again returns the old one as it is (the
    /// same configuration), which would go on with 5-8, and acknowledging 8
    /// would acknowledge 1-4 unseen. The follower refuses to start, naming
    /// the consumer; once it is deleted, a start gets every doc.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_that_was_not_deleted_is_refused_not_resumed() {
        let server = NatsServer::start_with_config(USERS);
        let admin = connect(&server, "admin").await;
        let js = async_nats::jetstream::new(admin.clone());
        let subjects = Subjects::new("crm").expect("a valid prefix");
        StateStream::new("CRM", subjects.clone())
            .ensure(&js, ServerVersion::of(&admin).expect("connected"))
            .await
            .expect("the state stream");
        let publisher = Publisher::new(js.clone(), subjects.clone());
        let mut producer = Producer::<Doc>::new("urn:s");
        for i in 0..8 {
            let doc = Doc {
                id: format!("d-{i}"),
                body: serde_json::Value::Null,
            };
            publisher
                .publish(&producer.upsert(doc).expect("an envelope"))
                .await
                .expect("published");
        }

        let mut settings = FollowSettings::new("CRM", "billing", subjects.clone());
        settings.batch = 4;
        settings.fetch_wait = Duration::from_millis(250);
        settings.lease_ttl = None;
        settings.retry.attempts = 1;
        // The consumer exactly as the follower creates it (follow.rs).
        let stream = js.get_stream("CRM").await.expect("the stream");
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("billing".into()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::All,
                ack_wait: settings.ack_wait,
                max_ack_pending: -1,
                filter_subject: subjects.entity("doc"),
                ..pull::Config::default()
            })
            .await
            .expect("the consumer");
        let mut delivered = consumer
            .fetch()
            .max_messages(4)
            .messages()
            .await
            .expect("fetch");
        let mut count = 0;
        while let Some(message) = delivered.next().await {
            message.expect("a message");
            count += 1;
        }
        assert_eq!(count, 4, "the dead run's batch was delivered");

        let app = connect(&server, "app").await;
        let durable = DurableReplica::<Doc, _>::open(MemoryStore::new())
            .await
            .expect("opens");
        let refused = Follower::start(app.clone(), settings.clone(), durable).await;
        let error = match refused {
            Ok(_) => panic!("a follower resumed a consumer holding deliveries it never committed"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("`billing` could not be deleted") && error.contains("CONSUMER.DELETE"),
            "{error}"
        );

        // Deleted by someone allowed to: a start gets every doc.
        stream.delete_consumer("billing").await.expect("deleted");
        let durable = DurableReplica::<Doc, _>::open(MemoryStore::new())
            .await
            .expect("opens");
        let mut follower = Follower::start(app, settings, durable)
            .await
            .expect("starts");
        tokio::time::timeout(Duration::from_secs(120), follower.catch_up())
            .await
            .expect("caught up (hang guard)")
            .expect("catches up");
        let mut keys: Vec<String> = follower
            .replica()
            .replica()
            .iter()
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort();
        let all: Vec<String> = (0..8).map(|i| format!("d-{i}")).collect();
        assert_eq!(keys, all);
        assert_eq!(follower.replica().resume_after(), 8);
    }
}
