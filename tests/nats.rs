//! The NATS JetStream adapter against a real `nats-server` (see
//! `support/nats_server.rs`): publishing in both CloudEvents modes,
//! following into a durable replica, de-duplication, optimistic
//! concurrency, a broker restart mid-stream, late joiners, bootstrap by
//! request/response, bad input, and the server version guard.
//!
//! Every test that moves state ends by comparing the consumer's replica,
//! entity by entity (state, tombstone, sequence), with the owner's truth.
//! Waits are bounded loops on a condition; no sleep is an assertion.

#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{self, Context};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use ecst::consume::{ParkKind, Resolution};
use ecst::nats::{
    request_bootstrap, serve_bootstrap, BootstrapRequest, FollowSettings, Follower, Mode,
    NatsError, Published, Publisher, RetryPolicy, ServerVersion, StateStream, Subjects,
};
use ecst::store::{Commit, DurableReplica, Loaded, MemoryStore, ReplicaStore};
use ecst::{Entry, Envelope, Outcome, Producer, Replica, Sequence, StateEvent};
use futures_util::StreamExt;
use nats_server::NatsServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The entity of every test: a bank account, owned by one service.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub owner: String,
    pub balance: i64,
}

const STREAM: &str = "ACCOUNTS";
/// The bound of every wait for a condition.
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A client that reconnects quickly after a broker restart.
async fn connect(server: &NatsServer) -> Client {
    async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(server.url())
        .await
        .expect("connecting to nats-server")
}

/// Returns once the server has processed everything `client` sent so far:
/// `Client::flush` only writes the socket (async-nats sends no PING), so a
/// message echoed through the server on the same connection proves the
/// order. (With a flush, a request from another connection found no
/// responders in about 5 % of the runs on a loaded machine.)
async fn synced(client: &Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, Bytes::new()).await.unwrap();
    bounded("an echo through the server", echo.next())
        .await
        .unwrap();
}

/// A server, a client, JetStream, and a state stream under `prefix`.
async fn setup(prefix: &str) -> (NatsServer, Client, Context, Subjects) {
    let server = NatsServer::start();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(prefix).unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .expect("creating the state stream");
    (server, client, js, subjects)
}

fn settings(subjects: &Subjects, durable: &str) -> FollowSettings {
    let mut settings = FollowSettings::new(STREAM, durable, subjects.clone());
    settings.batch = 64;
    settings.fetch_wait = Duration::from_millis(250);
    // Short leases: a test that drops a follower (a crash) and starts
    // another on the same name waits for the lease to expire.
    settings.lease_ttl = Some(Duration::from_secs(2));
    settings.lease_wait = Duration::from_secs(3);
    settings
}

async fn follower<S: ReplicaStore<Account>>(
    client: &Client,
    settings: FollowSettings,
    store: S,
) -> Follower<Account, S> {
    let durable = match DurableReplica::open(store).await {
        Ok(durable) => durable,
        Err(error) => panic!("opening the store: {error}"),
    };
    Follower::start(client.clone(), settings, durable)
        .await
        .expect("starting the follower")
}

/// Runs `future` within [`PATIENCE`].
async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

/// The owning service: builds events with a [`Producer`] and keeps the
/// truth: per key, the last sequence published and the state (`None` for a
/// delete).
struct Owner {
    producer: Producer<Account>,
    truth: BTreeMap<String, (u64, Option<Account>)>,
    rng: u64,
}

impl Owner {
    fn new() -> Self {
        Owner {
            producer: Producer::new("urn:example:bank"),
            truth: BTreeMap::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// A deterministic pseudo-random number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn upsert(&mut self, key: &str) -> Envelope<Account> {
        let balance = i64::try_from(self.below(1_000_000)).unwrap();
        let state = Account {
            id: key.to_owned(),
            owner: format!("Owner of {key} (Zoë)"),
            balance,
        };
        self.producer.upsert(state).unwrap()
    }

    fn delete(&mut self, key: &str) -> Envelope<Account> {
        self.producer.delete(key.to_owned()).unwrap()
    }

    /// An update (80 %) or a delete (20 %) of `key`.
    fn change(&mut self, key: &str) -> Envelope<Account> {
        if self.below(5) == 0 {
            self.delete(key)
        } else {
            self.upsert(key)
        }
    }

    /// Records `envelope` as published.
    fn published(&mut self, envelope: &Envelope<Account>) {
        let entry = (envelope.sequence.get(), envelope.state().cloned());
        self.truth.insert(envelope.key.clone(), entry);
    }

    /// The truth restricted to some keys.
    fn truth_of(&self, keys: &BTreeSet<String>) -> BTreeMap<String, (u64, Option<Account>)> {
        self.truth
            .iter()
            .filter(|(k, _)| keys.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn key(i: usize) -> String {
    format!("acc-{i:04}")
}

/// Where `replica` differs from `truth`, entity by entity; empty if equal.
fn differences(
    replica: &Replica<Account>,
    truth: &BTreeMap<String, (u64, Option<Account>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, (sequence, state)) in truth {
        match (replica.entry(key.as_str()), state) {
            (
                Some(Entry::Live {
                    sequence: held,
                    state: held_state,
                }),
                Some(state),
            ) => {
                if held.get() != *sequence || held_state != state {
                    out.push(format!(
                        "{key}: holds {held_state:?} at {held}, the owner has {state:?} at {sequence}"
                    ));
                }
            }
            (Some(Entry::Tombstone { sequence: held }), None) => {
                if held.get() != *sequence {
                    out.push(format!(
                        "{key}: tombstone at {held}, the owner deleted at {sequence}"
                    ));
                }
            }
            (held, state) => out.push(format!(
                "{key}: holds {held:?}, the owner has {state:?} at {sequence}"
            )),
        }
    }
    for (key, entry) in replica.entries() {
        if !truth.contains_key(key) {
            out.push(format!(
                "{key}: holds {entry:?}, which the owner never published"
            ));
        }
    }
    out
}

#[track_caller]
fn assert_same(replica: &Replica<Account>, truth: &BTreeMap<String, (u64, Option<Account>)>) {
    let differences = differences(replica, truth);
    assert!(
        differences.is_empty(),
        "the replica differs from the owner's truth ({} keys):\n{}",
        truth.len(),
        differences.join("\n")
    );
}

fn changes_state(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Inserted | Outcome::Updated | Outcome::Deleted
    )
}

/// Polls until the replica equals `truth`, returning every applied
/// (stream sequence, outcome).
async fn poll_until_same<S: ReplicaStore<Account>>(
    follower: &mut Follower<Account, S>,
    truth: &BTreeMap<String, (u64, Option<Account>)>,
) -> Vec<(u64, Outcome)> {
    let mut seen = Vec::new();
    bounded("following until the replica equals the truth", async {
        while !differences(follower.replica().replica(), truth).is_empty() {
            let progress = follower.poll().await.expect("polling");
            seen.extend(progress.batch.applied);
        }
    })
    .await;
    seen
}

async fn publish_recorded(
    publisher: &Publisher,
    owner: &mut Owner,
    envelope: Envelope<Account>,
) -> Published {
    let published = publisher.publish(&envelope).await.expect("publishing");
    assert!(
        !published.duplicate,
        "{} was taken for a duplicate",
        envelope.id
    );
    owner.published(&envelope);
    published
}

// ---------------------------------------------------------------------------
// Publish and follow
// ---------------------------------------------------------------------------

/// A few hundred events over 50 keys (updates, deletes, re-inserts) reach a
/// new follower as the latest event per key: the replica equals the truth,
/// and since the stream keeps one message per subject, exactly one event per
/// key was applied. Live events afterwards are applied one by one.
async fn publish_and_follow(mode: Mode) {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone()).with_mode(mode);
    let mut owner = Owner::new();
    const KEYS: usize = 50;

    let mut last_stream_sequence = 0;
    for i in 0..KEYS {
        let envelope = owner.upsert(&key(i));
        let published = publish_recorded(&publisher, &mut owner, envelope).await;
        assert!(published.stream_sequence > last_stream_sequence);
        last_stream_sequence = published.stream_sequence;
    }
    // 250 changes of random keys: one by one, then in one `publish_all`.
    for _ in 0..125 {
        let k = key(owner.below(KEYS as u64) as usize);
        let envelope = owner.change(&k);
        last_stream_sequence = publish_recorded(&publisher, &mut owner, envelope)
            .await
            .stream_sequence;
    }
    let mut batch = Vec::new();
    for _ in 0..125 {
        let k = key(owner.below(KEYS as u64) as usize);
        batch.push(owner.change(&k));
    }
    let published = publisher
        .publish_all(&batch)
        .await
        .expect("publishing a batch");
    assert_eq!(published.len(), batch.len());
    for (envelope, published) in batch.iter().zip(&published) {
        assert!(!published.duplicate);
        assert!(
            published.stream_sequence > last_stream_sequence,
            "acknowledged in order"
        );
        last_stream_sequence = published.stream_sequence;
        owner.published(envelope);
    }
    assert_eq!(last_stream_sequence, 300);
    let deleted = owner.truth.values().filter(|(_, s)| s.is_none()).count();
    assert!(
        deleted > 0 && deleted < KEYS,
        "the history has deletes ({deleted})"
    );

    // The wire format is what the mode says.
    let stream = js.get_stream(STREAM).await.unwrap();
    let (live_key, _) = owner.truth.iter().find(|(_, (_, s))| s.is_some()).unwrap();
    let (dead_key, _) = owner.truth.iter().find(|(_, (_, s))| s.is_none()).unwrap();
    let live = stream
        .get_last_raw_message_by_subject(&subjects.event("account", live_key).unwrap())
        .await
        .unwrap();
    let dead = stream
        .get_last_raw_message_by_subject(&subjects.event("account", dead_key).unwrap())
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&live.payload).unwrap();
    match mode {
        Mode::Structured => {
            assert_eq!(body["specversion"], "1.0");
            assert_eq!(body["data"]["id"], live_key.as_str());
            assert!(live.headers.get("ce-specversion").is_none());
        }
        Mode::Binary => {
            assert_eq!(
                live.headers.get("ce-specversion").map(|v| v.as_str()),
                Some("1.0")
            );
            assert_eq!(
                live.headers.get("ce-type").map(|v| v.as_str()),
                Some("account")
            );
            assert_eq!(
                live.headers.get("ce-subject").map(|v| v.as_str()),
                Some(live_key.as_str())
            );
            assert_eq!(body["id"], live_key.as_str(), "the body is the data alone");
            assert!(dead.payload.is_empty(), "a delete has no data, so no body");
            assert_eq!(
                dead.headers.get("ce-operation").map(|v| v.as_str()),
                Some("delete")
            );
        }
    }
    // `Nats-Msg-Id` is the event id.
    let id = live
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_owned())
        .unwrap();
    assert_eq!(
        id,
        format!("account:{live_key}:{}", owner.truth[live_key].0)
    );

