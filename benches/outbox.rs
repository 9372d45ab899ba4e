//! The transactional outbox against the unsafe baseline, in the same run,
//! with a real `nats-server` on 127.0.0.1, SQLite (WAL,
//! `synchronous=NORMAL`, a temp file) and PostgreSQL (127.0.0.1:5432,
//! database `test`, tables of this process).
//!
//! Owner throughput, per iteration 2,000 edits of 2,000 distinct customers
//! (each customer once, so the relay has nothing to collapse), 10 edits a
//! transaction, each writing the owner's own row:
//!
//! - `outbox_sqlite/direct`, `outbox_postgres/direct` (the baseline, which
//!   loses or invents events on a crash): the writes, then after each
//!   commit `Publisher::publish_all` of that transaction's 10 envelopes
//!   (built with a `Producer`), waiting for the acknowledgements;
//! - `outbox_sqlite/outbox`, `outbox_postgres/outbox`: the same writes, each
//!   edit also `Outbox::stage`d in its transaction, with an `OutboxRelay`
//!   running in the same process; timed until the relay has published
//!   every event and deleted its row.
//!
//! After the PostgreSQL group, where the owner's time went per event (the
//! `BEGIN`, its own write, staging or building the envelopes, the commit,
//! the direct publish, the wait for the relay), summed over every
//! iteration: the ratio alone does not say what to fix.
//!
//! Then, outside criterion, end-to-end latency from a commit to the change
//! applied in a replica (an in-memory `DurableReplica` followed by a
//! `Follower` polling back to back; the time taken in its change feed), for
//! 200 single-edit transactions, 20 ms apart, one at a time, printed as
//! p50/p99: SQLite with the relay woken by the staging call (`notify`),
//! SQLite with a relay that only polls (every 100 ms: a relay of another
//! `Outbox` value, which shares no notifier), PostgreSQL woken by the insert
//! trigger's `NOTIFY`, and PostgreSQL with the trigger dropped for the run,
//! polling every 100 ms.
//!
//! Run with `cargo bench -p ecst-benches --bench outbox`, then
//! `python3 benches/ratios.py` for the rates and the ratios (outbox
//! events/s ÷ direct events/s; target ≥ 0.7 on SQLite).

#[path = "support/customer.rs"]
mod customer;
#[path = "../tests/support/nats_server.rs"]
mod nats_server;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use criterion::{criterion_group, Criterion, SamplingMode, Throughput};
use customer::{customer, Customer};
use ecst::nats::{FollowSettings, Follower, Publisher, ServerVersion, StateStream, Subjects};
use ecst::outbox::rusqlite::{params, Connection, TransactionBehavior};
use ecst::outbox::tokio_postgres::{self, NoTls};
use ecst::outbox::{Outbox, OutboxRelay, RelaySettings};
use ecst::store::{DurableReplica, MemoryStore};
use ecst::{Envelope, Producer, StateChange};
use nats_server::NatsServer;
use tokio::runtime::Runtime;

/// Edits per iteration.
const EDITS: usize = 2_000;
/// Edits per transaction.
const PER_TX: usize = 10;
const POSTGRES: &str = "host=127.0.0.1 user=postgres dbname=test";
/// Single-edit transactions of a latency run.
const LATENCY_SAMPLES: usize = 200;
/// The pause between them: longer than the relay's `linger` (5 ms), so
/// that every commit finds the relay waiting (for a wake-up or its poll).
const LATENCY_GAP: Duration = Duration::from_millis(20);

struct Bench {
    _server: NatsServer,
    client: async_nats::Client,
    js: Context,
    subjects: Subjects,
    dir: PathBuf,
    /// Revision of the next iteration's edits (every key is edited once an
    /// iteration).
    revision: AtomicU64,
    unique: String,
}

fn open_sqlite(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    // The timeout first: switching to WAL takes a lock.
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn
}

