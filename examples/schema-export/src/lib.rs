//! `cargo build` writes `schemas/`: see `build.rs`, which calls
//! `ecst::schema::export` with this crate's event types, and
//! `tests/schema_lock.rs`, which checks the files in `cargo test`.
//!
//! Run `cargo build -p ecst-example-schema-export`: a version that has no
//! file yet under `schemas/` is written (the build prints a warning per
//! file), `asyncapi.json` is kept up to date, and committed versions are
//! left alone. Commit what the build wrote.

pub mod events;

pub use events::{Address, AddressV1, Order, OrderV1};
