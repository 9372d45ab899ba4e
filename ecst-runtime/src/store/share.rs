//! The store side of a [`DurableRouter`](super::DurableRouter): one
//! transaction for several entities' shares and one checkpoint
//! ([`RouterStore`]), and the rows it reads and writes, without the
//! entities' types (states as JSON text).

use core::future::Future;
use std::borrow::Cow;
use std::time::SystemTime;

pub(crate) use super::owed::OwedByEntity;
use super::rows::StoredRow;
use super::{Checkpoint, Parked, StoreContext, StoreError, StoredEntry};
use crate::event::StateEvent;

/// The `entity` under which a router's one checkpoint is stored in
/// `ecst_checkpoint` (no entity can be named `*`: entity names are letters,
/// digits, `_` and `-`).
pub const ROUTER_CHECKPOINT_ENTITY: &str = "*";

/// What is wrong with `entity` as an entity name, if anything: it must be
/// `[A-Za-z][A-Za-z0-9_-]*`, one token of the NATS subject
/// `<prefix>.<entity>.<key>` (the rule the `StateEvent` derive enforces at
/// compile time; a hand-written impl is checked here, when a store or
/// router takes it).
pub(crate) fn entity_name_problem(entity: &str) -> Option<&'static str> {
    let mut chars = entity.chars();
    match chars.next() {
        None => Some("it is empty"),
        Some(first) if !first.is_ascii_alphabetic() => Some("it does not start with a letter"),
        Some(_) if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
            Some("it holds a character other than a letter, a digit, `_` or `-`")
        }
        Some(_) => None,
    }
}

/// [`entity_name_problem`] as the [`StoreError::InvalidEntity`] of a store
/// in `context` (the SQL stores'; a build without them has no caller).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn check_entity_name(
    entity: &'static str,
    context: &StoreContext,
) -> Result<(), StoreError> {
    match entity_name_problem(entity) {
        None => Ok(()),
        Some(reason) => Err(StoreError::InvalidEntity {
            context: Box::new(context.clone()),
            entity,
            reason,
        }),
    }
}

/// A durable home for several replicas of one consumer and their one
/// checkpoint: the store of a [`DurableRouter`](super::DurableRouter).
///
/// Implemented by `SqliteStore` (feature `sqlite`), `PostgresStore`
/// (feature `postgres`) and [`MemoryRouterStore`](super::MemoryRouterStore).
/// The trait is sealed: the rows it passes are the crate's own and may
/// change; implement [`ReplicaStore`](super::ReplicaStore) for a store of
/// your own.
pub trait RouterStore: sealed::Sealed {}

impl<S: sealed::Sealed> RouterStore for S {}

pub(crate) mod sealed {
    use super::*;

    /// What a [`RouterStore`] does.
    pub trait Sealed {
        /// Where errors happen: backend and consumer (no entity).
        fn router_context(&self) -> StoreContext;

        /// Loads the rows of `entities` (states, tombstones and parked
        /// events; one [`EntityRows`] per entity, in order) and the router's
        /// checkpoint, all from one snapshot.
        fn load_router(
            &mut self,
            entities: &[&'static str],
        ) -> impl Future<Output = Result<RouterRows, StoreError>> + Send;

        /// Whether this store writes `json`, an event's own `data` (see
        /// [`StoredEntry::json`]), as it is; `false`: the router serializes
        /// the state instead. The default takes every one.
        fn keeps_json(json: &str) -> bool {
            let _ = json;
            true
        }

        /// Writes every share and the checkpoint (under
        /// [`ROUTER_CHECKPOINT_ENTITY`]) in one transaction: all of it or
        /// none of it.
        fn commit_router(
            &mut self,
            commit: RouterCommit<'_>,
        ) -> impl Future<Output = Result<(), StoreError>> + Send;
    }

    /// What a router's store holds, as loaded at start.
    pub struct RouterRows {
        /// One per entity asked for, in the order asked.
        pub entities: Vec<EntityRows>,
        /// The router's checkpoint, `None` for a new consumer.
        pub checkpoint: Option<Checkpoint>,
        /// The entities the checkpoint covers, as stored with it
        /// ([`covered_entities`](super::covered_entities)); `None` when
        /// there is no checkpoint or it was written before they were
        /// recorded.
        pub covered: Option<String>,
        /// The keys owed to the entities' change feeds, as last committed,
        /// by entity (every entity stored, asked for or not).
        pub owed: super::OwedByEntity,
    }

    /// One entity's rows, not yet decoded.
    pub struct EntityRows {
        /// Where they come from (backend, consumer, entity), for errors.
        pub context: StoreContext,
        /// The `ecst_replica` rows, states as JSON text.
        pub entries: Vec<StoredRow<String>>,
        /// The parked events, by stream sequence.
        pub parked: Vec<Parked>,
    }

