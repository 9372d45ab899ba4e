//! Every message of the schema lock that a person reads, one test each, on
//! the schemas of derived event types: what changed, said in the terms of
//! the change (a variant added, a bound relaxed), counts from the old
//! schema to the new one, and which reader cannot read which data.
//!
//! Each module is one generation of the code; a test writes the lock from
//! one and checks the next against it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use ecst_derive::StateEvent;
use ecst_schema::{check_lock, write_lock, Catalog, LockOptions, LockReport};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod four_states {
    use super::*;

    /// An order's state, internally tagged: one `oneOf` alternative each.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(tag = "state")]
    pub enum Status {
        Open,
        Paid { amount_cents: u64 },
        Shipped { carrier: String },
        Cancelled { reason: String },
    }

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "order", version = 1)]
    #[state_event(compatibility = "FORWARD")]
    pub struct Order {
        #[state_event(key)]
        pub id: u64,
        pub status: Status,
    }
}

mod five_states {
    use super::*;

    /// `Refunded` added.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(tag = "state")]
    pub enum Status {
        Open,
        Paid { amount_cents: u64 },
        Shipped { carrier: String },
        Cancelled { reason: String },
        Refunded { amount_cents: u64 },
    }

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "order", version = 1)]
    #[state_event(compatibility = "FORWARD")]
    pub struct Order {
        #[state_event(key)]
        pub id: u64,
        pub status: Status,
    }
}

mod small_quantity {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "line", version = 1)]
    #[state_event(compatibility = "FORWARD")]
    pub struct Line {
        #[state_event(key)]
        pub id: u64,
        pub quantity: u8,
    }
}

mod large_quantity {
    use super::*;

    /// v2 widens `quantity`: v1 readers cannot read a quantity above 255.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "line", version = 2)]
    #[state_event(compatibility = "FORWARD")]
    pub struct Line {
        #[state_event(key)]
        pub id: u64,
        #[state_event(retyped(since = 2, from = u8, with = widen))]
        pub quantity: u16,
    }

    fn widen(quantity: u8) -> Result<u16, core::convert::Infallible> {
        Ok(quantity.into())
    }
}

mod optional_note {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "note", version = 1)]
    #[state_event(compatibility = "BACKWARD")]
    pub struct Note {
        #[state_event(key)]
        pub id: u64,
        pub text: Option<String>,
    }
}

mod required_note {
    use super::*;

    /// v2 requires `text`: v2 readers cannot read v1 data without it.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(crate = "ecst_runtime", entity = "note", version = 2)]
    #[state_event(compatibility = "BACKWARD")]
    pub struct Note {
        #[state_event(key)]
        pub id: u64,
        #[state_event(retyped(since = 2, from = Option<String>, with = required))]
        pub text: String,
    }

    fn required(text: Option<String>) -> Result<String, &'static str> {
        text.ok_or("no text")
    }
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempLock(PathBuf);

