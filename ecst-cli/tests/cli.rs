//! The `ecst` binary end to end: a real nats-server on a free port (see
//! `support/mod.rs`), real ecst events published with the runtime's
//! `Publisher`, real replica stores written by the runtime's `Follower` and
//! `DurableReplica`, and assertions on what the binary prints and how it
//! exits.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use ecst::consume::Resolution;
use ecst::nats::{
    FollowSettings, Follower, Mode, Publisher, RouterFollower, ServerVersion, StateStream, Subjects,
};
use ecst::store::postgres::PostgresStore;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, DurableRouter, Message};
use ecst::{Envelope, Sequence, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::{ecst, ecst_command, free_port, fresh_dir, NatsServer, Run};

/// The entity of every test.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
struct Customer {
    #[state_event(key)]
    id: String,
    name: String,
    email: Option<String>,
}

/// A second entity in the same stream, for a router.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
struct Order {
    #[state_event(key)]
    id: String,
    total: u64,
}

const PREFIX: &str = "shop";
const STREAM: &str = "SHOP";

/// A server with the state stream of `shop`, and an owner publishing into
/// it.
struct Shop {
    server: NatsServer,
    client: async_nats::Client,
    js: Context,
    publisher: Publisher,
}

impl Shop {
    async fn open() -> Self {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.expect("connecting");
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new(PREFIX).expect("the prefix");
        let version = ServerVersion::of(&client).expect("the server version");
        StateStream::new(STREAM, subjects.clone())
            .ensure(&js, version)
            .await
            .expect("the state stream");
        let publisher = Publisher::new(js.clone(), subjects);
        Shop {
            server,
            client,
            js,
            publisher,
        }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// Publishes an upsert; returns its stream sequence.
    async fn upsert(&self, id: &str, sequence: u64, name: &str, email: Option<&str>) -> u64 {
        let state = Customer {
            id: id.to_owned(),
            name: name.to_owned(),
            email: email.map(str::to_owned),
        };
        let event_id = format!("{id}-{sequence}");
        let envelope = Envelope::upsert("urn:test:shop", event_id, Sequence::new(sequence), state);
        self.publisher
            .publish(&envelope)
            .await
            .expect("publishing")
            .stream_sequence
    }

    /// Publishes a delete; returns its stream sequence.
    async fn delete(&self, id: &str, sequence: u64) -> u64 {
        let envelope = Envelope::<Customer>::delete(
            "urn:test:shop",
            format!("{id}-{sequence}"),
            id.to_owned(),
            Sequence::new(sequence),
        );
        self.publisher
            .publish(&envelope)
            .await
            .expect("publishing")
            .stream_sequence
    }

    /// Publishes `payload` as it is on `subject`; returns its stream
    /// sequence.
    async fn raw(&self, subject: &str, payload: Vec<u8>) -> u64 {
        self.js
            .publish(subject.to_owned(), payload.into())
            .await
            .expect("publishing")
            .await
            .expect("the acknowledgement")
            .sequence
    }

    /// Brings the replica of consumer `consumer` in SQLite file `path` up
    /// to date with the stream, as a consumer process would.
    async fn consume(&self, path: &std::path::Path, consumer: &str) {
        let store = SqliteStore::open(path, consumer).expect("the SQLite store");
        let durable = DurableReplica::<Customer, _>::open(store)
            .await
            .expect("opening the replica");
        let settings =
            FollowSettings::new(STREAM, consumer, Subjects::new(PREFIX).expect("the prefix"));
        let mut follower = Follower::start(self.client.clone(), settings, durable)
            .await
            .expect("starting the follower");
        follower.catch_up().await.expect("catching up");
        follower.stop().await;
    }
}

impl Shop {
    /// Brings a router of customers and orders (consumer `consumer`, one
    /// checkpoint) in SQLite file `path` up to date with the stream.
    async fn consume_routed(&self, path: &std::path::Path, consumer: &str) {
        let store = SqliteStore::open(path, consumer).expect("the SQLite store");
        let router = DurableRouter::builder(store)
            .register::<Customer>()
            .and_then(|builder| builder.register::<Order>())
            .expect("registering")
            .open()
            .await
            .expect("opening the router");
        let settings =
            FollowSettings::new(STREAM, consumer, Subjects::new(PREFIX).expect("the prefix"));
        let mut follower = RouterFollower::start(self.client.clone(), settings, router)
            .await
            .expect("starting the follower");
        follower.catch_up().await.expect("catching up");
        follower.stop().await;
    }

    /// Publishes an order; returns its stream sequence.
    async fn order(&self, id: &str, sequence: u64, total: u64) -> u64 {
        let state = Order {
            id: id.to_owned(),
            total,
        };
        let envelope = Envelope::upsert(
            "urn:test:shop",
            format!("{id}-{sequence}"),
            Sequence::new(sequence),
            state,
        );
        self.publisher
            .publish(&envelope)
            .await
            .expect("publishing")
            .stream_sequence
    }
}

/// A version-99 event of `key`, which a version-1 consumer parks.
fn future_event(key: &str) -> Vec<u8> {
    json!({
        "specversion": "1.0", "id": format!("{key}-future"), "source": "urn:test:newer",
        "type": "customer", "subject": key, "sequence": "00000000000000000001",
        "schemaversion": 99, "operation": "upsert",
        "data": {"id": key, "name": "From the future", "email": null}
    })
    .to_string()
    .into_bytes()
}

fn sqlite_file() -> std::path::PathBuf {
    let dir = fresh_dir("store");
    std::fs::create_dir_all(&dir).expect("creating the store directory");
    dir.join("replica.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_the_latest_event_of_a_key() {
    let shop = Shop::open().await;
    shop.upsert("c-1", 1, "Ada", None).await;
    let stored = shop
        .upsert("c-1", 2, "Ada Lovelace", Some("ada@example.com"))
        .await;
    // A key that its subject must encode.
    shop.upsert("ada lovelace/1", 1, "Encoded", None).await;
    let url = shop.url();

    let run = ecst(&["--server", &url, "get", PREFIX, "customer", "c-1"])
        .await
        .expect_code(0);
    assert!(
        run.stdout
            .starts_with("customer c-1  sequence 2  schema version 1  upsert\n"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains(&format!("SHOP, stream sequence {stored}")));
    assert!(
        run.stdout.contains("\"name\": \"Ada Lovelace\""),
        "{}",
        run.stdout
    );

    let run = ecst(&["--server", &url, "--json", "get", PREFIX, "customer", "c-1"])
        .await
        .expect_code(0);
    let got = run.json();
    assert_eq!(got["stream"], "SHOP");
    assert_eq!(got["subject"], "shop.customer.c-1");
    assert_eq!(got["stream_sequence"], stored);
    assert_eq!(got["event"]["type"], "customer");
    assert_eq!(got["event"]["key"], "c-1");
    assert_eq!(got["event"]["sequence"], 2);
    assert_eq!(got["event"]["operation"], "upsert");
    assert_eq!(got["event"]["id"], "c-1-2");
    assert_eq!(
        got["event"]["data"],
        json!({"id": "c-1", "name": "Ada Lovelace", "email": "ada@example.com"})
    );

    let run = ecst(&[
        "--server",
        &url,
        "--json",
        "get",
        PREFIX,
        "customer",
        "ada lovelace/1",
    ])
    .await
    .expect_code(0);
    assert_eq!(run.json()["subject"], "shop.customer.ada%20lovelace%2F1");
    assert_eq!(run.json()["event"]["data"]["name"], "Encoded");

    // Binary mode: the attributes in `ce-` headers, the sequence in
    // `ce-sequence`.
    let binary = shop.publisher.clone().with_mode(Mode::Binary);
    let envelope = Envelope::upsert(
        "urn:test:shop",
        "c-9-4",
        Sequence::new(4),
        Customer {
            id: "c-9".to_owned(),
            name: "Binary".to_owned(),
            email: None,
        },
    );
    binary
        .publish(&envelope)
        .await
        .expect("publishing in binary mode");
    let run = ecst(&["--server", &url, "--json", "get", PREFIX, "customer", "c-9"])
        .await
        .expect_code(0);
    assert_eq!(run.json()["event"]["mode"], "binary");
    assert_eq!(run.json()["event"]["sequence"], 4);
    assert_eq!(run.json()["event"]["data"]["name"], "Binary");

    let line = ecst(&["--server", &url, "get", PREFIX, "customer", "c-404"])
        .await
        .one_error_line();
    assert_eq!(
        line,
        "ecst: error: stream `SHOP` holds no event of `customer` key `c-404` (subject \
         `shop.customer.c-404`)"
    );
}

/// Reads the child's stderr until the tail says it follows, so that what
/// is published next is new to it.
fn wait_until_following(stderr: impl std::io::Read) -> String {
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("reading the tail's stderr");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_new_events_with_what_changed() {
    let shop = Shop::open().await;
    shop.upsert("c-1", 1, "Ada", None).await;
    shop.upsert("c-2", 1, "Bob", None).await;
    let url = shop.url();

    let mut child = ecst_command(&["--server", &url, "tail", PREFIX, "customer", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ecst tail");
    let stderr = child.stderr.take().expect("the tail's stderr");
    let first = tokio::task::spawn_blocking(move || wait_until_following(stderr))
        .await
        .expect("the blocking task");
    assert!(
        first.starts_with(
            "ecst tail: following `shop.customer.>` in stream `SHOP` (2 stored events read"
        ),
        "{first}"
    );

    let updated = shop
        .upsert("c-1", 2, "Ada Lovelace", Some("ada@example.com"))
        .await;
    let deleted = shop.delete("c-2", 2).await;
    let fresh = shop.upsert("c-3", 1, "Cy", None).await;

    let run = Run::from(finish(child).await).expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{}", run.stdout);
    assert!(lines[0].starts_with(&format!(
        "#{updated}  customer c-1  sequence 2 (was 1)  v1  upsert  "
    )));
    assert_eq!(lines[1], r#"    ~ email: null -> "ada@example.com""#);
    assert_eq!(lines[2], r#"    ~ name: "Ada" -> "Ada Lovelace""#);
    assert!(lines[3].starts_with(&format!(
        "#{deleted}  customer c-2  sequence 2 (was 1)  v1  delete  "
    )));
    assert_eq!(lines[4], "    (deleted)");
    assert!(lines[5].starts_with(&format!("#{fresh}  customer c-3  sequence 1  v1  upsert  ")));
    assert_eq!(
        lines[6],
        r#"    (no earlier event of this key seen) {"email":null,"id":"c-3","name":"Cy"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_replays_what_the_stream_holds_as_json_lines() {
    let shop = Shop::open().await;
    shop.upsert("c-1", 1, "Ada", None).await;
    shop.upsert("c-2", 1, "Bob", None).await;
    let junk = shop.raw("shop.customer.junk", b"not json".to_vec()).await;
    shop.delete("c-1", 2).await;
    let url = shop.url();

    let run = ecst(&[
        "--server",
        &url,
        "--json",
        "tail",
        PREFIX,
        "--from-start",
        "--count",
        "3",
    ])
    .await
    .expect_code(0);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    // Stream order: c-2, the junk, then c-1's delete (which replaced its
    // upsert: one message per subject).
    assert_eq!(lines[0]["event"]["key"], "c-2");
    assert_eq!(lines[0]["previous_sequence"], Value::Null);
    assert_eq!(lines[0]["changes"], Value::Null);
    assert_eq!(lines[1]["stream_sequence"], junk);
    assert_eq!(lines[1]["event"], Value::Null);
    assert!(lines[1]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("not a JSON CloudEvent")));
    assert_eq!(lines[2]["event"]["key"], "c-1");
    assert_eq!(lines[2]["event"]["operation"], "delete");

    // The last one only, of one key.
    let run = ecst(&[
        "--server", &url, "--json", "tail", PREFIX, "customer", "c-2", "--last", "1", "--count",
        "1",
    ])
    .await
    .expect_code(0);
    let line: Value = serde_json::from_str(run.stdout.trim()).expect("a JSON line");
    assert_eq!(line["event"]["data"]["name"], "Bob");

    // `ecst tail | head -1`: the reader goes away, the tail ends quietly
    // at its next line (no panic on the broken pipe).
    let mut child = ecst_command(&["--server", &url, "tail", PREFIX, "--from-start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ecst tail");
    let stdout = child.stdout.take().expect("the tail's stdout");
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the tail");
        line // the pipe closes here
    })
    .await
    .expect("the blocking task");
    assert!(first.starts_with("#2  customer c-2"), "{first}");
    shop.upsert("c-3", 1, "Cy", None).await;
    let run = Run::from(finish(child).await).expect_code(0);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

/// Waits for `child` to end (killing it after a minute, as a guard against
/// a hang, not an assertion) and returns what it printed.
async fn finish(mut child: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().expect("the child's output")
    })
    .await
    .expect("the blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_diff_tells_lag_from_stale_and_missing_keys() {
    let shop = Shop::open().await;
    let path = sqlite_file();
    let file = path.to_str().expect("a UTF-8 path");
    let url = shop.url();
    shop.upsert("c-1", 1, "Ada", None).await;
    shop.upsert("c-2", 1, "Bob", None).await;
    shop.upsert("c-3", 1, "Cy", None).await;
    shop.consume(&path, "billing").await;
    let diff = [
        "--server", &url, "replica", "diff", PREFIX, "customer", "--sqlite", file,
    ];

    let run = ecst(&diff).await.expect_code(0);
    assert!(run.stdout.contains("  in sync  3 keys\n"), "{}", run.stdout);
    assert!(run
        .stdout
        .ends_with("verdict: in sync: every key holds the stream's latest event\n"));

    // The owner moves on; the consumer has not run since: lag, not a fault.
    let update = shop.upsert("c-2", 2, "Bob B.", None).await;
    let run = ecst(&diff).await.expect_code(0);
    assert!(
        run.stdout.contains(&format!(
            "  stale    c-2: replica has sequence 1, stream has sequence 2 (message #{update}): \
             not consumed yet (after the checkpoint at stream sequence 3)\n"
        )),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .ends_with("verdict: catching up: 1 stale, all after the checkpoint; in sync up to it\n"));

    // An event the consumer parks, then the consumer runs again.
    let future = shop.raw("shop.customer.c-5", future_event("c-5")).await;
    shop.consume(&path, "billing").await;
    // The replica goes wrong behind the checkpoint (say, the file was
    // restored from a backup older than its checkpoint): c-2 back to its
    // first state, c-3 gone.
    let connection = rusqlite::Connection::open(&path).expect("opening the store");
    connection
        .execute(
            "UPDATE ecst_replica SET sequence = 1, state = '{\"id\":\"c-2\",\"name\":\"Bob\",\
             \"email\":null}' WHERE key = 'c-2'",
            [],
        )
        .expect("rolling c-2 back");
    connection
        .execute("DELETE FROM ecst_replica WHERE key = 'c-3'", [])
        .expect("losing c-3");
    // A row the stream has no event of, and one newer than the stream's.
    connection
        .execute(
            "INSERT INTO ecst_replica (consumer, entity, key, sequence, schema_version, state) \
             VALUES ('billing', 'customer', 'c-9', 3, 1, '{\"id\":\"c-9\",\"name\":\"Ghost\",\
             \"email\":null}')",
            [],
        )
        .expect("a row from elsewhere");
    connection
        .execute("UPDATE ecst_replica SET sequence = 5 WHERE key = 'c-1'", [])
        .expect("c-1 ahead");
    drop(connection);
    let new_key = shop.upsert("c-4", 1, "Dee", None).await;

    let run = ecst(&diff).await.expect_code(1);
    let out = &run.stdout;
    assert!(out.contains(&format!(
        "  stale    c-2: replica has sequence 1, stream has sequence 2 (message #{update}): the \
         consumer passed it (checkpoint at stream sequence {future}) without applying or parking it\n"
    )), "{out}");
    assert!(out.contains("  missing  c-3: replica has sequence none, stream has sequence 1 (message #3): the consumer passed it"), "{out}");
    assert!(
        out.contains(&format!(
        "  missing  c-4: replica has sequence none, stream has sequence 1 (message #{new_key}): \
         not consumed yet"
    )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
        "  missing  c-5: replica has sequence none, stream has sequence 1 (message #{future}): \
         parked by the consumer: future_version: "
    )),
        "{out}"
    );
    assert!(
        out.ends_with("verdict: NOT in sync: 3 missing, 1 stale, 1 ahead, 1 extra\n"),
        "{out}"
    );

    let mut json_diff = diff.to_vec();
    json_diff.insert(2, "--json");
    let run = ecst(&json_diff).await.expect_code(1);
    let report = run.json();
    assert_eq!(report["verdict"], "out_of_sync");
    assert_eq!(report["consumer"], "billing");
    assert_eq!(report["checkpoint"]["stream_sequence"], future);
    assert_eq!(report["stale"]["count"], 1);
    assert_eq!(report["stale"]["keys"][0]["key"], "c-2");
    assert_eq!(report["stale"]["keys"][0]["replica_sequence"], 1);
    assert_eq!(report["stale"]["keys"][0]["latest_sequence"], 2);
    assert_eq!(report["stale"]["keys"][0]["cause"], "passed");
    let missing: Vec<(String, String)> = report["missing"]["keys"]
        .as_array()
        .expect("the missing keys")
        .iter()
        .map(|d| {
            (
                d["key"].as_str().unwrap_or_default().to_owned(),
                d["cause"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        missing,
        [
            ("c-3".to_owned(), "passed".to_owned()),
            ("c-4".to_owned(), "not_consumed".to_owned()),
            ("c-5".to_owned(), "parked".to_owned())
        ]
    );
    assert!(out.contains(
        "  ahead    c-1: replica has sequence 5, stream has sequence 1 (message #1): the replica \
         holds a newer state than the stream's latest event"
    ), "{out}");
    assert!(out.contains(
        "  extra    c-9: replica has sequence 3, stream has none: the stream holds no event of \
         this key"
    ), "{out}");
    assert_eq!(report["extra"]["keys"][0]["key"], "c-9");
    assert_eq!(report["ahead"]["keys"][0]["key"], "c-1");
    assert_eq!(report["in_sync"], 0);
}

/// A durable router keeps one checkpoint for all its entities: `diff`
/// reads it for each entity, and so tells a key the router passed from
/// one it has not reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_diff_reads_a_routers_shared_checkpoint() {
    let shop = Shop::open().await;
    let path = sqlite_file();
    let file = path.to_str().expect("a UTF-8 path");
    let url = shop.url();
    shop.upsert("c-1", 1, "Ada", None).await;
    shop.order("o-1", 1, 10).await;
    let last = shop.upsert("c-2", 1, "Bob", None).await;
    shop.consume_routed(&path, "routed").await;
    for entity in ["customer", "order"] {
        let diff = [
            "--server", &url, "replica", "diff", PREFIX, entity, "--sqlite", file,
        ];
        let run = ecst(&diff).await.expect_code(0);
        assert!(
            run.stdout.contains(&format!(
                "checkpoint at stream sequence {last} (the router's, shared by its entities)"
            )),
            "{}",
            run.stdout
        );
    }
    // c-1's row lost behind the checkpoint: the router passed it.
    let connection = rusqlite::Connection::open(&path).expect("opening the store");
    connection
        .execute("DELETE FROM ecst_replica WHERE key = 'c-1'", [])
        .expect("losing c-1");
    drop(connection);
    let run = ecst(&[
        "--server", &url, "--json", "replica", "diff", PREFIX, "customer", "--sqlite", file,
    ])
    .await
    .expect_code(1);
    let report = run.json();
    assert_eq!(report["checkpoint"]["stream_sequence"], last);
    assert_eq!(report["checkpoint"]["shared"], true);
    assert_eq!(report["missing"]["keys"][0]["key"], "c-1");
    assert_eq!(report["missing"]["keys"][0]["cause"], "passed");
    assert_eq!(report["verdict"], "out_of_sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_listed_discarded_and_retried_as_the_runtime_reads_them() {
    let shop = Shop::open().await;
    let path = sqlite_file();
    let file = path.to_str().expect("a UTF-8 path");
    shop.upsert("c-1", 1, "Ada", None).await;
    let future = shop.raw("shop.customer.c-5", future_event("c-5")).await;
    shop.consume(&path, "billing").await;
    let sequence = future.to_string();

    let run = ecst(&["parked", "list", "--sqlite", file])
        .await
        .expect_code(0);
    assert!(
        run.stdout
            .starts_with("1 parked event(s) of consumer `billing`"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "  customer #{future}  pending  future_version  key c-5  on `shop.customer.c-5`\n"
        )),
        "{}",
        run.stdout
    );

    let run = ecst(&["--json", "parked", "list", "--sqlite", file, "--pending"])
        .await
        .expect_code(0);
    let listed = run.json();
    assert_eq!(listed["consumer"], "billing");
    assert_eq!(listed["parked"][0]["kind"], "future_version");
    assert_eq!(listed["parked"][0]["status"], "pending");
    assert_eq!(listed["parked"][0]["subject"], "shop.customer.c-5");
    assert!(listed["parked"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("99")));

    let run = ecst(&[
        "parked",
        "discard",
        "customer",
        &sequence,
        "--reason",
        "owner re-published",
        "--sqlite",
        file,
    ])
    .await
    .expect_code(0);
    assert!(run.stdout.starts_with(&format!(
        "customer #{future} of consumer `billing`: discarded: owner re-published\n"
    )));
    // The runtime reads back what the command wrote.
    let store = SqliteStore::open(&path, "billing").expect("the store");
    let durable = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("opening");
    let parked = durable.parked_at(future).expect("still held, resolved");
    assert_eq!(
        parked.resolution,
        Some(Resolution::Discarded("owner re-published".to_owned()))
    );
    assert_eq!(durable.pending_parked(), 0);
    drop(durable);

    let line = ecst(&[
        "parked", "discard", "customer", &sequence, "--reason", "again", "--sqlite", file,
    ])
    .await
    .one_error_line();
    assert!(
        line.contains("is already resolved (discarded: owner re-published)"),
        "{line}"
    );
    let run = ecst(&["--json", "parked", "list", "--sqlite", file, "--pending"])
        .await
        .expect_code(0);
    assert_eq!(run.json()["parked"], json!([]));

    let run = ecst(&["parked", "retry", "customer", &sequence, "--sqlite", file])
        .await
        .expect_code(0);
    assert!(run.stdout.contains("pending again"), "{}", run.stdout);
    let store = SqliteStore::open(&path, "billing").expect("the store");
    let mut durable = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("opening");
    assert!(durable.parked_at(future).expect("held").is_pending());
    // Still a future version for this build: retry_parked keeps it parked.
    let outcome = durable.retry_parked().await.expect("retrying");
    assert_eq!(outcome.parked.len(), 1);
    drop(durable);

    let line = ecst(&[
        "parked", "discard", "customer", "999", "--reason", "x", "--sqlite", file,
    ])
    .await
    .one_error_line();
    assert!(
        line.contains("no `customer` event is parked at stream sequence 999"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_info_judges_a_good_and_a_bad_stream() {
    let shop = Shop::open().await;
    let url = shop.url();
    let run = ecst(&["--server", &url, "stream", "info", PREFIX])
        .await
        .expect_code(0);
    assert!(
        run.stdout.starts_with("stream SHOP (subjects shop.>)\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("  ok      max_msgs_per_subject: 1\n"));
    assert!(run.stdout.contains("  ok      max_age: none\n"));
    assert!(
        run.stdout.contains("  ok      duplicate_window: 2m\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("verdict: fit for ecst"));
    let run = ecst(&["--server", &url, "--json", "stream", "info", PREFIX])
        .await
        .expect_code(0);
    assert_eq!(run.json()["verdict"], "fit");

    shop.js
        .create_stream(jetstream::stream::Config {
            name: "LOOSE".to_owned(),
            subjects: vec!["loose.>".to_owned()],
            max_messages_per_subject: 10,
            max_age: Duration::from_secs(3600),
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("creating a stream unfit for ecst");
    let run = ecst(&["--server", &url, "stream", "info", "loose"])
        .await
        .expect_code(1);
    let out = &run.stdout;
    assert!(out.contains("  PROBLEM max_msgs_per_subject: 10 (a state stream keeps 1 message per subject: the latest state)\n"), "{out}");
    assert!(
        out.contains("  PROBLEM max_age: 1h (messages expire"),
        "{out}"
    );
    assert!(
        out.contains("  warning storage: memory (every key's state is lost"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "verdict: NOT fit for ecst: 2 setting(s) would lose or block keys' latest state; \
         StateStream::ensure refuses this stream\n"
        ),
        "{out}"
    );
    let run = ecst(&["--server", &url, "--json", "stream", "info", "loose"])
        .await
        .expect_code(1);
    let report = run.json();
    assert_eq!(report["verdict"], "unfit");
    let problems: Vec<&str> = report["checks"]
        .as_array()
        .expect("the checks")
        .iter()
        .filter(|c| c["status"] == "problem")
        .filter_map(|c| c["setting"].as_str())
        .collect();
    assert_eq!(problems, ["max_msgs_per_subject", "max_age"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_clear_line() {
    // No server on this port.
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let line = ecst(&["--server", &nowhere, "get", PREFIX, "customer", "c-1"])
        .await
        .one_error_line();
    assert!(
        line.starts_with(&format!(
            "ecst: error: cannot reach a NATS server at {nowhere} ("
        )),
        "{line}"
    );
    // A password in the URL is never printed.
    let port = free_port();
    let secret = format!("nats://ops:s3cret@127.0.0.1:{port}");
    let line = ecst(&["--server", &secret, "stream", "info", PREFIX])
        .await
        .one_error_line();
    assert!(
        line.contains(&format!("at nats://ops:***@127.0.0.1:{port} (")),
        "{line}"
    );
    // NATS_URL is the default server.
    let mut command = ecst_command(&["stream", "info", PREFIX]);
    command.env("NATS_URL", &nowhere);
    let run: Run = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("running ecst")
        .into();
    assert!(run.one_error_line().contains(&nowhere));

    let line = ecst(&["--server", "nats://bad host:x", "stream", "info", PREFIX])
        .await
        .one_error_line();
    assert!(
        line.starts_with("ecst: error: `nats://bad host:x` is not a NATS server URL"),
        "{line}"
    );

    // A server without JetStream.
    let plain = NatsServer::start_without_jetstream();
    let line = ecst(&["--server", &plain.url(), "stream", "info", PREFIX])
        .await
        .one_error_line();
    assert_eq!(
        line,
        format!(
            "ecst: error: JetStream is not enabled on {} (start nats-server with -js)",
            plain.url()
        )
    );
    drop(plain);

    // A wrong prefix: no stream.
    let shop = Shop::open().await;
    let url = shop.url();
    let line = ecst(&["--server", &url, "get", "shopp", "customer", "c-1"])
        .await
        .one_error_line();
    assert_eq!(
        line,
        format!(
            "ecst: error: no stream on {url} captures `shopp.customer.c-1`: is `shopp` the \
             right prefix?"
        )
    );
    let line = ecst(&[
        "--server",
        &url,
        "replica",
        "diff",
        "shopp",
        "customer",
        "--sqlite",
        "/dev/null",
    ])
    .await
    .one_error_line();
    assert!(line.contains("SQLite"), "{line}");
    let line = ecst(&["--server", &url, "stream", "info", "shopp"])
        .await
        .one_error_line();
    assert!(
        line.contains("captures `shopp.>`: is `shopp` the right prefix?"),
        "{line}"
    );
    let line = ecst(&["--server", &url, "get", PREFIX, "bad entity", "c-1"])
        .await
        .one_error_line();
    assert!(line.contains("`shop.bad entity`"), "{line}");

    // Stores that are not ecst stores.
    let dir = fresh_dir("foreign");
    std::fs::create_dir_all(&dir).expect("a directory");
    let foreign = dir.join("orders.db");
    let connection = rusqlite::Connection::open(&foreign).expect("a foreign database");
    connection
        .execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        .expect("its table");
    drop(connection);
    let foreign = foreign.to_str().expect("a UTF-8 path");
    let line = ecst(&["replica", "show", "customer", "c-1", "--sqlite", foreign])
        .await
        .one_error_line();
    assert_eq!(
        line,
        format!(
            "ecst: error: SQLite file `{foreign}` is not an ecst replica store: it has none of \
             the tables ecst_replica, ecst_checkpoint, ecst_parked"
        )
    );
    let text = dir.join("notes.txt");
    std::fs::write(
        &text,
        "not a database, just words and more words to fill a page",
    )
    .expect("a text file");
    let text = text.to_str().expect("a UTF-8 path");
    let line = ecst(&["parked", "list", "--sqlite", text])
        .await
        .one_error_line();
    assert_eq!(
        line,
        format!("ecst: error: SQLite file `{text}` is not an SQLite database")
    );
    let missing = dir.join("missing.db");
    let missing = missing.to_str().expect("a UTF-8 path");
    let line = ecst(&["parked", "list", "--sqlite", missing])
        .await
        .one_error_line();
    assert!(
        line.starts_with(&format!("ecst: error: no SQLite file at `{missing}`")),
        "{line}"
    );
    assert!(
        !std::path::Path::new(missing).exists(),
        "the command created the file"
    );
    let line = ecst(&[
        "parked",
        "list",
        "--postgres",
        "postgresql://u:s3cret@h:notaport/db",
    ])
    .await
    .one_error_line();
    assert!(
        line.starts_with(
            "ecst: error: `postgresql://u:***@h:notaport/db` is not a PostgreSQL connection string"
        ),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_show_reads_sqlite_and_postgres_stores() {
    let event = Envelope::upsert(
        "urn:test:shop",
        "c-1-7",
        Sequence::new(7),
        Customer {
            id: "c-1".to_owned(),
            name: "Ada".to_owned(),
            email: None,
        },
    )
    .to_json()
    .expect("encoding");
    let message = Message::new(42, "shop.customer.c-1", &event).addressed_to("customer", "c-1");

    // PostgreSQL: a consumer name no other test uses.
    let consumer = format!("ecst-cli-test-{}", std::process::id());
    let config = "host=127.0.0.1 user=postgres dbname=test";
    let store = PostgresStore::connect(config, &consumer)
        .await
        .expect("PostgreSQL");
    let mut durable = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("opening");
    durable
        .apply_batch(std::slice::from_ref(&message))
        .await
        .expect("applying");
    drop(durable);
    let url = "postgresql://postgres@127.0.0.1/test";
    let human = ecst(&[
        "replica",
        "show",
        "customer",
        "c-1",
        "--postgres",
        url,
        "--consumer",
        &consumer,
    ])
    .await;
    let json = ecst(&[
        "--json",
        "replica",
        "show",
        "customer",
        "c-1",
        "--postgres",
        url,
        "--consumer",
        &consumer,
    ])
    .await;
    // Cleaned up before anything is asserted: a failure leaves no rows.
    let mut store = PostgresStore::connect(config, &consumer)
        .await
        .expect("PostgreSQL");
    store.purge_consumer().await.expect("cleaning up");
    let run = human.expect_code(0);
    assert!(run.stdout.starts_with(&format!(
        "customer c-1  sequence 7  (consumer `{consumer}`, PostgreSQL database `postgres@127.0.0.1:5432/test`)\n"
    )), "{}", run.stdout);
    assert!(run
        .stdout
        .contains("  checkpoint      stream sequence 42, 1 events applied\n"));
    assert!(run.stdout.contains("\"name\": \"Ada\""), "{}", run.stdout);
    let shown = json.expect_code(0).json();
    assert_eq!(shown["sequence"], 7);
    assert_eq!(shown["deleted"], false);
    assert_eq!(
        shown["state"],
        json!({"id": "c-1", "name": "Ada", "email": null})
    );

    // A database without ecst's tables (here: a schema that does not
    // exist first on the search path).
    let foreign = "postgresql://postgres@127.0.0.1/test?options=-csearch_path%3Decst_cli_none";
    let line = ecst(&["replica", "show", "customer", "c-1", "--postgres", foreign])
        .await
        .one_error_line();
    assert_eq!(
        line,
        "ecst: error: PostgreSQL database `postgres@127.0.0.1:5432/test` is not an ecst replica \
         store: it has none of the tables ecst_replica, ecst_checkpoint, ecst_parked"
    );

    // SQLite, found without --consumer: the file holds one consumer.
    let path = sqlite_file();
    let store = SqliteStore::open(&path, "billing").expect("SQLite");
    let mut durable = DurableReplica::<Customer, _>::open(store)
        .await
        .expect("opening");
    durable.apply_batch(&[message]).await.expect("applying");
    drop(durable);
    let file = path.to_str().expect("a UTF-8 path");
    let run = ecst(&[
        "--json", "replica", "show", "customer", "c-1", "--sqlite", file,
    ])
    .await
    .expect_code(0);
    assert_eq!(run.json()["consumer"], "billing");
    assert_eq!(run.json()["state"]["name"], "Ada");
    let line = ecst(&["replica", "show", "customer", "c-2", "--sqlite", file])
        .await
        .one_error_line();
    assert_eq!(
        line,
        format!(
            "ecst: error: SQLite file `{file}` holds no row of `customer` key `c-2` for consumer \
             `billing`"
        )
    );
    let line = ecst(&[
        "replica",
        "show",
        "customer",
        "c-1",
        "--sqlite",
        file,
        "--consumer",
        "nobody",
    ])
    .await
    .one_error_line();
    assert!(
        line.ends_with("holds no rows of consumer `nobody` (it holds: `billing`)"),
        "{line}"
    );
}
