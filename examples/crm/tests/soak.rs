//! Fault-injection soak: the real `crm-owner` and two `crm-consumer`
//! processes, first against one nats-server, then against a 3-node
//! JetStream cluster (three nats-server processes on loopback, the state
//! stream with 3 replicas), under a seeded random schedule of faults:
//!
//! - a consumer SIGKILLed and restarted (its durable-name lease, 1 s, has
//!   to expire before the restart can take it again);
//! - SIGSTOP, then SIGCONT a while later, of a consumer, the owner or a
//!   nats-server (node);
//! - nats-server SIGKILLed and restarted (single server: the server; the
//!   cluster: one node, half the time the stream's leader, frozen with
//!   SIGSTOP/SIGCONT by default and killed and restarted with
//!   `ECST_SOAK_NODE_KILLS=1`, see `node_kills`);
//! - `poll` cancelled: a consumer restarted with `--poll-timeout-ms`,
//!   which drops every poll that takes longer (the poll after a cancelled
//!   one runs to its end, so there is progress);
//! - a foreign publisher (this test, with raw async-nats JetStream
//!   publishes, as a hostile producer would) sending garbage, misaddressed,
//!   oversized, duplicate, same-sequence and future-version events, and
//!   messages on subjects outside the consumers' filter or outside any
//!   stream.
//!
//! The owner publishes with `--publish-retries` (a broker restart fails a
//! publish; the chunk is published again, and what was stored comes back
//! as a duplicate). Consumers that exit on an error (broker trouble for
//! longer than their retries) are restarted, as a supervisor would, and
//! counted (`consumer_error_exits`).
//!
//! What the foreign publisher sends on the owner's keys never has a
//! sequence above the owner's (a publisher with rights on a subject is
//! trusted for it, and would win), nor the owner's current one (a retry of
//! the owner's current event, its acknowledgement lost in a broker restart,
//! would be refused as not newer): same-sequence, future-version, oversized
//! and readable-but-invalid events use a sequence below the owner's current
//! one; misaddressed events are sent on one key with the envelope of
//! another (at a huge sequence: applied, it would show). The guarded
//! publisher reads only the header of the message it would overwrite, so an
//! *invalid* foreign event at or above the owner's sequence blocks the
//! owner's key although every consumer parks it; the soak avoids that on
//! purpose (it is reported, not worked around, in the library). The state stream keeps one message per subject, so a foreign
//! message on an owner key removes the owner's latest event from the
//! stream: a consumer that had not read it yet can no longer get it. After
//! the owner's edits (and before it writes its truth), the test therefore
//! has the owner publish again (`--touch-from-stdin`) every key whose last
//! message in the stream is a foreign one; the other keys get nothing
//! extra. Same-sequence pairs on keys the owner never writes (`f-..`) are
//! published loser first, then the winner of the documented tie-break
//! (replica.rs), and every replica must hold the winner.
//!
//! At the end, after the owner is done and every node is up, each consumer
//! catches up once more (`--until-caught-up --dump`) and:
//!
//! - every key the owner wrote equals the owner's truth in every replica,
//!   the `f-..` keys equal the tie winners, and no other key exists
//!   (`divergences`, must be 0);
//! - every consumer's checkpoint is the stream's last sequence (nothing
//!   lost);
//! - every foreign message is parked with a reason of the expected kind, or
//!   was refused (no stream, over the server's payload limit, a duplicate
//!   message id), or never reached the consumer (outside its filter), or is
//!   gone from the stream (compacted by a later message on its subject);
//!   valid foreign events (duplicates, ties) and the owner's events are
//!   never parked (`unaccounted`, must be 0);
//! - no parked message is pending while its key holds a state at least as
//!   new, or while a later event of the owner on its key was applied
//!   (`stuck`, must be 0).
//!
//! It prints one figure line per broker and one in total:
//! `soak: seed=.. events=.. faults: consumer_kill=.. sigstop=.. broker_kill=..
//! poll_cancel=.. hostile=.. keys=.. divergences=0 ...`.
//!
//! Environment: `ECST_SOAK_SEED` (default 0x50a4), `ECST_SOAK_SECS` (how
//! long the owner publishes, per broker; default 30) or `ECST_SOAK_ROUNDS`
//! (fault rounds per broker; the owner publishes long enough for them),
//! `ECST_SOAK_NODE_KILLS=1` (kill cluster nodes instead of freezing them),
//! `ECST_SOAK_BROKERS` (`single` or `cluster` runs only that part; both by
//! default).
//!
//! On a divergence it prints what is needed to explain it (see
//! `explain_divergence`): the key's truth, the replica's entry and
//! checkpoint, the stream's last message on the key, every message seen
//! published on the key's subject (a plain NATS subscription of the test's
//! own, `Recorder`), the parked messages of the key, and where the
//! consumers' transcripts are (every line each consumer process printed, one
//! file per start, kept in the scratch directory).

#[path = "../../../tests/support/nats_server.rs"]
mod nats_server;
mod support;

use support::{field, forward, line_starting, read_state_lines};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, context::PublishErrorKind};
use ecst::nats::{ServerVersion, StateStream, Subjects};
use ecst::{Envelope, Sequence};
use ecst_example_crm::{customer_id, Customer, Rng};
use nats_server::{NatsCluster, NatsServer};
use tokio::runtime::Runtime;

const OWNER: &str = env!("CARGO_BIN_EXE_crm-owner");
const CONSUMER: &str = env!("CARGO_BIN_EXE_crm-consumer");

const STREAM: &str = "SOAK";
const PREFIX: &str = "soak";
const ENTITY: &str = "customer";
/// Customers the owner writes.
const KEYS: u64 = 300;
/// Edits per second the owner makes.
const RATE: u64 = 100;
/// Seconds the owner publishes, per broker, by default.
const DEFAULT_SECS: u64 = 30;
/// The consumers park payloads above this, unread (`--max-payload`).
const MAX_PAYLOAD: usize = 64 * 1024;
/// Foreign messages per broker at most: resolved parked messages beyond
/// 1,000 per replica are purged (`ParkingLimits`), and the check wants to
/// see every one.
const MAX_HOSTILE: usize = 800;
/// How long to wait for any one expected line or exit.
const PATIENCE: Duration = Duration::from_secs(180);
/// The durable names (and replica files) of the two consumers.
const DURABLES: [&str; 2] = ["alpha", "beta"];

/// Whether cluster nodes are killed and restarted (`ECST_SOAK_NODE_KILLS=1`)
/// rather than frozen (SIGSTOP, then SIGCONT): both take the stream leader
/// away. On by demand only: with SIGKILLed nodes, nats-server 2.9.10
/// (Debian's, what CI runs) does not keep a stream's messages where it
/// acknowledged them. Seen in these runs (`explain_divergence` prints the
/// evidence): acknowledged messages stored again later in the stream
/// (`SERVER RE-STORED`), messages the leader acknowledged at one stream
/// sequence and later holds at another (+1, +2), and a node whose copy of
/// the stream has messages the leader lacks and lacks messages the leader
/// has. A consumer reads its own node's copy and checkpoints by stream
/// sequence, so it can miss a key's last event (the replica keeps an older
/// state) or see a same-sequence pair's loser on top. Before the
/// follower's check against the leader, 7 of 46 runs diverged (seeds 4 and
/// 17 most often); after it, 0 of 30; with frozen nodes none did.
fn node_kills() -> bool {
    std::env::var("ECST_SOAK_NODE_KILLS").is_ok_and(|v| v == "1")
}