async fn postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(POSTGRES, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn upsert_sql(table: &str, placeholder: [&str; 2]) -> String {
    let [a, b] = placeholder;
    format!(
        "INSERT INTO {table} (id, state) VALUES ({a}, {b})
         ON CONFLICT (id) DO UPDATE SET state = excluded.state"
    )
}

impl Bench {
    async fn setup() -> Bench {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new("bench").unwrap();
        let version = ServerVersion::of(&client).unwrap();
        StateStream::new("OUTBOX_BENCH", subjects.clone())
            .ensure(&js, version)
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ecst-bench-outbox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Bench {
            _server: server,
            client,
            js,
            subjects,
            dir,
            revision: AtomicU64::new(1),
            unique: format!("{}", std::process::id()),
        }
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(self.js.clone(), self.subjects.clone())
    }

    fn next_revision(&self) -> u64 {
        self.revision.fetch_add(1, Ordering::Relaxed)
    }
}

/// The SQLite owner: its table, and an outbox with its relay.
struct SqliteOwner {
    conn: Connection,
    outbox: Outbox,
    direct: Publisher,
    producer: Producer<Customer>,
}

impl SqliteOwner {
    fn new(bench: &Bench, name: &str) -> (SqliteOwner, PathBuf) {
        let path = bench.dir.join(format!("{name}.db"));
        let conn = open_sqlite(&path);
        let outbox = Outbox::new("urn:example:crm");
        outbox.create_sqlite(&conn).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, state TEXT NOT NULL)",
        )
        .unwrap();
        let owner = SqliteOwner {
            conn,
            outbox,
            direct: bench.publisher(),
            producer: Producer::new("urn:example:crm"),
        };
        (owner, path)
    }

    /// The baseline: write, commit, publish the transaction's events.
    async fn direct(&mut self, revision: u64, base: usize) -> Duration {
        let upsert = upsert_sql("customers", ["?1", "?2"]);
        let start = Instant::now();
        for chunk in (0..EDITS).collect::<Vec<_>>().chunks(PER_TX) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            let mut envelopes: Vec<Envelope<Customer>> = Vec::with_capacity(PER_TX);
            for &i in chunk {
                let state = customer(base + i, revision);
                let json = serde_json::to_string(&state).unwrap();
                tx.prepare_cached(&upsert)
                    .unwrap()
                    .execute(params![state.id, json])
                    .unwrap();
                envelopes.push(self.producer.upsert(state).unwrap());
            }
            tx.commit().unwrap();
            self.direct.publish_all(&envelopes).await.unwrap();
        }
        start.elapsed()
    }

    /// The outbox: write and stage, commit; done when the relay is.
    async fn outbox(&mut self, revision: u64, base: usize) -> Duration {
        let upsert = upsert_sql("customers", ["?1", "?2"]);
        let start = Instant::now();
        for chunk in (0..EDITS).collect::<Vec<_>>().chunks(PER_TX) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            for &i in chunk {
                let state = customer(base + i, revision);
                let json = serde_json::to_string(&state).unwrap();
                tx.prepare_cached(&upsert)
                    .unwrap()
                    .execute(params![state.id, json])
                    .unwrap();
                self.outbox.stage(&tx, &state).unwrap();
            }
            tx.commit().unwrap();
        }
        let count = format!("SELECT count(*) FROM {}", self.outbox.table());
        loop {
            let left: i64 = self.conn.query_row(&count, [], |r| r.get(0)).unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        start.elapsed()
    }
}

/// Where the time of a PostgreSQL owner's iterations went, summed.
#[derive(Default)]
struct Phases {
    events: u32,
    begin: Duration,
    write: Duration,
    stage: Duration,
    commit: Duration,
    publish: Duration,
    drain: Duration,
}

impl Phases {
    fn print(&self, what: &str) {
        let per = |d: Duration| d / self.events.max(1);
        println!(
            "{what}: per event: begin {:?}, own write {:?}, stage {:?}, commit {:?}, \
             publish {:?}, wait for the relay {:?} ({} events)",
            per(self.begin),
            per(self.write),
            per(self.stage),
            per(self.commit),
            per(self.publish),
            per(self.drain),
            self.events
        );
    }
}

/// The PostgreSQL owner.
struct PostgresOwner {
    client: tokio_postgres::Client,
    outbox: Outbox,
    customers: String,
    direct: Publisher,
    producer: Producer<Customer>,
    phases: [Phases; 2],
}

