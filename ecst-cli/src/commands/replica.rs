//! `ecst replica show` (one key's row) and `ecst replica diff` (the store
//! against the stream: is my replica right?).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::cli::StoreArgs;
use crate::error::{chain, Failure, Outcome, Verdict};
use crate::event;
use crate::nats::{self, From};
use crate::output;
use crate::store::{Checkpoint, Store};

/// What `show --json` prints.
#[derive(Serialize)]
struct Shown<'a> {
    consumer: &'a str,
    entity: &'a str,
    key: &'a str,
    sequence: u64,
    schema_version: i64,
    deleted: bool,
    state: Option<Value>,
    checkpoint: Option<Checkpoint>,
    pending_parked: usize,
}

/// Runs `ecst replica show`.
pub async fn show(
    args: &StoreArgs,
    consumer: Option<String>,
    entity: &str,
    key: &str,
    json: bool,
) -> Outcome {
    let store = Store::open(args).await?;
    let consumer = store.consumer(consumer).await?;
    let Some(row) = store.row(&consumer, entity, key).await? else {
        return Err(Failure::new(format!(
            "{} holds no row of `{entity}` key `{key}` for consumer `{consumer}`",
            store.name()
        )));
    };
    let checkpoint = store.checkpoint(&consumer, entity).await?;
    let pending_parked = store
        .parked(&consumer, Some(entity))
        .await?
        .iter()
        .filter(|p| p.resolution.is_none() && p.key.as_deref() == Some(key))
        .count();
    let state = row
        .state
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    if json {
        output::json(&Shown {
            consumer: &consumer,
            entity,
            key: &row.key,
            sequence: row.sequence,
            schema_version: row.schema_version,
            deleted: state.is_none(),
            state,
            checkpoint,
            pending_parked,
        })?;
        return Ok(Verdict::Good);
    }
    say!(
        "{entity} {}  sequence {}  (consumer `{consumer}`, {})",
        row.key,
        row.sequence,
        store.name()
    );
    say!("  schema version  {}", row.schema_version);
    match checkpoint {
        Some(c) => say!(
            "  checkpoint      stream sequence {}, {} events applied{}",
            c.stream_sequence,
            c.applied,
            shared_note(&c)
        ),
        None => say!("  checkpoint      none"),
    }
    if pending_parked > 0 {
        say!(
            "  parked          {pending_parked} pending event(s) of this key (`ecst parked list`)"
        );
    }
    match state {
        Some(state) => {
            let pretty = serde_json::to_string_pretty(&state).unwrap_or_else(|_| state.to_string());
            say!("state:\n{pretty}");
        }
        None => say!("state: (deleted: a tombstone)"),
    }
    Ok(Verdict::Good)
}

/// What `replica diff` compares the store with.
pub struct DiffTarget<'a> {
    /// The NATS server.
    pub server: &'a str,
    /// The stream's subject prefix.
    pub prefix: &'a str,
    /// The entity.
    pub entity: &'a str,
    /// Keys listed per kind at most.
    pub limit: usize,
}

/// A key on which the store and the stream disagree.
#[derive(Clone, Serialize)]
struct Disagreement {
    key: String,
    /// The sequence the store holds; `null` when it has no row.
    replica_sequence: Option<u64>,
    /// The ecst sequence of the stream's latest event; `null` when the
    /// stream has none.
    latest_sequence: Option<u64>,
    /// The stream sequence of that event.
    message: Option<u64>,
    /// `not_consumed` (after the checkpoint: lag), `parked` (the consumer
    /// parked the event), `passed` (at or before the checkpoint, not
    /// applied and not parked), or `null` for `extra` and `ahead`.
    cause: Option<&'static str>,
    /// For people.
    note: String,
}

/// A stream message that is not a readable event of the entity.
#[derive(Serialize)]
struct Unreadable {
    subject: String,
    message: u64,
    why: String,
}

/// What `diff --json` prints.
#[derive(Serialize)]
struct Report<'a> {
    consumer: &'a str,
    entity: &'a str,
    stream: &'a str,
    checkpoint: Option<Checkpoint>,
    stream_keys: usize,
    replica_keys: usize,
    in_sync: usize,
    missing: Listed,
    stale: Listed,
    extra: Listed,
    ahead: Listed,
    unreadable: Vec<Unreadable>,
    /// `in_sync`, `catching_up` (every difference is after the checkpoint)
    /// or `out_of_sync`.
    verdict: &'static str,
}

#[derive(Serialize)]
struct Listed {
    count: usize,
    keys: Vec<Disagreement>,
}

impl Listed {
    fn new(mut all: Vec<Disagreement>, limit: usize) -> Self {
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let count = all.len();
        all.truncate(limit);
        Listed { count, keys: all }
    }
}

