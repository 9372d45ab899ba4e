//! Cancellation of the publishing and bootstrap calls, against a real
//! `nats-server`: the process can die, or the future be dropped, at any
//! await. `Publisher::publish`, `publish_if_last` and `publish_all` are
//! dropped at seeded random points (a `tokio::time::timeout` of a few
//! microseconds, or a future polled a random number of times and dropped),
//! also two at a time on one key; `serve_bootstrap` is aborted in the middle
//! of its answers. Then the invariants a user relies on are checked: the
//! stream never stores an older state of a key after a newer one (so its last
//! message per key is the highest sequence published), a retry of an event
//! is answered as what it is (a duplicate of the stored event, or not newer
//! than it), and a requester gets a complete answer or an error, never a
//! partial answer taken for a complete one.
//!
//! The seed is `ECST_CANCEL_SEED` (default fixed); a failure prints it.
//! Waits are bounded loops on a condition; no duration is an assertion.

#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, LastRawMessageErrorKind};
use async_nats::jetstream::{self, Context};
use async_nats::Client;
use ecst::nats::{
    request_bootstrap, serve_bootstrap, BootstrapRequest, NatsError, Published, Publisher, Subjects,
};
use ecst::{Envelope, Sequence, StateEvent};
use nats_server::NatsServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub balance: i64,
    /// Padding, to make answers long enough to be cut in the middle.
    pub note: String,
}

const PREFIX: &str = "bank";
/// The bound of every wait (a hang guard, not an assertion).
const PATIENCE: Duration = Duration::from_secs(60);

fn seed() -> u64 {
    std::env::var("ECST_CANCEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0007)
}

/// splitmix64: a small seeded generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

/// A server with a stream that keeps *every* message of the entity's
/// subjects (no per-subject limit), so that the order in which states
/// were stored can be checked afterwards. The publisher does not care
/// which stream captures its subjects.
async fn setup_history() -> (NatsServer, Client, Context, Subjects) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(StreamConfig {
        name: "HISTORY".into(),
        subjects: vec![format!("{PREFIX}.>")],
        ..StreamConfig::default()
    })
    .await
    .unwrap();
    (server, client, js, Subjects::new(PREFIX).unwrap())
}

fn envelope(key: &str, sequence: u64, id: &str) -> Envelope<Account> {
    Envelope::upsert(
        "urn:example:bank",
        id.to_owned(),
        Sequence::new(sequence),
        Account {
            id: key.to_owned(),
            balance: i64::try_from(sequence).unwrap(),
            note: String::new(),
        },
    )
}

/// Runs `future` under a seeded cut: to completion, under a time-out of a
/// few microseconds, or polled a few times and dropped. `None`: dropped.
async fn cut<F: Future>(rng: &mut Rng, future: F) -> Option<F::Output> {
    match rng.below(3) {
        0 => Some(future.await),
        1 => tokio::time::timeout(Duration::from_micros(rng.below(3000)), future)
            .await
            .ok(),
        _ => {
            let polls = rng.below(30);
            let mut future = pin!(future);
            for _ in 0..=polls {
                let polled = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
                if let Poll::Ready(output) = polled {
                    return Some(output);
                }
                tokio::task::yield_now().await;
            }
            None
        }
    }
}

/// A stored message: its stream sequence, subject, ecst sequence and id.
#[derive(Clone, Debug)]
struct Stored {
    stream_sequence: u64,
    subject: String,
    sequence: u64,
    id: String,
}

/// Every message in the stream, in order.
async fn history(js: &Context) -> Vec<Stored> {
    let mut stream = js.get_stream("HISTORY").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for stream_sequence in 1..=last {
        let message = match stream.get_raw_message(stream_sequence).await {
            Ok(message) => message,
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
            Err(error) => panic!("reading stream message {stream_sequence}: {error}"),
        };
        let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        out.push(Stored {
            stream_sequence,
            subject: message.subject.to_string(),
            sequence: json["sequence"].as_str().unwrap().parse().unwrap(),
            id: json["id"].as_str().unwrap().to_owned(),
        });
    }
    out
}

