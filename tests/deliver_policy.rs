//! Does a new consumer of a state stream need `DeliverPolicy::LastPerSubject`
//! (what a new `Follower` asks for), or does the cheaper
//! `DeliverPolicy::All` give the same replica? Against a real `nats-server`.
//!
//! On a state stream (`max_messages_per_subject = 1`) the server holds only
//! the latest message of every subject, so delivering all it holds is
//! delivering the last per subject: the same messages, in the same (stream
//! sequence) order, and so the same replica, parked messages and
//! checkpoint. The stream here has every kind of last message: updates of
//! which only the newest is kept, deletes, an older event published after a
//! newer one (stale), an undecodable payload and a misaddressed envelope.
//!
//! The second test shows the stream's limit is what makes them equal: on a
//! stream that keeps history, `All` delivers more than `LastPerSubject`.

#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use ecst::consume::{Address, Message};
use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
use ecst::store::{Checkpoint, DurableReplica, MemoryStore, Parked};
use ecst::{Entry, Producer, Sequence, StateEvent};
use futures_util::StreamExt;
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

fn account(i: usize, balance: i64) -> Account {
    Account {
        id: format!("a-{i:04}"),
        balance,
    }
}

const STREAM: &str = "ACCOUNTS";
const PREFIX: &str = "bank";
const KEYS: usize = 240;
const PATIENCE: Duration = Duration::from_secs(20);

/// What a replica ends with, comparable: every key's sequence and state
/// (`None`: a tombstone), the parked messages and the checkpoint.
#[derive(Debug, PartialEq)]
struct Outcome {
    entries: BTreeMap<String, (Sequence, Option<Account>)>,
    parked: Vec<Parked>,
    checkpoint: Option<Checkpoint>,
}

fn outcome(replica: &DurableReplica<Account, MemoryStore>) -> Outcome {
    Outcome {
        entries: replica
            .replica()
            .entries()
            .map(|(key, entry)| {
                let held = match entry {
                    Entry::Live { sequence, state } => (sequence, Some(state.clone())),
                    Entry::Tombstone { sequence } => (sequence, None),
                };
                (key.clone(), held)
            })
            .collect(),
        parked: replica.parked().cloned().collect(),
        // The follower also records which stream its positions count in
        // (the stream's creation time); a replica fed by hand has none.
        checkpoint: replica.checkpoint().map(|checkpoint| Checkpoint {
            stream_created: None,
            ..checkpoint
        }),
    }
}

/// Fills the stream under `subjects` with every kind of last message;
/// returns how many messages were published.
async fn publish_history(js: &Context, subjects: &Subjects) -> usize {
    let guarded = Publisher::new(js.clone(), subjects.clone());
    let unguarded = Publisher::new(js.clone(), subjects.clone()).unguarded();
    let mut owner = Producer::<Account>::new("urn:example:bank");
    let mut published = 0;
    let first: Vec<_> = (0..KEYS)
        .map(|i| owner.upsert(account(i, i as i64)).unwrap())
        .collect();
    published += guarded
        .publish_all(&first)
        .await
        .expect("first states")
        .len();
    for i in 0..KEYS {
        if i % 3 == 0 {
            // Two updates: only the newest stays in the stream.
            for balance in [1_000, 2_000] {
                let update = owner.upsert(account(i, balance + i as i64)).unwrap();
                guarded.publish(&update).await.expect("update");
                published += 1;
            }
        }
        if i % 5 == 0 {
            let delete = owner.delete(account(i, 0).id).unwrap();
            guarded.publish(&delete).await.expect("delete");
            published += 1;
        }
        if i % 7 == 0 {
            // A newer event, then an older one: the stream keeps the older.
            let older = owner.upsert(account(i, -1)).unwrap();
            let newer = owner.upsert(account(i, -2)).unwrap();
            unguarded.publish(&newer).await.expect("newer");
            unguarded.publish(&older).await.expect("older");
            published += 2;
        }
    }
    // Last messages that park: an undecodable payload, and the envelope of
    // one key on another key's subject.
    for i in (0..KEYS).filter(|i| i % 11 == 0) {
        let subject = subjects.event(Account::ENTITY, &account(i, 0).id).unwrap();
        js.publish(subject, Bytes::from_static(b"{\"not\": \"an event\""))
            .await
            .expect("send garbage")
            .await
            .expect("garbage stored");
        published += 1;
    }
    for i in (0..KEYS).filter(|i| i % 13 == 1) {
        let envelope = owner.upsert(account(i, 77)).unwrap();
        let other = subjects
            .event(Account::ENTITY, &account(i + 1, 0).id)
            .unwrap();
        js.publish(other, Bytes::from(envelope.to_json().unwrap()))
            .await
            .expect("send misaddressed")
            .await
            .expect("misaddressed stored");
        published += 1;
    }
    published
}

