//! An in-memory replica of one entity type, applying events idempotently and
//! in any order.

mod slots;

use std::borrow::Borrow;
use std::hash::Hash;
use std::time::SystemTime;

use crate::envelope::{
    decode_gated, finish_gated, Change, Checked, DataSlot, Decoded, Envelope, Gate, Gated, Header,
    Held, InPlace,
};
use crate::error::DecodeError;
use crate::event::StateEvent;
use crate::feed::{Observer, StateChange};
use crate::sequence::Sequence;
use hashbrown::hash_table;
use slots::{KeyHash, Slots};

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// An upsert for a key with no live state (never seen, or deleted at a
    /// lower sequence): the state was stored.
    Inserted,
    /// An upsert with a higher sequence than the live state: it replaced it.
    Updated,
    /// A delete with a higher sequence than what the key had (or for a key
    /// never seen): a tombstone now holds the key's sequence.
    Deleted,
    /// The key already holds this sequence with the same content: nothing
    /// changed.
    Duplicate,
    /// The key holds a higher sequence (state or tombstone), or another
    /// event of the same sequence that wins the tie-break: nothing changed.
    Stale,
}

/// Counts of every outcome and every rejection since the replica was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyStats {
    /// [`Outcome::Inserted`] results.
    pub inserted: u64,
    /// [`Outcome::Updated`] results.
    pub updated: u64,
    /// [`Outcome::Deleted`] results.
    pub deleted: u64,
    /// [`Outcome::Duplicate`] results.
    pub duplicates: u64,
    /// [`Outcome::Stale`] results.
    pub stale: u64,
    /// Events rejected with a [`DecodeError`], future versions included.
    pub rejected: u64,
    /// The part of `rejected` written in a schema version newer than this
    /// build knows.
    pub future_version: u64,
    /// Accepted events written in a newer schema version than this build
    /// knows, read as the newest known one because the entity's declared
    /// compatibility (`FORWARD`, `FULL`, or transitive) promises that old
    /// readers can; unknown fields were ignored. Counted besides their
    /// outcome.
    pub read_as_older: u64,
}

impl ApplyStats {
    pub(crate) fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Inserted => self.inserted += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Deleted => self.deleted += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Stale => self.stale += 1,
        }
    }

    fn reject(&mut self, error: &DecodeError) {
        self.rejected += 1;
        if error.is_future_version() {
            self.future_version += 1;
        }
    }

    /// Events that changed the replica.
    pub fn applied(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

/// What a replica holds for one key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'a, T> {
    /// The newest state and the sequence it came with.
    Live {
        /// The sequence of the event that carried `state`.
        sequence: Sequence,
        /// The state.
        state: &'a T,
    },
    /// The entity was deleted at `sequence`.
    Tombstone {
        /// The sequence of the delete.
        sequence: Sequence,
    },
}

impl<T> Entry<'_, T> {
    /// The sequence held for the key.
    pub fn sequence(&self) -> Sequence {
        match self {
            Entry::Live { sequence, .. } | Entry::Tombstone { sequence } => *sequence,
        }
    }
}

pub(crate) enum Slot<T> {
    Live {
        sequence: Sequence,
        /// The schema version the state was read at: the version it was
        /// written in, or the newest this build knew when it read a newer
        /// one tolerantly (dropping the fields it did not know).
        read_version: ReadVersion,
        /// The key's hash in the table ([`KeyHash`]).
        key_hash: u32,
        state: T,
    },
    Tombstone {
        sequence: Sequence,
        deleted_at: SystemTime,
        key_hash: u32,
    },
}

/// A schema version as a slot keeps it: in 16 bits, so that the kept hash
/// and the enum's tag fit beside it in the 8 bytes after the sequence (in
/// 32 bits, an entity without spare bit patterns, only integers say, took
/// 8 bytes more per key: red team, issue 12). Saturated at `u16::MAX`: a
/// derived type has no more versions than it declares changes, so none
/// comes near it.
#[derive(Clone, Copy)]
pub(crate) struct ReadVersion(u16);

impl ReadVersion {
    #[inline]
    fn new(version: u32) -> Self {
        ReadVersion(u16::try_from(version).unwrap_or(u16::MAX))
    }

    #[inline]
    pub(crate) fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl<T> KeyHash for Slot<T> {
    #[inline]
    fn key_hash(&self) -> u32 {
        match self {
            Slot::Live { key_hash, .. } | Slot::Tombstone { key_hash, .. } => *key_hash,
        }
    }
}

impl<T> Slot<T> {
    fn sequence(&self) -> Sequence {
        match self {
            Slot::Live { sequence, .. } | Slot::Tombstone { sequence, .. } => *sequence,
        }
    }

