//! Crash test of the two CRM processes against a real nats-server.
//!
//! 1. `crm-owner` publishes 24,000 changes over 20,000 customers (every
//!    customer is created, some are then updated or deleted) and writes its
//!    final state, the truth. The state stream keeps the latest event per
//!    key, so a new consumer catches up over 20,000 events.
//! 2. `crm-consumer` starts catching up into a SQLite replica and is
//!    SIGKILLed at seeded random points, six times: some kills come a
//!    random moment after a chosen amount of progress (mid-batch, mid-commit
//!    or between commit and acknowledgement), others a random moment after
//!    the start (while loading, connecting, creating the consumer). After
//!    every restart the replica must hold at least what the killed process
//!    had reported as committed.
//! 3. A last run catches up with `--until-caught-up --dump`; its replica
//!    must equal the truth entity by entity, and its counter of applied
//!    events must equal that of one clean pass (a second consumer that is
//!    never killed): nothing applied twice, nothing lost.
//!
//! The consumers run with SQLite `synchronous=NORMAL` (`--sync-normal`):
//! in WAL mode a commit is still atomic and survives the death of the
//! process, which is all SIGKILL does; only a power loss or an OS crash
//! could roll back the last commits, and that is not what this test
//! simulates. It keeps the test fast on slow disks.
//!
//! Set `CRM_FAULT_SEED` to replay another sequence of kill points.

#[path = "../../../tests/support/nats_server.rs"]
mod nats_server;
mod support;

use support::{field, forward, line_starting, read_state_lines};

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecst_example_crm::{Customer, Rng};
use nats_server::NatsServer;

const OWNER: &str = env!("CARGO_BIN_EXE_crm-owner");
const CONSUMER: &str = env!("CARGO_BIN_EXE_crm-consumer");

/// Distinct customers, hence events to catch up on.
const KEYS: u64 = 20_000;
/// Changes the owner publishes: every customer is created once, the rest
/// are updates and deletes.
const CHANGES: u64 = 24_000;
/// SIGKILLs during catch-up.
const KILLS: usize = 6;
/// Messages per fetch and commit: small enough for many commit points.
const BATCH: &str = "100";
/// How long to wait for any one line or exit of a child.
const PATIENCE: Duration = Duration::from_secs(90);