    let mut follower = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    let mut delivered = 0;
    bounded("catching up", async {
        loop {
            let progress = follower.poll().await.expect("polling");
            delivered += progress.batch.applied.len() + progress.batch.parked.len();
            if progress.caught_up() && delivered > 0 {
                break;
            }
        }
    })
    .await;
    assert_same(follower.replica().replica(), &owner.truth);
    let checkpoint = follower.replica().checkpoint().unwrap();
    assert_eq!(
        delivered, KEYS,
        "one message per key is kept, so one per key is delivered"
    );
    assert_eq!(
        checkpoint.applied, KEYS as u64,
        "each key's latest event applied once"
    );
    assert_eq!(checkpoint.stream_sequence, last_stream_sequence);
    assert_eq!(follower.replica().parked_len(), 0);

    // Live: 20 events on 20 distinct keys (so none replaces another unread).
    for i in 0..20 {
        let envelope = owner.change(&key(i));
        publish_recorded(&publisher, &mut owner, envelope).await;
    }
    let seen = poll_until_same(&mut follower, &owner.truth).await;
    assert!(
        seen.iter().all(|(_, outcome)| changes_state(*outcome)),
        "{seen:?}"
    );
    assert_eq!(
        follower.replica().checkpoint().unwrap().applied,
        KEYS as u64 + 20
    );
    assert_eq!(
        follower.replica().checkpoint().unwrap().stream_sequence,
        320
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_structured_and_follow() {
    publish_and_follow(Mode::Structured).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_binary_and_follow() {
    publish_and_follow(Mode::Binary).await;
}

// ---------------------------------------------------------------------------
// Duplicates and redelivery
// ---------------------------------------------------------------------------

/// The same event published twice within the duplicate window is stored
/// once (`Nats-Msg-Id`); a follower restarted on its store after some
/// acknowledged batches resumes right after its checkpoint and applies
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_publishes_and_restarted_follower_apply_once() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Owner::new();

    let envelope = owner.upsert("twice");
    let first = publisher.publish(&envelope).await.unwrap();
    let second = publisher.publish(&envelope).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(
        second,
        Published {
            stream_sequence: first.stream_sequence,
            duplicate: true
        }
    );
    // Binary mode carries the same `Nats-Msg-Id`.
    let third = publisher
        .clone()
        .with_mode(Mode::Binary)
        .publish(&envelope)
        .await
        .unwrap();
    assert!(third.duplicate);
    owner.published(&envelope);

    let envelopes: Vec<_> = (0..100).map(|i| owner.upsert(&key(i))).collect();
    for published in publisher.publish_all(&envelopes).await.unwrap() {
        assert!(!published.duplicate);
    }
    envelopes.iter().for_each(|e| owner.published(e));
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 101, "the duplicates were not stored");

    // Three batches of 10, committed and acknowledged; then the process "dies".
    let mut settings = settings(&subjects, "reader");
    settings.batch = 10;
    let mut first_run = follower(&client, settings.clone(), MemoryStore::new()).await;
    for _ in 0..3 {
        let progress = first_run.poll().await.unwrap();
        assert_eq!(progress.batch.applied.len(), 10);
    }
    let checkpoint = first_run.replica().checkpoint().unwrap();
    assert_eq!(checkpoint.applied, 30);
    assert_eq!(checkpoint.stream_sequence, 30);
    assert_eq!(
        first_run
            .replica()
            .replica()
            .get("twice")
            .map(|a| a.balance),
        Some(envelope.state().unwrap().balance)
    );
    let store = first_run.replica().store().clone();
    drop(first_run);

    // Meanwhile: updates of 10 keys already read, and 10 new keys.
    for i in 0..10 {
        let envelope = owner.upsert(&key(i));
        publish_recorded(&publisher, &mut owner, envelope).await;
    }
    for i in 100..110 {
        let envelope = owner.upsert(&key(i));
        publish_recorded(&publisher, &mut owner, envelope).await;
    }

    let mut second_run = follower(&client, settings, store).await;
    assert_eq!(
        second_run.replica().checkpoint(),
        Some(checkpoint),
        "resumes from the store"
    );
    let seen = poll_until_same(&mut second_run, &owner.truth).await;
    assert!(
        seen.iter()
            .all(|(sequence, _)| *sequence > checkpoint.stream_sequence),
        "nothing at or below the checkpoint came again"
    );
    assert!(
        seen.iter().all(|(_, outcome)| changes_state(*outcome)),
        "nothing applied twice: {seen:?}"
    );
    // 71 messages after the checkpoint, 20 new ones: every event published
    // once applied exactly once.
    assert_eq!(seen.len(), 91);
    assert_eq!(second_run.replica().checkpoint().unwrap().applied, 121);
    assert_same(second_run.replica().replica(), &owner.truth);
}

/// A store whose next `fail` commits are written but reported as failed,
/// like a database connection lost right after `COMMIT`.
struct LostAcks {
    inner: MemoryStore,
    fail: Arc<AtomicU32>,
}

impl ReplicaStore<Account> for LostAcks {
    type Error = io::Error;

    async fn load(&mut self) -> Result<Loaded<Account>, io::Error> {
        ReplicaStore::<Account>::load(&mut self.inner)
            .await
            .map_err(io::Error::other)
    }

    async fn commit(&mut self, commit: Commit<'_, Account>) -> Result<(), io::Error> {
        self.inner.commit(commit).await.map_err(io::Error::other)?;
        let lose = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            Err(io::Error::other("connection lost after COMMIT"))
        } else {
            Ok(())
        }
    }
}

