use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(retyped(since = 2, from = u64, with = identity))]
    pub credit_limit_cents: u64,
}

fn identity(value: u64) -> Result<u64, std::convert::Infallible> {
    Ok(value)
}

fn main() {}
