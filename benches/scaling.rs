//! Catch-up as the replica grows: 10,000, 100,000 and 1,000,000 distinct
//! keys applied into a fresh `DurableReplica<Customer, _>`, with the
//! in-memory stores (`MemoryStore::new()`, JSON rows, and
//! `MemoryStore::<Customer>::typed()`, states cloned) and with SQLite
//! (`synchronous=NORMAL`, a temp file), through the transport-neutral path:
//! `DurableReplica::apply_batch` of `ecst::consume::Message`s, batches of
//! 1,000, each message built from an encoded envelope and addressed to its
//! entity and key as the NATS follower addresses it. No broker: this is the
//! consumer's own cost, which must grow linearly with the number of keys.
//!
//! Timed: `apply_batch` only (applying and committing each batch), as the
//! CPU time of the thread that runs it (criterion's figures are that CPU
//! time: on a loaded machine, wall clock mostly measures the other
//! processes; with `synchronous=NORMAL` in WAL mode SQLite does not wait
//! for the disk at each commit). The 1M runs print wall clock too. Not
//! timed: encoding the envelopes, which is done one batch at a time so that
//! the bench never holds more than one batch of input (the resident memory
//! it reports is the consumer's), opening the store, dropping the replica.
//!
//! - criterion group `scaling` (`memory/10000`, `memory/100000`, the same
//!   for `memory_typed` and `sqlite_normal`): criterion's usual
//!   repetitions, throughput in keys;
//! - then the 1,000,000-key points, one measured run each (criterion's ten
//!   samples of ~10 s each would take minutes per store), each in a fresh
//!   child process of this binary so that its peak resident memory is its
//!   own; the child prints the time, the cost per event, `VmRSS` from
//!   `/proc/self/status` before the run and at its end (the replica still
//!   held), and the process's peak, `VmHWM`.
//!
//! Run with `cargo bench -p ecst-benches --bench scaling`.
//!
//! `ECST_SCALING_ONCE=<store>:<keys>[,...]` (store `memory`,
//! `memory_typed` or `sqlite_normal`) skips criterion and runs those points
//! once each in this process, in order, printing the same line as the 1M children (the
//! memory figures are then those of the whole sequence: run one point per
//! process to read one point's peak).

#[path = "support/customer.rs"]
mod customer;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use customer::{customer, Customer};
use ecst::consume::Message;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{DurableReplica, MemoryStore, ReplicaStore};
use ecst::{Producer, StateEvent};
use tokio::runtime::Runtime;

/// Messages per `apply_batch` call.
const BATCH: usize = 1_000;
/// The sizes criterion repeats.
const CRITERION_SIZES: [usize; 2] = [10_000, 100_000];
/// The size measured once, in a child process per store.
const LARGE: usize = 1_000_000;
const PREFIX: &str = "bench";
/// Set in a child process: the point it measures.
const ONCE: &str = "ECST_SCALING_ONCE";

/// Which store the replica commits to.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    MemoryTyped,
    SqliteNormal,
}

impl Backend {
    const ALL: [Backend; 3] = [Backend::Memory, Backend::MemoryTyped, Backend::SqliteNormal];

    fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::MemoryTyped => "memory_typed",
            Backend::SqliteNormal => "sqlite_normal",
        }
    }

    fn parse(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// One batch of encoded envelopes: their subjects and payloads, and the
/// stream sequence of the first.
struct Batch {
    first_sequence: u64,
    keys: Vec<String>,
    subjects: Vec<String>,
    payloads: Vec<Vec<u8>>,
}

/// Encodes the envelopes of keys `from..from + n` (customer `i`, revision
/// 1), the stream sequence of key `i` being `i + 1`.
fn encode(producer: &mut Producer<Customer>, from: usize, n: usize) -> Batch {
    let mut batch = Batch {
        first_sequence: from as u64 + 1,
        keys: Vec::with_capacity(n),
        subjects: Vec::with_capacity(n),
        payloads: Vec::with_capacity(n),
    };
    for i in from..from + n {
        let envelope = producer.upsert(customer(i, 1)).unwrap();
        batch.payloads.push(envelope.to_json().unwrap());
        batch
            .subjects
            .push(format!("{PREFIX}.{}.{}", Customer::ENTITY, envelope.key));
        batch.keys.push(envelope.key);
    }
    batch
}

impl Batch {
    /// The messages of the batch, as a transport hands them over.
    fn messages(&self) -> Vec<Message<'_>> {
        (0..self.payloads.len())
            .map(|i| {
                Message::new(
                    self.first_sequence + i as u64,
                    &self.subjects[i],
                    &self.payloads[i],
                )
                .addressed_to(Customer::ENTITY, self.keys[i].as_str())
            })
            .collect()
    }
}

