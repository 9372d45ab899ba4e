//! A replica in memory, committed to a store batch by batch.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::{Checkpoint, Commit, Loaded, ReplicaStore, StoredEntry};
use crate::consume::parking::ParkingLot;
use crate::consume::{
    Address, BatchOutcome, Message, ParkKind, ParkReason, Parked, ParkingLimits, Resolution,
};
use crate::envelope::{decode_typed, Change};
use crate::event::{EntityKey, StateEvent};
use crate::feed::{Observer, StateChange};
use crate::replica::{Entry, Outcome, Replica};
use crate::sequence::Sequence;

/// A [`Replica`] whose changes and checkpoint are committed to a
/// [`ReplicaStore`] in one transaction per batch.
///
/// Messages that cannot be applied (a malformed envelope, an unknown future
/// version, a failed upcast, a message whose envelope names another entity
/// or key than its transport address) are *parked*: stored beside the
/// replica with a typed [`ParkReason`], in the same transaction. Parking
/// holds nothing back: state events carry the whole state and the version
/// gate orders them by sequence, so the key's later events apply as they
/// come, and once the key holds a state at least as new as a parked event,
/// that event is [superseded](Resolution::Superseded) (kept for inspection
/// within [`ParkingLimits`], then purged). A parked event above everything
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
    replica: Replica<T>,
    store: S,
    checkpoint: Option<Checkpoint>,
    parking: ParkingLot,
    limits: ParkingLimits,
    /// Memory may be ahead of the store (a commit failed, or its future was
    /// dropped): reload before the next batch.
    stale_memory: bool,
    /// The names this replica reports under, in spans and metrics
    /// ([`DurableReplica::with_consumer`]).
    pub(crate) telemetry: crate::telemetry::Telemetry,
    /// Called with every committed change, when set
    /// ([`DurableReplica::on_change`]).
    feed: Option<Observer<T>>,
}

/// One change made by a batch, kept until the batch is committed: the key,
/// the event's sequence, the outcome, and the live state it replaced
/// (moved out of the replica, not cloned).
struct Recorded<T: StateEvent> {
    key: T::Key,
    sequence: Sequence,
    outcome: Outcome,
    before: Option<T>,
}

/// What one batch will commit.
struct Pending<T: StateEvent> {
    outcome: BatchOutcome,
    changed: Vec<T::Key>,
    parked: Vec<Parked>,
    unparked: Vec<u64>,
    /// Tombstones purged from memory, to delete from the store.
    purged: Vec<T::Key>,
    /// The changes to report once committed (only with a feed).
    changes: Vec<Recorded<T>>,
    checkpoint: Checkpoint,
}

impl<T: StateEvent> Pending<T> {
    fn new(checkpoint: Checkpoint) -> Self {
        Pending {
            outcome: BatchOutcome::default(),
            changed: Vec::new(),
            parked: Vec::new(),
            unparked: Vec::new(),
            purged: Vec::new(),
            changes: Vec::new(),
            checkpoint,
        }
    }
}

impl<T: StateEvent, S: ReplicaStore<T>> DurableReplica<T, S> {
    /// Loads the replica, its checkpoint and its parked events from `store`.
    pub async fn open(mut store: S) -> Result<Self, S::Error> {
        let loaded = store.load().await?;
        let mut durable = DurableReplica {
            replica: Replica::new(),
            store,
            checkpoint: None,
            parking: ParkingLot::default(),
            limits: ParkingLimits::default(),
            stale_memory: false,
            feed: None,
            telemetry: crate::telemetry::Telemetry::default(),
        };
        durable.install(loaded);
        Ok(durable)
    }

    /// The same replica, keeping resolved parked events within `limits`.
    #[must_use]
    pub fn with_parking_limits(mut self, limits: ParkingLimits) -> Self {
        self.limits = limits;
        self
    }

    fn install(&mut self, loaded: Loaded<T>) {
        self.replica = loaded.replica;
        self.checkpoint = loaded.checkpoint;
        self.parking = ParkingLot::new(loaded.parked);
        self.stale_memory = false;
    }

    /// Reloads everything from the store, dropping what memory holds.
    pub async fn reload(&mut self) -> Result<(), S::Error> {
        let loaded = self.store.load().await?;
        self.install(loaded);
        Ok(())
    }

