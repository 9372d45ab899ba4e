//! The NATS adapter against raw async-nats, in the same run, against a real
//! `nats-server` on 127.0.0.1 (see `tests/support/nats_server.rs`; the binary
//! is `$NATS_SERVER` or `/usr/sbin/nats-server`).
//!
//! Setup (not timed): a state stream holding the latest event of 100,000
//! distinct keys, published with `Publisher::publish_all`.
//!
//! - `catch_up/raw_ack`: a raw pull consumer (fresh durable, `DeliverPolicy::All`,
//!   explicit ack) fetching batches of 512 (ecst's default) and acking every
//!   message, nothing else, until all 100k are consumed;
//! - `catch_up/raw_ack_all`: the same with `AckPolicy::All`, acknowledging
//!   only the last message of each batch (after reading all of it): the
//!   acknowledgement scheme the ecst follower uses since this round, for a
//!   like-for-like reference (the targets stay against `raw_ack`);
//! - `catch_up/raw_ack_last_per_subject`: the same as `raw_ack` with
//!   `DeliverPolicy::LastPerSubject`, the policy a new ecst follower used
//!   before it asked for `All` on a state stream (kept for the comparison);
//! - `catch_up/ecst_memory`: `Follower::start` + `Follower::catch_up` into a
//!   fresh `DurableReplica<Customer, MemoryStore>` (JSON rows);
//! - `catch_up/ecst_memory_typed`: the same into `MemoryStore::<Customer>::typed()`
//!   (states kept as `Customer`, cloned, no JSON per commit);
//! - `catch_up/ecst_sqlite_normal`, `catch_up/ecst_sqlite_full`: the same into
//!   a fresh `SqliteStore` in a temp file, with `synchronous=NORMAL` and the
//!   default `FULL`;
//! - `catch_up/ecst_postgres`: the same into a `PostgresStore` on the local
//!   server (`host=127.0.0.1 user=postgres dbname=test`, the server's
//!   defaults: `synchronous_commit=on`), under a consumer name of its own
//!   whose rows are deleted afterwards (not timed);
//! - `publish/raw`: 10,000 pre-encoded envelopes (the very bytes ecst sends,
//!   with the same `Nats-Msg-Id`) published with async-nats, acks pipelined;
//! - `publish/ecst`: `Publisher::publish_all` of the same 10,000 envelopes,
//!   encoding included, with the sequence guard (the default: every publish
//!   carries `Nats-Expected-Last-Subject-Sequence`; new keys need no read);
//! - `publish/ecst_unguarded`: the same with `Publisher::unguarded()`;
//! - `publish/ecst_cold_updates`: the guard's worst case, a restarted
//!   producer: a fresh guarded publisher publishes the next event of 10,000
//!   keys that the stream already holds (published beforehand, not timed),
//!   so every publish is refused once, reads the subject's last message and
//!   goes again.
//!
//! Timed: creating the consumer (ecst: `Follower::start`) and consuming; not
//! timed: opening the store, dropping the replica, deleting the consumer.
//! Every publish iteration goes to a freshly created stream (so the server's
//! duplicate window never drops an event).
//!
//! Run with `cargo bench -p ecst-benches --bench nats`, then
//! `python3 benches/ratios.py` for the rates of this very run and their
//! ratios (ecst events/s ÷ raw events/s).
//!
//! `ECST_BENCH_ONCE=<group>/<function>[,...]` skips criterion, runs the setup
//! and then those functions once each, round-robin, `ECST_BENCH_REPEAT=<n>`
//! times, printing wall and CPU time (an A/B comparison on a noisy machine).
//! For instruction counts of the timed part on the bench's thread:
//! `ECST_BENCH_ONCE=catch_up/ecst_memory valgrind --tool=callgrind
//! --collect-atstart=no --toggle-collect='*Measured*poll*'
//! target/release/deps/nats-<hash>`.

#[path = "support/customer.rs"]
mod customer;
#[path = "../tests/support/nats_server.rs"]
mod nats_server;

use std::collections::VecDeque;
use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context};
use async_nats::Client;
use bytes::Bytes;
use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use customer::{customer, Customer};
use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
use ecst::store::postgres::PostgresStore;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, MemoryStore, ReplicaStore};
use ecst::{Envelope, Producer, StateEvent};
use futures_util::StreamExt;
use nats_server::NatsServer;
use tokio::runtime::Runtime;