/// The invariant of the sequence guard, on the whole history: per subject,
/// every stored state has a higher sequence than the one before it.
fn assert_increasing(history: &[Stored], seed: u64) -> BTreeMap<String, Stored> {
    let mut last: BTreeMap<String, Stored> = BTreeMap::new();
    for stored in history {
        if let Some(before) = last.get(&stored.subject) {
            assert!(
                stored.sequence > before.sequence,
                "seed {seed}: {} stored sequence {} (id {}, stream {}) after sequence {} (id {}, \
                 stream {}): an older state on top of a newer one",
                stored.subject,
                stored.sequence,
                stored.id,
                stored.stream_sequence,
                before.sequence,
                before.id,
                before.stream_sequence
            );
        }
        last.insert(stored.subject.clone(), stored.clone());
    }
    last
}

/// `publish`, `publish_if_last` and `publish_all` dropped at random points,
/// one at a time and two at once on one key through two clones of the
/// publisher (one guard cache), with new events, retries of earlier ones
/// and older ones. Afterwards: the stream stored every key's states in
/// increasing sequence; every call that completed answered truthfully; and
/// a retry of every event ever attempted, run to its end, is a duplicate
/// of the stored event if it is the key's last message, refused as not
/// newer if the key holds a sequence at least as high, and stored
/// otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_dropped_at_any_point_keep_the_newest_state_on_top() {
    let seed = seed();
    let mut rng = Rng(seed);
    let (_server, _client, js, subjects) = setup_history().await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let twin = publisher.clone();
    let keys = ["k-0", "k-1", "k-2"];
    // Every envelope attempted, per key; the highest sequence made so far.
    let mut attempted: HashMap<&str, Vec<Envelope<Account>>> = HashMap::new();
    let mut top: HashMap<&str, u64> = HashMap::new();
    let mut made = 0u64;
    let mut next_envelope = |rng: &mut Rng, key: &'static str| {
        made += 1;
        let tried = attempted.entry(key).or_default();
        let high = top.entry(key).or_default();
        let roll = rng.below(100);
        let chosen = if roll < 25 && !tried.is_empty() {
            // A retry of an earlier event, as it was.
            tried[rng.below(tried.len() as u64) as usize].clone()
        } else if roll < 40 && *high > 1 {
            // An older state, under a new id.
            let sequence = 1 + rng.below(*high - 1);
            envelope(key, sequence, &format!("{key}:{sequence}:old-{made}"))
        } else {
            *high += 1;
            envelope(key, *high, &format!("{key}:{}", *high))
        };
        tried.push(chosen.clone());
        chosen
    };
    let mut completed: Vec<(Envelope<Account>, Result<Published, NatsError>)> = Vec::new();
    let mut dropped = 0u32;
    for _round in 0..240 {
        let key = keys[rng.below(keys.len() as u64) as usize];
        match rng.below(10) {
            // Two at once on one key, from the two clones.
            0..=2 => {
                let a = next_envelope(&mut rng, key);
                let b = next_envelope(&mut rng, key);
                let (mut rng_a, mut rng_b) = (Rng(rng.next()), Rng(rng.next()));
                let (ra, rb) = tokio::join!(
                    cut(&mut rng_a, publisher.publish(&a)),
                    cut(&mut rng_b, twin.publish(&b)),
                );
                for (envelope, result) in [(a, ra), (b, rb)] {
                    match result {
                        Some(result) => completed.push((envelope, result)),
                        None => dropped += 1,
                    }
                }
            }
            3 => {
                let one = next_envelope(&mut rng, key);
                // The expected last stream sequence: the true one, or 0.
                let last = if rng.below(2) == 0 {
                    last_stream_sequence(&js, &subjects, key).await
                } else {
                    0
                };
                match cut(&mut rng, publisher.publish_if_last(&one, last)).await {
                    Some(Ok(published)) => completed.push((one, Ok(published))),
                    // Another message is last: the caller's expectation.
                    Some(Err(NatsError::WrongLastSequence { .. })) => {}
                    Some(Err(error)) => completed.push((one, Err(error))),
                    None => dropped += 1,
                }
            }
            4..=5 => {
                let batch: Vec<Envelope<Account>> = (0..1 + rng.below(6))
                    .map(|_| {
                        let key = keys[rng.below(keys.len() as u64) as usize];
                        next_envelope(&mut rng, key)
                    })
                    .collect();
                match cut(&mut rng, publisher.publish_all(&batch)).await {
                    Some(Ok(published)) => {
                        assert_eq!(published.len(), batch.len(), "seed {seed}");
                        for (envelope, published) in batch.into_iter().zip(published) {
                            completed.push((envelope, Ok(published)));
                        }
                    }
                    // The first refusal ends the call; the envelopes before
                    // it may be stored. Checked by the history below.
                    Some(Err(_)) => {}
                    None => dropped += 1,
                }
            }
            _ => {
                let one = next_envelope(&mut rng, key);
                match cut(&mut rng, publisher.publish(&one)).await {
                    Some(result) => completed.push((one, result)),
                    None => dropped += 1,
                }
            }
        }
    }

    // 1. Never an older state on top of a newer one.
    let stored = history(&js).await;
    let last = assert_increasing(&stored, seed);
    // 2. Every completed call told the truth.
    let by_stream_sequence: HashMap<u64, &Stored> =
        stored.iter().map(|s| (s.stream_sequence, s)).collect();
    for (envelope, result) in &completed {
        match result {
            Ok(published) => {
                let message = by_stream_sequence
                    .get(&published.stream_sequence)
                    .unwrap_or_else(|| {
                        panic!(
                            "seed {seed}: {} acknowledged at a stream sequence that holds nothing",
                            envelope.id
                        )
                    });
                assert_eq!(
                    message.id, envelope.id,
                    "seed {seed}: acknowledged as stored at {}, which holds another event",
                    published.stream_sequence
                );
            }
            Err(NatsError::NotNewer {
                stored, attempted, ..
            }) => {
                assert_eq!(*attempted, envelope.sequence.get());
                assert!(*stored >= *attempted, "seed {seed}");
            }
            Err(error) => panic!("seed {seed}: {} failed: {error}", envelope.id),
        }
    }
    // 3. Every event attempted, retried to its end (in a seeded order),
    // by a publisher that remembers what the cancelled calls left behind.
    let mut retries: Vec<Envelope<Account>> = attempted.values().flatten().cloned().collect();
    for i in (1..retries.len()).rev() {
        retries.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let (mut duplicates, mut refused, mut stored_now) = (0, 0, 0);
    for envelope in &retries {
        let subject = subjects
            .event("account", &envelope.state().unwrap().id)
            .unwrap();
        let before = last_event(&js, &subject).await;
        // A third through a fresh publisher: it knows nothing, so the
        // server's duplicate window answers first for an event it stored.
        let result = if rng.below(3) == 0 {
            let fresh = Publisher::new(js.clone(), subjects.clone());
            bounded("a retry", fresh.publish(envelope)).await
        } else {
            bounded("a retry", publisher.publish(envelope)).await
        };
        match (&before, result) {
            (Some(top), Ok(published)) if top.id == envelope.id => {
                assert!(
                    published.duplicate,
                    "seed {seed}: {} is stored",
                    envelope.id
                );
                assert_eq!(
                    published.stream_sequence, top.stream_sequence,
                    "seed {seed}"
                );
                duplicates += 1;
            }
            (Some(top), Err(NatsError::NotNewer { stored, .. })) if top.id != envelope.id => {
                // What the refusing publisher knew to be stored: at least
                // the attempt, at most what is on top (another publisher
                // may have stored a newer one since).
                assert!(top.sequence >= envelope.sequence.get(), "seed {seed}");
                assert!(
                    (envelope.sequence.get()..=top.sequence).contains(&stored),
                    "seed {seed}: {stored}"
                );
                refused += 1;
            }
            (top, Ok(published))
                if top
                    .as_ref()
                    .is_none_or(|t| t.sequence < envelope.sequence.get()) =>
            {
                assert!(!published.duplicate, "seed {seed}: {}", envelope.id);
                stored_now += 1;
            }
            (top, result) => panic!(
                "seed {seed}: retry of {} (sequence {}) with {top:?} on top: {result:?}",
                envelope.id,
                envelope.sequence.get()
            ),
        }
    }
    let stored = history(&js).await;
    let last_after = assert_increasing(&stored, seed);
    for (subject, top) in &last_after {
        let highest = attempted
            .values()
            .flatten()
            .filter(|e| subjects.event("account", &e.state().unwrap().id).unwrap() == *subject)
            .map(|e| e.sequence.get())
            .max()
            .unwrap();
        assert_eq!(
            top.sequence, highest,
            "seed {seed}: {subject} ends below its newest event"
        );
    }
    println!(
        "seed {seed}: {} calls completed, {dropped} dropped, {} messages stored before the \
         retries (last per key: {:?}); retries: {duplicates} duplicates, {refused} not newer \
         (whether or not the server's duplicate window still knew the id), {stored_now} stored",
        completed.len(),
        by_stream_sequence.len(),
        last.values()
            .map(|s| (s.subject.as_str(), s.sequence))
            .collect::<Vec<_>>()
    );
}

