//! [`Part`]: the per-entity half of a durable consumer. It applies messages
//! to one entity's replica in memory, parks what cannot apply, and yields
//! its share of the next commit ([`Pending`]); the owner (a
//! [`DurableReplica`](super::DurableReplica) for one entity, a
//! [`DurableRouter`](super::DurableRouter) for several) writes the shares
//! with its one checkpoint, then tells each part its share is committed.
//!
//! Nothing here does I/O or knows the checkpoint: the rules (the version
//! gate, the address check, parking and superseding, the purge floor) are
//! the same whoever owns the part.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::StoredEntry;
use crate::consume::parking::ParkingLot;
use crate::consume::{
    Address, BatchOutcome, Message, ParkKind, ParkReason, Parked, ParkingLimits, Resolution,
};
use crate::envelope::{Change, Gated};
use crate::event::{EntityKey, StateEvent};
use crate::feed::{Observer, StateChange};
use crate::replica::{Entry, Outcome, Replica, Slot};
use crate::sequence::Sequence;

/// One entity's replica, parking lot and change feed, as a durable
/// consumer holds them.
pub(crate) struct Part<T: StateEvent> {
    pub(crate) replica: Replica<T>,
    pub(crate) parking: ParkingLot,
    pub(crate) limits: ParkingLimits,
    /// Called with every committed change, when set.
    pub(crate) feed: Option<Observer<T>>,
    /// Whether the store writes the events' own `data` texts
    /// ([`StoredEntry::json`]): if not, none is copied for the commit.
    pub(crate) keeps_json: bool,
    /// The feed's owed keys: those whose changes are not known to be
    /// reported (loaded from the store, or committed by a batch whose report
    /// has not returned). Each once. While any are held, they are reported
    /// again (replayed) before any new change.
    owed: Vec<T::Key>,
    /// Whether every key the store lists as owed is known to be reported
    /// (by this process: a report or a replay returned since the last
    /// commit that wrote them, and no commit writing them started since),
    /// so that an explicit reload in the same process does not report them
    /// again. Cleared before every commit that writes owed keys
    /// ([`Part::writing_owed`]): such a commit may land without returning.
    stored_reported: bool,
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

/// A key a batch changed, in the order of its changes (a key changed
/// twice is in twice).
struct Changed<K> {
    key: K,
    /// The state's JSON when the change set it from the event's `data` as
    /// written (see [`StoredEntry::json`]): copied out of the message,
    /// which the batch only borrows. Only the key's last change counts.
    json: Option<Box<str>>,
}

/// What one part will commit of a batch.
pub(crate) struct Pending<T: StateEvent> {
    pub(crate) outcome: BatchOutcome,
    changed: Vec<Changed<T::Key>>,
    pub(crate) parked: Vec<Parked>,
    pub(crate) unparked: Vec<u64>,
    /// Tombstones purged from memory, to delete from the store.
    pub(crate) purged: Vec<T::Key>,
    /// The changes to report once committed (only with a feed).
    changes: Vec<Recorded<T>>,
    /// Events that changed the replica (for the checkpoint's `applied`).
    pub(crate) applied: u64,
}

impl<T: StateEvent> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            outcome: BatchOutcome::default(),
            changed: Vec::new(),
            parked: Vec::new(),
            unparked: Vec::new(),
            purged: Vec::new(),
            changes: Vec::new(),
            applied: 0,
        }
    }
}

/// Keys whose state the store refused to hold, and why (the messages of
/// such a key are parked as [`ParkKind::Unstorable`] on the next attempt).
pub(crate) type Unstorable = [(String, String)];

impl<T: StateEvent> Default for Part<T> {
    fn default() -> Self {
        Part {
            replica: Replica::new(),
            parking: ParkingLot::default(),
            limits: ParkingLimits::default(),
            feed: None,
            keeps_json: true,
            owed: Vec::new(),
            stored_reported: false,
        }
    }
}

