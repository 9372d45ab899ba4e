//! The change feed's *owed keys* as the stores keep them: the keys whose
//! changes are not yet known to be reported to a durable feed (see
//! [`Commit::owed`](super::Commit::owed)).
//!
//! The SQL stores keep them in the `owed` column of the consumer's
//! `ecst_checkpoint` row, written in the same transaction as the batch:
//!
//! - a [`DurableReplica`](super::DurableReplica)'s row: a JSON array of the
//!   keys as text, `["c-1","c-2"]`;
//! - a [`DurableRouter`](super::DurableRouter)'s row (entity `*`): a JSON
//!   object of such arrays by entity, `{"customer":["c-1"]}`.
//!
//! `NULL` (a store written by an older build, or a consumer that never had
//! a feed) and `[]` / `{}` mean nothing is owed. A commit that carries no
//! owed keys (no feed registered) leaves the column as it is.

use std::collections::BTreeMap;

use super::{StoreContext, StoreError};
use crate::event::{EntityKey, StateEvent};

/// A router's owed keys, as text, by entity.
pub(crate) type OwedByEntity = BTreeMap<String, Vec<String>>;

/// The operation named in the errors of a bad `owed` column.
const READING: &str = "reading ecst_checkpoint.owed";

/// A replica's owed keys as the `owed` column: a JSON array of the keys as
/// text; `None` (leave the column as it is) for `None`.
pub(crate) fn replica_column<K: ToString>(owed: Option<&[K]>) -> Option<String> {
    let keys: Vec<String> = owed?.iter().map(ToString::to_string).collect();
    // A list of strings always serializes.
    serde_json::to_string(&keys).ok()
}

/// A router's owed keys as the `owed` column: a JSON object of arrays by
/// entity; `None` (leave the column as it is) for `None`.
pub(crate) fn router_column(owed: Option<&OwedByEntity>) -> Option<String> {
    // A map of strings to lists of strings always serializes.
    serde_json::to_string(owed?).ok()
}

/// The keys of a replica's `owed` column (`NULL`: none), parsed as keys of
/// `T`.
pub(crate) fn replica_keys<T: StateEvent>(
    column: Option<&str>,
    context: &StoreContext,
) -> Result<Vec<T::Key>, StoreError> {
    let Some(column) = column else {
        return Ok(Vec::new());
    };
    let keys: Vec<String> =
        serde_json::from_str(column).map_err(|e| context.database(READING, e))?;
    parse_keys::<T>(keys, context)
}

/// The owed keys of a router's `owed` column (`NULL`: none), by entity.
pub(crate) fn router_map(
    column: Option<&str>,
    context: &StoreContext,
) -> Result<OwedByEntity, StoreError> {
    match column {
        None => Ok(OwedByEntity::new()),
        Some(column) => serde_json::from_str(column).map_err(|e| context.database(READING, e)),
    }
}

/// `keys` as keys of `T`, or [`StoreError::InvalidKey`] naming the first
/// that does not parse.
pub(crate) fn parse_keys<T: StateEvent>(
    keys: Vec<String>,
    context: &StoreContext,
) -> Result<Vec<T::Key>, StoreError> {
    keys.into_iter()
        .map(|text| match <T::Key as EntityKey>::parse_key(&text) {
            Ok(key) => Ok(key),
            Err(reason) => Err(StoreError::InvalidKey {
                context: Box::new(context.clone()),
                key: text,
                reason,
            }),
        })
        .collect()
}
