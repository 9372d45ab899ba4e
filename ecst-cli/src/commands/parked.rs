//! `ecst parked list|retry|discard`: the parked events of a replica store.
//!
//! `discard` writes what `DurableReplica::discard_parked` writes (the
//! resolution `discarded: <why>`, as `Resolution::to_column` spells it);
//! `retry` clears a row's resolution, so the row is pending again. Both
//! change the store only: a running consumer keeps the parked events it
//! loaded (and may write over the change: superseding the row, or applying
//! and deleting it), and sees the change when it next loads the store (at
//! its next start, or `DurableReplica::reload`): stop it first. Nothing applies a pending parked
//! event by itself: the consumer's `DurableReplica::retry_parked` does, on
//! the application's call, through the version gate (an event older than
//! what its key holds is stale and leaves the lot). Until then a newer event
//! of its key supersedes it.

use ecst_runtime::consume::{ParkKind, Resolution};
use serde::Serialize;

use crate::cli::StoreArgs;
use crate::error::{Failure, Outcome, Verdict};
use crate::output;
use crate::store::{ParkedRow, Store};

/// One parked event, as `list --json` prints it.
#[derive(Serialize)]
struct Listed<'a> {
    entity: &'a str,
    stream_sequence: u64,
    subject: &'a str,
    key: Option<&'a str>,
    kind: &'a str,
    reason: &'a str,
    /// `pending`, `superseded` or `discarded`.
    status: &'static str,
    /// The resolution column as stored (`discarded: <why>`), `null` while
    /// pending.
    resolution: Option<&'a str>,
    payload_bytes: usize,
    /// The body as text, `null` when it is not UTF-8.
    payload: Option<&'a str>,
}

fn status(row: &ParkedRow) -> &'static str {
    match row.resolution.as_deref().map(Resolution::from_column) {
        None => "pending",
        Some(Resolution::Superseded) => "superseded",
        Some(Resolution::Discarded(_)) => "discarded",
    }
}

/// Runs `ecst parked list`.
pub async fn list(
    args: &StoreArgs,
    consumer: Option<String>,
    entity: Option<&str>,
    only_pending: bool,
    json: bool,
) -> Outcome {
    let store = Store::open(args).await?;
    let consumer = store.consumer(consumer).await?;
    let rows: Vec<ParkedRow> = store
        .parked(&consumer, entity)
        .await?
        .into_iter()
        .filter(|row| !only_pending || row.resolution.is_none())
        .collect();
    if json {
        let listed: Vec<Listed<'_>> = rows
            .iter()
            .map(|row| Listed {
                entity: &row.entity,
                stream_sequence: row.stream_sequence,
                subject: &row.subject,
                key: row.key.as_deref(),
                kind: row.kind.as_deref().unwrap_or("other"),
                reason: &row.reason,
                status: status(row),
                resolution: row.resolution.as_deref(),
                payload_bytes: row.payload.len(),
                payload: std::str::from_utf8(&row.payload).ok(),
            })
            .collect();
        output::json(&serde_json::json!({ "consumer": consumer, "parked": listed }))?;
        return Ok(Verdict::Good);
    }
    let pending = rows.iter().filter(|row| row.resolution.is_none()).count();
    say!(
        "{} parked event(s) of consumer `{consumer}` in {}, {pending} pending",
        rows.len(),
        store.name()
    );
    for row in &rows {
        let resolution = match &row.resolution {
            None => "pending".to_owned(),
            Some(text) => text.clone(),
        };
        say!(
            "  {} #{}  {}  {}  key {}  on `{}`",
            row.entity,
            row.stream_sequence,
            resolution,
            row.kind.as_deref().unwrap_or("other"),
            row.key.as_deref().unwrap_or("(none)"),
            row.subject
        );
        say!("      {}", row.reason);
    }
    Ok(Verdict::Good)
}

/// The parked event a command acts on.
pub struct Target<'a> {
    /// Its entity.
    pub entity: &'a str,
    /// Its stream sequence.
    pub stream_sequence: u64,
}

async fn find(store: &Store, consumer: &str, target: &Target<'_>) -> Result<ParkedRow, Failure> {
    store
        .parked(consumer, Some(target.entity))
        .await?
        .into_iter()
        .find(|row| row.stream_sequence == target.stream_sequence)
        .ok_or_else(|| {
            Failure::new(format!(
                "no `{}` event is parked at stream sequence {} for consumer `{consumer}` in {} \
                 (`ecst parked list` shows them)",
                target.entity,
                target.stream_sequence,
                store.name()
            ))
        })
}