#[test]
fn a_consumer_killed_during_catch_up_converges_exactly() {
    let started = Instant::now();
    let seed = std::env::var("CRM_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee_u64);
    let mut rng = Rng::new(seed);
    let server = NatsServer::start();
    let url = server.url();
    let dir = scratch_dir();
    println!("seed={seed} scratch={} nats={url}", dir.display());

    // 1. The owner publishes and writes the truth.
    let truth_path = dir.join("truth.jsonl");
    let owner = run_to_end(
        Command::new(OWNER)
            .args(["--nats", &url, "--seed", "7"])
            .args([
                "--changes",
                &CHANGES.to_string(),
                "--keys",
                &KEYS.to_string(),
            ])
            .arg("--print-truth")
            .arg(&truth_path),
    );
    let owner_out = String::from_utf8_lossy(&owner.stdout).into_owned();
    assert!(
        owner.status.success(),
        "crm-owner failed ({}):\n{owner_out}\n{}",
        owner.status,
        String::from_utf8_lossy(&owner.stderr)
    );
    let summary = line_starting(&owner_out, "summary:");
    let stream = line_starting(&owner_out, "stream:");
    assert_eq!(field(summary, "changes"), CHANGES, "{summary}");
    assert_eq!(field(summary, "duplicates"), 0, "{summary}");
    let stream_messages = field(stream, "messages");
    let last_sequence = field(stream, "last_sequence");
    assert_eq!(
        last_sequence, CHANGES,
        "one stream sequence per change: {stream}"
    );
    let truth = read_state_lines(&truth_path);
    assert_eq!(truth.len() as u64, KEYS, "every customer was created");
    assert_eq!(
        stream_messages,
        truth.len() as u64,
        "the stream keeps the latest event of every key: {stream}"
    );
    println!(
        "owner: {summary} | {stream} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    // 2. Catch up, killed again and again.
    let db = dir.join("replica.db");
    let consumer_args = |db: &Path, durable: &str| -> Vec<String> {
        vec![
            "--nats".into(),
            url.clone(),
            "--db".into(),
            db.display().to_string(),
            "--durable".into(),
            durable.into(),
            "--batch".into(),
            BATCH.into(),
            "--sync-normal".into(),
            "--until-caught-up".into(),
            // A killed consumer's lease expires after this; its restart
            // waits for it.
            "--lease-ttl".into(),
            "1".into(),
        ]
    };
    let catch_up_started = Instant::now();
    // What the last killed process had reported as committed: a progress
    // line is printed only after its batch is committed.
    let mut committed = Counters::default();
    let mut kills = Vec::new();
    for kill in 0..KILLS {
        let mut consumer = Running::spawn(&consumer_args(&db, "faulty"));
        let spawned = Instant::now();
        // Leave enough of the catch-up for the kills still to come.
        let share = (KEYS - committed.applied) / (KILLS - kill + 1) as u64;
        let how = if kill % 2 == 0 {
            // A random moment after a random amount of progress.
            let loaded = Counters::of(consumer.wait_for("replica:"));
            let target = loaded.applied + 1 + rng.below(share);
            let line = consumer.wait_for_progress(target);
            let jitter = rng.below(30);
            thread::sleep(Duration::from_millis(jitter));
            format!(
                "{jitter} ms after {}",
                line.trim_start_matches("progress: ")
            )
        } else {
            // A random moment after the start: connecting, loading the
            // replica, creating the consumer, or the first batches; at the
            // latest once this run's share is done (on a fast machine).
            let delay = Duration::from_millis(rng.below(400));
            match consumer.progress_within(delay, committed.applied + share) {
                None => format!("{} ms after the start", delay.as_millis()),
                Some(line) => format!(
                    "{} ms after the start, at {}",
                    spawned.elapsed().as_millis(),
                    line.trim_start_matches("progress: ")
                ),
            }
        };
        if let Some(status) = consumer.try_exit() {
            panic!(
                "the consumer ended on its own ({status}) before kill {kill}; it must be killed \
                 during catch-up:\n{}",
                consumer.drain().join("\n")
            );
        }
        consumer.kill();
        let lines = consumer.drain();
        // Killed before it printed what it loaded: it committed nothing.
        let loaded = lines
            .iter()
            .find(|l| l.starts_with("replica:"))
            .map(|l| Counters::of(l));
        if let Some(loaded) = loaded {
            assert!(
                loaded.applied >= committed.applied && loaded.checkpoint >= committed.checkpoint,
                "restart {kill} lost committed work: the killed process reported {committed:?}, \
                 the store holds {loaded:?}"
            );
            assert!(
                loaded.applied < KEYS,
                "the replica caught up before kill {kill}; the kills must land during catch-up"
            );
        }
        let reported = lines
            .iter()
            .filter(|l| l.starts_with("progress:"))
            .map(|l| Counters::of(l))
            .next_back()
            .or(loaded)
            .unwrap_or(committed);
        println!(
            "kill {}: loaded {loaded:?}, killed {how}; last committed {reported:?}",
            kill + 1
        );
        kills.push((loaded.unwrap_or(committed), reported));
        committed = reported;
    }

    // 3. The last run catches up and dumps.
    let dump_path = dir.join("dump.jsonl");
    let mut args = consumer_args(&db, "faulty");
    args.extend(["--dump".into(), dump_path.display().to_string()]);
    let last = run_to_end(Command::new(CONSUMER).args(&args));
    let last_out = String::from_utf8_lossy(&last.stdout).into_owned();
    assert!(
        last.status.success(),
        "the last consumer run failed ({}):\n{last_out}\n{}",
        last.status,
        String::from_utf8_lossy(&last.stderr)
    );
    let loaded = Counters::of(line_starting(&last_out, "replica:"));
    assert!(
        loaded.applied >= committed.applied && loaded.checkpoint >= committed.checkpoint,
        "the last restart lost committed work: reported {committed:?}, loaded {loaded:?}"
    );
    assert!(
        loaded.checkpoint > 0,
        "the last run must resume, not start over"
    );
    let done = Counters::of(line_starting(&last_out, "final:"));
    let catch_up_time = catch_up_started.elapsed();
    println!(
        "last run: loaded {loaded:?}, final {done:?}; catch-up with {KILLS} kills took {:.1} s",
        catch_up_time.as_secs_f64()
    );

    // The replica equals the truth, entity by entity.
    let dump = read_state_lines(&dump_path);
    assert_same_state(&truth, &dump);

    // One clean pass, never killed: what "applied exactly once" means.
    let clean_db = dir.join("clean.db");
    let clean_dump = dir.join("clean.jsonl");
    let mut args = consumer_args(&clean_db, "clean");
    args.extend(["--dump".into(), clean_dump.display().to_string()]);
    let clean = run_to_end(Command::new(CONSUMER).args(&args));
    let clean_out = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert!(
        clean.status.success(),
        "the clean pass failed:\n{clean_out}"
    );
    let clean_done = Counters::of(line_starting(&clean_out, "final:"));
    assert_same_state(&truth, &read_state_lines(&clean_dump));
    // In one pass every key's latest event arrives once and inserts (or,
    // for a deleted customer, leaves a tombstone): one change per key.
    assert_eq!(
        clean_done.applied,
        truth.len() as u64,
        "clean pass: {clean_done:?}"
    );

    assert_eq!(
        done.applied, clean_done.applied,
        "the killed consumer applied {} events, one clean pass applies {}: something was \
         applied twice or lost",
        done.applied, clean_done.applied
    );
    assert_eq!(
        done.checkpoint, last_sequence,
        "the checkpoint reached the stream's end"
    );
    assert_eq!(done.parked, 0, "nothing parked");
    assert_eq!(kills.len(), KILLS);
    let mid_batch_kills = kills
        .iter()
        .filter(|(loaded, reported)| reported.applied > loaded.applied)
        .count();
    assert!(
        mid_batch_kills >= KILLS / 2,
        "at least half of the kills must come after some committed progress: {kills:?}"
    );
    println!(
        "ok: {KILLS} kills ({mid_batch_kills} after committed progress), {} events caught up, \
         applied={} (clean pass {}), checkpoint={}, {:.1} s in all",
        truth.len(),
        done.applied,
        clean_done.applied,
        done.checkpoint,
        started.elapsed().as_secs_f64()
    );
    let _ = fs::remove_dir_all(&dir);
}

/// The durable counters a consumer prints: `checkpoint=.. applied=..
/// parked=..`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    checkpoint: u64,
    applied: u64,
    parked: u64,
}

impl Counters {
    fn of(line: &str) -> Self {
        Counters {
            checkpoint: field(line, "checkpoint"),
            applied: field(line, "applied"),
            parked: field(line, "parked"),
        }
    }
}

type States = BTreeMap<String, (u64, Option<Customer>)>;

fn assert_same_state(truth: &States, replica: &States) {
    let missing: Vec<&String> = truth.keys().filter(|k| !replica.contains_key(*k)).collect();
    let extra: Vec<&String> = replica.keys().filter(|k| !truth.contains_key(*k)).collect();
    let differing: Vec<String> = truth
        .iter()
        .filter_map(|(key, expected)| {
            let got = replica.get(key)?;
            (got != expected).then(|| format!("{key}: owner {expected:?}, replica {got:?}"))
        })
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differing.is_empty(),
        "the replica differs from the owner: {} keys missing (first {:?}), {} extra (first {:?}), \
         {} differ, first ones:\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(5).collect::<Vec<_>>(),
        differing.len(),
        differing
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs a command to its end (at most `PATIENCE`), output captured.
fn run_to_end(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    // Read both pipes while waiting, so that a chatty child never blocks.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{command:?} did not finish within {PATIENCE:?}");
            }
            Err(e) => panic!("waiting for {command:?}: {e}"),
        }
    };
    let join = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default()
    };
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A consumer process whose output is read line by line as it comes.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(args: &[String]) -> Self {
        let mut child = Command::new(CONSUMER)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CONSUMER}: {e}"));
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            forward(stdout, "", tx.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            forward(stderr, "stderr: ", tx);
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, or a panic with everything seen so far.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no output from the consumer within {PATIENCE:?}:\n{}",
                    self.seen.join("\n")
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!("the consumer ended ({status}):\n{}", self.seen.join("\n"))
            }
        }
    }

    fn wait_for(&mut self, start: &str) -> &str {
        loop {
            let line = self.next_line();
            if line.starts_with(start) {
                return self.seen.last().map_or("", String::as_str);
            }
            assert!(!line.starts_with("stderr:"), "{}", self.seen.join("\n"));
        }
    }

    /// Waits for a progress line with at least `applied` events applied.
    fn wait_for_progress(&mut self, applied: u64) -> String {
        loop {
            let line = self.wait_for("progress:").to_owned();
            if field(&line, "applied") >= applied {
                return line;
            }
        }
    }

    /// Reads lines for `wait` at most; returns early with a progress line
    /// that has at least `applied` events applied.
    fn progress_within(&mut self, wait: Duration, applied: u64) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with("progress:") && field(&line, "applied") >= applied {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    panic!(
                        "the consumer ended ({status}) before it was killed:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL on Unix: no destructor, no flush, no goodbye.
    fn kill(&mut self) {
        self.child.kill().expect("killing the consumer");
        self.child.wait().expect("reaping the consumer");
    }

    /// Every line printed, once the pipes are closed.
    fn drain(mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// A fresh directory under Cargo's scratch space for integration tests.
fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crm-faults-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Two consumer processes with the same durable name: the second is refused
/// with a clear error while the first runs (before, both ran and split the
/// stream's messages, each replica missing what the other got).
#[test]
fn a_second_consumer_process_on_one_durable_name_is_refused() {
    let server = NatsServer::start();
    let url = server.url();
    let dir = scratch_dir();
    let owner = run_to_end(Command::new(OWNER).args([
        "--nats",
        &url,
        "--seed",
        "3",
        "--changes",
        "200",
        "--keys",
        "100",
    ]));
    assert!(owner.status.success(), "crm-owner failed: {owner:?}");
    let args = |db: &str| -> Vec<String> {
        vec![
            "--nats".into(),
            url.clone(),
            "--durable".into(),
            "twin".into(),
            "--lease-ttl".into(),
            "2".into(),
            "--db".into(),
            dir.join(db).display().to_string(),
        ]
    };
    // The first follows until killed.
    let mut first = Running::spawn(&args("first.db"));
    first.wait_for("caught up:");
    // The second, same name, another replica file: refused, after waiting
    // for the lease (its time to live plus a second).
    let second = run_to_end(Command::new(CONSUMER).args(args("second.db")));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second consumer ran: {second:?}"
    );
    assert!(
        stderr.contains("durable consumer name `twin` is in use"),
        "no clear error: {stderr}"
    );
    assert!(first.try_exit().is_none(), "the first consumer stopped");
    first.kill();
}
