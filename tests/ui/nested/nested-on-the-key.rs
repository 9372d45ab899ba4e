use ecst::{StateEvent, Versioned};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, PartialEq, Eq, Hash, Debug)]
#[versioned(version = 2)]
pub struct Id {
    pub value: u64,
    #[versioned(added(since = 2))]
    pub shard: u8,
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "order", version = 2)]
pub struct Order {
    #[state_event(key, nested(since = 2, from = IdV1))]
    pub id: u64,
}

fn main() {}
