//! Least privilege on NATS: the permission sets of `docs/nats-permissions.md`
//! against a real `nats-server` with users (see `support/nats_server.rs`).
//!
//! - an owner with only its entity's subjects and the JetStream API calls
//!   ecst makes publishes, guarded (including the read of a subject's last
//!   message after a conflict), and serves bootstrap requests;
//! - a consumer with only its durable consumer's API calls follows the
//!   stream and catches up with the owner, and asks the owner for a
//!   bootstrap;
//! - the server refuses the consumer's publish into the state stream, and
//!   the owner's publish on another entity's subjects: nothing is stored.
//!
//! Every permitted flow ends by checking the server's log: a permission ecst
//! needs and the sets below lack shows up there as a `Permissions
//! Violation` (even where ecst tolerates the failure, such as the deletion
//! of a durable consumer), and the test fails with the server's text. A
//! change to ecst that calls a new JetStream API subject fails here first.
//! Waits are bounded loops on a condition; no sleep is an assertion.

#![cfg(feature = "nats")]

#[path = "support/nats_server.rs"]
mod nats_server;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, Context};
use async_nats::{Client, Event};
use bytes::Bytes;
use ecst::nats::{
    request_bootstrap, serve_bootstrap, BootstrapRequest, FollowSettings, Follower, NatsError,
    Publisher, ServerVersion, StateStream, Subjects,
};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Envelope, Producer, Replica, StateEvent};
use nats_server::NatsServer;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The entity the owner owns.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 1)]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    pub owner: String,
    pub balance: i64,
}

/// Another service's entity, under the same prefix and in the same stream.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "card", version = 1)]
pub struct Card {
    #[state_event(key)]
    pub number: String,
    pub account: String,
}

const PREFIX: &str = "bank";
const STREAM: &str = "ACCOUNTS";
const DURABLE: &str = "ledger";
/// The bound of every wait for a condition.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The permission sets (the same as in docs/nats-permissions.md)
// ---------------------------------------------------------------------------

/// The owner of `account` under `bank`, state stream `ACCOUNTS`: it creates
/// (or checks) the stream, publishes guarded, and serves bootstrap requests.
/// Connects with the inbox prefix `_INBOX.bank-owner`.
const OWNER_PERMISSIONS: &str = r#"{
    publish: {
      allow: [
        "bank.account.>",                   # its entity's events, nothing else under the prefix
        "$JS.API.STREAM.INFO.ACCOUNTS",     # StateStream::ensure
        "$JS.API.STREAM.CREATE.ACCOUNTS",   # StateStream::ensure, when the stream does not exist yet
        "$JS.API.STREAM.NAMES",             # guarded Publisher: which stream captures the subject
        "$JS.API.STREAM.MSG.GET.ACCOUNTS",  # guarded Publisher: the subject's last message
        "_INBOX.>",                         # serve_bootstrap: answers to the requesters' inboxes
      ]
    }
    subscribe: {
      allow: [
        "_INBOX.bank-owner.>",              # its own inbox: publish acks, API responses
        "_ecst.bootstrap.bank.account",     # serve_bootstrap (queue group ecst-bootstrap)
      ]
    }
  }"#;

/// The consumer `ledger`: follows `account` with the durable consumer
/// `ledger` and asks the owner for bootstraps. Connects with the inbox
/// prefix `_INBOX.ledger`.
const CONSUMER_PERMISSIONS: &str = r#"{
    publish: {
      allow: [
        "$JS.API.STREAM.INFO.ACCOUNTS",                          # Follower: the stream's state
        "$JS.API.CONSUMER.CREATE.ACCOUNTS.ledger.bank.account.>", # Follower: its durable, this filter only
        "$JS.API.CONSUMER.DELETE.ACCOUNTS.ledger",               # Follower: replace it from the checkpoint
        "$JS.API.CONSUMER.INFO.ACCOUNTS.ledger",                 # Follower: caught up?
        "$JS.API.CONSUMER.MSG.NEXT.ACCOUNTS.ledger",             # Follower: fetch a batch
        "$JS.ACK.ACCOUNTS.ledger.>",                             # Follower: acknowledge
        "_ecst.bootstrap.bank.account",                          # bootstrap_from_owner
        # The lease on the durable name (FollowSettings::lease_ttl, on by default):
        "$JS.API.STREAM.INFO.KV_ecst_leases",                    # open the lease bucket
        "$JS.API.STREAM.CREATE.KV_ecst_leases",                  # create it, if nobody did yet
        "$KV.ecst_leases.ACCOUNTS.ledger",                       # take, renew, release its own lease
        "$JS.API.DIRECT.GET.KV_ecst_leases.$KV.ecst_leases.ACCOUNTS.ledger", # who holds it
      ]
      deny: [ "bank.>" ]                                         # never into the state stream
    }
    subscribe: {
      allow: [ "_INBOX.ledger.>" ]                               # its own inbox: API responses, batches, bootstrap answers
    }
  }"#;

