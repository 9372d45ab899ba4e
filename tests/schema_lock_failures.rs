//! Every way the schema lock fails, each in its own temporary directory.
//!
//! The lock is written from one generation of the code and checked against
//! the next, so this file declares several generations of one entity
//! (`TicketBefore`, `TicketAfter`, `TicketNext` are all `ticket`). The
//! catalogs are therefore explicit: `Catalog::registered()` sees every
//! generation at once and refuses, which one test checks.

use std::collections::BTreeMap;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ecst::schema::compat::SchemaErrorReason;
use ecst::schema::{
    assert_lock_with, check_lock, write_lock, AsyncApiOptions, Catalog, Direction, LockError,
    LockOptions, LockReport, Mode, Policy, Problem, OVERWRITE_ENV,
};
use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// Each generation in a module of its own: two types of one module may
// not declare the same entity.
mod ticket_before {
    use super::*;

    /// A support ticket, as first locked.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "ticket", version = 1)]
    pub struct TicketBefore {
        #[state_event(key)]
        pub id: String,
        pub title: String,
        pub priority: u8,
    }
}
pub use ticket_before::TicketBefore;

mod ticket_after {
    use super::*;

    /// The same v1 after someone changed a field's type in place.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "ticket", version = 1)]
    pub struct TicketAfter {
        #[state_event(key)]
        pub id: String,
        pub title: String,
        pub priority: String,
    }
}
pub use ticket_after::TicketAfter;

mod ticket_next {
    use super::*;

    /// The ticket with a properly declared v2. Its v1 is `TicketBefore`'s, under
    /// another title and description, which are documentation only.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "ticket", version = 2)]
    pub struct TicketNext {
        #[state_event(key)]
        pub id: String,
        pub title: String,
        pub priority: u8,
        #[state_event(added(since = 2))]
        pub assignee: Option<String>,
    }
}
pub use ticket_next::TicketNext;

mod invoice_forward {
    use super::*;

    /// v2 renames a required field, which old readers cannot read; declared
    /// FORWARD (consumers on v1 read v2 events).
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "invoice", version = 2, compatibility = "FORWARD")]
    pub struct InvoiceForward {
        #[state_event(key)]
        pub id: u64,
        #[state_event(renamed(since = 2, from = "customer"))]
        pub client: String,
        pub total_cents: u64,
    }
}
pub use invoice_forward::InvoiceForward;

mod invoice_none {
    use super::*;

    /// The same history, declared NONE.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "invoice", version = 2, compatibility = "NONE")]
    pub struct InvoiceNone {
        #[state_event(key)]
        pub id: u64,
        #[state_event(renamed(since = 2, from = "customer"))]
        pub client: String,
        pub total_cents: u64,
    }
}
pub use invoice_none::InvoiceNone;

/// v2 adds an optional property to an open content model: refused by the
/// strict BACKWARD rules (old data may hold any `nickname`), accepted by the
/// lenient ones.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "profile", version = 2, compatibility = "BACKWARD")]
pub struct Profile {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    #[state_event(added(since = 2))]
    pub nickname: Option<String>,
}

// ---------------------------------------------------------------------------
// Helpers

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempLock(PathBuf);

