//! [`BatchOutcome`]: what a batch did, message by message.

use super::ParkReason;
use crate::replica::Outcome;

/// What a batch (or a retry of parked events) did, message by message,
/// each identified by its stream sequence.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BatchOutcome {
    /// Applied messages and their outcomes, in order.
    pub applied: Vec<(u64, Outcome)>,
    /// Messages parked (newly, or again on a redelivery), with the reason.
    pub parked: Vec<(u64, ParkReason)>,
    /// Parked messages that the batch superseded: their key now holds a
    /// state at least as new, so they are resolved, kept for inspection
    /// until purged (see [`ParkingLimits`](super::ParkingLimits)).
    pub superseded: Vec<u64>,
    /// Pending parked messages discarded because the parking lot went past
    /// its pending limits ([`ParkingLimits`](super::ParkingLimits)), oldest
    /// first.
    pub overflowed: Vec<u64>,
    /// Events rejected *without* being parked, with the reason: the
    /// unsequenced events of a bootstrap answer
    /// ([`DurableReplica::merge_unsequenced`](crate::store::DurableReplica::merge_unsequenced)),
    /// which have no stream sequence (it reads 0 here) and can be asked
    /// for again; and, in a
    /// [`DurableRouter`](crate::store::DurableRouter), the messages of an
    /// entity it holds no replica of, skipped and counted.
    pub rejected: Vec<(u64, ParkReason)>,
}
