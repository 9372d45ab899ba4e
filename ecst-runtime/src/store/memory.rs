//! A store that keeps its commits in memory: for tests, examples and
//! consumers that bootstrap again on every start anyway.
//!
//! Two kinds, one type:
//!
//! - [`MemoryStore`] (no type parameter) keeps every state as JSON, exactly
//!   as a durable store would keep it, for any entity type: the event's own
//!   `data` where the state was decoded from it as written
//!   ([`StoredEntry::json`](super::StoredEntry::json)), else the state
//!   serialized; a state that must be serialized and does not is refused
//!   ([`StoreError::EncodeState`]) as SQLite and PostgreSQL refuse it.
//! - `MemoryStore<T>` ([`MemoryStore::typed`]) keeps the states of one
//!   entity type as `T` values, cloned at commit and at load: no JSON is
//!   written or read per commit, which makes it the fast one for catch-up.
//!   It holds every state it is given, so it never reports one as
//!   unstorable.

use std::collections::{BTreeMap, HashMap};
use std::future::{ready, Future};
use std::time::SystemTime;

use super::blocking::ReadyStore;
use super::{Checkpoint, Commit, Loaded, Parked, ReplicaStore, StoreContext, StoreError};
use crate::envelope::Change;
use crate::event::{EntityKey, StateEvent};
use crate::replica::Replica;
use crate::sequence::Sequence;

/// A [`ReplicaStore`] in memory. Nothing survives the process.
///
/// `MemoryStore` (the default parameter, built with [`MemoryStore::new`])
/// keeps commits as JSON, exactly as a durable store would keep them, so a
/// [`DurableReplica`](super::DurableReplica) reopened on a clone of the store
/// sees what was committed and nothing more, and a state that must be
/// serialized (it was not decoded from its event's `data` as written: see
/// [`StoredEntry::json`](super::StoredEntry::json)) and does not serialize
/// fails its commit with [`StoreError::EncodeState`] (the durable replica
/// then parks that key's messages, as with SQLite or PostgreSQL).
/// It serves any entity type.
///
/// `MemoryStore<T>` (built with [`MemoryStore::typed`]) keeps the states of
/// entity `T` as values of `T`, cloned: a commit costs a clone per changed
/// key instead of a JSON serialization, and a load a clone instead of a
/// parse. A reopened replica sees what was committed and nothing more, as
/// with the JSON store; but since nothing is serialized, it holds every
/// state, including one a JSON store would refuse.
///
/// ```
/// # use ecst_runtime::store::{DurableReplica, MemoryStore};
/// # use ecst_runtime::StateEvent;
/// # async fn demo<Customer: StateEvent + Clone>() -> Result<(), ecst_runtime::store::StoreError> {
/// // JSON, any entity:
/// let json = DurableReplica::<Customer, _>::open(MemoryStore::new()).await?;
/// // Typed, one entity:
/// let typed = DurableReplica::<Customer, _>::open(MemoryStore::<Customer>::typed()).await?;
/// # let _ = (json, typed);
/// # Ok(()) }
/// ```
pub struct MemoryStore<T = AnyState> {
    /// JSON rows, per key: sequence, read version, state with the schema
    /// version it was written in (`None` for a tombstone), deletion time
    /// (for a tombstone). Used by `MemoryStore`. Hashed, not ordered:
    /// nothing reads them in key order, and a commit inserts a key per
    /// changed state.
    rows: HashMap<String, StoredRow>,
    /// Typed rows, per key. Used by `MemoryStore<T>`.
    typed: HashMap<String, TypedRow<T>>,
    checkpoint: Option<Checkpoint>,
    parked: BTreeMap<u64, Parked>,
    /// The change feed's owed keys ([`Commit::owed`]), as text.
    owed: Vec<String>,
}

/// The default parameter of [`MemoryStore`]: a store that keeps JSON and
/// serves any entity type. No value of it exists.
#[derive(Clone, Copy, Debug)]
pub enum AnyState {}

