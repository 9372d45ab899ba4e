//! `crm-consumer`: a service that keeps a durable replica of the customers.
//!
//! The replica and the consumer's checkpoint live in one SQLite file and
//! are committed together, batch by batch, before the batch is
//! acknowledged to JetStream. Kill the process at any moment (even with
//! SIGKILL): the next start resumes from the checkpoint, loses nothing and
//! applies nothing twice.
//!
//! Run `crm-consumer --help` for the flags, and see README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecst::nats::{BootstrapRequest, FollowSettings, Follower, Subjects};
use ecst::store::sqlite::SqliteStore;
use ecst::store::DurableReplica;
use ecst::{Entry, Outcome};
use ecst_example_crm::{
    connect, dump_replica, no_value, sorted_entries, Arg, Args, Customer, UsageError, DEFAULT_NATS,
    DEFAULT_PREFIX, DEFAULT_STREAM,
};

const USAGE: &str = "\
usage: crm-consumer [options]

Keeps a durable replica of the owner's customers in SQLite, following the
NATS JetStream state stream; resumes from its checkpoint after a restart.

options:
  --nats URL               NATS server (default 127.0.0.1:4222)
  --db PATH                the SQLite replica file (default crm-replica.db)
  --durable NAME           the durable consumer's name, also the replica's
                           name in the file (default crm-consumer)
  --until-caught-up        exit once the replica has caught up with the stream
                           (default: keep following until Ctrl-C)
  --bootstrap-from-owner   first ask the owner (crm-owner --serve-bootstrap)
                           for the current state
  --bootstrap-timeout SECS how long to wait for the owner's answer (default 30)
  --dump FILE              at the end, write the replica as JSON lines
                           (key, sequence, state) instead of printing it
  --batch N                messages per fetch and per commit (default 256)
  --sync-normal            SQLite synchronous=NORMAL: survives a crash of this
                           process, not a power loss (default: FULL)
  --lease-ttl SECS         the lease on the durable name: a second consumer
                           with the same name is refused while this one runs,
                           and after a crash the name is free again after
                           this long (default 10)
  --max-payload BYTES      park messages above this size unread, as refused
                           (default 1048576)
  --poll-timeout-ms N      cancel a poll that takes longer than N ms (drop its
                           future, as a `select!` or a shutdown would); the poll
                           after a cancelled one is never cut short, so the
                           replica still makes progress (default: no timeout)
  --stream NAME            the state stream (default CRM)
  --prefix P               subject prefix (default crm)
  -h, --help               this text";

struct Options {
    nats: String,
    db: PathBuf,
    durable: String,
    until_caught_up: bool,
    bootstrap_from_owner: bool,
    bootstrap_timeout: Duration,
    dump: Option<PathBuf>,
    batch: usize,
    sync_normal: bool,
    lease_ttl: Duration,
    max_payload: Option<usize>,
    poll_timeout: Option<Duration>,
    stream: String,
    prefix: String,
}

