//! A store that keeps its commits in memory: for tests, examples and
//! consumers that bootstrap again on every start anyway.

use std::collections::BTreeMap;
use std::future::{ready, Future};
use std::time::SystemTime;

use super::{Checkpoint, Commit, Loaded, Parked, ReplicaStore, StoreContext, StoreError};
use crate::envelope::Change;
use crate::event::{EntityKey, StateEvent};
use crate::replica::Replica;
use crate::sequence::Sequence;

/// A [`ReplicaStore`] in memory. Commits are kept as JSON, exactly as a
/// durable store would keep them, so a [`DurableReplica`](super::DurableReplica)
/// reopened on a clone of the store sees what was committed and nothing
/// more. Nothing survives the process.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// Per key: sequence, read version, state (`None` for a tombstone),
    /// deletion time (for a tombstone).
    rows: BTreeMap<String, StoredRow>,
    checkpoint: Option<Checkpoint>,
    parked: BTreeMap<u64, Parked>,
}

type StoredRow = (Sequence, u32, Option<String>, Option<SystemTime>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: StateEvent> ReplicaStore<T> for MemoryStore {
    type Error = StoreError;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<T>, StoreError>> + Send {
        // All the work happens here; the future only carries the result.
        ready(Ok(self.load_now()))
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
        ready(self.commit_now(commit))
    }
}

impl MemoryStore {
    fn load_now<T: StateEvent>(&self) -> Loaded<T> {
        let mut replica = Replica::new();
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
                Some(json) => match serde_json::from_str::<T>(json) {
                    Ok(state) => Change::Upsert(state),
                    Err(_) => continue,
                },
            };
            replica.restore(key, *sequence, *read_version, change);
        }
        Loaded {
            replica,
            checkpoint: self.checkpoint,
            parked: self.parked.values().cloned().collect(),
        }
    }

    fn commit_now<T: StateEvent>(&mut self, commit: Commit<'_, T>) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(commit.entries.len());
        for entry in &commit.entries {
            let state = match entry.state.map(serde_json::to_string) {
                None => None,
                Some(Ok(json)) => Some(json),
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
        self.rows.extend(rows);
        for key in commit.purged {
            let key = key.to_string();
            if matches!(self.rows.get(&key), Some((_, _, None, _))) {
                self.rows.remove(&key);
            }
        }
        for parked in commit.parked {
            self.parked.insert(parked.stream_sequence, parked.clone());
        }
        for sequence in commit.unparked {
            self.parked.remove(sequence);
        }
        self.checkpoint = Some(commit.checkpoint);
        Ok(())
    }
}