    /// The replica as committed (plus nothing uncommitted: every
    /// [`DurableReplica::apply_batch`] commits before it returns).
    pub fn replica(&self) -> &Replica<T> {
        &self.replica
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
        self.parking.iter()
    }

    /// The parked message at `stream_sequence`, if any.
    pub fn parked_at(&self, stream_sequence: u64) -> Option<&Parked> {
        self.parking.get(stream_sequence)
    }

    /// How many parked messages wait (are not resolved).
    pub fn pending_parked(&self) -> usize {
        self.parking.pending()
    }

    /// How many parked messages are held, pending and resolved.
    pub fn parked_len(&self) -> usize {
        self.parking.len()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Registers `feed`, called after every commit with each change the
    /// committed batch made (replacing a feed set before); see
    /// [`crate::feed`] for what is reported.
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
    /// # What a crash loses
    ///
    /// The feed is not durable. A crash (or a panic in the feed) after a
    /// batch is committed and before its last change is reported loses the
    /// unreported changes of that batch: the store already holds them, so
    /// the messages, delivered again, are duplicates and report nothing.
    /// Everything committed before that batch was reported; nothing
    /// after it is lost. A restart reports nothing by itself: a view kept in
    /// memory is rebuilt from [`DurableReplica::replica`] at start
    /// (`replica().iter()`); a view kept durably that must not miss a
    /// change should be brought in step with the replica at start the same
    /// way (compare and repair), or kept in the same database and written
    /// from the feed idempotently (by key and sequence).
    ///
    /// [`apply_batch`]: DurableReplica::apply_batch
    /// [`retry_parked`]: DurableReplica::retry_parked
    /// [`merge_unsequenced`]: DurableReplica::merge_unsequenced
    pub fn on_change(&mut self, feed: impl FnMut(StateChange<'_, T>) + Send + Sync + 'static) {
        self.feed = Some(Box::new(feed));
    }

    /// Removes the feed set with [`DurableReplica::on_change`].
    pub fn clear_on_change(&mut self) {
        self.feed = None;
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
    /// [`Stale`](Outcome::Stale). Once it is purged, the key is unknown, and
    /// an upsert older than the delete that still arrives is
    /// [`Inserted`](Outcome::Inserted): the deleted entity comes back, and
    /// stays until the owner publishes it again. So keep every tombstone
    /// longer than the longest time an older event of its key can still
    /// arrive after the delete:
    ///
    /// - redelivery: an unacknowledged message comes again after the
    ///   consumer's `ack_wait`, as many times as it takes. This one is
    ///   guarded: a purge records the checkpoint's stream position
    ///   ([`Checkpoint::purged_through`]), and a message at or below it that
    ///   would bring back a key the replica does not hold is parked
    ///   ([`ParkKind::PurgedTombstone`]) instead of applied;
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
        if self.stale_memory {
            self.reload().await?;
        }
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        pending.purged = self.replica.purge_tombstone_keys(cutoff);
        if pending.purged.is_empty() {
            return Ok(0);
        }
        // Every message up to the checkpoint was handled while the purged
        // tombstones were held: one of them coming again must not bring a
        // purged key back (see `Checkpoint::purged_through`).
        let checkpoint = &mut pending.checkpoint;
        checkpoint.purged_through = checkpoint.stream_sequence;
        let purged = pending.purged.len();
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
        if self.stale_memory {
            self.reload().await?;
        }
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
    fn apply_messages(
        &mut self,
        messages: &[Message<'_>],
        unstorable: &[(String, String)],
    ) -> Pending<T> {
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        for message in messages {
            let checkpoint = &mut pending.checkpoint;
            checkpoint.stream_sequence = checkpoint.stream_sequence.max(message.stream_sequence);
            let sequence = message.stream_sequence;
            // A redelivery of a parked message stays as it is: parked once.
            // Only the same message, though: after a stream was re-created
            // (or renumbered), another message can come at a position a
            // parked one of the old stream holds, and it is new.
            if let Some(parked) = self
                .parking
                .get(sequence)
                .filter(|parked| parked.payload == message.payload)
            {
                if parked.is_pending() {
                    pending
                        .outcome
                        .parked
                        .push((sequence, parked.reason.clone()));
                }
                continue;
            }
            if let Some(reason) = message.refused {
                let reason = ParkReason::new(ParkKind::Refused, reason);
                self.park(message, message.address.key(), reason, &mut pending);
                continue;
            }
            let purged_through = self.checkpoint.map_or(0, |c| c.purged_through);
            match self.apply_addressed(message, unstorable, purged_through) {
                Ok((applied, key, before)) => {
                    if changes_state(applied) {
                        pending.checkpoint.applied += 1;
                        self.record(&key, applied, before, &mut pending);
                        self.supersede(key, Some(sequence), &mut pending);
                    }
                    pending.outcome.applied.push((sequence, applied));
                }
                Err((key, reason)) => {
                    let key = key.or_else(|| message.address.key().map(str::to_owned));
                    self.park(message, key.as_deref(), reason, &mut pending);
                }
            }
        }
        pending
    }

    /// Decodes `message`, checks it against its transport address, and
    /// applies it; or the key it names (if any) and why it cannot apply.
    /// A message at or below `purged_through` (`0`: no gate) that would
    /// make live a key the replica does not hold live is not applied
    /// ([`ParkKind::PurgedTombstone`]): every such message was handled
    /// before, when a newer event of its key won, so the key's newer state
    /// is a purged tombstone.
    #[allow(clippy::type_complexity)]
    fn apply_addressed(
        &mut self,
        message: &Message<'_>,
        unstorable: &[(String, String)],
        purged_through: u64,
    ) -> Result<(Outcome, T::Key, Option<T>), (Option<String>, ParkReason)> {
        if let Address::Invalid(why) = &message.address {
            return Err((None, ParkReason::new(ParkKind::Misaddressed, why)));
        }
        let decoded = match decode_typed::<T>(message.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.replica.count_rejection(&error);
                // An addressed message is parked under the key it was sent
                // to, never the key it claims: retried after an upgrade, it
                // must still apply only to its own key.
                if let Address::Key { entity, key } = &message.address {
                    let context = error.context();
                    let other_entity = context.entity.as_deref().is_some_and(|e| e != *entity);
                    let other_key = context.key.as_deref().is_some_and(|k| k != key.as_ref());
                    if other_entity || other_key || *entity != T::ENTITY {
                        let reason = format!(
                            "sent on `{}` (entity `{entity}`, key `{key}`) but the envelope names \
                             entity `{}`, key `{}`: a message applies only to the entity and key \
                             it was sent to ({error})",
                            message.subject,
                            context.entity.as_deref().unwrap_or("?"),
                            context.key.as_deref().unwrap_or("?"),
                        );
                        return Err((
                            Some(key.as_ref().to_owned()),
                            ParkReason::new(ParkKind::Misaddressed, reason),
                        ));
                    }
                    return Err((Some(key.as_ref().to_owned()), ParkReason::of_error(&error)));
                }
                return Err((error.context().key.clone(), ParkReason::of_error(&error)));
            }
        };
        if let Address::Key { entity, key } = &message.address {
            if *entity != T::ENTITY || decoded.header.key != *key {
                let reason = format!(
                    "sent on `{}` (entity `{entity}`, key `{key}`) but the envelope is of entity \
                     `{}`, key `{}`: a message applies only to the entity and key it was sent to",
                    message.subject, decoded.header.entity, decoded.header.key
                );
                // Parked under the key it was sent to, not the key it
                // claims: it must not touch the real key.
                return Err((
                    Some(key.as_ref().to_owned()),
                    ParkReason::new(ParkKind::Misaddressed, reason),
                ));
            }
        }
        if let Some((key, why)) = unstorable
            .iter()
            .find(|(key, _)| *key == decoded.header.key)
        {
            let reason = ParkReason::new(
                ParkKind::Unstorable,
                format!("the store cannot hold this state of key `{key}`: {why}"),
            );
            return Err((Some(key.clone()), reason));
        }
        // Not live: unknown, or a tombstone re-created by a redelivered
        // older delete after the newer one was purged.
        if message.stream_sequence <= purged_through
            && matches!(decoded.change, Change::Upsert(_))
            && !matches!(self.replica.entry(&decoded.key), Some(Entry::Live { .. }))
        {
            let reason = format!(
                "stream sequence {} is at or below {purged_through}, where tombstones were \
                 purged, and would bring back key `{}`, which this replica does not hold: most \
                 likely an older upsert of a key deleted since, whose tombstone was purged (a \
                 redelivery inside the purge horizon; see `purge_tombstones_before`)",
                message.stream_sequence, decoded.header.key
            );
            return Err((
                Some(decoded.header.key.into_owned()),
                ParkReason::new(ParkKind::PurgedTombstone, reason),
            ));
        }
        let key = decoded.key.clone();
        let span = crate::telemetry::event_span(message.stream_sequence, &decoded.header);
        let _entered = span.enter();
        let (outcome, before) = self.replica.apply_decoded_taking(decoded);
        span.outcome(outcome);
        Ok((outcome, key, before))
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
        if self.stale_memory {
            self.reload().await?;
        }
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        for payload in payloads {
            let span = crate::telemetry::unsequenced_event_span(payload);
            let _entered = span.enter();
            match self.replica.apply_json_keyed(payload) {
                Ok((applied, key, before)) => {
                    span.outcome(applied);
                    if changes_state(applied) {
                        pending.checkpoint.applied += 1;
                        self.record(&key, applied, before, &mut pending);
                        // The owner's current state comes after everything
                        // the stream delivered so far.
                        self.supersede(key, Some(u64::MAX), &mut pending);
                    }
                    pending.outcome.applied.push((0, applied));
                }
                Err(error) => pending
                    .outcome
                    .rejected
                    .push((0, ParkReason::of_error(&error))),
            }
        }
        self.finish(pending).await
    }

    /// Applies the pending parked events again, in stream order, through
    /// the version gate; those that now decode leave the parking lot
    /// (whatever the gate says: an event older than what the key holds is
    /// stale, and done), the others stay. Returns what happened, committed
    /// in one transaction.
    pub async fn retry_parked(&mut self) -> Result<BatchOutcome, S::Error> {
        if self.stale_memory {
            self.reload().await?;
        }
        // As in `apply_batch`: a state the store refuses stays parked, the
        // rest is committed.
        let span = self
            .telemetry
            .batch(T::ENTITY, self.parking.pending(), 0, 0);
        span.run(self.commit_storable(|this, unstorable| this.retry_in_memory(unstorable)))
            .await
    }

    fn retry_in_memory(&mut self, unstorable: &[(String, String)]) -> Pending<T> {
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        let waiting: Vec<(u64, Vec<u8>, String)> = self
            .parking
            .iter()
            .filter(|parked| parked.is_pending())
            .map(|p| (p.stream_sequence, p.payload.clone(), p.subject.clone()))
            .collect();
        for (sequence, payload, subject) in waiting {
            let Some(parked) = self.parking.get(sequence) else {
                continue;
            };
            // Misaddressed and refused messages stay what they were, and so
            // do those that would bring back a purged key.
            if matches!(
                parked.reason.kind,
                ParkKind::Misaddressed | ParkKind::Refused | ParkKind::PurgedTombstone
            ) {
                pending
                    .outcome
                    .parked
                    .push((sequence, parked.reason.clone()));
                continue;
            }
            let message = Message::new(sequence, &subject, &payload);
            let message = match parked.key.clone() {
                Some(key) => message.addressed_to(T::ENTITY, key),
                None => message,
            };
            match self.apply_addressed(&message, unstorable, 0) {
                Ok((applied, key, before)) => {
                    self.parking.remove(sequence);
                    pending.unparked.push(sequence);
                    if changes_state(applied) {
                        pending.checkpoint.applied += 1;
                        self.record(&key, applied, before, &mut pending);
                        self.supersede(key, None, &mut pending);
                    }
                    pending.outcome.applied.push((sequence, applied));
                }
                Err((_, reason)) => pending.outcome.parked.push((sequence, reason)),
            }
        }
        pending
    }

    /// Moves the checkpoint's stream position back to the start (`0`),
    /// keeping the replica: for a stream that was deleted and created again,
    /// whose new messages are numbered below the old checkpoint. The next
    /// consumer starts from the latest event of every key; the version gate
    /// keeps what the replica holds where it is newer. Committed at once.
    pub async fn rewind_stream_position(&mut self) -> Result<(), S::Error> {
        if self.stale_memory {
            self.reload().await?;
        }
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        checkpoint.stream_sequence = 0;
        // The new stream numbers its messages afresh: no position in it was
        // handled before a purge.
        checkpoint.purged_through = 0;
        self.finish(Pending::new(checkpoint)).await?;
        Ok(())
    }

    /// Resolves the pending parked message at `stream_sequence` without
    /// applying it, recording `why`; committed at once. Returns `false`
    /// (and writes nothing) if no pending message is parked there.
    pub async fn discard_parked(
        &mut self,
        stream_sequence: u64,
        why: &str,
    ) -> Result<bool, S::Error> {
        if self.stale_memory {
            self.reload().await?;
        }
        let mut pending = Pending::new(self.checkpoint.unwrap_or_default());
        let resolution = Resolution::Discarded(why.to_owned());
        let Some(parked) = self.parking.resolve(stream_sequence, resolution) else {
            return Ok(false);
        };
        pending.parked.push(parked.clone());
        self.finish(pending).await?;
        Ok(true)
    }

    /// Keeps a change of `key` to report after the commit, when a feed is
    /// set.
    fn record(&self, key: &T::Key, outcome: Outcome, before: Option<T>, pending: &mut Pending<T>) {
        if self.feed.is_none() {
            return;
        }
        let Some(sequence) = self.replica.entry(key).map(|entry| entry.sequence()) else {
            return;
        };
        pending.changes.push(Recorded {
            key: key.clone(),
            sequence,
            outcome,
            before,
        });
    }

    /// Records that `key` changed, and marks the pending parked events of
    /// `key` that its new state supersedes.
    fn supersede(&mut self, key: T::Key, applied_at: Option<u64>, pending: &mut Pending<T>) {
        // The common case, on the path of every applied event: nothing
        // pending to look up (and no key to write out as text).
        if !self.parking.has_pending_keys() {
            pending.changed.push(key);
            return;
        }
        let Some(held) = self.replica.entry(&key).map(|entry| entry.sequence().get()) else {
            pending.changed.push(key);
            return;
        };
        let text = key.to_string();
        for stream_sequence in self.parking.superseded_by(&text, held, applied_at) {
            if let Some(parked) = self
                .parking
                .resolve(stream_sequence, Resolution::Superseded)
            {
                pending.parked.push(parked.clone());
                pending.outcome.superseded.push(stream_sequence);
            }
        }
        pending.changed.push(key);
    }

    fn park(
        &mut self,
        message: &Message<'_>,
        key: Option<&str>,
        reason: ParkReason,
        pending: &mut Pending<T>,
    ) {
        // A key no store can hold (control characters) is no valid key of
        // any entity: the message is parked under no key.
        let key = key
            .filter(|key| !key.chars().any(char::is_control))
            .map(str::to_owned);
        pending
            .outcome
            .parked
            .push((message.stream_sequence, reason.clone()));
        let parked = Parked {
            stream_sequence: message.stream_sequence,
            subject: crate::consume::printable(message.subject).into_owned(),
            key,
            reason,
            payload: message.payload.to_vec(),
            resolution: None,
        };
        crate::telemetry::event_parked(
            parked.stream_sequence,
            parked.key.as_deref(),
            &parked.reason,
        );
        self.parking.insert(parked.clone());
        // Already older than what its key holds: superseded at once.
        if let Some(held) = parked
            .key
            .as_deref()
            .and_then(|key| <T::Key as EntityKey>::parse_key(key).ok())
            .and_then(|key| self.replica.entry(&key).map(|e| e.sequence().get()))
        {
            let key = parked.key.as_deref().unwrap_or_default();
            if self
                .parking
                .superseded_by(key, held, None)
                .contains(&message.stream_sequence)
            {
                if let Some(resolved) = self
                    .parking
                    .resolve(message.stream_sequence, Resolution::Superseded)
                {
                    pending.parked.push(resolved.clone());
                    pending.outcome.superseded.push(message.stream_sequence);
                    return;
                }
            }
        }
        pending.parked.push(parked);
    }

    /// Purges resolved parked events over the limits and commits `pending`.
    async fn finish(&mut self, mut pending: Pending<T>) -> Result<BatchOutcome, S::Error> {
        let overflow = self.parking.over_pending(self.limits);
        if !overflow.is_empty() {
            tracing_warn_overflow(overflow.len(), self.limits);
            let why = format!(
                "the parking lot was over its limit of {} pending messages or {} bytes",
                self.limits.max_pending, self.limits.max_pending_bytes
            );
            for stream_sequence in overflow {
                let resolution = Resolution::Discarded(why.clone());
                if let Some(parked) = self.parking.resolve(stream_sequence, resolution) {
                    pending.parked.push(parked.clone());
                    pending.outcome.overflowed.push(stream_sequence);
                }
            }
        }
        for stream_sequence in self.parking.over(self.limits) {
            self.parking.remove(stream_sequence);
            pending.unparked.push(stream_sequence);
        }
        // A parked row written twice in one batch (parked, then superseded)
        // keeps its last form: the stores upsert in order.
        let commit = Commit {
            entries: stored_entries(&self.replica, &pending.changed),
            parked: &pending.parked,
            unparked: &pending.unparked,
            purged: &pending.purged,
            checkpoint: pending.checkpoint,
        };
        // Set before the await: if this future is dropped mid-commit, memory
        // is ahead of a store that may or may not have the batch, and the
        // next call reloads.
        self.stale_memory = true;
        self.store.commit(commit).await?;
        self.stale_memory = false;
        self.checkpoint = Some(pending.checkpoint);
        let sizes = crate::telemetry::Sizes {
            keys: self.replica.len(),
            tombstones: self.replica.tombstones(),
            pending_parked: self.parking.pending(),
        };
        self.telemetry.committed(T::ENTITY, &pending.outcome, sizes);
        // Committed: report the batch's changes. No await from the commit
        // to here, so a dropped future cannot skip them.
        if let Some(feed) = self.feed.as_mut() {
            report(&self.replica, pending.changes, feed);
        }
        Ok(pending.outcome)
    }
}

fn changes_state(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Inserted | Outcome::Updated | Outcome::Deleted
    )
}

/// What the replica now holds for each changed key, each key once.
fn stored_entries<'a, T: StateEvent>(
    replica: &'a Replica<T>,
    changed: &'a [T::Key],
) -> Vec<StoredEntry<'a, T>> {
    let mut seen = HashSet::with_capacity(changed.len());
    changed
        .iter()
        .filter(|key| seen.insert(*key))
        .filter_map(|key| {
            replica.entry(key).map(|entry| match entry {
                Entry::Live { sequence, state } => StoredEntry {
                    key,
                    sequence,
                    read_version: replica.read_version(key).unwrap_or(T::VERSION),
                    state: Some(state),
                    deleted_at: None,
                },
                Entry::Tombstone { sequence } => StoredEntry {
                    key,
                    sequence,
                    read_version: T::VERSION,
                    state: None,
                    deleted_at: replica.deleted_at(key),
                },
            })
        })
        .collect()
}