/// Keys in the state stream, all caught up by every catch-up iteration.
const KEYS: usize = 100_000;
/// Envelopes per publish iteration.
const PUBLISH: usize = 10_000;
/// ecst's default fetch size (`FollowSettings::new`), used by the raw
/// consumer too.
const BATCH: usize = 512;
/// The PostgreSQL of `catch_up/ecst_postgres`.
const POSTGRES: &str = "host=127.0.0.1 user=postgres dbname=test";
/// The state stream of the catch-up benchmarks.
const STREAM: &str = "ECST_BENCH";
const PREFIX: &str = "bench";
/// The stream (re)created for every publish iteration.
const PUBLISH_STREAM: &str = "ECST_BENCH_PUB";
const PUBLISH_PREFIX: &str = "benchpub";

fn envelopes(n: usize) -> Vec<Envelope<Customer>> {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    (0..n)
        .map(|i| producer.upsert(customer(i, 1)).unwrap())
        .collect()
}

/// What the catch-up iterations share.
struct Bench {
    _server: NatsServer,
    client: Client,
    js: Context,
    subjects: Subjects,
    /// Makes every durable consumer name and temp file unique.
    counter: AtomicU64,
    dir: PathBuf,
}

impl Bench {
    async fn setup() -> Bench {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new(PREFIX).unwrap();
        let version = ServerVersion::of(&client).unwrap();
        StateStream::new(STREAM, subjects.clone())
            .ensure(&js, version)
            .await
            .unwrap();
        let all = envelopes(KEYS);
        let start = Instant::now();
        let published = tokio::time::timeout(
            Duration::from_secs(120),
            Publisher::new(js.clone(), subjects.clone()).publish_all(&all),
        )
        .await
        .expect("publish_all of the setup did not finish within 2 minutes")
        .unwrap();
        assert_eq!(published.len(), KEYS);
        assert!(published.iter().all(|p| !p.duplicate));
        let mut stream = js.get_stream(STREAM).await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.state.messages, KEYS as u64);
        let bytes: usize = all.iter().map(|e| e.to_json().unwrap().len()).sum();
        eprintln!(
            "nats: nats-server {version}, {KEYS} events (mean envelope {} bytes) published in {:?}",
            bytes / KEYS,
            start.elapsed()
        );
        let dir = std::env::temp_dir().join(format!("ecst-bench-nats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Bench {
            _server: server,
            client,
            js,
            subjects,
            counter: AtomicU64::new(0),
            dir,
        }
    }

