//! What ecst puts on the NATS wire, and what it refuses to: the key
//! encoding of subjects (a property test, and every awkward key through a
//! real `nats-server`), the bootstrap responder's refusal of hostile reply
//! subjects, and the publisher's sequence guard (an older state never lands
//! on top of a newer one, even with two publishers racing).
//!
//! Broker tests start a real `nats-server` (see `support/nats_server.rs`).
//! Waits are bounded loops on a condition; no duration is an assertion.

#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, Context};
use async_nats::Client;
use bytes::Bytes;
use ecst::nats::{
    decode_key, encode_key, request_bootstrap, serve_bootstrap, BootstrapRequest, FollowSettings,
    Follower, Mode, NatsError, Published, Publisher, ServerVersion, StateStream, SubjectError,
    Subjects, MAX_SUBJECT_BYTES,
};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Entry, Envelope, Sequence, StateEvent};
use futures_util::StreamExt;
use nats_server::NatsServer;
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub balance: i64,
}

const STREAM: &str = "ACCOUNTS";
const PREFIX: &str = "bank";
/// The bound of every wait (a hang guard, not an assertion).
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The key encoding, without a broker
// ---------------------------------------------------------------------------

/// A subject suffix a NATS publisher may use and that means what it says:
/// non-empty tokens of printable ASCII, no wildcard.
fn is_plain_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| !token.is_empty())
        && subject
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Every key encodes to plain subject tokens and decodes back.
    #[test]
    fn every_key_round_trips(key in any::<String>()) {
        let encoded = encode_key(&key);
        prop_assert!(is_plain_subject(&encoded), "{:?} -> {:?}", key, encoded);
        prop_assert_eq!(decode_key(&encoded).unwrap(), key.as_str());
    }

    /// Keys with many dots (the one character that is sometimes literal).
    #[test]
    fn dotted_keys_round_trip(key in "[a.%é ]{0,12}") {
        let encoded = encode_key(&key);
        prop_assert!(is_plain_subject(&encoded), "{:?} -> {:?}", key, encoded);
        prop_assert_eq!(decode_key(&encoded).unwrap(), key.as_str());
    }

    /// Whatever decodes is canonical: re-encoding gives the very same
    /// subject, so no two subjects address one key.
    #[test]
    fn whatever_decodes_is_canonical(
        encoded in "([a-zA-Z0-9.~]|%[0-9A-Fa-f]{2}|%2[eE]|%C3%A9|%){0,10}",
    ) {
        if let Ok(key) = decode_key(&encoded) {
            prop_assert_eq!(encode_key(&key), encoded);
        }
    }

    /// The same through `Subjects`: a subject is addressed only if it is
    /// the very subject `Subjects::event` writes for its entity and key.
    #[test]
    fn subjects_address_only_their_own_encoding(
        tail in "([a-z0-9.]|%[0-9A-F]{2}|%){0,10}",
        key in any::<String>(),
    ) {
        let subjects = Subjects::new("acme.crm").unwrap();
        let subject = format!("acme.crm.customer.{tail}");
        if let Ok(address) = subjects.address(&subject) {
            prop_assert_eq!(address.entity, "customer");
            prop_assert_eq!(subjects.event("customer", &address.key).unwrap(), subject.as_str());
        }
        let subject = subjects.event("customer", &key).unwrap();
        let address = subjects.address(&subject).unwrap();
        prop_assert_eq!(address.entity, "customer");
        prop_assert_eq!(address.key, key.as_str());
    }
}