impl PostgresOwner {
    async fn new(bench: &Bench) -> PostgresOwner {
        let mut client = postgres().await;
        let outbox = Outbox::new("urn:example:crm")
            .with_table(&format!("bench_outbox_{}", bench.unique))
            .unwrap();
        outbox.create_postgres(&mut client).await.unwrap();
        let customers = format!("bench_customers_{}", bench.unique);
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {customers} (id text PRIMARY KEY, state text NOT NULL)"
            ))
            .await
            .unwrap();
        PostgresOwner {
            client,
            outbox,
            customers,
            direct: bench.publisher(),
            producer: Producer::new("urn:example:crm"),
            phases: Default::default(),
        }
    }

    async fn write(&mut self, revision: u64, direct: bool, base: usize) -> Duration {
        let upsert = self
            .client
            .prepare(&upsert_sql(&self.customers, ["$1", "$2"]))
            .await
            .unwrap();
        let start = Instant::now();
        let phases = &mut self.phases[usize::from(!direct)];
        let mut clock = Instant::now();
        let mut lap = |into: &mut Duration| {
            let now = Instant::now();
            *into += now - clock;
            clock = now;
        };
        for chunk in (0..EDITS).collect::<Vec<_>>().chunks(PER_TX) {
            let tx = self.client.transaction().await.unwrap();
            lap(&mut phases.begin);
            let mut envelopes: Vec<Envelope<Customer>> = Vec::with_capacity(PER_TX);
            for &i in chunk {
                let state = customer(base + i, revision);
                let json = serde_json::to_string(&state).unwrap();
                tx.execute(&upsert, &[&state.id, &json]).await.unwrap();
                lap(&mut phases.write);
                if direct {
                    envelopes.push(self.producer.upsert(state).unwrap());
                } else {
                    self.outbox.stage(&tx, &state).await.unwrap();
                }
                lap(&mut phases.stage);
            }
            tx.commit().await.unwrap();
            lap(&mut phases.commit);
            if direct {
                self.direct.publish_all(&envelopes).await.unwrap();
            }
            lap(&mut phases.publish);
        }
        if !direct {
            let count = format!("SELECT count(*) FROM {}", self.outbox.table());
            loop {
                let left: i64 = self.client.query_one(&count, &[]).await.unwrap().get(0);
                if left == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        lap(&mut phases.drain);
        phases.events += EDITS as u32;
        start.elapsed()
    }

    async fn drop_tables(&self) {
        let t = self.outbox.table();
        let _ = self
            .client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}, {t}_sequence, {t}_lease, {};
                 DROP FUNCTION IF EXISTS {t}_notify();",
                self.customers
            ))
            .await;
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn relay_settings(poll: Duration) -> RelaySettings {
    let mut settings = RelaySettings::default();
    settings.poll_interval = poll;
    settings
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let bench = rt.block_on(Bench::setup());

    let (mut sqlite, path) = SqliteOwner::new(&bench, "throughput");
    let mut relay = OutboxRelay::sqlite(&sqlite.outbox, open_sqlite(&path), bench.publisher())
        .unwrap()
        .entity::<Customer>()
        .with_settings(relay_settings(Duration::from_millis(100)));
    let relaying = rt.spawn(async move { relay.run().await });
    let mut group = c.benchmark_group("outbox_sqlite");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Elements(EDITS as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(sqlite.direct(bench.next_revision(), 0)))
                .sum()
        })
    });
    group.bench_function("outbox", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(sqlite.outbox(bench.next_revision(), 10_000)))
                .sum()
        })
    });
    group.finish();
    relaying.abort();

    let mut pg = rt.block_on(PostgresOwner::new(&bench));
    let mut relay = OutboxRelay::postgres(&pg.outbox, POSTGRES, bench.publisher())
        .entity::<Customer>()
        .with_settings(relay_settings(Duration::from_millis(100)));
    let relaying = rt.spawn(async move { relay.run().await });
    let mut group = c.benchmark_group("outbox_postgres");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Elements(EDITS as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(pg.write(bench.next_revision(), true, 20_000)))
                .sum()
        })
    });
    group.bench_function("outbox", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(pg.write(bench.next_revision(), false, 30_000)))
                .sum()
        })
    });
    group.finish();
    relaying.abort();
    pg.phases[0].print("outbox_postgres/direct");
    pg.phases[1].print("outbox_postgres/outbox");

    latency(&rt, &bench, &mut pg);
    rt.block_on(pg.drop_tables());
}