#[test]
fn soak_owner_consumers_and_broker_under_faults() {
    let seed = env_u64("ECST_SOAK_SEED").unwrap_or(0x50a4);
    let rounds = env_u64("ECST_SOAK_ROUNDS");
    let secs = env_u64("ECST_SOAK_SECS")
        .unwrap_or_else(|| rounds.map_or(DEFAULT_SECS, |r| (r * 5 / 2).max(DEFAULT_SECS)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    let mut total = Figures::default();
    let mut problems = Vec::new();
    for (index, kind) in [BrokerKind::Single, BrokerKind::Cluster]
        .into_iter()
        .enumerate()
        .filter(|(_, kind)| brokers_wanted(*kind))
    {
        let plan = Plan {
            seed: seed.wrapping_add(index as u64 * 0x9e37),
            secs,
            rounds,
            kind,
        };
        let (figures, found) = run_scenario(&plan, &runtime);
        println!("{}", figures.line(&format!("soak[{}]", kind.label()), seed));
        problems.extend(found.into_iter().map(|p| format!("[{}] {p}", kind.label())));
        total.add(&figures);
    }
    println!(
        "{} elapsed={:.0}s",
        total.line("soak", seed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty() && total.divergences == 0,
        "the soak found {} problem(s) (seed {seed}; replay with ECST_SOAK_SEED={seed}), first \
         ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Whether `ECST_SOAK_BROKERS` (`single`, `cluster`; unset: both) asks for
/// the scenario on `kind`. The seed of each scenario does not depend on it.
fn brokers_wanted(kind: BrokerKind) -> bool {
    match std::env::var("ECST_SOAK_BROKERS").as_deref() {
        Err(_) | Ok("") | Ok("both") => true,
        Ok("single") => kind == BrokerKind::Single,
        Ok("cluster") => kind == BrokerKind::Cluster,
        Ok(other) => panic!("ECST_SOAK_BROKERS={other:?}: expected `single`, `cluster` or `both`"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={text:?}: {e}")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BrokerKind {
    Single,
    Cluster,
}

impl BrokerKind {
    fn label(self) -> &'static str {
        match self {
            BrokerKind::Single => "single",
            BrokerKind::Cluster => "cluster3",
        }
    }
}

struct Plan {
    seed: u64,
    secs: u64,
    rounds: Option<u64>,
    kind: BrokerKind,
}

/// What one run counted.
#[derive(Clone, Debug, Default)]
struct Figures {
    events: u64,
    touched: u64,
    consumer_kill: u64,
    sigstop: u64,
    broker_kill: u64,
    poll_cancel: u64,
    hostile: u64,
    hostile_by_kind: BTreeMap<&'static str, u64>,
    keys: u64,
    divergences: u64,
    parked_ok: u64,
    refused: u64,
    compacted: u64,
    not_delivered: u64,
    valid_foreign: u64,
    unaccounted: u64,
    stuck: u64,
    consumer_error_exits: u64,
    /// Messages the stream holds at another stream sequence than the
    /// server acknowledged when it stored them, after the messages
    /// published after them on their subject (`restored_by_server`).
    restored: u64,
    /// Foreign messages a consumer received under another stream sequence
    /// than the server acknowledged to the publisher (replicas of the
    /// stream numbering differently: a server fault, see `check_replica`).
    renumbered: u64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.events += other.events;
        self.touched += other.touched;
        self.consumer_kill += other.consumer_kill;
        self.sigstop += other.sigstop;
        self.broker_kill += other.broker_kill;
        self.poll_cancel += other.poll_cancel;
        self.hostile += other.hostile;
        for (kind, count) in &other.hostile_by_kind {
            *self.hostile_by_kind.entry(kind).or_default() += count;
        }
        self.keys += other.keys;
        self.divergences += other.divergences;
        self.parked_ok += other.parked_ok;
        self.refused += other.refused;
        self.compacted += other.compacted;
        self.not_delivered += other.not_delivered;
        self.valid_foreign += other.valid_foreign;
        self.unaccounted += other.unaccounted;
        self.stuck += other.stuck;
        self.consumer_error_exits += other.consumer_error_exits;
        self.renumbered += other.renumbered;
        self.restored += other.restored;
    }

    fn line(&self, tag: &str, seed: u64) -> String {
        let kinds = self
            .hostile_by_kind
            .iter()
            .map(|(kind, count)| format!("{kind}:{count}"))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{tag}: seed={seed} events={} faults: consumer_kill={} sigstop={} broker_kill={} \
             poll_cancel={} hostile={} ({kinds}) keys={} divergences={} | parked={} refused={} \
             compacted={} not_delivered={} valid_foreign={} unaccounted={} stuck={} touched={} \
             consumer_error_exits={} renumbered={} restored={}",
            self.events,
            self.consumer_kill,
            self.sigstop,
            self.broker_kill,
            self.poll_cancel,
            self.hostile,
            self.keys,
            self.divergences,
            self.parked_ok,
            self.refused,
            self.compacted,
            self.not_delivered,
            self.valid_foreign,
            self.unaccounted,
            self.stuck,
            self.touched,
            self.consumer_error_exits,
            self.renumbered,
            self.restored,
        )
    }
}

// ---------------------------------------------------------------------------
// The broker: one server or a cluster.

enum Broker {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Broker {
    fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Single => Broker::Single(NatsServer::start()),
            BrokerKind::Cluster => Broker::Cluster(NatsCluster::start(3)),
        }
    }

    fn replicas(&self) -> usize {
        match self {
            Broker::Single(_) => 1,
            Broker::Cluster(cluster) => cluster.size(),
        }
    }

    fn urls(&self) -> Vec<String> {
        match self {
            Broker::Single(server) => vec![server.url()],
            Broker::Cluster(cluster) => cluster.urls(),
        }
    }

    /// A URL of a node that runs, for a process starting now.
    fn url_for(&mut self, rng: &mut Rng) -> String {
        match self {
            Broker::Single(server) => server.url(),
            Broker::Cluster(cluster) => {
                let running: Vec<usize> = (0..cluster.size())
                    .filter(|&i| cluster.is_running(i))
                    .collect();
                let pick = running
                    .get(rng.below(running.len() as u64) as usize)
                    .copied()
                    .unwrap_or(0);
                cluster.url(pick)
            }
        }
    }

    fn logs(&self) -> String {
        match self {
            Broker::Single(server) => server.log(),
            Broker::Cluster(cluster) => cluster.logs(),
        }
    }
}

// ---------------------------------------------------------------------------
// Child processes.

/// A child process whose output is read line by line as it comes.
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// The last lines seen (bounded), for diagnostics.
    seen: Vec<String>,
    /// Every line seen, for the diagnosis of a divergence.
    transcript: Option<fs::File>,
}

impl Proc {
    /// Starts `program`; every line it prints is also written to
    /// `transcript`, if given.
    fn spawn(
        program: &str,
        args: &[String],
        label: String,
        with_stdin: bool,
        transcript: Option<&Path>,
    ) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            forward(stdout, "", tx.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            forward(stderr, "stderr: ", tx);
        }
        let stdin = child.stdin.take();
        let transcript = transcript.and_then(|path| {
            let mut file = fs::File::create(path).ok()?;
            let _ = writeln!(file, "{program} {}", args.join(" "));
            Some(file)
        });
        Proc {
            label,
            child,
            stdin,
            lines,
            seen: Vec::new(),
            transcript,
        }
    }

    fn remember(&mut self, line: &str) {
        if let Some(file) = self.transcript.as_mut() {
            let _ = writeln!(file, "{line}");
        }
        if self.seen.len() >= 400 {
            self.seen.drain(..200);
        }
        self.seen.push(line.to_owned());
    }

    /// The lines printed since the last call, without waiting.
    fn new_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    self.remember(&line);
                    out.push(line);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }

    /// Waits for a line starting with `start`.
    fn wait_for(&mut self, start: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.remember(&line);
                    if line.starts_with(start) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line starting with {start:?} within {PATIENCE:?}:\n{}",
                    self.label,
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    panic!(
                        "{} ended ({status}) before printing {start:?}:\n{}",
                        self.label,
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every remaining line, once the process has ended.
    fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.remember(&line);
            out.push(line);
        }
        out
    }
}

/// `kill -<signal> <pid>`, for a process this test started.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("running kill -{name} {pid}: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

/// Runs a command to its end (at most `PATIENCE`), output captured.
fn run_to_end(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = child
        .stdout
        .take()
        .map(|p| read_all(Box::new(p) as Box<dyn Read + Send>));
    let stderr = child
        .stderr
        .take()
        .map(|p| read_all(Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let status = child.wait();
                break status.unwrap_or_else(|e| panic!("reaping {command:?}: {e}"));
            }
            Err(e) => panic!("waiting for {command:?}: {e}"),
        }
    };
    let join = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default()
    };
    if Instant::now() >= deadline {
        let out = String::from_utf8_lossy(&join(stdout)).into_owned();
        let lines: Vec<&str> = out.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        panic!(
            "{command:?} did not finish within {PATIENCE:?} (killed); its last output:\n{tail}\n\
             --- stderr ---\n{}",
            String::from_utf8_lossy(&join(stderr))
        );
    }
    Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

// ---------------------------------------------------------------------------
// The consumers, supervised.

struct ConsumerSlot {
    durable: &'static str,
    db: PathBuf,
    proc: Option<Proc>,
    /// When to start it again (after a kill or an error exit).
    restart_at: Option<Instant>,
    /// `--poll-timeout-ms` for the next start.
    next_poll_timeout: Option<u64>,
    cancels: u64,
    error_exits: Vec<String>,
    starts: u64,
}

impl ConsumerSlot {
    fn new(durable: &'static str, dir: &Path) -> Self {
        ConsumerSlot {
            durable,
            db: dir.join(format!("{durable}.db")),
            proc: None,
            restart_at: Some(Instant::now()),
            next_poll_timeout: None,
            cancels: 0,
            error_exits: Vec::new(),
            starts: 0,
        }
    }

    fn args(&self, url: &str) -> Vec<String> {
        [
            "--nats",
            url,
            "--db",
            &self.db.display().to_string(),
            "--durable",
            self.durable,
            "--sync-normal",
            "--lease-ttl",
            "1",
            "--max-payload",
            &MAX_PAYLOAD.to_string(),
            "--stream",
            STREAM,
            "--prefix",
            PREFIX,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn start(&mut self, url: &str, rng: &mut Rng) {
        let mut args = self.args(url);
        let batch = [10u64, 50, 100, 256][rng.below(4) as usize];
        args.extend(["--batch".into(), batch.to_string()]);
        if let Some(millis) = self.next_poll_timeout.take() {
            args.extend(["--poll-timeout-ms".into(), millis.to_string()]);
        }
        self.starts += 1;
        let transcript = self.db.with_file_name(format!(
            "consumer-{}-start-{:03}.log",
            self.durable, self.starts
        ));
        self.proc = Some(Proc::spawn(
            CONSUMER,
            &args,
            format!("consumer {} (start {})", self.durable, self.starts),
            false,
            Some(&transcript),
        ));
        self.restart_at = None;
    }

    /// Reads its output; notices an exit of its own and schedules a restart.
    fn supervise(&mut self, broker: &mut Broker, rng: &mut Rng) {
        if let Some(proc) = self.proc.as_mut() {
            for line in proc.new_lines() {
                if line.starts_with("poll cancelled:") {
                    self.cancels += 1;
                }
            }
            if let Some(status) = proc.exited() {
                let rest = proc.rest();
                self.cancels += rest
                    .iter()
                    .filter(|l| l.starts_with("poll cancelled:"))
                    .count() as u64;
                let why = proc
                    .seen
                    .iter()
                    .rev()
                    .find(|l| l.starts_with("stderr:"))
                    .cloned()
                    .unwrap_or_default();
                self.error_exits
                    .push(format!("{} exited ({status}): {why}", proc.label));
                self.proc = None;
                self.restart_at = Some(Instant::now() + Duration::from_millis(500));
            }
        }
        if self.proc.is_none() && self.restart_at.is_some_and(|at| at <= Instant::now()) {
            let url = broker.url_for(rng);
            self.start(&url, rng);
        }
    }

    /// SIGKILL; the supervisor starts it again after `delay`.
    fn kill(&mut self, delay: Duration) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
            self.cancels += proc
                .new_lines()
                .iter()
                .chain(proc.rest().iter())
                .filter(|l| l.starts_with("poll cancelled:"))
                .count() as u64;
        }
        self.restart_at = Some(Instant::now() + delay);
    }
}

