//! The change feed of a `Follower`'s durable replica against a real
//! `nats-server`: each committed change is reported once, in order, with
//! the state before and after; a restarted follower, whose redelivered
//! messages are duplicates, reports nothing twice.

#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Outcome, Producer, StateChange, StateEvent};
use nats_server::NatsServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub balance: i64,
}

fn account(id: &str, balance: i64) -> Account {
    Account {
        id: id.into(),
        balance,
    }
}

type Seen = (String, u64, Option<i64>, Option<i64>, Outcome);

const PATIENCE: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_followers_feed_reports_each_committed_change_once() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new("bank").unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new("ACCOUNTS", subjects.clone())
        .ensure(&js, version)
        .await
        .expect("stream");
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Producer::<Account>::new("urn:example:bank");
    publisher
        .publish_all(&[
            owner.upsert(account("a-1", 10)).unwrap(),
            owner.upsert(account("a-2", 20)).unwrap(),
        ])
        .await
        .expect("publish");

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let mut durable = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    durable.on_change(move |change: StateChange<'_, Account>| {
        sink.lock().unwrap().push((
            change.key.clone(),
            change.sequence.get(),
            change.before.map(|a| a.balance),
            change.after.map(|a| a.balance),
            change.outcome,
        ));
    });
    let mut settings = FollowSettings::new("ACCOUNTS", "feed", subjects.clone());
    settings.fetch_wait = Duration::from_millis(200);
    let mut follower = Follower::start(client.clone(), settings.clone(), durable)
        .await
        .expect("start");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("catch-up in time")
        .expect("catch-up");
    assert_eq!(
        std::mem::take(&mut *seen.lock().unwrap()),
        vec![
            ("a-1".into(), 1, None, Some(10), Outcome::Inserted),
            ("a-2".into(), 1, None, Some(20), Outcome::Inserted),
        ]
    );

    // Live changes.
    publisher
        .publish_all(&[
            owner.upsert(account("a-1", 11)).unwrap(),
            owner.delete("a-2".into()).unwrap(),
        ])
        .await
        .expect("publish");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("catch-up in time")
        .expect("catch-up");
    assert_eq!(
        std::mem::take(&mut *seen.lock().unwrap()),
        vec![
            ("a-1".into(), 2, Some(10), Some(11), Outcome::Updated),
            ("a-2".into(), 2, Some(20), None, Outcome::Deleted),
        ]
    );

    // A restart from the checkpoint with the whole stream delivered again
    // (the checkpoint rewound, as after a stream reset): every message is a
    // duplicate or stale, and nothing is reported twice.
    let mut durable = follower.stop().await;
    durable.rewind_stream_position().await.expect("rewind");
    let mut follower = Follower::start(client.clone(), settings, durable)
        .await
        .expect("restart");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("catch-up in time")
        .expect("catch-up");
    assert!(follower.replica().resume_after() > 0);
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        follower.replica().replica().get("a-1"),
        Some(&account("a-1", 11))
    );
}