impl<T: StateEvent> Part<T> {
    /// Replaces what memory holds with what a store loaded: the replica,
    /// the parked events and the feed's owed keys (replayed by
    /// [`Part::replay_owed`] once a feed is set).
    pub(crate) fn install(&mut self, replica: Replica<T>, parked: Vec<Parked>, owed: Vec<T::Key>) {
        self.replica = replica;
        self.parking = ParkingLot::new(parked);
        if self.stored_reported {
            // Reloaded by this process with no owed keys written since they
            // were last reported: what the store lists was reported.
            self.owed.clear();
        } else {
            self.owed = owed;
        }
    }

    /// The owed keys to commit with `pending`: with a feed set, the keys
    /// still owed and every key whose change the share will report, each
    /// once; without a feed, `None` (the store keeps what it holds, so a
    /// feed registered later still replays them).
    pub(crate) fn owed_for_commit(&self, pending: &Pending<T>) -> Option<Vec<T::Key>> {
        self.feed.as_ref()?;
        if self.owed.is_empty() && pending.changes.is_empty() {
            return Some(Vec::new());
        }
        let mut seen = HashSet::with_capacity(self.owed.len() + pending.changes.len());
        let mut keys = Vec::with_capacity(self.owed.len() + pending.changes.len());
        for key in self
            .owed
            .iter()
            .chain(pending.changes.iter().map(|c| &c.key))
        {
            if seen.insert(key) {
                keys.push(key.clone());
            }
        }
        Some(keys)
    }

    /// A commit that writes the owed keys ([`Part::owed_for_commit`]) is
    /// about to start: until it is known to have landed and its report
    /// returned, what the store lists may be unreported. A commit can land
    /// without its call returning (its future dropped during the store's
    /// COMMIT, an error after the transaction committed), and the reload
    /// that follows must then replay what it loads.
    pub(crate) fn writing_owed(&mut self) {
        if self.feed.is_some() {
            self.stored_reported = false;
        }
    }

    /// Reports each owed key's current entry to the feed as a replayed
    /// change (see [`StateChange::replayed`]), when a feed is set and keys
    /// are owed; then nothing is owed in memory. The store still lists
    /// the keys until the next commit writes the new set: a crash before it
    /// replays them again (at least once).
    ///
    /// A feed that panics here leaves every key owed, to replay again.
    pub(crate) fn replay_owed(&mut self) {
        if self.owed.is_empty() {
            return;
        }
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        for key in &self.owed {
            let (sequence, after) = match self.replica.entry(key) {
                Some(Entry::Live { sequence, state }) => (sequence, Some(state)),
                Some(Entry::Tombstone { sequence }) => (sequence, None),
                None => (Sequence::new(0), None),
            };
            feed(StateChange {
                entity: T::ENTITY,
                key,
                sequence,
                before: None,
                after,
                outcome: if after.is_some() {
                    Outcome::Inserted
                } else {
                    Outcome::Deleted
                },
                replayed: true,
            });
        }
        self.owed.clear();
        self.stored_reported = true;
    }