async fn last_event(js: &Context, subject: &str) -> Option<Stored> {
    let stream = js.get_stream("HISTORY").await.unwrap();
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => {
            let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            Some(Stored {
                stream_sequence: message.sequence,
                subject: subject.to_owned(),
                sequence: json["sequence"].as_str().unwrap().parse().unwrap(),
                id: json["id"].as_str().unwrap().to_owned(),
            })
        }
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => None,
        Err(error) => panic!("reading {subject}: {error}"),
    }
}

async fn last_stream_sequence(js: &Context, subjects: &Subjects, key: &str) -> u64 {
    let subject = subjects.event("account", key).unwrap();
    last_event(js, &subject)
        .await
        .map_or(0, |stored| stored.stream_sequence)
}

// ---------------------------------------------------------------------------
// serve_bootstrap
// ---------------------------------------------------------------------------

/// The owner's state for the bootstrap tests: `count` accounts with a note
/// of `note_bytes` bytes each.
fn owner_state(count: usize, note_bytes: usize) -> Vec<Envelope<Account>> {
    (0..count)
        .map(|i| {
            let key = format!("acc-{i:05}");
            let mut envelope = envelope(&key, 1 + i as u64, &format!("{key}:1"));
            if let ecst::Change::Upsert(state) = &mut envelope.change {
                state.note = "n".repeat(note_bytes);
            }
            envelope
        })
        .collect()
}