/// The stream's latest event of one key.
struct Latest {
    sequence: u64,
    deleted: bool,
    message: u64,
}

/// Runs `ecst replica diff`.
pub async fn diff(
    args: &StoreArgs,
    consumer: Option<String>,
    target: DiffTarget<'_>,
    json: bool,
) -> Outcome {
    let DiffTarget {
        server,
        prefix,
        entity,
        limit,
    } = target;
    let subjects = nats::subjects(prefix)?;
    subjects
        .event(entity, "k")
        .map_err(|e| Failure::new(chain(&e)))?;
    let filter = subjects.entity(entity);
    let store = Store::open(args).await?;
    let consumer = store.consumer(consumer).await?;
    let nats = nats::connect(server).await?;
    let stream = nats.stream_for(prefix, &filter).await?;
    let stream_name = stream.cached_info().config.name.clone();

    // The store first: what the stream holds then is at least as new.
    let checkpoint = store.checkpoint(&consumer, entity).await?;
    let rows: HashMap<String, (u64, bool)> = store
        .keys(&consumer, entity)
        .await?
        .into_iter()
        .map(|row| (row.key, (row.sequence, row.tombstone)))
        .collect();
    let parked: HashMap<u64, String> = store
        .parked(&consumer, Some(entity))
        .await?
        .into_iter()
        .filter(|p| p.resolution.is_none())
        .map(|p| {
            let kind = p.kind.unwrap_or_else(|| "other".to_owned());
            (p.stream_sequence, format!("{kind}: {}", p.reason))
        })
        .collect();

    // Events published during the scan are read too, up to the last one
    // stored when it started (or until none is pending).
    let last_at_start = stream.cached_info().state.last_sequence;
    let mut scan = nats::Scan::start(&stream, &filter, From::LastPerSubject).await?;
    let total = scan.pending_at_start;
    let bar = output::progress(total, "reading the stream", json);
    let mut latest: BTreeMap<String, Latest> = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut more = total > 0;
    while more {
        let scanned = scan.next_pending().await?;
        more = scanned.pending > 0 && scanned.message.stream_sequence < last_at_start;
        bar.inc(1);
        let message = scanned.message;
        let key = match subjects.address(&message.subject) {
            Ok(address) if address.entity == entity => address.key.into_owned(),
            Ok(address) => {
                unreadable.push(Unreadable {
                    why: format!("a subject of entity `{}`", address.entity),
                    subject: message.subject,
                    message: message.stream_sequence,
                });
                continue;
            }
            Err(why) => {
                unreadable.push(Unreadable {
                    why: format!("not a subject ecst writes: {why}"),
                    subject: message.subject,
                    message: message.stream_sequence,
                });
                continue;
            }
        };
        let event = match event::read(&message) {
            Ok(event) if event.entity == entity && event.key == key => event,
            Ok(event) => {
                unreadable.push(Unreadable {
                    why: format!(
                        "misaddressed: the envelope names `{}` key `{}`",
                        event.entity, event.key
                    ),
                    subject: message.subject,
                    message: message.stream_sequence,
                });
                continue;
            }
            Err(why) => {
                unreadable.push(Unreadable {
                    why: format!("not an ecst event: {why}"),
                    subject: message.subject,
                    message: message.stream_sequence,
                });
                continue;
            }
        };
        latest.insert(
            key,
            Latest {
                sequence: event.sequence,
                deleted: event.is_delete(),
                message: message.stream_sequence,
            },
        );
    }
    bar.finish_and_clear();

    let behind = |message: u64| -> (&'static str, String) {
        if let Some(reason) = parked.get(&message) {
            return ("parked", format!("parked by the consumer: {reason}"));
        }
        match checkpoint {
            Some(c) if message <= c.stream_sequence => (
                "passed",
                format!(
                    "the consumer passed it (checkpoint at stream sequence {}) without applying \
                     or parking it",
                    c.stream_sequence
                ),
            ),
            Some(c) => (
                "not_consumed",
                format!(
                    "not consumed yet (after the checkpoint at stream sequence {})",
                    c.stream_sequence
                ),
            ),
            None => (
                "not_consumed",
                "not consumed yet (the consumer has no checkpoint)".to_owned(),
            ),
        }
    };
    let (mut missing, mut stale, mut extra, mut ahead) = (vec![], vec![], vec![], vec![]);
    let mut in_sync = 0;
    for (key, event) in &latest {
        match rows.get(key) {
            None if event.deleted => in_sync += 1,
            None => {
                let (cause, note) = behind(event.message);
                missing.push(Disagreement {
                    key: key.clone(),
                    replica_sequence: None,
                    latest_sequence: Some(event.sequence),
                    message: Some(event.message),
                    cause: Some(cause),
                    note,
                });
            }
            Some(&(held, _)) if held < event.sequence => {
                let (cause, note) = behind(event.message);
                stale.push(Disagreement {
                    key: key.clone(),
                    replica_sequence: Some(held),
                    latest_sequence: Some(event.sequence),
                    message: Some(event.message),
                    cause: Some(cause),
                    note,
                });
            }
            Some(&(held, _)) if held > event.sequence => ahead.push(Disagreement {
                key: key.clone(),
                replica_sequence: Some(held),
                latest_sequence: Some(event.sequence),
                message: Some(event.message),
                cause: None,
                note: "the replica holds a newer state than the stream's latest event (an older \
                       event was published over a newer one, or the stream was made again)"
                    .to_owned(),
            }),
            Some(_) => in_sync += 1,
        }
    }
    for (key, &(held, tombstone)) in &rows {
        if !latest.contains_key(key) && !tombstone {
            extra.push(Disagreement {
                key: key.clone(),
                replica_sequence: Some(held),
                latest_sequence: None,
                message: None,
                cause: None,
                note: "the stream holds no event of this key (purged from the stream, or the \
                       row came from elsewhere)"
                    .to_owned(),
            });
        }
    }

    let lag_only = missing
        .iter()
        .chain(&stale)
        .all(|d| d.cause == Some("not_consumed"));
    let verdict = match (missing.len() + stale.len(), extra.len() + ahead.len()) {
        (0, 0) => "in_sync",
        (_, 0) if lag_only => "catching_up",
        _ => "out_of_sync",
    };
    let report = Report {
        consumer: &consumer,
        entity,
        stream: &stream_name,
        checkpoint,
        stream_keys: latest.len(),
        replica_keys: rows.len(),
        in_sync,
        missing: Listed::new(missing, limit),
        stale: Listed::new(stale, limit),
        extra: Listed::new(extra, limit),
        ahead: Listed::new(ahead, limit),
        unreadable,
        verdict,
    };
    if json {
        output::json(&report)?;
    } else {
        print_report(&report, &store.name(), &filter)?;
    }
    Ok(if verdict == "out_of_sync" {
        Verdict::Problem
    } else {
        Verdict::Good
    })
}