    fn state(&self) -> Option<&T> {
        match self {
            Slot::Live { state, .. } => Some(state),
            Slot::Tombstone { .. } => None,
        }
    }

    /// What the gate needs to know of the slot to refuse an upsert without
    /// its data.
    fn held(&self) -> Held {
        match self {
            Slot::Live {
                sequence,
                read_version,
                ..
            } => Held {
                sequence: *sequence,
                read_version: Some(read_version.get()),
            },
            Slot::Tombstone { sequence, .. } => Held {
                sequence: *sequence,
                read_version: None,
            },
        }
    }
}

/// A local copy of the entities of type `T`, kept up to date by applying
/// their state events.
///
/// Per key, the replica holds the newest state and its sequence, or a
/// tombstone with the sequence of the delete. An event is applied only when
/// its sequence is higher than the one held, so the final state does not
/// depend on delivery order or duplication:
///
/// | held for the key | event | outcome |
/// |---|---|---|
/// | nothing | upsert / delete | [`Inserted`](Outcome::Inserted) / [`Deleted`](Outcome::Deleted) (a tombstone) |
/// | sequence `s` | sequence `> s` | [`Inserted`](Outcome::Inserted) (over a tombstone), [`Updated`](Outcome::Updated), [`Deleted`](Outcome::Deleted) |
/// | sequence `s` | sequence `= s`, the same event | [`Duplicate`](Outcome::Duplicate) |
/// | sequence `s` | sequence `= s`, another event | the tie-break below |
/// | sequence `s` | sequence `< s` | [`Stale`](Outcome::Stale) (an upsert older than a tombstone too) |
///
/// # Two events at one sequence
///
/// A producer should never give two different events the same sequence,
/// but two owner instances racing, or a foreign publisher, can. So that
/// every replica still ends in the same state whatever the arrival order,
/// one rule picks the winner:
///
/// 1. a delete wins over an upsert (a tie of two deletes is a duplicate);
/// 2. between upserts, the one read at the higher schema version wins: an
///    event written in a newer version than the replica knew was read
///    tolerantly, without its unknown fields, at the newest known version,
///    so after an upgrade the same event, read again at its own version,
///    replaces what the old build kept;
/// 3. then the state whose JSON serialization (`serde_json::to_vec`) is
///    greater, bytewise, wins; equal serializations are a
///    [`Duplicate`](Outcome::Duplicate).
///
/// The winner replaces the held state as [`Updated`](Outcome::Updated) (or
/// [`Deleted`](Outcome::Deleted)); the loser is [`Stale`](Outcome::Stale).
/// Rule 3 compares serializations, so it is deterministic for states whose
/// `Serialize` is (no `HashMap` fields, whose order varies).
///
/// Bad input is a [`DecodeError`], counted in [`ApplyStats::rejected`], and
/// never changes the replica.
///
/// # Skipped data
///
/// [`Replica::apply_json`] (and a [`Router`](crate::Router)) does not
/// decode the `data` of an upsert that the rules above refuse whatever it
/// holds: a sequence below the one held, or the same sequence as a
/// tombstone or as a state read at a higher schema version. Such an event
/// is [`Stale`](Outcome::Stale) once its attributes pass every check (the
/// entity, a known or tolerated version, the `dataschema`, the key) and its
/// `data` is well-formed JSON. What is not looked at is whether that JSON
/// fits `T`: a stale upsert whose data does not match its schema version,
/// fails its upcast, or names another key is `Stale`, where decoding it
/// would have rejected it. It could not change the replica either way.
/// Every other event, rejected or not, gets exactly what decoding it whole
/// gives.
///
/// An upsert at the sequence and read version of the live state held, and
/// written at `T`'s newest version, is first compared with that state
/// without being decoded: when its `data` is, byte for byte, the state's
/// `serde_json::to_vec` (as ecst's producer writes it, so a redelivery
/// always is), it is a [`Duplicate`](Outcome::Duplicate): what the
/// tie-break finds once it is decoded, for a `T` whose serialization reads
/// back to a state that serializes the same (which the durable stores need
/// anyway: they keep states as JSON and read them back). For a `T` whose
/// serialization does not read back (a field with
/// `#[serde(skip_serializing_if = ..)]` but no `default`, one that is
/// `skip_serializing` but required, a `serialize_with` that its
/// `deserialize_with` does not undo), such an event is a `Duplicate` where
/// decoding it would reject it: either way the replica keeps the state it
/// holds, whose serialization that `data` is. Other ties are decoded and go
/// to the tie-break.
pub struct Replica<T: StateEvent> {
    pub(crate) slots: Slots<T::Key, Slot<T>>,
    live: usize,
    stats: ApplyStats,
    /// Called with every change, when set ([`Replica::on_change`]).
    observer: Option<Observer<T>>,
}

impl<T: StateEvent> Default for Replica<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: StateEvent> Replica<T> {
    /// An empty replica.
    pub fn new() -> Self {
        Replica {
            slots: Slots::new(),
            live: 0,
            stats: ApplyStats::default(),
            observer: None,
        }
    }