/// A batch committed but not acknowledged (the store reported a failure
/// after writing) is delivered again, at once (the follower starts over
/// from its checkpoint, not waiting for `ack_wait`); the redelivered events
/// are duplicates and the applied counter stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_of_a_committed_batch_applies_nothing_twice() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js, subjects.clone());
    let mut owner = Owner::new();
    let envelopes: Vec<_> = (0..30).map(|i| owner.upsert(&key(i))).collect();
    publisher.publish_all(&envelopes).await.unwrap();
    envelopes.iter().for_each(|e| owner.published(e));

    let fail = Arc::new(AtomicU32::new(1));
    let mut settings = settings(&subjects, "reader");
    settings.batch = 10;
    settings.retry.attempts = 1;
    let store = LostAcks {
        inner: MemoryStore::new(),
        fail: fail.clone(),
    };
    let mut follower = follower(&client, settings, store).await;

    let error = follower.poll().await.unwrap_err();
    assert!(
        matches!(error, NatsError::Store { attempts: 1, .. }),
        "{error}"
    );
    assert_eq!(fail.load(Ordering::SeqCst), 0);

    let mut outcomes = Vec::new();
    bounded("following until the lost batch came again", async {
        loop {
            let progress = follower.poll().await.expect("polling");
            outcomes.extend(progress.batch.applied);
            let duplicates = outcomes
                .iter()
                .filter(|(_, o)| *o == Outcome::Duplicate)
                .count();
            if duplicates == 10
                && differences(follower.replica().replica(), &owner.truth).is_empty()
            {
                break;
            }
        }
    })
    .await;
    let redelivered: BTreeSet<u64> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Duplicate)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(
        redelivered,
        (1..=10).collect(),
        "the unacknowledged batch came again"
    );
    assert_eq!(
        follower.replica().checkpoint().unwrap().applied,
        30,
        "and was not counted twice"
    );
    assert_same(follower.replica().replica(), &owner.truth);
}

/// A store whose next `fail` commits fail without writing anything (the
/// database was unreachable).
struct Unreachable {
    inner: MemoryStore,
    fail: Arc<AtomicU32>,
}

impl ReplicaStore<Account> for Unreachable {
    type Error = io::Error;

    async fn load(&mut self) -> Result<Loaded<Account>, io::Error> {
        ReplicaStore::<Account>::load(&mut self.inner)
            .await
            .map_err(io::Error::other)
    }

    async fn commit(&mut self, commit: Commit<'_, Account>) -> Result<(), io::Error> {
        let fail = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(io::Error::other("the database is unreachable"));
        }
        self.inner.commit(commit).await.map_err(io::Error::other)?;
        Ok(())
    }
}

/// A batch whose commit failed is delivered again before anything after
/// it, at once (not after `ack_wait`): the checkpoint never moves past
/// events that were not applied, so a crash right after the next commit
/// loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_leaves_no_gap_behind_the_checkpoint() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js, subjects.clone());
    let mut owner = Owner::new();
    let envelopes: Vec<_> = (0..30).map(|i| owner.upsert(&key(i))).collect();
    publisher.publish_all(&envelopes).await.unwrap();
    envelopes.iter().for_each(|e| owner.published(e));

    let fail = Arc::new(AtomicU32::new(1));
    let mut settings = settings(&subjects, "reader");
    settings.batch = 10;
    settings.retry.attempts = 1;
    // The default 30 s: a redelivery that waits for it fails the test.
    assert_eq!(settings.ack_wait, Duration::from_secs(30));
    let store = Unreachable {
        inner: MemoryStore::new(),
        fail,
    };
    let mut follower = follower(&client, settings.clone(), store).await;
    let error = follower.poll().await.unwrap_err();
    assert!(
        matches!(error, NatsError::Store { attempts: 1, .. }),
        "{error}"
    );
    assert_eq!(follower.replica().checkpoint(), None);

    let progress = bounded("polling after the failure", follower.poll())
        .await
        .unwrap();
    let first: Vec<u64> = progress.batch.applied.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        first,
        (1..=10).collect::<Vec<_>>(),
        "the failed batch comes first"
    );
    let checkpoint = follower.replica().checkpoint().unwrap();
    assert_eq!(checkpoint.stream_sequence, 10);
    assert_eq!(checkpoint.applied, 10);

    // Crash now, restart on the store: nothing is missing.
    let fail = Arc::new(AtomicU32::new(0));
    let store = Unreachable {
        inner: follower.replica().store().inner.clone(),
        fail: fail.clone(),
    };
    drop(follower);
    let mut restarted = self::follower(&client, settings, store).await;
    poll_until_same(&mut restarted, &owner.truth).await;
    assert_eq!(restarted.replica().checkpoint().unwrap().applied, 30);
    assert_same(restarted.replica().replica(), &owner.truth);

    // An idle poll writes nothing, so an unreachable store does not matter.
    fail.store(1, Ordering::SeqCst);
    let idle = restarted
        .poll()
        .await
        .expect("an idle poll commits nothing");
    assert!(idle.batch.applied.is_empty() && idle.caught_up());
    assert_eq!(fail.load(Ordering::SeqCst), 1, "no commit was attempted");
}

// ---------------------------------------------------------------------------
// Optimistic concurrency
// ---------------------------------------------------------------------------

/// `publish_if_last` refuses a stale expected stream sequence (another
/// event of the key was published since) and a `0` ("no event yet") for a
/// key that has one; reloading the last sequence and retrying succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_if_last_refuses_a_stale_expected_sequence() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Owner::new();
    let subject = subjects.event("account", "acc-1").unwrap();

    let a = owner.upsert("acc-1");
    let first = publisher
        .publish_if_last(&a, 0)
        .await
        .expect("no event yet: 0 matches");
    owner.published(&a);
    let b = owner.upsert("acc-1");
    let second = publisher
        .publish_if_last(&b, first.stream_sequence)
        .await
        .unwrap();
    owner.published(&b);
    // Another key in between moves the stream, not this subject.
    let other = owner.upsert("acc-2");
    publish_recorded(&publisher, &mut owner, other).await;

    let c = owner.upsert("acc-1");
    let error = publisher
        .publish_if_last(&c, first.stream_sequence)
        .await
        .unwrap_err();
    match &error {
        NatsError::WrongLastSequence {
            subject: s,
            expected,
        } => {
            assert_eq!(s, &subject);
            assert_eq!(*expected, first.stream_sequence);
        }
        other => panic!("expected WrongLastSequence, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            "`{subject}` changed since stream sequence {}: reload and try again",
            first.stream_sequence
        )
    );
    let error = publisher.publish_if_last(&c, 0).await.unwrap_err();
    assert!(
        matches!(error, NatsError::WrongLastSequence { expected: 0, .. }),
        "{error:?}"
    );

    // Reload and retry.
    let last = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&subject)
        .await
        .unwrap()
        .sequence;
    assert_eq!(last, second.stream_sequence);
    publisher
        .publish_if_last(&c, last)
        .await
        .expect("the reloaded sequence matches");
    owner.published(&c);

    let mut follower = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    poll_until_same(&mut follower, &owner.truth).await;
    assert_same(follower.replica().replica(), &owner.truth);
}

// ---------------------------------------------------------------------------
// Broker restart
// ---------------------------------------------------------------------------