/// Every message a fresh consumer with `policy` delivers, until none is
/// pending: (stream sequence, subject, payload), acknowledged.
async fn deliveries(
    js: &Context,
    subjects: &Subjects,
    name: &str,
    policy: DeliverPolicy,
) -> Vec<(u64, String, Bytes)> {
    let stream = js.get_stream(STREAM).await.expect("stream");
    let consumer = stream
        .create_consumer(PullConfig {
            durable_name: Some(name.to_owned()),
            deliver_policy: policy,
            ack_policy: AckPolicy::Explicit,
            filter_subject: subjects.entity(Account::ENTITY),
            ..PullConfig::default()
        })
        .await
        .expect("consumer");
    let mut delivered = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        let mut pending = 0;
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let info = message.info().expect("JetStream message");
            pending = info.pending;
            delivered.push((
                info.stream_sequence,
                message.subject.to_string(),
                message.payload.clone(),
            ));
            message.ack().await.expect("ack");
        }
        if pending == 0 {
            break;
        }
    }
    delivered
}

/// A fresh durable replica fed `delivered` in batches, each message
/// addressed by its subject as a follower addresses it.
async fn replica_of(
    subjects: &Subjects,
    delivered: &[(u64, String, Bytes)],
) -> DurableReplica<Account, MemoryStore> {
    let mut replica = DurableReplica::<Account, MemoryStore>::open(MemoryStore::new())
        .await
        .expect("open");
    for chunk in delivered.chunks(64) {
        let messages: Vec<Message<'_>> = chunk
            .iter()
            .map(|(sequence, subject, payload)| {
                let address = match subjects.address(subject) {
                    Ok(address) => Address::Key {
                        entity: address.entity,
                        key: address.key,
                    },
                    Err(error) => Address::Invalid(error.to_string().into()),
                };
                Message::new(*sequence, subject, payload).addressed(address)
            })
            .collect();
        replica.apply_batch(&messages).await.expect("apply");
    }
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_state_stream_all_gives_the_replica_last_per_subject_gives() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(PREFIX).unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .expect("state stream");
    let published = publish_history(&js, &subjects).await;
    let mut stream = js.get_stream(STREAM).await.expect("stream");
    let held = stream.info().await.expect("info").state.messages as usize;
    assert_eq!(held, KEYS, "one message per key");
    assert!(published > held, "the stream dropped older messages");

    // The server's side: the same messages, in the same order.
    let all = deliveries(&js, &subjects, "all", DeliverPolicy::All).await;
    let last = deliveries(&js, &subjects, "last", DeliverPolicy::LastPerSubject).await;
    assert_eq!(all.len(), KEYS);
    let sequences = |d: &[(u64, String, Bytes)]| d.iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(sequences(&all), sequences(&last));
    assert!(sequences(&all).windows(2).all(|w| w[0] < w[1]));

    // The consumer's side: a replica fed what `LastPerSubject` delivers, one
    // fed what `All` delivers, and a follower (which asks for `All` on a
    // state stream) end the same.
    let from_all = outcome(&replica_of(&subjects, &all).await);
    let from_last = outcome(&replica_of(&subjects, &last).await);
    assert_eq!(from_all, from_last);
    let settings = FollowSettings::new(STREAM, "follower", subjects.clone());
    let replica = DurableReplica::<Account, MemoryStore>::open(MemoryStore::new())
        .await
        .expect("open");
    let mut follower = Follower::start(client.clone(), settings, replica)
        .await
        .expect("follower");
    tokio::time::timeout(PATIENCE, follower.catch_up())
        .await
        .expect("caught up in time")
        .expect("catch up");
    let from_follower = outcome(follower.replica());
    assert_eq!(from_all, from_follower);

    // Every kind of last message is in there.
    let tombstones = from_all.entries.values().filter(|e| e.1.is_none()).count();
    let stale = from_all
        .entries
        .values()
        .filter(|e| e.1.as_ref().is_some_and(|a| a.balance == -1))
        .count();
    assert!(tombstones > 0 && stale > 0, "deletes and stale events held");
    assert!(
        from_all.parked.len() >= 2,
        "garbage and misaddressed parked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_stream_with_history_all_delivers_more_than_last_per_subject() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(PREFIX).unwrap();
    js.create_stream(StreamConfig {
        name: STREAM.to_owned(),
        subjects: vec![subjects.all()],
        max_messages_per_subject: 5,
        ..StreamConfig::default()
    })
    .await
    .expect("stream with history");
    let published = publish_history(&js, &subjects).await;
    let mut stream = js.get_stream(STREAM).await.expect("stream");
    let held = stream.info().await.expect("info").state.messages as usize;
    assert!(held > KEYS && held <= published);
    let all = deliveries(&js, &subjects, "all", DeliverPolicy::All).await;
    let last = deliveries(&js, &subjects, "last", DeliverPolicy::LastPerSubject).await;
    assert_eq!(last.len(), KEYS);
    assert_eq!(all.len(), held, "everything the stream holds");
}