    /// An empty replica with room for `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Replica {
            slots: Slots::with_capacity(capacity),
            live: 0,
            stats: ApplyStats::default(),
            observer: None,
        }
    }

    /// Applies a decoded event.
    pub fn apply(&mut self, envelope: Envelope<T>) -> Outcome {
        let written = envelope.written_version();
        if written > T::VERSION {
            self.stats.read_as_older += 1;
        }
        let read_version = written.min(T::VERSION);
        let outcome = self.merge(
            envelope.key,
            envelope.sequence,
            read_version,
            envelope.change,
        );
        self.stats.record(outcome);
        outcome
    }

    /// Decodes a CloudEvents JSON event of `T` (any known schema version)
    /// and applies it.
    ///
    /// An upsert that the version gate refuses whatever its data says (a
    /// sequence below the one held; the same sequence as a tombstone, or as
    /// a state read at a higher schema version) is
    /// [`Stale`](Outcome::Stale) without its `data` being decoded: its
    /// attributes are checked as for any event, its `data` only as JSON.
    /// See "Skipped data" in the [`Replica`] docs.
    pub fn apply_json(&mut self, json: &[u8]) -> Result<Outcome, DecodeError> {
        // Read in place: the state goes from where the reader put it
        // straight into the slot, not through a `Gated` and a `Decoded`.
        let mut read = InPlace::<T>::new();
        let mut gate = SlotsGate::new(&self.slots);
        match read.gated(json, &mut gate) {
            // The key hashed by the gate's look-up, if any, is not hashed
            // again for the write.
            Ok(checked) => Ok(self.apply_checked(checked, gate.hash, &mut read)),
            Err(error) => {
                self.stats.reject(&error);
                Err(error)
            }
        }
    }

    /// Applies what [`InPlace::gated`] found, counting it, as
    /// [`Replica::apply_gated`] does.
    #[inline]
    fn apply_checked(
        &mut self,
        checked: Checked<T::Key>,
        hash: Option<u64>,
        read: &mut InPlace<'_, T>,
    ) -> Outcome {
        let written = checked.attrs.schema_version;
        if let Some(same) = checked.refused {
            return self.refused(written, same);
        }
        self.merge_written(
            (checked.key, hash),
            checked.attrs.sequence,
            written,
            read.take_change(),
        )
    }

    /// [`Replica::apply_json`], also returning the event's key and, when
    /// its state changed, the live state it replaced (without reporting to
    /// the observer: for the durable replica, which reports after commit).
    pub(crate) fn apply_json_keyed(
        &mut self,
        json: &[u8],
    ) -> Result<(Outcome, T::Key, Option<T>), DecodeError> {
        match self.decode_gated(json) {
            Ok((gated, hash)) => {
                let key = gated.key().clone();
                let (outcome, before) = self.apply_gated_taking(gated, hash);
                Ok((outcome, key, before))
            }
            Err(error) => {
                self.stats.reject(&error);
                Err(error)
            }
        }
    }

    /// Decodes `json` through the version gate, without applying or
    /// counting it: an upsert this replica will refuse whatever its data
    /// says is [`Gated::Refused`], its `data` not decoded; anything else is
    /// exactly what the plain decoder returns. With it comes the hash the
    /// gate took of the key, for applying it.
    #[inline]
    pub(crate) fn decode_gated<'j>(
        &self,
        json: &'j [u8],
    ) -> Result<(Gated<'j, T>, GateHash), DecodeError> {
        let mut gate = SlotsGate::new(&self.slots);
        let gated = decode_gated::<T>(json, &mut gate)?;
        Ok((gated, GateHash(gate.hash)))
    }

    /// Applies what [`Replica::decode_gated`] returned, counting it.
    #[inline]
    pub(crate) fn apply_gated(&mut self, gated: Gated<'_, T>, hash: GateHash) -> Outcome {
        match gated {
            Gated::Decoded(decoded) => self.apply_decoded(decoded, hash),
            Gated::Refused { header, same, .. } => self.refused(header.schema_version, same),
        }
    }

    /// [`Replica::apply_gated`], also returning the live state the event
    /// replaced, without reporting to the observer (for the durable
    /// replica).
    pub(crate) fn apply_gated_taking(
        &mut self,
        gated: Gated<'_, T>,
        hash: GateHash,
    ) -> (Outcome, Option<T>) {
        match gated {
            Gated::Decoded(decoded) => self.apply_decoded_taking(decoded, hash),
            Gated::Refused { header, same, .. } => {
                (self.refused(header.schema_version, same), None)
            }
        }
    }

    /// Counts an upsert the gate refused without decoding its data: what
    /// applying it would have counted (`same`: the state held, a
    /// duplicate).
    fn refused(&mut self, written: u32, same: bool) -> Outcome {
        if written > T::VERSION {
            self.stats.read_as_older += 1;
        }
        let outcome = if same {
            Outcome::Duplicate
        } else {
            Outcome::Stale
        };
        self.stats.record(outcome);
        outcome
    }

    /// [`Replica::apply_decoded`], also returning the live state the event
    /// replaced, without reporting to the observer.
    pub(crate) fn apply_decoded_taking(
        &mut self,
        decoded: Decoded<'_, T>,
        hash: GateHash,
    ) -> (Outcome, Option<T>) {
        let written = decoded.header.schema_version;
        if written > T::VERSION {
            self.stats.read_as_older += 1;
        }
        let (outcome, before) = self.merge_taking(
            (decoded.key, hash.0),
            decoded.header.sequence,
            written.min(T::VERSION),
            decoded.change,
        );
        self.stats.record(outcome);
        (outcome, before)
    }

    /// Counts an event rejected before it reached the replica.
    pub(crate) fn count_rejection(&mut self, error: &DecodeError) {
        self.stats.reject(error);
    }

    /// Applies an event whose attributes were read (by the router), through
    /// the version gate as [`Replica::apply_json`] does.
    pub(crate) fn apply_parts(
        &mut self,
        header: Header<'_>,
        slot: DataSlot<'_, T>,
    ) -> Result<Outcome, DecodeError> {
        let mut gate = SlotsGate::new(&self.slots);
        match finish_gated::<T>(header, slot, None, Some(&mut gate)) {
            Ok(gated) => Ok(self.apply_gated(gated, GateHash(gate.hash))),
            Err(error) => {
                self.stats.reject(&error);
                Err(error)
            }
        }
    }

    /// Applies a decoded event, counting it; `hash` is its key's, if the
    /// gate took it.
    pub(crate) fn apply_decoded(&mut self, decoded: Decoded<'_, T>, hash: GateHash) -> Outcome {
        self.merge_written(
            (decoded.key, hash.0),
            decoded.header.sequence,
            decoded.header.schema_version,
            decoded.change,
        )
    }

    /// Merges a change written at schema version `written` (read at the
    /// newest version this build knows when it is newer), counting it.
    /// `key` comes with its hash in `self.slots` when it was looked up.
    #[inline]
    fn merge_written(
        &mut self,
        key: (T::Key, Option<u64>),
        sequence: Sequence,
        written: u32,
        change: Change<T>,
    ) -> Outcome {
        if written > T::VERSION {
            self.stats.read_as_older += 1;
        }
        let outcome = self.merge_hashed(key, sequence, written.min(T::VERSION), change);
        self.stats.record(outcome);
        outcome
    }

    /// Applies `change` to `key` at `sequence`, as a state of the newest
    /// schema version: the version gate itself.
    pub fn apply_change(&mut self, key: T::Key, sequence: Sequence, change: Change<T>) -> Outcome {
        let outcome = self.merge(key, sequence, T::VERSION, change);
        self.stats.record(outcome);
        outcome
    }

    /// Puts `change` for `key` at `sequence` through the version gate
    /// without counting it in [`Replica::stats`]: for loading a replica from
    /// a durable store. `read_version` is the schema version the state was
    /// read at when it was first applied ([`Replica::read_version`]), which
    /// the tie-break between two events of one sequence compares (kept in
    /// 16 bits: a version above 65,535, which no derived type has, is held
    /// as 65,535).
    pub fn restore(
        &mut self,
        key: T::Key,
        sequence: Sequence,
        read_version: u32,
        change: Change<T>,
    ) -> Outcome {
        gate(
            &mut self.slots,
            &mut self.live,
            (key, None),
            (sequence, read_version, None),
            change,
            |_, _, _, _| {},
        )
    }

    /// The schema version the live state of `key` was read at: the version
    /// its event was written in, or, for an event of a newer version read
    /// tolerantly, the newest version the reading build knew. `None` for a
    /// key without a live state.
    pub fn read_version<Q>(&self, key: &Q) -> Option<u32>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.slots.get(key) {
            Some(Slot::Live { read_version, .. }) => Some(read_version.get()),
            _ => None,
        }
    }

    /// The version gate, without counting; reports a change to the
    /// observer, if any.
    pub(crate) fn merge(
        &mut self,
        key: T::Key,
        sequence: Sequence,
        read_version: u32,
        change: Change<T>,
    ) -> Outcome {
        self.merge_hashed((key, None), sequence, read_version, change)
    }

    /// [`Replica::merge`] of a key that comes with its hash in
    /// `self.slots` when it was looked up already.
    #[inline]
    fn merge_hashed(
        &mut self,
        key: (T::Key, Option<u64>),
        sequence: Sequence,
        read_version: u32,
        change: Change<T>,
    ) -> Outcome {
        match self.observer.as_mut() {
            None => gate(
                &mut self.slots,
                &mut self.live,
                key,
                (sequence, read_version, None),
                change,
                |_, _, _, _| {},
            ),
            Some(observer) => gate(
                &mut self.slots,
                &mut self.live,
                key,
                (sequence, read_version, None),
                change,
                |key, before, after, outcome| {
                    observer(StateChange {
                        entity: T::ENTITY,
                        key,
                        sequence,
                        before: before.as_ref(),
                        after,
                        outcome,
                        replayed: false,
                    })
                },
            ),
        }
    }

    /// The version gate, without counting and without the observer; when
    /// the key's state changed, also returns the live state it replaced
    /// (moved out, not cloned). For the durable replica's change feed.
    pub(crate) fn merge_taking(
        &mut self,
        key: (T::Key, Option<u64>),
        sequence: Sequence,
        read_version: u32,
        change: Change<T>,
    ) -> (Outcome, Option<T>) {
        let mut replaced = None;
        let outcome = gate(
            &mut self.slots,
            &mut self.live,
            key,
            (sequence, read_version, None),
            change,
            |_, before, _, _| replaced = before,
        );
        (outcome, replaced)
    }

    /// Registers `observer`, called with every change this replica makes
    /// from now on (replacing an observer set before). See [`crate::feed`]
    /// for what is reported. The observer runs inside `apply`: keep it
    /// short, or hand the change to another thread.
    ///
    /// ```
    /// # use ecst_runtime::{Replica, StateChange, StateEvent};
    /// # fn demo<Customer: StateEvent>(replica: &mut Replica<Customer>) {
    /// replica.on_change(|change: StateChange<'_, Customer>| {
    ///     println!("{} {} -> {:?}", change.entity, change.key, change.outcome);
    /// });
    /// # }
    /// ```
    pub fn on_change(&mut self, observer: impl FnMut(StateChange<'_, T>) + Send + Sync + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// Removes the observer set with [`Replica::on_change`].
    pub fn clear_on_change(&mut self) {
        self.observer = None;
    }

    /// Records a tombstone of `key` at `sequence`, deleted at `deleted_at`,
    /// through the version gate, without counting or reporting it: for
    /// loading a replica from a durable store that keeps deletion times
    /// (see [`Replica::purge_tombstones_before`]).
    pub fn restore_tombstone(
        &mut self,
        key: T::Key,
        sequence: Sequence,
        deleted_at: SystemTime,
    ) -> Outcome {
        gate(
            &mut self.slots,
            &mut self.live,
            (key, None),
            (sequence, T::VERSION, Some(deleted_at)),
            Change::Delete,
            |_, _, _, _| {},
        )
    }

    /// When the tombstone of `key` was recorded, `None` for a key without a
    /// tombstone.
    pub fn deleted_at<Q>(&self, key: &Q) -> Option<SystemTime>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.slots.get(key) {
            Some(Slot::Tombstone { deleted_at, .. }) => Some(*deleted_at),
            _ => None,
        }
    }

    /// What the replica holds for `key`, whole (for the durable stores,
    /// which keep the read version and deletion time too).
    pub(crate) fn slot(&self, key: &T::Key) -> Option<&Slot<T>> {
        self.slots.get(key)
    }

    /// The live state of `key`, `None` if unknown or deleted.
    pub fn get<Q>(&self, key: &Q) -> Option<&T>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.slots.get(key) {
            Some(Slot::Live { state, .. }) => Some(state),
            _ => None,
        }
    }

    /// What the replica holds for `key`: the state and its sequence, or a
    /// tombstone.
    pub fn entry<Q>(&self, key: &Q) -> Option<Entry<'_, T>>
    where
        T::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.slots.get(key).map(entry_of)
    }

    /// The live entities, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&T::Key, &T)> + '_ {
        self.slots.iter().filter_map(|(key, slot)| match slot {
            Slot::Live { state, .. } => Some((key, state)),
            Slot::Tombstone { .. } => None,
        })
    }

    /// Every key the replica holds, live or tombstoned, in no particular
    /// order.
    pub fn entries(&self) -> impl Iterator<Item = (&T::Key, Entry<'_, T>)> + '_ {
        self.slots.iter().map(|(key, slot)| (key, entry_of(slot)))
    }

    /// The number of live entities.
    pub fn len(&self) -> usize {
        self.live
    }

    /// `true` when no entity is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The number of tombstones held.
    pub fn tombstones(&self) -> usize {
        self.slots.len() - self.live
    }

    /// Drops tombstones recorded before `cutoff` and returns how many.
    ///
    /// Tombstones are what make an upsert older than a delete stale. Purge
    /// only those older than the longest delay an old upsert can still
    /// arrive with (the broker's redelivery and retention horizon): after a
    /// purge, such an upsert would bring the entity back.
    pub fn purge_tombstones_before(&mut self, cutoff: SystemTime) -> usize {
        let before = self.slots.len();
        self.slots.retain(|_, slot| match slot {
            Slot::Tombstone { deleted_at, .. } => *deleted_at >= cutoff,
            Slot::Live { .. } => true,
        });
        before - self.slots.len()
    }

    /// Drops tombstones recorded before `cutoff` and returns their keys.
    pub(crate) fn purge_tombstone_keys(&mut self, cutoff: SystemTime) -> Vec<T::Key> {
        let keys: Vec<T::Key> = self
            .slots
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Tombstone { deleted_at, .. } if *deleted_at < cutoff => Some(key.clone()),
                _ => None,
            })
            .collect();
        for key in &keys {
            self.slots.remove(key);
        }
        keys
    }

    /// Counts of every outcome and rejection so far.
    pub fn stats(&self) -> ApplyStats {
        self.stats
    }
}