/// The server's users: the owner and the consumer with the sets above.
fn config(owner: &str, consumer: &str) -> String {
    format!(
        r#"authorization {{
  users = [
    {{ user: "bank-owner", password: "owner-secret", permissions: {owner} }}
    {{ user: "ledger", password: "ledger-secret", permissions: {consumer} }}
  ]
}}"#
    )
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The server errors (`-ERR`) one client received, as the client reported
/// them.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A client of `user` with its own inbox prefix `_INBOX.<user>`, recording
/// the server's errors.
async fn connect_as(server: &NatsServer, user: &str, password: &str) -> (Client, Errors) {
    let errors = Errors::default();
    let recorded = errors.clone();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .custom_inbox_prefix(format!("_INBOX.{user}"))
        .event_callback(move |event| {
            let recorded = recorded.clone();
            async move {
                if let Event::ServerError(error) = event {
                    recorded.0.lock().unwrap().push(error.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("connecting as {user}: {e}\n--- log ---\n{}", server.log()));
    (client, errors)
}

/// The server's `Permissions Violation` log lines so far.
fn violations(server: &NatsServer) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|line| line.contains("Violation"))
        .map(str::to_owned)
        .collect()
}

/// Fails with the server's words if it refused anything the clients did:
/// every `-ERR` was sent and logged before the server answered the flush's
/// PING.
async fn assert_no_violations(server: &NatsServer, clients: &[&Client]) {
    for client in clients {
        client.flush().await.expect("flushing");
    }
    let violations = violations(server);
    assert!(
        violations.is_empty(),
        "the server refused something ecst needs: a permission is missing from the sets in \
         docs/nats-permissions.md:\n{}",
        violations.join("\n")
    );
}

/// `Ok`'s value, or a panic with `what`, the error and the server's
/// violations (what permission was missing).
#[track_caller]
fn granted<T, E: std::fmt::Display>(server: &NatsServer, what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!(
            "{what} failed: {error}\nthe server's permission violations:\n{}",
            violations(server).join("\n")
        ),
    }
}

/// Runs `future` within [`PATIENCE`], or fails with the server's
/// violations (a missing permission that ecst retries or tolerates shows as
/// a wait that never ends).
async fn bounded<F: Future>(server: &NatsServer, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!(
            "{what} took longer than {PATIENCE:?}; the server's permission violations:\n{}",
            violations(server).join("\n")
        ),
    }
}

