use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
}

fn main() {}