type StoredRow = (Sequence, u32, Option<(u32, String)>, Option<SystemTime>);

/// One key in a typed store.
#[derive(Clone)]
struct TypedRow<T> {
    sequence: Sequence,
    read_version: u32,
    /// `None` for a tombstone.
    state: Option<T>,
    /// For a tombstone, when the key was deleted.
    deleted_at: Option<SystemTime>,
}

impl<T> Default for MemoryStore<T> {
    fn default() -> Self {
        MemoryStore {
            rows: HashMap::new(),
            typed: HashMap::new(),
            checkpoint: None,
            parked: BTreeMap::new(),
            owed: Vec::new(),
        }
    }
}

impl<T: Clone> Clone for MemoryStore<T> {
    fn clone(&self) -> Self {
        MemoryStore {
            rows: self.rows.clone(),
            typed: self.typed.clone(),
            checkpoint: self.checkpoint,
            parked: self.parked.clone(),
            owed: self.owed.clone(),
        }
    }
}

impl<T> core::fmt::Debug for MemoryStore<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &(self.rows.len() + self.typed.len()))
            .field("checkpoint", &self.checkpoint)
            .field("parked", &self.parked.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store that keeps states as JSON, for any entity type.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: StateEvent + Clone> MemoryStore<T> {
    /// An empty store that keeps the states of `T` as values of `T`
    /// (cloned), without JSON: write `MemoryStore::<T>::typed()`.
    pub fn typed() -> Self {
        Self::default()
    }
}

impl<T: StateEvent> ReplicaStore<T> for MemoryStore {
    type Error = StoreError;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<T>, StoreError>> + Send {
        // All the work happens here; the future only carries the result.
        ready(Ok(self.load_json()))
    }

    fn unstorable_key(error: &StoreError) -> Option<String> {
        error.unstorable_key().map(str::to_owned)
    }

    /// Writes everything or, when a state does not serialize, nothing
    /// ([`StoreError::EncodeState`]).
    fn commit(
        &mut self,
        commit: Commit<'_, T>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.commit_json(commit))
    }
}

impl<T: StateEvent + Clone> ReplicaStore<T> for MemoryStore<T> {
    type Error = StoreError;

    /// States are kept as values: no JSON.
    const KEEPS_JSON: bool = false;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<T>, StoreError>> + Send {
        ready(Ok(self.load_typed()))
    }

    /// Writes everything; a typed store holds every state.
    fn commit(
        &mut self,
        commit: Commit<'_, T>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.commit_typed(commit);
        ready(Ok(()))
    }
}

impl<T: StateEvent + Clone> ReadyStore<T> for MemoryStore<T> {
    fn not_ready(operation: &'static str) -> StoreError {
        StoreContext::new("memory", "", Some(T::ENTITY)).database(
            operation,
            "the store's future did not complete when polled (a ReadyStore must do its work at once)",
        )
    }
}

impl<S> MemoryStore<S> {
    /// The parked events and checkpoint of `commit`, as both kinds keep them.
    fn commit_bookkeeping<T: StateEvent>(&mut self, commit: &Commit<'_, T>) {
        for parked in commit.parked {
            self.parked.insert(parked.stream_sequence, parked.clone());
        }
        for sequence in commit.unparked {
            self.parked.remove(sequence);
        }
        self.checkpoint = Some(commit.checkpoint);
        if let Some(owed) = commit.owed {
            self.owed = owed.iter().map(ToString::to_string).collect();
        }
    }

    fn loaded<T: StateEvent>(&self, replica: Replica<T>) -> Loaded<T> {
        Loaded {
            replica,
            checkpoint: self.checkpoint,
            parked: self.parked.values().cloned().collect(),
            // Written from valid keys of `T`, so they parse back; one that
            // does not (another type under the same store) is left out.
            owed: self
                .owed
                .iter()
                .filter_map(|key| <T::Key as EntityKey>::parse_key(key).ok())
                .collect(),
        }
    }
}

impl MemoryStore {
    fn load_json<T: StateEvent>(&self) -> Loaded<T> {
        let mut replica = Replica::with_capacity(self.rows.len());
        for (key, (sequence, read_version, state, deleted_at)) in &self.rows {
            // Rows were written from valid values of `T`, so they read back;
            // a row that does not (another type under the same store) is
            // left out rather than invented.
            let Ok(key) = <T::Key as EntityKey>::parse_key(key) else {
                continue;
            };
            let change = match state {
                None => {
                    let deleted_at = deleted_at.unwrap_or_else(SystemTime::now);
                    replica.restore_tombstone(key, *sequence, deleted_at);
                    continue;
                }
                // Upcast from the version it was written in, as the SQL
                // stores do: a newer build reads an older build's rows.
                Some((version, json)) => match T::from_json_version(*version, json.as_bytes()) {
                    Ok(state) => Change::Upsert(state),
                    Err(_) => continue,
                },
            };
            replica.restore(key, *sequence, *read_version, change);
        }
        self.loaded(replica)
    }

    fn commit_json<T: StateEvent>(&mut self, commit: Commit<'_, T>) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(commit.entries.len());
        for entry in &commit.entries {
            // The event's own `data` where the entry has it: a JSON of the
            // state at `T::VERSION`, that loads as the state.
            let json = match (entry.json, entry.state) {
                (_, None) => None,
                (Some(json), Some(_)) => Some(Ok(json.to_owned())),
                (None, Some(state)) => Some(serde_json::to_string(state)),
            };
            let state = match json {
                None => None,
                Some(Ok(json)) => Some((T::VERSION, json)),
                Some(Err(source)) => {
                    return Err(StoreError::EncodeState {
                        context: Box::new(StoreContext::new("memory", "", Some(T::ENTITY))),
                        key: entry.key.to_string(),
                        source,
                    })
                }
            };
            rows.push((
                entry.key.to_string(),
                (entry.sequence, entry.read_version, state, entry.deleted_at),
            ));
        }
        self.rows.reserve(rows.len());
        self.rows.extend(rows);
        for key in commit.purged {
            let key = key.to_string();
            if matches!(self.rows.get(&key), Some((_, _, None, _))) {
                self.rows.remove(&key);
            }
        }
        self.commit_bookkeeping(&commit);
        Ok(())
    }
}

impl<T: StateEvent + Clone> MemoryStore<T> {
    fn load_typed(&self) -> Loaded<T> {
        let mut replica = Replica::with_capacity(self.typed.len());
        for (key, row) in &self.typed {
            // Keys were written from valid keys of `T`, so they parse back.
            let Ok(key) = <T::Key as EntityKey>::parse_key(key) else {
                continue;
            };
            match &row.state {
                None => {
                    let deleted_at = row.deleted_at.unwrap_or_else(SystemTime::now);
                    replica.restore_tombstone(key, row.sequence, deleted_at);
                }
                Some(state) => {
                    let change = Change::Upsert(state.clone());
                    replica.restore(key, row.sequence, row.read_version, change);
                }
            }
        }
        self.loaded(replica)
    }

    fn commit_typed(&mut self, commit: Commit<'_, T>) {
        self.typed.reserve(commit.entries.len());
        for entry in &commit.entries {
            let row = TypedRow {
                sequence: entry.sequence,
                read_version: entry.read_version,
                state: entry.state.cloned(),
                deleted_at: entry.deleted_at,
            };
            self.typed.insert(entry.key.to_string(), row);
        }
        for key in commit.purged {
            let key = key.to_string();
            if matches!(self.typed.get(&key), Some(TypedRow { state: None, .. })) {
                self.typed.remove(&key);
            }
        }
        self.commit_bookkeeping(&commit);
    }
}
