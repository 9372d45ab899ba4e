//! The change feed: what changed in a replica, event by event.
//!
//! Every apply path can report each state change it makes as a
//! [`StateChange`]: the key, the event's sequence, the state before and
//! after, and the [`Outcome`]. Use it to keep something derived from the
//! replica in step (a search index, a cache, a notification):
//!
//! - [`Replica::on_change`](crate::Replica::on_change): called during
//!   `apply`, `apply_json`, `apply_change` and snapshot imports, right after
//!   the replica changed. A [`Router`](crate::Router) keeps the observer of
//!   each replica it holds (set it before [`Router::add`](crate::Router::add),
//!   or through [`Router::replica_mut`](crate::Router::replica_mut)).
//! - [`DurableReplica::on_change`](crate::store::DurableReplica::on_change)
//!   (and [`DurableRouter::on_change`](crate::store::DurableRouter::on_change),
//!   so the NATS `Follower`): called after the batch is committed, never for
//!   a batch that did not commit, and **at least once** across crashes: the
//!   keys whose changes are not known to be reported are committed with the
//!   batch, and after a restart (or a feed that panicked) each of them is
//!   reported again as a *replayed* change ([`StateChange::replayed`]) before
//!   any new change. See there for what happens on restart.
//!
//! Only changes are reported: [`Outcome::Inserted`], [`Outcome::Updated`]
//! and [`Outcome::Deleted`] (and, on the durable path, replayed keys). A [`Duplicate`](Outcome::Duplicate) or
//! [`Stale`](Outcome::Stale) event changes nothing and is not reported;
//! neither is loading a replica from a store, nor purging tombstones (a
//! purged key was already deleted). A key's changes are reported in the
//! order they were applied, so `before` of one change is `after` of the
//! key's previous one (a replayed change has `before: None`: see
//! [`StateChange::replayed`]).
//!
//! # Replayed changes (durable path only)
//!
//! A replayed change says "this key now holds `after`" without the
//! transition that led there: `before` is `None` (unknown), `after` is the
//! key's current state (`None` for a tombstone, or a key the replica no
//! longer holds), `sequence` the key's current sequence (`0` when it holds
//! nothing), `outcome` [`Outcome::Inserted`] for a live state and
//! [`Outcome::Deleted`] otherwise, and `replayed` is `true`. This is state
//! transfer: if a key changed several times in the batch whose report was
//! lost, only its latest state is replayed, not the states in between. A
//! view that sets `key → after` (removing the key on `None`) stays correct
//! whether a change is replayed or not; a consumer that needs the
//! transitions themselves must treat `replayed` changes as "may have
//! missed some".
//!
//! With no observer set, nothing is recorded and nothing is cloned.

use core::fmt;

use crate::event::StateEvent;
use crate::replica::Outcome;
use crate::sequence::Sequence;

/// One change of one key of a replica, as applied.
#[non_exhaustive]
pub struct StateChange<'a, T: StateEvent> {
    /// The entity name (`T::ENTITY`).
    pub entity: &'static str,
    /// The key that changed.
    pub key: &'a T::Key,
    /// The sequence of the event that made the change (the key's sequence
    /// now).
    pub sequence: Sequence,
    /// The live state the key held before, `None` if it held nothing or a
    /// tombstone.
    pub before: Option<&'a T>,
    /// The live state it holds now, `None` after a delete.
    pub after: Option<&'a T>,
    /// [`Outcome::Inserted`], [`Outcome::Updated`] or [`Outcome::Deleted`].
    pub outcome: Outcome,
    /// `true` for a key reported again by a durable replica or router
    /// because its earlier report may not have happened (a crash or a
    /// panicking feed between a commit and the end of its report): its
    /// current entry, with `before: None`, reported before any new change of
    /// the key (see [Replayed changes](self#replayed-changes-durable-path-only)).
    /// Always `false` from an in-memory [`Replica`](crate::Replica).
    pub replayed: bool,
}

impl<T: StateEvent> Clone for StateChange<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: StateEvent> Copy for StateChange<'_, T> {}

impl<T: StateEvent + fmt::Debug> fmt::Debug for StateChange<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateChange")
            .field("entity", &self.entity)
            .field("key", self.key)
            .field("sequence", &self.sequence)
            .field("before", &self.before)
            .field("after", &self.after)
            .field("outcome", &self.outcome)
            .field("replayed", &self.replayed)
            .finish()
    }
}

/// A callback that receives every [`StateChange`] of a replica of `T`.
pub(crate) type Observer<T> = Box<dyn FnMut(StateChange<'_, T>) + Send + Sync>;
