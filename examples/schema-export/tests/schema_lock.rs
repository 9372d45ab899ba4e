//! What the build wrote is the lock: the files exist for every version,
//! and `cargo test` checks them against the code (a version changed in
//! place fails here, since the build never rewrites a committed version).

use std::path::Path;

use ecst::schema::{assert_lock_with, Catalog, LockOptions};
use ecst::StateEvent;
use ecst_example_schema_export::Order;

fn schemas() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

#[test]
fn the_build_wrote_every_version_and_the_asyncapi_document() {
    let mut files: Vec<String> = (1..=Order::VERSION)
        .map(|version| format!("order/v{version}.json"))
        .collect();
    files.push("asyncapi.json".to_owned());
    for file in files {
        let path = schemas().join(&file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo build` first", path.display()));
        let _: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    }
}

#[test]
fn schema_lock() {
    let catalog = Catalog::new().with::<Order>().expect("one entity");
    assert_lock_with(schemas(), &catalog, &LockOptions::default());
}
