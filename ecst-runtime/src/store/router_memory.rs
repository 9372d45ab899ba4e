//! [`MemoryRouterStore`]: a [`RouterStore`](super::RouterStore) in memory,
//! for tests, examples and routers that bootstrap again on every start.

use core::future::{ready, Future};
use std::collections::BTreeMap;

use super::rows::{to_bigint, to_micros, StoredRow};
use super::share::sealed::Sealed;
use super::share::{EntityRows, OwedByEntity, RouterCommit, RouterRows};
use super::{Checkpoint, Parked, StoreContext, StoreError};

const BACKEND: &str = "memory";

/// A [`DurableRouter`](super::DurableRouter)'s store in memory. Commits
/// are kept as JSON, exactly as SQLite or PostgreSQL would keep them, so a
/// router reopened on a clone of the store sees what was committed and
/// nothing more. Nothing survives the process.
#[derive(Clone, Debug, Default)]
pub struct MemoryRouterStore {
    entities: BTreeMap<&'static str, Table>,
    checkpoint: Option<Checkpoint>,
    /// The entities the checkpoint covers.
    covered: Option<String>,
    /// The keys owed to the change feeds, by entity.
    owed: OwedByEntity,
}

/// One entity's rows.
#[derive(Clone, Debug, Default)]
struct Table {
    rows: BTreeMap<String, Row>,
    parked: BTreeMap<u64, Parked>,
}

/// One key, as stored.
#[derive(Clone, Debug)]
struct Row {
    sequence: i64,
    schema_version: i64,
    read_version: i64,
    state: Option<String>,
    /// Microseconds since the epoch, as the SQL stores keep it.
    deleted_at: Option<i64>,
}

impl MemoryRouterStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn context(entity: Option<&'static str>) -> StoreContext {
        StoreContext::new(BACKEND, "", entity)
    }

    fn load_now(&self, entities: &[&'static str]) -> RouterRows {
        let entities = entities
            .iter()
            .map(|&entity| {
                let table = self.entities.get(entity);
                EntityRows {
                    context: Self::context(Some(entity)),
                    entries: table
                        .map(|table| {
                            table
                                .rows
                                .iter()
                                .map(|(key, row)| StoredRow {
                                    key: key.clone(),
                                    sequence: row.sequence,
                                    schema_version: row.schema_version,
                                    read_version: Some(row.read_version),
                                    state: row.state.clone(),
                                    deleted_at: row.deleted_at,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    parked: table
                        .map(|table| table.parked.values().cloned().collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        RouterRows {
            entities,
            checkpoint: self.checkpoint,
            covered: self.covered.clone(),
            owed: self.owed.clone(),
        }
    }

    /// Checks everything first (as a transaction would fail), then writes.
    fn commit_now(&mut self, commit: RouterCommit<'_>) -> Result<(), StoreError> {
        let mut writes: Vec<(&'static str, Vec<(String, Row)>)> = Vec::new();
        for share in &commit.shares {
            let context = Self::context(Some(share.entity));
            let mut rows = Vec::with_capacity(share.entries.len());
            for entry in &share.entries {
                let sequence = to_bigint(
                    entry.sequence,
                    &context,
                    "ecst_replica.sequence",
                    Some(&entry.key),
                )?;
                rows.push((
                    entry.key.clone(),
                    Row {
                        sequence,
                        schema_version: i64::from(share.version),
                        read_version: i64::from(entry.read_version),
                        state: entry.state.as_deref().map(str::to_owned),
                        deleted_at: entry.deleted_at.map(to_micros),
                    },
                ));
            }
            for parked in share.parked {
                to_bigint(
                    parked.stream_sequence,
                    &context,
                    "ecst_parked.stream_sequence",
                    parked.key.as_deref(),
                )?;
            }
            writes.push((share.entity, rows));
        }
        let context = Self::context(None);
        for value in [
            commit.checkpoint.stream_sequence,
            commit.checkpoint.applied,
            commit.checkpoint.purged_through,
        ] {
            to_bigint(value, &context, "ecst_checkpoint", None)?;
        }
        for (share, (entity, rows)) in commit.shares.iter().zip(writes) {
            let table = self.entities.entry(entity).or_default();
            table.rows.extend(rows);
            for key in &share.purged {
                if table.rows.get(key).is_some_and(|row| row.state.is_none()) {
                    table.rows.remove(key);
                }
            }
            for parked in share.parked {
                table.parked.insert(parked.stream_sequence, parked.clone());
            }
            for sequence in share.unparked {
                table.parked.remove(sequence);
            }
        }
        self.checkpoint = Some(commit.checkpoint);
        self.covered = Some(commit.covered);
        if let Some(owed) = commit.owed {
            self.owed = owed;
        }
        Ok(())
    }
}

impl Sealed for MemoryRouterStore {
    fn router_context(&self) -> StoreContext {
        Self::context(None)
    }

    fn load_router(
        &mut self,
        entities: &[&'static str],
    ) -> impl Future<Output = Result<RouterRows, StoreError>> + Send {
        ready(Ok(self.load_now(entities)))
    }

    fn commit_router(
        &mut self,
        commit: RouterCommit<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.commit_now(commit))
    }
}
