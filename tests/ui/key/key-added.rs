use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key, added(since = 2))]
    pub id: String,
    pub name: String,
}

fn main() {}
