use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(retyped(since = 2, with = dollars_to_cents))]
    pub credit_limit_cents: u64,
}

fn dollars_to_cents(dollars: u32) -> Result<u64, std::convert::Infallible> {
    Ok(u64::from(dollars) * 100)
}

fn main() {}