#[test]
fn subjects_that_are_not_events_are_told_apart() {
    let subjects = Subjects::new(PREFIX).unwrap();
    assert_eq!(
        subjects.address("bank.account"),
        Err(SubjectError::NoKey),
        "a subject with no key"
    );
    assert!(matches!(
        subjects.address("other.account.c-1"),
        Err(SubjectError::OutsidePrefix { .. })
    ));
    assert!(matches!(
        subjects.address("bank.account.a%2"),
        Err(SubjectError::BadEscape { .. })
    ));
    assert!(matches!(
        subjects.address("bank.account.%41"),
        Err(SubjectError::NotCanonical { .. })
    ));
    assert!(matches!(
        subjects.address("bank.account.%c3%a9"),
        Err(SubjectError::BadEscape { .. })
    ));
    assert!(matches!(
        subjects.event("account.v2", "c-1"),
        Err(NatsError::InvalidSubject { .. })
    ));
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn setup() -> (NatsServer, Client, Context, Subjects) {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url())
        .await
        .expect("connecting to nats-server");
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(PREFIX).unwrap();
    let version = ServerVersion::of(&client).unwrap();
    StateStream::new(STREAM, subjects.clone())
        .ensure(&js, version)
        .await
        .expect("creating the state stream");
    (server, client, js, subjects)
}

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

fn account(key: &str, sequence: u64) -> Envelope<Account> {
    let state = Account {
        id: key.to_owned(),
        balance: i64::try_from(sequence).unwrap(),
    };
    Envelope::upsert(
        "urn:example:bank",
        format!("account:{key}:{sequence}"),
        Sequence::new(sequence),
        state,
    )
}

/// The stream sequence and the `balance` (= the ecst sequence, see
/// [`account`]) of the last message on `subject`, `None` if there is none.
async fn stored(js: &Context, subject: &str) -> Option<(u64, i64)> {
    let stream = js.get_stream(STREAM).await.unwrap();
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => {
            let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            let data = if message.headers.get("ce-specversion").is_some() {
                // Binary mode: the body is `data`.
                body
            } else {
                body["data"].clone()
            };
            Some((message.sequence, data["balance"].as_i64().unwrap()))
        }
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => None,
        Err(error) => panic!("reading {subject}: {error}"),
    }
}

async fn messages(js: &Context) -> u64 {
    js.get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

// ---------------------------------------------------------------------------
// Keys through the broker
// ---------------------------------------------------------------------------

/// Keys with whitespace, wildcards, empty tokens, `%`, non-ASCII letters
/// and a long one are published on subjects that mean what they say, reach
/// a follower with their keys intact, and their subjects address them; a
/// key too long for a subject is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_keys_are_published_and_followed() {
    let (_server, client, js, subjects) = setup().await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let keys: Vec<String> = [
        "c-1",
        "a.b",
        "a b",
        "*",
        ">",
        "a.*.>",
        "..",
        ".leading",
        "trailing.",
        "a..b",
        "100%",
        "%41",
        "Zoë/ünïcødé",
        "😀",
        "ada@example.com",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        "k".repeat(1000),
        // 3,000 bytes encoded.
        " ".repeat(1000),
    ])
    .collect();
    for (i, key) in keys.iter().enumerate() {
        let envelope = account(key, 1 + i as u64);
        let subject = subjects.event("account", key).unwrap();
        publisher
            .publish(&envelope)
            .await
            .unwrap_or_else(|e| panic!("publishing {key:?}: {e}"));
        // One message per key: no two keys share a subject, and the
        // subject is not a wildcard.
        assert_eq!(
            stored(&js, &subject).await.map(|(_, balance)| balance),
            Some(1 + i as i64)
        );
        assert_eq!(subjects.address(&subject).unwrap().key, key.as_str());
    }
    assert_eq!(messages(&js).await, keys.len() as u64);
    // Safe keys are their own subject tokens.
    assert_eq!(
        subjects.event("account", "a.b").unwrap(),
        "bank.account.a.b"
    );

    // Too long: a typed error, before publishing.
    let long = account(&" ".repeat(MAX_SUBJECT_BYTES), 1);
    match publisher.publish(&long).await {
        Err(NatsError::SubjectTooLong {
            entity,
            length,
            limit,
        }) => {
            assert_eq!(entity, "account");
            assert!(length > limit);
            assert_eq!(limit, MAX_SUBJECT_BYTES);
        }
        other => panic!("expected SubjectTooLong, got {other:?}"),
    }
    assert_eq!(messages(&js).await, keys.len() as u64);

    // The stream's subjects, as a follower gets them, decode to the keys.
    let durable = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    let mut settings = FollowSettings::new(STREAM, "reader", subjects.clone());
    settings.fetch_wait = Duration::from_millis(250);
    let mut follower = Follower::start(client.clone(), settings, durable)
        .await
        .unwrap();
    bounded("catching up", follower.catch_up()).await.unwrap();
    let replica = follower.replica().replica();
    for (i, key) in keys.iter().enumerate() {
        match replica.entry(key.as_str()) {
            Some(Entry::Live { sequence, .. }) => assert_eq!(sequence.get(), 1 + i as u64),
            other => panic!("{key:?}: {other:?}"),
        }
    }
    let mut consumer = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subjects.entity("account"),
            ..Default::default()
        })
        .await
        .unwrap()
        .messages()
        .await
        .unwrap();
    let mut decoded = BTreeSet::new();
    while decoded.len() < keys.len() {
        let message = bounded("reading the stream", consumer.next())
            .await
            .unwrap()
            .unwrap();
        let address = subjects.address(&message.subject).unwrap();
        assert_eq!(address.entity, "account");
        decoded.insert(address.key.into_owned());
    }
    assert_eq!(decoded, keys.iter().cloned().collect::<BTreeSet<_>>());
}

