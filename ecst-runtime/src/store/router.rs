//! [`DurableRouter`]: one durable consumer for several entity types, with
//! one store, one checkpoint and one transaction per batch.

use core::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::part::{Part, Pending, Unstorable};
use super::share::{
    covered_entities, covers, encode, entity_name_problem, EntityRows, OwedByEntity, RouterCommit,
    RouterStore, Share, Unencodable,
};
use super::{BatchOutcome, Checkpoint, Message, Parked, StoreContext, StoreError};
use crate::consume::{Address, ParkKind, ParkReason, ParkingLimits};
use crate::envelope::decode_header;
use crate::event::StateEvent;
use crate::feed::StateChange;
use crate::replica::Replica;
use crate::router::EntityTaken;

/// The `entity` label of a router's batch spans and latency histogram
/// (its counters and gauges are labelled per entity).
pub(crate) const ROUTER_LABEL: &str = "*";

/// How many entity names [`DurableRouter::skipped`] counts separately: the
/// names come from the wire, and a hostile publisher could send endless
/// new ones.
const MAX_SKIPPED_NAMES: usize = 64;

/// Where [`DurableRouter::skipped`] counts the messages of names past
/// [`MAX_SKIPPED_NAMES`] (no entity can be named `*`).
const OTHER_SKIPPED: &str = "*";

