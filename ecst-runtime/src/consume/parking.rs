//! The parking lot: parked messages indexed by stream sequence and by key,
//! and the superseding rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{ParkKind, Parked, Resolution};
use crate::envelope::decode_header;

/// How much the parking lot holds, so that a flood of bad messages (junk
/// on many subjects) cannot grow a replica's store without bound.
///
/// - Resolved (superseded or discarded) messages are kept for inspection up
///   to `max_resolved` and `max_resolved_bytes`; past either, the oldest are
///   purged.
/// - Pending messages are kept up to `max_pending` and `max_pending_bytes`.
///   Past either, the oldest pending ones are discarded, visibly: resolved as
///   [`Resolution::Discarded`] with the reason, counted in
///   [`BatchOutcome::overflowed`](super::BatchOutcome::overflowed), and
///   logged; then purged with the resolved ones. Parking holds nothing back,
///   so their keys' later events still apply; a discarded event that was
///   the newest of its key (a future version, say) comes back with the
///   owner's next event of the key, or from
///   `Follower::bootstrap_from_owner`.
///
/// Every limit is applied in the same transaction as the batch that went
/// past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkingLimits {
    /// Resolved messages kept at most.
    pub max_resolved: usize,
    /// Payload bytes of resolved messages kept at most.
    pub max_resolved_bytes: usize,
    /// Pending messages kept at most.
    pub max_pending: usize,
    /// Payload bytes of pending messages kept at most.
    pub max_pending_bytes: usize,
}

impl Default for ParkingLimits {
    /// Resolved: 1,000 messages, 16 MiB; pending: 10,000 messages, 64 MiB.
    fn default() -> Self {
        ParkingLimits {
            max_resolved: 1_000,
            max_resolved_bytes: 16 << 20,
            max_pending: 10_000,
            max_pending_bytes: 64 << 20,
        }
    }
}

struct Slot {
    parked: Parked,
    /// The event's own sequence, when its envelope could be read and names
    /// the key it is parked under.
    sequence: Option<u64>,
}

/// Parked messages, by stream sequence, with the pending ones indexed by
/// key: every lookup is logarithmic in the number parked.
#[derive(Default)]
pub(crate) struct ParkingLot {
    slots: BTreeMap<u64, Slot>,
    pending_by_key: HashMap<String, BTreeSet<u64>>,
    resolved: usize,
    resolved_bytes: usize,
    pending_bytes: usize,
}

impl ParkingLot {
    pub(crate) fn new(parked: Vec<Parked>) -> Self {
        let mut lot = ParkingLot::default();
        for parked in parked {
            lot.insert(parked);
        }
        lot
    }

    pub(crate) fn get(&self, stream_sequence: u64) -> Option<&Parked> {
        self.slots.get(&stream_sequence).map(|slot| &slot.parked)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Parked> + '_ {
        self.slots.values().map(|slot| &slot.parked)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether any pending message is parked under a key.
    pub(crate) fn has_pending_keys(&self) -> bool {
        !self.pending_by_key.is_empty()
    }

    pub(crate) fn pending(&self) -> usize {
        self.slots.len() - self.resolved
    }

    /// Adds (or replaces) `parked`.
    pub(crate) fn insert(&mut self, parked: Parked) {
        self.remove(parked.stream_sequence);
        let sequence = event_sequence(&parked);
        if let (None, Some(key)) = (&parked.resolution, &parked.key) {
            self.pending_by_key
                .entry(key.clone())
                .or_default()
                .insert(parked.stream_sequence);
        }
        if parked.resolution.is_some() {
            self.resolved += 1;
            self.resolved_bytes += parked.payload.len();
        } else {
            self.pending_bytes += parked.payload.len();
        }
        self.slots
            .insert(parked.stream_sequence, Slot { parked, sequence });
    }

    pub(crate) fn remove(&mut self, stream_sequence: u64) -> Option<Parked> {
        let slot = self.slots.remove(&stream_sequence)?;
        let parked = slot.parked;
        if parked.resolution.is_none() {
            self.pending_bytes -= parked.payload.len();
        }
        match (&parked.resolution, &parked.key) {
            (None, Some(key)) => {
                if let Some(set) = self.pending_by_key.get_mut(key) {
                    set.remove(&stream_sequence);
                    if set.is_empty() {
                        self.pending_by_key.remove(key);
                    }
                }
            }
            (None, None) => {}
            (Some(_), _) => {
                self.resolved -= 1;
                self.resolved_bytes -= parked.payload.len();
            }
        }
        Some(parked)
    }

    /// Resolves the pending message at `stream_sequence`; returns it as it
    /// now is, or `None` if there is none pending there.
    pub(crate) fn resolve(
        &mut self,
        stream_sequence: u64,
        resolution: Resolution,
    ) -> Option<&Parked> {
        if !self.get(stream_sequence)?.is_pending() {
            return None;
        }
        let mut parked = self.remove(stream_sequence)?;
        parked.resolution = Some(resolution);
        self.insert(parked);
        self.get(stream_sequence)
    }

    /// The pending messages of `key` that a state at `held` (applied from
    /// the message at `applied_at`, if it came from the stream) supersedes:
    /// those whose sequence is at or below `held`, and those whose sequence
    /// could not be read that came before `applied_at` in the stream.
    pub(crate) fn superseded_by(&self, key: &str, held: u64, applied_at: Option<u64>) -> Vec<u64> {
        let Some(pending) = self.pending_by_key.get(key) else {
            return Vec::new();
        };
        pending
            .iter()
            .copied()
            .filter(|stream_sequence| match self.slots.get(stream_sequence) {
                Some(Slot {
                    sequence: Some(sequence),
                    ..
                }) => *sequence <= held,
                Some(Slot { sequence: None, .. }) => {
                    applied_at.is_some_and(|at| *stream_sequence < at)
                }
                None => false,
            })
            .collect()
    }

    /// The pending messages to discard to stay within `limits`, oldest
    /// first.
    pub(crate) fn over_pending(&self, limits: ParkingLimits) -> Vec<u64> {
        let mut count = self.pending();
        let mut bytes = self.pending_bytes;
        let mut discard = Vec::new();
        for slot in self.slots.values() {
            if count <= limits.max_pending && bytes <= limits.max_pending_bytes {
                break;
            }
            if slot.parked.resolution.is_none() {
                count -= 1;
                bytes -= slot.parked.payload.len();
                discard.push(slot.parked.stream_sequence);
            }
        }
        discard
    }

    /// The resolved messages to purge to stay within `limits`, oldest
    /// first.
    pub(crate) fn over(&self, limits: ParkingLimits) -> Vec<u64> {
        let mut count = self.resolved;
        let mut bytes = self.resolved_bytes;
        let mut purge = Vec::new();
        for slot in self.slots.values() {
            if count <= limits.max_resolved && bytes <= limits.max_resolved_bytes {
                break;
            }
            if slot.parked.resolution.is_some() {
                count -= 1;
                bytes -= slot.parked.payload.len();
                purge.push(slot.parked.stream_sequence);
            }
        }
        purge
    }
}

/// The event sequence of a parked message, when it means something for the
/// key it is parked under: read from its envelope, unless the transport
/// refused it or it was misaddressed (its envelope is not about the key of
/// its subject).
fn event_sequence(parked: &Parked) -> Option<u64> {
    if matches!(
        parked.reason.kind,
        ParkKind::Refused | ParkKind::Misaddressed
    ) {
        return None;
    }
    let (header, _) = decode_header(&parked.payload).ok()?;
    (parked.key.as_deref() == Some(header.key.as_ref())).then_some(header.sequence.get())
}