// ---------------------------------------------------------------------------
// One scenario.

fn run_scenario(plan: &Plan, runtime: &Runtime) -> (Figures, Vec<String>) {
    let scenario_started = Instant::now();
    let mut rng = Rng::new(plan.seed);
    let mut figures = Figures::default();
    let mut broker = Broker::start(plan.kind);
    let urls = broker.urls();
    let dir = scratch_dir(plan.kind.label());
    println!(
        "soak[{}]: seed={} secs={} rounds={:?} nats={} scratch={}",
        plan.kind.label(),
        plan.seed,
        plan.secs,
        plan.rounds,
        urls.join(","),
        dir.display()
    );

    // The test's own connection: the stream (created here, so that the
    // cluster's JetStream is known to be up), reads, the foreign publisher.
    let (client, js) = runtime.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .name("soak-test")
            .connect(urls.as_slice())
            .await
            .expect("connecting the test's client");
        let js = jetstream::new(client.clone());
        let server = ServerVersion::of(&client).expect("the server's version");
        let mut stream = StateStream::new(STREAM, Subjects::new(PREFIX).expect("prefix"));
        stream.replicas = broker.replicas();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match stream.ensure(&js, server).await {
                Ok(_) => break,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("soak: stream not created yet ({error}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!(
                    "creating the stream with {} replicas: {error}\n{}",
                    stream.replicas,
                    broker.logs()
                ),
            }
        }
        (client, js)
    });

    // The stream's history, read as it grows (see `History`).
    let history = Arc::new(std::sync::Mutex::new(History::default()));
    let reading = Arc::new(AtomicBool::new(true));
    let history_reader = runtime.spawn(read_history(
        js.clone(),
        Arc::clone(&history),
        Arc::clone(&reading),
    ));

    // The owner.
    let changes = RATE * plan.secs;
    let truth_path = dir.join("truth.jsonl");
    let owner_url = broker.url_for(&mut rng);
    let owner_args: Vec<String> = vec![
        "--nats".into(),
        owner_url,
        "--seed".into(),
        plan.seed.to_string(),
        "--changes".into(),
        changes.to_string(),
        "--keys".into(),
        KEYS.to_string(),
        "--rate".into(),
        RATE.to_string(),
        "--print-truth".into(),
        truth_path.display().to_string(),
        "--stream".into(),
        STREAM.into(),
        "--prefix".into(),
        PREFIX.into(),
        "--replicas".into(),
        broker.replicas().to_string(),
        "--publish-retries".into(),
        // A minute of retries: enough for any broker restart here; a
        // publish refused for good ends the owner (and the test) soon.
        "120".into(),
        "--touch-from-stdin".into(),
    ];
    let mut owner = Proc::spawn(
        OWNER,
        &owner_args,
        "crm-owner".into(),
        true,
        Some(&dir.join("owner.log")),
    );
    owner.wait_for("owner: nats=");

    let mut consumers: Vec<ConsumerSlot> = DURABLES
        .iter()
        .map(|d| ConsumerSlot::new(d, &dir))
        .collect();
    for consumer in &mut consumers {
        consumer.supervise(&mut broker, &mut rng);
    }

    // The foreign publisher.
    let stop = Arc::new(AtomicBool::new(false));
    let hostile = runtime.spawn(hostile_publisher(
        js.clone(),
        plan.seed ^ 0x0bad,
        Arc::clone(&stop),
    ));

    // The fault schedule, until the owner has made its edits.
    let mut round = 0u64;
    let mut owner_done = false;
    let supervise = |consumers: &mut Vec<ConsumerSlot>,
                     broker: &mut Broker,
                     rng: &mut Rng,
                     owner: &mut Proc,
                     owner_done: &mut bool| {
        for consumer in consumers.iter_mut() {
            consumer.supervise(broker, rng);
        }
        for line in owner.new_lines() {
            if line.starts_with("owner: reading customer ids") {
                *owner_done = true;
            }
        }
        if let Some(status) = owner.exited() {
            owner.rest();
            panic!(
                "crm-owner ended ({status}) during the soak:\n{}\n--- broker ---\n{}",
                owner.seen.join("\n"),
                broker.logs()
            );
        }
    };
    // Sleeps `total`, supervising every 100 ms.
    let pause = |total: Duration,
                 consumers: &mut Vec<ConsumerSlot>,
                 broker: &mut Broker,
                 rng: &mut Rng,
                 owner: &mut Proc,
                 owner_done: &mut bool| {
        let until = Instant::now() + total;
        loop {
            supervise(consumers, broker, rng, owner, owner_done);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(Duration::from_millis(100)));
        }
    };
    while !owner_done {
        let gap = Duration::from_millis(300 + rng.below(1200));
        pause(
            gap,
            &mut consumers,
            &mut broker,
            &mut rng,
            &mut owner,
            &mut owner_done,
        );
        if owner_done || plan.rounds.is_some_and(|r| round >= r) {
            continue;
        }
        round += 1;
        let roll = rng.below(100);
        match roll {
            0..=29 => {
                let i = rng.below(consumers.len() as u64) as usize;
                let delay = Duration::from_millis(rng.below(1500));
                consumers[i].kill(delay);
                figures.consumer_kill += 1;
                println!(
                    "soak[{}]: round {round}: SIGKILL consumer {}, restart in {} ms",
                    plan.kind.label(),
                    consumers[i].durable,
                    delay.as_millis()
                );
            }
            30..=54 => {
                let stopped_for = Duration::from_millis(200 + rng.below(2800));
                let target = rng.below(100);
                let (pid, what) = if target < 70 {
                    let i = rng.below(consumers.len() as u64) as usize;
                    match consumers[i].proc.as_ref() {
                        Some(proc) => (
                            Some(proc.pid()),
                            format!("consumer {}", consumers[i].durable),
                        ),
                        None => (None, String::new()),
                    }
                } else if target < 85 {
                    (Some(owner.pid()), "the owner".to_owned())
                } else {
                    match &mut broker {
                        Broker::Single(server) => (server.pid(), "nats-server".to_owned()),
                        Broker::Cluster(cluster) => {
                            let i = rng.below(cluster.size() as u64) as usize;
                            (cluster.pid(i), format!("node {i}"))
                        }
                    }
                };
                if let Some(pid) = pid {
                    signal(pid, "STOP");
                    figures.sigstop += 1;
                    println!(
                        "soak[{}]: round {round}: SIGSTOP {what} for {} ms",
                        plan.kind.label(),
                        stopped_for.as_millis()
                    );
                    // While it is stopped, only watch the others' output: a
                    // supervisor restart of a stopped consumer is not wanted.
                    thread::sleep(stopped_for);
                    signal(pid, "CONT");
                }
            }
            55..=74 => {
                let down_for = Duration::from_millis(rng.below(2500));
                match &mut broker {
                    Broker::Single(server) => {
                        server.stop();
                        thread::sleep(down_for);
                        server.restart();
                        println!(
                            "soak[{}]: round {round}: SIGKILL nats-server, restarted after {} ms",
                            plan.kind.label(),
                            down_for.as_millis()
                        );
                    }
                    Broker::Cluster(cluster) => {
                        let leader = if rng.chance(50) {
                            runtime.block_on(stream_leader(&js))
                        } else {
                            None
                        };
                        let i = leader
                            .as_deref()
                            .and_then(|name| cluster.index_of(name))
                            .unwrap_or_else(|| rng.below(cluster.size() as u64) as usize);
                        // A frozen node loses its leadership as a killed
                        // one does; killing and restarting nodes is on
                        // demand (ECST_SOAK_NODE_KILLS=1), see the module
                        // documentation.
                        let how = if node_kills() {
                            cluster.kill(i);
                            thread::sleep(down_for);
                            cluster.restart(i);
                            "SIGKILL"
                        } else if let Some(pid) = cluster.pid(i) {
                            signal(pid, "STOP");
                            thread::sleep(down_for);
                            signal(pid, "CONT");
                            "SIGSTOP"
                        } else {
                            "(not running)"
                        };
                        println!(
                            "soak[{}]: round {round}: {how} node {i}{}, back after {} ms",
                            plan.kind.label(),
                            if leader.is_some() {
                                " (the stream leader)"
                            } else {
                                ""
                            },
                            down_for.as_millis()
                        );
                    }
                }
                figures.broker_kill += 1;
            }
            _ => {
                // Poll cancellation: restart a consumer with a poll timeout.
                let i = rng.below(consumers.len() as u64) as usize;
                let millis = 10 + rng.below(300);
                consumers[i].kill(Duration::ZERO);
                consumers[i].next_poll_timeout = Some(millis);
                println!(
                    "soak[{}]: round {round}: consumer {} restarted with --poll-timeout-ms {millis}",
                    plan.kind.label(),
                    consumers[i].durable
                );
            }
        }
    }
    println!(
        "soak[{}]: the owner made its edits after {:.0} s and {round} fault rounds",
        plan.kind.label(),
        scenario_started.elapsed().as_secs_f64()
    );

    // The foreign publisher stops; every node runs.
    stop.store(true, Ordering::SeqCst);
    let log = runtime
        .block_on(hostile)
        .expect("the foreign publisher panicked");
    if let Broker::Cluster(cluster) = &mut broker {
        for i in 0..cluster.size() {
            if !cluster.is_running(i) {
                cluster.restart(i);
            }
        }
    }
    runtime.block_on(wait_stream_healthy(&js, &broker));

    // The owner publishes again the keys whose last message is foreign,
    // then writes its truth.
    let hostile_seqs: HashMap<u64, usize> = log
        .sent
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.stored().map(|seq| (seq, i)))
        .collect();
    let touch = runtime.block_on(keys_to_touch(&js, &log, &hostile_seqs));
    {
        let mut stdin = owner.stdin.take().expect("the owner's stdin");
        for key in &touch {
            writeln!(stdin, "{key}").expect("writing to the owner's stdin");
        }
        // Dropped: end of input.
    }
    let owner_deadline = Instant::now() + PATIENCE;
    let owner_status = loop {
        for consumer in consumers.iter_mut() {
            consumer.supervise(&mut broker, &mut rng);
        }
        owner.new_lines();
        if let Some(status) = owner.exited() {
            break status;
        }
        assert!(
            Instant::now() < owner_deadline,
            "crm-owner did not finish:\n{}",
            owner.seen.join("\n")
        );
        thread::sleep(Duration::from_millis(100));
    };
    owner.rest();
    let owner_out = owner.seen.join("\n");
    assert!(
        owner_status.success(),
        "crm-owner failed ({owner_status}):\n{owner_out}"
    );
    let summary = line_starting(&owner_out, "summary:").to_owned();
    let touched = field(line_starting(&owner_out, "touch:"), "published");
    figures.events = field(&summary, "changes") + touched;
    figures.touched = touched;
    let truth = read_state_lines(&truth_path);
    println!(
        "soak[{}]: owner {summary}; touched {touched} keys",
        plan.kind.label()
    );

    // Every consumer stops following and catches up once more.
    for consumer in &mut consumers {
        consumer.supervise(&mut broker, &mut rng);
        consumer.kill(Duration::ZERO);
        consumer.restart_at = None;
    }
    runtime.block_on(wait_stream_healthy(&js, &broker));
    let (last_sequence, in_stream) = runtime.block_on(stream_facts(&js, &log));
    for line in runtime.block_on(restored_by_server(&js, &log)) {
        figures.restored += 1;
        println!("soak[{}]: {line}", plan.kind.label());
    }
    let mut replicas = Vec::new();
    for consumer in &consumers {
        let dump_path = dir.join(format!("{}.jsonl", consumer.durable));
        let mut attempts = Vec::new();
        let output = loop {
            let url = broker.url_for(&mut rng);
            let mut args = consumer.args(&url);
            args.extend([
                "--until-caught-up".into(),
                "--dump".into(),
                dump_path.display().to_string(),
            ]);
            let output = run_to_end(Command::new(CONSUMER).args(&args));
            let _ = fs::write(
                dir.join(format!(
                    "consumer-{}-final-{}.log",
                    consumer.durable,
                    attempts.len() + 1
                )),
                [
                    format!("{CONSUMER} {}\n", args.join(" ")).into_bytes(),
                    output.stdout.clone(),
                    b"--- stderr ---\n".to_vec(),
                    output.stderr.clone(),
                ]
                .concat(),
            );
            if output.status.success() {
                break output;
            }
            attempts.push(format!(
                "{}:\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
            if attempts.len() >= 5 {
                let logs = dir.join("nats-server-logs.txt");
                let _ = fs::write(&logs, broker.logs());
                panic!(
                    "the final catch-up of {} failed {} times (server logs in {}):\n{}",
                    consumer.durable,
                    attempts.len(),
                    logs.display(),
                    attempts.join("\n---\n")
                );
            }
            thread::sleep(Duration::from_secs(1));
        };
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        replicas.push(FinalReplica {
            durable: consumer.durable,
            dump: read_state_lines(&dump_path),
            parked: parked_lines(&out),
            checkpoint: field(line_starting(&out, "final:"), "checkpoint"),
        });
    }
    for consumer in &consumers {
        figures.poll_cancel += consumer.cancels;
        figures.consumer_error_exits += consumer.error_exits.len() as u64;
        for exit in &consumer.error_exits {
            println!("soak[{}]: {exit}", plan.kind.label());
        }
    }

    // The checks.
    let last_owner_message = runtime.block_on(last_messages(&js, &truth));
    let mut problems = Vec::new();
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for h in &log.sent {
        if let Sent::Refused(why) = &h.sent {
            // The reason without the numbers that vary.
            let class: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
            *refusals.entry(format!("{}: {class}", h.kind)).or_default() += 1;
        }
    }
    for (why, count) in &refusals {
        println!("soak[{}]: refused x{count}: {why}", plan.kind.label());
    }
    figures.hostile = log.sent.len() as u64;
    figures.refused = log.sent.iter().filter(|h| h.stored().is_none()).count() as u64;
    for h in &log.sent {
        *figures.hostile_by_kind.entry(h.kind).or_default() += 1;
    }
    for replica in &replicas {
        let mut divergent = check_replica(
            replica,
            &truth,
            &log,
            &hostile_seqs,
            &in_stream,
            &last_owner_message,
            last_sequence,
            &mut figures,
            &mut problems,
        );
        divergent.dedup();
        for key in divergent.iter().take(5) {
            let explained = runtime.block_on(explain_divergence(
                &js, &history, key, replica, &truth, &log, &dir,
            ));
            println!("{explained}");
            let _ = fs::write(
                dir.join(format!("divergence-{}-{key}.txt", replica.durable)),
                &explained,
            );
        }
    }
    reading.store(false, Ordering::SeqCst);
    let _ = runtime.block_on(history_reader);
    // nats-server 2.9 clusters can number a stream's messages differently
    // on different replicas after nodes are killed (a consumer's checkpoint
    // then differs from the leader's last sequence), or move messages after
    // acknowledging them (`restored`). The accounting of
    // foreign messages by stream sequence is then unreliable; the replicas'
    // state (divergences) and nothing stuck remain hard checks, the rest is
    // reported as a warning. Never on a single server.
    let renumbered = plan.kind == BrokerKind::Cluster
        && (figures.renumbered > 0
            || figures.restored > 0
            || replicas.iter().any(|r| r.checkpoint != last_sequence));
    if renumbered {
        let (hard, soft): (Vec<String>, Vec<String>) = problems
            .drain(..)
            .partition(|p| p.contains(": key ") || p.contains("still pending"));
        for p in &soft {
            println!(
                "soak: WARNING [{}] (stream sequences differ between cluster replicas, a \
                 nats-server 2.9 clustering fault; accounting by sequence is unreliable): {p}",
                plan.kind.label()
            );
        }
        figures.renumbered = figures.renumbered.max(1);
        problems = hard;
    }
    drop(client);
    if !problems.is_empty() || figures.renumbered > 0 {
        let logs = dir.join("nats-server-logs.txt");
        let _ = fs::write(&logs, broker.logs());
        println!(
            "soak[{}]: server logs kept in {}",
            plan.kind.label(),
            logs.display()
        );
    }
    if problems.is_empty() && figures.renumbered == 0 {
        let _ = fs::remove_dir_all(&dir);
    } else if problems.is_empty() {
        println!(
            "soak[{}]: scratch kept: {}",
            plan.kind.label(),
            dir.display()
        );
    } else {
        problems.push(format!("scratch kept: {}", dir.display()));
    }
    (figures, problems)
}

struct FinalReplica {
    durable: &'static str,
    dump: States,
    parked: BTreeMap<u64, ParkedLine>,
    checkpoint: u64,
}

#[derive(Debug)]
struct ParkedLine {
    key: Option<String>,
    kind: String,
    status: String,
    reason: String,
}

/// The `parked: stream_sequence=.. key=.. kind=.. status=.. reason=..`
/// lines a consumer prints at its end.
fn parked_lines(out: &str) -> BTreeMap<u64, ParkedLine> {
    let mut parked = BTreeMap::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("parked: stream_sequence=") else {
            continue;
        };
        if !rest.contains(" kind=") {
            continue; // a progress line of the run, not the final list
        }
        let (sequence, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let rest = rest.strip_prefix("key=").unwrap_or(rest);
        let (key, rest) = rest.split_once(" kind=").unwrap_or((rest, ""));
        let (kind, rest) = rest.split_once(" status=").unwrap_or((rest, ""));
        let (status, reason) = rest.split_once(" reason=").unwrap_or((rest, ""));
        parked.insert(
            sequence
                .parse()
                .unwrap_or_else(|_| panic!("parked line {line:?}")),
            ParkedLine {
                key: (key != "?").then(|| key.to_owned()),
                kind: kind.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
            },
        );
    }
    parked
}

#[allow(clippy::too_many_arguments)]
fn check_replica(
    replica: &FinalReplica,
    truth: &States,
    log: &HostileLog,
    hostile_seqs: &HashMap<u64, usize>,
    in_stream: &BTreeSet<u64>,
    last_owner_message: &HashMap<String, u64>,
    last_sequence: u64,
    figures: &mut Figures,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let name = replica.durable;
    // Keys to explain: divergent, or with a stuck parked message.
    let mut divergent = Vec::new();
    // A message parked under a stream sequence the publisher was not told:
    // found by its unique subject or key. Seen with nats-server 2.9.10 in
    // the cluster after SIGKILLed nodes: the replica a consumer reads from
    // numbers messages differently from the stream leader.
    let renumbered_as = |h: &Hostile| -> Option<u64> {
        let unique_key = h.key.as_deref().filter(|k| k.starts_with("h-"));
        replica
            .parked
            .iter()
            .find(|(seq, p)| {
                !hostile_seqs.contains_key(seq)
                    && (p.reason.contains(&format!("`{}`", h.subject))
                        || (unique_key.is_some() && p.key.as_deref() == unique_key))
            })
            .map(|(seq, _)| *seq)
    };
    let mut renumbered_here: BTreeMap<u64, u64> = BTreeMap::new();
    // 1. The state: the owner's keys, the tie keys, nothing else.
    for (key, expected) in truth.iter().chain(log.ties.iter()) {
        figures.keys += 1;
        if replica.dump.get(key) != Some(expected) {
            figures.divergences += 1;
            divergent.push(key.clone());
            problems.push(format!(
                "{name}: key {key}: expected {expected:?}, the replica holds {:?}",
                replica.dump.get(key)
            ));
        }
    }
    for (key, held) in &replica.dump {
        if !truth.contains_key(key) && !log.ties.contains_key(key) {
            figures.divergences += 1;
            divergent.push(key.clone());
            problems.push(format!(
                "{name}: key {key} is nobody's, yet the replica holds {held:?}"
            ));
        }
    }
    // 3. Every foreign message is accounted for.
    for h in &log.sent {
        let Some(seq) = h.stored() else {
            continue; // refused: counted once, below
        };
        let parked = replica.parked.get(&seq);
        // What the consumer parked under this message's stream sequence is
        // another message (another key): the consumer's copy of the stream
        // numbers messages differently from the acknowledgements.
        let another = parked.is_some_and(|p| p.key.is_some() && p.key != h.key);
        if another {
            // A problem on a single server; in a cluster a warning, as the
            // rest of the accounting by sequence (see `run_scenario`).
            figures.renumbered += 1;
            problems.push(format!(
                "{name}: stream message {seq} was acknowledged to the publisher for foreign {} \
                 #{} ({}), and the consumer parked another message under it: {parked:?}",
                h.kind, h.n, h.subject
            ));
            continue;
        }
        match (&h.expect, parked) {
            (Expect::Park(kinds), Some(p)) => {
                if kinds.contains(&p.kind.as_str()) && !p.reason.trim().is_empty() {
                    figures.parked_ok += 1;
                } else {
                    figures.unaccounted += 1;
                    problems.push(format!(
                        "{name}: foreign {} #{} (stream {seq}, {}) parked as {:?} ({}), \
                         expected one of {kinds:?}",
                        h.kind, h.n, h.subject, p.kind, p.reason
                    ));
                }
            }
            (Expect::Park(_), None) if !in_stream.contains(&seq) => figures.compacted += 1,
            (Expect::Park(_), None) if renumbered_as(h).is_some() => {
                let other = renumbered_as(h).unwrap_or_default();
                renumbered_here.insert(other, seq);
                figures.renumbered += 1;
                println!(
                    "soak: WARNING {name}: foreign {} #{} ({}) was acknowledged to the publisher \
                     as stream message {seq} and reached the consumer as stream message {other}",
                    h.kind, h.n, h.subject
                );
            }
            (Expect::Park(_), None) => {
                figures.unaccounted += 1;
                problems.push(format!(
                    "{name}: foreign {} #{} (stream {seq}, {}) is still in the stream but \
                     neither parked nor applied",
                    h.kind, h.n, h.subject
                ));
            }
            (Expect::Valid, None) => figures.valid_foreign += 1,
            (Expect::NotDelivered, None) => figures.not_delivered += 1,
            (Expect::Valid | Expect::NotDelivered, Some(p)) => {
                figures.unaccounted += 1;
                problems.push(format!(
                    "{name}: foreign {} #{} (stream {seq}, {}) should not be parked, but is: \
                     {p:?}",
                    h.kind, h.n, h.subject
                ));
            }
        }
    }
    // 4. Nothing else parked (an owner's event, say), and nothing stuck.
    // 2. Nothing lost: the checkpoint is the end of the stream.
    if replica.checkpoint != last_sequence {
        if renumbered_here.is_empty() {
            problems.push(format!(
                "{name}: checkpoint {} after the final catch-up, the stream ends at \
                 {last_sequence}",
                replica.checkpoint
            ));
        } else {
            println!(
                "soak: WARNING {name}: checkpoint {} after the final catch-up, the stream leader \
                 says it ends at {last_sequence} (the consumer's replica numbers messages \
                 differently, see above)",
                replica.checkpoint
            );
        }
    }
    for (seq, p) in &replica.parked {
        if renumbered_here.contains_key(seq) {
            continue;
        }
        let Some(&index) = hostile_seqs.get(seq) else {
            // A key only the foreign publisher writes: a second copy of one
            // of its messages, stored by the server under a sequence it did
            // not acknowledge (a retry after a lost acknowledgement that the
            // duplicate window did not catch across a leader change). A
            // warning in the cluster, as renumbering (`renumbered`).
            let foreign_key = p.key.as_deref().is_some_and(|key| {
                (key.starts_with("h-") || key.starts_with("f-"))
                    && log.sent.iter().any(|h| h.key.as_deref() == Some(key))
            });
            if foreign_key {
                figures.renumbered += 1;
            } else {
                figures.unaccounted += 1;
            }
            problems.push(format!(
                "{name}: stream message {seq} is parked but was not sent by the foreign \
                 publisher: {p:?}"
            ));
            continue;
        };
        if p.status != "pending" {
            continue;
        }
        let h = &log.sent[index];
        let Some(key) = p.key.as_deref() else {
            continue; // no key: nothing can supersede it
        };
        let held = replica.dump.get(key).map(|(sequence, _)| *sequence);
        // Its own sequence, readable and for this key: at or below what
        // the key holds means it is superseded.
        if let (Some(event), Some(held)) = (h.event_sequence_for(key), held) {
            if event <= held {
                figures.stuck += 1;
                divergent.push(key.to_owned());
                problems.push(format!(
                    "{name}: parked {} #{} (stream {seq}, sequence {event} of {key}) is still \
                     pending while the key holds sequence {held}",
                    h.kind, h.n
                ));
                continue;
            }
        }
        // A later event of the owner on this key was applied (the
        // owner's last message on the key comes after it in the stream).
        if let Some(&last) = last_owner_message.get(key) {
            if last > *seq
                && !hostile_seqs.contains_key(&last)
                && h.event_sequence_for(key).is_none()
            {
                figures.stuck += 1;
                divergent.push(key.to_owned());
                problems.push(format!(
                    "{name}: parked {} #{} (stream {seq}, key {key}) is still pending although \
                     the owner's event at stream {last} came after it",
                    h.kind, h.n
                ));
            }
        }
    }
    divergent
}

// ---------------------------------------------------------------------------
// Reading the stream.

async fn stream_leader(js: &jetstream::Context) -> Option<String> {
    let mut stream = js.get_stream(STREAM).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

/// Waits until the stream has a leader and every replica is current.
async fn wait_stream_healthy(js: &jetstream::Context, broker: &Broker) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        if let Ok(mut stream) = js.get_stream(STREAM).await {
            if let Ok(info) = stream.info().await {
                let healthy = match &info.cluster {
                    None => true,
                    Some(cluster) => {
                        cluster.leader.is_some()
                            && cluster
                                .replicas
                                .iter()
                                .all(|peer| peer.current && !peer.offline)
                    }
                };
                if healthy {
                    return;
                }
                last = format!("{:?}", info.cluster);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not become healthy: {last}\n{}",
            broker.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The stream's last sequence a consumer's filter matches, and which
/// foreign messages the stream still holds.
async fn stream_facts(js: &jetstream::Context, log: &HostileLog) -> (u64, BTreeSet<u64>) {
    let mut stream = js.get_stream(STREAM).await.expect("the stream");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut held = BTreeSet::new();
    for seq in log.sent.iter().filter_map(Hostile::stored) {
        if stream.get_raw_message(seq).await.is_ok() {
            held.insert(seq);
        }
    }
    // A consumer's checkpoint reaches the last message its filter matches:
    // stray messages at the tail of the stream (another entity, a subject
    // without a key) are never delivered to it.
    let strays: BTreeSet<u64> = log
        .sent
        .iter()
        .filter(|h| matches!(h.expect, Expect::NotDelivered))
        .filter_map(Hostile::stored)
        .collect();
    let mut end = last;
    while end > 0 && strays.contains(&end) {
        end -= 1;
    }
    (end, held)
}

/// Messages the server stored again later than it first acknowledged them:
/// on the subjects only the foreign publisher writes (`h-..`, `f-..`), the
/// last message is one of its messages (same `Nats-Msg-Id`) at another
/// stream sequence than its acknowledgement said. Seen with nats-server
/// 2.9.10 clusters whose nodes are killed: an acknowledged publish is
/// stored a second time after messages published after it, so a
/// same-sequence pair's loser ends on top of its winner (on the leader, or
/// on one node only), and a consumer that reads only the last message of
/// the subject holds the loser while one that read both holds the winner.
async fn restored_by_server(js: &jetstream::Context, log: &HostileLog) -> Vec<String> {
    let Ok(stream) = js.get_stream(STREAM).await else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let mut seen = BTreeSet::new();
    for h in &log.sent {
        let (Some(acknowledged), Some(key)) = (h.stored(), h.key.as_ref()) else {
            continue;
        };
        if h.owner_key || !seen.insert(h.subject.clone()) {
            continue;
        }
        let Ok(last) = stream.get_last_raw_message_by_subject(&h.subject).await else {
            continue;
        };
        let last_id = last
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned());
        let mine = log
            .sent
            .iter()
            .filter(|other| other.subject == h.subject)
            .find(|other| Some(&other.msg_id) == last_id.as_ref());
        if let Some(mine) = mine {
            if mine.stored() != Some(last.sequence) {
                lines.push(format!(
                    "SERVER RE-STORED a message: {} #{} on key {key} (msg-id {}) was acknowledged \
                     as stream message {:?}, and the stream now holds it as its last message on \
                     the subject at {} (first message of the key acknowledged at {acknowledged})",
                    mine.kind,
                    mine.n,
                    mine.msg_id,
                    mine.stored(),
                    last.sequence
                ));
            }
        }
    }
    lines
}

/// The owner keys a foreign message was the last on: the owner publishes
/// them again.
async fn keys_to_touch(
    js: &jetstream::Context,
    log: &HostileLog,
    hostile_seqs: &HashMap<u64, usize>,
) -> Vec<String> {
    let stream = js.get_stream(STREAM).await.expect("the stream");
    let keys: BTreeSet<&String> = log
        .sent
        .iter()
        .filter(|h| h.owner_key)
        .filter_map(|h| h.key.as_ref())
        .collect();
    let mut touch = Vec::new();
    for key in keys {
        let subject = subject_of(key);
        if let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await {
            // By the sequence it was acknowledged at or, since a cluster
            // can move a message after acknowledging it, by its message id.
            let msg_id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str());
            let foreign = hostile_seqs
                .get(&message.sequence)
                .map(|&index| &log.sent[index])
                .or_else(|| {
                    log.sent
                        .iter()
                        .find(|h| h.subject == subject && Some(h.msg_id.as_str()) == msg_id)
                });
            if foreign.is_some_and(|h| !h.copy) {
                touch.push(key.clone());
            }
        }
    }
    touch
}

/// The stream sequence of the last message on every owner key's subject.
async fn last_messages(js: &jetstream::Context, truth: &States) -> HashMap<String, u64> {
    let stream = js.get_stream(STREAM).await.expect("the stream");
    let mut out = HashMap::new();
    for key in truth.keys() {
        if let Ok(message) = stream
            .get_last_raw_message_by_subject(&subject_of(key))
            .await
        {
            out.insert(key.clone(), message.sequence);
        }
    }
    out
}

fn subject_of(key: &str) -> String {
    Subjects::new(PREFIX)
        .and_then(|s| s.event(ENTITY, key))
        .expect("a subject for the key")
}

/// The stream's messages as the test read them while the soak ran, by
/// subject: the state stream keeps one message per subject, so a key's
/// history is gone by the end unless read as it is written. A message
/// replaced before the reader got to it is counted in `missed`.
#[derive(Default)]
struct History {
    /// The next stream sequence to read.
    next: u64,
    by_subject: HashMap<String, Vec<(u64, String)>>,
    /// Sequences gone (compacted) before they were read.
    missed: u64,
    /// Failed reads (a node down, an election), retried.
    errors: u64,
}

/// Reads the stream's messages in order as they are stored, every 200 ms,
/// until `reading` is cleared; then once more to the end.
async fn read_history(
    js: jetstream::Context,
    history: Arc<std::sync::Mutex<History>>,
    reading: Arc<AtomicBool>,
) {
    loop {
        let last_round = !reading.load(Ordering::SeqCst);
        read_history_once(&js, &history).await;
        if last_round {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_history_once(js: &jetstream::Context, history: &std::sync::Mutex<History>) {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(5), js.get_stream(STREAM)).await
    else {
        lock(history).errors += 1;
        return;
    };
    let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(5), stream.info()).await else {
        lock(history).errors += 1;
        return;
    };
    let last = info.state.last_sequence;
    let mut next = lock(history).next.max(1);
    while next <= last {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.get_raw_message(next)).await;
        match read {
            Ok(Ok(message)) => {
                let line = describe_message(&message.payload, &message.headers);
                lock(history)
                    .by_subject
                    .entry(message.subject.to_string())
                    .or_default()
                    .push((next, line));
            }
            Ok(Err(error))
                if error.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                lock(history).missed += 1;
            }
            _ => {
                lock(history).errors += 1;
                break;
            }
        }
        next += 1;
        lock(history).next = next;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One stored message in a line: its ecst attributes, or what it is.
fn describe_message(payload: &[u8], headers: &async_nats::HeaderMap) -> String {
    let msg_id = headers
        .get("Nats-Msg-Id")
        .map_or("-", |value| value.as_str());
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return format!("{} bytes, not JSON (msg-id {msg_id})", payload.len());
    };
    let text = |name: &str| {
        json.get(name)
            .map_or_else(|| "-".to_owned(), |v| v.to_string())
    };
    format!(
        "sequence={} operation={} schemaversion={} source={} subject={} id={} msg-id={msg_id} \
         ({} bytes)",
        text("sequence"),
        text("operation"),
        text("schemaversion"),
        text("source"),
        text("subject"),
        text("id"),
        payload.len()
    )
}

/// What the stream leader's last message on a divergent key says of the
/// divergence.
fn verdict(
    leader_last: &[u8],
    expected: Option<&(u64, Option<Customer>)>,
    held: Option<&(u64, Option<Customer>)>,
) -> String {
    let Ok(last) = Envelope::<Customer>::from_json(leader_last) else {
        return "the stream's last message on the key is not an event: unexplained".into();
    };
    let last_state = last.state().cloned();
    let Some((sequence, state)) = expected else {
        return "a key nobody wrote: unexplained".into();
    };
    let leader_right = last.sequence.get() == *sequence && last_state == *state;
    let held_sequence = held.map(|(s, _)| *s);
    match (leader_right, held_sequence) {
        (true, Some(held)) if held < *sequence => format!(
            "the stream leader holds the expected event (sequence {sequence}) and the replica \
             an older one (sequence {held}): the replica never received it, so the consumer read \
             from a cluster node whose copy of the stream lacks it (nats-server replica \
             divergence, see the renumbering warnings)"
        ),
        (true, Some(held)) if held == *sequence => format!(
            "a same-sequence pair: the stream leader's last message is the winner, the replica \
             holds the loser at sequence {held}; a consumer that reads both applies the winner \
             whatever their order, so the consumer read from a node whose copy holds the loser \
             on top, or lacks the winner (nats-server replica divergence)"
        ),
        (false, _) if last.sequence.get() == *sequence => format!(
            "the stream leader itself holds another event of sequence {sequence} on top (an \
             acknowledged message stored again after the one published after it: see `SERVER \
             RE-STORED`); replicas that read both hold the tie's winner, replicas that read only \
             the last message hold this one"
        ),
        _ => "unexplained: compare the history above with the replica".into(),
    }
}

/// Everything the test knows of a divergent key, as text.
async fn explain_divergence(
    js: &jetstream::Context,
    history: &std::sync::Mutex<History>,
    key: &str,
    replica: &FinalReplica,
    truth: &States,
    log: &HostileLog,
    dir: &Path,
) -> String {
    use std::fmt::Write as _;
    read_history_once(js, history).await;
    let subject = subject_of(key);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak: EXPLAIN key {key} (divergent or stuck) in replica {} (subject {subject}):",
        replica.durable
    );
    let _ = writeln!(out, "  owner's truth: {:?}", truth.get(key));
    let _ = writeln!(out, "  tie winner:    {:?}", log.ties.get(key));
    let _ = writeln!(out, "  replica holds: {:?}", replica.dump.get(key));
    let _ = writeln!(out, "  replica checkpoint: {}", replica.checkpoint);
    match js.get_stream(STREAM).await {
        Ok(mut stream) => {
            if let Ok(info) = stream.info().await {
                let _ = writeln!(
                    out,
                    "  stream now: first={} last={} messages={} leader={:?}",
                    info.state.first_sequence,
                    info.state.last_sequence,
                    info.state.messages,
                    info.cluster.as_ref().and_then(|c| c.leader.clone())
                );
            }
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => {
                    let _ = writeln!(
                        out,
                        "  stream's last message on the subject: stream {} {}",
                        message.sequence,
                        describe_message(&message.payload, &message.headers)
                    );
                    let expected = truth.get(key).or_else(|| log.ties.get(key));
                    let _ = writeln!(
                        out,
                        "  verdict: {}",
                        verdict(&message.payload, expected, replica.dump.get(key))
                    );
                }
                Err(error) => {
                    let _ = writeln!(out, "  stream's last message on the subject: {error}");
                }
            }
        }
        Err(error) => {
            let _ = writeln!(out, "  the stream: {error}");
        }
    }
    {
        let history = lock(history);
        let _ = writeln!(
            out,
            "  the subject's messages as read while the soak ran (read up to stream {}, {} \
             replaced before read, {} failed reads):",
            history.next.saturating_sub(1),
            history.missed,
            history.errors
        );
        for (sequence, line) in history.by_subject.get(&subject).into_iter().flatten() {
            let _ = writeln!(out, "    stream {sequence}: {line}");
        }
    }
    for h in log.sent.iter().filter(|h| h.key.as_deref() == Some(key)) {
        let _ = writeln!(
            out,
            "  foreign {} #{} on {} (msg-id {}): {:?}, expected {:?}",
            h.kind, h.n, h.subject, h.msg_id, h.sent, h.expect
        );
    }
    for (sequence, parked) in &replica.parked {
        if parked.key.as_deref() == Some(key) {
            let _ = writeln!(out, "  parked in the replica: stream {sequence} {parked:?}");
        }
    }
    let _ = writeln!(
        out,
        "  transcripts of the owner and of every consumer start: {}",
        dir.display()
    );
    out
}