/// The version gate: puts `change` of `key` at `at` = (sequence, read
/// version, deletion time; `None` is now) into `slots` if it wins, keeping
/// `live` counted, and calls `changed(key, before, after, outcome)` when
/// the key's content changed: `before` is the live state it replaced,
/// moved out (dropped after the call), `after` the live state it holds now.
/// `key` comes with its hash in `slots`, if it was taken already.
fn gate<T: StateEvent>(
    slots: &mut Slots<T::Key, Slot<T>>,
    live: &mut usize,
    (key, hash): (T::Key, Option<u64>),
    at: (Sequence, u32, Option<SystemTime>),
    change: Change<T>,
    changed: impl FnOnce(&T::Key, Option<T>, Option<&T>, Outcome),
) -> Outcome {
    let (sequence, read_version, deleted_at) = at;
    // The slot the change makes, built before the key is looked up (moved
    // once more, into the map, if it wins): the state is not moved again
    // in between. A tombstone's time is set when it goes in.
    let hash = hash.unwrap_or_else(|| slots.hash(&key));
    let key_hash = Slots::<T::Key, Slot<T>>::kept(hash);
    let mut incoming = match change {
        Change::Upsert(state) => Slot::Live {
            sequence,
            read_version: ReadVersion::new(read_version),
            key_hash,
            state,
        },
        Change::Delete => Slot::Tombstone {
            sequence,
            deleted_at: SystemTime::UNIX_EPOCH,
            key_hash,
        },
    };
    let stamp = |slot: &mut Slot<T>| {
        if let Slot::Tombstone { deleted_at: at, .. } = slot {
            *at = deleted_at.unwrap_or_else(SystemTime::now);
        }
    };
    match slots.entry(hash, &key) {
        hash_table::Entry::Vacant(vacant) => {
            let outcome = match incoming {
                Slot::Live { .. } => {
                    *live += 1;
                    Outcome::Inserted
                }
                Slot::Tombstone { .. } => Outcome::Deleted,
            };
            stamp(&mut incoming);
            let entry = vacant.insert((key, incoming));
            let (key, slot) = entry.get();
            changed(key, None, slot.state(), outcome);
            outcome
        }
        hash_table::Entry::Occupied(mut occupied) => {
            let held = &occupied.get().1;
            let held_sequence = held.sequence();
            if sequence < held_sequence {
                return Outcome::Stale;
            }
            if sequence == held_sequence {
                match tie_break(held, &incoming) {
                    Tie::Held => return Outcome::Stale,
                    Tie::Same => return Outcome::Duplicate,
                    Tie::Incoming => {}
                }
            }
            let was_live = matches!(held, Slot::Live { .. });
            let outcome = match (&incoming, was_live) {
                (Slot::Live { .. }, true) => Outcome::Updated,
                (Slot::Live { .. }, false) => {
                    *live += 1;
                    Outcome::Inserted
                }
                (Slot::Tombstone { .. }, was_live) => {
                    if was_live {
                        *live -= 1;
                    }
                    Outcome::Deleted
                }
            };
            stamp(&mut incoming);
            let before = match core::mem::replace(&mut occupied.get_mut().1, incoming) {
                Slot::Live { state, .. } => Some(state),
                Slot::Tombstone { .. } => None,
            };
            let (key, slot) = occupied.get();
            changed(key, before, slot.state(), outcome);
            outcome
        }
    }
}