/// The server is killed and restarted (store kept) while a publisher
/// publishes and a follower polls. The publisher retries each event until
/// it is acknowledged (the same event id, so a retry of a stored event is a
/// duplicate); the follower rides over the outage. The replica ends equal
/// to the truth, and no stream message changed it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_recover_from_a_broker_restart() {
    let (mut server, client, _, subjects) = setup("bank").await;
    const EVENTS: usize = 400;
    const KEYS: usize = 40;

    let progress = Arc::new(AtomicUsize::new(0));
    let publisher_task = {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(2));
        let publisher = Publisher::new(js, subjects.clone());
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut owner = Owner::new();
            let mut errors = 0;
            for i in 0..EVENTS {
                let envelope = if i < KEYS {
                    owner.upsert(&key(i))
                } else {
                    let k = key(owner.below(KEYS as u64) as usize);
                    owner.change(&k)
                };
                let mut attempts = 0;
                loop {
                    match publisher.publish(&envelope).await {
                        Ok(_) => break,
                        Err(error) => {
                            attempts += 1;
                            errors += 1;
                            assert!(
                                attempts < 100,
                                "publishing {} kept failing: {error}",
                                envelope.id
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                owner.published(&envelope);
                progress.fetch_add(1, Ordering::SeqCst);
                // Paced, so that the restart lands mid-stream.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (owner, errors)
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let follower_task = {
        let mut settings = settings(&subjects, "reader");
        settings.batch = 16;
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut follower = follower(&client, settings, MemoryStore::new()).await;
            let mut seen = Vec::new();
            let mut errors = 0;
            while !stop.load(Ordering::SeqCst) {
                match follower.poll().await {
                    Ok(progress) => seen.extend(progress.batch.applied),
                    Err(_) => {
                        errors += 1;
                        assert!(errors < 50, "the follower kept failing");
                    }
                }
            }
            (follower, seen)
        })
    };

    bounded("waiting for the publisher to get going", async {
        while progress.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.stop();
    let at_kill = progress.load(Ordering::SeqCst);
    assert!(at_kill < EVENTS, "the restart must land mid-stream");
    server.restart();

    let (owner, publish_errors) = bounded("publishing", publisher_task).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let (mut follower, mut seen) = bounded("stopping the follower", follower_task)
        .await
        .unwrap();
    seen.extend(poll_until_same(&mut follower, &owner.truth).await);
    assert_same(follower.replica().replica(), &owner.truth);

    let changed: Vec<u64> = seen
        .iter()
        .filter(|(_, o)| changes_state(*o))
        .map(|(s, _)| *s)
        .collect();
    let distinct: BTreeSet<u64> = changed.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        changed.len(),
        "a stream message changed the replica twice"
    );
    assert_eq!(
        follower.replica().checkpoint().unwrap().applied,
        changed.len() as u64
    );
    assert!(changed.len() <= EVENTS);
    eprintln!(
        "restart at {at_kill}/{EVENTS} events; {publish_errors} publish retries; {} events applied",
        changed.len()
    );
}

// ---------------------------------------------------------------------------
// Late joiner
// ---------------------------------------------------------------------------

/// A consumer that joins after thousands of events starts from the latest
/// event of every key (`DeliverPolicy::All` on this state stream): one
/// event per key, equal to the truth;
/// then it follows the events published afterwards, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_bootstraps_from_the_last_event_per_key_then_follows() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Owner::new();
    const KEYS: usize = 300;
    const EVENTS: usize = 3000;
    let mut history: Vec<_> = (0..KEYS).map(|i| owner.upsert(&key(i))).collect();
    while history.len() < EVENTS {
        let k = key(owner.below(KEYS as u64) as usize);
        history.push(owner.change(&k));
    }
    for chunk in history.chunks(500) {
        publisher.publish_all(chunk).await.unwrap();
        chunk.iter().for_each(|e| owner.published(e));
    }

    let mut follower = follower(&client, settings(&subjects, "late"), MemoryStore::new()).await;
    let consumer = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .consumer_info("late")
        .await
        .unwrap()
        .clone();
    // A state stream holds one message per subject: `All` is the latest
    // event of every key there (tests/deliver_policy.rs), for less server
    // work than `LastPerSubject`.
    assert_eq!(consumer.config.deliver_policy, DeliverPolicy::All);
    assert_eq!(consumer.config.filter_subject, "bank.account.>");

    let mut delivered = 0;
    bounded("catching up", async {
        loop {
            let progress = follower.poll().await.unwrap();
            delivered += progress.batch.applied.len();
            if progress.caught_up() && delivered > 0 {
                break;
            }
        }
    })
    .await;
    assert_same(follower.replica().replica(), &owner.truth);
    assert_eq!(delivered, KEYS);
    let checkpoint = follower.replica().checkpoint().unwrap();
    assert_eq!(checkpoint.applied, KEYS as u64);
    assert_eq!(checkpoint.stream_sequence, EVENTS as u64);

    // Live: 100 events on distinct keys (80 old, 20 new), published while
    // the follower polls.
    let live = {
        let mut live: Vec<_> = (0..80).map(|i| owner.change(&key(i * 3))).collect();
        live.extend((KEYS..KEYS + 20).map(|i| owner.upsert(&key(i))));
        live
    };
    live.iter().for_each(|e| owner.published(e));
    let publishing = tokio::spawn(async move {
        for envelope in &live {
            publisher.publish(envelope).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let seen = poll_until_same(&mut follower, &owner.truth).await;
    bounded("publishing", publishing).await.unwrap();
    assert_eq!(seen.len(), 100);
    assert_eq!(
        follower.replica().checkpoint().unwrap().applied,
        KEYS as u64 + 100
    );
    assert_same(follower.replica().replica(), &owner.truth);
}

// ---------------------------------------------------------------------------
// Bootstrap by request/response
// ---------------------------------------------------------------------------

type Served = Arc<Mutex<BTreeMap<String, Envelope<Account>>>>;

/// Runs the owner's responder on `client`, answering from `served`, and
/// waits until it answers.
async fn spawn_responder(
    client: &Client,
    subjects: &Subjects,
    served: Served,
) -> tokio::task::JoinHandle<()> {
    let task = {
        let client = client.clone();
        let subjects = subjects.clone();
        tokio::spawn(async move {
            serve_bootstrap::<Account, _>(client, &subjects, move |request| {
                let served = served.lock().unwrap();
                match &request.keys {
                    None => served.values().cloned().collect(),
                    Some(keys) => keys.iter().filter_map(|k| served.get(k).cloned()).collect(),
                }
            })
            .await
            .expect("serving bootstrap requests");
        })
    };
    // The responder subscribes inside the task: ask (for nothing) until it
    // answers.
    bounded("waiting for the responder", async {
        let nothing = BootstrapRequest::keys(Vec::<String>::new());
        while request_bootstrap::<Account>(client, subjects, &nothing, Duration::from_millis(200))
            .await
            .is_err()
        {}
    })
    .await;
    task
}

/// Consumers ask the owner for all keys or some; the answer merges by
/// sequence, so a live update applied before an older answer is kept (the
/// answer's event is `Stale`). Without an owner the request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_by_request_merges_by_sequence() {
    let (server, client, js, subjects) = setup("bank").await;
    let owner_client = connect(&server).await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Owner::new();
    let mut served = BTreeMap::new();
    for i in 0..40 {
        let mut envelope = owner.upsert(&key(i));
        if i % 7 == 3 {
            owner.published(&envelope);
            envelope = owner.delete(&key(i));
        }
        owner.published(&envelope);
        served.insert(key(i), envelope);
    }
    let served: Served = Arc::new(Mutex::new(served));
    let responder = spawn_responder(&owner_client, &subjects, served.clone()).await;

    // All keys, into an empty replica.
    let mut all = follower(&client, settings(&subjects, "all"), MemoryStore::new()).await;
    let outcome = all
        .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome.applied.len(), 40);
    assert!(outcome
        .applied
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Inserted | Outcome::Deleted)));
    assert!(outcome.parked.is_empty());
    assert_same(all.replica().replica(), &owner.truth);
    assert_eq!(
        all.replica().resume_after(),
        0,
        "the stream checkpoint does not move"
    );

    // Some keys (one unknown to the owner).
    let mut some = follower(&client, settings(&subjects, "some"), MemoryStore::new()).await;
    let wanted = [key(1), key(2), "nobody".to_owned()];
    let outcome = some
        .bootstrap_from_owner(&BootstrapRequest::keys(&wanted), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outcome.applied.len(), 2);
    let keys: BTreeSet<String> = wanted[..2].iter().cloned().collect();
    assert_same(some.replica().replica(), &owner.truth_of(&keys));

    // A live update of acc-0005, published after the owner's answer was
    // made (the responder still serves the older state) and applied by the
    // follower before the answer arrives.
    let update = owner.upsert(&key(5));
    publish_recorded(&publisher, &mut owner, update.clone()).await;
    let mut late = follower(&client, settings(&subjects, "late"), MemoryStore::new()).await;
    let only_update: BTreeMap<_, _> = owner.truth_of(&[key(5)].into_iter().collect());
    poll_until_same(&mut late, &only_update).await;
    let answer_order: Vec<String> = served.lock().unwrap().keys().cloned().collect();
    let outcome = late
        .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(5))
        .await
        .unwrap();
    let position = answer_order.iter().position(|k| *k == key(5)).unwrap();
    assert_eq!(
        outcome.applied[position].1,
        Outcome::Stale,
        "the older answer lost"
    );
    assert_eq!(
        late.replica().replica().get(key(5).as_str()),
        update.state(),
        "the live update was not overwritten"
    );
    assert_same(late.replica().replica(), &owner.truth);

    // The requests and answers stayed out of the state stream: it holds the
    // one live update.
    let stream = js.get_stream(STREAM).await.unwrap();
    assert_eq!(stream.cached_info().state.messages, 1);

    // No owner at all: refused at once.
    responder.abort();
    let _ = responder.await;
    // The dropped subscription's UNSUB went before this echo: once the echo
    // is back, the server knows nobody answers.
    synced(&owner_client).await;
    let error = bounded(
        "asking nobody",
        all.bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    match &error {
        NatsError::Bootstrap { entity, reason } => {
            assert_eq!(*entity, "account");
            assert!(reason.contains("no responders"), "{reason}");
        }
        other => panic!("expected a bootstrap failure, got {other:?}"),
    }

    // An owner that never answers: a timeout.
    let silent = owner_client
        .subscribe(subjects.bootstrap("account"))
        .await
        .unwrap();
    synced(&owner_client).await;
    let error = all
        .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_millis(500))
        .await
        .unwrap_err();
    match &error {
        NatsError::Bootstrap { entity, reason } => {
            assert_eq!(*entity, "account");
            assert!(
                reason.contains("no complete answer within 500ms"),
                "{reason}"
            );
        }
        other => panic!("expected a bootstrap timeout, got {other:?}"),
    }
    drop(silent);

    // The consumer that bootstrapped by request follows the stream too.
    poll_until_same(&mut all, &owner.truth).await;
    assert_same(all.replica().replica(), &owner.truth);
}

