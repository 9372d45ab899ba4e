//! JSON Schemas of event types, and how versions of them relate.
//!
//! [`compat`] decides whether a new schema can replace an old one, by the
//! rules Confluent's Schema Registry applies to JSON Schema. [`Catalog`]
//! lists a program's event types, [`assert_lock`] checks the committed
//! schema files in `cargo test`, and [`asyncapi()`] documents them all.

pub mod asyncapi;
mod canonical;
pub mod catalog;
pub mod compat;
mod jsondiff;
pub mod lock;

pub use asyncapi::{asyncapi, AsyncApiOptions};
pub use catalog::{Catalog, DuplicateEntity, EventType};
pub use lock::{
    assert_lock, assert_lock_with, check_lock, write_lock, LockError, LockOptions, LockReport,
    Problem, OVERWRITE_ENV,
};

pub use compat::{
    check, check_history, check_with, Difference, DifferenceKind, Direction, Mode, Policy, Report,
    SchemaError,
};