    /// Applies one message from the stream (or parks it), recording what to
    /// commit in `pending`. `purged_through` is the checkpoint's purge
    /// floor (see [`Checkpoint::purged_through`](super::Checkpoint)).
    pub(crate) fn apply_message(
        &mut self,
        message: &Message<'_>,
        purged_through: u64,
        unstorable: &Unstorable,
        pending: &mut Pending<T>,
    ) {
        let sequence = message.stream_sequence;
        // A redelivery of a parked message stays as it is: parked once.
        // Only the same message, though: after a stream was re-created (or
        // renumbered), another message can come at a position a parked one
        // of the old stream holds, and it is new.
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
            return;
        }
        if let Some(reason) = message.refused {
            let reason = ParkReason::new(ParkKind::Refused, reason);
            self.park(message, message.address.key(), reason, pending);
            return;
        }
        match self.apply_addressed(message, purged_through, unstorable) {
            Ok(Applied {
                outcome: applied,
                key,
                before,
                json,
            }) => {
                if changes_state(applied) {
                    pending.applied += 1;
                    self.record(&key, applied, before, pending);
                    self.supersede(key, json, Some(sequence), pending);
                }
                pending.outcome.applied.push((sequence, applied));
            }
            Err((key, reason)) => {
                let key = key.or_else(|| message.address.key().map(str::to_owned));
                self.park(message, key.as_deref(), reason, pending);
            }
        }
    }

    /// Decodes `message`, checks it against its transport address, and
    /// applies it; or the key it names (if any) and why it cannot apply.
    ///
    /// The purge floor (`purged_through`, `0`: no gate; see
    /// [`Checkpoint::purged_through`](super::Checkpoint)): a message at or
    /// below it is a redelivery of one handled before a purge, and
    ///
    /// - an upsert of a key the replica does not hold live, unless the key
    ///   holds a tombstone at least as new (which makes it
    ///   [`Outcome::Stale`] through the version gate), is not applied
    ///   ([`ParkKind::PurgedTombstone`]): the key's newer event was a delete
    ///   whose tombstone was purged;
    /// - a delete of a key the replica does not hold at all is
    ///   [`Outcome::Stale`] and not applied: it was applied before the
    ///   purge, and its tombstone (or a newer one) purged since. Applying it
    ///   again would re-create an *older* tombstone, which a later
    ///   redelivered upsert between the two deletes would pass;
    /// - a message that cannot be applied for another reason, of a key the
    ///   replica does not hold live, is parked as
    ///   [`ParkKind::PurgedTombstone`] (the first reason kept in the text),
    ///   so that [`Part::retry_parked`], after an upgrade, cannot bring the
    ///   key back.
    fn apply_addressed<'m>(
        &mut self,
        message: &Message<'m>,
        purged_through: u64,
        unstorable: &Unstorable,
    ) -> Result<Applied<'m, T>, (Option<String>, ParkReason)> {
        match self.apply_unfloored(message, purged_through, unstorable) {
            Err((key, reason)) if below(message.stream_sequence, purged_through) => {
                Err(self.below_the_floor(message, purged_through, key, reason))
            }
            done => done,
        }
    }

    /// A message at or below the purge floor that cannot apply for
    /// `reason`: parked as [`ParkKind::PurgedTombstone`] unless its key is
    /// held live (then a retry goes through the version gate against that
    /// state), or the reason already keeps it out of every retry.
    fn below_the_floor(
        &self,
        message: &Message<'_>,
        purged_through: u64,
        key: Option<String>,
        reason: ParkReason,
    ) -> (Option<String>, ParkReason) {
        if !retriable(reason.kind) {
            return (key, reason);
        }
        let held_live = key
            .as_deref()
            .and_then(|key| <T::Key as EntityKey>::parse_key(key).ok())
            .is_some_and(|key| matches!(self.replica.entry(&key), Some(Entry::Live { .. })));
        if held_live {
            return (key, reason);
        }
        let text = format!(
            "stream sequence {} is at or below {purged_through}, where tombstones were purged, \
             and key `{}` is not held live here: a redelivery of a message handled before the \
             purge, kept out so that no retry can bring back a key whose tombstone was purged \
             (parked first as {}: {})",
            message.stream_sequence,
            key.as_deref().unwrap_or("?"),
            reason.kind.as_str(),
            reason.message
        );
        (key, ParkReason::new(ParkKind::PurgedTombstone, text))
    }

    /// [`Part::apply_addressed`] but for parking what cannot apply below
    /// the floor.
    fn apply_unfloored<'m>(
        &mut self,
        message: &Message<'m>,
        purged_through: u64,
        unstorable: &Unstorable,
    ) -> Result<Applied<'m, T>, (Option<String>, ParkReason)> {
        if let Address::Invalid(why) = &message.address {
            return Err((None, ParkReason::new(ParkKind::Misaddressed, why)));
        }
        // Through the version gate: an upsert that the replica refuses
        // whatever its data says (a lower sequence, or the same one as a
        // tombstone or a state read at a higher version) is `Stale` without
        // its data decoded, as in `Replica`. Its attributes are still
        // checked against the address, the unstorable keys and the floor.
        let (gated, hash) = match self.replica.decode_gated(message.payload) {
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
            if *entity != T::ENTITY || gated.header().key != *key {
                let reason =
                    format!(
                    "sent on `{}` (entity `{entity}`, key `{key}`) but the envelope is of entity \
                     `{}`, key `{}`: a message applies only to the entity and key it was sent to",
                    message.subject, gated.header().entity, gated.header().key
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
            .find(|(key, _)| *key == gated.header().key)
        {
            let reason = ParkReason::new(
                ParkKind::Unstorable,
                format!("the store cannot hold this state of key `{key}`: {why}"),
            );
            return Err((Some(key.clone()), reason));
        }
        let below_the_floor = below(message.stream_sequence, purged_through);
        let decoded = match gated {
            Gated::Decoded(decoded) => decoded,
            refused @ Gated::Refused { .. } => {
                // Held live, or a tombstone at least as new: never parked
                // below the floor either (see the rules below).
                let key = refused.key().clone();
                let span = crate::telemetry::event_span(message.stream_sequence, refused.header());
                let _entered = span.enter();
                let (outcome, before) = self.replica.apply_gated_taking(refused, hash);
                span.outcome(outcome);
                return Ok(Applied {
                    outcome,
                    key,
                    before,
                    json: None,
                });
            }
        };
        // What is held matters only below the floor (looked up only there).
        let held = below_the_floor
            .then(|| self.replica.entry(&decoded.key))
            .flatten();
        // A redelivered delete of a key purged since: handled before the
        // purge, and not to be re-created as an older tombstone.
        if below_the_floor && held.is_none() && matches!(decoded.change, Change::Delete) {
            return Ok(Applied {
                outcome: Outcome::Stale,
                key: decoded.key,
                before: None,
                json: None,
            });
        }
        // Not live, and no tombstone at least as new to make it stale:
        // unknown (its tombstone purged), or a tombstone older than the
        // upsert (re-created by an older delete that an earlier build
        // applied again after the newer one was purged).
        let newer_tombstone = matches!(
            held,
            Some(Entry::Tombstone { sequence }) if sequence >= decoded.header.sequence
        );
        if below_the_floor
            && matches!(decoded.change, Change::Upsert(_))
            && !matches!(held, Some(Entry::Live { .. }))
            && !newer_tombstone
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
        let json = decoded.data_text;
        let span = crate::telemetry::event_span(message.stream_sequence, &decoded.header);
        let _entered = span.enter();
        let (outcome, before) = self.replica.apply_decoded_taking(decoded, hash);
        span.outcome(outcome);
        Ok(Applied {
            outcome,
            key,
            before,
            json,
        })
    }

    /// Merges one event that does not come from the stream (an owner's
    /// answer to a bootstrap request) by sequence.
    pub(crate) fn merge_payload(&mut self, payload: &[u8], pending: &mut Pending<T>) {
        let span = crate::telemetry::unsequenced_event_span(payload);
        let _entered = span.enter();
        match self.replica.apply_json_keyed(payload) {
            Ok((applied, key, before)) => {
                span.outcome(applied);
                if changes_state(applied) {
                    pending.applied += 1;
                    self.record(&key, applied, before, pending);
                    // The owner's current state comes after everything the
                    // stream delivered so far.
                    self.supersede(key, None, Some(u64::MAX), pending);
                }
                pending.outcome.applied.push((0, applied));
            }
            Err(error) => pending
                .outcome
                .rejected
                .push((0, ParkReason::of_error(&error))),
        }
    }

    /// Applies the pending parked events again, in stream order, through
    /// the version gate; those that now decode leave the parking lot.
    pub(crate) fn retry_parked(&mut self, unstorable: &Unstorable, pending: &mut Pending<T>) {
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
            if !retriable(parked.reason.kind) {
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
            match self.apply_addressed(&message, 0, unstorable) {
                Ok(Applied {
                    outcome: applied,
                    key,
                    before,
                    json,
                }) => {
                    self.parking.remove(sequence);
                    pending.unparked.push(sequence);
                    if changes_state(applied) {
                        pending.applied += 1;
                        self.record(&key, applied, before, pending);
                        self.supersede(key, json, None, pending);
                    }
                    pending.outcome.applied.push((sequence, applied));
                }
                Err((_, reason)) => pending.outcome.parked.push((sequence, reason)),
            }
        }
    }

    /// Purges the tombstones recorded before `cutoff` from memory; how
    /// many (their keys are in `pending.purged`).
    ///
    /// The tombstone of a key with a pending parked message that a retry
    /// may apply is kept: that key is in flux (a future-version upsert newer
    /// than the delete, parked until an upgrade, must apply after it, and an
    /// older one must then be stale against the tombstone). It is purged by
    /// a later purge, once the parked message is resolved.
    pub(crate) fn purge_tombstones_before(
        &mut self,
        cutoff: SystemTime,
        pending: &mut Pending<T>,
    ) -> usize {
        let in_flux: Vec<(T::Key, crate::sequence::Sequence, SystemTime)> = self
            .parking
            .iter()
            .filter(|parked| parked.is_pending() && retriable(parked.reason.kind))
            .filter_map(|parked| parked.key.as_deref())
            .filter_map(|key| <T::Key as EntityKey>::parse_key(key).ok())
            .filter_map(|key| match self.replica.entry(&key) {
                Some(Entry::Tombstone { sequence }) => {
                    let deleted_at = self.replica.deleted_at(&key)?;
                    (deleted_at < cutoff).then_some((key, sequence, deleted_at))
                }
                _ => None,
            })
            .collect();
        let mut purged = self.replica.purge_tombstone_keys(cutoff);
        if !in_flux.is_empty() {
            let kept: HashSet<&T::Key> = in_flux.iter().map(|(key, _, _)| key).collect();
            purged.retain(|key| !kept.contains(key));
            for (key, sequence, deleted_at) in in_flux {
                self.replica.restore_tombstone(key, sequence, deleted_at);
            }
        }
        let count = purged.len();
        pending.purged.extend(purged);
        count
    }

    /// Resolves the pending parked message at `stream_sequence` as
    /// discarded for `why`; `false` if none is pending there.
    pub(crate) fn discard_parked(
        &mut self,
        stream_sequence: u64,
        why: &str,
        pending: &mut Pending<T>,
    ) -> bool {
        let resolution = Resolution::Discarded(why.to_owned());
        let Some(parked) = self.parking.resolve(stream_sequence, resolution) else {
            return false;
        };
        pending.parked.push(parked.clone());
        true
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

    /// Records that `key` changed (to the state decoded from `json`, if
    /// given: see [`StoredEntry::json`]), and marks the pending parked
    /// events of `key` that its new state supersedes.
    fn supersede(
        &mut self,
        key: T::Key,
        json: Option<&str>,
        applied_at: Option<u64>,
        pending: &mut Pending<T>,
    ) {
        let json = json.filter(|_| self.keeps_json).map(Box::from);
        // The common case, on the path of every applied event: nothing
        // pending to look up (and no key to write out as text).
        if !self.parking.has_pending_keys() {
            pending.changed.push(Changed { key, json });
            return;
        }
        let Some(held) = self.replica.entry(&key).map(|entry| entry.sequence().get()) else {
            pending.changed.push(Changed { key, json });
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
        pending.changed.push(Changed { key, json });
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

    /// Applies the parking limits (discarding pending messages over them,
    /// purging resolved ones), the last step before a share is committed.
    pub(crate) fn close(&mut self, pending: &mut Pending<T>) {
        let overflow = self.parking.over_pending(self.limits);
        if !overflow.is_empty() {
            tracing_warn_overflow(T::ENTITY, overflow.len(), self.limits);
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
    }

    /// What the replica now holds for each key `pending` changed, each key
    /// once: the entries of the share's commit, in the order of the keys'
    /// last changes.
    ///
    /// A live entry's [`StoredEntry::json`] is that of the key's last
    /// change in the batch: the change that set what the replica holds (a
    /// change is recorded only when the event changed the replica, and
    /// nothing else changes it while the batch is pending). A tombstone
    /// has none, whatever came before the delete.
    pub(crate) fn entries<'a>(&'a self, pending: &'a Pending<T>) -> Vec<StoredEntry<'a, T>> {
        let replica = &self.replica;
        let mut seen = HashSet::with_capacity(pending.changed.len());
        let mut entries: Vec<StoredEntry<'a, T>> = pending
            .changed
            .iter()
            .rev()
            .filter(|changed| seen.insert(&changed.key))
            .filter_map(|Changed { key, json }| {
                // One look-up for the entry, its read version and its
                // deletion time.
                replica.slot(key).map(|slot| match slot {
                    Slot::Live {
                        sequence,
                        read_version,
                        state,
                        ..
                    } => StoredEntry {
                        key,
                        sequence: *sequence,
                        read_version: read_version.get(),
                        state: Some(state),
                        json: json.as_deref(),
                        deleted_at: None,
                    },
                    Slot::Tombstone {
                        sequence,
                        deleted_at,
                        ..
                    } => StoredEntry {
                        key,
                        sequence: *sequence,
                        read_version: T::VERSION,
                        state: None,
                        json: None,
                        deleted_at: Some(*deleted_at),
                    },
                })
            })
            .collect();
        entries.reverse();
        entries
    }

    /// The sizes the metrics report after a commit.
    pub(crate) fn sizes(&self) -> crate::telemetry::Sizes {
        crate::telemetry::Sizes {
            keys: self.replica.len(),
            tombstones: self.replica.tombstones(),
            pending_parked: self.parking.pending(),
        }
    }

    /// The share in `pending` is committed, with `owed` as the feed's owed
    /// keys ([`Part::owed_for_commit`]): counts it, and reports its changes
    /// to the feed. Returns what the share did.
    pub(crate) fn committed(
        &mut self,
        pending: Pending<T>,
        owed: Option<Vec<T::Key>>,
        telemetry: &crate::telemetry::Telemetry,
    ) -> BatchOutcome {
        self.owe(owed);
        self.report_committed(pending, telemetry)
    }

    /// A commit wrote `owed` as the feed's owed keys: until the report
    /// returns, every one of them may be unreported, so a feed that panics
    /// (here or in another entity's lane of a router, before this one's
    /// report runs) leaves them owed, replayed by the next call, and after
    /// a crash by the next start (they are committed).
    pub(crate) fn owe(&mut self, owed: Option<Vec<T::Key>>) {
        let Some(owed) = owed else {
            return;
        };
        self.owed = owed;
        if self.feed.is_some() {
            self.stored_reported = false;
        }
    }

    /// Counts the committed share in `pending` and reports its changes to
    /// the feed ([`Part::owe`] first); then nothing is owed in memory.
    pub(crate) fn report_committed(
        &mut self,
        pending: Pending<T>,
        telemetry: &crate::telemetry::Telemetry,
    ) -> BatchOutcome {
        telemetry.committed(T::ENTITY, &pending.outcome, self.sizes());
        // Committed: report the batch's changes. No await between the
        // commit and here, so a dropped future cannot skip them.
        if let Some(feed) = self.feed.as_mut() {
            report(&self.replica, pending.changes, feed);
            self.owed.clear();
            self.stored_reported = true;
        }
        pending.outcome
    }
}

/// What applying one message did: the outcome, the key, the live state the
/// event replaced, and the `data`'s text when the state was decoded from
/// it as written ([`StoredEntry::json`]).
struct Applied<'m, T: StateEvent> {
    outcome: Outcome,
    key: T::Key,
    before: Option<T>,
    json: Option<&'m str>,
}

/// Whether stream position `stream_sequence` is at or below the purge
/// floor `purged_through`: never when no purge happened (`0`), so that
/// position 0 is not taken for one handled before a purge.
fn below(stream_sequence: u64, purged_through: u64) -> bool {
    purged_through > 0 && stream_sequence <= purged_through
}

/// Whether [`Part::retry_parked`] tries a parked message of this kind
/// again: not a misaddressed or refused one (it stays what it was), nor
/// one kept out by the purge floor (it would bring back a purged key).
pub(crate) fn retriable(kind: ParkKind) -> bool {
    !matches!(
        kind,
        ParkKind::Misaddressed | ParkKind::Refused | ParkKind::PurgedTombstone
    )
}

pub(crate) fn changes_state(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Inserted | Outcome::Updated | Outcome::Deleted
    )
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
            replayed: false,
        });
    }
}

/// Logs a parking overflow where `tracing` is there (feature `tracing`).
fn tracing_warn_overflow(entity: &'static str, count: usize, limits: ParkingLimits) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        entity,
        discarded = count,
        max_pending = limits.max_pending,
        max_pending_bytes = limits.max_pending_bytes,
        "parking lot over its limits: the oldest pending parked messages were discarded"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (entity, count, limits);
}
