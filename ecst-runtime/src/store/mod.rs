//! Durable replicas: the replica's state and the consumer's checkpoint,
//! written in one transaction.
//!
//! A [`DurableReplica`] keeps a [`Replica`] in memory for reads and writes
//! every change to a [`ReplicaStore`] together with the [`Checkpoint`]: the
//! stream position up to which every event has been applied. A crash at any
//! point loses nothing (what was not committed is delivered again) and
//! applies nothing twice (what was committed is behind the checkpoint, and
//! a redelivery of it is a [`Duplicate`](crate::Outcome::Duplicate) anyway).
//!
//! A [`DurableRouter`] does the same for several entity types consumed
//! from one stream: one replica per entity, one store, one checkpoint, one
//! transaction per batch across every entity. Both are a
//! [`DurableConsumer`], what a transport adapter (NATS's
//! `StreamFollower`) drives.
//!
//! Stores: `sqlite::SqliteStore` (feature `sqlite`, the embedded default)
//! and `postgres::PostgresStore` (feature `postgres`). Both keep each state
//! as JSON of the newest schema version with that version beside it, so a
//! store written by an older build is upcast when a newer one loads it.
//! Both are a [`ReplicaStore`] and a [`RouterStore`]; in memory,
//! [`MemoryStore`] and [`MemoryRouterStore`].

pub mod blocking;
mod consumer;
mod durable;
mod error;
mod memory;
// Only `parse_keys` and the type serve the memory stores; the rest, the SQL
// stores' columns.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod owed;
mod part;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod router;
mod router_memory;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod rows;
mod share;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

use core::future::Future;
use std::time::SystemTime;

pub use crate::consume::{BatchOutcome, Message, Parked};
pub use consumer::DurableConsumer;
pub use durable::DurableReplica;
pub use error::{StoreContext, StoreError};
pub use memory::MemoryStore;
pub use router::{DurableRouter, NotRegistered, RegisterError, RouterBuilder};
pub use router_memory::MemoryRouterStore;
pub use share::{RouterStore, ROUTER_CHECKPOINT_ENTITY};

use crate::event::StateEvent;
use crate::replica::Replica;
use crate::sequence::Sequence;

/// How far a consumer has come in its stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The broker's sequence of the last message handled; every message up
    /// to it has been applied (or parked) and committed.
    pub stream_sequence: u64,
    /// Events that changed the replica ([`Outcome::Inserted`],
    /// [`Outcome::Updated`], [`Outcome::Deleted`](crate::Outcome::Deleted)),
    /// counted since the store was created. Committed with the changes, so
    /// it is exact across crashes.
    ///
    /// [`Outcome::Inserted`]: crate::Outcome::Inserted
    /// [`Outcome::Updated`]: crate::Outcome::Updated
    pub applied: u64,
    /// The stream position the checkpoint had when tombstones were last
    /// purged ([`DurableReplica::purge_tombstones_before`]); `0` when none
    /// was, and after [`DurableReplica::rewind_stream_position`].
    ///
    /// A message at or below it (when it is above `0`) is a redelivery of
    /// one handled before the purge:
    ///
    /// - an upsert that would make live a key the replica does not hold
    ///   live (and that no tombstone at least as new makes
    ///   [`Stale`](crate::Outcome::Stale)) is an older upsert of a key
    ///   whose delete was purged: it is parked as
    ///   [`ParkKind::PurgedTombstone`](crate::consume::ParkKind::PurgedTombstone)
    ///   instead of applied;
    /// - a message that cannot apply for another reason (a future version,
    ///   say), of a key not held live, is parked as `PurgedTombstone` too
    ///   (its first reason in the text), so that
    ///   [`DurableReplica::retry_parked`] after an upgrade cannot bring the
    ///   key back;
    /// - a delete of a key the replica does not hold at all is `Stale`: it
    ///   was applied before, and applying it again would make a tombstone
    ///   older than the purged one.
    ///
    /// It is never above `stream_sequence` (a purge records the position,
    /// a rewind resets both). A stored checkpoint whose floor is above its
    /// position (written by hand, or by a build whose rewind kept the
    /// floor) is loaded with the floor lowered to the position, and a
    /// warning logged (feature `tracing`): no message past the position was
    /// handled, so none can have been handled before a purge, and the
    /// gate still guards every position the checkpoint vouches for.
    pub purged_through: u64,
    /// The identity of the stream the positions above count in: when it
    /// was created (on NATS, the stream's creation time), recorded by the
    /// transport adapter ([`DurableReplica::set_stream_created`]) and
    /// written with every checkpoint after.
    /// `None` until one is recorded (a new store, a store of an older
    /// build), and after [`DurableReplica::rewind_stream_position`].
    ///
    /// A stream deleted and created again under the same name numbers its
    /// messages from 1 again: compared with the checkpoint's position alone,
    /// a new stream longer than the old checkpoint would have its first
    /// messages skipped. The NATS `StreamFollower` compares this identity
    /// with the stream's at every start, and rewinds when it differs.
    pub stream_created: Option<SystemTime>,
}

impl Checkpoint {
    /// The checkpoint as loaded: its floor at most its position (see
    /// [`Checkpoint::purged_through`]).
    pub(crate) fn loaded(mut self, entity: &str) -> Self {
        if self.purged_through > self.stream_sequence {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                target: "ecst",
                entity,
                stream_sequence = self.stream_sequence,
                purged_through = self.purged_through,
                "the stored purge floor is above the stream position: lowered to the position"
            );
            #[cfg(not(feature = "tracing"))]
            let _ = entity;
            self.purged_through = self.stream_sequence;
        }
        self
    }
}

