use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 3)]
#[state_event(removed(since = 2, field = "fax", ty = String))]
#[state_event(removed(since = 3, field = "fax", ty = String))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
}

fn main() {}
