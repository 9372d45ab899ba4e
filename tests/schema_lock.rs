//! The schema lock of this test crate's event types, committed under
//! `tests/schemas/`: the one-line check a user adds, plus the checks that
//! every exported schema is a valid JSON Schema and that the AsyncAPI
//! document describes every version. (`.ci/run` also validates
//! `tests/schemas/asyncapi.json` with the official AsyncAPI parser.)

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ecst::schema::{asyncapi, AsyncApiOptions, Catalog};
use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer; v2 added an optional e-mail. Declared FORWARD so that
/// consumers still on v1 read v2 events (producers upgrade first).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 2, compatibility = "FORWARD")]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
}

/// An order with nested types, so its schema has `$defs`.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
pub struct Order {
    #[state_event(key)]
    pub id: u64,
    pub customer_id: String,
    pub lines: Vec<Line>,
    pub status: Status,
    pub shipping: Option<Address>,
}

/// One order line.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
}

/// Where an order goes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct Address {
    pub street: String,
    pub city: String,
}

/// An order's state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Shipped { carrier: String },
    Cancelled,
}

/// A product with a renamed and a retyped field.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "product", version = 3)]
pub struct Product {
    #[state_event(key)]
    pub sku: String,
    #[state_event(renamed(since = 2, from = "title"))]
    pub name: String,
    #[state_event(retyped(since = 3, from = f64, with = euros_to_cents))]
    pub price_cents: u64,
}

fn euros_to_cents(euros: f64) -> Result<u64, String> {
    if euros.is_finite() && euros >= 0.0 {
        Ok((euros * 100.0).round() as u64)
    } else {
        Err(format!("{euros} is not a price"))
    }
}

const LOCK: &str = "tests/schemas";

#[test]
fn schema_lock() {
    ecst::schema::assert_lock(LOCK);
}

#[test]
fn the_catalog_lists_every_derived_type_without_a_hand_kept_list() {
    let catalog = Catalog::registered().expect("entity names are unique");
    let listed: Vec<(&str, u32)> = catalog.iter().map(|t| (t.entity(), t.version())).collect();
    assert_eq!(listed, [("customer", 2), ("order", 1), ("product", 3)]);
    let customer = catalog.get("customer").expect("registered");
    assert_eq!(customer.compatibility(), ecst::schema::Mode::Forward);
    assert!(customer.type_name().ends_with("Customer"));
    assert_eq!(customer.schemas().len(), 2);
    assert_eq!(
        customer.schema(2),
        Customer::schema(2).map(|s| s.to_value())
    );
}

#[test]
fn every_locked_schema_is_a_valid_json_schema() {
    let mut checked = 0;
    for entity in fs::read_dir(LOCK).expect("the lock directory exists") {
        let entity = entity.expect("readable").path();
        if !entity.is_dir() {
            continue;
        }
        for file in fs::read_dir(&entity).expect("readable") {
            let path = file.expect("readable").path();
            let schema: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&path).expect("readable"))
                    .expect("valid JSON");
            if let Err(e) = jsonschema::meta::validate(&schema) {
                panic!("{} is not a valid JSON Schema: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 2 + 1 + 3, "one file per version of each entity");
}

#[test]
fn locked_files_are_stable_sorted_json() {
    let text = fs::read_to_string(Path::new(LOCK).join("customer/v2.json")).expect("locked");
    assert!(text.ends_with("}\n"));
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let keys: Vec<&String> = value.as_object().expect("an object").keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn asyncapi_has_a_channel_per_entity_and_a_message_per_version() {
    let catalog = Catalog::registered().expect("entity names are unique");
    let doc = asyncapi(&catalog, &AsyncApiOptions::default());
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["channels"]["order"]["address"], "ecst.order.{key}");
    let messages: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(doc["channels"]["product"]["messages"].clone()).expect("an object");
    assert_eq!(
        messages.keys().collect::<Vec<_>>(),
        ["product.v1", "product.v2", "product.v3"]
    );
    let v2 = &doc["components"]["messages"]["product.v2"]["payload"];
    assert_eq!(v2["properties"]["schemaversion"]["const"], 2);
    assert_eq!(
        v2["properties"]["data"]["$ref"],
        "#/components/schemas/product.v2"
    );
    // Nested types are lifted beside the version schema and refs follow.
    let schemas = doc["components"]["schemas"].as_object().expect("an object");
    assert!(
        schemas.contains_key("order.v1.Line"),
        "{:?}",
        schemas.keys()
    );
    let text = doc.to_string();
    assert!(!text.contains("#/$defs/"), "every ref is rewritten");
}