// ---------------------------------------------------------------------------
// Bootstrap replies
// ---------------------------------------------------------------------------

/// A client allowed only to send bootstrap requests cannot make the owner
/// write into the state stream (a reply subject under the prefix) or call
/// the JetStream API (the empty end marker on `$JS.API.STREAM.DELETE.<stream>`
/// would delete the stream): such requests go unanswered, and honest ones
/// are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_answers_only_on_inboxes() {
    let (server, client, js, subjects) = setup().await;
    let owner = async_nats::connect(server.url()).await.unwrap();
    let served = vec![account("c-1", 7)];
    let responder = {
        let subjects = subjects.clone();
        tokio::spawn(async move {
            serve_bootstrap::<Account, _>(owner, &subjects, move |_| served.clone())
                .await
                .expect("serving bootstrap requests");
        })
    };
    let ask = || async {
        request_bootstrap::<Account>(
            &client,
            &subjects,
            &BootstrapRequest::all(),
            Duration::from_secs(2),
        )
        .await
    };
    // The responder subscribes inside its task: ask until it answers.
    let answer = bounded("waiting for the responder", async {
        loop {
            if let Ok(answer) = ask().await {
                break answer;
            }
        }
    })
    .await;
    assert_eq!(answer.len(), 1);

    let hostile = subjects.event("account", "c-1").unwrap();
    let delete_stream = format!("$JS.API.STREAM.DELETE.{STREAM}");
    for reply in [hostile.as_str(), PREFIX, delete_stream.as_str()] {
        client
            .publish_with_reply(
                subjects.bootstrap("account"),
                reply.to_owned(),
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
    }
    // The responder handles requests one at a time, in order: once this
    // honest request is answered, the hostile ones above were handled.
    assert_eq!(ask().await.unwrap().len(), 1);
    // Anything the owner published on a subject of the stream was
    // enqueued for it before that answer; a message published now is
    // stored after it.
    let marker = js
        .publish(subjects.event("account", "marker").unwrap(), Bytes::new())
        .await
        .unwrap()
        .await
        .expect("the stream still exists");
    assert_eq!(
        stored(&js, &hostile).await,
        None,
        "the hostile reply was answered"
    );
    assert_eq!(messages(&js).await, 1, "only the marker is stored");
    assert_eq!(marker.sequence, 1);
    responder.abort();
}