/// Waits until `errors` holds `expected` (the client hands the server's
/// `-ERR` over to its event callback on another task) and returns it.
async fn server_said(server: &NatsServer, errors: &Errors, expected: &str) -> String {
    bounded(
        server,
        &format!("waiting for the server's `{expected}`"),
        async {
            loop {
                if let Some(found) = errors.all().into_iter().find(|e| e.contains(expected)) {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await
}

/// A server with the users of [`config`].
fn server() -> NatsServer {
    NatsServer::start_with_config(&config(OWNER_PERMISSIONS, CONSUMER_PERMISSIONS))
}

/// The owner's side: its client, JetStream, and the state stream, created
/// with the owner's permissions.
async fn owner(server: &NatsServer) -> (Client, Errors, Context, Subjects) {
    let (client, errors) = connect_as(server, "bank-owner", "owner-secret").await;
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(PREFIX).unwrap();
    let version = ServerVersion::of(&client).unwrap();
    granted(
        server,
        "creating the state stream as the owner",
        StateStream::new(STREAM, subjects.clone())
            .ensure(&js, version)
            .await,
    );
    (client, errors, js, subjects)
}

/// JetStream with a short time-out: a publish the server refuses gets no
/// acknowledgement, and ends in the time-out.
fn short_context(client: &Client) -> Context {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));
    js
}

fn settings(subjects: &Subjects) -> FollowSettings {
    let mut settings = FollowSettings::new(STREAM, DURABLE, subjects.clone());
    settings.batch = 16;
    settings.fetch_wait = Duration::from_millis(250);
    settings
}

async fn follower(
    server: &NatsServer,
    client: &Client,
    durable: DurableReplica<Account, MemoryStore>,
) -> Follower<Account, MemoryStore> {
    let subjects = Subjects::new(PREFIX).unwrap();
    granted(
        server,
        "starting the follower as the consumer",
        Follower::start(client.clone(), settings(&subjects), durable).await,
    )
}

async fn empty_replica() -> DurableReplica<Account, MemoryStore> {
    match DurableReplica::open(MemoryStore::new()).await {
        Ok(durable) => durable,
        Err(error) => panic!("opening the store: {error}"),
    }
}

/// The owner's truth: per key, the last envelope published.
type Truth = BTreeMap<String, Envelope<Account>>;

fn account(producer: &mut Producer<Account>, key: &str, balance: i64) -> Envelope<Account> {
    producer
        .upsert(Account {
            id: key.to_owned(),
            owner: format!("Owner of {key}"),
            balance,
        })
        .unwrap()
}

/// Where `replica` differs from `truth` (state and sequence per key).
fn differences(replica: &Replica<Account>, truth: &Truth) -> Vec<String> {
    let mut out = Vec::new();
    for (key, envelope) in truth {
        let held = replica.get(key.as_str());
        let sequence = replica.entry(key.as_str()).map(|e| e.sequence().get());
        if held != envelope.state() || sequence != Some(envelope.sequence.get()) {
            out.push(format!(
                "{key}: holds {held:?} at {sequence:?}, the owner has {:?} at {}",
                envelope.state(),
                envelope.sequence
            ));
        }
    }
    if replica.len() != truth.len() {
        out.push(format!(
            "{} keys, the owner has {}",
            replica.len(),
            truth.len()
        ));
    }
    out
}

#[track_caller]
fn assert_same(replica: &Replica<Account>, truth: &Truth) {
    let differences = differences(replica, truth);
    assert!(
        differences.is_empty(),
        "the replica differs from the owner's truth:\n{}",
        differences.join("\n")
    );
}

/// How many messages the stream holds and whether `subject` has one, read
/// as the owner (`STREAM.INFO` and `STREAM.MSG.GET` are in its set).
async fn stored(server: &NatsServer, js: &Context, subject: &str) -> (u64, bool) {
    let mut stream = granted(server, "looking up the stream", js.get_stream(STREAM).await);
    let messages = granted(server, "reading the stream's info", stream.info().await)
        .state
        .messages;
    let held = match stream.get_last_raw_message_by_subject(subject).await {
        Ok(_) => true,
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => false,
        Err(error) => panic!(
            "reading the last message of {subject}: {error}\n{}",
            violations(server).join("\n")
        ),
    };
    (messages, held)
}

// ---------------------------------------------------------------------------
// (1) The owner publishes, the consumer follows and catches up
// ---------------------------------------------------------------------------

/// The owner creates the stream and publishes (one by one, in a batch, and
/// through a second publisher whose guard must read the subject's last
/// message); the consumer follows with its durable consumer, catches up,
/// follows live events, and restarts from its checkpoint (which deletes
/// and re-creates the durable). Neither is refused anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_publishes_and_consumer_follows_with_least_privilege() {
    let server = server();
    let (owner_client, _, js, subjects) = owner(&server).await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut producer = Producer::<Account>::new("urn:example:bank");
    let mut truth = Truth::new();

    for i in 0..20 {
        let envelope = account(&mut producer, &format!("acc-{i:02}"), i);
        granted(
            &server,
            "publishing as the owner",
            publisher.publish(&envelope).await,
        );
        truth.insert(envelope.key.clone(), envelope);
    }
    let batch: Vec<_> = (0..10)
        .map(|i| account(&mut producer, &format!("acc-{i:02}"), 100 + i))
        .collect();
    granted(
        &server,
        "publishing a batch as the owner",
        publisher.publish_all(&batch).await,
    );
    for envelope in batch {
        truth.insert(envelope.key.clone(), envelope);
    }
    // A second instance of the owner (a fresh guard cache) assumes the
    // subject empty, is refused with a wrong last sequence, and reads the
    // subject's last message: `STREAM.NAMES` and `STREAM.MSG.GET`.
    let second = Publisher::new(js.clone(), subjects.clone());
    let envelope = account(&mut producer, "acc-03", 333);
    let published = granted(
        &server,
        "publishing as a second owner instance (guard reads the last message)",
        second.publish(&envelope).await,
    );
    assert!(!published.duplicate);
    truth.insert(envelope.key.clone(), envelope);

    let (consumer_client, _) = connect_as(&server, "ledger", "ledger-secret").await;
    let mut following = follower(&server, &consumer_client, empty_replica().await).await;
    granted(
        &server,
        "catching up as the consumer",
        bounded(&server, "catching up", following.catch_up()).await,
    );
    assert_same(following.replica().replica(), &truth);

    // Live events.
    for i in 15..25 {
        let envelope = account(&mut producer, &format!("acc-{i:02}"), 1_000 + i);
        granted(
            &server,
            "publishing as the owner",
            publisher.publish(&envelope).await,
        );
        truth.insert(envelope.key.clone(), envelope);
    }
    granted(
        &server,
        "following live events",
        bounded(&server, "following live events", following.catch_up()).await,
    );
    assert_same(following.replica().replica(), &truth);

    // A restart from the checkpoint: the lease is released and taken again,
    // the durable deleted and created again after the checkpoint.
    let replica = following.stop().await;
    let mut following = follower(&server, &consumer_client, replica).await;
    let envelope = account(&mut producer, "acc-00", -1);
    granted(
        &server,
        "publishing as the owner",
        publisher.publish(&envelope).await,
    );
    truth.insert(envelope.key.clone(), envelope);
    granted(
        &server,
        "following after a restart",
        bounded(&server, "following after a restart", following.catch_up()).await,
    );
    assert_same(following.replica().replica(), &truth);

    assert_no_violations(&server, &[&owner_client, &consumer_client]).await;
}

// ---------------------------------------------------------------------------
// (2) A consumer cannot write into the state stream
// ---------------------------------------------------------------------------

/// The consumer publishes an event on `bank.account.x` through JetStream
/// and plain NATS, tries to purge and delete the stream, to read a message,
/// and to follow another entity: the server refuses each with a permissions
/// violation (or, for its own durable over another entity, a filter
/// mismatch), the JetStream publish gets no acknowledgement, and the
/// stream, read by the owner, holds nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_consumers_publish_into_the_state_stream() {
    let server = server();
    let (owner_client, _, owner_js, subjects) = owner(&server).await;
    let publisher = Publisher::new(owner_js.clone(), subjects.clone());
    let mut producer = Producer::<Account>::new("urn:example:bank");
    let real = account(&mut producer, "acc-1", 10);
    granted(
        &server,
        "publishing as the owner",
        publisher.publish(&real).await,
    );
    assert_no_violations(&server, &[&owner_client]).await;
    let (messages_before, _) = stored(&server, &owner_js, "bank.account.acc-1").await;
    assert_eq!(messages_before, 1);

    let (consumer_client, errors) = connect_as(&server, "ledger", "ledger-secret").await;
    // A forged event, well-formed, from the consumer.
    let forged = Producer::<Account>::new("urn:example:forger")
        .upsert(Account {
            id: "x".into(),
            owner: "Mallory".into(),
            balance: 1_000_000,
        })
        .unwrap();
    let body = Bytes::from(forged.to_json().unwrap());
    let consumer_js = short_context(&consumer_client);

    // Through JetStream: the server drops the message, and the
    // acknowledgement never comes.
    let outcome = async {
        consumer_js
            .publish("bank.account.x", body.clone())
            .await?
            .await
    }
    .await;
    let error = outcome.expect_err("the consumer's JetStream publish into the stream was stored");
    let said = server_said(
        &server,
        &errors,
        r#"Permissions Violation for Publish to "bank.account.x""#,
    )
    .await;
    eprintln!("the consumer's publish: {error}; the server said: {said}");

    // Through plain NATS, on the subject of an existing key.
    consumer_client
        .publish("bank.account.acc-1", body.clone())
        .await
        .unwrap();
    consumer_client.flush().await.unwrap();
    server_said(
        &server,
        &errors,
        r#"Permissions Violation for Publish to "bank.account.acc-1""#,
    )
    .await;

    // The JetStream API beyond its durable consumer: purge, delete, a
    // consumer on another entity's events.
    for (api, request) in [
        ("$JS.API.STREAM.PURGE.ACCOUNTS", Bytes::new()),
        ("$JS.API.STREAM.DELETE.ACCOUNTS", Bytes::new()),
        (
            "$JS.API.CONSUMER.CREATE.ACCOUNTS.ledger.bank.card.>",
            Bytes::new(),
        ),
        (
            "$JS.API.STREAM.MSG.GET.ACCOUNTS",
            Bytes::from_static(b"{\"seq\":1}"),
        ),
    ] {
        consumer_client.publish(api, request).await.unwrap();
        consumer_client.flush().await.unwrap();
        server_said(
            &server,
            &errors,
            &format!("Permissions Violation for Publish to \"{api}\""),
        )
        .await;
    }

    // Its own durable over another entity's events, with the permitted
    // subject: the server checks the filter in the subject against the
    // consumer's, so the consumer reads only `account` events.
    let request = serde_json::json!({
        "stream_name": STREAM,
        "config": {
            "durable_name": DURABLE,
            "filter_subject": "bank.card.>",
            "deliver_policy": "last_per_subject",
            "ack_policy": "explicit",
        },
    });
    let answer = granted(
        &server,
        "asking for a consumer on another entity",
        consumer_client
            .request(
                "$JS.API.CONSUMER.CREATE.ACCOUNTS.ledger.bank.account.>",
                Bytes::from(request.to_string()),
            )
            .await,
    );
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    assert!(
        answer.get("error").is_some(),
        "the server created a consumer over another entity's events: {answer}"
    );
    eprintln!("a consumer over another entity: {}", answer["error"]);

    // The stream, as the owner reads it: the one real event, no forgery.
    let (messages, forged_held) = stored(&server, &owner_js, "bank.account.x").await;
    assert!(!forged_held, "the consumer's forged event is in the stream");
    assert_eq!(messages, messages_before, "the stream changed");
    let mut stream = owner_js.get_stream(STREAM).await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject("bank.account.acc-1")
        .await
        .unwrap();
    assert_eq!(
        last.payload,
        Bytes::from(real.to_json().unwrap()),
        "acc-1 is not the owner's event"
    );
    assert_eq!(stream.info().await.unwrap().config.name, STREAM);

    // And the server logged each refusal, naming the user.
    let logged = violations(&server);
    assert!(
        logged
            .iter()
            .any(|l| l.contains("ledger") && l.contains("bank.account.x")),
        "{logged:#?}"
    );
}