/// An owner running as several instances answers each request once (the
/// responders share a queue group), so the answer is complete and counted
/// right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_owner_instances_answer_each_request_once() {
    let (server, client, _, subjects) = setup("bank").await;
    const KEYS: usize = 500;
    let mut owner = Owner::new();
    let mut served = BTreeMap::new();
    for i in 0..KEYS {
        let envelope = owner.upsert(&key(i));
        owner.published(&envelope);
        served.insert(key(i), envelope);
    }
    let served: Served = Arc::new(Mutex::new(served));
    let mut instances = Vec::new();
    for _ in 0..3 {
        let instance = connect(&server).await;
        instances.push(spawn_responder(&instance, &subjects, served.clone()).await);
    }
    for round in 0..10 {
        let mut follower = follower(
            &client,
            settings(&subjects, &format!("reader-{round}")),
            MemoryStore::new(),
        )
        .await;
        let outcome = follower
            .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(outcome.applied.len(), KEYS);
        assert_same(follower.replica().replica(), &owner.truth);
    }
    instances.iter().for_each(|i| i.abort());
}

/// Answers that cannot be applied (here: written in a schema version the
/// consumer does not know yet, or for a key with a parked stream event)
/// are reported, not parked: they have no stream sequence to park them
/// under, and asking again after the fix gets them again. What is parked
/// in memory and in the store agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_answers_that_cannot_be_applied_are_reported_not_parked() {
    let (server, client, js, subjects) = setup("bank").await;
    let owner_client = connect(&server).await;
    let mut owner = Owner::new();
    let good = owner.upsert("good");
    owner.published(&good);
    let held = owner.upsert("held");
    owner.published(&held);
    let mut answers = vec![held.to_json().unwrap()];
    for key in ["newer-1", "newer-2"] {
        let mut newer: Value =
            serde_json::from_slice(&owner.upsert(key).to_json().unwrap()).unwrap();
        newer["schemaversion"] = json!(7);
        answers.push(serde_json::to_vec(&newer).unwrap());
    }
    answers.push(good.to_json().unwrap());

    // A hand-written owner speaking the protocol: events, then the end marker.
    let mut requests = owner_client
        .subscribe(subjects.bootstrap("account"))
        .await
        .unwrap();
    synced(&owner_client).await;
    let responder = {
        let owner_client = owner_client.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let reply = request.reply.unwrap();
                for answer in &answers {
                    owner_client
                        .publish(reply.clone(), Bytes::from(answer.clone()))
                        .await
                        .unwrap();
                }
                let end = headers(&[("Ecst-Bootstrap-End", &answers.len().to_string())]);
                owner_client
                    .publish_with_headers(reply, end, Bytes::new())
                    .await
                    .unwrap();
                owner_client.flush().await.unwrap();
            }
        })
    };

    // The stream had garbage for `held`, parked by the follower.
    let garbage = subjects.event("account", "held").unwrap();
    publish_raw(&js, garbage, None, b"garbage".to_vec()).await;
    let mut follower = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    bounded("catching up", follower.catch_up()).await.unwrap();
    let parked: Vec<_> = follower.replica().parked().cloned().collect();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].is_pending());

    let outcome = follower
        .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(5))
        .await
        .unwrap();
    // The owner's current state of `held` applies (nothing is held behind
    // a parked event) and supersedes the garbage parked for it.
    assert_eq!(
        outcome.applied,
        vec![(0, Outcome::Inserted), (0, Outcome::Inserted)]
    );
    assert!(outcome.parked.is_empty(), "{outcome:?}");
    assert_eq!(outcome.superseded, vec![parked[0].stream_sequence]);
    let reasons: Vec<&str> = outcome
        .rejected
        .iter()
        .map(|(_, r)| r.message.as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{outcome:?}");
    assert!(reasons[0].contains("schemaversion 7"), "{}", reasons[0]);
    assert!(reasons[1].contains("schemaversion 7"), "{}", reasons[1]);
    assert!(outcome.rejected.iter().all(|(sequence, _)| *sequence == 0));
    let now: Vec<_> = follower.replica().parked().cloned().collect();
    assert_eq!(now.len(), 1, "nothing more parked");
    assert_eq!(now[0].resolution, Some(Resolution::Superseded));
    assert_eq!(follower.replica().pending_parked(), 0);
    let reopened: DurableReplica<Account, MemoryStore> =
        DurableReplica::open(follower.replica().store().clone())
            .await
            .unwrap();
    assert_eq!(reopened.parked().cloned().collect::<Vec<_>>(), now);
    assert_same(follower.replica().replica(), &owner.truth);
    assert_same(reopened.replica(), &owner.truth);
    responder.abort();
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

async fn publish_good(
    publisher: &Publisher,
    owner: &mut Owner,
    good: &mut BTreeSet<String>,
    key: String,
) {
    let envelope = owner.upsert(&key);
    publish_recorded(publisher, owner, envelope).await;
    good.insert(key);
}

async fn publish_raw(js: &Context, subject: String, headers: Option<HeaderMap>, body: Vec<u8>) {
    let ack = match headers {
        Some(headers) => {
            js.publish_with_headers(subject, headers, Bytes::from(body))
                .await
        }
        None => js.publish(subject, Bytes::from(body)).await,
    };
    ack.unwrap().await.unwrap();
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, *value);
    }
    headers
}

