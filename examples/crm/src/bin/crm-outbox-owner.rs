//! `crm-outbox-owner`: the CRM owner with a transactional outbox.
//!
//! It keeps the customers in a real database (an SQLite file, or
//! PostgreSQL with `--postgres`), and every edit writes the customer row
//! and stages its event in the same transaction (`Outbox::stage`). A relay
//! (`OutboxRelay`) publishes the committed events to the JetStream state
//! stream, in this process (`--mode both`, the default) or in a process of
//! its own (`--mode relay`), while other processes write (`--mode write`).
//! Kill any of them at any moment: what was committed is published, what
//! was rolled back never is.
//!
//! Run `crm-outbox-owner --help` for the flags, and see README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecst::nats::{Publisher, ServerVersion, StateStream, Subjects};
use ecst::outbox::{Outbox, OutboxRelay, RelayReport, RelaySettings};
use ecst_example_crm::outbox::{
    crm_outbox, open_sqlite, PostgresOwner, SqliteOwner, Truth, OUTBOX_TABLE,
};
use ecst_example_crm::{
    connect, no_value, write_state_lines, Arg, Args, Customer, Rng, UsageError, DEFAULT_NATS,
    DEFAULT_PREFIX, DEFAULT_STREAM,
};

const USAGE: &str = "\
usage: crm-outbox-owner [options]

Owns customers in a database and publishes their state events through a
transactional outbox: each edit writes the customer and stages its event
in one transaction; a relay publishes committed events to NATS JetStream.

options:
  --mode M                both (default): write, and relay in this process;
                          write: only write; relay: only relay
  --db PATH               the owner's SQLite file (default crm-owner.db)
  --postgres CONFIG       use PostgreSQL instead (a tokio-postgres connection
                          string, e.g. \"host=127.0.0.1 user=postgres dbname=test\";
                          also read from CRM_POSTGRES)
  --table NAME            the outbox table (default crm_outbox)
  --changes N             edits to make (default 1000)
  --keys K                number of distinct customers (default 100)
  --seed S                seed of the invented edits (default 1)
  --writers W             concurrent writers, each with its own connection and
                          seed S+i (default 1)
  --per-tx T              edits per transaction (default 10)
  --nats URL              NATS server (default 127.0.0.1:4222)
  --stream NAME           the state stream (default CRM)
  --prefix P              subject prefix: events go to P.customer.<id> (default crm)
  --lease-ttl-ms MS       the relay lease's time to live (default 10000): a
                          relay started after another was killed waits this long
  --poll-ms MS            the relay's polling interval (default 1000)
  --until-drained         relay mode: exit once the outbox is empty (both mode
                          always exits when the writers are done and it is empty)
  --print-truth FILE      at the end, write the owner's tables as JSON lines
                          (key, sequence, state)
  -h, --help              this text";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Both,
    Write,
    Relay,
}

#[derive(Clone)]
struct Options {
    mode: Mode,
    db: PathBuf,
    postgres: Option<String>,
    table: String,
    changes: u64,
    keys: u64,
    seed: u64,
    writers: u64,
    per_tx: u64,
    nats: String,
    stream: String,
    prefix: String,
    lease_ttl: Duration,
    poll: Duration,
    until_drained: bool,
    print_truth: Option<PathBuf>,
}

