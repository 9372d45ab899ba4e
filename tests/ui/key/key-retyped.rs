use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key, retyped(since = 2, from = u64, with = id_to_string))]
    pub id: String,
}

fn id_to_string(id: u64) -> Result<String, std::convert::Infallible> {
    Ok(id.to_string())
}

fn main() {}
