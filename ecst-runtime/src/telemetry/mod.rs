//! Tracing spans and metrics of the durable apply path, each behind its
//! feature (`tracing`, `metrics`, `opentelemetry`); without them every call
//! here compiles to nothing.
//!
//! What is emitted, and under which names, is listed in the README
//! ("Monitoring and debugging"). Nothing here installs a subscriber or a
//! recorder: that is the application's choice. With none installed, the
//! cost is one relaxed atomic load per event (the `tracing` level check)
//! and a few per batch (the `metrics` recorder lookup).

mod metrics;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use crate::consume::BatchOutcome;
use crate::envelope::TraceParent;

pub(crate) use spans::{event_parked, event_span, unsequenced_event_span, BatchSpan};

/// The names a durable replica reports under: the stream it follows and
/// its consumer (durable) name. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Telemetry {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    stream: Option<Arc<str>>,
    consumer: Option<Arc<str>>,
}

/// What the metrics read of a replica after a commit.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Sizes {
    /// Live keys.
    pub keys: usize,
    /// Tombstones.
    pub tombstones: usize,
    /// Pending parked messages.
    pub pending_parked: usize,
}

impl Telemetry {
    pub(crate) fn named(stream: &str, consumer: &str) -> Self {
        Telemetry {
            stream: Some(Arc::from(stream)),
            consumer: Some(Arc::from(consumer)),
        }
    }

    /// The span of one batch of `count` messages of `entity`, stream
    /// sequences `first..=last`, and its latency measurement.
    pub(crate) fn batch(
        &self,
        entity: &'static str,
        count: usize,
        first: u64,
        last: u64,
    ) -> BatchSpan {
        BatchSpan::new(self.clone(), entity, count, first, last)
    }

    /// Counts what a committed batch did and updates the gauges.
    pub(crate) fn committed(&self, entity: &'static str, outcome: &BatchOutcome, sizes: Sizes) {
        metrics::committed(self.consumer.as_ref(), entity, outcome, sizes);
    }

    /// The latency of a committed batch.
    pub(crate) fn latency(&self, entity: &'static str, elapsed: Duration) {
        metrics::latency(self.consumer.as_ref(), entity, elapsed);
    }

    /// The consumer lag: the stream's last sequence minus the checkpoint,
    /// as the transport adapter measures it.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn lag(&self, entity: &'static str, messages: u64) {
        metrics::lag(self.consumer.as_ref(), entity, messages);
    }
}

/// The W3C trace parent of the current span: with the `opentelemetry`
/// feature, the OpenTelemetry context of the current `tracing` span, if it
/// is a valid one; otherwise `None`.
pub(crate) fn current_traceparent() -> Option<TraceParent> {
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let span = tracing::Span::current();
        // No `tracing` span: an application that uses OpenTelemetry's own
        // context still gets its trace written.
        let context = if span.is_disabled() {
            opentelemetry::Context::current()
        } else {
            span.context()
        };
        let otel = context.span();
        let current = otel.span_context();
        if !current.is_valid() {
            return None;
        }
        TraceParent::new(
            current.trace_id().to_bytes(),
            current.span_id().to_bytes(),
            current.trace_flags().to_u8(),
        )
    }
    #[cfg(not(feature = "opentelemetry"))]
    None
}

impl<T: crate::StateEvent, S: crate::store::ReplicaStore<T>> crate::store::DurableReplica<T, S> {
    /// The same replica, reporting as consumer `consumer` of stream
    /// `stream`: the `stream` and `consumer` fields of its `ecst.batch`
    /// spans (feature `tracing`) and the `consumer` label of its metrics
    /// (feature `metrics`). Unnamed, both are empty. NATS's `Follower` names
    /// its replica after its settings' stream and durable name.
    ///
    /// The consumer name is a metric label: keep it one of a few fixed
    /// names, never something per key or per process.
    #[must_use]
    pub fn with_consumer(mut self, stream: &str, consumer: &str) -> Self {
        self.telemetry = Telemetry::named(stream, consumer);
        self
    }
}