// ---------------------------------------------------------------------------
// The foreign publisher.

#[derive(Clone, Debug)]
enum Expect {
    /// Parked by every consumer that receives it, as one of these kinds.
    Park(&'static [&'static str]),
    /// A valid event: applied (or a duplicate, or stale), never parked.
    Valid,
    /// Stored, but on a subject the consumers do not follow.
    NotDelivered,
}

#[derive(Clone, Debug)]
enum Sent {
    Stored(u64),
    Refused(String),
}

#[derive(Clone, Debug)]
struct Hostile {
    n: u64,
    /// Its `Nats-Msg-Id`.
    msg_id: String,
    kind: &'static str,
    subject: String,
    /// The key of the subject, for an entity subject with a valid key.
    key: Option<String>,
    /// The key is one the owner writes.
    owner_key: bool,
    expect: Expect,
    /// The event's own sequence and the key its envelope names, when its
    /// header is readable and names the key of its subject.
    event_sequence: Option<(String, u64)>,
    /// An exact copy of the message the subject held.
    copy: bool,
    sent: Sent,
}

impl Hostile {
    fn stored(&self) -> Option<u64> {
        match self.sent {
            Sent::Stored(seq) => Some(seq),
            Sent::Refused(_) => None,
        }
    }

    fn event_sequence_for(&self, key: &str) -> Option<u64> {
        self.event_sequence
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
    }
}