/// Several [`Replica`]s, one per entity type, consumed from one stream as
/// one durable consumer: one store, one [`Checkpoint`], one transaction per
/// batch across every entity.
///
/// Each message goes to the replica of the entity its transport address
/// names (on NATS, the subject's `<entity>` token), or, for a message the
/// transport did not address, the entity its envelope's `type` names. Per
/// entity everything works as in a [`DurableReplica`](super::DurableReplica)
/// (the version gate, the address check, parking, superseding, the purge
/// floor, the change feed, spans and metrics labelled with the entity), and
/// then every entity's changes, parked events and the one checkpoint are
/// committed in one transaction: after a crash the store holds the whole
/// batch for every entity, or nothing of it, and no entity is ever ahead of
/// the checkpoint.
///
/// # Messages of no registered entity
///
/// A message whose entity has no replica here (a stream that carries more
/// entities than this consumer needs), or whose entity cannot be read at
/// all (an unaddressed message whose envelope names none, an invalid
/// address that names no entity), is **skipped and counted**, not parked:
/// it is reported in [`BatchOutcome::rejected`] with its stream sequence and
/// a [`ParkKind::Invalid`] or [`ParkKind::Misaddressed`] reason, logged
/// (a `tracing` DEBUG event, target `ecst`, feature `tracing`), counted in
/// [`DurableRouter::skipped`] by entity, and passed by the checkpoint. A
/// message of a registered entity that cannot be applied is parked under
/// that entity, as a `DurableReplica` would; so is a message whose
/// [invalid address](crate::consume::InvalidAddress) names a registered
/// entity (on NATS, `<prefix>.<entity>.<key>` with a key that is not in
/// ecst's encoding).
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo<Customer: ecst_runtime::StateEvent, Order: ecst_runtime::StateEvent>(
/// #     batch: &[ecst_runtime::store::Message<'_>],
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use ecst_runtime::store::sqlite::SqliteStore;
/// use ecst_runtime::store::DurableRouter;
///
/// let store = SqliteStore::open("replica.db", "billing")?;
/// let mut router = DurableRouter::builder(store)
///     .register::<Customer>()?
///     .register::<Order>()?
///     .open()
///     .await?;
/// let outcome = router.apply_batch(batch).await?;
/// // Committed, for every entity, with one checkpoint.
/// let customers = router.replica::<Customer>().map_or(0, |r| r.len());
/// # let _ = (outcome, customers); Ok(()) }
/// ```
///
/// # Registering another entity later
///
/// The checkpoint records which entities it covers (stored with it). When
/// [`RouterBuilder::open`] finds a registered entity the stored checkpoint
/// does not cover (registered since, or dropped and registered again), it
/// rewinds the stream position to `0` and records the new entity list, in
/// one commit: [`DurableRouter::resume_after`] is then `0`, the transport
/// delivers the stream again (a `RouterFollower` from the latest event of
/// every key), the new entity gets every event it missed, and the other
/// entities' events are duplicates to the version gate. A dropped entity's
/// rows stay in the store; it is simply no longer covered. A checkpoint
/// written before the list was recorded covers nothing: the first open
/// rewinds once.
///
/// # Cancellation
///
/// As with `DurableReplica`: every async method is cancellation-safe; a
/// dropped commit leaves the store with all of it or none of it, and memory
/// is reloaded from the store before the next call.
pub struct DurableRouter<S: RouterStore> {
    routes: Vec<Box<dyn Route>>,
    store: S,
    checkpoint: Option<Checkpoint>,
    /// The entities the stored checkpoint covers, as stored with it.
    covered: Option<String>,
    /// The keys owed to the change feeds as stored, by entity (entities
    /// not registered here included: written back as they are).
    owed: OwedByEntity,
    /// Memory may be ahead of the store: reload before the next batch.
    stale_memory: bool,
    /// The identity of the stream being read, to write with every
    /// checkpoint ([`DurableRouter::set_stream_created`]).
    stream_created: Option<SystemTime>,
    /// Messages of no registered entity, skipped: by entity name (`""` when
    /// none could be read).
    skipped: BTreeMap<String, u64>,
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

/// Registers the entities of a [`DurableRouter`], then opens it
/// ([`DurableRouter::builder`]).
pub struct RouterBuilder<S: RouterStore> {
    store: S,
    routes: Vec<Box<dyn Route>>,
    limits: ParkingLimits,
}

/// Why an entity cannot be registered in a router
/// ([`RouterBuilder::register`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A replica of this entity name is already registered.
    #[error(transparent)]
    Taken(#[from] EntityTaken),
    /// The entity name is not `[A-Za-z][A-Za-z0-9_-]*` (a hand-written
    /// [`StateEvent`] impl; the derive refuses such a name): it could take
    /// the router's own checkpoint row (`*`) or collide with other
    /// entities' subjects.
    #[error("`{entity}` is not a valid entity name: {reason}")]
    InvalidEntity {
        /// The entity name.
        entity: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// The entity is not registered in this router.
#[derive(Debug, thiserror::Error)]
#[error("no replica for entity `{entity}` is registered in this router")]
pub struct NotRegistered {
    /// The entity name.
    pub entity: &'static str,
}

impl<S: RouterStore> RouterBuilder<S> {
    /// Registers a replica of entity `T`.
    ///
    /// Errors: [`RegisterError::Taken`] when `T`'s entity name is already
    /// registered, [`RegisterError::InvalidEntity`] when it is not
    /// `[A-Za-z][A-Za-z0-9_-]*`.
    pub fn register<T: StateEvent>(mut self) -> Result<Self, RegisterError> {
        if let Some(reason) = entity_name_problem(T::ENTITY) {
            return Err(RegisterError::InvalidEntity {
                entity: T::ENTITY,
                reason,
            });
        }
        if self.routes.iter().any(|route| route.entity() == T::ENTITY) {
            return Err(EntityTaken { entity: T::ENTITY }.into());
        }
        self.routes.push(Box::new(Lane::<T>::default()));
        Ok(self)
    }

    /// Keeps the parked events of every entity, registered before or
    /// after, within `limits` (each entity has its own parking lot, with
    /// these limits; see
    /// [`DurableReplica::with_parking_limits`](super::DurableReplica::with_parking_limits)).
    #[must_use]
    pub fn with_parking_limits(mut self, limits: ParkingLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Loads every registered entity's replica and parked events and the
    /// router's checkpoint from the store.
    pub async fn open(mut self) -> Result<DurableRouter<S>, StoreError> {
        for route in &mut self.routes {
            route.set_limits(self.limits);
        }
        let mut router = DurableRouter {
            routes: self.routes,
            store: self.store,
            checkpoint: None,
            covered: None,
            owed: OwedByEntity::new(),
            stale_memory: true,
            stream_created: None,
            skipped: BTreeMap::new(),
            telemetry: crate::telemetry::Telemetry::default(),
        };
        router.reload().await?;
        router.cover_new_entities().await?;
        Ok(router)
    }
}

impl<S: RouterStore> DurableRouter<S> {
    /// A router over `store` with no entity yet: register each with
    /// [`RouterBuilder::register`], then [`RouterBuilder::open`].
    pub fn builder(store: S) -> RouterBuilder<S> {
        RouterBuilder {
            store,
            routes: Vec::new(),
            limits: ParkingLimits::default(),
        }
    }

    /// Reloads every replica, parked event and the checkpoint from the
    /// store, dropping what memory holds; then reports the keys owed to
    /// each registered feed (see [`DurableRouter::on_change`]).
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        let entities: Vec<&'static str> = self.routes.iter().map(|r| r.entity()).collect();
        let loaded = self.store.load_router(&entities).await?;
        for (route, rows) in self.routes.iter_mut().zip(loaded.entities) {
            let owed = loaded.owed.get(route.entity()).cloned().unwrap_or_default();
            route.install(rows, owed)?;
        }
        self.checkpoint = loaded.checkpoint.map(|c| c.loaded(ROUTER_LABEL));
        self.covered = loaded.covered;
        self.owed = loaded.owed;
        self.stale_memory = false;
        for route in &mut self.routes {
            route.replay_owed();
        }
        Ok(())
    }

    /// Before any call that changes something: reloads when memory may be
    /// ahead of the store, and replays the keys owed to the feeds (see
    /// [`DurableReplica::on_change`](super::DurableReplica::on_change)).
    async fn prepare(&mut self) -> Result<(), StoreError> {
        if self.stale_memory {
            return self.reload().await;
        }
        for route in &mut self.routes {
            route.replay_owed();
        }
        Ok(())
    }

    /// When the stored checkpoint does not cover every registered entity
    /// (one registered since it was written, or one removed and registered
    /// again), rewinds the stream position to `0` and records the new
    /// entity list with it, in one commit: the stream is read again from
    /// the start, the new entity gets every event it missed, and the
    /// others' events below the old position are duplicates.
    async fn cover_new_entities(&mut self) -> Result<(), StoreError> {
        let Some(mut checkpoint) = self.checkpoint else {
            return Ok(());
        };
        if covers(self.covered.as_deref(), self.entities()) {
            return Ok(());
        }
        checkpoint.stream_sequence = 0;
        checkpoint.purged_through = 0;
        self.commit_now(Some(checkpoint)).await
    }

    /// The same router, reporting as consumer `consumer` of stream
    /// `stream` in its spans and metrics (see
    /// [`DurableReplica::with_consumer`](super::DurableReplica::with_consumer)).
    #[must_use]
    pub fn with_consumer(mut self, stream: &str, consumer: &str) -> Self {
        self.telemetry = crate::telemetry::Telemetry::named(stream, consumer);
        self
    }

    /// The registered entity names, in the order registered.
    pub fn entities(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.iter().map(|route| route.entity())
    }

    /// The replica of entity `T`, if registered.
    pub fn replica<T: StateEvent>(&self) -> Option<&Replica<T>> {
        self.routes
            .iter()
            .find_map(|route| route.as_any().downcast_ref::<Lane<T>>())
            .map(|lane| &lane.part.replica)
    }

    /// The one checkpoint, `None` before the first commit.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    /// The stream sequence to resume after: every message up to it is
    /// handled, for every entity. `0` for a new consumer.
    pub fn resume_after(&self) -> u64 {
        self.checkpoint.map_or(0, |c| c.stream_sequence)
    }

    /// Every parked message of every entity, with its entity, by entity
    /// (in the order registered) and stream sequence.
    pub fn parked(&self) -> impl Iterator<Item = (&'static str, &Parked)> + '_ {
        self.routes
            .iter()
            .flat_map(|route| route.parked().map(move |parked| (route.entity(), parked)))
    }

    /// How many parked messages wait (are not resolved), over every entity.
    pub fn pending_parked(&self) -> usize {
        self.routes.iter().map(|route| route.pending_parked()).sum()
    }

    /// Messages skipped because no replica of their entity is registered,
    /// by entity name (`""` for messages whose entity could not be read),
    /// since the router was opened. Not stored: a restart counts from 0.
    /// The names come from the wire, so at most 64 are counted apart; the
    /// messages of further names are counted under `*`.
    pub fn skipped(&self) -> &BTreeMap<String, u64> {
        &self.skipped
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Registers `feed` for the changes of entity `T`, called after every
    /// commit as [`DurableReplica::on_change`](super::DurableReplica::on_change)
    /// describes: only committed changes, in apply order, before the call
    /// that committed returns, and at least once across crashes. The keys
    /// owed to each entity's feed are committed with the router's one
    /// checkpoint; those stored for `T` (a restart after a crash, or a
    /// feed that panicked) are reported by their current entry
    /// ([`StateChange::replayed`]) before this returns.
    pub fn on_change<T: StateEvent>(
        &mut self,
        feed: impl FnMut(StateChange<'_, T>) + Send + Sync + 'static,
    ) -> Result<(), NotRegistered> {
        let stale_memory = self.stale_memory;
        let lane = self.lane_mut::<T>()?;
        lane.part.feed = Some(Box::new(feed));
        // Memory ahead of the store replays after the next reload.
        if !stale_memory {
            lane.part.replay_owed();
        }
        Ok(())
    }

    /// Removes the feed of entity `T` set with [`DurableRouter::on_change`].
    pub fn clear_on_change<T: StateEvent>(&mut self) -> Result<(), NotRegistered> {
        self.lane_mut::<T>()?.part.feed = None;
        Ok(())
    }

    fn lane_mut<T: StateEvent>(&mut self) -> Result<&mut Lane<T>, NotRegistered> {
        self.routes
            .iter_mut()
            .find_map(|route| route.as_any_mut().downcast_mut::<Lane<T>>())
            .ok_or(NotRegistered { entity: T::ENTITY })
    }

    /// Applies `messages` in order, each to the replica of its entity, and
    /// commits every entity's changes, the parked and superseded events and
    /// the checkpoint (the last message's stream sequence) in one
    /// transaction. Redeliveries at or below the checkpoint are harmless:
    /// the version gate makes them duplicates.
    ///
    /// On a store error nothing of the batch is durable, for any entity;
    /// memory is reloaded before the next call, and the caller should not
    /// acknowledge the messages. An empty batch writes nothing.
    pub async fn apply_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> Result<BatchOutcome, StoreError> {
        self.prepare().await?;
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let first = messages.first().map_or(0, |m| m.stream_sequence);
        let last = messages.last().map_or(0, |m| m.stream_sequence);
        let span = self
            .telemetry
            .batch(ROUTER_LABEL, messages.len(), first, last);
        span.run(self.commit_storable(|this, unstorable| this.apply_messages(messages, unstorable)))
            .await
    }

    /// Applies `messages` in memory; the checkpoint after them and what
    /// was skipped.
    fn apply_messages(
        &mut self,
        messages: &[Message<'_>],
        unstorable: &HashMap<&'static str, Vec<(String, String)>>,
    ) -> Work {
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        let mut skipped = Vec::new();
        for message in messages {
            checkpoint.stream_sequence = checkpoint.stream_sequence.max(message.stream_sequence);
            match self.route_of(message) {
                Ok(index) => {
                    let route = &mut self.routes[index];
                    let unstorable = unstorable_of(unstorable, route.entity());
                    route.apply(message, checkpoint.purged_through, unstorable);
                }
                Err(skip) => skipped.push((message.stream_sequence, skip)),
            }
        }
        Work {
            checkpoint,
            skipped,
        }
    }

    /// The index of the route of `message`, or why it has none.
    fn route_of(&self, message: &Message<'_>) -> Result<usize, Skip> {
        let route = |entity: &str| -> Result<usize, Skip> {
            self.routes
                .iter()
                .position(|route| route.entity() == entity)
                .ok_or_else(|| Skip {
                    reason: ParkReason::new(
                        ParkKind::Invalid,
                        format!(
                            "no replica of entity `{entity}` is registered in this router: \
                             skipped"
                        ),
                    ),
                    entity: entity.to_owned(),
                })
        };
        let nameless = || Skip {
            entity: String::new(),
            reason: ParkReason::new(
                ParkKind::Invalid,
                "the message names no entity (no transport address, and no readable `type` in \
                 its envelope): no replica to apply it to",
            ),
        };
        match &message.address {
            Address::Key { entity, .. } => route(entity),
            // An address that names a registered entity but no valid key
            // is parked under that entity, as its `DurableReplica` would.
            Address::Invalid(why) => match why.entity {
                Some(entity) => route(entity),
                None => Err(Skip {
                    entity: String::new(),
                    reason: ParkReason::new(ParkKind::Misaddressed, why),
                }),
            },
            Address::Unaddressed => match decode_header(message.payload) {
                Ok((header, _)) => route(&header.entity),
                Err(error) => error
                    .context()
                    .entity
                    .as_deref()
                    .map_or_else(|| Err(nameless()), route),
            },
        }
    }

    /// Runs `work` (applying in memory, parking the messages of the
    /// `unstorable` keys) and commits it. When a state cannot be encoded,
    /// starts over from the store with that key's messages parked as
    /// [`ParkKind::Unstorable`], so that the rest commits.
    async fn commit_storable(
        &mut self,
        mut work: impl FnMut(&mut Self, &HashMap<&'static str, Vec<(String, String)>>) -> Work,
    ) -> Result<BatchOutcome, StoreError> {
        let mut unstorable: HashMap<&'static str, Vec<(String, String)>> = HashMap::new();
        loop {
            let done = work(self, &unstorable);
            let unencodable = match self.finish(done).await? {
                Ok(outcome) => return Ok(outcome),
                Err(unencodable) => unencodable,
            };
            let keys = unstorable.entry(unencodable.entity).or_default();
            if keys.iter().any(|(key, _)| *key == unencodable.key) {
                let context = self.context();
                return Err(unencodable.into_error(context));
            }
            keys.push((unencodable.key, unencodable.source.to_string()));
            // Memory went ahead of the store: start over from it.
            self.reload().await?;
        }
    }

    fn context(&self) -> StoreContext {
        self.store.router_context()
    }

    /// Closes every route's share and commits them with the checkpoint in
    /// one transaction; then reports each entity's changes. `Ok(Err(..))`:
    /// a state could not be encoded, nothing was written.
    async fn finish(
        &mut self,
        work: Work,
    ) -> Result<Result<BatchOutcome, Unencodable>, StoreError> {
        let mut checkpoint = work.checkpoint;
        let mut owed: Option<OwedByEntity> = None;
        for route in &mut self.routes {
            checkpoint.applied += route.close();
            // An entity with a feed writes its owed keys; the others keep
            // what is stored (and so does an entity not registered here).
            if let Some(keys) = route.owed_for_commit() {
                let owed = owed.get_or_insert_with(|| self.owed.clone());
                if keys.is_empty() {
                    owed.remove(route.entity());
                } else {
                    owed.insert(route.entity().to_owned(), keys);
                }
            }
        }
        if let Some(created) = self.stream_created {
            checkpoint.stream_created = Some(created);
        }
        // Set before anything can fail or be dropped: memory is ahead of
        // the store until the commit is known to have landed.
        self.stale_memory = true;
        let covered = covered_entities(self.routes.iter().map(|route| route.entity()));
        let shares = self
            .routes
            .iter()
            .map(|route| route.share(S::keeps_json))
            .filter(|share| !matches!(share, Ok(share) if share.is_empty()))
            .collect::<Result<Vec<Share<'_>>, Unencodable>>();
        let shares = match shares {
            Ok(shares) => shares,
            Err(unencodable) => return Ok(Err(unencodable)),
        };
        self.store
            .commit_router(RouterCommit {
                shares,
                checkpoint,
                covered: covered.clone(),
                owed: owed.clone(),
            })
            .await?;
        self.stale_memory = false;
        if let Some(owed) = owed {
            self.owed = owed;
        }
        self.checkpoint = Some(checkpoint);
        self.covered = Some(covered);
        // Committed: no await from here on, so a dropped future cannot skip
        // the feeds. Every route's share is taken before any feed runs: a
        // feed that panics must leave no committed share behind, to be
        // reported (and counted) again with the next batch.
        let reports: Vec<_> = self
            .routes
            .iter_mut()
            .map(|route| route.take_committed())
            .collect();
        let mut outcome = BatchOutcome::default();
        for report in reports {
            let share = report(&self.telemetry);
            outcome.applied.extend(share.applied);
            outcome.parked.extend(share.parked);
            outcome.superseded.extend(share.superseded);
            outcome.overflowed.extend(share.overflowed);
            outcome.rejected.extend(share.rejected);
        }
        for (stream_sequence, skip) in work.skipped {
            skipped_event(stream_sequence, &skip);
            let name = if self.skipped.len() < MAX_SKIPPED_NAMES
                || self.skipped.contains_key(&skip.entity)
            {
                skip.entity
            } else {
                OTHER_SKIPPED.to_owned()
            };
            *self.skipped.entry(name).or_default() += 1;
            outcome.rejected.push((stream_sequence, skip.reason));
        }
        outcome.applied.sort_by_key(|(sequence, _)| *sequence);
        outcome.parked.sort_by_key(|(sequence, _)| *sequence);
        outcome.superseded.sort_unstable();
        outcome.overflowed.sort_unstable();
        outcome.rejected.sort_by_key(|(sequence, _)| *sequence);
        Ok(Ok(outcome))
    }

    /// Merges events that do not come from the stream (an owner's answer
    /// to a bootstrap request), each into the replica of its envelope's
    /// entity, and commits the changes; the checkpoint's stream position
    /// does not move. Events of no registered entity, and events that
    /// cannot be applied, are in [`BatchOutcome::rejected`] (see
    /// [`DurableReplica::merge_unsequenced`](super::DurableReplica::merge_unsequenced)).
    pub async fn merge_unsequenced(
        &mut self,
        payloads: &[&[u8]],
    ) -> Result<BatchOutcome, StoreError> {
        self.prepare().await?;
        let span = self.telemetry.batch(ROUTER_LABEL, payloads.len(), 0, 0);
        span.run(self.commit_storable(|this, _| {
            let mut skipped = Vec::new();
            for payload in payloads {
                let message = Message::new(0, "", payload);
                match this.route_of(&message) {
                    Ok(index) => this.routes[index].merge(payload),
                    Err(skip) => skipped.push((0, skip)),
                }
            }
            Work {
                checkpoint: this.checkpoint.unwrap_or_default(),
                skipped,
            }
        }))
        .await
    }

    /// Applies every entity's pending parked events again (see
    /// [`DurableReplica::retry_parked`](super::DurableReplica::retry_parked)),
    /// committed in one transaction.
    pub async fn retry_parked(&mut self) -> Result<BatchOutcome, StoreError> {
        self.prepare().await?;
        let span = self
            .telemetry
            .batch(ROUTER_LABEL, self.pending_parked(), 0, 0);
        span.run(self.commit_storable(|this, unstorable| {
            let checkpoint = this.checkpoint.unwrap_or_default();
            for route in &mut this.routes {
                let keys = unstorable_of(unstorable, route.entity());
                route.retry(keys);
            }
            Work {
                checkpoint,
                skipped: Vec::new(),
            }
        }))
        .await
    }

    /// Resolves the pending parked message of `entity` at
    /// `stream_sequence` without applying it, recording `why`; committed at
    /// once. `false` (and nothing written) if none is pending there.
    pub async fn discard_parked(
        &mut self,
        entity: &str,
        stream_sequence: u64,
        why: &str,
    ) -> Result<bool, StoreError> {
        self.prepare().await?;
        let Some(route) = self.routes.iter_mut().find(|r| r.entity() == entity) else {
            return Ok(false);
        };
        if !route.discard(stream_sequence, why) {
            return Ok(false);
        }
        self.commit_now(None).await?;
        Ok(true)
    }

    /// Deletes the tombstones of every entity recorded before `cutoff`,
    /// from memory and the store in one transaction, and returns how many.
    /// Choose the cutoff as
    /// [`DurableReplica::purge_tombstones_before`](super::DurableReplica::purge_tombstones_before)
    /// explains; the checkpoint's purge floor moves to its stream position.
    pub async fn purge_tombstones_before(
        &mut self,
        cutoff: SystemTime,
    ) -> Result<usize, StoreError> {
        self.prepare().await?;
        let purged: usize = self.routes.iter_mut().map(|r| r.purge(cutoff)).sum();
        if purged == 0 {
            return Ok(0);
        }
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        checkpoint.purged_through = checkpoint.stream_sequence;
        self.commit_now(Some(checkpoint)).await?;
        Ok(purged)
    }

    /// Moves the checkpoint's stream position back to the start (`0`),
    /// keeping the replicas (see
    /// [`DurableReplica::rewind_stream_position`](super::DurableReplica::rewind_stream_position)).
    pub async fn rewind_stream_position(&mut self) -> Result<(), StoreError> {
        self.prepare().await?;
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        checkpoint.stream_sequence = 0;
        checkpoint.purged_through = 0;
        checkpoint.stream_created = None;
        self.stream_created = None;
        self.commit_now(Some(checkpoint)).await
    }

    /// Sets the identity of the stream the next messages come from,
    /// written with every checkpoint from now on (see
    /// [`DurableReplica::set_stream_created`](super::DurableReplica::set_stream_created)).
    pub fn set_stream_created(&mut self, created: SystemTime) {
        self.stream_created = Some(created);
    }

    /// The identity of the stream the checkpoint's positions count in: the
    /// one set with [`DurableRouter::set_stream_created`], else the one
    /// stored.
    pub fn stream_created(&self) -> Option<SystemTime> {
        self.stream_created
            .or_else(|| self.checkpoint.and_then(|c| c.stream_created))
    }

    /// Commits what the routes hold, with `checkpoint` (or the current
    /// one); a state that cannot be encoded is an error here (nothing of
    /// the kind is applied by these calls).
    async fn commit_now(&mut self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        let work = Work {
            checkpoint: checkpoint.unwrap_or_else(|| self.checkpoint.unwrap_or_default()),
            skipped: Vec::new(),
        };
        match self.finish(work).await? {
            Ok(_) => Ok(()),
            Err(unencodable) => {
                let context = self.context();
                Err(unencodable.into_error(context))
            }
        }
    }
}

/// What a batch did in memory, beside the routes' shares.
struct Work {
    checkpoint: Checkpoint,
    skipped: Vec<(u64, Skip)>,
}

/// A message skipped: its entity (`""` if none could be read), and why.
struct Skip {
    entity: String,
    reason: ParkReason,
}

fn unstorable_of<'a>(
    unstorable: &'a HashMap<&'static str, Vec<(String, String)>>,
    entity: &'static str,
) -> &'a Unstorable {
    unstorable.get(entity).map_or(&[], Vec::as_slice)
}

/// Logs a skipped message where `tracing` is there (feature `tracing`).
fn skipped_event(stream_sequence: u64, skip: &Skip) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "ecst",
        stream_sequence,
        entity = skip.entity.as_str(),
        reason = %skip.reason,
        "skipped: no replica of its entity in this router"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream_sequence, skip);
}

/// Reports one route's committed share (counts it, calls its feed) and
/// says what it did.
type Report<'a> = Box<dyn FnOnce(&crate::telemetry::Telemetry) -> BatchOutcome + 'a>;

/// One entity of a router, its type erased.
trait Route: Send + Sync {
    fn entity(&self) -> &'static str;
    fn set_limits(&mut self, limits: ParkingLimits);
    /// Installs what the store holds: the entity's rows, and the keys owed
    /// to its feed.
    fn install(&mut self, rows: EntityRows, owed: Vec<String>) -> Result<(), StoreError>;
    /// Reports the keys owed to the feed, if one is set and keys are owed.
    fn replay_owed(&mut self);
    /// With a feed set, the keys owed to it once the share is committed
    /// (kept to pass to the feed's report); `None` without a feed.
    fn owed_for_commit(&mut self) -> Option<Vec<String>>;
    fn apply(&mut self, message: &Message<'_>, purged_through: u64, unstorable: &Unstorable);
    fn merge(&mut self, payload: &[u8]);
    fn retry(&mut self, unstorable: &Unstorable);
    fn purge(&mut self, cutoff: SystemTime) -> usize;
    fn discard(&mut self, stream_sequence: u64, why: &str) -> bool;
    /// Applies the parking limits to the share; the events it applied.
    fn close(&mut self) -> u64;
    fn share(&self, keeps: fn(&str) -> bool) -> Result<Share<'_>, Unencodable>;
    /// The share is committed: takes it (the next starts empty), and
    /// returns what reports it and says what it did.
    fn take_committed(&mut self) -> Report<'_>;
    fn parked(&self) -> Box<dyn Iterator<Item = &Parked> + '_>;
    fn pending_parked(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The route of entity `T`: its part and the share being built.
struct Lane<T: StateEvent> {
    part: Part<T>,
    pending: Pending<T>,
    /// The owed keys the share is committed with ([`Route::owed_for_commit`]).
    owed: Option<Vec<T::Key>>,
}

impl<T: StateEvent> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            part: Part::default(),
            pending: Pending::default(),
            owed: None,
        }
    }
}

impl<T: StateEvent> Route for Lane<T> {
    fn entity(&self) -> &'static str {
        T::ENTITY
    }

    fn set_limits(&mut self, limits: ParkingLimits) {
        self.part.limits = limits;
    }

    fn install(&mut self, rows: EntityRows, owed: Vec<String>) -> Result<(), StoreError> {
        let replica = super::rows::restore_rows::<T>(rows.entries, &rows.context)?;
        let owed = super::owed::parse_keys::<T>(owed, &rows.context)?;
        self.part.install(replica, rows.parked, owed);
        self.pending = Pending::default();
        self.owed = None;
        Ok(())
    }

    fn replay_owed(&mut self) {
        self.part.replay_owed();
    }

    fn owed_for_commit(&mut self) -> Option<Vec<String>> {
        self.owed = self.part.owed_for_commit(&self.pending);
        self.part.writing_owed();
        let keys = self.owed.as_ref()?;
        Some(keys.iter().map(ToString::to_string).collect())
    }

    fn apply(&mut self, message: &Message<'_>, purged_through: u64, unstorable: &Unstorable) {
        self.part
            .apply_message(message, purged_through, unstorable, &mut self.pending);
    }

    fn merge(&mut self, payload: &[u8]) {
        self.part.merge_payload(payload, &mut self.pending);
    }

    fn retry(&mut self, unstorable: &Unstorable) {
        self.part.retry_parked(unstorable, &mut self.pending);
    }

    fn purge(&mut self, cutoff: SystemTime) -> usize {
        self.part.purge_tombstones_before(cutoff, &mut self.pending)
    }

    fn discard(&mut self, stream_sequence: u64, why: &str) -> bool {
        self.part
            .discard_parked(stream_sequence, why, &mut self.pending)
    }

    fn close(&mut self) -> u64 {
        self.part.close(&mut self.pending);
        self.pending.applied
    }

    fn share(&self, keeps: fn(&str) -> bool) -> Result<Share<'_>, Unencodable> {
        encode(
            self.part.entries(&self.pending),
            &self.pending.parked,
            &self.pending.unparked,
            &self.pending.purged,
            keeps,
        )
    }

    fn take_committed(&mut self) -> Report<'_> {
        let pending = core::mem::take(&mut self.pending);
        // Owed at once, for every lane before any feed runs: a feed that
        // panics in an earlier lane leaves this lane's keys owed too.
        self.part.owe(self.owed.take());
        let part = &mut self.part;
        Box::new(move |telemetry| part.report_committed(pending, telemetry))
    }

    fn parked(&self) -> Box<dyn Iterator<Item = &Parked> + '_> {
        Box::new(self.part.parking.iter())
    }

    fn pending_parked(&self) -> usize {
        self.part.parking.pending()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
