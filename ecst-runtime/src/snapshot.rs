//! Exporting a replica to JSON and importing it back, by sequence.
//!
//! The format records the entity and the schema version the states were
//! written in, so a snapshot taken by an older build is upcast on import:
//!
//! ```json
//! {"entity":"customer","schemaversion":3,"entries":[
//!   {"key":"c-1","sequence":4,"state":{"id":"c-1","name":"Ada"}},
//!   {"key":"c-2","sequence":9,"deleted":true}
//! ]}
//! ```

use std::io;

use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::{displays_as, Change};
use crate::error::DecodeErrorKind;
use crate::event::{EntityKey, StateEvent};
use crate::replica::{ApplyStats, Replica, Slot};
use crate::sequence::Sequence;
use crate::upcast::DecodeVersionError;

/// A snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Writing failed.
    #[error("writing the snapshot failed: {0}")]
    Write(#[source] serde_json::Error),
    /// The bytes are not a snapshot.
    #[error("not a replica snapshot: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The snapshot holds another entity type.
    #[error("the snapshot holds `{found}`, not `{expected}`")]
    WrongEntity {
        /// The entity in the snapshot.
        found: String,
        /// The replica's entity.
        expected: &'static str,
    },
    /// The snapshot was written by a build that knows a newer schema version.
    #[error("the snapshot is of schema version {version}; this build knows 1..={newest_known}")]
    FutureVersion {
        /// The snapshot's version.
        version: u32,
        /// The newest version this build knows.
        newest_known: u32,
    },
    /// One entry is invalid; nothing was imported.
    #[error("snapshot entry {index} (key `{key}`): {kind}")]
    Entry {
        /// The entry's position in `entries`.
        index: usize,
        /// The entry's key as written.
        key: String,
        /// What is wrong with it.
        kind: DecodeErrorKind,
    },
}

#[derive(Serialize)]
struct SnapshotOut<'a, T: StateEvent> {
    entity: &'static str,
    schemaversion: u32,
    entries: Entries<'a, T>,
}

struct Entries<'a, T: StateEvent>(Vec<(String, &'a Slot<T>)>);

#[derive(Serialize)]
struct EntryOut<'a, T> {
    key: &'a str,
    sequence: Sequence,
    /// The schema version the state was read at, when older than the
    /// snapshot's own (see `Replica::read_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    readversion: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a T>,
    #[serde(skip_serializing_if = "core::ops::Not::not")]
    deleted: bool,
}

impl<T: StateEvent> Serialize for Entries<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (key, slot) in &self.0 {
            let entry = match slot {
                Slot::Live {
                    sequence,
                    read_version,
                    state,
                    ..
                } => EntryOut {
                    key,
                    sequence: *sequence,
                    readversion: (read_version.get() < T::VERSION).then_some(read_version.get()),
                    state: Some(state),
                    deleted: false,
                },
                Slot::Tombstone { sequence, .. } => EntryOut {
                    key,
                    sequence: *sequence,
                    readversion: None,
                    state: None,
                    deleted: true,
                },
            };
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

#[derive(Deserialize)]
struct SnapshotIn<'a> {
    entity: String,
    schemaversion: u32,
    #[serde(borrow)]
    entries: Vec<EntryIn<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn<'a> {
    key: String,
    sequence: Sequence,
    #[serde(default)]
    readversion: Option<u32>,
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
    #[serde(default)]
    deleted: bool,
}

impl<T: StateEvent> Replica<T> {
    /// Writes every key (live states and tombstones) as a JSON snapshot,
    /// sorted by key so that snapshots diff well.
    pub fn write_snapshot<W: io::Write>(&self, writer: W) -> Result<(), SnapshotError> {
        let mut entries: Vec<(String, &Slot<T>)> = self
            .slots
            .iter()
            .map(|(key, slot)| (key.to_string(), slot))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let snapshot = SnapshotOut {
            entity: T::ENTITY,
            schemaversion: T::VERSION,
            entries: Entries(entries),
        };
        serde_json::to_writer(writer, &snapshot).map_err(SnapshotError::Write)
    }

    /// Merges a JSON snapshot into the replica by the same rules as
    /// [`Replica::apply_change`]: an entry replaces what the replica holds
    /// only if its sequence is higher. States written in an older schema
    /// version are upcast. The snapshot is validated whole before anything
    /// is merged: on error, the replica is unchanged.
    ///
    /// Returns the outcomes of the merge. They are not added to
    /// [`Replica::stats`], which counts events.
    pub fn import_snapshot(&mut self, json: &[u8]) -> Result<ApplyStats, SnapshotError> {
        let snapshot: SnapshotIn<'_> =
            serde_json::from_slice(json).map_err(SnapshotError::Malformed)?;
        if snapshot.entity != T::ENTITY {
            return Err(SnapshotError::WrongEntity {
                found: snapshot.entity,
                expected: T::ENTITY,
            });
        }
        let version = snapshot.schemaversion;
        if version > T::VERSION {
            return Err(SnapshotError::FutureVersion {
                version,
                newest_known: T::VERSION,
            });
        }
        let mut changes = Vec::with_capacity(snapshot.entries.len());
        for (index, entry) in snapshot.entries.into_iter().enumerate() {
            let fail = |key: String, kind| SnapshotError::Entry { index, key, kind };
            let key = match <T::Key as EntityKey>::parse_key(&entry.key) {
                Ok(key) if displays_as(&key, &entry.key) => key,
                Ok(key) => {
                    let reason = format!("not the key's canonical form: write `{key}`");
                    return Err(fail(entry.key, DecodeErrorKind::InvalidKey(reason)));
                }
                Err(e) => return Err(fail(entry.key, DecodeErrorKind::InvalidKey(e))),
            };
            let change = match (entry.deleted, entry.state) {
                (true, None) => Change::Delete,
                (true, Some(_)) => return Err(fail(entry.key, DecodeErrorKind::UnexpectedData)),
                (false, None) => return Err(fail(entry.key, DecodeErrorKind::MissingData)),
                (false, Some(raw)) => {
                    let mut de = serde_json::Deserializer::from_str(raw.get());
                    match T::deserialize_version(version, &mut de) {
                        Ok(state) if *state.key() == key => Change::Upsert(state),
                        Ok(state) => {
                            let payload_key = state.key().to_string();
                            return Err(fail(
                                entry.key,
                                DecodeErrorKind::KeyMismatch { payload_key },
                            ));
                        }
                        Err(DecodeVersionError::Mismatch { source: e, .. }) => {
                            return Err(fail(entry.key, DecodeErrorKind::PayloadMismatch(e)))
                        }
                        Err(DecodeVersionError::Upcast(e)) => {
                            return Err(fail(entry.key, DecodeErrorKind::Upcast(e)))
                        }
                        Err(DecodeVersionError::UnknownVersion { .. }) => {
                            return Err(fail(entry.key, DecodeErrorKind::InvalidVersion))
                        }
                    }
                }
            };
            // Read at most at the version the snapshot was written in.
            let read_version = entry.readversion.unwrap_or(version).min(version);
            changes.push((key, entry.sequence, read_version, change));
        }
        let mut stats = ApplyStats::default();
        for (key, sequence, read_version, change) in changes {
            stats.record(self.merge(key, sequence, read_version, change));
        }
        Ok(stats)
    }
}