/// Time spent in `apply_batch`: wall clock, and CPU time of this thread
/// (the whole catch-up runs on it: a current-thread runtime, stores that
/// do their work when polled).
#[derive(Clone, Copy, Default)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (its
/// first field, in nanoseconds); zero if unreadable.
fn thread_cpu() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = schedstat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

/// Applies `keys` keys, batch by batch, into a fresh replica on `store`;
/// the time spent in `apply_batch`, and the resident memory (MiB) with the
/// replica still held.
async fn catch_up<S: ReplicaStore<Customer>>(store: S, keys: usize) -> (Spent, u64) {
    let mut replica = DurableReplica::<Customer, S>::open(store)
        .await
        .unwrap_or_else(|_| panic!("opening the store"));
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let mut spent = Spent::default();
    let mut from = 0;
    while from < keys {
        let n = BATCH.min(keys - from);
        let batch = encode(&mut producer, from, n);
        let messages = batch.messages();
        let (start, cpu) = (Instant::now(), thread_cpu());
        let outcome = replica.apply_batch(&messages).await;
        spent.cpu += thread_cpu().saturating_sub(cpu);
        spent.wall += start.elapsed();
        let outcome = outcome.unwrap_or_else(|_| panic!("committing a batch"));
        assert_eq!(outcome.applied.len(), n, "every event of the batch applied");
        assert!(outcome.parked.is_empty());
        from += n;
    }
    assert_eq!(replica.replica().len(), keys);
    assert_eq!(replica.checkpoint().map(|c| c.applied), Some(keys as u64));
    let (held, _) = resident_mib();
    drop(black_box(replica));
    (spent, held)
}

/// A fresh SQLite file per run, removed afterwards.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new(dir: &Path, n: u64) -> TempDb {
        TempDb {
            path: dir.join(format!("replica-{n}.db")),
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Runs one catch-up of `keys` keys into `backend`: the time in
/// `apply_batch`, and `VmRSS` (MiB) at the end with the replica held.
fn run(rt: &Runtime, dir: &Path, n: u64, backend: Backend, keys: usize) -> (Spent, u64) {
    match backend {
        Backend::Memory => rt.block_on(catch_up(MemoryStore::new(), keys)),
        Backend::MemoryTyped => rt.block_on(catch_up(MemoryStore::<Customer>::typed(), keys)),
        Backend::SqliteNormal => {
            let db = TempDb::new(dir, n);
            let store = SqliteStore::open(&db.path, "bench")
                .and_then(SqliteStore::synchronous_normal)
                .unwrap();
            rt.block_on(catch_up(store, keys))
        }
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecst-bench-scaling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `VmRSS` and `VmHWM` of this process, in MiB (0 if unreadable).
fn resident_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let dir = temp_dir();
    let mut n = 0;
    let mut group = c.benchmark_group("scaling");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for backend in Backend::ALL {
        for keys in CRITERION_SIZES {
            group.throughput(Throughput::Elements(keys as u64));
            group.bench_with_input(BenchmarkId::new(backend.name(), keys), &keys, |b, &keys| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            n += 1;
                            run(&rt, &dir, n, backend, keys).0.cpu
                        })
                        .sum()
                })
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);

/// Runs `points` (`<store>:<keys>`, comma-separated) once each, printing
/// time, cost per event and resident memory.
fn once(points: &str) {
    let rt = runtime();
    let dir = temp_dir();
    for (n, point) in points.split(',').map(str::trim).enumerate() {
        let (backend, keys) = point
            .split_once(':')
            .and_then(|(b, k)| Some((Backend::parse(b)?, k.parse::<usize>().ok()?)))
            .unwrap_or_else(|| {
                panic!("`{point}`: expected <memory|memory_typed|sqlite_normal>:<keys>")
            });
        let (rss_before, _) = resident_mib();
        let (spent, rss_held) = run(&rt, &dir, n as u64, backend, keys);
        let (_, hwm) = resident_mib();
        eprintln!(
            "scaling {}/{keys}: CPU {:.3} s, {:.0} ns/event ({:.0} events/s); wall {:.3} s, \
             {:.0} ns/event; VmRSS {rss_before} MiB before, {rss_held} MiB with the replica \
             held, VmHWM {hwm} MiB",
            backend.name(),
            spent.cpu.as_secs_f64(),
            spent.cpu.as_nanos() as f64 / keys as f64,
            keys as f64 / spent.cpu.as_secs_f64(),
            spent.wall.as_secs_f64(),
            spent.wall.as_nanos() as f64 / keys as f64,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The 1M points, one child process each.
fn large_points() {
    let exe = std::env::current_exe().unwrap();
    for backend in Backend::ALL {
        let status = Command::new(&exe)
            .env(ONCE, format!("{}:{LARGE}", backend.name()))
            .status()
            .unwrap();
        assert!(status.success(), "the {} child failed", backend.name());
    }
}

fn main() {
    if let Ok(points) = std::env::var(ONCE) {
        once(&points);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    large_points();
}
