//! # ecst: Event-Carried State Transfer for Rust
//!
//! A service that owns data publishes an event whenever an entity changes,
//! and the event carries the entity's whole state. Other services keep local
//! replicas and never call the owner. ecst gives such events an explicit
//! schema version, typed upcasting from every older version, a CloudEvents
//! 1.0 envelope, and replicas that apply events idempotently in any order.
//!
//! ## Declaring an event type
//!
//! Write the struct in its newest shape and declare its history:
//!
//! ```
//! use ecst::StateEvent;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
//! #[state_event(entity = "customer", version = 3)]
//! #[state_event(removed(since = 3, field = "fax", ty = Option<String>))]
//! pub struct Customer {
//!     #[state_event(key)]
//!     pub id: String,
//!     #[state_event(renamed(since = 2, from = "full_name"))]
//!     pub name: String,
//!     #[state_event(added(since = 2))] // Default::default() for older data
//!     pub email: Option<String>,
//!     #[state_event(retyped(since = 3, from = u32, with = dollars_to_cents))]
//!     pub credit_limit_cents: u64,
//! }
//!
//! fn dollars_to_cents(dollars: u32) -> Result<u64, std::convert::Infallible> {
//!     Ok(u64::from(dollars) * 100)
//! }
//!
//! // Generated: `CustomerV1` and `CustomerV2` (typed, with serde and
//! // schemars derives), the hops between them, and one entry point that
//! // decodes any known version into the newest struct:
//! let v1 = br#"{"id":"c-1","full_name":"Ada","credit_limit_cents":12,"fax":null}"#;
//! let customer = Customer::from_json_version(1, v1).unwrap();
//! assert_eq!(customer.name, "Ada");
//! assert_eq!(customer.credit_limit_cents, 1200);
//! assert_eq!(Customer::schemas().len(), 3);
//! ```
//!
//! | attribute | where | meaning |
//! |---|---|---|
//! | `entity = "customer"` | struct | the entity name: CloudEvents `type`, replica routing |
//! | `version = N` | struct | the newest schema version; versions run `1..=N` and every version after 1 must declare a change |
//! | `removed(since = N, field = "x", ty = T)` | struct | field `x: T` existed before version `N` |
//! | `hop(since = N, with = f)` | struct | `f(VNminus1) -> Result<VN, E>` replaces the generated hop into `N` |
//! | `derive(Eq, Hash, ..)` | struct | extra derives for the generated older structs, which otherwise derive only `Deserialize` and `JsonSchema` (e.g. `derive(Serialize, Clone, Debug, PartialEq)` to build old payloads in tests) |
//! | `crate = "path"` | struct | where ecst is, if renamed |
//! | `compatibility = "FORWARD"` | struct | the mode the schema lock checks new versions against (Confluent's names, default `NONE`); `FORWARD`/`FULL` also let older consumers read the next version |
//! | `key` | field | the entity key, `subject` on the wire; exactly one field |
//! | `added(since = N)` | field | new in version `N`; older data gets `Default::default()` |
//! | `added(since = N, default = f)` | field | ... or `f()` |
//! | `added(since = N, with = f)` | field | ... or `f(&previous_version)` |
//! | `renamed(since = N, from = "old")` | field | called `old` before version `N` |
//! | `retyped(since = N, from = T, with = f)` | field | of type `T` before version `N`; `f(T) -> Result<New, E>` converts |
//! | `nested(since = N, from = AddressVk)` | field | the field's type has a history of its own ([`Versioned`]) and held its version `k` before entity version `N`; its generated hop upgrades it |
//!
//! A type nested in an entity that changes over time derives [`Versioned`]
//! (`#[versioned(version = N)]` with the same field vocabulary, plus
//! `added`/`renamed` on enum variants), so that each old version of the
//! entity keeps holding the nested version it was written with.
//!
//! `E` is any error that converts into `Box<dyn Error + Send + Sync>`; a
//! failure becomes an [`UpcastError`] naming the entity, the hop and the
//! field. Field-level changes combine: a field can be renamed at one version
//! and retyped at another.
//!
//! The user's `#[serde(..)]` attributes mean the same in every version: the
//! container's are copied to each generated struct, a field's are copied to
//! every version where the field has the same name (for `rename`, `alias`)
//! and the same type (for `with`, `default = ..`, `skip_serializing_if`, and
//! all `#[schemars(..)]` items). `from`/`into`/`try_from` on the container
//! cannot carry over and are rejected when older versions exist.
//!
//! ## Envelopes, producers, replicas
//!
//! ```
//! # use ecst::StateEvent;
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
//! # #[state_event(entity = "customer", version = 1)]
//! # pub struct Customer { #[state_event(key)] pub id: String, pub name: String }
//! use ecst::{Outcome, Producer, Replica};
//!
//! let mut producer = Producer::<Customer>::new("urn:example:crm");
//! let first = producer.upsert(Customer { id: "c-1".into(), name: "Ada".into() })?.to_json()?;
//! let second = producer.upsert(Customer { id: "c-1".into(), name: "Ada L.".into() })?.to_json()?;
//!
//! let mut replica = Replica::<Customer>::new();
//! assert_eq!(replica.apply_json(&second)?, Outcome::Inserted);
//! assert_eq!(replica.apply_json(&first)?, Outcome::Stale); // late: ignored
//! assert_eq!(replica.apply_json(&second)?, Outcome::Duplicate); // again: ignored
//! assert_eq!(replica.get("c-1").map(|c| c.name.as_str()), Some("Ada L."));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See [`Replica`] for the exact apply rules, [`envelope`] for the wire
//! format, and [`DecodeError`] for the error policy.
//!
//! ## The crates
//!
//! Dependencies run one way: the adapters and the tooling depend on the
//! core, never the reverse.
//!
//! | module | crate | what |
//! |---|---|---|
//! | [`StateEvent`] (derive) | `ecst-derive` | the derive |
//! | the root, [`envelope`], [`consume`], [`store`] | `ecst-runtime` | the core: envelope, replica, router, producer, snapshots, the transport-neutral consume layer, durable replicas and durable routers; no I/O, no async runtime |
//! | `nats` | `ecst-runtime`, feature `nats` | the NATS JetStream adapter |
//! | `store::sqlite`, `store::postgres` | `ecst-runtime`, features `sqlite`, `postgres` | durable stores |
//! | [`feed`] | `ecst-runtime` | change feeds: each state change a replica makes, before and after |
//! | `outbox` | `ecst-runtime`, features `sqlite`/`postgres` (relay: and `nats`) | the owner's transactional outbox and its relay to JetStream |
//! | [`schema`] | `ecst-schema` | schema governance: compatibility checker, schema lock, AsyncAPI |
//!
//! ## Feature flags
//!
//! None is on by default.
//!
//! - `nats`: the NATS JetStream adapter (`ecst::nats`: stream, publisher,
//!   follower, bootstrap by request), over async-nats and tokio.
//! - `sqlite`: `store::sqlite::SqliteStore`, a durable replica store in
//!   SQLite (bundled: nothing to install).
//! - `postgres`: `store::postgres::PostgresStore`, a durable replica store
//!   in PostgreSQL (tokio-postgres).
//! - `sqlite` or `postgres` also give `outbox`, the owner's transactional
//!   outbox; its relay needs `nats` too.
//! - `tracing`: spans per batch and per event on every durable apply path
//!   (on with `nats`).
//! - `metrics`: counters, gauges and a histogram through the `metrics`
//!   facade; no exporter is chosen for you.
//! - `opentelemetry`: an event's CloudEvents `traceparent` becomes the
//!   OpenTelemetry parent of its apply span (implies `tracing`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub use ecst_derive::StateEvent;
pub use ecst_derive::Versioned;

pub use ecst_runtime::{
    ApplyStats, BoxError, Catalog, Change, DecodeError, DecodeErrorKind, DecodeVersionError,
    DuplicateEntity, EncodeError, EntityKey, EntityTaken, Entry, Envelope, EventContext, EventType,
    Mode, Operation, Outcome, PayloadError, Producer, Replica, Routed, Router, Sequence,
    SequenceError, SequenceOutOfRange, SnapshotError, StateChange, StateEvent, Upcast, UpcastError,
};

pub use ecst_runtime::{catalog, compatibility, consume, envelope, feed, store};

/// The NATS JetStream adapter: stream, publisher, follower, bootstrap.
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use ecst_runtime::nats;

/// The transactional outbox: stage events in the owner's own database
/// transaction (SQLite, PostgreSQL), relay them to NATS (with `nats`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use ecst_runtime::outbox;

/// Schema governance (crate `ecst-schema`): the compatibility checker, the
/// schema lock your tests check, the AsyncAPI writer.
pub use ecst_schema as schema;

#[doc(hidden)]
pub mod __private {
    pub use ecst_runtime::__private::*;
}