    /// One transaction of a router: every entity's share, one checkpoint.
    pub struct RouterCommit<'a> {
        /// The entities' shares (an entity with nothing to write is left
        /// out).
        pub shares: Vec<Share<'a>>,
        /// The checkpoint after the batch.
        pub checkpoint: Checkpoint,
        /// The entities the checkpoint covers (the router's registered
        /// entities, [`covered_entities`](super::covered_entities)), stored
        /// with it.
        pub covered: String,
        /// The keys owed to the entities' change feeds, by entity: the
        /// whole map replaces what is stored; `None` leaves it as it is (no
        /// feed registered).
        pub owed: Option<super::OwedByEntity>,
    }
}

pub(crate) use sealed::{EntityRows, RouterCommit, RouterRows};

/// The entities a router's checkpoint covers, as stored with it: the names,
/// sorted, without duplicates, joined by `,` (no entity name holds one).
pub(crate) fn covered_entities<'a>(entities: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = entities.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// Whether every one of `entities` is covered by `covered` (as stored by
/// [`covered_entities`]; `None`: nothing is known to be covered).
pub(crate) fn covers<'a>(
    covered: Option<&str>,
    entities: impl IntoIterator<Item = &'a str>,
) -> bool {
    let covered: Vec<&str> = covered.map_or_else(Vec::new, |c| c.split(',').collect());
    entities.into_iter().all(|entity| covered.contains(&entity))
}

/// One entity's share of a commit, its states encoded: what a
/// [`Commit`](super::Commit) is, without the type.
pub struct Share<'a> {
    /// The entity.
    pub(crate) entity: &'static str,
    /// The schema version the states are written in (`T::VERSION`).
    pub(crate) version: u32,
    /// Changed keys, each once.
    pub(crate) entries: Vec<EncodedEntry<'a>>,
    /// Parked events to write (a stream sequence given twice keeps its
    /// last form).
    pub(crate) parked: &'a [Parked],
    /// Parked events to delete, by stream sequence.
    pub(crate) unparked: &'a [u64],
    /// Tombstones to delete (never a state), by key.
    pub(crate) purged: Vec<String>,
}

impl Share<'_> {
    /// Whether the share writes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.parked.is_empty()
            && self.unparked.is_empty()
            && self.purged.is_empty()
    }
}

/// One key's new content, encoded.
pub(crate) struct EncodedEntry<'a> {
    pub(crate) key: String,
    pub(crate) sequence: u64,
    pub(crate) read_version: u32,
    /// The state as JSON (of `T::VERSION`), `None` for a tombstone:
    /// borrowed when the event's own `data` is one
    /// ([`StoredEntry::json`]), else serialized.
    pub(crate) state: Option<Cow<'a, str>>,
    /// A tombstone's deletion time.
    pub(crate) deleted_at: Option<SystemTime>,
}

/// A state that could not be encoded: its key, and serde_json's error.
pub(crate) struct Unencodable {
    pub(crate) entity: &'static str,
    pub(crate) key: String,
    pub(crate) source: serde_json::Error,
}

impl Unencodable {
    /// As the [`StoreError::EncodeState`] a store reports, in `context`.
    pub(crate) fn into_error(self, mut context: StoreContext) -> StoreError {
        context.entity = Some(self.entity);
        StoreError::EncodeState {
            context: Box::new(context),
            key: self.key,
            source: self.source,
        }
    }
}

/// Encodes one entity's share: its states as JSON (the event's own
/// `data` where the entry has it, [`StoredEntry::json`], and the store
/// `keeps` it; else serialized), its keys as text. `entries` name each key
/// once ([`Part::entries`](super::part::Part)).
pub(crate) fn encode<'a, T: StateEvent>(
    entries: Vec<StoredEntry<'a, T>>,
    parked: &'a [Parked],
    unparked: &'a [u64],
    purged: &[T::Key],
    keeps: fn(&str) -> bool,
) -> Result<Share<'a>, Unencodable> {
    let mut encoded: Vec<EncodedEntry<'a>> = Vec::with_capacity(entries.len());
    for entry in entries {
        let json = entry.json.filter(|json| keeps(json));
        let state = match (json, entry.state) {
            (_, None) => None,
            (Some(json), Some(_)) => Some(Cow::Borrowed(json)),
            (None, Some(state)) => match serde_json::to_string(state) {
                Ok(json) => Some(Cow::Owned(json)),
                Err(source) => {
                    return Err(Unencodable {
                        entity: T::ENTITY,
                        key: entry.key.to_string(),
                        source,
                    })
                }
            },
        };
        encoded.push(EncodedEntry {
            key: entry.key.to_string(),
            sequence: entry.sequence.get(),
            read_version: entry.read_version,
            state,
            deleted_at: entry.deleted_at,
        });
    }
    Ok(Share {
        entity: T::ENTITY,
        version: T::VERSION,
        entries: encoded,
        parked,
        unparked,
        purged: purged.iter().map(ToString::to_string).collect(),
    })
}
