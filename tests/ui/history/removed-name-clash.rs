use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
#[state_event(removed(since = 2, field = "name", ty = String))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
}

fn main() {}
