//! [`DurableConsumer`]: what a transport adapter (NATS's
//! `StreamFollower`) drives, implemented by a
//! [`DurableReplica`](super::DurableReplica) of one entity and by a
//! [`DurableRouter`](super::DurableRouter) of several.

use core::future::Future;
use std::time::SystemTime;

use super::router::DurableRouter;
use super::share::RouterStore;
use super::{BatchOutcome, DurableReplica, Message, ReplicaStore, StoreError};
use crate::event::StateEvent;

/// A durable consumer of one stream: it applies batches of messages and
/// commits them with its checkpoint, and says where to resume.
///
/// A transport adapter drives it: it fetches messages after
/// [`DurableConsumer::resume_after`], hands them to
/// [`DurableConsumer::apply_batch`], and acknowledges them to the broker
/// only once that returned `Ok`.
pub trait DurableConsumer {
    /// What a failed commit reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The entities it keeps replicas of: the adapter subscribes to their
    /// messages (on NATS, one entity's subjects `<prefix>.<entity>.>`, or
    /// the whole prefix for several).
    fn entities(&self) -> Vec<&'static str>;

    /// The stream sequence to resume after (`0`: from the start).
    fn resume_after(&self) -> u64;

    /// Applies `messages` and commits them with the checkpoint in one
    /// transaction.
    fn apply_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> impl Future<Output = Result<BatchOutcome, Self::Error>>;

    /// Moves the checkpoint's stream position back to the start, keeping
    /// the replicas (a stream deleted and created again).
    fn rewind_stream_position(&mut self) -> impl Future<Output = Result<(), Self::Error>>;

    /// The identity (creation time) of the stream the checkpoint's
    /// positions count in, as recorded
    /// ([`Checkpoint::stream_created`](super::Checkpoint::stream_created)).
    fn stream_created(&self) -> Option<SystemTime>;

    /// Sets the identity of the stream the next messages come from,
    /// written with the checkpoint of every commit from now on.
    fn set_stream_created(&mut self, created: SystemTime);

    /// The same consumer, reporting as consumer `consumer` of `stream` in
    /// its spans and metrics.
    #[must_use]
    fn with_consumer(self, stream: &str, consumer: &str) -> Self
    where
        Self: Sized;

    /// Records its lag, the stream's last sequence minus the checkpoint, as
    /// the adapter measures it (the `ecst_consumer_lag` gauge, feature
    /// `metrics`).
    fn record_lag(&self, messages: u64);
}

impl<T: StateEvent, S: ReplicaStore<T>> DurableConsumer for DurableReplica<T, S> {
    type Error = S::Error;

    fn entities(&self) -> Vec<&'static str> {
        vec![T::ENTITY]
    }

    fn resume_after(&self) -> u64 {
        DurableReplica::resume_after(self)
    }

    fn apply_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> impl Future<Output = Result<BatchOutcome, S::Error>> {
        DurableReplica::apply_batch(self, messages)
    }

    fn rewind_stream_position(&mut self) -> impl Future<Output = Result<(), S::Error>> {
        DurableReplica::rewind_stream_position(self)
    }

    fn stream_created(&self) -> Option<SystemTime> {
        DurableReplica::stream_created(self)
    }

    fn set_stream_created(&mut self, created: SystemTime) {
        DurableReplica::set_stream_created(self, created);
    }

    fn with_consumer(self, stream: &str, consumer: &str) -> Self {
        DurableReplica::with_consumer(self, stream, consumer)
    }

    fn record_lag(&self, messages: u64) {
        self.telemetry.lag(T::ENTITY, messages);
    }
}

impl<S: RouterStore> DurableConsumer for DurableRouter<S> {
    type Error = StoreError;

    fn entities(&self) -> Vec<&'static str> {
        DurableRouter::entities(self).collect()
    }

    fn resume_after(&self) -> u64 {
        DurableRouter::resume_after(self)
    }

    fn apply_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> impl Future<Output = Result<BatchOutcome, StoreError>> {
        DurableRouter::apply_batch(self, messages)
    }

    fn rewind_stream_position(&mut self) -> impl Future<Output = Result<(), StoreError>> {
        DurableRouter::rewind_stream_position(self)
    }

    fn stream_created(&self) -> Option<SystemTime> {
        DurableRouter::stream_created(self)
    }

    fn set_stream_created(&mut self, created: SystemTime) {
        DurableRouter::set_stream_created(self, created);
    }

    fn with_consumer(self, stream: &str, consumer: &str) -> Self {
        DurableRouter::with_consumer(self, stream, consumer)
    }

    fn record_lag(&self, messages: u64) {
        self.telemetry.lag(super::router::ROUTER_LABEL, messages);
    }
}
