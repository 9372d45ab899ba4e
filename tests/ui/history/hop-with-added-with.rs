use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
#[state_event(hop(since = 2, with = upgrade))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(added(since = 2, with = name_length))]
    pub name_length: usize,
    pub name: String,
}

fn main() {}