// ---------------------------------------------------------------------------
// (3) An owner cannot write another entity's state
// ---------------------------------------------------------------------------

/// The owner of `account` publishes a `card` event with the ecst publisher
/// (guarded and unguarded): refused by the server, not stored; its own
/// entity still publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_an_owners_publish_on_another_entity() {
    let server = server();
    let (owner_client, errors, js, subjects) = owner(&server).await;
    let short = short_context(&owner_client);
    let card = Producer::<Card>::new("urn:example:bank")
        .upsert(Card {
            number: "c-1".into(),
            account: "acc-1".into(),
        })
        .unwrap();

    for publisher in [
        Publisher::new(short.clone(), subjects.clone()),
        Publisher::new(short.clone(), subjects.clone()).unguarded(),
    ] {
        let error = publisher
            .publish(&card)
            .await
            .expect_err("the owner of `account` published a `card` event");
        assert!(
            matches!(&error, NatsError::Publish { subject, .. } if subject == "bank.card.c-1"),
            "{error:?}"
        );
        let said = server_said(
            &server,
            &errors,
            r#"Permissions Violation for Publish to "bank.card.c-1""#,
        )
        .await;
        eprintln!("the owner's publish of a card: {error}; the server said: {said}");
    }
    let (messages, held) = stored(&server, &js, "bank.card.c-1").await;
    assert!(!held, "the card event is in the stream");
    assert_eq!(messages, 0);

    // Its own entity still goes through.
    let mut producer = Producer::<Account>::new("urn:example:bank");
    let envelope = account(&mut producer, "acc-1", 1);
    granted(
        &server,
        "publishing as the owner",
        Publisher::new(js.clone(), subjects.clone())
            .publish(&envelope)
            .await,
    );
    let (messages, held) = stored(&server, &js, "bank.account.acc-1").await;
    assert!(held);
    assert_eq!(messages, 1);
}

