//! `crm-owner`: the service that owns the customers.
//!
//! It keeps them in an in-memory "database", makes `--changes` edits
//! (creates, updates, deletes; invented deterministically from `--seed`)
//! and publishes a state event for every edit to the JetStream state
//! stream, which it provisions. With `--serve-bootstrap` it also answers
//! bootstrap requests from consumers and keeps running until Ctrl-C.
//!
//! Run `crm-owner --help` for the flags, and see README.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ecst::nats::{
    serve_bootstrap, BootstrapRequest, Publisher, ServerVersion, StateStream, Subjects,
};
use ecst::{Envelope, Producer, Sequence, SequenceError, StateEvent};
use ecst_example_crm::{
    connect, customer_id, no_value, write_state_lines, Arg, Args, Customer, Rng, UsageError,
    DEFAULT_NATS, DEFAULT_PREFIX, DEFAULT_STREAM, SOURCE,
};
use tokio::sync::watch;

const USAGE: &str = "\
usage: crm-owner [options]

Owns customers, publishes a state event for every edit to a NATS JetStream
state stream (which it creates), and optionally answers bootstrap requests.

options:
  --nats URL              NATS server (default 127.0.0.1:4222)
  --changes N             edits to make and publish (default 1000)
  --keys K                number of distinct customers (default 100)
  --seed S                seed of the invented edits (default 1)
  --rate R                edits per second, 0 = as fast as possible (default 0)
  --serve-bootstrap       also answer bootstrap requests; keep running until Ctrl-C
  --print-truth FILE      write the final state as JSON lines (key, sequence, state)
  --stream NAME           the state stream (default CRM)
  --prefix P              subject prefix: events go to P.customer.<id> (default crm)
  --fresh                 delete the stream first (its events from an earlier run)
  --replicas N            replicas of the stream when creating it, in a cluster
                          (default 1)
  --publish-retries N     publish a chunk again, up to N times, after a publish
                          failed (a broker restart, say); the server and the
                          sequence guard drop what was already stored
                          (default 0: the first failure ends the program)
  --touch-from-stdin      after the changes, read customer ids from stdin, one
                          a line, until end of input, and publish each one's
                          current state (or its deletion) again at its next
                          sequence; for tests where a foreign publisher wrote
                          on the owner's subjects
  -h, --help              this text";

/// Edits per `publish_all` (sent together, then acknowledged together).
const CHUNK: u64 = 256;

struct Options {
    nats: String,
    changes: u64,
    keys: u64,
    seed: u64,
    rate: f64,
    serve_bootstrap: bool,
    print_truth: Option<PathBuf>,
    stream: String,
    prefix: String,
    fresh: bool,
    replicas: usize,
    publish_retries: u32,
    touch_from_stdin: bool,
}

