//! Writes `schemas/` on every `cargo build`: the JSON Schema of every
//! version of every event type, and `asyncapi.json`.
//!
//! The build script compiles the crate's own `src/events.rs` (a build
//! script cannot use the crate it builds), lists the event types, and calls
//! `ecst::schema::export`, which writes the files of versions that have none
//! yet and never rewrites a committed one: the schema lock in `cargo test`
//! (`tests/schema_lock.rs`) still refuses a version changed in place.

use std::path::PathBuf;

use ecst::schema::{export, Catalog, LockOptions};

#[allow(dead_code)]
#[path = "src/events.rs"]
mod events;

fn main() {
    println!("cargo:rerun-if-changed=src/events.rs");
    println!("cargo:rerun-if-changed=schemas");
    let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        fail("CARGO_MANIFEST_DIR is not set; run the build through cargo");
    };
    let dir = PathBuf::from(manifest_dir).join("schemas");
    let catalog = match Catalog::new().with::<events::Order>() {
        Ok(catalog) => catalog,
        Err(e) => fail(&e.to_string()),
    };
    match export(&dir, &catalog, &LockOptions::default()) {
        Ok(written) => {
            for path in written.written() {
                println!("cargo:warning=ecst: wrote {}", path.display());
            }
        }
        Err(e) => fail(&format!("writing the schemas failed: {e}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