/// The owner's responder aborted at seeded random points while it answers:
/// each request ends with the complete answer or an error, never a part of
/// the answer taken for the whole (counted by what arrived and by decoding
/// every event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_dropped_mid_answer_never_yields_a_partial_answer() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0xb007);
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let subjects = Subjects::new(PREFIX).unwrap();
    const COUNT: usize = 600;
    let state = Arc::new(owner_state(COUNT, 100));
    let (mut complete, mut failed) = (0u32, 0u32);
    for round in 0..16 {
        let owner = async_nats::connect(server.url()).await.unwrap();
        let asked = Arc::new(tokio::sync::Notify::new());
        let responder = {
            let (subjects, state, asked) =
                (subjects.clone(), Arc::clone(&state), Arc::clone(&asked));
            tokio::spawn(async move {
                let _ = serve_bootstrap::<Account, _>(owner, &subjects, move |request| {
                    if request.keys.is_some() {
                        return Vec::new(); // the probe below
                    }
                    asked.notify_one();
                    state.as_ref().clone()
                })
                .await;
            })
        };
        // Wait until the responder's subscription is in place: a request
        // for no key is answered at once (and does not count).
        bounded("waiting for the responder", async {
            let nothing = BootstrapRequest::keys(Vec::<String>::new());
            while request_bootstrap::<Account>(&client, &subjects, &nothing, Duration::from_secs(1))
                .await
                .is_err()
            {}
        })
        .await;
        let request = {
            let (client, subjects) = (client.clone(), subjects.clone());
            tokio::spawn(async move {
                request_bootstrap::<Account>(
                    &client,
                    &subjects,
                    &BootstrapRequest::all(),
                    Duration::from_secs(2),
                )
                .await
            })
        };
        // Abort the responder at a seeded point after it was asked: at
        // once, some scheduler turns or some time later (before, during or
        // after its answer).
        asked.notified().await;
        match rng.below(4) {
            0 => {}
            1 => {
                for _ in 0..rng.below(200) {
                    tokio::task::yield_now().await;
                }
            }
            _ => tokio::time::sleep(Duration::from_micros(rng.below(300_000))).await,
        }
        responder.abort();
        let _ = responder.await;
        match bounded("the request", request).await.unwrap() {
            Ok(events) => {
                assert_eq!(
                    events.len(),
                    COUNT,
                    "seed {seed} round {round}: a partial answer"
                );
                for event in &events {
                    Envelope::<Account>::from_json(event).unwrap_or_else(|e| {
                        panic!("seed {seed} round {round}: a cut event was returned: {e}")
                    });
                }
                complete += 1;
            }
            Err(NatsError::Bootstrap { reason, .. }) => {
                assert!(
                    reason.contains("no complete answer")
                        || reason.contains("no responders")
                        || reason.contains("arrived"),
                    "seed {seed} round {round}: {reason}"
                );
                failed += 1;
            }
            Err(other) => panic!("seed {seed} round {round}: {other:?}"),
        }
    }
    println!("seed {seed}: {complete} complete answers, {failed} requests failed");
}