/// The hash of an event's key in one replica's table, taken when the
/// version gate looked the key up ([`Replica::decode_gated`]): given back
/// to that replica with the event, the key is not hashed again.
pub(crate) struct GateHash(Option<u64>);

/// The version gate's view of a replica's slots, for one event: the key it
/// is asked about is hashed once, and the hash kept for the write
/// ([`Replica::apply_json`]).
struct SlotsGate<'s, T: StateEvent> {
    slots: &'s Slots<T::Key, Slot<T>>,
    /// The hash of the key asked about (an event has one key).
    hash: Option<u64>,
}

impl<'s, T: StateEvent> SlotsGate<'s, T> {
    fn new(slots: &'s Slots<T::Key, Slot<T>>) -> Self {
        SlotsGate { slots, hash: None }
    }

    /// The slot of `key`: the key of this gate's event.
    #[inline]
    fn slot(&mut self, key: &T::Key) -> Option<&'s Slot<T>> {
        let slots = self.slots;
        let hash = *self.hash.get_or_insert_with(|| slots.hash(key));
        slots.get_hashed(hash, key)
    }
}

impl<T: StateEvent> Gate<T::Key> for SlotsGate<'_, T> {
    fn held(&mut self, key: &T::Key) -> Option<Held> {
        self.slot(key).map(Slot::held)
    }

    fn holds_text(&mut self, key: &T::Key, data: &str) -> bool {
        match self.slot(key) {
            Some(Slot::Live { state, .. }) => serializes_to(state, data.as_bytes()),
            _ => false,
        }
    }
}