/// Garbage, broken binary-mode headers, a future schema version, a wrong
/// entity type, an oversized payload, a message whose envelope names
/// another key than its subject and a subject that is no key encoding are
/// parked with typed reasons; they hold nothing back: the next valid event
/// of each key applies and supersedes them; other keys keep flowing, the
/// spoofed key is never touched, and the follower neither fails nor stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_parked_and_superseded_never_holding_a_key_back() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Owner::new();
    let subject = |key: &str| subjects.event("account", key).unwrap();
    let mut good: BTreeSet<String> = BTreeSet::new();

    publish_good(&publisher, &mut owner, &mut good, key(0)).await;
    publish_raw(
        &js,
        subject("bad-garbage"),
        None,
        b"\x00\xffnot json at all".to_vec(),
    )
    .await;
    publish_good(&publisher, &mut owner, &mut good, key(1)).await;
    // Binary mode without `ce-id`.
    publish_raw(
        &js,
        subject("bad-headers"),
        Some(headers(&[
            ("ce-specversion", "1.0"),
            ("ce-type", "account"),
            ("ce-source", "urn:example:bank"),
            ("ce-subject", "bad-headers"),
            ("ce-sequence", "1"),
            ("ce-schemaversion", "1"),
            ("ce-operation", "upsert"),
        ])),
        serde_json::to_vec(&json!({"id": "bad-headers", "owner": "x", "balance": 1})).unwrap(),
    )
    .await;
    publish_good(&publisher, &mut owner, &mut good, key(2)).await;
    // `ce-` headers but no `ce-specversion`: not binary mode, and the body
    // alone is no CloudEvent.
    publish_raw(
        &js,
        subject("bad-nospec"),
        Some(headers(&[
            ("ce-type", "account"),
            ("ce-id", "account:bad-nospec:1"),
        ])),
        serde_json::to_vec(&json!({"id": "bad-nospec", "owner": "x", "balance": 1})).unwrap(),
    )
    .await;
    // Binary mode naming another entity.
    publish_raw(
        &js,
        subject("bad-type"),
        Some(headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "customer:bad-type:1"),
            ("ce-type", "customer"),
            ("ce-source", "urn:example:crm"),
            ("ce-subject", "bad-type"),
            ("ce-sequence", "1"),
            ("ce-schemaversion", "1"),
            ("ce-operation", "upsert"),
        ])),
        serde_json::to_vec(&json!({"id": "bad-type", "owner": "x", "balance": 1})).unwrap(),
    )
    .await;
    // Written by a newer producer: schema version 99.
    let mut future: Value =
        serde_json::from_slice(&owner.upsert("bad-future").to_json().unwrap()).unwrap();
    future["schemaversion"] = json!(99);
    future["dataschema"] = json!("urn:ecst:schema:account:v99");
    publish_raw(
        &js,
        subject("bad-future"),
        None,
        serde_json::to_vec(&future).unwrap(),
    )
    .await;
    publish_good(&publisher, &mut owner, &mut good, key(3)).await;
    // Over this follower's 4 KiB limit (valid otherwise).
    let big = owner
        .producer
        .upsert(Account {
            id: "bad-big".into(),
            owner: "x".repeat(10_000),
            balance: 1,
        })
        .unwrap();
    publisher.publish(&big).await.unwrap();
    // Sent on `bad-spoof`, but its envelope overwrites key 0 at a huge
    // sequence: it must never reach key 0.
    let mut spoofer = Producer::<Account>::new("urn:example:attacker");
    let spoof = spoofer
        .upsert_at(
            Account {
                id: key(0),
                owner: "eve".into(),
                balance: 1_000_000,
            },
            Sequence::new(1 << 40),
        )
        .unwrap();
    publish_raw(&js, subject("bad-spoof"), None, spoof.to_json().unwrap()).await;
    // A subject that is not the canonical encoding of any key (`%41` is
    // `A`, which is written as itself).
    let uncanonical = format!("{}.account.%41", subjects.prefix());
    publish_raw(
        &js,
        uncanonical.clone(),
        None,
        owner.upsert("A").to_json().unwrap(),
    )
    .await;
    for i in 4..20 {
        publish_good(&publisher, &mut owner, &mut good, key(i)).await;
    }

    let mut settings = settings(&subjects, "reader");
    settings.max_payload = 4096;
    settings.batch = 8;
    let mut follower = follower(&client, settings, MemoryStore::new()).await;
    bounded("catching up", follower.catch_up())
        .await
        .expect("bad input never fails the follower");

    let bad = [
        "bad-garbage",
        "bad-headers",
        "bad-nospec",
        "bad-type",
        "bad-future",
        "bad-big",
        "bad-spoof",
    ];
    let expected = [
        ("not a JSON CloudEvent", ParkKind::Invalid),
        ("required attribute `id` is missing", ParkKind::Invalid),
        (
            "required attribute `specversion` is missing",
            ParkKind::Invalid,
        ),
        ("entity `customer`", ParkKind::Misaddressed),
        ("99", ParkKind::FutureVersion),
        (
            "payload exceeds the 4096 byte limit of this follower",
            ParkKind::Refused,
        ),
        (
            "a message applies only to the entity and key it was sent to",
            ParkKind::Misaddressed,
        ),
    ];
    let parked: Vec<_> = follower.replica().parked().cloned().collect();
    assert_eq!(parked.len(), bad.len() + 1, "{parked:#?}");
    for ((key, (reason, kind)), parked) in bad.iter().zip(expected).zip(&parked) {
        assert_eq!(parked.subject, subject(key));
        assert_eq!(parked.key.as_deref(), Some(*key), "{parked:?}");
        assert_eq!(parked.reason.kind, kind, "{parked:?}");
        assert!(parked.is_pending(), "{parked:?}");
        assert!(
            parked.reason.message.contains(reason),
            "{key}: `{}` should mention `{reason}`",
            parked.reason
        );
    }
    assert_eq!(
        parked[5].payload.len(),
        big.to_json().unwrap().len(),
        "parked as received"
    );
    let last = &parked[bad.len()];
    assert_eq!(last.subject, uncanonical);
    assert_eq!(last.key, None, "an undecodable subject names no key");
    assert_eq!(last.reason.kind, ParkKind::Misaddressed);
    assert!(
        last.reason.message.contains("canonically"),
        "{}",
        last.reason
    );
    assert_same(follower.replica().replica(), &owner.truth_of(&good));
    assert_eq!(
        follower
            .replica()
            .replica()
            .get(&key(0))
            .map(|a| a.owner.as_str()),
        Some(owner.truth[&key(0)].1.as_ref().unwrap().owner.as_str()),
        "the spoofed key is untouched"
    );

    // Valid events for every bad key apply at once and supersede what is
    // parked for it; the good keys move on.
    for key in bad {
        let envelope = owner.upsert(key);
        publish_recorded(&publisher, &mut owner, envelope).await;
        good.insert(key.to_owned());
    }
    for i in (0..10).chain(20..25) {
        publish_good(&publisher, &mut owner, &mut good, key(i)).await;
    }
    bounded("catching up", follower.catch_up()).await.unwrap();
    let now: Vec<_> = follower.replica().parked().cloned().collect();
    assert_eq!(now.len(), bad.len() + 1, "nothing more parked: {now:#?}");
    for parked in &now[..bad.len()] {
        assert_eq!(
            parked.resolution,
            Some(Resolution::Superseded),
            "{parked:?}"
        );
    }
    assert!(
        now[bad.len()].is_pending(),
        "the keyless one waits for an operator"
    );
    assert_same(follower.replica().replica(), &owner.truth_of(&good));

    // Nothing left to retry; the operator discards the keyless message, and
    // the parking lot is durable.
    let retried = follower.replica_mut().retry_parked().await.unwrap();
    assert!(retried.applied.is_empty(), "{retried:?}");
    let keyless = now[bad.len()].stream_sequence;
    assert!(follower
        .replica_mut()
        .discard_parked(keyless, "a foreign publisher's mistake")
        .await
        .unwrap());
    assert_eq!(follower.replica().pending_parked(), 0);
    let reopened: DurableReplica<Account, MemoryStore> =
        DurableReplica::open(follower.replica().store().clone())
            .await
            .unwrap();
    assert_eq!(
        reopened.parked().cloned().collect::<Vec<_>>(),
        follower.replica().parked().cloned().collect::<Vec<_>>()
    );
    assert_same(reopened.replica(), &owner.truth_of(&good));

    // Still following: a later event of a good key comes through.
    publish_good(&publisher, &mut owner, &mut good, key(5)).await;
    poll_until_same(&mut follower, &owner.truth_of(&good)).await;
}

// ---------------------------------------------------------------------------
// Server version guard and stream checks
// ---------------------------------------------------------------------------

