//! Red team, issue 9: a change feed that panics under the NATS `Follower`,
//! with a real nats-server. The panic reaches the caller of `poll` (it is
//! not swallowed); the batch was committed before the feed ran, so it is
//! neither lost nor applied twice: the next poll starts a consumer after
//! the checkpoint (the unacknowledged batch is not delivered again), the
//! feed stays set and reports the next events, and the replica ends equal
//! to what was published. The panic loses nothing of the report either:
//! the feed is at least once, and the next poll first replays the key
//! whose report panicked (its current state), as `DurableReplica::on_change`
//! documents.

#![cfg(feature = "nats")]
#![forbid(unsafe_code)]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Outcome, Producer, StateEvent};
use futures_util::FutureExt;
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

const STREAM: &str = "REDTEAM_FEED";
const PATIENCE: Duration = Duration::from_secs(15);

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

fn account(id: &str, balance: i64) -> Account {
    Account {
        id: id.into(),
        balance,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_panics_under_the_follower_loses_no_state() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new("bank").expect("subjects");
    let version = ServerVersion::of(&client).expect("version");
    StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .expect("the state stream");
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut producer = Producer::<Account>::new("urn:example:bank");
    // The stream's only message: the feed panics on it.
    let envelope = producer.upsert(account("boom", 1)).expect("upsert");
    publisher.publish(&envelope).await.expect("publish");

    let mut settings = FollowSettings::new(STREAM, "reader", subjects.clone());
    settings.batch = 64;
    settings.fetch_wait = Duration::from_millis(250);
    let durable = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .expect("open");
    let mut follower = Follower::start(client.clone(), settings, durable)
        .await
        .expect("follower");
    let seen = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let armed = Arc::new(AtomicBool::new(true));
    {
        let seen = Arc::clone(&seen);
        let armed = Arc::clone(&armed);
        follower.replica_mut().on_change(move |change| {
            if change.key == "boom" && armed.swap(false, Ordering::SeqCst) {
                panic!("the observer failed");
            }
            seen.lock()
                .expect("lock")
                .push((change.key.clone(), change.sequence.get()));
        });
    }

    // Polls until the batch panics in the feed (an empty poll first is
    // possible; nothing else can be applied).
    bounded("the panicking batch", async {
        loop {
            match AssertUnwindSafe(follower.poll()).catch_unwind().await {
                Err(_) => break,
                Ok(progress) => {
                    let progress = progress.expect("poll");
                    assert_eq!(progress.batch.applied, vec![], "{progress:?}");
                }
            }
        }
    })
    .await;
    assert_eq!(*seen.lock().expect("lock"), vec![]);
    assert_eq!(follower.replica().resume_after(), 1, "committed");
    assert_eq!(follower.replica().checkpoint().map(|c| c.applied), Some(1));

    // The next events: the following polls deliver them, and not the
    // committed (unacknowledged) message again.
    for (key, balance) in [("a-2", 2), ("a-3", 3)] {
        let envelope = producer.upsert(account(key, balance)).expect("upsert");
        publisher.publish(&envelope).await.expect("publish");
    }
    let mut applied = Vec::new();
    bounded("the next events", async {
        while follower.replica().resume_after() < 3 {
            let progress = follower.poll().await.expect("poll");
            applied.extend(progress.batch.applied);
        }
    })
    .await;
    bounded("catching up", async {
        loop {
            let progress = follower.poll().await.expect("poll");
            let caught_up = progress.caught_up();
            applied.extend(progress.batch.applied);
            if caught_up {
                break;
            }
        }
    })
    .await;
    assert_eq!(
        applied,
        vec![(2, Outcome::Inserted), (3, Outcome::Inserted)]
    );
    // `boom` replayed first (its report panicked), then the new events.
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            ("boom".to_owned(), 1),
            ("a-2".to_owned(), 1),
            ("a-3".to_owned(), 1)
        ]
    );
    let mut held: Vec<_> = follower
        .replica()
        .replica()
        .iter()
        .map(|(key, state)| (key.clone(), state.balance))
        .collect();
    held.sort();
    assert_eq!(
        held,
        vec![
            ("a-2".to_owned(), 2),
            ("a-3".to_owned(), 3),
            ("boom".to_owned(), 1),
        ]
    );
    assert_eq!(follower.replica().checkpoint().map(|c| c.applied), Some(3));
}