/// Commit → replica-applied latencies of single-edit transactions, p50 and
/// p99: relays woken at once (SQLite by the staging call, PostgreSQL by
/// `NOTIFY`) against relays that only poll (every 100 ms).
fn latency(rt: &Runtime, bench: &Bench, pg: &mut PostgresOwner) {
    // Each run on keys of its own: a new outbox numbers from 1, and the
    // guarded publisher would refuse it under a key the stream holds higher.
    for (what, shared_notifier, base) in [
        ("sqlite/notify", true, 40_000),
        ("sqlite/poll_100ms", false, 50_000),
    ] {
        let (owner, path) = SqliteOwner::new(bench, what.replace('/', "_").as_str());
        // Without the owner's notifier (another `Outbox` value), the relay
        // only polls.
        let relay_outbox = if shared_notifier {
            owner.outbox.clone()
        } else {
            Outbox::new("urn:example:crm")
        };
        let mut relay = OutboxRelay::sqlite(&relay_outbox, open_sqlite(&path), bench.publisher())
            .unwrap()
            .entity::<Customer>()
            .with_settings(relay_settings(Duration::from_millis(100)));
        let relaying = rt.spawn(async move { relay.run().await });
        let mut conn = owner.conn;
        let outbox = owner.outbox;
        let samples = rt.block_on(measure(bench, what, base, |i, revision| {
            let tx = conn.transaction().unwrap();
            outbox.stage(&tx, &customer(i, revision)).unwrap();
            tx.commit().unwrap();
            std::future::ready(())
        }));
        relaying.abort();
        report(what, samples);
    }
    // PostgreSQL: woken by the insert trigger's `NOTIFY`, then (the
    // trigger dropped for the run) by polling alone.
    for (what, base) in [("postgres/notify", 60_000), ("postgres/poll_100ms", 70_000)] {
        let polling = what.ends_with("poll_100ms");
        if polling {
            let t = pg.outbox.table();
            rt.block_on(
                pg.client
                    .batch_execute(&format!("DROP TRIGGER {t}_notify ON {t}")),
            )
            .unwrap();
        }
        let mut relay = OutboxRelay::postgres(&pg.outbox, POSTGRES, bench.publisher())
            .entity::<Customer>()
            .with_settings(relay_settings(Duration::from_millis(100)));
        let relaying = rt.spawn(async move { relay.run().await });
        let client = &mut pg.client;
        let outbox = &pg.outbox;
        let samples = rt.block_on(async {
            let mut follower = Applied::follow(bench, what).await;
            let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
            for i in (0..LATENCY_SAMPLES).map(|i| base + i) {
                let tx = client.transaction().await.unwrap();
                outbox
                    .stage(&tx, &customer(i, bench.next_revision()))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                let committed = Instant::now();
                samples.push(follower.applied(i).await - committed);
                tokio::time::sleep(LATENCY_GAP).await;
            }
            follower.task.abort();
            samples
        });
        relaying.abort();
        if polling {
            rt.block_on(pg.outbox.create_postgres(&mut pg.client))
                .unwrap();
        }
        report(what, samples);
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "latency {what}: commit -> replica applied, p50 {:?}, p99 {:?} ({} samples)",
        at(0.5),
        at(0.99),
        samples.len()
    );
}

/// A replica (in memory) following the state stream with a `Follower`
/// polling back to back, reporting when each key's change was applied.
struct Applied {
    changes: tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Applied {
    async fn follow(bench: &Bench, what: &str) -> Applied {
        let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let mut durable = DurableReplica::<Customer, _>::open(MemoryStore::new())
            .await
            .unwrap();
        durable.on_change(move |change: StateChange<'_, Customer>| {
            let _ = sender.send((change.key.clone(), Instant::now()));
        });
        let name = format!("latency_{}", what.replace('/', "_"));
        let mut settings = FollowSettings::new("OUTBOX_BENCH", name, bench.subjects.clone());
        settings.lease_ttl = None;
        let mut follower = Follower::start(bench.client.clone(), settings, durable)
            .await
            .unwrap();
        // What the throughput runs left in the stream, before measuring.
        follower.catch_up().await.unwrap();
        while changes.try_recv().is_ok() {}
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = follower.poll().await {
                    eprintln!("latency follower: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        Applied { changes, task }
    }

    /// When the replica applied customer `i`'s change.
    async fn applied(&mut self, i: usize) -> Instant {
        let key = customer(i, 0).id;
        loop {
            let (changed, at) = tokio::time::timeout(Duration::from_secs(10), self.changes.recv())
                .await
                .expect("the change applied within 10 s")
                .expect("the follower running");
            if changed == key {
                return at;
            }
        }
    }
}

/// Runs `stage` (a committed single-edit transaction of customer `i`)
/// LATENCY_SAMPLES times and measures each commit → replica applied.
async fn measure<F>(
    bench: &Bench,
    what: &str,
    base: usize,
    mut stage: impl FnMut(usize, u64) -> F,
) -> Vec<Duration>
where
    F: std::future::Future<Output = ()>,
{
    let mut follower = Applied::follow(bench, what).await;
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for i in (0..LATENCY_SAMPLES).map(|i| base + i) {
        stage(i, bench.next_revision()).await;
        let committed = Instant::now();
        samples.push(follower.applied(i).await - committed);
        tokio::time::sleep(LATENCY_GAP).await;
    }
    follower.task.abort();
    samples
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
