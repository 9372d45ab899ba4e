//! The rows of the SQL stores' tables (see the tables in `sqlite` and
//! `postgres`): what both backends read and write, converted to and from the
//! store's types. Sequences and counters are `u64` in Rust and signed 64-bit
//! integers in SQL; a value that does not fit is a
//! [`StoreError::OutOfRange`], never wrapped.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Checkpoint, Loaded, Parked, StoreContext, StoreError};
use crate::consume::{ParkKind, ParkReason, Resolution};
use crate::envelope::Change;
use crate::event::{EntityKey, StateEvent};
use crate::replica::Replica;
use crate::sequence::Sequence;
use crate::upcast::PayloadError;

/// The range of a `u64` stored in a signed 64-bit column.
const U64_IN_BIGINT: &str =
    "a u64 stored in a signed 64-bit column must be in 0..=9223372036854775807";

/// `value` for a signed 64-bit column, or [`StoreError::OutOfRange`].
pub(crate) fn to_bigint(
    value: u64,
    context: &StoreContext,
    column: &'static str,
    key: Option<&str>,
) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange {
        context: Box::new(context.clone()),
        column,
        key: key.map(str::to_owned),
        value: i128::from(value),
        expected: U64_IN_BIGINT,
    })
}

/// A stored signed 64-bit value as a `u64`, or [`StoreError::OutOfRange`].
pub(crate) fn from_bigint(
    value: i64,
    context: &StoreContext,
    column: &'static str,
    key: Option<&str>,
) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::OutOfRange {
        context: Box::new(context.clone()),
        column,
        key: key.map(str::to_owned),
        value: i128::from(value),
        expected: U64_IN_BIGINT,
    })
}

/// One row of `ecst_replica` as read, before decoding.
pub struct StoredRow<S> {
    pub(crate) key: String,
    pub(crate) sequence: i64,
    pub(crate) schema_version: i64,
    /// The schema version the state was read at, `NULL` in rows written
    /// before the column existed (read as `schema_version`).
    pub(crate) read_version: Option<i64>,
    /// The state as the backend returns it, `None` for a tombstone.
    pub(crate) state: Option<S>,
    /// A tombstone's deletion time in microseconds since the Unix epoch
    /// ([`to_micros`]); `NULL` for a state, and in tombstones written
    /// before the column existed (read as the time of the load; the stores
    /// stamp such rows when they open).
    pub(crate) deleted_at: Option<i64>,
}

/// `time` as microseconds since the Unix epoch, for a `deleted_at` column
/// (a time before the epoch is the epoch; one past the year 294,000 the
/// largest value).
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
    })
}

/// A `deleted_at` column's microseconds as a time (a negative value, which
/// ecst never writes, is the epoch).
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// A replica of the rows of one entity as stored (JSON states, upcast
/// from their stored versions), sized for them up front: loading a million
/// keys grows no table.
pub(crate) fn restore_rows<T: StateEvent>(
    rows: Vec<StoredRow<String>>,
    context: &StoreContext,
) -> Result<Replica<T>, StoreError> {
    let mut replica = Replica::with_capacity(rows.len());
    for row in rows {
        restore_row(&mut replica, context, row, |version, json: String| {
            T::from_json_version(version, json.as_bytes())
        })?;
    }
    Ok(replica)
}

/// What a SQL store loaded for one entity, from its rows as read in one
/// transaction: the replica, the checkpoint (remembered in `seen`, to
/// commit only over it), the parked events and the feed's owed keys.
pub(crate) fn loaded<T: StateEvent>(
    rows: Vec<StoredRow<String>>,
    parked: Vec<Parked>,
    raw: Option<RawCheckpoint>,
    owed: Option<&str>,
    seen: &mut HashMap<String, Option<RawCheckpoint>>,
    context: &StoreContext,
) -> Result<Loaded<T>, StoreError> {
    let owed = super::owed::replica_keys::<T>(owed, context)?;
    let checkpoint = raw
        .map(|(columns, created)| stored_checkpoint(columns, created, context))
        .transpose()?;
    seen.insert(T::ENTITY.to_owned(), raw);
    Ok(Loaded {
        replica: restore_rows(rows, context)?,
        checkpoint,
        parked,
        owed,
    })
}

/// Decodes `row` (its state with `decode`, upcasting from the stored
/// version) and puts it into `replica` with [`Replica::restore`].
pub(crate) fn restore_row<T: StateEvent, S>(
    replica: &mut Replica<T>,
    context: &StoreContext,
    row: StoredRow<S>,
    decode: impl FnOnce(u32, S) -> Result<T, PayloadError>,
) -> Result<(), StoreError> {
    const COLUMN: &str = "ecst_replica.schema_version";
    let StoredRow {
        key: text,
        sequence,
        schema_version,
        read_version,
        state,
        deleted_at,
    } = row;
    let sequence = Sequence::new(from_bigint(
        sequence,
        context,
        "ecst_replica.sequence",
        Some(&text),
    )?);
    let key = match T::Key::parse_key(&text) {
        Ok(key) => key,
        Err(reason) => {
            return Err(StoreError::InvalidKey {
                context: Box::new(context.clone()),
                key: text,
                reason,
            })
        }
    };
    let change = match state {
        None => {
            if replica.entry(&key).is_some() {
                return Err(duplicate_key(context, text));
            }
            let deleted_at = deleted_at.map_or_else(SystemTime::now, from_micros);
            replica.restore_tombstone(key, sequence, deleted_at);
            return Ok(());
        }
        Some(state) => {
            let Ok(version) = u32::try_from(schema_version) else {
                return Err(StoreError::OutOfRange {
                    context: Box::new(context.clone()),
                    column: COLUMN,
                    key: Some(text),
                    value: i128::from(schema_version),
                    expected: "a schema version must be in 1..=4294967295",
                });
            };
            if version > T::VERSION {
                return Err(StoreError::FutureVersion {
                    context: Box::new(context.clone()),
                    key: text,
                    version,
                    newest: T::VERSION,
                });
            }
            match decode(version, state) {
                Ok(state) => Change::Upsert(state),
                Err(source) => {
                    return Err(StoreError::DecodeState {
                        context: Box::new(context.clone()),
                        key: text,
                        version,
                        source,
                    })
                }
            }
        }
    };
    if replica.entry(&key).is_some() {
        return Err(duplicate_key(context, text));
    }
    // Never above the version the state is stored in; a value out of range
    // (written by hand) falls back to it too.
    let stored_version = u32::try_from(schema_version).unwrap_or(T::VERSION);
    let read_version = read_version
        .and_then(|v| u32::try_from(v).ok())
        .map_or(stored_version, |v| v.min(stored_version));
    replica.restore(key, sequence, read_version, change);
    Ok(())
}

