use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(retyped(since = 2, from = i64, with = to_unsigned))]
    pub credit_limit_cents: u64,
}

fn to_unsigned(cents: i64) -> Result<u64, ()> {
    u64::try_from(cents).map_err(|_| ())
}

fn main() {}
