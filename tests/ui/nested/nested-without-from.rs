use ecst::{StateEvent, Versioned};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Versioned, Serialize, Deserialize, JsonSchema)]
#[versioned(version = 2)]
pub struct Address {
    pub street: String,
    #[versioned(added(since = 2))]
    pub country: Option<String>,
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "order", version = 2)]
pub struct Order {
    #[state_event(key)]
    pub id: u64,
    #[state_event(nested(since = 2))]
    pub ship_to: Address,
}

fn main() {}
