//! The runtime of [ecst](https://docs.rs/ecst): everything
//! `#[derive(StateEvent)]` generates code against, and the sans-IO core of
//! Event-Carried State Transfer.
//!
//! Most users depend on the `ecst` facade crate, which re-exports this crate
//! and the derive. The pieces:
//!
//! - [`StateEvent`] and [`Upcast`]: what a versioned event type is;
//! - [`Envelope`]: the CloudEvents 1.0 envelope, encoded and decoded;
//! - [`Producer`]: envelopes with a strictly increasing per-key [`Sequence`];
//! - [`Replica`] and [`Router`]: order-proof, idempotent local copies;
//! - [`DecodeError`]: the one typed error every rejected event becomes;
//! - `outbox` (features `sqlite`, `postgres`): events staged in the owner's
//!   own database transaction, and the relay that publishes them.
//!
//! Nothing here needs an async runtime or does I/O beyond what the caller
//! hands in.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod catalog;
pub mod compatibility;
pub mod consume;
pub mod envelope;
mod error;
mod event;
pub mod feed;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod outbox;
mod producer;
mod replica;
mod router;
mod sequence;
mod snapshot;
pub mod store;
mod telemetry;
mod upcast;

#[doc(hidden)]
pub mod __private;

pub use catalog::{Catalog, DuplicateEntity, EventType};
pub use compatibility::Mode;
pub use envelope::{Change, EncodeError, Envelope, Operation};
pub use error::{DecodeError, DecodeErrorKind, EventContext};
pub use event::{EntityKey, StateEvent, Upcast};
pub use feed::StateChange;
pub use producer::{Producer, SequenceError};
pub use replica::{ApplyStats, Entry, Outcome, Replica};
pub use router::{EntityTaken, Routed, Router};
pub use sequence::{Sequence, SequenceOutOfRange};
pub use snapshot::SnapshotError;
pub use upcast::{BoxError, DecodeVersionError, PayloadError, UpcastError};
