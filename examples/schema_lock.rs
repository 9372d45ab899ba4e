//! The schema lock catching two breaking changes before they ship.
//!
//! - A team locks v1 of `shipment` and declares it FORWARD: consumers still
//!   on v1 must read the events of the next version (producers upgrade
//!   first).
//! - Teammate A changes v1 in place (`weight_grams` becomes a string).
//!   Committed versions are frozen: the lock reports the changed file and
//!   JSON path.
//! - Teammate B declares v2 properly, but renames the required `carrier`:
//!   consumers on v1 would reject every v2 event. The lock reports that v2
//!   breaks FORWARD.
//! - The fix: v1 untouched, and v2 adds an optional field instead. The lock
//!   only asks for v2 to be locked (`ECST_SCHEMA_LOCK=overwrite` in
//!   `cargo test`); once it is, the check passes.
//!
//! Each generation of the code is a module with its own `Shipment`. In a
//! real crate they are successive commits, and the check is one test:
//! `ecst::schema::assert_lock("schemas")`, which panics with the report
//! printed below.
//!
//! Run with `cargo run --example schema_lock`. It exits with 0 when the lock
//! caught both mistakes and accepted the fix.

use std::path::Path;
use std::process::ExitCode;

use ecst::schema::{check_lock, write_lock, Catalog, LockOptions, LockReport, Problem};
use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the team locked.
mod locked {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "shipment", version = 1, compatibility = "FORWARD")]
    pub struct Shipment {
        #[state_event(key)]
        pub id: String,
        pub carrier: String,
        pub weight_grams: u32,
    }
}

/// Teammate A: v1 edited in place.
mod edited_v1 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "shipment", version = 1, compatibility = "FORWARD")]
    pub struct Shipment {
        #[state_event(key)]
        pub id: String,
        pub carrier: String,
        pub weight_grams: String, // was u32
    }
}

/// Teammate B: a v2 that renames a required field.
mod renaming_v2 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "shipment", version = 2, compatibility = "FORWARD")]
    pub struct Shipment {
        #[state_event(key)]
        pub id: String,
        #[state_event(renamed(since = 2, from = "carrier"))]
        pub shipper: String,
        pub weight_grams: u32,
    }
}

/// The fix: a v2 that v1 consumers can read.
mod fixed_v2 {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "shipment", version = 2, compatibility = "FORWARD")]
    pub struct Shipment {
        #[state_event(key)]
        pub id: String,
        pub carrier: String,
        pub weight_grams: u32,
        #[state_event(added(since = 2))]
        pub tracking_url: Option<String>,
    }
}

fn catalog<T: StateEvent>() -> Catalog {
    Catalog::new().with::<T>().expect("one entity")
}

/// Checks the lock in `dir` against `T` and prints what `cargo test` shows.
fn check<T: StateEvent>(step: &str, dir: &Path) -> LockReport {
    let report =
        check_lock(dir, &catalog::<T>(), &LockOptions::default()).expect("the lock is readable");
    // The report ends with a newline when it lists problems.
    println!("== {step}\n{}\n", report.to_string().trim_end());
    report
}

fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("ecst-example-schema-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = LockOptions::default();

    // The team locks v1 (what `ECST_SCHEMA_LOCK=overwrite cargo test` does).
    write_lock(&dir, &catalog::<locked::Shipment>(), &options).expect("writable");
    let clean = check::<locked::Shipment>("v1 locked", &dir).is_clean();

    let frozen = check::<edited_v1::Shipment>("teammate A changes v1 in place", &dir);
    let renamed =
        check::<renaming_v2::Shipment>("teammate B adds a v2 that renames `carrier`", &dir);

    let fixed = check::<fixed_v2::Shipment>("the fix: v2 adds an optional field", &dir);
    write_lock(&dir, &catalog::<fixed_v2::Shipment>(), &options).expect("writable");
    let locked_fix = check::<fixed_v2::Shipment>("the fix, once v2 is locked", &dir);
    let _ = std::fs::remove_dir_all(&dir);

    let caught = |report: &LockReport, what: fn(&Problem) -> bool| report.problems.iter().any(what);
    let as_described = clean
        && caught(&frozen, |p| matches!(p, Problem::FrozenChanged { .. }))
        && caught(&renamed, |p| matches!(p, Problem::Incompatible { .. }))
        && fixed
            .problems
            .iter()
            .all(|p| matches!(p, Problem::Unlocked { .. } | Problem::AsyncApiStale { .. }))
        && locked_fix.is_clean();
    if as_described {
        println!("The lock caught both breaking changes and accepted the fix.");
        ExitCode::SUCCESS
    } else {
        eprintln!("The lock did not behave as described above.");
        ExitCode::FAILURE
    }
}
