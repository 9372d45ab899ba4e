use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
#[state_event(hop(since = 2, with = upgrade))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
}

fn upgrade(previous: &CustomerV1) -> Result<Customer, std::convert::Infallible> {
    Ok(Customer { id: previous.id.clone() })
}

fn main() {}
