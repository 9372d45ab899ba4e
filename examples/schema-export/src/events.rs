//! The event types of this service. `build.rs` compiles this file too, to
//! write their schemas.

use ecst::{StateEvent, Versioned};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an order goes.
#[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[versioned(version = 2)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// The city.
    pub city: String,
    /// ISO 3166 country code; `"unknown"` in orders of version 1.
    #[versioned(added(since = 2, default = unknown_country))]
    pub country: String,
}

fn unknown_country() -> String {
    "unknown".into()
}

/// An order, published whole on every change.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 2)]
pub struct Order {
    /// The order number.
    #[state_event(key)]
    pub id: u64,
    /// Where it goes; version 1 held `Address` version 1.
    #[state_event(nested(since = 2, from = AddressV1))]
    pub ship_to: Address,
    /// The amount in cents.
    pub total_cents: u64,
}