fn print_report(report: &Report<'_>, store: &str, filter: &str) -> Result<(), Failure> {
    say!(
        "replica of `{}` for consumer `{}` in {store}",
        report.entity,
        report.consumer
    );
    let checkpoint = report.checkpoint.map_or_else(
        || "no checkpoint".to_owned(),
        |c| {
            format!(
                "checkpoint at stream sequence {}{}",
                c.stream_sequence,
                shared_note(&c)
            )
        },
    );
    say!(
        "  against stream `{}` ({filter}): {} keys in the stream, {} rows in the store, {checkpoint}",
        report.stream, report.stream_keys, report.replica_keys
    );
    say!("  in sync  {} keys", report.in_sync);
    for (kind, listed) in [
        ("missing", &report.missing),
        ("stale", &report.stale),
        ("ahead", &report.ahead),
        ("extra", &report.extra),
    ] {
        for d in &listed.keys {
            let replica = d
                .replica_sequence
                .map_or_else(|| "none".to_owned(), |s| s.to_string());
            let latest = match (d.latest_sequence, d.message) {
                (Some(sequence), Some(message)) => {
                    format!("stream has sequence {sequence} (message #{message})")
                }
                _ => "stream has none".to_owned(),
            };
            say!(
                "  {kind:<8} {}: replica has sequence {replica}, {latest}: {}",
                d.key,
                d.note
            );
        }
        if listed.count > listed.keys.len() {
            say!(
                "  {kind:<8} ... and {} more (--limit)",
                listed.count - listed.keys.len()
            );
        }
    }
    for u in &report.unreadable {
        say!(
            "  unreadable message #{} on `{}`: {} (every consumer parks it)",
            u.message,
            u.subject,
            u.why
        );
    }
    let counts = [
        (report.missing.count, "missing"),
        (report.stale.count, "stale"),
        (report.ahead.count, "ahead"),
        (report.extra.count, "extra"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, kind)| format!("{n} {kind}"))
    .collect::<Vec<_>>()
    .join(", ");
    match report.verdict {
        "in_sync" => say!("verdict: in sync: every key holds the stream's latest event"),
        "catching_up" => {
            say!("verdict: catching up: {counts}, all after the checkpoint; in sync up to it")
        }
        _ => say!("verdict: NOT in sync: {counts}"),
    }
    Ok(())
}

/// ` (the router's, shared by its entities)` for a router's checkpoint.
fn shared_note(checkpoint: &Checkpoint) -> &'static str {
    if checkpoint.shared {
        " (the router's, shared by its entities)"
    } else {
        ""
    }
}