/// A hand-written responder on the bootstrap subject (not in the owner's
/// queue group, so it gets every request too) that answers each request
/// with `events` and an end marker counting them: a foreign responder.
async fn hostile_responder(
    server: &NatsServer,
    subjects: &Subjects,
    events: Vec<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    let hostile = async_nats::connect(server.url()).await.unwrap();
    let mut requests = hostile
        .subscribe(subjects.bootstrap("account"))
        .await
        .unwrap();
    // `flush` does not wait for the server: an echo on this connection
    // does, and the server handles a connection's messages in order, so
    // the subscription is in place once the echo is back. (Without it the
    // first request could find no responder: a CI failure seen once.)
    let inbox = hostile.new_inbox();
    let mut echo = hostile.subscribe(inbox.clone()).await.unwrap();
    hostile.publish(inbox, Bytes::new()).await.unwrap();
    bounded("an echo through the server", echo.next())
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply else { continue };
            for event in &events {
                let _ = hostile.publish(reply.clone(), event.clone().into()).await;
            }
            let mut end = async_nats::HeaderMap::new();
            end.insert("Ecst-Bootstrap-End", events.len().to_string().as_str());
            let _ = hostile.publish_with_headers(reply, end, Bytes::new()).await;
            let _ = hostile.flush().await;
        }
    })
}

async fn bootstrap_reader(client: &Client, subjects: &Subjects, durable: &str) -> Reader {
    let replica = DurableReplica::<Account, _>::open(MemoryStore::new())
        .await
        .unwrap();
    Follower::start(
        client.clone(),
        FollowSettings::new(STREAM, durable, subjects.clone()),
        replica,
    )
    .await
    .unwrap()
}

type Reader = Follower<Account, MemoryStore>;

/// The keys a reader's replica holds, with their sequences.
fn held(reader: &Reader) -> Vec<(String, u64)> {
    let mut keys: Vec<(String, u64)> = reader
        .replica()
        .replica()
        .entries()
        .map(|(key, entry)| (key.clone(), entry.sequence().get()))
        .collect();
    keys.sort();
    keys
}