/// An answer the owner cannot finish (a state over the server's payload
/// limit) is ended as aborted: the requester fails at once with the
/// reason, nothing is merged, and the responder goes on answering the next
/// requests (it used to end, so that every later request timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_owner_cannot_finish_is_aborted_and_serving_goes_on() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let subjects = Subjects::new(PREFIX).unwrap();
    let owner = async_nats::connect(server.url()).await.unwrap();
    let limit = owner.server_info().max_payload;
    let served: Arc<Mutex<Vec<Envelope<Account>>>> = Arc::new(Mutex::new(Vec::new()));
    let responder = {
        let (subjects, served) = (subjects.clone(), Arc::clone(&served));
        tokio::spawn(async move {
            serve_bootstrap::<Account, _>(owner, &subjects, move |_| served.lock().unwrap().clone())
                .await
        })
    };
    let all = BootstrapRequest::all();
    let ask = || request_bootstrap::<Account>(&client, &subjects, &all, Duration::from_secs(10));
    bounded("waiting for the responder", async {
        while ask().await.is_err() {}
    })
    .await;
    let mut too_big = owner_state(3, 16);
    if let ecst::Change::Upsert(state) = &mut too_big[1].change {
        state.note = "x".repeat(limit + 1);
    }
    *served.lock().unwrap() = too_big;
    match bounded("an aborted answer", ask()).await {
        Err(NatsError::Bootstrap { reason, .. }) => {
            assert!(
                reason.contains("aborted its answer after 1 events"),
                "{reason}"
            );
            assert!(reason.to_lowercase().contains("payload"), "{reason}");
        }
        other => panic!("expected an aborted answer, got {other:?}"),
    }
    *served.lock().unwrap() = owner_state(3, 16);
    let events = bounded("the next answer", ask()).await.unwrap();
    assert_eq!(events.len(), 3, "the responder still serves");
    assert!(!responder.is_finished());
    responder.abort();
}
