//! A replica in memory, committed to a store batch by batch.

use std::time::SystemTime;

use super::part::{Part, Pending as Share, Unstorable};
use super::{Checkpoint, Commit, Loaded, ReplicaStore};
use crate::consume::{BatchOutcome, Message, Parked, ParkingLimits};
use crate::event::StateEvent;
use crate::feed::StateChange;
use crate::replica::Replica;

/// A [`Replica`] whose changes and checkpoint are committed to a
/// [`ReplicaStore`] in one transaction per batch.
///
/// Messages that cannot be applied (a malformed envelope, an unknown future
/// version, a failed upcast, a message whose envelope names another entity
/// or key than its transport address) are *parked*: stored beside the
/// replica with a typed [`ParkReason`](crate::consume::ParkReason), in the
/// same transaction. Parking holds nothing back: state events carry the
/// whole state and the version gate orders them by sequence, so the key's
/// later events apply as they come, and once the key holds a state at least
/// as new as a parked event, that event is
/// [superseded](crate::consume::Resolution::Superseded) (kept for
/// inspection within [`ParkingLimits`], then purged). A parked event above everything
/// applied (a future version, say) stays pending; after fixing the cause
/// (upgrading the consumer), [`DurableReplica::retry_parked`] applies it
/// through the version gate. [`DurableReplica::discard_parked`] resolves one
/// by hand.
///
/// # Cancellation
///
/// Every async method is cancellation-safe: dropping its future at any
/// await point (a `select!`, a `timeout`) leaves the store with either the
/// whole batch or none of it, and memory is reloaded from the store before
/// the next call whenever it may be ahead.
pub struct DurableReplica<T: StateEvent, S: ReplicaStore<T>> {
    /// The replica, its parking lot and its feed: what a
    /// [`DurableRouter`](super::DurableRouter) holds per entity too.
    part: Part<T>,
    store: S,
    checkpoint: Option<Checkpoint>,
    /// Memory may be ahead of the store (a commit failed, or its future was
    /// dropped): reload before the next batch.
    stale_memory: bool,
    /// The identity of the stream being read, to write with every
    /// checkpoint ([`DurableReplica::set_stream_created`]).
    stream_created: Option<SystemTime>,
    /// The names this replica reports under, in spans and metrics
    /// ([`DurableReplica::with_consumer`]).
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

/// What one batch will commit: the part's share, and the checkpoint.
struct Pending<T: StateEvent> {
    share: Share<T>,
    checkpoint: Checkpoint,
}

impl<T: StateEvent> Pending<T> {
    fn new(checkpoint: Checkpoint) -> Self {
        Pending {
            share: Share::default(),
            checkpoint,
        }
    }
}

impl<T: StateEvent, S: ReplicaStore<T>> DurableReplica<T, S> {
    /// Loads the replica, its checkpoint and its parked events from `store`.
    pub async fn open(mut store: S) -> Result<Self, S::Error> {
        let loaded = store.load().await?;
        let mut part = Part::default();
        part.keeps_json = S::KEEPS_JSON;
        let mut durable = DurableReplica {
            part,
            store,
            checkpoint: None,
            stale_memory: false,
            stream_created: None,
            telemetry: crate::telemetry::Telemetry::default(),
        };
        durable.install(loaded);
        Ok(durable)
    }

    /// The same replica, keeping resolved parked events within `limits`.
    #[must_use]
    pub fn with_parking_limits(mut self, limits: ParkingLimits) -> Self {
        self.part.limits = limits;
        self
    }

    fn install(&mut self, loaded: Loaded<T>) {
        self.part
            .install(loaded.replica, loaded.parked, loaded.owed);
        self.checkpoint = loaded.checkpoint.map(|c| c.loaded(T::ENTITY));
        self.stale_memory = false;
    }

    /// Reloads everything from the store, dropping what memory holds;
    /// with a feed registered, then reports the keys the store says are
    /// owed to it (see [`DurableReplica::on_change`]).
    pub async fn reload(&mut self) -> Result<(), S::Error> {
        let loaded = self.store.load().await?;
        self.install(loaded);
        self.part.replay_owed();
        Ok(())
    }

