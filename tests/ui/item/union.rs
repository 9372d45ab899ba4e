use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "number", version = 1)]
pub union Number {
    pub int: u64,
    pub float: f64,
}

fn main() {}
