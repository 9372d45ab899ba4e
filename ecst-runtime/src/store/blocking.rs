//! [`BlockingReplica`]: a [`DurableReplica`] driven by plain function calls,
//! no async runtime, over a store that does its work synchronously
//! ([`ReadyStore`]: `SqliteStore`, [`MemoryStore`]); and [`BlockingRouter`],
//! the same for a [`DurableRouter`] of several entities
//! ([`ReadyRouterStore`]: `SqliteStore`, [`MemoryRouterStore`]).

use core::future::Future;
use core::ops::Deref;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::time::SystemTime;

use super::{
    BatchOutcome, DurableReplica, DurableRouter, MemoryRouterStore, MemoryStore, Message,
    NotRegistered, ReplicaStore, RouterBuilder, RouterStore, StoreContext, StoreError,
};
use crate::consume::ParkingLimits;
use crate::event::StateEvent;
use crate::feed::StateChange;

/// A store whose futures complete the first time they are polled: all their
/// work is synchronous. [`BlockingReplica`] drives them without a runtime.
///
/// Implemented by `SqliteStore` (feature `sqlite`) and [`MemoryStore`].
/// Implement it for a store of your own only if its `load` and `commit`
/// futures never return `Poll::Pending`.
pub trait ReadyStore<T: StateEvent>: ReplicaStore<T> {
    /// The error to report if a future was not ready after all (a broken
    /// promise of the implementation, never expected).
    fn not_ready(operation: &'static str) -> Self::Error;
}

impl<T: StateEvent> ReadyStore<T> for MemoryStore {
    fn not_ready(operation: &'static str) -> StoreError {
        not_ready_error("memory", operation)
    }
}

#[cfg(feature = "sqlite")]
impl<T: StateEvent> ReadyStore<T> for super::sqlite::SqliteStore {
    fn not_ready(operation: &'static str) -> StoreError {
        not_ready_error("sqlite", operation)
    }
}

fn not_ready_error(backend: &'static str, operation: &'static str) -> StoreError {
    StoreContext::new(backend, "", None).database(
        operation,
        "the store's future did not complete when polled (a ReadyStore must do its work at once)",
    )
}

/// Polls `future` once; its output, or `not_ready` if it is pending.
fn now<F: Future<Output = Result<O, E>>, O, E>(
    future: F,
    not_ready: impl FnOnce() -> E,
) -> Result<O, E> {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => Err(not_ready()),
    }
}

/// A [`DurableReplica`] with synchronous methods, for a store that needs no
/// async runtime ([`ReadyStore`]: `SqliteStore`, [`MemoryStore`]): a
/// consumer on any transport that gives each message a stream position
/// and bytes, in a plain thread.
///
/// It reads like the replica it wraps (`Deref`: `replica()`,
/// `checkpoint()`, `resume_after()`, `parked()`, ...), and each method
/// below is the [`DurableReplica`] method of the same name, run to
/// completion before it returns. The work blocks the calling thread (a
/// commit waits for SQLite's `fsync`).
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # fn demo<Customer: ecst_runtime::StateEvent>(
/// #     log: Vec<(u64, String, Vec<u8>)>,
/// # ) -> Result<(), ecst_runtime::store::StoreError> {
/// use ecst_runtime::store::blocking::BlockingReplica;
/// use ecst_runtime::store::sqlite::SqliteStore;
/// use ecst_runtime::store::Message;
///
/// let store = SqliteStore::open("replica.db", "billing")?;
/// let mut replica = BlockingReplica::<Customer, _>::open(store)?;
/// // Your transport: every message with its position in the stream.
/// let batch: Vec<Message<'_>> = log
///     .iter()
///     .filter(|(position, _, _)| *position > replica.resume_after())
///     .map(|(position, subject, bytes)| Message::new(*position, subject, bytes))
///     .collect();
/// let outcome = replica.apply_batch(&batch)?;
/// // Committed: acknowledge the batch to your transport now.
/// # let _ = outcome; Ok(()) }
/// ```
pub struct BlockingReplica<T: StateEvent, S: ReadyStore<T>> {
    durable: DurableReplica<T, S>,
}