    /// Before any call that changes something: reloads when memory may be
    /// ahead of the store, and replays the keys owed to the feed (loaded,
    /// or left by a report that did not return), so that they are reported
    /// before any new change of theirs.
    async fn prepare(&mut self) -> Result<(), S::Error> {
        if self.stale_memory {
            self.reload().await
        } else {
            self.part.replay_owed();
            Ok(())
        }
    }

    /// The replica as committed (plus nothing uncommitted: every
    /// [`DurableReplica::apply_batch`] commits before it returns).
    pub fn replica(&self) -> &Replica<T> {
        &self.part.replica
    }

    /// The checkpoint, `None` before the first commit.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    /// The stream sequence to resume after: every message up to it is
    /// handled. `0` for a new store.
    pub fn resume_after(&self) -> u64 {
        self.checkpoint.map_or(0, |c| c.stream_sequence)
    }

    /// Every parked message, pending and resolved, by stream sequence.
    pub fn parked(&self) -> impl Iterator<Item = &Parked> + '_ {
        self.part.parking.iter()
    }

    /// The parked message at `stream_sequence`, if any.
    pub fn parked_at(&self, stream_sequence: u64) -> Option<&Parked> {
        self.part.parking.get(stream_sequence)
    }

    /// How many parked messages wait (are not resolved).
    pub fn pending_parked(&self) -> usize {
        self.part.parking.pending()
    }

