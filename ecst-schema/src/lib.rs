//! Schema governance for [ecst](https://docs.rs/ecst): how versions of an
//! event type's JSON Schema relate, checked where it matters.
//!
//! This is tooling that sits beside the runtime: the core (`ecst-runtime`)
//! decodes and applies events and knows nothing of this crate; your tests
//! depend on it to keep the committed schemas honest. Most users reach it as
//! `ecst::schema`.
//!
//! [`compat`] decides whether a new schema can replace an old one, by the
//! rules Confluent's Schema Registry applies to JSON Schema. [`Catalog`]
//! lists a program's event types, [`assert_lock`] checks the committed
//! schema files in `cargo test`, [`asyncapi()`] documents them all, and
//! [`export()`] writes the files of new versions from a build script.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod asyncapi;
mod canonical;
pub mod compat;
mod export;
mod jsondiff;
pub mod lock;

pub use asyncapi::{asyncapi, AsyncApiOptions};
pub use ecst_runtime::catalog::{Catalog, DuplicateEntity, EventType};
pub use export::{export, Export};
pub use lock::{
    assert_lock, assert_lock_with, check_lock, write_lock, LockError, LockOptions, LockReport,
    Problem, OVERWRITE_ENV,
};

pub use compat::{
    check, check_history, check_with, Difference, DifferenceKind, Direction, Mode, Policy, Report,
    SchemaError,
};