    fn fresh_name(&self, what: &str) -> String {
        format!("{what}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    async fn delete_consumer(&self, name: &str) {
        let stream = self.js.get_stream(STREAM).await.unwrap();
        stream.delete_consumer(name).await.unwrap();
    }

    /// The raw baseline: fetch 512 at a time, ack each, count.
    async fn raw_ack(&self, deliver_policy: DeliverPolicy) -> Duration {
        self.raw(deliver_policy, AckPolicy::Explicit).await
    }

    /// The raw baseline with `AckPolicy::All`: fetch 512 at a time, ack the
    /// last of each batch, count.
    async fn raw_ack_all(&self) -> Duration {
        self.raw(DeliverPolicy::All, AckPolicy::All).await
    }

    async fn raw(&self, deliver_policy: DeliverPolicy, ack_policy: AckPolicy) -> Duration {
        let name = self.fresh_name("raw");
        let start = Instant::now();
        let count = Measured::new(async {
            let stream = self.js.get_stream(STREAM).await.unwrap();
            let consumer = stream
                .create_consumer(PullConfig {
                    durable_name: Some(name.clone()),
                    deliver_policy,
                    ack_policy,
                    ack_wait: Duration::from_secs(30),
                    // No limit for `LastPerSubject`: nats-server 2.9 can skip
                    // a message of such a consumer at the limit (see
                    // `create_consumer` in ecst-runtime/src/nats/follow.rs),
                    // and this loop then waits for it forever. A run hung in
                    // this function on 2026-12-01 (the cause not confirmed).
                    // Acking as it reads, the raw consumer never holds more
                    // than a batch anyway.
                    max_ack_pending: if deliver_policy == DeliverPolicy::LastPerSubject {
                        -1
                    } else {
                        (BATCH * 4) as i64
                    },
                    filter_subject: self.subjects.entity(Customer::ENTITY),
                    ..PullConfig::default()
                })
                .await
                .unwrap();
            let mut count = 0;
            while count < KEYS {
                let mut batch = consumer
                    .fetch()
                    .max_messages(BATCH)
                    .expires(Duration::from_secs(1))
                    .messages()
                    .await
                    .unwrap();
                let mut last = None;
                while let Some(message) = batch.next().await {
                    let message = message.unwrap();
                    count += 1;
                    if ack_policy == AckPolicy::All {
                        last = Some(message);
                    } else {
                        message.ack().await.unwrap();
                    }
                }
                if let Some(message) = last {
                    message.ack().await.unwrap();
                }
            }
            count
        })
        .await;
        let elapsed = start.elapsed();
        assert_eq!(count, KEYS);
        self.delete_consumer(&name).await;
        elapsed
    }

    /// ecst: a follower from a fresh store until caught up.
    async fn ecst<S: ReplicaStore<Customer>>(&self, store: S) -> Duration {
        let name = self.fresh_name("ecst");
        let replica = DurableReplica::<Customer, S>::open(store)
            .await
            .unwrap_or_else(|_| panic!("opening the store"));
        assert_eq!(replica.resume_after(), 0);
        let settings = FollowSettings::new(STREAM, name.clone(), self.subjects.clone());
        assert_eq!(settings.batch, BATCH);
        let start = Instant::now();
        let follower = Measured::new(async {
            let mut follower = Follower::start(self.client.clone(), settings, replica)
                .await
                .unwrap();
            follower.catch_up().await.unwrap();
            follower
        })
        .await;
        let elapsed = start.elapsed();
        let follower = explain_short(follower).await;
        let replica = follower.into_replica();
        assert_eq!(replica.replica().len(), KEYS);
        assert_eq!(
            replica.checkpoint().map(|c| c.applied),
            Some(KEYS as u64),
            "every event applied once"
        );
        assert_eq!(replica.parked_len(), 0);
        drop(black_box(replica));
        self.delete_consumer(&name).await;
        elapsed
    }

    async fn ecst_memory(&self) -> Duration {
        self.ecst(MemoryStore::new()).await
    }

    async fn ecst_memory_typed(&self) -> Duration {
        self.ecst(MemoryStore::<Customer>::typed()).await
    }

    async fn ecst_sqlite(&self, full: bool) -> Duration {
        let path = self.dir.join(format!("{}.db", self.fresh_name("replica")));
        let store = SqliteStore::open(&path, "bench").unwrap();
        let store = if full {
            store
        } else {
            store.synchronous_normal().unwrap()
        };
        let elapsed = self.ecst(store).await;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
        elapsed
    }

    async fn ecst_postgres(&self) -> Duration {
        // Unique across bench processes too: the tables are shared.
        let consumer = format!(
            "ecst-bench-nats-{}-{}",
            std::process::id(),
            self.fresh_name("replica")
        );
        let store = PostgresStore::connect(POSTGRES, &consumer).await.unwrap();
        let elapsed = self.ecst(store).await;
        PostgresStore::connect(POSTGRES, &consumer)
            .await
            .unwrap()
            .purge_consumer()
            .await
            .unwrap();
        elapsed
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// If the follower stopped short of all keys: what it holds, and what
/// further polls bring (a stop too early, or a lost event?).
async fn explain_short<S: ReplicaStore<Customer>>(
    mut follower: Follower<Customer, S>,
) -> Follower<Customer, S> {
    if follower.replica().replica().len() == KEYS {
        return follower;
    }
    eprintln!(
        "SHORT: {} keys, checkpoint {:?}",
        follower.replica().replica().len(),
        follower.replica().checkpoint()
    );
    for _ in 0..5 {
        match follower.poll().await {
            Ok(progress) => eprintln!(
                "SHORT: poll: applied {:?}, parked {}, pending {}",
                progress.batch.applied.iter().take(5).collect::<Vec<_>>(),
                progress.batch.parked.len(),
                progress.pending
            ),
            Err(error) => eprintln!("SHORT: poll failed: {error}"),
        }
    }
    eprintln!(
        "SHORT: now {} keys, checkpoint {:?}",
        follower.replica().replica().len(),
        follower.replica().checkpoint()
    );
    follower
}

/// What the publish iterations share: the envelopes, and for the raw
/// baseline their subjects and bytes, encoded beforehand.
struct PublishBench {
    js: Context,
    subjects: Subjects,
    version: ServerVersion,
    envelopes: Vec<Envelope<Customer>>,
    /// The next event of every key of `envelopes`.
    updates: Vec<Envelope<Customer>>,
    encoded: Vec<(String, String, Bytes)>,
}

impl PublishBench {
    fn new(bench: &Bench) -> PublishBench {
        let subjects = Subjects::new(PUBLISH_PREFIX).unwrap();
        let mut producer = Producer::<Customer>::new("urn:example:crm");
        let envelopes: Vec<_> = (0..PUBLISH)
            .map(|i| producer.upsert(customer(i, 1)).unwrap())
            .collect();
        let updates = (0..PUBLISH)
            .map(|i| producer.upsert(customer(i, 2)).unwrap())
            .collect();
        let encoded = envelopes
            .iter()
            .map(|e| {
                let subject = subjects.event(Customer::ENTITY, &e.key).unwrap();
                (subject, e.id.clone(), Bytes::from(e.to_json().unwrap()))
            })
            .collect();
        PublishBench {
            js: bench.js.clone(),
            subjects,
            version: ServerVersion::of(&bench.client).unwrap(),
            envelopes,
            updates,
            encoded,
        }
    }

    /// A fresh, empty stream (not timed).
    async fn fresh_stream(&self) {
        let _ = self.js.delete_stream(PUBLISH_STREAM).await;
        StateStream::new(PUBLISH_STREAM, self.subjects.clone())
            .ensure(&self.js, self.version)
            .await
            .unwrap();
    }

    async fn check_stream(&self) {
        let mut stream = self.js.get_stream(PUBLISH_STREAM).await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.state.messages, PUBLISH as u64);
    }

    /// Raw async-nats: send every message, collecting the acks as they come
    /// (the context allows 5,000 acks in flight by default: sending all
    /// 10,000 before awaiting any would wait forever for a permit).
    async fn raw(&self) -> Duration {
        self.fresh_stream().await;
        let start = Instant::now();
        let acks = Measured::new(async {
            let mut pending: VecDeque<PublishAckFuture> = VecDeque::with_capacity(PUBLISH);
            let mut acks = Vec::with_capacity(PUBLISH);
            for (subject, id, payload) in &self.encoded {
                let message = PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(id);
                if pending.len() >= RAW_WINDOW {
                    if let Some(ack) = pending.pop_front() {
                        acks.push(ack.await.unwrap().sequence);
                    }
                }
                pending.push_back(
                    self.js
                        .send_publish(subject.clone(), message)
                        .await
                        .unwrap(),
                );
            }
            for ack in pending {
                acks.push(ack.await.unwrap().sequence);
            }
            acks
        })
        .await;
        let elapsed = start.elapsed();
        assert_eq!(acks.len(), PUBLISH);
        self.check_stream().await;
        elapsed
    }

    /// `Publisher::publish_all` of the envelopes, guarded or not, into a
    /// fresh stream.
    async fn ecst(&self, guarded: bool) -> Duration {
        self.fresh_stream().await;
        let mut publisher = Publisher::new(self.js.clone(), self.subjects.clone());
        if !guarded {
            publisher = publisher.unguarded();
        }
        let start = Instant::now();
        let published = Measured::new(publisher.publish_all(&self.envelopes))
            .await
            .unwrap();
        let elapsed = start.elapsed();
        assert_eq!(published.len(), PUBLISH);
        self.check_stream().await;
        elapsed
    }

    /// A fresh guarded publisher publishes the next event of every key of a
    /// stream that holds them all (published beforehand, not timed).
    async fn ecst_cold_updates(&self) -> Duration {
        self.fresh_stream().await;
        Publisher::new(self.js.clone(), self.subjects.clone())
            .unguarded()
            .publish_all(&self.envelopes)
            .await
            .unwrap();
        let publisher = Publisher::new(self.js.clone(), self.subjects.clone());
        let start = Instant::now();
        let published = Measured::new(publisher.publish_all(&self.updates))
            .await
            .unwrap();
        let elapsed = start.elapsed();
        assert_eq!(published.len(), PUBLISH);
        assert!(published.iter().all(|p| !p.duplicate));
        self.check_stream().await;
        elapsed
    }
}

/// The timed part of an iteration, as a future whose `poll` is a symbol of
/// its own, so that callgrind can collect exactly that:
/// `--collect-atstart=no --toggle-collect='*Measured*poll*'` (the polls on
/// the bench's thread; the client's connection task runs on the runtime's
/// workers).
struct Measured<F>(Pin<Box<F>>);

impl<F: Future> Measured<F> {
    fn new(future: F) -> Self {
        Measured(Box::pin(future))
    }
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Acks in flight before the raw publisher waits for the oldest: below the
/// context's default limit of 5,000.
const RAW_WINDOW: usize = 4_096;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn timed<F>(rt: &Runtime, iters: u64, mut once: impl FnMut() -> F) -> Duration
where
    F: Future<Output = Duration>,
{
    (0..iters).map(|_| rt.block_on(once())).sum()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::setup());

    let mut group = c.benchmark_group("catch_up");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Elements(KEYS as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("raw_ack", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.raw_ack(DeliverPolicy::All)))
    });
    group.bench_function("raw_ack_all", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.raw_ack_all()))
    });
    group.bench_function("raw_ack_last_per_subject", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.raw_ack(DeliverPolicy::LastPerSubject)))
    });
    group.bench_function("ecst_memory", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.ecst_memory()))
    });
    group.bench_function("ecst_memory_typed", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.ecst_memory_typed()))
    });
    group.bench_function("ecst_sqlite_normal", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.ecst_sqlite(false)))
    });
    group.bench_function("ecst_sqlite_full", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.ecst_sqlite(true)))
    });
    group.bench_function("ecst_postgres", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || bench.ecst_postgres()))
    });
    group.finish();

    let publish = PublishBench::new(&bench);
    let mut group = c.benchmark_group("publish");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Elements(PUBLISH as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || publish.raw()))
    });
    group.bench_function("ecst", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || publish.ecst(true)))
    });
    group.bench_function("ecst_unguarded", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || publish.ecst(false)))
    });
    group.bench_function("ecst_cold_updates", |b| {
        b.iter_custom(|iters| timed(&rt, iters, || publish.ecst_cold_updates()))
    });
    group.finish();
}