/// On nats-server 2.9 (which silently ignores 2.10 settings), stream
/// compression and several filter subjects are refused up front; a stream
/// that keeps more than one message per subject, captures other subjects,
/// or has limits that drop old states, is not taken for a state stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_server_cannot_honour_are_refused() {
    let (_server, client, js, subjects) = setup("bank").await;
    let version = ServerVersion::of(&client).unwrap();

    let compressed = StateStream {
        compression: true,
        ..StateStream::new("COMPRESSED", Subjects::new("zipped").unwrap())
    };
    let result = compressed.ensure(&js, version).await;
    let mut two_filters = settings(&subjects, "two");
    two_filters.filter_subjects = vec!["bank.account.a-*".into(), "bank.account.b-*".into()];
    let durable = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let started = Follower::start(client.clone(), two_filters, durable).await;

    if version < ServerVersion::V2_10 {
        let error = result.unwrap_err();
        assert!(
            matches!(error, NatsError::ServerTooOld { feature: "stream compression", needs: ServerVersion::V2_10, server } if server == version),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "stream compression needs nats-server 2.10.0 or newer, but the server is {version} \
                 (older servers silently ignore the setting)"
            )
        );
        assert!(
            js.get_stream("COMPRESSED").await.is_err(),
            "nothing was created"
        );
        let error = started.err().expect("two filter subjects must be refused");
        assert_eq!(
            error.to_string(),
            format!(
                "following several filter subjects needs nats-server 2.10.0 or newer, but the \
                 server is {version} (older servers silently ignore the setting)"
            )
        );
        if version == ServerVersion::new(2, 9, 10) {
            assert!(error.to_string().contains("the server is 2.9.10"));
        }
    } else {
        result.expect("a 2.10 server compresses");
        started.expect("a 2.10 server filters on several subjects");
    }

    // A stream of the same subjects that keeps history is not a state stream.
    let config = jetstream::stream::Config {
        name: "HISTORY".into(),
        subjects: vec!["history.>".into()],
        max_messages_per_subject: 5,
        ..Default::default()
    };
    js.create_stream(config).await.unwrap();
    let error = StateStream::new("HISTORY", Subjects::new("history").unwrap())
        .ensure(&js, version)
        .await
        .unwrap_err();
    match &error {
        NatsError::StreamMismatch { stream, reason } => {
            assert_eq!(stream, "HISTORY");
            assert!(reason.contains("keeps 5 messages per subject"), "{reason}");
        }
        other => panic!("expected StreamMismatch, got {other:?}"),
    }
    // Nor one over other subjects.
    let config = jetstream::stream::Config {
        name: "ELSEWHERE".into(),
        subjects: vec!["elsewhere.>".into()],
        max_messages_per_subject: 1,
        ..Default::default()
    };
    js.create_stream(config).await.unwrap();
    let error = StateStream::new("ELSEWHERE", Subjects::new("bank2").unwrap())
        .ensure(&js, version)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, NatsError::StreamMismatch { reason, .. } if reason.contains("elsewhere.>")),
        "{error:?}"
    );

    // Nor one whose limits drop old states.
    let limits = [
        (
            "AGED",
            jetstream::stream::Config {
                max_age: Duration::from_secs(3600),
                ..Default::default()
            },
            "expire after 3600s",
        ),
        (
            "CAPPED",
            jetstream::stream::Config {
                max_messages: 1000,
                ..Default::default()
            },
            "discards its oldest messages beyond 1000 messages",
        ),
        (
            "FROZEN",
            jetstream::stream::Config {
                discard: jetstream::stream::DiscardPolicy::New,
                discard_new_per_subject: true,
                max_messages: 1000,
                ..Default::default()
            },
            "no key could change",
        ),
    ];
    for (name, config, expected) in limits {
        let prefix = name.to_lowercase();
        let config = jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{prefix}.>")],
            max_messages_per_subject: 1,
            ..config
        };
        js.create_stream(config).await.unwrap();
        let error = StateStream::new(name, Subjects::new(prefix).unwrap())
            .ensure(&js, version)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NatsError::StreamMismatch { reason, .. } if reason.contains(expected)),
            "{name}: {error}"
        );
    }
    // A bounded stream that refuses new messages when full loses nothing.
    let config = jetstream::stream::Config {
        name: "BOUNDED".into(),
        subjects: vec!["bounded.>".into()],
        max_messages_per_subject: 1,
        max_bytes: 1 << 30,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.create_stream(config).await.unwrap();
    StateStream::new("BOUNDED", Subjects::new("bounded").unwrap())
        .ensure(&js, version)
        .await
        .expect("discard-new limits keep every state");

    // The stream `setup` made is a state stream, and ensuring it again is fine.
    let stream = StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .unwrap();
    let info = stream.cached_info();
    assert_eq!(info.config.max_messages_per_subject, 1);
    assert_eq!(info.config.subjects, vec!["bank.>".to_owned()]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
}

/// A NATS header cannot carry a line break: binary mode refuses such an
/// event with an error (async-nats would panic on the header), and the same
/// event goes out in structured mode, where JSON escapes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_refuses_attributes_a_header_cannot_carry() {
    let (_server, client, js, subjects) = setup("bank").await;
    let structured = Publisher::new(js.clone(), subjects.clone());
    let binary = structured.clone().with_mode(Mode::Binary);
    let mut owner = Owner::new();
    let envelope = owner
        .upsert("multiline")
        .with_correlation_id("first line\r\nce-operation: delete");

    let error = binary.publish(&envelope).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("attribute `correlationid` contains a line break"),
        "{error}"
    );
    assert_eq!(
        js.get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        0
    );

    publish_recorded(&structured, &mut owner, envelope).await;
    let mut follower = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    poll_until_same(&mut follower, &owner.truth).await;
    assert_same(follower.replica().replica(), &owner.truth);
}

// ---------------------------------------------------------------------------
// Faults of the consume path: cancellation, broker restart, stream reset
// ---------------------------------------------------------------------------

/// Publishes `keys` upserts (one per key) and returns the owner.
async fn publish_keys(publisher: &Publisher, keys: usize) -> Owner {
    let mut owner = Owner::new();
    let mut batch = Vec::with_capacity(keys);
    for i in 0..keys {
        let envelope = owner.upsert(&key(i));
        owner.published(&envelope);
        batch.push(envelope);
    }
    for chunk in batch.chunks(500) {
        publisher.publish_all(chunk).await.expect("publishing");
    }
    owner
}

/// `poll` dropped at every kind of await point — zero and tiny time
/// budgets, again and again, during the catch-up and while live events
/// arrive — loses nothing: the replica ends equal to the owner's state.
/// Before polls were cancellation-safe, a poll dropped inside a fetch lost
/// the messages it had received, and the next commit moved the checkpoint
/// past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_cancelled_at_any_point_lose_nothing() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = publish_keys(&publisher, 1_000).await;
    let mut settings = settings(&subjects, "reader");
    settings.batch = 32;
    let mut follower = follower(&client, settings, MemoryStore::new()).await;

    let budgets = [0u64, 0, 1, 0, 2, 5, 0, 1, 3, 10, 0, 20];
    let mut cancelled = 0;
    let mut completed = 0;
    for round in 0..400 {
        let budget = Duration::from_micros(budgets[round % budgets.len()] * 250);
        match tokio::time::timeout(budget, follower.poll()).await {
            Err(_) => cancelled += 1,
            Ok(result) => {
                result.expect("polling");
                completed += 1;
            }
        }
        if round % 50 == 0 {
            // Live changes while the cancellations go on.
            for _ in 0..20 {
                let k = key(owner.below(1_000) as usize);
                let envelope = owner.change(&k);
                publish_recorded(&publisher, &mut owner, envelope).await;
            }
        }
    }
    assert!(cancelled > 50, "the budgets must cancel polls: {cancelled}");
    bounded("catching up", follower.catch_up()).await.unwrap();
    assert_same(follower.replica().replica(), &owner.truth);
    // And durably so: the store holds the same.
    let reopened: DurableReplica<Account, MemoryStore> =
        DurableReplica::open(follower.replica().store().clone())
            .await
            .unwrap();
    assert_same(reopened.replica(), &owner.truth);
    eprintln!("{cancelled} polls cancelled, {completed} completed");
}

/// The broker is killed mid catch-up and restarted on its store: the
/// follower's `catch_up` returns only once the replica holds the owner's
/// whole state. Before, the empty fetches right after the restart read as
/// "nothing pending" and catch-up ended with a partial replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_after_a_broker_restart_means_the_whole_state() {
    let (mut server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    const KEYS: usize = 5_000;
    let owner = publish_keys(&publisher, KEYS).await;
    let mut settings = settings(&subjects, "reader");
    settings.batch = 64;
    settings.retry = RetryPolicy {
        attempts: 50,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    let mut follower = follower(&client, settings, MemoryStore::new()).await;
    // Part of the way in.
    while follower.replica().replica().len() < KEYS / 10 {
        follower.poll().await.expect("polling");
    }
    server.stop();
    server.restart();
    let mut polls = 0;
    bounded("catching up across the restart", async {
        loop {
            polls += 1;
            match follower.poll().await {
                Ok(progress) if progress.caught_up() => break,
                Ok(_) | Err(_) => {}
            }
        }
    })
    .await;
    assert_eq!(
        follower.replica().replica().len(),
        KEYS,
        "caught up claimed with a partial replica"
    );
    assert_same(follower.replica().replica(), &owner.truth);
    eprintln!("caught up after {polls} polls across the restart");
}

/// The state stream is deleted and created again (numbering from 1, below
/// the follower's checkpoint) and the owner publishes its state again: a
/// follower restarted from its store notices and bootstraps again, instead
/// of waiting, silently, for sequences above its old checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_bootstrapped_again() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = publish_keys(&publisher, 300).await;
    let mut first = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    bounded("catching up", first.catch_up()).await.unwrap();
    assert_same(first.replica().replica(), &owner.truth);
    let store = first.replica().store().clone();
    let checkpoint = first.replica().resume_after();
    assert!(checkpoint >= 300);
    drop(first);

    js.delete_stream(STREAM).await.unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .unwrap();
    // The owner re-publishes a few keys, newer states: fewer messages than
    // the old checkpoint.
    for i in 0..20 {
        let envelope = owner.upsert(&key(i));
        publish_recorded(
            &Publisher::new(js.clone(), subjects.clone()),
            &mut owner,
            envelope,
        )
        .await;
    }
    let mut follower = follower(&client, settings(&subjects, "reader"), store).await;
    bounded("catching up", follower.catch_up()).await.unwrap();
    assert_same(follower.replica().replica(), &owner.truth);
    assert!(follower.replica().resume_after() < checkpoint);
}