fn parse_options() -> Result<Option<Options>, UsageError> {
    let mut options = Options {
        nats: DEFAULT_NATS.to_owned(),
        db: PathBuf::from("crm-replica.db"),
        durable: "crm-consumer".to_owned(),
        until_caught_up: false,
        bootstrap_from_owner: false,
        bootstrap_timeout: Duration::from_secs(30),
        dump: None,
        batch: 256,
        lease_ttl: Duration::from_secs(10),
        sync_normal: false,
        max_payload: None,
        poll_timeout: None,
        stream: DEFAULT_STREAM.to_owned(),
        prefix: DEFAULT_PREFIX.to_owned(),
    };
    let mut args = Args::from_env()?;
    while let Some(arg) = args.next_arg() {
        match arg {
            Arg::Positional(text) if text == "-h" => return Ok(None),
            Arg::Positional(text) => {
                return Err(UsageError(format!("unexpected argument {text:?}")))
            }
            Arg::Flag(flag, inline) => match flag.as_str() {
                "help" => return Ok(None),
                "nats" => options.nats = args.value(&flag, inline)?,
                "db" => options.db = args.value(&flag, inline)?.into(),
                "durable" => options.durable = args.value(&flag, inline)?,
                "until-caught-up" => {
                    no_value(&flag, inline)?;
                    options.until_caught_up = true;
                }
                "bootstrap-from-owner" => {
                    no_value(&flag, inline)?;
                    options.bootstrap_from_owner = true;
                }
                "bootstrap-timeout" => {
                    let seconds: f64 = args.parsed(&flag, inline)?;
                    options.bootstrap_timeout = Duration::try_from_secs_f64(seconds)
                        .map_err(|e| UsageError(format!("--bootstrap-timeout {seconds}: {e}")))?;
                }
                "dump" => options.dump = Some(args.value(&flag, inline)?.into()),
                "lease-ttl" => {
                    let seconds: f64 = args.parsed(&flag, inline)?;
                    options.lease_ttl = Duration::try_from_secs_f64(seconds)
                        .ok()
                        .filter(|ttl| !ttl.is_zero())
                        .ok_or_else(|| {
                            UsageError(format!("--lease-ttl {seconds}: not a duration above 0"))
                        })?;
                }
                "batch" => options.batch = args.parsed(&flag, inline)?,
                "max-payload" => options.max_payload = Some(args.parsed(&flag, inline)?),
                "poll-timeout-ms" => {
                    let millis: u64 = args.parsed(&flag, inline)?;
                    options.poll_timeout = Some(Duration::from_millis(millis));
                }
                "sync-normal" => {
                    no_value(&flag, inline)?;
                    options.sync_normal = true;
                }
                "stream" => options.stream = args.value(&flag, inline)?,
                "prefix" => options.prefix = args.value(&flag, inline)?,
                _ => return Err(UsageError(format!("unknown option --{flag}"))),
            },
        }
    }
    if options.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()));
    }
    if options.durable.is_empty() || options.durable.contains(['.', '*', '>', ' ']) {
        return Err(UsageError(format!(
            "--durable {:?}: a consumer name needs at least one character and no `.`, `*`, `>` or space",
            options.durable
        )));
    }
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("crm-consumer: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm-consumer: error: {error}");
            ExitCode::FAILURE
        }
    }
}

type Replica = DurableReplica<Customer, SqliteStore>;

/// `checkpoint=.. applied=.. parked=..`: the durable counters.
fn counters(replica: &Replica) -> String {
    let checkpoint = replica.checkpoint().unwrap_or_default();
    format!(
        "checkpoint={} applied={} parked={}",
        checkpoint.stream_sequence,
        checkpoint.applied,
        replica.pending_parked()
    )
}

fn sizes(replica: &Replica) -> String {
    let memory = replica.replica();
    format!("live={} tombstones={}", memory.len(), memory.tombstones())
}

fn changes_state(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Inserted | Outcome::Updated | Outcome::Deleted
    )
}

async fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let client = connect(&options.nats, "crm-consumer").await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream_state = match js.get_stream(&options.stream).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map_err(|e| format!("reading stream `{}`: {e}", options.stream))?
            .state
            .clone(),
        Err(error) => {
            return Err(format!(
                "cannot find stream `{}` ({error}); start crm-owner first, it creates the stream",
                options.stream
            ))
        }
    };
    println!(
        "stream: name={} messages={} last_sequence={}",
        options.stream, stream_state.messages, stream_state.last_sequence
    );
    let mut store = SqliteStore::open(&options.db, &options.durable)
        .map_err(|e| format!("opening the replica `{}`: {e}", options.db.display()))?;
    if options.sync_normal {
        store = store.synchronous_normal().map_err(|e| e.to_string())?;
    }
    let replica = Replica::open(store)
        .await
        .map_err(|e| format!("loading the replica `{}`: {e}", options.db.display()))?;
    println!(
        "replica: db={} durable={} {} {}",
        options.db.display(),
        options.durable,
        sizes(&replica),
        counters(&replica)
    );

    if replica.resume_after() > stream_state.last_sequence {
        // The stream was re-created (or a cluster replica numbers its
        // messages differently): the follower notices too, and starts over
        // from the latest event of every key; the version gate keeps what
        // the replica holds where it is newer.
        println!(
            "stream reset: checkpoint={} is beyond the stream's last sequence {}; bootstrapping \
             again",
            replica.resume_after(),
            stream_state.last_sequence
        );
    }

    let subjects = Subjects::new(options.prefix.clone()).map_err(|e| format!("--prefix: {e}"))?;
    let mut settings =
        FollowSettings::new(options.stream.clone(), options.durable.clone(), subjects);
    settings.batch = options.batch;
    settings.lease_ttl = Some(options.lease_ttl);
    settings.lease_wait = options.lease_ttl + Duration::from_secs(1);
    if let Some(max_payload) = options.max_payload {
        settings.max_payload = max_payload;
    }
    let mut follower = Follower::start(client, settings, replica)
        .await
        .map_err(|e| e.to_string())?;

    if options.bootstrap_from_owner {
        let outcome = follower
            .bootstrap_from_owner(&BootstrapRequest::all(), options.bootstrap_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let changed = outcome
            .applied
            .iter()
            .filter(|(_, o)| changes_state(*o))
            .count();
        println!(
            "bootstrap: received={} changed={changed} rejected={} {}",
            outcome.applied.len() + outcome.parked.len() + outcome.rejected.len(),
            outcome.parked.len() + outcome.rejected.len(),
            counters(follower.replica())
        );
        // Not applicable (a newer schema version, say): not parked either,
        // since asking the owner again brings them again.
        for (_, reason) in outcome.parked.iter().chain(&outcome.rejected) {
            println!("bootstrap rejected: {reason}");
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    if !options.until_caught_up {
        println!("following; Ctrl-C to stop");
    }
    // Each poll waits at most the fetch wait (1 s) on an idle stream, so a
    // Ctrl-C is noticed within a second; a poll is never cut short, though
    // that would be safe too (what is not committed is delivered again).
    let mut caught_up_once = false;
    let mut cancelled = 0u64;
    let mut cut_short = false;
    while !stop.load(Ordering::SeqCst) {
        let progress = match options.poll_timeout.filter(|_| !cut_short) {
            Some(limit) => match tokio::time::timeout(limit, follower.poll()).await {
                Ok(progress) => progress,
                Err(_) => {
                    cancelled += 1;
                    cut_short = true;
                    println!(
                        "poll cancelled: after {} ms (cancelled={cancelled})",
                        limit.as_millis()
                    );
                    continue;
                }
            },
            None => follower.poll().await,
        };
        cut_short = false;
        let progress = progress.map_err(|e| e.to_string())?;
        let batch = &progress.batch;
        if !batch.applied.is_empty() || !batch.parked.is_empty() {
            let changed = batch
                .applied
                .iter()
                .filter(|(_, o)| changes_state(*o))
                .count();
            println!(
                "progress: {} pending={} batch={} changed={changed} unchanged={} batch_parked={}",
                counters(follower.replica()),
                progress.pending,
                batch.applied.len() + batch.parked.len(),
                batch.applied.len() - changed,
                batch.parked.len()
            );
            for (sequence, reason) in &batch.parked {
                println!("parked: stream_sequence={sequence} reason={reason}");
            }
        }
        if progress.caught_up() {
            if !caught_up_once {
                println!(
                    "caught up: {} {} after {:.2} s",
                    counters(follower.replica()),
                    sizes(follower.replica()),
                    started.elapsed().as_secs_f64()
                );
                caught_up_once = true;
            }
            if options.until_caught_up {
                break;
            }
        }
    }
    if stop.load(Ordering::SeqCst) {
        println!("stopped by Ctrl-C");
    }

    // Free the durable name for the next run at once.
    let replica = follower.stop().await;
    match &options.dump {
        Some(path) => {
            let lines = dump_replica(path, replica.replica())?;
            println!("dump: file={} lines={lines}", path.display());
        }
        None => {
            println!("replica ({}):", sizes(&replica));
            for (key, entry) in sorted_entries(replica.replica()) {
                match entry {
                    Entry::Live { sequence, state } => {
                        let json = serde_json::to_string(state).map_err(|e| e.to_string())?;
                        println!("  {key} sequence={sequence} {json}");
                    }
                    Entry::Tombstone { sequence } => {
                        println!("  {key} sequence={sequence} deleted")
                    }
                }
            }
        }
    }
    for parked in replica.parked() {
        let status = match &parked.resolution {
            None => "pending".to_owned(),
            Some(resolution) => resolution.to_column().into_owned(),
        };
        println!(
            "parked: stream_sequence={} key={} kind={} status={status} reason={}",
            parked.stream_sequence,
            parked.key.as_deref().unwrap_or("?"),
            parked.reason.kind,
            parked.reason
        );
    }
    println!(
        "final: {} {} elapsed={:.2}s",
        counters(&replica),
        sizes(&replica),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
