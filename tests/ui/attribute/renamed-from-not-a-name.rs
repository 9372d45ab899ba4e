use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full name"))]
    pub name: String,
}

fn main() {}