// ---------------------------------------------------------------------------
// One follower per durable name
// ---------------------------------------------------------------------------

/// A second follower on the same durable name is refused with a clear error
/// while the first one runs (before, both ran and split the messages, each
/// replica missing what the other got); it starts at once after the first
/// stops, and after the first crashes, once its lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_follower_on_one_durable_name_is_refused() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let owner = publish_keys(&publisher, 200).await;
    let mut first = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    bounded("catching up", first.catch_up()).await.unwrap();

    let mut impatient = settings(&subjects, "reader");
    impatient.lease_wait = Duration::from_millis(300);
    let other_client = connect(&_server).await;
    let durable = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let refused = Follower::start(other_client.clone(), impatient.clone(), durable).await;
    match refused {
        Err(NatsError::DurableNameTaken {
            durable_name,
            holder,
            ..
        }) => {
            assert_eq!(durable_name, "reader");
            assert!(holder.contains(&std::process::id().to_string()), "{holder}");
        }
        Err(other) => panic!("expected DurableNameTaken, got {other}"),
        Ok(_) => panic!("a second follower on the same durable name was started"),
    }
    // The first one keeps its name across polls (its lease is renewed).
    for _ in 0..8 {
        first.poll().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let durable = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    assert!(matches!(
        Follower::start(other_client.clone(), impatient.clone(), durable).await,
        Err(NatsError::DurableNameTaken { .. })
    ));

    // Stopped: the name is free at once.
    let store = first.stop().await.store().clone();
    let durable = DurableReplica::<Account, _>::open(store).await.unwrap();
    let mut second = Follower::start(other_client.clone(), impatient.clone(), durable)
        .await
        .expect("the name is free after stop");
    bounded("catching up", second.catch_up()).await.unwrap();
    assert_same(second.replica().replica(), &owner.truth);

    // Crashed (dropped without stop): the next one waits for the lease to
    // expire, then starts.
    let store = second.into_replica().store().clone();
    let durable = DurableReplica::<Account, _>::open(store).await.unwrap();
    let mut third = Follower::start(other_client, settings(&subjects, "reader"), durable)
        .await
        .expect("the crashed holder's lease expires");
    bounded("catching up", third.catch_up()).await.unwrap();
    assert_same(third.replica().replica(), &owner.truth);
}

// ---------------------------------------------------------------------------
// Found by the soak test
// ---------------------------------------------------------------------------

/// A follower whose filter does not match the stream's last messages (the
/// stream holds another entity too) catches up all the same. Before, the
/// server's delivered stream position, which moves past messages outside
/// the filter, was taken for a lost delivery, and `catch_up` never returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_tail_is_another_entity_is_caught_up() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let owner = publish_keys(&publisher, 50).await;
    // Messages of another entity after the last account.
    for i in 0..5 {
        publish_raw(
            &js,
            subjects.event("invoice", &format!("i-{i}")).unwrap(),
            None,
            b"{}".to_vec(),
        )
        .await;
    }
    let mut follower = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    bounded("catching up", follower.catch_up()).await.unwrap();
    assert_same(follower.replica().replica(), &owner.truth);
}

/// A foreign message on an owner's subject with a readable header (this
/// key, a high sequence) but a payload every consumer parks does not block
/// the owner's key: the guarded publisher overwrites it. Before, the guard
/// read only the header and refused every later event up to that sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_foreign_event_does_not_block_the_owners_key() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = Owner::new();
    let first = owner.upsert(&key(1));
    publish_recorded(&publisher, &mut owner, first).await;
    let mut forged: Value =
        serde_json::from_slice(&owner.upsert(&key(1)).to_json().unwrap()).unwrap();
    forged["sequence"] = json!("1000");
    forged["data"]["balance"] = json!("not a number");
    publish_raw(
        &js,
        subjects.event("account", &key(1)).unwrap(),
        None,
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    // The owner's next event goes through, over the invalid one.
    let next = owner.upsert(&key(1));
    publish_recorded(&publisher, &mut owner, next).await;
    let mut follower = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    bounded("catching up", follower.catch_up()).await.unwrap();
    assert_same(follower.replica().replica(), &owner.truth);
}

/// Found by a red-team review: a raw client can store a message whose
/// header block is a status line (`NATS/1.0 503`, `404`, `100`) in the
/// stream. The follower took it for the server's answer to its fetch: with
/// 503 every poll failed, with 404 or 100 the catch-up never ended, and the
/// keys after it never arrived. A message with an acknowledgement subject
/// is a stream message, whatever its status: it is parked, the rest applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_status_line_is_parked_not_taken_for_the_servers_answer() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    for status_line in [
        "NATS/1.0 503",
        "NATS/1.0 404 No Messages",
        "NATS/1.0 100 Idle Heartbeat",
    ] {
        let (server, client, js, subjects) = setup("bank").await;
        let publisher = Publisher::new(js.clone(), subjects.clone());
        let mut owner = Owner::new();
        let first = owner.upsert("a");
        publish_recorded(&publisher, &mut owner, first).await;
        // A raw HPUB whose header block is a status line.
        let port = server.port();
        let subject = subjects.event("account", "junk").unwrap();
        let line = status_line.to_owned();
        tokio::task::spawn_blocking(move || {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut text = String::new();
            reader.read_line(&mut text).unwrap(); // INFO
            let header = format!("{line}\r\n\r\n");
            let body = b"{}";
            let mut out = Vec::new();
            out.extend_from_slice(
                b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n",
            );
            out.extend_from_slice(
                format!(
                    "HPUB {subject} {} {}\r\n",
                    header.len(),
                    header.len() + body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\nPING\r\n");
            writer.write_all(&out).unwrap();
            loop {
                text.clear();
                reader.read_line(&mut text).unwrap();
                if text.starts_with("PONG") || text.starts_with("-ERR") {
                    break;
                }
            }
        })
        .await
        .unwrap();
        let second = owner.upsert("b");
        publish_recorded(&publisher, &mut owner, second).await;
        let mut follower =
            follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
        bounded("catching up", follower.catch_up())
            .await
            .unwrap_or_else(|e| panic!("{status_line}: {e}"));
        assert_same(follower.replica().replica(), &owner.truth);
        assert_eq!(follower.replica().parked_len(), 1, "{status_line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_longer_than_the_checkpoint_is_read_from_its_start() {
    let (_server, client, js, subjects) = setup("bank").await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut owner = publish_keys(&publisher, 30).await;
    let mut first = follower(&client, settings(&subjects, "reader"), MemoryStore::new()).await;
    bounded("catching up", first.catch_up()).await.unwrap();
    let store = first.replica().store().clone();
    first.stop().await;
    js.delete_stream(STREAM).await.unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .unwrap();
    for i in 0..80 {
        let envelope = owner.upsert(&key(i));
        publish_recorded(
            &Publisher::new(js.clone(), subjects.clone()),
            &mut owner,
            envelope,
        )
        .await;
    }
    let mut follower = follower(&client, settings(&subjects, "reader"), store).await;
    bounded("catching up", follower.catch_up()).await.unwrap();
    assert_same(follower.replica().replica(), &owner.truth);
}
