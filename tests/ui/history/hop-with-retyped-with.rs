use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
#[state_event(hop(since = 2, with = upgrade))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(retyped(since = 2, from = u32, with = widen))]
    pub credit_limit: u64,
}

fn main() {}
