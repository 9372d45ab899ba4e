//! `export` writes what a build should: the files of versions that have
//! none, and the AsyncAPI document; it never rewrites a committed version,
//! so the lock still catches a version changed in place.

use std::fs;
use std::path::{Path, PathBuf};

use ecst_derive::StateEvent;
use ecst_schema::{check_lock, export, Catalog, LockOptions, Problem};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod v1 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "badge", version = 1)]
    pub struct Badge {
        #[state_event(key)]
        pub id: u64,
        pub holder: String,
    }
}

mod v2 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "badge", version = 2)]
    pub struct Badge {
        #[state_event(key)]
        pub id: u64,
        pub holder: String,
        #[state_event(added(since = 2))]
        pub floor: Option<u8>,
    }
}

mod v1_edited {
    use super::*;

    /// v1 changed in place: `holder` is now a number.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "badge", version = 1)]
    pub struct Badge {
        #[state_event(key)]
        pub id: u64,
        pub holder: u64,
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ecst-export-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn relative(dir: &Path, paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            p.strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

#[test]
fn a_build_writes_new_versions_and_the_document_then_nothing() {
    let dir = TempDir::new("new-versions");
    let options = LockOptions::default();
    let first = Catalog::new().with::<v1::Badge>().unwrap();
    let written = export(&dir.0, &first, &options).expect("written");
    assert_eq!(
        relative(&dir.0, written.written()),
        ["badge/v1.json", "asyncapi.json"]
    );
    assert!(check_lock(&dir.0, &first, &options).unwrap().is_clean());
    // Built again: nothing to write.
    assert!(export(&dir.0, &first, &options)
        .unwrap()
        .written()
        .is_empty());

    // v2 declared: its file and the document are written, v1 is not.
    let v1_before = fs::read(dir.0.join("badge/v1.json")).unwrap();
    let second = Catalog::new().with::<v2::Badge>().unwrap();
    let written = export(&dir.0, &second, &options).expect("written");
    assert_eq!(
        relative(&dir.0, written.written()),
        ["badge/v2.json", "asyncapi.json"]
    );
    assert_eq!(fs::read(dir.0.join("badge/v1.json")).unwrap(), v1_before);
    let report = check_lock(&dir.0, &second, &options).unwrap();
    // v1's title and description changed (it is no longer the newest):
    // documentation only, which the lock allows.
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_version_changed_in_place_is_not_rewritten_and_the_lock_refuses_it() {
    let dir = TempDir::new("in-place");
    let options = LockOptions::default();
    let locked = Catalog::new().with::<v1::Badge>().unwrap();
    export(&dir.0, &locked, &options).expect("written");
    let committed = fs::read(dir.0.join("badge/v1.json")).unwrap();

    let edited = Catalog::new().with::<v1_edited::Badge>().unwrap();
    let written = export(&dir.0, &edited, &options).expect("written");
    // Only the document follows the code; the frozen version stays.
    assert_eq!(relative(&dir.0, written.written()), ["asyncapi.json"]);
    assert_eq!(fs::read(dir.0.join("badge/v1.json")).unwrap(), committed);
    let report = check_lock(&dir.0, &edited, &options).unwrap();
    assert!(
        matches!(report.problems.as_slice(), [Problem::FrozenChanged { .. }]),
        "{report}"
    );
}

#[test]
fn an_unwritable_directory_is_an_error_naming_it() {
    let dir = TempDir::new("unwritable");
    fs::create_dir_all(dir.0.parent().unwrap()).unwrap();
    // A file where the directory should be.
    fs::write(&dir.0, b"not a directory").unwrap();
    let catalog = Catalog::new().with::<v1::Badge>().unwrap();
    let err = export(&dir.0, &catalog, &LockOptions::default()).expect_err("a file, not a dir");
    assert!(err.to_string().contains(&*dir.0.to_string_lossy()), "{err}");
    let _ = fs::remove_file(&dir.0);
}
