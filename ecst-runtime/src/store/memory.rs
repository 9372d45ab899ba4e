//! A store that keeps its commits in memory: for tests, examples and
//! consumers that bootstrap again on every start anyway.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::{ready, Future};

use super::{Checkpoint, Commit, Loaded, Parked, ReplicaStore};
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
    rows: BTreeMap<String, (Sequence, u32, Option<String>)>,
    checkpoint: Option<Checkpoint>,
    parked: BTreeMap<u64, Parked>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: StateEvent> ReplicaStore<T> for MemoryStore {
    type Error = Infallible;

    fn load(&mut self) -> impl Future<Output = Result<Loaded<T>, Infallible>> + Send {
        // All the work happens here; the future only carries the result.
        ready(Ok(self.load_now()))
    }

    fn commit(
        &mut self,
        commit: Commit<'_, T>,
    ) -> impl Future<Output = Result<(), Infallible>> + Send {
        self.commit_now(commit);
        ready(Ok(()))
    }
}

impl MemoryStore {
    fn load_now<T: StateEvent>(&self) -> Loaded<T> {
        let mut replica = Replica::new();
        for (key, (sequence, read_version, state)) in &self.rows {
            // Rows were written from valid values of `T`, so they read back;
            // a row that does not (another type under the same store) is
            // left out rather than invented.
            let Ok(key) = <T::Key as EntityKey>::parse_key(key) else {
                continue;
            };
            let change = match state {
                None => Change::Delete,
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

    fn commit_now<T: StateEvent>(&mut self, commit: Commit<'_, T>) {
        for entry in &commit.entries {
            let state = entry.state.and_then(|s| serde_json::to_string(s).ok());
            self.rows.insert(
                entry.key.to_string(),
                (entry.sequence, entry.read_version, state),
            );
        }
        for parked in commit.parked {
            self.parked.insert(parked.stream_sequence, parked.clone());
        }
        for sequence in commit.unparked {
            self.parked.remove(sequence);
        }
        self.checkpoint = Some(commit.checkpoint);
    }
}
