use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
}

/// Copied from `Customer`, and the entity name left as it was.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 1)]
pub struct Supplier {
    #[state_event(key)]
    pub id: String,
}

/// Generations of one entity in separate modules are allowed (tests keep
/// them side by side); the catalog refuses them at run time instead.
mod before {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "customer", version = 1)]
    pub struct Customer {
        #[state_event(key)]
        pub id: String,
    }
}

fn main() {}
