//! The `tracing` spans of the durable apply path (feature `tracing`).
//!
//! - `ecst.batch` (INFO, target `ecst`): one per batch a durable replica
//!   applies, with `stream`, `consumer`, `entity`, `count`, `first` and
//!   `last` (stream sequences), and on close `applied` and `parked`;
//! - `ecst.event` (DEBUG, target `ecst`): one per event applied, inside its
//!   batch's span, with `id`, `type`, `subject`, `sequence`,
//!   `schemaversion`, `stream_sequence`, `traceparent` (as sent) and the
//!   `outcome`. With the `opentelemetry` feature, a valid `traceparent`
//!   becomes the span's OpenTelemetry parent; a malformed one is ignored
//!   with a DEBUG event.
//!   Bootstrap answers merged by `merge_unsequenced` get one too, with
//!   `stream_sequence` 0.
//! - a DEBUG event `parked` (target `ecst`) per message parked, with its
//!   `stream_sequence`, `key`, `kind` and `reason`.

use std::future::Future;
use std::time::Instant;

use super::Telemetry;
use crate::consume::{BatchOutcome, ParkReason};
use crate::envelope::Header;
use crate::replica::Outcome;

/// The span and the clock of one batch.
pub(crate) struct BatchSpan {
    telemetry: Telemetry,
    entity: &'static str,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl BatchSpan {
    pub(super) fn new(
        telemetry: Telemetry,
        entity: &'static str,
        count: usize,
        first: u64,
        last: u64,
    ) -> Self {
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(
            target: "ecst",
            "ecst.batch",
            stream = telemetry.stream.as_deref().unwrap_or(""),
            consumer = telemetry.consumer.as_deref().unwrap_or(""),
            entity,
            count,
            first,
            last,
            applied = tracing::field::Empty,
            parked = tracing::field::Empty,
        );
        #[cfg(not(feature = "tracing"))]
        let _ = (count, first, last);
        BatchSpan {
            telemetry,
            entity,
            #[cfg(feature = "tracing")]
            span,
        }
    }

    /// Runs `work` (applying and committing the batch) inside the span, and
    /// records its latency and outcome when it committed.
    pub(crate) async fn run<E>(
        self,
        work: impl Future<Output = Result<BatchOutcome, E>>,
    ) -> Result<BatchOutcome, E> {
        let started = Instant::now();
        #[cfg(feature = "tracing")]
        let result = tracing::Instrument::instrument(work, self.span.clone()).await;
        #[cfg(not(feature = "tracing"))]
        let result = work.await;
        if let Ok(outcome) = &result {
            self.telemetry.latency(self.entity, started.elapsed());
            #[cfg(feature = "tracing")]
            {
                self.span.record("applied", outcome.applied.len());
                self.span.record("parked", outcome.parked.len());
            }
            #[cfg(not(feature = "tracing"))]
            let _ = outcome;
        }
        result
    }
}

/// The span of one event, entered while it is applied.
pub(crate) struct EventSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// An [`EventSpan`] entered.
pub(crate) struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _entered: tracing::span::Entered<'a>,
    #[cfg(not(feature = "tracing"))]
    _span: &'a EventSpan,
}

impl EventSpan {
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "tracing")]
            _entered: self.span.enter(),
            #[cfg(not(feature = "tracing"))]
            _span: self,
        }
    }

    /// Records what applying the event did.
    pub(crate) fn outcome(&self, outcome: Outcome) {
        #[cfg(feature = "tracing")]
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome_name(outcome));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = outcome;
    }
}

/// The span of the event at `stream_sequence` whose envelope is `header`,
/// child of the current span (its batch's); with the `opentelemetry`
/// feature, of the event's `traceparent` too.
pub(crate) fn event_span(stream_sequence: u64, header: &Header<'_>) -> EventSpan {
    #[cfg(feature = "tracing")]
    {
        let span = tracing::debug_span!(
            target: "ecst",
            "ecst.event",
            id = &*header.id,
            r#type = &*header.entity,
            subject = &*header.key,
            sequence = header.sequence.get(),
            schemaversion = header.schema_version,
            stream_sequence,
            traceparent = header.traceparent.as_deref(),
            outcome = tracing::field::Empty,
        );
        if !span.is_disabled() {
            if let Some(traceparent) = header.traceparent.as_deref() {
                link(&span, traceparent);
            }
        }
        EventSpan { span }
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (stream_sequence, header);
        EventSpan {}
    }
}

/// The span of an event that came without a stream sequence (an owner's
/// answer to a bootstrap request): its header is read for the span's fields
/// only when the span is enabled, since the replica decodes it on its own.
pub(crate) fn unsequenced_event_span(payload: &[u8]) -> EventSpan {
    #[cfg(feature = "tracing")]
    {
        if tracing::enabled!(target: "ecst", tracing::Level::DEBUG) {
            if let Ok((header, _)) = crate::envelope::decode_header(payload) {
                return event_span(0, &header);
            }
        }
        EventSpan {
            span: tracing::Span::none(),
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = payload;
        EventSpan {}
    }
}

/// Checks the event's `traceparent` and, with the `opentelemetry` feature,
/// makes it the span's parent. A malformed one is only reported.
#[cfg(feature = "tracing")]
fn link(span: &tracing::Span, traceparent: &str) {
    let parent = match crate::envelope::TraceParent::parse(traceparent) {
        Ok(parent) => parent,
        Err(error) => {
            tracing::debug!(
                target: "ecst",
                parent: span,
                traceparent = %crate::consume::printable(traceparent),
                %error,
                "ignored a malformed traceparent"
            );
            return;
        }
    };
    #[cfg(feature = "opentelemetry")]
    {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id()),
            SpanId::from_bytes(parent.parent_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Fails only without an OpenTelemetry layer: nothing to link then.
        let _ = span.set_parent(context);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = parent;
}

/// Reports a message parked at `stream_sequence`.
pub(crate) fn event_parked(stream_sequence: u64, key: Option<&str>, reason: &ParkReason) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "ecst",
        stream_sequence,
        key,
        kind = reason.kind.as_str(),
        reason = %reason.message,
        "parked"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (stream_sequence, key, reason);
}

#[cfg(feature = "tracing")]
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Inserted => "inserted",
        Outcome::Updated => "updated",
        Outcome::Deleted => "deleted",
        Outcome::Duplicate => "duplicate",
        Outcome::Stale => "stale",
    }
}