fn parse_options() -> Result<Option<Options>, UsageError> {
    let mut options = Options {
        mode: Mode::Both,
        db: PathBuf::from("crm-owner.db"),
        postgres: std::env::var("CRM_POSTGRES").ok(),
        table: OUTBOX_TABLE.to_owned(),
        changes: 1000,
        keys: 100,
        seed: 1,
        writers: 1,
        per_tx: 10,
        nats: DEFAULT_NATS.to_owned(),
        stream: DEFAULT_STREAM.to_owned(),
        prefix: DEFAULT_PREFIX.to_owned(),
        lease_ttl: Duration::from_secs(10),
        poll: Duration::from_secs(1),
        until_drained: false,
        print_truth: None,
    };
    let mut args = Args::from_env()?;
    while let Some(arg) = args.next_arg() {
        let (flag, inline) = match arg {
            Arg::Flag(flag, inline) => (flag, inline),
            Arg::Positional(text) if text == "-h" => return Ok(None),
            Arg::Positional(text) => return Err(UsageError(format!("unexpected `{text}`"))),
        };
        match flag.as_str() {
            "help" => return Ok(None),
            "mode" => {
                options.mode = match args.value(&flag, inline)?.as_str() {
                    "both" => Mode::Both,
                    "write" => Mode::Write,
                    "relay" => Mode::Relay,
                    other => {
                        return Err(UsageError(format!(
                            "--mode {other:?}: expected both, write or relay"
                        )))
                    }
                }
            }
            "db" => options.db = PathBuf::from(args.value(&flag, inline)?),
            "postgres" => options.postgres = Some(args.value(&flag, inline)?),
            "table" => options.table = args.value(&flag, inline)?,
            "changes" => options.changes = args.parsed(&flag, inline)?,
            "keys" => options.keys = args.parsed(&flag, inline)?,
            "seed" => options.seed = args.parsed(&flag, inline)?,
            "writers" => options.writers = args.parsed(&flag, inline)?,
            "per-tx" => options.per_tx = args.parsed(&flag, inline)?,
            "nats" => options.nats = args.value(&flag, inline)?,
            "stream" => options.stream = args.value(&flag, inline)?,
            "prefix" => options.prefix = args.value(&flag, inline)?,
            "lease-ttl-ms" => {
                options.lease_ttl = Duration::from_millis(args.parsed(&flag, inline)?)
            }
            "poll-ms" => options.poll = Duration::from_millis(args.parsed(&flag, inline)?),
            "until-drained" => {
                no_value(&flag, inline)?;
                options.until_drained = true;
            }
            "print-truth" => options.print_truth = Some(PathBuf::from(args.value(&flag, inline)?)),
            _ => return Err(UsageError(format!("unknown flag --{flag}"))),
        }
    }
    if options.keys == 0 || options.writers == 0 || options.per_tx == 0 {
        return Err(UsageError(
            "--keys, --writers and --per-tx must be at least 1".into(),
        ));
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
            eprintln!("crm-outbox-owner: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm-outbox-owner: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let outbox = crm_outbox(&options.table)?;
    // Create the tables once, before writers and the relay start.
    match &options.postgres {
        Some(config) => drop(PostgresOwner::connect(config, &outbox).await?),
        None => drop(SqliteOwner::open(&options.db, &outbox)?),
    }
    let writing = Arc::new(AtomicBool::new(options.mode != Mode::Relay));
    let relay = match options.mode {
        Mode::Write => None,
        Mode::Both | Mode::Relay => {
            let relay = start_relay(&options, &outbox).await?;
            Some(tokio::spawn(relay_loop(
                relay,
                Arc::clone(&writing),
                options.mode == Mode::Both || options.until_drained,
            )))
        }
    };
    if options.mode != Mode::Relay {
        let started = Instant::now();
        write_all(&options, &outbox).await?;
        writing.store(false, Ordering::SeqCst);
        println!(
            "written: changes={} writers={} ({:.1} s)",
            options.changes,
            options.writers,
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(relay) = relay {
        let totals = relay
            .await
            .map_err(|e| format!("the relay task failed: {e}"))?;
        println!(
            "relayed: published={} superseded={} set_aside={}",
            totals.published, totals.superseded, totals.set_aside
        );
    }
    if let Some(path) = &options.print_truth {
        let truth = truth(&options, &outbox).await?;
        let lines = write_state_lines(
            path,
            truth
                .iter()
                .map(|(key, (sequence, state))| (key, (*sequence).into(), state.as_ref())),
        )?;
        println!("truth: file={} lines={lines}", path.display());
    }
    Ok(())
}

async fn start_relay(options: &Options, outbox: &Outbox) -> Result<OutboxRelay, String> {
    let client = connect(&options.nats, "crm-outbox-relay").await?;
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::new(options.prefix.clone()).map_err(|e| e.to_string())?;
    let version = ServerVersion::of(&client).map_err(|e| e.to_string())?;
    StateStream::new(options.stream.clone(), subjects.clone())
        .ensure(&js, version)
        .await
        .map_err(|e| format!("creating the state stream: {e}"))?;
    let publisher = Publisher::new(js, subjects);
    let relay = match &options.postgres {
        Some(config) => OutboxRelay::postgres(outbox, config, publisher),
        None => OutboxRelay::sqlite(outbox, open_sqlite(&options.db)?, publisher)
            .map_err(|e| e.to_string())?,
    };
    let mut settings = RelaySettings::default();
    settings.lease_ttl = options.lease_ttl;
    settings.poll_interval = options.poll;
    Ok(relay.entity::<Customer>().with_settings(settings))
}

/// Runs the relay; with `until_drained`, returns once the writers are done
/// and a pass found nothing left.
async fn relay_loop(
    mut relay: OutboxRelay,
    writing: Arc<AtomicBool>,
    until_drained: bool,
) -> RelayReport {
    let mut totals = RelayReport::default();
    if !until_drained {
        relay.run().await;
    }
    let mut failures = 0u32;
    loop {
        let done = !writing.load(Ordering::SeqCst);
        match relay.relay_once().await {
            Ok(report) => {
                failures = 0;
                totals.published += report.published;
                totals.superseded += report.superseded;
                totals.set_aside += report.set_aside;
                if report.leader && report.read == 0 && done {
                    let _ = relay.release().await;
                    return totals;
                }
                if report.read == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(error) => {
                eprintln!("crm-outbox-owner: relay pass failed ({error}); retrying");
                failures = failures.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(100) * failures.min(20)).await;
            }
        }
    }
}

async fn write_all(options: &Options, outbox: &Outbox) -> Result<(), String> {
    let mut writers = Vec::new();
    for w in 0..options.writers {
        let changes =
            options.changes / options.writers + u64::from(w < options.changes % options.writers);
        let (options, outbox) = (options.clone(), outbox.clone());
        writers.push(tokio::spawn(async move {
            write_some(&options, &outbox, options.seed.wrapping_add(w), changes).await
        }));
    }
    for writer in writers {
        writer
            .await
            .map_err(|e| format!("a writer failed: {e}"))??;
    }
    Ok(())
}

async fn write_some(
    options: &Options,
    outbox: &Outbox,
    seed: u64,
    changes: u64,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mut left = changes;
    match &options.postgres {
        Some(config) => {
            let mut owner = PostgresOwner::connect(config, outbox).await?;
            while left > 0 {
                let count = left.min(options.per_tx);
                owner.edit(&mut rng, options.keys, count).await?;
                left -= count;
            }
        }
        None => {
            let db = options.db.clone();
            let (outbox, keys, per_tx) = (outbox.clone(), options.keys, options.per_tx);
            // SQLite blocks: a thread of its own.
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                let mut owner = SqliteOwner::open(&db, &outbox)?;
                while left > 0 {
                    let count = left.min(per_tx);
                    owner.edit(&mut rng, keys, count)?;
                    left -= count;
                }
                Ok(())
            })
            .await
            .map_err(|e| format!("a writer failed: {e}"))??;
        }
    }
    Ok(())
}

async fn truth(options: &Options, outbox: &Outbox) -> Result<Truth, String> {
    match &options.postgres {
        Some(config) => PostgresOwner::connect(config, outbox).await?.truth().await,
        None => SqliteOwner::open(&options.db, outbox)?.truth(),
    }
}