/// Calls `feed` with each of `changes`, in order. A change's `after` is the
/// `before` of the key's next change in the batch, or what the replica holds
/// now for the key's last one.
fn report<T: StateEvent>(replica: &Replica<T>, changes: Vec<Recorded<T>>, feed: &mut Observer<T>) {
    let mut next: Vec<Option<usize>> = vec![None; changes.len()];
    let mut later: HashMap<&T::Key, usize> = HashMap::with_capacity(changes.len());
    for (index, change) in changes.iter().enumerate().rev() {
        next[index] = later.insert(&change.key, index);
    }
    for (index, change) in changes.iter().enumerate() {
        let after = match next[index] {
            Some(next) => changes[next].before.as_ref(),
            None => replica.get(&change.key),
        };
        feed(StateChange {
            entity: T::ENTITY,
            key: &change.key,
            sequence: change.sequence,
            before: change.before.as_ref(),
            after,
            outcome: change.outcome,
        });
    }
}

/// Logs a parking overflow where `tracing` is there (feature `tracing`).
fn tracing_warn_overflow(count: usize, limits: ParkingLimits) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        discarded = count,
        max_pending = limits.max_pending,
        max_pending_bytes = limits.max_pending_bytes,
        "parking lot over its limits: the oldest pending parked messages were discarded"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (count, limits);
}