/// One key's new content, as committed.
#[derive(Debug)]
pub struct StoredEntry<'a, T: StateEvent> {
    /// The key.
    pub key: &'a T::Key,
    /// The sequence the key now holds.
    pub sequence: Sequence,
    /// The schema version the state was read at
    /// ([`Replica::read_version`]); `T::VERSION` for a tombstone. Stores
    /// keep it so that the tie-break between two events of one sequence
    /// gives the same answer after a reload.
    pub read_version: u32,
    /// The state, or `None` for a tombstone.
    pub state: Option<&'a T>,
    /// The state as JSON of `T::VERSION`, when the replica has one at hand:
    /// the `data` of the event that set it, which was written at
    /// `T::VERSION` and decoded to `state` as it is (no upcast, no tolerant
    /// read of a newer version), so that `T::from_json_version(T::VERSION,
    /// json)` gives `state` again. A store that keeps JSON can write it
    /// instead of serializing `state`. `None` for a tombstone, and for a
    /// state that came otherwise (upcast, merged, loaded): serialize it.
    ///
    /// It may differ from what serializing `state` gives (whitespace, the
    /// order of fields, fields `T` does not have, escapes), never in what
    /// it decodes to. A store that writes it never serializes the state, so
    /// it holds one whose `Serialize` would fail.
    pub json: Option<&'a str>,
    /// For a tombstone, when the key was deleted (the replica's
    /// [`Replica::deleted_at`]); `None` for a state. Stores keep it so that
    /// a tombstone's age survives a reload, and
    /// [`DurableReplica::purge_tombstones_before`] purges it on time.
    pub deleted_at: Option<SystemTime>,
}

/// What one transaction writes.
#[derive(Debug)]
pub struct Commit<'a, T: StateEvent> {
    /// Keys whose state or tombstone changed.
    pub entries: Vec<StoredEntry<'a, T>>,
    /// Parked events to write: set aside in this batch, or resolved
    /// (superseded, discarded) since. A stream sequence already stored is
    /// overwritten; one given twice keeps its last form.
    pub parked: &'a [Parked],
    /// Parked events to delete (applied on a retry, or purged), by stream
    /// sequence.
    pub unparked: &'a [u64],
    /// Tombstones to delete, by key
    /// ([`DurableReplica::purge_tombstones_before`]). A key that holds a
    /// state in the store (not a tombstone) must be left alone.
    pub purged: &'a [T::Key],
    /// The checkpoint after the batch.
    pub checkpoint: Checkpoint,
    /// The change feed's *owed keys* to store with the checkpoint: the keys
    /// whose changes are not yet known to be reported to the feed
    /// ([`DurableReplica::on_change`]), each once. `None` (always, when no
    /// feed is registered): leave what is stored as it is. `Some(keys)`:
    /// replace it (an empty slice clears it).
    ///
    /// Added in this release (an API change): a store that ignores it (and
    /// loads [`Loaded::owed`] empty) still works, but its feed is at most
    /// once across crashes, as before.
    pub owed: Option<&'a [T::Key]>,
}

/// What a store holds, as loaded at start.
pub struct Loaded<T: StateEvent> {
    /// The replica, states and tombstones with their sequences.
    pub replica: Replica<T>,
    /// The checkpoint, `None` for a new store.
    pub checkpoint: Option<Checkpoint>,
    /// Events parked and not yet resolved, oldest first.
    pub parked: Vec<Parked>,
    /// The change feed's owed keys as last committed ([`Commit::owed`]);
    /// empty for a new store. Each is reported again, by its current entry,
    /// when a feed is registered ([`DurableReplica::on_change`]).
    ///
    /// Added in this release (an API change): a store of your own that does
    /// not keep owed keys sets it to `Vec::new()` (its feed is then at most
    /// once across crashes).
    pub owed: Vec<T::Key>,
}

/// A durable home for one replica and its consumer's checkpoint.
///
/// Implementations write everything in a [`Commit`] atomically: after a
/// crash, [`ReplicaStore::load`] returns either all of it or none of it.
///
/// A consumer name must have one writer at a time. The SQL stores check it
/// in every commit: one whose stored checkpoint is not the one this writer
/// last loaded or committed fails with [`StoreError::CheckpointMoved`]. A
/// store of your own that several processes can open should do the same
/// (compare, then write, in the commit's transaction). The memory stores
/// need no check: a clone is a copy, never shared by two writers.
pub trait ReplicaStore<T: StateEvent> {
    /// What can go wrong.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether the store reads [`StoredEntry::json`]. A store that never
    /// writes JSON (one that keeps states as values) sets it to `false`,
    /// and the replica then keeps no copy of each event's `data` for the
    /// commit (the entries' `json` are `None`). The default: `true`.
    const KEEPS_JSON: bool = true;

    /// Loads the replica, the checkpoint and the parked events.
    fn load(&mut self) -> impl Future<Output = Result<Loaded<T>, Self::Error>> + Send;

    /// When a failed commit failed because of one key's content (a state
    /// this store cannot encode or hold), that key. The durable replica then
    /// parks the batch's messages of that key and commits the rest, instead
    /// of failing the whole batch again and again. The default says `None`:
    /// every failure is the store's.
    fn unstorable_key(error: &Self::Error) -> Option<String> {
        let _ = error;
        None
    }

    /// Writes a batch's changes, parked events and checkpoint in one
    /// transaction.
    fn commit(
        &mut self,
        commit: Commit<'_, T>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