criterion_group!(benches, bench);

/// User + system CPU of `/proc/<pid>`, in clock ticks (0 if unreadable).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
}

/// The nats-server child of this process, if /proc says.
fn server_pid() -> Option<String> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .next()
}

/// `ECST_BENCH_ONCE=<group>/<function>[,<group>/<function>...]`: the setup,
/// then each function once, round-robin, `ECST_BENCH_REPEAT` times (default
/// 1); prints each one's mean time and the CPU time the bench process and
/// the server spent in it.
fn once(functions: &str) {
    let functions: Vec<&str> = functions.split(',').map(str::trim).collect();
    let repeat: u32 = std::env::var("ECST_BENCH_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let rt = runtime();
    let bench = rt.block_on(Bench::setup());
    let publish = PublishBench::new(&bench);
    let server = server_pid();
    // (wall, bench CPU ticks, server CPU ticks) per function.
    let mut totals = vec![(Duration::ZERO, 0, 0); functions.len()];
    for _ in 0..repeat {
        for (function, total) in functions.iter().zip(&mut totals) {
            let before = (cpu_ticks("self"), server.as_deref().map_or(0, cpu_ticks));
            total.0 += rt.block_on(async {
                match *function {
                    "catch_up/raw_ack" => bench.raw_ack(DeliverPolicy::All).await,
                    "catch_up/raw_ack_all" => bench.raw_ack_all().await,
                    "catch_up/raw_ack_last_per_subject" => {
                        bench.raw_ack(DeliverPolicy::LastPerSubject).await
                    }
                    "catch_up/ecst_memory" => bench.ecst_memory().await,
                    "catch_up/ecst_memory_typed" => bench.ecst_memory_typed().await,
                    "catch_up/ecst_sqlite_normal" => bench.ecst_sqlite(false).await,
                    "catch_up/ecst_sqlite_full" => bench.ecst_sqlite(true).await,
                    "catch_up/ecst_postgres" => bench.ecst_postgres().await,
                    "publish/raw" => publish.raw().await,
                    "publish/ecst" => publish.ecst(true).await,
                    "publish/ecst_unguarded" => publish.ecst(false).await,
                    "publish/ecst_cold_updates" => publish.ecst_cold_updates().await,
                    other => panic!("unknown function `{other}`"),
                }
            });
            total.1 += cpu_ticks("self") - before.0;
            total.2 += server.as_deref().map_or(0, cpu_ticks) - before.1;
        }
    }
    for (function, (wall, bench, server)) in functions.iter().zip(totals) {
        // Clock ticks are 10 ms on Linux.
        eprintln!(
            "{function}: mean {:?} over {repeat}; CPU per run: bench process {} ms, \
             nats-server {} ms",
            wall / repeat,
            bench * 10 / u64::from(repeat),
            server * 10 / u64::from(repeat),
        );
    }
}

fn main() {
    if let Ok(functions) = std::env::var("ECST_BENCH_ONCE") {
        once(&functions);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