/// Two stored keys parse to the same key.
fn duplicate_key(context: &StoreContext, text: String) -> StoreError {
    StoreError::InvalidKey {
        context: Box::new(context.clone()),
        reason: "another stored key parses to the same key".to_owned(),
        key: text,
    }
}

/// A stream's creation time ([`Checkpoint::stream_created`]) as its
/// `ecst_checkpoint.stream_created` column: nanoseconds since the Unix
/// epoch (negative before it; a time past the year 2262 is stored as
/// `i64::MAX`, and compares as that).
pub(crate) fn created_column(checkpoint: &Checkpoint) -> Option<i64> {
    checkpoint
        .stream_created
        .map(|time| match time.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
        })
}

/// An `ecst_checkpoint.stream_created` column as a time
/// ([`created_column`]).
pub(crate) fn stored_created(nanos: Option<i64>) -> Option<SystemTime> {
    nanos.map(|nanos| {
        let magnitude = Duration::from_nanos(nanos.unsigned_abs());
        if nanos >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    })
}

/// `checkpoint` as its `ecst_checkpoint` columns, `[stream_sequence,
/// applied, purged_through]` (and [`created_column`]).
/// A checkpoint row as stored (`stream_sequence`, `applied`,
/// `purged_through`; `stream_created`): what a store remembers having last
/// loaded or committed, to commit only over that (one writer per consumer
/// name).
pub(crate) type RawCheckpoint = ([i64; 3], Option<i64>);

/// Checks that the checkpoint row stored now is the one this writer last
/// saw (`None` in `seen`: it has not loaded this row, nothing to check).
pub(crate) fn check_unmoved(
    seen: Option<&Option<RawCheckpoint>>,
    stored: Option<RawCheckpoint>,
    context: &StoreContext,
) -> Result<(), StoreError> {
    match seen {
        Some(seen) if *seen != stored => {
            let position = |raw: &Option<RawCheckpoint>| {
                raw.and_then(|([sequence, _, _], _)| u64::try_from(sequence).ok())
            };
            Err(StoreError::CheckpointMoved {
                context: Box::new(context.clone()),
                seen: position(seen),
                stored: position(&stored),
            })
        }
        _ => Ok(()),
    }
}

pub(crate) fn checkpoint_columns(
    checkpoint: &Checkpoint,
    context: &StoreContext,
) -> Result<[i64; 3], StoreError> {
    let column = |value: u64, name: &'static str| to_bigint(value, context, name, None);
    Ok([
        column(
            checkpoint.stream_sequence,
            "ecst_checkpoint.stream_sequence",
        )?,
        column(checkpoint.applied, "ecst_checkpoint.applied")?,
        column(checkpoint.purged_through, "ecst_checkpoint.purged_through")?,
    ])
}

/// A checkpoint from its stored `ecst_checkpoint` columns
/// ([`checkpoint_columns`]).
pub(crate) fn stored_checkpoint(
    [stream_sequence, applied, purged_through]: [i64; 3],
    stream_created: Option<i64>,
    context: &StoreContext,
) -> Result<Checkpoint, StoreError> {
    let column = |value: i64, name: &'static str| from_bigint(value, context, name, None);
    Ok(Checkpoint {
        stream_sequence: column(stream_sequence, "ecst_checkpoint.stream_sequence")?,
        applied: column(applied, "ecst_checkpoint.applied")?,
        purged_through: column(purged_through, "ecst_checkpoint.purged_through")?,
        stream_created: stored_created(stream_created),
    })
}

/// One row of `ecst_parked` as read.
pub(crate) struct StoredParked {
    pub(crate) stream_sequence: i64,
    pub(crate) subject: String,
    pub(crate) key: Option<String>,
    pub(crate) reason: String,
    pub(crate) payload: Vec<u8>,
    /// `NULL` in rows written before the column existed.
    pub(crate) kind: Option<String>,
    pub(crate) resolution: Option<String>,
}

impl StoredParked {
    /// The parked event the row holds.
    pub(crate) fn into_parked(self, context: &StoreContext) -> Result<Parked, StoreError> {
        Ok(Parked {
            stream_sequence: from_bigint(
                self.stream_sequence,
                context,
                "ecst_parked.stream_sequence",
                self.key.as_deref(),
            )?,
            subject: self.subject,
            key: self.key,
            reason: ParkReason {
                kind: self
                    .kind
                    .as_deref()
                    .map_or(ParkKind::Other, ParkKind::from_name),
                message: self.reason,
            },
            payload: self.payload,
            resolution: self.resolution.as_deref().map(Resolution::from_column),
        })
    }
}