/// Whether `serde_json::to_vec(state)` is `expected`. (Written into a
/// buffer of `expected`'s length and compared: cheaper than comparing each
/// of the serializer's many small writes as it makes them.)
fn serializes_to<T: serde::Serialize>(state: &T, expected: &[u8]) -> bool {
    let mut written = Vec::with_capacity(expected.len());
    serde_json::to_writer(&mut written, state).is_ok() && written == expected
}

/// Which of two events of one sequence a replica keeps.
enum Tie {
    /// What the replica holds.
    Held,
    /// The incoming event.
    Incoming,
    /// They are the same event.
    Same,
}

/// The tie-break between `held` and the `incoming` slot, both at the same
/// sequence (see [`Replica`]).
fn tie_break<T: StateEvent>(held: &Slot<T>, incoming: &Slot<T>) -> Tie {
    match (held, incoming) {
        (Slot::Tombstone { .. }, Slot::Tombstone { .. }) => Tie::Same,
        (Slot::Tombstone { .. }, Slot::Live { .. }) => Tie::Held,
        (Slot::Live { .. }, Slot::Tombstone { .. }) => Tie::Incoming,
        (
            Slot::Live {
                read_version: held_version,
                state: held,
                ..
            },
            Slot::Live {
                read_version: incoming_version,
                state: incoming,
                ..
            },
        ) => match incoming_version.get().cmp(&held_version.get()) {
            core::cmp::Ordering::Greater => Tie::Incoming,
            core::cmp::Ordering::Less => Tie::Held,
            core::cmp::Ordering::Equal => {
                // Serializing a state that was just deserialized does not
                // fail for the types the derive accepts; if one does, the
                // held state stays (the only choice that changes nothing).
                match compare_serializations(held, incoming) {
                    Some(core::cmp::Ordering::Greater) => Tie::Incoming,
                    Some(core::cmp::Ordering::Less) => Tie::Held,
                    Some(core::cmp::Ordering::Equal) | None => Tie::Same,
                }
            }
        },
    }
}

