//! Writing `schemas/` from a build: every version's JSON Schema and the
//! AsyncAPI document, produced by `cargo build` rather than by a test run.
//!
//! [`export`] is for a build script (or any tool) that knows the event
//! types. It writes the files of versions that have none yet and refreshes
//! `asyncapi.json`, and it never rewrites the file of a version that is
//! already there: a committed version is frozen, and the schema lock
//! ([`assert_lock`](crate::assert_lock) in `cargo test`) stays the guard
//! that refuses a version changed in place. A build can therefore run it
//! every time.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In a build script, the event types are listed by hand:
//! // `Catalog::new().with::<events::Order>()?`.
//! let catalog = ecst_schema::Catalog::new();
//! let export = ecst_schema::export("schemas".as_ref(), &catalog, &Default::default())?;
//! for path in export.written() {
//!     println!("cargo:warning=wrote {}", path.display());
//! }
//! # Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::asyncapi::asyncapi;
use crate::lock::{io_error, version_path, write_json, LockError, LockOptions};
use ecst_runtime::catalog::Catalog;

/// What [`export`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Export {
    written: Vec<PathBuf>,
}

impl Export {
    /// The files written: versions that had no file yet, and
    /// `asyncapi.json` if it was missing or out of date. Empty when
    /// `schemas/` already held everything.
    pub fn written(&self) -> &[PathBuf] {
        &self.written
    }
}

/// Writes into `dir` the schema of every version of every type in
/// `catalog` that has no file there yet (`<entity>/v<N>.json`), and
/// `asyncapi.json` when it differs from the generated document. An
/// existing version file is never rewritten, whatever it holds: checking
/// it is the lock's job.
///
/// # Errors
///
/// [`LockError::Io`] naming the file or directory that could not be
/// created or written.
pub fn export(dir: &Path, catalog: &Catalog, options: &LockOptions) -> Result<Export, LockError> {
    let mut out = Export::default();
    for event in catalog.iter() {
        let entity_dir = dir.join(event.entity());
        fs::create_dir_all(&entity_dir).map_err(|source| io_error(&entity_dir, source))?;
        for (version, schema) in event.schemas() {
            let path = version_path(dir, event.entity(), version);
            if path.exists() {
                continue;
            }
            write_json(&path, &schema)?;
            out.written.push(path);
        }
    }
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let path = dir.join("asyncapi.json");
    let document = asyncapi(catalog, &options.asyncapi);
    let current = fs::read_to_string(&path).ok();
    if current.as_deref() != Some(crate::canonical::to_string(&document).as_str()) {
        write_json(&path, &document)?;
        out.written.push(path);
    }
    Ok(out)
}