/// A bootstrap answer applies only if every event in it is of the entity
/// and (when the request named keys) a key that was asked for, as a stream
/// message applies only to the entity and key of its subject. A confused
/// owner that answers with keys not asked for, and a foreign responder on
/// the bootstrap subject that answers with another key or another entity,
/// are refused with `BootstrapMisaddressed` and nothing of their answer is
/// merged; a foreign responder racing the real owner never gets its event
/// into the replica (the requester gets the owner's answer, or an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_answers_apply_only_to_what_was_asked_for() {
    let (server, client, _js, subjects) = setup().await;
    let misaddressed = |error: NatsError, key: &str| match error {
        NatsError::BootstrapMisaddressed {
            entity, event_key, ..
        } => {
            assert_eq!(entity, "account");
            assert_eq!(event_key, key);
        }
        other => panic!("expected BootstrapMisaddressed for {key}, got {other:?}"),
    };

    // A confused owner: it answers with everything, whatever was asked.
    let owner = async_nats::connect(server.url()).await.unwrap();
    let served = vec![account("c-1", 7), account("c-2", 3)];
    let confused = {
        let subjects = subjects.clone();
        tokio::spawn(async move {
            serve_bootstrap::<Account, _>(owner, &subjects, move |_| served.clone())
                .await
                .expect("serving bootstrap requests");
        })
    };
    let mut reader = bootstrap_reader(&client, &subjects, "confused").await;
    let only_c1 = BootstrapRequest::keys(["c-1"]);
    let error = bounded("asking the confused owner", async {
        loop {
            match reader
                .bootstrap_from_owner(&only_c1, Duration::from_secs(2))
                .await
            {
                // Not subscribed yet.
                Err(NatsError::Bootstrap { .. }) => continue,
                other => break other,
            }
        }
    })
    .await
    .unwrap_err();
    misaddressed(error, "c-2");
    assert_eq!(held(&reader), vec![], "nothing of the answer was merged");
    // Asked for every key, the same answer is what was asked for.
    reader
        .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(held(&reader), vec![("c-1".into(), 7), ("c-2".into(), 3)]);
    confused.abort();
    let _ = confused.await;

    // A foreign responder alone: another key, then another entity.
    let mut reader = bootstrap_reader(&client, &subjects, "foreign").await;
    let foreign_key = account("c-9", 1_000_000).to_json().unwrap();
    let hostile = hostile_responder(&server, &subjects, vec![foreign_key]).await;
    let error = bounded(
        "asking the foreign responder",
        reader.bootstrap_from_owner(&only_c1, Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    misaddressed(error, "c-9");
    hostile.abort();
    let _ = hostile.await;
    let mut other_entity: serde_json::Value =
        serde_json::from_slice(&account("c-1", 1_000_000).to_json().unwrap()).unwrap();
    other_entity["type"] = "customer".into();
    other_entity["dataschema"] = "urn:ecst:schema:customer:v1".into();
    let hostile = hostile_responder(
        &server,
        &subjects,
        vec![serde_json::to_vec(&other_entity).unwrap()],
    )
    .await;
    let error = bounded(
        "asking the foreign responder",
        reader.bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    match error {
        NatsError::BootstrapMisaddressed { event_entity, .. } => {
            assert_eq!(event_entity, "customer")
        }
        other => panic!("expected BootstrapMisaddressed, got {other:?}"),
    }
    assert_eq!(held(&reader), vec![], "nothing of the answers was merged");

    // The foreign responder racing the real owner: whoever's answer comes
    // first, the foreign key never reaches the replica.
    let owner = async_nats::connect(server.url()).await.unwrap();
    let served = vec![account("c-1", 7)];
    let honest = {
        let subjects = subjects.clone();
        tokio::spawn(async move {
            serve_bootstrap::<Account, _>(owner, &subjects, move |_| served.clone())
                .await
                .expect("serving bootstrap requests");
        })
    };
    hostile.abort();
    let _ = hostile.await;
    let hostile = hostile_responder(
        &server,
        &subjects,
        vec![account("c-9", 1_000_000).to_json().unwrap()],
    )
    .await;
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..20 {
        let mut reader = bootstrap_reader(&client, &subjects, &format!("race-{round}")).await;
        let result = reader
            .bootstrap_from_owner(&only_c1, Duration::from_secs(2))
            .await;
        let what = match &result {
            Ok(_) => {
                assert_eq!(held(&reader), vec![("c-1".into(), 7)], "round {round}");
                "owner's answer".to_owned()
            }
            Err(error) => {
                assert_eq!(held(&reader), vec![], "round {round}: {error}");
                match error {
                    NatsError::BootstrapMisaddressed { .. } => "misaddressed".to_owned(),
                    NatsError::Bootstrap { .. } => "incomplete or mixed".to_owned(),
                    other => panic!("round {round}: {other:?}"),
                }
            }
        };
        *outcomes.entry(what).or_default() += 1;
        reader.stop().await;
    }
    println!("racing responders: {outcomes:?}");
    hostile.abort();
    honest.abort();
}

// ---------------------------------------------------------------------------
// The sequence guard
// ---------------------------------------------------------------------------

/// Sequence 5, then 3 for the same key: 3 is refused with a typed error and
/// the stream keeps 5, whether the publisher remembers 5 or has to read it
/// (a fresh publisher, binary mode). A retry of 5 is a duplicate; another
/// event at 5 is refused; 6 goes through. Unguarded, 3 would overwrite it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_state_never_replaces_a_newer_one() {
    let (_server, _client, js, subjects) = setup().await;
    let subject = subjects.event("account", "c-1").unwrap();
    let publisher = Publisher::new(js.clone(), subjects.clone());
    assert!(publisher.is_guarded());
    let five = publisher.publish(&account("c-1", 5)).await.unwrap();
    assert!(!five.duplicate);

    let refused = |result: Result<Published, NatsError>| match result {
        Err(NatsError::NotNewer {
            subject: s,
            stored,
            attempted,
        }) => {
            assert_eq!(s, subject);
            (stored, attempted)
        }
        other => panic!("expected NotNewer, got {other:?}"),
    };
    assert_eq!(refused(publisher.publish(&account("c-1", 3)).await), (5, 3));
    for mode in [Mode::Structured, Mode::Binary] {
        let fresh = Publisher::new(js.clone(), subjects.clone()).with_mode(mode);
        assert_eq!(refused(fresh.publish(&account("c-1", 3)).await), (5, 3));
        assert_eq!(
            refused(fresh.publish_all(&[account("c-1", 4)]).await.map(|v| v[0])),
            (5, 4)
        );
    }
    assert_eq!(stored(&js, &subject).await, Some((five.stream_sequence, 5)));

    // A retry of the stored event: a duplicate, from memory or read.
    let again = publisher.publish(&account("c-1", 5)).await.unwrap();
    assert_eq!(
        again,
        Published {
            stream_sequence: five.stream_sequence,
            duplicate: true
        }
    );
    let fresh = Publisher::new(js.clone(), subjects.clone());
    assert!(fresh.publish(&account("c-1", 5)).await.unwrap().duplicate);
    // Another event with the same sequence: refused.
    let mut other = account("c-1", 5);
    other.id = "another-event".into();
    assert_eq!(refused(publisher.publish(&other).await), (5, 5));
    assert_eq!(messages(&js).await, 1);

    // Newer: published, in binary mode too, and then read back by a
    // fresh structured publisher.
    let binary = publisher.clone().with_mode(Mode::Binary);
    let six = binary.publish(&account("c-1", 6)).await.unwrap();
    assert_eq!(stored(&js, &subject).await, Some((six.stream_sequence, 6)));
    let fresh = Publisher::new(js.clone(), subjects.clone());
    assert!(fresh.publish(&account("c-1", 6)).await.unwrap().duplicate);
    assert_eq!(refused(fresh.publish(&account("c-1", 5)).await), (6, 5));

    // A batch: in order per key goes through; an older event ends it.
    let batch = [
        account("c-1", 7),
        account("c-2", 1),
        account("c-1", 8),
        account("c-2", 2),
    ];
    let published = publisher.publish_all(&batch).await.unwrap();
    assert!(published.iter().all(|p| !p.duplicate));
    assert_eq!(stored(&js, &subject).await.unwrap().1, 8);
    assert_eq!(
        refused(
            publisher
                .publish_all(&[account("c-2", 3), account("c-1", 2)])
                .await
                .map(|v| v[0])
        ),
        (8, 2)
    );
    assert_eq!(stored(&js, &subject).await.unwrap().1, 8);

    // The opt-out does what it says.
    let unguarded = Publisher::new(js.clone(), subjects.clone()).unguarded();
    assert!(!unguarded.is_guarded());
    unguarded.publish(&account("c-1", 2)).await.unwrap();
    assert_eq!(stored(&js, &subject).await.unwrap().1, 2);
}

/// Two publishers (two owner instances, their own connections and caches)
/// publish the sequences of one key, each in its own shuffled order, at the
/// same time: whatever interleaving happens, the stream ends with the
/// highest sequence, and every refusal was of an older event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_leave_the_highest_sequence() {
    let (server, _client, js, subjects) = setup().await;
    const TOP: u64 = 60;
    let mut tasks = Vec::new();
    for instance in 0..2u64 {
        let client = async_nats::connect(server.url()).await.unwrap();
        let publisher = Publisher::new(jetstream::new(client), subjects.clone());
        // Instance 0 has the odd sequences, 1 the even ones, shuffled.
        let mut mine: Vec<u64> = (1..=TOP).filter(|s| s % 2 != instance).collect();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64 + instance;
        for i in (1..mine.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            mine.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for sequence in mine {
                let envelope = account("hot", sequence);
                loop {
                    match publisher.publish(&envelope).await {
                        Ok(_) => break,
                        Err(NatsError::NotNewer {
                            stored, attempted, ..
                        }) => {
                            assert!(stored >= attempted);
                            refused += 1;
                            break;
                        }
                        // The other instance kept winning: try again.
                        Err(NatsError::WrongLastSequence { .. }) => {}
                        Err(other) => panic!("publishing {sequence}: {other}"),
                    }
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for task in tasks {
        refused += bounded("publishing", task).await.unwrap();
    }
    let subject = subjects.event("account", "hot").unwrap();
    assert_eq!(stored(&js, &subject).await.unwrap().1, TOP as i64);
    assert!(refused > 0, "shuffled orders refuse some events");
}
