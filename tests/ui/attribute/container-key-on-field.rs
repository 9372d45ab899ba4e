use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer")]
pub struct Customer {
    #[state_event(key, version = 1)]
    pub id: String,
}

fn main() {}