struct HostileLog {
    sent: Vec<Hostile>,
    /// Keys only the foreign publisher writes, with the tie winner.
    ties: BTreeMap<String, (u64, Option<Customer>)>,
}

const HOSTILE_SOURCE: &str = "urn:example:soak-hostile";

fn customer(rng: &mut Rng, id: &str) -> Customer {
    Customer {
        id: id.to_owned(),
        name: format!("Hostile {}", rng.below(1_000_000)),
        email: rng
            .chance(50)
            .then(|| format!("x{}@evil.example", rng.below(1000))),
        credit_limit_cents: rng.below(1000) * 100,
    }
}

fn upsert_json(id: &str, sequence: u64, state: Customer) -> Vec<u8> {
    Envelope::upsert(HOSTILE_SOURCE, id, Sequence::new(sequence), state)
        .to_json()
        .expect("encoding an envelope")
}

fn delete_json(id: &str, key: &str, sequence: u64) -> Vec<u8> {
    Envelope::<Customer>::delete(HOSTILE_SOURCE, id, key.to_owned(), Sequence::new(sequence))
        .to_json()
        .expect("encoding an envelope")
}

/// The owner's event a subject holds: its sequence and its stream sequence.
struct OwnerEvent {
    sequence: u64,
    payload: Vec<u8>,
    msg_id: Option<String>,
}