impl<T: StateEvent, S: ReadyStore<T>> BlockingReplica<T, S> {
    /// [`DurableReplica::open`]: loads the replica, its checkpoint and its
    /// parked events from `store`.
    pub fn open(store: S) -> Result<Self, S::Error> {
        let durable = now(DurableReplica::open(store), || S::not_ready("loading"))?;
        Ok(BlockingReplica { durable })
    }

    /// Wraps a durable replica opened already.
    pub fn from_durable(durable: DurableReplica<T, S>) -> Self {
        BlockingReplica { durable }
    }

    /// The durable replica, for its async methods.
    pub fn into_durable(self) -> DurableReplica<T, S> {
        self.durable
    }

    /// [`DurableReplica::with_parking_limits`].
    #[must_use]
    pub fn with_parking_limits(self, limits: ParkingLimits) -> Self {
        BlockingReplica {
            durable: self.durable.with_parking_limits(limits),
        }
    }

    /// [`DurableReplica::apply_batch`]: applies `messages` and commits them
    /// with the checkpoint in one transaction. Acknowledge the messages to
    /// the transport only after it returns `Ok`.
    pub fn apply_batch(&mut self, messages: &[Message<'_>]) -> Result<BatchOutcome, S::Error> {
        now(self.durable.apply_batch(messages), || {
            S::not_ready("committing")
        })
    }

    /// [`DurableReplica::merge_unsequenced`].
    pub fn merge_unsequenced(&mut self, payloads: &[&[u8]]) -> Result<BatchOutcome, S::Error> {
        now(self.durable.merge_unsequenced(payloads), || {
            S::not_ready("committing")
        })
    }

    /// [`DurableReplica::retry_parked`].
    pub fn retry_parked(&mut self) -> Result<BatchOutcome, S::Error> {
        now(self.durable.retry_parked(), || S::not_ready("committing"))
    }

    /// [`DurableReplica::discard_parked`].
    pub fn discard_parked(&mut self, stream_sequence: u64, why: &str) -> Result<bool, S::Error> {
        now(self.durable.discard_parked(stream_sequence, why), || {
            S::not_ready("committing")
        })
    }

    /// [`DurableReplica::purge_tombstones_before`].
    pub fn purge_tombstones_before(&mut self, cutoff: SystemTime) -> Result<usize, S::Error> {
        now(self.durable.purge_tombstones_before(cutoff), || {
            S::not_ready("committing")
        })
    }

    /// [`DurableReplica::rewind_stream_position`].
    pub fn rewind_stream_position(&mut self) -> Result<(), S::Error> {
        now(self.durable.rewind_stream_position(), || {
            S::not_ready("committing")
        })
    }

    /// [`DurableReplica::reload`].
    pub fn reload(&mut self) -> Result<(), S::Error> {
        now(self.durable.reload(), || S::not_ready("loading"))
    }

    /// [`DurableReplica::on_change`]: the change feed, called after each
    /// commit.
    pub fn on_change(&mut self, feed: impl FnMut(StateChange<'_, T>) + Send + Sync + 'static) {
        self.durable.on_change(feed);
    }

    /// [`DurableReplica::clear_on_change`].
    pub fn clear_on_change(&mut self) {
        self.durable.clear_on_change();
    }
}

impl<T: StateEvent, S: ReadyStore<T>> Deref for BlockingReplica<T, S> {
    type Target = DurableReplica<T, S>;

    fn deref(&self) -> &DurableReplica<T, S> {
        &self.durable
    }
}

/// A router's store whose futures complete the first time they are polled
/// ([`BlockingRouter`] drives them without a runtime): `SqliteStore`
/// (feature `sqlite`) and [`MemoryRouterStore`]. Sealed with
/// [`RouterStore`].
pub trait ReadyRouterStore: RouterStore {}

impl ReadyRouterStore for MemoryRouterStore {}

#[cfg(feature = "sqlite")]
impl ReadyRouterStore for super::sqlite::SqliteStore {}

/// A [`DurableRouter`] with synchronous methods, for a store that needs no
/// async runtime ([`ReadyRouterStore`]): several entities consumed from
/// one transport in a plain thread, with one checkpoint. It reads like the
/// router it wraps (`Deref`), and each method below is the
/// [`DurableRouter`] method of the same name, run to completion before it
/// returns.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # fn demo<Customer: ecst_runtime::StateEvent, Order: ecst_runtime::StateEvent>(
/// #     batch: &[ecst_runtime::store::Message<'_>],
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use ecst_runtime::store::blocking::BlockingRouter;
/// use ecst_runtime::store::sqlite::SqliteStore;
/// use ecst_runtime::store::DurableRouter;
///
/// let store = SqliteStore::open("replica.db", "billing")?;
/// let mut router = BlockingRouter::open(
///     DurableRouter::builder(store)
///         .register::<Customer>()?
///         .register::<Order>()?,
/// )?;
/// router.apply_batch(batch)?; // every entity and the checkpoint, committed
/// # Ok(()) }
/// ```
pub struct BlockingRouter<S: ReadyRouterStore> {
    router: DurableRouter<S>,
}

fn router_not_ready(operation: &'static str) -> impl FnOnce() -> StoreError {
    move || not_ready_error("router", operation)
}

impl<S: ReadyRouterStore> BlockingRouter<S> {
    /// [`RouterBuilder::open`]: loads every registered entity and the
    /// checkpoint.
    pub fn open(builder: RouterBuilder<S>) -> Result<Self, StoreError> {
        let router = now(builder.open(), router_not_ready("loading"))?;
        Ok(BlockingRouter { router })
    }

    /// Wraps a router opened already.
    pub fn from_router(router: DurableRouter<S>) -> Self {
        BlockingRouter { router }
    }

    /// The router, for its async methods.
    pub fn into_router(self) -> DurableRouter<S> {
        self.router
    }

    /// [`DurableRouter::apply_batch`]: applies `messages`, each to its
    /// entity, and commits them with the checkpoint in one transaction.
    /// Acknowledge the messages to the transport only after it returns
    /// `Ok`.
    pub fn apply_batch(&mut self, messages: &[Message<'_>]) -> Result<BatchOutcome, StoreError> {
        now(
            self.router.apply_batch(messages),
            router_not_ready("committing"),
        )
    }

    /// [`DurableRouter::merge_unsequenced`].
    pub fn merge_unsequenced(&mut self, payloads: &[&[u8]]) -> Result<BatchOutcome, StoreError> {
        now(
            self.router.merge_unsequenced(payloads),
            router_not_ready("committing"),
        )
    }

    /// [`DurableRouter::retry_parked`].
    pub fn retry_parked(&mut self) -> Result<BatchOutcome, StoreError> {
        now(self.router.retry_parked(), router_not_ready("committing"))
    }

    /// [`DurableRouter::discard_parked`].
    pub fn discard_parked(
        &mut self,
        entity: &str,
        stream_sequence: u64,
        why: &str,
    ) -> Result<bool, StoreError> {
        now(
            self.router.discard_parked(entity, stream_sequence, why),
            router_not_ready("committing"),
        )
    }

    /// [`DurableRouter::purge_tombstones_before`].
    pub fn purge_tombstones_before(&mut self, cutoff: SystemTime) -> Result<usize, StoreError> {
        now(
            self.router.purge_tombstones_before(cutoff),
            router_not_ready("committing"),
        )
    }

    /// [`DurableRouter::rewind_stream_position`].
    pub fn rewind_stream_position(&mut self) -> Result<(), StoreError> {
        now(
            self.router.rewind_stream_position(),
            router_not_ready("committing"),
        )
    }

    /// [`DurableRouter::reload`].
    pub fn reload(&mut self) -> Result<(), StoreError> {
        now(self.router.reload(), router_not_ready("loading"))
    }

    /// [`DurableRouter::on_change`]: the change feed of entity `T`.
    pub fn on_change<T: StateEvent>(
        &mut self,
        feed: impl FnMut(StateChange<'_, T>) + Send + Sync + 'static,
    ) -> Result<(), NotRegistered> {
        self.router.on_change(feed)
    }
}

impl<S: ReadyRouterStore> Deref for BlockingRouter<S> {
    type Target = DurableRouter<S>;

    fn deref(&self) -> &DurableRouter<S> {
        &self.router
    }
}