/// Runs `ecst parked discard`.
pub async fn discard(
    args: &StoreArgs,
    consumer: Option<String>,
    target: Target<'_>,
    why: &str,
    json: bool,
) -> Outcome {
    let store = Store::open(args).await?;
    let consumer = store.consumer(consumer).await?;
    let row = find(&store, &consumer, &target).await?;
    if let Some(resolution) = &row.resolution {
        return Err(Failure::new(format!(
            "the event parked at stream sequence {} is already resolved ({resolution}); only a \
             pending one is discarded",
            row.stream_sequence
        )));
    }
    let resolution = Resolution::Discarded(why.to_owned());
    let column = resolution.to_column();
    store
        .set_resolution(
            &consumer,
            target.entity,
            target.stream_sequence,
            Some(&column),
        )
        .await?;
    report(json, &consumer, &target, Some(&column), "discarded")
}

/// Runs `ecst parked retry`.
pub async fn retry(
    args: &StoreArgs,
    consumer: Option<String>,
    entity: &str,
    stream_sequence: u64,
    json: bool,
) -> Outcome {
    let target = Target {
        entity,
        stream_sequence,
    };
    let store = Store::open(args).await?;
    let consumer = store.consumer(consumer).await?;
    let row = find(&store, &consumer, &target).await?;
    let kind = ParkKind::from_name(row.kind.as_deref().unwrap_or("other"));
    if matches!(kind, ParkKind::Misaddressed | ParkKind::Refused) {
        return Err(Failure::new(format!(
            "the event parked at stream sequence {stream_sequence} is `{kind}`: \
             `retry_parked` never applies that kind, so a retry would change nothing; discard \
             it instead"
        )));
    }
    if kind == ParkKind::PurgedTombstone {
        return Err(Failure::new(format!(
            "the event parked at stream sequence {stream_sequence} is `{kind}`: a redelivery of \
             a message handled before tombstones were purged, whose key the replica no longer \
             holds; `retry_parked` never applies it (it could bring back a deleted key); if the \
             key should exist, have its owner publish it again, and discard this one"
        )));
    }
    if row.resolution.is_none() {
        return Err(Failure::new(format!(
            "the event parked at stream sequence {stream_sequence} is already pending: the \
             consumer's next `retry_parked` tries it"
        )));
    }
    // A resolved row at or below the purge floor whose key the store does
    // not hold: the key's tombstone may have been purged, and a retry
    // (which runs the version gate, not the floor) would bring it back.
    let floor = store.purge_floor(&consumer, entity).await?;
    if floor > 0 && stream_sequence <= floor {
        let held = match row.key.as_deref() {
            Some(key) => store.row(&consumer, entity, key).await?.is_some(),
            None => false,
        };
        if !held {
            return Err(Failure::new(format!(
                "the event parked at stream sequence {stream_sequence} is at or below the purge \
                 floor {floor} (tombstones were purged after it was handled) and the store holds \
                 nothing for its key `{}`: its key may have been deleted and its tombstone \
                 purged, and a retry would bring it back; if the key should exist, have its \
                 owner publish it again",
                row.key.as_deref().unwrap_or("(none)")
            )));
        }
    }
    store
        .set_resolution(&consumer, entity, stream_sequence, None)
        .await?;
    report(json, &consumer, &target, None, "pending")
}

fn report(
    json: bool,
    consumer: &str,
    target: &Target<'_>,
    resolution: Option<&str>,
    status: &str,
) -> Outcome {
    if json {
        output::json(&serde_json::json!({
            "consumer": consumer,
            "entity": target.entity,
            "stream_sequence": target.stream_sequence,
            "status": status,
            "resolution": resolution,
        }))?;
    } else {
        match resolution {
            Some(resolution) => say!(
                "{} #{} of consumer `{consumer}`: {resolution}",
                target.entity,
                target.stream_sequence
            ),
            None => say!(
                "{} #{} of consumer `{consumer}`: pending again; the consumer sees it when it \
                 next loads its store, and tries it at its next `retry_parked` (through the \
                 version gate: applied if newer than what its key holds then, else stale)",
                target.entity,
                target.stream_sequence
            ),
        }
        say!(
            "note: a running consumer keeps the parked events it loaded (and its own writes may \
             undo this): stop it first; this takes effect when it next loads the store"
        );
    }
    Ok(Verdict::Good)
}
