//! The metrics of the durable apply path, through the `metrics` facade
//! (feature `metrics`). Labels are the entity name and the consumer name
//! (empty when the replica was not named), plus the park kind where there
//! is a reason: a bounded set, never a key.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `ecst_events_applied_total` | counter | entity, consumer |
//! | `ecst_events_duplicate_total` | counter | entity, consumer |
//! | `ecst_events_stale_total` | counter | entity, consumer |
//! | `ecst_events_parked_total` | counter | entity, consumer, reason |
//! | `ecst_events_rejected_total` | counter | entity, consumer, reason |
//! | `ecst_parked_superseded_total` | counter | entity, consumer |
//! | `ecst_parked_overflowed_total` | counter | entity, consumer |
//! | `ecst_parked_pending` | gauge | entity, consumer |
//! | `ecst_replica_keys` | gauge | entity, consumer |
//! | `ecst_replica_tombstones` | gauge | entity, consumer |
//! | `ecst_consumer_lag` | gauge | entity, consumer |
//! | `ecst_batch_apply_seconds` | histogram | entity, consumer |

use std::sync::Arc;
use std::time::Duration;

use super::Sizes;
use crate::consume::BatchOutcome;

#[cfg(feature = "metrics")]
mod emit {
    use std::sync::Arc;

    use metrics::{Label, SharedString};

    use crate::consume::{BatchOutcome, ParkKind, ParkReason};
    use crate::replica::Outcome;

    pub(super) fn labels(consumer: Option<&Arc<str>>, entity: &'static str) -> Vec<Label> {
        let consumer = match consumer {
            Some(name) => SharedString::from_shared(name.clone()),
            None => SharedString::const_str(""),
        };
        vec![
            Label::from_static_parts("entity", entity),
            Label::new("consumer", consumer),
        ]
    }

    fn with_reason(labels: &[Label], kind: ParkKind) -> Vec<Label> {
        let mut labels = labels.to_vec();
        labels.push(Label::from_static_parts("reason", kind.as_str()));
        labels
    }

    fn count(name: &'static str, labels: &[Label], value: u64) {
        if value > 0 {
            metrics::counter!(name, labels.iter()).increment(value);
        }
    }

    /// Counts `reasons` per park kind.
    fn by_kind(name: &'static str, labels: &[Label], reasons: &[(u64, ParkReason)]) {
        for kind in ParkKind::KNOWN.into_iter().chain([ParkKind::Other]) {
            let n = reasons.iter().filter(|(_, r)| r.kind == kind).count();
            if n > 0 {
                metrics::counter!(name, with_reason(labels, kind).iter()).increment(n as u64);
            }
        }
    }

    pub(super) fn outcome(labels: &[Label], outcome: &BatchOutcome) {
        let (mut applied, mut duplicate, mut stale) = (0u64, 0u64, 0u64);
        for (_, applied_outcome) in &outcome.applied {
            match applied_outcome {
                Outcome::Inserted | Outcome::Updated | Outcome::Deleted => applied += 1,
                Outcome::Duplicate => duplicate += 1,
                Outcome::Stale => stale += 1,
            }
        }
        count("ecst_events_applied_total", labels, applied);
        count("ecst_events_duplicate_total", labels, duplicate);
        count("ecst_events_stale_total", labels, stale);
        by_kind("ecst_events_parked_total", labels, &outcome.parked);
        by_kind("ecst_events_rejected_total", labels, &outcome.rejected);
        count(
            "ecst_parked_superseded_total",
            labels,
            outcome.superseded.len() as u64,
        );
        count(
            "ecst_parked_overflowed_total",
            labels,
            outcome.overflowed.len() as u64,
        );
    }

    pub(super) fn gauge(name: &'static str, labels: &[Label], value: f64) {
        metrics::gauge!(name, labels.iter()).set(value);
    }

    pub(super) fn histogram(name: &'static str, labels: &[Label], value: f64) {
        metrics::histogram!(name, labels.iter()).record(value);
    }
}

/// Counts a committed batch's outcomes and sets the size gauges.
pub(super) fn committed(
    consumer: Option<&Arc<str>>,
    entity: &'static str,
    outcome: &BatchOutcome,
    sizes: Sizes,
) {
    #[cfg(feature = "metrics")]
    {
        let labels = emit::labels(consumer, entity);
        emit::outcome(&labels, outcome);
        emit::gauge("ecst_parked_pending", &labels, sizes.pending_parked as f64);
        emit::gauge("ecst_replica_keys", &labels, sizes.keys as f64);
        emit::gauge("ecst_replica_tombstones", &labels, sizes.tombstones as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (consumer, entity, outcome, sizes);
}

/// Records a committed batch's latency.
pub(super) fn latency(consumer: Option<&Arc<str>>, entity: &'static str, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    emit::histogram(
        "ecst_batch_apply_seconds",
        &emit::labels(consumer, entity),
        elapsed.as_secs_f64(),
    );
    #[cfg(not(feature = "metrics"))]
    let _ = (consumer, entity, elapsed);
}

/// Sets the consumer lag gauge: stream sequences past the checkpoint.
pub(super) fn lag(consumer: Option<&Arc<str>>, entity: &'static str, sequences: u64) {
    #[cfg(feature = "metrics")]
    emit::gauge(
        "ecst_consumer_lag",
        &emit::labels(consumer, entity),
        sequences as f64,
    );
    #[cfg(not(feature = "metrics"))]
    let _ = (consumer, entity, sequences);
}