impl TempLock {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ecst-schema-lock-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the temp dir");
        TempLock(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn catalog_of(
    build: impl FnOnce(Catalog) -> Result<Catalog, ecst::schema::DuplicateEntity>,
) -> Catalog {
    build(Catalog::new()).expect("distinct entities")
}

fn write(dir: &Path, catalog: &Catalog) {
    write_lock(dir, catalog, &LockOptions::default()).expect("the lock is written");
}

fn check(dir: &Path, catalog: &Catalog) -> LockReport {
    check_lock(dir, catalog, &LockOptions::default()).expect("the lock is readable")
}

/// Each problem as (variant, path relative to the lock dir), to assert the
/// whole list at once.
fn summary(dir: &Path, report: &LockReport) -> Vec<(&'static str, String)> {
    let rel = |path: &Path| {
        path.strip_prefix(dir)
            .expect("inside the lock dir")
            .to_string_lossy()
            .replace('\\', "/")
    };
    report
        .problems
        .iter()
        .map(|problem| match problem {
            Problem::FrozenChanged { path, .. } => ("FrozenChanged", rel(path)),
            Problem::Unlocked { path } => ("Unlocked", rel(path)),
            Problem::VersionRemoved { path, .. } => ("VersionRemoved", rel(path)),
            Problem::EntityRemoved { path } => ("EntityRemoved", rel(path)),
            Problem::Incompatible { path, .. } => ("Incompatible", rel(path)),
            Problem::AsyncApiStale { path } => ("AsyncApiStale", rel(path)),
            other => panic!("unexpected problem: {other}"),
        })
        .collect()
}

/// Asserts that `text` contains every one of `needles`.
#[track_caller]
fn assert_mentions(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("readable") {
            let path = entry.expect("readable").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("inside");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.insert(rel, fs::read(&path).expect("readable"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The message of a panic payload (`panic!("{x}")` or `panic!("literal")`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|message| (*message).to_owned())
            .unwrap_or_else(|_| "<not a string>".into()),
    }
}

// ---------------------------------------------------------------------------
// Problems: the code and the lock disagree.

#[test]
fn a_frozen_version_changed_in_place_is_reported_with_the_changed_pointer() {
    let dir = TempLock::new("frozen-changed");
    write(dir.path(), &catalog_of(|c| c.with::<TicketBefore>()));

    let after = catalog_of(|c| c.with::<TicketAfter>());
    let report = check(dir.path(), &after);
    assert_eq!(
        summary(dir.path(), &report),
        [
            ("FrozenChanged", "ticket/v1.json".into()),
            ("AsyncApiStale", "asyncapi.json".into()),
        ]
    );
    let Problem::FrozenChanged {
        changes,
        compatibility,
        ..
    } = &report.problems[0]
    else {
        unreachable!()
    };
    assert!(
        changes
            .contains(&r#"#/properties/priority/type: changed from "integer" to "string""#.into()),
        "{changes:#?}"
    );
    // Only the priority changed: the documentation is not part of the diff.
    assert!(
        changes
            .iter()
            .all(|c| c.starts_with("#/properties/priority/")),
        "{changes:#?}"
    );
    // Judged both ways, since old events and old readers both exist.
    assert_eq!(compatibility.mode(), Mode::Full);
    assert!(!compatibility.is_compatible());
    let broken: Vec<_> = compatibility
        .incompatibilities()
        .map(|d| (d.path.as_str(), d.direction))
        .collect();
    assert!(
        broken.contains(&("#/properties/priority", Direction::Backward)),
        "{broken:?}"
    );
    assert!(
        broken.contains(&("#/properties/priority", Direction::Forward)),
        "{broken:?}"
    );

    let text = report.to_string();
    assert_mentions(
        &text,
        &[
            "(2 problems)",
            &dir.path()
                .join("ticket")
                .join("v1.json")
                .display()
                .to_string(),
            "a committed schema changed; committed versions are frozen",
            "#/properties/priority/type: changed from \"integer\" to \"string\"",
            "#/properties/priority (backward): type changed",
            "#/properties/priority (forward): type changed",
            "declare a new version instead",
        ],
    );
}

#[test]
fn a_version_removed_from_the_code_is_reported() {
    let dir = TempLock::new("version-removed");
    write(dir.path(), &catalog_of(|c| c.with::<TicketNext>()));

    let report = check(dir.path(), &catalog_of(|c| c.with::<TicketBefore>()));
    assert_eq!(
        summary(dir.path(), &report),
        [
            ("VersionRemoved", "ticket/v2.json".into()),
            ("AsyncApiStale", "asyncapi.json".into()),
        ]
    );
    assert!(matches!(
        report.problems[0],
        Problem::VersionRemoved {
            newest_in_code: 1,
            ..
        }
    ));
    assert_mentions(
        &report.to_string(),
        &[
            &dir.path()
                .join("ticket")
                .join("v2.json")
                .display()
                .to_string(),
            "the lock has this version but the code stops at v1",
            "versions cannot be removed",
        ],
    );
}

#[test]
fn an_entity_removed_from_the_code_is_reported() {
    let dir = TempLock::new("entity-removed");
    write(
        dir.path(),
        &catalog_of(|c| c.with::<TicketBefore>()?.with::<InvoiceNone>()),
    );

    let report = check(dir.path(), &catalog_of(|c| c.with::<InvoiceNone>()));
    assert_eq!(
        summary(dir.path(), &report),
        [
            ("EntityRemoved", "ticket".into()),
            ("AsyncApiStale", "asyncapi.json".into()),
        ]
    );
    assert_mentions(
        &report.to_string(),
        &[
            &dir.path().join("ticket").display().to_string(),
            "no `StateEvent` type declares it any more",
        ],
    );
}

#[test]
fn a_new_version_not_yet_locked_is_reported() {
    let dir = TempLock::new("unlocked");
    write(dir.path(), &catalog_of(|c| c.with::<TicketBefore>()));

    // v1 is now `TicketNextV1`, titled and described by the derive; that is
    // documentation, so v1 still counts as unchanged.
    let report = check(dir.path(), &catalog_of(|c| c.with::<TicketNext>()));
    assert_eq!(
        summary(dir.path(), &report),
        [
            ("Unlocked", "ticket/v2.json".into()),
            ("AsyncApiStale", "asyncapi.json".into()),
        ]
    );
    assert_mentions(
        &report.to_string(),
        &[
            &dir.path()
                .join("ticket")
                .join("v2.json")
                .display()
                .to_string(),
            "this version is not locked yet",
            "ECST_SCHEMA_LOCK=overwrite",
        ],
    );
}

#[test]
fn a_newest_version_breaking_forward_is_incompatible_even_once_written() {
    let dir = TempLock::new("incompatible-forward");
    let catalog = catalog_of(|c| c.with::<InvoiceForward>());
    // Rewriting the lock does not make a breaking change acceptable.
    write(dir.path(), &catalog);

    let report = check(dir.path(), &catalog);
    assert_eq!(
        summary(dir.path(), &report),
        [("Incompatible", "invoice/v2.json".into())]
    );
    let Problem::Incompatible {
        entity,
        version,
        report: verdict,
        ..
    } = &report.problems[0]
    else {
        unreachable!()
    };
    assert_eq!((*entity, *version), ("invoice", 2));
    assert_eq!(verdict.mode(), Mode::Forward);
    let broken: Vec<_> = verdict
        .incompatibilities()
        .map(|d| (d.path.as_str(), d.direction))
        .collect();
    // v1 readers require `customer`, which v2 data no longer has.
    assert_eq!(broken, [("#/properties/customer", Direction::Forward)]);

    assert_mentions(
        &report.to_string(),
        &[
            &dir.path()
                .join("invoice")
                .join("v2.json")
                .display()
                .to_string(),
            "`invoice` v2 breaks its declared compatibility mode FORWARD (STRICT policy)",
            "#/properties/customer (forward: a v1 reader, v2 data)",
            "a reader using the old schema rejects every object written with the new schema",
            "compatibility = \"..\"",
        ],
    );
}

#[test]
fn the_same_change_declared_none_passes() {
    let dir = TempLock::new("compatibility-none");
    let catalog = catalog_of(|c| c.with::<InvoiceNone>());
    write(dir.path(), &catalog);
    let report = check(dir.path(), &catalog);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.to_string(), "the schema lock matches the code");
}

#[test]
fn the_lenient_policy_accepts_what_the_strict_one_refuses() {
    let dir = TempLock::new("lenient");
    let catalog = catalog_of(|c| c.with::<Profile>());
    write(dir.path(), &catalog);

    let strict = check(dir.path(), &catalog);
    assert_eq!(
        summary(dir.path(), &strict),
        [("Incompatible", "profile/v2.json".into())]
    );
    assert_mentions(
        &strict.to_string(),
        &[
            "BACKWARD (STRICT policy)",
            "#/properties/nickname (backward: a v2 reader, v1 data)",
            "open content model",
        ],
    );

    let lenient = LockOptions {
        policy: Policy::Lenient,
        ..LockOptions::default()
    };
    let report = check_lock(dir.path(), &catalog, &lenient).expect("readable");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_missing_or_stale_asyncapi_document_is_reported() {
    let dir = TempLock::new("asyncapi");
    let catalog = catalog_of(|c| c.with::<TicketBefore>());
    let asyncapi = dir.path().join("asyncapi.json");
    let stale = [("AsyncApiStale", "asyncapi.json".to_owned())];

    write(dir.path(), &catalog);
    fs::remove_file(&asyncapi).expect("removable");
    let report = check(dir.path(), &catalog);
    assert_eq!(summary(dir.path(), &report), stale);
    assert_mentions(
        &report.to_string(),
        &[
            &asyncapi.display().to_string(),
            "missing or out of date",
            "ECST_SCHEMA_LOCK=overwrite",
        ],
    );

    // Written with other options: the document differs.
    let other = LockOptions {
        asyncapi: AsyncApiOptions {
            title: "Old title".into(),
            ..AsyncApiOptions::default()
        },
        ..LockOptions::default()
    };
    write_lock(dir.path(), &catalog, &other).expect("written");
    assert_eq!(summary(dir.path(), &check(dir.path(), &catalog)), stale);

    // Valid JSON that is not an AsyncAPI document at all.
    fs::write(&asyncapi, "[1, 2]\n").expect("writable");
    assert_eq!(summary(dir.path(), &check(dir.path(), &catalog)), stale);
}

// ---------------------------------------------------------------------------
// Writing and asserting.

#[test]
fn write_then_check_is_clean_and_the_files_are_canonical_and_stable() {
    let dir = TempLock::new("round-trip");
    let catalog = catalog_of(|c| c.with::<TicketNext>()?.with::<InvoiceNone>());
    write(dir.path(), &catalog);
    let report = check(dir.path(), &catalog);
    assert!(report.is_clean(), "{report}");

    let first = files(dir.path());
    assert_eq!(
        first.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "asyncapi.json",
            "invoice/v1.json",
            "invoice/v2.json",
            "ticket/v1.json",
            "ticket/v2.json",
        ]
    );
    fn keys_sorted(value: &Value) -> bool {
        match value {
            Value::Object(map) => {
                let keys: Vec<&String> = map.keys().collect();
                keys.windows(2).all(|w| w[0] < w[1]) && map.values().all(keys_sorted)
            }
            Value::Array(items) => items.iter().all(keys_sorted),
            _ => true,
        }
    }
    for (name, bytes) in &first {
        let text = std::str::from_utf8(bytes).expect("UTF-8");
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        // Whatever order `Value` keeps keys in (sorted, or as read with
        // `preserve_order`), the file is exactly its pretty form, and that
        // order is sorted at every depth.
        let pretty = serde_json::to_string_pretty(&value).expect("serializable") + "\n";
        assert_eq!(
            text, pretty,
            "{name} is not pretty-printed JSON with a final newline"
        );
        assert!(keys_sorted(&value), "{name} has unsorted keys");
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"), "{name}");
    }

    write(dir.path(), &catalog);
    assert!(
        first == files(dir.path()),
        "a second write changed the files"
    );
}

/// The one test that touches `ECST_SCHEMA_LOCK` (the environment is
/// process-wide; no other test here calls `assert_lock_with`).
#[test]
fn assert_lock_with_panics_with_the_report_and_overwrite_rewrites() {
    struct RestoreEnv(Option<std::ffi::OsString>);
    impl Drop for RestoreEnv {
        fn drop(&mut self) {
            match self.0.take() {
                Some(value) => std::env::set_var(OVERWRITE_ENV, value),
                None => std::env::remove_var(OVERWRITE_ENV),
            }
        }
    }
    let _restore = RestoreEnv(std::env::var_os(OVERWRITE_ENV));
    let options = LockOptions::default();
    let assert_lock = |dir: &Path, catalog: &Catalog| {
        panic::catch_unwind(AssertUnwindSafe(|| {
            assert_lock_with(dir, catalog, &options)
        }))
        .map_err(panic_message)
    };

    let dir = TempLock::new("assert-overwrite");
    let ticket = dir.path().join("ticket-lock");
    let next = catalog_of(|c| c.with::<TicketNext>());
    write(&ticket, &catalog_of(|c| c.with::<TicketBefore>()));

    // Without the variable: a panic whose message is the report.
    std::env::remove_var(OVERWRITE_ENV);
    let message = assert_lock(&ticket, &next).expect_err("the lock is behind the code");
    assert_eq!(message, check(&ticket, &next).to_string());
    assert_mentions(
        &message,
        &[
            &ticket.join("ticket").join("v2.json").display().to_string(),
            "this version is not locked yet",
        ],
    );

    // A value that is not `overwrite` is refused rather than ignored.
    std::env::set_var(OVERWRITE_ENV, "yes");
    let message = assert_lock(&ticket, &next).expect_err("not understood");
    assert_mentions(
        &message,
        &["ECST_SCHEMA_LOCK=\"yes\" is not understood", "`overwrite`"],
    );
    assert!(!ticket.join("ticket").join("v2.json").exists());

    // With `overwrite`: the lock is rewritten, then checked, and passes.
    std::env::set_var(OVERWRITE_ENV, "overwrite");
    assert_lock(&ticket, &next).expect("rewritten, then clean");
    std::env::remove_var(OVERWRITE_ENV);
    assert!(check(&ticket, &next).is_clean());
    assert_lock(&ticket, &next).expect("clean without the variable too");

    // Overwriting writes the files but cannot bless a breaking change.
    let invoice = dir.path().join("invoice-lock");
    std::env::set_var(OVERWRITE_ENV, "overwrite");
    let message = assert_lock(&invoice, &catalog_of(|c| c.with::<InvoiceForward>()))
        .expect_err("still incompatible");
    assert!(invoice.join("invoice").join("v2.json").exists());
    assert_mentions(
        &message,
        &[
            "(1 problem):",
            "breaks its declared compatibility mode FORWARD",
        ],
    );
}

// ---------------------------------------------------------------------------
// Errors: the lock cannot be read. None of them panics.

#[test]
fn a_truncated_lock_file_is_corrupt_with_file_and_line() {
    let dir = TempLock::new("corrupt");
    write(dir.path(), &catalog_of(|c| c.with::<TicketBefore>()));
    let file = dir.path().join("ticket").join("v1.json");
    let text = fs::read_to_string(&file).expect("written");
    // Three whole lines and half of the fourth, as an interrupted edit
    // leaves it.
    let cut: usize = text.lines().take(3).map(|l| l.len() + 1).sum::<usize>() + 5;
    fs::write(&file, &text[..cut]).expect("writable");

    let err = check_lock(
        dir.path(),
        &catalog_of(|c| c.with::<TicketBefore>()),
        &LockOptions::default(),
    )
    .expect_err("corrupt");
    let LockError::Corrupt { path, line, .. } = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert_eq!((path, *line), (&file, 4));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}:4:", file.display())),
        "{message}"
    );
    assert_mentions(
        &message,
        &[
            "not valid JSON (EOF while parsing",
            "restore it from version control",
        ],
    );
    assert!(
        !message.contains("at line"),
        "the position is given once: {message}"
    );
}

#[test]
fn lock_files_that_are_not_schemas_are_errors_naming_the_file() {
    let catalog = catalog_of(|c| c.with::<TicketBefore>());
    for (garbage, found) in [
        ("[1, 2]", "an array"),
        ("\"x\"", "a string"),
        ("42", "a number"),
        ("null", "null"),
    ] {
        let dir = TempLock::new("not-a-schema");
        write(dir.path(), &catalog);
        let file = dir.path().join("ticket").join("v1.json");
        fs::write(&file, garbage).expect("writable");

        let err =
            check_lock(dir.path(), &catalog, &LockOptions::default()).expect_err("not a schema");
        let LockError::Schema { path, source } = &err else {
            panic!("{garbage}: expected LockError::Schema, got {err:?}");
        };
        assert_eq!(path, &file);
        assert!(matches!(
            source.reason,
            SchemaErrorReason::NotASchema { .. }
        ));
        assert_mentions(
            &err.to_string(),
            &[
                &file.display().to_string(),
                &format!("expected a schema (an object or a boolean), found {found}"),
            ],
        );
    }

    // Valid schemas that are not the committed one: a changed version.
    for other in ["true", "{}"] {
        let dir = TempLock::new("other-schema");
        write(dir.path(), &catalog);
        fs::write(dir.path().join("ticket").join("v1.json"), other).expect("writable");
        let report = check(dir.path(), &catalog);
        assert_eq!(
            summary(dir.path(), &report)[0],
            ("FrozenChanged", "ticket/v1.json".into()),
            "{other}"
        );
    }

    // An empty file, and a directory where a file belongs.
    let dir = TempLock::new("empty-and-dir");
    write(dir.path(), &catalog);
    let file = dir.path().join("ticket").join("v1.json");
    fs::write(&file, "").expect("writable");
    let err = check_lock(dir.path(), &catalog, &LockOptions::default()).expect_err("empty");
    assert!(matches!(err, LockError::Corrupt { line: 1, .. }), "{err:?}");
    fs::remove_file(&file).expect("removable");
    fs::create_dir(&file).expect("a directory instead");
    let err = check_lock(dir.path(), &catalog, &LockOptions::default()).expect_err("a directory");
    assert!(
        matches!(&err, LockError::Io { path, .. } if path == &file),
        "{err:?}"
    );
}

#[test]
fn a_ref_cycle_in_a_committed_schema_is_a_schema_error_naming_the_file() {
    let dir = TempLock::new("ref-cycle");
    let catalog = catalog_of(|c| c.with::<TicketBefore>());
    write(dir.path(), &catalog);
    let file = dir.path().join("ticket").join("v1.json");
    fs::write(
        &file,
        r##"{
  "$defs": { "A": { "$ref": "#/$defs/B" }, "B": { "$ref": "#/$defs/A" } },
  "$ref": "#/$defs/A"
}
"##,
    )
    .expect("writable");

    let err = check_lock(dir.path(), &catalog, &LockOptions::default()).expect_err("a cycle");
    let LockError::Schema { path, source } = &err else {
        panic!("expected LockError::Schema, got {err:?}");
    };
    assert_eq!(path, &file);
    assert!(
        matches!(source.reason, SchemaErrorReason::RefCycle { .. }),
        "{source:?}"
    );
    assert_mentions(
        &err.to_string(),
        &[
            &file.display().to_string(),
            "loops without reaching a schema",
        ],
    );
}

// ---------------------------------------------------------------------------
// The registry.

#[test]
fn the_registry_refuses_two_generations_of_one_entity() {
    // Deterministic: the order given.
    let err = Catalog::new()
        .with::<TicketBefore>()
        .and_then(|c| c.with::<TicketAfter>())
        .expect_err("one entity, two types");
    assert_eq!(err.entity, "ticket");
    assert_eq!(err.first, std::any::type_name::<TicketBefore>());
    assert_eq!(err.second, std::any::type_name::<TicketAfter>());
    assert_mentions(
        &err.to_string(),
        &[
            "entity `ticket` is declared by both",
            "TicketBefore",
            "TicketAfter",
        ],
    );

    // Every derived type of this file is registered; link order decides
    // which duplicate is met first.
    let err = Catalog::registered().expect_err("duplicates in this binary");
    let generations: &[&str] = match err.entity {
        "ticket" => &[
            std::any::type_name::<TicketBefore>(),
            std::any::type_name::<TicketAfter>(),
            std::any::type_name::<TicketNext>(),
        ],
        "invoice" => &[
            std::any::type_name::<InvoiceForward>(),
            std::any::type_name::<InvoiceNone>(),
        ],
        other => panic!("`{other}` is declared once: {err}"),
    };
    assert_ne!(err.first, err.second);
    assert!(
        generations.contains(&err.first) && generations.contains(&err.second),
        "{err}"
    );
    assert_mentions(&err.to_string(), &[err.first, err.second]);
}