    /// How many parked messages are held, pending and resolved.
    pub fn parked_len(&self) -> usize {
        self.part.parking.len()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Registers `feed`, called after every commit with each change the
    /// committed batch made (replacing a feed set before); see
    /// [`crate::feed`] for what is reported. If the store lists keys owed to
    /// the feed (see [What happens on restart](#what-happens-on-restart)),
    /// `feed` is called with each of them at once, before this returns.
    ///
    /// # Delivery
    ///
    /// - Only committed changes: a batch whose commit fails reports
    ///   nothing (its messages come again and are reported then).
    /// - In order: a batch's changes in the order they were applied, so a
    ///   key's changes in sequence order, and batch after batch.
    /// - Before the call that committed returns ([`apply_batch`],
    ///   [`retry_parked`], [`merge_unsequenced`], and so the NATS
    ///   `Follower::poll`, which acknowledges the batch to the broker only
    ///   after): the feed runs between the
    ///   commit and the return, with no await point in between, so
    ///   cancelling the call cannot skip it.
    ///
    /// # What happens on restart
    ///
    /// The feed is **at least once**. While a feed is registered, every
    /// commit also writes the feed's *owed keys* ([`Commit::owed`]): the keys
    /// still owed from before plus every key the batch changes. Once the
    /// batch's report returns, nothing is owed in memory; the next commit
    /// writes the new set (no extra write per batch). So a crash, or a panic
    /// in the feed, after a commit and before its report finished loses
    /// nothing:
    ///
    /// - after a restart, [`DurableReplica::open`] loads the owed keys, and
    ///   [`DurableReplica::on_change`] reports each one's *current* entry
    ///   ([`StateChange::replayed`] set, `before: None`) before it returns,
    ///   so before any new change: per-key order holds;
    /// - after a panic in the feed (the replica used again, as behind a
    ///   mutex that does not poison), the next call that changes something
    ///   reports the owed keys first, the same way; so does
    ///   [`DurableReplica::reload`].
    ///
    /// What is replayed is each key's latest state, not the states in
    /// between (state transfer): a key changed twice in the batch whose
    /// report was lost is replayed once, as it is now. Since the owed set
    /// is written by the commit *before* the report, a restart also replays
    /// the keys of the last batch committed with the feed, reported or not:
    /// a view must take a change it already has (set `key → after`, or
    /// compare sequences). A view kept in memory is still simplest rebuilt
    /// from [`DurableReplica::replica`] at start (`replica().iter()`).
    ///
    /// While no feed is registered, nothing is recorded and the owed keys
    /// stored are left as they are: a feed registered later replays them.
    /// A [`ReplicaStore`] of your own that does not keep [`Commit::owed`]
    /// (loading [`Loaded::owed`] empty) gives an at-most-once feed: a crash
    /// after a commit loses the unreported changes of that batch.
    ///
    /// # A feed that keeps panicking
    ///
    /// A feed that panics on a key every time it sees it stops the consumer:
    /// each later call replays the owed keys first, meets the same panic,
    /// and applies nothing new (nothing is lost either; the messages wait in
    /// the transport). That is what at least once means for a change that
    /// cannot be delivered. Catch what the feed cannot handle inside it
    /// (log it, or record the key for a later repair), or clear the feed
    /// with [`DurableReplica::clear_on_change`] to let the replica go on: the
    /// owed keys stay stored, and a feed registered later replays them.
    ///
    /// [`apply_batch`]: DurableReplica::apply_batch
    /// [`retry_parked`]: DurableReplica::retry_parked
    /// [`merge_unsequenced`]: DurableReplica::merge_unsequenced
    pub fn on_change(&mut self, feed: impl FnMut(StateChange<'_, T>) + Send + Sync + 'static) {
        self.part.feed = Some(Box::new(feed));
        // Memory ahead of the store replays after the next reload.
        if !self.stale_memory {
            self.part.replay_owed();
        }
    }

    /// Removes the feed set with [`DurableReplica::on_change`].
    pub fn clear_on_change(&mut self) {
        self.part.feed = None;
    }

    /// Deletes the tombstones recorded before `cutoff`, from memory and the
    /// store in one transaction, and returns how many. The checkpoint does
    /// not move.
    ///
    /// A tombstone's time is when this replica applied the delete, stored
    /// with it, so a reload does not make it younger. (A tombstone written
    /// by a version of ecst that did not store the time is given the time
    /// the store is first opened by one that does.)
    ///
    /// # Choosing the horizon
    ///
    /// A tombstone is what makes an older upsert of a deleted key
    /// [`Stale`](crate::Outcome::Stale). Once it is purged, the key is unknown, and
    /// an upsert older than the delete that still arrives is
    /// [`Inserted`](crate::Outcome::Inserted): the deleted entity comes back, and
    /// stays until the owner publishes it again. So keep every tombstone
    /// longer than the longest time an older event of its key can still
    /// arrive after the delete:
    ///
    /// - redelivery: an unacknowledged message comes again after the
    ///   consumer's `ack_wait`, as many times as it takes. This one is
    ///   guarded: a purge records the checkpoint's stream position
    ///   ([`Checkpoint::purged_through`]), and a message at or below it that
    ///   would bring back a key the replica does not hold is parked
    ///   ([`ParkKind::PurgedTombstone`](crate::consume::ParkKind::PurgedTombstone))
    ///   instead of applied;
    /// - the stream itself: with `max_messages_per_subject = 1` the delete
    ///   replaces the key's older events, but a consumer that is behind (or
    ///   a replay from an older backup or mirror) can still read them;
    /// - other sources: bootstrap answers from the owner (a snapshot taken
    ///   before the delete), old logs or retry queues fed in by hand.
    ///
    /// The others come on new stream positions (or none), so nothing tells
    /// them from a new key's first event. Take the largest of these, add a
    /// margin, and purge with `SystemTime::now() - horizon`. Days are a common choice; purging a
    /// tombstone only minutes old is almost never right.
    pub async fn purge_tombstones_before(&mut self, cutoff: SystemTime) -> Result<usize, S::Error> {
        self.prepare().await?;
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        let purged = self
            .part
            .purge_tombstones_before(cutoff, &mut pending.share);
        if purged == 0 {
            return Ok(0);
        }
        // Every message up to the checkpoint was handled while the purged
        // tombstones were held: one of them coming again must not bring a
        // purged key back (see `Checkpoint::purged_through`).
        let checkpoint = &mut pending.checkpoint;
        checkpoint.purged_through = checkpoint.stream_sequence;
        self.finish(pending).await?;
        Ok(purged)
    }

    /// Applies `messages` in order and commits the changes, the newly
    /// parked and superseded events and the checkpoint (the last message's
    /// stream sequence) in one transaction. Messages at or below the
    /// checkpoint (redeliveries after a crash) are applied again,
    /// harmlessly: the version gate makes them duplicates.
    ///
    /// On a store error nothing of the batch is durable; memory is reloaded
    /// from the store before the next batch, and the caller should not
    /// acknowledge the messages. An empty batch (an idle poll) writes
    /// nothing.
    pub async fn apply_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> Result<BatchOutcome, S::Error> {
        self.prepare().await?;
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let first = messages.first().map_or(0, |m| m.stream_sequence);
        let last = messages.last().map_or(0, |m| m.stream_sequence);
        let span = self.telemetry.batch(T::ENTITY, messages.len(), first, last);
        span.run(self.commit_storable(|this, unstorable| this.apply_messages(messages, unstorable)))
            .await
    }

    /// Runs `work` (which applies messages in memory, parking those of the
    /// `unstorable` keys) and commits what it did. When the store refuses
    /// one key's state ([`ReplicaStore::unstorable_key`]), starts over from
    /// the store with that key's messages parked, so that the rest commits
    /// instead of the whole batch failing again and again.
    async fn commit_storable(
        &mut self,
        mut work: impl FnMut(&mut Self, &[(String, String)]) -> Pending<T>,
    ) -> Result<BatchOutcome, S::Error> {
        // Keys whose state the store refused to hold, and why.
        let mut unstorable: Vec<(String, String)> = Vec::new();
        loop {
            let pending = work(self, &unstorable);
            let error = match self.finish(pending).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => error,
            };
            let Some(key) = S::unstorable_key(&error) else {
                return Err(error);
            };
            if unstorable.iter().any(|(held, _)| *held == key) {
                return Err(error);
            }
            // Memory went ahead of the store: start over from it.
            self.reload().await?;
            unstorable.push((key, error.to_string()));
        }
    }

    /// Applies `messages` in memory; what to commit.
    fn apply_messages(&mut self, messages: &[Message<'_>], unstorable: &Unstorable) -> Pending<T> {
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        let purged_through = self.checkpoint.map_or(0, |c| c.purged_through);
        for message in messages {
            let checkpoint = &mut pending.checkpoint;
            checkpoint.stream_sequence = checkpoint.stream_sequence.max(message.stream_sequence);
            self.part
                .apply_message(message, purged_through, unstorable, &mut pending.share);
        }
        pending
    }

    /// Merges events that do not come from the stream (an owner's answer to
    /// a bootstrap request) into the replica by sequence and commits the
    /// changes. The checkpoint's stream position does not move.
    ///
    /// An event that cannot be applied is returned in
    /// [`BatchOutcome::rejected`] and not parked: it has no stream sequence
    /// to be parked under (parked events are identified by theirs), and
    /// asking the owner again after fixing the cause brings it again.
    pub async fn merge_unsequenced(
        &mut self,
        payloads: &[&[u8]],
    ) -> Result<BatchOutcome, S::Error> {
        let span = self.telemetry.batch(T::ENTITY, payloads.len(), 0, 0);
        span.run(self.merge_and_commit(payloads)).await
    }

    async fn merge_and_commit(&mut self, payloads: &[&[u8]]) -> Result<BatchOutcome, S::Error> {
        self.prepare().await?;
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        for payload in payloads {
            self.part.merge_payload(payload, &mut pending.share);
        }
        self.finish(pending).await
    }

    /// Applies the pending parked events again, in stream order, through
    /// the version gate; those that now decode leave the parking lot
    /// (whatever the gate says: an event older than what the key holds is
    /// stale, and done), the others stay. Misaddressed, refused and
    /// [`PurgedTombstone`](crate::consume::ParkKind::PurgedTombstone)
    /// events are never applied (see [`Checkpoint::purged_through`]).
    /// Returns what happened, committed in one transaction.
    pub async fn retry_parked(&mut self) -> Result<BatchOutcome, S::Error> {
        self.prepare().await?;
        // As in `apply_batch`: a state the store refuses stays parked, the
        // rest is committed.
        let span = self
            .telemetry
            .batch(T::ENTITY, self.part.parking.pending(), 0, 0);
        span.run(self.commit_storable(|this, unstorable| this.retry_in_memory(unstorable)))
            .await
    }

    fn retry_in_memory(&mut self, unstorable: &Unstorable) -> Pending<T> {
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        self.part.retry_parked(unstorable, &mut pending.share);
        pending
    }

    /// Moves the checkpoint's stream position back to the start (`0`),
    /// keeping the replica: for a stream that was deleted and created again,
    /// whose new messages are numbered below the old checkpoint. The next
    /// consumer starts from the latest event of every key; the version gate
    /// keeps what the replica holds where it is newer. Committed at once.
    pub async fn rewind_stream_position(&mut self) -> Result<(), S::Error> {
        self.prepare().await?;
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        checkpoint.stream_sequence = 0;
        // The new stream numbers its messages afresh: no position in it was
        // handled before a purge.
        checkpoint.purged_through = 0;
        // Nor is it the stream the old positions counted in.
        checkpoint.stream_created = None;
        self.stream_created = None;
        self.finish(Pending::new(checkpoint)).await?;
        Ok(())
    }

    /// Sets the identity of the stream the next messages come from, its
    /// creation time ([`Checkpoint::stream_created`]), written with the
    /// checkpoint of every commit from now on (nothing is written now: a
    /// position is only ever committed with the stream it counts in). A
    /// transport adapter sets it after checking that the stream is the
    /// one the checkpoint records (rewinding first if not).
    pub fn set_stream_created(&mut self, created: SystemTime) {
        self.stream_created = Some(created);
    }

    /// The identity of the stream the checkpoint's positions count in: the
    /// one set with [`DurableReplica::set_stream_created`], else the one
    /// stored.
    pub fn stream_created(&self) -> Option<SystemTime> {
        self.stream_created
            .or_else(|| self.checkpoint.and_then(|c| c.stream_created))
    }

    /// Resolves the pending parked message at `stream_sequence` without
    /// applying it, recording `why`; committed at once. Returns `false`
    /// (and writes nothing) if no pending message is parked there.
    pub async fn discard_parked(
        &mut self,
        stream_sequence: u64,
        why: &str,
    ) -> Result<bool, S::Error> {
        self.prepare().await?;
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        if !self
            .part
            .discard_parked(stream_sequence, why, &mut pending.share)
        {
            return Ok(false);
        }
        self.finish(pending).await?;
        Ok(true)
    }

    /// Applies the parking limits and commits `pending`; then reports the
    /// batch's changes.
    async fn finish(&mut self, mut pending: Pending<T>) -> Result<BatchOutcome, S::Error> {
        self.part.close(&mut pending.share);
        pending.checkpoint.applied += pending.share.applied;
        if let Some(created) = self.stream_created {
            pending.checkpoint.stream_created = Some(created);
        }
        let owed = self.part.owed_for_commit(&pending.share);
        self.part.writing_owed();
        // A parked row written twice in one batch (parked, then superseded)
        // keeps its last form: the stores upsert in order.
        let commit = Commit {
            entries: self.part.entries(&pending.share),
            parked: &pending.share.parked,
            unparked: &pending.share.unparked,
            purged: &pending.share.purged,
            checkpoint: pending.checkpoint,
            owed: owed.as_deref(),
        };
        // Set before the await: if this future is dropped mid-commit, memory
        // is ahead of a store that may or may not have the batch, and the
        // next call reloads.
        self.stale_memory = true;
        self.store.commit(commit).await?;
        self.stale_memory = false;
        self.checkpoint = Some(pending.checkpoint);
        // Committed: no await from here on, so a dropped future cannot skip
        // the feed.
        Ok(self.part.committed(pending.share, owed, &self.telemetry))
    }
}