/// `serde_json::to_vec(incoming).cmp(&serde_json::to_vec(held))`, `None`
/// if either fails to serialize. Both are written into buffers sized for
/// them up front, so that neither grows while it is written.
fn compare_serializations<T: serde::Serialize>(
    held: &T,
    incoming: &T,
) -> Option<core::cmp::Ordering> {
    let mut held_json = Vec::with_capacity(512);
    serde_json::to_writer(&mut held_json, held).ok()?;
    let mut incoming_json = Vec::with_capacity(held_json.len() + 64);
    serde_json::to_writer(&mut incoming_json, incoming).ok()?;
    Some(incoming_json.cmp(&held_json))
}

fn entry_of<T>(slot: &Slot<T>) -> Entry<'_, T> {
    match slot {
        Slot::Live {
            sequence, state, ..
        } => Entry::Live {
            sequence: *sequence,
            state,
        },
        Slot::Tombstone { sequence, .. } => Entry::Tombstone {
            sequence: *sequence,
        },
    }
}

impl<T: StateEvent + core::fmt::Debug> core::fmt::Debug for Replica<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replica")
            .field("entity", &T::ENTITY)
            .field("live", &self.live)
            .field("tombstones", &self.tombstones())
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Slot;

    /// A slot costs what the plainest hand-written map's value, a sequence
    /// and the state, costs plus at most 8 bytes (the read version, the
    /// kept hash of the key and the enum's tag), whether or not the state
    /// has spare bit patterns for the tag: the replica's memory per key
    /// (the memory bench) rests on it. (Not for a state narrower than a
    /// tombstone's time: no entity is, since the state holds its key.)
    #[test]
    fn a_slot_costs_at_most_eight_bytes_over_a_sequence_and_state() {
        fn over<T>() -> usize {
            core::mem::size_of::<Slot<T>>() - core::mem::size_of::<(u64, T)>()
        }
        for (state, over) in [
            ("two integers", over::<(u64, u64)>()),
            ("integers of two widths", over::<(u64, u32)>()),
            ("bytes", over::<(u64, [u8; 40])>()),
            ("a string and an integer", over::<(String, u64)>()),
            ("a string and a bool", over::<(String, bool)>()),
        ] {
            assert!(over <= 8, "{state}: {over} bytes over");
        }
    }

    /// A state's JSON must read back to the very state: the stores keep
    /// states as JSON, and the version gate takes an upsert whose data is
    /// the held state's JSON as a duplicate without decoding it. So floats
    /// are read by serde_json correctly rounded (its `float_roundtrip`
    /// feature, which the workspace enables): without it, the first text
    /// below reads as a value that writes as another text, which reads as
    /// yet another value (red team, issue 12), and two replicas kept
    /// different states depending on the delivery order. This is the
    /// runtime's own build, without any test-only crate that would turn the
    /// feature on anyway.
    #[test]
    fn floats_read_back_as_written() {
        for text in [
            "3.0261999441573203e-52",
            "3.0261999441573207e-52",
            "2.2250738585072011e-308",
            "9007199254740993",
            "0.1",
            "1e23",
            "8.41e21",
            "1.7976931348623157e308",
            "4.9406564584124654e-324",
        ] {
            let read: f64 = serde_json::from_str(text).expect("a float");
            let exact: f64 = text.parse().expect("a float");
            assert_eq!(read.to_bits(), exact.to_bits(), "{text}");
            let written = serde_json::to_string(&read).expect("finite");
            let again: f64 = serde_json::from_str(&written).expect("a float");
            assert_eq!(again.to_bits(), read.to_bits(), "{text} -> {written}");
        }
    }
}
