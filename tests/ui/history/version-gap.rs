use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 3)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(added(since = 3))]
    pub email: Option<String>,
}

fn main() {}