// ---------------------------------------------------------------------------
// (4) Bootstrap by request
// ---------------------------------------------------------------------------

/// The owner serves bootstrap requests and the consumer asks: all keys and
/// some; then the consumer follows the stream. A request whose reply
/// subject is inside the state stream is not answered, and nothing lands
/// in the stream. Neither side is refused anything it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_by_request_works_with_least_privilege() {
    let server = server();
    let (owner_client, _, js, subjects) = owner(&server).await;
    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut producer = Producer::<Account>::new("urn:example:bank");
    let mut truth = Truth::new();
    for i in 0..30 {
        let envelope = account(&mut producer, &format!("acc-{i:02}"), i);
        granted(
            &server,
            "publishing as the owner",
            publisher.publish(&envelope).await,
        );
        truth.insert(envelope.key.clone(), envelope);
    }
    let served = Arc::new(Mutex::new(truth.clone()));
    let responder = {
        let client = owner_client.clone();
        let subjects = subjects.clone();
        let served = served.clone();
        tokio::spawn(async move {
            serve_bootstrap::<Account, _>(client, &subjects, move |request| {
                let served = served.lock().unwrap();
                match &request.keys {
                    None => served.values().cloned().collect(),
                    Some(keys) => keys.iter().filter_map(|k| served.get(k).cloned()).collect(),
                }
            })
            .await
        })
    };

    let (consumer_client, _) = connect_as(&server, "ledger", "ledger-secret").await;
    // The responder subscribes inside its task: ask (for nothing) until it
    // answers.
    bounded(&server, "waiting for the responder", async {
        let nothing = BootstrapRequest::keys(Vec::<String>::new());
        while request_bootstrap::<Account>(
            &consumer_client,
            &subjects,
            &nothing,
            Duration::from_millis(500),
        )
        .await
        .is_err()
        {
            assert!(!responder.is_finished(), "the responder ended");
        }
    })
    .await;

    // A hostile request: its reply subject is a key of the stream. ecst's
    // owner does not answer it (and its permissions would not let it).
    consumer_client
        .publish_with_reply(
            subjects.bootstrap("account"),
            "bank.account.hijacked",
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();

    let mut following = follower(&server, &consumer_client, empty_replica().await).await;
    let outcome = granted(
        &server,
        "bootstrapping from the owner as the consumer",
        following
            .bootstrap_from_owner(&BootstrapRequest::all(), Duration::from_secs(10))
            .await,
    );
    assert_eq!(outcome.applied.len(), truth.len());
    assert_same(following.replica().replica(), &truth);

    let some = ["acc-01", "acc-02", "nobody"];
    let mut partial = empty_replica().await;
    let answer = granted(
        &server,
        "asking the owner for some keys",
        request_bootstrap::<Account>(
            &consumer_client,
            &subjects,
            &BootstrapRequest::keys(some),
            Duration::from_secs(10),
        )
        .await,
    );
    let payloads: Vec<&[u8]> = answer.iter().map(Vec::as_slice).collect();
    let merged = partial.merge_unsequenced(&payloads).await.unwrap();
    assert_eq!(merged.applied.len(), 2);

    // The hostile request came before the two answered ones, and the
    // responder handles requests in order: it was refused by now.
    let (messages, hijacked) = stored(&server, &js, "bank.account.hijacked").await;
    assert!(!hijacked, "the owner answered into the state stream");
    assert_eq!(messages, 30);

    // A live update after the bootstrap, then the consumer follows.
    let envelope = account(&mut producer, "acc-07", 777);
    granted(
        &server,
        "publishing as the owner",
        publisher.publish(&envelope).await,
    );
    truth.insert(envelope.key.clone(), envelope);
    granted(
        &server,
        "following after the bootstrap",
        bounded(
            &server,
            "following after the bootstrap",
            following.catch_up(),
        )
        .await,
    );
    assert_same(following.replica().replica(), &truth);

    assert_no_violations(&server, &[&owner_client, &consumer_client]).await;
    responder.abort();
}