async fn owner_event(
    stream: &jetstream::stream::Stream,
    subject: &str,
    foreign: &HashMap<u64, usize>,
) -> Option<OwnerEvent> {
    let message = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    if foreign.contains_key(&message.sequence) {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&message.payload).ok()?;
    if json.get("source")?.as_str()? != ecst_example_crm::SOURCE {
        return None;
    }
    let sequence = json.get("sequence")?.as_str()?.parse().ok()?;
    Some(OwnerEvent {
        sequence,
        payload: message.payload.to_vec(),
        msg_id: message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned()),
    })
}

/// Publishes until the server answers: a broker restart or a leader
/// election on the way is waited out, and the unique message id makes a
/// retry of a stored message a duplicate that names the original.
async fn send(
    js: &jetstream::Context,
    subject: &str,
    payload: Vec<u8>,
    msg_id: &str,
    no_stream_expected: bool,
    foreign_id: bool,
    expected_last: Option<u64>,
) -> Sent {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        if let Some(last) = expected_last {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                last.to_string().as_str(),
            );
        }
        let result: Result<(), String> = match js
            .publish_with_headers(subject.to_owned(), headers, payload.clone().into())
            .await
        {
            Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                return Sent::Refused(format!("refused by the client: {error}"))
            }
            Err(error) => Err(error.to_string()),
            Ok(ack) => match ack.await {
                // With a message id of another publisher's, a duplicate is
                // the server dropping this message; with ours, it is a retry
                // of one stored before.
                Ok(ack) if ack.duplicate && foreign_id => {
                    return Sent::Refused(format!(
                        "dropped by the server: a duplicate of stream message {} (same \
                         Nats-Msg-Id)",
                        ack.sequence
                    ))
                }
                Ok(ack) => return Sent::Stored(ack.sequence),
                // Guarded, a retry of a message stored by an attempt whose
                // acknowledgement was lost finds it on top: stored.
                Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                    let stream = js.get_stream(STREAM).await.map_err(|e| e.to_string());
                    let last = match &stream {
                        Ok(stream) => stream.get_last_raw_message_by_subject(subject).await.ok(),
                        Err(_) => None,
                    };
                    match last {
                        Some(message)
                            if message.headers.get("Nats-Msg-Id").map(|v| v.as_str())
                                == Some(msg_id) =>
                        {
                            return Sent::Stored(message.sequence)
                        }
                        _ => {
                            return Sent::Refused(format!(
                                "refused by the server: {error} (expected last subject sequence \
                                 {expected_last:?})"
                            ))
                        }
                    }
                }
                Err(error)
                    if no_stream_expected
                        && error.kind() == PublishErrorKind::StreamNotFound
                        && attempts >= 3 =>
                {
                    return Sent::Refused(format!("refused by the server: {error}"))
                }
                Err(error) => Err(error.to_string()),
            },
        };
        if let Err(error) = result {
            assert!(
                Instant::now() < deadline,
                "the foreign publisher could not publish on {subject} for 120 s: {error}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

async fn hostile_publisher(js: jetstream::Context, seed: u64, stop: Arc<AtomicBool>) -> HostileLog {
    let mut rng = Rng::new(seed);
    let mut log = HostileLog {
        sent: Vec::new(),
        ties: BTreeMap::new(),
    };
    let mut stored: HashMap<u64, usize> = HashMap::new();
    let stream = loop {
        match js.get_stream(STREAM).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && log.sent.len() < MAX_HOSTILE {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        n += 1;
        let msg_id = format!("soak-hostile-{seed}-{n}");
        let owner_key = customer_id(rng.below(KEYS));
        let owner_subject = subject_of(&owner_key);
        let foreign_key = format!("h-{n:05}");
        let roll = rng.below(100);
        let mut planned: Vec<Planned> = Vec::new();
        const INVALID: &[&str] = &["invalid", "upcast"];
        match roll {
            // Garbage, on a key of its own or on an owner's key.
            0..=19 => {
                // On an owner key only below the owner's current sequence:
                // a readable header at or above it blocks the owner's
                // guarded publisher (see the report of this test).
                let owner = if rng.chance(40) {
                    owner_event(&stream, &owner_subject, &stored)
                        .await
                        .filter(|event| event.sequence >= 2)
                } else {
                    None
                };
                let (key, is_owner, below) = match &owner {
                    Some(event) => (owner_key.clone(), true, event.sequence - 1),
                    None => (foreign_key.clone(), false, 1),
                };
                let mut event_sequence = None;
                let payload = match rng.below(5) {
                    0 => {
                        let mut bytes: Vec<u8> = (0..64).map(|_| rng.below(256) as u8).collect();
                        bytes.extend_from_slice(format!("hostile {n}").as_bytes());
                        bytes
                    }
                    1 => format!("{{\"hostile\":{n}}}").into_bytes(),
                    2 => {
                        let full = upsert_json(&msg_id, 1, customer(&mut rng, &key));
                        full[..full.len() / 2].to_vec()
                    }
                    3 => {
                        let full = upsert_json(&msg_id, 1, customer(&mut rng, &key));
                        let mut json: serde_json::Value =
                            serde_json::from_slice(&full).expect("our own JSON");
                        json["sequence"] = serde_json::Value::from("not-a-number");
                        serde_json::to_vec(&json).expect("JSON")
                    }
                    _ => {
                        let full = upsert_json(&msg_id, 1, customer(&mut rng, &key));
                        let mut json: serde_json::Value =
                            serde_json::from_slice(&full).expect("our own JSON");
                        json["data"]["name"] = serde_json::Value::from(42);
                        json["sequence"] = serde_json::Value::from(format!("{below:020}"));
                        event_sequence = Some((key.clone(), below));
                        serde_json::to_vec(&json).expect("JSON")
                    }
                };
                planned.push(Planned {
                    guarded: false,
                    kind: "garbage",
                    subject: subject_of(&key),
                    key: Some(key),
                    owner_key: is_owner,
                    payload,
                    expect: Expect::Park(INVALID),
                    event_sequence,
                    copy: false,
                    no_stream: false,
                    id: None,
                });
            }
            // Misaddressed: the envelope of an owner's key, at a sequence that
            // would win, sent on another key's subject or a subject that is
            // no key.
            20..=34 => {
                let victim = customer_id(rng.below(KEYS));
                let payload = upsert_json(&msg_id, 1_000_000 + n, customer(&mut rng, &victim));
                let (subject, key, is_owner) = match rng.below(10) {
                    0..=3 if owner_key != victim => {
                        (owner_subject.clone(), Some(owner_key.clone()), true)
                    }
                    0..=6 => (subject_of(&foreign_key), Some(foreign_key.clone()), false),
                    _ => (format!("{PREFIX}.{ENTITY}.%zz{n}"), None, false),
                };
                planned.push(Planned {
                    guarded: false,
                    kind: "misaddressed",
                    subject,
                    key,
                    owner_key: is_owner,
                    payload,
                    expect: Expect::Park(&["misaddressed"]),
                    event_sequence: None,
                    copy: false,
                    no_stream: false,
                    id: None,
                });
            }
            // Oversized: above the consumers' limit, or above the server's.
            35..=44 => {
                let huge = rng.chance(20);
                let size = if huge { 1_200_000 } else { MAX_PAYLOAD + 4096 };
                let owner = if huge {
                    None
                } else if rng.chance(50) {
                    owner_event(&stream, &owner_subject, &stored)
                        .await
                        .filter(|event| event.sequence >= 2)
                } else {
                    None
                };
                // Below the owner's current sequence: at it, a retry of the
                // owner's current event (its acknowledgement lost in a
                // broker restart) would be refused as not newer.
                let (key, is_owner, sequence) = match &owner {
                    Some(event) => (owner_key.clone(), true, event.sequence - 1),
                    None => (foreign_key.clone(), false, 1),
                };
                let mut state = customer(&mut rng, &key);
                state.name = "X".repeat(size);
                planned.push(Planned {
                    guarded: false,
                    kind: "oversized",
                    subject: subject_of(&key),
                    key: Some(key.clone()),
                    owner_key: is_owner,
                    payload: upsert_json(&msg_id, sequence, state),
                    expect: Expect::Park(&["refused"]),
                    event_sequence: None,
                    copy: false,
                    no_stream: false,
                    id: None,
                });
            }
            // Duplicate: a copy of the owner's last event on a key, with its
            // message id (the server drops it as a duplicate within its
            // window) or with a new one (stored: a second copy).
            45..=59 => {
                let Some(event) = owner_event(&stream, &owner_subject, &stored).await else {
                    continue;
                };
                // The owner's message id, or (`None`) a fresh one of ours.
                let id = event.msg_id.clone().filter(|_| rng.chance(50));
                planned.push(Planned {
                    guarded: false,
                    kind: if id.is_some() {
                        "duplicate_id"
                    } else {
                        "duplicate"
                    },
                    subject: owner_subject.clone(),
                    key: Some(owner_key.clone()),
                    owner_key: true,
                    payload: event.payload,
                    expect: Expect::Valid,
                    event_sequence: None,
                    copy: true,
                    no_stream: false,
                    id,
                });
            }
            // Same sequence: on an owner key, the sequence before its
            // current one (so the current one supersedes); on a key of its
            // own, two events of one sequence, the tie-break's loser first.
            60..=77 => {
                if rng.chance(60) {
                    let Some(event) = owner_event(&stream, &owner_subject, &stored).await else {
                        continue;
                    };
                    if event.sequence < 2 {
                        continue;
                    }
                    let sequence = event.sequence - 1;
                    let id = if rng.chance(50) {
                        format!("{ENTITY}:{owner_key}:{sequence}")
                    } else {
                        msg_id.clone()
                    };
                    planned.push(Planned {
                        guarded: false,
                        kind: "same_sequence",
                        subject: owner_subject.clone(),
                        key: Some(owner_key.clone()),
                        owner_key: true,
                        payload: upsert_json(&id, sequence, customer(&mut rng, &owner_key)),
                        expect: Expect::Valid,
                        event_sequence: None,
                        copy: false,
                        no_stream: false,
                        id: None,
                    });
                } else {
                    let key = format!("f-{n:05}");
                    let sequence = 1 + rng.below(3);
                    let a = customer(&mut rng, &key);
                    let b = customer(&mut rng, &key);
                    let delete = rng.chance(30);
                    // The winner: a delete over an upsert; else the greater
                    // serialization.
                    let (loser, winner): (Vec<u8>, (Vec<u8>, Option<Customer>)) = if delete {
                        (
                            upsert_json(&format!("{msg_id}-a"), sequence, a),
                            (delete_json(&format!("{msg_id}-b"), &key, sequence), None),
                        )
                    } else {
                        let (low, high) = if serde_json::to_vec(&a).expect("json")
                            < serde_json::to_vec(&b).expect("json")
                        {
                            (a, b)
                        } else {
                            (b, a)
                        };
                        (
                            upsert_json(&format!("{msg_id}-a"), sequence, low),
                            (
                                upsert_json(&format!("{msg_id}-b"), sequence, high.clone()),
                                Some(high),
                            ),
                        )
                    };
                    log.ties.insert(key.clone(), (sequence, winner.1));
                    // As a producer following the README publishes: each
                    // expecting the last subject sequence it knows.
                    for payload in [loser, winner.0] {
                        planned.push(Planned {
                            guarded: true,
                            kind: "same_sequence",
                            subject: subject_of(&key),
                            key: Some(key.clone()),
                            owner_key: false,
                            payload,
                            expect: Expect::Valid,
                            event_sequence: None,
                            copy: false,
                            no_stream: false,
                            id: None,
                        });
                    }
                }
            }
            // Future version: schema version 4, on an owner key at most at
            // its current sequence, or on a key of its own.
            78..=92 => {
                let owner = if rng.chance(60) {
                    owner_event(&stream, &owner_subject, &stored)
                        .await
                        .filter(|event| event.sequence >= 2)
                } else {
                    None
                };
                // Below the owner's current sequence, as for oversized.
                let (key, is_owner, sequence) = match &owner {
                    Some(event) => {
                        let back = 1 + rng.below((event.sequence - 1).min(3));
                        (owner_key.clone(), true, event.sequence - back)
                    }
                    None => (foreign_key.clone(), false, 5),
                };
                let full = upsert_json(&msg_id, sequence, customer(&mut rng, &key));
                let mut json: serde_json::Value =
                    serde_json::from_slice(&full).expect("our own JSON");
                json["schemaversion"] = serde_json::Value::from(4);
                json["dataschema"] =
                    serde_json::Value::from(format!("urn:ecst:schema:{ENTITY}:v4"));
                json["data"]["loyalty_tier"] = serde_json::Value::from("gold");
                planned.push(Planned {
                    guarded: false,
                    kind: "future_version",
                    subject: subject_of(&key),
                    key: Some(key.clone()),
                    owner_key: is_owner,
                    payload: serde_json::to_vec(&json).expect("JSON"),
                    expect: Expect::Park(&["future_version"]),
                    event_sequence: Some((key, sequence)),
                    copy: false,
                    no_stream: false,
                    id: None,
                });
            }
            // Stray subjects: outside the consumers' filter, or outside
            // every stream.
            _ => {
                let payload = upsert_json(&msg_id, 1, customer(&mut rng, &foreign_key));
                let (subject, expect, no_stream) = match rng.below(3) {
                    0 => (format!("{PREFIX}.invoice.{n}"), Expect::NotDelivered, false),
                    1 => (format!("{PREFIX}.{ENTITY}"), Expect::NotDelivered, false),
                    _ => (format!("nowhere.{n}"), Expect::NotDelivered, true),
                };
                planned.push(Planned {
                    guarded: false,
                    kind: "stray",
                    subject,
                    key: None,
                    owner_key: false,
                    payload,
                    expect,
                    event_sequence: None,
                    copy: false,
                    no_stream,
                    id: None,
                });
            }
        }
        let mut last_guarded = 0;
        for (index, planned) in planned.into_iter().enumerate() {
            let expected_last = planned.guarded.then_some(last_guarded);
            let id = match (&planned.id, index) {
                (Some(id), _) => id.clone(),
                (None, 0) => msg_id.clone(),
                (None, _) => format!("{msg_id}-{index}"),
            };
            let foreign_id = planned.id.is_some();
            let sent = send(
                &js,
                &planned.subject,
                planned.payload,
                &id,
                planned.no_stream,
                foreign_id,
                expected_last,
            )
            .await;
            if let Sent::Stored(seq) = sent {
                stored.insert(seq, log.sent.len());
                if planned.guarded {
                    last_guarded = seq;
                }
            }
            log.sent.push(Hostile {
                n,
                msg_id: id.clone(),
                kind: planned.kind,
                subject: planned.subject,
                key: planned.key,
                owner_key: planned.owner_key,
                expect: planned.expect,
                event_sequence: planned.event_sequence,
                copy: planned.copy,
                sent,
            });
        }
    }
    log
}

/// One foreign message to send.
struct Planned {
    kind: &'static str,
    subject: String,
    key: Option<String>,
    owner_key: bool,
    payload: Vec<u8>,
    expect: Expect,
    event_sequence: Option<(String, u64)>,
    copy: bool,
    no_stream: bool,
    /// The message id, when not a fresh one.
    id: Option<String>,
    /// Published with `Nats-Expected-Last-Subject-Sequence`: 0 for the
    /// first of its round, then the stream sequence of the one before.
    guarded: bool,
}

// ---------------------------------------------------------------------------
// Files and lines.

type States = BTreeMap<String, (u64, Option<Customer>)>;

/// A fresh directory under Cargo's scratch space for integration tests.
fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("crm-soak-{tag}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}