fn parse_options() -> Result<Option<Options>, UsageError> {
    let mut options = Options {
        nats: DEFAULT_NATS.to_owned(),
        changes: 1000,
        keys: 100,
        seed: 1,
        rate: 0.0,
        serve_bootstrap: false,
        print_truth: None,
        stream: DEFAULT_STREAM.to_owned(),
        prefix: DEFAULT_PREFIX.to_owned(),
        fresh: false,
        replicas: 1,
        publish_retries: 0,
        touch_from_stdin: false,
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
                "changes" => options.changes = args.parsed(&flag, inline)?,
                "keys" => options.keys = args.parsed(&flag, inline)?,
                "seed" => options.seed = args.parsed(&flag, inline)?,
                "rate" => options.rate = args.parsed(&flag, inline)?,
                "serve-bootstrap" => {
                    no_value(&flag, inline)?;
                    options.serve_bootstrap = true;
                }
                "print-truth" => options.print_truth = Some(args.value(&flag, inline)?.into()),
                "stream" => options.stream = args.value(&flag, inline)?,
                "prefix" => options.prefix = args.value(&flag, inline)?,
                "fresh" => {
                    no_value(&flag, inline)?;
                    options.fresh = true;
                }
                "replicas" => options.replicas = args.parsed(&flag, inline)?,
                "publish-retries" => options.publish_retries = args.parsed(&flag, inline)?,
                "touch-from-stdin" => {
                    no_value(&flag, inline)?;
                    options.touch_from_stdin = true;
                }
                _ => return Err(UsageError(format!("unknown option --{flag}"))),
            },
        }
    }
    if options.keys == 0 && options.changes > 0 {
        return Err(UsageError("--keys must be at least 1".into()));
    }
    if options.replicas == 0 {
        return Err(UsageError("--replicas must be at least 1".into()));
    }
    if !options.rate.is_finite() || options.rate < 0.0 {
        return Err(UsageError(
            "--rate must be a number of edits per second, 0 or more".into(),
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
            eprintln!("crm-owner: {error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm-owner: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One customer row: the state (`None` once deleted) and the sequence of
/// its last event.
struct Row {
    sequence: Sequence,
    state: Option<Customer>,
}

/// The owner's "database" and its producer.
struct Crm {
    rows: BTreeMap<String, Row>,
    producer: Producer<Customer>,
    /// Customers created so far: `c-000000 ..` below this number exist.
    created: u64,
    keys: u64,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    created: u64,
    updated: u64,
    deleted: u64,
}

const FIRST: &[&str] = &[
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken",
    "Radia", "Tony", "Hedy", "Niklaus", "Sophie", "Dennis",
];
const LAST: &[&str] = &[
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton",
    "Thompson", "Perlman", "Hoare", "Lamarr", "Wirth", "Wilson", "Ritchie",
];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    let index = usize::try_from(rng.below(from.len() as u64)).unwrap_or(0);
    from.get(index).copied().unwrap_or("Anonymous")
}

fn invent_customer(rng: &mut Rng, id: String) -> Customer {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let email = rng.chance(70).then(|| {
        format!(
            "{}.{}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        )
    });
    Customer {
        id,
        name: format!("{first} {last}"),
        email,
        credit_limit_cents: (rng.below(500) + 1) * 10_000,
    }
}

impl Crm {
    fn new(keys: u64) -> Self {
        Crm {
            rows: BTreeMap::new(),
            producer: Producer::new(SOURCE),
            created: 0,
            keys,
            counts: Counts::default(),
        }
    }

    /// Makes one edit and returns its event. `left` counts the edits still
    /// to make, this one included: every customer gets created while there
    /// are enough edits left for that.
    fn edit(&mut self, rng: &mut Rng, left: u64) -> Result<Envelope<Customer>, SequenceError> {
        let uncreated = self.keys - self.created;
        let create = uncreated > 0 && (self.created == 0 || left <= uncreated || rng.chance(75));
        if create {
            let customer = invent_customer(rng, customer_id(self.created));
            self.created += 1;
            self.counts.created += 1;
            return self.save(customer);
        }
        let id = customer_id(rng.below(self.created));
        let current = self.rows.get(&id).and_then(|row| row.state.clone());
        match current {
            Some(_) if rng.chance(12) => {
                let envelope = self.producer.delete(id.clone())?;
                self.rows.insert(
                    id,
                    Row {
                        sequence: envelope.sequence,
                        state: None,
                    },
                );
                self.counts.deleted += 1;
                Ok(envelope)
            }
            Some(mut customer) => {
                match rng.below(3) {
                    0 => customer.name = format!("{} {}", pick(rng, FIRST), pick(rng, LAST)),
                    1 => {
                        customer.email = match customer.email {
                            Some(_) => None,
                            None => Some(format!("{}@example.com", customer.id)),
                        }
                    }
                    _ => customer.credit_limit_cents = (rng.below(500) + 1) * 10_000,
                }
                self.counts.updated += 1;
                self.save(customer)
            }
            None => {
                // Deleted earlier: the customer comes back.
                let customer = invent_customer(rng, id);
                self.counts.created += 1;
                self.save(customer)
            }
        }
    }

    /// The customer's current state (or its deletion) again, at its next
    /// sequence; `None` for a customer never created.
    fn touch(&mut self, id: &str) -> Option<Result<Envelope<Customer>, SequenceError>> {
        let state = self.rows.get(id)?.state.clone();
        Some(match state {
            Some(customer) => self.save(customer),
            None => self.producer.delete(id.to_owned()).inspect(|envelope| {
                if let Some(row) = self.rows.get_mut(id) {
                    row.sequence = envelope.sequence;
                }
            }),
        })
    }

    fn save(&mut self, customer: Customer) -> Result<Envelope<Customer>, SequenceError> {
        let envelope = self.producer.upsert(customer.clone())?;
        self.rows.insert(
            customer.id.clone(),
            Row {
                sequence: envelope.sequence,
                state: Some(customer),
            },
        );
        Ok(envelope)
    }

    /// The answer to a bootstrap request: the current state of the keys
    /// asked for (all by default) as ordinary events with their real
    /// sequences; deleted customers as deletes, so that a replica that
    /// missed the delete learns of it.
    fn bootstrap(&self, request: &BootstrapRequest) -> Vec<Envelope<Customer>> {
        let envelope = |key: &String, row: &Row| {
            let id = format!("{}:{key}:{}", Customer::ENTITY, row.sequence);
            match &row.state {
                Some(state) => Envelope::upsert(SOURCE, id, row.sequence, state.clone()),
                None => Envelope::delete(SOURCE, id, key.clone(), row.sequence),
            }
        };
        match &request.keys {
            None => self
                .rows
                .iter()
                .map(|(key, row)| envelope(key, row))
                .collect(),
            Some(keys) => keys
                .iter()
                .filter_map(|key| self.rows.get_key_value(key))
                .map(|(key, row)| envelope(key, row))
                .collect(),
        }
    }
}

/// `publish_all`, and on a failure the same envelopes again after a pause,
/// up to `retries` times: what the server already stored comes back as a
/// duplicate (same event id) or is judged by the sequence guard. A retry
/// sends only the last envelope of each key: the earlier ones carry older
/// states of the same customer, which the stream may already hold a newer
/// one of (the guard would refuse them, rightly).
async fn publish_retrying(
    publisher: &Publisher,
    envelopes: &[Envelope<Customer>],
    retries: u32,
) -> Result<Vec<ecst::nats::Published>, String> {
    let mut attempt = 0;
    let mut sending: Vec<Envelope<Customer>> = envelopes.to_vec();
    loop {
        match publisher.publish_all(&sending).await {
            Ok(published) => return Ok(published),
            Err(error) if attempt < retries => {
                attempt += 1;
                eprintln!("crm-owner: publishing failed ({error}); retry {attempt} of {retries}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                sending = last_of_each_key(envelopes);
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// The last envelope of each key, in their order.
fn last_of_each_key(envelopes: &[Envelope<Customer>]) -> Vec<Envelope<Customer>> {
    let mut last = std::collections::HashMap::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        last.insert(envelope.key.clone(), i);
    }
    envelopes
        .iter()
        .enumerate()
        .filter(|(i, envelope)| last.get(&envelope.key) == Some(i))
        .map(|(_, envelope)| envelope.clone())
        .collect()
}

fn lock(crm: &Mutex<Crm>) -> std::sync::MutexGuard<'_, Crm> {
    // A panic while holding the lock cannot leave a row half-written.
    crm.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run(options: Options) -> Result<(), String> {
    let client = connect(&options.nats, "crm-owner").await?;
    let server = ServerVersion::of(&client).map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::new(options.prefix.clone()).map_err(|e| format!("--prefix: {e}"))?;

    if options.fresh {
        // Not there yet is fine; anything worse shows up in `ensure`.
        let _ = js.delete_stream(&options.stream).await;
    }
    let mut state_stream = StateStream::new(options.stream.clone(), subjects.clone());
    state_stream.replicas = options.replicas;
    let mut stream = state_stream
        .ensure(&js, server)
        .await
        .map_err(|e| e.to_string())?;
    let before = stream
        .info()
        .await
        .map_err(|e| format!("reading stream `{}`: {e}", options.stream))?
        .state
        .clone();
    println!(
        "owner: nats={} server={server} stream={} subjects={} messages={}",
        options.nats,
        options.stream,
        subjects.entity(Customer::ENTITY),
        before.messages
    );
    if options.changes > 0 && before.messages > 0 {
        return Err(format!(
            "stream `{}` already holds {} events from an earlier run. This owner keeps its database \
             in memory and would start every customer at sequence 1 again, so replicas would ignore \
             its events as stale. Pass --fresh to delete the stream (and delete the consumers' \
             replica files), or use another --stream and --prefix.",
            options.stream, before.messages
        ));
    }

    let crm = Arc::new(Mutex::new(Crm::new(options.keys)));
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });

    let mut responder = if options.serve_bootstrap {
        let crm = Arc::clone(&crm);
        let client = client.clone();
        let subjects = subjects.clone();
        println!(
            "owner: answering bootstrap requests on {}",
            subjects.bootstrap(Customer::ENTITY)
        );
        Some(tokio::spawn(async move {
            serve_bootstrap::<Customer, _>(client, &subjects, move |request| {
                lock(&crm).bootstrap(request)
            })
            .await
        }))
    } else {
        None
    };

    let publisher = Publisher::new(js.clone(), subjects.clone());
    let mut rng = Rng::new(options.seed);
    let started = Instant::now();
    let mut done = 0u64;
    let mut duplicates = 0u64;
    let report_every = (options.changes / 10).max(1);
    let mut next_report = report_every;
    while done < options.changes {
        if *stop.borrow() {
            println!(
                "owner: interrupted after {done} of {} changes",
                options.changes
            );
            break;
        }
        let mut count = CHUNK;
        if options.rate > 0.0 {
            // Edit number `done` is due `done / rate` seconds after the start.
            let due = started + Duration::from_secs_f64(done as f64 / options.rate);
            tokio::time::sleep_until(due.into()).await;
            let due_by_now = (started.elapsed().as_secs_f64() * options.rate) as u64 + 1;
            count = due_by_now.saturating_sub(done).clamp(1, CHUNK);
        }
        let count = count.min(options.changes - done);
        let envelopes = {
            let mut crm = lock(&crm);
            (0..count)
                .map(|i| crm.edit(&mut rng, options.changes - done - i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?
        };
        let published = publish_retrying(&publisher, &envelopes, options.publish_retries).await?;
        duplicates += published.iter().filter(|p| p.duplicate).count() as u64;
        done += count;
        if done >= next_report || done == options.changes {
            println!(
                "owner: published {done}/{} ({:.1} s)",
                options.changes,
                started.elapsed().as_secs_f64()
            );
            next_report = done + report_every;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if options.touch_from_stdin && !*stop.borrow() {
        println!("owner: reading customer ids to touch from stdin");
        let ids = tokio::task::spawn_blocking(|| {
            std::io::read_to_string(std::io::stdin())
                .map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
        })
        .await
        .map_err(|e| format!("reading stdin: {e}"))?
        .map_err(|e| format!("reading stdin: {e}"))?;
        let envelopes = {
            let mut crm = lock(&crm);
            ids.iter()
                .filter(|id| !id.trim().is_empty())
                .filter_map(|id| crm.touch(id.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?
        };
        for chunk in envelopes.chunks(CHUNK as usize) {
            let published = publish_retrying(&publisher, chunk, options.publish_retries).await?;
            duplicates += published.iter().filter(|p| p.duplicate).count() as u64;
        }
        println!("touch: asked={} published={}", ids.len(), envelopes.len());
    }

    let after = stream
        .info()
        .await
        .map_err(|e| format!("reading stream `{}`: {e}", options.stream))?
        .state
        .clone();
    {
        let crm = lock(&crm);
        let live = crm.rows.values().filter(|row| row.state.is_some()).count();
        println!(
            "summary: changes={done} created={} updated={} deleted={} duplicates={duplicates} keys={} live={live} \
             tombstones={} elapsed={elapsed:.2}s rate={:.0}/s",
            crm.counts.created,
            crm.counts.updated,
            crm.counts.deleted,
            crm.rows.len(),
            crm.rows.len() - live,
            if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 },
        );
        println!(
            "stream: name={} messages={} last_sequence={}",
            options.stream, after.messages, after.last_sequence
        );
        if let Some(path) = &options.print_truth {
            let lines = crm
                .rows
                .iter()
                .map(|(key, row)| (key, row.sequence, row.state.as_ref()));
            let written = write_state_lines(path, lines)?;
            println!("truth: file={} lines={written}", path.display());
        }
    }
    client
        .flush()
        .await
        .map_err(|e| format!("flushing the connection: {e}"))?;

    if let Some(task) = responder.as_mut() {
        println!("owner: serving bootstrap requests; Ctrl-C to stop");
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => println!("owner: stopped"),
            ended = task => match ended {
                Ok(Ok(())) => return Err("the bootstrap subscription ended (connection closed?)".into()),
                Ok(Err(error)) => return Err(format!("serving bootstrap requests: {error}")),
                Err(error) => return Err(format!("the bootstrap responder failed: {error}")),
            },
        }
    }
    Ok(())
}