impl TempLock {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ecst-lock-messages-{}-{test}", std::process::id()));
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

fn write(dir: &Path, catalog: &Catalog) {
    write_lock(dir, catalog, &LockOptions::default()).expect("the lock is written");
}

fn check(dir: &Path, catalog: &Catalog) -> LockReport {
    check_lock(dir, catalog, &LockOptions::default()).expect("the lock is readable")
}

/// The report's text, with the lock directory shown as `schemas`.
fn text(dir: &Path, report: &LockReport) -> String {
    report
        .to_string()
        .replace(&dir.display().to_string(), "schemas")
}

#[track_caller]
/// The report of checking `checked` against a lock written from `locked`
/// (in a directory of its own, removed after), with the lock directory
/// shown as `schemas`.
fn locked_then_checked(test: &str, locked: &Catalog, checked: &Catalog) -> String {
    let lock = TempLock::new(test);
    write(lock.path(), locked);
    text(lock.path(), &check(lock.path(), checked))
}

fn assert_mentions(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[track_caller]
fn assert_not_mentions(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(!text.contains(needle), "unexpected {needle:?} in:\n{text}");
    }
}

#[test]
fn a_variant_added_in_place_says_added_with_counts_old_to_new() {
    let before = Catalog::new().with::<four_states::Order>().unwrap();
    let after = Catalog::new().with::<five_states::Order>().unwrap();
    let text = locked_then_checked("variant-added", &before, &after);
    assert_mentions(
        &text,
        &[
            "schemas/order/v1.json: a committed schema changed; committed versions are frozen",
            "#/$defs/Status/oneOf/4: added {\"properties\":{\"amount_cents\"",
            "#/properties/status (forward): alternative added: the new schema adds alternatives \
             (4 -> 5 schemas) (an enum variant, for example), so a reader using the old schema \
             rejects values of the added ones written with the new schema",
            "declare a new version instead",
        ],
    );
    assert_not_mentions(&text, &["alternative removed", "5 -> 4", "dropped"]);
}

#[test]
fn a_widened_number_breaking_forward_says_the_bound_was_relaxed() {
    let v1 = Catalog::new().with::<small_quantity::Line>().unwrap();
    let v2 = Catalog::new().with::<large_quantity::Line>().unwrap();
    let text = locked_then_checked("bound-relaxed", &v1, &v2);
    assert_mentions(
        &text,
        &[
            "schemas/line/v2.json: `line` v2 breaks its declared compatibility mode FORWARD \
             (STRICT policy):",
            "#/properties/quantity/maximum (forward: a v1 reader, v2 data): maximum relaxed: the \
             new schema relaxes `maximum` (255 -> 65535), so a reader using the old schema \
             rejects values outside the old bound written with the new schema",
            "#/properties/quantity/format (forward: a v1 reader, v2 data): format changed: the \
             new schema has another `format` (uint8 -> uint16), so a reader using the old schema \
             rejects values in the new format written with the new schema (when formats are \
             validated)",
            "change v2 so that it is compatible",
        ],
    );
    assert_not_mentions(&text, &["maximum lowered", "65535 -> 255"]);
}

#[test]
fn a_field_made_required_breaking_backward_names_the_new_reader() {
    let v1 = Catalog::new().with::<optional_note::Note>().unwrap();
    let v2 = Catalog::new().with::<required_note::Note>().unwrap();
    let text = locked_then_checked("made-required", &v1, &v2);
    assert_mentions(
        &text,
        &[
            "`note` v2 breaks its declared compatibility mode BACKWARD",
            "(backward: a v2 reader, v1 data)",
            "a reader using the new schema rejects",
            "written with the old schema",
        ],
    );
}

#[test]
fn an_unlocked_version_says_how_to_lock_it() {
    let v1 = Catalog::new().with::<small_quantity::Line>().unwrap();
    let v2 = Catalog::new().with::<large_quantity::Line>().unwrap();
    let text = locked_then_checked("unlocked", &v1, &v2);
    assert_mentions(
        &text,
        &[
            "schemas/line/v2.json: this version is not locked yet; review it and lock it with \
           ECST_SCHEMA_LOCK=overwrite",
        ],
    );
}

#[test]
fn a_version_gone_from_the_code_names_the_newest_left() {
    let v1 = Catalog::new().with::<small_quantity::Line>().unwrap();
    let v2 = Catalog::new().with::<large_quantity::Line>().unwrap();
    let text = locked_then_checked("version-removed", &v2, &v1);
    assert_mentions(
        &text,
        &[
            "schemas/line/v2.json: the lock has this version but the code stops at v1; versions \
           cannot be removed while events of them may exist",
        ],
    );
}

#[test]
fn an_entity_gone_from_the_code_is_named_by_its_directory() {
    let both = Catalog::new()
        .with::<small_quantity::Line>()
        .and_then(|c| c.with::<optional_note::Note>())
        .unwrap();
    let one = Catalog::new().with::<optional_note::Note>().unwrap();
    let text = locked_then_checked("entity-removed", &both, &one);
    assert_mentions(
        &text,
        &[
            "schemas/line: the lock has this entity but no `StateEvent` type declares it any more",
            "schemas/asyncapi.json: missing or out of date with the event types",
        ],
    );
}

#[test]
fn a_clean_lock_says_so() {
    let lock = TempLock::new("clean");
    let v1 = Catalog::new().with::<optional_note::Note>().unwrap();
    write(lock.path(), &v1);
    let report = check(lock.path(), &v1);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.to_string(), "the schema lock matches the code");
}
